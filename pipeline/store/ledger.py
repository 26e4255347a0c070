"""The run's record in the output store: which blocks are finished, who is writing, and what.

Zarr reads a missing chunk as the fill value, so chunk files prove nothing about completeness.
Each task writes a marker after its chunk bytes are stored; a resumed run skips exactly the
marked blocks. The record lives in ``<array>/.pipeline/`` (Zarr readers ignore it) and is removed
once the run has finished and the output is marked complete in its attributes.

``run.json`` (the manifest) says what the run computes (the plan's fingerprint and the parts it
is made of), so a resume with another config or input is refused, naming what changed.

``lock`` keeps a second run from writing the same output. On a local file system it is an OS
lock (``flock``) that the kernel drops when its process ends, however it ends (SIGKILL included),
so a killed run never blocks its resume and a recycled pid is never mistaken for a live run.
Object stores have no such lock: there the lock is an object made by a conditional PUT, whose
holder's pid and host are checked (best effort); a stopped run's is replaced by a PUT on the
condition that it is still the version read (S3's If-Match on its ETag), which one run alone
wins (:func:`_take_over`). Its holder's ``token`` is read back before each block's write and
before "complete" (:meth:`Ledger.check_held`): a run whose lock object was deleted, and taken
by another run, stops rather than write into that run's output.

``generate.lock`` (:class:`InputLock`), the same lock in a generated input's own array folder,
keeps a second generation from writing that input, and a run from reading it meanwhile.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import hashlib
import json
import logging
import os
import re
import socket
import stat
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pipeline.errors import (
    VERIFY_NAMES,
    InputError,
    OutputError,
    PipelineError,
    StoreError,
    cause,
    name_shown,
    shell_word,
    some_shown,
    storage_failure,
    then_say,
)
from pipeline.store.grid import Shape
from pipeline.store.local_files import (
    NotAFile,
    is_not_a_file_refusal,
    not_a_file,
    open_local_file,
)
from pipeline.store.location import (
    Folder,
    Location,
    dangling_link_on,
    folders_made,
    is_link_refusal,
    is_os_file,
    is_write_probe,
)

RECORD = ".pipeline"
#: The field of the run record (``run.json``) and of each marker naming the record they are
#: of (:meth:`Ledger.each_marker`).
RECORD_ID = "record"
#: The optional field of the run record (``run.json``) holding the line of the refusal a run
#: stopped on (an error of the pipeline's own, raised once the output was made: a block of
#: the input that cannot be computed, a store's refusal), where the last run stopped on one;
#: absent after an interrupt or a crash, and dropped as a resume begins. An earlier release's
#: reader takes the record as it took it (an unknown field, covered by its ``check``).
STOPPED = "stopped"
#: The optional field of the run record beside :data:`STOPPED`: ``true`` where that refusal
#: names nothing to mend before a resume (its error's field ``resumes``: a scheduler lost
#: during the work, blocks left unrecorded), `run --resume` alone finishing the output;
#: absent where it names something (a damaged input chunk, a full disk, memory), and in a
#: record written before it was kept (h86c: `plan`, `verify` and a resume had said "mend
#: that" after every stop).
STOP_RESUMES = "stopped_resumes"
#: The optional field of the run record beside :data:`STOPPED`: ``true`` where that refusal
#: is of the input's own data (an :class:`~pipeline.errors.InputError` whose field
#: ``rewrites_input`` says so: a damaged input chunk, an element its decoding cannot hold;
#: not a store that would not answer), whose mend changes the input, which a resume then
#: refuses (its data changed since the run), so that `run --overwrite` starts over; absent
#: otherwise, and in a record written before it was kept (h86f: `plan`, `verify` and a
#: resume had said "mend that, then `run --resume` finishes it" of such a stop, which no mend
#: could make true). An earlier release's reader ignores it, as it ignores
#: :data:`STOP_RESUMES`.
STOP_INPUT = "stopped_on_input"
#: The field of the run record (``run.json``) holding the grid of blocks its run wrote
#: markers of (how many blocks along each axis, :meth:`Ledger.new_record`): a later start
#: whose config plans other blocks takes the markers of that grid as the pipeline's too
#: (:meth:`Ledger.own_grids`), where they had been refused as files the pipeline did not
#: write, and kept on an object store by its deletes (h87b). Absent in a record written
#: before it was kept: the grid now planned alone then. An earlier release's reader ignores
#: it (an unknown field, covered by the record's ``check``).
BLOCK_GRID = "block_grid"

#: What a resume says of a stop whose mend changes the input (:attr:`Stop.input`): the one
#: command that finishes the output once it is mended.
_OVERWRITE_AFTER = "`run --overwrite` starts over (a resume refuses an input changed since)"


@dataclass(frozen=True)
class Stop:
    """The refusal the last run of an output stopped on, as its run record keeps it
    (:data:`STOPPED`, :data:`STOP_RESUMES`, :data:`STOP_INPUT`), and the one place that says
    which advice fits it (:meth:`advice`, :meth:`again`)."""

    line: str
    """its one line, as the run said it"""
    mend: bool
    """whether that line names something to mend before the output can be finished (False
    where `run --resume` alone finishes it)"""
    input: bool = False
    """whether that mend changes the input (a refusal of the input's own data: a damaged
    chunk, an element its decoding cannot hold), which a resume then refuses: `run
    --overwrite` starts over once it is mended; False where a resume finishes it then"""

    def advice(self) -> str:
        """What finishes the output, in words that follow what is there (`plan`'s "output
        now" row, `verify`'s line): "mend that, then `run --resume` finishes it", "mend
        that, then `run --overwrite` starts over (...)" where the mend changes the input, or
        "`run --resume` finishes it" where nothing is to be mended."""
        if not self.mend:
            return "`run --resume` finishes it"
        if self.input:
            return f"mend that, then {_OVERWRITE_AFTER}"
        return "mend that, then `run --resume` finishes it"

    def again(self) -> str:
        """What a resume of the output, begun as it is, does about this stop, in words that
        follow "this run" (its warning, `run --resume --dry-run`'s row): "stops there again
        unless that is mended", "finishes it" where nothing is to be mended, or, where the
        mend changes the input (which a resume refuses, so a resume that begins has the
        input as it was), "stops there again: mend that, then `run --overwrite` starts over
        (...)"."""
        if not self.mend:
            return "finishes it"
        if self.input:
            return f"stops there again (the input is as it was): mend that, then {_OVERWRITE_AFTER}"
        return "stops there again unless that is mended"


def stop_of(manifest: Mapping[str, Any] | None) -> Stop | None:
    """The :class:`Stop` a run record ``manifest`` keeps, or None (no record, none kept, a
    line that is no text)."""
    line = (manifest or {}).get(STOPPED)
    if not isinstance(line, str) or not line:
        return None
    mend = (manifest or {}).get(STOP_RESUMES) is not True
    return Stop(line, mend, mend and (manifest or {}).get(STOP_INPUT) is True)


#: A block's marker name, :meth:`Ledger._name`: its index along each axis, in ASCII digits,
#: joined by dots.
_BLOCK_NAME = re.compile(r"[0-9]+(\.[0-9]+)*")
#: A file being written atomically (:func:`pipeline.store.location.Location.write`), by the
#: name it will have: ``.run.json.tmp-PID-TID``.
_TEMPORARY = re.compile(r"\.(.+)\.tmp-[0-9]+-[0-9]+")


def _marker_name(name: str, grids: Sequence[Shape] | None) -> bool:
    """Whether ``name``, in the record's ``done`` folder, is exactly a block's marker as
    :meth:`Ledger._name` writes it ('3.0': no sign, no leading zero), of one of the grids of
    blocks ``grids`` (as many indices as its axes, each inside it; None: any such name;
    :meth:`Ledger.own_grids`: the grid planned now and the one the record was written with).
    A name that only begins as one ('8.14.bak', '1.2x', or '3' and '99.99' of a 2-D grid of
    10 x 10) is a user's, which the run never deletes: it had been taken for a copy of a
    marker and deleted with the record at the run's end, with no word (h86e)."""
    if not _BLOCK_NAME.fullmatch(name):
        return False
    index = name.split(".")
    if any(i != str(int(i)) for i in index):  # '03.0': no name the run writes
        return False
    if grids is None:
        return True
    return any(
        len(index) == len(grid) and all(int(i) < n for i, n in zip(index, grid, strict=True))
        for grid in grids
    )


def grid_of(value: Any) -> Shape | None:
    """The grid of blocks a run record's :data:`BLOCK_GRID` field says (a list of whole
    numbers, one per axis: at most 32), or None where it says
    none that is one (absent: an earlier version's record; anything else: not the run's
    writing, which names no marker)."""
    if not isinstance(value, list) or len(value) > 32:
        return None
    if not all(type(n) is int and n >= 0 for n in value):
        return None
    return tuple(value)


#: A folder a replacement set aside its files in (:meth:`Folder.set_aside`: ``uuid4().hex``).
_ASIDE_NAME = re.compile(r"[0-9a-f]{32}")


def _unwritten(name: str) -> str:
    """``name``, or the name a file being written atomically will have (:data:`_TEMPORARY`)."""
    temporary = _TEMPORARY.fullmatch(name)
    return temporary.group(1) if temporary else name


#: Open lock files of this process, by path (the descriptor holds the OS lock).
_HELD: dict[str, int] = {}
_HELD_LOCK = threading.Lock()
#: Seconds for which a generation's check that its lock object is still its own stands, for
#: the next units it writes (:meth:`Ledger.check_held`'s ``within``): one small GET a second
#: at most, not one per object written.
UNIT_CHECK_WITHIN = 1.0
#: The markers this process knows the bytes of, by the URL of their record's ``done``
#: folder: {marker name: (its version's tag, what it holds)}: those its run wrote (the
#: blocks whose results came back, :meth:`Ledger.wrote`: the tag S3 gives a body, its MD5)
#: or read (:meth:`Ledger.each_marker`, with the tag the read gave). A marker that a listing
#: gives with that tag still holds those bytes, and is not read again (h84c).
_KNOWN: dict[str, dict[str, tuple[str, dict[str, Any]]]] = {}
_KNOWN_LOCK = threading.Lock()
#: When (``time.monotonic``) this process last found an object store's lock object its
#: holder's, by (the lock's URL, the holder's token): :meth:`Ledger.check_held`'s ``within``.
_CHECKED: dict[tuple[str, str], float] = {}


@dataclass(frozen=True)
class Ledger:
    """Markers of finished blocks, next to the output array."""

    location: Location
    array_path: str
    #: This holder's own mark, written into its lock as it takes it: a task writing a block,
    #: in whichever process, finds by it whether the lock at the store's path is still its
    #: run's (:meth:`check_held`). No part of what the ledger is (equality, hash, repr).
    token: str = field(default_factory=lambda: uuid.uuid4().hex, compare=False, repr=False)
    #: The run record this holder writes into, ``{"id": ...}``: the ``record`` its run record
    #: (``run.json``) names, the token of the run that began it (:meth:`new_record`), taken
    #: once the lock is held (:meth:`adopt`), which every marker it writes carries and which
    #: a marker must carry to count (:meth:`each_marker`). Empty: not taken yet (what
    #: ``run.json`` says is read then). No part of what the ledger is.
    held_record: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    #: The lock's name in the record folder: the output's (a run writing it).
    LOCK: ClassVar[str] = "lock"
    #: The config section whose store the lock is in, as its lines name it.
    ROLE: ClassVar[str] = "output"
    #: What its holder does, as :data:`WRITERS` names it.
    WHAT: ClassVar[str] = "run"
    #: Its holder, and what finishes its array where its store was moved while it wrote it
    #: (:meth:`check_held`), as that refusal says them.
    HOLDER: ClassVar[str] = "this run"
    AFTER_MOVE: ClassVar[str] = (
        "finish the output where it is now with `run --resume` (output.store naming it)"
    )
    #: What finishes it where its lock object was removed on an object store (where ``run``
    #: refuses that, the run's end says its refusal instead: ``runner._as_run_takes``).
    AFTER_TAKEN: ClassVar[str] = "once no other run writes it, `run --resume` finishes it"

    def _key(self, *parts: str) -> str:
        base = f"{self.array_path}/{RECORD}" if self.array_path else RECORD
        return "/".join([base, *parts])

    @staticmethod
    def _name(block: Shape) -> str:
        return ".".join(str(i) for i in block)

    def marker_key(self, block: Shape) -> str:
        """The key of ``block``'s marker in the store ('out/.pipeline/done/3.0')."""
        return self._key("done", self._name(block))

    def mark(
        self, block: Shape, counts: dict[str, int] | None = None, folder: Folder | None = None
    ) -> None:
        """Record that every byte of ``block`` is stored (call after the chunk writes), with
        the block's ``counts`` (elements, NaN, ...), so a resumed run can report the whole
        output's counts without reading the blocks it skips. ``folder``: the array's folder,
        held open by the block's task (:meth:`Location.folder`), which the marker goes into
        wherever it is now (None: by the path)."""
        body = self.marker_body(counts)
        if folder is None:
            self.location.write(self.marker_key(block), [body], atomic=True)
        else:
            folder.write(f"{RECORD}/done/{self._name(block)}", [body], atomic=True)

    def marker_body(self, counts: dict[str, int] | None) -> bytes:
        """The bytes of a marker holding ``counts`` (:meth:`mark`'s): JSON, the counts in
        their order, then this holder's ``record`` (:attr:`held_record`) where it has one."""
        record = self.held_record.get("id")
        doc = {**(counts or {}), **({RECORD_ID: record} if record else {})}
        return json.dumps(doc, separators=(",", ":")).encode()

    def wrote(self, block: Shape, counts: dict[str, int]) -> None:
        """Note that ``block``'s task wrote its marker holding ``counts`` (its result came
        back: :meth:`mark` was done), so that the run's end takes it from a listing that
        gives it with the tag of those bytes (:meth:`recorded_markers`), not reading it
        again: on S3 that tag, an object's ETag, is the MD5 of its bytes where it was written
        whole and unencrypted (a store whose tags are otherwise reads it, as before). None
        noted on a store whose listing gives no tags (a local folder)."""
        if not self.location.versions_tagged:
            return
        body = self.marker_body(counts)
        self._know(self._name(block), hashlib.md5(body).hexdigest(), json.loads(body))

    def _known(self) -> dict[str, tuple[str, dict[str, Any]]]:
        """This record's markers this process knows the bytes of (:data:`_KNOWN`)."""
        with _KNOWN_LOCK:
            return _KNOWN.setdefault(self.location.join(self._key("done")), {})

    def _know(self, name: str, tag: str | None, doc: dict[str, Any]) -> None:
        """Note that the marker ``name`` holds ``doc`` in its version ``tag`` (nothing where
        the store gave no tag)."""
        if tag:
            known = self._known()
            with _KNOWN_LOCK:
                known[name] = (tag.strip('"'), doc)

    def _forget(self) -> None:
        """Forget what this process knows of this record's markers (a new record, its end)."""
        with _KNOWN_LOCK:
            _KNOWN.pop(self.location.join(self._key("done")), None)

    def done(self) -> set[Shape]:
        """Blocks recorded as finished: the names in the record's ``done`` folder that are a
        block's (:meth:`_name`, '3.0'). Any other name is no marker and marks nothing: an
        editor's backup ('3.0~') or a file manager's copy ('3.0 copy') of one had stopped a
        resume with a bare ValueError (h63d)."""
        names = self.location.list(self._key("done"))
        return {tuple(int(i) for i in n.split(".")) for n in names if _BLOCK_NAME.fullmatch(n)}

    def each_marker(
        self,
        blocks: list[Shape],
        threads: int = 16,
        listed: dict[str, str | None] | None = None,
    ) -> list[dict[str, Any] | None]:
        """What the marker of each of ``blocks`` holds, in order: its JSON object (``{}``
        where an earlier release recorded no counts), or None where the marker is gone or
        holds no JSON object (empty, cut short, overwritten: :meth:`mark` writes a whole one
        atomically, so such a marker is damage, and proves nothing of its block), or is
        another run record's: where the run record names its ``record`` (:meth:`record_id`),
        a marker counts only where it carries that one. A run whose lock was removed and
        taken by another run (``--overwrite``) between its check of the lock and its
        marker's write (S3 has no write conditional on another object) had put its marker
        into that run's record, which a resume of that run then took as its own block
        (h83f).

        ``listed``: the markers' names with their versions' tags, from a listing made just
        before (:meth:`Location.tagged_list`): a marker whose tag there is that of bytes
        this process wrote or read (:meth:`wrote`, :data:`_KNOWN`) holds those bytes, and is
        not read again (one GET per block at a run's end, h84c). Every other is read (on S3
        with its tag, one GET, noted for the next time)."""
        from concurrent.futures import ThreadPoolExecutor

        if not blocks:
            return []
        record = self.record_id()
        known = self._known() if listed is not None else {}
        tagged = self.location.versions_tagged

        def judged(doc: Any) -> dict[str, Any] | None:
            if not isinstance(doc, dict) or (record and doc.get(RECORD_ID) != record):
                return None
            return {k: v for k, v in doc.items() if k != RECORD_ID}

        def one(block: Shape) -> dict[str, Any] | None:
            name = self._name(block)
            tag = (listed or {}).get(name)
            seen = known.get(name)
            if tag and seen is not None and seen[0] == tag.strip('"'):
                return judged(seen[1])
            key = self._key("done", name)
            read = self.location.read_tagged(key) if tagged else None
            raw = read[0] if read is not None else (None if tagged else self.location.read(key))
            try:
                doc = json.loads(raw) if raw else None
            except ValueError:  # UnicodeDecodeError too
                return None
            if read is not None and isinstance(doc, dict):
                self._know(name, read[1], doc)
            return judged(doc)

        with ThreadPoolExecutor(max(1, min(threads, len(blocks)))) as ex:
            return list(ex.map(one, blocks))

    def each_counts(self, blocks: list[Shape], threads: int = 16) -> list[dict[str, int] | None]:
        """The counts recorded with each of ``blocks``, in order (None where a block's marker
        holds none, is gone or is no JSON object: :meth:`each_marker`)."""
        return [doc or None for doc in self.each_marker(blocks, threads)]

    def counts(self, blocks: list[Shape], threads: int = 16) -> dict[str, int] | None:
        """The summed counts recorded with ``blocks``; None when one has none (unknown)."""
        return summed_counts(self.each_counts(blocks, threads))

    def misshapen(self) -> list[tuple[str, str, str]]:
        """Every part of the record that is not of the kind the run keeps there (the first
        alone had been found, and its removal met the next one's refusal, h85b): the
        record itself (``.pipeline``) or its ``done`` folder that is a file or a link to
        nothing, its ``lock``, ``run.json`` or a block's marker (a name :meth:`_name` gives)
        that is a folder or no regular file. As (its key under the output array
        ('.pipeline/done'), what is there ('a file'), what the run keeps there ('a
        folder')); [] where every part is as the run keeps it, or absent. Every run meets
        such a part: the lock's open, the record's read or the markers' listing raised the
        file system's NotADirectoryError or IsADirectoryError (h65a), a resume only after it
        computed a block. A part that is a link, to anything, is one too ('a link to
        /data/rec'): deleting the record deletes a link, not what it names, so a run that
        found the output complete left its lock behind the link (in the output itself, where
        ``.pipeline`` named it, which ``run --overwrite`` then refused as a stray file; h66b).
        [] on a store that is no local folder: an object store holds an object and keys
        under it at one name, and the run reads and writes both."""
        if not self.location.is_local:
            return []
        base = f"{self.array_path}/" if self.array_path else ""

        def what(key: str, folder: bool) -> str | None:
            path = self.location.join(key)
            if not os.path.lexists(path):
                return None
            if not os.path.exists(path):
                return "a link to nothing"
            if os.path.islink(path):  # removing the record removes the link, not what is
                # behind it: a run's lock stayed there (in the output, of a link to it; h66b)
                return f"a link to {os.path.realpath(path)}"
            if folder:
                return None if os.path.isdir(path) else "a file"
            if os.path.isfile(path):
                return None
            if os.path.isdir(path):
                return "a folder"
            with contextlib.suppress(OSError):  # what it is: a named pipe, a device, a socket
                return not_a_file(os.stat(path).st_mode) or "no regular file"
            return "no regular file"

        found: list[tuple[str, str, str]] = []
        record = self._key()
        there = what(record, True)
        if there is not None or not os.path.lexists(self.location.join(record)):
            # no record, or none of a folder: nothing under it
            return [] if there is None else [(record[len(base) :], there, "a folder")]
        parts = [(self._key("done"), True)]
        parts += [(self._key(n), False) for n in (self.LOCK, "run.json")]
        for key, folder in parts:
            there = what(key, folder)
            if there is not None:
                found.append((key[len(base) :], there, "a folder" if folder else "a file"))
        if found and found[0][0] == self._key("done")[len(base) :]:
            return found  # no folder of markers: none in it
        done = self.location.join(self._key("done"))
        try:
            with os.scandir(done) as listed:
                odd = sorted(
                    e.name
                    for e in listed
                    if _BLOCK_NAME.fullmatch(e.name) and not e.is_file(follow_symlinks=False)
                )
        except (FileNotFoundError, NotADirectoryError):
            return found
        for name in odd:
            key = self._key("done", name)
            there = what(key, False)
            if there is not None:
                found.append((key[len(base) :], there, "a file"))
        return found

    #: The entries of the run record's folder that are the run's: its lock, ``run.json``,
    #: the markers' folder and what a replacement set aside (:attr:`ASIDE`).
    OWN: ClassVar[tuple[str, ...]] = ("run.json", "done", "aside")
    #: Those of :attr:`OWN` that are folders.
    OWN_FOLDERS: ClassVar[tuple[str, ...]] = ("done", "aside")

    def _own(self, name: str) -> bool:
        """Whether ``name``, an entry of the run record's folder, is the run's: one of
        :attr:`OWN`, its lock, or one of those being written (atomically) when its writer
        stopped (``.run.json.tmp-PID-TID``)."""
        temporary = _TEMPORARY.fullmatch(name)
        return (temporary.group(1) if temporary else name) in (self.LOCK, *self.OWN)

    def strangers(self, grid: Shape | None = None) -> list[str]:
        """The entries of the run record's folder (``.pipeline``) that are not the run's
        (:meth:`_own`): a user's notes put there, another program's files; sorted (files an
        operating system writes into any folder, a ``.DS_Store``, are none). Every run ends
        by deleting that folder, and ``--overwrite`` had deleted them with it, with no word
        (h84b). Below ``done`` and ``aside`` too, which are deleted whole (h85a: a user's
        ``aside/notes.txt`` had gone with them), by their paths in the record
        (:meth:`_strangers_in`: ``done`` holds markers, each exactly a block's of ``grid``,
        the output's grid of blocks, where given: :func:`_marker_name`; ``aside`` a
        replacement's folders); [] where there is no record, or it is no folder
        (:meth:`misshapen`), or it cannot be listed (a store that refuses to: the run meets
        that where it lists the record, and says it there). On an object store, every key
        under the record that is not the run's (:meth:`_own_object`), by its key below it
        (``aside/x``), from one listing (one LIST per 1000 keys): a run's end there deletes
        its own keys alone, and had deleted the whole prefix, a user's objects with it
        (h85b). The markers of the grid the record was written with are the run's too
        (:meth:`own_grids`: h87b, an ``--overwrite`` whose config changed the blocks had
        been refused the earlier layout's)."""
        try:
            grids = self.own_grids(grid)
            if not self.location.is_local:
                return [
                    k
                    for k in self._record_objects()
                    if not (self._own_object(k, grids) or _os_or_probe(k))
                ]
            names = self.location.entries(self._key())
        except Exception:
            return []
        found = [n for n in names if not self._own(n)]
        # and below its own folders, which a run's end and a fresh start delete whole: a
        # user's ``aside/notes.txt`` had gone with them, unrefused (h85a)
        for folder in self.OWN_FOLDERS:
            if folder in names:
                found += [f"{folder}/{n}" for n in self._strangers_in(folder, grids)]
        return sorted(found)

    def _strangers_in(self, folder: str, grids: Sequence[Shape] | None = None) -> list[str]:
        """The entries of the record's own ``folder`` ('done' or 'aside') that the run did not
        write: in ``done``, anything but a marker (a file named exactly as a block's of one
        of ``grids``, :func:`_marker_name`, or one being written): a copy of one under another
        name (an editor's ``3.0~``, a file manager's ``3.0 copy``) marks nothing, and is no
        more the run's to delete than ``8.14.bak`` (h86e); in
        ``aside``, anything but a folder a replacement made
        (:meth:`~pipeline.store.location.Folder.set_aside`: a uuid's 32 hex digits, which
        holds what it moved there). [] where it cannot be listed (nor is a
        folder: :meth:`misshapen`'s)."""
        try:
            names = self.location.entries(self._key(folder))
        except Exception:
            return []
        if folder == "done":
            return [n for n in names if not _marker_name(_unwritten(n), grids)]
        return [n for n in names if not _ASIDE_NAME.fullmatch(n)]

    def _record_objects(self) -> list[str]:
        """Every key under the run record of an object store, by its key below it
        (``done/3.0``), sorted: one listing of its prefix (one LIST per 1000 keys)."""
        below = len(self._key()) + 1
        return sorted(k[below:] for k in self.location.file_sizes(self._key()))

    def _own_object(self, key: str, grids: Sequence[Shape] | None = None) -> bool:
        """Whether ``key``, below the run record of an object store, is one the run writes
        there: its lock, ``run.json`` (:meth:`_own`'s names of files) or a block's marker
        (``done/3.0``, of one of ``grids`` where given: :func:`_marker_name`). Nothing is set
        aside on an object store (``aside/`` is a local folder's), and a marker is a block's
        name directly in ``done/``: what else is under the record is another's, which no run
        deletes."""
        top, _, below = key.partition("/")
        if not below:
            return top not in self.OWN_FOLDERS and self._own(top)
        return top == "done" and _marker_name(below, grids)

    def own_grids(self, grid: Shape | None) -> list[Shape] | None:
        """The grids of blocks whose markers in this record are the run's: ``grid`` (the one
        planned now) and the one the run record says it was written with
        (:data:`BLOCK_GRID`, :func:`grid_of`), where that is another (a config that changed
        the blocks since: h87b, its markers past ``grid`` had been refused at every start as
        a user's, and kept on an object store by the deletes of the start and the end);
        ``[grid]`` alone where the record says none (an earlier version's, or none there, or
        none readable); None where ``grid`` is None (any marker's name, :func:`_marker_name`).
        One read of ``run.json``. A record without its ``check`` says none either: every
        record that says a grid was written with one, so its removal is an edit, which the
        starts' check of the record (``check_records_whole``) sees only where it is there
        (h87g: ``check`` removed and the grid made larger, a user's ``done/500.0`` was taken
        for a marker and deleted)."""
        if grid is None:
            return None
        try:
            manifest = self.read_manifest() or {}
            recorded = grid_of(manifest.get(BLOCK_GRID)) if "check" in manifest else None
        except Exception:  # what cannot be read says no grid: the planned one alone
            recorded = None
        return [grid] if recorded is None or recorded == tuple(grid) else [grid, recorded]

    def recorded(self, blocks: list[Shape]) -> set[Shape]:
        """Of ``blocks``, those the run record marks written: a marker of this record's
        (:meth:`each_marker`: one of another run's record, or damaged, marks nothing)."""
        return set(self.recorded_markers(blocks))

    def recorded_markers(self, blocks: list[Shape]) -> dict[Shape, dict[str, Any]]:
        """Of ``blocks``, those the run record marks written, each with what its marker
        holds (:meth:`each_marker`'s): from one listing of the record's ``done`` folder (one
        LIST per 1000 markers on S3), with its versions' tags, reading only the markers
        whose bytes this process does not know in the version listed (:meth:`wrote`, what a
        resume read of the blocks it skips); every marker had been read with a GET of its
        own at a run's end (h84c). Each still counts only where it carries this record's
        ``record`` (h83f)."""
        listed = {
            n: tag
            for n, tag in self.location.tagged_list(self._key("done")).items()
            if _BLOCK_NAME.fullmatch(n)
        }
        present = [b for b in blocks if self._name(b) in listed]
        docs = self.each_marker(present, listed=listed)
        return {b: doc for b, doc in zip(present, docs, strict=True) if doc is not None}

    def record_id(self) -> str | None:
        """The run record's ``record`` (:meth:`held_record`'s where taken, else what
        ``run.json`` says now); None where it names none (an earlier release's record, whose
        markers carry none either: every marker of it counts)."""
        if "id" in self.held_record:
            return self.held_record["id"] or None
        record = (self.read_manifest() or {}).get(RECORD_ID)
        return record if isinstance(record, str) and record else None

    def stopped_on(self) -> Stop | None:
        """The refusal the last run of this output stopped on, as its run record keeps it
        (:func:`stop_of`); None where it keeps none (no record, an interrupted or crashed run,
        an earlier release's record)."""
        return stop_of(self.read_manifest())

    def new_record(self, manifest: dict[str, Any], grid: Shape | None = None) -> dict[str, Any]:
        """``manifest``, a fresh start's run record, naming its ``record``: this holder's
        token, which its markers carry (:meth:`adopt` takes it), and ``grid``, the grid of
        blocks its markers are of, where given (:data:`BLOCK_GRID`: a later start whose
        config plans other blocks knows them for the run's, :meth:`own_grids`)."""
        grids = {BLOCK_GRID: list(grid)} if grid is not None else {}
        return {**manifest, RECORD_ID: self.token, **grids}

    def adopt(self) -> None:
        """Take the run record's ``record`` (:meth:`record_id`, read now) as the one this
        holder's markers carry: called once the lock is held and the record made (a fresh
        start) or found (a resume), before any block is written. A run whose lock was taken
        over before this read finds it out at its first block's check, before any marker."""
        self.held_record.pop("id", None)
        self.held_record["id"] = self.record_id() or ""
        self._forget()  # what an earlier run in this process knew of its markers

    def clear_done(self, grid: Shape | None = None) -> None:
        """Forget every finished block (a fresh start): on an object store by deleting its
        markers alone (a block's name directly in ``done/``, of ``grid`` where given:
        :func:`_marker_name`, from one listing), never the prefix, which may hold a user's
        objects (h85b; h86e: ``done/3`` of a 2-D output is one)."""
        if self.location.is_local:
            self.location.delete(self._key("done"), recursive=True)
            return
        grids = self.own_grids(grid)  # and the record's, before the listing (h87b)
        names = self.location.list(self._key("done"))
        self.location.delete_files(
            [self._key("done", n) for n in names if _marker_name(n, grids)],
            folders=[self._key("done")],
        )

    #: The record's folder of what a replacement moved aside, to be deleted while the run
    #: computes (:meth:`pipeline.store.location.Folder.set_aside`), below the array's folder.
    ASIDE: ClassVar[str] = f"{RECORD}/aside"

    def clear_aside(self) -> None:
        """Delete what an earlier run of this output moved aside and was stopped before it
        was deleted (a run killed while it computed); a local store's alone, where nothing
        is moved aside otherwise (no request to an object store)."""
        if self.location.is_local:
            self.location.delete(self._key("aside"), recursive=True)

    # -- the run's identity, for refusing a resume with another config or input ------------

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        body = json.dumps(manifest, indent=1).encode()
        self.location.write(self._key("run.json"), [body], atomic=True)

    def read_manifest(self) -> dict[str, Any] | None:
        """The run record (``run.json``), or None where there is none usable: absent, torn
        by a crash, no JSON object, no file (a named pipe: not read), or a link to nothing
        (its line had said to fetch it with ``git annex get``, of a record no one fetches:
        h86e); :meth:`misshapen` names those two, and every start refuses them first."""
        try:
            raw = self.location.read(self._key("run.json"))
        except StoreError as e:
            if is_not_a_file_refusal(e) or is_link_refusal(e):
                return None
            raise
        if raw is None:
            return None
        try:
            doc = json.loads(raw)
        except ValueError:
            return None  # torn by a crash while it was written: no usable record
        return doc if isinstance(doc, dict) else None

    def manifest_key(self) -> str:
        """The run record's key in the store ('out/.pipeline/run.json')."""
        return self._key("run.json")

    def exists(self) -> bool:
        return self.location.exists(self._key())

    def folders_to_make(self) -> list[str]:
        """The local folders that taking this lock creates, read before it is taken: the
        record's folder and each above it that does not exist yet, deepest first ([] for a
        store that is not a local folder). What :func:`remove_if_empty` may remove after a
        failure, and nothing else."""
        if not self.location.is_local:
            return []
        made: list[str] = []
        d = os.path.join(self.location.join(self.array_path), RECORD)
        while not os.path.lexists(d):
            made.append(d)
            up = os.path.dirname(d)
            if up == d:
                break
            d = up
        return made

    def clear(self, grid: Shape | None = None) -> None:
        """Remove the whole record (the run finished; ``grid``: its grid of blocks, whose
        markers alone are its own on an object store, :meth:`_remove_objects`); releases the
        lock, also where part of
        the record could not be removed (:class:`~pipeline.errors.OutputError`, raised; its
        line says the lock stays, and how to remove it, where that was refused too:
        :meth:`stays`). A refused delete of a marker or of ``run.json`` (credentials that
        may write the output but not delete there) had left the lock object held on S3,
        and the next run found it."""
        self._forget()
        try:
            self._remove_record(grid)
        except BaseException as e:
            self.give_up(e)  # the lock, if the record's delete left it (the rest stays)
            raise
        finally:
            self._close_lock()

    def clear_after(self, failure: BaseException | None) -> None:
        """Remove the whole record after a failure (``failure``; None: none): the lock is
        given up whatever else stays, and where it cannot be, ``failure``'s line says so
        (:meth:`give_up`); what else stays is no part of that line."""
        with contextlib.suppress(Exception):
            self._remove_record()
        try:
            self.give_up(failure)
        finally:
            self._close_lock()

    def _remove_record(self, grid: Shape | None = None) -> None:
        """Delete the whole record, the lock last. Where this process holds the local lock:
        never where the file at the lock's path is no longer the one it holds (the store
        moved away: the record there is another's); all but the
        lock first, then the lock, then the folder where nothing is left in
        it: a run that takes the lock as soon as it is gone makes its own in that folder.
        The whole folder's removal had failed there ("Directory not empty", a warning that
        the complete output's record stays), or removed the folder between the other run's
        making it and its open of the lock (a bare FileNotFoundError; h76d). On an object
        store: never where its lock object is no longer this holder's (:meth:`check_held`:
        removed, or taken by another run, whose record this is now); a displaced run's end
        had deleted the other run's lock and markers with its own (h77d). Locally, through
        the array's folder and its record folder held open, once the lock file in them is
        found the one held: what is removed is this run's record wherever the array is
        moved meanwhile, never another's put at its path after that check (h79c: the
        removal had gone by the path, after the check)."""
        path = self.location.join(self._key(self.LOCK))
        if not self.location.is_local:
            self._check_object(0.0)  # never another run's record, that took the lock since
            self._remove_objects(grid)
            return
        held = _HELD.get(path)
        if held is None:
            self.location.delete(self._key(), recursive=True)
            return
        with self.location.folder(self.array_path) as array:
            record = None if array is None else _folder_below(array, RECORD)
            if record is None or array is None or not self._in(array, held):
                # the file at the lock's path is not the one held: the record there is
                # another's
                if record is not None:
                    os.close(record.fd)
                raise self._displaced(_read_holder(self.location, self._key(self.LOCK)) or {})
            try:
                self._remove_record_in(array, record, held)
            finally:
                os.close(record.fd)

    def _remove_objects(self, grid: Shape | None = None) -> None:
        """:meth:`_remove_record` on an object store: the run's own keys under the record
        (:meth:`_own_object`: its markers, ``run.json``) and files an operating system
        writes, from one listing (one LIST per 1000 keys), then its lock; a user's object
        there (:meth:`strangers`, which every start refuses, or one put there while the run
        wrote) stays, where the whole prefix had been deleted with no word (h85b); a name in
        ``done/`` that is no marker of ``grid`` (the run's blocks, where given) too (h86e: a
        user's ``done/3`` of a 2-D output had been taken for a marker and deleted); those of
        the grid ``run.json`` says are the run's too (:meth:`own_grids`, h87b)."""
        grids = self.own_grids(grid)
        own = [
            self._key(k)
            for k in self._record_objects()
            if k != self.LOCK and (self._own_object(k, grids) or is_os_file(k.rpartition("/")[2]))
        ]
        self.location.delete_files(own)
        self.location.delete_files([self._key(self.LOCK)], folders=[self._key("done"), self._key()])

    def _remove_record_in(self, array: Folder, record: Folder, held: int) -> None:
        """:meth:`_remove_record` of a local record held (``held``: the lock file's
        descriptor), through the array's folder ``array`` and its record folder ``record``,
        both held open: all but the lock, then the lock, then the record folder where empty.
        Of its entries, the run's own (:meth:`_own`) and files an operating system writes: a
        user's file there (:meth:`strangers`, which every start refuses) stays, and the
        folder with it, never deleted with no word (h84b)."""
        here = record.location(Location.of(record.path), "")
        try:  # the run's own alone: what else is there stays, and the folder with it (h84b)
            names = sorted(
                n
                for n in os.listdir(record.fd)
                if n != self.LOCK and (self._own(n) or is_os_file(n) or is_write_probe(n))
            )
        except FileNotFoundError:
            names = []
        for name in names:
            here.delete(name, recursive=True)
        _unlink_if(record.fd, self.LOCK, held)  # not a file another run put there since
        self._close_lock()
        try:
            os.rmdir(RECORD, dir_fd=array.fd)
        except FileNotFoundError:
            pass
        except OSError as e:
            if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):  # else another run's lock
                array.location(Location.of(array.path), "").delete(RECORD, recursive=True)

    def stays(self, e: BaseException) -> str:
        """Words for the line of a run (or generation) whose lock could not be given up
        (``e``: its store's refusal of the lock's delete or read): that it stays, what the
        store answered, and how to remove it (the permission to grant, or the command that
        deletes it), since the next run may find it held."""
        lock = self.location.join(self._key(self.LOCK))
        failure = (
            e.data.get("reason") if isinstance(e, PipelineError) else None
        ) or storage_failure(e)
        if not isinstance(failure, str):
            failure = cause(e)
        fix = self.location.answer_fix(failure, side=self.ROLE)
        command = removal_command(self.location, self._key(self.LOCK))
        yourself = f"delete it yourself ({command})" if command else "delete it yourself"
        return (
            f"its lock {name_shown(lock)} stays ({failure}): {fix}, or {yourself}; a later "
            f"{self.WHAT} "
            "may find it held until it is gone"
        )

    def give_up(self, failure: BaseException | None = None) -> None:
        """Release the lock (:meth:`release`) as a run (or generation) ends with ``failure``
        (None: it did its work), never raising: where the lock cannot be given up (its
        store refused the delete, or the read that finds it this run's), ``failure``'s line
        ends with :meth:`stays`' words (a PipelineError's message, or a store's answer
        that :func:`~pipeline.errors.store_answer` says: :func:`~pipeline.errors.then_say`),
        and a warning says them where there is no such line; a PipelineError gets the field
        ``lock_stays`` (the lock's URL). On a local file system the OS lock is dropped
        whatever the file's removal answers (a file left there holds nothing). A refusal
        that ended a run
        had been followed by a release whose own refusal was dropped: the lock stayed held,
        unsaid, and the next run found it."""
        try:
            self.release()
        except Exception as e:
            if self.location.is_local:  # its OS lock is dropped (a file left holds nothing)
                self._close_lock()
                return
            words = self.stays(e)
            if failure is None or not then_say(failure, words):
                log.warning("%s", words[0].upper() + words[1:])
            elif isinstance(failure, PipelineError):  # its field: the lock that stays, which
                # the run's own `run` asked now would find held (runner._as_run_takes)
                failure.__dict__["lock_stays"] = self.location.join(self._key(self.LOCK))

    # -- one writer at a time ----------------------------------------------------------------

    def holder(self) -> dict[str, Any] | None:
        """Who holds the lock now (pid, host, since), or None when no live run does."""
        key = self._key(self.LOCK)
        if self.location.is_local:
            path = self.location.join(key)
            if path in _HELD:
                return _read_holder(self.location, key) or {"pid": os.getpid()}
            try:  # without blocking: a named pipe there had hung every command (h84a)
                fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
            except (FileNotFoundError, NotADirectoryError):  # no lock (under a file: none
                return None  # can be; :meth:`misshapen` names that file)
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):  # no run's lock (a named pipe, a
                    return None  # device, a folder): :meth:`misshapen` names it
                if os.fstat(fd).st_nlink > 1 and _foreign(fd, path, _folder_of(path)):
                    return None  # another store's (a `cp -al` copy's): its run is not ours
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:  # held; gone by the time it is read: given up meanwhile
                return _read_holder(self.location, key, wait=True)
            finally:
                os.close(fd)  # also drops the probe's shared lock
            return None
        holder = _read_holder(self.location, key)
        if holder is None:
            return None
        if _seen_here(holder) and not _alive(holder):
            return None
        return holder

    def acquire(self) -> None:
        """Take the output's lock, or say who holds it (OutputError: ``output``, ``holder``;
        ``lock``, the lock file, where a file system cannot lock)."""
        key = self._key(self.LOCK)
        if self.location.is_local:
            self._acquire_local(key)
            return
        body = json.dumps({**_me(), "token": self.token}).encode()
        for _ in range(40):
            # only a conditional PUT takes it: a run that found the lock gone or its holder
            # ended had written it over unconditionally, and two such runs found it so at
            # once, each then writing the output as its only writer (h63d)
            if self.location.create_exclusive(key, body):
                return
            read = _read_tagged_holder(self.location, key)
            if read is None:  # released meanwhile: race for it again
                continue
            holder, tag = read
            if not _seen_here(holder) or _alive(holder):
                raise self.busy(holder)
            if _take_over(self.location, key, holder, tag, body):  # its process is gone
                return
        raise self._refusal(
            f"cannot take the lock {self.location.shown(key)}: it keeps being replaced",
            lock=self.location.join(key),
        )

    def _acquire_local(self, key: str) -> None:
        """Take the local lock file ``key``'s OS lock (``flock``), held by an open descriptor
        that this process's table (:data:`_HELD`) keeps until :meth:`_close_lock`. Whatever
        stops it before that descriptor is in the table (a Ctrl-C, a full disk) closes it,
        and removes the file where its lock was taken: a Ctrl-C landing between the two had
        left the descriptor open, the lock held by no one that could give it up, and this
        process's next run refused as another thread's (h72c).

        Each store's lock is its own: a lock file that has other names (a hard link another
        store shares: ``cp -al out.zarr copy.zarr``) is never written through, and its name
        here is replaced by a file of this store's own where no run of this store holds it:
        once its lock is taken and no one held it, or, before any lock is taken on it, where
        its holder's record names another record folder (:func:`_folder_of`: each holder
        writes the device and inode of the folder it took its lock in, which a ``cp -al``
        copy makes anew). A run of the copy had been refused as the other store's run, live
        or taking the shared file at the same moment (h76b). Each step that opens, replaces
        or takes the file runs under :func:`_record_guard`, so that a name is replaced only
        while no run of this store is between taking its lock and writing its record."""
        path = self.location.join(key)
        with _HELD_LOCK:
            if path in _HELD:
                raise self.busy(_me())
            link = dangling_link_on(path, self.location.join(""))
            if link is not None:  # the record's folder a link to nothing: makedirs had said
                raise self._refusal(self._linked(*link), lock=path)  # only "File exists"
            busy = 0
            for _ in range(40):
                # (again each try: a run finishing removes its record, this folder, as it ends:
                # the open had raised a bare FileNotFoundError, h76d)
                folders_made(os.path.dirname(path))  # a file there is said as it was
                # the array's folder first: a displaced run's "complete" mark, written under
                # its OS lock after that run's check of its lock (``Folder.locked``), comes
                # wholly before this take or finds it (h84c)
                array = os.path.dirname(os.path.dirname(path))
                with _record_guard(array), _record_guard(os.path.dirname(path)) as folder:
                    taken = self._take_local(path, folder)
                if taken:
                    return
                if taken is None:  # held
                    busy += 1
                    if busy >= 5:
                        holder = _read_holder(self.location, key, wait=True)
                        if holder is None:  # given up meanwhile (its run ended): try again
                            busy = 0
                            continue
                        raise self.busy(holder)
                    time.sleep(0.02)  # maybe only another run's brief look (holder()): retry
            raise self._refusal(
                f"cannot take the lock {name_shown(path)}: it keeps being replaced", lock=path
            )

    def _take_local(self, path: str, folder: tuple[int, int] | None) -> bool | None:
        """One try of :meth:`_acquire_local` at the lock file ``path``, in the record folder
        of device and inode ``folder`` (None: not known): True where taken, None where
        another holds it, False where the file was replaced or removed (try again)."""
        try:  # never through a link (one to nothing had been followed, its target created
            # outside the store, locked, and left there: h72c)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except FileNotFoundError:  # its folder removed meanwhile (a run's end): try again
            return False
        except OSError as e:
            if e.errno == errno.ELOOP and os.path.islink(path):
                raise self._refusal(self._linked(path, os.path.realpath(path)), lock=path) from None
            raise
        locked = False
        try:
            if os.fstat(fd).st_nlink > 1 and _foreign(fd, path, folder):  # another store's run's
                # (or was): this store's name of it goes, untouched, the other's stays
                _drop_name(path, fd)
                return False
            try:
                if not self._lock_file(fd, path):
                    return False
            except BlockingIOError:
                return None
            if os.fstat(fd).st_nlink > 1:  # another store's file too, held by no one: its
                # name here goes, the other store's stays as it was (its bytes had been
                # rewritten with this run's, and a run of either store refused as the other's)
                _drop_name(path, fd)
                return False
            locked = True
            os.ftruncate(fd, 0)
            me = {**_me(), "token": self.token}
            if folder is not None:  # where it took it (:func:`_foreign`)
                me.update(folder=list(folder), lock=os.path.realpath(path))
            _write_all(fd, json.dumps(me).encode())
            _HELD[path] = fd
            return True
        finally:
            if _HELD.get(path) != fd:  # not taken: nothing of it stays open or left
                if locked:  # its file too, this run's (a full disk: held open, its flock
                    # had refused this process's next run as busy; a Ctrl-C)
                    with contextlib.suppress(OSError):
                        os.remove(path)
                os.close(fd)

    def _linked(self, link: str, target: str) -> str:
        """The refusal's words for a lock whose path reads through the symbolic link
        ``link`` (the lock file itself, or the record's folder) to ``target``."""
        lock = self.location.join(self._key(self.LOCK))
        what = "it" if link == lock else link
        return (
            f"cannot take the lock {name_shown(lock)}: {name_shown(what)} is a symbolic link to "
            f"{name_shown(target)}, and "
            "a lock "
            "is a file of the pipeline's own, never taken through a link: remove the link "
            f"(none of the {self.ROLE}'s data goes with it)"
        )

    def _lock_file(self, fd: int, path: str) -> bool:
        """Take the OS lock of the open lock file ``fd``: True where taken on the file now at
        ``path`` (False: it was removed meanwhile, a run finishing between open and lock);
        BlockingIOError where another holds it; a refusal where the file system has none."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise
        except OSError as e:
            if e.errno in (errno.ENOLCK, errno.EOPNOTSUPP):
                raise self._refusal(
                    f"cannot lock {name_shown(path)} ({e.strerror}): the {self.ROLE}'s file system "
                    f"has no file locks; choose another {self.ROLE}.store",
                    lock=path,
                ) from None
            raise
        try:
            return os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            return False

    def _refusal(self, text: str, **fields: Any) -> PipelineError:
        """The error ``text`` of this lock's store (OutputError: ``output``, and ``fields``)."""
        return OutputError(text, output=self.location.join(self.array_path), **fields)

    def busy(self, holder: dict[str, Any]) -> PipelineError:
        """The refusal a second run gets, naming the run that holds the lock (``holder``: its
        ``pid``, ``host``, ``since``, as far as known): OutputError (``output``, ``holder``)."""
        return self._refusal(self._busy_message(holder), holder=holder)

    def _busy_message(self, holder: dict[str, Any]) -> str:
        hint = (
            f"; wait for it, or remove {self.location.shown(self._key(self.LOCK))} if that run "
            "is gone"
            if not self.location.is_local  # a local lock is never stale: the OS drops it
            else "; wait for it to finish, or stop it (Ctrl-C): its last line names the command "
            "that finishes the output"
        )
        where = self.location.join(self.array_path)
        return f"another run is writing {name_shown(where)} ({holder_said(holder)}){hint}"

    def check_apart(self, said: str = "") -> None:
        """Refuse (:func:`nested_refusal`) where another writer of the pipeline, live now,
        writes an array nested with this one (:func:`nested_writers`: holding it, inside it,
        or it, as a writer of the other kind). Asked before the lock is taken (a refusal
        before anything is made), and again once it is held: of two writers that take their
        locks at once, each then looks, so one at least finds the other. ``said``: this
        array as the refusal names it."""
        found = nested_writers(self.location, self.array_path, kind=self.WHAT)
        if found:
            raise nested_refusal(self, found, said)

    def release(self) -> None:
        """Give the lock up (the record's other files stay, for ``--resume``)."""
        key = self._key(self.LOCK)
        if self.location.is_local:
            path = self.location.join(key)
            fd = _HELD.get(path)
            if fd is not None:
                if _same_file(path, fd):  # not the file of another run put at that path
                    # since (this store moved away while its run wrote it: h76d)
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(path)
                self._close_lock()
            return
        read = _read_tagged_holder(self.location, key)
        if read is None:
            return
        holder, tag = read
        if self._mine(holder):
            _delete_version(self.location, key, tag)  # not another's that took it over since

    def _mine(self, holder: dict[str, Any]) -> bool:
        """Whether the lock object's ``holder`` is this one: its :attr:`token` (an earlier
        version's holder, with none: this process). Its pid and host alone had named as this
        run's the lock another run (or another thread's, in this process) took once this
        one's was removed: its release deleted that run's lock (h77d)."""
        if "token" in holder:
            return holder["token"] == self.token
        return (holder.get("pid"), holder.get("host")) == (os.getpid(), socket.gethostname())

    def check_held(
        self, folder: Folder | None = None, within: float = 0.0, strayed: str = ""
    ) -> None:
        """Refuse (OutputError, InputError for a generation: ``output`` or ``input``,
        ``lock``, ``holder``, ``status`` 'displaced') to
        write more where the lock at this store's path is no longer this holder's (its
        :attr:`token`): the output was moved away (``mv``), or its record removed or replaced,
        while its run wrote it. A run writes by the path: its blocks, markers and "complete"
        had gone into whatever was put there meanwhile, a new run's output among them, that
        run's lock at that path then given up by this one's end, two writers of one output
        both exiting 0 with one's blocks in the other's (h76d). Asked by every block's write,
        in whichever process, before its units and before its marker, and before the output
        is marked complete; by a generation's every unit, and before it marks the input
        generated.

        ``folder``: the array's folder, held open by the task that asks
        (:meth:`Location.folder`), whose lock is read, wherever that folder is now; the task
        writes its block through it, so that a move between this check and its writes sends
        them after the output, never into a new run's output at the path (h77e). None: the
        lock at the path.

        On an object store (S3) the lock object is read (one GET, a small object; never one
        per chunk) and its token compared: a lock object deleted while its run wrote (by a
        user, as a busy run's line says to where its run seems gone: a run stopped with
        SIGSTOP, a suspended laptop, another host's), then taken by a run with
        ``--overwrite``, had left the first run writing its blocks, markers and "complete"
        into the other's output, both exiting 0 (h77d). ``within``: seconds for which a
        check of this lock that passed in this process stands (a generation's every unit:
        one GET a second at most, not one per object written); 0: read it now. ``strayed``:
        what the refusal says of what was written since the last check passed (a block's
        units, by the path: perhaps into the output of the run that took the lock)."""
        if not self.location.is_local:
            self._check_object(within, strayed)
            return
        if folder is not None:
            raw = folder.read(f"{RECORD}/{self.LOCK}")
        else:
            raw = b""
            path = self.location.join(self._key(self.LOCK))
            with contextlib.suppress(OSError):  # none there, or no file: not this run's either
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
                try:
                    raw = os.pread(fd, 1 << 16, 0) if stat.S_ISREG(os.fstat(fd).st_mode) else b""
                finally:
                    os.close(fd)
        holder = _holder_of(raw)
        if holder.get("token") != self.token:
            raise self._displaced(holder, strayed)

    def check_writing(self, folder: Folder | None) -> None:
        """The check asked right before a write made after the blocks (the output's
        "complete" mark, its record written again, a generation's "generated" mark:
        ``arrays.update_attributes``' ``check``), inside :meth:`held_folder`: on a local
        store its ``folder`` holds this holder's lock file, on an object store :meth:`check_held`
        (the lock object read now, after the document that write rewrites was read with its
        version, which it is written only while still: a run that took the lock after this
        check had rewritten that document first, h84c)."""
        if not self.location.is_local:
            self.check_held()
            return
        # the lock in the folder held, wherever it is (a move is no take-over: the mark goes
        # into the run's own moved output, h79c), the very file this process holds
        held = _HELD.get(self.location.join(self._key(self.LOCK)))
        if folder is None or (held is not None and not self._in(folder, held)):
            raise self._displaced(_read_holder(self.location, self._key(self.LOCK)) or {})
        self.check_held(folder)

    @contextlib.contextmanager
    def held_folder(self) -> Iterator[Folder | None]:
        """The array's folder held open while inside (:meth:`Location.folder`), for writes
        made after the blocks (the output's "complete" mark, its consolidated copies, its
        record written again) that must land in this holder's array alone: refused
        (:meth:`check_held`'s line) unless the folder at the array's path holds this
        holder's lock as it is opened, and again unless the path still names that folder
        once the writes inside are done. What is written through the folder goes into this
        holder's array wherever it is; what is written by the path between the two checks
        is found out by the second. The mark had been written by the path after a check
        alone: an output moved away meanwhile, another put at its path, had been marked
        complete with none of this run's blocks (h78a). None on an object store (keys
        never move), whose lock object is read before and after."""
        if not self.location.is_local:
            self.check_held()
            yield None
            self.check_held()
            return
        with self.location.folder(self.array_path) as folder:
            self.check_at_path(folder)
            yield folder
            self.check_at_path(folder)

    @contextlib.contextmanager
    def held_store(self) -> Iterator[tuple[Folder | None, Location]]:
        """:meth:`held_folder`, with the store that holds the array (its root folder, held
        open too, refused as :meth:`check_at_path` refuses unless the array's path in it
        names the array's folder held) as a :class:`Location` reached through that root
        (:meth:`Folder.location`): what zarr-python and xarray write by a path inside
        (create's metadata and coordinates, the consolidated copies, the run record, the
        old chunks deleted) goes into this holder's store wherever it is moved meanwhile,
        never into another put at its path, where the second check only found it out
        after it was written (h79c). Where the array alone is moved out of the store held
        meanwhile, what is written at its path in that store is found out by the second
        check. The store as it is where it is no local folder, or where this system has no
        ``/proc/self/fd``."""
        with self.held_folder() as folder:
            if folder is None:
                yield None, self.location
                return
            if not self.array_path:
                yield folder, folder.location(self.location, "")
                return
            with self.location.folder("") as root:
                if root is None or not _holds(root, self.array_path, folder):
                    raise self._displaced(_read_holder(self.location, self._key(self.LOCK)) or {})
                yield folder, root.location(self.location, "")

    def check_at_path(self, folder: Folder | None) -> None:
        """Refuse as :meth:`check_held` does where the local ``folder`` (:meth:`held_folder`'s)
        is none, holds another's lock, or is no longer the one at the array's path. Where this
        process holds the lock, the lock file in ``folder`` must be the very file it holds: a
        copy of the array (``cp -a``) put at the path holds a copy of its lock, this
        holder's token in it."""
        held = _HELD.get(self.location.join(self._key(self.LOCK)))
        if (
            folder is None
            or not folder.at_path()
            or (held is not None and not self._in(folder, held))
        ):
            raise self._displaced(_read_holder(self.location, self._key(self.LOCK)) or {})
        self.check_held(folder)

    def _in(self, folder: Folder, fd: int) -> bool:
        """Whether the open lock file ``fd`` is the lock file in the array's ``folder``."""
        try:
            at = os.stat(f"{RECORD}/{self.LOCK}", dir_fd=folder.fd, follow_symlinks=False)
            it = os.fstat(fd)
        except OSError:
            return False
        return (at.st_dev, at.st_ino) == (it.st_dev, it.st_ino)

    def _check_object(self, within: float, strayed: str = "") -> None:
        """:meth:`check_held` on an object store: its lock object read, the token compared
        (a check of it that passed in this process less than ``within`` seconds ago stands);
        ``strayed``: as :meth:`check_held` says."""
        key = self._key(self.LOCK)
        seen = (self.location.join(key), self.token)
        last = _CHECKED.get(seen)
        if within > 0 and last is not None and time.monotonic() - last < within:
            return
        holder = _holder_of(self.location.read(key) or b"")
        if holder.get("token") != self.token:
            _CHECKED.pop(seen, None)
            raise self._displaced(holder, strayed)
        _CHECKED[seen] = time.monotonic()

    def _displaced(self, holder: dict[str, Any], strayed: str = "") -> PipelineError:
        """The refusal of :meth:`check_held`: the lock at the path is ``holder``'s ({}: none
        there, or none a run wrote); ``strayed``: what it says, before its advice, of what
        was written since the last check passed."""
        strayed = f"; {strayed}" if strayed else ""
        lock = self.location.join(self._key(self.LOCK))
        where = self.location.join(self.array_path)
        now = f"another run's ({holder_said(holder)})" if holder.get("pid") else "gone"
        if holder.get("token") == self.token:  # a copy of the array put there (h78a)
            now = f"a copy of {self.HOLDER}'s, not the one it holds"
        text = (
            f"{name_shown(where)} was moved, or its record removed or replaced, while "
            f"{self.HOLDER} wrote "
            f"it (its lock {name_shown(lock)} is now {now}): {self.HOLDER} stopped, since it "
            "writes by "
            f"that path{strayed}; {self.AFTER_MOVE}"
        )
        if not self.location.is_local:  # keys that never move: its lock object was deleted
            text = (
                f"the lock {lock} of {name_shown(where)} was removed, or taken by another run, "
                "while "
                f"{self.HOLDER} wrote it (it is now {now}): {self.HOLDER} stopped, so as not "
                f"to write into another's{strayed}; {self.AFTER_TAKEN}"
            )
        return self._refusal(
            text,
            lock=lock,
            holder=holder,
            status="displaced",
        )

    def _close_lock(self) -> None:
        if not self.location.is_local:
            return
        with _HELD_LOCK:
            fd = _HELD.pop(self.location.join(self._key(self.LOCK)), None)
        if fd is not None:
            os.close(fd)


@dataclass(frozen=True)
class InputLock(Ledger):
    """The lock of an input that ``pipeline generate`` (or ``run``'s
    ``input.generate.when_missing``) is writing, ``<array>/.pipeline/generate.lock``: the
    output's lock (:class:`Ledger`'s, with its OS lock on a local file system and its
    conditional PUT and take-over of a stopped holder's object on an object store) under
    another name. Two generations of one input at once had taken none: both had failed with
    misleading lines, or both exited 0 with the last one's data, a run meanwhile reading what
    the other rewrote. It lies in the array's folder, where Zarr readers never list (a
    group's members are folders beside it), and generating clears that folder itself, keeping
    ``.pipeline`` (:func:`pipeline.store.arrays.clear_array`), where zarr-python's overwrite
    deleted the whole folder, a lock in it too. Nothing else of a run record is kept there:
    the generation removes the folder when it ends (:meth:`Ledger.clear`)."""

    LOCK: ClassVar[str] = "generate.lock"
    ROLE: ClassVar[str] = "input"
    WHAT: ClassVar[str] = "generate"
    HOLDER: ClassVar[str] = "this generation"
    AFTER_MOVE: ClassVar[str] = "generate it again where it is now (input.store naming it)"
    AFTER_TAKEN: ClassVar[str] = "generate it again once no other generation writes it"

    def left(self) -> dict[str, Any] | None:
        """The holder document (``pid``, ``host``, ``since``; {} where it was never written)
        of the lock a generation that was stopped (killed) left: its file or object is there
        and no live process holds it (:meth:`holder`). None where there is none, or a live
        process holds it. Every generation removes its lock when it ends, however it fails
        (:func:`pipeline.running.generate.generate_input`), so one left behind marks its
        input as one whose generation never finished, whatever it had written: nothing but
        the lock, the array's folder half cleared, metadata, some chunks. Reads only (a local
        lock file is probed as :meth:`holder` probes it: a generation just creating it, its
        OS lock not yet taken, is looked at again)."""
        key = self._key(self.LOCK)
        for look in range(2):
            if not self.location.exists(key) or self.holder() is not None:
                return None
            doc = _read_holder(self.location, key)
            if doc is None:  # removed meanwhile: its generation ended
                return None
            if doc or look:
                return doc
            time.sleep(0.2)  # empty: maybe one creating it now, before its OS lock and pid
        return None

    def _refusal(self, text: str, **fields: Any) -> PipelineError:
        return InputError(text, input=self.location.join(self.array_path), **fields)

    def busy(self, holder: dict[str, Any]) -> PipelineError:
        """The refusal of a second generation of the input (InputError: ``input``,
        ``holder``, ``status`` 'generating'), naming the process that generates it."""
        return self._refusal(self._busy_message(holder), holder=holder, status="generating")

    def _busy_message(self, holder: dict[str, Any]) -> str:
        where = self.location.join(self.array_path)
        gone = (
            f", or remove {self.location.shown(self._key(self.LOCK))} if that process is gone"
            if not self.location.is_local  # a local lock is never stale: the OS drops it
            else ", or stop it (Ctrl-C: its last line names the command that generates it again)"
        )
        who = holder_said(holder, GENERATING_CALL)
        return (
            f"another process is generating the input {name_shown(where)} ({who}): wait for it "
            f"to end{gone}"
        )


def _os_or_probe(key: str) -> bool:
    """Whether ``key``'s last name is a file an operating system writes into any folder
    (:func:`~pipeline.store.location.is_os_file`) or a write probe's object (another run's,
    probing the store at once: :func:`~pipeline.store.location.is_write_probe`)."""
    name = key.rpartition("/")[2]
    return is_os_file(name) or is_write_probe(name)


def summed_counts(docs: Sequence[Mapping[str, Any] | None]) -> dict[str, int] | None:
    """The counts of markers (``docs``: what each holds, :meth:`Ledger.each_counts`),
    summed; None where one has none (unknown)."""
    total: dict[str, int] = {}
    for doc in docs:
        if not doc:
            return None
        for k, v in doc.items():
            total[k] = total.get(k, 0) + int(v)
    return total


def removal_command(location: Location, key: str) -> str | None:
    """A command that deletes the object ``key`` of ``location``, a store on S3, as a line
    tells its user to (`aws s3 rm s3://b/out.zarr/.pipeline/lock`, with its endpoint URL
    where ``storage_options`` give one); None for any other store."""
    url = location.join(key)
    if not url.startswith("s3://"):
        return None
    options = location.storage_options
    endpoint = options.get("endpoint_url") or (options.get("client_kwargs") or {}).get(
        "endpoint_url"
    )
    flag = f" --endpoint-url {shell_word(endpoint)}" if endpoint else ""
    return f"`aws s3 rm {shell_word(url)}{flag}`"


def remove_if_empty(made: list[str]) -> None:
    """After a run or generation that failed before writing: remove the folders its lock
    made (``made``, deepest first: :meth:`Ledger.folders_to_make`) that nothing else is in.
    A folder that was there before (the user's own, empty, made to receive the array) is
    never removed: it had been, as one the lock created."""
    for d in made:
        with contextlib.suppress(OSError):
            os.rmdir(d)


def writer_of(location: Location, path: str) -> tuple[str, dict[str, Any]] | None:
    """Who is writing the array at ``path`` of ``location`` now, where a process of the
    pipeline is: ('generate', its holder) for a generation (:class:`InputLock`), ('run', its
    holder) for a run writing it as its output (:class:`Ledger`); None where neither lock is
    held. Reads only (a local lock file opened for reading, an object store's GET)."""
    for what, lock in (("generate", InputLock), ("run", Ledger)):
        holder = lock(location, path.strip("/")).holder()
        if holder is not None:
            return what, holder
    return None


#: The pipeline's writers, by what they do ('run': a run writing its output; 'generate': a
#: generation writing an input), and the lock each holds in its array's record folder.
WRITERS: tuple[tuple[str, type[Ledger]], ...] = (("run", Ledger), ("generate", InputLock))


@dataclass(frozen=True)
class Nested:
    """Another writer of the pipeline (:data:`WRITERS`) live now, whose array is nested with
    one's own: ``what`` ('run' or 'generate'), ``where`` (its array's path, resolved, or
    URL), ``holder`` (its lock's holder), ``relation``: 'is' (the same array: a writer of the
    other kind), 'holds' (its array holds one's own) or 'inside' (it lies inside one's own)."""

    what: str
    where: str
    holder: dict[str, Any]
    relation: str


def nested_writers(
    location: Location, path: str, kind: str = "", below: bool = True
) -> list[Nested]:
    """The pipeline's writers live now (:data:`WRITERS`, their locks held) whose array holds
    the array at ``path`` of ``location`` (in a folder or prefix above it, in the store or
    above its root), is that array (a writer of another kind than ``kind``, the caller's own,
    whose lock keeps its own kind out), or, with ``below``, lies inside it. Each lock is one
    writer's alone, at its own array: a run writing ``out.zarr`` and one writing
    ``out.zarr/sub`` (or generating an input there) had each taken its own, and the first's
    clearing of its folder, or ``--overwrite``, deleted the other's data and lock, both
    exiting 0. A local store is looked at by its resolved path (an output that is a link to,
    or lies in a link to, another's folder is found there); a folder reached under another
    path no link explains (a bind mount) is not. Reads only; ``below`` walks the folders
    under the array (on an object store one listing a folder), but never those of an array
    (:func:`_is_array`: its chunks). [] on a store of no folders or prefixes to look in (an
    archive, HTTP), where nothing is written."""
    path = path.strip("/")
    if location.is_local:
        return _nested_local(os.path.realpath(location.join(path)), kind, below)
    full = location.join(path)
    scheme, sep, rest = full.partition("://")
    if not sep or "::" in full or scheme in ("http", "https") or not rest.strip("/"):
        return []
    bucket, _, key = rest.strip("/").partition("/")
    root = Location.of(f"{scheme}://{bucket}", location.storage_options, location.setting)
    parts = [p for p in key.split("/") if p]
    found: list[Nested] = []
    for i in range(len(parts) + 1):
        at = "/".join(parts[:i])
        for what, lock in WRITERS:
            if i == len(parts) and what == kind:
                continue  # one's own lock: it keeps a second writer of this kind out
            holder = _probed(lock(root, at))
            if holder is not None:
                rel = "is" if i == len(parts) else "holds"
                found.append(Nested(what, root.join(at), holder, rel))
    if not below:
        return found
    fs = location.fs()
    todo = [path]
    while todo:  # folder by folder (one listing each), never into an array's chunks
        key = todo.pop()
        try:
            listed = fs.ls(location.path_of(key), detail=True)
        except Exception as e:  # none there, or a listing refused: the run's own reads say it
            log.debug("cannot list %s for other writers' locks: %s", location.join(key), e)
            continue
        names = {str(e["name"]).rstrip("/").rsplit("/", 1)[-1]: e.get("type") for e in listed}
        if key != path and RECORD in names:
            for what, lock in WRITERS:
                holder = _probed(lock(location, key))
                if holder is not None:
                    found.append(Nested(what, location.join(key), holder, "inside"))
        meta = f"{key}/zarr.json" if key else "zarr.json"
        if _is_array(set(names), functools.partial(location.read, meta)):
            continue
        todo += [
            f"{key}/{n}" if key else n for n, t in names.items() if t == "directory" and n != RECORD
        ]
    return found


def _is_array(names: set[str], metadata: Any) -> bool:
    """Whether a folder holding ``names`` is a Zarr array (v2's ``.zarray``, or a v3
    ``zarr.json`` whose ``node_type`` is 'array', read by ``metadata()`` only then): the walk
    for other writers goes no further in, since no writer writes under an array (each refuses
    that before it takes its lock: ``output.check_parents``, ``generate``'s target check), and
    an array appears only through a writer that looks for the others once it holds its own
    lock. A large output's chunk folders are so never walked (listed, on an object store)."""
    if ".zarray" in names:
        return True
    if "zarr.json" not in names:
        return False
    try:
        doc = json.loads(metadata() or b"null")
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and doc.get("node_type") == "array"


def _probed(lock: Ledger) -> dict[str, Any] | None:
    """``lock``'s live holder, or None where there is none or it cannot be asked: a folder
    or prefix above the store that this user may not read (S3 answers a GET there, and one
    of a missing key to a user who may not list, AccessDenied), no credentials. Such a
    refusal is no other writer's lock: the run's own reads of its stores name it, as
    before (a probe above the input had been the first to fail, naming the bucket)."""
    try:
        return lock.holder()
    except Exception as e:
        log.debug("cannot look for a lock at %s: %s", lock.location.join(lock.array_path), e)
        return None


def _nested_local(real: str, kind: str, below: bool) -> list[Nested]:
    """:func:`nested_writers` of the local folder ``real`` (resolved)."""
    found: list[Nested] = []

    def look(folder: str, relation: str) -> None:
        for what, lock in WRITERS:
            if relation == "is" and what == kind:
                continue  # one's own lock: it keeps a second writer of this kind out
            if not os.path.isfile(os.path.join(folder, RECORD, lock.LOCK)):
                continue
            holder = _probed(lock(Location.of(folder), ""))
            if holder is not None:
                found.append(Nested(what, folder, holder, relation))

    up = os.path.dirname(real)
    while True:
        look(up, "holds")
        parent = os.path.dirname(up)
        if parent == up:
            break
        up = parent
    look(real, "is")
    if below and os.path.isdir(real):
        for folder, dirs, files in os.walk(real):  # links not followed: deleting one deletes
            # it, not what it names
            if RECORD in dirs:
                dirs.remove(RECORD)  # its markers: no writer's array
                if folder != real:
                    look(folder, "inside")
            meta = os.path.join(folder, "zarr.json")
            if _is_array(set(files), functools.partial(_read_local, meta)):
                dirs[:] = []  # its chunks
    return found


def _read_local(path: str) -> bytes | None:
    """The bytes of the local file ``path`` (None where it cannot be read, or is no file: a
    named pipe is not waited on, :func:`~pipeline.store.local_files.open_local_file`)."""
    try:
        with open_local_file(path) as f:
            return f.read()
    except (OSError, NotAFile):
        return None


def check_read_apart(location: Location, path: str) -> None:
    """Refuse (InputError, :func:`nested_refusal`'s fields) to read the array at ``path`` of
    ``location`` where it lies inside an array another writer of the pipeline is writing
    now (:func:`nested_writers`, above it alone: a run whose output holds it, whose clearing
    or ``--overwrite`` deletes it as it is read; a generation of an input that holds it).
    The array itself being written is :func:`pipeline.store.arrays.check_not_being_written`'s.
    A reader holds no lock: a run that begins writing around an input already being read is
    found by the reader's check of the input's identity at its end. Reads only."""
    holding = [f for f in nested_writers(location, path, below=False) if f.relation == "holds"]
    if holding:
        raise nested_refusal(InputLock(location, path.strip("/")), holding)


def nested_refusal(lock: Ledger, nested: Sequence[Nested], said: str = "") -> PipelineError:
    """The refusal of the writer of ``lock`` (a run: OutputError; a generation: InputError)
    at an array nested with those of ``nested`` (one writer at least), in one line naming
    its array, the first of them with its holder, every other one (three by name, then how
    many more: :func:`~pipeline.errors.some_shown`; the first alone had been named, and the
    wait for it met the next one's refusal, h85b) and the fix: fields ``output`` or
    ``input`` (its array, as ``said``, else as its location joins it), ``other`` (the first
    one's ``where``), ``others`` (every one's), ``holder``, ``relation`` and ``status``
    ('writing' or 'generating', what the first does)."""
    found, rest = nested[0], nested[1:]
    mine = said or lock.location.join(lock.array_path)
    rel = {"is": "is", "holds": "lies inside", "inside": "holds"}[found.relation]
    doing = (
        "another run is writing as its output"
        if found.what == "run"
        else "another process is generating as an input"
    )
    who = holder_said(found.holder, "`pipeline.run`" if found.what == "run" else GENERATING_CALL)
    other = "run" if found.what == "run" else "generation"
    fields = {
        lock.ROLE: mine,
        "other": found.where,
        "others": [f.where for f in nested],
        "holder": found.holder,
        "relation": found.relation,
        "status": "writing" if found.what == "run" else "generating",
    }
    also = ""
    if rest:
        also = (
            f"; other writers of the pipeline write {some_shown([f.where for f in rest])}, "
            "nested with it too, now"
        )
    them = "them" if rest else "it"
    text = (
        f"the {lock.ROLE} {mine} {rel} {found.where}, which {doing} now ({who}){also}, and "
        f"one's clearing would delete the other's data: choose an {lock.ROLE}.store apart "
        f"from {them} (neither inside {them} nor holding {them}), or wait for "
        f"{'those writers' if rest else f'that {other}'} to end"
    )
    if lock.ROLE == "input":
        return InputError(text, **fields)
    return OutputError(text, **fields)


#: The API call that generates an input in a process of the user's, as a lock's holder of
#: this process is named (:func:`holder_said`): the package has no call of its own for it
#: (the line had named ``pipeline.generate_input``, which it has not).
GENERATING_CALL = "`pipeline.run` (input.generate.when_missing)"


def holder_said(holder: dict[str, Any], call: str = "`pipeline.run`") -> str:
    """The run that holds an output's lock (``holder``: its ``pid``, ``host``, ``since``, as
    far as known), in words: 'pid 7598 on vm, since 2026-12-05 12:19:03' (this host's local
    time), or this process's other thread (in ``call``, the API call that holds it). Every
    line that names a lock's holder says it so (h65d: `verify` had said the time as the
    lock's raw number of seconds since 1970)."""
    since = holder.get("since")
    when = (
        time.strftime(", since %Y-%m-%d %H:%M:%S", time.localtime(since))
        if isinstance(since, (int, float)) and not isinstance(since, bool)
        else ""
    )
    pid, host = holder.get("pid", "?"), holder.get("host", "?")
    if (pid, host) == (os.getpid(), socket.gethostname()):
        return f"this process, another thread's {call}{when}"
    return f"pid {pid} on {host}{when}"


def _unlink_if(at: int, name: str, fd: int) -> None:
    """Remove the file ``name`` in the folder open as ``at`` where it is the open file
    ``fd`` (not through a link)."""
    try:
        same = os.path.samestat(os.stat(name, dir_fd=at, follow_symlinks=False), os.fstat(fd))
    except OSError:
        return
    if same:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=at)


def _folder_below(folder: Folder, name: str) -> Folder | None:
    """The folder ``name`` in the local ``folder``, opened (the caller closes its
    descriptor); None where there is none."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=folder.fd)
    except OSError:
        return None
    return Folder(fd, os.path.join(folder.path, name))


def _holds(root: Folder, path: str, folder: Folder) -> bool:
    """Whether ``path`` in the local folder ``root`` names ``folder`` (through links, as
    :meth:`Location.folder` opened it)."""
    try:
        at = os.stat(path, dir_fd=root.fd)
        return os.path.samestat(at, os.fstat(folder.fd))
    except OSError:
        return False


def _write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to the file ``fd``, or raise the OSError that stopped it: one
    ``os.write`` may write part of it (at a file size limit, ``ulimit -f``, a lock file had
    been left holding part of its holder, its run going on), the next one then raising."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


@contextlib.contextmanager
def _record_guard(folder: str) -> Iterator[tuple[int, int] | None]:
    """Hold an OS lock (``flock``) on the local record folder ``folder`` (a folder of this
    store's own: ``cp -al`` copies folders, linking only files) for one try at its lock
    file, giving the folder's (device, inode) (:func:`_folder_of`). None where it cannot be
    opened or locked (a file system that locks no folders: then no holder records its folder,
    and no shared file is replaced before its own lock is taken)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        yield None
        return
    try:
        if not _flock_folder(fd):
            yield None
            return
        st = os.fstat(fd)
        yield (st.st_dev, st.st_ino)
    finally:
        os.close(fd)  # the lock goes with it


def _flock_folder(fd: int) -> bool:
    """Take an exclusive OS lock (``flock``) on the open local folder ``fd``, waiting for it;
    False where the file system locks no folders (NFS without locks and the like)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError as e:
        if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EBADF):
            raise
        return False
    return True


def _folder_of(path: str) -> tuple[int, int] | None:
    """(device, inode) of the local lock file ``path``'s folder (None: not there)."""
    try:
        st = os.stat(os.path.dirname(path))
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _foreign(fd: int, path: str, folder: tuple[int, int] | None) -> bool:
    """Whether the holder's record in the open lock file ``fd``, at ``path`` in the record
    folder of (device, inode) ``folder``, says it was taken in another store: another folder
    (a ``cp -al`` copy makes its folders anew, linking only files) under another path (a
    store moved away while its run wrote it, a copy put at its path, is still that run's).
    Such a file is another store's too, never taken by a run of this store, whose record
    names its own. False where anything is not known (an earlier version's record, none, a
    torn one)."""
    if folder is None:
        return False
    try:
        holder = _holder_of(os.pread(fd, 1 << 16, 0))
    except OSError:
        return False
    taken_in, taken_at = holder.get("folder"), holder.get("lock")
    if not (isinstance(taken_in, list) and len(taken_in) == 2 and isinstance(taken_at, str)):
        return False
    return tuple(taken_in) != folder and taken_at != os.path.realpath(path)


def _same_file(path: str, fd: int) -> bool:
    """Whether the name ``path`` is (still) the open file ``fd``."""
    try:
        at, it = os.lstat(path), os.fstat(fd)
    except OSError:
        return False
    return (at.st_dev, at.st_ino) == (it.st_dev, it.st_ino)


def _drop_name(path: str, fd: int) -> None:
    """Remove the name ``path`` where it is still the open file ``fd`` (another name of it
    stays, and so do its bytes): only under :func:`_record_guard`, so that no run of this
    store is taking the file meanwhile."""
    if _same_file(path, fd):
        with contextlib.suppress(OSError):
            os.remove(path)


def _me() -> dict[str, Any]:
    me: dict[str, Any] = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}
    with contextlib.suppress(Exception):
        import psutil

        me["started"] = psutil.Process().create_time()
    machine = _machine()
    if machine is not None:
        me["machine"] = machine
    return me


@functools.cache
def _machine() -> str | None:
    """What names the processes this one can see: its kernel's boot (``boot_id``) and its
    PID namespace (None where there is no ``/proc`` to say them)."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
        return f"{boot}/{os.readlink('/proc/self/ns/pid')}"
    except OSError:
        return None


def _seen_here(holder: dict[str, Any]) -> bool:
    """Whether the lock holder ``holder``'s process is one this process can look up by its
    pid: its host is this one, and so are its kernel and PID namespace where it recorded
    them (:func:`_machine`; a holder that did not is judged by its host alone). A holder in
    another container of the same host name (two containers given one ``--hostname``, or a
    host's and its container's), whose pid named no process, or another one, here, had been
    taken for an ended run's, and its live lock taken over (h82e)."""
    if holder.get("host") != socket.gethostname():
        return False
    return holder.get("machine", _machine()) == _machine()


def _holder_of(raw: bytes) -> dict[str, Any]:
    """The holder document in a lock's bytes ({} where they hold none: torn, or no JSON)."""
    try:
        doc = json.loads(raw)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def _read_tagged_holder(location: Location, key: str) -> tuple[dict[str, Any], str | None] | None:
    """The lock object ``key``'s holder document ({} where it holds none) and the tag of that
    version of it (:meth:`Location.read_tagged`: S3's ETag; None on a store without one),
    read in one request; None where there is no lock."""
    read = location.read_tagged(key)
    return None if read is None else (_holder_of(read[0]), read[1])


def _delete_version(location: Location, key: str, tag: str | None) -> None:
    """Delete the lock object ``key`` if it is still the version ``tag`` (None: a store
    without conditional deletes, where it is deleted whatever it holds now)."""
    if tag is not None:
        with contextlib.suppress(NotImplementedError):  # else: a store refusing If-Match
            location.delete_if(key, tag)
            return
    location.delete(key)


def _read_holder(location: Location, key: str, wait: bool = False) -> dict[str, Any] | None:
    """The lock file's holder document; ``wait``: give its writer a moment to fill it."""
    for _ in range(20 if wait else 1):
        raw = location.read(key)
        if raw is None:
            return None
        try:
            doc = json.loads(raw)
            if isinstance(doc, dict):
                return doc
        except ValueError:
            pass
        if wait:
            time.sleep(0.05)
    return {}


def _alive(holder: dict[str, Any]) -> bool:
    """Whether the holder's process (on this host) still runs: its pid exists and, when the
    lock recorded it, it started when the holder did (a recycled pid is not the holder)."""
    import psutil

    pid = holder.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        created = psutil.Process(pid).create_time()
    except psutil.NoSuchProcess:  # ZombieProcess included
        return False
    except psutil.Error:
        return True  # cannot tell (permissions): assume it runs
    started = holder.get("started")
    return not isinstance(started, (int, float)) or abs(created - started) < 1.0


#: The groups whose lock each thread holds (:func:`group_lock`), by real path (local) or by
#: the URL of their lock object (object stores).
_GROUPS_HELD = threading.local()

#: The name of an output group's lock object on an object store, in the group's record folder
#: (``<group>/.pipeline/group.lock``): a name every listing of the group by this pipeline
#: leaves out, as it leaves out an array's record, and that no Zarr node is.
GROUP_LOCK = "group.lock"
#: Seconds between a holder's renewals of its group lock object (its ``beat``).
GROUP_LOCK_BEAT = 10.0
#: A group lock object not renewed for this long (seconds) is a stopped run's: taken over.
#: Well above a renewal's period, and independent of how long the held step takes. Not
#: lowered to a few renewals' periods (a killed holder on another host costs the next run
#: this wait, h83f): a renewal is a GET and a conditional PUT, each of which may wait out
#: aiobotocore's read timeout (60 s by default) and s3fs's retries (5, backing off), while
#: the holder goes on writing the group's shared metadata, finding a take-over only at the
#: end of its step (:func:`_group_taken`); 30 s would let one stalled renewal of a live
#: holder put two writers in the group.
GROUP_LOCK_STALE = 120.0
#: The longest (seconds) a run waits for another run's hold of a group's lock on an object
#: store before it gives up, naming the lock object.
GROUP_LOCK_WAIT = 900.0

log = logging.getLogger(__name__)


@contextlib.contextmanager
def group_lock(
    location: Location, group: str | None, wait: float = GROUP_LOCK_WAIT
) -> Iterator[None]:
    """Hold the lock of the output group ``group`` of ``location`` (None: an output written
    alone, no group) while a run reads or rewrites the metadata shared by the runs that write
    its variables: the group's ``zarr.json`` (its attributes, its consolidated copy, which
    lists every member's metadata) and the coordinates they share. Each such step is a read
    then a write: two runs writing different variables into one group at once had failed
    (a run's coordinates deleted while the other wrote its own, xarray's
    ``ContainsArrayError``; a coordinate taken for a relabelling, from what the other had
    half-written), and a consolidation begun before the other's completion and written after
    it would put back its "incomplete". A thread that holds it already takes it again; one
    that waits blocks until the other run's step is done (a short one).

    On a local file system: an OS lock (``flock``) on the group's folder (the nearest folder
    above that is, before it is made), which stays where the group's documents are replaced,
    and holds no file a reader would list; the kernel drops it with its process.

    On an object store (S3): a lock object, ``<group>/.pipeline/group.lock``
    (:data:`GROUP_LOCK`), created only where none is (:meth:`Location.create_exclusive`: a
    conditional PUT, as the output's own lock), holding the holder's ``pid``, ``host``,
    ``since``, renewed (``beat``) every :data:`GROUP_LOCK_BEAT` seconds while held, and
    deleted at the end. A run that finds it polls (0.05 s, up to 1 s apart); it takes over an
    object whose holder is gone (same host: its process has ended) or has not renewed it for
    :data:`GROUP_LOCK_STALE` seconds (a killed run's), and after ``wait`` seconds gives up:
    OutputError (fields ``output``, the group; ``lock``, the object's URL; ``holder``), one
    line naming the object to remove if its run is gone. While it is held, zarr-python's
    listing of the group's members (``xr.open_zarr`` without consolidated metadata) sees a
    ``.pipeline`` entry, which it skips with a warning (a ``ZarrUserWarning``, "not
    recognized as a component of a Zarr hierarchy"): the members it finds are the same."""
    if group is None:
        yield
        return
    if not location.is_local:
        with _object_group_lock(location, group, wait):
            yield
        return
    path = location.join(group)
    while not os.path.isdir(path):
        parent = os.path.dirname(path)
        if parent == path:
            yield
            return
        path = parent
    key = os.path.realpath(path)
    held: set[str] = _GROUPS_HELD.__dict__.setdefault("paths", set())
    if key in held:
        yield
        return
    fd = os.open(key, os.O_RDONLY)
    try:
        # where the file system locks no folders, the output's own lock says so where it matters
        _flock_folder(fd)
        held.add(key)
        try:
            yield
        finally:
            held.discard(key)
    finally:
        os.close(fd)  # the lock goes with it


def group_lock_key(group: str) -> str:
    """The key of the lock object of the output group ``group`` on an object store."""
    return "/".join(p for p in (group.strip("/"), RECORD, GROUP_LOCK) if p)


@contextlib.contextmanager
def _object_group_lock(location: Location, group: str, wait: float) -> Iterator[None]:
    """:func:`group_lock` on an object store: its lock object, taken, renewed, deleted."""
    key = group_lock_key(group)
    where = location.join(key)
    held: set[str] = _GROUPS_HELD.__dict__.setdefault("paths", set())
    if where in held:
        yield
        return
    token = _take_group_lock(location, group, key, wait)
    held.add(where)
    stop = threading.Event()
    taken: list[dict[str, Any]] = []  # the holder that took it over meanwhile, if one did
    beat = threading.Thread(
        target=_renew_group_lock,
        args=(location, key, token, stop, taken),
        name="pipeline-group-lock",
        daemon=True,
    )
    beat.start()
    try:
        yield
    finally:
        held.discard(where)
        stop.set()
        beat.join()
        _drop_group_lock(location, key, token, taken)
    if taken:  # (a step that failed says its own failure)
        raise _group_taken(location, group, key, taken[0])


def _take_group_lock(location: Location, group: str, key: str, wait: float) -> str:
    """Create the group's lock object ``key``, waiting while a live run holds it (taking over
    a stale one: :func:`_stale`, judged by how long this process has seen the same version of
    it, on its own clock); its token (OutputError after ``wait`` seconds)."""
    token = uuid.uuid4().hex
    deadline = time.monotonic() + wait
    pause = 0.05
    seen: tuple[Any, float] | None = None  # the version found, and since when (this clock's)
    unchanged = 0.0
    while True:
        mine = {**_me(), "token": token, "beat": time.time()}
        if location.create_exclusive(key, json.dumps(mine).encode()):
            return token
        read = _read_tagged_holder(location, key)
        holder = {} if read is None else read[0]  # none: released meanwhile, try again
        if read is not None:
            version = (read[1], json.dumps(holder, sort_keys=True))
            now = time.monotonic()
            if seen is None or seen[0] != version:
                seen = (version, now)
            unchanged = now - seen[1]
        if read is not None and _stale(holder, unchanged):  # after a pause (never a busy loop)
            if _take_over(location, key, holder, read[1], json.dumps(mine).encode()):
                return token
            if time.monotonic() < deadline:  # (a store whose deletes fail gets its bound too)
                continue
        if time.monotonic() >= deadline:
            raise _group_busy(location, group, key, holder, wait, unchanged)
        time.sleep(pause)
        pause = min(pause * 1.5, 1.0)


def _take_over(
    location: Location, key: str, holder: dict[str, Any], tag: str | None, body: bytes
) -> bool:
    """Take over the lock object ``key`` of a stopped run (``holder``, read as the version
    ``tag``), writing ``body`` (this process's holder) over it; whether this process now
    holds it. Of processes that found the same stopped holder at once, one alone does: the
    object is replaced on the condition that it is still that version (S3's If-Match on the
    ETag as read, :meth:`Location.replace_if`), atomic in the store. Reading the holder,
    comparing it and deleting the object, then racing for it with a conditional create, had
    not been: a second process that read the stopped holder before the first one's create
    deleted that one's new lock, and both wrote the output as its only writer (h68a).

    On a store that gives no version tag (:meth:`Location.read_tagged`: not S3) or refuses
    the condition (an S3-compatible one answering 501 NotImplemented), the object
    is deleted if it still holds ``holder`` as read again, and False returned: the caller
    races for it with a conditional create (:meth:`Location.create_exclusive`). There a
    process that read the stopped holder before another's delete and create, and deletes
    after them, still deletes that one's lock (the window between its read and its delete)."""
    log.warning("taking over %s, left by a stopped run", location.join(key))
    if tag is not None:
        with contextlib.suppress(NotImplementedError):  # else: a store refusing If-Match
            return location.replace_if(key, body, tag) is not None
    if _read_holder(location, key) == holder:
        location.delete(key)
    return False


def _stale(holder: dict[str, Any], unchanged: float) -> bool:
    """Whether a group lock object's ``holder`` is gone: its process ended (on this host), or
    the object has stayed the same version (its holder has not renewed it) for ``unchanged``
    seconds, over :data:`GROUP_LOCK_STALE`, as this process has watched it on its own clock.
    The holder's ``beat`` (the time of its host's clock) is never compared with this one's:
    a live run on a host whose clock is two minutes behind had had its lock taken over at
    once, each then rewriting the group's shared metadata as its only writer (h82e)."""
    if _seen_here(holder) and not _alive(holder):
        return True
    return unchanged > GROUP_LOCK_STALE


def _renew_group_lock(
    location: Location, key: str, token: str, stop: threading.Event, taken: list[dict[str, Any]]
) -> None:
    """Rewrite the group's lock object ``key`` with a new ``beat`` every
    :data:`GROUP_LOCK_BEAT` seconds until ``stop``, while it is still this holder's: on S3
    only if it is still the version read (If-Match), so that a run taking it over between the
    read and the write is never written over (an unconditional rewrite had put back the
    stopped holder's token over the new holder's). Where another holder has taken it over
    (this run was thought stopped), that holder is put in ``taken``."""
    while not stop.wait(GROUP_LOCK_BEAT):
        try:
            read = _read_tagged_holder(location, key)
            if read is None:
                return  # removed: nothing of ours to renew
            if read[0].get("token") != token:
                taken.append(read[0])  # taken over: nothing of ours to renew
                return
            holder, tag = read
            body = json.dumps({**holder, "beat": time.time()}).encode()
            try:
                if tag is not None and location.replace_if(key, body, tag) is None:
                    continue  # taken over since it was read: the next look says so, and ends
            except NotImplementedError:  # a store refusing If-Match
                tag = None
            if tag is None:
                location.write(key, [body])
        except Exception as e:  # a renewal missed: the next one may pass
            log.debug("cannot renew %s: %s", location.join(key), e)


def _drop_group_lock(location: Location, key: str, token: str, taken: list[dict[str, Any]]) -> None:
    """Delete the group's lock object ``key`` if it is still this holder's (``token``); where
    another holder's is there, that holder is put in ``taken`` (unless one is already)."""
    try:
        read = _read_tagged_holder(location, key)
        if read is not None and read[0].get("token") == token:
            _delete_version(location, key, read[1])  # not another's that took it over since
        elif read is not None and read[0].get("token") and not taken:
            taken.append(read[0])
    except Exception as e:  # never hide what the held step raised: say what stays
        log.warning(
            "cannot remove the lock %s (%s): later runs take it over after %.0f s",
            location.join(key),
            e,
            GROUP_LOCK_STALE,
        )


def _group_busy(
    location: Location,
    group: str,
    key: str,
    holder: dict[str, Any],
    wait: float,
    unchanged: float = 0.0,
) -> OutputError:
    """The refusal of a run that waited ``wait`` seconds for the group's lock object, seen
    unchanged for the last ``unchanged`` seconds (this process's clock: the holder's
    ``beat`` is its own host's time)."""
    where, lock = location.join(group), location.join(key)
    pid, host = holder.get("pid", "?"), holder.get("host", "?")
    ago = f", last renewed {unchanged:.0f} s ago" if unchanged >= 1.0 else ", renewed meanwhile"
    return OutputError(
        f"another run has held the lock of the output group {name_shown(where)} for over "
        f"{wait:.0f} s "
        f"(pid {pid} on {host}{ago}): wait for it, or remove {name_shown(lock)} if that run is "
        "gone",
        output=where,
        lock=lock,
        holder=holder,
    )


def _group_taken(location: Location, group: str, key: str, holder: dict[str, Any]) -> OutputError:
    """The refusal of a run whose group lock object ``key`` another run (``holder``) took
    over while this one held it: its step may have been written beside that run's."""
    where, lock = location.join(group), location.join(key)
    pid, host = holder.get("pid", "?"), holder.get("host", "?")
    return OutputError(
        f"the lock {name_shown(lock)} of the output group {name_shown(where)} was taken over "
        f"by another run (pid {pid} on {host}) while this run held it, as if this run had "
        f"stopped (it was not seen renewed for {GROUP_LOCK_STALE:.0f} s: suspended, or cut off "
        "from the store), so both may have rewritten the group's shared metadata at once: this "
        f"run stopped; once that run has ended, {VERIFY_NAMES}",
        output=where,
        lock=lock,
        holder=holder,
    )
