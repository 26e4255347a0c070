"""Where the data lives: stores, arrays in them, their chunks' geometry and codecs, and the
run's record beside the output.

* :mod:`~pipeline.store.location`: :class:`Location`, a path or fsspec URL; raw read, write,
  list, delete and exclusive create, keys taken literally.
* :mod:`~pipeline.store.arrays`: :class:`ArrayInfo` (what a stored array is), opening and
  describing arrays with Zarr, creating an output's metadata, attributes.
* :mod:`~pipeline.store.grid`: chunk geometry (grids, unit and block slices, chunk-major <-> C
  order); :mod:`~pipeline.store.shards`: the shard index and where frames lie;
  :mod:`~pipeline.store.codecs`: chunks decoded by the codec chain their metadata names.
* :mod:`~pipeline.store.ledger`: the run record in ``<output>/.pipeline/``: markers, manifest,
  the lock.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline._lazy import reexports

if TYPE_CHECKING:
    from pipeline.store.arrays import ArrayInfo, describe_array, open_zarr_array
    from pipeline.store.codecs import Damaged, FrameCodec
    from pipeline.store.grid import Shape
    from pipeline.store.ledger import RECORD, Ledger
    from pipeline.store.location import Location
    from pipeline.store.shards import EMPTY, Frames

__all__ = [
    "EMPTY",
    "RECORD",
    "ArrayInfo",
    "Damaged",
    "FrameCodec",
    "Frames",
    "Ledger",
    "Location",
    "Shape",
    "describe_array",
    "open_zarr_array",
]


# The re-exports, each imported on first use: a module of the package (a worker's
# :mod:`~pipeline.store.grid` or :mod:`~pipeline.store.location`) loads without the others.
__getattr__, __dir__ = reexports(
    __name__,
    {
        "EMPTY": "shards",
        "RECORD": "ledger",
        "ArrayInfo": "arrays",
        "Damaged": "codecs",
        "FrameCodec": "codecs",
        "Frames": "shards",
        "Ledger": "ledger",
        "Location": "location",
        "Shape": "grid",
        "describe_array": "arrays",
        "open_zarr_array": "arrays",
    },
)
