"""A joined scheduler lost at each moment of a run: connecting, asking its workers' facts for the
plan, setting its workers up, computing, finishing, closing.

Each scheduler is a real ``dask scheduler`` process with one real ``dask worker``; it dies by
SIGKILL at one chosen request of the run (the preload of tests/dying_scheduler.py), so every
moment is hit every time. A loss before the work ends is one ClusterError (``reason`` 'lost',
``address``, ``during``): no distributed ``OSError`` / ``CommClosedError`` / ``TimeoutError``
comes out, nothing is marked complete, and an output already made stays resumable. A loss
after every block is written and recorded leaves a complete output.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dask.config
import numpy as np
import pytest

import pipeline
from pipeline.errors import ClusterError
from pipeline.running import cluster
from tests import dying_scheduler
from tests.conftest import make_array, read_array, reference, write_config
from tests.faultkit import chunk_files, env, error_of, kill_group, status

ROOT = Path(__file__).resolve().parents[1]

#: cluster.timeout of these runs: generous (a busy machine); a lost scheduler is told sooner
TIMEOUT = 20.0

#: Dask settings of the runs under test: connections given up on within 5 s; and no
#: periodic ``identity`` request of the client (every 2 s by default), which would shift the
#: count of the scheduler's requests that tests/dying_scheduler.py kills it at.
DASK = {
    "distributed.comm.timeouts.connect": "5s",
    "distributed.client.scheduler-info-interval": "1h",
}
DASK_ENV = {
    "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "5s",
    "DASK_DISTRIBUTED__CLIENT__SCHEDULER_INFO_INTERVAL": "1h",
}


def _wait_for(what: Callable[[], Any], proc: subprocess.Popen, log: Path) -> Any:
    """``what()``'s first answer that is neither an error nor None, within 120 s while
    ``proc`` runs."""
    deadline = time.monotonic() + 120
    while True:
        with contextlib.suppress(OSError, ValueError, KeyError):
            got = what()
            if got is not None:
                return got
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)


@contextlib.contextmanager
def dying_cluster(tmp: Path, moment: str = "") -> Iterator[str]:
    """A ``dask scheduler`` that dies by SIGKILL at ``moment`` ('OP:N', tests/dying_scheduler.py;
    never where empty) and one single-thread ``dask worker``, each a process of its own; the
    scheduler's address once the worker has joined it. Both are killed at the end."""
    joined = tmp / "worker-joined"
    scheduler_file = tmp / "scheduler.json"
    log_path = tmp / "dask.log"
    log = log_path.open("w")
    common: dict[str, Any] = dict(
        env={**env(), dying_scheduler.VARIABLE: moment, dying_scheduler.JOINED: str(joined)},
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    dask = [sys.executable, "-m", "dask"]
    procs = [
        subprocess.Popen(
            [*dask, "scheduler", "--scheduler-file", str(scheduler_file), "--host", "127.0.0.1"]
            + ["--port", "0", "--no-dashboard", "--preload", dying_scheduler.__file__],
            **common,
        )
    ]
    try:
        address = _wait_for(
            lambda: json.loads(scheduler_file.read_text())["address"], procs[0], log_path
        )
        procs.append(
            subprocess.Popen(
                [*dask, "worker", address, "--nthreads", "1", "--no-dashboard"], **common
            )
        )
        _wait_for(lambda: joined.exists() or None, procs[1], log_path)
        yield address
    finally:
        for p in reversed(procs):
            kill_group(p)
        log.close()


def _input(tmp: Path) -> np.ndarray:
    """A 60 x 40 float32 input of 3 blocks (``chunking.target_bytes`` 3200), tmp/in.zarr."""
    x = np.random.default_rng(7).standard_normal((60, 40)).astype(np.float32)
    make_array(tmp / "in.zarr", x, (20, 40))
    return x


def _config(tmp: Path, scheduler: str, name: str = "run.yaml") -> Path:
    return write_config(
        tmp,
        tmp / "in.zarr",
        tmp / "out.zarr",
        name,
        chunking={"target_bytes": 3200},
        cluster={"scheduler": scheduler, "timeout": TIMEOUT},
    )


def _run_joined(cfg: Path) -> ClusterError | None:
    """``pipeline.run(cfg)`` on its joined scheduler: the ClusterError it raised, or None."""
    with dask.config.set(DASK):
        try:
            pipeline.run(cfg)
        except ClusterError as e:
            assert "\n" not in str(e), str(e)
            return e
    return None


#: Each moment (tests/dying_scheduler.py) at which the scheduler dies before the work has
#: ended, and the phases the ClusterError may name. Where two are named, distributed's
#: ``scheduler_info`` answered from what it last knew and the loss is seen by the next call.
LOST = {
    "identity:3": {"connect"},  # waiting for its first worker (the 3rd identity request)
    "ncores:1": {"plan"},  # its workers, each asked on its own (cluster.ask_workers)
    "broadcast:1": {"plan"},  # the device memory its workers hold (Client.run)
    "broadcast:2": {"plan"},  # its workers' facts (Client.run)
    "broadcast:3": {"plan"},  # whether its workers open the stores' file systems (Client.run)
    "identity:4": {"plan", "setup"},  # its workers' threads (Client.scheduler_info)
    "register_worker_plugin:1": {"setup"},  # the workers' set-up (Client.register_plugin)
    "identity:5": {"setup", "compute"},  # the dashboard's link
    "broadcast:4": {"setup"},  # tasks of an earlier run still writing the output (Client.run)
    "broadcast:5": {"compute"},  # the peaks reset, the output made (Client.run)
    "update-graph:1": {"compute"},  # the graph submitted
    "gather:1": {"compute"},  # the first results gathered
}


@pytest.mark.parametrize("moment", list(LOST))
def test_a_scheduler_lost_before_the_work_ends_is_a_cluster_error(tmp_path, moment) -> None:
    x = _input(tmp_path)
    out = tmp_path / "out.zarr"
    with dying_cluster(tmp_path, moment) as address:
        e = _run_joined(_config(tmp_path, address))
    assert e is not None, "the run succeeded: its scheduler did not die"
    assert (e.reason, e.address) == ("lost", address)
    assert e.during in LOST[moment], e.during
    if e.during != "compute":  # nothing was written
        assert not out.exists()
        return
    # the output is made: marked incomplete, its run record kept, its lock given up; a
    # resume (on a local cluster) finishes it
    assert status(out) == "incomplete"
    assert (out / ".pipeline").is_dir()
    assert not (out / ".pipeline" / "lock").exists()
    pipeline.run(_config(tmp_path, "local", "local.yaml"), resume=True)
    assert status(out) == "complete"
    assert np.array_equal(read_array(out), reference(x))


#: The moments after the work: which workers are gone (the 6th Client.nthreads: one asked
#: before each of the 5 Client.run before it, cluster.ask_workers), the peaks (Client.run),
#: the client's close.
AFTER_THE_WORK = ["ncores:6", "broadcast:6", "close-client:1"]


@pytest.mark.parametrize("moment", AFTER_THE_WORK)
def test_a_scheduler_lost_after_every_block_is_written_leaves_a_complete_output(
    tmp_path, moment
) -> None:
    """Lost while the run reads its statistics (which workers are gone, the peaks) or closes
    its client: every block is written and recorded, so the output is complete; the summary
    leaves out what only the scheduler knew."""
    x = _input(tmp_path)
    with dying_cluster(tmp_path, moment) as address, dask.config.set(DASK):
        summary = pipeline.run(_config(tmp_path, address))
    assert summary.status == "complete"
    out = tmp_path / "out.zarr"
    assert status(out) == "complete"
    assert not (out / ".pipeline").exists()
    assert np.array_equal(read_array(out), reference(x))


def test_a_report_of_a_run_that_lost_its_scheduler_is_not_what_fails(tmp_path) -> None:
    """``--report``: the report is fetched from the scheduler after the work; with the
    scheduler lost during the work, the run's error is the lost scheduler's."""
    _input(tmp_path)
    with (
        dying_cluster(tmp_path, "update-graph:1") as address,
        dask.config.set(DASK),
        pytest.raises(ClusterError) as e,
    ):
        pipeline.run(_config(tmp_path, address), report=str(tmp_path / "report.html"))
    assert (e.value.reason, e.value.address, e.value.during) == ("lost", address, "compute")
    assert status(tmp_path / "out.zarr") == "incomplete"


@pytest.mark.parametrize("moment", ["identity:1", "identity:2", "register-client:1"])
def test_a_scheduler_that_dies_as_it_is_joined_is_unreachable(tmp_path, moment) -> None:
    """Dead while asked who it is (the 1st identity request) or while the client connects
    (the 2nd, and its registration): not reached, said as such (not as a server that does not
    speak Dask)."""
    with (
        dying_cluster(tmp_path, moment) as address,
        dask.config.set(DASK),
        pytest.raises(ClusterError) as e,
    ):
        cluster.join(address, TIMEOUT).close()
    assert (e.value.reason, e.value.address, e.value.timeout) == ("unreachable", address, TIMEOUT)


def test_a_workers_own_error_is_not_a_lost_scheduler(tmp_path) -> None:
    """An ``OSError`` raised on a worker, with the scheduler alive, comes out as it is."""
    from distributed import Client

    with dying_cluster(tmp_path) as address, Client(address, timeout="30s") as client:
        missing = str(tmp_path / "missing")
        with pytest.raises(FileNotFoundError):
            cluster.ask(client, lambda: client.run(os.stat, missing), "t", address, "plan")
        # and the scheduler is still there
        assert cluster.ask(client, lambda: client.run(os.getpid), "t", address, "plan")


#: A command of the command line, and the moment its scheduler dies: ``run`` at its question
#: of the workers' held memory (it gave ``error: OSError: Timed out trying to connect ...
#: after N s`` at the next question, once the client's timeout had passed), ``plan`` at its
#: workers' facts and ``generate`` while setting the workers up (both gave ``error:
#: CommClosedError: ...``).
COMMANDS = {
    "run": ("broadcast:1", "plan"),
    "plan": ("broadcast:1", "plan"),
    "generate": ("register_worker_plugin:1", "setup"),
}


def _command_config(tmp: Path, command: str, address: str) -> Path:
    """The config of ``command`` (run, plan, generate) on the scheduler ``address``."""
    if command == "generate":
        generate = {"shape": [60, 40], "chunks": [20, 40], "dtype": "float32", "seed": 1}
        return write_config(
            tmp,
            tmp / "gen.zarr",
            tmp / "out.zarr",
            input={"generate": generate},
            cluster={"scheduler": address, "timeout": TIMEOUT},
        )
    _input(tmp)
    return _config(tmp, address)


def _nothing_written(tmp: Path, command: str) -> None:
    assert not (tmp / "out.zarr").exists()
    if command == "generate":  # the input is made, marked unfinished, but no unit generated
        assert chunk_files(tmp / "gen.zarr") == 0


@pytest.mark.parametrize("command", list(COMMANDS))
def test_the_command_line_ends_a_lost_scheduler_with_its_error(tmp_path, command) -> None:
    """As its own process: exit status 1 with the ClusterError (its traceback's last line,
    with ``--debug``; without, the command line prints that error's one line, as for every
    PipelineError: tests/test_errors.py) naming the scheduler; nothing written."""
    with dying_cluster(tmp_path, COMMANDS[command][0]) as address:
        cfg = _command_config(tmp_path, command, address)
        proc = subprocess.run(
            [sys.executable, "-m", "pipeline", command, str(cfg), "--debug"],
            capture_output=True,
            text=True,
            timeout=240,
            env={**env(), **DASK_ENV},
            cwd=tmp_path,
        )
    assert proc.returncode == 1, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"{ClusterError.__module__}.ClusterError: "), proc.stderr
    assert address in last
    _nothing_written(tmp_path, command)


@pytest.mark.parametrize("command", ["plan", "generate"])
def test_the_commands_lost_scheduler_has_its_fields(tmp_path, command) -> None:
    """``plan`` and ``generate`` (``run``'s: above), in this process: the fields."""
    moment, during = COMMANDS[command]
    with dying_cluster(tmp_path, moment) as address, dask.config.set(DASK):
        e = error_of(command, _command_config(tmp_path, command, address))
    assert isinstance(e, ClusterError), e
    assert (e.reason, e.address, e.during) == ("lost", address, during)
    _nothing_written(tmp_path, command)


def test_a_scheduler_lost_while_generating_says_to_generate_the_input_again(tmp_path) -> None:
    """``generate`` whose scheduler dies as the units are submitted (``update-graph``) had
    said "what it did not finish stays marked unfinished ...; then `run --resume` finishes
    the output": the line says that the input stays unfinished and to generate it again,
    and generating it again (here on a local cluster) makes it."""
    with dying_cluster(tmp_path, "update-graph:1") as address, dask.config.set(DASK):
        cfg = _command_config(tmp_path, "generate", address)
        e = error_of("generate", cfg)
    assert isinstance(e, ClusterError), e
    assert (e.reason, e.address, e.during) == ("lost", address, "compute"), e.data
    assert f"the input {tmp_path / 'gen.zarr'} stays unfinished" in str(e), e
    assert str(e).endswith("then generate it again") and "--resume" not in str(e), e
    local = write_config(
        tmp_path,
        tmp_path / "gen.zarr",
        tmp_path / "out.zarr",
        "local.yaml",
        input={"generate": {"shape": [60, 40], "chunks": [20, 40], "dtype": "float32", "seed": 1}},
    )
    assert error_of("generate", local) is None


def test_a_run_stopped_by_a_lost_scheduler_is_resumed_with_nothing_to_mend(tmp_path, cli) -> None:
    """h86c: the run record keeps the line of a run stopped by its scheduler lost during the
    work (h85f), and ``plan``, ``verify`` and the resume had each said "mend that" of it,
    where nothing is to mend (a resume on a cluster that runs finishes the output). They say
    the line, and `run --resume` alone; the record says so (``stopped_resumes``); the resume
    finishes the output. A stop whose line names something to mend keeps "mend that":
    tests/test_faults.py, tests/test_xarray.py."""
    x = _input(tmp_path)
    out = tmp_path / "out.zarr"
    with dying_cluster(tmp_path, "update-graph:1") as address:
        e = _run_joined(_config(tmp_path, address))
    assert e is not None and (e.reason, e.during, e.resumes) == ("lost", "compute", True), e
    record = json.loads((out / ".pipeline" / "run.json").read_text())
    assert record["stopped_resumes"] is True, record
    stop = record["stopped"]  # the command line's words (the call's are the API's)
    assert stop.startswith(f"lost the Dask scheduler at {address}"), stop
    local = _config(tmp_path, "local", "local.yaml")
    rc, table, err = cli("plan", local)
    row = next(ln for ln in table.splitlines() if "output now" in ln)
    assert rc == 0, table + err
    assert f'incomplete (the last run stopped on "{stop}"): `run --resume` finishes it' in row, row
    assert "mend" not in row, row
    rc, _, err = cli("verify", local, "-q")
    assert rc == 1 and err.strip().endswith(
        f'its last run stopped on "{stop}"; `run --resume` finishes it'
    ), err
    assert "mend" not in err, err
    rc, table, _ = cli("run", local, "--resume", "--dry-run")
    row = next(ln for ln in table.splitlines() if "output now" in ln)
    assert rc == 0 and "this run resumes it" in row and "mend" not in row, row
    rc, _, err = cli("run", local, "--resume", "--progress", "none", "-q")
    assert rc == 0, err
    assert f'stopped on "{stop}": this run finishes it' in err and "mend" not in err, err
    assert status(out) == "complete"
    assert np.array_equal(read_array(out), reference(x))
