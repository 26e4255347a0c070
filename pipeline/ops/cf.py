"""CF-packed variables decoded to their physical values, as xarray decodes them.

CF conventions (and xarray's ``to_zarr``) store a variable packed: small integers with
``scale_factor`` and ``add_offset`` attributes, and ``_FillValue`` / ``missing_value`` for the
elements that hold no value. xarray's ``mask_and_scale`` decoding turns them back into floats:
the missing elements become NaN, the others ``stored * scale_factor + add_offset``, computed in
the float dtype xarray chooses. :class:`Unpacking` says how, and does it on NumPy arrays to the
bit: two separately rounded operations, in xarray's order, with xarray's dtype rule. The GPU
backend runs the same steps in its own kernel (``pipeline.ops.kernel.unpack_source``): CuPy's
arithmetic returns one canonical NaN and flushes float32 subnormals, so :meth:`Unpacking.apply`
on CuPy arrays is exact only for float16, where the GPU backend uses it.
"""

from __future__ import annotations

import base64
import math
import re
import struct
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Attributes that state facts about a variable's values: the range of valid values (CF 1.11
#: section 2.5.1, ``valid_min``, ``valid_max``, ``valid_range``: netCDF4-python's and
#: netCDF-Java's readers mask every value outside it; xarray 2025.6 does not, but lists them
#: among the CF attributes it hands over, ``xarray.convert``), the range they hold (CF 1.11
#: Appendix A, ``actual_range``), and the values that are flags (CF 1.11 section 3.5,
#: ``flag_values``, ``flag_masks`` and the ``flag_meanings`` that name them, which cf-xarray
#: compares values with). The stages change the values (every config has one), so the output
#: carries none of them: a computed value 5 times the input's would be masked as out of
#: ``valid_range: [-1, 1]`` (h87f). Units and descriptions (``units``, ``long_name``, ...) are
#: carried: the pipeline does not guess what the stages make of them.
RANGE_ATTRIBUTES = ("valid_min", "valid_max", "valid_range", "actual_range")
VALUE_ATTRIBUTES = (
    *RANGE_ATTRIBUTES,
    "flag_values",
    "flag_masks",
    "flag_meanings",
)

#: Attributes that describe how a variable is packed, which stored values mean "missing", or
#: the range of its values: once its values are decoded (or changed by the stages) they no
#: longer describe it.
PACKING_ATTRIBUTES = (
    "scale_factor",
    "add_offset",
    "_FillValue",
    "missing_value",
    *RANGE_ATTRIBUTES,  # a packed variable's ranges are of its stored values (CF 8.1)
    "_Unsigned",
)


@dataclass(frozen=True)
class Unheld:
    """An element that a decoding to integers cannot give a value (:meth:`Unpacking.unheld`)."""

    index: int
    """its flat index (C order) in the block searched"""
    value: Any
    """its stored value (a Python number)"""
    masked: bool
    """it equals a fill value (missing: NaN); else it is a stored NaN, an infinity or a float
    past the integer dtype"""


@dataclass(frozen=True)
class Unpacking:
    """How one packed variable's stored elements become its values."""

    dtype: str
    """the decoded dtype (xarray's choice, :func:`decoded_dtype`): a float, or int64 for an
    integer ``scale_factor`` alone"""
    fill_values: tuple[float, ...] = ()
    """stored values that mean "missing" (from ``_FillValue`` and ``missing_value``)"""
    scale_factor: float | None = None
    add_offset: float | None = None
    view: str | None = None
    """the integer kind the stored integers are read as first (``_Unsigned``, as xarray reads
    it: 'u' for "true" on signed integers, 'i' for "false" on unsigned ones: the same bytes,
    :meth:`stored`); None: as stored"""

    def stored(self, x: Any) -> Any:
        """The stored elements ``x`` (NumPy or CuPy) as this decoding reads them: viewed as
        integers of the other signedness where ``_Unsigned`` says so (:attr:`view`; xarray's
        ``np.asarray(data, dtype=unsigned)``, which keeps the bits of each element), else
        ``x``. Idempotent: a block already viewed is returned as it is."""
        if self.view is None or x.dtype.kind not in "iu" or x.dtype.kind == self.view:
            return x
        order = "|" if x.dtype.itemsize == 1 else x.dtype.byteorder
        return x.view(np.dtype(f"{order}{self.view}{x.dtype.itemsize}"))

    def apply(self, x: Any, xp: Any) -> Any:
        """The values of stored elements ``x`` (a NumPy array, or CuPy where the module's
        note allows): a new array of :attr:`dtype`, NaN where ``x`` holds a fill value.

        An integer :attr:`dtype` holds no NaN: the read step refuses first a block where
        :meth:`unheld` finds an element; a missing one raises ValueError here too (a stored
        NaN would convert to an arbitrary integer)."""
        y = self.stored(x).astype(self.dtype, copy=True)
        missing = self._missing(y)
        if y.dtype.kind != "f" and self.fill_values:
            # xarray's mask coder gives np.where(missing, NaN, y), float64, which its scale
            # coder converts back: integers past 2**53 come back rounded, as xarray reads them
            with np.errstate(invalid="ignore"):  # 2**63 - 1 rounds past int64, as in xarray
                y = y.astype(np.float64).astype(self.dtype)
        if self.scale_factor is not None:
            y *= self.scale_factor
        if self.add_offset is not None:
            y += self.add_offset
        if missing is None:
            return y
        if y.dtype.kind == "f":  # last, so every masked element is the same NaN as xarray's
            y[missing] = np.nan
        elif bool(xp.any(missing)):  # NumPy converts the NaN even where none is masked
            raise ValueError(f"a missing element, which {y.dtype} cannot hold: see unheld()")
        return y

    def _missing(self, y: Any) -> Any:
        """Where the elements ``y``, converted to :attr:`dtype`, equal a fill value (a boolean
        array); None where no fill value is a number."""
        missing = None
        for fv in self.fill_values:
            if isinstance(fv, (str, bytes)):
                continue  # text equals no number (NumPy's comparison; CuPy's would raise)
            hit = y == fv
            missing = hit if missing is None else missing | hit
        return missing

    def unheld(self, x: np.ndarray) -> Unheld | None:
        """The first element (C order) of the stored elements ``x`` (on the host: the read
        step copies a GPU block here first, as an integer decoding is the host's) that has no
        value in this decoding's :attr:`dtype` where that is an
        integer one (an integer ``scale_factor`` alone: xarray decodes to int64), which holds
        no NaN: one equal to a fill value once converted (as :meth:`apply` and xarray compare
        it), so missing; or, stored as floats, NaN, an infinity or a number past the dtype,
        whose conversion NumPy leaves undefined. xarray reads an arbitrary integer there.
        None where every element has its value, and for a float :attr:`dtype`, which holds
        them all. Decided from the elements, not the metadata: a fill value that no element
        equals masks nothing (zarr's default v2 fill value 0, which such inputs had been
        refused for, all their elements held)."""
        x = self.stored(x)
        dtype = np.dtype(self.dtype)
        if dtype.kind not in "iu" or x.size == 0:
            return None
        lo, hi = float(np.iinfo(dtype).min), float(np.iinfo(dtype).max + 1)  # both exact
        bad = None
        if x.dtype.kind == "f":
            bad = ~np.isfinite(x)
            if np.finfo(x.dtype).max >= hi:  # float16 holds no number past int64
                bad |= (x < lo) | (x >= hi)
        if any(not isinstance(fv, (str, bytes)) for fv in self.fill_values):
            with np.errstate(invalid="ignore"):  # NaN's conversion: found above
                missing = self._missing(x.astype(dtype))
            bad = missing if bad is None else bad | missing
        if bad is None or not bool(np.any(bad)):
            return None
        index = int(np.argmax(bad.reshape(-1).view(np.uint8)))
        value = x.reshape(-1)[index].item()
        converts = x.dtype.kind != "f" or lo <= value < hi
        return Unheld(index=index, value=value, masked=converts)

    def said_fills(self) -> str:
        """The fill values as a line says them: Python's repr of each number (a NumPy scalar
        kept for its comparison, :func:`compared_fills`, said as its value)."""
        return ", ".join(
            repr(v.item() if isinstance(v, np.generic) else v) for v in self.fill_values
        )

    def describe(self) -> str:
        read = "" if self.view is None else f"read as {'un' if self.view == 'u' else ''}signed, "
        if not (self.fill_values or self.scale_factor is not None or self.add_offset is not None):
            return f"{read}convert to {np.dtype(self.dtype)} (no element masked)"
        parts = [read.rstrip(", ")] if read else []
        if self.fill_values:
            parts.append(f"{self.said_fills()} -> NaN")
        if self.scale_factor is not None:
            parts.append(f"* {self.scale_factor!r}")
        if self.add_offset is not None:
            parts.append(f"+ {self.add_offset!r}")
        return f"unpack ({'; '.join(parts)}) as {np.dtype(self.dtype)}"


#: The ``units`` xarray decodes a variable to timedelta64 by (its ``TIME_UNITS``).
TIMEDELTA_UNITS = frozenset(
    ("days", "hours", "minutes", "seconds", "milliseconds", "microseconds", "nanoseconds")
)


def time_attributes(attrs: Mapping[str, Any]) -> list[str]:
    """The attributes by which xarray decodes a variable's numbers to dates or durations
    (datetime64/timedelta64), as the installed xarray (2025.6.0) decides it; [] where it reads
    numbers. Its ``units`` alone decide (``CFTimedeltaCoder``, then ``CFDatetimeCoder``):
    text equal to a duration unit ("hours": durations), else text holding "since" ("hours
    since 2000-01-01", "seconds_since_1970" too, which xarray then fails to decode, so that
    xr.open_zarr opens neither the input nor an output carrying them: dates). With such units,
    ``calendar`` is named beside them for dates (xarray decodes by it), and a ``dtype``
    attribute of timedelta64 for durations (xarray decodes to its resolution).

    A ``calendar`` without time units, a ``dtype`` of timedelta64 or datetime64 without a
    duration unit, are plain attributes to this xarray (it opens the numbers as they are, and
    keeps them in ``attrs``): not named (h55g: they had been refused as times). This is the
    installed version's rule: its ``CFTimedeltaCoder`` says that a later version will not
    decode durations by their units by default, but by the timedelta64 ``dtype`` attribute
    (which it reads only beside a duration unit now)."""
    units = attrs.get("units")
    if not isinstance(units, str):
        return []
    dtype = attrs.get("dtype")
    if units in TIMEDELTA_UNITS:
        timedelta = isinstance(dtype, str) and dtype.startswith("timedelta64")
        return ["units", "dtype"] if timedelta else ["units"]
    if "since" in units:
        return ["units", "calendar"] if "calendar" in attrs else ["units"]
    return []


def bounds_time_attributes(
    arrays: Sequence[tuple[str, Mapping[str, Any]]],
) -> dict[str, dict[str, Any]]:
    """The ``units`` and ``calendar`` xarray's ``decode_cf`` gives each bounds variable of a
    group from the times whose ``bounds`` name it (``conventions._update_bounds_attributes``,
    2025.6.0), ``arrays`` its (name, attributes) in the order xarray reads the group: for each
    array whose ``units`` (its own, or given earlier: xarray changes them in place, so bounds
    of bounds are given them in turn) are text holding "since", in order, the array its
    ``bounds`` names gets those ``units`` and, where the time has one, its ``calendar``, each
    unless it holds it already (its own or one an earlier time gave: the first time decides
    ``units``, the first with a ``calendar`` decides that). {name: the attributes given},
    only names of ``arrays`` that are given some."""
    now = {name: dict(attrs) for name, attrs in arrays}
    for name, _ in arrays:
        attrs = now[name]
        units = attrs.get("units")
        target = attrs.get("bounds")
        if not (isinstance(units, str) and "since" in units) or not isinstance(target, str):
            continue
        if target not in now:
            continue
        for key in ("units", "calendar"):
            if key in attrs:
                now[target].setdefault(key, attrs[key])
    given: dict[str, dict[str, Any]] = {}
    for name, stored in arrays:
        added = {k: v for k, v in now[name].items() if k not in stored}
        if added:
            given[name] = added
    return given


def bounds_time_conflicts(
    arrays: Sequence[tuple[str, Mapping[str, Any]]],
) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """The bounds variables of a group (``arrays``: (name, attributes)) that several times
    name by their ``bounds`` and would give other ``units``, or other ``calendar``s, of
    those it lacks (:func:`bounds_time_attributes`): the first xarray reads decides, and the
    order xarray reads a group's arrays in is its listing's, which zarr-python gives in no
    fixed order for a group without consolidated metadata, so which dates xarray decodes
    there is not defined. Where the bounds variable's own ``units`` are no time's, a
    ``calendar`` decides nothing and is left out. {name: [(time, the attributes it would
    give), ...] in the order of ``arrays``}; {} where there is none."""
    own = {name: dict(attrs) for name, attrs in arrays}
    offers: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for name, attrs in arrays:
        units = attrs.get("units")
        target = attrs.get("bounds")
        if not (isinstance(units, str) and "since" in units) or not isinstance(target, str):
            continue
        if target not in own or target == name:
            continue
        offer = {k: attrs[k] for k in ("units", "calendar") if k in attrs and k not in own[target]}
        offers.setdefault(target, []).append((name, offer))
    found: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for target, offered in offers.items():
        units = own[target].get("units")
        keys = ["units", "calendar"]
        if "units" in own[target] and not (isinstance(units, str) and "since" in units):
            keys = []  # numbers whatever they are given (a calendar alone decodes nothing)
        for key in keys:
            values = {repr(o[key]) for _, o in offered if key in o}
            if len(values) > 1:
                found[target] = offered
                break
    return found


def bounds_time_chains(
    arrays: Sequence[tuple[str, Mapping[str, Any]]],
) -> dict[str, tuple[str, str, dict[str, Any]]]:
    """The bounds variables of a group (``arrays``: (name, attributes)) that an array names
    by its ``bounds`` whose time ``units`` (or ``calendar``) are not its own but given it as
    the bounds of a time in turn (bounds of bounds): xarray's ``decode_cf`` gives them on
    only where it reads that time before the array that passes them on
    (:func:`bounds_time_attributes`), in the group's listing order, which zarr-python gives
    in no fixed order, so whether the bounds variable decodes to dates is not defined (the
    same input had been run, and read, as numbers or as dates). A key some time gives it
    directly, with the same value, decides whatever the order and is left out; so are bounds
    whose own ``units`` are no time's. {bounds: (the array naming it, the time that gives
    that array the attributes, the attributes it would pass on)}; {} where there is none."""
    own = {name: dict(attrs) for name, attrs in arrays}
    now = {name: dict(attrs) for name, attrs in arrays}
    giver: dict[tuple[str, str], str] = {}
    changed = True
    while changed:  # the times read before their bounds, in turn: what xarray may give
        changed = False
        for name, attrs in now.items():
            units, target = attrs.get("units"), attrs.get("bounds")
            if not (isinstance(units, str) and "since" in units) or not isinstance(target, str):
                continue
            if target not in now or target == name:
                continue
            for key in ("units", "calendar"):
                if key in attrs and key not in now[target]:
                    now[target][key] = attrs[key]
                    giver[(target, key)] = giver.get((name, key), name)
                    changed = True
    found: dict[str, tuple[str, str, dict[str, Any]]] = {}
    for name, attrs in sorted(own.items()):
        target, units = attrs.get("bounds"), now[name].get("units")
        if not isinstance(target, str) or target not in own or target == name:
            continue
        if not (isinstance(units, str) and "since" in units):
            continue
        bounds = own[target]
        if "units" in bounds and "since" not in str(bounds["units"]):
            continue  # numbers whatever they are given
        passed: dict[str, Any] = {
            k: now[name][k]
            for k in ("units", "calendar")
            if k in now[name] and k not in attrs and k not in bounds
        }
        for k in list(passed):
            direct = [
                a[k]
                for a in own.values()
                if a.get("bounds") == target and k in a and "since" in str(a.get("units"))
            ]
            if direct and all(_same(v, passed[k]) for v in direct):
                del passed[k]
        if passed and target not in found:
            found[target] = (name, giver.get((name, next(iter(passed))), name), passed)
    return found


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


def is_packed(attrs: Mapping[str, Any]) -> bool:
    """Whether a variable's attributes say its stored values are packed."""
    return "scale_factor" in attrs or "add_offset" in attrs


class UnreadableFill(ValueError):
    """A Zarr v3 variable's ``_FillValue`` attribute that xarray cannot read, or reads as a
    value other than the one written (:func:`v3_fill_value`). ``str()`` is the rest of a line
    that begins with the variable; ``fix`` is the change that makes it readable; ``readable``:
    xarray opens the variable (and misreads the value) rather than failing."""

    def __init__(self, message: str, fix: str, readable: bool) -> None:
        super().__init__(message)
        self.fix = fix
        self.readable = readable


#: A decimal integer as text, which xarray's ``int()`` reads as the number it says (``int()``
#: also takes "1_000", other scripts' digits, surrounding spaces: refused, not guessed).
_INTEGER_TEXT = re.compile(r"[+-]?[0-9]+")


def v3_fill_value(raw: Any, stored: np.dtype) -> Any:
    """The value of a Zarr v3 variable's ``_FillValue`` attribute ``raw`` as xarray reads it
    for elements stored as ``stored`` (its zarr backend's ``FillValueCoder.decode``, applied to
    every v3 array of a group it opens): ``int(raw)`` for integers, the base64 text of a
    little-endian double for floats (how xarray writes a float fill, ``FillValueCoder.encode``),
    ``bool(raw)`` for booleans; other dtypes as they are (the pipeline decodes numbers only).

    Raises :class:`UnreadableFill` where xarray fails (``int("NaN")``, ``int(None)``, a list;
    a number, not text, on floats; text that is not eight bytes of base64) and where it reads
    another value than the one written: ``int(1.5)`` is 1, so xarray masks the stored 1s; a
    non-integral fill on integers is refused rather than guessed at. An integral float (2.0)
    and a decimal integer as text ("2") are read as that integer, as xarray reads them."""
    said = f"_FillValue {raw!r} on its {stored} values"
    if stored.kind in "iu":
        fix = "_FillValue as an integer"
        how = "write _FillValue as the integer that marks missing elements, or remove it"
        rule = "it reads a Zarr v3 integer variable's _FillValue with int()"
        exact = (
            isinstance(raw, (bool, int))
            or (isinstance(raw, float) and raw.is_integer())
            or (isinstance(raw, str) and _INTEGER_TEXT.fullmatch(raw) is not None)
        )
        try:
            read = int(raw)
            float(read)  # beyond a double, xarray's comparison with its values fails
        except (TypeError, ValueError, OverflowError):
            raise UnreadableFill(
                f"{said}, which xarray cannot read ({rule}): {how}", fix, readable=False
            ) from None
        if exact:
            return read
        raise UnreadableFill(
            f"{said}, which xarray reads as int({raw!r}) = {read} ({rule}), masking the stored "
            f"{read}s: {how}",
            fix,
            readable=True,
        )
    if stored.kind == "f":
        try:
            if not isinstance(raw, (str, bytes)):  # xarray asserts it
                raise TypeError(raw)
            return struct.unpack("<d", base64.standard_b64decode(raw))[0]
        except (TypeError, ValueError, struct.error):  # binascii.Error is a ValueError
            pass
        text = None
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            # the stored dtype's value, widened: xarray compares its float64 with the values
            # in float64, where no float32 equals 0.1 (helper-77: the text of 0.1 itself,
            # once written as advised, masked nothing), as xarray writes a float32 fill
            with np.errstate(over="ignore"):
                held = float(stored.type(raw))
            value = held if np.isfinite(held) or not np.isfinite(raw) else float(raw)
            text = base64.standard_b64encode(struct.pack("<d", value)).decode()
            as_stored = f" as {stored} ({value!r})" if value != raw else ""
        fix = f"_FillValue: {text!r}" if text else "_FillValue as base64 of a float64"
        written = f"{text!r}, xarray's text for {raw!r}{as_stored}" if text else "xarray writes it"
        raise UnreadableFill(
            f"{said}, which xarray cannot read (it reads a Zarr v3 float variable's _FillValue "
            "as the base64 text of a little-endian float64, as it writes it): write it as "
            f"{written}, or remove it",
            fix,
            readable=False,
        )
    if stored.kind == "b":
        return bool(raw)
    return raw


#: xarray's ``_FillValue`` attribute of NaN in a Zarr v3 array (``FillValueCoder.encode``: the
#: base64 text of a little-endian float64), "AAAAAAAA+H8=".
NAN_FILL_TEXT = base64.standard_b64encode(struct.pack("<d", math.nan)).decode()


def output_fill_attribute(dtype: np.dtype, variable: bool) -> str | None:
    """The ``_FillValue`` attribute of an output of ``dtype`` (never packed: its missing
    elements are NaN) as xarray's ``to_zarr`` writes one of a computed variable, which holds
    none of the input's encoding: NaN, as :data:`NAN_FILL_TEXT`, on every float variable (its
    ``DefaultFillvalueCoder``; none on integers), so ``xr.open_zarr`` gives the output
    ``encoding["_FillValue"]`` NaN, as it does the input written by xarray and every float
    coordinate written beside it. None where the output holds none: an integer dtype, or an
    output that is no Dataset's variable (``variable`` false: an array written alone, whose
    attributes are the input's as given). The Zarr fill value is another thing (what an
    absent chunk reads as: :func:`pipeline.store.arrays.chained_fill`), which xarray does not
    read as a mask in Zarr v3."""
    return NAN_FILL_TEXT if variable and np.dtype(dtype).kind == "f" else None


def fill_attributes(
    attrs: Mapping[str, Any],
    stored: np.dtype,
    fill_value: Any = None,
    zarr_format: int = 3,
    as_variable: bool = True,
    alone: bool = False,
) -> tuple[Any, ...]:
    """The stored values that mean "missing": ``_FillValue`` and ``missing_value`` (scalars or
    lists), with ``fill_value`` (a Zarr v2 array's fill value, not None, a NumPy scalar of
    the array's dtype as zarr-python gives it) in place of ``_FillValue``: xarray reads a v2
    array's fill value as its ``_FillValue``, over any ``_FillValue`` attribute. NaN is left
    out (a NaN stays NaN without masking). Each value as xarray's mask coder holds it, the
    elements of ``np.ravel`` of the attribute: a NumPy scalar (a JSON number is a float64 or
    an int64, a list's numbers one dtype for all), or the Python object where that array's
    dtype is object; :func:`compared_fills` says which elements they mask.

    A Zarr v3 variable's ``_FillValue`` attribute is read as xarray reads it
    (:func:`v3_fill_value`: an integer for integers, the base64 text of a little-endian double,
    as xarray writes it, for floats), which raises :class:`UnreadableFill` where xarray cannot
    read it or reads another value. Every other one is compared as it is, as xarray compares it
    (``missing_value``, and a v2 array's ``_FillValue`` attribute: base64 text there is text,
    equal to no number). So is a v3 ``_FillValue`` on an array xarray does not read as a
    variable (``as_variable`` false: no dimension names), which xarray's rule does not reach:
    the number it says (helper-47: a plain array's -9999.0 was refused as unreadable, with or
    without ``mask_and_scale``, the only fix offered an edit of the input). So is one of an
    array with dimension names in no group (``alone``: the store's root, or no group above
    it), which ``xr.open_zarr`` cannot open either, but for xarray's own text, read as xarray
    writes it (a variable's folder given as the store): h67e, a root array's -999.0 or NaN had
    been refused as a value xarray cannot read, its fix the base64 text of a double."""
    found: list[Any] = []
    fill = _raw_fill(attrs, stored, fill_value, zarr_format, as_variable, alone)
    for raw in (fill, attrs.get("missing_value")):
        if raw is None:
            continue
        # as xarray's mask coder takes them: np.ravel of each, NaN and None left out
        for v in np.ravel(raw):
            if v is None or (isinstance(v, (float, np.floating)) and np.isnan(v)):
                continue
            found.append(v)
    return tuple(dict.fromkeys(found))


def _raw_fill(
    attrs: Mapping[str, Any],
    stored: np.dtype,
    fill_value: Any,
    zarr_format: int,
    as_variable: bool,
    alone: bool,
) -> Any:
    """The ``_FillValue`` as xarray's mask coder is given it, before ``np.ravel``
    (:func:`fill_attributes` says which): a v2 array's fill value (a NumPy scalar of its
    dtype), a v3 variable's attribute as xarray reads it (a Python int on integers), or the
    attribute as written; None for none."""
    if fill_value is not None:
        return fill_value
    if zarr_format == 3 and as_variable and "_FillValue" in attrs:
        try:
            return v3_fill_value(attrs["_FillValue"], stored)
        except UnreadableFill:
            if not alone:
                raise
            return attrs["_FillValue"]
    return attrs.get("_FillValue")


def compared_fills(fills: Sequence[Any], dtype: np.dtype) -> tuple[Any, ...]:
    """The fill values ``fills`` (as :func:`fill_attributes` gives them) as Python values
    that, compared with elements of ``dtype`` (``y == v``, a Python scalar converted to the
    array's dtype, NEP 50), find the elements xarray's mask coder finds (``data == fv`` with
    its NumPy scalars, which NumPy compares in the dtype of both).

    A float64 ``missing_value`` of 0.1 on float32 values is compared in float64, where no
    float32 equals 0.1: it masks nothing, and is left out here (helper-77: the pipeline had
    masked the float32 0.1s that xarray reads as numbers, netCDF's rounded 9.96921e+36 fill on
    float32 data alike); a fill value that the elements' dtype holds exactly is kept. A
    comparison that NumPy makes in a float dtype wider than an integer ``dtype`` (an integer
    decoding) keeps its NumPy scalar, which compares as xarray's does. Text is left out: it
    equals no number, so it masks nothing (helper-78: the plan said ``'NaN' -> NaN``)."""
    dtype = np.dtype(dtype)
    out: list[Any] = []
    for fv in fills:
        if isinstance(fv, (str, bytes, np.str_, np.bytes_)):
            continue  # text equals no number: it masks nothing
        if not isinstance(fv, np.generic):  # an element of an object array: xarray's too
            out.append(fv)
            continue
        wide = np.result_type(dtype, fv.dtype)
        if wide == dtype:  # fv converted to dtype, as a Python scalar is
            out.append(fv.item())
            continue
        if dtype.kind != "f":
            out.append(fv)
            continue
        exact = np.asarray(fv).astype(wide)
        with np.errstate(over="ignore", invalid="ignore"):
            held = exact.astype(dtype)
        if held.astype(wide) != exact:
            continue  # no element of dtype equals it in the wider dtype
        value = fv.item()
        out.append(value if value == held.item() else held.item())
    return tuple(dict.fromkeys(out))


def decoded_dtype(stored: np.dtype, attrs: Mapping[str, Any]) -> np.dtype:
    """The float dtype xarray decodes a packed or masked variable to (its
    ``_choose_float_dtype``, for a mapping with the variable's attributes)."""
    scale, offset = attrs.get("scale_factor"), attrs.get("add_offset")
    if scale is not None or offset is not None:
        scale_type = np.dtype(type(scale)) if scale is not None else None
        offset_type = np.dtype(type(offset)) if offset is not None else None
        if (
            scale is not None
            and offset is not None
            and offset_type == scale_type
            and scale_type in (np.float32, np.float64)
        ):
            if stored.itemsize == 4 and stored.kind in "iu":
                return np.dtype(np.float64)
            return np.dtype(scale_type)
        if offset is not None:
            return np.dtype(np.float64)
        assert scale_type is not None
        return scale_type
    if stored.itemsize <= 4 and stored.kind == "f":
        return np.dtype(np.float32)
    if stored.itemsize <= 2 and stored.kind in "iu":
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def unpacking(
    attrs: Mapping[str, Any],
    stored: np.dtype,
    fill_value: Any = None,
    zarr_format: int = 3,
    as_variable: bool = True,
    alone: bool = False,
) -> Unpacking | None:
    """The decoding of a variable with ``attrs`` whose elements are stored as ``stored``;
    None when there is nothing to decode (no packing, no fill value other than NaN).

    ``fill_value``: for a Zarr v2 variable written by xarray, the array's fill value (xarray
    stores ``_FillValue`` there, not in the attributes). ``zarr_format``: the variable's; a v3
    ``_FillValue`` attribute is read as xarray reads it, and one xarray cannot read, or reads as
    another value, raises :class:`UnreadableFill` (:func:`fill_attributes`), where the array
    is one xarray reads as a variable (``as_variable``: it has dimension names) in a group
    (``alone``: in none, where what xarray cannot read is taken as it is written)."""
    view = reinterpreted(attrs, stored)
    found = fill_attributes(attrs, stored, fill_value, zarr_format, as_variable, alone)
    if view is not None:
        found = _reinterpreted_fills(attrs, stored, view, fill_value, zarr_format, alone)
        stored = view
    if not is_packed(attrs) and not found and view is None:
        return None
    # a null attribute is no declaration: xarray's pop_to drops it (helper-78: a float32
    # variable with a scale and missing_value null was decoded in float32, xarray's in float64)
    declared = fill_value is not None or any(
        attrs.get(k) is not None for k in ("_FillValue", "missing_value")
    )
    if is_packed(attrs) and declared and not found and stored.kind == "f":
        # a fill value is declared, but only NaN: xarray's mask coder masks nothing and keeps
        # the stored dtype, and its scale/offset coder then decodes in that dtype (a declared
        # fill skips its own dtype choice), e.g. float32 with a float64 scale stays float32
        dtype = stored
    elif is_packed(attrs):
        dtype = decoded_dtype(stored, attrs)
    elif stored.kind == "f":
        dtype = stored
    else:  # xarray's maybe_promote: the smallest float that holds every stored integer
        dtype = np.dtype(np.float32 if stored.itemsize <= 2 else np.float64)
    fills = compared_fills(found, np.dtype(dtype))
    if view is not None and not is_packed(attrs) and not fills:
        # xarray's mask coder masks nothing: the integers of the other signedness, unconverted
        # (its maybe_promote applies only where a fill value is declared)
        dtype = stored if not found else dtype
    if not is_packed(attrs) and not fills and np.dtype(dtype) == stored and view is None:
        return None  # no element masked, none converted: the values are the stored elements
    scale, offset = attrs.get("scale_factor"), attrs.get("add_offset")
    return Unpacking(
        dtype=np.dtype(dtype).str,
        fill_values=fills,
        scale_factor=None if scale is None else np.asarray(scale).item(),
        add_offset=None if offset is None else np.asarray(offset).item(),
        view=None if view is None else view.kind,
    )


def reinterpreted(attrs: Mapping[str, Any], stored: np.dtype) -> np.dtype | None:
    """The integer dtype xarray reads elements stored as ``stored`` as, by their
    ``_Unsigned`` attribute (its mask coder's ``_convert_unsigned_fill_value``, with
    ``mask_and_scale``): unsigned where it is the text "true" on signed integers, signed where
    it is "false" on unsigned ones, of the same size; None otherwise (any other value, or
    another dtype, which xarray ignores)."""
    value = attrs.get("_Unsigned")
    if stored.kind == "i" and isinstance(value, str) and value == "true":
        return np.dtype(f"u{stored.itemsize}")
    if stored.kind == "u" and isinstance(value, str) and value == "false":
        return np.dtype(f"i{stored.itemsize}")
    return None


def fill_written_back_unread(attrs: Mapping[str, Any], stored: np.dtype) -> bool:
    """Whether xarray writes a ``_FillValue`` of a variable with ``attrs``, stored as
    ``stored``, back in a form it cannot read: read signed by ``_Unsigned`` "false" on
    unsigned elements, it converts the fill value through the signed dtype as it reads it
    (65534 on uint16 must be -2), but writes it as the unsigned one (its
    ``_encode_unsigned_fill_value``: -2 is written 65534 again; and without a fill value it
    writes the elements back unsigned, ``_Unsigned`` dropped). ``_Unsigned`` "true" goes
    through the stored signed dtype both ways."""
    view = reinterpreted(attrs, stored)
    return view is not None and view.kind == "i" and attrs.get("_FillValue") is not None


def _reinterpreted_fills(
    attrs: Mapping[str, Any],
    stored: np.dtype,
    view: np.dtype,
    fill_value: Any,
    zarr_format: int,
    alone: bool,
) -> tuple[Any, ...]:
    """The fill values of a variable read as ``view`` by its ``_Unsigned`` attribute, as
    xarray's mask coder holds them: ``missing_value``'s as they are, the ``_FillValue`` (a v2
    array's fill value in its place, as :func:`fill_attributes` reads it) converted as xarray
    converts it: ``np.array(fill, dtype=stored).view(view).item()`` to unsigned (-1 on int16 is
    65535), ``view.type(fill)`` to signed. Raises :class:`UnreadableFill` where xarray fails
    on it (a list, a number ``stored`` cannot hold)."""
    own = {k: v for k, v in attrs.items() if k != "missing_value"}
    raw = fill_attributes(own, stored, fill_value, zarr_format, True, alone)
    rest = fill_attributes(
        {k: attrs[k] for k in ("missing_value",) if k in attrs}, stored, None, zarr_format
    )
    if not raw:
        return rest
    given = _raw_fill(own, stored, fill_value, zarr_format, True, alone)
    if np.ndim(given) == 0:  # xarray converts the value it is given, not its np.ravel
        raw = (given,)
    if len(raw) > 1 or np.ndim(given) > 0:
        raise UnreadableFill(
            f"_FillValue {list(raw)!r} with _Unsigned {attrs['_Unsigned']!r}, which xarray "
            "cannot read (it converts one fill value to the other signedness): write "
            "_FillValue as the one integer that marks missing elements, or remove it",
            "_FillValue as one integer",
            False,
        )
    (fill,) = raw
    # xarray converts the fill value through the signed dtype of the two: the stored one
    # where it reads signed values as unsigned ("true"), the one it reads where it reads
    # unsigned values as signed ("false"); that dtype must hold the value as written
    holder = stored if view.kind == "u" else view
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            if view.kind == "u":
                converted = np.array(fill, dtype=stored).view(view).item()
            else:
                converted = view.type(fill)
    except (OverflowError, ValueError, TypeError, RuntimeWarning, DeprecationWarning):
        same = _same_bits_as(fill, holder)
        article = "an" if holder.name.startswith("i") else "a"
        fix = (
            f"_FillValue: {same}"
            if same is not None
            else f"_FillValue as {article} {holder} integer"
        )
        which = (
            f"{same}, the {holder} of its bits (it masks the same elements)"
            if same is not None
            else f"{article} {holder} integer"
        )
        raise UnreadableFill(
            f"_FillValue {_said(fill)} on its {stored} values with _Unsigned "
            f"{attrs['_Unsigned']!r}, which xarray cannot read (it converts the fill value "
            f"to {holder}, which cannot hold it): write _FillValue as {which}, or remove it",
            fix,
            False,
        ) from None
    return tuple(dict.fromkeys([*rest, converted]))


def _same_bits_as(fill: Any, holder: np.dtype) -> int | None:
    """The ``holder`` integer (a signed dtype) whose bits are those of ``fill`` as the unsigned
    integer of its size (65534 as int16: -2), which xarray's ``_Unsigned`` decoding then reads
    as ``fill``; None where ``fill`` is no integer that unsigned dtype holds."""
    unsigned = np.dtype(f"u{holder.itemsize}")
    try:
        whole = float(fill).is_integer()
        if not whole or not 0 <= int(fill) <= np.iinfo(unsigned).max:
            return None
    except (TypeError, ValueError, OverflowError):
        return None
    return int(np.array(int(fill), dtype=unsigned).view(holder).item())


def _said(value: Any) -> str:
    return repr(value.item() if isinstance(value, np.generic) else value)
