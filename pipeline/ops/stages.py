"""Elementwise stages: a registry of small pure functions, and the fused chain built from them.

A stage is one function ``fn(x, params) -> array`` written with ordinary operators. The same
function is evaluated three ways, so adding a stage touches this file alone (its config model,
the reference, the GPU kernel and dtype planning follow from it):

* on NumPy or CuPy arrays, to compute (the CPU path, and the NumPy reference);
* on :class:`~pipeline.ops.kernel.Expr`, a symbol that records CUDA source, to build one fused
  GPU kernel per chain (:mod:`pipeline.ops.kernel`);
* on :class:`Interval`, the worst-case value range, to plan integer dtypes before any data moves.

Dtype policy (decided before the run, recorded in the output's attributes):
each stage's result dtype is NumPy's own (NumPy 2, NEP 50: ``int16 * 5`` stays ``int16``,
``int16 * 5.5`` becomes ``float64``; a NumPy scalar given through the API is strongly typed, as
NumPy computes with it: ``float16 * np.float32(2)`` is ``float32``, ``uint8 * np.int8(-1)``
``int16``). Floating-point results follow IEEE arithmetic (overflow
gives inf, NaN propagates). Integer results that could overflow are handled by
``integer_overflow``: ``promote`` (default) widens each stage to the smallest integer dtype of
the same signedness that holds its worst case, and refuses a chain that even 64 bits cannot hold;
``error`` refuses any chain whose worst case leaves the input dtype.
"""

from __future__ import annotations

import math
import numbers
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeAlias

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    SerializerFunctionWrapHandler,
    WithJsonSchema,
    field_validator,
    model_serializer,
)

from pipeline.errors import InputError, PlanError

OverflowPolicy: TypeAlias = Literal["promote", "error"]

#: dtypes a chain accepts: real numbers only.
SUPPORTED_KINDS = "iuf"


class StageParams(BaseModel):
    """Base of every stage's parameters: frozen, unknown keys rejected. Numeric fields are the
    stage's scalar operands (type them :data:`Scalar`): :func:`plan_chain` checks each against
    the dtype it meets. Equal only where each scalar is the same number of the same kind, and
    hashable (:func:`exactly_equal`, :func:`exact_hash`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def __eq__(self, other: object) -> bool:
        return exactly_equal(self, other)

    def __hash__(self) -> int:
        return exact_hash(self)


def exactly_equal(model: BaseModel, other: object) -> bool:
    """Whether the frozen models ``model`` and ``other`` are equal as pydantic compares them
    and each number in their fields is also of the same kind (:func:`_exact`): ``2``, ``2.0``
    and ``np.float32(2)`` are equal to Python, yet a stage computes otherwise with each (NEP
    50: an int16 array times ``2`` is int16, times ``2.0`` float64; a float16 one times
    ``np.float32(2)`` float32), ``0.0`` and ``-0.0`` add otherwise (``-0.0 + 0.0`` is 0.0), and
    ``host_memory_limit: 1`` is a byte where ``1.0`` is the whole: configs that ``==`` called
    equal planned and computed other outputs, whose resume each refused as "the stages
    changed". ``NotImplemented`` where ``other`` is no pydantic model, as pydantic's."""
    same = BaseModel.__eq__(model, other)
    if same is not True:
        return same
    assert isinstance(other, BaseModel)
    return _exact_fields(model) == _exact_fields(other)


def exact_hash(model: BaseModel) -> int:
    """The hash of the frozen model ``model``, consistent with :func:`exactly_equal`: a
    mapping or list among its values (``storage_options``) is hashed as its frozen form,
    where pydantic's own hash of a frozen model had raised ``TypeError: unhashable type:
    'dict'`` for every config (so none could key a cache or join a set)."""
    return hash((type(model).__qualname__, _exact_fields(model)))


def _exact_fields(model: BaseModel) -> tuple[Any, ...]:
    """The values of ``model``'s fields, each as :func:`_exact` compares it."""
    return tuple(_exact(getattr(model, name)) for name in type(model).model_fields)


def _exact(v: Any) -> Any:
    """``v``, a model field's value, as a hashable key that tells numbers of other kinds
    apart: a NumPy scalar by its dtype and bytes, a Python float by its bits (``-0.0`` is not
    ``0.0``), a Python int as an int; a tuple or list item by item. A mapping (a store's
    ``storage_options``, which the file system reads as Python compares it) is its frozen form
    (:func:`_frozen`); a model is itself (it compares and hashes so)."""
    if isinstance(v, (bool, np.bool_)):
        return v
    if isinstance(v, np.generic):
        return ("numpy", v.dtype.name, v.tobytes())
    if isinstance(v, float):
        return ("float", v.hex())
    if isinstance(v, int):
        return ("int", v)
    if isinstance(v, (tuple, list)):
        return tuple(_exact(x) for x in v)
    return _frozen(v)


def _frozen(v: Any) -> Any:
    """``v`` as a hashable value equal where ``v`` is equal: a mapping as a frozenset of its
    items, a list or tuple as a tuple, a set as a frozenset, each item so too; a value
    Python cannot hash (an object given in storage_options) as its type's name alone."""
    if isinstance(v, BaseModel):
        return v
    if isinstance(v, Mapping):
        return frozenset((k, _frozen(x)) for k, x in v.items())
    if isinstance(v, (tuple, list)):
        return tuple(_frozen(x) for x in v)
    if isinstance(v, (set, frozenset)):
        return frozenset(_frozen(x) for x in v)
    try:
        hash(v)
    except TypeError:
        return ("unhashable", type(v).__qualname__)
    return v


class TaggedText(str):
    """Text that a config file gave the ``!!str`` tag explicitly (``factor: !!str 5``), as its
    loader (``config/loading.py``) reads a stage's scalar that would otherwise read as a
    number: refused as any text is, its fix naming the tag to drop, where "write it unquoted"
    had been said, which leaves it text (h81e). ``quoted``: the text was quoted too
    (``!!str "5"``). ``line``: the file's line (1-based) where the tag is written, where
    that is not the key's, at which the refusal is said (an anchor's, ``a: &x !!str 5``,
    given by ``factor: *x``); None where it is the key's."""

    quoted: bool = False
    line: int | None = None

    @classmethod
    def of(cls, text: str, quoted: bool, line: int | None = None) -> TaggedText:
        """``text`` marked as tagged (and ``quoted``, the tag written at ``line``)."""
        tagged = cls(text)
        tagged.quoted = quoted
        tagged.line = line
        return tagged


_KINDS: dict[type, str] = {str: "text", TaggedText: "text", list: "a list", dict: "a mapping"}


def _text_fix(text: str) -> str:
    """What to write for a stage's scalar given as ``text``: unquoted where the text is a
    finite number (``'5'``), without the comma where one stands for a decimal point or
    separates thousands (``1,5``, ``1,000``: YAML reads either as text, unquoted too), else
    nothing (``five``, ``5 K``, ``nan``), where "write it unquoted" had been said of every
    text, which unquoted stays text; for text the file tagged ``!!str`` (:class:`TaggedText`),
    to drop the tag, which unquoted leaves it text too."""

    def number(t: str) -> bool:
        try:
            return math.isfinite(float(t))
        except ValueError:
            return False

    t = text.strip()
    if number(t):
        if isinstance(text, TaggedText):
            at = f", at line {text.line}" if text.line is not None else ""
            quotes = " and the quotes" if text.quoted else ""
            return f" (drop its !!str tag{quotes}{at})"
        return " (write it unquoted)"
    if re.fullmatch(r"[+-]?\d{1,3}(,\d{3})+", t):  # 1,000: thousands, or a decimal comma
        whole = t.replace(",", "")
        if t.count(",") > 1:
            return f" (write {whole}: no thousands separators)"
        return f" (write {whole}, or {t.replace(',', '.')} if the comma is a decimal point)"
    if t.count(",") == 1 and number(t.replace(",", ".")):
        return f" (write {t.replace(',', '.')}: a decimal point, not a comma)"
    return ""


#: The dtypes a typed scalar may have: those the stages compute in.
SCALAR_DTYPES = (
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
)

#: How a typed scalar is written in a config file (and in a summary's config).
TYPED_FORM = "{dtype: float32, value: 2}"


#: NumPy's codes for the dtypes of :data:`SCALAR_DTYPES` with their size (``f4``, ``<f4``,
#: ``u8``): a typed number may name its dtype so. Codes without a size (``d``, ``l``, ``int``,
#: ``float``, ``double``) are not taken: ``int`` reads as Python's (weak) number, and ``l``
#: is another size on another platform.
_SIZED_CODE = re.compile(r"[<>=|]?([iu][1248]|f[248])")


def _scalar_dtype(given: Any) -> np.dtype | None:
    """The dtype of :data:`SCALAR_DTYPES` that a typed number's ``dtype`` names: its name
    (``float32``), NumPy's code for it with its size (``f4``, ``<f4``, ``>f4``: the scalar
    is NumPy's, in the machine's byte order, as ``np.dtype('>f4').type(2)`` is), or, through
    the API, the ``np.dtype`` or the NumPy scalar type itself (``np.float32``); None where
    it names none of them."""
    if isinstance(given, str):
        if given not in SCALAR_DTYPES and not _SIZED_CODE.fullmatch(given):
            return None
    elif not isinstance(given, np.dtype) and not (
        isinstance(given, type) and issubclass(given, np.generic)
    ):
        return None
    try:
        dtype = np.dtype(given)
    except TypeError:
        return None
    return dtype.newbyteorder("=") if dtype.name in SCALAR_DTYPES else None


def _typed(v: Mapping[Any, Any]) -> np.generic:
    """The NumPy scalar that a config's typed form ``{dtype: NAME, value: NUMBER}`` names
    (how a summary's JSON writes a NumPy scalar given through the API, so that its config
    computes what the run computed). A value its dtype cannot hold as written (an integer
    out of range, a fraction for an integer dtype, a float past the dtype's range or below
    its least subnormal, which would be inf or 0) is refused, as a plain number the array's
    dtype cannot hold is (:func:`check_scalars`). Raises ValueError naming what is wrong."""
    if set(v) != {"dtype", "value"}:
        raise ValueError(
            f"a typed number is a mapping of dtype and value, as in {TYPED_FORM}; "
            "or write a plain number"
        )
    dtype, value = _scalar_dtype(v["dtype"]), v["value"]
    if dtype is None:
        raise ValueError(
            f"a typed number's dtype must be one of {', '.join(SCALAR_DTYPES)} (or NumPy's "
            "code for one with its size, f4 or <f4 for float32)"
        )
    name = dtype.name
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]  # a 0-d array is its scalar, as a plain one's is
    if isinstance(value, (bool, np.bool_)) or not _real(value):
        fix = _text_fix(value) if isinstance(value, str) else ""  # "5", !!str 5: the fix too
        raise ValueError(f"a typed number's value must be a number, as in {TYPED_FORM}{fix}")
    if dtype.kind in "iu":
        exact = isinstance(value, numbers.Rational) or _is_decimal(value)
        if isinstance(value, numbers.Integral):
            whole = int(value)
        elif math.isfinite(_as_float(value)) and (
            value == int(value) if exact else float(value).is_integer()
        ):  # an exact rational's whole number exactly, as np.int64(Fraction(2**60 + 1)) is
            whole = int(value) if exact else int(float(value))
        else:
            raise ValueError(
                f"a typed number of dtype {name} must be a whole number; for a fraction give a "
                "float dtype, as in {dtype: float64, value: 2.5}"
            )
        info = np.iinfo(dtype)
        if not info.min <= whole <= info.max:
            written = value.item() if isinstance(value, np.generic) else value
            said = _shown(written if isinstance(written, (int, float)) else whole)
            wider = _smallest_int("i" if whole < 0 else dtype.kind, Interval(min(whole, 0), whole))
            raise ValueError(
                f"{said} does not fit {name} (integers {info.min}..{info.max}); use a value "
                f"within that range{'' if wider is None else f', or dtype {wider}'}"
            )
        return dtype.type(whole)
    if isinstance(value, numbers.Integral):
        value = int(value)  # Python's exact int: np.int64(10**18) is not converted twice
    elif not math.isfinite(value := _as_float(value)):
        raise ValueError(f"must be a finite number (not inf or NaN) in {name}")
    try:
        with np.errstate(over="ignore", under="ignore"):
            held = dtype.type(value)
    except OverflowError:  # an int past float64's range: no finite float holds it
        held = dtype.type("inf")
    if not np.isfinite(held) or (held == 0 and value != 0):
        # past the dtype's range it is inf, below it 0: another number than written
        holds = _smallest_float(value)
        fix = (
            f", or dtype {holds}"
            if holds is not None and np.dtype(holds).itemsize > dtype.itemsize
            else ""
        )
        raise ValueError(
            f"{_shown(value)} does not fit {name}, which holds {_holds(dtype)}; use a value "
            f"within that range{fix}"
        )
    return held


def _finite_number(v: Any) -> Any:
    """A stage's scalar: a finite real number, never text (``"5"``) or a boolean (``true``),
    which pydantic would coerce to 5 and 1, nor None (an optional scalar's is taken before).

    A Python int or float (all a YAML file gives) stays one: a weak scalar, which takes the
    array's dtype (NEP 50: ``float16 * 2.0`` is float16). A NumPy scalar (``np.float32(2)``,
    ``np.int8(-1)``; a 0-d array is its scalar) is kept as it is: strongly typed, as NumPy
    computes with it (``float16 * np.float32(2)`` is float32), so the run computes what NumPy
    computes; the typed form ``{dtype: float32, value: 2}`` makes one in a file. One wider
    than 64 bits (``np.longdouble``) is refused: no stage computes in it.

    An exact rational, a ``fractions.Fraction`` or a ``decimal.Decimal`` (a whole one too),
    is the Python float ``float(v)`` gives, the float64 NumPy computes with where it
    converts one (``np.float64(v)``): a weak float, as the number written in a file is. A
    Fraction had been taken so, and a Decimal refused ("not that"). One past float64's range
    is refused, as inf and NaN are, a whole one too (``factor: 1`` followed by 400 zeros:
    NumPy converts an int to the float array's dtype, and an integer array's dtype holds less;
    it had been refused only by the plan). The config and the output's record hold the float, so
    an output made with ``Decimal('0.5')`` resumes with 0.5, and the other way round.

    Raises ValueError (a config error naming the key) otherwise."""
    if v is None:  # ``factor:`` with nothing after it (an optional scalar's None never
        # comes here: ``Scalar | None`` takes it first); it had failed in the plan, "TypeError:
        # unsupported operand type(s) for *: 'float' and 'NoneType'"
        raise ValueError(
            "has no value (null: nothing after its colon, or ~, in YAML; None in Python): give "
            "a number, or a typed one such as {dtype: float32, value: 2}"
        )
    if isinstance(v, Mapping):
        return _typed(v)
    if isinstance(v, np.ndarray) and v.ndim == 0:
        v = v[()]
    if _is_decimal(v):
        v = _as_float(v)
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
        what = "true/false" if isinstance(v, (bool, np.bool_)) else _KINDS.get(type(v), "that")
        if isinstance(v, str):
            what += _text_fix(v)
        if isinstance(v, numbers.Complex) and what == "that":
            what = "a complex number"
        raise ValueError(f"must be a number such as 5 or 0.5, not {what}")
    if isinstance(v, np.generic):
        if v.dtype.kind in "mM":  # np.timedelta64 is Real to Python: a duration, no number
            raise ValueError(
                f"must be a number such as 5 or 0.5, not a NumPy {v.dtype.name} (a duration): "
                "give its count as a number, or np.float64(...)"
            )
        if v.dtype.name not in SCALAR_DTYPES:  # np.longdouble, and whatever else is Real
            raise ValueError(
                f"a NumPy {v.dtype.name} is wider than any dtype the stages compute in; give "
                "np.float64(...) or a Python float"
            )
        if v.dtype.kind == "f" and not np.isfinite(v):
            raise ValueError("must be a finite number (not inf or NaN)")
        return v
    if isinstance(v, numbers.Integral):
        # one past float64's range (``factor: 1`` and 400 zeros) computes with no array:
        # refused here, as a float past it is, not first by the plan (h67b)
        _as_float(v)
        return int(v)
    v = _as_float(v)
    if not math.isfinite(v):
        raise ValueError("must be a finite number (not inf or NaN)")
    return v


def _is_decimal(v: Any) -> bool:
    """Whether ``v`` is a ``decimal.Decimal`` (one needs the module imported: the package
    does not import it itself)."""
    module = sys.modules.get("decimal")
    return module is not None and isinstance(v, module.Decimal)


def _real(v: Any) -> bool:
    """Whether ``v`` is a real number a stage's scalar may be: a ``numbers.Real`` (int, float,
    ``Fraction``, NumPy's), or a ``decimal.Decimal``, an exact rational as a Fraction is,
    which the standard library registers as no Real."""
    return isinstance(v, numbers.Real) or _is_decimal(v)


#: How a number past float64's range is refused, by a stage's scalar and every config key
#: that takes a number without a smaller bound of its own (a size in bytes).
PAST_FLOAT64 = (
    "must be a finite number float64 holds (magnitudes up to 1.79769e+308, down to 4.94e-324)"
)


def _as_float(v: Any) -> float:
    """A real number (an int, a float, a ``Fraction``, a ``Decimal``) as the Python
    float ``float(v)`` gives; ValueError for one past float64's range (``10**400``,
    ``Fraction(10**400)``:
    Python's OverflowError had come through ``pipeline.Config`` as it was;
    ``Decimal('1e400')``, which float() makes inf), or below its least subnormal
    (``Decimal('1e-400')``, which float() makes 0, as a typed float refuses one below its
    dtype's), and for a signalling ``Decimal('sNaN')`` (which float() refuses)."""
    past = PAST_FLOAT64
    try:
        got = float(v)
    except OverflowError:
        raise ValueError(past) from None
    except ValueError:  # Decimal('sNaN')
        raise ValueError("must be a finite number (not inf or NaN)") from None
    if (math.isinf(got) and _is_decimal(v) and v.is_finite()) or (got == 0 and v != 0):
        raise ValueError(past)  # float() made it inf, or 0 (Fraction(1, 10**400)): not it
    return got


def _as_json(v: Any) -> Any:
    """A stage's scalar as JSON: a Python number as it is, a NumPy scalar in the typed form
    (``{"dtype": "float32", "value": 2.0}``), which reads back as the same scalar."""
    if isinstance(v, np.generic):
        return {"dtype": v.dtype.name, "value": v.item()}
    return v


#: A scalar operand of a stage: a finite Python int or float (ints stay ints: ``int16 * 5``
#: is int16), or a NumPy scalar of one of :data:`SCALAR_DTYPES`, kept strongly typed.
Scalar: TypeAlias = Annotated[
    Any,
    PlainValidator(_finite_number),
    PlainSerializer(_as_json, when_used="json"),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number"},
                {
                    "type": "object",
                    "properties": {
                        "dtype": {
                            "anyOf": [
                                {"enum": list(SCALAR_DTYPES)},
                                {"type": "string", "pattern": f"^{_SIZED_CODE.pattern}$"},
                            ]
                        },
                        "value": {"type": "number"},
                    },
                    "required": ["dtype", "value"],
                },
            ]
        }
    ),
]


@dataclass(frozen=True)
class StageDef:
    """One registered stage."""

    name: str
    """Name used in the config's ``op:`` field."""
    fn: Callable[[Any, Any], Any]
    """The elementwise function, written with ``+``, ``*`` and its params' scalars."""
    params: type[StageParams]
    """Pydantic model of the stage's parameters."""
    doc: str
    """One line for the README and ``pipeline plan``."""


REGISTRY: dict[str, StageDef] = {}


def stage(name: str, params: type[StageParams] = StageParams) -> Callable[[Callable], Callable]:
    """Register ``fn`` as the stage ``name``; its docstring's first line documents it."""

    def register(fn: Callable) -> Callable:
        if name in REGISTRY:
            raise ValueError(f"stage {name!r} is registered twice")
        doc = (fn.__doc__ or name).strip().splitlines()[0]
        REGISTRY[name] = StageDef(name=name, fn=fn, params=params, doc=doc)
        return fn

    return register


# --------------------------------------------------------------------------------------------
# The stages. Each is one small function; params are validated by its model.


class MultiplyParams(StageParams):
    factor: Scalar = Field(
        description="the scalar every element is multiplied by: a number, which takes the "
        "array's dtype (float16 times 2.0 is float16), or a typed one, as NumPy's scalars "
        "compute: {dtype: float32, value: 2} (float16 times it is float32)"
    )


@stage("multiply", MultiplyParams)
def multiply(x, p: MultiplyParams):
    """Multiply every element by a scalar: ``x * factor``."""
    return x * p.factor


@stage("square")
def square(x, p: StageParams):
    """Square every element: ``x * x``."""
    return x * x


def refuse_null(v: Any, fix: str) -> Any:
    """``v``, a key's value as given, where it is not None; else ValueError: a key given as null
    (``key:`` with nothing after its colon, ``~``, or ``None`` in Python) where null and the
    key left out mean different things, which pydantic had taken for the key left out (its
    default, None). ``fix``: what to give instead, said after the line's start."""
    if v is None:
        raise ValueError(
            "has no value (null: nothing after its colon, or ~, in YAML; None in Python): " + fix
        )
    return v


def without_null(data: Any, key: str) -> Any:
    """A model's dump ``data`` without ``key`` where it is None (the key left out, as it was
    written, whose default is None), so that the data makes the same model again: given as
    null, the key is refused (:func:`refuse_null`)."""
    if isinstance(data, dict) and key in data and data[key] is None:
        data.pop(key)
    return data


class AddParams(StageParams):
    value: Scalar | None = Field(
        default=None,
        description="scalar to add, a number or a typed one as multiply's factor; omitted, the "
        "array is added to itself (given as null, it is refused)",
    )

    @field_validator("value", mode="before")
    @classmethod
    def _given(cls, v: Any) -> Any:
        """A ``value`` given as null (``value:`` with nothing after its colon, ``~``, or
        ``None`` in Python) is refused, as multiply's ``factor:`` is: it had been taken for
        ``value`` left out, and the stage added the array to itself (``x + x``), not the
        number meant, with exit 0. Left out, its default is not validated, so comes not here.
        Raises ValueError (a config error naming the key)."""
        return refuse_null(
            v,
            "give a number, or a typed one such as {dtype: float32, value: 2}, or leave value "
            "out to add the array to itself",
        )

    @model_serializer(mode="wrap")
    def _without_null_value(self, handler: SerializerFunctionWrapHandler) -> Any:
        """The stage as data (``model_dump``, the summary's config) leaves ``value`` out where
        it is None, as it was written, so that the data makes the same stage again (a null
        ``value`` is refused: :meth:`_given`)."""
        return without_null(handler(self), "value")


@stage("add", AddParams)
def add(x, p: AddParams):
    """Add the array to itself (``x + x``), or a scalar (``x + value``)."""
    return x + x if p.value is None else x + p.value


# --------------------------------------------------------------------------------------------
# Planning: result dtypes and integer ranges.


@dataclass(frozen=True)
class Interval:
    """Closed range of values an array may hold, for worst-case integer planning."""

    lo: int | float
    hi: int | float
    """bounds; Python ints while exact (integer dtypes), so 64-bit limits compare exactly"""

    @classmethod
    def of(cls, dtype: np.dtype) -> Interval:
        info = np.iinfo(dtype)
        return cls(int(info.min), int(info.max))

    def _combine(self, other: Interval | float, op: Callable[[float, float], float]) -> Interval:
        if isinstance(other, np.generic):  # a NumPy scalar's bounds, in Python's exact ints
            other = other.item()
        o = other if isinstance(other, Interval) else Interval(other, other)
        if self is o:  # x * x and x + x: the same element on both sides
            vals = [op(self.lo, self.lo), op(self.hi, self.hi)]
            if op is _mul and self.lo <= 0 <= self.hi:
                vals.append(0)
        else:
            vals = [op(a, b) for a in (self.lo, self.hi) for b in (o.lo, o.hi)]
        return Interval(min(vals), max(vals))

    def __mul__(self, other: Interval | float) -> Interval:
        return self._combine(other, _mul)

    __rmul__ = __mul__

    def __add__(self, other: Interval | float) -> Interval:
        return self._combine(other, _add)

    __radd__ = __add__


def _mul(a: int | float, b: int | float) -> int | float:
    return a * b


def _add(a: int | float, b: int | float) -> int | float:
    return a + b


def _smallest_int(kind: str, rng: Interval) -> np.dtype | None:
    for bits in (8, 16, 32, 64):
        dt = np.dtype(f"{kind}{bits // 8}")
        info = np.iinfo(dt)
        if info.min <= rng.lo and rng.hi <= info.max:
            return dt
    return None


@dataclass(frozen=True)
class BoundStage:
    """A stage with its parameters and its planned input and result dtypes."""

    definition: StageDef
    """the stage as registered: its name, its function, its parameters' model"""
    params: StageParams
    """its parameters as the config gives them (``factor``, ``value``)"""
    in_dtype: np.dtype
    """the dtype of the values it computes on (the previous stage's result, or the input's)"""
    out_dtype: np.dtype
    """the dtype of its result, as NumPy gives it (widened where an integer could overflow)"""

    @property
    def name(self) -> str:
        """The stage's name, as a config names it (``multiply``, ``square``, ``add``)."""
        return self.definition.name

    def describe(self) -> str:
        """``multiply(factor=5) int16 -> int16``: a NumPy scalar named with its type
        (``factor=np.float32(0.1)``), which computes otherwise than the Python ``0.1``,
        whatever print options the caller set (NumPy's ``legacy='1.25'`` writes it ``0.1``,
        as the Python number: the output's record, and so a resume, had followed them)."""
        with np.printoptions(legacy=False):
            args = ", ".join(
                f"{k}={v!r}" if isinstance(v, np.generic) else f"{k}={v}"
                for k, v in self.params.model_dump().items()
                if v is not None
            )
        return f"{self.name}({args}) {self.in_dtype} -> {self.out_dtype}"


#: What the stages compute on, in a line's words (the refusals of other dtypes say it).
COMPUTED_ON = (
    "the stages compute on integer and floating-point arrays (int8-64, uint8-64, float16/32/64)"
)


def supported_dtype(dtype: np.dtype) -> bool:
    """Whether the stages compute on ``dtype``: integers and floats of at most 8 bytes (not
    bool, complex, text, objects, records, dates, NumPy's long double)."""
    return dtype.kind in SUPPORTED_KINDS and dtype.itemsize <= 8


def check_dtype(dtype: np.dtype) -> None:
    """Refuse dtypes the stages cannot compute on (bool, complex, strings, objects):
    :class:`InputError`."""
    if not supported_dtype(dtype):
        raise InputError(
            f"unsupported dtype {dtype}: {COMPUTED_ON}; convert the input first",
            dtype=str(dtype),
        )


def _holds(dtype: np.dtype) -> str:
    """The values ``dtype`` holds, in a few words."""
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return f"integers {info.min}..{info.max}"
    f = np.finfo(dtype)
    return f"magnitudes up to {float(f.max):.6g}, down to {float(f.smallest_subnormal):.3g}"


def _shown(value: int | float) -> str:
    """A scalar as written: Python's shortest repr, huge ints in scientific notation."""
    if isinstance(value, int) and abs(value) >= 10**24:
        from decimal import Decimal

        return f"{Decimal(value):.6e}"
    return repr(value)


#: How a chain on integers computes in float64 without a rewritten input: NumPy's integer
#: array times a Python float is a float64 (NEP 50), so a first stage that multiplies by 1.0
#: converts every element, as a float64 copy of the input would (integers past 2**53 rounded
#: either way).
FIRST_STAGE_FLOAT64 = (
    "compute in float64 instead: make {op: multiply, factor: 1.0} the first stage (integers "
    "times a float are float64s)"
)
IN_FLOAT64 = f"{FIRST_STAGE_FLOAT64}, or convert the input to float64"


def _smallest_float(value: int | float) -> str | None:
    """The smallest of float32 and float64 that holds ``value`` as written (finite, and not
    0 where it is not); None where neither does (an integer past float64's range)."""
    for name in ("float32", "float64"):
        try:
            with np.errstate(over="ignore", under="ignore"):
                held = np.asarray(value, dtype=name)[()]
        except OverflowError:
            continue
        if np.isfinite(held) and (held != 0 or value == 0):
            return name
    return None


def _as_float_text(value: int) -> str | None:
    """The whole number ``value`` written as a float (``-1.0``), where float64 holds it
    exactly; None where it does not (``2**53 + 1``: a float computes with another number)."""
    try:
        f = float(value)
    except OverflowError:
        return None
    return repr(f) if math.isfinite(f) and int(f) == value else None


def _in_float64(params: StageParams, convertible: bool = True) -> str:
    """How a stage with ``params`` that overflows the integers computes in float64 instead,
    the least effort named: its scalar written as a float (``factor: 3.0``: NumPy computes an
    integer array with a Python float in float64, from this stage on; the stages before it
    stay exact integers), where it has a Python int that float64 holds exactly; else
    :data:`IN_FLOAT64` (``square``, ``add`` of the array to itself, a typed scalar), its
    "convert the input" only where the input is ``convertible`` (a packed variable's integer
    scale_factor decodes a float64 copy to int64 all the same: the PlanError's ``advice``)."""
    for key, value in params.model_dump().items():
        if isinstance(value, int) and not isinstance(value, bool):
            text = _as_float_text(value)
            if text is not None:
                return (
                    f"compute it in float64 instead: write its {key} as a float, {key}: {text} "
                    "(integers with a float are float64s)"
                )
    return IN_FLOAT64 if convertible else FIRST_STAGE_FLOAT64


def _typed_int(dt: np.dtype, value: int, worst: Interval) -> np.dtype | None:
    """The integer dtype a typed scalar ``{dtype: T, value: V}`` of ``value`` takes for a stage
    on ``dt`` whose results over ``dt``'s whole range are ``worst``: the smallest that holds
    ``value``, every ``dt`` value and ``worst``, so that the stage computes in it (NumPy
    promotes ``dt`` with it to it) and ``integer_overflow: error`` takes it too; None where
    none does (past 64 bits, or uint64 with a signed dtype, which NumPy makes float64)."""
    info = np.iinfo(dt)
    span = Interval(min(worst.lo, value, int(info.min)), max(worst.hi, value, int(info.max)))
    typed = _smallest_int("i" if span.lo < 0 else dt.kind, span)
    if typed is None or np.promote_types(dt, typed) != typed:
        return None
    return typed


def _what_holds(dt: np.dtype, key: str, value: int | float, worst: Interval | None = None) -> str:
    """The fix for a scalar ``value`` of ``key`` that ``dt`` cannot hold, the least effort
    first, each one the config's own (the input is never touched): a value within its range
    (a non-negative one on unsigned integers); the scalar given a dtype that holds it, the
    typed form ``{dtype: int16, value: -1}`` (:func:`_typed_int`: NumPy computes the stage in
    it, ``worst`` the stage's results over ``dt``'s range, so it holds them too), or, on
    integers, written as a float (``-1.0``: the stage computes in float64, as NumPy does an
    integer array with a Python float), where float64 holds it exactly. "convert the input"
    had been said of a uint8 input with ``add -1`` (h72a), which either form does without
    touching it; no stage converts floats with a plain number (float16 with a Python float
    stays float16): there the typed form names the smallest float that holds ``value``. Only
    the range where none does (2**1100; a float64 input)."""
    within = (
        f"use a non-negative {key}"
        if dt.kind == "u" and isinstance(value, int) and value < 0
        else "use a value within that range"
    )
    fixes = [within]
    if dt.kind in "iu" and isinstance(value, int):
        typed = _typed_int(dt, value, worst or Interval(value, value))
        if typed is not None:
            fixes.append(
                f"give it a dtype that holds it, {key}: {{dtype: {typed}, value: {value}}} "
                f"(the stage then computes in {typed})"
            )
        as_float = _as_float_text(value)
        if as_float is not None:
            fixes.append(f"write it as a float, {key}: {as_float} (it then computes in float64)")
        return ", or ".join(fixes)
    to = _smallest_float(value)
    if dt.kind == "f" and to is not None and np.dtype(to).itemsize > dt.itemsize:
        fixes.append(
            f"give it a dtype that holds it, {key}: {{dtype: {to}, value: {_shown(value)}}} "
            f"(the stage then computes in {to})"
        )
    return ", or ".join(fixes)


def check_scalars(position: int, name: str, params: StageParams, dtype: np.dtype) -> None:
    """Refuse a scalar operand of a stage that the dtype NumPy converts it to cannot hold.

    A Python scalar meeting an array of ``dtype`` becomes NumPy's weak-scalar result type
    (NEP 50: ``int16`` with an int stays ``int16``, with a float becomes ``float64``). NumPy 2
    refuses an int out of an integer dtype's range (``-1`` on ``uint8``); a float scalar that
    would overflow to inf (``70000`` on ``float16``, ``1e39`` on ``float32``) or underflow to 0
    (``1e-50`` on ``float32``) computes something else than written, with at most a warning.
    ``position`` counts stages from 1. Raises :class:`PlanError` (fields ``key``, the config's
    dotted key of the scalar, ``stages.0.factor``; ``stage``, ``position``, ``parameter``,
    ``value``, ``dtype``).
    """
    for key, value in params.model_dump().items():
        if not isinstance(value, (int, float)) or isinstance(value, (bool, np.generic)):
            # a NumPy scalar is strongly typed: the result dtype is its own or one its own
            # promotes to, which holds it as NumPy converts it
            continue
        dt = np.result_type(dtype, type(value)(0))
        try:
            with np.errstate(over="ignore"):
                held = np.asarray(value, dtype=dt)[()]
            fits = bool(np.isfinite(held)) and (held != 0 or value == 0)
        except OverflowError:
            fits = False
        if not fits:
            worst = None
            if dt.kind in "iu" and isinstance(value, int):  # the stage over dt's whole range
                worst = REGISTRY[name].fn(Interval.of(dt), params)
            raise PlanError(
                f"stage {position} ({name}): {key} {_shown(value)} does not fit {dt}, which holds "
                f"{_holds(dt)}; {_what_holds(dt, key, value, worst)}",
                key=f"stages.{position - 1}.{key}",
                stage=name,
                position=position,
                parameter=key,
                value=value,
                dtype=str(dt),
                advice=_what_holds(dt, key, value, worst),
            )


def _bound(worst: Interval) -> int | float:
    """The largest magnitude a stage's result can reach."""
    return max(abs(worst.lo), abs(worst.hi))


def _overflow(stage: str, position: int, dtype: np.dtype, worst: Interval) -> dict[str, Any]:
    """The fields of an overflow refusal of the stage at ``position`` (from 1): ``key``, the
    config's dotted key of that stage (``stages.0``), the ``stage``, its ``position``, the
    integer ``dtype`` it overflows, and the ``bound`` its results can reach."""
    return {
        "key": f"stages.{position - 1}",
        "stage": stage,
        "position": position,
        "dtype": str(dtype),
        "bound": _bound(worst),
    }


def plan_chain(
    specs: Sequence[tuple[str, StageParams]],
    dtype: np.dtype,
    policy: OverflowPolicy = "promote",
    values: Interval | None = None,
) -> tuple[BoundStage, ...]:
    """Decide every stage's result dtype before the run.

    ``specs`` are (stage name, validated params) pairs in order; ``dtype`` is the input's;
    ``values``, for an integer dtype, the range its elements can hold where that is known to
    be narrower than the dtype's (decoded CF-packed integers: int8 times 3 in int64).
    Raises :class:`InputError` for a dtype the stages cannot compute on, :class:`PlanError` for
    a scalar that does not fit (:func:`check_scalars`) or an integer chain that would overflow
    under ``policy`` (fields ``key``: the config's dotted key of the stage, ``stages.0``;
    ``stage``, ``position``, ``dtype``: the integer type it overflows, ``values``: the interval
    of the stage's results, ``bound``: the magnitude they can reach).
    """
    dtype = np.dtype(dtype)
    check_dtype(dtype)
    bound: list[BoundStage] = []
    rng = (values or Interval.of(dtype)) if dtype.kind in "iu" else None
    current = dtype
    for position, (name, params) in enumerate(specs, start=1):
        d = REGISTRY[name]
        check_scalars(position, name, params, current)
        with np.errstate(all="ignore"):  # a probe of the result dtype; its values do not matter
            out = d.fn(np.ones(1, dtype=current), params).dtype
        if rng is not None and out.kind in "iu":
            worst = d.fn(rng, params)
            if policy == "promote":
                wider = _smallest_int(out.kind, worst)
                if wider is None:
                    raise PlanError(
                        f"stage {name!r} can overflow even 64-bit integers (values up to "
                        f"{_bound(worst):.3g}); {_in_float64(params)}",
                        **_overflow(name, position, out, worst),
                        values=(worst.lo, worst.hi),
                        advice=_in_float64(params, convertible=False),
                    )
                out = np.promote_types(out, wider)
                if out.kind == "f":  # e.g. uint64 with int64 promotes to float64
                    raise PlanError(
                        f"stage {name!r} needs a wider integer than {current} offers; "
                        f"{_in_float64(params)}",
                        **_overflow(name, position, current, worst),
                        values=(worst.lo, worst.hi),
                        advice=_in_float64(params, convertible=False),
                    )
            elif not (np.iinfo(out).min <= worst.lo and worst.hi <= np.iinfo(out).max):
                # promote is named only where it widens this stage to an integer that holds
                # it (uint64 times 3 is past 64 bits: promote refuses it too)
                wider = _smallest_int(out.kind, worst)
                widens = wider is not None and np.promote_types(out, wider).kind in "iu"
                # and the whole chain under promote plans (h72a: uint32 times 2**20, then
                # square, was told to set promote, under which square then overflows 64 bits)
                promotes = widens and _plans(specs, dtype, values)
                raise PlanError(
                    f"stage {name!r} can overflow {out} (values up to "
                    f"{_bound(worst):.3g}"
                    + (
                        "); set integer_overflow: promote, or "
                        if promotes
                        else ("); " if widens else ", past 64 bits); ")
                    )
                    + _in_float64(params),
                    **_overflow(name, position, out, worst),
                    values=(worst.lo, worst.hi),
                    advice=_in_float64(params, convertible=False),
                )
            rng = worst
        elif out.kind == "f":
            rng = None
        bound.append(BoundStage(definition=d, params=params, in_dtype=current, out_dtype=out))
        current = out
    return tuple(bound)


def _plans(
    specs: Sequence[tuple[str, StageParams]], dtype: np.dtype, values: Interval | None
) -> bool:
    """Whether ``integer_overflow: promote`` plans the chain ``specs`` on ``dtype``."""
    try:
        plan_chain(specs, dtype, "promote", values)
    except PlanError:
        return False
    return True


# --------------------------------------------------------------------------------------------
# Evaluation on arrays (NumPy or CuPy: whichever the array is).


def apply_chain(chain: Sequence[BoundStage], x: Any) -> Any:
    """Apply the chain to one array, stage by stage, casting to each planned dtype.

    Works for NumPy and CuPy arrays alike; this is the reference semantics both backends match.
    Floating-point overflow and invalid operations give inf and NaN as IEEE arithmetic says,
    without warnings (the run summary counts them).
    """
    with np.errstate(all="ignore"):
        for s in chain:
            x = s.definition.fn(x.astype(s.out_dtype, copy=False), s.params)
            if x.dtype != s.out_dtype:  # pragma: no cover - plan_chain guarantees this
                x = x.astype(s.out_dtype)
    return x


#: Bytes of one piece in the CPU's fused evaluation: its buffers stay in cache (measured: 9.8
#: GB/s at 120 KiB pieces, 1.6 GB/s at 256 KiB, when each stage still made its temporaries,
#: which glibc's mmap threshold of 128 KiB made fresh mappings).
PIECE_BYTES = 120 << 10


def apply_chain_blocked(
    chain: Sequence[BoundStage], x: np.ndarray, out: np.ndarray, block: int | None = None
) -> None:
    """CPU fused evaluation: run the whole chain over cache-sized pieces of ``x`` into ``out``
    (same shape, ``chain[-1].out_dtype``; ``block``: elements a piece, by default
    :data:`PIECE_BYTES` of the widest dtype).

    Same arithmetic as :func:`apply_chain`, bit for bit: the chain is traced once
    (:func:`trace_chain`) into NumPy ufunc calls, which each piece replays with ``out=`` into
    buffers made once for the call, the last straight into ``out``; so memory sees one read
    and one write per element, and no piece allocates. On the 2-core machine (2026-12-01, 128
    MB of float32, multiply, square, add, on 1 and 2 threads, with and without distributed's
    trim setting; a noisy machine) the old evaluation, which allocated each stage's
    temporaries a piece at a time, ran 1.1-4.6 GB/s, this one 2.6-5.3 GB/s; on the H200 host
    the two were within their spread. A chain whose stages use more than ``+`` and ``*`` with
    scalars is evaluated stage by stage a piece at a time, as before.
    """
    xf = x.reshape(-1)
    of = out.reshape(-1)
    if block is None:
        widest = max(max(s.in_dtype.itemsize, s.out_dtype.itemsize) for s in chain)
        block = max(1, PIECE_BYTES // widest)
    tape = trace_chain(chain, x.dtype)
    if tape is None:
        for start in range(0, xf.size, block):
            stop = min(start + block, xf.size)
            of[start:stop] = apply_chain(chain, xf[start:stop])
        return
    scratch = [np.empty(min(block, xf.size), dtype=d) for d in tape.dtypes[1:]]
    with np.errstate(all="ignore"):
        for start in range(0, xf.size, block):
            stop = min(start + block, xf.size)
            tape.replay(xf[start:stop], [b[: stop - start] for b in scratch], of[start:stop])


@dataclass(frozen=True)
class Tape:
    """A chain as NumPy calls on numbered buffers: buffer 0 is the input piece, each step
    ``(fn, operands, result)`` writes buffer ``result`` from ``operands`` (buffer numbers, or
    :class:`_Scalar` operands given to the ufunc as they are), and ``result`` is the
    buffer holding the chain's value. ``dtypes[i]``: buffer ``i``'s dtype."""

    dtypes: tuple[np.dtype, ...]
    steps: tuple[tuple[Callable[..., Any], tuple[Any, ...], int], ...]
    result: int

    def replay(self, x: np.ndarray, scratch: list[np.ndarray], out: np.ndarray) -> None:
        """Evaluate the chain over the 1-d piece ``x`` into ``out`` (its length), with
        ``scratch[i - 1]`` as buffer ``i`` (the piece's length each); where the last step
        makes the result in ``out``'s dtype, it writes into ``out``, else the result is copied
        there (a stage that returns its operand, or an earlier value)."""
        bufs = [x, *scratch]
        # the last step writes the result straight into out (no step reads it afterwards)
        direct = (
            bool(self.steps)
            and self.steps[-1][2] == self.result
            and self.dtypes[self.result] == out.dtype
        )
        if direct:
            bufs[self.result] = out
        for fn, operands, result in self.steps:
            args = [bufs[a] if isinstance(a, int) else a.value for a in operands]
            fn(*args, out=bufs[result])
        if not direct:
            np.copyto(out, bufs[self.result], casting="unsafe")


@dataclass(frozen=True)
class _Scalar:
    value: int | float | np.number


def _cast(x: np.ndarray, out: np.ndarray) -> None:
    """``x.astype(out.dtype)`` into ``out`` (astype's own unsafe casting)."""
    np.copyto(out, x, casting="unsafe")


class _Traced:
    """A stage function's operand while :func:`trace_chain` records it: a buffer number and a
    one-element sample of its dtype, from which NumPy's own promotion gives each step's
    result dtype (NEP 50 scalars included)."""

    __slots__ = ("buffer", "sample", "tape")

    def __init__(self, buffer: int, sample: np.ndarray, tape: _Recording) -> None:
        self.buffer, self.sample, self.tape = buffer, sample, tape

    def _step(self, ufunc: np.ufunc, other: Any, reflected: bool) -> _Traced:
        operand: int | _Scalar
        other_sample: Any
        if isinstance(other, _Traced):
            operand, other_sample = other.buffer, other.sample
        elif isinstance(other, (int, float, np.number)) and not isinstance(other, bool):
            operand, other_sample = _Scalar(other), other  # a NumPy scalar stays one
        else:
            raise _Untraceable(type(other).__name__)
        pair: list[tuple[int | _Scalar, Any]] = [
            (self.buffer, self.sample),
            (operand, other_sample),
        ]
        if reflected:
            pair.reverse()
        result = ufunc(*(sample for _, sample in pair))
        return self.tape.add(ufunc, tuple(o for o, _ in pair), result)

    def __mul__(self, other: Any) -> _Traced:
        return self._step(np.multiply, other, False)

    def __rmul__(self, other: Any) -> _Traced:
        return self._step(np.multiply, other, True)

    def __add__(self, other: Any) -> _Traced:
        return self._step(np.add, other, False)

    def __radd__(self, other: Any) -> _Traced:
        return self._step(np.add, other, True)

    def astype(self, dtype: Any, copy: bool = True) -> _Traced:
        dtype = np.dtype(dtype)
        if dtype == self.sample.dtype and not copy:
            return self
        return self.tape.add(_cast, (self.buffer,), self.sample.astype(dtype))

    def __getattr__(self, name: str) -> Any:
        raise _Untraceable(name)


class _Untraceable(Exception):
    """A stage does something the tape does not record (not ``+`` or ``*``)."""


class _Recording:
    def __init__(self, dtype: np.dtype) -> None:
        self.dtypes: list[np.dtype] = [dtype]
        self.steps: list[tuple[Callable[..., Any], tuple[Any, ...], int]] = []

    def add(self, fn: Callable[..., Any], operands: tuple[Any, ...], sample: Any) -> _Traced:
        sample = np.asarray(sample)
        self.dtypes.append(sample.dtype)
        self.steps.append((fn, operands, len(self.dtypes) - 1))
        return _Traced(len(self.dtypes) - 1, sample, self)


def trace_chain(chain: Sequence[BoundStage], dtype: np.dtype) -> Tape | None:
    """``chain`` over an input of ``dtype`` as a :class:`Tape` of NumPy ufunc calls, the same
    calls, on the same dtypes, that :func:`apply_chain` makes; None where a stage uses
    anything but ``+`` and ``*`` of arrays and scalars (Python's or NumPy's: a NumPy scalar
    goes to the ufunc as it is, strongly typed); such a chain is then evaluated as is."""
    rec = _Recording(np.dtype(dtype))
    x = _Traced(0, np.ones(1, dtype=dtype), rec)
    try:
        with np.errstate(all="ignore"):
            for s in chain:
                x = s.definition.fn(x.astype(s.out_dtype, copy=False), s.params)
                if not isinstance(x, _Traced):
                    return None  # a stage that returned something else (a constant)
                if x.sample.dtype != s.out_dtype:  # as apply_chain does
                    x = x.astype(s.out_dtype)
    except Exception:  # _Untraceable, or an operator _Traced lacks (TypeError): as written
        return None
    return Tape(tuple(rec.dtypes), tuple(rec.steps), x.buffer)


def known_stages() -> str:
    """Comma-separated list of stage names, for error messages."""
    return ", ".join(sorted(REGISTRY))
