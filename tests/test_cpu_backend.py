"""The CPU backend's block path: the chain over a block the task owns, and its zstd frames
packed into the thread's reused buffer; every value bit for bit what NumPy and numcodecs give."""

from __future__ import annotations

import numcodecs
import numpy as np
import pytest

from pipeline.devices.base import Encoding
from pipeline.devices.cpu import CpuBackend, zstd_bound
from pipeline.ops import stages
from pipeline.store.shards import EMPTY


def _chain(dtype: str) -> tuple[stages.BoundStage, ...]:
    specs = [
        ("multiply", stages.MultiplyParams(factor=5)),
        ("square", stages.StageParams()),
        ("add", stages.AddParams()),
    ]
    return stages.plan_chain(specs, np.dtype(dtype))


def test_an_owned_block_is_written_over_with_numpys_values() -> None:
    x = np.random.default_rng(0).standard_normal((3, 70, 1000)).astype(np.float32)
    x[0, 0, :4] = [np.nan, np.inf, -np.inf, -0.0]
    chain = _chain("float32")
    want = stages.apply_chain(chain, x)
    be = CpuBackend()
    kept = x.copy()
    y = be.apply_chain(chain, kept)  # not owned: a new array, the block left as it was
    assert y is not kept and np.array_equal(kept.view(np.uint32), x.view(np.uint32))
    owned = x.copy()
    z = be.apply_chain(chain, owned, owned=True)
    assert z is owned  # no second block
    for got in (y, z):
        assert got.dtype == want.dtype
        assert np.array_equal(got.view(np.uint32), want.view(np.uint32))


def test_an_owned_block_whose_dtype_the_chain_changes_gets_a_new_array() -> None:
    x = np.arange(-300, 300, dtype=np.int16).reshape(20, 30)
    chain = _chain("int16")  # promoted: the square does not fit int16
    y = CpuBackend().apply_chain(chain, x, owned=True)
    assert y is not x and y.dtype == chain[-1].out_dtype != x.dtype
    assert np.array_equal(y, stages.apply_chain(chain, x))
    assert np.array_equal(x, np.arange(-300, 300, dtype=np.int16).reshape(20, 30))


@pytest.mark.parametrize("nbytes", [1, 100, 4000, 100_000, 128 << 10, 1 << 20])
def test_zstd_bound_holds_a_frame_of_noise(nbytes: int) -> None:
    noise = np.random.default_rng(nbytes).integers(0, 256, nbytes, dtype=np.uint8)
    for level in (1, 3, -5):
        assert len(numcodecs.Zstd(level=level).encode(noise)) <= zstd_bound(nbytes)


def test_zstd_frames_are_packed_back_to_back_in_one_reused_buffer() -> None:
    n_chunks, chunk = 12, 25_000  # float32 elements a chunk: frames of 100,000 bytes
    rng = np.random.default_rng(1)
    values = rng.standard_normal(n_chunks * chunk).astype(np.float32)
    values[: 3 * chunk] = 1.0  # some frames compress well, the rest hardly
    present = np.ones(n_chunks, bool)
    present[4] = False  # an absent chunk keeps its place
    be = CpuBackend()
    parts, sizes = be.encode_frames(values, n_chunks, present, Encoding("zstd", 1, False, None))
    assert len(parts) == 1  # one write, not a part per frame
    body = bytes(memoryview(parts[0]))
    assert sizes[4] == EMPTY and len(body) == int(sizes[sizes != EMPTY].sum())
    at = 0
    raw = values.view(np.uint8).reshape(n_chunks, -1)
    for i in np.flatnonzero(present):
        frame = body[at : at + int(sizes[i])]
        at += int(sizes[i])
        assert frame == numcodecs.Zstd(level=1).encode(raw[i])  # numcodecs' own frame
        assert numcodecs.Zstd().decode(frame) == raw[i].tobytes()
    again, _ = be.encode_frames(values, n_chunks, present, Encoding("zstd", 1, False, None))
    first = np.frombuffer(parts[0], np.uint8)
    assert np.shares_memory(first, np.frombuffer(again[0], np.uint8))  # the thread's buffer


def test_frames_stored_raw_or_uncompressed_are_not_copied() -> None:
    n_chunks, chunk = 6, 32 * 1024
    values = np.random.default_rng(2).standard_normal(n_chunks * chunk).astype(np.float32)
    present = np.ones(n_chunks, bool)
    be = CpuBackend()
    for enc in (Encoding("zstd", 1, False, 0.5), Encoding("none", 1, False, None)):
        parts, sizes = be.encode_frames(values, n_chunks, present, enc)
        body = b"".join(bytes(memoryview(p)) for p in parts)
        assert len(body) == int(sizes.sum())
        if enc.codec == "none":
            assert body == values.tobytes()
        else:  # zstd frames of raw blocks: decoded as numcodecs decodes them
            ends = np.cumsum(sizes.astype(np.int64))
            starts = [0, *ends[:-1]]
            got = [numcodecs.Zstd().decode(body[a:b]) for a, b in zip(starts, ends, strict=True)]
            assert b"".join(got) == values.tobytes()
