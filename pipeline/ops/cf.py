"""CF-packed variables decoded to their physical values, as xarray decodes them.

CF conventions (and xarray's ``to_zarr``) store a variable packed: small integers with
``scale_factor`` and ``add_offset`` attributes, and ``_FillValue`` / ``missing_value`` for the
elements that hold no value. xarray's ``mask_and_scale`` decoding turns them back into floats:
the missing elements become NaN, the others ``stored * scale_factor + add_offset``, computed in
the float dtype xarray chooses. :class:`Unpacking` does the same, on NumPy or CuPy arrays, to the
bit: two separately rounded operations, in xarray's order, with xarray's dtype rule.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Attributes that describe how a variable is packed, which stored values mean "missing", or
#: the range of its values: once its values are decoded (or changed by the stages) they no
#: longer describe it.
PACKING_ATTRIBUTES = (
    "scale_factor",
    "add_offset",
    "_FillValue",
    "missing_value",
    "valid_min",
    "valid_max",
    "valid_range",
    "actual_range",
    "_Unsigned",
)


@dataclass(frozen=True)
class Unpacking:
    """How one packed variable's stored elements become its values."""

    dtype: str
    """the decoded float dtype (xarray's choice, :func:`decoded_dtype`)"""
    fill_values: tuple[float, ...] = ()
    """stored values that mean "missing" (from ``_FillValue`` and ``missing_value``)"""
    scale_factor: float | None = None
    add_offset: float | None = None

    def apply(self, x: Any, xp: Any) -> Any:
        """The values of stored elements ``x`` (a NumPy or CuPy array): a new array of
        :attr:`dtype`, NaN where ``x`` holds a fill value."""
        y = x.astype(self.dtype, copy=True)
        missing = None
        for fv in self.fill_values:
            hit = y == fv
            missing = hit if missing is None else missing | hit
        if self.scale_factor is not None:
            y *= self.scale_factor
        if self.add_offset is not None:
            y += self.add_offset
        if missing is not None:  # last, so every masked element is the same NaN as xarray's
            y[missing] = np.nan
        return y

    def describe(self) -> str:
        parts = []
        if self.fill_values:
            parts.append(f"{', '.join(repr(v) for v in self.fill_values)} -> NaN")
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
    """The attributes that make xarray decode a variable's numbers to dates or durations
    (datetime64/timedelta64): CF time ``units`` ("hours since 2000-01-01", or a duration unit
    such as "hours"), a ``calendar``, or the ``dtype`` attribute xarray writes for timedelta64
    (and datetime64) values; [] for none."""
    found = []
    units = attrs.get("units")
    if isinstance(units, str) and (" since " in units or units in TIMEDELTA_UNITS):
        found.append("units")
    if "calendar" in attrs:
        found.append("calendar")
    dtype = attrs.get("dtype")
    if isinstance(dtype, str) and dtype.startswith(("timedelta64", "datetime64")):
        found.append("dtype")
    return found


def is_packed(attrs: Mapping[str, Any]) -> bool:
    """Whether a variable's attributes say its stored values are packed."""
    return "scale_factor" in attrs or "add_offset" in attrs


def fill_attributes(
    attrs: Mapping[str, Any], stored: np.dtype, fill_value: Any = None
) -> tuple[float, ...]:
    """The stored values that mean "missing": ``_FillValue`` and ``missing_value`` (scalars or
    lists), with ``fill_value`` (a Zarr v2 array's fill value, not None) in place of
    ``_FillValue``: xarray reads a v2 array's fill value as its ``_FillValue``, over any
    ``_FillValue`` attribute. NaN is left out (a NaN stays NaN without masking). A float
    ``_FillValue`` that xarray wrote into Zarr v3 attributes is the base64 text of a
    little-endian double, as xarray's ``FillValueCoder`` encodes it."""
    found: list[float] = []
    fill = fill_value if fill_value is not None else attrs.get("_FillValue")
    for raw in (fill, attrs.get("missing_value")):
        for v in np.ravel(np.asarray(raw if raw is not None else [], dtype=object)):
            if isinstance(v, str) and stored.kind == "f":
                v = struct.unpack("<d", base64.standard_b64decode(v))[0]
            if v is None or (isinstance(v, (float, np.floating)) and np.isnan(v)):
                continue
            found.append(v.item() if isinstance(v, np.generic) else v)
    return tuple(dict.fromkeys(found))


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
    attrs: Mapping[str, Any], stored: np.dtype, fill_value: Any = None
) -> Unpacking | None:
    """The decoding of a variable with ``attrs`` whose elements are stored as ``stored``;
    None when there is nothing to decode (no packing, no fill value other than NaN).

    ``fill_value``: for a Zarr v2 variable written by xarray, the array's fill value (xarray
    stores ``_FillValue`` there, not in the attributes)."""
    fills = fill_attributes(attrs, stored, fill_value)
    if not is_packed(attrs) and not fills:
        return None
    declared = "_FillValue" in attrs or "missing_value" in attrs or fill_value is not None
    if is_packed(attrs) and declared and not fills and stored.kind == "f":
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
    scale, offset = attrs.get("scale_factor"), attrs.get("add_offset")
    return Unpacking(
        dtype=np.dtype(dtype).str,
        fill_values=fills,
        scale_factor=None if scale is None else np.asarray(scale).item(),
        add_offset=None if offset is None else np.asarray(offset).item(),
    )
