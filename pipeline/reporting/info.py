"""``pipeline info``: the machine, the libraries, and what ``backend: auto`` would pick."""

from __future__ import annotations

import importlib
import platform
import sys

from dask.utils import format_bytes

from pipeline._version import __version__
from pipeline.devices.hardware import Facts

LIBRARIES = (
    "numpy",
    "dask",
    "distributed",
    "zarr",
    "numcodecs",
    "pydantic",
    "fsspec",
    "cupy",
    "dask_cuda",
    "nvidia.nvcomp",
)


def versions() -> dict[str, str]:
    """Versions of Python, the pipeline and its libraries ('absent' when not installed)."""
    out = {"python": sys.version.split()[0], "pipeline": __version__}
    for name in LIBRARIES:
        try:
            mod = importlib.import_module(name)
            out[name] = str(getattr(mod, "__version__", "?"))
        except Exception:
            out[name] = "absent"
    return out


def rows() -> list[tuple[str, str]]:
    f = Facts.local()
    out = [
        (
            "host",
            f"{platform.node()} ({platform.system()} {platform.machine()}), "
            f"{f.cpu_count} CPU cores, {format_bytes(f.host_total_bytes)} RAM",
        ),
    ]
    for g in f.gpus:
        out.append(
            (
                f"GPU {g.index}",
                f"{g.name}, {format_bytes(g.total_bytes)} ({format_bytes(g.free_bytes)} free)",
            )
        )
    if f.driver:
        out.append(("driver", f.driver))
    pick = "gpu" if f.gpu_usable else "cpu"
    out.append(("backend: auto", f"{pick} — {f.gpu_reason}"))
    out += [(k, v) for k, v in versions().items()]
    return out
