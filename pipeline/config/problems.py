"""A config's problems as one line each: pydantic's error of a model, or a store option's
problem that pydantic does not check, as the :class:`~pipeline.errors.ConfigError` that names
where (a file and line, a mapping, a constructor), the key and the fix, and never a value of
storage_options (credentials).

Shared by :mod:`~pipeline.config.loading` (a file or a mapping) and the models' own
constructors in :mod:`~pipeline.config.models` (``pipeline.Config(...)`` from keywords), so
neither imports the other: the models are known here only as the class an error is of.
"""

from __future__ import annotations

import datetime
import decimal
import difflib
import functools
import os
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from pipeline.config.urls import (
    storage_option_problem,
    url_fragment,
    url_query,
    url_userinfo,
    without_query,
    without_userinfo,
)
from pipeline.errors import ConfigError, kind_said, name_shown
from pipeline.ops.stages import REGISTRY, known_stages

_T = TypeVar("_T")


#: The most characters of an object's repr that a problem's line quotes (``(got ...)``).
GOT_WIDTH = 100


def got_said(got: Any) -> str:
    """``repr(got)`` as a problem's one line quotes it. Text, numbers, booleans and None
    (what a config file gives, whose repr is one line) whole; any other object, which only a
    mapping given to ``pipeline.run`` or a model's constructor holds (an ``xarray.Dataset``, a
    zarr array or group, a NumPy array, whose reprs span lines), with its runs of white space
    made one space and cut to :data:`GOT_WIDTH` characters with ``...``: its repr had been
    quoted whole, a dozen lines in the one line of the error. A ``Decimal``, the number a
    file wrote past float64's range (``1e-400``, which the loader keeps exact), as a number
    is written (h66c: ``Decimal('1E-400')``, Python's repr, in the line of a YAML file); a
    whole number of more than :data:`GOT_WIDTH` digits in scientific notation (``1.000000e400``:
    its 401 digits had been the line, and Python refuses to write more than 4300)."""
    if isinstance(got, int) and not isinstance(got, bool) and abs(got) >= 10**GOT_WIDTH:
        return f"{decimal.Decimal(got):.6e}".replace("e+", "e")  # as a float is written
    if isinstance(got, decimal.Decimal):
        text = str(got).lower().replace("e+", "e")
        return text if len(text) <= GOT_WIDTH else f"{got:.6e}".replace("e+", "e")
    if got is None or isinstance(got, (str, bytes, int, float)):
        return repr(got)
    text = " ".join(repr(got).split())
    return text if len(text) <= GOT_WIDTH else text[: GOT_WIDTH - 3] + "..."


def _model_at(loc: Sequence[Any], root: type[BaseModel]) -> type[BaseModel] | None:
    """The model class that owns the last key of ``loc`` (outside ``stages``), a location in
    the keys of the model ``root``."""
    model: type[BaseModel] | None = root
    for part in loc[:-1]:
        f = model.model_fields.get(part) if model else None
        if f is None:
            return None
        ann = f.annotation
        args = [a for a in getattr(ann, "__args__", (ann,)) if isinstance(a, type)]
        model = next((a for a in args if issubclass(a, BaseModel)), None)
    return model


#: The labels pydantic gives a union's branches and a validator's steps in an error's
#: location (``int``, ``literal['auto']``, ``tuple[...]``, ``function-before[...]``,
#: ``constrained-int``): no key of a config, whose fields are named otherwise.
_BRANCH = re.compile(
    r"(?:int|float|str|bool|bytes|none|dict|list|tuple|set|decimal|constrained-[\w-]+)"
    r"|[a-z][\w-]*\[.*\]"
)


def _data_loc(loc: Sequence[Any], data: Any) -> tuple:
    """The part of a pydantic error location that indexes the user's data.

    Pydantic adds union-branch and validator labels (``float``, ``function-before[...]``) and
    stage tags; keep only the keys and indices that exist in the data, plus a final missing or
    unknown key. A section the data gives as a model (``model_copy(update={"cluster":
    ClusterConfig(gpus=[1])})``, whose lists are tuples) is indexed by its fields: a problem
    inside it had been said at the section alone (``cluster: [1] names GPUs``), the key
    unnamed.
    """
    out: list[Any] = []
    node = data
    for i, part in enumerate(loc):
        if (
            isinstance(node, BaseModel)
            and isinstance(part, str)
            and part in type(node).model_fields
        ):
            out.append(part)
            node = getattr(node, part)
        elif (isinstance(node, dict) and part in node) or (
            isinstance(node, (list, tuple)) and isinstance(part, int) and part < len(node)
        ):
            out.append(part)
            node = node[part]
        elif (
            i == len(loc) - 1
            and isinstance(node, dict)
            and isinstance(part, str)
            and not _BRANCH.fullmatch(part)
        ):
            # a key that is no text (None, a date), which pydantic names by its repr(): the
            # key itself, so that its line is found; else a missing key, still the one to name
            # (not a union's branch, `tuple[...]`, of a mapping given where a list or number
            # goes: h72a, "output.shards.tuple[function-before[_not_bool(), ...]: must be a
            # value")
            held = [k for k in node if not isinstance(k, str) and part in (repr(k), str(k))]
            out.append(held[0] if held else part)
    return tuple(out)


def _as_given(data: Any, loc: Sequence[Any], got: Any) -> Any:
    """What a problem's line quotes of the value at ``loc`` (:func:`_data_loc`'s) in ``data``:
    the text the user wrote there where pydantic's error holds what a validator made of it
    (``device_memory_limit: 8GB`` refused beside ``backend: cpu`` had said "(got
    8000000000)", the bytes ``8GB`` was read as); else ``got``, pydantic's input."""
    node = data
    for part in loc:
        if isinstance(node, BaseModel) and isinstance(part, str):
            node = getattr(node, part, None)
        elif (isinstance(node, dict) and part in node) or (
            isinstance(node, (list, tuple)) and isinstance(part, int) and part < len(node)
        ):
            node = node[part]
        else:
            return got
    return node if isinstance(node, str) and got is not None and not isinstance(got, str) else got


#: Settings that earlier versions had and this one removed, because no measurement showed a
#: gain (README, "Benchmarks"): a config that still sets one is told so, instead of being
#: offered a close key name.
REMOVED = {
    "output.spare_files": "pre-allocated files made no run faster",
    "cluster.gpu_codec_slots": "limiting the threads in the GPU codec made no run faster",
    "cluster.host_encode_share": "encoding part of each block on the CPU made runs slower",
    "cluster.memory_pool": "GPU workers always use CuPy's memory pool",
}


def _message(
    err: Mapping[str, Any],
    data: Any,
    root: type[BaseModel],
    place: str = "",
    file: bool = False,
    strings: str = "",
    named: str | None = None,
) -> str:
    """What pydantic's error ``err`` of the model ``root``, made from ``data``, says in the
    one line: the key and the fix (``strings``: the call that takes what
    ``model_validate_strings`` cannot, :func:`strings_fix`; ``place``: where ``root`` sits in
    a whole config, as
    :func:`validation_error` takes it; ``file``: ``data`` is a YAML file's; ``named``: the
    command-line option that gave the key's value, said in the key's place)."""
    loc = _data_loc(err["loc"], data)
    kind = err["type"]
    key = named or dotted_key(loc) or "(top level)"
    full = f"{place}.{key}" if place else key
    if kind == "extra_forbidden" and full in REMOVED:
        return f"unknown key {key!r} (removed in this version: {REMOVED[full]}; delete it)"
    stages = loc[:1] == ("stages",) and "stages" in root.model_fields
    if kind == "extra_forbidden":
        owner = _stage_owner(loc, data) if stages else _model_at(loc, root)
        names = [n for n in owner.model_fields] if owner else []
        if stages:
            names.append("op")
        if loc[-1] == "":  # cluster: {"": 2}, as the override 'cluster.' is said
            parent = ".".join(str(p) for p in loc[:-1]) or "(top level)"
            return (
                f"{parent}: a key's name is empty (''), which names no key: write the key "
                f"meant, or delete it (valid keys: {', '.join(names)})"
            )
        close = difflib.get_close_matches(str(loc[-1]), names, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"valid keys: {', '.join(names)}"
        return f"unknown key {key!r} ({hint})"
    if kind == "invalid_key":  # cluster: {1: 2}, {null: x}, {2024-01-01: x}
        return _key_not_text(loc, err.get("input"), data, root, stages)
    if kind == "union_tag_invalid":
        tag = err.get("ctx", {}).get("tag")
        return f"unknown stage {tag!r} at {key}; known stages: {known_stages()}"
    if kind == "union_tag_not_found":
        return f"{key}: each stage needs 'op:' naming it; known stages: {known_stages()}"
    if kind in ("model_attributes_type", "dict_type") and len(loc) == 2 and loc[0] == "stages":
        name = err.get("input")
        if isinstance(name, str) and name.strip() in REGISTRY:  # stages: [square]
            name = name.strip()
            return (
                f"{key}: a stage is a mapping that names it with op: write '- op: {name}' "
                f"under stages: (or {{op: {name}}} in a list in brackets); known stages: "
                f"{known_stages()}"
            )
        return f"{key}: a stage is a mapping such as '- op: square'; known stages: {known_stages()}"
    if kind == "missing":
        return f"missing key {key!r}"
    if kind == "dict_type" and loc[-1:] == ("storage_options",):  # never its value
        return (
            f"{key}: must be a mapping of fsspec options, such as {{key: ..., secret: ...}} "
            "for s3:// (its value is not said here)"
        )
    section = _model_at((*loc, ""), root) if kind in _NO_MAPPING and not stages else None
    if section is not None and loc:  # input: (empty), input: in.zarr, codec: [zstd]
        owner = _model_at(loc, root)
        field = owner.model_fields.get(str(loc[-1])) if owner is not None else None
        required = field is None or field.is_required()
        return _section_problem(key, section, err.get("input"), file, required)
    got = err.get("input")
    if kind == "string_type" and got is None and not stages:  # store: (nothing after it)
        return _null_text_problem(key, loc, root)
    if kind in ("too_short", "tuple_type") and key == "stages" and strings and got is not None:
        return f"stages: must be a list of stages, {strings_fix(strings, 'stages', 'a list')}"
    if kind in ("too_short", "tuple_type") and key == "stages":
        return _stages_problem(got)
    if got is None and not stages and wanted(root, loc) != "a value":  # shards: (nothing)
        return _null_problem(key, wanted(root, loc))
    if kind == "value_error" and isinstance(err.get("ctx", {}).get("error"), BoolNotNumber):
        return f"{key}: must be {wanted(root, loc)}, not true/false"
    if kind in ("tuple_type", "list_type") and not stages and strings:  # not gpus: [0]
        fix = strings_fix(strings, key, "a list")
        return f"{key}: must be {wanted(root, loc)}, {fix} (got {got_said(got)})"
    if kind in ("tuple_type", "list_type") and not stages:  # gpus: 0, shape: "4096"
        return f"{key}: must be {wanted(root, loc)}{_as_list(loc, got)} (got {got_said(got)})"
    got = _as_given(data, loc, got)  # 8GB, not the 8000000000 bytes it was read as
    if isinstance(got, str) and (url_query(got) or url_fragment(got)) is not None:
        got = without_query(got)  # a URL's query (or fragment) may be a credential: never said
    said = False
    if isinstance(got, str) and url_userinfo(got) is not None:
        got = without_userinfo(got)  # s3://KEY:SECRET@...: neither said
        said = got in err["msg"]  # url_userinfo_problem names it so already
    # storage_options hold credentials: no part of them is ever said, whatever its type
    # (brk76: ``storage_options: "key=... secret=..."`` was quoted whole)
    secret = said or "storage_options" in loc
    got_s = "" if secret or isinstance(got, (dict, list)) else f" (got {got_said(got)})"
    takes = wanted(root, loc) if kind in _WANTED_SAYS and not stages else "a value"
    if takes != "a value":  # workers: 2.5, level: 30: not pydantic's words, what it takes
        return f"{key}: must be {takes}{got_s}"
    msg = err["msg"].removeprefix("Value error, ")
    # "not a size: '12XB' (...)": the text quoted already, not said twice (review43)
    if got_s and isinstance(got, str) and repr(got) in msg:
        got_s = ""
    return f"{key}: {msg}{got_s}"


def _null_text_problem(key: str, loc: tuple, root: type[BaseModel]) -> str:
    """What a key that takes text says of null (``store:`` with nothing after its colon):
    pydantic's "Input should be a valid string (got None)" had been the line, its "Input"
    no section of the config's."""
    owner = _model_at(loc, root)
    field = owner.model_fields.get(str(loc[-1])) if owner is not None and loc else None
    said = field.description if field is not None and field.description else ""
    # a description that gives the values themselves ("'local' starts a cluster; ...") is
    # said as it is, not after "give the"
    what = f": {said}" if said.startswith("'") else f": give the {said}" if said else ""
    return (
        f"{key}: has no value (null: nothing after its colon, or ~, in YAML; None in Python), "
        f"where it takes text{what}"
    )


def _null_problem(key: str, takes: str) -> str:
    """What a key that takes no null says of null (``shards:`` with nothing after its colon,
    ``{"overwrite": None}``): that it has no value, and what it takes. Pydantic's "Input
    should be a valid boolean (got None)" had been the line, and the lists' and choices'
    "must be ... or auto or none (got None)" (h71u), Python's word for YAML's null, beside
    the text ``none`` that ``shards`` takes; the text keys say it so
    (:func:`_null_text_problem`)."""
    words = takes.replace(" or ", ", ").split(", ")
    none = " (none is the text 'none', not null)" if "none" in words else ""
    return (
        f"{key}: has no value (null: nothing after its colon, or ~, in YAML; None in Python), "
        f"where it takes {takes}{none}"
    )


def _key_not_text(loc: tuple, got: Any, data: Any, root: type[BaseModel], stages: bool) -> str:
    """What a key that YAML read as no string (``1: 2``, ``null: x``, ``2024-01-01: x``)
    says: pydantic's own "Keys should be strings (got datetime.date(2024, 1, 1))", naming
    the date as a key below ``input``, had been the line (review43)."""
    parent = loc[:-1] if loc and loc[-1] in (got, str(got), repr(got)) else loc
    owner = _stage_owner(parent, data) if stages else _model_at((*parent, ""), root)
    names = list(owner.model_fields) if owner else []
    if stages and names:
        names.append("op")
    if got is None:
        shown = "null"
    elif isinstance(got, bool):
        shown = f"{str(got).lower()} (a boolean)"
    elif isinstance(got, (int, float)):
        shown = f"{got!r} (a number)"
    elif isinstance(got, (datetime.date, datetime.time)):
        shown = f"{got.isoformat()} (a date or time)"
    else:
        shown = kind_said(got)
    valid = f" (valid keys: {', '.join(names)})" if names else ""
    return (
        f"{dotted_key(parent) or '(top level)'}: a key's name must be text, not {shown}, as YAML "
        f"reads an unquoted number, true/false, null or date: quote it, or write the key "
        f"meant{valid}"
    )


#: Pydantic's errors of a section (``input``, ``cluster``, ``output.codec``) given as no
#: mapping: "Input should be a valid dictionary or instance of InputConfig" (JSON: "Input
#: should be an object"), naming a class of the code, not what the key takes (review43).
_NO_MAPPING = frozenset(("model_type", "model_attributes_type", "dict_type"))


def _section_problem(
    key: str, section: type[BaseModel], got: Any, file: bool = False, required: bool = True
) -> str:
    """What a section given as no mapping says: that it is one, with its keys indented below
    it, and what it was given (nothing, text, a list), never a value of a list or mapping.
    Null is a key left empty in a YAML ``file``, else None (``pipeline.Config(input=None)``,
    JSON's null), which had been said as a key left empty too (review44). A section left
    empty in a file (``cluster:`` with nothing under it, or only its keys commented out) is
    said to be empty, with what to do: its keys below it, or, where it is not ``required``,
    the line deleted or ``{}`` for its defaults (it had said only where keys go)."""
    keys = ", ".join(section.model_fields)
    if got is None and not file:
        given = "null (None)"
    elif got is None:
        name = key.rsplit(".", 1)[-1]
        given = (
            "empty (nothing under it, or only comments, which YAML reads as null): write its "
            "keys on the lines below it, indented"
        )
        if not required:
            given += f", or delete the line, or write {name}: {{}}, for its defaults"
        return f"{key}: is {given} (it takes a mapping of its keys: {keys})"
    elif isinstance(got, str):
        if (url_query(got) or url_fragment(got)) is not None:
            got = without_query(got)  # a URL's query (or fragment) may be a credential
        if url_userinfo(got) is not None:
            got = without_userinfo(got)  # s3://KEY:SECRET@...: neither said
        given = f"text ({got!r})"
    elif isinstance(got, bool):
        given = "true/false"
    elif isinstance(got, (int, float)):
        given = f"a number ({got!r})"
    elif isinstance(got, (list, tuple)):
        given = "a list"
    else:
        given = kind_said(got)
    return f"{key}: must be a mapping of its keys ({keys}), not {given}"


#: Pydantic's errors of a number's type or bounds, and of a value not among those a key
#: takes, which it words in its own phrasing ("Input should be a valid integer, got a
#: number with a fractional part", "Input should be greater than 0"): said instead with
#: what the key takes, from the schema (:func:`wanted`: "must be a whole number of at least
#: 1"), as the other lines are.
_WANTED_SAYS = frozenset(
    (
        "int_type",
        "int_parsing",
        "int_parsing_size",
        "int_from_float",
        "float_type",
        "float_parsing",
        "finite_number",
        "greater_than",
        "greater_than_equal",
        "less_than",
        "less_than_equal",
        "multiple_of",
        "literal_error",
        "bool_type",
        "bool_parsing",
    )
)


class BoolNotNumber(ValueError):
    """A boolean given where a number is wanted (raised by the models' ``NotBool``), which
    :func:`_message` words with what the key takes."""


def _stages_problem(got: Any) -> str:
    """What ``stages`` given as no list of stages (``stages: square``, one stage's mapping
    without its list, nothing, ``[]``) says: that it is a list of stages, each a mapping
    naming its stage with ``op:``, and how to write the one meant."""
    known = known_stages()
    if got is None or (isinstance(got, (list, tuple)) and not got):
        return f"stages: give at least one stage, such as '- op: square'; known stages: {known}"
    name = got.strip() if isinstance(got, str) else None
    if isinstance(got, dict) and isinstance(got.get("op"), str):
        name = got["op"]
    if name in REGISTRY:
        return (
            "stages: must be a list of stages, each a mapping naming its stage with op:, not "
            f"{'one stage alone' if isinstance(got, dict) else 'text'}: write '- op: {name}' "
            f"on a line under stages: (or stages: [{{op: {name}}}]); known stages: {known}"
        )
    what = "text" if isinstance(got, str) else _KIND_SAID.get(type(got), "a single value")
    return (
        "stages: must be a list of stages, each a mapping naming its stage with op:, such as "
        f"'- op: square' on a line under stages:, not {what}; known stages: {known}"
    )


_KIND_SAID: dict[type, str] = {dict: "one mapping", bool: "true/false"}


def _as_list(loc: Sequence[Any], got: Any) -> str:
    """The list that a list-valued key (``gpus``, ``shape``) given one number (``gpus: 0``)
    or the numbers as text (``shape: "64, 64"``) was meant to be, as the fix: ``, such as
    gpus: [0]``; '' where ``got`` is neither. A shape given as a mapping by dimension name
    (``chunks: {time: 1}``, as xarray's ``chunks=`` takes it) is said to be one number per
    dimension, in the array's order: the line had only said the list it takes."""
    if isinstance(got, dict) and loc and loc[-1] in ("chunks", "shards", "block"):
        return (
            ": one number per dimension, in the order of the array's dimensions, not a "
            "mapping by dimension name (xarray's chunks={...}): write it as a list, "
            f"{loc[-1]}: [...]"
        )
    if isinstance(got, int) and not isinstance(got, bool):
        items = str(got)
    elif isinstance(got, str) and re.fullmatch(r"\s*-?\d+(\s*,\s*-?\d+)*\s*", got):
        items = ", ".join(p.strip() for p in got.split(","))
    else:
        return ""
    return f": write it in brackets, {loc[-1]}: [{items}]" if loc else ""


def wanted(root: type[BaseModel], loc: Sequence[Any]) -> str:
    """What the key at ``loc`` (a location in the keys of the model ``root``) takes, in
    words from its JSON schema: ``a whole number of at least 1``, ``auto or a list of whole
    numbers of at least 1``, ``a size in bytes (or text such as '16GiB')``; "a value" where
    the schema says nothing more."""
    schema = _json_schema(root)
    node: Any = schema
    for part in loc:
        node = _step(schema, node, part)
        if node is None:
            return "a value"
    return _said(schema, node) or "a value"


@functools.cache
def _json_schema(root: type[BaseModel]) -> dict[str, Any]:
    return root.model_json_schema()


def _resolved(schema: dict[str, Any], node: Any) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        node = schema.get("$defs", {}).get(node["$ref"].rsplit("/", 1)[-1])
    return node


def _step(schema: dict[str, Any], node: Any, part: Any) -> Any:
    """The schema of ``part`` (a key or a list's index) of the value ``node`` describes."""
    node = _resolved(schema, node)
    if not isinstance(node, dict):
        return None
    for alt in [_resolved(schema, a) for a in node.get("anyOf", [node])]:
        if not isinstance(alt, dict):
            continue
        if isinstance(part, str) and part in alt.get("properties", {}):
            return alt["properties"][part]
        if isinstance(part, int) and "items" in alt:
            return alt["items"]
    return None


def _said(schema: dict[str, Any], node: Any, plural: bool = False) -> str:
    """The values the schema ``node`` takes, in words (``plural``: as a list's items)."""
    node = _resolved(schema, node)
    if not isinstance(node, dict):
        return ""
    said: list[str] = []
    for alt in [_resolved(schema, a) for a in node.get("anyOf", [node])]:
        if not isinstance(alt, dict):
            continue
        kind = alt.get("type")
        if kind == "boolean":
            said.append("true or false")
        elif "const" in alt:
            said.append(str(alt["const"]))
        elif "enum" in alt:
            said.append(_either([str(v) for v in alt["enum"]]))
        elif kind == "integer" and alt.get("format") == "bytes":
            least = _range(alt, True)  # ' of at least 1'
            said.append(
                f"{'sizes' if plural else 'a size'} in bytes{least} (or text such as '16GiB')"
            )
        elif kind in ("integer", "number"):
            noun = {"integer": "whole number", "number": "number"}[kind]
            said.append(f"{noun}s" if plural else f"a {noun}")
            said[-1] += _range(alt, kind == "integer")
        elif kind == "array":
            items = _said(schema, alt.get("items"), plural=True)
            said.append(f"a list of {items}" if items else "a list")
    return _either(said)


def _either(said: list[str]) -> str:
    return said[0] if len(said) == 1 else f"{', '.join(said[:-1])} or {said[-1]}" if said else ""


def _range(s: dict[str, Any], whole: bool) -> str:
    """A number's bounds in a JSON schema as words: ' from -7 to 22', ' greater than 0'."""
    low, high = s.get("minimum"), s.get("maximum")
    above, below = s.get("exclusiveMinimum"), s.get("exclusiveMaximum")
    if whole and above is not None:
        low, above = above + 1, None
    if whole and below is not None:
        high, below = below - 1, None
    if whole and low is not None and high is not None:
        return f" from {low} to {high}"
    if whole and low is not None and high is None:
        return f" of at least {low}"
    parts = [
        f"{w} {v}"
        for w, v in (
            ("at least", low),
            ("greater than", above),
            ("at most", high),
            ("less than", below),
        )
        if v is not None
    ]
    return f" {' and '.join(parts)}" if parts else ""


def _stage_owner(loc: Sequence[Any], data: Any) -> type[BaseModel] | None:
    try:
        return REGISTRY[data["stages"][loc[1]]["op"]].params
    except (KeyError, IndexError, TypeError):
        return None


def _first_error(errors: list[Any]) -> Any:
    """Unknown keys first (they explain the rest), then the first error per location."""
    extra = [e for e in errors if e["type"] == "extra_forbidden"]
    return extra[0] if extra else errors[0]


#: A percent escape (``%2B``), which a value copied from a URL's query holds.
_PERCENT_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")


def _option_problem(
    data: Mapping[str, Any], root: type[BaseModel], strings: str = ""
) -> tuple[tuple, str] | None:
    """The first value of storage_options' ``headers`` or ``params`` (at any depth: in a chain,
    ``{http: {params: ...}}``) that would not reach an HTTP server as written, as (its key,
    why and the fix), never the value (they are credentials); None where there is none.
    ``data`` is the keys of the model ``root``: a whole config's (its input's and output's
    storage_options), or a store's section's (its own).

    A header's value that is not a string (``X-Key: 987654321`` unquoted, a list): aiohttp
    sends only strings, and its error quoted the value. A parameter's value that is not a
    string or a number (a list, a mapping, a boolean, null): likewise. A parameter that holds
    a percent escape (``sig: a%2Bb%3D``, copied from a URL's query): aiohttp encodes every
    value as it sends it, so the server got ``%252B`` and answered 403; it goes decoded. An
    option that the store's file system or its client takes as true or false, given as text
    (:func:`_store_option_problem`), with ``asynchronous: true`` and an ``endpoint_url``
    holding credentials. ``strings``: as :func:`checked` takes it."""
    places: list[tuple[str, ...]] = [
        (side,) for side in ("input", "output") if side in root.model_fields
    ]
    if "storage_options" in root.model_fields:
        places.append(())
    for place in places:
        section = data.get(place[0]) if place else data
        options = section.get("storage_options") if isinstance(section, dict) else None
        if isinstance(section, Mapping) and isinstance(options, dict):
            found = _options_problem(options, (*place, "storage_options"))
            if found is None:
                found = _store_option_problem(
                    section, options, (*place, "storage_options"), strings
                )
            if found is not None:
                return found
    return None


def _store_option_problem(
    section: Mapping[str, Any], options: Mapping[Any, Any], key: tuple, strings: str = ""
) -> tuple[tuple, str] | None:
    """The first of ``options`` (the storage_options of ``section``, a store's, at ``key``)
    that its store's file system would refuse or misread, as (its key, why and the fix),
    never a value of a credential; None where there is none: the one check of a store's
    options (:func:`~pipeline.config.urls.storage_option_problem`: an ``endpoint_url`` with
    credentials in it, an option of the wrong kind, ``config_kwargs: {retries:
    {max_attempts: '3'}}``, ``s3_additional_kwargs: {BucketKeyEnabled: 'yes'}``, a value
    none of those its taker takes, ``ServerSideEncryption: AES257``, ``anon: 'false'``,
    ...), which a ``Location`` opened otherwise than from a config asks too. Refused here,
    where the config is read, so the line names the option's line in the file, the override
    that set it, or the call (they had come only when the store was opened, at plan time,
    with none of them). ``strings``: for ``model_validate_strings``, whose every value is
    text, an option given as text where another kind is taken names that call's fix
    (:func:`strings_fix`)."""
    store = section.get("store")
    store = os.fspath(store) if isinstance(store, os.PathLike) else store
    if not isinstance(store, str):
        return None  # pydantic refuses it
    found = storage_option_problem(store, options, ".".join(str(k) for k in key))
    if found is None:
        return None
    if strings and found.wanted:  # model_validate_strings gives only text
        fix = strings_fix(strings, dotted_key((*key, *found.keys)), found.wanted)
        return (*key, *found.keys), f"{found.as_text} {fix} (its value is not said here)"
    return (*key, *found.keys), found.said


def strings_fix(call: str, key: str, what: str) -> str:
    """The fix for a value that ``model_validate_strings`` cannot give (a list, a boolean in
    storage_options), whose every value is text and whose strings mode reads no list: the
    same config given to ``call`` (``pipeline.Config.model_validate``) with the key as
    ``what`` (a list; true or false), or as JSON to its
    ``_json`` form. Its lines had named a YAML spelling that call cannot take (``gpus:
    [0]``, ``anon: false``, unquoted)."""
    return (
        "which model_validate_strings cannot give (every value it takes is text, and it reads "
        f"no list): give the config to {call}() with {key} as {what}, or as JSON to "
        f"{call}_json()"
    )


#: Why an option's name that YAML read as no string (``1: x``, ``true: x``) is refused.
NAME_NOT_TEXT = (
    "an option's name must be a string (YAML reads this one as a number, a boolean, a date "
    "or null, and every file system and client takes its options by name): quote it, or "
    "correct it (its value is not said here)"
)


#: Why an option's name that is empty (``storage_options: {"": 1}``) is refused.
NAME_EMPTY = (
    "an option's name is empty (''), which names no option of any file system or client: "
    "write the option's name, or delete it (its value is not said here)"
)

#: Why an option's name that holds a dot (``{client_kwargs.region_name: x}``) is refused.
NAME_DOTTED = (
    "an option's name holds a dot, which no file system's or client's option has (the name "
    "is not said: written as {secret:VALUE}, with no space after the colon, it is the "
    "value): write its plain name, and an option of another as a mapping in it, such as "
    "client_kwargs: {region_name: ...} (its value is not said here)"
)


#: The mappings in storage_options whose names are no options but what a request sends
#: (each as the thing it names): aiohttp's ``headers``, query ``params`` and ``cookies``
#: (``connect.sid``, Express's session cookie), S3's user ``Metadata`` (in s3fs's
#: ``s3_additional_kwargs``), and botocore's ``proxies`` (by host: ``http://10.0.0.1``);
#: aiohttp's ``proxy_headers`` (headers sent to an HTTP store's proxy), fsspec WebHDFS's
#: ``data_proxy`` (data nodes' addresses, ``dn1.cluster.local:9864``, each mapped to the one
#: that reaches it) and a ``reference://`` store's ``fo`` given as its references themselves
#: (``.zgroup``, ``x/0.0``; a version 1 one's ``refs`` are in it). Their names may hold a
#: dot; the cookies', the metadata's and the proxies' had been refused as an option's name
#: with one (review43), and the proxy headers', data nodes' and references' too (review44).
NAMED_DATA = {
    "headers": "header",
    "params": "query parameter",
    "cookies": "cookie",
    "metadata": "metadata key",
    "proxies": "proxy",
    "proxy_headers": "proxy header",
    "data_proxy": "data node's address",
    "fo": "reference",
}


def _options_problem(options: Mapping[Any, Any], key: tuple) -> tuple[tuple, str] | None:
    """The first name in ``options`` (a store's ``storage_options``, or a mapping in them, at
    any depth) that is no string (:data:`NAME_NOT_TEXT`: s3fs, aiohttp and botocore each
    refused one with their own ``TypeError: keywords must be strings``, or sent it), that is
    empty (:data:`NAME_EMPTY`) or holds a dot (:data:`NAME_DOTTED`; a name in one of
    :data:`NAMED_DATA`, a header's, say, may, and only it may not be empty), which the file
    system or its client refused only once the store was opened, at plan time, without the
    option's line; or the first header or query parameter that would not be sent as written
    (:func:`_sent_problem`); as (its key, why and the fix), never a value (nor a name with a
    dot: :func:`dotted_key`)."""
    for name, value in options.items():
        here = (*key, name)
        if not isinstance(name, str):
            return here, NAME_NOT_TEXT
        if name == "" or "." in name:
            return here, NAME_DOTTED if name else NAME_EMPTY
        kind = name.lower()
        if kind in NAMED_DATA and isinstance(value, dict):
            what = NAMED_DATA[kind]
            for item, v in value.items():
                why = _sent_problem(kind, v)
                if not isinstance(item, str):
                    why = f"a {what}'s name must be a string: quote it"
                elif item == "":
                    why = (
                        f"a {what}'s name is empty (''): name it, or delete it (its "
                        "value is not said here)"
                    )
                if why is not None:
                    return (*here, item), why
        elif isinstance(value, dict):
            found = _options_problem(value, here)
            if found is not None:
                return found
    return None


def _sent_problem(kind: str, value: Any) -> str | None:
    """Why ``value`` of a header (``kind`` 'headers') or query parameter ('params') would not
    be sent as written; None where it would."""
    if kind == "headers" and not isinstance(value, str):
        return (
            "a header's value must be one string (aiohttp sends no other type): quote it, "
            'as in Authorization: "..." (its value is not said here)'
        )
    if kind == "params" and (isinstance(value, bool) or not isinstance(value, (str, int, float))):
        return (
            "a query parameter's value must be a string or a number (aiohttp sends no other "
            "type): give one string, quoted (its value is not said here)"
        )
    if kind == "params" and isinstance(value, str) and _PERCENT_ESCAPE.search(value):
        return (
            "this query parameter holds a percent escape, as copied from a URL: give it "
            "decoded ('%2B' as '+', '%2F' as '/', '%3D' as '='), since it is encoded as it "
            "is sent (its value is not said here)"
        )
    return None


def checked(
    make: Callable[[], _T],
    data: Any,
    root: type[BaseModel],
    source: str,
    positions: Mapping[tuple, Any] | None = None,
    place: str = "",
    overridden: Sequence[tuple] = (),
    strings: str = "",
    options: Mapping[tuple, str] | None = None,
) -> _T:
    """What ``make()`` (pydantic's validation of ``data``, the keys of the model ``root``)
    returns, where ``data`` has no problem; else the one ConfigError line for its problems,
    pydantic's (:func:`validation_error`) and those of its storage_options that pydantic does
    not check (:func:`_option_problem`) together: the first of them named at its line in
    ``source`` (from ``positions``, where known; the override's key, no line, for a value one
    of ``overridden`` set, or the command-line option of ``options`` that gave it:
    :func:`_where`), with the fix, then the keys of the others (" (also:
    ...)"). An option's problem had been said alone, before pydantic's were looked for (a
    bad ``cluster.workers`` beside ``anon: 'false'`` went unsaid). Never says a value of
    storage_options. Used by the models' constructors and ``model_validate`` and by
    :func:`~pipeline.config.loading.parse_config` (a file or a mapping) alike. ``strings``:
    for ``model_validate_strings``, the call (``pipeline.Config.model_validate``) whose
    fixes its lines name where a value is one it cannot give (a list, a boolean option),
    not a YAML spelling (:func:`strings_fix`)."""
    option = _option_problem(data, root, strings) if isinstance(data, Mapping) else None
    try:
        made = make()
    except ValidationError as e:
        raise validation_error(
            e, data, root, source, positions, place, overridden, option, strings, options
        ) from None
    if option is None:
        return made
    key, said = option
    where, line, extra = _where(key, source, positions, overridden, options)
    line_said = f"{where}: {_option_said(key, said)}"
    raise ConfigError(line_said, file=source, line=line, key=dotted_key(key), **extra)


def _anchored(key: tuple, positions: Any, line: int | None) -> tuple[int | None, str]:
    """Where the value at ``key`` is written, where an alias gives it or a mapping or list
    holding it (``factor: *x``, ``block: *dims``, ``- *stage``, the anchor on another line):
    (the line to say first, the alias's; the end of the line: " (the value of &x, written at
    line 1)", " (in the value of &x, written at line 2)"); ``line`` and '' otherwise. The
    line said first is the alias's, where the user used it (a ``!!str`` tag on the anchor had
    been said there alone, where no tag is; an item of a list an alias gave, at the anchor's
    line alone)."""
    alias = getattr(positions, "alias", None)
    at = alias(key) if callable(alias) and line is not None else None
    if at is None:
        return line, ""
    anchor, value, used, direct = at
    if value == used:
        return line, ""
    said = "the value" if direct else "in the value"
    return used, f" ({said} of &{anchor}, written at line {value})"


def dotted_key(key: Sequence[Any], empty: str = "") -> str:
    """``key`` (a location in a config's keys) as its dotted name, an empty part as
    ``empty``: a name in storage_options that holds a dot, a colon or a space as ``***``,
    since it is no option's and may be a value (``{secret:VALUE}``, no space after the
    colon, is one option named so) and would not be told from the dots between keys."""
    out: list[str] = []
    for i, part in enumerate(key):
        hidden = "storage_options" in key[:i] and isinstance(part, str)
        if hidden and (re.search(r"[.:\s]", part) is not None):
            part = "***"
        out.append(str(part) if part != "" else empty)
    return ".".join(out)


def _option_said(key: Sequence[Any], said: str) -> str:
    """An option's problem (at ``key``, why and the fix ``said``) as its line says it after
    where: the option's name, or for an empty name its mapping's (as for any key's)."""
    return f"{dotted_key(key[:-1] if key[-1:] == ('',) else key)}: {said}"


def _rank(loc: Sequence[Any], root: type[BaseModel]) -> tuple[int, ...]:
    """Where the key at ``loc`` (in the keys of the model ``root``) comes in the config's
    order, as pydantic reports its problems: each key by its field's place in its model (an
    unknown key after them), each list's item by its index."""
    out: list[int] = []
    for i, part in enumerate(loc):
        if isinstance(part, int):
            out.append(part)
            continue
        model = _model_at((*loc[: i + 1],), root)
        names = list(model.model_fields) if model is not None else []
        out.append(names.index(part) if part in names else len(names))
    return tuple(out)


def validation_error(
    e: ValidationError,
    data: Any,
    root: type[BaseModel],
    source: str,
    positions: Mapping[tuple, Any] | None = None,
    place: str = "",
    overridden: Sequence[tuple] = (),
    option: tuple[tuple, str] | None = None,
    strings: str = "",
    options: Mapping[tuple, str] | None = None,
) -> ConfigError:
    """Pydantic's error ``e``, of the model ``root`` made from ``data``, as one ConfigError
    line: its first problem, at its line in ``source`` (from ``positions``, where known),
    naming the key and the fix, then the keys of the others; never a value of
    storage_options. ``place`` is where ``root`` sits in a whole config (``cluster`` for
    :class:`~pipeline.config.models.ClusterConfig`), so that a key this version removed is
    said to be one; the key named is ``root``'s own. Fields ``file`` (``source``), ``line``
    (1-based, or None), ``key`` (dotted) and, for a removed key, ``removed`` (why); for a
    value one of ``overridden`` set, ``override`` and no line (:func:`_where`), and where
    ``options`` names the command-line option that gave it (``{("cluster", "scheduler"):
    "--scheduler"}``), ``option``, the line naming the option in the key's place
    (``--scheduler: ...``), as the command line took it. ``option``:
    a problem of the storage_options in ``data`` (:func:`_option_problem`), as (its key, why
    and the fix), among the others in the config's order (:func:`_rank`), after an unknown
    key (which explains the rest)."""
    errors = e.errors()
    err = _first_error(errors)
    key = _data_loc(err["loc"], data)
    locs = [_data_loc(x["loc"], data) for x in errors]
    message = None
    if option is not None:
        at = _rank(option[0], root)
        locs.insert(
            next((i for i, x in enumerate(locs) if _rank(x, root) > at), len(locs)), option[0]
        )
        first = _rank(key, root)  # an option inside pydantic's key is said, as the finer
        if err["type"] != "extra_forbidden" and at[: len(first)] <= first:
            key = option[0]
            message = _option_said(*option)
    where, line, extra = _where(key, source, positions, overridden, options)
    named = (options or {}).get(key) if "option" in extra else None
    dotted = dotted_key(key) or None
    more = _other_problems(
        key, locs, {_data_loc(x["loc"], data) for x in errors if x["type"] == "missing"}
    )
    used, anchored = _anchored(key, positions, line)
    if used != line:  # the alias's line, where the user used it
        where, line = f"{name_shown(source)}:{used}", used
    more = anchored + more
    # a key this version removed: why (its entry in REMOVED), not a typo to correct
    full = f"{place}.{dotted}" if place and dotted else dotted
    removed = REMOVED.get(full or "") if err["type"] == "extra_forbidden" else None
    said = message or _message(err, data, root, place, positions is not None, strings, named)
    return ConfigError(
        f"{said}{more}" if named else f"{where}: {said}{more}",
        file=source,
        line=line,
        key=dotted,
        **extra,
        **({"removed": removed} if removed else {}),
    )


def _where(
    key: tuple,
    source: str,
    positions: Mapping[tuple, Any] | None,
    overridden: Sequence[tuple],
    options: Mapping[tuple, str] | None = None,
) -> tuple[str, int | None, dict[str, str]]:
    """Where a problem at ``key`` is, for its line: (what the line starts with, the file's
    line or None, the error's ``override`` and ``option`` fields where it has them). A value
    an override set (``key`` at or under one of ``overridden``, or in a section that the
    file does not have and an override made) is named as the override, with no line of the
    file: the file's nearest key's line (its section's, or line 1 for a top-level key) was
    not where it came from; and as the command-line option that gave it, where ``options``
    names one for the override (``--scheduler``, field ``option``: the command line had
    found the key's words in the line to put the option's in their place)."""
    positions = positions or {}
    loc = key
    while loc and loc not in positions:
        loc = loc[:-1]
    made = key[: len(loc) + 1]  # the first of key's sections the file does not have, if any
    by = next((o for o in overridden if key[: len(o)] == o), None)
    if by is None and made != loc:
        by = next((o for o in overridden if o[: len(made)] == made), None)
    option = (options or {}).get(by) if by is not None else None
    if by is not None and option is not None:
        return option, None, {"override": dotted_key(by), "option": option}
    if by is not None:
        name = dotted_key(by)
        return (
            f"override {name!r} (given with {name_shown(source)}, not read from it)",
            None,
            {"override": name},
        )
    mark = positions.get(loc)
    if mark is None:
        return name_shown(source), None, {}
    return f"{name_shown(source)}:{mark.line + 1}", mark.line + 1, {}


def _other_problems(key: tuple, locs: list[tuple], missing: Collection[tuple] = ()) -> str:
    """The keys of the config's other problems, for the end of its one line: " (also: a.b,
    c)"; '' for none. Those of ``missing`` (required keys not given) are said to be so:
    " (also: a.b; required, and missing: input, stages)" (``pipeline.Config(foo=1)`` had
    ended "(also: input, output, stages)", not saying what was wrong with them). A location
    inside or around ``key`` is the same problem, as a union's alternatives report it
    (``output.chunks: [0, 5]`` at ``output.chunks`` and at ``output.chunks.0``): it had been
    counted as "1 more problem(s)", and never shown."""

    def related(a: tuple, b: tuple) -> bool:
        return a[: len(b)] == b or b[: len(a)] == a

    others = [loc for loc in dict.fromkeys(locs) if not related(loc, key)]
    # a location around others (a union's, again) adds nothing to them
    others = [a for a in others if not any(b != a and b[: len(a)] == a for b in others)]

    def said(locs: list[tuple]) -> str:  # an empty key's name as '' (cluster.'')
        return ", ".join(dotted_key(loc, "''") or "(top level)" for loc in locs)

    wrong = said([loc for loc in others if loc not in missing])
    absent = said([loc for loc in others if loc in missing])
    parts = [wrong] if wrong else []
    if absent:
        parts.append(f"required, and missing: {absent}")
    return f" (also: {'; '.join(parts)})" if parts else ""
