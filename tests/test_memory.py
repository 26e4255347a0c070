"""Bounded memory: data several times the budget goes through with the measured peak under it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import generated_config, read_array, reference

RAMP = {"dtype": "float32", "distribution": "ramp", "chunks": [1, 32, 1024]}


def test_cpu_run_stays_within_a_small_host_budget(tmp_path, cli) -> None:
    """1.07 GB through two workers of 600 MiB each: the peak RSS per worker stays below."""
    cfg = generated_config(
        tmp_path,
        {**RAMP, "shape": [256, 1024, 1024], "shards": [8, 1024, 1024]},
        cluster={
            "workers": 2,
            "threads_per_worker": 1,
            "host_memory_limit": "600MiB",
            "dashboard": "",
            "protocol": "tcp",  # worker processes, each with its own RSS
        },
    )
    rc, _, err = cli("generate", cfg, "--progress", "none")
    assert rc == 0, err
    rc, _out, err = cli("run", cfg, "--summary-json", tmp_path / "s.json")
    assert rc == 0, err
    s = json.loads((tmp_path / "s.json").read_text())
    budget = s["host_budget"]
    assert budget == 600 * 2**20
    assert s["bytes_in"] > 1.5 * budget  # the data is several times what a worker may hold
    assert 0 < s["peak_host_bytes"] <= budget, s["peak_host_bytes"]
    x = read_array(tmp_path / "in.zarr")
    assert np.array_equal(read_array(tmp_path / "out.zarr"), reference(x))


@pytest.mark.gpu
def test_gpu_run_stays_within_a_small_device_budget(tmp_path, cli) -> None:
    """17 GB through a GPU with a 4 GiB device budget: the pool's peak stays below it."""
    cfg = generated_config(
        tmp_path,
        {**RAMP, "shape": [4096, 1024, 1024], "shards": [16, 1024, 1024]},
        backend="gpu",
        cluster={
            "threads_per_worker": 2,
            "workers_per_gpu": 1,
            "device_memory_limit": "4GiB",
            "dashboard": "",
        },
    )
    rc, _, err = cli("generate", cfg, "--progress", "none")
    assert rc == 0, err
    rc, out, err = cli("run", cfg, "--summary-json", tmp_path / "s.json")
    assert rc == 0, err
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["device_budget"] == 4 * 2**30
    assert s["bytes_in"] > 2 * s["device_budget"]
    assert 0 < s["peak_device_bytes"] <= s["device_budget"]
    rc, out, err = cli("verify", cfg, "--samples", "4")
    assert rc == 0, err + out


def _big_chunk_input(path) -> None:
    """A Zarr v2 float32 array whose chunks are 64 MiB each, zlib-compressed (a codec with no
    size header: it decodes through a temporary), random so that it does not compress."""
    import numcodecs
    import zarr

    a = zarr.create_array(
        store=str(path),
        shape=(2, 4096, 4096),
        chunks=(1, 4096, 4096),
        dtype="float32",
        zarr_format=2,
        compressors=numcodecs.Zlib(level=1),
    )
    rng = np.random.default_rng(0)
    for i in range(2):
        a[i] = rng.standard_normal((4096, 4096), dtype=np.float32)


def test_a_budget_that_cannot_hold_one_big_chunk_is_refused(tmp_path, cli) -> None:
    """A block holds whole stored chunks, so a 64 MiB chunk needs several times that: a budget
    of 1.2 chunks is refused by the plan, with the numbers, before anything runs."""
    from pipeline.config import load_config
    from pipeline.errors import PlanError
    from pipeline.running.runner import plan_run
    from tests.conftest import write_config

    _big_chunk_input(tmp_path / "in.zarr")
    cfg = write_config(
        tmp_path,
        tmp_path / "in.zarr",
        tmp_path / "out.zarr",
        output={"chunks": [1, 4096, 256]},
        cluster={"workers": 1, "threads_per_worker": 1, "host_memory_limit": "77MiB"},
    )
    with pytest.raises(PlanError) as err:
        plan_run(load_config(cfg))
    assert err.value.host_budget == 77 * 2**20
    assert err.value.host_per_worker > 4 * 64 * 2**20
    rc, _, stderr = cli("run", cfg)
    assert rc == 1 and not (tmp_path / "out.zarr" / "zarr.json").exists(), stderr


def test_the_plans_host_budget_holds_what_a_big_chunk_run_uses(tmp_path, cli) -> None:
    """The budget the plan asks for is enough: with host_memory_limit set to the plan's own
    projection for one worker, the run completes (Dask kills a worker past 95% of its limit)
    and the sampled peak RSS stays below it."""
    from pipeline.config import load_config
    from pipeline.running.runner import plan_run
    from tests.conftest import write_config

    _big_chunk_input(tmp_path / "in.zarr")
    sections = {"output": {"chunks": [1, 4096, 256]}}
    probe = write_config(
        tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr", name="probe.yaml", **sections
    )
    from pipeline.planning.memory import WORKER_BASELINE

    per_worker = plan_run(load_config(probe)).memory.host_per_task + WORKER_BASELINE
    cfg = write_config(
        tmp_path,
        tmp_path / "in.zarr",
        tmp_path / "out.zarr",
        cluster={
            "workers": 1,
            "threads_per_worker": 1,
            "host_memory_limit": per_worker,
            "protocol": "tcp",  # a worker process, whose RSS is the task's alone
        },
        **sections,
    )
    rc, _, err = cli("run", cfg, "--summary-json", tmp_path / "s.json")
    assert rc == 0, err
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["host_budget"] == per_worker
    assert 0 < s["peak_host_bytes"] <= per_worker, (s["peak_host_bytes"], per_worker)
    x = read_array(tmp_path / "in.zarr")
    assert np.array_equal(read_array(tmp_path / "out.zarr"), reference(x))


_MIB = 1 << 20


@pytest.mark.parametrize(
    ("memory", "threads", "per_gpu", "smaller", "room", "key", "fix"),
    [
        # a smaller block fits: chunking.block, whatever else would
        ("host", 4, 1, (2, 8), {}, "chunking.block", "a block of [2, 8] would fit"),
        # two threads' tasks fit in the budget: fewer threads
        ("host", 4, 1, None, {}, "cluster.threads_per_worker", "threads_per_worker: 2"),
        # a joined cluster's threads are its workers' flag: no setting of the config
        ("host", 4, 1, None, {"joined": True}, None, "`--nthreads 2`"),
        # no task fits: a larger budget alone
        ("tight-host", 1, 1, None, {}, "cluster.host_memory_limit", "raise cluster.host_memory"),
        # the budget does not hold the worker process
        ("small-host", 1, 1, None, {}, "cluster.host_memory_limit", "does not even hold"),
        # GPU workers that share a GPU: fewer of them first
        ("device", 1, 2, None, {"backend": "gpu"}, "cluster.workers_per_gpu", "workers_per_gpu"),
        # a joined cluster's (or a caller's client's) workers that share a GPU: no key sets
        # how many (h67b: it had advised cluster.workers_per_gpu, which they do not read)
        ("device", 1, 2, None, {"backend": "gpu", "joined": True}, None, "fewer workers on each"),
    ],
)
def test_a_memory_refusal_names_the_setting_its_first_fix_changes(
    memory, threads, per_gpu, smaller, room, key, fix
) -> None:
    """The refusal of memory that does not fit had no ``key``, so a config file's line was
    never said before it (other refusals of a key begin ``c.yaml:LINE:``); it gives the key
    of the setting its first fix changes, and none where that fix is no setting of the
    config (a joined cluster's worker flags)."""
    from pipeline.planning.memory import WORKER_BASELINE, Memory, Room, does_not_fit

    task = 100 * _MIB
    host = {
        "host": (WORKER_BASELINE + task * threads, WORKER_BASELINE + 250 * _MIB),
        "tight-host": (WORKER_BASELINE + task * threads, WORKER_BASELINE + 50 * _MIB),
        "small-host": (WORKER_BASELINE + task * threads, 100 * _MIB),
    }
    if memory == "device":
        mem = Memory(task, 0, int(task * threads * 1.1), 0, 50 * _MIB, None)
    else:
        per_worker, budget = host[memory]
        mem = Memory(0, task, 0, per_worker, None, budget)
    said, got = does_not_fit(
        mem, (8, 8), (2, 8), smaller, threads, per_gpu, Room(host_memory=64 << 30, **room)
    )
    assert got == key and fix in said, (got, said)
