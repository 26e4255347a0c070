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

from typing import TYPE_CHECKING, Any

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


def __getattr__(name: str) -> Any:
    """The re-exports, each imported on first use, so that a module of the package (a worker's
    :mod:`~pipeline.store.grid` or :mod:`~pipeline.store.location`) loads without the others."""
    if name in ("ArrayInfo", "describe_array", "open_zarr_array"):
        from pipeline.store import arrays

        value = getattr(arrays, name)
    elif name in ("Damaged", "FrameCodec"):
        from pipeline.store import codecs

        value = getattr(codecs, name)
    elif name == "Shape":
        from pipeline.store import grid

        value = grid.Shape
    elif name in ("RECORD", "Ledger"):
        from pipeline.store import ledger

        value = getattr(ledger, name)
    elif name == "Location":
        from pipeline.store import location

        value = location.Location
    elif name in ("EMPTY", "Frames"):
        from pipeline.store import shards

        value = getattr(shards, name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The module's names and its re-exports, loaded or not: ``dir()``, a notebook's
    completion and ``help()`` (pydoc lists what ``dir`` gives) name them all; without it
    they had named ``__getattr__`` alone until a re-export was first used."""
    return sorted({*globals(), *__all__})
