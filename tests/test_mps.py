"""The MPS daemon of a local GPU cluster (``cluster.mps``): when a plan asks for one, and the
daemon's life (what a killed run leaves is cleared, a daemon that cannot start means none).
The daemon running the workers on a GPU is tested in tests/test_gpu.py."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from pipeline.config.loading import load_config
from pipeline.devices import hardware
from pipeline.planning.describe import describe
from pipeline.planning.plan import make_plan
from pipeline.running import mps
from tests.conftest import make_array, write_config
from tests.test_plan import MACHINES

CONTROL = "/usr/bin/nvidia-cuda-mps-control"


@pytest.mark.parametrize(
    ("cluster", "has_control", "expected"),
    [
        ({}, True, CONTROL),  # 3 workers per GPU by default
        ({"workers_per_gpu": 2}, True, CONTROL),
        ({"workers_per_gpu": 1}, True, ""),  # one process per GPU: no turns to take
        ({"mps": "off"}, True, ""),
        ({}, False, ""),  # no control program on the machine
    ],
)
def test_a_local_gpu_cluster_of_several_workers_per_gpu_runs_under_mps(
    tmp_path: Path, cluster: dict, has_control: bool, expected: str
) -> None:
    x = np.arange(64 * 256, dtype=np.float32).reshape(64, 256)
    make_array(tmp_path / "in.zarr", x, (8, 256))
    cfg = write_config(
        tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr", backend="gpu", cluster=cluster
    )
    facts = dataclasses.replace(MACHINES["h200"], mps_control=CONTROL if has_control else "")
    plan = make_plan(load_config(cfg), facts)
    assert plan.cluster.mps == expected
    workers = dict(describe(plan))["workers"]
    assert ("MPS daemon" in workers) == bool(expected), workers


def test_a_cpu_run_never_runs_under_mps(tmp_path: Path) -> None:
    x = np.arange(64 * 256, dtype=np.float32).reshape(64, 256)
    make_array(tmp_path / "in.zarr", x, (8, 256))
    cfg = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr", backend="cpu")
    facts = dataclasses.replace(MACHINES["h200"], mps_control=CONTROL)
    assert make_plan(load_config(cfg), facts).cluster.mps == ""


def test_a_users_own_mps_pipe_folder_means_no_daemon_of_the_runs(monkeypatch) -> None:
    """Where the environment names an MPS pipe folder, the user runs MPS their own way: the
    workers inherit it, and the run starts none."""
    monkeypatch.setenv("CUDA_MPS_PIPE_DIRECTORY", "/tmp/their-mps")
    assert hardware.mps_control() == ""


def test_a_daemon_that_cannot_start_means_none_and_leaves_nothing() -> None:
    """A control program that fails (here `false`, as a driver without MPS support would)
    gives no daemon, and its temporary folder is gone."""
    before = _folders()
    assert mps.start("false") is None
    assert _folders() == before


def test_what_a_killed_run_left_is_cleared_and_a_running_ones_is_kept() -> None:
    """A daemon's folder whose run has ended (killed: it never stopped its daemon) is cleared
    by the next start; one whose run still runs (another run's) is left alone."""
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    left = tempfile.mkdtemp(prefix=mps.PREFIX)
    running = tempfile.mkdtemp(prefix=mps.PREFIX)
    starting = tempfile.mkdtemp(prefix=mps.PREFIX)  # another run's, its owner not yet written
    killed_starting = tempfile.mkdtemp(prefix=mps.PREFIX)  # one killed before writing it
    try:
        for folder, pid in ((left, dead.stdout.strip()), (running, str(os.getpid()))):
            os.mkdir(os.path.join(folder, "pipe"))
            Path(folder, mps.OWNER).write_text(pid + "\n")
        old = time.time() - 2 * mps.NO_OWNER_AGE
        os.utime(killed_starting, (old, old))
        mps.clear_left("false")
        assert not os.path.exists(left)
        assert os.path.isdir(running)
        assert os.path.isdir(starting)
        assert not os.path.exists(killed_starting)
    finally:
        for folder in (left, running, starting, killed_starting):
            subprocess.run(["rm", "-rf", folder], check=False)


def _folders() -> set[str]:
    root = tempfile.gettempdir()
    return {n for n in os.listdir(root) if n.startswith(mps.PREFIX)}
