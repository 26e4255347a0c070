"""How a run will go, decided before it starts: the plan as a pure function of the config, the
machine's facts and the input's metadata.

* :mod:`~pipeline.planning.plan`: :class:`Plan` (with its :class:`Source`, :class:`Sink` and
  :class:`ClusterPlan`) and :func:`make_plan`, a short sequence of named steps; the plan's
  identity, which a run records.
* :mod:`~pipeline.planning.blocks`: block and chunk shapes (alignment, growth, automatic
  chunks, a generated input's layout).
* :mod:`~pipeline.planning.memory`: the memory model, the budgets, the "does not fit" refusal.
* :mod:`~pipeline.planning.describe`: the plan as rows for ``pipeline plan``.
"""

from pipeline.planning.describe import describe
from pipeline.planning.plan import ClusterPlan, Plan, Sink, Source, make_plan, plan_here

__all__ = ["ClusterPlan", "Plan", "Sink", "Source", "describe", "make_plan", "plan_here"]
