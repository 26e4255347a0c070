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

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.planning.plan import ClusterPlan, Plan, make_plan, plan_here
    from pipeline.planning.rows import describe
    from pipeline.planning.specs import Sink, Source

__all__ = ["ClusterPlan", "Plan", "Sink", "Source", "describe", "make_plan", "plan_here"]


def __getattr__(name: str) -> Any:
    """The re-exports, each imported on first use, so that a module of the package that a
    worker needs (:mod:`~pipeline.planning.specs`, unpickled with every task) loads without
    the plan's (the config's models, the memory model, the input's Dataset)."""
    if name in ("Sink", "Source"):
        from pipeline.planning import specs

        value = getattr(specs, name)
    elif name == "describe":
        from pipeline.planning.rows import describe as value
    elif name in ("ClusterPlan", "Plan", "make_plan", "plan_here"):
        from pipeline.planning import plan

        value = getattr(plan, name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The module's names and its re-exports, loaded or not: ``dir()``, a notebook's
    completion and ``help()`` (pydoc lists what ``dir`` gives) name them all; without it
    they had named ``__getattr__`` alone until a re-export was first used."""
    return sorted({*globals(), *__all__})
