"""The package's version, in a module of its own so that any layer can read it (the package's
``__init__``, which re-exports it, sits above every layer)."""

__version__ = "0.1.0"
