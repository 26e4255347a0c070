"""The GPU path on the GPU host (``pytest -m gpu``): same results as NumPy, to the bit."""

from __future__ import annotations

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

pytestmark = pytest.mark.gpu

GPU = {"backend": "gpu", "cluster": {"threads_per_worker": 4, "dashboard": ""}}


@pytest.mark.parametrize(
    ("dtype", "shape", "chunks", "shards"),
    [
        ("float32", (100_003,), (1_000,), (9_000,)),
        ("float64", (100_003,), (1_000,), (9_000,)),
        ("float32", (37, 41, 29), (2, 16, 29), (8, 32, 29)),
        ("float64", (37, 41, 29), (2, 16, 29), (8, 32, 29)),
    ],
    ids=["f32-1d", "f64-1d", "f32-3d", "f64-3d"],
)
def test_gpu_run_matches_numpy(tmp_path, cli, dtype, shape, chunks, shards) -> None:
    x = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    x.reshape(-1)[:3] = [np.nan, np.inf, -np.inf]
    make_array(tmp_path / "in.zarr", x, chunks, shards=shards)
    cfg = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr", **GPU)
    rc, out, err = cli("run", cfg, "--summary-json", tmp_path / "s.json")
    assert rc == 0, err
    assert "backend gpu" in out.replace("  ", " ").replace("backend  ", "backend ") or "gpu" in out
    y = read_array(tmp_path / "out.zarr")
    with np.errstate(over="ignore", invalid="ignore"):
        ref = reference(x)
    assert np.array_equal(y, ref, equal_nan=True)
    import json

    s = json.loads((tmp_path / "s.json").read_text())
    assert s["backend"] == "gpu" and s["nan"] == 1 and s["posinf"] == 2
    assert 0 < s["peak_device_bytes"] <= s["device_budget"]


@pytest.mark.parametrize("layout", ["unsharded-small", "unsharded-big", "v2", "blosc"])
def test_gpu_decode_paths(tmp_path, cli, layout) -> None:
    """Small frames decode on the GPU; big frames and other codecs on the CPU, then move."""
    x = np.random.default_rng(1).standard_normal((64, 4096)).astype(np.float32)
    if layout == "unsharded-small":
        make_array(tmp_path / "in.zarr", x, (8, 4096))
    elif layout == "unsharded-big":  # 8 MiB chunks: too large for nvCOMP, CPU decodes
        x = np.random.default_rng(1).standard_normal((1024, 4096)).astype(np.float32)
        make_array(tmp_path / "in.zarr", x, (512, 4096))
    elif layout == "v2":
        make_array(tmp_path / "in.zarr", x, (8, 4096), zarr_format=2)
    else:
        make_array(tmp_path / "in.zarr", x, (8, 4096), compressor="blosc")
    cfg = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr", **GPU)
    rc, out, err = cli("plan", cfg)
    assert rc == 0, err
    # the CPU decodes on a pool of the workers' threads, several of a block's units at once
    assert ("threads a worker" in out) is (layout not in ("unsharded-small", "v2")), out
    rc, _, err = cli("run", cfg)
    assert rc == 0, err
    assert np.array_equal(read_array(tmp_path / "out.zarr"), reference(x))


def test_gpu_integer_promotion(tmp_path, cli) -> None:
    x = np.random.default_rng(2).integers(-128, 127, (300, 70), dtype=np.int8)
    make_array(tmp_path / "in.zarr", x, (10, 70))
    cfg = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr", **GPU)
    rc, _, err = cli("run", cfg)
    assert rc == 0, err
    y = read_array(tmp_path / "out.zarr")
    assert y.dtype == np.int32
    assert np.array_equal(y, reference(x.astype(np.int32)))


def test_cpu_and_gpu_give_the_same_output(tmp_path, cli) -> None:
    x = np.random.default_rng(3).standard_normal((50, 33, 17)).astype(np.float32)
    make_array(tmp_path / "in.zarr", x, (5, 33, 17), shards=(20, 33, 17))
    outs = {}
    for be in ("cpu", "gpu"):
        extra = GPU if be == "gpu" else {}
        cfg = write_config(
            tmp_path, tmp_path / "in.zarr", tmp_path / f"{be}.zarr", name=f"{be}.yaml", **extra
        )
        rc, _, err = cli("run", cfg)
        assert rc == 0, err
        outs[be] = read_array(tmp_path / f"{be}.zarr")
    assert np.array_equal(outs["cpu"], outs["gpu"])
    assert np.array_equal(outs["gpu"], reference(x))


def test_gpu_generate_and_verify(tmp_path, cli) -> None:
    cfg = generated_config(
        tmp_path,
        {"shape": [64, 256, 256], "dtype": "float32", "seed": 3, "shards": [16, 256, 256]},
        **GPU,
    )
    rc, _, err = cli("generate", cfg, "--progress", "none")
    assert rc == 0, err
    x = read_array(tmp_path / "in.zarr")
    assert abs(float(x.std()) - 1.0) < 0.01
    rc, _, err = cli("run", cfg)
    assert rc == 0, err
    rc, out, err = cli("verify", cfg, "--all")
    assert rc == 0, err + out
    assert np.array_equal(read_array(tmp_path / "out.zarr"), reference(x))
    assert (
        record_of(zarr.open_array(str(tmp_path / "out.zarr"), mode="r").attrs)["encoded_on"]
        == "gpu"
    )


def test_gpu_generate_is_deterministic(tmp_path, cli) -> None:
    """The same seed gives the same values, run after run (CuPy's generators once raced the
    encode: units held stale device memory)."""
    gen = {"shape": [96, 512, 512], "dtype": "float32", "seed": 5, "shards": [8, 512, 512]}
    values = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        cfg = generated_config(tmp_path / name, gen, **GPU)
        rc, _, err = cli("generate", cfg, "--progress", "none")
        assert rc == 0, err
        values.append(read_array(tmp_path / name / "in.zarr"))
    assert np.isfinite(values[0]).all() and abs(float(values[0].std()) - 1.0) < 0.01
    assert np.array_equal(values[0].view(np.uint32), values[1].view(np.uint32))


def test_gpu_workers_share_one_gpu(tmp_path, cli) -> None:
    """Three `dask cuda worker` processes on one GPU, joined by address: the N-worker path."""
    import os
    import socket
    import subprocess
    import sys
    import time

    x = np.random.default_rng(4).standard_normal((96, 1000)).astype(np.float64)
    make_array(tmp_path / "in.zarr", x, (4, 1000), shards=(8, 1000))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    addr = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "0"}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "distributed.cli.dask_scheduler",
                "--port",
                str(port),
                "--no-dashboard",
            ],
            env=env,
        )
    ]
    try:
        time.sleep(2)
        for _ in range(3):
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "dask_cuda.cli",
                        addr,
                        "--nthreads",
                        "2",
                        "--no-dashboard",
                    ],
                    env=env,
                )
            )
        cfg = write_config(
            tmp_path,
            tmp_path / "in.zarr",
            tmp_path / "out.zarr",
            backend="gpu",
            cluster={"scheduler": addr, "timeout": 60},
        )
        from distributed import Client

        with Client(addr, timeout=60) as c:
            c.wait_for_workers(3, timeout=90)
        rc, out, err = cli("run", cfg)
        assert rc == 0, err
        assert "3 x 2 threads" in out
        assert np.array_equal(read_array(tmp_path / "out.zarr"), reference(x))
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            p.wait(timeout=30)


def _gpu_count() -> int:
    import cupy

    return int(cupy.cuda.runtime.getDeviceCount())


def test_every_gpu_takes_part(tmp_path, cli) -> None:
    """LocalCUDACluster over every visible GPU: three workers each (the default), and each
    computes blocks."""
    n = _gpu_count()
    if n < 2:
        pytest.skip("needs 2 or more GPUs")
    x = np.random.default_rng(6).standard_normal((64 * n, 512)).astype(np.float32)
    make_array(tmp_path / "in.zarr", x, (2, 512), shards=(4, 512))
    cfg = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr", **GPU)
    rc, out, err = cli("run", cfg, "--summary-json", tmp_path / "s.json")
    assert rc == 0, err
    import json

    s = json.loads((tmp_path / "s.json").read_text())
    assert s["workers"] == 3 * n and f"{3 * n} x 4 threads" in out
    assert len(s["blocks_per_worker"]) == 3 * n and all(
        v > 0 for v in s["blocks_per_worker"].values()
    )
    assert sum(s["blocks_per_worker"].values()) == s["blocks_total"]
    assert np.array_equal(read_array(tmp_path / "out.zarr"), reference(x))


def test_several_workers_share_each_gpu(tmp_path, cli) -> None:
    """cluster.workers_per_gpu: that many worker processes per GPU, sharing its memory
    budget; every one of them computes blocks, and the output matches NumPy."""
    x = np.random.default_rng(9).standard_normal((96, 2048)).astype(np.float32)
    make_array(tmp_path / "in.zarr", x, (2, 2048), shards=(4, 2048))
    one = write_config(
        tmp_path,
        tmp_path / "in.zarr",
        tmp_path / "one.zarr",
        name="one.yaml",
        backend="gpu",
        cluster={"threads_per_worker": 2, "workers_per_gpu": 1, "dashboard": ""},
    )
    cfg = write_config(
        tmp_path,
        tmp_path / "in.zarr",
        tmp_path / "out.zarr",
        backend="gpu",
        cluster={"threads_per_worker": 2, "workers_per_gpu": 2, "dashboard": ""},
    )
    import pipeline

    budget_one = pipeline.plan(pipeline.load_config(one)).cluster.device_budget
    plan = pipeline.plan(pipeline.load_config(cfg))
    assert plan.cluster.workers == 2 * _gpu_count()
    assert abs(plan.cluster.device_budget - budget_one // 2) < budget_one // 20
    rc, _, err = cli("run", cfg, "--summary-json", tmp_path / "s.json")
    assert rc == 0, err
    import json

    s = json.loads((tmp_path / "s.json").read_text())
    assert s["workers"] == 2 * _gpu_count()
    assert len(s["blocks_per_worker"]) == s["workers"]
    assert all(v > 0 for v in s["blocks_per_worker"].values())
    assert np.array_equal(read_array(tmp_path / "out.zarr"), reference(x))


def test_cuda_visible_devices_subset(tmp_path) -> None:
    """The local GPU cluster honours CUDA_VISIBLE_DEVICES set when the command starts (here
    the last GPU alone; CUDA then numbers it 0)."""
    import os
    import subprocess
    import sys

    x = np.random.default_rng(5).standard_normal((40, 100)).astype(np.float32)
    make_array(tmp_path / "in.zarr", x, (4, 100))
    cfg = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr", **GPU)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": str(_gpu_count() - 1)}
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "run", str(cfg), "--progress", "none"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "3 x 4 threads on GPUs [0]" in proc.stdout, proc.stdout
    assert np.array_equal(read_array(tmp_path / "out.zarr"), reference(x))


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_gpu_nonfinite_counts_match_numpy(dtype) -> None:
    import cupy as cp

    from pipeline import devices

    rng = np.random.default_rng(6)
    y = rng.standard_normal(1_000_003).astype(dtype)
    for value, k in ((np.nan, 7), (np.inf, 5), (-np.inf, 3)):
        y[rng.choice(y.size, k, replace=False)] = value
    be = devices.get("gpu")
    be.prepare()
    got = be.count_nonfinite(cp.asarray(y))
    assert got == (int(np.isnan(y).sum()), int(np.isposinf(y).sum()), int(np.isneginf(y).sum()))
    assert be.count_nonfinite(cp.asarray(np.ones(10, dtype))) == (0, 0, 0)


def test_free_device_memory_counts_the_pools_cached_blocks() -> None:
    """A warm worker's CuPy pool keeps the last run's blocks: a plan must see them as free,
    or a second run on the same cluster is refused for lack of room the first run had."""
    import cupy as cp

    from pipeline.devices.hardware import Facts

    pool = cp.get_default_memory_pool()
    x = cp.empty(2 << 30, cp.uint8)
    del x
    assert pool.free_bytes() >= 2 << 30
    free, _total = cp.cuda.runtime.memGetInfo()
    assert Facts.local().gpus[0].free_bytes >= free + (2 << 30)
    pool.free_all_blocks()


def test_gpu_work_stays_on_the_threads_stream() -> None:
    """CuPy 14 makes the default stream current whenever a ``with stream:`` block exits. Inside
    ``on_stream``, work issued after the backend's own calls must still be queued on the
    thread's stream, or it races the thread's later work (it did: outside such a block, 5 of 5
    copies read stale data on an H100)."""
    import threading

    import cupy as cp

    from pipeline import devices
    from pipeline.devices import gpu
    from pipeline.ops import stages

    chain = stages.plan_chain([("multiply", stages.MultiplyParams(factor=3))], np.dtype("f4"))
    n = 64 << 20
    stale: list[bool] = []
    errors: list[BaseException] = []

    def body() -> None:
        try:
            work()
        except BaseException as e:  # surfaced below: a thread's exception does not fail a test
            errors.append(e)

    def work() -> None:
        be = devices.get("gpu")
        be.prepare()
        for r in range(3):
            with be.on_stream():
                be.apply_chain(chain, cp.ones(16, cp.float32))  # exits a `with stream:` inside
                assert cp.cuda.get_current_stream() == gpu.context().stream
                with cp.cuda.Stream.null:  # keep the default stream busy
                    z = cp.ones(n * 4, cp.float32)
                    for _ in range(20):
                        z = z * 1.0001
                x = cp.arange(n, dtype=cp.float32) * (r + 2)  # relies on on_stream
            s = gpu.context().stream
            with s:
                y = x.copy()
            s.synchronize()
            cp.cuda.Device().synchronize()
            stale.append(not bool((y == x).all()))

    t = threading.Thread(target=body)  # a fresh thread, as a Dask worker thread is
    t.start()
    t.join()
    assert not errors, errors
    assert stale == [False, False, False]


def test_a_warm_clusters_own_device_memory_counts_as_free(tmp_path) -> None:
    """After a run on a given client, its workers hold device memory (their threads'
    buffers); the next plan counts it as free, so it is not smaller than the first."""
    from dask_cuda import LocalCUDACluster
    from distributed import Client

    from pipeline.config import load_config
    from pipeline.devices.hardware import Facts
    from pipeline.running import cluster as clusters
    from pipeline.running.runner import RunOptions, run

    x = np.random.default_rng(10).standard_normal((64, 4096)).astype(np.float32)
    make_array(tmp_path / "in.zarr", x, (8, 4096))
    cfg = load_config(
        write_config(
            tmp_path,
            tmp_path / "in.zarr",
            tmp_path / "out.zarr",
            backend="gpu",
            cluster={"threads_per_worker": 2, "workers_per_gpu": 1, "dashboard": ""},
        )
    )
    with (
        LocalCUDACluster(n_workers=1, threads_per_worker=2, dashboard_address=":0") as lc,
        Client(lc) as client,
    ):
        run(cfg, RunOptions(progress="none", overwrite=True), client=client)
        held = clusters.held_device_memory(client)
        assert len(held) == 1 and next(iter(held.values())) >= 0
        local = Facts.local()
        plus = local.plus_held(held)
        assert plus.gpus[0].free_bytes == min(
            local.gpus[0].total_bytes, local.gpus[0].free_bytes + next(iter(held.values()))
        )
        again = run(cfg, RunOptions(progress="none", overwrite=True), client=client)
        assert again.status == "complete"
    assert np.array_equal(read_array(tmp_path / "out.zarr"), reference(x))


@pytest.mark.parametrize(
    ("compressor", "block", "per_thread"),
    [("zstd", 64, 1), ("blosc", 64, 1), ("blosc", 8, 2)],
    ids=["gpu-decode", "cpu-decode-pool", "cpu-decode-one-unit"],
)
def test_a_worker_page_locks_only_the_staging_its_threads_hold_at_once(
    tmp_path, compressor, block, per_thread
) -> None:
    """A task's read step and its write step each give their page-locked staging back when
    they end, so a worker's threads hold one buffer each where the GPU decodes (the stored
    bytes, then the encoded frames) or the decoding pool fills the block, and two where a
    task's own thread reads its one unit into one and decodes it into another (blocks of one
    chunk: no pool). The plugin makes exactly those before the first task, no task makes
    more, a second run reuses them, and the output is NumPy's to the bit."""
    from dask_cuda import LocalCUDACluster
    from distributed import Client

    from pipeline.config import load_config
    from pipeline.running.runner import RunOptions, run

    x = np.random.default_rng(11).standard_normal((256, 4096)).astype(np.float32)
    make_array(tmp_path / "in.zarr", x, (8, 4096), compressor=compressor)
    threads = 2
    cfg = load_config(
        write_config(
            tmp_path,
            tmp_path / "in.zarr",
            tmp_path / "out.zarr",
            backend="gpu",
            chunking={"block": [block, 4096]},
            cluster={"threads_per_worker": threads, "workers_per_gpu": 1, "dashboard": ""},
        )
    )

    def made() -> int:
        from pipeline.devices import gpu

        return gpu.page_locked_buffers()

    with (
        LocalCUDACluster(n_workers=1, threads_per_worker=threads, dashboard_address=":0") as lc,
        Client(lc) as client,
    ):
        first = run(cfg, RunOptions(progress="none", overwrite=True), client=client)
        assert first.status == "complete"
        assert list(client.run(made).values()) == [per_thread * threads]
        again = run(cfg, RunOptions(progress="none", overwrite=True), client=client)
        assert again.status == "complete"
        assert list(client.run(made).values()) == [per_thread * threads]
    assert np.array_equal(read_array(tmp_path / "out.zarr"), reference(x))


def test_staging_a_thread_ends_holding_stays_mapped_and_registered() -> None:
    """A thread that ends holding page-locked staging (a failed step skips its release) drops
    its context; the buffer's memory must stay mapped while CUDA has it registered (the pool
    keeps every buffer it made), and later buffers are made and page-locked as before."""
    import gc
    import threading

    from pipeline.devices import gpu

    seen: list[int] = []

    def body() -> None:
        seen.append(gpu.context().pinned_buffer(8 << 20, "read").ctypes.data)

    t = threading.Thread(target=body)
    t.start()
    t.join()
    gc.collect()
    (address,) = seen
    mapped = []
    with open("/proc/self/maps") as f:
        for line in f:
            lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
            mapped.append(lo <= address < hi)
    assert any(mapped), "a registered buffer was unmapped"
    more = [gpu._PINNED.take(8 << 20) for _ in range(4)]
    assert all(gpu.is_pinned(h[1]) for h in more)
    for h in more:
        gpu._PINNED.give(h)


def test_set_wait_switches_how_threads_wait_for_the_gpu() -> None:
    """The scheduling flag a run's plan asks for (``planning.plan.gpu_wait``) is the one the
    worker's context then has, and switching back restores CUDA's default."""
    from pipeline.devices import gpu

    try:
        assert gpu.set_wait("block")
        assert gpu.wait_mode() == "block"
        assert gpu.set_wait("auto")
        assert gpu.wait_mode() == "auto"
    finally:
        gpu.set_wait("auto")


def test_workers_sharing_a_gpu_run_under_the_runs_own_mps_daemon(tmp_path) -> None:
    """cluster.mps 'auto' with two workers per GPU: the workers run under an MPS server of a
    daemon of the run's own (its pipe folder in their environment; the daemon lists a server),
    which is gone, folder and all, once the cluster is closed; the output matches NumPy."""
    import os
    import subprocess

    import pipeline
    from pipeline.devices import hardware
    from pipeline.running import mps
    from pipeline.running.cluster import connect
    from pipeline.running.runner import RunOptions, run

    control = hardware.mps_control()
    if not control:
        pytest.skip("no nvidia-cuda-mps-control here, or the environment names an MPS of its own")
    x = np.random.default_rng(12).standard_normal((64, 2048)).astype(np.float32)
    make_array(tmp_path / "in.zarr", x, (2, 2048), shards=(4, 2048))
    cfg = write_config(
        tmp_path,
        tmp_path / "in.zarr",
        tmp_path / "out.zarr",
        backend="gpu",
        cluster={"threads_per_worker": 2, "workers_per_gpu": 2, "dashboard": ""},
    )
    config = pipeline.load_config(cfg)
    plan = pipeline.plan(config)
    assert plan.cluster.mps == control
    with connect(plan.cluster, quiet=True) as client:
        pipes = set(client.run(lambda: os.environ.get("CUDA_MPS_PIPE_DIRECTORY")).values())
        assert len(pipes) == 1 and None not in pipes, pipes
        (pipe,) = pipes
        daemon = mps.Daemon(control, os.path.dirname(pipe))
        run(config, RunOptions(progress="none"), client=client)
        servers = subprocess.run(
            [control],
            input="get_server_list\n",
            env={**os.environ, **daemon.env},
            capture_output=True,
            text=True,
            timeout=10,
        )
        assert servers.stdout.split(), (servers.stdout, servers.stderr)  # a server's pid
        running = mps.processes(daemon)
        assert running
    assert not os.path.exists(daemon.folder)
    assert not any(os.path.exists(f"/proc/{pid}") for pid in running)
    assert np.array_equal(read_array(tmp_path / "out.zarr"), reference(x))


def test_two_runs_at_once_each_under_a_daemon_of_its_own(tmp_path) -> None:
    """Two `pipeline run` commands on one GPU at the same moment, each starting its own MPS
    daemon (two MPS servers on the GPU): both finish, each output matches NumPy, and once
    both commands have ended their daemons quit and their folders go."""
    import os
    import subprocess
    import sys
    import tempfile
    import time

    from pipeline.devices import hardware
    from pipeline.running import mps

    if not hardware.mps_control():
        pytest.skip("no nvidia-cuda-mps-control here, or the environment names an MPS of its own")
    before = {n for n in os.listdir(tempfile.gettempdir()) if n.startswith(mps.PREFIX)}
    xs, cfgs = [], []
    for k in range(2):
        x = np.random.default_rng(20 + k).standard_normal((64, 2048)).astype(np.float32)
        make_array(tmp_path / f"in{k}.zarr", x, (2, 2048), shards=(4, 2048))
        xs.append(x)
        cfgs.append(
            write_config(
                tmp_path,
                tmp_path / f"in{k}.zarr",
                tmp_path / f"out{k}.zarr",
                name=f"c{k}.yaml",
                backend="gpu",
                cluster={"threads_per_worker": 2, "workers_per_gpu": 2, "dashboard": ""},
            )
        )
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "pipeline", "run", str(c), "-q"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for c in cfgs
    ]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    for k, x in enumerate(xs):
        assert np.array_equal(read_array(tmp_path / f"out{k}.zarr"), reference(x))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        now = {n for n in os.listdir(tempfile.gettempdir()) if n.startswith(mps.PREFIX)}
        if now <= before:
            break
        time.sleep(0.2)
    assert now <= before, now - before


def _mps_folders() -> set[str]:
    import os
    import tempfile

    from pipeline.running import mps

    return {n for n in os.listdir(tempfile.gettempdir()) if n.startswith(mps.PREFIX)}


def _server_list(daemon) -> list[str]:
    import os
    import subprocess

    done = subprocess.run(
        [daemon.control],
        input="get_server_list\n",
        env={**os.environ, **daemon.env},
        capture_output=True,
        text=True,
        timeout=10,
    )
    return done.stdout.split()


def test_an_mps_daemon_started_before_the_plan_has_its_server_up_for_the_cluster() -> None:
    """The command line's early daemon (`mps.start_early`, from the config's plain read) starts
    its MPS server through a client of its own, before any worker exists; the cluster's start
    takes that daemon (`mps.take`: a new one would have no server up); a section the plan would
    run without MPS (`mps: off`, YAML's `off` read as false too, one worker per GPU) starts
    none; stopped, the daemon and its folder are gone."""
    import os
    import time

    from pipeline.devices import hardware
    from pipeline.running import mps

    control = hardware.mps_control()
    if not control:
        pytest.skip("no nvidia-cuda-mps-control here, or the environment names an MPS of its own")
    before = _mps_folders()
    for section in ({"mps": "off"}, {"mps": False}, {"workers_per_gpu": 1}):
        mps.start_early(section)
        assert not _mps_folders() - before, section
        mps.stop_early()
    mps.start_early({"workers_per_gpu": 2})  # on a thread of its own: take waits for it
    daemon = mps.take(control)
    try:
        assert daemon is not None
        assert _mps_folders() - before == {os.path.basename(daemon.folder)}
        deadline = time.monotonic() + 20
        while not _server_list(daemon) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _server_list(daemon), "the early client did not start the MPS server"
        running = mps.processes(daemon)
    finally:
        mps.stop(daemon)
    # only what this test made is looked at: an earlier test's daemon folder may go meanwhile
    # (a run ending deletes its own from a shell once its daemon has ended; a start clears
    # those of ended runs), which a comparison of the whole listing took for a failure
    assert not os.path.exists(daemon.folder)
    assert not _mps_folders() - before
    assert not any(os.path.exists(f"/proc/{pid}") for pid in running)


def test_a_run_refused_after_its_early_mps_daemon_started_leaves_none(tmp_path) -> None:
    """`pipeline run` of a local GPU cluster under MPS starts its daemon before the config is
    checked; a run the plan then refuses (its input array missing) stops it: once the command
    has ended, no daemon of it runs and its folder is gone. So does a run that completes."""
    import subprocess
    import sys
    import time

    from pipeline.devices import hardware

    if not hardware.mps_control():
        pytest.skip("no nvidia-cuda-mps-control here, or the environment names an MPS of its own")
    before = _mps_folders()
    x = np.random.default_rng(21).standard_normal((32, 2048)).astype(np.float32)
    make_array(tmp_path / "in.zarr", x, (2, 2048), shards=(4, 2048))
    cluster = {"threads_per_worker": 2, "workers_per_gpu": 2, "dashboard": ""}
    refused = write_config(
        tmp_path,
        tmp_path / "absent.zarr",
        tmp_path / "out.zarr",
        name="r.yaml",
        backend="gpu",
        cluster=cluster,
    )
    runs = write_config(
        tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr", backend="gpu", cluster=cluster
    )
    for cfg, status in ((refused, 1), (runs, 0)):
        done = subprocess.run(
            [sys.executable, "-m", "pipeline", "run", str(cfg), "-q"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == status, done.stderr
        deadline = time.monotonic() + 30
        while _mps_folders() - before and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _mps_folders() - before, cfg
    assert np.array_equal(read_array(tmp_path / "out.zarr"), reference(x))
