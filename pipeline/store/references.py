"""The CF attributes by which the variables of an xarray Dataset stored as a Zarr group name one
another (``coordinates``, ``grid_mapping``, ``cell_measures``, ``bounds``, ...), parsed as
xarray's ``decode_coords`` parses them, and which members of the group a run of one variable
reads (:func:`needed_members`). Text alone: nothing here opens a store, so
:mod:`~pipeline.store.arrays`, which checks the documents a run needs, and
:mod:`~pipeline.store.datasets`, which reads them, share one reading.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: A group's attribute that is xarray's encoding, not a Dataset attribute: ``coordinates``
#: lists the coordinates no variable's dimensions cover (a ``time_bnds``, a coordinate on a
#: dimension of its own), which ``xr.open_zarr`` takes out of the Dataset's attributes.
GLOBAL_COORDINATES = "coordinates"


#: The attributes of a variable that name other variables of its Dataset which describe its
#: grid, carried beside it: auxiliary coordinates, the grid mapping (and the coordinates its
#: long form names), cell measures, the terms of a parametric vertical coordinate's formula,
#: a geometry container and what it names: what xarray's ``decode_coords="all"`` reads as
#: coordinates (its ``CF_RELATED_DATA``, bounds aside).
CARRIED_REFERENCES = (
    "coordinates",
    "grid_mapping",
    "cell_measures",
    "formula_terms",
    "geometry",
    "node_coordinates",
    "node_count",
    "part_node_count",
    "interior_ring",
)
#: The attributes of an array that name the variable holding its cells' bounds (CF), carried
#: too, for the arrays carried beside the output variable; the output variable's own are
#: left out, with what they name (the input's values' bounds do not bound the computed ones:
#: the pipeline run on a coordinate, ``lat`` with ``bounds: lat_bnds``).
BOUNDS = ("bounds", "climatology")
#: Every attribute by which an array names variables that are carried with it, on any array
#: the output holds: followed from the variable, and from each array carried, in turn.
CARRIED = (*CARRIED_REFERENCES, *BOUNDS)
#: The attributes by which an array names variables that describe its stored values rather
#: than its grid (``ancillary_variables``: their errors, quality flags; CF 1.12's
#: ``quantization``: how they were rounded): the computed values are not those, so these
#: variables are never carried, and the attribute is dropped from every array the output holds.
DROPPED = ("ancillary_variables", "quantization")
#: Every attribute by which CF names other variables of a Dataset (:data:`CARRIED`,
#: :data:`DROPPED`).
REFERENCES = (*CARRIED, *DROPPED)
#: Every attribute by which a variable refers to others of its Dataset, as CF and xarray's
#: ``decode_coords`` read them.
NAMING = REFERENCES
#: The attributes whose value is ``key: name ...`` pairs, as xarray parses them: a grid
#: mapping's ``crs: lat lon`` (the key the grid mapping, the names the coordinates it maps),
#: a cell measure's ``area: cell_area``, a formula's ``a: var_a b: var_b`` (the names the
#: variables); a single name (``grid_mapping: crs``) is a plain list.
PAIRED = ("grid_mapping", "cell_measures", "formula_terms")


def reference_groups(value: str, key: str) -> list[tuple[str, list[str]]]:
    """The CF attribute ``key``'s value as (key, names) pairs, parsed as xarray's
    ``decode_coords`` parses it: for an attribute of :data:`PAIRED` of more than one word,
    ``area: cell_area`` is [('area', ['cell_area'])], ``crs: lat lon`` [('crs', ['lat',
    'lon'])] (a word with a colon is a key, a stray space before the colon aside); otherwise
    (``crs``, a ``coordinates`` or ``bounds`` list) [('', names)]."""
    tokens = value.replace(" :", ":").split()
    if key not in PAIRED or len(tokens) < 2:
        return [("", tokens)]
    groups: list[tuple[str, list[str]]] = []
    for token in tokens:
        if ":" in token:
            groups.append((token.strip(":"), []))
        elif groups:
            groups[-1][1].append(token)
        else:  # a name before any key (xarray refuses it): a name alone
            groups.append(("", [token]))
    return groups


def references(attrs: dict[str, Any], keys: tuple[str, ...] = NAMING) -> list[str]:
    """Every variable of its Dataset that the CF attributes ``keys`` of ``attrs`` name (by
    :func:`reference_groups`, as xarray's ``decode_coords="all"`` reads them): a list of
    names (``coordinates``, ``bounds``, ``ancillary_variables``, ``grid_mapping: crs``), the
    variables of ``cell_measures: area: cell_area``, the grid mappings of ``grid_mapping:
    crs: lat lon`` and the coordinates each names."""
    found: list[str] = []
    for key in keys:
        value = attrs.get(key)
        if isinstance(value, str):
            for k, names in reference_groups(value, key):
                found += ([k] if k and key == "grid_mapping" else []) + names
    return list(dict.fromkeys(found))


def needed_members(
    name: str,
    dims: tuple[str | None, ...] | None,
    attrs: Mapping[str, Any],
    group_attrs: Mapping[str, Any],
    members: Mapping[str, tuple[tuple[str | None, ...] | None, Mapping[str, Any]] | None],
) -> set[str]:
    """The members of a group that a run of its variable ``name`` (dimensions ``dims``,
    attributes ``attrs``) reads, so that each must be readable: the arrays carried beside it
    (as :func:`pipeline.store.datasets.carried_arrays` follows them from
    :func:`pipeline.store.datasets.variable_of`): its dimension coordinates, those its
    attributes of :data:`CARRIED_REFERENCES` name, those the group's
    :data:`GLOBAL_COORDINATES` (``group_attrs``) or another member's ``coordinates`` lists on
    dimensions it has (xarray's ``decode_coords`` gives it those), and, in turn, those each of
    these names by :data:`CARRIED` and its dimension coordinates. A member named by nothing
    else (a word of a ``long_name``, a ``comment``, ``units``, the variable's own ``bounds``
    or ``ancillary_variables``, which the run leaves out) is not among them.

    ``members``: the group's other arrays by name, each (dimension names or None where it
    has none, attributes), or None where its metadata cannot be read: such a member is
    needed where anything follows to it, and where a ``coordinates`` lists it (its
    dimensions, which decide whether xarray gives it to the variable, are unknown), and
    nothing is followed from it. ``dims`` None (a variable without dimension names, run as
    an array alone): none needed; a None among them (xarray's dimension None, of a null
    name) names no member. Names of the group that ``members`` does not hold (a
    reference to nothing, a subgroup) are left out."""
    if dims is None:
        return set()
    wanted = [*(d for d in dims if d is not None), *references(dict(attrs), CARRIED_REFERENCES)]
    listed = _listed(group_attrs.get(GLOBAL_COORDINATES))
    for lister, member in members.items():
        if member is not None and lister != name:
            listed += references(dict(member[1]), ("coordinates",))
    skip = {name, *wanted}
    for n in dict.fromkeys(listed):
        if n in skip or n not in members:
            continue
        member = members[n]
        if member is None or (member[0] is not None and set(member[0]) <= set(dims)):
            wanted.append(n)
    itself = "" if name in dims else name  # a dimension coordinate run on: carried too
    needed: set[str] = set()
    while wanted:
        n = wanted.pop(0)
        if n == itself or n in needed:
            continue
        if n != name and n not in members:
            continue
        found = (dims, attrs) if n == name else members[n]
        needed.add(n)
        if found is not None:
            named = (d for d in found[0] or () if d is not None)
            wanted += [*named, *references(dict(found[1]), CARRIED)]
    needed.discard(name)
    return needed


def _listed(value: Any) -> list[str]:
    """The names of a ``coordinates`` attribute's value, as xarray splits it ([] for none)."""
    return value.split() if isinstance(value, str) else []
