"""Where chunks are computed: the CPU and GPU backends, and the machine's hardware facts.

* :mod:`~pipeline.devices.base`: the :class:`Backend` protocol and :class:`Encoding`.
* :mod:`~pipeline.devices.cpu`: NumPy chunks, zstd through numcodecs.
* :mod:`~pipeline.devices.gpu`: CuPy chunks, zstd through nvCOMP; the only module that
  imports CuPy at its top, loaded by :func:`get` only when the GPU backend is used.
* :mod:`~pipeline.devices.hardware`: :class:`Facts` of this host or of a cluster's workers, and
  :func:`gpu_status`.

The NumPy/CuPy choice is made in one place: :func:`get` returns the process-wide backend of a
name the plan chose.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, cast

from pipeline._lazy import reexports

if TYPE_CHECKING:
    from pipeline.devices.base import Backend, Encoding
    from pipeline.devices.cpu import CpuBackend
    from pipeline.devices.hardware import Facts, gpu_status

__all__ = ["Backend", "CpuBackend", "Encoding", "Facts", "get", "gpu_status"]

_INSTANCES: dict[str, Backend] = {}
_LOCK = threading.Lock()


def get(name: str) -> Backend:
    """The process-wide backend called ``name`` ('cpu' or 'gpu')."""
    with _LOCK:
        inst: Backend | None = _INSTANCES.get(name)
        if inst is None:
            if name == "gpu":
                from pipeline.devices.gpu import GpuBackend

                inst = cast("Backend", GpuBackend())
            else:
                from pipeline.devices.cpu import CpuBackend

                inst = cast("Backend", CpuBackend())
            _INSTANCES[name] = inst
    return inst


# The re-exports, each imported on first use: the hardware facts (``pipeline info``, the plan) need
# neither the backends nor their codecs.
__getattr__, __dir__ = reexports(
    __name__,
    {
        "Backend": "base",
        "CpuBackend": "cpu",
        "Encoding": "base",
        "Facts": "hardware",
        "gpu_status": "hardware",
    },
)
