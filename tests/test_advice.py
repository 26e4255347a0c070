"""`verify` advises what `run` takes: for each state an output can be in, verify's line names
the command that finishes or replaces it, and that very command is accepted and ends with a
complete output, bit for bit the one a run never stopped writes; where `run` takes no command
there (a folder or group it never deletes, files it never deletes in the array's folder),
verify names none and `run` neither starts nor replaces it.

The states are real: a run stopped by a real SIGKILL (its run record then lost, edited, or
kept), files edited on disk, stores written by zarr-python and xarray. `verify` and `run` are
the CLI's ``main()``.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml
import zarr

from pipeline.cli import main
from tests.conftest import STAGES, read_array
from tests.faultkit import (
    copy_store,
    file_states,
    killed_midway,
    many_blocks_input,
    set_aside,
    status,
    stored_files,
)

COLS = 1024


@dataclass
class Made:
    """The module's set-up: an input, the output of a run never stopped (``ref``), and the
    output of a run stopped by SIGKILL midway (``killed``)."""

    dir: Path
    input: Path
    ref: Path
    killed: Path


def _config(d: Path, input_store: Path, array: str = "") -> Path:
    """``d/run.yaml``: a run of ``input_store`` (its variable ``array`` where given, written
    as a Dataset variable in its own chunks; else an array in chunks of a quarter row) into
    ``d/out.zarr``, a block per row, on threads of this process."""
    output: dict = {"store": str(d / "out.zarr")}
    if not array:
        output["chunks"] = [1, COLS // 4]
    cfg = {
        "input": {"store": str(input_store), **({"array": array} if array else {})},
        "output": output,
        "stages": STAGES,
        "backend": "cpu",
        "chunking": {"block": [1, COLS]},
        "cluster": {"workers": 1, "threads_per_worker": 2, "dashboard": ""},
    }
    p = d / "run.yaml"
    p.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return p


def _stopped_midway(
    d: Path, array: str, make_input: Callable[[Path, int], None], rows: int
) -> Made:
    """In ``d``: an input of ``rows`` rows (``make_input``), the output of a run of it never
    stopped (``ref.zarr``), and that of a run stopped by SIGKILL midway (``killed.zarr``),
    its markers under ``out.zarr/array`` (the store's root where ``array`` is ""); a machine
    fast enough to finish before the kill gets an input four times larger, up to 4 times."""
    cfg = _config(d, d / "in.zarr", array)
    out = d / "out.zarr"
    marked = out / array if array else out

    def prepare(rows: int) -> None:
        shutil.rmtree(out, ignore_errors=True)
        make_input(d / "in.zarr", rows)
        assert main(["-q", "run", str(cfg), "--progress", "none"]) == 0
        shutil.rmtree(d / "ref.zarr", ignore_errors=True)
        out.rename(d / "ref.zarr")

    killed_midway(cfg, marked, prepare, rows, cwd=d, tries=4)
    copy_store(out, d / "killed.zarr")
    shutil.rmtree(out)
    return Made(d, d / "in.zarr", d / "ref.zarr", d / "killed.zarr")


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Made:
    return _stopped_midway(
        tmp_path_factory.mktemp("advice"),
        "",
        lambda path, rows: many_blocks_input(path, rows, COLS),
        2000,
    )


def _edit_attributes(out: Path, edit: Callable[[dict], None]) -> None:
    meta = json.loads((out / "zarr.json").read_text())
    edit(meta["attributes"])
    (out / "zarr.json").write_text(json.dumps(meta))


def _killed(m: Made, out: Path) -> None:
    copy_store(m.killed, out)


def _no_record(m: Made, out: Path) -> None:  # the fault: run.json lost, `incomplete` stays
    copy_store(m.killed, out)
    (out / ".pipeline" / "run.json").unlink()


def _no_record_folder(m: Made, out: Path) -> None:
    copy_store(m.killed, out)
    shutil.rmtree(out / ".pipeline")


def _stale_record(m: Made, out: Path) -> None:  # a record another config's run left
    copy_store(m.killed, out)
    record = out / ".pipeline" / "run.json"
    doc = json.loads(record.read_text())
    doc["fingerprint"] = "0" * 16
    doc["identity"]["stages"] = ["multiply(factor=7)"]
    record.write_text(json.dumps(doc))


def _unknown_status(m: Made, out: Path) -> None:  # a record of a status no run writes
    copy_store(m.killed, out)
    _edit_attributes(out, _status_stopped)


def _status_stopped(attrs: dict) -> None:
    attrs["pipeline"] = json.dumps({**json.loads(attrs["pipeline"]), "status": "stopped"})


def _killed_attributes_edited(m: Made, out: Path) -> None:  # a resume kept the edit (brk59)
    copy_store(m.killed, out)
    _edit_attributes(out, lambda a: a.update(units="C"))


def _edit_metadata(out: Path, edit: Callable[[dict], None]) -> None:
    meta = json.loads((out / "zarr.json").read_text())
    edit(meta)
    (out / "zarr.json").write_text(json.dumps(meta))


def _killed_dimension_names_edited(m: Made, out: Path) -> None:
    copy_store(m.killed, out)
    _edit_metadata(out, lambda d: d.update(dimension_names=["a", "b"]))


def _killed_fill_value_edited(m: Made, out: Path) -> None:
    copy_store(m.killed, out)
    _edit_metadata(out, lambda d: d.update(fill_value=-1.0))


def _resized(m: Made, out: Path) -> None:
    copy_store(m.killed, out)
    arr = zarr.open_array(str(out), mode="r+")
    arr.resize((arr.shape[0] // 2, arr.shape[1]))


def _record_only(m: Made, out: Path) -> None:  # a run stopped before it made the array
    (out / ".pipeline").mkdir(parents=True)
    shutil.copy2(m.killed / ".pipeline" / "run.json", out / ".pipeline" / "run.json")


def _remains(m: Made, out: Path) -> None:  # a replacement stopped once the metadata was gone
    copy_store(m.ref, out)
    (out / ".pipeline").mkdir()
    shutil.copy2(m.killed / ".pipeline" / "run.json", out / ".pipeline" / "run.json")
    (out / "zarr.json").unlink()


def _complete(m: Made, out: Path) -> None:
    copy_store(m.ref, out)


def _edited(m: Made, out: Path) -> None:
    copy_store(m.ref, out)
    _edit_attributes(out, lambda a: a.update(units="K"))


def _edited_with_notes(m: Made, out: Path) -> None:  # --overwrite never deletes the notes
    _edited(m, out)
    (out / "notes.txt").write_text("mine")


def _foreign(m: Made, out: Path) -> None:
    x = read_array(m.input)
    zarr.create_array(str(out), shape=x.shape, dtype=x.dtype, chunks=(16, COLS))[...] = x


def _empty_group(m: Made, out: Path) -> None:
    zarr.open_group(str(out), mode="w")


def _group(m: Made, out: Path) -> None:
    zarr.open_group(str(out), mode="w").create_array("mine", shape=(3,), dtype="f4")


def _not_zarr(m: Made, out: Path) -> None:
    out.mkdir()
    (out / "notes.txt").write_text("mine")


STATES: dict[str, Callable[[Made, Path], None]] = {
    "absent": lambda m, out: None,
    "absent, a run record only": _record_only,
    "incomplete": _killed,
    "incomplete, run record lost": _no_record,
    "incomplete, record folder lost": _no_record_folder,
    "incomplete, another config's record": _stale_record,
    "incomplete, status not a run's": _unknown_status,
    "incomplete, resized since": _resized,
    "incomplete, attributes edited": _killed_attributes_edited,
    "incomplete, dimension names edited": _killed_dimension_names_edited,
    "incomplete, fill value edited": _killed_fill_value_edited,
    "remains of a stopped replacement": _remains,
    "complete": _complete,
    "complete, attributes edited": _edited,
    "complete, edited, with notes in it": _edited_with_notes,
    "foreign array": _foreign,
    "foreign empty group": _empty_group,
    "group": _group,
    "not-zarr": _not_zarr,
}

#: The commands verify may name, as `run` takes them.
COMMANDS = {"run": [], "run --resume": ["--resume"], "run --overwrite": ["--overwrite"]}


def advised(line: str) -> list[str] | None:
    """The `run` command a verify line advises (its last one in backquotes; "pass
    --overwrite"; "run the pipeline first"), as extra arguments; None where it names none."""
    named = re.findall(r"`(run(?: --\w+)?)`", line)
    if named:
        return COMMANDS[named[-1]]
    if "pass --overwrite" in line:
        return ["--overwrite"]
    if "run the pipeline first" in line:
        return []
    return None


def _cli(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str]:
    rc = main([str(a) for a in args])
    return rc, capsys.readouterr().err


def _verify_error(capsys: pytest.CaptureFixture[str], cfg: Path) -> str:
    """``pipeline verify`` of ``cfg``, which fails in one ``error:`` line: that line."""
    rc, err = _cli(capsys, "-q", "verify", cfg)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 1 and len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def _whole(out: Path, ref: Path) -> None:
    """``out`` is complete and holds what ``ref`` (a run never stopped) holds, bit for bit:
    the same chunk files, the same values."""
    assert status(out) == "complete"
    assert not (out / ".pipeline").exists()
    got = {k: v for k, v in stored_files(out).items() if not k.endswith("zarr.json")}
    want = {k: v for k, v in stored_files(ref).items() if not k.endswith("zarr.json")}
    assert got == want
    assert np.array_equal(read_array(out), read_array(ref), equal_nan=True)


@pytest.mark.parametrize("state", list(STATES))
def test_the_command_verify_advises_is_one_run_takes(
    made: Made, tmp_path: Path, capsys: pytest.CaptureFixture[str], state: str
) -> None:
    cfg = _config(tmp_path, made.input)
    out = tmp_path / "out.zarr"
    STATES[state](made, out)
    rc, err = _cli(capsys, "-q", "verify", cfg)
    if state == "complete":
        assert rc == 0, err
        return
    assert rc == 1
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    command = advised(lines[0])
    if command is None:  # nothing `run` takes to write it: it refuses to start or replace
        before = file_states(out)
        for flags in ([], ["--overwrite"]):
            rc, run_err = _cli(capsys, "-q", "run", cfg, "--progress", "none", *flags)
            assert rc == 1, (flags, run_err)
        assert file_states(out) == before
        assert "notes.txt" in lines[0] or "mine" in lines[0], lines[0]
        return
    rc, run_err = _cli(capsys, "-q", "run", cfg, "--progress", "none", *command)
    assert rc == 0, (lines[0], run_err)
    _whole(out, made.ref)
    rc, err = _cli(capsys, "-q", "verify", cfg, "--all")
    assert rc == 0, err


def test_plain_run_of_an_incomplete_output_without_its_record_names_overwrite(
    made: Made, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`run` (no flag) had said "`run --resume` finishes it" of an incomplete output whose run
    record was lost, which `run --resume` refused: it says what `run --resume` says, and
    `pipeline plan` says the same."""
    cfg = _config(tmp_path, made.input)
    _no_record(made, tmp_path / "out.zarr")
    rc, err = _cli(capsys, "-q", "run", cfg, "--progress", "none")
    assert rc == 1 and "`run --resume`" not in err and "`run --overwrite` starts over" in err
    rc, resume_err = _cli(capsys, "-q", "run", cfg, "--progress", "none", "--resume")
    assert rc == 1 and resume_err == err
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc = main(["plan", str(cfg)])
    assert rc == 0
    said = capsys.readouterr().out
    assert re.search(r"output now\s+incomplete, with no run record.*`run --overwrite`", said)


# --------------------------------------------------------------------------------------------
# A Dataset output: the variable ``v`` written into the group of ``out.zarr`` with the input's
# coordinates and group attributes. The group's attributes are the user's (README: "one you
# edited since is yours and stays", also through `--overwrite`): an edit of them is no fault
# of the output, which verify passes with a note, and a resume completes. An edit of the
# variable's own attributes is one, which `run --resume` refuses (it had marked the output
# complete with the edit in it, and verify then failed: brk59).

DS_ROWS = 600


def _ds_input(path: Path, rows: int) -> None:
    import xarray as xr

    x = np.random.default_rng(5).standard_normal((rows, COLS)).astype("f4")
    ds = xr.Dataset(
        {"v": (("t", "x"), x, {"units": "K", "long_name": "vee"})},
        coords={
            "t": ("t", np.arange(rows, dtype="f8"), {"units": "s"}),
            "x": np.arange(COLS) * 0.5,
        },
        attrs={"title": "in", "history": "made"},
    )
    shutil.rmtree(path, ignore_errors=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(
            path, mode="w", zarr_format=3, consolidated=True, encoding={"v": {"chunks": (1, COLS)}}
        )


@pytest.fixture(scope="module")
def made_ds(tmp_path_factory: pytest.TempPathFactory) -> Made:
    return _stopped_midway(tmp_path_factory.mktemp("advice-ds"), "v", _ds_input, DS_ROWS)


def _edit_group_title(out: Path) -> None:
    _edit_metadata(out, lambda d: d["attributes"].update(title="mine"))


def _ds_killed_variable_attributes(m: Made, out: Path) -> None:
    copy_store(m.killed, out)
    _edit_attributes(out / "v", lambda a: a.update(units="C"))


def _ds_killed_group_attributes(m: Made, out: Path) -> None:
    copy_store(m.killed, out)
    _edit_group_title(out)


def _ds_killed_then_other_variable(m: Made, out: Path) -> None:
    """xarray's append of another variable, which replaces the group's attributes with the
    written Dataset's (none)."""
    import xarray as xr

    copy_store(m.killed, out)
    rows = zarr.open_array(str(out / "v"), mode="r").shape[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        xr.Dataset({"w": (("t",), np.ones(rows))}).to_zarr(out, mode="a")


def _ds_complete_group_attributes(m: Made, out: Path) -> None:
    copy_store(m.ref, out)
    _edit_group_title(out)


#: (set-up, the group attributes that stay the user's edit, or None where none was made)
DS_STATES: dict[str, tuple[Callable[[Made, Path], None], dict[str, object] | None]] = {
    "incomplete, variable attribute edited": (_ds_killed_variable_attributes, None),
    "incomplete, group attribute edited": (_ds_killed_group_attributes, {"title": "mine"}),
    "incomplete, another variable appended by xarray": (_ds_killed_then_other_variable, {}),
    "complete, group attribute edited": (_ds_complete_group_attributes, {"title": "mine"}),
}


def _group_attrs(out: Path) -> dict[str, object]:
    return dict(json.loads((out / "zarr.json").read_text())["attributes"])


@pytest.mark.parametrize("state", list(DS_STATES))
def test_the_command_verify_advises_for_a_dataset_output_is_one_run_takes(
    made_ds: Made, tmp_path: Path, capsys: pytest.CaptureFixture[str], state: str
) -> None:
    cfg = _config(tmp_path, made_ds.input, "v")
    out = tmp_path / "out.zarr"
    setup, kept = DS_STATES[state]
    setup(made_ds, out)
    rc, err = _cli(capsys, "-q", "verify", cfg)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    if state.startswith("complete"):  # the user's edit is no fault: a note, and a pass
        assert rc == 0, err
        assert len(lines) == 1 and lines[0].startswith("note: "), err
        assert "title attribute" in lines[0], lines[0]
        command = ["--overwrite"]  # which keeps the edit (README), and verify passes after it
    else:
        assert rc == 1
        assert len(lines) == 1 and lines[0].startswith("error: "), err
        command = advised(lines[0])
        assert command is not None, lines[0]
        if kept is None:  # the variable's own metadata edited: a resume is refused
            assert command == ["--overwrite"], lines[0]
            assert "units attribute" in lines[0], lines[0]
            rc, resume_err = _cli(capsys, "-q", "run", cfg, "--progress", "none", "--resume")
            assert (
                rc == 1 and "units attribute" in resume_err and "`run --overwrite`" in (resume_err)
            ), resume_err
        else:
            assert command == ["--resume"], lines[0]
    rc, run_err = _cli(capsys, "-q", "run", cfg, "--progress", "none", *command)
    assert rc == 0, (lines, run_err)
    _whole(out / "v", made_ds.ref / "v")
    assert np.array_equal(
        zarr.open_array(str(out / "t"), mode="r")[...],
        zarr.open_array(str(made_ds.ref / "t"), mode="r")[...],
    )
    v_attrs = dict(zarr.open_array(str(out / "v"), mode="r").attrs)
    assert v_attrs["units"] == "K"
    if kept:
        assert {k: _group_attrs(out).get(k) for k in kept} == kept
    rc, err = _cli(capsys, "-q", "verify", cfg, "--all")
    assert rc == 0, err


def _add_array_without_dimension_names(out: Path) -> None:
    """What a user of zarr-python does: an array beside the output, with no dimension names,
    which xarray needs of every array of a group it opens."""
    zarr.open_group(str(out), mode="r+").create_array("extra", shape=(3,), dtype="f4")[...] = 1


def _ds_complete_zarr_added_array(m: Made, out: Path) -> None:
    copy_store(m.ref, out)
    _add_array_without_dimension_names(out)


def _ds_killed_zarr_added_array(m: Made, out: Path) -> None:
    copy_store(m.killed, out)
    _add_array_without_dimension_names(out)


def _ds_complete_attribute_names_added(m: Made, out: Path) -> None:
    """An array beside the output that names its dimensions in an ``_ARRAY_DIMENSIONS``
    attribute, as zarr-python 2 did for v2, in the v3 group: xarray reads no names there, and
    fails on the group (h55g: verify had passed it, the names read from the attribute)."""
    copy_store(m.ref, out)
    group = zarr.open_group(str(out), mode="r+")
    names = {"_ARRAY_DIMENSIONS": ["nv"]}
    group.create_array("extra", shape=(3,), dtype="f4", attributes=names)[...] = 1


#: (set-up, the command verify advises once the user has removed the array, None for none)
DS_UNOPENABLE: dict[str, tuple[Callable[[Made, Path], None], list[str] | None]] = {
    "complete, an array without dimension names added": (_ds_complete_zarr_added_array, None),
    "complete, an array with v2 names in v3 added": (_ds_complete_attribute_names_added, None),
    "incomplete, an array without dimension names added": (
        _ds_killed_zarr_added_array,
        ["--resume"],
    ),
}


@pytest.mark.parametrize("state", list(DS_UNOPENABLE))
def test_an_array_xarray_cannot_open_in_the_output_group_is_named_with_its_fix(
    made_ds: Made, tmp_path: Path, capsys: pytest.CaptureFixture[str], state: str
) -> None:
    """brk59: an array without dimension names added to the output group makes the group,
    and the output, unreadable to xarray. verify had blamed the coordinates and advised
    `run --overwrite`, after which verify failed again (or `run --resume`, likewise); now
    verify, `plan` and every `run` name the array and what to do (remove it, or give it
    dimension names), and no command, since none writes a readable output there; and
    once the user has done it, what verify then advises ends with a passing verify."""
    cfg = _config(tmp_path, made_ds.input, "v")
    out = tmp_path / "out.zarr"
    setup, then = DS_UNOPENABLE[state]
    setup(made_ds, out)
    line = _verify_error(capsys, cfg)
    assert "'extra'" in line and "dimension names" in line, line
    assert "coordinates" not in line, line
    assert advised(line) is None, line
    before = file_states(out)
    for flags in ([], ["--resume"], ["--overwrite"]):
        rc, run_err = _cli(capsys, "-q", "run", cfg, "--progress", "none", *flags)
        assert rc == 1 and "'extra'" in run_err and advised(run_err) is None, (flags, run_err)
    line = _plan_line(capsys, cfg)
    assert "'extra'" in line and _names_none(line), line
    assert file_states(out) == before
    del zarr.open_group(str(out), mode="r+")["extra"]  # the fix verify names
    rc, err = _cli(capsys, "-q", "verify", cfg)
    if then is None:
        assert rc == 0, err
    else:
        assert rc == 1 and advised(err) == then, err
        rc, run_err = _cli(capsys, "-q", "run", cfg, "--progress", "none", *then)
        assert rc == 0, run_err
        _whole(out / "v", made_ds.ref / "v")
    rc, err = _cli(capsys, "-q", "verify", cfg, "--all")
    assert rc == 0, err


def test_every_array_xarray_cannot_open_in_the_output_group_is_named(
    made_ds: Made, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """h85b: two arrays without dimension names added to a complete output's group (``extra``
    and ``more``): verify and `run` named the first and a count ("and 1 more such arrays").
    Each names both, nothing written; and the fix each names is to remove both (h86g: it
    named the first alone, and following it met the next refusal), which once followed
    leaves verify passing."""
    cfg = _config(tmp_path, made_ds.input, "v")
    out = tmp_path / "out.zarr"
    copy_store(made_ds.ref, out)
    group = zarr.open_group(str(out), mode="r+")
    for name in ("extra", "more"):
        group.create_array(name, shape=(3,), dtype="f4")[...] = 1
    before = file_states(out)
    line = _verify_error(capsys, cfg)
    assert "'extra'" in line and "'more'" in line and "more such" not in line, line
    rc, run_err = _cli(capsys, "-q", "run", cfg, "--progress", "none", "--overwrite")
    assert rc == 1 and "'extra'" in run_err and "'more'" in run_err, run_err
    assert file_states(out) == before
    for said in (line, run_err):
        assert "remove each of 'extra', 'more' from the group" in said, said
    for name in ("extra", "more"):  # the fix named, followed
        del zarr.open_group(str(out), mode="r+")[name]
    rc, err = _cli(capsys, "-q", "verify", cfg)
    assert rc == 0, err


def _ds_consolidated_removed(m: Made, out: Path) -> None:
    copy_store(m.ref, out)
    _edit_metadata(out, lambda d: d.pop("consolidated_metadata"))


def _ds_array_added_unconsolidated(m: Made, out: Path) -> None:
    """zarr-python's ``create_array`` of another variable (with dimension names), which keeps
    the group's consolidated copy as it was: `xr.open_zarr` reads that copy, which does not
    list the new array."""
    copy_store(m.ref, out)
    rows = zarr.open_array(str(out / "v"), mode="r").shape[0]
    group = zarr.open_group(str(out), mode="r+")
    group.create_array("w", shape=(rows,), dtype="f8", dimension_names=["t"])[...] = 1
    assert "consolidated_metadata" in json.loads((out / "zarr.json").read_text())


#: (set-up, what verify's line names)
DS_CONSOLIDATED: dict[str, tuple[Callable[[Made, Path], None], str]] = {
    "complete, consolidated metadata removed": (_ds_consolidated_removed, "is gone"),
    "complete, an array added without consolidating": (
        _ds_array_added_unconsolidated,
        "does not list 'w'",
    ),
}


@pytest.mark.parametrize("state", list(DS_CONSOLIDATED))
def test_a_missing_or_stale_consolidated_copy_fails_verify_with_a_fix_run_takes(
    made_ds: Made, tmp_path: Path, capsys: pytest.CaptureFixture[str], state: str
) -> None:
    """brk59: verify passed an output whose group's consolidated metadata, which the run
    wrote, was removed since, or no longer listed what the group holds (xr.open_zarr reads
    that copy: it did not show the array added). verify fails each in one line that says so,
    and the command it names ends with a passing verify and a copy that xarray reads as the
    group is. That command is `run --resume`, which writes the copy again and recomputes
    nothing, with the zarr-python call that does the same; a plain run's refusal and the
    plan's "output now" row say so too (helper-46c: verify had named `run --overwrite`,
    rewriting the whole output for its copy, and `run --resume` had said "nothing to do" of
    a copy gone)."""
    import xarray as xr

    cfg = _config(tmp_path, made_ds.input, "v")
    out = tmp_path / "out.zarr"
    setup, said = DS_CONSOLIDATED[state]
    setup(made_ds, out)
    line = _verify_error(capsys, cfg)
    assert "consolidated metadata" in line and said in line, line
    assert f"`zarr.consolidate_metadata({str(out)!r})`" in line, line
    command = advised(line)
    assert command == ["--resume"], line
    rc, run_err = _cli(capsys, "-q", "run", cfg, "--progress", "none")
    assert rc == 1 and said in run_err and "`run --resume` writes it again" in run_err, run_err
    plan_line = _plan_line(capsys, cfg)
    assert said in plan_line and "`run --resume` writes it again" in plan_line, plan_line
    chunks = {k: v for k, v in file_states(out / "v").items() if not k.endswith("zarr.json")}
    rc, run_err = _cli(capsys, "-q", "run", cfg, "--progress", "none", *command)
    assert rc == 0, run_err
    _whole(out / "v", made_ds.ref / "v")
    now = {k: v for k, v in file_states(out / "v").items() if not k.endswith("zarr.json")}
    assert now == chunks  # nothing recomputed: the same files, untouched
    rc, err = _cli(capsys, "-q", "verify", cfg, "--all")
    assert rc == 0, err
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "Failed to open Zarr store with consolidated"
        seen = set(xr.open_zarr(out).variables)
    assert seen == set(xr.open_zarr(out, consolidated=False).variables), seen


def _plan_line(capsys: pytest.CaptureFixture[str], cfg: Path) -> str:
    """The "output now" line of ``pipeline plan``, which exits as ``run`` would be refused
    (1, the refusal its line gives also on stderr, as a refused run prints it) where the line
    says that no command of `run` writes the output, else 0 (``plan && run`` had run the
    refused run). ``run --dry-run`` (a plain run's) is then refused too, its refusal in its
    own line."""
    rcs = []
    for command in (["plan", str(cfg)], ["run", str(cfg), "--dry-run"]):
        capsys.readouterr()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rc = main(command)
        said = capsys.readouterr()
        found = [ln for ln in said.out.splitlines() if "output now" in ln]
        assert len(found) == 1, said.out
        line = found[0]
        if rc == 1:
            error = said.err.strip()
            assert error.startswith("error: ") and "\n" not in error, said.err
            assert error.removeprefix("error: ") in line, (error, line)
        if command[0] == "plan":
            assert rc == (1 if _names_none(line) else 0), (command, line)
            if rc == 0:
                assert not said.err.strip(), (command, line, said.err)
            plan_line = line
        rcs.append(rc)
    assert rcs[0] == 0 or rcs[1] == 1, (plan_line, rcs)
    return plan_line


def _names_none(line: str) -> bool:
    """Whether a line says that no command of `run` writes the output here."""
    return "even with --overwrite" in line or "choose another" in line


@pytest.mark.parametrize("state", list(STATES))
def test_the_command_plan_advises_is_one_run_takes(
    made: Made, tmp_path: Path, capsys: pytest.CaptureFixture[str], state: str
) -> None:
    """`pipeline plan`'s "output now" line names a command `run` takes, which ends with the
    output a run never stopped writes; or, where `run` takes none, names none."""
    cfg = _config(tmp_path, made.input)
    out = tmp_path / "out.zarr"
    STATES[state](made, out)
    line = _plan_line(capsys, cfg)
    command = None if _names_none(line) else advised(line)
    if command is None:
        before = file_states(out)
        for flags in ([], ["--overwrite"]):  # (`--resume` of a complete one: nothing to do)
            rc, run_err = _cli(capsys, "-q", "run", cfg, "--progress", "none", *flags)
            assert rc == 1, (line, flags, run_err)
        assert file_states(out) == before
        return
    rc, run_err = _cli(capsys, "-q", "run", cfg, "--progress", "none", *command)
    assert rc == 0, (line, run_err)
    _whole(out, made.ref)


xr = pytest.importorskip("xarray")


def _dataset_input(path: Path) -> None:
    """A Dataset as xarray writes it: ``v`` (t, y, x), whose ``cell_measures`` names
    ``cell_area`` and whose vertical coordinate's ``formula_terms`` name ``eta`` and ``depth``;
    and ``w``, which refers to nothing of these."""
    rng = np.random.default_rng(3)
    ds = xr.Dataset(
        {
            "v": (("t", "lev", "y", "x"), rng.standard_normal((3, 2, 4, 5)).astype("f4")),
            "w": (("t", "y", "x"), rng.standard_normal((3, 4, 5)).astype("f4")),
            "eta": (("t", "y", "x"), rng.standard_normal((3, 4, 5)), {"units": "m"}),
            "depth": (("y", "x"), 100 + rng.random((4, 5)), {"units": "m"}),
            "cell_area": (("y", "x"), rng.random((4, 5)), {"units": "m2"}),
        },
        coords={
            "t": ("t", np.arange(3.0)),
            "lev": (
                "lev",
                np.linspace(-1, 0, 2),
                {
                    "standard_name": "ocean_sigma_coordinate",
                    "formula_terms": "sigma: lev eta: eta depth: depth",
                },
            ),
            "y": ("y", np.arange(4.0)),
            "x": ("x", np.arange(5.0)),
        },
    )
    ds["v"].attrs["cell_measures"] = "area: cell_area"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(path, mode="w", zarr_format=3)


def _dataset_config(
    path: Path, input_store: Path, out: Path, array: str, oarray: str | None = None
):
    cfg: dict = {
        "input": {"store": str(input_store), "array": array},
        "output": {"store": str(out)},
        "stages": STAGES,
        "backend": "cpu",
        "cluster": {"workers": 1, "threads_per_worker": 2, "dashboard": ""},
    }
    if oarray is not None:
        cfg["output"]["array"] = oarray
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _no_command_works(
    capsys: pytest.CaptureFixture[str], cfg: Path, out: Path, what: str
) -> list[str]:
    """`plan`, `verify`, plain `run`, `run --resume` and `run --overwrite` at ``cfg``'s
    output: none names a command (each says none works, and ``what``), and none writes."""
    before = file_states(out)
    said = [_plan_line(capsys, cfg)]
    for flags in ([], ["--resume"], ["--overwrite"]):
        rc, err = _cli(capsys, "-q", "run", cfg, "--progress", "none", *flags)
        assert rc == 1, (flags, err)
        said.append(err)
    for text in said:
        assert "pass --overwrite" not in text and "`run --overwrite`" not in text, text
        assert _names_none(text), text
        assert what in text, text
    rc, err = _cli(capsys, "-q", "verify", cfg)  # names no command either
    assert rc == 1 and "pass --overwrite" not in err and "`run --overwrite`" not in err, err
    said.append(err)
    assert file_states(out) == before
    return said


def test_no_command_is_advised_for_an_output_group_of_zarr_v2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`plan` had said "something else is there: `run --overwrite` replaces it" of an output
    group that xarray wrote as Zarr v2, which `run --overwrite` refused."""
    _dataset_input(tmp_path / "in.zarr")
    out = tmp_path / "out.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = xr.open_zarr(tmp_path / "in.zarr")
        for var in ds.variables.values():
            var.encoding = {}
        ds.to_zarr(out, mode="w", zarr_format=2)
    cfg = _dataset_config(tmp_path / "c.yaml", tmp_path / "in.zarr", out, "w")
    _no_command_works(capsys, cfg, out, "Zarr v2 metadata (.zgroup)")


@pytest.mark.parametrize("second", ["eta", "depth", "cell_area"])
@pytest.mark.parametrize("layout", ["variable", "store root"])
def test_no_command_is_advised_for_an_array_the_group_refers_to(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], second: str, layout: str
) -> None:
    """A first run carries ``eta``, ``depth`` (``formula_terms``) and ``cell_area``
    (``cell_measures``) beside ``v``; a second run of one of these into the same group: plain
    `run` had said the array was "not written by this pipeline" and to "pass --overwrite",
    which refused (replacing it would relabel ``v``). No command is named now, by `run`,
    `plan` or `verify`, and what the array is is said as it is: one the pipeline copied."""
    _dataset_input(tmp_path / "in.zarr")
    out = tmp_path / "out.zarr"
    first = _dataset_config(tmp_path / "c1.yaml", tmp_path / "in.zarr", out, "v")
    rc, err = _cli(capsys, "-q", "run", first, "--progress", "none")
    assert rc == 0, err
    if layout == "variable":
        cfg = _dataset_config(tmp_path / "c2.yaml", tmp_path / "in.zarr", out, second)
    else:  # the array alone, at the root of a store that is an array of the group
        cfg = _dataset_config(tmp_path / "c2.yaml", tmp_path / "in.zarr", out / second, second, "")
    said = _no_command_works(capsys, cfg, out, "copied from its input beside the output 'v'")
    assert not any("did not write" in s or "not written by" in s for s in said), said
    rc, err = _cli(capsys, "-q", "verify", first, "--all")  # the first output is untouched
    assert rc == 0, err


def test_a_users_array_nothing_refers_to_is_replaced_as_advised(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Where `--overwrite` works, plain `run` and `plan` still name it, and it ends right."""
    _dataset_input(tmp_path / "in.zarr")
    out = tmp_path / "out.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        xr.open_zarr(tmp_path / "in.zarr")[["w"]].to_zarr(out, mode="w", zarr_format=3)
    cfg = _dataset_config(tmp_path / "c.yaml", tmp_path / "in.zarr", out, "w")
    line = _plan_line(capsys, cfg)
    assert advised(line) == ["--overwrite"], line
    rc, err = _cli(capsys, "-q", "run", cfg, "--progress", "none")
    assert rc == 1 and "not written by this pipeline" in err and advised(err) == ["--overwrite"]
    rc, err = _cli(capsys, "-q", "run", cfg, "--progress", "none", "--overwrite")
    assert rc == 0, err
    rc, err = _cli(capsys, "-q", "verify", cfg, "--all")
    assert rc == 0, err


def test_verify_of_a_damaged_chunk_names_overwrite_only_where_run_takes_it(
    made: Made, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """verify's "a chunk there is damaged: `run --overwrite` writes the output again" asks
    `run`: with notes in the array's folder, which `--overwrite` never deletes, it says what
    `run --overwrite` says instead; without them, the command it names ends right."""
    cfg = _config(tmp_path, made.input)
    out = tmp_path / "out.zarr"
    copy_store(made.ref, out)
    chunk = next(p for p in sorted((out / "c").rglob("*")) if p.is_file())
    chunk.write_bytes(b"not a chunk")
    (out / "notes.txt").write_text("mine")
    rc, err = _cli(capsys, "-q", "verify", cfg, "--all")
    assert rc == 1 and "damaged" in err and "notes.txt" in err, err
    assert "`run --overwrite`" not in err, err
    rc, run_err = _cli(capsys, "-q", "run", cfg, "--progress", "none", "--overwrite")
    assert rc == 1 and "notes.txt" in run_err, run_err
    (out / "notes.txt").unlink()
    rc, err = _cli(capsys, "-q", "verify", cfg, "--all")
    assert rc == 1 and advised(err) == ["--overwrite"], err
    rc, run_err = _cli(capsys, "-q", "run", cfg, "--progress", "none", "--overwrite")
    assert rc == 0, run_err
    _whole(out, made.ref)


def _packed_int_input(path: Path, scale_factor: object, missing: bool = True) -> None:
    """``v`` packed as int16 whose ``scale_factor`` is ``scale_factor``, its element [13, 4]
    missing where ``missing`` (``missing_value`` -1, no _FillValue), in chunks of 10 rows; a
    coordinate ``y``."""
    a = (np.arange(20 * 30, dtype="i2").reshape(20, 30) % 50).astype("i2")
    if missing:
        a[13, 4] = -1
    ds = xr.Dataset({"v": (("y", "x"), a)}, coords={"y": np.arange(20.0)})
    ds["v"].attrs.update(scale_factor=scale_factor, missing_value=np.int16(-1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(
            path, mode="w", zarr_format=3, encoding={"v": {"chunks": (10, 30), "_FillValue": None}}
        )


def test_a_run_stopped_on_an_integer_decoded_input_is_advised_once_the_input_is_fixed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """brk59: a run stopped on a missing element of an input that decodes to integers (its
    integer scale_factor); the user writes scale_factor 2.0 as the note says and consolidates
    again; verify then said "the output is [20, 30] int64, but this config makes [20, 30]
    float64: is it the same config?", naming no command. It says the output was not finished,
    and names the command `run` takes, which ends with the output xarray's decoding makes,
    bit for bit, and a passing verify."""
    src = tmp_path / "in.zarr"
    _packed_int_input(src, np.int16(2))
    cfg = _packed_config(tmp_path, src)
    rc, err = _cli(capsys, "-q", "run", cfg, "--progress", "none")
    assert rc == 1 and "scale_factor: 2.0" in err, err
    assert status(tmp_path / "out.zarr" / "v") == "incomplete"
    _scale_factor_as_float(src)
    rc, err = _cli(capsys, "-q", "verify", cfg)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 1 and len(lines) == 1 and "incomplete" in lines[0], err
    _advised_command_ends_as_xarray_decodes(capsys, cfg, src, tmp_path / "out.zarr", lines[0])


def test_a_complete_output_of_an_integer_decoded_input_is_advised_once_the_input_is_fixed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same fix of an input that held no missing element, after a complete run (int64):
    verify had asked "is it the same config?", naming no command, where `run` says the input
    changed and names `run --overwrite`. It says so too, and that command ends right."""
    src = tmp_path / "in.zarr"
    _packed_int_input(src, np.int16(2), missing=False)
    cfg = _packed_config(tmp_path, src)
    rc, err = _cli(capsys, "-q", "run", cfg, "--progress", "none")
    assert rc == 0, err
    _scale_factor_as_float(src)
    rc, err = _cli(capsys, "-q", "verify", cfg)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 1 and len(lines) == 1 and "the input changed" in lines[0], err
    _advised_command_ends_as_xarray_decodes(capsys, cfg, src, tmp_path / "out.zarr", lines[0])


def _scale_factor_as_float(src: Path) -> None:
    """What the plan's note asks for: ``scale_factor: 2.0``, consolidated again."""
    zarr.open_array(str(src / "v"), mode="r+").attrs["scale_factor"] = 2.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(str(src))


def _advised_command_ends_as_xarray_decodes(
    capsys: pytest.CaptureFixture[str], cfg: Path, src: Path, out: Path, line: str
) -> None:
    """The command ``line`` names is `run --overwrite`, which `run` takes, and it ends with
    what xarray decodes of ``src`` through the stages, bit for bit, and a passing verify."""
    command = advised(line)
    assert command == ["--overwrite"], line
    rc, run_err = _cli(capsys, "-q", "run", cfg, "--progress", "none", *command)
    assert rc == 0, (line, run_err)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        decoded = xr.open_zarr(src)["v"].values
        got = xr.open_zarr(out)["v"].values
    want = ((decoded * 5) ** 2) * 2
    assert got.dtype == want.dtype == np.float64
    assert got.tobytes() == want.tobytes()
    rc, err = _cli(capsys, "-q", "verify", cfg, "--all")
    assert rc == 0, err


def _packed_config(tmp_path: Path, src: Path) -> Path:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "input": {"store": str(src), "array": "v", "mask_and_scale": True},
                "output": {"store": str(tmp_path / "out.zarr")},
                "stages": STAGES,
                "backend": "cpu",
                "chunking": {"block": [10, 30]},
                "cluster": {"workers": 1, "threads_per_worker": 1, "dashboard": ""},
            },
            sort_keys=False,
        )
    )
    return cfg


def test_verify_of_a_packed_input_that_now_holds_a_missing_element_asks_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A complete output of an integer-decoded input, one of whose elements is written as its
    missing value since: verify stops there as the run does, and its line had named `run
    --overwrite` without asking `run`. With notes in the output's folder, which `--overwrite`
    never deletes, it says what `run --overwrite` says; without them it names it, and it
    ends right."""
    src = tmp_path / "in.zarr"
    _packed_int_input(src, np.int16(2), missing=False)
    cfg = _packed_config(tmp_path, src)
    rc, err = _cli(capsys, "-q", "run", cfg, "--progress", "none")
    assert rc == 0, err
    zarr.open_array(str(src / "v"), mode="r+")[13, 4] = -1
    out = tmp_path / "out.zarr"
    (out / "v" / "notes.txt").write_text("mine")
    rc, err = _cli(capsys, "-q", "verify", cfg, "--all")
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 1 and len(lines) == 1 and "scale_factor: 2.0" in lines[0], err
    assert "`run --overwrite`" not in lines[0] and "notes.txt" in lines[0], lines[0]
    (out / "v" / "notes.txt").unlink()
    rc, err = _cli(capsys, "-q", "verify", cfg, "--all")
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 1 and len(lines) == 1 and advised(lines[0]) == ["--overwrite"], err
    _scale_factor_as_float(src)
    _advised_command_ends_as_xarray_decodes(capsys, cfg, src, out, lines[0])


@pytest.mark.parametrize("where", ["under a file", "a file"])
def test_plan_of_an_output_no_command_can_write_is_its_refusal_not_a_crash(
    made: Made, tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    """An output path under a file, or a file itself: `plan` and `run --dry-run` had failed
    with NotADirectoryError and printed no table (review); their row is `run`'s own refusal,
    and they exit 1 with it, as `run` does, writing nothing."""
    blocker = tmp_path / "afile"
    blocker.write_text("mine")
    out = blocker / "out.zarr" if where == "under a file" else blocker
    cfg = _config(tmp_path, made.input)
    doc = yaml.safe_load(cfg.read_text())
    doc["output"]["store"] = str(out)
    cfg.write_text(yaml.safe_dump(doc, sort_keys=False))
    rc, run_err = _cli(capsys, "-q", "run", cfg, "--progress", "none")
    assert rc == 1, run_err
    line = _plan_line(capsys, cfg)
    assert _names_none(line) and str(blocker) in line, line
    assert run_err.strip().removeprefix("error: ") in line, (run_err, line)
    assert blocker.read_text() == "mine"


def _stale_input(m: Made, out: Path) -> None:  # the input rewritten since the run
    copy_store(m.ref, out)
    many_blocks_input(m.input, zarr.open_array(str(m.input), mode="r").shape[0], COLS, seed=1)


def _stale_interrupted(m: Made, out: Path) -> None:
    copy_store(m.killed, out)
    many_blocks_input(m.input, zarr.open_array(str(m.input), mode="r").shape[0], COLS, seed=1)


#: States of the output for the dry run: ``STATES``' own, and an output made from an input
#: rewritten since (complete, and interrupted), and output paths under a file or a file.
DRY_STATES = {
    **{
        k: STATES[k]
        for k in (
            "absent",
            "incomplete",
            "incomplete, run record lost",
            "incomplete, another config's record",
            "remains of a stopped replacement",
            "complete",
            "complete, edited, with notes in it",
            "foreign array",
            "group",
            "not-zarr",
        )
    },
    "complete, input rewritten since": _stale_input,
    "incomplete, input rewritten since": _stale_interrupted,
    "under a file": lambda m, out: None,
    "a file": lambda m, out: None,
}


def _dry_run_config(made: Made, tmp_path: Path, state: str) -> tuple[Path, Path]:
    """The config of a dry-run case of ``state``, and what to watch for changes (its
    output, or the folder of the file over it)."""
    cfg = _config(tmp_path, made.input)
    out = tmp_path / "out.zarr"
    if state in ("under a file", "a file"):
        blocker = tmp_path / "afile"
        blocker.write_text("mine")
        out = blocker / "out.zarr" if state == "under a file" else blocker
        doc = yaml.safe_load(cfg.read_text())
        doc["output"]["store"] = str(out)
        cfg.write_text(yaml.safe_dump(doc, sort_keys=False))
        return cfg, tmp_path
    DRY_STATES[state](made, out)
    return cfg, out


def _said(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    """``main(ARGS)``: its exit status, stdout and stderr."""
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc = main([str(a) for a in args])
    said = capsys.readouterr()
    return rc, said.out, said.err


@pytest.mark.parametrize("flag", ["", "--overwrite", "--resume"])
@pytest.mark.parametrize("state", list(DRY_STATES))
def test_a_dry_run_answers_as_the_run_with_its_flags(
    made: Made, tmp_path: Path, capsys: pytest.CaptureFixture[str], state: str, flag: str
) -> None:
    """`run ARGS --dry-run` previews `run ARGS`: it writes, deletes and locks nothing, and
    exits as that run does (1, after the whole table, with the run's own `error:` line where
    it refuses; else 0), its "output now" row saying what that run does (it had answered as
    `plan` whatever the flags: exit 0 before a plain run that refused an existing output, and
    "`run --overwrite` replaces it" to `--resume`). Then the real run, on the same state."""
    stale = "rewritten" in state
    with set_aside(made.input) if stale else contextlib.nullcontext():
        cfg, watched = _dry_run_config(made, tmp_path, state)
        flags = [flag] if flag else []
        before = file_states(watched)
        rc, said, err = _said(capsys, "run", cfg, "--dry-run", *flags)
        assert file_states(watched) == before, (state, flag)  # no record, no lock, no change
        rows = dict(re.findall(r"^  (\S+(?: \S+)?)\s{2,}(.*)$", said, re.M))
        assert {"output", "output now", "stages", "chunking"} <= set(rows), said
        now = rows["output now"]
        errors = [ln for ln in err.splitlines() if ln.startswith("error: ")]
        # progress on (plain lines, none due): the run says that it resumes, or has nothing to do
        run_rc, _, run_err = _said(
            capsys, "run", cfg, "--progress", "plain", "--progress-interval", "600", *flags
        )
        run_errors = [ln for ln in run_err.splitlines() if ln.startswith("error: ")]
    assert (rc, errors) == (run_rc, run_errors), (state, flag, now, err, run_err)
    if rc == 1:
        assert len(errors) == 1 and "this run is refused: " in now, (now, err)
        assert errors[0].removeprefix("error: ") in now, (now, errors)
        assert "host memory" in said, said  # the whole table, then the error
        return
    assert not errors, err
    if "nothing to do" in now:
        assert "already complete; nothing to do" in run_err, run_err
        return
    resumed = re.search(r"resuming: (\d+) of (\d+) blocks already written.*, (\d+) to go", run_err)
    if "this run resumes it" in now:
        assert resumed is not None, run_err
        left = re.search(r"(\d+) of (\d+) blocks left", now)
        assert left is not None, now
        assert (left[1], left[2]) == (resumed[3], resumed[2]), (now, run_err)
    else:
        assert resumed is None, run_err
        assert "this run creates it" in now or "this run replaces it" in now, now
        if "this run creates it" in now:
            assert state == "absent" or state.startswith("absent"), (state, now)


def _overwriting(cfg: Path) -> Path:
    """``cfg`` with ``output.overwrite: true``, as ``configs/default.yaml`` has it."""
    doc = yaml.safe_load(cfg.read_text())
    doc["output"]["overwrite"] = True
    cfg.write_text(yaml.safe_dump(doc, sort_keys=False))
    return cfg


def test_an_incomplete_output_of_a_config_that_overwrites_is_advised_with_its_plain_run(
    made: Made, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A stopped run's output, of a config with ``output.overwrite: true`` (whose plain
    `run`, what ``make run`` runs, starts over): `plan`, `verify` and :func:`pipeline.verify`
    had named `run --resume` alone, as for any config; they now also say that the plain `run`
    starts over (the blocks written thrown away), as their line for a config without it names
    `run --overwrite`. Both commands are then taken, and each ends with the output a run never
    stopped writes."""
    import pipeline

    cfg = _overwriting(_config(tmp_path, made.input))
    out = tmp_path / "out.zarr"
    _killed(made, out)
    both = "`run --resume` finishes it; `run` (output.overwrite: true) starts over"
    line = _plan_line(capsys, cfg)
    assert line.endswith(both), line
    rc, err = _cli(capsys, "verify", cfg)
    assert rc == 1 and err.strip().endswith(f"it was not finished; {both}"), err
    res = pipeline.verify(cfg)
    assert not res.ok and res.advice == (
        "`pipeline.run(config, resume=True)` finishes it; `pipeline.run(config)` "
        "(output.overwrite: true) starts over"
    ), res.advice
    for flags in (["--resume"], []):
        shutil.rmtree(out)
        _killed(made, out)
        rc, run_err = _cli(capsys, "-q", "run", cfg, "--progress", "none", *flags)
        assert rc == 0, (flags, run_err)
        _whole(out, made.ref)


def test_the_api_verify_result_carries_the_advice_verify_prints(
    made: Made, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """:class:`~pipeline.reporting.verify.VerifyResult` had no word of what to do: the
    command line ends its line with the command of `run` that finishes the output, the API's
    result said only ``status`` 'incomplete'. Its ``advice`` is that line's end, said as
    :func:`pipeline.run`'s call (`run --resume` as ``pipeline.run(config, resume=True)``);
    None for an output that passes."""
    import pipeline

    cfg = _config(tmp_path, made.input)
    out = tmp_path / "out.zarr"
    _killed(made, out)
    rc, err = _cli(capsys, "verify", cfg)
    assert rc == 1 and err.strip().endswith("; `run --resume` finishes it"), err
    res = pipeline.verify(cfg)
    assert res.status == "incomplete" and not res.ok
    assert res.advice == "`pipeline.run(config, resume=True)` finishes it", res.advice
    rc, run_err = _cli(capsys, "-q", "run", cfg, "--progress", "none", "--resume")
    assert rc == 0, run_err
    res = pipeline.verify(cfg, all=True)
    assert res.ok and res.advice is None, res


def test_no_overwrite_wins_over_the_configs_output_overwrite(
    made: Made, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`run --no-overwrite` of a config with ``output.overwrite: true``, as
    ``pipeline.run(config, overwrite=False)`` (the command line had no way to say no to the
    config: "unrecognized arguments: --no-overwrite"): a stopped run's output is refused,
    untouched, the dry run saying the same, the line naming `run --resume` and `run
    --overwrite`, not the plain `run` its user just said no to; `--no-overwrite --resume`
    finishes it (a resume replaces nothing), bit for bit a run never stopped; then the
    complete output is refused too; `--overwrite --no-overwrite` is refused in one line (the
    last had been taken, silently); a plain `run` is the config's, and replaces it."""
    import pipeline

    cfg = _config(tmp_path, made.input)
    doc = yaml.safe_load(cfg.read_text())
    doc["output"]["overwrite"] = True
    cfg.write_text(yaml.safe_dump(doc, sort_keys=False))
    out = tmp_path / "out.zarr"
    _killed(made, out)
    before = file_states(out)
    for extra in ([], ["--dry-run"]):
        rc, _, err = _said(capsys, "-q", "run", cfg, "--no-overwrite", *extra)
        errors = [ln for ln in err.splitlines() if ln.startswith("error: ")]
        assert rc == 1 and len(errors) == 1, err
        assert "`run --resume`" in errors[0] and "`run --overwrite`" in errors[0], errors
        assert "output.overwrite" not in errors[0], errors
        assert file_states(out) == before
    with pytest.raises(pipeline.OutputError) as info:  # the API says the same, its own way
        pipeline.run(cfg, overwrite=False)
    line = str(info.value)
    assert "resume=True" in line and "overwrite=True" in line, line
    assert "output.overwrite" not in line and "--" not in line, line
    assert file_states(out) == before
    rc, _, err = _said(capsys, "-q", "run", cfg, "--no-overwrite", "--resume")
    assert rc == 0, err
    assert np.array_equal(read_array(out), read_array(made.ref), equal_nan=True)
    done = file_states(out)
    rc, _, err = _said(capsys, "-q", "run", cfg, "--no-overwrite")
    assert rc == 1 and "already exists" in err and "with --overwrite in place of" in err, err
    assert file_states(out) == done
    rc, _, err = _said(capsys, "run", cfg, "--overwrite", "--no-overwrite")
    assert rc == 2 and err.count("\n") == 1 and "contradicts" in err, err
    assert file_states(out) == done
    rc, _, err = _said(capsys, "-q", "run", cfg)  # the config's: replaced
    assert rc == 0 and file_states(out) != done, err


@pytest.mark.parametrize("configured", [False, True], ids=["plain", "output.overwrite"])
@pytest.mark.parametrize("at", ["complete", "foreign array"])
def test_no_overwrite_of_an_output_there_says_it_is_kept_as_asked(
    made: Made, tmp_path: Path, capsys: pytest.CaptureFixture[str], configured: bool, at: str
) -> None:
    """`run --no-overwrite` (and its dry run) of an output that is there, a config's
    ``output.overwrite: true`` or not, had been told "pass --overwrite", the flag its user
    had just said no to. Its line says the output is kept, as asked, and the two choices:
    another output.store, or the run that replaces it (`--overwrite` in place of
    `--no-overwrite`, not the config's plain run said no to); ``pipeline.run(config,
    overwrite=False)`` says so in the call's words. Untouched."""
    import pipeline

    cfg = _config(tmp_path, made.input)
    doc = yaml.safe_load(cfg.read_text())
    doc["output"]["overwrite"] = configured
    cfg.write_text(yaml.safe_dump(doc, sort_keys=False))
    out = tmp_path / "out.zarr"
    STATES[at](made, out)
    before = file_states(out)
    how = "run with --overwrite in place of --no-overwrite to "
    for extra in ([], ["--dry-run"]):
        rc, _, err = _said(capsys, "-q", "run", cfg, "--no-overwrite", *extra)
        errors = [ln for ln in err.splitlines() if ln.startswith("error: ")]
        assert rc == 1 and len(errors) == 1, err
        line = errors[0]
        assert "it is kept, as --no-overwrite asks" in line and how in line, line
        assert "choose another output.store" in line and "pass --overwrite" not in line, line
        assert "output.overwrite" not in line, line  # not the plain run said no to
        assert line.count("another output.store") == 1, line
        assert file_states(out) == before
    with pytest.raises(pipeline.OutputError) as info:
        pipeline.run(cfg, overwrite=False)
    line = str(info.value)
    how = "call `pipeline.run(config, overwrite=True)` to "
    assert "it is kept, as overwrite=False asks" in line and how in line, line
    assert "--" not in line and "choose another output.store" in line, line
    assert "output.overwrite" not in line, line
    assert file_states(out) == before
    rc, _, err = _said(capsys, "-q", "run", cfg)  # not said no to: as it was
    if not configured:
        assert rc == 1 and "pass --overwrite" in err and "kept" not in err, err
        assert file_states(out) == before


@pytest.mark.parametrize("at", ["complete", "foreign array"])
def test_a_no_overwrite_dry_run_s_row_says_the_output_is_kept_as_its_error_does(
    made: Made, tmp_path: Path, capsys: pytest.CaptureFixture[str], at: str
) -> None:
    """`run --no-overwrite --dry-run` of an output that is there: its error line said the
    output is kept, as asked, but its "output now" row, made of the same refusal before the
    line was reworded, still said "pass --overwrite", the flag its user had just said no to.
    The refusal is made so where the run decides (the run's ``declined``): the row says
    what the line says."""
    cfg = _config(tmp_path, made.input)
    out = tmp_path / "out.zarr"
    STATES[at](made, out)
    before = file_states(out)
    rc, said, err = _said(capsys, "run", cfg, "--no-overwrite", "--dry-run")
    rows = [ln for ln in said.splitlines() if ln.strip().startswith("output now")]
    assert rc == 1 and len(rows) == 1, said + err
    assert "it is kept, as --no-overwrite asks" in rows[0], rows
    assert "pass --overwrite" not in said + err, said + err
    assert file_states(out) == before
