"""pipeline: push Zarr arrays larger than any one GPU through a chain of array stages.

The public API: :func:`load_config` and :class:`Config`, :func:`plan` (what a run would do) and
:func:`run`, the error types, ``__version__``. ``pipeline/DESIGN.md`` says how the pieces fit
together; the subpackages follow the data flow (config, ops, store, devices, planning,
reporting, running).

Importing the package is light (the config's models, no Dask, no Zarr): the modules that run
things are imported inside the functions that need them.
"""

from __future__ import annotations

import dataclasses
import difflib
import numbers
import os
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeAlias

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
    StoreError,
)

if TYPE_CHECKING:
    from pipeline.config import Config, load_config
    from pipeline.planning.plan import Plan
    from pipeline.reporting.summary import Summary

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
    "StoreError",
    "__version__",
    "load_config",
    "plan",
    "run",
]


#: What :func:`run` and :func:`plan` take as a config: a YAML file's path, the same as a
#: mapping, or a :class:`Config`.
ConfigLike: TypeAlias = "str | os.PathLike[str] | Mapping[str, Any] | Config"


def __getattr__(name: str) -> Any:
    """``Config`` and ``load_config``, imported on first use: the config's models load pydantic
    and the stage registry (NumPy), which ``pipeline --help`` and the Dask worker processes
    (they import the command line's module as their ``__main__``) do not need."""
    if name in ("Config", "load_config"):
        from pipeline import config

        value = getattr(config, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _config(config: ConfigLike) -> Config:
    """``config`` as a :class:`Config`; ConfigError naming the key for an invalid one."""
    from pipeline.config import Config, load_config, parse_config

    if isinstance(config, Config):
        return config
    if isinstance(config, Mapping):
        return parse_config(dict(config), "the config mapping")
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
    return "None" if value is None else f"a {type(value).__module__}.{type(value).__qualname__}"


def _client(client: Any) -> Any:
    """``client`` as :func:`run` takes it: None, or an open ``distributed.Client``. Anything
    else is an :class:`OptionError` (a TypeError) saying so, and that a scheduler's address
    goes in the config's ``cluster.scheduler`` (an address string failed on its missing
    ``.scheduler``); a closed client is a :class:`ClusterError` (reason 'closed')."""
    if client is None:
        return None
    from distributed import Client

    if not isinstance(client, Client):
        address = " (a scheduler's address goes in the config's cluster.scheduler)"
        raise OptionError(
            f"pipeline.run() option client takes a distributed.Client, not {_kind(client)}"
            f"{address if isinstance(client, str) else ''}; or leave it out to start or join "
            "the config's cluster (cluster.scheduler)",
            option="client",
            valid=["a distributed.Client", "None"],
            suggestion=None,
        )
    if client.status in ("closing", "closed") or client.scheduler is None:
        raise ClusterError(
            f"the distributed.Client given to pipeline.run() is {client.status}: pass an open "
            "one, or leave client out to start or join the config's cluster "
            "(cluster.scheduler)",
            reason="closed",
            address="",
        )
    return client


def plan(config: ConfigLike) -> Plan:
    """The resolved :class:`~pipeline.planning.plan.Plan` of a run on this machine (no
    cluster is started, nothing is written). ``config``: as :func:`run` takes it."""
    from pipeline.planning import plan_here

    return plan_here(_config(config))


def run(config: ConfigLike, *, client: Any = None, **options: Any) -> Summary:
    """Run the pipeline a config describes, as ``pipeline run`` does; its
    :class:`~pipeline.reporting.summary.Summary` (``status``, ``bytes_in``, ``seconds``...).

    ``config``: a YAML file's path, the same content as a mapping, or a :class:`Config`.
    ``client``: a ``distributed.Client`` to run on (left open; the plan is sized for its
    workers and threads); without one, the config's cluster is started (and closed) or
    joined, as on the command line. ``options``: the command line's, as
    :class:`~pipeline.running.runner.RunOptions` names them: ``overwrite``, ``resume``,
    ``report`` (an HTML file), ``summary_json`` (a JSON file), ``progress`` (``"none"`` by
    default here; ``"bar"``, ``"plain"``, ``"auto"``), ``interval`` (seconds between plain
    progress lines, at least 0.01). Their bools and numbers may be NumPy's.

    Raises the :class:`PipelineError` the command line prints, with the same one-line
    message: :class:`ConfigError`, :class:`InputError`, :class:`OutputError`,
    :class:`PlanError`, ... (their fields as attributes); :class:`OptionError` (a TypeError
    and a ConfigError naming the valid options) for an unknown option;
    :class:`OptionError` too for a
    ``config`` or ``client`` of the wrong kind (a closed client: :class:`ClusterError`);
    :class:`Interrupted`, a KeyboardInterrupt, after Ctrl-C (the output stays resumable:
    ``resume=True`` finishes it); a :class:`StoreError` for a store's answer (an HTTP 401,
    500) that reached no step that names it, in place of the library's error::

        from distributed import Client
        import pipeline

        with Client(n_workers=2) as client:
            summary = pipeline.run("my.yaml", client=client, overwrite=True)
    """
    from pipeline.running.runner import RunOptions
    from pipeline.running.runner import run as _run

    _check_options(
        options, [f.name for f in dataclasses.fields(RunOptions) if f.name != "process_ends"]
    )
    from pipeline.errors import store_answer
    from pipeline.store.location import config_stores

    opts = RunOptions(**{"progress": "none", **_check_values(options)})
    client = _client(client)
    answer = None
    cfg = _config(config)
    try:
        summary = _run(cfg, opts, client=client)
    except Exception as e:
        answer = store_answer(e, config_stores(cfg))  # no step named it: the CLI's line
        if answer is None:
            raise
    if answer is not None:  # raised outside the handler: no unpicklable __context__
        raise answer
    if opts.summary_json:
        with open(opts.summary_json, "w") as f:
            f.write(summary.to_json())
    return summary


def _check_values(options: Mapping[str, Any]) -> dict[str, Any]:
    """Refuse an option of :func:`run` whose value is of the wrong kind (OptionError: fields
    ``option``, ``valid``, the values it takes): ``overwrite="false"`` would otherwise replace
    an output, as any non-empty string is true. NumPy's bools and numbers (what a caller holds
    after computing with NumPy) are taken as Python's; returns the options with them as
    Python's ``bool`` and ``float``. ``overwrite`` and ``resume`` together are refused too."""
    from pipeline.reporting.progress import INTERVAL_RULE

    kinds: dict[str, tuple[str, Callable[[Any], bool]]] = {
        "overwrite": ("True or False", _is_bool),
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
    checked = {k: as_python[k](v) if k in as_python else v for k, v in options.items()}
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
