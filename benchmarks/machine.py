"""Facts about this host: cores, memory, GPUs (through the pipeline's own hardware module),
library versions, CPU caches; and NVML probes of GPU 0 (free memory, utilisation)."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.devices import hardware
from pipeline.devices.hardware import GpuInfo


def describe(want_gpu: bool) -> dict[str, Any]:
    """Date, host, CPUs, memory, GPUs and library versions, for a results file.

    ``want_gpu``: list the GPUs (from NVML, as the pipeline reads them)."""
    from pipeline.reporting.info import versions

    f = hardware.Facts.local(want_gpu=want_gpu)
    gpus = [{"name": g.name, "total_bytes": g.total_bytes} for g in f.gpus]
    doc: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpus": f.cpu_count,
        "cpu_model": cpu_model(),
        "memory_bytes": f.host_total_bytes,
        "gpus": gpus,
        "gpu_reason": f.gpu_reason,
        "driver": f.driver,
        "versions": versions(),
        "without_bytecode": without_bytecode(),
    }
    if gpus:
        g = f.gpus[0]
        doc["gpu"] = f"{len(gpus)} x {g.name} ({g.total_bytes / 2**30:.0f} GiB), {f.driver}"
    return doc


#: Packages every cold run imports (the pipeline's and the CPU Dask peer's), the pipeline's own
#: first (:func:`benchmarks.pipelines.checkout_bytecode` writes its bytecode where it can).
IMPORTED = (
    "pipeline",
    "dask",
    "distributed",
    "zarr",
    "numcodecs",
    "pydantic",
    "yaml",
    "dask_cuda",
    "cupy",
)


def without_bytecode(names: tuple[str, ...] = IMPORTED) -> list[str]:
    """Those of ``names`` (:data:`IMPORTED`) installed here whose package has no bytecode beside it
    (``__pycache__`` of its ``__init__``) while Python writes none (``PYTHONDONTWRITEBYTECODE``,
    or a read-only install): every cold process then compiles what it imports. ``pip install``
    writes bytecode by default; ``pip install --no-compile`` does not. On the H200 host
    (2026-12-01, 15:14 UTC, the GPU wheels installed with ``--no-compile``, the variable set),
    a cold ``pipeline run`` of 8 GB v2 Blosc took 5.63 s (5.21-5.95) before ``python -m
    compileall`` of the packages and 4.06 s (4.04-4.76) after, the CPU Dask peer 12.0 and 10.0
    s: figures of such a host are not what a user's install gives."""
    import importlib.util

    if not sys.dont_write_bytecode:
        return []  # the first cold run writes what it compiles
    missing = []
    for name in names:
        spec = importlib.util.find_spec(name)
        origin = spec.origin if spec is not None else None
        if origin and origin.endswith(".py"):
            cached = importlib.util.cache_from_source(origin)
            if not os.path.exists(cached):
                missing.append(name)
    return missing


def hardware_line(meta: dict[str, Any]) -> str:
    """One line naming the machine a results file was measured on."""
    return (
        f"{meta.get('gpu', 'no GPU')}; {meta.get('cpus')} CPU cores ({meta.get('cpu_model')}), "
        f"{(meta.get('memory_bytes') or 0) / 2**30:.0f} GiB"
    )


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


def cpu_count() -> int:
    """The cores this process may use."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def cpu_llc_bytes() -> int:
    """The largest CPU cache one core sees (the last level), from sysfs; 32 MiB if unknown."""
    sizes = []
    for p in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        text = p.read_text().strip()
        mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
        digits = text.rstrip("KMG")
        if digits.isdigit():
            sizes.append(int(digits) * mult)
    return max(sizes, default=32 << 20)


def cpu_facts() -> dict[str, Any]:
    """The CPU as the seed benchmark reports it."""
    return {
        "model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": cpu_count(),
        "llc_bytes": cpu_llc_bytes(),
        "note": "NumPy's elementwise operations run on one core",
    }


def environment() -> dict[str, Any]:
    """Python, NumPy, platform and CPU, without creating a CUDA context."""
    return {
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "platform": platform.platform(),
        "cpu": cpu_facts(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def gpu_status() -> tuple[bool, str]:
    """(usable, why not) for the pipeline's GPU backend (CuPy, a device, nvCOMP), as the
    pipeline decides it; no CUDA context is created."""
    return hardware.gpu_status()


def visible_gpus() -> tuple[GpuInfo, ...]:
    """The GPUs CUDA would show this process, in CUDA's numbering, as the pipeline reads them
    (:func:`pipeline.devices.hardware.nvml_gpus`: NVML, no CUDA context, CuPy not imported);
    none without NVML or a driver."""
    listed = hardware.nvml_gpus()
    return () if isinstance(listed, str) else listed[0]


def cupy_status() -> tuple[bool, str]:
    """(usable, why not): CuPy importable (the measurements use it) and a CUDA device visible,
    as the pipeline counts them (no context created)."""
    try:
        import cupy  # noqa: F401
    except Exception as e:  # ImportError, or a broken CUDA install
        return False, f"CuPy is not importable ({type(e).__name__}: {e})"
    listed = hardware.nvml_gpus()
    if isinstance(listed, str):
        return False, f"no usable CUDA device ({listed})"
    n = len(listed[0])
    return n > 0, f"{n} CUDA device(s) visible"


def gpu_count() -> int:
    """CUDA devices visible to this process, as the pipeline counts them (0 without NVML)."""
    return len(visible_gpus())


def nvidia_smi(bus_id: str) -> dict[str, str]:
    """Facts nvidia-smi reports about the GPU at PCI bus ``bus_id`` that the pipeline's
    hardware facts do not hold: driver, clocks, power limit (an error entry where it is
    missing)."""
    keys = "driver_version,clocks.sm,clocks.max.sm,clocks.mem,power.limit"
    try:
        out = subprocess.run(
            ["nvidia-smi", f"--id={bus_id}", f"--query-gpu={keys}", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout.splitlines()[0]
    except Exception as e:
        return {"error": f"{type(e).__name__}: {e}"}
    return dict(zip(keys.split(","), (v.strip() for v in out.split(",")), strict=False))


def gpu_facts(cp: Any) -> dict[str, Any]:
    """The current device's name and memory (the pipeline's facts, from NVML); its SMs, L2,
    CUDA versions and a datasheet-style memory bandwidth (a lead, not a measurement) from
    CuPy, whose context the measurements have made by then."""
    dev = cp.cuda.Device()
    own = next((g for g in visible_gpus() if g.index == dev.id), None)
    props = cp.cuda.runtime.getDeviceProperties(dev.id)
    try:  # CUDA 13 dropped the memory clock from the properties; the attribute may remain
        attrs = dev.attributes
    except Exception:
        attrs = {}
    clock_khz = props.get("memoryClockRate") or attrs.get("MemoryClockRate") or 0
    bus_bits = props.get("memoryBusWidth") or attrs.get("GlobalMemoryBusWidth") or 0
    facts = {
        "name": own.name if own else "?",
        "compute_capability": f"{props.get('major')}.{props.get('minor')}",
        "memory_bytes": own.total_bytes if own else 0,
        "multiprocessors": int(props.get("multiProcessorCount", 0)),
        "l2_bytes": int(props.get("l2CacheSize", 0)),
        "cuda_runtime": cp.cuda.runtime.runtimeGetVersion(),
        "cuda_driver_api": cp.cuda.runtime.driverGetVersion(),
        "cupy": cp.__version__,
        "nvidia_smi": nvidia_smi(own.bus_id) if own else {"error": "NVML does not list it"},
    }
    if clock_khz and bus_bits:
        facts["datasheet_GBps"] = 2 * clock_khz * 1e3 * bus_bits / 8 / 1e9
    return facts


def _nvml_gpu0() -> Any:
    """NVML's handle of the GPU that CUDA numbers 0 in this process; None without NVML."""
    gpus = visible_gpus()
    if not gpus or not gpus[0].bus_id:
        return None
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml.nvmlDeviceGetHandleByPciBusId(gpus[0].bus_id)
    except Exception:
        return None


def wait_gpu_freed(share: float = 0.9, timeout: float = 30.0) -> None:
    """Wait (up to ``timeout`` s) until GPU 0 has ``share`` of its memory free, as the
    pipeline's plan reads it: the workers of a closed cluster may still be exiting, and the
    next plan sizes itself on free memory."""
    deadline = time.monotonic() + timeout
    while True:
        gpus = visible_gpus()
        if not gpus or gpus[0].free_bytes >= share * gpus[0].total_bytes:
            return
        if time.monotonic() >= deadline:
            return
        time.sleep(0.2)


class GpuBusy:
    """Samples NVML's GPU utilisation (the share of each sample period in which a kernel ran
    on GPU 0) every 50 ms while entered; ``samples`` holds the percentages (none without
    NVML)."""

    def __init__(self) -> None:
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> GpuBusy:
        self._stop.clear()
        handle = _nvml_gpu0()
        if handle is None:
            return self
        import pynvml

        def sample() -> None:
            while not self._stop.wait(0.05):
                self.samples.append(int(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu))

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
