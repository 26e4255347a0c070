"""A worker's decoding pool: where a local GPU run decodes its input on the CPU, a block's stored
units are read and decoded on several threads of the worker at once (``Source.decode_threads``,
chosen by the plan). The pool's code is the same whatever device the block then goes to, so
these tests drive it on the CPU with a real store written by zarr-python (Zarr v2, Blosc, an
odd fill value, a missing chunk), against what zarr-python reads, to the bit."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numcodecs
import numpy as np
import pytest
import zarr

from pipeline.config import load_config
from pipeline.errors import ChunkError
from pipeline.planning.plan import make_plan
from pipeline.running import tasks
from pipeline.store import grid
from tests.conftest import write_config
from tests.test_plan import MACHINES

SHAPE, CHUNKS, BLOCK = (37, 30, 20), (2, 30, 20), (12, 30, 20)


def _v2_blosc(path: Path) -> np.ndarray:
    """A Zarr v2 array as zarr-python 2 wrote them (Blosc lz4, byte shuffle), fill value
    7.5, with one chunk never written (it reads as the fill value); what zarr-python reads."""
    x = np.random.default_rng(4).standard_normal(SHAPE).astype(np.float32)
    x[0, 0, :3] = [np.nan, np.inf, -0.0]
    z = zarr.create_array(
        store=str(path),
        shape=SHAPE,
        chunks=CHUNKS,
        dtype="float32",
        zarr_format=2,
        compressors=numcodecs.Blosc(cname="lz4", clevel=5, shuffle=1),
        fill_value=7.5,
    )
    z[...] = x
    (path / "5.0.0").unlink()
    return zarr.open_array(str(path), mode="r")[...]


def _source(tmp_path: Path, threads: int):
    cfg = write_config(
        tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr", chunking={"block": list(BLOCK)}
    )
    plan = make_plan(load_config(cfg), MACHINES["cpu"])
    assert plan.source.decode_threads == 1  # a CPU run's task threads already fill the cores
    return dataclasses.replace(plan.source, decode_threads=threads)


@pytest.mark.parametrize("threads", [1, 3, 8])
def test_pooled_blocks_are_what_zarr_reads(tmp_path: Path, threads: int) -> None:
    want = _v2_blosc(tmp_path / "in.zarr")
    src = _source(tmp_path, threads)
    for index in grid.iter_indices(grid.grid_shape(SHAPE, BLOCK)):
        got = tasks.read_block(src, index)
        region = grid.unit_slices(index, BLOCK, SHAPE)
        assert got.shape == want[region].shape
        assert np.array_equal(got.view(np.uint32), want[region].view(np.uint32)), index


def test_the_first_damaged_unit_of_a_block_is_named_after_every_unit_ends(tmp_path: Path) -> None:
    """Two damaged chunks of one block: the error names the first in the block's order (as the
    one-unit-at-a-time read does), and comes once every unit's decode has ended."""
    _v2_blosc(tmp_path / "in.zarr")
    for key in ("4.0.0", "3.0.0"):  # units 2 and 1 of block 0 (rows 8-9 and 6-7)
        (tmp_path / "in.zarr" / key).write_bytes(b"\x02\x01not a blosc frame at all")
    errors = []
    for threads in (1, 4):
        with pytest.raises(ChunkError) as e:
            tasks.read_block(_source(tmp_path, threads), (0, 0, 0))
        errors.append(e.value)
    assert [err.key for err in errors] == ["3.0.0", "3.0.0"]
    assert str(errors[0]) == str(errors[1])


def test_a_pooled_task_counts_its_bytes_and_phases(tmp_path: Path, cli) -> None:
    """A block read by the pool reports the stored bytes it read and time in read and decode,
    like a block read by its own thread, and writes the same output."""
    _v2_blosc(tmp_path / "in.zarr")
    cfg = write_config(
        tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr", chunking={"block": list(BLOCK)}
    )
    rc, _, err = cli("run", cfg)
    assert rc == 0, err
    before = zarr.open_array(str(tmp_path / "out.zarr"), mode="r")[...]
    plan = make_plan(load_config(cfg), MACHINES["cpu"])
    stats = {}
    assert plan.sink.ledger is not None
    plan.sink.ledger.acquire()  # a block is written only under the output's lock, as a run's
    try:
        for threads in (1, 4, 1, 4):  # the first returns this thread's earlier reads' counts
            src = dataclasses.replace(plan.source, decode_threads=threads)
            row = tasks.run_block(src, plan.sink, plan.chain, "cpu", (1, 0, 0)).reshape(-1)
            stats[threads] = dict(zip(tasks.STATS, row.tolist(), strict=True))
    finally:
        plan.sink.ledger.clear()
    stored = sum(
        (tmp_path / "in.zarr" / f"{i}.0.0").stat().st_size
        for i in range(6, 12)
        if (tmp_path / "in.zarr" / f"{i}.0.0").exists()
    )
    for s in stats.values():
        assert s["bytes_read"] == stored
        assert s["elements"] == math.prod(BLOCK)
        assert s["us_read"] + s["us_decode"] > 0
    assert stats[1]["bytes_written"] == stats[4]["bytes_written"]
    after = zarr.open_array(str(tmp_path / "out.zarr"), mode="r")[...]
    assert np.array_equal(before.view(np.uint32), after.view(np.uint32))


def test_pooled_blocks_of_a_tar_archive_are_what_zarr_reads(tmp_path: Path) -> None:
    """A store inside a tar file: a tar archive's members are read through one shared file
    position, so the pool's threads (or a worker's task threads) reading at once got each
    other's bytes, silently where the chunks are stored uncompressed."""
    from tests.storekit import tar_of_uncompressed

    x = np.random.default_rng(3).standard_normal((200, 64)).astype(np.float32)
    url = tar_of_uncompressed(tmp_path, x, (2, 64))
    cfg = write_config(tmp_path, url, tmp_path / "out.zarr", chunking={"block": [40, 64]})
    src = dataclasses.replace(make_plan(load_config(cfg), MACHINES["cpu"]).source, decode_threads=8)
    for _ in range(3):
        for index in grid.iter_indices(grid.grid_shape(x.shape, src.block)):
            got = tasks.read_block(src, index)
            assert np.array_equal(got, x[grid.unit_slices(index, src.block, x.shape)]), index


@pytest.mark.parametrize("shards, pooled", [((256, 8192, 32), False), (None, True)])
def test_a_pool_only_where_a_block_holds_several_units(
    tmp_path: Path, shards: tuple | None, pooled: bool
) -> None:
    """A GPU run decoding Blosc on the CPU: where each block is one stored unit (a 256 MB
    shard here), a block is read by its task's own thread (the pool reads whole units), so
    the plan neither shows nor counts a pool; where blocks hold several chunks, it does.
    Only the metadata is written: the plan reads nothing else."""
    from zarr.codecs import BloscCodec

    from pipeline.planning.rows import describe

    zarr.create_array(
        store=str(tmp_path / "in.zarr"),
        shape=(1024, 8192, 32),
        chunks=(64, 1024, 32),
        shards=shards,
        dtype="float32",
        compressors=BloscCodec(cname="lz4"),
    )
    cfg = write_config(
        tmp_path,
        tmp_path / "in.zarr",
        tmp_path / "out.zarr",
        backend="gpu",
        cluster={"workers": None, "threads_per_worker": None},
    )
    plan = make_plan(load_config(cfg), MACHINES["h200"])
    info = plan.source.info
    most = max(
        len(grid.units_in(i, plan.block, info.unit, info.shape))
        for i in grid.iter_indices(grid.grid_shape(info.shape, plan.block))
    )
    assert plan.decode_on == "cpu"
    assert (most > 1) is pooled
    assert (plan.source.decode_threads > 1) is pooled
    codec_path = dict(describe(plan))["codec path"]
    assert ("threads a worker" in codec_path) is pooled, codec_path


def test_a_pool_of_another_size_replaces_the_last(tmp_path: Path) -> None:
    """A warm worker's next run with another pool size: the blocks are right, and the old
    pool's threads end (with their read buffers) rather than idle beside the new one."""
    import threading
    import time

    want = _v2_blosc(tmp_path / "in.zarr")
    for threads in (3, 5, 3):
        src = _source(tmp_path, threads)
        for index in grid.iter_indices(grid.grid_shape(SHAPE, BLOCK)):
            got = tasks.read_block(src, index)
            region = grid.unit_slices(index, BLOCK, SHAPE)
            assert np.array_equal(got.view(np.uint32), want[region].view(np.uint32)), index

    def decoding() -> int:
        return sum(t.name.startswith("pipeline-decode") for t in threading.enumerate())

    deadline = time.monotonic() + 60
    while decoding() > 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert decoding() <= 3
