"""Lines of a run that stopped name a command `run` takes then, or `pipeline verify`, which
asks `run`, where the command depends on what the user does first.

Real runs of ``python -m pipeline`` (a real SIGINT) and of the CLI's ``main()``; real stores.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
from pathlib import Path

import pytest
import yaml

from pipeline.cli import main
from tests.conftest import STAGES, read_array, reference
from tests.faultkit import (
    DIED_OF_SIGINT,
    cli_process,
    end_process,
    many_blocks_input,
    status,
    wait_for_markers,
)

COLS = 1024


def _config(d: Path) -> Path:
    cfg = {
        "input": {"store": str(d / "in.zarr")},
        "output": {"store": str(d / "out.zarr"), "chunks": [1, COLS]},
        "stages": STAGES,
        "backend": "cpu",
        "chunking": {"block": [1, COLS]},
        "cluster": {"workers": 1, "threads_per_worker": 2, "dashboard": ""},
    }
    p = d / "run.yaml"
    p.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return p


def _cli(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str]:
    rc = main([str(a) for a in args])
    return rc, capsys.readouterr().err


def _named(line: str) -> list[str] | None:
    """The `run` command ``line`` names last, as extra arguments; None where it names none."""
    named = re.findall(r"`(?:pipeline )?run( --\w+)?`", line)
    return None if not named else [named[-1].strip()] if named[-1] else []


def test_the_ctrl_c_line_of_a_run_whose_input_changed_names_what_run_takes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The input rewritten while the run read it, then Ctrl-C: the line had said "`run
    --resume` finishes the output", which `run --resume` refused (the input changed). It says
    `run`'s own refusal, naming `run --overwrite`, which then ends with the output of the
    input as it is, and a passing verify."""
    cfg = _config(tmp_path)
    rows = 2000
    for _ in range(4):  # a machine fast enough to finish first gets a larger input
        shutil.rmtree(tmp_path / "out.zarr", ignore_errors=True)
        x = many_blocks_input(tmp_path / "in.zarr", rows, COLS)
        proc = cli_process(cfg, cwd=tmp_path)
        try:
            n = wait_for_markers(proc, tmp_path / "out.zarr", 3)
            if n >= 0:
                meta = tmp_path / "in.zarr" / "zarr.json"
                meta.write_text(meta.read_text())  # rewritten, the same bytes: new times
                os.kill(proc.pid, signal.SIGINT)
            _, err = proc.communicate(timeout=300)
        finally:
            end_process(proc)
        if n >= 0 and proc.returncode == DIED_OF_SIGINT:
            break
        rows *= 4
    else:
        pytest.fail("could not interrupt a run midway: every run finished first")
    assert status(tmp_path / "out.zarr") == "incomplete"
    line = err.strip().splitlines()[-1]
    assert line.startswith("interrupted: "), err
    rc, resume_err = _cli(capsys, "-q", "run", cfg, "--progress", "none", "--resume")
    assert rc == 1 and "changed" in resume_err, resume_err
    command = _named(line)
    assert command == ["--overwrite"], line
    rc, run_err = _cli(capsys, "-q", "run", cfg, "--progress", "none", *command)
    assert rc == 0, (line, run_err)
    got = read_array(tmp_path / "out.zarr")
    assert got.tobytes() == reference(x).tobytes()
    rc, err = _cli(capsys, "-q", "verify", cfg, "--all")
    assert rc == 0, err


def test_a_damaged_input_chunk_s_line_leads_to_a_command_run_takes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run stopped on a damaged input chunk had said "run again with --overwrite (the input
    has changed since, so --resume would refuse it)", naming a flag without asking `run`,
    whatever the restored chunk's stamps. It names `pipeline verify`, which, once the chunk
    is restored, names the command `run` takes, which ends right."""
    cfg = _config(tmp_path)
    x = many_blocks_input(tmp_path / "in.zarr", 64, COLS)
    chunk = next(p for p in sorted((tmp_path / "in.zarr" / "c").rglob("*")) if p.is_file())
    kept = tmp_path / "chunk.bak"
    shutil.copy2(chunk, kept)
    chunk.write_bytes(b"not a chunk")
    rc, err = _cli(capsys, "-q", "run", cfg, "--progress", "none")
    line = err.strip().splitlines()[-1]
    assert rc == 1 and "damaged" in line, err
    assert _named(line) is None and "--overwrite" not in line and "--resume" not in line, line
    assert "`pipeline verify`" in line, line
    shutil.copy2(kept, chunk)  # restored
    rc, err = _cli(capsys, "-q", "verify", cfg)
    assert rc == 1, err
    command = _named(err.strip().splitlines()[-1])
    assert command is not None, err
    rc, run_err = _cli(capsys, "-q", "run", cfg, "--progress", "none", *command)
    assert rc == 0, (err, run_err)
    assert read_array(tmp_path / "out.zarr").tobytes() == reference(x).tobytes()
    rc, err = _cli(capsys, "-q", "verify", cfg, "--all")
    assert rc == 0, err


def test_a_resume_after_a_damaged_chunk_is_restored_names_what_run_takes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run stopped on a damaged input chunk says to restore it, and that the output stays
    incomplete; a user who then restores it and runs `run --resume` was refused as "the
    input's data changed ...; resume with the same config and input, or `run --overwrite` to
    start over": a restored file is never the same input again, so that advice led nowhere.
    The refusal names `run --overwrite` alone, which ends with the output of the restored
    input and a passing verify; `pipeline verify` names the same."""
    cfg = _config(tmp_path)
    x = many_blocks_input(tmp_path / "in.zarr", 64, COLS)
    chunk = [p for p in sorted((tmp_path / "in.zarr" / "c").rglob("*")) if p.is_file()][-1]
    kept = tmp_path / "chunk.bak"
    shutil.copy2(chunk, kept)
    chunk.write_bytes(chunk.read_bytes()[:10])  # cut short
    rc, err = _cli(capsys, "-q", "run", cfg, "--progress", "none")
    assert rc == 1 and "damaged" in err and "restore the chunk" in err, err
    assert status(tmp_path / "out.zarr") == "incomplete"
    shutil.copy2(kept, chunk)  # restored, as the line says
    rc, err = _cli(capsys, "-q", "run", cfg, "--progress", "none", "--resume")
    line = err.strip().splitlines()[-1]
    assert rc == 1 and line.startswith("error: cannot resume "), err
    assert "resume with the same" not in line and "restored or rewritten" in line, line
    assert _named(line) == ["--overwrite"], line
    rc, err = _cli(capsys, "-q", "verify", cfg)
    assert rc == 1 and _named(err.strip().splitlines()[-1]) == ["--overwrite"], err
    rc, run_err = _cli(capsys, "-q", "run", cfg, "--progress", "none", "--overwrite")
    assert rc == 0, run_err
    assert read_array(tmp_path / "out.zarr").tobytes() == reference(x).tobytes()
    rc, err = _cli(capsys, "-q", "verify", cfg, "--all")
    assert rc == 0, err
