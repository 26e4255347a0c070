"""``pipeline info``: the machine, the libraries, and what ``backend: auto`` would pick."""

from __future__ import annotations

import importlib.metadata
import platform
import sys

from pipeline._version import __version__
from pipeline.devices.hardware import Facts

#: The libraries whose versions are shown, each with the distributions that install it (CuPy
#: and nvCOMP have one per CUDA version): the dependencies, and those of the extras a run
#: needs for what it reads or writes (xarray: a Dataset output's coordinates; s3fs: s3://;
#: aiohttp: http(s)://), whose absence `info` had not shown (h81a).
LIBRARIES = {
    "numpy": ("numpy",),
    "dask": ("dask",),
    "distributed": ("distributed",),
    "zarr": ("zarr",),
    "numcodecs": ("numcodecs",),
    "pydantic": ("pydantic",),
    "fsspec": ("fsspec",),
    "xarray": ("xarray",),
    "s3fs": ("s3fs",),
    "aiohttp": ("aiohttp",),
    "cupy": ("cupy-cuda13x", "cupy-cuda12x", "cupy"),
    "dask_cuda": ("dask-cuda",),
    "nvidia.nvcomp": ("nvidia-nvcomp-cu13", "nvidia-nvcomp-cu12"),
}


def versions() -> dict[str, str]:
    """Versions of Python, the pipeline and its libraries ('absent' when not installed), read
    from the installed distributions' metadata: nothing is imported, so the summary of a run
    and ``pipeline info`` load neither CuPy nor CUDA's libraries into the client."""
    out = {"python": sys.version.split()[0], "pipeline": __version__}
    for name, dists in LIBRARIES.items():
        out[name] = next(filter(None, map(_installed, dists)), "absent")
    return out


def _installed(dist: str) -> str | None:
    """The installed version of the distribution ``dist``; None when it is not installed."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def rows() -> list[tuple[str, str]]:
    from pipeline.planning.memory import bytes_text

    f = Facts.local()
    out = [
        (
            "host",
            f"{platform.node()} ({platform.system()} {platform.machine()}), "
            f"{f.cpu_count} CPU cores, {bytes_text(f.host_total_bytes)} RAM",
        ),
    ]
    for g in f.gpus:
        out.append(
            (
                f"GPU {g.index}",
                f"{g.name}, {bytes_text(g.total_bytes)} ({bytes_text(g.free_bytes)} free)",
            )
        )
    if f.driver:
        out.append(("driver", f.driver))
    pick = "gpu" if f.gpu_usable else "cpu"
    out.append(("backend: auto", f"{pick} — {f.gpu_reason}"))
    out += [(k, v) for k, v in versions().items()]
    return out
