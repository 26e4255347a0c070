"""State that must never pass for finished: a complete output made from another config or input,
and an input whose generation was interrupted.

* ``run --resume`` on a complete output compares what made it (recorded in its attributes)
  with the config and input at hand: the same says nothing to do; anything else (stages, output
  layout or codec, the input moved or rewritten, frames encoded on another device, or an output
  too old to say) is refused with an OutputError naming what changed, and nothing is written.
* A generated input says whether every unit is written (``pipeline_generated.status``); one
  that Ctrl-C stopped is refused by ``run``, ``plan`` and ``verify`` (InputError) and is
  generated again by ``generate`` or by ``run`` with ``when_missing``.

Everything runs the real CLI on real stores; the interruptions are real signals to a real
``python -m pipeline`` process group.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
import zarr

from pipeline.cli import main
from pipeline.errors import InputError, OutputError
from pipeline.planning.plan import record_check
from tests.conftest import (
    STAGES,
    generated_config,
    make_array,
    read_array,
    record_of,
    reference,
    write_config,
)
from tests.faultkit import (
    DIED_OF_SIGINT,
    chunk_files,
    cli_process,
    copy_store,
    ctrl_c_script,
    descendants,
    end_process,
    file_states,
    kill_procs,
    one_line_error,
    read_only_folder,
    run_python,
    set_aside,
    wait_for_chunk_files,
    wait_gone,
)


def refused(cli: Any, error: type[Exception], *args: Any) -> tuple[str, Any]:
    """Run the CLI expecting a refusal: exit status 1 with one ``error:`` line; then the same
    with ``--debug``, which raises the error itself. (The line, the error.)"""
    rc, _, err = cli(*args)
    assert rc == 1, err
    line = one_line_error(err)
    with pytest.raises(error) as info:
        cli("--debug", *args)
    assert str(info.value) == line.removeprefix("error: ")
    return line, info.value


def plan_rows(out: str) -> dict[str, str]:
    return dict(re.findall(r"^  (\S+(?: \S+)?)\s{2,}(.*)$", out, re.M))


def attributes(store: Path) -> dict[str, Any]:
    """The array's attributes, its ``pipeline`` record read from its JSON text."""
    attrs = dict(zarr.open_array(str(store), mode="r").attrs)
    return {**attrs, "pipeline": record_of(attrs)} if "pipeline" in attrs else attrs


def set_attributes(store: Path, attrs: dict[str, Any]) -> None:
    """Replace the array's attributes (as another version of the pipeline wrote them), its
    ``pipeline`` record as JSON text, as a run writes it."""
    arr = zarr.open_array(str(store), mode="r+")
    arr.attrs.clear()
    record = attrs.get("pipeline")
    arr.update_attributes({**attrs, "pipeline": json.dumps(record)} if record else attrs)


def fingerprint(identity: dict[str, Any]) -> str:
    """The fingerprint a run records for ``identity`` (pipeline.planning.plan.Plan.fingerprint)."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------------
# 4. Resuming a complete output.


@dataclass
class Done:
    """A complete output (``output``) that ``config`` made from ``input`` (``x``)."""

    dir: Path
    config: Path
    input: Path
    output: Path
    x: np.ndarray

    def config_with(self, name: str, **sections: Any) -> Path:
        """The config with ``sections`` merged in (a mapping updates a mapping)."""
        doc = yaml.safe_load(self.config.read_text())
        for key, value in sections.items():
            if isinstance(value, dict) and isinstance(doc.get(key), dict):
                doc[key] = {**doc[key], **value}
            else:
                doc[key] = value
        p = self.dir / name
        p.write_text(yaml.safe_dump(doc, sort_keys=False))
        return p


@pytest.fixture(scope="module")
def done(tmp_path_factory: pytest.TempPathFactory) -> Done:
    d = tmp_path_factory.mktemp("done")
    x = np.random.default_rng(3).standard_normal((24, 30)).astype(np.float32)
    make_array(d / "in.zarr", x, (6, 30))
    cfg = {
        "input": {"store": str(d / "in.zarr")},
        "output": {"store": str(d / "out.zarr"), "chunks": [6, 30]},
        "stages": STAGES,
        "backend": "cpu",
        "cluster": {"workers": 1, "threads_per_worker": 1, "dashboard": ""},
    }
    p = d / "run.yaml"
    p.write_text(yaml.safe_dump(cfg, sort_keys=False))
    assert main(["-q", "run", str(p), "--progress", "none"]) == 0
    return Done(d, p, d / "in.zarr", d / "out.zarr", x)


def test_a_complete_output_records_what_it_was_made_from(done: Done) -> None:
    meta = attributes(done.output)["pipeline"]
    assert meta["status"] == "complete"
    identity = meta["identity"]
    assert identity["input"][0] == str(done.input)
    assert identity["stages"][0].startswith("multiply(factor=5)")
    assert identity["chunk"] == [6, 30] and identity["encode_on"] == "cpu"
    # the record is whole: its identity is what the fingerprint was taken of
    assert fingerprint(identity) == meta["fingerprint"]


def test_resume_of_a_current_complete_output_does_nothing(done: Done, cli) -> None:
    before = file_states(done.output)
    rc, _, err = cli("run", done.config, "--resume")
    assert rc == 0, err
    assert "already complete; nothing to do" in err
    assert file_states(done.output) == before
    rc, out, err = cli("plan", done.config)
    assert rc == 0, err
    assert plan_rows(out)["output now"] == "complete: `run --overwrite` replaces it"


def test_a_file_where_a_complete_outputs_run_record_goes_is_named_by_every_command(
    done: Done, cli
) -> None:
    """h65a: a complete output holding a file named ``.pipeline``, where a run keeps its
    record (and its lock): every command had stopped with "the output store answered
    NotADirectoryError ...: mend what is at that path", the lock's path under it named.
    Each refuses in one line naming that file to remove, and that the output is complete
    then, which ``run --overwrite`` replaces; nothing written. Removed, a resume finds the
    output complete."""
    stray = done.output / ".pipeline"
    stray.write_text("mine")
    before = file_states(done.output)
    said = (
        f"the run record of {done.output} is damaged: .pipeline is a file where the run keeps "
        f"a folder, which no run writes over, even with --overwrite: remove {stray} yourself, "
        "then it is complete (`run --overwrite` replaces it)"
    )
    try:
        for flags in ((), ("--resume",), ("--overwrite",)):
            rc, _, err = cli("run", done.config, "--progress", "none", *flags)
            assert rc == 1 and one_line_error(err) == f"error: {said}", err
        rc, out, err = cli("plan", done.config)
        assert rc == 1 and plan_rows(out)["output now"] == f"complete; {said}", out + err
        # verify had passed it (h86g): the run's refusal, after the table
        rc, out, err = cli("verify", done.config)
        assert rc == 1 and one_line_error(err) == f"error: {said}", out + err
        assert file_states(done.output) == before
    finally:
        stray.unlink()
    rc, _, err = cli("run", done.config, "--resume")
    assert rc == 0 and "already complete; nothing to do" in err, err
    rc, out, err = cli("verify", done.config)
    assert rc == 0, out + err


@pytest.mark.parametrize("target", ["itself", "elsewhere"])
def test_a_link_where_a_complete_outputs_run_record_goes_is_named_by_every_command(
    done: Done, cli, target: str
) -> None:
    """h66b: a complete output whose ``.pipeline`` is a link to a folder (the output itself,
    or one elsewhere): `run --resume` had said "nothing to do", exit 0, and left its lock
    behind the link, since removing the record removed the link only: in the output itself
    a stray ``lock`` file, which `plan` and `run --overwrite` then refused. Every command
    refuses as for any misshapen record part, naming the link to remove; nothing written,
    behind the link either. Removed, a resume finds the output complete."""
    behind = done.output if target == "itself" else done.dir / "elsewhere"
    behind.mkdir(exist_ok=True)
    link = done.output / ".pipeline"
    link.symlink_to(behind, target_is_directory=True)
    before, behind_before = file_states(done.output), file_states(behind)
    said = (
        f"the run record of {done.output} is damaged: .pipeline is a link to {behind} where "
        f"the run keeps a folder, which no run writes over, even with --overwrite: remove "
        f"{link} yourself, then it is complete (`run --overwrite` replaces it)"
    )
    try:
        for flags in (("--resume",), (), ("--overwrite",)):
            rc, _, err = cli("run", done.config, "--progress", "none", *flags)
            assert rc == 1 and one_line_error(err) == f"error: {said}", err
        rc, out, err = cli("plan", done.config)
        assert rc == 1 and plan_rows(out)["output now"] == f"complete; {said}", out + err
        # verify had passed it, a link to a user's folder too (h86g): the run's refusal
        rc, out, err = cli("verify", done.config)
        assert rc == 1 and one_line_error(err) == f"error: {said}", out + err
        assert file_states(done.output) == before
        assert file_states(behind) == behind_before
    finally:
        link.unlink()
    rc, out, err = cli("verify", done.config)
    assert rc == 0, out + err
    rc, _, err = cli("run", done.config, "--resume")
    assert rc == 0 and "already complete; nothing to do" in err, err
    rc, out, err = cli("plan", done.config)
    assert rc == 0 and plan_rows(out)["output now"] == "complete: `run --overwrite` replaces it"


def test_a_users_file_in_a_complete_outputs_run_record_folder_fails_verify_as_runs_refuse_it(
    done: Done, cli
) -> None:
    """h86g's kind: a file of the user's in a complete output's ``.pipeline`` folder, which
    every run refuses (it deletes that folder): verify had passed the output, exit 0. It
    fails it in the run's own line (the table first), the API's result not ok, its advice
    that line; nothing written. Moved out, verify passes and a resume finds nothing to do."""
    import pipeline

    record = done.output / ".pipeline"
    record.mkdir()
    (record / "notes.txt").write_text("mine")
    before = file_states(done.output)
    said = (
        f"the run record folder {record} holds notes.txt, which the pipeline did not write: "
        "that folder is the pipeline's own bookkeeping (its lock, run.json, done/, aside/), "
        "which a run deletes as it ends or starts over: move it elsewhere yourself, then it is "
        "complete (`run --overwrite` replaces it)"
    )
    try:
        for flags in (("--resume",), ()):
            rc, _, err = cli("run", done.config, "--progress", "none", *flags)
            assert rc == 1 and one_line_error(err) == f"error: {said}", err
        rc, out, err = cli("verify", done.config, "--all")
        assert rc == 1 and one_line_error(err) == f"error: {said}", out + err
        assert "output status  complete" in out, out
        result = pipeline.verify(str(done.config))
        assert not result.ok and result.record_refused == (".pipeline/notes.txt",), result
        assert result.advice is not None and "move it elsewhere yourself" in result.advice
        assert file_states(done.output) == before
    finally:
        shutil.rmtree(record)
    rc, out, err = cli("verify", done.config)
    assert rc == 0, out + err
    rc, _, err = cli("run", done.config, "--resume")
    assert rc == 0 and "already complete; nothing to do" in err, err


def test_resume_of_a_current_complete_output_that_cannot_be_written_does_nothing(
    done: Done, cli
) -> None:
    """A finished output made read-only (a shared dataset): `run --resume`, which writes
    nothing there, does nothing, as for any complete output; it had been refused as
    unwritable, told to fix the folder's permissions (h65d). What would write there is
    still refused so, another config's resume too."""
    import pipeline

    before = file_states(done.output)
    other = done.config_with("other.yaml", stages=[{"op": "square"}])
    with read_only_folder(done.output):
        rc, _, err = cli("run", done.config, "--resume")
        assert rc == 0, err
        assert "already complete; nothing to do" in err
        rc, _, err = cli("run", done.config, "--resume", "--dry-run")
        assert rc == 0, err
        summary = pipeline.run(str(done.config), resume=True)
        assert summary.status == "complete (nothing to do)", summary
        # plan agrees (h66b: it had exited 1, "cannot write the output")
        rc, out, err = cli("plan", done.config)
        assert rc == 0, out + err
        now = plan_rows(out)["output now"]
        assert now.startswith(
            "complete, made from this config and input: `run --resume` finds nothing to do; "
            "any other run is refused: cannot write the output at "
        ), now
        assert "complete, made from this config and input: `pipeline.run(config, resume=True)`" in (
            pipeline.plan(str(done.config)).output_now
        )
        rc, out, err = cli("plan", other)  # another config's: its resume refuses, so does plan
        assert rc == 1 and "is not a writable directory" in one_line_error(err), out + err
        for args in ((done.config,), (done.config, "--overwrite"), (other, "--resume")):
            line, e = refused(cli, OutputError, "run", *args, "--progress", "none")
            assert "is not a writable directory" in line and e.directory == str(done.output)
    assert file_states(done.output) == before


def test_plan_of_a_config_that_overwrites_says_a_plain_run_replaces_the_output(
    done: Done, cli
) -> None:
    """`plan` had said "`run --overwrite` replaces it" of a complete output where the config
    sets ``output.overwrite: true``, whose plain `run` already replaces it: it names the plain
    `run`, as `run --dry-run` says that run does (nothing written by either)."""
    before = file_states(done.output)
    cfg = done.config_with("overwrites.yaml", output={"overwrite": True})
    rc, out, err = cli("plan", cfg)
    assert rc == 0, err
    assert plan_rows(out)["output now"] == "complete: `run` (output.overwrite: true) replaces it"
    rc, out, err = cli("run", cfg, "--dry-run")
    assert rc == 0, err
    assert plan_rows(out)["output now"] == "complete: this run replaces it, starting over"
    assert file_states(done.output) == before


def _stages(factor: float) -> list[dict[str, Any]]:
    return [{"op": "multiply", "factor": factor}, {"op": "square"}, {"op": "add"}]


# name: (the config's changes, what the refusal names, words the line holds)
CHANGED: dict[str, tuple[dict[str, Any], list[str], list[str]]] = {
    "stages": (
        {"stages": _stages(0.25)},
        ["stages"],
        ["the stages changed", "factor=5", "factor=0.25"],
    ),
    # said by the config's keys and what the output stores, not the identity's: the line had
    # said "chunk/unit were [[6, 30], [6, 30]], now [[3, 30], [3, 30]]" (a unit is no key of
    # the config) and the codec as Python's dict, "{'name': 'zstd', 'level': 1, ...}" (h81a)
    "output-chunks": (
        {"output": {"chunks": [3, 30]}},
        ["layout"],
        ["the layout changed (the output's chunks were [6, 30], now [3, 30])"],
    ),
    "output-shards": (
        {"output": {"chunks": [6, 30], "shards": [24, 30]}},
        ["layout"],
        ["the layout changed (its shards were [12, 30], now [24, 30])"],
    ),
    "output-codec": (
        {"output": {"codec": {"name": "zstd", "level": 7}}},
        ["output.codec"],
        ["the output's codec changed (was zstd level 1, now zstd level 7)"],
    ),
    "stages-and-codec": (
        {"stages": _stages(6), "output": {"codec": {"name": "none"}}},
        ["stages", "output.codec"],
        ["the stages changed", "the output's codec changed (was zstd level 1, now none)"],
    ),
    "output-checksum": (
        {"output": {"codec": {"name": "zstd", "checksum": True}}},
        ["output.codec"],
        ["the output's codec changed (was zstd level 1, now zstd level 1 with checksums)"],
    ),
}


@pytest.mark.parametrize("name", list(CHANGED))
def test_resume_of_a_complete_output_made_with_another_config_is_refused(
    done: Done, cli, name: str
) -> None:
    changes, parts, words = CHANGED[name]
    cfg = done.config_with(f"{name}.yaml", **changes)
    before = file_states(done.output)
    line, e = refused(cli, OutputError, "run", cfg, "--resume")
    assert (e.output, e.status, e.changed) == (str(done.output), "complete", parts)
    assert "`run --overwrite` recomputes it" in line
    for w in words:
        assert w in line, (w, line)
    assert file_states(done.output) == before  # nothing written, no lock taken
    rc, out, err = cli("plan", cfg)
    assert rc == 0, err
    now = plan_rows(out)["output now"]
    assert now.startswith("complete, but") and words[0] in now, now
    assert file_states(done.output) == before


def test_resume_of_a_complete_output_whose_input_moved_is_refused(done: Done, cli) -> None:
    moved = done.dir / "moved-in.zarr"
    copy_store(done.input, moved)  # the same bytes and times, elsewhere
    cfg = done.config_with("moved-in.yaml", input={"store": str(moved)})
    before = file_states(done.output)
    line, e = refused(cli, OutputError, "run", cfg, "--resume")
    assert (e.status, e.changed) == ("complete", ["input.location"])
    assert f"the input moved (was {done.input}, now {moved})" in line
    assert file_states(done.output) == before


@pytest.mark.parametrize("what", ["data", "metadata"])
def test_resume_of_a_complete_output_whose_input_was_rewritten_is_refused(
    done: Done, cli, what: str
) -> None:
    with set_aside(done.input):
        before = file_states(done.output)
        if what == "data":  # same shape, dtype, layout and metadata; other values
            make_array(done.input, done.x + 1, (6, 30))
        else:  # the same values in other chunks, which the recorded block does not tile
            make_array(done.input, done.x, (8, 30))
        line, e = refused(cli, OutputError, "run", done.config, "--resume")
        assert e.changed[0] == f"input.{what}"
        assert f"the input's {what} changed" in line
        assert file_states(done.output) == before
    rc, _, err = cli("run", done.config, "--resume")
    assert rc == 0 and "nothing to do" in err, err


def _copy_recorded(done: Done, name: str, edit: Any) -> tuple[Path, Path]:
    """A copy of the complete output whose ``pipeline`` attributes ``edit`` rewrote (as another
    machine or version wrote them), and a config that points at the copy."""
    out = done.dir / f"{name}.zarr"
    copy_store(done.output, out)
    attrs = attributes(out)
    edit(attrs["pipeline"])
    if "check" in attrs["pipeline"]:  # as that machine or version took it of its fields
        attrs["pipeline"]["check"] = record_check(attrs["pipeline"])
    set_attributes(out, attrs)
    return out, done.config_with(f"{name}.yaml", output={"store": str(out)})


def test_resume_of_a_complete_output_encoded_on_the_gpu_is_refused_on_the_cpu(
    done: Done, cli
) -> None:
    """What a GPU run records (frames encoded on the GPU, nvCOMP's bytes); the real GPU run
    is ``test_gpu_made_output_is_not_complete_for_a_cpu_resume``."""

    def on_gpu(meta: dict[str, Any]) -> None:
        meta["identity"]["encode_on"] = meta["encoded_on"] = "gpu"
        meta["fingerprint"] = fingerprint(meta["identity"])

    out, cfg = _copy_recorded(done, "gpu-made", on_gpu)
    before = file_states(out)
    line, e = refused(cli, OutputError, "run", cfg, "--resume")
    assert e.changed == ["encode_on"]
    assert "encoded on the cpu, not the gpu" in line
    assert file_states(out) == before


def test_an_output_recorded_by_a_version_with_host_encode_share(done: Done, cli) -> None:
    """Earlier versions recorded ``host_share`` (``cluster.host_encode_share``, since removed)
    in the identity: 0 is what this version makes; a GPU run that left a share of its frames
    to host threads is refused, naming it."""

    def recorded(share: float, encode_on: str) -> Any:
        def edit(meta: dict[str, Any]) -> None:
            meta["identity"]["host_share"] = share
            meta["identity"]["encode_on"] = meta["encoded_on"] = encode_on
            meta["fingerprint"] = fingerprint(meta["identity"])

        return edit

    out, cfg = _copy_recorded(done, "no-share", recorded(0.0, "cpu"))
    before = file_states(out)
    rc, _, err = cli("run", cfg, "--resume")
    assert rc == 0 and "nothing to do" in err, err
    assert file_states(out) == before
    out, cfg = _copy_recorded(done, "gpu-share", recorded(0.25, "gpu"))
    before = file_states(out)
    _, e = refused(cli, OutputError, "run", cfg, "--resume")
    assert e.changed == ["encode_on", "host_share"]
    assert file_states(out) == before


@pytest.mark.gpu
def test_gpu_made_output_is_not_complete_for_a_cpu_resume(tmp_path: Path, cli) -> None:
    """Frames nvCOMP encoded on the GPU are not the bytes the CPU encoder writes: an output
    finished on the GPU is refused by a resume on the CPU, and complete for one on the GPU."""
    x = np.random.default_rng(5).standard_normal((64, 512)).astype(np.float32)
    make_array(tmp_path / "in.zarr", x, (16, 512))
    out = tmp_path / "out.zarr"
    gpu = write_config(
        tmp_path,
        tmp_path / "in.zarr",
        out,
        name="gpu.yaml",
        backend="gpu",
        cluster={"threads_per_worker": 1, "dashboard": "", "gpus": [0]},
    )
    cpu = write_config(tmp_path, tmp_path / "in.zarr", out, name="cpu.yaml")
    rc, _, err = cli("run", gpu)
    assert rc == 0, err
    assert attributes(out)["pipeline"]["identity"]["encode_on"] == "gpu"
    before = file_states(out)
    line, e = refused(cli, OutputError, "run", cpu, "--resume")
    assert "encode_on" in e.changed and "encoded on the cpu, not the gpu" in line
    assert file_states(out) == before
    rc, _, err = cli("run", gpu, "--resume")
    assert rc == 0 and "nothing to do" in err, err
    assert file_states(out) == before


def test_a_complete_output_that_was_moved_is_still_complete(done: Done, cli) -> None:
    """Where the output is does not change its bytes: a copy elsewhere needs nothing."""
    out = done.dir / "elsewhere.zarr"
    copy_store(done.output, out)
    cfg = done.config_with("elsewhere.yaml", output={"store": str(out)})
    before = file_states(out)
    rc, _, err = cli("run", cfg, "--resume")
    assert rc == 0 and "nothing to do" in err, err
    assert file_states(out) == before
    rc, out_text, err = cli("plan", cfg)
    assert plan_rows(out_text)["output now"] == "complete: `run --overwrite` replaces it"


#: Where Finder, Explorer and macOS's copy write their files into an output or input:
#: beside its metadata, next to its chunk folder, inside it, and an AppleDouble file beside a
#: chunk folder (``._0``, of ``c/0``); the same places take a foreign file in the last test.
OS_FILES_AT = [".DS_Store", "c/.DS_Store", "c/0/.DS_Store", "c/._0"]


def _commands(cli: Any, cfg: Path) -> dict[str, tuple[int, str]]:
    """What each command says of the output of ``cfg``: (exit status, its line: the plan's
    'output now' row, the run's error line or status, verify's output status)."""
    said: dict[str, tuple[int, str]] = {}
    rc, out, err = cli("plan", cfg)
    said["plan"] = (rc, plan_rows(out).get("output now", err))
    for name, flags in (("run", ()), ("resume", ("--resume",))):
        rc, out, err = cli("run", cfg, *flags, "--progress", "none")
        said[name] = (rc, one_line_error(err) if rc else "nothing to do" * ("nothing" in out + err))
    rc, out, err = cli("verify", cfg, "--samples", "2")
    status = re.search(r"output status\s+(\S+)", out)
    said["verify"] = (rc, status.group(1) if status else err)
    return said


def test_files_an_os_writes_into_a_complete_output_change_nothing(done: Done, cli) -> None:
    """A ``.DS_Store`` (macOS Finder writes one into every folder it shows) and an AppleDouble
    ``._0`` in a complete output: no Zarr reader reads them, yet ``plan`` and ``run`` had
    refused the output ("holds, beside the array's metadata and chunks, .DS_Store") and
    ``run --overwrite`` would not replace it. Every command now says what it says of the
    output without them, and ``--overwrite`` replaces the output whole, those files too."""
    out = done.dir / "os-files.zarr"
    copy_store(done.output, out)
    cfg = done.config_with("os-files.yaml", output={"store": str(out)})
    clean = _commands(cli, cfg)
    assert clean["plan"] == (0, "complete: `run --overwrite` replaces it")
    assert clean["resume"] == (0, "nothing to do") and clean["verify"] == (0, "complete")
    assert clean["run"][0] == 1 and "already exists; pass --overwrite" in clean["run"][1]
    files = set(file_states(out))
    for rel in OS_FILES_AT:
        (out / rel).write_bytes(b"\x00\x00\x00\x01Bud1")
    assert _commands(cli, cfg) == clean
    assert attributes(out)["pipeline"]["status"] == "complete"
    rc, _, err = cli("run", cfg, "--overwrite", "--progress", "none")
    assert rc == 0, err
    assert set(file_states(out)) == files  # the OS files went with the output they were in
    got = read_array(out)
    assert got.view(np.uint32).tobytes() == reference(done.x).view(np.uint32).tobytes()
    shutil.rmtree(out)


def test_files_an_os_writes_into_the_input_are_no_change_of_it(done: Done, cli) -> None:
    """A ``.DS_Store`` and an AppleDouble ``._0`` written into the input after the run (its
    folder opened in Finder): ``run --resume`` had refused the complete output ("the input's
    data changed") and ``verify`` failed it; they are no part of the input's identity."""
    added = [done.input / rel for rel in OS_FILES_AT]
    before = file_states(done.output)
    try:
        for path in added:
            path.write_bytes(b"\x00\x05\x16\x07")  # AppleDouble's magic number
        rc, _, err = cli("run", done.config, "--resume")
        assert rc == 0 and "nothing to do" in err, err
        rc, out, err = cli("verify", done.config, "--samples", "2")
        assert rc == 0, err
        assert re.search(r"output status\s+complete", out)
    finally:
        for path in added:
            path.unlink(missing_ok=True)
    assert file_states(done.output) == before


@pytest.mark.parametrize("name", ["notes.txt", "DS_Store", "._"], ids=str)
def test_a_foreign_file_where_os_files_are_taken_is_still_refused(
    done: Done, cli, name: str
) -> None:
    """Only the OS's own names pass: another file at those places (a user's notes, names
    near them) still makes ``run`` and ``run --overwrite`` refuse the output, naming it, and
    nothing is deleted."""
    out = done.dir / "foreign-file.zarr"
    copy_store(done.output, out)
    cfg = done.config_with("foreign-file.yaml", output={"store": str(out)})
    (out / "c" / "0" / name).write_bytes(b"mine")
    before = file_states(out)
    for flags in ((), ("--overwrite",)):
        line, e = refused(cli, OutputError, "run", cfg, *flags)
        assert f"beside the array's metadata and chunks, c/0/{name}: --overwrite" in line
        assert e.stray == [f"c/0/{name}"]
    assert file_states(out) == before
    shutil.rmtree(out)


def test_plan_of_a_complete_output_with_a_file_beside_it_exits_as_its_resume(
    done: Done, cli
) -> None:
    """A complete output, made from this config and input, whose folder holds a user's file
    beside the array: `run` and `run --overwrite` refuse it (``--overwrite`` never deletes
    other files), `run --resume` finds nothing to do, exit 0. `plan` had exited 1, its row
    "complete; <the refusal>", stopping `plan && run --resume`; it says what each run does
    and exits 0, as the read-only finished output's plan does (h66b), and
    ``pipeline.plan`` returns. Another config's plan, whose resume refuses too, exits 1."""
    import pipeline

    out = done.dir / "beside.zarr"
    copy_store(done.output, out)
    cfg = done.config_with("beside.yaml", output={"store": str(out)})
    (out / "notes.txt").write_text("mine")
    before = file_states(out)
    said = _commands(cli, cfg)
    refusal = said["run"][1].removeprefix("error: ")
    assert refusal.startswith(f"{out} holds, beside the array's metadata and chunks, notes.txt")
    assert said["resume"] == (0, "nothing to do"), said
    assert said["plan"] == (
        0,
        "complete, made from this config and input: `run --resume` finds nothing to do; "
        f"any other run is refused: {refusal}",
    ), said
    assert pipeline.plan(str(cfg)).output_now.startswith("complete, made from this config")
    rc, _, err = cli("run", cfg, "--resume", "--dry-run")
    assert rc == 0, err
    rc, _, err = cli("run", cfg, "--dry-run")
    assert rc == 1 and one_line_error(err) == f"error: {refusal}", err
    other = done.config_with(
        "beside-other.yaml", output={"store": str(out)}, stages=[{"op": "square"}]
    )
    rc, out_text, err = cli("plan", other)
    assert rc == 1, out_text + err
    assert file_states(out) == before
    shutil.rmtree(out)


def _damage(out: Path, damage: str) -> str:
    """Damage the first shard file (block [0, 0]) of the complete output ``out`` as another
    program or a disk would: ``deleted`` (read as the fill value), ``cut short``, or
    ``emptied``. The shard's key."""
    a = out / "c" / "0" / "0"
    if damage == "deleted":
        a.unlink()
    elif damage == "cut short":
        a.write_bytes(a.read_bytes()[:-5])
    else:  # as a full disk leaves a file
        a.write_bytes(b"")
    return "c/0/0"


@pytest.mark.parametrize("damage", ["deleted", "cut short", "emptied"])
def test_a_complete_output_whose_shard_file_was_damaged_is_not_verified_nor_done(
    done: Done, cli, damage: str
) -> None:
    """A shard file of a complete output deleted (Zarr reads it as the fill value), cut
    short, or emptied since the run: a sampled `verify` that did not sample
    its block had passed it (exit 0, "mismatched 0"), and `run --resume` had said "nothing
    to do", trusting the record. The output records its files' keys and sizes when it is
    complete; verify fails it whatever it samples, `run --resume`, `run` and `plan` name it
    and `run --overwrite`, which writes it again, NumPy's to the bit."""
    out = done.dir / f"damaged-{damage.replace(' ', '-')}.zarr"
    copy_store(done.output, out)
    cfg = done.config_with(f"damaged-{damage.replace(' ', '-')}.yaml", output={"store": str(out)})
    key = _damage(out, damage)
    # the one block verify samples with --samples 1 (seed 0) is the other, [1, 0]
    rc, text, err = cli("verify", cfg, "--samples", "1")
    assert rc == 1, err
    assert "mismatched     0" in text
    line = one_line_error(err)
    assert line.startswith("error: the output was damaged since the run (")
    assert line.endswith("`run --overwrite` writes it again"), line
    if damage == "deleted":
        assert f"1 of its 2 shard files gone ({key})" in line
    else:
        assert "shard files' sizes differ from those the run wrote" in line
    before = file_states(out)
    for flags in (("--resume",), ()):
        line, e = refused(cli, OutputError, "run", cfg, *flags)
        assert "is complete, but it is not what the run wrote" in line, line
        assert "`run --overwrite` writes it again" in line
        assert e.changed == ["chunks"]
    assert file_states(out) == before  # refused: nothing written
    rc, text, err = cli("plan", cfg)
    assert "not what the run wrote" in plan_rows(text)["output now"]
    rc, _, err = cli("run", cfg, "--overwrite", "--progress", "none")
    assert rc == 0, err
    got = read_array(out)
    assert got.view(np.uint32).tobytes() == reference(done.x).view(np.uint32).tobytes()
    rc, _, err = cli("verify", cfg, "--samples", "1")
    assert rc == 0, err
    shutil.rmtree(out)


def _edit_stored(stored: dict[str, Any], edit: str) -> None:
    """Edit the ``stored`` of a complete output's record as a hand might: its ``digest``
    changed in one digit, or a record from before ``check`` with it so, or cut short."""
    digest = stored["digest"]
    stored["digest"] = ("1" if digest[0] != "1" else "2") + digest[1:]
    if edit != "digest":
        stored.pop("check", None)  # what versions before the check wrote
    if edit == "older, cut short":
        stored["digest"] = digest[:20]


@pytest.mark.parametrize("edit", ["digest", "older, digest", "older, cut short"])
def test_a_complete_output_whose_stored_digest_was_edited_says_so(
    done: Done, cli, edit: str
) -> None:
    """h56b: the ``stored.digest`` of a complete output's record edited since the run, its
    files untouched: verify said "the output was damaged since the run (its shard files'
    sizes differ from those the run wrote ...)", which they do not. The record holds a check
    of its ``stored``: verify and ``run --resume`` say the record was edited, with `run
    --overwrite`; a record from before the check says so where its digest is not one a run
    writes, and else that the files are as many and as large as the run wrote, not at the
    same keys, or the record's digest was edited."""
    name = "stored-" + edit.replace(" ", "").replace(",", "-")
    out = done.dir / f"{name}.zarr"
    copy_store(done.output, out)
    cfg = done.config_with(f"{name}.yaml", output={"store": str(out)})
    attrs = attributes(out)
    _edit_stored(attrs["pipeline"]["stored"], edit)
    set_attributes(out, attrs)
    rc, text, err = cli("verify", cfg)
    assert rc == 1, text + err
    line = one_line_error(err)
    assert "sizes differ" not in line, line
    assert line.endswith("`run --overwrite` writes it again"), line
    if edit == "older, digest":  # cannot be told from two files swapped: both said
        assert "bytes in all, as the run wrote, but not at the same keys" in line, line
        assert "or the digest of them that its record holds was edited since" in line, line
    else:
        assert "(its `pipeline` attribute) was edited since the run (its `stored`" in line
        line, _ = refused(cli, OutputError, "run", cfg, "--resume")
        assert "its record of the run that made it was edited since (its `stored`" in line
    rc, _, err = cli("run", cfg, "--overwrite", "--progress", "none")
    assert rc == 0, err
    rc, _, err = cli("verify", cfg)
    assert rc == 0, err
    shutil.rmtree(out)


def _without_identity(meta: dict[str, Any]) -> None:
    del meta["identity"]  # what versions before the identity was recorded wrote


def test_an_older_complete_output_with_a_matching_fingerprint_is_complete(done: Done, cli) -> None:
    """In place: an older output's fingerprint covers where it is, so only there can it
    say that it matches."""
    meta = done.output / "zarr.json"
    saved = meta.read_bytes()
    try:
        attrs = attributes(done.output)
        _without_identity(attrs["pipeline"])
        set_attributes(done.output, attrs)
        before = file_states(done.output)
        rc, _, err = cli("run", done.config, "--resume")
        assert rc == 0 and "nothing to do" in err, err
        assert file_states(done.output) == before
    finally:
        meta.write_bytes(saved)


def test_an_earlier_versions_record_held_as_a_mapping_is_the_same_record(done: Done, cli) -> None:
    """h67c: a run writes its ``pipeline`` record as JSON text (which netCDF can hold); an
    output an earlier version wrote holds the mapping itself, which is the same record:
    complete, verified, and ``run --resume`` writes it again as the text a run writes now,
    nothing else (h69c: it had said "nothing to do" and kept the mapping, so the output's
    ``to_netcdf`` stayed refused); its dry run says so first; an edit of it is still an
    edit."""
    meta = done.output / "zarr.json"
    saved = meta.read_bytes()
    try:
        arr = zarr.open_array(str(done.output), mode="r+")
        record = record_of(arr.attrs)
        arr.update_attributes({"pipeline": record})
        assert dict(zarr.open_array(str(done.output), mode="r").attrs)["pipeline"] == record
        before = file_states(done.output)
        rc, _, err = cli("verify", done.config)
        assert rc == 0, err
        rc, text, err = cli("run", done.config, "--resume", "--dry-run")
        assert rc == 0, err
        row = plan_rows(text)["output now"]
        assert "and writes its run record again as JSON text" in row, row
        assert file_states(done.output) == before  # a dry run writes nothing
        rc, _, err = cli("run", done.config, "--resume")
        assert rc == 0 and "its run record written again as JSON text" in err, err
        assert "nothing else to do" in err, err
        after = file_states(done.output)
        assert [k for k in before if before[k] != after.get(k)] == ["zarr.json"]
        assert after.keys() == before.keys()
        assert record_of(zarr.open_array(str(done.output), mode="r").attrs) == record
        rc, _, err = cli("run", done.config, "--resume")
        assert rc == 0 and "nothing to do" in err and "written again" not in err, err
        rc, _, err = cli("verify", done.config)
        assert rc == 0, err
        arr.update_attributes({"pipeline": {**record, "version": "0.0.1"}})
        rc, _, err = cli("verify", done.config)
        assert rc == 1 and "was edited since" in err, err
    finally:
        meta.write_bytes(saved)


def test_an_older_complete_output_made_with_another_config_is_refused(done: Done, cli) -> None:
    """An older output's fingerprint says it does not match, not what changed."""
    out, _ = _copy_recorded(done, "older-changed", _without_identity)
    cfg = done.config_with("older-changed.yaml", output={"store": str(out)}, stages=_stages(2))
    before = file_states(out)
    line, e = refused(cli, OutputError, "run", cfg, "--resume")
    assert (e.status, e.changed) == ("complete", ["unrecorded"])
    assert "--overwrite" in line
    assert file_states(out) == before
    rc, text, _ = cli("plan", cfg)
    assert rc == 0
    assert "did not record what it was made from" in plan_rows(text)["output now"]


def test_a_complete_output_that_records_nothing_is_refused(done: Done, cli) -> None:
    """No fingerprint, no identity: whether it matches cannot be told, so it is not taken for
    current."""

    def bare(meta: dict[str, Any]) -> None:
        del meta["identity"], meta["fingerprint"]

    out, cfg = _copy_recorded(done, "bare", bare)
    before = file_states(out)
    line, e = refused(cli, OutputError, "run", cfg, "--resume")
    assert (e.status, e.changed) == ("complete", ["unrecorded"])
    assert "`run --overwrite` recomputes it" in line
    assert file_states(out) == before
    rc, _, err = cli("run", cfg, "--overwrite")  # the fix the line names
    assert rc == 0, err
    assert attributes(out)["pipeline"]["status"] == "complete"
    assert np.array_equal(read_array(out), reference(done.x))


# --------------------------------------------------------------------------------------------
# 5. An interrupted generate.

GEN_COLS = 4096


def _gen_config(d: Path, rows: int, **sections: Any) -> Path:
    """An input of ``rows`` unsharded chunks of one row (one generate task each)."""
    gen = {"shape": [rows, GEN_COLS], "chunks": [1, GEN_COLS], "shards": "none", "seed": 11}
    gen.update(sections.pop("generate", {}))
    cluster = {"workers": 1, "threads_per_worker": 1, "dashboard": ""}
    return generated_config(d, gen, cluster=cluster, **sections)


@dataclass
class Unfinished:
    """An input that Ctrl-C stopped ``generate`` on, and its config."""

    config: Path
    input: Path
    rows: int
    stderr: str
    returncode: int


def _interrupt_generate(d: Path, command: str = "generate", **sections: Any) -> Unfinished:
    """Start ``pipeline COMMAND`` (a generate, or a run that generates its input first), press
    Ctrl-C (SIGINT to its process group, as a terminal does) once some units are written, and
    wait for it to end. A larger input when the machine was too quick."""
    rows = 400
    for _ in range(4):
        shutil.rmtree(d / "in.zarr", ignore_errors=True)
        cfg = _gen_config(d, rows, **sections)
        proc = cli_process(cfg, cwd=d, command=command)
        try:
            n = wait_for_chunk_files(proc, d / "in.zarr", 3, timeout=120)
            if n < 0:
                proc.communicate(timeout=60)
                rows *= 4
                continue
            children = descendants(proc.pid)
            os.killpg(proc.pid, signal.SIGINT)
            _, err = proc.communicate(timeout=120)
        finally:
            end_process(proc)
        left = wait_gone(children, timeout=30)
        kill_procs(left)
        assert not left, f"left running after Ctrl-C: {left}"
        if chunk_files(d / "in.zarr") < rows:
            return Unfinished(cfg, d / "in.zarr", rows, err, proc.returncode)
        rows *= 4
    pytest.fail("could not interrupt generate midway: it always finished first")


def _generated(store: Path) -> dict[str, Any]:
    return attributes(store)["pipeline_generated"]


def test_an_interrupted_generate_leaves_an_input_marked_unfinished(tmp_path: Path, cli) -> None:
    u = _interrupt_generate(tmp_path)
    assert u.returncode == DIED_OF_SIGINT, u.stderr
    line = [ln for ln in u.stderr.splitlines() if ln.strip()]
    assert len(line) == 1 and line[0].startswith("interrupted:"), u.stderr
    # the fix is to generate again, not to resume a run
    assert f"`pipeline generate {u.config}`" in line[0] and "--resume" not in line[0]
    assert _generated(u.input)["status"] == "incomplete"
    assert chunk_files(u.input) < u.rows

    out = tmp_path / "out.zarr"
    for args in (("run", u.config), ("run", u.config, "--resume"), ("plan", u.config)):
        before = file_states(u.input)
        line, e = refused(cli, InputError, *args)
        assert e.input == str(u.input) and e.status == "incomplete"
        assert e.made_by == "generate"
        assert f"`pipeline generate {u.config}`" in line, line  # as it runs (not CONFIG)
        assert not out.exists(), f"{args} created the output"
        assert file_states(u.input) == before  # the input is never modified
    line, e = refused(cli, InputError, "verify", u.config)
    assert e.input == str(u.input)

    # generating again (the fix named) finishes it: every unit written, none left as fill
    rc, _, err = cli("generate", u.config, "--progress", "none")
    assert rc == 0, err
    assert _generated(u.input)["status"] == "complete"
    assert chunk_files(u.input) == u.rows
    assert np.all(np.any(read_array(u.input) != 0, axis=1))
    rc, out_text, err = cli("plan", u.config)
    assert rc == 0, err
    assert plan_rows(out_text)["output now"].startswith("absent")


def test_run_with_when_missing_generates_an_unfinished_input_again(tmp_path: Path, cli) -> None:
    u = _interrupt_generate(tmp_path, generate={"when_missing": True})
    assert u.returncode == DIED_OF_SIGINT and _generated(u.input)["status"] == "incomplete", (
        u.stderr
    )
    rc, out, err = cli("plan", u.config)
    assert rc == 0, err
    assert "the input is unfinished (an interrupted generate): `run` generates it" in out
    assert _generated(u.input)["status"] == "incomplete"  # plan wrote nothing
    # verify names what finishes it with this config: `run` (it had asked to set
    # input.generate.when_missing: true, which the config says already)
    line, _ = refused(cli, InputError, "verify", u.config)
    assert f"`pipeline run {u.config}` generates it again first" in line, line  # (had: CONFIG)
    assert "set input.generate.when_missing" not in line, line
    rc, _, err = cli("run", u.config, "--summary-json", tmp_path / "s.json")
    assert rc == 0, err
    assert re.search(r"input .*in\.zarr is unfinished \(an interrupted generate\): generating", err)
    assert _generated(u.input)["status"] == "complete"
    assert chunk_files(u.input) == u.rows
    x = read_array(u.input)
    assert np.array_equal(read_array(tmp_path / "out.zarr"), reference(x))


@pytest.mark.parametrize("how", ["cli", "api"])
def test_ctrl_c_before_generate_makes_the_input_says_nothing_was_written(
    tmp_path: Path, how: str
) -> None:
    """A Ctrl-C while ``generate`` (or a run's ``when_missing``) starts its workers, before it
    makes the input: the line had said "interrupted: the workers are stopped; the input
    .../in.zarr is unfinished: `pipeline generate ...` generates it again" of an input that
    was never made (h81a). It says that nothing was written, as a run's does."""
    cfg = _gen_config(tmp_path, 4, generate={"when_missing": True})
    command = "generate" if how == "cli" else None
    script = ctrl_c_script("pipeline.running.generate", "_workers", None, command=command)
    (tmp_path / "script.py").write_text(script)
    proc = run_python([tmp_path / "script.py", cfg], tmp_path)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    if how == "cli":
        assert got == {"rc": 130}, (got, proc.stderr)
        assert proc.stderr.strip().splitlines() == ["interrupted: nothing was written"], proc.stderr
    else:
        assert got == {
            "what": "generate",
            "state": "untouched",
            "str": "interrupted: nothing was written",
        }, got
    assert not (tmp_path / "in.zarr").exists()
    assert not (tmp_path / "out.zarr").exists()


def test_ctrl_c_while_run_generates_its_input_points_at_generate(tmp_path: Path, cli) -> None:
    """``run`` with ``when_missing`` stopped while it generates: no output exists, so the line
    points at generating the input again, not at ``run --resume``."""
    u = _interrupt_generate(tmp_path, command="run", generate={"when_missing": True})
    assert u.returncode == DIED_OF_SIGINT, u.stderr
    lines = [ln for ln in u.stderr.splitlines() if ln.startswith("interrupted")]
    assert len(lines) == 1 and f"`pipeline generate {u.config}`" in lines[0], u.stderr
    assert _generated(u.input)["status"] == "incomplete"
    assert not (tmp_path / "out.zarr").exists()


def test_an_input_generated_by_an_older_version_counts_as_finished(tmp_path: Path, cli) -> None:
    """Versions before the status was recorded wrote no ``status``: such inputs were whole
    (or their interruption cannot be told), and are read as before."""
    cfg = _gen_config(tmp_path, 8)
    rc, _, err = cli("generate", cfg, "--progress", "none")
    assert rc == 0, err
    attrs = attributes(tmp_path / "in.zarr")
    del attrs["pipeline_generated"]["status"]
    set_attributes(tmp_path / "in.zarr", attrs)
    rc, _, err = cli("run", cfg)
    assert rc == 0, err
    x = read_array(tmp_path / "in.zarr")
    assert np.array_equal(read_array(tmp_path / "out.zarr"), reference(x))


#: A change of each field of input.generate that decides the stored input (values or layout).
_GENERATE_CHANGES = {
    "shape": {"shape": [12, GEN_COLS]},
    "dtype": {"dtype": "float64"},
    # the same values, stored big-endian: a little-endian input had been read as it was
    "dtype-big-endian": {"dtype": ">f4"},
    "chunks": {"chunks": [2, GEN_COLS]},
    "shards": {"shards": [4, GEN_COLS]},
    "codec": {"codec": {"level": 3, "checksum": True}},
    "zarr_format": {"zarr_format": 2},
    "distribution": {"distribution": "uniform"},
    "seed": {"seed": 12},
}


@pytest.mark.parametrize("change", list(_GENERATE_CHANGES))
def test_an_input_generated_from_another_generate_section_is_refused(
    tmp_path: Path, cli, change: str
) -> None:
    """`run` with ``when_missing`` after a change of ``input.generate`` had read the input the
    old section made (it is not missing), with exit 0: an output of data the config no longer
    describes. `run` (CLI and ``pipeline.run``), `plan` and `verify` refuse it in one line
    naming the field, before anything is written; `pipeline generate` (the fix named) makes
    it again as a fresh generate does, and the run then computes from it."""
    import pipeline

    field = change.split("-")[0]  # the field of input.generate changed
    base = {"when_missing": True}
    out = {"output": {"overwrite": True}}
    cfg = _gen_config(tmp_path, 8, generate=base, **out)
    rc, _, err = cli("run", cfg)
    assert rc == 0, err
    inp, dst = tmp_path / "in.zarr", tmp_path / "out.zarr"
    changed = _gen_config(
        tmp_path, 8, generate={**base, **_GENERATE_CHANGES[change]}, name="changed.yaml", **out
    )
    before = {"in": file_states(inp), "out": file_states(dst)}
    for args in (("run", changed), ("plan", changed), ("verify", changed)):
        line, e = refused(cli, InputError, *args)
        assert e.input == str(inp) and e.status == "differs", line
        assert set(e.differs) == {field}, e.differs  # the one field changed, named
        assert f"was generated with {field} " in line, line
        assert f"`pipeline generate {changed}` generates it again" in line, line
    with pytest.raises(InputError) as info:
        pipeline.run(str(changed))
    assert info.value.status == "differs" and field in info.value.differs
    assert {"in": file_states(inp), "out": file_states(dst)} == before  # nothing written

    # generate again with the changed section: the input a fresh generate makes, bit for bit
    rc, _, err = cli("generate", changed, "--progress", "none")
    assert rc == 0, err
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    rc, _, err = cli("generate", _gen_config(fresh, 8, generate=_GENERATE_CHANGES[change]))
    assert rc == 0, err
    x = read_array(inp)
    assert x.dtype == read_array(fresh / "in.zarr").dtype
    assert np.array_equal(x, read_array(fresh / "in.zarr"))
    rc, _, err = cli("run", changed)
    assert rc == 0, err
    assert np.array_equal(read_array(dst), reference(x))
    # and the first config now refuses it in turn
    line, e = refused(cli, InputError, "run", cfg)
    assert e.status == "differs" and field in e.differs, line


def test_only_what_generate_recorded_is_compared_with_input_generate(tmp_path: Path, cli) -> None:
    """An array at ``input.store`` that `generate` did not make is read as before by a run
    with ``when_missing`` whatever input.generate says (it is the user's data); an input of a
    version that recorded no seed is not compared by seed; one that records it is."""
    written = np.arange(48, dtype=np.float32).reshape(6, 8)
    make_array(tmp_path / "in.zarr", written, (3, 8))
    cfg = _gen_config(tmp_path, 8, generate={"when_missing": True, "seed": 3})
    rc, _, err = cli("run", cfg)
    assert rc == 0, err
    assert np.array_equal(read_array(tmp_path / "out.zarr"), reference(written))

    d = tmp_path / "older"
    d.mkdir()
    cfg = _gen_config(d, 8, generate={"when_missing": True})
    rc, _, err = cli("generate", cfg, "--progress", "none")
    assert rc == 0, err
    attrs = attributes(d / "in.zarr")
    del attrs["pipeline_generated"]["seed"]
    set_attributes(d / "in.zarr", attrs)
    reseeded = _gen_config(d, 8, generate={"when_missing": True, "seed": 5}, name="b.yaml")
    rc, _, err = cli("run", reseeded)
    assert rc == 0, err
    assert np.array_equal(read_array(d / "out.zarr"), reference(read_array(d / "in.zarr")))

    attrs["pipeline_generated"]["seed"] = 11  # what it was made with, recorded
    set_attributes(d / "in.zarr", attrs)
    line, e = refused(cli, InputError, "run", reseeded, "--overwrite")
    assert e.differs == {"seed": [11, 5]}, line


def test_folders_holding_only_an_os_file_are_empty_to_generate_and_run(tmp_path: Path, cli) -> None:
    """An input and an output folder made ahead and opened in Finder (a ``.DS_Store`` each):
    `generate` had refused the input's ("already holds data that `pipeline generate` did not
    create") and `run` the output's ("a directory that holds other files (.DS_Store)").
    A ``._x`` AppleDouble file beside a foreign one still leaves generate's refusal."""
    cfg = _gen_config(tmp_path, 4)
    for folder in ("in.zarr", "out.zarr"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    rc, _, err = cli("generate", cfg, "--progress", "none")
    assert rc == 0, err
    rc, _, err = cli("run", cfg, "--progress", "none")
    assert rc == 0, err
    x = read_array(tmp_path / "in.zarr")
    assert np.array_equal(read_array(tmp_path / "out.zarr"), reference(x))
    other = _gen_config(tmp_path, 4, input={"store": str(tmp_path / "other.zarr")})
    (tmp_path / "other.zarr").mkdir()
    (tmp_path / "other.zarr" / "._x").write_bytes(b"\x00\x05\x16\x07")
    (tmp_path / "other.zarr" / "x").write_bytes(b"mine")
    line, _ = refused(cli, InputError, "generate", other)
    assert "already holds data that `pipeline generate` did not create" in line


def _users_group(store: Path, kind: str) -> None:
    """A user's group at ``store`` of ``kind``, written by zarr-python or xarray: a plain
    group with a consolidated copy of its members' metadata (v3, v2), an xarray Dataset
    (v3, v2; no consolidated copy), a plain v2 or v3 group, or a v3 group with a v2
    ``.zgroup`` beside its ``zarr.json``. Each holds an array of the user's."""
    import xarray as xr

    fmt = 2 if kind.endswith("v2") else 3
    if kind.startswith("dataset"):
        ds = xr.Dataset({"t": (("x",), np.arange(4.0))})
        ds.to_zarr(store, mode="w", zarr_format=fmt, consolidated=False)
        return
    group = zarr.open_group(str(store), mode="w", zarr_format=fmt)
    group.create_array("a", shape=(4,), dtype="f4")[...] = 1
    if kind.startswith("consolidated"):
        with warnings.catch_warnings():  # zarr-python: consolidated metadata is not in the spec
            warnings.simplefilter("ignore")
            zarr.consolidate_metadata(str(store))
    if kind == "mixed":
        (store / ".zgroup").write_text('{"zarr_format": 2}')


@pytest.mark.parametrize(
    "kind, zarr_format, status",
    [
        ("consolidated-v3", 3, "consolidated"),
        ("consolidated-v2", 2, "consolidated"),
        ("dataset-v3", 3, "dataset"),
        ("dataset-v2", 2, "dataset"),
        ("plain-v2", 3, "formats"),
        ("plain-v3", 2, "formats"),
        ("mixed", 3, "formats"),
    ],
)
def test_generate_into_a_group_it_would_leave_inconsistent_is_refused(
    tmp_path: Path, cli, kind: str, zarr_format: int, status: str
) -> None:
    """`generate` (and a run that generates its input first) into a user's group that the
    new array would leave inconsistent is refused in one line, before anything is written.
    It had written there and exited 0: a group's consolidated copy no longer listed its
    members (zarr.open_group did not see the new array); an xarray Dataset's group held an
    array without dimension names (xr.open_zarr then failed with a KeyError); a v2 group (a
    Dataset xarray wrote with zarr_format=2) got a v3 zarr.json beside its .zgroup, and
    readers, which take the zarr.json, no longer saw the user's own arrays."""
    store = tmp_path / "s.zarr"
    _users_group(store, kind)
    before = file_states(store)
    gen = {"zarr_format": zarr_format}
    cfg = _gen_config(tmp_path, 4, input={"store": str(store), "array": "gen"}, generate=gen)
    line, e = refused(cli, InputError, "generate", cfg)
    assert e.status == status, line
    assert f"cannot generate the input at {store}/gen" in line, line
    if kind == "mixed":  # the words of run's refusal of such an output group
        both = "holds both Zarr v3 metadata (zarr.json) and Zarr v2 metadata (.zgroup)"
        assert both in line, line
    assert file_states(store) == before
    gen["when_missing"] = True
    cfg = _gen_config(tmp_path, 4, input={"store": str(store), "array": "gen"}, generate=gen)
    rc, _, err = cli("run", cfg)  # says first that it generates the missing input
    assert rc == 1, err
    said = err.strip().splitlines()
    assert len(said) == 2 and said[1].startswith("error: cannot generate the input at"), err
    with pytest.raises(InputError) as raised:
        cli("--debug", "run", cfg)
    assert raised.value.status == status
    assert file_states(store) == before
    assert not (tmp_path / "out.zarr").exists()


@pytest.mark.parametrize(("zarr_format", "status"), [(3, "formats"), (2, "consolidated")])
def test_generate_into_a_folder_of_a_lone_zmetadata_is_refused(
    tmp_path: Path, cli, zarr_format: int, status: str
) -> None:
    """A folder holding a v2 ``.zmetadata`` and no group's metadata (its ``.zgroup`` gone),
    and ``generate`` of ``gen`` in it: Zarr made the group above the array, a v3
    ``zarr.json`` beside the ``.zmetadata`` (the next generate then refused the group it had
    made: "holds both Zarr v3 metadata ... and Zarr v2 metadata (.zmetadata)"), or a v2
    ``.zgroup``, whose group's consolidated copy, read by ``zarr.open_group``, did not list
    the new array. Both exit 0; refused, before anything is written, as a v2 group and as a
    consolidated copy are."""
    store = tmp_path / "s.zarr"
    store.mkdir()
    (store / ".zmetadata").write_text('{"zarr_consolidated_format": 1, "metadata": {}}')
    before = file_states(store)
    gen = {"zarr_format": zarr_format}
    cfg = _gen_config(tmp_path, 4, input={"store": str(store), "array": "gen"}, generate=gen)
    line, e = refused(cli, InputError, "generate", cfg)
    assert e.status == status and e.group == str(store), line
    assert f"cannot generate the input at {store}/gen" in line, line
    assert file_states(store) == before and not (store / "gen").exists()


@pytest.mark.parametrize(
    "kind, zarr_format, status, store_in",
    [
        ("dataset-v3", 3, "dataset", "gen"),
        ("dataset-v2", 2, "dataset", "gen"),
        ("consolidated-v3", 3, "consolidated", "sub"),
        ("consolidated-v2", 2, "consolidated", "sub"),
        ("plain-v2", 3, "formats", "gen"),
        ("plain-v3", 2, "formats", "gen"),
    ],
)
def test_generate_with_input_store_inside_a_group_checks_the_groups_above_it(
    tmp_path: Path, cli, kind: str, zarr_format: int, status: str, store_in: str
) -> None:
    """The same refusals where input.store itself lies inside the user's group
    (``input.store: ds.zarr/gen``, ``input.array: ''``; or ``ds.zarr/sub`` with
    ``input.array: gen``): the groups above the store's root had not been looked at, and
    generate wrote there with exit 0 (xr.open_zarr of the Dataset then failed with a
    KeyError; the consolidated copy did not list the new group). Nothing is written."""
    import xarray as xr

    group = tmp_path / "s.zarr"
    _users_group(group, kind)
    before = file_states(group)
    array = "" if store_in == "gen" else "gen"
    inp = {"store": str(group / store_in), "array": array}
    cfg = _gen_config(tmp_path, 4, input=inp, generate={"zarr_format": zarr_format})
    line, e = refused(cli, InputError, "generate", cfg)
    assert e.status == status, line
    assert f"cannot generate the input at {group}/{store_in}" in line, line
    assert file_states(group) == before
    if kind.startswith("dataset"):
        with xr.open_zarr(group, consolidated=False) as ds:
            assert list(ds.data_vars) == ["t"]


def test_generate_into_a_group_it_leaves_consistent_still_writes(tmp_path: Path, cli) -> None:
    """What the refusals above leave alone: a plain v3 group of the user's (no consolidated
    copy, no dimension names), generated into twice, and a new group below an xarray
    Dataset's, which ``xr.open_zarr`` of the Dataset does not read: the Dataset still opens
    as it was, and the user's array is unchanged."""
    import xarray as xr

    plain = tmp_path / "plain.zarr"
    _users_group(plain, "plain-v3")
    cfg = _gen_config(tmp_path, 4, input={"store": str(plain), "array": "gen"})
    for _ in range(2):
        rc, _, err = cli("generate", cfg, "--progress", "none")
        assert rc == 0, err
    group = zarr.open_group(str(plain), mode="r")
    assert sorted(group.array_keys()) == ["a", "gen"]
    assert np.array_equal(group["a"][...], np.ones(4, "f4"))
    ds_store = tmp_path / "ds.zarr"
    _users_group(ds_store, "dataset-v3")
    cfg = _gen_config(tmp_path, 4, input={"store": str(ds_store), "array": "sub/gen"})
    rc, _, err = cli("generate", cfg, "--progress", "none")
    assert rc == 0, err
    with xr.open_zarr(ds_store, consolidated=False) as ds:
        assert list(ds.data_vars) == ["t"]
        assert np.array_equal(ds["t"].values, np.arange(4.0))


def test_generate_under_a_file_names_input_store(tmp_path: Path, cli) -> None:
    """`generate` with input.store under a file (nothing can be written there) is an input
    error naming input.store; it had been an output error that said to choose another
    output.store, which the user need not change."""
    (tmp_path / "afile").write_text("mine")
    cfg = _gen_config(tmp_path, 4, input={"store": str(tmp_path / "afile" / "in.zarr")})
    line, e = refused(cli, InputError, "generate", cfg)
    assert "choose another input.store" in line and "output" not in line, line
    assert e.directory == str(tmp_path / "afile")
    assert (tmp_path / "afile").read_text() == "mine"


def _node_named_apple_double(folder: Path, kind: str) -> None:
    """An array (of 0, 1, 2) or a group (attribute ``mine: 1``) named ``._x`` in ``folder``,
    written by zarr-python."""
    if kind == "array":
        zarr.create_array(str(folder / "._x"), shape=(3,), dtype="int16", chunks=(3,))[...] = (
            np.arange(3, dtype=np.int16)
        )
    else:
        zarr.open_group(str(folder / "._x"), mode="w").attrs["mine"] = 1


def _node_kept(folder: Path, kind: str) -> None:
    got = zarr.open(str(folder / "._x"), mode="r")
    if kind == "array":
        assert np.array_equal(got[...], np.arange(3, dtype=np.int16))
    else:
        assert dict(got.attrs) == {"mine": 1}


@pytest.mark.parametrize("kind", ["array", "group"])
def test_a_zarr_node_named_like_an_appledouble_file_is_a_node(
    tmp_path: Path, done: Done, cli, kind: str
) -> None:
    """An array or group named ``._x`` (a legal Zarr node name) is a node, not an AppleDouble
    file: an AppleDouble file is a file, and only files are passed by as an operating
    system's (:meth:`~pipeline.store.location.Location.entries`). In the output's group it
    had been passed by: the group was taken for an empty one, and ``run`` called ``._x``'s
    files "beside the array's metadata and chunks" of an array that is none; it is now the
    group that holds a node, which no run replaces. A folder holding it alone (no metadata
    of its own) had been empty to ``run``, which wrote the output array over it, and to
    ``generate``, which wrote the input there; both refuse it now. The node is kept."""
    out = tmp_path / "group.zarr"
    zarr.open_group(str(out), mode="w")
    _node_named_apple_double(out, kind)
    cfg = done.config_with(f"group-{kind}.yaml", output={"store": str(out)})
    before = file_states(out)
    for flags in ((), ("--overwrite",)):
        line, e = refused(cli, OutputError, "run", cfg, *flags)
        assert "is a Zarr group that holds '._x'" in line, line
        assert e.status == "group"
    assert file_states(out) == before
    _node_kept(out, kind)
    folder = tmp_path / "folder.zarr"
    folder.mkdir()
    _node_named_apple_double(folder, kind)
    cfg = done.config_with(f"folder-{kind}.yaml", output={"store": str(folder)})
    before = file_states(folder)
    for flags in ((), ("--overwrite",)):
        line, e = refused(cli, OutputError, "run", cfg, *flags)
        assert "is a directory that holds other files (._x)" in line, line
    gen = _gen_config(tmp_path, 4, input={"store": str(folder)})
    line, _ = refused(cli, InputError, "generate", gen)
    assert "already holds data that `pipeline generate` did not create" in line
    assert file_states(folder) == before
    _node_kept(folder, kind)
