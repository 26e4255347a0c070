"""The Python API: ``pipeline.run`` from a script or notebook with a config file, a mapping or
a ``Config``, on a ``distributed.Client`` made here or on its own cluster, returning the
summary; failures raised as the typed errors, with the command line's one-line messages;
``pipeline.__version__`` and ``pipeline --version``; and an import of the package that loads
no Dask, Zarr or xarray."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

import pipeline
from pipeline.config import load_config
from pipeline.errors import ConfigError, InputError, OutputError, PlanError
from pipeline.reporting.summary import Summary
from tests.conftest import make_array, read_array, reference, write_config
from tests.faultkit import ROOT, env, file_states, one_line_error


@pytest.fixture(scope="module", params=["cpu", pytest.param("gpu", marks=pytest.mark.gpu)], ids=str)
def backend_client(request: Any) -> Iterator[tuple[str, Any]]:
    """A Dask cluster made here: one worker of two threads (a dask-cuda one on the GPU host)."""
    from distributed import Client, LocalCluster

    if request.param == "gpu":
        from dask_cuda import LocalCUDACluster

        cluster: Any = LocalCUDACluster(
            n_workers=1, threads_per_worker=2, dashboard_address=":0", device_memory_limit=0
        )
    else:
        cluster = LocalCluster(n_workers=1, threads_per_worker=2, dashboard_address=":0")
    with cluster, Client(cluster) as client:
        yield request.param, client


def small_input(tmp: Path, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((30, 70)).astype(np.float32)
    make_array(tmp / "in.zarr", x, (10, 70))
    return x


def test_importing_the_package_is_light() -> None:
    code = "import json, sys, pipeline; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", code], env=env(), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    loaded = {m.split(".")[0] for m in json.loads(done.stdout)}
    assert "pipeline" in loaded
    heavy = {"dask", "distributed", "zarr", "numcodecs", "xarray", "cupy", "fsspec", "rich"}
    assert not loaded & heavy, sorted(loaded & heavy)


def test_the_version_is_the_packages() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert pipeline.__version__ == project["version"]
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "--version"],
        env=env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"pipeline {pipeline.__version__}\n"


@pytest.mark.parametrize("form", ["path", "text", "mapping", "Config"])
def test_run_takes_a_file_a_mapping_or_a_config_and_uses_the_client(
    tmp_path: Path, backend_client: tuple[str, Any], form: str, capsys: Any
) -> None:
    backend, client = backend_client
    x = small_input(tmp_path)
    path = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr", backend=backend)
    config = {
        "path": path,
        "text": str(path),
        "mapping": yaml.safe_load(path.read_text()),
        "Config": load_config(path),
    }[form]
    summary = pipeline.run(config, client=client)
    assert isinstance(summary, Summary)
    assert summary.status == "complete" and summary.blocks_done == summary.blocks_total
    # the plan was sized for the client's cluster, not the config's
    assert (summary.workers, summary.threads_per_worker) == (1, 2)
    assert np.array_equal(read_array(tmp_path / "out.zarr"), reference(x))
    captured = capsys.readouterr()
    assert "[run]" not in captured.out + captured.err  # no progress unless asked for
    assert client.submit(int, "7").result() == 7  # the client is left open


def test_run_options_are_the_command_lines(
    tmp_path: Path, backend_client: tuple[str, Any], cli
) -> None:
    backend, client = backend_client
    small_input(tmp_path)
    path = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr", backend=backend)
    assert pipeline.run(path, client=client).status == "complete"
    with pytest.raises(OutputError) as info:
        pipeline.run(path, client=client)
    assert info.value.output == str(tmp_path / "out.zarr")
    rc, _, err = cli("run", path)
    assert rc == 1 and one_line_error(err) == f"error: {info.value}"
    again = pipeline.run(path, client=client, resume=True)
    assert again.status == "complete (nothing to do)"
    report = tmp_path / "s.json"
    summary = pipeline.run(path, client=client, overwrite=True, summary_json=str(report))
    assert json.loads(report.read_text())["status"] == summary.status == "complete"
    before = file_states(tmp_path / "out.zarr")
    with pytest.raises(TypeError):
        pipeline.run(path, client=client, overwrite=True, colour="blue")
    assert file_states(tmp_path / "out.zarr") == before


def test_run_without_a_client_starts_and_closes_its_own_cluster(tmp_path: Path) -> None:
    x = small_input(tmp_path, seed=1)
    doc = yaml.safe_load(
        write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr").read_text()
    )
    doc["cluster"] = {"workers": 1, "threads_per_worker": 2, "dashboard": ""}
    summary = pipeline.run(doc)
    assert summary.status == "complete"
    assert np.array_equal(read_array(tmp_path / "out.zarr"), reference(x))


BROKEN = {
    "unknown-key": (ConfigError, {"stagez": []}),
    "bad-value": (ConfigError, {"backend": "tpu"}),
    "no-input": (InputError, {"input": {"store": "nowhere.zarr"}}),
    "memory": (PlanError, {"cluster": {"workers": 1, "host_memory_limit": "1MiB"}}),
}


@pytest.mark.parametrize("name", list(BROKEN))
def test_errors_are_the_command_lines_typed_and_in_one_line(tmp_path: Path, cli, name: str) -> None:
    error, change = BROKEN[name]
    small_input(tmp_path)
    path = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr", **change)
    rc, _, err = cli("run", path)
    assert rc == 1
    line = one_line_error(err)
    with pytest.raises(error) as info:
        pipeline.run(path)
    assert type(info.value) is error
    assert line == f"error: {info.value}"
    if error is ConfigError:
        assert info.value.file == str(path) and info.value.key is not None
    if error is PlanError:
        assert info.value.host_budget < info.value.host_per_worker
    assert not (tmp_path / "out.zarr").exists()


def test_plan_takes_the_same_forms(tmp_path: Path) -> None:
    small_input(tmp_path)
    path = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr")
    by_file = pipeline.plan(path)
    by_mapping = pipeline.plan(yaml.safe_load(path.read_text()))
    assert by_file.fingerprint() == by_mapping.fingerprint()
    assert by_file.n_blocks >= 1 and not (tmp_path / "out.zarr").exists()
