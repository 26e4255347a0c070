"""The run's configuration as frozen, validated pydantic models: one per section, and
:class:`Config` for the whole run.

The stage models are made from the stage registry (:mod:`pipeline.ops.stages`), one per stage,
``op`` naming it; so a new stage needs no change here. Nothing deeper in the code reads raw
dicts. :meth:`Config.public_dict` is the config as JSON with credentials masked, for summaries.
"""

from __future__ import annotations

import functools
import math
import os
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal, Self, TypeAlias, Union

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PositiveInt,
    SerializerFunctionWrapHandler,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    WithJsonSchema,
    WrapValidator,
    create_model,
    field_validator,
    model_serializer,
    model_validator,
)

from pipeline.config.problems import BoolNotNumber, checked, dotted_key
from pipeline.errors import CREDENTIAL_PARTS, ConfigError, kind_said
from pipeline.ops.stages import (
    PAST_FLOAT64,
    REGISTRY,
    StageParams,
    exact_hash,
    exactly_equal,
    refuse_null,
    without_null,
)

#: Text that is a number alone, as YAML would read it unquoted: ``'0.5'``, ``'4096'``, ``'1e9'``.
_NUMBER_TEXT = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*")


def _number_text(v: Any) -> Any:
    """Text that is a number alone (``'0.5'``, ``'4096'``) as the number YAML reads unquoted,
    a float where it has a point or an exponent; anything else as it is. A whole number of
    more digits than Python converts (4300) is the ``Decimal`` it says (:func:`whole`)."""
    if isinstance(v, str) and _NUMBER_TEXT.fullmatch(v):
        return whole(v) if re.fullmatch(r"\s*[+-]?\d+\s*", v) else float(v)
    return v


def whole(text: str) -> Any:
    """The whole number the decimal digits ``text`` write (a sign and ``_`` allowed), as an
    int; one of more digits than Python converts text to an int (4300, its
    ``sys.get_int_max_str_digits()``) as the ``decimal.Decimal`` it says, which every key
    refuses as past float64's range (:data:`~pipeline.ops.stages.PAST_FLOAT64`): ``int()``
    had raised its ValueError out of the YAML reader, not a line naming the key (h67b)."""
    try:
        return int(text)
    except ValueError:
        import decimal

        return decimal.Decimal(text.strip().replace("_", ""))


def _within_float64(v: Any) -> Any:
    """``v``, where it is no number past float64's range (an int, a ``Decimal``, or the
    float infinity that text such as ``'1e400'`` is made); else ValueError
    (:data:`~pipeline.ops.stages.PAST_FLOAT64`), as a stage's scalar past it is refused: a
    size of 10**400 bytes had passed the config, and the plan's division of it raised a bare
    OverflowError (h67b)."""
    if isinstance(v, float) and math.isinf(v):  # '1e400' given as text, and .inf
        raise ValueError(PAST_FLOAT64)
    if isinstance(v, bool) or not (isinstance(v, int) or type(v).__name__ == "Decimal"):
        return v
    try:
        float(v)
    except OverflowError:
        raise ValueError(PAST_FLOAT64) from None
    if math.isinf(float(v)) and v.is_finite():  # a Decimal: float() gives inf
        raise ValueError(PAST_FLOAT64)
    return v


def _parse_bytes(v: Any) -> Any:
    """Accept 1_000_000, '500MB', '16 GiB'; leave other values for the type check. A number
    given as text (``'0.5'``) is the number, as unquoted: dask's ``parse_bytes`` had cut it to
    whole bytes (``host_memory_limit: '0.5'`` was a budget of 0 bytes, not half, and
    ``target_bytes: '0.5'`` said "greater than 0 (got '0.5')"). A size of less than one byte
    with a unit (``'0.3 B'``) is refused (ValueError), where it had been 0, and one past
    float64's range (``10**400``, ``'1e400 GiB'``) as a stage's scalar is
    (:func:`_within_float64`)."""
    v = _number_text(v)
    if isinstance(v, str) and v.strip().lower() not in ("auto", ""):
        from dask.utils import parse_bytes

        try:
            size = parse_bytes(v)
        except ValueError:
            raise ValueError(f"not a size: {v!r} (write e.g. '16GiB' or '500MB')") from None
        except OverflowError:  # '1e400 GiB': dask's int() of an infinite float
            raise ValueError(PAST_FLOAT64) from None
        if size < 1:
            raise ValueError(f"not a size: {v!r} is less than one byte (write e.g. '16GiB')")
        return _within_float64(size)
    return _within_float64(v)


class Size(int):
    """A size in bytes that the config wrote as text with a unit (``8GB``, ``16 GiB``): the
    bytes, and :attr:`written`, the text as written, which a line that quotes the value says
    (the plan's had said ``8GB`` as 7.45 GiB, another unit than the user's). Equal to, hashes
    and pickles as the bytes' ``int`` does, so a config holding it is the same config."""

    written: str

    def __new__(cls, n: int, written: str) -> Size:
        size = super().__new__(cls, n)
        size.written = written
        return size

    def __reduce__(self) -> tuple[Any, ...]:
        return (Size, (int(self), self.written))

    @property
    def decimal(self) -> bool:
        """Written in a unit of powers of 1000 (``kB``, ``MB``, ``GB``, as Dask's
        ``parse_bytes`` reads them), not of 1024 (``KiB``, ``GiB``) nor in bytes."""
        unit = self.written.lstrip("0123456789._+- \t").strip().lower()
        return bool(unit) and "i" not in unit and unit not in ("b", "bytes")


def _keep_written(v: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """The size ``handler`` reads ``v`` as, a :class:`Size` that keeps ``v``'s text where
    ``v`` was text with a unit (``'8GB'``); what ``handler`` gives otherwise."""
    got = handler(v)
    if isinstance(v, str) and type(got) is int and _number_text(v) == v:  # not '0.5', '5'
        return Size(got, " ".join(v.split()))
    return got


_PERCENT = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*%\s*")


def _percent_as_fraction(v: Any) -> Any:
    """Refuse a memory limit given as a percentage (``host_memory_limit: 80%``), naming the
    fraction it means (0.8), which the key takes: it had been "not a size: '80%' (write e.g.
    '16GiB' or '500MB')", a fix that left the fraction unsaid. Anything else passes."""
    m = _PERCENT.fullmatch(v) if isinstance(v, str) else None
    if m is None:
        return v
    fraction = float(m.group(1)) / 100
    raise ValueError(
        f"{v!r} is a percentage, which is no size: write the fraction it means, "
        f"{fraction:g} (or a size such as '16GiB', or auto)"
    )


def _not_bool(v: Any) -> Any:
    """Refuse a boolean (Python's or NumPy's) where a number is wanted: pydantic's lax mode
    takes ``true`` as 1 and ``false`` as 0 (``cluster: {workers: true}`` ran 1 worker). The
    error, :class:`~pipeline.config.problems.BoolNotNumber`, is worded there with what the
    key takes. Anything else passes, for the type's own check (``'16GiB'`` included)."""
    np = sys.modules.get("numpy")
    if isinstance(v, bool) or (np is not None and isinstance(v, np.bool_)):
        raise BoolNotNumber("must be a number, not true/false")
    _refuse_read_as_zero(v)
    return v


def _refuse_read_as_zero(v: Any) -> None:
    """Refuse a number that float64 would read as 0 where it is not (``timeout: 1e-400``,
    below float64's least subnormal; the text a YAML file gives for it, a ``Decimal`` from
    JSON or the API): it had been refused as "must be greater than 0" or "a fraction must be
    in (0, 1]" of the 1e-400 written, which is (h66a). ValueError naming float64's range."""
    said = None
    if isinstance(v, str) and _NUMBER_TEXT.fullmatch(v):
        import decimal

        said = decimal.Decimal(v.strip())
    elif type(v).__name__ == "Decimal" and v.is_finite():
        said = v
    if said is not None and said != 0 and float(said) == 0:
        raise ValueError(
            "is nearer 0 than float64 holds (magnitudes down to 4.94e-324), which reads "
            "it as 0: give a number float64 holds"
        )


def _off(v: Any) -> Any:
    """``off`` as YAML reads it unquoted (false; ``no`` too) is the value ``'off'``: ``mps:
    off``, as the README writes it, had been refused as "Input should be 'auto' or 'off' (got
    False)"."""
    return "off" if v is False else v


#: On every numeric field and item of a list of numbers (a test finds them all from the
#: models' JSON schema): a boolean is no number.
NotBool = BeforeValidator(_not_bool)
Whole: TypeAlias = Annotated[int, NotBool]
Positive: TypeAlias = Annotated[PositiveInt, NotBool]

# "format": "bytes" tells the generated reference that a size such as '16GiB' is accepted too
_SIZE = {"type": "integer", "format": "bytes"}
Bytes: TypeAlias = Annotated[
    int,
    BeforeValidator(_parse_bytes),
    WrapValidator(_keep_written),
    NotBool,
    Field(gt=0),
    WithJsonSchema({**_SIZE, "minimum": 1}),
]
AutoBytes: TypeAlias = Annotated[
    Literal["auto"] | int,
    BeforeValidator(_parse_bytes),
    WrapValidator(_keep_written),
    NotBool,
    WithJsonSchema({"anyOf": [{"const": "auto"}, _SIZE]}),
]
#: The most elements along one axis of a block, chunk or shard: 2**40. A length the plan can
#: take apart had no bound, and one of 2**62 (``block: [4611686018427387904]``, a typo's
#: extra digits) took the plan hours, finding the divisors of the shard it makes (no chunk
#: or task of 2**40 elements, 4 TiB of float32, fits a machine).
MOST_PER_AXIS = 2**40

#: The most elements along one axis of a generated input: 2**48 (1 PiB of float32 in one
#: axis), so that its size in bytes stays far from the 2**63 that NumPy and Zarr count in.
MOST_GENERATED_PER_AXIS = 2**48

#: The most workers, or threads per worker, of a local cluster (``cluster.workers: 1e23``
#: had been taken, and refused by the memory plan as a budget of 0 B per worker).
MOST_WORKERS = 2**16

#: The most worker processes per GPU: each holds a CUDA context of its own (hundreds of
#: MiB), so no GPU holds more.
MOST_WORKERS_PER_GPU = 1024

#: The largest seed of a generated input: 2**64 - 1. The input's ``zarr.json`` records it,
#: and JSON readers other than Python's hold a whole number in 64 bits; a seed of 4301
#: digits had failed writing it, in Python's ValueError (h67b).
MOST_SEED = 2**64 - 1

#: The highest GPU id (CUDA's ordinals run from 0).
MOST_GPU_ID = 2**16 - 1

Shape: TypeAlias = tuple[Annotated[PositiveInt, Field(le=MOST_PER_AXIS), NotBool], ...]
GeneratedShape: TypeAlias = tuple[
    Annotated[PositiveInt, Field(le=MOST_GENERATED_PER_AXIS), NotBool], ...
]


def _no_mapping(cls: type[BaseModel], source: str, obj: Any) -> ConfigError:
    """The line of a model's validation (``source``) given no mapping: never its value (YAML
    or JSON text, a list, may hold credentials), only its type."""
    return ConfigError(
        f"{source}: takes a mapping of keys ({', '.join(cls.model_fields)}), not {kind_said(obj)}",
        file=source,
        line=None,
        key=None,
    )


def _as_given(model: BaseModel) -> dict[str, Any]:
    """``model``'s fields as a mapping that makes it again: a None left out stays left out
    (``output.array``'s null is refused); its sections as they are, models."""
    return {
        name: getattr(model, name)
        for name in type(model).model_fields
        if getattr(model, name) is not None or name in model.model_fields_set
    }


def _merged_into(held: Any, value: Any) -> Any:
    """``value``, given by :meth:`Model.model_copy`'s ``update``, over what the model
    ``held`` there: a mapping given for a section (a model) merges into the section's own
    keys, at any depth; any other value (a model, a list, a mapping for a mapping such as
    ``storage_options``, whose credentials a merge could keep) replaces."""
    if isinstance(value, Mapping) and isinstance(held, BaseModel):
        merged = _as_given(held)
        for key, item in value.items():
            merged[key] = _merged_into(merged.get(key), item)
        return merged
    return value


#: The keys whose value is a list (of numbers, or the stages): a set given for one is
#: refused (:meth:`Model._no_set`).
_LISTS = ("shape", "chunks", "shards", "block", "gpus", "stages", "dimension_names")


class Model(BaseModel):
    """Frozen, strict about unknown keys. Its ``repr()`` and ``str()`` (and so those of a
    plan, which holds the config) never show a credential: every value of
    ``storage_options`` as ``***`` (:func:`~pipeline.errors.hidden_options`), and every URL's
    password and query hidden (:func:`~pipeline.errors.hide_url_secrets`). Made from
    keywords, an invalid one is one :class:`~pipeline.errors.ConfigError` line (``__init__``)."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    @field_validator(*_LISTS, mode="before", check_fields=False)
    @classmethod
    def _no_set(cls, v: Any, info: ValidationInfo) -> Any:
        """Refuse a set (YAML's ``!!set {4, 8}``, a Python ``{4, 8}``) for a key that takes
        a list (:data:`_LISTS`): pydantic takes one as a list in its own order, so
        ``chunking: {block: !!set {4, 8}}`` had run with the block [8, 4] (and a generated
        shape, output chunks or GPU ids so), exit 0, and a repeated value had gone without
        a word."""
        if isinstance(v, (set, frozenset)):
            raise ValueError(
                "must not be a set (YAML's !!set, or a Python set), whose items have no order "
                "and no repeats: where a list is meant, write one, such as "
                + ("['y', 'x']" if info.field_name == "dimension_names" else "[4, 8]")
            )
        return v

    def __eq__(self, other: object) -> bool:
        """Equal where pydantic calls the fields equal and each number is of the same kind
        too (``host_memory_limit: 1``, a byte, is not ``1.0``, the whole; a stage's ``2`` is
        not ``2.0`` nor ``np.float32(2)``): :func:`~pipeline.ops.stages.exactly_equal`."""
        return exactly_equal(self, other)

    def __hash__(self) -> int:
        """Consistent with ``==``, ``storage_options`` hashed as their frozen form:
        :func:`~pipeline.ops.stages.exact_hash` (pydantic's had raised TypeError)."""
        return exact_hash(self)

    def __init__(self, /, *args: Any, **data: Any) -> None:
        """The model made from keywords (``pipeline.Config(input=..., ...)``,
        ``pipeline.config.ClusterConfig(workers=2)``); an invalid one is the one
        :class:`~pipeline.errors.ConfigError` line a config file's or mapping's problem is
        (:func:`~pipeline.config.problems.checked`), its ``file`` the call
        (``pipeline.Config()``), its ``key`` the keyword's, not pydantic's lines, which
        quoted every value given (storage_options' credentials too). An argument given by
        position (a mapping, a file's path) is an :class:`~pipeline.errors.OptionError` (a
        ``TypeError``, as Python's own was, and a ConfigError) naming the call that takes
        it (:func:`_positional_error`)."""
        cls = type(self)
        source = _constructor(cls)
        if args:
            raise _positional_error(cls, source, args)
        checked(lambda: super(Model, self).__init__(**data), data, cls, source, place=_place(cls))

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy of the model, with the values ``update`` gives checked and made as the
        constructor checks and makes them (``__init__``): pydantic's ``model_copy`` takes them
        as they are, so ``config.model_copy(update={"stages": [{"op": "square"}]})`` had
        reached the run with a dict for a stage (a bare AttributeError deep in it) and
        ``{"backend": "cpuu"}`` had run. An invalid one is the one
        :class:`~pipeline.errors.ConfigError` line, its ``file``
        ``pipeline.Config.model_copy()``. The sections not given are this model's own (a
        ``deep`` copy, where asked); a mapping given for a section merges into it, key by key
        at any depth, as :func:`~pipeline.config.load_config`'s overrides do
        (``{"cluster": {"workers": 2}}`` keeps the section's other keys: it had replaced the
        whole section, ``dashboard: ''`` back at its default, h71u), where a section's model
        (``ClusterConfig(workers=2)``) or any other value replaces what it is given for."""
        copied = super().model_copy(deep=deep)
        if not update:
            return copied
        cls = type(self)
        source = f"{_constructor(cls).removesuffix('()')}.model_copy()"
        data = _as_given(copied)
        for key, value in update.items():
            data[key] = _merged_into(data.get(key), value)
        return checked(
            lambda: super(Model, cls).model_validate(data),
            data,
            cls,
            source,
            place=_place(cls),
        )

    @classmethod
    def model_validate(cls, obj: Any, **kwargs: Any) -> Self:
        """The model made from the mapping ``obj``, as pydantic's ``model_validate`` makes it
        (its keyword arguments too); an invalid one is the one
        :class:`~pipeline.errors.ConfigError` line the constructor's is (``__init__``), its
        ``file`` ``pipeline.Config.model_validate()``: pydantic's ValidationError had been a
        line per problem, each quoting the value given, and storage_options' problems that
        pydantic does not check (``anon: 'false'``) had passed. A model of the class is
        itself, as pydantic's; anything else that is no mapping (unless read by its
        attributes, ``from_attributes=True``) is one line too."""
        source = f"{_constructor(cls).removesuffix('()')}.model_validate()"
        if isinstance(obj, cls):
            return super().model_validate(obj, **kwargs)
        if not isinstance(obj, Mapping) and not kwargs.get("from_attributes"):
            raise _no_mapping(cls, source, obj)
        data = obj  # an object's attributes as the keys named (from_attributes)
        if not isinstance(obj, Mapping):
            data = {n: getattr(obj, n) for n in cls.model_fields if hasattr(obj, n)}
        return checked(
            lambda: super(Model, cls).model_validate(obj, **kwargs),
            data,
            cls,
            source,
            place=_place(cls),
        )

    @classmethod
    def model_validate_json(cls, json_data: Any, **kwargs: Any) -> Self:
        """The model made from the JSON text ``json_data`` (str, bytes), as pydantic's
        ``model_validate_json`` makes it; an invalid one, or text that is no JSON object, is
        the one :class:`~pipeline.errors.ConfigError` line ``model_validate``'s is, its
        ``file`` ``pipeline.Config.model_validate_json()``, never quoting the text. It had
        been pydantic's ValidationError, a line per problem quoting each value given
        (``storage_options: "key=... secret=..."`` whole), and storage_options' problems that
        pydantic does not check (``anon: 'false'``) had passed (review43)."""
        import json

        source = f"{_constructor(cls).removesuffix('()')}.model_validate_json()"
        try:
            data = json.loads(json_data, parse_float=_json_number, parse_int=whole)
        except (TypeError, ValueError) as e:  # never the text: it may hold credentials
            where = (
                f" ({e.msg}: line {e.lineno}, column {e.colno})"
                if isinstance(e, json.JSONDecodeError)
                else ""
            )
            raise ConfigError(
                f"{source}: takes a JSON object of keys ({', '.join(cls.model_fields)}), and "
                f"this is no JSON{where}",
                file=source,
                line=None,
                key=None,
            ) from None
        if not isinstance(data, Mapping):
            raise _no_mapping(cls, source, data)
        validate = (
            functools.partial(super().model_validate, data, **kwargs)
            if _holds_decimal(data)  # a number float64 cannot hold: a stage refuses it so
            else functools.partial(super().model_validate_json, json_data, **kwargs)
        )
        return checked(validate, data, cls, source, place=_place(cls))

    @classmethod
    def model_validate_strings(cls, obj: Any, **kwargs: Any) -> Self:
        """The model made from the mapping ``obj`` of text values, as pydantic's
        ``model_validate_strings`` makes it; an invalid one is the one
        :class:`~pipeline.errors.ConfigError` line ``model_validate``'s is, its ``file``
        ``pipeline.Config.model_validate_strings()`` (it had been pydantic's ValidationError,
        quoting every value given: review43). A list that pydantic's strings mode refuses
        (a whole config's ``stages``, ``gpus: ["0"]``) is said at its key, with the call that
        takes it (:func:`_strings_list`): it had been "(top level): Input should be a valid
        string", naming no key, and quoting the list (review44)."""
        source = f"{_constructor(cls).removesuffix('()')}.model_validate_strings()"
        if not isinstance(obj, Mapping):
            raise _no_mapping(cls, source, obj)
        try:
            return checked(
                lambda: super(Model, cls).model_validate_strings(obj, **kwargs),
                obj,
                cls,
                source,
                place=_place(cls),
                strings=source.removesuffix("_strings()"),
            )
        except ConfigError:
            listed = _strings_list(cls, obj, kwargs)
            if listed is None:
                raise
            key = dotted_key(listed) or None
            call = source.removesuffix("_strings()")
            raise ConfigError(
                f"{source}: {key or '(top level)'}: is a list, and model_validate_strings "
                "takes text and mappings of text only (pydantic's strings mode reads no list): "
                f"give the config to {call}() as it is, or as JSON to {call}_json()",
                file=source,
                line=None,
                key=key,
            ) from None

    # Pydantic calls a model's own __init__ from model_validate, and for a model given as a
    # mapping inside another, unless it is marked as a base one, as BaseModel.__init__ is:
    # unmarked, a file's or a mapping's error (parse_config's validation, validated) named
    # pipeline.Config() instead of the file and line. This one validates as BaseModel's does,
    # only wording its errors, so it is marked as one (tests/test_api.py checks both ways).
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]

    def __repr_args__(self) -> Any:
        from pipeline.errors import hidden_options, hide_url_secrets

        for name, value in super().__repr_args__():
            if name == "storage_options":
                yield name, hidden_options(value)
            elif isinstance(value, str):
                yield name, hide_url_secrets(value)
            else:
                yield name, value


class CodecConfig(Model):
    """How chunks are compressed."""

    name: Literal["zstd", "none"] = Field("zstd", description="chunk compressor: zstd or none")
    level: Whole = Field(
        1, ge=-7, le=22, description="zstd level (CPU encoder; the GPU encoder has its own)"
    )
    checksum: bool = Field(False, description="zstd frame checksum")
    store_raw_below: Annotated[float | None, NotBool] = Field(
        None,
        gt=0,
        le=1,
        strict=True,  # a boolean is no fraction
        description="store a unit's frames uncompressed, as zstd frames of raw blocks (standard "
        "zstd that every reader decodes), when a sample of its frames compresses by less than "
        "this fraction of their bytes (0.1: saves under 10%): larger files, written much "
        "faster, for data that hardly compresses (frames under 4 KiB are left to zstd, which "
        "stores them raw itself where they do not compress); left out or null: compress every "
        "frame",
    )

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, v: Any) -> Any:
        return {"name": v} if isinstance(v, str) else v

    @model_validator(mode="after")
    def _raw_frames(self) -> CodecConfig:
        """Refuse what ``name: none`` cannot do: it writes no zstd frame, so a checksum asked
        of it (``checksum: true``) had been left out without a word (exit 0, the output
        unchecked), and a level other than the default was ignored; ``store_raw_below``
        likewise. ``level: 1`` and ``checksum: false``, the defaults a summary's config
        writes for every codec, stay accepted."""
        if self.name == "none" and self.checksum:
            raise ValueError(
                "checksum: true asks for a zstd frame checksum, and name: none writes no "
                "frame: set name: zstd (a checksum in each frame), or leave checksum out"
            )
        if self.name == "none" and self.level != type(self).model_fields["level"].default:
            raise ValueError(
                f"level {self.level} is zstd's compression level, and name: none compresses "
                "nothing: set name: zstd, or leave level out"
            )
        if self.store_raw_below is not None:
            if self.name != "zstd":
                raise ValueError(
                    "store_raw_below stores zstd frames of raw blocks: it needs name: zstd "
                    "(with name: none every frame is stored as it is already)"
                )
            if self.checksum:
                raise ValueError(
                    "store_raw_below writes frames without a content checksum: set "
                    "checksum: false, or leave store_raw_below out"
                )
        return self


def _dtype_name(v: Any) -> Any:
    """A dtype given through the API as NumPy's (``np.dtype('int16')``, the scalar type
    ``np.float32``) as its name (one of the other byte order as its code, ``'>f8'``), as the
    stages' typed numbers take one; other text as it is.
    Any other object is refused with one line that says to give the name as text (both had
    been "Input should be a valid string"). Raises ValueError."""
    np = sys.modules.get("numpy")
    if np is not None and (
        isinstance(v, np.dtype) or (isinstance(v, type) and issubclass(v, np.generic))
    ):
        dtype = np.dtype(v)
        return dtype.name if dtype.isnative else dtype.str  # '>f8', as text names it
    if isinstance(v, (str, bytes)):
        return v
    raise ValueError(
        f"must be a NumPy dtype's name as text, such as 'float32' (or a NumPy dtype), not "
        f"{kind_said(v)}"
    )


class GenerateConfig(Model):
    """How ``pipeline generate`` creates the input (deterministic from the seed)."""

    shape: GeneratedShape = Field(description="array shape, e.g. [4096, 4096, 64]")
    dtype: str = Field("float32", description="NumPy dtype name of the generated array")
    chunks: Shape | Literal["auto"] = Field(
        "auto",
        description="chunk shape (one zstd frame each); auto: about 128 KiB slabs in a shard "
        "(the nearest that tiles it where an axis has few divisors, larger if need be), about "
        "64 MiB slabs unsharded (shards: none, or zarr_format: 2)",
    )
    shards: Shape | Literal["auto", "none"] = Field(
        "auto",
        description="shard shape (Zarr v3); auto: about 128 MiB slabs (whole chunks where "
        "chunks are given); none: unsharded",
    )
    codec: CodecConfig = Field(
        default_factory=lambda: CodecConfig(), description="compressor of the input"
    )
    distribution: Literal["normal", "uniform", "ramp"] = Field(
        "normal",
        description="normal/uniform: random; ramp: a repeating arithmetic sequence that "
        "compresses well (for datasets larger than the disk). Floats: normal is N(0, 1), "
        "uniform [0, 1) (float16 rounds a few to 1.0), ramp 0, 0.5, ..., 511.5; integers: "
        "normal is 1000 x N(0, 1) rounded and clipped to the dtype (int8 and uint8 then "
        "hold mostly their bounds, unsigned types 0 for every negative draw), uniform the "
        "dtype's whole range, ramp 0, 1, ... up to 1023 or the dtype's largest",
    )
    seed: Whole = Field(
        0, ge=0, le=MOST_SEED, description="seed of the generator; same seed, same data"
    )
    zarr_format: Annotated[Literal[2, 3], NotBool] = Field(
        3, description="Zarr format of the generated store"
    )
    when_missing: bool = Field(
        False, description="`run` generates the input first when it does not exist"
    )

    _dtype = field_validator("dtype", mode="before")(classmethod(lambda cls, v: _dtype_name(v)))

    @field_validator("dtype")
    @classmethod
    def _a_dtype_the_stages_take(cls, v: str) -> str:
        """Refuse a name that is no NumPy dtype (``foo``: NumPy's bare "TypeError: data type
        'foo' not understood", naming no key) or one the stages do not compute on (``bool``,
        ``complex64``: "convert the input first", of an input the config makes), naming the
        dtypes to give instead (h60h)."""
        import numpy as np

        from pipeline.ops.stages import COMPUTED_ON, supported_dtype

        try:
            dtype = np.dtype(v)
        except (TypeError, ValueError):
            raise ValueError(
                f"{v!r} is no NumPy dtype: give one by its name, such as float32, int16 or uint8"
            ) from None
        if not supported_dtype(dtype):
            said = repr(v) if str(dtype) == v else f"{v!r} ({dtype})"
            raise ValueError(f"{said}: {COMPUTED_ON}; give one of those")
        return v

    @field_validator("shape")
    @classmethod
    def _has_an_axis(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        """Refuse ``shape: []``: a 0-d array, which the run refuses (no axis to cut into
        blocks). h60h: ``pipeline generate`` had written it, then refused it as an input."""
        if not v:
            raise ValueError(
                "[] makes a 0-d array (one value, no axis to cut into blocks), which the "
                "pipeline does not run on: give at least one axis ([1] for a single value)"
            )
        return v


#: Names of a Zarr store's own files (v3, v2, consolidated metadata) and of the pipeline's run
#: record, which no array of a path may be named.
RESERVED_NAMES = frozenset(
    (
        "zarr.json",
        ".zarray",
        ".zgroup",
        ".zattrs",
        ".zmetadata",
        ".pipeline",
    )
)


def _store_url(v: Any, output: bool = False) -> Any:
    """A store's path or URL, refused when it carries credentials that its file system does
    not take from a URL (:func:`url_userinfo_problem`: ``s3://KEY:SECRET@bucket/``; they go
    in storage_options), when it is a file URL naming another machine
    (``file://HOST/path``, which fsspec reads as the relative path ``HOST/path``), an HTTP
    URL with a query or a fragment (:func:`url_query_problem`: a query's parameters go in
    storage_options), or one that reads through one of fsspec's caching layers
    (:func:`caching_layer_problem`: a cache could hand a run an earlier run's bytes), or
    when it is empty or blank (the input had been read from, and the output written to, the
    folder the command runs in, or a folder named by spaces)."""
    from pipeline.config.urls import (
        caching_layer_problem,
        file_url_problem,
        url_query_problem,
        url_userinfo_problem,
    )

    problem = None
    if isinstance(v, str) and not v.strip():  # '' had been the folder the command runs in
        side = "output" if output else "input"
        problem = (
            f"names no store (it is empty, or spaces alone): give the {side} store's path or "
            "URL ('.' for the folder the command runs in)"
        )
    elif isinstance(v, str):
        problem = (
            url_userinfo_problem(v)
            or caching_layer_problem(v, output)
            or file_url_problem(v)
            or url_query_problem(v, output)
            or (_output_store_problem(v) if output else None)
        )
    if problem is not None:
        raise ValueError(problem)
    return v


#: The endings of files that other formats than Zarr keep in one file (netCDF, HDF5): an
#: output store named so is a Zarr folder that xarray's open_dataset, which picks its engine by
#: the name, does not open as one.
_ONE_FILE_FORMATS = {".nc": "a netCDF", ".nc4": "a netCDF", ".h5": "an HDF5", ".hdf5": "an HDF5"}


def _output_store_problem(v: str) -> str | None:
    """What is wrong with the output store's path or URL ``v`` where the output would be
    written somewhere else than meant, or as what readers do not open, without a word:
    spaces (or tabs, line breaks) at its start or end, which the written folder's name keeps
    (``store: "out.zarr "`` wrote ``out.zarr `` beside ``out.zarr``); a part named as a Zarr
    store's own file (``out.zarr/zarr.json``: a folder was made where the store's metadata
    document goes, and that store opened no more); a netCDF or HDF5 file's name (``out.nc``:
    a Zarr folder that ``xr.open_dataset`` takes for a netCDF file by its name). None
    otherwise (h72t)."""
    if v != v.strip():
        return (
            f"{v!r} begins or ends with a space (or a tab or line break), which the written "
            f"folder's name would keep, another than {v.strip()!r}: write it without"
        )
    parts = [p for p in v.replace("\\", "/").split("/") if p]
    clash = [p for p in parts if p in RESERVED_NAMES]
    if clash:
        folder = v[: v.rfind(clash[0])].rstrip("/") or "."
        return (
            f"{v!r} has a part named {clash[0]!r}, the name of a Zarr store's own file, not "
            f"of a store: give the store's folder ({folder!r}), and the array's path in it "
            "as output.array"
        )
    ending = os.path.splitext(parts[-1] if parts else "")[1].lower()
    if ending in _ONE_FILE_FORMATS:
        kind = _ONE_FILE_FORMATS[ending]
        return (
            f"{v!r} is named as {kind} file, but the output is a Zarr store (a folder), "
            f"which xarray's open_dataset would take for {kind} file by its name: name it "
            f"{parts[-1][: -len(ending)] + '.zarr'!r}, and write a netCDF copy from it "
            "(xr.open_zarr(STORE).to_netcdf(FILE))"
        )
    return None


def _store_options(v: Any, info: ValidationInfo) -> Any:
    """A store's storage_options, refused where a key names a file system that its URL does
    not chain (:func:`misplaced_options_problem`: ``{http: {...}}`` on a plain ``http://``)."""
    from pipeline.config.urls import misplaced_options_problem

    store = info.data.get("store")
    problem = misplaced_options_problem(store, v) if isinstance(store, str) else None
    if problem is not None:
        raise ValueError(problem)
    return v


def _fspath(v: Any) -> Any:
    """A store given as a path object (``pathlib.Path``, any ``os.PathLike``), as a notebook
    builds a config mapping for ``pipeline.run``, taken as the path it names (refused before
    as "Input should be a valid string"); anything else as it is."""
    return os.fspath(v) if isinstance(v, os.PathLike) else v


def _local_path_of(v: Any) -> str | None:
    """The local path a store object was opened at, where it is one of a local folder: a
    zarr-python ``LocalStore`` (its ``root``), an fsspec mapper (``FSMap``, what
    ``fsspec.get_mapper`` gives) or a zarr-python ``FsspecStore`` on the local file system;
    None otherwise (a remote one's URL would lose its storage_options, and may carry
    credentials: it is not said)."""
    root = getattr(v, "root", None)
    if isinstance(root, os.PathLike):  # zarr.storage.LocalStore
        return os.fspath(root)
    fs = getattr(v, "fs", None)
    where = root if isinstance(root, str) else getattr(v, "path", None)
    protocol = getattr(fs, "protocol", None)
    protocols = (protocol,) if isinstance(protocol, str) else tuple(protocol or ())
    if isinstance(where, str) and any(p in ("file", "local") for p in protocols):
        return where
    return None


def _held_in_memory(v: Any) -> bool:
    """Whether ``v`` holds its values in this process's memory, where no path or URL names
    them: a NumPy (or CuPy) array, a zarr-python ``MemoryStore``, or a zarr array or
    group on one (whose ``memory://...`` name is zarr's own, no fsspec URL reaches it)."""
    t = type(v)
    top = t.__module__.partition(".")[0]
    if top in ("numpy", "cupy") and hasattr(v, "__array__"):
        return True
    if top == "zarr":
        store = v if t.__name__ == "MemoryStore" else getattr(v, "store", None)
        return type(store).__name__ == "MemoryStore"
    return False


def _path_text(v: Any, key: str, side: str = "in") -> Any:
    """A store's path or URL (``key``: ``store``) or an array's path inside its store
    (``array``) as text: a store's path object (:func:`_fspath`) as the path it names (an
    array's is none: ``Path('')`` names ``'.'``), text (and bytes, which pydantic reads as
    text) as it is. Any other object (a zarr-python store or
    array, an fsspec mapper, an ``xarray.Dataset``, given through the API; ``side``: ``in``
    or ``out``, for the example its line gives) is refused with
    one line that says to give its path or URL as text: pydantic's "Input should be a valid
    string" had named neither. So is text holding a NUL character, which no name holds.
    Raises ValueError."""
    if key == "store":
        v = _fspath(v)
    if (isinstance(v, str) and "\0" in v) or (isinstance(v, bytes) and b"\0" in v):
        # no file or object name holds one: open() had raised "embedded null byte", said
        # as a bare ValueError naming neither the key nor the fix
        what = "store's path or URL" if key == "store" else "array's path"
        raise ValueError(
            f"the {what} holds a NUL character ('\\0'), which no file or object name can "
            "hold: write it without"
        )
    if v is None or isinstance(v, (str, bytes)):
        return v
    kind = kind_said(v)
    if type(v).__module__.partition(".")[0] == "xarray":
        raise ValueError(_xarray_refusal(v, key, kind, side))
    if key == "array":
        path = getattr(v, "path", None)
        said = f" ({path!r} here)" if isinstance(path, str) and hasattr(v, "store") else ""
        raise ValueError(
            f"must be the array's path inside the store as text (such as 'g/v'), not "
            f"{kind}: give its path{said}, and its store's path or URL as store"
        )
    if _held_in_memory(v):  # it has no path or URL to give: it was opened at none
        raise ValueError(
            f"must be the store's path or URL as text (such as '/data/{side}.zarr' or "
            f"'s3://bucket/{side}.zarr', or a pathlib.Path), not {kind}, which this process "
            "holds in its memory and no path names: write it to a Zarr store first "
            "(zarr.create_array(STORE, data=...), or xarray's to_zarr(STORE)) and give that "
            "store's path or URL"
        )
    local = _local_path_of(v)
    said = f", here {local!r}" if local is not None else ""
    raise ValueError(
        f"must be the store's path or URL as text (such as '/data/{side}.zarr' or "
        f"'s3://bucket/{side}.zarr', or a pathlib.Path), not {kind}: give the path or URL it "
        f"was opened at{said}, and its file system's options as storage_options"
    )


def _xarray_refusal(v: Any, key: str, kind: str, side: str) -> str:
    """The line refusing an xarray Dataset or DataArray (``kind``: :func:`kind_said`'s words)
    given as a store (``key`` ``store``) or as ``input.array``: it names what to give, the
    path of the local store it was opened from (its ``encoding["source"]``, as
    ``xr.open_zarr`` records it; a URL is not said: it may carry credentials) and the
    variable's name, or to write it to a Zarr store first. It had been said as "not a
    mapping" (a Dataset is a mapping of its variables), "not a xarray DataArray", naming
    neither."""
    encoding = getattr(v, "encoding", None)
    source = encoding.get("source") if isinstance(encoding, dict) else None
    if isinstance(source, str) and "://" in source and not source.startswith("file://"):
        source = None
    name = getattr(v, "name", None) if hasattr(v, "dims") and not hasattr(v, "data_vars") else None
    if key == "array":
        said = (
            f"its variable's path in the Zarr store ({name!r} here, after its group's path "
            "where the Dataset is a group's)"
            if isinstance(name, str)
            else "the path in the Zarr store of the variable to compute"
        )
        return (
            f"must be the array's path inside the store as text (such as 'g/v'), not {kind}, "
            f"the data itself: give {said}, and that store's path or URL as store"
        )
    if side == "out":
        fix = "give the path of the Zarr store to write the output to"
    elif isinstance(source, str):
        fix = f"give the path of the Zarr store it was opened from, here {source!r}"
    else:
        fix = "write it to a Zarr store first (to_zarr(STORE)) and give that store's path"
    return (
        f"must be the store's path or URL as text (such as '/data/{side}.zarr' or "
        f"'s3://bucket/{side}.zarr', or a pathlib.Path), not {kind}, the data itself: {fix}"
    )


def _address_text(v: Any, key: str) -> Any:
    """A cluster's address (``key``: ``scheduler``, ``dashboard``) as text; any other object
    (a ``distributed.Client`` or ``LocalCluster``, a port given as a number) refused with one
    line that says which text it takes (pydantic's "Input should be a valid string" had not).
    None passes, which pydantic refuses as any text key's null is (:func:`~pipeline.config.
    problems._null_text_problem`: it had been "not a NoneType (got None)"). Raises
    ValueError."""
    if v is None or isinstance(v, (str, bytes)):
        return v
    kind = kind_said(v)
    if key == "dashboard":
        raise ValueError(
            f"must be the dashboard's address as text, such as ':8787' or 'host:8787', or '' "
            f"for none, not {kind}"
        )
    address = getattr(v, "scheduler_address", None)  # a LocalCluster's, a Client's cluster's
    if not isinstance(address, str):
        address = getattr(getattr(v, "scheduler", None), "address", None)  # a Client's
    said = f", here {address!r}" if isinstance(address, str) else ""
    raise ValueError(
        f"must be the scheduler's address as text, such as 'tcp://host:8786', or 'local', not "
        f"{kind}: give its address{said}"
    )


def _address_printable(v: str, key: str) -> str:
    """A cluster's address (``key``: ``scheduler``, ``dashboard``) refused where it holds a
    line break or another character that does not print (YAML's ``scheduler: |``, a
    ``--scheduler "$(cat file)"`` with its line's end): no address holds one, and the
    cluster's messages, which name the address as given, had said it split or wrong (h81e).
    Refused as the config is read, before any cluster is started or joined, in one line that
    says it as Python writes it and the address without it. Raises ValueError."""
    if v.isprintable():
        return v
    example = "'tcp://host:8786'" if key == "scheduler" else "':8787'"
    kept = "".join(c for c in v if c.isprintable()).strip()
    fix = f"write {kept!r}" if kept else f"write the address alone, such as {example}"
    raise ValueError(
        f"{v!r} holds a line break or another character that does not print, which no "
        f"address has: {fix}"
    )


def _scheduler_named(v: str) -> str:
    """``cluster.scheduler`` refused where it is empty or only spaces (``scheduler: ""``,
    ``--scheduler ''``, a ``--scheduler "$ADDRESS"`` of an unset variable), which names no
    scheduler: the command line had dropped an empty ``--scheduler`` and started a local
    cluster without a word, and the file's had been refused only as a cluster was joined, as
    "not a Dask scheduler address (missing port number in address '')", with no line. Raises
    ValueError."""
    if v.strip():
        return v
    said = "empty" if not v else "only spaces"
    raise ValueError(
        f"{v!r} is {said}, which names no scheduler: give a scheduler's address, such as "
        "'tcp://host:8786', or leave it out for a local cluster"
    )


def _output_path(v: Any) -> Any:
    """The output array's path (:func:`_plain_path`), refused where a part of it begins or
    ends with a space (or a tab, a line break): ``array: "air5 "`` had written the variable
    ``air5 `` beside any ``air5``, without a word (h72t)."""
    if isinstance(v, str):
        odd = [p for p in v.replace("\\", "/").split("/") if p and p != p.strip()]
        if odd:
            raise ValueError(
                f"{v!r} has a part that begins or ends with a space (or a tab or line break), "
                f"{odd[0]!r}, which the written array's name would keep, another than "
                f"{odd[0].strip()!r}: write it without"
            )
    return _plain_path(v)


def _plain_path(v: Any) -> Any:
    """An array path inside a store, normalised as zarr-python normalises one: a backslash is
    a '/', empty parts are dropped (``/g//v/`` is ``g/v``), so every key and record names the
    array as Zarr does (with ``g\\v`` zarr-python wrote the metadata at ``g/v``, the pipeline
    its chunks under ``g\\v``, and the output claimed to be complete with none of its values
    where readers look). Refused: a '.' or '..' part (``../x`` reached outside the output
    store, and what was there was emptied as the output was created), and a part named as a
    store's own file (:data:`RESERVED_NAMES`)."""
    if not isinstance(v, str):
        return v
    parts = [p for p in v.replace("\\", "/").split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise ValueError(
            f"{v!r} has a '.' or '..' part: name the array by its plain path inside the store"
        )
    clash = [p for p in parts if p in RESERVED_NAMES]
    if clash:
        raise ValueError(
            f"{v!r} has a part named {clash[0]!r}, the name of a Zarr store's own file: "
            "choose another name for the array or group"
        )
    return "/".join(parts)


class InputConfig(Model):
    """Where the input array is."""

    store: str = Field(
        description="path or fsspec URL (file://, s3://, memory://) of the store; a relative "
        "path is from where the command runs"
    )
    array: str = Field("", description="path of the array inside the store; '' if the root")
    storage_options: dict[str, Any] = Field(
        default_factory=dict,
        description="fsspec options, e.g. endpoint_url, key, secret for s3:// (credentials "
        "are masked in summaries)",
    )
    generate: GenerateConfig | None = Field(
        None, description="how to create this input (`pipeline generate`)"
    )
    mask_and_scale: bool = Field(
        False,
        description="decode a variable stored packed, as CF and xarray write it (integers "
        "with scale_factor and add_offset, a _FillValue or missing_value), to its values "
        "before the stages, exactly as xarray's mask_and_scale decodes them (floats, NaN "
        "where missing); false: such a variable is refused, since its stored numbers are "
        "not its values",
    )

    _array = field_validator("array")(classmethod(lambda cls, v: _plain_path(v)))
    _array_text = field_validator("array", mode="before")(
        classmethod(lambda cls, v: _path_text(v, "array"))
    )
    _store_path = field_validator("store", mode="before")(
        classmethod(lambda cls, v: _path_text(v, "store"))
    )
    _store = field_validator("store")(classmethod(lambda cls, v: _store_url(v)))
    _options = field_validator("storage_options")(
        classmethod(lambda cls, v, info: _store_options(v, info))
    )


class OutputConfig(Model):
    """Where and how the result is written (always Zarr v3)."""

    store: str = Field(description="path or fsspec URL of the output store")
    array: str | None = Field(
        None,
        validate_default=False,  # left out, None: given as null, refused (_array_given)
        description="path of the array inside the store; '' for the root; omitted: the input "
        "variable's name when the input is a variable of an xarray Dataset (the output is "
        "then a Dataset too, with the input's coordinates), else '' (given as null, it is "
        "refused)",
    )
    storage_options: dict[str, Any] = Field(
        default_factory=dict, description="fsspec options, as input.storage_options"
    )

    _array = field_validator("array")(classmethod(lambda cls, v: _output_path(v)))
    _array_text = field_validator("array", mode="before")(
        classmethod(lambda cls, v: _path_text(v, "array"))
    )
    _store_path = field_validator("store", mode="before")(
        classmethod(lambda cls, v: _path_text(v, "store", "out"))
    )
    _store = field_validator("store")(classmethod(lambda cls, v: _store_url(v, output=True)))
    _options = field_validator("storage_options")(
        classmethod(lambda cls, v, info: _store_options(v, info))
    )
    codec: CodecConfig = Field(
        default_factory=lambda: CodecConfig(), description="compressor of the output"
    )
    chunks: Shape | Literal["auto"] = Field(
        "auto",
        description="chunk shape (one zstd frame each); auto: the input's chunks when they tile "
        "the shard (unsharded: the block) and hold at most 1 MiB of the output's dtype, else "
        "about 128 KiB slabs (the nearest that tiles the shard where an axis has few divisors, "
        "larger if need be; with shards: none, one chunk per block)",
    )
    shards: Shape | Literal["auto", "none"] = Field(
        "auto",
        description="shard shape (one file each, Zarr v3 sharding); auto: one shard per Dask "
        "chunk; none: one file per chunk (also written so where one chunk fills a shard)",
    )
    overwrite: bool = Field(
        False,
        description="replace an existing output (also --overwrite; --no-overwrite, or "
        "overwrite=False in pipeline.run, says no to it for one run)",
    )
    dimension_names: tuple[str, ...] | None = Field(
        None,
        description="names of the output array's dimensions, one per axis, each once (Zarr "
        "v3 dimension_names, which xarray reads), for an array written alone: in place of its "
        "input's (needed to write an input without names into a tree of xarray's); omitted: "
        "the input's. Refused for a Dataset variable, whose dimensions are the input's",
    )

    @field_validator("dimension_names")
    @classmethod
    def _names_each_once(cls, v: tuple[str, ...] | None) -> tuple[str, ...] | None:
        """Refuse an empty list, an empty name (``''``, spaces alone: no name xarray shows)
        and a name given twice (xarray holds one size per dimension name, and an array with a
        repeated one opens to no variable). ValueError."""
        if v is None:
            return v
        if not v:  # a 0-d output has no dimension to name (h88e: [] had passed)
            raise ValueError(
                "is empty: give one name per dimension of the output, or leave it out for "
                "the input's"
            )
        blank = [n for n in v if not n.strip()]
        if blank:
            raise ValueError(
                f"{list(v)} holds an empty name ({blank[0]!r}): give each dimension a name, "
                "such as ['y', 'x']"
            )
        twice = sorted({n for n in v if v.count(n) > 1})
        if twice:
            raise ValueError(
                f"{list(v)} names the dimension {twice[0]!r} more than once: give each "
                "dimension its own name"
            )
        return v

    @field_validator("array", mode="before")
    @classmethod
    def _array_given(cls, v: Any) -> Any:
        """An ``array`` given as null (``array:`` with nothing after its colon, ``~``, or
        ``None`` in Python) is refused, as ``input.array``'s is: it had been taken for
        ``array`` left out, so a Dataset's variable was written as a Dataset variable under
        its name where ``''`` (the array alone at the root) may have been meant, with exit 0
        (h66a). Left out, its default is not validated, so comes not here. ValueError."""
        return refuse_null(
            v,
            "give the array's path inside the store, '' for the root, or leave array out for "
            "the input variable's name (an xarray Dataset's; else the root)",
        )

    @model_serializer(mode="wrap")
    def _without_null_array(self, handler: SerializerFunctionWrapHandler) -> Any:
        """The section as data (``model_dump``, the summary's config) leaves ``array`` out
        where it is None, as it was written, so that the data makes the same section again
        (a null ``array`` is refused: :meth:`_array_given`); ``dimension_names`` too, so that
        a config written before it has the same data."""
        return without_null(without_null(handler(self), "array"), "dimension_names")


class ChunkingConfig(Model):
    """How the array is cut into Dask tasks."""

    block: Shape | Literal["auto"] = Field(
        "auto",
        description="Dask chunk shape, a whole multiple of the written shards (or chunks) on "
        "every axis; auto: the largest that fits target_bytes and the memory budget and gives "
        "every thread about two blocks (a GPU run decoding on the CPU: about five, of at least "
        "64 MiB)",
    )
    target_bytes: Bytes = Field(256 * 2**20, description="auto block size target (input bytes)")


#: The longest ``cluster.timeout``, a week: a longer one (``.inf``, ``1e12``) had passed, and
#: joining a scheduler then failed in Python's ``OverflowError: timestamp out of range for
#: platform time_t`` (a socket's timeout), not a line naming the key.
_WEEK = 7 * 24 * 3600


class ClusterConfig(Model):
    """Which cluster runs the tasks."""

    scheduler: str = Field(
        "local", description="'local' starts a cluster; 'tcp://host:8786' joins an existing one"
    )
    gpus: tuple[Annotated[int, Field(ge=0, le=MOST_GPU_ID), NotBool], ...] | None = Field(
        None,
        description="GPU ids for local GPU workers; omitted or null, every visible GPU (as "
        "dask-cuda's CUDA_VISIBLE_DEVICES=None)",
    )
    workers: Annotated[PositiveInt, Field(le=MOST_WORKERS), NotBool] | None = Field(
        None,
        description="local CPU workers; omitted or null, cores / threads_per_worker (as "
        "LocalCluster's n_workers=None)",
    )
    threads_per_worker: Annotated[PositiveInt, Field(le=MOST_WORKERS), NotBool] | None = Field(
        None,
        description="tasks in flight per worker; omitted or null, 4 per GPU worker or 1 per CPU "
        "worker",
    )
    workers_per_gpu: Positive = Field(
        3,
        le=MOST_WORKERS_PER_GPU,
        description="local GPU clusters: worker processes per GPU, each with threads_per_worker "
        "threads (several processes wait less on each other for Python's GIL: on the H100 host "
        "3 x 4 threads ran 4.71 GB/s, 1 x 8 threads 4.26, in one run)",
    )
    mps: Annotated[Literal["auto", "off"], BeforeValidator(_off)] = Field(
        "auto",
        description="local GPU clusters of several workers per GPU: auto runs them under a "
        "CUDA MPS daemon of the run's own (nvidia-cuda-mps-control, where the driver has it), so "
        "their kernels and copies share the GPU at once instead of taking turns (H200, "
        "2026-12-01, warm, 3 x 4: v2 Blosc 5.89 -> 6.64 GB/s, synthetic 4.81 -> 5.43); off: "
        "never. A user's own MPS daemon (CUDA_MPS_PIPE_DIRECTORY set) is used as it is",
    )
    device_memory_limit: Annotated[
        AutoBytes | float,
        BeforeValidator(_number_text),
        NotBool,
        BeforeValidator(_percent_as_fraction),
    ] = Field(
        "auto",
        description="device memory budget per GPU, split between a local cluster's "
        "workers_per_gpu workers: bytes (at most the GPU's memory), a fraction of the GPU's "
        "free memory, or auto (0.8)",
    )
    host_memory_limit: Annotated[
        AutoBytes | float,
        BeforeValidator(_number_text),
        NotBool,
        BeforeValidator(_percent_as_fraction),
    ] = Field(
        "auto",
        description="host memory budget per worker: bytes, a fraction, or auto. A local "
        "cluster's workers share the host's RAM: a fraction is of RAM / workers, auto 0.8 of "
        "it, and more than RAM / workers is refused; a joined cluster's workers (or those of "
        "pipeline.run's client) have their own memory limits (`dask worker --memory-limit`): "
        "a fraction is of the weakest worker's, auto all of it, and more is refused",
    )
    protocol: Literal["auto", "tcp", "ucx", "inproc"] = Field(
        "auto",
        description="how a local cluster's workers talk: tcp between worker processes; ucx "
        "(GPU workers only: NVLink, InfiniBand; needs UCX); inproc: threads in this process "
        "(what memory:// stores need); auto: inproc for a CPU run of at most 4 task threads (no "
        "processes to start), else tcp",
    )
    timeout: Annotated[float, NotBool] = Field(
        10.0,
        gt=0,
        le=_WEEK,
        description="seconds a scheduler that accepts the connection gets to answer and to "
        "give its first worker (an address where nothing listens is refused at once), at most "
        "a week",
    )
    dashboard: str = Field(
        ":0",
        description="dashboard address of a local cluster; '' for none (then a CPU run whose "
        "workers are threads of this process runs on Dask's threaded scheduler: no cluster, "
        "no distributed)",
    )

    _addresses = field_validator("scheduler", "dashboard", mode="before")(
        classmethod(lambda cls, v, info: _address_text(v, info.field_name))
    )
    _printable = field_validator("scheduler", "dashboard")(
        classmethod(lambda cls, v, info: _address_printable(v, info.field_name))
    )
    _named = field_validator("scheduler")(classmethod(lambda cls, v: _scheduler_named(v)))

    @field_validator("device_memory_limit", "host_memory_limit")
    @classmethod
    def _fraction(cls, v: Any) -> Any:
        _within_float64(v)  # 1e400, which the float it is made reads as infinity
        if isinstance(v, float) and not 0 < v <= 1:
            raise ValueError("a fraction must be in (0, 1]; write a size such as '40GiB' instead")
        if isinstance(v, int) and v < 1:  # 0 bytes had passed here, refused only by the plan
            raise ValueError("a size must be at least one byte; write a size such as '40GiB'")
        return v


#: The cluster's keys that only a GPU run reads, each with what it is and the fix that its
#: refusal beside ``backend: cpu`` names (:meth:`Config._gpu_keys_on_the_cpu`).
GPU_ONLY = {
    "gpus": ("names GPUs", "leave cluster.gpus out"),
    "workers_per_gpu": (
        "sets worker processes per GPU",
        "leave it out (cluster.workers sets a CPU run's worker processes)",
    ),
    "device_memory_limit": (
        "is a GPU's memory budget",
        "leave it out (cluster.host_memory_limit is a CPU run's budget)",
    ),
}


class _CheckedStageCopy(StageParams):
    """What each stage's model (``config.stages[0]``) adds to its parameters' class."""

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy of the stage, with the values ``update`` gives checked and made as the
        constructor checks and makes them, as a section's (:meth:`Model.model_copy`):
        pydantic's takes them as they are, and a Config holds a stage it is given as it is,
        so ``config.stages[0].model_copy(update={"value": None})`` had run add as ``x + x``,
        exit 0, and a factor of ``"5"`` or ``Decimal('1e-400')`` had met pydantic's raw
        ValidationError in the run. An invalid one is the one
        :class:`~pipeline.errors.ConfigError` line, its ``file`` ``the add stage's
        model_copy()``. The fields not given are the stage's own as set (add's ``value`` left
        out stays left out)."""
        copied = super().model_copy(deep=deep)
        if not update:
            return copied
        cls = type(self)
        source = f"the {getattr(self, 'op', cls.__name__)} stage's model_copy()"
        data = {name: getattr(copied, name) for name in copied.model_fields_set}
        data.update(update)
        return checked(lambda: cls.model_validate(data), data, cls, source)


def _stage_models() -> Any:
    """One model per registered stage, ``op`` naming it; a discriminated union of them."""
    models = []
    for name, d in REGISTRY.items():
        m = create_model(
            f"Stage_{name}",
            __base__=(_CheckedStageCopy, d.params),
            op=(Literal[name], Field(description=d.doc)),  # type: ignore[valid-type,arg-type]
        )
        m.__module__ = __name__
        globals()[m.__name__] = m  # so configs pickle by reference, like any model
        models.append(m)
    return Annotated[Union[tuple(models)], Field(discriminator="op")]  # noqa: UP007


StageConfig = _stage_models()


class Config(Model):
    """A whole run."""

    input: InputConfig = Field(description="the input array")
    output: OutputConfig = Field(description="the output array")
    stages: tuple[StageConfig, ...] = Field(  # type: ignore[valid-type]
        min_length=1, description="the elementwise stages, applied in order"
    )
    backend: Literal["auto", "gpu", "cpu"] = Field(
        "auto", description="auto: GPU when one is visible, else CPU (and says so)"
    )
    integer_overflow: Literal["promote", "error"] = Field(
        "promote",
        description="integer chains that can overflow: promote widens, error refuses",
    )
    chunking: ChunkingConfig = Field(
        default_factory=lambda: ChunkingConfig(), description="task size"
    )
    cluster: ClusterConfig = Field(
        default_factory=lambda: ClusterConfig(), description="the cluster"
    )

    @field_validator("cluster")
    @classmethod
    def _gpu_keys_on_the_cpu(cls, v: ClusterConfig, info: ValidationInfo) -> ClusterConfig:
        """Refuse a GPU-only setting given with ``backend: cpu`` (:data:`GPU_ONLY`), as
        ``cluster.protocol: ucx`` on a local CPU cluster and ``store_raw_below`` with codec
        ``none`` are: ``gpus: [1]`` or ``workers_per_gpu: 2`` had been ignored without a word
        (h81e). Each is named at its own line (``cluster.gpus``); the defaults a summary's
        config writes (``gpus: null``, ``workers_per_gpu: 3``, ``device_memory_limit:
        auto``) stay accepted, and ``mps``, whose values (auto, off) ask for nothing a CPU run
        lacks, is left alone. ``backend: auto`` that finds no GPU is not refused: the same
        config runs on a GPU host, and the plan says the CPU was chosen."""
        if info.data.get("backend") != "cpu":
            return v
        given = [
            (key, list(value) if isinstance(value, tuple) else value)
            for key in GPU_ONLY
            if (value := getattr(v, key)) not in (ClusterConfig.model_fields[key].default, ())
        ]
        if not given:
            return v

        def said(key: str, value: Any) -> str:
            what, fix = GPU_ONLY[key]
            what = f"{value} {what}" if isinstance(value, list) else what  # no (got ...)
            return f"{what}, and backend: cpu uses no GPU: {fix}, or set backend: gpu (or auto)"

        from pydantic import ValidationError  # pydantic's re-export: pydantic_core is no dependency

        raise ValidationError.from_exception_data(
            "ClusterConfig",
            [
                {"type": "value_error", "loc": (k,), "input": x, "ctx": {"error": said(k, x)}}
                for k, x in given
            ],
        )

    def public_dict(self) -> dict[str, Any]:
        """The config as plain JSON data with credentials in ``storage_options`` masked, for
        summaries and logs. A value JSON has no kind for (an object a config given to the API
        as a mapping holds in ``storage_options``: aiohttp's ``ClientTimeout``, a
        ``CIMultiDict`` of headers) is said by its type's name alone, ``<ClientTimeout>``: the
        run's summary had failed on it once the output was written."""
        return _masked(self.model_dump(mode="json", fallback=_type_name))

    def stage_specs(self) -> tuple[tuple[str, StageParams], ...]:
        """(name, params) for each stage, for :func:`pipeline.ops.stages.plan_chain`."""
        out = []
        for s in self.stages:
            op: str = s.op  # type: ignore[attr-defined]  # every stage model has the tag
            params_cls = REGISTRY[op].params
            # a parameter left out (None: add's value) is left out again, not given as None
            fields = {
                k: getattr(s, k) for k in params_cls.model_fields if getattr(s, k) is not None
            }
            out.append((op, params_cls(**fields)))
        return tuple(out)


def _json_number(text: str) -> Any:
    """A JSON number with a fraction or exponent as ``float()`` reads it, or, where that is 0
    or an infinity the text does not say (``1e-400``, past float64; ``1e400``), the
    ``decimal.Decimal`` it says, which a stage's scalar refuses, naming float64's range
    (``stages._as_float``): pydantic's JSON reading had made ``"factor": 1e-400`` the factor
    0.0, as YAML's had (``loading._keep_past_float64``)."""
    got = float(text)
    if got != 0 and math.isfinite(got):
        return got
    import decimal

    said = decimal.Decimal(text)
    return said if said.is_finite() and said != 0 else got


def _holds_decimal(data: Any) -> bool:
    """Whether JSON data read with :func:`_json_number` holds a number it kept exact."""
    if isinstance(data, Mapping):
        return any(_holds_decimal(v) for v in data.values())
    if isinstance(data, list):
        return any(_holds_decimal(v) for v in data)
    return type(data).__name__ == "Decimal"


def validated(
    data: Any,
    source: str,
    positions: Mapping[tuple, Any] | None = None,
    overridden: Sequence[tuple] = (),
    options: Mapping[tuple, str] | None = None,
) -> Config:
    """The :class:`Config` that ``data`` (a config file's mapping, or one given to the API)
    describes, validated as pydantic's ``model_validate`` does; an invalid one is the one
    ConfigError line of :func:`~pipeline.config.problems.checked`, naming ``source``, the
    line (``positions``) or the override (``overridden``; the command-line option of
    ``options`` that gave it), not ``pipeline.Config.model_validate()``."""
    return checked(
        lambda: super(Model, Config).model_validate(data),
        data,
        Config,
        source,
        positions,
        overridden=overridden,
        options=options,
    )


#: Parts of option names that hold credentials (:data:`~pipeline.errors.CREDENTIAL_PARTS`:
#: s3fs key/secret/token and their aliases username/password, gcsfs token, adlfs
#: account_key/sas_token/client_secret, ...): their values are never written out (s3fs's
#: ``username``, its access key's ID as ``key`` is, had been).
_SECRET_PARTS = CREDENTIAL_PARTS

#: Options whose every value is masked: an HTTP store's query parameters (``params``, which
#: fsspec's HTTP file system sends with each request: a signed URL's ``sig``, ``X-Amz-...``),
#: request headers (``Authorization``), whose names say nothing of what they hold, and
#: aiohttp's ``auth`` (a ``BasicAuth``: user and password, given to the API as a mapping);
#: and so the headers and ``auth`` of an HTTP store's proxy (``proxy_headers``:
#: ``Proxy-Authorization``, which had been written as it is: review44).
_SECRET_OPTIONS = ("params", "headers", "auth", "proxy_headers", "proxy_auth")


def _type_name(value: Any) -> str:
    """How :meth:`Config.public_dict` says a value JSON has no kind for: its type's
    name alone (never its contents, which may hold a credential)."""
    return f"<{type(value).__name__}>"


def _masked(data: Any, in_options: bool = False, secret_all: bool = False) -> Any:
    """``data`` with the credentials in its ``storage_options`` masked: values of options named
    as secrets (:data:`_SECRET_PARTS`), and every value under :data:`_SECRET_OPTIONS`
    (``secret_all``), whatever its type (a number, ``sig: 12345678901234`` unquoted in YAML,
    had been written as is); and the password of every URL (a store's
    ``http://user:password@host/...``, an ``endpoint_url``'s) as ``user:***@``."""
    from pipeline.errors import public_url, said_names

    if secret_all and not isinstance(data, (dict, list)) and data not in ("", None):
        return "***"
    if isinstance(data, str):
        return public_url(data)
    if isinstance(data, dict):
        out = {}
        names = said_names(data) if in_options else {k: k for k in data}
        for k, v in data.items():
            secret = in_options and any(p in str(k).lower() for p in _SECRET_PARTS)
            every = secret_all or (in_options and str(k).lower() in _SECRET_OPTIONS)
            if secret and isinstance(v, str) and v:
                out[names[k]] = "***"
            else:
                out[names[k]] = _masked(v, in_options or k == "storage_options", every)
        return out
    if isinstance(data, list):
        return [_masked(v, in_options, secret_all) for v in data]
    return data


def _strings_list(cls: type[Model], obj: Mapping[str, Any], kwargs: Any) -> tuple | None:
    """The key in ``obj`` of the first list (or tuple) that pydantic's
    ``model_validate_strings`` of ``cls`` refused ("Input should be a valid string", at the
    mapping that holds it, or at no key), found by identity; None where it refused none."""
    from pydantic import ValidationError

    try:
        super(Model, cls).model_validate_strings(obj, **kwargs)
    except ValidationError as e:
        refused = [
            x["input"]
            for x in e.errors()
            if x["type"] == "string_type" and isinstance(x["input"], (list, tuple))
        ]
    else:
        return None

    def find(node: Any, at: tuple) -> tuple | None:
        for k, v in node.items() if isinstance(node, Mapping) else ():
            if any(v is r for r in refused):
                return (*at, k)
            found = find(v, (*at, k))
            if found is not None:
                return found
        return None

    return find(obj, ()) if refused else None


def _constructor(cls: type[Model]) -> str:
    """How an error of a model made from keywords names the call: ``pipeline.Config()`` for
    the whole run (the API's name), ``pipeline.config.ClusterConfig()`` for a section."""
    return "pipeline.Config()" if cls is Config else f"pipeline.config.{cls.__name__}()"


def _positional_error(cls: type[Model], source: str, args: tuple[Any, ...]) -> Exception:
    """The one line for a model's constructor given ``args`` by position (it takes keywords
    only): ``pipeline.Config({...})`` had raised Python's bare "Model.__init__() takes 1
    positional argument but 2 were given". It names the fix for what was given (a mapping:
    ``**mapping``, or, for the whole config, the mapping to :func:`pipeline.run`; a YAML
    file's path: :func:`pipeline.load_config`; YAML text; a model made already), never the
    value."""
    call = source.removesuffix("()")
    given = args[0] if len(args) == 1 else None
    if isinstance(given, Mapping):
        fix = f"write {call}(**mapping)"
        if cls is Config:
            fix += (
                ", or give the mapping as it is to pipeline.run or pipeline.plan, or to "
                "pipeline.config.parse_config"
            )
        what = "a mapping"
    elif isinstance(given, cls):  # one made already: nothing to make again
        what, fix = f"a {cls.__name__}", "it is made already: use it as it is"
    elif cls is Config and isinstance(given, str) and ("\n" in given or given.lstrip()[:1] == "{"):
        what = "YAML text"  # never quoted: it may hold credentials
        fix = "give yaml.safe_load(text) to pipeline.run or pipeline.plan, or write it to a file"
    elif cls is Config and isinstance(given, (str, os.PathLike)):
        what, fix = "a path", "a YAML file's config is read by pipeline.load_config(path)"
    else:
        n = len(args)
        what = f"{n} argument{'s' if n != 1 else ''}"
        fix = f"give each key by name, as in {call}({_example(cls)})"
    return _positional(
        source, f"{source}: takes its keys by name, not {what} by position: {fix}", cls
    )


def _positional(source: str, line: str, cls: type[Model]) -> Exception:
    """The :class:`~pipeline.errors.OptionError` of :func:`_positional_error`'s ``line``."""
    from pipeline.errors import OptionError

    return OptionError(
        line,
        file=source,
        line=None,
        key=None,
        option=None,
        valid=list(cls.model_fields),
        suggestion=None,
    )


def _example(cls: type[Model]) -> str:
    """A keyword call's arguments, to show how ``cls`` is made: its first field's name."""
    first = next(iter(cls.model_fields))
    return f"{first}=..."


def _place(cls: type[Model]) -> str:
    """Where a section ``cls`` sits in a whole :class:`Config` (``cluster``,
    ``input.generate``), for its keys that this version removed; '' for the whole config, or
    for a section found in more than one place (:class:`CodecConfig`)."""
    found: list[str] = []

    def walk(model: type[BaseModel], at: str) -> None:
        for name, field in model.model_fields.items():
            ann = field.annotation
            for arg in getattr(ann, "__args__", (ann,)):
                if isinstance(arg, type) and issubclass(arg, Model):
                    here = f"{at}.{name}" if at else name
                    if arg is cls:
                        found.append(here)
                    walk(arg, here)

    walk(Config, "")
    return found[0] if len(found) == 1 else ""
