"""Joining an existing cluster: `dask scheduler` and `dask worker` started as separate
processes (as on a real cluster, CPU here), then `run --scheduler ADDRESS`; and addresses where
no scheduler is (an HTTP server, a silent port, nobody, a malformed address), each refused in
one line within cluster.timeout."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.config import load_config
from pipeline.errors import ClusterError, ConfigError
from pipeline.running import cluster
from tests.conftest import generated_config, make_array, read_array, reference, write_config
from tests.faultkit import env, one_line_error

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _dask_scheduler(
    port: int, out: Any, environ: dict[str, str], args: tuple[str, ...] = ("--no-dashboard",)
) -> subprocess.Popen:
    """A `dask scheduler` process on 127.0.0.1:``port`` (no dashboard, unless ``args`` say
    otherwise), its output to ``out``, returned once its port accepts connections (within
    60 s, else the test fails)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "dask", "scheduler", "--host", "127.0.0.1", "--port", str(port)]
        + list(args),
        stdout=out,
        stderr=out,
        env=environ,
    )
    deadline = time.monotonic() + 60
    while True:  # the scheduler is up once its port accepts connections
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.terminate()
            proc.wait(30)
            raise RuntimeError("dask scheduler did not start")
        time.sleep(0.2)


@contextlib.contextmanager
def _one_worker_cluster(
    log: Path,
    environ: dict[str, str],
    *worker_args: str,
    worker_cwd: Path | None = None,
    scheduler_args: tuple[str, ...] = ("--no-dashboard",),
    **worker_env: str,
) -> Iterator[str]:
    """The address of a `dask scheduler` (its ``scheduler_args``) with one single-threaded
    `dask worker` process (its further ``worker_args``, run in ``worker_cwd``, else this
    process's directory, which ``python -m`` puts first on its module path), both in
    ``environ``, the worker with ``worker_env`` added (Dask's config); their output to
    ``log``."""
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    out = log.open("w")
    procs: list[subprocess.Popen] = []
    try:
        procs.append(_dask_scheduler(port, out, environ, scheduler_args))
        worker = [sys.executable, "-m", "dask", "worker", address, "--nthreads", "1"]
        procs.append(
            subprocess.Popen(
                [*worker, "--no-dashboard", *worker_args],
                stdout=out,
                stderr=out,
                env={**environ, **worker_env},
                cwd=worker_cwd,
            )
        )
        yield address
    finally:
        for p in reversed(procs):
            p.terminate()
            p.wait(30)
        out.close()


def _small_config(tmp_path: Path, **sections: Any) -> Path:
    """A 4x4 float32 input of ones (2x4 blocks) in ``tmp_path``, and a config (``sections``
    over :func:`write_config`'s) reading it into ``out.zarr`` there."""
    make_array(tmp_path / "in.zarr", np.ones((4, 4), np.float32), (2, 4))
    return write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr", **sections)


def _pipeline(tmp_path: Path, command: str, cfg: Path, address: str) -> subprocess.CompletedProcess:
    """``python -m pipeline COMMAND CFG --scheduler ADDRESS`` in a process of its own, run in
    ``tmp_path`` to its end within OUTER seconds; its output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "pipeline", command, str(cfg), "--scheduler", address],
        capture_output=True,
        text=True,
        timeout=OUTER,
        env=env(),
        cwd=tmp_path,
    )


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The address of a scheduler with one single-threaded worker process."""
    environ = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    with _one_worker_cluster(tmp_path_factory.mktemp("dask") / "dask.log", environ) as address:
        yield address


def test_example_config_names_a_scheduler() -> None:
    config = load_config(ROOT / "configs" / "cluster.yaml")
    assert config.cluster.scheduler == "tcp://127.0.0.1:8786"


def test_run_on_an_existing_cluster(tmp_path, cli, scheduler) -> None:
    x = np.random.default_rng(5).standard_normal((60, 40)).astype(np.float32)
    make_array(tmp_path / "in.zarr", x, (10, 40))
    cfg = write_config(
        tmp_path,
        tmp_path / "in.zarr",
        tmp_path / "out.zarr",
        chunking={"target_bytes": 3200},
        cluster={"scheduler": "local", "timeout": 60},
    )
    rc, out, err = cli("plan", cfg, "--scheduler", scheduler)
    assert rc == 0, err
    assert re.search(rf"workers\s+the cluster at {scheduler}: 1 worker\(s\) x 1 thread", out), out
    rc, out, err = cli("run", cfg, "--scheduler", scheduler, "--summary-json", tmp_path / "s.json")
    assert rc == 0, err
    assert np.array_equal(read_array(tmp_path / "out.zarr"), reference(x))
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["blocks_done"] == summary["blocks_total"] == 3
    assert summary["workers"] == 1 and summary["threads_per_worker"] == 1


@pytest.mark.parametrize("served", [False, True])
def test_the_dashboard_s_link_is_said_only_where_the_scheduler_serves_one(
    tmp_path, served: bool
) -> None:
    """A scheduler started with ``dask scheduler --no-dashboard`` still runs its HTTP server
    and gives its port as the dashboard's: the run had printed ``dashboard:
    http://127.0.0.1:8787/status`` at its start and in its summary, a page that answers 404.
    No link is said there; a scheduler with a dashboard still has its link said, a page that
    answers."""
    import urllib.request

    cfg = _small_config(tmp_path, cluster={"timeout": 60})
    args = ("--dashboard-address", "127.0.0.1:0") if served else ("--no-dashboard",)
    with _one_worker_cluster(tmp_path / "dask.log", env(), scheduler_args=args) as address:
        proc = subprocess.run(
            [sys.executable, "-m", "pipeline", "run", str(cfg), "--scheduler", address]
            + ["--summary-json", str(tmp_path / "s.json")],
            capture_output=True,
            text=True,
            timeout=OUTER,
            env=env(),
            cwd=tmp_path,
        )
        assert proc.returncode == 0, proc.stderr
        link = json.loads((tmp_path / "s.json").read_text())["dashboard"]
        lines = (proc.stderr + proc.stdout).splitlines()
        said = [ln for ln in lines if re.match(r"\s*dashboard\b", ln)]
        if not served:
            assert (link, said) == (None, []), (link, said)
            return
        assert said == [f"dashboard: {link}", f"  dashboard           {link}"], said
        with urllib.request.urlopen(link, timeout=30) as page:
            assert page.status == 200


def test_unreachable_scheduler_is_one_line(tmp_path, cli) -> None:
    cfg = _small_config(tmp_path, cluster={"timeout": 0.5})
    rc, _, err = cli("run", cfg, "--scheduler", f"tcp://127.0.0.1:{_free_port()}")
    assert rc == 1
    assert err.startswith("error: nothing listens at tcp://127.0.0.1:"), err
    assert err.count("\n") == 1
    assert not (tmp_path / "out.zarr").exists()


# --------------------------------------------------------------------------------------------
# Addresses where no scheduler is: real servers on 127.0.0.1, started here.

#: cluster.timeout for these tests, and the bound within which each must end (a busy machine)
TIMEOUT = 3.0
OUTER = 90.0


@contextlib.contextmanager
def _http_server() -> Iterator[str]:
    """Python's HTTP server (like the dashboard's port): it waits for a request line."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"tcp://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def _tcp_server(handle: Callable[[socket.socket], None]) -> Iterator[str]:
    """A TCP server that accepts connections and passes each to ``handle``."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = listener.accept()
                held.append(conn)
                handle(conn)

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"tcp://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()
        for c in held:
            c.close()


def _answers_http(conn: socket.socket) -> None:
    """What many HTTP servers do with bytes that are not HTTP: a 400 answer, then close."""
    conn.recv(65536)
    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
    conn.close()


@contextlib.contextmanager
def _nobody() -> Iterator[str]:
    yield f"tcp://127.0.0.1:{_free_port()}"


SERVERS: dict[str, tuple[Callable[[], Any], str]] = {
    "http-server": (_http_server, "http"),
    "answers-http": (lambda: _tcp_server(_answers_http), "http"),
    "silent": (lambda: _tcp_server(lambda conn: None), "not-dask"),
    "nobody": (_nobody, "unreachable"),
}


def _join_bounded(address: str, timeout: float = TIMEOUT) -> ClusterError:
    """``cluster.join``'s error (``timeout``: cluster.timeout), from a daemon thread that must
    end within OUTER seconds (a join that hangs fails the test, and does not keep the test
    process alive)."""
    got: list[BaseException | None] = []

    def attempt() -> None:
        try:
            cluster.join(address, timeout).close()
            got.append(None)
        except BaseException as e:
            got.append(e)

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(OUTER)
    assert got, f"join({address!r}, {timeout}) did not end within {OUTER} s"
    assert isinstance(got[0], ClusterError), got[0]
    return got[0]


@pytest.mark.parametrize("server", list(SERVERS))
def test_join_refuses_what_is_not_a_scheduler(server) -> None:
    make, reason = SERVERS[server]
    with make() as address:
        error = _join_bounded(address)
    assert (error.reason, error.address) == (reason, address)
    assert "\n" not in str(error)


@pytest.mark.parametrize(
    "address", ["foo", "tcp://127.0.0.1", "127.0.0.1:port", "http://127.0.0.1:8787"]
)
def test_join_refuses_a_malformed_address(address) -> None:
    error = _join_bounded(address)
    assert (error.reason, error.address) == ("malformed", address)


@pytest.mark.parametrize("scheme", ["ucx", "ucxx", "inproc"])
@pytest.mark.parametrize("command", ["plan", "run"])
def test_a_protocol_dask_cannot_use_here_is_one_line_naming_those_it_can(
    tmp_path, scheduler, scheme: str, command: str
) -> None:
    """``--scheduler ucx://HOST:PORT`` of a running scheduler (distributed registers ucx
    without UCX-Py, its connector abstract) said the scheduler did not answer within
    cluster.timeout, with a TypeError, after waiting for it; ``inproc://x`` said "not enough
    values to unpack" (brk76 f5). The scheme is checked before any connection: one line
    naming it and the protocols Dask here connects over, no timeout advice, at once."""
    cfg = _small_config(tmp_path, cluster={"timeout": 30})
    address = scheduler.replace("tcp://", f"{scheme}://") if scheme != "inproc" else "inproc://x"
    started = time.monotonic()
    proc = _pipeline(tmp_path, command, cfg, address)
    assert proc.returncode == 1, proc.stderr
    line = one_line_error(proc.stderr)
    assert address in line and f"{scheme}://" in line and "tcp://, tls://" in line, line
    assert "cluster.timeout" not in line and "within" not in line, line
    assert "TypeError" not in line and "ValueError" not in line, line
    assert time.monotonic() - started < 25, line  # told before waiting for an answer
    assert not (tmp_path / "out.zarr").exists()
    error = _join_bounded(address)
    assert (error.reason, error.address, error.protocol) == ("protocol", address, scheme)
    assert error.available[:2] == ["tcp", "tls"], error.available


def test_an_inproc_scheduler_of_this_process_is_still_joined() -> None:
    """``inproc://`` reaches a scheduler of this same process: the check of the scheme
    (above) lets its address through."""
    from distributed import LocalCluster

    with LocalCluster(
        processes=False, n_workers=1, protocol="inproc", dashboard_address=":0"
    ) as local:
        client = cluster.join(local.scheduler_address, TIMEOUT)
        try:
            assert client.scheduler_info()["workers"]
        finally:
            client.close()


def test_join_refuses_a_worker_address(scheduler) -> None:
    from distributed import Client

    with Client(scheduler, timeout="30s") as c:
        c.wait_for_workers(1, timeout=60)  # the module's worker may still be starting
        worker = next(iter(c.scheduler_info()["workers"]))
    error = _join_bounded(worker)
    assert (error.reason, error.address) == ("not-scheduler", worker)


def test_join_refuses_a_scheduler_without_workers(tmp_path) -> None:
    port = _free_port()
    proc = _dask_scheduler(port, subprocess.DEVNULL, env())
    try:
        address = f"tcp://127.0.0.1:{port}"
        error = _join_bounded(address)
        assert (error.reason, error.address) == ("no-workers", address)
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.mark.parametrize(
    ("command", "server"),
    [("run", "http-server"), ("run", "answers-http"), ("plan", "silent")],
)
def test_cli_ends_in_one_line_within_the_timeout(tmp_path, command, server) -> None:
    """``run`` and ``plan`` as their own processes: one line, exit status 1, nothing written,
    within the outer bound (they used to hang without end at an HTTP port, or fail with a
    MemoryError). Every kind of server is checked against ``join`` itself above."""
    cfg = _small_config(tmp_path, cluster={"timeout": TIMEOUT})
    with SERVERS[server][0]() as address:
        proc = _pipeline(tmp_path, command, cfg, address)
    assert proc.returncode == 1, proc.stderr
    assert address in one_line_error(proc.stderr)
    assert not (tmp_path / "out.zarr").exists()


@contextlib.contextmanager
def _main_thread_waits_in_distributed() -> Iterator[list[str]]:
    """Every ``Condition.wait`` this (the main) thread enters from inside distributed's code
    meanwhile, each as its innermost frames: a blocking client call made here, whose wait a
    Ctrl-C can break (``RuntimeError: release unlocked lock``, running/waiting.py). Seen with
    a profile function, which Python calls for this thread only."""
    import traceback

    seen: list[str] = []

    def profile(frame: Any, event: str, arg: Any) -> None:
        code = frame.f_code
        if (
            event != "call"
            or code.co_name != "wait"
            or not code.co_filename.endswith(f"{os.sep}threading.py")
        ):
            return
        if not isinstance(frame.f_locals.get("self"), threading.Condition):
            return
        stack = traceback.extract_stack(frame)
        if any(f"{os.sep}distributed{os.sep}" in f.filename for f in stack):
            seen.append(" <- ".join(f"{Path(f.filename).name}:{f.name}" for f in stack[::-1][:8]))

    before = sys.getprofile()
    sys.setprofile(profile)
    try:
        yield seen
    finally:
        sys.setprofile(before)


@pytest.mark.parametrize(
    "command",
    ["run", "run --report", "plan", "generate", "run local"],
    ids=lambda c: c.replace(" --", "-").replace(" ", "-"),
)
def test_no_blocking_client_call_on_the_main_thread(tmp_path, cli, scheduler, command) -> None:
    """A command on a joined scheduler makes distributed's blocking client calls (its workers'
    facts and threads, the plugin, the dashboard's link, the performance report, the results'
    holders, the peaks, the client's close) off the main thread, where a Ctrl-C lands
    (running/waiting.py); so does a run on a local cluster of worker processes (its close)."""
    x = np.random.default_rng(6).standard_normal((60, 40)).astype(np.float32)
    make_array(tmp_path / "in.zarr", x, (10, 40))
    generate = {"shape": [60, 40], "chunks": [10, 40], "dtype": "float32", "seed": 1}
    cfg = write_config(
        tmp_path,
        tmp_path / ("gen.zarr" if command == "generate" else "in.zarr"),
        tmp_path / "out.zarr",
        chunking={"target_bytes": 3200},
        cluster={"scheduler": scheduler, "timeout": 60}
        if command != "run local"
        else {"workers": 1, "protocol": "tcp"},
        **({"input": {"generate": generate}} if command == "generate" else {}),
    )
    name, *more = command.split()
    extra = [*more, str(tmp_path / "report.html")] if more == ["--report"] else []
    with _main_thread_waits_in_distributed() as seen:
        rc, _, err = cli(name, cfg, *extra)
    assert rc == 0, err
    assert seen == [], "\n".join(seen)


@pytest.mark.parametrize(
    "address", ["tcp://user:SCHEDPASS@127.0.0.1:1", "tcp://SCHEDPASS@127.0.0.1:1", "SCHEDPASS@h:1"]
)
def test_a_scheduler_address_with_a_password_is_refused_unsaid(address) -> None:
    """``--scheduler tcp://user:PASS@host:1``: Dask's message, quoted in the line, held
    ``user:PASS@host:1`` (no scheme, so no URL's password seen to hide: brk82). Dask's
    comms take no user information: one line refuses it, saying none of it."""
    error = _join_bounded(address)
    assert error.reason == "malformed" and "\n" not in str(error), error
    assert "SCHEDPASS" not in str(error) + repr(error.data), error
    assert "***@" in str(error) and "does not take" in str(error), error


@pytest.mark.parametrize("scheme", ["TCP", "Tcp", "TLS", "UCX", "UCXX", "INPROC", "HTTP"])
def test_a_protocol_in_capitals_is_refused_in_one_line_naming_the_lower_case(
    tmp_path, scheduler, scheme: str
) -> None:
    """``--scheduler TCP://HOST:PORT`` of a running scheduler: Dask's comm registry is
    case-sensitive (``get_backend('TCP')``: "unknown address scheme"), and the line said
    "the TCP:// protocol is not available in this installation; Dask here connects over
    tcp://, ...". One line says that protocol names are lower case and, where the lower-case
    address is one Dask here takes, to write it; else what that one meets too (UCX not
    installed, the dashboard's http://); nothing written, before any connection."""
    cfg = _small_config(tmp_path)
    address = scheduler.replace("tcp://", f"{scheme}://")
    lowered = scheduler.replace("tcp://", f"{scheme.lower()}://")
    proc = _pipeline(tmp_path, "run", cfg, address)
    assert proc.returncode == 1, proc.stderr
    line = one_line_error(proc.stderr)
    assert address in line and "protocol names are lower case" in line, line
    assert f"the {scheme}:// protocol is not available" not in line, line
    if scheme.lower() in ("tcp", "tls"):
        assert line.endswith(f"write {lowered}"), line
    else:
        assert "write" not in line and "tcp://, tls://" in line, line
        assert f"{scheme.lower()}://" in line, line
    assert not (tmp_path / "out.zarr").exists()
    error = _join_bounded(address)
    assert (error.reason, error.address, error.protocol) == ("protocol", address, scheme)


@pytest.mark.parametrize("address", ["Local", "LOCAL"])
def test_local_in_capitals_is_told_to_be_written_in_lower_case(address) -> None:
    """``cluster.scheduler: Local`` is read as a host's name (no port): the malformed line
    says that ``local``, in lower case, starts a cluster here."""
    error = _join_bounded(address)
    assert (error.reason, error.address) == ("malformed", address)
    assert "local, in lower case" in str(error), error


@pytest.mark.parametrize(
    ("key", "address", "fix"),
    [
        ("scheduler", "tcp://127.0.0.1:{port}\n", "write 'tcp://127.0.0.1:{port}'"),
        ("scheduler", "tcp://127.0.0.1:\x1b{port}", "write 'tcp://127.0.0.1:{port}'"),
        ("scheduler", "\r\n", "write the address alone, such as 'tcp://host:8786'"),
        ("dashboard", ":{port}\n", "write ':{port}'"),
    ],
)
def test_an_address_with_a_line_break_is_refused_as_the_config_is_read(
    tmp_path, cli, key, address, fix
) -> None:
    """``--scheduler "$(cat address.txt)"`` or YAML's ``scheduler: |`` keeps a line break in
    the address, which the cluster's messages then said split, or as spaces, as if given so
    (h81e). Refused as the config is read, in one line saying it as Python writes it and the
    address without it, before any cluster is started or joined; nothing written. Given as
    ``--scheduler``, the line names that option (it had said "override 'cluster.scheduler'
    (given with c.yaml, not read from it)", an override the command line has none of)."""
    port = _free_port()
    address, fix = address.format(port=port), fix.format(port=port)
    said = f"cluster.{key}: {address!r} holds a line break or another character"
    cfg = _small_config(tmp_path, cluster={key: address})
    with pytest.raises(ConfigError) as e:
        load_config(cfg)
    assert said in str(e.value) and str(e.value).endswith(fix), str(e.value)
    assert e.value.data["key"] == f"cluster.{key}", e.value.data
    args = ["--scheduler", address] if key == "scheduler" else []
    rc, _, err = cli("run", _small_config(tmp_path), *args) if args else cli("run", cfg)
    if args:  # said as the option's, not as an override of load_config the line has none of
        said = said.replace(f"cluster.{key}:", "error: --scheduler:")
    assert rc == 1 and said in err and err.count("\n") == 1, err
    assert "override" not in err, err
    assert "nothing listens" not in err and "malformed" not in err, err
    assert not (tmp_path / "out.zarr").exists()


def test_an_option_s_refusal_names_the_option_from_the_config_s_fields(tmp_path) -> None:
    """``load_config(path, overrides, options=...)`` names the command-line option that gave
    an override in its refusal, in the key's place, with the fields ``option`` and
    ``override``: the command line had found the key's words in the line to replace them.
    A file whose ``cluster`` is no mapping names the option too."""
    options = {"cluster.scheduler": "--scheduler"}
    with pytest.raises(ConfigError) as e:
        load_config(_small_config(tmp_path), {"cluster.scheduler": "tcp://h:1\n"}, options=options)
    line = str(e.value)
    assert line.startswith("--scheduler: 'tcp://h:1\\n' holds a line break"), line
    assert "cluster.scheduler" not in line and "override" not in line, line
    assert (e.value.data["option"], e.value.data["override"]) == (
        "--scheduler",
        "cluster.scheduler",
    )
    bad = _small_config(tmp_path, cluster=5)
    with pytest.raises(ConfigError) as e:
        load_config(bad, {"cluster.scheduler": "tcp://h:1"}, options=options)
    assert "so --scheduler cannot be set in it" in str(e.value), str(e.value)
    assert e.value.data["option"] == "--scheduler", e.value.data


@pytest.mark.parametrize("address", ["", "  "])
def test_an_empty_scheduler_is_refused_not_a_local_cluster(tmp_path, cli, address) -> None:
    """``--scheduler ''`` (a ``"$ADDRESS"`` of an unset variable) had been dropped, and a
    local cluster started without a word; ``scheduler: ""`` in the file had been refused only
    as the cluster was joined ("missing port number in address ''"), with no line. Both are
    refused as the config is read, in one line saying what to give: an address, or nothing
    for a local cluster; nothing written."""
    fix = "give a scheduler's address, such as 'tcp://host:8786', or leave it out for a local"
    rc, _, err = cli("run", _small_config(tmp_path), "--scheduler", address)
    assert rc == 1 and err.count("\n") == 1, err
    assert err.startswith(f"error: --scheduler: {address!r} is ") and fix in err, err
    cfg = _small_config(tmp_path, cluster={"scheduler": address})
    with pytest.raises(ConfigError) as e:
        load_config(cfg)
    line = str(e.value)
    assert f"cluster.scheduler: {address!r} is " in line and fix in line, line
    assert e.value.data["key"] == "cluster.scheduler" and e.value.data["line"], e.value.data
    rc, _, err = cli("run", cfg)
    assert rc == 1 and "missing port" not in err and fix in err, err
    assert not (tmp_path / "out.zarr").exists()


def _worker_status(address: str, status: str) -> None:
    """Wait until the one worker of the scheduler ``address`` has ``status``."""
    from distributed import Client

    with Client(address, timeout="30s") as c:
        deadline = time.monotonic() + 60
        while True:
            states = [w["status"] for w in c.scheduler_info()["workers"].values()]
            if states == [status]:
                return
            assert time.monotonic() < deadline, states
            time.sleep(0.2)


@pytest.mark.parametrize("state", ["paused", "retiring"])
def test_a_scheduler_whose_workers_are_not_running_says_so(tmp_path, state: str) -> None:
    """A joined scheduler whose one worker Dask has paused for memory (its process over
    distributed.worker.memory.pause of its --memory-limit: 1% here) was refused with "the
    scheduler ... has no workers; start some": the client waits for a *running* worker. The
    line says that it has a worker, not running, why (paused: its memory, its limit and the
    setting; retiring: it takes no more tasks) and what to do; reason 'not-running', its
    ``states``; nothing written."""
    cfg = _small_config(tmp_path, cluster={"timeout": 3})
    pause = {"DASK_DISTRIBUTED__WORKER__MEMORY__PAUSE": "0.01"} if state == "paused" else {}
    with _one_worker_cluster(
        tmp_path / "dask.log", env(), "--memory-limit", "2GB", **pause
    ) as address:
        if state == "retiring":  # closing_gracefully, kept: as while its data moves away
            from distributed import Client

            with Client(address, timeout="30s") as c:
                c.wait_for_workers(1, timeout=60)
                c.retire_workers(close_workers=False, remove=False)
        _worker_status(address, "paused" if state == "paused" else "closing_gracefully")
        proc = _pipeline(tmp_path, "run", cfg, address)
        error = _join_bounded(address)
    assert proc.returncode == 1, proc.stderr
    line = one_line_error(proc.stderr)
    assert "has no workers" not in line and "1 worker but none running" in line, line
    assert f"(1 {state})" in line and f"dask worker {address}" in line, line
    if state == "paused":
        assert "distributed.worker.memory.pause" in line and "--memory-limit" in line, line
        assert "of its 1.86 GiB limit" in line, line
    else:
        assert "takes no more tasks" in line, line
    assert not (tmp_path / "out.zarr").exists()
    assert (error.reason, error.address) == ("not-running", address), error
    assert error.states == {"paused" if state == "paused" else "closing_gracefully": 1}


#: A ``sitecustomize`` that makes the import of every top-level module named in
#: ``WITHOUT_MODULES`` (commas between) fail as a package that is not installed does
#: (ModuleNotFoundError): a worker started with it on its PYTHONPATH is one whose Python
#: environment lacks those packages, though this process has them.
_WITHOUT_MODULES = """
import os, sys

_ABSENT = set(filter(None, os.environ.get("WITHOUT_MODULES", "").split(",")))


class _Absent:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in _ABSENT:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, _Absent())
"""


@pytest.mark.parametrize("command", ["run", "plan"])
def test_workers_lacking_a_store_s_file_system_package_are_refused_before_anything_is_written(
    tmp_path, command: str
) -> None:
    """A joined cluster whose worker's Python lacks the package of a store's file system
    (aiohttp, which fsspec's HTTP file system needs, for an input served over HTTP; s3fs for
    ``s3://`` alike), this process having it: every task had failed with "cannot open URL:
    HTTPFileSystem requires "requests" and "aiohttp" to be installed", which named no worker
    (this process has it, a user installs it here in vain), after the output was made
    (incomplete). It is one line naming the store, the cluster, the worker and what to install
    where, before anything is written; ``plan`` says the same."""
    from tests.httpkit import serving

    pytest.importorskip("aiohttp")
    served = tmp_path / "served"
    served.mkdir()
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(_WITHOUT_MODULES)
    make_array(served / "in.zarr", np.ones((4, 4), np.float32), (2, 4))
    with serving(served) as server:
        url = f"{server.url}/in.zarr"
        cfg = write_config(
            tmp_path, url, tmp_path / "out.zarr", cluster={"scheduler": "local", "timeout": 60}
        )
        worker_env = {
            "PYTHONPATH": os.pathsep.join((str(site), str(ROOT))),
            "WITHOUT_MODULES": "aiohttp",
        }
        with _one_worker_cluster(tmp_path / "dask.log", env(), **worker_env) as address:
            proc = _pipeline(tmp_path, command, cfg, address)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    line = one_line_error(proc.stderr)
    assert f"the input store {url} cannot be opened on the cluster at {address}" in line, line
    assert re.search(r"its worker tcp://127\.0\.0\.1:\d+ lacks its file system's package", line)
    assert "aiohttp" in line and "install it in the workers' Python environment" in line, line
    assert not (tmp_path / "out.zarr").exists()


@pytest.mark.parametrize("command", ["run", "plan"])
def test_workers_without_the_pipeline_are_refused_naming_them(tmp_path, command: str) -> None:
    """A joined cluster whose worker's Python has no pipeline (not installed there, not on its
    PYTHONPATH): the run had ended in ``error: Exception: ModuleNotFoundError("No module
    named 'pipeline'")``, which did not say whose Python lacks it (this one has it). It is one
    line naming the cluster, what to install where and how to start the workers again;
    reason 'no-pipeline'; nothing written."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(_WITHOUT_MODULES)
    cfg = _small_config(tmp_path, cluster={"timeout": 60})
    worker_env = {"PYTHONPATH": str(site), "WITHOUT_MODULES": "pipeline"}
    with _one_worker_cluster(tmp_path / "dask.log", env(), **worker_env) as address:
        proc = _pipeline(tmp_path, command, cfg, address)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    line = one_line_error(proc.stderr)
    assert line.startswith(
        f"error: the workers of the cluster at {address} cannot import the pipeline"
    ), line
    assert "install it where they run" in line and f"`dask worker {address}`" in line, line
    assert not (tmp_path / "out.zarr").exists()


def _lacking_cluster(tmp_path: Path, module: str) -> contextlib.AbstractContextManager[str]:
    """:func:`_one_worker_cluster` whose worker's Python lacks the top-level ``module``."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(_WITHOUT_MODULES)
    worker_env = {"PYTHONPATH": os.pathsep.join((str(site), str(ROOT))), "WITHOUT_MODULES": module}
    return _one_worker_cluster(tmp_path / "dask.log", env(), **worker_env)


def _lacking_line(address: str, module: str) -> str:
    """The start of the line for workers of ``address`` lacking ``module``, up to its worker."""
    return (
        f"error: the workers of the cluster at {address} cannot import {module!r}, which the "
        "pipeline's tasks need (its worker tcp://127.0.0.1:"
    )


@pytest.mark.parametrize("command", ["run", "plan"])
@pytest.mark.parametrize("module", ["numcodecs", "pydantic"])
def test_workers_lacking_a_package_of_the_tasks_are_refused_before_anything_is_written(
    tmp_path, command: str, module: str
) -> None:
    """A joined cluster whose worker's Python lacks a package the pipeline's tasks import,
    this process having it: without numcodecs every input chunk had been called damaged
    ("input chunk '0.0' of ... is damaged: ModuleNotFoundError: No module named 'numcodecs';
    ... restore the chunk"), after the output was made; without pydantic the run ended in
    ``error: Exception: ModuleNotFoundError("No module named 'pydantic'")``. Both are one
    line naming the package, the worker and how to start it again, before anything is
    written (``cluster.TASK_MODULES``, asked in the workers' round trip); ``plan`` says the
    same."""
    cfg = _small_config(tmp_path, cluster={"timeout": 60})
    with _lacking_cluster(tmp_path, module) as address:
        proc = _pipeline(tmp_path, command, cfg, address)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    line = one_line_error(proc.stderr)
    assert line.startswith(_lacking_line(address, module)), line
    assert "install it in the workers' Python environment" in line, line
    assert f"`dask worker {address}`" in line and "damaged" not in line, line
    assert not (tmp_path / "out.zarr").exists()


def test_a_generation_on_workers_lacking_a_package_writes_nothing(tmp_path) -> None:
    """``generate`` on a joined cluster whose worker lacks numcodecs: refused in the same one
    line, but only after it had made the input (its metadata, marked unfinished); nothing is
    written now, the workers being asked before the input is made."""
    generate = {"shape": [4, 4], "dtype": "float32", "seed": 1, "chunks": [2, 4]}
    cfg = generated_config(tmp_path, generate, cluster={"timeout": 60})
    with _lacking_cluster(tmp_path, "numcodecs") as address:
        proc = _pipeline(tmp_path, "generate", cfg, address)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert one_line_error(proc.stderr).startswith(_lacking_line(address, "numcodecs"))
    assert not (tmp_path / "in.zarr").exists()


@pytest.mark.parametrize("module", ["numcodecs", "pydantic"])
def test_a_package_the_workers_lack_that_no_check_asked_for_is_said_as_theirs(
    tmp_path, cli, monkeypatch, module: str
) -> None:
    """A package the workers lack that the round trip before the run did not ask about (none
    here: ``TASK_MODULES`` emptied, as for a package a later release imports): numcodecs,
    which a task imports as it decodes, had been called a damaged input chunk, with the fix
    to restore it; pydantic, which the workers' set-up unpickles, a bare
    ``Exception: ModuleNotFoundError(...)``. Each is the line naming the package and the
    worker, a task's with `run --resume`, the output left as it is."""
    monkeypatch.setattr(cluster, "TASK_MODULES", (), raising=False)
    cfg = _small_config(tmp_path, cluster={"timeout": 60})
    with _lacking_cluster(tmp_path, module) as address:
        rc, _, err = cli("run", cfg, "--scheduler", address, "-q")
    assert rc == 1, err
    line = one_line_error(err)
    assert line.startswith(
        f"error: the workers of the cluster at {address} cannot import {module!r}, which the "
        "pipeline's tasks need (they lack it; this process has "
    ), line
    assert "damaged" not in line and f"`dask worker {address}`" in line, line
    if module == "numcodecs":  # in a task: the output was made
        assert line.endswith("; then `run --resume` finishes the output"), line


def test_a_joined_scheduler_is_left_without_the_pipeline_s_plugin(tmp_path) -> None:
    """A run on a joined scheduler left its workers' plugin (``pipeline-setup``) registered
    there: a worker that joined it later, from a Python without the pipeline, could not
    unpickle the plugin and never started (``ModuleNotFoundError: No module named
    'pipeline'``). The run unregisters it at its end (no other run of the pipeline uses it):
    such a worker joins, and the scheduler has no plugin of the pipeline left."""
    from distributed import Client

    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(_WITHOUT_MODULES)
    cfg = _small_config(tmp_path, cluster={"timeout": 60})
    with _one_worker_cluster(tmp_path / "dask.log", env()) as address:
        proc = _pipeline(tmp_path, "run", cfg, address)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        with Client(address, timeout=60, set_as_default=False) as client:
            left = client.run_on_scheduler(
                lambda dask_scheduler: list(dask_scheduler.worker_plugins)
            )
            assert "pipeline-setup" not in left, left
            later = subprocess.Popen(
                [sys.executable, "-m", "dask", "worker", address, "--nthreads", "1"]
                + ["--no-dashboard", "--no-nanny"],  # one process, ended by terminate()
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env={**env(), "PYTHONPATH": str(site), "WITHOUT_MODULES": "pipeline"},
                cwd=tmp_path,
            )
            try:
                client.wait_for_workers(2, timeout=60)
            finally:
                later.terminate()
                later.wait(30)
    np.testing.assert_array_equal(
        read_array(tmp_path / "out.zarr"), reference(np.ones((4, 4), np.float32))
    )


def test_a_run_s_end_leaves_the_plugin_of_another_run_on_the_same_scheduler(scheduler) -> None:
    """Two runs of the pipeline on one joined scheduler register the same plugin: the first to
    end leaves it registered (and set up on the workers: the other run reads their memory
    sampler), the last to end unregisters it (and the workers tear it down)."""
    from distributed import Client

    def plugins(client: Client) -> tuple[list[str], list[bool]]:
        on_scheduler = client.run_on_scheduler(
            lambda dask_scheduler: sorted(dask_scheduler.worker_plugins)
        )
        set_up = client.run(lambda dask_worker: "pipeline-setup" in dask_worker.plugins)
        return on_scheduler, list(set_up.values())

    with (
        Client(scheduler, timeout=60, set_as_default=False) as one,
        Client(scheduler, timeout=60, set_as_default=False) as other,
    ):
        one.wait_for_workers(1, timeout=60)
        with cluster.registered(other, cluster.PipelineSetup("cpu", None), scheduler):
            with cluster.registered(one, cluster.PipelineSetup("cpu", None), scheduler):
                assert "pipeline-setup" in plugins(one)[0]
            left, set_up = plugins(one)
            assert "pipeline-setup" in left and set_up == [True], (left, set_up)
        left, set_up = plugins(one)
        assert "pipeline-setup" not in left and set_up == [False], (left, set_up)


# --------------------------------------------------------------------------------------------
# What is known at once is said at once, whatever cluster.timeout.

#: A cluster.timeout long enough that a refusal within FAR_LESS seconds did not wait for it.
LONG_TIMEOUT = 120.0
FAR_LESS = 60.0


@contextlib.contextmanager
def _python_http_server(tmp_path: Path) -> Iterator[str]:
    """A plain ``python -m http.server`` process on 127.0.0.1, serving ``tmp_path``: it waits
    for a request line, as the dashboard's port does."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=tmp_path,
    )
    try:
        _wait_listening(port, proc, "no http.server")
        yield f"tcp://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(30)


@contextlib.contextmanager
def _free_tls_port() -> Iterator[str]:
    yield f"tls://127.0.0.1:{_free_port()}"


#: {case: (the address's maker, given tmp_path; reason; cause, or None for none)}
AT_ONCE: dict[str, tuple[Callable[[Path], Any], str, str | None]] = {
    "refused": (lambda _: _nobody(), "unreachable", "refused"),
    "unknown-host": (
        lambda _: contextlib.nullcontext("tcp://no-such-host.invalid:8786"),
        "unreachable",
        "unknown-host",
    ),
    "websocket-refused": (
        lambda _: contextlib.nullcontext(f"ws://127.0.0.1:{_free_port()}"),
        "unreachable",
        "refused",
    ),
    "http-server": (_python_http_server, "http", None),
    "tls-without-certificates": (lambda _: _free_tls_port(), "tls", None),
}


@pytest.mark.parametrize("case", list(AT_ONCE))
def test_an_address_where_no_scheduler_can_be_is_refused_at_once(tmp_path, case: str) -> None:
    """``plan`` of a config whose scheduler's port refuses the connection (nothing listens
    there; ws:// too, which distributed's client tried again and again), whose host is not
    known, where a plain ``python -m http.server`` listens, or a
    ``tls://`` address where this process has no TLS certificates: each had waited for the
    whole cluster.timeout (a refused port, a TLS address, the HTTP server) or said to raise
    it (an unknown host). Each is one line naming the address and the fix, well before a
    long cluster.timeout, without advice to raise it; nothing written."""
    make, reason, cause = AT_ONCE[case]
    cfg = _small_config(tmp_path, cluster={"timeout": LONG_TIMEOUT})
    with make(tmp_path) as address:
        started = time.monotonic()
        proc = _pipeline(tmp_path, "plan", cfg, address)
        took = time.monotonic() - started
        error = _join_bounded(address, LONG_TIMEOUT)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    line = one_line_error(proc.stderr)
    assert address in line and "cluster.timeout" not in line, line
    assert took < FAR_LESS, f"{took:.1f} s for: {line}"
    assert (error.reason, error.address, getattr(error, "cause", None)) == (
        reason,
        address,
        cause,
    )
    assert not (tmp_path / "out.zarr").exists()


def _wait_listening(port: int, proc: subprocess.Popen, what: str) -> None:
    """Wait (at most 60 s) until something listens at 127.0.0.1:``port``, the server
    ``proc`` still running; fail saying ``what`` otherwise."""
    deadline = time.monotonic() + 60
    while True:
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        assert proc.poll() is None and time.monotonic() < deadline, what
        time.sleep(0.1)


def _certificate(folder: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, written to ``folder``."""
    import datetime
    import ipaddress

    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / f"{name}.crt", folder / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def _tls_settings(cert: Path, key: Path) -> dict[str, str]:
    """Dask's config of a TLS client whose CA is ``cert`` and whose certificate it is."""
    return {
        "distributed.comm.tls.ca-file": str(cert),
        "distributed.comm.tls.client.cert": str(cert),
        "distributed.comm.tls.client.key": str(key),
    }


def test_a_tls_scheduler_is_joined_with_certificates_and_refused_at_once_without(
    tmp_path,
) -> None:
    """A real ``dask scheduler --protocol tls`` with a worker: joined where Dask's config here
    names its CA and a certificate it signed; without any, refused before any connection
    ('tls': had been 'not-dask', "does not answer as a Dask scheduler within 120 s (TypeError:
    TLS expects a `ssl_context` argument ...)"), with certificates it did not sign refused as
    a failed TLS handshake, and its address written tcp:// refused without advice to wait
    longer; each well before a long cluster.timeout."""
    import dask

    cert, key = _certificate(tmp_path, "cluster")
    other_cert, other_key = _certificate(tmp_path, "other")
    port = _free_port()
    address = f"tls://127.0.0.1:{port}"
    tls = ["--tls-ca-file", str(cert), "--tls-cert", str(cert), "--tls-key", str(key)]
    out = (tmp_path / "dask.log").open("w")
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "dask", "scheduler", "--host", "127.0.0.1", "--port"]
            + [str(port), "--no-dashboard", "--protocol", "tls", *tls],
            stdout=out,
            stderr=out,
            env=env(),
        )
    ]
    try:
        _wait_listening(port, procs[0], "no scheduler")
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "dask", "worker", address, "--nthreads", "1"]
                + ["--no-dashboard", *tls],
                stdout=out,
                stderr=out,
                env=env(),
            )
        )
        with dask.config.set(_tls_settings(cert, key)):
            client = cluster.join(address, LONG_TIMEOUT)
            try:
                assert client.scheduler_info()["workers"]
            finally:
                client.close()
        started = time.monotonic()
        bare = _join_bounded(address, LONG_TIMEOUT)
        with dask.config.set(_tls_settings(other_cert, other_key)):
            unsigned = _join_bounded(address, LONG_TIMEOUT)
        plain = _join_bounded(address.replace("tls://", "tcp://"), LONG_TIMEOUT)
        took = time.monotonic() - started
    finally:
        for p in reversed(procs):
            p.terminate()
            p.wait(30)
        out.close()
    assert (bare.reason, bare.address) == ("tls", address), bare
    assert "distributed.comm.tls.ca-file" in str(bare), bare
    assert (unsigned.reason, unsigned.address) == ("tls", address), unsigned
    assert "TLS handshake failed" in str(unsigned), unsigned
    assert plain.reason == "not-dask" and "cluster.timeout" not in str(plain), plain
    assert "tls://HOST:PORT" in str(plain), plain
    assert took < 3 * FAR_LESS, f"{took:.1f} s for three refusals"


# --------------------------------------------------------------------------------------------
# The workers' pipeline is this process's.


@pytest.mark.parametrize("copy", ["older", "edited", "lacking"])
def test_workers_running_an_older_or_edited_pipeline_are_refused_naming_both(
    tmp_path, copy: str
) -> None:
    """A joined cluster whose worker imports another copy of the pipeline that has every name
    this process sends: an older version (its ``__version__`` lower), or the same version
    edited (``multiply`` changed). The run had gone on silently, the edited copy's output
    wrong. Or one without a function this process sends it (``lacking``: a copy as it was
    before ``location.missing_packages``), where the run had ended in ``error: Exception:
    AttributeError("Can't get attribute ...")``. It is one line naming the workers' pipeline
    (version, digest of the source, folder) and this process's, and how to start the workers
    again; reason 'other-pipeline'; nothing written."""
    import shutil

    theirs = tmp_path / "theirs"
    shutil.copytree(
        ROOT / "pipeline", theirs / "pipeline", ignore=shutil.ignore_patterns("__pycache__")
    )
    if copy == "older":
        edited, before, after = "_version.py", '__version__ = "', '__version__ = "0.0.1-was-'
    elif copy == "lacking":
        edited, before, after = (
            "store/location.py",
            "\ndef missing_packages(",
            "\ndef _not_yet_written(",
        )
    else:
        edited, before, after = (
            "ops/stages.py",
            "return x * p.factor\n",
            "return x * 2 * p.factor\n",
        )
    path = theirs / "pipeline" / edited
    text = path.read_text()
    assert before in text
    path.write_text(text.replace(before, after, 1))
    cfg = _small_config(tmp_path, cluster={"timeout": 60})
    with _one_worker_cluster(
        tmp_path / "dask.log", env(), worker_cwd=theirs, PYTHONPATH=str(theirs)
    ) as address:
        proc = _pipeline(tmp_path, "run", cfg, address)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    line = one_line_error(proc.stderr)
    assert line.startswith(
        f"error: the workers of the cluster at {address} run another pipeline than this process"
    ), line
    assert f"at {theirs / 'pipeline'})" in line and f"at {ROOT / 'pipeline'})" in line, line
    assert ("0.0.1-was-" in line) == (copy == "older"), line
    assert ("(the same version, edited)" in line) == (copy != "older"), line
    assert f"`dask worker {address}`" in line, line
    assert not (tmp_path / "out.zarr").exists()


def _copy_of_the_pipeline(folder: Path, edit: tuple[str, str, str] | None = None) -> Path:
    """A copy of this checkout's ``pipeline`` package in ``folder`` (``__pycache__`` left out),
    ``edit`` (file, text, its replacement) made in it: the folder to put on a worker's
    PYTHONPATH."""
    import shutil

    shutil.copytree(
        ROOT / "pipeline", folder / "pipeline", ignore=shutil.ignore_patterns("__pycache__")
    )
    if edit is not None:
        path = folder / "pipeline" / edit[0]
        text = path.read_text()
        assert edit[1] in text
        path.write_text(text.replace(edit[1], edit[2], 1))
    return folder


def _zipped(folder: Path, zip_file: Path) -> Path:
    """The ``pipeline`` package in ``folder`` as a zip file (``zip_file``), which Python
    imports from where it is on ``sys.path``."""
    import zipfile

    with zipfile.ZipFile(zip_file, "w") as z:
        for path in sorted((folder / "pipeline").rglob("*.py")):
            z.write(path, path.relative_to(folder).as_posix())
    return zip_file


#: A comment and blank lines added to a module of the workers' pipeline: its code unchanged,
#: the lines after it moved.
_COMMENTED = ("ops/stages.py", "\ndef ", "\n# a note of the cluster's admin\n\n\ndef ")

#: A function's docstring reworded in a module of the workers' pipeline: its code unchanged.
_DOCUMENTED = (
    "ops/stages.py",
    '    """Register ``fn`` as the stage ``name``; its docstring\'s first line documents it."""\n',
    '    """Register ``fn`` as ``name``, reworded by the cluster\'s admin."""\n',
)


@pytest.mark.parametrize("copy", ["commented", "documented", "zipped", "zipped-commented"])
def test_workers_whose_pipeline_differs_in_comments_or_is_zipped_run(tmp_path, copy) -> None:
    """A joined cluster whose worker imports a copy of this process's pipeline with a comment
    and blank lines added, or a docstring reworded (its code unchanged), or the same from a
    zip file on its PYTHONPATH, runs, the output NumPy's: the digest of the source's bytes
    refused the first as "the same version, edited", the code's digest the second (its
    syntax tree held the docstrings), and a zip file, whose folder has no files to read, was
    never this process's."""
    edits = {"commented": _COMMENTED, "documented": _DOCUMENTED, "zipped": None}
    theirs = _copy_of_the_pipeline(tmp_path / "theirs", edits.get(copy, _COMMENTED))
    path = _zipped(theirs, tmp_path / "theirs.zip") if copy.startswith("zipped") else theirs
    _runs_on_a_worker_importing(tmp_path, path, seed=3)


def _runs_on_a_worker_importing(tmp_path: Path, path: Path, seed: int) -> tuple[str, str]:
    """``pipeline run`` of a 4x4 input drawn from ``seed`` on a one-worker cluster whose
    worker has ``path`` on its PYTHONPATH runs, its output NumPy's chain; (the cluster's
    address, the command's stderr)."""
    x = np.random.default_rng(seed).standard_normal((4, 4)).astype(np.float32)
    make_array(tmp_path / "in.zarr", x, (2, 4))
    cfg = write_config(
        tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr", cluster={"timeout": 60}
    )
    with _one_worker_cluster(
        tmp_path / "dask.log", env(), worker_cwd=tmp_path, PYTHONPATH=str(path)
    ) as address:
        proc = _pipeline(tmp_path, "run", cfg, address)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert np.array_equal(read_array(tmp_path / "out.zarr"), reference(x))
    return address, proc.stderr


def test_workers_running_an_edited_zipped_pipeline_are_refused(tmp_path) -> None:
    """A worker whose pipeline, from a zip file on its PYTHONPATH, has its code edited
    (``multiply`` changed) is refused as one from a folder is: the zip file's folder, which
    has no files, gave the same digest of nothing to every zipped copy, edited or not."""
    edit = ("ops/stages.py", "return x * p.factor\n", "return x * 2 * p.factor\n")
    theirs = _copy_of_the_pipeline(tmp_path / "theirs", edit)
    zipped = _zipped(theirs, tmp_path / "theirs.zip")
    ours = _zipped(_copy_of_the_pipeline(tmp_path / "ours"), tmp_path / "ours.zip")
    cfg = _small_config(tmp_path, cluster={"timeout": 60})
    with _one_worker_cluster(
        tmp_path / "dask.log", env(), worker_cwd=tmp_path, PYTHONPATH=str(zipped)
    ) as address:
        proc = subprocess.run(
            [sys.executable, "-m", "pipeline", "run", str(cfg), "--scheduler", address],
            capture_output=True,
            text=True,
            timeout=OUTER,
            env={**env(), "PYTHONPATH": str(ours)},
            cwd=tmp_path,
        )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    line = one_line_error(proc.stderr)
    assert line.startswith(
        f"error: the workers of the cluster at {address} run another pipeline than this process"
        " (the same version, edited)"
    ), line
    assert f"at {zipped / 'pipeline'})" in line and f"at {ours / 'pipeline'})" in line, line
    assert not (tmp_path / "out.zarr").exists()


def test_workers_whose_pipeline_has_no_source_are_compared_by_version(tmp_path) -> None:
    """A worker whose pipeline is compiled files alone (``compileall -b``, the ``.py`` files
    removed: a loader that gives no source) runs, its version being this process's, with a
    line saying that its source was not compared and why: its source's digest had been that
    of no file, never this process's, refused as "the same version, edited"."""
    import compileall

    theirs = _copy_of_the_pipeline(tmp_path / "theirs")
    assert compileall.compile_dir(theirs / "pipeline", legacy=True, quiet=1)
    for path in (theirs / "pipeline").rglob("*.py"):
        path.unlink()
    address, stderr = _runs_on_a_worker_importing(tmp_path, theirs, seed=4)
    said = re.search(
        rf"the workers of the cluster at {address} run the pipeline \S+, as this process does; "
        r"their source was not compared with its, as worker tcp://127\.0\.0\.1:\d+'s pipeline "
        rf"gives none to read \(no \.py files at {re.escape(str(theirs / 'pipeline'))}\)",
        stderr,
    )
    assert said, stderr


@pytest.mark.parametrize("where", ["cwd", "PYTHONPATH"])
def test_a_file_in_a_modules_place_on_a_worker_is_refused_naming_it(tmp_path, where) -> None:
    """A ``numcodecs.py`` of the user's in the folder a joined cluster's ``dask worker`` was
    started in, or in a folder on its PYTHONPATH, which the worker's tasks import in
    numcodecs' place (the worker itself imports none at its start), this process having
    none: the run's tasks failed in numcodecs' words, said as a damaged input chunk ("module
    'numcodecs' has no attribute 'get_codec'": restore the chunk), the output left
    incomplete, and this process, which looks for such files among its own modules, named
    none. It is one line naming the worker, the file and
    the fix, before anything is written."""
    cfg = _small_config(tmp_path, cluster={"timeout": 60})
    folder = tmp_path / "theirs"
    folder.mkdir()
    (folder / "numcodecs.py").write_text("# a script of the user's\n")
    worker_path = os.pathsep.join([str(ROOT)] + ([str(folder)] if where != "cwd" else []))
    with _one_worker_cluster(
        tmp_path / "dask.log",
        env(),
        worker_cwd=folder if where == "cwd" else tmp_path,
        PYTHONPATH=worker_path,
    ) as address:
        proc = _pipeline(tmp_path, "run", cfg, address)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    line = one_line_error(proc.stderr)
    assert line.startswith(
        f"error: the workers of the cluster at {address} take a file of the user's in the place "
        "of a module the pipeline imports: its worker tcp://127.0.0.1:"
    ), line
    assert f" imports {folder / 'numcodecs.py'} for the module 'numcodecs' (installed at " in line
    assert "rename that file of yours" in line and f"`dask worker {address}`" in line, line
    assert not (tmp_path / "out.zarr").exists()


def test_a_scripts_own_module_in_a_modules_place_is_not_refused_on_its_workers(tmp_path) -> None:
    """A script's own ``test.py`` (which takes the standard library's ``test`` package's place,
    on purpose: the script imports it), run with ``pipeline.run`` on a cluster whose worker
    was started in the script's folder too, runs: the worker's file in a module's place is one
    only where this process imported the installed module."""
    import importlib.util

    if importlib.util.find_spec("test") is None:
        pytest.skip("this Python has no standard library test package")
    folder = tmp_path / "script"
    folder.mkdir()
    (folder / "test.py").write_text("HELPER = 1  # the script's own module\n")
    x = np.random.default_rng(6).standard_normal((4, 4)).astype(np.float32)
    make_array(tmp_path / "in.zarr", x, (2, 4))
    script = "import sys, test, pipeline; print(pipeline.run(sys.argv[1]).status, test.HELPER)"
    with _one_worker_cluster(tmp_path / "dask.log", env(), worker_cwd=folder) as address:
        cfg = write_config(
            tmp_path,
            tmp_path / "in.zarr",
            tmp_path / "out.zarr",
            cluster={"scheduler": address, "timeout": 60},
        )
        proc = subprocess.run(
            [sys.executable, "-c", script, str(cfg)],
            capture_output=True,
            text=True,
            timeout=OUTER,
            env=env(),
            cwd=folder,
        )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout == "complete 1\n", proc.stdout + proc.stderr
    assert np.array_equal(read_array(tmp_path / "out.zarr"), reference(x))


# --------------------------------------------------------------------------------------------
# A joined scheduler is left as it was, however the run ends.


def _plugins_left(client: Any) -> tuple[list[str], list[bool], int]:
    """The scheduler's worker plugins, whether each worker holds the pipeline's, and the
    leases of the pipeline's runs using it."""
    from distributed import Semaphore

    on_scheduler = client.run_on_scheduler(
        lambda dask_scheduler: sorted(dask_scheduler.worker_plugins)
    )
    set_up = client.run(lambda dask_worker: "pipeline-setup" in dask_worker.plugins)
    users = Semaphore(cluster._MAX_USERS, cluster.PLUGIN_USERS, client.scheduler, client.loop)
    try:
        leases = users.get_value()
    finally:
        users.close()
    return on_scheduler, list(set_up.values()), leases


def test_a_worker_set_up_that_fails_leaves_no_plugin_on_the_scheduler(scheduler) -> None:
    """A worker whose set-up raises: distributed had stored the plugin on the scheduler before
    it sent it to the workers, and the run's end did not unregister it (the registration
    failed): every worker that joined later ran it. The error is raised as the worker's, and
    the scheduler is left without the plugin."""
    from distributed import Client

    class FailingSetup(cluster.PipelineSetup):  # made here: sent by value
        def setup(self, worker: Any) -> None:
            raise RuntimeError("this worker's set-up fails")

    with Client(scheduler, timeout=60, set_as_default=False) as client:
        client.wait_for_workers(1, timeout=60)
        with (
            pytest.raises(RuntimeError, match="this worker's set-up fails"),
            cluster.registered(client, FailingSetup("cpu", None), scheduler),
        ):
            pytest.fail("the block ran")
        on_scheduler, set_up, leases = _plugins_left(client)
    assert "pipeline-setup" not in on_scheduler and set_up == [False], (on_scheduler, set_up)
    assert leases == 0


def test_a_ctrl_c_while_the_plugin_is_registered_leaves_no_plugin(tmp_path, scheduler) -> None:
    """A Ctrl-C while the workers set the plugin up (the scheduler has it already): the
    interrupt had been raised at once, the registration going on on its own thread, and
    nothing unregistered the plugin. The registration's end is waited for, the plugin is
    unregistered, then the KeyboardInterrupt is raised."""
    import signal

    from distributed import Client

    started = tmp_path / "setting-up"

    class SlowSetup(cluster.PipelineSetup):  # made here: sent by value
        def __init__(self, marker: str) -> None:
            super().__init__("cpu", None)
            self.marker = marker

        def setup(self, worker: Any) -> None:
            Path(self.marker).touch()
            time.sleep(3)  # the Ctrl-C comes meanwhile
            super().setup(worker)

    def interrupt() -> None:
        deadline = time.monotonic() + OUTER
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)

    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with Client(scheduler, timeout=60, set_as_default=False) as client:
            client.wait_for_workers(1, timeout=60)
            ctrl_c = threading.Thread(target=interrupt, daemon=True)
            ctrl_c.start()
            with (
                pytest.raises(KeyboardInterrupt),
                cluster.registered(client, SlowSetup(str(started)), scheduler),
            ):
                pytest.fail("the block ran")
            ctrl_c.join(OUTER)
            on_scheduler, set_up, leases = _plugins_left(client)
    finally:
        signal.signal(signal.SIGINT, before)
    assert started.exists()
    assert "pipeline-setup" not in on_scheduler and set_up == [False], (on_scheduler, set_up)
    assert leases == 0
