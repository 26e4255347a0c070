"""The output's fill value is the chain of the input's.

Real zarr-python writes each input, Zarr v2 and v3, with a fill value (NaN, an infinity, -0.0,
1.0, an integer) and a chunk it leaves unwritten (all fill value); the pipeline runs on a
``distributed.Client`` made here; the output's metadata must hold, as its fill value, NumPy's
chain over the input's fill value, to the bit (a NaN's payload and sign in the v3 spec's hex
form, where zarr-python writes every NaN as "NaN"), every chunk must be written (an all-fill
one too), and ``verify --all`` must pass, also of an output an earlier version wrote (fill
value 0, its record saying none).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

import pipeline
from pipeline.planning.plan import with_check
from tests.conftest import make_array, pipeline_process, record_of, write_config

#: multiply by 2, square, add 1: an input fill value of 1.0 is 5.0 in the output
CHAIN = [{"op": "multiply", "factor": 2}, {"op": "square"}, {"op": "add", "value": 1}]


def _chain(x: np.ndarray) -> np.ndarray:
    """NumPy's chain, as :data:`CHAIN` says it (integers promoted as the plan promotes them)."""
    with np.errstate(all="ignore"):
        if x.dtype.kind in "iu":
            x = x.astype(np.int64)
        return (x * x.dtype.type(2)) ** 2 + x.dtype.type(1)


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """To the bit, a NaN's payload and sign aside."""
    if a.dtype != b.dtype:
        return False
    if a.dtype.kind == "f" and bool(np.isnan(a)) and bool(np.isnan(b)):
        return True
    return a.tobytes() == b.tobytes()


def _verify(cfg: Path, cli: Any) -> str:
    rc, out, err = cli("verify", cfg, "--all")
    assert rc == 0, out + err
    return out


@pytest.mark.parametrize("zarr_format", [2, 3])
@pytest.mark.parametrize(
    "dtype, fill",
    [
        ("float32", np.nan),
        ("float64", np.inf),
        ("float32", -np.inf),
        ("float32", -0.0),
        ("float32", 1.0),
        ("int16", 7),
        ("float32", None),
    ],
    ids=["nan", "inf", "-inf", "-0.0", "1.0", "int16", "null"],
)
def test_the_output_fill_value_is_the_chain_of_the_inputs(
    tmp_path: Path,
    backend_client: tuple[str, Any],
    cli: Any,
    zarr_format: int,
    dtype: str,
    fill: Any,
) -> None:
    backend, client = backend_client
    data = np.arange(48, dtype=dtype).reshape(6, 8) + 2
    # one chunk all fill value (a null one reads as 0), which zarr-python leaves unwritten
    data[:3, :4] = np.asarray(0 if fill is None else fill, dtype=dtype)
    src = make_array(tmp_path / "in.zarr", data, (3, 4), zarr_format=zarr_format, fill_value=fill)
    first = "0.0" if zarr_format == 2 else "c/0/0"
    assert not (tmp_path / "in.zarr" / first).exists()  # zarr-python leaves it unwritten
    cfg = write_config(
        tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr", stages=CHAIN, backend=backend
    )
    assert pipeline.run(cfg, client=client).status == "complete"

    out = zarr.open_array(str(tmp_path / "out.zarr"), mode="r")
    read_as = 0 if src.fill_value is None else src.fill_value  # as zarr-python reads null
    expected = _chain(np.asarray(read_as, dtype=np.dtype(dtype).newbyteorder("=")))
    got = np.asarray(out.fill_value, dtype=out.dtype)
    assert _same(expected, got), (expected, got)
    assert np.array_equal(out[...], _chain(data), equal_nan=True)
    # every unit is written, the one all fill value too
    units = np.ndindex(
        *(-(-n // u) for n, u in zip(out.shape, out.shards or out.chunks, strict=True))
    )
    for index in units:
        assert (tmp_path / "out.zarr" / "c" / "/".join(map(str, index))).is_file(), index
    # tensorstore opens it (a NaN fill value is "NaN", the v3 spec's form) and reads the same
    ts = pytest.importorskip("tensorstore")
    spec = {"driver": "zarr3", "kvstore": {"driver": "file", "path": str(tmp_path / "out.zarr")}}
    t = ts.open(spec).result()
    assert _same(expected, np.asarray(t.fill_value)), t.fill_value
    assert np.array_equal(t.read().result(), out[...], equal_nan=True)
    record = record_of(out.attrs)
    assert record["fill_value"] == json.loads(
        json.dumps(json.loads((tmp_path / "out.zarr" / "zarr.json").read_text())["fill_value"])
    )
    _verify(cfg, cli)

    # an earlier version's output: fill value 0, its record saying none; verify passes it
    meta = json.loads((tmp_path / "out.zarr" / "zarr.json").read_text())
    meta["fill_value"] = 0
    recorded = json.loads(meta["attributes"]["pipeline"])
    old = {k: v for k, v in recorded.items() if k not in ("fill_value",)}
    old.pop("check")
    meta["attributes"]["pipeline"] = json.dumps(with_check(old))
    (tmp_path / "out.zarr" / "zarr.json").write_text(json.dumps(meta))
    _verify(cfg, cli)
    # and one edited since: its fill value said, with what the run wrote
    meta["fill_value"] = 3
    (tmp_path / "out.zarr" / "zarr.json").write_text(json.dumps(meta))
    rc, said, err = cli("verify", cfg, "--all")
    assert rc != 0 and "its fill value 3" in said + err, said + err


@pytest.mark.parametrize(
    "zarr_format, scale_factor, zarr_fill, expected",
    [
        (2, 0.5, -999, np.float64(np.nan)),  # the fill value is missing: NaN, through the chain
        (3, 0.5, 0, np.float64(1.0)),  # zarr's fill value 0 is no _FillValue: 0 * 0.5, 2, ^2, +1
        (3, 2, 5, np.int64(401)),  # an integer decoding: 5 * 2 = 10, then 20, 400, 401
        (2, 2, -999, np.int64(0)),  # masked, which int64 cannot hold: zarr-python's default
    ],
    ids=["v2-masked", "v3-attribute", "v3-int", "v2-int-masked"],
)
def test_a_packed_inputs_fill_value_is_decoded_then_chained(
    tmp_path: Path,
    backend_client: tuple[str, Any],
    cli: Any,
    zarr_format: int,
    scale_factor: Any,
    zarr_fill: int,
    expected: np.generic,
) -> None:
    """An input decoded (``input.mask_and_scale``): the output's fill value is the chain of
    the input's fill value as the run decodes it (NaN where it is a ``_FillValue``)."""
    backend, client = backend_client
    g = zarr.open_group(str(tmp_path / "in.zarr"), mode="w", zarr_format=zarr_format)
    attrs: dict[str, Any] = {"scale_factor": scale_factor}
    if zarr_format == 2:
        attrs["_ARRAY_DIMENSIONS"] = ["y", "x"]
    else:
        attrs["_FillValue"] = -999
    more = {"dimension_names": ["y", "x"]} if zarr_format == 3 else {}
    a = g.create_array(
        "v",
        shape=(4, 6),
        dtype="int16",
        chunks=(2, 3),
        fill_value=zarr_fill,
        attributes=attrs,
        **more,
    )
    a[...] = np.arange(24, dtype="int16").reshape(4, 6) + 10
    cfg = write_config(
        tmp_path,
        tmp_path / "in.zarr",
        tmp_path / "out.zarr",
        stages=CHAIN,
        backend=backend,
        input={"array": "v", "mask_and_scale": True},
    )
    assert pipeline.run(cfg, client=client).status == "complete"
    out = zarr.open_array(str(tmp_path / "out.zarr"), path="v", mode="r")
    got = np.asarray(out.fill_value, dtype=out.dtype)
    assert _same(np.asarray(expected), got), (expected, got)
    _verify(cfg, cli)


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_nan_and_infinite_attributes_are_carried_as_the_same_numbers(
    tmp_path: Path, backend_client: tuple[str, Any], zarr_format: int
) -> None:
    """Attributes holding NaN and infinities are written as zarr-python writes them (bare
    tokens in ``zarr.json``, pipeline/DESIGN.md says why): zarr-python reads back the same
    floats, never text."""
    backend, client = backend_client
    attrs = {"threshold": np.inf, "ratio": np.nan, "range": [-np.inf, 1.5], "units": "K"}
    data = np.arange(24, dtype="float32").reshape(4, 6)
    make_array(tmp_path / "in.zarr", data, (2, 3), zarr_format=zarr_format, attributes=attrs)
    cfg = write_config(
        tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr", stages=CHAIN, backend=backend
    )
    assert pipeline.run(cfg, client=client).status == "complete"
    got = {k: v for k, v in zarr.open_array(str(tmp_path / "out.zarr")).attrs.items()}
    got.pop("pipeline")
    assert got.keys() == attrs.keys()
    assert got["units"] == "K"
    assert got["threshold"] == np.inf and isinstance(got["threshold"], float)
    assert isinstance(got["ratio"], float) and np.isnan(got["ratio"])
    assert got["range"] == [-np.inf, 1.5]


def _fill_beyond_range(path: Path, zarr_format: int, dtype: str, fill: float) -> np.ndarray:
    """An array of ``dtype`` written by zarr-python with half its chunks unwritten, whose
    metadata's fill value is then edited to ``fill``, a finite number beyond the dtype's
    range, as older writers and hand edits leave it; what zarr-python reads of it."""
    data = np.arange(48, dtype=dtype).reshape(6, 8) + 2
    data[3:] = 0  # all fill value: zarr-python leaves those chunks unwritten
    make_array(path, data, (3, 4), zarr_format=zarr_format, fill_value=0)
    doc = path / ("zarr.json" if zarr_format == 3 else ".zarray")
    meta = json.loads(doc.read_text())
    meta["fill_value"] = fill
    doc.write_text(json.dumps(meta))
    assert f'"fill_value": {json.dumps(fill)}' in doc.read_text()
    with np.errstate(over="ignore"):  # zarr-python's cast of the fill value warns
        return zarr.open_array(str(path), mode="r")[...]


@pytest.mark.parametrize("zarr_format", [2, 3])
@pytest.mark.parametrize(
    "dtype, fill", [("float32", 1e40), ("float32", -1e40), ("float16", 70000.0)]
)
def test_a_fill_value_beyond_the_dtypes_range_reads_as_zarr_python_reads_it(
    tmp_path: Path,
    backend_client: tuple[str, Any],
    cli: Any,
    zarr_format: int,
    dtype: str,
    fill: float,
) -> None:
    """A float array whose metadata names a fill value its dtype cannot hold (float32's
    1e40): zarr-python reads it, and each absent chunk, as an infinity. The plan opens it with
    no warning (they are errors here: NumPy's "overflow encountered in cast" as zarr-python
    parses it had been one at each opening) and says so in one note; the run's output is
    NumPy's chain over what zarr-python reads, bit for bit, absent chunks too, its fill value
    the chain's of that infinity, written as the v3 spec's "Infinity" (JSON's own, which
    zarr-python 3 and tensorstore open); verify passes it."""
    backend, client = backend_client
    x = _fill_beyond_range(tmp_path / "in.zarr", zarr_format, dtype, fill)
    read_as = np.inf if fill > 0 else -np.inf
    assert np.all(x[3:] == read_as)  # what zarr-python reads of the absent chunks
    cfg = write_config(
        tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr", stages=CHAIN, backend=backend
    )
    plan = pipeline.plan(cfg)
    said = [n for n in plan.notes if "beyond" in n]
    assert len(said) == 1 and f"as {'inf' if fill > 0 else '-inf'};" in said[0], plan.notes
    assert pipeline.run(cfg, client=client).status == "complete"

    out = zarr.open_array(str(tmp_path / "out.zarr"), mode="r")
    assert _same(_chain(np.asarray(read_as, dtype=dtype)), np.asarray(out.fill_value, out.dtype))
    assert out[...].tobytes() == _chain(x).tobytes()
    text = (tmp_path / "out.zarr" / "zarr.json").read_text()

    def no_constant(name: str) -> None:
        raise AssertionError(f"{name} is no JSON")

    meta = json.loads(text, parse_constant=no_constant)  # strict JSON: a string, not a bare inf
    assert meta["fill_value"] == "Infinity", meta["fill_value"]
    ts = pytest.importorskip("tensorstore")
    spec = {"driver": "zarr3", "kvstore": {"driver": "file", "path": str(tmp_path / "out.zarr")}}
    assert ts.open(spec).result().read().result().tobytes() == out[...].tobytes()
    # from Python (warnings still errors: the command line's filters not yet set here)
    result = pipeline.verify(cfg, all=True)
    assert result.status == "complete"
    assert said[0] in result.input_notes, result.input_notes  # h65a: the plan's note too
    _verify(cfg, cli)


def test_a_fill_value_beyond_the_dtypes_range_prints_no_warning(tmp_path: Path) -> None:
    """`plan`, `run` (worker processes) and `verify` of an input whose fill value float32
    cannot hold, as a user runs them: stderr holds no warning (NumPy's "RuntimeWarning:
    overflow encountered in cast", from zarr-python's parsing of the fill value, had been
    printed at each opening); the plan's note says it instead, once, and `run` and `verify`
    repeat it (h65a: verify had said none)."""
    _fill_beyond_range(tmp_path / "in.zarr", 3, "float32", 1e40)
    cfg = write_config(
        tmp_path,
        tmp_path / "in.zarr",
        tmp_path / "out.zarr",
        stages=CHAIN,
        cluster={"dashboard": ":0", "protocol": "tcp"},
    )
    for args in (["plan", cfg], ["run", cfg, "--progress", "none"], ["verify", cfg, "--all"]):
        proc = pipeline_process(*args)
        assert proc.returncode == 0, proc.stderr
        assert "Warning" not in proc.stderr, proc.stderr
        note = "names the fill value 1e+40, beyond float32's range"
        if args[0] == "plan":
            assert proc.stdout.count(note) == 1, proc.stdout
        else:
            said = [ln for ln in proc.stderr.splitlines() if note in ln]
            assert len(said) == 1 and said[0].startswith("note: "), proc.stderr


@pytest.mark.parametrize("zarr_format", [2, 3])
@pytest.mark.parametrize("dtype, fill", [("int8", 300), ("uint8", -1), ("int32", 1e40)])
def test_an_integer_fill_value_beyond_the_dtypes_range_is_refused_naming_it(
    tmp_path: Path, zarr_format: int, dtype: str, fill: float
) -> None:
    """An integer array whose metadata names a fill value its dtype cannot hold, which
    zarr-python refuses to open ("Python integer 300 out of bounds for int8", naming neither
    the document's value nor what to write): refused before anything is written, in one
    line naming the document, the value, the dtype's range and the fix; the input as it was."""
    from pipeline.errors import InputError

    data = np.arange(48, dtype=dtype).reshape(6, 8)
    make_array(tmp_path / "in.zarr", data, (3, 4), zarr_format=zarr_format, fill_value=0)
    doc = tmp_path / "in.zarr" / ("zarr.json" if zarr_format == 3 else ".zarray")
    meta = json.loads(doc.read_text())
    meta["fill_value"] = fill
    doc.write_text(json.dumps(meta))
    before = {p: p.read_bytes() for p in (tmp_path / "in.zarr").rglob("*") if p.is_file()}
    cfg = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr", stages=CHAIN)
    with pytest.raises(InputError) as info:
        pipeline.run(cfg)
    line = str(info.value)
    info_ = np.iinfo(dtype)
    assert len(line.splitlines()) == 1, line
    assert line.startswith(f"{doc} names the fill value {json.dumps(fill)}, beyond "), line
    assert f"{dtype}'s range [{info_.min}, {info_.max}]" in line, line
    assert f"one {dtype} holds, as the fill value in that document" in line, line
    assert info.value.store == str(doc) and info.value.status == "unreadable"
    assert not (tmp_path / "out.zarr").exists()
    assert {p: p.read_bytes() for p in (tmp_path / "in.zarr").rglob("*") if p.is_file()} == before


def test_a_fill_value_to_mend_in_a_consolidated_dataset_names_consolidating_it_again(
    tmp_path: Path,
) -> None:
    """h65a: the variable of a Dataset xarray wrote (Zarr v3, consolidated) whose own
    metadata was edited to a fill value int16 cannot hold: the refusal asked for a value
    int16 holds in that document, and that edit alone (another value than the consolidated
    copy's) met a second refusal, the copy stale. The line names both steps; done, the plan
    takes the input."""
    import warnings

    from pipeline.errors import InputError

    xr = pytest.importorskip("xarray")
    src = tmp_path / "in.zarr"
    t = np.arange(48, dtype="int16").reshape(6, 8) + 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zarr-python's: v3 does not specify consolidation
        xr.Dataset({"t": (("y", "x"), t)}).to_zarr(str(src), zarr_format=3, consolidated=True)
    doc = src / "t" / "zarr.json"
    meta = json.loads(doc.read_text())
    meta["fill_value"] = 70000
    doc.write_text(json.dumps(meta))
    cfg = write_config(tmp_path, src, tmp_path / "out.zarr", input={"array": "t"})
    with pytest.raises(InputError) as info:
        pipeline.plan(cfg)
    line = str(info.value)
    assert "one int16 holds, as the fill value in that document, then consolidate the " in line
    assert "input's metadata again (zarr.consolidate_metadata on its store)" in line, line
    meta["fill_value"] = 5
    doc.write_text(json.dumps(meta))
    with pytest.raises(InputError) as info:  # the edit alone: the second refusal
        pipeline.plan(cfg)
    assert "is stale: 't' has another fill_value" in str(info.value), info.value
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(str(src))
    assert pipeline.plan(cfg).notes == ()


def _hex(x: np.ndarray) -> str:
    """The Zarr v3 spec's hex form of a float's bits, big-endian ("0x7fc00005")."""
    return "0x" + x.astype(x.dtype.newbyteorder(">")).tobytes().hex()


def _bits(x: np.ndarray) -> np.ndarray:
    return x.view(f"u{x.dtype.itemsize}")


@pytest.mark.parametrize("write_empty", [False, True], ids=["unwritten", "written"])
@pytest.mark.parametrize(
    "dtype, said",
    [
        ("float32", "0x7fc00005"),  # a payload
        ("float32", "0xffc00000"),  # a negative NaN
        ("float64", "0x7ff8000000000123"),
        ("float64", "0x7ff0000000000001"),  # signalling: multiply quiets it, payload kept
        ("float16", "0xfe00"),
    ],
)
def test_a_nan_fill_values_bits_are_the_outputs_metadata_and_every_element_read_back(
    tmp_path: Path, cli: Any, dtype: str, said: str, write_empty: bool
) -> None:
    """A v3 input's NaN fill value written in hex (the spec's only form of a NaN other than
    its own "NaN") is, through the chain, the output's fill value to the bit, in hex: it had
    been "NaN", the payload lost. Each element read back from the output is, bit for bit,
    NumPy's chain over zarr-python's read of the input, an input chunk of fill values
    written or not (``write_empty_chunks``; zarr-python drops a chunk of NaNs equal to a NaN
    fill value, payload aside), and every output chunk is written, so none reads as the fill."""
    fill = np.frombuffer(bytes.fromhex(said[2:]), np.dtype(dtype).newbyteorder(">"))[0]
    data = np.arange(8, dtype=dtype) + 1
    data[4:] = fill  # the second chunk all fill value
    src = zarr.create_array(
        str(tmp_path / "in.zarr"),
        shape=(8,),
        chunks=(4,),
        dtype=dtype,
        fill_value=0,
        config={"write_empty_chunks": write_empty},
    )
    src[:] = data
    meta = json.loads((tmp_path / "in.zarr" / "zarr.json").read_text())
    meta["fill_value"] = said
    (tmp_path / "in.zarr" / "zarr.json").write_text(json.dumps(meta))
    cfg = write_config(
        tmp_path,
        tmp_path / "in.zarr",
        tmp_path / "out.zarr",
        stages=[{"op": "multiply", "factor": 5}],
    )
    assert pipeline.run(cfg).status == "complete"

    read = zarr.open_array(str(tmp_path / "in.zarr"), mode="r")
    with np.errstate(all="ignore"):
        expected = read[...] * read.dtype.type(5)
        expected_fill = np.asarray(read.fill_value * read.dtype.type(5))
    out = zarr.open_array(str(tmp_path / "out.zarr"), mode="r")
    written = json.loads((tmp_path / "out.zarr" / "zarr.json").read_text())["fill_value"]
    wanted = (
        "NaN" if _hex(expected_fill) == _hex(np.asarray(np.nan, dtype)) else _hex(expected_fill)
    )
    assert written == wanted
    assert record_of(out.attrs)["fill_value"] == written
    assert out.dtype == expected.dtype
    assert np.array_equal(_bits(out[...]), _bits(expected))
    for index in range(2):
        assert (tmp_path / "out.zarr" / "c" / str(index)).is_file(), index
    _verify(cfg, cli)
    # its bits edited since (another NaN): verify says so, where it had taken any NaN
    meta = json.loads((tmp_path / "out.zarr" / "zarr.json").read_text())
    other = _hex(np.asarray(-expected_fill))  # the sign flipped: a NaN still
    meta["fill_value"] = other
    (tmp_path / "out.zarr" / "zarr.json").write_text(json.dumps(meta))
    rc, said, err = cli("verify", cfg, "--all")
    assert rc != 0 and f"its fill value {other} (the run wrote {written})" in said + err, said


@pytest.mark.parametrize(
    "filters",
    [None, "delta"],
    ids=["run-decodes-shards", "zarr-decodes-shards"],
)
@pytest.mark.parametrize("said", ["0x7fc00042", "0xffc00001"])
def test_a_nan_fill_values_bits_are_read_in_a_shard_of_absent_chunks(
    tmp_path: Path, cli: Any, said: str, filters: str | None
) -> None:
    """A sharded v3 input whose NaN fill value has a payload (or a sign), with a shard that
    holds some of its chunks and not others: an absent chunk of that shard reads, through
    zarr-python, as the fill value with its payload. The input's shards read through an
    array made again in memory from its metadata (a chain only Zarr decodes, Delta here, in
    the run; every sharded input in ``verify``) had read that chunk as the spec's own NaN,
    since zarr-python writes a document's every NaN as "NaN": the run had written those
    elements otherwise than NumPy's chain over zarr-python's read of the input, exit 0 with
    ``verify --all`` passing, and with the run's own decoding ``verify`` had failed a right
    output (h79a)."""
    import warnings

    src = tmp_path / "in.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numcodecs.zarr3's: its codecs are not in the spec
        import numcodecs.zarr3

        arr = zarr.create_array(
            str(src),
            shape=(12,),
            chunks=(3,),
            shards=(6,),
            dtype="float32",
            fill_value=0,
            filters=[numcodecs.zarr3.Delta(dtype="<f4")] if filters else None,
        )
        arr[3:6] = np.arange(3, dtype="float32")  # shard 0: chunk 1 alone; shard 1 absent
    meta = json.loads((src / "zarr.json").read_text())
    meta["fill_value"] = said
    (src / "zarr.json").write_text(json.dumps(meta))
    cfg = write_config(
        tmp_path, src, tmp_path / "out.zarr", stages=[{"op": "multiply", "factor": 3}]
    )
    assert pipeline.run(cfg).status == "complete"

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Numcodecs codecs are not in the Zarr")
        read = zarr.open_array(str(src), mode="r")[...]
    assert _hex(read[0:1]) == said  # zarr-python reads the payload
    expected = read * np.float32(3)
    out = zarr.open_array(str(tmp_path / "out.zarr"), mode="r")[...]
    assert np.array_equal(_bits(out), _bits(expected)), (_bits(out), _bits(expected))
    _verify(cfg, cli)


@pytest.mark.parametrize(
    "value, said",
    [
        (np.float32(-0.0), -0.0),
        (np.float32(np.nan), "NaN"),
        (np.frombuffer(bytes.fromhex("7f800001"), ">f4").astype("f4")[0], "0x7f800001"),
        (np.frombuffer(bytes.fromhex("7c01"), ">f2").astype("f2")[0], "0x7c01"),
        (
            np.frombuffer(bytes.fromhex("7ff4000000000000"), ">f8").astype("f8")[0],
            "0x7ff4000000000000",
        ),
        (np.float64(-np.inf), "-Infinity"),
    ],
    ids=["-0.0", "nan", "f4-signalling", "f2-signalling", "f8-signalling", "-inf"],
)
def test_a_fill_value_is_said_in_the_metadata_to_the_bit(
    tmp_path: Path, value: Any, said: Any
) -> None:
    """What the output's metadata says of each fill value: -0.0 as a number with its sign,
    the spec's own NaN as "NaN", every other NaN, signalling ones too, in hex; the document
    zarr-python writes is given those bits, and keeps them through its attributes' update."""
    from pipeline.store import arrays
    from pipeline.store.location import Location

    fill = np.asarray(value)
    assert json.dumps(arrays.fill_said(fill)) == json.dumps(said)
    zarr.create_array(
        str(tmp_path / "a.zarr"), shape=(2,), chunks=(2,), dtype=fill.dtype, fill_value=0
    )
    loc = Location.of(str(tmp_path / "a.zarr"))
    arrays.keep_fill_said(loc, "", arrays.fill_said(fill))
    arrays.update_attributes(loc, "", {"x": 1})
    doc = json.loads((tmp_path / "a.zarr" / "zarr.json").read_text())
    assert json.dumps(doc["fill_value"]) == json.dumps(said) and doc["attributes"] == {"x": 1}


def test_a_consolidated_copy_of_another_nan_payload_is_stale_and_zarr_pythons_nan_is_not(
    tmp_path: Path, cli: Any
) -> None:
    """A consolidated Dataset (v3) whose variable's own NaN fill value has a payload
    (``0x7fc00042``): zarr-python's copy says "NaN" (it writes no payload), which is no edit,
    and the pipeline reads the array's own metadata: an absent chunk reads as the payload,
    through the chain. A copy that says another payload (``0x7fc00001``, which xarray reads
    for that chunk) had passed, ``to_dict`` saying both "NaN": it is stale, refused naming the
    fill value, and consolidating again mends it (h81c)."""
    import warnings

    from pipeline.errors import InputError

    xr = pytest.importorskip("xarray")
    src = tmp_path / "in.zarr"
    t = xr.Dataset({"t": ("x", np.arange(8, dtype="float32"))}).chunk({"x": 4})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zarr-python's: v3 does not specify consolidation
        t.to_zarr(str(src), zarr_format=3, consolidated=True)
        (src / "t" / "c" / "1").unlink()  # read as the fill value
        own = json.loads((src / "t" / "zarr.json").read_text())
        (src / "t" / "zarr.json").write_text(json.dumps({**own, "fill_value": "0x7fc00042"}))
        zarr.consolidate_metadata(str(src))
    top = json.loads((src / "zarr.json").read_text())
    listed = top["consolidated_metadata"]["metadata"]["t"]
    assert listed["fill_value"] == "NaN"  # zarr-python's copy
    cfg = write_config(tmp_path, src, tmp_path / "out.zarr", input={"array": "t"}, stages=CHAIN)
    assert cli("run", cfg, "--progress", "none")[0] == 0
    out = zarr.open_array(str(tmp_path / "out.zarr"), path="t", mode="r")[...]
    assert _hex(out[4:5]) == _hex(_chain(np.frombuffer(bytes.fromhex("7fc00042"), ">f4")))
    listed["fill_value"] = "0x7fc00001"  # another tool's copy, or an edit of it
    (src / "zarr.json").write_text(json.dumps(top))
    with pytest.raises(InputError) as info:
        pipeline.plan(cfg)
    assert "is stale: 't' has another fill_value than its own metadata" in str(info.value)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(str(src))
    assert pipeline.plan(cfg).notes == ()
