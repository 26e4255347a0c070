"""Synthetic inputs: the array a config's ``input.generate`` describes, made deterministically.

Every stored unit is generated on its own from ``(seed, unit index)``, so the data does not
depend on the number of workers or the order of tasks. ``normal`` and ``uniform`` draw from
NumPy's PCG64 on the CPU or CuPy's generator on a GPU (each deterministic, but the two devices
draw different numbers; the attributes record which); ``ramp`` is arithmetic, identical on both,
and compresses well (for datasets larger than the disk).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline import devices
from pipeline.blocks import write_unit
from pipeline.config import Config
from pipeline.devices.base import Encoding
from pipeline.planning.blocks import generated_layout
from pipeline.planning.plan import Sink, generate_section
from pipeline.store import arrays, grid
from pipeline.store.arrays import GENERATED, ArrayInfo
from pipeline.store.grid import Shape
from pipeline.store.location import Location

RAMP_PERIOD = 1024


@dataclass(frozen=True)
class GenSpec:
    """What a generation task needs."""

    sink: Sink
    distribution: str
    seed: int


def create_input(config: Config, backend: str) -> GenSpec:
    """Create the input's metadata with Zarr (replacing it); the spec of its generation."""
    g = generate_section(config)
    chunk, unit = generated_layout(g)
    loc = Location.of(config.input.store, config.input.storage_options)
    path = config.input.array.strip("/")
    # nvCOMP encodes frames up to 4 MiB, and writes no content checksum
    checksum = g.codec.name == "zstd" and g.codec.checksum
    small = grid.nbytes(chunk, np.dtype(g.dtype)) <= (4 << 20)
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
    arrays.create_generated(loc.zarr_store(read_only=False), path, g, chunk, unit, attrs)
    info = arrays.describe_array(loc, path)
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
    doc = dict(arrays.read_attributes(loc, path).get(GENERATED) or {})
    doc["status"] = "complete"
    arrays.update_attributes(loc, path, {GENERATED: doc})


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
    be = devices.get(spec.sink.backend)
    be.prepare()
    with be.on_stream():  # the values are drawn on the stream that encodes them
        data = unit_values(spec, unit_index, be.xp)
        written = write_unit(be, spec.sink, tuple(unit_index), data)
        be.synchronize()
    return written
