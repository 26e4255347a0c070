"""A subpackage's re-exports, each imported from its module on first use (PEP 562, as
SPEC 1's ``lazy_loader.attach`` does): one table per package, ``{name: module}``.

Importing ``pipeline.store`` then loads none of its modules, so a module of the package that
a Dask worker needs (``pipeline.store.grid``, ``pipeline.planning.specs``,
``pipeline.running.tasks``) loads without the others (the config's models, the plan, Dask).
This module imports no module of the package: every subpackage may import it.

The table is the runtime's; a package keeps the same names under ``if TYPE_CHECKING:`` imports
for mypy, and a literal ``__all__`` (``tests/test_layout_rules.py`` checks that the three
agree, and that every subpackage's re-exports are made here).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def reexports(
    package: str, names: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for the package named ``package`` (its ``__name__``), whose
    re-exports ``names`` maps to the module of the package that defines each (``{"Config":
    "models"}``: ``pipeline.config.Config`` is ``pipeline.config.models.Config``).

    ``__getattr__(name)`` imports that module on first use and keeps the object as the
    package's attribute (later uses are plain lookups, and the object, not the module, stays
    the attribute where importing the module set one of that name); a name not in ``names``
    raises ``AttributeError("module 'pipeline.config' has no attribute 'x'")``, Python's own
    words. ``__dir__()`` names the package's attributes and every re-export, loaded or not,
    so ``dir()``, a notebook's completion and ``help()`` (pydoc lists what ``dir`` gives) list
    them all (they had named ``__getattr__`` alone until a re-export was first used)."""
    table = dict(names)

    def __getattr__(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *table})

    return __getattr__, __dir__
