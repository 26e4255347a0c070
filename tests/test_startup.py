"""What a command loads and starts, and when: the fixed cost of a run kept small.

Each check that is about imports runs in a fresh interpreter, so that ``sys.modules`` says what
the command itself loaded. Clusters are real, the dashboard is asked for over real HTTP, Ctrl-C
is a real SIGINT, and the program's exit is that of a real ``python -m pipeline`` process.
Nothing here asserts a time: what is imported, what is started, and what still happens at the
end.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
import yaml

from pipeline.config import load_config
from pipeline.devices.hardware import Facts, GpuInfo
from pipeline.errors import ClusterError
from pipeline.planning import ClusterPlan, make_plan, plan_here
from pipeline.planning.plan import THREADS_IN_PROCESS
from pipeline.running import cluster, dashboard
from tests.conftest import (
    STAGES,
    make_array,
    pipeline_process,
    read_array,
    reference,
    write_config,
)
from tests.faultkit import (
    DIED_OF_SIGINT,
    cpu_cluster_plan,
    env,
    expected,
    many_blocks_input,
    markers,
    pid_gone,
    run_python,
    status,
)
from tests.terminal import start, wait_until

#: Libraries that a command which does not need them must not load.
HEAVY = ("pydantic", "numpy", "dask", "distributed", "zarr", "rich", "yaml", "numcodecs")

INTERRUPTED = "interrupted: the workers are stopped; `run --resume` finishes the output"


def _printed_json(
    code: str, *, cwd: Path, environ: dict[str, str] | None = None
) -> tuple[Any, str]:
    """Run ``code`` (Python) in a fresh interpreter in ``cwd``, with the tests' environment
    or ``environ``; assert that it exits 0, and return the value of the JSON on the last line
    it printed, and its stderr."""
    r = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env() if environ is None else environ,
        cwd=cwd,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.splitlines()[-1]), r.stderr


def _loaded_after(code: str, *, cwd: Path, extra_path: Path | None = None) -> set[str]:
    """The modules loaded after running ``code`` (Python) in a fresh interpreter; the code's
    own output on stdout must be empty."""
    e = env()
    if extra_path is not None:
        e["PYTHONPATH"] = os.pathsep.join((str(extra_path), e["PYTHONPATH"]))
    script = code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))\n"
    loaded, _ = _printed_json(script, cwd=cwd, environ=e)
    return set(loaded)


def _hooked_env(tmp: Path, hook: str) -> dict[str, str]:
    """The tests' environment with the ``sitecustomize`` module ``hook`` (its ``{where}``
    ``tmp``, where it writes its files) loaded by every Python process started with it."""
    hooks = tmp / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(hook.format(where=str(tmp)))
    e = env()
    e["PYTHONPATH"] = os.pathsep.join((str(hooks), e["PYTHONPATH"]))
    return e


def _small_input(tmp: Path, **sections) -> Path:
    x = np.random.default_rng(0).standard_normal((24, 64)).astype(np.float32)
    make_array(tmp / "in.zarr", x, (4, 64))
    return write_config(tmp, tmp / "in.zarr", tmp / "out.zarr", **sections)


# --------------------------------------------------------------------------------------------
# Imports: each command loads what it needs.


def test_importing_the_package_and_asking_for_help_load_no_library(tmp_path: Path) -> None:
    """``import pipeline`` (what each Dask worker process does, through the command line's
    module it runs as ``__main__``) and ``pipeline --help`` load none of the libraries."""
    loaded = _loaded_after(
        "import contextlib, io, pipeline\n"
        "from pipeline.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    main(['--help'])\n",
        cwd=tmp_path,
    )
    assert not loaded & set(HEAVY), loaded & set(HEAVY)
    # the public API is still there, loaded on first use
    loaded = _loaded_after(
        "import pipeline\nassert pipeline.Config and pipeline.load_config\n", cwd=tmp_path
    )
    assert "pydantic" in loaded


def test_the_plan_of_a_local_run_loads_no_dask_cluster(tmp_path: Path) -> None:
    """``pipeline plan`` of a local run reads the config and the input's metadata: neither
    distributed nor dask.array (nor the dashboard's bokeh) is loaded."""
    cfg = _small_input(tmp_path)
    loaded = _loaded_after(
        "import contextlib, io\n"
        "from pipeline.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    assert main(['plan', {str(cfg)!r}]) == 0\n",
        cwd=tmp_path,
    )
    assert {"pydantic", "zarr"} <= loaded  # it did plan
    assert not loaded & {"distributed", "dask.array", "bokeh", "xarray", "pandas"}
    # nor a remote store's client, for the output's options opened where the plan is made
    assert not loaded & {"aiohttp", "botocore", "s3fs", "fsspec.implementations.http"}, loaded


def test_reading_a_local_store_s_options_loads_no_remote_client(tmp_path: Path) -> None:
    """The config's check of storage_options given as text where a boolean is taken
    (``problems._store_option_problem``) reads the signatures of the libraries the store's
    URL names: a local store's options, read as the config is, load neither aiohttp (fsspec's
    HTTP file system) nor botocore or s3fs."""
    cfg = _small_input(tmp_path, input={"storage_options": {"auto_mkdir": False, "x": "y"}})
    loaded = _loaded_after(
        f"import pipeline\npipeline.load_config({str(cfg)!r})\n",
        cwd=tmp_path,
    )
    assert "pydantic" in loaded  # it did read the config
    assert not loaded & {"aiohttp", "botocore", "s3fs", "fsspec.implementations.http"}, loaded


def test_a_run_loads_neither_dask_array_nor_the_dashboard_unless_asked(tmp_path: Path) -> None:
    """A run's graph is one task per block, written without dask.array; its dashboard (on by
    default) is made only when someone asks for a page of it."""
    cfg = _small_input(tmp_path, cluster={"dashboard": ":0"})
    loaded = _loaded_after(
        "import contextlib, io\n"
        "from pipeline.cli import main\n"
        "out, err = io.StringIO(), io.StringIO()\n"
        "with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):\n"
        f"    assert main(['run', {str(cfg)!r}]) == 0\n",
        cwd=tmp_path,
    )
    assert "distributed" in loaded  # it did run
    assert not loaded & {"dask.array", "bokeh", "distributed.dashboard.scheduler"}
    assert np.array_equal(
        read_array(tmp_path / "out.zarr"), reference(read_array(tmp_path / "in.zarr"))
    )


#: A stand-in for CuPy on a machine without it: it writes down the module that imported it,
#: then fails as an absent CuPy does (so code that tolerates no CuPy goes on).
CUPY_SENTINEL = """
import sys

frame = sys._getframe(1)
while frame is not None and frame.f_globals.get("__name__", "").startswith(
    ("importlib", "_frozen_importlib")
):
    frame = frame.f_back
with open({log!r}, "a") as f:
    f.write((frame.f_globals.get("__name__", "?") if frame else "?") + "\\n")
raise ImportError("the test's CuPy sentinel")
"""


def test_the_client_of_a_gpu_run_never_imports_cupy(tmp_path: Path) -> None:
    """Planning a GPU run, building its graph and plugin, its summary's versions and
    ``pipeline info``: the only import of CuPy in the client is zarr-python's own (optional
    GPU buffers, which it leaves unused). The pipeline imported CuPy to declare the graph's
    chunk type (and allocated with it), and to read library versions."""
    log = tmp_path / "cupy-importers.txt"
    fake = tmp_path / "sentinel" / "cupy"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(CUPY_SENTINEL.format(log=str(log)))
    cfg = _small_input(tmp_path, backend="gpu", cluster={"dashboard": ""})
    gpu = GpuInfo(0, "NVIDIA H200", 140 << 30, 139 << 30, "0000:3b:00.0")
    code = f"""
import contextlib, io
from pipeline.config import load_config
from pipeline.devices.hardware import Facts, GpuInfo
from pipeline.planning import describe, make_plan
from pipeline.reporting.info import versions
from pipeline.running import graph, runner
from pipeline.store import grid
from pipeline.cli import main

facts = Facts(gpu_usable=True, gpu_reason="1 CUDA device(s) visible", gpus=({gpu!r},),
              host_total_bytes=126 << 30, host_available_bytes=120 << 30, cpu_count=16)
plan = make_plan(load_config({str(cfg)!r}), facts)
assert plan.backend == "gpu" and plan.cluster.protocol == "tcp"
describe(plan)
graph.block_tasks(plan.source, plan.sink, plan.chain, plan.backend,
                  list(grid.iter_indices(plan.block_grid)))
runner.setup_plugin(plan)
assert versions()["cupy"] == "absent"
with contextlib.redirect_stdout(io.StringIO()):
    assert main(["info"]) == 0
"""
    loaded = _loaded_after(code, cwd=tmp_path, extra_path=tmp_path / "sentinel")
    importers = set(log.read_text().split()) if log.exists() else set()
    assert importers <= {"zarr.core.buffer.gpu"}, importers
    assert "pipeline.devices.gpu" not in loaded


def test_sending_a_graph_tokenizes_none_of_its_plan_objects(tmp_path: Path, monkeypatch) -> None:
    """``Client.get`` names a graph by a token of every task in it (``LLGExpr(dsk)._name``):
    a run's or a generation's tasks are tokenized by their graph's name, never by walking the
    plan objects they carry (which took 50-170 ms of each GPU run's compute phase on the H200
    host). Each graph's name is its own; a task pickled and unpickled, as a worker gets it,
    is the same call."""
    import pickle

    import dask.tokenize
    from dask._expr import LLGExpr

    from pipeline.running import generate, graph
    from pipeline.running.workers import Bound
    from pipeline.store import grid

    walked: list[str] = []
    for name in ("_normalize_dataclass", "_normalize_pickle"):
        plain = getattr(dask.tokenize, name)

        def counted(o, *a, _plain=plain, **k):
            if not isinstance(o, type):  # a class is pickled by name (LLGExpr's own)
                walked.append(type(o).__name__)
            return _plain(o, *a, **k)

        monkeypatch.setattr(dask.tokenize, name, counted)
    plan = plan_here(load_config(_small_input(tmp_path)))
    blocks = list(grid.iter_indices(plan.block_grid))
    assert len(blocks) > 1
    graphs = [graph.block_tasks(plan.source, plan.sink, plan.chain, plan.backend, blocks)[0]]
    graphs.append(graph.block_tasks(plan.source, plan.sink, plan.chain, plan.backend, blocks)[0])
    sent: list[dict] = []
    real = generate._workers

    @contextlib.contextmanager
    def recorded(cp, *args):  # the real workers, each graph they are given recorded
        with real(cp, *args) as workers:
            plain = workers.compute

            def compute(dsk, keys, each):
                sent.append(dsk)
                return plain(dsk, keys, each)

            workers.compute = compute
            yield workers

    monkeypatch.setattr(generate, "_workers", recorded)
    gen = tmp_path / "gen.yaml"
    gen.write_text(
        yaml.safe_dump(
            {
                "input": {
                    "store": str(tmp_path / "gen.zarr"),
                    "generate": {"shape": [8, 64], "shards": [4, 64], "dtype": "float32"},
                },
                "output": {"store": str(tmp_path / "gen-out.zarr")},
                "stages": STAGES,
                "backend": "cpu",
            }
        )
    )
    generate.generate_input(load_config(gen), progress="none")
    graphs.append(sent[0])
    names = [LLGExpr(dsk)._name for dsk in graphs]
    assert walked == []
    assert len(set(names)) == 3
    task = next(iter(graphs[0].values()))
    assert isinstance(task[0], Bound)
    again = pickle.loads(pickle.dumps(task[0]))
    assert (again.fn, again.name, len(again.args)) == (task[0].fn, task[0].name, 4)


@pytest.mark.gpu
def test_a_gpu_worker_loads_no_scipy(tmp_path: Path) -> None:
    """What the fork server loads for every GPU worker (``fork_server.PRELOAD``) leaves out
    ``cupyx.linalg``, which loads SciPy's sparse matrices (0.4 s of each worker's start on the
    H200 host, 2026-11-30); a GPU task's copies then run without loading them either."""
    code = """
import importlib
import numpy as np
from pipeline.running import fork_server
for name in fork_server.PRELOAD:
    importlib.import_module(name)
from pipeline.devices import gpu
b = gpu.GpuBackend()
y = b.to_host(b.from_host(np.arange(8.0)), pinned=True)
assert gpu.is_pinned(y) and y.tolist() == list(range(8))
"""
    loaded = _loaded_after(code, cwd=tmp_path)
    heavy = {m for m in loaded if m.split(".")[0] == "scipy" or m.startswith("cupyx.linalg")}
    assert not heavy, sorted(heavy)[:20]


#: A ``sitecustomize`` that writes, as the command's own process exits, the names of the
#: packages it loaded (``DIR/loaded-PID``).
LOADED_AT_EXIT = """
import atexit, os, sys

def _write():
    with open(os.path.join({where!r}, f"loaded-{{os.getpid()}}"), "w") as f:
        f.write("\\n".join(sorted({{m.split(".")[0] for m in sys.modules}})))

if sys.orig_argv[1:3] == ["-m", "pipeline"]:
    atexit.register(_write)
"""


@pytest.mark.gpu
def test_the_client_of_a_gpu_run_forks_its_workers_without_loading_pandas(tmp_path: Path) -> None:
    """A GPU run's workers are forked from the fork server the command started (loaded with
    ``fork_server.PRELOAD``); distributed's own list of packages for a fork server to preload
    (pandas, lz4) is not imported in the command's process, where it was of no use (0.34-0.46
    s of the cluster's start on the H200 host). The run's output is right."""
    e = _hooked_env(tmp_path, LOADED_AT_EXIT)
    cfg = _small_input(tmp_path, backend="gpu", cluster={"workers_per_gpu": 2})
    r = subprocess.run(
        [sys.executable, "-m", "pipeline", "run", str(cfg), "--progress", "none"],
        capture_output=True,
        text=True,
        env=e,
        cwd=tmp_path,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    (written,) = tmp_path.glob("loaded-*")  # the command's process's alone
    loaded = set(written.read_text().split())
    assert {"distributed", "dask_cuda"} <= loaded  # it started the cluster
    assert not {"pandas", "lz4"} & loaded, sorted(loaded)
    assert np.array_equal(
        read_array(tmp_path / "out.zarr"), reference(read_array(tmp_path / "in.zarr"))
    )


@pytest.mark.gpu
def test_a_gpu_command_begins_its_workers_before_the_plan_reads_the_input(tmp_path: Path) -> None:
    """The command line's GPU run begins its local cluster before the plan reads the input,
    the workers starting while it does (``workers.begun_early``), and its output is right; a
    run the plan then refuses (an input whose metadata is damaged) stops them and says why
    in one line, writing nothing; so does a run that finds its output complete. The API's
    run starts its cluster after every check, as before."""
    cfg = _small_input(tmp_path, backend="gpu", cluster={"workers_per_gpu": 2, "dashboard": ""})
    said = "workers start while the plan reads the input"

    def command(*more: str) -> subprocess.CompletedProcess:
        return run_python(
            ["-m", "pipeline", "run", str(cfg), "--progress", "none", "-v", *more],
            tmp_path,
            timeout=300,
        )

    r = command()
    assert r.returncode == 0, r.stderr
    assert said in r.stderr
    expected = reference(read_array(tmp_path / "in.zarr"))
    assert np.array_equal(read_array(tmp_path / "out.zarr"), expected)
    r = command("--resume")  # complete: nothing to do, the workers begun stopped
    assert r.returncode == 0, r.stderr
    assert said in r.stderr
    assert "already complete; nothing to do" in r.stderr
    meta = next(p for p in (tmp_path / "in.zarr").iterdir() if p.name in ("zarr.json", ".zarray"))
    meta.write_text("{ damaged")
    r = command("--overwrite")
    assert r.returncode == 1, r.stderr
    assert said in r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and meta.name in last, r.stderr
    assert np.array_equal(read_array(tmp_path / "out.zarr"), expected)  # not replaced


@pytest.mark.gpu
def test_planning_a_gpu_run_makes_no_cuda_context_in_the_client(tmp_path: Path) -> None:
    """On a GPU host: after planning a GPU run, building its graph and ``pipeline info``, the
    client holds no CUDA context on any GPU (as NVML lists the processes that do)."""
    cfg = _small_input(tmp_path, backend="gpu", cluster={"dashboard": ""})
    code = f"""
import contextlib, io, os
import pynvml
import pipeline
from pipeline.cli import main
from pipeline.running import graph
from pipeline.store import grid

def with_context():
    pynvml.nvmlInit()
    try:
        pids = set()
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            pids |= {{p.pid for p in pynvml.nvmlDeviceGetComputeRunningProcesses(h)}}
        return os.getpid() in pids
    finally:
        pynvml.nvmlShutdown()

plan = pipeline.plan(pipeline.load_config({str(cfg)!r}))
assert plan.backend == "gpu"
graph.block_tasks(plan.source, plan.sink, plan.chain, plan.backend,
                  list(grid.iter_indices(plan.block_grid)))
with contextlib.redirect_stdout(io.StringIO()):
    assert main(["info"]) == 0
none = not with_context()
import cupy
cupy.zeros(1)  # a context now: NVML must see it, or it cannot tell us anything here
print("seen" if with_context() else "unseen", none)
"""
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env(), timeout=300
    )
    assert r.returncode == 0, r.stderr
    seen, none = r.stdout.split()
    if seen == "unseen":
        pytest.skip("NVML does not list this process's CUDA context here (a PID namespace?)")
    assert none == "True", "the client made a CUDA context while planning"


# --------------------------------------------------------------------------------------------
# The local cluster: threads for a small CPU run, every GPU worker at once.


def test_a_small_cpu_run_is_threads_and_a_larger_one_worker_processes(tmp_path: Path) -> None:
    """``cluster.protocol: auto``: a CPU run of at most THREADS_IN_PROCESS task threads runs
    them in this process; more threads, or the GPU backend, run worker processes; a protocol
    the config names is kept, and so is auto on a cluster the run did not start."""
    cfg = _small_input(tmp_path)

    def protocol(**cluster) -> str:
        over = {f"cluster.{k}": v for k, v in cluster.items()}
        return plan_here(load_config(cfg, over)).cluster.protocol

    assert protocol() == "inproc"  # 2 workers x 1 thread
    assert protocol(workers=THREADS_IN_PROCESS) == "inproc"
    assert protocol(workers=THREADS_IN_PROCESS + 1) == "tcp"
    assert protocol(workers=2, threads_per_worker=THREADS_IN_PROCESS) == "tcp"
    assert protocol(protocol="tcp") == "tcp"
    assert protocol(workers=8, protocol="inproc") == "inproc"
    gpu = Facts(
        gpu_usable=True,
        gpu_reason="1 CUDA device(s) visible",
        gpus=(GpuInfo(0, "NVIDIA H200", 140 << 30, 139 << 30),),
        host_total_bytes=126 << 30,
        host_available_bytes=120 << 30,
        cpu_count=16,
    )
    assert make_plan(load_config(cfg, {"backend": "gpu"}), gpu).cluster.protocol == "tcp"
    # a cluster that is already there (joined, or a caller's client): not this process's to
    # choose, so not taken for threads (a memory:// store stays refused)
    joined = make_plan(load_config(cfg), Facts.local(want_gpu=False), 2, 1)
    assert joined.cluster.protocol == "auto"


def test_a_threads_run_starts_no_process_and_reports_the_shared_memory(tmp_path: Path, cli) -> None:
    """The default small CPU run: no process is started; the summary's peak host memory is
    that of the run's process, against the budget of all its workers."""
    cfg = _small_input(tmp_path)
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    rc, out, err = cli("run", cfg, "--summary-json", tmp_path / "s.json")
    assert rc == 0, err
    assert not {p.pid for p in psutil.Process().children(recursive=True)} - before
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["workers_in_process"] is True and s["workers"] == 2
    row = next(ln for ln in out.splitlines() if "peak host memory" in ln)
    assert "in the run's process" in row and "2 workers are threads" in row
    assert np.array_equal(
        read_array(tmp_path / "out.zarr"), reference(read_array(tmp_path / "in.zarr"))
    )


def test_workers_made_with_copies_start_in_one_scale(tmp_path: Path) -> None:
    """CopiesPerDevice (what gives each GPU of a LocalCUDACluster its workers_per_gpu
    workers): the workers one scale asks for come with their copies, same spec, as NAME-k,
    and all of them start in that scale."""
    import logging

    from distributed import Client, LocalCluster

    class Copied(cluster.CopiesPerDevice, LocalCluster):
        copies = 3

    with (
        Copied(
            n_workers=0,
            threads_per_worker=1,
            processes=False,
            silence_logs=logging.ERROR,
            **dashboard.scheduler_options(None),
        ) as lc,
        Client(lc) as client,
    ):
        lc.scale(6)
        client.wait_for_workers(6, timeout=120)
        assert sorted(map(str, lc.worker_spec)) == ["0", "0-1", "0-2", "1", "1-1", "1-2"]
        one, copied = lc.worker_spec[1], lc.worker_spec["1-2"]
        assert copied["cls"] is one["cls"] and copied["options"].keys() == one["options"].keys()
        assert copied["options"] is not one["options"]  # a copy: the spec of a worker of its own


@pytest.mark.parametrize("plugin_given", ["while-starting", "once-up"])
def test_a_cluster_begun_ahead_is_taken_by_connect_with_its_plugin(plugin_given: str) -> None:
    """A local cluster begun ahead of its plan (``cluster.begin``, as a command line's GPU run
    does) is handed to ``connect`` (``started``): the plugin given then reaches every worker,
    whether the start registers it (given while the workers start) or ``connect`` does (given
    once they are up), and leaving closes the cluster, its worker processes gone."""
    p = cpu_cluster_plan(workers=2)
    begun = cluster.begin(p, quiet=True)
    if plugin_given == "once-up":
        assert begun.done.wait(120) and begun.error is None
    plugin = cluster.PipelineSetup("cpu", None)
    with cluster.connect(p, quiet=True, plugin=plugin, started=begun) as client:
        has = client.run(lambda dask_worker: "pipeline-setup" in dask_worker.plugins)
        pids = [w.pid for w in begun.cluster.workers.values()]
    assert len(has) == 2 and all(has.values()), has
    assert len(pids) == 2 and all(pid_gone(pid) for pid in pids)
    assert not begun.stop()  # taken and closed: a second stop does nothing


def test_a_cluster_begun_ahead_and_never_taken_is_stopped() -> None:
    """A cluster begun ahead whose run never takes it (its plan refused the run) is stopped:
    the start is let end, then every worker process is closed; stopping again does
    nothing."""
    import multiprocessing

    before = set(multiprocessing.active_children())
    begun = cluster.begin(cpu_cluster_plan(workers=2), quiet=True)
    assert not begun.stop()
    assert begun.done.is_set() and begun.error is None
    left = set(multiprocessing.active_children()) - before
    assert not left, left
    assert not begun.stop()
    with pytest.raises(ClusterError, match="stopped before it was used"):
        begun.client()


@pytest.mark.gpu
def test_every_gpu_worker_is_up_when_the_cluster_has_started() -> None:
    """A local GPU cluster of workers_per_gpu 3 has all of its workers registered as soon as
    it is made (they are started together, not one per GPU first and the rest after), each
    GPU's workers seeing that GPU first."""
    from pipeline.devices.hardware import Facts as HostFacts

    gpus = tuple(range(len(HostFacts.local().gpus)))
    p = ClusterPlan(
        scheduler="local",
        backend="gpu",
        gpus=gpus,
        workers=3 * len(gpus),
        threads_per_worker=2,
        workers_per_gpu=3,
        device_budget=None,
        host_budget=None,
        protocol="tcp",
        timeout=10.0,
        dashboard="",
    )
    lc = cluster._start_local(p, 40, {"PIPELINE_TEST_ENV": "every copy"})
    try:
        assert len(lc.scheduler.workers) == 3 * len(gpus)
        assert all(  # the environment given (an MPS daemon's) reaches every copy's spec
            spec["options"]["env"]["PIPELINE_TEST_ENV"] == "every copy"
            for spec in lc.worker_spec.values()
        )
        firsts = [
            spec["options"]["env"]["CUDA_VISIBLE_DEVICES"].split(",")[0]
            for spec in lc.worker_spec.values()
        ]
        assert sorted(firsts) == sorted(str(g) for g in gpus for _ in range(3))
    finally:
        lc.close(timeout=60)


# --------------------------------------------------------------------------------------------
# The dashboard, made on first use.


def _plan(dashboard: str, protocol: str = "inproc") -> ClusterPlan:
    return cpu_cluster_plan(protocol=protocol, dashboard=dashboard)


def test_the_dashboard_is_made_on_the_first_request(tmp_path: Path) -> None:
    """Its link is known once the cluster is up, but bokeh is loaded only when a page is
    asked for; then every page answers, and the scheduler's own routes never waited."""
    code = f"""
import json, sys, urllib.request
from pipeline.planning import ClusterPlan
from pipeline.running import cluster, dashboard

p = ClusterPlan(**{_plan(":0").__dict__!r})
with cluster.connect(p) as client:
    link = client.dashboard_link
    before = "bokeh" in sys.modules
    health = urllib.request.urlopen(link.replace("/status", "/health"), timeout=120).read()
    still = "bokeh" in sys.modules
    pages = {{}}
    for page in ("status", "workers", "status", ""):
        r = urllib.request.urlopen(link.replace("/status", "/" + page), timeout=120)
        pages[page] = (r.status, r.url.rsplit("/", 1)[1], "Dask" in r.read().decode())
    print(json.dumps([link, before, health.decode(), still, pages, "bokeh" in sys.modules]))
"""
    printed, _ = _printed_json(code, cwd=tmp_path)
    link, before, health, still, pages, after = printed
    assert link.startswith("http://") and link.endswith("/status")
    assert before is False and health == "ok" and still is False
    assert pages["status"] == [200, "status", True]
    assert pages["workers"] == [200, "workers", True]
    assert pages[""][:2] == [200, "status"]  # / goes to the status page, as Dask's does
    assert after is True


def test_a_dashboard_port_in_use_is_a_note_not_dasks_warning(tmp_path: Path) -> None:
    """`run` with `cluster.dashboard` on a port another program listens on: distributed puts
    the dashboard on another port with a UserWarning of 3 lines and its source line on
    stderr; the run prints instead one note naming both ports and the setting, then the
    dashboard's link, and no warning."""
    import socket

    make_array(tmp_path / "in.zarr", np.arange(64, dtype=np.float32).reshape(8, 8), (4, 8))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg = write_config(
            tmp_path,
            tmp_path / "in.zarr",
            tmp_path / "out.zarr",
            cluster={"dashboard": f"127.0.0.1:{port}", "protocol": "tcp"},
        )
        proc = pipeline_process("run", cfg, "--progress", "none")
    assert proc.returncode == 0, proc.stderr
    assert "Warning" not in proc.stderr, proc.stderr
    notes = [line for line in proc.stderr.splitlines() if "in use" in line]
    assert len(notes) == 1, proc.stderr
    assert notes[0].startswith(f"note: the dashboard's port {port} is in use"), notes
    assert "set cluster.dashboard to another address" in notes[0], notes
    link = [line for line in proc.stderr.splitlines() if line.startswith("dashboard: ")]
    assert len(link) == 1 and f":{port}/" not in link[0], proc.stderr
    assert np.array_equal(
        read_array(tmp_path / "out.zarr"), reference(read_array(tmp_path / "in.zarr"))
    )


# --------------------------------------------------------------------------------------------
# Ctrl-C and the program's end, with the workers as threads.


def _rows_config(d: Path, rows: int) -> tuple[Path, np.ndarray]:
    """An input of ``rows`` blocks (one row each) and the config of a run of it on the
    default small CPU cluster (threads)."""
    x = many_blocks_input(d / "in.zarr", rows)
    cfg = {
        "input": {"store": str(d / "in.zarr")},
        "output": {"store": str(d / "out.zarr"), "chunks": [1, 1024]},
        "stages": STAGES,
        "backend": "cpu",
        "chunking": {"block": [1, 4096]},
        "cluster": {"workers": 2, "threads_per_worker": 1, "dashboard": ""},
    }
    (d / "run.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return d / "run.yaml", x


def test_ctrl_c_stops_a_threads_run_which_resume_finishes(tmp_path: Path, cli) -> None:
    """Ctrl-C (SIGINT to the process group) while the threads compute: the one line, dead of
    the SIGINT, no process was ever started, the output incomplete; ``--resume`` completes it."""
    out = tmp_path / "out.zarr"
    for rows in (400, 1600, 6400):  # a larger input where the run outpaced the interrupt
        shutil.rmtree(out, ignore_errors=True)
        cfg, x = _rows_config(tmp_path, rows)
        w = start("run", cfg, "--progress", "none", cwd=tmp_path)
        try:
            wait_until(lambda w=w: markers(out) >= 3 or w.proc.poll() is not None, timeout=180)
            if w.proc.poll() is not None:
                w.finish()
                continue
            w.interrupt()
            rc, err = w.finish()
        finally:
            w.close()
        if rc == 0:
            continue  # it ended just before the interrupt
        break
    else:
        pytest.fail("every run ended before it could be interrupted")
    assert rc == DIED_OF_SIGINT, err
    assert [ln for ln in err.splitlines() if ln.strip()] == [INTERRUPTED], err
    assert not w.workers(), "a CPU run this small starts no worker process"
    assert status(out) == "incomplete" and 0 < markers(out) < rows
    assert not (out / ".pipeline" / "lock").exists()
    rc, _, err = cli("run", cfg, "--resume", "--progress", "none")
    assert rc == 0, err
    assert status(out) == "complete"
    assert np.array_equal(read_array(out), expected(x), equal_nan=True)


#: Makes every Python process of the test write a file when its atexit hooks run.
EXIT_HOOK = """
import atexit, os

def _mark():
    with open(os.path.join({where!r}, f"exit-{{os.getpid()}}"), "w") as f:
        f.write("atexit ran")

atexit.register(_mark)
"""


def test_the_program_ends_with_its_exit_hooks_run_and_its_output_whole(tmp_path: Path) -> None:
    """``python -m pipeline run`` skips the interpreter's teardown at its end, not what must
    happen: the atexit hooks run (the GPU backend frees its codecs in one), the summary is
    printed whole into a pipe and written as JSON, and the exit status is the command's."""
    e = _hooked_env(tmp_path, EXIT_HOOK)
    cfg = _small_input(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "run", str(cfg), "--summary-json", "s.json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=e,
        cwd=tmp_path,
    )
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert out.startswith("run summary") and out.rstrip().splitlines()[-1].split()[0] == "output"
    assert json.loads((tmp_path / "s.json").read_text())["status"] == "complete"
    assert (tmp_path / f"exit-{proc.pid}").read_text() == "atexit ran"
    # a failing command: its status and its one line
    (tmp_path / "bad.yaml").write_text("input: {store: nowhere.zarr}\n")
    r = subprocess.run(
        [sys.executable, "-m", "pipeline", "run", "bad.yaml"],
        capture_output=True,
        text=True,
        env=e,
        cwd=tmp_path,
        timeout=300,
    )
    assert r.returncode == 1 and r.stderr.startswith("error: "), r.stderr


GC_HOOK = """
import atexit, gc, json, os

def _mark():
    with open(os.path.join({where!r}, f"gc-{{os.getpid()}}"), "w") as f:
        json.dump([gc.isenabled(), gc.get_freeze_count(), gc.get_count()], f)

atexit.register(_mark)
"""


@pytest.mark.parametrize("command", ["run", "plan"])
def test_the_program_collects_garbage_again_once_its_work_begins(
    tmp_path: Path, command: str
) -> None:
    """The program pauses Python's cyclic garbage collector for its start (imports, config)
    only: at its end the collector runs, with the start's objects frozen out of its passes;
    a caller's ``main()`` leaves the caller's collector as it was."""
    e = _hooked_env(tmp_path, GC_HOOK)
    cfg = _small_input(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", command, str(cfg)],
        capture_output=True,
        text=True,
        env=e,
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    (mark,) = tmp_path.glob("gc-*")
    enabled, frozen, _ = json.loads(mark.read_text())
    assert enabled and frozen > 10_000  # the modules' objects, left out of later passes
    mark.unlink()
    again = ["--overwrite"] if command == "run" else []  # the output the program wrote
    state, _ = _printed_json(
        "import contextlib, gc, io, json\n"
        "from pipeline.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    assert main({[command, str(cfg), *again]!r}) == 0\n"
        "print(json.dumps([gc.isenabled(), gc.get_freeze_count()]))\n",
        cwd=tmp_path,
    )
    assert state == [True, 0]


def test_overlapping_runs_keep_dasks_logs_silenced_until_the_last_cluster_closes(
    tmp_path: Path,
) -> None:
    """Two runs at once in one process (threads), each with a local cluster of its own:
    distributed's ``silence_logs`` saved its stderr handlers' level when its cluster started
    and put it back when it closed, so the second saved the first's lowered level, and the
    first's close restored Dask's INFO lines while the second still ran (its close printed
    them), and where the second ended first, its close left them lowered. The silence is
    counted (``cluster.silenced_logs``): lowered while any run's cluster is up, restored once
    the last one has closed, in either order. In a fresh interpreter: under pytest (whose
    capture handler is on the root logger) distributed adds no handler of its own."""
    code = f"""
import contextlib, json, logging
import distributed
from pipeline.planning import ClusterPlan
from pipeline.running import cluster

handlers = [
    h
    for root in ("distributed", "bokeh")
    for h in logging.getLogger(root).handlers
    if isinstance(h, logging.StreamHandler)
]
seen = [[h.level for h in handlers]]
p = ClusterPlan(**{_plan("").__dict__!r})
for first_ends_first in (True, False):
    with contextlib.ExitStack() as first:
        first.enter_context(cluster.connect(p, quiet=True))
        seen.append([h.level for h in handlers])
        with cluster.connect(p, quiet=True):
            if first_ends_first:
                first.close()  # the first run ends while the second runs
            seen.append([h.level for h in handlers])
        seen.append([h.level for h in handlers])
    seen.append([h.level for h in handlers])
print(json.dumps(seen))
"""
    seen, stderr = _printed_json(code, cwd=tmp_path)
    before, quiet = seen[0], [40] * len(seen[0])
    assert before and 40 not in before, seen
    # started, both up (the first ended), the second ended, out; then the other order
    assert seen[1:5] == [quiet, quiet, before, before], seen
    assert seen[5:] == [quiet, quiet, quiet, before], seen
    assert " - INFO - " not in stderr, stderr  # no close said Dask's INFO lines


def test_an_api_runs_cluster_says_nothing_of_dasks_while_it_stops(tmp_path: Path) -> None:
    """A caller's process (the API's run, Dask's handlers at errors while its cluster is up):
    what the scheduler logs as the run closes its cluster (here an error for each worker it
    removes) stays off stderr, as the worker processes' do; the handlers are back at their own
    level after. The scheduler's errors at a run's close had reached the caller's stderr."""
    code = f"""
import json, logging
import distributed
from distributed.scheduler import Scheduler
from pipeline.planning import ClusterPlan
from pipeline.running import cluster

removes = Scheduler.remove_worker

def remove_worker(self, *args, **kwargs):
    logging.getLogger("distributed.scheduler").error("REMOVED-AS-THE-RUN-STOPS")
    return removes(self, *args, **kwargs)

Scheduler.remove_worker = remove_worker
handlers = logging.getLogger("distributed").handlers
handlers = [h for h in handlers if isinstance(h, logging.StreamHandler)]
before = [h.level for h in handlers]
p = ClusterPlan(**{_plan("", protocol="tcp").__dict__!r})
with cluster.connect(p, quiet=True):
    up = [h.level for h in handlers]
print(json.dumps([before, up, [h.level for h in handlers]]))
"""
    (before, up, after), stderr = _printed_json(code, cwd=tmp_path)
    assert before and up == [40] * len(before) and after == before, (before, up, after)
    assert "REMOVED-AS-THE-RUN-STOPS" not in stderr, stderr
    assert "Traceback" not in stderr, stderr
