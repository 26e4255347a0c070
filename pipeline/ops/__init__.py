"""What is computed: the elementwise stages and their fused chain.

:mod:`~pipeline.ops.stages` holds the stage registry (one small function per stage), dtype
planning (:func:`plan_chain`, the integer overflow policy) and NumPy evaluation;
:mod:`~pipeline.ops.kernel` writes the same chain as one CUDA kernel's source. Nothing here
touches storage, devices or Dask.
"""

from pipeline.ops.kernel import CUDA_PREAMBLE, KernelSource, cuda_source
from pipeline.ops.stages import (
    REGISTRY,
    BoundStage,
    StageParams,
    apply_chain,
    apply_chain_blocked,
    known_stages,
    plan_chain,
    stage,
)

__all__ = [
    "CUDA_PREAMBLE",
    "REGISTRY",
    "BoundStage",
    "KernelSource",
    "StageParams",
    "apply_chain",
    "apply_chain_blocked",
    "cuda_source",
    "known_stages",
    "plan_chain",
    "stage",
]
