"""Files of the user's that take the place of a module the command imports: a ``yaml.py``,
``numpy.py`` or ``logging.py`` in the folder ``python -m pipeline`` runs in (which Python puts
first on ``sys.path``) is imported instead of the installed module of that name, and whatever
uses it fails in the library's words (``module 'yaml' has no attribute 'SafeLoader'``), naming
no file. Looked for only once a command has failed, so start-up pays nothing. This module
imports only what the interpreter has loaded before any of the program's code runs (``os``,
``sys``, ``contextlib``, ``types``, ``importlib``, ``site``): no file of the user's takes
their place.
"""

from __future__ import annotations

import contextlib
import os
import sys
import types

#: Top-level modules that are the program itself, not a library it imports.
_PROGRAM = frozenset(("__main__", "__mp_main__", "pipeline"))


def shadowing_files() -> list[tuple[str, str, str]]:
    """``(module, file, installed)`` for each top-level module this process imported from a
    file of the user's (not the interpreter's standard library, nor a site-packages folder,
    nor a release installed into a folder of sys.path: :func:`_installed_into`)
    while a module of the same name lies further along ``sys.path``, ``installed`` being that
    one's file: the file took its place. Empty where there is none. Raises nothing."""
    try:
        return _shadowing_files()
    except Exception:  # a broken sys.path or module: no shadow said, the error's own line is
        return []


def _shadowing_files() -> list[tuple[str, str, str]]:
    from importlib.machinery import PathFinder

    entries = [os.path.realpath(p or os.curdir) for p in sys.path if isinstance(p, str)]
    installed = _installation_folders()
    found = []
    for name, module in list(sys.modules.items()):
        if "." in name or name in _PROGRAM:
            continue
        spec = getattr(module, "__spec__", None)
        file = getattr(spec, "origin", None)
        if not isinstance(file, str) or not os.path.isabs(file):  # built-in, frozen, namespace
            continue
        file = os.path.realpath(file)
        folder = os.path.dirname(file)
        if getattr(spec, "submodule_search_locations", None) is not None:  # a package
            folder = os.path.dirname(folder)
        if folder not in entries or any(_within(folder, f) for f in installed):
            continue
        if _installed_into(folder, name):  # pip install --target, a PYTHONPATH's release
            continue
        later = entries[entries.index(folder) + 1 :]
        other = PathFinder.find_spec(name, [p for p in later if p != folder])
        origin = getattr(other, "origin", None)
        if isinstance(origin, str) and os.path.realpath(origin) != file:
            found.append((name, file, origin))
    return found


def _installation_folders() -> list[str]:
    """The folders of the interpreter's own modules: its standard library (with lib-dynload,
    and site-packages where no virtual environment is), and its site-packages folders."""
    import site

    folders = [os.path.dirname(os.__file__)]
    folders += site.getsitepackages() if hasattr(site, "getsitepackages") else []
    folders.append(site.getusersitepackages())
    return [os.path.realpath(f) for f in folders if isinstance(f, str)]


def _installed_into(folder: str, name: str) -> bool:
    """Whether ``folder`` holds module ``name`` as an installed distribution's (a
    ``*.dist-info`` whose RECORD, or an ``*.egg-info`` whose top_level.txt, lists it): a release
    put there on purpose (``pip install --target DIR``, a folder on PYTHONPATH), which takes the
    place of another release of the library, not of the library. Reads with ``os`` alone."""
    heads = (f"{name}/", f"{name}.py,", f"{name}.")
    try:
        entries = os.listdir(folder)
    except OSError:  # a zip file on sys.path, say: no installed distribution to read
        return False
    for entry in entries:
        if entry.endswith(".dist-info"):
            listing, lines_name = os.path.join(folder, entry, "RECORD"), False
        elif entry.endswith(".egg-info"):
            listing, lines_name = os.path.join(folder, entry, "top_level.txt"), True
        else:
            continue
        try:
            with open(listing, encoding="utf-8") as f:
                for line in f:
                    if (line.strip() == name) if lines_name else line.startswith(heads):
                        return True
        except OSError:
            continue
    return False


def _within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def shadow_line(failure: str) -> str | None:
    """The command's one line where files of the user's take the place of modules it imports
    (:func:`shadowing_files`), naming each file, the module it hides, and the fix, with
    ``failure``, the error's own words, in brackets; None where there is none."""
    shadows = shadowing_files()
    if not shadows:
        return None
    said = "; ".join(
        f"{file} takes the place of the module {name!r} installed at {installed}"
        for name, file, installed in shadows
    )
    them = "that file" if len(shadows) == 1 else "those files"
    return f"error: {said}, which the command imports ({failure}): rename {them} of yours"


def excepthook(
    kind: type[BaseException], error: BaseException, tb: types.TracebackType | None
) -> None:
    """``sys.excepthook`` of ``python -m pipeline``: an error raised before the command's own
    handlers (a module the program imports at start-up, ``logging.py`` of the user's in its
    place) is said in :func:`shadow_line` where a file takes a module's place, not as a
    traceback, and the process ends (status 1) without the interpreter's teardown; any other,
    and any with ``--debug``, as Python says it."""
    line = None
    if "--debug" not in sys.argv[1:] and isinstance(error, Exception):
        line = shadow_line(f"{kind.__name__}: {error}")
    if line is None:
        sys.__excepthook__(kind, error, tb)
        return
    print(line, file=sys.stderr)
    # nothing of the command's has started; the interpreter's own exit would use the module
    # taken (``threading._shutdown``: "Exception ignored in ..." after the line)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed pipe: nothing more can be said
            stream.flush()
    os._exit(1)
