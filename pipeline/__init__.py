"""pipeline: push Zarr arrays larger than any one GPU through a chain of array stages.

The public API: :func:`load_config` and :class:`Config`, :func:`plan` (what a run would do),
:func:`run` and :func:`verify` (its output against NumPy), the error types, ``__version__``.
``pipeline/DESIGN.md`` says how the pieces fit together; the subpackages follow the data flow
(config, ops, store, devices, planning, reporting, running).

Importing the package is light (the config's models, no Dask, no Zarr): the modules that run
things are imported inside the functions that need them.
"""

from __future__ import annotations

import sys

if sys.argv[:1] == ["-m"]:  # `python -m pipeline`, this package being found: it is the program

    def _excepthook(*failure: Any) -> None:
        """An error before the command's handlers (:func:`pipeline.shadowing.excepthook`).
        Where it is this package's own import that failed (a ``typing.py`` of the user's in
        the folder: ``cannot import name 'TYPE_CHECKING' from 'typing'``), the package is no
        module (importing ``pipeline.shadowing`` would run this file again, and fail the
        same): the module is loaded from its file alone, as it imports no module of the
        package's; where that fails too, the error is said as Python says it."""
        if issubclass(failure[0], KeyboardInterrupt) and "pipeline.cli" not in sys.modules:
            # a Ctrl-C while this package's own modules load, before ``__main__``'s handler of
            # one while the command's load: its line (nothing is begun), not the traceback;
            # Python then dies of the SIGINT, as after any Ctrl-C of the command (h87a)
            sys.stderr.write("interrupted: nothing was written\n")
            sys.stderr.flush()
            return
        if "pipeline" in sys.modules:
            from pipeline.shadowing import excepthook

            excepthook(*failure)
        else:
            _excepthook_alone()(*failure)

    def _excepthook_alone() -> Callable[..., None]:
        """The excepthook of ``pipeline/shadowing.py``, loaded from this package's folder (or
        zip file) as a module of its own, this package not imported; ``sys.__excepthook__``
        where it cannot be."""
        import importlib.util
        from importlib.machinery import PathFinder

        try:
            spec = PathFinder.find_spec("pipeline.shadowing", list(__path__))
            module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
            spec.loader.exec_module(module)  # type: ignore[union-attr]
        except Exception:
            return sys.__excepthook__
        hook: Callable[..., None] = module.excepthook
        return hook

    # before any other import, each of which a file of the user's may take the place of
    sys.excepthook = _excepthook

import dataclasses
import difflib
import functools
import inspect
import numbers
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from pipeline._version import __version__
from pipeline.errors import (
    ChunkError,
    ClusterError,
    ConfigError,
    InputError,
    Interrupted,
    OptionError,
    OutputError,
    PipelineError,
    PlanError,
    ShadowedModuleError,
    StoreError,
    said_option,
)

if TYPE_CHECKING:
    from pipeline.config import Config
    from pipeline.planning.plan import Plan
    from pipeline.reporting.summary import Summary
    from pipeline.reporting.verify import VerifyResult

__all__ = [
    "ChunkError",
    "ClusterError",
    "Config",
    "ConfigError",
    "ConfigLike",
    "InputError",
    "Interrupted",
    "OptionError",
    "OutputError",
    "PipelineError",
    "PlanError",
    "ShadowedModuleError",
    "StoreError",
    "__version__",
    "load_config",
    "plan",
    "run",
    "verify",
]


T = TypeVar("T")

#: What :func:`run` and :func:`plan` take as a config: a YAML file's path, the same as a
#: mapping, or a :class:`Config`.
ConfigLike: TypeAlias = "str | os.PathLike[str] | Mapping[str, Any] | Config"


def __getattr__(name: str) -> Any:
    """``Config``, imported on first use: the config's models load pydantic and the stage
    registry (NumPy), which ``pipeline --help`` and the Dask worker processes (they import the
    command line's module as their ``__main__``) do not need."""
    if name == "Config":
        from pipeline import config

        value = getattr(config, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _config(config: ConfigLike) -> Config:
    """``config`` as a :class:`Config`; ConfigError naming the key for an invalid one."""
    from pipeline.config import Config, load_config, parse_config
    from pipeline.config.loading import MAPPING

    if isinstance(config, Config):
        return config
    data = _data_given(config)
    if data is not None:  # before Mapping: an xarray Dataset is one, of its variables
        raise data
    if isinstance(config, Mapping):
        return parse_config(dict(config), MAPPING)
    if not isinstance(config, (str, os.PathLike)):  # os.fspath's bare TypeError otherwise
        raise OptionError(
            f"the config must be a YAML file's path, a mapping or a pipeline.Config, not "
            f"{_kind(config)}",
            option="config",
            valid=["a YAML file's path", "a mapping", "a pipeline.Config"],
            suggestion=None,
        )
    if isinstance(config, str) and _yaml_text(config):
        raise OptionError(
            f"the config given is YAML text ({_lines(config)}), not a YAML file's path: pass "
            "the file's path, a mapping (yaml.safe_load(text)) or a pipeline.Config (the text "
            "is not said here: it may hold credentials)",
            option="config",
            valid=["a YAML file's path", "a mapping", "a pipeline.Config"],
            suggestion=None,
        )
    return load_config(os.fspath(config))


#: The libraries whose arrays and datasets a user may pass where the config goes, how to say
#: their objects, and how to make of one an input the config names.
_DATA_LIBRARIES = {
    "xarray": (
        "an xarray",
        "write it to one (ds.to_zarr('in.zarr')) and name the store and the variable in the "
        "config's input: {store: in.zarr, array: VARIABLE}",
    ),
    "zarr": (
        "a zarr",
        "name its store and its path in the config's input: {store: STORE, array: PATH}",
    ),
    **{
        library: (
            f"a {said}",
            "write it to one (zarr.save_array('in.zarr', x), or a Dask array's "
            "x.to_zarr('in.zarr')) and name the store in the config's input: {store: in.zarr}",
        )
        for library, said in (("numpy", "NumPy"), ("dask", "Dask"), ("cupy", "CuPy"))
    },
}


def _data_given(
    config: Any,
    wanted: str = "the config must be a YAML file's path, a mapping or a pipeline.Config",
    option: str = "config",
    valid: tuple[str, ...] = ("a YAML file's path", "a mapping", "a pipeline.Config"),
) -> OptionError | None:
    """The refusal of ``config`` where it is data (an xarray Dataset or DataArray, a zarr
    array or group, a NumPy, Dask or CuPy array) rather than a config, ``wanted`` saying what
    the call takes, naming how to make it the input a config names; None for anything else.
    An xarray Dataset is a mapping of its variables, and had been read as the config's keys:
    "unknown key 'air' (valid keys: input, ...)", which said nothing of what to do (h63e)."""
    kind = type(config)
    library = kind.__module__.partition(".")[0]
    if library not in _DATA_LIBRARIES or isinstance(config, (str, os.PathLike)):
        return None
    said, fix = _DATA_LIBRARIES[library]
    return OptionError(
        f"{wanted}, not {said} {kind.__name__}, the data itself: the pipeline reads its input "
        f"from a Zarr store; {fix}",
        option=option,
        valid=list(valid),
        suggestion=None,
    )


def _yaml_text(config: str) -> bool:
    """Whether ``config``, a string given as the config, is YAML text rather than a path: it
    holds a line break or a NUL (no path does), or it is a flow mapping (``{input: ...}``) that
    names no file here. ``pipeline.plan(open("c.yaml").read())`` was refused as "config file
    not found: " followed by the whole text, storage_options' secrets included."""
    if "\n" in config or "\r" in config or "\0" in config:
        return True
    text = config.strip()
    return text.startswith("{") and text.endswith("}") and not os.path.exists(config)


def _lines(text: str) -> str:
    """How long ``text`` is, in words that say none of it."""
    n = len(text.splitlines()) or 1
    return f"{n} line{'s' if n != 1 else ''}, {len(text)} characters"


def _kind(value: Any) -> str:
    """What ``value`` is, in a word: its type's name ('None' for None), never its value (a
    caller's object may hold anything)."""
    from pipeline.errors import kind_said

    return kind_said(value)  # plain words (it had said "a builtins.int")


def _client(client: Any, call: str = "run") -> Any:
    """``client`` as :func:`run` and :func:`plan` (``call``, the function's name) take it:
    None, or an open ``distributed.Client``. Anything else is an :class:`OptionError` (a
    TypeError) saying so, and that a scheduler's address goes in the config's
    ``cluster.scheduler`` (an address string failed on its missing ``.scheduler``); a closed
    client is a :class:`ClusterError` (reason 'closed')."""
    if client is None:
        return None
    from distributed import Client

    said = f"pipeline.{call}()"
    if not isinstance(client, Client):
        address = " (a scheduler's address goes in the config's cluster.scheduler)"
        leave = "start or join" if call == "run" else "plan for"
        raise OptionError(
            f"{said} option client takes a distributed.Client, not {_kind(client)}"
            f"{address if isinstance(client, str) else ''}; or leave it out to {leave} "
            "the config's cluster (cluster.scheduler)",
            option="client",
            valid=["a distributed.Client", "None"],
            suggestion=None,
        )
    if _on_this_threads_loop(client):
        until = "the run ends" if call == "run" else "the plan is made"
        raise OptionError(
            f"{said} option client is an asynchronous distributed.Client whose event "
            f"loop is the one this call runs on: pipeline.{call} blocks until {until}, so that "
            "loop could never answer the client (the call would hang); call it on a thread, "
            f"`await asyncio.to_thread(pipeline.{call}, config, client=client)`, or give a "
            "Client made without asynchronous=True",
            option="client",
            valid=["a distributed.Client whose event loop is not this thread's", "None"],
            suggestion=None,
        )
    if client.status in ("closing", "closed") or client.scheduler is None:
        leave = "start or join" if call == "run" else "plan for"
        raise ClusterError(
            f"the distributed.Client given to {said} is {client.status}: pass an open "
            f"one, or leave client out to {leave} the config's cluster "
            "(cluster.scheduler)",
            reason="closed",
            address="",
        )
    return client


def _on_this_threads_loop(client: Any) -> bool:
    """Whether ``client``'s event loop is the one running in this thread: an asynchronous
    client (``Client(asynchronous=True)``, awaited in a notebook's or ``asyncio.run``'s loop)
    called from that loop, which :func:`run`, blocking, would keep from ever answering it (the
    call hung without end)."""
    import asyncio

    try:
        running = asyncio.get_running_loop()
    except RuntimeError:  # no loop runs in this thread
        return False
    return getattr(getattr(client, "loop", None), "asyncio_loop", None) is running


#: What each function of the API takes, said where a call gives it what it does not take.
_TAKES = {
    "plan": "it takes the config, then client by name",
    "run": "it takes the config, then client and the run's options by name",
    "verify": "it takes the config, then all, samples and seed by name",
    "load_config": "it takes a YAML file's path and overrides (a mapping of dotted keys to "
    "values, such as {'output.overwrite': True})",
}


def _api(fn: Callable[..., T]) -> Callable[..., T]:
    """``fn``, a function of the API, refusing a call that its signature does not take (an
    unknown keyword, an argument too many, a missing or doubled one) with an
    :class:`OptionError`, one line naming the function, the argument and what it takes, in
    place of Python's bare ``TypeError``: ``pipeline.plan(cfg, client=client)`` had raised
    "plan() got an unexpected keyword argument 'client'" (:func:`_argument_problem`).

    A Ctrl-C that lands while the call imports a module (Dask, Zarr, xarray are imported on
    first use) is raised once the import is done, so that no package is left half imported
    for the process's later calls (:func:`~pipeline.running.waiting.imports_uninterrupted`);
    one that reaches :func:`run` outside its runner (the config read, its imports) is its
    :class:`Interrupted`, as the runner's own are: nothing written (``state``
    ``"untouched"``), or, after the run returned, the output complete. An S3 store reached
    with no credentials at all, where no step said so, is the command line's line too (a
    :class:`StoreError`, :func:`~pipeline.errors.no_credentials_error`), not botocore's bare
    ``NoCredentialsError``."""
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def checked(*args: Any, **kwargs: Any) -> T:
        problem = _argument_problem(fn.__name__, signature, args, kwargs)
        if problem is not None:  # raised outside bind's handler: no TypeError as its context
            raise problem
        done: list[T] = []
        try:
            # in the handlers' reach: a file of the user's may take the place of a module it
            # imports (threading.py)
            from pipeline.running.waiting import imports_uninterrupted

            with imports_uninterrupted():
                done.append(fn(*args, **kwargs))
        except KeyboardInterrupt as e:
            if isinstance(e, Interrupted):
                _say_as_api(e)
            if fn.__name__ != "run" or isinstance(e, Interrupted):
                raise
            where = str(getattr(done[0], "output", "")) if done else ""
            raise Interrupted("run", where, "complete" if done else "untouched") from None
        except Exception as e:
            from pipeline.errors import missing_credentials, no_credentials_error

            credentials = not isinstance(e, PipelineError) and missing_credentials(e)
            shadowed = _shadowed(fn.__name__, e, isinstance(e, PipelineError) or credentials)
            if shadowed is not None:
                _say_as_api(shadowed)
                raise shadowed from e
            if isinstance(e, PipelineError):
                _located(fn.__name__, signature, args, kwargs, e)
                _say_as_api(e)
                raise
            if not credentials:
                raise
            raise no_credentials_error() from e
        return done[0]

    return checked


def _located(
    name: str,
    signature: inspect.Signature,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    e: PipelineError,
) -> None:
    """``e``, a refusal of a key of the config given to the call of the API's function
    ``name`` (a :class:`ConfigError`'s or :class:`PlanError`'s ``key``:
    :func:`pipeline.config.loading.config_key`) that says not where that key is (the plan's,
    generate's), given where: for a YAML file's path, the key's file and line
    (:func:`pipeline.config.loading.locate`), as the command line gives it; for a mapping,
    ``the config mapping:`` before its line (:func:`~pipeline.config.loading.locate_in_mapping`),
    as a refusal of that mapping's parsing begins; for a :class:`Config` that
    :func:`load_config` read from a file, the key's file and line as that file was read
    (:func:`~pipeline.config.loading.locate_config`), as for the file's path. Any other
    :class:`Config` (made from keywords, a copy) says nothing of where it was written: its
    refusals stay as they are."""
    if not isinstance(e, (ConfigError, PlanError)) or "config" not in signature.parameters:
        return
    config = signature.bind(*args, **kwargs).arguments.get("config")
    given = isinstance(config, (str, os.PathLike, Mapping))
    if not given and "pipeline.config" not in sys.modules:  # no Config was made
        return
    from pipeline.config.loading import locate, locate_config, locate_in_mapping

    if isinstance(config, (str, os.PathLike)):
        locate(e, config)
    elif isinstance(config, Mapping):
        locate_in_mapping(e, config)
    else:
        locate_config(e, config)


def _shadowed(name: str, e: Exception, explained: bool) -> ShadowedModuleError | None:
    """The error that the API's function ``name`` raises in place of ``e`` where files of the
    user's take the place of modules it imports (a ``queue.py`` in the folder of the script,
    which Python puts first on ``sys.path``) and ``e`` comes from or through them: a
    :class:`ShadowedModuleError` with the command line's line, not the library's error nor a
    step's line that blamed the input for it. None where none does: an error such a file has
    no part in keeps its own (:func:`pipeline.shadowing.shadows_behind`, which looks only
    now), and one that nothing explains (``explained`` false: no PipelineError) a note, under
    its traceback, that they may be its cause (the script's own modules are in this process
    too: ``e`` is not taken for theirs)."""
    from pipeline.errors import cause
    from pipeline.shadowing import shadow_message, shadows_behind

    shadows, maybe, failing = shadows_behind(e, explained)
    if not shadows:
        return None
    if maybe:
        e.add_note(shadow_message(shadows, maybe, None, f"pipeline.{name}()"))
        return None
    failure = str(e) if failing is e and isinstance(e, PipelineError) else cause(failing)
    return ShadowedModuleError(
        shadow_message(shadows, maybe, failure, f"pipeline.{name}()"),
        files=[file for _, file, _ in shadows],
        modules=[module for module, _, _ in shadows],
    )


def _say_as_api(e: PipelineError | Interrupted) -> None:
    """``e``, raised through the API, its line (and an :class:`Interrupted`'s ``refused``)
    saying the run's commands as the call's options (:func:`~pipeline.errors.api_words`:
    ``pipeline.run(config, overwrite=True)`` where the command line says `run --overwrite`),
    and a refused ``--report`` or ``--summary-json`` file as the call's ``report=`` or
    ``summary_json=`` (its field ``option`` too); its type, other fields and traceback kept."""
    from pipeline.errors import api_words, name_shown

    if isinstance(e, Interrupted):
        e.refused = api_words(e.refused)
    e.args = (api_words(str(e)), *e.args[1:])
    flag = getattr(e, "option", None)
    if isinstance(e, ConfigError) and flag in _FLAG_OPTIONS:
        # a file the run writes at its end, refused as its command-line flag: said as the
        # call's option (``summary_json=``, not ``--summary-json``), field ``option`` too
        name, path, line = _FLAG_OPTIONS[flag], getattr(e, "path", None), str(e)
        said = flag if path is None else f"{flag} {name_shown(path)}"  # as the line says it
        if line.startswith(said):
            given = "" if path is None else f"={path!r}"
            e.args = (f"pipeline.run() option {name}{given}{line[len(said) :]}", *e.args[1:])
        e.__dict__["option"] = name  # a field, as PipelineError sets its data


#: The command line's flags that :func:`run` takes as keyword options, by those options' names.
_FLAG_OPTIONS = {"--report": "report", "--summary-json": "summary_json"}


def _argument_problem(
    name: str, signature: inspect.Signature, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> OptionError | None:
    """The OptionError for a call of the API's function ``name`` with ``args`` and ``kwargs``
    that ``signature`` does not take; None where it takes them. Fields: ``option`` (the
    argument at fault), ``valid`` (the names it takes), ``suggestion`` (the closest of them to
    an unknown one, or None). No value is said, nor a name that is no plain identifier."""
    try:
        signature.bind(*args, **kwargs)
        return None
    except TypeError:
        pass
    params = list(signature.parameters.values())
    by_position = [p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]
    valid = by_position + [p.name for p in params if p.kind is p.KEYWORD_ONLY]
    call, takes = f"pipeline.{name}()", _TAKES.get(name, f"it takes {', '.join(valid)}")

    def refused(message: str, option: str | None, suggestion: str | None = None) -> OptionError:
        return OptionError(message, option=option, valid=valid, suggestion=suggestion)

    for arg in by_position[: len(args)]:
        if arg in kwargs:
            return refused(f"{call} was given its {arg} twice, by position and by name", arg)
    if len(args) > len(by_position):
        n = len(by_position)
        return refused(
            f"{call} takes {_NUMBERS.get(n, n)} argument{'s' if n != 1 else ''} by position "
            f"({', '.join(by_position)}), not {len(args)}: {takes}",
            None,
        )
    for key in kwargs:  # a misspelt name before the argument it left out
        if key in valid or any(p.kind is p.VAR_KEYWORD for p in params):
            continue
        said = said_option(key)
        close = difflib.get_close_matches(key, valid, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return refused(
            f"{call} has no option {said!r}: {hint}{takes}{_elsewhere(name, key)}",
            said,
            close[0] if close else None,
        )
    for p in params[len(args) :]:
        if p.kind is p.POSITIONAL_OR_KEYWORD and p.default is p.empty and p.name not in kwargs:
            what = _ARGUMENT.get(p.name, p.name)
            unknown = [said_option(k) for k in kwargs if k not in valid]
            close = difflib.get_close_matches(p.name, unknown, n=1)  # run(confg=...)
            misspelt = f" (is {close[0]!r} it, misspelt?)" if close else ""
            return refused(f"{call} needs its {p.name}: {what}{misspelt}", p.name)
    return refused(f"{call}: these arguments do not fit it: {takes}", None)  # not reached


_NUMBERS = {1: "one", 2: "two"}

#: Each argument of the API's functions that a call may leave out, in words.
_ARGUMENT = {
    "config": "a YAML file's path, a mapping or a pipeline.Config",
    "path": "the YAML file's path",
}


def _elsewhere(name: str, option: str) -> str:
    """Where ``option``, which the API's function ``name`` does not take, is taken: words
    to follow its refusal ('' where no other function takes it)."""
    if name == "verify" and option == "client":
        return (
            " (verify runs no Dask: it reads both arrays with zarr-python and computes with "
            "NumPy in this process)"
        )
    if name == "run" or option not in ["client", *_run_options()]:
        return ""
    return f" ({option} is an option of pipeline.run())"


def _run_options() -> list[str]:
    """The keyword options of :func:`run` besides ``client``: the command line's."""
    from pipeline.running.runner import RunOptions

    return [f.name for f in dataclasses.fields(RunOptions) if f.name != "process_ends"]


@_api
def load_config(path: str | os.PathLike[str], overrides: Mapping[str, Any] | None = None) -> Config:
    """Read and validate a YAML config file into a :class:`Config` (a :class:`ConfigError`
    naming the file, line and key for an invalid one). ``overrides`` maps dotted keys
    (``"output.overwrite"``) to values set after reading, as the command line's flags do; a
    mapping given as a value merges into the file's at that key, at any depth, as
    ``dask.config.set`` does (``{"cluster": {"workers": 2}}`` keeps the file's other cluster
    keys), where any other value replaces. A ``path`` or ``overrides`` of the wrong kind is an
    :class:`OptionError`. The Config remembers the file as it was read: a refusal of one of
    its keys by :func:`run`, :func:`plan` or :func:`verify` begins ``c.yaml:LINE:``, as of the
    file's path (not for a key ``overrides`` set, nor for a copy of the Config)."""
    from pipeline.config import load_config as _load

    if isinstance(path, os.PathLike):
        path = os.fspath(path)
    data = _data_given(
        path, "pipeline.load_config() takes a YAML file's path", "path", ("a YAML file's path",)
    )
    if data is not None:  # not "a mapping is taken by pipeline.run" of a Dataset
        raise data
    if not isinstance(path, str):  # os.fspath's or pathlib's bare TypeError otherwise
        mapping = " (a mapping is taken by pipeline.run and pipeline.plan as it is)"
        raise OptionError(
            f"pipeline.load_config() takes a YAML file's path, not {_kind(path)}"
            f"{mapping if isinstance(path, Mapping) else ''}",
            option="path",
            valid=["a YAML file's path"],
            suggestion=None,
        )
    if isinstance(path, str) and _yaml_text(path):
        raise OptionError(
            f"the path given to pipeline.load_config() is YAML text ({_lines(path)}): pass the "
            "file's path, or the text as a mapping (yaml.safe_load(text)) to pipeline.run or "
            "pipeline.plan (the text is not said here: it may hold credentials)",
            option="path",
            valid=["a YAML file's path"],
            suggestion=None,
        )
    if overrides is not None and not (
        isinstance(overrides, Mapping) and all(isinstance(k, str) for k in overrides)
    ):
        raise OptionError(
            "pipeline.load_config() option overrides takes a mapping of dotted keys to values "
            f"(such as {{'output.overwrite': True}}), not {_kind(overrides)}"
            f"{' with keys that are not all strings' if isinstance(overrides, Mapping) else ''}",
            option="overrides",
            valid=["a mapping of dotted keys to values", "None"],
            suggestion=None,
        )
    return _load(path, overrides)


@_api
def plan(config: ConfigLike, *, client: Any = None) -> Plan:
    """The resolved :class:`~pipeline.planning.plan.Plan` of the run that :func:`run` makes of
    the same arguments (no cluster is started, nothing is computed or written). ``config``: as
    :func:`run` takes it. ``client``: a ``distributed.Client``, as :func:`run` takes it: the
    plan is for its workers, as ``run(config, client=client)`` plans it (their number and
    threads, their memory limits, their GPUs and free device memory, how many share a GPU,
    as each worker reports them, not this machine's; it waits, up to ``cluster.timeout``, for
    a running worker, and is left open). Without one, the config's cluster: this machine's
    local cluster for ``cluster.scheduler: local``, else the scheduler it names, joined for
    the plan only, as ``pipeline plan`` does.

    What ``pipeline plan`` prints, as fields: ``p.input`` and ``p.output``, each an
    :class:`~pipeline.store.arrays.ArrayInfo` (``shape``, a tuple of ints; ``dtype``, a NumPy
    dtype: the input's as stored, the output's the last stage's, wider than the input's where
    an integer chain is widened, float where a packed variable is decoded; ``chunk``);
    ``p.chain``, the stages in order, each with ``in_dtype``, ``out_dtype`` and
    ``describe()`` (the plan's ``stages`` row: ``multiply(factor=3) int8 -> int16``);
    ``p.block`` (a Dask task's shape) and ``p.n_blocks`` (their number); ``p.memory`` (bytes
    per task and per worker, against the budgets); ``p.backend`` (``"cpu"`` or ``"gpu"``);
    ``p.notes``. The table's rows themselves, (label, text) pairs:
    ``pipeline.planning.describe(p)``.

    Raises what ``pipeline plan`` refuses before its table, as :func:`run` raises it:
    :class:`ConfigError` (the config, either store's ``storage_options``), :class:`InputError`
    (an input missing, damaged, of a dtype the stages do not compute on, or stored packed
    without ``input.mask_and_scale``), :class:`PlanError` (a scalar its dtype cannot hold, an
    integer chain 64 bits cannot hold, a block or a task's memory that does not fit),
    :class:`OptionError` (a config or client of the wrong kind), :class:`ClusterError` (a
    closed client; a cluster with no running worker within ``cluster.timeout``, or whose
    scheduler is lost); and, as ``pipeline plan`` judges what
    is at the output, the :class:`OutputError` of ``run`` where no call of it writes there
    (the output in the input's store or holding it, under a file or an array, a file itself,
    in a folder that cannot be written; or what is there refused by a plain call, by
    ``overwrite=True`` and by ``resume=True`` alike), in the words ``run`` raises it, before
    anything is written: a config that ``plan`` returns for is one ``run`` takes, with the
    option the plan names. ``p.output_now`` says what ``run`` does at the output as it is
    (creates it; an output there: the call that replaces or resumes it). Nothing is written
    (no lock, no output folder; an object store's output is found writable, as ``pipeline
    plan`` finds it, by a probe object written and deleted at once) and no cluster started.

    ``repr(p)`` is one line (``<Plan in.zarr (30, 70) int8 -> out.zarr (30, 70)
    int16: ...>``); ``print(p)``, and a notebook's display of it, the table ``pipeline plan``
    prints."""
    from pipeline.errors import api_words, as_configured
    from pipeline.running.output import output_now_refused

    client = _client(client, "plan")
    cfg = _config(config)
    if client is not None:
        from pipeline.running.runner import plan_for_client

        p = plan_for_client(cfg, client)
    else:  # this machine's, or the cluster the config joins (`pipeline plan`'s own)
        from argparse import Namespace

        from pipeline.cli import _plan_of

        p = _plan_of(Namespace(), cfg)
    now, refused = output_now_refused(p)  # `pipeline plan`'s own judgement (cli._plan)
    overwrite = bool(cfg.output.overwrite)
    if refused is not None:  # in run's words (`run`'s as_configured; _api: the call's words)
        refused.args = (as_configured(str(refused), overwrite), *refused.args[1:])
        raise refused
    from pipeline.planning.rows import describe
    from pipeline.reporting.tables import table_text

    now = api_words(as_configured(now, overwrite))
    # its notes too, in the call's words (h72a: "`run` generates it first")
    p = dataclasses.replace(p, notes=tuple(api_words(n) for n in p.notes))
    rows = describe(p)
    rows.insert(2, ("output now", now))  # where `pipeline plan` puts it
    shown = table_text(rows, "plan (nothing computed, nothing written)")
    return dataclasses.replace(p, output_now=now, shown=shown)


@_api
def run(config: ConfigLike, *, client: Any = None, **options: Any) -> Summary:
    """Run the pipeline a config describes, as ``pipeline run`` does; its
    :class:`~pipeline.reporting.summary.Summary` (``status``, ``bytes_in``, ``seconds``...),
    whose ``output`` is what to open the result with: a Dataset output's group
    (``xr.open_zarr(summary.output)``), else the array (``zarr.open_array(summary.output)``).
    The output has the input's shape, and the dtype of the last stage, as :func:`plan` gives it
    (``plan(config).output.dtype``: an integer chain that could overflow is widened, a packed
    variable decoded to floats).

    ``config``: a YAML file's path, the same content as a mapping, or a :class:`Config`.
    ``client``: a ``distributed.Client`` to run on (left open; the plan is sized for its
    workers as each reports itself: their threads and memory limits, their GPUs and free
    device memory, cores, how many share a GPU; ``plan(config, client=client)`` shows that
    plan); without one, the config's cluster is started
    (and closed) or joined, as on the command line. ``options``: the command line's, as
    :class:`~pipeline.running.runner.RunOptions` names them: ``overwrite`` (True: replace an
    output there; False: never replace one, whatever the config's ``output.overwrite`` says;
    None or left out: as ``output.overwrite`` says, as a command line without
    ``--overwrite``), ``resume`` (True: finish an output a stopped run left; False or left out:
    not, the config having no say in it), ``report`` (an HTML file; None or left out: none),
    ``summary_json`` (a JSON file; None or left out: none), ``progress`` (``"none"`` by
    default here; ``"bar"``, ``"plain"``, ``"auto"``), ``interval`` (seconds between plain
    progress lines, at least 0.01). An option given wins over the config, False too: only
    None, or leaving it out, leaves it to the config. Their bools and numbers may be NumPy's.
    ``resume=True`` of a complete output computes nothing: it writes again only what its
    metadata holds in a stale or earlier form, its consolidated copies and an earlier
    version's run record (a mapping, which xarray's ``to_netcdf`` refuses) as JSON text,
    ``summary.status`` saying which (``"complete (run record written again)"``;
    ``"complete (nothing to do)"``).

    Raises the :class:`PipelineError` the command line prints, with the same one-line
    message, its commands said as this call's options (`run --overwrite` as
    ``pipeline.run(config, overwrite=True)``, :func:`~pipeline.errors.api_words`):
    :class:`ConfigError`, :class:`InputError`, :class:`OutputError`, :class:`PlanError`, ...
    (their fields as attributes); :class:`OptionError` (a TypeError and a ConfigError naming
    the valid options) for an unknown option; :class:`OptionError` too for a
    ``config`` or ``client`` of the wrong kind (a closed client: :class:`ClusterError`);
    :class:`Interrupted`, a KeyboardInterrupt, after Ctrl-C (the output stays resumable:
    ``resume=True`` finishes it); a :class:`StoreError` for a store's answer (an HTTP 401,
    500) that reached no step that names it, in place of the library's error::

        from distributed import Client
        import pipeline

        if __name__ == "__main__":  # a script: Dask's worker processes import it again
            with Client(n_workers=2) as client:
                summary = pipeline.run("my.yaml", client=client, overwrite=True)
    """
    from pipeline.running.runner import RunOptions
    from pipeline.running.runner import run as _run

    _check_options(options, ["client", *_run_options()])
    from pipeline.errors import store_answer
    from pipeline.store.location import config_stores

    opts = RunOptions(**{"progress": "none", **_check_values(options)})
    client = _client(client)
    answer = None
    cfg = _config(config)
    if isinstance(config, (str, os.PathLike)):  # the config file is no file to write over
        from pipeline.cli import check_not_the_config

        check_not_the_config(config, {"--report": opts.report, "--summary-json": opts.summary_json})
    # its commands as this config makes them (a plain run overwrites), unless the call said no
    # to that (overwrite=False: its lines name overwrite=True, not the plain call)
    configured = bool(cfg.output.overwrite) and opts.overwrite is not False
    try:
        summary = _run(cfg, opts, client=client)
    except PipelineError as e:
        from pipeline.errors import as_configured

        # overwrite=False: the refusal says the output is kept, as the call asked, itself
        e.args = (as_configured(str(e), configured), *e.args[1:])
        raise
    except Interrupted as e:  # so is its line (:func:`_interrupted_as_configured`)
        _interrupted_as_configured(e, configured)
        raise
    except Exception as e:
        answer = store_answer(e, config_stores(cfg))  # no step named it: the CLI's line
        if answer is None:
            raise
    if answer is not None:  # raised outside the handler: no unpicklable __context__
        raise answer
    from pipeline.errors import api_words

    summary.notes = [api_words(n) for n in summary.notes]  # the plan's, in the call's words
    if opts.summary_json:
        # ~/s.json as the checks before the run took it (the CLI's write too)
        with open(os.path.expanduser(opts.summary_json), "w") as f:
            f.write(summary.to_json())
    return summary


@_api
def verify(
    config: ConfigLike, *, all: bool = False, samples: int | None = None, seed: int = 0
) -> VerifyResult:
    """Compare the output of ``config`` with the input, as ``pipeline verify`` does; its
    :class:`~pipeline.reporting.verify.VerifyResult`, the one the command line prints.

    What is compared: blocks of the output (the run's blocks as its record says, else its
    shards or chunks), ``samples`` of them drawn at random by ``seed`` (the command line's
    ``--samples``, ``--seed``: the same seed compares the same blocks; 8 where ``samples`` is
    None, the default), or every one with ``all=True`` (``--all``; ``samples`` given with it
    contradicts it, as ``verify --all --samples N`` does: refused), each against NumPy's chain
    of the config's stages over the input's block, both arrays read with zarr-python (not the
    pipeline's own reader), bit for bit (a zero's sign and a NaN's payload count:
    :func:`pipeline.ops.bits.difference`); and what ``verify`` checks besides (the output's
    state and record, its files, metadata, consolidated copies and coordinates, the input
    unchanged since the run). Nothing is written (but for the time of a local output's
    ``zarr.json``, moved past its unit files touched since the run where every block was
    compared and each matched: ``files_marked``), and no cluster started: the blocks are read
    and computed in this process, on threads (a config that joins a scheduler joins it only for
    the plan whose command a refusal names, as the command line does).

    The result: ``ok`` (every check passed: the command line's exit status 0), ``status`` (the
    output's: ``"complete"``, ``"incomplete"``, ``"none"`` where it holds no record of a run),
    ``checked`` of ``total`` blocks, ``mismatched`` (the indices, in the grid of blocks, of
    those that differ from NumPy's), ``first_difference`` (in the first of them: how many
    elements differ, and the first by its index in the array, with both values),
    ``mismatched_units`` (the output's files that hold it, which the command line's line names
    with the command that writes them again), and a field
    for each other check (``files_differ``, ``metadata_differs``, ``input_changed``, ...);
    ``advice``, what to do about the first failure (None where ``ok``), as the command line's
    line ends, its commands said as :func:`run`'s options (```pipeline.run(config,
    resume=True)` finishes it``).

    A mismatch is no exception: ``result.ok`` is False and ``result.mismatched`` names the
    blocks, as ``numpy.array_equal`` or xarray's ``Dataset.identical`` answer a comparison
    with a value, and as the command line prints the table and exits 1; a script tests
    ``if not result.ok`` (or ``assert result.ok, result``). An exception is raised where
    nothing could be compared, the command line's ``error:`` lines that print no table, its
    commands said as :func:`run`'s options (`run --overwrite` as
    ``pipeline.run(config, overwrite=True)``): :class:`OutputError` for no output (``status``
    ``"absent"``), the remains of a stopped run (``"remains"``), one of another shape or dtype
    (``shape``, ``dtype``, ``expected_shape``, ``expected_dtype``) or a damaged chunk of it
    (``region``, ``key``); :class:`InputError` for a missing, unfinished or damaged input;
    :class:`ConfigError` for an invalid config; :class:`StoreError` for a store that would not
    answer; :class:`OptionError` (a TypeError) for an option it does not take or one of the
    wrong kind (``all`` not a bool, ``samples`` not None nor a whole number of at least 1,
    ``seed`` not a whole number), and for ``all=True`` with ``samples`` given (every block, and
    that many at random, contradict each other: ``all`` had won, silently)."""
    from argparse import Namespace

    from pipeline.cli import SAMPLES, verified

    if not _is_bool(all):
        raise _wrong_kind("all", all, "True or False")
    blocks, start = SAMPLES if samples is None else _whole(samples), _whole(seed)
    if blocks is None or blocks < 1:
        raise _wrong_kind("samples", samples, "a whole number of blocks, at least 1, or None")
    if start is None:
        raise _wrong_kind("seed", seed, "a whole number")
    if all and samples is not None:  # all had won, silently, as --all had over --samples
        raise OptionError(
            f"pipeline.verify() options all=True (every block) and samples={blocks} (that many "
            "random blocks) contradict each other: pass one of them",
            option="samples",
            valid=["all=True or samples=N, not both"],
            suggestion=None,
        )
    from pipeline.errors import store_answer
    from pipeline.store.location import config_stores

    cfg = _config(config)
    # the command line's own call, given as its flags are (its refusals' words: verified)
    # ``config`` where it says where a key is: a refusal its advice quotes says so too
    given = config if isinstance(config, (str, os.PathLike, Mapping)) else None
    args = Namespace(all=bool(all), samples=blocks, seed=start, verbose=0, config=given)
    answer = None
    try:
        res = verified(args, cfg)
    except Exception as e:
        answer = store_answer(e, config_stores(cfg))  # no step named it: the CLI's line
        if answer is None:
            raise
    if answer is None:  # its advice in this API's words, as its errors say theirs
        from pipeline.errors import api_words

        return dataclasses.replace(
            res,
            advice=api_words(res.advice) if res.advice else None,
            input_notes=tuple(api_words(n) for n in res.input_notes),
        )
    raise answer  # outside the handler, as run raises it


def _interrupted_as_configured(e: Interrupted, overwrite: bool) -> None:
    """``e``, a run of a config whose ``output.overwrite`` is ``overwrite`` stopped by
    Ctrl-C, its words as they hold for that config, as the command line's are
    (:func:`pipeline.errors.as_configured`): ``run``'s refusal it gives as its ``refused``;
    and where it says that ``resume=True`` finishes the output, that a plain call of a config
    with ``output.overwrite: true`` starts over."""
    if not overwrite or e.what != "run":
        return
    from pipeline.errors import as_configured

    if e.refused:
        e.refused = as_configured(e.refused, overwrite)
        e.args = (as_configured(str(e), overwrite), *e.args[1:])
    elif e.state == "incomplete":
        e.args = (
            f"{e}; a plain `pipeline.run(config)` (output.overwrite: true) starts over",
            *e.args[1:],
        )


def _wrong_kind(name: str, value: Any, what: str) -> OptionError:
    """The OptionError for :func:`verify`'s option ``name`` given ``value``, which it does not
    take: it takes ``what``."""
    return OptionError(
        f"pipeline.verify() option {name}={value!r}: it takes {what}",
        option=name,
        valid=[what],
        suggestion=None,
    )


def _whole(v: Any) -> int | None:
    """``v`` as an int where it is a whole number (Python's or NumPy's, not a bool); else
    None."""
    if not isinstance(v, numbers.Integral) or _is_bool(v):
        return None
    return int(v)


def _check_values(options: Mapping[str, Any]) -> dict[str, Any]:
    """Refuse an option of :func:`run` whose value is of the wrong kind (OptionError: fields
    ``option``, ``valid``, the values it takes): ``overwrite="false"`` would otherwise replace
    an output, as any non-empty string is true. NumPy's bools and numbers (what a caller holds
    after computing with NumPy) are taken as Python's; returns the options with them as
    Python's ``bool`` and ``float``; ``overwrite=None`` stays None (left to the config's
    ``output.overwrite``). ``overwrite`` and ``resume`` together are refused too."""
    from pipeline.reporting.progress import INTERVAL_RULE

    kinds: dict[str, tuple[str, Callable[[Any], bool]]] = {
        "overwrite": ("True, False or None", lambda v: v is None or _is_bool(v)),
        "resume": ("True or False", _is_bool),
        "progress": ('"none", "plain", "bar" or "auto"', lambda v: v in _PROGRESS),
        "interval": (INTERVAL_RULE, _is_interval),
        "report": ("a file path or None", _is_path),
        "summary_json": ("a file path or None", _is_path),
    }
    for name, value in options.items():
        if name in kinds and not kinds[name][1](value):
            what = kinds[name][0]
            raise OptionError(
                f"pipeline.run() option {name}={value!r}: it takes {what}",
                option=name,
                valid=[what],
                suggestion=None,
            )
    as_python = {"overwrite": bool, "resume": bool, "interval": float}
    checked = {
        k: as_python[k](v) if k in as_python and v is not None else v for k, v in options.items()
    }
    if checked.get("overwrite") and checked.get("resume"):  # overwrite had won, silently
        raise OptionError(
            "pipeline.run() options overwrite=True and resume=True contradict each other: "
            "overwrite starts over (the finished blocks are thrown away), resume keeps them; "
            "pass one of them",
            option="resume",
            valid=["overwrite=True or resume=True, not both"],
            suggestion=None,
        )
    return checked


_PROGRESS = ("none", "plain", "bar", "auto")


def _is_bool(v: Any) -> bool:
    """Python's bool, or NumPy's (``np.True_``, whose type NumPy 2 names "bool", not
    "bool_"); NumPy is looked up only where the caller has imported it."""
    np = sys.modules.get("numpy")
    return isinstance(v, bool) or (np is not None and isinstance(v, np.bool_))


def _is_interval(v: Any) -> bool:
    """A real number (Python's or NumPy's, not a bool) that is an interval a run takes."""
    from pipeline.reporting.progress import is_interval

    return (seconds := _seconds(v)) is not None and is_interval(seconds)


def _seconds(v: Any) -> float | None:
    """``v`` as a float where it is a real number (Python's or NumPy's, not a bool); None
    where it is not, or too large for a float."""
    if not isinstance(v, numbers.Real) or _is_bool(v):
        return None
    try:
        return float(v)
    except OverflowError:
        return None


def _is_path(v: Any) -> bool:
    return v is None or isinstance(v, (str, os.PathLike))


def _check_options(options: Mapping[str, Any], valid: list[str]) -> None:
    """Refuse an unknown keyword option of :func:`run` (OptionError: fields ``option``,
    ``valid``, ``suggestion``), naming the valid ones and the closest."""
    for name in options:
        if name in valid:
            continue
        close = difflib.get_close_matches(name, valid, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise OptionError(
            f"pipeline.run() has no option {name!r}: {hint}the options are {', '.join(valid)}",
            option=name,
            valid=valid,
            suggestion=close[0] if close else None,
        )
