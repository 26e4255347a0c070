"""Reference (kerchunk) inputs, fsspec's ``reference://``: chunks that are byte ranges of other
files, named in a JSON document. They open as zarr-python opens them, and a resume sees the
files they point into rewritten.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import zarr

from tests.conftest import reference, write_config

ROWS, COLS, CHUNK = 64, 256, 8


def _references(tmp: Path, x: np.ndarray, last_url: str | None = None) -> Path:
    """A reference document for ``x`` as the array ``a``: its metadata inline, its chunks
    byte ranges of ``blob.bin`` (uncompressed: a rewrite keeps every size); ``last_url``: the
    last chunk a whole file there instead (``last.bin`` beside the blob, served)."""
    src = zarr.create_array(
        str(tmp / "src.zarr"), shape=x.shape, dtype=x.dtype, chunks=(CHUNK, COLS),
        zarr_format=2, compressors=None, overwrite=True,
    )  # fmt: skip
    src[...] = x
    refs: dict[str, object] = {
        ".zgroup": json.dumps({"zarr_format": 2}),
        "a/.zarray": (tmp / "src.zarr" / ".zarray").read_text(),
    }
    n = ROWS // CHUNK
    offset = 0
    with open(tmp / "blob.bin", "wb") as blob:
        for i in range(n):
            data = (tmp / "src.zarr" / f"{i}.0").read_bytes()
            if i == n - 1 and last_url is not None:
                (tmp / "last.bin").write_bytes(data)
                refs[f"a/{i}.0"] = [f"{last_url}/last.bin"]
                continue
            refs[f"a/{i}.0"] = [str(tmp / "blob.bin"), offset, len(data)]
            blob.write(data)
            offset += len(data)
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
