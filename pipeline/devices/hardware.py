"""What the machine (or the cluster's workers) has: GPUs, their memory, host memory, cores
(:class:`Facts`), and whether the GPU backend can run here (:func:`gpu_status`)."""

from __future__ import annotations

import functools
import os
import platform
from dataclasses import dataclass, field
from typing import Any

import psutil


@functools.lru_cache(maxsize=1)
def gpu_status() -> tuple[bool, str]:
    """(usable, reason): whether the GPU backend can run here, and why not when it cannot."""
    if os.environ.get("PIPELINE_DISABLE_GPU"):
        return False, "PIPELINE_DISABLE_GPU is set"
    try:
        import cupy
    except Exception as e:  # ImportError, or a broken CUDA install
        return (
            False,
            f"CuPy is not installed ({type(e).__name__}); pip install '.[cu12]' or '.[cu13]'",
        )
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:
        return False, f"no usable CUDA device ({type(e).__name__}: {e})"
    if n == 0:
        return False, "no CUDA device is visible"
    try:
        import nvidia.nvcomp  # noqa: F401
    except Exception:
        return False, "nvCOMP is not installed (pip install nvidia-nvcomp-cu12 or -cu13)"
    return True, f"{n} CUDA device(s) visible"


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    total_bytes: int
    free_bytes: int


@dataclass(frozen=True)
class Facts:
    """The resources a plan is sized against."""

    gpu_usable: bool
    gpu_reason: str
    gpus: tuple[GpuInfo, ...] = ()
    host_total_bytes: int = 0
    host_available_bytes: int = 0
    cpu_count: int = 1
    hostname: str = field(default_factory=platform.node)
    driver: str = ""
    worker_memory_limit: int | None = None
    """bytes of host memory one worker may use on a cluster joined by address: the weakest
    worker's own memory limit (what its nanny enforces), or for a worker without one its
    host's RAM shared by the workers there; None for this machine's own (local) cluster,
    whose workers share ``host_total_bytes``"""

    @classmethod
    def local(cls, want_gpu: bool = True) -> Facts:
        """Facts of this process's machine (GPUs listed only when ``want_gpu``)."""
        vm = psutil.virtual_memory()
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        usable, reason = gpu_status() if want_gpu else (False, "not asked for")
        gpus: tuple[GpuInfo, ...] = ()
        driver = ""
        if usable:
            gpus, driver = _list_gpus()
        return cls(
            gpu_usable=usable,
            gpu_reason=reason,
            gpus=gpus,
            host_total_bytes=vm.total,
            host_available_bytes=vm.available,
            cpu_count=cpus or 1,
            driver=driver,
        )

    def plus_held(self, held: dict[str, int]) -> Facts:
        """These facts with device memory that the pipeline's own workers hold (``held``:
        bytes per GPU PCI bus id, see :func:`held_device_bytes`) counted as free: a warm
        cluster's next tasks reuse it."""
        if not held or not self.gpus:
            return self
        import dataclasses

        import cupy

        gpus = []
        for g in self.gpus:
            extra = held.get(cupy.cuda.Device(g.index).pci_bus_id, 0)
            gpus.append(dataclasses.replace(g, free_bytes=min(g.total_bytes, g.free_bytes + extra)))
        return dataclasses.replace(self, gpus=tuple(gpus))

    def as_dict(self) -> dict[str, Any]:
        return {
            "hostname": self.hostname,
            "cpus": self.cpu_count,
            "host_memory_bytes": self.host_total_bytes,
            "gpus": [g.__dict__ for g in self.gpus],
            "gpu_usable": self.gpu_usable,
            "gpu_reason": self.gpu_reason,
            "driver": self.driver,
        }


def _list_gpus() -> tuple[tuple[GpuInfo, ...], str]:
    import cupy

    out = []
    for i in range(cupy.cuda.runtime.getDeviceCount()):
        with cupy.cuda.Device(i):
            free, total = cupy.cuda.runtime.memGetInfo()
            # what this process's pool holds but does not use is free to it too (on a warm
            # worker, the last run's blocks; otherwise a second run would see less room)
            free += cupy.get_default_memory_pool().free_bytes()
            name = cupy.cuda.runtime.getDeviceProperties(i)["name"]
        out.append(GpuInfo(i, name.decode() if isinstance(name, bytes) else str(name), total, free))
    v = cupy.cuda.runtime.driverGetVersion()
    return tuple(out), f"CUDA driver {v // 1000}.{(v % 1000) // 10}"


def held_device_bytes() -> tuple[str, int] | None:
    """Run on a worker: its GPU's PCI bus id and the bytes its CuPy pool holds once cached
    blocks are given back (buffers its threads keep between tasks); None without CuPy."""
    import sys

    if "cupy" not in sys.modules:
        return None
    import cupy

    pool = cupy.get_default_memory_pool()
    pool.free_all_blocks()
    return str(cupy.cuda.Device().pci_bus_id), int(pool.total_bytes())


def worker_facts(dask_worker: Any = None) -> dict[str, Any]:
    """Run on a worker (``client.run`` passes ``dask_worker``): its facts as a plain dict
    (for a cluster joined by address), with its own memory limit in bytes (None: no limit)."""
    f = Facts.local()
    d = f.as_dict()
    d["host_available_bytes"] = f.host_available_bytes
    manager = getattr(dask_worker, "memory_manager", None)
    d["memory_limit"] = getattr(manager, "memory_limit", None) or None
    return d


def facts_from_workers(infos: list[dict[str, Any]]) -> Facts:
    """The facts a plan should assume on an existing cluster: the weakest worker's.

    ``infos``: :func:`worker_facts` of every worker. The host memory a worker may use is its
    own memory limit; a worker without one shares its host's RAM with the other workers of
    that host (by host name), never with the workers of other hosts.
    """
    if not infos:
        return Facts(gpu_usable=False, gpu_reason="the cluster has no workers")
    usable = all(i["gpu_usable"] for i in infos)
    reasons = {i["gpu_reason"] for i in infos}
    gpus = []
    if usable:
        g = min((g for i in infos for g in i["gpus"]), key=lambda g: g["free_bytes"])
        gpus = [GpuInfo(**g)]
    return Facts(
        gpu_usable=usable,
        gpu_reason="; ".join(sorted(reasons)),
        gpus=tuple(gpus),
        host_total_bytes=min(i["host_memory_bytes"] for i in infos),
        host_available_bytes=min(i["host_available_bytes"] for i in infos),
        cpu_count=min(i["cpus"] for i in infos),
        hostname=",".join(sorted({i["hostname"] for i in infos})),
        driver=next(iter({i["driver"] for i in infos})),
        worker_memory_limit=min(_worker_memory(i, infos) for i in infos),
    )


def _worker_memory(info: dict[str, Any], infos: list[dict[str, Any]]) -> int:
    """Bytes of host memory the worker of ``info`` may use (see :func:`facts_from_workers`)."""
    if info.get("memory_limit"):
        return int(info["memory_limit"])
    same_host = sum(1 for i in infos if i["hostname"] == info["hostname"])
    return int(info["host_memory_bytes"]) // same_host


def visible_gpu_ids(configured: tuple[int, ...] | None, facts: Facts) -> tuple[int, ...]:
    """GPU ids a local cluster uses: the config's list, else every visible GPU.

    Ids are those of ``CUDA_VISIBLE_DEVICES`` when it is set (0..n-1 as CUDA numbers them).
    """
    ids = tuple(range(len(facts.gpus)))
    if configured is None:
        return ids
    if len(set(configured)) != len(configured):
        from pipeline.errors import PipelineError

        raise PipelineError(
            f"cluster.gpus {list(configured)} lists a GPU twice; for several workers on one GPU "
            "start them with `dask cuda worker` and join with --scheduler"
        )
    bad = [g for g in configured if g not in ids]
    if bad:
        from pipeline.errors import PipelineError

        raise PipelineError(
            f"cluster.gpus names GPU(s) {bad}, but only {list(ids)} are visible; "
            "fix cluster.gpus or CUDA_VISIBLE_DEVICES"
        )
    return tuple(configured)
