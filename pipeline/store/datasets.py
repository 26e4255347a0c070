"""xarray Datasets in Zarr: the group a variable lives in, its dimensions and coordinates, and
the frame of an output Dataset around the computed variable.

xarray writes a Dataset as a Zarr group: each variable an array whose dimension names are Zarr
v3's ``dimension_names`` (or, in v2, the ``_ARRAY_DIMENSIONS`` attribute), coordinate variables
as arrays beside it, the Dataset's attributes on the group, and usually consolidated metadata.
To give back what ``xr.open_zarr`` opened, an output carries the variable's dimension names and
attributes, and, when the variable lives in a group, the group's attributes and coordinates,
written by xarray itself (so their encodings are xarray's own), and consolidated metadata where
the input had it.
"""

from __future__ import annotations

import contextlib
import json
import re
import warnings
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.errors import (
    ListingError,
    cause,
    name_shown,
    names_shown,
    some_shown,
    storage_failure,
    wrong_library,
)
from pipeline.store.arrays import (
    RUN_RECORD,
    enclosing_groups,
    exact_fill_said,
    fill_said,
    fills_agree,
    format_warnings_ignored,
    is_member_name,
    run_record,
    xarray_dimension_names,
)
from pipeline.store.location import key_under, listing_error, whole_read_options
from pipeline.store.references import (
    CARRIED,
    CARRIED_REFERENCES,
    DROPPED,
    GLOBAL_COORDINATES,
    REFERENCES,
    reference_groups,
    references,
)


@dataclass(frozen=True)
class Variable:
    """An xarray variable stored as a Zarr array."""

    group: str
    """path of the group that holds it ('' at the root of the store)"""
    name: str
    """the array's name in the group ('' for an array in no group: at the root of its store,
    or under a path that Zarr opens as no group)"""
    dims: tuple[str | None, ...]
    """its dimension names, as xarray reads them: a null one (v3 ``dimension_names`` such
    as [null, "x"], or a v2 ``_ARRAY_DIMENSIONS`` [null, "x"]) is the dimension None, which
    xarray reads, and writes, as it is (:func:`variable_of`)"""
    attrs: dict[str, Any] = field(default_factory=dict, compare=False)
    """its attributes as xarray sees them (Zarr v2's ``_ARRAY_DIMENSIONS`` left out)"""
    coords: tuple[str, ...] = ()
    """variables of the group to carry over: dimension coordinates, those the variable's
    attributes of :data:`CARRIED_REFERENCES` name (``coordinates``, ``grid_mapping``: its
    grid mappings and the coordinates each names, ``cell_measures``, ``formula_terms``,
    ``geometry``, ...; not its own :data:`~pipeline.store.references.BOUNDS`, which bound
    the input's values, not the computed ones), and, in turn, those each of these names by
    :data:`CARRIED` and its dimension coordinates (a coordinate's ``bounds``, the terms of
    its ``formula_terms``: :func:`carried_arrays`)"""
    listed: tuple[str, ...] = ()
    """those of ``coords`` that the variable's own ``coordinates`` does not name but xarray
    reads as its coordinates all the same: named by the group's :data:`GLOBAL_COORDINATES`
    or another array's ``coordinates`` (xarray's ``decode_coords`` collects them from every
    variable and the group), on dimensions the variable has (:func:`listed_elsewhere`); the
    output variable's ``coordinates`` names them (:func:`with_listed`)"""
    consolidated: bool = False
    """whether the group has consolidated metadata"""
    sizes: dict[str, int] = field(default_factory=dict, compare=False)
    """the size of each dimension of the variable and of its coordinates (the variable's,
    where a coordinate has another)"""
    conflicts: tuple[tuple[str, str, int, str, int], ...] = field(default=(), compare=False)
    """coordinates with a dimension of another size than the variable's (or an earlier
    coordinate's), which xarray refuses (one size per dimension in a Dataset): (coordinate,
    dimension, its size, the array that has the other size, that size)"""
    unreadable: str = ""
    """why Zarr cannot open the group that holds it, though the group is there (its metadata,
    or a member's in its consolidated copy: a codec no installed package provides, a fill
    value its dtype cannot hold, ...), as a line's cause; '' where it opens. Such a variable
    has no ``coords``: ``xr.open_zarr`` fails on its group too"""


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """zarr warns that v3 consolidated metadata, and string dtypes (which xarray writes for a
    coordinate of strings, and the output keeps as xarray would), are not in the v3 spec yet:
    not the user's concern, and they came past ``-q``."""
    from zarr.errors import UnstableSpecificationWarning

    # under the lock of arrays' filter: catch_warnings is not thread-safe (see there)
    with format_warnings_ignored(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", UnstableSpecificationWarning)
        yield


def _document(meta: Any) -> dict[str, Any]:
    """A node's metadata (zarr-python's ``ArrayV2Metadata``, ``ArrayV3Metadata``,
    ``GroupMetadata``) as its JSON document, quietly: zarr-python warns, in two lines of
    stderr, each time it writes out a v3 data type that has no spec yet, as a coordinate of
    fixed-length strings (``<U5``, ``S5``: what xarray writes for one, and the output keeps as
    xarray writes it) has; every run and ``verify`` compare such documents (:func:`stale`,
    :func:`consolidated_differences`), and had printed it."""
    with _quiet():
        return dict(meta.to_dict())


def dims_of(arr: Any) -> tuple[str, ...] | None:
    """A Zarr array's dimension names: v3 ``dimension_names``, v2 ``_ARRAY_DIMENSIONS`` (as
    xarray reads them: :func:`_v2_names`), or, for a v2 array without that attribute, those
    of netCDF-C 4.8's NCZarr record (:func:`nczarr_dims`, as xarray's zarr backend reads
    them); None when it has none, or names that are not all text (a null one:
    :func:`dimension_names` keeps it). A v3 scalar has none to name: xarray writes
    none for it (zarr-python stores no empty ``dimension_names``) and reads it as a variable
    of no dimensions, ``()`` here too (it had been None, so a scalar coordinate that only
    another variable's ``coordinates`` listed was not carried, and verify passed)."""
    names = getattr(arr.metadata, "dimension_names", None)
    if names is None and arr.ndim == 0 and getattr(arr.metadata, "zarr_format", 2) == 3:
        return ()
    if names is None:
        names = _v2_names(arr)
    if names is None or len(names) != arr.ndim:
        return None
    if not all(isinstance(n, str) for n in names):
        return None
    return tuple(names)


def dimension_names(arr: Any) -> tuple[str | None, ...] | None:
    """A Zarr array's dimension names as given, some perhaps None (v3 ``dimension_names``
    such as (None, "x"), or a v2 ``_ARRAY_DIMENSIONS`` list of one name or null per
    dimension, or the names of its NCZarr record, :func:`nczarr_dims`): what an output made
    from it keeps; None where it has none (or a v2 list of
    another length or with other entries). Unlike :func:`dims_of`, which names an xarray
    variable's dimensions, a partial list is kept (helper-47: (None, "x") gave an output
    with no dimension names at all)."""
    names = getattr(arr.metadata, "dimension_names", None)
    if names is None:
        names = _v2_names(arr)
    if names is None or len(names) != arr.ndim:
        return None
    if not all(n is None or isinstance(n, str) for n in names):
        return None
    return tuple(names)


def _v2_names(arr: Any) -> tuple[Any, ...] | list[str] | None:
    """A Zarr v2 array's ``_ARRAY_DIMENSIONS`` as xarray reads it
    (:func:`~pipeline.store.arrays.xarray_dimension_names`: a text is one name, ``"x"``, and
    a JSON object's keys are its names; None for a number, a boolean, null, which
    ``arrays.check_documents`` refuses for the input and what it reads); where it has no such
    attribute, the names of its NCZarr record (:func:`nczarr_dims`), as xarray's zarr backend
    reads them (only where the attribute is absent: a null one is not replaced). None for a
    Zarr v3 array: xarray reads its names from ``dimension_names`` only, and an
    ``_ARRAY_DIMENSIONS`` attribute there is an attribute (:func:`attribute_names_only`: it
    had been read as names, and a variable so named run as one of a Dataset that xarray
    cannot open)."""
    if getattr(arr.metadata, "zarr_format", 2) == 3:
        return None
    attrs = dict(arr.attrs)
    if "_ARRAY_DIMENSIONS" in attrs:
        return xarray_dimension_names(attrs["_ARRAY_DIMENSIONS"])
    return nczarr_dims(arr)


def attribute_names_only(arr: Any) -> bool:
    """Whether ``arr`` is a Zarr v3 array of one or more dimensions without
    ``dimension_names`` that names them in an ``_ARRAY_DIMENSIONS`` attribute (Zarr v2's
    convention, as zarr-python 2 and xarray write v2 arrays, copied into v3 metadata):
    xarray reads a v3 array's names from ``dimension_names`` only, and ``xr.open_zarr`` of
    its group fails on it ("missing the `dimension_names` metadata")."""
    return (
        getattr(arr.metadata, "zarr_format", 2) == 3
        and arr.ndim > 0
        and getattr(arr.metadata, "dimension_names", None) is None
        and "_ARRAY_DIMENSIONS" in dict(arr.attrs)
    )


#: The key of netCDF-C 4.8.1's NCZarr record of an array in its ``.zarray`` (beside Zarr's
#: own keys, which zarr-python drops): ``{"dimrefs": ["/y", "/x"], "storage": "chunked"}``,
#: each dimension by its full path in the store. netCDF-C 4.9 writes ``_nczarr_array`` (with
#: ``_ARRAY_DIMENSIONS`` beside it), which xarray does not read, nor does the pipeline.
NCZARR_ARRAY = "_NCZARR_ARRAY"

_NCZARR_CACHE = "_pipeline_nczarr"


def nczarr_record(arr: Any) -> tuple[str, Any]:
    """(key, value) of the NCZarr record of the Zarr v2 array ``arr`` (:data:`NCZARR_ARRAY`
    of its ``.zarray``, read from the store: zarr-python keeps no key it does not know), or
    (key, None) where it has none or is no v2 array; key is the ``.zarray``'s path in the
    store. ``(key, ValueError)`` where the ``.zarray`` is not JSON. Read once per opened
    array, and only for one without ``_ARRAY_DIMENSIONS`` (:func:`dims_of`): one more GET of
    a small file over HTTP or S3, as xarray makes for it."""
    key = f"{arr.path}/.zarray" if arr.path else ".zarray"
    if getattr(arr.metadata, "zarr_format", 3) != 2:
        return key, None
    cached = vars(arr).get(_NCZARR_CACHE)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    from zarr.core.buffer import default_buffer_prototype
    from zarr.core.sync import sync

    try:
        raw = sync(arr.store_path.store.get(key, prototype=default_buffer_prototype()))
    except Exception:  # not readable now: reading its values says why
        raw = None
    found: Any = None
    if raw is not None:
        try:
            doc = json.loads(raw.to_bytes())
        except ValueError:
            found = ValueError
        else:
            found = doc.get(NCZARR_ARRAY) if isinstance(doc, dict) else None
    vars(arr)[_NCZARR_CACHE] = (key, found)
    return key, found


def nczarr_problem(arr: Any) -> tuple[str, str] | None:
    """(the ``.zarray``'s key, what is wrong with it in a few words) where the v2 array
    ``arr`` has no ``_ARRAY_DIMENSIONS`` and an NCZarr record that xarray fails on
    (``xr.open_zarr`` raises): the ``.zarray`` not JSON, the record no mapping, its
    ``dimrefs`` absent or no list of paths, or of another length than the array's
    dimensions. None where it has no record (an array without dimension names) or a sound
    one; a dimension the group's ``_NCZARR_GROUP`` does not define is read by its name, as
    xarray reads it (it does not look there)."""
    if "_ARRAY_DIMENSIONS" in dict(arr.attrs):
        return None
    key, record = nczarr_record(arr)
    if record is ValueError:
        return key, "is not JSON"
    if record is None:
        return None
    if not isinstance(record, dict):
        return key, f"has an {NCZARR_ARRAY} that is no mapping"
    refs = record.get("dimrefs")
    if not isinstance(refs, list) or not all(isinstance(r, str) for r in refs):
        return key, f"has an {NCZARR_ARRAY} whose dimrefs is no list of dimension paths"
    if len(refs) != arr.ndim:
        return key, (
            f"has an {NCZARR_ARRAY} whose dimrefs names {len(refs)} dimensions, "
            f"and the array has {arr.ndim}"
        )
    return None


def nczarr_dims(arr: Any) -> list[str] | None:
    """The dimension names of the Zarr v2 array ``arr`` by its NCZarr record (netCDF-C 4.8.1:
    :data:`NCZARR_ARRAY`'s ``dimrefs`` in its ``.zarray``), each the last part of its path
    (``/g/y`` is ``y``), as xarray's zarr backend reads them for an array without
    ``_ARRAY_DIMENSIONS`` (``_get_zarr_dims_and_attrs``); None where it has no such record, or
    a damaged one (:func:`nczarr_problem`, which the input's planning refuses)."""
    if nczarr_problem(arr) is not None:
        return None
    _, record = nczarr_record(arr)
    if not isinstance(record, dict):
        return None
    return [r.rsplit("/", 1)[-1] for r in record["dimrefs"]]


def _null_sizes_differ(dims: tuple[str | None, ...], shape: tuple[int, ...]) -> bool:
    """Whether the null names (None) of ``dims`` are given to axes of ``shape`` of different
    sizes, which xarray refuses as one dimension None of conflicting sizes."""
    return len({size for d, size in zip(dims, shape, strict=True) if d is None}) > 1


def variable_of(store: Any, path: str, arr: Any, renamed: bool = False) -> Variable | None:
    """The variable that the array ``arr`` at ``path`` of ``store`` (a zarr store object) is,
    with its group's coordinates; None for an array without dimension names. ``renamed``: the
    output variable takes another name than the input's, so an input that xarray reads as a
    coordinate of its Dataset (one that no dimension is, but that the group's or an array's
    ``coordinates`` lists: a 2-D ``lat``) is one of its own coordinates too, as xarray's
    ``(ds.lat * 5).rename("lat5")`` keeps the input's ``lat`` beside the computed values (it
    had been left out)."""
    import zarr
    from zarr.errors import NodeNotFoundError

    attrs = {k: v for k, v in dict(arr.attrs).items() if k != "_ARRAY_DIMENSIONS"}
    path = path.strip("/")
    group_path, _, name = path.rpartition("/")
    dims: tuple[str | None, ...] | None = dims_of(arr)
    if dims is None and name:
        # names for some dimensions only, in a group: xarray reads the variable, of a
        # dimension None for each null (helper-47a: it had been written as an array alone)
        dims = dimension_names(arr)
        if dims is not None and _null_sizes_differ(dims, tuple(arr.shape)):
            # null for axes of different sizes (tensorstore's unlabelled axes, ["time",
            # null, null]): no variable xarray reads ("conflicting sizes for dimension
            # None"), so the array alone, as one without names; it had been refused as
            # damaged dimension names, with the fix to restore them
            return None
    if dims is None:
        return None
    if not name:  # the array is the store's root: no group, nothing beside it
        return Variable(group="", name="", dims=dims, attrs=attrs)
    try:
        with _quiet():
            group = zarr.open_group(store=store, path=group_path or None, mode="r")
    except Exception as e:
        if isinstance(e, NodeNotFoundError | FileNotFoundError | KeyError) or storage_failure(e):
            # no group metadata above the array (xarray cannot open it either), or a store
            # that will not give it: the array alone, its names as given (a null one too)
            if None in dims:
                return None
            return Variable(group="", name="", dims=dims, attrs=attrs)
        # a group that is there but that Zarr cannot read (a member's codec, in its
        # consolidated copy, that no installed package provides): a Dataset xarray cannot
        # open, which had been run silently as the array alone, written at the output's root
        return Variable(group=group_path, name=name, dims=dims, attrs=attrs, unreadable=cause(e))
    found = listings(store, group, group_path)
    listed = listed_elsewhere(store, group_path, name, dims, attrs, found)
    own = references(attrs, CARRIED_REFERENCES)  # its own bounds bound the input's values
    # a dimension coordinate (``lat`` on ``lat``) is its dimension's coordinate too: carried
    # as the input's, beside the computed values (an output of its name is refused); so is a
    # coordinate on no dimension of its own name under another output name (xarray's
    # ``ds.lat`` keeps ``lat`` among its coordinates), named by the output's ``coordinates``
    itself = "" if name in dims else name
    if renamed and name not in dims and any(n == name for _, n in found):
        itself = ""
        listed = [*listed, name]
    members = carried_arrays(
        store, group_path, itself, [*(d for d in dims if d is not None), *own, *listed]
    )
    coords = tuple(members)
    sizes = {d: size for d, size in zip(dims, arr.shape, strict=True) if d is not None}
    by = dict.fromkeys(dims, name)
    conflicts = []
    for c in coords:
        for dim, size in zip(dims_of(members[c]) or (), members[c].shape, strict=False):
            by.setdefault(dim, c)
            if sizes.setdefault(dim, size) != size:
                conflicts.append((c, dim, int(size), by[dim], int(sizes[dim])))
    return Variable(
        group=group_path,
        name=name,
        dims=dims,
        attrs=attrs,
        coords=coords,
        listed=tuple(n for n in listed if n in members),
        consolidated=_consolidated(group),
        sizes=sizes,
        conflicts=tuple(conflicts),
    )


def inherited_coordinates(store: Any, var: Variable) -> list[tuple[str, str]]:
    """(group, name) of each dimension coordinate that ``xr.open_datatree`` gives the
    variable ``var`` from a group above its own: a DataTree node inherits its ancestors'
    indexed coordinates (a 1-D array named for its dimension), the nearest first, where its
    own group has none of that name; ``xr.open_zarr`` of the variable's group does not read
    them, and neither does the output, which carries its own group's only. Empty for a
    variable at the store's root or in no group."""
    import zarr

    if not var.name or not var.group:
        return []
    wanted = [d for d in var.dims if d is not None and d not in var.coords and d != var.name]
    parts = var.group.split("/")
    found: list[tuple[str, str]] = []
    for depth in range(len(parts) - 1, -1, -1):
        path = "/".join(parts[:depth])
        try:
            with _quiet():
                group = zarr.open_group(store=store, path=path or None, mode="r")
        except Exception:  # no group there: nothing a DataTree reads from it
            continue
        for d in list(wanted):
            try:
                with _quiet():
                    member = group.get(d)
            except Exception:
                continue
            if isinstance(member, zarr.Array) and dims_of(member) == (d,):
                wanted.remove(d)
                if tuple(member.shape) == (var.sizes.get(d),):  # else no tree opens there
                    found.append((path, d))
    return found


def _indexes(store: Any, group: str) -> dict[str, Any]:
    """The dimension coordinates of the group ``group`` of ``store`` as xarray indexes them
    (pandas indexes, decoded: times as dates), which a DataTree aligns its groups by; {}
    where xarray does not open the group (no DataTree opens there either)."""
    return _aligned_by(store, group)[1]


def _aligned_by(store: Any, group: str) -> tuple[dict[str, int], dict[str, Any]]:
    """(the sizes of its dimensions, its indexes: :func:`_indexes`) of the group ``group`` of
    ``store`` as xarray opens it; ({}, {}) where xarray does not open it."""
    import xarray as xr

    try:
        with _quiet():
            ds = xr.open_zarr(store, group=group or None, consolidated=False, chunks=None)
            sizes = {str(k): int(v) for k, v in ds.sizes.items()}
            return sizes, {str(k): v for k, v in ds.indexes.items()}
    except Exception:
        return {}, {}


def misaligned_descendant(
    src_store: Any, var: Variable, store: Any, group: str
) -> tuple[str, str, str] | None:
    """Where a Dataset output of the variable ``var`` (of ``src_store``), written with its
    coordinates in the group ``group`` of ``store``, would leave a group below it not aligned
    with it, as ``xr.open_datatree`` requires: (that group's path, the dimension, how it
    differs) for the first (breadth first, by name: zarr-python lists a group's members in no
    fixed order, and which of two such groups was named had depended on it, h78b) with a
    dimension the output writes (its variable's or its coordinates') of another size, on any
    of its variables, with a coordinate or without, or its own coordinate there of other values
    than the one the output carries, where no group between them has a coordinate of that
    dimension (which it is aligned with already); None where every one agrees."""
    own: list[dict[str, Any]] = []  # the output's own indexes, read at the first need

    def own_index(d: str) -> Any:
        """The output's own coordinate of ``d`` as xarray indexes it (None: none)."""
        if d not in var.coords:
            return None
        if not own:
            own.append(_indexes(src_store, var.group))
        return own[0].get(d)

    # its variable's dimensions and its coordinates'
    return _misaligned_below(dict(var.sizes), own_index, store, group)


def misaligned_sizes_below(
    wanted: dict[str, int], store: Any, group: str
) -> tuple[str, str, str] | None:
    """Where an array alone (no coordinates of its own) of the dimensions ``wanted`` (name:
    size), written into the group ``group`` of ``store``, would leave a group below it not
    aligned with it, as :func:`misaligned_descendant` holds a Dataset output (h87g: an array
    of x 64 above a group of x 32 was written, exit 0, and ``xr.open_datatree`` then failed,
    "not aligned with its parents"): (that group's path, the dimension, how it differs), or
    None where every one agrees."""
    return _misaligned_below(wanted, lambda d: None, store, group)


def _misaligned_below(
    wanted: dict[str, int], own_index: Callable[[str], Any], store: Any, group: str
) -> tuple[str, str, str] | None:
    """:func:`misaligned_descendant`'s walk for an output of the dimensions ``wanted``,
    whose own coordinate of a dimension is ``own_index(d)`` (None: none)."""
    import zarr

    try:
        with _quiet():
            top = zarr.open_group(store=store, path=group or None, mode="r")
            below = [(_key(group, k), set(wanted)) for k in sorted(top.group_keys())]
    except Exception:  # no group there yet: nothing below it
        return None
    while below:
        path, dims = below.pop(0)
        sizes, indexes = _aligned_by(store, path)
        for d in sorted(dims):
            if d in sizes and sizes[d] != wanted[d]:
                return (
                    path,
                    d,
                    f"has the dimension {d!r} of {sizes[d]} elements, the output's {wanted[d]}",
                )
            if d in indexes:
                mine = own_index(d)
                if mine is not None and not mine.equals(indexes[d]):
                    return (
                        path,
                        d,
                        f"has the dimension coordinate {d!r} of other values than the output's",
                    )
        left = {d for d in dims if d not in indexes}
        if not left:
            continue
        try:
            with _quiet():
                g = zarr.open_group(store=store, path=path, mode="r")
                below += [(f"{path}/{k}", left) for k in sorted(g.group_keys())]
        except Exception:
            continue
    return None


def misaligned_sizes(
    wanted: dict[str, int], ancestors: list[tuple[Any, str, str]]
) -> tuple[str, str, str] | None:
    """Where an array alone (no coordinates of its own) of the dimensions ``wanted`` (name:
    size), in a group below each of ``ancestors`` ((store, group path, label), nearest
    first), would not be aligned with them, as ``xr.open_datatree`` requires: each dimension
    sized by the nearest group that has it (a variable's, with a coordinate or without), as
    :func:`misaligned_ancestor` holds a Dataset output: (the group's label, the dimension,
    how it differs), or None where every one agrees."""
    sized: set[str] = set()
    for store, group, label in ancestors:
        sizes = _aligned_by(store, group)[0]
        for d in sorted(wanted):
            if d in sizes and d not in sized:
                sized.add(d)
                if sizes[d] != wanted[d]:
                    return (
                        label,
                        d,
                        f"has the dimension {d!r} of {sizes[d]} elements, the output's {wanted[d]}",
                    )
    return None


def misaligned_ancestor(
    src_store: Any, var: Variable, ancestors: list[tuple[Any, str, str]]
) -> tuple[str, str, str] | None:
    """Where a Dataset output of the variable ``var`` (of ``src_store``), written with its
    coordinates, would not be aligned with the groups above it, as ``xr.open_datatree`` of
    the store requires (it refuses the whole tree: "group ... is not aligned with its
    parents"): (the group's label, the dimension, how it differs), or None where every one
    agrees. xarray's rule (``check_alignment``: ``align(group, inherited, join="exact")``)
    holds the output's group against the Dataset it inherits from every group of
    ``ancestors`` ((store, group path, label), nearest first): each dimension of any of
    their variables, data variables without a coordinate among them (h85e: a root's
    ``q(t=5)``, no coordinate ``t``, above an output of ``t`` of 10, exit 0, and the tree
    no longer opened), sized by the nearest group that has it, and each index (a dimension
    coordinate) by the nearest group that has one. Each dimension the output writes (its
    variable's and its coordinates') must be of their size, and where the output carries
    a coordinate of its own there, of the values of their index."""
    wanted = dict(var.sizes)
    if not wanted:
        return None
    sized: set[str] = set()
    indexed: set[str] = set()
    own: dict[str, Any] | None = None
    for store, group, label in ancestors:
        sizes, found = _aligned_by(store, group)
        for d in sorted(wanted):
            size = wanted[d]
            if d in sizes and d not in sized:
                sized.add(d)
                if sizes[d] != size:
                    return (
                        label,
                        d,
                        f"has the dimension {d!r} of {sizes[d]} elements, the output's {size}",
                    )
            if d not in found or d in indexed:
                continue
            indexed.add(d)
            if len(found[d]) != size:  # below it, a nearer group's dimension of d unindexed
                return (
                    label,
                    d,
                    f"has the dimension {d!r} of {len(found[d])} elements, the output's {size}",
                )
            if d not in var.coords:  # the output's dimension unindexed: its size alone
                continue
            if own is None:
                own = _indexes(src_store, var.group)
            if d in own and not own[d].equals(found[d]):
                return (
                    label,
                    d,
                    f"has the dimension coordinate {d!r} of other values than the output's",
                )
    return None


def listings(store: Any, group: Any, path: str) -> list[tuple[str, str]]:
    """(lister, name) for each name that a ``coordinates`` attribute in the group ``group``
    (opened, at ``path`` of ``store``) lists: the group's :data:`GLOBAL_COORDINATES` (lister
    '') and each array's (as xarray's ``decode_coords`` collects the Dataset's coordinates).
    Arrays that cannot be listed or read list nothing."""
    found = [("", n) for n in global_coordinates(store, path)]
    try:
        for k, a in readable_arrays(group)[0]:
            found += [(k, n) for n in references(dict(a.attrs), ("coordinates",))]
    except Exception:  # a group its server will not list: the group's own list alone
        pass
    return found


def listed_elsewhere(
    store: Any,
    path: str,
    name: str,
    dims: tuple[str | None, ...],
    attrs: dict[str, Any],
    listed: list[tuple[str, str]],
) -> list[str]:
    """The arrays of the group at ``path`` of ``store`` that xarray reads as coordinates of
    its variable ``name`` (dimensions ``dims``, attributes ``attrs``) although its own
    ``coordinates`` does not name them: those the group's :data:`GLOBAL_COORDINATES` or
    another array's ``coordinates`` lists (``listed``: :func:`listings`; xarray makes each a
    coordinate of the Dataset), whose dimensions are among ``dims`` (a DataArray taken from
    the Dataset keeps those); one the variable's own ``ancillary_variables`` (a kind of
    :data:`DROPPED`) names too is among them: xarray's ``decode_coords`` (``True`` or
    ``"all"``) makes it a coordinate of the Dataset all the same, and ``ds[name]`` keeps it (it
    had been left out)."""
    skip = {name, *dims, *references(attrs, ("coordinates",))}
    kept = []
    for n in dict.fromkeys(n for lister, n in listed if lister != name):
        a = None if n in skip else _own_array(store, _key(path, n))
        d = dims_of(a) if a is not None else None
        if d is not None and set(d) <= set(dims):
            kept.append(n)
    return kept


def listed_names(store: Any, var: Variable) -> list[str]:
    """The names that the group's :data:`GLOBAL_COORDINATES` or another array's
    ``coordinates`` lists (:func:`listings`) in the group of ``var`` that xarray may give
    ``var``: those whose array, as the group's consolidated copy or listing gives it, lies on
    ``var``'s dimensions, or that it does not give (:func:`listed_elsewhere` opens each by its
    key to see); [] for an array alone or a group that cannot be read."""
    import zarr

    if not var.name:
        return []
    try:
        with _quiet():
            opened = zarr.open_group(store=store, path=var.group or None, mode="r")
    except Exception:
        return []
    try:
        members = dict(readable_arrays(opened)[0])
    except Exception:  # a member not found by its key, or no listing: none known
        members = {}
    found = []
    for lister, n in listings(store, opened, var.group):
        d = dims_of(members[n]) if n in members else None
        if lister != var.name and n != var.name and (d is None or set(d) <= set(var.dims)):
            found.append(n)
    return list(dict.fromkeys(found))


def with_listed(attrs: dict[str, Any], var: Variable) -> dict[str, Any]:
    """``attrs`` (the output variable's) with its ``coordinates`` naming, after those it
    names, the coordinates of ``var.listed``: xarray reads them as the input variable's
    coordinates, though only the group or another variable named them; named by the output
    variable itself, xarray reads them as its coordinates, as CF has it."""
    if not var.listed:
        return attrs
    own = attrs.get("coordinates")
    names = own.split() if isinstance(own, str) else []
    return {**attrs, "coordinates": " ".join(dict.fromkeys([*names, *var.listed]))}


def not_json(e: BaseException) -> bool:
    """Whether ``e`` (or what it was raised from) is a metadata document that is not JSON (a
    truncated or hand-edited ``.zattrs``, ``.zarray`` or ``zarr.json``: json's
    ``JSONDecodeError``, or bytes that are no UTF-8 text)."""
    seen: BaseException | None = e
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, json.JSONDecodeError | UnicodeDecodeError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def readable_arrays(group: Any) -> tuple[list[tuple[str, Any]], list[str] | None]:
    """The arrays of the zarr group ``group`` (opened), by name, as ``group.arrays()`` gives
    them, sorted by name (zarr-python gives them in no fixed order: the order in which their
    metadata reads complete, of a listing in the file system's own order; the coordinates
    other arrays list for a variable had been written in that order, and which of several
    arrays a refusal named depended on it, h78b), read around a member whose metadata is
    not JSON (:func:`not_json`), which made that call fail for every member, and made the
    Dataset's other arrays (their ``coordinates``, as xarray reads them) unseen: and the
    names of the members kept where
    one was so left out (for :func:`_listed_store`), else None. Such a member is not one the
    variable names (``arrays.check_documents`` refused the input then): another variable of
    the Dataset, which ``xr.open_zarr`` of a consolidated group reads around too (from the
    copy). Other errors are raised."""
    import zarr
    from zarr.core.sync import sync

    try:
        with _quiet():
            return sorted(group.arrays(), key=lambda found: str(found[0])), None
    except Exception as e:
        if not not_json(e):
            raise
    prefix = f"{group.path}/" if group.path else ""

    async def names() -> list[str]:
        return [n async for n in group.store_path.store.list_dir(prefix)]

    found: list[tuple[str, Any]] = []
    kept: list[str] = []
    for name in sorted(sync(names())):
        if not is_member_name(name):
            continue
        try:
            with _quiet():
                node = group[name]
        except Exception as e:
            if not_json(e):
                continue  # not needed: read around
            if isinstance(e, KeyError):
                continue  # a folder that is no Zarr node
            raise
        kept.append(name)
        if isinstance(node, zarr.Array):
            found.append((name, node))
    return found, kept


def _key(group: str, name: str) -> str:
    return f"{group}/{name}" if group else name


#: How the names of netCDF-C's own attributes begin (any case): NCZarr's records of the
#: store's layout (``_nczarr_attr``: each attribute's netCDF type, ``_nczarr_array``: the
#: dimensions it references and its storage, ``_nczarr_group``, ``_nczarr_superblock``; in
#: capitals, ``_NCZARR_ATTR``, before netCDF-C 4.9) and ``_NCProperties`` (the library that
#: wrote it). xarray's zarr backend hides every attribute so named, of a group (any Zarr
#: format) and of a Zarr v2 array (``_get_zarr_dims_and_attrs``).
NETCDF_PREFIX = "_nc"


def without_netcdf_records(attrs: dict[str, Any]) -> dict[str, Any]:
    """``attrs`` without netCDF-C's own attributes (:data:`NETCDF_PREFIX`): they describe
    how the input was laid out and by which library, which the output, written by the
    pipeline and xarray, is not (carried, ``_nczarr_attr`` listed the input's attributes'
    types beside the output's, and a v3 output showed it to xarray). What xarray reads of a
    v2 input's attributes; of a v3 one's, less these records too."""
    return {k: v for k, v in attrs.items() if not str(k).lower().startswith(NETCDF_PREFIX)}


def carried_arrays(store: Any, group: str, name: str, wanted: list[str]) -> dict[str, Any]:
    """The arrays of ``group`` carried beside its variable ``name``, opened from their own
    metadata (not a consolidated copy of it: see :func:`stale`), by name: those of
    ``wanted`` that the group holds, and, in turn, the dimension coordinates of each and the
    arrays each names by an attribute of :data:`CARRIED` (a coordinate's bounds, the terms of
    its ``formula_terms``, a cell measure's own coordinates, ...), until nothing more is
    named. ``name`` itself is never one of them; a name the group does not hold is skipped."""
    members: dict[str, Any] = {}
    todo = list(wanted)
    while todo:
        n = todo.pop(0)
        if n == name or n in members:
            continue
        a = _own_array(store, _key(group, n))
        if a is None:
            continue
        members[n] = a
        todo += [*(dims_of(a) or ()), *references(dict(a.attrs), CARRIED)]
    return members


def only_written(attrs: dict[str, Any], key: str, written: tuple[str, ...]) -> str | None:
    """The CF attribute ``key`` of ``attrs`` naming only variables of ``written``: an entry of
    ``cell_measures`` or ``formula_terms`` whose variables are not all written goes whole, as
    does a grid mapping of ``grid_mapping`` that is not written (of the coordinates its long
    form names, those not written go; a single grid mapping left with none is written in the
    short form); None where it names none of them."""
    value = attrs.get(key)
    if not isinstance(value, str):
        return None
    kept: list[str] = []
    mappings: list[tuple[str, list[str]]] = []  # grid_mapping's long form: (crs, its names)
    for k, names in reference_groups(value, key):
        if not k:
            kept += [n for n in names if n in written]
        elif key == "grid_mapping":
            if k in written:
                mappings.append((k, [n for n in names if n in written]))
        elif names and all(n in written for n in names):
            kept += [f"{k}:", *names]
    if len(mappings) == 1 and not mappings[0][1]:
        kept.append(mappings[0][0])
    else:
        kept += [w for k, names in mappings if names for w in (f"{k}:", *names)]
    return " ".join(kept) or None


def with_written_references(attrs: dict[str, Any], written: tuple[str, ...]) -> dict[str, Any]:
    """``attrs`` (of an array an output holds: the variable, or one carried beside it) with
    each CF attribute that names other variables (:data:`REFERENCES`) naming only those of
    ``written`` (the arrays carried beside the output variable), left out where it names none
    of them (an output written alone): readers (xarray, cf-xarray, CF checkers) would look for
    the others, and not find them. Those of :data:`DROPPED` are always left out: what they
    name describes the input's stored values, not the computed ones, and is not carried."""
    out: dict[str, Any] = {}
    for key, value in attrs.items():
        if key in DROPPED:
            continue
        if key in REFERENCES and isinstance(value, str):
            value = only_written(attrs, key, written)
            if value is None:
                continue
        out[key] = value
    return out


def own_attributes(store: Any, group: str, name: str) -> dict[str, Any]:
    """The attributes of the array ``name`` of ``group`` from its own metadata ({} where
    there is no such array)."""
    arr = _own_array(store, _key(group, name))
    return {} if arr is None else dict(arr.attrs)


def group_attributes(store: Any, group: str) -> dict[str, Any]:
    """The attributes of the group at ``group`` of ``store`` from its own metadata (v3
    ``zarr.json``, v2 ``.zattrs``), as xarray reads them as a Dataset's (netCDF-C's own
    records left out, as xarray hides them: :func:`without_netcdf_records`); {} where there
    is no group."""
    import zarr

    try:
        with _quiet():
            found = zarr.open_group(
                store=store, path=group or None, mode="r", use_consolidated=False
            )
    except Exception:
        return {}
    return without_netcdf_records(dict(found.attrs))


def _same_value(a: Any, b: Any) -> bool:
    """Whether two attribute values are the same JSON (NaN equal to NaN, as stored; -0.0 not
    0.0); a NumPy value (xarray's attributes may hold one) as the JSON it is stored as, whole
    (its ``str`` elides a long array's middle)."""
    return _json_text(a) == _json_text(b)


def _json_text(v: Any) -> str:
    return json.dumps(v, sort_keys=True, default=lambda o: getattr(o, "tolist", o.__str__)())


def merged_group_attributes(
    existing: dict[str, Any], carried_before: list[dict[str, Any]], source: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The attributes of an output group a variable is written into, and those of them that
    come from the input's group: (all, carried).

    ``existing``: the group's attributes before the write; ``carried_before``: those earlier
    writes of this output carried there, one mapping a record (they may differ: a run stopped
    after it carried a new input's, its record says so beside the older one); ``source``: the
    input group's. An attribute of the group that is not one an earlier write carried with
    that value is the group's own (its owner's, or edited since) and stays as it is; the rest
    are the input's
    now: its attributes that the group has none of its own of. A user's group keeps its
    ``title`` or ``history``; an output's group, written again, takes what the input holds now
    (an attribute the input no longer has goes). Not xarray's ``to_zarr(mode="a")``, which
    replaces a group's attributes with the written Dataset's (``attrs.put``). xarray's
    :data:`GLOBAL_COORDINATES` is none of them, on either side: :func:`write_frame` makes it
    from what the group holds (carried, it named variables the output did not hold, and
    stayed the first input's list for a second variable written beside it)."""
    existing, source = (
        {k: v for k, v in d.items() if k != GLOBAL_COORDINATES} for d in (existing, source)
    )
    carried_before = [
        {k: v for k, v in d.items() if k != GLOBAL_COORDINATES} for d in carried_before
    ]
    own = {
        k: v
        for k, v in existing.items()
        if not any(k in before and _same_value(before[k], v) for before in carried_before)
    }
    carried = {k: v for k, v in source.items() if k not in own}
    return {**own, **carried}, carried


def global_coordinates(store: Any, group: str) -> tuple[str, ...]:
    """The names the :data:`GLOBAL_COORDINATES` attribute of the group at ``group`` of
    ``store`` lists, as xarray reads it (() where there is none, or no group)."""
    listed = group_attributes(store, group).get(GLOBAL_COORDINATES)
    return tuple(listed.split()) if isinstance(listed, str) else ()


def _list_global_coordinates(store: Any, group: str, listed: tuple[str, ...]) -> None:
    """Give the group at ``group`` of ``store`` the :data:`GLOBAL_COORDINATES` attribute that
    xarray wrote for the frame, with those of ``listed`` (what the group listed before) that
    the group still holds: its other variables' coordinates stay coordinates."""
    import zarr

    found = zarr.open_group(store=store, path=group or None, mode="r+", use_consolidated=False)
    attrs = dict(found.attrs)
    written = attrs.get(GLOBAL_COORDINATES)
    now = written.split() if isinstance(written, str) else []
    held = set(found.array_keys())
    names = sorted({*now, *(n for n in listed if n in held)})
    if names != now:
        found.attrs.put({**attrs, GLOBAL_COORDINATES: " ".join(names)})


def _own_array(store: Any, path: str) -> Any | None:
    """The array at ``path`` as its own metadata describes it (None where there is none)."""
    import zarr

    try:
        with _quiet():
            return zarr.open_array(store=store, path=path, mode="r")
    except Exception:
        return None


def carried_nbytes(store: Any, var: Variable) -> dict[str, int]:
    """{name: bytes} of each array carried beside ``var`` (``var.coords``) once xarray has
    decoded it, at most: its elements times the wider of its stored element and 8 bytes (CF
    decoding gives float64 or datetime64 at most). xarray reads these whole into the process
    that writes the Dataset (:func:`write_frame`, and :func:`frame_failure` at plan time)."""
    import math

    sizes: dict[str, int] = {}
    for n in var.coords:
        a = _own_array(store, _key(var.group, n))
        if a is not None:
            sizes[n] = math.prod(a.shape) * max(int(a.dtype.itemsize), 8)
    return sizes


def array_sizes(store: Any, path: str) -> dict[str, int]:
    """{dimension name: size} of the array at ``path`` of ``store``; {} when nothing there is
    an array with dimension names (xarray does not see it as a variable)."""
    import zarr

    try:
        with _quiet():
            arr = zarr.open_array(store=store, path=path, mode="r")
    except Exception:
        return {}
    return dict(zip(dims_of(arr) or (), arr.shape, strict=False))


def group_arrays(store: Any, group: str, listed: bool = False) -> dict[str, Any]:
    """The arrays directly in the group at ``group`` of ``store`` ('' for the root), opened
    read-only, by name (those ``xr.open_zarr`` reads for that group; ``listed``: those the
    group's own listing holds, an array added since its consolidated copy was made too); {}
    where there is no group."""
    import zarr

    try:
        with _quiet():
            found = zarr.open_group(
                store=store,
                path=group or None,
                mode="r",
                use_consolidated=False if listed else None,
            )
        return dict(readable_arrays(found)[0])
    except Exception:
        return {}


def tree_arrays(
    store: Any, skip: str = "", most: int = 3, group: str = ""
) -> tuple[list[str], list[str]]:
    """The arrays of at least one dimension of the Zarr hierarchy at ``group`` of ``store``
    ('' for its root; paths from the root; each group as its own listing holds it, not a
    consolidated copy, which may be stale), breadth first and by name, the array at
    ``skip`` and what is below it left out (the output itself): (the paths of the first
    ``most`` that have dimension names, :func:`dimension_names`: xarray's content, which
    ``xr.open_datatree`` of the hierarchy opens; those of the first ``most`` that have
    none, on which it fails for every group). A group that cannot be read is passed over."""
    import zarr

    named: list[str] = []
    unnamed: list[str] = []
    below = [group]
    while below and (len(named) < most or not unnamed):
        path = below.pop(0)
        try:
            with _quiet():
                g = zarr.open_group(
                    store=store, path=path or None, mode="r", use_consolidated=False
                )
                keys = sorted(g.group_keys())
        except Exception:
            continue
        for name, arr in group_arrays(store, path, listed=True).items():
            key = _key(path, name)
            if key != skip and arr.ndim > 0:
                (unnamed if dimension_names(arr) is None else named).append(key)
        below += [k for k in (_key(path, k) for k in keys) if k != skip]
    return named[:most], unnamed[:most]


def bounded_by(store: Any, var: Variable) -> list[tuple[str, dict[str, Any]]]:
    """(name, attributes) of each array of the group of ``var`` (as ``xr.open_zarr`` reads
    them: through the consolidated copy where there is one) whose ``bounds`` attribute names
    ``var``, in the group's order: xarray's ``decode_cf`` gives a time's bounds variable the
    time's ``units`` and ``calendar`` where it has none of its own
    (``conventions._update_bounds_attributes``), so what the variable decodes to depends on
    them. [] for an array alone, or a group that cannot be read (its reading says why)."""
    if not var.name:
        return []
    found = []
    for name, arr in group_arrays(store, var.group).items():
        attrs = dict(arr.attrs)
        if name != var.name and attrs.get("bounds") == var.name:
            found.append((name, attrs))
    return found


def bounds_members(store: Any, var: Variable, names: tuple[str, ...]) -> list[tuple[str, Any]]:
    """(name, attributes) of each array of the group of ``var``, from its own metadata, in
    the group's listing (as the output's frame reads them), where an array ``names`` names
    lacks ``units`` or ``calendar`` of its own: bounds to which a time of the group, by its
    ``bounds``, gives them (:func:`pipeline.ops.cf.bounds_time_attributes`); [] where each
    holds both (nothing can be given: no member is read), or for an array alone."""
    if not var.name:
        return []
    for name in names:
        arr = _own_array(store, _key(var.group, name))
        if arr is not None and not {"units", "calendar"} <= set(arr.attrs):
            break
    else:
        return []
    return [(n, dict(a.attrs)) for n, a in group_arrays(store, var.group, listed=True).items()]


def unopenable_arrays(
    store: Any, group: str, skip: tuple[str, ...], sizes: dict[str, int]
) -> list[tuple[str, str]]:
    """The arrays directly in the group ``group`` of ``store``, besides those of ``skip``
    (the output variable and the coordinates a run writes there), for which ``xr.open_zarr``
    of the group fails, each with why in a few words: one without dimension names (v3
    ``dimension_names`` absent, v2 ``_ARRAY_DIMENSIONS`` absent or of another length: xarray
    needs them for every array of a group, and raises a KeyError; a v3 scalar, such as a grid
    mapping's ``crs``, needs none: xarray gives it no dimensions), or one whose dimension has
    another size than ``sizes`` gives it (one size per dimension in a Dataset). An array
    added beside an output by another tool (zarr-python's ``create_array``) makes the whole
    output group unreadable to xarray, whatever the pipeline wrote (brk59). [] where none."""
    import zarr

    try:  # the group's own listing: a consolidated copy made before the array was added
        # lacks it, and xarray reads the listing (``consolidated=False``, or once the
        # copy is made again, as every run of the pipeline makes it)
        with _quiet():
            listed = dict(
                zarr.open_group(
                    store=store, path=group or None, mode="r", use_consolidated=False
                ).arrays()
            )
    except Exception:
        return []
    found: list[tuple[str, str]] = []
    for name, arr in sorted(listed.items()):
        if name in skip:
            continue
        scalar_v3 = arr.ndim == 0 and arr.metadata.zarr_format == 3  # xarray: no dimensions
        if dimension_names(arr) is None and not scalar_v3:
            found.append((name, "an array without dimension names"))
            continue
        for dim, size in zip(dims_of(arr) or (), arr.shape, strict=False):
            wanted = sizes.get(dim)
            if wanted is not None and wanted != size:
                found.append(
                    (name, f"an array whose dimension {dim!r} has {size} elements, not {wanted}")
                )
                break
    return found


def unopenable_fix(found: Sequence[tuple[str, str]]) -> str:
    """What to do about the arrays ``found`` (:func:`unopenable_arrays`' (name, why), the
    first's reason deciding the words) of an output group that xarray cannot open, in words:
    each of them named, as the line names them (:func:`unopenable_others`; the first alone
    had been, and following that fix met the next refusal, h86g). The pipeline never deletes
    nor edits an array it did not write, so no command of it is the fix."""
    name, why = found[0]
    again = (
        "dimension names (zarr-python's `dimension_names=`, or xarray)"
        if why.startswith("an array without dimension names")
        else "dimensions of the same sizes"
    )
    if len(found) == 1:
        return (
            f"remove {name!r} from the group (`del group[{name!r}]` in zarr-python), or write it "
            f"again with {again}"
        )
    shown = some_shown([repr(n) for n, _ in found])
    return (
        f"remove each of {shown} from the group (`del group[{name!r}]` in zarr-python, and so "
        f"on), or write them again with {again}"
    )


def unopenable_others(found: Sequence[tuple[str, str]]) -> str:
    """Words naming every array of ``found`` (:func:`unopenable_arrays`' (name, why)) past the
    first, which a line names itself: ``" (and 'b', 'c', which xarray cannot open either)"``,
    three by name then how many more (:func:`~pipeline.errors.some_shown`; a count alone had
    been said, h85b); '' where there is one."""
    if len(found) < 2:
        return ""
    return f" (and {some_shown([repr(n) for n, _ in found[1:]])}, which xarray cannot open either)"


def dataset_variable_name(store: Any, path: str) -> str:
    """The name of the array at ``path`` of ``store`` when it is a variable of an xarray
    Dataset (an array with dimension names, inside a group), or one meant as such, which
    planning refuses (a v3 array with its names only in an ``_ARRAY_DIMENSIONS`` attribute:
    :func:`attribute_names_only`); '' otherwise, and when nothing readable is there (whoever
    reads it next names that problem)."""
    import zarr

    try:
        with _quiet():
            arr = zarr.open_array(store=store, path=path.strip("/"), mode="r")
        var = variable_of(store, path, arr)
        if var is None and attribute_names_only(arr):
            return path.strip("/").rpartition("/")[2]
    except Exception:  # e.g. attributes that are a list (arrays.check_documents says so)
        return ""
    return var.name if var is not None else ""


def _consolidated(group: Any) -> bool:
    """Whether ``group`` has consolidated metadata, its own or the store root's (where xarray
    writes it for a Dataset in a group, and where ``xr.open_zarr`` looks for it)."""
    import zarr

    if _own_consolidated(group):
        return True
    if not group.path:
        return False
    try:
        with _quiet():
            root = zarr.open_group(store=group.store_path.store, mode="r")
    except Exception:
        return False
    return _own_consolidated(root)


def has_consolidated(store: Any, group: str) -> bool:
    """Whether the group at ``group`` of ``store`` has consolidated metadata, its own or the
    store root's (False where there is no group)."""
    import zarr

    try:
        with _quiet():
            return _consolidated(zarr.open_group(store=store, path=group or None, mode="r"))
    except Exception:
        return False


def _own_consolidated(group: Any) -> bool:
    meta = group.metadata
    if getattr(meta, "zarr_format", 3) == 2:
        return bool(group.store_path.store) and _exists(group, ".zmetadata")
    return getattr(meta, "consolidated_metadata", None) is not None


def _exists(group: Any, key: str) -> bool:
    from zarr.core.sync import sync

    prefix = group.path + "/" if group.path else ""
    return bool(sync(group.store_path.store.exists(prefix + key)))


@dataclass(frozen=True)
class Stale:
    """Where the consolidated metadata that ``xr.open_zarr`` reads disagrees with what a
    member of the group holds in its own metadata (the member changed after consolidation)."""

    member: str
    """the array's name in the group ('' for the group itself)"""
    part: str
    """'attributes', 'structure' (shape, dtype, chunks, codecs, fill value, dimension names:
    xarray would read other values), 'unlisted' (the consolidated copy lacks the member) or
    'gone' (it lists a coordinate the group no longer holds)"""
    keys: tuple[str, ...] = ()
    """the attributes or metadata fields that differ"""
    said: str = ""
    """the difference in a few words"""
    values: tuple[tuple[str, Any, Any], ...] = ()
    """for a member's 'attributes': each differing attribute's (name, value in the
    consolidated copy, value in its own metadata; None where absent)"""
    attributes: tuple[dict[str, Any], dict[str, Any]] = field(
        default=({}, {}), compare=False, repr=False
    )
    """for a member's 'attributes': all of them, in the consolidated copy and in its own
    metadata (whether a ``calendar`` decodes anything depends on the ``units`` beside it)"""


def _as_xarray_opens(store: Any, group: str) -> Any:
    """The group ``group`` as ``xr.open_zarr`` opens it by default (``consolidated=None``,
    ``_get_open_params`` in xarray's zarr backend): the store's root through its consolidated
    metadata, else through its stored metadata, then ``root[group]`` (through the root's
    consolidated copy, or the group's own)."""
    import zarr

    with _quiet():
        try:
            root = zarr.open_consolidated(store, mode="r")
        except (ValueError, KeyError):  # what xarray catches, then opens it unconsolidated
            root = zarr.open_group(store, mode="r")
        return root[group] if group else root


def _texts(doc: dict[str, Any]) -> dict[str, str]:
    """Each value of a metadata document as canonical JSON text (NaN fill values compare)."""
    return {k: json.dumps(v, sort_keys=True, default=str) for k, v in doc.items()}


def _differing(a: dict[str, Any], b: dict[str, Any]) -> tuple[str, ...]:
    ta, tb = _texts(a), _texts(b)
    return tuple(sorted(k for k in ta.keys() | tb.keys() if ta.get(k) != tb.get(k)))


def _structure(arr: Any) -> dict[str, Any]:
    """What an array's metadata says of its values, without its attributes (v2's dimension
    names, which live there, included)."""
    doc = _document(arr.metadata)
    doc.pop("attributes", None)
    doc["dimension_names"] = dims_of(arr)
    return doc


def stale(store: Any, var: Variable, with_coords: bool) -> list[Stale]:
    """Where the consolidated metadata that ``xr.open_zarr`` reads for the group of ``var``
    disagrees with the own metadata of the group, of ``var`` and (``with_coords``) of its
    coordinates, which the pipeline reads (the chunks are stored as those say); [] where
    xarray reads the members' own metadata too (no consolidated metadata), or they agree.
    With ``with_coords``, a coordinate the consolidated copy would give ``var`` that the
    group no longer holds is 'gone'."""
    import zarr

    if not var.name or not var.consolidated:
        return []
    try:
        seen_group = _as_xarray_opens(store, var.group)
        with _quiet():
            own_attrs = zarr.open_group(
                store=store, path=var.group or None, mode="r", use_consolidated=False
            ).attrs
    except Exception:  # xarray cannot open the group either: its reading names the problem
        return []
    if getattr(seen_group.metadata, "consolidated_metadata", None) is None:
        return []  # xarray reads each member's own metadata
    found: list[Stale] = []
    keys = _differing(dict(seen_group.attrs), dict(own_attrs))
    if keys:
        found.append(Stale("", "attributes", keys, f"{names_shown(keys)} of the group"))
    with _quiet():  # from the consolidated copy: no reads
        seen = {k: v for k, v in seen_group.arrays()}
    members = (var.name, *var.coords) if with_coords else (var.name,)
    for name in members:
        b = _own_array(store, _key(var.group, name))
        if b is None:
            continue
        if name not in seen:
            found.append(Stale(name, "unlisted", said=f"it does not list {name!r}"))
            continue
        a = seen[name]
        keys = _differing(_structure(a), _structure(b)) or _other_nan_fill(a, b)
        if keys:
            said = (
                f"{name!r} has shape {list(a.shape)}, its own metadata {list(b.shape)}"
                if "shape" in keys
                else f"{name!r} has another {', '.join(keys)} than its own metadata"
            )
            found.append(Stale(name, "structure", keys, said))
            continue
        keys = _differing(*_record_aligned(dict(a.attrs), dict(b.attrs)))
        if keys:
            values = tuple((k, a.attrs.get(k), b.attrs.get(k)) for k in keys)
            said = f"{names_shown(keys)} of {name!r}"
            both = (dict(a.attrs), dict(b.attrs))
            found.append(Stale(name, "attributes", keys, said, values, both))
    found += _stale_bounds_times(store, var, members, seen)
    if with_coords and var.name in seen:
        wanted = list(dims_of(seen[var.name]) or ()) + references(
            dict(seen[var.name].attrs), ("coordinates",)
        )
        for c in dict.fromkeys(wanted):
            if c in seen and c != var.name and _own_array(store, _key(var.group, c)) is None:
                said = f"it lists {c!r}, which the group no longer holds"
                if _holds_keys(store, _key(var.group, c) + "/"):  # its metadata alone gone
                    doc = _key(
                        _key(var.group, c),
                        ".zarray" if seen[c].metadata.zarr_format == 2 else "zarr.json",
                    )
                    said = (
                        f"it lists {c!r}, whose own metadata {doc} is gone (its chunks are "
                        f"there: write the copy's entry for {c!r} back to {doc} to keep it)"
                    )
                found.append(Stale(c, "gone", said=said))
    return found


def _other_nan_fill(seen: Any, own: Any) -> tuple[str, ...]:
    """``('fill_value',)`` where the consolidated copy's entry of an array (``seen``) says its
    NaN fill value with a payload or sign (hex, ``"0x7fc00001"``), and its own metadata
    (``own``) says another NaN: ``to_dict``, which :func:`_structure` compares, writes every
    NaN as "NaN", so the copy had passed, and ``xr.open_zarr`` reads its absent chunks as the
    copy's NaN, where the pipeline reads the array's own (h81c). A copy that says "NaN" is
    zarr-python's of any NaN (``consolidate_metadata`` writes no payload, so consolidating
    again cannot make it say the array's): not refused, as DESIGN.md says."""
    said = exact_fill_said(seen.metadata)
    return ("fill_value",) if said is not None and said != exact_fill_said(own.metadata) else ()


def _record_aligned(
    seen: dict[str, Any], own: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The attributes of an input's member as its consolidated copy holds them (``seen``) and
    as its own metadata does (``own``), to be compared by :func:`stale`: where both hold the
    same run record of the pipeline, one as an earlier version's mapping and the other as
    JSON text (:func:`pipeline.store.arrays.run_record` reads both alike), ``seen`` with
    ``own``'s. The input is another run's output, whose record the output does not carry
    (``NOT_CARRIED``) and every reader of it takes for the same: a chained run on an output
    an earlier version wrote had noted its copy as holding "other attributes" (h71c)."""
    a, b = seen.get(RUN_RECORD), own.get(RUN_RECORD)
    if type(a) is type(b):  # compared as stored: the same form, or no record
        return seen, own
    record = run_record(seen)
    if record is None or not _same_value(record, run_record(own)):
        return seen, own
    return {**seen, RUN_RECORD: b}, own


def _holds_node(store: Any, key: str) -> bool:
    """Whether the Zarr store ``store`` holds anything at ``key``: a metadata document
    (``zarr.json``, ``.zarray``, ``.zgroup``) or any key under it (True where that cannot be
    told: a store that cannot be read)."""
    from zarr.core.sync import sync

    try:
        for doc in ("zarr.json", ".zarray", ".zgroup"):
            if sync(store.exists(f"{key}/{doc}")):
                return True
    except Exception:
        return True
    return _holds_keys(store, key + "/")


def _holds_keys(store: Any, prefix: str) -> bool:
    """Whether the Zarr store ``store`` holds any key under ``prefix`` (False where it cannot
    list it: a hint only)."""
    from zarr.core.sync import sync

    async def first() -> bool:
        async for _ in store.list_prefix(prefix):
            return True
        return False

    try:
        return bool(sync(first()))
    except Exception:  # a server that will not list
        return False


def _stale_bounds_times(
    store: Any, var: Variable, members: tuple[str, ...], seen: dict[str, Any]
) -> list[Stale]:
    """Each of ``members`` to which the times of the group give other ``units`` or
    ``calendar`` (:func:`pipeline.ops.cf.bounds_time_attributes`) in the consolidated copy
    (``seen``: its arrays, in its order, as ``xr.open_zarr`` reads them) than in their own
    metadata: a time's ``bounds``, ``units`` or ``calendar`` changed since the copy was made,
    though the bounds' own attributes are the same. xarray decodes those bounds to other
    dates, or dates where the pipeline reads numbers (h57b: the output's bounds read as dates
    where the input's read as numbers, a note only). Stale 'attributes' whose ``values``
    are the given ones, (name, in the copy, in their own metadata)."""
    from pipeline.ops.cf import bounds_time_attributes

    own = bounds_members(store, var, members)
    if not own:
        return []
    # in the copy's order: what differs is then an attribute, never the listing's order
    # (zarr-python lists a group in no fixed order: times of other units sharing bounds,
    # fresh from xarray, had been called stale one run in three, not refused as ambiguous)
    order = {name: i for i, name in enumerate(seen)}
    own = sorted(own, key=lambda member: order.get(member[0], len(order)))
    given_own = bounds_time_attributes(own)
    with _quiet():
        given_seen = bounds_time_attributes([(k, dict(a.attrs)) for k, a in seen.items()])
    attrs = dict(own)
    found: list[Stale] = []
    for name in members:
        a, b = given_seen.get(name, {}), given_own.get(name, {})
        keys = tuple(k for k in ("units", "calendar") if a.get(k) != b.get(k))
        if not keys or name not in attrs or name not in seen:
            continue
        values = tuple((k, a.get(k), b.get(k)) for k in keys)
        said = f"the {' and '.join(keys)} that the times whose bounds name {name!r} give it"
        both = ({**dict(seen[name].attrs), **a}, {**attrs[name], **b})
        found.append(Stale(name, "attributes", keys, said, values, both))
    return found


def write_frame(
    src_store: Any,
    var: Variable,
    dst_store: Any,
    dst_group: str,
    attrs: dict[str, Any] | None = None,
    listed: tuple[str, ...] = (),
    kept: tuple[str, ...] = (),
) -> None:
    """Write the Dataset around ``var`` into the group ``dst_group`` of ``dst_store`` (Zarr v3): the
    group's attributes (``attrs``; None: the input group's) and the coordinate variables, read and
    written by xarray (values, dtypes, attributes and chunks as xarray round-trips them; a Zarr v3
    input's codecs and shards too, a v2 one's zarr-python's defaults: :func:`_write`), CF times
    and durations as they are stored: their numbers and their ``units`` and ``calendar`` as the
    input has them (decoded and encoded again, xarray rewrote ``hours since
    2024-01-01 00:00:00`` as ``hours since 2024-01-01``, added a ``calendar`` the input did not
    give, and gave a time's bounds its units). xarray puts ``attrs`` in place of whatever attributes
    the group had (:func:`merged_group_attributes` makes them). Arrays already in the group stay:
    the caller removes those the coordinates replace first (xarray's append mode keeps an existing
    array's dtype and attributes, and refuses one of another size). The group's
    :data:`GLOBAL_COORDINATES` is never one of ``attrs``: xarray writes it for the frame's
    coordinates, and those of ``listed`` (the group's before the write: :func:`global_coordinates`)
    that the group still holds are added. The coordinates ``kept`` (the user's, equal to the
    input's, already in the group) are left as they are, not written; CF references still
    name them.
    :func:`frame_failure` does the same into memory, at plan time."""
    with _quiet():
        names = tuple(n for n in var.coords if n not in kept)
        frame = _frame(src_store, var, names, written=var.coords, times=False)
        if attrs is not None:
            frame.attrs = {k: v for k, v in attrs.items() if k != GLOBAL_COORDINATES}
        _write(frame, dst_store, dst_group, v3=_zarr_format(src_store, var.group) == 3)
        _list_global_coordinates(dst_store, dst_group, listed)


def _frame(
    src_store: Any,
    var: Variable,
    names: tuple[str, ...],
    written: tuple[str, ...] | None = None,
    times: bool = True,
) -> Any:
    """The input group's attributes and its arrays ``names``, as ``xr.open_zarr`` decodes
    them (``times`` False: CF times and durations left as their stored numbers, with their
    attributes), each from its own metadata, loaded; the other variables are not decoded. With
    ``written`` (the arrays written beside the output variable), as they are written: each
    one's CF references naming only those (:func:`with_written_references`; a carried
    coordinate's own ``coordinates``, which xarray keeps in its encoding, too)."""
    import xarray as xr

    # each member's metadata read once: _members opens every member, and so does xarray
    listed, store = _members(_read_once(src_store), var.group, names)
    others = [k for k in listed if k not in names]
    ds = xr.open_zarr(  # the other variables left undecoded (a bad CF time among them
        store,  # would otherwise stop the run)
        group=var.group or None,
        # each array's own metadata, as the variable's values are read: a stale
        # consolidated copy (which stale() refuses) gave coordinates of another size
        consolidated=False,
        chunks=None,
        drop_variables=others,
        decode_times=times,
        decode_timedelta=times,
    )
    ds = ds.drop_vars([v for v in ds.variables if v not in names]).load()
    if written is not None:
        for v in ds.variables.values():
            _keep_written_references(v, written)
        if not times:
            _keep_given_time_attributes(ds, store, var.group, listed, written)
    return ds


def _keep_given_time_attributes(
    ds: Any, store: Any, group: str, listed: list[str], written: tuple[str, ...]
) -> None:
    """Give each bounds array of the frame ``ds`` (stored numbers, ``decode_times=False``)
    the ``units`` and ``calendar`` that xarray gives it in the input group (those of the first
    time whose ``bounds`` name it: :func:`pipeline.ops.cf.bounds_time_attributes`, over the
    members ``listed``, in order, each from its own metadata as :func:`_frame` reads it) as
    attributes of its own, where the times written beside it (``written``) would give it
    others, or none: several times sharing one bounds variable, the first not carried or
    with other units, had left the output's bounds decoded by another time's units (other
    dates, and ``verify`` then found the coordinates not the input's). Where they give it
    the same, whatever their order, it stays as stored. A ``calendar`` the input gives none
    of, which a written time would give, is written as ``standard`` (xarray's default)."""
    from pipeline.ops.cf import bounds_time_attributes

    if all({"units", "calendar"} <= set(v.attrs) for v in ds.variables.values()):
        return  # nothing to be given
    import zarr

    with _quiet():
        found = zarr.open_group(store=store, path=group or None, mode="r", use_consolidated=False)
        members: list[tuple[str, dict[str, Any]]] = []
        for name in listed:
            try:
                members.append((name, dict(found[name].attrs)))
            except Exception:  # not readable: xarray's reading of the group says so
                continue
    given = bounds_time_attributes(members)
    own = dict(members)
    for name, v in ds.variables.items():
        want = given.get(name, {})
        if not want:
            continue
        by = [  # what each written time whose bounds name it would give it in the output
            bounds_time_attributes([(t, own[t]), (name, v.attrs)]).get(name, {})
            for t in written
            if t != name and t in own and own[t].get("bounds") == name
        ]
        if by and all(b == want for b in by):
            continue
        attrs = {**v.attrs, **want}
        if "calendar" not in attrs and any("calendar" in b for b in by):
            attrs["calendar"] = "standard"
        v.attrs = attrs


def _members(store: Any, group: str, names: tuple[str, ...]) -> tuple[list[str], Any]:
    """The arrays of the group ``group`` of ``store`` (an fsspec store) that ``xr.open_zarr``
    with ``consolidated=False`` opens, and the store to open it on, which holds ``names``
    (members found by their keys): the group's listing and ``store``; where its server lists
    no folders (a listing refused, or lacking a member that is there) and the group has
    consolidated metadata, the members that copy lists, and ``store`` with that folder
    listed so (:func:`_listed_store`): each member is still read from its own metadata (a
    GET of its ``.zarray`` or ``zarr.json``, no listing), which :func:`stale` compares with
    the copy; only an array added to the group since it was consolidated, and named by
    nothing carried, is not seen. A member whose metadata is not JSON, which ``names`` does
    not hold, is left out of the listing (:func:`readable_arrays`): xarray would fail on the
    whole group for it. Raises ListingError where neither gives the members."""
    import zarr

    with _quiet():
        found = zarr.open_group(store=store, path=group or None, mode="r", use_consolidated=False)
    refused: ListingError | None = None
    try:
        readable, kept = readable_arrays(found)
        listed = [k for k, _ in readable]
        if kept is not None and not [n for n in names if n not in listed]:
            # a member whose metadata is not JSON, not needed: xarray lists the others only
            return listed, _listed_store(store, group, kept)
    except Exception as e:  # a server that lists no folders: xarray cannot open the group
        refused = _listing_refused(store, group, e)  # without consolidated metadata
        if refused is None:
            raise
    else:
        unlisted = [n for n in names if n not in listed]
        if not unlisted:
            return listed, store
        # found by their keys, yet not listed (a server that answers 404 for a folder):
        # xarray would read the Dataset without them
        refused = _listing_refused(store, group, None, unlisted)
    copy = _consolidated_members(store, group)
    if copy is None:
        assert refused is not None
        raise refused from None
    members, arrays = copy
    missing = [n for n in names if n not in arrays]
    if missing:  # an array added since the copy was made (stale() refuses it at plan time)
        raise _unlisted_in_copy(store, group, missing)
    return arrays, _listed_store(store, group, members)


def _consolidated_members(store: Any, group: str) -> tuple[list[str], list[str]] | None:
    """(members, arrays) of the group ``group`` of ``store`` as its consolidated metadata
    lists them (the store root's, as ``xr.open_zarr`` reads it, else the group's own): no
    listing, and no read past the copy; None where it has none."""
    import zarr

    for how in (
        lambda: _as_xarray_opens(store, group),
        lambda: zarr.open_group(store=store, path=group or None, mode="r"),
    ):
        try:
            with _quiet():
                seen = how()
                if getattr(seen.metadata, "consolidated_metadata", None) is None:
                    continue
                return [k for k, _ in seen.members()], list(seen.array_keys())
        except Exception:
            continue
    return None


def array_names(store: Any, group: str) -> list[str] | None:
    """The names of the arrays of the group ``group`` of ``store`` (a zarr store) as its
    consolidated metadata lists them (no read of theirs), else as its listing gives them; None
    where neither says (a server that lists no folders, a group without consolidated
    metadata)."""
    import zarr

    copy = _consolidated_members(store, group)
    if copy is not None:
        return copy[1]
    try:
        with _quiet():
            found = zarr.open_group(store=store, path=group or None, mode="r")
            return list(found.array_keys())
    except Exception:  # no listing to read
        return None


def _listed_store(store: Any, group: str, members: list[str]) -> Any:
    """``store`` (a zarr store), read-only, whose folder ``group`` lists as ``members``
    (zarr-python's ``list_dir``, which ``xr.open_zarr`` asks for a group's members); every
    other call goes to ``store`` itself, a ``get`` without a prototype too (xarray's read of
    an NCZarr record, which :func:`_read_once`'s store serves: zarr-python's wrapper requires
    one, and a netCDF-C 4.8.1 group with an unreadable member beside it had been refused with
    that TypeError)."""
    from zarr.storage import WrapperStore

    class Listed(WrapperStore[Any]):
        def _with_store(self, inner: Any) -> Any:
            return Listed(inner)

        async def get(self, key: str, prototype: Any = None, byte_range: Any = None) -> Any:
            return await self._store.get(key, prototype, byte_range)

        async def list_dir(self, prefix: str) -> AsyncIterator[str]:  # type: ignore[override]
            if prefix.strip("/") == group:
                for name in members:
                    yield name
                return
            async for name in self._store.list_dir(prefix):
                yield name

    return Listed(store)


#: The names of the metadata documents of a Zarr node (v3, v2, and v2's consolidated copy).
METADATA_NAMES = frozenset({"zarr.json", ".zarray", ".zgroup", ".zattrs", ".zmetadata"})


def _read_once(store: Any) -> Any:
    """``store`` (a zarr store), read-only, whose metadata documents (:data:`METADATA_NAMES`,
    read whole) are each read once however often they are asked for, absent ones too, and
    whose folders are each listed once; chunks are read as asked. For one :func:`_frame`: it
    finds the group's members (:func:`_members`, which opens each one) and then
    ``xr.open_zarr`` opens them all again, two requests of each document on a remote store
    (a 100-variable v2 Dataset on S3: ~700 each time). The documents are still every
    member's own, read in this call, never a consolidated copy."""
    from zarr.storage import WrapperStore

    class ReadOnce(WrapperStore[Any]):
        def __init__(self, inner: Any, memo: dict[str, Any], listed: dict[str, list[str]]):
            super().__init__(inner)
            self._memo = memo
            self._listed = listed

        def _with_store(self, inner: Any) -> Any:
            return ReadOnce(inner, self._memo, self._listed)

        def __getattr__(self, name: str) -> Any:  # the store's own (its path, its fs)
            if name.startswith("_"):
                raise AttributeError(name)
            return getattr(self._store, name)

        def __str__(self) -> str:  # errors name the store as they did
            return str(self._store)

        def __repr__(self) -> str:
            return repr(self._store)

        async def get(self, key: str, prototype: Any = None, byte_range: Any = None) -> Any:
            if prototype is None:  # xarray's read of an NCZarr record's .zarray
                return self._unprompted(key, byte_range)
            if byte_range is not None or key.rpartition("/")[2] not in METADATA_NAMES:
                return await self._store.get(key, prototype, byte_range)
            if key not in self._memo:
                self._memo[key] = await self._read(key, prototype)
            return self._memo[key]

        def _unprompted(self, key: str, byte_range: Any) -> Any:
            """``key`` as :meth:`get` reads it, for xarray's read of an NCZarr record
            (``_get_zarr_dims_and_attrs``: ``asyncio.run(store.get(".../.zarray"))``, no
            prototype, in an event loop of its own): with zarr-python's default prototype
            (an fsspec store's ``get`` requires one: xarray's ``TypeError``), on zarr-python's
            own event loop, where an fsspec store's file system keeps its session (s3fs: a
            request from xarray's loop fails, "attached to a different loop", or, made first,
            binds the session to that loop, closed at once, and every later read fails),
            blocking xarray's loop, which waits on nothing else. The document is the one
            :func:`_members` read already, from the memo: no request of its own."""
            from zarr.core.buffer import default_buffer_prototype
            from zarr.core.sync import sync

            return sync(self.get(key, default_buffer_prototype(), byte_range))

        async def _read(self, key: str, prototype: Any) -> Any:
            """The document ``key``, of an fsspec store in one request (s3fs's own read
            asks for its size first: ``whole_read_options``), else as the store reads it."""
            inner = self._store
            fs = getattr(inner, "fs", None)
            options = whole_read_options(fs) if fs is not None else {}
            if fs is None or not options or not hasattr(inner, "allowed_exceptions"):
                return await inner.get(key, prototype)
            try:
                return prototype.buffer.from_bytes(
                    await fs._cat_file(key_under(inner.path, key), **options)
                )
            except inner.allowed_exceptions:  # as the store's get: absent
                return None

        async def list_dir(self, prefix: str) -> AsyncIterator[str]:  # type: ignore[override]
            if prefix not in self._listed:
                self._listed[prefix] = [name async for name in self._store.list_dir(prefix)]
            for name in self._listed[prefix]:
                yield name

    return ReadOnce(store, {}, {})


def _keep_written_references(v: Any, written: tuple[str, ...]) -> None:
    """Make the xarray variable ``v``'s CF references name only arrays of ``written``
    (:func:`with_written_references`), in its attributes and in its encoding, where xarray's
    decoding moved its ``coordinates`` (and whence ``to_zarr`` writes it back as it was; None
    where the input stores none, so that ``to_zarr`` writes none);
    netCDF-C's records of the input's layout (:func:`without_netcdf_records`, which xarray
    shows on a v3 array) go."""
    attrs = dict(v.attrs)
    listed = v.encoding.pop("coordinates", None)
    if isinstance(listed, str) and "coordinates" not in attrs:
        attrs["coordinates"] = listed
    attrs = with_written_references(without_netcdf_records(attrs), written)
    coordinates = attrs.pop("coordinates", None)
    v.attrs = attrs
    # None where the input stores none: xarray's to_zarr then writes none, where it had given
    # a carried coordinate that the frame holds as a data variable (the variable listing it
    # is not in the frame) a `coordinates` naming the frame's coordinates on its dimensions,
    # a scalar one that bounds name (h67c)
    v.encoding["coordinates"] = coordinates


def _unlisted_in_copy(store: Any, group: str, unlisted: Sequence[str]) -> ListingError:
    """The ListingError where the server of ``store`` lists no folders and the consolidated
    metadata of the group ``group``, read in place of its listing, lacks ``unlisted`` (the
    members found by their keys: added since the group was consolidated), naming each (three
    by name, then how many more: :func:`~pipeline.errors.some_shown`; the first alone had
    been named, h85b)."""
    root = str(getattr(store, "path", ""))
    folder = key_under(root, group) if group else root
    return ListingError(
        f"the server of {root} does not list the folder {name_shown(folder)}, and the group's "
        f"consolidated metadata, read in place of a listing, lacks {_there(unlisted)} "
        "(added since it was consolidated): consolidate the input's metadata again "
        "(zarr.consolidate_metadata on its store), or set output.array: '' to write the "
        "variable alone, without its Dataset, or enable folder listings on the server "
        "(nginx: `autoindex on`)",
        store=root,
        folder=folder,
        failure=f"{_quoted(unlisted)} not in the consolidated metadata",
    )


def _quoted(names: Sequence[str]) -> str:
    """``names`` quoted (``'x'``), three by name then how many more
    (:func:`~pipeline.errors.some_shown`)."""
    return some_shown([repr(n) for n in names])


def _there(names: Sequence[str]) -> str:
    """``names`` as :func:`_quoted` says them, then that they are there: ``'x', which is
    there``, ``'x', 'y', which are there``."""
    return f"{_quoted(names)}, which {'is' if len(names) == 1 else 'are'} there"


def _listing_refused(
    store: Any, group: str, e: BaseException | None, unlisted: Sequence[str] = ()
) -> ListingError | None:
    """The ListingError where ``e`` is the refusal of the server of ``store`` (an fsspec
    store) to list the group ``group``, which has no consolidated metadata, whose members
    xarray reads (:func:`listing_error`), or, with ``unlisted`` (members found by their
    keys), where its listing does not show them, each named (h85b: the first alone had
    been); None where ``e`` is another error."""
    root = str(getattr(store, "path", ""))
    folder = key_under(root, group) if group else root
    alone = "set output.array: '' to write the variable alone, without its Dataset"
    alone += (
        " (xarray reads the group's members from its listing, or from consolidated metadata, "
        "which this group has none of), or consolidate the group's metadata "
        "(zarr.consolidate_metadata on its store)"
    )
    if e is not None:
        return listing_error(root, folder, e, alone=alone)
    return ListingError(
        f"the server of {root} does not list the folder {name_shown(folder)} (it answered the "
        "folder's "
        f"URL with no listing that names {_there(unlisted)}: a 404, or an empty "
        f"page), which the pipeline needs listed here: {alone}, or "
        "enable folder listings on it (nginx: `autoindex on`), or copy the store to a local "
        "folder or an object store",
        store=root,
        folder=folder,
        failure=f"{_quoted(unlisted)} not listed",
    )


_V2_CODECS = ("compressor", "compressors", "filters", "serializer", "shards")
"""A frame variable's encodings that name how a Zarr v2 input stores its chunks (numcodecs
codecs), which a Zarr v3 output does not take: zarr-python's default codec instead."""


def _write(frame: Any, dst_store: Any, dst_group: str, *, v3: bool) -> None:
    """Write ``frame`` (:func:`_frame`) into the group ``dst_group`` of ``dst_store``, Zarr v3,
    with xarray's encodings (times) and, where the input is Zarr v3 (``v3``), each array's
    codecs and shards as the input stores them (xarray's round trip of a v3 Dataset keeps
    them: a sharded coordinate had been written unsharded, a file per chunk, its compressor
    zarr-python's default, so ``out[c].encoding`` was not the input's); a Zarr v2 input's
    are zarr-python's defaults."""
    for v in frame.variables.values():
        for key in ("preferred_chunks", "fill_value", *(() if v3 else _V2_CODECS)):
            v.encoding.pop(key, None)
        _writable_fill(v)
    frame = _without_extension_indexes(_with_unsigned_kept(frame))
    frame.to_zarr(dst_store, group=dst_group or None, mode="a", zarr_format=3, consolidated=False)


def _with_unsigned_kept(frame: Any) -> Any:
    """``frame`` with each variable that xarray read by an ``_Unsigned`` attribute but holds no
    fill value for (no ``_FillValue`` or ``missing_value`` in its encoding) made the array of
    its stored integers (the input's dtype and bits) with ``_Unsigned`` (and ``scale_factor``
    and ``add_offset``, where xarray unpacked it) as attributes: xarray 2025.6 writes
    ``_Unsigned`` back only with a fill value (``CFMaskCoder.encode`` returns first), so a
    uint16 coordinate with ``_Unsigned: "false"`` (65534 read as int16 -2) had been written
    uint16 without it, read back as 65534, the run complete (h77g). Where the values are not
    the stored integers' (unpacking that does not undo exactly), they are left to xarray, and
    :func:`frame_failure` finds the output's reading otherwise."""
    import numpy as np
    import xarray as xr

    from pipeline.ops.cf import reinterpreted

    coords: dict[str, Any] = {}
    others: dict[str, Any] = {}
    for name, v in frame.variables.items():
        enc = v.encoding
        if "_Unsigned" not in enc or "_FillValue" in enc or "missing_value" in enc:
            continue
        stored = np.dtype(enc.get("dtype", v.dtype))
        if stored.kind not in "iu":
            continue
        read = reinterpreted({"_Unsigned": enc["_Unsigned"]}, stored) or stored
        packing = {k: enc[k] for k in ("scale_factor", "add_offset") if k in enc}
        values = np.asarray(v.values)
        if packing:
            if values.dtype.kind != "f":
                continue
            x = values.astype(np.float64)
            if "add_offset" in packing:
                x = x - float(np.asarray(packing["add_offset"]))
            if "scale_factor" in packing:
                x = x / float(np.asarray(packing["scale_factor"]))
            info = np.iinfo(read)
            if (
                not np.all(np.isfinite(x))
                or x.min(initial=0) < info.min
                or x.max(initial=0) > info.max
            ):
                continue
            values = np.rint(x).astype(read)
        elif values.dtype != read:
            continue
        attrs = {**v.attrs, **packing, "_Unsigned": enc["_Unsigned"]}
        rest = {k: e for k, e in enc.items() if k not in ("_Unsigned", "dtype", *packing)}
        made = xr.Variable(v.dims, values.view(stored), attrs, rest)
        (coords if name in frame.coords else others)[name] = made
    if coords:
        frame = frame.assign_coords(coords)
    if others:
        frame = frame.assign(others)
    return frame


def _writable_fill(v: Any) -> None:
    """Make the ``_FillValue`` of the frame's variable ``v`` one xarray writes into a Zarr v3
    output and reads back as the input's. Text (stored bytes or unicode, fixed-length or
    not, as the encoded dtype says) goes without it: xarray 2025.6 writes a fixed-length
    one into the array's attributes but cannot read it back (``FillValueCoder.decode``:
    "Unsupported dtype |S2"), so ``xr.open_zarr`` failed on the whole output, marked
    complete; a variable-length one it cannot write ("Failed to encode fill_value.
    Unsupported dtype StringDType()"), which the plan had refused saying that xarray cannot
    read the input (h57b: a v2 input's text coordinate with zarr-python's default fill value
    ``""``, which xarray reads as a mask). Where no element is masked (equal to the fill
    value in the input), the texts are the same without it. An element masked in text or
    booleans (xarray's object array holds a NaN there) cannot be written back: booleans had
    been written True there (a v2 coordinate with zarr-python's default fill value
    ``false``: its False elements read as missing in the input, True in the output, marked
    complete); :class:`MaskedElements` is raised (the plan refuses it,
    :func:`frame_failure`)."""
    import numpy as np

    stored = np.dtype(v.encoding.get("dtype", v.dtype))
    if stored.kind not in "bSUTO" or "_FillValue" not in v.encoding:
        return
    if v.dtype.kind == "O" and bool(v.isnull().values.any()):
        raise MaskedElements(v.encoding["_FillValue"], stored)
    if stored.kind != "b":
        v.encoding.pop("_FillValue")


class MaskedElements(ValueError):
    """A text or boolean coordinate holding elements equal to its fill value, which xarray
    reads as missing and cannot write into a Zarr v3 output so as to read them back
    (:func:`_writable_fill`)."""

    def __init__(self, fill: Any, stored: Any) -> None:
        said = fill.item() if hasattr(fill, "item") else fill
        super().__init__(
            f"elements equal to its fill value {said!r} ({stored}), which xarray reads as "
            "missing and cannot write into a Zarr v3 array so as to read them back"
        )
        self.fill = fill


def _without_extension_indexes(frame: Any) -> Any:
    """``frame`` with each dimension coordinate that xarray indexes by a pandas index of an
    extension dtype (pandas 3 reads text as ``StringDtype``: a coordinate of station names)
    made a coordinate of its NumPy values (the same dtype, ``<U3``, attributes and encoding)
    without an index: xarray 2025.6 fails to write such an index (``TypeError: Cannot
    interpret '<StringDtype(...)>' as a data type``), so ``xr.open_zarr(...).to_zarr(...)``
    of the input fails too, and the Dataset had been refused as one that xarray cannot read.
    The written array is the one xarray writes of the NumPy values, which ``xr.open_zarr``
    reads back as the input's."""
    import numpy as np
    import xarray as xr

    names = [
        name
        for name, index in frame.xindexes.items()
        if not isinstance(getattr(getattr(index, "index", None), "dtype", np.dtype("f8")), np.dtype)
    ]
    if not names:
        return frame
    plain = {
        n: xr.Variable(
            frame[n].dims, np.asarray(frame[n].values), frame[n].attrs, frame[n].encoding
        )
        for n in names
    }
    return frame.drop_indexes(names).assign_coords(xr.Coordinates(plain, indexes={}))


def users(store: Any, group: str, names: list[str]) -> dict[str, set[str]]:
    """For each array of ``names`` in ``group``: the arrays of the group that describe it, as
    xarray and CF read them: its dimensions' coordinates and the variables its CF attributes
    name (:func:`references`: coordinates, grid mappings in either form, cell measures,
    bounds, climatologies, ...), and in turn those that each of these refers to (a
    coordinate's bounds: replacing them relabels it as much as replacing the coordinate);
    arrays that cannot be read refer to nothing. A coordinate that the group's
    :data:`GLOBAL_COORDINATES` or another array's ``coordinates`` lists describes each array
    on its dimensions too (:func:`listed_elsewhere`: xarray reads it as theirs)."""
    import zarr

    direct: dict[str, set[str] | None] = {}
    try:
        with _quiet():
            opened = zarr.open_group(store=store, path=group or None, mode="r")
        listed = listings(store, opened, group)
    except Exception:  # no group to read: nothing lists anything
        listed = []

    def refers(name: str) -> set[str] | None:
        if name not in direct:
            arr = _own_array(store, _key(group, name))
            if arr is None:
                direct[name] = None
            else:
                dims, attrs = dims_of(arr) or (), dict(arr.attrs)
                elsewhere = listed_elsewhere(store, group, name, dims, attrs, listed)
                direct[name] = {*dims, *references(attrs), *elsewhere} - {name}
        return direct[name]

    found: dict[str, set[str]] = {}
    for name in names:
        first = refers(name)
        if first is None:
            continue
        seen: set[str] = set()
        todo = list(first)
        while todo:
            n = todo.pop()
            if n not in seen and n != name:
                seen.add(n)
                todo += refers(n) or ()
        found[name] = seen
    return found


#: What :func:`coordinate_difference` says of a coordinate the output holds no readable copy of.
UNREADABLE = "chunks or metadata, which zarr-python cannot read"

#: What :func:`coordinate_difference` says of a coordinate the output holds no array of at
#: all (one new in the input since the run, or deleted from the output): it had been
#: :data:`UNREADABLE`, "chunks or metadata, which zarr-python cannot read" (h78d).
ABSENT = "copy, which the output does not hold"


def same_coordinate(
    src_store: Any, var: Variable, dst_store: Any, dst_group: str, name: str
) -> bool:
    """Whether the coordinate ``name`` written beside ``var`` (:func:`write_frame`) would be
    what the output group ``dst_group`` holds under that name now:
    :func:`coordinate_difference` finds nothing (False where the output's cannot be read at
    all: a coordinate a stopped run left without its chunks or metadata)."""
    return coordinate_difference(src_store, var, dst_store, dst_group, name) is None


def coordinate_difference(
    src_store: Any, var: Variable, dst_store: Any, dst_group: str, name: str
) -> str | None:
    """What the output group ``dst_group`` holds under the name ``name`` otherwise than the
    coordinate written beside ``var`` (:func:`write_frame`) would be, in a few words that
    follow its name's possessive (``values: 1 of 3 elements differs, the first at [0]: -0.0,
    not 0.0``, ``dimensions ('y',), not ('x',)``, ``valid_min attribute``); None where they
    are the same,
    as xarray reads both: values to the bit (:func:`pipeline.ops.bits.difference`, as
    ``verify`` compares the output's values: a label -0.0 where the other holds 0.0, or a NaN
    of another payload, differs, where xarray's ``identical`` and ``np.array_equal`` with
    ``equal_nan`` take them for the same), dimensions, attributes as stored JSON
    (:func:`_same_value`), encodings aside; or, where xarray cannot decode the output's, as
    both are stored (values and attributes); :data:`UNREADABLE` where the output's cannot be
    read at all (a coordinate a stopped run left without its chunks or metadata)."""
    from pipeline.ops import bits

    with _quiet():
        new = _frame(src_store, var, (name,), written=var.coords)[name].variable
        try:
            old = _frame(dst_store, Variable(dst_group, "", ()), (name,))[name].variable
        except Exception:  # xarray cannot decode it (a calendar without cftime, ...): as stored
            src, dst = _key(var.group, name), _key(dst_group, name)
            if not _holds_node(dst_store, dst):
                return ABSENT
            return _stored_difference(src_store, src, dst_store, dst, var.coords)
    if new.dims != old.dims:
        return f"dimensions {old.dims}, not {new.dims}"
    return _attributes_said(differing_values(new.attrs, old.attrs)) or _values_said(
        bits.difference(*_as_one_dtype(new.values, old.values))
    )


def _as_one_dtype(a: Any, b: Any) -> tuple[Any, Any]:
    """``a`` and ``b`` (the coordinate written beside the variable and the output's, as
    xarray reads them) in one dtype where xarray gives the same values two: a masked
    variable's object array (a v2 input's fill value masks booleans or text, though no
    element equals it) and the output's unmasked one, compared as objects; dates or
    durations of another unit (a native ``datetime64[s]`` input, which xarray writes as CF
    times and reads back as ``datetime64[ns]``), compared in the finer unit where each
    value is exactly held there. verify had found such an output's coordinates not the
    input's, and run refused the complete output (h57b). Otherwise as they are."""
    import numpy as np

    a, b = np.asarray(a), np.asarray(b)
    if (a.dtype.kind == "O") != (b.dtype.kind == "O"):
        return a.astype(object), b.astype(object)
    if a.dtype.kind in "Mm" and a.dtype.kind == b.dtype.kind and a.dtype != b.dtype:
        finer = np.promote_types(a.dtype, b.dtype)
        x, y = a.astype(finer), b.astype(finer)
        exact = np.array_equal(x.astype(a.dtype), a, equal_nan=True) and np.array_equal(
            y.astype(b.dtype), b, equal_nan=True
        )
        if exact:
            return x, y
    return a, b


def coordinates_differ(
    src_store: Any, var: Variable, dst_store: Any, dst_group: str
) -> list[tuple[str, str]]:
    """The coordinates written beside ``var`` (its ``coords``) that the output group
    ``dst_group`` holds otherwise than the input's as xarray reads them, each with what
    differs (:func:`coordinate_difference`'s words: values, dimensions, attributes, or
    :data:`UNREADABLE` for one deleted or not readable); [] where all are the same. Reads
    the coordinates (small) on both sides, never the variable's data: what ``verify``
    compares, and what ``run`` checks before it finds a Dataset output done or resumes it
    (a coordinate edited in a complete output had been "nothing to do")."""
    found = (
        (n, coordinate_difference(src_store, var, dst_store, dst_group, n)) for n in var.coords
    )
    return [(name, said) for name, said in found if said is not None]


def frame_changes(
    src_store: Any,
    group: str,
    carried_attrs: Any,
    coordinates: Sequence[tuple[str, str]],
) -> list[str]:
    """What of the input that a Dataset output carries is not as its run carried it, in a few
    words each: the group attributes the run recorded as carried (``carried_attrs``, its
    record's ``group_attributes``) that the input's group ``group`` of ``src_store`` holds
    otherwise or no longer (``its group's attribute 'title' (changed)``), and the
    ``coordinates`` that differ, with :func:`coordinates_differ`'s words (``its coordinate
    lon, which the output's copy holds otherwise (values: ...)``). [] where none does: the
    change is elsewhere, or in bytes xarray reads the same (h60g: ``run --resume`` and
    ``verify`` had named neither)."""
    found = []
    if isinstance(carried_attrs, dict):
        now = group_attributes(src_store, group)
        held = {k: v for k, v in now.items() if k in carried_attrs}
        for key in differing_values(held, carried_attrs):
            found.append(
                f"its group's attribute {key!r} ({'changed' if key in now else 'removed'})"
            )
    for name, said in coordinates:
        if said == ABSENT:
            found.append(f"its coordinate {name_shown(name)}, which the output does not hold")
        else:
            found.append(
                f"its coordinate {name_shown(name)}, which the output's copy holds otherwise "
                f"({said})"
            )
    return found


def carried_since(
    src_store: Any,
    var: Variable,
    carried_attrs: Any,
    coordinates: Sequence[tuple[str, str]],
    written: Any,
) -> str | None:
    """Where the only difference of what a Dataset output carries (its group attributes as
    its run carried them, ``carried_attrs``; the ``coordinates`` that differ,
    :func:`coordinates_differ`'s pairs) is coordinates it does not hold and its run did not
    write (``written``: its record's ``coordinates``), the words after "the output" that say
    so, with the cause: an earlier release of the pipeline carried fewer than this one
    (h82d: a variable run under another ``output.array`` now carries the input's own
    coordinate of its name, ``lat`` beside ``lat5``, which outputs written before did not
    hold), or the input gained them since. Asked only where the input array's own identity is
    the record's (the callers' check): certain, and said so, where the only one lacking is
    the input variable's own, which is that array; else both causes are said, since the
    record's version cannot tell the release (h83a: `verify` and `run` had said "the input
    changed" of an input that had not). None otherwise (the input changed:
    :func:`frame_changes` names what)."""
    if not isinstance(written, list) or not coordinates:
        return None
    if any(said != ABSENT for _, said in coordinates):
        return None
    names = [name for name, _ in coordinates]
    if any(name in written for name in names):  # its run wrote it: gone since, not carried
        return None
    if frame_changes(src_store, var.group, carried_attrs, ()):  # its group's attributes too
        return None
    if names == [var.name]:
        return (
            f"lacks the input's own coordinate {name_shown(var.name)}, which this release of "
            "the pipeline writes beside the variable run under another name (output.array) and "
            "the earlier release that wrote the output did not (the input is unchanged)"
        )
    many = len(names) > 1
    return (
        f"lacks the input's coordinate{'s' if many else ''} {names_shown(names)}, which this "
        f"release of the pipeline carries: the input gained {'them' if many else 'it'} since, "
        "or an earlier release of the pipeline wrote the output without "
        f"{'them' if many else 'it'}"
    )


def _values_said(difference: str | None) -> str | None:
    return None if difference is None else f"values: {difference}"


def _attributes_said(keys: list[str]) -> str | None:
    if not keys:
        return None
    return f"{names_shown(keys)} attribute{'s' if len(keys) > 1 else ''}"


def _stored_difference(
    src_store: Any, src: str, dst_store: Any, dst: str, written: tuple[str, ...]
) -> str | None:
    """What the array ``dst`` holds otherwise than ``src``, as stored: values to the bit and
    attributes (dimension names aside; those of ``src`` as written beside an output that
    holds ``written``: :func:`with_written_references`, :func:`without_netcdf_records`), in
    :func:`coordinate_difference`'s
    words; :data:`UNREADABLE` where ``dst`` cannot be read at all."""
    import numpy as np
    import zarr

    from pipeline.ops import bits

    try:
        with _quiet():
            a = zarr.open_array(store=src_store, path=src, mode="r")
            b = zarr.open_array(store=dst_store, path=dst, mode="r")
            x, y = np.asarray(a[...]), np.asarray(b[...])
    except Exception:
        return UNREADABLE
    skip = {"_ARRAY_DIMENSIONS"}
    keys = differing_values(
        {
            k: v
            for k, v in with_written_references(
                without_netcdf_records(dict(a.attrs)), written
            ).items()
            if k not in skip
        },
        {k: v for k, v in dict(b.attrs).items() if k not in skip},
    )
    return _attributes_said(keys) or _values_said(bits.difference(x, y))


def frame_failure(src_store: Any, var: Variable) -> tuple[str, str] | None:
    """Why :func:`write_frame` would fail, found by writing the frame into memory with xarray
    as it would (the coordinates read and encoded as they will be; CF times decoded too, as
    ``xr.open_zarr`` of the output will decode them, though they are written as stored): (the
    coordinate that fails alone, '' where none does; xarray's reason in one line); None where
    it goes.
    A coordinate xarray cannot decode (CF time ``units`` it cannot parse, a ``calendar`` it
    does not know, or needs cftime for; a value out of range) fails ``xr.open_zarr`` of the
    input too: by default an index coordinate's as it opens, another's as it is read. Raises
    ListingError where the group's server refuses to list it (xarray reads its members from
    a listing)."""
    from zarr.storage import MemoryStore

    v3 = _zarr_format(src_store, var.group) == 3
    try:
        with _quiet():
            _write(_frame(src_store, var, var.coords, written=var.coords), MemoryStore(), "", v3=v3)
        return _written_otherwise(src_store, var)
    except ListingError:  # the group cannot be read at all: its own line
        raise
    except Exception as e:
        if wrong_library(e):  # xarray (or pandas) is a file of the user's: not the input's
            raise  # fault, whose fix had been named as output.array: ''
        first = e
    try:  # the group itself, no coordinate in it: xarray cannot open it at all
        with _quiet():
            _write(_frame(src_store, var, ()), MemoryStore(), "", v3=v3)
    except Exception:
        return "", _reason(first)  # (helper-44: an array without dimension names beside it
        # was blamed on the first coordinate, a time, with cftime as the fix)
    for c in var.coords:  # which one: the first that fails alone
        try:
            with _quiet():
                alone = _frame(src_store, var, (c,))
        except Exception as e:
            return c, _reason(e)
        try:  # read and decoded as xr.open_zarr of the input does: its writing fails
            with _quiet():
                _write(alone, MemoryStore(), "", v3=v3)
        except MaskedElements as e:
            return c, _reason(e)
        except Exception as e:  # (h57b: a v2 input's complex coordinate had been refused
            # as one on which "xr.open_zarr fails on the input", which opens)
            return c, UNWRITABLE + _reason(e)
    return "", _reason(first)


def _written_otherwise(src_store: Any, var: Variable) -> tuple[str, str] | None:
    """The first coordinate of ``var`` that :func:`write_frame` would write (into memory here)
    so that ``xr.open_zarr`` of the output reads it otherwise than that of the input, with
    :data:`UNWRITABLE` and what differs (:func:`coordinate_difference`'s words: values to the
    bit, dtype too, dimensions, attributes); None where each reads as the input's. A decoding
    attribute xarray reads by but does not write back as it read it (``_Unsigned`` with
    ``missing_value`` alone: xarray writes a ``_FillValue`` the input lacks, masking an
    element the input reads) had given an output reading otherwise, the run complete, and
    ``verify``'s advice, overwrite, wrote it the same again (h77g)."""
    from zarr.storage import MemoryStore

    from pipeline.ops import bits

    out = MemoryStore()
    with _quiet():
        write_frame(src_store, var, out, "")
        new = _frame(src_store, var, var.coords, written=var.coords)
        old = _frame(out, Variable("", "", ()), var.coords)
    for name in var.coords:
        a, b = new[name].variable, old[name].variable
        said = (
            (f"dimensions {b.dims}, not {a.dims}" if a.dims != b.dims else None)
            or _attributes_said(differing_values(a.attrs, b.attrs))
            or _values_said(bits.difference(*_as_one_dtype(a.values, b.values)))
        )
        if said is not None:
            return name, f"{UNWRITABLE}xarray reads the written one otherwise ({said})"
    return None


#: How :func:`frame_failure`'s reason begins where xarray reads and decodes the coordinate,
#: as ``xr.open_zarr`` of the input does, but cannot write it into a Zarr v3 output.
UNWRITABLE = "xarray cannot write it into a Zarr v3 output: "


def _reason(e: Exception) -> str:
    """xarray's error in one line, less its advice (the caller names the fix) and the name of
    the variable (the caller names it too)."""
    text = " ".join(str(e).split())
    text = re.sub(r"^Failed to decode variable '[^']*': ", "", text)
    text = text.split(" Try opening your dataset with", 1)[0].rstrip(".")
    return f"{type(e).__name__}: {text}"


def consolidate(store: Any, group: str) -> None:
    """Consolidate the metadata of ``group`` (after every array in it is final), and of the
    store's root, as xarray's ``to_zarr`` does: ``xr.open_zarr(store, group=...)`` reads the
    root's (a group's own alone, it warns and reads without; a root's that does not list the
    group, it fails with a KeyError)."""
    import zarr

    with _quiet():
        zarr.consolidate_metadata(store, path=group or None)
        if group:
            zarr.consolidate_metadata(store)


def unconsolidatable(store: Any, group: str, skip: str = "") -> tuple[str, str] | None:
    """Where :func:`consolidate` of the group ``group`` of ``store`` ('' the root) would fail,
    before anything is dropped: (the path of the first node below it, at any depth, whose
    metadata zarr-python cannot read, or ``group`` itself where the failure names none; the
    reason in a few words, :func:`_reason`); None where every member opens, or where there is
    no group, or where only the node at ``skip`` (and below it) is unreadable: the array a
    run replaces. ``zarr.consolidate_metadata`` reads every member's own metadata: one it cannot
    read (JSON cut short, say) made the run fail at its end, after it had dropped the
    group's consolidated copy, which was then lost for good. One concurrent walk of the
    members (``Group.members``); the slower search for the node only where it fails."""
    import zarr

    try:
        with _quiet():
            found = zarr.open_group(
                store=store, path=group or None, mode="r", use_consolidated=False
            )
    except FileNotFoundError:
        return None
    except Exception as e:
        return group, _reason(e)
    try:
        with _quiet():
            for _ in found.members(max_depth=None):
                pass
        return None
    except Exception as e:
        if storage_failure(e) is not None:
            raise
        first = e
    node = _first_unreadable_node(store, group, skip)
    return node if node is not None or skip else (group, _reason(first))


def _first_unreadable_node(store: Any, group: str, skip: str = "") -> tuple[str, str] | None:
    """The first node below the group ``group`` (breadth first, by name; the node at
    ``skip`` and what is below it passed by) whose metadata zarr-python cannot read, and
    why; None where each one opens."""
    import zarr
    from zarr.core.sync import sync

    async def names(prefix: str) -> list[str]:
        return [n async for n in store.list_dir(prefix)]

    todo = [group]
    while todo:
        here = todo.pop(0)
        try:
            listed = sorted(sync(names(f"{here}/" if here else "")))
        except Exception:
            continue
        for name in listed:
            if not is_member_name(name):  # metadata, OS files, probes, the record folder
                continue
            path = f"{here}/{name}" if here else name
            if skip and path == skip:
                continue
            try:
                with _quiet():
                    node = zarr.open(store=store, path=path, mode="r")
            except FileNotFoundError:
                continue  # a folder that is no node
            except Exception as e:
                if storage_failure(e) is not None:
                    raise
                return path, _reason(e)
            if isinstance(node, zarr.Group):
                todo.append(path)
    return None


def drop_consolidated(location: Any, group: str) -> None:
    """Remove the consolidated metadata of ``group`` (a v3 ``zarr.json``'s
    ``consolidated_metadata``, rewritten without it; a v2 ``.zmetadata``), its own metadata
    kept: readers then list its members as they are (xarray, warned, reads without it)."""
    import json

    key = f"{group}/zarr.json" if group else "zarr.json"
    raw = location.read(key)
    if raw is not None:
        try:
            doc = json.loads(raw)
        except ValueError:
            return
        if isinstance(doc, dict) and doc.pop("consolidated_metadata", None) is not None:
            location.write(key, [json.dumps(doc, indent=2).encode()], atomic=True)
        return
    location.delete(f"{group}/.zmetadata" if group else ".zmetadata")


def consolidated_groups(store: Any, path: str) -> list[str]:
    """The groups at ``path`` and above it (``path`` first, the root last) that have
    consolidated metadata of their own, which lists (as it was then) what is below them."""
    import zarr

    parts = path.split("/") if path else []
    found = []
    for depth in range(len(parts), -1, -1):
        group = "/".join(parts[:depth])
        try:
            with _quiet():
                g = zarr.open_group(store=store, path=group or None, mode="r")
        except Exception:
            continue
        if _own_consolidated(g):
            found.append(group)
    return found


def consolidated_differences(
    store: Any, path: str, members: tuple[str, ...] = (), groups: tuple[str, ...] | None = None
) -> list[str]:
    """Where the consolidated metadata above the array at ``path`` of ``store`` (that of each
    group at or above its parent with consolidated metadata of its own: a v3 ``zarr.json``'s
    ``consolidated_metadata``, a v2 ``.zmetadata``) disagrees with the own metadata of that
    array, of the ``members`` of its group (the coordinates written beside it) and of the
    group itself (its attributes), each in a few words naming the copy, the node and what
    differs; [] where every copy agrees, or there is none. A copy that does not list one of
    them (or lists one its group no longer holds) says so. ``xr.open_zarr`` reads these
    copies, not the arrays' own metadata: an output whose copy was edited after the run (or
    is stale) reads as other values or attributes than it holds. Every other node below a
    copy's group is compared too (:func:`_other_members_differ`): a copy that does not list
    an array added since (zarr-python's ``create_array`` writes none), or another's changed
    metadata, is as stale for a reader of the group (brk59). ``groups``: only the copies of
    these groups (of those at or above the parent)."""
    import zarr

    parent = path.rpartition("/")[0]
    targets = [path, *(_key(parent, m) for m in members)]
    found: list[str] = []
    for group in consolidated_groups(store, parent):
        if groups is not None and group not in groups:
            continue
        try:
            with _quiet():
                meta = zarr.open_consolidated(store, path=group or None, mode="r").metadata
            copy_of = meta.consolidated_metadata
            assert copy_of is not None  # open_consolidated raises where there is none
            listed = copy_of.flattened_metadata
        except Exception:  # a copy zarr cannot read: xarray cannot open the group either
            found.append(f"the consolidated metadata of {group or 'the root'!r} is unreadable")
            continue
        where = f"the consolidated metadata of {'group ' + repr(group) if group else 'the root'}"
        prefix = f"{group}/" if group else ""
        # a v2 copy (.zmetadata) lists the v2 nodes below it, which are all a v2 reader
        # sees: a v3 node (the output, in a v2 group enclosing its store) is none of its
        # business, and no consolidation lists it (it had failed verify after every run)
        v2 = getattr(meta, "zarr_format", 3) == 2
        for target in targets:
            rel = target[len(prefix) :]
            own = _own_array(store, target)
            if v2 and own is not None and own.metadata.zarr_format == 3:
                continue
            copy = listed.get(rel)
            if own is None:
                if copy is not None and target != path:
                    found.append(
                        f"{name_shown(where)} lists {rel!r}, which the group no longer holds"
                    )
                continue
            if copy is None:
                found.append(f"{name_shown(where)} does not list {rel!r}")
                continue
            said = _said_differing(*_record_as_copied(_document(own.metadata), _document(copy)))
            if said:
                found.append(
                    f"{name_shown(where)} holds another {said} of {rel!r} than its own metadata"
                )
        if parent != group:  # the group's attributes, as a copy above it holds them
            copy = listed.get(parent[len(prefix) :])
            own_attrs = group_attributes(store, parent)
            if copy is not None and not (v2 and _zarr_format(store, parent) == 3):
                said = _said_differing(
                    {"attributes": own_attrs}, {"attributes": dict(copy.attributes)}
                )
                if said:
                    found.append(
                        f"{name_shown(where)} holds another {said} of the group {parent!r}"
                    )
        skip = {t[len(prefix) :] for t in targets}
        if parent != group and listed.get(parent[len(prefix) :]) is not None:
            skip.add(parent[len(prefix) :])  # its attributes compared above
        found += _other_members_differ(store, group, listed, skip, where, v2)
    return found


def _zarr_format(store: Any, group: str) -> int | None:
    """The Zarr format of the group ``group`` of ``store`` (None where none opens)."""
    import zarr

    try:
        with _quiet():
            g = zarr.open_group(store=store, path=group or None, mode="r", use_consolidated=False)
    except Exception:
        return None
    return int(g.metadata.zarr_format)


def _other_members_differ(
    store: Any, group: str, listed: dict[str, Any], skip: set[str], where: str, v2: bool = False
) -> list[str]:
    """Where the consolidated copy ``listed`` (flattened, by path below ``group``) disagrees
    with what the group holds below it now, by its own metadata, for the nodes besides those
    of ``skip`` (compared by the caller): one it does not list, one it lists that is gone,
    one whose metadata it holds otherwise (a nested group's own consolidated copy aside).
    ``v2``: a v2 copy, which lists no v3 node (nor anything below one)."""
    import zarr

    try:
        with _quiet():
            g = zarr.open_group(store=store, path=group or None, mode="r", use_consolidated=False)
            held = {name: node.metadata for name, node in g.members(max_depth=None)}
    except Exception:
        return []
    if v2:
        v3 = [n for n, m in held.items() if getattr(m, "zarr_format", 2) == 3]
        held = {
            n: m for n, m in held.items() if not any(n == x or n.startswith(x + "/") for x in v3)
        }
    found: list[str] = []
    for name in sorted(held.keys() | listed.keys()):
        if name in skip:
            continue
        if name not in listed:
            found.append(f"{name_shown(where)} does not list {name!r}, which the group holds")
            continue
        if name not in held:
            found.append(f"{name_shown(where)} lists {name!r}, which the group no longer holds")
            continue
        own, copy = _record_as_copied(_document(held[name]), _document(listed[name]))
        own.pop("consolidated_metadata", None)
        copy.pop("consolidated_metadata", None)
        said = _said_differing(own, copy)
        if said:
            found.append(
                f"{name_shown(where)} holds another {said} of {name!r} than its own metadata"
            )
    return found


def consolidated_missing(store: Any, group: str) -> list[str]:
    """The groups whose consolidated metadata :func:`consolidate` writes for ``group`` (the
    group, and the store's root) that have none of their own now ([] where all have)."""
    wanted = [group, ""] if group else [""]
    have = consolidated_groups(store, group)
    return [g for g in wanted if g not in have]


def _record_as_copied(
    own: dict[str, Any], copy: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A node's own metadata document ``own`` and its consolidated ``copy``, to be compared:
    where its own attributes hold the run record as an earlier version wrote it (the mapping,
    :func:`pipeline.store.arrays.record_in_earlier_form`) and the copy holds the same record
    as the JSON text a run writes now (:func:`pipeline.store.arrays.run_record` reads both
    alike), ``own`` with the copy's text in its place. That copy is not stale: ``xr.open_zarr``
    reads the same record from it, in the form ``to_netcdf`` takes, and consolidating the
    group again would put the mapping back (h71c: ``verify`` had called it stale, naming
    ``zarr.consolidate_metadata``). The reverse, the mapping in the copy beside the text in
    its own, stays a difference: xarray reads the mapping there, which ``to_netcdf`` refuses,
    and consolidating again (or ``run --resume``) writes the text (h69c)."""
    attrs, copied = own.get("attributes"), copy.get("attributes")
    if not (isinstance(attrs, dict) and isinstance(copied, dict)):
        return own, copy
    mine, theirs = attrs.get(RUN_RECORD), copied.get(RUN_RECORD)
    if not (isinstance(mine, dict) and isinstance(theirs, str)):
        return own, copy
    record = run_record(copied)
    if record is None or not _same_value(record, mine):
        return own, copy
    return {**own, "attributes": {**attrs, RUN_RECORD: theirs}}, copy


def _said_differing(own: dict[str, Any], copy: dict[str, Any]) -> str:
    """The fields of two metadata documents that differ, in words (the attributes by name:
    "units attribute"); '' where none do."""
    keys = _differing(own, copy)
    words = [k for k in keys if k != "attributes"]
    if "attributes" in keys:
        names = _differing(dict(own.get("attributes") or {}), dict(copy.get("attributes") or {}))
        words += [f"{name_shown(n)} attribute" for n in names]
    return ", ".join(words)


def consolidated_attributes(store: Any, group: str, name: str) -> dict[str, Any] | None:
    """The attributes of the member ``name`` of ``group`` as the group's consolidated
    metadata holds them (what ``xr.open_zarr`` reads); None when the group has no
    consolidated metadata, or it does not list ``name``."""
    import zarr

    try:
        with _quiet():  # opened as xarray opens it: through the root's consolidated metadata
            meta = zarr.open_consolidated(store, path=group or None, mode="r").metadata
    except Exception:
        return None
    consolidated = getattr(meta, "consolidated_metadata", None)
    member = None if consolidated is None else consolidated.metadata.get(name)
    return None if member is None else dict(member.attributes)


def run_status(store: Any, path: str, attrs: dict[str, Any], consolidate: bool) -> str | None:
    """The status of the array at ``path`` of ``store`` as a run of the pipeline decides it
    (``run`` and ``verify`` alike), from its attributes ``attrs``: 'complete' or 'incomplete',
    as its own ``pipeline`` record says; None where it holds no record of the pipeline's.

    One whose own record says complete is still 'incomplete' where its group gets
    consolidated metadata (``consolidate``) and has some, and that copy holds another
    ``pipeline`` attribute: a run stopped after it marked the output complete and before the
    copy, which ``xr.open_zarr`` reads, said so too (``run --resume`` finishes it). Where the
    group has no copy (a replacement of another of its variables stopped after it dropped
    them: helper-45), xarray reads the variable's own metadata, which says what it is.

    One whose record says complete but holds no ``summary`` (which every run that finishes
    an output writes with its "complete", whatever its version) is 'incomplete' too: its
    status was edited, and nothing else of the record says the run finished (h56b: an
    interrupted output edited to "complete" had been "nothing to do" to ``run --resume``,
    and a sampled ``verify`` passed blocks never written, read as the fill value)."""
    doc = run_record(attrs)
    status = doc.get("status") if doc is not None else None
    if status not in ("complete", "incomplete"):
        return None
    if status == "complete" and doc is not None and not isinstance(doc.get("summary"), dict):
        return "incomplete"  # said complete, but no run that finished wrote this record
    if status == "incomplete" or not consolidate:
        return status
    group, _, name = path.rpartition("/")
    if not has_consolidated(store, group):
        return status
    held = consolidated_attributes(store, group, name)
    if held is None:  # no copy of the group lists it (its own removed, the root's kept):
        return status  # its own record says, as xarray reads it; verify names the copy
    # the same record, as text or as an earlier version's mapping: a copy not yet written
    # again after ``run --resume`` wrote the output's own as text (a kill between the two)
    # is a stale copy of a complete output, which that resume writes again, not an
    # unfinished run, which it could not resume (its run record is gone)
    same = run_record(held) == run_record(attrs)
    return status if same else "incomplete"


def differing_values(a: Any, b: Any) -> list[str]:
    """The keys whose values differ between two attribute mappings, as stored JSON
    (:func:`_same_value`: NaN equal to NaN, -0.0 not 0.0, which xarray's ``identical`` takes
    for the same; a NumPy value as the JSON it is stored as, whole, where its ``str``, which
    this had compared, elides a long array's middle); a key in one only differs. Sorted."""
    a, b = dict(a), dict(b)
    both = a.keys() & b.keys()
    differ = (k for k in a.keys() | b.keys() if k not in both or not _same_value(a[k], b[k]))
    return sorted(str(k) for k in differ)


def copies_differ(location: Any, path: str, members: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """The consolidated copies above the output at ``path`` of the store at ``location`` (a
    :class:`~pipeline.store.location.Location`) that disagree with what they list
    (:func:`consolidated_differences`: its groups' in the store, and those of the groups
    that enclose the store, ``output.store: out.zarr/sub``): (words, the call that writes
    that copy again from what its group holds, :func:`consolidate_call`) for each
    difference. A stale copy is the copy's fault, not the output's, whose own metadata is
    compared apart (:func:`own_metadata_differs`): consolidating its group is the fix, which
    a plain ``run`` of a complete output does (helper-46c: ``run`` and ``verify`` had named
    ``run --overwrite``, rewriting the whole output, for a copy that did not list an array
    someone added to an enclosing group). [] where all agree."""
    found: list[tuple[str, str]] = []
    if path:
        store = location.zarr_store(read_only=True)
        for group in consolidated_groups(store, path.rpartition("/")[0]):
            for said in consolidated_differences(store, path, members, groups=(group,)):
                found.append((said, consolidate_call(location, group)))
    for holder, within in enclosing_groups(location):
        inner = f"{within}/{path}" if path else within
        outer = holder.zarr_store(read_only=True)
        for said in consolidated_differences(outer, inner, members, groups=("",)):
            found.append(
                (said.replace("of the root", f"of {holder}", 1), consolidate_call(holder, ""))
            )
    return found


def consolidate_call(location: Any, group: str) -> str:
    """The zarr-python call that writes the consolidated metadata of the group ``group`` of
    the store at ``location`` again from what it holds, as a user pastes it:
    ``zarr.consolidate_metadata('/data/out.zarr', path='g')``; a remote store without
    ``storage_options`` by its URL (zarr-python makes its fsspec store), one with them opened
    with them by name (``FsspecStore.from_url(url, storage_options=storage_options)``, which
    :func:`consolidate_words` says are the config's: never their values, which hold
    credentials; it had shown ``storage_options=...``, which Python reads as Ellipsis and
    zarr-python refuses), its URL's password masked."""
    url = location.said()
    store = (
        repr(url)
        if location.is_local or not location.storage_options
        else f"zarr.storage.FsspecStore.from_url({url!r}, {_OPTIONS_ARGUMENT})"
    )
    return f"zarr.consolidate_metadata({store}{f', path={group!r}' if group else ''})"


#: How :func:`consolidate_call` passes a remote store's options: by name.
_OPTIONS_ARGUMENT = "storage_options=storage_options"


def consolidate_words(calls: Iterable[str], setting: str = "output") -> str:
    """The calls of :func:`consolidate_call` as a clause, each in backticks, in order, once
    each, joined by "then"; where one passes the store's options by name, saying what they
    are (``setting``'s ``storage_options`` in the config: the output's, which the groups
    enclosing it share). '' for none."""
    calls = list(dict.fromkeys(calls))
    said = " then ".join(f"`{c}`" for c in calls)
    if any(_OPTIONS_ARGUMENT in c for c in calls):
        said += f", storage_options being the config's {setting}.storage_options"
    return said


#: The words of :func:`own_metadata_differs` naming the attributes of the input's values
#: (:data:`~pipeline.ops.cf.VALUE_ATTRIBUTES`: ``flag_values``, ``valid_range``, ...) that
#: an earlier release of the pipeline carried into the output and this one leaves out
#: (h87f): an output it wrote holds them, which is no edit since (h88d).
EARLIER_RELEASE_WROTE = "which an earlier release of the pipeline wrote"


def earlier_release_alone(words: Iterable[str]) -> bool:
    """Whether every difference of ``words`` (:func:`own_metadata_differs`' words, or
    clauses of them joined by '; ') is one an earlier release of the pipeline wrote
    (:data:`EARLIER_RELEASE_WROTE`), none an edit; False where there are none."""
    said = [w for words_ in words for w in words_.split("; ")]
    return bool(said) and all(EARLIER_RELEASE_WROTE in w for w in said)


def own_metadata_differs(
    arr: Any,
    attrs: dict[str, Any],
    dimension_names: tuple[str | None, ...] | None,
    fill: Any = None,
    said: Any = None,
    left_out: dict[str, Any] | None = None,
) -> list[str]:
    """What the own metadata of the output array ``arr`` holds otherwise than a run writes it,
    each in a few words: its attributes (besides the pipeline's record) against ``attrs``
    (those the input gives it), its dimension names against ``dimension_names`` (the
    input's), its fill value against ``fill`` (a 0-d array: the chain of the input's fill
    value, :func:`pipeline.store.arrays.chained_fill`, where the output's record says it
    wrote that, ``fill_value``; None: zero, which earlier versions wrote), bit for bit, a
    NaN's payload by ``said``, the document's ``fill_value`` as written
    (:func:`pipeline.store.arrays.fills_agree`, :func:`~pipeline.store.arrays.stored_fill_said`;
    None: any NaN); ``left_out``: the input's value attributes this release does not carry
    (:attr:`pipeline.planning.variable.Carried.left_out`), which an output holding them equal
    had from an earlier release (said so, not as an edit). [] where all agree. What
    ``verify`` checks of a complete output, and ``run --resume`` of an incomplete one (which
    never rewrites them, and would mark the output complete with the edit in it)."""
    import numpy as np

    from pipeline.ops.cf import VALUE_ATTRIBUTES

    left_out = left_out or {}
    found: list[str] = []
    own = {k: v for k, v in dict(arr.attrs).items() if k != RUN_RECORD}
    keys = differing_values(own, attrs)
    # those an earlier release carried from the input, which this one leaves out (h88d)
    earlier = [  # as the input holds them: one added by hand, or edited, is an edit (h88e)
        k
        for k in keys
        if k in VALUE_ATTRIBUTES
        and k in own
        and k not in attrs
        and k in left_out
        and not differing_values({k: own[k]}, {k: left_out[k]})
    ]
    keys = [k for k in keys if k not in earlier]
    if keys:
        found.append(f"its {names_shown(keys)} attribute{'s' if len(keys) > 1 else ''}")
    if earlier:
        found.append(
            f"its {names_shown(earlier)} attribute{'s' if len(earlier) > 1 else ''}, "
            f"{EARLIER_RELEASE_WROTE} and this one leaves out, as "
            f"{'they describe' if len(earlier) > 1 else 'it describes'} the input's values, "
            "not the computed ones"
        )
    names = getattr(arr.metadata, "dimension_names", None)
    if (tuple(names) if names is not None else None) != dimension_names:
        found.append(
            f"its dimension names {list(names) if names is not None else None} "
            f"(the run wrote {list(dimension_names) if dimension_names is not None else None})"
        )
    wrote = np.zeros((), dtype=arr.dtype) if fill is None else fill
    if not fills_agree(wrote, arr.metadata.fill_value, said):  # -0.0, a NaN's bits too
        has = np.asarray(arr.metadata.fill_value, dtype=arr.dtype).item()
        shown = said if isinstance(said, str) else repr(has)
        found.append(f"its fill value {shown} (the run wrote {fill_said(wrote)})")
    return found
