"""Loading a config: YAML read with the line of every key, validated into :class:`Config`.

Every problem (malformed YAML, an unknown key, a wrong type or value, an unknown stage, a
setting this version removed) becomes one :class:`~pipeline.errors.ConfigError` line that
names the file, the line and the key, and the fix where one is known; the error carries them
as its fields ``file``, ``line`` and ``key``. Command-line flags arrive as dotted overrides.
"""

from __future__ import annotations

import contextlib
import difflib
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from pipeline.config.models import Config
from pipeline.config.urls import (
    url_fragment,
    url_query,
    url_userinfo,
    without_query,
    without_userinfo,
)
from pipeline.errors import ConfigError
from pipeline.ops.stages import REGISTRY, known_stages


class _Located(yaml.SafeLoader):
    """SafeLoader that remembers the line of every mapping key and sequence item."""


def _positions(node: yaml.Node, path: tuple = (), out: dict | None = None) -> dict:
    out = {} if out is None else out
    out.setdefault(path, node.start_mark)
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            key = k.value
            out[path + (key,)] = k.start_mark
            _positions(v, path + (key,), out)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            out[path + (i,)] = v.start_mark
            _positions(v, path + (i,), out)
    return out


def _model_at(loc: Sequence[Any]) -> type[BaseModel] | None:
    """The model class that owns the last key of ``loc`` (outside ``stages``)."""
    model: type[BaseModel] | None = Config
    for part in loc[:-1]:
        f = model.model_fields.get(part) if model else None
        if f is None:
            return None
        ann = f.annotation
        args = [a for a in getattr(ann, "__args__", (ann,)) if isinstance(a, type)]
        model = next((a for a in args if issubclass(a, BaseModel)), None)
    return model


def _data_loc(loc: Sequence[Any], data: Any) -> tuple:
    """The part of a pydantic error location that indexes the user's data.

    Pydantic adds union-branch and validator labels (``float``, ``function-before[...]``) and
    stage tags; keep only the keys and indices that exist in the data, plus a final missing or
    unknown key.
    """
    out: list[Any] = []
    node = data
    for i, part in enumerate(loc):
        if (isinstance(node, dict) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and part < len(node)
        ):
            out.append(part)
            node = node[part]
        elif i == len(loc) - 1 and isinstance(node, dict) and isinstance(part, str):
            out.append(part)  # a missing key: not in the data, still the one to name
    return tuple(out)


#: Settings that earlier versions had and this one removed, because no measurement showed a
#: gain (README, "Benchmarks"): a config that still sets one is told so, instead of being
#: offered a close key name.
REMOVED = {
    "output.spare_files": "pre-allocated files made no run faster",
    "cluster.gpu_codec_slots": "limiting the threads in the GPU codec made no run faster",
    "cluster.host_encode_share": "encoding part of each block on the CPU made runs slower",
    "cluster.memory_pool": "GPU workers always use CuPy's memory pool",
}


def _message(err: Mapping[str, Any], data: Any) -> str:
    loc = _data_loc(err["loc"], data)
    kind = err["type"]
    key = ".".join(str(p) for p in loc) or "(top level)"
    if kind == "extra_forbidden" and key in REMOVED:
        return f"unknown key {key!r} (removed in this version: {REMOVED[key]}; delete it)"
    if kind == "extra_forbidden":
        owner = _stage_owner(loc, data) if loc[:1] == ("stages",) else _model_at(loc)
        names = [n for n in owner.model_fields] if owner else []
        if loc[:1] == ("stages",):
            names.append("op")
        close = difflib.get_close_matches(str(loc[-1]), names, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"valid keys: {', '.join(names)}"
        return f"unknown key {key!r} ({hint})"
    if kind == "union_tag_invalid":
        tag = err.get("ctx", {}).get("tag")
        return f"unknown stage {tag!r} at {key}; known stages: {known_stages()}"
    if kind == "union_tag_not_found":
        return f"{key}: each stage needs 'op:' naming it; known stages: {known_stages()}"
    if kind in ("model_attributes_type", "dict_type") and len(loc) == 2 and loc[0] == "stages":
        return f"{key}: a stage is a mapping such as '- op: square'; known stages: {known_stages()}"
    if kind == "missing":
        return f"missing key {key!r}"
    if kind == "dict_type" and loc[-1:] == ("storage_options",):  # never its value
        return (
            f"{key}: must be a mapping of fsspec options, such as {{key: ..., secret: ...}} "
            "for s3:// (its value is not said here)"
        )
    if kind in ("too_short", "tuple_type") and key == "stages":  # [] or nothing at all
        known = known_stages()
        return f"stages: give at least one stage, such as '- op: square'; known stages: {known}"
    got = err.get("input")
    if isinstance(got, str) and (url_query(got) or url_fragment(got)) is not None:
        got = without_query(got)  # a URL's query (or fragment) may be a credential: never said
    said = False
    if isinstance(got, str) and url_userinfo(got) is not None:
        got = without_userinfo(got)  # s3://KEY:SECRET@...: neither said
        said = got in err["msg"]  # url_userinfo_problem names it so already
    # storage_options hold credentials: no part of them is ever said, whatever its type
    # (brk76: ``storage_options: "key=... secret=..."`` was quoted whole)
    secret = said or "storage_options" in loc
    got_s = "" if secret or isinstance(got, (dict, list)) else f" (got {got!r})"
    msg = err["msg"].removeprefix("Value error, ")
    return f"{key}: {msg}{got_s}"


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


def _option_problem(data: Mapping[str, Any]) -> tuple[tuple, str] | None:
    """The first value of storage_options' ``headers`` or ``params`` (at any depth: in a chain,
    ``{http: {params: ...}}``) that would not reach an HTTP server as written, as (its key,
    why and the fix), never the value (they are credentials); None where there is none.

    A header's value that is not a string (``X-Key: 987654321`` unquoted, a list): aiohttp
    sends only strings, and its error quoted the value. A parameter's value that is not a
    string or a number (a list, a mapping, a boolean, null): likewise. A parameter that holds
    a percent escape (``sig: a%2Bb%3D``, copied from a URL's query): aiohttp encodes every
    value as it sends it, so the server got ``%252B`` and answered 403; it goes decoded."""
    for side in ("input", "output"):
        section = data.get(side)
        options = section.get("storage_options") if isinstance(section, dict) else None
        if isinstance(options, dict):
            found = _options_problem(options, (side, "storage_options"))
            if found is not None:
                return found
    return None


#: Why an option's name that YAML read as no string (``1: x``, ``true: x``) is refused.
NAME_NOT_TEXT = (
    "an option's name must be a string (YAML reads this one as a number, a boolean, a date "
    "or null, and every file system and client takes its options by name): quote it, or "
    "correct it (its value is not said here)"
)


def _options_problem(options: Mapping[Any, Any], key: tuple) -> tuple[tuple, str] | None:
    """The first name in ``options`` (a store's ``storage_options``, or a mapping in them, at
    any depth) that is no string (:data:`NAME_NOT_TEXT`: s3fs, aiohttp and botocore each
    refused one with their own ``TypeError: keywords must be strings``, or sent it), or the
    first header or query parameter that would not be sent as written (:func:`_sent_problem`);
    as (its key, why and the fix), never a value."""
    for name, value in options.items():
        here = (*key, name)
        if not isinstance(name, str):
            return here, NAME_NOT_TEXT
        kind = name.lower()
        if kind in ("headers", "params") and isinstance(value, dict):
            for item, v in value.items():
                why = _sent_problem(kind, v)
                if not isinstance(item, str):
                    why = f"a {kind[:-1]}'s name must be a string: quote it"
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


def parse_config(
    data: Any,
    source: str = "<config>",
    positions: dict | None = None,
    overridden: Sequence[tuple] = (),
) -> Config:
    """Validate a mapping into a :class:`Config`.

    Raises :class:`ConfigError` naming ``source``, the line (from ``positions``, as
    :func:`load_config` records them) and the key; fields ``file``, ``line`` (1-based, or None)
    and ``key`` (dotted, e.g. ``stages.0.factor``). ``overridden``: the keys (as tuples) whose
    values an override set, not the file: a problem there names the override, and no line
    (the file's nearest line, its section's or its first, had been named), with the field
    ``override`` (the override's dotted key)."""
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: the config must be a mapping of keys (input, output, ...)",
            file=source,
            line=None,
            key=None,
        )
    problem = _option_problem(data)
    if problem is not None:
        key, said = problem
        where, line, extra = _where(key, source, positions, overridden)
        named = ".".join(str(k) for k in key)
        raise ConfigError(f"{where}: {named}: {said}", file=source, line=line, key=named, **extra)
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        errors = e.errors()
        err = _first_error(errors)
        key = _data_loc(err["loc"], data)
        where, line, extra = _where(key, source, positions, overridden)
        dotted = ".".join(str(k) for k in key) or None
        more = _other_problems(key, [_data_loc(x["loc"], data) for x in errors])
        # a key this version removed: why (its entry in REMOVED), not a typo to correct
        removed = REMOVED.get(dotted or "") if err["type"] == "extra_forbidden" else None
        raise ConfigError(
            f"{where}: {_message(err, data)}{more}",
            file=source,
            line=line,
            key=dotted,
            **extra,
            **({"removed": removed} if removed else {}),
        ) from None


def _where(
    key: tuple, source: str, positions: dict | None, overridden: Sequence[tuple]
) -> tuple[str, int | None, dict[str, str]]:
    """Where a problem at ``key`` is, for its line: (what the line starts with, the file's
    line or None, the error's ``override`` field where it has one). A value an override set
    (``key`` at or under one of ``overridden``, or in a section that the file does not have
    and an override made) is named as the override, with no line of the file: the file's
    nearest key's line (its section's, or line 1 for a top-level key) was not where it came
    from."""
    positions = positions or {}
    loc = key
    while loc and loc not in positions:
        loc = loc[:-1]
    made = key[: len(loc) + 1]  # the first of key's sections the file does not have, if any
    by = next((o for o in overridden if key[: len(o)] == o), None)
    if by is None and made != loc:
        by = next((o for o in overridden if o[: len(made)] == made), None)
    if by is not None:
        name = ".".join(str(k) for k in by)
        return (
            f"override {name!r} (given with {source}, not read from it)",
            None,
            {"override": name},
        )
    mark = positions.get(loc)
    if mark is None:
        return source, None, {}
    return f"{source}:{mark.line + 1}", mark.line + 1, {}


def _other_problems(key: tuple, locs: list[tuple]) -> str:
    """The keys of the config's other problems, for the end of its one line: " (also: a.b,
    c)"; '' for none. A location inside or around ``key`` is the same problem, as a union's
    alternatives report it (``output.chunks: [0, 5]`` at ``output.chunks`` and at
    ``output.chunks.0``): it had been counted as "1 more problem(s)", and never shown."""

    def related(a: tuple, b: tuple) -> bool:
        return a[: len(b)] == b or b[: len(a)] == a

    others = [loc for loc in dict.fromkeys(locs) if not related(loc, key)]
    # a location around others (a union's, again) adds nothing to them
    others = [a for a in others if not any(b != a and b[: len(a)] == a for b in others)]
    keys = [".".join(str(k) for k in loc) or "(top level)" for loc in others]
    return f" (also: {', '.join(keys)})" if keys else ""


#: A number as YAML 1.2 writes it (``1e39``, ``1e-3``, ``-.5``). PyYAML reads YAML 1.1, whose
#: floats need a dot and a signed exponent: there ``1e39`` is the text "1e39".
_YAML12_NUMBER = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")

#: A number YAML 1.1 and YAML 1.2 read otherwise: leading zeros (``010``: the octal 8 in YAML
#: 1.1, 10 in YAML 1.2; ``08``: text in YAML 1.1) and base 60 (``1:30``: 90 in YAML 1.1, text
#: in YAML 1.2).
_LEADING_ZEROS = re.compile(r"[-+]?0[0-9_]+")
_BASE_60 = re.compile(r"[-+]?[0-9][0-9_]*(:[0-5]?[0-9])+(\.[0-9_]*)?")


def _read_stage_numbers(node: yaml.Node, data: Any, path: Path) -> None:
    """Stage parameters written unquoted as YAML 1.2 numbers become numbers (``factor: 1e39``
    is the float 1e39, as YAML 1.2 and most tools read it, ``0o17`` the octal 15); quoted ones
    stay text, which a stage's scalar refuses (``factor: "5"`` is not coerced). A number that
    YAML 1.1 (PyYAML) and YAML 1.2 read as different numbers is refused (ConfigError at its
    line): ``value: 010`` was the octal 8, where YAML 1.2 and the person who wrote it read 10,
    and ``1:30`` was 90 (helper-U); leading zeros that change nothing (``007``, or ``08``,
    text to YAML 1.1) give the decimal integer."""
    if not isinstance(node, yaml.MappingNode):
        return
    for key_node, value_node in node.value:
        if key_node.value != "stages" or not isinstance(value_node, yaml.SequenceNode):
            continue
        for i, item in enumerate(value_node.value):
            if not isinstance(item, yaml.MappingNode):
                continue
            for k, v in item.value:
                plain = isinstance(v, yaml.ScalarNode) and v.style is None
                if not plain:
                    continue
                read = _stage_value(data, i, k.value)
                if _LEADING_ZEROS.fullmatch(v.value) and not (
                    isinstance(read, str) and "_" in read
                ):
                    meant = int(v.value.replace("_", ""), 10)
                    if isinstance(read, int) and read != meant:
                        _ambiguous(path, v, f"stages.{i}.{k.value}", "leading zeros", read)
                    with contextlib.suppress(KeyError, IndexError, TypeError):
                        data["stages"][i][k.value] = meant  # 08: text in YAML 1.1
                    continue
                if _BASE_60.fullmatch(v.value):
                    _ambiguous(path, v, f"stages.{i}.{k.value}", "base 60", read)
                if v.tag != "tag:yaml.org,2002:str":
                    continue
                value: int | float | None = None
                if re.fullmatch(r"0o[0-7]+", v.value):
                    value = int(v.value[2:], 8)
                elif _YAML12_NUMBER.fullmatch(v.value):
                    value = float(v.value)
                if value is not None:
                    with contextlib.suppress(KeyError, IndexError, TypeError):
                        data["stages"][i][k.value] = value


def _refuse_ambiguous_numbers(node: yaml.Node, path: Path, key: str = "") -> None:
    """Refuse a plain scalar anywhere outside ``stages`` (which :func:`_read_stage_numbers`
    reads) that YAML 1.1 (PyYAML) reads as a number other than YAML 1.2 would: ``chunks:
    [010]`` was 8 rows, ``threads_per_worker: 010`` 8 threads, ``array: 010`` the number 8
    where a name was meant. The line names both readings and, since the key may want text,
    the quoted form too."""
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            name = k.value if isinstance(k, yaml.ScalarNode) else "?"
            if not key and name == "stages":
                continue
            _refuse_ambiguous_numbers(v, path, f"{key}.{name}" if key else str(name))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _refuse_ambiguous_numbers(item, path, f"{key}.{i}")
    elif isinstance(node, yaml.ScalarNode) and node.style is None:
        number = node.tag in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
        if not number:
            return
        read = yaml.load(node.value, Loader=yaml.SafeLoader)
        if _LEADING_ZEROS.fullmatch(node.value):
            if read != int(node.value.replace("_", ""), 10):
                _ambiguous(path, node, key, "leading zeros", read, text_too=True)
        elif _BASE_60.fullmatch(node.value):
            _ambiguous(path, node, key, "base 60", read, text_too=True)


def _stage_value(data: Any, i: int, key: Any) -> Any:
    """What PyYAML read as ``stages[i][key]`` (None where the structure is not that)."""
    try:
        return data["stages"][i][key]
    except (KeyError, IndexError, TypeError):
        return None


def _ambiguous(
    path: Path, node: yaml.ScalarNode, key: str, why: str, read: Any, text_too: bool = False
) -> None:
    """Refuse a number that YAML 1.1 (PyYAML, which made ``read`` of it) reads otherwise than
    YAML 1.2 (``why``: leading zeros, base 60), naming both readings and how to write the one
    meant (``text_too``: and how to write it as text, for a key that may want a name)."""
    text = node.value
    if why == "leading zeros":
        digits = text.replace("_", "").lstrip("+-").lstrip("0") or "0"
        meant = f"{'-' if text.startswith('-') else ''}{digits}"
        old = f"{read} (octal)" if isinstance(read, int) else "text"
        said = f"{text} reads as {old} in YAML 1.1 but {meant} in YAML 1.2: write {meant}"
        if isinstance(read, int):
            said += f", or {read} if octal {text} was meant"
    else:
        said = (
            f"{text} reads as {read} in YAML 1.1 (base 60) but as text in YAML 1.2: write "
            f"{read} if that is meant"
        )
    if text_too:
        said += f', or "{text}" (quoted) for the text'
    line = node.start_mark.line + 1
    raise ConfigError(f"{path}:{line}: {key}: {said}", file=str(path), line=line, key=key)


#: The most characters of a config's path that a line quotes.
_PATH_SAID = 120


def said_path(path: str) -> str:
    """``path`` as a line quotes it: whole where it is one line of at most
    :data:`_PATH_SAID` characters; cut to them where longer; not at all where it spans lines
    (no file's path does: it is a config's text given as its path, ``pipeline plan "$(cat
    c.yaml)"``, which was quoted whole, over several lines, credentials included)."""
    if "\n" in path or "\r" in path:
        return (
            f"a path of {len(path.splitlines())} lines ({len(path)} characters, not said "
            "here): YAML text given as the config's path? Give the YAML file's path"
        )
    if len(path) <= _PATH_SAID:
        return path
    return f"{path[:_PATH_SAID]}... (cut: {len(path)} characters)"


def load_config(path: str | Path, overrides: Mapping[str, Any] | None = None) -> Config:
    """Read and validate a YAML config file.

    ``overrides`` maps dotted keys (``"output.overwrite"``) to values set after reading,
    as the command line's flags do; a mapping given as a value merges into the file's mapping
    at that key, at any depth (``{"cluster": {"workers": 2}}`` keeps the file's other cluster
    keys), as ``dask.config.set`` does; any other value replaces the file's.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:  # YAML is UTF-8; an editor saved it in another encoding
        line = e.object[: e.start].count(b"\n") + 1
        raise ConfigError(
            f"{p}:{line}: the config is not UTF-8 text (byte {e.object[e.start]:#04x}): save "
            "it as UTF-8",
            file=str(p),
            line=line,
            key=None,
        ) from None
    except FileNotFoundError:
        raise ConfigError(
            f"config file not found: {said_path(str(p))} (see configs/ for examples)",
            file=said_path(str(p)),
            line=None,
            key=None,
        ) from None
    except OSError as e:
        raise ConfigError(
            f"cannot read config {said_path(str(p))}: {e.strerror}",
            file=said_path(str(p)),
            line=None,
            key=None,
        ) from None
    try:
        node = yaml.compose(text, Loader=_Located)
        data = yaml.load(text, Loader=_Located)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{p}:{mark.line + 1}:{mark.column + 1}" if mark else str(p)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(
            f"{where}: malformed YAML: {problem}",
            file=str(p),
            line=mark.line + 1 if mark else None,
            key=None,
        ) from None
    positions = _positions(node) if node is not None else {}
    data = data if data is not None else {}
    if node is not None:
        _refuse_ambiguous_numbers(node, p)
        _read_stage_numbers(node, data, p)
    overridden: list[tuple] = []
    for dotted, value in (overrides or {}).items() if isinstance(data, dict) else ():
        target = data  # (a file that is no mapping is refused as one by parse_config)
        *parents, last = dotted.split(".")
        for i, k in enumerate(parents):
            target = target.setdefault(k, {})
            if not isinstance(target, dict):  # a list's index (stages.0.factor), a value's part
                held = ".".join(parents[: i + 1])
                mark = positions.get(tuple(parents[: i + 1]))
                at = f":{mark.line + 1}" if mark is not None else ""
                fix = (
                    "set it in the file, or pass the config to pipeline.run as a mapping "
                    "(yaml.safe_load) with the change made"
                    if isinstance(target, list)
                    else f"check the key, or write {held} in the file as a mapping of keys"
                )
                raise ConfigError(
                    f"{p}{at}: {held} holds "
                    f"{'a list' if isinstance(target, list) else 'a value'}, not a mapping of "
                    f"keys, so the override {dotted!r} cannot be set in it: {fix}",
                    file=str(p),
                    line=mark.line + 1 if mark is not None else None,
                    key=dotted,
                )
        overridden += _leaves(tuple(dotted.split(".")), target.get(last), value)
        target[last] = _merged(target.get(last), value)
    return parse_config(data, str(p), positions, overridden)


def _leaves(key: tuple, held: Any, value: Any) -> list[tuple]:
    """The keys whose values an override of ``key`` to ``value`` sets over what the file
    ``held`` there (:func:`_merged`): a mapping merged into the file's mapping sets its own
    keys, at any depth (none for an empty one); any other value, or a mapping in place of
    the file's value, the whole of ``key``."""
    if isinstance(value, Mapping) and isinstance(held, dict):
        return [leaf for k, v in value.items() for leaf in _leaves((*key, k), held.get(k), v)]
    return [key]


def _merged(held: Any, value: Any) -> Any:
    """An override's ``value`` set over what the file ``held`` at its key: a mapping merges
    into a mapping, key by key at any depth (as ``dask.config.set`` does; ``{"cluster":
    {"workers": 2}}`` had replaced the file's whole cluster section, its other keys lost);
    any other value replaces. The override's mappings are copied, never modified (a later
    dotted override sets its key in the copy)."""
    if isinstance(value, Mapping):
        out = dict(held) if isinstance(held, dict) else {}
        for k, v in value.items():
            out[k] = _merged(out.get(k), v)
        return out
    return value
