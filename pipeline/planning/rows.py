"""``describe(plan)``: the plan as (label, text) rows, for ``pipeline plan``, ``run --dry-run``
and the debug log."""

from __future__ import annotations

import math

from pipeline.errors import names_shown
from pipeline.planning.memory import bytes_text, decimal, size_said
from pipeline.planning.plan import Plan, gpu_wait


def describe(plan: Plan, report: bool = False) -> list[tuple[str, str]]:
    """The plan as (label, text) rows, for `pipeline plan`, `run --dry-run` and ``-v``;
    ``report``: the run saves Dask's performance report (which takes a Dask cluster)."""
    c = plan.cluster
    m = plan.memory
    block_bytes = math.prod(plan.block) * plan.input.dtype.itemsize
    where = "local cluster" if c.scheduler == "local" else f"the cluster at {c.scheduler}"
    if c.scheduler == "local" and not c.own:  # pipeline.plan(config, client=client)'s
        where = "the client's cluster"
    workers = f"{where}: {c.workers} worker(s) x {c.threads_per_worker} thread(s)"
    if c.on_threads(report):
        workers = (
            f"{c.workers * c.threads_per_worker} thread(s) of this process (Dask's threaded "
            "scheduler, no cluster)"
        )
    rows = [
        ("input", f"{plan.input.location.shown(plan.input.path)}: {plan.input.describe()}"),
        ("output", f"{plan.output.location.shown(plan.output.path)}: {plan.output.describe()}"),
        ("stages", "; ".join(s.describe() for s in plan.chain)),
        ("backend", f"{plan.backend} ({plan.backend_reason})"),
        (
            "workers",
            workers
            + (f" on GPUs {list(c.gpus)}" if c.gpus else "")
            + (
                ", sharing each GPU under an MPS daemon of the run's own (cluster.mps)"
                if c.mps
                else ""
            ),
        ),
        (
            "chunking",
            f"{plan.n_blocks} task(s), one per block of {list(plan.block)} "
            f"({bytes_text(block_bytes)} of input each)",
        ),
        (
            "codec path",
            f"decode on {plan.decode_on}"
            + (
                f" ({plan.source.decode_threads} threads a worker)"
                if plan.source.decode_threads > 1
                else ""
            )
            + f", encode on {plan.encode_on}"
            + _raw_text(plan.sink.encoding.raw_below)
            + (
                "; threads waiting for the GPU sleep, leaving the cores to the CPU's decode"
                if gpu_wait(plan.source, plan.backend) == "block"
                else ""
            ),
        ),
        *_variable_rows(plan),
    ]
    threads = c.threads_per_worker
    # each budget the config wrote in units of powers of 1000 (8GB): its row says its sizes so,
    # and the budget as written
    limits = plan.config.cluster
    dev = decimal(limits.device_memory_limit)
    host = decimal(limits.host_memory_limit)
    if plan.backend == "gpu":
        per = c.workers_per_gpu
        given = limits.device_memory_limit  # the budget per GPU, as written where it is a size
        per_gpu_said = (
            size_said(given, given)
            if isinstance(given, int)
            else bytes_text((m.device_budget or 0) * per, dev)
        )
        source = (
            f"worker: cluster.device_memory_limit, {per_gpu_said} per "
            f"GPU, split between the GPU's {per} workers "
            + ("(cluster.workers_per_gpu)" if c.own else "(as the cluster's workers report)")
            if per > 1
            else "GPU (cluster.device_memory_limit)"
            if c.own
            else "worker (cluster.device_memory_limit, of each worker's GPU)"
        )
        rows.append(
            (
                "device memory",
                f"{bytes_text(m.device_per_task, dev)} per task; {threads} in flight (+10%) need "
                f"{bytes_text(m.device_per_worker, dev)} of the "
                f"{size_said(m.device_budget, limits.device_memory_limit)} "
                "budget per " + source + _fits(m.device_per_worker, m.device_budget),
            )
        )
    rows.append(
        (
            "host memory",
            f"{bytes_text(m.host_per_task, host)} per task; {threads} in flight + "
            f"{bytes_text(m.baseline, host)} for the worker need "
            f"{bytes_text(m.host_per_worker, host)} of the "
            f"{size_said(m.host_budget, limits.host_memory_limit)} budget per "
            "worker" + _fits(m.host_per_worker, m.host_budget),
        )
    )
    rows += [("note", n) for n in plan.notes]
    return rows


def _raw_text(raw_below: float | None) -> str:
    """What ``output.codec.store_raw_below`` does, in words; '' when it is not set."""
    if raw_below is None:
        return ""
    return (
        f"; a unit whose sampled frames save less than {raw_below * 100:g}% is stored as zstd raw "
        "blocks (output.codec.store_raw_below)"
    )


def _variable_rows(plan: Plan) -> list[tuple[str, str]]:
    """What the output carries of an xarray variable (its dimension names, or those
    ``output.dimension_names`` gives in their place), and how packed values are decoded."""
    k = plan.carried
    rows = []
    given = plan.config.output.dimension_names
    if given is not None and k.variable is None:
        rows.append(("dimensions", f"{names_shown(given)} (output.dimension_names)"))
    if k.variable is not None:
        v = k.variable
        text = f"dimensions {names_shown(v.dims)}; its attributes carried over"
        if given is not None:  # an array alone: the config's names, not the input's
            text = (
                f"dimensions {names_shown(given)} (output.dimension_names, in place of the "
                f"input's {names_shown(v.dims)}); its attributes carried over"
            )
        if k.frame:
            coords = names_shown(v.coords) or "none"
            text += (
                f"; written as a Dataset variable with the input group's coordinates ({coords})"
                + (" and consolidated metadata" if k.consolidate else "")
            )
        rows.append(("variable", text))
    if k.unpacking is not None:
        rows.append(("unpacking", f"{k.unpacking.describe()} (input.mask_and_scale)"))
    return rows


def _fits(need: int, budget: int | None) -> str:
    return "" if budget is None else (" (fits)" if need <= budget else " (does not fit)")
