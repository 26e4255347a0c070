"""How a run will go, decided before it starts: the plan as a pure function of the config, the
machine's facts and the input's metadata.

* :mod:`~pipeline.planning.plan`: :class:`Plan` (with its :class:`ClusterPlan`) and
  :func:`make_plan`, a short sequence of named steps; the plan's identity, which a run records.
* :mod:`~pipeline.planning.specs`: the plan's :class:`Source` and :class:`Sink`, which travel
  with every task (a worker unpickling them loads this module alone).
* :mod:`~pipeline.planning.blocks`: block and chunk shapes (alignment, growth, automatic
  chunks, a generated input's layout).
* :mod:`~pipeline.planning.memory`: the memory model, the budgets, the "does not fit" refusal.
* :mod:`~pipeline.planning.rows`: the plan as rows for ``pipeline plan``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline._lazy import reexports

if TYPE_CHECKING:
    from pipeline.planning.plan import ClusterPlan, Plan, make_plan, plan_here
    from pipeline.planning.rows import describe
    from pipeline.planning.specs import Sink, Source

__all__ = ["ClusterPlan", "Plan", "Sink", "Source", "describe", "make_plan", "plan_here"]


# The re-exports, each imported on first use: a module of the package that a worker needs
# (:mod:`~pipeline.planning.specs`, unpickled with every task) loads without the plan's (the
# config's models, the memory model, the input's Dataset).
__getattr__, __dir__ = reexports(
    __name__,
    {
        "ClusterPlan": "plan",
        "Plan": "plan",
        "Sink": "specs",
        "Source": "specs",
        "describe": "rows",
        "make_plan": "plan",
        "plan_here": "plan",
    },
)
