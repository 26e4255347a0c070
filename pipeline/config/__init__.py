"""What to run: the config file, parsed once into frozen, validated models.

:mod:`~pipeline.config.models` holds the models (each section, :class:`Config`, the stage
models built from the stage registry); :mod:`~pipeline.config.loading` reads YAML into them
with one-line errors naming the file, line and key, which :mod:`~pipeline.config.problems`
words (for a model made from keywords too); :mod:`~pipeline.config.reference` generates the
README's reference from them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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


def __getattr__(name: str) -> Any:
    """The re-exports, each imported on first use: a module of the package that a worker
    needs (:mod:`~pipeline.config.urls`, which :mod:`~pipeline.store.location` reads) loads
    without the models (pydantic's validators of every section, built as they load)."""
    if name in ("load_config", "parse_config"):
        from pipeline.config import loading

        value = getattr(loading, name)
    elif name in __all__:
        from pipeline.config import models

        value = getattr(models, name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The module's names and its re-exports, loaded or not: ``dir()``, a notebook's
    completion and ``help()`` (pydoc lists what ``dir`` gives) name them all; without it
    they had named ``__getattr__`` alone until a re-export was first used."""
    return sorted({*globals(), *__all__})
