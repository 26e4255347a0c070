"""What a run's tasks are given: how to read the input's blocks (:class:`Source`) and how to
write the output's (:class:`Sink`), the parts of the plan that travel with every task.

A module of their own, apart from :mod:`~pipeline.planning.plan`: a worker process unpickles
them with each task, which imports the module they are defined in, and the plan's module loads
the config's models, pydantic's validators, the input's Dataset and the memory model, none of
which a task runs (0.1-0.2 s of every GPU worker's fork server's imports, issue 17). The plan
makes them (:func:`~pipeline.planning.plan.make_plan`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from pipeline.devices.base import Encoding
    from pipeline.ops.cf import Unpacking
    from pipeline.store.arrays import ArrayInfo
    from pipeline.store.grid import Shape
    from pipeline.store.ledger import Ledger


@dataclass(frozen=True)
class Source:
    """How to read the input's blocks."""

    info: ArrayInfo
    block: Shape
    """Dask chunk shape"""
    backend: str
    """where decoded blocks land: 'cpu' (NumPy) or 'gpu' (CuPy)"""
    direct: bool
    """True: the pipeline decodes the stored units itself; False: Zarr reads the region (the
    slow path, for codec chains only Zarr knows)"""
    decode_on: str = "cpu"
    """where the stored units are decoded: 'cpu' (numcodecs) or 'gpu' (nvCOMP, for plain zstd
    frames small enough for it)"""
    decode_threads: int = 1
    """where the CPU decodes: threads of the worker process that read and decode a block's
    stored units at once (:func:`~pipeline.planning.plan.decode_threads`); 1: the task's own
    thread, one unit after another"""
    unpacking: Unpacking | None = None
    """how the stored elements become values (CF packing, ``input.mask_and_scale``), on the
    block's device after it is read; None: they are the values"""

    @property
    def dtype(self) -> np.dtype:
        """The dtype of the blocks read: the decoded one when the input is unpacked."""
        return np.dtype(self.unpacking.dtype) if self.unpacking else self.info.dtype


@dataclass(frozen=True)
class Sink:
    """How to write the output's blocks."""

    info: ArrayInfo
    block: Shape
    backend: str
    """where blocks are encoded: 'cpu' or 'gpu'"""
    encoding: Encoding
    ledger: Ledger | None
