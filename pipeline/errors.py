"""The exceptions users see: one line that names the problem and the fix, and a type that says
what kind of problem it is, carrying its data.

Every error the pipeline raises on purpose is a :class:`PipelineError`; the command line prints
``str(error)`` as one line (no traceback unless ``--debug``) and exits non-zero. The subclasses
say where the problem is, so callers and tests can react to the kind and read its fields instead
of matching message text::

    PipelineError
    ├── ConfigError     the config file or one of its values
    │   └── OptionError an unknown keyword option of ``pipeline.run`` (also a TypeError)
    ├── InputError      the input array: missing, unreadable metadata, unsupported, unfinished
    │   └── ChunkError  one stored chunk (or shard) of the input that cannot be decoded
    ├── OutputError     the output location: exists, incomplete, stale, locked, unwritable
    ├── PlanError       the run cannot be laid out: shapes, memory budgets
    ├── StoreError      storage I/O: a full disk, an unreachable store
    │   └── ListingError a folder the store's server refuses to list, where a listing is needed
    ├── ClusterError    the Dask cluster: unreachable scheduler, dying workers
    └── ShadowedModuleError a file of the user's in the place of a module the pipeline imports

Errors travel from Dask workers to the client by pickling; :meth:`PipelineError.__reduce__`
keeps their fields on the way.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import re
import shlex
from collections.abc import Iterable, Sequence
from typing import Any


class PipelineError(Exception):
    """A problem with the user's input, config or environment.

    ``message`` is one line naming the problem and the fix; keyword arguments are the error's
    data (for example ``store`` and ``key`` of a :class:`ChunkError`), set as attributes.
    Raise it before any data is written wherever the problem can be known then.
    """

    def __init__(self, message: str, **data: Any) -> None:
        super().__init__(hide_url_secrets(message))
        self.__dict__.update(
            {k: hide_url_secrets(v) if isinstance(v, str) else v for k, v in data.items()}
        )

    @property
    def data(self) -> dict[str, Any]:
        """The error's fields (everything but the message)."""
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self),), self.__dict__)


_URL_QUERY = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s'\"<>?#]*)\?[^\s'\"<>#]*")


def hide_url_queries(text: str) -> str:
    """``text`` with the query of every URL in it, whatever its scheme, shown as ``?...``.
    The errors of aiohttp (fsspec's HTTP file system) quote the URL they asked for, whose
    query holds ``storage_options``' ``params``, such as a signed URL's token: no line the
    pipeline says or stores shows them (an error that said ``cannot open ...:
    ClientResponseError: 500, ..., url='.../zarr.json?sig=...'`` printed the token). An
    object store's URL with a query (``s3://bkt/out.zarr?X-Amz-Security-Token=...``) is
    refused by the config, but any line that still quotes one hides it too (a '?' in an
    object's name is hidden with it: a line may lose a name's tail, never a credential)."""
    return _URL_QUERY.sub(r"\1?...", text) if "?" in text else text


#: A URL's user information (``scheme://user:password@host``, ``scheme://token@host``): it
#: ends at the host's ``@`` (the last one before the path), and holds no '/', '?', '#' or space.
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*)://([^\s/?#'\"<>]*)@")

#: Schemes whose ``a:b@`` is no credential: fsspec's ``github://org:repo@ref/``.
_NOT_USERINFO = frozenset(("github", "git"))


def _masked_userinfo(m: re.Match[str]) -> str:
    scheme, info = m.group(1), m.group(2)
    if scheme.lower() in _NOT_USERINFO:
        return m.group(0)
    user, colon, _ = info.partition(":")
    if colon:
        return f"{scheme}://{user}:***@"
    if scheme.lower() in ("http", "https"):  # a token as the user (a GitHub token, say)
        return f"{scheme}://***@"
    return m.group(0)  # a user alone (sftp://bob@host): no secret


def hide_url_passwords(text: str) -> str:
    """``text`` with the password of every URL in it (``http://user:password@host/...``,
    which fsspec's HTTP file system sends as Basic authentication, and which other file
    systems may read too) shown as ``***``: ``http://user:***@host/...``; and an HTTP(S)
    URL's user alone (``https://TOKEN@host``, how tokens are often given) as ``***``; but
    not ``github://org:repo@ref`` (fsspec's form, no credential). No line the pipeline says
    and nothing it stores (summaries, the output's attributes, its run record, a run's
    identity) shows a store URL's password; a store URL said or stored goes through this
    (:func:`public_url`)."""
    if "@" not in text:
        return text
    return _URL_SLASHED_PASSWORD.sub(_masked_slashed, _URL_USERINFO.sub(_masked_userinfo, text))


#: A URL's ``user:password@`` whose password holds '/' (``http://user:pa/ss@host/``), which
#: :data:`_URL_USERINFO` does not reach (it had been shown whole); not ``host:PORT/path@x``
#: (a password starting with digits then '/', ``http://host:8080/a@b``, is read as a port).
_URL_SLASHED_PASSWORD = re.compile(
    r"(?i)\b([a-z][a-z0-9+.-]*)://([^\s/?#'\"<>@:]*):(?!\d*(?:[/?#\s'\"<>]|$))"
    r"([^\s?#'\"<>@]*/[^\s?#'\"<>@]*)@"
)


def _masked_slashed(m: re.Match[str]) -> str:
    if m.group(1).lower() in _NOT_USERINFO:
        return m.group(0)
    return f"{m.group(1)}://{m.group(2)}:***@"


def hide_url_secrets(text: str) -> str:
    """``text`` with every URL's query (:func:`hide_url_queries`) and password
    (:func:`hide_url_passwords`) hidden: what every error line and field goes through."""
    return hide_url_passwords(hide_url_queries(text))


def name_shown(text: object) -> str:
    """``text`` as a line says a name or path given by the user: as it is where every character
    prints, else quoted as Python writes it (``'in.zarr\\n'``), so that a line break or
    another control character in it (YAML's ``store: |``) neither splits the one-line error
    nor hides what differs (h78d)."""
    text = str(text)  # a Location or path object said as its text
    return text if text.isprintable() else repr(text)


def names_shown(names: Iterable[Any]) -> str:
    """``names`` (arrays, groups, variables, dimensions, attributes of a store) as a line lists
    them: each as :func:`name_shown` says it, joined by ', '. A group's member named with a
    line break had split the line listing the group's arrays (h79b)."""
    return ", ".join(name_shown(n) for n in names)


def some_shown(names: Sequence[Any], most: int = 3) -> str:
    """The first ``most`` of ``names`` as :func:`names_shown` lists them, then how many more
    there are (``'a, b, c and 4 more'``): a line naming several offending files had named
    the first alone, or three and '...' with no count (h84b)."""
    shown = names_shown(names[:most])
    more = len(names) - most
    return f"{shown} and {more} more" if more > 0 else shown


def some_said(clauses: Sequence[str], most: int = 3) -> str:
    """The first ``most`` of ``clauses`` (each what is wrong with one part, in words) joined
    by '; ', then how many more there are (``'a is x; b is y; c is z; and 4 more'``): as
    :func:`some_shown` names several names, for lines that say something of each (h85b)."""
    said = "; ".join(clauses[:most])
    more = len(clauses) - most
    return f"{said}; and {more} more" if more > 0 else said


def shell_word(text: object) -> str:
    """``text`` as a command that a line gives to run says it, one word of a POSIX shell
    (``shlex.quote``), and on one line: where a character does not print (a config's path
    holding a line break), in bash's ``$'...'`` quoting, whose escapes say it (``$'c\\n.yaml'``),
    where ``shlex.quote`` had kept the line break and split the line (h81c)."""
    import shlex

    text = str(text)
    if text.isprintable():
        return shlex.quote(text)
    return "$'" + "".join(_ansi_c(c) for c in text) + "'"


def _ansi_c(c: str) -> str:
    """The character ``c`` inside bash's ``$'...'``: as it is where it prints (but ``'`` and
    ``\\``, escaped), else its escape (``\\n``, ``\\x1b``, ``\\u2028``)."""
    if c in "'\\":
        return "\\" + c
    if c.isprintable():
        return c
    named = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(c)
    if named is not None:
        return named
    code = ord(c)
    return (
        f"\\x{code:02x}"
        if code < 0x80
        else f"\\u{code:04x}"
        if code < 0x10000
        else f"\\U{code:08x}"
    )


def public_url(url: str) -> str:
    """A store URL (or path) as the pipeline says and stores it: its password masked
    (:func:`hide_url_passwords`); the URL itself otherwise."""
    return hide_url_passwords(url)


#: What an option's name must look like to be said: a file system option's, lower-case words
#: joined by '_' (``endpoint_url``, ``s3_additional_kwargs``), at most 40 characters and
#: 2 digits; a key, secret or token (mixed case, or many digits) is none.
_OPTION_NAME = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*")


#: Parts of option names that hold credentials (s3fs's ``key``, ``secret``, ``token`` and
#: their aliases ``username`` and ``password``, FTP's, SFTP's and SMB's, gcsfs's ``token``,
#: adlfs' ``account_key``, ``sas_token``, ``client_secret``, ``credential``, ...): a summary
#: masks the values of options so named (``models._masked``), and a store's options holding
#: one carry credentials (:func:`~pipeline.store.location.option_credentials`).
CREDENTIAL_PARTS = ("key", "secret", "token", "username", "password", "credential", "sas")


def names_credential(name: Any) -> bool:
    """Whether the option ``name`` is one that holds a credential (:data:`CREDENTIAL_PARTS`
    in it, in any case)."""
    return any(part in str(name).lower() for part in CREDENTIAL_PARTS)


def said_option(name: Any) -> Any:
    """An option's name (a key of ``storage_options``) as it may be said: itself where it
    looks like a file system's option (:data:`_OPTION_NAME`), else ``'***'``. YAML's flow
    mapping ``{secret:VALUE, key: ...}``, no space after the colon, makes one option NAMED
    ``secret:VALUE``, and ``{key: AK, VALUE}`` (a secret without its ``secret:``) one named
    ``VALUE``, which the library's error ("unexpected keyword argument 'VALUE'") and a
    ``repr`` had shown: a name no file system takes is never said."""
    if not isinstance(name, str) or len(name) > 40 or sum(c.isdigit() for c in name) > 2:
        return "***"
    return name if _OPTION_NAME.fullmatch(name) else "***"


def said_names(options: Any) -> dict[Any, Any]:
    """Each key of the mapping ``options`` and its name as said (:func:`said_option`), no
    two alike: a hidden name is ``***``, the next ones ``***2``, ``***3``, ... in order. A
    mapping shown with the names :func:`said_option` gives had kept one of two hidden
    options (``{secret:A, token:B}`` showed as ``{'***': '***'}``, and a summary as the
    second's value under the first's place)."""
    out: dict[Any, Any] = {}
    hidden = 0
    for k in options:
        said = said_option(k)
        if said is not k:  # hidden (a plain name is said as itself)
            hidden += 1
            said = "***" if hidden == 1 else f"***{hidden}"
        out[k] = said
    return out


def hidden_options(options: Any) -> Any:
    """A store's ``storage_options`` as a ``repr()`` shows them: every key, and every value
    (at any depth of mappings) as ``***``, whatever its name or type (an empty one, or None,
    as it is). What the config's models, :class:`~pipeline.store.location.Location` and
    everything holding them (a plan: ``pipeline.plan(cfg)`` ending a notebook's cell) show:
    a ``repr`` has no use for the values and cannot guess which of them are credentials
    (brk76: the key and secret had been displayed). Summaries keep what is not secret
    (``models._masked``). A key that is no plain name is hidden too (:func:`said_option`),
    each as a name of its own (:func:`said_names`)."""
    if isinstance(options, dict):
        names = said_names(options)
        return {names[k]: hidden_options(v) for k, v in options.items()}
    return options if options in ("", None) or options == {} else "***"


class ConfigError(PipelineError):
    """The config: malformed YAML, an unknown key, a value of the wrong type or range, settings
    that contradict each other; or a command-line option that cannot be honoured.

    Fields: ``file`` (``the config mapping`` for a mapping given to the API), ``line``
    (1-based; None where unknown) and ``key`` (dotted, such as ``cluster.gpus``) as far as
    they are known (a refusal of a key found after the config was read is given its file and
    line, or the mapping, by ``pipeline.config.loading.locate``); ``option`` for a
    command-line option; ``removed`` (why) for a key that this version removed; ``override``
    (its dotted key) for a value that an override of ``load_config`` set, not the file
    (``line`` is then None).
    """


class OptionError(ConfigError, TypeError):
    """An unknown keyword option of :func:`pipeline.run`, or an option's value of the wrong
    kind (``config`` and ``client`` too: ``option`` 'config' or 'client'): a ``TypeError``,
    as Python raises for an unknown keyword, and a :class:`ConfigError`. Fields: ``option``
    (the unknown or wrong one), ``valid`` (the options there are, or the values this one
    takes), ``suggestion`` (the closest, or None)."""


class InputError(PipelineError):
    """The input array: absent, not an array, an unsupported dtype or codec, unfinished.

    Fields, as they apply: ``store`` (where the array is: the store and ``array``, the path in
    it, joined; ``input`` where the check is of a whole input), ``status`` ('absent',
    'unreadable', 'group', 'incomplete', or 'foreign' for data that ``generate`` would not
    replace, 'blocked' for a path it cannot write under a Zarr array or a file, with
    ``blocking`` and ``node`` as an OutputError's, 'stray' for an input it made whose folder
    holds other files since, with ``stray``, their keys below it, 'differs' for an input it
    made from another ``input.generate`` than the config's, with ``differs``, each differing
    field's stored value and the config's), ``dtype``, ``shape`` and ``chunks``, ``region``
    (one zarr-python cannot read), ``variable``, ``attributes`` and ``fix`` (the setting
    that decodes a packed variable); for a Dataset whose consolidated metadata is stale,
    ``member`` (the array it describes otherwise) and ``differs`` (what: metadata fields,
    'unlisted' or 'gone'); for coordinates of another size, ``coordinate``,
    ``dimension``, ``size`` and ``expected``; for a damaged NCZarr record of the array's
    dimensions, ``file`` (its ``.zarray``); for a codec with no implementation here, ``codec``
    (its name in the metadata), ``reason`` and ``fix``; ``rewrites_input``, True where the fix
    is a rewrite of the input's own data (a damaged chunk restored, an element or attribute
    written: every :class:`ChunkError`, an element its decoding cannot hold), which changes
    the input, so that a resume of an output it stopped then refuses it and `run
    --overwrite` starts over (h86f); absent where the fix leaves the input as it is (a store
    that would not answer, a codec missing here: a resume finishes the output then).
    """


class ChunkError(InputError):
    """A stored unit of the input (a chunk, or a shard of chunks) that cannot be decoded to
    exactly its size: truncated, short, empty, a bad shard index or checksum.

    Fields: ``store`` (the input store's URL), ``key`` (the unit's key in the store),
    ``reason`` (what is wrong with it, in a few words), ``problem`` (its kind: 'size',
    'frame', 'checksum', 'index' or 'codec', as ``pipeline.store.shards.PROBLEMS`` says);
    ``coordinate`` (the array's name) where the unit is of an array carried beside the
    variable (a Dataset's coordinate, bounds, ...), not of the variable itself.
    """

    store: str
    key: str
    reason: str
    problem: str

    def __init__(self, message: str, **data: Any) -> None:
        # a damaged unit is mended in the input, always (h86f): ``rewrites_input``
        super().__init__(message, **{"rewrites_input": True, **data})


class OutputError(PipelineError):
    """The output location: it exists, is incomplete, is stale, is locked by another run, is
    not writable, or overlaps the input (and, for ``schema --update``, the document updated).

    Fields: ``output`` (where), and as they apply ``status`` (what is there: 'absent',
    'complete', 'incomplete', 'remains', 'foreign', 'occupied', 'not-zarr'; 'blocked' for a
    path under a Zarr array or a file, with ``blocking``, where that is, and ``node``, its
    kind: 'array', 'v2 array', 'damaged' or 'file'), ``stray`` (files in an output array's
    folder that are not the array's), ``region`` (a region of it zarr-python cannot read),
    ``changed``
    (what differs from the run that made it), ``holder`` (the run holding its lock: ``pid``,
    ``host``, ``since``), ``lock``, ``directory`` (the one that cannot be written),
    ``archive`` (the kind of archive it is inside), ``input`` and ``relation`` (an output
    overlapping the input; 'linked' through a folder's symbolic link, with ``link`` and
    ``target``, where it leads), ``path`` (a file or folder in it that cannot be deleted),
    ``unstamped`` (why a resume cannot tell the input unchanged: its store gives no change
    stamps).
    """


class PlanError(PipelineError):
    """The run cannot be laid out: misaligned shapes, or memory that does not fit a budget
    (found by the plan, or by a task that ran out of it); a config this machine cannot run.

    Fields, as they apply: ``key`` (the dotted key of the config it refuses: ``output.shards``,
    ``chunking.block``, ``cluster.host_memory_limit``, ``backend``, ``stages.0.factor``, or
    ``stages.0`` for a stage that overflows; for memory that does not fit or ran out, the
    setting its first fix changes, ``cluster.threads_per_worker`` say; ``output.array`` for
    carried arrays too large to read), and then, as a :class:`ConfigError`'s, ``file``
    and ``line`` (where the key is: the command line's config file and its line, the
    message beginning ``c.yaml:6:``, of a path or of a Config ``pipeline.load_config`` read;
    ``the config mapping`` and None for a mapping given to the API:
    ``pipeline.config.loading.locate``), ``block``, ``shape``, ``multiple_of``,
    ``block_that_fits``, the budgets and projections (``host_budget``, ``host_per_worker``,
    ``device_budget``, ``device_per_worker``), ``memory`` ('host' or 'gpu', for a task out of
    memory), ``stage``, ``position``, ``dtype``, ``advice`` (a stage's refusal: the fix its
    line names, the config's own).
    """


class StoreError(PipelineError):
    """Storage I/O failed: a full disk or quota, an unreachable store.

    Fields: ``store`` (a URL that cannot be opened) or ``where`` (what was being written).
    """


class ListingError(StoreError):
    """A store whose server refuses to list a folder (an HTTP server without folder listings,
    nginx without ``autoindex``: a GET of the folder's URL answers 403 or 405) where the
    pipeline needs that listing. An input is read without one (its keys follow from its
    metadata); this is raised only where nothing else tells what a folder holds.

    Fields: ``store`` (the store's URL), ``folder`` (the address that was refused),
    ``failure`` (what the server answered: 'HTTP 403 Forbidden').
    """


class ClusterError(PipelineError):
    """The Dask cluster: an unreachable or wrong scheduler address, no workers, workers that
    keep dying, a lost scheduler.

    Fields: ``reason`` ('unreachable', 'not-scheduler', 'http', 'not-dask', 'no-workers',
    'malformed', 'did-not-start', 'lost', 'workers-died', 'closed' for a closed
    ``distributed.Client`` given to :func:`pipeline.run`, 'protocol' for a scheduler address
    whose protocol Dask here cannot connect over, with ``protocol`` and ``available``, the
    ones it can, 'not-running' for a joined scheduler whose workers are none of them running
    within the timeout, with ``states``, {Dask's worker status ('paused', 'closing_gracefully',
    ...): workers}, 'missing-package' for a joined cluster's workers that cannot open a store
    for want of its file system's package, with ``store``, ``workers`` and ``cause``,
    'no-pipeline' for workers whose Python has no pipeline and 'other-pipeline' for workers
    running another version of it, with ``module`` (and ``name``, what theirs lacks), or
    ``workers``, ``theirs`` and ``ours`` (version, source digest, folder: one of the same
    version edited too), 'tls' for a ``tls://`` address this process's TLS settings cannot
    join; 'no-answer' for workers that did not answer the run's question within
    ``cluster.timeout``, with ``workers`` (``running.cluster.ask_workers``); 'unreachable'
    said at once has ``cause``: 'refused', 'unknown-host', 'no-route'),
    ``address`` (the scheduler's, or
    'local' for a local cluster), ``timeout`` (seconds waited for an answer), ``task`` (the
    one workers died running, its key; with ``deaths``, how many, ``worker``, the last one's
    address, and its ``memory_limit``, bytes or None), ``during`` (for 'lost': what the run
    was doing, 'connect', 'plan', 'setup' or 'compute'; only 'compute' may leave an output,
    incomplete and resumable; and ``cause``, the error that said so, in a word or two).
    """


class ShadowedModuleError(PipelineError):
    """A file of the user's takes the place of a module the pipeline imports (a ``queue.py``
    beside the script that calls :func:`pipeline.run`, which Python puts first on
    ``sys.path``), and the error came from or through it (:mod:`pipeline.shadowing`): raised
    in place of that error (its ``__cause__``), a library's or a step's that blamed the input
    for it.

    Fields: ``files`` (the files), ``modules`` (the modules they take the place of, in the
    same order).
    """


class Interrupted(KeyboardInterrupt):
    """The user pressed Ctrl-C (or the process got SIGTERM) during ``what``: 'run' or
    'generate' (the input ``where`` is unfinished: generate it again; ``state`` 'untouched'
    where it stopped before it began to make the input, which is as it was). A run's ``state`` says
    what its output ``where`` holds: 'incomplete' (resumable: ``pipeline.run(...,
    resume=True)`` or ``run --resume`` finishes it), 'untouched' (the run stopped before it
    wrote anything), 'creating' (it stopped while it replaced what was at the output: only
    ``run --overwrite`` starts over), 'creating-new' (it stopped while it made an output
    where nothing was: ``run --overwrite`` starts over), 'unresumable' (incomplete, of an
    input whose store gives no change stamps, so a resume is refused: ``run --overwrite``
    starts over) or 'complete' (the interrupt came after the output was complete, while the
    workers stopped). A ``KeyboardInterrupt``, so what catches Ctrl-C in
    a notebook or script catches it; not a :class:`PipelineError` (nothing is wrong with the
    config or data). ``str()`` is one line saying so; the command line prints its own and
    ends with status 130 (the program dies of a SIGINT that stopped it, as Python does)."""

    def __init__(
        self,
        what: str = "run",
        where: str = "",
        state: str = "incomplete",
        refused: str = "",
        joined: bool = False,
    ) -> None:
        super().__init__(_interrupted_line(what, where, state, refused))
        self.what = what
        self.where = where
        self.state = state
        self.refused = refused
        """``run``'s own refusal, where it refuses the command the ``state`` names (asked
        once the run's lock is given up: an input rewritten during the run, a run record
        gone); it says what ``run`` takes there instead, or that none writes there. "" where
        ``run`` takes that command, or for a state that names none."""
        self.joined = joined
        """The work ran on a cluster it did not start (``cluster.scheduler``'s, or a client
        given): its tasks are cancelled, and that cluster's workers keep running. False: the
        workers were the run's own, and are stopped."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.what, self.where, self.state, self.refused, self.joined))


#: What a line says to run next where the command that finishes an output depends on what the
#: user does first: a fix that rewrites the input's files (a chunk restored, permissions
#: changed, which change its files' status-change times) makes a resume refused, one that
#: does not keeps it possible. ``pipeline verify`` asks ``run`` then (``run_accepts``).
VERIFY_NAMES = "`pipeline verify` with the run's config names the command that finishes the output"
#: :data:`VERIFY_NAMES` as :func:`api_words` says it to a caller of the API.
API_VERIFY_NAMES = "`pipeline.verify(config)` names the call that finishes the output"

#: The ``run`` command the line of an :class:`Interrupted` run names, by its ``state``.
INTERRUPTED_FLAG = {
    "incomplete": "--resume",
    "unresumable": "--overwrite",
    "creating": "--overwrite",
    "creating-new": "--overwrite",
}


def _interrupted_line(what: str, where: str, state: str = "incomplete", refused: str = "") -> str:
    """The one line of an :class:`Interrupted`: for a run, ``run``'s ``refused`` where it
    refuses the command the ``state`` names."""
    if what == "generate" and state != "untouched":  # untouched: before it made the input
        the_input = f"the input {name_shown(where)}" if where else "the input"
        return f"interrupted: {the_input} is unfinished: generate it again"
    the_output = f"the output {name_shown(where)}" if where else "the output"
    if refused:
        return f"interrupted: {the_output} is unfinished; {refused}"
    if state == "untouched":
        return "interrupted: nothing was written"
    if state == "complete":
        return f"interrupted: {the_output} is complete"
    if state == "unresumable":
        return (
            f"interrupted: {the_output} stays incomplete; its input's store gives no change "
            "stamps, so a resume could not tell a rewrite of it: run again with overwrite=True "
            "(`pipeline run --overwrite`) to start over"
        )
    if state in ("creating", "creating-new"):
        gone = " (what was there before is gone)" if state == "creating" else ""
        return (
            f"interrupted while {the_output} was being made{gone}: "
            "run again with overwrite=True (`pipeline run --overwrite`) to start over"
        )
    return (
        f"interrupted: {the_output} stays incomplete and resumable: run again with "
        "resume=True (`pipeline run --resume`) to finish it"
    )


#: A command line's ``run`` with its flag that :func:`api_words` says as :func:`pipeline.run`'s
#: call (`run --resume`, `pipeline run --overwrite`); not one that a line already gives as the
#: option's, ``overwrite=True (`pipeline run --overwrite`)``.
_CLI_RUN = re.compile(r"(?<!=True \()`(?:pipeline )?run --(overwrite|resume)`")
#: A flag alone (``even with --overwrite``, ```--overwrite` too``); not one a line already
#: gives with the option, ``--overwrite (overwrite=True in pipeline.run)``.
_CLI_FLAG = re.compile(r"(?<!run )(`?)--(overwrite|resume)(?![\w-])\1(?! \(\2=True)")


#: A plain ``run`` of a config that sets ``output.overwrite: true``, which replaces the output
#: (:func:`pipeline.running.runner.settled`), as a line names it (:func:`as_configured`).
PLAIN_RUN = "`run` (output.overwrite: true)"


def as_configured(line: str, overwrite: bool) -> str:
    """``line``, words that name commands of ``run``, as they hold for a config whose
    ``output.overwrite`` is ``overwrite``. Where it is true, a plain ``run`` replaces the
    output: the `run --overwrite` named is that plain run (:data:`PLAIN_RUN`, as ``pipeline
    plan`` says it, h60j), and where `run --resume` is named as what finishes the output,
    the line adds that the plain run starts over, throwing away the blocks written: ``plan``,
    ``verify`` and a stopped run's line had named `run --resume` alone, of a config whose
    plain run (``make run``) a user runs and which starts over. Unchanged where it is false."""
    if not overwrite:
        return line
    line = line.replace("`run --overwrite`", PLAIN_RUN)
    if "`run --resume` finishes" in line and PLAIN_RUN not in line:
        line += f"; {PLAIN_RUN} starts over"
    return line


#: What a refusal of an output that is there says replaces it (``... to replace it``, ``... to
#: write the variable into it beside them``): the flag and the call's option, as a run that
#: did not say no to replacing it is told.
REPLACE_ADVICE = "pass --overwrite (overwrite=True in pipeline.run) to "


#: :data:`REPLACE_ADVICE` as a run that said no to replacing its output (``run
#: --no-overwrite``, ``pipeline.run(config, overwrite=False)``) is told: the output is kept, as
#: asked, and its two choices, another ``output.store`` or the run that replaces it
#: (``--overwrite`` in place of ``--no-overwrite``, named as itself whatever the config's
#: ``output.overwrite``, not as the plain run said no to); the refusal is made so
#: (:func:`pipeline.running.output.decide_start`'s ``declined``), its error line and the dry
#: run's row alike. The line had said "pass --overwrite" to a user who had just passed
#: ``--no-overwrite``.
KEPT_ADVICE = (
    "it is kept, as --no-overwrite asks: choose another output.store, or run with --overwrite "
    "in place of --no-overwrite to "
)
#: :data:`KEPT_ADVICE` as :func:`api_words` says it to a caller of the API.
API_KEPT_ADVICE = (
    "it is kept, as overwrite=False asks: choose another output.store, or call "
    "`pipeline.run(config, overwrite=True)` to "
)


def api_words(line: str) -> str:
    """``line``, an error's words for the command line, as :func:`pipeline.run` and
    :func:`pipeline.plan` raise it: ``run --overwrite`` and ``run --resume`` said as the call
    (```pipeline.run(config, overwrite=True)```), a flag alone as the option
    (``even with overwrite=True``), a plain run (:data:`PLAIN_RUN`) as the plain call, the
    command that names what finishes an output (:data:`VERIFY_NAMES`) as ``pipeline.verify``'s
    call (a damaged input chunk's line had named `pipeline verify` to an API caller), and the
    other commands a call does (:data:`_CLI_CALLS`: `pipeline verify`), the output kept as
    ``--no-overwrite`` asks as ``overwrite=False`` does (:data:`API_KEPT_ADVICE`), and a
    plain `run` as the plain call (h72a: ``pipeline.plan(config).output_now`` had said
    "`run` creates it", its notes "`run` generates it first"). Where a line gives both forms
    already, it is kept: the
    commands a refusal names are the same, only said as the caller gives them (an API user was
    told `run --overwrite` with no word of ``overwrite=True``)."""
    line = line.replace(KEPT_ADVICE, API_KEPT_ADVICE)
    line = _CLI_RUN.sub(r"`pipeline.run(config, \1=True)`", line)
    line = line.replace(PLAIN_RUN, "`pipeline.run(config)` (output.overwrite: true)")
    line = line.replace(VERIFY_NAMES, API_VERIFY_NAMES)
    for command, call in _CLI_CALLS:
        line = line.replace(command, call)
    line = line.replace("`run`", "`pipeline.run(config)`")  # a plain run: `run` creates it
    return _CLI_FLAG.sub(r"\1\2=True\1", line)


#: What :func:`make_words` says otherwise: a command of the pipeline a line names, in
#: backquotes (`run --overwrite`, `pipeline verify`, `pipeline run CONFIG`, `verify --samples
#: 3`, `pipeline generate c.yaml`: groups ``command`` and ``flags``), or a flag it names bare
#: (``even with --overwrite``, ``run with --debug``: group ``flag``).
_MAKE_SAYS = re.compile(
    r"`(?:pipeline )?(?P<command>run|verify|plan|generate)(?P<flags>(?: --?[-\w]+(?: \d+)?)*)"
    r"(?: (?:CONFIG|[^`\s-][^`\s]*))?`"
    r"|(?<![\w`'=/.-])(?P<flag>--[a-z][-a-z]*)(?![\w`'/-])"
)
#: The make target that runs each command (Makefile).
_MAKE_TARGETS = {"run": "run", "verify": "verify", "plan": "plan", "generate": "data"}
#: The variable the Makefile sets for the pipeline's commands it runs: the CONFIG it gives.
MAKE_CONFIG_VARIABLE = "PIPELINE_MAKE_CONFIG"
#: The variable the Makefile sets where it was given ``PYTHON`` (an interpreter prepared on a
#: host with no package registry): what the commands a line names pass again.
MAKE_PYTHON_VARIABLE = "PIPELINE_MAKE_PYTHON"


def make_words(line: str, config: str, python: str | None = None) -> str:
    """``line``, words the command line prints, as a command that ``make`` ran with
    ``CONFIG=config`` says them: a command of the pipeline it names as the make target that
    runs it, its flags in ``ARGS`` (`run --overwrite` as `make run CONFIG=c.yaml
    ARGS=--overwrite`), and a flag named bare as ``ARGS=`` gives it (``pass --overwrite`` as
    ``pass ARGS=--overwrite``): ``make run --overwrite`` is make's own option, which make
    refuses or takes for itself (new-user trial: `make run ARGS=--dry-run` was told to pass
    --overwrite). ``python``: the ``PYTHON`` make was given, passed again by each command
    named (``make run CONFIG=c.yaml PYTHON=python3``: without it make would make ``.venv``
    and install there, which a host with no package registry cannot, h85d); None or blank:
    none given."""
    interpreter = f" PYTHON={shlex.quote(python)}" if python and python.strip() else ""

    def said(m: re.Match[str]) -> str:
        if m.group("flag"):
            return f"ARGS={m.group('flag')}"
        flags = m.group("flags").strip()
        args = "" if not flags else f" ARGS={flags}" if " " not in flags else f" ARGS='{flags}'"
        # a CONFIG holding spaces or quotes, one shell word as the line names it
        target = _MAKE_TARGETS[m.group("command")]
        return f"`make {target} CONFIG={shlex.quote(config)}{interpreter}{args}`"

    return _MAKE_SAYS.sub(said, line.replace(REPLACE_ADVICE, "pass --overwrite to "))


#: The other commands a line names that a call of the API does, as :func:`api_words` says
#: them (h71u: a complete output edited since had told ``pipeline.run``'s caller "`pipeline
#: verify` says what differs", an unfinished generated input "`pipeline run CONFIG`
#: generates it again first", and the input that is an interrupted run's output "`pipeline
#: verify` with the config that made it"). ``pipeline generate`` has no call: it stays.
_CLI_CALLS = (
    ("`pipeline run CONFIG`", "`pipeline.run(config)`"),
    ("`pipeline verify --all`", "`pipeline.verify(config, all=True)`"),
    ("`pipeline verify`", "`pipeline.verify(config)`"),
)


#: What a run's line says to do once its cause is fixed: the output it leaves is resumable.
RESUME_FINISHES = "`run --resume` finishes the output"
#: What a run's line says where the output it leaves holds nothing a resume keeps: it stopped
#: while it made the output (or replaced what was there), or its input's store gives no change
#: stamps; a fresh start makes it.
OVERWRITE_STARTS_OVER = "`run --overwrite` starts over"
#: What a run's line says where it stopped before it wrote anything at the output.
RUN_AGAIN = "run again: nothing was written"
#: What a line of ``generate`` (or of a run generating its input) says to do once its cause is
#: fixed: the input it leaves is unfinished, and only generating it again finishes it.
GENERATE_AGAIN = "generate it again"

#: What a run's line says to do, once its cause is fixed, by what its output holds (the
#: states of :class:`Interrupted`: the same commands as its lines name).
RUN_THEN = {
    "untouched": RUN_AGAIN,
    "creating": OVERWRITE_STARTS_OVER,
    "creating-new": OVERWRITE_STARTS_OVER,
    "unresumable": OVERWRITE_STARTS_OVER,
    "incomplete": RESUME_FINISHES,
}


def disk_full(e: OSError, where: str, then: str = RESUME_FINISHES) -> StoreError | None:
    """The one-line error for a full disk (or quota) while writing ``where``, saying to free
    space and ``then`` what finishes the work (:data:`RESUME_FINISHES` for a run's output,
    which the run says again by what its output then holds, :data:`RUN_THEN`;
    :data:`GENERATE_AGAIN` for a generated input), or for a file larger than the file system
    or this process's file size limit takes (``EFBIG``: ``ulimit -f``, a FAT32 drive's 4 GiB),
    saying so; None otherwise. Fields ``where``, ``reason`` (the file system's words) and
    ``full`` ('space' or 'size')."""
    import errno

    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return no_space(where, e.strerror or "no space left on the device", then)
    if e.errno == errno.EFBIG:
        return no_space(where, e.strerror or "file too large", then, "size")
    return None


def no_space(where: str, reason: str, then: str, full: str = "space") -> StoreError:
    """:func:`disk_full`'s line, from its fields (``where``, ``reason``, ``full``) and
    ``then``."""
    if full == "size":
        return StoreError(
            f"file too large writing {name_shown(where)} ({reason}): the file system, or this "
            "process's "
            f"file size limit (ulimit -f), takes no file this large; raise the limit, or write "
            f"to a file system that takes larger files; then {then}",
            where=where,
            reason=reason,
            full=full,
        )
    return StoreError(
        f"no space left writing {name_shown(where)} ({reason}): free space; then {then}",
        where=where,
        reason=reason,
        full=full,
    )


def said_then(e: BaseException, then: str) -> StoreError | None:
    """``e``, a :func:`disk_full` line, saying ``then`` as what to do once space is freed
    (a line made where what the work leaves was not known: a write's, deep in a store);
    None for any other error."""
    if not isinstance(e, StoreError):
        return None
    where, reason, full = (e.data.get(k) for k in ("where", "reason", "full"))
    if not (isinstance(where, str) and isinstance(reason, str) and full in ("space", "size")):
        return None
    return no_space(where, reason, then, full)


#: What gives an S3 store credentials: the words of every refusal for their absence.
CREDENTIALS_FIX = (
    "give its storage_options key and secret, set AWS_ACCESS_KEY_ID and "
    "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), or set storage_options: {anon: true} for a public "
    "bucket"
)


def no_credentials_error() -> StoreError:
    """The StoreError for an S3 store reached with no credentials at all (botocore's
    ``NoCredentialsError``, :func:`missing_credentials`) where no step of the pipeline said
    it: the line the command line prints, which the Python API raises too. Field ``reason``:
    ``"no-credentials"``."""
    return StoreError(
        "an S3 store needs credentials, and none were found (botocore: Unable to locate "
        f"credentials): {CREDENTIALS_FIX}",
        reason="no-credentials",
    )


def missing_credentials(e: BaseException) -> bool:
    """Whether ``e``, or an error it came from, is botocore's ``NoCredentialsError`` (an S3
    store reached with no credentials at all; s3fs passes it on as it is)."""
    seen: list[BaseException] = []
    x: BaseException | None = e
    while x is not None and not any(x is s for s in seen):
        seen.append(x)
        if type(x).__name__ == "NoCredentialsError":
            return True
        x = x.__cause__ or x.__context__
    return False


def wrong_library(e: BaseException) -> str | None:
    """The top-level name of the module that ``e`` shows is not the library the code needs,
    though this Python imported one of that name: an ImportError naming a module of it
    (``zarr.errors`` where ``zarr`` is a file, ``zarr.py``), or an AttributeError raised on the
    module itself (``module 'yaml' has no attribute 'SafeLoader'``: a ``yaml.py`` of the
    user's in the folder the command runs in, or a release without it). None for anything
    else: a module that is not there at all, an attribute missing from another object, or
    the pipeline's own modules (a fault of the pipeline, not of what is installed)."""
    import sys
    import types

    if isinstance(e, ImportError) and e.name:
        name = e.name
    elif isinstance(e, AttributeError) and isinstance(getattr(e, "obj", None), types.ModuleType):
        name = e.obj.__name__  # type: ignore[attr-defined]
    else:
        return None
    top = name.split(".")[0]
    if top == "pipeline" or sys.modules.get(top) is None:
        return None
    return top


def kind_said(value: Any) -> str:
    """What ``value`` is, in the plain words a one-line refusal says of a value given where
    another kind is wanted, never the value itself (it may hold anything): ``an integer``,
    ``a number``, ``text``, ``true/false``, ``a date``, ``a date and time``, ``a list of
    integers``, ``a mapping``, ``None``;
    a NumPy value as NumPy's (``a NumPy int64``, ``a NumPy array``); any other object by its
    library's name and its type's (``a zarr LocalStore``, ``an fsspec FSMap``, ``an xarray
    Dataset`` and ``an xarray DataArray``, which had been ``a mapping`` and ``a xarray
    DataArray``). Python's
    names for its types (``builtins.int``, ``a value of type bytes``, ``not int``) had been
    said."""
    import datetime
    import numbers
    import os
    from collections.abc import Mapping, Set

    t = type(value)
    top = t.__module__.partition(".")[0]
    if value is None:
        return "None"
    if isinstance(value, bool) or (top == "numpy" and t.__name__.startswith("bool")):
        return "true/false"
    if top == "numpy" and hasattr(value, "dtype"):
        shape = getattr(value, "shape", ())
        return "a NumPy array" if shape else f"a NumPy {value.dtype.name}"
    if isinstance(value, numbers.Integral):
        return "an integer"
    if isinstance(value, numbers.Real) or t.__name__ == "Decimal":
        return "a number"
    if isinstance(value, numbers.Complex):
        return "a complex number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, (bytes, bytearray)):
        return "bytes"
    if isinstance(value, datetime.datetime):  # YAML's timestamps and dates
        return "a date and time"
    if isinstance(value, datetime.date):
        return "a date"
    if isinstance(value, os.PathLike):
        return "a path"
    if top == "xarray":  # a Dataset is a mapping of its variables, but said as what it is
        return f"an xarray {t.__name__}"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, Set):
        return "a set"
    if isinstance(value, (list, tuple)):
        items = {kind_said(v) for v in value}
        if not value:
            return "an empty list"
        if len(items) == 1 and (item := items.pop()) in _PLURAL:
            return f"a list of {_PLURAL[item]}"
        if items <= {"an integer", "a number"}:
            return "a list of numbers"
        return "a list"
    kind = t.__name__ if top == "builtins" else f"{top} {t.__name__}"
    return f"{'an' if kind[0].lower() in 'aeiou' or top == 'fsspec' else 'a'} {kind}"


#: The items of a list as :func:`kind_said` says them, by what it says of one.
_PLURAL = {
    "an integer": "integers",
    "a number": "numbers",
    "text": "text",
    "true/false": "true/false values",
    "a mapping": "mappings",
    "a list": "lists",
}


def one_line(text: str) -> str:
    """``text`` with its runs of whitespace, line breaks too, as one space: a library's message
    quoted in a line of the pipeline's (numcodecs' checksum errors hold a newline)."""
    return " ".join(text.split())


def single_line(text: str) -> str:
    """``text``, a line the command line prints (``error: ...``), kept one line: each line
    break (any that ``str.splitlines`` splits at), with the spaces and tabs around it, as one
    space, and nothing else changed; the catch-all for a name or path said bare where it
    holds a line break (``cli._failed``: a scheduler's address given with one had split the
    line, h81c). Not :func:`one_line`, which also makes a run of spaces one, and would say a
    name holding two (``'a  b.zarr'``, shown bare) as another."""
    return _BREAKS.sub(" ", text.strip("\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"))


#: A line break (each character ``str.splitlines`` splits at), with the spaces and tabs
#: around it.
_BREAKS = re.compile("[ \t]*[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]+[ \t]*")


def cause(e: BaseException) -> str:
    """``e`` quoted as a line's cause, in one line: its type's name and its message
    (:func:`one_line`)."""
    return one_line(f"{type(e).__name__}: {e}")


def _decompressor_refused(e: BaseException) -> bool:
    """Whether ``e``, an ``OSError``, was raised inside one of Python's decompression modules
    (:data:`_DECOMPRESSORS`): bz2 says 'Invalid data stream' of damaged bytes with a bare
    ``OSError`` (numcodecs' BZ2), as gzip says 'Not a gzipped file' with its ``BadGzipFile``
    (numcodecs' GZip), neither the store's answer."""
    tb = e.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and tb.tb_frame.f_globals.get("__name__") in _DECOMPRESSORS


#: Python's decompression modules, whose ``OSError`` is damaged bytes' (:func:`storage_failure`).
_DECOMPRESSORS = frozenset({"bz2", "gzip", "lzma", "zlib", "_compression"})


def storage_failure(e: BaseException) -> str | None:
    """What a store answered where reading failed, in a few words, when ``e`` (or an error it
    came from: a reference file system's ``ReferenceNotReachable`` wraps its target's) is the
    storage's failure rather than the bytes': an HTTP status ('HTTP 403 Forbidden', from
    aiohttp's ``ClientResponseError``, as fsspec's HTTP file system raises it), or an
    ``OSError`` (permission, connection, timeout) other than a missing file, which reads as
    the fill value, and other than one a Python decompressor raised for the bytes it was given
    (:func:`_decompressor_refused`). None for anything else (a codec's error: damaged
    bytes)."""
    seen: list[BaseException] = []
    x: BaseException | None = e
    while x is not None and not any(x is s for s in seen):
        seen.append(x)
        status = getattr(x, "status", None)
        if type(x).__name__ == "ClientResponseError" and isinstance(status, int):
            return f"HTTP {status} {getattr(x, 'message', '') or ''}".strip()
        damage = isinstance(x, gzip.BadGzipFile) or _decompressor_refused(x)  # bz2's OSError
        if isinstance(x, OSError) and not isinstance(x, FileNotFoundError) and not damage:
            said = s3_said(x)  # an S3 answer: its errno is s3fs's, no file system's
            return cause(x) if said is None else f"{cause(x)} ({said})"
        if type(x).__name__.startswith("Client") and "aiohttp" in type(x).__module__:
            return cause(x)  # a connection lost or refused
        x = x.__cause__ or x.__context__
    return None


#: The permission (IAM action) that each S3 request s3fs makes needs, by botocore's name of
#: the request: a HEAD is a read, a multipart upload's parts and a copy are writes.
S3_PERMISSIONS = {
    "ListObjectsV2": "s3:ListBucket",
    "ListObjects": "s3:ListBucket",
    "HeadBucket": "s3:ListBucket",
    "ListObjectVersions": "s3:ListBucketVersions",
    "GetObject": "s3:GetObject",
    "HeadObject": "s3:GetObject",
    "PutObject": "s3:PutObject",
    "CopyObject": "s3:PutObject",
    "CreateMultipartUpload": "s3:PutObject",
    "UploadPart": "s3:PutObject",
    "CompleteMultipartUpload": "s3:PutObject",
    "DeleteObject": "s3:DeleteObject",
    "DeleteObjects": "s3:DeleteObject",
}

#: S3's error codes for a request refused for want of permission; not a refusal of the
#: credentials themselves (a wrong secret's ``SignatureDoesNotMatch``,
#: :data:`REFUSED_CREDENTIALS`), nor a HEAD's bare 403 (its answer has no body to tell).
_S3_DENIALS = frozenset({"AccessDenied", "AllAccessDisabled"})


def _s3_answer(e: BaseException) -> tuple[str, str, Any] | None:
    """The S3 request that failed and S3's answer, where ``e`` or an error it came from is
    botocore's ``ClientError`` (s3fs raises its own ``OSError`` from it): (the request's
    name, the error code, the HTTP status); None for anything else."""
    seen: list[BaseException] = []
    x: BaseException | None = e
    while x is not None and not any(x is s for s in seen):
        seen.append(x)
        operation = getattr(x, "operation_name", None)
        response = getattr(x, "response", None)
        if isinstance(operation, str) and isinstance(response, dict):
            code = str((response.get("Error") or {}).get("Code", ""))
            return operation, code, (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        x = x.__cause__ or x.__context__
    return None


def s3_denied(e: BaseException) -> str | None:
    """Which S3 request was refused for want of permission, and the permission it needs, when
    ``e`` (or an error it came from: s3fs's ``PermissionError`` is raised from botocore's
    ``ClientError``) is that refusal: 'S3 ListObjectsV2 needs s3:ListBucket'; None for
    anything else. A refused listing had been said as 'PermissionError: Access Denied ...
    give access to it', naming no permission, where the user's credentials could read and
    write the keys but not list them (h65f)."""
    answer = _s3_answer(e)
    if answer is None:
        return None
    operation, code, _ = answer
    permission = S3_PERMISSIONS.get(operation)
    if code in _S3_DENIALS and permission is not None:
        return f"S3 {operation} needs {permission}"
    return None


def s3_said(e: BaseException) -> str | None:
    """What S3 answered, where ``e`` is an S3 request's failure (:func:`_s3_answer`): the
    permission it needs (:func:`s3_denied`), else the request and its HTTP status and code,
    'S3 GetObject answered HTTP 500 InternalError'; None for anything else. s3fs raises S3's
    answers as ``OSError`` with an errno of its own (EREMOTEIO for a 500, EIO for a code it
    does not know), which had been read as a file system's: "mend what is at that path of
    the store", "check the disk" (h65f)."""
    denied = s3_denied(e)
    if denied is not None:
        return denied
    answer = _s3_answer(e)
    if answer is None:
        return None
    operation, code, status = answer
    said = f"HTTP {status}" if status else ""
    if code and code != str(status):
        said = f"{said} {code}".strip()
    return f"S3 {operation} answered {said}"


#: The fix of each S3 permission a store refused (:func:`s3_denied`), for the credentials in
#: ``{side}.storage_options``.
_S3_PERMISSION_FIXES = {
    "s3:ListBucket": (
        "grant s3:ListBucket on the store's bucket (its prefix at least) to the credentials in "
        "{side}.storage_options: Zarr and the pipeline look for keys that may be absent, which "
        "S3 tells apart from refused ones only to a user who may list"
    ),
    "s3:GetObject": (
        "grant s3:GetObject on the store's keys, and s3:ListBucket on its bucket (without "
        "which S3 answers 403 for a key that is not there), to the credentials in "
        "{side}.storage_options"
    ),
}


def _s3_permission_fix(failure: str, side: str) -> str | None:
    """The fix of a store's ``failure`` that names an S3 permission refused
    (:func:`s3_denied`), or None."""
    found = re.search(r"\(S3 \w+ needs (s3:\w+)\)$", failure)
    if found is None:
        return None
    permission = found[1]
    fix = _S3_PERMISSION_FIXES.get(
        permission,
        f"grant {permission} on the store's keys to the credentials in {{side}}.storage_options",
    )
    return fix.format(side=side)


#: The attribute by which a store's failure carries the request the pipeline made, where
#: the library's error names none (s3fs's ``PermissionError: Forbidden``):
#: (the store's URL, the key, the action: 'read', 'write', 'list', 'look up', 'delete').
ASKED = "pipeline_asked"


def mark_asked(e: BaseException, store: str, key: str, action: str) -> None:
    """Record on ``e``, a store's answer (:func:`storage_failure`) to a request for ``key``
    of ``store``, what was asked (:data:`ASKED`), unless a request nearer to it did already;
    nothing for any other error. :func:`store_answer` names it."""
    if isinstance(e, PipelineError) or storage_failure(e) is None:
        return
    if getattr(e, ASKED, None) is None:
        # an error type that takes no attributes is said unnamed, as before
        with contextlib.suppress(AttributeError):
            setattr(e, ASKED, (store, key, action))


#: The action each S3 request is, by botocore's name of it, as the pipeline's lines say it: a
#: HEAD is a read (it needs s3:GetObject), a copy and a multipart upload's parts writes.
S3_ACTIONS = {
    "ListObjectsV2": "list",
    "ListObjects": "list",
    "HeadBucket": "list",
    "ListObjectVersions": "list",
    "GetObject": "read",
    "HeadObject": "read",
    "PutObject": "write",
    "CopyObject": "write",
    "CreateMultipartUpload": "write",
    "UploadPart": "write",
    "CompleteMultipartUpload": "write",
    "DeleteObject": "delete",
    "DeleteObjects": "delete",
}


def s3_action(e: BaseException) -> str | None:
    """The action ('read', 'write', 'list', 'delete') of the S3 request whose answer ``e`` is
    (:func:`_s3_answer`, :data:`S3_ACTIONS`); None where ``e`` is no S3 answer."""
    answer = _s3_answer(e)
    return None if answer is None else S3_ACTIONS.get(answer[0])


def refused_request(e: BaseException, store: Any) -> tuple[str, str] | None:
    """The action a store (``store``, a :class:`~pipeline.store.location.Location`) refused,
    where ``e`` is its answer marked by :func:`mark_asked` for it, and the request in words
    for a line ('the read of s3://b/out.zarr/.pipeline/lock'); None where none is marked for
    it. The action is the request's own where S3 names it (:func:`s3_action`), not the step's
    that was marked: a step's requests are not all of its kind (s3fs looks a key up with a
    HEAD and, where that finds nothing, a listing; Zarr writing an array's metadata reads and
    lists what is there first), and a refused read had been said as a refused write (a user
    whose credentials may write the output but not read it was told 'cannot write'). A
    request of another kind than the step's is said as made for the step ('the list (S3
    ListObjectsV2) made for the look up of KEY')."""
    mark = asked_of(e)
    if mark is None or mark[0] != store.url:
        return None
    step, key = mark[2], hide_url_secrets(store.join(mark[1]))
    action = s3_action(e)
    if action is None or action == step:
        return step, f"the {step} of {key}"
    if step == "look up" and action == "read":  # a HEAD: a look-up reads
        return action, f"the read of {key}"
    operation = (_s3_answer(e) or ("",))[0]
    return action, f"the {action} (S3 {operation}) made for the {step} of {key}"


#: The attribute by which a store's failure carries words that its line ends with, where the
#: step that failed could not say them itself (a run's lock left held after its failure:
#: :func:`then_say`).
THEN = "pipeline_then"


def then_say(e: BaseException, words: str) -> bool:
    """Make the line of ``e``, a run's failure, end with ``words`` (what it leaves, and what
    to do: a lock that could not be given up): a PipelineError's own message; a store's
    answer that :func:`store_answer` says. False where ``e`` is neither (its line is no
    one's to extend: the caller says ``words`` otherwise)."""
    if isinstance(e, PipelineError):
        e.args = (f"{e}; {words}", *e.args[1:])
        return True
    if storage_failure(e) is None:
        return False
    try:
        setattr(e, THEN, f"{getattr(e, THEN, None) or ''}; {words}")
    except AttributeError:  # an error type that takes no attributes
        return False
    return True


def asked_of(e: BaseException) -> tuple[str, str, str] | None:
    """What was asked where ``e`` (or an error it came from) is a store's answer marked by
    :func:`mark_asked`: (the store's URL, the key, the action); None where none is marked."""
    seen: list[BaseException] = []
    x: BaseException | None = e
    while x is not None and not any(x is s for s in seen):
        seen.append(x)
        asked = getattr(x, ASKED, None)
        if isinstance(asked, tuple) and len(asked) == 3:
            return asked
        x = x.__cause__ or x.__context__
    return None


def store_answer(e: BaseException, stores: Sequence[Any] = ()) -> StoreError | None:
    """The StoreError for ``e`` where it is a store's answer (:func:`storage_failure`: an
    HTTP 401, 403 or 500, a lost connection) that no step of the pipeline turned into a line
    of its own, naming the answer, the URL asked (its secrets and query hidden) and the fix;
    None for anything else. What the command line prints and :func:`pipeline.run` raises in
    place of the library's error (helper-75: a bare ``ClientResponseError: 401`` on a resume
    with a wrong password).

    ``stores``: the run's stores (:class:`~pipeline.store.location.Location`, their
    ``setting`` known), where the caller has them: the one that gave the answer
    (``answered``: the URL asked is under its own, or the file; else the only one that is
    not a local folder) is named, with its section, and the fix is that store's
    (``answer_fix``: its endpoint_url, the password in its URL, its chain's options), which
    the answer alone cannot tell. Fields: ``store`` (the URL asked, or that store, or ''),
    ``reason`` (the answer) and ``setting`` ('input', 'output' or '')."""
    if isinstance(e, PipelineError):
        return None
    failure = storage_failure(e)
    if failure is None:
        return None
    url = getattr(getattr(e, "request_info", None), "real_url", None)
    if url is None:  # the answer that an error raised while handling it came from
        x = e.__cause__ or e.__context__
        url = getattr(getattr(x, "request_info", None), "real_url", None)
    # its query is cut (not masked): a masked '?...' took the colon after it away
    where = hide_url_secrets(str(url).split("?", 1)[0].split("#", 1)[0]) if url else ""
    store = _answering(e, stores)
    if store is None:
        fix = storage_fix(failure).replace("input.storage_options", "the store's storage_options")
        return StoreError(
            f"a store answered {failure}{' for ' + where if where else ''}: {fix}"
            f"{getattr(e, THEN, None) or ''}",
            store=where,
            reason=failure,
            setting="",
        )
    asked = f" for {where}" if where else ""
    request = refused_request(e, store)
    if not where and request is not None:  # the request it refused
        where = hide_url_secrets(store.join(asked_of(e)[1]))  # type: ignore[index]
        asked = f" to {request[1]}"
    then = getattr(e, THEN, None) or ""
    return StoreError(
        f"the {store.setting} store {name_shown(store)} answered {failure}{asked}: "
        f"{store.answer_fix(failure)}{then}",
        store=where or str(store),
        reason=failure,
        setting=store.setting,
    )


#: The libraries through which the pipeline reaches remote stores: an error raised in (or
#: from) one of them is a store's, not the scheduler's or a local file's.
STORAGE_LIBRARIES = frozenset(
    {"aiohttp", "aiobotocore", "botocore", "s3fs", "fsspec", "gcsfs", "adlfs", "zarr"}
)


def _through_storage(e: BaseException) -> bool:
    """Whether ``e``, or an error it came from, was raised in (or is a type of) one of the
    :data:`STORAGE_LIBRARIES`."""
    seen: list[BaseException] = []
    x: BaseException | None = e
    while x is not None and not any(x is s for s in seen):
        seen.append(x)
        if type(x).__module__.split(".")[0] in STORAGE_LIBRARIES:
            return True
        tb = x.__traceback__
        while tb is not None:
            if str(tb.tb_frame.f_globals.get("__name__", "")).split(".")[0] in STORAGE_LIBRARIES:
                return True
            tb = tb.tb_next
        x = x.__cause__ or x.__context__
    return False


def _answering(e: BaseException, stores: Sequence[Any]) -> Any:
    """The one of ``stores`` whose answer ``e`` is (``answered``), or, where none says so
    and ``e`` came through a storage library (:func:`_through_storage`: not a scheduler's
    refused connection), the only one that is no local folder; None where that is not one
    store."""
    stores = [s for s in stores if getattr(s, "setting", "")]
    found = [s for s in stores if s.answered(e)]
    if len(found) == 1:
        return found[0]
    if found or not _through_storage(e):
        return None
    remote = [s for s in stores if not s.is_local and s.local_root is None]
    return remote[0] if len(remote) == 1 else None


#: Words of an object store's refusal of the credentials it was given (S3: a signature made
#: with a wrong secret, an access key id it does not know, an invalid or expired token), as
#: opposed to their owner's lack of access to the store.
REFUSED_CREDENTIALS = (
    "signature we calculated does not match",
    "signaturedoesnotmatch",
    "invalidaccesskeyid",
    "access key id you provided does not exist",
    "security token included in the request is invalid",
    "invalidtoken",
    "expiredtoken",
    "token has expired",
)


def refused_access(e: BaseException) -> bool:
    """Whether ``e`` is a store's refusal of one request for want of permission (an HTTP 403;
    s3fs's ``PermissionError``, an S3 AccessDenied), rather than an absent key, damaged bytes
    or no answer (:func:`storage_failure`). Where the pipeline only looks around a store
    (a folder above it), such a refusal means nothing is known there, not a failure: S3
    answers 403 for every key outside what credentials granted one prefix may read."""
    failure = storage_failure(e)
    return failure is not None and failure.startswith(("HTTP 403", "PermissionError"))


def refused_credentials(failure: str) -> bool:
    """Whether a store's answer ``failure`` (:func:`storage_failure`) says it refused the
    credentials it was given (:data:`REFUSED_CREDENTIALS`): their fix is the credentials, not
    the store's permissions nor another store."""
    said = failure.lower()
    return any(w in said for w in REFUSED_CREDENTIALS)


def storage_fix(failure: str, side: str = "input") -> str:
    """What to do about a store's ``failure`` (:func:`storage_failure`) on reading; ``side``:
    'input' or 'output', the config section whose storage_options reach the store."""
    if refused_credentials(failure):
        return (
            f"correct the credentials in {side}.storage_options (key and secret, or token): "
            "the store refused them"
        )
    permission = _s3_permission_fix(failure, side)
    if permission is not None:
        return permission
    answer = re.search(r"\(S3 \w+ answered HTTP (\d+)[^)]*\)$", failure)
    if answer is not None:  # S3's answer (s3_said): its errno is s3fs's, no file system's
        status = int(answer[1])
        if status >= 500 or "SlowDown" in failure:
            return "make the store reachable (the server answering again)"
        if status in (401, 403):
            return (
                "give access to it (s3:GetObject on its keys, and s3:ListBucket on its bucket, "
                "without which S3 answers 403 for a key that is not there), or correct the "
                f"credentials in {side}.storage_options"
            )
        return f"check {side}.store and {side}.storage_options (its endpoint_url, region)"
    if failure.startswith(("HTTP 401", "HTTP 403", "PermissionError")):
        return f"give access to it (its permissions, or the credentials in {side}.storage_options)"
    if failure.startswith("HTTP 4"):
        return f"check {side}.store and that the server serves every chunk"
    number = re.search(r"\[Errno (\d+)\]", failure)
    if number is not None and int(number[1]) not in _NETWORK_ERRNOS:
        return _file_system_fix(int(number[1]))
    return "make the store reachable (the server answering again)"


#: The errors of a connection (refused, reset, timed out, no route), whose fix is the server
#: or the network; every other ``OSError`` with a number comes from a file system.
_NETWORK_ERRNOS = frozenset(
    getattr(errno, name)
    for name in (
        "ECONNREFUSED",
        "ECONNRESET",
        "ECONNABORTED",
        "ETIMEDOUT",
        "EHOSTUNREACH",
        "EHOSTDOWN",
        "ENETUNREACH",
        "ENETDOWN",
        "ENETRESET",
        "ENOTCONN",
        "EPIPE",
        "EAGAIN",
    )
    if hasattr(errno, name)
)


def _file_system_fix(number: int) -> str:
    """What to do about a file system's error ``number`` (an ``errno``) on reading a store's
    file: a symbolic link that leads back to itself (ELOOP) had been told "make the store
    reachable (the server answering again)", as if a server were there."""
    if number == errno.ELOOP:
        return "mend or remove that symbolic link: it leads back to itself"
    if number == errno.EIO:
        return "check the disk or file system that holds the store: it could not be read there"
    return "mend what is at that path of the store (the file system's error above)"
