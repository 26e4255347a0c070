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

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.running.generate import generate_input
    from pipeline.running.runner import RunOptions, run

__all__ = ["RunOptions", "generate_input", "run"]


def __getattr__(name: str) -> Any:
    """The re-exports, each imported on first use, so that importing one module of the
    package (the worker plugin's :mod:`~pipeline.running.cluster`, the tasks) does not load
    the others."""
    if name == "generate_input":
        from pipeline.running.generate import generate_input

        return generate_input
    if name in ("RunOptions", "run"):
        from pipeline.running import runner

        return getattr(runner, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    """The module's names and its re-exports, loaded or not: ``dir()``, a notebook's
    completion and ``help()`` (pydoc lists what ``dir`` gives) name them all; without it
    they had named ``__getattr__`` alone until a re-export was first used."""
    return sorted({*globals(), *__all__})
