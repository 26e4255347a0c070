"""The output's life: what is at the output (:func:`output_state`), how a run starts there
(:func:`decide_start`: fresh, resume or nothing to do; or a refusal naming what changed), creating
it (:func:`create`) and marking it complete (:func:`mark_complete`).

A stale output is never taken for a current one: ``run --resume`` refuses to finish (or to
call complete) an output made from other stages, another output layout or codec, an input
that moved or was rewritten since, or frames encoded on another device, and says which: the
identity a run records (in its run record while it runs, in the output's attributes once it is
complete) is compared with the plan at hand (:func:`stale_parts`). Where the output itself is
does not matter (an output moved or copied holds the same bytes).

Everything here that decides only reads; nothing is written before the lock is taken.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import functools
import hashlib
import json
import logging
import os
import re
from typing import Any

import numpy as np

from pipeline._version import __version__
from pipeline.config.models import Config
from pipeline.errors import (
    KEPT_ADVICE,
    REPLACE_ADVICE,
    InputError,
    OutputError,
    PipelineError,
    name_shown,
    some_said,
    some_shown,
    storage_failure,
)
from pipeline.ops import cf
from pipeline.planning import Plan, make_plan
from pipeline.planning.plan import fields_edited, record_edited, with_check
from pipeline.running import waiting
from pipeline.store import arrays, datasets
from pipeline.store.ledger import (
    RECORD,
    STOP_INPUT,
    STOP_RESUMES,
    STOPPED,
    Ledger,
    Stop,
    group_lock,
    stop_of,
)
from pipeline.store.local_files import path_words
from pipeline.store.location import (
    Aside,
    Folder,
    Location,
    files_on_inodes,
    folder_links,
    links_said,
    local_same,
    local_within,
    symbolic_links,
)

log = logging.getLogger("pipeline")

#: Counts of non-finite values a run records, by name.
NONFINITE = ("nan", "posinf", "neginf")

#: A group's own metadata documents (Zarr v3 and v2), beside its members.
GROUP_METADATA = ("zarr.json", ".zgroup", ".zattrs", ".zmetadata")


def output_group(plan: Plan) -> str | None:
    """The path of the group the output variable is written in, with the input Dataset's
    coordinates (``plan.carried.frame``); None for an output written as an array alone."""
    return plan.output.path.rpartition("/")[0] if plan.carried.frame else None


def _key(path: str, name: str) -> str:
    return f"{path}/{name}" if path else name


def refuse_not_files(plan: Plan, chunks: bool = True) -> None:
    """:func:`~pipeline.store.arrays.refuse_output_not_files` of the plan's output, with the
    coordinates of an output written as a Dataset (its group's members the run writes, whose
    fix is the run's own, h85a)."""
    arrays.refuse_output_not_files(
        plan.output.location,
        plan.output.path,
        chunks=chunks,
        coordinates=plan.carried.written_coords,
    )


# --------------------------------------------------------------------------------------------
# Checks that run before anything is written.


def _real(loc: Location, path: str) -> str:
    """Where the store's key ``path`` is: a resolved local path where the store's bytes are on
    this machine (a path, a cache or archive over local files), else its URL."""
    root = loc.local_root
    if root is None:
        return loc.join(path).rstrip("/")
    return os.path.realpath(os.path.join(root, path) if path else root)


def check_not_overlapping(plan: Plan) -> None:
    """Refuse an output that would write into the input's store or contain it: the output's
    store equal to or inside the store ``input.store`` names, whatever array or group of it
    the input is (an array, group or file made there, and the consolidated metadata or parent
    groups' documents a run writes again to list it, are the input store's files, which no
    run creates, rewrites or deletes), the output (for an output written as a Dataset, its
    group) there, or the output containing that store (which ``--overwrite`` would delete).
    OutputError, before anything is written: ``output``, ``input`` (the input's store), and
    ``relation``: 'is', 'is inside' or 'contains'."""
    group = output_group(plan)
    _refuse_overlap(
        plan.input.location,
        plan.output.location,
        plan.output.path if group is None else group,
    )
    if plan.input.location.local_root is None or plan.output.location.local_root is None:
        return  # no folder links to follow
    # of an output Dataset's group, the entries the run writes or deletes: its variable and
    # coordinates (another variable there, a link into the input's, say, is left alone)
    entries = None
    if group is not None:
        try:
            entries = [plan.output.path.rpartition("/")[2], *replaced_coordinates(plan)]
        except PipelineError:  # a record unread: the whole group looked at, its refusal later
            entries = None
    _refuse_linked(
        plan.input.location,
        plan.input.path,
        plan.output.location,
        plan.output.path if group is None else group,
        entries,
    )


def _refuse_linked(
    src: Location, src_path: str, dst: Location, path: str, entries: list[str] | None = None
) -> None:
    """Refuse an existing local output at ``path`` of ``dst`` (the root a resume or ``--overwrite``
    writes in or deletes) whose folder, or one under it, is a symbolic link to the input's
    store ``src``, a folder inside it, or one holding it; the reverse, a folder of the input
    array at ``src_path`` (or an entry of its group, or a folder inside one the output holds
    too: a coordinate's) that is a link into the output, or to a folder holding it; or a
    folder of each linked to one place. A run writes its chunks through the link, into the
    input's files (h73a: a resume over an output whose ``c`` linked into the input overwrote
    1014 of its 1024 chunks, then blamed "another program"), or ``--overwrite`` deletes the
    input's files with the output's. OutputError before anything is written: ``output``,
    ``input`` (the input's store), ``relation`` 'linked', ``link`` and ``target``
    (resolved). Only folder links are looked for (:func:`folder_links`: a listing per
    folder, no look at each chunk file), and only where the output exists: a fresh output's
    folders are the run's own. A link to another folder (chunks moved to another disk behind
    a linked ``c``) is kept. ``entries``: the names in ``path`` that the run writes or
    deletes (an output Dataset's variable and coordinates), the only ones looked at; None:
    all of it (h74a: a variable of the output group that no run of it writes, linked to the
    input's, had been refused)."""
    if src.local_root is None or dst.local_root is None:
        return
    node = _real(dst, path)
    if not os.path.isdir(node):
        return
    store, array = _real(src, ""), _real(src, src_path)

    def meets(x: str, y: str) -> bool:
        return local_within(x, y) or local_within(y, x)

    def refuse(link: str, target: str, what: str, fix: str, others: list[str]) -> OutputError:
        # every such link named (h84b: the first alone had been, each fix met the next)
        more = f" (and so are {some_shown(others, 2)})" if others else ""
        return OutputError(
            f"{name_shown(link)} is a symbolic link to {name_shown(target)}, {what}{more}: a run "
            "would write the output's "
            f"files into the input's, which is never modified; {fix}",
            output=node,
            input=store,
            relation="linked",
            link=link,
            target=target,
        )

    if entries is None:
        written, outs = [node], folder_links(node)
    else:  # the entries themselves (links among them), and what lies under each, in full
        written = [os.path.join(node, e) for e in entries]
        outs = [(k, t) for k, t in folder_links(node, deep=False) if k in written]
        for folder in written:
            outs += folder_links(folder)

    def into_output(target: str) -> bool:  # where the run writes, or a folder holding it
        return local_within(node, target) or any(meets(target, w) for w in written)

    into_input = [(k, t) for k, t in outs if meets(t, store)]
    if into_input:
        link, target = into_input[0]
        where = (
            "the input store"
            if local_same(target, store)
            else "inside the input store"
            if local_within(target, store)
            else "a folder holding the input store"
        )
        raise refuse(
            link,
            target,
            f"{where} {name_shown(store)}",
            "remove that link from the output (its files stay where it points), "
            "or give another output.store",
            [k for k, _ in into_input[1:]],
        )
    # the input array's folders, and its group's entries (a Dataset's coordinates, which an
    # output Dataset writes again): one listing there, not a walk of every other variable;
    # but the entries the output holds too (its coordinates) in full, whose folders a run
    # deletes and writes again (h74a: a coordinate's ``c`` linked into the output's was
    # emptied by --overwrite, then blamed on "another program")
    group = os.path.dirname(array) if array != store else None
    ins = folder_links(array) + (folder_links(group, deep=False) if group else [])
    if group:
        for name in sorted(_entries(node) if entries is None else entries):
            entry = os.path.join(group, name)
            if entry != array and os.path.isdir(entry) and not os.path.islink(entry):
                ins += folder_links(entry)
    back = [(k, t) for k, t in ins if into_output(t)]
    if back:
        link, target = back[0]
        raise refuse(
            link,
            target,
            f"a folder of the input linked into the output {name_shown(node)}",
            "put the input's files in place of that link (or give another "
            "output.store), then run again",
            [k for k, _ in back[1:]],
        )
    for link, target in ins:
        for olink, otarget in outs:
            if meets(target, otarget):
                raise refuse(
                    olink,
                    otarget,
                    f"where the input's folder {name_shown(link)} leads too ({name_shown(target)})",
                    "remove that link from the output, or give another output.store",
                    [],
                )


def _entries(folder: str) -> list[str]:
    """The names in the local ``folder`` ([] where it cannot be listed)."""
    try:
        return os.listdir(folder)
    except OSError:
        return []


def check_stores_apart(config: Config) -> None:
    """:func:`check_not_overlapping` from the config alone, for a run that writes the input
    first (``input.generate.when_missing``): refused before the input is generated (it had
    been generated, then the output refused). ``output.array`` omitted is the store's root,
    as :func:`~pipeline.planning.variable.with_output_array` decides it for a generated
    input (an array alone, no Dataset's variable)."""
    _refuse_overlap(
        Location.of(config.input.store, config.input.storage_options, "input"),
        Location.of(config.output.store, config.output.storage_options, "output"),
        config.output.array or "",
    )


def _refuse_overlap(src: Location, dst: Location, path: str) -> None:
    """The refusal of :func:`check_not_overlapping`: an output at ``path`` of the store
    ``dst`` against the input store ``src``."""
    if (src.local_root is None) != (dst.local_root is None):
        return  # a local store and a remote one never overlap
    a, store = _real(src, "").rstrip("/"), _real(dst, "").rstrip("/")
    node = _real(dst, path).rstrip("/")
    local = src.local_root is not None

    def within(x: str, root: str) -> bool:
        if local:  # by the folders' identity too: a bind mount of the input's folder (h65d)
            return local_within(x, root)
        return x == root or x.startswith(root + "/")

    def same(x: str, y: str) -> bool:
        return local_same(x, y) if local else x == y

    found = None
    for b in (node, store):  # the output itself first: it names what the run writes
        if within(b, a):
            found = b, "is" if same(b, a) else "is inside"
            break
    else:
        if within(a, node):
            found = node, "contains"
    if found is None:
        return
    b, rel = found
    # the same folder under another path, which no link explains: say how it can be
    other = (
        ""
        if b == a or b.startswith(a + "/") or a.startswith(b + "/")
        else (
            " (reached under another path, which no link explains: a bind mount, or the same "
            "file system mounted twice)"
        )
    )
    raise OutputError(
        f"the output {name_shown(b)} {rel} the input store {name_shown(a)}{other}, which is never "
        "modified: choose "
        "an output.store apart from the input's store (not it, not inside it, not a folder "
        "that holds it)",
        output=b,
        input=a,
        relation=rel,
    )


def check_writable(loc: Location) -> None:
    """Refuse an output location that cannot be written, before anything is written
    (OutputError: ``output``; for a local path also ``directory``, the nearest existing one,
    which cannot be written). The input's store, which ``generate`` writes (``loc.setting``
    'input'), the same way: InputError (``input``, ``directory``), its line naming
    input.store (it had named output.store, which the user need not change)."""
    side = "input" if loc.setting == "input" else "output"
    if loc.is_local:
        probe = loc.url
        while not os.path.exists(probe):
            parent = os.path.dirname(probe)
            if parent == probe:
                break
            probe = parent
        probes = [probe]
        if side == "output":  # and each folder there of the groups between that the run
            # writes (arrays.write_groups_between): its refused write had passed the file
            # system's PermissionError through, the output's files half made (h86d)
            probes += [
                url
                for url in arrays.groups_between_missing(loc)
                if os.path.lexists(url) and url not in probes
            ]
        for probe in probes:
            _refuse_unwritable(loc, side, probe)
        return
    loc.writable_probe()


def _refuse_unwritable(loc: Location, side: str, probe: str) -> None:
    """:func:`check_writable`'s refusal of the local folder ``probe``, where the run writes
    (the store's own folder or the nearest one above it that exists, or a group between the
    output's store and its enclosing group), where it is no directory that can be written."""
    if not os.path.isdir(probe) or not os.access(probe, os.W_OK | os.X_OK):
        line = (
            f"cannot write the {side} at {name_shown(loc.url)}: {name_shown(probe)} is not a "
            "writable directory; "
            f"choose another {side}.store or fix its permissions"
        )
        if not os.path.isdir(probe):  # permissions would not mend it (had been said)
            # what it is: a named pipe, a socket, a link to a file had each been called
            # "a file" (h85a)
            what = path_words(probe) or "a file"
            fix = (
                f"choose another {side}.store"
                if what == "a file"
                else f"remove it yourself, or choose another {side}.store"
            )
            line = (
                f"cannot write the {side} at {name_shown(loc.url)}: {name_shown(probe)} is "
                f"{what}, not a directory, and the pipeline never replaces it; {fix}"
            )
        if side == "input":
            raise InputError(line, input=loc.url, directory=probe)
        raise OutputError(line, output=loc.url, directory=probe)


def output_state(plan: Plan) -> str:
    """What is at the output now:

    * 'absent': nothing, or only this pipeline's run record (a run that stopped before it
      created the array: nothing to keep);
    * 'complete' / 'incomplete': an array this pipeline wrote, finished or interrupted;
    * 'remains': files of an output this pipeline was replacing when it stopped (no array);
    * 'foreign': a Zarr array or group written by something else;
    * 'occupied': no output variable, but its group (an output written as a Dataset) holds
      arrays that something else wrote;
    * 'not-zarr': a directory with other files in it and no Zarr metadata that says what it
      is (a lone ``.zattrs``, a truncated ``zarr.json`` count as none), which the pipeline
      never deletes;
    * 'group': a Zarr group that holds arrays or groups, which it never deletes either.

    An output whose group gets consolidated metadata is complete only once that metadata
    says so too (it is written last: ``xr.open_zarr`` reads it).
    """
    info = plan.output
    # its documents and its groups' that are no file (a named pipe), before they are read:
    # one line, not a wait without end (h84a)
    refuse_not_files(plan, chunks=False)
    if group_members(info.location, info.path):
        return "group"
    # a .DS_Store (or any OS file) says nothing of what is there: a folder holding one and
    # no array is as empty as one without (it had been 'not-zarr')
    names = info.location.entries(info.path)
    recorded = RECORD in names and _records_anything(info.location, info.path)
    if not info.location.exists(_key(info.path, "zarr.json")):
        others = [n for n in names if n != RECORD]
        if not others:
            return _group_state(plan, ours=recorded)
        if recorded:
            return "remains"
    node = arrays.node_type(info.location, info.path)
    if node not in ("array", "group"):  # no Zarr metadata there that says what it holds
        return "remains" if recorded else "not-zarr"
    if node == "group" or not info.location.exists(_key(info.path, "zarr.json")):
        return "foreign"  # an empty group, or a Zarr v2 array
    try:
        attrs = arrays.read_attributes(info.location, info.path)
    except Exception:
        return "foreign"
    # decided as `verify` decides it (F5: it had called such an output edited, or damaged)
    store = info.location.zarr_store(read_only=True)
    return datasets.run_status(store, info.path, attrs, plan.carried.consolidate) or "foreign"


def _records_anything(loc: Location, path: str) -> bool:
    """Whether the run record of the output at ``path`` holds more than a lock (a run's
    ``run.json``, which it writes before it deletes or creates anything, block markers): a
    lock alone records nothing of what is beside it, whether it is the one this run has just
    taken (deciding again under it: another run's output written beside it meanwhile had
    been taken for a replacement's remains) or one that a run stopped before it created the
    output left. A record that is no folder (a file: :meth:`Ledger.misshapen` names it) is
    taken as one that records something."""
    try:
        return any(n != Ledger.LOCK for n in loc.list(_key(path, RECORD)))
    except NotADirectoryError:
        return True


def group_members(loc: Location, path: str) -> list[str]:
    """What a Zarr group at ``path`` holds besides its own metadata and this pipeline's run
    record, and files an operating system wrote there (:meth:`Location.entries`) ([] where
    ``path`` is no group: an array, nothing, a plain directory)."""
    if arrays.node_type(loc, path) != "group":
        return []
    return [n for n in loc.entries(path) if n not in GROUP_METADATA and n != RECORD]


def check_parents(plan: Plan) -> None:
    """Refuse an output that nothing can be written at: under a Zarr array (v3 or v2, or a node
    whose metadata does not read, which may be one; also one whose folder holds the output's
    store, :func:`pipeline.store.arrays.array_above`), which holds no other nodes (zarr-python
    refuses to create one under it, and an output Dataset's group put in its place would drop
    its metadata), or under a local file; or the output
    path itself a local file or a single object of an object store, which the pipeline never
    replaces (OutputError, before anything is written: fields ``output``, ``status``
    'blocked', ``blocking`` (where that node is), ``node`` ('array', 'v2 array', 'damaged':
    metadata that does not read, 'file' or 'object'))."""
    loc = plan.output.location
    above = arrays.array_above(loc)  # the store's root itself inside an array's folder
    if above is not None:
        place, node = above
        raise OutputError(
            f"cannot write the output at {loc.shown(plan.output.path)}: {name_shown(place)} is "
            f"{arrays.NODE_WORDS[node]}, and {arrays.NODE_WHY[node]}: choose an output.store "
            "that is not under it",
            output=loc.join(plan.output.path),
            status="blocked",
            blocking=place,
            node=node,
        )
    # a document of the output, of its groups or of its Dataset's coordinates that is no file
    # (a named pipe): the output's line and fix, before the walk below reads it (h85a)
    refuse_not_files(plan, chunks=False)
    found = arrays.node_in_the_way(loc, plan.output.path)
    if found is None:
        return
    here, node = found
    where, place = loc.join(plan.output.path), loc.join(here)
    what = arrays.NODE_WORDS[node]
    if node == "dangling":
        message = (
            f"cannot write the output at {name_shown(where)}: "
            f"{arrays.dangling_link(place, 'output')}"
        )
    elif here == plan.output.path.strip("/"):
        message = (
            f"{name_shown(where)} is {what}, not a Zarr array; the pipeline never replaces it, "
            "even with "
            "--overwrite: choose another output.array or output.store, or remove it yourself"
        )
    else:
        why = arrays.NODE_WHY[node]
        fix = f"an output.array that is not under {here!r}, or " if here else ""
        message = (
            f"cannot write the output at {name_shown(where)}: {name_shown(place)} is {what}, and "
            f"{why}: choose "
            f"{fix}another output.store"
        )
    raise OutputError(message, output=where, status="blocked", blocking=place, node=node)


def check_only_array_files(plan: Plan, state: str) -> None:
    """Refuse to replace an output array whose folder holds files that are not the array's
    (:func:`pipeline.store.arrays.stray_entries`: a user's notes, another array put inside
    it): --overwrite replaces the array, its metadata and chunks, and had deleted them too
    (OutputError, fields ``output``, ``status``, ``stray``)."""
    loc = plan.output.location
    written = state in ("complete", "incomplete")  # the run's chunks are at its own keys
    stray = arrays.stray_entries(loc, plan.output.path, keep=(RECORD,), written=written)
    if stray:
        where = loc.shown(plan.output.path)
        some = some_shown(stray)
        raise OutputError(
            f"{name_shown(where)} holds, beside the array's metadata and chunks, {some}: "
            "--overwrite "
            "replaces the array and never deletes other files: move them out, or choose "
            "another output.store or output.array",
            output=where,
            status=state,
            stray=stray,
        )


def check_no_links(plan: Plan, state: str) -> None:
    """Refuse to replace a local output whose folder holds a symbolic link anywhere below it
    (:func:`~pipeline.store.location.symbolic_links`, the run record's folder aside: a
    chunk folder ``c``, a v2 coordinate folder ``0``, a chunk file, a link to nothing):
    replacing the output deletes the link alone, never what it leads to, so the old chunks
    behind a ``c`` moved to another disk had stayed there, and files the pipeline never
    wrote (another store's chunks a link shares) had been dropped from the output without
    a line (h84b). Following it instead would delete what the link leads to, which may be
    another store's. OutputError before anything is written or moved: ``output``,
    ``status``, ``link`` and ``target`` (the first, by path), ``links`` (every one). The
    output's own folder reached through a link (``out.zarr -> /disk2/out.zarr``) is no such
    link: the run replaces what is there, the link kept."""
    loc = plan.output.location
    if not loc.is_local:
        return
    where = loc.join(plan.output.path)
    links = symbolic_links(where, skip=(RECORD,))
    if not links:
        return
    one = len(links) == 1
    raise OutputError(
        f"cannot replace {name_shown(where)}: {links_said(links, where)}; replacing the output "
        "would delete the link alone and leave what it leads to (the old output's chunks, or "
        "files the pipeline never wrote) with no word: remove "
        f"{'that link' if one else 'those links'} from the output yourself (what "
        f"{'it leads' if one else 'they lead'} to is kept: delete it too where it is the old "
        "output's), or choose another output.store",
        output=where,
        status=state,
        link=links[0][0],
        target=links[0][1],
        links=[p for p, _, _ in links],
    )


def _refuse_links_to_files(plan: Plan, where: str, state: str) -> None:
    """Refuse to resume a local output that holds a symbolic link, below its folder (the run
    record's aside), to a file or to nothing (a link to a folder elsewhere, chunks moved to
    another disk, is the output's, written through): a resume writes a chunk as a file of
    its own, replacing the link there, and reads a block already written through it, from
    a file the pipeline did not write (h84b); inside such a linked folder too, whose links
    had gone unseen (h84e: no link is followed by :func:`symbolic_links`, so each linked
    folder's own are looked for, once per folder it leads to). OutputError before anything
    is written: ``output``, ``status``, ``changed`` [], ``link``, ``target``, ``links``."""
    loc = plan.output.location
    if not loc.is_local:
        return
    found = symbolic_links(where, skip=(RECORD,))
    seen: set[str] = set()
    while folders := [x for x in found if x[2] == "a folder" and x[1] not in seen]:
        for path, target, _ in folders:  # the links in what it leads to, by their paths here
            seen.add(target)
            found += [
                (os.path.join(path, os.path.relpath(p, target)), t, w)
                for p, t, w in symbolic_links(target)
            ]
    links = sorted(x for x in found if x[2] != "a folder")
    if not links:
        return
    one = len(links) == 1
    raise OutputError(
        f"cannot resume {name_shown(where)}: {links_said(links, where)}; a resume writes a "
        "chunk as a file of its own, replacing a link there, and takes a block already written "
        "from whatever the link leads to, which the pipeline did not write: remove "
        f"{'that link' if one else 'those links'} from the output yourself (what "
        f"{'it leads' if one else 'they lead'} to is kept), then `run --resume` again",
        output=where,
        status=state,
        changed=[],
        link=links[0][0],
        target=links[0][1],
        links=[p for p, _, _ in links],
    )


def check_formats_agree(plan: Plan) -> None:
    """Refuse an output inside a Zarr v2 hierarchy: the groups above the output variable that
    hold v2 metadata (``.zgroup``, ``.zarray``) and no ``zarr.json``. The output is Zarr v3,
    and its parents' ``zarr.json`` would hide the v2 arrays beside it from readers that open
    the store as v3, as xarray does first. Refuse as well a group above the output that
    holds both v3 and v2 metadata (:func:`mixed_formats`):
    readers take its zarr.json and ignore the v2 files, which are the user's, never this
    pipeline's, and writing there had deleted them; and a folder above it without a
    ``zarr.json`` that holds those v2 documents alone (a lone ``.zattrs`` or
    ``.zmetadata``), where the run's ``zarr.json`` would make such a group (zarr-python makes
    each missing group above the array: the run had done so, exit 0, and every later run
    then refused the group it made) (OutputError, fields ``output``, ``group``)."""
    loc = plan.output.location
    parts = plan.output.path.split("/") if plan.output.path else []
    for depth in range(len(parts)):
        group = "/".join(parts[:depth])
        where = loc.join(group) if group else loc.url
        if loc.exists(_key(group, "zarr.json")):
            mixed = mixed_formats(loc, group)
            if mixed:
                raise OutputError(
                    f"{name_shown(where)} {both_formats(mixed)}: zarr-python and xarray read its "
                    "zarr.json and "
                    "ignore the v2 files, which a run would delete, even without --overwrite; "
                    "remove one format's metadata yourself, or choose another output.store or "
                    "output.array",
                    output=loc.join(plan.output.path),
                    group=where,
                )
            continue
        v2 = [m for m in (".zgroup", ".zarray") if loc.exists(_key(group, m))]
        if v2:
            raise OutputError(
                f"{name_shown(where)} holds Zarr v2 metadata ({v2[0]}), and the pipeline writes "
                "Zarr v3: "
                f"a v3 output "
                f"at {loc.shown(plan.output.path)} would hide its v2 arrays from readers that "
                "open the store as v3 (xarray does); choose another output.store",
                output=loc.join(plan.output.path),
                group=where,
            )
        lone = mixed_formats(loc, group)  # no group to Zarr, but the run's zarr.json would mix
        if lone:
            raise OutputError(
                f"{name_shown(where)} holds Zarr v2 metadata ({', '.join(lone)}) and no "
                "zarr.json, which a "
                f"run writing {loc.shown(plan.output.path)} would put beside it (Zarr v3 "
                "group metadata, as zarr-python makes each group missing above an array): "
                "readers would take the zarr.json and ignore the v2 files; remove them "
                "yourself, or choose another output.store or output.array",
                output=loc.join(plan.output.path),
                group=where,
            )


def both_formats(mixed: list[str]) -> str:
    """The words for a group that holds both formats' metadata, ``mixed`` the v2 documents
    :func:`mixed_formats` found beside its ``zarr.json``: one text for the output's refusal
    (:func:`check_formats_agree`) and ``generate``'s."""
    return f"holds both Zarr v3 metadata (zarr.json) and Zarr v2 metadata ({', '.join(mixed)})"


def mixed_formats(loc: Location, node: str) -> list[str]:
    """The Zarr v2 group documents (``.zgroup``, ``.zattrs``, ``.zmetadata``) that the group
    ``node``, which holds a v3 ``zarr.json``, holds beside it ([] for none). The pipeline
    writes v3 alone, so such documents are never its own, and writing the output's frame had
    deleted them. (A v2 document beside an output array's v3 ``zarr.json``
    is not its own either: :func:`check_only_array_files` refuses it as a file beside the
    array.)"""
    return [m for m in (".zgroup", ".zattrs", ".zmetadata") if loc.exists(_key(node, m))]


def _group_state(plan: Plan, ours: bool) -> str:
    """'absent', or for an output variable not there yet whose group holds other things
    than empty folders (of a local store: nothing there to keep or change):
    'occupied' (Zarr arrays or groups: another tool's, or other outputs of this pipeline,
    :func:`_occupants`) or 'not-zarr'.
    ``ours``: the variable's place holds this pipeline's run record, so what is beside it is
    what an interrupted creation wrote, which a fresh start writes again."""
    loc, group = plan.output.location, output_group(plan) or ""
    # an empty folder holds nothing a write beside it could change: a group holding only
    # such had been 'occupied', each called "a group this pipeline did not write", and every
    # command had named --overwrite for it
    others = [n for n in _beside(plan) if not _empty_folder(loc, _key(group, n))]
    if ours or not others:
        return "absent"
    if all(_zarr_or_ours(loc, _key(group, n)) for n in others):
        return "occupied"
    return "not-zarr"


def _zarr_or_ours(loc: Location, path: str) -> bool:
    """Whether ``path`` is a Zarr array or group, or this pipeline's output there in the
    making: a folder holding its run record (another run writing another variable into the
    same group, between taking its lock and creating its array, or while it replaces its
    metadata), which is no stranger's folder (a run had been refused, the group called "a
    directory that holds other files, not a Zarr array or group"); or an empty folder of a
    local store, which holds nothing to keep (such a run's folder, made the moment before its
    record's, in which the lock makes both: a run beside it, on a busy machine, had been
    refused so, naming it among "other files")."""
    if arrays.node_type(loc, path) in ("array", "group"):
        return True
    if loc.exists(_key(path, RECORD)):  # (a file there holds none)
        return True
    return _empty_folder(loc, path, gone=True)


def _empty_folder(loc: Location, path: str, gone: bool = False) -> bool:
    """Whether ``path`` is an empty folder of a local store (an object store holds none), or
    one holding only files an operating system wrote there (:meth:`Location.entries`);
    ``gone``: or one that is gone by the time it is listed (another run's folder, removed)."""
    if not loc.is_local:
        return False
    folder = loc.path_of(path)
    try:
        return os.path.isdir(folder) and not loc.entries(path)
    except OSError:  # unreadable (one gone meanwhile lists empty)
        return gone and not os.path.lexists(folder)


def _strays_in_group(plan: Plan, group: str, group_path: str, listed: list[str]) -> OutputError:
    """The refusal of an output variable whose Zarr group (``group``, at ``group_path``) holds
    what is no Zarr node (a folder of no Zarr metadata, which zarr-python passes over with
    "Object at plain is not recognized", a file): the group named as one, the strays by
    name. It had said "is a directory that holds other files (...), not a Zarr array or
    group" of the group itself, listing its arrays with the strays."""
    loc = plan.output.location
    strays = [
        n
        for n in listed
        if not _zarr_or_ours(loc, _key(group_path, n))
        and not _empty_folder(loc, _key(group_path, n))
    ] or listed
    said = ", ".join(f"{n!r} ({_stray_words(loc, _key(group_path, n))})" for n in strays[:3])
    said += f" and {len(strays) - 3} more" if len(strays) > 3 else ""
    them = "it" if len(strays) == 1 else "them"
    return OutputError(
        f"{name_shown(group)} is a Zarr group that holds {said}, no Zarr array or group, which "
        "zarr-python "
        f"does not recognize as a member; the pipeline never writes beside {them}, even with "
        f"--overwrite: move {them} out of the group yourself, or choose another output.store",
        output=loc.join(plan.output.path),
        status="not-zarr",
        stray=[loc.join(_key(group_path, n)) for n in strays],
    )


def _stray_words(loc: Location, path: str) -> str:
    """What a member of a group that is no Zarr node is, in words: a folder or a file."""
    try:
        folder = bool(loc.entries(path))
    except OSError:
        folder = False
    return "a folder of no Zarr metadata" if folder else "a file"


def _beside(plan: Plan) -> list[str]:
    """What the output group holds besides the output variable, its own metadata and this
    pipeline's record folder there, which holds the group's lock object on an object store
    (:func:`pipeline.store.ledger.group_lock`: a run taking the lock had found its own lock
    object beside the output, and refused the group as one holding other files), nor the
    files an operating system wrote there (:meth:`Location.entries`) ([] for an output written
    as an array alone)."""
    group = output_group(plan)
    if group is None:
        return []
    name = plan.output.path.rpartition("/")[2]
    listed = plan.output.location.entries(group)
    return [n for n in listed if n != name and n not in GROUP_METADATA and n != RECORD]


def _occupants(plan: Plan) -> str:
    """What the output group of an 'occupied' output holds besides the output variable, in
    words (:func:`members_words`): the refusals had called them all "arrays this pipeline
    did not write", also a group that holds an earlier output of this pipeline
    (``output.array: sub/v``) or another variable it wrote."""
    return members_words(plan.output.location, output_group(plan) or "", _beside(plan))


def members_words(loc: Location, group: str, names: list[str]) -> str:
    """The members ``names`` of the group at ``group``, in words, each named with what it is
    (:func:`_member_words`; an empty folder of a local store as such, which had been called
    "a group this pipeline did not write"; three at most, then how many more)."""
    store = loc.zarr_store(read_only=True)
    here = datasets.group_arrays(store, group, listed=True)  # one a stale copy lacks too
    said = [
        f"{n!r} (an empty folder)"
        if _empty_folder(loc, _key(group, n))
        else f"{n!r} ({_member_words(store, group, n, here)})"
        for n in names[:3]
    ]
    return ", ".join(said) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def _member_words(store: Any, group: str, name: str, here: dict[str, Any]) -> str:
    """What the member ``name`` of ``group`` is, in words: an output of this pipeline (an
    array whose ``pipeline`` attribute records its run), an array a run of it copied beside
    one (:func:`_what_array`), a group that holds outputs of it (their paths), or an array or
    group it did not write. ``here``: the group's arrays, by name."""
    if name in here:
        if arrays.run_record(dict(here[name].attrs)) is not None:
            return "an output of this pipeline"
        return _what_array(store, group, [n for n in here if n != name], name)
    outputs = _outputs_under(store, _key(group, name))
    if not outputs:
        # an array where ``group`` is no Zarr group (a folder of no metadata: ``here`` is
        # empty) had been called "a group this pipeline did not write"
        array = _array_at(store, _key(group, name))
        if array is not None and arrays.run_record(dict(array.attrs)) is not None:
            return "an output of this pipeline"
        return f"{'a group' if array is None else 'an array'} this pipeline did not write"
    some = some_shown(outputs)
    what = "outputs" if len(outputs) > 1 else "an output"
    return f"a group that holds {what} of this pipeline, {some}"


def _array_at(store: Any, path: str) -> Any:
    """The Zarr array at ``path`` of ``store``, opened read-only; None where there is none."""
    import zarr

    try:
        return zarr.open_array(store=store, path=path, mode="r")
    except Exception:
        return None


def _outputs_under(store: Any, path: str) -> list[str]:
    """The paths (from the store's root) of the arrays in the group at ``path``, at any depth,
    whose ``pipeline`` attribute records a run of this pipeline ([] where there is no group)."""
    import zarr

    try:
        found = zarr.open_group(store=store, path=path, mode="r", use_consolidated=False)
        members = found.members(max_depth=None)
    except Exception:
        return []
    return sorted(
        _key(path, name)
        for name, node in members
        if isinstance(node, zarr.Array) and arrays.run_record(dict(node.attrs)) is not None
    )


def replaced_coordinates(plan: Plan) -> list[str]:
    """The arrays of the output group that a fresh start replaces ([] for an output written as
    an array alone): the coordinates this pipeline recorded writing there (in the output
    variable's ``pipeline`` record, or the run record of a run stopped while creating it), and
    those this run writes (an array of that name is replaced, whoever wrote it)."""
    variable = plan.carried.variable
    if output_group(plan) is None or variable is None:
        return []
    names = _recorded_coordinates(plan)
    own = plan.output.path.rpartition("/")[2]
    every = [n for n in dict.fromkeys([*names, *variable.coords]) if n != own]
    gone = [n for n in every if n not in variable.coords]  # recorded, not written again
    if not gone:
        return every
    # one that the group's other variables refer to stays theirs (helper-42: a variable
    # written again from an input with fewer coordinates deleted those its neighbours used)
    kept = [n for n in _beside(plan) if n not in every]
    store = plan.output.location.zarr_store(read_only=True)
    used = set().union(*datasets.users(store, output_group(plan) or "", kept).values())
    return [n for n in every if n not in gone or n not in used]


def found_coordinates(plan: Plan) -> list[str]:
    """The coordinates of the input variable that the output group already holds and this
    pipeline has no record of writing there (:func:`_recorded_coordinates`), and those a run
    stopped while creating the output had found so (its run record's ``found``; it may have
    deleted them before it stopped): the user's, or another output's. A fresh
    start writes them again (equal values: :func:`check_frame_fits`), but never records them
    as its own, so no later --overwrite deletes them. [] for an output written as an array
    alone."""
    variable = plan.carried.variable
    if output_group(plan) is None or variable is None:
        return []
    ledger = plan.sink.ledger
    manifest = (ledger.read_manifest() if ledger is not None else None) or {}
    ours, theirs = set(_recorded_coordinates(plan)), set(_names(manifest.get("found")))
    present = set(_beside(plan))
    return [n for n in variable.coords if n in theirs or (n in present and n not in ours)]


def _kept_coordinates(plan: Plan, found: list[str]) -> list[str]:
    """Of the coordinates ``found`` (:func:`found_coordinates`: the user's), those the output
    group holds now as arrays equal to the input's, values and attributes
    (:func:`pipeline.store.datasets.same_coordinate`): a fresh start leaves them as they are,
    never deleted nor written again (a kill between xarray's delete and its write of one had
    left the user's Dataset without it). One a stopped run deleted, or left half-written (an
    earlier version wrote them again), is written again."""
    group, variable = output_group(plan), plan.carried.variable
    if group is None or variable is None or not found:
        return []
    loc = plan.output.location
    src = plan.input.location.zarr_store(read_only=True)
    store = loc.zarr_store(read_only=True)
    return [
        n
        for n in found
        if arrays.node_type(loc, _key(group, n)) == "array"
        and datasets.same_coordinate(src, variable, store, group, n)
    ]


def _recorded_coordinates(plan: Plan) -> list[str]:
    """The coordinates this pipeline recorded writing in the output group as its own: the
    output variable's ``pipeline`` record's, and those of the run record of a run stopped
    while creating it, less those that run had found there (its ``found``: the user's)."""
    ledger = plan.sink.ledger
    manifest = (ledger.read_manifest() if ledger is not None else None) or {}
    theirs = set(_names(manifest.get("found")))
    stopped = [n for n in _names(manifest.get("coordinates")) if n not in theirs]
    return [*_names(own_record(plan).get("coordinates")), *stopped]


def _names(recorded: Any) -> list[str]:
    """The array names in a recorded list (those that name a member of the group itself)."""
    if not isinstance(recorded, list):
        return []
    return [n for n in recorded if isinstance(n, str) and n not in ("", ".", "..") and "/" not in n]


def check_frame_fits(plan: Plan) -> None:
    """Refuse (OutputError, before anything is deleted) an output Dataset whose group keeps
    an array that something else wrote with a dimension of another size than the input's
    (xarray holds one size per dimension in a Dataset): fields ``output``, ``array`` (the
    kept one), ``dimension``, ``size`` (its), ``input_size``; or whose group holds, where a
    coordinate is written, something other than an array (a group, a plain directory), which
    a fresh start would have to delete: fields ``output``, ``array``; or where a coordinate
    array it replaces holds other files beside its metadata and chunks: fields ``output``,
    ``array``, ``stray``. A coordinate the run leaves in place (the user's, equal to the
    input's: :func:`_kept_coordinates`) is none of these: its folder is not touched, and what
    else it holds stays. Nor one that relabels
    (:func:`_refuse_relabelling`, :func:`_refuse_replacing_a_reference`)."""
    group, variable = output_group(plan), plan.carried.variable
    _refuse_replacing_a_reference(plan)
    _refuse_closing_a_dataset(plan)
    _refuse_breaking_a_tree(plan)
    if group is None or variable is None:
        return
    _refuse_misaligning_a_tree(plan)
    replaced = set(replaced_coordinates(plan))
    # the user's coordinates equal to the input's are left in place (_create): never deleted,
    # so nothing of the user's in their folders goes, and nothing there is refused
    kept = set(_kept_coordinates(plan, found_coordinates(plan)))
    loc = plan.output.location
    strays: dict[str, list[str]] = {}  # by coordinate: every one is named (h84b)
    links: list[tuple[str, str, str]] = []
    for name in sorted(replaced - kept):
        node = arrays.node_type(loc, _key(group, name))
        remains = node == "none" and arrays.only_remains(loc, _key(group, name))
        if node != "array" and not remains and loc.exists(_key(group, name)):
            where = loc.join(plan.output.path)
            what = {"group": "a Zarr group", "damaged": "a node with damaged Zarr metadata"}.get(
                node, "something that is not Zarr"
            )
            raise OutputError(
                f"cannot write {name_shown(where)}: its group holds {what} named {name!r}, where "
                "the "
                f"coordinate {name!r} is written; the pipeline "
                "replaces only an array there, never deletes anything else: choose another "
                "output.store, or move it yourself",
                output=where,
                array=name,
            )
        if node == "array" and loc.is_local:  # deleted: a link alone, never what it leads to
            folder = loc.join(_key(group, name))
            if os.path.islink(folder):
                links.append((folder, os.path.realpath(folder), "a folder"))
            else:
                links += symbolic_links(folder)
        stray = arrays.stray_entries(loc, _key(group, name)) if node == "array" else []
        if stray:  # the coordinate is replaced: what else its folder holds would go with it
            strays[name] = stray
    if links:
        _refuse_coordinate_links(plan, group, links)
    if strays:
        _refuse_coordinate_strays(plan, group, strays)
    check_group_opens(plan, sizes=False)
    store = loc.zarr_store(read_only=True)
    for name in _beside(plan):
        if name in replaced:
            continue
        for dim, size in datasets.array_sizes(store, _key(group, name)).items():
            wanted = variable.sizes.get(dim)
            if wanted is not None and wanted != size:
                where = plan.output.location.join(plan.output.path)
                here = datasets.group_arrays(store, group, listed=True)
                raise OutputError(
                    f"cannot write {name_shown(where)}: its group keeps the array {name!r} "
                    f"({_member_words(store, group, name, here)}) whose dimension {dim!r} has "
                    f"{size} elements, but the "
                    f"input's has {wanted}, and a Dataset has one size per dimension: choose "
                    "another output.store or output.array, or remove that array",
                    output=where,
                    array=name,
                    dimension=dim,
                    size=size,
                    input_size=wanted,
                )
    _refuse_relabelling(plan, replaced, store)


def _refuse_coordinate_links(plan: Plan, group: str, links: list[tuple[str, str, str]]) -> None:
    """The refusal of an output Dataset whose coordinate arrays that the run replaces hold
    symbolic links (``links``: :func:`~pipeline.store.location.symbolic_links`', a
    coordinate's own folder a link among them), as :func:`check_no_links` refuses the
    output's own: deleting the coordinate deletes the link alone (h84b). OutputError:
    ``output``, ``link``, ``target``, ``links``."""
    loc = plan.output.location
    one = len(links) == 1
    raise OutputError(
        f"cannot write {name_shown(loc.join(plan.output.path))}: "
        f"{links_said(links, loc.join(group))}, in a coordinate array that the run replaces, "
        "which would delete the link alone and leave what it leads to (the old coordinate's "
        "chunks, or files the pipeline never wrote) with no word: remove "
        f"{'that link' if one else 'those links'} yourself (what "
        f"{'it leads' if one else 'they lead'} to is kept), or choose another output.store",
        output=loc.join(plan.output.path),
        link=links[0][0],
        target=links[0][1],
        links=[p for p, _, _ in links],
    )


def _refuse_coordinate_strays(plan: Plan, group: str, strays: dict[str, list[str]]) -> None:
    """The refusal of an output Dataset whose coordinate arrays that the run replaces hold
    files beside their metadata and chunks (``strays``: by coordinate, their keys below
    it): every such coordinate named, each with its files (three at most, then how many
    more), where the first coordinate alone had been (h84b). OutputError: ``output``,
    ``array`` (the first coordinate), ``arrays`` (all of them), ``stray`` (the first's
    files)."""
    loc = plan.output.location
    names = sorted(strays)
    said = [f"{name_shown(loc.shown(_key(group, n)))} holds {some_shown(strays[n])}" for n in names]
    more = f" and {len(said) - 3} more coordinates" if len(said) > 3 else ""
    one = len(names) == 1
    raise OutputError(
        f"cannot write {name_shown(loc.shown(plan.output.path))}: "
        f"{'the coordinate array' if one else 'the coordinate arrays'} it replaces hold"
        f"{'s' if one else ''} files beside "
        f"{'its' if one else 'their'} metadata and chunks ({'; '.join(said[:3])}{more}); the "
        "pipeline never deletes other files: move them out, or choose another output.store",
        output=loc.join(plan.output.path),
        array=names[0],
        arrays=names,
        stray=strays[names[0]],
    )


def check_group_opens(plan: Plan, sizes: bool = True) -> None:
    """Refuse (OutputError, before anything is written) a Dataset output whose group keeps an
    array this run does not write that ``xr.open_zarr`` of the group fails on
    (:func:`pipeline.store.datasets.unopenable_arrays`: one without dimension names, such as
    zarr-python's ``create_array`` makes; with ``sizes``, one whose dimension has another size
    than the input's, which :func:`check_frame_fits` refuses in its own words otherwise): the
    output would be written, or finished, into a group no xarray reader opens, and ``verify``
    would fail it (brk59: ``run --overwrite`` and ``run --resume`` went through, and verify
    then blamed the coordinates). The pipeline never deletes nor edits such an array, so no
    command of ``run`` is the fix; the refusal says what is. Fields ``output``, ``array``,
    ``status``."""
    group, variable = output_group(plan), plan.carried.variable
    if group is None or variable is None:
        return
    own = plan.output.path.rpartition("/")[2]
    skip = (own, *replaced_coordinates(plan))
    store = plan.output.location.zarr_store(read_only=True)
    found = datasets.unopenable_arrays(store, group, skip, variable.sizes if sizes else {})
    if not found:
        return
    name, why = found[0]
    where = plan.output.location.join(plan.output.path)
    more = datasets.unopenable_others(found)  # every other one named too (h85b)
    what = _member_words(store, group, name, datasets.group_arrays(store, group, listed=True))
    raise OutputError(
        f"cannot write {name_shown(where)}: its group holds {name!r} ({what}){more}, {why}, which "
        "makes the group unreadable to xarray (`xr.open_zarr` fails on it), so the output "
        "would be too; this run never deletes nor edits it, even with --overwrite: "
        f"{datasets.unopenable_fix(found)}, then run again",
        output=where,
        array=name,
        status=output_state(plan),
    )


def _refuse_closing_a_dataset(plan: Plan, resume: bool = False) -> None:
    """Refuse (OutputError, before anything is written) an output written as an array alone
    (no Dataset variable: ``plan.carried.frame`` False) into a group that ``xr.open_zarr``
    opens now, where the array would make it fail (:func:`datasets.unopenable_arrays`'s
    reasons: no dimension names, a dimension of another size than the group's arrays give
    it): every variable of the group, a Dataset output of this pipeline's too, would no
    longer open, and ``verify`` and ``run --resume`` of that output would refuse its group
    (an input array without dimension names had been written, with exit 0, beside a
    Dataset output, which xarray then failed to open). In every layout
    (:func:`enclosing_group`). A group without other arrays, or one xarray cannot open
    already, is written into as before. With ``resume``, of an incomplete output there (begun
    by a run before this check), ``run --resume``'s refusal, before any block: finished, it
    would keep the group closed (the line says to remove it). The line names
    ``output.dimension_names`` as a fix where the reason is the names (h88b). Fields
    ``output``, ``group``, ``arrays`` (the group's, at most three)."""
    if plan.carried.frame:
        return
    found = enclosing_group(plan)
    if found is None:
        return
    holder, group, name = found
    try:
        store = holder.zarr_store(read_only=True)
        found_here = datasets.group_arrays(store, group, listed=True)
        others = {n: a for n, a in found_here.items() if n != name}
        if not others or datasets.unopenable_arrays(store, group, (name,), {}):
            return  # no Dataset there, or one xarray cannot open already
    except Exception:  # no group there to read
        return
    shape, dims = plan.output.shape, plan.carried.dimension_names
    sizes = {
        d: n
        for a in others.values()
        for d, n in zip(datasets.dims_of(a) or (), a.shape, strict=False)
    }
    if dims is None and len(shape) > 0:
        why = "it has no dimension names (its input has none)"
    else:
        clash = [
            (d, n) for d, n in zip(dims or (), shape, strict=True) if d in sizes and sizes[d] != n
        ]
        if not clash:
            return
        d, n = clash[0]
        why = f"its dimension {d!r} has {n} elements, and the group's arrays' {sizes[d]}"
    where = plan.output.location.join(plan.output.path)
    listed = sorted(others)
    some = ", ".join(repr(n) for n in listed[:3]) + (", ..." if len(listed) > 3 else "")
    # names of its own, or other names than the config's, are a fix too (h88b)
    names = fix = ""
    if dims is None:
        names = (
            f"output.dimension_names (one name per dimension, such as {_names_example(len(shape))})"
        )
        fix = f"name its dimensions with {names}, or "
    elif plan.config.output.dimension_names is not None:
        names = "other output.dimension_names"
        fix = f"give {names}, or "
    else:  # the input's names clash: others are a fix too (h88e)
        names = "output.dimension_names other than its input's"
        fix = f"give {names}, or "
    if resume:  # its unfinished remains close the group now: they go, then it runs elsewhere
        line = (
            f"cannot resume {name_shown(where)}: it is an array alone in the group "
            f"{holder.shown(group)}, "
            f"an xarray Dataset of {some}, and {why}: xarray does not open the group (nor "
            "those variables) while it is there, finished or not, and no run writes it there, "
            f"even with --overwrite; remove {name_shown(where)} (an unfinished output of this "
            f"pipeline) yourself, then run it {f'again with {names}, or ' if names else ''}"
            f"into {_outside(plan, holder.join(group))}"
        )
    else:
        line = (
            f"cannot write {name_shown(where)}: it is an array alone in the group "
            f"{holder.shown(group)}, an "
            f"xarray Dataset of {some}, and {why}: xarray would no longer open the group (nor "
            f"those variables), even with --overwrite; {fix}choose "
            f"{_outside(plan, holder.join(group))}"
        )
    raise OutputError(line, output=where, group=holder.join(group), arrays=listed[:3])


def _outside(plan: Plan, group: str) -> str:
    """The fix of an array alone that a group's readers would fail on
    (:func:`_refuse_closing_a_dataset`): an output.store outside the whole xarray tree that
    lists it (:func:`_listing_tree`; a group of its own in that tree, which the line had
    said, is still in it: ``xr.open_datatree`` failed on the tree all the same, h86g), else
    outside ``group`` (a URL)."""
    found = _listing_tree(plan)
    top = found[0].url if found is not None else group
    return f"an output.store outside {name_shown(top.rstrip('/'))}"


def _listing_tree(plan: Plan) -> tuple[Location, str] | None:
    """The outermost Zarr group whose hierarchy lists the output array, which
    ``xr.open_datatree`` of it opens: (its location, the output's path from it). The output
    store's root where the output is at a path in it and the root is a group, and each
    group enclosing the store (:func:`pipeline.store.arrays.enclosing_groups`) up to the first
    Zarr v2 one (whose readers do not list the v3 output below it:
    :func:`unlisted_by_v2_group`); None where no group lists it."""
    return _tree_listing(plan.output.location, plan.output.path.strip("/"))


def _tree_listing(loc: Location, path: str) -> tuple[Location, str] | None:
    """:func:`_listing_tree` of an array at ``path`` of the store ``loc``."""
    top = None
    if path and arrays.node_type(loc, "") == "group":
        if not loc.exists("zarr.json"):
            return None  # a v2 store: its readers list no v3 output (refused elsewhere)
        top = (loc, path)
    try:
        enclosing = arrays.enclosing_groups(loc)
    except OSError:  # nothing known above the store
        enclosing = []
    for holder, tail in enclosing:
        if not holder.exists("zarr.json"):
            break
        top = (holder, f"{tail}/{path}" if path else tail)
    return top


def _refuse_breaking_a_tree(plan: Plan, resume: bool = False) -> None:
    """Refuse (OutputError, before anything is written) an output array of at least one
    dimension written alone (no Dataset variable) without dimension names (its input has
    none), into an xarray tree: a hierarchy (:func:`_listing_tree`: the output below a group
    of its store, ``output.array: 'g/b'``, or below a group enclosing it, ``output.store:
    tree.zarr/a/b``) of which some array has dimension names (xarray's content) and none of
    at least one dimension has none (a tree ``xr.open_datatree`` opens now). It had been
    written, exit 0, and ``xr.open_datatree`` of the tree then failed on every group,
    "missing the dimension_names" (h86g); so did a group of its own in that tree, which the
    refusal of an array alone beside a Dataset suggested. The fixes: names for its
    dimensions (``output.dimension_names``, h88b), or an output.store outside the tree. With
    ``resume``, ``run --resume``'s refusal of an incomplete such output (begun
    before this check): remove it, then run it there. A hierarchy without xarray content (a
    plain Zarr group) is written into as before. Fields ``output``, ``group`` (the tree's
    top, a URL), ``arrays`` (some of its arrays that have dimension names). One with
    dimension names is refused where its group would not be aligned with those above it
    (:func:`_refuse_misaligned_alone`)."""
    dims = plan.carried.dimension_names
    if plan.carried.frame or not plan.output.shape:
        return
    found = _listing_tree(plan)
    if found is None:
        return
    holder, within = found
    if dims is not None:
        _refuse_misaligned_alone(plan, holder, within, resume)
        return
    try:
        store = holder.zarr_store(read_only=True)
        named, unnamed = datasets.tree_arrays(store, skip=within)
    except Exception:  # no hierarchy there to read
        return
    if not named or unnamed:
        return  # no xarray content, or a tree xarray does not open already
    where = plan.output.location.join(plan.output.path)
    top = holder.url.rstrip("/")
    some = ", ".join(repr(n) for n in named) + (", ..." if len(named) >= 3 else "")
    why = (
        f"it has no dimension names (its input has none), and it would be inside "
        f"the xarray tree {name_shown(top)} (arrays with dimension names: {some}), whose "
        "xr.open_datatree fails on every group while an array there has none"
    )
    names = _names_example(len(plan.output.shape))
    if resume:
        line = (
            f"cannot resume {name_shown(where)}: {why}, finished or not; remove "
            f"{name_shown(where)} (an unfinished output of this pipeline) yourself, then run "
            f"it again with output.dimension_names (one name per dimension, such as {names}), "
            f"or into an output.store outside {name_shown(top)}"
        )
    else:
        line = (
            f"cannot write {name_shown(where)}: {why}, even with --overwrite; name its "
            f"dimensions with output.dimension_names (one name per dimension, such as "
            f"{names}), or choose an output.store outside {name_shown(top)}"
        )
    raise OutputError(line, output=where, group=top, arrays=named)


def _names_example(n: int) -> str:
    """An ``output.dimension_names`` of ``n`` names, as a refusal's example of the fix."""
    return str([f"dim_{i}" for i in range(n)])


def _closes_a_tree(plan: Plan) -> bool:
    """Whether the output, an array alone without dimension names
    (:func:`_refuse_breaking_a_tree`), named as a new array in the group at the output's
    path (which is a group), would be refused there by that rule: the tree that would list
    it (:func:`_tree_listing`, from the outermost Zarr v3 group, as the refusal walks it;
    that group's own had been walked, h88b) holds arrays with dimension names and none
    without."""
    if plan.carried.frame or plan.carried.dimension_names is not None or not plan.output.shape:
        return False
    loc, path = plan.output.location, plan.output.path.strip("/")
    # a name no member has: the whole tree is walked, nothing in it left out
    found = _tree_listing(loc, f"{path}/\0new" if path else "\0new")
    if found is None:
        return False
    holder, within = found
    try:
        named, unnamed = datasets.tree_arrays(holder.zarr_store(read_only=True), skip=within)
    except Exception:  # nothing to read there
        return False
    return bool(named) and not unnamed


def _refuse_misaligned_alone(plan: Plan, top: Location, within: str, resume: bool) -> None:
    """Refuse (OutputError, before anything is written) an array alone with dimension names
    at the path ``within`` of the xarray tree ``top`` (:func:`_listing_tree`) whose group
    would not be aligned with the groups above it (a dimension of another size than the
    nearest that has it: :func:`pipeline.store.datasets.misaligned_sizes`): written, exit 0,
    ``xr.open_datatree`` of the tree then failed on every group ("not aligned with its
    parents"; a Dataset output was refused so, an array alone was not), or would leave a
    group below its own not aligned with it (:func:`pipeline.store.datasets.
    misaligned_sizes_below`, h87g). Its own group's arrays are
    :func:`_refuse_closing_a_dataset`'s. Fields ``output``, ``group``, ``dimension``."""
    dims = plan.carried.dimension_names or ()
    if not all(isinstance(d, str) for d in dims):
        return  # partial names: no variable of xarray's to align
    parts = within.split("/")
    try:
        store = top.zarr_store(read_only=True)
    except Exception:  # no hierarchy there to read
        return
    ancestors = [
        (store, "/".join(parts[:depth]), top.join("/".join(parts[:depth])))
        for depth in range(len(parts) - 2, -1, -1)
    ]
    wanted = {str(d): n for d, n in zip(dims, plan.output.shape, strict=True)}
    found = datasets.misaligned_sizes(wanted, ancestors)
    side = "above"
    if found is None:  # and the groups below its own (h87g: a group of x 32 below one of 64)
        found = datasets.misaligned_sizes_below(wanted, store, "/".join(parts[:-1]))
        if found is not None:  # a path in the tree: named as the groups above are
            found = (top.join(found[0]), *found[1:])
        side = "below"
    if found is None:
        return
    label, dim, why = found
    where = plan.output.location.join(plan.output.path)
    tree = top.url.rstrip("/")
    # other names are a fix too, where the input's are the ones that clash (h88e)
    names = "other output.dimension_names"
    if plan.config.output.dimension_names is None:
        names = "output.dimension_names other than its input's"
    fix = f"give {names}, or choose an output.store outside {name_shown(tree)}"
    if resume:
        fix = (
            f"remove {name_shown(where)} (an unfinished output of this pipeline) yourself, then "
            f"run it again with {names}, or into an output.store outside {name_shown(tree)}"
        )
    raise OutputError(
        f"{'cannot resume' if resume else 'cannot write'} {name_shown(where)}: the group "
        f"{name_shown(label.rstrip('/'))} {side} it {why}, and xr.open_datatree of "
        f"{name_shown(tree)} would fail on every group (one not aligned with those above it), "
        f"even with --overwrite; {fix}",
        output=where,
        group=label.rstrip("/"),
        dimension=dim,
    )


def enclosing_group(plan: Plan) -> tuple[Location, str, str] | None:
    """Where the output array lies in a Zarr hierarchy, whatever the layout: (the location,
    the path in it of the group that holds the array, the array's name there). For an output
    array at a path of its store (a variable of a group, an array written alone into a
    group, a nested group path), its parent group in that store; for an output array at the
    root of its store (``output.array: ''``), the folder that holds the store, which may be
    a Zarr group itself (``output.store: out.zarr/cell_area``); None where the store has no
    such folder (a chained URL: an archive, a cache; a file system's root)."""
    loc, path = plan.output.location, plan.output.path.strip("/")
    if path:
        group, _, name = path.rpartition("/")
        return loc, group, name
    up = loc.parent()
    return None if up is None else (up[0], "", up[1])


def unlisted_by_v2_group(plan: Plan) -> str | None:
    """The warning, in one line, for a run that writes its output (Zarr v3) into a store
    inside a Zarr v2 group (:func:`pipeline.store.arrays.enclosing_groups`; ``output.store:
    v2.zarr/child``, a ``to_zarr(..., zarr_format=2)`` parent): the v2 group's readers
    (``xr.open_datatree``, ``xr.open_zarr(group=...)``) list only v2 members, and do not see
    the output, which opens by its own path (h86d: exit 0, and ``open_zarr(group='child')``
    raised KeyError, nothing said). Not refused: writing into such a group is meant (the h71c
    layouts). None where no enclosing group is v2 only."""
    try:
        enclosing = arrays.enclosing_groups(plan.output.location)
    except OSError:  # nothing known above the store
        return None
    v2 = [(h, t) for h, t in enclosing if h.exists(".zgroup") and not h.exists("zarr.json")]
    if v2:  # the outermost, the user's tree (those between may be this run's)
        holder, tail = v2[-1]
        return (
            f"{name_shown(plan.output.location.join(plan.output.path))} is written as Zarr v3 "
            f"inside the Zarr v2 group {name_shown(holder.url)}, whose readers (xarray's "
            f"open_datatree, open_zarr(group={tail!r})) do not list it: open it by its own path, "
            f"{name_shown(plan.output.location.url)}"
        )
    return None


def _refuse_misaligning_a_tree(plan: Plan, resume: bool = False) -> None:
    """Refuse (OutputError, before anything is written) a Dataset output whose group lies below
    a group (of its store, or one that holds the store: ``output.store: tree.zarr/res``) with
    a dimension it writes of another size (a data variable's without a coordinate too: h85e),
    or a dimension coordinate of other values than the coordinate it carries
    (:func:`pipeline.store.datasets.misaligned_ancestor`: xarray's exact alignment), or
    above a group (written into with ``--overwrite``) with such a dimension of another size
    or such a coordinate of other values (:func:`~pipeline.store.datasets.misaligned_descendant`):
    ``xr.open_datatree`` of the store requires each group to be aligned with those above it,
    and failed on the whole tree after such a run (h75b: the user's DataTree, which opened
    before, no longer did, exit 0). Fields ``output``, ``group`` (where the other coordinate
    is), ``dimension``. With ``resume``, ``run --resume``'s refusal of an incomplete output
    there, before any block: a group above or below it changed since the run that began it
    (h86d: a resume finished it, and the tree no longer opened)."""
    group, variable = output_group(plan), plan.carried.variable
    if group is None or variable is None:
        return
    loc = plan.output.location
    store = loc.zarr_store(read_only=True)
    parts = group.split("/") if group else []
    ancestors = [
        (store, "/".join(parts[:depth]), loc.join("/".join(parts[:depth])))
        for depth in range(len(parts) - 1, -1, -1)
    ]
    with contextlib.suppress(OSError):  # nothing known above the store: its own groups only
        ancestors += [
            (holder.zarr_store(read_only=True), "", holder.join(""))
            for holder, _ in arrays.enclosing_groups(loc)
        ]
    src = plan.input.location.zarr_store(read_only=True)
    found = datasets.misaligned_ancestor(src, variable, ancestors)
    side = "above"
    if found is None:
        found = datasets.misaligned_descendant(src, variable, store, group)
        side = "below"
        if found is not None:
            found = (loc.join(found[0]), found[1], found[2])
    if found is None:
        return
    label, dim, why = found
    where = loc.join(plan.output.path)
    # a fix that works when followed (h86d: "choose another output.store or output.array",
    # and another output.array of the same store stayed below the same group)
    inner = {joined: path for _, path, joined in ancestors if path}
    if side == "below":
        fix = "choose an output.array whose group is not above that group, or another output.store"
    elif label in inner:
        fix = f"choose an output.array outside the group {inner[label]!r}, or another output.store"
    else:
        fix = f"choose an output.store outside {name_shown(label.rstrip('/'))}"
    raise OutputError(
        f"{'cannot resume' if resume else 'cannot write'} {name_shown(where)}: the group "
        f"{name_shown(label.rstrip('/'))} {side} it {why}, and "
        "xr.open_datatree of the store would fail on every "
        f"group (one not aligned with those above it), even with --overwrite; {fix}",
        output=where,
        group=label.rstrip("/"),
        dimension=dim,
    )


def _refuse_replacing_a_reference(plan: Plan) -> None:
    """Refuse (OutputError, before anything is deleted) to replace an array at the output's
    own path that this pipeline did not write (its attributes record no run) and that the
    other variables of the group holding it refer to (:func:`datasets.users`: a cell
    measure, a grid mapping, bounds, a coordinate): the computed values would describe them
    from then on (F2: a user's ``cell_area``, which ``cell_measures`` named, replaced with
    exit 0). In every layout (:func:`enclosing_group`): a variable of a group, an array
    written alone into a group, or at the root of a store that is itself an array of a
    group (``output.store: out.zarr/cell_area``, ``output.array: ''``). Fields ``output``,
    ``array`` (its name), ``users``, ``group`` (where that group is)."""
    loc = plan.output.location
    if arrays.node_type(loc, plan.output.path) != "array" or recorded_run(plan):
        return
    found = enclosing_group(plan)
    if found is None:
        return
    holder, group, name = found
    try:
        store = holder.zarr_store(read_only=True)
        others = [n for n in datasets.group_arrays(store, group) if n != name]
    except Exception:  # no group there to read: nothing refers to the array
        return
    if not others:
        return
    refs = datasets.users(store, group, others)
    using = sorted(k for k, r in refs.items() if name in r)
    if not using:
        return
    where = loc.join(plan.output.path)
    them = ", ".join(repr(u) for u in using[:3]) + (", ..." if len(using) > 3 else "")
    raise OutputError(
        f"cannot write {name_shown(where)}: it is {_what_array(store, group, others, name)}, and "
        "its "
        f"group's variables {them} refer to it (as a coordinate, cell bounds, grid mapping or cell "
        "measure): replacing it would relabel them, even with --overwrite; choose another "
        "output.array or output.store, or remove those variables yourself",
        output=where,
        array=name,
        users=using,
        group=holder.join(group),
    )


def _carriers(store: Any, group: str, others: list[str], name: str) -> list[str]:
    """The arrays of ``others`` in ``group`` whose run record (their ``pipeline`` attribute)
    lists ``name`` among what that run carried into the group beside them (its
    ``coordinates``: a coordinate, bounds, a grid mapping, a cell measure, the arrays a
    ``formula_terms`` names), which xarray wrote then as the input had it."""
    found = []
    for other in others:
        record = arrays.run_record(datasets.own_attributes(store, group, other))
        if record is not None and name in _names(record.get("coordinates")):
            found.append(other)
    return sorted(found)


def _what_array(store: Any, group: str, others: list[str], name: str) -> str:
    """What the array ``name`` of ``group`` is, in words, for a refusal to replace it: one a
    run of this pipeline carried there beside another variable (copied from its input, not
    computed: not an output of its own), or one this pipeline did not write."""
    carriers = _carriers(store, group, others, name)
    if not carriers:
        return "an array this pipeline did not write"
    some = ", ".join(repr(c) for c in carriers[:3]) + (", ..." if len(carriers) > 3 else "")
    return (
        f"an array that a run of this pipeline copied from its input beside the output "
        f"{some} (not an output it computed)"
    )


def _refuse_relabelling(plan: Plan, replaced: set[str], store: Any) -> None:
    """Refuse (OutputError, before anything is deleted) to replace a coordinate of the output
    group that its other variables refer to (:func:`datasets.users`: directly, or through a
    coordinate they use, as its bounds; a grid mapping, a cell measure) with one of other values
    or attributes (:func:`datasets.same_coordinate`): they would be described by the input's
    coordinate from then on, silently relabelled (helper-42: another input's times and
    latitudes replaced those of the user's own variables); nor an array of the group that no
    run of this output wrote and nothing refers to, in the place of a coordinate it writes,
    where the two differ (a user's own data, helper-51). Fields ``output``, ``array`` (the
    coordinate), ``users`` ([] for the latter)."""
    group, variable = output_group(plan), plan.carried.variable
    assert group is not None and variable is not None
    loc = plan.output.location
    ledger = plan.sink.ledger
    manifest = (ledger.read_manifest() if ledger is not None else None) or {}
    # a coordinate a stopped run of this output was replacing is its own, half-written: that
    # run compared it before it deleted anything (helper-43: refused, a dead end), but only
    # from the input it read; from another one, or one changed since, what it compared says
    # nothing of this input's (F1: a stop, then --overwrite from another input relabelled the
    # user's variables), so its coordinates are compared too, one it deleted included
    ours = set(_names(manifest.get("coordinates")))
    trusted = ours if _made_from_this_input(manifest, plan) else set()
    present = {n for n in variable.coords if arrays.node_type(loc, _key(group, n)) == "array"}
    written = [n for n in variable.coords if n in replaced and (n in present or n in ours)]
    kept = [n for n in _beside(plan) if n not in replaced]
    if not written:
        return
    refs = datasets.users(store, group, kept) if kept else {}
    src = plan.input.location.zarr_store(read_only=True)
    recorded = set(_names(own_record(plan).get("coordinates")))  # written by this output
    for name in written:
        using = sorted(k for k, r in refs.items() if name in r)
        if name in trusted or (not using and name in recorded):
            continue
        if name not in present and not using:  # deleted by a stopped run; nothing uses it
            continue
        # None (not readable at all, and no run of ours wrote it) is not known to be the same
        if name in present and datasets.same_coordinate(src, variable, store, group, name):
            continue
        where = loc.join(plan.output.path)
        if not using:  # an array of the user's own that nothing refers to (helper-51)
            raise OutputError(
                f"cannot write {name_shown(where)}: its group holds an array {name!r} that this "
                "pipeline "
                f"did not write, with other values or attributes than the input's coordinate "
                f"{name!r}: writing the coordinate would replace it, even with --overwrite; "
                "choose another output.store or another group (output.array: "
                "'<group>/<name>'), or remove or rename that array yourself",
                output=where,
                array=name,
                users=[],
            )
        them = ", ".join(repr(u) for u in using[:3]) + (", ..." if len(using) > 3 else "")
        raise OutputError(
            f"cannot write {name_shown(where)}: its group's variables {them} are described by "
            f"{name!r} (a coordinate, cell bounds, grid mapping or cell measure they refer "
            f"to), and the input's {name!r} has other values or attributes: "
            "writing it would relabel them, even with --overwrite; choose another "
            "output.store or another group (output.array: '<group>/<name>'), or remove those "
            "variables yourself",
            output=where,
            array=name,
            users=using,
        )


def _made_from_this_input(recorded: dict[str, Any], plan: Plan) -> bool:
    """Whether the run that ``recorded`` (a run record) describes read the input this plan
    reads, as it is now: the same place, files and coordinates in its identity (as
    :func:`stale_parts` compares them), and an input whose identity can show a rewrite (not
    :attr:`Plan.input_unstamped`)."""
    identity = recorded.get("identity")
    if not isinstance(identity, dict) or plan.input_unstamped is not None:
        return False
    if record_edited(recorded) is not None:  # what it says cannot be taken (h57a)
        return False

    def plain(x: Any) -> str:
        return json.dumps(x, sort_keys=True, default=str)

    return plain(identity.get("input")) == plain(plan.identity["input"]) and plain(
        identity.get("coordinates")
    ) == plain(plan.identity.get("coordinates"))


def decide_start(
    plan: Plan,
    overwrite: bool = False,
    resume: bool = False,
    locked: bool = False,
    declined: bool = False,
) -> str:
    """'fresh' (create the output), 'resume' or 'done'; or an OutputError saying why not.
    ``locked``: this process holds the output's lock (a run deciding again once it has taken
    it: what it decided before may be stale, another run having written there meanwhile),
    which is then no other run's. ``declined``: the run said no to replacing the output
    (``run --no-overwrite``, ``pipeline.run(config, overwrite=False)``), which a refusal of
    one that is there says it keeps, as asked (:func:`_exists`).

    On ``resume`` the output must be what this config makes of this input: a complete one
    (else 'done' would keep a stale output), and an incomplete one (else the resume would mix
    two runs' blocks); a refusal names what changed (the error's ``changed``).

    The error's fields: ``output`` (where), ``status`` (what is there, as
    :func:`output_state` says; 'blocked' for an output under an array or a file, with
    ``blocking`` and ``node``: :func:`check_parents`), ``changed`` (for a stale output),
    ``holder`` (for an output another run is writing: its ``pid``, ``host``, ``since``).

    Reads only: nothing is written before this has decided (and the lock is taken); under
    the group's lock (:func:`pipeline.store.ledger.group_lock`), so what another run writing
    into the same group changes is read before or after, never half-written (on an object
    store that lock is an object, made and deleted, as :func:`check_writable`'s probe is)."""
    with group_lock(plan.output.location, output_group(plan)):
        return _decide_start(plan, overwrite, resume, locked=locked, declined=declined)


def startable(
    plan: Plan, overwrite: bool = False, resume: bool = False, declined: bool = False
) -> str:
    """:func:`decide_start` after the checks every start makes first: the output overlaps
    no input (:func:`check_not_overlapping`) and can be written (:func:`check_writable`),
    but for a ``resume`` that finds the output complete, as this config makes it of this
    input, with nothing to write again (no consolidated copy stale or gone): 'done' needs
    no write, so a complete output in a folder the user may not write (a shared, finished
    dataset made read-only) is done, not refused as unwritable (h65d: `run --resume`, which
    does nothing there, had been told to fix the folder's permissions). Reads only."""
    check_not_overlapping(plan)
    try:
        check_writable(plan.output.location)
    except OutputError:
        if resume and not overwrite and _done_as_it_is(plan):
            return "done"
        raise
    return decide_start(plan, overwrite=overwrite, resume=resume, declined=declined)


def _done_as_it_is(plan: Plan) -> bool:
    """Whether ``run --resume`` finds the output complete and writes nothing there."""
    try:
        done = decide_start(plan, resume=True) == "done"
        return (
            done
            and not copies_to_write(plan)
            and not record_to_rewrite(plan)
            and not groups_to_write(plan)
        )
    except Exception:  # a refusal, or what cannot be looked at (under a file): not done
        return False


def _decide_start(
    plan: Plan,
    overwrite: bool,
    resume: bool,
    record: bool = True,
    locked: bool = False,
    declined: bool = False,
) -> str:
    """:func:`decide_start`'s decision, under the group's lock; with ``record`` False, as
    it would be once the damaged part of the run record was removed (:func:`_once_removed`);
    ``locked``: the output's lock is this process's own; ``declined``: the run said no to
    replacing it."""
    where = plan.output.location.join(plan.output.path)
    check_parents(plan)
    ledger = plan.sink.ledger
    if record:
        _refuse_damaged_record(plan, where)
    if ledger is not None:
        holder = None if locked else ledger.holder()
        if holder is not None:
            raise ledger.busy(holder)
        # another run's output, or an input being generated, above or inside this one: each
        # holds its own lock, and one's clearing (--overwrite) deletes the other's data
        ledger.check_apart()
    state = output_state(plan)  # (which refuses a document that is no file)
    if not overwrite and state != "incomplete":
        # a chunk that is no file (a named pipe), before any is read, which would wait on it
        # without end (h84a): --overwrite deletes it, a resume writes its block again
        refuse_not_files(plan)
    if state != "group":
        check_formats_agree(plan)
    if state == "absent":
        check_records_whole(plan)
        check_frame_fits(plan)
        check_consolidatable(plan)
        return "fresh"
    if state == "group":
        loc, path = plan.output.location, plan.output.path
        some = members_words(loc, path.strip("/"), group_members(loc, path))
        # an array without dimension names named in an xarray tree is refused there too
        # (h86g) unless output.dimension_names names them (h88b)
        inside = "name a new array in it (output.array: <group>/<name>), "
        if _closes_a_tree(plan):
            inside = (
                "name a new array in it (output.array: <group>/<name>) with "
                "output.dimension_names (one name per dimension, such as "
                f"{_names_example(len(plan.output.shape))}: its tree is xarray's), "
            )
        raise OutputError(
            f"{name_shown(where)} is a Zarr group that holds {some}, not an array; the pipeline "
            f"never replaces a group, even with --overwrite: {inside}choose another "
            "output.store, or remove it yourself",
            output=where,
            status=state,
        )
    if state == "not-zarr":
        loc = plan.output.location
        listed = [n for n in loc.entries(plan.output.path) if n != RECORD]  # (a lock alone)
        folder, folder_path = where, plan.output.path
        if not listed:  # the variable is absent: what is in the way is in its group
            listed = _beside(plan)
            folder_path = output_group(plan) or ""
            folder = plan.output.location.join(folder_path)
        damaged = [
            n
            for n in listed
            if arrays.node_type(plan.output.location, _key(folder_path, n)) == "damaged"
        ]
        if damaged:  # a Zarr group's members whose metadata is not readable: name each
            # (three, then how many more; the first alone had been named, h85b)
            members = [plan.output.location.join(_key(folder_path, n)) for n in damaged]
            one = len(members) == 1
            raise OutputError(
                f"{name_shown(folder)} holds {some_shown(members)}, "
                f"{'a Zarr node whose metadata is' if one else 'Zarr nodes whose metadata are'} "
                "not readable (cut "
                "short, not JSON, or lacking what Zarr requires); the pipeline never writes "
                f"beside {'it' if one else 'them'} nor deletes {'it' if one else 'them'}, even "
                f"with --overwrite: mend or remove {'that member' if one else 'those members'} "
                "yourself, or choose another output.store",
                output=where,
                status=state,
                member=members[0],
                members=members,
            )
        if folder_path != plan.output.path and arrays.node_type(loc, folder_path) == "group":
            raise _strays_in_group(plan, folder, folder_path, listed)
        some = some_shown(listed)
        meta = [m for m in ("zarr.json", ".zarray", ".zgroup") if m in listed]
        what = (
            f"its {meta[0]} is not readable Zarr metadata" if meta else "not a Zarr array or group"
        )
        if not meta and "c" in listed:  # an array's chunk folder whose metadata is gone
            # (h87e: `rm out.zarr/zarr.json` of a complete output, whose run record a complete
            # run keeps no more: nothing says whose chunks they are, so they stay the user's)
            what = (
                "chunks of an array whose metadata (zarr.json) is gone, and no run record there "
                "says this pipeline wrote them"
            )
        raise OutputError(
            f"{name_shown(folder)} is a directory that holds other files ({some}), {what}; the "
            "pipeline never deletes it, even with --overwrite: choose another output.store or "
            "remove it yourself",
            output=where,
            status=state,
        )
    if overwrite:
        refused = _overwrite_refusal(plan, state)
        if refused is not None:
            raise refused
        return "fresh"
    try:
        if resume:
            return _resume_start(plan, state, where)
        raise _exists(plan, state, where, declined)
    except OutputError as e:
        raise _named_or_refused(plan, state, e) from None


def _refuse_damaged_record(plan: Plan, where: str) -> None:
    """Refuse every start (plain, ``--resume``, ``--overwrite``) at an output whose run
    record has a part of another kind than the run keeps there (:meth:`Ledger.misshapen`: a
    file where its ``done`` folder goes, a folder where a marker, its lock or ``run.json``
    goes), naming that path to remove and what ``run`` does once it is gone
    (:func:`_once_removed`). Each had met the file system's NotADirectoryError or
    IsADirectoryError ("mend what is at that path"), ``run --resume`` once it had computed a
    block, ``--overwrite`` too where the lock or ``run.json`` was a folder, while
    ``verify``, ``plan`` and a plain ``run`` said `run --resume` finishes it (h65a)."""
    ledger = plan.sink.ledger
    found = ledger.misshapen() if ledger is not None else []
    if not found:
        _refuse_strangers(plan, where)
        return
    # every part (three, then how many more): the first alone had been named (h85b)
    said = some_said([f"{key} is {there} where the run keeps {kept}" for key, there, kept in found])
    paths = [plan.output.location.join(_key(plan.output.path, key)) for key, _, _ in found]
    which = "which no run writes over" if len(found) == 1 else "none of which a run writes over"
    # a link that leads to the run's record (run.json, or .pipeline holding one) is replaced
    # by what it links to, not removed: its removal took the record with it, and the
    # `run --resume` named then was refused, "its run record ... is gone" (h86e); what `run`
    # does next is as it reads the record now, through the link (_once_removed)
    linked = [_links_to_record(path, key) for path, (key, _, _) in zip(paths, found, strict=True)]
    removed = [path for path, kind in zip(paths, linked, strict=True) if kind is None]
    fixes = [f"remove {some_shown(removed)} yourself"] if removed else []
    fixes += [  # one at most: the record (.pipeline) or its run.json, not both
        f"replace the link {path} by the {kind} it links to"
        for path, kind in zip(paths, linked, strict=True)
        if kind is not None
    ]
    raise OutputError(
        f"the run record of {name_shown(where)} is damaged: {said}, "
        f"{which}, even with --overwrite: {' and '.join(fixes)}, "
        "then "
        f"{_once_removed(plan)}",
        output=where,
        status=output_state(plan),
        record=paths[0],
        records=paths,
    )


def _links_to_record(path: str, key: str) -> str | None:
    """What the local ``path``, the part ``key`` of a run record that
    :meth:`Ledger.misshapen` names ('.pipeline', '.pipeline/run.json'), links to where it is
    a link that leads to the run's ``run.json`` ('file': ``run.json`` a link to a file;
    'folder': the record itself a link to a folder holding one); else None. Replacing such
    a link by what it links to keeps the record; removing it loses the record, and a resume
    with it."""
    if not os.path.islink(path):
        return None
    if key.endswith("/run.json"):
        return "file" if os.path.isfile(path) else None
    if "/" not in key and os.path.isfile(os.path.join(path, "run.json")):
        return "folder"
    return None


def _refuse_strangers(plan: Plan, where: str) -> None:
    """Refuse every start (plain, ``--resume``, ``--overwrite``) at an output whose run
    record's folder (``.pipeline``) holds what the pipeline did not write there
    (:meth:`Ledger.strangers`: a user's notes): that folder is the pipeline's bookkeeping,
    which a run deletes as it ends or starts over, and ``--overwrite`` had deleted a user's
    file put there with no word (h84b); a run's end now deletes its own entries alone
    (:meth:`Ledger.clear`). Named (all of them, three by name), with the fix:
    move them out, and what ``run`` does then (:func:`_once_removed`). OutputError before
    anything is written: ``output``, ``status``, ``record`` (the folder), ``strangers``
    (their names in it)."""
    ledger = plan.sink.ledger
    strangers = ledger.strangers(plan.block_grid) if ledger is not None else []
    if not strangers:
        return
    record = plan.output.location.join(_key(plan.output.path, RECORD))
    them = "it" if len(strangers) == 1 else "them"
    # on an object store, keys anywhere below it (aside/ is a local folder's alone: h85b)
    own = "done/, aside/" if plan.output.location.is_local else "its markers in done/"
    raise OutputError(
        f"the run record folder {name_shown(record)} holds {some_shown(strangers)}, which the "
        f"pipeline did not write: that folder is the pipeline's own bookkeeping (its lock, "
        f"run.json, {own}), which a run deletes as it ends or starts over: move {them} "
        "elsewhere "
        f"yourself, then {_once_removed(plan)}",
        output=where,
        status=output_state(plan),
        record=record,
        strangers=strangers,
    )


def _once_removed(plan: Plan) -> str:
    """What ``run`` does at the output once the damaged part of its run record is removed,
    in words, as its decision then goes (which reads nothing of that part but a lock there,
    or a ``run.json``, that it would find gone too): a plain run's start, else a resume, else,
    of a complete output, that it is complete (and that ``--overwrite`` replaces it), else
    ``--overwrite``'s start; where it takes none, a plain run's refusal then, which names
    what to do."""
    refusals: list[OutputError] = []

    def takes(flag: str) -> str | None:
        p = resumed_plan(plan) if flag == "--resume" else plan
        try:
            return _decide_start(p, flag == "--overwrite", flag == "--resume", record=False)
        except OutputError as e:
            refusals.append(e)
            return None

    if takes("") is not None:
        return "`run` creates it"
    resumed = takes("--resume")
    if resumed == "resume":
        return "`run --resume` finishes it"
    replaced = takes("--overwrite") is not None
    if resumed == "done":  # a complete output's stray record: nothing to finish
        return "it is complete (`run --overwrite` replaces it)" if replaced else "it is complete"
    return "`run --overwrite` starts over" if replaced else str(refusals[0])


def _overwrite_refusal(plan: Plan, state: str) -> OutputError | None:
    """Why ``run --overwrite`` refuses an output of ``state`` (its checks past those of every
    start: files beside the array, a frame that does not fit, an array its group's variables
    refer to), or None where it takes it."""
    try:
        if state != "occupied":  # an array there, which the fresh start replaces
            check_no_links(plan, state)  # before its files, some of which lie behind a link
            check_only_array_files(plan, state)
        check_records_whole(plan)
        check_frame_fits(plan)
        check_consolidatable(plan)
    except OutputError as e:
        return e
    return None


def _named_or_refused(plan: Plan, state: str, refusal: OutputError) -> OutputError:
    """``refusal`` (of a plain run, or of ``--resume``) where the command it names works;
    where it names ``--overwrite`` and ``run --overwrite`` refuses too, that refusal, which
    says that no command writes the output here and what to do (it had said "pass
    --overwrite", which then refused: an array its group's variables refer to)."""
    text = str(refusal)
    if "--overwrite" not in text.replace("even with --overwrite", ""):
        return refusal
    refused = _overwrite_refusal(plan, state)
    if refused is None:
        return refusal
    return OutputError(str(refused), **{**refused.data, "status": state})


def _refuse_input_hard_links(plan: Plan, where: str, state: str) -> None:
    """Refuse a resume of the local output ``where`` a file of which is a hard link to one
    of the local input's (one file under two names: ``ln in.zarr/c/0/0 out.zarr/c/0/0``, or
    an output copied with ``cp -al`` from a store whose files the input shares). The resume
    would write the output's file: the input is never modified, and unlinking its other name
    (what a write does, :func:`~pipeline.store.location.Location.write`) still changes the
    input's file times, so the run had ended "the input changed" (or, the link made after the
    interrupted run, was refused as "the input's data changed", naming no link). OutputError
    before anything is written: ``output``, ``status``, ``changed`` [], ``relation``
    'hard linked', ``link`` (the first of the output's such files), ``links`` (every one:
    the line names three, then how many more, :func:`~pipeline.errors.some_shown`; the
    first alone had been named, h86c) and ``target`` (the first one's, the input's). Looked
    for only where an input file has other links (:attr:`Plan.input_linked`, from the
    identity's walk of the input), then by one listing of the output's folders
    (:func:`~pipeline.store.location.files_on_inodes`): no look at each chunk file. Hard
    links between two outputs (``cp -al out.zarr copy.zarr``) are left: a write replaces the
    file, never writes through it, so the other output keeps its bytes."""
    linked = plan.input_linked
    o = plan.output
    if not linked or not o.location.is_local or not plan.input.location.is_local:
        return
    found = files_on_inodes(o.location.join(o.path), linked, skip=(RECORD,))
    if not found:
        return
    at = os.lstat(found[0])
    target = os.path.join(plan.input.location.join(plan.input.path), linked[at.st_dev, at.st_ino])
    if len(found) == 1:
        said = f"{name_shown(found[0])} is a hard link to the input's file {name_shown(target)}"
    else:
        said = (
            f"{some_shown(found)} are hard links to the input's files ({name_shown(found[0])} "
            f"to {name_shown(target)})"
        )
    raise OutputError(
        f"cannot resume {name_shown(where)}: {said} (one file under two names), which a "
        "resume writing the output would change (the input is never modified): `run "
        "--overwrite` starts over (it deletes the output's names of such files, never the "
        "input's)",
        output=where,
        status=state,
        changed=[],
        relation="hard linked",
        link=found[0],
        links=list(found),
        target=target,
    )


def _as_not_asked(refusal: OutputError, where: str) -> OutputError:
    """``run --resume``'s refusal of the incomplete output at ``where``, worded for a run that
    asked no resume (a plain ``run``, whose line had begun "cannot resume", h87e): the output
    is an interrupted run, which ``run --resume`` refuses, and why; the same fields."""
    text, lead = str(refusal), f"cannot resume {name_shown(where)}: "
    if not text.startswith(lead):
        return refusal
    return OutputError(
        f"{name_shown(where)} is incomplete (an interrupted run), and `run --resume` refuses "
        f"it: {text.removeprefix(lead)}",
        **refusal.data,
    )


def _resume_start(plan: Plan, state: str, where: str, asked: bool = True) -> str:
    """'done' for a complete output this plan makes, 'resume' for an incomplete one whose run
    record says this plan made it; else an OutputError naming what changed, or why there is
    nothing to resume. ``asked``: the run asked to resume (``run --resume``); else the
    refusal of a config or input changed since the interrupted run names the run there as
    another config's (or input's), and that the same resumes it (h87e: a plain run had been
    told "cannot resume", a resume it had not asked for)."""
    if state == "complete":
        changed = stale_parts(recorded_run(plan), plan, whole=True)
        if changed:
            raise OutputError(
                f"{name_shown(where)} is complete, but {said(changed)}: `run --overwrite` "
                "recomputes it",
                output=where,
                status=state,
                changed=[part for part, _ in changed],
            )
        check_group_opens(plan)  # nothing to do would leave a group xarray cannot open
        check_metadata_kept(plan, state)  # nor an output edited since, which verify fails
        return "done"
    if state in ("foreign", "occupied"):
        raise OutputError(
            f"{name_shown(where)} exists ({_foreign_words(plan)}); nothing to resume "
            "(`run --overwrite` replaces it)"
            if state == "foreign"
            else f"{name_shown(where)} is absent, and its group holds {_occupants(plan)}; "
            "nothing to "
            "resume: `run --overwrite` writes it into the group",
            output=where,
            status=state,
        )
    if state == "remains":
        raise OutputError(
            f"{name_shown(where)} holds the remains of an output that a stopped run was making or "
            "replacing; "
            "nothing to resume: `run --overwrite` starts over",
            output=where,
            status=state,
        )
    ledger = plan.sink.ledger
    manifest = ledger.read_manifest() if ledger else None
    if manifest is None:  # lost, deleted or damaged: which blocks were written cannot be told
        # one there that holds no JSON object (cut short, overwritten) had been called gone
        there = ledger is not None and ledger.location.exists(ledger.manifest_key())
        raise OutputError(
            f"{name_shown(where)} is incomplete, and its run record ({RECORD}/run.json) is "
            f"{'damaged (it holds no JSON object)' if there else 'gone'}, so which blocks "
            "were written cannot be told: nothing to resume; `run --overwrite` starts over",
            output=where,
            status=state,
            changed=[],
        )
    _refuse_input_hard_links(plan, where, state)  # before the input's times, which it changed
    _refuse_links_to_files(plan, where, state)
    changed = stale_parts(manifest, plan, whole=False)
    if changed:
        rewritten = {"input.data", "input.metadata"} & {part for part, _ in changed}
        if not asked:
            other = (
                "another config"
                if not any(p.startswith("input") for p, _ in changed)
                else "another config or input"
            )
            raise OutputError(
                f"{name_shown(where)} holds an interrupted run of {other}: {said(changed)} "
                "since that run; "
                + (
                    "a resume reads the input as that run did, and a file restored or "
                    "rewritten since is another: `run --overwrite` starts over"
                    if rewritten
                    else "`run --resume` with that run's config and input resumes it, or "
                    "`run --overwrite` starts over"
                ),
                output=where,
                status=state,
                changed=[part for part, _ in changed],
            )
        raise OutputError(
            f"cannot resume {name_shown(where)}: {said(changed)} since the interrupted run; "
            # files rewritten are never the same input again, a chunk restored as a damaged
            # chunk's line says included: "resume with the same input" had led nowhere
            + (
                "a resume reads the input as that run did, and a file restored or rewritten "
                "since is another: `run --overwrite` starts over"
                if rewritten
                else "resume with the same config and input, or `run --overwrite` to start over"
            ),
            output=where,
            status=state,
            changed=[part for part, _ in changed],
        )
    unstamped = plan.input_unstamped
    if unstamped is not None:  # F3: an HTTP input rewritten between the runs was mixed in
        raise OutputError(
            f"cannot resume {name_shown(where)}: the input's identity cannot show a rewrite since "
            "the "
            f"interrupted run that keeps its files' names and sizes ({unstamped}), so a resume "
            "could mix both versions; `run --overwrite` starts over",
            output=where,
            status=state,
            changed=[],
            unstamped=unstamped,
        )
    check_layout_kept(plan)
    check_metadata_kept(plan)
    check_group_opens(plan)
    # an array alone begun in a Dataset's group by a run before this check (ddc6267) would be
    # finished there, closing the group to xarray: refused as a fresh start is
    _refuse_closing_a_dataset(plan, resume=True)
    _refuse_breaking_a_tree(plan, resume=True)
    # a group above or below gained a dimension of another size since: refused as a first
    # run is (h86d: the resume finished it, and xr.open_datatree then failed on the store)
    _refuse_misaligning_a_tree(plan, resume=True)
    check_consolidatable(plan)  # a member damaged since: refused before, not after, the blocks
    return "resume"


def check_layout_kept(plan: Plan) -> None:
    """Refuse to resume an output whose metadata no longer describes what the interrupted run
    was writing (another shape, dtype, chunks or shards: resized by another tool, helper-40,
    and marked complete at the new shape): OutputError, fields ``output``, ``status``
    'incomplete', ``changed`` ['layout']."""
    o = plan.output
    try:
        now = arrays.describe_array(o.location, o.path)
    except Exception:
        return  # what is there is decided and named elsewhere (output_state)
    ran = (tuple(o.shape), np.dtype(o.dtype), tuple(o.chunk), tuple(o.unit))
    has = (tuple(now.shape), np.dtype(now.dtype), tuple(now.chunk), tuple(now.unit))
    where = o.location.join(o.path)
    if ran != has:
        raise OutputError(
            f"cannot resume {name_shown(where)}: its metadata says {list(has[0])} {has[1]}, chunks "
            f"{list(has[2])} in units {list(has[3])}, but the interrupted run was writing "
            f"{list(ran[0])} {ran[1]}, chunks {list(ran[2])} in units {list(ran[3])} (changed "
            "by something else since): `run --overwrite` starts over",
            output=where,
            status="incomplete",
            changed=["layout"],
        )
    encoding = encoding_edited(plan)
    if encoding:
        raise OutputError(
            f"cannot resume {name_shown(where)}: {encoding}, and a resume would mark it complete "
            "with "
            "that edit in it: `run --overwrite` starts over",
            output=where,
            status="incomplete",
            changed=["layout"],
        )


def output_layout(plan: Plan) -> arrays.OutputLayout:
    """How ``plan``'s output stores its chunks (its shape, dtype, chunks, shards, codec, and
    zstd's level and checksum): what its creation writes (:func:`_create`) and what an
    output's metadata is compared with (:func:`encoding_edited`)."""
    o, encoding = plan.output, plan.sink.encoding
    return arrays.OutputLayout(
        shape=o.shape,
        dtype=o.dtype,
        chunk=o.chunk,
        shard=o.unit if o.sharded else None,
        codec=o.codec or "none",
        level=encoding.level,
        checksum=encoding.checksum,
    )


def encoding_edited(plan: Plan) -> str | None:
    """Words saying how the output's metadata stores its chunks' bytes otherwise than this
    run writes them (:func:`pipeline.store.arrays.encoding_differs`: its codecs, a byte order
    or shard index place edited by hand, its chunk key encoding), or None where it agrees or
    cannot be read (named elsewhere). h63d: such an edit of an interrupted output was resumed
    and marked complete, and of a complete one called done, every chunk read otherwise than
    the run wrote it."""
    o = plan.output
    try:
        arr = arrays.open_zarr_array(o.location, o.path)
    except Exception:
        return None
    found = arrays.encoding_differs(arr, output_layout(plan))
    if not found:
        return None
    return "; ".join(found)


def output_edits(plan: Plan, whole: bool = False) -> list[tuple[str, str]]:
    """What the output holds otherwise than the run that wrote it made it, edited or lost
    since, as (part, words) pairs: 'metadata', its own attributes, dimension names or fill
    value (:func:`pipeline.store.datasets.own_metadata_differs`); 'coordinates', for a
    Dataset output, each coordinate written beside it that xarray reads otherwise than the
    input's (:func:`pipeline.store.datasets.coordinates_differ`: values, dimensions,
    attributes, or the coordinate gone). With ``whole`` (a complete output, which nothing
    rewrites), also 'layout', another shape, dtype, chunks or shards than the plan's, and in
    'chunks', its unit files gone or of other sizes than the run recorded of them
    (:func:`pipeline.store.arrays.units_differ`: a file deleted reads as the fill value), in
    'modified', where their sizes are those, unit files modified after the run marked it
    complete (:func:`pipeline.store.arrays.units_modified`, from the same listing's times: a
    file zeroed or a byte flipped at its size, h83a), and in 'metadata' its consolidated
    copies that disagree with what they list (:func:`pipeline.store.datasets.copies_differ`),
    which a resume writes again, are part 'consolidated': not the output's fault; ``run
    --resume`` of a complete output writes them again (:func:`copies_to_write`), a plain run's
    refusal names that. What ``verify`` fails of
    a complete output; asked once the input's identity (its coordinates' bytes among it) and
    the config matched the run's record, so the input's coordinates are what the run wrote.
    Reads metadata and the coordinates (small), never the variable's data. [] where nothing
    differs, or no array is there (what is there is decided and named elsewhere:
    :func:`output_state`)."""
    o = plan.output
    try:
        arr = arrays.open_zarr_array(o.location, o.path)
        now = arrays.describe_array(o.location, o.path) if whole else None
    except Exception:
        return []
    found: list[tuple[str, str]] = []
    group, variable = output_group(plan), plan.carried.variable
    members = plan.carried.written_coords or ()
    if now is not None:
        has = (tuple(now.shape), np.dtype(now.dtype), tuple(now.chunk), tuple(now.unit))
        ran = (tuple(o.shape), np.dtype(o.dtype), tuple(o.chunk), tuple(o.unit))
        if has != ran:
            found.append(
                (
                    "layout",
                    f"its metadata says {list(has[0])} {has[1]}, chunks {list(has[2])} in units "
                    f"{list(has[3])}, where the run wrote {list(ran[0])} {ran[1]}, chunks "
                    f"{list(ran[2])} in units {list(ran[3])}",
                )
            )
        else:
            encoding = encoding_edited(plan)
            if encoding:
                found.append(("layout", encoding))
    own = datasets.own_metadata_differs(
        arr,
        recorded_attributes(plan),
        plan.carried.dimension_names,
        recorded_fill(plan),
        arrays.stored_fill_said(o.location, o.path),
        left_out=plan.carried.left_out,
    )
    if own:
        found.append(("metadata", "; ".join(own)))
    if group is not None:  # xarray opens a Dataset by its groups' documents, root to group
        parts = group.split("/") if group else []
        for g in ("/".join(parts[:depth]) for depth in range(len(parts), -1, -1)):
            if arrays.node_type(o.location, g) != "group":  # h84e: a resume had failed
                found.append(  # in zarr's consolidation, its line a traceback's
                    ("metadata", f"the group document of {o.location.shown(g)} is gone")
                )
    if now is not None and not any(part == "layout" for part, _ in found):  # its grid's files
        stored, listed = recorded_run(plan).get("stored"), arrays.unit_listing(o.location, o.path)
        files = arrays.units_differ(o.location, o.path, arr, stored, listed)
        if files is not None:
            found.append(("chunks", files))
        else:  # the same sizes: a file changed at its size since shows only by its time
            modified = arrays.units_modified(o.location, o.path, arr, stored, listed)
            if modified is not None:
                found.append(("modified", modified))
    if now is not None:
        for said, _ in datasets.copies_differ(o.location, o.path.strip("/"), members):
            found.append(("consolidated", said))
    if members:
        assert group is not None and variable is not None
        src = plan.input.location.zarr_store(read_only=True)
        dst = o.location.zarr_store(read_only=True)
        for name, said in datasets.coordinates_differ(src, variable, dst, group):
            if said in (datasets.UNREADABLE, datasets.ABSENT):  # deleted, or a part of it
                found.append(
                    ("coordinates", f"its coordinate {name_shown(name)} is gone or unreadable")
                )
            else:
                found.append(("coordinates", f"its coordinate {name_shown(name)}'s {said}"))
    return found


def modified_said(edits: list[tuple[str, str]]) -> str:
    """The words after "complete, but" of a complete output whose only edit found is unit files
    modified after it was marked complete (:func:`output_edits`' 'modified'): what changed,
    that the output is no longer known to be what the run wrote, and the two fixes. Refused,
    never "nothing to do" (h83a: a file zeroed or a byte flipped at its size had been
    "complete (nothing to do)", exit 0), and not written again: the times cannot tell damage
    from a copy that did not keep them, which ``verify --all`` tells, reading every block."""
    return (
        f"{edits_said(edits)}, so it is no longer known to hold what the run wrote (a copy "
        "that did not keep the files' times, cp -r, reads so too): `pipeline verify --all` "
        "checks every block; `run --overwrite` writes it again"
    )


def edits_said(edits: list[tuple[str, str]]) -> str:
    """:func:`output_edits`' words as one clause."""
    return "; ".join(words for _, words in edits)


def copies_to_write(plan: Plan) -> list[str]:
    """The consolidated copies of a complete output that are not what its groups hold, in
    words: stale ones (:func:`pipeline.store.datasets.copies_differ`: an edit of the copy,
    an array added to a group since it was consolidated, in the store or a group enclosing
    it) and, where the run writes some (``Carried.consolidate``), those gone
    (:func:`pipeline.store.datasets.consolidated_missing`: zarr-python's group-attribute
    edit with ``use_consolidated=False`` drops a v3 copy; a deleted ``.zmetadata``).
    ``run --resume`` of an output complete and otherwise as the run wrote it writes them
    again, from its verified metadata (:func:`write_again`), as every run's end writes
    them; a plain run refuses it and ``verify`` fails it, each naming that and the
    zarr-python call (helper-46c:
    ``run`` had said "nothing to do" of a copy gone, which ``verify`` failed, and refused a
    stale one with ``run --overwrite``, rewriting the whole output). Reads only."""
    o = plan.output
    path = o.path.strip("/")
    members = plan.carried.written_coords or ()
    try:
        found = [said for said, _ in datasets.copies_differ(o.location, path, members)]
    except Exception:  # what is there is decided and named elsewhere
        return []
    if plan.carried.consolidate:
        store = o.location.zarr_store(read_only=True)
        for g in datasets.consolidated_missing(store, path.rpartition("/")[0]):
            found.append(f"the consolidated metadata of {o.location.shown(g)} is gone")
    return found


def groups_to_write(plan: Plan) -> list[str]:
    """The folders between the group enclosing the output's store and that store that hold
    no Zarr group's metadata now (:func:`pipeline.store.arrays.groups_between_missing`, as
    URLs): a group its run wrote and that was removed since (or that an earlier version never
    wrote), so that readers of the enclosing group (``xr.open_datatree``) do not reach the
    output, and ``verify`` fails it. ``run --resume`` of a complete output writes them again
    (:func:`write_again`), nothing recomputed; a run's end writes them too. Reads only; []
    where none is missing or what is above cannot be read (decided and named elsewhere)."""
    try:
        return arrays.groups_between_missing(plan.output.location)
    except Exception:
        return []


def groups_gone_said(groups: list[str]) -> str:
    """:func:`groups_to_write`'s folders as one clause (three named, then how many more):
    ``the group /data/tree.zarr/a that holds the output's store is gone (...)``."""
    one = len(groups) == 1
    return (
        f"{'the group' if one else 'the groups'} {some_shown(groups)} that "
        f"{'holds' if one else 'hold'} the output's store {'is' if one else 'are'} gone (no "
        "Zarr metadata there: removed since the run), so readers of the groups above "
        "(`xr.open_datatree`) do not reach the output"
    )


def copies_said(copies: list[str]) -> str:
    """:func:`copies_to_write`'s words as one clause: the first, and how many more."""
    more = len(copies) - 1
    return copies[0] + (
        f" (and {more} more such difference{'s' if more > 1 else ''})" if more else ""
    )


def record_to_rewrite(plan: Plan) -> bool:
    """Whether the output's own run record is in an earlier version's form, the mapping
    (:func:`pipeline.store.arrays.record_in_earlier_form`), which ``run --resume`` of the
    complete output writes again as JSON text (:func:`write_again`), nothing else: the
    output of an earlier version had kept it, so ``xr.open_zarr(out).to_netcdf(...)`` refused
    the output. Reads only (but :func:`check_writable`'s probe of an object store); False
    where the attributes cannot be read (what is there is decided and named elsewhere), and
    where the output cannot be written (:func:`check_writable`): a read-only finished
    dataset is done as it is, its record kept in that form (:func:`record_kept`; h70a: its
    resume and plan had been refused as "not a writable directory")."""
    return _record_in_earlier_form(plan) and _writable(plan)


def record_kept(plan: Plan) -> bool:
    """Whether the output's run record is in an earlier version's form (the mapping) that
    ``run --resume`` cannot write again as text, the output being unwritable (a read-only
    finished dataset): the resume writes nothing there and says so (:data:`RECORD_KEPT`).
    Reads only, as :func:`record_to_rewrite`."""
    return _record_in_earlier_form(plan) and not _writable(plan)


#: What a resume of a read-only complete output says of its record in an earlier form.
RECORD_KEPT = (
    "its run record stays as an earlier version wrote it, a mapping, which xarray's "
    "to_netcdf cannot write (the output cannot be written): drop it from the opened "
    'Dataset first, out[VARIABLE].attrs.pop("pipeline")'
)


def _record_in_earlier_form(plan: Plan) -> bool:
    """Whether the output's own attributes hold its run record as the mapping an earlier
    version wrote (:func:`pipeline.store.arrays.record_in_earlier_form`); False where they
    cannot be read."""
    try:
        attrs = arrays.read_attributes(plan.output.location, plan.output.path)
    except Exception:
        return False
    return arrays.record_in_earlier_form(attrs)


def _writable(plan: Plan) -> bool:
    """Whether the output's location can be written (:func:`check_writable` refuses it not)."""
    try:
        check_writable(plan.output.location)
    except OutputError:
        return False
    return True


def written_again(
    copies: list[str], record: bool, planned: bool = False, groups: list[str] | None = None
) -> str:
    """What :func:`write_again` writes of a complete output, in words: its run record as JSON
    text (``record``: :func:`record_to_rewrite`), the groups between its enclosing group and
    its store (``groups``: :func:`groups_to_write`), its consolidated metadata (``copies``:
    :func:`copies_to_write`); as done (``its ... written again``), or, ``planned``, as what
    the run does (``writes its ... again``: ``run --dry-run``'s row)."""
    groups = groups or []
    said = {
        "its run record": (
            record,
            " as JSON text (an earlier version wrote it as a mapping, which xarray's "
            "to_netcdf cannot write)",
        ),
        "the group that holds it": (
            bool(groups),
            f" ({some_shown(groups)}: removed since, and readers of the groups above reach the "
            "output only through it)",
        ),
        "its consolidated metadata": (bool(copies), f" ({copies_said(copies)})" if copies else ""),
    }
    parts = [(what, why) for what, (did, why) in said.items() if did]
    if planned:
        return " and ".join(f"writes {what} again{why}" for what, why in parts)
    return "; ".join(f"{what} written again{why}" for what, why in parts)


def write_again(plan: Plan) -> None:
    """Write again what a complete output's metadata holds in a stale or earlier form, under
    its lock and its group's, as a run's end writes it, no data: its run record as JSON text
    where an earlier version wrote the mapping (:func:`record_to_rewrite`; the same record,
    its ``check`` too), then its consolidated copies (:func:`copies_to_write`, and those that
    hold the record), as :func:`_consolidate` writes them."""
    ledger = plan.sink.ledger
    assert ledger is not None
    o = plan.output
    ledger.acquire()
    try:
        with ledger.held_store() as (folder, store), group_lock(o.location, output_group(plan)):
            attrs = arrays.read_attributes(o.location, o.path)
            if arrays.record_in_earlier_form(attrs):
                record = attrs[arrays.RUN_RECORD]
                new = arrays.record_attribute(record)
                check = functools.partial(ledger.check_writing, folder)  # one step (h84c)
                arrays.update_attributes(o.location, o.path, new, folder, check)
            _consolidate(plan, store=store)
    except BaseException as e:
        ledger.give_up(e)  # a lock that stays is said in e's line, never in its place
        raise
    ledger.give_up()


def check_metadata_kept(plan: Plan, state: str = "incomplete") -> None:
    """Refuse to resume (``state`` 'incomplete'), or to find done ('complete'), an output
    whose own metadata or carried coordinates were edited, or a coordinate removed, since the
    run wrote them (:func:`output_edits`, what ``verify`` checks of a complete one): a resume
    never rewrites them, and would mark the output complete with the edit in it, which verify
    then fails (brk59: an edited ``units`` resumed to "complete"); and "nothing to do" of a
    complete one told the user that an output verify fails was fine (helper-42B: a
    coordinate's values edited with zarr-python). OutputError, fields ``output``,
    ``status`` (``state``), ``changed`` (the parts: 'metadata', 'coordinates'), naming the
    fix, ``run --overwrite``. A complete output's layout is judged too (:func:`output_edits`
    with ``whole``); its consolidated copies are not refused here: ``run --resume`` writes
    them again (:func:`copies_to_write`), and a plain run's refusal names that
    (:func:`_exists`); an incomplete one's a resume writes again when it completes it."""
    found = [e for e in output_edits(plan, whole=state == "complete") if e[0] != "consolidated"]
    if not found:  # a stale copy alone: a plain run writes it again (copies_to_write)
        return
    where = plan.output.location.join(plan.output.path)
    earlier = datasets.earlier_release_alone(words for _, words in found)
    if state == "complete" and all(part == "modified" for part, _ in found):
        said = f"{name_shown(where)} is complete, but {modified_said(found)}"
    elif earlier and state == "complete":  # no edit: an earlier release's output (h88d)
        said = (
            f"{name_shown(where)} is complete, but not as this release of the pipeline "
            f"writes it ({edits_said(found)}): no edit since the run; `run --overwrite` "
            "writes it again"
        )
    elif earlier:
        said = (
            f"cannot resume {name_shown(where)}: it is not as this release of the pipeline "
            f"writes it ({edits_said(found)}): no edit since the run, but a resume never "
            "rewrites its metadata: `run --overwrite` starts over"
        )
    elif state == "complete":
        said = (
            f"{name_shown(where)} is complete, but it is not what the run wrote "
            f"({edits_said(found)}: "
            "edited or removed since), so readers see other labels, attributes or values than "
            "the run made: `run --overwrite` writes it again (`pipeline verify` says what "
            "differs)"
        )
    else:
        said = (
            f"cannot resume {name_shown(where)}: it is not what the interrupted run wrote "
            f"({edits_said(found)}: edited or removed since), and a resume would mark it "
            "complete with that edit in it: `run --overwrite` starts over"
        )
    raise OutputError(
        said,
        output=where,
        status=state,
        changed=list(dict.fromkeys(part for part, _ in found)),
    )


def _exists(plan: Plan, state: str, where: str, declined: bool = False) -> OutputError:
    """The refusal of a run without --overwrite or --resume where an output of ``state`` is;
    for an incomplete one that ``run --resume`` would refuse (no run record, a stale one, an
    input that shows no rewrite, a layout changed since), that refusal, which names the fix
    (it had said `run --resume` finishes it). Where the output would be replaced, the
    advice is :data:`~pipeline.errors.REPLACE_ADVICE`, or, for a run that ``declined`` it,
    :data:`~pipeline.errors.KEPT_ADVICE`: the output kept, as asked, and the two choices
    (the line had said "pass --overwrite" to a user who had just passed ``--no-overwrite``,
    and the dry run's row still did where its error line had been reworded)."""
    replace = KEPT_ADVICE if declined else REPLACE_ADVICE
    elsewhere = "" if declined else ", or choose another output.store"  # said by KEPT_ADVICE
    if state == "incomplete":
        try:
            _resume_start(resumed_plan(plan), state, where, asked=False)
        except OutputError as e:
            return _as_not_asked(e, where)
        return OutputError(
            f"{name_shown(where)} is incomplete (an interrupted run): `run --resume` finishes it, "
            "`run --overwrite` starts over",
            output=where,
            status=state,
        )
    if state == "remains":
        return OutputError(
            f"{name_shown(where)} holds the remains of an output that a stopped run was making or "
            "replacing: "
            "`run --overwrite` starts over",
            output=where,
            status=state,
        )
    if state == "complete":
        edited = _complete_edited(plan)
        if edited is not None:  # the edit named (verify fails it), with the same fix
            return edited
        groups = _complete_groups(plan)
        if groups:  # verify fails them too (h87d): `run --resume` writes them again
            took, refusals = run_accepts(plan, ("--resume",))
            if took is None and refusals:
                return refusals[0]
            return OutputError(
                f"{name_shown(where)} is complete, made from this config and input, but "
                f"{groups_gone_said(groups)}: `run --resume` writes "
                f"{'it' if len(groups) == 1 else 'them'} again, nothing recomputed",
                output=where,
                status=state,
                changed=["groups"],
            )
        copies = _complete_copies(plan)
        if copies:  # verify fails them too: `run --resume` writes them again
            took, refusals = run_accepts(plan, ("--resume",))
            if took is None and refusals:  # what else it refuses first (an array in the
                return refusals[0]  # group that xarray cannot open): that line
            return OutputError(
                f"{name_shown(where)} is complete, made from this config and input, but "
                f"{copies_said(copies)}: `run --resume` writes it again from the output's "
                f"metadata, nothing recomputed (as {_calls(plan)} does)",
                output=where,
                status=state,
                changed=["consolidated"],
            )
        return OutputError(
            f"{name_shown(where)} already exists; {replace}replace it",
            output=where,
            status=state,
        )
    if state == "occupied":
        return OutputError(
            f"the group of {name_shown(where)} already holds {_occupants(plan)}: {replace}"
            "write the variable into it beside them "
            "(its attributes and members kept, the input group's attributes added where "
            "it has none of that name; the coordinates it shares with the input replaced, one "
            f"its other variables use only where it is the same){elsewhere}",
            output=where,
            status=state,
        )
    return OutputError(
        f"{name_shown(where)} already exists ({_foreign_words(plan)}); {replace}replace it",
        output=where,
        status=state,
    )


def _complete_edited(plan: Plan) -> OutputError | None:
    """:func:`check_metadata_kept`'s refusal of a complete output made from this config and
    input (as ``run --resume`` plans it: :func:`resumed_plan`) that was edited since; None
    where it was not, or where it is stale, whose own refusal names what changed (an output
    made from another input differs from this one's coordinates without any edit)."""
    recorded = recorded_run(plan)
    resumed = as_recorded(plan, recorded.get("identity"))
    if stale_parts(recorded, resumed, whole=True):
        return None
    try:
        check_metadata_kept(resumed, "complete")
    except OutputError as e:
        return e
    return None


def _complete_copies(plan: Plan) -> list[str]:
    """:func:`copies_to_write` of a complete output made from this config and input (as
    ``run --resume`` plans it, :func:`resumed_plan`), [] where it is stale or edited, whose
    refusals say so first."""
    recorded = recorded_run(plan)
    resumed = as_recorded(plan, recorded.get("identity"))
    if stale_parts(recorded, resumed, whole=True):
        return []
    return copies_to_write(resumed)


def _complete_groups(plan: Plan) -> list[str]:
    """:func:`groups_to_write` of a complete output made from this config and input (as
    ``run --resume`` plans it, :func:`resumed_plan`), [] where it is stale, whose refusal
    says so first."""
    recorded = recorded_run(plan)
    resumed = as_recorded(plan, recorded.get("identity"))
    if stale_parts(recorded, resumed, whole=True):
        return []
    return groups_to_write(resumed)


def _calls(plan: Plan) -> str:
    """The zarr-python calls that write the consolidated copies :func:`copies_to_write`
    names (:func:`pipeline.store.datasets.consolidate_call`), in words."""
    o = plan.output
    path = o.path.strip("/")
    members = plan.carried.written_coords or ()
    calls = [call for _, call in datasets.copies_differ(o.location, path, members)]
    if plan.carried.consolidate:
        store = o.location.zarr_store(read_only=True)
        for g in datasets.consolidated_missing(store, path.rpartition("/")[0]):
            calls.append(datasets.consolidate_call(o.location, g))
    return datasets.consolidate_words(calls) or "zarr.consolidate_metadata"


def _foreign_words(plan: Plan) -> str:
    """What a 'foreign' output is, in words: an array that a run of this pipeline copied
    beside another output of its group (:func:`_what_array`), else one it did not write."""
    found = enclosing_group(plan)
    if found is None or arrays.node_type(plan.output.location, plan.output.path) != "array":
        return "not written by this pipeline"
    holder, group, name = found
    try:
        store = holder.zarr_store(read_only=True)
        others = [n for n in datasets.group_arrays(store, group) if n != name]
        if _carriers(store, group, others, name):
            return _what_array(store, group, others, name)
    except Exception:
        pass
    return "not written by this pipeline"


def resumed_plan(plan: Plan) -> Plan:
    """``plan`` as ``run --resume`` makes it here (:func:`as_recorded`, with the identity the
    run record, else the output's attributes, records)."""
    ledger = plan.sink.ledger
    recorded = (ledger.read_manifest() if ledger is not None else None) or recorded_run(plan)
    return as_recorded(plan, recorded.get("identity"))


#: The ways to start ``run`` that advice names: plain, ``--resume``, ``--overwrite``.
FLAGS = ("", "--resume", "--overwrite")


def run_accepts(plan: Plan, flags: tuple[str, ...]) -> tuple[str | None, list[OutputError]]:
    """The first of ``flags`` (of :data:`FLAGS`) with which ``run`` starts at this output, as
    its own checks decide it (:func:`startable`; on ``--resume`` with the layout it resumes
    in, :func:`resumed_plan`),
    or None where it takes none of them; and the refusals of those tried before it (each
    names its fix). Reads only. What ``verify`` advises is taken from it, so that the command
    it names is one ``run`` takes."""
    refusals: list[OutputError] = []
    for flag in flags:
        p = resumed_plan(plan) if flag == "--resume" else plan
        try:
            startable(p, overwrite=flag == "--overwrite", resume=flag == "--resume")
        except OutputError as e:
            refusals.append(e)
            continue
        return flag, refusals
    return None, refusals


def advice(plan: Plan, flag: str, said: str) -> str:
    """``said``, advice that names ``run`` with ``flag`` (of :data:`FLAGS`), where ``run``
    takes that command at the output (:func:`run_accepts`); else ``run``'s refusal of it,
    which names what to do instead."""
    took, refusals = run_accepts(plan, (flag,))
    return said if took is not None or not refusals else str(refusals[0])


#: What :func:`output_now` says is at the output, by :func:`output_state`, where the command
#: it would name is one ``run`` refuses there.
_NOW = {
    "absent": "absent",
    "complete": "complete",
    "incomplete": "incomplete (an interrupted run)",
    "foreign": "something else is there",
    "occupied": "absent, in a group of other arrays or groups",
    "remains": "the remains of an interrupted replacement",
    "not-zarr": "a directory of other files",
    "group": "a Zarr group of other arrays",
}

#: :data:`_NOW`'s words where another run holds the output's lock now: it is writing what is
#: there, which no run was stopped in.
_WRITING = {
    "incomplete": "incomplete (a run is writing it)",
    "remains": "being replaced by a run",
}


def output_now(plan: Plan) -> str:
    """What is at the output and what ``run`` does with it, in words (``pipeline plan``): the
    command it names is one ``run`` takes there (:func:`run_accepts`); where ``run`` refuses
    that command, its refusal instead, which names the one it takes, or says that none does
    and what to do (F-Y1: "`run --overwrite` replaces it" of an output that ``run
    --overwrite`` refuses: a group of Zarr v2 metadata, an array its group's variables refer
    to). The first of :func:`output_now_refused`."""
    return output_now_refused(plan)[0]


def output_now_refused(plan: Plan) -> tuple[str, OutputError | None]:
    """:func:`output_now`'s words, and the refusal of ``run`` they give where no command of
    ``run`` writes this output (neither a plain run nor ``--overwrite`` starts, and
    ``--resume`` resumes nothing: it refuses, or finds a complete output done; the words
    then say that none writes there and what to do), else None. ``pipeline plan`` exits as
    that refused ``run`` does (a plan whose output no command writes had exited 0: ``plan
    && run`` ran the refused run). Where ``run`` refuses every command before it looks at
    what is there (the output overlaps the input, cannot be written, lies under a file or an
    array, or is a file: :func:`check_parents`), that refusal is the words (review: an output
    under a file had been a NotADirectoryError, and no table). Where the config sets
    ``output.overwrite: true``, the `run --overwrite` they name is a plain `run` (h60j: "`run
    --overwrite` replaces it" of a config whose plain `run` replaces it). A complete output
    that cannot be written but that ``run --resume`` finds done, writing nothing
    (:func:`startable`: a read-only finished dataset), is said so, that refusal after, and is
    no refusal of the plan, as ``run --resume`` and ``run --resume --dry-run`` exit 0 there
    (h66b: `plan` had exited 1, "cannot write the output", its fix the folder's permissions),
    and so is one whose every other run is refused for what is beside it (files in the
    array's folder, which ``--overwrite`` never deletes: h69d, exit 1 had stopped ``plan &&
    run --resume``)."""
    try:
        check_not_overlapping(plan)
        check_writable(plan.output.location)
        check_parents(plan)
    except OutputError as e:
        if _done_as_it_is(plan):  # as run --resume finds it (startable): nothing to write
            return _done_but_refused(plan, e), None
        return str(e), e
    try:  # a named pipe in it: its line, as every run gives it but one that writes past it
        # (--overwrite deletes a chunk's; a resume writes an unfinished output's again), h84a
        state = output_state(plan)
        if state != "incomplete":
            refuse_not_files(plan)
    except OutputError as e:
        if getattr(e, "reason", None) != "not a file":
            raise
        row = str(e)
        if plan.config.output.overwrite:  # a plain `run` overwrites (settled)
            row = row.replace("`run --overwrite`", "`run` (output.overwrite: true)")
        took = run_accepts(plan, ("--overwrite",))[0]
        return row, None if took is not None else e
    row = _output_now(plan, state)
    stopped = stopped_on(plan) if state == "incomplete" else None
    # the command the row names, not one that the line the last run stopped on names
    named = re.search(r"`run( --\w+)?`", row.replace(stopped.line, "") if stopped else row)
    if named is not None:
        flag = (named.group(1) or "").strip()
        took, refusals = run_accepts(plan, (flag,))
        if took is None and refusals:
            # a run holds the lock: what it is making is no interrupted run's (h72u: `plan`
            # had said "incomplete (an interrupted run); another run is writing ...")
            words = _WRITING if getattr(refusals[0], "holder", None) is not None else _NOW
            row = f"{words.get(state, _NOW.get(state, state))}; {refusals[0]}"
    if plan.config.output.overwrite:  # a plain `run` overwrites (settled): say that run
        row = row.replace("`run --overwrite`", "`run` (output.overwrite: true)")
    took, refusals = run_accepts(plan, ("", "--overwrite"))
    if took is not None or _resumes(plan):
        return row, None
    resumed = run_accepts(plan, ("--resume",))[1]
    given = [e for e in refusals + resumed if str(e) in row]  # the one the words give
    refusal = given[0] if given else refusals[-1]
    if not resumed and _done_as_it_is(plan):  # complete as this config makes it, every
        # other run refused (its --overwrite too: files beside the array): `run --resume`
        # finds nothing to do and exits 0, and so does `plan` (it had exited 1, saying
        # "complete; <the refusal>", of an output a resume takes as finished: h69d)
        return _done_but_refused(plan, refusal), None
    return row, refusal


def _done_but_refused(plan: Plan, refusal: OutputError) -> str:
    """The words of :func:`output_now_refused` for a complete output of ``plan`` that
    ``run --resume`` finds done (an earlier version's record kept where it cannot be written:
    :data:`RECORD_KEPT`), every other run refused with ``refusal``."""
    kept = f" ({RECORD_KEPT})" if record_kept(plan) else ""
    return (
        "complete, made from this config and input: `run --resume` finds nothing to "
        f"do{kept}; any other run is refused: {refusal}"
    )


def _resumes(plan: Plan) -> bool:
    """Whether ``run --resume`` resumes the output (as :func:`run_accepts` tries it), not
    refusing it nor finding it done."""
    p = resumed_plan(plan)
    try:
        check_not_overlapping(p)
        check_writable(p.output.location)
        return decide_start(p, resume=True) == "resume"
    except OutputError:
        return False


def _output_now(plan: Plan, state: str) -> str:
    """What :func:`output_now` says of an output of ``state`` where ``run`` takes the
    command it names."""
    if state == "complete":
        recorded = recorded_run(plan)
        changed = stale_parts(recorded, as_recorded(plan, recorded.get("identity")), whole=True)
        if changed:
            return f"complete, but {said(changed)}: `run --overwrite` recomputes it"
        edits = output_edits(as_recorded(plan, recorded.get("identity")), whole=True)
        edits = [e for e in edits if e[0] != "consolidated"]  # `run --resume` writes those
        if edits and all(part == "modified" for part, _ in edits):
            return f"complete, but {modified_said(edits)}"
        if edits and datasets.earlier_release_alone(words for _, words in edits):
            return (
                "complete, but not as this release of the pipeline writes it "
                f"({edits_said(edits)}): `run --overwrite` writes it again"
            )
        if edits:  # as `run --resume` refuses it (verify fails it): not "replaces it"
            return (
                f"complete, but not what the run wrote ({edits_said(edits)}: edited or "
                "removed since): `run --overwrite` writes it again"
            )
        groups = _complete_groups(plan)
        if groups:
            return (
                f"complete, but {groups_gone_said(groups)}: `run --resume` writes "
                f"{'it' if len(groups) == 1 else 'them'} again, nothing recomputed"
            )
        copies = _complete_copies(plan)
        if copies:
            return (
                f"complete, but {copies_said(copies)}: `run --resume` writes it again, "
                "nothing recomputed"
            )
    if state == "incomplete":
        manifest = plan.sink.ledger.read_manifest() if plan.sink.ledger else None
        if manifest is None:
            return "incomplete, with no run record to resume from: `run --overwrite` starts over"
        resumed = as_recorded(plan, manifest.get("identity"))
        changed = stale_parts(manifest, resumed, whole=False)
        if changed:
            return (
                f"incomplete, and not resumable: {said(changed)} since the interrupted run: "
                "`run --overwrite` starts over"
            )
        try:  # what else `run --resume` refuses (an input that shows no rewrite, a layout)
            _resume_start(resumed, state, plan.output.location.join(plan.output.path))
        except OutputError as e:
            return f"incomplete, and not resumable: {e}"
        stopped = stop_of(manifest)
        if stopped is not None and stopped.mend:  # a resume meets it again unless it is
            # mended (h85f); a mend of the input's own data changes the input, which a resume
            # then refuses: `run --overwrite` (h86f)
            more = "" if stopped.input else ", or `run --overwrite` starts over"
            return f"{_stopped_there(stopped)}: {stopped.advice()}{more}"
        # a stop that names nothing to mend (a lost scheduler's): said, and resumed (h86c)
        there = "incomplete (an interrupted run)" if stopped is None else _stopped_there(stopped)
        if (resumed.block, resumed.output.chunk) != (plan.block, plan.output.chunk):
            return (
                f"{there}: `run --resume` finishes it in the layout it "
                f"was begun with (blocks {list(resumed.block)}, chunks "
                f"{list(resumed.output.chunk)}; the rows here are a new run's)"
            )
        if stopped is not None:
            return f"{there}: `run --resume` finishes it"
    if state == "occupied":
        return (
            f"absent, in a group that holds {_occupants(plan)}: `run --overwrite` writes it there"
        )
    return {
        "absent": "absent: `run` creates it",
        "complete": "complete: `run --overwrite` replaces it",
        "incomplete": "incomplete (an interrupted run): `run --resume` finishes it",
        "foreign": "something else is there: `run --overwrite` replaces it",
        "remains": "the remains of an interrupted replacement: `run --overwrite` starts over",
        "not-zarr": "a directory of other files, which `run` never deletes: choose another",
        "group": "a Zarr group of other arrays, which `run` never replaces: choose another",
    }[state]


def run_now(plan: Plan, start: str, left: int = 0, total: int = 0) -> str:
    """What is at the output and what a run that :func:`decide_start` started as ``start``
    ('fresh', 'resume' or 'done') does with it, in words: ``run --dry-run``'s "output now"
    row, which speaks of that run, with its flags (``pipeline plan``'s, :func:`output_now`,
    names the command that writes the output). ``left`` of ``total`` blocks: what a resume
    computes. Reads only."""
    state = output_state(plan)
    there = _NOW.get(state, state)
    stopped = stopped_on(plan) if state == "incomplete" else None
    if stopped is not None:
        there = _stopped_there(stopped)
    if start == "done":
        copies, record = copies_to_write(plan), record_to_rewrite(plan)
        groups = groups_to_write(plan)
        if copies or record or groups:
            return (
                f"{there}: this run finds it complete, made from this config and input, and "
                f"{written_again(copies, record, planned=True, groups=groups)}: nothing else "
                "to do"
            )
        return (
            f"{there}: this run finds it complete, made from this config and input: nothing to do"
        )
    if start == "resume" and stopped is not None and stopped.mend:  # as it did, unless that
        # is mended (h85f), or, of the input's own data, as it did (a mend changes the input,
        # which the resume then refuses: h86f); a stop that names nothing to mend (h86c)
        # resumes as below
        return (
            f"{there}: this run resumes it, {left} of {total} blocks left to compute, and "
            f"{stopped.again()}"
        )
    if start == "resume":
        return f"{there}: this run resumes it, {left} of {total} blocks left to compute"
    if state == "absent":
        return "absent: this run creates it"
    if state == "occupied":
        return f"absent, in a group that holds {_occupants(plan)}: this run writes it there"
    return f"{there}: this run replaces it, starting over"


def stopped_on(plan: Plan) -> Stop | None:
    """The refusal that the last run of ``plan``'s output stopped on, as its run
    record keeps it (:data:`~pipeline.store.ledger.STOPPED`, :func:`record_stop`); None where
    it keeps none (no record: no output, or a complete one; a run interrupted or crashed; an
    earlier release's record)."""
    ledger = plan.sink.ledger
    return ledger.stopped_on() if ledger is not None else None


def _stopped_there(stop: Stop) -> str:
    """What is at an output whose last run stopped on the refusal ``stop``, in words."""
    return f'incomplete (the last run stopped on "{stop.line}")'


def record_stop(plan: Plan, failure: PipelineError) -> None:
    """Keep ``failure``'s line in the run record of ``plan``'s output
    (:data:`~pipeline.store.ledger.STOPPED`), as a run that made or resumed the output stops
    on it, its lock still held: ``plan``, ``verify`` and ``run --resume`` then say that the
    last run stopped on it, which a resume meets again unless it is mended (h85f: after a
    block of the input that cannot be decoded they had said "an interrupted run: `run
    --resume` finishes it", which stopped again the same way). Nothing where the lock is no
    longer this run's, or the record is gone or edited since; never raises (the failure's own
    line is the run's). Where ``failure``'s field ``resumes`` is True (its line names nothing
    to mend: a scheduler lost during the work), the record says so
    (:data:`~pipeline.store.ledger.STOP_RESUMES`), and they say `run --resume` alone (h86c:
    "mend that" had followed every stop). Where ``failure`` is of the input's own data (its
    field ``rewrites_input``, :class:`~pipeline.errors.InputError`'s: a damaged chunk, an
    element its decoding cannot hold; not a store that would not answer, nor a codec missing
    here), its mend changes the input, which a resume then refuses: the record says so
    (:data:`~pipeline.store.ledger.STOP_INPUT`), and they say `run --overwrite` after the mend
    (h86f: "mend that, then `run --resume` finishes it", which every mend made false)."""
    ledger = plan.sink.ledger
    if ledger is None:
        return
    with contextlib.suppress(Exception):
        ledger.check_held()  # never into another run's record, that took the lock since
        manifest = ledger.read_manifest()
        if manifest is None or fields_edited(manifest):
            return
        # a line that names nothing to mend (h86c): the failure's field ``resumes``
        mend = failure.data.get("resumes") is not True
        # a refusal of the input's own data: mended in the input, which a resume refuses
        # then (h86f); a store's refusal to give it is mended elsewhere (HTTP 500: resumed)
        rewrites = isinstance(failure, InputError) and failure.data.get("rewrites_input") is True
        _write_stop(ledger, manifest, Stop(str(failure), mend, rewrites))


def clear_stop(plan: Plan) -> Stop | None:
    """Drop the refusal the last run stopped on from ``plan``'s run record
    (:func:`record_stop`), as a resume begins, its lock held: what stops it is this run's
    to say (an interrupt of it, a crash, or its own refusal). That refusal, or None where
    the record kept none (nothing written then)."""
    ledger = plan.sink.ledger
    manifest = ledger.read_manifest() if ledger is not None else None
    stop = stop_of(manifest)
    if ledger is None or manifest is None or stop is None or fields_edited(manifest):
        return stop
    ledger.check_held()
    _write_stop(ledger, manifest, None)
    return stop


def _write_stop(ledger: Ledger, manifest: dict[str, Any], stop: Stop | None) -> None:
    """Write the run record ``manifest`` again keeping ``stop`` as the refusal its run stopped
    on (:data:`~pipeline.store.ledger.STOPPED`, and :data:`~pipeline.store.ledger.STOP_RESUMES`
    where its line names nothing to mend, :data:`~pipeline.store.ledger.STOP_INPUT` where its
    mend changes the input), or none where ``stop`` is None
    (:func:`record_stop`, :func:`clear_stop`), its ``check`` made again where it holds one
    (an earlier version's record, with none, gets none)."""
    dropped = ("check", STOPPED, STOP_RESUMES, STOP_INPUT)
    kept = {k: v for k, v in manifest.items() if k not in dropped}
    if stop is not None:
        kept[STOPPED] = stop.line
        if not stop.mend:
            kept[STOP_RESUMES] = True
        elif stop.input:
            kept[STOP_INPUT] = True
    ledger.write_manifest(with_check(kept) if "check" in manifest else kept)


def refused_now(refusal: PipelineError) -> str:
    """``run --dry-run``'s "output now" row where the run refuses (:func:`run_now`'s, for
    ``refusal``): what is at the output, where the refusal says (its ``status``), and the
    refusal, which names the fix."""
    there = _NOW.get(str(refusal.data.get("status")))
    return f"{there + '; ' if there else ''}this run is refused: {refusal}"


# --------------------------------------------------------------------------------------------
# Creating the output, and marking it complete.


def attributes(plan: Plan, status: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The output's ``pipeline`` attribute: ``status``, what made it, its fingerprint and
    identity, and ``extra``."""
    doc = {
        "status": status,
        "version": __version__,
        "source": {
            # where the input is, resolved as the run read it (a password masked): the
            # config's own text, relative to where the command ran, had been written
            # ('in.zarr'), which names no store to whoever opens the output elsewhere (h81a)
            "store": plan.input.location.said(),
            "array": plan.config.input.array,
            "shape": list(plan.input.shape),
            "dtype": str(plan.input.dtype),
        },
        "stages": [s.describe() for s in plan.chain],
        "integer_overflow": plan.config.integer_overflow,
        "backend": plan.backend,
        "encoded_on": plan.encode_on,
        "fingerprint": plan.fingerprint(),
        # what the fingerprint is made of: once the run record is gone, a resume of a complete
        # output made from another config or input can still name what changed
        "identity": plan.identity,
    }
    if plan.carried.frame and plan.carried.variable is not None:
        # what a later --overwrite removes (xarray's append keeps an array's old dtype,
        # attributes and size, and a coordinate the input no longer has would stay attached)
        doc["coordinates"] = list(plan.carried.variable.coords)
    doc.update(extra or {})
    return arrays.record_attribute(with_check(doc))


def folders_to_make(plan: Plan) -> list[str]:
    """The local folders that taking the output's lock creates, read before it is taken
    (:meth:`~pipeline.store.ledger.Ledger.folders_to_make` of the output's lock): what
    :func:`~pipeline.store.ledger.remove_if_empty` may remove, and nothing else."""
    return Ledger(plan.output.location, plan.output.path).folders_to_make()


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def group_attributes(
    plan: Plan,
) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """The attributes a fresh start gives the output's group, those of them it gives from the
    input's group, and those earlier writes of this output carried there: (all, carried,
    before); ({}, {}, []) for an output written as an array alone.

    The group's own attributes stay (a user's group written into with ``--overwrite`` kept
    none: xarray's append mode puts the written Dataset's in place of a group's); those this
    output carried there before, as its records say (``group_attributes``, in its ``pipeline``
    attribute or the run record of a run stopped while creating it; ``group_before``, what
    such a stopped run took as carried before it, once the output's own record was gone), are
    the input's now (:func:`pipeline.store.datasets.merged_group_attributes`). An output of a
    version that recorded none gave its group the input's attributes: those of the group's
    that the input has are taken as carried."""
    group = output_group(plan)
    variable = plan.carried.variable
    if group is None or variable is None:
        return {}, {}, []
    existing = datasets.group_attributes(plan.output.location.zarr_store(read_only=True), group)
    source = datasets.group_attributes(
        plan.input.location.zarr_store(read_only=True), variable.group
    )
    ledger = plan.sink.ledger
    records = [own_record(plan), (ledger.read_manifest() if ledger is not None else None) or {}]
    before: list[dict[str, Any]] = []
    for doc in records:
        for key in ("group_attributes", "group_before"):
            got = doc.get(key)
            if key == "group_before" and isinstance(got, list):
                before += [b for b in got if isinstance(b, dict) and b]
            elif isinstance(got, dict) and got:
                before.append(got)
    if not before and any(
        "coordinates" in doc and "group_attributes" not in doc for doc in records
    ):  # a Dataset output of an earlier version's
        before = [{k: v for k, v in existing.items() if k in source}]
    every, carried = datasets.merged_group_attributes(existing, before, source)
    return every, carried, before


def create(plan: Plan) -> Aside:
    """Create the output, replacing what was there except the run record (which holds the lock
    this run has taken). The record of what this run computes is written first (with what a
    rerun after a stop needs to do what this run does: the coordinates it replaces, the group
    attributes earlier writes carried); then the old metadata goes (and the consolidated
    copies above it), so a replacement cut short never leaves an array that claims to be
    complete, then its chunks; the new one is created marked incomplete, after the Dataset
    around it (the group's attributes, rewritten in place, and coordinates, written by
    xarray), with the input's dimension names and attributes. All of it under the group's
    lock (:func:`pipeline.store.ledger.group_lock`): another run writing another variable
    into the same group replaces the coordinates and rewrites the group's metadata too.
    First asks that the run's lock is still its own (``Ledger.check_held``): what is there is
    another run's where its lock was removed, and taken, since this run took it (a run
    stopped between its lock and its create had replaced that run's complete output, h77d);
    and, on a local file system, that the output at its path is still the folder holding
    that lock once all is written (``Ledger.held_folder``), else the run stops there; what
    it writes and deletes, its own and zarr-python's and xarray's writes, goes through that
    store's folder held open (``Ledger.held_store``), never into another put at its path
    meanwhile (h79c: the check after had found out a replacement whose chunks were deleted).
    The old chunks of a local output are moved into the run record, and deleted there while
    the run computes (:func:`_set_aside`): what is returned, whose ``finish`` the run waits
    for before it marks the output complete; a failure here once they are set aside waits
    for their deletion before it is raised (and the run gives up its lock)."""
    assert plan.sink.ledger is not None
    aside = Aside()
    try:
        with (
            plan.sink.ledger.held_store() as (folder, store),
            group_lock(plan.output.location, output_group(plan)),
        ):
            aside = _create(plan, store, folder)
    except BaseException:
        # refused as the held folder's second check refuses (the output moved meanwhile):
        # the deletion ends before the run gives up its lock, as in :func:`_create`
        with contextlib.suppress(BaseException):
            aside.finish()
        raise
    return aside


def _hard_linked(folder: str) -> set[tuple[int, int]]:
    """(device, inode) of each file below the local ``folder`` (links not followed, the run
    record's folder left out) that has other links: what deleting it changes of another
    store's files (their status-change time and link count, never a byte)."""
    found = set()
    for dirpath, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if d != RECORD]
        for name in files:
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(dirpath, name))
                if st.st_nlink > 1:
                    found.add((st.st_dev, st.st_ino))
    return found


def _set_aside(plan: Plan, store: Location, folder: Folder | None, unlinked: set) -> Aside:
    """The old output's entries (its metadata documents deleted already) moved into its run
    record's folder and deleted there on a thread while the run computes
    (:meth:`Folder.set_aside`), where that keeps all that deleting them here keeps: a local
    output (``folder``, the array's, held open), none of whose files shares its inode with
    another file (``unlinked`` empty: deleting those changes the input's status-change times,
    which the record then says as they are now), on a disk with room for the new output
    beside the old one (its elements' bytes, uncompressed: a replacement that fitted once
    the old chunks were gone still does). Nothing moved otherwise: the caller deletes them.
    Deleting them had been the whole of a replacing run's ``prepare`` phase: 0.15 s of
    0.17 on the H200 host (a 7.27 GB output on tmpfs), against 0.02 s for a new one."""
    if folder is None or unlinked:
        return Aside()
    names = [n for n in store.list(plan.output.path) if n != RECORD]
    if not names:
        return Aside()
    need = int(np.prod(plan.output.shape, dtype=np.int64)) * plan.output.dtype.itemsize
    try:
        free = os.statvfs(folder.fd)
    except OSError:
        return Aside()
    if free.f_bavail * free.f_frsize < need:
        return Aside()
    return folder.set_aside(names, Ledger.ASIDE, plan.output.location.url)


def _create(plan: Plan, store: Location, folder: Folder | None = None) -> Aside:
    """:func:`create`'s steps, the output and its run record reached through ``store``
    (``Ledger.held_store``'s; what is read of the input by its own), its folder held open
    (``folder``; None on an object store); what it set aside (:func:`_set_aside`)."""
    assert plan.sink.ledger is not None
    o = dataclasses.replace(plan.output, location=store)
    ledger = dataclasses.replace(plan.sink.ledger, location=store)
    group = output_group(plan)
    replaced = replaced_coordinates(plan)  # read before the records that name them go
    found = found_coordinates(plan)  # and the user's coordinates this run writes again
    kept = _kept_coordinates(plan, found)  # those of them there now: left as they are
    group_attrs, carried_attrs, before = group_attributes(plan)  # so are these, and the group's
    listed = (  # coordinates xarray listed on the group (its encoding, not an attribute)
        datasets.global_coordinates(o.location.zarr_store(read_only=True), group)
        if group is not None
        else ()
    )
    consolidated = group is not None and datasets.has_consolidated(
        o.location.zarr_store(read_only=True), group
    )  # the group's other outputs are complete only where its consolidated copy says so
    parent = o.path.rpartition("/")[0]
    above = datasets.consolidated_groups(o.location.zarr_store(read_only=True), parent)
    # and those a run stopped here before had dropped (F7: a rerun from an unconsolidated
    # input found none, and left the group and the root without the copies they had)
    had = list(dict.fromkeys([*above, *_consolidated_before(ledger.read_manifest(), parent)]))
    # the groups between the store and a group enclosing it are written first (h86d:
    # `output.store: out.zarr/a/b` wrote no `a`, and out.zarr's readers never listed it)
    _write_groups_between(plan)
    # the groups enclosing the store with copies that list it (output.store: out.zarr/sub,
    # brk59: left stale), by how many groups up; and those a stopped run here had dropped
    outside = _enclosing_consolidated(plan)
    outside_had = sorted({*outside, *_enclosing_before(ledger.read_manifest())})
    ledger.clear_done(plan.block_grid)
    ledger.clear_aside()  # an earlier run's, stopped before it was deleted
    # one time for both records of the run (h60c: each had taken the clock, a second apart
    # where a second began between them)
    started = _now()
    manifest: dict[str, Any] = {
        "fingerprint": plan.fingerprint(),
        "identity": plan.identity,
        "version": __version__,
        "started": started,
    }
    if replaced:  # the coordinates this run writes, or wrote before it stopped
        manifest["coordinates"] = replaced
    if found:  # those of them it found there, the user's: a rerun after a stop from an input
        # without them must not delete them as its own
        manifest["found"] = found
    if consolidated or had:  # the groups with consolidated copies, which go next and come back
        manifest["consolidated"] = list(dict.fromkeys([*([parent] if consolidated else []), *had]))
    if outside_had:  # and those of groups enclosing the store, by folders up
        manifest["consolidated_enclosing"] = outside_had
    if group is not None:  # the group's attributes this run gives it from the input's
        manifest["group_attributes"] = carried_attrs
        # and those earlier writes of this output carried there, which the output's own
        # record (deleted next) said: a rerun after a stop tells them from the group's own as
        # this run does (F2: taken for the group's own, a changed input's older values stayed)
        manifest["group_before"] = before
    # the record says what is being made before anything old goes: a replacement stopped
    # while it went leaves the old chunks as this pipeline's 'remains', which --overwrite
    # clears (with no record left, the folder of chunks had become one it never deletes, and
    # only a person could clear it: helper-39)
    # naming the record its markers carry: a marker of another run's record, written into
    # this one after its lock was taken over, marks nothing of this run's (h83f)
    manifest = ledger.new_record(manifest, plan.block_grid)
    ledger.write_manifest(with_check(manifest))
    # what of the output shares its inodes with other files, the input's among them (h72c)
    unlinked = _hard_linked(o.location.join(o.path)) if o.location.is_local else set()
    for meta in ("zarr.json", ".zarray", ".zattrs"):
        o.location.delete(_key(o.path, meta))
    # no consolidated copy says the old array is there (complete) while its chunks go; the
    # group stays whole and readable meanwhile, its other variables and coordinates with it
    # (helper-44: a Ctrl-C here left a Dataset with no group metadata and no coordinates)
    for g in above:
        datasets.drop_consolidated(o.location, g)
    enclosing = arrays.enclosing_groups(o.location)
    for up in outside:
        try:
            datasets.drop_consolidated(enclosing[up - 1][0], "")
        except Exception as e:
            refused = _enclosing_refused(plan, enclosing[up - 1][0], e, complete=False)
            if refused is None:
                raise
            raise refused from None
    # the old chunks go from the array's keys now, and from the disk while the run computes
    aside = _set_aside(plan, o.location, folder, unlinked)
    try:
        arrays.clear_array(o.location, o.path, keep=RECORD)  # what was not set aside
        # an output that shared its files' inodes with the input (`cp -al in.zarr out.zarr`) was
        # deleted by unlinking them, which changed the input's status-change times, not its
        # bytes: the record says the input as it is now, else its end, or a resume, had found
        # "the input changed" (h72c)
        if plan.input_relinked(unlinked):
            manifest.update(fingerprint=plan.fingerprint(), identity=plan.identity)
            ledger.write_manifest(with_check(manifest))

        extra: dict[str, Any] = {"group_attributes": carried_attrs} if group is not None else {}
        fill = output_fill(plan)
        # what the output's fill value is: its record says so, as an earlier version's wrote 0
        extra["fill_value"] = arrays.fill_said(fill)
        # and its _FillValue attribute, xarray's (NaN on floats): an earlier version wrote none
        fill_attr = fill_attribute(plan)
        extra["fill_attribute"] = fill_attr.get("_FillValue")
        if group is not None and plan.carried.variable is not None:
            # the coordinates this output owns: those it creates, never one it found there (F:
            # claimed, a later --overwrite from an input without it deleted the user's array)
            extra["coordinates"] = [n for n in plan.carried.variable.coords if n not in found]

        def frame_and_array() -> None:
            # the group's zarr.json stays: xarray rewrites its attributes in place, in one atomic
            # write, so a stop or a failure (a full disk) before that leaves the group as it was,
            # never without its attributes (F2: deleted first, a stop there lost the user's and
            # other outputs' attributes for good, and a rerun wrote the input's alone); v2
            # documents beside it are the user's and stay: a group holding them was refused
            # (check_formats_agree; they had been deleted here, even without --overwrite)
            for name in replaced:  # arrays, or a stopped write's remains (check_frame_fits)
                if name in kept:  # the user's, equal to the input's: never deleted
                    continue
                key = _key(group or "", name)
                node = arrays.node_type(o.location, key)
                if node == "array" or (node == "none" and arrays.only_remains(o.location, key)):
                    o.location.delete(key, recursive=True)
            if group is not None:
                assert plan.carried.variable is not None
                datasets.write_frame(
                    plan.input.location.zarr_store(read_only=True),
                    plan.carried.variable,
                    o.location.zarr_store(read_only=False),
                    group,
                    group_attrs,
                    listed,
                    kept=tuple(kept),
                )
            arrays.create_output(
                o.location,
                o.path,
                output_layout(plan),
                {
                    **plan.carried.attrs,
                    **fill_attr,
                    **attributes(plan, "incomplete", {"started": started, **extra}),
                },
                overwrite=False,
                dimension_names=plan.carried.dimension_names,
                fill=fill,
            )
            _consolidate(plan, consolidated, had, outside_had, store)

        # the group's metadata and coordinates go and come back in one step, which a Ctrl-C does
        # not cut (it takes effect once the step is done: a short one, coordinates are small)
        waiting.call(frame_and_array, "pipeline-create-output", to_the_end=True)
    except BaseException:
        # a failure (or a Ctrl-C) once the old chunks were set aside: their deletion ends
        # before the run gives up its lock, as after a failure while it computes (the runner
        # gets this Aside only once create returns: the thread had gone on deleting in the
        # record of a lock given up, which another run may take meanwhile)
        with contextlib.suppress(BaseException):
            aside.finish()
        raise
    return aside


def _consolidated_before(manifest: dict[str, Any] | None, parent: str) -> list[str]:
    """The groups at or above ``parent`` (the output's) that a run record says had
    consolidated metadata before that run dropped it (``consolidated``; [] where it says
    none, or no record)."""
    recorded = (manifest or {}).get("consolidated")
    if not isinstance(recorded, list):
        return []
    parts = parent.split("/") if parent else []
    groups = {"/".join(parts[:depth]) for depth in range(len(parts) + 1)}
    return [g for g in recorded if isinstance(g, str) and g in groups]


def check_consolidatable(plan: Plan) -> None:
    """Refuse a fresh start (or ``--overwrite``) that would drop a consolidated copy of
    members' metadata, or write one at its end, where it could not write it again: the
    store's, or that of a group enclosing the store (``output.store: out.zarr/sub``), holds a
    member whose metadata zarr-python cannot read (:func:`_check_consolidatable`). A resume,
    which writes the copies again at its end too, is refused alike before its blocks (it had
    computed them all, then failed with the member's bare JSONDecodeError). Reads only,
    before anything is written; the groups as :func:`_create` finds them."""
    o = plan.output
    group = output_group(plan)
    store = o.location.zarr_store(read_only=True)
    parent = o.path.rpartition("/")[0]
    consolidated = group is not None and datasets.has_consolidated(store, group)
    manifest = plan.sink.ledger.read_manifest() if plan.sink.ledger is not None else None
    above = datasets.consolidated_groups(store, parent)
    if plan.carried.consolidate or consolidated or above or _consolidated_before(manifest, parent):
        _check_consolidatable(o.location, "", o.path)
    outside = {*_enclosing_consolidated(plan), *_enclosing_before(manifest)}
    if outside:
        enclosing = arrays.enclosing_groups(o.location)
        for up in sorted(outside):
            if up <= len(enclosing):
                holder, tail = enclosing[up - 1]
                _check_consolidatable(holder, tail, f"{tail}/{o.path}" if o.path else tail)


def _check_consolidatable(loc: Location, store_path: str, output: str) -> None:
    """Refuse a store (``loc``; ``store_path``: the output's store's path in it, '' for the
    store itself) that a run could not consolidate again at its end
    (:func:`pipeline.store.datasets.unconsolidatable`, the output array at ``output`` passed
    by: the run replaces it): a member whose metadata zarr-python cannot read. The run had
    failed at its end with that member's bare error after dropping the copy, which was lost
    for good. OutputError: ``output``, ``member``, ``reason``."""
    found = datasets.unconsolidatable(loc.zarr_store(read_only=True), "", output)
    if found is None:
        return
    node, reason = found
    member = loc.join(node) if node else loc.url
    where = loc.join(output) if output else loc.url
    raise OutputError(
        f"cannot write the output at {name_shown(where)}: {name_shown(member)} holds Zarr metadata "
        "that "
        "zarr-python "
        f"cannot read ({reason}), and the run writes again the consolidated copy of the "
        f"members' metadata {'of ' + name_shown(loc.url) if not store_path else 'around it'}, "
        "which reads "
        "every member's: mend or remove that member, or choose another output.store",
        output=where,
        member=member,
        reason=reason,
    )


def _enclosing_consolidated(plan: Plan) -> list[int]:
    """The groups enclosing the output's store (:func:`pipeline.store.arrays.enclosing_groups`)
    that have consolidated metadata of their own, by how many folders up (1: the folder that
    holds the store)."""
    found = []
    for up, (holder, _) in enumerate(arrays.enclosing_groups(plan.output.location), 1):
        if datasets.consolidated_groups(holder.zarr_store(read_only=True), "") == [""]:
            found.append(up)
    return found


def _enclosing_before(manifest: dict[str, Any] | None) -> list[int]:
    """The groups enclosing the store whose consolidated copies a run record says that run
    dropped (``consolidated_enclosing``, by folders up; [] where none, or no record)."""
    recorded = (manifest or {}).get("consolidated_enclosing")
    if not isinstance(recorded, list):
        return []
    return [n for n in recorded if isinstance(n, int) and not isinstance(n, bool) and n > 0]


def _consolidate(
    plan: Plan,
    also: bool = False,
    had: list[str] | None = None,
    outside: list[int] | None = None,
    store: Location | None = None,
) -> None:
    """Consolidate the metadata of the group that holds the output (and the store root's)
    where it gets consolidated metadata: the input's group has it, or ``also`` (the output
    group had some before this run replaced its metadata), or it or a group above has some
    now; and again that of every group above that has its own: what ``xr.open_zarr`` reads.
    Kept current, it still lists, as they are, the other members of the group, which are
    complete only once it does (a run from an unconsolidated input into their group had left
    them claiming to be incomplete, with no run to resume), and a reader of a group above sees
    the output as it is (an array written alone into a consolidated group once left its
    readers with the old shape and dtype). ``store``: the output's store as
    ``Ledger.held_store`` reaches it, through its folder held open, so that zarr-python's
    writes by a path go into it wherever it is moved (None: by its path)."""
    # the groups between the store and a group enclosing it, as a first run writes them
    # (_create), written again where one was removed since: a resume, or one of a complete
    # output, had written the enclosing group's copy without the output, and verify's advice
    # (`run --resume`) never ended (h86g)
    _write_groups_between(plan)
    parent = plan.output.path.rpartition("/")[0]
    location = store or plan.output.location
    zarr_store = location.zarr_store(read_only=False)
    above = list(dict.fromkeys([*(had or []), *datasets.consolidated_groups(zarr_store, parent)]))
    if plan.carried.consolidate or also or above:
        for group in dict.fromkeys([parent, *above]):
            datasets.consolidate(zarr_store, group)
    # then the groups enclosing the store with copies of their own (or that ``outside``, by
    # folders up, says had one before this run dropped it), nearest first: their copies list
    # what the store holds (brk59: `output.store: out.zarr/sub` left out.zarr's stale, and
    # xr.open_zarr of it did not see the new array)
    wanted = {*(outside or []), *_enclosing_consolidated(plan)}
    for up, (holder, _) in enumerate(arrays.enclosing_groups(location), 1):
        if up in wanted:
            try:
                datasets.consolidate(holder.zarr_store(read_only=False), "")
            except Exception as e:
                refused = _enclosing_refused(plan, holder, e, complete=True)
                if refused is None:
                    raise
                raise refused from None


def _write_groups_between(plan: Plan) -> None:
    """:func:`pipeline.store.arrays.write_groups_between` of the output's store, a write the
    store refuses (a folder that cannot be written: :func:`check_writable` refuses a local
    one before the run writes anything; an object store's prefix) said in the line of the
    output's own refused writes (:meth:`~pipeline.store.location.Location.write_refused`),
    not the file system's bare PermissionError (h86d)."""
    try:
        arrays.write_groups_between(plan.output.location)
    except OSError as e:
        if storage_failure(e) is None:
            raise
        raise plan.output.location.write_refused(e) from None


def _enclosing_refused(
    plan: Plan, holder: Location, e: BaseException, complete: bool
) -> OutputError | None:
    """The line of a group enclosing the output's store (``holder``) whose consolidated
    metadata could not be dropped as the output is made (:func:`_create`) or written again
    at the run's end (``complete``: :func:`_consolidate`), the store's answer ``e``
    (:func:`~pipeline.errors.storage_failure`: a folder of another user's, read-only):
    naming that group, which is no store of the config's, and the fix, where it had been "a
    store answered PermissionError: ...", naming none (h81c). At the end the output is
    complete (its attributes say so), that copy alone stale, which `run --resume` writes
    again. None where ``e`` is no store's answer."""
    failure = storage_failure(e)
    if failure is None:
        return None
    fix = holder.answer_fix(failure, "output")
    output = plan.output.location.shown(plan.output.path)
    if complete:
        call = datasets.consolidate_call(holder, "")
        said = (
            f"the output {output} is complete, but the group {holder.shown()} that holds its "
            f"store answered {failure} to the write of its consolidated metadata, which lists "
            f"the output: {fix}; then `run --resume` writes that copy again (or `{call}`), "
            "recomputing nothing"
        )
    else:
        said = (
            f"the group {holder.shown()} that holds the output's store answered {failure} "
            f"where the run drops its consolidated metadata while it makes the output {output} "
            f"(the run's end writes it again, listing the output): {fix}; then run again"
        )
    return OutputError(
        said,
        output=plan.output.location.join(plan.output.path),
        store=holder.said(),
        reason=failure,
        status="complete" if complete else "incomplete",
    )


def mark_complete(plan: Plan, whole: dict[str, int], compute_seconds: float) -> None:
    """Say in the output's attributes that it is complete, with what it holds (``whole``: the
    counts of every block, however many runs wrote them), and in its group's consolidated
    metadata where it has some (the output is complete only once both say so: see
    :func:`output_state`), then drop the run record."""
    assert plan.sink.ledger is not None
    # "complete" is said of this run's output alone (h76d), through its folder (h78a)
    with plan.sink.ledger.held_store() as (folder, store):
        _mark_complete(plan, whole, compute_seconds, folder, store)
    try:
        plan.sink.ledger.clear(plan.block_grid)
    except OutputError as e:  # every byte is written and the output says so: only a leftover
        log.warning("the output is complete, but its run record stays: %s", e)


def _mark_complete(
    plan: Plan,
    whole: dict[str, int],
    compute_seconds: float,
    folder: Folder | None,
    store: Location | None = None,
) -> None:
    """:func:`mark_complete`'s writes, inside ``Ledger.held_store``: the output's attributes
    through its ``folder`` (None: by its path), once what was read of it by its path (its
    files, its records) is found its own still (``Ledger.check_at_path``), then its
    consolidated copies, through its ``store`` held (None: by its path)."""
    o = plan.output
    ledger = plan.sink.ledger
    assert ledger is not None
    summary = {
        "blocks": plan.n_blocks,
        "bytes_in": whole.get("elements", 0) * plan.input.dtype.itemsize,
        "bytes_out": whole.get("elements", 0) * plan.output.dtype.itemsize,
        **{k: whole.get(k, 0) for k in NONFINITE},
        "seconds": round(compute_seconds, 3),
    }
    # what its files are (one listing): a complete output whose chunk is deleted or cut short
    # since reads as the fill value or fails, which only a sampled verify would have seen
    stored = arrays.stored_units(o.location, o.path, arrays.open_zarr_array(o.location, o.path))
    done: dict[str, Any] = {"finished": _now(), "summary": summary, "stored": stored}
    created = _created(plan)
    carried_attrs = created.get("group_attributes")
    if isinstance(carried_attrs, dict):  # create's record, which the complete one keeps
        done["group_attributes"] = carried_attrs
    if isinstance(created.get("coordinates"), list):  # and the coordinates it owns (a
        # resumed run had claimed those it found there too)
        done["coordinates"] = created["coordinates"]
    if "fill_value" in recorded_run(plan):  # the fill value create wrote: an earlier
        # version's, resumed, wrote 0 and says nothing
        done["fill_value"] = arrays.fill_said(output_fill(plan))
    if "fill_attribute" in recorded_run(plan):  # and its _FillValue attribute (or none)
        done["fill_attribute"] = fill_attribute(plan).get("_FillValue")
    if folder is not None:  # what was read by the path above (its files, its record): of
        ledger.check_at_path(folder)  # the output held, not of one put there since
    # under the group's lock: another run's consolidation, begun before this update and
    # written after it, had put this output's "incomplete" back into the consolidated copy
    with group_lock(o.location, output_group(plan)):
        # the lock checked again as one step with the write: through the folder under its OS
        # lock, or on S3 written only while the document is the version read before that
        # check; a run taken over there (paused past the lease) had marked the new holder's
        # output complete, with its own metadata (h84c)
        check = functools.partial(ledger.check_writing, folder)
        arrays.update_attributes(
            o.location, o.path, attributes(plan, "complete", done), folder, check
        )
        _consolidate(plan, store=store)


def _created(plan: Plan) -> dict[str, Any]:
    """What :func:`create` recorded of the output it made (``group_attributes``, the group
    attributes it carried; ``coordinates``, those it owns), for :func:`mark_complete` to keep:
    from its run record, which a resume took whole (:func:`stale_parts`), where it holds its
    ``check``; the output's own record, not checked by a resume, had been taken, an edit of
    it (the user's array named among its coordinates) kept, checked again, in the complete
    record (h57a). Where the run record is an earlier version's, with no ``check``:
    :func:`_created_by_earlier_version`."""
    ledger = plan.sink.ledger
    manifest = ledger.read_manifest() if ledger is not None else None
    if not isinstance(manifest, dict):
        return recorded_run(plan)
    if "check" not in manifest:
        return _created_by_earlier_version(plan, recorded_run(plan), manifest)
    variable = plan.carried.variable
    if output_group(plan) is None or variable is None:
        return {}
    found = set(_names(manifest.get("found")))
    return {
        "group_attributes": manifest.get("group_attributes"),
        "coordinates": [n for n in variable.coords if n not in found],
    }


def _created_by_earlier_version(
    plan: Plan, recorded: dict[str, Any], manifest: dict[str, Any]
) -> dict[str, Any]:
    """:func:`_created` where both records of a stopped run are an earlier version's, with
    no ``check`` to tell an edit of either (``recorded``: the output's ``pipeline`` record,
    ``manifest``: its run record, which wrote the same ``group_attributes`` and the
    variable's coordinates but those it ``found``): only what both say, so that an edit of
    one naming the user's arrays or group attributes is not kept, checked, in the complete
    record, for a later ``--overwrite`` to delete them (h58b: h57a's fault, for the outputs
    of earlier releases). ``recorded`` as it is where the run record is older still (no
    ``group_attributes``) or the output is not in a group."""
    variable = plan.carried.variable
    theirs = manifest.get("group_attributes")
    if output_group(plan) is None or variable is None or not isinstance(theirs, dict):
        return recorded
    agreed = dict(recorded)
    carried = recorded.get("group_attributes")
    if isinstance(carried, dict):
        agreed["group_attributes"] = {
            k: v for k, v in carried.items() if k in theirs and theirs[k] == v
        }
    if isinstance(recorded.get("coordinates"), list):
        found = set(_names(manifest.get("found")))
        agreed["coordinates"] = [
            n for n in _names(recorded["coordinates"]) if n in variable.coords and n not in found
        ]
    return agreed


def drop_leftover_record(plan: Plan) -> None:
    """Remove the run record a complete output still holds: the run that completed it was
    stopped (a kill, a Ctrl-C) after it marked the output complete but before the record was
    gone (helper-42: ``--resume`` said "nothing to do" and left it). Only under the output's
    lock, so a run that has just begun to replace the output keeps its record; a lock that
    another run holds, or a record that cannot be removed, is left (a warning says so)."""
    ledger = plan.sink.ledger
    if ledger is None or not ledger.exists():
        return
    try:
        ledger.acquire()
    except Exception:  # another run is at it (its record is its own), or no write here
        return
    try:
        state = output_state(plan)
    except BaseException as e:  # a Ctrl-C too: the lock given up, the interrupt raised on
        ledger.give_up(e)
        if not isinstance(e, Exception):
            raise
        log.warning("the output is complete, but its run record stays: %s", e)
        return
    if state != "complete":
        ledger.give_up()  # a lock that stays is said in a warning
        return
    try:
        ledger.clear(plan.block_grid)  # its line says the lock stays where it does
    except Exception as e:  # the output is whole either way: a leftover is only untidy
        log.warning("the output is complete, but its run record stays: %s", e)


# --------------------------------------------------------------------------------------------
# What an output was made from, against a plan.


def output_fill(plan: Plan) -> np.ndarray:
    """The fill value a run writes into the output's metadata: the chain of the input's
    (:func:`pipeline.store.arrays.chained_fill`), a 0-d array of the output's dtype."""
    return arrays.chained_fill(
        plan.input.fill_bytes, plan.input.dtype, plan.source.unpacking, plan.chain
    )


def recorded_fill(plan: Plan) -> np.ndarray | None:
    """The fill value the output's metadata should hold, as its record says the run wrote it:
    :func:`output_fill` where it says ``fill_value``; None (zero) where it does not (an
    earlier version's output, which wrote zarr-python's default)."""
    return output_fill(plan) if "fill_value" in recorded_run(plan) else None


def fill_attribute(plan: Plan) -> dict[str, str]:
    """The output's ``_FillValue`` attribute as a run writes it, xarray's for the output's
    dtype (:func:`pipeline.ops.cf.output_fill_attribute`: NaN on a float variable xarray
    reads): {"_FillValue": text}, or {} for none."""
    text = cf.output_fill_attribute(plan.output.dtype, plan.carried.frame)
    return {} if text is None else {"_FillValue": text}


def recorded_attributes(plan: Plan) -> dict[str, Any]:
    """The output's own attributes besides its ``pipeline`` record, as the run that wrote it
    wrote them: the input's it carries and, where its record says it wrote one
    (``fill_attribute``), its ``_FillValue`` (:func:`fill_attribute`; an earlier version's
    output holds none, and its record says nothing)."""
    wrote = fill_attribute(plan) if "fill_attribute" in recorded_run(plan) else {}
    return {**plan.carried.attrs, **wrote}


def recorded_run(plan: Plan) -> dict[str, Any]:
    """What the output's attributes record of the run that wrote it (``pipeline``: status,
    version, fingerprint, identity, ...); {} when they record nothing readable."""
    try:
        doc = arrays.run_record(arrays.read_attributes(plan.output.location, plan.output.path))
    except Exception:
        return {}
    return doc or {}


def own_record(plan: Plan) -> dict[str, Any]:
    """:func:`recorded_run`, as a fresh start takes it (the coordinates and group attributes
    it says this output wrote in its group, which that start replaces): {} where its fields
    were edited since (:func:`pipeline.planning.plan.fields_edited`) and the run record of
    a stopped run is there, whole, which says all that it did, and more (that run read it
    before it wrote its own). Where no such run record is, :func:`check_records_whole`
    refuses the start."""
    recorded = recorded_run(plan)
    if not fields_edited(recorded):
        return recorded
    ledger = plan.sink.ledger
    manifest = ledger.read_manifest() if ledger is not None else None
    return {} if manifest is not None and not fields_edited(manifest) else recorded


def check_records_whole(plan: Plan) -> None:
    """Refuse a fresh start (or ``--overwrite``) that would take what an edited record says
    (:func:`pipeline.planning.plan.fields_edited`: its fields are not those its ``check``
    was taken of): the run record of a stopped run (which arrays and attributes of the group
    that run wrote, or found there, and which consolidated copies it dropped), or, for an
    output in a group with no such run record, the output's ``pipeline`` record (the
    coordinates and group attributes it wrote). What they say decides what the start
    deletes and replaces (h57a: a record edited to name the user's array, taken, had the
    start delete it, and the user's group attribute). OutputError, before anything is
    written: fields ``output``, ``record`` (which), ``changed`` ['record']."""
    where = plan.output.location.join(plan.output.path)
    ledger = plan.sink.ledger
    manifest = ledger.read_manifest() if ledger is not None else None
    which = None
    if fields_edited(manifest):
        which = (
            f"its run record ({RECORD}/run.json, of a stopped run) was edited since that run "
            "wrote it, so which arrays and attributes of its group, and which consolidated "
            "copies above it, that run wrote or dropped"
        )
    elif output_group(plan) is not None and own_record(plan) and fields_edited(own_record(plan)):
        which = (
            "its record of the run that made it (its `pipeline` attribute) was edited since "
            "the run wrote it, so which arrays and attributes of its group that run wrote"
        )
    elif _earlier_records_disagree(plan, manifest):
        which = (
            f"its run record ({RECORD}/run.json, of a stopped run) and its `pipeline` "
            "attribute, as an earlier release wrote them (with no `check`), do not say the "
            "same of the run, one edited since, so which arrays and attributes of its group "
            "that run wrote"
        )
    if which is None:
        return
    raise OutputError(
        f"cannot write {name_shown(where)}: {which}, which a fresh start replaces, cannot be told: "
        f"restore the record, or remove {name_shown(where)} yourself, after which `run "
        "--overwrite` "
        "writes it, taking what its group holds as the group's own",
        output=where,
        record="run record" if which.startswith("its run record") else "pipeline attribute",
        changed=["record"],
    )


def _earlier_records_disagree(plan: Plan, manifest: Any) -> bool:
    """Whether the run record (``manifest``) of a run an earlier release (3b41ad4) stopped
    while making an output in a group, and the output's ``pipeline`` record that run wrote
    (the same ``fingerprint``, and a ``started`` not before the run record's: that release
    took the time again as it made the output array, after the run record, a second later
    where a second began between the two; h60c: taken for records of two runs, they were
    not compared, the edit taken), both without a ``check``, do not say the same: other
    ``group_attributes``, or coordinates the output's record owns that the run record does
    not say the run wrote (its ``coordinates`` but those it ``found``). Such a run wrote
    both alike, so one was edited since (h58b: an edit of either, naming the user's array
    or attribute, taken, had ``run --overwrite`` delete it). False where either holds a
    ``check`` (:func:`check_records_whole` judges those) or they are not of one run (the
    output's record older than the run record: a run stopped before it removed the array
    an earlier run made)."""
    recorded = recorded_run(plan)
    if (
        output_group(plan) is None
        or not isinstance(manifest, dict)
        or "check" in manifest
        or "check" in recorded
        or not isinstance(manifest.get("group_attributes"), dict)
        or not _not_before(recorded.get("started"), manifest.get("started"))
        or recorded.get("fingerprint") != manifest.get("fingerprint")
    ):
        return False
    if recorded.get("group_attributes") != manifest["group_attributes"]:
        return True
    written = set(_names(manifest.get("coordinates"))) - set(_names(manifest.get("found")))
    return not set(_names(recorded.get("coordinates"))) <= written


def _not_before(later: Any, earlier: Any) -> bool:
    """Whether the time ``later`` (a record's ``started``, as :func:`_now` writes it: ISO
    8601, to the second, in UTC) is not before the time ``earlier``; False where either is
    not such a time."""
    try:
        return bool(dt.datetime.fromisoformat(later) >= dt.datetime.fromisoformat(earlier))
    except (TypeError, ValueError):  # not text, not a time, or one without its time zone
        return False


def stale_parts(recorded: dict[str, Any], plan: Plan, *, whole: bool) -> list[tuple[str, str]]:
    """What differs between the run that ``recorded`` describes (its ``fingerprint`` and
    ``identity``: from the run record, or the output's attributes) and ``plan``, as (part,
    words) pairs; [] when that run made what this plan makes.

    Where the output is does not matter (an output moved or copied holds the same bytes);
    ``whole``: the output is complete, so neither does how its work was split into blocks
    (its chunks and shards do). [('unrecorded', ...)] when the record cannot tell: an output
    written by a version that did not record its identity; [('record', ...)] when it was
    edited since (:func:`pipeline.planning.plan.record_edited`: what it says cannot be
    taken, h55b: an edit of its stages had been "the stages changed", and of its block
    nothing to do, where ``verify`` fails it)."""
    edited = record_edited(recorded)
    if edited is not None:
        return [("record", f"its record of the run that made it was edited since ({edited})")]
    if recorded.get("fingerprint") == plan.fingerprint():
        return []
    identity = recorded.get("identity")
    if isinstance(identity, dict):
        parts = _what_changed(identity, plan.identity, whole)
        if any(part == "input.coordinates" for part, _ in parts):
            since = _carried_since(recorded, plan, parts) if whole else None
            named = [] if since is not None else _frame_changes(recorded, plan)
            if since is not None:  # the release carries more, not the input changed (h83a)
                words = f"it {since}"
            elif named:  # what of it, where words name it
                words = f"the input changed what the output carries ({'; '.join(named)})"
            if since is not None or named:
                parts = [(p, words if p == "input.coordinates" else w) for p, w in parts]
        return parts
    by = f"pipeline {recorded.get('version', '?')}"
    if recorded.get("fingerprint"):
        return [
            (
                "unrecorded",
                "its fingerprint does not match this config, input and output location, and "
                f"{by}, which wrote it, did not record what it was made from (what changed "
                "cannot be named)",
            )
        ]
    return [
        (
            "unrecorded",
            "its attributes do not record what it was made from (an older pipeline wrote it): "
            "whether it matches this config and input cannot be told",
        )
    ]


def _frame_changes(recorded: dict[str, Any], plan: Plan) -> list[str]:
    """What of the input that a Dataset output carries differs from what its run carried
    (:func:`pipeline.store.datasets.frame_changes`: the group attributes ``recorded`` says it
    carried, the coordinates xarray reads otherwise in the output than in the input); [] for
    an output written alone, or where no such words name the change."""
    group, variable = output_group(plan), plan.carried.variable
    if group is None or variable is None:
        return []
    src = plan.input.location.zarr_store(read_only=True)
    dst = plan.output.location.zarr_store(read_only=True)
    try:
        coordinates = datasets.coordinates_differ(src, variable, dst, group)
        return datasets.frame_changes(
            src, variable.group, recorded.get("group_attributes"), coordinates
        )
    except Exception:  # words for a refusal already decided: never a failure of their own
        return []


#: The parts of :func:`_what_changed` that say the input array itself changed or moved.
_INPUT_ITSELF = ("input.location", "input.metadata", "input.data")


def _carried_since(
    recorded: dict[str, Any], plan: Plan, parts: list[tuple[str, str]]
) -> str | None:
    """:func:`pipeline.store.datasets.carried_since` of a complete Dataset output whose
    recorded coordinates' identity differs from the plan's (``parts``, :func:`_what_changed`'s,
    tell whether the input array itself is unchanged): the words of a release that carries
    coordinates the output lacks, not of an input changed; None otherwise, and where the input
    array itself changed too (its metadata or files: then the input changed, as said)."""
    group, variable = output_group(plan), plan.carried.variable
    if group is None or variable is None or any(part in _INPUT_ITSELF for part, _ in parts):
        return None
    src = plan.input.location.zarr_store(read_only=True)
    dst = plan.output.location.zarr_store(read_only=True)
    try:
        return datasets.carried_since(
            src,
            variable,
            recorded.get("group_attributes"),
            datasets.coordinates_differ(src, variable, dst, group),
            recorded.get("coordinates"),
        )
    except Exception:  # words for a refusal already decided: never a failure of their own
        return None


def said(changed: list[tuple[str, str]]) -> str:
    """The words of :func:`stale_parts`'s pairs, as one clause."""
    return ", and ".join(words for _, words in changed)


def _pair(x: Any) -> list[Any]:
    """``x`` as a two-item list (a recorded [where, what]; [None, None] when malformed)."""
    return list(x) if isinstance(x, list) and len(x) == 2 else [None, None]


#: The identity's parts that _what_changed names in words of their own (``host_share``: in
#: records of earlier versions only).
_NAMED = {
    "input",
    "coordinates",
    "output",
    "stages",
    "block",
    "chunk",
    "unit",
    "encode_on",
    "host_share",
    "dimension_names",
}


#: Schemes of object stores, whose objects' identity is their ETag (no file times).
OBJECT_STORES = ("s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "oss", "r2")


def _data_changed(place: str) -> str:
    """Why the input's data is said to have changed (:func:`_what_changed`), in the words of
    what the input's identity takes of its files there (:func:`identify_store`): a local
    folder's file times, an object store's ETags, the stamps an HTTP server or an archive
    gives. ``place``: where the input is, as the identity records it."""
    loc = Location.of(place)
    if loc.is_local:
        return (
            "the input's data changed (its files were rewritten, or copied back, or their "
            "permissions, owner or hard links changed: each file's times say so)"
        )
    if loc.protocol in OBJECT_STORES:
        return (
            "the input's data changed (its objects were rewritten with other bytes: each "
            "object's ETag says so)"
        )
    return (
        "the input's data changed (its files were rewritten: the stamps its store gives each "
        "file say so: an HTTP server's ETag or Last-Modified, an archive member's CRC and the "
        "archive's times)"
    )


#: An input identity's metadata digest where the input has no metadata document: it is not
#: there (a run of ``input.generate.when_missing`` plans the input it generates first; h66c:
#: its removal had been said "the input's metadata changed (it was rewritten)").
_NO_DOCUMENT = hashlib.sha256(b"").hexdigest()[:16]


def _what_changed(old: dict[str, Any], new: dict[str, Any], whole: bool) -> list[tuple[str, str]]:
    """What differs between a recorded identity and this plan's (see :func:`stale_parts`)."""
    parts: list[tuple[str, str]] = []
    old_in, new_in = _pair(old.get("input")), new["input"]
    if old_in[0] != new_in[0]:
        parts.append(("input.location", f"the input moved (was {old_in[0]}, now {new_in[0]})"))
    elif old_in[1] != new_in[1]:
        if new_in[1][0] == _NO_DOCUMENT:  # removed: `run` generates it first (when_missing)
            parts.append(
                (
                    "input.metadata",
                    "the input was removed (the one a run generates in its place first, "
                    "input.generate.when_missing, is a new input)",
                )
            )
        elif (old_in[1] or [None])[0] != new_in[1][0]:
            parts.append(("input.metadata", "the input's metadata changed (it was rewritten)"))
        else:
            parts.append(("input.data", _data_changed(str(new_in[0]))))
    if old.get("coordinates") != new.get("coordinates"):
        parts.append(
            (
                "input.coordinates",
                "the input's coordinates or its group's attributes changed (the output carries "
                "them)",
            )
        )
    if old.get("stages") != new["stages"]:
        parts.append(
            (
                "stages",
                f"the stages changed (were {'; '.join(old.get('stages') or [])}, now "
                f"{'; '.join(new['stages'])})",
            )
        )
    old_codec, new_codec = _pair(old.get("output"))[1], new["output"][1]
    if old_codec != new_codec:
        parts.append(
            (
                "output.codec",
                f"the output's codec changed (was {_codec_said(old_codec)}, now "
                f"{_codec_said(new_codec)})",
            )
        )
    keys = ("chunk", "unit") if whole else ("block", "chunk", "unit")
    if any(old.get(k) != new[k] for k in keys):
        parts.append(("layout", f"the layout changed ({_layout_said(old, new, keys)})"))
    if old.get("encode_on") != new["encode_on"]:
        parts.append(
            (
                "encode_on",
                f"frames would be encoded on the {new['encode_on']}, not the "
                f"{old.get('encode_on')} (the bytes would differ)",
            )
        )
    if old.get("dimension_names") != new.get("dimension_names"):  # output.dimension_names
        was, now = old.get("dimension_names"), new.get("dimension_names")
        parts.append(
            (
                "output.dimension_names",
                f"output.dimension_names changed (was {was or 'not given'}, now "
                f"{now or 'not given'}: the output's dimension names would differ)",
            )
        )
    if old.get("host_share"):  # cluster.host_encode_share, which this version no longer has
        parts.append(
            (
                "host_share",
                f"a share of its frames ({old['host_share']}) was encoded by host threads, "
                "which this version no longer does (the bytes would differ)",
            )
        )
    for key in sorted((set(old) | set(new)) - _NAMED):
        if old.get(key) != new.get(key):
            parts.append((key, f"{key} changed (was {old.get(key)}, now {new.get(key)})"))
    return parts


def _codec_said(codec: Any) -> str:
    """A recorded output codec (``output.codec`` as the identity holds it) in the config's
    words: ``zstd level 1``, ``zstd level 3 with checksums``, ``none``, where the refusal had
    said Python's dict (``{'name': 'zstd', 'level': 1, 'checksum': False}``)."""
    if not isinstance(codec, dict) or not isinstance(codec.get("name"), str):
        return str(codec)
    if codec["name"] != "zstd":
        return codec["name"]
    words = f"zstd level {codec.get('level')}"
    if codec.get("checksum"):
        words += " with checksums"
    if codec.get("store_raw_below") is not None:
        words += f", store_raw_below {codec['store_raw_below']}"
    return words


def _layout_said(old: dict[str, Any], new: dict[str, Any], keys: tuple[str, ...]) -> str:
    """What of a recorded layout (``keys`` of the identity: ``block``, ``chunk``, ``unit``)
    differs from this plan's, by the config's keys and what the output stores: the refusal
    had said ``chunk/unit were [[2, 50, 100], [2, 50, 100]], now [[1, 50, 100], [2, 50,
    100]]``, a unit being no key of the config (a shard, or the chunk where the output is
    unsharded)."""

    def shards(identity: dict[str, Any]) -> Any:
        return "none" if identity.get("unit") == identity.get("chunk") else identity.get("unit")

    said = []
    if "block" in keys and old.get("block") != new.get("block"):
        said.append(f"chunking.block was {old.get('block')}, now {new.get('block')}")
    if old.get("chunk") != new.get("chunk"):
        said.append(f"the output's chunks were {old.get('chunk')}, now {new.get('chunk')}")
    if shards(old) != shards(new):
        said.append(f"its shards were {shards(old)}, now {shards(new)}")
    return "; ".join(said) or (
        f"{'/'.join(keys)} were {[old.get(k) for k in keys]}, now {[new.get(k) for k in keys]}"
    )


def with_recorded_layout(config: Config, identity: Any) -> Config:
    """``config`` with the layout a recorded ``identity`` names where the config leaves it
    automatic (``chunking.block``, ``output.chunks``), when what the config does set agrees
    with it (its block, its chunks, its shards) and the input's metadata is the same; else
    ``config``: its own layout then plans, and :func:`stale_parts` names what changed instead
    of the plan refusing a layout the user never set. The automatic block depends on the
    cluster's memory, and the automatic chunks' rule on the pipeline's version: a resume
    writes what the interrupted run did."""
    out = config.output
    block_auto, chunks_auto = config.chunking.block == "auto", out.chunks == "auto"
    if not (block_auto or chunks_auto) or not isinstance(identity, dict):
        return config
    block, chunk, unit = (identity.get(k) for k in ("block", "chunk", "unit"))
    if not all(_is_shape(v) for v in (block, chunk, unit)):
        return config
    same_layout = (
        (block_auto or list(config.chunking.block) == block)
        and (chunks_auto or list(out.chunks) == chunk)
        and (
            unit == {"auto": block, "none": chunk}[out.shards]
            if isinstance(out.shards, str)
            else list(out.shards) == unit
        )
    )
    recorded_meta = (_pair(identity.get("input"))[1] or [None])[0]
    if not same_layout or recorded_meta != _metadata_digest(config):
        return config
    chunking = config.chunking.model_copy(update={"block": tuple(block or ())})
    output = out.model_copy(update={"chunks": tuple(chunk or ())})
    return config.model_copy(update={"chunking": chunking, "output": output})


def _is_shape(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(b, int) for b in v)


def _metadata_digest(config: Config) -> str | None:
    """The digest of the input's metadata document, as the plan's identity takes it
    (``pipeline.planning.plan._input_identity``); None when there is none."""
    loc = Location.of(config.input.store, config.input.storage_options, "input")
    path = config.input.array.strip("/")
    doc = loc.read(f"{path}/zarr.json" if path else "zarr.json") or loc.read(
        f"{path}/.zarray" if path else ".zarray"
    )
    return None if doc is None else hashlib.sha256(doc).hexdigest()[:16]


def as_recorded(plan: Plan, identity: Any) -> Plan:
    """``plan`` as ``run --resume`` makes it: with ``chunking.block`` or ``output.chunks``
    automatic, the recorded layout (:func:`with_recorded_layout`, when it still plans here; else
    ``plan``)."""
    config = with_recorded_layout(plan.config, identity)
    if config is plan.config or plan.facts is None:
        return plan
    if config.chunking.block == plan.block and config.output.chunks == plan.output.chunk:
        return plan
    joined = plan.cluster.scheduler != "local"
    try:
        return make_plan(
            config,
            plan.facts,
            plan.cluster.workers if joined else None,
            plan.cluster.threads_per_worker if joined else None,
        )
    except PipelineError:
        return plan


def recorded_layout(config: Config, resume: bool) -> Config:
    """On ``--resume`` with an automatic block shape or output chunks, the layout of the run
    that wrote the output (from its run record, or a complete output's attributes;
    :func:`with_recorded_layout`): the automatic block depends on the cluster's memory, and a
    resume on another cluster must write the same blocks (and find a complete output's shards,
    which are blocks by default, the same); the automatic chunks' rule may differ between
    versions."""
    if not resume or (config.chunking.block != "auto" and config.output.chunks != "auto"):
        return config
    loc = Location.of(config.output.store, config.output.storage_options, "output")
    path = (config.output.array or "").strip("/")
    try:
        recorded: Any = Ledger(loc, path).read_manifest()
        if recorded is None:  # a complete output (or none: Zarr raises)
            recorded = arrays.run_record(arrays.read_attributes(loc, path))
        identity = recorded.get("identity")
    except Exception:
        return config
    return with_recorded_layout(config, identity)
