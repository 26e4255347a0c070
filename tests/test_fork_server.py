"""The fork server local GPU workers are forked from (``pipeline/running/fork_server.py``).

The mechanism needs no GPU: a real fork server, started as a run starts it, and a real
LocalCluster of worker processes forked from it, in a process of its own (the server lives as
long as the process that started it).
"""

from __future__ import annotations

import json
from pathlib import Path

import psutil
import pytest

from pipeline.config import load_config
from pipeline.running import fork_server
from tests.faultkit import env, pid_gone, run_python

PROBE = r"""
import json, os, sys


def facts(wanted, preload):
    import os, signal, sys

    return {
        "ppid": os.getppid(),
        "sigint_blocked": signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, []),
        "env": {k: os.environ.get(k) for k in wanted},
        "loaded": [m for m in preload if m in sys.modules],
        "marked": os.environ.get("PIPELINE_FORK_SERVER"),
    }


if __name__ == "__main__":
    import psutil

    from pipeline.running import fork_server

    before = dict(os.environ)
    if sys.argv[1] == "start-fails":  # a preload list multiprocessing refuses: no server
        fork_server.PRELOAD = (*fork_server.PRELOAD, 0)
    if sys.argv[1].startswith("start"):  # as the command line does; an API caller's does not
        fork_server.start()
    changed = sorted(k for k in {*before, *os.environ} if before.get(k) != os.environ.get(k))
    distributed_after_start = "distributed" in sys.modules
    from distributed import Client, LocalCluster

    with fork_server.forked_workers():
        cluster = LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        )
    wanted = fork_server.pre_spawn_environ()
    with Client(cluster) as client:
        workers = list(client.run(facts, sorted(wanted), fork_server.PRELOAD).values())
    cluster.close()
    children = {p.pid: " ".join(p.cmdline()) for p in psutil.Process().children()}
    print(json.dumps({
        "children": children,
        "workers": workers,
        "wanted": wanted,
        "distributed_after_start": distributed_after_start,
        "changed": changed,
        "me": os.getpid(),
    }))
"""


def _probe(tmp_path: Path, mode: str, **extra: str) -> dict:
    """The PROBE's facts, run in a process of its own with ``extra`` variables set and none
    of the nanny's own: a process's value of one wins over the Dask config, and this one may
    have them from the shell or from an earlier test's cluster (distributed's nanny sets
    them in the process that starts it, and a suite-wide run failed on that)."""
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    nannys = {*fork_server.pre_spawn_environ(), "PYTHONHASHSEED"}
    r = run_python(
        [str(script), mode],
        tmp_path,
        {**{k: v for k, v in env().items() if k not in nannys}, **extra},
    )
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_workers_are_forked_from_the_server_with_its_modules_env_and_blocked_sigint(
    tmp_path: Path,
) -> None:
    got = _probe(tmp_path, "start")
    assert not got["distributed_after_start"], "starting the server imported distributed here"
    servers = [
        int(pid) for pid, cmd in got["children"].items() if "multiprocessing.forkserver" in cmd
    ]
    assert len(servers) == 1, got["children"]
    assert len(got["workers"]) == 2
    for w in got["workers"]:
        assert w["ppid"] == servers[0], "a worker not forked from the server"
        assert w["sigint_blocked"]
        assert w["env"] == got["wanted"]
        assert w["marked"] is None  # what ends the server: not in what it forks
        # what the server imported (those installed here: not CuPy or dask-cuda on a CPU host)
        assert {"distributed", "pipeline.running.tasks", "numcodecs"} <= set(w["loaded"])


def test_without_the_server_workers_are_spawned(tmp_path: Path) -> None:
    """A process that did not start the server (an API caller's, which may have a fork server
    of its own): the workers are spawned, as distributed does by default."""
    got = _probe(tmp_path, "no-start")
    assert not any("multiprocessing.forkserver" in c for c in got["children"].values())
    assert [w["ppid"] for w in got["workers"]] == [got["me"]] * 2


ENDING = r"""
import os, sys, time
from pathlib import Path

from pipeline.running import fork_server

# a module the server imports before its own last one, whose exit hook would run in the
# interpreter's teardown
fork_server.PRELOAD = ("teardown_marker", *fork_server.PRELOAD)
fork_server.start()
imported = Path("imported")
deadline = time.monotonic() + 120
while not imported.exists() and time.monotonic() < deadline:
    time.sleep(0.05)
print(imported.read_text(), flush=True)
"""

MARKER = """
import atexit, os
from pathlib import Path

atexit.register(lambda: Path("torn-down").write_text("the server's teardown ran"))
Path("imported").write_text(str(os.getpid()))
"""


def test_the_server_ends_without_the_interpreters_teardown(tmp_path: Path) -> None:
    """Once the command that started it exits, the fork server ends with ``os._exit``
    (``running/server_exit.py``): Python's teardown of the modules it preloaded, which the
    exit hooks of those modules belong to, never runs, while the server holds the command's
    standard output and error open."""
    (tmp_path / "probe.py").write_text(ENDING)
    (tmp_path / "teardown_marker.py").write_text(MARKER)
    # output captured: the server holds the pipes open, so this returns once it has ended
    r = run_python(["probe.py"], tmp_path)
    assert r.returncode == 0, r.stderr
    server = int(r.stdout.strip().splitlines()[-1])
    assert pid_gone(server, 60)  # its pipes are closed: it is ending, if not gone yet
    assert (tmp_path / "imported").exists()
    assert not (tmp_path / "torn-down").exists()


USERS_OWN = r"""
import multiprocessing, os, subprocess, sys

from pipeline.running import fork_server

fork_server.start()
# a program started from the command's process (by a task, say) with a fork server of its own
# that loads some of the pipeline's modules
subprocess.run([sys.executable, "own.py"], check=True)
print(os.environ.get("PIPELINE_FORK_SERVER"), flush=True)
"""

OWN = r"""
import multiprocessing

if __name__ == "__main__":
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["teardown_marker", "pipeline.running.server_exit"])
    p = ctx.Process(target=print)
    p.start()
    p.join()
"""


def test_another_fork_server_ends_as_python_ends_it(tmp_path: Path) -> None:
    """Only the fork server the command line started ends with ``os._exit``: the variable
    that tells it so is not left in the command's environment, so a fork server of a
    program started from the command (which imports ``server_exit``) ends with Python's
    teardown, its modules' exit hooks run. (Found by a review: the variable stayed in the
    command's environment and in its workers', and such a server skipped its exit hooks.)"""
    (tmp_path / "probe.py").write_text(USERS_OWN)
    (tmp_path / "own.py").write_text(OWN)
    (tmp_path / "teardown_marker.py").write_text(MARKER)
    r = run_python(["probe.py"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "None"  # not in the command's environment
    server = int((tmp_path / "imported").read_text())  # the program's own fork server
    assert pid_gone(server, 60)
    assert (tmp_path / "torn-down").exists()


def test_a_dask_config_that_sets_the_workers_environment_has_them_spawned(
    tmp_path: Path,
) -> None:
    """The server starts with the environment distributed's own defaults give a worker,
    before Dask's config is read. A user's Dask config that sets a variable of its own in
    ``distributed.nanny.pre-spawn-environ`` (or another value for one of distributed's) is
    found when the cluster starts: the workers are then spawned by their nannies, with the
    environment the config gives them, not forked with the server's."""
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "d.yaml").write_text(
        "distributed:\n  nanny:\n    pre-spawn-environ:\n"
        "      MY_VAR: x\n      OMP_NUM_THREADS: 3\n"
    )
    got = _probe(tmp_path, "start", DASK_CONFIG=str(tmp_path / "cfg"))
    assert any("multiprocessing.forkserver" in c for c in got["children"].values())
    assert [w["ppid"] for w in got["workers"]] == [got["me"]] * 2, "forked with the wrong env"
    assert got["wanted"]["MY_VAR"] == "x" and got["wanted"]["OMP_NUM_THREADS"] == "3"
    for w in got["workers"]:
        assert w["env"] == got["wanted"]


def test_a_server_that_cannot_start_leaves_the_environment_as_it_was(tmp_path: Path) -> None:
    """A fork server that fails to start (here multiprocessing refuses its preload list) leaves
    this process's environment as it found it, so the workers, spawned, get what the user's
    Dask config sets. (Found by a review: distributed's defaults, set for the server, stayed,
    and since a process's own value of a variable wins in the nanny, replaced the config's.)"""
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "d.yaml").write_text(
        "distributed:\n  nanny:\n    pre-spawn-environ:\n"
        "      MY_VAR: x\n      OMP_NUM_THREADS: 3\n"
    )
    got = _probe(tmp_path, "start-fails", DASK_CONFIG=str(tmp_path / "cfg"))
    assert not any("multiprocessing.forkserver" in c for c in got["children"].values())
    assert got["changed"] == []
    assert [w["ppid"] for w in got["workers"]] == [got["me"]] * 2
    for w in got["workers"]:
        assert w["env"]["OMP_NUM_THREADS"] == "3" and w["env"]["MY_VAR"] == "x"
        assert w["env"] == got["wanted"]


def test_a_cpu_run_starts_no_fork_server(tmp_path: Path) -> None:
    """``start_for`` starts it only for a local GPU cluster: a CPU config starts nothing."""
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        f"input: {{store: {tmp_path / 'in.zarr'}}}\n"
        f"output: {{store: {tmp_path / 'out.zarr'}}}\n"
        "stages: [{op: square}]\nbackend: cpu\n"
    )
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    fork_server.start_for(load_config(cfg))
    assert not {p.pid for p in psutil.Process().children(recursive=True)} - before


def test_the_environment_is_the_nannys() -> None:
    """What distributed's nanny sets before it starts a worker: read without importing
    distributed, the same as the nanny's own."""
    from distributed import Nanny

    nanny = Nanny("tcp://127.0.0.1:8786")  # not started: its environment is made in __init__
    assert fork_server.pre_spawn_environ() == nanny.pre_spawn_env


def test_a_users_pre_spawn_variable_keeps_the_nannys_defaults(tmp_path: Path) -> None:
    """A Dask config file that sets one variable of its own in
    ``distributed.nanny.pre-spawn-environ``: the nanny merges it over distributed's defaults,
    and so does the fork server's environment (found by a review: it dropped the defaults)."""
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "d.yaml").write_text(
        "distributed:\n  nanny:\n    pre-spawn-environ:\n      MY_VAR: x\n"
    )
    probe = (
        "import json\n"
        "from pipeline.running import fork_server\n"
        "ours = fork_server.pre_spawn_environ()\n"  # as a run computes it: no distributed yet
        "from distributed import Nanny\n"
        "print(json.dumps([ours, Nanny('tcp://127.0.0.1:8786').pre_spawn_env]))\n"
    )
    r = run_python(
        ["-c", probe], tmp_path, {**env(), "DASK_CONFIG": str(tmp_path / "cfg")}, timeout=120
    )
    assert r.returncode == 0, r.stderr
    ours, nanny = json.loads(r.stdout.strip().splitlines()[-1])
    assert ours == nanny and ours["MY_VAR"] == "x" and "OMP_NUM_THREADS" in ours


@pytest.mark.gpu
def test_a_gpu_run_starts_the_server_before_its_config_is_checked(tmp_path: Path) -> None:
    """The command line starts the server from a plain read of the YAML, before the config is
    parsed and checked: a local GPU config that is then refused (an unknown stage) has started
    it already; a CPU config, a joined scheduler's and a file that is not a YAML mapping start
    none (each is refused the same way, after)."""
    head = f"input: {{store: {tmp_path / 'in.zarr'}}}\noutput: {{store: {tmp_path / 'out.zarr'}}}\n"
    cases = {
        "gpu": (head + "stages: [{op: nope}]\nbackend: gpu\n", True),
        "auto": (head + "stages: [{op: nope}]\n", True),
        "cpu": (head + "stages: [{op: nope}]\nbackend: cpu\n", False),
        "joined": (
            head + "stages: [{op: nope}]\ncluster: {scheduler: 'tcp://127.0.0.1:1'}\n",
            False,
        ),
        "not-a-mapping": ("- [unclosed\n", False),
    }
    for name, (text, started) in cases.items():
        cfg = tmp_path / f"{name}.yaml"
        cfg.write_text(text)
        r = run_python(["-m", "pipeline", "run", str(cfg), "-v"], tmp_path, timeout=120)
        assert r.returncode == 1, (name, r.stderr)
        assert r.stderr.strip().splitlines()[-1].startswith("error: "), (name, r.stderr)
        assert ("fork server started" in r.stderr) is started, (name, r.stderr)


#: The plan's side of the package, which no worker runs: the config's models (pydantic's
#: validators of every section), YAML loading, the plan, the memory model, the input's Dataset.
PLAN_SIDE = (
    "pipeline.config.loading",
    "pipeline.config.models",
    "pipeline.config.problems",
    "pipeline.planning.blocks",
    "pipeline.planning.rows",
    "pipeline.planning.memory",
    "pipeline.planning.plan",
    "pipeline.planning.variable",
    "pipeline.store.datasets",
)

#: What the server loads, and the CPU backend: imported in a fresh interpreter, the GPU
#: libraries (and the GPU backend) left out where they are not installed.
WORKER_SIDE = r"""
import importlib, json, sys

from pipeline.running import fork_server

for name in (*fork_server.PRELOAD, "pipeline.devices.cpu"):
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name.split(".")[0] not in ("cupy", "dask_cuda", "nvidia"):
            raise
print(json.dumps(sorted(sys.modules)))
"""


def _worker_side(tmp_path: Path) -> set[str]:
    r = run_python(["-c", WORKER_SIDE], tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr
    return set(json.loads(r.stdout.strip().splitlines()[-1]))


def test_the_servers_modules_load_none_of_the_plans(tmp_path: Path) -> None:
    """The fork server's preload (the tasks, the GPU backend, the worker plugin and what a task
    unpickles) and the CPU backend load none of the plan's modules: 0.21 s of the tasks'
    import had been the config's models, the plan and the input's Dataset (issue 17)."""
    loaded = _worker_side(tmp_path)
    assert {"pipeline.running.tasks", "pipeline.planning.specs"} <= loaded
    assert not loaded & set(PLAN_SIDE), sorted(loaded & set(PLAN_SIDE))


RUN_PROBE = r"""
import json, sys

import numpy as np
import zarr


def modules():
    import sys

    return sorted(m for m in sys.modules if m.split(".")[0] == "pipeline")


if __name__ == "__main__":
    import pipeline
    from distributed import Client, LocalCluster

    from pipeline.running import fork_server

    fork_server.start()
    x = np.arange(64 * 48, dtype="float32").reshape(64, 48)
    zarr.create_array(store="in.zarr", shape=x.shape, dtype=x.dtype, chunks=(16, 48))[:] = x
    config = {
        "input": {"store": "in.zarr"},
        "output": {"store": "out.zarr"},
        "stages": [{"op": "multiply", "factor": 2}, {"op": "square"}],
        "backend": "cpu",
        "chunking": {"block": [16, 48]},
    }
    with fork_server.forked_workers():
        cluster = LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0"
        )
    with Client(cluster) as client:
        (forked,) = client.run(modules).values()
        summary = pipeline.run(config, client=client)
        (after,) = client.run(modules).values()
    cluster.close()
    same = bool((zarr.open_array("out.zarr")[:] == (x * 2) ** 2).all())
    print(json.dumps({"forked": forked, "after": after, "status": summary.status, "same": same}))
"""


def test_a_forked_worker_imports_nothing_of_the_package_for_a_run_but_the_cpu_backend(
    tmp_path: Path,
) -> None:
    """A worker forked from the server runs a whole run (the plugin, the checks and facts the
    run asks the workers for, every task) with the server's modules: of the package it
    imports only the CPU backend's (a GPU host's server has the GPU backend), so what the
    server leaves out is never imported by each worker at its first task instead."""
    script = tmp_path / "probe.py"
    script.write_text(RUN_PROBE)
    r = run_python([script], tmp_path)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["status"] == "complete" and got["same"]
    assert not set(got["forked"]) & set(PLAN_SIDE), sorted(set(got["forked"]) & set(PLAN_SIDE))
    missed = set(got["after"]) - _worker_side(tmp_path)
    assert not missed, sorted(missed)
