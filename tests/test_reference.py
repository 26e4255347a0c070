"""Reference (kerchunk) inputs, fsspec's ``reference://``: chunks that are byte ranges of other
files, named in a JSON document. They open as zarr-python opens them, and a resume sees the
files they point into rewritten.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import numpy as np
import zarr

from pipeline.errors import OutputError
from pipeline.planning.plan import identify_store
from pipeline.store.location import Location
from tests.conftest import record_of, reference, write_config
from tests.faultkit import markers, refused, run_and_signal

ROWS, COLS, CHUNK = 64, 256, 8


def _references(tmp: Path, x: np.ndarray, served: str | None = None, chunk: int = CHUNK) -> Path:
    """A reference document for ``x`` as the array ``a``: its metadata inline, its chunks
    (of ``chunk`` rows) byte ranges of ``blob.bin`` (uncompressed: a rewrite keeps every
    size), the last one the whole file ``last.bin``; ``served``: the URL the folder is served
    at, by which the references name both, else their paths."""
    src = zarr.create_array(
        str(tmp / "src.zarr"), shape=x.shape, dtype=x.dtype, chunks=(chunk, x.shape[1]),
        zarr_format=2, compressors=None, overwrite=True,
    )  # fmt: skip
    src[...] = x
    refs: dict[str, object] = {
        ".zgroup": json.dumps({"zarr_format": 2}),
        "a/.zarray": (tmp / "src.zarr" / ".zarray").read_text(),
    }
    where = served or str(tmp)
    n = x.shape[0] // chunk
    offset = 0
    with open(tmp / "blob.bin", "wb") as blob:
        for i in range(n - 1):
            data = (tmp / "src.zarr" / f"{i}.0").read_bytes()
            refs[f"a/{i}.0"] = [f"{where}/blob.bin", offset, len(data)]
            blob.write(data)
            offset += len(data)
    (tmp / "last.bin").write_bytes((tmp / "src.zarr" / f"{n - 1}.0").read_bytes())
    refs[f"a/{n - 1}.0"] = [f"{where}/last.bin"]
    path = tmp / "refs.json"
    path.write_text(json.dumps({"version": 1, "refs": refs}))
    return path


def _rewrite_blob(tmp: Path) -> None:
    """``blob.bin`` rewritten in place with other values, its size kept."""
    b = np.fromfile(tmp / "blob.bin", dtype="f4")
    (-b - 1).tofile(tmp / "blob.bin")


def test_a_reference_store_with_an_array_path_opens(tmp_path: Path, cli) -> None:
    """F1 (a): ``store: reference://`` with ``array: a`` was refused "input store
    reference:// does not exist" (the reference file system says its root '' does not
    exist), though zarr-python opens it."""
    x = np.arange(ROWS * COLS, dtype="f4").reshape(ROWS, COLS)
    refs = _references(tmp_path, x)
    cfg = write_config(
        tmp_path, "reference://", tmp_path / "out.zarr",
        input={"array": "a", "storage_options": {"fo": str(refs)}},
        output={"array": ""},
    )  # fmt: skip
    rc, _, err = cli("run", cfg)
    assert rc == 0, err
    assert np.array_equal(zarr.open_array(str(tmp_path / "out.zarr"))[...], reference(x))


def _interrupted(tmp: Path) -> tuple[Path, np.ndarray]:
    """A run of a reference input (local targets) stopped by Ctrl-C (SIGINT) once some of its
    blocks are written: the config, the input's values."""
    rows = 256
    for _ in range(3):  # a machine fast enough to finish before the signal gets more rows
        x = np.arange(rows * 4096, dtype="f4").reshape(rows, 4096)
        refs = _references(tmp, x, chunk=1)
        cfg = write_config(
            tmp, "reference://a", tmp / "out.zarr", input={"storage_options": {"fo": str(refs)}},
            output={"overwrite": True}, chunking={"block": [1, 4096]},
        )  # fmt: skip
        stopped = run_and_signal(cfg, tmp / "out.zarr", signal.SIGINT)
        if stopped is not None and 0 < markers(tmp / "out.zarr") < rows:
            return cfg, x
        rows *= 4
    raise AssertionError("could not stop a run midway: every run finished before the signal")


def test_a_reference_input_resumes_when_its_targets_are_unchanged(tmp_path: Path, cli) -> None:
    """F1 (b): the identity of a reference input reaches the files it points into, so an
    interrupted run resumes when none was rewritten (the references' listing alone has no
    stamps: it was refused as an input whose rewrite cannot be seen)."""
    cfg, x = _interrupted(tmp_path)
    rc, _, err = cli("run", cfg, "--resume")
    assert rc == 0, err
    assert np.array_equal(zarr.open_array(str(tmp_path / "out.zarr"))[...], reference(x))


def test_a_reference_inputs_target_rewritten_in_place_is_a_changed_input(
    tmp_path: Path, cli
) -> None:
    """F1 (b): the data file the references point into rewritten in place, same size, between
    an interrupted run and its resume: the resume mixed both versions and marked the output
    complete. It is refused as a changed input."""
    cfg, _ = _interrupted(tmp_path)
    _rewrite_blob(tmp_path)
    e = refused("run", cfg, "--resume")
    assert isinstance(e, OutputError)
    assert (e.status, e.changed) == ("incomplete", ["input.data"])
    assert record_of(zarr.open_array(str(tmp_path / "out.zarr")).attrs)["status"] == ("incomplete")


def test_a_local_target_rewritten_in_place_changes_the_identity(tmp_path: Path) -> None:
    """F1 (b), local targets (the reviewer's case): the data file rewritten in place, same
    size, changes the reference input's identity, which had seen only the references."""
    x = np.arange(ROWS * COLS, dtype="f4").reshape(ROWS, COLS)
    refs = _references(tmp_path, x)
    loc = Location.of("reference://", {"fo": str(refs)})
    before = identify_store(loc, "a")
    assert before.unstamped is None
    time.sleep(0.01)
    _rewrite_blob(tmp_path)
    assert identify_store(loc, "a").identity != before.identity
