"""Whether an output is what a plan makes: the identity a run records (in its run record
while it runs, in the output's attributes once it is complete) against the plan at hand.

A stale output is never taken for a current one: ``run --resume`` refuses to finish (or to
call complete) an output made from other stages, another output layout or codec, an input
that moved or was rewritten since, or frames encoded on another device, and says which.
Where the output itself is does not matter (an output moved or copied holds the same bytes).
"""

from __future__ import annotations

import hashlib
from typing import Any

from pipeline.config import Config
from pipeline.errors import PipelineError
from pipeline.planning import Plan, make_plan
from pipeline.store import arrays
from pipeline.store.location import Location


def recorded_run(plan: Plan) -> dict[str, Any]:
    """What the output's attributes record of the run that wrote it (``pipeline``: status,
    version, fingerprint, identity, ...); {} when they record nothing readable."""
    try:
        doc = arrays.read_attributes(plan.output.location, plan.output.path).get("pipeline")
    except Exception:
        return {}
    return doc if isinstance(doc, dict) else {}


def stale_parts(recorded: dict[str, Any], plan: Plan, *, whole: bool) -> list[tuple[str, str]]:
    """What differs between the run that ``recorded`` describes (its ``fingerprint`` and
    ``identity``: from the run record, or the output's attributes) and ``plan``, as (part,
    words) pairs; [] when that run made what this plan makes.

    Where the output is does not matter (an output moved or copied holds the same bytes);
    ``whole``: the output is complete, so neither does how its work was split into blocks
    (its chunks and shards do). [('unrecorded', ...)] when the record cannot tell: an output
    written by a version that did not record its identity."""
    if recorded.get("fingerprint") == plan.fingerprint():
        return []
    identity = recorded.get("identity")
    if isinstance(identity, dict):
        return _what_changed(identity, plan.identity, whole)
    by = f"pipeline {recorded.get('version', '?')}"
    if recorded.get("fingerprint"):
        return [
            (
                "unrecorded",
                "its fingerprint does not match this config, input and output location, and "
                f"{by}, which wrote it, did not record what it was made from (what changed "
                "cannot be named)",
            )
        ]
    return [
        (
            "unrecorded",
            "its attributes do not record what it was made from (an older pipeline wrote it): "
            "whether it matches this config and input cannot be told",
        )
    ]


def said(changed: list[tuple[str, str]]) -> str:
    """The words of :func:`stale_parts`'s pairs, as one clause."""
    return ", and ".join(words for _, words in changed)


def _pair(x: Any) -> list[Any]:
    """``x`` as a two-item list (a recorded [where, what]; [None, None] when malformed)."""
    return list(x) if isinstance(x, list) and len(x) == 2 else [None, None]


#: The identity's parts that _what_changed names in words of their own (``host_share``: in
#: records of earlier versions only).
_NAMED = {"input", "output", "stages", "block", "chunk", "unit", "encode_on", "host_share"}


def _what_changed(old: dict[str, Any], new: dict[str, Any], whole: bool) -> list[tuple[str, str]]:
    """What differs between a recorded identity and this plan's (see :func:`stale_parts`)."""
    parts: list[tuple[str, str]] = []
    old_in, new_in = _pair(old.get("input")), new["input"]
    if old_in[0] != new_in[0]:
        parts.append(("input.location", f"the input moved (was {old_in[0]}, now {new_in[0]})"))
    elif old_in[1] != new_in[1]:
        if (old_in[1] or [None])[0] != new_in[1][0]:
            parts.append(("input.metadata", "the input's metadata changed (it was rewritten)"))
        else:
            parts.append(("input.data", "the input's data changed (its files were rewritten)"))
    if old.get("stages") != new["stages"]:
        parts.append(
            (
                "stages",
                f"the stages changed (were {'; '.join(old.get('stages') or [])}, now "
                f"{'; '.join(new['stages'])})",
            )
        )
    old_codec, new_codec = _pair(old.get("output"))[1], new["output"][1]
    if old_codec != new_codec:
        parts.append(
            ("output.codec", f"the output's codec changed (was {old_codec}, now {new_codec})")
        )
    keys = ("chunk", "unit") if whole else ("block", "chunk", "unit")
    if any(old.get(k) != new[k] for k in keys):
        parts.append(
            (
                "layout",
                f"the layout changed ({'/'.join(keys)} were {[old.get(k) for k in keys]}, "
                f"now {[new[k] for k in keys]})",
            )
        )
    if old.get("encode_on") != new["encode_on"]:
        parts.append(
            (
                "encode_on",
                f"frames would be encoded on the {new['encode_on']}, not the "
                f"{old.get('encode_on')} (the bytes would differ)",
            )
        )
    if old.get("host_share"):  # cluster.host_encode_share, which this version no longer has
        parts.append(
            (
                "host_share",
                f"a share of its frames ({old['host_share']}) was encoded by host threads, "
                "which this version no longer does (the bytes would differ)",
            )
        )
    for key in sorted((set(old) | set(new)) - _NAMED):
        if old.get(key) != new.get(key):
            parts.append((key, f"{key} changed (was {old.get(key)}, now {new.get(key)})"))
    return parts


def with_block(config: Config, identity: Any) -> Config:
    """``config`` with the block a recorded ``identity`` names, when the config says ``auto``
    and asks for the layout that block was recorded with (the output's chunks and shards, the
    same input metadata); else ``config``: its own block then plans, and :func:`stale_parts`
    names what changed instead of the plan refusing a block the user never set."""
    if config.chunking.block != "auto" or not isinstance(identity, dict):
        return config
    block, chunk, unit = (identity.get(k) for k in ("block", "chunk", "unit"))
    if not all(_is_shape(v) for v in (block, chunk, unit)):
        return config
    out = config.output
    same_layout = (out.chunks == "auto" or list(out.chunks) == chunk) and (
        unit == {"auto": block, "none": chunk}[out.shards]
        if isinstance(out.shards, str)
        else list(out.shards) == unit
    )
    recorded_meta = (_pair(identity.get("input"))[1] or [None])[0]
    if not same_layout or recorded_meta != _metadata_digest(config):
        return config
    chunking = config.chunking.model_copy(update={"block": tuple(block or ())})
    return config.model_copy(update={"chunking": chunking})


def _is_shape(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(b, int) for b in v)


def _metadata_digest(config: Config) -> str | None:
    """The digest of the input's metadata document, as the plan's identity takes it
    (``pipeline.planning.plan._input_identity``); None when there is none."""
    loc = Location.of(config.input.store, config.input.storage_options)
    path = config.input.array.strip("/")
    doc = loc.read(f"{path}/zarr.json" if path else "zarr.json") or loc.read(
        f"{path}/.zarray" if path else ".zarray"
    )
    return None if doc is None else hashlib.sha256(doc).hexdigest()[:16]


def as_recorded(plan: Plan, identity: Any) -> Plan:
    """``plan`` as ``run --resume`` makes it: with ``chunking.block: auto``, the recorded
    block (when it still plans here; else ``plan``)."""
    config = with_block(plan.config, identity)
    if config is plan.config or config.chunking.block == plan.block or plan.facts is None:
        return plan
    joined = plan.cluster.scheduler != "local"
    try:
        return make_plan(
            config,
            plan.facts,
            plan.cluster.workers if joined else None,
            plan.cluster.threads_per_worker if joined else None,
        )
    except PipelineError:
        return plan
