"""Plans against the machines the project runs on: every shipped config fits them; budgets the
host cannot give are refused; settings the output could not honour change the plan."""

from __future__ import annotations

import contextlib
import json
import math
import re
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numcodecs
import numpy as np
import psutil
import pytest
import zarr

from pipeline.config import Config, load_config
from pipeline.config.models import GenerateConfig
from pipeline.devices.hardware import Facts, GpuInfo, facts_from_workers
from pipeline.errors import InputError, PlanError
from pipeline.planning import blocks, describe, make_plan
from pipeline.planning.plan import CPU_DECODE_BLOCKS_PER_THREAD as CPU_BLOCKS
from pipeline.planning.plan import CPU_DECODE_MIN_BLOCK, gpu_wait, local_cluster_plan
from pipeline.store import grid
from tests.conftest import generated_config, make_array, read_array, reference, write_config
from tests.faultkit import one_line_error, status

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))
MiB, GiB = 1 << 20, 1 << 30


def _gpu_host(name: str, gpu_mib: int) -> Facts:
    """A GPU host of the project: one GPU (``gpu_mib`` as nvidia-smi reports it, about 1 GiB
    of it taken by the CUDA context and others), 16 cores, 128 GiB of RAM (of which the
    kernel keeps some: 126 GiB as psutil reports it)."""
    total = gpu_mib * MiB
    return Facts(
        gpu_usable=True,
        gpu_reason="1 CUDA device(s) visible",
        gpus=(GpuInfo(0, name, total, total - GiB),),
        host_total_bytes=126 * GiB,
        host_available_bytes=120 * GiB,
        cpu_count=16,
        hostname=name,
    )


#: The machines every shipped config must plan on (GPU hosts), or where it says so (backend
#: cpu or auto) the CPU machine too.
MACHINES = {
    "h100": _gpu_host("NVIDIA H100 80GB HBM3", 81559),
    "h200": _gpu_host("NVIDIA H200", 143771),
    "cpu": Facts(
        gpu_usable=False,
        gpu_reason="CuPy is not installed",
        host_total_bytes=int(23.5 * GiB),
        host_available_bytes=20 * GiB,
        cpu_count=2,
        hostname="cpu",
    ),
}


def _worker_info(facts: Facts, memory_limit: int | None, hostname: str | None = None) -> dict:
    """What :func:`pipeline.devices.hardware.worker_facts` returns on a worker of ``facts``'
    machine."""
    d = facts.as_dict()
    d["host_available_bytes"] = facts.host_available_bytes
    d["memory_limit"] = memory_limit
    if hostname is not None:
        d["hostname"] = hostname
    return d


def _joined(facts: Facts, how: str) -> tuple[Facts, int, int]:
    """(facts, workers, threads) of a cluster joined by address whose workers were started on
    a machine of ``facts`` with Dask's defaults: `dask cuda worker` gives one worker per GPU of
    one thread; `dask worker` one worker of all cores. Either's memory limit, ``auto``, is the
    RAM times threads / cores (dask-cuda counts GPUs as the cores)."""
    if how == "dask cuda worker":
        workers, threads = len(facts.gpus), 1
        limit = facts.host_total_bytes // workers
    else:
        workers, threads = 1, facts.cpu_count
        limit = facts.host_total_bytes
    infos = [_worker_info(facts, limit) for _ in range(workers)]
    return facts_from_workers(infos), workers, threads


def _cases() -> list[Any]:
    cases = []
    for path in CONFIGS:
        config = load_config(path)
        on = ["h100", "h200"] + (["cpu"] if config.backend in ("cpu", "auto") else [])
        for machine in on:
            if config.cluster.scheduler == "local":
                hows = ["local"]
            elif MACHINES[machine].gpu_usable:
                hows = ["dask cuda worker", "dask worker"]
            else:
                hows = ["dask worker"]
            cases += [
                pytest.param(path, machine, how, id=f"{path.stem}-{machine}-{how}") for how in hows
            ]
    return cases


def _config(path: Path, tmp: Path) -> Config:
    """``path``'s config with its stores in ``tmp`` (absent: planned as ``run`` would, from
    ``input.generate``), not in the checkout's data/."""
    return load_config(
        path, {"input.store": str(tmp / "in.zarr"), "output.store": str(tmp / "out.zarr")}
    )


@pytest.mark.parametrize(("path", "machine", "how"), _cases())
def test_every_shipped_config_plans_on_the_machines_it_is_for(
    tmp_path: Path, path: Path, machine: str, how: str
) -> None:
    config = _config(path, tmp_path)
    # shipped configs make their input on first use, so they plan from input.generate alone
    assert config.input.generate is not None and config.input.generate.when_missing
    facts = MACHINES[machine]
    if how == "local":
        plan = make_plan(config, facts)
        local_workers = plan.cluster.workers
        # the cluster a command line's GPU run begins before the input is read is the plan's
        assert local_cluster_plan(config, facts) == plan.cluster
    else:
        facts, workers, threads = _joined(facts, how)
        plan = make_plan(config, facts, scheduler_workers=workers, scheduler_threads=threads)
        local_workers = 1  # one worker per GPU host here, or one of all cores
    m = plan.memory
    assert m.fits()
    assert plan.backend == ("gpu" if facts.gpu_usable and config.backend != "cpu" else "cpu")
    # what the plan counts on, the machine has
    assert m.host_budget is not None
    assert m.host_per_worker <= m.host_budget
    assert m.host_budget * local_workers <= facts.host_total_bytes
    if plan.backend == "gpu":
        gpu = facts.gpus[0]
        assert m.device_budget is not None
        assert m.device_per_worker <= m.device_budget
        assert m.device_budget * plan.cluster.workers_per_gpu <= gpu.free_bytes
    assert plan.n_blocks >= 1


def test_big_config_keeps_its_purpose(tmp_path: Path) -> None:
    """configs/big.yaml: more data than an 80 GB GPU holds, through one GPU in bounded device
    memory, one 256 MiB shard per task (what its comment says)."""
    config = _config(ROOT / "configs" / "big.yaml", tmp_path)
    for machine in ("h100", "h200"):
        plan = make_plan(config, MACHINES[machine])
        gpu = MACHINES[machine].gpus[0]
        assert plan.input.nbytes > MACHINES["h100"].gpus[0].total_bytes
        assert plan.input.nbytes == 32768 * 1024 * 1024 * 4 > 137e9
        assert plan.cluster.gpus == (0,)
        budget = plan.cluster.device_budget * plan.cluster.workers_per_gpu
        assert budget == 40 * GiB < gpu.total_bytes  # bounded: the config's budget holds
        assert plan.block == plan.input.unit == (64, 1024, 1024)
        assert math.prod(plan.block) * 4 == 256 * MiB
        assert plan.decode_on == plan.encode_on == "gpu"


def test_larger_than_ram_config_keeps_its_purpose(tmp_path: Path) -> None:
    """configs/larger-than-ram.yaml: more data than the CPU machine's RAM, 1 GiB per worker."""
    config = _config(ROOT / "configs" / "larger-than-ram.yaml", tmp_path)
    plan = make_plan(config, MACHINES["cpu"])
    assert plan.input.nbytes == 32 * GiB > MACHINES["cpu"].host_total_bytes
    assert plan.cluster.host_budget == GiB
    assert plan.cluster.workers == 2


def test_example_configs_sharing_an_input_describe_it_alike() -> None:
    """Example configs that name one input store (configs/cluster.yaml runs the default job's)
    describe the same generated input: else the second one run refuses the first's input as
    no longer what its input.generate makes."""
    by_store: dict[str, list[tuple[str, Config]]] = {}
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        config = load_config(path)
        by_store.setdefault(config.input.store, []).append((path.name, config))
    shared = {store: configs for store, configs in by_store.items() if len(configs) > 1}
    assert shared, "no two example configs share an input"
    for configs in shared.values():
        (first, a), *others = configs
        for name, b in others:
            assert a.input.generate == b.input.generate, (first, name)


# --------------------------------------------------------------------------------------------
# The device budget of workers that share a GPU.


def test_workers_sharing_a_gpu_split_its_device_budget(tmp_path: Path) -> None:
    """cluster.device_memory_limit is per GPU; a local cluster's workers_per_gpu workers each
    get their share, and the plan's description says so."""
    for per_gpu in (1, 3):
        config = load_config(
            ROOT / "configs" / "big.yaml",
            {
                "input.store": str(tmp_path / "in.zarr"),
                "output.store": str(tmp_path / "out.zarr"),
                "cluster.workers_per_gpu": per_gpu,
                "cluster.threads_per_worker": 3,
            },
        )
        plan = make_plan(config, MACHINES["h100"])
        assert plan.cluster.workers_per_gpu == per_gpu
        assert plan.cluster.workers == per_gpu
        assert plan.cluster.device_budget == 40 * GiB // per_gpu
        # the description names the budget per GPU, and the split where there is one
        row = dict(describe(plan))["device memory"]
        assert "40GiB" in row, row  # as the config writes it
        assert per_gpu == 1 or f"{per_gpu} workers" in row, row


def test_big_config_with_three_workers_per_gpu_is_refused_with_what_would_fit(
    tmp_path: Path,
) -> None:
    """The issue's refusal: 8 threads in each of 3 workers sharing 40 GiB. The block is one
    input shard, so no smaller block is offered; the error carries the numbers."""
    config = load_config(
        ROOT / "configs" / "big.yaml",
        {
            "input.store": str(tmp_path / "in.zarr"),
            "output.store": str(tmp_path / "out.zarr"),
            "cluster.workers_per_gpu": 3,
        },
    )
    with pytest.raises(PlanError) as e:
        make_plan(config, MACHINES["h200"])
    err = e.value
    assert err.device_budget == 40 * GiB // 3
    assert err.device_per_worker > err.device_budget
    assert err.block == (64, 1024, 1024)
    assert err.block_that_fits is None  # one shard per block already
    assert str(err).count("\n") == 0


def test_a_refused_block_names_one_that_fits(tmp_path: Path) -> None:
    """An explicit block over the host budget: the error offers a block, a whole number of the
    input's chunks, with which the same plan fits."""
    make_array(tmp_path / "in.zarr", np.zeros((4000, 1000), np.float32), (10, 1000))
    cfg = write_config(
        tmp_path,
        tmp_path / "in.zarr",
        tmp_path / "out.zarr",
        chunking={"block": [4000, 1000]},
        cluster={"workers": 2, "threads_per_worker": 1, "host_memory_limit": "430MiB"},
    )
    with pytest.raises(PlanError) as e:
        make_plan(load_config(cfg), MACHINES["cpu"])
    fits = e.value.block_that_fits
    assert fits is not None and fits[0] % 10 == 0 and fits[0] < 4000
    plan = make_plan(load_config(cfg, {"chunking.block": list(fits)}), MACHINES["cpu"])
    assert plan.memory.fits() and plan.block == fits


# --------------------------------------------------------------------------------------------
# Budgets the machine cannot give.


def _small_job(tmp: Path, **cluster: Any) -> Path:
    make_array(tmp / "in.zarr", np.ones((40, 30), np.float32), (5, 30))
    return write_config(
        tmp, tmp / "in.zarr", tmp / "out.zarr", cluster={"dashboard": "", **cluster}
    )


def test_host_budgets_over_the_hosts_ram_are_refused(tmp_path: Path) -> None:
    cfg = _small_job(tmp_path, workers=2, host_memory_limit="200GiB")
    with pytest.raises(PlanError) as e:
        make_plan(load_config(cfg), MACHINES["cpu"])
    assert e.value.budget == 200 * GiB and e.value.key == "cluster.host_memory_limit"
    assert e.value.workers == 2
    assert e.value.host_memory == MACHINES["cpu"].host_total_bytes
    # what all workers together can have, they get
    half = MACHINES["cpu"].host_total_bytes // 2
    plan = make_plan(load_config(cfg, {"cluster.host_memory_limit": half}), MACHINES["cpu"])
    assert plan.cluster.host_budget == half
    with pytest.raises(PlanError):
        make_plan(load_config(cfg, {"cluster.host_memory_limit": half + 1}), MACHINES["cpu"])


def test_the_host_budget_a_refusal_names_as_the_most_plans_as_written(tmp_path: Path) -> None:
    """'lower it to at most X': X, written in the config as the line shows it (two decimals),
    plans, where the host's share per worker would round up to more than it is (11.776 GiB
    shown as 11.78 GiB had been refused again)."""
    cfg = _small_job(tmp_path, workers=2, host_memory_limit="200GiB")
    facts = Facts(
        gpu_usable=False,
        gpu_reason="CuPy is not installed",
        host_total_bytes=2 * int(11.776 * GiB),
        host_available_bytes=20 * GiB,
        cpu_count=2,
        hostname="cpu",
    )
    with pytest.raises(PlanError) as e:
        make_plan(load_config(cfg), facts)
    advised = re.search(r"lower it to at most (\S+ \S+) \(or auto\)", str(e.value))
    assert advised, str(e.value)
    plan = make_plan(load_config(cfg, {"cluster.host_memory_limit": advised[1]}), facts)
    assert plan.cluster.host_budget <= int(11.776 * GiB)


def test_a_host_budget_over_this_machines_ram_is_refused_before_anything_starts(
    tmp_path: Path, cli
) -> None:
    """The issue's case, on the machine the tests run on: 200 GiB per worker."""
    cfg = _small_job(tmp_path, workers=2, host_memory_limit="200GiB")
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    rc, _, err = cli("run", cfg)
    assert rc == 1
    one_line_error(err)
    assert not {p.pid for p in psutil.Process().children(recursive=True)} - before
    assert not (tmp_path / "out.zarr").exists()


def test_a_device_budget_over_the_gpus_memory_is_refused(tmp_path: Path) -> None:
    cfg = _small_job(tmp_path)
    over = {"backend": "gpu", "cluster.device_memory_limit": "100GiB"}
    with pytest.raises(PlanError) as e:
        make_plan(load_config(cfg, over), MACHINES["h100"])
    assert e.value.budget == 100 * GiB and e.value.key == "cluster.device_memory_limit"
    assert e.value.gpu_memory == MACHINES["h100"].gpus[0].total_bytes
    plan = make_plan(load_config(cfg, over), MACHINES["h200"])  # 141 GB holds 100 GiB
    assert plan.cluster.device_budget == 100 * GiB // plan.cluster.workers_per_gpu


def test_device_memory_advice_is_a_limit_that_plans_or_none(tmp_path: Path) -> None:
    """A device budget that does not fit names the cluster.device_memory_limit (per GPU, for
    all its workers) that plans; where the GPU itself cannot hold it, raising the limit (which
    is refused over the GPU's memory) is not advised."""
    cfg = _small_job(tmp_path)
    tiny = {"backend": "gpu", "cluster.device_memory_limit": "1MiB"}
    with pytest.raises(PlanError) as e:
        make_plan(load_config(cfg, tiny), MACHINES["h100"])
    advised = re.search(r"raise cluster.device_memory_limit to at least (\S+ \S+)", str(e.value))
    assert advised, e.value
    raised = {**tiny, "cluster.device_memory_limit": advised[1]}
    assert make_plan(load_config(cfg, raised), MACHINES["h100"]).cluster.device_budget
    small_gpu = _gpu_host("a small GPU", 1500)
    with pytest.raises(PlanError) as e:
        make_plan(load_config(cfg, {"backend": "gpu"}), small_gpu)
    assert "raise cluster.device_memory_limit" not in str(e.value), e.value


# --------------------------------------------------------------------------------------------
# A cluster joined by address: each worker's own memory limit.


def _two_hosts(limit: int | None) -> list[dict]:
    """`worker_facts` of 8 workers on two 128 GiB GPU hosts, 4 workers each."""
    h = MACHINES["h100"]
    return [_worker_info(h, limit, hostname=f"host{k}") for k in (0, 1) for _ in range(4)]


@pytest.mark.parametrize(
    ("limit", "expected"), [(32 * GiB, 32 * GiB), (None, 126 * GiB // 4)], ids=["set", "none"]
)
def test_a_joined_clusters_host_budget_is_each_workers_own(
    tmp_path: Path, limit: int | None, expected: int
) -> None:
    """Workers on several hosts: a worker's budget is its own memory limit, or without one
    its host's RAM shared by that host's workers, not one host's RAM over all workers."""
    cfg = _small_job(tmp_path, scheduler="tcp://127.0.0.1:8786")
    facts = facts_from_workers(_two_hosts(limit))
    assert facts.worker_memory_limit == expected
    plan = make_plan(load_config(cfg), facts, scheduler_workers=8, scheduler_threads=1)
    assert plan.cluster.host_budget == expected
    fraction = make_plan(
        load_config(cfg, {"cluster.host_memory_limit": 0.5}), facts, 8, 1
    ).cluster.host_budget
    assert fraction == expected // 2
    with pytest.raises(PlanError) as e:
        make_plan(load_config(cfg, {"cluster.host_memory_limit": expected + 1}), facts, 8, 1)
    assert e.value.worker_memory_limit == expected and e.value.key == "cluster.host_memory_limit"


def test_the_weakest_worker_sets_a_joined_clusters_budget() -> None:
    infos = _two_hosts(32 * GiB)
    infos[5]["memory_limit"] = 3 * GiB
    assert facts_from_workers(infos).worker_memory_limit == 3 * GiB


@contextlib.contextmanager
def _dask_cluster(tmp_path: Path, *limits: str, threads: int = 1) -> Iterator[str]:
    """A real `dask scheduler` and one real `dask worker` process per memory limit in
    ``limits`` (``--memory-limit``, ``--nthreads threads``); yields the scheduler's address."""
    from tests.faultkit import env, kill_group

    sched_file = tmp_path / f"scheduler-{'-'.join(limits)}.json"
    log = (tmp_path / "dask.log").open("a")
    common: dict[str, Any] = dict(
        env=env(), start_new_session=True, stdin=subprocess.DEVNULL, stdout=log, stderr=log
    )
    dask = [sys.executable, "-m", "dask"]
    procs = [
        subprocess.Popen(
            [*dask, "scheduler", "--scheduler-file", str(sched_file), "--host", "127.0.0.1"]
            + ["--port", "0", "--no-dashboard"],
            **common,
        )
    ]
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(FileNotFoundError, ValueError, KeyError):
                json.loads(sched_file.read_text())["address"]
                break
            time.sleep(0.1)
        for limit in limits:
            procs.append(
                subprocess.Popen(
                    [*dask, "worker", "--scheduler-file", str(sched_file)]
                    + ["--nthreads", str(threads), "--memory-limit", limit, "--no-dashboard"],
                    **common,
                )
            )
        from distributed import Client

        with Client(scheduler_file=str(sched_file), timeout="60s") as c:
            c.wait_for_workers(len(limits), timeout=120)
            address = c.scheduler.address
        yield address
    finally:
        for p in reversed(procs):
            kill_group(p)
        log.close()


@pytest.fixture
def uneven_cluster(tmp_path: Path) -> Iterator[str]:
    """A real `dask scheduler` and two real `dask worker` processes started with their own
    memory limits, 1 GiB and 1.5 GiB (as on two hosts of different sizes)."""
    with _dask_cluster(tmp_path, "1GiB", "1.5GiB") as address:
        yield address


def test_a_run_on_a_joined_cluster_uses_the_weakest_workers_memory_limit(
    tmp_path: Path, cli, uneven_cluster: str
) -> None:
    x = np.random.default_rng(3).standard_normal((60, 40)).astype(np.float32)
    make_array(tmp_path / "in.zarr", x, (10, 40))
    cfg = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr")
    summary = tmp_path / "summary.json"
    rc, _, err = cli("run", cfg, "--scheduler", uneven_cluster, "--summary-json", summary)
    assert rc == 0, err
    s = json.loads(summary.read_text())
    assert s["workers"] == 2
    assert s["host_budget"] == GiB
    assert np.array_equal(read_array(tmp_path / "out.zarr"), reference(x))
    # more than that worker may use is refused, before anything is written
    over = write_config(
        tmp_path,
        tmp_path / "in.zarr",
        tmp_path / "out2.zarr",
        name="over.yaml",
        cluster={"host_memory_limit": "1.2GiB"},
    )
    rc, _, err = cli("run", over, "--scheduler", uneven_cluster)
    assert rc == 1
    one_line_error(err)
    assert not (tmp_path / "out2.zarr").exists()


def test_a_joined_cluster_too_small_for_a_worker_is_told_to_start_its_workers_with_more(
    tmp_path: Path, cli
) -> None:
    """A joined cluster's worker limit caps cluster.host_memory_limit, so a worker of 100 MiB
    (less than its process, measured, and a block need) is told the `--memory-limit` its
    workers need, not to raise cluster.host_memory_limit (which is refused above the workers'
    limit); a cluster started as it says plans."""
    x = np.random.default_rng(16).standard_normal((64, 300)).astype(np.float32)
    make_array(tmp_path / "in.zarr", x, (16, 100))
    cfg = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr")
    with _dask_cluster(tmp_path, "100MiB") as address:
        rc, _, err = cli("plan", cfg, "--scheduler", address)
    assert rc == 1
    line = one_line_error(err)
    assert "raise cluster.host_memory_limit" not in line, line
    advised = re.search(r"start the workers with `--memory-limit (\S+)`", line)
    assert advised, line
    with _dask_cluster(tmp_path, advised[1]) as address:
        rc, _, err = cli("plan", cfg, "--scheduler", address)
    assert rc == 0, err


def test_a_joined_clusters_fractional_budget_is_advised_as_a_limit_that_plans(
    tmp_path: Path, cli
) -> None:
    """cluster.host_memory_limit: 0.5 on a joined cluster makes the budget half of each
    worker's `--memory-limit`: a refusal advises the limit whose half holds the plan (not the
    plan's need itself, which would still be refused), and never fewer threads when one thread
    does not fit (a block of 311 MiB and a worker process of about 145 MiB, in a budget of
    384 MiB); workers started as it says plan."""
    make_array(tmp_path / "in.zarr", np.ones((4000, 4000), np.float32), (4000, 4000))
    cfg = write_config(
        tmp_path,
        tmp_path / "in.zarr",
        tmp_path / "out.zarr",
        cluster={"host_memory_limit": 0.5},
    )
    with _dask_cluster(tmp_path, "768MiB", threads=3) as address:
        rc, _, err = cli("plan", cfg, "--scheduler", address)
    assert rc == 1
    line = one_line_error(err)
    assert "--nthreads" not in line, line
    advised = re.search(r"start the workers with `--memory-limit (\S+)`", line)
    assert advised, line
    with _dask_cluster(tmp_path, advised[1], threads=3) as address:
        rc, _, err = cli("plan", cfg, "--scheduler", address)
    assert rc == 0, err


def test_a_joined_clusters_threads_are_advised_as_its_workers_own(tmp_path: Path) -> None:
    """On a joined cluster the workers' threads are theirs (cluster.threads_per_worker is not
    used): a refusal names `--nthreads`, and that many threads plan."""
    tmp = tmp_path
    make_array(tmp / "in.zarr", np.ones((1024, 1024), np.float32), (256, 1024))
    cfg = write_config(
        tmp,
        tmp / "in.zarr",
        tmp / "out.zarr",
        cluster={"scheduler": "tcp://127.0.0.1:8786"},
        chunking={"block": [256, 1024]},
    )
    facts = facts_from_workers(_two_hosts(GiB))
    with pytest.raises(PlanError) as e:
        make_plan(load_config(cfg), facts, scheduler_workers=8, scheduler_threads=200)
    line = str(e.value)
    assert "cluster.threads_per_worker" not in line, line
    advised = re.search(r"start the workers with `--nthreads (\d+)`", line)
    assert advised, line
    plan = make_plan(
        load_config(cfg), facts, scheduler_workers=8, scheduler_threads=int(advised[1])
    )
    assert plan.cluster.threads_per_worker == int(advised[1])


def test_a_local_budget_that_the_hosts_ram_cannot_give_every_worker_names_fewer_workers(
    tmp_path: Path,
) -> None:
    """64 local workers share 23.5 GiB: a worker's share does not hold a worker process, and
    raising cluster.host_memory_limit alone would be refused (more than RAM / workers); the
    refusal names how many workers can have it, and that config plans."""
    cfg = _small_job(tmp_path, workers=64)
    with pytest.raises(PlanError) as e:
        make_plan(load_config(cfg), MACHINES["cpu"])
    line = str(e.value)
    advised = re.search(
        r"run at most (\d+) worker\(s\) \(cluster.workers\) with "
        r"cluster.host_memory_limit of at least (\S+ \S+)",
        line,
    )
    assert advised, line
    fewer = {"cluster.workers": int(advised[1]), "cluster.host_memory_limit": advised[2]}
    plan = make_plan(load_config(cfg, fewer), MACHINES["cpu"])
    assert plan.cluster.workers == int(advised[1])


# --------------------------------------------------------------------------------------------
# Automatic output chunks: the input's when they are small, sharded or not.


@pytest.mark.parametrize("shards", ["auto", "none"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_automatic_output_chunks_keep_small_input_chunks(
    tmp_path: Path, cli, shards: str, dtype: str
) -> None:
    """Input chunks of 160-320 KB (at most 1 MiB) are the output's chunks, in shards or one
    file each; the run's output reads back as NumPy's chain."""
    x = np.random.default_rng(3).standard_normal((800, 200)).astype(dtype)
    make_array(tmp_path / "in.zarr", x, (200, 200))
    cfg = write_config(
        tmp_path,
        tmp_path / "in.zarr",
        tmp_path / "out.zarr",
        output={"shards": shards},
        chunking={"block": [400, 200]},
    )
    plan = make_plan(load_config(cfg), MACHINES["cpu"])
    assert plan.output.chunk == (200, 200)
    rc, _, err = cli("run", cfg)
    assert rc == 0, err
    arr = zarr.open_array(str(tmp_path / "out.zarr"), mode="r")
    assert arr.chunks == (200, 200)
    assert arr.shards == (None if shards == "none" else (400, 200))
    assert np.array_equal(arr[...], reference(x))
    rc, out, err = cli("verify", cfg)  # samples the run's blocks, not its 200-row chunks
    assert rc == 0, err
    assert "2 of 2 blocks" in out


@pytest.mark.parametrize("shards", ["auto", "none"])
def test_automatic_output_chunks_of_large_input_chunks(tmp_path: Path, shards: str) -> None:
    """Input chunks over 1 MiB: slabs of about 128 KiB in a shard per block, or, unsharded,
    one chunk per block."""
    make_array(tmp_path / "in.zarr", np.zeros((64, 512, 512), np.float32), (2, 512, 512))
    cfg = write_config(
        tmp_path,
        tmp_path / "in.zarr",
        tmp_path / "out.zarr",
        output={"shards": shards},
        chunking={"block": [4, 512, 512]},
    )
    plan = make_plan(load_config(cfg), MACHINES["cpu"])
    want = (4, 512, 512) if shards == "none" else blocks.auto_chunk((4, 512, 512), 4)
    assert plan.output.chunk == want != (2, 512, 512)


@pytest.mark.parametrize(
    ("unit", "itemsize", "chunk"),
    [
        ((32, 1024, 1024), 4, (1, 32, 1024)),  # 128 KiB
        ((32, 1000, 1000), 4, (1, 25, 1000)),  # 100 KB: the largest divisor under the target
        ((131073,), 8, (43691,)),  # 131073 = 3 x 43691: 350 KB, not 3 values (24 bytes)
        ((7919, 3), 4, (7919, 3)),  # a prime length under the target: the whole unit (95 KB)
        ((10937, 3), 4, (10937, 3)),  # a prime length just over it: 131 KB, not 12 bytes
        ((2, 1000003), 4, (1, 1000003)),  # a prime row: 4 MB, not 4 bytes
    ],
)
def test_automatic_chunks_are_never_tiny(unit: tuple, itemsize: int, chunk: tuple) -> None:
    """Automatic output chunks are slabs near 128 KiB that tile the shard; an axis of few
    divisors gives the nearest such slab, larger if need be, never frames of a few bytes."""
    got = blocks.auto_chunk(unit, itemsize)
    assert got == chunk and grid.is_multiple(unit, got)


def test_a_shard_of_a_prime_multiple_is_not_cut_into_tiny_frames(tmp_path: Path, cli) -> None:
    """An int16 input of 131073-value chunks (int64 output): the output's chunks are a third
    of a shard, and its values NumPy's."""
    x = np.random.default_rng(4).integers(-3000, 3000, 2 * 131073, dtype=np.int16)
    make_array(tmp_path / "in.zarr", x, (131073,))
    cfg = write_config(
        tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr", chunking={"block": [131073]}
    )
    rc, _, err = cli("run", cfg)
    assert rc == 0, err
    arr = zarr.open_array(str(tmp_path / "out.zarr"), mode="r")
    assert arr.chunks == (43691,) and arr.shards == (131073,)
    assert np.array_equal(arr[...], reference(x.astype(np.int64)))


@pytest.mark.parametrize(
    ("given", "chunk_bytes", "unit_bytes"),
    [
        ({}, 128 << 10, 128 << 20),  # sharded: 128 KiB chunks in 128 MiB shards
        ({"shards": "none"}, 64 << 20, 64 << 20),
        ({"zarr_format": 2}, 64 << 20, 64 << 20),
        ({"chunks": [1, 64, 1024]}, 256 << 10, 128 << 20),  # shards of whole chunks
    ],
)
def test_generated_automatic_layout_is_the_references(
    given: dict[str, Any], chunk_bytes: int, unit_bytes: int
) -> None:
    """input.generate's automatic chunks and shards are the sizes its reference gives, for a
    float32 [2048, 1024, 1024] array."""
    g = GenerateConfig(shape=[2048, 1024, 1024], **given)
    chunk, unit = blocks.generated_layout(g)
    assert math.prod(chunk) * 4 == chunk_bytes and math.prod(unit) * 4 == unit_bytes
    assert grid.is_multiple(unit, chunk)


# --------------------------------------------------------------------------------------------
# output.codec.checksum: every frame carries a checksum, whoever encodes.


def test_gpu_plans_encode_on_the_cpu_when_checksums_are_asked(tmp_path: Path) -> None:
    cfg = _small_job(tmp_path)
    for checksum, encoder in ((True, "cpu"), (False, "gpu")):
        config = load_config(cfg, {"backend": "gpu", "output.codec.checksum": checksum})
        plan = make_plan(config, MACHINES["h100"])
        assert (plan.decode_on, plan.encode_on) == ("gpu", encoder)
        assert plan.sink.encoding.checksum is checksum
        assert any("checksum" in n for n in plan.notes) is checksum


# --------------------------------------------------------------------------------------------
# Codecs are known by their spec name and configuration: another implementation of the same
# codec writes the same bytes and must take the same path.


def _by_zarr_python() -> dict[str, Any]:
    from zarr.codecs import BloscCodec, Crc32cCodec, GzipCodec, ZstdCodec

    return {
        "zstd": [ZstdCodec(level=1)],
        "zstd-checksum": [ZstdCodec(level=1, checksum=True)],
        "zstd-crc32c": [ZstdCodec(level=1), Crc32cCodec()],
        "blosc": [BloscCodec(cname="lz4")],
        "gzip": [GzipCodec(level=3)],
    }


def _by_numcodecs() -> dict[str, Any]:
    """numcodecs' codecs as Zarr 3 codecs (named ``numcodecs.zstd`` ...; ``numcodecs.zarr3``,
    now deprecated, made the same)."""
    import zarr.codecs.numcodecs as nc

    return {
        "zstd": [nc.Zstd(level=1)],
        "zstd-checksum": [nc.Zstd(level=1, checksum=True)],
        "zstd-crc32c": [nc.Zstd(level=1), nc.CRC32C()],
        "blosc": [nc.Blosc(cname="lz4")],
        "gzip": [nc.GZip(level=3)],
    }


def _planned_with(tmp: Path, compressors: list[Any], machine: str, sharded: bool) -> Any:
    """The plan of the small job over an input written by zarr-python with ``compressors``
    (the store rewritten in place, so that two plans differ only by their codecs)."""
    x = np.random.default_rng(3).standard_normal((64, 256)).astype(np.float32)
    with warnings.catch_warnings():  # numcodecs' codecs warn that they are not in the spec
        warnings.simplefilter("ignore", UserWarning)
        arr = zarr.create_array(
            store=str(tmp / "in.zarr"),
            shape=x.shape,
            dtype=x.dtype,
            chunks=(8, 256),
            shards=(32, 256) if sharded else None,
            compressors=compressors,
            overwrite=True,
        )
        arr[...] = x
    cfg = write_config(tmp, tmp / "in.zarr", tmp / "out.zarr")
    return make_plan(load_config(cfg, {"backend": "auto"}), MACHINES[machine])


@pytest.mark.parametrize("sharded", [False, True], ids=["unsharded", "sharded"])
@pytest.mark.parametrize("machine", ["h100", "cpu"])
@pytest.mark.parametrize("codec", sorted(_by_zarr_python()))
def test_a_codec_takes_the_same_path_whoever_implements_it(
    tmp_path: Path, codec: str, machine: str, sharded: bool
) -> None:
    """An input written with zarr-python's own codec and one with numcodecs' Zarr 3 codec of
    the same name (``zstd`` and ``numcodecs.zstd`` ...) plan the same decode path: on the GPU
    for zstd, straight from the stored bytes on the CPU for the rest, never through Zarr."""
    ours = _planned_with(tmp_path, _by_zarr_python()[codec], machine, sharded)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        theirs = _planned_with(tmp_path, _by_numcodecs()[codec], machine, sharded)
    for plan in (ours, theirs):
        assert plan.input.format is not None, plan.input.codecs_text()  # not read through Zarr
    assert theirs.decode_on == ours.decode_on
    assert theirs.input.codec == ours.input.codec
    assert theirs.input.format.chunk.in_place == ours.input.format.chunk.in_place
    assert theirs.memory == ours.memory
    assert theirs.block == ours.block
    gpu_decodes = machine == "h100" and codec in ("zstd", "zstd-checksum")
    assert (ours.decode_on == "gpu") is gpu_decodes


def _frames(store: Path) -> list[bytes]:
    """Every zstd frame of a Zarr v3 output, read from its files (one frame per chunk file,
    or several per shard file, found through the shard's index at its end)."""
    arr = zarr.open_array(store=str(store), mode="r")
    files = [f.read_bytes() for f in sorted((store / "c").rglob("*")) if f.is_file()]
    if arr.shards is None:
        return files
    n = math.prod(s // c for s, c in zip(arr.shards, arr.chunks, strict=True))
    frames = []
    for raw in files:
        index = np.frombuffer(raw[-(16 * n + 4) : -4], "<u8").reshape(n, 2)
        frames += [raw[int(o) : int(o + k)] for o, k in index if o != 2**64 - 1]
    return frames


def _zstd_configurations(codecs: list[dict]) -> Iterator[dict]:
    """The configuration of every zstd codec in a Zarr v3 codec list, inside shards too."""
    for c in codecs:
        if c["name"] == "zstd":
            yield c["configuration"]
        yield from _zstd_configurations(c.get("configuration", {}).get("codecs", []))


def _check_frames(store: Path) -> None:
    """Every frame of the array at ``store`` says it carries a content checksum (the zstd
    frame header's flag), the checksum verifies, and a changed checksum fails to decode."""
    arr = zarr.open_array(store=str(store), mode="r")
    codecs = json.loads((store / "zarr.json").read_text())["codecs"]
    assert [z["checksum"] for z in _zstd_configurations(codecs)] == [True]  # what it says
    chunk_bytes = math.prod(arr.chunks) * arr.dtype.itemsize
    frames = _frames(store)
    assert len(frames) == math.prod(
        math.ceil(s / c) for s, c in zip(arr.shape, arr.chunks, strict=True)
    )
    for frame in frames:
        assert frame[:4] == b"\x28\xb5\x2f\xfd"  # zstd frame magic
        assert frame[4] & 0x04, "the frame header's Content_Checksum_flag is not set"
        assert len(numcodecs.Zstd().decode(frame)) == chunk_bytes
        bad = bytearray(frame)
        bad[-1] ^= 0xFF  # the checksum is the frame's last 4 bytes
        with pytest.raises(RuntimeError):
            numcodecs.Zstd().decode(bytes(bad))


def _quick_config(tmp: Path, backend: str, **sections: Any) -> Path:
    """A config of ``tmp/in.zarr`` to ``tmp/out.zarr`` on ``backend``; on the CPU a cluster of
    threads in this process (these tests are about the stores, not the processes)."""
    cluster = {"protocol": "inproc", "workers": 1} if backend == "cpu" else {}
    return write_config(
        tmp, tmp / "in.zarr", tmp / "out.zarr", backend=backend, cluster=cluster, **sections
    )


def _checksummed_run(tmp_path: Path, cli, backend: str, shards: Any) -> None:
    x = np.random.default_rng(7).standard_normal((48, 40)).astype(np.float32)
    make_array(tmp_path / "in.zarr", x, (4, 40), shards=(16, 40))
    cfg = _quick_config(
        tmp_path,
        backend,
        output={"codec": {"name": "zstd", "checksum": True}, "shards": shards},
        chunking={"target_bytes": 16 * 40 * 4},
    )
    rc, _, err = cli("run", cfg)
    assert rc == 0, err
    assert np.array_equal(read_array(tmp_path / "out.zarr"), reference(x))
    _check_frames(tmp_path / "out.zarr")


@pytest.mark.parametrize("shards", ["auto", "none"])
def test_cpu_output_frames_carry_valid_checksums(tmp_path: Path, cli, shards: str) -> None:
    _checksummed_run(tmp_path, cli, "cpu", shards)


@pytest.mark.gpu
@pytest.mark.parametrize("shards", ["auto", "none"])
def test_gpu_output_frames_carry_valid_checksums(tmp_path: Path, cli, shards: str) -> None:
    _checksummed_run(tmp_path, cli, "gpu", shards)


# --------------------------------------------------------------------------------------------
# Chunk geometry: 0-length axes, chunks larger than the array.


def _hand_written(path: Path, zarr_format: int, shape: list, chunks: list) -> None:
    """An array's metadata written by hand from the Zarr spec (zarr-python refuses to write
    chunks with a 0), no chunk files."""
    path.mkdir()
    if zarr_format == 3:
        doc = {
            "zarr_format": 3,
            "node_type": "array",
            "shape": shape,
            "data_type": "float32",
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": chunks}},
            "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
            "fill_value": 0.0,
            "codecs": [
                {"name": "bytes", "configuration": {"endian": "little"}},
                {"name": "zstd", "configuration": {"level": 0, "checksum": False}},
            ],
            "attributes": {},
        }
        (path / "zarr.json").write_text(json.dumps(doc))
    else:
        doc = {
            "zarr_format": 2,
            "shape": shape,
            "chunks": chunks,
            "dtype": "<f4",
            "compressor": {"id": "zstd", "level": 1},
            "fill_value": 0.0,
            "order": "C",
            "filters": None,
        }
        (path / ".zarray").write_text(json.dumps(doc))


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_chunks_with_a_zero_are_refused_before_anything_is_written(
    tmp_path: Path, cli, zarr_format: int
) -> None:
    _hand_written(tmp_path / "in.zarr", zarr_format, [1, 5, 1], [1, 2, 0])
    cfg = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr")
    with pytest.raises(InputError) as e:
        make_plan(load_config(cfg), MACHINES["cpu"])
    assert e.value.chunks == (1, 2, 0)
    assert e.value.shape == (1, 5, 1)
    assert e.value.store == str(tmp_path / "in.zarr")
    rc, _, err = cli("run", cfg)
    assert rc == 1
    one_line_error(err)
    assert not (tmp_path / "out.zarr").exists()


def _empty_input(path: Path, case: str) -> tuple[int, ...]:
    """An empty (0-size) array, written by zarr-python (or by hand where it needs a 0 in
    the chunks of a 0-length axis: zarr-python 3.1 writes one when asked, 3.4 refuses)."""
    if case == "v3":
        make_array(path, np.zeros((1, 0, 5), np.float32), (1, 2, 5))
    elif case == "v2":
        make_array(path, np.zeros((1, 0, 5), np.float32), (1, 2, 5), zarr_format=2)
    elif case == "v3-sharded":
        make_array(path, np.zeros((4, 0), np.float32), (1, 2), shards=(2, 4))
    elif case == "zero-chunks":
        _hand_written(path, 3, [0, 3], [0, 3])
    else:
        _hand_written(path, 2, [6, 0], [0, 0])
    with warnings.catch_warnings():  # zarr 3.4 warns that a 0 chunk size is read as 1
        warnings.simplefilter("ignore")
        return tuple(zarr.open_array(store=str(path), mode="r").shape)


BACKENDS = ["cpu", pytest.param("gpu", marks=pytest.mark.gpu)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", ["v3", "v2", "v3-sharded", "zero-chunks", "zero-chunks-v2"])
def test_an_empty_array_gives_an_empty_complete_output(
    tmp_path: Path, cli, case: str, backend: str
) -> None:
    """A 0-size array is valid Zarr, and NumPy's chain over it is an empty array: the output
    is that, of the input's shape and the chain's dtype, complete; verify agrees."""
    shape = _empty_input(tmp_path / "in.zarr", case)
    cfg = _quick_config(tmp_path, backend)
    plan = make_plan(load_config(cfg), MACHINES["h100" if backend == "gpu" else "cpu"])
    assert plan.n_blocks == 0 and 0 not in plan.block and 0 not in plan.output.chunk
    rc, _, err = cli("run", cfg)
    assert rc == 0, err
    out = zarr.open_array(store=str(tmp_path / "out.zarr"), mode="r")
    assert out.shape == shape and out.dtype == np.float32 and out[...].size == 0
    assert status(tmp_path / "out.zarr") == "complete"
    rc, _, err = cli("verify", cfg, "--all")
    assert rc == 0, err


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("zarr_format", "chunks", "shards"),
    [(3, (10, 10), None), (2, (10, 10), None), (3, (4, 4), (8, 8)), (3, (2, 64), None)],
)
def test_chunks_larger_than_the_array(
    tmp_path: Path, cli, zarr_format: int, chunks: tuple, shards: tuple | None, backend: str
) -> None:
    """Chunks (or shards) longer than the array on some axis: stored padded, read clipped."""
    x = np.arange(15, dtype=np.float32).reshape(3, 5)
    make_array(tmp_path / "in.zarr", x, chunks, zarr_format=zarr_format, shards=shards)
    cfg = _quick_config(tmp_path, backend)
    rc, _, err = cli("run", cfg)
    assert rc == 0, err
    assert np.array_equal(read_array(tmp_path / "out.zarr"), reference(x))
    assert status(tmp_path / "out.zarr") == "complete"


def test_output_chunks_longer_than_the_array_that_do_not_fit_name_output_chunks(
    tmp_path: Path,
) -> None:
    """output.chunks [1000, 1000, 1000] over a [6, 4, 5] array: Zarr stores each chunk whole,
    3.73 GiB of float32, which no budget here holds; the refusal had named a host memory
    limit of 16 GiB as the fix, where chunks of at most the array's shape hold it all. It
    names output.chunks, at its line; chunks past the array that fit still run."""
    make_array(tmp_path / "in.zarr", np.arange(120, dtype="f4").reshape(6, 4, 5), (6, 4, 5))
    over = write_config(
        tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr", output={"chunks": [1000] * 3}
    )
    with pytest.raises(PlanError) as e:
        make_plan(load_config(over), MACHINES["cpu"])
    assert e.value.key == "output.chunks", str(e.value)
    assert (
        "output.chunks [1000, 1000, 1000] are longer than the array [6, 4, 5] on an axis, and "
        "Zarr stores every chunk whole" in str(e.value)
    ), str(e.value)
    assert str(e.value).endswith("give output.chunks of at most the array's shape, [6, 4, 5]")
    assert not (tmp_path / "out.zarr").exists()
    fits = write_config(
        tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr", output={"chunks": [8, 4, 5]}
    )
    assert make_plan(load_config(fits), MACHINES["cpu"]).output.chunk == (8, 4, 5)


@pytest.mark.parametrize("checksum", [True, False])
def test_a_generated_input_with_checksums_is_encoded_on_the_cpu(
    tmp_path: Path, checksum: bool
) -> None:
    """`generate` on the GPU, too, leaves frames that must carry checksums to the CPU."""
    from pipeline.running.generate import create_input

    cfg = generated_config(
        tmp_path, {"shape": [8, 40], "chunks": [2, 40], "codec": {"checksum": checksum}}
    )
    spec = create_input(load_config(cfg), "gpu")  # metadata only: no GPU is needed
    assert spec.sink.backend == ("cpu" if checksum else "gpu")
    assert spec.sink.encoding.checksum is checksum


@pytest.mark.parametrize("backend", BACKENDS)
def test_generated_frames_carry_valid_checksums(tmp_path: Path, cli, backend: str) -> None:
    cfg = generated_config(
        tmp_path,
        {"shape": [48, 40], "chunks": [4, 40], "shards": [16, 40], "codec": {"checksum": True}},
        backend=backend,
    )
    rc, _, err = cli("generate", cfg)
    assert rc == 0, err
    _check_frames(tmp_path / "in.zarr")


@pytest.mark.parametrize(
    ("compressors", "chunks", "shards", "per_thread"),
    [
        # zarr-python 2's default (Blosc): decoded on the CPU cores, about 5 blocks a thread
        (numcodecs.Blosc(cname="lz4", clevel=5, shuffle=1), (4, 1000, 1000), None, CPU_BLOCKS),
        # zarr-python 3's default, 16 MB zstd chunks: over nvCOMP's frame limit, CPU decoded
        ("auto", (4, 1000, 1000), None, CPU_BLOCKS),
        # small zstd chunks in shards: nvCOMP decodes them, about 2 blocks a thread
        ("auto", (1, 40, 1000), (16, 1000, 1000), 2),
    ],
)
def test_a_gpu_run_that_decodes_on_the_cpu_gets_more_smaller_blocks(
    tmp_path: Path, compressors: Any, chunks: tuple, shards: tuple | None, per_thread: int
) -> None:
    """A 6 GB input's automatic blocks: where a GPU run decodes on the CPU, the block aims
    at about CPU_DECODE_BLOCKS_PER_THREAD blocks per worker thread (so CPU decoding overlaps
    the GPU's work and the last wave is short); where nvCOMP decodes, at about two. Only the
    metadata is written: the plan reads nothing else."""
    shape = (1504, 1000, 1000)
    zarr_format = 2 if isinstance(compressors, numcodecs.Blosc) else 3
    zarr.create_array(
        store=str(tmp_path / "in.zarr"),
        shape=shape,
        chunks=chunks,
        shards=shards,
        dtype="float32",
        zarr_format=zarr_format,
        compressors=compressors,
    )
    plan = make_plan(load_config(_quick_config(tmp_path, "gpu")), MACHINES["h100"])
    slots = plan.cluster.workers * plan.cluster.threads_per_worker
    expect = math.prod(shape) * 4 // (per_thread * slots)
    block_bytes = math.prod(plan.block) * 4
    assert plan.decode_on == ("gpu" if per_thread == 2 else "cpu")
    # where the CPU decodes, each worker decodes on a pool of its share of the host's 16 cores
    share = -(-MACHINES["h100"].cpu_count // plan.cluster.workers)
    pool = max(plan.cluster.threads_per_worker, share) if plan.decode_on == "cpu" else 1
    assert plan.source.decode_threads == pool
    # threads waiting for the GPU sleep where the CPU's zstd decode bounds the run
    want = "block" if plan.decode_on == "cpu" and compressors == "auto" else "auto"
    assert gpu_wait(plan.source, plan.backend) == want
    assert gpu_wait(plan.source, "cpu") == "auto"
    path = dict(describe(plan))["codec path"]
    assert ("threads waiting for the GPU sleep" in path) is (want == "block"), path
    if plan.decode_on == "gpu":
        assert block_bytes <= expect and plan.n_blocks >= per_thread * slots
    else:  # about CPU_BLOCKS a thread, none under CPU_DECODE_MIN_BLOCK (one-chunk blocks were slow)
        assert block_bytes <= max(expect, CPU_DECODE_MIN_BLOCK)
        assert block_bytes > CPU_DECODE_MIN_BLOCK // 2
        assert plan.n_blocks >= min(per_thread * slots, math.prod(shape) * 4 // block_bytes)


def test_zarr_warning_on_a_stored_chunk_size_of_0_is_filtered_while_the_input_opens() -> None:
    """zarr-python 3.4 warns, as it opens an array whose stored chunk size is 0, that it reads
    it as 1; the pipeline reads such an array the same way (the empty-array test above), so the
    warning is filtered while it opens the input. zarr 3.4 needs Python 3.12: the warning's
    words here are those zarr 3.4.2 printed on the GPU host (2026-11-30), where the filter's
    first pattern missed them (a warnings filter matches from the message's start)."""
    from zarr.errors import ZarrUserWarning

    from pipeline.store.arrays import format_warnings_ignored

    text = (
        "Array 'file:///tmp/in.zarr': The stored chunk shape [0, 0] is invalid: chunk sizes "
        "must be integers of at least 1. It is read as [1, 1], reading 0 in dimension 0 as 1, "
        "as no chunk can be stored under a chunk size of 0."
    )
    with format_warnings_ignored():
        warnings.warn(text, ZarrUserWarning, stacklevel=1)
    with pytest.raises(ZarrUserWarning):  # elsewhere it is an error (pytest's filterwarnings)
        warnings.warn(text, ZarrUserWarning, stacklevel=1)


@pytest.mark.parametrize(
    ("shape", "chunks", "out_chunks", "block"),
    [
        ((1000, 1000), (250, 250), (256, 256), (1024, 1024)),  # lcm 32000: 4 GB blocks
        ((5_000_000,), (999_983,), (1_000_000,), (5_000_000,)),  # lcm about 1e12
        ((1000, 40), (300, 40), (256, 40), (1024, 40)),  # one axis past the end, one not
    ],
)
def test_chunks_whose_common_multiple_passes_the_arrays_end_give_one_block_across(
    tmp_path: Path, cli, shape: tuple, chunks: tuple, out_chunks: tuple, block: tuple
) -> None:
    """Input and output chunks whose least common multiple reaches past the array's end: one
    block across that axis, of the fewest output chunks that cover it (the plan had asked for
    blocks of the common multiple, and refused them as far too large); the output is NumPy's,
    to the bit."""
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    make_array(tmp_path / "in.zarr", x, chunks)
    cfg = _quick_config(tmp_path, "cpu", output={"chunks": list(out_chunks)})
    plan = make_plan(load_config(cfg), MACHINES["cpu"])
    assert plan.block == block
    if len(shape) == 2:
        rc, _, err = cli("run", cfg)
        assert rc == 0, err
        assert np.array_equal(read_array(tmp_path / "out.zarr"), reference(x))
        z = zarr.open_array(str(tmp_path / "out.zarr"), mode="r")
        assert z.chunks == out_chunks


def test_a_block_across_the_array_takes_whole_output_chunks_in_its_shard(
    tmp_path: Path, cli
) -> None:
    """chunking.block [1000, 1000] on a 1000 x 1000 array with output chunks of 256: its
    automatic shard is 1024 x 1024 (whole chunks, past the array's end); it had been refused
    as 'output.shards [1000, 1000] is not a whole multiple of output.chunks', shards the config
    never set."""
    x = np.random.default_rng(2).standard_normal((1000, 1000)).astype(np.float32)
    make_array(tmp_path / "in.zarr", x, (250, 250))
    cfg = _quick_config(
        tmp_path, "cpu", output={"chunks": [256, 256]}, chunking={"block": [1000, 1000]}
    )
    plan = make_plan(load_config(cfg), MACHINES["cpu"])
    assert (plan.block, plan.output.unit, plan.output.chunk) == (
        (1000, 1000),
        (1024, 1024),
        (256, 256),
    )
    rc, _, err = cli("run", cfg)
    assert rc == 0, err
    assert np.array_equal(read_array(tmp_path / "out.zarr"), reference(x))


def test_ucx_is_refused_for_a_local_cpu_cluster(tmp_path: Path) -> None:
    """``cluster.protocol: ucx`` on a local CPU cluster had been left out of its LocalCluster
    without a word (the run went over tcp, the plan saying nothing of it): refused, naming
    the settings that apply. A local GPU cluster still plans with it (dask-cuda's)."""
    from pipeline.errors import ConfigError

    x = np.arange(64, dtype=np.float32).reshape(8, 8)
    make_array(tmp_path / "in.zarr", x, (4, 8))
    cfg = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr")
    for backend in ("cpu", "auto"):
        config = load_config(cfg, {"cluster.protocol": "ucx", "backend": backend})
        with pytest.raises(ConfigError) as e:
            make_plan(config, MACHINES["cpu"])
        assert e.value.data["key"] == "cluster.protocol"
        assert "set cluster.protocol: auto" in str(e.value)
    config = load_config(cfg, {"cluster.protocol": "ucx", "backend": "gpu"})
    assert make_plan(config, MACHINES["h200"]).cluster.protocol == "ucx"
    assert not (tmp_path / "out.zarr").exists()


@pytest.mark.parametrize("workers_per_gpu", [1, 3])
@pytest.mark.parametrize("shared", [False, True], ids=["a-gpu-each", "one-gpu-shared"])
def test_an_existing_clusters_gpu_workers_split_a_gpu_as_they_report_it(
    tmp_path: Path, shared: bool, workers_per_gpu: int
) -> None:
    """A caller's client (or a cluster joined by address) whose workers have GPUs is planned
    for its workers as they report their GPUs (:func:`~pipeline.devices.hardware.worker_facts`
    of each, asked of real workers): each GPU's budget split between the workers that use it,
    not between the config's ``cluster.workers_per_gpu`` (h67b). It had been the config's
    (3 unless set): blocks sized for 3 workers a GPU on dask-cuda's one worker per GPU, and,
    with ``workers_per_gpu: 1``, each of 3 workers sharing a GPU given the whole GPU's budget,
    the summary naming the config's split either way. The workers here are a CPU machine's:
    each is given the GPU it would report, one each (LocalCUDACluster's) or one shared."""
    from distributed import Client, LocalCluster

    from pipeline.devices.hardware import worker_facts
    from pipeline.planning import memory

    gpu = MACHINES["h100"].gpus[0]
    make_array(tmp_path / "in.zarr", np.ones((64, 4096), "f4"), (8, 4096))
    cfg = write_config(
        tmp_path,
        tmp_path / "in.zarr",
        tmp_path / "out.zarr",
        backend="gpu",
        cluster={"workers_per_gpu": workers_per_gpu, "mps": "auto"},
    )
    config = load_config(cfg)
    with (
        LocalCluster(
            n_workers=3, threads_per_worker=1, processes=False, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        answers = client.run(worker_facts)  # by address, as the run asks them
    infos = list(answers.values())
    assert len(infos) == 3 and all(not i["gpus"] for i in infos)  # a CPU machine's
    for n, info in enumerate(infos):
        bus = f"0000:{0x18 if shared else 0x18 + n:02x}:00.0"
        info["gpus"] = [GpuInfo(0, gpu.name, gpu.total_bytes, gpu.free_bytes, bus).__dict__]
        info.update(gpu_usable=True, gpu_reason="1 CUDA device(s) visible")
    per = 3 if shared else 1
    host = MACHINES["h100"]
    # a caller's client's facts and a joined cluster's are the same function of the answers
    client_facts = facts_from_workers(answers)
    joined_facts = facts_from_workers(infos)
    assert client_facts.workers_per_gpu == joined_facts.workers_per_gpu == per
    for facts in (client_facts, joined_facts):
        plan = make_plan(config, facts, scheduler_workers=3, scheduler_threads=1)
        c = plan.cluster
        assert (c.workers, c.workers_per_gpu, c.gpus, c.own) == (3, per, (), False), c
        assert c.mps == ""  # the run's MPS daemon is for the workers it starts
        assert plan.memory.device_budget == memory.device_budget(config, facts, per)
        assert plan.memory.device_per_worker <= plan.memory.device_budget
        (row,) = [text for name, text in describe(plan) if name == "device memory"]
        split = f"split between the GPU's {per} workers (as the cluster's workers report)"
        assert (split in row) == shared and "workers_per_gpu" not in row, row
    # this run's own local cluster still splits each GPU between the config's workers
    own = make_plan(config, host)
    assert (own.cluster.workers_per_gpu, own.cluster.own) == (workers_per_gpu, True)


def test_a_clusters_facts_are_what_its_workers_report_never_this_machines(tmp_path: Path) -> None:
    """The facts a run on a cluster it does not start is planned by (a caller's client's, or
    one joined by address: :func:`~pipeline.devices.hardware.facts_from_workers` of each
    worker's :func:`~pipeline.devices.hardware.worker_facts`, asked of real workers here and
    given the GPU they would report): the GPU of least free memory that a worker sees, with
    what the pipeline's warm workers hold on it counted as free; the weakest host's cores and
    RAM; each worker's memory limit (shared by the workers that are threads of one process);
    only the memory available for what this process reads itself (the arrays carried beside
    a Dataset) is this process's. A caller's client's had been this machine's: a GPU run of
    a CPU machine's client refused, its GPU's free memory and cores taken for the workers'."""
    from distributed import Client, LocalCluster

    from pipeline.devices.hardware import worker_facts
    from pipeline.planning import memory

    gpu = MACHINES["h100"].gpus[0]
    make_array(tmp_path / "in.zarr", np.ones((64, 4096), "f4"), (8, 4096))
    cfg = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr", backend="gpu")
    config = load_config(cfg)
    limit = 3 * GiB
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=False,
            memory_limit=limit,
            dashboard_address=":0",
        ) as cluster,
        Client(cluster) as client,
    ):
        answers = client.run(worker_facts)
    assert len(answers) == 2 and all(a.startswith("inproc://") for a in answers)
    bus = "0000:18:00.0"
    for n, info in enumerate(answers.values()):  # one GPU, shared; the second sees less free
        free = gpu.free_bytes - n * GiB
        info["gpus"] = [GpuInfo(0, gpu.name, gpu.total_bytes, free, bus).__dict__]
        info.update(gpu_usable=True, gpu_reason="1 CUDA device(s) visible", cpus=64)
        info.update(host_memory_bytes=512 * GiB, hostname="gpu-host")
    held = {bus: 2 * GiB}  # the warm workers' pools, on that GPU
    facts = facts_from_workers(answers, held, here_available=5 * GiB)
    assert facts.gpu_usable and facts.gpu_reason == "1 CUDA device(s) visible"
    (seen,) = facts.gpus
    assert seen.free_bytes == gpu.free_bytes - GiB + 2 * GiB and seen.bus_id == bus
    assert (facts.cpu_count, facts.host_total_bytes) == (64, 512 * GiB)
    assert facts.host_available_bytes == 5 * GiB  # this process's
    assert facts.worker_memory_limit == limit // 2  # threads of one process share its memory
    assert facts.workers_per_gpu == 2
    plan = make_plan(config, facts, scheduler_workers=2, scheduler_threads=1)
    assert plan.backend == "gpu"  # however this machine is
    assert plan.cluster.device_budget == memory.device_budget(config, facts, 2)
    assert plan.cluster.host_budget == limit // 2
    assert plan.facts == facts
