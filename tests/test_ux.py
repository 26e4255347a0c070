"""What Dask and Zarr users expect around a run: progress, dashboard, reports, plans, logging."""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest

from pipeline.reporting.progress import Progress
from tests.conftest import generated_config, make_array, record_of, reference, write_config

ROOT = Path(__file__).resolve().parents[1]


#: A rate as the pipeline says it: three significant figures in the decimal unit that holds
#: it between 1 and 1000 (:func:`pipeline.reporting.progress.rate_said`), or 0 B/s.
RATE = r"(?:(?:\d\.\d\d|\d\d\.\d|\d\d\d) [kMGT]?B/s|0 B/s)"


@pytest.fixture
def small(tmp_path: Path) -> tuple[np.ndarray, Path]:
    """A 12-block float32 input and a config that runs it on 2 local worker processes."""
    x = np.random.default_rng(0).standard_normal((48, 64, 16)).astype(np.float32)
    make_array(tmp_path / "in.zarr", x, (4, 64, 16))
    return x, _config(tmp_path)


def _config(tmp_path: Path, **sections: Any) -> Path:
    """The config of the ``small`` input: blocks of one stored chunk (16 KiB) each."""
    sections.setdefault("chunking", {"target_bytes": 16 << 10})
    return write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr", **sections)


def test_plain_progress_prints_at_a_steady_interval() -> None:
    out = io.StringIO()
    with Progress(4, 2e6, mode="plain", interval=0.02, stream=out) as p:
        time.sleep(0.15)  # no block finishes, yet lines keep coming
        p.advance(3)
        time.sleep(0.05)
        p.advance()
    lines = out.getvalue().splitlines()
    assert len(lines) >= 5, lines
    assert lines[0].startswith("[run] 0/4 blocks (0%), 0 B/s") and "eta ?" in lines[0]
    assert re.fullmatch(rf"\[run\] 4/4 blocks \(100%\), {RATE}, elapsed .*", lines[-1])
    assert any(line.startswith("[run] 3/4 blocks (75%)") and "eta" in line for line in lines)


def test_plain_progress_stops_at_the_last_block() -> None:
    """Once every block is done, the clock and the lines stop: the run's work after its last
    block (``--report``'s report fetched and saved: 1.5 s of a 0.1 s run on 2 cores) had
    printed a line every interval at 100%, its rate falling each time."""
    out = io.StringIO()
    with Progress(2, 1e6, mode="plain", interval=0.01, stream=out) as p:
        p.advance(2)
        rate = p.rate_text()
        time.sleep(0.5)  # a line being printed as the last block came is out by now
        lines = len(out.getvalue().splitlines())
        time.sleep(0.5)
        assert len(out.getvalue().splitlines()) == lines, out.getvalue()
        assert p.rate_text() == rate  # the rate of the blocks' time, not of the time since
    last = out.getvalue().splitlines()[-1]
    assert last.startswith(f"[run] 2/2 blocks (100%), {rate}"), last


def test_the_reports_save_is_no_part_of_the_compute_phase(
    tmp_path, cli, small, monkeypatch
) -> None:
    """The compute phase, whose throughput the summary gives, ends with the last block's
    result: Dask's performance report, fetched from the scheduler and saved after it, is
    the finish phase's. It had been counted in the compute phase (0.01 GB/s against 0.11
    without ``--report`` in a run of 4 blocks on 2 cores)."""
    pytest.importorskip("bokeh")
    from distributed import performance_report

    _, cfg = small
    saves: list[float] = []
    save = performance_report.__exit__

    def timed(self: Any, *exc: Any) -> Any:  # the real save, its seconds noted
        t = time.perf_counter()
        try:
            time.sleep(0.5)  # a long run's report: its phase is plain against the rest
            return save(self, *exc)
        finally:
            saves.append(time.perf_counter() - t)

    monkeypatch.setattr(performance_report, "__exit__", timed)
    summary_path = tmp_path / "summary.json"
    argv = ("run", cfg, "--report", tmp_path / "r.html", "--summary-json", summary_path)
    rc, _, err = cli(*argv, "--progress", "none")
    assert rc == 0, err
    assert len(saves) == 1 and (tmp_path / "r.html").exists()
    seconds = json.loads(summary_path.read_text())["seconds"]
    assert seconds["finish"] >= saves[0], (seconds, saves)


def test_bar_mode_draws_blocks_and_rate() -> None:
    out = io.StringIO()
    with Progress(3, 1e9, mode="bar", stream=out) as p:
        for _ in range(3):
            p.advance()
    assert re.search(rf"3/3 blocks\s+{RATE}", out.getvalue()), out.getvalue()


def test_run_prints_dashboard_then_plain_progress(tmp_path, cli, small) -> None:
    assert small  # the input exists
    cfg = _config(tmp_path, cluster={"dashboard": ":0"})
    rc, out, err = cli("run", cfg, "--progress", "plain", "--progress-interval", "0.01")
    assert rc == 0, err
    lines = err.splitlines()
    assert re.fullmatch(r"dashboard: http://\S+:\d+/status", lines[0]), err
    progress = [line for line in lines if line.startswith("[run] ")]
    assert progress and progress[-1].startswith("[run] 12/12 blocks (100%)"), err
    assert all(re.search(rf"blocks \(\d+%\), {RATE},", line) for line in progress), progress
    # not in the summary, printed once the run's cluster, and its dashboard, are closed: the
    # link is dead by then (h79b); a joined scheduler's, still serving, is (test_scheduler)
    assert not re.search(r"^\s*dashboard\s", out, re.M), out
    assert re.search(rf"throughput +{RATE} of input \(compute phase\)", out), out


def test_info_names_the_extras_libraries(cli) -> None:
    """``pipeline info`` (and a summary's ``versions``) shows the versions of the extras' libraries
    too, or that they are absent: whether a Dataset output (xarray), an s3:// store (s3fs) or an
    http(s):// one (aiohttp) can be used had not been shown (h81a)."""
    import importlib.metadata

    from pipeline.reporting.info import versions

    rc, out, err = cli("info")
    assert rc == 0, err
    for lib in ("xarray", "s3fs", "aiohttp"):
        version = importlib.metadata.version(lib)  # the dev extra installs them
        assert re.search(rf"^  {lib} +{re.escape(version)}$", out, re.M), out
        assert versions()[lib] == version


def test_report_and_summary_json(tmp_path, cli, small) -> None:
    pytest.importorskip("bokeh")  # a dependency; absent only in hand-made environments
    x, cfg = small
    report, summary_path = tmp_path / "report.html", tmp_path / "summary.json"
    rc, _, err = cli("run", cfg, "--report", report, "--summary-json", summary_path)
    assert rc == 0, err
    html = report.read_text()
    assert html.lstrip().startswith("<!DOCTYPE html>") and "Dask Performance Report" in html
    assert "bokeh" in html.lower()
    s = json.loads(summary_path.read_text())
    assert s["status"] == "complete"
    assert s["config"]["stages"][0] == {"op": "multiply", "factor": 5}
    assert s["config"]["input"]["store"] == str(tmp_path / "in.zarr")
    assert {"python", "pipeline", "dask", "distributed", "zarr", "numpy"} <= set(s["versions"])
    hw = s["hardware"]
    assert hw["cpus"] >= 1 and hw["host_memory_bytes"] > 0 and hw["hostname"]
    # called in a process started for something else: its age is not the run's start
    assert set(s["seconds"]) == {
        "plan",
        "cluster",
        "prepare",
        "compute",
        "finish",
        "close",
        "total",
    }
    assert all(v >= 0 for v in s["seconds"].values())
    assert s["seconds"]["total"] >= s["seconds"]["compute"] > 0
    assert s["bytes_in"] == s["bytes_out"] == x.nbytes
    assert s["stored_bytes_read"] > 0 and s["stored_bytes_written"] > 0
    assert s["gbps_in"] > 0
    assert s["peak_host_bytes"] > 0 and s["peak_device_bytes"] is None
    assert s["blocks_done"] == s["blocks_total"] == 12
    assert s["backend"] == "cpu" and s["workers"] == 2


@pytest.mark.parametrize("flag", ["--summary-json", "--report"])
def test_a_report_file_that_cannot_be_written_is_refused_before_the_output_is_touched(
    tmp_path, cli, small, flag
) -> None:
    """Found out after the run, it had left the output incomplete (``--report``) or the
    command failing on a complete output (``--summary-json``)."""
    _, cfg = small
    out = tmp_path / "out.zarr"
    rc, _, err = cli("run", cfg, flag, tmp_path / "absent" / "r.out")
    assert rc != 0 and not out.exists(), err
    assert len(err.strip().splitlines()) == 1 and flag in err, err


@pytest.mark.parametrize("command", ["run", "generate"])  # generate had none (helper-40)
@pytest.mark.parametrize("seconds", ["-1", "0", "nan", "soon", "inf", "1e-300", "0.009"])
def test_a_progress_interval_of_no_seconds_is_refused(tmp_path, small, seconds, command) -> None:
    """Below 0.01 s (1e-300 had been taken), no progress loop prints that often: refused with
    the rule of ``pipeline.run``'s ``interval`` (tests/test_api.py); 0.01 itself is taken
    (``test_run_prints_dashboard_then_plain_progress``)."""
    _, cfg = small
    p = subprocess.run(
        [sys.executable, "-m", "pipeline", command, "--progress-interval", seconds, str(cfg)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 2 and "--progress-interval" in p.stderr, p.stderr
    assert "of at least 0.01" in p.stderr.splitlines()[-1], p.stderr
    assert "Traceback" not in p.stderr and not (tmp_path / "out.zarr").exists()


PLAN_ITEMS = ("input", "output", "output now", "stages", "backend", "workers", "chunking")


@pytest.mark.parametrize("how", ["plan", "dry-run", "dry-run-report"])
def test_plan_and_dry_run_compute_and_write_nothing(tmp_path, cli, how) -> None:
    """``plan`` and ``run --dry-run`` say what a run would do, and do nothing: this small CPU
    run's tasks are threads of the run's process, except where a performance report (which
    is Dask's distributed's) asks for a local cluster."""
    cfg = generated_config(
        tmp_path,
        {"shape": [40, 30], "chunks": [5, 30], "shards": [10, 30], "when_missing": True},
    )
    args = {
        "plan": ("plan", cfg),
        "dry-run": ("run", cfg, "--dry-run"),
        "dry-run-report": ("run", cfg, "--dry-run", "--report", tmp_path / "r.html"),
    }[how]
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    rc, out, err = cli(*args)
    assert rc == 0, err
    started = {p.pid for p in psutil.Process().children(recursive=True)} - before
    assert not started  # no cluster is started
    assert not (tmp_path / "in.zarr").exists() and not (tmp_path / "out.zarr").exists()
    assert "nothing computed" in out
    rows = dict(re.findall(r"^  (\S+(?: \S+)?)\s{2,}(.*)$", out, re.M))
    assert set(PLAN_ITEMS) <= set(rows), out
    assert rows["input"].startswith(f"{tmp_path / 'in.zarr'}: [40, 30] float32, chunks [5, 30]")
    assert rows["output"].startswith(str(tmp_path / "out.zarr"))
    assert rows["output now"].startswith("absent")
    assert rows["stages"] == (
        "multiply(factor=5) float32 -> float32; square() float32 -> float32; "
        "add() float32 -> float32"
    )
    assert rows["backend"].startswith("cpu")
    assert rows["workers"] == (
        "local cluster: 2 worker(s) x 1 thread(s)"
        if how == "dry-run-report"
        else "2 thread(s) of this process (Dask's threaded scheduler, no cluster)"
    )
    assert re.match(r"\d+ task\(s\), one per block of \[\d+, 30\]", rows["chunking"])
    assert re.match(
        r".* per task; 1 in flight .* of the .* budget per worker \(fits\)", rows["host memory"]
    )
    assert "does not exist yet" in out  # the note: `run` would generate it


def test_generate_prints_plain_progress_lines_at_its_interval(tmp_path, cli) -> None:
    """``generate --progress plain --progress-interval 0.01`` (helper-40: generate had no
    interval): plain lines, the last of them all its units."""
    cfg = generated_config(tmp_path, {"shape": [40, 20], "chunks": [2, 20]})
    rc, _, err = cli("generate", cfg, "--progress", "plain", "--progress-interval", "0.01")
    assert rc == 0, err
    assert re.search(r"^\[generate\] (\d+)/\1 blocks \(100%\)", err, re.M), err


def test_generate_quiet_prints_no_progress(tmp_path) -> None:
    """``generate -q`` is as quiet as ``run -q``: no progress lines (helper-41), only the
    result on stdout."""
    cfg = generated_config(tmp_path, {"shape": [40, 20], "chunks": [2, 20]})
    r = _pipeline("-q", "generate", cfg, "--progress-interval", "0.01")
    assert r.returncode == 0, r.stderr
    assert r.stderr == "" and "[generate]" not in r.stdout, r.stderr
    assert "generated" in r.stdout


def test_plan_of_a_generated_input_matches_the_generated_layout(tmp_path, cli) -> None:
    cfg = generated_config(
        tmp_path,
        {"shape": [30, 20, 7], "chunks": [2, 20, 7], "shards": [10, 20, 7], "when_missing": True},
    )
    from pipeline import plan
    from pipeline.config import load_config

    before = plan(load_config(cfg))
    rc, _, err = cli("generate", cfg, "--progress", "none")
    assert rc == 0, err
    after = plan(load_config(cfg))
    assert before.input == after.input and before.block == after.block
    assert before.notes != after.notes  # only the "does not exist yet" note differs


def test_plan_says_what_run_would_do_with_an_existing_output(tmp_path, cli, small) -> None:
    _, cfg = small
    assert cli("run", cfg)[0] == 0
    rc, out, _ = cli("plan", cfg)
    assert rc == 0 and re.search(r"output now\s+complete: `run --overwrite` replaces it", out)


def _pipeline(*args: str | Path) -> subprocess.CompletedProcess:
    return _python("-m", "pipeline", *args)


def _python(*args: str | Path) -> subprocess.CompletedProcess:
    """A Python process of this checkout's package, run to its end."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.run(
        [sys.executable, *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_a_python_without_the_dependencies_is_one_line(tmp_path) -> None:
    """``make run PYTHON=python3`` with a Python that lacks numpy (this one without its
    site-packages, ``-S``) had ended in two tracebacks: the error handler imported the store
    layer, which imports numpy, again."""
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    make_array(tmp_path / "in.zarr", x, (3, 4))
    cfg = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # not a PYTHONPATH's own site (/tmp/site)
    for command in (("plan", cfg), ("run", cfg), ("verify", cfg), ("info",)):
        argv = [sys.executable, "-S", "-m", "pipeline", *map(str, command)]
        r = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
        assert r.returncode == 1, r.stderr
        assert r.stderr.startswith(f"error: this Python ({sys.executable}) has no module "), (
            r.stderr
        )
        assert "which the command needs" in r.stderr and "pip install -e ." in r.stderr
        assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "out.zarr").exists()


def test_a_module_of_the_users_in_a_librarys_place_is_named(tmp_path) -> None:
    """A ``zarr.py`` of the user's in the folder the command runs in takes zarr's place: the
    line names the module, the file it was imported from, and the fix. The input had been
    blamed ("holds metadata zarr-python cannot read: mend the value it names")."""
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    make_array(tmp_path / "in.zarr", x, (3, 4))
    cfg = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr")
    (tmp_path / "zarr.py").write_text("# a script of the user's\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for command in ("plan", "run"):
        argv = [sys.executable, "-m", "pipeline", command, str(cfg)]
        r = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
        assert r.returncode == 1, r.stderr
        said = f"error: {tmp_path / 'zarr.py'} takes the place of the module 'zarr' installed at "
        assert r.stderr.startswith(said), r.stderr
        assert r.stderr.endswith(": rename that file of yours\n"), r.stderr
        assert "metadata" not in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert not (tmp_path / "out.zarr").exists()


@pytest.mark.parametrize(
    "module",
    [
        "yaml",  # the library's AttributeError, said as any error (no file named)
        "numpy",
        "logging",  # imported before the command's handlers: a traceback
        "queue",  # zarr-python's error, taken for the input's metadata ("mend the value")
        "platform",  # pydantic's import failed: the line named pydantic's own file
    ],
)
def test_any_file_of_the_users_in_an_imported_modules_place_is_named(tmp_path, module) -> None:
    """A file of the user's named as a module the command imports, in the folder it runs in,
    takes that module's place: the line names the file, the module, and the fix, whatever
    failed of it and wherever (a library's AttributeError, an error before the command's
    handlers, a step's error blaming the input, another module's ImportError)."""
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    make_array(tmp_path / "in.zarr", x, (3, 4))
    cfg = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr")
    (tmp_path / f"{module}.py").write_text("# a script of the user's\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "pipeline", "run", str(cfg)]
    r = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert r.returncode == 1, r.stderr
    said = f"error: {tmp_path / module}.py takes the place of the module {module!r} installed at "
    assert r.stderr.startswith(said), r.stderr
    assert r.stderr.endswith(": rename that file of yours\n"), r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "out.zarr").exists()


def test_a_release_installed_into_a_pythonpath_folder_is_no_file_of_the_users(tmp_path) -> None:
    """A library's release installed into a folder on PYTHONPATH (``pip install --target``,
    with its ``*.dist-info``), ahead of the environment's own, is no file of the user's in the
    library's place: a command's error is its own line. Every error had been said as
    "``.../yaml/__init__.py`` takes the place of the module 'yaml' ...: rename that file of
    yours", a config not found too, the fix to rename a working install."""
    import importlib.metadata
    import shutil

    import yaml

    site = tmp_path / "site"
    shutil.copytree(Path(yaml.__file__).parent, site / "yaml")
    files = importlib.metadata.distribution("PyYAML").files or []
    record = next(Path(str(f.locate())) for f in files if f.name == "RECORD")
    shutil.copytree(record.parent, site / record.parent.name)  # its PyYAML-*.dist-info
    env = {**os.environ, "PYTHONPATH": os.pathsep.join((str(ROOT), str(site)))}
    argv = [sys.executable, "-m", "pipeline", "plan", str(tmp_path / "none.yaml")]
    r = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert r.returncode == 1, r.stderr
    assert r.stderr.startswith("error: config file not found: "), r.stderr
    assert "takes the place" not in r.stderr and r.stderr.count("\n") == 1, r.stderr


def test_an_xarray_of_the_users_is_not_blamed_on_the_dataset(tmp_path) -> None:
    """An ``xarray.py`` of the user's beside the command, with a Dataset variable as the
    input, is named as the module in xarray's place: the plan had said "xarray cannot read
    and write the coordinates of the input Dataset ... set output.array: ''", a fix of the
    config for a fault of the folder."""
    xr = pytest.importorskip("xarray")
    t = np.arange(12, dtype=np.float32).reshape(3, 4)
    ds = xr.Dataset({"t": (("y", "x"), t)}, coords={"y": [0.0, 1.0, 2.0], "x": np.arange(4)})
    ds.to_zarr(tmp_path / "ds.zarr", zarr_format=2, consolidated=True)
    cfg = write_config(tmp_path, tmp_path / "ds.zarr", tmp_path / "out.zarr", input={"array": "t"})
    (tmp_path / "xarray.py").write_text("x = 1  # a script of the user's\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "pipeline", "plan", str(cfg)]
    r = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert r.returncode == 1, r.stderr
    said = f"error: {tmp_path / 'xarray'}.py takes the place of the module 'xarray' "
    assert r.stderr.startswith(said), r.stderr
    assert "output.array" not in r.stderr and r.stderr.count("\n") == 1, r.stderr


@pytest.mark.parametrize("module", ["queue", "zarr", "dask", "xarray"])
def test_a_file_of_the_users_with_no_part_in_an_error_leaves_its_line(tmp_path, module) -> None:
    """A file of the user's in a module's place that the error does not come from (a
    ``queue.py`` beside a config with a wrong value, or whose input is not there) leaves the
    error's own line: the shadow's line had replaced every error's, its fix (rename the file)
    no fix of the config's value or of the missing input."""
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    make_array(tmp_path / "in.zarr", x, (3, 4))
    (tmp_path / f"{module}.py").write_text("# a script of the user's\n")
    wrong = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr", "wrong.yaml")
    wrong.write_text(wrong.read_text().replace("workers: 2", "workers: two"))
    gone = write_config(tmp_path, tmp_path / "gone.zarr", tmp_path / "out.zarr", "gone.yaml")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for command, cfg, said in (
        ("plan", wrong, f"error: {wrong}:"),
        ("run", wrong, f"error: {wrong}:"),
        ("plan", gone, f"error: input store {tmp_path / 'gone.zarr'} does not exist: "),
    ):
        argv = [sys.executable, "-m", "pipeline", command, str(cfg)]
        r = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
        assert r.returncode == 1, r.stderr
        assert r.stderr.startswith(said), (command, r.stderr)
        assert "takes the place" not in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert not (tmp_path / "out.zarr").exists()


#: A script of the user's, run in the folder of a ``queue.py`` of theirs (``python -c``: the
#: folder is first on sys.path), that calls the API and prints what it raised.
API_SCRIPT = """
import sys
import pipeline
try:
    getattr(pipeline, sys.argv[1])(sys.argv[2])
except Exception as e:
    print(type(e).__name__, getattr(e, "files", None), e, *getattr(e, "__notes__", ()), sep="|")
"""


def test_the_api_names_a_file_of_the_users_in_a_modules_place(tmp_path) -> None:
    """Through the API, a ``queue.py`` of the user's beside the script is named as the command
    line names it, in a ShadowedModuleError (the file in ``files``): the plan
    had raised the InputError that blamed the input's metadata ("holds metadata zarr-python
    cannot read ... mend the value"), and the run Python's bare ImportError. An error it has no
    part in (a config's wrong value) keeps its own."""
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    make_array(tmp_path / "in.zarr", x, (3, 4))
    cfg = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr")
    wrong = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr", "wrong.yaml")
    wrong.write_text(wrong.read_text().replace("workers: 2", "workers: two"))
    (tmp_path / "queue.py").write_text("# a script of the user's\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    shadow = f"{tmp_path / 'queue.py'} takes the place of the module 'queue' installed at "
    for function in ("plan", "run"):
        argv = [sys.executable, "-c", API_SCRIPT, function, str(cfg)]
        r = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
        assert r.returncode == 0, r.stderr
        kind, files, line = r.stdout.rstrip("\n").split("|")
        assert (kind, files) == ("ShadowedModuleError", str([shadow.split()[0]]))
        assert line.startswith(shadow) and f"which pipeline.{function}() imports" in line, line
        assert line.endswith(": rename that file of yours") and "mend" not in line, line
    argv = [sys.executable, "-c", API_SCRIPT, "plan", str(wrong)]
    r = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"ConfigError|None|{wrong}:"), r.stdout
    assert "takes the place" not in r.stdout, r.stdout
    assert not (tmp_path / "out.zarr").exists()


def test_the_api_notes_a_file_of_the_users_that_may_cause_a_librarys_error(tmp_path) -> None:
    """A library's error that hides what it met (pydantic's "cannot import name 'BaseModel'"
    where a ``platform.py`` of the user's failed its import) is raised as it is through the
    API, with a note naming the file as what may be its cause: the script's own modules are in
    the process too, so it is not taken for the file's."""
    cfg = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr")
    (tmp_path / "platform.py").write_text("# a script of the user's\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-c", API_SCRIPT, "plan", str(cfg)]
    r = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr
    kind, files, line, note = r.stdout.rstrip("\n").split("|")
    assert (kind, files) == ("ImportError", "None") and "pydantic" in line, r.stdout
    said = f"{tmp_path / 'platform.py'} takes the place of the module 'platform' installed at "
    assert note.startswith(said) and "which pipeline.plan() imports, and may be the cause: " in note
    assert note.endswith(": rename that file of yours"), note


def test_a_file_of_the_users_that_fails_a_workers_task_is_named(tmp_path) -> None:
    """A file of the user's in the place of a module a Dask worker's task uses (a
    ``google_crc32c.py``: a sharded output's index checksum) is named as the cause of the
    error the worker sent back, from its words (pickled, the AttributeError no longer holds
    the module): not as what only may be the cause."""
    pytest.importorskip("google_crc32c")
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    make_array(tmp_path / "in.zarr", x, (3, 4))
    output = {"store": str(tmp_path / "out.zarr"), "chunks": [1, 4], "shards": [3, 4]}
    cluster = {"dashboard": ":0"}  # distributed's worker processes, not this one's threads
    cfg = write_config(
        tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr", output=output, cluster=cluster
    )
    (tmp_path / "google_crc32c.py").write_text("# a script of the user's\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "pipeline", "run", str(cfg)]
    r = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert r.returncode == 1, r.stderr
    assert r.stderr.startswith("dashboard: "), r.stderr  # the run's tasks went to workers
    line = r.stderr.splitlines()[-1]
    said = f"error: {tmp_path / 'google_crc32c.py'} takes the place of the module 'google_crc32c' "
    assert line.startswith(said), r.stderr
    assert "which the command imports (AttributeError: module 'google_crc32c' " in line
    assert "may be the cause" not in line and r.stderr.count("\n") == 2, r.stderr


def test_a_workers_error_through_a_file_of_the_users_names_it(tmp_path) -> None:
    """An error that comes from a file of the user's in a module's place, as a Dask worker
    sends it (pickled: an AttributeError loses the module it was raised on, a PipelineError
    the error it came from), still names the file, from its words; one in other words does
    not."""
    (tmp_path / "queue.py").write_text("# a script of the user's\n")
    script = """
import pickle, queue
from pipeline.errors import InputError
from pipeline.shadowing import linked_shadows
try:
    queue.SimpleQueue
except AttributeError as e:
    raised = e
failed = InputError(f"in.zarr/zarr.json holds metadata zarr-python cannot read ({raised!r})")
for error in (raised, failed, InputError("input store in.zarr does not exist")):
    print([name for name, _, _ in linked_shadows(pickle.loads(pickle.dumps(error)))])
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-c", script]
    r = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["['queue']", "['queue']", "[]"], r.stdout


@pytest.mark.parametrize(
    ("module", "where"),
    [
        ("typing", "cwd"),
        ("inspect", "cwd"),
        ("weakref", "cwd"),
        ("typing", "PYTHONPATH"),
        ("inspect", "zip"),
    ],
)
def test_a_file_of_the_users_that_fails_the_packages_own_import_is_named(
    tmp_path, module, where
) -> None:
    """A file of the user's in the place of a module that ``pipeline/__init__.py`` itself
    imports (``typing``: its own import line; ``inspect``: a call at its import; ``weakref``:
    through the standard library's ``dataclasses``), in the folder ``python -m pipeline`` runs
    in or on PYTHONPATH, the pipeline imported from its folder or from a zip file, is named in
    one line: the hook's own import of ``pipeline.shadowing`` had run the failing package
    again, and Python printed "Error in sys.excepthook" and two tracebacks."""
    import zipfile

    cfg = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr")
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / f"{module}.py").write_text("# a script of the user's\n")
    path = [str(ROOT)] if where != "PYTHONPATH" else [str(folder), str(ROOT)]
    if where == "zip":
        with zipfile.ZipFile(tmp_path / "pipeline.zip", "w") as z:
            for file in sorted((ROOT / "pipeline").rglob("*.py")):
                z.write(file, file.relative_to(ROOT).as_posix())
        path = [str(tmp_path / "pipeline.zip")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    cwd = tmp_path if where == "PYTHONPATH" else folder
    argv = [sys.executable, "-m", "pipeline", "run", str(cfg)]
    r = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=cwd, timeout=120)
    assert r.returncode == 1, r.stderr
    said = f"error: {folder / module}.py takes the place of the module {module!r} installed at "
    assert r.stderr.startswith(said), r.stderr
    assert r.stderr.endswith(": rename that file of yours\n"), r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "out.zarr").exists()


def test_an_import_error_naming_no_module_is_one_line(tmp_path) -> None:
    """An ImportError that names no module (a module that raises it itself, as a library's
    "install X to ..." does) is one line, as any other error: the handler for those naming a
    module had re-raised it, a traceback."""
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    make_array(tmp_path / "in.zarr", x, (3, 4))
    cfg = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr")
    (tmp_path / "zarr.py").write_text('raise ImportError("this zarr needs its C part")\n')
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "pipeline", "run", str(cfg)]
    r = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert r.returncode == 1, r.stderr
    assert r.stderr == (
        "error: ImportError: this zarr needs its C part (run with --debug for the traceback)\n"
    ), r.stderr
    assert not (tmp_path / "out.zarr").exists()


#: What Dask's scheduler, nanny and worker processes say at INFO level.
CHATTER = re.compile(r"distributed\.|Start worker|Register worker|Scheduler at|Nanny|Listening")


def test_default_output_has_no_dask_chatter_and_quiet_has_no_info(tmp_path, small) -> None:
    cfg = _config(tmp_path, cluster={"dashboard": ":0"})
    r = _pipeline("run", cfg, "--progress-interval", "0.01")  # not a terminal: plain lines
    assert r.returncode == 0, r.stderr
    assert not CHATTER.search(r.stderr), r.stderr
    assert "dashboard: http" in r.stderr and "[run] 12/12 blocks" in r.stderr
    assert "run summary" in r.stdout
    r = _pipeline("run", cfg, "--overwrite", "-q")
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""  # no info lines, no progress
    assert "run summary" in r.stdout and "complete" in r.stdout


def test_verbose_shows_the_plan_and_quiet_still_shows_errors(tmp_path, cli, small) -> None:
    _, cfg = small
    rc, _, err = cli("-v", "run", cfg, "--progress", "none")
    assert rc == 0, err
    assert "plan: stages: multiply(factor=5) float32 -> float32" in err
    rc, out, err = cli("run", tmp_path / "missing.yaml", "-q")
    assert rc == 1 and err.startswith("error: config file not found") and out == ""


def test_a_missing_config_points_at_the_examples_where_they_are(
    tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """h66c: "see configs/ for examples" named a folder of the working directory, which
    outside the checkout was not there: from elsewhere the examples are named by their path."""
    monkeypatch.chdir(tmp_path)
    rc, _, err = cli("plan", "missing.yaml")
    assert rc == 1 and f"(see {ROOT / 'configs'}{os.sep} for examples)" in err, err
    assert (ROOT / "configs" / "default.yaml").is_file()
    monkeypatch.chdir(ROOT)
    rc, _, err = cli("plan", tmp_path / "missing.yaml")
    assert rc == 1 and err.endswith("missing.yaml (see configs/ for examples)\n"), err


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["run", "CFG", "--overwite"], "--overwite (did you mean --overwrite?)"),
        (["run", "CFG", "--dryrun"], "--dryrun (did you mean --dry-run?)"),
        (
            ["plan", "CFG", "--overwrite"],
            "--overwrite (--overwrite is an option of `pipeline run`, not of `pipeline plan`)",
        ),
        (
            ["verify", "CFG", "--progress", "none"],
            "--progress none (--progress is an option of `pipeline run` and `pipeline generate`,"
            " not of `pipeline verify`)",
        ),
        (
            ["run", "CFG", "--samples=3"],
            "--samples=3 (--samples is an option of `pipeline verify`, not of `pipeline run`)",
        ),
        # an abbreviation argparse takes of another command's option (h60k: `--al` had been
        # "did you mean --help?", `--sample 2` said nothing of verify's --samples)
        (
            ["run", "--al", "CFG"],
            "--al (--al (--all) is an option of `pipeline verify`, not of `pipeline run`)",
        ),
        (
            ["run", "CFG", "--sample", "2"],
            "--sample 2 (--sample (--samples) is an option of `pipeline verify`, not of "
            "`pipeline run`)",
        ),
        (
            ["--overwrite", "run", "CFG"],
            "--overwrite (--overwrite goes after the command: pipeline run ... --overwrite)",
        ),
        (["generate", "CFG", "other.yaml"], "other.yaml;"),
        (["info", "--gpus"], "--gpus;"),
    ],
)
def test_an_option_the_command_does_not_take_is_refused_naming_the_command_and_the_fix(
    tmp_path, capsys, args, said
) -> None:
    """A user's misspelt or misplaced option (h60h: ``pipeline run cfg --overwite``, ``plan
    cfg --overwrite``, ``verify cfg --progress none``) had been refused with the usage of
    ``pipeline`` itself and "pipeline: error: unrecognized arguments: --overwite", naming
    neither the command nor what to give: now the command's own usage and one line naming
    the option meant, the command that takes it, or where it goes, and ``--help``; status 2
    as argparse's other refusals, before the config is read."""
    from pipeline.cli import main

    cfg = tmp_path / "absent.yaml"  # never read: the command line is refused first
    command = next(a for a in args if not a.startswith("-"))
    with pytest.raises(SystemExit) as stopped:
        main([str(cfg) if a == "CFG" else a for a in args])
    assert stopped.value.code == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert out == "" and lines[0].startswith(f"usage: pipeline {command} "), err
    assert lines[-1] == (
        f"pipeline {command}: error: unrecognized arguments: {said.removesuffix(';')}; "
        f"`pipeline {command} --help` lists what it takes"
    ), err


@pytest.mark.parametrize("option", ["-v", "-vv", "-q", "--debug"])
def test_every_command_takes_the_common_options_after_it(cli, option) -> None:
    """README: "Options for every command: -v, -vv, -q, --debug". ``pipeline info -v`` and
    ``pipeline schema --debug`` had been refused by argparse ("unrecognized arguments",
    status 2), where ``run``, ``plan``, ``generate`` and ``verify`` took them."""
    rc, out, err = cli("info", option)
    assert rc == 0 and out.startswith("pipeline info"), err
    rc, out, err = cli("schema", option)
    assert rc == 0 and out.startswith("**top level**"), err


@pytest.mark.parametrize(
    ("command", "options"),
    [
        ("run", ["--progress", "plain"]),
        ("run", ["--progress", "bar", "--dry-run"]),
        ("generate", ["--progress", "plain"]),
        ("generate", ["--progress", "bar"]),
        ("run", ["-v"]),
        ("generate", ["-vv"]),
        ("plan", ["-v"]),
        ("verify", ["-vv"]),
        ("info", ["-v"]),
        ("schema", ["-v"]),
    ],
)
def test_quiet_with_an_option_that_contradicts_it_is_refused_in_one_line(
    tmp_path, cli, command, options
) -> None:
    """``-q`` (only errors and the summary, no progress) with ``--progress plain`` or ``bar``
    had printed the progress (the mode given won, silently), and with ``-vv`` Dask's logs but
    not the pipeline's. Refused on every command that takes them, in one line naming both
    and the fix, status 2 as argparse's refusals, before anything is written (``generate``'s
    input), whichever side of the command the options stand."""
    cfg = generated_config(tmp_path, {"shape": [40, 20], "chunks": [2, 20]})
    before = sorted(tmp_path.rglob("*"))
    config = [] if command in ("info", "schema") else [cfg]
    lines = [["-q", command, *config, *options], [command, *config, *options, "-q"]]
    if options[0] != "--progress":  # -v before the command too
        lines.append([*options, command, *config, "-q"])
    said = " ".join(options[:2]) if options[0] == "--progress" else options[0]
    for line in lines:
        rc, out, err = cli(*line)
        assert rc == 2 and out == "", (line, err)
        assert err.startswith(f"pipeline {command}: error: -q (") and err.count("\n") == 1, err
        assert f"contradicts {said}" in err and "drop" in err, err
    assert sorted(tmp_path.rglob("*")) == before


def _make(target: str, cfg: Path, args: str = "") -> subprocess.CompletedProcess:
    """``make TARGET CONFIG=cfg ARGS=args`` in this checkout, on this Python (``PYTHON=``: no
    environment made), to its end."""
    command = ["make", "-s", "-C", str(ROOT), target, f"PYTHON={sys.executable}", f"CONFIG={cfg}"]
    return subprocess.run(
        [*command, f"ARGS={args}"], capture_output=True, text=True, timeout=300, cwd=cfg.parent
    )


def test_a_fix_through_make_is_named_as_make_takes_it(tmp_path: Path, cli) -> None:
    """A line of a command that ``make`` ran names its fix as make takes it: `make run
    CONFIG=... ARGS=--overwrite`, and a bare flag as ``ARGS=--overwrite`` (new-user trial:
    `make run ARGS=--dry-run` was told to pass --overwrite, and `make run --overwrite` is make's
    own option); the command named works. The command line's own lines name its flags."""
    make_array(tmp_path / "in.zarr", np.arange(48, dtype=np.float32).reshape(6, 8), (3, 8))
    cfg = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr")
    assert cli("run", cfg, "--progress", "none")[0] == 0
    assert "; pass --overwrite (overwrite=True in pipeline.run) to " in cli("run", cfg)[2]
    r = _make("run", cfg, "--dry-run")
    assert r.returncode != 0 and f"error: {tmp_path / 'out.zarr'} already exists; pass " in (
        r.stderr
    )
    assert "pass ARGS=--overwrite to replace it" in r.stderr, r.stderr
    for chunk in (tmp_path / "out.zarr" / "c").rglob("*"):
        if chunk.is_file():
            chunk.unlink()  # damaged: verify names the run that writes it again
    assert "; `run --overwrite` writes it again" in cli("verify", cfg)[2]
    r = _make("verify", cfg)
    named = re.search(r"; `(make run [^`]*)` writes it again", r.stderr)
    # the PYTHON make was given is named again (without it make would make .venv, h85d)
    python = shlex.quote(sys.executable)
    assert named and named.group(1) == (
        f"make run CONFIG={cfg} PYTHON={python} ARGS=--overwrite"
    ), r.stderr
    again = subprocess.run(
        [*shlex.split(named.group(1)), "-s", "-C", str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stderr
    assert _make("verify", cfg).returncode == 0


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (
            ["run", "--overwrite", "--resume"],
            "pipeline run: error: --overwrite (start over, the finished blocks thrown away) "
            "contradicts --resume (keep them): drop one of them from ARGS",
        ),
        (
            ["verify", "--all", "--samples", "3"],
            "contradicts --samples 3 (that many random blocks): drop one of them from ARGS",
        ),
        (
            ["run", "-q", "--progress", "plain"],
            "-q (no progress) contradicts --progress plain: drop -q from ARGS to see the "
            "progress, or --progress plain to be quiet",
        ),
        (
            ["run", "--scheduler", ""],
            "error: --scheduler: '' is empty, which names no scheduler",
        ),
        (
            ["run", "--summary-json", "/nonexistent-h82c/s.json"],
            "error: --summary-json /nonexistent-h82c/s.json: cannot write this file",
        ),
    ],
)
def test_a_line_of_the_flags_make_was_given_names_them_as_given(
    tmp_path: Path, cli, monkeypatch, args, said
) -> None:
    """Under ``make``, a line that names the flags the command was given (two that contradict,
    a refused option's value) says them as ``ARGS`` holds them, where the fix's rewrite of each
    flag had read "ARGS=--overwrite contradicts ARGS=--resume" and "ARGS=--scheduler: ...";
    a fix's flag is still said as make takes it (test above)."""
    make_array(tmp_path / "in.zarr", np.arange(48, dtype=np.float32).reshape(6, 8), (3, 8))
    cfg = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr")
    monkeypatch.setenv("PIPELINE_MAKE_CONFIG", str(cfg))
    rc, _, err = cli(args[0], cfg, *args[1:])
    assert rc != 0 and said in err and err.count("\n") == 1, err
    assert "ARGS=" not in err, err


def test_make_takes_a_config_whose_path_holds_spaces_and_quotes(tmp_path: Path) -> None:
    """``make run CONFIG="my jobs/it's a.yaml"``: the path reaches the command as one argument
    (it had been split at its spaces: "unrecognized arguments: jobs/..."), and the command a
    line names under make quotes it as one shell word, so that it runs as named."""
    folder = tmp_path / "my jobs ü"
    folder.mkdir()
    make_array(folder / "in.zarr", np.arange(48, dtype=np.float32).reshape(6, 8), (3, 8))
    cfg = write_config(folder, folder / "in.zarr", folder / "out.zarr", name="it's a.yaml")
    r = _make("run", cfg, "-q")
    assert r.returncode == 0, r.stderr
    for chunk in (folder / "out.zarr" / "c").rglob("*"):
        if chunk.is_file():
            chunk.unlink()  # damaged: verify names the run that writes it again
    r = _make("verify", cfg)
    named = re.search(r"; `(make run [^`]*)` writes it again", r.stderr)
    quoted = shlex.quote(str(cfg))
    python = shlex.quote(sys.executable)
    assert named and named.group(1) == (
        f"make run CONFIG={quoted} PYTHON={python} ARGS=--overwrite"
    ), r.stderr
    again = subprocess.run(
        ["bash", "-c", f"{named.group(1)} -s -C {ROOT}"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stderr
    assert _make("verify", cfg).returncode == 0


def test_a_flag_s_make_words_leave_dashes_inside_a_path_or_a_word() -> None:
    """Under ``make``, a flag named bare becomes ``ARGS=--flag``, at a sentence's end too; a
    path or a word that holds two dashes (``/tmp/--x.zarr``, ``a--b``) is no flag and stays as
    it is (it had become ``/tmp/ARGS=--x.zarr``)."""
    from pipeline.errors import make_words

    said = make_words("pass --overwrite. Not /tmp/--x.zarr nor a--b", "c.yaml")
    assert said == "pass ARGS=--overwrite. Not /tmp/--x.zarr nor a--b"
    # a PYTHON make was given goes with each command named, one shell word (h85d)
    said = make_words("`run --overwrite` writes it", "c.yaml", "/opt/my py/python3")
    assert said == "`make run CONFIG=c.yaml PYTHON='/opt/my py/python3' ARGS=--overwrite` writes it"
    assert make_words("`plan CONFIG`", "c.yaml", " ") == "`make plan CONFIG=c.yaml`"


def test_output_overwrite_in_the_config_is_honoured(tmp_path, cli, small) -> None:
    """`make run` twice: configs/default.yaml says output.overwrite: true."""
    cfg = _config(tmp_path, output={"store": str(tmp_path / "out.zarr"), "overwrite": True})
    assert cli("run", cfg)[0] == 0
    rc, _, err = cli("run", cfg)
    assert rc == 0, err


def _run_without_a_reader(tmp_path: Path, cfg: Path, *extra: str) -> str:
    """``pipeline run cfg`` whose standard output's reader leaves before anything is printed;
    its stderr, once it has ended with status 141 (asserted)."""
    from tests.faultkit import env

    with subprocess.Popen(
        [sys.executable, "-m", "pipeline", "run", str(cfg), "--progress", "none", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env(),
        cwd=tmp_path,
    ) as p:
        assert p.stdout is not None and p.stderr is not None
        p.stdout.close()  # the reader leaves
        err = p.stderr.read().decode()
        assert p.wait(timeout=300) == 141, err
    return err


def test_a_reader_that_leaves_early_ends_the_command_quietly(tmp_path: Path, small) -> None:
    """``pipeline run cfg | head -2``: the reader of the standard output is gone before the
    summary is printed. The command says nothing more (no error line, no traceback), ends
    with a shell's status for a process that SIGPIPE ended (141), and its output is complete."""
    from tests.conftest import read_array, reference

    x, cfg = small
    err = _run_without_a_reader(tmp_path, cfg)
    assert "error" not in err and "Traceback" not in err, err
    assert np.array_equal(read_array(tmp_path / "out.zarr"), reference(x))
    import zarr

    assert record_of(zarr.open_array(str(tmp_path / "out.zarr"), mode="r").attrs)["status"] == (
        "complete"
    )


def _through_a_pipe(command: str, cfg: Path, *args: str) -> subprocess.CompletedProcess:
    """``pipeline COMMAND <(cat cfg) ARGS``: the config given as a pipe (/dev/fd/N), which
    reads once, as a shell's process substitution gives it."""
    from tests.faultkit import env

    r, w = os.pipe()
    try:
        os.write(w, cfg.read_bytes())  # a small config: it fits the pipe's buffer
        os.close(w)
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "pipeline",
                command,
                f"/dev/fd/{r}",
                "--progress",
                "none",
                *args,
            ],
            pass_fds=(r,),
            capture_output=True,
            text=True,
            env=env(),
            cwd=cfg.parent,
            timeout=300,
        )
    finally:
        os.close(r)


def test_a_config_given_as_a_pipe_is_read_once(tmp_path: Path) -> None:
    """``pipeline generate <(cat cfg)`` and ``pipeline run <(cat cfg)``: the early look at
    the config (the GPU workers' fork server) must not consume a pipe that the config's load
    reads after it (it was left an empty file: 'missing key input')."""
    import zarr

    from tests.conftest import read_array, reference

    cfg = generated_config(tmp_path, {"shape": [40, 30], "chunks": [5, 30], "shards": [10, 30]})
    for command in ("generate", "run"):
        proc = _through_a_pipe(command, cfg)
        assert proc.returncode == 0, (command, proc.stderr)
    x = read_array(tmp_path / "in.zarr")
    assert np.array_equal(read_array(tmp_path / "out.zarr"), reference(x))
    assert record_of(zarr.open_array(str(tmp_path / "out.zarr"), mode="r").attrs)["status"] == (
        "complete"
    )


def test_a_reader_that_leaves_early_still_gets_the_summary_json(tmp_path: Path, small) -> None:
    """``pipeline run cfg --summary-json s.json | head -1``: the table's reader is gone, the
    summary's file is still written (it was not: the table's BrokenPipeError came first)."""
    _, cfg = small
    summary = tmp_path / "summary.json"
    _run_without_a_reader(tmp_path, cfg, "--summary-json", str(summary))
    assert json.loads(summary.read_text())["status"] == "complete"


def test_the_summary_of_a_command_counts_it_from_start_to_exit(tmp_path: Path, small) -> None:
    """``pipeline run``'s summary accounts for the whole command, as its user times it: the
    process's own start (imports, config) and the workers' stop are phases beside the plan,
    cluster, compute and finish ones, and the total is their sum: what a clock outside sees,
    less the process's last moments (flushing, exit)."""
    from pipeline.reporting.summary import PHASES

    _, cfg = small
    summary = tmp_path / "summary.json"
    t = time.perf_counter()
    r = _pipeline("run", cfg, "--summary-json", summary, "--progress", "none")
    wall = time.perf_counter() - t
    assert r.returncode == 0, r.stderr
    s = json.loads(summary.read_text())["seconds"]
    assert set(s) == {*PHASES, "total"} - {"generate"}  # the input was there
    assert s["start"] > 0 and s["close"] >= 0
    _phases_tile(s)
    assert s["total"] <= wall + 0.02  # 10 ms ticks
    assert wall - s["total"] < max(1.0, 0.3 * wall), (wall, s)
    assert f"{s['total']:.2f} s total: start {s['start']:.2f}, plan" in r.stdout


def _phases_tile(seconds: dict[str, float]) -> None:
    """The total is the sum of the phases: every moment of the run is in one of them."""
    from pipeline.reporting.summary import PHASES

    assert seconds["total"] == pytest.approx(sum(seconds[k] for k in PHASES if k in seconds))


def test_the_phases_of_a_run_leave_no_time_out(tmp_path: Path, cli) -> None:
    """A run that replaces an output of many chunk files (deleting them takes a while) and one
    that resumes it: the checks, the lock, the old output's removal and the new one's creation
    are in a phase, so the phases add up to the total."""
    x = np.random.default_rng(0).standard_normal((48, 64, 16)).astype(np.float32)
    make_array(tmp_path / "in.zarr", x, (1, 8, 16))
    cfg = _config(tmp_path, output={"chunks": [1, 8, 16], "shards": "none", "overwrite": True})
    summary = tmp_path / "summary.json"
    for _ in range(2):  # the second replaces the first's 384 chunk files
        rc, _, err = cli("run", cfg, "--summary-json", summary, "--progress", "none")
        assert rc == 0, err
        _phases_tile(json.loads(summary.read_text())["seconds"])
    rc, out, err = cli("run", cfg, "--resume", "--summary-json", summary, "--progress", "none")
    s = json.loads(summary.read_text())
    assert rc == 0 and s["status"] == "complete (nothing to do)", err
    assert set(s["seconds"]) == {"plan", "finish", "close", "total"}  # no cluster started
    _phases_tile(s["seconds"])
    # and the table says why no task time, throughput or peak memory is shown, rather than
    # an empty row, 0.00 GB/s and a peak of 0 B (h66c)
    for row in ("task time", "throughput", "peak host memory"):
        assert re.search(rf"{row} +— \(no block was computed in this run\)", out), out


def test_an_input_made_first_is_a_phase_of_the_command(tmp_path: Path) -> None:
    """``input.generate.when_missing`` with no input: the command makes it, then runs; the
    making is the ``generate`` phase, in the total as in the user's wait (it was in none)."""
    from pipeline.reporting.summary import PHASES

    cfg = generated_config(
        tmp_path, {"shape": [48, 64, 16], "chunks": [4, 64, 16], "when_missing": True}
    )
    summary = tmp_path / "summary.json"
    r = _pipeline("run", cfg, "--summary-json", summary, "--progress", "none")
    assert r.returncode == 0, r.stderr
    s = json.loads(summary.read_text())["seconds"]
    assert set(s) == {*PHASES, "total"} and "generate" in PHASES
    assert s["generate"] > 0
    _phases_tile(s)
    assert f"{s['total']:.2f} s total: start {s['start']:.2f}, generate " in r.stdout
    r = _pipeline("run", cfg, "--overwrite", "--summary-json", summary, "--progress", "none")
    assert r.returncode == 0, r.stderr
    assert "generate" not in json.loads(summary.read_text())["seconds"]


def test_fixed_cost_splits_a_command_into_the_summary_s_phases(tmp_path: Path, small) -> None:
    """``scripts/fixed_cost.py``: every phase of the summary is a figure of its own (finish
    was in none), and the phases and the exit add up to the wall time it measured."""
    import runpy

    from pipeline.reporting.summary import PHASES

    script = ROOT / "scripts" / "fixed_cost.py"
    assert runpy.run_path(str(script), run_name="fixed_cost")["PHASES"] == PHASES
    _, cfg = small
    r = _python(script, cfg, "--runs", "1")
    assert r.returncode == 0, r.stdout + r.stderr
    line = next(x for x in r.stdout.splitlines() if x.startswith("run 1: "))
    words = line.removeprefix("run 1: ").split()
    figures = {k: float(v) for k, v in zip(words[::2], words[1::2], strict=True)}
    assert set(figures) == {"wall", "fixed", *PHASES, "exit", "cpu"}
    parts = [figures[k] for k in (*PHASES, "exit")]
    assert sum(parts) == pytest.approx(figures["wall"], abs=0.005 * len(parts))  # 2 decimals


def test_a_process_started_for_something_else_has_no_start_phase(tmp_path: Path, small) -> None:
    """``main()`` called with ``sys.argv`` set, in a process that was started for other work
    (a notebook's ``%run -m pipeline run ...``): the process's age is not the command's start."""
    _, cfg = small
    summary = tmp_path / "summary.json"
    argv = ["pipeline", "run", str(cfg), "--summary-json", str(summary), "--progress", "none"]
    code = f"import sys; sys.argv = {argv!r}; from pipeline.cli import main; main()"
    r = _python("-c", code)
    assert r.returncode == 0, r.stderr
    s = json.loads(summary.read_text())["seconds"]
    assert "start" not in s and "compute" in s
    _phases_tile(s)


def test_an_input_read_through_zarr_python_counts_its_stored_bytes(tmp_path: Path, cli) -> None:
    """An input whose codecs only zarr-python reads (numcodecs' Delta as a Zarr 3 codec) is
    read by it, which gives no sizes back: the summary counts its files' bytes all the same
    (it had said 0 B stored), and its task time names read and decode as one (it had counted
    zarr-python's decoding as read, and called the run storage-bound)."""
    import warnings

    import zarr
    from zarr.codecs.numcodecs import Delta

    x = np.random.default_rng(5).standard_normal((40, 30)).astype("float32")
    with warnings.catch_warnings():  # numcodecs' codecs: not in the Zarr spec
        warnings.simplefilter("ignore")
        z = zarr.create_array(
            str(tmp_path / "in.zarr"),
            shape=x.shape,
            chunks=(10, 30),
            dtype="float32",
            zarr_format=3,
            filters=[Delta(dtype="<f4")],
            chunk_key_encoding={"name": "v2", "separator": "."},
        )
        z[...] = x
    chunk_files = [p for p in (tmp_path / "in.zarr").iterdir() if p.name != "zarr.json"]
    stored = sum(p.stat().st_size for p in chunk_files)
    cfg = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr")
    rc, out, err = cli("run", cfg, "--summary-json", tmp_path / "s.json")
    assert rc == 0, err
    s = json.loads((tmp_path / "s.json").read_text())
    assert len(chunk_files) == 4 and s["stored_bytes_read"] == stored
    assert "read+decode" in s["task_time"] and not {"read", "decode"} & set(s["task_time"])
    # the verdict follows the phases as counted: zarr-python's decoding is no store read, so
    # only the writes (which a busy machine can make most of task time) can make it storage-bound
    storage = s["task_time"].get("write", 0.0) >= 0.6
    assert ("storage-bound" in s["bound_by"]) == storage, s
    assert "0 B stored" not in out
    got = zarr.open_array(str(tmp_path / "out.zarr"), mode="r")[...]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        read = zarr.open_array(str(tmp_path / "in.zarr"), mode="r")[...]  # float Delta rounds
    assert got.tobytes() == reference(read).tobytes()


def test_schema_update_of_a_file_it_cannot_update_is_one_line_naming_it(
    tmp_path: Path, cli
) -> None:
    """`schema --update` of a folder had said "a store answered IsADirectoryError ...: mend
    what is at that path of the store" (no store is involved), of a missing file Python's bare
    FileNotFoundError, and of a file that is no UTF-8 text a UnicodeDecodeError. Each is one
    line naming the file and what to give; nothing is written. A README with the markers is
    updated as before."""
    (tmp_path / "folder").mkdir()
    binary = tmp_path / "binary.md"
    binary.write_bytes(b"\xff\xfe")
    for target, why in (
        (tmp_path / "folder", "Is a directory"),
        (tmp_path / "missing.md", "No such file or directory"),
        (binary, "it is not UTF-8 text"),
    ):
        rc, out, err = cli("schema", "--update", target)
        assert rc == 1 and out == "", err
        assert err == (
            f"error: schema --update {target}: cannot update that file ({why}); give the path "
            "of a Markdown file that holds the reference markers (README.md)\n"
        ), err
    assert not (tmp_path / "missing.md").exists() and binary.read_bytes() == b"\xff\xfe"
    readme = tmp_path / "README.md"
    readme.write_text((Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8"))
    before = readme.read_text()
    assert cli("schema", "--update", readme)[0] == 0
    assert readme.read_text() == before  # the checkout's README holds the current reference


def test_every_option_of_every_command_says_what_it_does(cli) -> None:
    """Each command's ``--help`` gives every option a line of help (`generate --progress` had
    none, where `run --progress` says what each choice does)."""
    from pipeline.cli import _commands, _parser

    for name, sub in _commands(_parser()).items():
        for action in sub._actions:
            if action.option_strings:
                assert action.help, f"pipeline {name} {action.option_strings[0]} has no help"


def test_verify_scheduler_help_says_the_blocks_are_compared_here(cli) -> None:
    """``verify --scheduler``'s help says what verify does there: it compares in its own
    process and joins the scheduler only for a plan (it had said "join an existing Dask
    scheduler", as run's does: new-user trial)."""
    from pipeline.cli import _commands, _parser

    (said,) = [a.help for a in _commands(_parser())["verify"]._actions if a.dest == "scheduler"]
    assert "compared in this process" in str(said) and "joined only to plan" in str(said), said


def test_verify_all_with_samples_is_refused_as_a_contradiction(tmp_path: Path, cli) -> None:
    """`verify --all --samples 3` had compared every block, the --samples given dropped
    without a word (as `-q --progress plain` and `--overwrite --resume` are refused: two asked
    ways, one silently winning). Now a usage error in one line (status 2), nothing read; each
    alone compares what it says."""
    x = np.arange(12 * 16, dtype=np.float32).reshape(12, 16)
    make_array(tmp_path / "in.zarr", x, (1, 16))
    cfg = write_config(
        tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr", chunking={"block": [1, 16]}
    )
    assert cli("-q", "run", cfg)[0] == 0
    rc, out, err = cli("verify", cfg, "--all", "--samples", "3")
    assert (rc, out) == (2, ""), err
    assert err == (
        "pipeline verify: error: --all (every block) contradicts --samples 3 (that many random "
        "blocks): drop one of them\n"
    )
    for flags, checked in (["--all"], "12 of 12"), (["--samples", "3"], "3 of 12"), ([], "8 of 12"):
        rc, out, err = cli("verify", cfg, *flags)
        assert rc == 0 and f"checked        {checked} blocks" in out, (flags, out, err)


def test_a_run_refuses_to_write_its_summary_or_report_over_its_config(tmp_path: Path, cli) -> None:
    """`run c.yaml --summary-json c.yaml` had run, then written its summary over the config,
    which was gone (the JSON in its place); `--report` would have written Dask's HTML there.
    Refused in one line before anything is done, by the command line (its dry run too) and
    the API; the config and the output's place untouched."""
    import pipeline

    x = np.arange(4 * 16, dtype=np.float32).reshape(4, 16)
    make_array(tmp_path / "in.zarr", x, (1, 16))
    cfg = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr")
    text = cfg.read_bytes()
    for flags in (
        ["--summary-json", str(cfg)],
        ["--report", str(cfg), "--dry-run"],
        ["--summary-json", f"{tmp_path}/./{cfg.name}"],
    ):
        rc, out, err = cli("run", cfg, *flags)
        assert rc == 1 and err == (
            f"error: {flags[0]} {flags[1]}: that file is the run's config, which the run would "
            "replace: give another file\n"
        ), (flags, out, err)
    with pytest.raises(pipeline.ConfigError) as e:
        pipeline.run(cfg, summary_json=str(cfg))
    assert e.value.option == "summary_json" and "the run's config" in str(e.value)
    assert cfg.read_bytes() == text and not (tmp_path / "out.zarr").exists()
    rc, _, err = cli("run", cfg, "--summary-json", tmp_path / "s.json")  # another file: runs
    assert rc == 0 and json.loads((tmp_path / "s.json").read_text())["status"] == "complete"


@pytest.mark.parametrize(
    "per_second, said",
    [
        (0, "0 B/s"),
        (400, "400 B/s"),
        (999.6, "1.00 kB/s"),
        (8e5, "800 kB/s"),
        (2.5e6, "2.50 MB/s"),
        (45.67e6, "45.7 MB/s"),
        (1.234e9, "1.23 GB/s"),
        (123.4e9, "123 GB/s"),
    ],
)
def test_a_rate_keeps_three_significant_figures_in_its_unit(per_second: float, said: str) -> None:
    """Every rate the pipeline prints is said by one formatter, in the unit that keeps three
    significant figures: a slow run's (10,000 chunks of 400 B at 0.8 MB/s) had been said as
    0.00 GB/s in its progress lines and its summary (h77c)."""
    from pipeline.reporting.progress import rate_said

    assert rate_said(per_second) == said
    assert re.fullmatch(RATE, said)


def test_a_slow_runs_progress_says_its_rate() -> None:
    """Blocks of 400 B a few a second: the progress line says kB/s or B/s with three
    significant figures, not 0.00 GB/s (h77c)."""
    out = io.StringIO()
    with Progress(2, 400, mode="plain", interval=0.02, stream=out) as p:
        time.sleep(0.1)
        p.advance(2)
    last = out.getvalue().splitlines()[-1]
    match = re.fullmatch(rf"\[run\] 2/2 blocks \(100%\), ({RATE}), elapsed .*", last)
    assert match and match.group(1).endswith((" B/s", " kB/s")) and match.group(1) != "0 B/s", last


def _control_named_store(root: Path) -> None:
    """A store whose arrays, group and dimension are named with a line break or a tab, as
    zarr-python writes them on a local store: arrays ``a\\nb`` and ``c\\td`` (dimension
    ``x\\ny``) at its root, the group ``g\\nh`` holding ``c``; and beside it the plain folder
    ``plain`` (no metadata) holding the array ``e\\nf``."""
    import zarr

    top = zarr.open_group(root, mode="w")
    a = top.create_array("a\nb", shape=(4,), dtype="f4", dimension_names=["x\ny"])
    a[:] = np.arange(4, dtype="f4")
    top.create_array("c\td", shape=(4,), dtype="f4", dimension_names=["x\ny"])[:] = 1
    top.create_group("g\nh").create_array("c", shape=(4,), dtype="f4")[:] = 2
    assert sorted(zarr.open_group(root, mode="r").keys()) == ["a\nb", "c\td", "g\nh"]
    zarr.create_array(root.parent / "plain" / "e\nf", shape=(4,), dtype="f4")[:] = 3


@pytest.mark.parametrize(
    "store, array, said",
    [
        # a group: its arrays listed to choose from (the names had split the line in two)
        (
            "in.zarr",
            None,
            "is a Zarr group, not an array: set input.array to the path of an array in it: "
            "'a\\nb', 'c\\td', 'g\\nh/c'",
        ),
        (
            "in.zarr",
            "g\nh",
            "/in.zarr/g\\nh' is a Zarr group, not an array: set input.array to the path "
            "of an array in it: 'g\\nh/c'",
        ),
        # a folder of no metadata: the arrays below it
        (
            "plain",
            None,
            "/plain: it is a folder of no Zarr metadata (no zarr.json, .zarray or "
            ".zgroup); set input.array to the path of one of the arrays below it: 'e\\nf'",
        ),
    ],
)
def test_a_refusal_listing_members_named_with_a_line_break_is_one_line(
    tmp_path, cli, store, array, said
) -> None:
    """A group's or folder's arrays named with a line break or a tab (which zarr-python
    writes on a local store) are listed quoted as Python writes them, as the names a config
    gives are (h78d): the refusal is one line, naming each (h79b)."""
    _control_named_store(tmp_path / "in.zarr")
    given = {"store": str(tmp_path / store)} | ({"array": array} if array else {})
    cfg = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr", input=given)
    rc, _, err = cli("plan", cfg)
    assert rc == 1 and len(err.splitlines()) == 1, err
    assert said in err, err


def _square_of_a_line_break(tmp_path: Path, **output: Any) -> Path:
    """:func:`_control_named_store` at ``tmp_path/in.zarr``, and the config of a run that
    squares its array ``a\\nb`` into ``tmp_path/out.zarr`` (``output``: the output section's
    other keys, or its store)."""
    _control_named_store(tmp_path / "in.zarr")
    return write_config(
        tmp_path,
        tmp_path / "in.zarr",
        tmp_path / "out.zarr",
        input={"store": str(tmp_path / "in.zarr"), "array": "a\nb"},
        output={"store": str(tmp_path / "out.zarr"), **output},
        stages=[{"op": "square"}],
    )


def test_plan_and_summary_rows_of_an_array_named_with_a_line_break_are_one_line_each(
    tmp_path, cli
) -> None:
    """The plan's and the run summary's rows naming the input, the output and the variable's
    dimensions quote a name with a line break (``'.../a\\nb'``), each row one line: the name
    had split the input, output and variable rows (h79b)."""
    import zarr

    cfg = _square_of_a_line_break(tmp_path)
    for command, title in (("plan", "plan of "), ("run", "run summary")):
        rc, out, err = (
            cli(command, cfg, "--progress", "none") if command == "run" else cli(command, cfg)
        )
        assert rc == 0, err
        lines = out.splitlines()
        assert lines[0].startswith(title), out
        assert all(re.match(r"  \S", line) for line in lines[1:]), out  # rows only
        assert "/in.zarr/a\\nb'" in out or command == "run", out
        assert "/out.zarr/a\\nb'" in out, out
    assert "dimensions 'x\\ny'" in cli("plan", cfg)[1]
    assert zarr.open_array(tmp_path / "out.zarr", path="a\nb")[:].tolist() == [0, 1, 4, 9]


@pytest.mark.parametrize(
    "output, said",
    [
        # an array of another tool's at the output's path
        ("o\np", "error: '{out}/o\\np' already exists (not written by this pipeline); pass "),
        # an output under that array
        (
            "o\np/q",
            "error: cannot write the output at '{out}/o\\np/q': '{out}/o\\np' is a Zarr array, "
            "and only a group holds arrays",
        ),
    ],
)
def test_an_output_refusal_naming_a_path_with_a_line_break_is_one_line(
    tmp_path, cli, output, said
) -> None:
    """The output's refusals place the output, and what is in its way, quoted where its
    path holds a line break: each had been two lines (h79b)."""
    import zarr

    cfg = _square_of_a_line_break(tmp_path, array=output)
    zarr.open_group(tmp_path / "out.zarr", mode="w").create_array("o\np", shape=(4,), dtype="f4")
    rc, _, err = cli("run", cfg, "--progress", "none")
    assert rc == 1 and len(err.splitlines()) == 1, err
    assert said.format(out=tmp_path / "out.zarr") in err, err


def _run_of_a_coordinate_named_with_a_line_break(tmp_path, cli) -> Path:
    """The config of a run, done, of an xarray Dataset's variable ``v`` (4 float64) whose
    dimension coordinate is named ``t\\nu``, squared into ``tmp_path/out.zarr``."""
    import xarray as xr

    ds = xr.Dataset({"v": (("t\nu",), np.arange(4.0))}, coords={"t\nu": np.arange(4)})
    ds.to_zarr(tmp_path / "ds.zarr", mode="w", consolidated=False)
    cfg = write_config(
        tmp_path,
        tmp_path / "ds.zarr",
        tmp_path / "out.zarr",
        input={"store": str(tmp_path / "ds.zarr"), "array": "v"},
        stages=[{"op": "square"}],
    )
    rc, _, err = cli("run", cfg, "--progress", "none")
    assert rc == 0, err
    return cfg


def test_an_edited_coordinate_named_with_a_line_break_is_said_in_one_line(tmp_path, cli) -> None:
    """A Dataset's coordinate named with a line break, edited in the output since the run:
    verify's refusal and a run's name it quoted, each one line (h79b)."""
    import zarr

    cfg = _run_of_a_coordinate_named_with_a_line_break(tmp_path, cli)
    zarr.open_array(tmp_path / "out.zarr", path="t\nu", mode="r+")[:] = np.arange(4) + 10
    for command in (("verify",), ("run", "--progress", "none")):
        rc, _, err = cli(command[0], cfg, *command[1:])
        assert rc == 1 and len(err.splitlines()) == 1, err
        assert "'t\\nu''s values: 4 of 4 elements differ" in err, err
    assert "the output's coordinates 't\\nu' are not the input's" in cli("verify", cfg)[2]


def test_an_output_overlapping_the_input_named_with_a_line_break_is_one_line(tmp_path, cli) -> None:
    """The refusals of an output inside the input's store, and of an output folder linked
    into the input's, place both paths quoted where one holds a line break: each had been
    two lines, the paths said bare (h80a)."""
    import shutil

    inside = _square_of_a_line_break(tmp_path, store=str(tmp_path / "in.zarr" / "x\ny"))
    for command in ("plan", "run"):
        rc, _, err = cli(command, inside)
        assert rc == 1 and len(err.splitlines()) == 1, err
        assert f"the output '{tmp_path}/in.zarr/x\\ny' is inside the input store" in err, err
    out = tmp_path / "o\nut.zarr"
    cfg = write_config(
        tmp_path,
        tmp_path / "in.zarr",
        out,
        input={"store": str(tmp_path / "in.zarr"), "array": "a\nb"},
        output={"store": str(out)},
        stages=[{"op": "square"}],
    )
    rc, _, err = cli("run", cfg, "--progress", "none")
    assert rc == 0, err
    shutil.rmtree(out / "a\nb" / "c")
    (out / "a\nb" / "c").symlink_to(tmp_path / "in.zarr" / "a\nb" / "c")
    rc, _, err = cli("run", cfg, "--progress", "none", "--overwrite")
    assert rc == 1 and len(err.splitlines()) == 1, err
    link = f"'{tmp_path}/o\\nut.zarr/a\\nb/c' is a symbolic link to "
    link += f"'{tmp_path}/in.zarr/a\\nb/c', inside"
    assert link in err, err


def test_a_damaged_input_chunk_of_a_store_named_with_a_line_break_is_one_line(
    tmp_path, cli
) -> None:
    """A damaged chunk of an input whose store's path holds a line break: the run's refusal
    names the store quoted, one line (it had been said bare, splitting the line; h80a)."""
    import zarr

    store = tmp_path / "d\n.zarr"
    zarr.create_array(store, shape=(8,), chunks=(4,), dtype="f4")[:] = 1
    (store / "c" / "0").write_bytes(b"garbage")
    cfg = write_config(tmp_path, store, tmp_path / "out.zarr", stages=[{"op": "square"}])
    rc, _, err = cli("run", cfg, "--progress", "none")
    assert rc == 1 and len(err.splitlines()) == 1, err
    assert f"input chunk 'c/0' of '{tmp_path}/d\\n.zarr' is damaged" in err, err


@pytest.mark.parametrize(
    "mend, said",
    [
        # a field pydantic refuses, at its line (problems._where)
        (lambda c: c, ":12: cluster.workers: must be a whole number from 1 to 65536"),
        # malformed YAML, at its line (loading.load_config)
        (
            lambda c: c.write_text(c.read_text() + "\tx: 1\n"),
            ":15: malformed YAML: line 15 is indented with a tab",
        ),
        # a key given twice (loading._duplicate)
        (
            lambda c: c.write_text(c.read_text() + "backend: cpu\n"),
            ":15: backend: this key is given twice",
        ),
    ],
    ids=["field", "yaml", "twice"],
)
def test_a_config_file_named_with_a_line_break_is_said_quoted_in_one_line(
    tmp_path, cli, mend, said
) -> None:
    """A config file whose path holds a line break: its refusal names it quoted, as the
    stores' paths are (h78d), one line (it had been said bare, splitting the ``error:`` line
    in two; h81c); and the plan's title of a good one is one line too."""
    cfg = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr", "c\n.yaml")
    make_array(tmp_path / "in.zarr", np.ones((4, 4), "f4"), (2, 4))
    assert cli("plan", cfg)[1].startswith(f"plan of '{tmp_path}/c\\n.yaml' (nothing computed")
    cfg.write_text(cfg.read_text().replace("workers: 2", "workers: 0"))
    mend(cfg)
    rc, _, err = cli("run", cfg, "--progress", "none")
    assert rc == 1 and len(err.splitlines()) == 1, err
    assert err.startswith(f"error: '{tmp_path}/c\\n.yaml'{said}"), err


def test_verify_of_a_damaged_coordinate_chunk_named_with_a_line_break_is_one_line(
    tmp_path, cli
) -> None:
    """verify's refusal of an input whose carried coordinate ``t\\nu`` has a damaged chunk
    names the coordinate quoted, one line (it had been said bare, two lines; h80a)."""
    cfg = _run_of_a_coordinate_named_with_a_line_break(tmp_path, cli)
    (tmp_path / "ds.zarr" / "t\nu" / "c" / "0").write_bytes(b"junk")
    rc, _, err = cli("verify", cfg)
    assert rc == 1 and len(err.splitlines()) == 1, err
    assert "(of 't\\nu', which the output carries beside the variable) is damaged" in err, err


def test_an_unwritable_output_folder_named_with_a_tab_is_one_line(tmp_path, cli) -> None:
    """The refusal of an output folder that cannot be written, its path holding a tab, says
    the output and the folder quoted (they had been said bare; h80a)."""
    from tests.faultkit import read_only_folder

    out = tmp_path / "o\tut.zarr"
    out.mkdir()
    cfg = _square_of_a_line_break(tmp_path, store=str(out))
    with read_only_folder(out):
        rc, _, err = cli("run", cfg, "--progress", "none")
    assert rc == 1 and "\t" not in err, err
    assert f"'{tmp_path}/o\\tut.zarr' is not a writable directory" in err, err


def test_generate_s_created_row_of_a_store_named_with_a_line_break_is_one_line(
    tmp_path, cli
) -> None:
    """``generate``'s summary row naming the input it made quotes a store path with a line
    break, as the plan's and the run summary's rows do: it had been said bare, the row split
    in two."""
    store = tmp_path / "g\nen.zarr"
    cfg = write_config(
        tmp_path,
        store,
        tmp_path / "out.zarr",
        input={"store": str(store), "generate": {"shape": [4, 8], "chunks": [2, 8]}},
    )
    rc, out, err = cli("generate", cfg, "--progress", "none")
    assert rc == 0, err
    lines = out.splitlines()
    assert all(re.match(r"  \S", line) for line in lines[1:]), out  # rows only
    assert f"'{tmp_path}/g\\nen.zarr'" in out, out


def test_a_refused_consolidation_of_a_group_enclosing_the_output_names_it(tmp_path, cli) -> None:
    """The output ``sub`` of the consolidated group ``en\\ncl.zarr``, whose folder cannot be
    written: the run's drop of the group's copy as it makes the output, and the write of it
    again by ``run --resume`` after an array was added to the group, are refused in one line
    naming the group (quoted) and the fix, where it had been "a store answered
    PermissionError ...: give access to it (... the store's storage_options)", naming no
    store (h81c). Writable again, the resume writes the copy and nothing is recomputed."""
    import zarr

    from tests.faultkit import read_only_folder

    encl = tmp_path / "en\ncl.zarr"
    zarr.open_group(encl, mode="w").create_group("keep")
    with pytest.warns(UserWarning, match="Consolidated metadata"):  # not in the v3 spec
        zarr.consolidate_metadata(str(encl))
    (encl / "sub").mkdir()
    make_array(tmp_path / "in.zarr", np.ones((4, 4), "f4"), (2, 4))
    cfg = write_config(tmp_path, tmp_path / "in.zarr", encl / "sub")
    group = f"the group '{tmp_path}/en\\ncl.zarr' that holds"
    with read_only_folder(encl):
        rc, _, err = cli("run", cfg, "--progress", "none")
    assert rc == 1 and len(err.splitlines()) == 1 and err.startswith(f"error: {group}"), err
    assert "drops its consolidated metadata" in err and err.endswith("; then run again\n"), err
    assert cli("run", cfg, "--progress", "none")[0] == 0
    zarr.create_array(str(encl), name="other/new", shape=(3,), dtype="i4")
    with read_only_folder(encl):
        rc, _, err = cli("run", cfg, "--progress", "none", "--resume")
    assert rc == 1 and len(err.splitlines()) == 1, err
    assert f"'{tmp_path}/en\\ncl.zarr/sub' is complete, but {group} its store" in err, err
    assert "`run --resume` writes that copy again" in err, err
    assert cli("run", cfg, "--progress", "none", "--resume")[0] == 0
    assert cli("verify", cfg)[0] == 0


def test_every_failure_the_command_line_prints_is_one_line(tmp_path, cli) -> None:
    """A scheduler's address given with a line break (``--scheduler``): the refusal to join it
    had said it bare, splitting the ``error:`` line in two; every failure the command prints
    is one line (``cli._failed``, h81c), whose words are otherwise kept as they are (two
    spaces stay two)."""
    make_array(tmp_path / "in.zarr", np.ones((4, 4), "f4"), (2, 4))
    cfg = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr")
    rc, _, err = cli("run", cfg, "--scheduler", "tcp://ho\nst:8786", "--progress", "none")
    assert rc == 1 and len(err.splitlines()) == 1 and err.startswith("error: "), err
    from pipeline.errors import single_line  # the words kept

    assert single_line("'a  b' \n\t c\u2028d\r\n") == "'a  b' c d"


def test_an_empty_config_path_is_said_to_be_empty(tmp_path: Path, cli) -> None:
    """``pipeline run ""`` (``run "$CFG"`` with CFG unset), ``make run CONFIG=`` and
    ``pipeline.run("")``: one line saying the path is empty; ``Path("")`` is ".", and it had
    been "config . is a folder, not a YAML file"."""
    import pipeline
    from pipeline.errors import ConfigError

    said = "error: the config's path is empty (''): give the config file's path"
    for command in ("run", "plan", "verify", "generate"):
        rc, _, err = cli(command, "")
        assert rc != 0 and err.strip() == said, err
    # through make, a blank CONFIG is said as make's variable, with the target to run (it had
    # been the command's "path is empty ('')", and CONFIG=" " the same '')
    for target, config in (("run", ""), ("run", " "), ("verify", ""), ("data", "  ")):
        r = subprocess.run(
            ["make", "-s", "-C", str(ROOT), target, f"PYTHON={sys.executable}", f"CONFIG={config}"],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=tmp_path,
        )
        assert r.returncode != 0 and len(r.stderr.splitlines()) == 1, r.stderr
        assert "CONFIG is empty: give a config file's path" in r.stderr, r.stderr
        named = f"`make {target} CONFIG=configs/default.yaml PYTHON={sys.executable}`"
        assert named in r.stderr, r.stderr
        assert "''" not in r.stderr and "pipeline" not in r.stdout, (r.stdout, r.stderr)
    with pytest.raises(ConfigError, match=r"^the config's path is empty"):
        pipeline.run("")


def test_sizes_are_said_in_the_iec_units(tmp_path, cli, small) -> None:
    """A run's summary says its sizes as the README and the benchmarks' reports do, in the IEC's
    binary units (``192.00 KiB``; Dask's ``format_bytes`` had given it ``kiB``), each read back
    by Dask's ``parse_bytes`` as the size shown."""
    from dask.utils import parse_bytes

    from pipeline.planning.memory import bytes_text

    x, cfg = small
    rc, out, err = cli("run", cfg)
    assert rc == 0, err
    assert f"{x.nbytes / 1024:.2f} KiB" in out and "kiB" not in out + err
    for n, said in (
        (100, "100 B"),
        (8396, "8.20 KiB"),
        (3 << 20, "3.00 MiB"),
        (5 << 30, "5.00 GiB"),
    ):
        assert bytes_text(n) == said
        assert abs(parse_bytes(said) - n) <= n / 200
