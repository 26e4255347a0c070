"""The benchmarks' CPU-only modes run end to end and write their results; their output checker
reads every layout Zarr writes and catches any wrong element. Never timings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numcodecs
import numpy as np
import pytest
import zarr
from zarr.codecs import BloscCodec, GzipCodec, ZstdCodec

from benchmarks import rawzarr
from benchmarks.checks import check_output, reference, require

ROOT = Path(__file__).resolve().parents[1]
FIELD_WORKLOADS = ("v2-blosc", "v3-zstd", "xarray")
#: the workloads with an input of their own: each measures its ceilings and peers
OWN = (*FIELD_WORKLOADS, "synthetic")
#: the ``-raw`` workloads run on another's input (their output units stored as zstd raw blocks)
RAW = {"v2-blosc-raw": "v2-blosc", "synthetic-raw": "synthetic"}
WORKLOADS = ("v2-blosc", "v2-blosc-raw", "v3-zstd", "xarray", "synthetic", "synthetic-raw")


def quick(module: str, out: Path) -> subprocess.CompletedProcess[str]:
    """``python -m benchmarks.MODULE --quick --out OUT`` as ``make`` runs it with a prepared
    interpreter: from another directory, this checkout on PYTHONPATH."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    proc = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{module}", "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=out.parent,
        env={**os.environ, "PYTHONPATH": path},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], str]:
    """One ``bench --quick`` run: (output directory, its JSON, its stdout)."""
    out = tmp_path_factory.mktemp("bench") / "out"
    proc = quick("bench", out)
    return out, json.loads((out / "bench.json").read_text()), proc.stdout


def figures(doc: dict[str, Any], key: str) -> dict[str, dict[str, Any]]:
    """The figures ``key`` by workload ('' for the host's)."""
    return {f["workload"]: f for f in doc["figures"] if f["key"] == key}


def test_quick_bench_runs_every_workload_and_checks_every_output(bench) -> None:
    _, doc, _ = bench
    assert [w["key"] for w in doc["meta"]["workloads"]] == list(WORKLOADS)
    assert doc["failures"] == []
    outputs = [c["output"] for c in doc["checks"]]
    for w in WORKLOADS:
        # the command's output, the warm runs' output and the CPU Dask peer's (not again for
        # a workload that shares another's input)
        assert sum(f"-{w}.zarr" in o for o in outputs) == (3 if w in OWN else 2), outputs
    assert all(c["ok"] and c["differ"] == 0 and c["elements"] > 0 for c in doc["checks"])
    xr_meta = next(w for w in doc["meta"]["workloads"] if w["key"] == "xarray")
    assert xr_meta["array"] == "field"


def test_quick_bench_has_every_figure_of_every_workload(bench) -> None:
    _, doc, _ = bench
    shared = (
        "cpu-decode-all",
        "cpu-decode-1",
        "cpu-encode-all",
        "peer-cpu-wall",
        "peer-cpu-compute",
    )
    for key in shared:
        assert set(figures(doc, key)) == set(OWN), key
    own = ("pipeline-compute", "pipeline-wall", "pipeline-fixed", "pipeline-e2e-compute")
    for key in (*own, "storage-read", "storage-write"):  # a raw output is stored larger
        assert set(figures(doc, key)) == set(WORKLOADS), key
    for key in ("cpu-backend-e2e-compute", "cpu-backend-wall", "cpu-backend-fixed"):
        assert set(figures(doc, key)) == {"v2-blosc", "v3-zstd"}, key
    for key in ("cpu-zstd-encode", "cpu-zstd-decode", "storage-read-files", "storage-write-files"):
        assert set(figures(doc, key)) == {""}, key
    for f in doc["figures"]:
        assert f["values"] and all(v > 0 for v in f["values"]), f
    reps = doc["meta"]["reps"]
    assert all(len(f["values"]) == reps for f in figures(doc, "pipeline-compute").values())


def test_quick_bench_rows_say_what_the_table_shows(bench) -> None:
    _, doc, _ = bench
    rows = {r["key"]: r for r in doc["meta"]["rows"]}
    assert set(rows) == set(WORKLOADS)
    for r in rows.values():
        assert r["backend"] == "cpu"
        for k in (
            "compute_median",
            "of_ceiling",
            "wall_s",
            "fixed_s",
            "peer_wall_s",
            "speedup_e2e",
        ):
            assert r[k] is not None and r[k] > 0, (r["key"], k)
        assert r["lowest_ceiling"]["key"] in (
            "cpu-decode-all",
            "cpu-encode-all",
            "storage-read",
            "storage-write",
        )
        assert r["naive_gbps"] is None  # no GPU
        assert ("cpu_backend" in r) == (r["key"] in ("v2-blosc", "v3-zstd"))
    assert any(t["target"].startswith("outputs equal NumPy") and t["met"] for t in doc["targets"])
    # a -raw workload: the other's input and peer; its output's noise stored as raw blocks
    meta = {w["key"]: w for w in doc["meta"]["workloads"]}
    for key, of in RAW.items():
        raw, packed = meta[key], meta[of]
        assert raw["store"] == packed["store"] and raw["shares"] == of
        assert raw["output_stored_bytes"] > raw["output_bytes"] > packed["output_stored_bytes"]
        assert rows[key]["peer_wall_s"] == rows[of]["peer_wall_s"]


def test_quick_bench_skips_the_gpu_parts_visibly(bench) -> None:
    out, doc, stdout = bench
    skipped = " ".join(s["what"] for s in doc["skipped"])
    assert "naive dask-cuda" in skipped and "GPU ceilings" in skipped
    assert all(f"GPU zstd ceilings of {w}" in skipped for w in OWN)
    assert "skipped: naive dask-cuda peer" in stdout
    md = (out / "bench.md").read_text()
    assert "skipped: naive dask-cuda peer" in md
    # toy sizes said so above the first table, whose rates are a run's fixed cost
    assert md.index("Toy sizes (`--quick`): inputs of a few MB") < md.index("| workload |")
    for w in doc["meta"]["workloads"]:
        assert f"| {w['title']} |" in md
    assert doc["meta"]["versions"]["dask"] != "absent"
    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the short table comes last, before the lines naming what was skipped and written
    last = stdout.strip().splitlines()
    assert last[-1].startswith(f"wrote {out}/bench.")


def test_bench_renders_again_from_its_json(bench, tmp_path) -> None:
    _, doc, _ = bench
    src = tmp_path / "old.json"
    src.write_text(json.dumps(doc))
    from benchmarks import bench as module

    assert module.main(["--from-json", str(src), "--out", str(tmp_path / "again")]) == 0
    assert (tmp_path / "again" / "bench.md").read_text().startswith("# `make bench`")


def test_quick_scaling_runs_every_workload_and_device_count(tmp_path) -> None:
    """`benchmarks.scaling --quick`: CPU workers stand in for GPUs; every point is measured,
    outputs are checked against NumPy inside the run, and both workers take part."""
    out = tmp_path / "scaling"
    quick("scaling", out)
    doc = json.loads((out / "scaling.json").read_text())
    seen = {(p["workload"], p["scaling"], p["devices"]) for p in doc["points"]}
    for workload in ("Zarr on /dev/shm", "host memory in and out"):
        for scaling in ("strong", "weak"):
            assert {(workload, scaling, 1), (workload, scaling, 2)} <= seen
    assert ("Zarr on /dev/shm", "joined", 2) in seen
    for p in doc["points"]:
        assert p["gbps"] and all(g > 0 for g in p["gbps"]), p
        if p["workload"] == "Zarr on /dev/shm":  # every worker computed blocks
            assert len(p["blocks_per_worker"]) == p["devices"], p
            assert all(b > 0 for b in p["blocks_per_worker"]), p
        if p["devices"] == 1:
            assert p["efficiency"] == 1.0
    md = (out / "scaling.md").read_text()
    assert "| Zarr on /dev/shm | joined | 2 |" in md


def test_quick_sweep_measures_every_block_size_and_thread_count(tmp_path) -> None:
    """`benchmarks.sweep --quick`: every (block, threads) pair is run (outputs checked against
    NumPy inside the run); the in-memory workload at the first thread count."""
    out = tmp_path / "sweep"
    quick("sweep", out)
    rows = json.loads((out / "sweep.json").read_text())["rows"]
    assert {(r["block_mib"], r["threads"]) for r in rows} == {
        (b, t) for b in (0.5, 0.25) for t in (2, 1)
    }
    for r in rows:
        assert r["shm_gbps"] and all(g > 0 for g in r["shm_gbps"]), r
        assert r["blocks"] > 1 and r["timeline"]["occupancy"] > 0, r
        assert bool(r.get("memory_gbps")) == (r["threads"] == 2), r
    assert "| 0.5 MiB | 2 |" in (out / "sweep.md").read_text()


# --------------------------------------------------------------------------------------------
# The output checker, on stores zarr-python writes.

VALUES = np.random.default_rng(7).standard_normal((10, 30, 20)).astype("f4")
LAYOUTS = {
    "v2 blosc": dict(
        chunks=(4, 30, 20),
        zarr_format=2,
        compressors=numcodecs.Blosc(cname="lz4", clevel=5, shuffle=numcodecs.Blosc.SHUFFLE),
    ),
    "v2 F order, zstd": dict(
        chunks=(3, 7, 20), zarr_format=2, order="F", compressors=numcodecs.Zstd()
    ),
    "v3 default": dict(chunks=(4, 7, 20)),
    "v3 sharded, big-endian gzip": dict(
        chunks=(1, 7, 20), shards=(2, 14, 20), dtype=">f4", compressors=[GzipCodec()]
    ),
    "v3 blosc": dict(chunks=(5, 30, 10), compressors=[BloscCodec(cname="zstd")]),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_reader_reads_what_zarr_wrote(tmp_path, layout) -> None:
    kw = {"dtype": "f4"} | LAYOUTS[layout]
    zarr.create_array(str(tmp_path / "a.zarr"), shape=VALUES.shape, **kw)[...] = VALUES
    a = rawzarr.open_array(tmp_path / "a.zarr")
    got = a.read((0, 0, 0), VALUES.shape)
    assert got.dtype == np.dtype("f4") and np.array_equal(got.view("u4"), VALUES.view("u4"))
    assert a.stored_bytes() > 0


def _output(path: Path, values: np.ndarray, **kw: Any) -> None:
    z = zarr.create_array(
        str(path), shape=values.shape, dtype=values.dtype, compressors=ZstdCodec(level=1), **kw
    )
    z[...] = values


def test_check_passes_the_exact_result_and_counts_each_wrong_element(tmp_path) -> None:
    zarr.create_array(
        str(tmp_path / "in.zarr"), shape=VALUES.shape, chunks=(4, 30, 20), dtype="f4"
    )[...] = VALUES
    want = reference(VALUES)
    _output(tmp_path / "ok.zarr", want, chunks=(1, 30, 20), shards=(5, 30, 20))
    c = require(check_output(tmp_path / "in.zarr", tmp_path / "ok.zarr"))
    assert c.elements == VALUES.size and c.differ == 0
    bad = want.copy()
    bad[3, 4, 5] = np.nextafter(bad[3, 4, 5], np.float32(np.inf))  # one ulp
    bad[9, 29, 19] = -bad[9, 29, 19]
    _output(tmp_path / "bad.zarr", bad, chunks=(4, 30, 20))
    c = check_output(tmp_path / "in.zarr", tmp_path / "bad.zarr")
    assert not c.ok and c.differ == 2
    with pytest.raises(AssertionError):
        require(c)


def test_check_fails_an_output_with_unwritten_chunks(tmp_path) -> None:
    """A chunk never written reads as the fill value: not NumPy's result."""
    zarr.create_array(
        str(tmp_path / "in.zarr"), shape=VALUES.shape, chunks=(5, 30, 20), dtype="f4"
    )[...] = VALUES
    z = zarr.create_array(
        str(tmp_path / "out.zarr"), shape=VALUES.shape, chunks=(5, 30, 20), dtype="f4", fill_value=0
    )
    z[:5] = reference(VALUES[:5])
    c = check_output(tmp_path / "in.zarr", tmp_path / "out.zarr")
    assert c.differ == 5 * 30 * 20


def test_check_compares_a_prefix_and_refuses_other_shapes(tmp_path) -> None:
    """A peer run on the first rows is compared there; another shape or dtype is a problem."""
    zarr.create_array(
        str(tmp_path / "in.zarr"), shape=VALUES.shape, chunks=(2, 30, 20), dtype="f4"
    )[...] = VALUES
    _output(tmp_path / "part.zarr", reference(VALUES[:4]), chunks=(2, 30, 20))
    assert require(check_output(tmp_path / "in.zarr", tmp_path / "part.zarr")).elements == 4 * 600
    _output(tmp_path / "wide.zarr", np.zeros((4, 30, 21), "f4"), chunks=(2, 30, 21))
    _output(tmp_path / "f8.zarr", reference(VALUES).astype("f8"), chunks=(2, 30, 20))
    for name in ("wide.zarr", "f8.zarr"):
        c = check_output(tmp_path / "in.zarr", tmp_path / name)
        assert c.problem and not c.ok


@pytest.mark.parametrize("option", ["--reps", "--cold-reps"])
@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_bench_refuses_a_count_of_repetitions_below_one(option, value, capsys) -> None:
    """A median of no runs is no figure: the option is refused before anything runs."""
    from benchmarks import bench

    with pytest.raises(SystemExit) as stop:
        bench.parse_args([option, value])
    assert stop.value.code == 2
    assert option in capsys.readouterr().err
    assert bench.parse_args([option, "1"]).__dict__[option[2:].replace("-", "_")] == 1


def test_packages_without_bytecode_are_named(tmp_path, monkeypatch) -> None:
    """A package installed without bytecode (``pip install --no-compile``) where Python writes
    none is named, so the bench says its cold runs compiled it; once compiled, it is not."""
    import compileall
    import importlib
    import sys

    from benchmarks import machine

    pkg = tmp_path / "pkg_without_bytecode"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    assert machine.without_bytecode(("pkg_without_bytecode", "json")) == ["pkg_without_bytecode"]
    assert compileall.compile_dir(str(pkg), quiet=1)
    assert machine.without_bytecode(("pkg_without_bytecode",)) == []
    monkeypatch.setattr(sys, "dont_write_bytecode", False)  # the first import writes it
    (pkg / "__pycache__").rename(tmp_path / "moved")
    assert machine.without_bytecode(("pkg_without_bytecode",)) == []


def test_cold_runs_import_the_checkouts_bytecode(monkeypatch) -> None:
    """Before a cold ``pipeline run`` the bench writes the bytecode of the checkout's package, as
    ``pip install`` writes an installed one's: where Python writes none
    (``PYTHONDONTWRITEBYTECODE``, as the GPU host sets it) every cold run had compiled every
    module of the pipeline again; and where it cannot be written the bench names the package."""
    import importlib.util

    from benchmarks import machine, pipelines

    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    package = pipelines.ROOT / "pipeline"
    Path(importlib.util.cache_from_source(str(package / "_version.py"))).unlink(missing_ok=True)
    pipelines.checkout_bytecode.cache_clear()
    assert pipelines.checkout_bytecode()
    sources = sorted(package.rglob("*.py"))
    assert sources
    missing = [s for s in sources if not Path(importlib.util.cache_from_source(str(s))).is_file()]
    assert missing == []
    assert machine.IMPORTED[0] == "pipeline"
    assert "pipeline" not in machine.without_bytecode()


def _benchmark(module: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python -m benchmarks.MODULE ARGS`` from ``cwd``, this checkout on PYTHONPATH."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return subprocess.run(
        [sys.executable, "-m", f"benchmarks.{module}", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": path},
    )


@pytest.mark.parametrize(
    ("module", "args"),
    [
        ("bench", ["--shm"]),
        ("bench", ["--quick", "--shm"]),
        ("bench", ["--with", "disk", "--disk"]),
        ("scaling", ["--shm"]),
        ("sweep", ["--shm"]),
        ("sweep", ["--quick", "--shm"]),
    ],
)
def test_benchmarks_never_empty_a_directory_of_the_users(tmp_path, module, args) -> None:
    """A benchmark empties its scratch directory before a run and removes it after: one named
    that holds files no benchmark wrote (``--shm /dev/shm``, a folder of yours) is refused in
    one line naming the option and a directory to name instead, its files left as they were.
    `sweep --shm DIR` had deleted DIR on any host, before it found no GPU; `bench` and
    `scaling` would have on the GPU host."""
    mine = tmp_path / "my files"
    mine.mkdir()
    (mine / "thesis.txt").write_text("years of work")
    option = args[-1]
    proc = _benchmark(module, *args, str(mine), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert proc.returncode not in (0, None)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert lines[0].startswith(f"{module}: {option} {mine} holds files no benchmark wrote")
    assert str(mine / "pipeline-bench") in lines[0]
    assert (mine / "thesis.txt").read_text() == "years of work"


def test_a_benchmarks_scratch_directory_is_emptied_for_the_next_run(tmp_path) -> None:
    """A directory a benchmark made (marked) is emptied for the next run, one an interrupted
    run left full too; a new or empty one is taken; a file is refused."""
    from benchmarks import data

    root = tmp_path / "shm" / "pipeline-bench"
    assert data.scratch(root, "bench: --shm") == root
    (root / "input.zarr").mkdir()  # an interrupted run's input
    data.scratch(root, "bench: --shm")
    assert sorted(p.name for p in root.iterdir()) == [data.SCRATCH_MARK]
    empty = tmp_path / "empty"
    empty.mkdir()
    data.scratch(empty, "bench: --shm")
    (tmp_path / "a file").write_text("x")
    with pytest.raises(SystemExit, match="is a file, not a directory"):
        data.scratch(tmp_path / "a file", "bench: --shm")


@pytest.mark.parametrize(
    ("module", "args", "said"),
    [
        ("bench", ["--size-gb", "nan"], "argument --size-gb: nan: a number of GB above 0"),
        ("bench", ["--size-gb", "-1"], "argument --size-gb: -1: a number of GB above 0"),
        ("bench", ["--peer-gb", "0"], "argument --peer-gb: 0: a number of GB above 0"),
        ("bench", ["--peer-workers", "0"], "argument --peer-workers: 0: at least 1"),
        ("bench", ["--peer-threads", "-2"], "argument --peer-threads: -2: at least 1"),
        ("bench", ["--also", "2x4,foo"], "argument --also: 'foo': each a WxT of whole numbers"),
        ("bench", ["--also", "0x4"], "argument --also: '0x4': each a WxT of whole numbers"),
        ("scaling", ["--size-gb", "inf"], "argument --size-gb: inf: a number of GB above 0"),
        ("scaling", ["--devices", "1,two"], "argument --devices: 'two': not a whole number"),
        ("scaling", ["--threads", "0"], "argument --threads: 0: at least 1"),
        ("sweep", ["--planes", "0"], "argument --planes: 0: at least 1"),
        ("sweep", ["--reps", "-1"], "argument --reps: -1: at least 1"),
        ("bench", ["--workloads", "v2-blosc,foo"], "argument --workloads: foo: choose from v2-"),
        ("bench", ["--skip", "peer"], "argument --skip: peer: choose from ceilings,e2e,"),
        ("bench", ["--with", "gpu"], "argument --with: gpu: choose from memory,device,disk"),
        ("scaling", ["--workloads", "shm,foo"], "argument --workloads: foo: choose from"),
        ("sweep", ["--workloads", "foo"], "argument --workloads: foo: choose from shm,memory"),
        ("bench", ["--workloads", ""], "argument --workloads: '' names none: choose from v2-"),
        ("scaling", ["--workloads", ","], "argument --workloads: ',' names none: choose from"),
        ("sweep", ["--workloads", " "], "argument --workloads: ' ' names none: choose from shm"),
    ],
)
def test_benchmarks_refuse_a_value_no_run_could_measure(module, args, said, capsys) -> None:
    """A size of NaN, 0 or fewer GB, no workers or threads, a WxT that is none: refused under
    the usage (status 2), before anything runs; they had reached ``round(nan)`` on the GPU
    host, run the smallest input silently, or (``--also foo``) failed after every section."""
    import importlib

    main = importlib.import_module(f"benchmarks.{module}")
    parse = getattr(main, "parse_args", None) or main.main
    with pytest.raises(SystemExit) as stop:
        parse(args)
    assert stop.value.code == 2
    assert said in capsys.readouterr().err


def test_bench_takes_its_settings_as_written() -> None:
    from benchmarks import bench

    args = bench.parse_args(["--also", "2x4, 1X8", "--size-gb", "0.5", "--peer-workers", "3"])
    assert (args.also, args.size_gb, args.peer_workers) == (["2x4", "1x8"], 0.5, 3)
    args = bench.parse_args(["--skip", "", "--with", ""])  # no section skipped, none added
    assert (args.skip, args.extras) == (set(), set())


def test_bench_from_json_says_what_it_cannot_render(tmp_path) -> None:
    """``--from-json`` of a missing file, of text that is no JSON, of JSON that no run wrote: one
    line naming the file and what to name (they had been tracebacks)."""
    from benchmarks import bench

    (tmp_path / "notes.txt").write_text("no json")
    (tmp_path / "other.json").write_text('{"a": 1}')
    for name, why in [
        ("missing.json", "No such file or directory"),
        ("notes.txt", "not JSON"),
        ("other.json", "not the results of a run"),
    ]:
        with pytest.raises(SystemExit) as stop:
            bench.main(["--from-json", str(tmp_path / name), "--out", str(tmp_path / "out")])
        assert str(stop.value).startswith(f"bench: --from-json {tmp_path / name}: {why}")
        assert str(stop.value).endswith("; name a bench.json that a run wrote")


@pytest.mark.parametrize("target", ["bench", "bench-seed", "bench-scaling", "bench-sweep"])
def test_make_bench_without_a_gpu_names_the_quick_mode_as_make_takes_it(target) -> None:
    """`make bench` on a host without a GPU says, in one line, how to run the CPU mode as make
    takes it: `make bench BENCH_ARGS=--quick` (`make bench --quick` is an option of make's, and
    `use --quick` had been all it said)."""
    from benchmarks import machine

    if machine.gpu_status()[0] or machine.gpu_count():
        pytest.skip("this host has a GPU: the full benchmarks run")
    proc = subprocess.run(
        ["make", "-s", target, f"PYTHON={sys.executable}"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.splitlines() if not ln.startswith("make")]
    assert len(lines) == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    name = target.removeprefix("bench-") if "-" in target else "bench"
    assert lines[0].startswith(f"{name}: the full benchmark needs a GPU (")
    assert lines[0].endswith(f"; use `make {target} BENCH_ARGS=--quick`")


def test_bench_that_measured_no_rate_still_reports(tmp_path) -> None:
    """`--skip` of every section that measures a rate: the tables, the JSON and a chart that
    says so are written and the run exits 0 (a log scale of no bars had raised in matplotlib,
    after the tables, and failed the run with a traceback)."""
    out = tmp_path / "out"
    proc = _benchmark(
        "bench",
        "--quick",
        "--workloads",
        "v3-zstd",
        "--skip",
        "ceilings,e2e,cpu,peers,warm,naive",
        "--out",
        str(out),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert (out / "bench.png").stat().st_size > 0
    md = (out / "bench.md").read_text()
    assert "Output checks: none ran." in md
    # the empty tables say why (they had said nothing)
    assert "No CPU backend run: --skip cpu." in md
    assert "No figure: --skip ceilings,cpu,e2e,naive,peers,warm left out every section." in md


@pytest.mark.parametrize("module", ["bench", "seed", "scaling", "sweep"])
def test_benchmarks_refuse_a_file_as_their_out_directory(tmp_path, module, capsys) -> None:
    """``--out`` naming a file: refused under the usage before anything runs (a
    FileExistsError traceback at the first figure, or, for scaling and sweep, at the end)."""
    import importlib

    (tmp_path / "results").write_text("mine")
    main = importlib.import_module(f"benchmarks.{module}")
    parse = getattr(main, "parse_args", None) or main.main
    with pytest.raises(SystemExit) as stop:
        parse(["--out", str(tmp_path / "results")])
    assert stop.value.code == 2
    said = f"argument --out: {tmp_path / 'results'}: a file, not a directory: name a directory"
    assert said in capsys.readouterr().err
    assert (tmp_path / "results").read_text() == "mine"


def test_quick_scaling_that_measured_nothing_still_writes_its_table(tmp_path) -> None:
    """`scaling --quick --workloads ceilings` (the GPU's ceilings, skipped without one): its
    Markdown is written, the results' directory made for it (a FileNotFoundError had ended it,
    the directory made only with a measured point)."""
    out = tmp_path / "out"
    proc = _benchmark(
        "scaling", "--quick", "--workloads", "ceilings", "--out", str(out), cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    md = (out / "scaling.md").read_text()
    assert "| workload | scaling |" in md
    # it says why no row (it had said nothing)
    assert "- no point was measured: pinned-copy ceilings skipped (--quick: " in md


#: Quick runs of each benchmark that measure little: seconds each.
BRIEF = {
    "bench": ["--workloads", "v3-zstd", "--skip", "ceilings,e2e,cpu,peers,warm,naive"],
    "sweep": ["--workloads", "memory", "--planes", "8", "--threads", "1"],
    "scaling": ["--workloads", "ceilings"],
}


@pytest.mark.parametrize("module", sorted(BRIEF))
def test_quick_benchmarks_write_where_shm_says_and_remove_only_what_they_made(
    tmp_path, module
) -> None:
    """``--quick --shm DIR`` writes its inputs in DIR (it had made a temporary directory of its
    own, ignoring DIR); after the run an empty DIR of the user's, there before, is left, empty
    (it had been removed), and one the benchmark made is removed."""
    for name, existed in (("my empty folder", True), ("made by the benchmark", False)):
        shm = tmp_path / name
        if existed:
            shm.mkdir()
        out = tmp_path / f"out-{existed}"
        proc = _benchmark(
            module, "--quick", *BRIEF[module], "--shm", str(shm), "--out", str(out), cwd=tmp_path
        )
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        meta = json.loads((out / f"{module}.json").read_text())["meta"]
        assert meta["shm"] == str(shm)
        if module == "bench":
            assert [w["store"] for w in meta["workloads"]] == [str(shm / "v3-zstd.zarr")]
        if existed:
            assert shm.is_dir() and list(shm.iterdir()) == []
        else:
            assert not shm.exists()


def test_a_scratch_directory_of_the_users_is_emptied_never_removed(tmp_path) -> None:
    """An empty directory named as ``--shm`` is the user's: released, its contents go and it
    stays, an interrupted run's too; one a benchmark made goes; one with no mark is left."""
    from benchmarks import data

    mine = tmp_path / "mine"
    mine.mkdir()
    data.scratch(mine, "bench: --shm")
    (mine / "input.zarr").mkdir()
    data.scratch(mine, "bench: --shm")  # a run after an interrupted one: still the user's
    (mine / "input.zarr").mkdir()
    (mine / "input.zarr" / "c").write_text("x")
    data.release(mine)
    assert mine.is_dir() and list(mine.iterdir()) == []
    made = data.scratch(tmp_path / "made", "bench: --shm")
    data.release(made)
    assert not made.exists()
    temporary = data.temporary("pipeline-test-")
    data.release(temporary)
    assert not temporary.exists()
    unmarked = tmp_path / "unmarked"
    (unmarked / "thesis").mkdir(parents=True)
    data.release(unmarked)
    assert (unmarked / "thesis").is_dir()


@pytest.mark.parametrize(
    ("module", "args", "said"),
    [
        (
            "bench",
            ["--disk", "/var/tmp/elsewhere"],
            "argument --disk: the directory of --with disk, which this run does not measure: "
            "add --with disk, or leave --disk out",
        ),
        ("bench", ["--quick", "--size-gb", "1e30"], "argument --size-gb: --quick runs toy"),
        ("sweep", ["--quick", "--size-gb", "1e30"], "argument --size-gb: --quick runs toy"),
        ("scaling", ["--quick", "--size-gb", "1e30"], "argument --size-gb: --quick runs toy"),
        ("scaling", ["--quick", "--per-gpu-gb", "2"], "argument --per-gpu-gb: --quick runs toy"),
    ],
)
def test_benchmarks_refuse_an_option_their_run_would_ignore(module, args, said, capsys) -> None:
    """``--disk`` without ``--with disk``, a size with ``--quick`` (whose toy inputs have sizes
    of their own): refused under the usage before anything runs; they had been ignored, the
    size replaced by the toy one silently."""
    import importlib

    main = importlib.import_module(f"benchmarks.{module}")
    parse = getattr(main, "parse_args", None) or main.main
    with pytest.raises(SystemExit) as stop:
        parse(args)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert said in err and "leave" in err
    if module == "bench":  # the size without --quick, --disk with --with disk: taken
        assert main.parse_args(["--size-gb", "1"]).size_gb == 1.0
        taken = main.parse_args(["--with", "disk", "--disk", "/var/tmp/elsewhere"])
        assert taken.disk == Path("/var/tmp/elsewhere")


def test_quick_bench_keeps_the_counts_it_is_given() -> None:
    """``--quick`` sets the repetitions left out; ones given are kept (``--reps 5`` had run 2,
    ``--cold-reps 3`` one, silently)."""
    from benchmarks import bench

    args = bench.parse_args(["--quick", "--reps", "5", "--cold-reps", "3"])
    assert (args.reps, args.cold_reps, args.size_gb) == (5, 3, bench.QUICK_GB)
    args = bench.parse_args(["--quick"])
    assert (args.reps, args.cold_reps, args.peer_workers) == (2, 1, 1)
    args = bench.parse_args([])
    assert (args.reps, args.cold_reps, args.size_gb, args.shm) == (3, 3, 8.0, bench.SHM)


def test_sweep_measures_only_the_workloads_asked_for(tmp_path) -> None:
    """``sweep --workloads memory``: host memory alone, at the first thread count, the threads
    it skips said; the shm workload had been measured whatever ``--workloads`` named."""
    out = tmp_path / "out"
    proc = _benchmark(
        "sweep",
        "--quick",
        "--workloads",
        "memory",
        "--planes",
        "8",
        "--threads",
        "2,1",
        "--out",
        str(out),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = json.loads((out / "sweep.json").read_text())["rows"]
    assert [(r["block_mib"], r["threads"]) for r in rows] == [(0.5, 2)]
    assert "shm_gbps" not in rows[0] and "timeline" not in rows[0]
    assert rows[0]["memory_gbps"] and all(g > 0 for g in rows[0]["memory_gbps"])
    assert "skipped: threads 1 (host memory is measured at the first --threads only" in proc.stdout
    assert "| 0.5 MiB | 2 | - |" in (out / "sweep.md").read_text()
