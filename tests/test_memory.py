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
