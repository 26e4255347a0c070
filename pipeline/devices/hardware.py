"""What the machine (or the cluster's workers) has: GPUs, their memory, host memory, cores
(:class:`Facts`), and whether the GPU backend can run here (:func:`gpu_status`).

GPUs are read from NVML (``nvidia-ml-py``), as nvidia-smi reads them: no CUDA context is made
on any GPU to learn about it, and CuPy is not imported. NVML lists every GPU of the host; CUDA
shows a process the ones ``CUDA_VISIBLE_DEVICES`` names, in that order, numbered from 0
(:func:`cuda_visible` maps one onto the other), so :attr:`GpuInfo.index` is the number CUDA
gives a GPU here. Where NVML cannot be loaded (no driver, as on CI) there is no GPU. A process
that already holds device memory through CuPy (a GPU worker) reads its own device's free memory
from CUDA, counting its CuPy pool's cached blocks as free; importing CuPy alone (zarr-python
does, for its optional GPU buffers) makes no process do so.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import platform
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.errors import ConfigError, PlanError


@functools.lru_cache(maxsize=1)
def mps_control() -> str:
    """The path of the CUDA MPS control program (``nvidia-cuda-mps-control``, installed with
    the driver's utilities) on PATH; '' where there is none, or where this process's
    environment names an MPS pipe folder (``CUDA_MPS_PIPE_DIRECTORY``): the user runs MPS
    their own way, and the workers, which inherit that environment, use it."""
    import shutil

    if os.environ.get("CUDA_MPS_PIPE_DIRECTORY"):
        return ""
    return shutil.which("nvidia-cuda-mps-control") or ""


def gpu_status() -> tuple[bool, str]:
    """(usable, reason): whether the GPU backend can run here, and why not when it cannot:
    CuPy and nvCOMP installed (found, not imported) and a GPU that CUDA would show this
    process (from NVML)."""
    usable, reason, _ = _gpu_reading()
    return usable, reason


def _gpu_reading() -> tuple[bool, str, tuple[tuple[GpuInfo, ...], str] | None]:
    """(usable, reason, the GPUs and driver NVML listed where usable, else None): what
    :func:`gpu_status` says, with the one NVML reading it was told from, so that
    :meth:`Facts.local` lists the GPUs from it rather than starting NVML a second time (each
    start and listing of NVML in the plan phase of a GPU run)."""
    if os.environ.get("PIPELINE_DISABLE_GPU"):
        return False, "PIPELINE_DISABLE_GPU is set", None
    if not _installed("cupy"):
        return False, "CuPy is not installed; pip install '.[cu12]' or '.[cu13]'", None
    listed = nvml_gpus()
    if isinstance(listed, str):
        return False, listed, None
    gpus, _ = listed
    if not gpus:
        return False, "no CUDA device is visible", None
    if not _installed("nvidia.nvcomp"):
        return False, "nvCOMP is not installed (pip install nvidia-nvcomp-cu12 or -cu13)", None
    return True, f"{len(gpus)} CUDA device(s) visible", listed


def _installed(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package that is absent (``nvidia``)
        return False


@dataclass(frozen=True)
class GpuInfo:
    """One GPU as this process sees it."""

    index: int
    """the number CUDA gives it in this process (after ``CUDA_VISIBLE_DEVICES``)"""
    name: str
    total_bytes: int
    free_bytes: int
    bus_id: str = ""
    """its PCI bus id, as :func:`pci_bus_id` writes it ('' where unknown)"""


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
    mps_control: str = ""
    """the path of this machine's CUDA MPS control program (``nvidia-cuda-mps-control``), where
    the driver installed it and this process's environment names no MPS pipe folder of a
    user's own (``CUDA_MPS_PIPE_DIRECTORY``); '' otherwise, and on a joined cluster"""
    worker_memory_limit: int | None = None
    """bytes of host memory one worker may use on a cluster joined by address or a caller's
    client's (:func:`facts_from_workers`): the weakest worker's own memory limit (what its
    nanny enforces), or for a worker without one its host's RAM shared by the workers there;
    None for this machine's own (local) cluster, whose workers share ``host_total_bytes``"""
    workers_per_gpu: int | None = None
    """the most workers of a cluster joined by address or a caller's client that share one
    GPU, as they report their GPUs (:func:`sharing_gpu`); None for this machine's own (local)
    cluster, whose ``cluster.workers_per_gpu`` the config sets, and where no worker reports a
    GPU"""
    worker_process_bytes: int | None = None
    """host bytes the process of the heaviest worker of a cluster joined by address or a
    caller's client's holds before its tasks, the modules they import imported (its resident
    set, as its nanny measures it against its memory limit; :func:`worker_facts`), shared like
    ``worker_memory_limit`` by the workers that are threads of one process; None for this
    machine's own (local) cluster, whose workers are not started when it is planned"""

    @classmethod
    def local(cls, want_gpu: bool = True) -> Facts:
        """Facts of this process's machine (GPUs listed only when ``want_gpu``)."""
        import psutil  # here: a run's early start reads gpu_status before psutil is needed

        vm = psutil.virtual_memory()
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        # one NVML reading tells both whether the GPU backend can run and the GPUs it lists
        usable, reason, listed = _gpu_reading() if want_gpu else (False, "not asked for", None)
        gpus: tuple[GpuInfo, ...] = ()
        driver = ""
        if listed is not None:
            gpus, driver = _with_own_device(listed[0]), listed[1]
        return cls(
            gpu_usable=usable,
            gpu_reason=reason,
            gpus=gpus,
            host_total_bytes=vm.total,
            host_available_bytes=vm.available,
            cpu_count=cpus or 1,
            driver=driver,
            mps_control=mps_control() if gpus else "",
        )

    def plus_held(self, held: dict[str, int]) -> Facts:
        """These facts with device memory that the pipeline's own workers hold (``held``:
        bytes per GPU PCI bus id, see :func:`held_device_bytes`) counted as free: a warm
        cluster's next tasks reuse it."""
        if not held or not self.gpus:
            return self
        import dataclasses

        return dataclasses.replace(self, gpus=tuple(_plus_held(g, held) for g in self.gpus))

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


# --------------------------------------------------------------------------------------------
# Reading GPUs from NVML, as CUDA numbers them.


def cuda_visible(uuids: Sequence[str], setting: str | None) -> list[int]:
    """Which of the host's GPUs CUDA shows a process, in CUDA's order: positions in ``uuids``
    (NVML's GPUs, in NVML's order) for ``CUDA_VISIBLE_DEVICES`` = ``setting``.

    As CUDA reads the variable: unset (None), every GPU in NVML's order; otherwise a
    comma-separated list of indices (into NVML's order) or GPU UUIDs (``GPU-8932f937-...``, or
    any prefix of one that no other GPU shares, in either case), the GPUs in the order listed.
    The list ends at the first entry that names no GPU (``-1``, an index past the last GPU, an
    ambiguous or unknown UUID, a MIG instance) or one already listed; an empty variable shows
    none. NVML's order is PCI bus order, which is CUDA's with ``CUDA_DEVICE_ORDER=PCI_BUS_ID``
    and on a host of identical GPUs (CUDA's default puts the fastest first)."""
    if setting is None:
        return list(range(len(uuids)))
    out: list[int] = []
    for entry in setting.split(","):
        i = _named(entry.strip(), uuids)
        if i is None or i in out:
            break
        out.append(i)
    return out


def _named(entry: str, uuids: Sequence[str]) -> int | None:
    """The position in ``uuids`` of the GPU one entry of CUDA_VISIBLE_DEVICES names."""
    if entry.isdigit():
        return int(entry) if int(entry) < len(uuids) else None
    if not entry.upper().startswith("GPU-"):
        return None
    hits = [i for i, u in enumerate(uuids) if u.lower().startswith(entry.lower())]
    return hits[0] if len(hits) == 1 else None


def pci_bus_id(text: str) -> str:
    """A PCI bus id in one spelling ('0000:3b:00.0') however NVML ('00000000:3B:00.0') or CUDA
    ('0000:3B:00.0') writes it; the text lowered when it is no bus id."""
    try:
        domain, bus, rest = text.strip().split(":")
        device, function = rest.split(".")
        return (
            f"{int(domain, 16):04x}:{int(bus, 16):02x}:{int(device, 16):02x}.{int(function, 16):x}"
        )
    except ValueError:
        return text.strip().lower()


def nvml_gpus() -> tuple[tuple[GpuInfo, ...], str] | str:
    """(the GPUs CUDA would show this process, in CUDA's numbering; the driver) from NVML,
    with no CUDA context made and CuPy not imported; or why NVML cannot tell (no NVML
    library, no driver)."""
    try:
        import pynvml
    except ImportError:
        return "NVML is not available (no nvidia-ml-py): no NVIDIA GPU can be seen"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as e:
        return f"NVML does not start ({e}): no NVIDIA driver"
    try:
        handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        uuids = [_text(pynvml.nvmlDeviceGetUUID(h)) for h in handles]
        visible = cuda_visible(uuids, os.environ.get("CUDA_VISIBLE_DEVICES"))
        gpus = tuple(_nvml_gpu(pynvml, n, handles[i]) for n, i in enumerate(visible))
        v = pynvml.nvmlSystemGetCudaDriverVersion()
    except pynvml.NVMLError as e:
        return f"NVML cannot list the GPUs ({e})"
    finally:
        pynvml.nvmlShutdown()
    return gpus, f"CUDA driver {v // 1000}.{(v % 1000) // 10}"


def _nvml_gpu(pynvml: Any, index: int, handle: Any) -> GpuInfo:
    """One GPU's facts from NVML; ``index``: CUDA's number for it."""
    mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
    return GpuInfo(
        index=index,
        name=_text(pynvml.nvmlDeviceGetName(handle)),
        total_bytes=int(mem.total),
        free_bytes=int(mem.free),
        bus_id=pci_bus_id(_text(pynvml.nvmlDeviceGetPciInfo(handle).busId)),
    )


def _text(value: Any) -> str:
    """NVML's strings (bytes in older nvidia-ml-py releases) as text."""
    return value.decode() if isinstance(value, bytes) else str(value)


def _with_own_device(gpus: tuple[GpuInfo, ...]) -> tuple[GpuInfo, ...]:
    """In a process that already holds device memory through CuPy (a GPU worker): its current
    device's free memory as CUDA reports it, plus what its CuPy pool holds unused, which is
    free to it too (on a warm worker, the last run's blocks; otherwise a second run would see
    less room). Other processes, and other devices, keep NVML's figures: asking CUDA would
    make a context in a process that had none (a client that imported zarr, which imports
    CuPy)."""
    if not _cupy_pool_bytes():
        return gpus
    import cupy

    try:
        device = cupy.cuda.runtime.getDevice()
        free, _ = cupy.cuda.runtime.memGetInfo()
    except cupy.cuda.runtime.CUDARuntimeError:
        return gpus
    free += cupy.get_default_memory_pool().free_bytes()
    return tuple(
        GpuInfo(g.index, g.name, g.total_bytes, int(free), g.bus_id) if g.index == device else g
        for g in gpus
    )


def _cupy_pool_bytes() -> int:
    """Bytes this process's CuPy memory pool holds on its current device: 0 without CuPy,
    before any device allocation, or where CUDA shows no device. The pool's own count: the
    runtime is asked which device is current, but no context is made."""
    if "cupy" not in sys.modules:
        return 0
    import cupy

    try:
        return int(cupy.get_default_memory_pool().total_bytes())
    except Exception:  # CUDARuntimeError: no device visible (CUDA_VISIBLE_DEVICES="")
        return 0


def held_device_bytes() -> tuple[str, int] | None:
    """Run on a worker: its GPU's PCI bus id and the bytes its CuPy pool holds once cached
    blocks are given back (buffers its threads keep between tasks); None when the pool holds
    nothing (no CuPy, or no device memory used: a worker that never ran GPU work)."""
    if not _cupy_pool_bytes():
        return None
    import cupy

    pool = cupy.get_default_memory_pool()
    pool.free_all_blocks()
    return pci_bus_id(str(cupy.cuda.Device().pci_bus_id)), int(pool.total_bytes())


def worker_facts(modules: Sequence[str] = (), dask_worker: Any = None) -> dict[str, Any]:
    """Run on a worker (``client.run`` passes ``dask_worker``): its facts as a plain dict
    (for a cluster joined by address), with its own memory limit in bytes (None: no limit)
    and the bytes its process holds (``process_bytes``, its resident set, what its nanny
    compares with that limit) once ``modules`` (those its tasks import) are imported."""
    import psutil

    for name in modules:
        # a module the worker cannot import is refused by the run's check of its packages,
        # naming it (running.cluster.check_store_packages), not here
        with contextlib.suppress(Exception):
            importlib.import_module(name)
    f = Facts.local()
    d = f.as_dict()
    d["host_available_bytes"] = f.host_available_bytes
    manager = getattr(dask_worker, "memory_manager", None)
    d["memory_limit"] = getattr(manager, "memory_limit", None) or None
    d["process_bytes"] = int(psutil.Process().memory_info().rss)
    return d


def facts_from_workers(
    infos: Mapping[str, dict[str, Any]] | Sequence[dict[str, Any]],
    held: Mapping[str, int] | None = None,
    here_available: int = 0,
) -> Facts:
    """The facts a plan should assume on a cluster that is not this run's own (one joined by
    address, or a caller's client's): the weakest worker's, every one of them as the workers
    report it, never this machine's (a caller's client had been planned by this process's GPU,
    GPU free memory, cores and RAM, whatever its workers had).

    ``infos``: :func:`worker_facts` of every worker, by its address (``client.run``'s answer)
    or as a list. The GPU is the one of least free memory that any worker sees, where every
    worker can use one (``gpu_usable``, with the workers' reasons); ``held`` (bytes per GPU PCI
    bus id, :func:`held_device_bytes` of each worker, summed) is counted as free on that GPU
    first, as a warm cluster's next tasks reuse it (:meth:`Facts.plus_held`). The host memory
    a worker may use is its own memory limit; a worker without one shares its host's RAM with
    the other workers of that host (by host name), never with the workers of other hosts; the
    workers that are threads of one process (``inproc://`` addresses) each compare the whole
    process's memory with their limit, so theirs is shared by them all. ``cpu_count`` and
    ``host_total_bytes`` are the weakest worker host's; ``workers_per_gpu``: :func:`sharing_gpu`;
    ``worker_process_bytes``: the heaviest worker process's bytes before its tasks.
    ``host_available_bytes`` is ``here_available``, this process's (what the arrays carried
    beside an output Dataset, read whole into this process, must fit in), not a worker's."""
    by_address = dict(infos) if isinstance(infos, Mapping) else dict(enumerate(infos))
    listed = list(by_address.values())
    if not listed:
        return Facts(gpu_usable=False, gpu_reason="the cluster has no workers")
    usable = all(i["gpu_usable"] for i in listed)
    reasons = {i["gpu_reason"] for i in listed}
    gpus = []
    if usable:
        seen = [_plus_held(GpuInfo(**g), held or {}) for i in listed for g in i["gpus"]]
        gpus = [min(seen, key=lambda g: g.free_bytes)] if seen else []
    return Facts(
        gpu_usable=usable,
        gpu_reason="; ".join(sorted(reasons)),
        gpus=tuple(gpus),
        host_total_bytes=min(i["host_memory_bytes"] for i in listed),
        host_available_bytes=here_available,
        cpu_count=min(i["cpus"] for i in listed),
        hostname=",".join(sorted({i["hostname"] for i in listed})),
        driver=next(iter({i["driver"] for i in listed})),
        worker_memory_limit=min(_worker_memory(a, i, by_address) for a, i in by_address.items()),
        workers_per_gpu=sharing_gpu(listed),
        worker_process_bytes=max(_process_bytes(a, i, by_address) for a, i in by_address.items()),
    )


def _plus_held(gpu: GpuInfo, held: Mapping[str, int]) -> GpuInfo:
    """``gpu`` with the device memory the pipeline's workers hold on it (``held``, by PCI bus
    id) counted as free, up to its total."""
    import dataclasses

    extra = held.get(gpu.bus_id, 0) if gpu.bus_id else 0
    return dataclasses.replace(gpu, free_bytes=min(gpu.total_bytes, gpu.free_bytes + extra))


def sharing_gpu(infos: list[dict[str, Any]]) -> int | None:
    """The most workers (``infos``: :func:`worker_facts` of each) that use one GPU: a worker's
    GPU is the first it sees (CUDA's device 0 in its process, which dask-cuda's workers are
    given by ``CUDA_VISIBLE_DEVICES``), told by its host and PCI bus id (or NVML's index where
    the bus id is unknown); None where no worker sees a GPU."""
    from collections import Counter

    used = Counter(
        (i.get("hostname"), i["gpus"][0].get("bus_id") or f"#{i['gpus'][0].get('index')}")
        for i in infos
        if i.get("gpus")
    )
    return max(used.values()) if used else None


def _process_bytes(address: Any, info: dict[str, Any], infos: dict[Any, dict[str, Any]]) -> int:
    """Bytes the process of the worker at ``address`` (``info``: its :func:`worker_facts`)
    holds before its tasks; the workers that are threads of one process share it, as they
    share its memory limit (:func:`_worker_memory`)."""
    own = int(info.get("process_bytes") or 0)
    if str(address).startswith("inproc://"):
        return own // sum(1 for a in infos if str(a).startswith("inproc://"))
    return own


def _worker_memory(address: Any, info: dict[str, Any], infos: dict[Any, dict[str, Any]]) -> int:
    """Bytes of host memory the worker at ``address`` (``info``: its :func:`worker_facts`)
    may use; ``infos``: every worker's, by address (see :func:`facts_from_workers`)."""
    own = int(info.get("memory_limit") or 0)
    if own and str(address).startswith("inproc://"):  # threads of one process share it
        return own // sum(1 for a in infos if str(a).startswith("inproc://"))
    if own:
        return own
    same_host = sum(1 for i in infos.values() if i["hostname"] == info["hostname"])
    return int(info["host_memory_bytes"]) // same_host


def visible_gpu_ids(configured: tuple[int, ...] | None, facts: Facts) -> tuple[int, ...]:
    """GPU ids a local cluster uses: the config's list, else every visible GPU.

    Ids are those of ``CUDA_VISIBLE_DEVICES`` when it is set (0..n-1 as CUDA numbers them).
    Raises ConfigError for a GPU listed twice, PlanError (``missing``, ``visible``) for GPUs
    this machine does not show; both with ``key`` 'cluster.gpus'.
    """
    ids = tuple(range(len(facts.gpus)))
    if configured is None:
        return ids
    if len(set(configured)) != len(configured):
        raise ConfigError(
            f"cluster.gpus {list(configured)} lists a GPU twice; for several workers on one GPU "
            "start them with `dask cuda worker` and join with --scheduler",
            key="cluster.gpus",
            gpus=configured,
        )
    bad = [g for g in configured if g not in ids]
    if bad:
        raise PlanError(
            f"cluster.gpus names GPU(s) {bad}, but only {list(ids)} are visible; "
            "fix cluster.gpus or CUDA_VISIBLE_DEVICES",
            key="cluster.gpus",
            missing=tuple(bad),
            visible=ids,
        )
    return tuple(configured)
