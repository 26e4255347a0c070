"""Stores for the store tests: one end-to-end round of a run over any store (local paths,
S3), whatever its name holds (``[``, ``]``, ``*``, ``?``, spaces)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from pipeline.errors import OutputError
from pipeline.store.location import Location, is_write_probe
from tests.conftest import record_of, reference, write_config
from tests.faultkit import refused

#: Store names that fsspec would read as glob patterns, each with a sibling name the pattern
#: matches (a delete that globs would take the sibling's files too).
ODD_NAMES = [
    ("out[v0].zarr", "outv.zarr"),
    ("out a*b?.zarr", "out a-x-bc.zarr"),
    ("]x[ ?.zarr", "]x[ q.zarr"),
]


def zarr_store(url: str, options: dict[str, Any] | None = None, read_only: bool = True) -> Any:
    """zarr-python's own store for ``url`` (a path, or an fsspec URL), independent of the
    pipeline's :class:`Location`."""
    from zarr.storage import FsspecStore, LocalStore

    if "://" not in url:
        return LocalStore(url, read_only=read_only)
    return FsspecStore.from_url(url, storage_options=options or {}, read_only=read_only)


def output_of(url: str, options: dict[str, Any] | None = None) -> Any:
    return zarr.open_array(store=zarr_store(url, options), mode="r")


def round_trip(
    cli: Callable[..., tuple[int, str, str]],
    tmp: Path,
    in_url: str,
    out_url: str,
    options: dict[str, Any] | None = None,
    processes: bool = False,
    siblings: tuple[str, ...] = (),
) -> None:
    """A run over ``in_url`` into ``out_url``, an interrupted run (whose resume is refused
    once the input is repaired: a changed input) and its overwrite, a refused rerun and an
    overwrite; each output read back with zarr-python against NumPy, and no
    write probe left at the output. The interruption is a damaged input chunk (same size,
    same modification time; once it is repaired the input is still a changed one).
    ``processes``: a local cluster of worker processes, else of threads (faster).
    ``siblings``: stores beside the output whose names its name matches as a glob pattern;
    they must keep their files."""
    options = options or {}
    for s in siblings:
        _put(s, "keep", b"keep", None, options)
    x = np.random.default_rng(11).standard_normal((20, 12)).astype(np.float32)
    src = zarr.create_array(
        store=zarr_store(in_url, options, read_only=False),
        shape=x.shape,
        dtype=x.dtype,
        chunks=(5, 12),
    )
    src[...] = x
    section = {"storage_options": options} if options else {}
    cfg = write_config(
        tmp,
        "",
        "",
        input={"store": in_url, **section},
        output={"store": out_url, **section},
        chunking={"block": [5, 12]},
        cluster={"workers": 2, "threads_per_worker": 1, "dashboard": ""}
        | ({} if processes else {"protocol": "inproc"}),
    )
    want = reference(x)

    def check_complete() -> None:
        y = output_of(out_url, options)
        assert np.array_equal(y[...], want)
        assert record_of(y.attrs)["status"] == "complete"
        assert not any(is_write_probe(n) for n in Location.of(out_url, options).list(""))

    rc, _, err = cli("run", cfg)
    assert rc == 0, err
    check_complete()

    # an interrupted run: the last chunk cannot be decoded; then repaired, and resumed
    inp = Location.of(in_url, options)
    key = "c/3/0"
    good = inp.read(key)
    assert good is not None
    stamp = _mtime(in_url, key)
    _put(in_url, key, b"\0" * len(good), stamp, options)
    rc, _, err = cli("run", cfg, "--overwrite")
    assert rc == 1, err
    assert record_of(output_of(out_url, options).attrs)["status"] == "incomplete"
    _put(in_url, key, good, stamp, options)
    # a chunk put back is a new file (a new status-change time, a new ETag or object time)
    # even with its old bytes and modification time: the repaired input is a changed input,
    # and the resume is refused as such
    e = refused("run", cfg, "--resume")
    assert isinstance(e, OutputError) and e.changed == ["input.data"], e
    rc, _, err = cli("run", cfg, "--overwrite")
    assert rc == 0, err
    check_complete()

    e = refused("run", cfg)
    assert isinstance(e, OutputError) and e.status == "complete", e
    rc, _, err = cli("run", cfg, "--overwrite")
    assert rc == 0, err
    check_complete()
    rc, out, err = cli("verify", cfg, "--all")
    assert rc == 0, err + out
    for s in siblings:
        assert Location.of(s, options).read("keep") == b"keep", s


def _mtime(url: str, key: str) -> int | None:
    return os.stat(os.path.join(url, key)).st_mtime_ns if "://" not in url else None


def _put(url: str, key: str, data: bytes, mtime_ns: int | None, options: dict[str, Any]) -> None:
    """Replace a stored chunk behind the pipeline's back (a local file keeps its mtime)."""
    if "://" not in url:
        path = Path(url, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        if mtime_ns is not None:
            os.utime(path, ns=(mtime_ns, mtime_ns))
        return
    import fsspec

    fs, root = fsspec.url_to_fs(url, **options)
    fs.pipe_file(f"{root}/{key}", data)


def check_literal_keys(loc: Location) -> None:
    """Every raw operation of ``loc`` takes keys literally: names with ``[``, ``]``, ``*``,
    ``?`` and spaces are written, read, listed, sized, created exclusively and deleted as
    themselves, and names their patterns would match are never touched."""
    names = ["a[0]", "b*", "c?", "d e", "[x]"]
    for n in names:
        loc.write(f"dir [1]/{n}", [n.encode()])
    loc.write("dir 1/a0", [b"other"])  # what "dir [1]/a[0]" matches as a pattern
    loc.write("dir 1/cz", [b"other"])
    assert loc.list("dir [1]") == sorted(names)
    for n in names:
        key = f"dir [1]/{n}"
        assert loc.exists(key)
        assert loc.read(key) == n.encode()
        assert loc.size(key) == len(n)
        got = loc.read_into(key, lambda size: memoryview(bytearray(size + 3)))
        assert got is not None and bytes(got) == n.encode()
    assert not loc.exists("dir [1]/a0") and loc.read("dir [1]/cz") is None
    assert loc.create_exclusive("dir [1]/lock*", b"me")
    assert not loc.create_exclusive("dir [1]/lock*", b"another")
    assert loc.read("dir [1]/lock*") == b"me"
    loc.delete("dir [1]/a[0]")
    assert not loc.exists("dir [1]/a[0]") and loc.exists("dir [1]/b*")
    loc.delete("dir [1]", recursive=True)
    assert not loc.exists("dir [1]") and loc.list("dir [1]") == []
    assert loc.read("dir 1/a0") == b"other" and loc.read("dir 1/cz") == b"other"
    loc.delete("dir 1", recursive=True)
    assert loc.list("") == []


def tar_of_uncompressed(tmp: Path, x: np.ndarray, chunks: tuple[int, ...]) -> str:
    """``x`` as a Zarr v2 array of uncompressed ``chunks`` (so a wrong byte is no decode
    error), packed member by member with Python's tarfile into ``tmp/in.tar``; its URL."""
    import tarfile

    d = tmp / "in.zarr"
    z = zarr.create_array(
        store=str(d), shape=x.shape, chunks=chunks, dtype=x.dtype, zarr_format=2, compressors=None
    )
    z[...] = x
    with tarfile.open(tmp / "in.tar", "w") as tf:
        for f in sorted(d.rglob("*")):
            if f.is_file():
                tf.add(f, str(f.relative_to(d)))
    return f"tar::file://{tmp}/in.tar"
