"""The command line: ``python -m pipeline {run,generate,verify,plan,info,schema}``.

Every known failure prints one line (``error: ...``) and exits 1; ``--debug`` shows the
traceback. Ctrl-C stops the run, closes the cluster, leaves the output resumable, and the
program dies of SIGINT as Python does (a shell's ``$?`` 130; a script running it stops too).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import difflib
import gc
import logging
import os
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, NoReturn

from pipeline._version import __version__
from pipeline.errors import (
    MAKE_CONFIG_VARIABLE,
    MAKE_PYTHON_VARIABLE,
    Interrupted,
    PipelineError,
    as_configured,
    cause,
    hide_url_secrets,
    make_words,
    name_shown,
    names_shown,
    shell_word,
    single_line,
    some_said,
    wrong_library,
)
from pipeline.running import waiting

if TYPE_CHECKING:
    from pipeline.reporting.verify import VerifyResult

log = logging.getLogger("pipeline")


#: How many random blocks ``verify`` compares without ``--samples`` or ``--all``.
SAMPLES = 8

#: What -v and -q do, said alike before the command and after it (``pipeline run CFG -q``).
VERBOSE_HELP = "more log output: -v the plan and debug lines, -vv also Dask's own logs"
QUIET_HELP = "only errors, warnings, notes and the summary (no progress)"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pipeline",
        description="Push Zarr arrays through a chain of stages on every GPU (or CPU) with Dask.",
    )
    p.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help=VERBOSE_HELP,
    )
    p.add_argument("-q", "--quiet", action="store_true", help=QUIET_HELP)
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.add_argument("--version", action="version", version=f"pipeline {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def subcommand(name: str, help: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=help)
        sp.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks"
        )
        # -v and -q also after the command (`pipeline run CONFIG -q`), on every command, as
        # README says (`pipeline info -v` had been refused: "unrecognized arguments")
        sp.add_argument(
            "-v", "--verbose", action="count", default=argparse.SUPPRESS, help=VERBOSE_HELP
        )
        sp.add_argument(
            "-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help=QUIET_HELP
        )
        return sp

    def with_config(
        name: str,
        help: str,
        scheduler: str = "run on the workers of an existing Dask scheduler (tcp://host:8786)",
    ) -> argparse.ArgumentParser:
        sp = subcommand(name, help)
        sp.add_argument("config", help="the run's YAML config file")
        sp.add_argument("--scheduler", help=scheduler)
        return sp

    r = with_config("run", "run the pipeline a config describes")
    # starting over and keeping contradict, and so do --overwrite and --no-overwrite: refused
    # by _contradiction (--no-overwrite with --resume is taken: a resume replaces nothing)
    r.add_argument(
        "--overwrite",
        action=_Overwrite,
        default=None,  # None: as the config's output.overwrite says
        help="replace an existing output (--no-overwrite: never, whatever the config's "
        "output.overwrite says; neither: as it says)",
    )
    r.add_argument(
        "--resume",
        action="store_true",
        help="finish an interrupted run, skipping blocks already written",
    )
    r.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan and what this run (with its flags) would do, then exit as it would "
        "be refused (1) or not (0); nothing is written",
    )
    r.add_argument("--report", metavar="FILE.html", help="save Dask's performance report")
    r.add_argument("--summary-json", metavar="FILE", help="write the run summary as JSON")
    r.add_argument(
        "--progress",
        choices=("auto", "bar", "plain", "none"),
        default="auto",
        help="progress display (auto: a bar on a terminal, plain lines otherwise)",
    )
    g = with_config("generate", "create the input a config describes (input.generate)")
    g.add_argument(
        "--progress",
        choices=("auto", "bar", "plain", "none"),
        default="auto",
        help="progress display (auto: a bar on a terminal, plain lines otherwise)",
    )
    for command in (r, g):  # helper-40: generate had no --progress-interval
        command.add_argument(
            "--progress-interval",
            type=_interval_seconds,
            default=5.0,
            metavar="SECONDS",
            help="seconds between plain progress lines",
        )
    # verify computes in its own process: the scheduler is joined for no comparison (new-user
    # trial: its help had said "join an existing Dask scheduler")
    v = with_config(
        "verify",
        "recompute blocks with NumPy and compare with the output",
        "the Dask scheduler (tcp://host:8786) the run joined: blocks are still compared in "
        "this process; it is joined only to plan the command of run that a refusal names",
    )
    v.add_argument("--all", action="store_true", help="check every block")
    v.add_argument(
        "--samples",
        type=_at_least_one,
        default=None,  # 8 (SAMPLES); None: not given, which --all contradicts (_contradiction)
        help=f"random blocks to check (default {SAMPLES})",
    )
    v.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the block sample (the same seed compares the same blocks; default 0)",
    )
    with_config(
        "plan",
        "print what a run would do, without computing",
        "plan for the workers of an existing Dask scheduler (tcp://host:8786), joined for the "
        "plan only",
    )
    subcommand("info", "GPUs, driver, libraries, and what backend auto would pick")
    sch = subcommand("schema", "print the config reference (Markdown)")
    sch.add_argument(
        "--update",
        metavar="FILE",
        help="instead, rewrite the reference between the schema markers in FILE (README.md)",
    )
    return p


class _Overwrite(argparse.BooleanOptionalAction):
    """``run --overwrite`` (True) and ``--no-overwrite`` (False; neither: None, as the config's
    ``output.overwrite`` says), remembering each form given (``args.overwrite_flags``), so
    that both together are refused (:func:`_contradiction`), not the last taken silently."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        super().__call__(parser, namespace, values, option_string)
        seen = getattr(namespace, "overwrite_flags", [])
        if option_string is not None and option_string not in seen:
            namespace.overwrite_flags = [*seen, option_string]


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The parser of each command of ``parser`` (:func:`_parser`), by its name."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _unrecognized(parser: argparse.ArgumentParser, command: str, unknown: list[str]) -> NoReturn:
    """Refuse a command line with arguments its command does not take, as argparse refuses
    them (its usage, then one line; status 2), but with the command's own usage and the fix:
    the option meant (``--overwite``: ``--overwrite``), the command that takes one given to
    another (``plan --overwrite``: ``run``'s), a command's option given before the command,
    and ``--help``. argparse's ``parse_args`` had shown the usage of ``pipeline`` itself and
    the bare "unrecognized arguments: --overwite", naming neither the command nor a fix."""
    commands = _commands(parser)
    own = commands[command]
    hint = ""
    options = [a for a in unknown if a.startswith("-") and len(a) > 1]
    if options:
        name = options[0].split("=", 1)[0]
        meant = {c: _option_named(sp, name) for c, sp in commands.items()}
        takes = [c for c, full in meant.items() if full is not None]
        mine = sorted(o for o in own._option_string_actions if o.startswith("--"))
        close = difflib.get_close_matches(name, mine, n=1)
        if command in takes:
            hint = f" ({name} goes after the command: pipeline {command} ... {name})"
        elif takes:
            others = " and ".join(f"`pipeline {c}`" for c in takes)
            full = meant[takes[0]]
            said = name if full == name else f"{name} ({full})"
            hint = f" ({said} is an option of {others}, not of `pipeline {command}`)"
        elif close:
            hint = f" (did you mean {close[0]}?)"
    own.error(
        f"unrecognized arguments: {' '.join(unknown)}{hint}; "
        f"`pipeline {command} --help` lists what it takes"
    )


def _option_named(parser: argparse.ArgumentParser, name: str) -> str | None:
    """The option of ``parser`` that ``name`` names as argparse reads it: the option itself, or
    the one long option it abbreviates (``--sample``: ``--samples``); None where it names none
    (or several). So ``run --sample 2`` is said as verify's ``--samples``, not ``--help``'s
    close match."""
    if name in parser._option_string_actions:
        return name
    if not name.startswith("--"):
        return None
    longer = [o for o in parser._option_string_actions if o.startswith(name)]
    return longer[0] if len(longer) == 1 else None


#: The command-line options that set a key of the config, as :func:`_load` gives them to
#: ``load_config`` (its overrides), each with the key it sets.
_OPTION_KEYS = {"--scheduler": "cluster.scheduler"}


def _load(args: argparse.Namespace) -> Any:
    """The command's config, loaded with the keys its options set (:data:`_OPTION_KEYS`). A
    value an option gave that the config refuses (``--scheduler $'tcp://h:8786\n'``) is said
    as the option's (``--scheduler: ...``, ``option`` naming it, ``load_config``'s
    ``options``): it had been said as an override of ``load_config`` 'given with c.yaml, not
    read from it', which the command line has none of. An option given empty
    (``--scheduler ''``) is given, and refused as the config refuses the key's empty value:
    it had been dropped, and the config's value (a local cluster) taken without a word."""
    from pipeline.config import load_config

    overrides = {}
    for option, key in _OPTION_KEYS.items():
        value = getattr(args, option.removeprefix("--").replace("-", "_"), None)
        if value is not None:
            overrides[key] = value
    return load_config(args.config, overrides, options={k: o for o, k in _OPTION_KEYS.items()})


#: Loggers of Dask's machinery in this process (its client, its local scheduler and nannies,
#: their event loop), with their children.
DRIVER_LOGGERS = ("distributed", "tornado")


def _setup_logging(args: argparse.Namespace) -> None:
    """The pipeline's lines on stderr: info by default, debug with -v, warnings (notes among
    them) and errors with -q, which drops the progress and what the command is doing, not
    what the user must hear (h74b: `run -q` had dropped every note of the plan, a folder at
    an input chunk's key among them, that `verify -q` printed). Dask's own (scheduler,
    workers) stay at errors unless -vv."""
    level = logging.WARNING if args.quiet else (logging.DEBUG if args.verbose else logging.INFO)
    from pipeline.reporting.lines import Prefixed

    class Said(Prefixed):  # its commands as make takes them, where make ran it (_said)
        def format(self, record: logging.LogRecord) -> str:
            return _said(super().format(record))

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(Said())  # a warning's line begins "warning: "
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False
    dask_level = logging.INFO if args.verbose >= 2 else logging.ERROR
    if args.verbose >= 2:
        from pipeline.running import cluster

        cluster.DASK_LOG_LEVEL = dask_level
    # In this process, distributed's loggers (distributed.client has a level of its own in
    # Dask's logging config) report a lost scheduler with tracebacks; the run says it in one
    # line. So does tornado.application, for callbacks of Dask's event loop that fail: a Ctrl-C
    # while the main thread waits in distributed's sync() made its cancel callback fail
    # (NameError: the future it cancels was not set yet), a traceback after the run's one line.
    # Quiet unless -vv.
    for name in DRIVER_LOGGERS:
        logging.getLogger(name).setLevel(_driver_level(args))
    # run and generate set them once their workers' fork server is started (_start_dask)
    if args.verbose >= 2:
        _quiet_dask(args)


def _contradiction(args: argparse.Namespace, where: str = "") -> str | None:
    """The words of the refusal of a command line whose ``run --overwrite`` its ``--resume``
    or ``--no-overwrite`` contradicts, whose ``verify --all`` (every block) its
    ``--samples`` contradicts, or whose ``-q`` (only errors, warnings, notes and the
    summary, no progress) another of its options contradicts: ``-v`` or ``-vv`` (more log
    output), or ``--progress bar`` or ``plain`` (progress shown), on any command that takes
    them; None where none does. ``-q --progress plain`` had printed the progress lines, ``-q -vv``
    Dask's logs but not the pipeline's: one of the two asked-for ways won, silently, as
    ``--overwrite`` had won over ``--resume`` (now refused too, as is ``--overwrite`` with
    ``--no-overwrite``, whose last had been taken). ``--progress auto`` (the default) and
    ``none`` are quiet with ``-q``. ``where``: where the flags were given, after the fix's
    "drop" (`` from ARGS`` where ``make`` ran the command: the flags are said as given, in
    ``ARGS``, where :func:`~pipeline.errors.make_words` had made each ``ARGS=--overwrite``:
    "ARGS=--overwrite contradicts ARGS=--resume")."""
    flags = getattr(args, "overwrite_flags", [])
    if len(flags) > 1:  # the last had been taken, silently
        return (
            "--overwrite (replace the output) contradicts --no-overwrite (never replace it): "
            f"drop one of them{where}"
        )
    if getattr(args, "overwrite", None) and getattr(args, "resume", False):
        return (  # --overwrite had won, silently (helper-40)
            "--overwrite (start over, the finished blocks thrown away) contradicts --resume "
            f"(keep them): drop one of them{where}"
        )
    if getattr(args, "all", False) and getattr(args, "samples", None) is not None:
        return (  # --all had won, silently, as --overwrite had over --resume
            f"--all (every block) contradicts --samples {args.samples} (that many random "
            f"blocks): drop one of them{where}"
        )
    if not args.quiet:
        return None
    if args.verbose:
        more = "-" + "v" * args.verbose
        return (
            f"-q (only errors, warnings and the summary) contradicts {more} (more log "
            f"output): drop one of them{where}"
        )
    progress = getattr(args, "progress", "none")  # run and generate take --progress
    if progress in ("bar", "plain"):
        return (
            f"-q (no progress) contradicts --progress {progress}: drop -q{where} to see the "
            f"progress, or --progress {progress} to be quiet"
        )
    return None


def _progress(args: argparse.Namespace) -> str:
    """The progress mode of ``run`` or ``generate``: their ``--progress``, or ``none`` with
    ``-q`` (which a mode that shows progress contradicts: :func:`_contradiction`)."""
    return "none" if args.quiet else str(args.progress)


def _driver_level(args: argparse.Namespace) -> int:
    return logging.INFO if args.verbose >= 2 else logging.CRITICAL


#: The loggers whose levels distributed's import sets, from Dask's config ``logging``.
DASK_CONFIGURED = (
    "distributed",
    "distributed.client",
    "distributed.gc",
    "tornado",
    "tornado.application",
)


def _quiet_dask(args: argparse.Namespace) -> None:
    """Dask's driver loggers (distributed's, tornado's) at the command line's level, for the
    commands that may use a Dask cluster, before they use one. distributed sets its loggers'
    levels when it is first imported, from Dask's config ``logging``: the level goes there,
    for a run that imports it later (one on a cluster), or never (a run of threads of this
    process, :mod:`pipeline.running.workers`); and to the loggers already there. The other
    commands (``plan`` of a local cluster, ``verify``, ``info``, ``schema``) never load it."""
    import dask.config

    level = _driver_level(args)
    dask.config.set({"logging": dict.fromkeys(DASK_CONFIGURED, level)})
    for name in list(logging.root.manager.loggerDict):
        if name.split(".")[0] in DRIVER_LOGGERS:
            logging.getLogger(name).setLevel(level)


def main(argv: list[str] | None = None) -> int:
    """The command line; its exit status. ``argv`` None: this process is the program
    (``python -m pipeline``, the ``pipeline`` script), whose handling of SIGINT and SIGTERM lasts
    until it exits; a list (a caller in Python, the tests): the handlers are restored after.
    The first signal stops the command (:func:`pipeline.running.waiting.on_signal`: it is not
    lost where Python drops its ``KeyboardInterrupt``); those after it do not cut its clean-up
    short. A signal this process began with ignored (a shell's background job: SIGINT) stays
    ignored."""
    if argv is None and _started_for_the_command():
        _pause_collector()  # until the command's own work begins (_collect_again)
    main_thread = threading.current_thread() is threading.main_thread()  # where handlers run
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM) if main_thread}
    waiting.reset()  # this command's interrupt only
    if argv is None and TRACKER_WARNINGS not in sys.warnoptions:
        sys.warnoptions.append(TRACKER_WARNINGS)  # before any tracker starts
    # for a caller in Python, the caller's handlers are put back (SIGINT's last) whatever
    # lands meanwhile: set inside the try, and put back with on_signal made only to mark its
    # interrupt pending (a plain assignment, where no handler runs), raised once they are back
    # (h75a: a signal just after on_signal was set, or as they were put back, signal.signal
    # being Python code, had left it set and the interrupt pending for the caller's next call)
    back = [(s, h if h is not None else signal.SIG_DFL) for s, h in reversed(handlers.items())]
    raised = False
    try:
        for s, h in handlers.items():
            # a signal ignored when the command began stays ignored: a shell starts a script's
            # background job (`pipeline run ... &`) with SIGINT ignored, so that a Ctrl-C meant
            # for the script leaves the job running, as Python itself leaves it (h85c)
            if h is not signal.SIG_IGN:
                signal.signal(s, waiting.on_signal)
        status = _main(argv)
    except BaseException:
        raised = True
        raise
    finally:
        if argv is not None:
            waiting.handing_back = True
            try:
                for s, h in back:
                    signal.signal(s, h)
            finally:
                lost = waiting.pending()
                waiting.reset()  # none left for the caller's next command or pipeline.run
            if lost and not raised:
                raise KeyboardInterrupt
    if argv is None:
        _collect_again()  # where the command ended before its work began (info, a refusal)
        # stopped by a Ctrl-C: the program dies of SIGINT, as Python does on an uncaught
        # KeyboardInterrupt, so that a shell running it in a script stops the script too
        # (bash goes on after a child that exits 130: h86e); $? is 130 all the same
        _leave(status, signal.SIGINT if status == 130 and waiting.by_sigint() else None)
    return status


def _leave(status: int, died_of: int | None = None) -> NoReturn:
    """End the program, its command done, without the interpreter's teardown: with exit
    status ``status``, or killed by the signal ``died_of`` (its default action restored and
    the signal sent to this process, as Python ends itself on an uncaught
    ``KeyboardInterrupt``; exit status ``status`` should the signal not end it).

    By now everything the command opened is closed (the cluster, the output, the lock). What
    Python does at exit runs as usual: other threads are joined as at exit (idle executor
    threads are told to stop), then the ``atexit`` hooks (the GPU backend's, logging's,
    multiprocessing's), then the standard streams are flushed. Only the teardown of every
    module is skipped: after a run it took 0.3-0.9 s on the 2-core machine (pydantic,
    zarr, distributed, NumPy's objects freed one by one), for memory the system takes back
    at once. Nor is a child process waited for that has begun to exit (:func:`_forget_exiting`).
    """
    threading._shutdown()  # type: ignore[attr-defined]  # what Python's exit calls first
    _forget_exiting()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed pipe: nothing more can be said
            stream.flush()
    if died_of is not None:
        with contextlib.suppress(OSError, ValueError):
            signal.signal(died_of, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {died_of})
            os.kill(os.getpid(), died_of)
    os._exit(status)


def _forget_exiting() -> None:
    """Drop, from multiprocessing's children, the processes that have begun to exit: a local
    cluster's workers its close left exiting (``running/cluster.py``, ``_stop_local``), whose
    kernel teardown (the CUDA driver's, about 0.1 s a GPU worker, one at a time)
    multiprocessing's exit hook would otherwise join. Nothing of theirs runs any more; they
    end on their own."""
    if not {"multiprocessing.process", "pipeline.running.cluster"} <= sys.modules.keys():
        return
    from multiprocessing import process

    from pipeline.running.cluster import is_exiting

    children: set[Any] = getattr(process, "_children", set())  # the set active_children() reads
    for child in list(children):
        if child.pid is not None and is_exiting(child.pid):
            children.discard(child)


#: Whether this process paused Python's cyclic garbage collector for its start
#: (:func:`_pause_collector`), and has not let it run again (:func:`_collect_again`).
_collector_paused = False


def _pause_collector() -> None:
    """Pause Python's cyclic garbage collector in the command's own process (not a caller's),
    from its start to its work (:func:`_collect_again`). The start imports NumPy, pydantic,
    Dask and the pipeline, about 80,000 objects that live until the process exits; the
    collector went over them again and again as they were made (136 collections, 0.09-0.19 s
    on the 2-core machine, 2026-12-07, of a 0.6-0.9 s start), freeing almost nothing. Nothing
    else changes: objects that are no cycle are freed as ever, and a cycle made meanwhile
    is collected once the collector runs again."""
    global _collector_paused
    if gc.isenabled():
        gc.disable()
        _collector_paused = True


def _collect_again() -> None:
    """The collector running again where :func:`_pause_collector` paused it, with the
    objects made so far (the modules, the config) left out of its later passes
    (``gc.freeze``): they live as long as the process, so a later full collection, a
    pause of every thread of the run's (a CPU run's tasks too), need not go over them.
    Nothing where it was not paused."""
    global _collector_paused
    if _collector_paused:
        _collector_paused = False
        gc.freeze()
        gc.enable()


def _main(argv: list[str] | None) -> int:
    try:
        parsed = _arguments(argv)
    except KeyboardInterrupt:  # while the arguments were read, before the command's own
        # handlers (argparse imports modules as it goes): nothing is begun, so its line, not
        # Python's traceback (h87g: a Ctrl-C 0.11 s after start)
        waiting.take()
        _failed("interrupted: nothing was written")
        return 130
    return _command(parsed)


def _arguments(argv: list[str] | None) -> argparse.Namespace | int:
    """The command's arguments, parsed and checked, its logging set; or the exit status of a
    usage error already said (2)."""
    parser = _parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        _unrecognized(parser, args.command, unknown)
    under_make = bool(os.environ.get(MAKE_CONFIG_VARIABLE))
    contradiction = _contradiction(args, " from ARGS" if under_make else "")
    if contradiction is not None:  # a usage error, as argparse's own (status 2), in one line
        _failed(f"pipeline {args.command}: error: {contradiction}", given=True)
        return 2
    args.program = argv is None and _started_for_the_command()  # its age is the command's
    _setup_logging(args)
    return args


def _command(parsed: argparse.Namespace | int) -> int:
    """The command of the arguments ``parsed`` (:func:`_arguments`) run, its exit status:
    every error and interrupt said in its one line."""
    if isinstance(parsed, int):
        return parsed
    args = parsed
    _ERRORS_SAID.clear()
    try:
        status = _dispatch(args)
        waiting.raise_pending()  # a signal whose interrupt was dropped after the last wait
        # an `error:` line said means a failure, whatever path said it (h84a): never exit 0
        return 1 if status == 0 and _ERRORS_SAID else status
    except PipelineError as e:
        _located(args, e)
        _configured_words(args, e)
        if args.debug:
            raise
        _failed(  # a refused option's line (--scheduler: ...) says it as given
            _shadowed(str(e), e, True) or f"error: {e}",
            given=str(getattr(e, "option", "")).startswith("-"),
        )
        return 1
    except Interrupted as e:  # a KeyboardInterrupt that knows what it stopped: first
        waiting.take()  # its line is printed whole
        line = _interrupted(args, e.what, e.where, e.state, e.refused, e.joined)
        if e.what == "run":
            line = as_configured(line, _overwrites(args))
        _failed(hide_url_secrets(line))
        return 130
    except KeyboardInterrupt:  # outside what a run or generate knows: nothing written
        waiting.take()
        _failed(_interrupted(args, args.command, "", "untouched"))
        return 130
    except BrokenPipeError as e:
        if _stdout_gone():
            return _reader_gone()
        if args.debug:  # another pipe or socket: an error like any other
            raise
        _failed(hide_url_secrets(f"error: {cause(e)} (run with --debug for the traceback)"))
        return 1
    except ImportError as e:  # before the handler below, which imports the store layer
        if args.debug:
            raise
        # one that names no module (a library's own "install X", a module raising it itself)
        # is any error's line: re-raised, it had ended the command in a traceback
        line, explained = _failure_line(args, e, e.name)
        _failed(_shadowed(cause(e), e, explained) or line)
        return 1
    except Exception as e:
        if args.debug:
            raise
        # a file of the user's in a library's place (_shadowed), else a module of a library's
        # name that is not it (an old release, whose missing attribute had been a bare
        # AttributeError's line)
        line, explained = _failure_line(args, e, wrong_library(e))
        _failed(_shadowed(cause(e), e, explained) or line)
        return 1


def _failed(line: str, given: bool = False) -> None:
    """Print ``line``, the command's failure (``error: ...``, ``interrupted: ...``), on
    standard error as one line (:func:`~pipeline.errors.single_line`): every failure the
    command prints goes through here, so that a name or path said bare where it holds a line
    break does not split it (h81c), as no line of the pipeline's is meant to span lines. Where
    ``make`` ran the command (the Makefile sets :data:`~pipeline.errors.MAKE_CONFIG_VARIABLE`
    to its ``CONFIG``), the commands and flags it names are said as make takes them
    (:func:`~pipeline.errors.make_words`: `make run CONFIG=c.yaml ARGS=--overwrite`), but for
    a line that names only the flags its command was given (``given``: a contradiction of
    two, a refused ``--scheduler``), which ``ARGS`` holds as written: "ARGS=--overwrite
    contradicts ARGS=--resume" had read as two settings of ARGS."""
    if line.startswith("error:"):
        _ERRORS_SAID.append(line)
    print(single_line(line if given else _said(line)), file=sys.stderr)


#: The ``error:`` lines the command said (:func:`_failed`): where one was, it exits non-zero
#: (:func:`_main`), as no path of it may say an error and exit 0 (h84a).
_ERRORS_SAID: list[str] = []


def _said(text: str) -> str:
    """``text``, a line or table cell the command prints, its commands and flags said as
    ``make`` takes them where ``make`` ran the command (:func:`_failed`); as it is otherwise."""
    config = os.environ.get(MAKE_CONFIG_VARIABLE)
    return make_words(text, config, os.environ.get(MAKE_PYTHON_VARIABLE)) if config else text


def _overwrites(args: argparse.Namespace) -> bool:
    """Whether the command's config, where it was loaded, sets ``output.overwrite: true``, and
    the command line leaves it so (``run --no-overwrite`` says no to it: its lines name
    `run --overwrite`, not the plain `run` its user just said no to, as ``pipeline.run(config,
    overwrite=False)``'s name ``overwrite=True``)."""
    config = getattr(args, "loaded", None)
    if getattr(args, "overwrite", None) is False:
        return False
    return bool(config is not None and config.output.overwrite)


def _configured_words(args: argparse.Namespace, e: PipelineError) -> None:
    """``e``'s line naming commands of ``run`` as they hold for the command's config
    (:func:`pipeline.errors.as_configured`: a plain `run` of one with ``output.overwrite:
    true`` starts over; after ``run --no-overwrite`` the refusal says the output is kept as
    asked itself, :data:`pipeline.errors.KEPT_ADVICE`), and ``pipeline generate`` and
    ``pipeline run`` with the command's config file in place of the placeholder ``CONFIG``
    (`pipeline generate c.yaml`, which can be run as it is; `pipeline run CONFIG` had been
    left so)."""
    said = as_configured(str(e), _overwrites(args))
    config = getattr(args, "config", None)
    if config is not None:
        for command in ("generate", "run"):  # `run`: an input generated by when_missing
            said = said.replace(
                f"`pipeline {command} CONFIG`", f"`pipeline {command} {shell_word(config)}`"
            )
    if said != str(e):
        e.args = (said, *e.args[1:])


def _located(args: argparse.Namespace, e: PipelineError) -> None:
    """``e``, a refusal of a key of the command's config file (a :class:`ConfigError`'s or
    :class:`PlanError`'s ``key``: :func:`pipeline.config.loading.config_key`) that says not
    where that key is (the plan's, generate's), given that key's file and line
    (:func:`pipeline.config.loading.locate`); not where ``--scheduler`` set the key. A
    ``config`` of ``args`` that is a mapping (:func:`pipeline.verify`'s) says the key is
    the mapping's (:func:`~pipeline.config.loading.locate_in_mapping`)."""
    from pipeline.errors import ConfigError, PlanError

    config = getattr(args, "config", None)
    if (
        isinstance(e, (ConfigError, PlanError))
        and config is not None
        and "pipeline.config" in sys.modules
    ):
        from collections.abc import Mapping

        from pipeline.config.loading import locate, locate_in_mapping

        if isinstance(config, Mapping):  # pipeline.verify's of a mapping (its _run_says)
            locate_in_mapping(e, config)
            return
        locate(e, config, ["cluster.scheduler"] if getattr(args, "scheduler", None) else [])


def _shadowed(failure: str, e: BaseException, explained: bool) -> str | None:
    """The line of the failure ``e`` (``failure``: its own words) where files of the user's
    take the place of modules the command imports (a ``yaml.py`` in the folder it runs in)
    and ``e`` comes from or through them, or, where nothing explains ``e`` (``explained``
    false), may: each such file named, with the fix, as the library's error (``module 'yaml'
    has no attribute 'SafeLoader'``) or a step's that blamed the input for it did not; None
    where none does (:func:`pipeline.shadowing.shadow_line`, which looks only now). An error
    such a file has no part in (a config's wrong value, an input that is not there, beside a
    ``queue.py``) keeps its own line, which that file's had replaced."""
    from pipeline.shadowing import shadow_line

    line = shadow_line(failure, e, explained)
    return hide_url_secrets(line) if line is not None else None


def _failure_line(args: argparse.Namespace, e: Exception, library: str | None) -> tuple[str, bool]:
    """The line of an error that no handler of :func:`_main` words itself, and whether it
    says the error's cause: ``library``'s, the module ``e`` shows is not what the command
    needs (:func:`_import_failure`: its cause is known where this Python lacks the module);
    else a library's error whose cause is known (:func:`_library_error`); else its type and
    message, with --debug's offer."""
    if library:
        return _import_failure(e, library), sys.modules.get(library.split(".")[0]) is None
    line = _library_error(e, getattr(args, "loaded", None))
    if line is not None:
        return line, True
    return hide_url_secrets(f"error: {cause(e)} (run with --debug for the traceback)"), False


def _import_failure(e: Exception, name: str) -> str:
    """The line for a module of ``name`` that this interpreter cannot import: one it lacks
    (``make run PYTHON=python3`` with a Python that has not the package's dependencies: numpy,
    say), or one it has that is not what the pipeline imports from it (an old release, or a
    file of the user's, ``zarr.py`` in the folder the command runs in, in its place), named
    with the file it was loaded from; ``e`` is the ImportError, or the AttributeError raised
    on such a module (:func:`~pipeline.errors.wrong_library`). Either had ended the command
    in two tracebacks, the second from the handler of the first, which imports the store
    layer again."""
    top = name.split(".")[0]
    fix = (
        "install the package's dependencies into it (`python -m pip install -e .` in the "
        "checkout), or run the command with the Python that has them (.venv/bin/python, "
        "which `make run` creates)"
    )
    loaded = sys.modules.get(top)
    if loaded is None:
        return (
            f"error: this Python ({sys.executable}) has no module {top!r}, which the command "
            f"needs: {fix}"
        )
    version = getattr(loaded, "__version__", None)
    said = f"{top} {version}" if isinstance(version, str) else top
    where = getattr(loaded, "__file__", None) or "no file"
    return (
        f"error: {said}, as this Python ({sys.executable}) imports it from {where}, is not "
        f"what the command needs ({cause(e)}): rename a file of yours that takes its name, "
        f"or {fix}"
    )


def _library_error(e: BaseException, config: Any = None) -> str | None:
    """The line for an error of a library that names no fix of the user's, where its cause is
    known; None otherwise. An S3 store without credentials (botocore's NoCredentialsError,
    which s3fs passes on: helper-41 got its bare name); a store's answer that no step turned
    into a line of its own (:func:`~pipeline.errors.store_answer`, told the stores of
    ``config``, the command's, where it was loaded)."""
    from pipeline.errors import missing_credentials, no_credentials_error, store_answer
    from pipeline.store.location import config_stores

    if missing_credentials(e):
        return f"error: {no_credentials_error()}"
    answer = store_answer(e, config_stores(config))  # no step named it (helper-75: a 401)
    return f"error: {answer}" if answer is not None else None


#: The exit status of a command whose standard output's reader went away (``| head``): a
#: shell's for a process that SIGPIPE ended (128 + 13), as other tools end there.
READER_GONE = 141


def _stdout_gone() -> bool:
    """Whether the standard output is a pipe whose reader has closed it (its write end then
    polls as an error): a BrokenPipeError from elsewhere (a socket, another pipe) is not the
    reader leaving."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(ev & (select.POLLERR | select.POLLHUP) for _, ev in poller.poll(0))
    except (OSError, ValueError, AttributeError):  # no poll, no file descriptor
        return False


def _reader_gone() -> int:
    """The reader of the standard output left (``pipeline run ... | head -3``): say nothing
    more there (the rest of what was to be printed goes to /dev/null, so the flush at exit
    cannot fail again) and end with :data:`READER_GONE`. Whatever the command was doing has
    ended as an error does: a run's output stays as the run left it (complete, or resumable)."""
    with contextlib.suppress(Exception):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    return READER_GONE


#: The multiprocessing resource tracker's own warnings, at its exit, about semaphores a worker
#: process had not yet unregistered as it ended (the close leaves worker processes exiting):
#: the tracker removes any that remain, and the names it warned about were already gone
#: ("No such file or directory"). Passed to the processes multiprocessing starts, the tracker
#: among them, through ``sys.warnoptions``.
TRACKER_WARNINGS = "ignore::UserWarning:multiprocessing.resource_tracker"


def _interrupted(
    args: argparse.Namespace,
    what: str,
    where: str,
    state: str,
    refused: str = "",
    joined: bool = False,
) -> str:
    """The line after Ctrl-C: what finishes the work that ``what`` ('run', 'generate', or
    another command: nothing) left undone; for a run, by its output's ``state``
    (:class:`~pipeline.errors.Interrupted`), or ``run``'s own ``refused`` where it refuses the
    command that state names. On a cluster the run joined (``joined``), whose workers are
    the user's and keep running, it says that the run's tasks are cancelled (h60j: it had
    said "the workers are stopped" there too)."""
    stopped = (
        f"the {'generation' if what == 'generate' else 'run'}'s tasks are cancelled"
        if joined
        else "the workers are stopped"
    )
    if what == "run" and refused:
        return f"interrupted: {stopped}; the output is unfinished; {refused}"
    if what == "run" and state == "incomplete":
        return f"interrupted: {stopped}; `run --resume` finishes the output"
    if what == "run" and state == "unresumable":
        return (
            f"interrupted: {stopped}; the output stays incomplete, and its "
            "input's store gives no change stamps, so a resume could not tell a rewrite of it: "
            "`run --overwrite` starts over"
        )
    if what == "run" and state in ("creating", "creating-new"):
        gone = " (what was there before is gone)" if state == "creating" else ""
        return f"interrupted while the output was being made{gone}: `run --overwrite` starts over"
    if what == "run" and state == "complete":
        the_output = f"the output {name_shown(where)}" if where else "the output"
        ending = "as the run ended" if joined else "while the workers stopped"
        return f"interrupted {ending}: {the_output} is complete"
    if what == "generate" and state != "untouched":  # untouched: before it made the input
        the_input = f"the input {name_shown(where)}" if where else "the input"
        return (
            f"interrupted: {stopped}; {the_input} is unfinished: "
            f"`pipeline generate {shell_word(args.config)}` generates it again"
        )
    return "interrupted: nothing was written"


def print_rows(rows: list[tuple[str, str]], title: str) -> None:
    """A table on stdout (:func:`pipeline.reporting.tables.print_rows`, imported when a
    command has one to print)."""
    from pipeline.reporting.tables import print_rows as print_table

    print_table([(k, _said(v)) for k, v in rows], title)


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "info":
        from pipeline.reporting.info import rows

        print_rows(rows(), "pipeline info")
        return 0
    if args.command == "schema":
        return _schema(args)
    if args.command == "generate" or (args.command == "run" and not args.dry_run):
        from pipeline.running import fork_server, mps

        cluster = fork_server.start_early(args.config, getattr(args, "scheduler", None))
        # a local GPU run's cluster: its MPS daemon starts now too (not generate's: its plan,
        # plan_generation, never runs under MPS)
        if cluster is not None and args.command == "run":
            try:
                mps.start_early(cluster)  # in the try: a Ctrl-C right after it stops it too
                return _configured(args)
            finally:  # where no cluster took it (the plan refused the run, or wants no MPS)
                mps.stop_early(wait=not args.program)
    return _configured(args)


def _configured(args: argparse.Namespace) -> int:
    """:func:`_dispatch` of a command that loads its config."""
    if args.command in ("run", "verify"):
        from pipeline.store.codecs import ignore_filter_arithmetic_warnings

        ignore_filter_arithmetic_warnings()
    config = _load(args)
    args.loaded = config  # whose stores a store's answer that no step named is matched to
    if args.command != "run" or args.dry_run:
        _collect_again()  # a run's collector runs again once its modules are loaded (_run)
    if args.command == "run":
        check_not_the_config(
            args.config, {"--report": args.report, "--summary-json": args.summary_json}
        )
    if args.command == "plan" or (args.command == "run" and args.dry_run):
        return _plan(args, config)
    if args.command in ("run", "generate"):
        _start_dask(args, config)
        if args.program:  # tasks may run as threads of this process (not a caller's)
            from pipeline.running import allocator

            allocator.tune()
    if args.command == "generate":
        from pipeline.running.generate import generate_input

        info = generate_input(config, progress=_progress(args), interval=args.progress_interval)
        print_rows(
            [("created", info.location.shown(info.path)), ("array", info.describe())], "generated"
        )
        return 0
    if args.command == "verify":
        return _verify(args, config)
    return _run(args, config)


def check_not_the_config(config: Any, files: dict[str, Any]) -> None:
    """Refuse a file that a run writes at its end (``files``: ``--report``, ``--summary-json``
    by their flags, a path or None) that is the run's config file ``config`` (a path): the
    run had written its summary over the config (``run c.yaml --summary-json c.yaml``), which
    was then gone. ConfigError, fields ``option`` (the flag) and ``path``, before anything is
    done."""
    import os

    for flag, path in files.items():
        full = os.path.expanduser(path) if path else path  # as the run writes it
        if not full or not os.path.isfile(full) or not os.path.isfile(config):
            continue
        if os.path.samefile(full, config):
            from pipeline.errors import ConfigError

            raise ConfigError(
                f"{flag} {name_shown(path)}: that file is the run's config, which the run would "
                "replace: "
                "give another file",
                option=flag,
                path=str(path),
            )


def _schema(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pipeline.config.reference import schema_markdown, with_reference

    if args.update:  # a file that cannot be read or written: one line naming it (it had been
        # "a store answered IsADirectoryError ...: mend what is at that path of the store")
        from pipeline.errors import ConfigError

        path = Path(args.update)
        try:
            text = path.read_text(encoding="utf-8")
            path.write_text(with_reference(text), encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            why = "it is not UTF-8 text" if isinstance(e, UnicodeDecodeError) else e.strerror
            raise ConfigError(
                f"schema --update {name_shown(args.update)}: cannot update that file ({why}); "
                "give the path of a Markdown file that holds the reference markers (README.md)",
                option="--update",
                path=args.update,
            ) from None
        return 0
    print(schema_markdown(), end="")
    return 0


def _plan_of(args: argparse.Namespace, config: Any) -> Any:
    """The plan of a run of ``config``: on this machine, or on the cluster it joins (joined
    for the plan only). Dask's loggers are quieted for the join (:func:`_quiet_dask`) by the
    command line only (``args`` of a command): :func:`pipeline.verify`, whose refusals name
    the command of ``run`` this plan takes, leaves its caller's logging as it is (it had set
    every ``distributed`` and ``tornado`` logger of the caller's process to CRITICAL)."""
    from pipeline.planning import plan_here

    if config.cluster.scheduler == "local":
        return plan_here(config)
    from pipeline.running import cluster
    from pipeline.running.runner import plan_joined

    if getattr(args, "command", None) is not None:  # the command line's process, not a caller's
        _quiet_dask(args)
    client = cluster.join(config.cluster.scheduler, config.cluster.timeout)
    try:
        return plan_joined(config, client)
    finally:
        cluster.close_client(client)


def _plan(args: argparse.Namespace, config: Any) -> int:
    """``pipeline plan`` and ``run --dry-run``: the plan, on this machine or the cluster the
    config joins, and what is at the output now.

    ``plan`` names the command of ``run`` that writes the output; where none does (its "output
    now" row is ``run``'s refusal), the whole table, then that refusal, raised: its ``error:``
    line and exit status 1, as the refused ``run`` gives them. ``run --dry-run`` says what
    that run, with its flags, does there (:func:`pipeline.running.runner.preview`, the run's
    own decision): starts, replaces, resumes, finds nothing to do; or, where it refuses, the
    whole table, then its refusal, raised as the run raises it (``run ARGS --dry-run && run
    ARGS`` had run a run that refused)."""
    from pipeline.planning.rows import describe
    from pipeline.running.output import output_now_refused

    opts = None
    if args.command == "run":
        from pipeline.running.runner import RunOptions, run_config, settled

        opts = settled(
            config,
            RunOptions(
                overwrite=args.overwrite,  # None: as output.overwrite says
                resume=args.resume,
                report=args.report,
                summary_json=args.summary_json,
            ),
        )
        config = run_config(config, opts)
    p = _plan_of(args, config)
    plan_rows = describe(p, report=bool(getattr(args, "report", None)))
    refused: PipelineError | None
    if opts is None:
        now, refused = output_now_refused(p)
    else:
        from pipeline.running.runner import preview

        now, refused = preview(p, opts)
    if opts is None:  # what `run` does there, as the config makes it
        now = as_configured(now, config.output.overwrite)
    plan_rows.insert(2, ("output now", now))
    print_rows(plan_rows, f"plan of {name_shown(args.config)} (nothing computed, nothing written)")
    if refused is not None:
        raise refused
    _warn_as_the_run(p, config.output.overwrite if opts is None else opts.overwrite)
    return 0


def _warn_as_the_run(plan: Any, overwrite: bool | None) -> None:
    """The warning the run of ``plan`` gives where it writes the output (all but a complete
    one it leaves as it is: ``overwrite`` not set), said by ``plan`` and ``run --dry-run``
    too: an output written where a Zarr v2 group's readers do not list it
    (:func:`pipeline.running.output.unlisted_by_v2_group`; h86g: only the run said it)."""
    from pipeline.running import output

    if not overwrite and output.output_state(plan) == "complete":
        return  # the run writes nothing, and says nothing
    unlisted = output.unlisted_by_v2_group(plan)
    if unlisted is not None:
        log.warning("%s", unlisted)


def _interval_seconds(text: str) -> float:
    """``run --progress-interval``: a number of seconds of at least
    :data:`~pipeline.reporting.progress.MIN_INTERVAL` (0.01, why there), finite: the rule of
    :func:`pipeline.run`'s ``interval``."""
    from pipeline.reporting.progress import INTERVAL_RULE, is_interval

    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not is_interval(seconds):
        raise argparse.ArgumentTypeError(f"{text!r} is not {INTERVAL_RULE}")
    return seconds


def _at_least_one(text: str) -> int:
    """``verify --samples``: a whole number of at least 1 (``--all`` checks every block)."""
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number of blocks (at least 1; --all checks every block)"
        )
    return n


#: verify's advice for an output made from the input as it was.
OVERWRITE_COMPUTES = "`run --overwrite` computes it from the input as it is now"


def _run_says(
    args: argparse.Namespace,
    config: Any,
    flags: tuple[str, ...],
    said: str,
    refusal_raised: bool = False,
) -> str:
    """``said``, verify's advice, which names ``run`` with the first of ``flags`` (of
    :data:`pipeline.running.output.FLAGS`), where ``run`` takes that command at the output;
    else what ``run`` says (:func:`pipeline.running.output.run_accepts`): its refusal of that
    command, which names the one it takes (a later one of ``flags``), or what to do where it
    takes none (F-B1: verify said `run --resume` of an incomplete output whose run record was
    gone, which `run --resume` refused). Where it takes none, the refusal of the first that
    names no later one of ``flags`` (all refused): the first's says what to do in the state
    the output is in, unless it names a command refused too (h56b: verify of an incomplete
    output that `run --resume` refuses, an array alone begun in a Dataset's group, gave `run
    --overwrite`'s refusal, the last, and not the resume's, which says what to remove).
    ``said`` too where no plan can be made here (a store or cluster that does not answer).
    Where the plan refuses the config (a :class:`PlanError` or :class:`ConfigError`: shards
    that are not whole chunks, a budget over the RAM, ...), every command of ``run`` meets
    that refusal first, whatever ``flags``: its words, as ``run`` and ``plan`` say them (the
    config file's line first: :func:`_located`), or, with ``refusal_raised``, the refusal
    raised (h64c: verify of no output said "run the pipeline first", which the plan then
    refused), an :class:`InputError` of the plan's too (an input whose chunks do not decode to
    its metadata's dtype and chunk shape, one another run writes: "run the pipeline first",
    which the plan then refused; new-user trial)."""
    from pipeline.errors import ConfigError, InputError, PipelineError, PlanError
    from pipeline.running.output import run_accepts

    try:
        plan = _plan_of(args, config)
    except (PlanError, ConfigError, InputError) as e:
        if refusal_raised:
            raise
        _located(args, e)
        return str(e)
    except PipelineError:
        return said
    took, refusals = run_accepts(plan, flags)
    if took == flags[0] or not refusals:
        return said
    if took is not None:
        return str(refusals[0])
    for i, refusal in enumerate(refusals[:-1]):
        text = str(refusal).replace("even with --overwrite", "")
        if not any(flag and flag in text for flag in flags[i + 1 :]):
            return str(refusal)
    return str(refusals[-1])


def _member_said(config: Any, name: str) -> str:
    """The member ``name`` of the output's group, named with what it is (an output of this
    pipeline, an array a run of it copied, one it did not write:
    :func:`pipeline.running.output.members_words`), for verify's line: it had said "which
    this pipeline did not write" of every one, an array alone the pipeline wrote there too.
    ``repr(name)`` where the group cannot be read."""
    from pipeline.running.output import members_words
    from pipeline.store.location import Location

    try:
        loc = Location.of(config.output.store, config.output.storage_options, "output")
        group = (config.output.array or "").strip("/").rpartition("/")[0]
        return members_words(loc, group, [name])
    except Exception:
        return repr(name)


def verified(args: argparse.Namespace, config: Any) -> VerifyResult:
    """``verify``'s :class:`~pipeline.reporting.verify.VerifyResult` of ``config`` (``args``:
    its ``all``, ``samples``, ``seed``, and ``verbose`` for a joined cluster's plan), with its
    ``advice``, the words that end verify's line of its failure (:func:`_judged`); or its
    refusal as the command line raises it: a refusal that names a command of ``run`` names the
    one ``run`` takes at the output (:func:`_run_says`). :func:`pipeline.verify` returns and
    raises the same, in the API's words."""
    return _judged(args, config)[0]


def _compared(args: argparse.Namespace, config: Any) -> VerifyResult:
    """:func:`verified`'s result before its advice is said, or its refusal."""
    from pipeline.errors import InputError, OutputError
    from pipeline.reporting.verify import verify

    try:
        samples = None if args.all else (args.samples or SAMPLES)
        return verify(config, samples=samples, seed=args.seed)
    except InputError as e:  # an element of the input its packing cannot hold: asks `run`
        named = "; then `run --overwrite` starts over"
        if not str(e).endswith(named):
            raise
        told = _run_says(args, config, ("--overwrite",), named)
        if told == named:
            raise
        raise InputError(f"{str(e)[: -len(named)]}; {told}", **e.data) from None
    except OutputError as e:  # no array to verify there, or not the one this config makes
        again = "`run --overwrite` writes the output again"
        if getattr(e, "region", None) is not None and str(e).endswith(again):  # damaged
            told = _run_says(args, config, ("--overwrite",), again)
            if told == again:
                raise
            raise OutputError(str(e)[: -len(again)] + told, **e.data) from None
        status = getattr(e, "status", None)
        if status not in ("absent", "remains") and not hasattr(e, "expected_shape"):
            raise
        if "--overwrite" not in str(e) and status != "absent":
            raise  # another config's output: verify names no command
        flags = ("", "--overwrite") if status == "absent" else ("--overwrite",)
        # nothing to verify: the plan's refusal of the config, where it has one, is all
        told = _run_says(args, config, flags, str(e), refusal_raised=status == "absent")
        if told == str(e):
            raise
        if status in ("absent", "remains"):
            where = getattr(e, "output", "the output")
            raise OutputError(
                f"nothing to verify at {name_shown(where)}: {told}", **e.data
            ) from None
        # an array of another shape or dtype: what verify found, then run's own refusal of
        # the command it named (h54c: "nothing to verify at" a shape edited since the run,
        # and not a word of the edit)
        found, named, _ = str(e).rpartition("; `run --overwrite`")
        raise OutputError(f"{found if named else str(e)}; {told}", **e.data) from None


def _verify(args: argparse.Namespace, config: Any) -> int:
    res, failure = _judged(args, config)
    if failure is not None and res.writer is not None and res.status == "incomplete":
        # a run is writing the output, so nothing was compared: the refusal alone, as `run`
        # refuses a locked output (its table, "checked 0 of 1024", and notes had come
        # first: new-user trial)
        _failed(f"error: {failure}")
        return 1
    print_rows(res.rows(), "verify")
    for note in res.input_notes:  # as the plan says them; zarr-python's warnings of both
        print(_said(f"note: {note}"), file=sys.stderr)  # formats (h55b), of the fill value
    if failure is not None:
        _failed(f"error: {failure}")
        return 1
    if res.group_attributes_edited:  # the user's, kept by every run: not a failure
        keys = res.group_attributes_edited
        print(
            f"note: the output group's {names_shown(keys)} "
            + ("attributes differ" if len(keys) > 1 else "attribute differs")
            + " from what the run carried from the input (edited since): a group's "
            "attributes are yours, and every run keeps them, `--overwrite` too",
            file=sys.stderr,
        )
    if res.group_attributes_removed:  # the user's too, but no run keeps an absence
        keys = res.group_attributes_removed
        _failed(  # a note, said as every line the command prints is (_failed)
            f"note: the output group's {names_shown(keys)} "
            + (
                "attributes, which the run carried from the input, are"
                if len(keys) > 1
                else "attribute, which the run carried from the input, is"
            )
            + ' gone (removed since: xarray\'s `to_zarr(mode="a")` of another variable '
            "removes those its Dataset lacks); a group's attributes are yours, so this is no "
            "failure; "
            + as_configured(
                _run_says(
                    args,
                    config,
                    ("--overwrite",),
                    "`run --overwrite` carries "
                    + ("them" if len(keys) > 1 else "it")
                    + " from the input again",
                ),
                bool(config.output.overwrite),
            )
        )
    if res.input_unchecked is not None:
        every = res.checked == res.total
        _failed(
            f"{'note' if every else 'error'}: the input's identity cannot show a rewrite since "
            f"the run that kept its files' names and sizes ({res.input_unchecked}); "
            + ("every block was compared with the input as it is now" if every else VERIFY_ALL)
        )
    if res.files_modified is not None and res.ok:  # every block compared, each as computed:
        # said last, with what it recorded (h84a: `run --resume` had gone on refusing it)
        recorded = (
            "recorded: its mark of completion now follows those files, so `run --resume` "
            "finds it complete"
            if res.files_marked
            else f"not recorded ({res.files_unmarked}), so `run` still refuses it"
        )
        _failed(
            f"note: the output's {res.files_modified}, and every block was compared: it "
            f"holds what this config computes of the input all the same; {recorded}"
        )
    return 0 if res.ok else 1


#: verify's advice where only the blocks it compared vouch for the output.
VERIFY_ALL = "only the blocks compared vouch for the output: `verify --all` compares every block"


def _judged(args: argparse.Namespace, config: Any) -> tuple[VerifyResult, str | None]:
    """``verify``'s :func:`verified` result of ``config``, its :attr:`~pipeline.reporting.
    verify.VerifyResult.advice` set, and the line of its failure (without ``error:``) where
    one is said before any note (:func:`_verdict`); None where none is."""
    import dataclasses

    res = _compared(args, config)
    failure, advice = _verdict(args, config, res)
    if failure is None and res.input_unchecked is not None and res.checked != res.total:
        advice = VERIFY_ALL
    return dataclasses.replace(res, advice=advice), failure


def _verdict(
    args: argparse.Namespace, config: Any, res: VerifyResult
) -> tuple[str | None, str | None]:
    """The line (without ``error:``) of the first failure of ``res`` that ``verify`` says
    before its notes, and its advice, the words that end it: the command of ``run`` that
    finishes or replaces the output where ``run`` takes it (:func:`_run_says`), or what else to
    do; (None, None) where there is none."""

    def said(line: str, advice: str) -> tuple[str, str]:
        advice = as_configured(advice, bool(config.output.overwrite))
        return line + advice, advice

    if res.status == "none":
        return said(
            "the output holds no record of `pipeline run` (another tool wrote it, or its "
            "`pipeline` attribute was changed): its sampled values were compared, but nothing "
            "says it is whole; ",
            _run_says(args, config, ("--overwrite",), "`run --overwrite` writes it anew"),
        )
    if res.writer is not None and not res.ok:  # helper-39: "run --resume"
        from pipeline.store.ledger import holder_said

        # a complete output that a run began to replace while it was read: what failed may
        # be that run's doing, not damage (h65d: "damaged since the run (3000 of its 3000
        # shard files gone ...)")
        now = (
            f"the output is {res.status}"
            if res.status != "complete"
            else "a run began writing the output while it was verified, so what differs may be "
            "that run's doing"
        )
        return said(
            f"{now}: a run is writing it now ({holder_said(res.writer)}): ",
            "verify it once that run is done",
        )
    if res.replaced and not res.ok:  # begun and ended while it was read (h72u: "written
        # otherwise since the run, or damaged; `run --overwrite` writes it again")
        return said(
            "a run replaced the output while it was verified (its metadata written again "
            "meanwhile), so what differs may be that run's doing: ",
            "verify it again",
        )
    if res.status == "incomplete" and res.input_unchecked is not None:  # as `run` says (F8)
        return said(
            "the output is incomplete: it was not finished, and its input's store gives "
            f"no change stamps ({res.input_unchecked}), so a resume is refused (it could mix "
            "two versions of the input); ",
            _run_says(args, config, ("--overwrite",), "`run --overwrite` starts over"),
        )
    if res.status != "complete":
        resume = "`run --resume` finishes it"
        # one plan, and run's answer of it, for both lines (h86c: a stopped run's output was
        # planned twice, the second time for the same answer)
        told = _run_says(args, config, ("--resume", "--overwrite"), resume)
        if res.status == "incomplete" and res.stopped is not None and told == resume:
            # a resume meets it again unless it is mended (h85f: "`run --resume` finishes
            # it", which stopped the same way); a stop whose line names nothing to mend (a
            # scheduler lost during the work), `run --resume` alone (h86c); where `run
            # --resume` is refused (an input mended since: another), that refusal, as below;
            # a stop of the input's own data, `run --overwrite` after the mend, which changes
            # the input (h86f): the Stop's own advice
            from pipeline.store.ledger import Stop

            return said(
                f'the output is incomplete: its last run stopped on "{res.stopped}"; ',
                Stop(res.stopped, res.stopped_mend, res.stopped_input).advice(),
            )
        return said(f"the output is {res.status}: it was not finished; ", told)
    if res.record_refused:  # every run refuses it until it is mended: that refusal (h86g:
        # a complete output whose .pipeline was a link to a user's folder passed)
        return said(
            "",
            _run_says(
                args,
                config,
                ("--resume",),
                f"the output's run record is not as the run keeps it "
                f"({some_said(list(res.record_refused))}), which every run refuses: mend it",
            ),
        )
    if res.record_edited is not None:  # nothing it says is taken (h55b)
        return said(
            "the output's record of the run that made it (its `pipeline` attribute) "
            f"was edited since the run ({res.record_edited}): what made the output cannot be "
            "told from it; ",
            _run_says(args, config, ("--overwrite",), "`run --overwrite` writes it again"),
        )
    if res.made_from is not None:
        return said(
            f"the output was made from {res.made_from}, not from this config's input "
            "(another run replaced it, or the input moved): its values were compared with an "
            "input that did not make them; ",
            _run_says(args, config, ("--overwrite",), "`run --overwrite` makes it from this one"),
        )
    if res.made_with is not None:  # sampled blocks may agree where the stages do (h55b)
        return said(
            f"the output was computed with {res.made_with}, as its record says: it is "
            "another config's output, whatever the blocks compared show; ",
            _run_says(
                args, config, ("--overwrite",), "`run --overwrite` computes it with this config"
            ),
        )
    if res.input_changed and res.carried_since is not None:  # not the input (h83a)
        return said(
            f"the output {res.carried_since}; ",
            _run_says(args, config, ("--overwrite",), "`run --overwrite` writes it again"),
        )
    if res.input_changed:
        what = (
            "; ".join(res.input_changes)
            if res.input_changes
            else "its metadata or files, or the coordinates and attributes the output carries, "
            "were rewritten"
        )
        return said(
            f"the input changed since the output was made ({what}): the output holds "
            "what the run made of the input as it was; ",
            _run_says(args, config, ("--overwrite",), OVERWRITE_COMPUTES),
        )
    if res.group_unopenable:
        from pipeline.store.datasets import unopenable_fix, unopenable_others

        name, why = res.group_unopenable[0]
        return said(
            f"the output group holds {_member_said(config, name)}"
            + unopenable_others(res.group_unopenable)
            + f", {why}: xarray cannot open the group, nor the output in it; ",
            f"{unopenable_fix(res.group_unopenable)}, then verify again (a run of this output "
            "never deletes nor edits it, even with --overwrite)",
        )
    if res.coordinates_differ:
        return said(
            f"the output's coordinates {names_shown(res.coordinates_differ)} are not the "
            "input's (as xarray reads both: edited or lost since the run"
            + (
                f"; {name_shown(res.coordinates_differ[0])}'s {res.coordinate_differences[0]}"
                if res.coordinate_differences
                else ""
            )
            + "): readers see the output's values under other labels; ",
            _run_says(args, config, ("--overwrite",), "`run --overwrite` writes them again"),
        )
    if res.files_differ is not None:
        return said(
            f"the output was damaged since the run ({res.files_differ}), whether or "
            "not a compared block shows it; ",
            _run_says(args, config, ("--overwrite",), "`run --overwrite` writes it again"),
        )
    from pipeline.store.datasets import earlier_release_alone

    if res.metadata_differs and earlier_release_alone(res.metadata_differs):
        return said(  # no edit: an earlier release's output (h88d)
            "the output's metadata is not what this release of the pipeline writes ("
            + "; ".join(res.metadata_differs)
            + "): no edit since the run; ",
            _run_says(args, config, ("--overwrite",), "`run --overwrite` writes it again"),
        )
    if res.metadata_differs:
        more = len(res.metadata_differs) - 1
        return said(
            f"the output's metadata is not what the run wrote ({res.metadata_differs[0]}"
            + (f"; and {more} more" if more else "")
            + "): edited since the run, so readers see other attributes or values than it "
            "holds; ",
            _run_says(args, config, ("--overwrite",), "`run --overwrite` writes it again"),
        )

    def copies_fix() -> str:  # a stale or removed consolidated copy's: `run --resume`
        from pipeline.store.datasets import consolidate_words

        calls = consolidate_words(res.consolidate_calls)
        return _run_says(
            args,
            config,
            ("--resume",),
            f"`run --resume` writes it again from the output's metadata, nothing "
            f"recomputed (as {calls} does)",
        )

    if res.groups_missing:  # its run wrote them; removed since (h86g: verify passed)
        from pipeline.running.output import groups_gone_said

        one = len(res.groups_missing) == 1
        return said(
            f"{groups_gone_said(list(res.groups_missing))}; ",
            _run_says(
                args,
                config,
                ("--resume",),
                f"`run --resume` writes {'it' if one else 'them'} again, nothing recomputed",
            ),
        )
    if res.consolidated_stale:
        more = len(res.consolidated_stale) - 1
        return said(
            f"{res.consolidated_stale[0]}"
            + (f" (and {more} more such difference{'s' if more > 1 else ''})" if more else "")
            + ": readers of that group through its consolidated copy see another group than "
            "it holds (the output itself is as the run wrote it); ",
            copies_fix(),
        )
    if res.consolidated_missing:
        which = " and ".join(
            f"group {g!r}" if g else "the store's root" for g in res.consolidated_missing
        )
        return said(
            f"the output's consolidated metadata, which the run wrote for {which} (its "
            "input's group has some), is gone: `xr.open_zarr` reads the output without it only "
            "with a warning, listing every member; ",
            copies_fix(),
        )
    if res.mismatched and res.status == "complete":  # the table's row had been all it said
        n, units = len(res.mismatched), res.mismatched_units
        return said(
            f"{n} compared block{'s' if n > 1 else ''} of the output "
            f"{'differ' if n > 1 else 'differs'} from what this config computes of the input "
            f"(the first, block {list(res.mismatched[0])}"
            + (f", in output chunk {units[0]}" if units else "")
            + (f" and {len(units) - 1} more" if len(units) > 1 else "")
            + "): written otherwise since the run, or damaged"
            + (
                " (or the input was rewritten since, which its store cannot show)"
                if res.input_unchecked is not None
                else ""
            )
            + "; ",
            _run_says(args, config, ("--overwrite",), "`run --overwrite` writes it again"),
        )
    if res.files_modified is not None and res.checked != res.total:  # --all passed it (h83a)
        return said(
            f"the output's {res.files_modified}, so it is no longer known to hold what the "
            "run wrote, whether or not a compared block shows it (a copy that did not keep "
            "the files' times, cp -r, reads so too): `verify --all` checks every block; ",
            _run_says(args, config, ("--overwrite",), "`run --overwrite` writes it again"),
        )
    return None, None


def _start_dask(args: argparse.Namespace, config: Any) -> None:
    """Before a command that may use a Dask cluster loads anything more: the fork server of a
    local GPU cluster's workers first, so they load their modules while this process loads its
    own (``running/fork_server.py``); then Dask's loggers quieted (:func:`_quiet_dask`)."""
    from pipeline.running import fork_server

    fork_server.start_for(config)
    _quiet_dask(args)


def _started_for_the_command() -> bool:
    """Whether this process was started to run the command in ``sys.argv`` (``python -m
    pipeline ...``, the ``pipeline`` script), not for something else that calls :func:`main`
    later (a notebook's ``%run -m pipeline ...``): its own command line ends with the
    command's arguments."""
    args = sys.argv[1:]
    return sys.orig_argv[len(sys.orig_argv) - len(args) :] == args


def seconds_since_start() -> float | None:
    """Seconds since this process started, to 10 ms (Linux: its start in ``/proc/self/stat``,
    in clock ticks since boot, against the kernel's own clock since boot, which a container's
    made-up ``/proc/uptime`` does not change); None where they cannot be read or disagree."""
    try:
        with open("/proc/self/stat") as f:
            stat = f.read()
        ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22, starttime
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):  # not Linux
        return None
    return age if age >= 0 else None


def _run(args: argparse.Namespace, config: Any) -> int:
    from pipeline.running.runner import RunOptions, run

    _collect_again()  # the run's modules loaded: its work begins
    opts = RunOptions(
        overwrite=args.overwrite,  # None: as output.overwrite says; False: --no-overwrite
        resume=args.resume,
        report=args.report,
        summary_json=args.summary_json,
        progress=_progress(args),
        interval=args.progress_interval,
        process_ends=args.program,  # _leave ends it
    )
    started = seconds_since_start() if args.program else None  # not a caller's process's age
    summary = run(config, opts)
    if started is not None:  # the command's own start counts, as its user sees it
        summary.seconds["start"] = started
        summary.seconds["total"] += started
    try:
        try:
            print_rows(summary.rows(), "run summary")
        finally:  # also where the reader of the table has left (`| head`): the file is asked for
            if args.summary_json:
                # ~/s.json as the checks before the run took it (os.path.expanduser), and as
                # Dask's report (fsspec) takes --report: it had been ./~/s.json here
                with open(os.path.expanduser(args.summary_json), "w") as f:
                    f.write(summary.to_json())
    except KeyboardInterrupt:  # the output is complete all the same
        joined = config.cluster.scheduler != "local"
        raise Interrupted("run", summary.output_array, "complete", joined=joined) from None
    return 0
