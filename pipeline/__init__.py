"""pipeline: push Zarr arrays larger than any one GPU through a chain of array stages.

The public API; see ``pipeline/DESIGN.md`` for how the pieces fit together.
"""

from pipeline._version import __version__
from pipeline.config import Config, load_config
from pipeline.errors import PipelineError

__all__ = ["Config", "PipelineError", "__version__", "load_config", "plan", "run"]


def plan(config: "Config"):
    """The resolved :class:`pipeline.planning.plan.Plan` of a run (no cluster is started)."""
    from pipeline.runner import plan_run

    return plan_run(config)


def run(config: "Config", **options):
    """Run the pipeline; its :class:`pipeline.reporting.summary.Summary`. ``options``: see
    RunOptions."""
    from pipeline.runner import RunOptions
    from pipeline.runner import run as _run

    return _run(config, RunOptions(**options))
