"""Chunk geometry (store/grid.py) and the shard index (store/shards.py): chunk-major order,
slabs, shard indexes, edge chunks."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.store import grid, shards


@pytest.mark.parametrize(
    ("unit", "chunk"), [((4, 6, 8), (2, 3, 4)), ((8,), (2,)), ((6, 10), (1, 10)), ((6, 10), (3, 5))]
)
def test_frames_round_trip(xp, unit, chunk) -> None:
    b = xp.arange(int(np.prod(unit))).reshape(unit)
    flat = grid.unit_to_frames(b, chunk)
    assert flat.shape == (b.size,)
    first = flat[: int(np.prod(chunk))].reshape(chunk)
    assert bool((first == b[tuple(slice(0, c) for c in chunk)]).all())
    assert bool((grid.frames_to_unit(flat, unit, chunk) == b).all())


def test_slab_layout_needs_no_reordering() -> None:
    assert grid.is_slab((64, 1024, 1024), (1, 32, 1024))
    assert grid.is_slab((8, 8), (4, 8))
    assert not grid.is_slab((8, 8), (4, 4))
    b = np.arange(6 * 10).reshape(6, 10)
    flat = grid.unit_to_frames(b, (2, 10))
    assert np.shares_memory(flat, b)


def test_shard_index_round_trip_and_checksum() -> None:
    offsets = np.array([0, 100, shards.EMPTY], dtype=np.uint64)
    sizes = np.array([100, 50, shards.EMPTY], dtype=np.uint64)
    raw = shards.encode_index(offsets, sizes)
    assert len(raw) == shards.index_nbytes(3)
    o, s = shards.decode_index(raw, 3)
    assert o.tolist() == offsets.tolist() and s.tolist() == sizes.tolist()
    damaged = bytearray(raw)
    damaged[3] ^= 1
    with pytest.raises(shards.Damaged) as e:
        shards.decode_index(bytes(damaged), 3)
    assert e.value.problem == "index"


def test_present_mask_leaves_out_chunks_past_the_edge() -> None:
    # array of 10 rows, shards of 8 rows in chunks of 2: the second shard holds rows 8-9 only
    assert grid.present_mask((1,), (8,), (2,), (10,)).tolist() == [True, False, False, False]
    assert grid.present_mask((0,), (8,), (2,), (10,)).all()
    m = grid.present_mask((1, 0), (4, 4), (2, 2), (5, 3))
    assert m.tolist() == [True, True, False, False]
