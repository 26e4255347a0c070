"""The peak memory of a process that runs tasks: its RSS and, on the GPU backend, its memory
pool's reserved bytes, sampled on a thread of its own.

It imports no Dask: a Dask worker samples itself with it (the worker plugin of
:mod:`pipeline.running.cluster`), and so does a run whose tasks are threads of its own process
(:mod:`pipeline.running.threads`), which never loads distributed.
"""

from __future__ import annotations

import contextlib
import threading


class MemorySampler:
    """Samples this process's RSS and (``backend`` 'gpu') its GPU pool's reserved bytes every
    ``interval`` seconds; keeps the peaks."""

    def __init__(self, backend: str, interval: float) -> None:
        import psutil

        self.backend = backend
        self.interval = interval
        self.proc = psutil.Process()
        self.peak_rss = 0
        self.peak_device = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pipeline-memory", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def sample(self) -> None:
        self.peak_rss = max(self.peak_rss, self.proc.memory_info().rss)
        if self.backend == "gpu":
            from pipeline.devices import gpu

            self.peak_device = max(self.peak_device, gpu.memory_in_use()[1])

    def peaks(self) -> dict[str, int]:
        """The peaks since the last :meth:`reset`, this moment included: ``rss`` and ``device``
        (bytes; 0 on the CPU backend)."""
        self.sample()
        return {"rss": self.peak_rss, "device": self.peak_device}

    def reset(self) -> None:
        self.peak_rss = 0
        self.peak_device = 0
        self.sample()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with contextlib.suppress(Exception):
                self.sample()
