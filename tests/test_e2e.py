"""End to end: the CLI on real Zarr stores with a real LocalCluster, against NumPy."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import zarr

from tests.conftest import (
    generated_config,
    make_array,
    read_array,
    record_of,
    reference,
    write_config,
)

CASES = [
    ("float32", (100_003,), (9_000,)),
    ("float64", (100_003,), (9_000,)),
    ("float32", (37, 41, 29), (8, 16, 10)),
    ("float64", (37, 41, 29), (8, 16, 10)),
]


@pytest.mark.parametrize(
    ("dtype", "shape", "chunks"), CASES, ids=[f"{d}-{len(s)}d" for d, s, _ in CASES]
)
def test_run_matches_numpy(tmp_path, cli, dtype, shape, chunks) -> None:
    x = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    make_array(tmp_path / "in.zarr", x, chunks)
    cfg = write_config(
        tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr", chunking={"target_bytes": 100_000}
    )
    rc, out, err = cli("run", cfg, "--progress", "plain")
    assert rc == 0, err
    y = read_array(tmp_path / "out.zarr")
    assert y.dtype == np.dtype(dtype)
    assert np.array_equal(y, reference(x))
    arr = zarr.open_array(str(tmp_path / "out.zarr"), mode="r")
    meta = record_of(arr.attrs)
    assert meta["status"] == "complete"
    assert [s.split("(")[0] for s in meta["stages"]] == ["multiply", "square", "add"]
    assert meta["source"]["shape"] == list(shape)
    assert "complete" in out and re.search(r"throughput +\S+ [kMGT]?B/s of input", out), out
    # the run record is gone once the output is complete
    assert not (tmp_path / "out.zarr" / ".pipeline").exists()


def test_the_record_names_the_input_where_it_is(tmp_path, cli, monkeypatch) -> None:
    """The output's record names the input store as the run found it, wherever the output is
    opened later: a config's relative path ('in.zarr', from where the command ran) had been
    written as it was, naming no store to a reader elsewhere (h81a)."""
    x = np.random.default_rng(0).standard_normal((8, 20)).astype(np.float32)
    make_array(tmp_path / "in.zarr", x, (4, 20))
    cfg = write_config(tmp_path, "in.zarr", "out.zarr")
    monkeypatch.chdir(tmp_path)
    rc, _, err = cli("run", cfg)
    assert rc == 0, err
    meta = record_of(zarr.open_array(str(tmp_path / "out.zarr"), mode="r").attrs)
    assert meta["source"] == {
        "store": str(tmp_path / "in.zarr"),
        "array": "",
        "shape": [8, 20],
        "dtype": "float32",
    }
    rc, _, err = cli("verify", cfg)
    assert rc == 0, err


@pytest.mark.parametrize("layout", ["v2", "sharded", "blosc", "unsharded-out", "chunks-out"])
def test_input_and_output_layouts(tmp_path, cli, layout) -> None:
    x = np.random.default_rng(1).standard_normal((60, 50)).astype(np.float32)
    kw: dict = {}
    if layout == "v2":
        make_array(tmp_path / "in.zarr", x, (16, 50), zarr_format=2)
    elif layout == "sharded":
        make_array(tmp_path / "in.zarr", x, (4, 25), shards=(16, 50))
    elif layout == "blosc":  # not a direct codec: Zarr decodes it
        make_array(tmp_path / "in.zarr", x, (16, 50), compressor="blosc")
    else:
        make_array(tmp_path / "in.zarr", x, (16, 50))
    if layout == "unsharded-out":
        kw["output"] = {"shards": "none", "chunks": [16, 25]}
    if layout == "chunks-out":
        kw["output"] = {"chunks": [4, 10]}
    cfg = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr", **kw)
    rc, _, err = cli("run", cfg)
    assert rc == 0, err
    assert np.array_equal(read_array(tmp_path / "out.zarr"), reference(x))
    arr = zarr.open_array(str(tmp_path / "out.zarr"), mode="r")
    if layout == "unsharded-out":
        assert arr.shards is None and arr.chunks == (16, 25)
    if layout == "chunks-out":
        assert arr.chunks == (4, 10) and arr.shards is not None


def test_integer_input_is_promoted_and_exact(tmp_path, cli) -> None:
    x = np.random.default_rng(2).integers(-32768, 32767, (40, 30), dtype=np.int16)
    make_array(tmp_path / "in.zarr", x, (10, 30))
    cfg = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr")
    rc, _, err = cli("run", cfg)
    assert rc == 0, err
    y = read_array(tmp_path / "out.zarr")
    assert y.dtype == np.int64
    assert np.array_equal(y, reference(x.astype(np.int64)))


def test_array_inside_a_group(tmp_path, cli) -> None:
    x = np.arange(1000, dtype=np.float64).reshape(10, 100)
    g = zarr.open_group(str(tmp_path / "in.zarr"), mode="w")
    g.create_array("fields/temp", shape=x.shape, chunks=(3, 100), dtype=x.dtype)[...] = x
    cfg = write_config(
        tmp_path,
        tmp_path / "in.zarr",
        tmp_path / "out.zarr",
        input={"store": str(tmp_path / "in.zarr"), "array": "fields/temp"},
        output={"store": str(tmp_path / "out.zarr"), "array": "result"},
    )
    rc, _, err = cli("run", cfg)
    assert rc == 0, err
    assert np.array_equal(read_array(tmp_path / "out.zarr", "result"), reference(x))


def test_generate_then_run_then_verify(tmp_path, cli) -> None:
    cfg = generated_config(
        tmp_path,
        {
            "shape": [30, 20, 11],
            "dtype": "float32",
            "seed": 7,
            "shards": [8, 20, 11],
            "chunks": [2, 20, 11],
        },
    )
    rc, _, err = cli("generate", cfg, "--progress", "none")
    assert rc == 0, err
    x = read_array(tmp_path / "in.zarr")
    # deterministic from the seed: a second generation gives the same data
    rc, _, err = cli("generate", cfg, "--progress", "none")
    assert rc == 0 and np.array_equal(read_array(tmp_path / "in.zarr"), x)
    assert x.std() > 0.5
    rc, _, err = cli("run", cfg, "--summary-json", tmp_path / "s.json")
    assert rc == 0, err
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["status"] == "complete" and summary["blocks_done"] == summary["blocks_total"]
    # a small CPU run without a dashboard: its workers are threads of this process, counted as
    # one (a cluster's split among its workers: tests/test_threads.py)
    assert summary["blocks_per_worker"] == {"this process": summary["blocks_done"]}
    rc, out, err = cli("verify", cfg, "--all")
    assert rc == 0, err + out
    assert re.search(r"mismatched\s+0\b", out), out
    # damage one stored chunk: verify notices
    y = zarr.open_array(str(tmp_path / "out.zarr"), mode="r+")
    y[0, 0, 0] = y[0, 0, 0] + 1
    rc, out, err = cli("verify", cfg, "--all")
    assert rc == 1
    assert re.search(r"mismatched\s+1 \(first", out), out


@pytest.mark.parametrize("edit", ["negative-zero", "nan-payload"])
def test_verify_compares_the_bits_of_floats(tmp_path, cli, edit) -> None:
    """An output that differs from NumPy's only in a zero's sign or a NaN's payload is not
    NumPy's result to the bit: `verify --all` passed it (np.array_equal with equal_nan)."""
    x = np.zeros((7, 13), np.float32)
    x[1, 1] = np.nan
    make_array(tmp_path / "in.zarr", x, (3, 5))
    cfg = write_config(
        tmp_path,
        tmp_path / "in.zarr",
        tmp_path / "out.zarr",
        stages=[{"op": "multiply", "factor": 2}],
    )
    rc, _, err = cli("run", cfg)
    assert rc == 0, err
    rc, out, err = cli("verify", cfg, "--all")
    assert rc == 0 and re.search(r"mismatched\s+0\b", out), err + out
    y = zarr.open_array(str(tmp_path / "out.zarr"), mode="r+")
    if edit == "negative-zero":
        y[5, 12] = -0.0  # equal to 0.0, but not NumPy's 0.0 * 2
    else:
        y[1, 1] = (np.array(np.nan, np.float32).view(np.uint32) | 7).view(np.float32)
    rc, out, err = cli("verify", cfg, "--all")
    assert rc == 1, out
    assert re.search(r"mismatched\s+1 \(first", out), out
    # its one line says what differs, and where: the row had named the block alone
    said = {
        "negative-zero": "the first at [5, 12]: -0.0, not 0.0",
        "nan-payload": "the first at [1, 1]: nan (bits 0x7fc00007), not nan (bits 0x7fc00000)",
    }[edit]
    assert re.search(r"1 of \d+ elements differs, " + re.escape(said), " ".join(out.split())), out


def _stored(path, values: np.ndarray):
    """``values`` written to a real Zarr array at ``path`` and read back as zarr-python
    reads it (as verify reads the output)."""
    make_array(path, values, (2,))
    return np.asarray(zarr.open_array(str(path), mode="r")[...])


def test_verify_and_coordinates_compare_with_one_function(tmp_path) -> None:
    """verify's data check (``same_bits``) and the coordinates' (``same_labels``) were
    near-copies that disagreed: ``same_bits`` compared complex values with ``array_equal``, so
    a -0.0j where NumPy gives +0.0j passed and a complex NaN differed from itself, and it
    took integers of other dtypes holding equal values for the same. Both ask
    :func:`pipeline.ops.bits.difference` now, which says what differs."""
    from pipeline.ops.bits import difference
    from pipeline.reporting import verify
    from pipeline.store import datasets

    assert not hasattr(verify, "same_bits") and not hasattr(datasets, "same_labels")
    want = np.array([1, 0, 2, 3], np.complex64)
    edited = want.copy()
    edited.view(np.float32)[3] = -0.0  # the imaginary part of want[1]
    got = _stored(tmp_path / "c.zarr", edited)
    assert got.view(np.uint32)[3] == 0x80000000  # stored as given
    assert difference(want, got) == "1 of 4 elements differs, the first at [1]: -0j, not 0j"
    nan = np.array([complex(np.nan, 1.0), 2], np.complex128)
    assert difference(nan, _stored(tmp_path / "n.zarr", nan)) is None  # the same NaN
    other = nan.copy()
    other.view(np.uint64)[0] |= 5
    said = difference(nan, _stored(tmp_path / "p.zarr", other))
    assert said is not None and "(nan+1j) (bits 0x7ff8000000000005" in said, said
    ints = np.arange(4, dtype=np.int32)
    wide = _stored(tmp_path / "i.zarr", ints.astype(np.int64))
    assert difference(ints, wide) == "dtype int64, not int32"
    # byte order aside: a big-endian copy holds the same bits of the same values
    assert difference(ints.astype(">i8"), wide) is None


def test_one_function_takes_missing_text_as_itself_and_says_dates_as_dates() -> None:
    """An object array of text holding NaN for a missing value (as xarray reads a string
    coordinate with a fill value) differed from an identical copy of itself, NaN != NaN
    (found by a reviewer, helper-108); a date was said as its count of nanoseconds."""
    from pipeline.ops.bits import difference

    text = np.array(["a", np.nan, "c"], dtype=object)
    assert difference(text, text.copy()) is None
    said = difference(text, np.array(["a", "b", "c"], dtype=object))
    assert said == "1 of 3 elements differs, the first at [1]: 'b', not nan", said
    days = np.array(["2000-01-01", "2000-01-02"], "datetime64[ns]")
    moved = days + np.array([0, 3], "timedelta64[D]")
    said = difference(days, moved)
    assert said is not None and "2000-01-05T00:00:00" in said and "not 2000-01-02T" in said, said
