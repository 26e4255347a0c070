"""Files of the user's that take the place of a module the command imports: a ``yaml.py``,
``numpy.py`` or ``logging.py`` in the folder ``python -m pipeline`` runs in (which Python puts
first on ``sys.path``) is imported instead of the installed module of that name, and whatever
uses it fails in the library's words (``module 'yaml' has no attribute 'SafeLoader'``), naming
no file. Looked for only once a command has failed, so start-up pays nothing, and named only
where the error comes from or through such a file (:func:`linked_shadows`), or nothing
explains it (:func:`shadows_behind`): an error of the config's or the input's keeps its own
line. This module imports only what the interpreter has loaded before any of the program's
code runs (``os``, ``sys``, ``contextlib``, ``types``, ``importlib``, ``site``): no file of
the user's takes their place.
"""

from __future__ import annotations

import contextlib
import os
import sys
import types

#: Top-level modules that are the program itself, not a library it imports.
_PROGRAM = frozenset(("__main__", "__mp_main__", "pipeline"))


def shadowing_files(names: list[str] | tuple[str, ...] = ()) -> list[tuple[str, str, str]]:
    """``(module, file, installed)`` for each top-level module this process imported from a
    file of the user's (not the interpreter's standard library, nor a site-packages folder,
    nor a release installed into a folder of sys.path: :func:`_installed_into`)
    while a module of the same name lies further along ``sys.path``, ``installed`` being that
    one's file: the file took its place. And the same for each of ``names`` (top-level
    modules) that this process has not imported, which an import would take from such a file
    (a Dask worker, asked about the modules the run's tasks will import there before they
    do: ``running.cluster.check_store_packages``). Empty where there is none. Raises
    nothing."""
    try:
        return _shadowing_files(names)
    except Exception:  # a broken sys.path or module: no shadow said, the error's own line is
        return []


def _shadowing_files(names: list[str] | tuple[str, ...]) -> list[tuple[str, str, str]]:
    from importlib.machinery import PathFinder

    entries = [os.path.realpath(p or os.curdir) for p in sys.path if isinstance(p, str)]
    installed = _installation_folders()
    found = []
    specs = [(n, getattr(m, "__spec__", None)) for n, m in list(sys.modules.items())]
    specs += [(n, _found(n)) for n in sorted(set(names)) if n not in sys.modules]
    for name, spec in specs:
        if "." in name or name in _PROGRAM:
            continue
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


def _found(name: str) -> object:
    """The spec an import of the top-level module ``name`` would load now (the interpreter's
    finders in their order: a built-in module before any file), nothing imported; None where
    there is none, or a finder fails."""
    import importlib.util

    try:
        return importlib.util.find_spec(name) if name.isidentifier() else None
    except Exception:  # a finder that refuses the name: no module found
        return None


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


def linked_shadows(error: BaseException) -> list[tuple[str, str, str]]:
    """The :func:`shadowing_files` that ``error`` comes from or through, as they come: those
    whose module ``error``, or an error it came from (its ``__cause__`` and ``__context__``,
    an exception group's members), shows failing (:func:`_modules_shown`). Empty where none
    does: a file of the user's that has nothing to do with the error (a ``queue.py`` beside a
    config with a wrong value, an input that is not there) is not its cause. Raises
    nothing."""
    return _linked(error)[0]


def _linked(error: BaseException) -> tuple[list[tuple[str, str, str]], BaseException]:
    """:func:`linked_shadows`, and the error of ``error``'s chain that shows them failing, the
    last so (the library's, which a step's error came from); ``error`` where none does."""
    try:
        shadows = shadowing_files()
        if not shadows:
            return [], error
        files = {file: name for name, file, _ in shadows}
        names = {name for name, _, _ in shadows}
        shown: set[str] = set()
        failing = error
        for x in _chain(error):
            found = _modules_shown(x, files) & names
            if found:
                shown |= found
                failing = x
        return [s for s in shadows if s[0] in shown], failing
    except Exception:  # a broken error or module: no shadow said, the error's own line is
        return [], error


def _chain(error: BaseException) -> list[BaseException]:
    """``error`` and the errors it came from (``__cause__``, ``__context__``, an exception
    group's members), each once, at most :data:`_MOST_CHAINED`."""
    seen: list[BaseException] = []
    todo = [error]
    while todo and len(seen) < _MOST_CHAINED:
        x = todo.pop()
        if any(x is s for s in seen):
            continue
        seen.append(x)
        todo += [c for c in (x.__cause__, x.__context__) if isinstance(c, BaseException)]
        if isinstance(x, BaseExceptionGroup):
            todo += [c for c in x.exceptions if isinstance(c, BaseException)]
    return seen


#: The most errors of a chain :func:`linked_shadows` reads.
_MOST_CHAINED = 64


def _modules_shown(x: BaseException, files: dict[str, str]) -> set[str]:
    """The top-level modules that ``x`` shows failing: an ImportError's module (``name``,
    ``zarr.errors`` where ``zarr`` is a file) or file (``path``: "cannot import name 'Empty'
    from 'queue' (.../queue.py)"); an AttributeError's object's module (the module itself:
    "module 'queue' has no attribute 'SimpleQueue'", or a class or an object of one it
    defines); the module of any of its traceback's frames (the file's own code raised, or
    called what raised); and the modules its message says so of (:func:`_modules_said`: an
    error that came from a Dask worker, whose fields pickling dropped, or a step's error that
    quotes the library's). ``files``: each shadowing file's module, by its path."""
    try:
        shown = _modules_said(str(x))
    except Exception:  # a message that cannot be made: the error's other marks are read
        shown = set()
    if isinstance(x, ImportError):
        if isinstance(x.name, str):
            shown.add(x.name.split(".")[0])
        if isinstance(x.path, str) and os.path.realpath(x.path) in files:
            shown.add(files[os.path.realpath(x.path)])
    if isinstance(x, AttributeError):
        obj = getattr(x, "obj", None)
        module: object
        if isinstance(obj, types.ModuleType):
            module = obj.__name__
        elif isinstance(obj, (type, types.FunctionType)):
            module = obj.__module__
        else:
            module = type(obj).__module__
        if isinstance(module, str):
            shown.add(module.split(".")[0])
    names = {os.path.basename(f) for f in files}
    tb = x.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        name = frame.f_globals.get("__name__")
        if isinstance(name, str):
            shown.add(name.split(".")[0])
        filename = frame.f_code.co_filename
        if os.path.basename(filename) in names and os.path.realpath(filename) in files:
            shown.add(files[os.path.realpath(filename)])
        tb = tb.tb_next
    return shown


#: How Python's messages name a module that failed, before its name and its closing quote:
#: "module 'queue' has no attribute ...", "partially initialized module 'x' ...", "No module
#: named 'zarr.errors'; 'zarr' is not a package", "cannot import name 'Empty' from 'queue'
#: (...)" (this one only before " (").
_SAYINGS = ("module '", "module named '", "' is not a package", "from '")


def _modules_said(text: str) -> set[str]:
    """The top-level modules that ``text``, an error's message, says failed in Python's words
    (:data:`_SAYINGS`); read with ``str`` alone (no ``re``: a file of the user's may take its
    place)."""
    said = set()
    for saying in _SAYINGS:
        start = 0
        while (i := text.find(saying, start)) >= 0:
            start = i + len(saying)
            if saying.startswith("'"):  # the name is before it
                j = text.rfind("'", 0, i)
                name = text[j + 1 : i] if j >= 0 else ""
            else:
                k = text.find("'", start)
                if k < 0:
                    break
                name = text[start:k]
                if saying == "from '" and not text.startswith(" (", k + 1):
                    continue
            if name.replace(".", "").replace("_", "").isalnum():
                said.add(name.split(".")[0])
    return said


def _said(shadows: list[tuple[str, str, str]]) -> str:
    return "; ".join(
        f"{file} takes the place of the module {name!r} installed at {installed}"
        for name, file, installed in shadows
    )


def _them(shadows: list[tuple[str, str, str]]) -> str:
    return "that file" if len(shadows) == 1 else "those files"


def shadows_behind(
    error: BaseException, explained: bool = False
) -> tuple[list[tuple[str, str, str]], bool, BaseException]:
    """The files of the user's (:func:`shadowing_files`' rows) to name in ``error``'s one line,
    whether they only may be its cause, and the error whose words to quote: those ``error``
    comes from or through (:func:`linked_shadows`), False, and the error of its chain that
    shows them failing (a step's error that blamed the input for it is not quoted, its fix
    being no fix); else, where ``error`` is one that nothing explains (``explained`` false: a
    library's error, said by its type and message, not the pipeline's own line, nor a missing
    module's), every such file, True, ``error`` (a library that hides the error it met:
    pydantic's "cannot import name 'BaseModel'" where a ``platform.py`` failed its import).
    No file, for an error that the pipeline says itself (a config's wrong value, an input
    that is not there) and that shows none: it keeps its own line. Raises nothing."""
    shadows, failing = _linked(error)
    if shadows:
        return shadows, False, failing
    if explained or _missing_module(error):
        return [], False, error
    return shadowing_files(), True, error


def shadow_message(
    shadows: list[tuple[str, str, str]],
    maybe: bool,
    failure: str | None,
    importer: str = "the command",
) -> str:
    """The words naming ``shadows`` (:func:`shadows_behind`) as the cause of ``failure``, the
    error's own words, put in brackets (none where None: a note under the error), or as what
    ``maybe`` is: each file, the module it hides, and the fix. ``importer``: what imports the
    modules (the command, or ``pipeline.run()``)."""
    said = ", and may be the cause" if len(shadows) == 1 else "; one of them may be the cause"
    quoted = f" ({failure})" if failure is not None else ""
    return (
        f"{_said(shadows)}, which {importer} imports{said if maybe else ''}{quoted}: "
        f"rename {_them(shadows)} of yours"
    )


def _missing_module(error: BaseException) -> bool:
    """Whether ``error`` is an ImportError for a module this process has not imported (one it
    lacks: no file of the user's took its place)."""
    name = getattr(error, "name", None) if isinstance(error, ImportError) else None
    return isinstance(name, str) and sys.modules.get(name.split(".")[0]) is None


def shadow_line(failure: str, error: BaseException, explained: bool = False) -> str | None:
    """The command's one line where files of the user's take the place of modules it imports
    and ``error``, ``failure`` in its own words, comes from or through them, or, where nothing
    explains it (``explained`` false), may (:func:`shadows_behind`): each file named, the
    module it hides, and the fix (:func:`shadow_message`), with the words of the error that
    shows them failing; None where there is none."""
    shadows, maybe, failing = shadows_behind(error, explained)
    if not shadows:
        return None
    said = failure if failing is error else said_error(failing)
    return f"error: {shadow_message(shadows, maybe, said)}"


def said_error(error: BaseException) -> str:
    """``error`` in one line: its type's name and its message (as ``errors.cause``, which this
    module does not import)."""
    return " ".join(f"{type(error).__name__}: {error}".split())


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
        line = shadow_line(f"{kind.__name__}: {error}", error)
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
