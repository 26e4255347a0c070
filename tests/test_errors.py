"""Bad input: each problem is refused before any data is written, with one line on stderr that
names the problem and the fix (no traceback unless --debug), and a non-zero exit status. The
refusal is an error of the type that says what kind of problem it is, carrying its data
(:mod:`pipeline.errors`): the tests read those, and of the line only the fix it names.

Every case runs the real CLI on real files: YAML written as a user would, Zarr stores of the
wrong kind created with Zarr itself, a scheduler address nobody listens on, file systems that
cannot be written.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import json
import re
import subprocess
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
import zarr

import pipeline.running.runner  # imported up front: the timed cases time the run only
from pipeline.devices import gpu_status
from pipeline.errors import (
    ChunkError,
    ClusterError,
    ConfigError,
    InputError,
    OutputError,
    PipelineError,
    PlanError,
)
from pipeline.store.codecs import v2_dtype
from tests.conftest import STAGES, make_array, reference, write_config
from tests.faultkit import file_states, one_line_error, refused, run_python


@dataclass
class Case:
    """A broken set-up: ``make(tmp)`` writes the files and returns the config's path."""

    make: Callable[[Path], Path]
    error: type[PipelineError]
    fields: dict[str, Any]
    """the error's fields (a callable value is called with the test's directory)"""
    fix: list[str] = field(default_factory=list)
    """what the line says to do, word for word"""
    args: list[str] = field(default_factory=list)


def _in(name: str) -> Callable[[Path], str]:
    """The path of ``name`` in the test's directory, as the error's field gives it."""
    return lambda tmp: str(tmp / name)


def _input(tmp: Path, dtype: str = "float32", shape: tuple = (20, 30)) -> Path:
    x = np.arange(np.prod(shape)).reshape(shape).astype(dtype)
    make_array(tmp / "in.zarr", x, (5, shape[1]))
    return tmp / "in.zarr"


def _config(tmp: Path, **sections) -> Path:
    if not (tmp / "in.zarr").exists():
        _input(tmp)
    return write_config(tmp, tmp / "in.zarr", tmp / "out.zarr", **sections)


def _yaml(text: str) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        _input(tmp)
        p = tmp / "run.yaml"
        p.write_text(text.format(tmp=tmp))
        return p

    return make


def _latin1_yaml(tmp: Path) -> Path:
    """A config saved in Latin-1 (a comment with an accented letter on its 6th line)."""
    _input(tmp)
    p = tmp / "run.yaml"
    text = (BASE + SEED).format(tmp=tmp) + "# donn\xe9es de l'\xe9t\xe9\n"
    p.write_bytes(text.encode("latin-1"))
    return p


def _group_input(tmp: Path) -> Path:
    g = zarr.open_group(str(tmp / "in.zarr"), mode="w")
    g.create_array("fields/temp", shape=(10, 10), chunks=(5, 10), dtype="f4")[...] = 1
    return tmp / "in.zarr"


def _group_input_asking(array: str) -> Any:
    """A case's set-up: :func:`_group_input`, and a config whose ``input.array`` is ``array``."""

    def make(tmp: Path) -> Path:
        _group_input(tmp)
        return write_config(
            tmp,
            tmp / "in.zarr",
            tmp / "out.zarr",
            input={"store": str(tmp / "in.zarr"), "array": array},
        )

    return make


def _config_folder(tmp: Path) -> Path:
    """A folder, ``configs``, holding a config ``run.yaml``: what a command is given for it."""
    (tmp / "configs").mkdir()
    _config(tmp, name="configs/run.yaml")
    return tmp / "configs"


def _plain_folder_input(store: str, array: str) -> Callable[[Path], Path]:
    """A config reading ``array`` of ``in.zarr/STORE``, where ``in.zarr`` is a Zarr group
    holding a folder of no Zarr metadata, ``notes`` (a text file), and one, ``plain``, that
    holds an array zarr-python wrote (``plain/temp``)."""

    def make(tmp: Path) -> Path:
        _group_input(tmp)
        (tmp / "in.zarr" / "notes").mkdir()
        (tmp / "in.zarr" / "notes" / "a.txt").write_text("mine")
        make_array(tmp / "in.zarr" / "plain" / "temp", np.ones((4, 4), np.float32), (4, 4))
        return write_config(tmp, tmp / "in.zarr" / store, tmp / "out.zarr", input={"array": array})

    return make


def _v2_without_zarray(array: str) -> Callable[[Path], Path]:
    """A config reading a Zarr v2 array whose ``.zarray`` was deleted, its ``.zattrs`` and
    chunks left: ``array`` '' an array zarr-python wrote at the store's root (it writes a
    ``.zattrs`` for every v2 array), else that variable of a Dataset xarray wrote (whose
    ``.zattrs`` holds ``_ARRAY_DIMENSIONS``; no consolidated metadata to list it)."""

    def make(tmp: Path) -> Path:
        x = np.arange(64, dtype=np.float32).reshape(8, 8)
        if array:
            import xarray as xr

            ds = xr.Dataset({array: (("y", "x"), x)}, coords={"y": np.arange(8)})
            ds.to_zarr(str(tmp / "in.zarr"), zarr_format=2, consolidated=False, mode="w")
        else:
            make_array(tmp / "in.zarr", x, (4, 4), zarr_format=2, attributes={"units": "K"})
        folder = tmp / "in.zarr" / array
        (folder / ".zarray").unlink()
        assert (folder / ".zattrs").exists()
        return write_config(tmp, tmp / "in.zarr", tmp / "out.zarr", input={"array": array})

    return make


def _file_input(name: str, content: bytes, array: str = "") -> Callable[[Path], Path]:
    """A config whose input.store is the plain file ``name`` holding ``content``: what people
    point it at that is no Zarr store (a netCDF file, a text file), ``array`` its input.array
    (a netCDF variable's name, as a user of xarray names it)."""

    def make(tmp: Path) -> Path:
        (tmp / name).write_bytes(content)
        return write_config(tmp, tmp / name, tmp / "out.zarr", input={"array": array})

    return make


#: An empty netCDF classic file, by the format's spec: the magic number and version, no
#: records, and absent dimension, attribute and variable lists.
NETCDF_CLASSIC = b"CDF\x01" + bytes(4) + bytes(8) * 3


def _dtype_input(kind: str) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        if kind == "bool":
            data = np.arange(100) % 3 == 0
        elif kind == "complex":
            data = np.arange(100).astype(np.complex64) * 1j
        else:
            data = np.array([f"s{i}" for i in range(100)])
        dtype = str if kind == "string" else data.dtype
        arr = zarr.create_array(store=str(tmp / "in.zarr"), shape=(100,), dtype=dtype, chunks=(10,))
        arr[...] = data
        return write_config(tmp, tmp / "in.zarr", tmp / "out.zarr")

    return make


def _edited_input(tmp: Path, **changes: Any) -> None:
    """The test's input, its ``zarr.json`` then edited by hand (``changes``), as a user edits
    a dtype after the chunks were written."""
    doc = _input(tmp) / "zarr.json"
    doc.write_text(json.dumps({**json.loads(doc.read_text()), **changes}))


BASE = (
    "input: {{store: {tmp}/in.zarr}}\n"
    "output: {{store: {tmp}/out.zarr}}\n"
    "backend: cpu\n"
    "cluster: {{workers: 1, dashboard: ''}}\n"
)
SEED = "stages: [{{op: multiply, factor: 5}}, {{op: square}}, {{op: add}}]\n"

CASES: dict[str, Case] = {
    "malformed-yaml": Case(  # said at the line of the '[' to close (h72t), not at line 6
        _yaml(BASE + "stages: [{{op: multiply, factor: 5}}\n  - op: square\n"),
        ConfigError,
        {"file": _in("run.yaml"), "line": 5, "key": None},
        ["the '[' at line 5 ('stages: [{op: multiply, factor: 5}') is not closed by ']'"],
    ),
    "wrong-closing-bracket": Case(  # it had said "the '{' at line 5 ... is not closed by '}'"
        _yaml(BASE + "stages: [}}\n"),  # of a '[' whose flow node met the '}'
        ConfigError,
        {"file": _in("run.yaml"), "line": 5, "key": None},
        ["malformed YAML: expected the node content, but found '}'"],
    ),
    "two-documents": Case(  # it had said "malformed YAML: but found another document"
        _yaml(BASE + SEED + "---\ncluster: {{workers: 2}}\n"),
        ConfigError,
        {"file": _in("run.yaml"), "line": 6, "key": None},
        ["a second YAML document starts here", "delete the '---' line"],
    ),
    "not-utf8": Case(
        _latin1_yaml,
        ConfigError,
        {"file": _in("run.yaml"), "line": 6, "key": None},
        ["save it as UTF-8"],
    ),
    "unknown-key": Case(
        _yaml(BASE + SEED + "chunkin: {{block: auto}}\n"),
        ConfigError,
        {"file": _in("run.yaml"), "line": 6, "key": "chunkin"},
        ["did you mean 'chunking'?"],
    ),
    "unknown-nested-key": Case(
        _yaml(BASE.replace("workers: 1", "wrokers: 1") + SEED),
        ConfigError,
        {"file": _in("run.yaml"), "line": 4, "key": "cluster.wrokers"},
        ["did you mean 'workers'?"],
    ),
    "missing-key": Case(_yaml(BASE), ConfigError, {"key": "stages"}),
    **{
        f"removed-{key}": Case(
            _yaml(BASE.replace(where, f"{where}, {key}: {value}") + SEED),
            ConfigError,
            {"file": _in("run.yaml"), "line": line, "key": f"{section}.{key}"},
            ["removed in this version"],
        )
        for section, where, line, key, value in (
            ("output", "out.zarr", 2, "spare_files", "auto"),
            ("cluster", "workers: 1", 4, "gpu_codec_slots", 2),
            ("cluster", "workers: 1", 4, "host_encode_share", 0.25),
            ("cluster", "workers: 1", 4, "memory_pool", "rmm"),
        )
    },
    "wrong-type": Case(
        _yaml(BASE.replace("workers: 1", "workers: two") + SEED),
        ConfigError,
        {"file": _in("run.yaml"), "line": 4, "key": "cluster.workers"},
    ),
    "bool-for-a-number": Case(  # pydantic's lax mode ran 1 worker (helper-102)
        _yaml(BASE.replace("workers: 1", "workers: true") + SEED),
        ConfigError,
        {"file": _in("run.yaml"), "line": 4, "key": "cluster.workers"},
        ["cluster.workers: must be a whole number from 1 to 65536, not true/false"],
    ),
    "bool-in-a-list-of-numbers": Case(
        _yaml(BASE + "chunking: {{block: [5, false]}}\n" + SEED),
        ConfigError,
        {"file": _in("run.yaml"), "line": 5, "key": "chunking.block.1"},
        ["chunking.block.1: must be a whole number from 1 to 1099511627776, not true/false"],
    ),
    "stages-as-text": Case(  # had been worded as if no stage were given
        _yaml(BASE + "stages: square\n"),
        ConfigError,
        {"file": _in("run.yaml"), "line": 5, "key": "stages"},
        ["stages: must be a list of stages", "'- op: square'", "stages: [{op: square}]"],
    ),
    "a-number-for-a-list": Case(
        _yaml(BASE + "chunking: {{block: 5}}\n" + SEED),
        ConfigError,
        {"file": _in("run.yaml"), "line": 5, "key": "chunking.block"},
        ["write it in brackets, block: [5]"],
    ),
    "out-of-range": Case(
        lambda tmp: _config(tmp, output={"store": str(tmp / "out.zarr"), "codec": {"level": 99}}),
        ConfigError,
        {"key": "output.codec.level"},
        ["output.codec.level: must be a whole number from -7 to 22 (got 99)"],
    ),
    "bad-fraction": Case(
        lambda tmp: _config(tmp, cluster={"host_memory_limit": 1.5}),
        ConfigError,
        {"key": "cluster.host_memory_limit"},
        ["a fraction must be in (0, 1]"],
    ),
    "unknown-stage": Case(
        _yaml(BASE + "stages: [{{op: cube}}]\n"),
        ConfigError,
        {"line": 5, "key": "stages.0"},
        ["known stages: add, multiply, square"],
    ),
    "no-stages": Case(  # pydantic's "Tuple should have at least 1 item" (new-user review)
        _yaml(BASE + "stages: []\n"),
        ConfigError,
        {"line": 5, "key": "stages"},
        ["stages: give at least one stage, such as '- op: square'; known stages: add, multiply"],
    ),
    "stages-without-value": Case(
        _yaml(BASE + "stages:\n"),
        ConfigError,
        {"line": 5, "key": "stages"},
        ["stages: give at least one stage, such as '- op: square'"],
    ),
    "bad-stage-parameter-name": Case(
        _yaml(BASE + "stages: [{{op: multiply, factr: 5}}]\n"),
        ConfigError,
        {"line": 5, "key": "stages.0.factr"},
        ["did you mean 'factor'?"],
    ),
    "bad-stage-parameter-value": Case(
        _yaml(BASE + "stages: [{{op: multiply, factor: five}}]\n"),
        ConfigError,
        {"line": 5, "key": "stages.0.factor"},
    ),
    "missing-stage-parameter": Case(
        _yaml(BASE + "stages: [{{op: multiply}}]\n"),
        ConfigError,
        {"line": 5, "key": "stages.0.factor"},
    ),
    "store-without-value": Case(  # "input.store: Input should be a valid string (got None)"
        _yaml(
            "input:\n  store:\noutput: {{store: {tmp}/out.zarr}}\nbackend: cpu\n"
            "cluster: {{workers: 1, dashboard: ''}}\n" + SEED
        ),
        ConfigError,
        {"line": 2, "key": "input.store"},
        ["input.store: has no value (null: ", "give the path or fsspec URL"],
    ),
    "shards-without-value": Case(  # "must be a list ... or auto or none (got None)" (h71u)
        _yaml(
            "input: {{store: {tmp}/in.zarr}}\noutput:\n  store: {tmp}/out.zarr\n  shards:\n"
            "backend: cpu\ncluster: {{workers: 1, dashboard: ''}}\n" + SEED
        ),
        ConfigError,
        {"line": 4, "key": "output.shards"},
        [
            "output.shards: has no value (null: nothing after its colon, or ~, in YAML; None in "
            "Python), where it takes a list of whole numbers from 1 to 1099511627776 or auto or "
            "none (none is the text 'none', not null)"
        ],
    ),
    "boolean-without-value": Case(  # pydantic's "Input should be a valid boolean (got None)"
        _yaml(
            "input: {{store: {tmp}/in.zarr}}\noutput:\n  store: {tmp}/out.zarr\n  overwrite:\n"
            "backend: cpu\ncluster: {{workers: 1, dashboard: ''}}\n" + SEED
        ),
        ConfigError,
        {"line": 4, "key": "output.overwrite"},
        ["output.overwrite: has no value (null: ", "where it takes true or false"],
    ),
    "boolean-of-another-word": Case(  # "Input should be a valid boolean, unable to interpret"
        _yaml(
            "input: {{store: {tmp}/in.zarr, mask_and_scale: maybe}}\n"
            "output: {{store: {tmp}/out.zarr}}\nbackend: cpu\n"
            "cluster: {{workers: 1, dashboard: ''}}\n" + SEED
        ),
        ConfigError,
        {"line": 1, "key": "input.mask_and_scale"},
        ["input.mask_and_scale: must be true or false (got 'maybe')"],
    ),
    "scheduler-without-value": Case(  # "... not a NoneType (got None)"
        _yaml(BASE.replace("workers: 1", "workers: 1, scheduler: ") + SEED),
        ConfigError,
        {"line": 4, "key": "cluster.scheduler"},
        [
            "cluster.scheduler: has no value (null: nothing after its colon, or ~, in YAML; None "
            "in Python), where it takes text: 'local' starts a cluster; 'tcp://host:8786' joins"
        ],
    ),
    "stage-scalar-without-value": Case(  # had been a TypeError of the plan's NumPy call
        _yaml(BASE + "stages: [{{op: multiply, factor: }}]\n"),
        ConfigError,
        {"line": 5, "key": "stages.0.factor"},
        ["stages.0.factor: has no value (null: ", "give a number"],
    ),
    "stage-scalar-below-float64": Case(  # had been the factor 0.0: every element times 0
        _yaml(BASE + "stages: [{{op: multiply, factor: 1e-400}}]\n"),
        ConfigError,
        {"line": 5, "key": "stages.0.factor"},
        ["stages.0.factor: must be a finite number float64 holds (", "(got 1e-400)"],
    ),
    "stage-scalar-past-float64": Case(  # its number as written, not Decimal('-1E+400') (h66c)
        _yaml(BASE + "stages: [{{op: add, value: -1e400}}]\n"),
        ConfigError,
        {"line": 5, "key": "stages.0.value"},
        ["stages.0.value: must be a finite number float64 holds (", "(got -1e400)"],
    ),
    "typed-stage-scalar-below-float64": Case(  # PyYAML's float: 0.0 too
        _yaml(BASE + "stages: [{{op: add, value: {{dtype: float64, value: -1.5e-400}}}}]\n"),
        ConfigError,
        {"line": 5, "key": "stages.0.value"},
        ["stages.0.value: must be a finite number float64 holds ("],
    ),
    "timeout-below-float64": Case(  # had said "must be greater than 0" of the 1e-400 written
        _yaml(BASE.replace("dashboard: ''", "dashboard: '', timeout: 1e-400") + SEED),
        ConfigError,
        {"line": 4, "key": "cluster.timeout"},
        ["cluster.timeout: is nearer 0 than float64 holds (", "(got '1e-400')"],
    ),
    "size-below-float64": Case(  # PyYAML's float 0.0: "greater than 0 (got 0.0)"
        _yaml(BASE + SEED + "chunking: {{target_bytes: 1.0e-400}}\n"),
        ConfigError,
        {"line": 6, "key": "chunking.target_bytes"},
        ["chunking.target_bytes: is nearer 0 than float64 holds ("],
    ),
    "fraction-below-float64": Case(  # had said "a fraction must be in (0, 1]"
        _yaml(BASE.replace("dashboard: ''", "dashboard: '', host_memory_limit: 1.5e-400") + SEED),
        ConfigError,
        {"line": 4, "key": "cluster.host_memory_limit"},
        ["cluster.host_memory_limit: is nearer 0 than float64 holds ("],
    ),
    "stage-whole-scalar-past-float64": Case(  # had been refused only by the plan (h67b)
        _yaml(BASE + "stages: [{{op: multiply, factor: 1" + "0" * 400 + "}}]\n"),
        ConfigError,
        {"line": 5, "key": "stages.0.factor"},
        ["stages.0.factor: must be a finite number float64 holds (", "(got 1.000000e400)"],
    ),
    "stage-scalar-of-more-digits-than-python-reads": Case(  # PyYAML's ValueError of int()
        _yaml(BASE + "stages: [{{op: add, value: -1" + "0" * 5000 + "}}]\n"),
        ConfigError,
        {"line": 5, "key": "stages.0.value"},
        ["stages.0.value: must be a finite number float64 holds (", "(got -1.000000e5000)"],
    ),
    "size-whole-past-float64": Case(  # the plan's division: a bare OverflowError
        _yaml(
            BASE.replace("dashboard: ''", "dashboard: '', host_memory_limit: 1" + "0" * 400) + SEED
        ),
        ConfigError,
        {"line": 4, "key": "cluster.host_memory_limit"},
        ["cluster.host_memory_limit: must be a finite number float64 holds ("],
    ),
    "size-text-past-float64": Case(  # dask's int() of inf: a bare OverflowError
        _yaml(BASE + SEED + "chunking: {{target_bytes: 1e300 GiB}}\n"),
        ConfigError,
        {"line": 6, "key": "chunking.target_bytes"},
        ["chunking.target_bytes: must be a finite number float64 holds (", "(got '1e300 GiB')"],
    ),
    "seed-past-64-bits": Case(  # its zarr.json attribute; 4301 digits failed writing it
        _yaml(
            BASE.replace(
                "in.zarr}}", "in2.zarr, generate: {{shape: [4, 4], seed: 1" + "0" * 20 + "}}}}"
            )
            + SEED
        ),
        ConfigError,
        {"line": 1, "key": "input.generate.seed"},
        ["input.generate.seed: must be a whole number from 0 to 18446744073709551615"],
    ),
    "add-value-without-value": Case(  # had been taken as left out: x + x, with exit 0
        _yaml(BASE + "stages:\n  - op: add\n    value:\n"),
        ConfigError,
        {"line": 7, "key": "stages.0.value"},
        ["stages.0.value: has no value (null: ", "or leave value out to add the array to itself"],
    ),
    "output-array-without-value": Case(  # had been taken as left out: a Dataset variable
        _yaml(BASE.replace("out.zarr}}", "out.zarr, array: }}") + SEED),
        ConfigError,
        {"line": 2, "key": "output.array"},
        ["output.array: has no value (null: ", "'' for the root, or leave array out"],
    ),
    "empty-input-store": Case(  # '' had been the folder the command runs in
        _yaml(
            "input: {{store: ''}}\noutput: {{store: {tmp}/out.zarr}}\nbackend: cpu\n"
            "cluster: {{workers: 1, dashboard: ''}}\n" + SEED
        ),
        ConfigError,
        {"line": 1, "key": "input.store"},
        ["input.store: names no store (it is empty", "('.' for the folder the command runs in)"],
    ),
    "config-not-found": Case(
        lambda tmp: tmp / "nope.yaml", ConfigError, {"file": _in("nope.yaml"), "line": None}
    ),
    "config-a-folder": Case(  # `pipeline run configs`: "cannot read config ...: Is a directory"
        lambda tmp: _config_folder(tmp),
        ConfigError,
        {"file": _in("configs"), "line": None},
        ["is a folder, not a YAML file: give the config file's path (such as ", "run.yaml)"],
    ),
    "missing-input-store": Case(
        lambda tmp: write_config(tmp, tmp / "nowhere.zarr", tmp / "out.zarr"),
        InputError,
        {"store": _in("nowhere.zarr"), "status": "absent"},
        ["does not exist: fix input.store"],
    ),
    "input-store-a-netcdf-file": Case(  # had been "no Zarr array at ...; check input.array"
        _file_input("air.nc", NETCDF_CLASSIC),
        InputError,
        {"store": _in("air.nc"), "status": "absent", "reason": "a netCDF classic file"},
        ["is a netCDF classic file, not a Zarr store", "xr.open_dataset(FILE).to_zarr(STORE)"],
    ),
    "input-store-a-netcdf-file-and-its-variable": Case(  # h63e: "no Zarr array at
        _file_input("air.nc", NETCDF_CLASSIC, "air"),  # .../air.nc/air; check input.array"
        InputError,
        {"store": _in("air.nc/air"), "array": "air", "reason": "a netCDF classic file"},
        ["is a netCDF classic file, not a Zarr store", "xr.open_dataset(FILE).to_zarr(STORE)"],
    ),
    # its .zattrs kept (zarr-python 3 and xarray write one): it had been "a folder of no
    # Zarr metadata", "set input.store to the Zarr store's folder" or "check input.array"
    "v2-array-its-zarray-deleted": Case(
        _v2_without_zarray(""),
        InputError,
        {"store": _in("in.zarr"), "status": "absent", "reason": "no metadata"},
        ["it holds chunks ('0.0') but no metadata", "restore the array's metadata document"],
    ),
    "v2-dataset-variable-its-zarray-deleted": Case(
        _v2_without_zarray("temp"),
        InputError,
        {
            "store": _in("in.zarr/temp"),
            "array": "temp",
            "status": "absent",
            "reason": "no metadata",
        },
        ["it holds chunks ('0.0') but no metadata", "restore the array's metadata document"],
    ),
    "input-store-a-plain-file": Case(
        _file_input("notes.txt", b"not a store"),
        InputError,
        {"store": _in("notes.txt"), "status": "absent", "reason": "a file"},
        ["is a file, not a Zarr store", "set input.store to the Zarr store's folder"],
    ),
    "input-store-its-zarr-json": Case(  # had said to convert it to Zarr (xr.open_dataset)
        lambda tmp: write_config(tmp, _input(tmp) / "zarr.json", tmp / "out.zarr"),
        InputError,
        {"store": _in("in.zarr/zarr.json"), "status": "absent", "reason": "a metadata document"},
        ["in.zarr/zarr.json is the Zarr metadata document of ", "set input.store to that folder"],
    ),
    "missing-generated-input-store": Case(  # generate named only where the config describes it
        lambda tmp: write_config(
            tmp,
            tmp / "nowhere.zarr",
            tmp / "out.zarr",
            input={"generate": {"shape": [8, 8], "chunks": [4, 4], "when_missing": False}},
        ),
        InputError,
        {"store": _in("nowhere.zarr"), "status": "absent"},
        # the command named with the config's file, as it can be run (it had said CONFIG)
        ["`pipeline generate ", "run.yaml` creates it from input.generate or fix input.store"],
    ),
    "missing-array-in-group": Case(  # h85f: no names, where a close one got "did you mean"
        _group_input_asking("fields/pressure"),
        InputError,
        {"store": _in("in.zarr/fields/pressure"), "array": "fields/pressure", "status": "absent"},
        ["check input.array (no name is close; the arrays below 'fields': fields/temp)"],
    ),
    "missing-array-in-a-missing-group": Case(  # h85f: the store's arrays, where no group is
        _group_input_asking("other/pressure"),
        InputError,
        {"array": "other/pressure", "status": "absent"},
        ["check input.array (no name is close; the arrays in the store: fields/temp)"],
    ),
    "misspelled-array": Case(  # helper-41: no hint, where a group lists its arrays; the
        _group_input_asking("fields/tmep"),  # path input.array takes, not the name alone
        InputError,
        {"array": "fields/tmep", "status": "absent"},
        ["check input.array (did you mean 'fields/temp'?)"],
    ),
    "array-named-in-another-case": Case(  # 'TEMP' for 'temp', 'SST' for 'sst': no hint had
        _group_input_asking("fields/TEMP"),  # come, the names being too short to look close
        InputError,
        {"array": "fields/TEMP", "status": "absent"},
        ["check input.array (did you mean 'fields/temp'?)"],
    ),
    "group-not-array": Case(
        lambda tmp: (_group_input(tmp), write_config(tmp, tmp / "in.zarr", tmp / "out.zarr"))[1],
        InputError,
        {"store": _in("in.zarr"), "array": "", "status": "group", "arrays": ["fields/temp"]},
        ["set input.array"],
    ),
    "input-store-a-plain-folder-in-a-group": Case(  # had been "...; check input.array"
        _plain_folder_input("notes", ""),  # (input.array being '')
        InputError,
        {"store": _in("in.zarr/notes"), "array": "", "status": "absent", "arrays": []},
        ["is a folder of no Zarr metadata", "set input.store to the Zarr store's folder"],
    ),
    "input-array-a-plain-folder-of-arrays": Case(  # had named none of them
        _plain_folder_input("", "plain"),
        InputError,
        {"array": "plain", "status": "absent", "arrays": ["plain/temp"]},
        ["set input.array to the path of one of the arrays below it: plain/temp"],
    ),
    "dtype-bool": Case(_dtype_input("bool"), InputError, {"dtype": "bool"}, ["convert the input"]),
    "dtype-complex": Case(
        _dtype_input("complex"), InputError, {"dtype": "complex64"}, ["convert the input"]
    ),
    "dtype-string": Case(_dtype_input("string"), InputError, {}, ["convert the input"]),
    "dtype-edited-after-the-chunks": Case(
        lambda tmp: (_edited_input(tmp, data_type="float64"), _config(tmp))[1],
        ChunkError,
        {"misfit": "metadata", "problem": "size"},
        ["write back the dtype and chunk shape they were written with"],
    ),
    "integer-overflow": Case(
        lambda tmp: (
            _input(tmp, "int16"),
            write_config(tmp, tmp / "in.zarr", tmp / "out.zarr", integer_overflow="error"),
        )[1],
        PlanError,
        {"stage": "multiply", "position": 1, "dtype": "int16"},
        ["integer_overflow: promote", "float64"],
    ),
    "unsafe-block": Case(
        lambda tmp: _config(
            tmp,
            chunking={"block": [6, 30]},
            output={"store": str(tmp / "out.zarr"), "shards": [4, 30], "chunks": [2, 30]},
        ),
        PlanError,
        {"key": "chunking.block", "block": (6, 30), "multiple_of": (20, 30)},
        ["use a multiple of [20, 30]"],
    ),
    "shard-not-multiple-of-chunk": Case(
        lambda tmp: _config(
            tmp,
            chunking={"block": [20, 30]},
            output={"store": str(tmp / "out.zarr"), "shards": [10, 30], "chunks": [4, 30]},
        ),
        PlanError,
        {"key": "output.shards", "shape": (10, 30), "multiple_of": (4, 30)},
    ),
    "gpu-without-gpu": Case(
        lambda tmp: _config(tmp, backend="gpu"), PlanError, {"backend": "gpu"}, ["set backend: cpu"]
    ),
    "existing-output": Case(
        lambda tmp: (
            make_array(tmp / "out.zarr", np.zeros((3, 3)), (3, 3)),
            _config(tmp),
        )[1],
        OutputError,
        {"output": _in("out.zarr"), "status": "foreign"},
        ["--overwrite"],
    ),
    "output-under-a-file": Case(
        lambda tmp: (
            (tmp / "file.txt").write_text("x"),
            write_config(tmp, _input(tmp), tmp / "file.txt" / "out.zarr"),
        )[1],
        OutputError,
        {"output": _in("file.txt/out.zarr"), "directory": _in("file.txt")},
        ["output.store"],
    ),
    "output-store-a-file": Case(  # had said "not a writable directory; ... fix its permissions"
        lambda tmp: (
            (tmp / "file.txt").write_text("x"),
            write_config(tmp, _input(tmp), tmp / "file.txt"),
        )[1],
        OutputError,
        {"output": _in("file.txt"), "directory": _in("file.txt")},
        ["file.txt is a file, not a directory", "; choose another output.store"],
    ),
}


def _output_of(cfg: Path) -> Path | None:
    import yaml

    try:
        return Path(yaml.safe_load(cfg.read_text())["output"]["store"])
    except Exception:
        return None


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_refused_in_one_line_before_anything_is_written(
    tmp_path: Path, cli, name: str
) -> None:
    case = CASES[name]
    if name == "gpu-without-gpu" and gpu_status()[0]:
        pytest.skip("this machine has a usable GPU")
    cfg = case.make(tmp_path)
    out = _output_of(cfg) if cfg.exists() else None
    before = file_states(out) if out is not None and out.exists() else None
    rc, _, err = cli("run", cfg, *case.args)
    assert rc == 1
    line = one_line_error(err)
    for text in case.fix:
        assert text in line, f"{text!r} not in {line!r}"
    if out is not None:
        if before is None:
            assert not out.exists(), f"{out} was created"
        else:
            assert file_states(out) == before, f"{out} was changed"
    # the same refusal, as its type with its data
    e = refused("run", cfg, *case.args)
    assert line == f"error: {e}"
    assert type(e) is case.error, f"{type(e).__name__}: {e}"
    want = {k: v(tmp_path) if callable(v) else v for k, v in case.fields.items()}
    assert {k: getattr(e, k, "(no such field)") for k in want} == want


@pytest.mark.parametrize("name", [n for n, c in CASES.items() if issubclass(c.error, InputError)])
def test_verify_refuses_an_input_as_run_does(tmp_path: Path, cli, name: str) -> None:
    """``verify`` of an input that ``run`` refuses (a dtype the stages do not compute on, chunks
    that do not decode to the metadata's dtype, ...), with no output, refuses it in ``run``'s
    line: it had said "no output at ...: run the pipeline first", which ``run`` then refused
    (new-user trial)."""
    cfg = CASES[name].make(tmp_path)
    _, _, ran = cli("run", cfg, *CASES[name].args)
    rc, out, err = cli("verify", cfg)
    assert (rc, out) == (1, "")
    assert one_line_error(err) == one_line_error(ran)


#: Metadata zarr-python writes, then edited to a value zarr-python refuses to open:
#: (zarr_format, the document's key path, the value).
REFUSED_VALUES = {
    "v2-order": (2, ("order",), "X"),
    "v2-fill-value": (2, ("fill_value",), "banana"),
    "v3-data-type": (3, ("data_type",), "float128x"),
    "v2-data-type-spelt-otherwise": (2, ("dtype",), "<i1"),  # zarr-python: |i1
    "v3-chunk-grid": (3, ("chunk_grid", "name"), "rectilinear"),
    "v3-chunk-key-encoding": (3, ("chunk_key_encoding",), {"name": "weird"}),
    "v3-chunk-axes": (3, ("chunk_grid", "configuration", "chunk_shape"), [4]),
}


@pytest.mark.parametrize("case", sorted(REFUSED_VALUES))
def test_metadata_zarr_python_cannot_read_is_named_with_its_document(
    tmp_path: Path, cli, case: str
) -> None:
    """An input whose metadata holds a value zarr-python refuses to open (an array it wrote,
    then edited) is refused in one line that names the document (``.zarray``,
    ``zarr.json``), zarr-python's reason and the fix, before anything is written; the input
    is left as it was. It had been "cannot open STORE/: ValueError: ...", naming neither."""
    zarr_format, keys, value = REFUSED_VALUES[case]
    x = np.arange(64, dtype=np.float32).reshape(8, 8)
    make_array(tmp_path / "in.zarr", x, (4, 4), zarr_format=zarr_format)
    doc = tmp_path / "in.zarr" / ("zarr.json" if zarr_format == 3 else ".zarray")
    meta = json.loads(doc.read_text())
    inner = meta
    for k in keys[:-1]:
        inner = inner[k]
    inner[keys[-1]] = value
    doc.write_text(json.dumps(meta))
    with pytest.raises((ValueError, TypeError)):  # zarr-python refuses it too
        zarr.open_array(tmp_path / "in.zarr", mode="r")
    before = file_states(tmp_path / "in.zarr")
    cfg = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr")
    rc, _, err = cli("run", cfg)
    assert rc == 1
    line = one_line_error(err)
    assert f"{doc} holds metadata zarr-python cannot read (" in line, line
    assert "mend the value it names in that document" in line, line
    e = refused("plan", cfg)
    assert isinstance(e, InputError) and (e.store, e.status) == (str(doc), "unreadable"), e
    assert not (tmp_path / "out.zarr").exists()
    assert file_states(tmp_path / "in.zarr") == before


@pytest.mark.parametrize(
    "sections, key, also",
    [
        ({"stages": [{"op": "multiply", "factor": float("inf")}]}, "stages.0.factor", ""),
        ({"output": {"store": "o.zarr", "chunks": [0, 5]}}, "output.chunks.0", ""),
        (
            {
                "output": {"store": "o.zarr", "chunks": [0, 5]},
                "stages": [{"op": "multiply", "factor": float("nan")}, {"op": "add", "value": "x"}],
            },
            "output.chunks.0",
            " (also: stages.0.factor, stages.1.value)",
        ),
    ],
    ids=["one", "one-in-a-union", "three"],
)
def test_a_config_error_names_its_other_problems_by_key(
    sections: dict[str, Any], key: str, also: str
) -> None:
    """A config's other problems are named at the end of its one line, by key; a union's
    alternatives of one problem are that problem (helper-39: "(and 1 more problem(s))" for
    ``factor: .inf``, the other never shown)."""
    from pipeline.config import parse_config

    doc = {"input": {"store": "in.zarr"}, "output": {"store": "out.zarr"}, "stages": STAGES}
    doc.update(sections)
    with pytest.raises(ConfigError) as e:
        parse_config(doc)
    assert e.value.key == key and str(e.value).endswith(also) and "more problem" not in str(e)
    assert len(str(e.value).splitlines()) == 1


def test_removed_settings_are_not_settings() -> None:
    """Each key the loader names as removed is no key of its section, and is refused."""
    from pipeline.config import Config, parse_config
    from pipeline.config.problems import REMOVED

    assert len(REMOVED) == 4
    for dotted in REMOVED:
        section, key = dotted.split(".")
        assert key not in Config.model_fields[section].annotation.model_fields, dotted
        doc = {"input": {"store": "in.zarr"}, "output": {"store": "out.zarr"}, "stages": STAGES}
        doc[section] = {**doc.get(section, {}), key: 1}
        with pytest.raises(ConfigError) as e:
            parse_config(doc)
        # not a typo: the fix is to drop it
        assert (e.value.key, e.value.removed) == (dotted, REMOVED[dotted])


def test_debug_shows_the_traceback(tmp_path: Path, cli) -> None:
    cfg = write_config(tmp_path, tmp_path / "nowhere.zarr", tmp_path / "out.zarr")
    with pytest.raises(InputError) as e:
        cli("--debug", "run", cfg)
    assert e.value.status == "absent" and e.value.store == str(tmp_path / "nowhere.zarr")
    # and the same from a real process: the traceback on stderr
    r = subprocess.run(
        [*_python(), "run", str(cfg), "--debug"], capture_output=True, text=True, env=_env()
    )
    assert r.returncode == 1
    assert "Traceback (most recent call last)" in r.stderr
    assert f"pipeline.errors.InputError: {e.value}" in r.stderr
    r = subprocess.run([*_python(), "run", str(cfg)], capture_output=True, text=True, env=_env())
    assert r.returncode == 1
    assert one_line_error(r.stderr)


def _python() -> list[str]:
    import sys

    return [sys.executable, "-m", "pipeline"]


def _env() -> dict[str, str]:
    from tests.faultkit import env

    return env()


def test_a_block_that_cannot_fit_the_memory_budget_is_refused_fast(tmp_path: Path, cli) -> None:
    """On the CPU the host budget per worker bounds a block: a tiny one is refused at once,
    with the numbers (per block, in flight, budget) and what to change."""
    cfg = _config(tmp_path, cluster={"host_memory_limit": "1MB", "dashboard": ""})
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    rc, _, err = cli("run", cfg)
    started = {p.pid for p in psutil.Process().children(recursive=True)} - before
    assert not started, "refused only after starting processes (a cluster?)"
    assert rc == 1
    line = one_line_error(err)
    assert "raise cluster.host_memory_limit to at least" in line, line
    assert not (tmp_path / "out.zarr").exists()
    # the same refusal, as a type with its numbers
    from pipeline.config import load_config
    from pipeline.planning.memory import WORKER_BASELINE
    from pipeline.running.runner import plan_run

    with pytest.raises(PlanError) as e:
        plan_run(load_config(cfg))
    assert e.value.host_budget == 1_000_000
    assert e.value.host_per_worker > WORKER_BASELINE > e.value.host_budget
    assert e.value.block == (5, 30) and e.value.block_that_fits is None


def test_an_unreachable_scheduler_is_reported_within_the_timeout(tmp_path: Path, cli) -> None:
    cfg = _config(tmp_path, cluster={"timeout": 2, "dashboard": ""})
    t0 = time.perf_counter()
    e = refused("run", cfg, "--scheduler", "tcp://127.0.0.1:1")
    elapsed = time.perf_counter() - t0
    assert isinstance(e, ClusterError)
    # nothing listens there: said at once (tests/test_scheduler.py, refused at once)
    assert (e.address, e.reason, e.cause) == ("tcp://127.0.0.1:1", "unreachable", "refused")
    # well short of Dask's own 30 s connect timeout, with room for a loaded CI machine
    assert elapsed < 2 + 12, f"took {elapsed:.2f} s for a 2 s timeout"
    assert not (tmp_path / "out.zarr").exists()


# Dask leaves the socket of the HTTP server it could not start unclosed (its ResourceWarning is
# not the pipeline's to fix).
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_cluster_that_does_not_start_leaves_no_output(tmp_path: Path, cli) -> None:
    """The run takes the output's lock (creating its directory) before it starts the cluster;
    when the cluster cannot start, nothing is left behind."""
    # a dashboard address no interface of this machine has (TEST-NET-1, RFC 5737)
    cfg = _config(tmp_path, cluster={"dashboard": "192.0.2.1:8787"})
    e = refused("run", cfg)
    assert isinstance(e, ClusterError)
    assert (e.address, e.reason) == ("local", "did-not-start")
    assert not (tmp_path / "out.zarr").exists()
    gc.collect()  # that socket's warning here, where it is ignored, not in a later test


def test_an_output_on_a_read_only_file_system_is_refused(tmp_path: Path, cli) -> None:
    """Root may write anywhere a mode allows, so the read-only place is a read-only mount."""
    ro = tmp_path / "ro"
    ro.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a read-only file system here: {r.stderr.strip()}")
    try:
        cfg = write_config(tmp_path, _input(tmp_path), ro / "sub" / "out.zarr")
        e = refused("run", cfg)
        assert isinstance(e, OutputError)
        assert (e.output, e.directory) == (str(ro / "sub" / "out.zarr"), str(ro))
        assert not (ro / "sub").exists()
    finally:
        subprocess.run(["umount", "-l", str(ro)], capture_output=True)


def test_every_error_the_package_raises_has_a_kind_and_data() -> None:
    """Read from the source: no bare PipelineError is made, and every error of
    :mod:`pipeline.errors` is made with its data as keyword fields."""
    import ast

    import pipeline.errors as errors

    kinds = {
        name
        for name, obj in vars(errors).items()
        if isinstance(obj, type) and issubclass(obj, errors.PipelineError)
    }
    package = Path(errors.__file__).parent
    bad = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
                continue
            name = node.func.id
            if name in kinds and (name == "PipelineError" or not node.keywords):
                bad.append(f"{path.relative_to(package)}:{node.lineno} {name}")
    assert not bad, f"errors made without a kind or without data: {bad}"


def test_a_missing_input_store_names_generate_only_where_the_config_describes_it(
    tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The line for an input store that is not there: `pipeline generate` only for a config
    with input.generate (which `generate` refuses without one), and for a relative path, the
    directory it was taken from: a config written for another directory (new-user review)."""
    cfg = write_config(tmp_path, "data/in.zarr", tmp_path / "out.zarr")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # a config run from another directory than its author's
    for command in (["run"], ["plan"], ["verify"], ["run", "--dry-run"]):  # verify had said
        rc, _, err = cli(*command, cfg)  # no directory: it opened the input on its own
        line = one_line_error(err)
        assert rc == 1 and "generate" not in line, (command, line)
        said = f"input store {elsewhere / 'data' / 'in.zarr'} does not exist: fix input.store"
        assert said in line, (command, line)
        assert "relative path 'data/in.zarr' is taken from" in line, (command, line)
        assert str(elsewhere) in line, (command, line)
    rc, _, err = cli("generate", cfg)  # what the line had advised: refused
    assert rc == 1 and "no input.generate" in one_line_error(err)
    assert not (tmp_path / "out.zarr").exists()


def test_verify_of_an_output_not_found_names_the_directory_of_its_relative_path(
    tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`verify` run from another directory than the run's, its config naming the output by a
    relative path: "no output at ...: run the pipeline first" had not said where the path was
    taken from, and the output is there, beside the config."""
    make_array(tmp_path / "in.zarr", np.ones((4, 4), np.float32), (2, 4))
    cfg = write_config(tmp_path, tmp_path / "in.zarr", "out.zarr")
    monkeypatch.chdir(tmp_path)
    rc, _, err = cli("run", cfg)
    assert rc == 0, err
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    rc, _, err = cli("verify", cfg)
    line = one_line_error(err)
    assert rc == 1, line
    said = f"error: no output at {elsewhere / 'out.zarr'}: run the pipeline first"
    assert line.startswith(said), line
    assert line.endswith(
        f" (its relative path 'out.zarr' is taken from the directory the command runs in, "
        f"{elsewhere})"
    ), line


@pytest.mark.parametrize("dtype", ["<U4", "V8"])
def test_a_dtype_without_a_v3_spec_is_refused_in_one_line(tmp_path: Path, dtype: str) -> None:
    """A v3 array of fixed-length strings or raw bytes: zarr-python's
    UnstableSpecificationWarning (two lines, from writing out the array's metadata) came on
    stderr before the one-line refusal of its dtype, in a fresh process (pytest's own capture
    hid it)."""
    from zarr.errors import UnstableSpecificationWarning

    with pytest.warns(UnstableSpecificationWarning):  # the one this is about, from the writer
        zarr.create_array(str(tmp_path / "in.zarr"), shape=(4,), dtype=dtype, chunks=(2,))
    cfg = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr")
    for command in ("plan", "run"):
        r = run_python(["-m", "pipeline", command, cfg, "-q"], tmp_path, timeout=120)
        assert r.returncode == 1
        line = one_line_error(r.stderr)
        assert "unsupported dtype" in line and "convert the input" in line, line
    assert not (tmp_path / "out.zarr").exists()


def test_a_0d_input_is_refused_naming_a_fix(tmp_path: Path, cli) -> None:
    """The line said the pipeline needs ndim >= 1, and no fix."""
    zarr.create_array(str(tmp_path / "in.zarr"), shape=(), dtype="f4")[...] = 1.5
    cfg = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr")
    rc, _, err = cli("run", cfg)
    assert rc == 1
    line = one_line_error(err)
    assert "0-d array" in line and "shape [1]" in line, line
    # the store as it is named, not with a slash after it for the array's path ''
    assert f"error: {tmp_path / 'in.zarr'} is a 0-d array" in line, line
    assert not (tmp_path / "out.zarr").exists()


def test_a_group_given_as_the_input_is_named_as_written(tmp_path: Path, cli) -> None:
    """A group at the store's root is named as the store (``in.zarr``, as the config gives
    it), a group inside it by its path: the line had said ``in.zarr/`` for the root."""
    root = zarr.open_group(str(tmp_path / "in.zarr"), mode="w")
    root.create_group("fields").create_array("temp", shape=(4,), dtype="f4")
    for array, said in (("", "in.zarr"), ("fields", "in.zarr/fields")):
        cfg = write_config(
            tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr", input={"array": array}
        )
        rc, _, err = cli("plan", cfg)
        assert rc == 1
        line = one_line_error(err)
        assert line.startswith(f"error: {tmp_path / said} is a Zarr group, not an array"), line


@pytest.mark.parametrize(
    "given, said",
    [
        (
            {"store": " in.zarr", "array": "g/a"},
            "does not exist: fix input.store (it begins or ends with a space, ' in.zarr': "
            "write it without, 'in.zarr')",
        ),
        (
            {"store": "in.zarr", "array": " g/a "},
            "check input.array (a part of it begins or ends with a space: did you mean 'g/a'?)",
        ),
        (
            {"store": "in.zarr", "array": "g /a"},
            "check input.array (a part of it begins or ends with a space: did you mean 'g/a'?)",
        ),
        (  # YAML's `store: |` keeps a line break at its end: the line had been split in two
            {"store": "in.zarr\n", "array": "g/a"},
            "/in.zarr\\n' does not exist: fix input.store (it begins or ends "
            "with a space, 'in.zarr\\n': write it without, 'in.zarr')",
        ),
        (  # and so `array: |` (h78d)
            {"store": "in.zarr", "array": "g/a\n"},
            "/in.zarr/g/a\\n'; check input.array (a part of it begins or "
            "ends with a space: did you mean 'g/a'?)",
        ),
    ],
)
def test_an_input_not_found_for_a_space_at_an_end_of_its_name_says_so(
    tmp_path: Path, monkeypatch, given: dict[str, str], said: str
) -> None:
    """A store or array path quoted with a space at an end (``store: " in.zarr"``) was
    "does not exist" or "no Zarr array at .../in.zarr/ g/a ", the space lost in the path
    said: the line says it, and the name meant; a line break there is shown quoted, the
    line kept one."""
    from pipeline import plan

    monkeypatch.chdir(tmp_path)
    zarr.open_group("in.zarr", mode="w").create_group("g").create_array("a", shape=(4,), dtype="f4")
    config = {"input": given, "output": {"store": "out.zarr"}, "stages": [{"op": "square"}]}
    with pytest.raises(InputError) as e:
        plan(config)
    assert said in str(e.value), str(e.value)
    assert e.value.status == "absent" and "\n" not in str(e.value)
    meant = {k: v.strip().replace(" ", "") for k, v in given.items()}
    assert plan({**config, "input": meant}).input.shape == (4,)


def test_a_group_given_as_the_input_names_its_arrays_as_input_array_takes_them(
    tmp_path: Path, cli
) -> None:
    """The arrays a group's refusal lists are paths from the store's root, what input.array
    takes: the line had listed them from the group (``a`` for the group ``g/h``), and
    input.array ``a`` named no array of the store. More than 8 end in ``...``."""
    root = zarr.open_group(str(tmp_path / "in.zarr"), mode="w")
    inner = root.create_group("g").create_group("h")
    for i in range(9):
        inner.create_array(f"a{i}", shape=(4,), dtype="f4")
    for array, listed in (("g/h", "g/h/a0, g/h/a1"), ("g", "g/h/a0, g/h/a1"), ("", "g/h/a0")):
        cfg = write_config(
            tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr", input={"array": array}
        )
        rc, _, err = cli("plan", cfg)
        assert rc == 1
        line = one_line_error(err)
        assert f"set input.array to the path of an array in it: {listed}" in line, line
        assert line.endswith("g/h/a7, ..."), line
    # the path the line names is an input a run takes
    cfg = write_config(
        tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr", input={"array": "g/h/a0"}
    )
    rc, _, err = cli("plan", cfg)
    assert rc == 0, err


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_a_structured_dtype_is_refused_in_one_line_in_either_format(
    tmp_path: Path, cli, zarr_format: int
) -> None:
    """A v2 array of a structured dtype (``.zarray``'s dtype a JSON list of fields) had been
    NumPy's "TypeError: Field elements must be 2- or 3-tuples" (review 41): the line a v3
    one gets, refusing the dtype and naming the fix."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zarr's: no v3 spec for structured dtypes
        zarr.create_array(
            str(tmp_path / "in.zarr"),
            shape=(5,),
            chunks=(3,),
            dtype=[("a", "<f4"), ("b", "<i2")],
            zarr_format=zarr_format,
        )
    cfg = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr")
    for command in ("plan", "run"):
        rc, _, err = cli(command, cfg)
        assert rc == 1
        line = one_line_error(err)
        assert "unsupported dtype" in line and "convert the input" in line, line
    assert not (tmp_path / "out.zarr").exists()


def _tensorstore_array(path: Path, driver: str, dtype: str) -> None:
    """An array of ``dtype`` written by tensorstore's ``driver`` (zarr: v2, zarr3: v3),
    some of its chunks written."""
    ts = pytest.importorskip("tensorstore")
    meta: dict[str, Any] = {"shape": [6, 4]}
    if driver == "zarr":
        meta["chunks"] = [3, 4]
    else:
        meta["chunk_grid"] = {"name": "regular", "configuration": {"chunk_shape": [3, 4]}}
    spec = {"driver": driver, "kvstore": {"driver": "file", "path": str(path)}}
    t = ts.open({**spec, "dtype": dtype, "metadata": meta}, create=True).result()
    t[:3].write((np.arange(12).reshape(3, 4) % 7).astype(t.dtype.numpy_dtype)).result()


def _float_fill_array(tool: str, path: Path, dtype: str, fill: float) -> Path:
    """A float array of ``dtype`` whose fill value is ``fill``, as ``tool`` writes it (zarr-python
    3 in v3 or v2, tensorstore's zarr3 driver); its metadata document's path."""
    x = np.arange(64, dtype=dtype).reshape(8, 8)
    if tool == "tensorstore":
        ts = pytest.importorskip("tensorstore")
        meta = {
            "shape": [8, 8],
            "data_type": dtype,
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [4, 4]}},
            "fill_value": fill,
        }
        spec = {"driver": "zarr3", "kvstore": {"driver": "file", "path": str(path)}}
        ts.open({**spec, "metadata": meta}, create=True).result().write(x).result()
        return path / "zarr.json"
    zarr_format = 2 if tool == "zarr-python-v2" else 3
    a = zarr.create_array(
        store=str(path), shape=x.shape, chunks=(4, 4), dtype=dtype, fill_value=fill,
        zarr_format=zarr_format,
    )  # fmt: skip
    a[...] = x
    return path / ("zarr.json" if zarr_format == 3 else ".zarray")


@pytest.mark.parametrize(
    ("tool", "dtype", "fill", "edited"),
    [
        ("zarr-python-v3", "float32", float("nan"), "int32"),
        ("zarr-python-v2", "float64", float("nan"), "int64"),
        ("tensorstore", "float32", float("nan"), "uint32"),
        ("zarr-python-v3", "float64", 0.5, "int64"),
    ],
)
def test_a_float_arrays_data_type_edited_to_integers_is_said_by_its_fill_value(
    tmp_path: Path, tool: str, dtype: str, fill: float, edited: str
) -> None:
    """A float array whose data type was edited by hand to an integer one of the same size
    (float32 to int32): its chunks decode to the right size, so nothing in their bytes says
    it; its fill value, a float's (NaN, 0.5), does, and zarr-python refuses it. The line had
    said only to "mend the value it names"; it names the fill value and the data type, and
    both fixes, the data type written back first, before anything is written; the input is
    left as it was (h72d)."""
    src = tmp_path / "in.zarr"
    doc = _float_fill_array(tool, src, dtype, fill)
    meta = json.loads(doc.read_text())
    key = "dtype" if doc.name == ".zarray" else "data_type"
    said = meta["fill_value"]
    doc.write_text(json.dumps({**meta, key: np.dtype(edited).str if key == "dtype" else edited}))
    before = file_states(src)
    cfg = write_config(tmp_path, src, tmp_path / "out.zarr")
    with pytest.raises(InputError) as err:
        pipeline.plan(cfg)
    line = str(err.value)
    assert line.startswith(
        f"{doc} names the fill value {json.dumps(said)}, a float's, for its data type {edited}, "
        "which zarr-python cannot read ("
    ), line
    assert line.endswith(
        "if the data type was changed after the chunks were written, write back the one they "
        f"were written with; else write the value absent chunks mean, one {edited} holds, as "
        "the fill value in that document"
    ), line
    assert err.value.status == "unreadable" and err.value.store == str(doc), err.value.data
    assert not (tmp_path / "out.zarr").exists()
    assert file_states(src) == before


def _v2_array_by_hand(path: Path, dtype: Any, filters: Any = None) -> None:
    """A v2 array of ``dtype`` (as ``.zarray`` says it) that zarr-python 3 writes no more, by
    hand: its ``.zarray``, as zarr-python 2 wrote it, and one raw chunk (numcodecs' filters'
    encoding, where ``filters`` name an object codec)."""
    import numcodecs

    stored = np.dtype(dtype) if isinstance(dtype, str) else v2_dtype(dtype)
    path.mkdir()
    meta = {
        "zarr_format": 2, "shape": [6, 4], "chunks": [3, 4], "dtype": dtype, "compressor": None,
        "fill_value": None, "order": "C", "filters": filters, "dimension_separator": ".",
    }  # fmt: skip
    (path / ".zarray").write_text(json.dumps(meta))
    chunk: Any = np.zeros((3, 4), stored)
    for f in filters or []:
        chunk = numcodecs.get_codec(f).encode(chunk)
    (path / "0.0").write_bytes(bytes(chunk))


def _long_double_v2_array(path: Path) -> None:
    """A v2 array of NumPy's long double (``<f16``)."""
    if np.dtype(np.longdouble).itemsize != 16:
        pytest.skip("NumPy's long double is another size on this platform")
    _v2_array_by_hand(path, "<f16")


#: Arrays whose data type is real but one zarr-python does not read: tensorstore's, NumPy's
#: long double in v2, zarr-python 2's records of records and pickled objects (the name the
#: line says: NumPy's).
UNREAD_DATA_TYPES = {
    "tensorstore-v2-bfloat16": (lambda p: _tensorstore_array(p, "zarr", "bfloat16"), "bfloat16"),
    "tensorstore-v3-bfloat16": (lambda p: _tensorstore_array(p, "zarr3", "bfloat16"), "bfloat16"),
    "tensorstore-v3-float8": (
        lambda p: _tensorstore_array(p, "zarr3", "float8_e4m3fn"),
        "float8_e4m3fn",
    ),
    "tensorstore-v3-int4": (lambda p: _tensorstore_array(p, "zarr3", "int4"), "int4"),
    "v2-long-double": (_long_double_v2_array, "float128"),
    "zarr2-nested-record": (
        lambda p: _v2_array_by_hand(p, [["a", "<f4", [2]], ["b", [["c", "<i2"]]]]),
        "[('a', '<f4', (2,)), ('b', [('c', '<i2')])]",
    ),
    "zarr2-objects-pickled": (
        lambda p: _v2_array_by_hand(p, "|O", [{"id": "pickle"}]),
        "object",
    ),
}


@pytest.mark.parametrize("case", sorted(UNREAD_DATA_TYPES))
def test_a_data_type_zarr_python_does_not_read_is_refused_as_a_dtype(
    tmp_path: Path, cli, case: str
) -> None:
    """An array of a data type other tools write that zarr-python does not read (tensorstore's
    bfloat16, 8-bit floats, 4-bit integers; NumPy's long double; zarr-python 2's nested
    records and pickled objects): the line had said its
    document "holds metadata zarr-python cannot read: mend the value it names in that
    document", as for a misspelt name, where no edit of the name reads the bytes as what they
    are (bfloat16 mended to float16 computes on other numbers). Refused as an unsupported
    dtype, in one line naming the document and the fix, nothing written, the input as it
    was."""
    write, name = UNREAD_DATA_TYPES[case]
    src = tmp_path / "in.zarr"
    write(src)
    with pytest.raises((ValueError, TypeError)):  # zarr-python refuses it too
        zarr.open_array(src, mode="r")
    doc = src / ("zarr.json" if (src / "zarr.json").exists() else ".zarray")
    before = file_states(src)
    cfg = write_config(tmp_path, src, tmp_path / "out.zarr")
    for command in ("plan", "run"):
        rc, _, err = cli(command, cfg)
        assert rc == 1
        line = one_line_error(err)
        assert line.startswith(f"error: unsupported dtype {name}: {doc} names a data type"), line
        assert "convert the input first" in line and "mend" not in line, line
    e = refused("plan", cfg)
    assert isinstance(e, InputError) and (e.store, e.status, e.dtype) == (
        str(doc),
        "unreadable",
        name,
    ), e
    assert not (tmp_path / "out.zarr").exists()
    assert file_states(src) == before


#: Shards after a ``transpose`` codec as tensorstore writes them, whose inner chunks cut the
#: transposed shard and not the shard as zarr-python checks them: (array shape, shard,
#: order, inner chunks (of the transposed shard), the shard and inner chunks the line says).
TRANSPOSED_SHARDS = {
    "2d": ([13, 22], [8, 12], [1, 0], [6, 4], "in shards [8, 12] of inner chunks [4, 6]"),
    "3d": (
        [5, 7, 9],
        [4, 6, 8],
        [2, 0, 1],
        [4, 2, 3],
        "in shards [4, 6, 8] of inner chunks [2, 3, 4]",
    ),
}


@pytest.mark.parametrize("case", sorted(TRANSPOSED_SHARDS))
def test_a_transpose_before_sharding_is_refused_as_a_layout_zarr_python_cannot_read(
    tmp_path: Path, cli, case: str
) -> None:
    """tensorstore's ``transpose`` codec before ``sharding_indexed``, the inner chunks cutting
    the transposed shard (valid Zarr v3; zarr-python 3 checks them against the shard
    untransposed and refuses to open the array): the line had said to "mend the value it
    names in that document", when no value is wrong. It says the layout, that it is valid
    Zarr v3 that zarr-python cannot read, and the fix: the array written again without that
    transpose, in the shards and inner chunks that hold the same values; one line, nothing
    written, the input as it was."""
    ts = pytest.importorskip("tensorstore")
    shape, shard, order, inner, fix = TRANSPOSED_SHARDS[case]
    src = tmp_path / "in.zarr"
    sharding = {"chunk_shape": inner, "codecs": [{"name": "bytes"}, {"name": "zstd"}]}
    meta = {
        "shape": shape,
        "data_type": "float32",
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": shard}},
        "codecs": [
            {"name": "transpose", "configuration": {"order": order}},
            {"name": "sharding_indexed", "configuration": sharding},
        ],
    }
    spec = {"driver": "zarr3", "kvstore": {"driver": "file", "path": str(src)}, "metadata": meta}
    x = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    ts.open(spec, create=True).result().write(x).result()
    assert np.array_equal(ts.open(spec).result().read().result(), x)  # tensorstore reads it
    with pytest.raises(ValueError, match="divisible"):  # zarr-python does not
        zarr.open_array(src, mode="r")
    doc = src / "zarr.json"
    before = file_states(src)
    cfg = write_config(tmp_path, src, tmp_path / "out.zarr")
    for command in ("plan", "run"):
        rc, _, err = cli(command, cfg)
        assert rc == 1
        line = one_line_error(err)
        assert line.startswith(f"error: {doc} puts a transpose codec (order {order}) before "), line
        assert "valid Zarr v3" in line and "zarr-python cannot read" in line, line
        assert "write the array again without that transpose" in line and fix in line, line
        assert "mend" not in line, line
    e = refused("plan", cfg)
    assert isinstance(e, InputError) and (e.store, e.status) == (str(doc), "unreadable"), e
    assert e.codecs == "transpose before sharding_indexed", e
    assert not (tmp_path / "out.zarr").exists()
    assert file_states(src) == before


@pytest.mark.parametrize("zarr_format", [2, 3])
@pytest.mark.parametrize("dtype", ["complex64", "datetime64[s]"])
def test_a_fill_value_zarr_python_cannot_read_is_to_be_mended_whatever_the_dtype(
    tmp_path: Path, cli, zarr_format: int, dtype: str
) -> None:
    """An array of a data type zarr-python reads (one the stages do not compute on) whose
    fill value it cannot read: the fill value is the document's to mend, and the line says
    so; the data type is not called one zarr-python cannot read."""
    zarr.create_array(
        str(tmp_path / "in.zarr"), shape=(4,), chunks=(2,), dtype=dtype, zarr_format=zarr_format
    )
    doc = tmp_path / "in.zarr" / ("zarr.json" if zarr_format == 3 else ".zarray")
    meta = json.loads(doc.read_text())
    meta["fill_value"] = "banana"
    doc.write_text(json.dumps(meta))
    with pytest.raises((ValueError, TypeError)):  # zarr-python refuses it too
        zarr.open_array(tmp_path / "in.zarr", mode="r")
    cfg = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr")
    rc, _, err = cli("run", cfg)
    assert rc == 1
    line = one_line_error(err)
    assert f"{doc} holds metadata zarr-python cannot read (" in line, line
    assert "banana" in line and "mend the value it names in that document" in line, line
    assert not (tmp_path / "out.zarr").exists()


@pytest.mark.parametrize("codec", ["fletcher32", "jenkins_lookup3"])
def test_a_checksum_mismatch_is_one_line_naming_the_chunk(tmp_path: Path, codec: str) -> None:
    """numcodecs' Fletcher32 and JenkinsLookup3 errors hold a newline: the damaged chunk's
    line spanned two (review 41); in a fresh process, as a user sees it, it is one."""
    import numcodecs

    checksum = {"fletcher32": numcodecs.Fletcher32, "jenkins_lookup3": numcodecs.JenkinsLookup3}
    src = tmp_path / "in.zarr"
    a = zarr.create_array(
        str(src), shape=(8, 8), chunks=(4, 4), dtype="f8", zarr_format=2,
        compressors=checksum[codec](),
    )  # fmt: skip
    a[...] = 1.0
    raw = bytearray((src / "0.0").read_bytes())
    raw[20] ^= 1
    (src / "0.0").write_bytes(bytes(raw))
    cfg = write_config(tmp_path, src, tmp_path / "out.zarr")
    r = run_python(["-m", "pipeline", "run", cfg, "--progress", "none"], tmp_path, timeout=120)
    assert r.returncode == 1
    line = one_line_error(r.stderr)
    assert "input chunk '0.0'" in line and "is damaged" in line and "checksum" in line, line


def _bad_documents(src: Path, case: str) -> tuple[str, str]:
    """A store at ``src`` with one metadata document that is JSON but no JSON object (its
    ``input.array``, and the file's path below ``src``)."""
    import json
    import warnings

    import xarray as xr

    def edit_json(path: Path, change: Callable[[Any], Any]) -> None:
        path.write_text(json.dumps(change(json.loads(path.read_text()))))

    if case in ("v2-zattrs", "v3-attributes", "v2-zarray"):
        fmt = 3 if case.startswith("v3") else 2
        zarr.create_array(str(src), shape=(4,), chunks=(2,), dtype="f4", zarr_format=fmt)[...] = 1
        if case == "v2-zattrs":
            (src / ".zattrs").write_text("[1, 2]")
            return "", ".zattrs"
        if case == "v2-zarray":
            (src / ".zarray").write_text("[1]")
            return "", ".zarray"
        edit_json(src / "zarr.json", lambda d: {**d, "attributes": [1, 2]})
        return "", "zarr.json"
    fmt = 3 if case.endswith("3") else 2
    ds = xr.Dataset(
        {"v": (("y", "x"), np.arange(16, dtype="f4").reshape(4, 4))}, coords={"x": np.arange(4.0)}
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(str(src), zarr_format=fmt, consolidated=False)
    if case.startswith("group-attributes"):
        if fmt == 2:
            (src / ".zattrs").write_text('"x"')
            return "v", ".zattrs"
        edit_json(src / "zarr.json", lambda d: {**d, "attributes": "x"})
        return "v", "zarr.json"
    if case.startswith("group-metadata"):
        (src / (".zgroup" if fmt == 2 else "zarr.json")).write_text("[2]")
        return "v", ".zgroup" if fmt == 2 else "zarr.json"
    # a coordinate's attributes
    if fmt == 2:
        (src / "x" / ".zattrs").write_text("[2]")
        return "v", "x/.zattrs"
    edit_json(src / "x" / "zarr.json", lambda d: {**d, "attributes": [2]})
    return "v", "x/zarr.json"


@pytest.mark.parametrize(
    "case",
    [
        "v2-zattrs",
        "v3-attributes",
        "v2-zarray",
        "group-attributes-2",
        "group-attributes-3",
        "group-metadata-2",
        "group-metadata-3",
        "coordinate-2",
        "coordinate-3",
    ],
)
def test_metadata_that_is_no_json_object_is_one_line_naming_the_file(
    tmp_path: Path, cli, case: str
) -> None:
    """Attributes (a v2 ``.zattrs``, a v3 ``zarr.json``'s ``attributes``) or metadata
    (``.zarray``, ``.zgroup``, ``zarr.json``) that are JSON but no object, of the input array,
    its group or a coordinate beside it: zarr-python opens most of them, and the run had
    failed with a bare ``IndexError: list index out of range`` naming no file, or (a group's)
    run on, the variable taken for an array alone (review 41). One line naming the file and
    the fix, for plan and run, before anything is written."""
    src = tmp_path / "in.zarr"
    array, name = _bad_documents(src, case)
    cfg = write_config(
        tmp_path, "", tmp_path / "out.zarr", input={"store": str(src), "array": array}
    )
    before = file_states(src)
    for command in ("plan", "run"):
        rc, _, err = cli(command, cfg)
        assert rc == 1, err
        line = one_line_error(err)
        assert f"{src / name}: " in line and "not a JSON object" in line, line
        fix = "make them a JSON object" if "attributes" in line else "restore it"
        assert fix in line, line
    e = refused("run", cfg)
    assert isinstance(e, InputError) and e.store == str(src / name), e
    assert file_states(src) == before
    assert not (tmp_path / "out.zarr").exists()


def test_input_documents_are_checked_once_per_plan(tmp_path: Path, cli, monkeypatch) -> None:
    """The input's metadata documents, its groups' and its group's members'
    (``arrays.check_documents``, a request each on a remote store: 5 s of a plan on a 30 ms S3
    server for 100 variables), are read once by ``plan``, ``run --dry-run`` and ``run`` where
    ``output.array`` is omitted: deciding it (``with_output_array``) and the plan's
    ``input_info`` had each read them all. The plan is the same (the variable written under
    its name); the refusal of bad documents, the same lines, is
    test_metadata_that_is_no_json_object_is_one_line_naming_the_file's."""
    import xarray as xr

    from pipeline.store import arrays

    src = tmp_path / "in.zarr"
    xr.Dataset(
        {f"v{i}": (("y", "x"), np.full((4, 4), i, "f4")) for i in range(3)},
        coords={"x": np.arange(4.0)},
    ).to_zarr(src, zarr_format=2, consolidated=False)
    real = arrays.check_documents
    checks: list[tuple[str, bool]] = []

    def counted(location: Any, path: str, around: bool = False) -> None:
        checks.append((path, around))
        real(location, path, around)

    monkeypatch.setattr(arrays, "check_documents", counted)
    cfg = write_config(
        tmp_path, "", tmp_path / "out.zarr", input={"store": str(src), "array": "v1"}
    )
    for args in (("plan", cfg), ("run", cfg, "--dry-run"), ("run", cfg)):
        checks.clear()
        rc, _, err = cli(*args)
        assert rc == 0, err
        assert [c for c in checks if c[1]] == [("v1", True)], (args, checks)
    out = zarr.open_array(tmp_path / "out.zarr", path="v1", mode="r")
    assert out[...].tolist() == np.full((4, 4), 50, "f4").tolist()  # ((1 * 5) ** 2) * 2


_THREADS = {"workers": 1, "threads_per_worker": 1, "dashboard": "", "protocol": "inproc"}


def _dataset_with_sibling(src: Path, fmt: int, consolidated: bool) -> Any:
    """An xarray Dataset at ``src`` (Zarr ``fmt``): ``v`` on (y, x) with its coordinate
    ``x``, and ``w``, ``u`` and ``lat`` on y, which ``v`` does not name; returned as
    written."""
    import warnings

    import xarray as xr

    ds = xr.Dataset(
        {
            "v": (("y", "x"), np.arange(16, dtype="f4").reshape(4, 4), {"units": "m"}),
            "w": (("y",), np.arange(4, dtype="f4")),
            "u": (("y",), np.arange(4, dtype="f4")),
            "lat": (("y",), np.linspace(-1.0, 1.0, 4)),
        },
        coords={"x": np.arange(4.0)},
        attrs={"title": "t"},
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(str(src), zarr_format=fmt, consolidated=consolidated)
    return ds


@pytest.mark.parametrize(
    "document, consolidated",
    [("w/.zattrs", True), ("w/.zarray", False), ("w/zarr.json", True), ("w/zarr.json", False)],
)
def test_sibling_whose_metadata_is_not_json_is_read_around(
    tmp_path: Path, cli, document: str, consolidated: bool
) -> None:
    """A Dataset's other variable ``w`` (not a coordinate of ``v``, named by nothing ``v``
    reads) whose ``.zattrs``/``.zarray``/``zarr.json`` is not JSON: the run of ``v`` had
    failed in xarray's "JSONDecodeError: Expecting property name ..." naming no file
    (helper-46c). ``xr.open_zarr`` of a consolidated group reads around it (from the copy);
    the pipeline needs nothing of ``w``, so it reads around it too, consolidated or not:
    ``v`` and its coordinates written (``lat`` too, which another variable, ``u``, lists:
    unseen, had the group's other arrays been read all or nothing), the input untouched."""
    import xarray as xr

    fmt = 3 if document.endswith("zarr.json") else 2
    src = tmp_path / "in.zarr"
    ds = _dataset_with_sibling(src, fmt, consolidated)
    # u lists lat as a coordinate, which xarray then gives v too (on v's dimension y): a
    # member that cannot be read had made the group's other arrays unseen, lat with them
    key = "u/zarr.json" if fmt == 3 else "u/.zattrs"
    doc = json.loads((src / key).read_text())
    (doc["attributes"] if fmt == 3 else doc)["coordinates"] = "lat"
    (src / key).write_text(json.dumps(doc))
    if consolidated:
        with pytest.warns(UserWarning) if fmt == 3 else contextlib.nullcontext():
            zarr.consolidate_metadata(str(src), zarr_format=fmt)  # v3: not in the spec
    (src / document).write_text('{"zarr_format": ')
    out = tmp_path / "out.zarr"
    cfg = write_config(tmp_path, "", out, input={"store": str(src), "array": "v"}, cluster=_THREADS)
    before = file_states(src)
    rc, _, err = cli("plan", cfg)
    assert rc == 0, err
    rc, _, err = cli("run", cfg, "--progress", "none")
    assert rc == 0, err
    got = xr.open_zarr(str(out), consolidated=consolidated)
    assert sorted(got.variables) == ["lat", "v", "x"], got
    assert sorted(got["v"].coords) == ["lat", "x"], got
    np.testing.assert_array_equal(got["x"].values, ds["x"].values)
    np.testing.assert_array_equal(got["lat"].values, ds["lat"].values)
    np.testing.assert_array_equal(got["v"].values, reference(ds["v"].values))
    assert got.attrs["title"] == "t" and got["v"].attrs["units"] == "m"
    rc, _, err = cli("verify", cfg)
    assert rc == 0, err
    assert file_states(src) == before


@pytest.mark.parametrize(
    "fmt, document",
    [
        (fmt, document)
        for fmt in (2, 3)
        for document in ("coordinate", "variable", "group-attributes", "group", "named-sibling")
    ]
    + [(2, "consolidated")],  # v3 keeps the consolidated copy in the group's zarr.json
)
def test_needed_metadata_that_is_not_json_is_one_line_naming_the_file(
    tmp_path: Path, cli, fmt: int, document: str
) -> None:
    """A document the run needs that is not JSON at all (truncated): the variable's own, its
    coordinate's, its group's attributes or metadata, the group's consolidated copy (v2's
    ``.zmetadata``; v3 keeps it in the group's ``zarr.json``), or a sibling that ``v`` names
    by a CF reference the run follows (``cell_measures: "area: w"``; every such form is
    test_sibling_named_by_a_cf_reference_is_needed's). Each had been left to the opening that
    followed: "cannot open ...: JSONDecodeError" naming no file, a coordinate called gone
    from a stale consolidated copy (with the wrong fix), or, the group's, the variable run
    as an array alone, its Dataset silently dropped (helper-46c). One line naming the file,
    where its JSON breaks and the fix, for plan and run, nothing written."""
    src = tmp_path / "in.zarr"
    _dataset_with_sibling(src, fmt, consolidated=True)
    v3 = fmt == 3
    name = {
        "coordinate": "x/zarr.json" if v3 else "x/.zattrs",
        "variable": "v/zarr.json" if v3 else "v/.zarray",
        "group-attributes": "zarr.json" if v3 else ".zattrs",
        "group": "zarr.json" if v3 else ".zgroup",
        "consolidated": ".zmetadata",
        "named-sibling": "w/zarr.json" if v3 else "w/.zattrs",
    }[document]
    if document == "named-sibling":  # v names w: it is read with v
        key = "v/zarr.json" if v3 else "v/.zattrs"
        doc = json.loads((src / key).read_text())
        (doc["attributes"] if v3 else doc)["cell_measures"] = "area: w"
        (src / key).write_text(json.dumps(doc))
    (src / name).write_text('{"a": 1,\n "b" 2}')
    cfg = write_config(
        tmp_path,
        "",
        tmp_path / "out.zarr",
        input={"store": str(src), "array": "v"},
        cluster=_THREADS,
    )
    before = file_states(src)
    for command in ("plan", "run"):
        rc, _, err = cli(command, cfg)
        assert rc == 1, err
        line = one_line_error(err)
        assert line.startswith(
            f"error: {src / name}: not JSON (Expecting ':' delimiter at line 2 column 6)"
        ), line
        assert "restore it" in line, line
    e = refused("run", cfg)
    assert isinstance(e, InputError) and e.store == str(src / name), e
    assert file_states(src) == before
    assert not (tmp_path / "out.zarr").exists()


def _dataset_with_surface(
    src: Path, fmt: int, attrs: dict[str, Any], consolidated: bool = True
) -> Any:
    """An xarray Dataset at ``src`` (Zarr ``fmt``, ``consolidated``): ``v`` on (y, x), with
    ``attrs``, and its coordinate ``x``; ``surface`` and ``w`` on y, which xarray does not give
    ``v``; then ``surface``'s metadata made no JSON. Returned as written."""
    import warnings

    import xarray as xr

    ds = xr.Dataset(
        {
            "v": (("y", "x"), np.arange(16, dtype="f4").reshape(4, 4), attrs),
            "surface": (("y",), np.arange(4, dtype="f4")),
            "w": (("y",), np.arange(4, dtype="f4")),
        },
        coords={"x": np.arange(4.0)},
        attrs={"title": "air temperature at surface"},
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(str(src), zarr_format=fmt, consolidated=consolidated)
    (src / ("surface/zarr.json" if fmt == 3 else "surface/.zattrs")).write_text('{"a": 1,\n "b" 2}')
    return ds


def _edit_attributes(src: Path, fmt: int, name: str, **attrs: Any) -> None:
    """Give the array ``name`` of ``src`` the attributes ``attrs`` too, in its own metadata."""
    key = f"{name}/zarr.json" if fmt == 3 else f"{name}/.zattrs"
    if not name:
        key = "zarr.json" if fmt == 3 else ".zattrs"
    doc = json.loads((src / key).read_text())
    (doc["attributes"] if fmt == 3 else doc).update(attrs)
    (src / key).write_text(json.dumps(doc))


#: Attributes of ``v`` that hold the word ``surface`` as free text, or as a reference the run
#: does not follow: its ``ancillary_variables`` (not carried, the attribute dropped: xarray's
#: ``decode_coords``, True or "all", does not follow it) and its own ``bounds`` (the input's
#: values' bounds, left out with what they name).
_FREE_TEXT = {
    "long_name": "air temperature at surface",
    "comment": "surface",
    "history": "2026-12-01 surface: made",
    "units": "surface",
    "source": {"from": "surface", "list": ["surface"]},
    "ancillary_variables": "surface",
    "bounds": "surface",
    "grid_mapping_name": "surface",
}


@pytest.mark.parametrize("fmt, consolidated", [(2, True), (2, False), (3, True), (3, False)])
def test_sibling_named_only_in_free_text_is_read_around(
    tmp_path: Path, cli, fmt: int, consolidated: bool
) -> None:
    """A sibling ``surface`` whose metadata is not JSON, that ``v`` names only as a word of
    free text (its ``long_name`` "air temperature at surface", a ``comment``, ``units``,
    ``history``, a dict attribute, a ``grid_mapping_name``; another member's ``long_name``,
    the group's ``title``), or by a reference the run does not follow (its
    ``ancillary_variables``, its own ``bounds``): the run had been refused ("..., which 'v'
    names (a coordinate or reference xarray reads with it)"), every word of every text
    attribute counting as a name. Now plan, run and verify succeed, the output what xarray
    and NumPy give, ``surface`` not carried, the input untouched."""
    import xarray as xr

    src = tmp_path / "in.zarr"
    ds = _dataset_with_surface(src, fmt, _FREE_TEXT, consolidated)
    _edit_attributes(src, fmt, "w", long_name="surface", description="at surface")
    out = tmp_path / "out.zarr"
    cfg = write_config(tmp_path, "", out, input={"store": str(src), "array": "v"}, cluster=_THREADS)
    before = file_states(src)
    for args in (("plan", cfg), ("run", cfg, "--progress", "none"), ("verify", cfg)):
        rc, _, err = cli(*args)
        assert rc == 0, (args, err)
    got = xr.open_zarr(str(out), consolidated=consolidated)
    assert sorted(got.variables) == ["v", "x"], got
    np.testing.assert_array_equal(got["x"].values, ds["x"].values)
    assert got["v"].dtype == ds["v"].dtype
    np.testing.assert_array_equal(got["v"].values, reference(ds["v"].values))
    kept = {k: v for k, v in _FREE_TEXT.items() if k not in ("ancillary_variables", "bounds")}
    assert {k: got["v"].attrs.get(k) for k in kept} == kept, got["v"].attrs
    assert "ancillary_variables" not in got["v"].attrs and "bounds" not in got["v"].attrs
    assert got.attrs["title"] == "air temperature at surface"
    assert file_states(src) == before


#: Each form by which the run follows a name to a member of ``v``'s group (xarray's
#: ``decode_coords``: ``coordinates``, the group's ``coordinates`` and another member's; the
#: carried arrays' CF references, parsed as xarray's ``decode_coords="all"`` parses them):
#: (array whose attributes name it, attributes).
_FOLLOWED = {
    "coordinates": ("v", {"coordinates": "surface"}),
    "grid_mapping": ("v", {"grid_mapping": "surface"}),
    "grid_mapping-long": ("v", {"grid_mapping": "surface: x"}),
    "grid_mapping-long-coordinate": ("v", {"grid_mapping": "crs: x surface"}),
    "cell_measures": ("v", {"cell_measures": "area: surface"}),
    "cell_measures-stray-space": ("v", {"cell_measures": "area : surface"}),
    "formula_terms": ("v", {"formula_terms": "a: w b: surface"}),
    "geometry": ("v", {"geometry": "surface"}),
    "node_coordinates": ("v", {"node_coordinates": "w surface"}),
    "node_count": ("v", {"node_count": "surface"}),
    "part_node_count": ("v", {"part_node_count": "surface"}),
    "interior_ring": ("v", {"interior_ring": "surface"}),
    "group-coordinates": ("", {"coordinates": "surface"}),
    "other-member-coordinates": ("w", {"coordinates": "surface"}),
    "coordinate-bounds": ("x", {"bounds": "surface"}),
    "coordinate-climatology": ("x", {"climatology": "surface"}),
    "coordinate-grid_mapping": ("x", {"grid_mapping": "surface"}),
}


@pytest.mark.parametrize("fmt", [2, 3])
@pytest.mark.parametrize("form", list(_FOLLOWED))
def test_sibling_named_by_a_cf_reference_is_needed(
    tmp_path: Path, cli, fmt: int, form: str
) -> None:
    """A sibling ``surface`` whose metadata is not JSON, named by a reference the run follows
    (:data:`_FOLLOWED`: ``v``'s ``coordinates``, each CF form a carried array follows,
    ``grid_mapping``'s long form by its grid mapping and by a coordinate, ``cell_measures``
    with a stray space; the group's or another member's ``coordinates``; its coordinate
    ``x``'s ``bounds``): still refused in one line naming the file, the same for plan and
    run, nothing written, whatever free text beside it says."""
    src = tmp_path / "in.zarr"
    _dataset_with_surface(src, fmt, {"long_name": "air temperature"})
    array, attrs = _FOLLOWED[form]
    _edit_attributes(src, fmt, array, **attrs)
    cfg = write_config(tmp_path, "", tmp_path / "out.zarr", input={"store": str(src), "array": "v"})
    name = "surface/zarr.json" if fmt == 3 else "surface/.zattrs"
    before = file_states(src)
    for command in ("plan", "run"):
        rc, _, err = cli(command, cfg)
        assert rc == 1, (command, err)
        line = one_line_error(err)
        assert line == (
            f"error: {src / name}: not JSON (Expecting ':' delimiter at line 2 column 6), the "
            f"Zarr v{fmt} {'metadata' if fmt == 3 else 'attributes'} of 'surface', which 'v' "
            "names (a coordinate or reference xarray reads with it); restore it"
        ), line
    assert file_states(src) == before
    assert not (tmp_path / "out.zarr").exists()


_RUN = {"input": {"store": "in.zarr"}, "output": {"store": "out.zarr"}, "stages": STAGES}


@pytest.mark.parametrize(
    "sections, key, also",
    [
        (  # an option's problem first, in the config's order, then pydantic's
            {
                "input": {
                    "store": "s3://b/in.zarr",
                    "storage_options": {"anon": "false", "secret": "SECRETX"},
                },
                "cluster": {"workers": 0},
            },
            "input.storage_options.anon",
            " (also: cluster.workers)",
        ),
        (
            {
                "input": {"store": "s3://b/in.zarr", "storage_options": {"asynchronous": True}},
                "cluster": {"workers": 2.5, "threads_per_worker": 0},
            },
            "input.storage_options.asynchronous",
            " (also: cluster.workers, cluster.threads_per_worker)",
        ),
        (  # after an earlier key's problem (the input's array), and an unknown key
            {
                "input": {
                    "store": "s3://b/in.zarr",
                    "array": "../x",
                    "storage_options": {"anon": "false"},
                },
                "output": {"store": "out.zarr", "storage_options": {"asynchronous": True}},
            },
            "input.array",
            " (also: input.storage_options.anon)",
        ),
        (
            {
                "input": {"store": "s3://b/in.zarr", "storage_options": {"anon": "false"}},
                "cluster": {"wrokers": 2},
            },
            "cluster.wrokers",
            " (also: input.storage_options.anon)",
        ),
    ],
    ids=["text-bool", "asynchronous", "after-an-earlier-key", "after-an-unknown-key"],
)
def test_a_storage_option_problem_is_one_of_the_config_problems(
    tmp_path: Path, cli, sections: dict[str, Any], key: str, also: str
) -> None:
    """A storage option's problem (``anon: 'false'``, ``asynchronous: true``) was said alone,
    the config's other problems (a bad ``cluster.workers``) unsaid: it is one of them, in the
    config's order, with " (also: ...)" naming the rest, as pydantic's problems are said; the
    same from a file, the command line, an override, a mapping, the constructor and
    ``model_validate`` (fix42-A)."""
    import yaml

    from pipeline.config import Config, load_config, parse_config

    doc = {**_RUN, **sections}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    errors = []
    for make in (
        lambda: parse_config(doc),
        lambda: Config(**doc),
        lambda: Config.model_validate(doc),
        lambda: load_config(path),
    ):
        with pytest.raises(ConfigError) as e:
            make()
        errors.append(e.value)
        assert e.value.key == key and str(e.value).endswith(also), e.value
        assert len(str(e.value).splitlines()) == 1 and "SECRETX" not in str(e.value)
    assert errors[-1].line is not None
    said = str(errors[0]).removeprefix("<config>: ")
    assert [str(e) for e in errors[1:]] == [
        f"pipeline.Config(): {said}",
        f"pipeline.Config.model_validate(): {said}",
        f"{path}:{errors[-1].line}: {said}",
    ]
    rc, _, err = cli("plan", path)
    assert rc == 1 and one_line_error(err) == f"error: {errors[-1]}"
    # set by an override: named as the override, the file's problems after it
    first = key.split(".")[0]
    base = {k: v for k, v in doc.items() if k != first}
    path.write_text(yaml.safe_dump(base, sort_keys=False))
    with pytest.raises(ConfigError) as e:
        load_config(path, overrides={first: doc[first]})
    assert str(e.value) == f"override {key!r} (given with {path}, not read from it): {said}"


@pytest.mark.parametrize(
    "sections, parent",
    [
        ({"cluster": {"": 2}}, "cluster"),
        ({"output": {"store": "out.zarr", "codec": {"": 1}}}, "output.codec"),
        ({"": 1}, "(top level)"),
    ],
    ids=["cluster", "nested", "top-level"],
)
def test_an_empty_key_name_is_said_to_be_one(
    tmp_path: Path, cli, sections: dict[str, Any], parent: str
) -> None:
    """``cluster: {"": 2}`` was "unknown key 'cluster.'" (and ``{"": 1}`` "unknown key '(top
    level)'"), where the override 'cluster.' is said to have an empty part: an empty key's
    name is said to be one, with the keys its section takes, at its line, from a file, the
    command line, a mapping and an override alike (fix42-A)."""
    import yaml

    from pipeline.config import Config, load_config, parse_config

    doc = {**_RUN, **sections}
    said = f"{parent}: a key's name is empty (''), which names no key: write the key meant"
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    line = 1 + next(i for i, t in enumerate(path.read_text().splitlines()) if "''" in t)
    key = None if parent == "(top level)" else f"{parent}."
    for make, where in (
        (lambda: parse_config(doc), "<config>"),
        (lambda: Config(**doc), "pipeline.Config()"),
        (lambda: load_config(path), f"{path}:{line}"),
    ):
        with pytest.raises(ConfigError) as e:
            make()
        assert str(e.value).startswith(f"{where}: {said}, or delete it (valid keys: "), e.value
        assert "unknown key" not in str(e.value) and len(str(e.value).splitlines()) == 1
        assert e.value.key == key
    rc, _, err = cli("plan", path)
    assert rc == 1 and one_line_error(err).startswith(f"error: {path}:{line}: {said}")
    if key is not None:
        first = parent.split(".")[0]
        path.write_text(yaml.safe_dump({k: v for k, v in _RUN.items() if k != first}))
        with pytest.raises(ConfigError) as e:
            load_config(path, overrides={first: doc[first]})
        assert str(e.value).startswith(
            f"override {key!r} (given with {path}, not read from it): {said}"
        )
    # among the other problems, named as an empty name too
    with pytest.raises(ConfigError) as e:
        parse_config({**doc, "input": {"store": "in.zarr", "arary": ""}})
    assert str(e.value).startswith("<config>: unknown key 'input.arary'")
    assert str(e.value).endswith(f" (also: {key or ''}'')"), e.value


@pytest.mark.parametrize(
    "store, options, key, said",
    [
        ("s3://b/in.zarr", {"": "SECRETX"}, "input.storage_options.", "input.storage_options: "),
        ("in.zarr", {"a.b": "SECRETX"}, "input.storage_options.***", "holds a dot"),
        ("s3://b/in.zarr", {"secret:SECRETX.y": 1}, "input.storage_options.***", "a dot"),
        (
            "s3://b/in.zarr",
            {"client_kwargs": {"region.name": "SECRETX"}},
            "input.storage_options.client_kwargs.***",
            "such as client_kwargs: {region_name: ...}",
        ),
        (
            "memory://in.zarr",
            {"client_kwargs": {"": "SECRETX"}},
            "input.storage_options.client_kwargs.",
            "input.storage_options.client_kwargs: an option's name is empty",
        ),
        (
            "https://h/in.zarr",
            {"headers": {"": "SECRETX"}},
            "input.storage_options.headers.",
            "input.storage_options.headers: a header's name is empty",
        ),
    ],
    ids=["empty", "dotted", "flow-secret", "nested-dotted", "nested-empty", "header-empty"],
)
def test_an_option_name_empty_or_dotted_is_refused_where_the_config_is_read(
    tmp_path: Path, cli, store: str, options: dict[str, Any], key: str, said: str
) -> None:
    """A storage option named '' or with a dot in its name (``{"a.b": 1}``, or YAML's
    ``{secret:VALUE.x}``, no space after the colon, one option named so) was taken by the
    config and refused only by the file system, when the plan opened the store, with no line
    of the file (a local store's took it silently): it is refused where the config is read,
    at the option's line, the override or the call, its name (which may be the value) and
    value never said (fix42-A). A header's or query parameter's name may hold a dot."""
    import yaml

    from pipeline.config import Config, load_config

    doc = {**_RUN, "input": {"store": store, "storage_options": options}}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    inner = options
    while isinstance(next(iter(inner.values())), dict):
        inner = next(iter(inner.values()))
    name = next(iter(inner)) or "''"  # the option's own line, in block style
    lines = path.read_text().splitlines()
    line = 1 + next(i for i, t in enumerate(lines) if i > 2 and name in t)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    f = e.value
    assert "SECRETX" not in str(f) and said in str(f) and len(str(f).splitlines()) == 1, f
    assert (f.file, f.key, f.line) == (str(path), key, line), f
    assert "(its value is not said here)" in str(f)
    rc, _, err = cli("plan", path)
    assert rc == 1 and one_line_error(err) == f"error: {f}"
    with pytest.raises(ConfigError) as e:
        Config(**doc)
    assert str(e.value) == str(f).replace(f"{path}:{line}", "pipeline.Config()")
    path.write_text(yaml.safe_dump({**_RUN, "input": {"store": store}}))
    with pytest.raises(ConfigError) as e:
        load_config(path, overrides={"input.storage_options": options})
    assert "SECRETX" not in str(e.value) and e.value.key == key and e.value.line is None
    assert str(e.value).startswith(f"override {key!r} (given with {path}, not read from it)")
    # a header's or a query parameter's name may hold a dot
    http = {"headers": {"X.Trace": "a"}, "params": {"filter.name": "b"}}
    assert Config(**{**_RUN, "input": {"store": "https://h/in.zarr", "storage_options": http}})
    # and a cookie's, an S3 metadata key's, a proxy's host (all three had been refused as an
    # option's name with a dot: review43), at any depth
    http = {"cookies": {"connect.sid": "a"}, "client_kwargs": {"cookies": {"a.b": "c"}}}
    assert Config(**{**_RUN, "input": {"store": "https://h/in.zarr", "storage_options": http}})
    s3 = {
        "s3_additional_kwargs": {"Metadata": {"made.by": "pipeline"}},
        "config_kwargs": {"proxies": {"http://10.0.0.1": "http://proxy.example:3128"}},
    }
    assert Config(**{**_RUN, "output": {"store": "s3://b/out.zarr", "storage_options": s3}})
    # and a proxy header's, a WebHDFS data node's address, a reference:// store's references
    # given as its fo (each had been refused as an option's name with a dot: review44)
    http = {"proxy_headers": {"X.Proxy-Trace": "a"}}
    assert Config(**{**_RUN, "input": {"store": "https://h/in.zarr", "storage_options": http}})
    hdfs = {"data_proxy": {"dn1.cluster.local:9864": "localhost:9864"}}
    assert Config(**{**_RUN, "input": {"store": "webhdfs://nn:9870/in", "storage_options": hdfs}})
    for fo in ({".zgroup": '{"zarr_format": 2}'}, {"version": 1, "refs": {"x/0.0": ["a", 0, 9]}}):
        assert Config(**{**_RUN, "input": {"store": "reference://", "storage_options": {"fo": fo}}})
    with pytest.raises(ConfigError) as e:  # only a name that is empty is no cookie's
        Config(
            **{
                **_RUN,
                "input": {
                    "store": "https://h/in.zarr",
                    "storage_options": {"cookies": {"": "SECRETX"}},
                },
            }
        )
    assert "a cookie's name is empty" in str(e.value) and "SECRETX" not in str(e.value)


@pytest.mark.parametrize(
    "output, said",
    [
        (  # had written the folder 'out.zarr ' beside out.zarr, without a word
            {"store": "out.zarr "},
            "output.store: 'out.zarr ' begins or ends with a space (or a tab or line break), "
            "which the written folder's name would keep, another than 'out.zarr': write it "
            "without",
        ),
        (
            {"store": "out.zarr", "array": "results /air5"},
            "output.array: 'results /air5' has a part that begins or ends with a space",
        ),
        (  # had made a folder zarr.json where out.zarr's metadata document goes
            {"store": "out.zarr/zarr.json"},
            "output.store: 'out.zarr/zarr.json' has a part named 'zarr.json', the name of a "
            "Zarr store's own file, not of a store: give the store's folder ('out.zarr')",
        ),
        ({"store": "out.zarr/.zgroup/x"}, "has a part named '.zgroup'"),
        (  # a Zarr folder that xr.open_dataset takes for netCDF by its name
            {"store": "air.nc"},
            "output.store: 'air.nc' is named as a netCDF file, but the output is a Zarr store "
            "(a folder), which xarray's open_dataset would take for a netCDF file by its "
            "name: name it 'air.zarr'",
        ),
        ({"store": "s3://bkt/air.H5"}, "is named as an HDF5 file"),
    ],
)
def test_an_output_named_to_be_written_elsewhere_than_meant_is_refused_at_its_line(
    tmp_path: Path, output: dict[str, str], said: str
) -> None:
    """An output store or array whose name would write the output somewhere else than meant,
    or as what readers do not open, silently: refused at its line, before anything is read
    or written. Names with spaces inside them stay names."""
    import yaml

    from pipeline.config import load_config

    path = tmp_path / "run.yaml"
    path.write_text(
        yaml.safe_dump(
            {"input": {"store": "in.zarr"}, "output": output, "stages": [{"op": "square"}]}
        )
    )
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert said in str(e.value), str(e.value)
    assert e.value.line is not None and "\n" not in str(e.value)
    fine = {"input": {"store": "in.zarr"}, "output": {"store": "my out.zarr", "array": "a b"}}
    path.write_text(yaml.safe_dump({**fine, "stages": [{"op": "square"}]}))
    assert load_config(path).output.array == "a b"


@pytest.mark.parametrize(
    "section, key, said",
    [
        ("input", "store", "input.store: the store's path or URL holds a NUL character"),
        ("input", "array", "input.array: the array's path holds a NUL character"),
        ("output", "store", "output.store: the store's path or URL holds a NUL character"),
        ("output", "array", "output.array: the array's path holds a NUL character"),
    ],
)
def test_a_path_holding_a_nul_character_is_refused_at_its_line(
    tmp_path: Path, cli, section: str, key: str, said: str
) -> None:
    """A store's or array's path with a NUL character in it (YAML's ``"\\0"``), which no file
    or object name holds, is refused at its line naming the key and the fix (h78d: the run
    stopped with ``error: ValueError: embedded null byte``, naming neither), before anything
    is read or written."""
    make_array(tmp_path / "in.zarr", np.arange(8, dtype="f4"), chunks=(4,))
    cfg = {
        "input": {"store": str(tmp_path / "in.zarr")},
        "output": {"store": str(tmp_path / "out.zarr")},
    }
    cfg[section][key] = f"{cfg[section].get(key, '')}a\0b"
    body = "".join(
        f"{name}:\n" + "".join(f'  {k}: "{v}"\n' for k, v in sec.items())
        for name, sec in cfg.items()
    )
    path = tmp_path / "run.yaml"
    path.write_text(body.replace("\0", "\\0") + "stages:\n  - op: square\n")
    before = file_states(tmp_path / "in.zarr")
    rc, _, err = cli("plan", path)
    assert rc == 1
    line = one_line_error(err)
    assert said in line and "write it without" in line and "run.yaml:" in line, line
    assert "ValueError" not in line, line
    assert file_states(tmp_path / "in.zarr") == before and not (tmp_path / "out.zarr").exists()


_TOP = "input:\n  store: in.zarr\noutput:\n  store: out.zarr\n"


@pytest.mark.parametrize(
    "text, line, said",
    [
        (  # a stage's key left of its op: "expected <block end>, but found '?'"
            _TOP + "stages:\n  - op: multiply\n  factor: 2\n",
            7,
            "line 7 ('factor: 2') is indented less than the keys above it",
        ),
        (  # "expected <block end>, but found '<block mapping start>'"
            "input:\n    store: in.zarr\n  array: a\n",
            3,
            "line 3 ('array: a') is indented less than the keys above it",
        ),
        (  # "mapping values are not allowed here", said of line 3
            "input:\n  store: in.zarr\n    array: a\n",
            3,
            "line 3 ('array: a') is indented more than line 2 ('store: in.zarr') above it",
        ),
        (
            _TOP + "stages:\n  - op: multiply\n      factor: 2\n",
            7,
            "line 7 ('factor: 2') is indented more than line 6 ('- op: multiply') above it",
        ),
        (  # PyYAML fails at line 3, the line after the one to mend
            "input:\n  store:in.zarr\n  array: a\n",
            2,
            "line 2 ('store:in.zarr') has no space after its colon, so YAML reads it as text, "
            "not as a key: write 'store: in.zarr'",
        ),
        (
            "input:\n  store in.zarr\n  array: a\n",
            2,
            "line 2 ('store in.zarr') has no ':' after its key",
        ),
        (
            "input:\n  store: in.zarr\n  array: a: b\n",
            3,
            "line 3 ('array: a: b') holds ': ' in its value: quote the value",
        ),
        (  # "found unexpected end of stream", at the file's end
            "input:\n  store: 'in.zarr\noutput:\n  store: out.zarr\n",
            2,
            'the quote opened at line 2 ("store: \'in.zarr") is never closed',
        ),
        (
            "input: {store: in.zarr\noutput:\n  store: out.zarr\n",
            1,
            "the '{' at line 1 ('input: {store: in.zarr') is not closed by '}'",
        ),
        ("input:\n\tstore: in.zarr\n", 2, "line 2 is indented with a tab"),
        ("input:\n  store: in.zarr \t# a comment\n", 2, "line 2 holds a tab at column 18"),
    ],
)
def test_a_yaml_mistake_is_said_at_the_line_to_mend_with_its_fix(
    tmp_path: Path, text: str, line: int, said: str
) -> None:
    """PyYAML's words name no fix a new user can act on ("expected <block end>, but found
    '?'", "mapping values are not allowed here" at the line after a key written without
    its space), and some at another line than the one to mend: the line says the mistake,
    where it is, and its fix, PyYAML's words kept after it."""
    from pipeline.config import load_config

    path = tmp_path / "run.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert str(e.value).startswith(f"{path}:{line}: malformed YAML: {said}"), str(e.value)
    assert "(YAML: " in str(e.value) and "\n" not in str(e.value)
    assert e.value.line == line and e.value.key is None


@pytest.mark.parametrize(
    "text, line",
    [
        (_TOP + "cluster: {workers: !!int two}\nstages:\n  - op: square\n", 5),
        (_TOP + "stages:\n  - op: multiply\n    factor: !!float '0x10'\n", 7),
        (_TOP + "stages:\n  - op: add\n    value: !!bool 5\n", 7),
        (_TOP + "overwrite: !!timestamp 5\nstages:\n  - op: square\n", 5),
    ],
)
def test_a_value_its_yaml_tag_cannot_read_is_said_at_its_line(
    tmp_path: Path, text: str, line: int
) -> None:
    """A value that its explicit tag's constructor fails on (``!!int two``, ``!!float
    '0x10'``, ``!!bool 5``, ``!!timestamp 5``) had raised Python's ValueError, KeyError or
    AttributeError out of the loader: ``error: KeyError: '5'``, no file, line nor fix (h81b).
    Now one line at the value's line, naming the tag and the fix."""
    from pipeline.config import load_config

    path = tmp_path / "run.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    said = str(e.value)
    assert said.startswith(f"{path}:{line}:") and "malformed YAML: " in said, said
    assert "its tag !!" in said and "without the tag" in said and "\n" not in said, said
    assert e.value.line == line


@pytest.mark.parametrize(
    "sections, key, said",
    [
        (
            {"cluster": {"workers": 2.5}},
            "cluster.workers",
            "a whole number from 1 to 65536 (got 2.5)",
        ),
        ({"cluster": {"workers": 0}}, "cluster.workers", "a whole number from 1 to 65536 (got 0)"),
        (
            {"cluster": {"threads_per_worker": "2.5"}},
            "cluster.threads_per_worker",
            "a whole number from 1 to 65536 (got '2.5')",
        ),
        (
            {"output": {"store": "out.zarr", "codec": {"level": 1.5}}},
            "output.codec.level",
            "a whole number from -7 to 22 (got 1.5)",
        ),
        (
            {"cluster": {"timeout": 0}},
            "cluster.timeout",
            "a number greater than 0 and at most 604800 (got 0)",
        ),
        # no bound had been set above: .inf passed, and joining a scheduler failed in
        # Python's "OverflowError: timestamp out of range for platform time_t" (review43)
        (
            {"cluster": {"timeout": float("inf")}},
            "cluster.timeout",
            "a number greater than 0 and at most 604800 (got inf)",
        ),
        (
            {"cluster": {"timeout": 1e12}},
            "cluster.timeout",
            "a number greater than 0 and at most 604800 (got 1000000000000.0)",
        ),
        (
            {"chunking": {"target_bytes": 0}},
            "chunking.target_bytes",
            "a size in bytes of at least 1 (or text such as '16GiB') (got 0)",
        ),
        (
            {"cluster": {"gpus": [0, 1.5]}},
            "cluster.gpus.1",
            "a whole number from 0 to 65535 (got 1.5)",
        ),
        ({"backend": "tpu"}, "backend", "auto, gpu or cpu (got 'tpu')"),
    ],
)
def test_a_number_out_of_its_kind_or_bounds_is_said_as_what_the_key_takes(
    tmp_path: Path, sections: dict[str, Any], key: str, said: str
) -> None:
    """``cluster.workers: 2.5`` was "Input should be a valid integer, got a number with a
    fractional part", ``workers: 0`` "Input should be greater than 0", pydantic's own words:
    the line says what the key takes, from the schema, as the other lines do (fix42-A)."""
    import yaml

    from pipeline.config import Config, load_config

    doc = {**_RUN, **sections}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert str(e.value) == f"{path}:{e.value.line}: {key}: must be {said}"
    assert e.value.key == key and e.value.line is not None
    with pytest.raises(ConfigError) as e:
        Config(**doc)
    assert str(e.value) == f"pipeline.Config(): {key}: must be {said}"


@pytest.mark.parametrize(
    "sections, key, said",
    [
        (
            {"input": "s3://AKID:SECRETX@b/in.zarr"},
            "input",
            "a mapping of its keys (store, array, storage_options, generate, mask_and_scale), "
            "not text ('s3://***@b/in.zarr')",
        ),
        (
            {"output": {"store": "out.zarr", "codec": ["zstd"]}},
            "output.codec",
            "a mapping of its keys (name, level, checksum, store_raw_below), not a list",
        ),
        (
            {"cluster": 4},
            "cluster",
            "a mapping of its keys (scheduler, gpus, workers, threads_per_worker, "
            "workers_per_gpu, mps, device_memory_limit, host_memory_limit, protocol, timeout, "
            "dashboard), not a number (4)",
        ),
    ],
)
def test_a_section_given_as_no_mapping_is_said_as_what_it_takes(
    tmp_path: Path, sections: dict[str, Any], key: str, said: str
) -> None:
    """``input:`` left empty, or given a store's URL, or ``codec: [zstd]``: pydantic's own
    words, "Input should be a valid dictionary or instance of InputConfig" (a class of the
    code; "Input should be an object" from model_validate_json), were the line. Said as what
    the section takes, its keys, and what it was given, never a URL's credentials, in a file
    as through the API (review43)."""
    import yaml

    from pipeline.config import Config, load_config

    doc = {**_RUN, **sections}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert str(e.value) == f"{path}:{e.value.line}: {key}: must be {said}"
    assert e.value.key == key and "SECRETX" not in str(e.value)
    with pytest.raises(ConfigError) as e:
        Config(**doc)
    assert str(e.value) == f"pipeline.Config(): {key}: must be {said}"


@pytest.mark.parametrize(
    "sections, key, said",
    [
        (
            {"cluster": {"host_memory_limit": "12XB"}},
            "cluster.host_memory_limit",
            "not a size: '12XB' (write e.g. '16GiB' or '500MB')",
        ),
        (
            {"chunking": {"target_bytes": "-1GiB"}},
            "chunking.target_bytes",
            "not a size: '-1GiB' is less than one byte (write e.g. '16GiB')",
        ),
        (  # h72t: a percentage had been told "not a size (write e.g. '16GiB' or '500MB')",
            {"cluster": {"host_memory_limit": "80%"}},  # the fraction the key takes unsaid
            "cluster.host_memory_limit",
            "'80%' is a percentage, which is no size: write the fraction it means, 0.8 (or a "
            "size such as '16GiB', or auto)",
        ),
        (
            {"cluster": {"device_memory_limit": " 12.5 %"}},
            "cluster.device_memory_limit",
            "' 12.5 %' is a percentage, which is no size: write the fraction it means, 0.125 "
            "(or a size such as '16GiB', or auto)",
        ),
        (  # a key that takes no fraction is told what it takes
            {"chunking": {"target_bytes": "80%"}},
            "chunking.target_bytes",
            "not a size: '80%' (write e.g. '16GiB' or '500MB')",
        ),
    ],
)
def test_a_value_the_line_quotes_is_not_said_again(
    tmp_path: Path, sections: dict[str, Any], key: str, said: str
) -> None:
    """``host_memory_limit: 12XB`` was "not a size: '12XB' (write e.g. '16GiB' or '500MB')
    (got '12XB')": the value said twice; once is enough (review43)."""
    import yaml

    from pipeline.config import load_config

    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({**_RUN, **sections}, sort_keys=False))
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert str(e.value) == f"{path}:{e.value.line}: {key}: {said}"


_NOT_TEXT = ", as YAML reads an unquoted number, true/false, null or date: quote it, or write"


@pytest.mark.parametrize(
    "text, key, said",
    [
        ("cluster: {1: 2}", "cluster", "a key's name must be text, not 1 (a number)"),
        ("cluster: {null: 2}", "cluster", "a key's name must be text, not null"),
        (
            "output: {store: out.zarr, 2024-01-01: x}",
            "output",
            "a key's name must be text, not 2024-01-01 (a date or time)",
        ),
        ("1: 2", "(top level)", "a key's name must be text, not 1 (a number)"),
    ],
)
def test_a_key_yaml_reads_as_no_text_is_said_with_the_keys_its_section_takes(
    tmp_path: Path, text: str, key: str, said: str
) -> None:
    """``cluster: {1: 2}`` was pydantic's "cluster.1: Keys should be strings (got 1)", and a
    date "input.datetime.date(2024, 1, 1): Keys should be strings (got datetime.date(2024,
    1, 1))": said as the section's, what it takes, and the fix (review43)."""
    import yaml

    from pipeline.config import load_config

    doc = {k: v for k, v in _RUN.items() if not text.startswith(f"{k}:")}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False) + text + "\n")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    line = str(e.value)
    assert line.startswith(f"{path}:{e.value.line}: {key}: {said}{_NOT_TEXT} the key meant")
    assert "Keys should be strings" not in line and "datetime" not in line, line


@pytest.mark.parametrize(
    "text, line, key, where",
    [
        # the line in the text (from 1) after the config's own; lines said the same way
        ("cluster: {workers: 1}\ncluster: {workers: 2}\n", 2, "cluster", "at lines {1} and {2}"),
        ("cluster: {workers: 1, workers: 2}\n", 1, "cluster.workers", "both on this line"),
        (
            "cluster:\n  dashboard: ''\n  workers: 1\n  workers: 2\n",
            4,
            "cluster.workers",
            "at lines {3} and {4}",
        ),
    ],
)
def test_a_key_given_twice_is_refused_at_its_second_line(
    tmp_path: Path, text: str, line: int, key: str, where: str
) -> None:
    """Two ``cluster:`` sections, or ``workers`` twice in one: PyYAML keeps the last, and
    the first was dropped without a word (review43). Refused at the second, naming the
    first; an option's name in storage_options is not said; a merge (``<<:``) overridden by
    the mapping's own key is no key given twice."""
    import yaml

    from pipeline.config import load_config

    path = tmp_path / "run.yaml"
    own = yaml.safe_dump(_RUN, sort_keys=False)
    path.write_text(own + text)
    n = len(own.splitlines())
    line += n
    where = where.format(*(n + i for i in range(5)))
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert str(e.value) == (
        f"{path}:{line}: {key}: this key is given twice in one mapping ({where}); YAML keeps "
        "only the last, and the first would be lost without a word: keep one, merging what "
        "they set"
    )
    assert (e.value.line, e.value.key) == (line, key)
    options = '{"secret:SECRETX": 1, "secret:SECRETX": 2}'
    path.write_text(f"input: {{store: s3://b/in.zarr, storage_options: {options}}}\n")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert "SECRETX" not in str(e.value) and e.value.key == "input.storage_options", e.value
    assert ": an option (its name not said here) is given twice" in str(e.value), e.value
    # named at the mapping that holds it, as what it is there: a header, not an option; and
    # storage_options itself given twice is a key given twice (review44)
    for options, key, what in [
        (
            '{client_kwargs: {headers: {"a.SECRETX": 1, "a.SECRETX": 2}}}',
            ".client_kwargs.headers",
            "a header (its name not said here)",
        ),
        ("{anon: true}, storage_options: {anon: false}", "", "this key"),
    ]:
        path.write_text(f"input: {{store: s3://b/in.zarr, storage_options: {options}}}\n")
        with pytest.raises(ConfigError) as e:
            load_config(path)
        key = f"input.storage_options{key}"
        assert str(e.value).startswith(f"{path}:1: {key}: {what} is given twice "), e.value
        assert "SECRETX" not in str(e.value) and e.value.key == key, e.value
    path.write_text(
        yaml.safe_dump(_RUN, sort_keys=False) + "cluster:\n  <<: {workers: 1}\n  workers: 2\n"
    )
    assert load_config(path).cluster.workers == 2


def test_a_stages_number_a_merge_brings_is_read_as_its_own(tmp_path: Path) -> None:
    """A stage's parameter that a merge brings (``- <<: *m``) is read as YAML 1.2, as the
    stage's own is: ``&m {op: multiply, factor: 1e3}`` was 1000.0 and the stage merged from
    it had been refused as text (review44). Its own key overrides the merge's, a later
    ``<<:`` an earlier one's, in a list of merges the first, as PyYAML reads them."""
    from pipeline.config import load_config

    path = tmp_path / "run.yaml"
    head = "input: {store: in.zarr}\noutput: {store: out.zarr}\nstages:\n"
    a, b = "  - &a {op: multiply, factor: 1e3}\n", "  - &b {op: multiply, factor: 2e3}\n"
    for stage, factor in [
        ("  - <<: *a\n", 1e3),
        ("  - <<: *a\n    factor: 3e3\n", 3e3),
        ("  - {<<: *a, <<: *b}\n", 2e3),
        ("  - <<: [*a, *b]\n", 1e3),
    ]:
        path.write_text(head + a + b + stage)
        factors = [s.factor for s in load_config(path).stages]
        assert factors == [1e3, 2e3, factor], (stage, factors)
    path.write_text(head + a + "  - <<: *a\n    factor: '3e3'\n")  # quoted: text, as before
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert e.value.key == "stages.1.factor" and e.value.line == 6, e.value


@pytest.mark.parametrize(
    ("text", "line", "key"),
    [
        ("input: &a {store: in.zarr, storage_options: {x: *a}}\n", 1, "input.storage_options.x"),
        (
            "input: {store: in.zarr, storage_options: {x: &l [1, *l]}}\n",
            1,
            "input.storage_options.x.1",
        ),
        ("input:\n  &a store: in.zarr\ncluster: &c\n  workers: 1\n  x: [*c]\n", 5, "cluster.x.0"),
    ],
)
def test_an_alias_inside_its_own_anchor_is_one_line(
    tmp_path: Path, cli, text: str, line: int, key: str
) -> None:
    """An alias used inside its own anchor's mapping or list makes a config that holds
    itself without end: reading it had failed in Python's RecursionError, not a line
    (review44). One line at the alias's key."""
    from pipeline.config import load_config

    path = tmp_path / "run.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert (e.value.line, e.value.key) == (line, key), e.value
    assert str(e.value).startswith(f"{path}:{line}: {key}: an alias of a mapping or list "), e
    rc, _, err = cli("plan", path)
    assert rc == 1 and one_line_error(err) == f"error: {e.value}"


def test_no_numeric_key_is_refused_in_pydantics_words() -> None:
    """The kind, not a list: every key outside the stages that takes a number, or a list of
    them (found from the schema), given text, a fraction, or a number beyond any bound, is
    refused in the pipeline's words, never pydantic's ("Input should be ...") (fix42-A)."""
    from pipeline.config import Config, parse_config
    from pipeline.config.models import Model
    from pipeline.config.problems import wanted

    def keys(model: Any, at: tuple) -> Any:
        for name, f in model.model_fields.items():
            for arg in [f.annotation, *getattr(f.annotation, "__args__", ())]:
                if isinstance(arg, type) and issubclass(arg, Model):
                    yield from keys(arg, (*at, name))
                    break
            else:
                yield (*at, name)

    numeric = [k for k in keys(Config, ()) if "number" in wanted(Config, k) and "stages" not in k]
    assert len(numeric) >= 12, numeric
    for loc in numeric:
        listed = "list of" in wanted(Config, loc)
        for bad in ("x", 2.5, -(10**12), 10**12):
            doc: dict[str, Any] = json.loads(json.dumps(_RUN))
            doc["input"]["generate"] = {"shape": [4]}
            target = doc
            for part in loc[:-1]:
                target = target.setdefault(part, {})
            if "store" not in target and loc[0] in ("input", "output") and len(loc) == 2:
                target["store"] = "x.zarr"
            target[loc[-1]] = [bad] if listed else bad
            try:
                parse_config(doc)
            except ConfigError as e:
                assert "Input should" not in str(e) and len(str(e).splitlines()) == 1, e


_HEAD = "# the job\n# (two lines of comments)\ninput: {store: in.zarr}\noutput: {store: out.zarr}\n"


@pytest.mark.parametrize(
    "text, line, key, said",
    [
        # a key YAML reads as no text: found by what PyYAML made of it, not by its text
        (_HEAD + "stages: [{op: square}]\n1: 2\n", 6, "1", "(top level): a key's name"),
        (_HEAD + "stages: [{op: square}]\nyes: 2\n", 6, "1", "(top level): a key's name"),
        (_HEAD + "stages: [{op: square}]\nnull: 2\n", 6, "None", "(top level): a key's name"),
        (
            _HEAD + "stages: [{op: square}]\n2024-01-01: 2\n",
            6,
            "2024-01-01",
            "(top level): a key's name",
        ),
        (_HEAD + "stages: [{op: square}]\ncluster:\n  workers: 1\n  0x1: 2\n", 8, "cluster.1", ""),
        # a key a merge brings: at its line in the mapping merged, where it is written
        (_HEAD + "stages: [{op: square}]\nx: &b {bogus: 1}\n<<: *b\n", 6, "bogus", "unknown key"),
        ("base: &b\n  bogus: 1\n" + _HEAD + "stages: [{op: square}]\n<<: *b\n", 2, "bogus", ""),
        (_HEAD + "stages: [{op: square}]\n<<: [{cluster: 4}]\n", 6, "cluster", "cluster: must"),
        (
            _HEAD + "stages: [{op: square}]\ncluster:\n  <<: {workers: 0}\n",
            7,
            "cluster.workers",
            "",
        ),
        # a key after comments, after other sections, in a flow mapping: at its own line
        (_HEAD + "stages: [{op: square}]\nbogus: 1\n", 6, "bogus", "unknown key 'bogus'"),
        (_HEAD + "stages: [{op: square}]\ncluster: 4\n", 6, "cluster", "cluster: must be"),
        ("{input: {store: in.zarr},\n output: {store: o.zarr},\n stages: [],\n x: 1}", 4, "x", ""),
    ],
)
def test_a_top_level_key_is_said_at_its_own_line(
    tmp_path: Path, text: str, line: int, key: str, said: str
) -> None:
    """A key YAML reads as no text (``1:``, ``yes:``, ``null:``, a date), or one a merge
    brings (``<<: *base``), was looked for by its text, or not at all, so said at the line of
    the mapping holding it: line 1 of the file (or its first key's), for a top-level key."""
    from pipeline.config import load_config

    path = tmp_path / "run.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert (e.value.line, e.value.key) == (line, key), e.value
    assert str(e.value).startswith(f"{path}:{line}: {said}"), e.value


def _bomb(levels: int, merges: bool, at: str = "") -> str:
    """An alias bomb ("billion laughs"): ``levels`` lists (or mappings merging) of ten
    aliases of the one before, 10**levels values written out; under ``at`` (a key of
    storage_options) where given, else as top-level keys."""
    names = [f"l{i}" for i in range(levels)]
    if merges:
        rows = [f"&{names[0]} {{" + ", ".join(f"k{i}: {i}" for i in range(10)) + "}"]
        rows += [
            f"&{n} {{<<: [{', '.join([f'*{p}'] * 10)}]}}" for p, n in itertools.pairwise(names)
        ]
    else:
        rows = [f"&{names[0]} [{', '.join(['x'] * 10)}]"]
        rows += [f"&{n} [{', '.join([f'*{p}'] * 10)}]" for p, n in itertools.pairwise(names)]
    if at:
        body = "".join(f"    {n}: {r}\n" for n, r in zip(names, rows, strict=True))
        return f"input:\n  store: in.zarr\n  storage_options:\n{body}output: {{store: o.zarr}}\n"
    return (
        "".join(f"{n}: {r}\n" for n, r in zip(names, rows, strict=True))
        + "input: {store: in.zarr}\n"
    )


@pytest.mark.parametrize("merges", [False, True], ids=["lists", "merges"])
@pytest.mark.parametrize("at", ["", "x"], ids=["top", "storage_options"])
def test_an_alias_bomb_is_one_line_at_once(tmp_path: Path, merges: bool, at: str) -> None:
    """An alias bomb, ten levels of ten aliases of the level before (10**10 values written
    out), had taken hours: the checks that walk the config walked every path its aliases
    make, and PyYAML's merges copy every key they bring (a merge bomb of 6 levels took it
    1.6 s, and 6x more each level). Refused in one line at the first key holding too many,
    before PyYAML constructs it; the walks visit each node once. In a process of its own,
    with a time limit, so that without the fix it fails and does not hang."""
    path = tmp_path / "run.yaml"
    path.write_text(_bomb(10, merges, at))
    code = (
        "import sys\nfrom pipeline.config import load_config\nfrom pipeline.errors import "
        "ConfigError\ntry:\n    load_config(sys.argv[1])\nexcept ConfigError as e:\n"
        "    print(e.line, e.key, e, sep='|')\n"
    )
    try:
        done = run_python(["-c", code, path], cwd=Path(__file__).parents[1], timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("reading an alias bomb took more than 30 s")
    line, key, said = done.stdout.strip().split("|")
    # the first key holding more than 100,000: l4 (10**5 values, with its lists or keys)
    where = (8, "input.storage_options.l4") if at else (5, "l4")
    assert (int(line), key) == where, done.stdout + done.stderr
    assert said.startswith(f"{path}:{where[0]}: {where[1]}: its aliases make it "), said
    assert "more than the 100,000 a config may" in said and "\n" not in said


def test_aliases_a_config_needs_are_read(tmp_path: Path) -> None:
    """The limit on what aliases repeat leaves a config's own use of them alone: the same
    credentials for both stores, a merge of shared settings, a long list written out."""
    from pipeline.config import load_config

    path = tmp_path / "run.yaml"
    rows = ", ".join(["1"] * 50_000)
    path.write_text(
        "x-base: &o {anon: true}\ninput: {store: in.zarr, storage_options: &s {<<: *o}}\n"
        "output: {store: o.zarr, storage_options: *s}\nstages: [{op: square}]\n"
        "cluster: {<<: {workers: 2}}\n"
    )
    config = load_config(path)  # x-base: an extension field, which holds an anchor
    assert config.output.storage_options == {"anon": True} and config.cluster.workers == 2
    path.write_text(
        "input: {store: in.zarr, storage_options: &s {anon: true, fo: [" + rows + "]}}\n"
        "output: {store: o.zarr, storage_options: *s}\nstages: [{op: square}]\n"
    )
    config = load_config(path)
    assert config.output.storage_options["anon"] is True


@pytest.mark.parametrize(
    "key, said",
    [
        ("cluster.workers", "a whole number from 1 to 65536"),
        ("cluster.threads_per_worker", "a whole number from 1 to 65536"),
        ("cluster.workers_per_gpu", "a whole number from 1 to 1024"),
        ("cluster.gpus.0", "a whole number from 0 to 65535"),
        ("chunking.block.0", "a whole number from 1 to 1099511627776"),
        ("output.chunks.0", "a whole number from 1 to 1099511627776"),
        ("output.shards.0", "a whole number from 1 to 1099511627776"),
        ("input.generate.chunks.0", "a whole number from 1 to 1099511627776"),
        ("input.generate.shards.0", "a whole number from 1 to 1099511627776"),
        ("input.generate.shape.0", "a whole number from 1 to 281474976710656"),
        ("cluster.timeout", "a number greater than 0 and at most 604800"),
        ("output.codec.level", "a whole number from -7 to 22"),
    ],
)
@pytest.mark.parametrize("value", [10**23, 2**62, 1e300], ids=["1e23", "2**62", "1e300"])
def test_an_absurd_number_is_refused_at_its_key(
    tmp_path: Path, key: str, said: str, value: Any
) -> None:
    """``cluster.workers: 100000000000000000000000`` was taken, and refused by the memory plan
    as a budget of 0 B per worker; ``block: [4611686018427387904]`` (2**62) took the plan
    hours (the divisors of the shard it made), ``1e300`` was pydantic's "Unable to parse
    input string as an integer, exceeded maximum size". Each key that takes a count or a
    length has the bound no machine passes, from its schema, and is refused at its line
    with it. (Sizes in bytes, ``target_bytes`` and the memory limits, are the plan's: it
    says a budget the machine cannot give at its key; a seed may be any whole number.)"""
    import yaml

    from pipeline.config import load_config

    doc: dict[str, Any] = json.loads(json.dumps(_RUN))
    doc["input"]["generate"] = {"shape": [4]}
    *parents, last = key.split(".")
    target = doc
    for part in parents if last != "0" else parents[:-1]:
        target = target.setdefault(part, {})
    if last == "0":
        target[parents[-1]] = [value]
    else:
        target[last] = value
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert str(e.value) == f"{path}:{e.value.line}: {key}: must be {said} (got {value!r})"
    assert e.value.key == key and e.value.line is not None


_CLUSTER_KEYS = (
    "scheduler, gpus, workers, threads_per_worker, workers_per_gpu, mps, device_memory_limit, "
    "host_memory_limit, protocol, timeout, dashboard"
)


@pytest.mark.parametrize(
    "text, line, key, fix",
    [
        (  # every key commented out: YAML reads null
            "cluster:\n  # workers: 2\n  # dashboard: ''\n",
            4,
            "cluster",
            ", or delete the line, or write cluster: {}, for its defaults (it takes a mapping "
            f"of its keys: {_CLUSTER_KEYS})",
        ),
        ("chunking:\n", 4, "chunking", ", or delete the line, or write chunking: {}, for its"),
        (
            "cluster: {workers: 1}\ninput:\n  # store: in.zarr\n",
            4,
            "input",
            " (it takes a mapping of its keys: store, array, storage_options, generate, "
            "mask_and_scale)",
        ),
    ],
)
def test_a_section_left_empty_is_said_to_be_empty_with_what_to_do(
    tmp_path: Path, text: str, line: int, key: str, fix: str
) -> None:
    """A section whose keys are all commented out reads as null: it had been "must be a
    mapping of its keys (...), not null (a key left empty: its keys go on the lines below
    it, indented)", not saying that the section is empty, nor that one with defaults can be
    deleted or given as {}. A required one (input) is not offered that."""
    from pipeline.config import Config, load_config

    path = tmp_path / "run.yaml"
    head = "" if key == "input" else "input: {store: in.zarr}\n"
    path.write_text(head + "output: {store: o.zarr}\nstages: [{op: square}]\n" + text)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert str(e.value).startswith(
        f"{path}:{line}: {key}: is empty (nothing under it, or only comments, which YAML reads "
        f"as null): write its keys on the lines below it, indented{fix}"
    ), e.value
    assert (e.value.line, e.value.key) == (line, key)
    if key != "input":
        assert "delete the line" in str(e.value)
        path.write_text(path.read_text().replace(f"{key}:\n", f"{key}: {{}}\n"))
        assert load_config(path) == load_config(path)  # {} is taken: the defaults
    else:
        assert "delete" not in str(e.value) and "{}" not in str(e.value)
    with pytest.raises(ConfigError) as e:  # through the API: None, not a key left empty
        Config(**{**_RUN, key: None})
    assert f"{key}: must be a mapping of its keys" in str(e.value) and "(None)" in str(e.value)


def test_x_keys_are_extension_fields_and_other_unknown_keys_are_not(tmp_path: Path) -> None:
    """A top-level key starting with ``x-`` holds what the config shares through anchors
    (``x-base: &b {...}``), as docker-compose's extension fields do: it had been refused as
    an unknown key, so the idiom could not be used. It is ignored; any other unknown key
    (``y-c``, ``x-`` inside a section) is still refused, at its line."""
    from pipeline.config import load_config

    path = tmp_path / "run.yaml"
    shared = "x-creds: &c {anon: true}\nx-cluster: &k {workers: 2}\n"
    path.write_text(
        shared + "input: {store: in.zarr, storage_options: *c}\noutput: {store: o.zarr}\n"
        "stages: [{op: square}]\ncluster: {<<: *k, dashboard: ''}\n"
    )
    config = load_config(path)
    assert config.input.storage_options == {"anon": True} and config.cluster.workers == 2
    assert "x-creds" not in json.dumps(config.public_dict())
    for extra, line, key in [("y-c: 1\n", 6, "y-c"), ("X-c: 1\n", 6, "X-c")]:
        path.write_text(
            shared + "input: {store: in.zarr}\noutput: {store: o.zarr}\n"
            "stages: [{op: square}]\n" + extra
        )
        with pytest.raises(ConfigError) as e:
            load_config(path)
        assert (e.value.line, e.value.key) == (line, key), e.value
        assert str(e.value).startswith(f"{path}:{line}: unknown key {key!r} "), e.value
    path.write_text(
        "input: {store: in.zarr}\noutput: {store: o.zarr}\nstages: [{op: square}]\n"
        "cluster:\n  x-a: 1\n"
    )
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert (e.value.line, e.value.key) == (5, "cluster.x-a"), e.value


@pytest.mark.parametrize(
    ("generate", "said"),
    [
        ({"shape": []}, "input.generate.shape: [] makes a 0-d array"),
        ({"shape": [30, 7], "chunks": [5]}, "input.generate.chunks [5] has 1 axis, "),
        ({"shape": [30, 7], "chunks": []}, "input.generate.chunks [] has 0 axes, "),
        ({"shape": [30, 7], "shards": [10, 7, 1]}, "input.generate.shards [10, 7, 1] has 3 axes"),
    ],
)
@pytest.mark.parametrize("command", ["generate", "plan", "run"])
def test_a_generated_shape_of_no_axis_or_chunks_of_other_axes_are_one_line_and_write_nothing(
    tmp_path: Path, cli, generate: dict[str, Any], said: str, command: str
) -> None:
    """``input.generate.shape: []`` had been generated, a 0-d array, which ``generate`` then
    refused as an input, and ``run`` and ``plan`` with it; chunks or shards of another number
    of axes than the shape had been zarr-python's "ValueError: `chunk_shape` and `shape` need
    to have the same number of dimensions", naming no key (h60h). One line naming the key and
    the fix, nothing written, for ``generate``, ``plan`` and ``run`` with ``when_missing``."""
    from tests.conftest import generated_config

    cfg = generated_config(tmp_path, {**generate, "when_missing": True})
    rc, out, err = cli(command, cfg, *(["--progress", "none"] if command != "plan" else []))
    line = one_line_error(err)
    assert rc == 1 and out == "", err
    assert said in line and ("give at least one axis" in line or "one number per axis" in line)
    assert "ValueError" not in line
    assert not (tmp_path / "in.zarr").exists() and not (tmp_path / "out.zarr").exists()


@pytest.mark.parametrize(
    ("dtype", "said"),
    [
        ("foo", "input.generate.dtype: 'foo' is no NumPy dtype: give one by its name, such as "),
        ("bool", "input.generate.dtype: 'bool': the stages compute on integer and floating-"),
        ("complex64", "input.generate.dtype: 'complex64': the stages compute on integer and "),
        ("V8", "input.generate.dtype: 'V8' (|V8): the stages compute on integer and floating-"),
    ],
)
def test_a_generated_dtype_that_is_none_or_that_the_stages_do_not_take_names_the_key(
    tmp_path: Path, cli, dtype: str, said: str
) -> None:
    """``input.generate.dtype: foo`` had been NumPy's bare "TypeError: data type 'foo' not
    understood", naming no key, and ``bool`` or ``complex64`` "unsupported dtype ...; convert
    the input first", of an input the config makes (h60h): refused at the config's line,
    naming the key and what to give, before anything is written."""
    from tests.conftest import generated_config

    cfg = generated_config(tmp_path, {"shape": [30, 7], "dtype": dtype, "when_missing": True})
    for command in ("generate", "run"):
        rc, _, err = cli(command, cfg, "--progress", "none")
        line = one_line_error(err)
        assert rc == 1 and said in line and line.endswith("give one of those") == (dtype != "foo")
        assert "convert the input" not in line and "TypeError" not in line, line
    assert not (tmp_path / "in.zarr").exists() and not (tmp_path / "out.zarr").exists()


@pytest.mark.parametrize(
    "dtype, zarr_format",
    [(">f4", 3), (">f4", 2), (">i2", 3), (">u2", 2), ("<f4", 3), ("=f4", 2), ("|u1", 3)],
)
def test_a_generated_dtype_of_a_byte_order_is_stored_in_that_order(
    tmp_path: Path, cli, dtype: str, zarr_format: int
) -> None:
    """``input.generate.dtype: '>f4'`` had written a little-endian array (zarr-python's
    ``create_array`` writes the v3 bytes codec little whatever the dtype's order, and generate
    asked v2 for '<' always): the stored array is big-endian as written ('>f4' in v2, the bytes
    codec's endian 'big' in v3), its values those of the native dtype's input (the same
    seed); '<f4', '=f4' and '|u1' stay little-endian (or of no order)."""
    import zarr

    from tests.conftest import generated_config

    native = np.dtype(dtype).newbyteorder("=")
    gen = {"shape": [30, 7], "chunks": [10, 7], "seed": 5, "zarr_format": zarr_format}
    cfg = generated_config(tmp_path, {**gen, "dtype": dtype})
    assert cli("generate", cfg, "--progress", "none")[0] == 0
    arr = zarr.open_array(str(tmp_path / "in.zarr"), mode="r")
    big = np.dtype(dtype).byteorder == ">"
    if zarr_format == 2:
        assert (arr.dtype.byteorder == ">") == big
    else:
        serializer = arr.metadata.to_dict()["codecs"][0]
        if serializer["name"] == "sharding_indexed":
            serializer = serializer["configuration"]["codecs"][0]
        endian = (serializer.get("configuration") or {}).get("endian", "little")
        assert endian == ("big" if big else "little") or np.dtype(dtype).itemsize == 1
    values = arr[...]
    (tmp_path / "n").mkdir()
    cfg_n = generated_config(tmp_path / "n", {**gen, "dtype": str(native)})
    assert cli("generate", cfg_n, "--progress", "none")[0] == 0
    expected = zarr.open_array(str(tmp_path / "n" / "in.zarr"), mode="r")[...]
    assert values.dtype.newbyteorder("=") == native and expected.dtype == native
    assert np.array_equal(values, expected) and values.tobytes() != b"\0" * values.nbytes


#: A config whose lines the test knows: ``input.generate.shards`` at line 5, ``chunks`` at 6,
#: ``cluster.protocol`` at 15.
LINED = """\
input:
  store: {inp}
  generate:
    shape: [8, 6, 4]
    shards: [2, 6, 4]
    chunks: {chunks}
    dtype: float32
output:
  store: {out}
stages:
  - op: add
backend: cpu
cluster:
  dashboard: ""
  protocol: {protocol}
"""


def _lined(tmp_path: Path, chunks: str = "[1, 6, 4]", protocol: str = "auto") -> Path:
    p = tmp_path / "c.yaml"
    inp, out = tmp_path / "in.zarr", tmp_path / "out.zarr"
    p.write_text(LINED.format(inp=inp, out=out, chunks=chunks, protocol=protocol))
    return p


@pytest.mark.parametrize(
    "chunks, line, key, words",
    [
        ("[3, 6, 4]", 5, "input.generate.shards", "is not a whole multiple of chunks"),
        ("[1, 6]", 6, "input.generate.chunks", "give one number per axis"),
    ],
    ids=["not-a-multiple", "other-axes"],
)
def test_a_refusal_of_a_key_after_the_config_is_read_names_its_file_and_line(
    tmp_path: Path, cli, chunks: str, line: int, key: str, words: str
) -> None:
    """`generate` of chunks that do not tile the shards, or of another number of axes than
    the shape, is refused after the file was read (by the layout's check): its line had named
    the key alone, where every other refusal of a key names the file and line first
    (``c.yaml:6: input.generate.chunks.2: must be ...``). Now ``c.yaml:LINE: KEY ...``, with
    the fields ``file`` and ``line``, from the command line and the API, nothing written."""
    cfg = _lined(tmp_path, chunks)
    rc, _, err = cli("generate", cfg)
    assert rc == 1 and err.startswith(f"error: {cfg}:{line}: {key} "), err
    assert words in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "in.zarr").exists()
    import pipeline

    for call in (pipeline.plan, pipeline.run):
        with pytest.raises(ConfigError) as e:  # the layout is checked before the input's absence
            call(str(cfg))
        assert str(e.value).startswith(f"{cfg}:{line}: {key} "), str(e.value)
        assert (e.value.file, e.value.line, e.value.key) == (str(cfg), line, key)
    assert not (tmp_path / "in.zarr").exists() and not (tmp_path / "out.zarr").exists()


def test_a_plan_refusal_of_a_key_names_its_file_and_line(tmp_path: Path, cli) -> None:
    """`plan` of ``cluster.protocol: ucx`` on a local CPU cluster, refused by the plan, names
    the file and line of the key as a refusal of the file's own reading does; the API's
    :func:`pipeline.plan` of the file too."""
    assert cli("generate", _lined(tmp_path))[0] == 0
    cfg = _lined(tmp_path, protocol="ucx")
    rc, _, err = cli("plan", cfg)
    assert rc == 1 and err.startswith(f"error: {cfg}:15: cluster.protocol: ucx is for"), err
    import pipeline

    with pytest.raises(ConfigError) as e:
        pipeline.plan(str(cfg))
    assert str(e.value).startswith(f"{cfg}:15: cluster.protocol: ucx is for"), str(e.value)
    assert (e.value.file, e.value.line) == (str(cfg), 15)


#: A config whose lines the test knows, of an input written by zarr-python: ``output.chunks``
#: at line 5, ``output.shards`` at 6, ``chunking.block`` at 8, ``stages.0`` at 10 (its
#: ``factor`` at 11), ``backend`` at 12, ``cluster.host_memory_limit`` at 16; one task thread
#: (line 17), so its memory is the same on any machine.
PLANNED = """\
input:
  store: {inp}
output:
  store: {out}
  chunks: {chunks}
  shards: {shards}
chunking:
  block: {block}
stages:
  - op: multiply
    factor: {factor}
backend: {backend}
integer_overflow: error
cluster:
  dashboard: ""
  host_memory_limit: {host}
  threads_per_worker: 1
"""

#: Each plan refusal of a key: (what the config changes, the key's line, the key, its words).
PLAN_REFUSALS: dict[str, tuple[dict[str, Any], int, str, str]] = {
    "shards-not-whole-chunks": (
        {"chunks": "[2, 6, 4]", "shards": "[3, 6, 4]"},
        6,
        "output.shards",
        "output.shards [3, 6, 4] is not a whole multiple of output.chunks [2, 6, 4]",
    ),
    "chunks-of-other-axes": (
        {"chunks": "[2, 6]"},
        5,
        "output.chunks",
        "output.chunks has 2 axes but the input has 3",
    ),
    "block-unaligned": (
        {"block": "[3, 6, 4]"},
        8,
        "chunking.block",
        "chunking.block [3, 6, 4] is not a whole multiple of [2, 6, 4]",
    ),
    "scalar-too-large": (
        {"factor": "1e39"},
        11,
        "stages.0.factor",
        "stage 1 (multiply): factor 1e+39 does not fit float32",
    ),
    "overflow": (
        {"dtype": "int16", "factor": "1000"},
        10,
        "stages.0",
        "stage 'multiply' can overflow int16",
    ),
    "host-budget": (
        {"host": "1000TiB"},
        16,
        "cluster.host_memory_limit",
        "cluster.host_memory_limit ",
    ),
    "gpu-without-gpu": ({"backend": "gpu"}, 12, "backend", "backend: gpu, but "),
    # memory that does not fit: the key of the setting its first fix changes
    "memory-budget-holds-no-worker": (
        {"host": "100MB"},
        16,
        "cluster.host_memory_limit",
        # in the units the budget is written in (100MB), not MiB
        "the plan does not fit the host memory budget: 419.43 MB for the worker process",
    ),
    "memory-block-too-large": (  # a task of [8, 6, 4] holds 66.67 KiB, one of [2, 6, 4] 64.96
        {"block": "[8, 6, 4]", "host": str((400 << 20) + 67000)},
        8,
        "chunking.block",
        "the plan does not fit the host memory budget: ",
    ),
    "memory-no-smaller-block": (
        {"block": "[2, 6, 4]", "host": str((400 << 20) + 3000)},
        16,
        "cluster.host_memory_limit",
        "the plan does not fit the host memory budget: ",
    ),
}


#: Shapes of another number of axes than the input's three: (what the config changes, the
#: refused key, whether its line gives an example).
OTHER_AXES: dict[str, tuple[dict[str, str], str, bool]] = {
    "block-of-one-axis": ({"block": "[3]"}, "chunking.block", True),
    "block-of-four-axes": ({"block": "[4, 6, 4, 2]"}, "chunking.block", True),
    "block-beside-chunks": ({"chunks": "[4, 3, 4]", "block": "[1]"}, "chunking.block", True),
    "chunks-of-two-axes": ({"chunks": "[2, 6]"}, "output.chunks", True),
    "chunks-beside-shards": ({"chunks": "[1]", "shards": "[4, 6, 4]"}, "output.chunks", True),
    "shards-beside-chunks": ({"chunks": "[2, 3, 4]", "shards": "[4]"}, "output.shards", True),
    "shards-of-chunks-chosen": ({"shards": "[4]"}, "output.shards", False),
}


@pytest.mark.parametrize("name", list(OTHER_AXES))
def test_a_shape_of_other_axes_is_refused_naming_a_fix_that_plans(
    tmp_path: Path, cli, name: str
) -> None:
    """h85f: ``chunking.block: [10]`` of a 2-D input was refused as "chunking.block has 1 axes
    but the input has 2 ([37, 53])", naming no fix. The line now says to give one size per
    axis, with an example the plan takes (for a block: the sizes given rounded up to the
    alignment, the input's stored units and the output's chunks, which an example of the
    input's extent had missed), or to omit it; for shards whose chunks the plan chooses, no
    example (none is sure to hold whole chunks), but what each size must be. Following
    either fix, the plan is accepted."""
    change, key, example = OTHER_AXES[name]
    fields = {"chunks": "auto", "shards": "none", "block": "auto", "factor": "2"}
    fields |= {"backend": "cpu", "host": "auto", **change}
    make_array(tmp_path / "in.zarr", np.ones((8, 6, 4), "float32"), (2, 6, 4))
    cfg = tmp_path / "c.yaml"

    def planned(**changed: str) -> tuple[int, str]:
        text = PLANNED.format(
            inp=tmp_path / "in.zarr", out=tmp_path / "out.zarr", **(fields | changed)
        )
        cfg.write_text(text)
        rc, _, err = cli("plan", cfg)
        return rc, err

    rc, err = planned()
    line = one_line_error(err)
    field = key.rpartition(".")[2]
    given = change[field].count(",") + 1
    axes = "1 axis" if given == 1 else f"{given} axes"
    assert rc == 1 and f"{key} has {axes} but the input has 3 ([8, 6, 4]): " in line, line
    assert "give 3 sizes, one per axis" in line and line.endswith("; or omit it"), line
    found = re.search(r"e\.g\. (\[[0-9, ]+\])", line)
    assert (found is not None) == example, line
    if found is not None:
        rc, err = planned(**{field: found[1]})
        assert rc == 0, (line, err)
    else:
        assert "each a whole multiple of output.chunks'" in line, line
    rc, err = planned(**{field: "none" if field == "shards" else "auto"})
    assert rc == 0, (line, err)


def _plan_refused(tmp_path: Path, name: str) -> tuple[Path, str, int, str, str]:
    """The config ``tmp_path/c.yaml`` (:data:`PLANNED`, its input an array of ones written by
    zarr-python) that the plan refuses as ``PLAN_REFUSALS[name]`` says; the test skipped where
    this machine plans it (a usable GPU for ``backend: gpu``). The file, the input's dtype,
    and the refused key's line, the key and the refusal's words."""
    change, line, key, words = PLAN_REFUSALS[name]
    if name == "gpu-without-gpu" and gpu_status()[0]:
        pytest.skip("a GPU is usable here: backend gpu is planned")
    fields = {"chunks": "auto", "shards": "none", "block": "auto", "factor": "2"}
    fields |= {"backend": "cpu", "host": "auto", **change}
    dtype = fields.pop("dtype", "float32")
    make_array(tmp_path / "in.zarr", np.ones((8, 6, 4), dtype), (2, 6, 4))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(PLANNED.format(inp=tmp_path / "in.zarr", out=tmp_path / "out.zarr", **fields))
    return cfg, dtype, line, key, words


@pytest.mark.parametrize("name", list(PLAN_REFUSALS))
def test_a_plan_refusal_of_a_key_says_where_the_key_is(tmp_path: Path, cli, name: str) -> None:
    """The plan's refusals of a key (shards that are not whole chunks, chunks of another number
    of axes, an unaligned block, a stage's scalar its dtype cannot hold, an integer stage that
    overflows, a host budget over the RAM, ``backend: gpu`` with no GPU, memory that does not
    fit) had named neither the file nor the line, where the file's own refusals and
    ConfigErrors raised after reading it begin ``c.yaml:LINE:``; each is a PlanError with the
    field ``key`` (the dotted key: those of the budgets, the stage's and ``backend`` had
    none; memory's, the setting its first fix changes) and begins so now, with the fields
    ``file`` and ``line``, from ``plan`` and the API's ``plan`` and ``run`` of the file, and
    of the :class:`~pipeline.config.Config` that ``pipeline.load_config`` read from it (which
    had said nothing of where it was written). Given as a mapping, the refusal begins ``the
    config mapping:``, as that mapping's own refusals do (``file`` 'the config mapping',
    ``line`` None). Nothing is written."""
    import yaml

    import pipeline
    from pipeline.config import load_config

    cfg, _, line, key, words = _plan_refused(tmp_path, name)
    rc, _, err = cli("plan", cfg)
    said = one_line_error(err)
    assert rc == 1 and said.startswith(f"error: {cfg}:{line}: {words}"), said
    for call in (pipeline.plan, pipeline.run):
        with pytest.raises(PlanError) as e:
            call(str(cfg))
        assert f"error: {e.value}" == said, (call, e.value)
        assert (e.value.file, e.value.line, e.value.key) == (str(cfg), line, key)
    mapping = yaml.safe_load(cfg.read_text())
    if name == "scalar-too-large":  # PyYAML reads 1e39 as text; the file's reader as YAML 1.2
        mapping["stages"][0]["factor"] = 1e39
    for call in (pipeline.plan, pipeline.run):
        with pytest.raises(PlanError) as e:
            call(mapping)
        assert str(e.value) == f"the config mapping: {said.split(': ', 2)[2]}", e.value
        assert (e.value.file, e.value.line, e.value.key) == ("the config mapping", None, key)
    loaded = load_config(cfg)
    for call in (pipeline.plan, pipeline.run):
        with pytest.raises(PlanError) as e:
            call(loaded)
        assert f"error: {e.value}" == said, (call, e.value)
        assert (e.value.file, e.value.line, e.value.key) == (str(cfg), line, key)
    assert not (tmp_path / "out.zarr").exists()


def test_a_loaded_config_s_refusal_names_the_file_as_it_was_read(tmp_path: Path) -> None:
    """A :class:`~pipeline.config.Config` that ``pipeline.load_config`` read remembers its file:
    a refusal of its key says the key's line as the file was read (lines put before it since
    do not move it), not for a key an override of the load set, and not for a copy of it
    (``model_copy``), which is no file's, nor for the same config made from a mapping; and it
    stays equal to that config, hashes and pickles as it (what it remembers is not in the
    model)."""
    import pickle

    import yaml

    import pipeline
    from pipeline.config import load_config, parse_config

    cfg, _, line, key, words = _plan_refused(tmp_path, "shards-not-whole-chunks")
    text = cfg.read_text()
    loaded = load_config(cfg)
    cfg.write_text("# a comment\n# and another\n" + text)  # edited once it was read
    with pytest.raises(PlanError) as e:
        pipeline.plan(loaded)
    assert str(e.value).startswith(f"{cfg}:{line}: {words}"), e.value
    assert (e.value.file, e.value.line, e.value.key) == (str(cfg), line, key)
    overridden = load_config(cfg, {"output.shards": [3, 6, 4]})
    same = parse_config(yaml.safe_load(text))
    for unplaced in (loaded.model_copy(), overridden, same):
        with pytest.raises(PlanError) as e:
            pipeline.plan(unplaced)
        assert str(e.value).startswith(words), e.value
        assert getattr(e.value, "file", None) is None, e.value
    assert loaded == same and hash(loaded) == hash(same)
    assert pickle.loads(pickle.dumps(loaded)) == same
    assert not (tmp_path / "out.zarr").exists()


@pytest.mark.parametrize("name", list(PLAN_REFUSALS))
def test_verify_of_a_config_the_plan_refuses_gives_the_plan_s_refusal(
    tmp_path: Path, cli, name: str
) -> None:
    """`verify` of a config whose plan ``run`` refuses (shards that are not whole chunks, ...)
    had said "no output at ...: run the pipeline first" where there was none, and following
    it met the plan's refusal; an output that another tool wrote there had "`run --overwrite`
    writes it anew", refused the same way. Now verify of no output gives that refusal, as
    ``plan`` does, ``c.yaml:LINE:`` first, from the command line and :func:`pipeline.verify`
    alike; of an output, its finding, then that refusal as its advice (its table printed, the
    API's ``advice``); an output there is not changed."""
    import yaml

    import pipeline

    cfg, dtype, line, key, words = _plan_refused(tmp_path, name)
    planned = one_line_error(cli("plan", cfg)[2])
    assert planned.startswith(f"error: {cfg}:{line}: {words}"), planned
    rc, _, err = cli("verify", cfg)
    assert rc == 1 and one_line_error(err) == planned, err
    with pytest.raises(PlanError) as e:
        pipeline.verify(str(cfg))
    assert f"error: {e.value}" == planned, e.value
    assert (e.value.file, e.value.line, e.value.key) == (str(cfg), line, key)
    assert not (tmp_path / "out.zarr").exists()
    # an output with no record of a run (another tool's): verify's advice had been a run
    make_array(tmp_path / "out.zarr", np.ones((8, 6, 4), dtype), (2, 6, 4))
    before = file_states(tmp_path / "out.zarr")
    rc, out, err = cli("verify", cfg)
    said = one_line_error(err)
    assert rc == 1, said
    if said == planned:  # verify's own check of the stages refuses it (a scalar, overflow)
        assert name in ("scalar-too-large", "overflow"), said
    else:
        assert said.startswith("error: the output holds no record of"), said
        assert said.endswith(f"; {planned.removeprefix('error: ')}") and "block" in out, said
        res = pipeline.verify(str(cfg))
        assert not res.ok and res.advice == planned.removeprefix("error: "), res.advice
        mapping = yaml.safe_load(cfg.read_text())  # as a mapping's refusals name it
        res = pipeline.verify(mapping)
        assert res.advice == f"the config mapping: {planned.split(': ', 2)[2]}", res.advice
    assert file_states(tmp_path / "out.zarr") == before


def test_a_late_refusal_of_a_mapping_s_key_names_the_mapping_from_plan_run_and_verify(
    tmp_path: Path,
) -> None:
    """A refusal of a key found once the config given as a mapping was parsed (here the
    file system that ``input.storage_options`` cannot make, found where the store is opened)
    had begun with the key alone, where the mapping's own refusals begin ``the config
    mapping:``; now it begins so, from ``pipeline.plan``, ``run`` and ``verify`` alike (fields
    ``file`` 'the config mapping', ``line`` None), as the file's begins with its file and
    line."""
    pytest.importorskip("s3fs")
    import pipeline

    mapping = {
        "input": {"store": "s3://bucket/in.zarr", "storage_options": {"bogus_option": 1}},
        "output": {"store": str(tmp_path / "out.zarr")},
        "stages": [{"op": "multiply", "factor": 2}],
        "backend": "cpu",
    }
    for call in (pipeline.plan, pipeline.run, pipeline.verify):
        with pytest.raises(ConfigError) as e:
            call(mapping)
        said = str(e.value)
        assert said.startswith("the config mapping: input.storage_options make no "), said
        assert (e.value.file, e.value.line) == ("the config mapping", None), e.value.data
        assert e.value.key == "input.storage_options" and len(said.splitlines()) == 1
    assert not (tmp_path / "out.zarr").exists()


@pytest.mark.parametrize(
    "writer",
    ["tensorstore-v2-complex64", "tensorstore-v3-complex64", "xarray-v2-text", "xarray-v3-text"],
)
def test_an_unsupported_dtype_is_refused_naming_the_input(tmp_path: Path, cli, writer) -> None:
    """A complex (tensorstore) or text (xarray) input was refused as "unsupported dtype
    complex64: the stages compute on ...; convert the input first", naming no input: of a
    Dataset's several variables, or several configs' inputs, not which one."""
    src, array = tmp_path / "in.zarr", ""
    if writer.startswith("tensorstore"):
        _tensorstore_array(src, "zarr" if "v2" in writer else "zarr3", "complex64")
        dtype = "complex64"
    else:
        xr = pytest.importorskip("xarray")
        ds = xr.Dataset({"name": (("x",), np.array(["ab", "c", "de"]))})
        with warnings.catch_warnings():  # zarr-python's: v3 strings are not in the spec yet
            warnings.simplefilter("ignore")
            ds.to_zarr(str(src), zarr_format=3 if "v3" in writer else 2, mode="w")
        array, dtype = "name", "<U2"
    cfg = write_config(
        tmp_path, src, tmp_path / "out.zarr", input={"store": str(src), "array": array}
    )
    where = f"{src}/{array}" if array else str(src)
    for command in ("plan", "run"):
        rc, _, err = cli(command, cfg)
        assert rc == 1
        line = one_line_error(err)
        assert line.startswith(f"error: unsupported dtype {dtype} of the input {where}: "), line
        assert line.endswith("convert the input first"), line
    e = refused("plan", cfg)
    assert isinstance(e, InputError) and (e.store, e.dtype) == (where, dtype), e.data
    assert not (tmp_path / "out.zarr").exists()


@pytest.mark.parametrize(
    ("zarr_format", "shards", "key", "cut", "damage"),
    [
        (2, None, "1.0", 100, "it is cut short: 100 bytes where an uncompressed chunk is 240"),
        (3, None, "c/1/0", 0, "it is cut short: 0 bytes where an uncompressed chunk is 240"),
        (
            3,
            (10, 12),
            "c/1/0",
            300,
            "its shard index's crc32c checksum does not match: the shard (300 bytes) was cut "
            "short, or its index (its last 36 bytes) altered",
        ),
    ],
    ids=["v2-raw", "v3-bytes-only", "v3-shard"],
)
def test_an_uncompressed_chunk_cut_short_is_said_to_be(
    tmp_path: Path, cli, zarr_format: int, shards: Any, key: str, cut: int, damage: str
) -> None:
    """An uncompressed input chunk (Zarr v2 with no compressor, v3 with the bytes codec alone)
    cut short had been said to "decode to 100 bytes, not the chunk's 240", as if a codec had
    decoded it, and a shard cut short only that "its shard index's crc32c checksum does not
    match": the line says the file was cut short, its length and what it should be, and to
    restore it."""
    src = tmp_path / "in.zarr"
    x = np.arange(20 * 12, dtype="f4").reshape(20, 12)
    make_array(src, x, (5, 12), zarr_format=zarr_format, shards=shards, compressor=None)
    (src / key).write_bytes((src / key).read_bytes()[:cut])
    cfg = write_config(tmp_path, src, tmp_path / "out.zarr", chunking={"block": [10, 12]})
    rc, _, err = cli("run", cfg, "--progress", "none")
    line = one_line_error(err)
    assert rc == 1 and line.startswith(f"error: input chunk {key!r} of {src} is damaged: "), err
    assert f"is damaged: {damage}; " in line and "decodes to" not in line, line
    assert "restore the chunk" in line and "`pipeline verify`" in line, line


def test_a_memory_budget_written_in_decimal_units_is_said_so(tmp_path: Path, cli) -> None:
    """``host_memory_limit: 100MB`` refused had been said as "> 95.37 MiB", with its fix in
    GiB, and ``8GB`` as "the 7.45 GiB budget": another figure and unit than the user wrote.
    The lines that compare it say it as written, and every size beside it in units of powers
    of 1000 (MB, GB), as the user wrote the budget; one written in GiB is said as written."""
    import re

    x = np.zeros((40, 1000, 1000), "f4")
    make_array(tmp_path / "in.zarr", x, (1, 1000, 1000), compressor=None)
    binary = re.compile(r"\d [kMGTP]iB")
    for limit in ("100MB", "8GB", "100000TB", "8GiB"):
        cfg = write_config(
            tmp_path,
            tmp_path / "in.zarr",
            tmp_path / "out.zarr",
            chunking={"block": [20, 1000, 1000]},
            cluster={"workers": 1, "host_memory_limit": limit, "dashboard": ""},
        )
        rc, out, err = cli("plan", cfg)
        if limit == "100MB":  # a block does not fit
            line = one_line_error(err)
            assert rc == 1 and f" > {limit}; " in line, line
            assert "raise cluster.host_memory_limit to at least " in line, line
            assert re.search(r"at least \d+\.\d\d [MG]B$", line) and not binary.search(line), line
        elif limit == "100000TB":  # more than the host's RAM
            line = one_line_error(err)
            assert rc == 1 and f"cluster.host_memory_limit {limit} per worker x 1" in line, line
            assert re.search(r"lower it to at most \d+\.\d\d GB ", line), line
            assert not binary.search(line), line
        else:
            row = next(r for r in out.splitlines() if r.strip().startswith("host memory"))
            assert rc == 0 and f"of the {limit} budget per worker" in row, row
            assert bool(binary.search(row.replace(limit, ""))) == limit.endswith("iB"), row
