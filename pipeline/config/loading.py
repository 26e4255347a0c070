"""Loading a config: YAML read with the line of every key, validated into :class:`Config`.

Every problem (malformed YAML, an unknown key, a wrong type or value, an unknown stage, a
setting this version removed) becomes one :class:`~pipeline.errors.ConfigError` line that
names the file, the line and the key, and the fix where one is known; the error carries them
as its fields ``file``, ``line`` and ``key`` (worded by :mod:`~pipeline.config.problems`).
Command-line flags arrive as dotted overrides.
"""

from __future__ import annotations

import contextlib
import decimal
import math
import os
import re
import weakref
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pipeline.config.models import Config, validated, whole
from pipeline.config.problems import NAMED_DATA, dotted_key
from pipeline.errors import ConfigError, PipelineError, PlanError, name_shown
from pipeline.ops.stages import TaggedText


class _Located(yaml.SafeLoader):
    """SafeLoader that remembers the line of every mapping key and sequence item, and reads
    a whole number of more decimal digits than Python converts (4300) as the
    ``decimal.Decimal`` it says (:func:`~pipeline.config.models.whole`), which every key
    refuses as past float64's range: PyYAML's ``int()`` had raised Python's ValueError out of
    ``load_config`` (h67b)."""

    def construct_yaml_int(self, node: yaml.ScalarNode) -> Any:
        try:
            return super().construct_yaml_int(node)
        except ValueError:
            if not _DECIMAL_DIGITS.fullmatch(node.value):
                raise
            return whole(node.value)

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        """The node at ``index`` of ``parent``; one an alias gives (``factor: *x``) marked
        with its anchor's name, on the key's node in a mapping (``alias_of``) or on the list
        in a list (``aliased_items``, by index), so that a refusal of the value, said at the
        alias's line, says where the anchor writes it too (:meth:`_Lines.alias`)."""
        event = self.peek_event()
        node = super().compose_node(parent, index)
        if isinstance(event, yaml.AliasEvent) and parent is not None:
            if isinstance(index, yaml.Node):
                index.alias_of = event.anchor  # type: ignore[attr-defined]
            elif isinstance(index, int):  # with the alias's mark: the item's is the anchor's
                parent.__dict__.setdefault("aliased_items", {})[index] = (
                    event.anchor,
                    event.start_mark,
                )
        return node

    def compose_scalar_node(self, anchor: Any) -> yaml.ScalarNode:
        """The scalar node, marked :data:`_TAGGED` where the file gives its tag
        (``!!str 5``): PyYAML's node holds the same tag whether written or resolved, and
        :func:`_read_number` reads a plain scalar that PyYAML left as text as YAML 1.2's
        number, so ``factor: !!str 5`` had been the float 5.0 (an int16 input computed in
        float64, exit 0), where ``factor: "5"`` is refused as text."""
        tag = self.peek_event().tag
        node = super().compose_scalar_node(anchor)
        if tag not in (None, "!"):
            _TAGGED.add(node)
        return node

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        """The value of ``node``; a scalar whose tag's constructor fails on its text (``!!int
        abc``, ``!!float '0x10'``, ``!!bool 5``, ``!!timestamp 5``) a ConstructorError at its
        mark, which the config's refusal says at its line: Python's ValueError, KeyError or
        AttributeError had come out of the loader, said as ``error: KeyError: '5'``, no line
        nor key named."""
        try:
            return super().construct_object(node, deep)
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError):
            if not isinstance(node, yaml.ScalarNode):
                raise
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"{node.value!r} is no value its tag !!{node.tag.rsplit(':', 1)[-1]} "
                "reads: write the value without the tag, or one the tag reads",
                node.start_mark,
            ) from None


#: The scalar nodes whose tag the file gives (``!!str 5``), as :class:`_Located` composes
#: them (by identity: a node compares and hashes so).
_TAGGED: weakref.WeakSet[yaml.ScalarNode] = weakref.WeakSet()


#: A whole number in decimal digits, as YAML writes one (a sign, ``_`` between digits).
_DECIMAL_DIGITS = re.compile(r"[-+]?[0-9][0-9_]*")

_Located.add_constructor("tag:yaml.org,2002:int", _Located.construct_yaml_int)


class _Lines(Mapping):
    """The line (PyYAML's mark) of every key and list item of a config file, by its key as
    the data holds it (``("cluster", "workers")``, ``("stages", 0, "factor")``, ``()`` for
    the file's mapping): a key by the mark of its name, an item by its own. A key is found as
    PyYAML read it, not as written: ``1:``, ``yes:``, ``null:`` or ``2024-01-01:`` by the
    number, boolean, None or date the data holds (they had been found by their text, so not
    at all, and said at the line of the mapping that holds them: line 1 for a top-level
    key), and a key a merge brings (``<<: *base``) at its line in the mapping merged, where
    it is written (said at line 1 too, for a top-level key). Looked up along the key's path
    from the root, so an alias's keys are found wherever it is used, without walking every
    path an alias makes (an alias bomb's are too many to list); iterated, a node's keys once,
    under the first key that reaches it."""

    def __init__(self, root: yaml.Node) -> None:
        self._root = root
        self._loader = yaml.SafeLoader("")  # constructs a key's scalar as the data holds it

    def _key(self, node: yaml.Node) -> Any:
        if isinstance(node, yaml.ScalarNode):
            with contextlib.suppress(yaml.YAMLError, TypeError, ValueError):
                return self._loader.construct_object(node, deep=True)
            return node.value
        return id(node)

    def _children(self, node: yaml.Node) -> list[tuple[Any, yaml.Node, Any]]:
        """(key, value node, mark) of each key or item of ``node``."""
        if isinstance(node, yaml.MappingNode):
            return [(self._key(k), v, k.start_mark) for k, v in _merged_pairs(node)]
        if isinstance(node, yaml.SequenceNode):
            return [(i, v, v.start_mark) for i, v in enumerate(node.value)]
        return []

    def __getitem__(self, path: tuple) -> Any:
        node, mark = self._root, self._root.start_mark
        for part in path:
            for key, value, at in self._children(node):
                if key == part:
                    node, mark = value, at
                    break
            else:
                raise KeyError(path)
        return mark

    def alias(self, path: tuple) -> tuple[str, int, int, bool] | None:
        """Where the value at ``path`` is written where an alias gives it, or a mapping or list
        that holds it (``factor: *x``, ``block: *dims`` for ``block.1``, ``- *stage`` for
        ``stages.1.factor``): (the anchor's name, the 1-based line of the value, the line where
        the alias is used, whether the alias gives the value itself); None for any other value,
        or a path not in the file. Of aliases within an anchor's value, the first on the path
        is named: the one the user's key reaches. A refusal of the value is said at the
        alias's line, and says the value's line too
        (:func:`~pipeline.config.problems.validation_error`): an item of a list an alias gave
        had been said at the anchor's line alone."""
        node: yaml.Node = self._root
        first: tuple[str, int] | None = None
        mark: Any = None
        direct = False
        for part in path:
            found = None
            if isinstance(node, yaml.MappingNode):
                for k, v in _merged_pairs(node):
                    if self._key(k) == part:
                        anchor = getattr(k, "alias_of", None)
                        found = (
                            v,
                            k.start_mark,
                            None if anchor is None else (anchor, k.start_mark),
                        )
                        break
            elif isinstance(node, yaml.SequenceNode) and part in range(len(node.value)):
                item = node.value[part]
                found = (item, item.start_mark, node.__dict__.get("aliased_items", {}).get(part))
            if found is None:
                return None
            node, mark, used = found
            direct = used is not None
            if first is None and used is not None:
                first = (used[0], used[1].line + 1)
        if first is None:
            return None
        value = node.start_mark if direct else mark  # the alias's value, or the key's own line
        return first[0], value.line + 1, first[1], direct

    def __iter__(self) -> Iterator[tuple]:
        seen: set[int] = set()
        todo: list[tuple[tuple, yaml.Node]] = [((), self._root)]
        while todo:
            path, node = todo.pop()
            yield path
            if id(node) in seen:
                continue
            seen.add(id(node))
            todo += [((*path, k), v) for k, v, _ in reversed(self._children(node))]

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __bool__(self) -> bool:  # a file's lines, whose root is there: not walked to say so
        return True


def parse_config(
    data: Any,
    source: str = "<config>",
    positions: Mapping[tuple, Any] | None = None,
    overridden: Sequence[tuple] = (),
    options: Mapping[tuple, str] | None = None,
) -> Config:
    """Validate a mapping into a :class:`Config`.

    Raises :class:`ConfigError` naming ``source``, the line (from ``positions``, as
    :func:`load_config` records them) and the key; fields ``file``, ``line`` (1-based, or None)
    and ``key`` (dotted, e.g. ``stages.0.factor``). ``overridden``: the keys (as tuples) whose
    values an override set, not the file: a problem there names the override, and no line
    (the file's nearest line, its section's or its first, had been named), with the field
    ``override`` (the override's dotted key); ``options``: the command-line option that gave
    an override (by its key as a tuple), which such a problem names in its place (field
    ``option``). Top-level keys starting with ``x-`` are extension fields, ignored
    (:func:`is_extension`)."""
    if not isinstance(data, dict):
        raise ConfigError(
            f"{name_shown(source)}: the config must be a mapping of keys (input, output, ...)",
            file=source,
            line=None,
            key=None,
        )
    data = {k: v for k, v in data.items() if not is_extension(k)}
    return validated(data, source, positions, overridden, options)


def is_extension(key: Any) -> bool:
    """Whether the top-level ``key`` is an extension field, which the config ignores: a name
    starting with ``x-`` (``x-base: &base {...}``, to hold a YAML anchor that sections merge
    or alias), as docker-compose takes them. Such a key had been refused as an unknown key;
    any other unknown key still is, at its line."""
    return isinstance(key, str) and key.startswith("x-")


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
    text to YAML 1.1) give the decimal integer. A stage's parameter a merge brings (``- <<:
    *m``) is read as the stage's own (:func:`_merged_pairs`): it had stayed text, and the
    stage merged from ``&m {op: multiply, factor: 1e3}`` was refused where ``&m`` was not
    (review44). A typed number's value (``factor: {dtype: float32, value: 1e-5}``) is read
    the same way (r46b: it had stayed text, ``1e-5`` refused as no number and ``010`` read as
    the octal 8)."""
    if not isinstance(node, yaml.MappingNode):
        return
    for key_node, value_node in node.value:
        if key_node.value != "stages" or not isinstance(value_node, yaml.SequenceNode):
            continue
        for i, item in enumerate(value_node.value):
            if not isinstance(item, yaml.MappingNode):
                continue
            for k, v in _merged_pairs(item):
                if isinstance(v, yaml.MappingNode):  # a typed number: {dtype: ..., value: ...}
                    for tk, tv in _merged_pairs(v):
                        if isinstance(tk, yaml.ScalarNode) and tk.value == "value":
                            keys = ("stages", i, k.value, "value")
                            _read_number(tv, data, keys, path, tk.start_mark.line)
                elif getattr(k, "alias_of", None) is not None:  # its refusal says the anchor's
                    _read_number(v, data, ("stages", i, k.value), path, v.start_mark.line)
                else:
                    _read_number(v, data, ("stages", i, k.value), path, k.start_mark.line)


def _read_number(v: yaml.Node, data: Any, keys: tuple, path: Path, key_line: int) -> None:
    """Read the plain scalar ``v``, which PyYAML read as ``data[keys[0]][keys[1]]...``, as
    YAML 1.2 reads a number (:func:`_read_stage_numbers`), setting it there; refuse one that
    YAML 1.1 and YAML 1.2 read as different numbers. ``key_line``: the line (0-based) of the
    key, where a refusal of it is said: a ``!!str`` tag written on another line (an anchor's,
    ``a: &x !!str 5`` then ``factor: *x``) is said at its own too, which the key's line,
    the alias's, does not hold."""
    if not isinstance(v, yaml.ScalarNode):
        return
    if v in _TAGGED and v.tag == _STR and _reads_as_number(v.value):
        # ``!!str 5``: text, as the file says, which a stage's scalar refuses, naming the tag
        line = v.start_mark.line
        _set_at(
            data,
            keys,
            TaggedText.of(
                _value_at(data, keys), v.style is not None, line + 1 if line != key_line else None
            ),
        )
        return
    if v.style is not None:  # only a plain scalar
        return
    dotted = ".".join(str(k) for k in keys)
    read = _value_at(data, keys)
    if _LEADING_ZEROS.fullmatch(v.value) and not (isinstance(read, str) and "_" in read):
        meant = whole(v.value.replace("_", ""))
        if isinstance(read, int) and read != meant:
            _ambiguous(path, v, dotted, "leading zeros", read)
        _set_at(data, keys, meant)  # 08: text in YAML 1.1
        return
    if _BASE_60.fullmatch(v.value):
        _ambiguous(path, v, dotted, "base 60", read)
    if v.tag != _STR:
        _keep_past_float64(v.value, read, data, keys)
        return
    if v in _TAGGED:  # ``!!str five``: text, as the file says, which a stage's scalar refuses
        return
    value: int | float | None = None
    if re.fullmatch(r"0o[0-7]+", v.value):
        value = int(v.value[2:], 8)
    elif _YAML12_NUMBER.fullmatch(v.value):
        value = float(v.value)
    if value is not None:
        _set_at(data, keys, value)
        _keep_past_float64(v.value, value, data, keys)


_STR = "tag:yaml.org,2002:str"


def _reads_as_number(text: str) -> bool:
    """Whether ``text`` is a number (finite or not) as Python's ``float`` reads it."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def _keep_past_float64(text: str, read: Any, data: Any, keys: tuple) -> None:
    """Where the number ``text`` was read as a float of 0 or infinity it does not say
    (``factor: 1e-400``, below float64's least subnormal, or ``1e400``), put the number it
    says, a ``decimal.Decimal``, in its place, which a stage's scalar refuses, naming
    float64's range (``stages._as_float``, as for ``Decimal('1e-400')`` given through the
    API): ``1e-400`` had been the factor 0.0, and the run multiplied every element by 0,
    with exit 0."""
    if not isinstance(read, float) or (read != 0 and math.isfinite(read)):
        return
    try:
        said = decimal.Decimal(text.replace("_", ""))
    except decimal.InvalidOperation:  # .inf, .nan: what they say
        return
    if said.is_finite() and said != 0:
        _set_at(data, keys, said)


_MERGE = "tag:yaml.org,2002:merge"


def _merged_pairs(
    node: yaml.MappingNode,
    within: frozenset[int] = frozenset(),
    made: dict[int, list[tuple[Any, Any]]] | None = None,
) -> list[tuple[Any, Any]]:
    """The (key, value) nodes of the mapping ``node`` as PyYAML makes it, merges (``<<: *m``,
    ``<<: [*a, *b]``) brought in: its own keys first, then a later ``<<:``'s over an earlier
    one's, and in a list of them an earlier mapping's over a later one's, each key's first
    kept (as ``SafeConstructor.flatten_mapping`` lets them override); a key only once. A
    mapping merged into itself (``&m {<<: *m}``, which PyYAML reads) brings nothing more.
    Each mapping merged is flattened once (``made``), however often it is merged: merges of
    merges (``&b {<<: [*a, *a, ...]}``, ten deep) had taken time exponential in their
    depth."""
    made = {} if made is None else made
    if id(node) in made:
        return made[id(node)]
    within = within | {id(node)}
    pairs = [(k, v) for k, v in node.value if k.tag != _MERGE]
    for v in reversed([v for k, v in node.value if k.tag == _MERGE]):
        for src in v.value if isinstance(v, yaml.SequenceNode) else [v]:
            if isinstance(src, yaml.MappingNode) and id(src) not in within:
                pairs += _merged_pairs(src, within, made)
    out: list[tuple[Any, Any]] = []
    seen: set[Any] = set()
    for k, v in pairs:
        name = (k.tag, k.value) if isinstance(k, yaml.ScalarNode) else id(k)
        if name not in seen:
            seen.add(name)
            out.append((k, v))
    made[id(node)] = out
    return out


#: A line that is a key with its value after a colon and no space (``store:in.zarr``), which
#: YAML reads as text, not as a key; the key, the value.
_NO_SPACE_AFTER_COLON = re.compile(r"\s*(?:- )?([A-Za-z_][\w.-]*):([^\s/\\].*)")

#: A key with its value and no colon at all (``store in.zarr``).
_NO_COLON = re.compile(r"\s*(?:- )?([A-Za-z_][\w.-]*)\s+([^:#]+)")


def _yaml_hint(e: yaml.YAMLError, text: str) -> tuple[int, str] | None:
    """The line (1-based) and the words of what a new user's YAML mistake most likely is,
    where PyYAML's own words name none (``expected <block end>, but found '?'``, ``mapping
    values are not allowed here``, ``found unexpected end of stream``), said at the line to
    mend: a key indented less, or more, than the keys of its mapping (a stage's key under its
    ``- op:`` but left of ``op``), a key without the space after its colon or without its
    colon (YAML reads the line as text and fails at the next one), a value holding ``': '``
    unquoted, a quote or a bracket never closed, a tab's indent. None where none of these is
    seen."""
    mark = getattr(e, "problem_mark", None)
    problem = getattr(e, "problem", None) or ""
    context = getattr(e, "context", None) or ""
    start = getattr(e, "context_mark", None)
    if mark is None:
        return None
    lines = text.splitlines()

    def shown(i: int) -> str:
        return repr(lines[i].strip()) if i < len(lines) else "''"

    def indent(i: int) -> int:
        return len(lines[i]) - len(lines[i].lstrip(" "))

    if start is not None and "quoted scalar" in context:
        return start.line + 1, (
            f"the quote opened at line {start.line + 1} ({shown(start.line)}) is never "
            "closed: end the value with the same quote"
        )
    if start is not None and context.startswith(
        ("while parsing a flow sequence", "while parsing a flow mapping")
    ):  # not "a flow node", whose mark is the character found (``[}``), no bracket opened
        opened = "[" if "sequence" in context else "{"
        closed = "]" if opened == "[" else "}"
        return start.line + 1, (
            f"the '{opened}' at line {start.line + 1} ({shown(start.line)}) is not closed by "
            f"'{closed}' where its entries end: close it there, or write the entries as "
            "indented lines instead"
        )
    if mark.line >= len(lines):
        return None
    if "'\\t'" in problem:  # found character '\t' that cannot start any token
        if lines[mark.line][: mark.column].strip():  # after the line's text: before a comment
            return mark.line + 1, (
                f"line {mark.line + 1} holds a tab at column {mark.column + 1}, where YAML "
                "takes spaces only: replace the tab with spaces"
            )
        return mark.line + 1, (
            f"line {mark.line + 1} is indented with a tab, and YAML indents with spaces "
            "only: replace the tab with spaces"
        )
    if problem.startswith("expected <block end>, but found"):
        return mark.line + 1, (
            f"line {mark.line + 1} ({shown(mark.line)}) is indented less than the keys above it "
            "that it belongs with: the keys of one mapping line up at one indent (a stage's "
            "keys at the column of its op, after the '- ')"
        )
    if problem != "mapping values are not allowed here":
        return None
    before = lines[mark.line][: mark.column]
    if ": " in before.lstrip().removeprefix("- "):  # key: a: b
        return mark.line + 1, (
            f"line {mark.line + 1} ({shown(mark.line)}) holds ': ' in its value: quote the "
            "value ('...'), or put one key on each line"
        )
    above = next(
        (i for i in range(mark.line - 1, -1, -1) if lines[i].strip()[:1] not in ("", "#")),
        None,
    )
    if above is None:
        return None
    no_space = _NO_SPACE_AFTER_COLON.fullmatch(lines[above].rstrip())
    if no_space is not None:
        key, value = no_space.groups()
        return above + 1, (
            f"line {above + 1} ({shown(above)}) has no space after its colon, so YAML reads it "
            f"as text, not as a key: write '{key}: {value.strip()}'"
        )
    if ":" not in lines[above] and _NO_COLON.fullmatch(lines[above].rstrip()):
        return above + 1, (
            f"line {above + 1} ({shown(above)}) has no ':' after its key, so YAML reads it as "
            "text, not as a key: write the key, a colon and a space, then the value"
        )
    if indent(mark.line) > indent(above):
        return mark.line + 1, (
            f"line {mark.line + 1} ({shown(mark.line)}) is indented more than line "
            f"{above + 1} ({shown(above)}) above it, whose value it is read as: line the keys "
            "of one mapping up at one indent (a stage's keys at the column of its op)"
        )
    return None


def _refuse_cycles(
    node: yaml.Node,
    path: Path,
    key: tuple = (),
    mark: Any = None,
    within: set[int] | None = None,
    done: set[int] | None = None,
) -> None:
    """Refuse an alias used inside its own anchor's mapping or list (``input: &a {x: *a}``,
    ``&l [*l]``, ``&m {<<: *m}``), at the line of its key: the config would hold itself
    without end, and reading it had failed in Python's RecursionError, not a line
    (review44). Each node is walked once (``done``), however many aliases name it."""
    within = set() if within is None else within
    done = set() if done is None else done
    if id(node) in within:
        line = (mark or node.start_mark).line + 1
        dotted = dotted_key(key) or "(top level)"
        raise ConfigError(
            f"{name_shown(path)}:{line}: {dotted}: an alias of a mapping or list that holds it "
            "(used inside its own anchor), so the config would hold itself without end: write out "
            "what is meant there",
            file=str(path),
            line=line,
            key=dotted,
        )
    if id(node) in done:
        return
    within.add(id(node))
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            name = k.value if isinstance(k, yaml.ScalarNode) else "?"
            _refuse_cycles(v, path, (*key, name), k.start_mark, within, done)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _refuse_cycles(item, path, (*key, i), mark, within, done)
    within.discard(id(node))
    done.add(id(node))


#: The most values a config's aliases may repeat (its values written out, each alias as the
#: values it names, less those written in the file): a config needs a few; an alias bomb
#: ("billion laughs": ``b: &b [*a, *a, ...]`` over ``a: &a [x, x, ...]``, ten deep) makes
#: 10**10, which reading it (PyYAML's merges, the checks here, pydantic, the summary) would
#: take hours or all memory over.
MOST_REPEATED = 100_000


def _refuse_alias_bombs(root: yaml.Node, path: Path) -> None:
    """Refuse a config whose aliases repeat more than :data:`MOST_REPEATED` values, in one
    line at the top-level key that holds them (at the deepest key of a mapping that does,
    ``input.storage_options.x``), before PyYAML constructs it: its merges (``<<: [*a, *a,
    ...]``) copy every key they bring, so a merge bomb had taken time and memory
    exponential in its depth there, and an alias bomb of lists, which PyYAML makes as one
    shared list, in every check that walks the config (:func:`_Lines` aside). Each node's
    size is counted once (``sizes``). Called after :func:`_refuse_cycles` (a cycle has no
    size)."""
    sizes: dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        if id(node) not in sizes:
            n = 1
            if isinstance(node, yaml.MappingNode):
                n += sum(size(k) + size(v) for k, v in node.value)
            elif isinstance(node, yaml.SequenceNode):
                n += sum(size(v) for v in node.value)
            sizes[id(node)] = n
        return sizes[id(node)]

    total = size(root)
    repeated = total - len(sizes)
    if repeated <= MOST_REPEATED:
        return
    key: tuple = ()
    node, mark = root, root.start_mark
    while isinstance(node, yaml.MappingNode):  # down to the key that holds them
        big = [(k, v) for k, v in node.value if size(v) > MOST_REPEATED and k.tag != _MERGE]
        if not big:
            break
        k, node = big[0]
        key, mark = (*key, k.value if isinstance(k, yaml.ScalarNode) else "?"), k.start_mark
    line = mark.line + 1
    dotted = dotted_key(key) or "(top level)"
    raise ConfigError(
        f"{name_shown(path)}:{line}: {dotted}: its aliases make it {size(node):,} values "
        f"written out, and the config's aliases repeat {repeated:,}, more than the "
        f"{MOST_REPEATED:,} a config may (aliases of lists or mappings that hold aliases: an "
        "alias bomb?), which reading would take hours or all memory over: write out what is "
        "meant there, with fewer aliases",
        file=str(path),
        line=line,
        key=dotted,
    )


def _refuse_duplicate_keys(
    node: yaml.Node, path: Path, key: tuple = (), done: set[int] | None = None
) -> None:
    """Refuse a key given twice in one mapping (two ``cluster:`` sections, ``{workers: 1,
    workers: 2}``), at its second line, naming the first: PyYAML keeps the last silently, so
    the first was dropped without a word (review43). In storage_options the name is not said
    (it may be a value: :func:`pipeline.config.problems.dotted_key`). A merge (``<<: *base``)
    is no key given twice: what it brings is overridden by the mapping's own keys. Each node
    is walked once (``done``), at the first key that reaches it, however many aliases name
    it."""
    done = set() if done is None else done
    if id(node) in done:
        return
    done.add(id(node))
    if isinstance(node, yaml.MappingNode):
        seen: dict[tuple[str, str], int] = {}
        for k, v in node.value:
            here = (*key, k.value if isinstance(k, yaml.ScalarNode) else "?")
            if isinstance(k, yaml.ScalarNode) and k.tag != "tag:yaml.org,2002:merge":
                line = k.start_mark.line + 1
                if (k.tag, k.value) in seen:
                    _duplicate(path, here, seen[(k.tag, k.value)], line)
                seen[(k.tag, k.value)] = line
            _refuse_duplicate_keys(v, path, here, done)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _refuse_duplicate_keys(item, path, (*key, i), done)


def _duplicate(path: Path, key: tuple, first: int, line: int) -> None:
    """Raise the line of the key ``key`` given a second time at ``line`` (first at
    ``first``)."""
    secret = "storage_options" in key[:-1]
    at = key[:-1] if secret else key  # in storage_options, the mapping that holds the name
    dotted = dotted_key(at) or "(top level)"
    what = "this key"
    if secret:  # a header in ...storage_options.client_kwargs.headers (review44)
        held = str(at[-1]).lower() if at[-1] != "storage_options" else ""
        what = f"{_a(NAMED_DATA.get(held, 'option'))} (its name not said here)"
    where = "both on this line" if first == line else f"at lines {first} and {line}"
    raise ConfigError(
        f"{name_shown(path)}:{line}: {dotted}: {what} is given twice in one mapping ({where}); "
        "YAML keeps only the last, and the first would be lost without a word: keep one, "
        "merging what they set",
        file=str(path),
        line=line,
        key=dotted,
    )


def _a(thing: str) -> str:
    """``thing`` with its article: "a header", "an option"."""
    return f"{'an' if thing[:1] in 'aeiou' else 'a'} {thing}"


def _refuse_ambiguous_numbers(
    node: yaml.Node,
    path: Path,
    key: str = "",
    done: set[int] | None = None,
    data: Any = None,
    keys: tuple = (),
) -> None:
    """Refuse a plain scalar anywhere outside ``stages`` (which :func:`_read_stage_numbers`
    reads) that YAML 1.1 (PyYAML) reads as a number other than YAML 1.2 would: ``chunks:
    [010]`` was 8 rows, ``threads_per_worker: 010`` 8 threads, ``array: 010`` the number 8
    where a name was meant. The line names both readings and, since the key may want text,
    the quoted form too. Each node is walked once (``done``), however many aliases name it.
    A float that float64 reads as 0 or infinity it does not say (``timeout: 1.0e-400``) is
    put in ``data`` (what PyYAML read) as the ``Decimal`` it says (:func:`_keep_past_float64`),
    which the key refuses naming float64's range (``models._refuse_read_as_zero``): it had been
    refused as "must be greater than 0 (got 0.0)" (h66a)."""
    done = set() if done is None else done
    if id(node) in done:
        return
    done.add(id(node))
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            name = k.value if isinstance(k, yaml.ScalarNode) else "?"
            if not key and name == "stages":
                continue
            dotted = f"{key}.{name}" if key else str(name)
            _refuse_ambiguous_numbers(v, path, dotted, done, data, (*keys, name))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _refuse_ambiguous_numbers(item, path, f"{key}.{i}", done, data, (*keys, i))
    elif isinstance(node, yaml.ScalarNode) and node.style is None:
        number = node.tag in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
        if not number:
            return
        read = yaml.load(node.value, Loader=_Located)
        if _LEADING_ZEROS.fullmatch(node.value):
            if read != whole(node.value.replace("_", "")):
                _ambiguous(path, node, key, "leading zeros", read, text_too=True)
        elif _BASE_60.fullmatch(node.value):
            _ambiguous(path, node, key, "base 60", read, text_too=True)
        elif data is not None:
            _keep_past_float64(node.value, read, data, keys)


def _value_at(data: Any, keys: tuple) -> Any:
    """What PyYAML read as ``data[keys[0]][keys[1]]...`` (None where the structure is not
    that)."""
    try:
        for k in keys:
            data = data[k]
    except (KeyError, IndexError, TypeError):
        return None
    return data


def _set_at(data: Any, keys: tuple, value: Any) -> None:
    """Set ``data[keys[0]][keys[1]]...`` to ``value``, where the structure is that."""
    with contextlib.suppress(KeyError, IndexError, TypeError):
        _value_at(data, keys[:-1])[keys[-1]] = value


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
    raise ConfigError(
        f"{name_shown(path)}:{line}: {key}: {said}", file=str(path), line=line, key=key
    )


#: The most characters of a config's path that a line quotes.
_PATH_SAID = 120


def _yaml_files_in(folder: Path) -> str:
    """`` (such as FOLDER/a.yaml, FOLDER/b.yaml)`` naming YAML files in ``folder`` (three at
    most), the config it may have been meant for; '' where it holds none or cannot be read."""
    try:
        found = sorted(f.name for f in folder.iterdir() if f.suffix in (".yaml", ".yml"))
    except OSError:
        return ""
    said = ", ".join(_file_said(str(folder / name)) for name in found[:3])
    return f" (such as {said}{', ...' if len(found) > 3 else ''})" if found else ""


def _examples_said() -> str:
    """`` (see configs/ for examples)``: the checkout's example configs, said as ``configs/``
    where the command runs in the checkout, by their whole path elsewhere (h66c: ``configs/``
    named a folder that was not there); '' where the package was installed without them."""
    folder = Path(__file__).resolve().parents[2] / "configs"
    if not folder.is_dir():
        return ""
    try:
        here = (Path.cwd() / "configs").resolve() == folder
    except OSError:  # the working folder deleted
        here = False
    return f" (see {'configs/' if here else f'{folder}{os.sep}'} for examples)"


def said_path(path: str) -> str:
    """``path`` as a line quotes it: whole where it is one line of at most
    :data:`_PATH_SAID` characters; cut to them where longer (:func:`_file_said`); not at
    all where it spans lines
    (no file's path does: it is a config's text given as its path, ``pipeline plan "$(cat
    c.yaml)"``, which was quoted whole, over several lines, credentials included)."""
    if "\n" in path or "\r" in path:
        return (
            f"a path of {len(path.splitlines())} lines ({len(path)} characters, not said "
            "here): YAML text given as the config's path? Give the YAML file's path"
        )
    return _file_said(path)


def _file_said(path: str) -> str:
    """The path of a file as a line quotes it: cut to :data:`_PATH_SAID` characters where
    longer, quoted where it holds a line break or another control character
    (:func:`~pipeline.errors.name_shown`: a file's name may, h81c)."""
    if len(path) <= _PATH_SAID:
        return name_shown(path)
    return f"{name_shown(path[:_PATH_SAID])}... (cut: {len(path)} characters)"


def load_config(
    path: str | Path,
    overrides: Mapping[str, Any] | None = None,
    *,
    options: Mapping[str, str] | None = None,
) -> Config:
    """Read and validate a YAML config file.

    ``overrides`` maps dotted keys (``"output.overwrite"``) to values set after reading,
    as the command line's flags do; a mapping given as a value merges into the file's mapping
    at that key, at any depth (``{"cluster": {"workers": 2}}`` keeps the file's other cluster
    keys), as ``dask.config.set`` does; any other value replaces the file's. An override
    sets its key alone: a mapping the file gives at two keys through a YAML alias (``input:
    {storage_options: &creds {...}}``, ``output: {storage_options: *creds}``) changes at the
    override's key only (``output.storage_options.anon`` had set the input's too). The
    Config's file, its text and the overridden keys are kept (:func:`locate_config`), so a
    refusal of one of its keys found later says the key's line. ``options`` maps an
    override's dotted key to the command-line option that gave it (``{"cluster.scheduler":
    "--scheduler"}``): a refusal of its value names the option in the key's place
    (``--scheduler: ...``, fields ``option`` and ``override``), as the command line took it.
    """
    if isinstance(path, str) and not path.strip() and not Path(path).is_file():  # `run ""`
        # Path('') is '.', which had been said as "config . is a folder"
        raise ConfigError(
            f"the config's path is empty ({path!r}): give the config file's path",
            file=path,
            line=None,
            key=None,
        )
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:  # YAML is UTF-8; an editor saved it in another encoding
        line = e.object[: e.start].count(b"\n") + 1
        raise ConfigError(
            f"{name_shown(p)}:{line}: the config is not UTF-8 text (byte "
            f"{e.object[e.start]:#04x}): save it as UTF-8",
            file=str(p),
            line=line,
            key=None,
        ) from None
    except FileNotFoundError:
        raise ConfigError(
            f"config file not found: {said_path(str(p))}{_examples_said()}",
            file=said_path(str(p)),
            line=None,
            key=None,
        ) from None
    except IsADirectoryError:  # `pipeline run configs`: its folder for the file
        raise ConfigError(
            f"config {said_path(str(p))} is a folder, not a YAML file: give the config "
            f"file's path{_yaml_files_in(p)}",
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
        if node is not None:  # before PyYAML constructs it: an alias bomb's merges
            _refuse_cycles(node, p)
            _refuse_alias_bombs(node, p)
        data = yaml.load(text, Loader=_Located)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{name_shown(p)}:{mark.line + 1}:{mark.column + 1}" if mark else name_shown(p)
        at = mark.line + 1 if mark else None
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        said = f"malformed YAML: {problem}"
        if problem == "but found another document":  # a '---' after the config (review44)
            said = (
                "a second YAML document starts here ('---' after the config), and a config "
                "is one document: delete the '---' line (and merge what follows it into the "
                "config), or keep the other document in a file of its own"
            )
        else:
            hint = _yaml_hint(e, text)
            if hint is not None:
                at, said = hint[0], f"malformed YAML: {hint[1]} (YAML: {problem})"
                where = f"{name_shown(p)}:{at}"
        raise ConfigError(
            f"{where}: {said}",
            file=str(p),
            line=at,
            key=None,
        ) from None
    positions: Mapping[tuple, Any] = _Lines(node) if node is not None else {}
    data = data if data is not None else {}
    if node is not None:
        _refuse_duplicate_keys(node, p)
        _refuse_ambiguous_numbers(node, p, data=data)
        _read_stage_numbers(node, data, p)
    for dotted in overrides or {}:
        _check_override_key(dotted, p)
    overridden: list[tuple] = []
    for dotted, value in (overrides or {}).items() if isinstance(data, dict) else ():
        target = data  # (a file that is no mapping is refused as one by parse_config)
        *parents, last = dotted.split(".")
        for i, k in enumerate(parents):
            held = target.setdefault(k, {})
            if isinstance(held, dict):  # a copy: a mapping the file shares (&x ... *x) is
                held = target[k] = dict(held)  # set at this key only, not at all its places
            target = held
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
                given = (options or {}).get(dotted)
                raise ConfigError(
                    f"{name_shown(p)}{at}: {held} holds "
                    f"{'a list' if isinstance(target, list) else 'a value'}, not a mapping of "
                    f"keys, so {given or f'the override {dotted!r}'} cannot be set in it: "
                    f"{fix}",
                    file=str(p),
                    line=mark.line + 1 if mark is not None else None,
                    key=dotted,
                    **({"option": given} if given else {}),
                )
        overridden += _leaves(tuple(dotted.split(".")), target.get(last, _ABSENT), value)
        target[last] = _merged(target.get(last), value)
    by_option = {tuple(k.split(".")): o for k, o in (options or {}).items()}
    config = parse_config(data, str(p), positions, overridden, by_option)
    set_keys = tuple(".".join(str(k) for k in key) for key in overridden)
    _SOURCES[id(config)] = _Source(str(p), text, set_keys)
    weakref.finalize(config, _SOURCES.pop, id(config), None)
    return config


@dataclass(frozen=True)
class _Source:
    """Where a :class:`Config` that :func:`load_config` made was written: the file's path
    (as its refusals say it), its text as it was read (a later edit of the file does not move
    a key's line), and the dotted keys its overrides set (no line of the file's is theirs)."""

    path: str
    text: str
    overridden: tuple[str, ...]


#: The source of each :class:`Config` :func:`load_config` made and that is still alive, by its
#: ``id`` (dropped as it is collected): kept beside the model, not in it, so that a config
#: loaded from a file stays equal to (and hashes as, pickles as, dumps as) the same config
#: given as a mapping or made from keywords, and a copy of it (``model_copy``, with changes
#: that are no file's) is none of the file's.
_SOURCES: dict[int, _Source] = {}


def _check_override_key(dotted: Any, path: Path) -> None:
    """Refuse an override's key that names no key: empty (``""``), or with an empty part
    (``"cluster."``, ``".workers"``, ``"cluster..workers"``), which had been said as an
    unknown key '(top level)' or 'cluster.'. One line naming it, with the field
    ``override``."""
    if isinstance(dotted, str) and dotted and all(dotted.split(".")):
        return
    what = "is empty" if dotted == "" else "has an empty part (a leading, trailing or double dot)"
    raise ConfigError(
        f"override {dotted!r} (given with {name_shown(path)}) {what}: an override's key is the "
        "dotted path of a key of the config, such as 'cluster.workers' or 'output.overwrite'",
        file=str(path),
        line=None,
        key=dotted,
        override=dotted,
    )


def _leaves(key: tuple, held: Any, value: Any) -> list[tuple]:
    """The keys whose values an override of ``key`` to ``value`` sets over what the file
    ``held`` there (:func:`_merged`): a mapping merged into the file's mapping sets its own
    keys, at any depth (none for an empty one), and so does a mapping that makes a section
    the file does not have (``held`` :data:`_ABSENT`: ``{"cluster": {"workers": 0}}`` over a
    file without ``cluster:`` had its error named by the override 'cluster', where a file
    with the section had it named 'cluster.workers'); any other value, or a mapping in
    place of the file's value, the whole of ``key``."""
    if isinstance(value, Mapping) and isinstance(held, dict):
        return [
            leaf for k, v in value.items() for leaf in _leaves((*key, k), held.get(k, _ABSENT), v)
        ]
    if isinstance(value, Mapping) and value and held is _ABSENT:  # a section the file lacks
        return [leaf for k, v in value.items() for leaf in _leaves((*key, k), _ABSENT, v)]
    return [key]


#: What :func:`_leaves` is told the file held at a key it does not have.
_ABSENT = object()


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


#: How a refusal of a config given as a mapping (to :func:`pipeline.run`, ``plan``, ``verify``)
#: names it, where a file's names the file: its line begins ``the config mapping:``.
MAPPING = "the config mapping"


def config_key(e: PipelineError) -> str | None:
    """The dotted key of the config that ``e`` refuses, where its line may still say where that
    key is: the ``key`` field of a :class:`ConfigError` or a :class:`PlanError` (the kinds whose
    ``key`` is a setting of the config: an :class:`~pipeline.errors.InputError`'s, a
    :class:`~pipeline.errors.ChunkError`'s or a :class:`~pipeline.errors.StoreError`'s is a
    key in a store), where ``e`` names no file nor line yet and is not of a command-line
    option (``option``); None otherwise."""
    if not isinstance(e, (ConfigError, PlanError)):
        return None
    if getattr(e, "file", None) is not None or getattr(e, "line", None) is not None:
        return None
    key = getattr(e, "key", None)
    if not isinstance(key, str) or not key or getattr(e, "option", None) is not None:
        return None
    return key


def _key_parts(key: str) -> list[Any]:
    """A dotted key's parts as the data holds them: a list's index as a number."""
    return [int(p) if p.isdigit() else p for p in key.split(".")]


def locate(
    e: PipelineError, path: str | os.PathLike[str], overridden: Collection[str] = ()
) -> None:
    """Give ``e``, a refusal of the config read from the YAML file ``path`` that names its key
    (:func:`config_key`: a :class:`ConfigError`'s or :class:`PlanError`'s field ``key``,
    dotted) but not where it is, the file and line of that key, as the refusals of
    :func:`load_config` have them: its line begins ``c.yaml:5:`` and its fields ``file`` and
    ``line`` are set (in place, its type and other fields kept). Such refusals come after the
    file was read, from checks of the whole config (the plan's, generate's:
    ``output.shards [4, 50, 64] is not a whole multiple of output.chunks [3, 50, 64]``,
    ``input.generate.shards [10, 50, 64] is not a whole multiple of chunks [3, 50, 64]`` had
    named no file nor line). A key the file does not write (a default) is said at the line
    of its nearest section the file writes. Nothing changes where :func:`config_key` gives
    none, where the key is set by an override (``overridden``: their dotted keys, or one of
    its sections), where the file writes none of its sections, or where the file cannot be
    read again."""
    if config_key(e) is None:
        return
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, ValueError):
        return
    _locate_in(e, str(Path(path)), text, overridden)


def locate_config(e: PipelineError, config: Any) -> None:
    """Give ``e``, a refusal of a key of ``config`` that says not where that key is
    (:func:`config_key`), the file and line of that key, as :func:`locate` gives a refusal of
    a file's path, where ``config`` is a :class:`Config` that :func:`load_config` read from
    a file (and is not a copy of it): the line as the file was when it was read, not a key an
    override set. Nothing changes for any other config (a mapping's, a model made from
    keywords, a copy), which says nothing of where it was written."""
    source = _SOURCES.get(id(config)) if isinstance(config, Config) else None
    if source is not None and config_key(e) is not None:
        _locate_in(e, source.path, source.text, source.overridden)


def _locate_in(e: PipelineError, file: str, text: str, overridden: Collection[str]) -> None:
    """:func:`locate` of the config file ``file`` whose text is ``text``."""
    key = config_key(e)
    if key is None or any(key == o or key.startswith(f"{o}.") for o in overridden):
        return
    try:
        node = yaml.compose(text, Loader=_Located)
    except (ValueError, yaml.YAMLError):
        return
    if node is None:
        return
    lines = _Lines(node)
    parts = _key_parts(key)
    for n in range(len(parts), 0, -1):
        mark = lines.get(tuple(parts[:n]))
        if mark is not None:
            break
    else:
        return
    line = mark.line + 1
    e.args = (f"{name_shown(file)}:{line}: {e}", *e.args[1:])
    e.__dict__.update(file=file, line=line)


def locate_in_mapping(e: PipelineError, data: Any, source: str = MAPPING) -> None:
    """Give ``e``, a refusal of the config given as the mapping ``data`` (to
    :func:`pipeline.run`, ``plan`` or ``verify``) that names its key (:func:`config_key`) but
    not where it is, the words that a refusal of that mapping's parsing begins with:
    ``the config mapping: output.shards [4, 50, 64] is not a whole multiple of ...``, its
    field ``file`` ``source`` and ``line`` None, as :func:`parse_config` gives them (in place,
    its type and other fields kept), so that a refusal of a key says where the key is,
    whenever it is found. As :func:`locate` says a file's: only where the mapping holds the
    key or one of its sections (a key no part of which the mapping gives is none of its)."""
    key = config_key(e)
    if key is None or not isinstance(data, Mapping):
        return
    if _key_parts(key)[0] not in data:  # the key's section: the mapping gives none of it
        return
    e.args = (f"{name_shown(source)}: {e}", *e.args[1:])
    e.__dict__.update(file=source, line=None)
