"""What to run: the config file, parsed once into frozen, validated models.

:mod:`~pipeline.config.models` holds the models (each section, :class:`Config`, the stage
models built from the stage registry); :mod:`~pipeline.config.loading` reads YAML into them
with one-line errors naming the file, line and key, which :mod:`~pipeline.config.problems`
words (for a model made from keywords too); :mod:`~pipeline.config.reference` generates the
README's reference from them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline._lazy import reexports

if TYPE_CHECKING:
    from pipeline.config.loading import load_config, parse_config
    from pipeline.config.models import (
        ChunkingConfig,
        ClusterConfig,
        CodecConfig,
        Config,
        GenerateConfig,
        InputConfig,
        OutputConfig,
    )

__all__ = [
    "ChunkingConfig",
    "ClusterConfig",
    "CodecConfig",
    "Config",
    "GenerateConfig",
    "InputConfig",
    "OutputConfig",
    "load_config",
    "parse_config",
]


# The re-exports, each imported on first use: a module of the package that a worker needs
# (:mod:`~pipeline.config.urls`, which :mod:`~pipeline.store.location` reads) loads without the
# models (pydantic's validators of every section, built as they load).
__getattr__, __dir__ = reexports(
    __name__,
    {
        "ChunkingConfig": "models",
        "ClusterConfig": "models",
        "CodecConfig": "models",
        "Config": "models",
        "GenerateConfig": "models",
        "InputConfig": "models",
        "OutputConfig": "models",
        "load_config": "loading",
        "parse_config": "loading",
    },
)
