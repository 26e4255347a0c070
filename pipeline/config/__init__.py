"""What to run: the config file, parsed once into frozen, validated models.

:mod:`~pipeline.config.models` holds the models (each section, :class:`Config`, the stage
models built from the stage registry); :mod:`~pipeline.config.loading` reads YAML into them
with one-line errors naming the file, line and key, which :mod:`~pipeline.config.problems`
words (for a model made from keywords too); :mod:`~pipeline.config.reference` generates the
README's reference from them.
"""

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
