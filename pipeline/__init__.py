"""pipeline: push Zarr arrays larger than any one GPU through a chain of array stages.

The public API: :func:`load_config` and :class:`Config`, :func:`plan` (what a run would do) and
:func:`run`, the error types, ``__version__``. ``pipeline/DESIGN.md`` says how the pieces fit
together; the subpackages follow the data flow (config, ops, store, devices, planning,
reporting, running).

Importing the package is light (the config's models, no Dask, no Zarr): the modules that run
things are imported inside the functions that need them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeAlias

from pipeline._version import __version__
from pipeline.config import Config, load_config, parse_config
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
    from pipeline.planning.plan import Plan
    from pipeline.reporting.summary import Summary

__all__ = [
    "ChunkError",
    "ClusterError",
    "Config",
    "ConfigError",
    "ConfigLike",
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


#: What :func:`run` and :func:`plan` take as a config: a YAML file's path, the same as a
#: mapping, or a :class:`Config`.
ConfigLike: TypeAlias = str | os.PathLike[str] | Mapping[str, Any] | Config


def _config(config: ConfigLike) -> Config:
    """``config`` as a :class:`Config`; ConfigError naming the key for an invalid one."""
    if isinstance(config, Config):
        return config
    if isinstance(config, Mapping):
        return parse_config(dict(config), "the config mapping")
    return load_config(os.fspath(config))


def plan(config: ConfigLike) -> Plan:
    """The resolved :class:`~pipeline.planning.plan.Plan` of a run on this machine (no
    cluster is started, nothing is written). ``config``: as :func:`run` takes it."""
    from pipeline.running.runner import plan_run

    return plan_run(_config(config))


def run(config: ConfigLike, *, client: Any = None, **options: Any) -> Summary:
    """Run the pipeline a config describes, as ``pipeline run`` does; its
    :class:`~pipeline.reporting.summary.Summary` (``status``, ``bytes_in``, ``seconds``...).

    ``config``: a YAML file's path, the same content as a mapping, or a :class:`Config`.
    ``client``: a ``distributed.Client`` to run on (left open; the plan is sized for its
    workers and threads); without one, the config's cluster is started (and closed) or
    joined, as on the command line. ``options``: the command line's, as
    :class:`~pipeline.running.runner.RunOptions` names them: ``overwrite``, ``resume``,
    ``report`` (an HTML file), ``summary_json`` (a JSON file), ``progress`` (``"none"`` by
    default here; ``"bar"``, ``"plain"``, ``"auto"``), ``interval``.

    Raises the :class:`PipelineError` the command line prints, with the same one-line
    message: :class:`ConfigError`, :class:`InputError`, :class:`OutputError`,
    :class:`PlanError`, ... (their fields as attributes); TypeError for an unknown option;
    :class:`Interrupted` after Ctrl-C (the output stays resumable)::

        from distributed import Client
        import pipeline

        with Client(n_workers=2) as client:
            summary = pipeline.run("my.yaml", client=client, overwrite=True)
    """
    from pipeline.running.runner import RunOptions
    from pipeline.running.runner import run as _run

    opts = RunOptions(**{"progress": "none", **options})
    summary = _run(_config(config), opts, client=client)
    if opts.summary_json:
        with open(opts.summary_json, "w") as f:
            f.write(summary.to_json())
    return summary
