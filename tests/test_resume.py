"""Resuming: a run stopped any way (SIGKILL, Ctrl-C, SIGTERM, its scheduler lost) is finished by
``run --resume`` without recomputing the blocks it had written, and the result is the same bytes
as a run that was never stopped. A resume with another config or input is refused.

The runs are real: the CLI in its own process with a LocalCluster of worker processes, stopped
with real signals once some (never all) blocks are marked in the output's run record.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
import pytest
import yaml
import zarr

import pipeline
from pipeline.cli import main
from pipeline.config import load_config
from pipeline.errors import InputError, OutputError
from tests.conftest import STAGES, make_array, read_array, record_of
from tests.faultkit import (
    Stopped,
    assert_same_stores,
    copy_store,
    expected,
    external_cluster,
    file_states,
    kill_procs,
    killed_midway,
    many_blocks_input,
    marker_names,
    markers,
    one_line_error,
    read_only_folder,
    refused,
    run_and_signal,
    run_python,
    set_aside,
    status,
    stopped_status,
    stored_files,
    wait_for_markers,
    wait_gone,
)

COLS = 4096


@dataclass
class Work:
    """A module's shared set-up: an input of many blocks, a config, the output of a run that
    was never stopped (``ref``), and a snapshot of the output of a run killed with SIGKILL."""

    dir: Path
    config: Path
    input: Path
    output: Path
    ref: Path
    killed: Path
    x: np.ndarray
    rows: int

    def restore_killed(self) -> None:
        copy_store(self.killed, self.output)

    def config_with(self, name: str, **changes: object) -> Path:
        doc = yaml.safe_load(self.config.read_text())
        doc.update(changes)
        p = self.dir / name
        p.write_text(yaml.safe_dump(doc, sort_keys=False))
        return p


def _config(d: Path, cols: int = COLS) -> Path:
    cfg = {
        "input": {"store": str(d / "in.zarr")},
        "output": {"store": str(d / "out.zarr"), "chunks": [1, cols // 4]},
        "stages": STAGES,
        "backend": "cpu",
        "chunking": {"block": [1, cols]},
        # worker processes: what an interrupt or a kill must not leave behind
        "cluster": {"workers": 2, "threads_per_worker": 1, "dashboard": "", "protocol": "tcp"},
    }
    p = d / "run.yaml"
    p.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return p


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Work:
    d = tmp_path_factory.mktemp("resume")
    cfg = _config(d)
    out = d / "out.zarr"

    def prepare(rows: int) -> np.ndarray:
        shutil.rmtree(out, ignore_errors=True)
        x = many_blocks_input(d / "in.zarr", rows)
        # the uninterrupted run, written at the same path (same fingerprint), then set aside
        assert main(["-q", "run", str(cfg), "--progress", "none"]) == 0
        shutil.rmtree(d / "ref.zarr", ignore_errors=True)
        out.rename(d / "ref.zarr")
        return x

    def check(stopped: Stopped, left: list[psutil.Process]) -> None:
        assert stopped.returncode == -signal.SIGKILL
        # the killed run's workers end with it: none is left writing
        assert not left, f"worker processes outlived the killed run: {left}"

    rows, x = killed_midway(cfg, out, prepare, 400, cwd=d, check=check)
    copy_store(out, d / "killed.snapshot")
    return Work(d, cfg, d / "in.zarr", out, d / "ref.zarr", d / "killed.snapshot", x, rows)


def _chunk_files_of_done_blocks(output: Path) -> dict[str, tuple[int, int, bytes]]:
    """(mtime, inode, bytes) of the shard file of every block marked as written."""
    states = file_states(output)
    keys = ["c/" + name.replace(".", "/") for name in marker_names(output)]
    return {k: states[k] for k in keys}


def test_killed_run_is_marked_incomplete_and_resumable(work: Work) -> None:
    work.restore_killed()
    assert status(work.output) == "incomplete"
    record = work.output / ".pipeline"
    assert (record / "run.json").exists()
    assert 0 < markers(work.output) < work.rows
    manifest = json.loads((record / "run.json").read_text())
    assert (
        manifest["fingerprint"] == record_of(zarr.open_array(str(work.output)).attrs)["fingerprint"]
    )


def test_resume_after_sigkill_skips_written_blocks_and_matches_uninterrupted_run(
    work: Work, cli
) -> None:
    work.restore_killed()
    skipped = markers(work.output)
    before = _chunk_files_of_done_blocks(work.output)
    assert len(before) == skipped
    rc, out, err = cli("run", work.config, "--resume", "--summary-json", work.dir / "s.json")
    assert rc == 0, err
    assert f"resuming: {skipped} of {work.rows} blocks already written (skipped)" in err
    summary = json.loads((work.dir / "s.json").read_text())
    assert summary["blocks_skipped"] == skipped
    assert summary["blocks_done"] == work.rows - skipped
    assert summary["blocks_total"] == work.rows
    # the counts cover the whole output, the blocks written before the kill included
    y = expected(work.x)
    assert summary["nan"] == np.isnan(y).sum() > 0
    assert summary["posinf"] == np.isposinf(y).sum() > 0
    assert summary["neginf"] == np.isneginf(y).sum() == 0
    assert re.search(rf"{skipped} already done \(skipped\)", out), out
    # the blocks already written were not written again: same inode, time and bytes
    after = file_states(work.output)
    assert {k: after[k] for k in before} == before
    assert status(work.output) == "complete"
    assert not (work.output / ".pipeline").exists()
    assert_same_stores(work.output, work.ref)
    assert np.array_equal(read_array(work.output), expected(work.x), equal_nan=True)


def test_new_run_and_verify_say_the_output_is_incomplete(work: Work, cli) -> None:
    work.restore_killed()
    snapshot = file_states(work.output)
    e = refused("run", work.config)
    assert isinstance(e, OutputError)
    assert (e.output, e.status) == (str(work.output), "incomplete")
    rc, out, err = cli("verify", work.config)
    assert rc == 1
    assert re.search(r"output status\s+incomplete", out), out
    assert "`run --resume` finishes it" in one_line_error(err)
    assert file_states(work.output) == snapshot  # neither wrote anything


def test_an_interrupted_output_whose_status_was_edited_to_complete_is_incomplete(
    work: Work, cli
) -> None:
    """h56b: the killed run's output with its record's ``status`` edited to "complete" (its
    identity and fingerprint untouched, its run record kept): ``run --resume`` said "nothing
    to do" and a sampled ``verify`` could pass, its unwritten blocks read as the fill value.
    No run that finished wrote that record (it has no ``summary``): verify says the output is
    incomplete, with `run --resume`, which finishes it, skipping the blocks written, to the
    uninterrupted run's values."""
    work.restore_killed()
    skipped = markers(work.output)
    arr = zarr.open_array(str(work.output), mode="r+")
    record = record_of(arr.attrs)
    arr.update_attributes({"pipeline": json.dumps({**record, "status": "complete"})})
    rc, out, err = cli("verify", work.config)
    assert rc == 1, out + err
    assert re.search(r"output status\s+incomplete", out), out
    assert "`run --resume` finishes it" in one_line_error(err), err
    rc, _, err = cli("run", work.config, "--resume")
    assert rc == 0, err
    assert f"resuming: {skipped} of {work.rows} blocks already written" in err, err
    assert status(work.output) == "complete"
    assert np.array_equal(read_array(work.output), expected(work.x), equal_nan=True)


def test_resume_is_refused_when_a_stage_parameter_changed(work: Work, cli) -> None:
    work.restore_killed()
    snapshot = file_states(work.output)
    stages = [{"op": "multiply", "factor": 6}, {"op": "square"}, {"op": "add"}]
    cfg = work.config_with("changed.yaml", stages=stages)
    e = refused("run", cfg, "--resume")
    assert isinstance(e, OutputError)
    assert (e.status, e.changed) == ("incomplete", ["stages"])
    assert file_states(work.output) == snapshot


def test_resume_refused_for_another_block_names_the_configs_keys(work: Work, cli) -> None:
    """A resume with another chunking.block is refused naming it and the shards that follow
    from it, by the config's keys: the line had said "the layout changed (block/chunk/unit
    were [[1, 64], [1, 16], [1, 64]], now [[2, 64], [1, 16], [2, 64]])", a unit being no key
    of the config (h81a)."""
    work.restore_killed()
    snapshot = file_states(work.output)
    cfg = work.config_with("block.yaml", chunking={"block": [2, COLS]})
    e = refused("run", cfg, "--resume")
    assert isinstance(e, OutputError)
    assert (e.status, e.changed) == ("incomplete", ["layout"])
    said = (
        f"the layout changed (chunking.block was [1, {COLS}], now [2, {COLS}]; "
        f"its shards were [1, {COLS}], now [2, {COLS}])"
    )
    assert said in str(e), e
    assert file_states(work.output) == snapshot


def test_resume_is_refused_when_the_input_was_rewritten(work: Work, cli) -> None:
    work.restore_killed()
    with set_aside(work.input):
        snapshot = file_states(work.output)
        # same shape, dtype and layout; other values, written after the interruption
        many_blocks_input(work.input, work.rows, seed=1)
        e = refused("run", work.config, "--resume")
        assert isinstance(e, OutputError)
        assert (e.status, e.changed) == ("incomplete", ["input.data"])
        assert file_states(work.output) == snapshot


def test_resume_is_refused_when_the_input_was_rewritten_keeping_sizes_and_times(
    work: Work, cli
) -> None:
    """An input chunk rewritten with other bytes of the same size, its modification time put
    back (as ``cp -p`` of another copy does; helper-40: the resume took it for the same input
    and marked complete an output of both inputs' values)."""
    work.restore_killed()
    with set_aside(work.input):
        snapshot = file_states(work.output)
        chunk = work.input / "c" / "0" / "0"
        st = chunk.stat()
        data = bytearray(chunk.read_bytes())
        data[-1] ^= 0xFF
        chunk.write_bytes(bytes(data))
        os.utime(chunk, ns=(st.st_atime_ns, st.st_mtime_ns))
        assert chunk.stat().st_size == st.st_size
        e = refused("run", work.config, "--resume")
        assert isinstance(e, OutputError)
        assert (e.status, e.changed) == ("incomplete", ["input.data"])
        assert file_states(work.output) == snapshot
    rc, _, err = cli("run", work.config, "--resume")  # the input as it was: resumed
    assert rc == 0, err
    assert_same_stores(work.output, work.ref)


def test_an_interrupted_output_moved_elsewhere_resumes_there(work: Work, cli) -> None:
    """Where the output is does not change its bytes: an interrupted output moved with its run
    record resumes at its new place, to the bytes of the run that was never stopped."""
    moved = work.dir / "moved.zarr"
    copy_store(work.killed, moved)
    output = {**yaml.safe_load(work.config.read_text())["output"], "store": str(moved)}
    cfg = work.config_with("moved.yaml", output=output)
    skipped = markers(moved)
    rc, _, err = cli("run", cfg, "--resume")
    assert rc == 0, err
    assert f"resuming: {skipped} of {work.rows} blocks already written" in err
    assert status(moved) == "complete"
    got, ref = stored_files(moved), stored_files(work.ref)
    assert sorted(got) == sorted(ref)
    assert all(got[k] == ref[k] for k in got if k != "zarr.json")
    shutil.rmtree(moved)


def _resume_writes_one_block_again(cli, work, skipped: int, *flags: str) -> None:
    """``run --resume`` (with ``flags``) of ``work``'s output, one of whose ``skipped`` marked
    blocks no longer holds what was written: that block is written again, said in a
    ``warning:`` line (-q's too: h74b, it had been a bare line, and -q had dropped it), the
    output complete and NumPy's. The resume's line of blocks already written is progress, no
    warning: said as it is, and not with -q."""
    rc, _, err = cli("run", work.config, "--resume", *flags)
    assert rc == 0, err
    lines = err.splitlines()
    gone = [line for line in lines if "marked written no longer hold" in line]
    assert len(gone) == 1, err
    assert gone[0].startswith("warning: resuming: 1 block(s) marked written no longer hold "), err
    resuming = f"resuming: {skipped - 1} of {work.rows} blocks already written"
    if "-q" in flags:
        assert "blocks already written" not in err, err
    else:
        assert any(line.startswith(resuming) for line in lines), err
    assert status(work.output) == "complete"
    assert np.array_equal(read_array(work.output), expected(work.x), equal_nan=True)


@pytest.mark.parametrize("damage", ["deleted", "cut short"])
def test_a_marked_block_whose_chunk_is_gone_is_written_again(work: Work, cli, damage: str) -> None:
    """A chunk of a block marked written, deleted or cut short after the kill (or left out of
    a copy of the output, which took the run record: helper-40): the resume had skipped the
    block and marked the output complete with fill values there. The block is written again,
    said in the warning (of ``run -q`` too), and the output ends equal to the uninterrupted
    run's."""
    work.restore_killed()
    skipped = markers(work.output)
    name = sorted(marker_names(work.output))[0]
    chunk = work.output / ("c/" + name.replace(".", "/"))
    if damage == "deleted":
        chunk.unlink()
    else:
        chunk.write_bytes(chunk.read_bytes()[:-3])
    _resume_writes_one_block_again(cli, work, skipped, *(["-q"] if damage == "cut short" else []))


@pytest.mark.parametrize("damage", ["zeroed", "a byte flipped"])
def test_a_marked_block_whose_file_changed_at_its_size_is_written_again(
    work: Work, cli, damage: str
) -> None:
    """A shard file of a block marked written, zeroed or with one byte flipped after the kill,
    its size kept (a disk's fault, a copy padded to its size): the resume had checked only
    the sizes against the marker's ``bytes_written``, skipped the block and marked the output
    complete, unreadable there (h82b). The file is newer than the block's marker: the
    block is written again, said in the warning, and the output ends equal to the
    uninterrupted run's."""
    work.restore_killed()
    skipped = markers(work.output)
    name = sorted(marker_names(work.output))[0]
    shard = work.output / ("c/" + name.replace(".", "/"))
    data = bytearray(shard.read_bytes())
    if damage == "zeroed":
        data[:] = bytes(len(data))
    else:
        data[len(data) // 2] ^= 0x01
    shard.write_bytes(bytes(data))
    _resume_writes_one_block_again(cli, work, skipped)
    assert_same_stores(work.output, work.ref)


def test_a_copy_that_did_not_keep_the_files_times_is_written_again_and_said(
    work: Work, cli
) -> None:
    """A copy of a killed output that did not keep its files' times (``cp -r``, no ``-p``),
    its chunk files copied after the markers (as cp does where it lists ``c`` last): every
    marked block reads as changed since its marker, and is written again, needlessly; the
    warning says that such a copy reads so (it had said only 'changed since', naming no
    copy, h82g), and the output ends equal to the uninterrupted run's."""
    work.restore_killed()
    skipped = markers(work.output)
    later = time.time() + 5
    for path in (work.output / "c").rglob("*"):
        if path.is_file():
            os.utime(path, (later, later))
    rc, _, err = cli("run", work.config, "--resume")
    assert rc == 0, err
    gone = [line for line in err.splitlines() if "marked written no longer hold" in line]
    assert len(gone) == 1 and f"resuming: {skipped} block(s)" in gone[0], err
    assert "a copy that did not keep the files' times, cp -r, reads so" in gone[0], err
    assert status(work.output) == "complete"
    assert_same_stores(work.output, work.ref)


def test_an_uncompressed_marked_block_with_a_value_changed_is_written_again(
    cli, tmp_path: Path
) -> None:
    """An uncompressed output (``output.codec: none``), one value of a block marked written
    changed in its file after the kill, its size kept: zarr-python reads the changed value
    without complaint, and the resume had skipped the block and marked the output complete,
    one element wrong, exit 0 (h82b). The block is written again and the output is NumPy's,
    bit for bit. (A run of its own, killed: its output's codec is another.) A second marked
    block's file deleted too: the warning names both blocks (h86c: the first alone had been
    named)."""
    cfg = _config(tmp_path)
    doc = yaml.safe_load(cfg.read_text())
    doc["output"]["codec"] = {"name": "none"}
    cfg.write_text(yaml.safe_dump(doc, sort_keys=False))
    source, output = tmp_path / "in.zarr", tmp_path / "out.zarr"
    _, x = killed_midway(cfg, output, _fresh_input(source, output), 100, cwd=tmp_path)
    name = sorted(marker_names(output))[0]
    shard = output / ("c/" + name.replace(".", "/"))
    data = bytearray(shard.read_bytes())
    data[101] ^= 0x40  # a float32's exponent bit, in the shard's first chunk
    shard.write_bytes(bytes(data))
    other = sorted(marker_names(output))[1]
    (output / ("c/" + other.replace(".", "/"))).unlink()
    rows = sorted(int(n.split(".")[0]) for n in (name, other))
    rc, _, err = cli("run", cfg, "--resume")
    assert rc == 0, err
    assert "2 block(s) marked written no longer hold what was written" in err, err
    assert f"record: [{rows[0]}, 0], [{rows[1]}, 0]): written again" in err, err
    assert status(output) == "complete"
    got, want = read_array(output), expected(x)
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32))


def _change_at_its_size(shard: Path, damage: str) -> None:
    """Change the file ``shard`` keeping its size: ``zeroed``, ``a byte flipped`` in place, or
    ``replaced`` by another file of that size (random bytes, put in its place by a rename)."""
    data = bytearray(shard.read_bytes())
    if damage == "zeroed":
        data[:] = bytes(len(data))
    elif damage == "a byte flipped":
        data[len(data) // 2] ^= 0x01
    else:
        other = shard.with_name(shard.name + ".new")
        other.write_bytes(np.random.default_rng(1).bytes(len(data)))
        other.replace(shard)
        return
    shard.write_bytes(bytes(data))


#: What a run or verify says of a complete output a unit file of which changed since.
_MODIFIED = "of its 400 shard files modified after it was marked complete (c/{})"
_MODIFIED_FIX = "`pipeline verify --all` checks every block; `run --overwrite` writes it again"


@pytest.mark.parametrize("damage", ["zeroed", "a byte flipped", "replaced"])
def test_a_complete_output_changed_at_its_size_is_not_nothing_to_do(
    work: Work, cli, damage: str
) -> None:
    """A complete output, one shard file of which was changed since at its size (zeroed, a
    byte flipped in place, another file put in its place): `run --resume` and `run
    --no-overwrite` had checked only the files' sizes against the record and said "already
    complete; nothing to do", exit 0, and a sampled `verify` passed where its blocks missed
    that one. The file is newer than the attributes that marked the output complete: each
    refuses in one line, before anything is written, saying what changed, that the output
    is no longer known to be right, and the fixes (`pipeline verify --all`, `run
    --overwrite`); `plan` says the same; `verify --all` finds the block."""
    copy_store(work.ref, work.output)  # complete, its times kept
    _change_at_its_size(work.output / "c" / "399" / "0", damage)
    before = file_states(work.output)
    said = "1 " + _MODIFIED.format("399/0")
    for flags in (["--resume"], ["--no-overwrite"]):
        rc, _, err = cli("run", work.config, *flags)
        line = one_line_error(err)
        assert rc == 1 and "nothing to do" not in err, err
        assert f"out.zarr is complete, but {said}, so it is no longer known to hold" in line
        assert "cp -r, reads so too" in line and line.endswith(_MODIFIED_FIX), line
    assert file_states(work.output) == before
    rc, out, err = cli("plan", work.config)
    assert rc == 0 and f"complete, but {said}" in out, out + err
    rc, out, err = cli("verify", work.config, "--samples", "1")
    line = one_line_error(err)
    assert rc == 1 and f"the output's {said}, so it is no longer known" in line, err
    assert line.endswith("`run --overwrite` writes it again"), line
    rc, out, err = cli("verify", work.config, "--all")
    assert rc == 1 and "modified after it was marked complete" not in err, err + out
    assert file_states(work.output) == before


def test_a_complete_output_copied_without_its_times_is_said_so_and_verify_all_passes(
    work: Work, cli
) -> None:
    """A complete output copied without its files' times (``cp -r``, no ``-p``), its shard
    files copied after its attributes: every shard reads as modified since the output was
    marked complete, so `run --resume` refuses it, naming such a copy and `pipeline verify
    --all`; `verify` with samples fails it, and `verify --all`, every block as computed,
    passes it with a note (the times alone cannot tell the copy from damage), which says it
    recorded that: `run --resume` then finds it complete."""
    copy_store(work.ref, work.output)
    os.utime(work.output / "zarr.json", (time.time() - 20, time.time() - 20))  # the mark
    later = time.time() - 10  # after the mark, before now (verify --all records no later)
    for path in (work.output / "c").rglob("*"):
        if path.is_file():
            os.utime(path, (later, later))
    # each named, three then how many more (h86c: the first alone had been)
    every = "400 " + _MODIFIED.format("0/0, c/1/0, c/2/0 and 397 more")
    rc, _, err = cli("run", work.config, "--resume")
    line = one_line_error(err)
    assert rc == 1 and every in line, line
    assert "(a copy that did not keep the files' times, cp -r, reads so too)" in line, line
    rc, _, err = cli("verify", work.config)
    assert rc == 1 and every in err, err
    rc, out, err = cli("verify", work.config, "--all")
    assert rc == 0, err + out
    assert "note: the output's " + every in err, err
    assert "every block was compared" in err and "recorded: its mark" in err, err
    rc, _, err = cli("run", work.config, "--resume")  # recorded: complete (h84a)
    assert rc == 0 and "nothing to do" in err, err


def test_a_touched_shard_of_a_complete_output_is_cleared_by_verify_all(work: Work, cli) -> None:
    """h84a: a complete output, one shard file of which was touched (its time moved, its bytes
    kept): `run` and `run --resume` refuse it as modified after it was marked complete,
    naming `pipeline verify --all` first, which passed it and recorded nothing, so that only
    `run --overwrite`, recomputing it all, cleared the refusal. Every command exits as its
    lines say (an `error:` line comes with a non-zero exit, and only then): `plan` 0, its
    row naming both fixes. A sampled `verify` fails it and changes nothing; `verify --all`,
    every block compared and each as computed, moves the output's mark of completion (its
    ``zarr.json``'s time) past that file and says so in its last line, changing no byte of
    the output nor anything of the input; then `run --resume` finds it complete, `verify`
    and `plan` pass, and a later change of the file is seen again."""
    copy_store(work.ref, work.output)  # complete, its times kept
    shard = work.output / "c" / "399" / "0"
    for path in (work.output / "c").rglob("*"):  # the shards, then the mark, in the past
        if path.is_file():
            os.utime(path, (time.time() - 30, time.time() - 30))
    os.utime(work.output / "zarr.json", (time.time() - 20, time.time() - 20))  # the mark
    later = time.time() - 10  # after the mark, before now (verify --all records no later)
    os.utime(shard, (later, later))
    input_before, before = file_states(work.input), file_states(work.output)

    def each(*args: object, rc: int) -> tuple[str, str]:
        got, out, err = cli(*args)
        assert got == rc, (args, out + err)
        assert ("error:" in err) is (got != 0), (args, err)
        return out, err

    said = "1 " + _MODIFIED.format("399/0")
    for flags in ([], ["--resume"], ["--no-overwrite"], ["--dry-run"]):
        line = one_line_error(each("run", work.config, *flags, rc=1)[1])
        assert said in line and line.endswith(_MODIFIED_FIX), line
    out, _ = each("plan", work.config, rc=0)
    assert f"complete, but {said}" in out and _MODIFIED_FIX in out, out
    assert said in each("verify", work.config, rc=1)[1]
    each("info", rc=0)
    each("generate", work.config, rc=1)  # the config describes no input to generate
    assert file_states(work.output) == before  # a sampled verify records nothing
    _, err = each("verify", work.config, "--all", rc=0)
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"note: the output's {said}, and every block was compared"), last
    assert last.endswith(
        "recorded: its mark of completion now follows those files, so `run --resume` finds it "
        "complete"
    ), last
    after = file_states(work.output)
    assert {k: v[2] for k, v in after.items()} == {k: v[2] for k, v in before.items()}
    assert [k for k in after if after[k] != before[k]] == ["zarr.json"]
    assert after["zarr.json"][0] == before["c/399/0"][0]  # the file's time, not later
    _, err = each("run", work.config, "--resume", rc=0)
    assert "nothing to do" in err, err
    each("verify", work.config, rc=0)
    out, _ = each("plan", work.config, rc=0)
    assert "modified after" not in out, out
    assert file_states(work.input) == input_before
    os.utime(shard, (later + 10, later + 10))  # changed again since: said again
    assert said in one_line_error(each("run", work.config, "--resume", rc=1)[1])


def test_verify_all_never_dates_the_mark_of_completion_later_than_now(work: Work, cli) -> None:
    """h84e: a shard file of a complete output dated two hours ahead (`touch -d '+2 hours'`):
    `verify --all` had moved the output's ``zarr.json`` to that time, so a byte changed in
    another shard (its size kept) within those two hours was taken as older than the mark:
    `run --resume` said "complete (nothing to do)" over damage. Now that `verify --all`
    passes the output (every block as computed) but records nothing, naming the file dated
    later than now and the fix; `run --resume` still refuses it, and no file of the output
    changes."""
    copy_store(work.ref, work.output)
    shard = work.output / "c" / "399" / "0"
    ahead = time.time() + 7200
    os.utime(shard, (ahead, ahead))
    before = file_states(work.output)
    rc, out, err = cli("verify", work.config, "--all")
    assert rc == 0, err + out
    last = err.strip().splitlines()[-1]
    assert "not recorded" in last and f"{shard} dated later than now" in last, last
    assert "`touch` it" in last and "so `run` still refuses it" in last, last
    assert file_states(work.output) == before
    rc, _, err = cli("run", work.config, "--resume")
    assert rc == 1 and "1 " + _MODIFIED.format("399/0") in one_line_error(err), err
    # two so dated: each named, each to be touched (h86c: the first alone had been)
    other = work.output / "c" / "7" / "0"
    os.utime(other, (ahead, ahead))
    rc, out, err = cli("verify", work.config, "--all")
    assert rc == 0, err + out
    last = err.strip().splitlines()[-1]
    assert f"{other}, {shard} dated later than now" in last and "`touch` them" in last, last
    rc, _, err = cli("run", work.config, "--resume")
    assert rc == 1 and "2 " + _MODIFIED.format("7/0, c/399/0") in one_line_error(err), err


def _fresh_input(source: Path, output: Path) -> Callable[[int], np.ndarray]:
    """:func:`killed_midway`'s ``prepare``: an input of that many one-row blocks at
    ``source`` (:func:`many_blocks_input`, its values returned), ``output`` removed."""

    def prepare(rows: int) -> np.ndarray:
        shutil.rmtree(output, ignore_errors=True)
        return many_blocks_input(source, rows)

    return prepare


def _unmarked_row(output: Path, rows: int) -> int:
    """A block (a row, of ``rows``) the run record of ``output`` does not mark written."""
    marked = {int(name.split(".")[0]) for name in marker_names(output)}
    return next(r for r in range(rows) if r not in marked)


def test_a_resume_over_an_output_file_hard_linked_to_the_inputs_is_refused(
    work: Work, cli, tmp_path: Path
) -> None:
    """An output file that is the input's file under a second name (``ln in.zarr/c/R/0
    out.zarr/c/R/0``; an output copied with ``cp -al`` from a store sharing the input's
    files): a resume writes the output's files, so it would change the input's (its times
    and link count, as the write replaces the output's name), which is never modified; it
    had been refused as "the input's data changed", naming no link. Refused in one line
    naming both files and `run --overwrite`, before anything is written; `run --overwrite`
    then starts over, the input's bytes as they were. (A run of its own, killed: linking
    changes the input's file times, which the module's other tests' record holds.)"""
    cfg = _config(tmp_path)
    source, output = tmp_path / "in.zarr", tmp_path / "out.zarr"
    rows, x = killed_midway(cfg, output, _fresh_input(source, output), work.rows, cwd=tmp_path)
    skipped = markers(output)
    row = _unmarked_row(output, rows)
    theirs, ours = source / "c" / str(row) / "0", output / "c" / str(row) / "0"
    ours.parent.mkdir(parents=True, exist_ok=True)
    ours.unlink(missing_ok=True)  # a block the kill cut short
    os.link(theirs, ours)
    before = stored_files(source)
    rc, out, err = cli("run", cfg, "--resume")
    assert rc == 1, out
    assert err.count("\n") == 1, err
    assert f"{ours} is a hard link to the input's file {theirs}" in err, err
    assert "`run --overwrite` starts over" in err, err
    # a plain run, which asked no resume, is told what `run --resume` refuses, not "cannot
    # resume" (h87e), with the same fields
    rc, _, err = cli("run", cfg)
    line = one_line_error(err).removeprefix("error: ")
    assert rc == 1 and "cannot resume" not in line, line
    assert line.startswith(
        f"{output} is incomplete (an interrupted run), and `run --resume` refuses it: {ours} is "
        f"a hard link to the input's file {theirs}"
    ), line
    e = refused("run", cfg)
    assert isinstance(e, OutputError) and (e.relation, e.link) == ("hard linked", str(ours)), e
    assert markers(output) == skipped and ours.stat().st_nlink == 2
    # a second such file: each named (h86c: the first alone had been, with a count)
    row2 = next(r for r in range(rows) if r != row and f"{r}.0" not in marker_names(output))
    theirs2, ours2 = source / "c" / str(row2) / "0", output / "c" / str(row2) / "0"
    ours2.parent.mkdir(parents=True, exist_ok=True)
    ours2.unlink(missing_ok=True)
    os.link(theirs2, ours2)
    e = refused("run", cfg, "--resume")
    assert isinstance(e, OutputError), e
    both = sorted([str(ours), str(ours2)])
    assert f"{', '.join(both)} are hard links to the input's files ({both[0]} to " in str(e), e
    assert e.links == both and e.link == both[0], e.data
    assert markers(output) == skipped
    rc, _, err = cli("run", cfg, "--overwrite")
    assert rc == 0, err
    assert stored_files(source) == before and theirs.stat().st_nlink == 1
    assert np.array_equal(read_array(output), expected(x), equal_nan=True)


def test_a_resume_of_an_outputs_hard_linked_copy_leaves_the_other_output(
    work: Work, cli, tmp_path: Path
) -> None:
    """An interrupted output copied with ``cp -al`` (its files hard links to the first
    output's), a block of the copy written again by its resume (its marker gone): the resume
    completes the copy to NumPy's values, and the first output keeps every byte, a write
    replacing the copy's file, never writing through it."""
    first = tmp_path / "first.zarr"
    copy_store(work.killed, first)
    copy = work.dir / "linked.zarr"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(first, copy, copy_function=os.link)
    name = marker_names(copy)[0]
    (copy / ".pipeline" / "done" / name).unlink()
    shard = copy / ("c/" + name.replace(".", "/"))
    assert shard.stat().st_nlink == 2
    before = stored_files(first)
    output = {**yaml.safe_load(work.config.read_text())["output"], "store": str(copy)}
    rc, _, err = cli("run", work.config_with("linked.yaml", output=output), "--resume")
    assert rc == 0, err
    assert status(copy) == "complete"
    assert np.array_equal(read_array(copy), expected(work.x), equal_nan=True)
    assert stored_files(first) == before
    shutil.rmtree(copy)


def test_chunks_moved_behind_a_link_are_the_outputs_own(work: Work, cli) -> None:
    """The interrupted output's chunk folder moved to another disk, a link left in its place
    (``c -> /elsewhere/c``), which Zarr reads through: the resume had found every marked
    block's chunk gone and written them all again, and the complete output recorded no chunk
    file at all, so one deleted behind the link since read as the fill value with `verify`
    passing and `run --resume` saying nothing to do (h65d). The files behind the link are
    the output's: the resume skips the marked blocks, and a deletion is named; `--overwrite`,
    which would delete the link alone, is refused until they are back in the output (h84b)."""
    work.restore_killed()
    skipped = markers(work.output)
    elsewhere = work.dir / "elsewhere"
    shutil.rmtree(elsewhere, ignore_errors=True)
    elsewhere.mkdir()
    try:
        (work.output / "c").rename(elsewhere / "c")
        (work.output / "c").symlink_to(elsewhere / "c")
        rc, _, err = cli("run", work.config, "--resume")
        assert rc == 0, err
        assert f"resuming: {skipped} of {work.rows} blocks already written (skipped)" in err
        assert "no longer hold" not in err
        assert np.array_equal(read_array(work.output), expected(work.x), equal_nan=True)
        stored = record_of(zarr.open_array(str(work.output)).attrs)["stored"]
        assert stored["files"] == work.rows, stored
        (elsewhere / "c" / "1" / "0").unlink()  # behind the link: reads as the fill value
        rc, out, err = cli("verify", work.config)
        assert rc == 1 and "1 of its 400 shard files gone (c/1/0)" in err, err + out
        # the resume's fix, --overwrite, deletes a link alone, never what it leads to: refused
        # (h84b), so the resume says that refusal, naming the link, as --overwrite does, until
        # the chunks are back in the output's own folder (verify named c/1/0 above)
        e = refused("run", work.config, "--resume")
        assert isinstance(e, OutputError) and e.link == str(work.output / "c"), e
        e = refused("run", work.config, "--overwrite")
        assert isinstance(e, OutputError) and e.link == str(work.output / "c"), e
        (work.output / "c").unlink()
        (elsewhere / "c").rename(work.output / "c")
        rc, _, err = cli("run", work.config, "--overwrite", "--progress", "none")
        assert rc == 0, err
        rc, out, err = cli("verify", work.config, "--all")
        assert rc == 0, err + out
    finally:
        shutil.rmtree(elsewhere, ignore_errors=True)


@pytest.mark.parametrize("record", ["cut short", "deleted"])
def test_a_run_record_damaged_is_not_called_gone(work: Work, cli, record: str) -> None:
    """h61e: an interrupted output whose run record (``run.json``) was cut short: the resume's
    refusal had said the record "is gone", the file there. It says it is damaged (gone where
    it is), nothing written, and ``run --overwrite`` starts over."""
    work.restore_killed()
    manifest = work.output / ".pipeline" / "run.json"
    if record == "deleted":
        manifest.unlink()
    else:
        manifest.write_bytes(manifest.read_bytes()[:50])
    snapshot = file_states(work.output)
    rc, _, err = cli("run", work.config, "--resume")
    said = "damaged (it holds no JSON object)" if record == "cut short" else "gone"
    assert rc == 1 and f"its run record (.pipeline/run.json) is {said}, so" in err, err
    assert file_states(work.output) == snapshot
    rc, _, err = cli("run", work.config, "--overwrite")
    assert rc == 0, err
    assert np.array_equal(read_array(work.output), expected(work.x), equal_nan=True)


def test_flag_attributes_the_input_lacks_added_to_an_interrupted_output_are_an_edit(
    work: Work, cli
) -> None:
    """``flag_values`` and ``flag_meanings`` added by hand to an interrupted output whose
    input holds none: an earlier release carried such attributes from the input only, so
    these are an edit, said so ("edited or removed since"), never credited to an earlier
    release (h88e: the line had said "no edit since the run"); `run --overwrite` starts
    over and ends with NumPy's values and none of them."""
    work.restore_killed()
    flags = {"flag_values": [0, 1], "flag_meanings": "low high"}
    zarr.open_array(str(work.output), mode="r+").attrs.update(flags)
    rc, _, err = cli("run", work.config, "--resume")
    said = one_line_error(err)
    assert rc == 1 and said.startswith("error: cannot resume"), err
    assert "edited or removed since" in said and "earlier release" not in said, said
    assert "`run --overwrite` starts over" in said, said
    rc, _, err = cli("run", work.config, "--overwrite")
    assert rc == 0, err
    assert not set(zarr.open_array(str(work.output), mode="r").attrs) & set(flags)
    assert np.array_equal(read_array(work.output), expected(work.x), equal_nan=True)


@pytest.mark.parametrize("marker", ["empty", "cut short", "garbage"])
def test_a_block_whose_marker_is_unreadable_is_written_again(work: Work, cli, marker: str) -> None:
    """h61e: a block's marker that holds no JSON object (empty, cut short, overwritten: no
    release writes one, each written whole and atomically), its chunk cut short: the resume
    had taken the marker for proof, skipped the block without checking its chunk's size
    (the marker's ``bytes_written`` unread) and marked the output complete, that chunk
    unreadable. A marker so damaged proves nothing: its block is written again, said in the
    warning, and the output ends equal to the uninterrupted run's."""
    work.restore_killed()
    skipped = markers(work.output)
    name = sorted(marker_names(work.output))[0]
    done = work.output / ".pipeline" / "done" / name
    raw = done.read_bytes()
    done.write_bytes(
        {"empty": b"", "cut short": raw[: len(raw) // 2], "garbage": b"\xff\x00"}[marker]
    )
    chunk = work.output / ("c/" + name.replace(".", "/"))
    chunk.write_bytes(chunk.read_bytes()[:-3])
    _resume_writes_one_block_again(cli, work, skipped)


def test_copies_of_a_marker_under_other_names_mark_nothing(work: Work, cli) -> None:
    """h63d: the run record's ``done`` folder holding an editor's backup of a marker
    ('3.0~') and a file manager's copy ('3.0 copy'): the resume had stopped with a bare
    ValueError (an int() of '0~'), and `pipeline verify` named that resume as the fix. A name
    that is no block's marks nothing; it is a user's file, which the run's end had deleted
    with no word (h86e): the resume refuses, naming both; moved out, it finishes the output,
    NumPy's values."""
    work.restore_killed()
    skipped = markers(work.output)
    done = work.output / ".pipeline" / "done"
    name = sorted(marker_names(work.output))[0]
    copies = (f"{name} copy", f"{name}~")
    for copy in copies:
        shutil.copy(done / name, done / copy)
    rc, _, err = cli("run", work.config, "--resume")
    said = one_line_error(err)
    assert rc == 1 and f"holds done/{copies[0]}, done/{copies[1]}, which the" in said, err
    for copy in copies:
        (done / copy).rename(work.dir / copy)
    rc, _, err = cli("run", work.config, "--resume")
    assert rc == 0, err
    assert f"resuming: {skipped} of {work.rows} blocks already written" in err, err
    assert status(work.output) == "complete"
    assert np.array_equal(read_array(work.output), expected(work.x), equal_nan=True)


def _misshape(output: Path, part: str) -> str:
    """Put something of another kind at ``part`` of the run record of ``output`` (a file where
    the record or its ``done`` folder goes, a folder where a marker, the lock or ``run.json``
    goes); the key named, under the output."""
    record = output / ".pipeline"
    if part == "marker":
        part = f"done/{marker_names(output)[0]}"
    at = record / part if part else record
    if at.is_dir():
        shutil.rmtree(at)
    else:
        at.unlink()
    if part in ("", "done"):
        at.write_text("not a folder")
    else:
        (at / "x").mkdir(parents=True)
    return f".pipeline/{part}".rstrip("/")


@pytest.mark.parametrize(
    ("part", "then"),
    [
        ("done", "--resume"),
        ("marker", "--resume"),
        ("lock", "--resume"),
        ("run.json", "--overwrite"),
        ("", "--overwrite"),
    ],
    ids=["done-a-file", "marker-a-folder", "lock-a-folder", "run.json-a-folder", "record-a-file"],
)
def test_a_run_record_part_of_another_kind_is_named_by_every_command(
    work: Work, cli, part: str, then: str
) -> None:
    """h65a: the killed output's run record with a part of another kind than the run keeps
    there (its ``done`` folder or the record itself a file, a marker, the lock or
    ``run.json`` a folder): verify, plan and a plain run had said `run --resume` finishes it,
    which then stopped with the file system's NotADirectoryError or IsADirectoryError ("mend
    what is at that path"), after computing a block where a marker was a folder; so had
    `run --overwrite` where the lock or run.json was one, and every command where the record
    was a file. Every command refuses in the same line, naming the path to remove and the run
    that works then, nothing written; that run, once the path is removed, finishes the output
    to NumPy's values."""
    work.restore_killed()
    key = _misshape(work.output, part)
    path = work.output / key
    snapshot = file_states(work.output)
    line = f"the run record of {work.output} is damaged: {key} is " + (
        "a file where the run keeps a folder" if part in ("", "done") else "a folder where"
    )
    fix = f"remove {path} yourself, then `run {then}` "
    rc, out, err = cli("verify", work.config)
    assert rc == 1 and re.search(r"output status\s+incomplete", out), out + err
    said = one_line_error(err)
    assert line in said and fix in said, said
    rc, out, err = cli("plan", work.config)
    assert rc == 1 and line in out and fix in out, out + err
    for flags in ((), ("--resume",), ("--overwrite",)):
        rc, _, err = cli("run", work.config, "--progress", "none", *flags)
        assert rc == 1, err
        said = one_line_error(err)
        assert line in said and fix in said, said
    assert pipeline.verify(work.config).advice.endswith(
        "`pipeline.run(config, resume=True)` finishes it"
        if then == "--resume"
        else "`pipeline.run(config, overwrite=True)` starts over"
    )
    assert file_states(work.output) == snapshot  # none wrote anything
    shutil.rmtree(path) if path.is_dir() else path.unlink()
    rc, _, err = cli("run", work.config, "--progress", "none", then)
    assert rc == 0, err
    assert status(work.output) == "complete"
    assert np.array_equal(read_array(work.output), expected(work.x), equal_nan=True)


def test_every_part_of_a_run_record_of_another_kind_is_named(work: Work, cli) -> None:
    """h85b: the killed output's run record with its lock, ``run.json`` and a marker each a
    folder: the refusal named the first alone, and the next command, once it was removed,
    met the next refusal. Each is named, as a part and as a path to remove, nothing written;
    once all are removed, `run --overwrite` writes NumPy's values."""
    work.restore_killed()
    keys = [_misshape(work.output, part) for part in ("lock", "run.json", "marker")]
    snapshot = file_states(work.output)
    rc, _, err = cli("run", work.config, "--progress", "none", "--resume")
    assert rc == 1, err
    said = one_line_error(err)
    assert f"the run record of {work.output} is damaged: " in said, said
    for key in keys:
        assert f"{key} is a folder where the run keeps a file" in said, said
        assert str(work.output / key) in said.partition("remove ")[2], said
    assert "none of which a run writes over" in said, said
    assert file_states(work.output) == snapshot
    for key in keys:
        shutil.rmtree(work.output / key)
    rc, _, err = cli("run", work.config, "--progress", "none", "--overwrite")
    assert rc == 0, err
    assert np.array_equal(read_array(work.output), expected(work.x), equal_nan=True)


@pytest.mark.parametrize(
    ("part", "kind", "then"),
    [
        (".pipeline/run.json", "file", "`run --resume` finishes it"),
        (".pipeline", "folder", "`run --resume` finishes it"),
        (".pipeline/run.json", "nothing", "`run --overwrite` starts over"),
    ],
    ids=["run.json-a-link", "record-a-link", "run.json-a-link-to-nothing"],
)
def test_a_run_record_behind_a_link_is_named_with_a_fix_that_works(
    work: Work, cli, tmp_path: Path, part: str, kind: str, then: str
) -> None:
    """h86e: the killed output's ``run.json``, or its run record (``.pipeline``), a link to
    the one its run wrote, kept elsewhere: `run`, `plan` and `verify` said to remove the
    link, then `run --resume` finishes it, which then refused, the run record gone. They
    name replacing the link by what it links to, which that resume then finishes to NumPy's
    values. A link to nothing (``run.json``) had been named as content never fetched
    (`git annex get`): it is the record part that is a link to nothing, whose removal leaves
    `run --overwrite`, which then writes NumPy's values."""
    work.restore_killed()
    link = work.output / part
    kept = tmp_path / "kept"
    if kind == "nothing":
        link.unlink()
        snapshot = file_states(work.output)  # (which reads through links)
        link.symlink_to(tmp_path / "nowhere")
    else:
        link.rename(kept)
        link.symlink_to(kept, target_is_directory=kind == "folder")
        snapshot = file_states(work.output)
    there = "a link to nothing" if kind == "nothing" else f"a link to {kept}"
    fix = (
        f"remove {link} yourself"
        if kind == "nothing"
        else f"replace the link {link} by the {kind} it links to"
    )
    line = (
        f"the run record of {work.output} is damaged: {part} is {there} where the run keeps "
        f"a {'folder' if part == '.pipeline' else 'file'}, which no run writes over, even "
        f"with --overwrite: {fix}, then {then}"
    )
    rc, out, err = cli("verify", work.config)
    assert rc == 1 and line in one_line_error(err), out + err
    rc, out, err = cli("plan", work.config)
    assert rc == 1 and line in out, out + err
    for flags in ((), ("--resume",), ("--overwrite",)):
        rc, _, err = cli("run", work.config, "--progress", "none", *flags)
        assert rc == 1 and one_line_error(err) == f"error: {line}", err
    if kind == "nothing":
        link.unlink()
    assert file_states(work.output) == snapshot  # none wrote anything
    if kind != "nothing":  # what the line says: the link replaced by what it links to
        link.unlink()
        kept.rename(link)
    flag = "--overwrite" if kind == "nothing" else "--resume"
    rc, _, err = cli("run", work.config, "--progress", "none", flag)
    assert rc == 0, err
    assert status(work.output) == "complete"
    assert np.array_equal(read_array(work.output), expected(work.x), equal_nan=True)


@pytest.mark.parametrize(
    ("folder", "what"),
    [("c", "output chunk"), (".pipeline/done", "the run record's marker")],
)
def test_a_resume_that_cannot_write_into_the_output_says_so_in_one_line_and_resumes_after(
    work: Work, cli, folder: str, what: str
) -> None:
    """A folder of the killed output in which nothing can be created (the chunks' folder, or
    the run record's markers': an output another user's run began), resumed on worker
    processes: the run ends with one line naming the file, the output staying incomplete, the
    fix and `run --resume`; no worker prints distributed's "Compute Failed" traceback (the
    write's bare PermissionError had been printed by each worker, then the run's line, which
    said nothing of the output's state nor of the resume). Once the folder is writable
    again, the resume finishes the output, equal to NumPy's."""
    work.restore_killed()
    with read_only_folder(work.output / folder):
        p = run_python(
            ["-m", "pipeline", "run", "--resume", "--progress", "none", work.config], work.dir
        )
    assert p.returncode == 1, p.stderr
    assert "Compute Failed" not in p.stderr
    line = one_line_error(p.stderr)
    assert line.startswith(f"error: cannot write {what} '{folder}/"), line
    assert f"of {work.output}: the store answered PermissionError" in line, line
    assert "the output stays incomplete" in line and "`run --resume` finishes the output" in line
    assert status(work.output) == "incomplete"
    rc, _, err = cli("run", work.config, "--resume", "--progress", "none")
    assert rc == 0, err
    assert status(work.output) == "complete"
    assert np.array_equal(read_array(work.output), expected(work.x), equal_nan=True)


def test_a_resized_interrupted_output_is_not_resumed(work: Work, cli) -> None:
    """Another tool resized the killed output (helper-40: the resume marked it complete at
    the new shape): refused in one line naming both layouts, the output as it was."""
    work.restore_killed()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zarr.open_array(str(work.output), mode="r+").resize((work.rows // 2, COLS))
    before = file_states(work.output)
    e = refused("run", work.config, "--resume")
    assert isinstance(e, OutputError) and e.changed == ["layout"], e
    assert len(str(e).splitlines()) == 1 and "--overwrite" in str(e)
    assert file_states(work.output) == before


def _edit_byte_order(output: Path) -> None:
    """Edit the output's ``zarr.json`` by hand: its chunks' bytes codec says big-endian."""
    meta = output / "zarr.json"
    doc = json.loads(meta.read_text())
    doc["codecs"][0]["configuration"]["codecs"][0]["configuration"]["endian"] = "big"
    meta.write_text(json.dumps(doc))


@pytest.mark.parametrize("state", ["incomplete", "complete"])
def test_an_output_whose_codecs_were_edited_is_neither_resumed_nor_done(
    work: Work, cli, state: str
) -> None:
    """h63d: the killed output's, or a complete one's, ``zarr.json`` edited by hand to say
    its chunks are big-endian (the run writes them little-endian, raw): the resume had
    written the rest and marked it complete, and of a complete one said "nothing to do",
    exit 0, every value read byte-swapped. Refused in one line naming the edited field and
    ``run --overwrite``, nothing written; ``run --overwrite`` writes NumPy's values."""
    if state == "incomplete":
        work.restore_killed()
    else:
        copy_store(work.ref, work.output)
    _edit_byte_order(work.output)
    before = file_states(work.output)
    e = refused("run", work.config, "--resume")
    line = str(e)
    assert isinstance(e, OutputError) and e.changed == ["layout"], e
    assert len(line.splitlines()) == 1 and "--overwrite" in line, line
    assert 'endian "big" (the run wrote "little")' in line, line
    assert file_states(work.output) == before
    if state == "complete":
        rc, _, err = cli("verify", work.config)
        assert rc == 1, err
    rc, _, err = cli("run", work.config, "--overwrite")
    assert rc == 0, err
    assert np.array_equal(read_array(work.output), expected(work.x), equal_nan=True)


def _edit_index_place(output: Path) -> None:
    """Edit the output's ``zarr.json`` by hand: its shards' index is said to be at the start."""
    meta = output / "zarr.json"
    doc = json.loads(meta.read_text())
    doc["codecs"][0]["configuration"]["index_location"] = "start"
    meta.write_text(json.dumps(doc))


@pytest.mark.parametrize(
    "edit, said",
    [
        (_edit_byte_order, 'endian "big" (the run wrote "little")'),
        (_edit_index_place, 'index_location "start" (the run wrote "end")'),
    ],
)
def test_verify_names_a_hand_edit_of_a_complete_outputs_codecs(
    work: Work, cli, edit, said: str
) -> None:
    """``run`` refuses a complete output whose codecs were edited by hand, "(`pipeline
    verify` says what differs)": verify had said its blocks differ, "written otherwise since
    the run, or damaged" (a byte order), or its first chunk damaged, "its shard index's
    crc32c checksum does not match" (the index's place). It names the edit as run does, in
    one line, and the fix, ``run --overwrite``, which makes an output verify passes."""
    copy_store(work.ref, work.output)
    edit(work.output)
    before = file_states(work.output)
    rc, _, err = cli("verify", work.config)
    line = one_line_error(err)
    assert rc == 1 and said in line and "`run --overwrite`" in line, line
    assert "damaged" not in line, line
    assert file_states(work.output) == before
    rc, _, err = cli("run", work.config, "--overwrite")
    assert rc == 0, err
    rc, _, err = cli("verify", work.config)
    assert rc == 0, err


def test_an_output_whose_chunk_key_encoding_was_edited_is_written_again_by_overwrite(
    work: Work, cli
) -> None:
    """A complete output's ``zarr.json`` edited to name its chunks '.'-separated (c.0.0):
    run and plan name the edit and `run --overwrite`, which had been refused, its chunks
    (c/0/0, where the run wrote them) called files beside the array to move out. It writes
    the output again, as verify then passes; a file of the user's beside them is still
    kept (refused, named)."""
    copy_store(work.ref, work.output)
    meta = work.output / "zarr.json"
    doc = json.loads(meta.read_text())
    doc["chunk_key_encoding"]["configuration"]["separator"] = "."
    meta.write_text(json.dumps(doc))
    e = refused("run", work.config)
    assert 'separator "." (the run wrote "/")' in str(e) and "`run --overwrite`" in str(e), e
    rc, _, err = cli("run", work.config, "--overwrite")
    assert rc == 0, err
    rc, _, err = cli("verify", work.config)
    assert rc == 0, err
    meta.write_text(json.dumps(doc))
    (work.output / "c" / "notes.txt").write_text("mine")
    rc, _, err = cli("run", work.config, "--overwrite")
    assert rc == 1 and "notes.txt" in one_line_error(err), err
    assert (work.output / "c" / "notes.txt").read_text() == "mine"


def test_the_output_of_an_interrupted_run_is_refused_as_an_input(work: Work, cli) -> None:
    """A chained run reading a killed run's output would take its unwritten blocks for fill
    values and call its own output complete: refused (InputError), nothing written."""

    chained = work.dir / "chained"
    chained.mkdir(exist_ok=True)
    cfg = work.config_with(
        "chained.yaml",
        input={"store": str(work.killed)},
        output={"store": str(chained / "out.zarr"), "chunks": [1, COLS // 4]},
    )
    before = file_states(work.killed)
    for args in (("run", cfg), ("plan", cfg)):
        e = refused(*args)
        assert isinstance(e, InputError)
        assert (e.input, e.status, e.made_by) == (str(work.killed), "incomplete", "run")
    assert not (chained / "out.zarr").exists()
    assert file_states(work.killed) == before


def test_resume_with_automatic_blocks_reuses_the_interrupted_runs_block(work: Work, cli) -> None:
    """``chunking.block: auto`` depends on the cluster's memory; on resume the recorded block
    is used (here auto alone would pick one block for the whole array, and be refused)."""
    work.restore_killed()
    doc = yaml.safe_load(work.config.read_text())
    cfg = work.config_with("auto.yaml", chunking={"block": "auto"})
    assert doc["chunking"]["block"] == [1, COLS]
    rc, _, err = cli("run", cfg, "--resume")
    assert rc == 0, err
    assert "resuming:" in err
    assert_same_stores(work.output, work.ref)


def test_resume_with_automatic_chunks_writes_the_interrupted_runs_chunks(work: Work, cli) -> None:
    """``output.chunks: auto``, whose rule can change between versions (today it keeps the
    input's small chunks, [1, 4096] here), resumes an output recorded with [1, 1024] chunks in
    them; once complete, a resume with it finds nothing to do."""
    from pipeline import plan

    work.restore_killed()
    out = yaml.safe_load(work.config.read_text())["output"]
    cfg = work.config_with(
        "auto-chunks.yaml", output={**out, "chunks": "auto"}, chunking={"block": "auto"}
    )
    assert plan(load_config(cfg)).output.chunk == (1, COLS)  # what a new run would write
    rc, out, err = cli("plan", cfg)
    assert rc == 0, err
    assert f"in the layout it was begun with (blocks [1, {COLS}], chunks [1, 1024]" in out
    rc, _, err = cli("run", cfg, "--resume")
    assert rc == 0, err
    assert "resuming:" in err
    assert_same_stores(work.output, work.ref)
    rc, _, err = cli("run", cfg, "--resume")
    assert rc == 0, err
    assert "already complete; nothing to do" in err


def test_resume_of_a_complete_output_does_nothing(work: Work, cli, tmp_path: Path) -> None:
    work.restore_killed()
    rc, _, err = cli("run", work.config, "--resume")
    assert rc == 0, err
    snapshot = file_states(work.output)
    rc, _, err = cli("run", work.config, "--resume", "--summary-json", tmp_path / "s.json")
    assert rc == 0, err
    assert "already complete; nothing to do" in err
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["blocks_done"] == 0 and summary["blocks_skipped"] == work.rows
    assert file_states(work.output) == snapshot


#: A script resuming the config argv[1] through the Python API, with progress off (its
#: default), twice (an incomplete output, then a complete one), then asking for progress;
#: each call's stderr ends with a line of its own.
_RESUME_SCRIPT = """
import sys
import pipeline
if __name__ == "__main__":
    for progress in ("none", "none", "plain"):
        s = pipeline.run(sys.argv[1], resume=True, progress=progress)
        print(s.status, s.blocks_done, s.blocks_skipped, flush=True)
        print("--- end of call", file=sys.stderr, flush=True)
"""


def test_a_resume_with_progress_off_says_nothing_but_its_summary(
    work: Work, cli, tmp_path: Path
) -> None:
    """``pipeline.run(config, resume=True)``, whose progress is off by default, wrote
    "resuming: N of M blocks already written" and, on a complete output, "... is already
    complete; nothing to do" on stderr, which a caller who turned progress off had not asked
    for; the summary says both (blocks skipped, status). With progress off, as with
    ``--progress none`` or ``-q`` on the command line, nothing is said; with progress on, the
    lines are said as before."""
    work.restore_killed()
    script = tmp_path / "resume.py"
    script.write_text(_RESUME_SCRIPT)
    done = run_python([script, work.config], cwd=work.dir, timeout=600)
    assert done.returncode == 0, done.stderr
    calls = done.stderr.split("--- end of call\n")
    assert calls[:2] == ["", ""], done.stderr
    assert "already complete; nothing to do" in calls[2], done.stderr
    statuses = [line.split()[0] for line in done.stdout.splitlines()]
    assert statuses == ["complete", "complete", "complete"], done.stdout
    assert_same_stores(work.output, work.ref)
    for flags in (["--progress", "none"], ["-q"]):
        work.restore_killed()
        for _ in range(2):  # incomplete, then complete
            rc, out, err = cli("run", work.config, "--resume", *flags)
            assert rc == 0 and err == "", err
            assert "status" in out
    rc, _, err = cli("run", work.config, "--resume")
    assert rc == 0 and "already complete; nothing to do" in err, err


@pytest.mark.parametrize(
    ("sig", "group"),
    [(signal.SIGINT, False), (signal.SIGINT, True), (signal.SIGTERM, False)],
    ids=["sigint", "ctrl-c-at-a-terminal", "sigterm"],
)
def test_interrupt_closes_the_cluster_and_resume_completes(
    work: Work, cli, sig: int, group: bool
) -> None:
    """Ctrl-C at a terminal signals the whole process group (the workers too)."""
    shutil.rmtree(work.output, ignore_errors=True)
    stopped = run_and_signal(work.config, work.output, sig, group=group, cwd=work.dir)
    assert stopped is not None, "the run finished before it was interrupted"
    assert stopped.returncode == stopped_status(sig), stopped.stderr
    lines = [ln for ln in stopped.stderr.splitlines() if ln.strip()]
    assert lines == ["interrupted: the workers are stopped; `run --resume` finishes the output"], (
        stopped.stderr
    )
    # the cluster is closed: none of the processes the run started is left
    assert len(stopped.children) >= 2  # the two workers (at least)
    left = wait_gone(stopped.children, timeout=60)
    kill_procs(left)
    assert not left, f"left running after the interrupt: {left}"
    # resumable: marked incomplete, record kept, lock released
    assert status(work.output) == "incomplete"
    assert not (work.output / ".pipeline" / "lock").exists()
    n = markers(work.output)
    assert 0 < n < work.rows
    rc, _, err = cli("run", work.config, "--resume", "--summary-json", work.dir / "s.json")
    assert rc == 0, err
    assert json.loads((work.dir / "s.json").read_text())["blocks_skipped"] == n
    assert_same_stores(work.output, work.ref)


def test_resume_after_the_scheduler_is_lost(work: Work, cli) -> None:
    """A run on an external cluster whose scheduler dies: one clear error, the output stays
    incomplete, and a resume (here on a local cluster) finishes it."""
    shutil.rmtree(work.output, ignore_errors=True)
    from tests.faultkit import cli_process, kill_group

    with external_cluster(work.dir) as ext:
        proc = cli_process(work.config, "--scheduler", ext.address, cwd=work.dir)
        try:
            n = wait_for_markers(proc, work.output, 3)
            assert n > 0, "the run finished before its scheduler could be killed"
            kill_group(ext.scheduler)
            _, err = proc.communicate(timeout=120)
        finally:
            kill_group(proc)
    assert proc.returncode == 1, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: lost the Dask scheduler"), err
    assert "--resume" in last
    assert status(work.output) == "incomplete"
    assert not (work.output / ".pipeline" / "lock").exists()
    n = markers(work.output)
    assert 0 < n < work.rows
    rc, _, err = cli("run", work.config, "--resume")
    assert rc == 0, err
    assert_same_stores(work.output, work.ref)


# --------------------------------------------------------------------------------------------
# On the GPU host (skipped elsewhere).


@pytest.mark.gpu
def test_gpu_resume_after_sigkill_matches_uninterrupted_run(tmp_path: Path, cli) -> None:
    x = many_blocks_input(tmp_path / "in.zarr", 400, cols=16384)
    cfg = _config(tmp_path, cols=16384)
    doc = yaml.safe_load(cfg.read_text())
    doc["backend"] = "gpu"
    doc["cluster"] = {"threads_per_worker": 2, "dashboard": "", "gpus": [0]}
    cfg.write_text(yaml.safe_dump(doc, sort_keys=False))
    out = tmp_path / "out.zarr"
    rc, _, err = cli("run", cfg)
    assert rc == 0, err
    out.rename(tmp_path / "ref.zarr")
    stopped = run_and_signal(cfg, out, signal.SIGKILL, cwd=tmp_path)
    assert stopped is not None, "the run finished before the kill: enlarge the input"
    kill_procs(wait_gone(stopped.children, timeout=30))
    n = markers(out)
    assert 0 < n < 400
    rc, _, err = cli("run", cfg, "--resume", "--summary-json", tmp_path / "s.json")
    assert rc == 0, err
    assert json.loads((tmp_path / "s.json").read_text())["blocks_skipped"] == n
    assert_same_stores(out, tmp_path / "ref.zarr")
    assert np.array_equal(read_array(out), expected(x), equal_nan=True)


def test_a_removed_input_that_the_run_would_generate_again_is_said_removed(
    tmp_path: Path, cli
) -> None:
    """h66c: with ``input.generate.when_missing``, a complete output whose input was removed
    since was refused by ``run --resume`` and said by ``plan`` as "the input's metadata
    changed (it was rewritten)", of an input that was not there: it is said removed, the
    input a run makes in its place being a new one, and `run --overwrite` recomputes it."""
    from tests.conftest import generated_config

    cfg = generated_config(tmp_path, {"shape": [8, 16], "seed": 3, "when_missing": True})
    rc, _, err = cli("run", cfg, "--progress", "none")
    assert rc == 0, err
    shutil.rmtree(tmp_path / "in.zarr")
    rc, _, err = cli("run", cfg, "--resume")
    line = one_line_error(err)
    assert rc == 1 and "is complete, but the input was removed (" in line, line
    assert "rewritten" not in line and line.endswith("`run --overwrite` recomputes it"), line
    assert not (tmp_path / "in.zarr").exists()  # refused before the input was made
    rc, out, err = cli("plan", cfg)
    now = next(ln for ln in out.splitlines() if "output now" in ln)
    assert rc == 0 and "complete, but the input was removed (" in now, out + err
    assert now.endswith("`run --overwrite` recomputes it"), now
    rc, _, err = cli("run", cfg, "--overwrite", "--progress", "none")
    assert rc == 0 and (tmp_path / "in.zarr").exists(), err


def _old_output(output: Path, rows: int) -> None:
    """An output of another shape and chunk grid at ``output`` (many small chunk files, all
    written), for a replacing run to set aside."""
    old = np.arange(rows * 2 * 64, dtype=np.float32).reshape(rows * 2, 64) + 1
    make_array(output, old, (1, 8))


def _planted_aside(output: Path) -> Path:
    """What a run killed while its set-aside chunks were being deleted leaves in its record
    (``.pipeline/aside/<uuid>``), where the killed run's deletion had finished: names of the
    output's own files (``zarr.json``, ``c/0/0``: chunk keys of the new grid), garbage in
    them."""
    aside = output / ".pipeline" / "aside"
    if aside.is_dir() and any(p.is_file() for p in aside.rglob("*")):
        return aside
    left = aside / ("ab" * 16)
    for key in ("zarr.json", "c/0/0", "c/0/1", "c/1/0", "c/3/3"):
        p = left.joinpath(*key.split("/"))
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"\x00stale" * 100)
    return aside


def test_a_replacement_killed_while_it_computes_resumes_past_what_it_set_aside(
    cli, tmp_path: Path
) -> None:
    """A replacing run (``--overwrite`` over an output of another grid) killed while it
    computes: what it set aside in its record, where the kill left some (planted where its
    deletion had finished), is never taken for the output's files: `run --resume` completes
    the output, NumPy's bit for bit, with no record (nor what was set aside) left, and
    `verify` passes; `run --overwrite` of a copy of the killed output clears it too."""
    cfg = _config(tmp_path, cols=1024)
    doc = yaml.safe_load(cfg.read_text())
    doc["cluster"]["protocol"] = "inproc"  # threads: quicker to start, killed with the run
    cfg.write_text(yaml.safe_dump(doc, sort_keys=False))
    source, output = tmp_path / "in.zarr", tmp_path / "out.zarr"

    def prepare(rows: int) -> np.ndarray:
        shutil.rmtree(output, ignore_errors=True)
        x = many_blocks_input(source, rows, cols=1024)
        _old_output(output, rows)
        return x

    _, x = killed_midway(cfg, output, prepare, 100, cwd=tmp_path, args=("--overwrite",))
    assert status(output) == "incomplete"
    aside = _planted_aside(output)
    copy = tmp_path / "copy.zarr"
    copy_store(output, copy)
    (copy / ".pipeline" / "lock").unlink(missing_ok=True)
    rc, out, err = cli("verify", cfg)
    assert "aside" not in out + err, out + err
    rc, _, err = cli("run", cfg, "--resume", "--progress", "none")
    assert rc == 0, err
    assert "aside" not in err, err
    assert status(output) == "complete"
    assert not aside.exists() and not (output / ".pipeline").exists()
    got = read_array(output)
    assert got.shape == x.shape and got.tobytes() == expected(x).tobytes()
    rc, out, err = cli("verify", cfg)
    assert rc == 0, out + err
    doc = yaml.safe_load(cfg.read_text())
    doc["output"]["store"] = str(copy)
    again = tmp_path / "copy.yaml"
    again.write_text(yaml.safe_dump(doc, sort_keys=False))
    rc, _, err = cli("run", again, "--overwrite", "--progress", "none")
    assert rc == 0, err
    assert not (copy / ".pipeline").exists()
    assert read_array(copy).tobytes() == expected(x).tobytes()
