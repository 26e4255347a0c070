"""CF-packed variables decoded as xarray decodes them, to the bit, from Datasets xarray wrote."""

from __future__ import annotations

import base64
import struct
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

from pipeline import devices
from pipeline.ops.cf import PACKING_ATTRIBUTES, Unpacking, unpacking
from pipeline.store.datasets import dims_of
from tests.faultkit import file_states

xr = pytest.importorskip("xarray")

ENCODINGS: dict[str, dict[str, Any]] = {
    "int16-scale-offset-fill": {
        "dtype": "int16",
        "scale_factor": 0.01,
        "add_offset": 273.15,
        "_FillValue": -9999,
    },
    "uint8-scale": {"dtype": "uint8", "scale_factor": 0.5, "_FillValue": 255},
    "int32-scale-offset": {"dtype": "int32", "scale_factor": 1e-4, "add_offset": -3.0},
    "int16-fill-only": {"dtype": "int16", "_FillValue": -1},
    "int32-fill-only": {"dtype": "int32", "_FillValue": -7},
    # float values packed with a float64 scale and offset: xarray adds a NaN _FillValue,
    # masks nothing, and decodes in the stored float32 (not _choose_float_dtype's float64)
    "float32-scale-offset-nan-fill": {"dtype": "float32", "scale_factor": 0.5, "add_offset": 1.0},
    "float32-scale-offset-fill": {
        "dtype": "float32",
        "scale_factor": 0.5,
        "add_offset": 1.0,
        "_FillValue": -999.0,
    },
    "float64-scale-nan-fill": {"dtype": "float64", "scale_factor": np.float32(0.25)},
    "int16-missing-value": {
        "dtype": "int16",
        "scale_factor": 0.25,
        "add_offset": 1.0,
        "missing_value": 77,
    },
}


def _dataset(path: Path, encoding: dict[str, Any], zarr_format: int) -> np.ndarray:
    rng = np.random.default_rng(3)
    values = rng.uniform(-30, 30, (9, 14))
    if "uint8" in encoding["dtype"]:
        values = np.abs(values)
    values[2, 3] = np.nan
    values[5, :4] = np.nan
    ds = xr.Dataset({"v": (("y", "x"), values, {"units": "K"})})
    ds["v"].encoding = dict(encoding)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(str(path), zarr_format=zarr_format, mode="w")
        return xr.open_zarr(str(path))["v"].values


@pytest.mark.parametrize("zarr_format", [2, 3])
@pytest.mark.parametrize("name", sorted(ENCODINGS))
def test_unpacking_is_xarrays_decoding_to_the_bit(
    tmp_path: Path, name: str, zarr_format: int, xp: Any
) -> None:
    """On NumPy, and on CuPy on the GPU host (what a GPU worker's read step runs)."""
    want = _dataset(tmp_path / "ds.zarr", ENCODINGS[name], zarr_format)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        arr = zarr.open_array(str(tmp_path / "ds.zarr"), path="v", mode="r")
    assert dims_of(arr) == ("y", "x")
    attrs = dict(arr.attrs)
    fill = arr.fill_value if zarr_format == 2 else None
    u = unpacking(attrs, np.dtype(arr.dtype), fill)
    assert u is not None
    got = _backend(xp).unpack(u, xp.asarray(arr[...]))
    got = got.get() if xp is not np else got
    assert got.dtype == want.dtype, (got.dtype, want.dtype)
    assert np.array_equal(got.view(np.uint8), np.ascontiguousarray(want).view(np.uint8))
    if {"_FillValue", "missing_value"} & set(ENCODINGS[name]):  # else NaN was stored as a number
        assert np.isnan(got[5, 0]) and np.isnan(got[2, 3])


def _backend(xp: Any) -> devices.Backend:
    """The backend whose read step decodes blocks of ``xp`` arrays."""
    return devices.get("cpu" if xp is np else "gpu")


def _specials(dtype: str) -> np.ndarray:
    """Stored values with every case a decoding must keep to the bit: NaNs with payloads (both
    signs, quiet and signalling), infinities, signed zeros, subnormals, a fill value."""
    f = np.dtype(dtype)
    bits = np.dtype(f"u{f.itemsize}")
    info = np.finfo(f)
    nan = np.array(np.nan, f).view(bits)
    payloads = [nan | 0x5, nan | 0x1, (nan >> 1) | 0x3]  # quiet, quiet, signalling (exp all 1s)
    sign = bits.type(1) << bits.type(8 * f.itemsize - 1)
    odd = [np.array(p, bits).view(f)[()] for p in (*payloads, *(p | sign for p in payloads))]
    tiny = info.smallest_subnormal
    values = [np.inf, -np.inf, 0.0, -0.0, tiny, -tiny, tiny * 7, info.tiny, -999.0, 1.5, *odd]
    return np.array(values, dtype=f)


@pytest.mark.parametrize("stored", ["float16", "float32", "float64", "int16", "uint8", "int64"])
@pytest.mark.parametrize(
    "u",
    [
        Unpacking("<f4", (-999.0,), 0.5, 1.0),
        Unpacking("<f4", (), 0.1, None),
        Unpacking("<f8", (-999, 7), 1e-300, -3.0),
        Unpacking("<f4", (0.0,), None, None),
        Unpacking("<f8", (), None, 2.5),
        Unpacking("<f4", ("7", 1.5), None, None),
        Unpacking("<f2", (-999.0,), None, None),
    ],
    ids=[
        "f4-fill-scale-offset",
        "f4-scale",
        "f8-fills-tiny-scale",
        "f4-zero-fill",
        "f8-offset",
        "f4-text-fill",
        "f2-fill",
    ],
)
def test_the_read_steps_decoding_keeps_every_bit(stored: str, u: Unpacking, xp: Any) -> None:
    """Each backend's decoding of packed elements is NumPy's (:meth:`Unpacking.apply`) to the
    bit, where a GPU's own arithmetic would flush float32 subnormals to zero (CuPy compiles
    with ``-ftz``) and return its canonical NaN in place of the stored one."""
    f = np.dtype(stored)
    if f.kind == "f":
        x = _specials(stored)
    else:
        info = np.iinfo(f)
        x = np.array([info.min, info.max, 0, 1, 7, -999 if f.kind == "i" else 231], dtype=f)
    with np.errstate(over="ignore"):  # int64's extremes are inf in float16
        want = u.apply(x, np)
        got = _backend(xp).unpack(u, xp.asarray(x))
    got = got.get() if xp is not np else got
    assert got.dtype == want.dtype == np.dtype(u.dtype)
    assert np.array_equal(got.view(np.uint8), want.view(np.uint8)), (got, want)


def test_a_v2_fill_value_masks_in_place_of_a_fill_value_attribute(tmp_path: Path) -> None:
    """xarray reads a Zarr v2 array's fill value as the variable's ``_FillValue``, over a
    ``_FillValue`` attribute of its own: that value, not the attribute's, is masked."""
    g = zarr.open_group(str(tmp_path / "in.zarr"), mode="w", zarr_format=2)
    attrs = {"_ARRAY_DIMENSIONS": ["x"], "_FillValue": -9999, "scale_factor": 0.5}
    a = g.create_array("v", shape=(4,), dtype="int16", chunks=(4,), fill_value=-1, attributes=attrs)
    a[...] = [-1, -9999, 3, 4]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = xr.open_zarr(str(tmp_path / "in.zarr"), consolidated=False)["v"].values
    u = unpacking(dict(a.attrs), np.dtype(a.dtype), a.fill_value)
    assert u is not None
    got = u.apply(a[...], np)
    assert got.dtype == want.dtype
    assert np.array_equal(got, want, equal_nan=True) and np.isnan(got[0]) and got[1] == -4999.5


def test_floats_with_a_nan_fill_need_no_decoding(tmp_path: Path) -> None:
    for fmt in (2, 3):
        ds = xr.Dataset({"v": (("x",), np.arange(5.0))})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds.to_zarr(str(tmp_path / f"f{fmt}.zarr"), zarr_format=fmt, mode="w")
            arr = zarr.open_array(str(tmp_path / f"f{fmt}.zarr"), path="v", mode="r")
        fill = arr.fill_value if fmt == 2 else None
        assert unpacking(dict(arr.attrs), np.dtype(arr.dtype), fill) is None


def test_packing_attributes_name_what_decoding_consumes() -> None:
    for key in ("scale_factor", "add_offset", "_FillValue", "missing_value", "actual_range"):
        assert key in PACKING_ATTRIBUTES


def test_a_nan_only_fill_on_packed_integers_decodes_as_xarray_does(tmp_path: Path) -> None:
    """xarray drops a NaN fill for integers and decodes to its float: the stored dtype is
    kept only for floats (helper-33: int16 with missing_value NaN crashed mid-run)."""
    attrs = {"scale_factor": 0.5, "add_offset": 1.0, "missing_value": float("nan")}
    u = unpacking(attrs, np.dtype("int16"))
    assert u is not None and np.dtype(u.dtype) == np.float64
    got = u.apply(np.array([2, -4], np.int16), np)
    assert got.tolist() == [2.0, -1.0]


def _xarray_and_unpacking(store: Path) -> tuple[np.ndarray, np.ndarray]:
    """The variable ``v`` of ``store`` as xarray decodes it, and as :func:`unpacking` of its
    metadata decodes its stored values."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = xr.open_zarr(str(store), consolidated=False)["v"].values
        arr = zarr.open_array(str(store), path="v", mode="r")
    fmt = arr.metadata.zarr_format
    u = unpacking(dict(arr.attrs), np.dtype(arr.dtype), arr.fill_value if fmt == 2 else None, fmt)
    got = arr[...] if u is None else u.apply(arr[...], np)
    return got, want


@pytest.mark.parametrize(
    ("zarr_format", "key"),
    [(3, "missing_value"), (2, "_FillValue"), (2, "missing_value")],
    ids=["v3-missing_value", "v2-_FillValue", "v2-missing_value"],
)
def test_base64_text_is_a_fill_value_only_as_a_v3_fill_value_attribute(
    tmp_path: Path, zarr_format: int, key: str
) -> None:
    """xarray reads the base64 text of a double (what it writes for a float fill) only where
    it writes it: a Zarr v3 ``_FillValue`` attribute (its zarr backend's
    ``FillValueCoder.decode``). A ``missing_value``, or a v2 variable's ``_FillValue``
    attribute (under a null fill value), is compared as it is: text, equal to no number, so
    nothing is masked. The pipeline had decoded the text wherever it was, masking the 2.0s."""
    two = base64.standard_b64encode(struct.pack("<d", 2.0)).decode()
    g = zarr.open_group(str(tmp_path / "in.zarr"), mode="w", zarr_format=zarr_format)
    dims = {"_ARRAY_DIMENSIONS": ["x"]} if zarr_format == 2 else {}
    a = g.create_array(
        "v",
        shape=(5,),
        dtype="float64",
        chunks=(5,),
        fill_value=None if zarr_format == 2 else 0.0,
        attributes={**dims, key: two},
        **({"dimension_names": ("x",)} if zarr_format == 3 else {}),
    )
    a[...] = [0.0, 2.0, -1.0, 2.0, 3.5]
    got, want = _xarray_and_unpacking(tmp_path / "in.zarr")
    assert want.tolist() == [0.0, 2.0, -1.0, 2.0, 3.5]  # xarray masks nothing
    assert got.dtype == want.dtype and got.tobytes() == want.tobytes()
    # the same text as a v3 _FillValue attribute is 2.0, which xarray masks, and so do we
    if zarr_format == 3:
        a.update_attributes({"_FillValue": two})
        del a.attrs[key]
        got, want = _xarray_and_unpacking(tmp_path / "in.zarr")
        assert np.isnan(want).tolist() == [False, True, False, True, False]
        assert got.dtype == want.dtype and got.tobytes() == want.tobytes()


F32_01 = float(np.float32(0.1))  # 0.10000000149011612: the float32 nearest 0.1, widened
#: name: (zarr format, stored dtype, attributes, the array's fill value (v2), elements)
FILL_CASES: dict[str, tuple[int, str, dict[str, Any], Any, list]] = {
    # xarray compares with its float64 scalar in float64: no float32 equals 0.1 there
    "v3-f4-missing-0.1": (3, "float32", {"missing_value": 0.1}, None, [0.1, 1.5, 2.5, 0.1]),
    "v2-f4-missing-0.1": (2, "float32", {"missing_value": 0.1}, None, [0.1, 1.5, 2.5, 0.1]),
    "v3-f4-missing-list": (3, "float32", {"missing_value": [0.1, 2.5]}, None, [0.1, 2.5, 3, 4]),
    "v2-f4-missing-1e20": (2, "float32", {"missing_value": 1e20}, None, [1e20, 1, 2, 1e20]),
    # netCDF's default float fill written rounded, as conversions do
    "v3-f4-missing-9.96921e36": (
        3,
        "float32",
        {"missing_value": 9.96921e36},
        None,
        [9.96921e36, 1, 2, 3],
    ),
    "v3-f4-missing-exact": (3, "float32", {"missing_value": F32_01}, None, [0.1, 1.5, 2.5, 0.1]),
    "v3-f2-missing-0.1": (3, "float16", {"missing_value": 0.1}, None, [0.1, 1.5, 2.5, 0.1]),
    "v3-f2-missing-2049": (3, "float16", {"missing_value": 2049}, None, [2048, 1, 2049, 3]),
    "v3-f4-missing-int-past-float32": (
        3,
        "float32",
        {"missing_value": 16777217},
        None,
        [16777216, 1, 2, 3],
    ),
    "v3-f4-missing-int-and-text": (3, "float32", {"missing_value": [1, "a"]}, None, [1, 2, 3, 1]),
    "v3-f4-missing-0.1-and-null": (
        3,
        "float32",
        {"missing_value": [0.1, None]},
        None,
        [0.1, 2, 3, 4],
    ),
    "v3-f4-fill-base64-0.1": (3, "float32", {"_FillValue": "mpmZmZmZuT8="}, None, [0.1, 2, 3, 4]),
    "v3-f4-fill-base64-f32-0.1": (
        3,
        "float32",
        {"_FillValue": "AAAAoJmZuT8="},
        None,
        [0.1, 2, 3, 4],
    ),
    "v2-f4-array-fill-0.1": (2, "float32", {}, 0.1, [0.1, 1.5, 2.5, 0.1]),
    "v2-i2-missing-1e40": (2, "int16", {"missing_value": 1e40}, None, [1, 2, 3, 4]),
    "v2-i2-missing-half": (2, "int16", {"missing_value": [0.5, 3]}, None, [1, 2, 3, 4]),
    "v2-f8-missing-0.1": (2, "float64", {"missing_value": 0.1}, None, [0.1, 1.5, 2.5, 0.1]),
    # a null attribute is no fill (xarray's pop_to drops it): decoded in _choose_float_dtype's
    # float64, not the stored dtype (helper-78)
    "v3-f4-scale-missing-null": (
        3, "float32", {"scale_factor": 0.1, "missing_value": None}, None, [1, 2, 3, 0.1]
    ),
    "v2-f2-scale-fill-null": (
        2, "float16", {"scale_factor": 0.1, "_FillValue": None}, None, [1, 2, 3.1, 4]
    ),
    "v3-f4-missing-text": (3, "float32", {"missing_value": "NaN"}, None, [1, 2, 3, 4]),
}  # fmt: skip


@pytest.mark.parametrize("name", list(FILL_CASES))
def test_fill_values_mask_the_elements_xarray_masks(tmp_path: Path, name: str) -> None:
    """A fill value is compared with the elements as xarray's mask coder compares it: its
    NumPy scalar (a JSON number is a float64), in the dtype of both. helper-77: a float32
    variable with ``missing_value: 0.1`` had its 0.1s masked to NaN by the pipeline, which
    xarray reads as numbers (no float32 equals 0.1 in float64); `verify` passed."""
    zarr_format, stored, attrs, fill, elements = FILL_CASES[name]
    g = zarr.open_group(str(tmp_path / "in.zarr"), mode="w", zarr_format=zarr_format)
    dims = {"_ARRAY_DIMENSIONS": ["x"]} if zarr_format == 2 else {}
    a = g.create_array(
        "v",
        shape=(len(elements),),
        dtype=stored,
        chunks=(len(elements),),
        fill_value=fill if zarr_format == 2 else 0,
        attributes={**dims, **attrs},
        **({"dimension_names": ("x",)} if zarr_format == 3 else {}),
    )
    a[...] = np.array(elements, dtype=stored)
    got, want = _xarray_and_unpacking(tmp_path / "in.zarr")
    assert got.dtype == want.dtype and got.tobytes() == want.tobytes(), (got, want)


@pytest.mark.parametrize(
    ("raw", "stored", "readable"),
    [
        (1.5, "int16", True),  # xarray: int(1.5) == 1, the stored 1s masked
        ("7_0", "int32", True),  # xarray: int("7_0") == 70
        ("NaN", "int16", False),
        (float("nan"), "uint8", False),
        (None, "int16", False),
        ([2], "int16", False),
        (-1.0, "float32", False),  # a number, not base64 text: xarray asserts
        ("NaN", "float64", False),  # not base64 of eight bytes
    ],
)
def test_a_v3_fill_value_xarray_cannot_read_as_written_is_refused_naming_the_fix(
    raw: Any, stored: str, readable: bool
) -> None:
    """Where xarray fails to read a Zarr v3 ``_FillValue`` attribute, or reads another value
    than the one written, the pipeline does not guess (``UnreadableFill``, with the fix); an
    integral float and a decimal integer as text read as that integer, as in xarray."""
    from xarray.backends.zarr import FillValueCoder

    from pipeline.ops.cf import UnreadableFill, v3_fill_value

    with pytest.raises(UnreadableFill) as info:
        v3_fill_value(raw, np.dtype(stored))
    assert info.value.readable is readable and "_FillValue" in info.value.fix
    if readable:  # xarray reads a value other than the one written
        assert FillValueCoder.decode(raw, np.dtype(stored)) != raw
    else:
        with pytest.raises((AssertionError, TypeError, ValueError, OverflowError)):
            FillValueCoder.decode(raw, np.dtype(stored))
    for ok in (2, 2.0, "2", True):
        assert v3_fill_value(ok, np.dtype(stored if stored[0] in "iu" else "int16")) == int(ok)


@pytest.mark.parametrize("stored", ["float32", "float16", "float64"])
def test_the_fix_named_for_a_v3_numeric_fill_value_masks_the_elements_meant(
    tmp_path: Path, stored: str
) -> None:
    """A v3 float variable's ``_FillValue: 0.1`` (a number, which xarray cannot read) is
    refused naming base64 text; written as named, xarray masks the stored 0.1s, and so does
    the pipeline. helper-77: the text named was float64 0.1's, which on float32 values masks
    nothing (xarray compares in float64), so the advice followed kept the 0.1s as numbers."""
    from pipeline.ops.cf import UnreadableFill, v3_fill_value

    with pytest.raises(UnreadableFill) as info:
        v3_fill_value(0.1, np.dtype(stored))
    text = info.value.fix.split("'")[1]
    g = zarr.open_group(str(tmp_path / "in.zarr"), mode="w", zarr_format=3)
    a = g.create_array(
        "v", shape=(4,), dtype=stored, chunks=(4,), fill_value=0, dimension_names=("x",)
    )
    a[...] = np.array([0.1, 1.5, 2.5, 0.1], dtype=stored)
    a.update_attributes({"_FillValue": text})
    got, want = _xarray_and_unpacking(tmp_path / "in.zarr")
    assert np.isnan(want).tolist() == [True, False, False, True]
    assert got.dtype == want.dtype and got.tobytes() == want.tobytes()


@pytest.mark.parametrize(
    ("attrs", "said"),
    [
        ({"missing_value": 2**1100}, "an integer past a float64"),
        ({"missing_value": {"a": 1}}, "not a number nor a list of numbers"),
        ({"_FillValue": [1, [2, 3]]}, "a list that is not flat"),
        ({"scale_factor": [0.1, 0.2]}, "not one number"),
        ({"scale_factor": 2**70}, "an integer past int64"),
        ({"scale_factor": True}, "a boolean, not a number"),
        ({"add_offset": "1.5"}, "not a number"),
    ],
    ids=["huge-int-fill", "dict-fill", "ragged-fill", "scale-list", "huge-scale", "bool-scale",
         "text-offset"],
)  # fmt: skip
def test_cf_attributes_xarray_cannot_decode_with_are_refused_at_plan_time(
    tmp_path: Path, attrs: dict[str, Any], said: str
) -> None:
    """helper-78: a ``missing_value`` of 2**1100 passed the plan, then stopped the run with an
    OverflowError (xarray fails there too) and left the output incomplete; a dict failed with
    "unhashable type: 'dict'", a scale_factor list of two with a NumPy ValueError. Each is now
    refused by the plan in one line naming the attribute, before anything is written."""
    from pipeline.errors import InputError

    _packed_variable(tmp_path / "in.zarr", "int16", attrs, [1, 2, 3, 4, 5, 6, 7, 9])
    info = _plan_refused(tmp_path, InputError, [{"op": "add"}])
    (key,) = attrs
    line = str(info.value)
    assert f"has {key}=" in line and said in line and "\n" not in line, line
    assert info.value.attributes == [key]
    assert len(line) < 400  # a 300-digit number is not said whole
    assert not (tmp_path / "out.zarr").exists()


NAN64, ONE64 = "AAAAAAAA+H8=", "AAAAAAAA8D8="  # xarray's v3 _FillValue text of NaN and 1.0
UNHELD = {  # name: (stored, attributes, elements, the first one unheld: (index, masked) or None)
    "int16-fill-none-held": ("int16", {"_FillValue": -1}, [1, 2, 3, 4, 5, 6, 7, 8], None),
    "int16-fill": ("int16", {"_FillValue": -1}, [1, 2, 3, 4, 5, -1, 7, -1], (5, True)),
    "int32-missing-value": ("int32", {"missing_value": [-7, 9]}, [1, 2, 9, -7] * 2, (2, True)),
    "uint8-fill-it-cannot-hold": ("uint8", {"missing_value": -1}, [255, 0, 1, 2] * 2, None),
    "float32-held": ("float32", {}, [1.5, -2.5, 3e18, -9.2e18, 0, 1, 2, 3], None),
    "float32-nan": ("float32", {}, [1.5, -2.5, 3, 4, np.nan, 1, np.inf, 3], (4, False)),
    "float32-inf": ("float32", {}, [1.5, -2.5, 3, 4, -np.inf, 1, 2, 3], (4, False)),
    "float32-past-int64": ("float32", {}, [1.5, 2.0**63, 3, 4, 5, 6, 7, 8], (1, False)),
    "float64-nan-fill": ("float64", {"_FillValue": NAN64}, [1.5, np.nan] * 4, None),  # float
    "float64-truncated": ("float64", {"_FillValue": ONE64}, [2.5, 0, 1.5, 3] * 2, (2, True)),
}


def _packed_variable(path: Path, stored: str, attrs: dict[str, Any], elements: list) -> Any:
    """A v3 Dataset of one variable ``v`` (y 2, x 4) of ``stored`` elements ``elements``
    with the CF attributes ``attrs``, consolidated, at ``path``; its array."""
    with warnings.catch_warnings():  # zarr: v3 consolidated metadata is not in the spec yet
        warnings.simplefilter("ignore")
        group = zarr.open_group(str(path), mode="w", zarr_format=3)
        arr = group.create_array(
            "v", shape=(2, 4), dtype=stored, chunks=(2, 4), dimension_names=["y", "x"],
            attributes=attrs,
        )  # fmt: skip
        arr[:] = np.array(elements, dtype=stored).reshape(2, 4)
        zarr.consolidate_metadata(str(path))
    return arr


def _xarray_v(path: Path, attribute: str = "values") -> Any:
    """``v`` of the Dataset at ``path`` as xarray decodes it (consolidated, masked and
    scaled): its ``attribute``, read with zarr's and xarray's warnings ignored."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return getattr(xr.open_zarr(str(path))["v"], attribute)


def _decoding(tmp_path: Path, stages: list[dict[str, Any]], **output: Any) -> dict[str, Any]:
    """The config of a CPU run that decodes ``v`` of ``tmp_path``/in.zarr (mask_and_scale)
    through ``stages`` into ``tmp_path``/out.zarr (``output``: more of that section)."""
    return {
        "input": {"store": str(tmp_path / "in.zarr"), "array": "v", "mask_and_scale": True},
        "output": {"store": str(tmp_path / "out.zarr"), **output},
        "stages": stages,
        "backend": "cpu",
    }


def _plan_refused(
    tmp_path: Path, error: type[Exception], stages: list[dict[str, Any]]
) -> pytest.ExceptionInfo:
    """The ``error`` that ``pipeline.plan`` raises for :func:`_decoding`'s config."""
    import pipeline

    with pytest.raises(error) as info:
        pipeline.plan(_decoding(tmp_path, stages))
    return info


@pytest.mark.parametrize("name", list(UNHELD))
def test_an_integer_decoding_finds_its_first_element_without_a_value(
    tmp_path: Path, name: str, xp: Any
) -> None:
    """An integer scale_factor decodes to int64, as xarray decodes it, which holds no NaN.
    ``Unpacking.unheld`` (the read step's check, on the host for either backend)
    finds the first element with no value there: one equal to a fill value once converted
    (xarray truncates 1.5 to 1, and masks it where 1 is the fill value), a stored NaN, an
    infinity, a float past int64; never one that no fill value matches (-1 on uint8), nor on
    a decoding to floats (a NaN fill value: xarray keeps the floats). Where none is, the
    read step's decoding is xarray's, to the bit (it had raised "cannot convert float NaN to
    integer" with a fill value declared, F3)."""
    stored, attrs, elements, first = UNHELD[name]
    arr = _packed_variable(tmp_path / "in.zarr", stored, {"scale_factor": 2, **attrs}, elements)
    u = unpacking(dict(arr.attrs), np.dtype(stored))
    assert u is not None
    x = xp.asarray(arr[...])
    found = u.unheld(np.asarray(arr[...]))
    if first is None:
        assert found is None
        try:
            want = _xarray_v(tmp_path / "in.zarr")
        except ValueError as e:  # xarray 2025.6 decodes it; 2026.9 (the GPU host's) raises
            assert "NaN to integer" in str(e), e
            # CF's decoding of what zarr-python reads, with nothing to mask: x * scale_factor,
            # in the dtype the plan decodes to
            want = np.asarray(arr[...]).astype(u.dtype) * np.asarray(2).astype(u.dtype)
        got = _backend(xp).unpack(u, x)
        got = got.get() if xp is not np else got
        assert got.dtype == want.dtype and got.tobytes() == want.tobytes()
        return
    assert np.dtype(u.dtype) == np.int64
    assert found is not None and (found.index, found.masked) == first
    value = np.array(elements, dtype=stored)[first[0]].item()
    assert found.value == value or (np.isnan(value) and np.isnan(found.value))


@pytest.mark.parametrize("fill", [{"_FillValue": -1}, {"missing_value": 5}, {}], ids=str)
def test_int64_decoded_with_an_integer_scale_factor_is_rounded_where_xarray_rounds_it(
    tmp_path: Path, fill: dict[str, Any], xp: Any
) -> None:
    """int64 elements past 2**53 with an integer scale_factor: where a fill value is
    declared, xarray's mask coder computes them in float64 (``np.where(masked, NaN, x)``) and
    its scale coder converts them back to int64, rounded (2**60 + 1 reads as 2**60); without
    one they stay exact. The read step decodes them as xarray does, to the bit."""
    elements = [2**60 + 1, 3, 2**53 + 1, -(2**62) - 3, 7, 2**62 + 1, 0, 2**40 + 1]
    arr = _packed_variable(tmp_path / "in.zarr", "int64", {"scale_factor": 1, **fill}, elements)
    try:
        want = _xarray_v(tmp_path / "in.zarr")
    except ValueError as e:  # xarray 2026.9 (the GPU host's) raises for any fill value here
        assert "NaN to integer" in str(e), e
        pytest.skip(f"xarray {xr.__version__} does not decode it ({e}): no reference")
    assert want.dtype == np.int64
    assert bool(want[0, 0] == 2**60) == bool(fill)  # rounded only where xarray masks
    u = unpacking(dict(arr.attrs), np.dtype("int64"))
    assert u is not None
    x = xp.asarray(arr[...])
    assert u.unheld(np.asarray(arr[...])) is None
    got = _backend(xp).unpack(u, x)
    got = got.get() if xp is not np else got
    assert got.dtype == want.dtype and got.tobytes() == want.tobytes()


@pytest.mark.parametrize(
    "attrs, noted",
    [
        ({"scale_factor": 2, "_FillValue": -1}, "-1"),
        ({"scale_factor": 3, "missing_value": [-7, 9]}, "-7, 9"),
        ({"scale_factor": 2}, None),  # no fill value: every element has its value
        ({"scale_factor": 2.0, "_FillValue": -1}, None),  # decodes to floats: NaN there
    ],
    ids=["fill", "missing-values", "no-fill", "float-scale"],
)
def test_the_plan_says_a_missing_element_stops_an_integer_decoding(
    tmp_path: Path, cli: Any, attrs: dict[str, Any], noted: str | None
) -> None:
    """An integer scale_factor decodes to int64 (as xarray decodes it), which holds no NaN: a
    block holding a fill value stops the run in one line, which `plan` and `run --dry-run`
    did not foresee (F-B2). With a fill value declared, both say so, naming the fill values
    and the fix, from the metadata alone; the run says it as it starts, then stops at the
    block, as the note says."""
    from tests.conftest import write_config

    _packed_variable(tmp_path / "in.zarr", "int16", attrs, [1, 2, 3, 4, 5, -1, 7, 9])
    cfg = write_config(
        tmp_path,
        tmp_path / "in.zarr",
        tmp_path / "out.zarr",
        input={"array": "v", "mask_and_scale": True},
        stages=[{"op": "add"}],
    )
    for command in (["plan", cfg], ["run", cfg, "--dry-run"]):
        rc, out, err = cli(*command)
        assert rc == 0, err
        notes = [ln for ln in out.splitlines() if "holds no NaN" in ln]
        if noted is None:
            assert not notes, out
            continue
        assert len(notes) == 1, out
        floats = " and ".join(
            f"{k}: {float(v)!r}" for k, v in attrs.items() if k in ("scale_factor", "add_offset")
        )
        assert f"stored {noted}," in notes[0] and floats in notes[0], notes[0]
        assert "decodes to int64" in notes[0] and "stops the run" in notes[0], notes[0]
    assert not (tmp_path / "out.zarr").exists()  # the plan wrote nothing
    rc, _, err = cli("run", cfg, "--progress", "none")
    held = noted is None or ("-1" not in noted and "9" not in noted)
    if held:
        assert rc == 0, err
        return
    assert rc == 1
    assert "holds no NaN" in err and "stops the run" in err, err  # said as the run starts
    assert "int64 cannot hold" in err, err  # and stopped where the note said it would


@pytest.mark.parametrize("held", [True, False], ids=["all-held", "a-nan"])
def test_the_plan_says_a_stored_nan_stops_an_integer_decoding_of_floats(
    tmp_path: Path, cli: Any, held: bool
) -> None:
    """Floats stored with an integer scale_factor decode to int64 too: a stored NaN, an
    infinity or a value past int64 has no value there and stops the run, which only the
    values show. `plan` says so from the metadata alone, with or without a fill value
    declared; the run then computes a variable whose every element is held, and stops at a
    block holding a NaN."""
    from tests.conftest import write_config

    elements = [1.5, -2.5, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0] if held else [1.5, np.nan] * 4
    _packed_variable(tmp_path / "in.zarr", "float32", {"scale_factor": 2}, elements)
    cfg = write_config(
        tmp_path,
        tmp_path / "in.zarr",
        tmp_path / "out.zarr",
        input={"array": "v", "mask_and_scale": True},
        stages=[{"op": "multiply", "factor": 1}],  # int64 through the stages: no overflow
    )
    rc, out, err = cli("plan", cfg)
    assert rc == 0, err
    (note,) = [ln for ln in out.splitlines() if "holds no NaN" in ln]
    assert "a stored NaN, infinity or value past int64" in note, note
    assert "scale_factor: 2.0" in note and "stored -1" not in note, note
    rc, _, err = cli("run", cfg, "--progress", "none")
    assert rc == (0 if held else 1), err
    if not held:
        assert "int64 cannot hold" in err, err


#: CF attributes as one-element (or longer) lists, as netCDF conversions store them, that
#: xarray decodes to numbers: name: (stored dtype, attributes)
LISTED = {
    "scale-and-offset-lists": ("int16", {"scale_factor": [0.5], "add_offset": [1.0]}),
    "scale-list-offset-number": ("int16", {"scale_factor": [0.5], "add_offset": 1.0}),
    "scale-number-offset-list": ("int32", {"scale_factor": 0.5, "add_offset": [1.0]}),
    "nested-scale-list": ("int16", {"scale_factor": [[0.5]], "add_offset": 1.0}),
    "offset-list-alone": ("uint8", {"add_offset": [-3]}),
    "lists-and-missing-lists": (
        "int16",
        {"scale_factor": [0.25], "add_offset": [10.0], "missing_value": [3, 7]},
    ),
    "missing-one": ("int16", {"missing_value": [3]}),
    "float-lists": ("float32", {"scale_factor": [2.0], "add_offset": [0.5]}),
}


@pytest.mark.parametrize("name", list(LISTED))
def test_cf_attributes_as_lists_decode_as_xarray_decodes_them(tmp_path: Path, name: str) -> None:
    """``scale_factor: [0.5]`` and the like (netCDF attributes are arrays, and conversions
    write one-element lists): xarray takes the list's one number (``np.asarray(v).item()``),
    nested too, and chooses the dtype from the attribute as written (``type([0.5])`` is no
    float, so float64 where add_offset is given). A run computes exactly xarray's values
    (here times 1); the nested ``[[0.5]]`` had been refused as "not a number (xarray
    cannot decode with it either)", which xarray does."""
    stored, attrs = LISTED[name]
    _packed_variable(tmp_path / "in.zarr", stored, attrs, [1, 2, 3, 4, 5, 6, 7, 9])
    want = _xarray_v(tmp_path / "in.zarr")
    assert want.dtype.kind == "f", want.dtype
    import pipeline

    pipeline.run(_decoding(tmp_path, [{"op": "multiply", "factor": 1}], array=""))
    got = zarr.open_array(str(tmp_path / "out.zarr"), mode="r")[...]
    assert got.dtype == want.dtype and got.tobytes() == want.tobytes(), (got, want)


@pytest.mark.parametrize(
    "attrs",
    [{"scale_factor": [0.5]}, {"scale_factor": [2], "missing_value": [3]}],
    ids=["scale-list", "integer-scale-list-missing"],
)
def test_a_scale_factor_list_without_add_offset_is_refused_as_xarray_decodes_it_to_objects(
    tmp_path: Path, attrs: dict[str, Any]
) -> None:
    """``scale_factor: [0.5]`` and no add_offset: xarray's dtype is ``type([0.5])``'s,
    object, so it decodes to Python numbers. The plan said "unsupported dtype object ...
    convert the input first" (the input is int16); it now says, in one line, which
    attribute and the fix: the number itself, not a list."""
    from pipeline.errors import InputError

    _packed_variable(tmp_path / "in.zarr", "int16", attrs, [1, 2, 3, 4, 5, 6, 7, 9])
    assert _xarray_v(tmp_path / "in.zarr").dtype == object
    info = _plan_refused(tmp_path, InputError, [{"op": "add"}])
    line = str(info.value)
    number = attrs["scale_factor"][0]
    assert f"has scale_factor=[{number}], a list, and no add_offset" in line, line
    assert f"write scale_factor as a number ({number})" in line and "\n" not in line, line
    assert info.value.attributes == ["scale_factor"]
    assert not (tmp_path / "out.zarr").exists()


def test_a_scalar_an_integer_decoding_cannot_hold_names_the_attribute_not_the_input(
    tmp_path: Path,
) -> None:
    """An integer scale_factor decodes to int64 (xarray's dtype is the attribute's alone, so a
    float64 copy of the stored values decodes to int64 too: converting the input is no fix).
    A stage scalar past int64 there stopped the plan with KeyError 'bound' (the overflow
    refusal's rewording assumed an overflow); it is one line now, naming the attribute."""
    from pipeline.errors import PlanError

    _packed_variable(tmp_path / "f8.zarr", "float64", {"scale_factor": 2}, list(range(8)))
    assert _xarray_v(tmp_path / "f8.zarr", "dtype") == np.int64
    _packed_variable(tmp_path / "in.zarr", "int16", {"scale_factor": 2}, list(range(8)))
    info = _plan_refused(tmp_path, PlanError, [{"op": "multiply", "factor": 2**70}])
    line = str(info.value)
    assert "decodes to int64 because of its integer scale_factor=2" in line, line
    assert "write scale_factor as a float" in line and "convert the input" not in line, line
    assert info.value.attributes == ["scale_factor"] and info.value.parameter == "factor"
    assert "\n" not in line and not (tmp_path / "out.zarr").exists()


@pytest.mark.parametrize(
    ("stages", "fixed"),
    [
        ([{"op": "multiply", "factor": 2**70}], [{"op": "multiply", "factor": 2.0**70}]),
        (
            [{"op": "square"}, {"op": "multiply", "factor": 2**40}],
            [{"op": "square"}, {"op": "multiply", "factor": 2.0**40}],
        ),
        (
            [{"op": "square"}, {"op": "square"}, {"op": "square"}],
            [{"op": "multiply", "factor": 1.0}, *[{"op": "square"}] * 3],
        ),
    ],
    ids=["scalar", "overflow-scalar", "overflow"],
)
def test_an_integer_decodings_refusal_names_the_configs_own_fix_first(
    tmp_path: Path, stages: list[dict[str, Any]], fixed: list[dict[str, Any]]
) -> None:
    """A chain that an integer scale_factor's int64 cannot hold was told only to write the
    input's scale_factor as a float, an edit of the input: the config does it alone, and that
    is said first (h72a): the stage's scalar written as a float (``factor: 3.0``), or, for a
    chain of no scalar, a first stage ``multiply 1.0``; never "convert the input" (a float64
    copy decodes to int64 all the same). The config so written plans, its stages in float64
    from there, the input untouched."""
    import pipeline
    from pipeline.errors import PlanError

    _packed_variable(tmp_path / "in.zarr", "int16", {"scale_factor": 2}, list(range(8)))
    before = file_states(tmp_path / "in.zarr")
    line = str(_plan_refused(tmp_path, PlanError, stages).value)
    assert "decodes to int64 because of its integer scale_factor=2" in line, line
    assert "convert the input" not in line and "\n" not in line, line
    head, _, tail = line.partition(", or write scale_factor as a float")
    assert tail == " to compute on floats", line
    scalar = [s for s in fixed if s.get("factor") not in (None, 1.0)]
    if scalar:
        assert f"as a float, factor: {scalar[0]['factor']!r}" in head, line
    else:
        assert "make {op: multiply, factor: 1.0} the first stage" in head, line
    plan = pipeline.plan(_decoding(tmp_path, fixed))
    assert plan.chain[-1].out_dtype == np.float64
    assert file_states(tmp_path / "in.zarr") == before


def _unsigned_coordinate(path: Path, stored: str, attrs: dict[str, Any], elements: list) -> Any:
    """A v3 Dataset of a float32 variable ``v`` (x 8) whose coordinate ``x`` holds ``stored``
    elements ``elements`` with the attributes ``attrs``, consolidated, at ``path``; the
    coordinate's array."""
    with warnings.catch_warnings():  # zarr: v3 consolidated metadata is not in the spec yet
        warnings.simplefilter("ignore")
        group = zarr.open_group(str(path), mode="w", zarr_format=3)
        v = group.create_array("v", shape=(8,), dtype="f4", chunks=(8,), dimension_names=["x"])
        v[:] = np.arange(8, dtype="f4")
        arr = group.create_array(
            "x", shape=(8,), dtype=stored, chunks=(8,), dimension_names=["x"], attributes=attrs
        )
        arr[:] = np.array(elements, dtype=stored)
        zarr.consolidate_metadata(str(path))
    return arr


@pytest.mark.parametrize("where", ["variable", "coordinate"])
@pytest.mark.parametrize(
    ("stored", "unsigned", "fill", "fixed", "holder"),
    [("uint16", "false", 65534, -2, "int16"), ("int8", "true", 200, -56, "int8")],
    # the elements meant are stored as the bits of ``fill``: 65534, and -56 (200 unsigned)
    ids=["uint16-false", "int8-true"],
)
def test_an_unsigned_fill_value_xarray_cannot_convert_is_refused_naming_a_fix_that_works(
    tmp_path: Path, stored: str, unsigned: str, fill: int, fixed: int, holder: str, where: str
) -> None:
    """A v3 variable's or coordinate's ``_FillValue`` that xarray cannot convert for
    ``_Unsigned`` (65534 on uint16 read as int16: xarray's ``int16(65534)`` overflows) is
    refused in one line that names the dtype that cannot hold it and the fix, the same bits
    in that dtype (-2); written so, xarray masks the elements meant, and so does the run.
    h77c: the line named the stored dtype (uint16, which holds 65534) as the one that could
    not, and no fix at all; h77f: a coordinate's was told to "correct _FillValue and
    _Unsigned"."""
    import pipeline
    from pipeline.errors import InputError

    marked = np.array(fill, f"u{np.dtype(stored).itemsize}").view(stored).item()
    elements = [0, 1, marked, 3, 4, marked, 6, 7]
    attrs = {"_Unsigned": unsigned, "_FillValue": fill}
    make = _packed_variable if where == "variable" else _unsigned_coordinate
    arr = make(tmp_path / "in.zarr", stored, attrs, elements)
    with pytest.raises(InputError) as info:
        pipeline.plan(_decoding(tmp_path, [{"op": "add"}]))
    line = str(info.value)
    said = f"write _FillValue as {fixed}, the {holder} of its bits (it masks the same elements)"
    assert "\n" not in line and f"to {holder}, which cannot hold it" in line, line
    assert line.startswith(f"input {where} "), line
    if where == "variable":
        assert line.endswith(f"{said}, or remove it"), line
        assert info.value.fix == f"_FillValue: {fixed}"
    else:
        assert f"{said}, or remove it (xr.open_zarr fails on the input Dataset" in line, line
        assert line.endswith("set output.array: '' to write the variable alone, without "
                             "its coordinates"), line  # fmt: skip
    if where == "coordinate" and unsigned == "false":
        # xarray reads -2 on uint16 read as int16, but writes it back as 65534, which it
        # cannot read: for the output, such a coordinate's fix is to leave it out (h77f)
        assert f"back as the {stored} of its bits, which it then cannot read, so for the " \
            "output set output.array: ''" in line, line  # fmt: skip
        assert info.value.fix == "output.array: ''"
        run = _decoding(tmp_path, [{"op": "add"}], array="")
        assert pipeline.run(run).status == "complete"
        return
    if where == "coordinate":
        assert "back as" not in line, line
        assert info.value.fix == f"_FillValue: {fixed}, or output.array: ''"
    with warnings.catch_warnings():  # zarr: v3 consolidated metadata is not in the spec yet
        warnings.simplefilter("ignore")
        arr.update_attributes({"_FillValue": fixed})  # the fix, as the line says it
        zarr.consolidate_metadata(str(tmp_path / "in.zarr"))
    want = _xarray_v(tmp_path / "in.zarr", "values" if where == "variable" else "x")
    if where == "coordinate":
        want = np.asarray(want.values)
    assert np.isnan(want).ravel().tolist() == [e == marked for e in elements]
    assert pipeline.run(_decoding(tmp_path, [{"op": "add"}])).status == "complete"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = xr.open_zarr(str(tmp_path / "out.zarr"))
    if where == "variable":
        got = out["v"].values
        assert got.dtype == want.dtype and got.tobytes() == (want + want).tobytes()
    else:
        got = out["x"].values
        assert got.dtype == want.dtype and got.tobytes() == want.tobytes()


def _unsigned_member(
    path: Path, name: str, stored: str, attrs: dict[str, Any], elements: list
) -> None:
    """A v3 Dataset of a float32 variable ``v`` (x 8) beside ``name``, ``stored`` elements
    ``elements`` with the attributes ``attrs`` on the dimension ``x``: its dimension
    coordinate where ``name`` is ``x``, else a coordinate ``v`` lists; consolidated."""
    with warnings.catch_warnings():  # zarr: v3 consolidated metadata is not in the spec yet
        warnings.simplefilter("ignore")
        group = zarr.open_group(str(path), mode="w", zarr_format=3)
        own = {} if name == "x" else {"coordinates": name}
        v = group.create_array(
            "v", shape=(8,), dtype="f4", chunks=(8,), dimension_names=["x"], attributes=own
        )
        v[:] = np.arange(8, dtype="f4")
        arr = group.create_array(
            name, shape=(8,), dtype=stored, chunks=(8,), dimension_names=["x"], attributes=attrs
        )
        arr[:] = np.array(elements, dtype=stored)
        zarr.consolidate_metadata(str(path))


@pytest.mark.parametrize("name", ["x", "w"], ids=["coordinate", "listed"])
@pytest.mark.parametrize(
    ("stored", "attrs", "elements"),
    [
        ("uint16", {"_Unsigned": "false"}, [0, 1, 65534, 3, 32768, 65535, 6, 7]),
        ("int16", {"_Unsigned": "true"}, [0, 1, -2, 3, -32768, -1, 6, 7]),
        ("int8", {"_Unsigned": "true"}, [0, 1, -2, 3, -128, -1, 6, 7]),
        ("int16", {"_Unsigned": "false"}, [0, 1, -2, 3, 4, 5, 6, 7]),  # xarray ignores it
        (
            "uint16",
            {"_Unsigned": "false", "scale_factor": 0.5, "add_offset": 1.0},
            [0, 1, 65534, 3, 32768, 65535, 6, 7],
        ),
        (
            "int8",
            {"_Unsigned": "true", "scale_factor": 0.25, "add_offset": -3.0},
            [0, 1, -2, 3, -128, -1, 6, 7],
        ),
        ("int16", {"_Unsigned": "true", "missing_value": -2}, [0, 1, -2, 3, 4, 5, 6, 7]),
    ],
    ids=[
        "uint16-false",
        "int16-true",
        "int8-true",
        "int16-false-ignored",
        "uint16-false-packed",
        "int8-true-packed",
        "int16-true-missing-value",
    ],
)
def test_an_unsigned_member_without_a_fill_value_reads_in_the_output_as_in_the_input(
    tmp_path: Path, stored: str, attrs: dict[str, Any], elements: list, name: str
) -> None:
    """A coordinate (or one the variable lists) that xarray reads by ``_Unsigned`` without a
    fill value (uint16 65534 read as int16 -2) is written beside the output so that
    ``xr.open_zarr`` of the output reads it as that of the input, bit for bit, dtype too,
    stored as the input stores it, ``_Unsigned`` kept; verify passes. h77g: xarray writes
    ``_Unsigned`` back only with a fill value, so it was dropped and the output's read 65534
    (uint16), the run complete; verify's advice, overwrite, wrote it the same. Where xarray
    cannot write it back so (``_Unsigned`` with ``missing_value`` alone: it writes a
    ``_FillValue`` that masks an element the input reads), the plan refuses it in one line,
    nothing written."""
    import pipeline
    from pipeline.errors import InputError

    src, dst = tmp_path / "in.zarr", tmp_path / "out.zarr"
    _unsigned_member(src, name, stored, attrs, elements)
    before = file_states(src)
    cfg = _decoding(tmp_path, [{"op": "add", "value": 1.0}])
    if "missing_value" in attrs:
        with pytest.raises(InputError) as info:
            pipeline.run(cfg)
        line = str(info.value)
        assert "\n" not in line and "xarray reads the written one otherwise" in line, line
        assert info.value.coordinate == name and not dst.exists()
        assert file_states(src) == before
        return
    assert pipeline.run(cfg).status == "complete"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = xr.open_zarr(str(src))[name].values
        got = xr.open_zarr(str(dst))[name].values
        written = zarr.open_array(str(dst), path=name, mode="r")
    assert got.dtype == want.dtype and got.tobytes() == want.tobytes(), (got, want)
    assert written.dtype == np.dtype(stored), written.dtype
    assert {k: v for k, v in written.attrs.items() if k in attrs} == attrs
    assert pipeline.verify(cfg).ok
