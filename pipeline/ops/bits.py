"""Arrays compared to the bit: what the pipeline promises of its output and of the coordinates
it carries, and what ``verify`` and a run's check of an output's coordinates ask.

:func:`difference` is the one comparison: the same shape, the same dtype (byte order aside),
the same bytes in every element, so a -0.0 where the other holds 0.0, a NaN of another
payload, and either in a complex number's real or imaginary part, each differ (NumPy's
``array_equal``, with or without ``equal_nan``, and xarray's ``identical`` take some of them
for the same; without ``equal_nan``, ``array_equal`` takes a NaN for no NaN, itself
included). :func:`unequal` is its element-wise core, for a caller that counts the elements
that differ (the benchmarks' output check).

Numbers, booleans, dates and durations (NumPy kinds ``biufcmM``) are compared by their bytes
in native order: a big-endian copy of the same values is the same. Two arrays of another
dtype differ whatever their values: an int32 array is not an int64 one that holds the same
numbers (the bits differ in width), and :func:`difference` says the two dtypes rather than
any element. Text and objects (strings of any width, cftime dates) are compared as equal
values, element by element: their bytes depend on the width a reader chose.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: NumPy kinds compared by their bytes: booleans, integers, floats, complex numbers, dates
#: and durations.
NUMBER_KINDS = "biufcmM"


def _by_bytes(dtype: np.dtype) -> bool:
    return dtype.kind in NUMBER_KINDS


def unequal(want: Any, got: Any) -> np.ndarray:
    """Where ``got`` differs from ``want`` (a boolean array of their shape): for numbers, each
    element whose bytes differ (native byte order); for text and objects, each element of
    another value. ValueError where their shapes differ, or their dtypes (byte order aside)
    where either holds numbers: :func:`difference` says those."""
    a, b = np.asarray(want), np.asarray(got)
    if a.shape != b.shape:
        raise ValueError(f"shape {b.shape} where {a.shape} is compared")
    if not (_by_bytes(a.dtype) or _by_bytes(b.dtype)):
        ne = np.broadcast_to(np.asarray(a != b, dtype=bool), a.shape)
        if a.dtype.kind == "O" or b.dtype.kind == "O":  # a missing value (NaN) is itself
            nan = np.frompyfunc(_is_nan, 1, 1)
            ne = ne & ~(nan(a).astype(bool) & nan(b).astype(bool))
        return ne
    native = a.dtype.newbyteorder("=")
    if b.dtype.newbyteorder("=") != native:
        raise ValueError(f"dtype {b.dtype} where {a.dtype} is compared")
    size = native.itemsize
    x = np.ascontiguousarray(a, native)
    y = np.ascontiguousarray(b, native)
    if size in (1, 2, 4, 8):
        word = np.dtype(f"u{size}")
        return x.view(word) != y.view(word)
    # x87 extended precision (float128, complex256 on x86-64): 10 bytes of each 16 hold the
    # number, the rest is padding that may hold anything; IEEE quad precision (aarch64's
    # float128, 112 bits of mantissa) uses all 16
    used = 10 if native.kind in "fc" and np.finfo(native).nmant == 63 else size
    if native.kind == "c" and used == 10:  # two extended-precision parts, each padded
        half = size // 2
        xs, ys = (v.reshape(-1).view(np.uint8).reshape(*a.shape, 2, half)[..., :10] for v in (x, y))
        return (xs != ys).any(axis=(-2, -1))
    xs, ys = (v.reshape(-1).view(np.uint8).reshape(*a.shape, size)[..., :used] for v in (x, y))
    return (xs != ys).any(axis=-1)


def _is_nan(x: Any) -> bool:
    """Whether the object ``x`` is a NaN (not equal to itself: ``float('nan')``, NumPy's,
    pandas' NaT), which an object array of text or dates holds for a missing value."""
    try:
        return bool(x != x)
    except Exception:  # an object whose comparison is no truth value
        return False


def _said(value: Any, dtype: np.dtype) -> str:
    """One element as a line says it: its Python repr, with its bits in hex where the repr
    does not tell them apart (NaN payloads)."""
    v = np.asarray(value, dtype)
    # a date or duration as NumPy writes it (its item() is a number of nanoseconds)
    text = str(v) if dtype.kind in "mM" else repr(v.item())
    if _by_bytes(dtype) and dtype.kind in "fc" and np.isnan(v):
        text += f" (bits 0x{v.astype(dtype.newbyteorder('>')).tobytes().hex()})"
    return text


def difference(want: Any, got: Any, origin: tuple[int, ...] = ()) -> str | None:
    """What ``got`` holds otherwise than ``want``, in a few words; None where the two are the
    same to the bit (the module's note: the same shape, the same dtype, byte order aside, the
    same bytes in every element; text and objects as equal values).

    Said as ``shape (3,), not (4,)``, ``dtype int64, not int32`` (two dtypes differ whatever
    the values; the elements are then not compared), or ``2 of 91 elements differ, the first
    at [5, 12]: -0.0, not 0.0`` (``got``'s value first; a NaN's bits in hex: ``nan (bits
    0x7fc00007), not nan (bits 0x7fc00000)``); ``origin`` is added to the element's index
    (that of a region read from a larger array)."""
    a, b = np.asarray(want), np.asarray(got)
    if a.shape != b.shape:
        return f"shape {b.shape}, not {a.shape}"
    if (_by_bytes(a.dtype) or _by_bytes(b.dtype)) and (
        a.dtype.newbyteorder("=") != b.dtype.newbyteorder("=")
    ):
        return f"dtype {b.dtype}, not {a.dtype}"
    bad = unequal(a, b)
    count = int(np.count_nonzero(bad))
    if not count:
        return None
    first = np.unravel_index(int(np.argmax(bad.reshape(-1))), a.shape)
    index = [int(i) + (origin[k] if k < len(origin) else 0) for k, i in enumerate(first)]
    return (
        f"{count} of {a.size} element{'s' if a.size > 1 else ''} "
        f"differ{'s' if count == 1 else ''}, the first at {index}: "
        f"{_said(b[first], b.dtype)}, not {_said(a[first], a.dtype)}"
    )
