"""Shared fixtures: real Zarr stores in temporary directories, configs, and the CLI in-process.

GPU tests carry the ``gpu`` marker and are skipped, with the reason shown, where no usable GPU
is (CI); run them on the GPU host with ``pytest -m gpu``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

os.environ.setdefault("DASK_DISTRIBUTED__WORKER__DAEMON", "False")

# The tests send Ctrl-C (SIGINT) to the commands they start, as a terminal does. A suite run as
# a shell's background job (`make test &`, a CI script) begins with SIGINT ignored, which every
# process started from it inherits, and the command keeps a signal it began with ignored (as
# any program should: h85c): Python's own handler here makes them begin as at a terminal (a
# handler, unlike SIG_IGN, is not inherited across exec). A test of the ignored case asks for
# it (``faultkit.paused_process(sigint_ignored=True)``).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

STAGES = [{"op": "multiply", "factor": 5}, {"op": "square"}, {"op": "add"}]


def record_of(attrs: Any) -> dict[str, Any]:
    """The run record in an output's attributes ``attrs``: its ``pipeline`` attribute, JSON
    text (which netCDF, and so xarray's ``to_netcdf``, can hold), read as a mapping."""
    text = dict(attrs)["pipeline"]
    assert isinstance(text, str), f"the run record is a {type(text).__name__}, not JSON text"
    doc = json.loads(text)
    assert isinstance(doc, dict)
    return doc


def reference(x: np.ndarray) -> np.ndarray:
    """The seed's chain, written the plain NumPy way."""
    return ((x * 5) ** 2) * 2


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    from pipeline.devices import gpu_status

    usable, reason = gpu_status()
    if usable:
        return
    skip = pytest.mark.skip(reason=f"needs a CUDA GPU: {reason}")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(params=["numpy", pytest.param("cupy", marks=pytest.mark.gpu)])
def xp(request: Any) -> Any:
    """The array module under test: NumPy everywhere, CuPy on the GPU host."""
    if request.param == "numpy":
        return np
    import cupy

    return cupy


def make_array(
    path: Path | str,
    data: np.ndarray,
    chunks: tuple,
    zarr_format: int = 3,
    shards: tuple | None = None,
    compressor: Any = "zstd",
    name: str | None = None,
    **kw: Any,
) -> Any:
    """Write ``data`` as a Zarr array with Zarr itself (not the pipeline's writer)."""
    import numcodecs
    import zarr
    from zarr.codecs import BloscCodec, ZstdCodec

    if zarr_format == 3:
        comp = {"zstd": ZstdCodec(level=1), "blosc": BloscCodec(), None: None}[compressor]
    else:
        comp = {"zstd": numcodecs.Zstd(level=1), "blosc": numcodecs.Blosc(), None: None}[compressor]
    arr = zarr.create_array(
        store=str(path),
        name=name,
        shape=data.shape,
        dtype=data.dtype,
        chunks=chunks,
        shards=shards,
        compressors=comp,
        zarr_format=zarr_format,
        overwrite=True,
        **kw,
    )
    arr[...] = data
    return arr


def read_array(path: Path | str, name: str | None = None) -> np.ndarray:
    import zarr

    return zarr.open_array(store=str(path), path=name or "", mode="r")[...]


def write_config(
    tmp: Path,
    input_store: Path | str,
    output_store: Path | str,
    name: str = "run.yaml",
    **sections: Any,
) -> Path:
    """A config file for a small CPU run on a 2-worker LocalCluster (override any section)."""
    cfg: dict[str, Any] = {
        "input": {"store": str(input_store)},
        "output": {"store": str(output_store)},
        "stages": STAGES,
        "backend": "cpu",
        "cluster": {"workers": 2, "threads_per_worker": 1, "dashboard": ""},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    p = tmp / name
    p.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return p


def generated_config(tmp: Path, generate: dict[str, Any], **sections: Any) -> Path:
    """A config (see :func:`write_config`) whose input ``tmp/in.zarr`` is described by an
    ``input.generate`` section, and whose output is ``tmp/out.zarr``."""
    sections["input"] = {
        "store": str(tmp / "in.zarr"),
        "generate": generate,
        **sections.get("input", {}),
    }
    return write_config(tmp, tmp / "in.zarr", tmp / "out.zarr", **sections)


def pipeline_process(*args: Any) -> subprocess.CompletedProcess:
    """Run ``python -m pipeline ARGS`` as a user runs it, in a process of its own (this
    checkout first on its PYTHONPATH, the environment otherwise this process's), to its end
    or 240 s; its output captured as text."""
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )


@pytest.fixture
def cli(capsys: Any) -> Any:
    """Run ``python -m pipeline ARGS`` in this process: (exit status, stdout, stderr)."""
    from pipeline.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        rc = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return rc, out, err

    return run


@pytest.fixture(scope="module", params=["cpu", pytest.param("gpu", marks=pytest.mark.gpu)], ids=str)
def backend_client(request: Any) -> Iterator[tuple[str, Any]]:
    """A Dask cluster made here for a module's runs (starting one per run would take minutes):
    one worker of two threads, a dask-cuda one on the GPU host; (backend, client)."""
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
