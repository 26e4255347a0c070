"""Synthetic inputs: the array a config's ``input.generate`` describes, made deterministically.

Every stored unit is generated on its own from ``(seed, unit index)``, so the data does not
depend on the number of workers or the order of tasks. ``normal`` and ``uniform`` draw from
NumPy's PCG64 on the CPU or CuPy's generator on a GPU (each deterministic, but the two devices
draw different numbers; the attributes record which); ``ramp`` is arithmetic, identical on both,
and compresses well (for datasets larger than the disk).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline import backend as backends
from pipeline import layout
from pipeline.backend import Encoding
from pipeline.blocks import Sink, write_unit
from pipeline.config import Config, GenerateConfig
from pipeline.errors import InputError, PipelineError
from pipeline.layout import Shape
from pipeline.plan import _grow, auto_chunk
from pipeline.storage import ArrayInfo, Location

#: The attribute of a generated input: how it was made, and whether every unit is written.
GENERATED = "pipeline_generated"

UNIT_TARGET = 128 << 20
UNSHARDED_TARGET = 64 << 20
RAMP_PERIOD = 1024


@dataclass(frozen=True)
class GenSpec:
    """What a generation task needs."""

    sink: Sink
    distribution: str
    seed: int


def resolve_layout(g: GenerateConfig) -> tuple[Shape, Shape]:
    """(chunk, unit) of the array to generate."""
    dtype = np.dtype(g.dtype)
    shape = tuple(g.shape)
    sharded = g.shards != "none" and g.zarr_format == 3
    if g.shards != "none" and g.zarr_format == 2 and isinstance(g.shards, tuple):
        raise PipelineError("input.generate.shards needs zarr_format: 3 (Zarr v2 has no shards)")
    if not sharded:
        chunk = (
            g.chunks
            if isinstance(g.chunks, tuple)
            else _slab(shape, dtype.itemsize, UNSHARDED_TARGET)
        )
        return tuple(chunk), tuple(chunk)
    if isinstance(g.shards, tuple):
        unit = g.shards
    elif isinstance(g.chunks, tuple):
        unit = _grow(g.chunks, shape, dtype.itemsize, UNIT_TARGET)
    else:
        unit = _slab(shape, dtype.itemsize, UNIT_TARGET)
    chunk = g.chunks if isinstance(g.chunks, tuple) else auto_chunk(unit, dtype.itemsize)
    if not layout.is_multiple(unit, chunk):
        raise PipelineError(
            f"input.generate.shards {list(unit)} is not a whole multiple of chunks {list(chunk)}"
        )
    return tuple(chunk), tuple(unit)


def _slab(shape: Shape, itemsize: int, target: int) -> Shape:
    """About ``target`` bytes of C-order slab (any size; edges may be partial)."""
    for k in range(len(shape)):
        tail = math.prod(shape[k + 1 :]) * itemsize
        if tail <= target:
            return (1,) * k + (max(1, min(shape[k], target // tail)),) + tuple(shape[k + 1 :])
    return tuple(shape)


def planned_info(config: Config) -> ArrayInfo:
    """The layout :func:`create_input` gives the input, without creating anything (plans):
    the same metadata, made in memory."""
    from zarr.storage import MemoryStore

    from pipeline.storage import describe_array

    g = _generate_section(config)
    loc = Location.of(config.input.store, config.input.storage_options)
    arr = _create_array(MemoryStore(), "", g, {})
    return describe_array(loc, config.input.array.strip("/"), arr)


def _generate_section(config: Config) -> GenerateConfig:
    g = config.input.generate
    if g is None:
        raise PipelineError(
            "the config has no input.generate section: add one (shape, dtype, ...) or point "
            "input.store at existing data"
        )
    from pipeline.ops.stages import check_dtype

    check_dtype(np.dtype(g.dtype))
    return g


def _create_array(store: Any, path: str, g: GenerateConfig, attrs: dict[str, Any]) -> Any:
    """The generated array's metadata, created with Zarr in ``store`` (replacing what is
    there): Zarr v3 with zstd frames in shards, or Zarr v2."""
    import numcodecs
    import zarr
    from zarr.codecs import ZstdCodec

    dtype = np.dtype(g.dtype)
    chunk, unit = resolve_layout(g)
    zstd = g.codec.name == "zstd"
    v3 = g.zarr_format == 3
    if v3:
        comp: Any = ZstdCodec(level=g.codec.level, checksum=g.codec.checksum) if zstd else None
    else:
        comp = numcodecs.Zstd(level=g.codec.level, checksum=g.codec.checksum) if zstd else None
    return zarr.create_array(
        store=store,
        name=path or None,
        shape=g.shape,
        dtype=dtype if v3 else dtype.newbyteorder("<"),
        chunks=chunk,
        shards=unit if v3 and unit != chunk else None,
        compressors=comp,
        fill_value=0,
        attributes=attrs,
        overwrite=True,
        zarr_format=g.zarr_format,
    )


def create_input(config: Config, backend: str) -> GenSpec:
    """Create the input's metadata with Zarr (replacing it); the spec of its generation."""
    g = _generate_section(config)
    chunk, _ = resolve_layout(g)
    loc = Location.of(config.input.store, config.input.storage_options)
    path = config.input.array.strip("/")
    # nvCOMP encodes frames up to 4 MiB, and writes no content checksum
    checksum = g.codec.name == "zstd" and g.codec.checksum
    small = layout.nbytes(chunk, np.dtype(g.dtype)) <= (4 << 20)
    encode_on = backend if small and not checksum else "cpu"
    attrs: dict[str, Any] = {
        GENERATED: {
            # until every unit is written (mark_generated): a reader must not take the chunks
            # not yet written for fill values
            "status": "incomplete",
            "distribution": g.distribution,
            "seed": g.seed,
            "generator": ("numpy-pcg64" if encode_on == "cpu" else "cupy-default_rng")
            if g.distribution != "ramp"
            else "arithmetic",
        }
    }
    _create_array(loc.zarr_store(read_only=False), path, g, attrs)
    from pipeline.storage import describe_array

    info = describe_array(loc, path)
    sink = Sink(
        info=info,
        block=info.unit,
        backend=encode_on,
        encoding=Encoding(codec=g.codec.name, level=g.codec.level, checksum=g.codec.checksum),
        ledger=None,
    )
    return GenSpec(sink=sink, distribution=g.distribution, seed=g.seed)


def mark_generated(loc: Location, path: str) -> None:
    """Mark the generated input at ``path`` finished (``pipeline_generated.status: complete``);
    call once every unit is written."""
    from pipeline.storage import read_attributes, update_attributes

    doc = dict(read_attributes(loc, path).get(GENERATED) or {})
    doc["status"] = "complete"
    update_attributes(loc, path, {GENERATED: doc})


def generation_status(loc: Location, path: str) -> str | None:
    """'complete' or 'incomplete' for an input that ``generate`` made (one made by a version
    that did not record it counts as complete); None for any other array, or no array."""
    return _generation_status(_attributes(loc, path))


def _generation_status(attrs: dict[str, Any]) -> str | None:
    doc = attrs.get(GENERATED)
    if not isinstance(doc, dict):
        return None
    return "incomplete" if doc.get("status") == "incomplete" else "complete"


def _attributes(loc: Location, path: str) -> dict[str, Any]:
    """The attributes of the array at ``path``; {} when there is none, or they cannot be
    read (describe_array names that problem)."""
    from pipeline.storage import read_attributes

    path = path.strip("/")
    if not any(loc.exists(f"{path}/{k}" if path else k) for k in ("zarr.json", ".zarray")):
        return {}
    try:
        return read_attributes(loc, path)
    except Exception:
        return {}


def check_finished(config: Config) -> None:
    """Refuse (InputError) an input that the pipeline began and did not finish: one whose
    generation was interrupted, or the output of an interrupted run (a chained run). The
    chunks they lack would be read as fill values.

    The error's fields: ``input`` (where), ``status`` ('incomplete'), ``made_by`` ('generate'
    or 'run')."""
    loc = Location.of(config.input.store, config.input.storage_options)
    path = config.input.array.strip("/")
    attrs = _attributes(loc, path)
    where = loc.join(path)
    if _generation_status(attrs) == "incomplete":
        fix = (
            "`pipeline generate CONFIG` generates it again (or set input.generate.when_missing: "
            "true and `run` does)"
            if config.input.generate is not None
            else "generate it again with `pipeline generate` and the config that describes it"
        )
        raise InputError(
            f"the input {where} is unfinished: its generation was interrupted, so some of its "
            f"chunks were never written; {fix}",
            input=where,
            status="incomplete",
            made_by="generate",
        )
    run = attrs.get("pipeline")
    if isinstance(run, dict) and run.get("status") == "incomplete":
        raise InputError(
            f"the input {where} is the output of an interrupted run, so some of its chunks "
            "were never written: `pipeline run CONFIG --resume` with the config that made it "
            "finishes it",
            input=where,
            status="incomplete",
            made_by="run",
        )


def unit_values(spec: GenSpec, unit_index: Shape, xp: Any) -> Any:
    """The values of one unit at its full (padded) shape, with array module ``xp``."""
    info: ArrayInfo = spec.sink.info
    shape, dtype = tuple(info.unit), info.dtype
    if spec.distribution == "ramp":
        # global C-order index of each element, modulo the period: exact in every dtype
        lin = xp.zeros(shape, dtype=np.int64)
        stride = 1
        for a in reversed(range(len(shape))):
            coord = xp.arange(shape[a], dtype=np.int64) + unit_index[a] * info.unit[a]
            lin += coord.reshape((-1,) + (1,) * (len(shape) - a - 1)) * stride
            stride *= info.shape[a]
        period = RAMP_PERIOD
        if dtype.kind in "iu":
            period = min(period, int(np.iinfo(dtype).max) + 1)
        v = lin % period
        return (v * 0.5).astype(dtype) if dtype.kind == "f" else v.astype(dtype)
    seed = int(np.random.SeedSequence([spec.seed, *unit_index]).generate_state(1)[0])
    rng = xp.random.default_rng(seed)
    if dtype.kind == "f":
        work = np.float32 if dtype.itemsize <= 4 else np.float64
        if spec.distribution == "normal":
            return rng.standard_normal(shape, dtype=work).astype(dtype)
        return rng.random(shape, dtype=work).astype(dtype)
    info_i = np.iinfo(dtype)
    if spec.distribution == "normal":  # integers around 0 with a spread of 1000
        v = rng.standard_normal(shape, dtype=np.float64) * 1000.0
        return xp.clip(xp.rint(v), info_i.min, info_i.max).astype(dtype)
    return rng.integers(int(info_i.min), int(info_i.max), size=shape, dtype=dtype, endpoint=True)


def generate_unit(spec: GenSpec, unit_index: Shape) -> int:
    """Generate and store one unit; bytes written."""
    be = backends.get(spec.sink.backend)
    be.prepare()
    with be.on_stream():  # the values are drawn on the stream that encodes them
        data = unit_values(spec, unit_index, be.xp)
        written = write_unit(be, spec.sink, tuple(unit_index), data)
        be.synchronize()
    return written
