"""State that must never pass for finished: a complete output made from another config or input.

``run --resume`` on a complete output compares what made it (recorded in its attributes) with
the config and input at hand: the same says nothing to do; anything else (stages, output layout
or codec, the input moved or rewritten, frames encoded on another device, or an output too old
to say) is refused with an OutputError naming what changed, and nothing is written.

Everything runs the real CLI on real stores.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
import zarr

from pipeline.cli import main
from pipeline.errors import OutputError
from tests.conftest import (
    STAGES,
    make_array,
    read_array,
    reference,
    write_config,
)
from tests.faultkit import (
    copy_store,
    file_states,
    one_line_error,
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
    return dict(zarr.open_array(str(store), mode="r").attrs)


def set_attributes(store: Path, attrs: dict[str, Any]) -> None:
    """Replace the array's attributes (as another version of the pipeline wrote them)."""
    arr = zarr.open_array(str(store), mode="r+")
    arr.attrs.clear()
    arr.update_attributes(attrs)


def fingerprint(identity: dict[str, Any]) -> str:
    """The fingerprint a run records for ``identity`` (pipeline.plan.Plan.fingerprint)."""
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


def _stages(factor: float) -> list[dict[str, Any]]:
    return [{"op": "multiply", "factor": factor}, {"op": "square"}, {"op": "add"}]


# name: (the config's changes, what the refusal names, words the line holds)
CHANGED: dict[str, tuple[dict[str, Any], list[str], list[str]]] = {
    "stages": (
        {"stages": _stages(0.25)},
        ["stages"],
        ["the stages changed", "factor=5", "factor=0.25"],
    ),
    "output-chunks": ({"output": {"chunks": [3, 30]}}, ["layout"], ["the layout changed"]),
    "output-shards": (
        {"output": {"chunks": [6, 30], "shards": [24, 30]}},
        ["layout"],
        ["the layout changed", "[24, 30]"],
    ),
    "output-codec": (
        {"output": {"codec": {"name": "zstd", "level": 7}}},
        ["output.codec"],
        ["the output's codec changed", "'level': 7"],
    ),
    "stages-and-codec": (
        {"stages": _stages(6), "output": {"codec": {"name": "none"}}},
        ["stages", "output.codec"],
        ["the stages changed", "the output's codec changed"],
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
    assert e.output == str(done.output)
    assert e.changed == parts
    assert "is complete, but" in line and "`run --overwrite` recomputes it" in line
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
    assert e.changed == ["input.location"]
    assert f"the input moved (was {done.input}, now {moved})" in line
    assert file_states(done.output) == before


@pytest.mark.parametrize("what", ["data", "metadata"])
def test_resume_of_a_complete_output_whose_input_was_rewritten_is_refused(
    done: Done, cli, what: str
) -> None:
    saved = done.dir / "in.saved"
    copy_store(done.input, saved)
    try:
        before = file_states(done.output)
        if what == "data":  # same shape, dtype, layout and metadata; other values
            make_array(done.input, done.x + 1, (6, 30))
        else:  # the same values in other chunks, which the recorded block does not tile
            make_array(done.input, done.x, (8, 30))
        line, e = refused(cli, OutputError, "run", done.config, "--resume")
        assert e.changed[0] == f"input.{what}"
        assert f"the input's {what} changed" in line
        assert file_states(done.output) == before
    finally:
        copy_store(saved, done.input)  # keeps modification times: the same input again
    rc, _, err = cli("run", done.config, "--resume")
    assert rc == 0 and "nothing to do" in err, err


def _copy_recorded(done: Done, name: str, edit: Any) -> tuple[Path, Path]:
    """A copy of the complete output whose ``pipeline`` attributes ``edit`` rewrote (as another
    machine or version wrote them), and a config that points at the copy."""
    out = done.dir / f"{name}.zarr"
    copy_store(done.output, out)
    attrs = attributes(out)
    edit(attrs["pipeline"])
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


def test_an_older_complete_output_made_with_another_config_is_refused(done: Done, cli) -> None:
    """An older output's fingerprint says it does not match, not what changed."""
    out, _ = _copy_recorded(done, "older-changed", _without_identity)
    cfg = done.config_with("older-changed.yaml", output={"store": str(out)}, stages=_stages(2))
    before = file_states(out)
    line, e = refused(cli, OutputError, "run", cfg, "--resume")
    assert e.changed == ["unrecorded"]
    assert "fingerprint does not match" in line and "--overwrite" in line
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
    assert e.changed == ["unrecorded"]
    assert "cannot be told" in line and "`run --overwrite` recomputes it" in line
    assert file_states(out) == before
    rc, _, err = cli("run", cfg, "--overwrite")  # the fix the line names
    assert rc == 0, err
    assert attributes(out)["pipeline"]["status"] == "complete"
    assert np.array_equal(read_array(out), reference(done.x))
