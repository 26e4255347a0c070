"""Doing it: a run from start to finish, on threads or a Dask cluster, and generated inputs.

* :mod:`~pipeline.running.runner`: :func:`run`, in the order the guarantees need.
* :mod:`~pipeline.running.output`: the output's life: what is there, how to start (fresh,
  resume, nothing to do, or what changed), creating it, marking it complete.
* :mod:`~pipeline.running.workers`: who runs the tasks, threads of this process
  (:mod:`~pipeline.running.threads`) or a Dask cluster, and the one place that decides.
* :mod:`~pipeline.running.cluster`: starting or joining a cluster, the worker plugin, a run's
  tasks on it, an ordered stop; :mod:`~pipeline.running.sampler`: peak memory.
* :mod:`~pipeline.running.graph`: the Dask graph; :mod:`~pipeline.running.tasks`: what one
  task does to one block (read and decode, the stages, encode and write).
* :mod:`~pipeline.running.generate`: synthetic inputs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline._lazy import reexports

if TYPE_CHECKING:
    from pipeline.running.generate import generate_input
    from pipeline.running.runner import RunOptions, run

__all__ = ["RunOptions", "generate_input", "run"]


# The re-exports, each imported on first use: importing one module of the package (the worker
# plugin's :mod:`~pipeline.running.cluster`, the tasks) does not load the others.
__getattr__, __dir__ = reexports(
    __name__,
    {
        "RunOptions": "runner",
        "generate_input": "generate",
        "run": "runner",
    },
)
