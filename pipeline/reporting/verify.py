"""``pipeline verify``: recompute blocks with NumPy from the input and compare with the output.

Both arrays are read through Zarr itself (not the pipeline's own chunk reader), and the reference
is computed with plain NumPy, stage by stage, so a bug in the pipeline's fast paths cannot hide
in the check. Values must match to the bit (:func:`pipeline.ops.bits.difference`, which the
output's coordinates are compared with too): a -0.0 where NumPy gives 0.0, or a NaN of another
payload, is a mismatch (``np.array_equal`` with ``equal_nan`` takes any NaN for any other and
-0.0 for 0.0, so an output differing only there had passed `verify --all`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.config import Config
from pipeline.errors import (
    ChunkError,
    ConfigError,
    InputError,
    OutputError,
    PipelineError,
    cause,
    name_shown,
    one_line,
    storage_failure,
    storage_fix,
)
from pipeline.ops import bits, stages
from pipeline.ops.cf import Unpacking, output_fill_attribute
from pipeline.planning.plan import (
    StoreIdentity,
    absent_input,
    check_generated_input,
    frame_identity,
    identify_store,
    input_place,
    keys_out_of_shape_note,
    record_edited,
    relative_store_note,
)
from pipeline.planning.variable import (
    Carried,
    carried,
    decoding,
    is_alone,
    unheld_error,
    values_chain,
    with_output_array,
)
from pipeline.store import arrays, codecs, datasets, grid
from pipeline.store.ledger import RECORD, Ledger
from pipeline.store.location import Location, key_under


@dataclass(frozen=True, repr=False)
class VerifyResult:
    """What ``pipeline verify`` found (:func:`verify`), which :func:`pipeline.verify` returns:
    :attr:`ok` whether the output passed every check. Its ``repr()`` is one line (passed or
    failed, blocks checked and mismatched, the output's status, the advice); its ``str()``
    and a notebook's display the table ``pipeline verify`` prints (:meth:`rows`), with the
    advice where there is some; every finding stays a field."""

    checked: int
    """how many blocks were compared with NumPy's result"""
    total: int
    """how many blocks the output has"""
    mismatched: list[tuple[int, ...]]
    """the blocks compared that differ from NumPy's result, each by its index in the grid of
    blocks (the run's blocks where the output's record says them, else its shards or chunks:
    ``(1, 0)``, the second along the first dimension); :attr:`first_difference` names the first
    element that differs by its index in the array"""
    status: str
    """the output's: 'complete', 'incomplete' (a run did not finish it: no block compared),
    its record's own word, or 'none' where it holds no record of the pipeline's"""
    first_difference: str | None = None
    """what the first block of ``mismatched`` holds otherwise than NumPy's result, in a few
    words (:func:`pipeline.ops.bits.difference`: how many of its elements differ, and the
    first, by its index in the array: ``-0.0, not 0.0``; a NaN with its bits); None where
    every block compared is NumPy's to the bit"""
    mismatched_units: tuple[str, ...] = ()
    """the output's stored units (shards, or chunks) that hold the first block of
    :attr:`mismatched`, each as ``'c/0/0' of STORE`` (its key, the output's store); ()
    where no block differs"""
    writer: dict[str, Any] | None = None
    """the run writing the output now, which holds its lock (``pid``, ``host``, ``since``),
    as found once the blocks were compared (a run that began replacing a complete output
    while it was verified too: what was read may be partly that run's); None where none
    does"""
    replaced: bool = False
    """whether the output's metadata document was written again while its blocks were
    compared (:func:`_metadata_stamp`): a run replaced the output meanwhile, and where
    :attr:`writer` is None it has ended since, so what was read may be partly the old
    output's, partly its deletion, partly the new one's (h72u: a `run --overwrite` begun and
    ended within `verify --all` had been said as blocks "written otherwise since the run, or
    damaged", naming `run --overwrite`)"""
    record_edited: str | None = None
    """how the output's ``pipeline`` record is not as its run wrote it, in a few words: its
    ``identity`` (what made the output, which verify's other checks read: the input's
    place, files and coordinates, the stages, the blocks) is not the one its ``fingerprint``
    was taken of, or its ``stages`` are not its identity's. Edited since the run, so nothing
    it says is taken: ``made_from``, ``made_with`` and ``input_changed`` are not judged, and
    the blocks compared are the stored units (h55b: an edited record had passed, and ``run
    --resume`` had called it "the stages changed"); None where it is whole, or records no
    identity (an earlier version's)"""
    made_from: str | None = None
    """the input the output's record says it was made from, where that is not this config's
    (another variable's run replaced it, or the input moved): its values were compared with
    this input's, which is not what made them"""
    made_with: str | None = None
    """what the output's record says computed its values, where that is not this config's
    chain (its stages, or the unpacking of a packed input), in a few words: ``stages
    multiply(factor=5) float32 -> float32 (this config's: multiply(factor=3) float32 ->
    float32)``. The output is another config's: sampled blocks where both give the same
    values (zeros multiplied) had passed it (h55b), where ``run`` calls it stale"""
    input_changed: bool = False
    """the input's metadata or files are not what the run that made the output recorded
    (:func:`pipeline.planning.plan.identify_store`): rewritten since, so the output holds
    the stages' values of the input as it was, which sampled blocks may not show"""
    input_changes: tuple[str, ...] = ()
    """where ``input_changed``: what of the input that the output carries differs now, each in
    a few words: a group attribute the run carried that the input's group holds otherwise or
    no longer (``its group's attribute 'title'``), a coordinate that xarray reads otherwise
    in the input than in the output's copy (``its coordinate y, which the output's copy holds
    otherwise (values: ...)``); () where the change is in none of them (the variable's own
    metadata or files), or not one of these words can name it (h60g: verify had said only
    "the coordinates and attributes the output carries, were rewritten", naming none)"""
    group_unopenable: tuple[tuple[str, str], ...] = ()
    """for a Dataset output: the arrays of its group that the pipeline did not write and that
    ``xr.open_zarr`` of the group fails on, each with why (:func:`pipeline.store.datasets.
    unopenable_arrays`: no dimension names, a dimension of another size); xarray then opens
    neither the group nor the output in it (brk59: an array zarr-python added was blamed on
    the coordinates, whose comparison needs xarray to open the group)"""
    carried_since: str | None = None
    """where ``input_changed`` is only that the output lacks coordinates its run did not write
    and this release carries, the input array's identity unchanged: the words after "the
    output" that say so and the cause, an earlier release of the pipeline that carried fewer
    (h82d's renamed variable's own coordinate), or the input that gained them
    (:func:`pipeline.store.datasets.carried_since`), not "the input changed" (h83a)"""
    coordinates_differ: tuple[str, ...] = ()
    """for a Dataset output: the coordinates it carries that xarray reads otherwise in the
    output than in the input (edited, or lost, since the run)"""
    coordinate_differences: tuple[str, ...] = ()
    """what each of ``coordinates_differ`` holds otherwise in the output, in a few words
    (:func:`pipeline.store.datasets.coordinate_difference`, words that follow its name's
    possessive: ``values: 1 of 3 elements differs, the first at [0]: -0.0, not 0.0``, an
    attribute, its dimensions)"""
    metadata_differs: tuple[str, ...] = ()
    """what the output's metadata holds otherwise than the run wrote it (edited since), each
    in a few words: its own attributes, dimension names or fill value against what the input
    and the config make, and each consolidated copy above it against the own metadata of what
    it lists (:func:`pipeline.store.datasets.consolidated_differences`)"""
    files_differ: str | None = None
    """the output's unit files (shard files, or chunk files) are not those its run wrote, in
    a few words (:func:`pipeline.store.arrays.units_differ`: a file gone, which reads as the
    fill value, or files of other sizes): judged from one listing of the output against what
    its complete record says the run wrote, so a damaged block fails however few blocks were
    compared; None where they are those, or the record says nothing of them"""
    files_modified: str | None = None
    """the output's unit files, of the sizes its run wrote, modified after it was marked
    complete, in a few words (:func:`pipeline.store.arrays.units_modified`, from the same
    listing's times: a file zeroed or a byte flipped at its size, which the sizes do not
    show, h83a); a copy that did not keep the files' times (``cp -r``) reads so too. It fails
    a sampled verify, whose blocks may miss the change; with every block compared (``--all``)
    and each as computed, the output is what the run wrote all the same: it passes. None
    where none was, or the store or the record cannot tell"""
    files_marked: bool = False
    """whether, :attr:`files_modified` being said of an output whose every block was
    compared and each as computed (:attr:`ok`), its mark of completion (its ``zarr.json``'s
    time) was moved past those files (:func:`pipeline.store.arrays.mark_after_units`), so
    that ``run`` and ``verify`` take the output as complete again: ``run --resume`` had
    refused it, naming ``verify --all``, which changed nothing (h84a)"""
    files_unmarked: str | None = None
    """why the mark was not moved where :attr:`files_marked` would be, in a few words (a
    store that is not local, a file written while the blocks were read); None otherwise"""
    consolidated_stale: tuple[str, ...] = ()
    """each consolidated copy above the output (its store's groups', and those of groups
    enclosing the store) that disagrees with what its group holds now, in a few words
    (:func:`pipeline.store.datasets.copies_differ`: edited, or not listing an array added
    since): readers of that group through the copy see another group than it holds. The
    copy's fault, not the output's: ``run --resume`` writes it again from the output's
    metadata, as :attr:`consolidate_calls` do (helper-46c: the fix named had been ``run
    --overwrite``, rewriting the output)"""
    consolidate_calls: tuple[str, ...] = ()
    """the zarr-python calls that write the copies of :attr:`consolidated_stale` and
    :attr:`consolidated_missing` again (:func:`pipeline.store.datasets.consolidate_call`)"""
    consolidated_missing: tuple[str, ...] = ()
    """the groups (the output's, the store's root: '') whose consolidated metadata the run
    wrote, since the input's group has some (``Carried.consolidate``), and that have none
    now (removed since). Not stale, but ``xr.open_zarr`` reads without it only with a
    warning, listing every member (slowly on object stores), and a reader of a copy
    elsewhere may expect it: the output is not as the run left it"""
    group_attributes_edited: tuple[str, ...] = ()
    """for a Dataset output: the group attributes the run carried from the input that the
    group holds with another value now (edited since, by a user or another tool). Not a
    failure: a user's edit of the group's attributes is theirs and stays, also through ``run
    --overwrite`` (README), so ``ok`` does not depend on it; verify notes it"""
    group_attributes_removed: tuple[str, ...] = ()
    """for a Dataset output: the group attributes the run carried from the input that the
    group no longer holds (removed since: xarray's ``to_zarr(mode="a")`` of another variable
    puts that Dataset's attributes in place of the group's). Not a failure either (the
    group's attributes are the user's), but not an edit that runs keep: ``run --overwrite``
    carries them from the input again; verify notes them as removed (it had said "differs
    (edited since)" of an attribute that was gone)"""
    record_refused: tuple[str, ...] = ()
    """the parts of the output's run record folder (``.pipeline``) that every run refuses at
    its start, each in a few words: one of another kind than the run keeps there
    (:meth:`~pipeline.store.ledger.Ledger.misshapen`: ``.pipeline is a link to /data/mine``,
    a file), or an entry the pipeline did not write there
    (:meth:`~pipeline.store.ledger.Ledger.strangers`: ``.pipeline/notes.txt``). Every run,
    ``--resume`` and ``--overwrite`` too, refuses the output until it is mended, and verify
    had passed it (h86g); () where there is none"""
    groups_missing: tuple[str, ...] = ()
    """the folders between the group enclosing the output's store and that store that are
    no Zarr group now (:func:`pipeline.store.arrays.groups_between_missing`: its run wrote
    them, removed since, or an earlier version wrote none), as URLs: readers of the enclosing
    group (``xr.open_datatree``) do not reach the output. ``run --resume`` writes them again,
    nothing recomputed; () where there is none"""
    input_formats: str | None = None
    """where the input array has both Zarr v3 and v2 metadata (zarr-python 3 and 2 both wrote
    at its path): which one the input is read from, in words for a note
    (:func:`pipeline.store.arrays.other_format_metadata`); None where it has one"""
    input_notes: tuple[str, ...] = ()
    """the plan's notes of how the input is read, in words, as ``plan`` and ``run`` give
    them: metadata of both Zarr formats (as :attr:`input_formats`), a fill value beyond its
    dtype's range (:func:`pipeline.store.arrays.reading_notes`), keys of its chunks that are
    a folder (:func:`pipeline.planning.plan.keys_out_of_shape_note`), attributes of its Dataset's
    consolidated metadata that its members' own differ from
    (:func:`pipeline.planning.variable.check_consolidated`); ``pipeline verify`` prints each
    as a note. None of them fails the output"""
    input_unchecked: str | None = None
    """why ``input_changed`` False says nothing of the input's bytes: its store gives no
    change stamps (:attr:`pipeline.planning.plan.StoreIdentity.unstamped`), so a rewrite
    since the run that kept names and sizes shows only in the blocks compared (of an
    'incomplete' output: a resume of it is refused, as ``run`` refuses it); None where the
    identity can show one"""
    stopped: str | None = None
    """of an 'incomplete' output: the line of the refusal its last run stopped on, as its run
    record keeps it (:func:`pipeline.running.output.record_stop`): a resume meets it again
    unless it is mended; None where the run was interrupted or crashed, or kept none"""
    stopped_mend: bool = True
    """with ``stopped``: whether that line names something to mend before `run --resume`
    finishes the output (False where a resume alone does: a scheduler lost during the work,
    h86c)"""
    stopped_input: bool = False
    """with ``stopped``: whether that mend changes the input (a refusal of the input's own
    data), which a resume then refuses, so that `run --overwrite` starts over once it is
    mended (h86f)"""
    advice: str | None = None
    """what to do about the first failure, as the words that end the line ``pipeline verify``
    prints of it: the command of ``run`` that finishes or replaces the output, where ``run``
    takes it (``"`run --resume` finishes it"``, ``"`run --overwrite` writes it again"``;
    :func:`pipeline.verify` says them as its calls: ``"`pipeline.run(config, resume=True)`
    finishes it"``), else ``run``'s refusal of it, which names what to do, or what else does
    (``"verify it once that run is done"``, ``"`verify --all` compares every block"``); None
    where :attr:`ok` is True and nothing is to be done (set by the command line's judgement
    of the result, :func:`pipeline.cli.verified`; :func:`verify` alone leaves it None)"""

    def rows(self) -> list[tuple[str, str]]:
        """The rows of the table ``pipeline verify`` prints."""
        first = (
            f" (first: block {list(self.mismatched[0])}; against NumPy's: {self.first_difference})"
            if self.mismatched
            else ""
        )
        return [
            ("checked", f"{self.checked} of {self.total} blocks against NumPy"),
            ("mismatched", f"{len(self.mismatched)}{first}"),
            ("output status", self.status),
        ]

    def __repr__(self) -> str:
        """``<VerifyResult ok: 8 of 12 blocks checked, 0 mismatched; output complete>``; where
        it failed, the first mismatched block and the advice too."""
        first = f" (first: block {list(self.mismatched[0])})" if self.mismatched else ""
        advice = f"; {self.advice}" if self.advice else ""
        return (
            f"<VerifyResult {'ok' if self.ok else 'failed'}: {self.checked} of {self.total} "
            f"blocks checked, {len(self.mismatched)} mismatched{first}; output {self.status}"
            f"{advice}>"
        )

    def __str__(self) -> str:
        """:meth:`rows` as ``pipeline verify`` prints them where its output is no terminal,
        and the advice (the end of its ``error:`` line) where there is some: what ``assert
        result.ok, result`` says."""
        from pipeline.reporting.tables import table_text

        advice = [("advice", self.advice)] if self.advice else []
        return table_text(self.rows() + advice, "verify")

    def _repr_html_(self) -> str:
        """A notebook's display: the table of :meth:`__str__`, as it is printed."""
        import html

        return f"<pre>{html.escape(str(self))}</pre>"

    @property
    def ok(self) -> bool:
        """Whether the output is what the config makes of the input: every check passed, and
        where the input's identity cannot show a rewrite, every block was compared."""
        return (
            not self.mismatched
            and self.status == "complete"
            and self.record_edited is None
            and not self.input_changed
            and self.made_from is None
            and self.made_with is None
            and not self.group_unopenable
            and not self.coordinates_differ
            and not self.metadata_differs
            and self.files_differ is None
            and (self.files_modified is None or self.checked == self.total)
            and not self.consolidated_stale
            and not self.consolidated_missing
            and not self.record_refused
            and not self.groups_missing
            and (self.input_unchecked is None or self.checked == self.total)
        )


def verify(
    config: Config, samples: int | None = 8, seed: int = 0, threads: int = 4
) -> VerifyResult:
    """Compare ``samples`` random blocks (all when None) of the output with a NumPy reference:
    the run's blocks where the output records them, else its shards (or chunks). The result's
    ``status`` is the output's as ``run`` decides it ('complete', 'incomplete'; else its
    record's word), or 'none' where it has no record of the pipeline's; an 'incomplete' one
    (an interrupted run) is reported as such before anything else is judged: no block is
    compared (``checked`` 0), its metadata not checked.

    Raises InputError for an unfinished input (an interrupted generate or run), one that
    ``generate`` made from another ``input.generate`` than the config's (status 'differs'), or
    a packed one that the config does not decode, OutputError for no output (``status``
    'absent') or one of another shape or dtype than the config makes (``shape``, ``dtype`` and
    the ``expected_shape``, ``expected_dtype``)."""
    config = with_output_array(config)
    out_path = config.output.array or ""
    loc_in = Location.of(config.input.store, config.input.storage_options, "input")
    loc_out = Location.of(config.output.store, config.output.storage_options, "output")
    g = config.input.generate
    # one whose generation was stopped before it wrote the metadata too
    arrays.check_generation_stopped(
        loc_in, config.input.array, g is not None, g is not None and g.when_missing
    )
    try:
        src = arrays.open_zarr_array(loc_in, config.input.array)
    except InputError as e:
        raise absent_input(config, loc_in, e) from None
    formats = arrays.other_format_metadata(loc_in, config.input.array.strip("/"), src)
    reading = tuple(arrays.reading_notes(loc_in, config.input.array.strip("/"), src))
    # its unwritten chunks would read as fill values on both sides
    arrays.check_finished(
        loc_in, config.input.array, g is not None, g is not None and g.when_missing
    )
    check_generated_input(config, src)  # as run refuses it: the config describes other data
    # as run refuses it: chunks Zarr does not find (stored under another key encoding) read
    # as the fill value on both sides, so an output an earlier run made of them would pass
    info_in = arrays.describe_array(loc_in, config.input.array, src)
    arrays.check_units_at_their_keys(info_in)
    # zarr returns big-endian data as stored; the layout's dtype in native order (NumPy's
    # StringDType takes no byte order: newbyteorder had raised a TypeError of it)
    native = info_in.dtype
    # the plan's checks of the input as xarray reads it (a stale consolidated copy: helper-43),
    # and its dtype and chain, before the output is opened, as run's plan checks them: an input
    # of a dtype the stages do not compute on (complex, bool, text) had been told "no output
    # at ...: run the pipeline first", which run then refused (new-user trial)
    try:
        kept = carried(config, src, out_path.strip("/"))
    except ChunkError as e:  # a carried coordinate's damaged chunk: as its verify says it
        raise _carried_damage(e) from None
    unpack = decoding(config, src, datasets.dims_of(src) is not None, is_alone(kept.variable))
    chain = values_chain(config, native, unpack)
    # its documents that are no file (a named pipe), refused before they are read, which
    # would wait on them without end (h84a); a Dataset output's coordinates too (h85a)
    arrays.refuse_output_not_files(loc_out, out_path, chunks=False, coordinates=kept.written_coords)
    # before the output is opened: a run that replaces it after this rewrites it (h72u)
    before = _metadata_stamp(loc_out, out_path)
    try:
        dst = arrays.open_zarr_array(loc_out, out_path)
    except ConfigError:  # output.storage_options that make no file system: their own line
        raise
    except PipelineError as e:
        where = loc_out.join(out_path)
        data = getattr(e, "data", {})
        if data.get("setting") == "output" and data.get("status") == "unreadable":
            # the store's refusal (S3 without s3:ListBucket) is no absent output (h65f: "no
            # output at ...: run the pipeline first")
            raise OutputError(str(e), **{**data, "output": where}) from None
        if _remains(loc_out, out_path):  # as `run` says it (F7: verify said run it first)
            raise OutputError(
                f"{name_shown(where)} holds the remains of an output that a stopped run was "
                "making or "
                "replacing: `run --overwrite` starts over",
                output=where,
                status="remains",
            ) from None
        raise OutputError(
            f"no output at {name_shown(where)}: run the pipeline first"
            + relative_store_note(config.output.store, loc_out),
            output=where,
            status="absent",
        ) from None
    record = arrays.run_record(dict(dst.attrs))
    edited_record = record_edited(record)
    # what made the output, as its record says; nothing of an edited one (h55b)
    made = record if edited_record is None else None
    block = _blocks_of(made, tuple(dst.shards or dst.chunks))
    block_grid = grid.grid_shape(tuple(src.shape), block)
    # the output's status as `run` decides it, first: an interrupted output is said to be one
    # (`run --resume` finishes it, or run's refusal of that says what does), its chunks and
    # metadata not judged (F5: a chunk a kill left empty was called damaged, a consolidated
    # copy not yet written an edit, each with `run --overwrite`), nor its shape and dtype
    # (brk59: a run stopped on an integer-decoded input whose scale_factor the user then
    # fixed, as its note said: "is it the same config?", naming no command)
    status = _status(dst, loc_out, out_path.strip("/"), kept, record)
    if status != "incomplete" and (
        tuple(dst.shape) != tuple(src.shape) or np.dtype(dst.dtype) != chain[-1].out_dtype
    ):
        makes = f"{list(src.shape)} {chain[-1].out_dtype}"
        if _made_by_this(made, tuple(src.shape), native, chain):
            # the record says this config made it: its metadata was edited since
            said = (
                f"its metadata was edited since the run, whose record says it wrote {makes}; "
                "`run --overwrite` writes it again"
            )
        elif _made_from(
            made, input_place(loc_in, config.input.array.strip("/"))
        ) is None and _input_changed(
            made, loc_in, identify_store(loc_in, config.input.array.strip("/")), kept
        ):  # as `run` says it: the input changed since (a scale_factor written as a float)
            said = (
                f"the input changed since the run made it (its metadata or files were "
                f"rewritten), and this config makes {makes} of it now; `run --overwrite` "
                "computes it from the input as it is now"
            )
        elif (made_with := _made_with(made, chain, unpack, kept)) is not None:
            # its record says another config's stages made it, as `run --resume` says (h57f:
            # "is it the same config?", naming no command, where a config of the same dtype
            # was told `run --overwrite`)
            said = (
                f"this config makes {makes}: the output was computed with {made_with}, as its "
                "record says: it is another config's output; `run --overwrite` computes it "
                "with this config"
            )
        else:
            said = f"this config makes {makes}: is it the same config?"
        raise OutputError(
            f"the output is {list(dst.shape)} {dst.dtype}, but {said}",
            output=loc_out.join(out_path),
            shape=tuple(dst.shape),
            dtype=str(dst.dtype),
            expected_shape=tuple(src.shape),
            expected_dtype=str(chain[-1].out_dtype),
        )
    if status == "incomplete":
        now = identify_store(loc_in, config.input.array.strip("/"))
        stop = Ledger(loc_out, out_path).stopped_on()
        return VerifyResult(
            checked=0,
            total=int(np.prod(block_grid)),
            mismatched=[],
            status=status,
            writer=Ledger(loc_out, out_path).holder(),
            input_formats=formats,
            input_notes=reading + kept.notes + _walk_notes(info_in, now),
            # a resume of it is refused where the input can show no rewrite: `run` says so
            # (F8: verify said `run --resume` finishes it)
            input_unchecked=now.unstamped,
            stopped=stop.line if stop is not None else None,
            stopped_mend=stop is None or stop.mend,
            stopped_input=stop is not None and stop.input,
        )
    # a chunk that is no file (a named pipe), before any block is read: the read would wait
    # on it without end, past Ctrl-C and SIGTERM (h84a)
    arrays.refuse_output_not_files(loc_out, out_path, coordinates=kept.written_coords)
    edit = _encoding_edited(config, dst) if isinstance(record, dict) else None
    if edit:  # as `run` refuses it: every chunk reads otherwise than the run wrote it
        where = loc_out.join(out_path)
        raise OutputError(
            f"{name_shown(where)} is not what the run wrote ({edit}: edited since), so readers "
            "see other "
            "values than the run made: `run --overwrite` writes it again",
            output=where,
            status=status,
            changed=["layout"],
        )
    blocks = list(grid.iter_indices(block_grid))
    if samples is not None and samples < len(blocks):
        blocks = random.Random(seed).sample(blocks, samples)
    # every block compared: the files' sizes and times before they are read, so that a mark
    # moved past them (a file touched since the run, h84a) vouches for no file written while
    # they were read
    total = int(np.prod(block_grid))
    every = arrays.unit_listing(loc_out, out_path) if len(blocks) == total else None

    def check(index: tuple[int, ...]) -> str | None:
        sl = grid.unit_slices(index, block, tuple(src.shape))
        x = _read(src, sl, loc_in, config.input.array).astype(native, copy=False)
        found = unpack.unheld(x) if unpack else None
        if unpack and found:  # no value to compare with: the run stops there too
            info = arrays.describe_array(loc_in, config.input.array, src)
            origin = tuple(s.start for s in sl)
            said = "verify has no value to compare there"  # (the output is not a run's stop)
            raise unheld_error(info, unpack, found, origin, x.shape, said)
        ref = stages.apply_chain(chain, unpack.apply(x, np) if unpack else x)
        got = _read(dst, sl, loc_out, out_path, output=True)
        # to the bit (the module's note): a -0.0 or a NaN of another payload differs
        return bits.difference(ref, got, origin=tuple(s.start for s in sl))

    try:
        with _reading_warnings_ignored(), ThreadPoolExecutor(threads) as ex:
            results = list(ex.map(check, blocks))
    except OutputError as e:  # a unit read as damaged: a replacing run's, half-written?
        if getattr(e, "region", None) is None or _metadata_stamp(loc_out, out_path) == before:
            raise
        raise replaced_error(loc_out.join(out_path), Ledger(loc_out, out_path).holder()) from None
    differing = [(b, d) for b, d in zip(blocks, results, strict=True) if d is not None]
    bad = [b for b, _ in differing]
    first_units: tuple[str, ...] = ()
    if differing:  # which files hold it, for the line that names the fix (h61e: none had)
        meta: Any = dst.metadata
        unit = tuple(meta.chunk_grid.chunk_shape if meta.zarr_format == 3 else meta.chunks)
        first_units = tuple(
            f"{key_under(out_path.strip('/'), meta.encode_chunk_key(u))!r} of {loc_out}"
            for u in grid.units_in(differing[0][0], block, unit, tuple(dst.shape))
        )
    path_in = config.input.array.strip("/")
    now = identify_store(loc_in, path_in)
    changed = _input_changed(made, loc_in, now, kept)
    unopenable = _group_unopenable(loc_out, out_path.strip("/"), kept)
    # compared as xarray reads them, which needs the group to open
    coordinates = (
        () if unopenable else _coordinates_differ(loc_in, loc_out, out_path.strip("/"), kept)
    )
    store_out, group_out = (
        loc_out.zarr_store(read_only=True),
        out_path.strip("/").rpartition("/")[0],
    )
    edited, removed = _group_attributes_changed(loc_out, out_path.strip("/"), kept, record)
    changes = _input_changes(loc_in, kept, record, coordinates) if changed else ()
    since = _carried_since(loc_in, kept, made, coordinates, now) if changed else None
    members = kept.written_coords or ()
    stale = datasets.copies_differ(loc_out, out_path.strip("/"), members)
    missing = tuple(datasets.consolidated_missing(store_out, group_out)) if kept.consolidate else ()
    stored = record.get("stored") if isinstance(record, dict) else None
    listed = arrays.unit_listing(loc_out, out_path)  # one listing for the files' sizes and times
    result = VerifyResult(
        checked=len(blocks),
        total=int(np.prod(block_grid)),
        mismatched=bad,
        mismatched_units=first_units,
        first_difference=differing[0][1] if differing else None,
        status=status,
        # asked after the blocks were read: a run that began replacing the output meanwhile
        # (h65d: its deletions had been said as damage since the run)
        writer=Ledger(loc_out, out_path).holder(),
        replaced=_metadata_stamp(loc_out, out_path) != before,
        record_edited=edited_record,
        made_from=_made_from(made, input_place(loc_in, config.input.array.strip("/"))),
        made_with=_made_with(made, chain, unpack, kept),
        input_changed=changed,
        input_changes=changes,
        carried_since=since,
        group_unopenable=unopenable,
        coordinates_differ=tuple(name for name, _ in coordinates),
        coordinate_differences=tuple(said for _, said in coordinates),
        metadata_differs=_metadata_differs(
            dst,
            kept,
            _wrote_fill(record, src, native, unpack, chain),
            record,
            arrays.stored_fill_said(loc_out, out_path),
        ),
        files_differ=arrays.units_differ(loc_out, out_path, dst, stored, listed),
        files_modified=arrays.units_modified(loc_out, out_path, dst, stored, listed),
        consolidated_stale=tuple(said for said, _ in stale),
        consolidate_calls=tuple(
            dict.fromkeys(
                [call for _, call in stale]
                + [datasets.consolidate_call(loc_out, g) for g in missing]
            )
        ),
        consolidated_missing=missing,
        group_attributes_edited=edited,
        group_attributes_removed=removed,
        record_refused=_record_refused(loc_out, out_path, block_grid),
        groups_missing=tuple(arrays.groups_between_missing(loc_out)),
        input_formats=formats,
        input_notes=reading + kept.notes + _walk_notes(info_in, now),
        input_unchecked=None if changed else now.unstamped,
    )
    if (
        every is not None
        and result.ok
        and result.checked == result.total
        and result.files_modified is not None
        and result.writer is None
        and not result.replaced
    ):  # every block as computed: the files modified after the mark hold what the run wrote
        why = arrays.mark_after_units(loc_out, out_path, dst, every, listed)
        result = dataclasses.replace(result, files_marked=why is None, files_unmarked=why)
    return result


def _record_refused(location: Location, path: str, block_grid: tuple[int, ...]) -> tuple[str, ...]:
    """The parts of the output's run record that every run's start refuses (the checks of
    :func:`pipeline.running.output.decide_start` that read the record folder: its parts of
    another kind than the run keeps, :meth:`Ledger.misshapen`, then, where there are none,
    the entries it did not write, :meth:`Ledger.strangers` of the output's ``block_grid``),
    each in a few words (:attr:`VerifyResult.record_refused`)."""
    ledger = Ledger(location, path)
    found = ledger.misshapen()
    if found:
        return tuple(f"{key} is {there}" for key, there, _ in found)
    return tuple(f"{RECORD}/{name}" for name in ledger.strangers(block_grid))


def _walk_notes(info: arrays.ArrayInfo, store: StoreIdentity) -> tuple[str, ...]:
    """The plan's note of keys of the input ``info`` that zarr-python reads as the fill value
    though no Zarr writer leaves them (:func:`~pipeline.planning.plan.keys_out_of_shape_note`,
    from the walk ``store`` of its files), as ``plan`` and ``run`` give it: verify reads them
    so too, and its match says nothing of the data they lost."""
    note = keys_out_of_shape_note(info, store)
    return (note,) if note else ()


def _metadata_stamp(location: Location, path: str) -> tuple[bytes | None, tuple[int, ...] | None]:
    """What changes when the metadata document of the output array at ``path`` of
    ``location`` (its ``zarr.json``) is written again, as every run that replaces the output
    writes it (deleted first, then written incomplete, then complete): its bytes, and for a
    local file its inode, modification and status-change times (nanoseconds); an object's
    bytes alone (an S3 ETag is their digest). (None, None) where it is not there."""
    import os

    key = key_under(path.strip("/"), "zarr.json")
    try:
        doc = location.read(key)
    except OSError:
        doc = None
    if not location.is_local or doc is None:
        return doc, None
    try:
        st = os.stat(location.path_of(key))
    except OSError:
        return doc, None
    return doc, (st.st_ino, st.st_mtime_ns, st.st_ctime_ns)


def replaced_error(output: str, writer: dict[str, Any] | None) -> OutputError:
    """The OutputError of ``verify`` whose reading of the output ``output`` failed (a unit
    read as damaged) while a run replaced it (its metadata written again meanwhile):
    ``writer``, the run holding its lock now, or None where that run has ended. Fields
    ``output``, ``status`` 'replaced', and ``writer``."""
    from pipeline.store.ledger import holder_said

    said = (
        f"a run is writing it now ({holder_said(writer)}): verify it once that run is done"
        if writer is not None
        else "that run has ended since: verify it again"
    )
    return OutputError(
        f"{name_shown(output)} was replaced by a run while it was verified (its metadata written "
        "again "
        f"meanwhile), so what could not be read may be that run's doing: {said}",
        output=output,
        status="replaced",
        writer=writer,
    )


def _encoding_edited(config: Config, dst: Any) -> str | None:
    """Words saying how the output ``dst``'s metadata stores its chunks' bytes otherwise than
    a run writes them (:func:`pipeline.store.arrays.encoding_differs`: a byte order, a shard
    index's place, the chunk key encoding, edited by hand), as ``run`` refuses such an
    output; None where they agree. Either compressor (zstd or none) agrees: the output's
    record does not say which the run used, and a config whose ``output.codec`` changed
    since verifies the values the output holds. Its blocks had been compared first: every
    one differing, "written otherwise since the run, or damaged", or its first chunk called
    damaged (an index said to be at the other end)."""
    codec = config.output.codec
    said: list[str] = []
    for name in dict.fromkeys([codec.name, "none" if codec.name == "zstd" else "zstd"]):
        try:
            layout = arrays.OutputLayout(
                shape=tuple(dst.shape),
                dtype=np.dtype(dst.dtype),
                chunk=tuple(dst.chunks),
                shard=tuple(dst.shards) if dst.shards else None,
                codec=name,  # type: ignore[arg-type]
                level=codec.level,
                checksum=codec.checksum,
            )
            found = arrays.encoding_differs(dst, layout)
        except Exception:  # metadata no run could write: its blocks' comparison says so
            return None
        if not found:
            return None
        said = said or found
    return "; ".join(said)


def _carried_damage(e: ChunkError) -> ChunkError:
    """The plan's refusal ``e`` of an input whose array carried beside the variable holds a
    damaged chunk (fields ``store``, ``key``, ``reason``, ``coordinate``), as verify says it:
    the fix is the chunk restored from its source. The run's own words, "nothing was written
    ... or set output.array: '' to write the variable alone", are no fix for an output that
    exists: that config verifies another output (h54c). Worded from the fields, not from the
    run's line (h55b: a rewording of that line had left verify's with the run's fix); ``e``
    itself where it is not of a carried array. A chunk whose size misfits the metadata
    (fields ``misfit``, ``said``: :func:`pipeline.store.arrays.chunk_misfit`) is said in the
    plan's words of it, with the metadata as a fix."""
    fields = e.data
    if not all(isinstance(fields.get(k), str) for k in ("store", "key", "reason", "coordinate")):
        return e
    if fields.get("misfit") in ("metadata", "unknown") and isinstance(fields.get("said"), str):
        # its chunks misfit its metadata (h69e): the plan's words of it, verify's fix
        fix = (
            "write back the dtype and chunk shape they were written with"
            if fields["misfit"] == "metadata"
            else "restore that chunk from its source, or the metadata it was written with"
        )
        return ChunkError(f"{one_line(fields['said'])}; {fix}", **fields)
    return ChunkError(
        f"input chunk {fields['key']!r} of {name_shown(fields['store'])} (of "
        f"{name_shown(fields['coordinate'])}, which "
        f"the output carries beside the variable) is damaged: {one_line(fields['reason'])}; "
        "restore that chunk from its source",
        **fields,
    )


def _remains(loc: Location, path: str) -> bool:
    """Whether ``path``, where no array opens, holds the remains of an output a stopped run
    was making or replacing: its run record, and other files beside it (what ``run`` calls
    'remains' and clears only with ``--overwrite``); files an operating system wrote there
    (:meth:`~pipeline.store.location.Location.entries`) are no remains."""
    try:
        names = loc.entries(path)
    except Exception:
        return False
    return RECORD in names and any(n != RECORD for n in names)


def _status(dst: Any, loc_out: Location, out_path: str, kept: Carried, record: Any) -> str:
    """The output's status: as a run decides it (:func:`pipeline.store.datasets.run_status`:
    'complete' or 'incomplete'), else its record's own word ('unknown' where it has none), or
    'none' where it holds no record of the pipeline's (written by another tool, or its
    attributes changed)."""
    if not isinstance(record, dict):
        return "none"
    store = loc_out.zarr_store(read_only=True)
    decided = datasets.run_status(store, out_path, dict(dst.attrs), kept.consolidate)
    return decided or str(record.get("status", "unknown"))


def _made_by_this(record: Any, shape: tuple[int, ...], dtype: np.dtype, chain: Any) -> bool:
    """Whether the output's record says the run read an input of this ``shape`` and ``dtype``
    and computed this ``chain`` (so an output of another shape or dtype was edited since)."""
    source = record.get("source") if isinstance(record, dict) else None
    if not isinstance(source, dict):
        return False
    try:
        same_dtype = np.dtype(source.get("dtype")).newbyteorder("=") == dtype
    except TypeError:
        return False
    return (
        source.get("shape") == list(shape)
        and same_dtype
        and record.get("stages") == [s.describe() for s in chain]
    )


def _made_with(record: Any, chain: Any, unpack: Any, kept: Carried) -> str | None:
    """What the output's ``record`` says computed its values (its identity's ``stages``, and
    ``unpack``: how a packed input's stored elements were decoded) or named its dimensions
    (``dimension_names``: ``output.dimension_names`` other than the input's), where that is
    not this config's ``chain``, ``unpack`` and ``kept`` (:func:`pipeline.planning.variable.
    values_chain`, :func:`~pipeline.planning.variable.decoding`, :class:`Carried`), in a few
    words; None where they are, or the record says nothing of them. Names another config
    gave are its, not an edit of the output (h88e: verify had said "edited since")."""
    identity = _identity(record)
    recorded = identity.get("stages")
    if not isinstance(recorded, list):
        return None
    stages_now = [s.describe() for s in chain]
    if recorded != stages_now:
        return (
            f"stages {'; '.join(map(str, recorded)) or 'none'} "
            f"(this config's: {'; '.join(stages_now) or 'none'})"
        )
    unpack_now = unpack.describe() if unpack else None
    if identity.get("unpack") != unpack_now:
        return (
            f"{identity.get('unpack') or 'no unpacking'} of the stored values "
            f"(this config's: {unpack_now or 'no unpacking'})"
        )
    names_now = list(kept.dimension_names or ()) if kept.names_given else None
    if identity.get("dimension_names") != names_now:
        was = identity.get("dimension_names")
        return (
            f"the dimension names {was or 'of its input'} (this config's "
            f"output.dimension_names: {names_now or 'not given'})"
        )
    return None


def _metadata_differs(
    dst: Any, kept: Carried, fill: np.ndarray | None, record: Any, said: Any = None
) -> tuple[str, ...]:
    """What the output's own metadata holds otherwise than the run wrote it, each in a few
    words (:func:`pipeline.store.datasets.own_metadata_differs`: its attributes, dimension
    names and fill value against what the input (``kept``) and the pipeline give it, ``fill``
    as :func:`_wrote_fill` says, and xarray's ``_FillValue`` where the output's ``record``
    says the run wrote one, ``fill_attribute``: an earlier version's wrote none; ``said``: the
    stored document's ``fill_value`` as written, a NaN's bits). () where
    all agree. Its consolidated copies are :attr:`VerifyResult.consolidated_stale`; the
    group's attributes are not the output's: :func:`_group_attributes_changed` names them."""
    attrs = dict(kept.attrs)
    if isinstance(record, dict) and "fill_attribute" in record:
        text = output_fill_attribute(np.dtype(dst.dtype), kept.frame)
        if text is not None:
            attrs["_FillValue"] = text
    return tuple(
        datasets.own_metadata_differs(
            dst, attrs, kept.dimension_names, fill, said, left_out=kept.left_out
        )
    )


def _wrote_fill(
    record: Any,
    src: Any,
    native: np.dtype,
    unpack: Unpacking | None,
    chain: tuple[stages.BoundStage, ...],
) -> np.ndarray | None:
    """The fill value the run wrote into the output's metadata, as its ``record`` says: the
    chain of the input's (``src``, its elements ``native``, decoded by ``unpack``;
    :func:`pipeline.store.arrays.chained_fill`) where it says ``fill_value``; None (zero)
    where it does not (an earlier version's output)."""
    if not (isinstance(record, dict) and "fill_value" in record):
        return None
    return arrays.chained_fill(codecs.fill_bits(src.fill_value, native), native, unpack, chain)


def _group_attributes_changed(
    loc_out: Location, out_path: str, kept: Carried, record: Any
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The group attributes the run carried from the input (its record's
    ``group_attributes``) that the group holds otherwise now, and those it no longer holds:
    (edited, removed) since the run, by a user or by another tool (xarray's
    ``to_zarr(mode="a")`` of another variable replaces them all, and removes those its
    Dataset lacks). Not a fault of the output: the group's attributes are the user's, so
    verify only notes them. ((), ()) for none, or an output written alone."""
    carried_attrs = record.get("group_attributes") if isinstance(record, dict) else None
    if not kept.frame or not isinstance(carried_attrs, dict):
        return (), ()
    group = out_path.rpartition("/")[0]
    now = datasets.group_attributes(loc_out.zarr_store(read_only=True), group)
    now = {k: v for k, v in now.items() if k in carried_attrs}
    differ = datasets.differing_values(now, carried_attrs)
    return tuple(k for k in differ if k in now), tuple(k for k in differ if k not in now)


def _input_changes(
    loc_in: Location, kept: Carried, record: Any, coordinates: tuple[tuple[str, str], ...]
) -> tuple[str, ...]:
    """What of the input that a Dataset output carries is not as the run carried it
    (:attr:`VerifyResult.input_changes`, :func:`pipeline.store.datasets.frame_changes`): the
    group attributes its record says it carried, and the ``coordinates`` that differ
    (:func:`_coordinates_differ`). () for an output written alone."""
    var = kept.variable
    if not kept.frame or var is None:
        return ()
    carried_attrs = record.get("group_attributes") if isinstance(record, dict) else None
    store = loc_in.zarr_store(read_only=True)
    return tuple(datasets.frame_changes(store, var.group, carried_attrs, coordinates))


def _carried_since(
    loc_in: Location,
    kept: Carried,
    record: Any,
    coordinates: tuple[tuple[str, str], ...],
    now: StoreIdentity,
) -> str | None:
    """:attr:`VerifyResult.carried_since` of an output whose input's identity differs from its
    record's in what it carries alone (``coordinates``: :func:`_coordinates_differ`'s; ``now``:
    the input array's identity as it is, which must be the recorded one); None otherwise."""
    var = kept.variable
    if not kept.frame or var is None or not isinstance(record, dict):
        return None
    recorded = _identity(record).get("input")
    stamps = recorded[1] if isinstance(recorded, list) and len(recorded) == 2 else None
    if not (isinstance(stamps, list) and len(stamps) == 3 and now.identity == stamps):
        return None  # the input array itself changed (or cannot be told): said as such
    return datasets.carried_since(
        loc_in.zarr_store(read_only=True),
        var,
        record.get("group_attributes"),
        coordinates,
        record.get("coordinates"),
    )


def _group_unopenable(
    loc_out: Location, out_path: str, kept: Carried
) -> tuple[tuple[str, str], ...]:
    """The arrays of a Dataset output's group, besides the output and the coordinates written
    beside it, that ``xr.open_zarr`` of the group fails on, each with why
    (:func:`pipeline.store.datasets.unopenable_arrays`); () for an output written alone."""
    var = kept.variable
    if not kept.frame or var is None:
        return ()
    group, _, name = out_path.rpartition("/")
    store = loc_out.zarr_store(read_only=True)
    return tuple(datasets.unopenable_arrays(store, group, (name, *var.coords), var.sizes))


def _coordinates_differ(
    loc_in: Location, loc_out: Location, out_path: str, kept: Carried
) -> tuple[tuple[str, str], ...]:
    """The coordinates a Dataset output carries that xarray reads otherwise in the output
    than in the input, each with what differs (:func:`pipeline.store.datasets.
    coordinate_difference`): helper-45 edited an output's ``lat`` after the run and verify
    passed; one that zarr-python cannot read because a stored chunk of it is damaged names
    that chunk's key (:func:`pipeline.store.arrays.damaged_unit`). () for an output written
    alone."""
    var = kept.variable
    if not kept.frame or var is None:
        return ()
    group = out_path.rpartition("/")[0]
    src, dst = loc_in.zarr_store(read_only=True), loc_out.zarr_store(read_only=True)
    found = []
    for name, said in datasets.coordinates_differ(src, var, dst, group):
        if said == datasets.UNREADABLE:  # a damaged chunk is named by its key (h54c)
            try:
                damaged = arrays.damaged_unit(loc_out, f"{group}/{name}" if group else name)
            except PipelineError:  # no array there (deleted): the words say so
                damaged = None
            if damaged is not None:
                key, reason, _ = damaged
                said = f"chunk {key!r}, which is damaged ({one_line(reason)})"
        found.append((name, said))
    return tuple(found)


def _identity(record: Any) -> dict[str, Any]:
    """The ``identity`` an output's ``pipeline`` record holds ({} where it holds none)."""
    identity = record.get("identity") if isinstance(record, dict) else None
    return identity if isinstance(identity, dict) else {}


def _made_from(record: Any, here: str) -> str | None:
    """The input the output's record names, where it is not ``here``; else None."""
    recorded = _identity(record).get("input")
    if not (isinstance(recorded, list) and len(recorded) == 2 and isinstance(recorded[0], str)):
        return None
    return recorded[0] if recorded[0] != here else None


def _input_changed(record: Any, loc_in: Location, now: StoreIdentity, kept: Carried) -> bool:
    """Whether the input's identity (its metadata and files; for a Dataset output, the group's
    attributes and the coordinates it carries, ``kept``) differs from what the output's
    record says the run that made it read (helper-42: verify passed an output whose input had
    been rewritten since, where the sampled blocks missed the change; helper-43: its
    coordinates); ``now``: the input's identity as it is. False where the record says nothing
    of it."""
    identity = _identity(record)
    coords = identity.get("coordinates")
    if coords is not None and frame_identity(loc_in, kept) != coords:
        return True
    recorded = identity.get("input")
    if not (isinstance(recorded, list) and len(recorded) == 2):
        return False
    stamps = recorded[1]
    if not (isinstance(stamps, list) and len(stamps) == 3 and isinstance(stamps[2], str)):
        return False  # a record of an earlier version's (the newest mtime): not comparable
    return bool(now.identity != stamps)


def _blocks_of(record: Any, stored: tuple[int, ...]) -> tuple[int, ...]:
    """The blocks ``verify`` samples: the run's (its recorded ``identity``'s block, a whole
    number of the output's ``stored`` units), so that the default sample covers the same share
    of an output whatever its chunks; else the stored units (shards, or chunks unsharded)."""
    block = _identity(record).get("block")
    if (
        isinstance(block, list)
        and len(block) == len(stored)
        and all(isinstance(b, int) and b > 0 for b in block)
        and grid.is_multiple(tuple(block), stored)
    ):
        return tuple(block)
    return stored


@contextlib.contextmanager
def _reading_warnings_ignored() -> Iterator[None]:
    """Within the block, ignore the warnings zarr-python's reading of a right store gives
    (:data:`~pipeline.store.arrays.FORMAT_WARNINGS`: "Combining a `sharding_indexed` codec
    disables partial reads" of shards stored transposed, ...; NumPy's
    :data:`~pipeline.store.codecs.FILTER_ARITHMETIC_WARNINGS` of a Delta's running sum over
    inf), on verify's threads and zarr-python's own alike: in a process where warnings are
    errors (a caller's ``-W error``, pytest's), :func:`_read` had said such a warning as a
    damaged chunk, and the command line had printed the first. Not under arrays' lock, which
    the threads reading within it take (``format_warnings_ignored``, nested in this)."""
    from zarr.errors import ZarrUserWarning

    with warnings.catch_warnings():
        for message in arrays.FORMAT_WARNINGS:
            warnings.filterwarnings("ignore", message=message, category=ZarrUserWarning)
        warnings.filterwarnings(
            "ignore", message=codecs.FILTER_ARITHMETIC_WARNINGS, category=RuntimeWarning
        )
        yield


def _read(
    arr: Any, sl: tuple[slice, ...], location: Location, path: str, output: bool = False
) -> np.ndarray:
    """The region ``sl`` of the input (or the ``output``), the array ``arr`` at ``path`` of
    ``location``, as zarr-python reads it (the reference is computed from it, not from the
    pipeline's own decoding). A damaged stored unit there is named by its key, as the run
    names its input's (:func:`pipeline.store.arrays.damaged_unit_in`): a Blosc frame cut
    short, which zarr-python reads from whatever memory follows it without an error (it had
    come out as mismatches, and the input's as "the input changed since", with `run
    --overwrite`, which stops on that chunk), is checked before the read; a unit that
    zarr-python cannot read is looked for after its read failed. Raises InputError (fields
    ``store``, ``region``, and ``key`` where a unit is named), or OutputError (``output``,
    ``region``, ``key``), when the region cannot be read: a damaged chunk, named with the
    fix (an output's had been a bare codec error, helper-39), or a store that would not
    give it."""
    where = location.join(path)
    region = [[s.start, s.stop] for s in sl]
    side = "output" if output else "input"
    try:
        # an input's every shard index, as the run's own decoder checks it (zarr-python does
        # not); an output's that zarr-python reads wrong is a mismatch, which a new run mends
        units: dict[str, Any] = {}
        found = arrays.damaged_unit_in(location, path, arr, sl, every_index=not output, units=units)
        if found is None:  # the units the check read, read once (zarr-python decodes them)
            source = arrays.array_over_units(arr, path, None, units) if units else arr
            return np.asarray(source[sl])
    except Exception as e:  # codecs raise RuntimeError, ValueError, zlib.error, ...
        failure = storage_failure(e)
        if failure is not None:  # the store would not give it: no damage (F8)
            raise (OutputError if output else InputError)(
                f"cannot read the {side} {name_shown(where)} in the region {region}: the store "
                "answered "
                f"{failure}; {storage_fix(failure).replace('input.', side + '.')}, then verify "
                "again",
                **{"output" if output else "store": where},
                region=region,
                reason=failure,
            ) from None
        try:
            found = arrays.damaged_unit_in(location, path, arr, sl, failed=True)
        except Exception:  # the store failed now: the region's own failure says enough
            found = None
        if found is None:
            found = ("", cause(e), "codec")
    key, reason, problem = found
    fields: dict[str, Any] = {"output" if output else "store": where, "region": region}
    misfit = arrays.misfit_of(location, path, arr, key, problem)
    if misfit is not None and (misfit.metadata or not misfit.sound):
        # every chunk looked at decodes alike to another size than the metadata says (h69e:
        # a hand-edited data_type had been "restore that chunk from its source")
        fields.update(key=key, file=location.join(misfit.document))
        if misfit.metadata:
            fields["misfit"] = "metadata"
            said = misfit.mismatch(f"the {side} {name_shown(where)}") + "; "
        else:
            fields["misfit"] = "unknown"
            said = misfit.either(
                f"{side} chunk {key!r} of {name_shown(location)} (in the region {region})"
            )
            said += "; "
        if not output:
            fix = (
                "write back the dtype and chunk shape they were written with"
                if misfit.metadata
                else "restore that chunk from its source, or the metadata it was written with"
            )
            raise InputError(said + fix, **fields)
    elif key:
        said = (
            f"{side} chunk {key!r} of {name_shown(location)} (in the region {region}) is damaged "
            f"({one_line(reason)}); "
        )
        fields["key"] = key
    else:
        said = (
            f"zarr-python cannot read the {side} {name_shown(where)} in the region {region} "
            f"({one_line(reason)}): a chunk there is damaged; "
        )
    if output:
        raise OutputError(said + "`run --overwrite` writes the output again", **fields)
    raise InputError(
        # (it had said "`pipeline run` names the chunk": a run of a complete output reads
        # no input, and says "nothing to do")
        said
        + (
            "restore that chunk from its source"
            if key
            else "restore the chunks of that region from their source"
        ),
        **fields,
    )
