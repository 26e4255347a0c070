"""The input as xarray sees it: its dimension names and attributes, which the output carries
over; the Dataset (group) it may live in, around which the output is written as a Dataset too;
and the decoding of values stored packed (CF ``scale_factor``/``add_offset``, ``_FillValue``,
``missing_value``), which the stages either compute on (``input.mask_and_scale: true``) or
which is refused before anything is written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.config.models import Config
from pipeline.errors import ChunkError, ConfigError, InputError, PlanError, name_shown, some_said
from pipeline.ops import stages
from pipeline.ops.cf import (
    PACKING_ATTRIBUTES,
    VALUE_ATTRIBUTES,
    Unheld,
    Unpacking,
    UnreadableFill,
    bounds_time_chains,
    bounds_time_conflicts,
    compared_fills,
    fill_attributes,
    fill_written_back_unread,
    is_packed,
    time_attributes,
    unpacking,
    v3_fill_value,
)
from pipeline.planning.memory import bytes_text
from pipeline.store import arrays, codecs, datasets, references
from pipeline.store.arrays import GENERATED, RUN_RECORD, ArrayInfo
from pipeline.store.datasets import Variable
from pipeline.store.location import Location, url_unsafe

#: Input attributes the output never carries: packing (its values are no longer packed, and
#: the stages changed them), Zarr v2's dimension names (the output is v3; on a v3 input,
#: ``_ARRAY_DIMENSIONS`` names nothing to xarray or zarr-python, and is carried as the
#: attribute it is there, which xarray shows in ``attrs``), and the records of
#: how the input was made (the output's own record replaces them).
#: ``dtype``: xarray's note of the type its numbers decode to (``bool`` on int8, timedelta64):
#: the output's numbers are the stages' values, which it no longer describes (an int8 output
#: with ``dtype: bool`` reads as True/False: helper-41). netCDF-C's records of the input's
#: layout (``_nczarr_attr``, ...: :func:`pipeline.store.datasets.without_netcdf_records`) are
#: not carried either, whatever the input's format.
#: The attributes that state facts about the values (:data:`~pipeline.ops.cf.VALUE_ATTRIBUTES`:
#: valid and actual ranges, flags) are left out because the stages change the values, the
#: plan saying so in a note (:func:`value_attributes_note`).
NOT_CARRIED = (
    *PACKING_ATTRIBUTES,
    *VALUE_ATTRIBUTES,
    "_ARRAY_DIMENSIONS",
    RUN_RECORD,
    GENERATED,
    "dtype",
)


@dataclass(frozen=True)
class Carried:
    """What the input is besides its values, and what the output carries over."""

    attrs: dict[str, Any] = field(default_factory=dict, compare=False)
    """the output's attributes besides the pipeline's record: the input's, less
    :data:`NOT_CARRIED`, netCDF-C's records and its own ``bounds`` and ``climatology``"""
    variable: Variable | None = None
    """the input as an xarray variable (an array with dimension names); None for an array
    without them"""
    unpacking: Unpacking | None = None
    """how stored elements become values before the stages (``input.mask_and_scale``)"""
    frame: bool = False
    """the output is written as a variable of a group, with the input group's attributes
    and coordinates around it (the input is a variable of a Dataset, the output not at the
    root of its store)"""
    notes: tuple[str, ...] = field(default=(), compare=False)
    """what the plan says besides (attributes a stale consolidated copy holds otherwise)"""
    left_out: dict[str, Any] = field(default_factory=dict, compare=False)
    """the input's attributes that state facts about its values
    (:data:`~pipeline.ops.cf.VALUE_ATTRIBUTES`), which the output does not carry: an
    earlier release carried them, so an output holding these, equal, is that release's,
    not edited (:func:`pipeline.store.datasets.own_metadata_differs`)"""
    names_given: bool = False
    """``output.dimension_names`` gives names other than the input's (the run's identity
    holds them then: names equal to the input's write the output a run without them
    writes, and a resume of either takes the other, h88e)"""
    dimension_names: tuple[str | None, ...] | None = None
    """the output's dimension names: the input's as given, some perhaps None (an array with
    names for some of its dimensions only keeps them, and, in a group, is a variable of a
    dimension None for each null, as xarray reads it); None where it has none"""

    @property
    def dims(self) -> tuple[str | None, ...] | None:
        """The output's dimension names (the input's); None when it has none."""
        return self.variable.dims if self.variable is not None else None

    @property
    def written_coords(self) -> tuple[str, ...] | None:
        """The names of the coordinate arrays the run writes beside the output variable, in
        its group, for an output written as a Dataset (:attr:`frame`); None for an array
        alone."""
        return self.variable.coords if self.frame and self.variable is not None else None

    @property
    def consolidate(self) -> bool:
        """Whether the output's group gets consolidated metadata (the input's group has it)."""
        return self.frame and self.variable is not None and self.variable.consolidated


def with_output_array(config: Config, check: bool = True) -> Config:
    """``config`` with ``output.array`` decided: when the config omits it, the input
    variable's name for a variable of an xarray Dataset, else '' (the store's root). The
    input's metadata documents, read for the name, are checked first
    (:func:`~pipeline.store.arrays.check_documents`, its groups and members too: a group's
    attributes that are a list had made the variable an array alone, written at the root),
    unless ``check`` is False: where the config goes to :func:`~pipeline.planning.plan.make_plan`
    next, whose ``input_info`` checks them (a run: one check per plan, each a request per
    document on a remote store); a local store's documents that are no file (a named pipe,
    on which zarr-python's opening below waits without end) are refused all the same, by a
    look at each (:func:`~pipeline.store.arrays.refuse_documents_not_files`, h83g)."""
    if config.output.array is not None:
        return config
    loc = Location.of(config.input.store, config.input.storage_options, "input")
    if check:
        arrays.check_documents(loc, config.input.array, around=True)  # read for the name
    else:
        arrays.refuse_documents_not_files(loc, config.input.array)
    try:
        store = loc.zarr_store(read_only=True)
    except Exception:  # an input that cannot be reached: the plan names that problem
        store = None
    name = "" if store is None else datasets.dataset_variable_name(store, config.input.array)
    output = config.output.model_copy(update={"array": name})
    return config.model_copy(update={"output": output})


#: Copies of the carried arrays the command's process holds at once, at most: xarray's decoded
#: arrays and their encoded bytes, written into memory at plan time (``frame_failure``), with
#: room for xarray's own temporaries.
FRAME_COPIES = 3


def carried(
    config: Config, arr: Any | None, output_path: str, memory_available: int = 0
) -> Carried:
    """What the input array ``arr`` (a Zarr array opened read-only; None for an input that
    ``run`` generates first) carries into the output at ``output_path``.

    Raises InputError (fields ``variable``, ``attributes``, ``fix``) for a variable stored
    packed or masked (or read with the other sign: ``_Unsigned``) when
    ``input.mask_and_scale`` is false, for
    one xarray decodes to times, booleans or, as a time's bounds, dates
    (:func:`refuse_time_bounds`, field ``coordinate`` too), and
    for a ``_FillValue`` xarray cannot read on it or, where the output is a Dataset, on another
    variable of its group; InputError (fields ``variable``, ``member``, ``differs``, ``fix``)
    for a variable whose group's consolidated metadata is stale (:func:`check_consolidated`),
    and for one whose coordinates have another size (:func:`_check_sizes`); ConfigError for an
    output Dataset it cannot write (field ``key``); PlanError where ``memory_available`` (bytes
    of this machine's memory free, 0: not checked) cannot hold the arrays carried beside the
    variable, which xarray reads whole (:func:`_check_frame_fits`)."""
    if arr is None:  # generated first (input.generate): no dimension names of its own
        made = config.input.generate
        if made is not None:
            _check_dimension_names(config, tuple(made.shape), None, output_path)
        given = config.output.dimension_names
        return Carried(dimension_names=given, names_given=given is not None)
    loc = Location.of(config.input.store, config.input.storage_options, "input")
    path = config.input.array.strip("/")
    _refuse_damaged_nczarr(loc, path, arr)
    store = loc.zarr_store(read_only=True)
    # under another output name, an input xarray reads as a coordinate is carried as one
    renamed = bool(output_path) and output_path.rpartition("/")[2] != path.rpartition("/")[2]
    variable = datasets.variable_of(store, path, arr, renamed=renamed)
    if variable is None:
        _refuse_names_only_in_the_copy(loc, path, arr)
    if variable is None and path and output_path and datasets.attribute_names_only(arr):
        _refuse_attribute_names(loc, path, arr)
    if variable is not None and variable.unreadable:
        variable = _unreadable_group(loc, variable, output_path)
    frame = variable is not None and bool(variable.name) and bool(output_path)
    _check_dimension_names(config, arr.shape, variable if frame else None, output_path)
    if frame:
        assert variable is not None
        _check_names_over_http(loc, store, variable)
    if variable is not None:  # the bounds of a time: xarray decodes them by the time's units
        refuse_time_bounds(loc.join(path), store, variable)
    try:
        # first: times are refused by name
        unpack = decoding(config, arr, variable is not None, is_alone(variable))
    except InputError as refused:
        if variable is not None:  # a stale consolidated copy first, naming this one next
            check_consolidated(loc, store, variable, frame, then=str(refused))
        raise
    # before the refusals of the frame, whose fixes are settings: none mends the values'
    # dtype (h85f)
    refuse_unsupported_values(config, arr.dtype, unpack)
    if frame:
        assert variable is not None
        _check_frame(variable, output_path)
    notes = check_consolidated(loc, store, variable, frame) if variable is not None else []
    alone_note = alone_fill_note(config, arr, is_alone(variable))
    notes += [alone_note] if alone_note else []
    plain_note = plain_decoding_note(config, arr, variable, unpack)
    notes += [plain_note] if plain_note else []
    if frame:
        assert variable is not None
        inherited = inherited_note(loc, store, variable)
        notes += [inherited] if inherited else []
    if frame:
        assert variable is not None
        _refuse_unreadable_fills(store, variable, loc)
        _check_sizes(loc, variable)  # after: a stale consolidated copy is what explains it
        _check_frame_fits(loc, store, variable, memory_available)
        _refuse_damaged_carried(loc, variable)
        # first: bounds two times would decode otherwise are named as such (h57b), where
        # the frame's reading back would find only that they read otherwise, in an order
        # xarray takes from the listing (CI: the v3 case had been refused by that line)
        refuse_ambiguous_bounds(loc, store, variable)
        _check_frame_reads(loc, store, variable)
    own = datasets.dimension_names(arr)
    left_out = value_attributes_note(loc.join(path), arr.attrs)
    notes += [left_out] if left_out else []
    dropped: tuple[str, ...] = NOT_CARRIED
    if arr.metadata.zarr_format == 3:  # no names there, as xarray reads it: an attribute
        dropped = tuple(k for k in NOT_CARRIED if k != "_ARRAY_DIMENSIONS")
    attrs = {  # its own bounds bound the input's values, not the computed ones
        k: v
        for k, v in datasets.without_netcdf_records(dict(arr.attrs)).items()
        if k not in (*dropped, *references.BOUNDS)
    }
    attrs = datasets.with_written_references(attrs, variable.coords if frame and variable else ())
    if frame and variable is not None:
        attrs = datasets.with_listed(attrs, variable)
    return Carried(
        attrs=attrs,
        variable=variable,
        unpacking=unpack,
        frame=frame,
        notes=tuple(notes),
        left_out={k: arr.attrs[k] for k in VALUE_ATTRIBUTES if k in arr.attrs},
        dimension_names=config.output.dimension_names or own,
        names_given=config.output.dimension_names not in (None, own),
    )


def _check_dimension_names(
    config: Config, shape: tuple[int, ...], variable: Variable | None, output_path: str
) -> None:
    """Refuse (ConfigError, fields ``key`` ``output.dimension_names``, ``value``) names given
    as ``output.dimension_names`` where the output is written as the Dataset variable
    ``variable`` (its dimensions are the input variable's, which its coordinates are
    aligned on: ``output.array: ''`` writes it alone), or in another number than the
    output's dimensions (``shape``, the input's: the stages keep it), before anything is
    written. Nothing where none are given."""
    names = config.output.dimension_names
    if names is None:
        return
    if variable is not None:
        raise ConfigError(
            f"output.dimension_names {list(names)} names the dimensions of an output written "
            f"as the variable {output_path!r} of a Dataset, whose dimensions are its input's "
            f"{list(variable.dims)} (its coordinates are written on them): leave "
            "output.dimension_names out, or set output.array: '' to write the array alone",
            key="output.dimension_names",
            value=list(names),
        )
    if len(names) != len(shape):
        n = len(shape)
        example = [f"dim_{i}" for i in range(n)]
        raise ConfigError(
            f"output.dimension_names {list(names)} gives {len(names)} "
            f"{'name' if len(names) == 1 else 'names'}, but the output has {n} "
            f"{'dimension' if n == 1 else 'dimensions'} ({list(shape)}): give one name per "
            f"dimension, such as {example}",
            key="output.dimension_names",
            value=list(names),
        )


def value_attributes_note(where: str, attrs: Any) -> str | None:
    """The plan's note naming the attributes of the input variable at ``where`` (its
    attributes ``attrs``, a mapping) that state facts about its values
    (:data:`~pipeline.ops.cf.VALUE_ATTRIBUTES`: ``valid_range``, ``actual_range``, flags, ...)
    and that the output does not carry, since the stages change the values (a reader that
    applies an input's ``valid_range: [-1, 1]`` would mask most of values 5 times larger);
    None where it has none of them."""
    named = [k for k in VALUE_ATTRIBUTES if k in attrs]
    if not named:
        return None
    said = ", ".join(f"{k}={attrs[k]!r}" for k in named)
    which = (
        "is not carried to the output: it states"
        if len(named) == 1
        else ("are not carried to the output: they state")
    )
    return (
        f"the input {name_shown(where)}'s {said} {which} facts "
        "about the input's values, which the stages change (readers that apply a valid range "
        "would mask computed values outside it); its other attributes (units, long_name, ...) "
        "are carried as they are: add your own for the computed values"
    )


def _refuse_names_only_in_the_copy(loc: Location, path: str, arr: Any) -> None:
    """Refuse (InputError, fields ``variable``, ``member``, ``differs``, ``fix``) a Zarr v2
    input whose own attributes (``.zattrs``: gone, or without ``_ARRAY_DIMENSIONS``) name no
    dimensions where its group's consolidated copy, which ``xr.open_zarr`` reads, gives it
    ``_ARRAY_DIMENSIONS``: xarray reads a variable of a Dataset there, the pipeline an array
    alone, written without its Dataset, silently (h69a: a deleted ``t/.zattrs``); the fix
    writes the copy's entry back."""
    if arr.metadata.zarr_format != 2 or "_ARRAY_DIMENSIONS" in arr.attrs:
        return
    held = arrays.consolidated_v2_attributes(loc, path)
    if held is None or "_ARRAY_DIMENSIONS" not in held[2]:
        return
    copy, entry, attrs = held
    own = f"{path}/.zattrs"
    state = "is gone" if loc.read(own) is None else "has no _ARRAY_DIMENSIONS"
    raise InputError(
        f"input array {loc.shown(path)} names no dimensions in its own attributes ({own} "
        f"{state}), but the consolidated metadata {loc.shown(copy)} gives it "
        f"_ARRAY_DIMENSIONS {attrs['_ARRAY_DIMENSIONS']!r} (its {entry!r} entry), as "
        "xr.open_zarr reads it: a variable of its Dataset there, an array alone to the "
        f"pipeline, which reads each array's own metadata: write that entry back to {own}",
        variable=loc.join(path),
        member=path.rpartition("/")[2],
        differs=["_ARRAY_DIMENSIONS"],
        fix=f"write the consolidated entry back to {own}",
    )


def _refuse_attribute_names(loc: Location, path: str, arr: Any) -> None:
    """Refuse, before anything is written, an input array of a group that is Zarr v3 and names
    its dimensions only in an ``_ARRAY_DIMENSIONS`` attribute
    (:func:`pipeline.store.datasets.attribute_names_only`), where the output is a Dataset
    variable: xarray reads no names there, and ``xr.open_zarr`` fails on its group, which
    the run had said as "xarray cannot read and write the coordinates" of a Dataset without
    any. ``output.array: ''`` writes it alone, as xarray and zarr-python read it (no
    dimension names). InputError, fields ``variable``, ``attributes``, ``fix``."""
    names = dict(arr.attrs)["_ARRAY_DIMENSIONS"]
    raise InputError(
        f"input array {loc.shown(path)} is Zarr v3 and names its dimensions only in the "
        f"attribute _ARRAY_DIMENSIONS={names!r} (Zarr v2's convention), which xarray does not "
        "read for Zarr v3 (xr.open_zarr fails on its group: it needs dimension_names): write "
        "them as its dimension_names (zarr-python's create_array(..., dimension_names=...), "
        "or xarray's to_zarr), or set output.array: '' to write the array alone",
        variable=loc.join(path),
        attributes=["_ARRAY_DIMENSIONS"],
        fix="dimension_names, or output.array: ''",
    )


def _unreadable_group(loc: Location, variable: Variable, output_path: str) -> Variable:
    """A variable whose group Zarr finds but cannot open (``variable.unreadable`` says why: a
    member's codec, in the group's consolidated copy, that no installed package provides):
    refused where the output is a Dataset (``output_path`` not ''), as the run of one whose
    coordinates xarray cannot read is (:func:`_check_frame_reads`), since ``xr.open_zarr``
    fails on the group; the variable alone where ``output.array: ''`` asks for it. It had been
    run as an array alone, written at the output store's root, without its coordinates and
    saying nothing. InputError, fields ``variable`` (the group), ``coordinate`` (''),
    ``attributes`` ([]), ``reason``, ``fix``."""
    if not output_path:
        return Variable(group="", name="", dims=variable.dims, attrs=variable.attrs)
    group = loc.join(variable.group) if variable.group else loc.url
    raise InputError(
        f"xarray cannot read and write the coordinates of the input Dataset {name_shown(group)} "
        f"({variable.unreadable}): set output.array: '' to write the variable alone, "
        "without them",
        variable=group,
        coordinate="",
        attributes=[],
        reason=variable.unreadable,
        fix="output.array: ''",
    )


def _refuse_damaged_nczarr(loc: Location, path: str, arr: Any) -> None:
    """Refuse, before anything is written, an input array without ``_ARRAY_DIMENSIONS``
    whose NCZarr record of its dimensions (netCDF-C 4.8.1's ``_NCZARR_ARRAY`` in its
    ``.zarray``) is damaged (:func:`pipeline.store.datasets.nczarr_problem`): xarray fails
    on it, and read as an array alone its output would lose the Dataset the record meant.
    InputError, fields ``variable`` (the input array), ``file`` (the ``.zarray``),
    ``fix``."""
    found = datasets.nczarr_problem(arr)
    if found is None:
        return
    key, what = found
    fix = (
        'write its dimrefs there as one dimension path per axis (["/y", "/x"], as '
        "netCDF-C does), or give the array an _ARRAY_DIMENSIONS attribute (its dimension "
        "names) in its .zattrs"
    )
    raise InputError(
        f"input array {loc.shown(path)} has no _ARRAY_DIMENSIONS, and {loc.shown(key)} {what} "
        f"(xr.open_zarr fails on it too): {fix}",
        variable=loc.join(path),
        file=loc.join(key),
        fix=fix,
    )


def _refuse_unreadable_fills(store: Any, variable: Variable, loc: Location) -> None:
    """Refuse, before anything is written, an input Dataset whose group xarray cannot open: a
    Zarr v3 array of it (a coordinate, another variable) with a ``_FillValue`` attribute that
    xarray's zarr backend fails to read (:func:`pipeline.ops.cf.v3_fill_value`). It reads
    every array's when it opens the group, other variables dropped or not, so ``write_frame``
    (the coordinates, written with xarray) would fail once the output was begun (InputError,
    fields ``variable``, ``attributes``, ``fix``). One xarray reads as another value is left:
    a dropped variable's value does not matter, and a coordinate's is written as xarray reads
    it."""
    for name, arr in datasets.group_arrays(store, variable.group).items():
        if name == variable.name or arr.metadata.zarr_format != 3:
            continue
        if "_FillValue" not in arr.attrs or np.dtype(arr.dtype).kind not in "iuf":
            continue
        try:
            v3_fill_value(arr.attrs["_FillValue"], np.dtype(arr.dtype))
        except UnreadableFill as e:
            if e.readable:
                continue
            where = loc.join("/".join(p for p in (variable.group, name) if p))
            raise InputError(
                f"{name_shown(where)}, beside the input variable in its Dataset, has {e}; the "
                "output's "
                "coordinates are written with xarray, which opens the whole group: fix it "
                "there, or set output.array: '' to write the variable alone",
                variable=where,
                attributes=["_FillValue"],
                fix=e.fix,
            ) from None


def _check_sizes(loc: Location, variable: Variable) -> None:
    """Refuse a variable whose coordinates written beside the output have a dimension of
    another size than the variable's (xarray holds one size per dimension in a Dataset, so
    ``xr.open_zarr`` fails on the input, and would on the output): InputError, fields
    ``variable``, ``coordinate``, ``dimension``, ``size`` (the coordinate's), ``expected``
    (the variable's, or another coordinate's)."""
    if not variable.conflicts:
        return
    coord, dim, size, other, expected = variable.conflicts[0]
    where = loc.join(variable.group, variable.name)
    whose = "the variable" if other == variable.name else f"its coordinate {other!r}"
    raise InputError(
        f"input variable {name_shown(where)}: its coordinate {coord!r} has {size} elements along "
        f"{dim!r}, {whose} {expected}, and a Dataset has one size per dimension "
        "(xr.open_zarr fails on it): write the coordinate with the variable's size, or set "
        "output.array: '' to write the variable alone, without its coordinates",
        variable=where,
        coordinate=coord,
        dimension=dim,
        size=size,
        expected=expected,
    )


#: The CF calendars that xarray decodes only with cftime (its standard ones it decodes with
#: pandas): an input whose coordinate uses one needs cftime installed, not another calendar.
CFTIME_CALENDARS = frozenset(("noleap", "365_day", "360_day", "julian", "all_leap", "366_day"))


def _check_frame_fits(loc: Location, store: Any, variable: Variable, available: int) -> None:
    """Refuse a Dataset output whose carried arrays (coordinates, bounds, formula terms, ...),
    which xarray reads whole into this process, would not fit in ``available`` bytes
    :data:`FRAME_COPIES` times over, before anything reads them: they are outside the blocks'
    memory model, and a curvilinear grid's or a formula term's arrays can be large. PlanError,
    fields ``key`` 'output.array' (the setting that writes the variable alone: a config
    file's line is said), ``variable`` (the group), ``carried`` ({name: bytes decoded}),
    ``available``, ``fix``."""
    if available <= 0:
        return
    sizes = datasets.carried_nbytes(store, variable)
    total = sum(sizes.values())
    if total * FRAME_COPIES <= available:
        return
    group = loc.join(variable.group) if variable.group else loc.url
    largest = sorted(sizes, key=lambda n: -sizes[n])[:3]
    named = ", ".join(f"{name_shown(n)} {bytes_text(sizes[n])}" for n in largest)
    more = f" and {len(sizes) - len(largest)} more" if len(sizes) > len(largest) else ""
    whole = f"; {bytes_text(total)} in all" if len(sizes) > 1 else ""
    raise PlanError(
        f"the arrays carried beside {name_shown(variable.name)} in {name_shown(group)} "
        f"({named}{more}, decoded"
        f"{whole}) are read whole into this process, which has "
        f"{bytes_text(available)} of memory free, less than the {FRAME_COPIES} x that needs: "
        "set output.array: '' to write the variable alone, without them, or run on a machine "
        "with more memory",
        key="output.array",
        variable=group,
        carried=sizes,
        available=available,
        fix="output.array: ''",
    )


def _refuse_missing_codec(loc: Location, store: Any, variable: Variable, coord: str) -> None:
    """Refuse the coordinate ``coord`` of ``variable`` (one xarray failed on) where a codec of
    its chain has no implementation here (a ``numcodecs.pcodec`` without pcodec, which
    zarr-python opens, failing only as it decodes), in the one line of
    :func:`pipeline.store.arrays.unknown_codec`, with ``output.array: ''`` as a fix too. It had
    been blamed on the coordinate's ``_FillValue`` ("correct _FillValue in the input")."""
    import zarr

    path = f"{variable.group}/{coord}" if variable.group else coord
    try:
        with arrays.format_warnings_ignored():
            arr = zarr.open_array(store=store, path=path, mode="r")
    except Exception:  # unreadable otherwise: the caller says why
        return
    missing = codecs.missing_codec(arr)
    if missing is not None:
        alone = "set output.array: '' to write the variable alone, without its coordinates"
        raise arrays.unknown_codec(loc, path, *missing, other=alone)


def _refuse_damaged_carried(loc: Location, variable: Variable) -> None:
    """Refuse, before anything is written, a Dataset whose arrays carried beside the variable
    (``variable.coords``: its coordinates, bounds, grid mappings, ...) hold a stored chunk that
    does not decode to exactly its size, as the input's own chunks are refused
    (:func:`pipeline.store.arrays.damaged_unit`). xarray writes the frame from what zarr-python
    reads: a cut Blosc frame had given the output's coordinate whatever memory followed it,
    the output marked complete; a cut zstd frame had been blamed on the coordinate's
    ``_FillValue`` ("correct _FillValue in the input"). ChunkError, fields ``store`` (the
    input store), ``key`` (the unit's key in it), ``reason``, ``problem``, ``coordinate``
    (the carried array's name, which ``verify`` words its own line with)."""
    for coord in variable.coords:
        path = f"{variable.group}/{coord}" if variable.group else coord
        try:
            found = arrays.damaged_unit(loc, path)
        except InputError:  # no array Zarr opens there: the frame's own checks say why
            continue
        if found is None:
            continue
        key, reason, problem = found
        reason = " ".join(reason.split())
        misfit = arrays.misfit_of(loc, path, arrays.open_zarr_array(loc, path), key, problem)
        if misfit is not None and (misfit.metadata or not misfit.sound):
            # its chunks misfit alike: its metadata edited since they were written (h69e)
            what = f"{name_shown(coord)}, which the output carries beside the variable"
            if misfit.metadata:
                said = misfit.mismatch(f"input {loc.shown(path)} ({what})")
                fix = "write back the dtype and chunk shape they were written with"
            else:
                said = misfit.either(f"input chunk {key!r} of {loc.url} (of {what})")
                fix = "restore the chunk, or the metadata it was written with"
            raise ChunkError(
                f"{said}; nothing was written: {fix}, or set output.array: '' to write the "
                "variable alone, without its coordinates",
                store=loc.url,
                key=key,
                reason=reason,
                problem=problem,
                coordinate=coord,
                file=loc.join(misfit.document),
                misfit="metadata" if misfit.metadata else "unknown",
                said=said,
            )
        raise ChunkError(
            f"input chunk {key!r} of {name_shown(loc.url)} (of {name_shown(coord)}, which the "
            "output carries "
            "beside "
            f"the variable) is damaged: {reason}; nothing was written: restore the chunk (or "
            "delete it, and it reads as the fill value), or set output.array: '' to write the "
            "variable alone, without its coordinates",
            store=loc.url,
            key=key,
            reason=reason,
            problem=problem,
            coordinate=coord,
        )


def _check_frame_reads(loc: Location, store: Any, variable: Variable) -> None:
    """Refuse, at plan time, a Dataset whose coordinates xarray cannot read, decode and write
    as ``create`` will (:func:`pipeline.store.datasets.frame_failure`: the frame written into
    memory): a coordinate of CF times whose ``units`` xarray cannot parse or whose
    ``calendar`` it does not know, on which ``xr.open_zarr`` of the input fails too (with
    ``decode_times=False`` it opens, undecoded: the pipeline writes the Dataset as xarray
    opens it by default). It failed after the lock, leaving the run record and a traceback.
    InputError, fields ``variable`` (the coordinate's path), ``coordinate``, ``attributes``
    (those xarray decodes it by), ``reason`` (xarray's), ``fix``."""
    import importlib.util

    failed = datasets.frame_failure(store, variable)
    if failed is None:
        return
    coord, reason = failed
    group = loc.join(variable.group) if variable.group else loc.url
    if coord:
        _refuse_missing_codec(loc, store, variable, coord)
    if not coord:
        damaged = arrays.unreadable_dimension_names(
            loc, variable.group, (variable.name, *variable.coords)
        )
        if damaged is not None:
            key, problem, fix = damaged
            raise InputError(
                f"{loc.shown(key)} (another variable of the input Dataset {name_shown(group)}, "
                "which "
                f"xarray reads to open it): {problem}; {fix}, or set output.array: '' to "
                "write the variable alone, without its Dataset",
                variable=group,
                store=loc.join(key),
                status="unreadable",
                reason=problem,
                fix=fix,
            )
        member = arrays.unreadable_member(loc, variable.group, skip=(variable.name,))
        if member is not None:
            raise member
        _refuse_unnamed_member(loc, store, variable, reason)
        raise InputError(
            "xarray cannot read and write the coordinates of the input Dataset "
            f"{name_shown(group)} "
            f"({reason}): set output.array: '' to write the variable alone, without them",
            variable=group,
            coordinate="",
            attributes=[],
            reason=reason,
            fix="output.array: ''",
        )
    where = loc.join(variable.group, coord)
    if reason.startswith(datasets.UNWRITABLE):  # the input opens; the output would not
        raise InputError(
            f"input coordinate {name_shown(where)} opens in xarray, but {reason}: set "
            "output.array: '' "
            "to write the variable alone, without its coordinates, or write the coordinate "
            "in a form xarray writes to Zarr v3",
            variable=where,
            coordinate=coord,
            attributes=[],
            reason=reason,
            fix="output.array: ''",
        )
    masked = f"{datasets.MaskedElements.__name__}: "
    if reason.startswith(masked):  # the input opens; the output would not
        raise InputError(
            f"input coordinate {name_shown(where)} holds {reason[len(masked) :]}: write it with "
            "no fill "
            "value (fill_value null) or without those elements, or set output.array: '' to "
            "write the variable alone, without its coordinates",
            variable=where,
            coordinate=coord,
            attributes=["_FillValue"],
            reason=reason,
            fix="a coordinate without a fill value, or output.array: ''",
        )
    _refuse_coordinate_fill(store, variable, where, coord, reason)
    try:
        attrs = datasets.own_attributes(store, variable.group, coord)
    except Exception:
        attrs = {}
    named = time_attributes(attrs) or [k for k in PACKING_ATTRIBUTES if k in attrs]
    said = ", ".join(f"{k}={attrs[k]!r}" for k in named)
    what = f"has {said}, which xarray cannot decode" if said else "cannot be read by xarray"
    alone = "set output.array: '' to write the variable alone, without its coordinates"
    calendar = str(attrs.get("calendar", "")).lower()
    no_cftime = importlib.util.find_spec("cftime") is None
    if calendar in CFTIME_CALENDARS and no_cftime:
        fix = "pip install cftime"
        how = f"`pip install cftime` (xarray decodes the calendar {calendar!r} with it), or {alone}"
    elif no_cftime and "units" in named and _units_decode(attrs):
        # the units are fine, the values past datetime64's range (helper-38 was told to
        # correct the units)
        what = f"has {said}, and values past the dates datetime64 holds"
        fix = "pip install cftime, correct the values, or output.array: ''"
        how = (
            "`pip install cftime` (xarray decodes such dates with it, where they are dates at "
            f"all), correct the values, or {alone}"
        )
    elif no_cftime and "units" in named and (year := _reference_past_datetime64(attrs)):
        # the units are fine, their reference date before 1678 or after 2261 (NCEP's `hours
        # since 1-1-1`): xarray falls back to cftime for it (h65e: told to correct the units)
        what = (
            f"has {said}, whose reference date (the year {year}) is past the dates "
            "datetime64[ns] holds"
        )
        fix = "pip install cftime"
        how = f"`pip install cftime` (xarray decodes such times with it), or {alone}"
    elif "units" in named and _units_decode(attrs):
        # cftime is there, and the units decode: the values are what xarray fails on (h65e:
        # told to correct the units)
        what = f"has {said}, and values that xarray cannot decode as times in them"
        fix = "correct the values, or output.array: ''"
        how = f"correct the values in the input, or {alone}"
    else:
        fix = f"correct {' and '.join(named) or 'the coordinate'}, or output.array: ''"
        how = f"correct {' and '.join(named) or 'the coordinate'} in the input, or {alone}"
    raise InputError(
        f"input coordinate {name_shown(where)} {what} ({reason}), so xr.open_zarr fails on the "
        "input "
        f"Dataset, which the output is written as: {how}",
        variable=where,
        coordinate=coord,
        attributes=named,
        reason=reason,
        fix=fix,
    )


def _refuse_coordinate_fill(
    store: Any, variable: Variable, where: str, coord: str, reason: str
) -> None:
    """Refuse the coordinate ``coord`` (at ``where``) whose fill value xarray cannot read as it
    decodes it (``reason``: xarray's failure), in the words and with the fix an input
    variable's gets (:func:`_unpacking_of`: an ``_Unsigned`` one's ``_FillValue`` the other
    signedness cannot hold named with the same bits in it, ``_FillValue: -2``). h77f: it had
    been told only to "correct _FillValue and _Unsigned". Nothing where xarray reads it."""
    arr = datasets.group_arrays(store, variable.group).get(coord)
    if arr is None or np.dtype(arr.dtype).kind not in "iuf":
        return
    stored = np.dtype(arr.dtype).newbyteorder("=")
    try:
        _unpacking_of(arr, stored, True, False)
    except UnreadableFill as e:
        alone = "set output.array: '' to write the variable alone, without its coordinates"
        if fill_written_back_unread(dict(arr.attrs), stored):
            line = (
                f"{e} (xr.open_zarr fails on the input Dataset), but xarray writes such a "
                f"coordinate's fill value back as the {stored} of its bits, which it then "
                f"cannot read, so for the output {alone}"
            )
            fix = "output.array: ''"
        else:
            line = (
                f"{e} (xr.open_zarr fails on the input Dataset, which the output is written "
                f"as), or {alone}"
            )
            fix = f"{e.fix}, or output.array: ''"
        raise InputError(
            f"input coordinate {name_shown(where)} has {line}",
            variable=where,
            coordinate=coord,
            attributes=["_FillValue"],
            reason=reason,
            fix=fix,
        ) from None


def _refuse_unnamed_member(loc: Location, store: Any, variable: Variable, reason: str) -> None:
    """Refuse a Dataset whose group holds, beside the variable, an array without dimension
    names (:func:`pipeline.store.datasets.unopenable_arrays`), a coordinate or another
    variable, on which ``xr.open_zarr`` of the group fails (``reason``: xarray's), naming it:
    a Zarr v3 one with its names only in an ``_ARRAY_DIMENSIONS`` attribute too, which
    xarray does not read for v3. The line had named neither the array nor that, and blamed
    "the coordinates". InputError, fields ``variable`` (the group), ``member``, ``reason``,
    ``fix``."""
    found = datasets.unopenable_arrays(store, variable.group, (variable.name,), {})
    if not found:
        return
    name, why = found[0]
    group = loc.join(variable.group) if variable.group else loc.url
    try:
        attribute = datasets.attribute_names_only(
            datasets.group_arrays(store, variable.group, listed=True)[name]
        )
    except KeyError:
        attribute = False
    if attribute:
        why += (
            " (Zarr v3, its names only in an _ARRAY_DIMENSIONS attribute: Zarr v2's "
            "convention, which xarray does not read for Zarr v3)"
        )
    fix = "write it again with dimension names (zarr-python's dimension_names=, or xarray)"
    raise InputError(
        f"{loc.shown(variable.group, name)} (another array of the input Dataset "
        f"{name_shown(group)}, which "
        f"xarray reads to open it) is {why}, and xr.open_zarr fails on the group ({reason}): "
        f"{fix}, or set output.array: '' to write the variable alone, without its Dataset",
        variable=group,
        member=name,
        reason=reason,
        fix=f"{fix}, or output.array: ''",
    )


def _units_decode(attrs: dict[str, Any]) -> bool:
    """Whether xarray decodes a time 0 in these ``units`` and ``calendar`` (so a failure is
    the values', not the units')."""
    from xarray.coding.times import decode_cf_datetime

    try:
        decode_cf_datetime(np.array([0]), str(attrs["units"]), attrs.get("calendar"))
    except Exception:
        return False
    return True


#: The CF time units cftime decodes in every calendar (``months`` and ``years`` only in the
#: 360-day one), as xarray and cftime spell them, in any case.
_CFTIME_UNITS = frozenset(
    f"{u}{s}"
    for u in ("day", "hour", "minute", "second", "millisecond", "microsecond")
    for s in ("", "s")
)
_STANDARD_CALENDARS = frozenset(("standard", "gregorian", "proleptic_gregorian"))
_REFERENCE = re.compile(r"\s*(\w+)\s+since\s+(-?\d{1,4})-\d{1,2}-\d{1,2}(?![\d-])", re.I)


def _reference_past_datetime64(attrs: dict[str, Any]) -> int | None:
    """The year of the reference date of CF time ``units`` (``hours since 0001-01-01``) that
    lies past what datetime64[ns] holds (years 1678 to 2261), in a standard calendar and a
    unit that cftime decodes, so that xarray, whose pandas decoding fails on it, decodes the
    times with cftime where it is installed (years 1 to 9999: cftime has no year 0 in these
    calendars); None for any other units or calendar."""
    found = _REFERENCE.match(str(attrs.get("units", "")))
    calendar = str(attrs.get("calendar") or "standard").lower()
    if found is None or calendar not in _STANDARD_CALENDARS:
        return None
    unit, year = found.group(1).lower(), int(found.group(2))
    if unit not in _CFTIME_UNITS or year < 1 or 1678 <= year <= 2261:
        return None
    return year


def _check_names_over_http(loc: Location, store: Any, variable: Variable) -> None:
    """Before any array the frame of ``variable`` carries is looked for: the StoreError of
    :meth:`Location.check_url_safe` for one whose name an HTTP URL reads otherwise (``#``,
    ``?``, a ``%`` escape), which a look by its key would miss (it was then called gone from
    a stale consolidated copy, or left out). A name the variable's dimensions or CF
    attributes give counts where the group holds it, as its consolidated metadata or its
    listing says, or where neither says (a dimension without a coordinate, a reference to
    nothing, are read by no one); so does one that the group's or another array's
    ``coordinates`` lists (:func:`datasets.listed_names`: xarray gives it to the variable where
    it lies on the variable's dimensions, which only its metadata, not found by its key, would
    say; it was left out silently)."""
    dims = (d for d in variable.dims if d is not None)
    named = (*variable.coords, *dims, *references.references(dict(variable.attrs)))
    named += tuple(datasets.listed_names(store, variable))
    unsafe = [n for n in dict.fromkeys(named) if url_unsafe(n) is not None]
    if not unsafe:
        return
    held = datasets.array_names(store, variable.group)
    for name in unsafe:
        if name in variable.coords or held is None or name in held:
            loc.check_url_safe(f"{variable.group}/{name}" if variable.group else name)


def check_consolidated(
    loc: Location, store: Any, variable: Variable, frame: bool, then: str = ""
) -> list[str]:
    """Refuse a variable whose group's consolidated metadata, which ``xr.open_zarr`` reads by
    default, disagrees with what the variable, or (``frame``) a coordinate written beside the
    output, holds in its own metadata, which the pipeline reads: another shape, dtype,
    chunks, codecs, fill value or dimension names, or a member it does not list (or lists,
    gone): xarray would read other values from the same chunks, so the store is damaged
    (InputError: ``variable``, ``member``, ``members`` (each refusing it), ``differs``,
    ``fix``); so are attributes by which
    xarray decodes the values (:func:`_decodes_otherwise`). Other attributes that differ are a
    note (returned): the output carries the members' own.

    ``then``: the refusal the variable's own metadata meets once the copy is consolidated
    again (:func:`decoding`'s, which reads its own: stored masked by a fill value edited
    since), which the stale copy's refusal names as the next step; it had been said first,
    and its fix (``input.mask_and_scale: true``) then met this refusal (h66a)."""
    found = datasets.stale(store, variable, with_coords=frame)
    where = loc.join(variable.group) if variable.group else loc.url
    fix = "consolidate the input's metadata again"
    # every member that refuses it, each said (three, then how many more): the first alone
    # had been, and the fix of that one then met the next one's refusal (h85b)
    refusing = [s for s in found if s.part != "attributes" or _decodes_otherwise(s)]
    if refusing:
        s = refusing[0]
        said = some_said([r.said for r in refusing])
        raise InputError(
            f"the consolidated metadata of the input Dataset {name_shown(where)} is stale: "
            f"{said} "
            "(changed since it was consolidated); xr.open_zarr reads that copy, and would "
            "see other values than the pipeline reads: consolidate the input's metadata "
            "again (zarr.consolidate_metadata on its store), or run on a fresh copy of it"
            + (f"; then, as its own metadata reads: {then}" if then else ""),
            variable=loc.join(variable.group, variable.name),
            member=s.member,
            members=[r.member for r in refusing],
            differs=list(s.keys) or [s.part],
            fix=fix,
        )
    if not found:
        return []
    differ = "; ".join(s.said for s in found)
    return [
        f"the consolidated metadata of the input Dataset {name_shown(where)} holds other "
        "attributes than "
        f"the group's and its arrays' own metadata ({differ}: changed since it was "
        "consolidated): the output carries their own, which xr.open_zarr of the input does "
        "not show until its metadata is consolidated again"
    ]


#: Attributes by which xarray decodes a variable's stored values (CF masking and packing).
DECODING_ATTRIBUTES = ("scale_factor", "add_offset", "_FillValue", "missing_value", "_Unsigned")


def _decodes_otherwise(stale: datasets.Stale) -> bool:
    """Whether a member's attributes that differ between the consolidated copy and its own
    metadata make xarray decode its values otherwise (found by helper-38: a stale
    ``scale_factor`` gave an output of 4x the values xarray read): masking or packing ones,
    or those by which either side decodes it to times (:func:`time_attributes` of each side's
    attributes: a ``calendar`` beside time units, not one beside none), or a ``dtype`` where
    either side makes it booleans."""
    seen, own = stale.attributes
    timed = {*time_attributes(seen), *time_attributes(own)}
    for key, seen_value, own_value in stale.values:
        if key in DECODING_ATTRIBUTES or key in timed:
            return True
        if key == "dtype" and (
            decodes_to_booleans({key: seen_value}) or decodes_to_booleans({key: own_value})
        ):
            return True
    return False


def _check_frame(variable: Variable, output_path: str) -> None:
    """Refuse an output Dataset that cannot be written: its variable named as one of the
    coordinates written beside it, or no xarray here to write them (ConfigError)."""
    import importlib.util

    name = output_path.rpartition("/")[2]
    if name in variable.coords and name == variable.name and name in variable.dims:
        raise ConfigError(
            f"input.array {variable.name!r} is the coordinate of its dimension {name!r} (the "
            "index xarray reads the Dataset's other variables on), which is written beside the "
            f"output as it is: the computed values need another name, as output.array "
            f"{_renamed(output_path)!r}, or output.array: '' to write them alone",
            key="output.array",
            value=output_path,
        )
    if name in variable.coords:
        raise ConfigError(
            f"output.array {output_path!r} names the output variable {name!r}, but the input "
            f"Dataset has a coordinate {name!r}, which is written beside it: choose another "
            "output.array",
            key="output.array",
            value=output_path,
        )
    if importlib.util.find_spec("xarray") is None:
        raise ConfigError(
            f"the input is the variable {variable.name!r} of an xarray Dataset, and the output "
            "is written as one, with its coordinates, which needs xarray: `pip install "
            "xarray`, or set output.array: '' to write the variable alone",
            key="output.array",
            value=output_path,
        )


def _renamed(output_path: str) -> str:
    """``output_path`` with its variable's name made another (``lat`` -> ``lat_out``)."""
    group, _, name = output_path.rpartition("/")
    return f"{group}/{name}_out" if group else f"{name}_out"


def is_alone(variable: Variable | None) -> bool:
    """Whether ``variable`` is an array with dimension names in no group (the store's root,
    or no group metadata above it), which ``xr.open_zarr`` does not open as a variable."""
    return variable is not None and not variable.name


def decoding(config: Config, arr: Any, is_variable: bool, alone: bool = False) -> Unpacking | None:
    """How the input's stored elements become its values, as xarray decodes them; None when
    they are their values. ``is_variable``: the array has dimension names, so a Zarr v2
    array's fill value is its ``_FillValue`` (as xarray reads it). ``alone``: it is in no
    group (:attr:`Variable.name` ''), so a Zarr v3 ``_FillValue`` attribute that xarray
    cannot read is taken as it is written (:func:`pipeline.ops.cf.fill_attributes`).

    Raises InputError when the values differ from the stored elements and
    ``input.mask_and_scale`` is false (``_Unsigned`` integers too, which xarray reads with the
    other sign: :func:`pipeline.ops.cf.reinterpreted`), for a
    variable xarray decodes to dates, durations or booleans (see :func:`refuse_non_numbers`), and,
    whatever
    ``input.mask_and_scale`` says, for a Zarr v3 ``_FillValue`` attribute that xarray cannot
    read or reads as another value (1.5 on integers, which xarray reads as 1: see
    :func:`pipeline.ops.cf.v3_fill_value`)."""
    attrs = dict(arr.attrs)
    where = Location.of(config.input.store, config.input.storage_options, "input").join(
        config.input.array
    )
    if is_variable:
        refuse_non_numbers(where, attrs, np.dtype(arr.dtype))
    stored = np.dtype(arr.dtype)
    if stored.kind not in "iuf":  # no numbers to decode: the stages refuse the dtype
        return None
    stored = stored.newbyteorder("=")
    for key in ("scale_factor", "add_offset"):  # xarray fails on text there too
        value = attrs.get(key)
        problem = None if value is None else _scale_problem(value)
        if problem is not None:
            raise InputError(
                f"input variable {name_shown(where)} has {key}={_short(value)}, {problem}: write "
                f"{key} "
                "as a number",
                variable=where,
                attributes=[key],
                fix=f"{key} as a number",
            )
    scale = attrs.get("scale_factor")
    listed = scale is not None and np.ndim(np.asarray(scale, dtype=object)) > 0
    if listed and attrs.get("add_offset") is None:
        # xarray's dtype for it is np.dtype(type(scale_factor)) of the attribute as
        # written: a list's is object, so it decodes to Python numbers (dtype object)
        (number,) = np.ravel(np.asarray(scale, dtype=object)).tolist()
        raise InputError(
            f"input variable {name_shown(where)} has scale_factor={_short(scale)}, a list, and no "
            "add_offset, which xarray decodes to Python objects (dtype object), not numbers "
            f"the stages compute on: write scale_factor as a number ({number!r}), not a list",
            variable=where,
            attributes=["scale_factor"],
            fix="scale_factor as a number",
        )
    for key in ("_FillValue", "missing_value"):
        problem = _fill_problem(attrs.get(key))
        if problem is not None:
            raise InputError(
                f"input variable {name_shown(where)} has {key}={_short(attrs[key])}, {problem}: "
                "write "
                f"{key} as the number (or list of numbers) that marks missing elements, or "
                "remove it",
                variable=where,
                attributes=[key],
                fix=f"{key} as a number",
            )
    zarr_format = arr.metadata.zarr_format
    v2_fill = arr.fill_value if is_variable and zarr_format == 2 else None
    try:
        found = _unpacking_of(arr, stored, is_variable, alone)
    except UnreadableFill as e:
        raise InputError(
            f"input variable {name_shown(where)} has {e}",
            variable=where,
            attributes=["_FillValue"],
            fix=e.fix,
        ) from None
    if found is None or config.input.mask_and_scale:
        return found
    if alone_fill_note(config, arr, alone) is not None:
        return None  # no xarray reads it: as zarr-python reads it (the plan's note says so)
    names = [k for k in ("scale_factor", "add_offset", "_FillValue", "missing_value") if k in attrs]
    if found.fill_values and "_FillValue" not in attrs and "missing_value" not in attrs:
        names.append("_FillValue")  # Zarr v2: the array's fill value, where xarray puts it
    if not is_packed(attrs):
        # only masked: the attributes whose fill values mask elements (a Zarr v2 array's fill
        # value as its _FillValue); xarray's NaN _FillValue beside a float's missing_value
        # masks nothing, and had been named as a reason (h60g)
        def masks(key: str) -> bool:
            own = {key: attrs[key]} if key in attrs else {}
            fill = v2_fill if key == "_FillValue" else None
            read = fill_attributes(
                own, stored, fill, zarr_format, as_variable=is_variable, alone=alone
            )
            return bool(compared_fills(read, np.dtype(found.dtype)))

        names = [k for k in ("_FillValue", "missing_value") if masks(k)]
    how = "packed" if is_packed(attrs) else "masked"
    if found.view is not None:  # _Unsigned: xarray reads the integers with the other sign
        names.insert(0, "_Unsigned")
        if not is_packed(attrs) and names == ["_Unsigned"]:
            how = "signed" if found.view == "u" else "unsigned"
    said = ", ".join(names)
    decodes = found.describe()
    if v2_fill is not None and "_FillValue" in names and "_FillValue" not in attrs:
        # no such attribute: the .zarray's fill value, which xarray reads as one (h69a: the
        # line had named an attribute the user could not find, its decoding in the pipeline's
        # words)
        fill = repr(np.asarray(v2_fill).item())
        said = said.replace(
            "_FillValue", f"its Zarr fill_value {fill}, which xarray reads as _FillValue"
        )
        if not is_packed(attrs):
            decodes = (
                f"elements equal to {found.said_fills()} become NaN, in {np.dtype(found.dtype)}"
            )
    raise InputError(
        f"input variable {name_shown(where)} is stored {how} ({said}): its stored {stored} "
        f"numbers are not its values, which xarray decodes ({decodes}); set "
        "input.mask_and_scale: true to run the stages on the decoded values",
        variable=where,
        attributes=names,
        fix="input.mask_and_scale: true",
    )


def _unpacking_of(arr: Any, stored: np.dtype, is_variable: bool, alone: bool) -> Unpacking | None:
    """:func:`pipeline.ops.cf.unpacking` of the Zarr array ``arr`` (its elements ``stored``,
    native), as xarray decodes a variable (``is_variable``: a v2 array's fill value its
    ``_FillValue``) or a coordinate: :func:`decoding`'s and a coordinate's
    (:func:`_refuse_coordinate_fill`), so that what xarray cannot read of either is said by
    the same :class:`pipeline.ops.cf.UnreadableFill`, its fix the value to write."""
    zarr_format = arr.metadata.zarr_format
    v2_fill = arr.fill_value if is_variable and zarr_format == 2 else None
    return unpacking(
        dict(arr.attrs), stored, v2_fill, zarr_format, as_variable=is_variable, alone=alone
    )


def alone_fill_note(config: Config, arr: Any, alone: bool) -> str | None:
    """The plan's note for a Zarr v2 array with dimension names in no group (``alone``: the
    store's root, or folders that are no group) whose fill value alone would mask elements as
    xarray reads a v2 variable's fill value, its ``_FillValue``, with ``input.mask_and_scale``
    false: ``xr.open_zarr`` does not open such an array at all (no group), so nothing decodes
    it there, and it is read as zarr-python reads it, as an array without names is (its
    elements equal to the fill value are numbers). It had been refused as "stored masked
    (_FillValue)", naming an attribute it does not have and a decoding xarray never does
    (h69a: a root array of zarr-python 2's default fill value 0 and ``_ARRAY_DIMENSIONS``).
    ``input.mask_and_scale: true`` still masks them, as xarray reads that array in a
    Dataset. None where that is not the case: in a group, decoded, packed, or masked by an
    attribute of its own (refused as :func:`decoding` says)."""
    if not alone or config.input.mask_and_scale or arr.metadata.zarr_format != 2:
        return None
    attrs = dict(arr.attrs)
    stored = np.dtype(arr.dtype)
    if stored.kind not in "iuf" or arr.fill_value is None or is_packed(attrs):
        return None
    stored = stored.newbyteorder("=")
    try:
        if unpacking(attrs, stored, None, 2, as_variable=True, alone=True) is not None:
            return None  # its own attributes mask: refused, as they say
        found = unpacking(attrs, stored, arr.fill_value, 2, as_variable=True, alone=True)
    except UnreadableFill:
        return None
    if found is None:
        return None
    return (
        f"the input array has dimension names but no group around it, which xr.open_zarr "
        f"does not open, so its elements equal to its Zarr fill value "
        f"{found.said_fills()} are read as numbers, as zarr-python reads them; "
        "input.mask_and_scale: true reads them as missing (NaN), as xarray reads a Zarr v2 "
        "variable's fill value in a Dataset"
    )


def inherited_note(loc: Location, store: Any, variable: Variable) -> str | None:
    """The plan's note for a variable of a DataTree's group below the store's root whose
    dimensions have coordinates in a group above its own (h75b: a root's ``x`` and ``time``,
    which ``xr.open_datatree`` gives the variable, were lost from the output without a word):
    the output carries its own group's coordinates only, as ``xr.open_zarr`` of that group
    reads them. None where no such coordinate is there."""
    found = datasets.inherited_coordinates(store, variable)
    if not found:
        return None
    where = loc.join(variable.group + "/" + variable.name)
    names = ", ".join(f"{name!r} (of the group {('/' + group)!r})" for group, name in found)
    return (
        f"xr.open_datatree gives the input variable {name_shown(where)} the coordinates {names} "
        "of a "
        "group above its own (a DataTree's inherited coordinates), which the output does "
        f"not carry: it carries those of its group, as xr.open_zarr(..., "
        f"group={variable.group!r}) reads it; to carry them, write them into that group "
        f"(xr.open_datatree(STORE, engine='zarr')[{variable.group!r}].to_dataset()"
        ".to_zarr(NEW_STORE)) and run on that"
    )


#: The attributes xarray's ``mask_and_scale`` decodes a variable by.
DECODING_ATTRIBUTES = ("scale_factor", "add_offset", "_FillValue", "missing_value", "_Unsigned")


def plain_decoding_note(
    config: Config, arr: Any, variable: Variable | None, found: Unpacking | None
) -> str | None:
    """The plan's note where ``input.mask_and_scale`` is true and the input is a plain Zarr
    array, no xarray variable (``variable`` None: no dimension names xarray reads; zarr-python
    2 or 3, tensorstore, in a group or not), and the option does not do there what a reader
    of xarray would take it to (h69e: it did nothing and said nothing). Its own CF attributes
    are decoded as a variable's (``found``); what is said: a Zarr v2 fill value left as a
    number where xarray, given the array's dimension names, would read it as the
    ``_FillValue`` and mask it (a Zarr fill value is what an unwritten chunk reads as, and
    zarr-python 2's default 0 would turn every stored 0 into NaN: not guessed, said, with the
    attribute that asks for it), or, that aside, nothing decoded at all (no such attribute,
    or those it has change no value). None where the option decodes something and leaves no
    such fill value, for a variable, or where ``input.mask_and_scale`` is false."""
    if not config.input.mask_and_scale or variable is not None:
        return None
    stored = np.dtype(arr.dtype)
    if stored.kind not in "iuf":  # the stages refuse it: nothing to say of its decoding
        return None
    stored = stored.newbyteorder("=")
    attrs = dict(arr.attrs)
    where = Location.of(config.input.store, config.input.storage_options, "input").join(
        config.input.array
    )
    no_names = "no dimension names"
    if datasets.dimension_names(arr) is not None:  # tensorstore's ["time", null, null]
        no_names += " xarray reads as a variable's (a null for axes of different sizes)"
    fill = arr.fill_value if arr.metadata.zarr_format == 2 else None
    named: Unpacking | None = found
    if fill is not None:
        try:  # as xarray would decode it with dimension names (a v2 variable's fill value)
            named = unpacking(attrs, stored, fill, 2, as_variable=True, alone=True)
        except UnreadableFill:
            named = found
    if named != found:
        said = repr(np.asarray(fill).item())
        decodes = (
            f"its own attributes decode it: {found.describe()}"
            if found is not None
            else "nothing else decodes it"
        )
        return (
            f"input.mask_and_scale: true: the input array {name_shown(where)} has {no_names}, so "
            "its "
            f"Zarr fill_value {said} (what an unwritten chunk reads as) is not taken as "
            "its _FillValue, as xarray takes a Zarr v2 variable's: elements equal to it are "
            f"read as numbers, as zarr-python reads them ({decodes}); to read them as "
            f"missing (NaN), give the array the attribute _FillValue: {said}"
        )
    if found is not None:
        return None
    held = [k for k in DECODING_ATTRIBUTES if attrs.get(k) is not None]
    has = (
        f"its {', '.join(held)} {'changes' if len(held) == 1 else 'change'} no value"
        if held
        else f"none of {', '.join(DECODING_ATTRIBUTES)}"
    )
    return (
        f"input.mask_and_scale: true decodes nothing: the input array {name_shown(where)} has "
        f"{no_names}, and {has}, so its values are read as stored, as zarr-python reads "
        "them; give it the CF attributes that say how to decode it, or leave "
        "input.mask_and_scale out"
    )


def unheld_error(
    info: ArrayInfo,
    unpacking: Unpacking,
    found: Unheld,
    origin: tuple[int, ...],
    shape: tuple[int, ...],
    output: str = "the output stays incomplete",
) -> InputError:
    """The one-line error (``output``: what it says of the output) for a block of the input
    variable ``info`` (its first element at
    ``origin``, of ``shape``) that holds an element its integer decoding cannot give a value
    (:meth:`pipeline.ops.cf.Unpacking.unheld`: one equal to a fill value, or a stored NaN),
    naming the element's index in the array and the key of its stored unit. The plan accepts
    such a variable (whether any element is missing is in its values, not its metadata: a v2
    variable's fill value, zarr's default 0, that no element equals had been refused); the
    run stops at the block, before a wrong value is written, and the output stays incomplete.
    InputError, fields ``variable``, ``key``, ``element``, ``value``, ``attributes``,
    ``fix``, ``rewrites_input`` (True: the fix rewrites the input)."""
    inside = np.unravel_index(found.index, shape)
    element = tuple(o + int(i) for o, i in zip(origin, inside, strict=True))
    key = info.key(tuple(e // u for e, u in zip(element, info.unit, strict=True)))
    where = info.location.join(info.path)
    dtype = np.dtype(unpacking.dtype)
    ints = _integer_packing(unpacking)  # an integer dtype: scale_factor is one
    said = ", ".join(f"{k}={v!r}" for k, v in ints.items())
    floats = " and ".join(f"{k}: {float(v)!r}" for k, v in ints.items())
    at = f"its element {list(element)} (in {key!r})"
    if found.masked:
        what = f"{at} holds {found.value!r}, a fill value: it is missing (NaN)"
        remove = "the missing elements"
    else:
        what = f"{at} is {found.value!r}"
        remove = "those elements"
    return InputError(
        f"input variable {name_shown(where)} decodes to {dtype} because of its integer {said} (as "
        "xarray "
        f"decodes it), and {what}, which {dtype} cannot hold (xarray reads an arbitrary "
        f"integer there); {output}: write {floats} in the input, so that "
        f"it decodes to floats, or remove {remove}; then `run --overwrite` starts over",
        variable=where,
        key=key,
        element=list(element),
        value=found.value,
        attributes=list(ints),
        fix=f"{' and '.join(ints)} as a float",
        rewrites_input=True,  # either fix is a rewrite of the input (h86f)
    )


def decodes_to_booleans(attrs: dict[str, Any]) -> bool:
    """Whether xarray decodes a variable with the attributes ``attrs`` to booleans: its
    ``BooleanCoder`` does so for ``dtype: bool``, whatever the stored dtype."""
    return bool(attrs.get("dtype") == "bool")


def refuse_time_bounds(where: str, store: Any, variable: Variable) -> None:
    """Refuse a variable that xarray decodes to dates as the bounds of a time of its group
    (:func:`pipeline.store.datasets.bounded_by`: a ``bounds`` attribute naming it on an array
    whose ``units`` hold "since", as xarray's ``decode_cf`` tells it, which then gives the
    variable that time's ``units`` and ``calendar`` where it has none of its own): numbers
    to the pipeline, which had computed on them and marked an output complete while
    xr.open_zarr read the input as dates (h55g). InputError, fields ``variable``,
    ``coordinate`` (the time's name), ``attributes`` (those the variable gets from it),
    ``fix``."""
    own = dict(variable.attrs)
    for name, attrs in datasets.bounded_by(store, variable):
        units = attrs.get("units")
        if not (isinstance(units, str) and "since" in units):
            continue
        given: dict[str, Any] = {
            k: attrs[k] for k in ("units", "calendar") if k in attrs and k not in own
        }
        found = [k for k in time_attributes({**given, **own}) if k in given]
        if not found:
            continue  # its own units, which xarray keeps
        said = ", ".join(f"{k}={given[k]!r}" for k in found)
        raise InputError(
            f"input variable {name_shown(where)} holds times: it is the bounds of {name!r} (bounds="
            f"{variable.name!r}), whose {said} xarray gives it, decoding its numbers to dates, "
            "and the stages are arithmetic on numbers, not times: run them on a variable of "
            "numbers",
            variable=where,
            coordinate=name,
            attributes=found,
            fix="a variable of numbers",
        )
    if variable.name:  # bounds of bounds, which xarray may decode to dates or not
        members = datasets.bounds_members(store, variable, (variable.name,))
        _refuse_chained_bounds(where, variable.name, members, carried=False)


def refuse_ambiguous_bounds(loc: Location, store: Any, variable: Variable) -> None:
    """Refuse a Dataset variable that carries the bounds of several times of its group which
    would give them other ``units`` or ``calendar``
    (:func:`~pipeline.ops.cf.bounds_time_conflicts`, over each array's own metadata, as the
    output's coordinates are read): xarray gives bounds without their own those of the first
    time it reads, in the group's listing order, which zarr-python gives in no fixed order;
    the output's bounds had been decoded by another time's units than the input's (other
    dates, marked complete, and ``verify`` then found the coordinates not the input's).
    InputError, fields ``variable`` (the bounds' path), ``coordinate`` (its name),
    ``attributes`` (those the times would give it otherwise), ``fix``. So is one that
    carries bounds of bounds given time attributes in turn, whose dates depend on that
    order too (:func:`_refuse_chained_bounds`)."""
    members = datasets.bounds_members(store, variable, variable.coords)
    conflicts = bounds_time_conflicts(members)
    for name in variable.coords:
        offered = conflicts.get(name)
        if not offered:
            continue
        said = " and ".join(
            f"{t!r} ({', '.join(f'{k}={v!r}' for k, v in o.items())})"
            for t, o in sorted(offered, key=lambda x: x[0])
            if o
        )
        keys = [
            k for k in ("units", "calendar") if len({repr(o[k]) for _, o in offered if k in o}) > 1
        ]
        where = loc.join(variable.group, name)
        raise InputError(
            f"input coordinate {name_shown(where)} (carried beside the variable) is the bounds of "
            "the "
            f"times {said}, which give it other {' and '.join(keys)}: xarray decodes it by "
            "those of whichever it reads first, so its dates are not defined; give it "
            f"{' and '.join(keys)} of its own (CF: those of its time), or set output.array: "
            "'' to write the variable alone, without its coordinates",
            variable=where,
            coordinate=name,
            attributes=keys,
            fix="bounds with units of their own",
        )
    for name in variable.coords:
        _refuse_chained_bounds(loc.join(variable.group, name), name, members, carried=True)


def _refuse_chained_bounds(
    where: str, name: str, members: list[tuple[str, Any]], carried: bool
) -> None:
    """Refuse the array ``name`` (at ``where``) of a group whose arrays are ``members`` (each
    one's own metadata) where it is the bounds of an array that is itself given time
    ``units`` or ``calendar`` as the bounds of a time (bounds of bounds:
    :func:`~pipeline.ops.cf.bounds_time_chains`): xarray passes them on only where it reads
    that time first, in the group's listing order, which zarr-python gives in no fixed
    order, so the same input had been run, written and read as numbers or as dates (h78b).
    ``carried``: a coordinate carried beside the input variable, else the variable itself.
    InputError, fields ``variable`` (its path), ``coordinate`` (its name where carried,
    else the array whose bounds it is, as :func:`refuse_time_bounds` says), ``attributes``
    (those it may be given), ``fix``."""
    chained = bounds_time_chains(members).get(name)
    if chained is None:
        return
    through, time, given = chained
    said = ", ".join(f"{k}={v!r}" for k, v in given.items())
    keys = " and ".join(given)
    raise InputError(
        f"input {'coordinate' if carried else 'variable'} {name_shown(where)}"
        f"{' (carried beside the variable)' if carried else ''} is the bounds of {through!r}, "
        f"itself the bounds of the time {time!r}: xarray gives it {said} only where it reads "
        f"{time!r} before {through!r}, in the group's listing order, which zarr-python gives "
        f"in no fixed order, so whether it holds dates is not defined; give it {keys} of its "
        "own (CF: those of its time)"
        + (", or set output.array: '' to write the variable alone" if carried else ""),
        variable=where,
        coordinate=name if carried else through,
        attributes=list(given),
        fix="bounds with units of their own",
    )


def refuse_non_numbers(where: str, attrs: dict[str, Any], stored: np.dtype) -> None:
    """Refuse a variable whose numbers xarray decodes to datetime64 or timedelta64 (CF time
    ``units``, with the ``calendar`` or timedelta64 ``dtype`` beside them:
    :func:`~pipeline.ops.cf.time_attributes`; a ``calendar`` or ``dtype`` without time units
    is an attribute of numbers to xarray, run as such), or to booleans (the
    ``dtype: bool`` attribute xarray writes for a bool variable, on int8: its ``BooleanCoder``
    decodes numbers of any dtype with it, uint8 or float32 too, which the run had computed on
    as numbers, an output of other values than xarray's): the stages are arithmetic on
    numbers, and an output that kept those attributes would read as wrong dates or as
    True/False (helper-41: every nonzero value read as True) (InputError, fields
    ``variable``, ``attributes``, ``fix``). ``stored``: the stored dtype, said in the line."""
    found = time_attributes(attrs)
    if found:
        said = ", ".join(f"{k}={attrs[k]!r}" for k in found)
        raise InputError(
            f"input variable {name_shown(where)} holds times ({said}: xarray decodes its numbers "
            "to dates "
            "or durations), and the stages are arithmetic on numbers, not times: run them on a "
            "variable of numbers, or write this one without its time attributes",
            variable=where,
            attributes=found,
            fix="a variable of numbers",
        )
    if decodes_to_booleans(attrs):
        raise InputError(
            f"input variable {name_shown(where)} holds booleans (dtype='bool': xarray decodes its "
            f"{stored} numbers to True and False), and the stages are arithmetic on numbers: "
            "run them on a variable of numbers, or write this one as numbers (xarray: "
            ".astype('int8'))",
            variable=where,
            attributes=["dtype"],
            fix="a variable of numbers",
        )


def refuse_unsupported_values(
    config: Config, stored: np.dtype, unpacking: Unpacking | None
) -> np.dtype:
    """The dtype of the input's values, its ``stored`` dtype or the one its ``unpacking``
    decodes to, where the stages compute on it; else an InputError naming the input (fields
    ``store``, ``dtype``; :func:`pipeline.ops.stages.check_dtype`'s line names none). No
    setting mends it, so it comes before any refusal whose fix is a setting (h85f: a text
    dimension coordinate chosen as ``input.array`` was told to take another output.array,
    which then met "unsupported dtype |S5")."""
    values = np.dtype(unpacking.dtype) if unpacking else np.dtype(stored)
    if not stages.supported_dtype(values):  # the line names the input (stages' names none)
        where = Location.of(config.input.store, config.input.storage_options, "input")
        array = where.join(config.input.array)
        raise InputError(
            f"unsupported dtype {values} of the input {array}: {stages.COMPUTED_ON}; convert "
            "the input first",
            store=array,
            dtype=str(values),
        )
    return values


def values_chain(
    config: Config, stored: np.dtype, unpacking: Unpacking | None
) -> tuple[stages.BoundStage, ...]:
    """The stage chain planned on the input's values: its ``stored`` dtype, or the dtype its
    ``unpacking`` decodes to (:func:`pipeline.ops.stages.plan_chain`).

    An integer ``scale_factor`` or ``add_offset`` decodes to int64, as xarray decodes it; a
    chain that overflows it, or a stage's scalar it cannot hold, is refused naming that
    attribute (PlanError, the chain's fields ``stage``, ``dtype``, ``bound`` or ``parameter``
    and ``value``, and ``variable``, ``attributes``, ``fix``): a float64 copy of the input
    would decode to int64 all the same, so "convert the input" is no fix there. A dtype the
    stages do not compute on (text, complex, bool) is refused naming the input (InputError,
    fields ``store``, ``dtype``): :func:`pipeline.ops.stages.check_dtype`'s line names none."""
    values = refuse_unsupported_values(config, stored, unpacking)
    try:
        return stages.plan_chain(
            config.stage_specs(),
            values,
            config.integer_overflow,
            _decoded_range(stored, values, _integer_packing(unpacking)),
        )
    except PlanError as e:
        ints = _integer_packing(unpacking)
        if not ints or "stage" not in e.data:
            raise
        where = Location.of(config.input.store, config.input.storage_options, "input")
        variable = where.join(config.input.array)
        said = ", ".join(f"{k}={v!r}" for k, v in ints.items())
        if "bound" not in e.data:  # a stage's scalar that int64 cannot hold (check_scalars)
            # a float64 copy of the stored values would decode to int64 all the same: xarray
            # takes the dtype from an integer scale_factor alone
            raise PlanError(
                f"input variable {variable} decodes to {values} because of its integer "
                f"{said} (as xarray decodes it), and stage {e.data['position']} "
                f"({e.data['stage']}): {e.data['parameter']} {_short(e.data['value'])} does not "
                f"fit {e.data['dtype']}: {e.data['advice']}, or write "
                f"{' and '.join(ints)} as a float to compute on floats",
                **e.data,
                variable=variable,
                attributes=list(ints),
                fix=f"{' and '.join(ints)} as a float",
            ) from None
        raise PlanError(
            f"input variable {variable} decodes to {values} because of its integer {said} (as "
            f"xarray decodes it), and stage {e.data['stage']!r} can overflow {e.data['dtype']} "
            f"(values up to {e.data['bound']:.3g}): {e.data['advice']}, or write "
            f"{' and '.join(ints)} as a float to compute on floats",
            **e.data,
            variable=variable,
            attributes=list(ints),
            fix=f"{' and '.join(ints)} as a float",
        ) from None


def _short(value: Any, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters (a 300-digit integer said whole)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _scale_problem(value: Any) -> str | None:
    """Why xarray cannot decode with ``value`` as a ``scale_factor`` or ``add_offset`` (it
    takes one number: ``np.asarray(value).item()`` of a list), as a line says it; None where
    it can. A boolean is refused too (a number is meant); an integer past int64 fails
    NumPy's arithmetic on the stored integers. A list is read as xarray reads it, nested or
    not (``[[0.5]]`` is 0.5 to it too)."""
    try:
        items = np.ravel(np.asarray(value, dtype=object)).tolist()
    except ValueError:  # a ragged list
        items = []
    if len(items) != 1:
        return "not one number (xarray cannot decode with a list of another length either)"
    (v,) = items
    if isinstance(v, (bool, np.bool_)):
        return "a boolean, not a number"
    if not isinstance(v, (int, float, np.number)):
        return "not a number (xarray cannot decode with it either)"
    if isinstance(v, int) and not -(2**63) <= v < 2**63:
        return "an integer past int64 (xarray's decoding overflows on it too)"
    return None


def _fill_problem(value: Any) -> str | None:
    """Why xarray cannot compare the elements with the ``_FillValue`` or ``missing_value``
    attribute ``value`` (its mask coder: ``data == fv`` for each element of ``np.ravel``), as
    a line says it; None where it can (a number, text, a boolean, null, or a list of them).
    helper-78: a dict failed the run with "unhashable type", an integer past a double (2**1100)
    passed the plan and stopped the run with an OverflowError, as xarray stops."""
    if value is None:
        return None
    try:
        items = np.ravel(value)
    except ValueError:  # a ragged list
        return "a list that is not flat (xarray cannot read it either)"
    for v in items:
        if v is None or isinstance(v, (str, bytes, np.str_, np.bytes_)):
            continue
        if not isinstance(v, (int, float, np.number, np.bool_)):
            return "not a number nor a list of numbers (xarray cannot read it either)"
        if isinstance(v, int):
            try:
                float(v)
            except OverflowError:
                return "an integer past a float64 (xarray cannot compare with it either)"
    return None


def _decoded_range(
    stored: np.dtype, values: np.dtype, ints: dict[str, int]
) -> stages.Interval | None:
    """The range of integers a CF-packed integer variable decodes to (``stored`` times its
    integer ``scale_factor``, plus its ``add_offset``: int8 times 3 lies within +-384, where
    the whole of int64 had been assumed, and a chain that cannot overflow was refused,
    helper-39); the whole of ``values`` where that product passes it (NumPy's int64 decode
    then wraps), None where nothing is packed as integers."""
    if not ints or stored.kind not in "iu":
        return None
    rng = stages.Interval.of(stored)
    if "scale_factor" in ints:
        rng = rng * ints["scale_factor"]
    if "add_offset" in ints:
        rng = rng + ints["add_offset"]
    whole = stages.Interval.of(values)
    return rng if whole.lo <= rng.lo and rng.hi <= whole.hi else whole


def integer_decoding_note(
    where: str, unpacking: Unpacking | None, stored: np.dtype | None = None
) -> str | None:
    """The plan's note for an input variable decoded to an integer dtype (an integer
    ``scale_factor``, as xarray decodes it: int64) whose elements may have no value there:
    where it declares fill values (an element equal to one is missing), or where its stored
    dtype ``stored`` is a float (a NaN, an infinity, a value past int64). A block holding such
    an element stops the run (:func:`unheld_error`: int64 holds no NaN), which only its values
    can show, so the plan says so up front (F-B2: a user learned it mid-run), with the fix:
    the packing attributes written as floats in the input (the config offers no other:
    ``input.mask_and_scale: false`` refuses a packed variable). None for a float decoding, or
    an integer one of integers without fill values. Reads no data."""
    ints = _integer_packing(unpacking)
    floats_stored = stored is not None and np.dtype(stored).kind == "f"
    if unpacking is None or not ints or not (unpacking.fill_values or floats_stored):
        return None
    dtype = np.dtype(unpacking.dtype)
    said = ", ".join(f"{k}={v!r}" for k, v in ints.items())
    missing = []
    if unpacking.fill_values:
        fills = unpacking.said_fills()
        missing.append(f"a missing element (stored {fills}, its _FillValue/missing_value)")
    if floats_stored:
        missing.append(f"a stored NaN, infinity or value past {dtype}")
    floats = " and ".join(f"{k}: {float(v)!r}" for k, v in ints.items())
    return (
        f"input variable {name_shown(where)} decodes to {dtype} because of its integer {said} (as "
        f"xarray decodes it), which holds no NaN: a block holding {' or '.join(missing)} "
        f"stops the run there; write {floats} in the input's attributes so that it decodes "
        "to floats (NaN where missing), or make sure no element holds such a value"
    )


def _integer_packing(unpacking: Unpacking | None) -> dict[str, int]:
    """The packing attributes of ``unpacking`` that are integers (they make xarray decode to
    an integer dtype)."""
    if unpacking is None or np.dtype(unpacking.dtype).kind not in "iu":
        return {}
    found: dict[str, Any] = {
        "scale_factor": unpacking.scale_factor,
        "add_offset": unpacking.add_offset,
    }
    return {k: v for k, v in found.items() if isinstance(v, int)}
