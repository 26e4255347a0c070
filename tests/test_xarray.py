"""xarray Datasets in, xarray Datasets out.

Real xarray writes each input (Zarr v2 and v3, consolidated, coordinates with attributes, a
non-dimension coordinate, variable attributes; floats, or int16 packed with scale_factor,
add_offset and _FillValue); the pipeline runs on one of its variables, through the Python API
on a ``distributed.Client`` made here, or through the command line; and ``xr.open_zarr`` of
the output must give the input's dimensions, coordinates (values and attributes) and Dataset
attributes, the variable's attributes less the packing ones, and values equal to the bit to
NumPy's chain over what xarray decodes from the input. Packed variables without
``input.mask_and_scale`` are refused before anything is written; a Dataset output is resumed,
overwritten and checked for staleness like any other. GPU variants run with ``-m gpu``.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import importlib.util
import io
import json
import logging
import os
import re
import shutil
import signal
import struct
import subprocess
import tarfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
import zarr

import pipeline
from pipeline.config import parse_config
from pipeline.errors import ChunkError, ConfigError, InputError, OutputError, PipelineError
from pipeline.ops.cf import NAN_FILL_TEXT, PACKING_ATTRIBUTES
from pipeline.ops.stages import Interval, apply_chain, plan_chain
from pipeline.store.location import WRITE_PROBE
from tests.conftest import STAGES, make_array, record_of, reference, write_config
from tests.faultkit import (
    ROOT,
    cli_process,
    copy_store,
    ctrl_c_script,
    file_states,
    kill_procs,
    marker_names,
    markers,
    one_line_error,
    read_only_folder,
    refused,
    run_and_signal,
    run_python,
    set_aside,
    status,
    stored_files,
    wait_gone,
)
from tests.faultkit import env as child_env

xr = pytest.importorskip("xarray")

try:  # the S3 server of tests/test_s3.py, where s3fs and moto are installed
    from tests.test_s3 import bucket, s3_endpoint  # noqa: F401  (fixtures)
except pytest.skip.Exception:

    @pytest.fixture
    def bucket() -> None:
        pytest.skip("needs s3fs and moto (the dev extra)")


ROWS, COLS = 40, 60
PACKED = {"dtype": "int16", "scale_factor": 0.01, "add_offset": 273.15, "_FillValue": -9999}


def write_dataset(
    path: Path,
    zarr_format: int,
    encoding: dict[str, Any] | None = None,
    rows: int = ROWS,
    cols: int = COLS,
    chunks: tuple[int, int] = (10, COLS),
    coord_encoding: dict[str, Any] | None = None,
) -> None:
    """A Dataset as xarray writes it: the variable ``t`` (y, x) in kelvin with NaNs, a
    second variable ``p``, dimension coordinates with attributes, a non-dimension
    coordinate ``lon``, Dataset attributes, consolidated metadata. ``coord_encoding``: the
    encoding of the coordinates x and lon (default: xarray's, one chunk each)."""
    rng = np.random.default_rng(7)
    t = rng.uniform(-40.0, 40.0, (rows, cols)) + 273.15
    t[3, 5] = np.nan
    t[min(20, rows - 1), :7] = np.nan
    ds = xr.Dataset(
        {
            "t": (("y", "x"), t, {"units": "K", "long_name": "air temperature"}),
            "p": (("y",), rng.uniform(900.0, 1000.0, rows), {"units": "hPa"}),
        },
        coords={
            "y": ("y", np.arange(rows) * 2.5, {"units": "km", "axis": "Y"}),
            "x": ("x", np.arange(cols), {"units": "km", "long_name": "easting"}),
            "lon": ("x", np.linspace(5.0, 6.0, cols), {"units": "degrees_east"}),
        },
        attrs={"title": "a test field", "institution": "tests"},
    )
    ds["t"].encoding = {**(encoding or {}), "chunks": chunks}
    for name in ("x", "lon") if coord_encoding else ():
        ds[name].encoding = dict(coord_encoding)
    with warnings.catch_warnings():  # zarr: v3 consolidated metadata is not in the spec yet
        warnings.simplefilter("ignore")
        ds.to_zarr(str(path), zarr_format=zarr_format, mode="w", consolidated=True)


def open_dataset(path: Path, group: str | None = None, raw: bool = False, load: bool = True) -> Any:
    """The Dataset at ``path`` as xarray opens it (``raw``: its stored values, undecoded, with
    their encodings, to be written elsewhere as they are; ``load``: its values read, else
    only its metadata and index coordinates: an incomplete output may hold a chunk that a
    killed run was writing, which only ``--resume`` rewrites)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = xr.open_zarr(str(path), group=group, mask_and_scale=not raw)
        return ds.load() if load else ds


def config(tmp: Path, backend: str = "cpu", **sections: Any) -> dict[str, Any]:
    """A run on the variable ``t`` of ``tmp/in.zarr`` into ``tmp/out.zarr``; ``input`` and
    ``output`` keys merged in."""
    return {
        "input": {"store": str(tmp / "in.zarr"), "array": "t", **sections.pop("input", {})},
        "output": {"store": str(tmp / "out.zarr"), **sections.pop("output", {})},
        "stages": STAGES,
        "backend": backend,
        **sections,
    }


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return (
        a.dtype == b.dtype
        and a.shape == b.shape
        and np.array_equal(
            np.ascontiguousarray(a).view(np.uint8), np.ascontiguousarray(b).view(np.uint8)
        )
    )


def assert_variable_as_xarray_opened_it(
    out: Path, src: Path, name: str = "t", group: str | None = None
) -> Any:
    """``xr.open_zarr(out)`` holds ``name``: the input variable ``t``'s dimensions,
    coordinates and attributes (less packing ones, plus the pipeline's record), the input
    Dataset's attributes, and NumPy's chain over the input's decoded values to the bit. The
    output's own attributes hold no packing attribute, but for the ``_FillValue`` NaN that
    xarray's ``to_zarr`` writes on every float variable (base64 text in Zarr v3), which
    xarray reads into its encoding. Returns the output Dataset."""
    a_ds, b_ds = open_dataset(src), open_dataset(out, group)
    a, b = a_ds["t"], b_ds[name]
    assert list(b_ds.data_vars) == [name]
    assert b.dims == a.dims and b.shape == a.shape
    assert set(b.coords) == set(a.coords) == {"y", "x", "lon"}
    for c in a.coords:
        assert b[c].dims == a[c].dims, c
        assert np.array_equal(b[c].values, a[c].values), c
        assert b[c].attrs == a[c].attrs, c
    assert b_ds.attrs == a_ds.attrs
    attrs = dict(b.attrs)
    record = record_of({"pipeline": attrs.pop("pipeline")})
    assert record["status"] == "complete"
    assert attrs == a.attrs == {"units": "K", "long_name": "air temperature"}
    chain = plan_chain(parse_config(config(src.parent)).stage_specs(), a.dtype)
    with np.errstate(all="ignore"):
        want = apply_chain(chain, a.values)
    assert same_bits(b.values, want), "the output differs from NumPy's chain"
    raw = zarr.open_array(str(out), path=f"{group}/{name}" if group else name, mode="r")
    assert raw.metadata.zarr_format == 3
    assert raw.metadata.dimension_names == a.dims
    assert not set(raw.attrs) & set(PACKING_ATTRIBUTES) - {"_FillValue"}
    assert raw.attrs.get("_FillValue") == (NAN_FILL_TEXT if b.dtype.kind == "f" else None)
    if b.dtype.kind == "f":
        assert np.isnan(b.encoding["_FillValue"])
    return b_ds


def consolidated(store: Path, group: str = "") -> dict[str, Any] | None:
    """The consolidated metadata in a v3 group's zarr.json (None without)."""
    doc = json.loads((store / group / "zarr.json").read_text())
    return doc.get("consolidated_metadata")


# --------------------------------------------------------------------------------------------
# Datasets in and out.


@pytest.mark.parametrize("zarr_format", [2, 3], ids=lambda f: f"v{f}")
@pytest.mark.parametrize("packed", [False, True], ids=["float64", "int16-packed"])
def test_a_dataset_variable_comes_out_as_xarray_opened_it(
    tmp_path: Path, backend_client: tuple[str, Any], zarr_format: int, packed: bool
) -> None:
    backend, client = backend_client
    write_dataset(tmp_path / "in.zarr", zarr_format, PACKED if packed else None)
    cfg = config(tmp_path, backend, input={"mask_and_scale": packed})
    summary = pipeline.run(cfg, client=client)
    assert summary.status == "complete"
    out = tmp_path / "out.zarr"
    ds = assert_variable_as_xarray_opened_it(out, tmp_path / "in.zarr")
    assert ds["t"].dtype == np.float64
    assert consolidated(out) is not None  # as the input had
    assert not (out / "t" / ".pipeline").exists()
    if packed:  # the run computed on the decoded values: the stored int16 ones were not read
        record = record_of(ds["t"].attrs)
        assert record["source"]["dtype"] == "int16"
        assert record["identity"]["unpack"].startswith("unpack (-9999 -> NaN")


@pytest.mark.parametrize("zarr_format", [2, 3], ids=lambda f: f"v{f}")
def test_a_dataset_output_is_written_to_netcdf_as_xarray_opens_it(
    tmp_path: Path, backend_client: tuple[str, Any], zarr_format: int
) -> None:
    """h67c: ``xr.open_zarr(out).to_netcdf(...)``, as a user hands a result on, writes the
    output whole: the computed values to the bit, the coordinates, the Dataset's and the
    variable's attributes, and the run's record, JSON text, which reads back as the same
    record. The record had been a mapping, which netCDF has no type for: ``to_netcdf``
    refused the output ("Invalid value for attr 'pipeline'"), the record to be dropped
    first."""
    pytest.importorskip("h5py", reason="netCDF-4 files need h5netcdf[h5py] (the dev extra)")
    pytest.importorskip("h5netcdf", reason="netCDF-4 files need h5netcdf (the dev extra)")
    backend, client = backend_client
    src = tmp_path / "in.zarr"
    write_dataset(src, zarr_format, PACKED)
    cfg = config(tmp_path, backend, input={"mask_and_scale": True})
    assert pipeline.run(cfg, client=client).status == "complete"
    out, nc = open_dataset(tmp_path / "out.zarr"), tmp_path / "out.nc"
    out.to_netcdf(nc, engine="h5netcdf")
    with xr.open_dataset(nc, engine="h5netcdf") as opened:
        back = opened.load()
    a = open_dataset(src)
    chain = plan_chain(parse_config(cfg).stage_specs(), a["t"].dtype)
    with np.errstate(all="ignore"):
        want = apply_chain(chain, a["t"].values)
    assert same_bits(back["t"].values, want), "the netCDF file's values differ from NumPy's"
    assert back["t"].dims == a["t"].dims and back.attrs == a.attrs
    for c in a.coords:
        assert back[c].dims == a[c].dims and back[c].attrs == a[c].attrs, c
        assert same_bits(back[c].values, a[c].values), c
    attrs = dict(back["t"].attrs)
    assert record_of({"pipeline": attrs.pop("pipeline")}) == record_of(out["t"].attrs)
    assert attrs == a["t"].attrs
    assert np.isnan(back["t"].encoding["_FillValue"])


@pytest.mark.parametrize("zarr_format", [2, 3], ids=lambda f: f"v{f}")
def test_resume_writes_an_earlier_versions_record_as_text_so_to_netcdf_takes_it(
    tmp_path: Path, backend_client: tuple[str, Any], zarr_format: int
) -> None:
    """h69c: an output an earlier version wrote holds its run record as the mapping itself,
    in the variable's attributes and in the group's consolidated metadata, which xarray's
    ``to_netcdf`` refuses; ``run --resume`` of it, complete, had said "nothing to do" and
    kept it. It writes the record again as JSON text, the same record, in the variable's
    metadata and the group's consolidated copy, nothing else (no chunk, no coordinate), and
    says so; ``to_netcdf`` then writes the output, and a second resume has nothing to do."""
    pytest.importorskip("h5py", reason="netCDF-4 files need h5netcdf[h5py] (the dev extra)")
    pytest.importorskip("h5netcdf", reason="netCDF-4 files need h5netcdf (the dev extra)")
    backend, client = backend_client
    write_dataset(tmp_path / "in.zarr", zarr_format)
    cfg = config(tmp_path, backend)
    assert pipeline.run(cfg, client=client).status == "complete"
    out = tmp_path / "out.zarr"
    variable = zarr.open_group(str(out), mode="r+")["t"]
    record = record_of(variable.attrs)
    variable.update_attributes({"pipeline": record})  # as an earlier version wrote it
    with warnings.catch_warnings():  # zarr: v3 consolidated metadata is not in the spec yet
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(str(out))  # as that run's end did
    assert open_dataset(out)["t"].attrs["pipeline"] == record
    with pytest.raises((TypeError, ValueError), match="pipeline"):
        open_dataset(out).to_netcdf(tmp_path / "before.nc", engine="h5netcdf")
    assert pipeline.verify(cfg).ok
    before = file_states(out)
    summary = pipeline.run(cfg, client=client, resume=True)
    assert summary.status == "complete (run record written again)", summary.status
    after = file_states(out)
    changed = sorted(k for k in before if before[k] != after.get(k))
    # the variable's metadata and the group's (its consolidated copy): the output is Zarr v3
    assert changed == ["t/zarr.json", "zarr.json"] and after.keys() == before.keys(), changed
    assert record_of(zarr.open_group(str(out), mode="r")["t"].attrs) == record
    ds = open_dataset(out)
    assert record_of(ds["t"].attrs) == record  # the consolidated copy, which xarray reads
    ds.to_netcdf(tmp_path / "out.nc", engine="h5netcdf")
    assert pipeline.verify(cfg).ok
    again = pipeline.run(cfg, client=client, resume=True)
    assert again.status == "complete (nothing to do)", again.status
    assert file_states(out) == after


def test_a_read_only_output_with_an_earlier_versions_record_is_done_and_kept(
    tmp_path: Path, backend_client: tuple[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """h70a: a finished output that an earlier version wrote (its run record the mapping),
    made read-only (a shared dataset): ``run --resume``, which cannot write the record again
    as text there, finds it complete and writes nothing, saying the record stays in that
    form and how to drop it for ``to_netcdf``; ``plan`` plans it, as for any read-only
    complete output (h65d, h66b). The record's rewrite (h69c) had made both refuse the
    complete output as "not a writable directory", its fix the folder's permissions."""
    backend, client = backend_client
    write_dataset(tmp_path / "in.zarr", 3)
    cfg = config(tmp_path, backend)
    assert pipeline.run(cfg, client=client).status == "complete"
    out = tmp_path / "out.zarr"
    variable = zarr.open_group(str(out), mode="r+")["t"]
    variable.update_attributes({"pipeline": record_of(variable.attrs)})  # an earlier version's
    with warnings.catch_warnings():  # zarr: v3 consolidated metadata is not in the spec yet
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(str(out))
    before = file_states(out)
    with read_only_folder(out):
        now = pipeline.plan(cfg, client=client).output_now
        assert now.startswith(
            "complete, made from this config and input: `pipeline.run(config, resume=True)` "
            "finds nothing to do"
        ), now
        assert "run record stays" in now, now
        with caplog.at_level(logging.WARNING, logger="pipeline"):
            summary = pipeline.run(cfg, client=client, resume=True)  # progress "none"
        assert summary.status == "complete (nothing to do)", summary.status
        said = [r.getMessage() for r in caplog.records if "run record stays" in r.getMessage()]
        assert len(said) == 1 and 'attrs.pop("pipeline")' in said[0], said
        assert pipeline.verify(cfg).ok
    assert file_states(out) == before
    assert isinstance(zarr.open_group(str(out), mode="r")["t"].attrs["pipeline"], dict)
    # writable again: the resume writes the record as text, as h69c made it
    assert pipeline.run(cfg, client=client, resume=True).status == (
        "complete (run record written again)"
    )


def test_a_copy_holding_the_record_as_a_mapping_is_the_same_record(
    tmp_path: Path, backend_client: tuple[str, Any]
) -> None:
    """A resume that writes an earlier version's record again as text (above) is killed
    after the variable's own metadata and before the group's consolidated copy: the copy
    holds the mapping, the variable the text, the same record. The output is complete with a
    stale copy, which ``run --resume`` writes again, not "incomplete" (the copy had been
    compared as stored, text against a mapping), which nothing could resume: its run record
    had gone when it was finished."""
    backend, client = backend_client
    write_dataset(tmp_path / "in.zarr", 3)
    cfg = config(tmp_path, backend)
    assert pipeline.run(cfg, client=client).status == "complete"
    out = tmp_path / "out.zarr"
    variable = zarr.open_group(str(out), mode="r+")["t"]
    record = record_of(variable.attrs)
    variable.update_attributes({"pipeline": record})
    with warnings.catch_warnings():  # zarr: v3 consolidated metadata is not in the spec yet
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(str(out))
    variable.update_attributes({"pipeline": json.dumps(record)})  # the kill: no copy since
    done = pipeline.run(cfg, client=client, resume=True)
    assert done.status == "complete (consolidated metadata written again)", done.status
    assert record_of(open_dataset(out)["t"].attrs) == record  # the copy, as text now
    assert pipeline.verify(cfg).ok


def _copied_record(group: Path, rel: str) -> Any:
    """The ``pipeline`` attribute of ``rel`` as the consolidated copy of the v3 group
    ``group`` holds it (None where the copy does not list it)."""
    listed = (consolidated(group) or {}).get("metadata", {})
    return listed.get(rel, {}).get("attributes", {}).get("pipeline")


@pytest.mark.parametrize("copy_holds", ["text", "mapping"])
@pytest.mark.parametrize("output", ["dataset", "sibling", "array in v3 group", "array in v2 group"])
def test_a_copy_holding_the_record_as_text_beside_an_earlier_versions_mapping_is_not_stale(
    tmp_path: Path, backend_client: tuple[str, Any], output: str, copy_holds: str
) -> None:
    """h71c: an output's own run record in an earlier version's form (the mapping) while the
    consolidated copy listing it holds the same record as the JSON text a run writes now
    (``copy_holds`` 'text'): ``verify`` had called the copy stale, naming
    ``zarr.consolidate_metadata``, which puts the mapping back into the copy (then
    ``to_netcdf`` refuses what ``xr.open_zarr`` reads). The copy is the same record, in the
    form xarray's readers want: verify passes, plan names no copy, and ``run --resume``
    writes the record again as text, as for any output of an earlier version. The reverse
    (h69c's kill: the text in the variable, the mapping in the copy, which xarray reads) is
    a stale copy, said with the call that writes it again, after which verify passes. The
    output is a Dataset's variable (the copy is its group's), a sibling of the variable
    verified (another run's output in the same group, compared as a member of the copy), or
    an array alone at ``encl.zarr/sub`` in a consolidated v3 group (its copy lists it) or a
    v2 one (whose ``.zmetadata`` lists no v3 node: nothing to compare)."""
    backend, client = backend_client
    if output in ("dataset", "sibling"):
        write_dataset(tmp_path / "in.zarr", 3)
        cfg = config(tmp_path, backend)
        group, rel = tmp_path / "out.zarr", "t"
        checked = config(tmp_path, backend, output={"array": "u"}) if output == "sibling" else cfg
        fmt = 3
    else:
        fmt = 3 if output == "array in v3 group" else 2
        src = tmp_path / "in.zarr"
        zarr.create_array(str(src), shape=(8, 8), chunks=(4, 4), dtype="f4")[...] = 1.0
        group, rel = tmp_path / "encl.zarr", "sub"
        zarr.open_group(str(group), mode="w", zarr_format=fmt).create_group("keep")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            zarr.consolidate_metadata(str(group), zarr_format=fmt)
        cfg = config(tmp_path, backend, input={"array": ""}, output={"store": str(group / rel)})
        checked = cfg
    assert pipeline.run(cfg, client=client).status == "complete"
    if checked is not cfg:  # beside 't' in its group
        assert pipeline.run(checked, client=client, overwrite=True).status == "complete"
    variable = zarr.open_array(str(group), path=rel, mode="r+")
    record = record_of(variable.attrs)
    variable.update_attributes({"pipeline": record})  # as an earlier version wrote it
    if copy_holds == "mapping":  # consolidated so, then the variable's written as text
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            zarr.consolidate_metadata(str(group), zarr_format=fmt)
        variable.update_attributes({"pipeline": json.dumps(record)})
    if fmt == 3:  # the copy as it is now: the other form of the same record
        copied = _copied_record(group, rel)
        assert (copied == record) if copy_holds == "mapping" else (json.loads(copied) == record)
    result = pipeline.verify(checked)
    if copy_holds == "text" or fmt == 2:
        assert result.ok, str(result)
        assert result.consolidated_stale == () and result.consolidate_calls == (), result
        assert "consolidated" not in pipeline.plan(checked, client=client).output_now
        if copy_holds == "text":  # the variable's own mapping written again as text
            done = pipeline.run(cfg, client=client, resume=True)
            assert done.status == "complete (run record written again)", done.status
            assert record_of(zarr.open_array(str(group), path=rel, mode="r").attrs) == record
    else:
        assert not result.ok and len(result.consolidated_stale) == 1, result
        assert f"holds another pipeline attribute of {rel!r}" in result.consolidated_stale[0]
        call = f"zarr.consolidate_metadata({str(group)!r})"
        assert result.consolidate_calls == (call,), result.consolidate_calls
        with warnings.catch_warnings():  # the call it names, as the user pastes it
            warnings.simplefilter("ignore")
            zarr.consolidate_metadata(str(group))
        assert json.loads(_copied_record(group, rel)) == record
    assert pipeline.verify(checked).ok
    if fmt == 3:
        assert json.loads(_copied_record(group, rel)) == record


@pytest.mark.parametrize("copy_holds", ["text", "mapping"])
def test_a_run_on_an_output_whose_record_is_in_two_forms_notes_nothing(
    tmp_path: Path, backend_client: tuple[str, Any], copy_holds: str
) -> None:
    """h71c: a chained run whose input is an output of an earlier version, its own run record
    the mapping and its group's consolidated copy the same record as text, or the reverse.
    The plan had noted the copy as holding "other attributes" ("pipeline of 't'") that "the
    output carries": the output carries no run record of its input's, and both forms are the
    same record. No such note, from plan, run or verify."""
    backend, client = backend_client
    write_dataset(tmp_path / "in.zarr", 3)
    cfg = config(tmp_path, backend)
    assert pipeline.run(cfg, client=client).status == "complete"
    out = tmp_path / "out.zarr"
    variable = zarr.open_group(str(out), mode="r+")["t"]
    record = record_of(variable.attrs)
    variable.update_attributes({"pipeline": record})
    if copy_holds == "mapping":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            zarr.consolidate_metadata(str(out))
        variable.update_attributes({"pipeline": json.dumps(record)})
    chained = {
        **cfg,
        "input": {"store": str(out), "array": "t"},
        "output": {"store": str(tmp_path / "out2.zarr")},
    }
    assert pipeline.plan(chained, client=client).notes == ()
    assert pipeline.run(chained, client=client).status == "complete"
    result = pipeline.verify(chained)
    assert result.ok and result.input_notes == (), result.input_notes


def test_a_sharded_output_copies_with_to_zarr_as_the_readme_says(
    tmp_path: Path, backend_client: tuple[str, Any]
) -> None:
    """h67c: ``xr.open_zarr`` of a sharded output gives Dask chunks of its inner chunks, and
    xarray 2025.6's ``to_zarr`` keeps its shards without checking the Dask chunks against
    them, so several tasks write one shard and the copy loses values, silently. README's
    two ways, Dask chunks of whole shards or no shards, copy it to the bit."""
    backend, client = backend_client
    write_dataset(tmp_path / "in.zarr", 3)
    cfg = config(tmp_path, backend, output={"chunks": [5, COLS]}, chunking={"block": [20, COLS]})
    assert pipeline.run(cfg, client=client).status == "complete"
    out = open_dataset(tmp_path / "out.zarr", load=False)
    assert out["t"].encoding["shards"] == (20, COLS) and out["t"].chunks[0][0] == 5
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    whole = 'out.chunk(dict(zip(out["air"].dims, out["air"].encoding["shards"], strict=True)))'
    none = 'v.encoding.pop("shards", None)'
    assert whole in readme and none in readme
    want = open_dataset(tmp_path / "out.zarr")["t"].values
    shards = out.chunk(dict(zip(out["t"].dims, out["t"].encoding["shards"], strict=True)))
    unsharded = out.copy()
    for v in unsharded.variables.values():
        v.encoding.pop("shards", None)
    for name, ds in (("shards", shards), ("unsharded", unsharded)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # zarr: v3 consolidated metadata not in the spec
            ds.to_zarr(tmp_path / f"{name}.zarr")
        copy = open_dataset(tmp_path / f"{name}.zarr")
        assert same_bits(copy["t"].values, want), name
        assert copy["t"].encoding.get("shards") == ((20, COLS) if name == "shards" else None)


@pytest.mark.parametrize("zarr_format", [2, 3], ids=lambda f: f"v{f}")
def test_carried_coordinates_name_the_coordinates_the_input_stores_them_naming(
    tmp_path: Path, backend_client: tuple[str, Any], zarr_format: int
) -> None:
    """h67c: each array the output carries has the ``coordinates`` attribute the input stores
    on it, or none. The auxiliary coordinate ``lon`` (x), written by xarray with none, had
    been given ``coordinates: height`` (the scalar coordinate that the bounds ``y_bnds``
    name): in the frame written beside the variable, which lists it, ``lon`` was a data
    variable, to which xarray's ``to_zarr`` gives the frame's coordinates on its dimensions;
    every later ``to_zarr`` or ``to_netcdf`` of the output wrote it again."""
    backend, client = backend_client
    rows, cols = 6, 8
    rng = np.random.default_rng(3)
    y = np.arange(rows) * 2.5
    ds = xr.Dataset(
        {
            "t": (("y", "x"), rng.uniform(250.0, 300.0, (rows, cols)), {"units": "K"}),
            "y_bnds": (("y", "nv"), np.stack([y - 1.25, y + 1.25], axis=1)),
        },
        coords={
            "y": ("y", y, {"units": "km", "bounds": "y_bnds"}),
            "x": ("x", np.arange(cols), {"units": "km"}),
            "lon": ("x", np.linspace(5.0, 6.0, cols), {"units": "degrees_east"}),
            "height": ((), 2.0, {"units": "m"}),
        },
    )
    ds["t"].encoding = {"chunks": (3, cols)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(tmp_path / "in.zarr", zarr_format=zarr_format, consolidated=True)
    assert pipeline.run(config(tmp_path, backend), client=client).status == "complete"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = xr.open_zarr(tmp_path / "in.zarr", decode_coords=False)
        b = xr.open_zarr(tmp_path / "out.zarr", decode_coords=False)
    assert (
        set(b.variables) == set(a.variables) - {"p"} == {"t", "y_bnds", "y", "x", "lon", "height"}
    )
    stored = {n: a[n].attrs.get("coordinates") for n in b.variables}
    assert stored["lon"] is None and stored["y_bnds"] == "height"  # as xarray wrote them
    assert {n: b[n].attrs.get("coordinates") for n in b.variables} == stored
    got, want = open_dataset(tmp_path / "out.zarr"), open_dataset(tmp_path / "in.zarr")
    assert set(got.coords) == set(want.coords) and set(got.data_vars) == {"t", "y_bnds"}
    for n in ("y_bnds", "lon", "height"):
        assert got[n].encoding.get("coordinates") == want[n].encoding.get("coordinates"), n


@pytest.mark.parametrize("zarr_format", [2, 3], ids=lambda f: f"v{f}")
def test_a_float32_variable_s_float64_missing_value_masks_what_xarray_masks(
    tmp_path: Path, backend_client: tuple[str, Any], zarr_format: int
) -> None:
    """helper-77: a float32 variable with ``missing_value: [0.1, 2.5]`` (float64, as JSON
    holds them): xarray masks the 2.5s and reads the 0.1s as numbers (it compares in float64,
    where no float32 equals 0.1); the pipeline had written NaN for both, and verify passed."""
    backend, client = backend_client
    values = np.array([[0.1, 1.5, 2.5, 0.1], [3.0, 0.1, 2.5, -1.0]], np.float32)
    ds = xr.Dataset({"t": (("y", "x"), values, {"missing_value": [0.1, 2.5], "units": "K"})})
    ds["t"].encoding = {"chunks": (1, 4)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(tmp_path / "in.zarr", zarr_format=zarr_format, consolidated=True)
        decoded = xr.open_zarr(tmp_path / "in.zarr")["t"].values
    assert np.isnan(decoded).sum() == 2 and (decoded == np.float32(0.1)).sum() == 3
    summary = pipeline.run(config(tmp_path, backend, input={"mask_and_scale": True}), client=client)
    assert summary.status == "complete"
    chain = plan_chain(parse_config(config(tmp_path)).stage_specs(), decoded.dtype)
    with np.errstate(all="ignore"):
        want = apply_chain(chain, decoded)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = xr.open_zarr(tmp_path / "out.zarr")["t"].values
    assert same_bits(got, want)


#: Encodings of the variable ``t`` that xarray writes, one of each kind of CF fill and mask:
#: floats with a NaN fill, none (null), a number, a missing_value; integers packed with a fill
#: or a missing_value, masked by a fill alone; floats packed (xarray adds a NaN fill).
CF_FILLS: dict[str, dict[str, Any]] = {
    "float-nan-fill": {"dtype": "float32", "_FillValue": np.nan},
    "float-no-fill": {"dtype": "float32", "_FillValue": None},
    "float-number-fill": {"dtype": "float32", "_FillValue": -9999.0},
    "float-missing-value": {"dtype": "float32", "missing_value": -9999.0},
    "int16-packed-fill": PACKED,
    "int16-packed-missing-value": {**PACKED, "_FillValue": None, "missing_value": -9999},
    "int16-fill-only": {"dtype": "int16", "_FillValue": -1},
    "float-packed": {"dtype": "float32", "scale_factor": 0.5, "add_offset": 1.0},
}


@pytest.mark.parametrize("zarr_format", [2, 3], ids=lambda f: f"v{f}")
@pytest.mark.parametrize("name", list(CF_FILLS))
def test_a_dataset_output_s_fill_is_what_xarray_writes_and_reads(
    tmp_path: Path, backend_client: tuple[str, Any], zarr_format: int, name: str
) -> None:
    """h61a: the computed variable's ``_FillValue`` is xarray's own for the output, what
    ``to_zarr`` of NumPy's chain over the decoded input writes (NaN on floats, whatever the
    input's fill, which no longer describes the values: base64 text in Zarr v3), so that
    ``xr.open_zarr`` gives the output ``encoding["_FillValue"]`` NaN, as it gives the input and
    every float coordinate beside it (the output had none, and, with ``decode_cf=False``, no
    ``_FillValue`` attribute where xarray's own output has NaN). The Zarr fill value stays
    what an absent chunk of the input computes to as xarray reads it (not xarray's 0, nor the
    input's ``_FillValue``: a v3 input's absent chunk reads as its Zarr fill value 0)."""
    backend, client = backend_client
    src, out, ref = tmp_path / "in.zarr", tmp_path / "out.zarr", tmp_path / "ref.zarr"
    write_dataset(src, zarr_format, CF_FILLS[name])
    # the second row of chunks absent, as zarr-python leaves a chunk all its fill value
    chunk = src / "t" / ("c/1/0" if zarr_format == 3 else "1.0")
    chunk.unlink()
    cfg = config(tmp_path, backend, input={"mask_and_scale": True})
    assert pipeline.run(cfg, client=client).status == "complete"
    got = assert_variable_as_xarray_opened_it(out, src)["t"]
    decoded = open_dataset(src)["t"]
    chain = plan_chain(parse_config(cfg).stage_specs(), decoded.dtype)
    with np.errstate(all="ignore"):
        computed = xr.DataArray(apply_chain(chain, decoded.values), dims=decoded.dims)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        computed.to_dataset(name="t").to_zarr(ref, zarr_format=3)
    want = open_dataset(ref)["t"]
    assert same_bits(got.values, want.values)
    assert np.isnan(got.encoding["_FillValue"]) and np.isnan(want.encoding["_FillValue"])
    raw_out = zarr.open_array(str(out), path="t", mode="r")
    raw_ref = zarr.open_array(str(ref), path="t", mode="r")
    assert raw_out.attrs["_FillValue"] == raw_ref.attrs["_FillValue"] == NAN_FILL_TEXT
    undecoded = open_dataset(out, raw=True)["t"]
    assert np.isnan(undecoded.attrs["_FillValue"]) and undecoded.dtype == want.dtype
    # an absent chunk of the output reads as the absent input chunk computes, to xarray
    absent = got.values[10:20]
    fill = np.asarray(raw_out.fill_value, dtype=raw_out.dtype)
    assert np.array_equal(absent, np.broadcast_to(fill, absent.shape), equal_nan=True)
    assert pipeline.verify(cfg, all=True).ok


def test_an_outputs_fill_attribute_is_checked_as_its_record_says(
    tmp_path: Path, backend_client: tuple[str, Any]
) -> None:
    """h61a: the ``_FillValue`` a run writes on a Dataset's float variable is part of what
    verify and a later run check of the output's own metadata (an edit that removes it fails
    verify, naming it), where its record says the run wrote it (``fill_attribute``); an
    earlier version's output, which holds none and whose record says nothing of it, still
    verifies and is complete to a later run."""
    from pipeline.planning.plan import with_check

    backend, client = backend_client
    write_dataset(tmp_path / "in.zarr", 3)
    cfg = config(tmp_path, backend)
    assert pipeline.run(cfg, client=client).status == "complete"
    out = tmp_path / "out.zarr"
    arr = zarr.open_array(str(out), path="t", mode="r+")
    assert arr.attrs["_FillValue"] == NAN_FILL_TEXT
    record = record_of(arr.attrs)
    assert record["fill_attribute"] == NAN_FILL_TEXT
    assert pipeline.verify(cfg).ok
    attrs = dict(arr.attrs)
    del attrs["_FillValue"]  # a user's edit
    arr.attrs.clear()
    arr.update_attributes(attrs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(str(out), zarr_format=3)
    result = pipeline.verify(cfg)
    assert not result.ok and result.metadata_differs == ("its _FillValue attribute",)
    with pytest.raises(OutputError, match="its _FillValue attribute"):
        pipeline.run(cfg, client=client, resume=True)
    # as the version before wrote it: no _FillValue, and its record says nothing of one
    del record["fill_attribute"], record["check"]
    arr.update_attributes({"pipeline": json.dumps(with_check(record))})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(str(out), zarr_format=3)
    assert pipeline.verify(cfg).ok
    done = pipeline.run(cfg, client=client, resume=True)
    assert done.status == "complete (nothing to do)"
    assert "_FillValue" not in zarr.open_array(str(out), path="t", mode="r").attrs


@pytest.mark.parametrize("array", ["results/t5", ""], ids=["in-a-group", "at-the-root"])
def test_output_array_names_the_variable_and_its_group(
    tmp_path: Path, backend_client: tuple[str, Any], array: str
) -> None:
    """A Dataset variable written under another name, in a subgroup, or, at the root of the
    output store, as an array alone (its dimension names and attributes, no coordinates)."""
    backend, client = backend_client
    write_dataset(tmp_path / "in.zarr", 3)
    pipeline.run(config(tmp_path, backend, output={"array": array}), client=client)
    out = tmp_path / "out.zarr"
    if array:
        group, _, name = array.rpartition("/")
        assert_variable_as_xarray_opened_it(out, tmp_path / "in.zarr", name, group)
        assert consolidated(out, group) is not None
        return
    raw = zarr.open_array(str(out), mode="r")
    assert raw.metadata.dimension_names == ("y", "x")
    attrs = dict(raw.attrs)
    assert record_of({"pipeline": attrs.pop("pipeline")})["status"] == "complete"
    assert attrs == {"units": "K", "long_name": "air temperature"}  # no lon written
    assert sorted(p.name for p in out.iterdir()) == ["c", "zarr.json"]


@pytest.mark.parametrize("zarr_format", [2, 3], ids=lambda f: f"v{f}")
def test_a_non_dimension_coordinate_comes_out_as_a_data_variable_of_its_name(
    tmp_path: Path, backend_client: tuple[str, Any], zarr_format: int
) -> None:
    """``input.array: lon``, a coordinate that is no dimension's (as a 2-D ``lat`` of a
    curvilinear grid is): the output is a Dataset holding the computed values as the data
    variable ``lon``, with lon's attributes and the coordinates of its dimension (``x``),
    but not the input's ``lon`` itself, whose name the computed values take (xarray's
    ``(ds.lon * 5).to_dataset()`` refuses that clash; README, Datasets). As xarray opens
    it, to the bit NumPy's chain over the input's ``lon`` (h81e)."""
    backend, client = backend_client
    write_dataset(tmp_path / "in.zarr", zarr_format)
    cfg = config(tmp_path, backend, input={"array": "lon"})
    assert pipeline.run(cfg, client=client).status == "complete"
    a, b = open_dataset(tmp_path / "in.zarr"), open_dataset(tmp_path / "out.zarr")
    assert (list(b.data_vars), set(b.coords)) == (["lon"], {"x"})
    assert b["lon"].dims == ("x",) and np.array_equal(b["x"].values, a["x"].values)
    attrs = dict(b["lon"].attrs)
    assert record_of({"pipeline": attrs.pop("pipeline")})["status"] == "complete"
    assert attrs == a["lon"].attrs == {"units": "degrees_east"}
    chain = plan_chain(parse_config(cfg).stage_specs(), a["lon"].dtype)
    assert same_bits(b["lon"].values, apply_chain(chain, a["lon"].values))


@pytest.mark.parametrize("consolidated", [True, False], ids=["consolidated", "unconsolidated"])
@pytest.mark.parametrize("zarr_format", [2, 3], ids=lambda f: f"v{f}")
def test_a_non_dimension_coordinate_under_another_name_keeps_the_inputs_beside_it(
    tmp_path: Path, cli: Any, zarr_format: int, consolidated: bool
) -> None:
    """``input.array: lat`` (a curvilinear grid's 2-D ``lat`` on ``(y, x)``, a coordinate of no
    dimension) with ``output.array: lat5``: xarray's ``(ds.lat * 5).rename("lat5")`` keeps
    the input's ``lat`` among its coordinates, but the output held ``lat5`` with ``lon``, ``x``
    and no ``lat`` (h82d: README had a workaround, ``assign_coords``). The input's ``lat`` is
    now carried as a coordinate, its values and attributes the input's to the bit, named by
    ``lat5``'s ``coordinates``, so ``xr.open_zarr`` gives the output the coordinates xarray's
    own arithmetic gives; ``lat5`` is the chain over the input's ``lat``, and verify passes.
    A data variable (``t``) under another name carries no ``t``, as xarray's keeps none."""
    rng = np.random.default_rng(11)
    lat = np.add.outer(np.linspace(40.0, 50.0, 6), np.linspace(0.0, 0.5, 8))
    lon = np.add.outer(np.linspace(0.0, 0.3, 6), np.linspace(5.0, 9.0, 8))
    ds = xr.Dataset(
        {"t": (("y", "x"), rng.standard_normal((6, 8)), {"units": "K"})},
        coords={
            "x": ("x", np.arange(8.0), {"units": "km"}),
            "lat": (("y", "x"), lat, {"units": "degrees_north", "standard_name": "latitude"}),
            "lon": (("y", "x"), lon, {"units": "degrees_east"}),
        },
        attrs={"title": "curvilinear"},
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(
            str(tmp_path / "in.zarr"), zarr_format=zarr_format, mode="w", consolidated=consolidated
        )
    cfg = config(
        tmp_path, input={"array": "lat"}, output={"array": "lat5"}, cluster={"dashboard": ""}
    )
    assert pipeline.run(cfg).status == "complete"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        src = xr.open_zarr(str(tmp_path / "in.zarr"), consolidated=consolidated).load()
        out = xr.open_zarr(str(tmp_path / "out.zarr"), consolidated=consolidated).load()
        engine = xr.open_dataset(str(tmp_path / "out.zarr"), engine="zarr").load()
    want = (src.lat * 5).rename("lat5").to_dataset()  # what xarray's own arithmetic keeps
    assert set(out.coords) == set(want.coords) == {"lat", "lon", "x"}, out
    assert list(out.data_vars) == ["lat5"] and set(engine.coords) == set(want.coords)
    for name in ("lat", "lon", "x"):
        assert same_bits(out[name].values, src[name].values), name
        assert out[name].attrs == src[name].attrs and out[name].dims == src[name].dims, name
    chain = plan_chain(parse_config(cfg).stage_specs(), src["lat"].dtype)
    assert same_bits(out["lat5"].values, apply_chain(chain, src["lat"].values))
    assert set(out["lat5"].encoding["coordinates"].split()) == {"lat", "lon"}
    assert out.attrs == {"title": "curvilinear"}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    rc, said, err = cli("verify", "--all", path)
    assert rc == 0, (said, err)
    data = {"store": str(tmp_path / "t5.zarr"), "array": "t5"}
    pipeline.run(config(tmp_path, output=data, cluster={"dashboard": ""}))
    assert set(open_dataset(tmp_path / "t5.zarr").coords) == {"lat", "lon", "x"}
    assert list(open_dataset(tmp_path / "t5.zarr").data_vars) == ["t5"]


#: The main branch just before h82d's merge (ff02ac0): a release whose run of a non-dimension
#: coordinate under another output.array did not carry the input's coordinate beside it.
BEFORE_H82D = "5aec8c2fc3d08b97d8727355bb3679ba96149961"


def _earlier_release(at: Path, commit: str) -> Path:
    """A folder holding the package as it was at ``commit`` of this checkout's history (``git
    archive``), for a process of its own to import; the test is skipped where the history is
    not there (a copy of the files alone)."""
    try:
        done = subprocess.run(
            ["git", "-C", str(ROOT), "archive", commit, "pipeline"],
            capture_output=True,
            check=True,
            timeout=120,
        )
    except (OSError, subprocess.SubprocessError):
        pytest.skip(f"no git history holding {commit} here")
    at.mkdir()
    with tarfile.open(fileobj=io.BytesIO(done.stdout)) as tar:
        tar.extractall(at, filter="data")
    return at


def test_an_output_of_an_earlier_release_is_not_said_changed_by_its_input(
    tmp_path: Path, cli: Any
) -> None:
    """The output of ``input.array: lat`` (a 2-D coordinate of no dimension) run as
    ``output.array: lat5`` by the release before h82d, which did not carry the input's ``lat``
    beside it: `verify` said "the input changed since the output was made (its coordinate
    lat, which the output does not hold)" and `run --resume` "the input changed what the
    output carries", of an input nothing had changed (the release had). Both say that the
    output lacks the input's own coordinate, which this release writes and the earlier one
    did not, the input unchanged, and the fix; `run --overwrite` writes an output verify
    passes. (The earlier release itself writes the output, in a process of its own.)"""
    lat = np.add.outer(np.linspace(40.0, 50.0, 6), np.linspace(0.0, 0.5, 8))
    lon = np.add.outer(np.linspace(0.0, 0.3, 6), np.linspace(5.0, 9.0, 8))
    ds = xr.Dataset(
        {"t": (("y", "x"), np.ones((6, 8)))},
        coords={
            "x": ("x", np.arange(8.0)),
            "lat": (("y", "x"), lat, {"units": "degrees_north"}),
            "lon": (("y", "x"), lon, {"units": "degrees_east"}),
        },
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(str(tmp_path / "in.zarr"), zarr_format=3, mode="w", consolidated=True)
    cfg = config(
        tmp_path, input={"array": "lat"}, output={"array": "lat5"}, cluster={"dashboard": ""}
    )
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    earlier = _earlier_release(tmp_path / "earlier", BEFORE_H82D)
    done = run_python(
        ["-m", "pipeline", "-q", "run", path],
        cwd=tmp_path,
        environ={**child_env(), "PYTHONPATH": str(earlier)},
    )
    assert done.returncode == 0, done.stderr
    assert "lat" not in open_dataset(tmp_path / "out.zarr").coords  # as that release wrote it
    lacks = (
        "lacks the input's own coordinate lat, which this release of the pipeline writes beside "
        "the variable run under another name (output.array) and the earlier release that wrote "
        "the output did not (the input is unchanged)"
    )
    rc, _, err = cli("verify", path)
    assert rc == 1 and "the input changed" not in err, err
    assert f"error: the output {lacks}; `run --overwrite` writes it again" in err, err
    rc, _, err = cli("run", path, "--resume")
    line = one_line_error(err)
    assert rc == 1 and "the input changed" not in line, line
    assert line.endswith(
        f"out.zarr/lat5 is complete, but it {lacks}: `run --overwrite` recomputes it"
    )
    rc, _, err = cli("run", path, "--overwrite")
    assert rc == 0, err
    assert "lat" in open_dataset(tmp_path / "out.zarr").coords
    rc, out, err = cli("verify", path)
    assert rc == 0, out + err


@pytest.mark.parametrize("zarr_format", [2, 3], ids=lambda f: f"v{f}")
def test_a_variable_named_without_its_group_names_its_path(
    tmp_path: Path, zarr_format: int
) -> None:
    """A Dataset xarray wrote into a group (``to_zarr(STORE, group="g/h")``), its variable
    named ``input.array: air``: the line said "no Zarr array at in.zarr/air; check
    input.array", nothing more (the root holds no array to match). It names the path
    input.array takes, ``g/h/air``, in one line, and that path plans (h82d)."""
    write_dataset(tmp_path / "src.zarr", zarr_format)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = xr.open_zarr(str(tmp_path / "src.zarr")).load()
        ds.to_zarr(str(tmp_path / "in.zarr"), group="g/h", zarr_format=zarr_format, mode="w")
    with pytest.raises(InputError) as info:
        pipeline.plan(config(tmp_path))
    said = str(info.value)
    assert "\n" not in said and info.value.status == "absent", said
    assert said.endswith(
        "check input.array (did you mean 'g/h/t'? input.array is the path from the store's root)"
    ), said
    with pytest.raises(InputError) as info:  # the group's path given in part
        pipeline.plan(config(tmp_path, input={"array": "h/t"}))
    assert str(info.value).endswith(
        "(did you mean 'g/h/t'? input.array is the path from the store's root)"
    )
    assert pipeline.plan(config(tmp_path, input={"array": "g/h/t"})).input.shape == (ROWS, COLS)
    # a name close to none of the Dataset's variables: its arrays, by the paths input.array
    # takes (h85f: "check input.array", no names, where a close name got "did you mean")
    with pytest.raises(InputError) as info:
        pipeline.plan(config(tmp_path, input={"array": "g/h/temperature"}))
    said = str(info.value)
    assert "\n" not in said and said.endswith(
        "check input.array (no name is close; the arrays below 'g/h': "
        + ", ".join(sorted(f"g/h/{n}" for n in ds.variables))
        + ")"
    ), said


@pytest.mark.parametrize("dims", [None, ("row", "col")], ids=["no-dims", "dims"])
def test_an_array_alone_keeps_its_attributes_and_dimension_names(
    tmp_path: Path, backend_client: tuple[str, Any], dims: tuple[str, str] | None
) -> None:
    """An array that is no Dataset's variable (written by Zarr, at the root): the output
    carries its attributes (less the input's own record) and dimension names, at the root."""
    backend, client = backend_client
    x = np.random.default_rng(3).standard_normal((30, 40)).astype(np.float32)
    attrs = {"units": "m", "pipeline_generated": {"status": "complete"}}
    make_array(tmp_path / "in.zarr", x, (10, 40), attributes=attrs, dimension_names=dims)
    cfg = config(tmp_path, backend, input={"array": ""})
    pipeline.run(cfg, client=client)
    raw = zarr.open_array(str(tmp_path / "out.zarr"), mode="r")
    assert raw.metadata.dimension_names == dims
    kept = dict(raw.attrs)
    assert record_of({"pipeline": kept.pop("pipeline")})["status"] == "complete"
    assert kept == {"units": "m"}


#: CF attributes that state facts about a variable's values, with the values (in [-1, 1]) of
#: the Dataset of the tests below: the stages make them up to 50.
VALUE_FACTS = {
    "valid_range": [-1.0, 1.0],
    "valid_min": -1.0,
    "valid_max": 1.0,
    "actual_range": [-1.0, 1.0],
    "flag_values": [-1.0, 1.0],
    "flag_meanings": "low high",
}


@pytest.mark.parametrize("zarr_format", [2, 3], ids=lambda f: f"v{f}")
def test_attributes_stating_facts_about_the_values_are_not_carried(
    tmp_path: Path, cli: Any, zarr_format: int
) -> None:
    """A variable with ``valid_range: [-1, 1]`` (and the other range and flag attributes),
    run through multiply 5, square, add: the output had kept them while its values reach 50,
    so readers that apply a valid range (netCDF4-python, netCDF-Java) masked most of it
    (h87f). They are left out, the run says so in one note naming them, units and long_name
    are carried, a coordinate (whose values are not computed) keeps its own valid_range,
    xarray opens the output with every value the chain gives, and verify passes."""
    v = np.linspace(-1.0, 1.0, 48).reshape(6, 8)
    ds = xr.Dataset(
        {"v": (("y", "x"), v, {"units": "m", "long_name": "height", **VALUE_FACTS})},
        coords={"x": ("x", np.arange(8.0), {"units": "km", "valid_range": [0.0, 7.0]})},
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(str(tmp_path / "in.zarr"), zarr_format=zarr_format, mode="w")
    cfg = tmp_path / "t.yaml"
    cfg.write_text(yaml.safe_dump(config(tmp_path, input={"array": "v"})))
    rc, out, err = cli("run", cfg)
    assert rc == 0, err
    said = [
        line
        for line in (out + err).splitlines()
        if "are not carried to the output" in line and line.startswith("note:")
    ]
    assert len(said) == 1, out + err  # once, at the start (the summary's row repeats it)
    for key in VALUE_FACTS:
        assert key in said[0], key
    assert "the stages change" in said[0] and "units" in said[0]
    raw = zarr.open_array(str(tmp_path / "out.zarr"), path="v", mode="r")
    kept = {k: a for k, a in raw.attrs.items() if k not in ("pipeline", "_FillValue")}
    assert kept == {"units": "m", "long_name": "height"}
    got = open_dataset(tmp_path / "out.zarr")
    assert got["x"].attrs == {"units": "km", "valid_range": [0.0, 7.0]}
    want = (v * 5) ** 2 * 2
    assert not np.isnan(got["v"].values).any()
    assert np.array_equal(got["v"].values, want)
    with warnings.catch_warnings():  # decode_cf of the stored variables masks nothing either
        warnings.simplefilter("ignore")
        stored = xr.open_zarr(str(tmp_path / "out.zarr"), decode_cf=False)
    decoded = xr.decode_cf(stored)["v"].values
    assert np.array_equal(decoded, want)
    rc, out, err = cli("verify", cfg)
    assert rc == 0, out + err


def test_an_output_an_earlier_release_wrote_with_the_value_attributes_is_said_so(
    tmp_path: Path, cli: Any
) -> None:
    """An output written by an earlier release, which carried the input's ``flag_values``,
    ``valid_range`` and the other :data:`VALUE_FACTS` (h87f leaves them out): made here as
    that release wrote it, the current run's output with them added to its metadata by
    zarr-python. `verify`, `run --resume` and `plan` had called it "edited since the run";
    each now says an earlier release of the pipeline wrote them, no edit, and names `run
    --overwrite`, which writes it as this release does, then verify passes. With another
    attribute edited too, that is still said to be an edit (h88d); so is a value attribute
    that is not the input's (h88e: any had been credited to an earlier release)."""
    v = np.linspace(-1.0, 1.0, 48).reshape(6, 8)
    ds = xr.Dataset({"v": (("y", "x"), v, {"units": "m", **VALUE_FACTS})})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(str(tmp_path / "in.zarr"), mode="w")
    cfg = tmp_path / "t.yaml"
    cfg.write_text(yaml.safe_dump(config(tmp_path, input={"array": "v"})))
    rc, _, err = cli("run", cfg)
    assert rc == 0, err
    zarr.open_array(str(tmp_path / "out.zarr"), path="v", mode="r+").attrs.update(VALUE_FACTS)

    def _error_line(err: str) -> str:  # the run's note of the attributes left out besides
        lines = [line for line in err.splitlines() if not line.startswith("note:")]
        assert len(lines) == 1, err
        return lines[0]

    earlier = "which an earlier release of the pipeline wrote and this one leaves out"
    rc, out, err = cli("verify", cfg)
    line = _error_line(err)
    assert rc == 1 and earlier in line and "no edit since the run" in line, out + err
    assert "edited since" not in line and "`run --overwrite` writes it again" in line, line
    rc, _, err = cli("run", cfg, "--resume")
    line = _error_line(err)
    assert rc == 1 and earlier in line and "not as this release of the pipeline" in line, line
    assert "edited" not in line and "`run --overwrite` writes it again" in line, line
    rc, out, err = cli("plan", cfg)
    assert rc == 0 and "complete, but not as this release of the pipeline writes it" in out
    assert earlier in out and "edited" not in out, out
    raw = zarr.open_array(str(tmp_path / "out.zarr"), path="v", mode="r+")
    raw.attrs.update({"valid_range": [-2.0, 2.0]})  # not the input's: an edit (h88e)
    rc, out, err = cli("verify", cfg)
    line = _error_line(err)
    assert rc == 1 and "its valid_range attribute" in line and "edited since" in line, line
    raw.attrs.update({"valid_range": VALUE_FACTS["valid_range"], "units": "km"})
    # and an edit beside them: said as one
    rc, out, err = cli("verify", cfg)
    line = _error_line(err)
    assert rc == 1 and "its units attribute; and 1 more" in line and "edited since" in line
    rc, _, err = cli("run", cfg, "--overwrite")
    assert rc == 0, err
    kept = zarr.open_array(str(tmp_path / "out.zarr"), path="v", mode="r").attrs
    assert not set(kept) & set(VALUE_FACTS) and kept["units"] == "m"
    rc, out, err = cli("verify", cfg)
    assert rc == 0, out + err


def test_an_array_alone_leaves_out_its_valid_range_with_a_note(
    tmp_path: Path, backend_client: tuple[str, Any]
) -> None:
    """An array written by zarr-python, no Dataset's variable, with ``valid_range``: the
    output carries its units, not its range, and the plan's notes say which it left out."""
    backend, client = backend_client
    x = np.linspace(-1.0, 1.0, 40, dtype=np.float32).reshape(4, 10)
    attrs = {"units": "m", "valid_range": [-1.0, 1.0], "valid_max": 1.0}
    make_array(tmp_path / "in.zarr", x, (2, 10), attributes=attrs)
    cfg = config(tmp_path, backend, input={"array": ""})
    notes = [n for n in pipeline.plan(cfg).notes if "not carried to the output" in n]
    assert len(notes) == 1 and "valid_max=1.0, valid_range=[-1.0, 1.0]" in notes[0], notes
    summary = pipeline.run(cfg, client=client)
    assert any("valid_range" in n for n in summary.notes), summary.notes
    raw = zarr.open_array(str(tmp_path / "out.zarr"), mode="r")
    kept = dict(raw.attrs)
    assert record_of({"pipeline": kept.pop("pipeline")})["status"] == "complete"
    assert kept == {"units": "m"}
    assert np.array_equal(raw[...], (x * 5) ** 2 * 2)


@pytest.mark.parametrize("zarr_format", [2, 3], ids=lambda f: f"v{f}")
def test_partial_dimension_names_are_kept_as_given(tmp_path: Path, cli, zarr_format: int) -> None:
    """An array with names for some dimensions only (v3 ``dimension_names`` (None, "x"), or a
    v2 ``_ARRAY_DIMENSIONS`` [null, "x"]), an array alone (at the root of its store): the
    output had no dimension names at all, "x" dropped silently (F7). Kept as given; verify
    passes, and fails once they are edited away."""
    x = np.random.default_rng(3).standard_normal((4, 6)).astype(np.float32)
    names: Any = (None, "x")
    extra: dict[str, Any] = (
        {"dimension_names": names}
        if zarr_format == 3
        else {"attributes": {"_ARRAY_DIMENSIONS": list(names)}}
    )
    z = zarr.create_array(
        str(tmp_path / "in.zarr"),
        shape=x.shape,
        dtype=x.dtype,
        chunks=(2, 3),
        zarr_format=zarr_format,
        **extra,
    )
    z[...] = x
    cfg = tmp_path / "t.yaml"
    cfg.write_text(yaml.safe_dump(config(tmp_path, input={"array": ""})))
    rc, _, err = cli("run", cfg)
    assert rc == 0, err
    raw = zarr.open_array(str(tmp_path / "out.zarr"), mode="r")
    assert raw.metadata.dimension_names == names
    assert "_ARRAY_DIMENSIONS" not in raw.attrs
    rc, out, err = cli("verify", "--all", cfg)
    assert rc == 0, err + out
    doc = json.loads((tmp_path / "out.zarr" / "zarr.json").read_text())
    doc.pop("dimension_names")
    (tmp_path / "out.zarr" / "zarr.json").write_text(json.dumps(doc))
    rc, out, err = cli("verify", "--all", cfg)
    assert rc == 1 and "its dimension names None (the run wrote [None, 'x'])" in err, err


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_a_dimension_coordinate_of_text_is_carried(tmp_path: Path, cli, zarr_format: int) -> None:
    """Station time series: the dimension ``station`` labelled by text (``<U3``), as xarray
    writes it. pandas 3 indexes it as ``StringDtype``, whose index xarray 2025.6 fails to
    write (``TypeError: Cannot interpret '<StringDtype(...)>' as a data type``): the run was
    refused, saying that xarray cannot read the coordinate and xr.open_zarr fails on the input,
    which it opens. Now the output carries it; xarray reads it back as the input's, and verify
    passes."""
    import pandas as pd

    t = np.random.default_rng(5).standard_normal((6, 4)).astype(np.float32)
    with warnings.catch_warnings():  # pandas 3 cannot write its own text index either
        warnings.simplefilter("ignore")
        with pd.option_context("future.infer_string", False):
            ds = xr.Dataset(
                {"t": (("time", "station"), t, {"units": "K"})},
                coords={
                    "time": ("time", np.arange(6.0), {"units": "h"}),
                    "station": ("station", np.array(["aa", "b", "ccc", "dd"]), {"long_name": "id"}),
                },
                attrs={"title": "stations"},
            )
            ds["t"].encoding = {"_FillValue": None, "chunks": (3, 4)}
            ds.to_zarr(str(tmp_path / "in.zarr"), zarr_format=zarr_format, mode="w")
    before = open_dataset(tmp_path / "in.zarr")
    cfg = tmp_path / "t.yaml"
    cfg.write_text(yaml.safe_dump(config(tmp_path)))
    rc, _, err = cli("run", cfg)
    assert rc == 0, err
    out = open_dataset(tmp_path / "out.zarr")
    assert same_bits(out["t"].values, reference(t))
    assert out["station"].identical(before["station"]), out["station"]
    assert out["station"].values.tolist() == ["aa", "b", "ccc", "dd"]
    assert out["time"].identical(before["time"]) and out.attrs["title"] == "stations"
    rc, text, err = cli("verify", "--all", cfg)
    assert rc == 0, err + text


def _run_of_a_masked_coordinate(
    src: Path, name: str, masked: bool, *said: str
) -> tuple[Any, Path] | None:
    """The input ``src`` (in ``tmp_path``), whose coordinate ``name`` xarray reads masked by
    its fill value (an object array), and the config of a run of it into ``out.zarr``
    beside it: (the input as xarray opens it, the config). None where ``masked`` (an element
    equal to the fill value, which the output could not give back): the run was refused in
    one line naming the coordinate and saying each of ``said``, before anything was
    written (no output, the input's files as they were)."""
    tmp_path = src.parent
    want = open_dataset(src)
    assert want[name].dtype == object  # masked by its fill value
    cfg = tmp_path / "t.yaml"
    cfg.write_text(yaml.safe_dump(config(tmp_path, cluster=_THREADS)))
    if not masked:
        return want, cfg
    before = file_states(src)
    with pytest.raises(InputError) as info:
        pipeline.run(parse_config(yaml.safe_load(cfg.read_text())))
    e = info.value
    assert (e.variable, e.coordinate) == (str(src / name), name), e
    assert len(str(e).splitlines()) == 1 and all(words in str(e) for words in said), e
    assert not (tmp_path / "out.zarr").exists() and file_states(src) == before
    return None


@pytest.mark.parametrize("masked", [False, True], ids=["all-held", "one-masked"])
@pytest.mark.parametrize("dtype", ["S2", "U2", "vlen-utf8"])
def test_a_text_coordinate_with_a_fill_value_opens_in_the_output(
    tmp_path: Path, cli, dtype: str, masked: bool
) -> None:
    """A Zarr v2 Dataset written by zarr-python, whose text coordinate ``name`` (fixed-length
    bytes or unicode, or variable-length) has zarr-python's default fill value ``""``, which
    xarray reads as a mask. xarray wrote a fixed-length one into the v3 output with a
    ``_FillValue`` attribute it cannot read back ("Failed to decode fill_value. Unsupported
    dtype |S2"): ``xr.open_zarr`` failed on the output, marked complete; a variable-length
    one it could not write, refused as a coordinate xarray "cannot read", on which
    "xr.open_zarr fails on the input", which it opens (h57b). Written without it where no
    element is masked: the output opens, ``name`` reads as the input's, verify passes; an
    element equal to the fill value (missing, to xarray), which the output could not give
    back, is refused in one line naming the coordinate, before anything is written."""
    src = tmp_path / "in.zarr"
    g = zarr.open_group(str(src), mode="w", zarr_format=2)
    t = np.random.default_rng(5).standard_normal((4, 3))
    a = g.create_array("t", shape=t.shape, dtype="f8", chunks=t.shape, fill_value=np.nan)
    a[...] = t
    a.attrs.update({"_ARRAY_DIMENSIONS": ["station", "x"], "coordinates": "name"})
    names = np.array(
        ["a", "bb", "" if masked else "cc", "d"], dtype=dtype.replace("vlen-utf8", "U2")
    )
    stored = str if dtype == "vlen-utf8" else dtype
    n = g.create_array("name", shape=names.shape, dtype=stored, chunks=names.shape)
    n[...] = names
    n.attrs["_ARRAY_DIMENSIONS"] = ["station"]
    assert json.loads((src / "name" / ".zarray").read_text())["fill_value"] == ""
    ran = _run_of_a_masked_coordinate(src, "name", masked, "fill value", "output.array: ''")
    if ran is None:
        return
    want, cfg = ran
    rc, _, err = cli("run", cfg)
    assert rc == 0, err
    out = open_dataset(tmp_path / "out.zarr")
    assert same_bits(out["t"].values, reference(t))
    assert out["name"].identical(want["name"]), (out["name"], want["name"])
    assert out["name"].values.tolist() == names.tolist()
    rc, text, err = cli("verify", "--all", cfg)
    assert rc == 0, err + text


def _zarr_python_dataset(src: Path, zarr_format: int, c: np.ndarray) -> np.ndarray:
    """A Dataset as zarr-python writes it (its default fill values): ``t`` (station, x) of
    floats, whose ``coordinates`` name ``c`` (station), holding ``c``. Returns ``t``."""
    g = zarr.open_group(str(src), mode="w", zarr_format=zarr_format)
    t = np.random.default_rng(5).standard_normal((c.size, 3))

    def named(dims: list[str]) -> dict[str, Any]:
        return {"dimension_names": dims} if zarr_format == 3 else {}

    a = g.create_array("t", shape=t.shape, dtype="f8", fill_value=np.nan, **named(["station", "x"]))
    a[...] = t
    a.attrs["coordinates"] = "c"
    n = g.create_array("c", shape=c.shape, dtype=c.dtype, **named(["station"]))
    n[...] = c
    if zarr_format == 2:
        a.attrs["_ARRAY_DIMENSIONS"] = ["station", "x"]
        n.attrs["_ARRAY_DIMENSIONS"] = ["station"]
    return t


@pytest.mark.parametrize("masked", [False, True], ids=["all-held", "one-masked"])
def test_a_boolean_coordinate_masked_by_its_fill_value_keeps_its_meaning(
    tmp_path: Path, cli, masked: bool
) -> None:
    """A Zarr v2 boolean coordinate with zarr-python's default fill value ``false``: xarray
    reads its False elements as missing (an object array, NaN there). The output read True
    there, marked complete (h57b); one without False elements read as the input's, yet
    verify said its coordinate was not the input's (``dtype bool, not object``). Refused in
    one line naming it where an element is masked, before anything is written; else run,
    and verify passes."""
    src = tmp_path / "in.zarr"
    c = np.array([True, not masked, True, True])
    t = _zarr_python_dataset(src, 2, c)
    assert json.loads((src / "c" / ".zarray").read_text())["fill_value"] is False
    ran = _run_of_a_masked_coordinate(src, "c", masked, "fill value False")
    if ran is None:
        return
    want, cfg = ran
    rc, _, err = cli("run", cfg)
    assert rc == 0, err
    out = open_dataset(tmp_path / "out.zarr")
    assert same_bits(out["t"].values, reference(t))
    assert out["c"].values.tolist() == c.tolist() and out["c"].identical(want["c"])
    rc, text, err = cli("verify", "--all", cfg)
    assert rc == 0, err + text


def test_a_native_datetime_coordinate_of_seconds_verifies(tmp_path: Path, cli) -> None:
    """A Zarr v3 coordinate of zarr-python's native ``datetime64[s]`` (a NaT among them):
    xarray writes it as CF times and reads the output's back as ``datetime64[ns]``, the same
    instants. verify had said the output's coordinate was not the input's (``dtype
    datetime64[ns], not datetime64[s]``), and ``run --resume`` refused the complete output
    (h57b). Both pass; the dates are the input's."""
    src = tmp_path / "in.zarr"
    c = np.array(["2001-01-01", "2001-01-02T12:00:01", "NaT", "1969-07-20"], dtype="M8[s]")
    _zarr_python_dataset(src, 3, c)
    cfg = tmp_path / "t.yaml"
    cfg.write_text(yaml.safe_dump(config(tmp_path, cluster=_THREADS)))
    rc, _, err = cli("run", cfg)
    assert rc == 0, err
    out, want = open_dataset(tmp_path / "out.zarr"), open_dataset(src)
    assert out["c"].identical(want["c"]) and want["c"].dtype == "M8[s]"
    rc, text, err = cli("verify", "--all", cfg)
    assert rc == 0, err + text
    rc, text, err = cli("run", cfg, "--resume")
    assert rc == 0, err + text


def test_a_coordinate_xarray_cannot_write_is_refused_saying_so(tmp_path: Path) -> None:
    """A Zarr v2 complex coordinate with zarr-python's default fill value: xarray opens the
    input, but cannot write the coordinate into a Zarr v3 output ("Failed to encode
    fill_value"). The refusal had said that xarray cannot read the coordinate and that
    xr.open_zarr fails on the input (h57b). It says what fails, in one line, before anything
    is written."""
    src = tmp_path / "in.zarr"
    _zarr_python_dataset(src, 2, np.array([1 + 2j, 0j, 3j, 4]))
    open_dataset(src)  # opens
    with pytest.raises(InputError) as info:
        pipeline.run(config(tmp_path, cluster=_THREADS))
    e = info.value
    assert (e.variable, e.coordinate) == (str(src / "c"), "c"), e
    assert "opens in xarray, but xarray cannot write it into a Zarr v3 output" in str(e)
    assert "xr.open_zarr fails" not in str(e) and len(str(e).splitlines()) == 1
    assert "output.array: ''" in str(e) and not (tmp_path / "out.zarr").exists()


def _named_dataset(src: Path, zarr_format: int) -> Any:
    """A Dataset as xarray writes it (no consolidated copy, so that a member's own metadata
    is what xarray reads): ``temp`` on (t, lat, lon), 2 x 3 x 4, its coordinates ``lat`` and
    ``lon``, its grid mapping ``crs`` (a scalar), another variable ``p`` on t; returned as
    written."""
    ds = xr.Dataset(
        {
            "temp": (
                ("t", "lat", "lon"),
                np.arange(24, dtype="f4").reshape(2, 3, 4) + 270,
                {"units": "K", "grid_mapping": "crs"},
            ),
            "p": (("t",), np.array([1000.0, 990.0], "f4")),
            "crs": ((), np.int32(0), {"grid_mapping_name": "latitude_longitude"}),
        },
        coords={"lat": ("lat", [10.0, 20.0, 30.0]), "lon": ("lon", [1.0, 2.0, 3.0, 4.0])},
        attrs={"title": "named dimensions"},
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(str(src), zarr_format=zarr_format, mode="w", consolidated=False)
    return ds


def _store_dimension_names(src: Path, zarr_format: int, node: str, value: Any) -> Path:
    """Write ``value`` as the stored dimension names of the array ``node`` of ``src`` (v2:
    its ``.zattrs``' ``_ARRAY_DIMENSIONS``; v3: its ``zarr.json``'s ``dimension_names``), by
    editing the JSON file, as a damaged store would have it; the file edited."""
    doc_path = src / node / (".zattrs" if zarr_format == 2 else "zarr.json")
    doc = json.loads(doc_path.read_text()) if doc_path.exists() else {}
    doc["_ARRAY_DIMENSIONS" if zarr_format == 2 else "dimension_names"] = value
    doc_path.write_text(json.dumps(doc))
    return doc_path


#: A cluster of one thread in this process: these runs are of a few elements.
_THREADS = {"workers": 1, "threads_per_worker": 1, "dashboard": "", "protocol": "inproc"}

_FAILS_2 = "xr.open_zarr fails on it"
_FAILS_3 = "zarr-python cannot open it"


def _refused_before_anything_is_written(
    cli: Any,
    cfg: Path,
    want: str,
    src: Path,
    out: Path,
    commands: tuple[str, ...] = ("plan", "run"),
) -> dict[str, bytes]:
    """Assert that each of ``commands`` (``python -m pipeline COMMAND cfg``, in this process)
    exits with status 1 and exactly the one stderr line ``want``, that no output store ``out``
    is made, and that the input's files under ``src`` are unchanged, bit for bit; the input's
    files as they were before (:func:`stored_files`), for the caller's later checks."""
    before = stored_files(src)
    for command in commands:
        rc, text, err = cli(command, cfg)
        assert rc == 1, text + err
        assert one_line_error(err) == want
        assert not out.exists()
    assert stored_files(src) == before
    return before


@pytest.mark.parametrize(
    "zarr_format, node, value, problem",
    [
        (2, "temp", ["lat", "lon"], f"lists 2 names for a 3-dimensional array ({_FAILS_2})"),
        (
            2,
            "temp",
            ["t", "lat", "lon", "z"],
            f"lists 4 names for a 3-dimensional array ({_FAILS_2})",
        ),
        (2, "temp", "t", f"is the text 't', one name, for a 3-dimensional array ({_FAILS_2})"),
        (2, "temp", 3, f"is a number, not a list of dimension names ({_FAILS_2})"),
        (2, "temp", None, f"is null, not a list of dimension names ({_FAILS_2})"),
        (
            2,
            "temp",
            {"t": 0, "lat": 1},
            f"is a JSON object of 2 keys, read as names, for a 3-dimensional array ({_FAILS_2})",
        ),
        (
            2,
            "temp",
            ["t", 1, "lon"],
            "gives axis 1 the name 1, a number, not text (a Zarr v3 output cannot hold it)",
        ),
        (
            2,
            "temp",
            ["t", ["lat"], "lon"],
            f'gives axis 1 the name ["lat"], a list, not text ({_FAILS_2})',
        ),
        (
            2,
            "temp",
            ["t", "lat", "lat"],
            "names 'lat' for 2 axes, of 3 and 4 elements (a dimension of an xarray Dataset has "
            f"one size: {_FAILS_2})",
        ),
        (2, "lon", [], f"lists 0 names for a 1-dimensional array ({_FAILS_2})"),
        (2, "lon", 4, f"is a number, not a list of dimension names ({_FAILS_2})"),
        (2, "lon", "lon", f"is the text 'lon', not a list of dimension names ({_FAILS_2})"),
        (3, "temp", ["lat", "lon"], f"lists 2 names for a 3-dimensional array ({_FAILS_3})"),
        (3, "temp", 3, f"is a number, not a list of dimension names ({_FAILS_3})"),
        (3, "temp", ["t", 1, "lon"], f"gives axis 1 the name 1, a number, not text ({_FAILS_3})"),
        (
            3,
            "temp",
            [None, "lat", "lat"],
            "names 'lat' for 2 axes, of 3 and 4 elements (a dimension of an xarray Dataset has "
            f"one size: {_FAILS_2})",
        ),
        (3, "lon", ["lon", "lon"], f"lists 2 names for a 1-dimensional array ({_FAILS_3})"),
        (2, "crs", ["x"], f"lists 1 name for a 0-dimensional array ({_FAILS_2})"),
        (3, "crs", ["x"], f"lists 1 name for a 0-dimensional array ({_FAILS_3})"),
    ],
    ids=[
        "v2-too-few",
        "v2-too-many",
        "v2-text",
        "v2-number",
        "v2-null",
        "v2-object",
        "v2-a-number-name",
        "v2-a-list-name",
        "v2-one-name-two-sizes",
        "v2-coordinate-none",
        "v2-coordinate-number",
        "v2-coordinate-text",
        "v3-too-few",
        "v3-number",
        "v3-a-number-name",
        "v3-one-name-two-sizes",
        "v3-coordinate-too-many",
        "v2-grid-mapping-too-many",
        "v3-grid-mapping-too-many",
    ],
)
def test_damaged_dimension_names_are_one_line_before_anything_is_written(
    tmp_path: Path, cli, zarr_format: int, node: str, value: Any, problem: str
) -> None:
    """Stored dimension names of the input variable, or of its coordinate, that xarray (or,
    for v3, zarr-python) refuses, or that a Zarr v3 output cannot hold (a number xarray reads
    as a name): a v2 ``_ARRAY_DIMENSIONS`` of another length had made the variable an array
    alone, its Dataset silently dropped (helper-47a); others failed as a bare TypeError, or
    in a line naming no file, or wrote an output xarray cannot open (a name for two axes of
    different sizes). One line for plan, run and verify, naming the file, the problem and the
    fix, before anything is written; the input's files unchanged."""
    src, out = tmp_path / "in.zarr", tmp_path / "out.zarr"
    _named_dataset(src, zarr_format)
    doc = _store_dimension_names(src, zarr_format, node, value)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if "Zarr v3 output" in problem:  # xarray reads it, the number as the name
            assert xr.open_zarr(str(src), consolidated=False)["temp"].dims == ("t", 1, "lon")
        else:
            with pytest.raises((KeyError, TypeError, ValueError)):
                xr.open_zarr(str(src), consolidated=False)
    key = "_ARRAY_DIMENSIONS" if zarr_format == 2 else "dimension_names"
    whose = (
        f" (of {node!r}, which 'temp' names: a coordinate or reference xarray reads with it)"
        if node != "temp"
        else ""
    )
    ndim = {"temp": 3, "lon": 1, "crs": 0}[node]
    fix = (
        "restore it: an empty list (the array has no dimensions)"
        if ndim == 0
        else f"restore it: a list of {ndim} name{'s' if ndim > 1 else ''}, one per dimension, "
        "each text"
        + (" (or null)" if zarr_format == 3 else "")
        + (", each used for axes of one size" if "2 axes" in problem else "")
    )
    want = f"error: {doc}{whose}: {key} {problem}; {fix}"
    cfg = write_config(
        tmp_path, "", out, input={"store": str(src), "array": "temp"}, cluster=_THREADS
    )
    before = _refused_before_anything_is_written(
        cli, cfg, want, src, out, ("plan", "run", "verify")
    )
    e = refused("run", cfg)
    assert isinstance(e, InputError) and e.store == str(doc) and e.status == "unreadable", e
    assert stored_files(src) == before
    assert not out.exists()


@pytest.mark.parametrize("writer", ["tensorstore", "zarr-python", "zarr-python-v2", "xarray-group"])
def test_null_names_for_axes_of_different_sizes_run_as_an_array_alone(
    tmp_path: Path, cli, writer: str
) -> None:
    """A v3 (or v2) array of a group whose unlabelled axes, of different sizes, are null in its
    ``dimension_names`` (tensorstore writes a partly labelled array so: ``["time", null,
    null]``; zarr-python as given; an array beside an xarray Dataset's variables) is Zarr's
    array with unnamed axes, which xarray cannot read as a Dataset variable (one dimension
    None of conflicting sizes): run as an array alone, its names kept as given, as before
    today's null-as-dimension-None reading. It had been refused as damaged dimension names,
    'restore it', for plan, run and verify. The output is NumPy's, bit for bit; verify
    --all, plan and run --resume pass."""
    src, out = tmp_path / "in.zarr", tmp_path / "out.zarr"
    x = np.arange(2 * 3 * 4, dtype="f4").reshape(2, 3, 4) - 7.5
    names = ["time", None, None]
    if writer == "xarray-group":
        _named_dataset(src, 3)
    else:
        zarr.open_group(str(src), mode="w", zarr_format=2 if writer.endswith("v2") else 3)
    doc = src / "v" / "zarr.json"
    if writer == "tensorstore":
        ts = pytest.importorskip("tensorstore")
        t = ts.open(
            {"driver": "zarr3", "kvstore": {"driver": "file", "path": str(src / "v")}},
            create=True,
            dtype=ts.float32,
            domain=ts.IndexDomain(shape=list(x.shape), labels=["time", "", ""]),
            chunk_layout=ts.ChunkLayout(chunk_shape=[1, 3, 2]),
        ).result()
        t[...] = x
    elif writer.endswith("v2"):  # _ARRAY_DIMENSIONS [time, null, null]
        z = zarr.open_group(str(src), mode="a").create_array(
            "v",
            shape=x.shape,
            dtype=x.dtype,
            chunks=(1, 3, 2),
            fill_value=None,
            attributes={"_ARRAY_DIMENSIONS": names},
        )
        z[...] = x
        doc = src / "v" / ".zattrs"
    else:
        z = zarr.open_group(str(src), mode="a").create_array(
            "v", shape=x.shape, dtype=x.dtype, chunks=(1, 3, 2), dimension_names=names
        )
        z[...] = x
    stored = json.loads(doc.read_text())
    assert stored.get("dimension_names", stored.get("_ARRAY_DIMENSIONS")) == names
    cfg = write_config(tmp_path, "", out, input={"store": str(src), "array": "v"}, cluster=_THREADS)
    before = stored_files(src)
    rc, text, err = cli("run", cfg)
    assert rc == 0, text + err
    y = zarr.open_array(str(out), mode="r")  # an array alone: at the output's root
    assert y.metadata.dimension_names == tuple(names)
    np.testing.assert_array_equal(y[...].view("u4"), reference(x).view("u4"))
    for command in (("verify", "--all"), ("plan",), ("run", "--resume"), ("verify",)):
        rc, text, err = cli(*command, cfg)
        assert rc == 0, (command, text + err)
    assert stored_files(src) == before


@pytest.mark.parametrize(
    "zarr_format, names, damage, problem",
    [
        (
            2,
            {"t": 0, "lat": 1, "lon": 2},
            4,
            f"is a number, not a list of dimension names ({_FAILS_2})",
        ),
        (
            3,
            [None, "lat", "lon"],
            ["lon", "lon"],
            f"lists 2 names for a 1-dimensional array ({_FAILS_3})",
        ),
    ],
    ids=["v2-object-names", "v3-a-null-name"],
)
def test_a_coordinate_of_a_variable_with_odd_names_is_checked_too(
    tmp_path: Path, cli, zarr_format: int, names: Any, damage: Any, problem: str
) -> None:
    """The input's names are odd but read as xarray reads them (a v2 JSON object's keys, a
    null name): its coordinate ``lon``, with damaged names, is one the run needs, and is
    refused in the line naming its file, as for a variable with plain names (the members a
    run needs had been followed from plain names only: the line named the group and
    xarray's bare reason)."""
    src, out = tmp_path / "in.zarr", tmp_path / "out.zarr"
    _named_dataset(src, zarr_format)
    _store_dimension_names(src, zarr_format, "temp", names)
    doc = _store_dimension_names(src, zarr_format, "lon", damage)
    key = "_ARRAY_DIMENSIONS" if zarr_format == 2 else "dimension_names"
    fix = "restore it: a list of 1 name, one per dimension, each text" + (
        " (or null)" if zarr_format == 3 else ""
    )
    want = (
        f"error: {doc} (of 'lon', which 'temp' names: a coordinate or reference xarray reads "
        f"with it): {key} {problem}; {fix}"
    )
    cfg = write_config(
        tmp_path, "", out, input={"store": str(src), "array": "temp"}, cluster=_THREADS
    )
    _refused_before_anything_is_written(cli, cfg, want, src, out)


@pytest.mark.parametrize(
    "zarr_format, value, problem",
    [
        (2, 3, f"is a number, not a list of dimension names ({_FAILS_2})"),
        (2, ["t", "x"], f"lists 2 names for a 1-dimensional array ({_FAILS_2})"),
        (3, ["t", "x"], f"lists 2 names for a 1-dimensional array ({_FAILS_3})"),
    ],
    ids=["v2-number", "v2-too-many", "v3-too-many"],
)
@pytest.mark.parametrize("other", ["p", ".p"])
def test_another_variable_s_damaged_dimension_names_are_one_line_naming_its_file(
    tmp_path: Path, cli, zarr_format: int, value: Any, problem: str, other: str
) -> None:
    """Damaged dimension names of another variable of the Dataset (``p``, which the input
    ``temp`` does not name): xarray reads every array of a group to open it, so the frame of
    the Dataset output cannot be read; the line named only the group and xarray's bare
    reason ("'int' object is not iterable", "zip() argument 2 is shorter ..."). It names the
    file, the problem and both fixes, for plan and run, before anything is written; with
    ``output.array: ''``, as it says, the variable is written alone. The variable is named
    ``p`` or ``.p`` (a variable to xarray like any other; a leading '.' had kept it out of
    the check, and the run failed later on xarray's bare reason)."""
    src, out = tmp_path / "in.zarr", tmp_path / "out.zarr"
    ds = _named_dataset(src, zarr_format)
    (src / "p").rename(src / other)
    doc = _store_dimension_names(src, zarr_format, other, value)
    with warnings.catch_warnings(), pytest.raises((KeyError, TypeError, ValueError)):
        warnings.simplefilter("ignore")
        xr.open_zarr(str(src), consolidated=False)
    key = "_ARRAY_DIMENSIONS" if zarr_format == 2 else "dimension_names"
    fix = "restore it: a list of 1 name, one per dimension, each text" + (
        " (or null)" if zarr_format == 3 else ""
    )
    want = (
        f"error: {doc} (another variable of the input Dataset {src}, which xarray reads to "
        f"open it): {key} {problem}; {fix}, or set output.array: '' to write the variable "
        "alone, without its Dataset"
    )
    cfg = write_config(
        tmp_path, "", out, input={"store": str(src), "array": "temp"}, cluster=_THREADS
    )
    before = _refused_before_anything_is_written(cli, cfg, want, src, out)
    alone = write_config(
        tmp_path,
        "",
        out,
        name="alone.yaml",
        input={"store": str(src), "array": "temp"},
        output={"array": ""},
        cluster=_THREADS,
    )
    rc, text, err = cli("run", alone, "--progress", "none")
    assert rc == 0, text + err
    got = zarr.open_array(str(out), mode="r")
    assert got.metadata.dimension_names == ("t", "lat", "lon")
    np.testing.assert_array_equal(got[...], reference(ds["temp"].values))
    assert stored_files(src) == before


@pytest.mark.parametrize("member", ["temp", "p"])
def test_a_v3_consolidated_copy_with_damaged_dimension_names_is_one_line(
    tmp_path: Path, cli, member: str
) -> None:
    """A v3 group's consolidated metadata (which ``xr.open_zarr`` reads by default) holding,
    for the input variable or another one, ``dimension_names`` zarr-python cannot parse:
    xarray fails on the input, and the pipeline, which reads each array's own metadata, had
    planned and run on as if nothing were wrong. One line naming the group's ``zarr.json``,
    the array, the problem and the fix, for plan and run, before anything is written."""
    src, out = tmp_path / "in.zarr", tmp_path / "out.zarr"
    ds = _named_dataset(src, 3)
    with pytest.warns(UserWarning):  # v3 consolidated metadata: not in the spec yet
        zarr.consolidate_metadata(str(src), zarr_format=3)
    doc = json.loads((src / "zarr.json").read_text())
    doc["consolidated_metadata"]["metadata"][member]["dimension_names"] = ["x", "y"]
    (src / "zarr.json").write_text(json.dumps(doc))
    with warnings.catch_warnings(), pytest.raises(ValueError):
        warnings.simplefilter("ignore")
        xr.open_zarr(str(src))
    ndim = ds[member].ndim
    want = (
        f"error: {src / 'zarr.json'}: its consolidated metadata, which xr.open_zarr reads, is "
        f"damaged for {member!r}: dimension_names lists 2 names for a {ndim}-dimensional array "
        f"({_FAILS_3}); consolidate the input's metadata again (zarr.consolidate_metadata on "
        "its store), which copies each array's own"
    )
    cfg = write_config(
        tmp_path, "", out, input={"store": str(src), "array": "temp"}, cluster=_THREADS
    )
    _refused_before_anything_is_written(cli, cfg, want, src, out)


@pytest.mark.parametrize(
    "zarr_format, array, value, dims",
    [
        (2, "temp", {"t": 0, "lat": 1, "lon": 2}, ("t", "lat", "lon")),
        (2, "p", "t", ("t",)),
        (2, "temp", [None, "lat", "lon"], (None, "lat", "lon")),
        (3, "temp", [None, "lat", "lon"], (None, "lat", "lon")),
    ],
    ids=["v2-object", "v2-one-letter-text", "v2-a-null-name", "v3-a-null-name"],
)
def test_odd_dimension_names_that_xarray_reads_are_read_as_it_reads_them(
    tmp_path: Path, cli, zarr_format: int, array: str, value: Any, dims: tuple[Any, ...]
) -> None:
    """Stored dimension names that xarray reads although they are odd: a v2
    ``_ARRAY_DIMENSIONS`` that is a JSON object (its keys are the names) or a one-letter text
    (one name, of a 1-dimensional array), and a null name (v2 or v3), which xarray reads as
    the dimension None. The object and the null had made the variable an array alone, its
    Dataset dropped (written beside coordinates xarray could not open with it, for the
    object: "missing the `dimension_names`"); the text, an output variable without dimension
    names in its Dataset, which xarray cannot open either. Read as xarray reads them: the
    output opens as xarray opens the input (dimensions, coordinates, attributes), its values
    the chain's; verify passes; the input unchanged."""
    src, out = tmp_path / "in.zarr", tmp_path / "out.zarr"
    ds = _named_dataset(src, zarr_format)
    _store_dimension_names(src, zarr_format, array, value)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = xr.open_zarr(str(src), consolidated=False).load()
    assert want[array].dims == dims
    cfg = write_config(
        tmp_path, "", out, input={"store": str(src), "array": array}, cluster=_THREADS
    )
    before = stored_files(src)
    for args in (("plan",), ("run", "--progress", "none"), ("verify",)):
        rc, text, err = cli(args[0], cfg, *args[1:])
        assert rc == 0, text + err
    got = open_dataset(out)
    assert got[array].dims == dims
    assert sorted(got[array].coords) == sorted(want[array].coords)
    for c in want[array].coords:
        assert got[c].dims == want[c].dims
        np.testing.assert_array_equal(got[c].values, want[c].values)
    np.testing.assert_array_equal(got[array].values, reference(ds[array].values))
    assert got.attrs == want.attrs
    assert stored_files(src) == before


@pytest.mark.parametrize(
    "zarr_format, value, problem",
    [
        (2, ["x"], "lists 1 name for a 2-dimensional array (the output cannot carry it)"),
        (2, 7, "is a number, not a list of dimension names (the output cannot carry it)"),
        (
            2,
            ["y", 7],
            "gives axis 1 the name 7, a number, not text (a Zarr v3 output cannot hold it)",
        ),
        (3, ["x"], "lists 1 name for a 2-dimensional array (zarr-python cannot open it)"),
    ],
    ids=["v2-too-few", "v2-number", "v2-a-number-name", "v3-too-few"],
)
def test_an_array_alone_with_damaged_dimension_names_is_one_line(
    tmp_path: Path, cli, zarr_format: int, value: Any, problem: str
) -> None:
    """An array alone (the root of its store, no Dataset) whose stored dimension names the
    output cannot carry: the v2 ones had been dropped silently (an output without dimension
    names), the v3 ones refused as zarr-python's ValueError naming no file. One line naming
    the file, the problem and the fix, for plan and run; nothing written."""
    src, out = tmp_path / "in.zarr", tmp_path / "out.zarr"
    z = zarr.create_array(
        str(src), shape=(4, 6), dtype="f4", chunks=(2, 3), zarr_format=zarr_format, fill_value=0
    )
    z[...] = np.arange(24, dtype="f4").reshape(4, 6)
    doc = _store_dimension_names(src, zarr_format, "", value)
    key = "_ARRAY_DIMENSIONS" if zarr_format == 2 else "dimension_names"
    fix = "restore it: a list of 2 names, one per dimension, each text" + (
        " (or null)" if zarr_format == 3 else ""
    )
    cfg = write_config(tmp_path, "", out, input={"store": str(src), "array": ""}, cluster=_THREADS)
    want = f"error: {doc}: {key} {problem}; {fix}"
    _refused_before_anything_is_written(cli, cfg, want, src, out)


def test_a_dataset_on_s3_comes_out_as_a_dataset_on_s3(
    tmp_path: Path, backend_client: tuple[str, Any], bucket: tuple[str, dict[str, Any]]
) -> None:
    """Both stores on a real S3 server: the coordinates and consolidated metadata are
    written through the same file system options as the chunks."""
    backend, client = backend_client
    url, options = bucket
    write_dataset(tmp_path / "in.zarr", 3, PACKED)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        open_dataset(tmp_path / "in.zarr", raw=True).to_zarr(
            f"{url}/in.zarr", storage_options=options, zarr_format=3, mode="w"
        )
    cfg = config(
        tmp_path,
        backend,
        input={"store": f"{url}/in.zarr", "storage_options": options, "mask_and_scale": True},
        output={"store": f"{url}/out.zarr", "storage_options": options},
    )
    assert pipeline.run(cfg, client=client).status == "complete"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = xr.open_zarr(f"{url}/out.zarr", storage_options=options).load()
    want = open_dataset(tmp_path / "in.zarr")
    assert set(got.coords) == {"y", "x", "lon"} and got.attrs == want.attrs
    assert "unpack" in record_of(got["t"].attrs)["identity"]  # the input was stored packed
    chain = plan_chain(parse_config(cfg).stage_specs(), want["t"].dtype)
    with np.errstate(all="ignore"):
        assert same_bits(got["t"].values, apply_chain(chain, want["t"].values))


def test_the_cli_runs_a_packed_v2_variable_and_verify_decodes_it(tmp_path: Path, cli) -> None:
    write_dataset(tmp_path / "in.zarr", 2, PACKED)
    cfg = write_config(
        tmp_path,
        tmp_path / "in.zarr",
        tmp_path / "out.zarr",
        input={"array": "t", "mask_and_scale": True},
        cluster={"workers": 1, "threads_per_worker": 2, "dashboard": ""},
    )
    rc, out, err = cli("plan", cfg)
    assert rc == 0, err
    assert "unpacking" in out and "-9999 -> NaN" in out and "consolidated metadata" in out
    rc, _, err = cli("run", cfg, "--progress", "none")
    assert rc == 0, err
    assert_variable_as_xarray_opened_it(tmp_path / "out.zarr", tmp_path / "in.zarr")
    rc, out, err = cli("verify", cfg, "--all")
    assert rc == 0, (out, err)


# --------------------------------------------------------------------------------------------
# Refusals: before anything is written.


REFUSED = {
    "scale-offset-fill": (PACKED, {"scale_factor", "add_offset", "_FillValue"}),
    "fill-only": ({"dtype": "int16", "_FillValue": -1}, {"_FillValue"}),
    "missing-value": (
        {"dtype": "int16", "scale_factor": 0.25, "missing_value": 77},
        {"scale_factor", "missing_value"},
    ),
}


@pytest.mark.parametrize("zarr_format", [2, 3], ids=lambda f: f"v{f}")
@pytest.mark.parametrize("name", list(REFUSED))
def test_a_packed_variable_is_refused_without_mask_and_scale(
    tmp_path: Path, zarr_format: int, name: str
) -> None:
    encoding, named = REFUSED[name]
    write_dataset(tmp_path / "in.zarr", zarr_format, encoding)
    with pytest.raises(InputError) as info:
        pipeline.run(config(tmp_path))
    e = info.value
    assert e.variable == str(tmp_path / "in.zarr" / "t")
    assert named <= set(e.attributes)
    assert e.fix == "input.mask_and_scale: true"
    assert len(str(e).splitlines()) == 1
    assert not (tmp_path / "out.zarr").exists()
    plan = pipeline.plan(config(tmp_path, input={"mask_and_scale": True}))
    assert plan.source.unpacking is not None and plan.chain[0].in_dtype.kind == "f"


@pytest.mark.parametrize("zarr_format", [2, 3], ids=lambda f: f"v{f}")
def test_a_masked_variables_refusal_names_only_the_attributes_that_mask(
    tmp_path: Path, zarr_format: int
) -> None:
    """A float variable with a ``missing_value``, as xarray writes it: beside it xarray stores
    its ``_FillValue`` NaN (Zarr v3: the attribute ``'AAAAAAAA+H8='``), which masks nothing.
    The refusal names ``missing_value`` alone (h60g: on v3 it named ``_FillValue`` too, as a
    reason the stored numbers are not the values)."""
    write_dataset(tmp_path / "in.zarr", zarr_format, {"missing_value": -999.0})
    if zarr_format == 3:  # the NaN fill xarray writes beside it
        assert zarr.open_array(str(tmp_path / "in.zarr"), path="t").attrs["_FillValue"]
    with pytest.raises(InputError) as info:
        pipeline.run(config(tmp_path))
    e = info.value
    assert e.attributes == ["missing_value"], e
    assert "(missing_value)" in str(e) and "_FillValue" not in str(e)
    assert e.fix == "input.mask_and_scale: true"
    assert not (tmp_path / "out.zarr").exists()


@pytest.mark.parametrize("backend", ["cpu", "gpu"], ids=["host", "device"])  # no GPU needed
def test_the_memory_model_holds_the_decoded_block_and_its_mask(backend: str) -> None:
    """The model only (no GPU needed): an unpacked block is held decoded (float64 here) with
    a mask of its missing elements, on the device the stages run on."""
    from pipeline.planning import memory

    block = (64, 128)
    args: dict[str, Any] = dict(
        backend=backend,
        block=block,
        in_dtype=np.dtype("int16"),
        out_dtype=np.dtype("float64"),
        decode_on="cpu",
        encode_on=backend,
        slab_in=True,
        slab_out=True,
        threads=2,
        device_budget=None,
        host_budget=None,
    )
    plain = memory.project_memory(**args)
    unpacked = memory.project_memory(**args, unpacked=np.dtype("float64"))
    where = "device_per_task" if backend == "gpu" else "host_per_task"
    assert getattr(unpacked, where) - getattr(plain, where) == 64 * 128 * (8 + 1)


#: Variables xarray reads with the other sign (``_Unsigned``): (stored dtype, stored values,
#: attributes). xarray's mask coder views "true" signed integers as unsigned (its
#: ``_convert_unsigned_fill_value``), "false" unsigned ones as signed, converts the
#: ``_FillValue`` (a v2 array's fill value in its place) alike, and leaves ``missing_value`` as
#: it is: -1 then masks nothing on the unsigned values.
UNSIGNED: dict[str, tuple[str, list[int], dict[str, Any]]] = {
    "int16-true": ("int16", [0, 1, -1, -2, 32767, -32768], {"_Unsigned": "true"}),
    "int16-true-fill": (
        "int16",
        [0, 1, -1, -2, 32767, -32768],
        {"_Unsigned": "true", "_FillValue": -1},
    ),
    "int8-true-packed": (
        "int8",
        [0, 1, -1, -2, 127, -128],
        {"_Unsigned": "true", "_FillValue": -2, "scale_factor": 0.5, "add_offset": 10.0},
    ),
    "int8-true-missing-value": (
        "int8",
        [0, 1, -1, -2, 127, -128],
        {"_Unsigned": "true", "missing_value": -1},
    ),
    "uint16-false-fill": (
        "uint16",
        [0, 1, 65535, 65534, 32768, 7],
        {"_Unsigned": "false", "_FillValue": 65534},
    ),
    "int16-false": ("int16", [0, 1, -1, -2, 5, 7], {"_Unsigned": "false"}),
}


@pytest.mark.parametrize("zarr_format", [2, 3], ids=lambda f: f"v{f}")
@pytest.mark.parametrize("case", list(UNSIGNED))
def test_an_unsigned_attribute_is_decoded_as_xarray_decodes_it(
    tmp_path: Path, backend_client: tuple[str, Any], zarr_format: int, case: str
) -> None:
    """A variable with ``_Unsigned`` (netCDF-3's unsigned bytes: signed integers to be read as
    unsigned), run with ``input.mask_and_scale: true``, comes out as NumPy's chain over
    ``xr.open_zarr``'s values, bit for bit (dtype too), verify passing: it had been refused
    even with the setting (h69a). Without the setting, where xarray reads other values than
    the stored ones, it is refused in one line naming ``_Unsigned`` and the setting; an
    ``_Unsigned`` xarray ignores ("false" on signed integers) decodes nothing. On the GPU the
    block is viewed with the other sign before the decoding kernel (``Unpacking.stored``)."""
    backend, client = backend_client
    stored, values, attrs = UNSIGNED[case]
    x = np.array(values, dtype=stored).reshape(2, 3)
    src = tmp_path / "in.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = zarr.open_group(str(src), mode="w", zarr_format=zarr_format)
        own = dict(attrs)
        fill = own.pop("_FillValue", None) if zarr_format == 2 else None
        if zarr_format == 2:
            own["_ARRAY_DIMENSIONS"] = ["y", "x"]
        t = g.create_array(
            "t",
            shape=x.shape,
            dtype=stored,
            chunks=(1, 3),
            fill_value=fill,
            attributes=own,
            dimension_names=("y", "x") if zarr_format == 3 else None,
        )
        t[...] = x
        zarr.consolidate_metadata(str(src))
        try:
            decoded = xr.open_zarr(str(src))["t"].values
        except OverflowError:  # a v3 _FillValue 65534 to be read as int16: xarray fails
            decoded = None
    before = file_states(src)
    cfg = config(tmp_path, backend, input={"mask_and_scale": True})
    if decoded is None:  # refused, saying so, before anything is written
        with pytest.raises(InputError) as failed:
            pipeline.run(cfg, client=client)
        assert failed.value.attributes == ["_FillValue"], failed.value
        assert "which xarray cannot read" in str(failed.value)
        assert not (tmp_path / "out.zarr").exists() and file_states(src) == before
        return
    assert pipeline.run(cfg, client=client).status == "complete"
    with np.errstate(all="ignore"):
        want = apply_chain(plan_chain(parse_config(cfg).stage_specs(), decoded.dtype), decoded)
    got = open_dataset(tmp_path / "out.zarr")["t"].values
    assert same_bits(got, want), (got, want)
    assert pipeline.verify(cfg, all=True).ok
    plain = config(tmp_path, backend, output={"overwrite": True})
    if same_bits(decoded, x):  # xarray reads the stored numbers: nothing to decode
        assert pipeline.run(plain, client=client).status == "complete"
        return
    with pytest.raises(InputError) as info:
        pipeline.run(plain, client=client)
    e = info.value
    assert "_Unsigned" in e.attributes and e.fix == "input.mask_and_scale: true", e
    assert len(str(e).splitlines()) == 1
    assert file_states(src) == before


def test_an_integer_variable_without_a_fill_value_needs_no_decoding(tmp_path: Path) -> None:
    write_dataset(tmp_path / "in.zarr", 2, {"dtype": "int16"})  # NaN stored as a number
    plan = pipeline.plan(config(tmp_path))
    assert plan.source.unpacking is None
    assert plan.carried.variable is not None and plan.carried.variable.dims == ("y", "x")
    assert plan.chain[0].in_dtype == np.int16


def test_an_output_variable_named_as_a_coordinate_is_refused(tmp_path: Path) -> None:
    write_dataset(tmp_path / "in.zarr", 3)
    with pytest.raises(ConfigError) as info:
        pipeline.run(config(tmp_path, output={"array": "x"}))
    assert info.value.key == "output.array" and info.value.value == "x"
    assert not (tmp_path / "out.zarr").exists()


def test_an_output_group_inside_the_input_dataset_is_refused(tmp_path: Path) -> None:
    write_dataset(tmp_path / "in.zarr", 3)
    before = file_states(tmp_path / "in.zarr")
    for store, array in ((tmp_path / "in.zarr", "t2"), (tmp_path / "in.zarr" / "sub", "t")):
        cfg = config(tmp_path, output={"store": str(store), "array": array})
        with pytest.raises(OutputError) as info:
            pipeline.run(cfg)
        assert info.value.input == os.path.realpath(tmp_path / "in.zarr")
    assert file_states(tmp_path / "in.zarr") == before


@pytest.mark.parametrize("kind", ["group", "directory"])
def test_a_group_or_directory_named_as_a_coordinate_is_never_deleted(
    tmp_path: Path, kind: str
) -> None:
    """The output group holds, where the input's coordinate ``lon`` would be written, a
    subgroup with an array in it (or a plain directory): --overwrite refuses, naming it,
    before anything is deleted (it had deleted it, recursively, as a replaced coordinate)."""
    write_dataset(tmp_path / "in.zarr", 3)
    out = tmp_path / "out.zarr"
    root = zarr.open_group(str(out), mode="w", zarr_format=3)
    root.create_array("q", shape=(3,), dtype="f8")[...] = 1
    if kind == "group":
        root.create_group("lon").create_array("mine", shape=(3,), dtype="f8")[...] = 2
    else:
        (out / "lon").mkdir()
        (out / "lon" / "notes.txt").write_text("mine")
    before = file_states(out)
    with pytest.raises(OutputError) as info:
        pipeline.run(config(tmp_path), overwrite=True)
    if kind == "group":
        assert info.value.array == "lon" and "'lon'" in str(info.value), info.value
    else:  # a group with a member that is no Zarr node
        assert info.value.status == "not-zarr" and "lon" in str(info.value), info.value
    assert len(str(info.value).splitlines()) == 1
    assert file_states(out) == before


def test_a_plain_folder_in_the_output_group_is_named_and_the_group_called_one(
    tmp_path: Path,
) -> None:
    """The output's group, a Dataset xarray wrote, holds a folder of no Zarr metadata (which
    zarr-python passes over: "Object at plain is not recognized"): the refusal names that
    folder in the group. It had said of the group itself "is a directory that holds other
    files (plain, x, y, ...), not a Zarr array or group". Nothing is written."""
    write_dataset(tmp_path / "in.zarr", 3)
    out = tmp_path / "out.zarr"
    write_dataset(out, 3)
    (out / "plain").mkdir()
    (out / "plain" / "notes.txt").write_text("mine")
    before = file_states(out)
    for overwrite in (False, True):
        with pytest.raises(OutputError) as info:
            pipeline.run(config(tmp_path, output={"array": "new"}), overwrite=overwrite)
        line = str(info.value)
        assert "is a Zarr group that holds 'plain' (a folder of no Zarr metadata)" in line, line
        assert "move it out of the group yourself" in line and "not a Zarr" not in line, line
        assert info.value.status == "not-zarr" and len(line.splitlines()) == 1
    assert file_states(out) == before


def test_an_array_in_a_plain_output_folder_is_called_an_array(tmp_path: Path) -> None:
    """The output Dataset's group is to be a folder of no Zarr metadata that holds an array
    of the user's (zarr-python's, at ``out.zarr/mine``): the refusal calls it an array; it
    had been "a group this pipeline did not write". Nothing is written."""
    write_dataset(tmp_path / "in.zarr", 3)
    out = tmp_path / "out.zarr"
    make_array(out / "mine", np.arange(6.0).reshape(2, 3), (2, 3))
    before = file_states(out)
    with pytest.raises(OutputError) as info:
        pipeline.run(config(tmp_path, output={"array": "new"}))
    line = str(info.value)
    assert "'mine' (an array this pipeline did not write)" in line, line
    assert file_states(out) == before


@pytest.mark.parametrize("left", ["empty", "partial"])
def test_a_coordinate_folder_a_kill_left_unfinished_does_not_block_the_next_run(
    tmp_path: Path, left: str
) -> None:
    """A kill while a coordinate was being written leaves its folder without metadata: empty,
    or with zarr-python's temporary ``zarr.HEX.partial`` (helper-42). It was "something that
    is not Zarr", which every later run, resume and overwrite refused to touch; it holds
    nothing of anyone's, so --overwrite replaces it, to the bit."""
    write_dataset(tmp_path / "in.zarr", 3)
    out = tmp_path / "out.zarr"
    assert pipeline.run(config(tmp_path)).status == "complete"
    ref = open_dataset(out)
    shutil.rmtree(out / "lon")
    (out / "lon").mkdir()
    if left == "partial":
        (out / "lon" / f"zarr.{'0f' * 16}.partial").write_text("{")
    assert pipeline.run(config(tmp_path), overwrite=True).status == "complete"
    got = open_dataset(out)
    assert got["lon"].identical(ref["lon"])
    assert same_bits(got["t"].values, ref["t"].values)
    assert not list((out / "lon").glob("*.partial"))


def _refused_as_relabelling(
    cfg: dict[str, Any], out: Path, array: str, users: list[str]
) -> OutputError:
    """Assert that ``pipeline.run(cfg, overwrite=True)`` is refused with an OutputError of
    one line saying that writing ``array`` would relabel ``users``, and that nothing in the
    output store ``out`` was touched; the error."""
    before = file_states(out)
    with pytest.raises(OutputError) as info:
        pipeline.run(cfg, overwrite=True)
    e = info.value
    assert (e.array, e.users) == (array, users) and "relabel" in str(e), e
    assert len(str(e).splitlines()) == 1
    assert file_states(out) == before
    return e


def test_overwrite_never_relabels_the_groups_other_variables(tmp_path: Path) -> None:
    """A variable written with --overwrite into a group whose other variable refers to the
    coordinate ``lon``, from an input whose ``lon`` has other values (helper-42: the other
    variable was described by the new coordinate from then on): refused in one line naming
    both, nothing touched. From the same input it is written."""
    write_dataset(tmp_path / "in.zarr", 3)
    out = tmp_path / "out.zarr"
    assert pipeline.run(config(tmp_path)).status == "complete"  # t, with y, x and lon
    other = tmp_path / "other.zarr"
    shutil.copytree(tmp_path / "in.zarr", other)
    lon = zarr.open_array(str(other), path="lon", mode="r+")
    lon[...] = lon[...] + 10
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(str(other))
    moved = config(tmp_path, input={"store": str(other)}, output={"array": "t2"})
    _refused_as_relabelling(moved, out, "lon", ["t"])
    same = pipeline.run(config(tmp_path, output={"array": "t2"}), overwrite=True)
    assert same.status == "complete"
    ds = open_dataset(out)
    assert same_bits(ds["t2"].values, ds["t"].values) and ds["lon"].identical(ds["t2"]["lon"])


def _described(path: Path, var: str, changed: str = "", lev_a_is_data: bool = False) -> None:
    """A Dataset whose variable ``var`` (lat, lon) is described through every kind of CF
    reference: ``cell_measures: area: cell_area``, ``grid_mapping: crs: lat lon`` (the long
    form), ``lat``'s ``bounds: lat_bnds``, ``lon``'s ``climatology: lon_clim``, and the scalar
    coordinate ``lev`` whose ``formula_terms: a: lev_a`` names ``lev_a`` (a coordinate, or,
    ``lev_a_is_data``, a data variable the variable names only through ``lev``). The array
    ``changed`` holds other values; written to ``path``."""
    lat, lon = np.linspace(-80.0, 80.0, 6), np.arange(4.0)

    def values(name: str, v: Any) -> Any:
        return np.asarray(v) + (1 if name == changed else 0)

    ds = xr.Dataset(
        {
            var: (
                ("lat", "lon"),
                np.ones((6, 4), "f4"),
                {"cell_measures": "area: cell_area", "grid_mapping": "crs: lat lon"},
            ),
            "cell_area": (("lat", "lon"), values("cell_area", np.full((6, 4), 2.0))),
            "crs": ((), values("crs", 0), {"grid_mapping_name": "latitude_longitude"}),
            "lat_bnds": (("lat", "nv"), values("lat_bnds", np.stack([lat - 1, lat + 1], 1))),
            "lon_clim": (("lon", "nv"), values("lon_clim", np.stack([lon, lon + 1], 1))),
        },
        coords={
            "lat": ("lat", lat, {"bounds": "lat_bnds"}),
            "lon": ("lon", lon, {"climatology": "lon_clim"}),
            "lev": ((), 1.0, {"formula_terms": "a: lev_a"}),
        },
    )
    lev_a = ((), values("lev_a", 0.5))
    ds = ds.assign({"lev_a": lev_a}) if lev_a_is_data else ds.assign_coords({"lev_a": lev_a})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(str(path), zarr_format=3, mode="w", consolidated=True)


@pytest.mark.parametrize("changed", ["cell_area", "crs", "lat_bnds", "lon_clim", "lev_a"])
def test_overwrite_never_relabels_through_any_cf_reference(
    tmp_path: Path, cli, changed: str
) -> None:
    """A user's variable ``mine`` described by a cell measure, a grid mapping named in the
    long form (``crs: lat lon``), its coordinates' bounds or climatology, or a variable a
    coordinate's ``formula_terms`` names; --overwrite of another input's variable into its
    group, where that one array differs: the run exited 0 and replaced it with the input's
    (``datasets.users`` read neither ``cell_measures``, ``climatology`` nor
    ``formula_terms``, took ``crs:`` for a name, and never followed a replaced coordinate to
    its bounds), relabelling ``mine``. Refused in one line naming it, nothing touched; where
    nothing differs, written."""
    _described(tmp_path / "in.zarr", "air", changed)
    out = tmp_path / "out.zarr"
    _described(out, "mine", lev_a_is_data=True)
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump(config(tmp_path, input={"array": "air"})))
    before = file_states(out)
    rc, _, err = cli("run", str(cfg), "-q", "--overwrite")
    line = one_line_error(err)
    assert rc != 0 and f"'mine' are described by {changed!r}" in line and "relabel" in line
    assert file_states(out) == before

    _described(tmp_path / "in.zarr", "air")
    rc, _, err = cli("run", str(cfg), "-q", "--overwrite")
    assert rc == 0, err
    mine, ref = open_dataset(out), open_dataset(tmp_path / "in.zarr")
    assert {"mine", "air"} <= set(mine.data_vars)
    for name in ("cell_area", "crs", "lat_bnds", "lon_clim", "lev_a"):
        assert np.array_equal(mine[name].values, ref[name].values), name


def test_overwrite_never_replaces_a_users_own_array_named_as_a_coordinate(
    tmp_path: Path, cli
) -> None:
    """A user's group holds a data variable ``cell_area`` of its own that nothing refers to;
    --overwrite of an input whose variable carries its ``cell_area`` (a cell measure) replaced
    the user's values with the input's, silently (helper-51). Refused in one line naming it,
    nothing touched; where the two are the same, written."""
    _described(tmp_path / "in.zarr", "air")
    out = tmp_path / "out.zarr"
    user = open_dataset(tmp_path / "in.zarr").load().drop_vars("air")
    user["mine"] = (("lat", "lon"), np.zeros((6, 4), "f4"))  # refers to nothing
    user["cell_area"] = user["cell_area"] * 0 + 99.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        user.to_zarr(str(out), zarr_format=3, mode="w", consolidated=True)
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump(config(tmp_path, input={"array": "air"})))
    before = file_states(out)
    rc, _, err = cli("run", str(cfg), "-q", "--overwrite")
    line = one_line_error(err)
    assert rc != 0 and "'cell_area'" in line and "did not write" in line, line
    assert file_states(out) == before
    zarr.open_array(str(out), path="cell_area", mode="r+")[...] = 2.0  # the input's values
    rc, _, err = cli("run", str(cfg), "-q", "--overwrite")
    assert rc == 0, err
    assert np.array_equal(open_dataset(out)["cell_area"].values, np.full((6, 4), 2.0))


def test_a_group_xarray_cannot_open_is_named_not_its_first_coordinate(tmp_path: Path) -> None:
    """An array without dimension names beside the variable: xarray opens no Dataset of the
    group, and the refusal blamed the first coordinate, a time, with cftime as the fix
    (helper-44). It names xarray's reason and the way out (the variable alone)."""
    write_dataset(tmp_path / "in.zarr", 3)
    zarr.open_group(str(tmp_path / "in.zarr"), mode="r+").create_array(
        "extra", shape=(3,), dtype="f4"
    )
    with pytest.raises(InputError) as info:
        pipeline.run(config(tmp_path))
    line = str(info.value)
    assert "dimension_names" in line and "cftime" not in line, line
    # both ways out: the array named again with its dimension names, or the variable alone
    assert info.value.fix == (
        "write it again with dimension names (zarr-python's dimension_names=, or xarray), or "
        "output.array: ''"
    )


def test_a_coordinate_xarray_cannot_decode_is_compared_as_stored(tmp_path: Path) -> None:
    """The user's group holds ``mine`` with a coordinate ``x`` whose time units xarray cannot
    decode: the comparison through xarray failed, was taken for "the same", and --overwrite
    relabelled ``mine`` with the input's ``x`` (helper-43). Compared as stored, it differs:
    refused, nothing touched."""
    write_dataset(tmp_path / "in.zarr", 3)
    out = tmp_path / "out.zarr"
    user = xr.Dataset(
        {"mine": (("y", "x"), np.ones((ROWS, COLS)))},
        coords={
            "x": ("x", np.arange(COLS) * 30, {"units": "days since the flood"}),
            "y": ("y", np.arange(ROWS) * 2.5, {"units": "km", "axis": "Y"}),
        },
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        user.to_zarr(str(out), zarr_format=3, mode="w", consolidated=True)
    before = file_states(out)
    with pytest.raises(OutputError) as info:
        pipeline.run(config(tmp_path), overwrite=True)
    assert (info.value.array, info.value.users) == ("x", ["mine"]), info.value
    assert file_states(out) == before


HALF_WRITTEN = """
import os, shutil, signal, sys
import pipeline
from pipeline.store import datasets

write = datasets._write


def metadata_then_kill(frame, dst_store, dst_group, **kwargs):
    # killed as the coordinates were written: lon's metadata there, none of its chunks
    write(frame, dst_store, dst_group, **kwargs)
    if "Memory" in type(dst_store).__name__:  # the plan's trial write (frame_failure)
        return
    shutil.rmtree(os.path.join(sys.argv[2], "lon", "c"))
    os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    datasets._write = metadata_then_kill
    pipeline.run(sys.argv[1], overwrite=True)
"""


def test_a_ctrl_c_while_one_variable_is_replaced_leaves_the_others_readable(
    tmp_path: Path,
) -> None:
    """A Ctrl-C while --overwrite deletes the old chunks of ``t2`` in a group that also holds
    ``t``: the group's metadata and coordinates had been deleted first, and xarray could not
    open the group, ``t`` orphaned (helper-44). They stay until the new ones are written in
    one step: xarray opens ``t`` with its coordinates meanwhile; --overwrite then finishes."""
    write_dataset(tmp_path / "in.zarr", 3)
    out = tmp_path / "out.zarr"
    assert pipeline.run(config(tmp_path)).status == "complete"
    cfg = tmp_path / "t2.yaml"
    cfg.write_text(yaml.safe_dump(config(tmp_path, output={"array": "t2"})))
    assert pipeline.run(cfg, overwrite=True).status == "complete"
    ref = open_dataset(out)
    (tmp_path / "script.py").write_text(
        ctrl_c_script("pipeline.store.arrays", "clear_array", overwrite=True)
    )
    proc = run_python([tmp_path / "script.py", cfg], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["state"] == "creating"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no consolidated copy meanwhile: xarray says so
        now = xr.open_zarr(str(out), consolidated=None)
    assert same_bits(now["t"].values, ref["t"].values)
    for name in ("lon", "x", "y"):
        assert now[name].identical(ref[name]), name
    # t is complete as its own metadata says: no consolidated copy says otherwise now
    # (helper-45: called incomplete, with no run record to resume from); its resume writes
    # the group's copy again, as the group is (helper-46c: verify fails t without it)
    done = pipeline.run(config(tmp_path), resume=True).status
    assert done == "complete (consolidated metadata written again)", done
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the copy read, no warning
        now = xr.open_zarr(str(out))
    assert same_bits(now["t"].values, ref["t"].values) and "t2" not in now
    assert pipeline.run(cfg, overwrite=True).status == "complete"
    got = open_dataset(out)
    assert same_bits(got["t2"].values, ref["t2"].values) and got["lon"].identical(ref["lon"])


def _has_consolidated(doc: Path) -> bool:
    """Whether the group metadata document ``doc`` (a v3 zarr.json) holds consolidated
    metadata."""
    return json.loads(doc.read_text()).get("consolidated_metadata") is not None


def test_a_ctrl_c_then_overwrite_keeps_the_groups_consolidated_metadata(tmp_path: Path) -> None:
    """F7: ``g/t`` made from a consolidated input, so ``g`` and the root have consolidated
    metadata; ``g/a`` written there again (--overwrite) from an unconsolidated input, stopped
    by a Ctrl-C while its old chunks go (the consolidated copies dropped by then), then
    --overwrite as the Ctrl-C line says: the rerun found no copies and made none, where an
    uninterrupted one keeps them. The run record says which groups had them."""
    write_dataset(tmp_path / "in.zarr", 3)
    copy_store(tmp_path / "in.zarr", tmp_path / "bare.zarr")
    doc = json.loads((tmp_path / "bare.zarr" / "zarr.json").read_text())
    del doc["consolidated_metadata"]  # the same Dataset, unconsolidated
    (tmp_path / "bare.zarr" / "zarr.json").write_text(json.dumps(doc))
    out = tmp_path / "out.zarr"
    assert pipeline.run(config(tmp_path, output={"array": "g/t"})).status == "complete"
    cfg = tmp_path / "a.yaml"
    bare = {"store": str(tmp_path / "bare.zarr")}
    cfg.write_text(yaml.safe_dump(config(tmp_path, input=bare, output={"array": "g/a"})))
    assert pipeline.run(cfg, overwrite=True).status == "complete"
    metadata = (out / "zarr.json", out / "g" / "zarr.json")
    assert all(_has_consolidated(m) for m in metadata)  # as an uninterrupted run keeps them
    (tmp_path / "script.py").write_text(
        ctrl_c_script("pipeline.store.arrays", "clear_array", overwrite=True)
    )
    proc = run_python([tmp_path / "script.py", cfg], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["state"] == "creating"
    assert not any(_has_consolidated(m) for m in metadata)  # dropped, as the stop left it
    assert pipeline.run(cfg, overwrite=True).status == "complete"
    assert all(_has_consolidated(m) for m in metadata)
    ds = _opens_without_warnings(out, "g")
    assert sorted(ds.data_vars) == ["a", "t"]


KILLED_AT_THE_FRAME = """
import os, signal, sys
import pipeline
from pipeline.store import datasets

write = datasets._write


def kill(frame, dst_store, dst_group, **kwargs):
    if "Memory" in type(dst_store).__name__:  # the plan's trial write (frame_failure)
        return write(frame, dst_store, dst_group, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)  # as xarray is about to write the frame


if __name__ == "__main__":
    datasets._write = kill
    pipeline.run(sys.argv[1], overwrite=True)
"""


def _coordinate_files(out: Path) -> dict[str, Any]:
    """The files of the coordinate arrays ``x``, ``y`` and ``lon`` of the group ``out``."""
    return {name: file_states(out / name) for name in ("x", "y", "lon")}


def test_the_users_coordinates_are_left_in_place_never_deleted_nor_written_again(
    tmp_path: Path,
) -> None:
    """A variable written into a user's Dataset whose coordinates equal the input's (found
    there, the user's): they are left as they are, byte for byte, never deleted and written
    again, and the Dataset opens with the new variable beside the user's, on them. A SIGKILL
    as the frame is written (after the arrays the frame replaces are deleted) had left the
    user's Dataset without its x, y and lon; now it loses none of them, and --overwrite then
    finishes."""
    write_dataset(tmp_path / "in.zarr", 3)
    out = tmp_path / "out.zarr"
    write_dataset(out, 3)  # the user's own Dataset: t, p and the coordinates x, y, lon
    users = open_dataset(out)
    before = _coordinate_files(out)
    cfg = tmp_path / "t2.yaml"
    cfg.write_text(yaml.safe_dump(config(tmp_path, output={"array": "t2"})))
    (tmp_path / "script.py").write_text(KILLED_AT_THE_FRAME)
    proc = run_python([tmp_path / "script.py", cfg], tmp_path)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert _coordinate_files(out) == before
    assert pipeline.run(cfg, overwrite=True).status == "complete"
    assert _coordinate_files(out) == before
    got = open_dataset(out)
    for name in ("x", "y", "lon"):
        assert got[name].identical(users[name]), name
    assert same_bits(got["t"].values, users["t"].values)
    ref = open_dataset(tmp_path / "in.zarr")
    assert got["t2"].dims == ref["t"].dims and "lon" in got["t2"].coords


def test_coordinates_a_kill_left_half_written_are_rewritten(tmp_path: Path) -> None:
    """A kill while --overwrite rewrote the coordinates of a group whose other variable uses
    them left them with metadata and no chunks (read as fill values): every later run, resume
    and overwrite was refused as relabelling that variable, a dead end (helper-43). The run
    record lists them as the stopped run's own: --overwrite writes them again, to the bit."""
    write_dataset(tmp_path / "in.zarr", 3)
    out = tmp_path / "out.zarr"
    cfg = tmp_path / "t.yaml"
    cfg.write_text(yaml.safe_dump(config(tmp_path)))
    assert pipeline.run(cfg).status == "complete"
    assert pipeline.run(config(tmp_path, output={"array": "t2"}), overwrite=True).status == (
        "complete"
    )
    ref = open_dataset(out)
    (tmp_path / "script.py").write_text(HALF_WRITTEN)
    proc = run_python([tmp_path / "script.py", cfg, out], tmp_path)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert (out / "lon" / "zarr.json").exists() and not (out / "lon" / "c").exists()
    assert pipeline.run(cfg, overwrite=True).status == "complete"
    got = open_dataset(out)
    for name in ("lon", "x", "y"):
        assert got[name].identical(ref[name]), name
    assert same_bits(got["t"].values, ref["t"].values)
    assert same_bits(got["t2"].values, ref["t2"].values)


def _users_group(tmp: Path) -> tuple[Path, np.ndarray]:
    """Inputs ``a.zarr`` and ``b.zarr`` (``air`` on lat, lon; b's longitudes others) and a
    user's group ``out.zarr`` holding ``mine`` on a's lat and lon; the user's ``lon``."""
    lat, lon = np.linspace(-80.0, 80.0, 6), np.arange(4.0)
    for name, shift in (("a", 0.0), ("b", 10.0)):
        xr.Dataset(
            {"air": (("lat", "lon"), np.arange(24.0).reshape(6, 4))},
            coords={"lat": ("lat", lat), "lon": ("lon", lon + shift)},
        ).chunk({"lat": 1}).to_zarr(str(tmp / f"{name}.zarr"), zarr_format=3, consolidated=True)
    xr.Dataset(
        {"mine": (("lat", "lon"), np.ones((6, 4)))},
        coords={"lat": ("lat", lat), "lon": ("lon", lon)},
    ).to_zarr(str(tmp / "out.zarr"), zarr_format=3, consolidated=True)
    return tmp / "out.zarr", lon


def _air(tmp: Path, source: str) -> Path:
    """The config of ``air`` from ``source`` into the user's group (one block a row)."""
    cfg = tmp / f"{source}.yaml"
    body = {
        "input": {"store": str(tmp / f"{source}.zarr"), "array": "air"},
        "output": {"store": str(tmp / "out.zarr"), "array": "air"},
        "chunking": {"block": [1, 4]},
        "stages": [{"op": "multiply", "factor": 2}],
        "backend": "cpu",
    }
    cfg.write_text(yaml.safe_dump(body))
    return cfg


def test_a_stopped_overwrite_from_another_input_does_not_relabel_the_users_variable(
    tmp_path: Path,
) -> None:
    """--overwrite of ``air`` into a user's group from a.zarr (the same lat and lon as the
    user's ``mine``) stopped by a Ctrl-C after its first block; then --overwrite from b.zarr,
    whose lon differs: the run record's coordinates were skipped as the stopped run's own,
    whatever input it had compared, and b's lon replaced the user's, relabelling ``mine``
    with exit 0 (F1). Refused in one line, the user's lon kept; from a.zarr it finishes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out, lon = _users_group(tmp_path)
    (tmp_path / "stop.py").write_text(ctrl_c_script("pipeline.store.ledger", "Ledger.mark", True))
    proc = run_python([tmp_path / "stop.py", _air(tmp_path, "a")], tmp_path)
    assert json.loads(proc.stdout.strip().splitlines()[-1])["state"] == "incomplete", proc.stderr
    before = file_states(out / "lon")
    with pytest.raises(OutputError) as info:
        pipeline.run(_air(tmp_path, "b"), overwrite=True)
    assert info.value.array == "lon" and info.value.users == ["mine"], info.value
    assert len(str(info.value).splitlines()) == 1
    assert file_states(out / "lon") == before
    assert pipeline.run(_air(tmp_path, "a"), overwrite=True).status == "complete"
    np.testing.assert_array_equal(open_dataset(out)["mine"]["lon"].values, lon)


def test_a_kill_after_the_coordinates_went_does_not_let_another_input_relabel(
    tmp_path: Path,
) -> None:
    """A kill while --overwrite from a.zarr wrote the coordinates of a user's group (lon's
    metadata there, none of its chunks): the output is absent, and a plain `run` from
    b.zarr, whose lon differs, skipped lon as the stopped run's own and wrote b's, under the
    user's ``mine`` (F1). Refused in one line; --overwrite from a.zarr writes it again."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out, lon = _users_group(tmp_path)
    (tmp_path / "script.py").write_text(HALF_WRITTEN)
    proc = run_python([tmp_path / "script.py", _air(tmp_path, "a"), out], tmp_path)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert not (out / "lon" / "c").exists()
    with pytest.raises(OutputError) as info:
        pipeline.run(_air(tmp_path, "b"))
    assert info.value.array == "lon" and info.value.users == ["mine"], info.value
    assert len(str(info.value).splitlines()) == 1
    assert not (out / "lon" / "c").exists()
    assert pipeline.run(_air(tmp_path, "a"), overwrite=True).status == "complete"
    np.testing.assert_array_equal(open_dataset(out)["mine"]["lon"].values, lon)


def test_an_output_named_as_the_users_cell_measure_is_refused(tmp_path: Path) -> None:
    """``output.array: cell_area`` in a user's group whose ``mine`` names its own
    ``cell_area`` through ``cell_measures: area: cell_area``: --overwrite replaced it with the
    computed values, exit 0, and ``mine``'s cell areas were the input's air, relabelled (F2:
    the check covered coordinates only). Refused in one line naming ``mine``, nothing
    changed; a name nothing refers to is written."""
    lat, lon = np.linspace(-80.0, 80.0, 6), np.arange(4.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        xr.Dataset(
            {"air": (("lat", "lon"), np.arange(24.0).reshape(6, 4))},
            coords={"lat": ("lat", lat), "lon": ("lon", lon)},
        ).to_zarr(str(tmp_path / "in.zarr"), zarr_format=3, consolidated=True)
        xr.Dataset(
            {
                "mine": (("lat", "lon"), np.ones((6, 4)), {"cell_measures": "area: cell_area"}),
                "cell_area": (("lat", "lon"), np.full((6, 4), 7.0)),
            },
            coords={"lat": ("lat", lat), "lon": ("lon", lon)},
        ).to_zarr(str(tmp_path / "out.zarr"), zarr_format=3, consolidated=True)
    out = tmp_path / "out.zarr"
    cfg = config(tmp_path, input={"array": "air"}, output={"array": "cell_area"})
    before = file_states(out)
    with pytest.raises(OutputError) as info:
        pipeline.run(cfg, overwrite=True)
    assert info.value.array == "cell_area" and info.value.users == ["mine"], info.value
    assert len(str(info.value).splitlines()) == 1
    assert file_states(out) == before
    cfg = config(tmp_path, input={"array": "air"}, output={"array": "air2"})
    assert pipeline.run(cfg, overwrite=True).status == "complete"
    assert (open_dataset(out)["cell_area"].values == 7.0).all()


def _a_users_cell_measure(path: Path, group: str = "") -> None:
    """A user's Dataset at ``group`` of ``path``: ``mine`` with ``cell_measures: area:
    cell_area`` and its own ``cell_area`` (7.0), which no run of the pipeline wrote."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        xr.Dataset(
            {
                "mine": (("row", "col"), np.ones((6, 4)), {"cell_measures": "area: cell_area"}),
                "cell_area": (("row", "col"), np.full((6, 4), 7.0)),
            },
            coords={"row": ("row", np.arange(6.0)), "col": ("col", np.arange(4.0))},
        ).to_zarr(str(path), group=group or None, zarr_format=3, consolidated=True)


@pytest.mark.parametrize(
    "store, array",
    [
        ("out.zarr/cell_area", ""),  # the output array at a store root, inside the group
        ("out.zarr/g/sub/cell_area", ""),  # the same, the group nested
        ("out.zarr", "g/sub/cell_area"),  # a variable of a nested group
        ("out.zarr/g", "sub/cell_area"),  # the same, from another store root
    ],
    ids=["store-root", "nested-store-root", "nested-group", "nested-group-from-its-parent"],
)
@pytest.mark.parametrize("dataset", [True, False], ids=["variable", "plain-array"])
def test_an_output_in_place_of_a_users_cell_measure_is_refused_in_every_layout(
    tmp_path: Path, store: str, array: str, dataset: bool
) -> None:
    """A user's ``cell_area``, which their ``mine`` names as its cell measure, replaced by
    the computed values with --overwrite, exit 0, wherever the output array was put there
    other than as a variable of its group: the store's root (``output.store:
    out.zarr/cell_area``, ``output.array: ''``), and for an input that is no Dataset variable
    (written alone into the group). Refused in one line naming ``mine``, nothing touched, in
    every layout; a name nothing refers to is written."""
    if dataset:  # a variable that names no cell_area itself (that is a ConfigError)
        write_dataset(tmp_path / "in.zarr", 3, rows=6, cols=8, chunks=(6, 8))
    else:  # naming its dimensions as the group's: one naming none would close the group to
        # xarray, refused as such (test_an_array_alone_that_would_close_a_dataset_group_...)
        x = np.arange(24.0).reshape(6, 4)
        make_array(tmp_path / "in.zarr", x, (6, 4), dimension_names=["row", "col"])
    out = tmp_path / "out.zarr"
    _a_users_cell_measure(out, "" if "g/sub" not in store + "/" + array else "g/sub")
    where = out / "g/sub" if "g/sub" in f"{store}/{array}" else out
    assert (where / "cell_area" / "zarr.json").exists()
    cfg = config(
        tmp_path,
        input={"array": "t" if dataset else ""},
        output={"store": str(tmp_path / store), "array": array},
    )
    e = _refused_as_relabelling(cfg, out, "cell_area", ["mine"])
    assert e.group == str(where).rstrip("/") or e.group.rstrip("/") == str(where), e.group
    free = {"store": str(tmp_path / store).replace("cell_area", "air2"), "array": array}
    free["array"] = array.replace("cell_area", "air2")
    done = pipeline.run(config(tmp_path, input=cfg["input"], output=free), overwrite=True)
    assert done.status == "complete"
    assert (zarr.open_array(str(where), path="cell_area", mode="r")[...] == 7.0).all()


@pytest.mark.parametrize("name", ["cell_area", "lat_bnds", "PS", "PTOP", "crs_ps", "lat_bb"])
@pytest.mark.parametrize("layout", ["root-group", "another-store", "nested-group"])
def test_an_output_array_named_as_what_the_input_variable_carries_is_refused(
    tmp_path: Path, name: str, layout: str
) -> None:
    """``output.array`` naming an array the input variable carries, directly (its cell
    measure, a coordinate's bounds) or through a carried array (a formula term, the
    formula term's grid mapping, bounds of bounds): refused in one line, before anything is
    written, whatever group or store the output variable is put in."""
    src = tmp_path / "in.zarr"
    _described_grid(src, 3)
    before = file_states(src)
    store = {"root-group": "out.zarr", "another-store": "x/o.zarr", "nested-group": "n.zarr"}
    path = f"a/b/{name}" if layout == "nested-group" else name
    cfg = config(tmp_path, input={"array": "ta"}, output={"store": str(tmp_path / store[layout])})
    cfg["output"]["array"] = path
    with pytest.raises(ConfigError) as info:
        pipeline.run(cfg)
    assert info.value.key == "output.array" and info.value.value == path
    assert f"coordinate {name!r}" in str(info.value)
    assert len(str(info.value).splitlines()) == 1
    assert not (tmp_path / store[layout]).exists()
    assert file_states(src) == before


def test_a_coordinate_the_groups_other_variables_use_is_kept(tmp_path: Path) -> None:
    """``t`` written again (--overwrite) from an input without the coordinate ``lon``, which
    the group's other variable ``t2`` refers to: ``lon`` had been deleted, as a coordinate
    this pipeline wrote for ``t`` (helper-42), and ``t2`` lost it silently. It stays, as it
    was, for ``t2``."""
    write_dataset(tmp_path / "in.zarr", 3)
    out = tmp_path / "out.zarr"
    assert pipeline.run(config(tmp_path)).status == "complete"
    t2 = pipeline.run(config(tmp_path, output={"array": "t2"}), overwrite=True)
    assert t2.status == "complete"
    lon = open_dataset(out)["lon"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bare = xr.open_zarr(str(tmp_path / "in.zarr")).drop_vars("lon")
        bare.to_zarr(str(tmp_path / "bare.zarr"), zarr_format=3, consolidated=True)
    assert (
        pipeline.run(
            config(tmp_path, input={"store": str(tmp_path / "bare.zarr")}), overwrite=True
        ).status
        == "complete"
    )
    ds = open_dataset(out)
    assert "lon" in ds["t2"].coords and ds["lon"].identical(lon)
    own = zarr.open_array(str(out), path="t").attrs.get("coordinates", "")
    assert "lon" not in own.split()  # t's own coordinates are the new input's


@pytest.mark.parametrize("flags", [(), ("--overwrite",)])
def test_a_group_of_both_zarr_formats_is_refused_and_its_v2_files_kept(
    tmp_path: Path, cli, flags: tuple[str, ...]
) -> None:
    """A v3 group (zarr.json, attribute ``title``) with the user's own v2 ``.zgroup`` and
    ``.zattrs`` beside it: a plain run of a Dataset output into ``o2.zarr/out`` had deleted
    both v2 files. Refused in one line naming the group, both formats' files and the fix,
    nothing written; with --overwrite too; a v2 .zattrs beside the output array's zarr.json
    is refused as a file beside the array (check_only_array_files), and kept."""
    write_dataset(tmp_path / "in.zarr", 3)
    out = tmp_path / "o2.zarr"
    zarr.open_group(str(out), mode="w", zarr_format=3).attrs["title"] = "mine"
    (out / ".zgroup").write_text(json.dumps({"zarr_format": 2}))
    (out / ".zattrs").write_text(json.dumps({"title": "mine, v2"}))
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump(config(tmp_path, output={"store": str(out), "array": "out"})))
    before = file_states(out)
    rc, _, err = cli("run", str(cfg), "-q", *flags)
    line = one_line_error(err)
    assert rc != 0 and f"{out} holds both" in line, line
    assert "zarr.json" in line and ".zgroup, .zattrs" in line and "remove one" in line, line
    assert file_states(out) == before
    (out / ".zgroup").unlink()
    (out / ".zattrs").unlink()
    rc, _, err = cli("run", str(cfg), "-q", *flags)
    assert rc == 0, err
    (out / "out" / ".zattrs").write_text(json.dumps({"units": "mine"}))  # at the array
    before = file_states(out)
    rc, _, err = cli("run", str(cfg), "-q", "--overwrite")
    line = one_line_error(err)
    assert rc != 0 and f"{out / 'out'} holds" in line and ".zattrs" in line, line
    assert file_states(out) == before


@pytest.mark.parametrize("resumed", [False, True])
def test_a_users_coordinate_found_in_the_group_is_never_claimed_nor_deleted(
    tmp_path: Path, resumed: bool
) -> None:
    """The user's own Dataset (a standalone coordinate ``lat``, a variable ``other`` on
    another dimension) receives ``t`` from an input with an identical ``lat``: the run had
    recorded ``lat`` as a coordinate it wrote, and a later --overwrite from an input without
    ``lat`` deleted the user's array. It stays the user's: unrecorded (a resumed run too),
    kept, its values as the user wrote them."""
    lat = np.linspace(-60.0, 60.0, 6)
    t = np.arange(24, dtype=np.float64).reshape(6, 4)
    out = tmp_path / "out.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        xr.Dataset({"lat": ("lat", lat), "other": ("y", np.arange(3.0))}).to_zarr(
            str(out), zarr_format=3, mode="w", consolidated=True
        )
        xr.Dataset({"t": (("lat", "x"), t)}, coords={"lat": lat}).to_zarr(
            str(tmp_path / "in1.zarr"), zarr_format=3, mode="w", consolidated=True
        )
        xr.Dataset({"t": (("lat", "x"), t)}).to_zarr(
            str(tmp_path / "in2.zarr"), zarr_format=3, mode="w", consolidated=True
        )
    mine = open_dataset(out)["lat"]
    first = config(tmp_path, input={"store": str(tmp_path / "in1.zarr")}, output={"array": "out"})
    if resumed:  # a real Ctrl-C as it marks its output complete, then resumed
        cfg = tmp_path / "first.yaml"
        cfg.write_text(yaml.safe_dump(first))
        stop = ctrl_c_script("pipeline.running.output", "mark_complete", overwrite=True)
        (tmp_path / "stop.py").write_text(stop)
        proc = run_python([tmp_path / "stop.py", cfg], tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout.strip().splitlines()[-1])["state"] is not None
        summary = pipeline.run(first, resume=True)
    else:
        summary = pipeline.run(first, overwrite=True)
    assert summary.status == "complete"
    record = record_of(zarr.open_array(str(out), path="out", mode="r").attrs)
    assert "lat" not in record["coordinates"], record
    made = open_dataset(out)["out"].values
    second = config(tmp_path, input={"store": str(tmp_path / "in2.zarr")}, output={"array": "out"})
    assert pipeline.run(second, overwrite=True).status == "complete"
    kept = open_dataset(out)
    assert kept["lat"].identical(mine) and same_bits(kept["out"].values, made)


def _users_group_stopped(tmp: Path) -> tuple[Path, Path]:
    """The input ``t`` (:func:`write_dataset`, v3), a user's group ``out.zarr`` holding their
    own array ``mine`` and attributes ``owner`` and ``title``, and ``t`` written into it
    (``--overwrite``) by a run stopped with a real Ctrl-C before its first block was marked:
    (the group, the config)."""
    write_dataset(tmp / "in.zarr", 3)
    out = tmp / "out.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        xr.Dataset(
            {"mine": (("z",), np.arange(5.0))}, attrs={"owner": "me", "title": "mine"}
        ).to_zarr(str(out), zarr_format=3, mode="w", consolidated=True)
    cfg = tmp / "run.yaml"
    cfg.write_text(yaml.safe_dump(config(tmp, output={"array": "t"})))
    (tmp / "stop.py").write_text(ctrl_c_script("pipeline.store.ledger", "Ledger.mark", True))
    proc = run_python([tmp / "stop.py", cfg], tmp)
    assert json.loads(proc.stdout.strip().splitlines()[-1])["state"] == "incomplete", proc.stderr
    return out, cfg


def _names_the_users(record: dict[str, Any]) -> None:
    """Edit a run's record as a hand or another tool might: the user's ``mine`` among the
    coordinates the run wrote, the user's ``owner`` among the group attributes it carried."""
    record["coordinates"] = [*record.get("coordinates", []), "mine"]
    record["group_attributes"] = {**record.get("group_attributes", {}), "owner": "me"}


def _the_users_kept(out: Path) -> None:
    """The user's ``mine`` and group attributes are as they wrote them."""
    group = zarr.open_group(str(out), mode="r")
    assert group.attrs["owner"] == "me" and group.attrs["title"] == "mine", dict(group.attrs)
    np.testing.assert_array_equal(group["mine"][:], np.arange(5.0))


def _t_as_made(out: Path, src: Path) -> None:
    """``t`` of the group ``out`` as xarray opens it: NumPy's chain over the input's values,
    to the bit, on the input's coordinates."""
    a, b = open_dataset(src)["t"], open_dataset(out)["t"]
    chain = plan_chain(parse_config(config(src.parent)).stage_specs(), a.dtype)
    with np.errstate(all="ignore"):
        assert same_bits(b.values, apply_chain(chain, a.values))
    for name in ("y", "x", "lon"):
        assert b[name].identical(a[name]), name


def _as_an_earlier_release_wrote(out: Path, later: int = 0) -> None:
    """The records of the run stopped in ``out/t`` as 3b41ad4 (the release before the
    records' ``check``) wrote them: the same fields, with no ``check``; the output's
    ``started``, which that release took from the clock again as it made the output array,
    ``later`` seconds after the run record's (1: a second began between the two, as it
    did now and then: h60c)."""
    path = out / "t" / ".pipeline" / "run.json"
    run_record = json.loads(path.read_text())
    del run_record["check"]
    path.write_text(json.dumps(run_record, indent=1))
    arr = zarr.open_array(str(out), path="t", mode="r+")
    record = record_of(arr.attrs)
    del record["check"]
    started = dt.datetime.fromisoformat(run_record["started"]) + dt.timedelta(seconds=later)
    record["started"] = started.isoformat(timespec="seconds")
    arr.update_attributes({"pipeline": json.dumps(record)})


@pytest.mark.parametrize(
    ("release", "edited"),
    [
        ("today", "pipeline attribute"),
        ("earlier", "pipeline attribute"),
        ("earlier", "run record"),
    ],
)
def test_an_edit_of_a_stopped_outputs_records_is_not_kept_by_its_resume(
    tmp_path: Path, cli, release: str, edited: str
) -> None:
    """A Dataset output stopped in the user's group, one of its records edited to name the
    user's ``mine`` (among its coordinates) and ``owner`` (among its group attributes), then
    ``run --resume``: the resume took the edit into the complete record, with a new check,
    verify passed, and the next ``run --overwrite`` deleted ``mine`` and ``owner``. h57a:
    records of today's release, whose run record the resume checks, the resume keeping what
    it says the run wrote; h58b: records of an earlier release (3b41ad4), which have no
    ``check``, the resume keeping only what both records say the run wrote (an edit of the
    run record alone guards that the agreement picks up no edit of it instead)."""
    out, cfg = _users_group_stopped(tmp_path)
    if release == "earlier":
        _as_an_earlier_release_wrote(out)
    if edited == "pipeline attribute":
        arr = zarr.open_array(str(out), path="t", mode="r+")
        record = record_of(arr.attrs)
        _names_the_users(record)
        arr.update_attributes({"pipeline": json.dumps(record)})
    else:
        _edit_run_record(out)
    rc, _, err = cli("run", cfg, "--resume", "--progress", "none")
    assert rc == 0, err
    done = record_of(zarr.open_array(str(out), path="t", mode="r").attrs)
    assert done["status"] == "complete"
    assert sorted(done["coordinates"]) == ["lon", "x", "y"], done
    assert "owner" not in done["group_attributes"], done
    rc, text, err = cli("verify", "--all", cfg)
    assert rc == 0, text + err
    rc, _, err = cli("run", cfg, "--overwrite", "--progress", "none")
    assert rc == 0, err
    _the_users_kept(out)
    _t_as_made(out, tmp_path / "in.zarr")


@pytest.mark.parametrize(
    ("edited", "later"),
    [
        pytest.param(edited, later, id=edited + (", started a second apart" if later else ""))
        for later in (0, 1)
        for edited in ("pipeline attribute", "run record")
    ],
)
def test_a_fresh_start_refuses_an_earlier_releases_records_that_disagree(
    tmp_path: Path, cli, edited: str, later: int
) -> None:
    """h58b: a Dataset output an earlier release (3b41ad4) stopped in the user's group, one
    of its records (no ``check``) edited to name the user's ``mine`` and ``owner``:
    ``run --overwrite`` took it and deleted both (exit 0). The two records of one run say
    the same where unedited: where they do not, the start is refused in one line naming
    them and the fix, nothing written; once ``t`` is removed, it is written, the user's
    kept. h60c: also where that release's output record says the run started a second
    after its run record does (it read the clock for each; taken for two runs' records,
    they had not been compared, and the edit was taken: a fresh clone's run failed this
    test now and then, as a second began between the two)."""
    out, cfg = _users_group_stopped(tmp_path)
    _as_an_earlier_release_wrote(out, later)
    if edited == "pipeline attribute":
        arr = zarr.open_array(str(out), path="t", mode="r+")
        record = record_of(arr.attrs)
        _names_the_users(record)
        arr.update_attributes({"pipeline": json.dumps(record)})
    else:
        _edit_run_record(out)
    before = file_states(out)
    rc, _, err = cli("run", cfg, "--overwrite", "--progress", "none")
    assert rc == 1, err
    line = one_line_error(err)
    e = refused("run", cfg, "--overwrite", "--progress", "none")
    assert isinstance(e, OutputError) and e.changed == ["record"], e
    assert "as an earlier release wrote them (with no `check`), do not say the same" in line
    assert f"remove {out / 't'} yourself, after which `run --overwrite` writes it" in line
    assert file_states(out) == before
    shutil.rmtree(out / "t")
    rc, _, err = cli("run", cfg, "--overwrite", "--progress", "none")
    assert rc == 0, err
    _the_users_kept(out)
    _t_as_made(out, tmp_path / "in.zarr")


def _edit_output_record(out: Path) -> None:
    """The complete output's record edited, and its group consolidated again, as a tool
    writing attributes with xarray or zarr-python's consolidation leaves it."""
    arr = zarr.open_array(str(out), path="t", mode="r+")
    record = record_of(arr.attrs)
    _names_the_users(record)
    arr.update_attributes({"pipeline": json.dumps(record)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(str(out))


def _edit_run_record(out: Path) -> None:
    """The stopped run's run record edited."""
    path = out / "t" / ".pipeline" / "run.json"
    record = json.loads(path.read_text())
    _names_the_users(record)
    path.write_text(json.dumps(record))


@pytest.mark.parametrize("edited", ["pipeline attribute", "run record"])
def test_a_fresh_start_takes_nothing_from_an_edited_record(
    tmp_path: Path, cli, edited: str
) -> None:
    """h57a: the record of the run that wrote ``t`` into a user's group (the complete
    output's ``pipeline`` attribute, or a stopped run's run record) edited to name the
    user's ``mine`` among the coordinates it wrote and their ``owner`` among the group
    attributes it carried: ``run --overwrite`` took it, deleting ``mine`` and ``owner``
    (exit 0), and verify passed the complete output. Refused in one line naming the record
    and the fix, nothing written; verify fails the complete one; once ``t`` is removed, as
    the line says, ``run --overwrite`` writes it, the user's kept."""
    out, cfg = _users_group_stopped(tmp_path)
    if edited == "pipeline attribute":
        rc, _, err = cli("run", cfg, "--resume", "--progress", "none")
        assert rc == 0, err
        _edit_output_record(out)
        rc, text, err = cli("verify", "--all", cfg)
        assert rc == 1, text + err
        assert re.search(r"output status\s+complete", text), text
        line = one_line_error(err)
        assert "(its `pipeline` attribute) was edited since the run (its fields are" in line
    else:
        _edit_run_record(out)
    before = file_states(out)
    for flags in (("--overwrite",), ("--resume",), ()):
        rc, _, err = cli("run", cfg, *flags, "--progress", "none")
        assert rc == 1, err
        line = one_line_error(err)
        e = refused("run", cfg, *flags, "--progress", "none")
        assert isinstance(e, OutputError) and e.changed == ["record"], e
        what = "its run record (.pipeline/run.json" if edited == "run record" else "(its `pipeline`"
        assert what in line and "was edited since" in line, line
        assert f"remove {out / 't'} yourself, after which `run --overwrite` writes it" in line
        assert file_states(out) == before
    shutil.rmtree(out / "t")
    rc, _, err = cli("run", cfg, "--overwrite", "--progress", "none")
    assert rc == 0, err
    _the_users_kept(out)
    _t_as_made(out, tmp_path / "in.zarr")
    rc, text, err = cli("verify", "--all", cfg)
    assert rc == 0, text + err


def test_a_fresh_start_after_a_stop_refuses_an_edited_record_of_consolidated_copies(
    tmp_path: Path,
) -> None:
    """h57a: ``t`` written from an input without consolidated metadata into a user's group
    that has some (which the run drops, then writes again), stopped by a Ctrl-C while the
    old chunks go, the copy dropped by then; the run record's ``consolidated`` (the groups
    whose copies that run dropped) edited to none: ``--overwrite`` took it and left the
    group without its copy (exit 0), which an uninterrupted run keeps (F7). Refused in one
    line; with the record as the run wrote it, ``--overwrite`` writes the copy again."""
    write_dataset(tmp_path / "in.zarr", 3)
    doc = json.loads((tmp_path / "in.zarr" / "zarr.json").read_text())
    del doc["consolidated_metadata"]  # the same Dataset, unconsolidated
    (tmp_path / "in.zarr" / "zarr.json").write_text(json.dumps(doc))
    out = tmp_path / "out.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        xr.Dataset({"mine": (("z",), np.arange(5.0))}).to_zarr(
            str(out), zarr_format=3, mode="w", consolidated=True
        )
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump(config(tmp_path, output={"array": "t"})))
    assert pipeline.run(cfg, overwrite=True).status == "complete"
    assert _has_consolidated(out / "zarr.json")
    (tmp_path / "stop.py").write_text(
        ctrl_c_script("pipeline.store.arrays", "clear_array", overwrite=True)
    )
    proc = run_python([tmp_path / "stop.py", cfg], tmp_path)
    assert json.loads(proc.stdout.strip().splitlines()[-1])["state"] == "creating", proc.stderr
    assert not _has_consolidated(out / "zarr.json")  # dropped, as the stop left it
    path = out / "t" / ".pipeline" / "run.json"
    written = path.read_text()
    path.write_text(json.dumps({**json.loads(written), "consolidated": []}))
    before = file_states(out)
    with pytest.raises(OutputError) as info:
        pipeline.run(cfg, overwrite=True)
    line = str(info.value)
    assert len(line.splitlines()) == 1 and info.value.changed == ["record"], line
    assert "its run record (.pipeline/run.json, of a stopped run) was edited since" in line
    assert file_states(out) == before
    path.write_text(written)  # restored, as the line says
    assert pipeline.run(cfg, overwrite=True).status == "complete"
    assert _has_consolidated(out / "zarr.json")


def test_a_users_file_in_a_replaced_coordinates_folder_is_never_deleted(tmp_path: Path) -> None:
    """A file of a user's in the chunk folder of a coordinate that --overwrite replaces
    (helper-41's kind, for the coordinates): refused in one line naming it, nothing deleted;
    once it is moved out, the Dataset is written again."""
    write_dataset(tmp_path / "in.zarr", 3)
    out = tmp_path / "out.zarr"
    assert pipeline.run(config(tmp_path)).status == "complete"
    (out / "lon" / "c" / "notes.txt").write_text("mine")
    before = file_states(out)
    with pytest.raises(OutputError) as info:
        pipeline.run(config(tmp_path), overwrite=True)
    assert info.value.array == "lon" and info.value.stray == ["c/notes.txt"], info.value
    assert len(str(info.value).splitlines()) == 1
    assert file_states(out) == before
    (out / "lon" / "c" / "notes.txt").unlink()
    assert pipeline.run(config(tmp_path), overwrite=True).status == "complete"


@pytest.mark.parametrize("where", ["", "results"])
def test_an_array_written_alone_into_a_consolidated_group_keeps_it_current(
    tmp_path: Path, where: str
) -> None:
    """An output that is no Dataset variable (its input a plain array), replaced in a group
    whose consolidated metadata lists it: xarray opens the group with the new array's shape
    and values, not the old ones the consolidated copy had kept. Its input names its
    dimensions: one naming none would close the group to xarray, and is refused
    (test_an_array_alone_that_would_close_a_dataset_group_to_xarray_is_refused)."""
    out = tmp_path / "out.zarr"
    other = xr.Dataset({"q": ("z", np.arange(3.0))})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        other.to_zarr(str(out), group=where or None, zarr_format=3, consolidated=True)
    path = f"{where}/v" if where else "v"
    for rows in (6, 9):  # a first output, listed in the consolidated metadata; then replaced
        x = np.arange(rows * 4, dtype=np.float32).reshape(rows, 4)
        make_array(tmp_path / "in.zarr", x, (3, 4), dimension_names=["r", "c"])
        cfg = {
            "input": {"store": str(tmp_path / "in.zarr")},
            "output": {"store": str(out), "array": path},
            "stages": STAGES,
            "backend": "cpu",
        }
        pipeline.run(cfg, overwrite=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # read as a reader of the group reads it: through its consolidated metadata
            root = zarr.open_group(str(out), mode="r")
            assert root.metadata.consolidated_metadata is not None
            got = root[path][...]
            assert same_bits(open_dataset(out, where or None)["v"].values, got)
            if rows == 6:
                zarr.consolidate_metadata(str(out))  # as a user, or another tool, would
        want = apply_chain(plan_chain(parse_config(cfg).stage_specs(), x.dtype), x)
        assert same_bits(got, want), (got.shape, want.shape)


@pytest.mark.parametrize(
    ("place", "member", "zarr_format"),
    # a v2 store is no place for the pipeline's v3 arrays (refused as such); an enclosing
    # v2 group is, and its .zmetadata is written again at the end like a v3 copy
    [(p, m, f) for f in (3, 2) for p in ("store", "enclosing")[3 - f :] for m in ("r", ".r")],
)
def test_a_run_that_could_not_consolidate_again_keeps_the_copy_and_writes_nothing(
    tmp_path: Path, place: str, member: str, zarr_format: int
) -> None:
    """A consolidated group holding a member whose metadata zarr-python cannot read (its
    zarr.json cut short): a run writing a new variable into the store (``place`` 'store':
    ``out.zarr``, array ``new/t``) or into a store it encloses ('enclosing':
    ``out.zarr/sub``) consolidates it again at its end, which reads every member. It had
    dropped the user's copy, then failed at its end with the member's bare JSONDecodeError:
    the copy was lost for good, and a new group was left behind. It is refused before
    anything is written, in a line naming the member; the store is as it was, copy and all.
    The member is named ``r`` or ``.r`` (a variable to xarray like any other; a leading
    '.' had kept it out of the check), in Zarr v3 (zarr.json) and v2 (.zarray, with
    .zmetadata)."""
    outer = tmp_path / "out.zarr"
    users = xr.Dataset({"q": ("z", np.arange(3.0)), member: ("z", np.ones(3))})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        users.to_zarr(str(outer), zarr_format=zarr_format, consolidated=True)
    document = "zarr.json" if zarr_format == 3 else ".zarray"
    (outer / member / document).write_text('{"zarr_format": 3, "node_type": "array", "sh')
    write_dataset(tmp_path / "in.zarr", 3)
    output = (
        {"store": str(outer), "array": "new/t"}
        if place == "store"
        else {"store": str(outer / "sub"), "array": "t"}
    )
    cfg = config(tmp_path, output=output)
    before = file_states(outer)
    with pytest.raises(OutputError) as refusal:
        pipeline.run(cfg)
    line = str(refusal.value)
    assert (
        f"{outer}/{member} holds Zarr metadata that zarr-python cannot read (JSONDecodeError"
        in line
    )
    assert refusal.value.member == f"{outer}/{member}"
    assert file_states(outer) == before
    if zarr_format == 3:
        assert consolidated(outer) is not None
    else:
        assert (outer / ".zmetadata").is_file()


@pytest.mark.parametrize("place", ["store", "enclosing"])
def test_a_resume_that_could_not_consolidate_again_is_refused_before_its_blocks(
    tmp_path: Path, place: str
) -> None:
    """The same consolidated group (v3), a run into it stopped by a Ctrl-C after its first
    block (its copy of the members' metadata to be written again at the end), then the member
    ``r`` damaged (zarr.json cut short) before ``--resume``. The resume computed every missing
    block, then failed at its end with the member's bare JSONDecodeError. It is refused before
    any block, in the line of a fresh start naming the member, with nothing changed; once the
    member is mended, the resume finishes, the group consolidated."""
    outer = tmp_path / "out.zarr"
    users = xr.Dataset({"q": ("z", np.arange(3.0)), "r": ("z", np.ones(3))})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        users.to_zarr(str(outer), zarr_format=3, consolidated=True)
    write_dataset(tmp_path / "in.zarr", 3)
    output = (
        {"store": str(outer), "array": "new/t"}
        if place == "store"
        else {"store": str(outer / "sub"), "array": "t"}
    )
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump(config(tmp_path, output=output)))
    (tmp_path / "stop.py").write_text(ctrl_c_script("pipeline.store.ledger", "Ledger.mark", False))
    proc = run_python([tmp_path / "stop.py", cfg], tmp_path)
    assert json.loads(proc.stdout.strip().splitlines()[-1])["state"] == "incomplete", proc.stderr
    document = outer / "r" / "zarr.json"
    whole = document.read_bytes()
    document.write_bytes(whole[: len(whole) // 2])
    before = file_states(outer)
    with pytest.raises(OutputError) as refusal:
        pipeline.run(cfg, resume=True)
    line = str(refusal.value)
    assert len(line.splitlines()) == 1
    assert f"{outer}/r holds Zarr metadata that zarr-python cannot read (JSONDecodeError" in line
    assert refusal.value.member == f"{outer}/r"
    assert file_states(outer) == before
    document.write_bytes(whole)
    assert pipeline.run(cfg, resume=True).status == "complete"
    assert consolidated(outer) is not None
    ds = _opens_without_warnings(outer, "new" if place == "store" else "sub")
    assert sorted(ds.data_vars) == ["t"]
    assert sorted(_opens_without_warnings(outer, "").data_vars) == ["q", "r"]


@pytest.mark.parametrize("member", ["b", ".b"])
def test_a_group_member_with_damaged_metadata_is_named_and_kept(
    tmp_path: Path, member: str
) -> None:
    """A Dataset variable written into a user's Zarr group (zarr-python's) that holds a
    member whose zarr.json is cut short (named ``b``, or ``.b``, which zarr-python and xarray
    read as a member like any other): refused in one line naming that member, with and
    without --overwrite, and nothing changed. The line had called the group "a directory
    that holds other files (a, b), not a Zarr array or group", which it is not."""
    write_dataset(tmp_path / "in.zarr", 3)
    out = tmp_path / "out.zarr"
    group = zarr.open_group(str(out), mode="w")
    for name in ("a", member):
        group.create_array(name, shape=(4,), dtype="f4")[...] = 1
    (out / member / "zarr.json").write_bytes(b'{"zarr_format": 3, "node_type": "arr')
    before = file_states(out)
    for overwrite in (False, True):
        with pytest.raises(OutputError) as refusal:
            pipeline.run(config(tmp_path), overwrite=overwrite)
        line = str(refusal.value)
        assert len(line.splitlines()) == 1
        assert f"{out} holds {out}/{member}, a Zarr node whose metadata is not readable" in line
        assert refusal.value.member == f"{out}/{member}"
    assert file_states(out) == before


def test_every_group_member_with_damaged_metadata_is_named(tmp_path: Path) -> None:
    """h85b: a user's Zarr group holding two members whose zarr.json is cut short (``b``
    and ``c``): the refusal named the first alone, and mending it met the next refusal.
    Both are named, in one line, nothing changed."""
    write_dataset(tmp_path / "in.zarr", 3)
    out = tmp_path / "out.zarr"
    group = zarr.open_group(str(out), mode="w")
    for name in ("a", "b", "c"):
        group.create_array(name, shape=(4,), dtype="f4")[...] = 1
    for name in ("b", "c"):
        (out / name / "zarr.json").write_bytes(b'{"zarr_format": 3, "node_type": "arr')
    before = file_states(out)
    with pytest.raises(OutputError) as refusal:
        pipeline.run(config(tmp_path), overwrite=True)
    line = str(refusal.value)
    assert len(line.splitlines()) == 1
    assert f"{out} holds {out}/b, {out}/c, Zarr nodes whose metadata are not readable" in line
    assert refusal.value.members == [f"{out}/b", f"{out}/c"]
    assert file_states(out) == before


def test_an_output_group_of_other_arrays_is_written_into_only_with_overwrite(
    tmp_path: Path, backend_client: tuple[str, Any]
) -> None:
    backend, client = backend_client
    write_dataset(tmp_path / "in.zarr", 3)
    other = xr.Dataset({"q": (("y", "x"), np.ones((ROWS, COLS)), {"units": "1"})})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        other.to_zarr(str(tmp_path / "out.zarr"), zarr_format=3, mode="w")
    before = file_states(tmp_path / "out.zarr")
    with pytest.raises(OutputError) as info:
        pipeline.run(config(tmp_path, backend), client=client)
    assert info.value.output == str(tmp_path / "out.zarr" / "t")
    assert file_states(tmp_path / "out.zarr") == before
    pipeline.run(config(tmp_path, backend), client=client, overwrite=True)
    ds = open_dataset(tmp_path / "out.zarr")
    assert sorted(ds.data_vars) == ["q", "t"]
    assert np.array_equal(ds["q"].values, np.ones((ROWS, COLS)))
    assert ds.attrs == open_dataset(tmp_path / "in.zarr").attrs


def _cf_dataset(path: Path) -> None:
    """A CF Dataset as xarray writes it: ``tas`` (time, lat, lon) whose ``time`` and ``lat``
    have cell bounds (``time_bnds``, ``lat_bnds``), with ``cell_measures``, ``grid_mapping``
    and ``ancillary_variables`` naming variables of the group; written to ``path``."""
    import pandas as pd

    time = pd.date_range("2024-01-01", periods=6, freq="D")
    lat = np.arange(4.0) + 0.5
    ds = xr.Dataset(
        {
            "tas": (
                ("time", "lat", "lon"),
                np.random.default_rng(3).uniform(250, 300, (6, 4, 5)),
                {
                    "units": "K",
                    "cell_measures": "area: cell_area",
                    "grid_mapping": "crs",
                    "ancillary_variables": "tas_err",
                },
            ),
            "tas_err": (("time", "lat", "lon"), np.full((6, 4, 5), 0.5)),
            "cell_area": (("lat", "lon"), np.full((4, 5), 2.0), {"units": "m2"}),
            "crs": ((), 0, {"grid_mapping_name": "latitude_longitude"}),
            "time_bnds": (("time", "nv"), np.stack([time, time + pd.Timedelta("1D")], axis=1)),
            "lat_bnds": (("lat", "nv"), np.stack([lat - 0.5, lat + 0.5], axis=1)),
        },
        coords={
            "time": ("time", time, {"bounds": "time_bnds"}),
            "lat": ("lat", lat, {"bounds": "lat_bnds", "units": "degrees_north"}),
            "lon": ("lon", np.arange(5.0), {"units": "degrees_east"}),
        },
        attrs={"Conventions": "CF-1.8"},
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(str(path), zarr_format=3, mode="w")


def _dangling(ds: Any) -> list[tuple[str, str, str]]:
    """(variable, attribute, name) for every CF reference in ``ds`` to a variable it lacks."""
    found = []
    for v, var in ds.variables.items():
        for key in ("bounds", "cell_measures", "grid_mapping", "ancillary_variables"):
            words = str(var.attrs.get(key, "")).split()
            names = [w for w in words if not w.endswith(":")]
            found += [(str(v), key, n) for n in names if n not in ds.variables]
    return found


def test_cf_bounds_cell_measures_and_grid_mapping_are_carried(tmp_path: Path, cli) -> None:
    """The output named variables it did not hold: ``time``'s ``bounds: time_bnds``, the
    variable's ``cell_measures``, ``grid_mapping`` and ``ancillary_variables``. The variables
    that describe the grid (bounds, cell measures, grid mapping) are carried beside the
    coordinates, as xarray reads them; ``ancillary_variables`` (the input values' errors or
    flags, which do not describe the computed ones) is left out. An output written alone
    names none of them."""
    _cf_dataset(tmp_path / "in.zarr")
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump({**config(tmp_path, input={"array": "tas"}), "stages": STAGES}))
    rc, out, err = cli("run", str(cfg))
    assert rc == 0, err
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = xr.open_zarr(str(tmp_path / "out.zarr"), decode_coords="all").load()
        src = xr.open_zarr(str(tmp_path / "in.zarr"), decode_coords="all").load()
    assert _dangling(open_dataset(tmp_path / "out.zarr")) == []
    assert _dangling(got) == []  # bounds stay attributes (cell measures, grid mapping: encoding)
    for name in ("time_bnds", "lat_bnds", "cell_area", "crs"):
        assert got[name].identical(src[name]), name
    stored = dict(zarr.open_array(str(tmp_path / "out.zarr"), path="tas", mode="r").attrs)
    assert "tas_err" not in got.variables and "ancillary_variables" not in stored
    assert (stored["cell_measures"], stored["grid_mapping"]) == ("area: cell_area", "crs")
    rc, out, err = cli("verify", str(cfg))
    assert rc == 0, out + err

    alone = tmp_path / "alone.yaml"
    alone.write_text(
        yaml.safe_dump(
            {
                **config(
                    tmp_path,
                    input={"array": "tas"},
                    output={"store": str(tmp_path / "alone.zarr"), "array": ""},
                ),
                "stages": STAGES,
            }
        )
    )
    rc, out, err = cli("run", str(alone))
    assert rc == 0, err
    attrs = zarr.open_array(str(tmp_path / "alone.zarr"), mode="r").attrs
    assert not {"cell_measures", "grid_mapping", "ancillary_variables"} & set(attrs)


def test_the_coordinates_a_grid_mapping_names_are_carried(tmp_path: Path, cli) -> None:
    """``grid_mapping: "crs: xc yc"`` (CF's long form) naming auxiliary coordinates that no
    ``coordinates`` attribute names: only ``crs`` was carried, and the output's variable
    named ``xc`` and ``yc``, which it did not hold. They are carried, as the references are
    read where a run refuses to relabel (one parser)."""
    xy = np.arange(12.0).reshape(3, 4)
    ds = xr.Dataset(
        {
            "t": (("y", "x"), np.ones((3, 4)), {"grid_mapping": "crs: xc yc"}),
            "crs": ((), 0, {"grid_mapping_name": "lambert_conformal_conic"}),
            "xc": (("y", "x"), xy, {"standard_name": "projection_x_coordinate"}),
            "yc": (("y", "x"), -xy, {"standard_name": "projection_y_coordinate"}),
        }
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(str(tmp_path / "in.zarr"), zarr_format=3, mode="w", consolidated=True)
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump(config(tmp_path)))
    rc, _, err = cli("run", str(cfg), "-q")
    assert rc == 0, err
    got = open_dataset(tmp_path / "out.zarr")
    assert got["t"].attrs["grid_mapping"] == "crs: xc yc"
    for name in ("crs", "xc", "yc"):
        assert np.array_equal(got[name].values, ds[name].values), name


def _projected(grid_mapping: str) -> Any:
    """A Dataset on a projected grid: ``t(time, y, x)`` with ``grid_mapping`` (``crs`` or the
    long form ``crs: x y``), a scalar int ``crs`` with CF grid-mapping attributes, ``x`` and
    ``y`` with ``bounds``."""
    x, y = np.arange(5) * 1000.0, np.arange(4) * -1000.0
    crs = {
        "grid_mapping_name": "lambert_conformal_conic",
        "standard_parallel": [25.0, 25.0],
        "longitude_of_central_meridian": 265.0,
        "crs_wkt": 'PROJCS["LCC"]',
    }
    return xr.Dataset(
        {
            "t": (
                ("time", "y", "x"),
                np.random.default_rng(5).uniform(250, 300, (3, 4, 5)),
                {"units": "K", "grid_mapping": grid_mapping},
            ),
            "crs": ((), np.int32(0), crs),
            "x_bnds": (("x", "nv"), np.stack([x - 500, x + 500], 1)),
            "y_bnds": (("y", "nv"), np.stack([y - 500, y + 500], 1)),
        },
        coords={
            "time": ("time", np.arange(3.0), {"units": "days since 2000-01-01"}),
            "y": ("y", y, {"bounds": "y_bnds", "standard_name": "projection_y_coordinate"}),
            "x": ("x", x, {"bounds": "x_bnds", "standard_name": "projection_x_coordinate"}),
        },
        attrs={"Conventions": "CF-1.8"},
    )


def _by_zarr_python(ds: Any, path: Path, zarr_format: int) -> None:
    """``ds`` written by zarr-python itself, no xarray: each variable an array with its
    dimension names (v3 ``dimension_names``, none for the scalar; v2 ``_ARRAY_DIMENSIONS``)
    and its attributes, no fill value a reader would mask with; not consolidated."""
    g = zarr.open_group(str(path), mode="w", zarr_format=zarr_format)
    g.attrs.update(ds.attrs)
    for name, v in ds.variables.items():
        shape = dict(name=str(name), shape=v.shape, dtype=v.dtype, chunks=v.shape)
        if zarr_format == 3:
            a = g.create_array(**shape, dimension_names=v.dims or None, fill_value=0)
            a.attrs.update(v.attrs)
        else:
            a = g.create_array(**shape, fill_value=None)
            a.attrs.update({**v.attrs, "_ARRAY_DIMENSIONS": list(v.dims)})
        a[...] = v.values


@pytest.mark.parametrize(
    "writer, zarr_format, grid_mapping",
    [
        ("decode_coords_all", 2, "crs: x y"),
        ("decode_coords_all", 3, "crs"),
        ("zarr_python", 2, "crs"),
        ("zarr_python", 3, "crs: x y"),
    ],
)
def test_a_grid_mapping_comes_through_from_every_writer(
    tmp_path: Path, cli, writer: str, zarr_format: int, grid_mapping: str
) -> None:
    """A review said that a grid mapping read with ``decode_coords="all"`` was not carried.
    Written as xarray writes a Dataset it opened with ``decode_coords="all"`` (``crs`` a
    coordinate, ``grid_mapping`` and ``bounds`` in the encodings, written back its own way;
    consolidated), or by zarr-python directly (not consolidated), in either form of
    ``grid_mapping``, Zarr v2 and v3: ``xr.open_zarr(out, decode_coords="all")`` gives the
    variable the same ``grid_mapping`` and coordinates as the input, and ``crs`` (and the
    bounds) the input's values to the bit, dtype and attributes; ``verify`` passes."""
    src, out = tmp_path / "in.zarr", tmp_path / "out.zarr"
    ds = _projected(grid_mapping)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if writer == "zarr_python":
            _by_zarr_python(ds, src, zarr_format)
        else:
            ds.to_zarr(str(tmp_path / "first.zarr"), zarr_format=zarr_format, consolidated=True)
            opened = xr.open_zarr(str(tmp_path / "first.zarr"), decode_coords="all").load()
            assert "crs" in opened.coords and "grid_mapping" in opened["t"].encoding
            opened.to_zarr(str(src), zarr_format=zarr_format, consolidated=True)
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump(config(tmp_path)))
    rc, text, err = cli("run", str(cfg), "-q")
    assert rc == 0, err
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = xr.open_zarr(str(src), decode_coords="all").load()
        got = xr.open_zarr(str(out), decode_coords="all").load()
    assert got["t"].encoding["grid_mapping"] == want["t"].encoding["grid_mapping"] == grid_mapping
    assert set(got["t"].coords) == set(want["t"].coords) >= {"crs", "x", "y", "time"}
    for name in ("crs", "x_bnds", "y_bnds", "x", "y"):
        assert got[name].dims == want[name].dims, name
        assert got[name].dtype == want[name].dtype, name
        assert same_bits(got[name].values, want[name].values), name
        assert got[name].attrs == want[name].attrs, name
    assert want["crs"].dtype == np.int32 and want["crs"].attrs["crs_wkt"] == 'PROJCS["LCC"]'
    rc, text, err = cli("verify", str(cfg))
    assert rc == 0, text + err


#: The CF attributes that name variables, and, for those of ``key: name`` pairs, whether the
#: key is a variable too (a grid mapping's long form) or not (a cell measure, a formula term).
CF_NAMING = {
    "coordinates": None,
    "bounds": None,
    "climatology": None,
    "ancillary_variables": None,
    "geometry": None,
    "node_coordinates": None,
    "node_count": None,
    "part_node_count": None,
    "interior_ring": None,
    "grid_mapping": True,
    "cell_measures": False,
    "formula_terms": False,
}


def _stored_dangling(store: Path, group: str = "") -> list[tuple[str, str, str]]:
    """(array, attribute, name) for every CF reference in the stored attributes of an array
    of the group ``group`` of ``store`` (as zarr-python reads them) to an array the group
    does not hold; the group's own ``coordinates`` too (array '')."""
    g = zarr.open_group(str(store), path=group or None, mode="r", use_consolidated=False)
    held = set(g.array_keys())
    found = []
    docs = {"": {"coordinates": dict(g.attrs).get("coordinates")}}
    docs.update({n: dict(a.attrs) for n, a in g.arrays()})
    for name, attrs in docs.items():
        for key, key_is_a_name in CF_NAMING.items():
            value = attrs.get(key)
            if not isinstance(value, str):
                continue
            words = value.replace(" :", ":").split()
            paired = any(w.endswith(":") for w in words)
            for w in words:
                if paired and w.endswith(":") and not key_is_a_name:
                    continue
                if w.rstrip(":") not in held:
                    found.append((name, key, w.rstrip(":")))
    return found


def _described_grid(path: Path, zarr_format: int) -> xr.Dataset:
    """A Dataset whose variable ``ta`` is described by arrays that are described in turn: a
    sigma coordinate ``lev`` whose ``formula_terms`` names ``PS`` (with its own
    ``ancillary_variables`` and ``grid_mapping``) and ``PTOP``; a cell measure with its own
    ``ancillary_variables`` and ``coordinates``; bounds with ``bounds`` of their own; ``ta``'s
    own ``ancillary_variables``. Written by xarray to ``path``; returned."""
    lev, lat, lon = np.array([0.1, 0.5, 0.9]), np.linspace(-60.0, 60.0, 4), np.arange(5.0)
    rng = np.random.default_rng(11)
    ds = xr.Dataset(
        {
            "ta": (
                ("lev", "lat", "lon"),
                rng.uniform(200.0, 300.0, (3, 4, 5)),
                {
                    "units": "K",
                    "cell_measures": "area: cell_area",
                    "grid_mapping": "crs",
                    "ancillary_variables": "ta_err",
                },
            ),
            "ta_err": (("lev", "lat", "lon"), np.ones((3, 4, 5))),
            "PS": (
                ("lat", "lon"),
                rng.uniform(900.0, 1000.0, (4, 5)),
                {"units": "hPa", "ancillary_variables": "PS_flag", "grid_mapping": "crs_ps"},
            ),
            "PS_flag": (("lat", "lon"), np.zeros((4, 5), "i1")),
            "PTOP": ((), 10.0, {"units": "hPa"}),
            "crs": ((), 0, {"grid_mapping_name": "latitude_longitude"}),
            "crs_ps": ((), 0, {"grid_mapping_name": "latitude_longitude"}),
            "cell_area": (
                ("lat", "lon"),
                np.full((4, 5), 2.0),
                {"ancillary_variables": "area_err", "coordinates": "height"},
            ),
            "area_err": (("lat", "lon"), np.full((4, 5), 0.1)),
            "height": ((), 2.0, {"units": "m"}),
            "lat_bnds": (("lat", "nv"), np.stack([lat - 1, lat + 1], 1), {"bounds": "lat_bb"}),
            "lat_bb": (("lat", "nv"), np.stack([lat - 2, lat + 2], 1)),
            "lev_bnds": (("lev", "nv"), np.stack([lev - 0.05, lev + 0.05], 1)),
        },
        coords={
            "lev": (
                "lev",
                lev,
                {
                    "standard_name": "atmosphere_sigma_coordinate",
                    "formula_terms": "sigma: lev ps: PS ptop: PTOP",
                    "bounds": "lev_bnds",
                },
            ),
            "lat": ("lat", lat, {"bounds": "lat_bnds"}),
            "lon": ("lon", lon),
        },
        attrs={"Conventions": "CF-1.8"},
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(str(path), zarr_format=zarr_format, mode="w", consolidated=True)
    return ds


@pytest.mark.parametrize("zarr_format", [2, 3], ids=lambda f: f"v{f}")
def test_what_the_carried_arrays_name_is_carried_or_its_reference_dropped(
    tmp_path: Path, cli, zarr_format: int
) -> None:
    """The references of the carried arrays themselves dangled in the output: ``lev``'s
    ``formula_terms`` named ``PS`` and ``PTOP``, which were not carried, and ``PS``'s
    ``grid_mapping`` its own; the cell measure's ``coordinates`` and ``ancillary_variables``,
    bounds' ``bounds``. What describes the grid is carried, in turn (as xarray's
    ``decode_coords="all"`` reads it); ``ancillary_variables`` is dropped from every array,
    its variables not carried. No reference in the output group names an array it lacks;
    xarray opens it, warning nothing; values are NumPy's chain over zarr-python's reading
    of the input, to the bit, and each carried array's values are the input's."""
    src = tmp_path / "in.zarr"
    _described_grid(src, zarr_format)
    assert _stored_dangling(src) == []  # the input itself is whole
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump(config(tmp_path, input={"array": "ta"})))
    before = file_states(src)
    rc, _, err = cli("run", str(cfg), "-q")
    assert rc == 0, err
    assert file_states(src) == before
    out = tmp_path / "out.zarr"
    assert _stored_dangling(out) == []
    held = set(zarr.open_group(str(out), mode="r").array_keys())
    carried = {"PS", "PTOP", "crs", "crs_ps", "cell_area", "height", "lat_bnds", "lat_bb"}
    assert carried | {"ta", "lev", "lat", "lon", "lev_bnds"} == held
    for name in held:
        attrs = zarr.open_array(str(out), path=name, mode="r").attrs
        assert "ancillary_variables" not in attrs, name
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning from xarray either
        got = xr.open_zarr(str(out), decode_coords="all").load()
        plain = xr.open_zarr(str(out)).load()
    assert _dangling(plain) == []
    assert {"PS", "PTOP", "cell_area", "crs"} <= set(got["ta"].coords)
    assert plain["lev"].attrs["formula_terms"] == "sigma: lev ps: PS ptop: PTOP"
    for name in held - {"ta"}:
        want = np.asarray(zarr.open_array(str(src), path=name, mode="r")[...])
        assert same_bits(np.asarray(zarr.open_array(str(out), path=name, mode="r")[...]), want)
    values = np.asarray(zarr.open_array(str(src), path="ta", mode="r")[...])
    chain = plan_chain(parse_config(config(tmp_path)).stage_specs(), values.dtype)
    with np.errstate(all="ignore"):
        want = apply_chain(chain, values)
    assert same_bits(np.asarray(zarr.open_array(str(out), path="ta", mode="r")[...]), want)
    assert same_bits(got["ta"].values, want)
    rc, out_text, err = cli("verify", str(cfg))
    assert rc == 0, out_text + err


@pytest.mark.parametrize("zarr_format", [2, 3], ids=lambda f: f"v{f}")
def test_a_geometry_and_what_it_names_are_carried(tmp_path: Path, zarr_format: int) -> None:
    """A variable of CF geometries (``geometry: geom``, whose container names its node
    coordinates, node counts and the nodes' own ``coordinates``): the output named ``geom``
    without holding it. The container and what it names are carried, in turn; an output
    written alone names none of them."""
    ds = xr.Dataset(
        {
            "v": (("instance",), np.arange(3.0), {"geometry": "geom"}),
            "geom": (
                (),
                0,
                {
                    "geometry_type": "line",
                    "node_count": "node_count",
                    "node_coordinates": "x_node y_node",
                },
            ),
            "node_count": (("instance",), np.array([2, 2, 3], "i4")),
            "x_node": (("node",), np.arange(7.0), {"axis": "X"}),
            "y_node": (("node",), -np.arange(7.0), {"axis": "Y"}),
        }
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(str(tmp_path / "in.zarr"), zarr_format=zarr_format, consolidated=True)
    assert pipeline.run(config(tmp_path, input={"array": "v"})).status == "complete"
    out = tmp_path / "out.zarr"
    assert _stored_dangling(out) == []
    assert {"geom", "node_count", "x_node", "y_node", "v"} == set(
        zarr.open_group(str(out), mode="r").array_keys()
    )
    assert zarr.open_array(str(out), path="v", mode="r").attrs["geometry"] == "geom"
    want = apply_chain(
        plan_chain(parse_config(config(tmp_path)).stage_specs(), np.dtype("f8")),
        np.asarray(zarr.open_array(str(tmp_path / "in.zarr"), path="v", mode="r")[...]),
    )
    assert same_bits(np.asarray(zarr.open_array(str(out), path="v", mode="r")[...]), want)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert xr.open_zarr(str(out), decode_coords="all")["v"].shape == (3,)
    alone = config(tmp_path, input={"array": "v"}, output={"store": str(tmp_path / "a.zarr")})
    alone["output"]["array"] = ""
    assert pipeline.run(alone).status == "complete"
    assert "geometry" not in zarr.open_array(str(tmp_path / "a.zarr"), mode="r").attrs


def _edit_doc(path: Path, **keys: Any) -> None:
    """Add ``keys`` to the JSON document at ``path`` (None: remove that key)."""
    doc = json.loads(path.read_text())
    doc.update({k: v for k, v in keys.items() if v is not None})
    for k in [k for k, v in keys.items() if v is None]:
        doc.pop(k, None)
    path.write_text(json.dumps(doc))


def _nczarr(path: Path, layout: str) -> None:
    """A Dataset laid out as netCDF-C writes it (``ncgen``, ``nc_create`` with
    ``#mode=nczarr,file``): ``t(y, x)`` with ``grid_mapping: crs``, coordinate variables
    ``y`` and ``x``, and a scalar ``crs``, which netCDF-C stores as one element on its
    ``_scalar_`` dimension; NCZarr's records of the layout beside xarray's. ``layout``:
    '4.9' (netCDF-C 4.9: ``_nczarr_superblock`` and ``_nczarr_group`` in ``.zgroup``,
    ``_nczarr_array`` in each ``.zarray``, ``_nczarr_attr`` in every ``.zattrs``, and
    ``_ARRAY_DIMENSIONS``), '4.8.1' (the same records in capitals, ``_NCZARR_ARRAY`` the only
    dimension names: xarray reads them, and so does the pipeline), '4.8.0' (the records
    in files of their own: ``.nczarr``, ``.nczgroup``, ``.nczarray``, ``.nczattr``), 'v3'
    (Zarr v3, ``_nczarr_attr`` among each node's attributes)."""
    ds = xr.Dataset(
        {
            "t": (
                ("y", "x"),
                np.arange(20.0).reshape(4, 5) - 3.5,
                {"units": "K", "grid_mapping": "crs"},
            ),
            "crs": (
                ("_scalar_",),
                np.array([0], "i4"),
                {"grid_mapping_name": "latitude_longitude"},
            ),
        },
        coords={
            "y": ("y", np.arange(4.0), {"units": "degrees_north"}),
            "x": ("x", np.arange(5.0), {"units": "degrees_east"}),
        },
        attrs={"title": "from netCDF-C"},
    )
    fmt = 3 if layout == "v3" else 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(str(path), zarr_format=fmt, consolidated=False, mode="w")
    upper = layout == "4.8.1"
    key = str.upper if upper else str
    dims = {"y": 4, "x": 5, "_scalar_": 1}
    names = list(ds.variables)
    types = {k: ">S1" for k in ds.attrs}
    if layout == "v3":
        _edit_doc(path / "zarr.json", attributes={**ds.attrs, "_nczarr_attr": {"types": types}})
        for n, v in ds.variables.items():
            doc = json.loads((path / n / "zarr.json").read_text())
            attrs = {**doc["attributes"], "_nczarr_attr": {"types": dict.fromkeys(v.attrs, ">S1")}}
            _edit_doc(path / n / "zarr.json", attributes=attrs)
        return
    if layout == "4.8.0":
        (path / ".nczarr").write_text(json.dumps({"zarr_format": 2, "nczarr_version": "1.0.0"}))
        (path / ".nczgroup").write_text(json.dumps({"dims": dims, "vars": names, "groups": []}))
        (path / ".nczattr").write_text(json.dumps({"types": types}))
    else:
        _edit_doc(
            path / ".zgroup",
            **{
                key("_nczarr_superblock"): {"version": "1.0.0" if upper else "2.0.0"},
                key("_nczarr_group"): {"dims": dims, "vars": names, "groups": []},
            },
        )
        _edit_doc(path / ".zattrs", **{key("_nczarr_attr"): {"types": types}})
    for n, v in ds.variables.items():
        array = {"dimrefs": [f"/{d}" for d in v.dims], "storage": "chunked"}
        attr = {"types": dict.fromkeys(v.attrs, ">S1")}
        if layout == "4.8.0":
            (path / n / ".nczarray").write_text(json.dumps(array))
            (path / n / ".nczattr").write_text(json.dumps(attr))
            continue
        _edit_doc(path / n / ".zarray", **{key("_nczarr_array"): array})
        _edit_doc(
            path / n / ".zattrs",
            **{key("_nczarr_attr"): attr, "_ARRAY_DIMENSIONS": None if upper else list(v.dims)},
        )


def _netcdf_records(store: Path) -> list[tuple[str, str]]:
    """(node, attribute) for every attribute of a netCDF-C record (a name beginning with
    ``_nc``, in any case) that a node of ``store`` holds, as zarr-python reads it."""
    found = []
    node = zarr.open(str(store), mode="r")
    nodes = [("", node)] + (
        list(node.members(max_depth=None)) if isinstance(node, zarr.Group) else []
    )
    for name, n in nodes:
        found += [(name, k) for k in n.attrs if k.lower().startswith("_nc")]
    return found


@pytest.mark.parametrize("layout", ["4.9", "4.8.1", "4.8.0", "v3"])
def test_nczarrs_records_of_the_inputs_layout_are_not_carried(
    tmp_path: Path, cli, layout: str
) -> None:
    """An input netCDF-C wrote as NCZarr: its ``_nczarr_attr`` (the input's attributes' netCDF
    types) came into the output variable's attributes and its group's, in capitals too
    (``_NCZARR_ATTR``, netCDF-C 4.8.1, whose arrays the pipeline reads as arrays alone), where
    xarray hides them (a v3 output shows them), and a v3 input's came on every carried array.
    The output holds none of them, whatever the layout: the variable's attributes, the
    group's and each carried array's are what xarray reads of the input (v2; v3 less the
    records), the grid mapping ``crs`` too, values to the bit; ``verify`` passes."""
    src, out = tmp_path / "in.zarr", tmp_path / "out.zarr"
    _nczarr(src, layout)
    before = file_states(src)
    cfg = config(tmp_path)
    assert pipeline.run(cfg).status == "complete"
    assert file_states(src) == before
    assert _netcdf_records(out) == []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = xr.open_zarr(str(src), consolidated=False).load()

    def seen(attrs: dict[str, Any]) -> dict[str, Any]:  # v3: xarray shows the records
        return {k: v for k, v in attrs.items() if not k.lower().startswith("_nc")}

    values = np.asarray(zarr.open_array(str(src), path="t", mode="r")[...])
    chain = plan_chain(parse_config(cfg).stage_specs(), values.dtype)
    with np.errstate(all="ignore"):
        computed = apply_chain(chain, values)
    # 4.8.1, no _ARRAY_DIMENSIONS: read by its _NCZARR_ARRAY's dimrefs, as xarray reads
    # it (it had been an array alone at the output's root, without dimension names)
    got = open_dataset(out)
    assert got.attrs == seen(want.attrs) == {"title": "from netCDF-C"}
    attrs = dict(got["t"].attrs)
    assert record_of({"pipeline": attrs.pop("pipeline")})["status"] == "complete"
    assert attrs == seen(want["t"].attrs) == {"units": "K", "grid_mapping": "crs"}
    assert got["t"].dims == want["t"].dims == ("y", "x")
    assert same_bits(got["t"].values, computed)
    assert set(got.variables) == {"t", "crs", "x", "y"}
    assert set(got.coords) == set(want["t"].coords) == {"x", "y"}
    for name in ("crs", "x", "y"):
        assert got[name].dims == want[name].dims, name
        assert got[name].attrs == seen(want[name].attrs), name
        assert same_bits(got[name].values, want[name].values), name
    config_file = tmp_path / "run.yaml"
    config_file.write_text(yaml.safe_dump(cfg))
    rc, text, err = cli("verify", str(config_file))
    assert rc == 0, text + err


@pytest.mark.parametrize("group", ["", "g"], ids=["root", "in-a-group"])
def test_an_nczarr_4_8_1_dataset_is_overwritten_and_resumed_as_a_dataset(
    tmp_path: Path, cli, group: str
) -> None:
    """netCDF-C 4.8.1's store (dimensions in ``_NCZARR_ARRAY`` only), at the store's root or
    in a group: ``run --overwrite`` writes the Dataset again, ``run --resume`` of the complete
    output finds nothing to do (the dimension names it planned are those the output holds),
    ``verify`` passes after each, and the input is never modified."""
    src, out = tmp_path / "in.zarr", tmp_path / "out.zarr"
    _nczarr(src / group if group else src, "4.8.1")
    if group:
        (src / ".zgroup").write_text(json.dumps({"zarr_format": 2}))
    before = file_states(src)
    config_file = tmp_path / "run.yaml"
    config_file.write_text(yaml.safe_dump(config(tmp_path, input={"array": f"{group}/t"})))
    for args in ((), ("--overwrite",), ("--resume",)):
        rc, text, err = cli("-q", "run", str(config_file), *args)
        assert rc == 0, text + err
        assert ("nothing to do" in text) == (args == ("--resume",)), text
        arr = zarr.open_array(str(out), path="t", mode="r")  # output.array's default: 't'
        assert arr.metadata.dimension_names == ("y", "x")
        rc, text, err = cli("verify", str(config_file))
        assert rc == 0, text + err
    assert file_states(src) == before
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = xr.open_zarr(str(src), group=group or None, consolidated=False).load()
    got = open_dataset(out)
    assert got["t"].dims == want["t"].dims == ("y", "x")
    assert set(got["t"].coords) == set(want["t"].coords) == {"y", "x"}


def _remote_records(url: str, options: dict[str, Any]) -> dict[str, Any]:
    """Every object below ``url`` (an fsspec URL): its bytes, as a remote store lists them."""
    import fsspec

    fs, root = fsspec.url_to_fs(url, **options)
    return {k: fs.cat_file(k) for k in sorted(fs.find(root))}


@pytest.mark.parametrize("where", ["s3", "http", "http unlisted"])
def test_an_nczarr_4_8_1_dataset_over_s3_or_http_is_what_xarray_reads_of_the_local_copy(
    tmp_path: Path, cli, request: pytest.FixtureRequest, where: str
) -> None:
    """netCDF-C 4.8.1's store (dimensions in ``_NCZARR_ARRAY`` only) read over S3 (a moto
    server) or HTTP (tests/httpkit.py): xarray's zarr backend reads that record with
    ``asyncio.run(store.get(".../.zarray"))``, without the ``prototype`` that zarr-python's
    ``FsspecStore.get`` requires and on an event loop of its own (xarray 2025.6: ``xr.open_zarr``
    of such a store over fsspec raises a TypeError), so the Dataset output had been refused,
    quoting that TypeError. The pipeline serves that read itself (``datasets._read_once``):
    the output Dataset is the one a run of the local copy makes (every variable identical,
    the group's attributes too), its coordinates as ``xr.open_zarr`` reads them of the local
    copy, the variable computed bit for bit; ``verify`` passes, ``run --resume`` has nothing
    to do, the variable written alone (``output.array: ''``) keeps the record's dimension
    names, and the input is never modified. 'http unlisted': a server that lists no folders
    (404), the store consolidated (``zarr.consolidate_metadata``, which keeps no NCZarr
    record: xarray still reads each ``.zarray``), whose members the pipeline takes from that
    copy (``datasets._listed_store``, whose ``get`` had required the prototype too)."""
    from tests.httpkit import serving

    local = tmp_path / "local"
    local.mkdir()
    src = local / "in.zarr"
    _nczarr(src, "4.8.1")
    if where == "http unlisted":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            zarr.consolidate_metadata(str(src))
    if where == "s3":
        import s3fs

        url, options = request.getfixturevalue("bucket")
        s3fs.S3FileSystem(skip_instance_cache=True, **options).put(
            str(src), f"{url}/in.zarr", recursive=True
        )
        served: Any = contextlib.nullcontext(url)
    else:
        options = {}
        served = serving(local, **({"folders": 404} if where == "http unlisted" else {}))
    with served as server:
        base = server if isinstance(server, str) else server.url
        remote = f"{base}/in.zarr"
        section = {"storage_options": options} if options else {}
        before = _remote_records(remote, options) if where == "s3" else file_states(src)
        cfg = config(tmp_path, input={"store": remote, **section}, cluster={"workers": 1})
        config_file = tmp_path / "run.yaml"
        config_file.write_text(yaml.safe_dump(cfg))
        rc, text, err = cli("-q", "run", str(config_file))
        assert rc == 0, text + err
        rc, text, err = cli("verify", str(config_file), "--all")
        assert rc == 0, text + err
        rc, text, err = cli("run", str(config_file), "--resume")
        assert rc == 0 and "nothing to do" in err, text + err
        # the variable alone keeps the record's dimension names (its own read of the record)
        alone = config(
            tmp_path,
            input={"store": remote, **section},
            output={"store": str(tmp_path / "alone.zarr"), "array": ""},
        )
        assert pipeline.run(alone).status == "complete"
        after = _remote_records(remote, options) if where == "s3" else file_states(src)
        assert after == before
    arr = zarr.open_array(str(tmp_path / "alone.zarr"), mode="r")
    assert arr.metadata.dimension_names == ("y", "x")
    assert (
        pipeline.run(
            config(tmp_path, input={"store": str(src)}, output={"store": str(local / "out.zarr")})
        ).status
        == "complete"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = xr.open_zarr(str(src), consolidated=False).load()
    got, made = open_dataset(tmp_path / "out.zarr"), open_dataset(local / "out.zarr")
    assert got.attrs == made.attrs == {"title": "from netCDF-C"}
    assert set(got.variables) == set(made.variables) == {"t", "crs", "x", "y"}
    for name in ("crs", "x", "y"):
        assert got[name].variable.identical(made[name].variable), name
        assert got[name].dims == want[name].dims, name
        assert same_bits(got[name].values, want[name].values), name
    assert got["t"].dims == made["t"].dims == want["t"].dims == ("y", "x")
    own = {k: v for k, v in got["t"].attrs.items() if k != "pipeline"}
    assert own == {k: v for k, v in made["t"].attrs.items() if k != "pipeline"}
    assert own == {"units": "K", "grid_mapping": "crs"}
    assert same_bits(got["t"].values, made["t"].values)
    values = np.asarray(zarr.open_array(str(src), path="t", mode="r")[...])
    chain = plan_chain(parse_config(cfg).stage_specs(), values.dtype)
    with np.errstate(all="ignore"):
        assert same_bits(got["t"].values, apply_chain(chain, values))
    assert same_bits(np.asarray(arr[...]), got["t"].values)


def test_an_nczarr_4_8_1_dataset_beside_an_unreadable_member_is_read_as_a_dataset(
    tmp_path: Path,
) -> None:
    """netCDF-C 4.8.1's store with another member whose ``.zarray`` is not JSON (which the
    pipeline reads around, as ``xr.open_zarr`` of a consolidated group does): the members
    xarray then opens are listed by a wrapper of the store (``datasets._listed_store``),
    whose ``get`` required the prototype that xarray's read of the NCZarr record does not
    give, so the Dataset output had been refused quoting that TypeError. The output is what
    a run of the store without that member makes, which is what xarray reads of it."""
    src = tmp_path / "in.zarr"
    _nczarr(src, "4.8.1")
    shutil.copytree(src, tmp_path / "clean.zarr")
    (src / "junk").mkdir()
    (src / "junk" / ".zarray").write_text("{not JSON")
    assert pipeline.run(config(tmp_path)).status == "complete"
    clean = config(
        tmp_path,
        input={"store": str(tmp_path / "clean.zarr")},
        output={"store": str(tmp_path / "made.zarr")},
    )
    assert pipeline.run(clean).status == "complete"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = xr.open_zarr(str(tmp_path / "clean.zarr"), consolidated=False).load()
    got, made = open_dataset(tmp_path / "out.zarr"), open_dataset(tmp_path / "made.zarr")
    assert got.attrs == made.attrs == want.attrs == {"title": "from netCDF-C"}
    assert set(got.variables) == set(made.variables) == {"t", "crs", "x", "y"}
    assert got["t"].dims == want["t"].dims == ("y", "x")
    for name in ("t", "crs", "x", "y"):
        assert same_bits(got[name].values, made[name].values), name
        assert got[name].dims == made[name].dims, name
        assert {k: v for k, v in got[name].attrs.items() if k != "pipeline"} == {
            k: v for k, v in made[name].attrs.items() if k != "pipeline"
        }, name
    for name in ("crs", "x", "y"):
        assert got[name].variable.identical(want[name].variable), name


NO_LIST = "_NCZARR_ARRAY whose dimrefs is no list of dimension paths"
NAMES = "_NCZARR_ARRAY whose dimrefs names"


def _nczarr_record(store: Path, name: str, record: Any) -> None:
    """Put ``record`` in place of the ``_NCZARR_ARRAY`` of ``name``'s ``.zarray``."""
    _edit_doc(store / name / ".zarray", _NCZARR_ARRAY=record)


@pytest.mark.parametrize(
    "record, said",
    [
        ("/y /x", "_NCZARR_ARRAY that is no mapping"),
        ({"storage": "chunked"}, f"{NO_LIST}"),
        ({"dimrefs": [1, 2], "storage": "chunked"}, f"{NO_LIST}"),
        ({"dimrefs": ["/y"], "storage": "chunked"}, f"{NAMES} 1 dimensions, and the array has 2"),
        ({"dimrefs": ["/y", "/x", "/z"]}, f"{NAMES} 3 dimensions, and the array has 2"),
    ],
    ids=["no-mapping", "no-dimrefs", "not-paths", "too-few", "too-many"],
)
def test_a_damaged_nczarr_record_is_one_line_before_anything_is_written(
    tmp_path: Path, cli, record: Any, said: str
) -> None:
    """An input array without ``_ARRAY_DIMENSIONS`` whose NCZarr record xarray fails on
    (``xr.open_zarr`` raises) had been read as an array alone, its Dataset silently lost: it
    is one line naming the ``.zarray`` and what to write there, before the output is made;
    the input is not modified."""
    src = tmp_path / "in.zarr"
    _nczarr(src, "4.8.1")
    _nczarr_record(src, "t", record)
    with warnings.catch_warnings(), pytest.raises((KeyError, TypeError, ValueError)):
        warnings.simplefilter("ignore")
        xr.open_zarr(str(src), consolidated=False)
    before = file_states(src)
    config_file = tmp_path / "run.yaml"
    config_file.write_text(yaml.safe_dump(config(tmp_path)))
    for command in ("run", "plan"):
        rc, text, err = cli(command, str(config_file))
        assert rc == 1, text + err
        line = err if command == "plan" else one_line_error(err)
        assert f"{src / 't' / '.zarray'} has an {said}" in line, line
        assert "_ARRAY_DIMENSIONS" in line and "dimrefs" in line, line
    assert not (tmp_path / "out.zarr").exists()
    assert file_states(src) == before
    with pytest.raises(InputError) as info:
        pipeline.run(config(tmp_path))
    assert info.value.file == str(src / "t" / ".zarray")


@pytest.mark.parametrize(
    "dimrefs",
    [["/y", "/w"], ["/y", "/grp/x"], ["/g/y", "/x"]],
    ids=["undefined", "in-a-group", "both"],
)
def test_nczarr_dimrefs_the_group_does_not_define_are_read_as_xarray_reads_them(
    tmp_path: Path, cli, dimrefs: list[str]
) -> None:
    """A dimref naming a dimension that the group's ``_NCZARR_GROUP`` does not define, or one
    of another group (a full path): xarray reads each by the last part of its path, without
    looking at the group's record; so does the pipeline, the output what xarray reads of the
    input (its dimensions, the coordinates on them), verify passes."""
    src, out = tmp_path / "in.zarr", tmp_path / "out.zarr"
    _nczarr(src, "4.8.1")
    _nczarr_record(src, "t", {"dimrefs": dimrefs, "storage": "chunked"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = xr.open_zarr(str(src), consolidated=False).load()
    cfg = config(tmp_path)
    assert pipeline.run(cfg).status == "complete"
    got = open_dataset(out)
    assert got["t"].dims == want["t"].dims == tuple(d.rsplit("/", 1)[-1] for d in dimrefs)
    assert set(got["t"].coords) == set(want["t"].coords)
    for name in got["t"].coords:
        assert same_bits(got[name].values, want[name].values), name
    config_file = tmp_path / "run.yaml"
    config_file.write_text(yaml.safe_dump(cfg))
    rc, text, err = cli("verify", str(config_file))
    assert rc == 0, text + err


def _set_group_attributes(store: Path, attrs: dict[str, Any]) -> None:
    """Give the root group of ``store`` the attributes ``attrs``, consolidated again, as a
    user (or xarray) rewriting a Dataset's attributes does."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zarr.open_group(str(store), mode="r+", use_consolidated=False).attrs.put(attrs)
        zarr.consolidate_metadata(str(store))


def test_overwrite_into_a_users_group_keeps_the_groups_attributes(tmp_path: Path) -> None:
    """A variable written with --overwrite into a user's Dataset: the group's own attributes
    stay (they had been replaced by the input's: xarray's append mode puts the written
    Dataset's in place of a group's), the input group's that the group does not have are
    added. Written again, the group's own stay as they are and those carried from the input
    follow the input: a changed value is the new one, one the input no longer has goes."""
    write_dataset(tmp_path / "in.zarr", 3)  # title "a test field", institution "tests"
    out = tmp_path / "out.zarr"
    mine = {"title": "my analysis", "Conventions": "CF-1.8", "history": "made by hand"}
    other = xr.Dataset({"q": (("y", "x"), np.ones((ROWS, COLS)))}, attrs=mine)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        other.to_zarr(str(out), zarr_format=3, mode="w")
    assert pipeline.run(config(tmp_path), overwrite=True).status == "complete"
    ds = open_dataset(out)
    assert ds.attrs == {**mine, "institution": "tests"}
    assert sorted(ds.data_vars) == ["q", "t"] and np.array_equal(ds["q"], np.ones((ROWS, COLS)))

    _set_group_attributes(tmp_path / "in.zarr", {"institution": "elsewhere", "source": "s"})
    assert pipeline.run(config(tmp_path), overwrite=True).status == "complete"
    assert open_dataset(out).attrs == {**mine, "institution": "elsewhere", "source": "s"}
    _set_group_attributes(tmp_path / "in.zarr", {"title": "theirs"})
    assert pipeline.run(config(tmp_path), overwrite=True).status == "complete"
    assert open_dataset(out).attrs == mine  # the user's title kept, institution and source gone


def _with_bounds(path: Path, var: str, dim: str, extra: dict[str, Any]) -> None:
    """A Dataset whose variable ``var`` (t, ``dim``) has coordinates with cell bounds
    (``t_bnds``, ``<dim>_bnds``), which no variable's dimensions cover: xarray lists them in
    the group's ``coordinates`` attribute, with the coordinates of ``extra``."""
    t, d = np.arange(4.0), np.arange(3.0)
    ds = xr.Dataset(
        {var: (("t", dim), np.ones((4, 3), "f4"))},
        coords={
            "t": ("t", t, {"bounds": "t_bnds"}),
            "t_bnds": (("t", "nv"), np.stack([t, t + 1], 1)),
            dim: (dim, d, {"bounds": f"{dim}_bnds"}),
            f"{dim}_bnds": ((dim, "nv"), np.stack([d, d + 1], 1)),
            **extra,
        },
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(str(path), zarr_format=3, mode="w", consolidated=True)


def test_the_groups_coordinates_attribute_is_xarrays_encoding_not_carried(tmp_path: Path) -> None:
    """xarray lists coordinates no variable's dimensions cover (``t_bnds``, ``foo`` on a
    dimension of its own) in the group's ``coordinates`` attribute. It was carried as a
    group attribute: every run printed xarray's SerializationWarning, even with -q; the output
    group named ``foo``, which it did not hold; and a variable written beside it from another
    input kept that list, its own ``y_bnds`` turned into a data variable. The list is what
    the group holds as coordinates: xarray's for what is written, with those the group listed
    that it still holds (a user's ``q_bnds``)."""
    _with_bounds(tmp_path / "in.zarr", "air", "x", {"foo": ("q", np.array([1.0, 2.0]))})
    _with_bounds(tmp_path / "in2.zarr", "sst", "y", {})
    out = tmp_path / "out.zarr"
    q = np.arange(2.0)
    mine = xr.Dataset(
        {"mine": ("q", q)},
        coords={"q": ("q", q, {"bounds": "q_bnds"}), "q_bnds": (("q", "nv"), np.stack([q, q], 1))},
        attrs={"title": "mine"},
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mine.to_zarr(str(out), zarr_format=3, mode="w", consolidated=True)
    for name, store in (("air", "in.zarr"), ("sst", "in2.zarr")):
        cfg = tmp_path / f"{name}.yaml"
        cfg.write_text(
            yaml.safe_dump(config(tmp_path, input={"store": str(tmp_path / store), "array": name}))
        )
        done = run_python(["-m", "pipeline", "run", cfg, "-q", "--overwrite"], tmp_path)
        assert (done.returncode, done.stderr) == (0, ""), done.stderr
    attrs = dict(zarr.open_group(str(out), mode="r").attrs)
    assert attrs == {"title": "mine", "coordinates": "q_bnds t_bnds x_bnds y_bnds"}
    ds = _opens_without_warnings(out)
    assert sorted(ds.data_vars) == ["air", "mine", "sst"]
    assert {"q_bnds", "t_bnds", "x_bnds", "y_bnds"} <= set(ds.coords)
    assert ds.attrs == {"title": "mine"}


KILLED_AT_THE_FRAME = """
import os, signal, sys
import pipeline
from pipeline.store import datasets

write = datasets._write


def kill(frame, dst_store, dst_group, **kwargs):
    if "Memory" in type(dst_store).__name__:  # the plan's trial write (frame_failure)
        return write(frame, dst_store, dst_group, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)  # as the group is written again (or the disk is full)


if __name__ == "__main__":
    datasets._write = kill
    pipeline.run(sys.argv[1], overwrite=True)
"""


def _own_group_attributes(store: Path) -> dict[str, Any]:
    """The root group's attributes as its own metadata holds them."""
    return dict(zarr.open_group(str(store), mode="r", use_consolidated=False).attrs)


def test_a_stop_while_the_group_is_written_again_loses_none_of_its_attributes(
    tmp_path: Path,
) -> None:
    """F2: --overwrite into a user's group, the input's group attributes changed since the
    output carried them, killed as xarray writes the group again (where a full disk fails
    too). The group's metadata had been deleted first: its own attributes (the user's title
    and history) were lost for good, and the rerun wrote the input's alone. Now the group
    keeps its metadata until xarray rewrites it, and the run record says what the output
    carried before (its own record is gone by then): ``--resume`` leaves the group as an
    uninterrupted run does, the user's attributes kept, the input's new ones in place of
    the old."""
    write_dataset(tmp_path / "in.zarr", 3)  # title "a test field", institution "tests"
    out, ref = tmp_path / "out.zarr", tmp_path / "ref.zarr"
    mine = {"title": "my analysis", "history": "made by hand"}
    other = xr.Dataset({"q": (("y", "x"), np.ones((ROWS, COLS)))}, attrs=mine)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        other.to_zarr(str(out), zarr_format=3, mode="w")
    cfg = tmp_path / "t.yaml"
    cfg.write_text(yaml.safe_dump(config(tmp_path)))
    assert pipeline.run(cfg, overwrite=True).status == "complete"
    assert _own_group_attributes(out) == {**mine, "institution": "tests"}
    _set_group_attributes(tmp_path / "in.zarr", {"institution": "elsewhere", "source": "s"})
    copy_store(out, ref)
    ref_cfg = tmp_path / "ref.yaml"
    ref_cfg.write_text(yaml.safe_dump(config(tmp_path, output={"store": str(ref)})))
    assert pipeline.run(ref_cfg, overwrite=True).status == "complete"  # not interrupted
    wanted = {**mine, "institution": "elsewhere", "source": "s"}
    assert _own_group_attributes(ref) == wanted

    (tmp_path / "script.py").write_text(KILLED_AT_THE_FRAME)
    proc = run_python([tmp_path / "script.py", cfg], tmp_path)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert _own_group_attributes(out)["title"] == "my analysis"  # still there meanwhile
    assert pipeline.run(cfg, resume=True).status == "complete"
    assert _own_group_attributes(out) == wanted
    got, want = open_dataset(out), open_dataset(ref)
    assert got.attrs == want.attrs == wanted
    for name in ("lon", "x", "y"):
        assert got[name].identical(want[name]), name
    assert same_bits(got["t"].values, want["t"].values)
    assert np.array_equal(got["q"].values, np.ones((ROWS, COLS)))


@pytest.mark.parametrize("zarr_format", [2, 3], ids=lambda f: f"v{f}")
def test_an_output_dataset_in_place_of_an_array_is_refused_and_the_array_kept(
    tmp_path: Path, zarr_format: int
) -> None:
    """``output.array: keep/t`` where ``keep`` is an array something else wrote: the output
    Dataset's group would be ``keep``, whose metadata a fresh start deleted (the array's, a
    v3 zarr.json) before xarray wrote a group there. Refused before anything is written."""
    write_dataset(tmp_path / "in.zarr", 3)
    out = tmp_path / "out.zarr"
    make_array(out, np.arange(6.0), (3,), zarr_format=zarr_format, name="keep")
    before = file_states(out)
    for overwrite in (False, True):
        with pytest.raises(OutputError) as info:
            pipeline.run(config(tmp_path, output={"array": "keep/t"}), overwrite=overwrite)
        e = info.value
        assert (e.status, e.blocking) == ("blocked", str(out / "keep"))
        assert len(str(e).splitlines()) == 1
    assert file_states(out) == before
    assert np.array_equal(zarr.open_array(str(out), path="keep", mode="r")[:], np.arange(6.0))


def _opens_without_warnings(store: Path, group: str | None = None) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return xr.open_zarr(str(store), group=group)


@pytest.mark.parametrize("root", ["consolidated", "absent"])
def test_an_output_group_opens_in_xarray_with_the_stores_consolidated_metadata(
    tmp_path: Path, root: str
) -> None:
    """xr.open_zarr reads a group's consolidated metadata from the store's root: an output
    group whose root had other consolidated metadata failed with a KeyError, and one in a
    fresh store warned and read without."""
    write_dataset(tmp_path / "in.zarr", 3)
    if root == "consolidated":
        other = xr.Dataset({"other": ("z", np.arange(3.0))})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            other.to_zarr(str(tmp_path / "out.zarr"), zarr_format=3, consolidated=True)
    pipeline.run(config(tmp_path, output={"array": "results/t"}))
    ds = _opens_without_warnings(tmp_path / "out.zarr", "results")
    assert "t" in ds.data_vars and {"y", "x"} <= set(ds.coords)
    if root == "consolidated":  # the arrays beside it still open as they did
        assert list(_opens_without_warnings(tmp_path / "out.zarr").data_vars) == ["other"]


def test_a_dataset_consolidated_at_its_stores_root_is_a_consolidated_input(
    tmp_path: Path,
) -> None:
    """xarray consolidates a Dataset written into a group at the store's root; the output
    of one of its variables gets consolidated metadata too, which xarray opens quietly."""
    src = tmp_path / "src.zarr"
    write_dataset(src, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = xr.open_zarr(str(src)).load()
        ds.to_zarr(str(tmp_path / "in.zarr"), group="sub/g", zarr_format=3, consolidated=True)
    pipeline.run(config(tmp_path, input={"array": "sub/g/t"}, output={"array": "t"}))
    assert consolidated(tmp_path / "out.zarr") is not None
    assert "t" in _opens_without_warnings(tmp_path / "out.zarr").data_vars


def _append_rows(store: Path, names: tuple[str, ...], rows: int) -> None:
    """Grow the arrays ``names`` of the Dataset at ``store`` by ``rows`` along their first
    axis, with zarr-python (each array's own metadata), leaving the group's consolidated
    metadata as it was: a store appended to without consolidating again."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in names:
            arr = zarr.open_array(str(store), path=name, mode="r+")
            n = arr.shape[0]
            arr.resize((n + rows, *arr.shape[1:]))
            arr[n:] = np.arange(rows * int(np.prod(arr.shape[1:]))).reshape(rows, *arr.shape[1:])


STALE = {
    "appended": ("t", ["shape"]),  # the variable and its coordinate y grown by 5 rows
    "coordinate-appended": ("y", ["shape"]),  # y alone grown: xarray saw 40 of 45 rows
    "coordinate-gone": ("lon", ["gone"]),  # lon deleted: xarray read its fill values
}


@pytest.mark.parametrize("zarr_format", [2, 3], ids=lambda f: f"v{f}")
@pytest.mark.parametrize("case", list(STALE))
def test_stale_consolidated_metadata_is_refused_before_anything_is_written(
    tmp_path: Path, zarr_format: int, case: str
) -> None:
    """The members changed after the group's metadata was consolidated: xr.open_zarr reads
    the consolidated copy (and so other values from the same chunks), the pipeline each
    array's own metadata. The run had read its coordinates from the consolidated copy and
    the variable from its own: an output of 45 rows with a coordinate of 40, which xarray
    cannot open, or a coordinate of fill values. Refused in one line before anything is
    written; consolidated again, the input runs, and comes out as xarray opens it."""
    src = tmp_path / "in.zarr"
    write_dataset(src, zarr_format)
    member, differs = STALE[case]
    if case == "appended":
        _append_rows(src, ("t", "y", "p"), 5)
    elif case == "coordinate-appended":
        _append_rows(src, ("y",), 5)
    else:
        shutil.rmtree(src / "lon")
    before = file_states(src)
    with pytest.raises(InputError) as info:
        pipeline.run(config(tmp_path))
    e = info.value
    assert (e.variable, e.member, e.differs) == (str(src / "t"), member, differs)
    assert len(str(e).splitlines()) == 1 and "consolidate" in e.fix
    assert not (tmp_path / "out.zarr").exists()
    assert file_states(src) == before  # the input is never modified
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(str(src))
    if case == "coordinate-appended":  # now xarray refuses it too: y has 45, t 40 rows
        with pytest.raises(InputError) as info:
            pipeline.run(config(tmp_path))
        e = info.value
        assert (e.coordinate, e.dimension, e.size, e.expected) == ("y", "y", ROWS + 5, ROWS)
        with pytest.raises(ValueError, match="conflicting sizes"):
            open_dataset(src)
        return
    assert pipeline.run(config(tmp_path)).status == "complete"
    ds = open_dataset(tmp_path / "out.zarr")
    want = open_dataset(src)
    assert ds["t"].shape == want["t"].shape and set(ds.coords) == set(want.coords)
    for c in want.coords:
        assert same_bits(ds[c].values, want[c].values), c


@pytest.mark.parametrize("zarr_format", [2, 3], ids=lambda f: f"v{f}")
def test_attributes_changed_after_consolidation_come_from_the_arrays_with_a_note(
    tmp_path: Path, zarr_format: int
) -> None:
    """Attributes of the variable, a coordinate and the group (a Dataset in the group ``g``,
    consolidated at the store's root, as xarray writes it) changed after consolidation: the
    output carries each array's own (its coordinates' and the group's had come from the
    consolidated copy, the variable's from its own), and the plan says that xarray shows the
    input otherwise."""
    write_dataset(tmp_path / "src.zarr", zarr_format)
    src = tmp_path / "in.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = xr.open_zarr(str(tmp_path / "src.zarr")).load()
        ds.to_zarr(str(src), group="g", zarr_format=zarr_format, consolidated=True)
        zarr.open_array(str(src), path="g/t", mode="r+").attrs["units"] = "degC"
        zarr.open_array(str(src), path="g/x", mode="r+").attrs["units"] = "m"
        group = zarr.open_group(str(src), path="g", mode="r+", use_consolidated=False)
        group.attrs["title"] = "new"
    seen = open_dataset(src, "g")  # xarray: the consolidated copy
    assert (seen["x"].attrs["units"], seen.attrs["title"]) == ("km", "a test field")
    cfg = config(tmp_path, input={"array": "g/t"}, output={"array": "t"})
    plan = pipeline.plan(cfg)
    (note,) = [n for n in plan.notes if "consolidated" in n]
    assert "title of the group" in note and "units of 't'" in note and "units of 'x'" in note
    assert pipeline.run(cfg).status == "complete"
    ds = open_dataset(tmp_path / "out.zarr")
    assert ds["t"].attrs["units"] == "degC" and ds["x"].attrs["units"] == "m"
    assert ds.attrs["title"] == "new"
    result = pipeline.verify(cfg)  # h65a: verify repeats the plan's note, passing
    assert result.ok and note in result.input_notes, result.input_notes


@pytest.mark.parametrize("zarr_format", [2, 3], ids=lambda f: f"v{f}")
def test_chunks_under_another_key_encoding_name_every_step_of_the_fix(
    tmp_path: Path, cli: Any, zarr_format: int
) -> None:
    """h65a: a Dataset's variable whose chunks lie under another chunk key encoding's keys
    than its metadata says (``0/0`` beside a v2 ``"dimension_separator": "."``, ``c.0.0``
    beside v3's default ``/``), its group consolidated as ``to_zarr`` leaves it: the plan's
    refusal named the setting to edit, and the edit alone met a second refusal, the
    consolidated copy stale. The line names both steps; done, the run and verify pass."""
    src = tmp_path / "in.zarr"
    write_dataset(src, zarr_format)
    folder = src / "t"
    if zarr_format == 2:
        chunks = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
        for p in chunks:  # 0.0 -> 0/0, as NestedDirectoryStore wrote them
            row, col = p.name.split(".")
            (folder / row).mkdir(exist_ok=True)
            p.rename(folder / row / col)
    else:
        chunks = sorted(p for p in (folder / "c").rglob("*") if p.is_file())
        for p in chunks:  # c/0/0 -> c.0.0
            p.rename(folder / ("c." + ".".join(p.relative_to(folder / "c").parts)))
        shutil.rmtree(folder / "c")
    cfg = tmp_path / "t.yaml"
    cfg.write_text(yaml.safe_dump(config(tmp_path)))
    rc, _, err = cli("plan", cfg)
    line = one_line_error(err)
    edit = "'dimension_separator'" if zarr_format == 2 else "'chunk_key_encoding'"
    assert rc == 1 and "zarr-python reads every element as the fill value" in line, err
    assert (
        "then consolidate the input's metadata again (zarr.consolidate_metadata on its store)"
        in line
    ), line
    meta = folder / (".zarray" if zarr_format == 2 else "zarr.json")
    doc = json.loads(meta.read_text())
    if zarr_format == 2:
        assert '("dimension_separator": "/" in its .zarray)' in line, line
        doc["dimension_separator"] = "/"
    else:
        assert '"separator": "."}} in its zarr.json)' in line, line
        doc["chunk_key_encoding"] = {"name": "default", "configuration": {"separator": "."}}
    meta.write_text(json.dumps(doc))
    rc, _, err = cli("plan", cfg)  # the edit alone: the copy is stale, the second refusal
    assert rc == 1 and "is stale" in one_line_error(err) and edit.strip("'") in err, err
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zarr-python's note that v3 does not specify it
        zarr.consolidate_metadata(str(src))
    rc, _, err = cli("run", cfg, "--progress", "none")
    assert rc == 0, err
    rc, _, err = cli("verify", cfg, "--all")
    assert rc == 0, err
    want = open_dataset(src)["t"].values
    assert same_bits(open_dataset(tmp_path / "out.zarr")["t"].values, reference(want))


@pytest.mark.parametrize("zarr_format", [2, 3], ids=lambda f: f"v{f}")
@pytest.mark.parametrize(
    "member, attribute, value",
    # _FillValue as xarray writes a float one into v3 attributes: 7.0 as base64 text
    [("t", "scale_factor", 2.0), ("t", "add_offset", 5.0), ("t", "_FillValue", "AAAAAAAAHEA=")],
    ids=["scale", "offset", "fill"],
)
def test_decoding_attributes_changed_after_consolidation_are_refused(
    tmp_path: Path, zarr_format: int, member: str, attribute: str, value: Any
) -> None:
    """A packing or masking attribute changed in an array's own metadata after consolidation:
    xr.open_zarr decodes with the consolidated copy's, the pipeline read the array's own, and
    an output of other values than xarray's was marked complete (helper-38: a scale_factor of
    2 for 0.5 gave 4x the values). Refused in one line, as a stale shape is."""
    src = tmp_path / "in.zarr"
    enc = {"t": {"dtype": "int16", "scale_factor": 0.5, "_FillValue": -1}}
    write_dataset(src, zarr_format, encoding=enc)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        arr = zarr.open_array(str(src), path=member, mode="r+", use_consolidated=False)
        if zarr_format == 2 and attribute == "_FillValue":
            pytest.skip("a v2 array's _FillValue is its fill value, a structure field")
        arr.attrs[attribute] = value
    before = file_states(src)
    with pytest.raises(InputError) as info:
        pipeline.run(config(tmp_path, input={"mask_and_scale": True}))
    e = info.value
    assert e.member == member and e.differs == [attribute], e
    assert len(str(e).splitlines()) == 1 and "consolidate" in e.fix
    assert not (tmp_path / "out.zarr").exists() and file_states(src) == before


@pytest.mark.parametrize(
    ("zarr_format", "edit", "how"),
    [(2, "scale", "packed"), (3, "scale", "packed"), (2, "fill", "masked")],
    ids=["v2-scale", "v3-scale", "v2-fill-past-float32"],
)
def test_a_stale_copy_is_said_before_the_decoding_its_own_metadata_asks_for(
    tmp_path: Path, zarr_format: int, edit: str, how: str
) -> None:
    """An array's own metadata edited after consolidation so that it is stored packed (a
    scale_factor added) or masked (a v2 fill value float32 cannot hold, which zarr-python
    reads as inf, xarray's _FillValue), run with input.mask_and_scale false: the plan had
    said only that it is stored packed or masked, and its fix, mask_and_scale: true, then
    met the stale copy's refusal (h66a). The stale copy is said first, naming the refusal
    its own metadata meets next; each fix followed as said, the input runs."""
    src = tmp_path / "in.zarr"
    write_dataset(src, zarr_format, encoding={"t": {"dtype": "float32"}})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if edit == "scale":
            arr = zarr.open_array(str(src), path="t", mode="r+", use_consolidated=False)
            arr.attrs["scale_factor"] = 2.0
        else:
            doc = json.loads((src / "t" / ".zarray").read_text())
            (src / "t" / ".zarray").write_text(json.dumps({**doc, "fill_value": 1e40}))
    before = file_states(src)
    with pytest.raises(InputError) as info:
        pipeline.run(config(tmp_path))
    e = info.value
    assert e.member == "t" and "consolidate" in e.fix and len(str(e).splitlines()) == 1, e
    then = f"; then, as its own metadata reads: input variable {src / 't'} is stored {how} ("
    assert str(e).startswith(f"the consolidated metadata of the input Dataset {src} is stale")
    assert then in str(e) and str(e).endswith(
        "set input.mask_and_scale: true to run the stages on the decoded values"
    ), e
    assert not (tmp_path / "out.zarr").exists() and file_states(src) == before
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(str(src))
    with pytest.raises(InputError, match=f"is stored {how} "):
        pipeline.run(config(tmp_path))
    run = config(tmp_path, input={"mask_and_scale": True})
    assert pipeline.run(run).status == "complete"
    got = open_dataset(tmp_path / "out.zarr")["t"].values
    np.testing.assert_allclose(got, reference(open_dataset(src)["t"].values), rtol=1e-6)


def test_a_time_coordinates_units_changed_after_consolidation_are_refused(
    tmp_path: Path,
) -> None:
    """A time coordinate's ``units`` changed in its own metadata after consolidation: xarray
    shows other dates than the output would carry (helper-38: 2024-01-02 read as
    2000-01-01T01:00). Refused; another ``units`` of a number (K to degC) stays a note."""
    src = tmp_path / "in.zarr"
    ds = xr.Dataset(
        {"t": (("time", "x"), np.ones((4, 3)))},
        coords={
            "time": np.arange("2024-01-01", "2024-01-05", dtype="datetime64[D]").astype("M8[ns]"),
            "x": ("x", np.arange(3.0)),
        },
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(str(src), zarr_format=3, consolidated=True)
        arr = zarr.open_array(str(src), path="time", mode="r+", use_consolidated=False)
        arr.attrs["units"] = "hours since 2000-01-01"
    cfg = config(tmp_path)
    with pytest.raises(InputError) as info:
        pipeline.run(cfg)
    assert info.value.member == "time" and info.value.differs == ["units"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(str(src))
        arr = zarr.open_array(str(src), path="x", mode="r+", use_consolidated=False)
        arr.attrs["units"] = "m"
    assert pipeline.run(cfg).status == "complete"


@pytest.mark.parametrize("zarr_format", [2, 3], ids=lambda f: f"v{f}")
def test_a_times_bounds_changed_after_consolidation_are_refused(
    tmp_path: Path, zarr_format: int
) -> None:
    """A time's ``bounds: tb`` added in its own metadata after consolidation (``tb`` without
    units): xr.open_zarr, reading the copy, shows ``tb`` as numbers; the output carried it
    beside the time, as the arrays' own metadata have it, and read as dates, with only a
    note that attributes differ (h57b). Refused in one line naming ``tb`` and the units, as
    a time's changed ``units`` are; consolidated again, ``tb`` comes out as xarray reads the
    input: dates, to the bit."""
    src = tmp_path / "in.zarr"
    ds = xr.Dataset(
        {
            "v": (("time",), np.arange(4.0) + 1.25, {"units": "K"}),
            "tb": (("time", "nv"), np.arange(8.0).reshape(4, 2) + 0.5),
        },
        coords={"time": ("time", np.arange(4.0), {"units": "hours since 2000-01-01"})},
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(str(src), zarr_format=zarr_format, consolidated=True)
        arr = zarr.open_array(str(src), path="time", mode="r+", use_consolidated=False)
        arr.attrs["bounds"] = "tb"
    assert open_dataset(src)["tb"].dtype == np.float64  # numbers, to xarray: the copy
    before = file_states(src)
    cfg = config(tmp_path, input={"array": "v"}, cluster=_THREADS)
    with pytest.raises(InputError) as info:
        pipeline.run(cfg)
    e = info.value
    assert (e.member, e.differs) == ("tb", ["units"]), e
    assert len(str(e).splitlines()) == 1 and "consolidate" in e.fix
    assert not (tmp_path / "out.zarr").exists() and file_states(src) == before
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(str(src))
    assert pipeline.run(cfg).status == "complete"
    want, got = open_dataset(src), open_dataset(tmp_path / "out.zarr")
    assert want["tb"].dtype.kind == "M" and same_bits(got["tb"].values, want["tb"].values)


def test_a_dataset_consolidated_only_in_its_group_is_read_from_its_arrays(
    tmp_path: Path,
) -> None:
    """A group with consolidated metadata of its own, the store's root without: xarray's
    ``consolidated=True`` looks at the root only, and the run failed there after taking the
    lock; the coordinates are read from each array's own metadata."""
    src = tmp_path / "src.zarr"
    write_dataset(src, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = xr.open_zarr(str(src)).load()
        ds.to_zarr(str(tmp_path / "in.zarr"), group="g", zarr_format=3, consolidated=False)
        zarr.consolidate_metadata(str(tmp_path / "in.zarr"), path="g")
    cfg = config(tmp_path, input={"array": "g/t"}, output={"array": "t"})
    assert pipeline.run(cfg).status == "complete"
    assert set(open_dataset(tmp_path / "out.zarr").coords) == {"y", "x", "lon"}


def test_a_variable_xarray_cannot_decode_beside_the_input_does_not_stop_a_run(
    tmp_path: Path,
) -> None:
    """The coordinates are written by xarray from the input Dataset: the other variables are
    not decoded (a time unit xarray cannot read had stopped the run when it created the
    output, leaving its run record behind)."""
    write_dataset(tmp_path / "in.zarr", 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zarr: v3 consolidated metadata is not in the spec
        g = zarr.open_group(str(tmp_path / "in.zarr"), mode="r+")
        g["p"].attrs["units"] = "days since the dawn"
        zarr.consolidate_metadata(str(tmp_path / "in.zarr"))
    pipeline.run(config(tmp_path))
    assert "t" in _opens_without_warnings(tmp_path / "out.zarr").data_vars


UNDECODABLE = {  # a time coordinate's attributes, its values, whether it is t's dimension
    "units": ({"units": "days since banana"}, [0.0, 1.0], True, ["units"]),
    # time units to xarray, which holds any with "since" so: the line had blamed the
    # coordinate's _FillValue (v3), or named no attribute (v2)
    "units-run-together": ({"units": "days_since_1970"}, [0.0, 1.0], True, ["units"]),
    "calendar": (
        {"units": "days since 2000-01-01", "calendar": "banana"},
        [0.0, 1.0],
        True,
        ["units", "calendar"],
    ),
    # not an index: xarray decodes its first and last values as it opens, the rest when read
    "value": ({"units": "days since 2000-01-01"}, [0.0, 1e30, 2.0], False, ["units"]),
}


def write_times(
    path: Path, zarr_format: int, attrs: dict[str, Any], values: list, dim: bool
) -> None:
    """A Dataset as xarray writes it: ``t`` and a coordinate ``time`` of numbers with the
    time ``attrs``, ``t``'s first dimension (an index) or, along ``x``, not an index."""
    n = len(values)
    ds = xr.Dataset(
        {"t": (("time" if dim else "y", "x"), np.ones((n, n)), {"units": "K"})},
        coords={"x": ("x", np.arange(n)), "time": ("time" if dim else "x", values, attrs)},
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(str(path), zarr_format=zarr_format, mode="w", consolidated=True)


@pytest.mark.parametrize("zarr_format", [2, 3], ids=lambda f: f"v{f}")
@pytest.mark.parametrize("case", list(UNDECODABLE))
def test_a_coordinate_xarray_cannot_decode_is_refused_in_the_plan(
    tmp_path: Path, zarr_format: int, case: str
) -> None:
    """A time coordinate whose units or calendar xarray cannot decode, or with a value out of
    range: ``xr.open_zarr`` of the input fails on it (opens with ``decode_times=False``), and
    the run failed as it wrote the coordinates, after the lock, leaving its run record and a
    traceback. Refused by the plan in one line naming the coordinate and its attributes; the
    variable alone (``output.array: ''``) runs."""
    attrs, values, dim, named = UNDECODABLE[case]
    src = tmp_path / "in.zarr"
    write_times(src, zarr_format, attrs, values, dim)
    with warnings.catch_warnings():  # what xarray does with it
        warnings.simplefilter("ignore")
        with pytest.raises((ValueError, ImportError, OverflowError)):
            xr.open_zarr(str(src)).load()
        assert xr.open_zarr(str(src), decode_times=False)["time"].attrs == attrs
    before = file_states(src)
    with pytest.raises(InputError) as info:
        pipeline.plan(config(tmp_path))
    e = info.value
    assert (e.variable, e.coordinate, e.attributes) == (str(src / "time"), "time", named)
    if case == "value" and importlib.util.find_spec("cftime") is None:
        # the units decode: the values are past datetime64's dates, or past any
        assert e.fix == "pip install cftime, correct the values, or output.array: ''"
    elif case == "value":  # past cftime's too: it had been told to correct the units
        assert e.fix == "correct the values, or output.array: ''"
    else:
        assert e.fix == f"correct {' and '.join(named)}, or output.array: ''"
    assert len(str(e).splitlines()) == 1 and str(src / "time") in str(e)
    with pytest.raises(InputError):
        pipeline.run(config(tmp_path))
    assert not (tmp_path / "out.zarr").exists()  # no run record left behind
    assert file_states(src) == before
    assert pipeline.run(config(tmp_path, output={"array": ""})).status == "complete"
    assert zarr.open_array(str(tmp_path / "out.zarr"), mode="r").shape == (len(values),) * 2


#: Metadata of a Dataset's member that zarr-python cannot read, as a real store has it: a
#: codec of a package not installed here (imagecodecs'), a data type it does not know.
UNREADABLE_MEMBER = {
    "codec": (
        lambda m: m.update(compressor={"id": "imagecodecs_jpeg2k", "level": 80}),
        lambda m: m["codecs"].append({"name": "imagecodecs_jpeg2k", "configuration": {}}),
    ),
    "data-type": (
        lambda m: m.update(dtype="<x9"),
        lambda m: m.update(data_type="r24"),
    ),
}


def _unreadable_member(src: Path, zarr_format: int, member: str, case: str) -> None:
    """Make the metadata of ``member`` of the Dataset at ``src`` one zarr-python cannot read,
    in its own document and in the group's consolidated copy alike."""
    edit = UNREADABLE_MEMBER[case][zarr_format - 2]
    own = src / member / (".zarray" if zarr_format == 2 else "zarr.json")
    doc = json.loads(own.read_text())
    edit(doc)
    own.write_text(json.dumps(doc))
    copy = src / (".zmetadata" if zarr_format == 2 else "zarr.json")
    doc = json.loads(copy.read_text())
    if zarr_format == 2:
        edit(doc["metadata"][f"{member}/.zarray"])
    else:
        edit(doc["consolidated_metadata"]["metadata"][member])
    copy.write_text(json.dumps(doc))


@pytest.mark.parametrize("zarr_format", [2, 3], ids=lambda f: f"v{f}")
@pytest.mark.parametrize("member", ["lon", "p"], ids=["coordinate", "other-variable"])
@pytest.mark.parametrize("case", list(UNREADABLE_MEMBER))
def test_a_consolidated_group_zarr_cannot_read_is_refused_not_run_as_an_array_alone(
    tmp_path: Path, zarr_format: int, member: str, case: str
) -> None:
    """A Dataset whose consolidated copy holds a member that zarr-python cannot read (a
    codec of a package not installed, a data type it does not know): ``xr.open_zarr`` of the
    input fails. The group failing to open had been taken for no group at all: the variable
    run as an array alone, written at the output store's root without its coordinates, the
    run saying nothing (the same group unconsolidated was refused, in the plan's trial
    write). Refused in one line naming the group, zarr's reason and the fix, nothing
    written; the variable alone (``output.array: ''``) runs, bit for bit."""
    src = tmp_path / "in.zarr"
    write_dataset(src, zarr_format)
    _unreadable_member(src, zarr_format, member, case)
    with warnings.catch_warnings():  # what xarray does with it
        warnings.simplefilter("ignore")
        with pytest.raises(Exception):  # noqa: B017  (zarr's own, varied, errors)
            xr.open_zarr(str(src))
    before = file_states(src)
    for call in (pipeline.plan, pipeline.run):
        with pytest.raises(InputError) as info:
            call(config(tmp_path))
        e = info.value
        assert (e.variable, e.coordinate, e.fix) == (str(src), "", "output.array: ''")
        assert len(str(e).splitlines()) == 1 and str(src) in str(e), e
        assert "output.array: ''" in str(e) and e.reason in str(e), e
    assert not (tmp_path / "out.zarr").exists()
    assert file_states(src) == before
    assert pipeline.run(config(tmp_path, output={"array": ""})).status == "complete"
    t = zarr.open_array(str(src), path="t", mode="r")[...]
    out = zarr.open_array(str(tmp_path / "out.zarr"), mode="r")
    assert same_bits(out[...], ((t * 5) ** 2) * 2)
    assert out.attrs["units"] == "K"


def _a_member_zarr_cannot_read_refused(
    tmp_path: Path, src: Path, zarr_format: int, member: str, dtype: str | None = None
) -> str:
    """Drop the Dataset ``src``'s consolidated metadata, see ``xr.open_zarr`` fail on its
    ``member`` that zarr-python cannot read, and check that plan and run refuse it in one
    line naming that member's document (``status`` 'unreadable', ``dtype`` where given),
    nothing written, the input as it was; then that the variable alone (``output.array:
    ''``) runs, bit for bit. The line, for the caller's own checks."""
    if zarr_format == 2:
        (src / ".zmetadata").unlink()
    else:
        root = json.loads((src / "zarr.json").read_text())
        root.pop("consolidated_metadata")
        (src / "zarr.json").write_text(json.dumps(root))
    with warnings.catch_warnings():  # what xarray does with it
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError):
            xr.open_zarr(str(src), consolidated=False)
    doc = src / member / (".zarray" if zarr_format == 2 else "zarr.json")
    before = file_states(src)
    lines = []
    for call in (pipeline.plan, pipeline.run):
        with pytest.raises(InputError) as info:
            call(config(tmp_path))
        e = info.value
        assert (e.store, e.status) == (str(doc), "unreadable"), e
        assert dtype is None or e.dtype == dtype, e
        line = str(e)
        assert len(line.splitlines()) == 1 and line.startswith(f"{doc} (another member"), e
        lines.append(line)
    assert lines[0] == lines[1], lines
    assert not (tmp_path / "out.zarr").exists()
    assert file_states(src) == before
    assert pipeline.run(config(tmp_path, output={"array": ""})).status == "complete"
    t = zarr.open_array(str(src), path="t", mode="r")[...]
    out = zarr.open_array(str(tmp_path / "out.zarr"), mode="r")
    assert same_bits(out[...], ((t * 5) ** 2) * 2)
    return lines[0]


@pytest.mark.parametrize("zarr_format", [2, 3], ids=lambda f: f"v{f}")
@pytest.mark.parametrize("member", ["lon", "p"], ids=["coordinate", "other-variable"])
def test_an_unconsolidated_dataset_member_zarr_cannot_read_is_named_by_its_document(
    tmp_path: Path, zarr_format: int, member: str
) -> None:
    """A Dataset without consolidated metadata whose other member (a coordinate, another
    variable) has a data type zarr-python does not know: ``xr.open_zarr`` fails on the input.
    Refused in one line naming that member's document, zarr-python's reason and both fixes
    (mend it, or ``output.array: ''``), nothing written; it had been "xarray cannot read and
    write the coordinates of the input Dataset ..." naming neither the member nor its
    document. The variable alone runs, bit for bit."""
    src = tmp_path / "in.zarr"
    write_dataset(src, zarr_format)
    _unreadable_member(src, zarr_format, member, "data-type")
    line = _a_member_zarr_cannot_read_refused(tmp_path, src, zarr_format, member)
    assert "zarr-python cannot read" in line and "output.array: ''" in line, line


@pytest.mark.parametrize("zarr_format", [2, 3], ids=lambda f: f"v{f}")
def test_a_dataset_member_of_a_data_type_zarr_python_does_not_read_is_not_to_be_mended(
    tmp_path: Path, zarr_format: int
) -> None:
    """A Dataset (unconsolidated) whose other variable ``p`` tensorstore wrote as bfloat16,
    which zarr-python does not read, so ``xr.open_zarr`` fails on the input. The line had
    said to "mend the value it names in that document", where no edit of the name reads
    the bytes as what they are; it names the member's document, its data type and the
    fixes (convert it, or ``output.array: ''``), nothing written. The variable alone runs."""
    ts = pytest.importorskip("tensorstore")
    src = tmp_path / "in.zarr"
    write_dataset(src, zarr_format)
    shutil.rmtree(src / "p")
    meta: dict[str, Any] = {"shape": [ROWS]}
    if zarr_format == 2:
        meta["chunks"] = [10]
        driver = "zarr"
    else:
        meta["chunk_grid"] = {"name": "regular", "configuration": {"chunk_shape": [10]}}
        meta["dimension_names"] = ["y"]
        driver = "zarr3"
    spec = {"driver": driver, "kvstore": {"driver": "file", "path": str(src / "p")}}
    p = ts.open({**spec, "dtype": "bfloat16", "metadata": meta}, create=True).result()
    p.write(np.linspace(900, 1000, ROWS).astype(p.dtype.numpy_dtype)).result()
    if zarr_format == 2:
        (src / "p" / ".zattrs").write_text(json.dumps({"_ARRAY_DIMENSIONS": ["y"]}))
    line = _a_member_zarr_cannot_read_refused(tmp_path, src, zarr_format, "p", "bfloat16")
    assert "names the data type bfloat16, which zarr-python cannot read" in line, line
    assert "convert that array first" in line and "output.array: ''" in line, line
    assert "mend" not in line, line


@pytest.mark.parametrize("consolidated", [True, False], ids=["consolidated", "unconsolidated"])
def test_a_coordinate_whose_codec_is_not_installed_is_said_so_not_blamed_on_its_fill_value(
    tmp_path: Path, consolidated: bool
) -> None:
    """A v3 Dataset whose coordinate ``lon`` is stored with ``numcodecs.pcodec``, where pcodec
    is not installed: zarr-python opens it and fails as it decodes, so ``xr.open_zarr`` fails
    on the input. The refusal had blamed the coordinate's ``_FillValue`` ("correct _FillValue
    in the input"); it names lon's zarr.json, the codec and `pip install pcodec`, with
    ``output.array: ''``, which runs."""
    import importlib.util

    if importlib.util.find_spec("pcodec") is not None:
        pytest.skip("pcodec is installed here: the codec has an implementation")
    src = tmp_path / "in.zarr"
    write_dataset(src, 3)
    pcodec = [{"name": "numcodecs.pcodec", "configuration": {"level": 8}}]
    doc = json.loads((src / "lon" / "zarr.json").read_text())
    doc["codecs"] = pcodec
    (src / "lon" / "zarr.json").write_text(json.dumps(doc))
    root = json.loads((src / "zarr.json").read_text())
    if consolidated:
        root["consolidated_metadata"]["metadata"]["lon"]["codecs"] = pcodec
    else:
        root.pop("consolidated_metadata", None)
    (src / "zarr.json").write_text(json.dumps(root))
    before = file_states(src)
    with pytest.raises(InputError) as info:
        pipeline.plan(config(tmp_path))
    e = info.value
    line = str(e)
    assert (e.store, e.codec) == (str(src / "lon" / "zarr.json"), "numcodecs.pcodec"), e
    assert line.startswith(f"{src / 'lon' / 'zarr.json'} names the codec 'numcodecs.pcodec'")
    assert "`pip install pcodec`" in line and "output.array: ''" in line, line
    assert "_FillValue" not in line and len(line.splitlines()) == 1, line
    assert not (tmp_path / "out.zarr").exists()
    assert file_states(src) == before
    assert pipeline.run(config(tmp_path, output={"array": ""})).status == "complete"


@pytest.mark.parametrize(
    ("zarr_format", "coord", "layout"),
    [
        (2, "x", "one-chunk"),
        (2, "lon", "one-chunk"),
        (3, "x", "one-chunk"),
        (3, "lon", "one-chunk"),
        (2, "x", "small-blosc-frames"),
        (3, "lon", "delta-filter-small-blosc-frames"),
        (3, "lon", "delta-filter-shard-index-into-itself"),
    ],
    ids=lambda v: f"v{v}" if isinstance(v, int) else v,
)
def test_a_damaged_chunk_of_a_carried_coordinate_is_named_before_anything_is_written(
    tmp_path: Path, zarr_format: int, coord: str, layout: str
) -> None:
    """A Dataset as xarray writes it whose coordinate's stored chunk was cut to half its
    bytes (the dimension coordinate x, or lon): one ChunkError naming the input store and the
    chunk's key, from plan and run, nothing written, the input untouched; ``output.array: ''``
    then runs. A cut Blosc frame of a small chunk (v2's default codec stores its bytes as they
    are) had been read by zarr-python, and so xarray, from whatever memory followed it: the
    output's coordinate held those bytes and was marked complete, also where the chain is one
    only Zarr decodes (a ``numcodecs.delta`` filter); other cut frames had been blamed on the
    coordinate ("correct the coordinate", v3's on its ``_FillValue``). h55f: a shard of such a
    chain, uncompressed, whose index (bytes alone) points into itself, which zarr-python read
    from the index's bytes."""
    from zarr.codecs import BloscCodec, BytesCodec, ShardingCodec
    from zarr.codecs.numcodecs import Delta

    encoding: dict[str, Any] | None = None
    if layout != "one-chunk":
        encoding = {"chunks": (5,)}
    sharded = layout == "delta-filter-shard-index-into-itself"
    if layout.startswith("delta"):
        with warnings.catch_warnings():  # numcodecs' codecs are not in the v3 spec
            warnings.simplefilter("ignore")
            encoding["filters"] = [Delta(dtype="<f8")]
        encoding["compressors"] = [BloscCodec(cname="lz4", shuffle="shuffle")]
    if sharded:  # shards of 4 chunks, uncompressed, the index with no crc32c
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            inner = [Delta(dtype="<f8"), BytesCodec()]
        encoding = {
            "chunks": (20,),
            "serializer": ShardingCodec(
                chunk_shape=(5,), codecs=inner, index_codecs=[BytesCodec()]
            ),
            "compressors": None,
        }
    src = tmp_path / "in.zarr"
    write_dataset(src, zarr_format, coord_encoding=encoding)
    first = "0" if layout == "one-chunk" else "1"
    key = f"{coord}/{first}" if zarr_format == 2 else f"{coord}/c/{first}"
    raw = (src / key).read_bytes()
    if sharded:  # the first chunk's entry moved 8 bytes into the 64-byte index
        table = np.frombuffer(raw[-64:], "<u8").reshape(4, 2).copy()
        table[0, 0] = len(raw) - 64 - int(table[0, 1]) + 8
        (src / key).write_bytes(raw[:-64] + table.tobytes())
    else:
        (src / key).write_bytes(raw[: len(raw) // 2])
    before = file_states(src)
    for call in (pipeline.plan, pipeline.run):
        with pytest.raises(ChunkError) as info:
            call(config(tmp_path))
        e = info.value
        line = str(e)
        assert (e.store, e.key) == (str(src), key), e
        assert line.startswith(f"input chunk {key!r} of {src} (of {coord},"), line
        assert "_FillValue" not in line and len(line.splitlines()) == 1, line
        assert "output.array: ''" in line, line
        assert not (tmp_path / "out.zarr").exists()
    assert file_states(src) == before
    assert pipeline.run(config(tmp_path, output={"array": ""})).status == "complete"


def test_a_carried_coordinates_damaged_shard_names_its_inner_chunk(tmp_path: Path) -> None:
    """A coordinate stored in shards of 4 zstd chunks (a layout the pipeline decodes itself),
    one inner chunk's frame damaged: the line names that inner chunk by its coordinates in the
    shard, as a run names the variable's own (it had named the shard alone)."""
    from zarr.codecs import BytesCodec, ShardingCodec, ZstdCodec

    shards = {
        "chunks": (20,),
        "serializer": ShardingCodec(chunk_shape=(5,), codecs=[BytesCodec(), ZstdCodec()]),
        "compressors": None,
    }
    src = tmp_path / "in.zarr"
    write_dataset(src, 3, coord_encoding=shards)
    key = "lon/c/1"
    raw = bytearray((src / key).read_bytes())
    table = np.frombuffer(bytes(raw[-68:-4]), "<u8").reshape(4, 2)
    raw[int(table[2, 0])] ^= 0xFF  # inner chunk 2's zstd magic number
    (src / key).write_bytes(bytes(raw))
    for call in (pipeline.plan, pipeline.run):
        with pytest.raises(ChunkError) as info:
            call(config(tmp_path))
        assert str(info.value) == (
            f"input chunk {key!r} of {src} (of lon, which the output carries beside the "
            "variable) is damaged: its zstd data does not decode: cut short or altered (49 "
            "bytes) (in the shard's inner chunk [2]); nothing was written: restore the chunk "
            "(or delete it, and it reads as the fill value), or set output.array: '' to write "
            "the variable alone, without its coordinates"
        )
    assert not (tmp_path / "out.zarr").exists()


@pytest.mark.parametrize("coord", ["x", "lon"])
def test_a_carried_coordinates_chunk_that_is_a_named_pipe_is_named_as_any_key(
    tmp_path: Path, coord: str
) -> None:
    """h86e: an input coordinate's chunk that is a named pipe (FIFO): the line said "is
    damaged: StoreError: ..." (the exception's class name inside it). It is the line of any
    key that is no file (:func:`pipeline.store.local_files.not_a_file_refusal`), nothing
    written; the plan does not wait on the pipe (each call ends: a hang fails the test's
    timeout)."""
    src = tmp_path / "in.zarr"
    write_dataset(src, 3, coord_encoding={"chunks": (20,)})
    key = f"{coord}/c/1"
    (src / key).unlink()
    os.mkfifo(src / key)
    for call in (pipeline.plan, pipeline.run):
        with pytest.raises(PipelineError) as info:
            call(config(tmp_path))
        line = str(info.value)
        assert line.startswith(f"{key!r} of {src} is a named pipe (FIFO), not a file"), line
        assert "StoreError" not in line and "damaged" not in line, line
        assert len(line.splitlines()) == 1, line
    assert not (tmp_path / "out.zarr").exists()


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_verify_names_a_carried_coordinates_chunk_damaged_since_the_run(
    tmp_path: Path, cli, zarr_format: int
) -> None:
    """h54c: a complete Dataset output whose input coordinate ``x`` (small Blosc frames) had
    a chunk cut short since the run. verify refused it with the plan's words, "nothing was
    written: restore the chunk ..., or set output.array: '' to write the variable alone": a
    config that verifies another output, not this one. One line naming the input store and
    the chunk's key, and the chunk restored as the fix; nothing modified."""
    from zarr.codecs import BloscCodec

    encoding: dict[str, Any] = {"chunks": (5,)}
    if zarr_format == 3:
        encoding["compressors"] = [BloscCodec(cname="lz4")]
    src = tmp_path / "in.zarr"
    write_dataset(src, zarr_format, coord_encoding=encoding)
    cfg = tmp_path / "t.yaml"
    cfg.write_text(yaml.safe_dump(config(tmp_path)))
    rc, _, err = cli("run", "--progress", "none", cfg)
    assert rc == 0, err
    key = "x/1" if zarr_format == 2 else "x/c/1"
    raw = (src / key).read_bytes()
    (src / key).write_bytes(raw[: len(raw) // 2])
    before, out_before = file_states(src), file_states(tmp_path / "out.zarr")
    rc, _, err = cli("verify", "--all", cfg)
    assert rc == 1
    line = one_line_error(err)
    assert line.startswith(f"error: input chunk {key!r} of {src} (of x,"), line
    assert line.endswith("; restore that chunk from its source"), line
    assert "output.array" not in line and "nothing was written" not in line, line
    assert file_states(src) == before and file_states(tmp_path / "out.zarr") == out_before


def test_verify_words_a_carried_coordinates_damaged_chunk_from_the_error_s_fields(
    tmp_path: Path,
) -> None:
    """h55b: verify's line for a carried coordinate's damaged chunk had been the plan's line
    split at "; nothing was written:", so a rewording of the run's line would have given
    verify the run's fix again ("or set output.array: ''"). It is worded from the error's
    fields (``store``, ``key``, ``reason``, ``coordinate``), whatever the run's line says."""
    from zarr.codecs import BloscCodec

    from pipeline.reporting import verify

    src = tmp_path / "in.zarr"
    write_dataset(src, 3, coord_encoding={"chunks": (5,), "compressors": [BloscCodec()]})
    raw = (src / "x" / "c" / "1").read_bytes()
    (src / "x" / "c" / "1").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ChunkError) as info:
        pipeline.plan(config(tmp_path))
    e = info.value
    assert e.coordinate == "x", e.data
    line = str(verify._carried_damage(e))
    assert line == (
        f"input chunk 'x/c/1' of {src} (of x, which the output carries beside the variable) "
        f"is damaged: {e.reason}; restore that chunk from its source"
    ), line
    reworded = ChunkError("chunk x/c/1 is damaged, so no output was made", **e.data)
    assert str(verify._carried_damage(reworded)) == line


@pytest.mark.parametrize("zarr_format", [2, 3], ids=lambda f: f"v{f}")
def test_carried_coordinates_keep_a_v3_input_s_codecs_and_shards(
    tmp_path: Path, cli, zarr_format: int
) -> None:
    """h79d: the coordinates of a Zarr v3 input are carried as the input stores them, so
    ``out[c].encoding`` is the input's (README): ``x`` and ``lon`` stored in shards of 4
    chunks, Blosc-zstd, had been written unsharded (a file per chunk) with zarr-python's
    default zstd, their codecs and shards lost. Now each keeps the input's shards and codecs
    (zarr.json's ``codecs`` the input's), tensorstore reads the same bits, and verify passes.
    A Zarr v2 input's coordinates are written with zarr-python's default codec and their
    chunks (README), as before."""
    from zarr.codecs import BloscCodec

    encoding: dict[str, Any] = {"chunks": (5,)}
    if zarr_format == 3:
        encoding.update(shards=(20,), compressors=[BloscCodec(cname="zstd", clevel=5)])
    src = tmp_path / "in.zarr"
    write_dataset(src, zarr_format, coord_encoding=encoding)
    cfg = tmp_path / "t.yaml"
    cfg.write_text(yaml.safe_dump(config(tmp_path, cluster=_THREADS)))
    rc, _, err = cli("run", "--progress", "none", cfg)
    assert rc == 0, err
    out, before = open_dataset(tmp_path / "out.zarr"), open_dataset(src)
    for name in ("x", "lon"):
        assert same_bits(out[name].values, before[name].values), name
        got, want = out[name].encoding, before[name].encoding
        assert got["chunks"] == (5,) and got.get("shards") == want.get("shards"), (name, got)
        meta = json.loads((tmp_path / "out.zarr" / name / "zarr.json").read_text())
        if zarr_format == 3:
            assert got["shards"] == (20,), (name, got)
            assert repr(got["compressors"]) == repr(want["compressors"]), (name, got)
            written = json.loads((src / name / "zarr.json").read_text())
            assert (meta["chunk_grid"], meta["codecs"]) == (
                written["chunk_grid"],
                written["codecs"],
            ), name
            assert sorted(os.listdir(tmp_path / "out.zarr" / name / "c")) == ["0", "1", "2"]
        else:  # zarr-python's default codec, unsharded
            assert [c["name"] for c in meta["codecs"]] == ["bytes", "zstd"], meta["codecs"]
        ts = pytest.importorskip("tensorstore")
        stored = ts.open(
            {
                "driver": "zarr3",
                "kvstore": {"driver": "file", "path": str(tmp_path / "out.zarr" / name)},
            }
        ).result()
        read = stored.read().result()
        assert same_bits(read, zarr.open_array(tmp_path / "out.zarr", path=name, mode="r")[:])
    rc, text, err = cli("verify", "--all", cfg)
    assert rc == 0, err + text


def test_a_carried_coordinates_edited_dtype_is_said_as_its_metadata(tmp_path: Path) -> None:
    """A Dataset (xarray, v3, unconsolidated) whose coordinate ``x`` has had its
    ``data_type`` edited by hand (int64 to int32) since its chunks were written: every chunk
    decodes to twice the bytes its metadata says. h69e: the plan said one chunk damaged,
    "restore the chunk". It says the coordinate's metadata does not match its chunks as
    written, before anything is written, and verify words it from the error's fields with the
    metadata as the fix; the input is never modified."""
    from pipeline.reporting import verify

    src = tmp_path / "in.zarr"
    write_dataset(src, 3, coord_encoding={"chunks": (5,)})
    for doc in (src / "zarr.json",):  # the group's consolidated copy: gone, not stale
        meta = json.loads(doc.read_text())
        meta.pop("consolidated_metadata", None)
        doc.write_text(json.dumps(meta))
    doc = src / "x" / "zarr.json"
    meta = json.loads(doc.read_text())
    assert meta["data_type"] == "int64", meta
    doc.write_text(json.dumps({**meta, "data_type": "int32"}))
    before = file_states(src)
    with pytest.raises(ChunkError) as info:
        pipeline.plan(config(tmp_path))
    e = info.value
    line = str(e)
    assert e.coordinate == "x" and e.misfit == "metadata" and e.file == str(doc), e.data
    assert line.startswith(
        f"input {src}/x (x, which the output carries beside the variable) does not match its "
        "metadata: its chunks 'x/c/0', 'x/c/1' and "
    ), line
    assert "x/zarr.json (dtype int32, chunk shape [5]) says 20 (40 bytes: 5 elements of " in line
    assert "nothing was written: write back the dtype and chunk shape they were" in line, line
    said = str(verify._carried_damage(e))
    assert said.startswith(f"input {src}/x (x, which the output") and said.endswith(
        "; write back the dtype and chunk shape they were written with"
    ), said
    assert "output.array" not in said, said
    assert not (tmp_path / "out.zarr").exists()
    assert file_states(src) == before


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_a_variables_edited_dtype_is_refused_by_the_plan_as_its_metadata(
    tmp_path: Path, cli, zarr_format: int
) -> None:
    """A Dataset (xarray, v2 and v3) whose variable ``t`` has had its dtype edited by hand
    (float64 to float32, in its own document and the consolidated copy alike) since its
    chunks were written: h72d: the run said so at its first chunk read, the output made and
    left incomplete. The plan decodes one stored chunk of the variable and refuses it, the
    run's line ending "nothing was written", before anything is written; the input is never
    modified."""
    src = tmp_path / "in.zarr"
    write_dataset(src, zarr_format)
    if zarr_format == 3:
        doc, key, edit = src / "t" / "zarr.json", "data_type", "float32"
        meta = json.loads((src / "zarr.json").read_text())
        meta["consolidated_metadata"]["metadata"]["t"][key] = edit
        (src / "zarr.json").write_text(json.dumps(meta))
    else:
        doc, key, edit = src / "t" / ".zarray", "dtype", "<f4"
        meta = json.loads((src / ".zmetadata").read_text())
        meta["metadata"]["t/.zarray"][key] = edit
        (src / ".zmetadata").write_text(json.dumps(meta))
    meta = json.loads(doc.read_text())
    doc.write_text(json.dumps({**meta, key: edit}))
    before = file_states(src)
    with pytest.raises(ChunkError) as info:
        pipeline.plan(config(tmp_path))
    e, line = info.value, str(info.value)
    assert e.misfit == "metadata" and e.file == str(doc) and e.problem == "size", e.data
    assert line.startswith(f"input {src}/t does not match its metadata: its chunks "), line
    assert (
        f"(dtype float32, chunk shape [10, {COLS}]) says {40 * COLS} ({80 * COLS} bytes: " in line
    )
    assert line.endswith(
        "; nothing was written: write back the dtype and chunk shape they were written with"
    ), line
    cfg = tmp_path / "t.yaml"
    cfg.write_text(yaml.safe_dump(config(tmp_path)))
    rc, _, err = cli("run", "--progress", "none", cfg)
    assert rc != 0 and err.strip().endswith(line), err
    assert not (tmp_path / "out.zarr").exists()
    assert file_states(src) == before


def test_verify_names_the_damaged_chunk_of_an_output_coordinate(tmp_path: Path, cli) -> None:
    """h54c: a complete Dataset output whose coordinate ``x`` had its stored chunk cut short
    since the run: verify said "x's chunks or metadata, which zarr-python cannot read". It
    names the chunk by its key, and the codec's reason, in its one line."""
    write_dataset(tmp_path / "in.zarr", 3)
    cfg = tmp_path / "t.yaml"
    cfg.write_text(yaml.safe_dump(config(tmp_path)))
    rc, _, err = cli("run", "--progress", "none", cfg)
    assert rc == 0, err
    out = tmp_path / "out.zarr"
    chunk = next(p for p in sorted((out / "x" / "c").rglob("*")) if p.is_file())
    chunk.write_bytes(chunk.read_bytes()[: chunk.stat().st_size // 2])
    before = file_states(out)
    rc, _, err = cli("verify", "--all", cfg)
    assert rc == 1
    line = one_line_error(err)
    key = chunk.relative_to(out).as_posix()
    assert f"x's chunk {key!r}, which is damaged (" in line, line
    assert "`run --overwrite`" in line, line
    assert file_states(out) == before


def test_a_calendar_only_cftime_decodes_needs_cftime(tmp_path: Path) -> None:
    """A 360-day calendar, which xarray decodes with cftime only: without cftime refused,
    naming it as the fix; with it, the coordinate comes out as xarray opens it."""
    import importlib.util

    attrs = {"units": "days since 2000-01-01", "calendar": "360_day"}
    write_times(tmp_path / "in.zarr", 3, attrs, [0.0, 1.0, 2.0], True)
    if importlib.util.find_spec("cftime") is None:
        with pytest.raises(InputError) as info:
            pipeline.run(config(tmp_path))
        assert info.value.fix == "pip install cftime" and "'360_day'" in str(info.value)
        assert not (tmp_path / "out.zarr").exists()
        return
    assert pipeline.run(config(tmp_path)).status == "complete"
    got, want = open_dataset(tmp_path / "out.zarr"), open_dataset(tmp_path / "in.zarr")
    assert list(got["time"].values) == list(want["time"].values)


@pytest.mark.parametrize(
    ("units", "values"),
    [
        ("hours since 0001-01-01 00:00:00", [17522904.0, 17522910.0, 17522916.0]),  # NCEP's
        ("days since 1601-01-01", [146097.0, 146098.0, 146099.0]),  # Windows' epoch
    ],
    ids=["year-1", "year-1601"],
)
def test_a_reference_date_past_datetime64_needs_cftime_not_other_units(
    tmp_path: Path, units: str, values: list[float]
) -> None:
    """Times counted from a reference date that datetime64[ns] cannot hold (``hours since
    0001-01-01``, as reanalyses store theirs), their dates within it: xarray decodes them with
    cftime, and fails without it. The line told the user to correct the units and calendar
    in the input, which are right; it names ``pip install cftime``. With cftime the times
    come out as xarray opens them."""
    import importlib.util

    attrs = {"units": units, "calendar": "standard"}
    write_times(tmp_path / "in.zarr", 3, attrs, values, True)
    if importlib.util.find_spec("cftime") is None:
        with pytest.raises(InputError) as info:
            pipeline.plan(config(tmp_path))
        e = info.value
        assert e.fix == "pip install cftime" and e.attributes == ["units", "calendar"], str(e)
        assert "`pip install cftime`" in str(e) and "correct" not in str(e), str(e)
        assert len(str(e).splitlines()) == 1
        assert not (tmp_path / "out.zarr").exists()
        return
    assert pipeline.run(config(tmp_path)).status == "complete"
    got, want = open_dataset(tmp_path / "out.zarr"), open_dataset(tmp_path / "in.zarr")
    assert list(got["time"].values) == list(want["time"].values)


def test_a_run_from_an_unconsolidated_input_keeps_its_groups_other_outputs_complete(
    tmp_path: Path,
) -> None:
    """``t`` from a consolidated input, then ``p`` from an unconsolidated copy into the same
    output group: the group's consolidated metadata is kept current, so ``t`` is still
    complete (it had claimed to be incomplete, with no run record to resume from) and xarray
    opens both quietly."""
    write_dataset(tmp_path / "in.zarr", 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = xr.open_zarr(str(tmp_path / "in.zarr")).load()
        ds.to_zarr(str(tmp_path / "plain.zarr"), zarr_format=3, consolidated=False)
    pipeline.run(config(tmp_path))
    plain = {"store": str(tmp_path / "plain.zarr"), "array": "p"}
    pipeline.run(config(tmp_path, input=plain), overwrite=True)
    again = pipeline.run(config(tmp_path), resume=True)  # complete: nothing to do
    assert again.status.startswith("complete")
    out = _opens_without_warnings(tmp_path / "out.zarr")
    assert {"t", "p"} <= set(out.data_vars)


def test_a_directory_of_other_files_is_never_a_dataset_output(tmp_path: Path) -> None:
    write_dataset(tmp_path / "in.zarr", 3)
    (tmp_path / "out.zarr").mkdir()
    (tmp_path / "out.zarr" / "notes.txt").write_text("mine")
    for overwrite in (False, True):
        with pytest.raises(OutputError) as info:
            pipeline.run(config(tmp_path), overwrite=overwrite)
        assert info.value.status == "not-zarr"  # the variable's group, out.zarr, is not Zarr
        # the message names the folder that holds the files, not the absent variable
        assert str(info.value).startswith(f"{tmp_path / 'out.zarr'} is a directory"), info.value
    assert [p.name for p in (tmp_path / "out.zarr").iterdir()] == ["notes.txt"]


# --------------------------------------------------------------------------------------------
# A Dataset output interrupted, resumed, stale, overwritten.

KILL_COLS = 16


class Killed:
    """A packed v2 Dataset of many one-row blocks, the output of an uninterrupted run
    (``ref``), and a snapshot of the output of a run killed with SIGKILL midway."""

    def __init__(self, d: Path, rows: int) -> None:
        self.dir, self.rows = d, rows
        self.input, self.output = d / "in.zarr", d / "out.zarr"
        self.ref, self.snapshot = d / "ref.zarr", d / "killed.snapshot"

    def config(self, name: str = "run.yaml", **changes: Any) -> Path:
        doc = {
            "input": {"store": str(self.input), "array": "t", "mask_and_scale": True},
            "output": {"store": str(self.output)},
            "stages": STAGES,
            "backend": "cpu",
            "chunking": {"block": [1, KILL_COLS]},
            "cluster": {"workers": 2, "threads_per_worker": 1, "dashboard": ""},
        }
        for key, value in changes.items():
            doc[key] = {**doc[key], **value} if isinstance(value, dict) else value
        p = self.dir / name
        p.write_text(yaml.safe_dump(doc, sort_keys=False))
        return p

    def restore(self) -> None:
        copy_store(self.snapshot, self.output)


@pytest.fixture(scope="module")
def killed(tmp_path_factory: pytest.TempPathFactory) -> Killed:
    from pipeline.cli import main

    rows = 300
    for _ in range(3):  # a machine fast enough to finish before the kill gets a larger input
        k = Killed(tmp_path_factory.mktemp("killed"), rows)
        write_dataset(k.input, 2, PACKED, rows=rows, cols=KILL_COLS, chunks=(1, KILL_COLS))
        cfg = k.config()
        assert main(["-q", "run", str(cfg), "--progress", "none"]) == 0
        k.output.rename(k.ref)  # the uninterrupted run, written at the same path
        stopped = run_and_signal(cfg, k.output / "t", signal.SIGKILL, cwd=k.dir)
        if stopped is not None:
            kill_procs(wait_gone(stopped.children, timeout=30))
            if 0 < markers(k.output / "t") < rows:
                copy_store(k.output, k.snapshot)
                return k
        rows *= 4
    pytest.fail("could not stop a run midway: every run finished before the kill")


def status_seen_by_xarray(store: Path) -> str:
    return record_of(open_dataset(store, load=False)["t"].attrs)["status"]


def _rewrite_frame(store: Path, what: str) -> None:
    """Rewrite, in the Dataset at ``store``, the coordinate ``lon``'s values (same size) or
    the group's ``title``, and consolidate its metadata again, as xarray would see it."""
    if what == "coordinate":
        lon = zarr.open_array(str(store), path="lon", mode="r+")
        lon[...] = lon[...] + 1
    else:
        zarr.open_group(str(store), mode="r+").attrs["title"] = "another title"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(str(store))


@pytest.mark.parametrize("what", ["coordinate", "group attribute"])
def test_a_resume_refuses_an_input_whose_carried_coordinates_changed(
    tmp_path: Path, killed: Killed, what: str
) -> None:
    """The output carries the input group's coordinates and attributes, written when it is
    created: rewritten since, a resume of an interrupted output finished it, and one of a
    complete output said "nothing to do", keeping the old ones (helper-41). Refused, naming
    them (h60g: "the input's coordinates or its group's attributes changed", naming neither),
    the output untouched; with the input as it was, the resume goes on."""
    named = {
        "coordinate": "(its coordinate lon, which the output's copy holds otherwise (values: ",
        "group attribute": "(its group's attribute 'title' (changed))",
    }[what]
    killed.restore()
    before = file_states(killed.output)
    with set_aside(killed.input, "lon", ".zattrs", ".zmetadata"):  # the variable's own kept
        _rewrite_frame(killed.input, what)
        with pytest.raises(OutputError) as info:
            pipeline.run(killed.config(), resume=True)
        assert info.value.changed == ["input.coordinates"], info.value
        assert f"the input changed what the output carries {named}" in str(info.value)
    assert file_states(killed.output) == before
    assert pipeline.run(killed.config(), resume=True).status == "complete"
    write_dataset(tmp_path / "in.zarr", 3)
    assert pipeline.run(config(tmp_path)).status == "complete"
    _rewrite_frame(tmp_path / "in.zarr", what)
    with pytest.raises(OutputError) as info:
        pipeline.run(config(tmp_path), resume=True)
    assert info.value.changed == ["input.coordinates"], info.value
    assert f"the input changed what the output carries {named}" in str(info.value)


@pytest.mark.parametrize("what", ["coordinate", "group attribute", "consolidated only"])
def test_verify_fails_when_what_the_output_carries_changed(tmp_path: Path, cli, what: str) -> None:
    """verify compared the variable's values only: a rewritten coordinate or group attribute
    (which a resume refuses), or a consolidated copy made stale by a ``scale_factor`` edited in
    it alone (which xarray reads), passed with exit 0 (helper-43). Each fails in one line,
    naming what changed (h60g: "the coordinates and attributes the output carries, were
    rewritten", naming neither)."""
    write_dataset(tmp_path / "in.zarr", 2, PACKED)
    cfg = tmp_path / "t.yaml"
    cfg.write_text(yaml.safe_dump(config(tmp_path, input={"mask_and_scale": True})))
    rc, _, err = cli("run", cfg)
    assert rc == 0, err
    if what == "consolidated only":
        meta = json.loads((tmp_path / "in.zarr" / ".zmetadata").read_text())
        meta["metadata"]["t/.zattrs"]["scale_factor"] = 0.02
        (tmp_path / "in.zarr" / ".zmetadata").write_text(json.dumps(meta))
    else:
        _rewrite_frame(tmp_path / "in.zarr", what)
    rc, out, err = cli("verify", "--all", cfg)
    assert rc == 1, out
    line = one_line_error(err)
    assert ("stale" if what == "consolidated only" else "input changed") in line, line
    if what == "coordinate":
        assert "(its coordinate lon, which the output's copy holds otherwise (values: " in line
    elif what == "group attribute":
        assert "(its group's attribute 'title' (changed))" in line, line


def test_a_coordinate_new_in_the_input_is_named_as_one_the_output_does_not_hold(
    tmp_path: Path, cli
) -> None:
    """A coordinate added to the input's Dataset since the run (on the variable's dimension,
    so carried by a run now): ``run --resume`` and ``verify`` refuse the output, and named it
    as "chunks or metadata, which zarr-python cannot read" (h78d), where the output holds no
    such array at all. They say that the output does not hold it."""
    write_dataset(tmp_path / "in.zarr", 3)
    cfg = tmp_path / "t.yaml"
    cfg.write_text(yaml.safe_dump(config(tmp_path)))
    rc, _, err = cli("run", cfg)
    assert rc == 0, err
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = xr.open_zarr(tmp_path / "in.zarr").load()
        ds.assign_coords(lab=("x", np.arange(COLS))).to_zarr(tmp_path / "in.zarr", mode="w")
    rc, _, err = cli("run", cfg, "--resume")
    assert rc == 1
    line = one_line_error(err)
    assert "(its coordinate lab, which the output does not hold)" in line, line
    assert "cannot read" not in line, line
    rc, out, err = cli("verify", cfg)
    assert rc == 1, out
    line = one_line_error(err)
    assert "its coordinate lab, which the output does not hold" in line, line
    assert "cannot read" not in line, line
    result = pipeline.verify(config(tmp_path))
    assert not result.ok and result.input_changed
    assert "cannot read" not in " ".join(result.coordinate_differences), result


def test_verify_fails_on_an_output_coordinate_edited_after_the_run(tmp_path: Path, cli) -> None:
    """The output's ``lon`` edited after the run (consolidated again): xarray reads the
    output's values at other places, and verify passed, comparing values only (helper-45).
    It fails in one line naming the coordinate."""
    write_dataset(tmp_path / "in.zarr", 3)
    cfg = tmp_path / "t.yaml"
    cfg.write_text(yaml.safe_dump(config(tmp_path)))
    rc, _, err = cli("run", cfg)
    assert rc == 0, err
    rc, out, err = cli("verify", "--all", cfg)
    assert rc == 0, err + out
    lon = zarr.open_array(str(tmp_path / "out.zarr"), path="lon", mode="r+")
    lon[...] = lon[...] + 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(str(tmp_path / "out.zarr"))
    rc, out, err = cli("verify", "--all", cfg)
    assert rc == 1, out
    line = one_line_error(err)
    assert "coordinates lon are not the input's" in line, line
    assert "lon's values: 60 of 60 elements differ, the first at [0]: 6.0, not 5.0" in line, line


def _edit_output(store: Path, edit: str, consolidate: bool = True) -> str:
    """Edit the output Dataset at ``store`` after its run, as a user with zarr-python would:
    ``edit`` one of :data:`EDITS`; its metadata consolidated again, as xarray would see it.
    The words the refusal names it by."""
    if edit == "coordinate values":
        x = zarr.open_array(str(store), path="x", mode="r+")
        x[...] = x[...] + 100
        said = "its coordinate x's values: "
    elif edit == "coordinate attribute":
        zarr.open_array(str(store), path="x", mode="r+").attrs["units"] = "m"
        said = "its coordinate x's units attribute"
    elif edit == "coordinate removed":
        shutil.rmtree(store / "lon")
        said = "its coordinate lon is gone or unreadable"
    elif edit == "dtype":
        _edit_json(store / "t" / "zarr.json", lambda d: d.update(data_type="int64", fill_value=0))
        said = "its metadata says [40, 60] int64"
    elif edit == "consolidated copy edited":
        _edit_json(
            store / "zarr.json",
            lambda d: d["consolidated_metadata"]["metadata"]["x"]["attributes"].update(units="m"),
        )
        return "the consolidated metadata of the root holds another units attribute of 'x'"
    else:
        zarr.open_array(str(store), path="t", mode="r+").attrs["units"] = "degC"
        said = "its units attribute"
    if consolidate:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            zarr.consolidate_metadata(str(store))
    return said


EDITS = ["coordinate values", "coordinate attribute", "coordinate removed", "own attribute"]
#: and what a resume writes again, which nothing rewrites in a complete output (an edited
#: consolidated copy `run --resume` writes again: test_verify_fails_on_output_metadata_...)
WHOLE_EDITS = [*EDITS, "dtype"]


@pytest.mark.parametrize("edit", WHOLE_EDITS)
def test_a_complete_output_edited_since_its_run_is_not_called_done(
    tmp_path: Path, cli, edit: str
) -> None:
    """A complete Dataset output whose coordinate ``x`` got other values, or another
    ``units``, or whose ``lon`` was deleted, or whose own ``units`` or dtype was edited,
    after the run (zarr-python): verify failed
    it, but `run --resume` said "already complete; nothing to do" (exit 0), `run --dry-run
    --resume` the same, and `plan` "complete: `run --overwrite` replaces it", as of a good
    output (helper-42B). Each refuses in one line naming the edit
    and `run --overwrite`, plain `run` too, writing nothing; `run --overwrite` writes it
    again, and verify passes."""
    write_dataset(tmp_path / "in.zarr", 3)
    cfg = tmp_path / "t.yaml"
    cfg.write_text(yaml.safe_dump(config(tmp_path)))
    rc, _, err = cli("run", cfg)
    assert rc == 0, err
    said = _edit_output(tmp_path / "out.zarr", edit)
    before = file_states(tmp_path / "out.zarr")
    for flags in (["--resume"], []):
        rc, out, err = cli("run", cfg, "--progress", "none", *flags)
        assert rc == 1 and "nothing to do" not in out + err, out + err
        line = one_line_error(err)
        assert "is complete, but it is not what the run wrote" in line, line
        assert said in line and "`run --overwrite` writes it again" in line, line
    rc, out, err = cli("run", cfg, "--dry-run", "--resume")
    assert rc == 1 and "nothing to do" not in out, out
    assert said in out and "this run is refused" in out, out
    rc, out, err = cli("plan", cfg)
    (row,) = [ln for ln in out.splitlines() if "output now" in ln]
    assert rc == 0 and "complete, but not what the run wrote" in row, out
    assert said in row and "`run --overwrite` writes it again" in row, row
    assert file_states(tmp_path / "out.zarr") == before
    rc, _, err = cli("run", cfg, "--overwrite", "--progress", "none")
    assert rc == 0, err
    rc, out, err = cli("verify", "--all", cfg)
    assert rc == 0, err + out
    rc, out, err = cli("run", cfg, "--resume", "--progress", "none")
    assert rc == 0 and "complete (nothing to do)" in out, err + out


def test_a_complete_array_whose_attributes_were_edited_is_not_called_done(
    tmp_path: Path, cli
) -> None:
    """The same of an array written alone (no Dataset, no coordinates): an attribute added
    to the complete output, which verify fails, was "nothing to do" to `run --resume`
    (helper-42B). Refused in one line naming it and `run --overwrite`."""
    make_array(tmp_path / "in.zarr", np.arange(64.0).reshape(8, 8), (4, 8))
    cfg = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr")
    rc, _, err = cli("run", cfg, "--progress", "none")
    assert rc == 0, err
    zarr.open_array(str(tmp_path / "out.zarr"), mode="r+").attrs["units"] = "K"
    rc, _, err = cli("run", cfg, "--resume", "--progress", "none")
    line = one_line_error(err)
    assert rc == 1 and "is complete, but it is not what the run wrote (its units attribute" in line
    assert "`run --overwrite` writes it again" in line, line
    rc, _, err = cli("verify", cfg)
    assert rc == 1 and "units attribute" in err, err


def test_files_an_os_writes_into_a_dataset_output_and_its_input_change_nothing(
    tmp_path: Path, cli
) -> None:
    """A ``.DS_Store`` (macOS Finder), ``Thumbs.db`` (Windows Explorer) and AppleDouble
    ``._0`` files in an output Dataset's group, in its variable's and its coordinates'
    folders, and in the input's coordinate folder: `plan` and `run --overwrite` had refused
    the output ("the coordinate array .../x, which it replaces, holds beside its metadata
    and chunks .DS_Store"), and `run --resume` the input ("the input's coordinates ...
    changed"). Each command now says what it says without them; `--overwrite` deletes those
    in the arrays it replaces, and writes the same Dataset again."""
    write_dataset(tmp_path / "in.zarr", 3, rows=8, cols=6, chunks=(4, 6))
    cfg = tmp_path / "run.yaml"
    cluster = {"workers": 1, "threads_per_worker": 1, "dashboard": ""}
    cfg.write_text(yaml.safe_dump(config(tmp_path, cluster=cluster), sort_keys=False))
    rc, _, err = cli("run", cfg, "--progress", "none")
    assert rc == 0, err
    out = tmp_path / "out.zarr"
    made = open_dataset(out)
    replaced = ["t/.DS_Store", "t/c/._0", "x/.DS_Store", "y/c/._0", "lon/Thumbs.db"]
    for rel in [".DS_Store", "Thumbs.db", *replaced]:
        (out / rel).write_bytes(b"\x00\x00\x00\x01Bud1")
    (tmp_path / "in.zarr" / "x" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    rc, text, err = cli("plan", cfg)
    assert rc == 0, err
    assert re.search(r"output now\s+complete: `run --overwrite` replaces it", text), text
    rc, text, err = cli("run", cfg, "--resume", "--progress", "none")
    assert rc == 0 and "nothing to do" in text + err, err
    rc, text, err = cli("verify", cfg)
    assert rc == 0 and re.search(r"output status\s+complete", text), err
    rc, _, err = cli("run", cfg, "--overwrite", "--progress", "none")
    assert rc == 0, err
    assert not [rel for rel in replaced if (out / rel).exists()]
    again = open_dataset(out)
    assert again.equals(made)  # the record's times aside, the same Dataset
    assert same_bits(again["t"].values, made["t"].values)


@pytest.mark.parametrize("edit", EDITS)
def test_a_resume_refuses_an_output_whose_coordinates_were_edited_since(
    killed: Killed, edit: str
) -> None:
    """An interrupted Dataset output whose coordinates were edited (or one removed) before
    its resume: the resume never writes them again, and marked the output complete with the
    edit in it, which verify then failed (helper-42B; its own attributes were refused
    already, brk59). Refused, naming the edit, the output untouched; `--overwrite` starts
    over."""
    killed.restore()
    said = _edit_output(killed.output, edit, consolidate=False)
    before = file_states(killed.output)
    with pytest.raises(OutputError) as info:
        pipeline.run(killed.config(), resume=True)
    assert info.value.changed == ["metadata" if edit == "own attribute" else "coordinates"]
    assert said in str(info.value)
    assert "`pipeline.run(config, overwrite=True)` starts over" in str(info.value)
    assert str(info.value).startswith("cannot resume "), info.value
    assert file_states(killed.output) == before
    assert pipeline.run(killed.config(), overwrite=True).status == "complete"


def _edit_json(path: Path, edit: Any, reconsolidate: Path | None = None) -> None:
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))
    if reconsolidate is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            zarr.consolidate_metadata(str(reconsolidate))


#: Edits of an output variable ``results/t`` after its run, each with what verify names:
#: (edit of the store's root, words of the one line). The consolidated copies are the output
#: group's ``zarr.json`` and the root's; the own ones are consolidated again after the edit.
OUTPUT_EDITS: dict[str, tuple[Any, str]] = {
    "group's consolidated attribute": (
        lambda o: _edit_json(
            o / "results" / "zarr.json",
            lambda d: d["consolidated_metadata"]["metadata"]["t"]["attributes"].update(
                units="degC"
            ),
        ),
        "group 'results' holds another units attribute of 't' than its own metadata",
    ),
    "root's consolidated dimension names": (
        lambda o: _edit_json(
            o / "zarr.json",
            lambda d: d["consolidated_metadata"]["metadata"]["results/t"].update(
                dimension_names=["x", "y"]
            ),
        ),
        "the root holds another dimension_names of 'results/t'",
    ),
    "consolidated coordinate attribute": (
        lambda o: _edit_json(
            o / "results" / "zarr.json",
            lambda d: d["consolidated_metadata"]["metadata"]["lon"]["attributes"].update(
                units="rad"
            ),
        ),
        "holds another units attribute of 'lon'",
    ),
    "own attribute": (
        lambda o: _edit_json(
            o / "results" / "t" / "zarr.json",
            lambda d: d["attributes"].update(units="degC"),
            reconsolidate=o,
        ),
        "its units attribute",
    ),
    "own dimension names": (
        lambda o: _edit_json(
            o / "results" / "t" / "zarr.json",
            lambda d: d.update(dimension_names=["x", "y"]),
            reconsolidate=o,
        ),
        "its dimension names ['x', 'y'] (the run wrote ['y', 'x'])",
    ),
    "own fill value": (
        lambda o: _edit_json(
            o / "results" / "t" / "zarr.json", lambda d: d.update(fill_value=-1.0), reconsolidate=o
        ),
        "its fill value -1.0 (the run wrote 0.0)",
    ),
    "own dtype": (
        lambda o: _edit_json(
            o / "results" / "t" / "zarr.json",
            lambda d: d.update(data_type="int64", fill_value=0),
            reconsolidate=o,
        ),
        "its metadata was edited since the run, whose record says it wrote [40, 60] float64",
    ),
}


@pytest.mark.parametrize("edit", list(OUTPUT_EDITS))
def test_verify_fails_on_output_metadata_edited_after_the_run(
    tmp_path: Path, cli, edit: str
) -> None:
    """The output's consolidated copies (which ``xr.open_zarr`` reads), its own attributes,
    dimension names, fill value or dtype, edited after the run: verify compared values only,
    and passed (README: "its consolidated metadata current"; helper-47). Each fails (exit 1)
    in one line naming what differs."""
    write_dataset(tmp_path / "in.zarr", 3)
    cfg = tmp_path / "t.yaml"
    cfg.write_text(yaml.safe_dump(config(tmp_path, output={"array": "results/t"})))
    rc, _, err = cli("run", cfg)
    assert rc == 0, err
    rc, out, err = cli("verify", "--all", cfg)
    assert rc == 0, err + out
    change, words = OUTPUT_EDITS[edit]
    change(tmp_path / "out.zarr")
    rc, out, err = cli("verify", "--all", cfg)
    assert rc == 1, out
    line = one_line_error(err)
    if "consolidated" not in edit:
        assert words in line and "--overwrite" in line, line
        return
    # a copy edited, the output as the run wrote it: `run --resume` writes the copy again
    # from the output's metadata, nothing recomputed (helper-46c: it had named --overwrite)
    assert words in line and "`run --resume` writes it again" in line, line
    assert "`zarr.consolidate_metadata(" in line and "--overwrite" not in line, line
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "out.zarr").rglob("c/*")}
    rc, out, err = cli("run", cfg, "--resume", "--progress", "none")
    assert rc == 0 and "consolidated metadata written again" in out, err + out
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "out.zarr").rglob("c/*")} == before
    rc, out, err = cli("verify", "--all", cfg)
    assert rc == 0, err + out


def test_verify_notes_a_group_attribute_edited_after_the_run(tmp_path: Path, cli) -> None:
    """A group attribute the run carried from the input, edited after the run: the user's,
    which every run keeps, `--overwrite` too (README: "one you edited since is yours and
    stays"). Verify had failed, saying "`run --overwrite` writes it again", which it does not
    (brk59): it passes, with a note naming the attribute, before and after `run --overwrite`."""
    write_dataset(tmp_path / "in.zarr", 3)
    cfg = tmp_path / "t.yaml"
    cfg.write_text(yaml.safe_dump(config(tmp_path, output={"array": "results/t"})))
    rc, _, err = cli("run", cfg)
    assert rc == 0, err
    group = tmp_path / "out.zarr" / "results" / "zarr.json"
    # consolidated again, as a user's edit with zarr or xarray leaves it (a stale copy is a
    # fault of the output's metadata, which `run --overwrite` writes again)
    _edit_json(
        group, lambda d: d["attributes"].update(title="other"), reconsolidate=tmp_path / "out.zarr"
    )
    rc, out, err = cli("verify", "--all", cfg)
    assert rc == 0, err + out
    assert "note: the output group's title attribute differs" in err, err
    rc, _, err = cli("run", cfg, "--overwrite")
    assert rc == 0, err
    assert json.loads(group.read_text())["attributes"]["title"] == "other"
    # the title is the group's own now, which the run no longer carries: nothing to note
    rc, out, err = cli("verify", "--all", cfg)
    assert rc == 0 and "note:" not in err, err + out


def test_verify_notes_a_carried_group_attribute_removed_as_removed(tmp_path: Path, cli) -> None:
    """xarray's ``to_zarr(mode="a")`` of another variable into the output's group puts that
    Dataset's attributes in place of the group's: here ``title`` edited, ``institution``
    gone. Verify passes and notes each as what it is: it had said of the removed one that it
    "differs (edited since)", and that every run keeps it, where ``run --overwrite`` carries
    it from the input again (and keeps the edited ``title``)."""
    write_dataset(tmp_path / "in.zarr", 3)
    cfg = tmp_path / "t.yaml"
    cfg.write_text(yaml.safe_dump(config(tmp_path, output={"array": "results/t"})))
    rc, _, err = cli("run", cfg)
    assert rc == 0, err
    out = tmp_path / "out.zarr"
    other = xr.Dataset({"w": (("y",), np.zeros(ROWS))}, attrs={"title": "other"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        other.to_zarr(str(out), group="results", mode="a", consolidated=True)
        zarr.consolidate_metadata(str(out), path="results")  # xarray wrote the root's only
    group = out / "results" / "zarr.json"
    assert json.loads(group.read_text())["attributes"] == {"title": "other"}
    rc, text, err = cli("verify", "--all", cfg)
    assert rc == 0, err + text
    notes = [ln for ln in err.splitlines() if ln.startswith("note:")]
    assert len(notes) == 2, err
    edited, removed = notes
    assert "the output group's title attribute differs" in edited, edited
    assert "institution" not in edited, edited
    assert "the output group's institution attribute, which the run carried" in removed
    assert "is gone (removed since" in removed and "`run --overwrite` carries it" in removed
    assert "title" not in removed and "edited" not in removed, removed
    rc, _, err = cli("run", cfg, "--overwrite")
    assert rc == 0, err
    attrs = json.loads(group.read_text())["attributes"]
    assert (attrs["title"], attrs["institution"]) == ("other", "tests"), attrs
    rc, text, err = cli("verify", "--all", cfg)
    assert rc == 0 and "note:" not in err, err + text


def test_a_group_holding_an_earlier_output_is_named_as_that_not_as_foreign(
    tmp_path: Path, cli
) -> None:
    """An earlier run wrote ``out.zarr/sub/t`` (``output.array: sub/t``); a run of the same
    variable into ``out.zarr`` (``output.array`` unset: ``t`` in the root group, beside
    ``sub``) is refused, as the group holds something else, but its line, the resume's and
    plan's had said the group "holds arrays this pipeline did not write", which is false:
    each names ``sub`` as the group holding this pipeline's output ``sub/t``, and the command
    that works, ``--overwrite``, which writes ``t`` beside it and leaves that output whole.
    The variable alone at the root (``output.array: ''``), where the root group is, is
    refused by every command (a group with members is never replaced), naming ``sub`` too."""
    write_dataset(tmp_path / "in.zarr", 3)
    earlier, here, alone = (tmp_path / f"{n}.yaml" for n in ("earlier", "here", "alone"))
    earlier.write_text(yaml.safe_dump(config(tmp_path, output={"array": "sub/t"})))
    here.write_text(yaml.safe_dump(config(tmp_path)))
    alone.write_text(yaml.safe_dump(config(tmp_path, output={"array": ""})))
    rc, _, err = cli("run", earlier)
    assert rc == 0, err
    out = tmp_path / "out.zarr"
    sub = file_states(out / "sub")
    what = "'sub' (a group that holds an output of this pipeline, sub/t)"
    for flags in ([], ["--resume"]):
        rc, _, err = cli("run", here, *flags)
        line = one_line_error(err)
        assert rc == 1 and what in line and "did not write" not in line, (flags, line)
        assert "--overwrite" in line, line
    rc, text, err = cli("plan", here)
    assert rc == 0, err
    assert f"absent, in a group that holds {what}: `run --overwrite`" in text, text
    for command in (["run", alone], ["run", alone, "--overwrite"], ["plan", alone]):
        rc, _, err = cli(*command)
        line = one_line_error(err)
        assert rc == 1 and f"Zarr group that holds {what}" in line, (command, line)
        assert "even with --overwrite" in line, line
    assert file_states(out / "sub") == sub
    rc, _, err = cli("run", here, "--overwrite")
    assert rc == 0, err
    assert file_states(out / "sub") == sub
    for cfg in (earlier, here):
        rc, text, err = cli("verify", "--all", cfg)
        assert rc == 0, (cfg, err + text)


def test_what_the_output_carries_rewritten_the_same_is_no_change(tmp_path: Path, cli) -> None:
    """The input group consolidated again for an attribute of another variable, and the
    coordinate ``lon`` written again with the same values (as xarray's ``to_zarr`` of another
    variable does): nothing the output carries changed, but file times and the group's
    document did, and verify failed and the resume refused (helper-44). Both go."""
    write_dataset(tmp_path / "in.zarr", 3)
    cfg = tmp_path / "t.yaml"
    cfg.write_text(yaml.safe_dump(config(tmp_path)))
    rc, _, err = cli("run", cfg)
    assert rc == 0, err
    zarr.open_array(str(tmp_path / "in.zarr"), path="p", mode="r+").attrs["note"] = "x"
    lon = zarr.open_array(str(tmp_path / "in.zarr"), path="lon", mode="r+")
    lon[...] = lon[...].copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(str(tmp_path / "in.zarr"))
    rc, out, err = cli("verify", "--all", cfg)
    assert rc == 0, err + out
    rc, _, err = cli("run", cfg, "--resume")
    assert rc == 0 and "nothing to do" in err, err


def test_a_dataset_output_whose_group_and_coordinates_are_the_inputs_files_leaves_them(
    tmp_path: Path, cli
) -> None:
    """h76b: an output Dataset whose group document and coordinates' files are hard links to
    the input's (one file under two names: ``cp -al``, a deduplicating backup) is resumed and
    overwritten without a byte, time or inode of the input changing: everything a run writes
    there (the group's attributes and consolidated copy, the coordinates, zarr-python's
    LocalStore writing a new file renamed into place; the pipeline's own files, made anew or
    replaced) replaces the output's name, never writing through it. Only the variable's own
    files are refused as links to the input's (its identity holds their times); the group's
    and coordinates' are compared by content, so neither run calls the input changed."""
    write_dataset(tmp_path / "in.zarr", 3)
    inp, out = tmp_path / "in.zarr", tmp_path / "out.zarr"
    cfg = tmp_path / "t.yaml"
    cfg.write_text(yaml.safe_dump(config(tmp_path)))
    script = tmp_path / "script.py"  # stopped as it would mark the output complete
    script.write_text(ctrl_c_script("pipeline.running.output", "mark_complete", overwrite=None))
    proc = run_python([script, cfg], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["state"] == "incomplete"
    shared = ["zarr.json"] + [f"{c}/{n}" for c in ("x", "y", "lon") for n in ("zarr.json", "c/0")]
    for flags in (["--resume"], ["--overwrite"]):
        for rel in shared:  # the output's names of the input's files
            (out / rel).unlink()
            os.link(inp / rel, out / rel)
        if flags == ["--resume"]:  # and a block to write again
            (out / "t" / ".pipeline" / "done" / "2.0").unlink()
        before = file_states(inp)
        rc, _, err = cli("run", cfg, *flags, "--progress", "none")
        assert rc == 0, (flags, err)
        assert file_states(inp) == before, flags
        assert (inp / "zarr.json").stat().st_nlink == 1, flags  # the group's written anew
        rc, text, err = cli("verify", "--all", cfg)
        assert rc == 0, (flags, err + text)
    ds = open_dataset(out)
    assert {"y", "x", "lon"} <= set(ds.coords) and ds.attrs["title"] == "a test field"


def test_an_interrupted_dataset_output_says_so_to_xarray(killed: Killed) -> None:
    killed.restore()
    assert consolidated(killed.output) is not None  # written at creation, then last
    assert status_seen_by_xarray(killed.output) == "incomplete"
    ds = open_dataset(killed.output, load=False)
    assert set(ds.coords) == {"y", "x", "lon"}  # the frame is there before any block
    assert ds["lon"].load().shape == (KILL_COLS,)  # written whole before any block
    with pytest.raises(OutputError) as info:
        pipeline.run(killed.config())
    assert info.value.output == str(killed.output / "t")


def test_resume_finishes_a_dataset_output_as_an_uninterrupted_run(killed: Killed, cli) -> None:
    killed.restore()
    rc, _, err = cli("run", killed.config(), "--resume", "--progress", "none")
    assert rc == 0, err
    assert status_seen_by_xarray(killed.output) == "complete"
    got, want = stored_files(killed.output / "t"), stored_files(killed.ref / "t")
    chunks = sorted(k for k in want if k != "zarr.json")
    assert chunks and sorted(k for k in got if k != "zarr.json") == chunks
    assert all(got[k] == want[k] for k in chunks)
    assert_variable_as_xarray_opened_it(killed.output, killed.input)


def test_a_dataset_output_stopped_before_its_consolidated_metadata_is_not_complete(
    killed: Killed, cli
) -> None:
    """The final attributes written, the consolidated metadata (what xarray reads) not yet:
    the output is not complete, and ``--resume`` finishes it."""
    copy_store(killed.ref, killed.output)
    shutil.copy2(killed.snapshot / "zarr.json", killed.output / "zarr.json")  # as created
    shutil.copytree(killed.snapshot / "t" / ".pipeline", killed.output / "t" / ".pipeline")
    assert record_of(zarr.open_array(str(killed.output), path="t").attrs)["status"] == "complete"
    with pytest.raises(OutputError) as info:
        pipeline.run(killed.config())
    assert info.value.status == "incomplete"
    rc, _, err = cli("run", killed.config(), "--resume", "--progress", "none")
    assert rc == 0, err
    assert status_seen_by_xarray(killed.output) == "complete"


def test_verify_says_an_output_stopped_before_its_consolidated_metadata_is_incomplete(
    killed: Killed, cli
) -> None:
    """F5: the state above (a run stopped after its final attributes, before the consolidated
    copy): ``run`` says incomplete and ``--resume`` finishes it, but ``verify`` called its
    metadata edited since the run, to be written again with ``run --overwrite``. It says what
    ``run`` says (the same decision), and passes once ``--resume`` has finished it."""
    copy_store(killed.ref, killed.output)
    shutil.copy2(killed.snapshot / "zarr.json", killed.output / "zarr.json")  # as created
    shutil.copytree(killed.snapshot / "t" / ".pipeline", killed.output / "t" / ".pipeline")
    rc, out, err = cli("verify", killed.config())
    assert rc == 1
    assert re.search(r"output status\s+incomplete", out), out
    line = one_line_error(err)
    assert "incomplete" in line and "`run --resume` finishes it" in line, line
    rc, _, err = cli("run", killed.config(), "--resume", "--progress", "none")
    assert rc == 0, err
    rc, _, err = cli("verify", killed.config())
    assert rc == 0, err


def test_verify_says_a_killed_output_with_a_chunk_left_empty_is_incomplete(
    killed: Killed, cli
) -> None:
    """F5: a kill midway can leave the chunk file of a block being written empty (created,
    never filled): ``verify`` called it damaged, with ``run --overwrite``, though ``run`` says
    incomplete and ``--resume`` (which writes every block not marked done again) finishes it.
    ``verify`` says what ``run`` says, and passes once ``--resume`` has finished it."""
    killed.restore()
    done = set(marker_names(killed.output / "t"))
    row = next(r for r in range(killed.rows) if f"{r}.0" not in done)
    chunk = killed.output / "t" / "c" / str(row) / "0"
    chunk.parent.mkdir(parents=True, exist_ok=True)
    chunk.write_bytes(b"")  # as a kill right after the file was made leaves it
    rc, _, err = cli("verify", killed.config(), "--all")
    assert rc == 1
    line = one_line_error(err)
    assert "incomplete" in line and "`run --resume` finishes it" in line, line
    rc, _, err = cli("run", killed.config(), "--resume", "--progress", "none")
    assert rc == 0, err
    rc, _, err = cli("verify", killed.config(), "--all")
    assert rc == 0, err


def test_a_complete_dataset_output_is_checked_for_staleness(killed: Killed, cli) -> None:
    copy_store(killed.ref, killed.output)
    snapshot = file_states(killed.output)
    assert pipeline.run(killed.config(), resume=True).status == "complete (nothing to do)"
    stages = [{"op": "multiply", "factor": 6}, {"op": "square"}]
    with pytest.raises(OutputError) as info:
        pipeline.run(killed.config("stages.yaml", stages=stages), resume=True)
    assert info.value.changed == ["stages"]
    with pytest.raises(InputError) as refused:  # the other setting: the packing is named
        pipeline.run(killed.config("raw.yaml", input={"mask_and_scale": False}), resume=True)
    assert refused.value.fix == "input.mask_and_scale: true"
    assert file_states(killed.output) == snapshot
    # another scale_factor: the decoding changed (Zarr v2 keeps it in .zattrs)
    with set_aside(killed.input):
        arr = zarr.open_array(str(killed.input), path="t", mode="r+")
        arr.update_attributes({"scale_factor": 0.02})
        with warnings.catch_warnings():  # as xarray would see it (a stale copy is refused)
            warnings.simplefilter("ignore")
            zarr.consolidate_metadata(str(killed.input))
        with pytest.raises(OutputError) as info:
            pipeline.run(killed.config(), resume=True)
        assert "unpack" in info.value.changed
    assert file_states(killed.output) == snapshot
    rc, _, err = cli("run", killed.config("stages.yaml", stages=stages), "--overwrite")
    assert rc == 0, err
    ds = open_dataset(killed.output)
    assert record_of(ds["t"].attrs)["stages"][0].startswith("multiply(factor=6)")
    assert set(ds.coords) == {"y", "x", "lon"} and consolidated(killed.output) is not None


# --------------------------------------------------------------------------------------------
# Overwriting a Dataset output whose input changed its coordinates.


def write_series(path: Path, zarr_format: int, steps: int, later: bool = False) -> Any:
    """A Dataset ``air`` (time, x) as xarray writes it: ``steps`` hourly times; the first
    version with float64 ``x`` in metres and a coordinate ``lon`` (x), the ``later`` one with
    int32 ``x`` in kilometres, no ``lon``, and other chunks. Returns the Dataset."""
    import pandas as pd

    x = np.arange(6, dtype=np.int32 if later else np.float64)
    coords: dict[str, Any] = {
        "time": pd.date_range("2024-01-01", periods=steps, freq="h"),
        "x": ("x", x, {"units": "km" if later else "m"}),
    }
    if not later:
        coords["lon"] = ("x", np.linspace(5.0, 6.0, 6), {"units": "degrees_east"})
    values = np.arange(steps * 6, dtype=np.float64).reshape(steps, 6) / 7
    ds = xr.Dataset({"air": (("time", "x"), values, {"units": "K"})}, coords=coords)
    ds["air"].encoding = {"chunks": (6, 6)}
    ds["time"].encoding = {"chunks": (12 if later else steps,)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(str(path), zarr_format=zarr_format, mode="w", consolidated=True)
    return ds


def series_config(tmp: Path, backend: str) -> dict[str, Any]:
    return config(tmp, backend, input={"array": "air"})


@pytest.mark.parametrize("zarr_format", [2, 3], ids=lambda f: f"v{f}")
@pytest.mark.parametrize("how", ["api", "cli"])
def test_overwrite_replaces_the_coordinates_with_the_inputs_exactly(
    tmp_path: Path, backend_client: tuple[str, Any], zarr_format: int, how: str, cli
) -> None:
    """The input rewritten with twice the times, ``x`` of another dtype and attributes, no
    ``lon``: ``--overwrite`` gives the new input's coordinates, exactly (values, dtypes,
    attributes, chunks), and drops the one it no longer has (it used to fail in xarray after
    deleting the old output, and to keep the old dtype, attributes and ``lon``)."""
    backend, client = backend_client
    src, out = tmp_path / "in.zarr", tmp_path / "out.zarr"
    write_series(src, zarr_format, 24)
    cfg = series_config(tmp_path, backend)
    assert pipeline.run(cfg, client=client).status == "complete"
    assert set(open_dataset(out).coords) == {"time", "x", "lon"}
    write_series(src, zarr_format, 48, later=True)
    if how == "api":
        assert pipeline.run(cfg, client=client, overwrite=True).status == "complete"
    else:
        path = tmp_path / "run.yaml"
        cluster = {"workers": 1, "threads_per_worker": 1, "dashboard": ""}
        path.write_text(yaml.safe_dump({**cfg, "cluster": cluster}))
        rc, _, err = cli("-q", "run", path, "--overwrite", "--progress", "none")
        assert rc == 0, err
    want, got = open_dataset(src), open_dataset(out)
    assert set(got.coords) == {"time", "x"}
    assert sorted(p.name for p in out.iterdir()) == ["air", "time", "x", "zarr.json"]
    for c in ("time", "x"):
        assert got[c].dtype == want[c].dtype, c
        assert same_bits(got[c].values, want[c].values), c
        assert got[c].attrs == want[c].attrs, c
        assert got[c].encoding["chunks"] == want[c].encoding["chunks"], c
    assert record_of(got["air"].attrs)["coordinates"] == ["time", "x"]
    chain = plan_chain(parse_config(cfg).stage_specs(), want["air"].dtype)
    with np.errstate(all="ignore"):
        assert same_bits(got["air"].values, apply_chain(chain, want["air"].values))


def test_a_kept_array_of_another_dimension_size_is_refused_before_anything_is_deleted(
    tmp_path: Path, backend_client: tuple[str, Any]
) -> None:
    """The output group also holds ``q`` (time), which something else wrote with 24 times:
    the input rewritten with 48 cannot be written beside it, and the refusal comes before the
    old output is touched."""
    backend, client = backend_client
    src, out = tmp_path / "in.zarr", tmp_path / "out.zarr"
    ds = write_series(src, 3, 24)
    other = xr.Dataset({"q": (("time",), np.ones(24))}, coords={"time": ds["time"]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        other.to_zarr(str(out), zarr_format=3, mode="w")
    cfg = series_config(tmp_path, backend)
    pipeline.run(cfg, client=client, overwrite=True)
    write_series(src, 3, 48, later=True)
    before = file_states(out)
    for overwrite in (True, False):
        with pytest.raises(OutputError) as info:
            pipeline.run(cfg, client=client, overwrite=overwrite)
        if overwrite:
            e = info.value
            assert (e.array, e.dimension, e.size, e.input_size) == ("q", "time", 24, 48)
            assert e.output == str(out / "air") and len(str(e).splitlines()) == 1
    assert file_states(out) == before
    assert record_of(open_dataset(out)["air"].attrs)["status"] == "complete"


TIMES = {
    "dates": (np.datetime64("2000-01-01T00", "h") + np.arange(ROWS * COLS), {"units", "calendar"}),
    "durations": (np.arange(ROWS * COLS).astype("timedelta64[h]"), {"units", "dtype"}),
    "seconds": (np.arange(ROWS * COLS, dtype=np.float64), {"units"}),
    # "since" with no spaces around it: xarray takes them for time units all the same, fails to
    # decode them and so opens neither the input nor the output (h55d: the run wrote that output
    # and marked it complete)
    "seconds_since_1970": (np.arange(ROWS * COLS, dtype=np.float64), {"units"}),
    # xarray stores booleans as int8 with dtype: bool, and reads every nonzero one as True
    "booleans": (np.arange(ROWS * COLS) % 3 == 0, {"dtype"}),
}


@pytest.mark.parametrize("zarr_format", [2, 3], ids=lambda f: f"v{f}")
@pytest.mark.parametrize("name", list(TIMES))
def test_a_variable_xarray_decodes_to_times_or_booleans_is_refused(
    tmp_path: Path, zarr_format: int, name: str
) -> None:
    """A variable of dates, durations or booleans, as xarray writes it (numbers with CF time
    ``units``, ``calendar``, a ``dtype`` attribute; numbers in "seconds", which xarray
    decodes to durations, or in "seconds_since_1970", which it fails to; int8 with ``dtype:
    bool``, whose output xarray read as all True: helper-41): refused in one line naming it
    and the attributes, with or without mask_and_scale, before anything is written."""
    values, named = TIMES[name]
    attrs = {"units": name} if name.startswith("seconds") else {}
    ds = xr.Dataset({"t": (("y", "x"), values.reshape(ROWS, COLS), attrs)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(str(tmp_path / "in.zarr"), zarr_format=zarr_format, mode="w")
    for mask_and_scale in (False, True):
        with pytest.raises(InputError) as info:
            pipeline.run(config(tmp_path, input={"mask_and_scale": mask_and_scale}))
        e = info.value
        assert e.variable == str(tmp_path / "in.zarr" / "t")
        assert set(e.attributes) == named
        assert len(str(e).splitlines()) == 1
    assert not (tmp_path / "out.zarr").exists()


#: Attributes of times that the installed xarray (2025.6.0) decodes nothing by, without time
#: units beside them: it opens the numbers as they are, the attribute kept in ``attrs``
NOT_TIMES = {
    "calendar": {"calendar": "noleap"},
    "timedelta-dtype": {"dtype": "timedelta64[s]"},
    "datetime-dtype": {"dtype": "datetime64[ns]"},
    "timedelta-dtype-in-metres": {"dtype": "timedelta64[s]", "units": "m"},
}


@pytest.mark.parametrize("zarr_format", [2, 3], ids=lambda f: f"v{f}")
@pytest.mark.parametrize("name", list(NOT_TIMES))
def test_a_time_attribute_without_time_units_is_run_as_numbers(
    tmp_path: Path, zarr_format: int, name: str
) -> None:
    """A ``calendar``, or a ``dtype`` of timedelta64 or datetime64, without time ``units``:
    xarray (2025.6.0: its ``CFTimedeltaCoder`` decodes by a duration unit, with or without the
    dtype; its ``CFDatetimeCoder`` by units holding "since") opens the numbers as they are.
    The run had refused each as holding times (h55g); it computes now, and its output opens
    in xarray as numbers, the chain over what xarray reads bit for bit, the calendar and
    units carried, the dtype attribute not (it describes the input's numbers)."""
    attrs = NOT_TIMES[name]
    values = np.arange(ROWS * COLS, dtype=np.float64).reshape(ROWS, COLS) / 7
    ds = xr.Dataset({"t": (("y", "x"), values, attrs)}, coords={"x": np.arange(COLS) * 2.0})
    ds["t"].encoding = {"chunks": (10, COLS)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(str(tmp_path / "in.zarr"), zarr_format=zarr_format, mode="w")
    read = open_dataset(tmp_path / "in.zarr")["t"]
    assert read.dtype == np.float64 and read.attrs == attrs  # numbers, to xarray
    assert pipeline.run(config(tmp_path, cluster={"dashboard": ""})).status == "complete"
    out = open_dataset(tmp_path / "out.zarr")
    assert same_bits(out["t"].values, reference(read.values))
    kept = {k: v for k, v in out["t"].attrs.items() if k != "pipeline"}
    assert kept == {k: v for k, v in attrs.items() if k != "dtype"}
    assert out["x"].identical(read["x"])


@pytest.mark.parametrize("zarr_format", [2, 3], ids=lambda f: f"v{f}")
def test_the_bounds_of_a_time_are_refused_as_times(tmp_path: Path, zarr_format: int) -> None:
    """A time's bounds without units of their own, as CF writes them: xarray gives them the
    time's ``units`` and ``calendar`` (its ``decode_cf``) and reads dates; the run had
    multiplied the day numbers and marked the output complete (h55g). Refused in one line
    naming the time and the attributes, before anything is written; bounds with units of
    their own are numbers to xarray, and are run."""
    time = {"units": "days since 2000-01-01", "calendar": "standard", "bounds": "tb"}
    ds = xr.Dataset(
        {"tb": (("time", "nv"), np.arange(8.0).reshape(4, 2) + 0.5)},
        coords={"time": ("time", np.arange(4.0) + 1, time)},
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(str(tmp_path / "in.zarr"), zarr_format=zarr_format, mode="w")
    assert open_dataset(tmp_path / "in.zarr")["tb"].dtype.kind == "M"  # dates, to xarray
    before = file_states(tmp_path / "in.zarr")
    cfg = config(tmp_path, input={"array": "tb"}, cluster={"dashboard": ""})
    with pytest.raises(InputError) as info:
        pipeline.run(cfg)
    e = info.value
    assert (e.variable, e.coordinate) == (str(tmp_path / "in.zarr" / "tb"), "time"), e
    assert e.attributes == ["units", "calendar"] and len(str(e).splitlines()) == 1
    assert not (tmp_path / "out.zarr").exists() and file_states(tmp_path / "in.zarr") == before
    ds["tb"].attrs["units"] = "K"  # its own: xarray keeps them, and reads numbers
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(str(tmp_path / "in.zarr"), zarr_format=zarr_format, mode="w")
    read = open_dataset(tmp_path / "in.zarr")["tb"]
    assert read.dtype == np.float64
    assert pipeline.run(cfg).status == "complete"
    assert same_bits(open_dataset(tmp_path / "out.zarr")["tb"].values, reference(read.values))


@pytest.mark.parametrize("zarr_format", [2, 3], ids=lambda f: f"v{f}")
def test_bounds_shared_by_times_of_other_units_are_refused(
    tmp_path: Path, cli, zarr_format: int
) -> None:
    """Two times of a group share one bounds variable ``tb`` without units of its own:
    ``atime`` (a data variable, in days) and ``time`` (the dimension coordinate, in hours).
    xarray gives ``tb`` the units of whichever it reads first, in the group's listing order
    (zarr-python's, in no fixed order). The run on ``v`` carries ``time`` and ``tb``, not
    ``atime``: the output's ``tb`` was decoded by ``time``'s hours where the input's had read
    as days, the output marked complete, and ``verify`` then said its coordinates were not
    the input's (h57b). Refused in one line naming ``tb``, both times and their units, before
    anything is written; with units of its own, ``tb`` is carried and reads as the input's."""
    ds = xr.Dataset(
        {
            "v": (("time",), np.arange(4.0) + 1.25, {"units": "K"}),
            "atime": (
                ("time",),
                np.arange(4.0),
                {"units": "days since 2000-01-01", "bounds": "tb"},
            ),
            "tb": (("time", "nv"), np.arange(8.0).reshape(4, 2) + 0.5),
        },
        coords={
            "time": ("time", np.arange(4.0), {"units": "hours since 2000-01-01", "bounds": "tb"})
        },
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(str(tmp_path / "in.zarr"), zarr_format=zarr_format, mode="w")
    before = file_states(tmp_path / "in.zarr")
    cfg = config(tmp_path, input={"array": "v"}, cluster=_THREADS)
    with pytest.raises(InputError) as info:
        pipeline.run(cfg)
    e = info.value
    assert (e.variable, e.coordinate) == (str(tmp_path / "in.zarr" / "tb"), "tb"), e
    assert e.attributes == ["units"] and len(str(e).splitlines()) == 1, e
    assert "'atime' (units='days since 2000-01-01') and 'time' (units='hours since" in str(e)
    assert "give it units of its own" in str(e) and "output.array: ''" in str(e)
    assert not (tmp_path / "out.zarr").exists() and file_states(tmp_path / "in.zarr") == before
    ds["tb"].attrs["units"] = "hours since 2000-01-01"  # its own: xarray keeps them
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(str(tmp_path / "in.zarr"), zarr_format=zarr_format, mode="w")
    assert pipeline.run(cfg).status == "complete"
    src, out = open_dataset(tmp_path / "in.zarr"), open_dataset(tmp_path / "out.zarr")
    assert src["tb"].dtype.kind == "M" and same_bits(out["tb"].values, src["tb"].values)
    assert same_bits(out["v"].values, reference(src["v"].values))


@pytest.mark.parametrize("run_on", ["v", "tbb"])
def test_bounds_of_bounds_given_a_times_units_in_turn_are_refused(
    tmp_path: Path, run_on: str
) -> None:
    """h78b: ``tbb`` is the bounds of ``tb``, itself the bounds of the time ``time`` (in
    hours), neither with units of its own. xarray gives ``tb`` the time's units and passes
    them on to ``tbb`` only where it reads ``time`` before ``tb``, in the group's listing
    order (zarr-python's, in no fixed order): the run on ``v`` carried ``tbb`` as numbers or
    as dates, and the run on ``tbb`` computed on what xarray may read as dates, exit 0 either
    way. Refused in one line naming ``tbb``, ``tb`` and the time, before anything is written;
    with units of its own, ``tbb`` is carried and reads as the input's."""
    ds = xr.Dataset(
        {
            "v": (("time",), np.arange(4.0) + 1.25, {"units": "K"}),
            "tb": (("time", "nv"), np.arange(8.0).reshape(4, 2) + 0.5, {"bounds": "tbb"}),
            "tbb": (("time", "nv"), np.arange(8.0).reshape(4, 2) + 0.25),
        },
        coords={
            "time": ("time", np.arange(4.0), {"units": "hours since 2000-01-01", "bounds": "tb"})
        },
    )
    ds["v"].encoding["coordinates"] = "tbb"
    src = tmp_path / "in.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(str(src), zarr_format=3, mode="w")
    before = file_states(src)
    cfg = config(tmp_path, input={"array": run_on}, cluster=_THREADS)
    with pytest.raises(InputError) as info:
        pipeline.run(cfg)
    e = info.value
    coordinate = "tbb" if run_on == "v" else "tb"
    assert (e.variable, e.coordinate) == (str(src / "tbb"), coordinate), e
    assert e.attributes == ["units"] and len(str(e).splitlines()) == 1, e
    assert "is the bounds of 'tb', itself the bounds of the time 'time'" in str(e), e
    assert "units='hours since 2000-01-01' only where it reads 'time' before 'tb'" in str(e), e
    assert not (tmp_path / "out.zarr").exists() and file_states(src) == before
    if run_on != "v":
        return
    ds["tbb"].attrs["units"] = "hours since 2000-01-01"  # its own: xarray keeps them
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(str(src), zarr_format=3, mode="w")
    assert pipeline.run(cfg).status == "complete"
    got, want = open_dataset(tmp_path / "out.zarr"), open_dataset(src)
    assert want["tbb"].dtype.kind == "M" and same_bits(got["tbb"].values, want["tbb"].values)


@pytest.mark.parametrize("first", ["atime", "btime"], ids=lambda f: f"{f}-listed-first")
def test_a_variable_bounding_times_of_other_units_is_refused_naming_one_whatever_the_listing(
    tmp_path: Path, first: str
) -> None:
    """h78b: the input variable ``tb`` is the bounds of two times of other units (``atime``
    in days, ``btime`` in hours), so xarray decodes it to dates by whichever it reads first.
    The refusal named the time listed first, in an order zarr-python gives in no fixed
    order (the same input was refused naming ``btime`` or ``atime``); it names the same
    one, whichever is listed first."""
    ds = xr.Dataset(
        {
            "atime": (("t",), np.arange(4.0), {"units": "days since 2000-01-01", "bounds": "tb"}),
            "btime": (("t",), np.arange(4.0), {"units": "hours since 2000-01-01", "bounds": "tb"}),
            "tb": (("t", "nv"), np.arange(8.0).reshape(4, 2) + 0.5),
        },
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(str(tmp_path / "in.zarr"), zarr_format=3, mode="w", consolidated=True)
    _members_in_order(tmp_path / "in.zarr", first)
    with pytest.raises(InputError) as info:
        pipeline.run(config(tmp_path, input={"array": "tb"}, cluster=_THREADS))
    e = info.value
    assert (e.coordinate, e.attributes) == ("atime", ["units"]), e
    assert "it is the bounds of 'atime'" in str(e) and len(str(e).splitlines()) == 1, e
    assert not (tmp_path / "out.zarr").exists()


@pytest.mark.parametrize("zarr_format", [2, 3], ids=lambda f: f"v{f}")
def test_bounds_given_units_by_a_time_not_carried_keep_its_dates(
    tmp_path: Path, cli, zarr_format: int
) -> None:
    """``tb``, a coordinate of ``v`` without units of its own, is the bounds of ``atime`` (a
    data variable in days): xarray gives it ``atime``'s units and reads dates. The run on
    ``v`` carries ``tb``, not ``atime``: the output's ``tb`` had no units at all, numbers
    where the input's were dates, marked complete (h57b). It holds the units xarray gave it
    as its own: the input's dates to the bit, its stored numbers the input's; ``verify``
    passes. Bounds given the units of a time carried beside them stay as stored."""
    ds = xr.Dataset(
        {
            "v": (("time", "nv"), np.arange(8.0).reshape(4, 2) + 1.25, {"units": "K"}),
            "atime": (
                ("time",),
                np.arange(4.0),
                {"units": "days since 2000-01-01", "bounds": "tb"},
            ),
        },
        coords={
            "time": ("time", np.arange(4.0), {"units": "hours since 2000-01-01"}),
            "tb": (("time", "nv"), np.arange(8.0).reshape(4, 2) + 0.5),
        },
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(str(tmp_path / "in.zarr"), zarr_format=zarr_format, mode="w")
    src = open_dataset(tmp_path / "in.zarr")
    assert src["tb"].dtype.kind == "M"  # atime's days
    cfg = tmp_path / "t.yaml"
    cfg.write_text(yaml.safe_dump(config(tmp_path, input={"array": "v"}, cluster=_THREADS)))
    rc, _, err = cli("run", cfg)
    assert rc == 0, err
    out = open_dataset(tmp_path / "out.zarr")
    assert "atime" not in out.variables
    assert same_bits(out["tb"].values, src["tb"].values), out["tb"].values
    assert same_bits(out["time"].values, src["time"].values)
    assert same_bits(out["v"].values, reference(src["v"].values))
    raw = zarr.open_array(str(tmp_path / "out.zarr"), path="tb", mode="r")
    assert raw.attrs["units"] == "days since 2000-01-01" and "calendar" not in raw.attrs
    assert same_bits(raw[...], zarr.open_array(str(tmp_path / "in.zarr"), path="tb")[...])
    rc, text, err = cli("verify", "--all", cfg)
    assert rc == 0, err + text


#: A Zarr v3 group as zarr-python writes it, its arrays' dimension names in ``dimension_names``
#: or only in a v2-style ``_ARRAY_DIMENSIONS`` attribute ("attribute"): which array is so
#: named, whether the group has a coordinate ``x``
V2_NAMES_IN_V3 = {
    "the variable, no coordinates": ("t", False),
    "the variable, a coordinate": ("t", True),
    "its coordinate": ("x", True),
    "another variable": ("p", False),
}


@pytest.mark.parametrize("case", list(V2_NAMES_IN_V3))
def test_v2_dimension_names_in_a_v3_group_are_refused_naming_the_array(
    tmp_path: Path, case: str
) -> None:
    """A Zarr v3 array naming its dimensions only in an ``_ARRAY_DIMENSIONS`` attribute
    (zarr-python 2's convention, copied into v3): xarray reads a v3 array's names from its
    ``dimension_names`` only and fails on the group. The pipeline had read the attribute as
    names, and refused the input in a line blaming "the coordinates" of the Dataset (none,
    or readable ones), naming neither the array nor why (h55g). Refused in one line naming
    the array and the attribute, before anything is written; ``output.array: ''`` runs the
    variable alone, as zarr-python reads it: no dimension names, the chain over its values
    bit for bit."""
    named, coordinate = V2_NAMES_IN_V3[case]
    src = tmp_path / "in.zarr"
    g = zarr.open_group(str(src), mode="w", zarr_format=3)
    rng = np.random.default_rng(5)
    arrays = {"t": (ROWS, COLS), "p": (ROWS,), **({"x": (COLS,)} if coordinate else {})}
    dims = {"t": ["y", "x"], "p": ["y"], "x": ["x"]}
    for name, shape in arrays.items():
        names: dict[str, Any] = {"dimension_names": dims[name]}
        attrs = {"units": "K"}
        if name == named:
            names, attrs = {}, {**attrs, "_ARRAY_DIMENSIONS": dims[name]}
        a = g.create_array(
            name, shape=shape, dtype="float64", chunks=shape, attributes=attrs, **names
        )
        a[...] = rng.standard_normal(shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(str(src))
    with pytest.raises(KeyError, match="dimension_names"):
        open_dataset(src)  # xarray cannot open the group
    before = file_states(src)
    with pytest.raises(InputError) as info:
        pipeline.run(config(tmp_path, cluster={"dashboard": ""}))
    e, line = info.value, str(info.value)
    assert len(line.splitlines()) == 1 and "coordinates of" not in line, line
    assert f"/{named} " in line and "_ARRAY_DIMENSIONS" in line, line
    if named == "t":
        assert (e.variable, e.attributes) == (str(src / "t"), ["_ARRAY_DIMENSIONS"]), e
    else:
        assert (e.variable, e.member) == (str(src), named), e
    assert not (tmp_path / "out.zarr").exists() and file_states(src) == before
    alone = config(tmp_path, output={"array": ""}, cluster={"dashboard": ""})
    assert pipeline.run(alone).status == "complete"
    out = zarr.open_array(str(tmp_path / "out.zarr"), mode="r")
    want = reference(zarr.open_array(str(src), path="t", mode="r")[...])
    assert same_bits(out[...], want)
    names = out.metadata.dimension_names
    assert names == (None if named == "t" else ("y", "x")), names
    if named == "t":  # an attribute of a v3 array, carried as one
        assert out.attrs["_ARRAY_DIMENSIONS"] == ["y", "x"], dict(out.attrs)
    assert file_states(src) == before


def test_a_calendar_changed_after_consolidation_is_refused_beside_time_units_only(
    tmp_path: Path,
) -> None:
    """A coordinate's ``calendar`` changed in its own metadata after consolidation: beside
    time units xarray decodes by it, refused as a stale decoding attribute; on a coordinate of
    numbers (no time units) it decodes nothing, a note, and the run completes (it had been
    refused as one xarray decodes by: h55g)."""
    src = tmp_path / "in.zarr"
    ds = xr.Dataset(
        {"t": (("time", "x"), np.ones((4, 3)))},
        coords={
            "time": np.arange("2024-01-01", "2024-01-05", dtype="datetime64[D]").astype("M8[ns]"),
            "x": ("x", np.arange(3.0), {"calendar": "noleap"}),
        },
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(str(src), zarr_format=3, consolidated=True)
        arr = zarr.open_array(str(src), path="time", mode="r+", use_consolidated=False)
        arr.attrs["calendar"] = "standard"
    cfg = config(tmp_path, cluster={"dashboard": ""})
    with pytest.raises(InputError) as info:
        pipeline.run(cfg)
    assert info.value.member == "time" and info.value.differs == ["calendar"]
    assert not (tmp_path / "out.zarr").exists()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(str(src))
        arr = zarr.open_array(str(src), path="x", mode="r+", use_consolidated=False)
        arr.attrs["calendar"] = "360_day"
    assert pipeline.run(cfg).status == "complete"


@pytest.mark.parametrize("zarr_format", [2, 3], ids=lambda f: f"v{f}")
@pytest.mark.parametrize("stored", ["uint8", "int16", "float32"])
def test_a_variable_xarray_decodes_to_booleans_from_any_dtype_is_refused(
    tmp_path: Path, zarr_format: int, stored: str
) -> None:
    """xarray's ``BooleanCoder`` decodes a variable with ``dtype: bool`` to True/False
    whatever its stored dtype, not only int8, as xarray writes it (h55d: uint8, int16 or
    float32 numbers so marked ran, and the output held the chain of 0, 1, 2, 3 where xarray
    reads False and True): refused in one line before anything is written, with or without
    mask_and_scale; and so where only the consolidated copy, which xr.open_zarr reads, says
    ``dtype: bool``."""
    src = tmp_path / "in.zarr"
    g = zarr.open_group(str(src), mode="w", zarr_format=zarr_format)
    names = {"_ARRAY_DIMENSIONS": ["x"]} if zarr_format == 2 else {}
    t = g.create_array(
        "t",
        shape=(6,),
        dtype=stored,
        chunks=(3,),
        fill_value=None if zarr_format == 2 else 0,  # v2: no _FillValue to mask with
        attributes={**names, "dtype": "bool"},
        **({"dimension_names": ("x",)} if zarr_format == 3 else {}),
    )
    t[...] = np.array([0, 1, 2, 0, 3, 1], dtype=stored)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(str(src))
    want = [False, True, True, False, True, True]
    assert open_dataset(src)["t"].values.tolist() == want  # what xarray reads
    before = file_states(src)
    for mask_and_scale in (False, True):
        with pytest.raises(InputError) as info:
            pipeline.run(config(tmp_path, input={"mask_and_scale": mask_and_scale}))
        e = info.value
        assert (e.variable, e.attributes) == (str(src / "t"), ["dtype"]), e
        assert len(str(e).splitlines()) == 1 and stored in str(e)
    assert not (tmp_path / "out.zarr").exists() and file_states(src) == before
    # the attribute removed from the array's own metadata only: xarray still reads booleans
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        own = zarr.open_array(str(src), path="t", mode="r+", use_consolidated=False)
        own.attrs.update({"dtype": "none"})
    assert open_dataset(src)["t"].values.tolist() == want
    before = file_states(src)
    with pytest.raises(InputError) as info:
        pipeline.run(config(tmp_path))
    assert info.value.member == "t" and info.value.differs == ["dtype"], info.value
    assert not (tmp_path / "out.zarr").exists() and file_states(src) == before


def test_a_dtype_attribute_is_not_carried_to_the_output(tmp_path: Path) -> None:
    """xarray's ``dtype`` attribute says what its stored numbers decode to; the output's
    numbers are the stages' values, which it does not describe (an int8 output with
    ``dtype: bool`` reads as True/False): left out of the output's attributes, where it
    names a dtype xarray does not decode by."""
    ds = xr.Dataset({"t": (("y", "x"), np.ones((ROWS, COLS), np.int16), {"dtype": "int16"})})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(str(tmp_path / "in.zarr"), zarr_format=3, mode="w")
    assert zarr.open_array(str(tmp_path / "in.zarr"), path="t").attrs["dtype"] == "int16"
    assert pipeline.run(config(tmp_path)).status == "complete"
    out = zarr.open_array(str(tmp_path / "out.zarr"), path="t")
    assert "dtype" not in out.attrs
    assert open_dataset(tmp_path / "out.zarr")["t"].dtype == out.dtype


def with_fill_attribute(path: Path, zarr_format: int, fill: Any) -> Any:
    """:func:`write_dataset`'s Dataset with ``t`` stored as int16 (its NaNs as a number) and
    ``fill(s0)`` (``s0``: its stored value at [0, 0], which about 30 elements hold) set as its
    ``_FillValue`` attribute after xarray wrote it (xarray casts its own to the dtype),
    consolidated again. Returns ``(s0, the stored int16 values of t)``."""
    write_dataset(path, zarr_format, {"dtype": "int16"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stored = zarr.open_array(str(path), path="t", mode="r")[...]
        s0 = int(stored[0, 0])
        t = zarr.open_array(str(path), path="t", mode="r+")
        t.update_attributes({"_FillValue": fill(s0)})
        zarr.consolidate_metadata(str(path))
    return s0, stored


AGREED = {  # (Zarr format, _FillValue from the stored value s0, whether xarray masks s0)
    "v3-integral-float": (3, float, True),  # xarray's int(): s0.0 is s0
    "v3-integer-text": (3, str, True),  # int("251") is 251
    "v2-integral-float": (2, float, True),  # compared as it is: s0.0 == s0
    "v2-integer-text": (2, str, False),  # text, equal to no number: nothing masked
    "v2-half": (2, lambda s0: s0 + 0.5, False),  # equal to no integer: nothing masked
    "v2-nan-text": (2, lambda s0: "NaN", False),
}


@pytest.mark.parametrize("name", list(AGREED))
def test_an_integer_variables_fill_value_masks_what_xarray_masks(tmp_path: Path, name: str) -> None:
    """An int16 variable whose ``_FillValue`` attribute is not an integer: the run decodes
    what ``xr.open_zarr`` decodes, to the bit (masking or not; float32 either way). Zarr v3's
    is read with ``int()`` (xarray's ``FillValueCoder.decode``), v2's compared as it is
    (``CFMaskCoder``). The v3 text "251" had masked nothing, where xarray masks the 251s."""
    zarr_format, fill, masks = AGREED[name]
    s0, stored = with_fill_attribute(tmp_path / "in.zarr", zarr_format, fill)
    decoded = open_dataset(tmp_path / "in.zarr")["t"].values
    assert decoded.dtype == np.float32
    assert np.array_equal(np.isnan(decoded), stored == s0 if masks else np.isnan(stored))
    pipeline.run(config(tmp_path, input={"mask_and_scale": True}))
    assert_variable_as_xarray_opened_it(tmp_path / "out.zarr", tmp_path / "in.zarr")


UNREADABLE_FILLS = {  # Zarr v3 _FillValue of int16 values from s0 (say 251): xarray's reading
    "half": lambda s0: s0 + 0.5,  # int(251.5) == 251: the 251s masked
    "nan-text": lambda s0: "NaN",  # int("NaN") fails
    "nan": lambda s0: float("nan"),  # int(nan) fails
    "float-text": lambda s0: f"{s0}.0",  # int("251.0") fails
    "null": lambda s0: None,  # int(None) fails
    "list": lambda s0: [s0],  # int([251]) fails
}


@pytest.mark.parametrize("name", list(UNREADABLE_FILLS))
def test_a_v3_integer_fill_value_xarray_misreads_is_refused_naming_the_fix(
    tmp_path: Path, name: str
) -> None:
    """A Zarr v3 int16 variable whose ``_FillValue`` xarray cannot read (its open fails) or
    reads as another value (``int(251.5)`` is 251: it masks the 251s): refused in one line
    naming the attribute and the fix, with or without mask_and_scale, before anything is
    written. It had been masked as written (nothing, for 251.5), or had failed once the
    output was begun, with xarray's own error."""
    fill = UNREADABLE_FILLS[name]
    s0, stored = with_fill_attribute(tmp_path / "in.zarr", 3, fill)
    if name == "half":  # xarray misreads it
        decoded = open_dataset(tmp_path / "in.zarr")["t"].values
        assert np.array_equal(np.isnan(decoded), stored == s0)
    else:
        with pytest.raises((TypeError, ValueError)):
            open_dataset(tmp_path / "in.zarr")
    for mask_and_scale in (False, True):
        with pytest.raises(InputError) as info:
            pipeline.run(config(tmp_path, input={"mask_and_scale": mask_and_scale}))
        e = info.value
        assert e.variable == str(tmp_path / "in.zarr" / "t")
        assert e.attributes == ["_FillValue"] and e.fix == "_FillValue as an integer"
        assert f"_FillValue {fill(s0)!r} on its int16 values" in str(e)
        assert len(str(e).splitlines()) == 1
    assert not (tmp_path / "out.zarr").exists()


def test_a_v3_float_fill_value_written_as_a_number_is_refused_with_xarrays_text(
    tmp_path: Path,
) -> None:
    """xarray writes a Zarr v3 float variable's ``_FillValue`` as the base64 text of a double
    and cannot open one written as a number. The refusal names the text to write; written,
    the run decodes what xarray decodes, to the bit."""
    write_dataset(tmp_path / "in.zarr", 3)
    arr = zarr.open_array(str(tmp_path / "in.zarr"), path="t", mode="r+")
    v0 = float(arr[0, 0])
    arr.update_attributes({"_FillValue": v0})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(str(tmp_path / "in.zarr"))
    with pytest.raises(AssertionError):  # xarray's FillValueCoder.decode
        open_dataset(tmp_path / "in.zarr")
    with pytest.raises(InputError) as info:
        pipeline.run(config(tmp_path, input={"mask_and_scale": True}))
    e = info.value
    assert e.attributes == ["_FillValue"] and len(str(e).splitlines()) == 1
    text = e.fix.removeprefix("_FillValue: ").strip("'")
    assert text != e.fix and text in str(e)
    assert not (tmp_path / "out.zarr").exists()
    arr.update_attributes({"_FillValue": text})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(str(tmp_path / "in.zarr"))
    decoded = open_dataset(tmp_path / "in.zarr")["t"].values
    assert np.isnan(decoded[0, 0]) and np.count_nonzero(np.isnan(decoded)) == 9  # 8 were NaN
    pipeline.run(config(tmp_path, input={"mask_and_scale": True}))
    assert_variable_as_xarray_opened_it(tmp_path / "out.zarr", tmp_path / "in.zarr")


def test_a_plain_v3_arrays_numeric_fill_value_is_the_number_it_says(tmp_path: Path, cli) -> None:
    """A Zarr v3 array without dimension names, which xarray does not read as a variable,
    whose attributes hold a numeric ``_FillValue`` (as netCDF-minded tools write it): refused
    as one "xarray cannot read", with mask_and_scale false and true, the only fix offered an
    edit of the input (F5). xarray's rule for a variable's v3 ``_FillValue`` does not reach
    it: it is the number it says, as a v2 one. Without mask_and_scale it is refused as masked,
    naming mask_and_scale: true (the input untouched); with it, those elements are NaN, the
    others computed, and verify passes."""
    x = np.arange(64, dtype="f4").reshape(8, 8)
    x[1, 2] = -9999.0
    z = zarr.create_array(
        str(tmp_path / "in.zarr"),
        shape=x.shape,
        dtype="f4",
        chunks=(4, 4),
        attributes={"_FillValue": -9999.0, "units": "m"},
    )
    z[...] = x
    before = file_states(tmp_path / "in.zarr")
    cfg = {
        "input": {"store": str(tmp_path / "in.zarr")},
        "output": {"store": str(tmp_path / "out.zarr")},
        "stages": [{"op": "multiply", "factor": 2}],
    }
    with pytest.raises(InputError) as info:
        pipeline.run(cfg)
    assert info.value.fix == "input.mask_and_scale: true", info.value
    assert "cannot read" not in str(info.value)
    cfg["input"]["mask_and_scale"] = True
    assert pipeline.run(cfg).status == "complete"
    out = zarr.open_array(str(tmp_path / "out.zarr"), mode="r")[...]
    want = np.where(x == -9999.0, np.float32(np.nan), x * np.float32(2))
    assert np.array_equal(out, want, equal_nan=True) and np.isnan(out[1, 2])
    assert file_states(tmp_path / "in.zarr") == before
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(cfg))
    rc, out_text, err = cli("verify", "--all", tmp_path / "t.yaml")
    assert rc == 0, err + out_text


@pytest.mark.parametrize(
    ("path", "fill"),
    [("", -9999.0), ("", "NaN-number"), ("a/b/v", -9999.0), ("", "base64")],
    ids=["root", "root-nan", "in-no-group", "root-xarray-text"],
)
def test_a_v3_fill_value_of_an_array_in_no_group_is_the_number_it_says(
    tmp_path: Path, cli, path: str, fill: Any
) -> None:
    """A Zarr v3 array with dimension names at the store's root, or under folders that are
    no group, is no variable ``xr.open_zarr`` reads (it opens no array there), so xarray's
    rule for a variable's v3 ``_FillValue`` (base64 text of a double) does not reach it, as
    it does not reach an array without dimension names: h67e, a root array's ``-9999.0``, or
    NaN, as zarr-python users write them, had been refused with or without mask_and_scale as
    a value "xarray cannot read", the fix offered base64 text. Its number masks (refused as
    masked without mask_and_scale, the input untouched; NaN where it is with it, verify
    passing), NaN masks nothing, and xarray's own text (a variable's folder given as the
    store) is still read as xarray writes it."""
    x = np.arange(64, dtype="f4").reshape(8, 8)
    x[1, 2] = -9999.0
    said = {
        "NaN-number": float("nan"),
        "base64": base64.standard_b64encode(struct.pack("<d", -9999.0)).decode(),
    }.get(fill, fill)
    z = zarr.create_array(
        str(tmp_path / "in.zarr" / path) if path else str(tmp_path / "in.zarr"),
        shape=x.shape,
        dtype="f4",
        chunks=(4, 4),
        dimension_names=("y", "x"),
        attributes={"_FillValue": said, "units": "m"},
    )
    z[...] = x
    before = file_states(tmp_path / "in.zarr")
    cfg: dict[str, Any] = {
        "input": {"store": str(tmp_path / "in.zarr"), "array": path},
        "output": {"store": str(tmp_path / "out.zarr")},
        "stages": [{"op": "multiply", "factor": 2}],
    }
    masks = fill != "NaN-number"
    if masks:
        with pytest.raises(InputError) as info:
            pipeline.run(cfg)
        assert info.value.fix == "input.mask_and_scale: true", info.value
        assert "cannot read" not in str(info.value) and len(str(info.value).splitlines()) == 1
        assert not (tmp_path / "out.zarr").exists()
        cfg["input"]["mask_and_scale"] = True
    assert pipeline.run(cfg).status == "complete"
    out = zarr.open_array(str(tmp_path / "out.zarr"), mode="r")[...]
    want = x * np.float32(2)
    if masks:
        want = np.where(x == -9999.0, np.float32(np.nan), want)
    assert out.dtype == want.dtype and np.array_equal(out, want, equal_nan=True)
    assert bool(np.isnan(out[1, 2])) is masks
    assert file_states(tmp_path / "in.zarr") == before
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(cfg))
    rc, out_text, err = cli("verify", "--all", tmp_path / "t.yaml")
    assert rc == 0, err + out_text


@pytest.mark.parametrize("path", ["", "a/v"], ids=["root", "in-no-group"])
@pytest.mark.parametrize("dtype", ["float32", "int16"])
def test_a_v2_fill_value_of_an_array_in_no_group_masks_only_where_asked(
    tmp_path: Path, cli, path: str, dtype: str
) -> None:
    """A Zarr v2 array with ``_ARRAY_DIMENSIONS`` at the store's root, or under folders that
    are no group, with zarr-python 2's default fill value 0 and zeros among its elements:
    ``xr.open_zarr`` does not open it (no group), so xarray's reading of a v2 fill value as
    ``_FillValue`` decodes nothing there. h69a: it had been refused as "stored masked
    (_FillValue)", an attribute it does not have, its decoding one xarray never does; it is
    read as zarr-python reads it, zeros as numbers, the plan's note saying so and how to
    mask them, verify passing; ``input.mask_and_scale: true`` masks them, as xarray reads the
    array in a Dataset."""
    x = np.arange(24).reshape(4, 6).astype(dtype)
    x[1, 2] = 0
    src = tmp_path / "in.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        z = zarr.create_array(
            str(src / path) if path else str(src),
            shape=x.shape,
            dtype=dtype,
            chunks=(2, 6),
            zarr_format=2,
            fill_value=0,
            attributes={"_ARRAY_DIMENSIONS": ["y", "x"], "units": "m"},
        )
        z[...] = x
        with pytest.raises(zarr.errors.GroupNotFoundError):  # xarray opens no variable there
            xr.open_zarr(str(src), group=path.rpartition("/")[0] or None, consolidated=False)
    before = file_states(src)
    cfg: dict[str, Any] = {
        "input": {"store": str(src), "array": path},
        "output": {"store": str(tmp_path / "out.zarr")},
        "stages": [{"op": "multiply", "factor": 2}],
        "cluster": _THREADS,
    }
    (said,) = [n for n in pipeline.plan(cfg).notes if "no group around it" in n]
    assert "fill value 0" in said and "input.mask_and_scale: true" in said, said
    assert pipeline.run(cfg).status == "complete"
    out = zarr.open_array(str(tmp_path / "out.zarr"), mode="r")[...]
    with np.errstate(all="ignore"):
        want = apply_chain(plan_chain(parse_config(cfg).stage_specs(), x.dtype), x)
    assert same_bits(out, want)
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(cfg))
    rc, out_text, err = cli("verify", "--all", tmp_path / "t.yaml")
    assert rc == 0, err + out_text
    masked = {**cfg, "input": {**cfg["input"], "mask_and_scale": True}}
    assert not [n for n in pipeline.plan(masked).notes if "no group around it" in n]
    assert pipeline.run(masked, overwrite=True).status == "complete"
    out = zarr.open_array(str(tmp_path / "out.zarr"), mode="r")[...]
    assert np.isnan(out[1, 2]) and np.isnan(out[0, 0]) and out[0, 1] == 2
    assert file_states(src) == before


def _plain_array(src: Path, writer: str, x: np.ndarray, attrs: dict[str, Any]) -> str:
    """``x`` written at ``src`` as a plain Zarr array (no dimension names) by ``writer``, with
    the attributes ``attrs``; its path in the store. A v2 array's fill value is zarr-python
    2's default, 0; ``group-`` writers put it in a group that is no Dataset."""
    path = "a/v" if writer.startswith("group") else ""
    fmt = 2 if writer.endswith("v2") else 3
    if writer.startswith("tensorstore"):
        ts = pytest.importorskip("tensorstore")
        driver = "zarr" if fmt == 2 else "zarr3"
        meta = {"fill_value": 0, "dtype": "<i2"} if fmt == 2 else {"data_type": "int16"}
        t = ts.open(
            {"driver": driver, "kvstore": {"driver": "file", "path": str(src)}, "metadata": meta},
            create=True,
            shape=list(x.shape),
            chunk_layout=ts.ChunkLayout(chunk_shape=[2, 6]),
        ).result()
        t[...] = x
        if attrs:  # tensorstore writes no v2 attributes: zarr-python adds them
            zarr.open_array(str(src), mode="r+").attrs.update(attrs)
        return path
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if path:
            zarr.open_group(str(src), mode="w", zarr_format=fmt).create_group("a")
        z = zarr.create_array(
            str(src / path) if path else str(src),
            shape=x.shape,
            dtype=x.dtype,
            chunks=(2, 6),
            zarr_format=fmt,
            fill_value=0,
            attributes=attrs,
        )
        z[...] = x
    return path


@pytest.mark.parametrize(
    "writer",
    [
        "zarr-python-v2",
        "zarr-python-v3",
        "group-v2",
        "group-v3",
        "tensorstore-v2",
        "tensorstore-v3",
    ],
)
@pytest.mark.parametrize("attrs", [{}, {"scale_factor": 0.5}], ids=["bare", "scaled"])
def test_mask_and_scale_on_a_plain_array_says_what_it_does(
    tmp_path: Path, writer: str, attrs: dict[str, Any]
) -> None:
    """``input.mask_and_scale: true`` on a plain Zarr array (no dimension names: zarr-python 2
    or 3, tensorstore, at a store's root or in a group that is no Dataset), which xarray does
    not open as a variable. h69e: it did nothing and said nothing. Its own CF attributes are
    decoded as a variable's (``scale_factor`` here: the output is NumPy's chain over the
    stored numbers times 0.5); a Zarr v2 fill value (0, zarr-python 2's default) is left a
    number, as zarr-python reads it, where xarray, given the array's names, reads it as the
    ``_FillValue`` and masks it: the plan says so, naming the attribute that masks it, and so
    it does; with nothing to decode, the plan says the option decodes nothing. The input is
    never modified."""
    x = np.arange(24, dtype="i2").reshape(4, 6)  # x[0, 0] == 0: the fill value
    src = tmp_path / "in.zarr"
    path = _plain_array(src, writer, x, attrs)
    v2 = writer.endswith("v2")
    before = file_states(src)
    cfg: dict[str, Any] = {
        "input": {"store": str(src), "array": path, "mask_and_scale": True},
        "output": {"store": str(tmp_path / "out.zarr"), "array": ""},
        "stages": [{"op": "multiply", "factor": 2}],
        "cluster": _THREADS,
    }
    notes = [n for n in pipeline.plan(cfg).notes if n.startswith("input.mask_and_scale: true")]
    assert len(notes) == (1 if v2 or not attrs else 0), notes
    if v2:
        assert "fill_value 0" in notes[0] and "attribute _FillValue: 0" in notes[0], notes
    elif not attrs:
        assert "decodes nothing" in notes[0] and "no dimension names" in notes[0], notes
    assert pipeline.run(cfg).status == "complete"
    out = zarr.open_array(str(tmp_path / "out.zarr"), mode="r")[...]
    values = x * 0.5 if attrs else x
    want = apply_chain(plan_chain(parse_config(cfg).stage_specs(), values.dtype), values)
    assert same_bits(out, want), out
    assert file_states(src) == before
    if not v2:
        return
    # xarray, given the array's names in a group, masks the fill value, as the note says
    named, inside = tmp_path / "named.zarr", path or "v"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if path:
            shutil.copytree(src, named)
        else:  # a group around the root array
            zarr.open_group(str(named), mode="w", zarr_format=2)
            shutil.copytree(src, named / inside)
        zarr.open_array(str(named), path=inside, mode="r+").attrs["_ARRAY_DIMENSIONS"] = ["y", "x"]
        group, _, name = inside.rpartition("/")
        ds = xr.open_zarr(str(named), group=group or None, consolidated=False)
        assert np.isnan(ds[name][0, 0]) and ds[name][0, 1] == (0.5 if attrs else 1)
    # and the fix the note names masks it here too
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zarr.open_array(str(src), path=path, mode="r+").attrs["_FillValue"] = 0
    plan = pipeline.plan(cfg)
    assert not [n for n in plan.notes if n.startswith("input.mask_and_scale: true")]
    assert pipeline.run(cfg, overwrite=True).status == "complete"
    out = zarr.open_array(str(tmp_path / "out.zarr"), mode="r")[...]
    assert np.isnan(out[0, 0]) and out[0, 1] == (1.0 if attrs else 2.0), out


@pytest.mark.parametrize("packed", [False, True], ids=["masked", "packed"])
def test_a_v2_variables_fill_value_mask_is_named_as_its_fill_value(
    tmp_path: Path, packed: bool
) -> None:
    """A Zarr v2 variable of a group with the fill value 0 (zarr-python 2's default), which
    xarray reads as its ``_FillValue``, masking zeros: refused without mask_and_scale, in one
    line naming the fill value where the user finds it (its ``.zarray``), not an attribute
    ``_FillValue`` it does not have, and the decoding in words (h69a: "(_FillValue)", "unpack
    (0.0 -> NaN) as float32")."""
    src = tmp_path / "in.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = zarr.open_group(str(src), mode="w", zarr_format=2)
        attrs: dict[str, Any] = {"_ARRAY_DIMENSIONS": ["y", "x"]}
        if packed:
            attrs["scale_factor"] = 0.5
        t = g.create_array("t", shape=(2, 3), dtype="float32", fill_value=0, attributes=attrs)
        t[...] = np.array([[0, 1, 2], [3, 0, 5]], "float32")
        decoded = xr.open_zarr(str(src), consolidated=False)["t"].values
    assert np.isnan(decoded[0, 0])  # xarray masks the zeros
    with pytest.raises(InputError) as info:
        pipeline.run(config(tmp_path, cluster=_THREADS))
    line = str(info.value)
    assert len(line.splitlines()) == 1 and info.value.attributes[-1] == "_FillValue"
    assert "its Zarr fill_value 0.0, which xarray reads as _FillValue)" in line, line
    assert "(_FillValue)" not in line
    if not packed:
        assert "(elements equal to 0.0 become NaN, in float32)" in line, line
    assert line.endswith("set input.mask_and_scale: true to run the stages on the decoded values")
    assert not (tmp_path / "out.zarr").exists()


@pytest.mark.parametrize("zarr_format", [2, 3], ids=lambda f: f"v{f}")
@pytest.mark.parametrize("member", ["t", "x"], ids=["variable", "coordinate"])
def test_metadata_gone_but_listed_in_the_consolidated_copy_names_the_copy(
    tmp_path: Path, zarr_format: int, member: str
) -> None:
    """An array's own metadata document (``.zarray``, ``zarr.json``) deleted while the
    group's consolidated copy still lists it, its chunks there: xarray opens the Dataset
    through the copy; the pipeline reads each array's own metadata and refuses it, in one
    line naming the copy and the document to write back (h69a: the variable's had said "no
    Zarr array at ...: it is a folder of no Zarr metadata; check input.array", the copy
    unnamed; the coordinate's "it lists 'x', which the group no longer holds", its only fix
    consolidating again, which drops the coordinate). Nothing is written, the input is
    untouched; the fix followed as said, the input runs."""
    src = tmp_path / "in.zarr"
    write_dataset(src, zarr_format)
    doc = ".zarray" if zarr_format == 2 else "zarr.json"
    (src / member / doc).unlink()
    before = file_states(src)
    with pytest.raises(InputError) as info:
        pipeline.run(config(tmp_path, cluster=_THREADS))
    line = str(info.value)
    copy = src / (".zmetadata" if zarr_format == 2 else "zarr.json")
    assert len(line.splitlines()) == 1, line
    if member == "t":
        assert f"the consolidated metadata {copy} still lists it" in line, line
        assert f"write that entry back to t/{doc}" in line, line
    else:
        assert f"the consolidated metadata of the input Dataset {src} is stale" in line, line
        assert f"whose own metadata x/{doc} is gone" in line, line
        assert f"back to x/{doc} to keep it" in line, line
    assert not (tmp_path / "out.zarr").exists() and file_states(src) == before
    held = json.loads(copy.read_text())
    if zarr_format == 2:
        entry = held["metadata"][f"{member}/.zarray"]
    else:
        entry = held["consolidated_metadata"]["metadata"][member]
    (src / member / doc).write_text(json.dumps(entry))
    assert pipeline.run(config(tmp_path, cluster=_THREADS)).status == "complete"
    assert_variable_as_xarray_opened_it(tmp_path / "out.zarr", src)


@pytest.mark.parametrize("edit", ["deleted", "names-removed"])
def test_dimension_names_only_in_the_consolidated_copy_are_refused_naming_it(
    tmp_path: Path, edit: str
) -> None:
    """A Zarr v2 variable whose own ``.zattrs`` is gone, or has lost ``_ARRAY_DIMENSIONS``,
    while the group's ``.zmetadata`` still gives it names: xarray reads a variable of the
    Dataset through the copy; the pipeline, reading the array's own metadata, had run it as
    an array alone, written at the output's root without its Dataset, silently (h69a).
    Refused in one line naming the copy, its entry and the document to write back; nothing
    written, the input untouched; the fix followed, the input runs as a Dataset variable."""
    src = tmp_path / "in.zarr"
    write_dataset(src, 2)
    own = src / "t" / ".zattrs"
    if edit == "deleted":
        own.unlink()
    else:
        kept = json.loads(own.read_text())
        kept.pop("_ARRAY_DIMENSIONS")
        own.write_text(json.dumps(kept))
    before = file_states(src)
    with pytest.raises(InputError) as info:
        pipeline.run(config(tmp_path, cluster=_THREADS))
    line = str(info.value)
    assert len(line.splitlines()) == 1, line
    assert f"the consolidated metadata {src / '.zmetadata'} gives it" in line, line
    assert line.endswith("write that entry back to t/.zattrs"), line
    assert info.value.differs == ["_ARRAY_DIMENSIONS"]
    assert not (tmp_path / "out.zarr").exists() and file_states(src) == before
    entry = json.loads((src / ".zmetadata").read_text())["metadata"]["t/.zattrs"]
    own.write_text(json.dumps(entry))
    assert pipeline.run(config(tmp_path, cluster=_THREADS)).status == "complete"
    assert_variable_as_xarray_opened_it(tmp_path / "out.zarr", src)


def test_a_fill_value_xarray_cannot_read_beside_the_input_is_refused_before_writing(
    tmp_path: Path,
) -> None:
    """xarray reads every v3 array's ``_FillValue`` when it opens a group, dropped variables
    too: ``p``'s 'NaN' on integers had stopped the run when it wrote the output's
    coordinates, after the output was begun. Refused before, naming ``p``; the variable
    alone (output.array: '') is written without xarray."""
    write_dataset(tmp_path / "in.zarr", 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        del zarr.open_group(str(tmp_path / "in.zarr"), mode="r+")["p"]  # append keeps a dtype
        ds = xr.Dataset({"p": (("y",), np.arange(ROWS, dtype=np.int16))})
        ds.to_zarr(str(tmp_path / "in.zarr"), mode="a", zarr_format=3)
        p = zarr.open_array(str(tmp_path / "in.zarr"), path="p", mode="r+")
        assert p.dtype == np.int16
        p.update_attributes({"_FillValue": "NaN"})
        zarr.consolidate_metadata(str(tmp_path / "in.zarr"))
    with pytest.raises(ValueError, match="NaN"):  # xarray's int("NaN")
        open_dataset(tmp_path / "in.zarr")
    with pytest.raises(InputError) as info:
        pipeline.run(config(tmp_path))
    e = info.value
    assert e.variable == str(tmp_path / "in.zarr" / "p") and e.attributes == ["_FillValue"]
    assert "output.array: ''" in str(e) and len(str(e).splitlines()) == 1
    assert not (tmp_path / "out.zarr").exists()
    assert pipeline.run(config(tmp_path, output={"array": ""})).status == "complete"
    out = zarr.open_array(str(tmp_path / "out.zarr"), mode="r")
    stored = zarr.open_array(str(tmp_path / "in.zarr"), path="t", mode="r")[...]
    chain = plan_chain(parse_config(config(tmp_path)).stage_specs(), stored.dtype)
    with np.errstate(all="ignore"):
        want = apply_chain(chain, stored)
    assert same_bits(out[...], want)


@pytest.mark.parametrize("zarr_format", [2, 3], ids=lambda f: f"v{f}")
def test_a_run_warns_nothing_for_an_unconsolidated_dataset_with_a_string_coordinate(
    tmp_path: Path, backend_client: tuple[str, Any], zarr_format: int
) -> None:
    """No consolidated metadata in the input (xarray's open_zarr used to warn that it found
    none), and a coordinate of strings, which zarr warns about in v3 metadata: the run
    warns nothing, and the output's coordinate is the input's."""
    backend, client = backend_client
    names = np.array([f"s{i}" for i in range(COLS)])
    ds = xr.Dataset(
        {"t": (("y", "x"), np.ones((ROWS, COLS)), {"units": "K"})},
        coords={"x": ("x", np.arange(COLS)), "name": ("x", names, {"long_name": "station"})},
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(str(tmp_path / "in.zarr"), zarr_format=zarr_format, mode="w", consolidated=False)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert pipeline.run(config(tmp_path, backend), client=client).status == "complete"
    assert [str(w.message) for w in seen] == []
    got, want = open_dataset(tmp_path / "out.zarr"), open_dataset(tmp_path / "in.zarr")
    assert got["name"].dtype == want["name"].dtype
    assert np.array_equal(got["name"].values, want["name"].values)
    assert got["name"].attrs == want["name"].attrs


#: ``run``, ``verify`` and ``run --resume`` (nothing to do) of the config ``argv[1]``, as the
#: command line runs each, in one process: its exit status the worst of theirs.
RUN_VERIFY_RUN = """
import sys
from pipeline.cli import main
cfg = sys.argv[1]
rcs = [main(["run", cfg, "--progress", "none"]), main(["verify", cfg])]
rcs.append(main(["run", cfg, "--resume", "-v"]))
sys.exit(max(rcs))
"""


@pytest.mark.parametrize("zarr_format", [2, 3], ids=lambda f: f"v{f}")
def test_fixed_length_string_coordinates_print_no_library_warning(
    tmp_path: Path, zarr_format: int
) -> None:
    """Coordinates of fixed-length strings (``<U5`` and ``S5``, as xarray writes them) in a
    consolidated input: zarr-python's two-line ``UnstableSpecificationWarning`` (no Zarr v3
    spec for the dtype) came on stderr as the run compared the input's consolidated copy with
    its arrays (a v3 input), and as ``verify`` and ``--resume`` compared the output's (any
    input). The output keeps the dtype xarray writes to v3 for them (xarray warns the same
    there): no line of stderr names a warning, and each coordinate's dtype, values and
    attributes are what xarray reads from the input."""
    ds = xr.Dataset(
        {"t": (("y", "x"), np.arange(20.0).reshape(4, 5), {"units": "K"})},
        coords={
            "x": ("x", np.arange(5)),
            "name": ("x", np.array(["alpha", "beta", "gam", "delta", "eps"]), {"a": "n"}),
            "code": ("x", np.array([b"A1", b"B22", b"C333", b"D4444", b"E5555"]), {"a": "c"}),
        },
    )
    assert (ds["name"].dtype, ds["code"].dtype) == (np.dtype("<U5"), np.dtype("S5"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(str(tmp_path / "in.zarr"), zarr_format=zarr_format, consolidated=True)
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump(config(tmp_path)))
    proc = run_python(["-c", RUN_VERIFY_RUN, cfg], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "nothing to do" in proc.stdout + proc.stderr
    assert "Warning" not in proc.stderr and "warn(" not in proc.stderr, proc.stderr
    got, want = open_dataset(tmp_path / "out.zarr"), open_dataset(tmp_path / "in.zarr")
    for name in ("name", "code"):
        assert got[name].dtype == want[name].dtype, name
        assert same_bits(got[name].values, want[name].values), name
        assert got[name].attrs == want[name].attrs, name


@pytest.mark.parametrize("key, value", [("scale_factor", "0.1"), ("add_offset", ["x"])])
def test_a_packing_attribute_of_text_is_refused_naming_it(
    tmp_path: Path, key: str, value: Any
) -> None:
    """``scale_factor: "0.1"`` (text, which xarray fails to multiply by too) had been refused
    as "unsupported dtype <U0" (helper-39): one line naming the attribute and the fix."""
    ds = xr.Dataset({"t": (("x",), np.arange(6, dtype=np.int16), {key: value})})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(str(tmp_path / "in.zarr"), zarr_format=3, mode="w")
        with pytest.raises(Exception):  # noqa: B017  (xarray's own error: numpy's, untyped)
            xr.open_zarr(str(tmp_path / "in.zarr"))["t"].load()
    with pytest.raises(InputError) as info:
        pipeline.run(config(tmp_path, input={"mask_and_scale": True}))
    assert info.value.attributes == [key] and info.value.fix == f"{key} as a number"
    assert len(str(info.value).splitlines()) == 1
    assert not (tmp_path / "out.zarr").exists()


# an integer add_offset with it decodes to float64 (xarray's _choose_float_dtype): not here
@pytest.mark.parametrize("dtype, scale, offset", [("int8", 3, None), ("uint8", 4, None)])
def test_an_integer_packing_that_cannot_overflow_runs(
    tmp_path: Path, dtype: str, scale: int, offset: int | None
) -> None:
    """Integers packed with an integer scale_factor decode to int64 within the stored range
    times it (int8 times 3: +-384): the chain is planned on that range, not on all of int64,
    which had refused a chain that cannot overflow (helper-39). Values as xarray decodes
    them, through the chain, to the bit."""
    info = np.iinfo(dtype)
    stored = np.linspace(info.min, info.max, ROWS * COLS).astype(dtype).reshape(ROWS, COLS)
    attrs = {"scale_factor": scale, **({"add_offset": offset} if offset is not None else {})}
    ds = xr.Dataset({"t": (("y", "x"), stored, attrs)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(str(tmp_path / "in.zarr"), zarr_format=3, mode="w")
    seen = open_dataset(tmp_path / "in.zarr")["t"].values
    assert seen.dtype == np.int64
    cfg = config(tmp_path, input={"mask_and_scale": True})
    assert pipeline.run(cfg).status == "complete"
    values = Interval(int(seen.min()), int(seen.max()))  # those values, computed as int64
    chain = plan_chain(parse_config(cfg).stage_specs(), seen.dtype, values=values)
    want = apply_chain(chain, seen)
    assert same_bits(open_dataset(tmp_path / "out.zarr")["t"].values, want)


def test_an_integer_scale_factor_that_overflows_is_refused_naming_it(tmp_path: Path) -> None:
    """An integer scale_factor decodes to int64 (as xarray decodes it): a chain that can
    overflow int64 is refused naming the attribute, with the overflow's fields; the same
    chain on a plain int64 array is refused with those fields too."""
    from pipeline.errors import PlanError

    # int32 times 2, times 5, squared: past int64 (int16's would fit, and run: below)
    stored = np.arange(ROWS * COLS, dtype=np.int32).reshape(ROWS, COLS)
    ds = xr.Dataset({"t": (("y", "x"), stored, {"scale_factor": 2})})  # stored as it is
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(str(tmp_path / "in.zarr"), zarr_format=3, mode="w")
    assert open_dataset(tmp_path / "in.zarr")["t"].dtype == np.int64  # xarray's decoding
    with pytest.raises(PlanError) as info:
        pipeline.run(config(tmp_path, input={"mask_and_scale": True}))
    e = info.value
    assert (e.stage, e.dtype, e.attributes) == ("square", "int64", ["scale_factor"])
    assert e.variable == str(tmp_path / "in.zarr" / "t") and e.bound > np.iinfo(np.int64).max
    assert len(str(e).splitlines()) == 1
    assert not (tmp_path / "out.zarr").exists()
    specs = parse_config(config(tmp_path)).stage_specs()
    with pytest.raises(PlanError) as plain:
        plan_chain(specs, np.dtype("int64"))
    assert (plain.value.stage, plain.value.dtype) == ("multiply", "int64")
    assert not hasattr(plain.value, "attributes")


def _integer_packed(
    path: Path, zarr_format: int, stored: str, encoding: dict[str, Any] | None, bad: Any = None
) -> None:
    """The variable ``t`` (y, x) as xarray writes it, its elements stored as ``stored``,
    packed with the integer ``scale_factor: 2`` (xarray decodes it to int64), in chunks of ten
    rows; ``encoding`` its fill value (None: none, even on floats, where xarray writes NaN);
    every element held (1 to 50, and 0.5 more on floats: xarray truncates them), but ``bad``
    at [23, 7] where given."""
    values = (np.arange(ROWS * COLS).reshape(ROWS, COLS) % 50 + 1).astype(stored)
    if stored.startswith("float"):
        values += 0.5
    if bad is not None:
        values[23, 7] = bad
    ds = xr.Dataset({"t": (("y", "x"), values, {"scale_factor": 2})})
    ds["t"].encoding.update({**(encoding or {}), "chunks": (10, COLS)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(str(path), zarr_format=zarr_format, mode="w")
        if encoding is None and stored.startswith("float"):
            arr = zarr.open_array(str(path), path="t", mode="r+")
            if zarr_format == 3:
                del arr.attrs["_FillValue"]
            zarr.consolidate_metadata(str(path))
    assert open_dataset(path)["t"].dtype == np.int64  # xarray's decoding


def _rows_written(out: Path) -> dict[int, bool]:
    """{first row: whether the output holds a stored unit there} for each block of ten rows
    of ``out``'s variable ``t`` (written in blocks of ten rows, one unit each)."""
    arr = zarr.open_array(str(out), path="t", mode="r")
    assert tuple(arr.shards or arr.chunks) == (10, COLS)
    return {r: (out / "t" / "c" / str(r // 10) / "0").exists() for r in range(0, ROWS, 10)}


MASKED = {  # (zarr_format, stored dtype, encoding, the element at [23, 7])
    "v2-int32-fill": (2, "int32", {"_FillValue": np.int32(-1)}, -1),
    "v3-int32-fill": (3, "int32", {"_FillValue": np.int32(-1)}, -1),
    "v3-int16-missing-value": (3, "int16", {"missing_value": np.int16(-1)}, -1),
    "v3-float32-nan": (3, "float32", None, np.nan),  # no fill: its NaN, int64 too
}


@pytest.mark.parametrize("name", list(MASKED))
def test_an_integer_scale_factor_with_a_missing_element_stops_the_run_at_its_block(
    tmp_path: Path, cli, name: str
) -> None:
    """An integer scale_factor decodes to int64 (as xarray decodes it), which holds no NaN:
    an element equal to a fill value (or a stored NaN) has no value there, and xarray reads an
    arbitrary integer. The plan accepts the variable (it cannot tell from the metadata: F3,
    one whose fill value no element held was refused), with a note that such an element
    stops the run; the run stops at the block that holds one, in one line naming the element,
    its chunk key, its value and the fix (the run had died with "cannot convert float NaN to
    integer", F2). Nothing wrong is written: the block's unit is absent, and the output
    incomplete, as ``verify`` says too. With scale_factor written as a float,
    ``--overwrite`` computes it."""
    zarr_format, stored, encoding, bad = MASKED[name]
    _integer_packed(tmp_path / "in.zarr", zarr_format, stored, encoding, bad)
    cfg = write_config(
        tmp_path,
        tmp_path / "in.zarr",
        tmp_path / "out.zarr",
        input={"array": "t", "mask_and_scale": True},
        stages=[{"op": "multiply", "factor": 1}],  # int64 through the stages (float32's range)
        chunking={"block": [10, COLS]},
        cluster={"workers": 1, "threads_per_worker": 2, "dashboard": ""},
    )
    rc, out, err = cli("plan", cfg)
    assert rc == 0, err
    assert "as int64" in out
    rc, _, err = cli("run", cfg, "--progress", "none")
    assert rc == 1
    # the plan's note first (a block holding a missing element stops the run), then the stop
    notes = [ln for ln in err.splitlines() if ln.startswith("note: ")]
    assert len(notes) == 1 and "stops the run" in notes[0], err
    line = one_line_error("\n".join(ln for ln in err.splitlines() if ln not in notes))
    key = "t/2.0" if zarr_format == 2 else "t/c/2/0"
    assert f"its element [23, 7] (in {key!r})" in line, line
    assert ("holds -1, a fill value" if bad == -1 else "is nan") in line, line
    assert "scale_factor: 2.0" in line and "--overwrite" in line, line
    assert status(tmp_path / "out.zarr", "t") == "incomplete"
    written = _rows_written(tmp_path / "out.zarr")
    assert not written[20]
    want = open_dataset(tmp_path / "in.zarr")["t"].values
    got = zarr.open_array(str(tmp_path / "out.zarr"), path="t", mode="r")[:]
    for row, there in written.items():  # what was written is xarray's value
        if there:
            assert np.array_equal(got[row : row + 10], want[row : row + 10]), row
    rc, _, err = cli("verify", cfg, "--all")  # the state `run` says, first (F5)
    assert rc == 1 and "the output is incomplete" in one_line_error(err)
    with pytest.raises(InputError) as info:
        pipeline.run(cfg, overwrite=True)
    e = info.value
    assert (e.key, e.element, e.attributes) == (key, [23, 7], ["scale_factor"])
    assert e.fix == "scale_factor as a float"
    assert e.variable == str(tmp_path / "in.zarr" / "t")
    zarr.open_array(str(tmp_path / "in.zarr"), path="t", mode="r+").attrs["scale_factor"] = 2.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(str(tmp_path / "in.zarr"))
    rc, _, err = cli("run", cfg, "--progress", "none", "--overwrite")
    assert rc == 0, err
    want = open_dataset(tmp_path / "in.zarr")["t"].values
    assert want.dtype.kind == "f" and np.isnan(want[23, 7])
    assert same_bits(open_dataset(tmp_path / "out.zarr")["t"].values, want)


def test_after_a_run_stopped_on_its_input_plan_verify_and_resume_say_that_line(
    tmp_path: Path, cli
) -> None:
    """h85f: a run stopped on a refusal of the input's data (an integer scale_factor, a
    missing element in the third block), the output left incomplete. ``plan`` had said
    "incomplete (an interrupted run): `run --resume` finishes it", ``verify`` the same, and
    ``run --resume --dry-run`` "this run resumes it", exit 0, while ``run --resume`` met the
    same refusal again. The run record keeps that line now (``stopped``, a new optional field
    its ``check`` covers, so an earlier release's reader takes the record whole), and each of
    them says the last run stopped on it; the resume that meets it again keeps the line again.
    h86f: they had said "mend that, then `run --resume` finishes it", and every mend (here
    ``scale_factor: 2.0``) changes the input, which `run --resume` then refuses. The record
    says the stop is of the input (``stopped_on_input``), and they say: mend that, then `run
    --overwrite` starts over, which, followed, finishes the output as xarray decodes it."""
    from pipeline.planning.plan import fields_edited, record_edited

    _integer_packed(tmp_path / "in.zarr", 3, "int16", {"_FillValue": np.int16(-1)}, -1)
    cfg = write_config(
        tmp_path,
        tmp_path / "in.zarr",
        tmp_path / "out.zarr",
        input={"array": "t", "mask_and_scale": True},
        stages=[{"op": "multiply", "factor": 1}],
        chunking={"block": [10, COLS]},
        cluster={"workers": 1, "threads_per_worker": 1, "dashboard": ""},
    )
    rc, _, err = cli("run", cfg, "--progress", "none", "-q")
    stop = one_line_error("\n".join(ln for ln in err.splitlines() if "note: " not in ln))
    assert rc == 1 and "holds -1, a fill value" in stop, err
    stop = stop.removeprefix("error: ")
    record = json.loads((tmp_path / "out.zarr" / "t" / ".pipeline" / "run.json").read_text())
    assert record["stopped"] == stop and record["stopped_on_input"] is True, record
    assert "stopped_resumes" not in record, record
    assert not fields_edited(record) and record_edited(record) is None
    advice = (
        "mend that, then `run --overwrite` starts over (a resume refuses an input changed since)"
    )
    rc, out, err = cli("plan", cfg)
    now = next(ln for ln in out.splitlines() if "output now" in ln)
    assert rc == 0 and now.endswith(f'incomplete (the last run stopped on "{stop}"): {advice}'), now
    assert "`run --resume`" not in now.replace(stop, ""), now  # the old advice, gone
    rc, _, err = cli("verify", cfg, "-q")
    line = one_line_error(err)
    assert rc == 1, err
    assert line.endswith(f'its last run stopped on "{stop}"; {advice}'), line
    assert "`run --resume`" not in line.replace(stop, ""), line
    rc, out, err = cli("run", cfg, "--resume", "--dry-run")
    now = next(ln for ln in out.splitlines() if "output now" in ln)
    assert rc == 0 and f'the last run stopped on "{stop}"' in now, now
    assert now.endswith(f"stops there again (the input is as it was): {advice}"), now
    assert "unless that is mended" not in now, now
    rc, _, err = cli("run", cfg, "--resume", "--progress", "none", "-q")
    lines = [ln for ln in err.splitlines() if "note: " not in ln]
    assert rc == 1 and len(lines) == 2, err
    assert lines[0].startswith("warning: the last run of ") and f'stopped on "{stop}"' in lines[0]
    assert lines[0].endswith(f"this run stops there again (the input is as it was): {advice}")
    assert "unless that is mended" not in lines[0], lines[0]
    assert lines[1] == f"error: {stop}", err
    record = json.loads((tmp_path / "out.zarr" / "t" / ".pipeline" / "run.json").read_text())
    assert record["stopped"] == stop and record["stopped_on_input"] is True
    assert not fields_edited(record)
    # a resume drops the line as it begins (its lock held): what stops it is its own to say
    from pipeline.config import load_config
    from pipeline.planning.plan import make_plan
    from pipeline.running import output
    from pipeline.store.ledger import Stop
    from tests.test_plan import MACHINES

    plan = make_plan(load_config(cfg), MACHINES["cpu"])
    assert plan.sink.ledger is not None
    plan.sink.ledger.acquire()
    try:
        # its line names the fix, which changes the input
        assert output.clear_stop(plan) == Stop(stop, mend=True, input=True)
    finally:
        plan.sink.ledger.release()
    record = json.loads((tmp_path / "out.zarr" / "t" / ".pipeline" / "run.json").read_text())
    assert "stopped" not in record and "stopped_on_input" not in record, record
    assert not fields_edited(record)
    rc, out, err = cli("plan", cfg)
    now = next(ln for ln in out.splitlines() if "output now" in ln)
    assert rc == 0 and "incomplete (an interrupted run): `run --resume` finishes it" in now, now
    # the advice followed: mended as the line says (scale_factor written as a float), which
    # changes the input, so a resume is refused, and `run --overwrite` finishes it
    zarr.open_array(str(tmp_path / "in.zarr"), path="t", mode="r+").attrs["scale_factor"] = 2.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(str(tmp_path / "in.zarr"))
    rc, _, err = cli("run", cfg, "--resume", "--progress", "none", "-q")
    line = one_line_error(err)
    assert rc == 1 and "cannot resume" in line and "`run --overwrite` starts over" in line, err
    rc, _, err = cli("run", cfg, "--overwrite", "--progress", "none", "-q")
    assert rc == 0 and status(tmp_path / "out.zarr", "t") == "complete", err
    want = open_dataset(tmp_path / "in.zarr")["t"].values  # xarray's decoding, NaN at [23, 7]
    assert want.dtype.kind == "f" and np.isnan(want[23, 7])
    assert same_bits(open_dataset(tmp_path / "out.zarr")["t"].values, want * want.dtype.type(1))


HELD = {  # (zarr_format, stored dtype, encoding), every element held
    # zarr's default v2 fill value, 0 (written by zarr below), which xarray masks
    "v2-int16-zarr-default-fill": (2, "int16", None),
    "v3-int16-fill": (3, "int16", {"_FillValue": np.int16(-1)}),
    "v2-int32-missing-value": (2, "int32", {"missing_value": np.int32(-1)}),
    "v3-float32": (3, "float32", None),  # xarray truncates 1.5 to 1 first
}


@pytest.mark.parametrize("name", list(HELD))
def test_an_integer_scale_factor_whose_fill_value_no_element_holds_runs(
    tmp_path: Path, cli, name: str
) -> None:
    """An integer scale_factor with a fill value that no element equals (zarr's default v2
    fill value 0 among them), or stored as floats none of which is NaN: xarray decodes every
    element to int64. The plan had refused it, from its metadata alone, saying its elements
    equal to the fill value were missing, none was, and telling the user to edit the input
    (F3). It runs, through the command line, to xarray's values to the bit, and verifies."""
    zarr_format, stored, encoding = HELD[name]
    if name == "v2-int16-zarr-default-fill":
        group = zarr.open_group(str(tmp_path / "in.zarr"), mode="w", zarr_format=2)
        attrs = {"scale_factor": 2, "_ARRAY_DIMENSIONS": ["y", "x"]}
        arr = group.create_array(
            "t", shape=(ROWS, COLS), dtype=stored, chunks=(10, COLS), attributes=attrs
        )
        assert arr.fill_value == 0
        arr[:] = np.arange(ROWS * COLS).reshape(ROWS, COLS) % 50 + 1
        zarr.consolidate_metadata(str(tmp_path / "in.zarr"))
        assert open_dataset(tmp_path / "in.zarr")["t"].encoding["_FillValue"] == 0
    else:
        _integer_packed(tmp_path / "in.zarr", zarr_format, stored, encoding)
    seen = open_dataset(tmp_path / "in.zarr")["t"].values
    assert seen.dtype == np.int64 and seen.min() == 2
    stages: list[dict[str, Any]] = [{"op": "multiply", "factor": 3}, {"op": "add"}]
    if stored == "float32":  # decoded within all of int64: a chain that cannot overflow it
        stages = [{"op": "multiply", "factor": 1}]
    cfg = write_config(
        tmp_path,
        tmp_path / "in.zarr",
        tmp_path / "out.zarr",
        input={"array": "t", "mask_and_scale": True},
        stages=stages,
        cluster={"workers": 1, "threads_per_worker": 2, "dashboard": ""},
    )
    rc, _, err = cli("run", cfg, "--progress", "none")
    assert rc == 0, err
    chain = plan_chain(
        parse_config(yaml.safe_load(cfg.read_text())).stage_specs(),
        seen.dtype,
        values=Interval(int(seen.min()), int(seen.max())),
    )
    assert same_bits(open_dataset(tmp_path / "out.zarr")["t"].values, apply_chain(chain, seen))
    rc, out, err = cli("verify", cfg, "--all")
    assert rc == 0, (out, err)


def test_carried_arrays_too_large_for_this_machine_are_refused_before_they_are_read(
    tmp_path: Path,
) -> None:
    """xarray reads the arrays carried beside the variable (here a curvilinear grid's 2-D
    ``lat``) whole into the command's process, outside the blocks' memory model: a plan
    whose machine cannot hold them three times over is refused, naming them and the fix,
    and one that can is not."""
    import dataclasses

    from pipeline.config.loading import locate
    from pipeline.devices.hardware import Facts
    from pipeline.errors import PlanError
    from pipeline.planning.plan import make_plan
    from pipeline.planning.variable import FRAME_COPIES

    write_dataset(tmp_path / "in.zarr", 3)
    grid = np.add.outer(np.linspace(40.0, 50.0, ROWS), np.linspace(0.0, 0.1, COLS))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = xr.open_zarr(str(tmp_path / "in.zarr")).load()
        ds = ds.assign_coords(lat=(("y", "x"), grid.astype("float32"), {"units": "degrees_north"}))
        del ds["t"].encoding["coordinates"]  # as opened ("lon"): xarray lists them anew
        ds.to_zarr(str(tmp_path / "in.zarr"), zarr_format=3, mode="w", consolidated=True)
    cfg = parse_config(config(tmp_path))
    # decoded bytes, at most: float32 counted as 8 bytes (CF decoding gives float64 at most)
    carried = {"lat": ROWS * COLS * 8, "lon": COLS * 8, "x": COLS * 8, "y": ROWS * 8}
    need = sum(carried.values()) * FRAME_COPIES
    facts = Facts.local(want_gpu=False)
    with pytest.raises(PlanError) as info:
        make_plan(cfg, dataclasses.replace(facts, host_available_bytes=need - 1))
    assert info.value.carried == carried
    assert info.value.fix == "output.array: ''"
    assert "lat" in str(info.value) and "\n" not in str(info.value)
    # its key is output.array, so a config file's refusal says where (here, at its section
    # output: the file writes no output.array), as the command line and pipeline.run give it
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config(tmp_path), sort_keys=False))
    locate(info.value, path)
    line = path.read_text().splitlines().index("output:") + 1
    assert str(info.value).startswith(f"{path}:{line}: the arrays carried beside"), info.value
    assert (info.value.key, info.value.line) == ("output.array", line)
    plan = make_plan(cfg, dataclasses.replace(facts, host_available_bytes=need))
    assert plan.carried.variable is not None and "lat" in plan.carried.variable.coords
    alone = make_plan(  # written alone, nothing is carried: nothing to refuse
        parse_config(config(tmp_path, output={"array": ""})),
        dataclasses.replace(facts, host_available_bytes=need - 1),
    )
    assert not alone.carried.frame


def _consolidated_listing(store: Path) -> tuple[set[str], set[str]]:
    """What the root's consolidated copy lists, and what the hierarchy holds (its own
    listing), each as paths below the root."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        copy = zarr.open_consolidated(str(store), mode="r").metadata.consolidated_metadata
        assert copy is not None
        held = zarr.open_group(str(store), mode="r", use_consolidated=False)
        return set(copy.flattened_metadata), {n for n, _ in held.members(max_depth=None)}


@pytest.mark.parametrize("layout", ["an array alone at the store root", "a Dataset variable"])
def test_a_run_into_an_earlier_outputs_group_keeps_its_consolidated_metadata_current(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], layout: str
) -> None:
    """brk59: a second config whose output.store is inside the first output's group
    (``out.zarr/sub``) left that group's consolidated metadata stale: ``xr.open_zarr`` of it
    (consolidated, by default) did not see what ``consolidated=False`` sees, and verify passed
    both. The run now writes the enclosing group's copy again; and verify fails a copy that
    is stale there, naming it, with a command that ends with a passing verify."""
    from pipeline.cli import main

    rng = np.random.default_rng(2)
    ds = xr.Dataset(
        {
            "v": (("t", "x"), rng.standard_normal((4, 6)).astype("f4")),
            "w": (("t", "x"), rng.standard_normal((4, 6)).astype("f4")),
        },
        coords={"t": np.arange(4.0), "x": np.arange(6.0)},
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(tmp_path / "in.zarr", zarr_format=3, consolidated=True)
    out = tmp_path / "out.zarr"

    def cfg(name: str, store: Path, var: str, array: str | None) -> Path:
        doc: dict[str, Any] = {
            "input": {"store": str(tmp_path / "in.zarr"), "array": var},
            "output": {"store": str(store), **({} if array is None else {"array": array})},
            "stages": STAGES,
            "backend": "cpu",
            "cluster": {"workers": 1, "threads_per_worker": 1, "dashboard": ""},
        }
        p = tmp_path / name
        p.write_text(yaml.safe_dump(doc))
        return p

    first = cfg("first.yaml", out, "v", None)
    second = cfg("second.yaml", out / "sub", "w", "" if layout.startswith("an array") else None)
    for c in (first, second):
        assert main(["-q", "run", str(c), "--progress", "none"]) == 0, capsys.readouterr().err
    listed, held = _consolidated_listing(out)
    assert "sub" in held and listed == held, (listed, held)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if layout.startswith("an array"):
            assert "sub" in xr.open_zarr(out).variables
        else:
            assert "w" in xr.open_zarr(out, group="sub").variables
    for c in (first, second):
        assert main(["-q", "verify", str(c), "--all"]) == 0, capsys.readouterr().err
    # the enclosing copy made stale (as the run had left it): verify of either fails
    doc = json.loads((out / "zarr.json").read_text())
    doc["consolidated_metadata"]["metadata"] = {
        k: v
        for k, v in doc["consolidated_metadata"]["metadata"].items()
        if k != "sub" and not k.startswith("sub/")
    }
    (out / "zarr.json").write_text(json.dumps(doc))
    capsys.readouterr()
    for c in (second, first):
        assert main(["-q", "verify", str(c)]) == 1
        err = capsys.readouterr().err
        assert "consolidated metadata" in err and "does not list 'sub" in err, err
        assert "`run --resume`" in err, err  # the copy written again, nothing recomputed
        assert f"`zarr.consolidate_metadata({str(out)!r})`" in err, err
    assert main(["-q", "run", str(second), "--progress", "none", "--overwrite"]) == 0
    listed, held = _consolidated_listing(out)
    assert listed == held, (listed, held)
    for c in (first, second):
        assert main(["-q", "verify", str(c), "--all"]) == 0, capsys.readouterr().err


def _said(command: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``python -m pipeline COMMAND`` in this process: (exit status, stdout and stderr)."""
    from pipeline.cli import main

    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc = main(command)
    said = capsys.readouterr()
    return rc, said.out + said.err


def _chunk_states(root: Path) -> dict[str, tuple[int, int]]:
    """(mtime in ns, inode) of every file under ``root`` but its metadata."""
    return {
        str(p.relative_to(root)): (p.stat().st_mtime_ns, p.stat().st_ino)
        for p in root.rglob("*")
        if p.is_file() and p.name not in ("zarr.json", ".zmetadata", ".zgroup", ".zattrs")
    }


@pytest.mark.parametrize("fmt", [3, 2])
def test_a_stale_copy_of_an_enclosing_group_is_written_again_not_the_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: int
) -> None:
    """helper-46c: `encl.zarr` consolidated (v3 `zarr.json`, v2 `.zmetadata`), a complete
    output at `encl.zarr/sub`, then an array added at `encl.zarr/other/new` without
    consolidating: `run` and `run --resume` refused the complete output and `verify` failed
    it, all naming `run --overwrite` (the whole output rewritten) for a copy that only does
    not list someone else's array. Nothing about `sub` is wrong: every command names the
    stale copy and `run --resume`, which writes it again and recomputes nothing, with the
    zarr-python call that does the same; then verify passes and the copy lists the group. A
    v2 copy never lists the v3 output (a v2 reader does not see it): it had failed verify
    right after the run."""
    from pipeline.cli import main

    src = tmp_path / "in.zarr"
    zarr.create_array(str(src), shape=(8, 8), chunks=(4, 4), dtype="f4")[...] = 1.0
    encl = tmp_path / "encl.zarr"
    zarr.open_group(str(encl), mode="w", zarr_format=fmt).create_group("keep")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(str(encl), zarr_format=fmt)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "input": {"store": str(src)},
                "output": {"store": str(encl / "sub")},
                "stages": STAGES,
                "backend": "cpu",
                "cluster": {"workers": 1, "threads_per_worker": 1, "dashboard": ""},
            }
        )
    )
    assert main(["-q", "run", str(cfg), "--progress", "none"]) == 0, capsys.readouterr().err
    rc, said = _said(["-q", "verify", str(cfg)], capsys)
    assert rc == 0, said
    zarr.create_array(str(encl), name="other/new", shape=(3,), dtype="i4", zarr_format=fmt)
    chunks = _chunk_states(encl / "sub")
    call = f"`zarr.consolidate_metadata({str(encl)!r})`"
    stale = f"the consolidated metadata of {encl} does not list 'other'"
    rc, said = _said(["-q", "verify", str(cfg)], capsys)
    assert rc == 1 and stale in said and "`run --resume` writes it again" in said, said
    assert call in said and "--overwrite" not in said, said
    for command in (["run", str(cfg)], ["run", str(cfg), "--dry-run"]):
        rc, said = _said(["-q", *command, "--progress", "none"], capsys)
        assert rc == 1 and stale in said and call in said, said
        assert "`run --resume` writes it again" in said and "--overwrite" not in said, said
    rc, said = _said(["-q", "plan", str(cfg)], capsys)
    row = [ln for ln in said.splitlines() if "output now" in ln]
    assert rc == 0 and stale in row[0] and "`run --resume` writes it again" in row[0], said
    rc, said = _said(["run", str(cfg), "--resume", "--dry-run"], capsys)
    assert rc == 0 and "writes its consolidated metadata again" in said, said
    rc, said = _said(["-q", "run", str(cfg), "--resume", "--progress", "none"], capsys)
    assert rc == 0, said
    assert _chunk_states(encl / "sub") == chunks  # nothing recomputed
    rc, said = _said(["-q", "verify", str(cfg), "--all"], capsys)
    assert rc == 0, said
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        listed = zarr.open_consolidated(str(encl), mode="r", zarr_format=fmt)
        assert "other/new" in dict(listed.members(max_depth=None)), listed


@pytest.mark.parametrize("how", ["group attribute edited", "copy dropped"])
def test_a_copy_removed_from_a_complete_output_is_written_again_by_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], how: str
) -> None:
    """helper-46c: the consolidated copy of a complete Dataset output removed (zarr-python's
    group attribute edit with ``use_consolidated=False`` rewrites a v3 ``zarr.json`` without
    it): `run --resume` said "nothing to do" while `verify` failed it, and verify named `run
    --overwrite`. `run --resume` writes it again, from the output's metadata (the user's
    group attribute kept, nothing recomputed), its dry run and `plan` say so, a plain run's
    refusal and verify name it with the zarr-python call; then verify passes, and
    ``xr.open_zarr`` reads the output without a warning."""
    from pipeline.cli import main

    src = tmp_path / "in.zarr"
    ds = xr.Dataset(
        {"v": (("y", "x"), np.arange(16, dtype="f4").reshape(4, 4))},
        coords={"x": np.arange(4.0)},
        attrs={"title": "t"},
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(str(src), zarr_format=3, consolidated=True)
    out = tmp_path / "out.zarr"
    cfg = write_config(
        tmp_path, "", out, input={"store": str(src), "array": "v"}, cluster={"workers": 1}
    )
    assert main(["-q", "run", str(cfg), "--progress", "none"]) == 0, capsys.readouterr().err
    if how == "group attribute edited":
        zarr.open_group(str(out), mode="r+", use_consolidated=False).attrs["note"] = "mine"
    else:
        doc = json.loads((out / "zarr.json").read_text())
        doc.pop("consolidated_metadata")
        (out / "zarr.json").write_text(json.dumps(doc))
    assert json.loads((out / "zarr.json").read_text()).get("consolidated_metadata") is None
    chunks = _chunk_states(out / "v")
    gone = f"the consolidated metadata of {out} is gone"
    call = f"`zarr.consolidate_metadata({str(out)!r})`"
    rc, said = _said(["-q", "verify", str(cfg)], capsys)
    assert rc == 1 and "is gone" in said and "`run --resume` writes it again" in said, said
    assert call in said and "--overwrite" not in said, said
    rc, said = _said(["-q", "run", str(cfg), "--progress", "none"], capsys)
    assert rc == 1 and gone in said and call in said and "`run --resume`" in said, said
    rc, said = _said(["-q", "plan", str(cfg)], capsys)
    assert rc == 0 and gone in said and "`run --resume` writes it again" in said, said
    rc, said = _said(["run", str(cfg), "--resume", "--dry-run"], capsys)
    assert rc == 0 and "writes its consolidated metadata again" in said, said
    rc, said = _said(["run", str(cfg), "--resume", "--progress", "none"], capsys)
    assert rc == 0 and "consolidated metadata written again" in said, said
    assert "nothing to do" not in said, said
    assert _chunk_states(out / "v") == chunks  # nothing recomputed
    rc, said = _said(["-q", "verify", str(cfg), "--all"], capsys)
    assert rc == 0, said
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "Failed to open Zarr store with consolidated"
        got = xr.open_zarr(str(out))
    assert got.attrs.get("note") == ("mine" if how.startswith("group") else None), got.attrs
    assert sorted(got.variables) == ["v", "x"], got


@pytest.mark.parametrize("writer", ["xarray", "zarr-python"])
def test_a_scalar_added_to_the_output_group_is_not_an_array_xarray_cannot_open(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], writer: str
) -> None:
    """A 0-d array beside the output (a grid mapping's ``crs``, as xarray appends it, or as
    zarr-python makes it) has no dimension names in Zarr v3, and xarray opens it with none:
    verify passes, and a run there goes on (review of 2026-12-01: both had refused it as an
    array without dimension names, whose fix, naming its dimensions, cannot be done)."""
    import zarr

    from pipeline.cli import main

    write_dataset(tmp_path / "in.zarr", 3)
    cfg = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr", input={"array": "t"})
    assert main(["-q", "run", str(cfg), "--progress", "none"]) == 0, capsys.readouterr().err
    out = tmp_path / "out.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if writer == "xarray":
            crs = xr.Dataset({"crs": ((), 0, {"grid_mapping_name": "latitude_longitude"})})
            crs.to_zarr(str(out), mode="a", consolidated=True)
        else:
            zarr.open_group(str(out), mode="r+").create_array("crs", shape=(), dtype="i4")
            zarr.consolidate_metadata(str(out))
        assert "crs" in xr.open_zarr(str(out)).variables  # xarray opens the group
    capsys.readouterr()
    assert main(["-q", "verify", str(cfg), "--all"]) == 0, capsys.readouterr().err
    assert main(["-q", "run", str(cfg), "--overwrite", "--progress", "none"]) == 0, (
        capsys.readouterr().err
    )
    assert main(["-q", "verify", str(cfg), "--all"]) == 0, capsys.readouterr().err


def test_a_complete_output_whose_own_groups_consolidated_copy_is_removed_stays_complete(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``output.array: results/t5`` (a group below the store's root, which has a consolidated
    copy of its own, as has the root): with the group's copy removed and the root's kept,
    verify had called the complete output incomplete, its run record gone, `run --overwrite`
    (review of 2026-12-01); it says the copy is gone, with its fix, and the output complete."""
    from pipeline.cli import main

    write_dataset(tmp_path / "in.zarr", 3)
    cfg = write_config(
        tmp_path,
        tmp_path / "in.zarr",
        tmp_path / "out.zarr",
        input={"array": "t"},
        output={"array": "results/t5"},
    )
    assert main(["-q", "run", str(cfg), "--progress", "none"]) == 0, capsys.readouterr().err
    meta = tmp_path / "out.zarr" / "results" / "zarr.json"
    doc = json.loads(meta.read_text())
    assert doc.pop("consolidated_metadata", None) is not None
    meta.write_text(json.dumps(doc))
    capsys.readouterr()
    rc = main(["verify", str(cfg)])
    out, err = capsys.readouterr()
    assert rc == 1 and "incomplete" not in err, err
    assert "consolidated metadata" in err and "is gone" in err, err
    assert re.search(r"output status\s+complete", out), out


def _listed_elsewhere(path: Path, where: str) -> None:
    """A Dataset whose variable ``a`` (x, y) names only ``lon`` in its ``coordinates``, while
    xarray reads ``name`` (x, with bounds ``name_bnds``) as a coordinate of ``a`` too: the
    group's ``coordinates`` lists it (``where="global"``), or only another variable's,
    ``b``'s (``where="other"``), as xarray writes them where ``encoding["coordinates"]``
    says so. ``zc`` (on ``z``, which ``a`` lacks) is listed as ``name`` is and is no
    coordinate of ``a``."""
    x = np.arange(3.0)
    ds = xr.Dataset(
        {
            "a": (("x", "y"), np.arange(12.0).reshape(3, 4), {"units": "K"}),
            "b": (("x", "z"), np.ones((3, 2)), {"units": "1"}),
        },
        coords={
            "x": ("x", x, {"units": "km"}),
            "name": ("x", x * 10 + 0.1, {"units": "m", "bounds": "name_bnds"}),
            "name_bnds": (("x", "nv"), np.stack([x * 10, x * 10 + 1], 1)),
            "lon": ("y", np.linspace(5.0, 6.0, 4), {"units": "degrees_east"}),
            "zc": ("z", np.array([1.5, 2.5]), {"units": "s"}),
        },
    )
    ds["a"].encoding["coordinates"] = "lon"
    ds["b"].encoding["coordinates"] = None if where == "global" else "name zc"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(str(path), zarr_format=3, mode="w", consolidated=True)


@pytest.mark.parametrize("where", ["global", "other"])
def test_a_coordinate_listed_by_the_group_or_another_variable_is_carried(
    tmp_path: Path, cli, where: str
) -> None:
    """brk: ``xr.open_zarr(in)["a"]`` has the coordinate ``name``, which only the group's
    ``coordinates`` or another variable's names (xarray collects coordinates from every
    variable and the group, and a DataArray keeps those on its dimensions); the output
    lacked it, and verify passed. It is carried, with its bounds, and the output variable's
    ``coordinates`` names it: ``xr.open_zarr(out)["a"]`` has the input's coordinates, as
    xarray decodes both (by default, and with ``decode_coords="all"``), values to the bit."""
    src = tmp_path / "in.zarr"
    _listed_elsewhere(src, where)
    stored = zarr.open_group(str(src), mode="r")
    assert "name" not in str(stored["a"].attrs.get("coordinates"))  # named elsewhere only
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump({**config(tmp_path, input={"array": "a"}), "stages": STAGES}))
    rc, out, err = cli("run", str(cfg))
    assert rc == 0, err
    for decode in (True, "all"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            a = xr.open_zarr(str(src), decode_coords=decode)["a"].load()
            b = xr.open_zarr(str(tmp_path / "out.zarr"), decode_coords=decode)["a"].load()
        assert set(a.coords) == {"x", "lon", "name"}, decode
        assert set(b.coords) == set(a.coords), decode
        for c in a.coords:
            assert b[c].dims == a[c].dims and b[c].attrs == a[c].attrs, (decode, c)
            assert same_bits(b[c].values, a[c].values), (decode, c)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = xr.open_zarr(str(tmp_path / "out.zarr"), decode_coords="all").load()
        want = xr.open_zarr(str(src), decode_coords="all").load()
    assert got["name_bnds"].identical(want["name_bnds"])  # carried in turn, as bounds are
    assert "zc" not in got.variables and "b" not in got.variables
    attrs = dict(zarr.open_array(str(tmp_path / "out.zarr"), path="a", mode="r").attrs)
    assert attrs["coordinates"] == "lon name"
    rc, out, err = cli("verify", str(cfg))
    assert rc == 0, out + err


def _members_in_order(store: Path, first: str) -> None:
    """Rewrite the consolidated metadata of the v3 group ``store`` so that it lists the
    member ``first`` before the others: zarr-python gives a consolidated group's members in
    the copy's order, and those of a group without one in no fixed order (the order in which
    their metadata reads complete, of a listing in the file system's own order)."""
    doc = json.loads((store / "zarr.json").read_text())
    members = doc["consolidated_metadata"]["metadata"]
    doc["consolidated_metadata"]["metadata"] = {
        first: members[first],
        **{k: v for k, v in members.items() if k != first},
    }
    (store / "zarr.json").write_text(json.dumps(doc))
    assert next(iter(zarr.open_group(str(store), mode="r").members()))[0] == first


@pytest.mark.parametrize("first", ["a", "b"], ids=lambda f: f"{f}-listed-first")
def test_coordinates_other_variables_list_are_named_in_one_order_whatever_the_listing(
    tmp_path: Path, cli, first: str
) -> None:
    """h78b: ``p`` and ``q``, on the variable ``v``'s dimension, are listed as coordinates
    by two other variables (``a``'s ``coordinates`` names ``p``, ``b``'s ``q``), so xarray
    reads both as coordinates of ``v``. The output's ``coordinates`` had named them in the
    order the group's members were listed (``q p`` where ``b`` came first), which
    zarr-python gives in no fixed order: the same input made outputs that differed. They
    are named in one order, whichever member is listed first."""
    src = tmp_path / "in.zarr"
    x = np.arange(4.0)
    ds = xr.Dataset(
        {
            "v": ("x", x, {"units": "K"}),
            "a": ("x", x + 1, {"units": "1"}),
            "b": ("x", x + 2, {"units": "1"}),
        },
        coords={"x": ("x", x), "p": ("x", x * 10), "q": ("x", x * 100)},
    )
    ds["v"].encoding["coordinates"] = None
    ds["a"].encoding["coordinates"] = "p"
    ds["b"].encoding["coordinates"] = "q"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(str(src), zarr_format=3, mode="w", consolidated=True)
    _members_in_order(src, first)
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump({**config(tmp_path, input={"array": "v"}), "stages": STAGES}))
    rc, out, err = cli("run", str(cfg))
    assert rc == 0, err
    attrs = dict(zarr.open_array(str(tmp_path / "out.zarr"), path="v", mode="r").attrs)
    assert attrs["coordinates"] == "p q"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert set(xr.open_zarr(str(tmp_path / "out.zarr"))["v"].coords) == {"x", "p", "q"}
    rc, out, err = cli("verify", str(cfg))
    assert rc == 0, out + err


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_a_scalar_coordinate_listed_by_another_variable_is_carried(
    tmp_path: Path, cli, zarr_format: int
) -> None:
    """rev42-C: a scalar coordinate ``height`` that only the data variable's ``coordinates``
    names is a coordinate of ``xr.open_zarr(in)["lat"]`` (a 2-D coordinate run as the input
    variable): xarray writes no ``dimension_names`` for a v3 scalar and reads it as having no
    dimensions, but the pipeline took it for an array without dimension names, left it out of
    the v3 output (the v2 one, whose ``_ARRAY_DIMENSIONS`` is ``[]``, had it), and verify
    passed. Both outputs have the input's coordinates, to the bit."""
    src = tmp_path / "in.zarr"
    rng = np.random.default_rng(3)
    ds = xr.Dataset(
        {"v": (("y", "x"), rng.standard_normal((4, 5)).astype("float32"))},
        coords={
            "y": ("y", np.arange(4.0), {"units": "m"}),
            "x": ("x", np.arange(5.0) * 2),
            "lat": (("y", "x"), rng.random((4, 5)), {"units": "degrees_north"}),
            "height": ((), 2.5, {"units": "m"}),
        },
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(str(src), zarr_format=zarr_format, mode="w")
    stored = zarr.open_group(str(src), mode="r")
    assert "coordinates" not in stored["lat"].attrs  # only v's names height
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump({**config(tmp_path, input={"array": "lat"}), "stages": STAGES}))
    rc, out, err = cli("run", str(cfg))
    assert rc == 0, err
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = xr.open_zarr(str(src))["lat"].load()
        b = xr.open_zarr(str(tmp_path / "out.zarr"))["lat"].load()
    assert set(a.coords) == {"x", "y", "lat", "height"}
    assert set(b.coords) == set(a.coords) - {"lat"}
    for c in b.coords:
        assert b[c].dims == a[c].dims and b[c].attrs == a[c].attrs, c
        assert same_bits(b[c].values, a[c].values), c
    chain = plan_chain(parse_config(config(tmp_path)).stage_specs(), a.dtype)
    assert same_bits(b.values, apply_chain(chain, a.values))
    rc, out, err = cli("verify", str(cfg))
    assert rc == 0, out + err


@pytest.mark.parametrize("where", ["global", "other"])
def test_overwrite_never_relabels_a_variable_through_a_listed_coordinate(
    tmp_path: Path, where: str
) -> None:
    """A user's ``mine`` (x) added to an output group whose ``name`` (x) the group's or
    another variable's ``coordinates`` lists: xarray reads ``name`` as a coordinate of
    ``mine`` too, though ``mine`` names nothing. An --overwrite from an input whose ``name``
    has other values replaced it (the output had written it): ``mine`` relabelled. Refused
    in one line naming ``mine``, nothing touched."""
    src = tmp_path / "in.zarr"
    _listed_elsewhere(src, where)
    out = tmp_path / "out.zarr"
    cfg = config(tmp_path, input={"array": "a"})
    assert pipeline.run(cfg).status == "complete"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        xr.Dataset({"mine": ("x", np.arange(3.0))}).to_zarr(str(out), mode="a")
        assert "name" in xr.open_zarr(str(out))["mine"].coords
        arr = zarr.open_array(str(src), path="name", mode="r+")
        arr[...] = arr[...] + 1
        zarr.consolidate_metadata(str(src))
    _refused_as_relabelling(cfg, out, "name", ["mine"])


#: a float64 NaN whose payload is not NumPy's own (``np.nan``'s bits plus one)
PAYLOAD_NAN = np.frombuffer(np.uint64(0x7FF8000000000001).tobytes(), "f8")[0]


def _zero_and_nan(path: Path) -> None:
    """:func:`write_dataset`'s v3 Dataset with its coordinate ``lon`` holding 0.0 and NaN
    (NumPy's) first, consolidated again."""
    write_dataset(path, 3)
    lon = zarr.open_array(str(path), path="lon", mode="r+")
    lon[:2] = [0.0, np.nan]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(str(path))


def _relabel(path: Path, how: str) -> None:
    """``lon`` of the store at ``path`` (from :func:`_zero_and_nan`) relabelled only to the
    bit: its 0.0 made -0.0, its NaN one of another payload, or its ``valid_min`` attribute
    0.0 made -0.0 (xarray's ``identical`` takes each for the same); consolidated again."""
    lon = zarr.open_array(str(path), path="lon", mode="r+")
    if how == "-0.0":
        lon[0] = -0.0
    elif how == "NaN payload":
        lon[1] = PAYLOAD_NAN
        assert lon[1:2].view("u8")[0] == 0x7FF8000000000001  # stored as given
    else:
        lon.attrs["valid_min"] = -0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(str(path))


@pytest.mark.parametrize("how", ["-0.0", "NaN payload", "-0.0 attribute"])
def test_a_coordinate_relabelled_only_to_the_bit_is_not_the_same(
    tmp_path: Path, cli, how: str
) -> None:
    """Coordinates are compared to the bit, as the output's values are: one whose values
    differ only by the sign of a zero or a NaN's payload, or whose attribute differs only by
    the sign of a zero, had passed as the same (xarray's ``identical``, ``np.array_equal``
    with ``equal_nan``). ``verify`` of an output whose ``lon`` was so edited passed; it fails
    naming ``lon``. An --overwrite from an input whose ``lon`` differs so replaced the
    output's, relabelling the group's other variable ``t``; it is refused, nothing touched."""
    src = tmp_path / "in.zarr"
    _zero_and_nan(src)
    src_lon = zarr.open_array(str(src), path="lon")
    src_lon.attrs["valid_min"] = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(str(src))
    cfg = tmp_path / "t.yaml"
    cfg.write_text(yaml.safe_dump(config(tmp_path)))
    rc, _, err = cli("run", cfg)
    assert rc == 0, err
    out = tmp_path / "out.zarr"
    kept = tmp_path / "kept.zarr"
    shutil.copytree(out, kept)
    _relabel(out, how)
    rc, out_text, err = cli("verify", "--all", cfg)
    assert rc == 1, out_text + err
    line = one_line_error(err)
    assert "coordinates lon are not the input's" in line, line
    # the line says what differs (pipeline.ops.bits.difference, as verify's data check)
    said = {
        "-0.0": "lon's values: 1 of 60 elements differs, the first at [0]: -0.0, not 0.0",
        "NaN payload": "lon's values: 1 of 60 elements differs, the first at [1]: nan (bits "
        "0x7ff8000000000001), not nan (bits 0x7ff8000000000000)",
        "-0.0 attribute": "lon's valid_min attribute",
    }[how]
    assert said in line, line
    shutil.rmtree(out)
    shutil.copytree(kept, out)
    rc, out_text, err = cli("verify", "--all", cfg)
    assert rc == 0, out_text + err
    other = tmp_path / "other.zarr"
    shutil.copytree(src, other)
    _relabel(other, how)
    before = file_states(out)
    moved = config(tmp_path, input={"store": str(other)}, output={"array": "t2"})
    with pytest.raises(OutputError) as info:
        pipeline.run(moved, overwrite=True)
    e = info.value
    assert (e.array, e.users) == ("lon", ["t"]) and "relabel" in str(e), e
    assert file_states(out) == before


def test_a_coordinate_listed_elsewhere_and_named_ancillary_is_carried(tmp_path: Path) -> None:
    """A coordinate ``q`` that another variable's ``coordinates`` lists, and that the run's
    variable ``t`` names in its ``ancillary_variables``: xarray's ``decode_coords`` (True or
    "all") makes ``q`` a coordinate of the Dataset all the same, and ``xr.open_zarr(in)["t"]``
    has it; the output's ``t`` lacked it. It is carried, and named by the output's
    ``coordinates``; ``ancillary_variables`` is still dropped."""
    src = tmp_path / "in.zarr"
    ds = xr.Dataset(
        {
            "t": (("y", "x"), np.arange(12.0).reshape(3, 4), {"ancillary_variables": "q"}),
            "u": (("y", "x"), np.ones((3, 4)), {"coordinates": "q"}),
            "q": (("y", "x"), np.arange(12, dtype="i1").reshape(3, 4), {"units": "1"}),
        },
        coords={"x": np.arange(4.0), "y": np.arange(3.0)},
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(str(src), zarr_format=3, consolidated=True)
    for decode in (True, "all"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert "q" in xr.open_zarr(str(src), decode_coords=decode)["t"].coords
    assert pipeline.run(config(tmp_path)).status == "complete"
    want, got = open_dataset(src)["t"], open_dataset(tmp_path / "out.zarr")["t"]
    assert set(got.coords) == set(want.coords) == {"x", "y", "q"}
    assert got["q"].identical(want["q"]) and same_bits(got["q"].values, want["q"].values)
    stored = dict(zarr.open_array(str(tmp_path / "out.zarr"), path="t").attrs)
    assert "ancillary_variables" not in stored and stored["coordinates"] == "q"


def test_two_runs_writing_variables_into_one_group_at_once_lose_nothing(tmp_path: Path) -> None:
    """Two runs at once (two processes), each writing its own variable (``t``, ``t2``) with
    --overwrite into one output group that holds an earlier run's ``t0`` and 200 variables
    more (so that consolidating the group takes a while). Each replaces the coordinates they
    share and rewrites the group's metadata, a read then a write: one had refused, the other
    run's half-made variable taken for "a directory that holds other files, not a Zarr array
    or group", its coordinates deleted under it taken for a relabelling, or failed on xarray's
    ``ContainsArrayError`` (the other's coordinate written meanwhile). Under the group's lock
    both finish, complete in their own metadata and in the consolidated copy, each time."""
    write_dataset(tmp_path / "in.zarr", 3)
    seed, out = tmp_path / "seed.zarr", tmp_path / "out.zarr"
    configs = {}
    for name in ("t0", "t", "t2"):
        configs[name] = tmp_path / f"{name}.yaml"
        configs[name].write_text(yaml.safe_dump(config(tmp_path, output={"array": name})))
    assert pipeline.run(config(tmp_path, output={"array": "t0"})).status == "complete"
    many = xr.Dataset({f"v{i}": ("x", np.zeros(COLS)) for i in range(200)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        many.to_zarr(str(out), mode="a", consolidated=True)
    out.rename(seed)
    for _ in range(2):
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(seed, out)
        procs = [cli_process(configs[name], "--overwrite") for name in ("t", "t2")]
        results = [(p.wait(timeout=300), p.communicate()[1]) for p in procs]
        assert [rc for rc, _ in results] == [0, 0], [err for _, err in results]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            copy = zarr.open_consolidated(str(out), mode="r").metadata.consolidated_metadata
        assert copy is not None
        for name in ("t0", "t", "t2"):
            own = record_of(zarr.open_array(str(out), path=name).attrs)["status"]
            listed = record_of(copy.metadata[name].attributes)["status"]
            assert (own, listed) == ("complete", "complete"), name
        got = open_dataset(out)
        assert same_bits(got["t"].values, got["t2"].values)
        assert same_bits(got["t"].values, got["t0"].values)


def test_another_run_s_write_probe_in_the_output_group_is_no_stranger(tmp_path: Path, cli) -> None:
    """Another run probing the output group at that moment (its write probe's object in the
    group, of this release's name or an older one's, left where its run stopped) is neither
    a member of the group nor a stranger in it: a run writing a new variable into the group
    (--overwrite) finishes, ``verify`` passes, and the other's objects are left as they
    were."""
    write_dataset(tmp_path / "in.zarr", 3)
    out = tmp_path / "out.zarr"
    assert pipeline.run(config(tmp_path, output={"array": "t0"})).status == "complete"
    probes = [out / WRITE_PROBE, out / f"{WRITE_PROBE}-{'ab' * 16}"]
    for p in probes:
        p.write_bytes(b"in flight")
    cfg = tmp_path / "t.yaml"
    cfg.write_text(yaml.safe_dump(config(tmp_path, output={"array": "t"})))
    rc, said, err = cli("run", "--overwrite", cfg)
    assert rc == 0, said + err
    rc, said, err = cli("verify", cfg)
    assert rc == 0, said + err
    got = open_dataset(out)
    assert same_bits(got["t"].values, got["t0"].values)
    assert all(p.read_bytes() == b"in flight" for p in probes)


def _s3_seeded_group(
    tmp_path: Path, url: str, options: dict[str, Any], variables: int
) -> tuple[Path, dict[str, Path]]:
    """A local output group holding an earlier run's ``t0`` and ``variables`` float arrays
    more (``tmp/seed.zarr``), put onto S3 under a fresh name by :func:`_put_seed`; the
    configs (by variable name) of runs of ``t`` of ``tmp/in.zarr``, put onto S3 as
    ``url/in.zarr``, into ``url/out.zarr``."""
    import s3fs

    write_dataset(tmp_path / "in.zarr", 3)
    fs = s3fs.S3FileSystem(skip_instance_cache=True, **options)
    fs.put(str(tmp_path / "in.zarr"), f"{url}/in.zarr", recursive=True)
    seed = tmp_path / "seed.zarr"
    assert pipeline.run(config(tmp_path, output={"store": str(seed), "array": "t0"})).status == (
        "complete"
    )
    many = xr.Dataset({f"v{i}": ("x", np.zeros(COLS)) for i in range(variables)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        many.to_zarr(str(seed), mode="a", consolidated=True)
    configs = {}
    for name in ("t", "t2"):
        configs[name] = tmp_path / f"{name}.yaml"
        cfg = config(
            tmp_path,
            input={"store": f"{url}/in.zarr", "storage_options": options},
            output={"store": f"{url}/out.zarr", "storage_options": options, "array": name},
            cluster=_THREADS,
        )
        configs[name].write_text(yaml.safe_dump(cfg))
    return seed, configs


@pytest.mark.timeout(900)  # two real runs on S3 at once, on a loaded 2-core machine
def test_two_runs_writing_variables_into_one_s3_group_at_once_lose_nothing(
    tmp_path: Path, cli, bucket: tuple[str, dict[str, Any]]
) -> None:
    """As the test above, on an S3 server: two runs at once (two processes), each writing
    its own variable (``t``, ``t2``) with --overwrite into one output group on S3 that holds
    an earlier run's ``t0`` and 50 variables more. The group's lock had held nothing on an
    object store: one run had failed on xarray's ``ContainsArrayError`` (the other's
    coordinate ``x`` written meanwhile), or had found the group's consolidated copy describing
    its variables not as they are. Its lock object (created with a conditional PUT) holds
    there: both finish, complete in their own metadata and in the consolidated copy, the
    coordinates intact, ``verify`` passes for both, and no lock object is left."""
    import s3fs
    from zarr.storage import FsspecStore

    url, options = bucket
    fs = s3fs.S3FileSystem(skip_instance_cache=True, **options)
    seed, configs = _s3_seeded_group(tmp_path, url, options, 50)
    want = open_dataset(seed)
    # one round: each took up to 220 s on a loaded 2-core machine (fc97, 2026-12-06)
    if fs.exists(f"{url}/out.zarr"):
        fs.rm(f"{url}/out.zarr", recursive=True)
    fs.put(str(seed), f"{url}/out.zarr", recursive=True)
    procs = [cli_process(configs[name], "--overwrite") for name in ("t", "t2")]
    results = [(p.communicate(timeout=600)[1], p.returncode) for p in procs]
    assert [rc for _, rc in results] == [0, 0], [err for err, _ in results]
    assert all("Traceback" not in err and "Warning" not in err for err, _ in results), [
        err for err, _ in results
    ]
    store = FsspecStore.from_url(f"{url}/out.zarr", storage_options=options, read_only=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        copy = zarr.open_consolidated(store, mode="r").metadata.consolidated_metadata
        got = xr.open_zarr(f"{url}/out.zarr", storage_options=options, consolidated=True)
        got = got.load()
    assert copy is not None
    for name in ("t0", "t", "t2"):
        own = record_of(zarr.open_array(store, path=name, mode="r").attrs)["status"]
        listed = record_of(copy.metadata[name].attributes)["status"]
        assert (own, listed) == ("complete", "complete"), name
    assert same_bits(got["t"].values, got["t2"].values)
    assert same_bits(got["t"].values, got["t0"].values)
    for name in want.coords:
        assert got[name].identical(want[name]), name
        assert same_bits(got[name].values, want[name].values), name
    for name in ("t", "t2"):
        rc, out, err = cli("verify", configs[name])
        assert rc == 0, out + err
    assert not fs.exists(f"{url}/out.zarr/.pipeline")


def test_an_empty_folder_in_the_output_group_is_no_strangers(tmp_path: Path) -> None:
    """An empty folder in the output group (another run's new variable the moment its lock
    made the folder and not yet its record inside: the race the test above met once on a
    busy machine) holds nothing to keep: a run writing a new variable beside it
    (--overwrite, as into any group holding other outputs) is not refused as "a directory
    that holds other files", the group opens with both variables, equal to what one run
    alone wrote, and the folder is left as it was."""
    write_dataset(tmp_path / "in.zarr", 3)
    out = tmp_path / "out.zarr"
    assert pipeline.run(config(tmp_path, output={"array": "t0"})).status == "complete"
    (out / "t2").mkdir()
    summary = pipeline.run(config(tmp_path, output={"array": "t"}), overwrite=True)
    assert summary.status == "complete"
    got = open_dataset(out)
    assert same_bits(got["t"].values, got["t0"].values)
    assert (out / "t2").is_dir() and not any((out / "t2").iterdir())


def _output_now(out: str) -> str:
    """The "output now" row of ``plan``'s or ``run --dry-run``'s table, its words alone."""
    (row,) = [ln for ln in out.splitlines() if "output now" in ln]
    return row.split("output now", 1)[1].strip()


_THREADS = {"workers": 1, "threads_per_worker": 1, "dashboard": "", "protocol": "inproc"}


@pytest.mark.parametrize("group", [False, True])
def test_a_group_holding_only_empty_folders_is_written_as_a_new_one(
    tmp_path: Path, cli, group: bool
) -> None:
    """An output store that holds only empty folders (``e``, and ``x``, where the coordinate
    ``x`` is written), as a plain directory or in a Zarr group of no arrays: an empty folder
    holds nothing a write beside it changes (``xr.open_zarr`` reads the group as if it were
    not there), yet each had been called "a group this pipeline did not write", so that
    ``plan``, ``run`` and ``run --dry-run`` named --overwrite and ``verify`` refused with the
    same line. Now the output is absent to each, a plain run writes it, to the bit what a
    run into an empty store writes, and ``verify`` passes; the folders are left as they
    were."""
    write_dataset(tmp_path / "in.zarr", 3)
    out = tmp_path / "out.zarr"
    if group:
        zarr.open_group(str(out), mode="w", zarr_format=3)
    for name in ("e", "x"):
        (out / name).mkdir(parents=True)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(config(tmp_path, cluster=_THREADS)))
    rc, text, err = cli("plan", cfg)
    assert rc == 0, err
    assert _output_now(text) == "absent: `run` creates it", text
    rc, text, err = cli("run", cfg, "--dry-run")
    assert rc == 0, err
    assert _output_now(text) == "absent: this run creates it", text
    rc, _, err = cli("verify", cfg)
    assert (
        rc == 1
        and one_line_error(err) == f"error: no output at {out / 't'}: run the pipeline first"
    )
    rc, _, err = cli("run", cfg, "--progress", "none")
    assert rc == 0, err
    rc, _, err = cli("verify", cfg)
    assert rc == 0, err
    assert (out / "e").is_dir() and not any((out / "e").iterdir())
    got = assert_variable_as_xarray_opened_it(out, tmp_path / "in.zarr")
    fresh = dict(config(tmp_path, cluster=_THREADS), output={"store": str(tmp_path / "o2.zarr")})
    assert pipeline.run(fresh).status == "complete"
    want = open_dataset(tmp_path / "o2.zarr")
    assert sorted(got.variables) == sorted(want.variables)
    for name in want.variables:
        assert same_bits(got[name].values, want[name].values), name


def test_an_empty_folder_beside_other_members_is_called_an_empty_folder(
    tmp_path: Path, cli
) -> None:
    """An empty folder ``e`` in an output group that holds another array (``a``, another
    tool's), or in a Zarr group at the output's own path: each line that lists the group's
    members had called it "a group this pipeline did not write"; it is called "an empty
    folder" by ``plan``, ``run``, ``run --resume``, ``run --dry-run`` and ``verify``, each
    with the fix it gave before, nothing written."""
    write_dataset(tmp_path / "in.zarr", 3)
    out = tmp_path / "out.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        xr.Dataset({"a": ("z", np.arange(3.0))}).to_zarr(str(out), zarr_format=3)
    (out / "e").mkdir()
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(config(tmp_path, cluster=_THREADS)))
    holds = "'a' (an array this pipeline did not write), 'e' (an empty folder)"
    before = file_states(out)
    rc, text, err = cli("plan", cfg)
    assert rc == 0, err
    assert (
        _output_now(text)
        == f"absent, in a group that holds {holds}: `run --overwrite` writes it there"
    )
    refusal = (
        f"error: the group of {out / 't'} already holds {holds}: pass --overwrite "
        "(overwrite=True in pipeline.run) to write the variable into it beside them"
    )
    for args in (("run",), ("run", "--dry-run"), ("verify",)):
        rc, _, err = cli(*args, cfg)
        assert rc == 1, (args, err)
        line = one_line_error(err)
        assert refusal.replace("error: ", "") in line, (args, line)
    rc, _, err = cli("run", cfg, "--resume")
    assert rc == 1
    assert one_line_error(err) == (
        f"error: {out / 't'} is absent, and its group holds {holds}; nothing to resume: "
        "`run --overwrite` writes it into the group"
    )
    (out / "g" / "e").mkdir(parents=True)
    zarr.open_group(str(out), path="g", mode="a", zarr_format=3)
    at_group = dict(config(tmp_path, cluster=_THREADS), output={"store": str(out), "array": "g"})
    cfg.write_text(yaml.safe_dump(at_group))
    rc, _, err = cli("run", cfg)
    assert rc == 1
    assert one_line_error(err).startswith(
        f"error: {out / 'g'} is a Zarr group that holds 'e' (an empty folder), not an array;"
    ), err
    assert {k: v for k, v in file_states(out).items() if not k.startswith("g")} == before


@pytest.mark.parametrize("array", [None, "results/t5"])
def test_the_summarys_output_is_what_xarray_opens(tmp_path: Path, cli, array: str | None) -> None:
    """``summary.output`` of a Dataset output was the variable's array (``out.zarr/t``), on
    which ``xr.open_zarr`` fails (an array, not a group). It names the group xarray opens
    (the store, or ``output.array``'s group), and ``summary.output_array`` the variable's
    array, which zarr opens; the command line's summary says both, its JSON too. An array
    written alone keeps one path for both."""
    write_dataset(tmp_path / "in.zarr", 3)
    output = {} if array is None else {"array": array}
    cfg = config(tmp_path, output=output, cluster={"dashboard": ""})
    summary = pipeline.run(cfg)
    group = tmp_path / "out.zarr" / ("results" if array else "")
    var = array or "t"
    assert summary.output == str(group).rstrip("/"), summary.output
    assert summary.output_array == str(tmp_path / "out.zarr" / var), summary.output_array
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opened = xr.open_zarr(summary.output)
    assert opened[var.rpartition("/")[2]].dims == ("y", "x") and "lon" in opened.coords
    assert zarr.open_array(summary.output_array, mode="r").shape == (ROWS, COLS)
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    rc, out, err = cli("run", str(path), "--overwrite", "--summary-json", tmp_path / "s.json")
    assert rc == 0, err
    rows = dict(re.findall(r"^\s*(output(?: array)?)\s{2,}(\S.*?)\s*$", out, re.M))
    assert rows == {"output": summary.output, "output array": summary.output_array}, out
    saved = json.loads((tmp_path / "s.json").read_text())
    assert (saved["output"], saved["output_array"]) == (summary.output, summary.output_array)
    alone = {"store": str(tmp_path / "alone.zarr"), "array": ""}
    alone_summary = pipeline.run(config(tmp_path, output=alone, cluster={"dashboard": ""}))
    assert alone_summary.output == alone_summary.output_array == alone["store"]


def test_times_are_carried_as_the_input_stores_them(tmp_path: Path) -> None:
    """The coordinates were decoded by xarray and encoded again: a time's ``units`` ``hours
    since 2024-01-01 00:00:00`` came out as ``hours since 2024-01-01``, a time given without
    a ``calendar`` got one, and a time's bounds got the time's units (the values the same).
    Each carried coordinate is the input's, its metadata and chunk bytes identical, and
    xarray decodes the output's times as the input's."""
    rng = np.random.default_rng(3)
    time = np.datetime64("2024-01-01T00:00") + np.arange(8) * np.timedelta64(1, "h")
    ds = xr.Dataset(
        {"t": (("time", "x"), rng.standard_normal((8, 5)), {"units": "K"})},
        coords={
            "time": ("time", time, {"bounds": "time_bnds", "axis": "T"}),
            "time_bnds": (("time", "nv"), np.stack([time, time + np.timedelta64(1, "h")], 1)),
            "x": ("x", np.arange(5.0), {"units": "km"}),
            "lead": ("time", np.arange(8) * np.timedelta64(30, "m")),
            "noon": ("time", np.arange(8) * 0.5, {"units": "days since 2000-01-01 12:00:00"}),
        },
    )
    ds["t"].encoding = {"chunks": (4, 5)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(str(tmp_path / "in.zarr"), zarr_format=3, mode="w", consolidated=True)
    names = ["time", "time_bnds", "x", "lead", "noon"]
    units = json.loads((tmp_path / "in.zarr/time/zarr.json").read_text())["attributes"]["units"]
    assert units == "hours since 2024-01-01 00:00:00"  # what xarray writes, and then rewrote
    pipeline.run(config(tmp_path, cluster={"dashboard": ""}))
    for name in names:
        a = json.loads((tmp_path / "in.zarr" / name / "zarr.json").read_text())
        b = json.loads((tmp_path / "out.zarr" / name / "zarr.json").read_text())
        assert a == b, (name, a, b)
        src = tmp_path / "in.zarr" / name / "c"
        chunks = sorted(p.relative_to(src) for p in src.rglob("*") if p.is_file())
        assert chunks, name
        for c in chunks:
            dst = tmp_path / "out.zarr" / name / "c" / c
            assert (src / c).read_bytes() == dst.read_bytes(), (name, c)
    a_ds, b_ds = open_dataset(tmp_path / "in.zarr"), open_dataset(tmp_path / "out.zarr")
    for name in names:
        assert a_ds[name].identical(b_ds[name]), name
    assert b_ds["time"].encoding["units"] == units


def test_a_dimension_coordinate_is_computed_beside_itself_under_another_name(
    tmp_path: Path,
) -> None:
    """The pipeline run on a dimension coordinate (``input.array: lat``) wrote the computed
    values as the output's ``lat``: the index xarray reads the Dataset on was replaced by
    them, and kept its ``bounds``, the input's ``lat_bnds``, carried beside it, whose cells
    bound the input's values, not the computed ones. Under another name (``lat5``) the input's
    ``lat`` was not carried at all (skipped as the variable itself), so ``lat5`` lay on a
    dimension without its coordinate, though still naming those bounds. The input's ``lat``
    is now carried as any dimension coordinate is (with its bounds), so an output of its own
    name is refused in one line naming the fix, before anything is written; the computed
    variable keeps no ``bounds`` of the input's values. A time coordinate is refused, as any
    variable of times is."""
    lat = np.linspace(-85.0, 85.0, 18)
    ds = xr.Dataset(
        {"air": (("lat",), np.arange(18.0), {"units": "K", "coordinates": "z"})},
        coords={
            "lat": ("lat", lat, {"units": "degrees_north", "bounds": "lat_bnds"}),
            "lat_bnds": (("lat", "nv"), np.stack([lat - 5, lat + 5], 1)),
            "z": ("lat", np.arange(18) * 2.0, {"long_name": "auxiliary"}),
            "time": ("time", np.array(["2024-01-01", "2024-01-02"], dtype="datetime64[ns]")),
        },
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(str(tmp_path / "in.zarr"), zarr_format=3, mode="w", consolidated=True)
    same_name = config(tmp_path, input={"array": "lat"}, cluster={"dashboard": ""})
    with pytest.raises(ConfigError) as refused:
        pipeline.run(same_name)
    assert refused.value.key == "output.array" and "'lat_out'" in str(refused.value)
    assert len(str(refused.value).splitlines()) == 1
    assert not (tmp_path / "out.zarr").exists()
    cfg = config(
        tmp_path, input={"array": "lat"}, output={"array": "lat5"}, cluster={"dashboard": ""}
    )
    summary = pipeline.run(cfg)
    out = open_dataset(Path(summary.output))
    expected = apply_chain(plan_chain(parse_config(cfg).stage_specs(), lat.dtype), lat)
    assert same_bits(out["lat5"].values, expected)
    assert out["lat5"].dims == ("lat",) and out["lat5"].attrs["units"] == "degrees_north"
    assert "bounds" not in out["lat5"].attrs, out["lat5"].attrs
    assert "z" in out["lat5"].coords and "time" not in out.coords
    assert same_bits(out.indexes["lat"].values, lat)  # the input's, with its bounds
    assert out["lat"].attrs["bounds"] == "lat_bnds"
    assert same_bits(out["lat_bnds"].values, ds["lat_bnds"].values)
    assert pipeline.run(cfg, overwrite=True).status == "complete"
    alone = {"store": str(tmp_path / "alone.zarr"), "array": ""}
    pipeline.run(config(tmp_path, input={"array": "lat"}, output=alone, cluster={"dashboard": ""}))
    written = zarr.open_array(alone["store"], mode="r")
    assert same_bits(written[...], expected) and "bounds" not in written.attrs
    times = {"store": str(tmp_path / "t.zarr")}
    with pytest.raises(InputError) as info:
        pipeline.run(config(tmp_path, input={"array": "time"}, output=times))
    assert "holds times" in str(info.value)


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_a_text_dimension_coordinate_is_refused_for_its_dtype_before_any_rename(
    tmp_path: Path, cli, zarr_format: int
) -> None:
    """h85f: a dimension coordinate of fixed-width bytes (``|S5``, as xarray writes station
    names) chosen as ``input.array`` was first told that the computed values need another
    name, "as output.array 'station_out'"; under that name the plan then refused its dtype,
    which no name mends. The dtype is refused first, in one line, under either name, and
    nothing is written."""
    names = np.array([b"alpha", b"bb", b"c", b"d", b"e"], dtype="S5")
    ds = xr.Dataset(
        {"air": (("station", "t"), np.ones((5, 4), "float32"))}, coords={"station": names}
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(str(tmp_path / "in.zarr"), zarr_format=zarr_format, mode="w")
    where = tmp_path / "in.zarr" / "station"
    for output in ({}, {"array": "station_out"}):
        cfg = write_config(
            tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr", input={"array": "station"}
        )
        if output:
            doc = yaml.safe_load(cfg.read_text())
            doc["output"].update(output)
            cfg.write_text(yaml.safe_dump(doc))
        for command in ("plan", "run"):
            rc, _, err = cli(command, cfg)
            line = one_line_error(err)
            assert rc == 1, err
            assert f"unsupported dtype |S5 of the input {where}: " in line, line
            assert "another name" not in line and "convert the input first" in line, line
    assert not (tmp_path / "out.zarr").exists()


def test_an_s3_group_s_lock_object_changes_no_listing_of_the_group(
    tmp_path: Path, cli, bucket: tuple[str, dict[str, Any]]
) -> None:
    """While a run holds the lock of an output group on S3 (its lock object in the group's
    ``.pipeline`` folder), the group reads as it does without it: ``verify`` of its variable
    passes, ``xr.open_zarr`` finds the same variables and coordinates (from the consolidated
    copy, and from the listing of its members, where zarr-python skips the folder with a
    warning), and a run writing another variable into it (--overwrite, as into any group
    holding other outputs) waits for the lock and finishes."""
    import threading

    from pipeline.store.ledger import group_lock
    from pipeline.store.location import Location

    url, options = bucket
    write_dataset(tmp_path / "in.zarr", 3)
    cfg = config(
        tmp_path,
        output={"store": f"{url}/out.zarr", "storage_options": options},
        cluster=_THREADS,
    )
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert pipeline.run(cfg).status == "complete"

    def opened(consolidated: bool) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = xr.open_zarr(f"{url}/out.zarr", storage_options=options, consolidated=consolidated)
            return ds.load()

    before = {c: opened(c) for c in (True, False)}
    loc = Location.of(f"{url}/out.zarr", options)
    second = dict(cfg, output={**cfg["output"], "array": "t2"})
    done: list[str] = []
    with group_lock(loc, ""):
        assert loc.list(".pipeline") == ["group.lock"]
        rc, out, err = cli("verify", path)
        assert rc == 0, out + err
        for c in (True, False):
            assert opened(c).identical(before[c]), c
        other = threading.Thread(
            target=lambda: done.append(pipeline.run(second, overwrite=True).status)
        )
        other.start()
        other.join(2)
        assert done == []
    other.join(240)
    assert done == ["complete"]
    assert ".pipeline" not in loc.list("")
    got = opened(True)
    assert same_bits(got["t2"].values, got["t"].values)
    rc, out, err = cli("verify", path)
    assert rc == 0, out + err


def test_a_users_file_in_a_found_coordinates_folder_is_kept(tmp_path: Path) -> None:
    """A file of the user's inside the folder of a coordinate the run finds in the output group
    (equal to the input's, left in place): --overwrite neither refuses for it (it had: the
    coordinate's folder 'holds beside its metadata and chunks notes.txt') nor deletes it, nor
    does a second --overwrite."""
    write_dataset(tmp_path / "in.zarr", 3)
    out = tmp_path / "out.zarr"
    write_dataset(out, 3)
    note = out / "lon" / "notes.txt"
    note.write_text("the user's")
    cfg = tmp_path / "t2.yaml"
    cfg.write_text(yaml.safe_dump(config(tmp_path, output={"array": "t2"})))
    for _ in range(2):  # writing t2 beside the user's variables, then again over its own
        assert pipeline.run(cfg, overwrite=True).status == "complete"
        assert note.read_text() == "the user's"
    assert "lon" in open_dataset(out)["t2"].coords


@pytest.mark.parametrize(
    ("dims", "rows", "layout"),
    [
        (None, ROWS, "member"),  # no dimension names
        (None, ROWS, "store"),  # output.store: out.zarr/a, output.array: '' (its folder's group)
        (["y", "x"], ROWS + 1, "member"),  # 'y' of another size than the Dataset's
    ],
)
def test_an_array_alone_that_would_close_a_dataset_group_to_xarray_is_refused(
    tmp_path: Path, dims: list[str] | None, rows: int, layout: str
) -> None:
    """An input array that is no Dataset variable, written alone into a group that holds a
    Dataset output: it had been written, exit 0, without dimension names (or with a dimension
    of another size), and ``xr.open_zarr`` of the group then failed (KeyError), for the
    Dataset output too, which ``verify`` and ``run --resume`` then refused. Refused before
    anything is written, with --overwrite too, in one line naming the group and the fix; an
    array whose dimensions fit is written beside the Dataset, which still opens."""
    write_dataset(tmp_path / "in.zarr", 3)
    out = tmp_path / "out.zarr"
    pipeline.run(config(tmp_path))  # the Dataset output t, with its coordinates
    x = np.arange(rows * COLS, dtype=np.float32).reshape(rows, COLS)
    make_array(tmp_path / "a.zarr", x, (10, COLS), dimension_names=dims)
    store, array = (str(out), "a") if layout == "member" else (str(out / "a"), "")
    alone = {**config(tmp_path), "input": {"store": str(tmp_path / "a.zarr")}}
    alone["output"] = {"store": store, "array": array}
    before = file_states(out)
    for overwrite in (False, True):
        with pytest.raises(OutputError) as info:
            pipeline.run(alone, overwrite=overwrite)
        line = str(info.value)
        assert "\n" not in line and f"the group {out}" in line, line
        # a group of its own (output.array: 'g/a'), which it had named, is in the same tree
        assert line.endswith(f"choose an output.store outside {out}"), line
        assert ("no dimension names" if dims is None else "'y' has 41 elements") in line, line
        # names of its own are the other fix of an array without (h88b)
        assert ("name its dimensions with output.dimension_names" in line) is (dims is None)
        assert file_states(out) == before
    assert list(open_dataset(out).data_vars) == ["t"]
    make_array(tmp_path / "a.zarr", x[:ROWS], (10, COLS), dimension_names=["y", "x"])
    pipeline.run(alone)  # dimensions that fit the Dataset's
    assert sorted(open_dataset(out).data_vars) == ["a", "t"]


@pytest.mark.parametrize("dims", [None, ["y", "x"]])
def test_an_array_alone_begun_in_a_dataset_group_is_not_resumed_there(
    tmp_path: Path, cli, dims: list[str] | None
) -> None:
    """An array alone (no dimension names, or a 'y' of another size) that a run before the
    fresh start's refusal (ddc6267) began in the group of a Dataset output, and was stopped
    there: ``run --resume`` finished it, exit 0, and ``xr.open_zarr`` of the group then
    failed for every variable. Refused before any block, in one line that names the group
    and says to remove the unfinished array; nothing in the group changes. The stopped run
    is a real one (a Ctrl-C after its first block), made in a group of its own and copied
    into the Dataset's group, as a run made before the check would have left it there."""
    write_dataset(tmp_path / "in.zarr", 3)
    out = tmp_path / "out.zarr"
    threads = {"dashboard": ""}  # no cluster to start: the runs go on threads of the process
    pipeline.run(config(tmp_path, cluster=threads))  # the Dataset output t, with coordinates
    rows = ROWS if dims is None else ROWS + 10
    x = np.arange(rows * COLS, dtype=np.float32).reshape(rows, COLS)
    make_array(tmp_path / "a.zarr", x, (10, COLS), dimension_names=dims)
    alone = {
        **config(tmp_path, cluster=threads),
        "input": {"store": str(tmp_path / "a.zarr")},
        "chunking": {"block": [10, COLS]},
    }
    made = tmp_path / "made.zarr"
    begun = tmp_path / "made.yaml"
    begun.write_text(yaml.safe_dump({**alone, "output": {"store": str(made), "array": "a"}}))
    (tmp_path / "stop.py").write_text(ctrl_c_script("pipeline.store.ledger", "Ledger.mark", False))
    proc = run_python([tmp_path / "stop.py", begun], tmp_path)
    assert json.loads(proc.stdout.strip().splitlines()[-1])["state"] == "incomplete", proc.stderr
    shutil.copytree(made / "a", out / "a")
    cfg = tmp_path / "alone.yaml"
    cfg.write_text(yaml.safe_dump({**alone, "output": {"store": str(out), "array": "a"}}))
    before = file_states(out)
    rc, _, err = cli("run", cfg, "--resume", "--progress", "none")
    assert rc == 1, err  # it had been finished there, exit 0
    line = one_line_error(err)
    assert line.startswith(f"error: cannot resume {out / 'a'}:"), line
    assert f"in the group {out}, an xarray Dataset of" in line, line
    why = "no dimension names" if dims is None else f"'y' has {rows} elements"
    assert why in line and f"remove {out / 'a'}" in line, line
    names = "run it again with output.dimension_names (one name per dimension, such as "
    assert (names in line) is (dims is None), line  # the names, a fix of its own (h88b)
    with pytest.raises(OutputError) as info:
        pipeline.run(cfg, resume=True)
    assert (info.value.output, info.value.group) == (str(out / "a"), str(out))
    # verify's advice is that line (h56b: it gave `run --overwrite`'s refusal, which says to
    # choose another store, and not to remove what keeps the group closed)
    rc, _, err = cli("verify", cfg)
    assert rc == 1, err
    told = one_line_error(err)
    assert told.startswith("error: the output is incomplete: it was not finished; "), told
    assert told.endswith(line[len("error: ") :]), told
    assert file_states(out) == before
    shutil.rmtree(out / "a")  # as the line says: the Dataset opens again, untouched
    assert list(open_dataset(out).data_vars) == ["t"]


def test_a_pipeline_output_that_closes_a_group_to_xarray_is_named_as_one(
    tmp_path: Path, cli
) -> None:
    """An array alone that a run wrote into an empty group, then a Dataset variable into the
    same group, and a Dataset output whose group holds another output of other sizes: the
    refusals, and verify's line, had said the array was "not written by this pipeline"; they
    name it as an output of this pipeline."""
    write_dataset(tmp_path / "in.zarr", 3)
    out = tmp_path / "out.zarr"
    make_array(tmp_path / "a.zarr", np.ones((4, 5), np.float32), (4, 5))
    alone = {**config(tmp_path), "input": {"store": str(tmp_path / "a.zarr")}}
    alone["output"] = {"store": str(out), "array": "a"}
    pipeline.run(alone)  # into a group of nothing else: no Dataset to close
    for overwrite in (False, True):
        with pytest.raises(OutputError) as info:
            pipeline.run(config(tmp_path), overwrite=overwrite)
        line = str(info.value)
        assert "'a' (an output of this pipeline), an array without dimension names" in line
        assert "did not write" not in line, line

    other = tmp_path / "other"
    other.mkdir()
    write_dataset(other / "in.zarr", 3, rows=ROWS // 2)
    out2 = tmp_path / "out2.zarr"
    pipeline.run(config(tmp_path, output={"store": str(out2)}))
    with pytest.raises(OutputError) as info:
        pipeline.run(config(other, output={"store": str(out2), "array": "t2"}), overwrite=True)
    line = str(info.value)
    assert "the array 't' (an output of this pipeline) whose dimension 'y'" in line, line

    # the array alone beside a complete Dataset output, as a run before this check wrote it
    shutil.rmtree(out)
    pipeline.run(config(tmp_path))
    made = tmp_path / "made.zarr"
    pipeline.run({**alone, "output": {"store": str(made), "array": "a"}})
    shutil.copytree(made / "a", out / "a")
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump(config(tmp_path)))
    rc, _, err = cli("verify", str(cfg))
    assert rc == 1 and "'a' (an output of this pipeline), an array without dimension" in err, err
    assert "did not write" not in err, err


def test_a_cut_blosc_frame_of_a_carried_v2_text_coordinate_is_named_before_anything_is_written(
    tmp_path: Path,
) -> None:
    """A v2 Dataset (as xarray writes it) whose text coordinate ``station`` (``<U5``, which
    only zarr-python decodes), Blosc at clevel 0 in chunks of 10, had a chunk cut to half its
    bytes: zarr-python, and so xarray, read the cut frame from whatever memory followed it, no
    error, and the run wrote those characters into the output's coordinate, marked complete
    (only a v3 chain's Blosc frames were checked). Now one ChunkError naming the input store
    and the chunk's key, from plan and run, nothing written, the input untouched."""
    import numcodecs

    src = tmp_path / "in.zarr"
    write_dataset(src, 2)
    ds = xr.Dataset(coords={"station": ("x", np.array([f"st{i:03d}" for i in range(COLS)]))})
    ds["station"].encoding = {"chunks": (10,), "compressor": numcodecs.Blosc(clevel=0)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(str(src), mode="a", consolidated=True)
    key = "station/1"
    raw = (src / key).read_bytes()
    (src / key).write_bytes(raw[: len(raw) // 2])
    before = file_states(src)
    for call in (pipeline.plan, pipeline.run):
        with pytest.raises(ChunkError) as info:
            call(config(tmp_path))
        e = info.value
        assert (e.store, e.key) == (str(src), key), e
        assert "Blosc header" in str(e) and len(str(e).splitlines()) == 1, e
        assert not (tmp_path / "out.zarr").exists()
    assert file_states(src) == before


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_coordinates_a_datatree_inherits_from_a_group_above_are_said_in_a_note(
    tmp_path: Path, zarr_format: int
) -> None:
    """A DataTree (``dt.to_zarr``) whose root holds the dimension coordinate ``x`` (with its
    units) and whose group ``child`` holds ``v`` on (t, x) with its own ``t``:
    ``xr.open_datatree`` gives ``v`` both coordinates, ``xr.open_zarr`` of ``child`` only
    ``t``, and so does the output, which carries its group's. The run had lost ``x`` without
    a word (h75b); now plan and run say it in a note naming ``x``, its group and the fix,
    not ``t``, which is carried; a variable whose group holds its own ``x`` gets none. The
    values are NumPy's chain over the input's, to the bit."""
    src = tmp_path / "in.zarr"
    v = np.arange(12.0).reshape(3, 4) - 5.5
    root = xr.Dataset(coords={"x": ("x", np.arange(4.0) * 2, {"units": "km"})})
    child = xr.Dataset({"v": (("t", "x"), v)}, coords={"t": [10, 20, 30]})
    own = xr.Dataset({"v": (("t", "x"), v)}, coords={"t": [10, 20, 30], "x": np.arange(4.0) * 2})
    tree = xr.DataTree.from_dict({"/": root, "/child": child})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tree.to_zarr(str(src), mode="w", zarr_format=zarr_format)
        # a Dataset's to_zarr writes x into the group (a DataTree's, equal to the root's, not)
        own.to_zarr(str(src), group="own", mode="w", zarr_format=zarr_format)
        assert set(xr.open_datatree(str(src), engine="zarr")["child"]["v"].coords) == {"t", "x"}
    cfg: dict[str, Any] = {
        "input": {"store": str(src), "array": "child/v"},
        "output": {"store": str(tmp_path / "out.zarr")},
        "stages": STAGES,
        "cluster": _THREADS,
    }
    (said,) = [n for n in pipeline.plan(cfg).notes if "xr.open_datatree" in n]
    assert "'x' (of the group '/')" in said and "'t'" not in said, said
    assert "to_dataset().to_zarr(" in said and len(said.splitlines()) == 1, said
    summary = pipeline.run(cfg)
    assert [n for n in summary.notes if "xr.open_datatree" in n] == [said]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = xr.open_zarr(summary.output)
    assert set(out["v"].coords) == {"t"}
    with np.errstate(all="ignore"):
        want = apply_chain(plan_chain(parse_config(cfg).stage_specs(), v.dtype), v)
    assert same_bits(out["v"].values, want)
    alone = {**cfg, "input": {**cfg["input"], "array": "own/v"}}
    assert not [n for n in pipeline.plan(alone).notes if "xr.open_datatree" in n]


def _tree_config(src: Path, tree: Path) -> dict[str, Any]:
    """A config that runs ``v`` of ``src`` into the group ``v`` of the DataTree store ``tree``
    (:func:`_tree_input`'s), on threads."""
    return {
        "input": {"store": str(src), "array": "v"},
        "output": {"store": str(tree), "array": "v"},
        "stages": STAGES,
        "cluster": _THREADS,
    }


def _tree_input(tmp_path: Path) -> tuple[Path, Path, np.ndarray]:
    """An input Dataset ``in.zarr`` of ``v`` (3 x 4, dimensions t, x; x's coordinate 100 to
    103), the path of a DataTree store ``tree.zarr`` (not written), and ``v``'s values."""
    src, tree = tmp_path / "in.zarr", tmp_path / "tree.zarr"
    v = np.arange(12.0).reshape(3, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        xr.Dataset({"v": (("t", "x"), v)}, coords={"x": np.arange(4.0) + 100}).to_zarr(
            str(src), mode="w"
        )
    return src, tree, v


def _refused_as_misaligned(cfg: dict[str, Any], tree: Path) -> list[str]:
    """The lines of ``cfg``'s run, plain and with --overwrite, each refused (OutputError) in
    one line naming the group ``tree`` and its dimension ``x`` as not aligned for
    ``xr.open_datatree``, nothing in ``tree`` written."""
    before = file_states(tree)
    lines = []
    for overwrite in (None, True):
        with pytest.raises(OutputError) as info:
            pipeline.run(cfg, overwrite=overwrite)
        e = info.value
        assert (e.group, e.dimension) == (str(tree), "x"), e
        assert "xr.open_datatree" in str(e) and len(str(e).splitlines()) == 1, e
        lines.append(str(e))
    assert file_states(tree) == before
    return lines


@pytest.mark.parametrize("where", ["group", "store"])
def test_an_output_below_a_datatree_group_of_other_coordinates_is_refused(
    tmp_path: Path, where: str
) -> None:
    """An output written below a DataTree's group whose dimension coordinate ``x`` has other
    values (or another size) than the variable's: ``xr.open_datatree`` of the store, which
    opened before, failed on every group after the run ("group '/res' is not aligned with
    its parents"), exit 0 (h75b). Now refused before anything is written, in one line
    naming the group and the dimension, as an output.array in the tree's store or as an
    output.store inside it; with the same coordinate it runs, and the tree opens."""
    src, tree, v = _tree_input(tmp_path)
    output = (
        {"store": str(tree), "array": "res/v"}
        if where == "group"
        else {"store": str(tree / "res"), "array": "v"}
    )
    cfg: dict[str, Any] = {
        "input": {"store": str(src), "array": "v"},
        "output": output,
        "stages": STAGES,
        "cluster": _THREADS,
    }
    for x, said in ((np.arange(4.0), "other values"), (np.arange(5.0), "5 elements")):
        shutil.rmtree(tree, ignore_errors=True)
        root = xr.Dataset(coords={"x": x})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            xr.DataTree.from_dict({"/": root, "/a": xr.Dataset({"w": ("x", x)})}).to_zarr(
                str(tree), mode="w"
            )
        for line in _refused_as_misaligned(cfg, tree):
            assert said in line, line
    shutil.rmtree(tree)
    root = xr.Dataset(coords={"x": np.arange(4.0) + 100})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        xr.DataTree.from_dict({"/": root}).to_zarr(str(tree), mode="w")
        assert pipeline.run(cfg).status == "complete"
        opened = xr.open_datatree(str(tree), engine="zarr")
    got = opened["res"]["v"].values
    with np.errstate(all="ignore"):
        want = apply_chain(plan_chain(parse_config(cfg).stage_specs(), v.dtype), v)
    assert same_bits(got, want)


def _indexed_input(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """An input DataTree ``in.zarr`` whose group ``a/b`` holds ``v`` (10 x 13, dimensions
    t, x; t's coordinate 0 to 9, x none), and ``v``'s values."""
    src = tmp_path / "in.zarr"
    v = np.arange(130.0).reshape(10, 13)
    ds = xr.Dataset({"v": (("t", "x"), v)}, coords={"t": np.arange(10)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        xr.DataTree.from_dict({"/a/b": ds}).to_zarr(str(src), mode="w")
    return src, v


def _opens_as_a_tree(tree: Path) -> xr.DataTree:
    """``xr.open_datatree`` of ``tree``, as a user opens it (it raises where a group is not
    aligned with those above it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return xr.open_datatree(str(tree), engine="zarr")


_UNALIGNED_ABOVE = {  # groups above the output, the group named, the dimension, the words
    "t-of-5-no-coordinate": ({"/": xr.Dataset({"q": ("t", np.arange(5.0))})}, "", "t", "5 el"),
    "x-of-7-no-coordinate": ({"/": xr.Dataset({"q": ("x", np.arange(7.0))})}, "", "x", "7 el"),
    "grandparent-t-of-5": (
        {"/": xr.Dataset({"q": ("t", np.arange(5.0))}), "/a": xr.Dataset()},
        "",
        "t",
        "5 el",
    ),
    "t-of-other-values": (
        {"/": xr.Dataset(coords={"t": np.arange(10) + 100})},
        "",
        "t",
        "other values",
    ),
    "index-above-an-unindexed-t": (
        {
            "/": xr.Dataset(coords={"t": np.arange(10) + 100}),
            "/a": xr.Dataset({"q": ("t", np.arange(10.0))}),
        },
        "",
        "t",
        "other values",
    ),
}
_ALIGNED_ABOVE = {
    "t-of-10-no-coordinate": {"/": xr.Dataset({"q": ("t", np.arange(10.0))})},
    "x-of-13-and-t-of-its-values": {
        "/": xr.Dataset({"q": ("x", np.arange(13.0))}, coords={"t": np.arange(10)}),
        "/a": xr.Dataset(),
    },
    "x-indexed-above-the-unindexed-x": {"/": xr.Dataset(coords={"x": np.arange(13.0) + 5})},
}


@pytest.mark.parametrize("zarr_format", [2, 3])
@pytest.mark.parametrize("consolidated", [True, False], ids=["consolidated", "unconsolidated"])
@pytest.mark.parametrize("where", ["group", "store"])
def test_an_output_below_a_group_of_a_dimension_without_coordinate_is_refused(
    tmp_path: Path, zarr_format: int, consolidated: bool, where: str
) -> None:
    """xarray's rule for a DataTree (``check_alignment``: ``align(group, inherited,
    join="exact")``) holds each group against everything above it: the sizes of every
    dimension of its parents' variables, data variables without a coordinate among them, and
    their indexes by value. A root of ``q(t=5)`` (no coordinate ``t``), an output of ``t`` of
    10 written below it (``output.array: results/v`` or ``output.store: tree.zarr/results``)
    had completed, exit 0, and ``xr.open_datatree`` of the store failed ("group
    '/results' is not aligned with its parents", h85e): only the parents' dimension
    coordinates were looked at. Now refused in one line naming that group, the nearest
    with the dimension or its nearest index (a grandparent's too), nothing written, in a
    Zarr v2 or v3 parent, consolidated or not; where they agree the run writes it and the
    tree opens with the computed values. (A v3 output below a v2 group's is refused as such:
    ``output.array`` into a v2 store is not run.)"""
    if where == "group" and zarr_format == 2:
        pytest.skip("a v3 output in a v2 store is refused for its format")
    src, v = _indexed_input(tmp_path)
    tree = tmp_path / "tree.zarr"

    def cfg(groups: dict[str, xr.Dataset]) -> dict[str, Any]:
        below = "/".join(k.strip("/") for k in groups if k != "/")
        inside = f"{below}/results" if below else "results"
        output = (
            {"store": str(tree), "array": f"{inside}/v"}
            if where == "group"
            else {"store": str(tree / inside), "array": "v"}
        )
        return {
            "input": {"store": str(src), "array": "a/b/v"},
            "output": output,
            "stages": STAGES,
            "cluster": _THREADS,
        }

    def write(groups: dict[str, xr.Dataset]) -> None:
        shutil.rmtree(tree, ignore_errors=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            xr.DataTree.from_dict(groups).to_zarr(
                str(tree), mode="w", zarr_format=zarr_format, consolidated=consolidated
            )

    for case, (groups, group, dim, said) in _UNALIGNED_ABOVE.items():
        write(groups)
        before = file_states(tree)
        for overwrite in (None, True):
            with pytest.raises(OutputError) as info:
                pipeline.run(cfg(groups), overwrite=overwrite)
            e = info.value
            assert (e.group, e.dimension) == (str(tree / group).rstrip("/"), dim), (case, e)
            assert said in str(e) and "above it" in str(e), (case, e)
            assert "xr.open_datatree" in str(e) and len(str(e).splitlines()) == 1, (case, e)
        assert file_states(tree) == before, case
        _opens_as_a_tree(tree)
    with np.errstate(all="ignore"):
        want = apply_chain(plan_chain(parse_config(cfg({})).stage_specs(), v.dtype), v)
    for case, groups in _ALIGNED_ABOVE.items():
        write(groups)
        assert pipeline.run(cfg(groups)).status == "complete", case
        opened = _opens_as_a_tree(tree)
        if zarr_format == 3:  # a v2 group lists no v3 member: the tree has no results there
            below = "/".join(k.strip("/") for k in groups if k != "/")
            node = opened[f"{below}/results" if below else "results"]
            assert same_bits(node["v"].values, want), case
            assert (node["t"].values == np.arange(10)).all(), case


def _grid_input(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """An input Dataset ``in.zarr`` of ``v(y=40, x=60)`` (chunks of 10 x 60) with coordinates
    ``y`` and ``x`` (0 to 39, 0 to 59), and ``v``'s values."""
    src = tmp_path / "in.zarr"
    v = np.arange(2400.0).reshape(40, 60)
    coords = {"y": np.arange(40.0), "x": np.arange(60.0)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = xr.Dataset({"v": (("y", "x"), v)}, coords=coords).chunk({"y": 10})
        ds.to_zarr(str(src), mode="w")
    return src, v


def _parent_of_x(tree: Path, size: int, consolidated: bool = True) -> None:
    """An xarray Dataset at ``tree`` (replacing what is there) of one variable ``p`` along
    ``x`` of ``size`` elements, with its coordinate 0, 1, ...: the group an output is
    written below."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        xr.Dataset({"p": ("x", np.zeros(size))}, coords={"x": np.arange(float(size))}).to_zarr(
            str(tree), mode="w", consolidated=consolidated
        )


@pytest.mark.parametrize("below", ["a/b", "a/b/c"])
@pytest.mark.parametrize("consolidated", [True, False], ids=["consolidated", "unconsolidated"])
def test_an_output_store_below_groups_not_there_yet_is_in_the_nearest_group(
    tmp_path: Path, below: str, consolidated: bool
) -> None:
    """``output.store: tree.zarr/a/b`` where ``tree.zarr`` is a Dataset's group and ``a`` is
    no group yet: the run completed, exit 0, but wrote no ``a``, left the root's consolidated
    copy as it was, ``xr.open_datatree`` saw the root alone, and the alignment with the
    root's ``x`` of 10 (the output's 60) was not checked: once ``a`` was made a group the
    tree failed "not aligned" (h86d; only the folder just above the store had been looked
    at). The nearest group is found however deep: refused in one line naming it and a fix
    that works (another output.store outside it: another output.array is still below it),
    nothing written; with ``x`` of the same values the groups between are written, the
    consolidated copy lists the output, and the tree opens with the computed values."""
    src, v = _grid_input(tmp_path)
    tree = tmp_path / "tree.zarr"
    cfg = {
        "input": {"store": str(src), "array": "v"},
        "output": {"store": str(tree / below), "array": "v"},
        "stages": STAGES,
        "cluster": _THREADS,
    }
    _parent_of_x(tree, 10, consolidated)
    for line in _refused_as_misaligned(cfg, tree):
        assert "10 elements" in line and "above it" in line, line
        assert line.endswith(f"choose an output.store outside {tree}"), line
    _parent_of_x(tree, 60, consolidated)
    assert pipeline.run(cfg).status == "complete"
    parts = below.split("/")
    groups = {"/" + "/".join(parts[:depth]) for depth in range(1, len(parts) + 1)}
    assert set(_opens_as_a_tree(tree).groups) == {"/", *groups}
    for group in groups - {f"/{below}"}:  # the groups between, written as groups
        assert json.loads((tree / group.strip("/") / "zarr.json").read_text())["node_type"] == (
            "group"
        )
    root = json.loads((tree / "zarr.json").read_text())
    if consolidated:  # the root's copy lists the output, as xr.open_zarr reads it
        assert f"{below}/v" in root["consolidated_metadata"]["metadata"], root
    else:
        assert root.get("consolidated_metadata") is None, root
    with np.errstate(all="ignore"):
        want = apply_chain(plan_chain(parse_config(cfg).stage_specs(), v.dtype), v)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opened = xr.open_zarr(str(tree), group=below, consolidated=consolidated or None)
        assert same_bits(opened["v"].values, want)


def test_a_group_between_removed_after_the_run_is_written_again_by_a_resume(
    tmp_path: Path,
) -> None:
    """An output at ``tree.zarr/a/b`` (the group ``a`` written by its run), then ``a``'s
    ``zarr.json`` removed: verify names the stale consolidated copy and `run --resume` as its
    fix, which wrote the root's copy again without ``a``, leaving the output out of it and of
    ``xr.open_datatree``, and verify failing again (h86g). The resume writes ``a`` again,
    then the copies: verify passes and the tree opens with the output's values."""
    src, v = _grid_input(tmp_path)
    tree = tmp_path / "tree.zarr"
    _parent_of_x(tree, 60)
    cfg = {
        "input": {"store": str(src), "array": "v"},
        "output": {"store": str(tree / "a" / "b"), "array": "v"},
        "stages": STAGES,
        "cluster": _THREADS,
    }
    assert pipeline.run(cfg).status == "complete"
    (tree / "a" / "zarr.json").unlink()
    assert not pipeline.verify(cfg).ok
    pipeline.run(cfg, resume=True)
    assert json.loads((tree / "a" / "zarr.json").read_text())["node_type"] == "group"
    assert pipeline.verify(cfg).ok
    assert {"/", "/a", "/a/b"} <= set(_opens_as_a_tree(tree).groups)
    with np.errstate(all="ignore"):
        want = apply_chain(plan_chain(parse_config(cfg).stage_specs(), v.dtype), v)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert same_bits(xr.open_zarr(str(tree), group="a/b")["v"].values, want)


@pytest.mark.parametrize("below", ["a/b", "a/b/c"])
def test_a_group_between_removed_from_an_unconsolidated_tree_fails_verify_and_a_resume_mends_it(
    tmp_path: Path, cli, below: str
) -> None:
    """h86g (d): an output at ``tree.zarr/a/b`` (or ``a/b/c``) of an unconsolidated tree, its
    groups between removed after the run: verify passed, exit 0, while
    ``xr.open_datatree`` saw the root alone (87b2b88 mended the consolidated tree, whose
    stale copy verify named). verify fails it in one line naming the groups gone and `run
    --resume`, which plan and a plain run name too; that resume writes them again, nothing
    recomputed: verify passes and the tree opens with the output's values."""
    src, v = _grid_input(tmp_path)
    tree = tmp_path / "tree.zarr"
    _parent_of_x(tree, 60, consolidated=False)
    cfg = {
        "input": {"store": str(src), "array": "v"},
        "output": {"store": str(tree / below), "array": "v"},
        "stages": STAGES,
        "cluster": _THREADS,
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert pipeline.run(cfg).status == "complete"
    parts = below.split("/")[:-1]
    between = [tree / "/".join(parts[:depth]) for depth in range(1, len(parts) + 1)]
    for folder in between:
        (folder / "zarr.json").unlink()
    assert set(_opens_as_a_tree(tree).groups) == {"/"}
    chunks = {k: f for k, f in file_states(tree / below).items() if "/c/" in k}
    assert chunks, file_states(tree / below)
    one = len(between) == 1
    gone = (
        f"{'the group' if one else 'the groups'} {', '.join(map(str, between))} that "
        f"{'holds' if one else 'hold'} the output's store {'is' if one else 'are'} gone (no "
        "Zarr metadata there: removed since the run), so readers of the groups above "
        "(`xr.open_datatree`) do not reach the output"
    )
    again = f"`run --resume` writes {'it' if one else 'them'} again, nothing recomputed"
    rc, out, err = cli("verify", path)
    assert rc == 1 and one_line_error(err) == f"error: {gone}; {again}", out + err
    result = pipeline.verify(cfg)
    assert not result.ok and result.groups_missing == tuple(map(str, between)), result
    rc, out, err = cli("plan", path)
    now = next(ln for ln in out.splitlines() if "output now" in ln)
    assert rc == 0 and now.endswith(f"output now   complete, but {gone}: {again}"), out
    rc, _, err = cli("run", path, "--progress", "none")
    assert rc == 1 and f"is complete, made from this config and input, but {gone}" in err, err
    rc, _, err = cli("run", path, "--resume")
    assert rc == 0 and "is already complete; the group that holds it written again" in err, err
    for folder in between:
        assert json.loads((folder / "zarr.json").read_text())["node_type"] == "group"
    # nothing recomputed: the chunk files as they were (the metadata consolidated again)
    assert {k: f for k, f in file_states(tree / below).items() if "/c/" in k} == chunks
    rc, out, err = cli("verify", path)
    assert rc == 0, out + err
    groups = {"/" + "/".join(below.split("/")[:d]) for d in range(1, len(below.split("/")) + 1)}
    assert set(_opens_as_a_tree(tree).groups) == {"/", *groups}
    with np.errstate(all="ignore"):
        want = apply_chain(plan_chain(parse_config(cfg).stage_specs(), v.dtype), v)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert same_bits(xr.open_zarr(str(tree), group=below)["v"].values, want)


@pytest.mark.parametrize("when", ["first-run", "resume"])
def test_a_group_between_in_a_folder_that_cannot_be_written_is_refused_in_the_outputs_line(
    tmp_path: Path, cli, when: str
) -> None:
    """h86e/h86d (e): the folder ``tree.zarr/a`` of the group between, holding only the way
    down (``b``, the output's store), that cannot be written: the run had passed the file
    system's PermissionError through ("a store answered PermissionError: ... .zarr.json.tmp-
    ..."), the output's folder half made. Refused before anything is written in the line
    of an output folder that cannot be written, naming ``a``; `verify` of a complete output
    whose ``a`` is gone names it too (its `run --resume` is refused so). Writable again, the
    run (or the resume) writes the group."""
    src, _ = _grid_input(tmp_path)
    tree = tmp_path / "tree.zarr"
    _parent_of_x(tree, 60, consolidated=False)
    cfg = {
        "input": {"store": str(src), "array": "v"},
        "output": {"store": str(tree / "a" / "b"), "array": "v"},
        "stages": STAGES,
        "cluster": _THREADS,
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    folder = tree / "a"
    if when == "resume":
        assert pipeline.run(cfg).status == "complete"
        (folder / "zarr.json").unlink()
    else:
        (folder / "b").mkdir(parents=True)
    line = (
        f"error: cannot write the output at {tree / 'a' / 'b'}: {folder} is not a writable "
        "directory; choose another output.store or fix its permissions"
    )
    before = file_states(tree)
    with read_only_folder(folder):
        flags = ("--resume",) if when == "resume" else ()
        rc, _, err = cli("run", path, "--progress", "none", *flags)
        assert rc == 1 and one_line_error(err) == line, err
        if when == "resume":
            rc, out, err = cli("verify", path)
            assert rc == 1 and one_line_error(err).endswith(line[len("error: ") :]), out + err
        assert file_states(tree) == before
    flags = ("--resume",) if when == "resume" else ()
    rc, _, err = cli("run", path, "--progress", "none", *flags)
    assert rc == 0, err
    assert json.loads((folder / "zarr.json").read_text())["node_type"] == "group"


def test_a_plain_folder_of_the_users_between_a_group_and_the_output_is_left_as_it_is(
    tmp_path: Path,
) -> None:
    """Where a folder between a Dataset's group and the output's store holds files of the
    user's (``tree.zarr/mine/notes.txt``, the output at ``tree.zarr/mine/out``), the climb to
    the enclosing group stops there: no group metadata is written into the user's folder, the
    root's dimensions (x of 10 against the output's 60) do not refuse the run, and the output
    is written at the path asked, opened by it (h86d's climb passed through any folder)."""
    src, v = _grid_input(tmp_path)
    tree = tmp_path / "tree.zarr"
    _parent_of_x(tree, 10)
    (tree / "mine").mkdir()
    (tree / "mine" / "notes.txt").write_text("mine")
    cfg = {
        "input": {"store": str(src), "array": "v"},
        "output": {"store": str(tree / "mine" / "out"), "array": "v"},
        "stages": STAGES,
        "cluster": _THREADS,
    }
    before = file_states(tree)
    assert pipeline.run(cfg).status == "complete"
    assert sorted(p.name for p in (tree / "mine").iterdir()) == ["notes.txt", "out"]
    after = file_states(tree)
    assert {k: after[k] for k in before} == before  # the group and the user's file as they were
    with np.errstate(all="ignore"):
        want = apply_chain(plan_chain(parse_config(cfg).stage_specs(), v.dtype), v)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert same_bits(xr.open_zarr(str(tree / "mine" / "out"))["v"].values, want)


def test_a_resume_below_a_group_that_gained_a_dimension_of_another_size_is_refused(
    tmp_path: Path,
) -> None:
    """A run into ``tree.zarr/a/b`` stopped (a real Ctrl-C after its first block), then the
    root gained ``q`` of ``x`` of 10 (the output's 60): ``run --resume`` finished it, exit
    0, and ``xr.open_datatree`` of the tree failed "not aligned" (h86d: only a first run was
    checked). Refused before any block, as a first run is, in one line naming the group and
    a fix that works, nothing written."""
    src, _ = _grid_input(tmp_path)
    tree = tmp_path / "tree.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        xr.Dataset({"w": ("z", np.zeros(3))}).to_zarr(str(tree), mode="w")
    cfg = {
        "input": {"store": str(src), "array": "v"},
        "output": {"store": str(tree / "a" / "b"), "array": "v"},
        "stages": STAGES,
        "chunking": {"block": [10, 60]},
        "cluster": {"dashboard": ""},
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    (tmp_path / "stop.py").write_text(ctrl_c_script("pipeline.store.ledger", "Ledger.mark", False))
    proc = run_python([tmp_path / "stop.py", path], tmp_path)
    assert json.loads(proc.stdout.strip().splitlines()[-1])["state"] == "incomplete", proc.stderr
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        xr.Dataset({"q": ("x", np.zeros(10))}).to_zarr(str(tree), mode="a")
    before = file_states(tree)
    with pytest.raises(OutputError) as info:
        pipeline.run(path, resume=True)
    e = info.value
    assert str(e).startswith(f"cannot resume {tree / 'a' / 'b' / 'v'}: "), e
    assert (e.group, e.dimension) == (str(tree), "x"), e
    assert "10 elements" in str(e) and str(e).endswith(f"choose an output.store outside {tree}")
    assert len(str(e).splitlines()) == 1, e
    assert file_states(tree) == before


def test_a_misaligned_group_inside_the_store_names_another_output_array_as_the_fix(
    tmp_path: Path,
) -> None:
    """The refusal of a group above the output inside its store (``output.array:
    g/results/v``, ``g`` of ``x`` of 10) had said "choose another output.store or
    output.array" alike for a group at the store's root, where no output.array helps
    (h86d); here another output.array, outside ``g``, is the fix, and it runs."""
    src, _ = _grid_input(tmp_path)
    tree = tmp_path / "tree.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        xr.DataTree.from_dict({"/g": xr.Dataset({"q": ("x", np.zeros(10))})}).to_zarr(
            str(tree), mode="w"
        )
    cfg: dict[str, Any] = {
        "input": {"store": str(src), "array": "v"},
        "output": {"store": str(tree), "array": "g/results/v"},
        "stages": STAGES,
        "cluster": _THREADS,
    }
    with pytest.raises(OutputError) as info:
        pipeline.run(cfg)
    e = info.value
    assert (e.group, e.dimension) == (str(tree / "g"), "x"), e
    assert str(e).endswith("choose an output.array outside the group 'g', or another output.store")
    cfg["output"]["array"] = "results/v"  # as the line says
    assert pipeline.run(cfg).status == "complete"
    assert set(_opens_as_a_tree(tree).groups) == {"/", "/g", "/results"}


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_an_output_store_inside_a_v2_group_is_warned_of_as_unlisted(
    tmp_path: Path, zarr_format: int, caplog: pytest.LogCaptureFixture
) -> None:
    """``output.store: pV.zarr/child`` in a group ``to_zarr(..., zarr_format=2)`` wrote:
    exit 0, and ``xr.open_datatree`` of ``pV.zarr`` listed the root alone,
    ``xr.open_zarr(pV.zarr, group='child')`` raised KeyError, nothing said (h86d). Not
    refused (such layouts are meant: the h71c and S3 enclosing-group tests); the run says in
    one warning line that the v2 group's readers do not list it and that it opens by its
    own path, which it does. Below a v3 group, no such line."""
    src, v = _grid_input(tmp_path)
    tree = tmp_path / "pV.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        xr.Dataset({"p": ("x", np.zeros(60))}, coords={"x": np.arange(60.0)}).to_zarr(
            str(tree), mode="w", zarr_format=zarr_format
        )
    cfg = {
        "input": {"store": str(src), "array": "v"},
        "output": {"store": str(tree / "child"), "array": "v"},
        "stages": STAGES,
        "cluster": _THREADS,
    }
    with caplog.at_level(logging.WARNING, logger="pipeline"):
        assert pipeline.run(cfg).status == "complete"
    said = [r.getMessage() for r in caplog.records if "Zarr v2 group" in r.getMessage()]
    groups = set(_opens_as_a_tree(tree).groups)
    if zarr_format == 3:
        assert said == [] and groups == {"/", "/child"}, (said, groups)
        return
    assert len(said) == 1 and len(said[0].splitlines()) == 1, said
    assert f"inside the Zarr v2 group {tree}" in said[0], said
    assert "open_datatree" in said[0] and "open_zarr(group='child')" in said[0], said
    assert said[0].endswith(f"open it by its own path, {tree / 'child'}"), said
    assert groups == {"/"}, groups  # what the line says
    with np.errstate(all="ignore"):
        want = apply_chain(plan_chain(parse_config(cfg).stage_specs(), v.dtype), v)
    assert same_bits(open_dataset(tree / "child")["v"].values, want)


def test_an_output_above_a_group_of_a_carried_coordinate_s_other_dimension_is_refused(
    tmp_path: Path,
) -> None:
    """The output's coordinates write their dimensions too (``t_bnds(t, nv=2)``, the bounds
    ``t`` names): a group below the output's of ``nv`` of 3 (no coordinate) would no longer
    be aligned with it, and only the variable's own dimensions had been looked at below the
    output (h85e). Refused in one line naming that group; one of ``nv`` of 2 is written
    beside it, the tree opening."""
    src = tmp_path / "in.zarr"
    ds = xr.Dataset(
        {"v": (("t", "x"), np.arange(12.0).reshape(3, 4))},
        coords={
            "t": ("t", np.arange(3.0), {"bounds": "t_bnds"}),
            "t_bnds": (("t", "nv"), np.zeros((3, 2))),
        },
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(str(src), mode="w")
    tree = tmp_path / "tree.zarr"
    cfg = {
        "input": {"store": str(src), "array": "v"},
        "output": {"store": str(tree), "array": "v"},
        "stages": STAGES,
        "cluster": _THREADS,
    }
    for n in (3, 2):
        shutil.rmtree(tree, ignore_errors=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            xr.DataTree.from_dict({"/b": xr.Dataset({"q": ("nv", np.arange(float(n)))})}).to_zarr(
                str(tree), mode="w"
            )
        if n == 2:
            assert pipeline.run(cfg, overwrite=True).status == "complete"
            assert _opens_as_a_tree(tree)["v"].shape == (3, 4)
            break
        before = file_states(tree)
        with pytest.raises(OutputError) as info:
            pipeline.run(cfg, overwrite=True)
        e = info.value
        assert (e.group, e.dimension) == (str(tree / "b"), "nv"), e
        assert "'nv' of 3 elements, the output's 2" in str(e) and "below it" in str(e), e
        assert len(str(e).splitlines()) == 1, e
        assert file_states(tree) == before
        _opens_as_a_tree(tree)


@pytest.mark.parametrize("first", ["a", "b"], ids=lambda f: f"{f}-listed-first")
def test_of_two_misaligned_groups_below_an_output_the_same_is_named_whatever_the_listing(
    tmp_path: Path, first: str
) -> None:
    """h78b: both groups below the output's, ``a`` (``x`` of other values) and ``b`` (``x``
    of 5 elements), would leave ``xr.open_datatree`` failing. The refusal named the one
    zarr-python listed first, in no fixed order (the same store was refused naming ``a`` or
    ``b``); it names ``a``, whichever is listed first."""
    src, tree, _ = _tree_input(tmp_path)
    cfg = _tree_config(src, tree)
    groups = {
        "/a": xr.Dataset(coords={"x": np.arange(4.0)}),
        "/b": xr.Dataset({"q": ("x", np.arange(5.0))}),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        xr.DataTree.from_dict(groups).to_zarr(str(tree), mode="w", zarr_format=3)
    _members_in_order(tree, first)
    with pytest.raises(OutputError) as info:
        pipeline.run(cfg, overwrite=True)
    e = info.value
    assert (e.group, e.dimension) == (str(tree / "a"), "x"), e
    assert "other values" in str(e) and len(str(e).splitlines()) == 1, e


def test_an_output_above_a_datatree_group_of_other_coordinates_is_refused(tmp_path: Path) -> None:
    """``overwrite=True`` writes a Dataset output into a group that holds other groups (a
    DataTree's root): its coordinate ``x`` of other values than the group ``a`` below it
    has, or a dimension ``x`` of another size than ``b/c``'s (no coordinate there), had left
    ``xr.open_datatree`` failing on the whole store, exit 0 (h75b). Now refused in one line
    naming that group, nothing written; where they agree the run writes it, the tree opens."""
    src, tree, _ = _tree_input(tmp_path)
    cfg = _tree_config(src, tree)
    cases = (
        ({"/a": xr.Dataset(coords={"x": np.arange(4.0)})}, "a", "other values"),
        ({"/b/c": xr.Dataset({"q": ("x", np.arange(5.0))})}, "b/c", "5 elements"),
    )
    for groups, group, said in cases:
        shutil.rmtree(tree, ignore_errors=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            xr.DataTree.from_dict(groups).to_zarr(str(tree), mode="w")
        before = file_states(tree)
        with pytest.raises(OutputError) as info:
            pipeline.run(cfg, overwrite=True)
        e = info.value
        assert (e.group, e.dimension) == (str(tree / group), "x"), e
        assert said in str(e) and "below it" in str(e) and len(str(e).splitlines()) == 1, e
        assert file_states(tree) == before
    shutil.rmtree(tree)
    agreeing = {"/a": xr.Dataset(coords={"x": np.arange(4.0) + 100}), "/b": xr.Dataset()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        xr.DataTree.from_dict(agreeing).to_zarr(str(tree), mode="w")
        assert pipeline.run(cfg, overwrite=True).status == "complete"
        assert set(xr.open_datatree(str(tree), engine="zarr").groups) == {"/", "/a", "/b"}


def test_a_plain_file_at_a_coordinate_s_name_is_never_deleted_by_overwrite(tmp_path) -> None:
    """A plain file of the user's put in the output group where a coordinate is written (its
    folder ``y`` replaced by a file ``y``): ``--overwrite`` refuses in one line, the file kept
    as it was. It had been taken for an empty folder of a stopped write's remains (a walk
    lists nothing under a file) and deleted, exit 0 (h80a)."""
    import xarray as xr

    ds = xr.Dataset({"v": (("y",), np.arange(4.0))}, coords={"y": np.arange(4)})
    ds.to_zarr(tmp_path / "ds.zarr", mode="w", consolidated=False)
    out = tmp_path / "out.zarr"
    config = {
        "input": {"store": str(tmp_path / "ds.zarr"), "array": "v"},
        "output": {"store": str(out)},
        "stages": [{"op": "square"}],
        "cluster": {"protocol": "inproc", "dashboard": ""},
    }
    pipeline.run(config)
    shutil.rmtree(out / "y")
    (out / "y").write_bytes(b"mine")
    with pytest.raises(pipeline.OutputError) as e:
        pipeline.run(config, overwrite=True)
    assert "its group holds something that is not Zarr named 'y'" in str(e.value), e.value
    assert len(str(e.value).splitlines()) == 1
    assert (out / "y").read_bytes() == b"mine"


def test_a_variable_replaced_in_a_group_of_several_leaves_the_others_and_nothing_old(
    tmp_path: Path,
) -> None:
    """A group output holding two variables (``t``, then ``u`` beside it) and the input's
    coordinates: `--overwrite` of ``t``, over a ``t`` of another chunk grid, moves its old
    chunks into its own run record and deletes them there (h83d): ``u``'s files stay as
    they were, the coordinates (written again) as they were, no chunk of the old grid nor
    the run record is left, and the Dataset reads ``t`` as NumPy's chain, ``verify``
    passing."""
    write_dataset(tmp_path / "in.zarr", 3)
    out = tmp_path / "out.zarr"
    first = config(tmp_path, output={"chunks": [5, COLS // 2], "shards": "none"})
    assert pipeline.run(first).status == "complete"
    assert (
        pipeline.run(config(tmp_path, output={"array": "u"}), overwrite=True).status == "complete"
    )
    old = {p.relative_to(out / "t").as_posix() for p in (out / "t").rglob("*") if p.is_file()}

    def held() -> dict[str, Any]:  # u's files whole; the coordinates' bytes (written again)
        coords = {n: {k: v[2] for k, v in file_states(out / n).items()} for n in ("x", "y", "lon")}
        return {"u": file_states(out / "u"), **coords}

    others = held()
    again = config(tmp_path, output={"chunks": [10, COLS], "shards": "none"})
    assert pipeline.run(again, overwrite=True).status == "complete"
    assert not (out / "t" / ".pipeline").exists()
    assert held() == others
    now = {p.relative_to(out / "t").as_posix() for p in (out / "t").rglob("*") if p.is_file()}
    z = zarr.open_array(str(out), path="t", mode="r")
    grid = {f"c/{i}/{j}" for i in range(z.cdata_shape[0]) for j in range(z.cdata_shape[1])}
    assert now == grid | {"zarr.json"}, sorted(now)
    assert old - now, "the old variable should have had chunks of another grid"
    ds = open_dataset(out)
    assert same_bits(ds["t"].values, ds["u"].values)
    assert pipeline.verify(again, all=True).ok


def test_a_stale_consolidated_copy_names_every_member_it_misstates(
    tmp_path: Path, cli: Any
) -> None:
    """h85b: a Dataset whose consolidated copy misstates several members (a ``scale_factor``
    added to the coordinates ``y`` and ``x`` since, by which xarray decodes them): the line
    named the first alone, and its fix met the next refusal. Each is named; consolidated
    again, the run passes."""
    src = tmp_path / "in.zarr"
    write_dataset(src, 3)
    for name in ("y", "x"):
        zarr.open_array(str(src), path=name, mode="r+").attrs["scale_factor"] = 2.0
    cfg = tmp_path / "t.yaml"
    cfg.write_text(yaml.safe_dump(config(tmp_path)))
    rc, _, err = cli("plan", cfg)
    line = one_line_error(err)
    assert rc == 1 and "is stale: " in line, line
    assert "scale_factor of 'y'" in line and "scale_factor of 'x'" in line, line
    assert not (tmp_path / "out.zarr").exists()


def _plain_and_tree(tmp_path: Path, zarr_format: int = 3) -> tuple[Path, Path]:
    """``plain.zarr``, an array of zarr-python's ``create_array`` (no dimension names), and
    ``tree.zarr``, a Dataset ``p(x=6)`` with its coordinate ``x`` as xarray writes it."""
    plain = tmp_path / "plain.zarr"
    a = zarr.create_array(str(plain), shape=(4, 5), chunks=(4, 5), dtype="f4")
    a[:] = np.arange(20, dtype="f4").reshape(4, 5)
    tree = tmp_path / "tree.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        xr.Dataset({"p": ("x", np.zeros(6))}, coords={"x": np.arange(6.0)}).to_zarr(
            str(tree), mode="w", zarr_format=zarr_format
        )
    return plain, tree


@pytest.mark.parametrize(
    ("store", "array"),
    [
        ("tree.zarr/a/b", ""),  # below a group made between (h86g)
        ("tree.zarr/a", ""),  # at the root of a store that is a member of the tree
        ("tree.zarr", "g/b"),  # a group of its own: the fix the line below had named (h86g)
        ("tree.zarr", "b"),  # beside the Dataset
    ],
)
def test_an_array_without_dimension_names_is_refused_inside_an_xarray_tree(
    tmp_path: Path, cli, store: str, array: str
) -> None:
    """A plain array (no dimension names) written into an xarray tree, below one of its
    groups or beside its Dataset: it had been written, exit 0, no word (below a group), and
    ``xr.open_datatree`` of the tree then failed ("missing the dimension_names"); the
    refusal beside a Dataset named a group of its own in the tree, which broke it the same
    way. Now plan and run refuse it in one line before anything is written, naming the tree
    and two fixes that work: an output.store outside it, which then opens, and names for its
    dimensions (``output.dimension_names``, h88b), with which it is written there and
    ``xr.open_datatree`` opens the tree with them."""
    plain, tree = _plain_and_tree(tmp_path)
    cfg = tmp_path / "run.yaml"
    out = {"store": str(tmp_path / store), "array": array}
    cfg.write_text(
        yaml.safe_dump(
            {"input": {"store": str(plain)}, "output": out, "stages": STAGES, "cluster": _THREADS}
        )
    )
    before = file_states(tree)
    for args in (("plan", cfg), ("run", cfg, "--progress", "none")):
        rc, _, err = cli(*args)
        assert rc == 1, err
        line = one_line_error(err)
        assert "no dimension names" in line and str(tree) in line, line
        assert line.endswith(f"or choose an output.store outside {tree}"), line
        assert "name its dimensions with output.dimension_names (one name per dimension, " in line
        assert "such as ['dim_0', 'dim_1'])" in line, line
        assert "output.array" not in line, line
        assert file_states(tree) == before
    assert set(_opens_as_a_tree(tree).groups) == {"/"}
    out = {"store": str(tmp_path / "elsewhere.zarr"), "array": array}  # as the line says
    cfg.write_text(
        yaml.safe_dump(
            {"input": {"store": str(plain)}, "output": out, "stages": STAGES, "cluster": _THREADS}
        )
    )
    rc, _, err = cli("run", cfg, "--progress", "none")
    assert rc == 0, err
    assert set(_opens_as_a_tree(tree).groups) == {"/"}
    # the other fix the line says: names for its dimensions, written where it was refused
    out = {"store": str(tmp_path / store), "array": array, "dimension_names": ["r", "c"]}
    cfg.write_text(
        yaml.safe_dump(
            {"input": {"store": str(plain)}, "output": out, "stages": STAGES, "cluster": _THREADS}
        )
    )
    rc, _, err = cli("run", cfg, "--progress", "none")
    assert rc == 0, err
    within = "/".join(p for p in (store.removeprefix("tree.zarr").strip("/"), array) if p)
    assert zarr.open_array(str(tree), path=within).metadata.dimension_names == ("r", "c")
    opened = _opens_as_a_tree(tree)
    assert opened[within].dims == ("r", "c") and opened[within].shape == (4, 5)
    rc, _, err = cli("verify", cfg)
    assert rc == 0, err


def test_an_array_without_dimension_names_is_written_below_a_plain_group_or_a_v2_tree(
    tmp_path: Path,
) -> None:
    """A plain array (no dimension names) below a Zarr group with no xarray content (no member
    has dimension names), and below a Zarr v2 xarray tree (whose readers do not list the v3
    output: the tree still opens), is written as before."""
    plain, tree = _plain_and_tree(tmp_path, zarr_format=2)
    group = tmp_path / "group.zarr"
    zarr.create_array(str(group / "q"), shape=(3,), chunks=(3,), dtype="i4")[:] = 1
    zarr.open_group(str(group), mode="a")  # the root group
    for where in (group / "a" / "b", tree / "a" / "b"):
        cfg = {
            "input": {"store": str(plain)},
            "output": {"store": str(where)},
            "stages": STAGES,
            "cluster": _THREADS,
        }
        assert pipeline.run(cfg).status == "complete"
    assert set(_opens_as_a_tree(tree).groups) == {"/", "/a"}
    with np.errstate(all="ignore"):
        want = apply_chain(
            plan_chain(parse_config(cfg).stage_specs(), np.dtype("f4")),
            zarr.open_array(str(plain))[:],
        )
    assert same_bits(zarr.open_array(str(group / "a" / "b"))[:], want)


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_plan_and_dry_run_give_the_runs_warning_of_an_output_a_v2_group_does_not_list(
    tmp_path: Path, cli, zarr_format: int
) -> None:
    """``plan`` and ``run --dry-run`` of an output store below a Zarr v2 group said nothing of
    what the run then warned (its v2 readers do not list the output, h86g): they give the
    run's own warning line, as the run does; below a v3 group none of them gives one, nor do
    they for a complete output the run leaves as it is. The input has dimension names, which
    a v3 tree takes."""
    _, tree = _plain_and_tree(tmp_path, zarr_format=zarr_format)
    plain = tmp_path / "named.zarr"  # dimension names of its own: no tree refuses it
    make_array(plain, np.ones((4, 5), np.float32), (4, 5), dimension_names=["r", "c"])
    cfg = tmp_path / "run.yaml"
    out = {"store": str(tree / "a" / "b")}
    cfg.write_text(
        yaml.safe_dump({"input": {"store": str(plain)}, "output": out, "stages": STAGES})
    )

    def warned(*args: Any) -> list[str]:
        rc, _, err = cli(*args)
        assert rc == 0, err
        return [w for w in err.splitlines() if w.startswith("warning:")]

    said = [warned(*a) for a in (("plan", cfg), ("run", cfg, "--dry-run"))]
    ran = warned("run", cfg, "--progress", "none")
    if zarr_format == 3:
        assert said == [[], []] and ran == [], (said, ran)
    else:
        assert len(ran) == 1 and "inside the Zarr v2 group" in ran[0], ran
        assert said == [ran, ran], (said, ran)
    assert warned("plan", cfg) == [] and warned("run", cfg, "--dry-run", "--resume") == []
    assert warned("run", cfg, "--dry-run", "--overwrite") == ran


@pytest.mark.parametrize(("store", "array"), [("tree.zarr/a/b", ""), ("tree.zarr", "g/b")])
def test_an_array_alone_of_another_size_below_an_xarray_tree_s_group_is_refused(
    tmp_path: Path, cli, store: str, array: str
) -> None:
    """An array alone with the dimension name ``x`` (zarr-python's ``dimension_names``) of 5
    elements, written below the root of a tree whose ``x`` has 6: written, exit 0, and
    ``xr.open_datatree`` of the tree then failed ("not aligned with its parents"); only a
    Dataset output had been held to the groups above it. Refused by plan and run in one
    line naming the group, the dimension and a fix that works (an output.store outside the
    tree), nothing written; one of 6 elements is written there, and the tree opens."""
    _, tree = _plain_and_tree(tmp_path)
    named = tmp_path / "named.zarr"
    cfg = tmp_path / "run.yaml"
    out = {"store": str(tmp_path / store), "array": array}
    run = {"input": {"store": str(named)}, "output": out, "stages": STAGES, "cluster": _THREADS}
    cfg.write_text(yaml.safe_dump(run))
    make_array(named, np.ones(5, np.float32), (5,), dimension_names=["x"])
    before = file_states(tree)
    for args in (("plan", cfg), ("run", cfg, "--progress", "none")):
        rc, _, err = cli(*args)
        assert rc == 1, err
        line = one_line_error(err)
        assert f"the group {tree} above it has the dimension 'x' of 6 elements" in line, line
        assert line.endswith(f"choose an output.store outside {tree}"), line
        assert file_states(tree) == before
    elsewhere = {**run, "output": {"store": str(tmp_path / "elsewhere.zarr"), "array": array}}
    assert pipeline.run(elsewhere).status == "complete"  # as the line says
    make_array(named, np.ones(6, np.float32), (6,), dimension_names=["x"])
    rc, _, err = cli("run", cfg, "--progress", "none")
    assert rc == 0, err
    assert set(_opens_as_a_tree(tree).groups) == {"/", "/a" if array == "" else "/g"}


@pytest.mark.parametrize(("store", "array"), [("tree.zarr/a", "w"), ("tree.zarr", "a/w")])
def test_an_array_alone_of_another_size_above_an_xarray_tree_s_group_is_refused(
    tmp_path: Path, cli, store: str, array: str
) -> None:
    """An array alone with the dimension names ``y, x`` (x of 5) written into the group ``a``
    of a tree whose group ``a/b/c`` below it has ``x`` of 3 (a Dataset's variable, no
    coordinate): written, exit 0, and ``xr.open_datatree`` of the tree then failed ("not
    aligned with its parents"; h87g: only the groups above had been checked). Refused by plan
    and run in one line naming the group below, the dimension and a fix that works, nothing
    written; one whose x has 3 elements is written there, and the tree opens."""
    tree = tmp_path / "tree.zarr"
    below = xr.Dataset({"t": (("y", "x"), np.zeros((2, 3)))})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        xr.DataTree.from_dict({"/": xr.Dataset(), "/a/b/c": below}).to_zarr(str(tree))
    named = tmp_path / "named.zarr"
    cfg = tmp_path / "run.yaml"
    out = {"store": str(tmp_path / store), "array": array}
    run = {"input": {"store": str(named)}, "output": out, "stages": STAGES, "cluster": _THREADS}
    cfg.write_text(yaml.safe_dump(run))
    make_array(named, np.ones((2, 5), np.float32), (2, 5), dimension_names=["y", "x"])
    before = file_states(tree)
    for args in (("plan", cfg), ("run", cfg, "--progress", "none")):
        rc, _, err = cli(*args)
        assert rc == 1, err
        line = one_line_error(err)
        assert f"the group {tree}/a/b/c below it has the dimension 'x' of 3 elements" in line
        assert line.endswith(f"choose an output.store outside {tree}"), line
        assert file_states(tree) == before
    elsewhere = {**run, "output": {"store": str(tmp_path / "elsewhere.zarr"), "array": "w"}}
    assert pipeline.run(elsewhere).status == "complete"  # as the line says
    make_array(named, np.ones((2, 3), np.float32), (2, 3), dimension_names=["y", "x"])
    rc, _, err = cli("run", cfg, "--progress", "none")
    assert rc == 0, err
    assert "w" in _opens_as_a_tree(tree)["a"].to_dataset().data_vars


def test_an_xarray_tree_named_as_the_output_names_a_new_array_in_it_only_where_one_fits(
    tmp_path: Path, cli
) -> None:
    """``output.store: tree.zarr`` (a group) is refused as no array; its fix "name a new array
    in it" led a plain array (no dimension names) to the next refusal (it would close the
    tree, h86g): for it that fix is named with ``output.dimension_names`` (h88b), which
    following writes it there; for an array with dimension names it is named alone, and
    following it writes the array, the tree opening. An empty group of the tree named as the
    output (``g``, holding the group ``h``) is held to the whole tree, as the refusal is (its
    own hierarchy alone had been walked, and the fix named without the names, which the
    refusal then refused)."""
    plain, tree = _plain_and_tree(tmp_path)
    zarr.open_group(str(tree), mode="a").create_group("g/h")  # a group that holds a group
    named = tmp_path / "named.zarr"
    make_array(named, np.ones((4, 5), np.float32), (4, 5), dimension_names=["r", "c"])
    cfg = tmp_path / "run.yaml"
    for src, store, plain_array in (
        (plain, tree, True),
        (plain, tree / "g", True),
        (named, tree, False),
        (named, tree / "g", False),
    ):
        run = {"input": {"store": str(src)}, "output": {"store": str(store)}, "stages": STAGES}
        cfg.write_text(yaml.safe_dump({**run, "cluster": _THREADS}))
        rc, _, err = cli("run", cfg, "--progress", "none")
        line = one_line_error(err)
        assert rc == 1 and "is a Zarr group" in line, line
        assert "name a new array in it (output.array: <group>/<name>)" in line, line
        with_names = "<group>/<name>) with output.dimension_names (one name per dimension, such"
        assert (with_names in line) is plain_array, line
        assert "choose another output.store" in line, line
        if plain_array:  # as the line says: a new array, with names
            out = {"store": str(store), "array": "q", "dimension_names": ["y", "x2"]}
            cfg.write_text(yaml.safe_dump({**run, "output": out, "cluster": _THREADS}))
            rc, _, err = cli("run", cfg, "--progress", "none")
            assert rc == 0, err
    cfg.write_text(yaml.safe_dump({**run, "output": {"store": str(tree), "array": "b"}}))
    rc, _, err = cli("run", cfg, "--progress", "none")
    assert rc == 0, err
    opened = _opens_as_a_tree(tree)
    assert {"b", "q"} <= set(opened.to_dataset().data_vars)
    assert opened["q"].dims == ("y", "x2") and opened["g"]["q"].dims == ("y", "x2")


def test_output_dimension_names_that_cannot_name_the_output_are_refused_in_one_line(
    tmp_path: Path, cli
) -> None:
    """``output.dimension_names`` (h88b) in another number than the output's dimensions, with
    a name twice or empty, or for a Dataset variable output (whose dimensions are its input
    variable's, on which its coordinates are written) is refused by plan and run in one line
    naming the key and the fix, before anything is written; for that Dataset variable
    written alone (``output.array: ''``) the names are written in place of the input's."""
    plain, tree = _plain_and_tree(tmp_path)
    cfg = tmp_path / "run.yaml"
    out = tmp_path / "out.zarr"
    cases = [
        (
            plain,
            "",
            ["r"],
            "gives 1 name, but the output has 2 dimensions ([4, 5]): give one "
            "name per dimension, such as ['dim_0', 'dim_1']",
        ),
        (plain, "", ["r", "c", "d"], "gives 3 names, but the output has 2 dimensions"),
        (plain, "", ["r", "r"], "names the dimension 'r' more than once"),
        (plain, "", ["r", " "], "holds an empty name"),
        (plain, "", [], "is empty: give one name per dimension"),  # h88e: [] had passed
        (
            tree,
            "p",
            ["t"],
            "names the dimensions of an output written as the variable 'p' of a "
            "Dataset, whose dimensions are its input's ['x']",
        ),
    ]
    for src, array, names, said in cases:
        given = {"store": str(out), "dimension_names": names}
        run = {
            "input": {"store": str(src), "array": array},
            "output": given,
            "stages": STAGES,
            "cluster": _THREADS,
        }
        cfg.write_text(yaml.safe_dump(run))
        for args in (("plan", cfg), ("run", cfg, "--progress", "none")):
            rc, _, err = cli(*args)
            line = one_line_error(err)
            assert rc == 1 and "output.dimension_names" in line and said in line, (names, line)
            assert not out.exists(), (names, args)
    # an input the run generates first is held to its shape before it is generated
    made = {
        "store": str(tmp_path / "gen.zarr"),
        "generate": {"shape": [8, 6], "when_missing": True},
    }
    run = {"input": made, "output": {"store": str(out), "dimension_names": ["a"]}}
    with pytest.raises(ConfigError, match="gives 1 name, but the output has 2 dimensions"):
        pipeline.run({**run, "stages": STAGES, "cluster": _THREADS})
    assert not out.exists() and not (tmp_path / "gen.zarr").exists()
    alone = {"store": str(out), "array": "", "dimension_names": ["t"]}
    run = {"input": {"store": str(tree), "array": "p"}, "output": alone, "stages": STAGES}
    assert pipeline.run({**run, "cluster": _THREADS}).status == "complete"
    assert zarr.open_array(str(out)).metadata.dimension_names == ("t",)


def test_a_resume_with_other_output_dimension_names_is_refused_as_a_changed_config(
    tmp_path: Path, cli
) -> None:
    """``output.dimension_names`` is in the run's identity (h88b): a resume with other names,
    or without them, is refused as a changed config, naming the names, and nothing of the
    output changes; the same names find it complete. `verify` with other names says the
    output is another config's, naming both (h88e: it had said "edited since the run")."""
    plain, _ = _plain_and_tree(tmp_path)
    out = tmp_path / "out.zarr"
    run = {"input": {"store": str(plain)}, "stages": STAGES, "cluster": _THREADS}
    given = {**run, "output": {"store": str(out), "dimension_names": ["r", "c"]}}
    assert pipeline.run(given).status == "complete"
    before = file_states(out)
    for names, said in (
        (["u", "v"], "output.dimension_names changed (was ['r', 'c'], now ['u', 'v']"),
        (None, "output.dimension_names changed (was ['r', 'c'], now not given"),
    ):
        other = (
            {"store": str(out)} if names is None else {"store": str(out), "dimension_names": names}
        )
        with pytest.raises(OutputError) as e:
            pipeline.run({**run, "output": other}, resume=True)
        assert said in str(e.value) and len(str(e.value).splitlines()) == 1, e.value
        assert file_states(out) == before
    assert pipeline.run(given, resume=True).status == "complete (nothing to do)"
    assert zarr.open_array(str(out)).metadata.dimension_names == ("r", "c")
    cfg = tmp_path / "other.yaml"
    cfg.write_text(
        yaml.safe_dump({**run, "output": {"store": str(out), "dimension_names": ["u", "v"]}})
    )
    rc, out_text, err = cli("verify", cfg)
    line = one_line_error(err)
    assert rc == 1 and "edited" not in line, out_text + err
    assert (
        "the dimension names ['r', 'c'] (this config's output.dimension_names: ['u', 'v'])" in line
    )
    assert "another config's output" in line, line


def test_output_dimension_names_equal_to_the_input_s_are_the_run_without_them(
    tmp_path: Path,
) -> None:
    """``output.dimension_names`` equal to the input's own names writes the output a run
    without them writes: a resume of either with the other finds it complete (h88e: it had
    been refused, "output.dimension_names changed ... the output's dimension names would
    differ"); other names are still refused."""
    named = tmp_path / "named.zarr"
    arr = zarr.create_array(
        str(named), shape=(4, 5), chunks=(2, 5), dtype="f4", dimension_names=("y", "x")
    )
    arr[:] = np.arange(20, dtype="f4").reshape(4, 5)
    out = tmp_path / "out.zarr"
    run = {"input": {"store": str(named)}, "stages": STAGES, "cluster": _THREADS}
    plain = {**run, "output": {"store": str(out)}}
    same = {**run, "output": {"store": str(out), "dimension_names": ["y", "x"]}}
    assert pipeline.run(plain).status == "complete"
    assert pipeline.run(same, resume=True).status == "complete (nothing to do)"
    assert pipeline.run(same, overwrite=True).status == "complete"
    assert pipeline.run(plain, resume=True).status == "complete (nothing to do)"
    assert zarr.open_array(str(out)).metadata.dimension_names == ("y", "x")
    with pytest.raises(OutputError, match=r"output\.dimension_names changed"):
        pipeline.run(
            {**run, "output": {"store": str(out), "dimension_names": ["a", "b"]}}, resume=True
        )


def test_output_dimension_names_misaligned_with_an_xarray_tree_name_both_fixes(
    tmp_path: Path, cli
) -> None:
    """Names given as ``output.dimension_names`` are held to the tree's alignment as an
    input's are (:func:`_refuse_misaligned_alone`): ``x`` of 5 below a root whose ``x`` has
    6 is refused in one line that names other names as a fix too; other names write it."""
    _, tree = _plain_and_tree(tmp_path)
    five = tmp_path / "five.zarr"
    zarr.create_array(str(five), shape=(5,), chunks=(5,), dtype="f4")[:] = 1
    cfg = tmp_path / "run.yaml"
    out = {"store": str(tree / "a" / "b"), "dimension_names": ["x"]}
    run = {"input": {"store": str(five)}, "output": out, "stages": STAGES, "cluster": _THREADS}
    cfg.write_text(yaml.safe_dump(run))
    before = file_states(tree)
    rc, _, err = cli("run", cfg, "--progress", "none")
    line = one_line_error(err)
    assert rc == 1 and f"the group {tree} above it has the dimension 'x' of 6" in line, line
    assert line.endswith(
        f"give other output.dimension_names, or choose an output.store outside {tree}"
    ), line
    assert file_states(tree) == before
    cfg.write_text(yaml.safe_dump({**run, "output": {**out, "dimension_names": ["w"]}}))
    rc, _, err = cli("run", cfg, "--progress", "none")
    assert rc == 0, err
    assert _opens_as_a_tree(tree)["a/b"].dims == ("w",)
