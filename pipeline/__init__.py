"""pipeline: push Zarr arrays larger than any one GPU through a chain of array stages.

The public API: :func:`load_config` and :class:`Config`, :func:`plan` (what a run would do) and
:func:`run`, the error types, ``__version__``. ``pipeline/DESIGN.md`` says how the pieces fit
together; the subpackages follow the data flow (config, ops, store, devices, planning,
reporting, running).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipeline._version import __version__
from pipeline.errors import (
    ChunkError,
    ClusterError,
    ConfigError,
    InputError,
    Interrupted,
    OutputError,
    PipelineError,
    PlanError,
    StoreError,
)

if TYPE_CHECKING:
    from pipeline.config import Config, load_config
    from pipeline.planning.plan import Plan
    from pipeline.reporting.summary import Summary

__all__ = [
    "ChunkError",
    "ClusterError",
    "Config",
    "ConfigError",
    "InputError",
    "Interrupted",
    "OutputError",
    "PipelineError",
    "PlanError",
    "StoreError",
    "__version__",
    "load_config",
    "plan",
    "run",
]


def __getattr__(name: str) -> Any:
    """``Config`` and ``load_config``, imported on first use: the config's models load pydantic
    and the stage registry (NumPy), which ``pipeline --help`` and the Dask worker processes
    (they import the command line's module as their ``__main__``) do not need."""
    if name in ("Config", "load_config"):
        from pipeline import config

        value = getattr(config, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def plan(config: Config) -> Plan:
    """The resolved :class:`~pipeline.planning.plan.Plan` of a run on this machine (no
    cluster is started, nothing is written)."""
    from pipeline.planning import plan_here

    return plan_here(config)


def run(config: Config, **options: Any) -> Summary:
    """Run the pipeline; its :class:`~pipeline.reporting.summary.Summary`. ``options`` are
    :class:`~pipeline.running.runner.RunOptions`' fields (``overwrite``, ``resume``, ...)."""
    from pipeline.running.runner import RunOptions
    from pipeline.running.runner import run as _run

    return _run(config, RunOptions(**options))
