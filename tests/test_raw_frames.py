"""``output.codec.store_raw_below``: units whose frames hardly compress are stored as zstd frames
of raw blocks. Those must be standard zstd (numcodecs, the ``zstd`` tool, nvCOMP and Zarr read
them), the same bytes from either backend, chosen only where a sample of the unit's frames saves
less than the fraction asked for, and the output equal to NumPy to the bit."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import numcodecs
import numpy as np
import pytest

from pipeline.config import load_config
from pipeline.devices.base import Encoding
from pipeline.errors import ConfigError
from pipeline.store import codecs
from pipeline.store.shards import EMPTY, Frames
from tests.conftest import make_array, read_array, reference, write_config
from tests.faultkit import one_line_error

#: sizes around each change of the header's content size field and of the block count
SIZES = [1, 255, 256, 65791, 65792, 131071, 131072, 131073, 300_000, 4 << 20]


def _bytes(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8)


def _frame(n: int, data: np.ndarray) -> bytes:
    return b"".join(bytes(p) for p in codecs.raw_frame(n).parts(data))


@pytest.mark.parametrize("n", SIZES)
def test_a_raw_frame_is_standard_zstd(n: int) -> None:
    data = _bytes(n, n)
    frame = _frame(n, data)
    f = codecs.raw_frame(n)
    fcs = 1 if n < 256 else 2 if n < 65792 else 4  # the content size field's bytes
    assert len(frame) == f.size == n + 4 + 1 + fcs + 3 * len(f.head_from)
    assert codecs.zstd_content_size(frame) == n
    assert codecs.zstd_frame_size(frame) == len(frame)
    assert bytes(numcodecs.Zstd().decode(frame)) == data.tobytes()
    # every block is raw, and at most 128 KiB
    assert len(f.head_from) == max(1, -(-n // codecs.ZSTD_BLOCK_MAX))
    assert (f.data_len <= codecs.ZSTD_BLOCK_MAX).all() and f.data_len.sum() == n


@pytest.mark.skipif(shutil.which("zstd") is None, reason="the zstd command is not installed")
def test_the_zstd_tool_reads_raw_frames() -> None:
    for n in (1, 131072, 300_000):
        data = _bytes(n, 1)
        out = subprocess.run(["zstd", "-d", "-c"], input=_frame(n, data), capture_output=True)
        assert out.returncode == 0, out.stderr
        assert out.stdout == data.tobytes()


def test_check_frames_passes_raw_frames_for_the_gpu() -> None:
    n = 300_000  # three blocks: the frame is walked block by block
    frames = [_frame(n, _bytes(n, s)) for s in range(3)]
    buf = np.frombuffer(b"".join(frames), np.uint8)
    sizes = np.array([len(f) for f in frames], np.uint64)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.uint64)
    host = codecs.check_frames(buf, Frames(offsets, sizes), "zstd", n)
    assert not host.any()  # sized and without checksum: the GPU decodes them
    with pytest.raises(codecs.Damaged):
        codecs.check_frames(buf, Frames(offsets, sizes), "zstd", n - 1)


def _backend(xp: Any) -> Any:
    from pipeline import devices

    be = devices.get("gpu" if xp is not np else "cpu")
    be.prepare()
    return be


def _encode(xp: Any, values: np.ndarray, n_chunks: int, raw_below: float | None) -> list[bytes]:
    """Every present frame encoded by ``xp``'s backend, as bytes."""
    be = _backend(xp)
    present = np.ones(n_chunks, bool)
    present[1] = False  # an absent chunk keeps its place
    with be.on_stream():
        parts, sizes = be.encode_frames(
            xp.asarray(values), n_chunks, present, Encoding("zstd", 1, False, raw_below)
        )
    body = b"".join(bytes(memoryview(p)) for p in parts)
    assert sizes[1] == EMPTY and len(body) == int(sizes[sizes != EMPTY].sum())
    ends = np.cumsum(sizes[sizes != EMPTY].astype(np.int64))
    return [body[a:b] for a, b in zip([0, *ends[:-1]], ends, strict=True)]


def test_units_that_hardly_compress_are_stored_raw(xp: Any) -> None:
    n_chunks, chunk = 12, 32 * 1024  # float32 elements per chunk
    noise = np.random.default_rng(2).standard_normal(n_chunks * chunk).astype(np.float32)
    smooth = (np.arange(n_chunks * chunk) // 64).astype(np.float32)  # compresses well
    step = chunk * 4
    raw = codecs.raw_frame(step)
    for values, below, stored_raw in (
        (noise, 0.5, True),  # zstd saves about 7% on random normal float32
        (noise, 0.01, False),
        (noise, None, False),
        (smooth, 0.5, False),
    ):
        frames = _encode(xp, values, n_chunks, below)
        assert len(frames) == n_chunks - 1
        present = [i for i in range(n_chunks) if i != 1]
        for i, f in zip(present, frames, strict=True):
            assert (
                bytes(numcodecs.Zstd().decode(f)) == values[i * chunk : (i + 1) * chunk].tobytes()
            )
            assert (len(f) == raw.size) is stored_raw, (below, len(f))
        if stored_raw:  # the same bytes from either backend
            assert frames == _encode(np, values, n_chunks, below)


def test_tiny_frames_are_left_to_zstd(xp: Any) -> None:
    """Frames under RAW_MIN_FRAME are never sampled: zstd stores those that do not compress
    raw itself, without a unit of thousands of parts."""
    chunk = codecs.RAW_MIN_FRAME // 4 // 2  # float32 elements: half the smallest raw frame
    noise = np.random.default_rng(7).standard_normal(12 * chunk).astype(np.float32)
    frames = _encode(xp, noise, 12, 1.0)  # 1.0: every sampled unit would be stored raw
    assert all(len(f) != codecs.raw_frame(chunk * 4).size for f in frames)
    big = np.random.default_rng(7).standard_normal(12 * 2 * chunk).astype(np.float32)
    assert all(len(f) == codecs.raw_frame(8 * chunk).size for f in _encode(xp, big, 12, 1.0))


@pytest.mark.gpu
def test_nvcomp_decodes_raw_frames() -> None:
    import cupy as cp

    from pipeline import devices

    be = devices.get("gpu")
    be.prepare()
    n = 300_000
    datas = [_bytes(n, s) for s in range(4)]
    frames = [_frame(n, d) for d in datas]
    buf = np.frombuffer(b"".join(frames), np.uint8)
    sizes = np.array([len(f) for f in frames], np.uint64)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.uint64)
    with be.on_stream():
        out = be.decode_frames(buf.data, Frames(offsets, sizes), "zstd", n, np.uint8, b"\0")
    assert cp.asnumpy(out).tobytes() == b"".join(d.tobytes() for d in datas)


@pytest.mark.parametrize("backend", ["cpu", pytest.param("gpu", marks=pytest.mark.gpu)])
def test_a_run_stores_noise_raw_and_zarr_reads_it(tmp_path: Path, cli: Any, backend: str) -> None:
    x = np.random.default_rng(3).standard_normal((40, 64, 128)).astype(np.float32)
    make_array(tmp_path / "in.zarr", x, (4, 64, 128))
    chunk_nbytes = 2 * 64 * 128 * 4
    sizes = {}
    for below in (0.2, None):
        out = tmp_path / f"out-{below}.zarr"
        codec = {"store_raw_below": below} if below else {}
        cfg = write_config(
            tmp_path,
            tmp_path / "in.zarr",
            out,
            backend=backend,
            output={"chunks": [2, 64, 128], "shards": "none", "codec": codec},
            cluster={"workers": 1, "threads_per_worker": 2, "dashboard": ""},
        )
        rc, _, err = cli("run", cfg)
        assert rc == 0, err
        assert np.array_equal(read_array(out), reference(x))
        files = sorted((out / "c").rglob("*"))
        files = [f for f in files if f.is_file()]
        assert len(files) == 20
        sizes[below] = {f.stat().st_size for f in files}
    assert sizes[0.2] == {codecs.raw_frame(chunk_nbytes).size}
    assert max(sizes[None]) < chunk_nbytes  # compressed, where it was not asked for
    _other_readers_agree(tmp_path / "out-0.2.zarr", reference(x))


def _other_readers_agree(out: Path, want: np.ndarray) -> None:
    """tensorstore reads ``out`` (an array at its root) as ``want``, bit for bit."""
    ts = pytest.importorskip("tensorstore")
    spec = {"driver": "zarr3", "kvstore": {"driver": "file", "path": str(out)}}
    got = ts.open(spec).result().read().result()
    assert got.tobytes() == want.tobytes()


def test_a_dataset_variable_of_noise_is_stored_raw_and_xarray_reads_it(
    tmp_path: Path, cli: Any
) -> None:
    xr = pytest.importorskip("xarray")
    x = np.random.default_rng(6).standard_normal((12, 64, 128)).astype(np.float32)
    ds = xr.Dataset({"t": (("time", "y", "x"), x)}, coords={"time": np.arange(12)})
    ds.to_zarr(str(tmp_path / "in.zarr"), zarr_format=3, mode="w", consolidated=False)
    cfg = write_config(
        tmp_path,
        tmp_path / "in.zarr",
        tmp_path / "out.zarr",
        input={"store": str(tmp_path / "in.zarr"), "array": "t"},
        output={"codec": {"store_raw_below": 0.5}},
    )
    assert cli("run", cfg)[0] == 0
    got = xr.open_zarr(tmp_path / "out.zarr", consolidated=False)
    assert got["t"].dims == ("time", "y", "x")
    assert got["t"].values.tobytes() == reference(x).tobytes()
    files = [f for f in (tmp_path / "out.zarr" / "t" / "c").rglob("*") if f.is_file()]
    assert sum(f.stat().st_size for f in files) > x.nbytes  # raw frames and their headers


def test_a_sharded_output_of_noise_is_raw_and_every_reader_reads_it(
    tmp_path: Path, cli: Any
) -> None:
    x = np.random.default_rng(5).standard_normal((24, 128, 256)).astype(np.float32)
    make_array(tmp_path / "in.zarr", x, (8, 128, 256))
    out = tmp_path / "out.zarr"
    cfg = write_config(
        tmp_path,
        tmp_path / "in.zarr",
        out,
        output={
            "chunks": [1, 128, 256],
            "shards": [8, 128, 256],
            "codec": {"store_raw_below": 0.5},
        },
    )
    assert cli("run", cfg)[0] == 0
    assert np.array_equal(read_array(out), reference(x))
    shards = [f for f in (out / "c").rglob("*") if f.is_file()]
    # 8 frames of 128 KiB (one raw block each) and the shard index (16 bytes a chunk, crc32c)
    assert len(shards) == 3
    assert {f.stat().st_size for f in shards} == {
        8 * codecs.raw_frame(128 * 256 * 4).size + 8 * 16 + 4
    }
    _other_readers_agree(out, reference(x))


@pytest.mark.parametrize(
    "codec, words",
    [
        ({"store_raw_below": 0.1, "checksum": True}, "checksum"),
        ({"store_raw_below": 0.1, "name": "none"}, "name: zstd"),
        ({"store_raw_below": 0}, "must be a number greater than 0 and at most 1 (got 0)"),
        ({"store_raw_below": 1.5}, "must be a number greater than 0 and at most 1 (got 1.5)"),
        ({"store_raw_below": True}, "greater than 0 and at most 1, not true/false"),
    ],
)
def test_store_raw_below_is_checked(tmp_path: Path, cli: Any, codec: dict, words: str) -> None:
    cfg = write_config(
        tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr", output={"codec": codec}
    )
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    assert words in str(info.value) and "output.codec" in str(info.value)
    rc, _, err = cli("run", cfg)
    assert rc != 0 and words in one_line_error(err)
    assert not (tmp_path / "out.zarr").exists()


def test_a_resume_with_another_store_raw_below_is_refused(tmp_path: Path, cli: Any) -> None:
    x = np.random.default_rng(4).standard_normal((16, 32, 32)).astype(np.float32)
    make_array(tmp_path / "in.zarr", x, (4, 32, 32))
    out = tmp_path / "out.zarr"
    first = write_config(
        tmp_path, tmp_path / "in.zarr", out, output={"codec": {"store_raw_below": 0.2}}
    )
    assert cli("run", first)[0] == 0
    other = write_config(tmp_path, tmp_path / "in.zarr", out, name="other.yaml")
    rc, _, err = cli("run", other, "--resume")
    assert rc != 0 and "codec" in one_line_error(err)
    assert np.array_equal(read_array(out), reference(x))


def test_the_plan_says_when_units_may_be_stored_raw(tmp_path: Path, cli: Any) -> None:
    make_array(tmp_path / "in.zarr", np.zeros((8, 8), np.float32), (4, 8))
    for codec, said in (
        ({"store_raw_below": 0.05}, "5%"),
        ({"store_raw_below": 0.001}, "0.1%"),
        ({}, ""),
    ):
        cfg = write_config(
            tmp_path, tmp_path / "in.zarr", tmp_path / "o.zarr", output={"codec": codec}
        )
        rc, out, err = cli("plan", cfg)
        assert rc == 0, err
        text = f"less than {said} is stored as zstd raw blocks"
        assert (text in " ".join(out.split())) is bool(said)
