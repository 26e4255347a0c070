"""Joining an existing cluster: `dask scheduler` and `dask worker` started as separate
processes (as on a real cluster, CPU here), then `run --scheduler ADDRESS`."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import load_config
from tests.conftest import make_array, read_array, reference, write_config

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The address of a scheduler with one single-threaded worker process."""
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    log = (tmp_path_factory.mktemp("dask") / "dask.log").open("w")
    dask = [sys.executable, "-m", "dask"]
    procs = [
        subprocess.Popen(
            [*dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
            stdout=log,
            stderr=log,
            env=env,
        )
    ]
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if procs[0].poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("dask scheduler did not start") from None
                time.sleep(0.2)
        procs.append(
            subprocess.Popen(
                [*dask, "worker", address, "--nthreads", "1", "--no-dashboard"],
                stdout=log,
                stderr=log,
                env=env,
            )
        )
        yield address
    finally:
        for p in reversed(procs):
            p.terminate()
            p.wait(30)
        log.close()


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


def test_unreachable_scheduler_is_one_line(tmp_path, cli) -> None:
    x = np.ones((4, 4), np.float32)
    make_array(tmp_path / "in.zarr", x, (2, 4))
    cfg = write_config(
        tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr", cluster={"timeout": 0.5}
    )
    rc, _, err = cli("run", cfg, "--scheduler", f"tcp://127.0.0.1:{_free_port()}")
    assert rc == 1
    assert err.startswith("error: cannot reach the Dask scheduler at tcp://127.0.0.1:"), err
    assert err.count("\n") == 1
    assert not (tmp_path / "out.zarr").exists()
