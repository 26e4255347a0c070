"""The chunk codecs' checks, on real frames made by numcodecs (zstd, Blosc) and by hand from
RFC 8878 where no encoder makes the case: what passes is what decodes to exactly the chunk,
what fails says why."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import numcodecs
import numpy as np
import pytest
import zarr

from pipeline.store import codecs, shards
from pipeline.store.shards import EMPTY, Damaged, Frames

N = 64 * 1024  # bytes of a chunk


def _payloads() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    smooth = np.sin(np.arange(N // 4) / 50).astype(np.float32).view(np.uint8)
    big = rng.standard_normal(3 * N // 4).astype(np.float32).view(np.uint8)  # several blocks
    return {
        "random": rng.integers(0, 256, N, dtype=np.uint8),
        "smooth": smooth,
        "zeros": np.zeros(N, np.uint8),  # an RLE block
        "big-random": big,
    }


def _frames(checksum: bool) -> list[tuple[str, bytes, int]]:
    z = numcodecs.Zstd(level=3, checksum=checksum)
    return [(name, z.encode(p), p.nbytes) for name, p in _payloads().items()]


def _raw_frame(data: bytes) -> bytes:
    """A valid zstd frame that declares no content size: one raw block, a window descriptor
    instead of a content size field (what streaming encoders write)."""
    assert len(data) < 1 << 17
    window = bytes([(17 - 10) << 3])  # 2**17 bytes
    header = (1 | (0 << 1) | (len(data) << 3)).to_bytes(3, "little")
    return codecs.ZSTD_MAGIC.to_bytes(4, "little") + b"\x00" + window + header + data


@pytest.mark.parametrize("checksum", [False, True])
def test_a_frame_is_measured_from_its_headers(checksum: bool) -> None:
    for name, frame, size in _frames(checksum):
        assert codecs.zstd_frame_size(frame) == len(frame), name
        assert codecs.zstd_content_size(frame) == size, name
        cut = frame[: len(frame) - 3]
        with pytest.raises(Damaged):
            codecs.zstd_frame_size(cut)


def test_check_frames_accepts_whole_frames_back_to_back() -> None:
    frames = [f for _, f, size in _frames(False) if size == N]
    buf = np.frombuffer(b"".join(frames), np.uint8)
    offsets = np.cumsum([0] + [len(f) for f in frames[:-1]]).astype(np.uint64)
    sizes = np.array([len(f) for f in frames], np.uint64)
    # an absent chunk in the middle
    offsets = np.insert(offsets, 1, EMPTY)
    sizes = np.insert(sizes, 1, EMPTY)
    needs_host = codecs.check_frames(buf, Frames(offsets, sizes), "zstd", N)
    assert not needs_host.any() and len(needs_host) == len(frames)


def test_check_frames_names_a_shards_inner_chunk_as_the_other_damage_lines_do() -> None:
    """The GPU path's frame check of one unit names its damaged frame as the CPU's reader
    does, by the inner chunk's coordinates in the shard (it had been "chunk 2: ...", a flat
    index), and an unsharded chunk's by nothing more than the key its line names."""
    z = numcodecs.Zstd(level=1)
    frames = [z.encode(np.full(N, i, np.uint8).tobytes()) for i in range(4)]
    frames[2] = frames[2][: len(frames[2]) - 3]  # cut short
    buf = np.frombuffer(b"".join(frames) + b"\x00" * 64, np.uint8)
    offsets = np.cumsum([0] + [len(f) for f in frames[:-1]]).astype(np.uint64)
    sizes = np.array([len(f) for f in frames], np.uint64)
    with pytest.raises(Damaged) as e:
        codecs.check_frames(buf, Frames(offsets, sizes), "zstd", N, (2, 2))
    assert str(e.value).endswith("(in the shard's inner chunk [1, 0])"), e.value
    assert not str(e.value).startswith("chunk"), e.value
    assert (e.value.problem, e.value.chunk) == ("frame", 2)
    one = Frames(offsets[2:3], sizes[2:3])
    with pytest.raises(Damaged) as e:
        codecs.check_frames(buf, one, "zstd", N, (1, 1))
    assert str(e.value).startswith("its zstd frame"), e.value


def _one(frame: bytes, expected: int = N, size: int | None = None) -> np.ndarray:
    buf = np.frombuffer(frame + b"\x00" * 64, np.uint8)  # bytes past the frame, as in a shard
    n = len(frame) if size is None else size
    f = Frames(np.array([0], np.uint64), np.array([n], np.uint64))
    return codecs.check_frames(buf, f, "zstd", expected)


def test_check_frames_refuses_every_kind_of_damage() -> None:
    z = numcodecs.Zstd(level=1)
    whole = z.encode(_payloads()["random"])
    multi = z.encode(_payloads()["big-random"])
    cases = {  # name: (frame, the problem found)
        "cut": (whole[: len(whole) // 2], "frame"),
        "cut-multi-block": (multi[: len(multi) - 100], "size"),  # it declares more than N
        "short": (z.encode(np.zeros(N // 2, np.uint8)), "size"),
        "long": (z.encode(np.ones(N + 8, np.uint8)), "size"),
        "empty": (b"", "frame"),
        "not-zstd": (b"\x00" * 100, "frame"),
        "header-only": (whole[:6], "frame"),
    }
    for name, (frame, problem) in cases.items():
        with pytest.raises(Damaged) as e:
            _one(frame)
            pytest.fail(f"{name}: not refused")
        assert (e.value.problem, e.value.chunk) == (problem, 0), name
    # a whole frame whose stored size says less than the frame holds
    with pytest.raises(Damaged) as e:
        _one(whole, size=len(whole) - 1)
    assert e.value.problem == "frame"


def test_frames_with_a_checksum_go_to_the_host() -> None:
    frame = numcodecs.Zstd(level=1, checksum=True).encode(_payloads()["smooth"])
    assert _one(frame).tolist() == [True]


def test_frames_that_declare_no_content_size_go_to_the_host() -> None:
    data = np.arange(N, dtype=np.uint8).tobytes()
    frame = _raw_frame(data)
    assert codecs.zstd_content_size(frame) is None
    assert codecs.zstd_frame_size(frame) == len(frame)
    assert bytes(numcodecs.Zstd().decode(frame)) == data
    assert _one(frame).tolist() == [True]


def test_uncompressed_frames_must_be_the_chunk_size() -> None:
    buf = np.zeros(3 * N, np.uint8)
    ok = Frames(np.array([0, N], np.uint64), np.array([N, N], np.uint64))
    assert not codecs.check_frames(buf, ok, "none", N).any()
    bad = Frames(np.array([0, N], np.uint64), np.array([N, N - 4], np.uint64))
    with pytest.raises(Damaged) as e:
        codecs.check_frames(buf, bad, "none", N)
    assert (e.value.problem, e.value.chunk) == ("size", 1)


def _fmt(codec: dict | None, stored: str = "<f4") -> codecs.ChunkFormat:
    import json

    return codecs.ChunkFormat(
        shape=(16, 1024), stored=stored, codecs=(json.dumps(codec),) if codec else ()
    )


@pytest.mark.parametrize("codec", [{"id": "zstd", "level": 1}, {"id": "blosc"}, {"id": "gzip"}])
def test_decode_into_fills_exactly_the_chunk_or_refuses(codec: dict) -> None:
    fmt = _fmt(codec)
    x = np.random.default_rng(1).standard_normal(fmt.shape).astype(np.float32)
    enc = numcodecs.get_codec(codec).encode(x)
    out = np.full(fmt.shape, np.nan, np.float32)
    fmt.decode_into(enc, out)
    assert np.array_equal(out, x)
    half = numcodecs.get_codec(codec).encode(x[: x.shape[0] // 2])
    with pytest.raises(Damaged) as e:
        fmt.decode_into(half, out)
    assert (e.value.problem, e.value.chunk) == ("size", None)


def test_big_endian_chunks_decode_to_native_values() -> None:
    fmt = _fmt({"id": "zstd", "level": 1}, stored=">f4")
    x = np.random.default_rng(2).standard_normal(fmt.shape).astype(">f4")
    out = np.empty(fmt.shape, np.float32)
    fmt.decode_into(numcodecs.Zstd().encode(x), out)
    assert out.dtype == np.float32 and np.array_equal(out, x.astype(np.float32))


def test_a_shard_index_must_point_inside_its_shard() -> None:
    import google_crc32c

    def shard(table: list[list[int]], body: bytes = b"x" * 100) -> bytes:
        index = np.array(table, "<u8").tobytes()
        return body + index + google_crc32c.value(index).to_bytes(4, "little")

    fmt = shards.ShardFormat(index_at_end=True, index_crc32c=True)
    good = shards.shard_frames(shard([[0, 60], [EMPTY, EMPTY], [60, 40]]), 3, fmt)
    assert good.sizes.tolist() == [60, EMPTY, 40]
    for table in (
        [[0, 101], [0, 1], [0, 1]],
        [[100, 1], [0, 1], [0, 1]],
        [[EMPTY, 3], [0, 1], [0, 1]],
    ):
        with pytest.raises(Damaged) as e:
            shards.shard_frames(shard(table), 3, fmt)
        assert (e.value.problem, e.value.chunk) == ("index", 0), table
    raw = bytearray(shard([[0, 60], [60, 40], [0, 1]]))
    raw[-1] ^= 1
    with pytest.raises(Damaged) as e:
        shards.shard_frames(bytes(raw), 3, fmt)
    assert e.value.problem == "index"  # the index's own checksum
    with pytest.raises(Damaged) as e:
        shards.shard_frames(b"short", 3, fmt)
    assert e.value.problem == "index"


def test_damaged_keeps_its_fields_through_pickling() -> None:
    """Workers' errors reach the client pickled."""
    import pickle

    e = pickle.loads(pickle.dumps(Damaged("chunk 2: its zstd frame is cut short", "frame", 2)))
    assert (type(e), e.problem, e.chunk) == (Damaged, "frame", 2)


def _v3(compressor: Any) -> Any:
    """The zarr-python 3 codec that writes what ``compressor`` (numcodecs) writes, natively."""
    from zarr.codecs import BloscCodec, GzipCodec, ZstdCodec

    if isinstance(compressor, numcodecs.Blosc):
        return BloscCodec(cname=compressor.cname, shuffle="shuffle")
    if isinstance(compressor, numcodecs.Zstd):
        return ZstdCodec(level=compressor.level)
    if isinstance(compressor, numcodecs.GZip):
        return GzipCodec()
    if isinstance(compressor, numcodecs.LZ4):  # no native v3 codec: numcodecs' own
        from numcodecs.zarr3 import LZ4

        return LZ4()
    return compressor  # None


@pytest.mark.parametrize("zarr_format", [2, 3])
@pytest.mark.parametrize(
    ("compressor", "costly"),
    [
        (numcodecs.Blosc(cname="lz4", shuffle=1), False),  # zarr-python 2's default
        (numcodecs.Blosc(cname="zstd", shuffle=1), True),
        (numcodecs.Blosc(cname="zlib", shuffle=1), True),
        (numcodecs.Zstd(level=0), True),
        (numcodecs.GZip(), True),
        (numcodecs.LZ4(), False),
        (None, False),
    ],
)
def test_codecs_whose_cpu_decode_is_costly_are_named(
    tmp_path: Path, compressor: Any, costly: bool, zarr_format: int
) -> None:
    """A stored array's chunk format says whether its CPU decode is slow (which makes a GPU
    run's waiting threads leave the cores to it), in either format: a native v3 Blosc codec
    too, whose compressor is in its configuration."""
    from pipeline.store.arrays import describe_array
    from pipeline.store.location import Location

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zarr-python: numcodecs codecs in v3 are unstable
        zarr.create_array(
            store=str(tmp_path / "a.zarr"),
            shape=(8, 8),
            chunks=(4, 8),
            dtype="float32",
            zarr_format=zarr_format,
            compressors=compressor if zarr_format == 2 else _v3(compressor),
        )
        x = np.arange(64, dtype=np.float32).reshape(8, 8)
        zarr.open_array(str(tmp_path / "a.zarr"), mode="r+")[:] = x
    info = describe_array(Location(str(tmp_path / "a.zarr")), "")
    assert info.format is not None
    assert info.format.chunk.costly_decode is costly
    out = np.empty((4, 8), np.float32)
    raw = (tmp_path / "a.zarr" / ("0.0" if zarr_format == 2 else "c/0/0")).read_bytes()
    info.format.chunk.decode_into(raw, out)  # the configuration kept still decodes
    assert np.array_equal(out, x[:4])


def test_a_compressor_written_as_a_v2_filter_counts_as_costly(tmp_path: Path) -> None:
    """A v2 array whose zstd is in its filters (compressor null) decodes as slowly."""
    from pipeline.store.arrays import describe_array
    from pipeline.store.location import Location

    zarr.create_array(
        store=str(tmp_path / "a.zarr"),
        shape=(8, 8),
        chunks=(4, 8),
        dtype="float32",
        zarr_format=2,
        filters=[numcodecs.Zstd(level=1)],
        compressors=None,
    )
    info = describe_array(Location(str(tmp_path / "a.zarr")), "")
    assert info.format is not None and info.format.chunk.costly_decode


# --------------------------------------------------------------------------------------------
# Chunks that numcodecs (and so zarr-python) decodes although they are not one frame of exactly
# the chunk: bytes after a Blosc frame, zstd's skippable frames, zstd frames back to back.


def _chunk(seed: int = 3) -> np.ndarray:
    fmt = _fmt(None)
    return np.random.default_rng(seed).standard_normal(fmt.shape).astype(np.float32)


def _decoded_both_ways(fmt: codecs.ChunkFormat, stored: bytes) -> list[np.ndarray]:
    """The chunk decoded straight into a C-contiguous array and into a strided one (the
    pipeline's two ways: in place, or through numcodecs' own output)."""
    flat = np.full(fmt.shape, np.nan, np.float32)
    fmt.decode_into(stored, flat)
    wide = np.full((fmt.shape[0], 2 * fmt.shape[1]), np.nan, np.float32)
    strided = wide[:, ::2]
    fmt.decode_into(stored, strided)
    return [flat, strided]


@pytest.mark.parametrize(
    "blosc",
    [
        numcodecs.Blosc(cname="lz4", shuffle=1),
        numcodecs.Blosc(cname="zstd", shuffle=2),
        numcodecs.Blosc(cname="blosclz", clevel=0),  # stored as it is, inside the frame
    ],
    ids=["lz4", "zstd-bitshuffle", "clevel0"],
)
@pytest.mark.parametrize("trailer", [b"\x00", b"\x00" * 16, b"trailing bytes"])
def test_bytes_after_a_blosc_frame_are_ignored_as_numcodecs_ignores_them(
    blosc: Any, trailer: bytes
) -> None:
    x = _chunk()
    stored = blosc.encode(x) + trailer
    want = np.frombuffer(numcodecs.Blosc().decode(stored), np.float32).reshape(x.shape)
    assert np.array_equal(want, x)  # numcodecs reads past nothing and ignores the trailer
    for got in _decoded_both_ways(_fmt({"id": "blosc"}), stored):
        assert got.tobytes() == want.tobytes()


def test_a_blosc_header_that_says_more_bytes_than_are_stored_is_damage() -> None:
    """c-blosc would read past the stored bytes (numcodecs gives it no length)."""
    frame = numcodecs.Blosc(cname="lz4").encode(_chunk())
    for stored in (frame[:-1], frame[: len(frame) // 2]):
        with pytest.raises(Damaged) as e:
            _fmt({"id": "blosc"}).decode_into(stored, np.empty(_fmt(None).shape, np.float32))
        assert e.value.problem == "frame"


#: A zstd skippable frame (RFC 8878, 3.1.2) of 5 bytes of user data, magic 0x184D2A53.
SKIPPABLE = (0x184D2A53).to_bytes(4, "little") + (5).to_bytes(4, "little") + b"notes"


def _zstd_chunks() -> dict[str, bytes]:
    """Chunks of ``_chunk()`` that are not one zstd frame of it, which numcodecs decodes."""
    raw = _chunk().tobytes()
    z, zc = numcodecs.Zstd(level=1), numcodecs.Zstd(level=1, checksum=True)
    third = len(raw) // 3
    return {
        "skippable-first": SKIPPABLE + z.encode(raw),
        "skippable-after": z.encode(raw) + SKIPPABLE,
        "two-frames": z.encode(raw[:third]) + z.encode(raw[third:]),
        "frames-and-skippable-between": z.encode(raw[:third]) + SKIPPABLE + zc.encode(raw[third:]),
        "empty-frame-first": z.encode(b"") + z.encode(raw),
        "empty-frame-after": z.encode(raw) + z.encode(b""),
        "no-content-size-then-frame": _raw_frame(raw[:third]) + z.encode(raw[third:]),
    }


@pytest.mark.parametrize("name", list(_zstd_chunks()))
def test_zstd_chunks_of_several_frames_decode_as_numcodecs_decodes_them(name: str) -> None:
    stored = _zstd_chunks()[name]
    want = bytes(numcodecs.Zstd().decode(stored))
    assert want == _chunk().tobytes()
    for got in _decoded_both_ways(_fmt({"id": "zstd", "level": 1}), stored):
        assert got.tobytes() == want


def _refused_by_numcodecs() -> dict[str, tuple[bytes, str]]:
    """Chunks numcodecs refuses (or decodes to other than the chunk), with the problem the
    pipeline names."""
    raw = _chunk().tobytes()
    z = numcodecs.Zstd(level=1)
    return {
        "junk-after-frame": (z.encode(raw) + b"\x00\x01\x02", "codec"),
        "skippable-only": (SKIPPABLE, "codec"),
        "two-frames-short": (z.encode(raw[:100]) + z.encode(raw[200:]), "size"),
        "two-frames-long": (z.encode(raw) + z.encode(raw[:8]), "codec"),
        "skippable-cut": (SKIPPABLE[:-1] + z.encode(raw), "codec"),
    }


@pytest.mark.parametrize("name", list(_refused_by_numcodecs()))
def test_zstd_chunks_numcodecs_refuses_are_damage(name: str) -> None:
    stored, problem = _refused_by_numcodecs()[name]
    try:
        decoded = bytes(numcodecs.Zstd().decode(stored))
    except Exception:
        decoded = None
    assert decoded != _chunk().tobytes()  # what zarr-python gets: an error, or other bytes
    fmt = _fmt({"id": "zstd", "level": 1})
    with pytest.raises(Damaged) as e:
        fmt.decode_into(stored, np.empty(fmt.shape, np.float32))
    assert e.value.problem == problem


def test_check_frames_sends_chunks_of_several_zstd_frames_to_the_host() -> None:
    """nvCOMP decodes one frame per chunk: chunks of more than one frame, a skippable one
    among them, or bytes after the frame, go to the host, where numcodecs decodes them as
    zarr-python does (or refuses them, as above); plain frames beside them still go to the
    GPU."""
    nbytes = _chunk().nbytes
    plain = numcodecs.Zstd(level=1).encode(_chunk())
    cases = {**_zstd_chunks(), **{k: v for k, (v, _) in _refused_by_numcodecs().items()}}
    stored = [plain, *cases.values(), plain]
    buf = np.frombuffer(b"".join(stored), np.uint8)
    sizes = np.array([len(s) for s in stored], np.uint64)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.uint64)
    host = codecs.check_frames(buf, Frames(offsets, sizes), "zstd", nbytes)
    assert host.tolist() == [False] + [True] * len(cases) + [False], list(cases)


@pytest.mark.parametrize("at_end", [True, False])
def test_a_shard_index_pointing_into_its_own_index_says_so(at_end: bool) -> None:
    """An index entry whose bytes are the index's own (review 41): refused as before, but
    said to point into the shard's index, not outside the shard, which it is not."""
    import google_crc32c

    def shard(table: list[list[int]]) -> bytes:
        index = np.array(table, "<u8").tobytes()
        index += google_crc32c.value(index).to_bytes(4, "little")
        return b"x" * 100 + index if at_end else index + b"x" * 100

    k = 2 * 16 + 4
    fmt = shards.ShardFormat(index_at_end=at_end, index_crc32c=True)
    inside = [0, 60] if at_end else [k, 60]
    into = [100, 16] if at_end else [4, 16]  # within the shard, over its index
    with pytest.raises(Damaged) as e:
        shards.shard_frames(shard([inside, into]), 2, fmt)
    said = str(e.value)
    assert (e.value.problem, e.value.chunk) == ("index", 1), said
    assert "into the shard's own index" in said and "outside" not in said, said
    with pytest.raises(Damaged) as e:  # past the shard's end: outside, as before
        shards.shard_frames(shard([inside, [130, 16]]), 2, fmt)
    assert "outside the shard" in str(e.value), e.value


def _zarr_shards(path: Path, index_location: str, **config: Any) -> tuple[Any, np.ndarray]:
    """A zarr-python 3 array of 8 x 12 float32 in shards of 2 x 2 uncompressed chunks, its
    index bytes alone (no crc32c) at the shard's ``index_location``, its first chunk the fill
    value 0 (an inner chunk zarr-python leaves absent, unless ``write_empty_chunks``); (the
    array, its data)."""
    from zarr.codecs import BytesCodec, ShardingCodec

    x = np.arange(1, 97, dtype=np.float32).reshape(8, 12)
    x[:2, :3] = 0
    z = zarr.create_array(
        str(path),
        shape=x.shape,
        chunks=(4, 6),
        dtype="float32",
        fill_value=0,
        serializer=ShardingCodec(
            chunk_shape=(2, 3), index_codecs=[BytesCodec()], index_location=index_location
        ),
        compressors=None,
        config=config,
    )
    z[...] = x
    return z, x


def _index_table(raw: bytes, at_end: bool, n: int = 4) -> tuple[np.ndarray, int]:
    """A shard's index of ``n`` chunks (bytes alone) as an (n, 2) table, and its size."""
    k = 16 * n
    return np.frombuffer(raw[-k:] if at_end else raw[:k], "<u8").reshape(n, 2).copy(), k


def _with_index(raw: bytes, table: np.ndarray, at_end: bool) -> bytes:
    index = table.astype("<u8").tobytes()
    return raw[: -len(index)] + index if at_end else index + raw[len(index) :]


@pytest.mark.parametrize("index_location", ["end", "start"])
@pytest.mark.parametrize("write_empty_chunks", [False, True])
def test_the_shards_zarr_python_and_tensorstore_write_pass_the_index_checks(
    tmp_path: Path, index_location: str, write_empty_chunks: bool
) -> None:
    """What writers make is never called damage by the index checks that find a damaged
    shard's (below): zarr-python's shards, an inner chunk of the fill value absent or stored
    (``write_empty_chunks``), rewritten in part; tensorstore's, written in part, an inner chunk
    set back to the fill value; and the spec's allowances, bytes between frames that no entry
    names (an append-only writer's earlier frames) and one frame named by two entries."""
    ts = pytest.importorskip("tensorstore")
    at_end = index_location == "end"
    z, _ = _zarr_shards(tmp_path / "z.zarr", index_location, write_empty_chunks=write_empty_chunks)
    z[5:8, 7:12] = 7.0  # a part of a shard rewritten: zarr-python writes the shard anew
    made = sorted((tmp_path / "z.zarr").rglob("*"))
    stored = [p for p in made if p.is_file() and p.name != "zarr.json"]
    fmt = shards.ShardFormat(index_at_end=at_end, index_crc32c=False)
    assert len(stored) == 4, stored
    for p in stored:
        shards.shard_frames(p.read_bytes(), 4, fmt)
    path = tmp_path / "ts.zarr"
    sharding = {
        "chunk_shape": [2, 3],
        "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}],
        "index_codecs": [{"name": "bytes", "configuration": {"endian": "little"}}],
        "index_location": index_location,
    }
    spec = {
        "driver": "zarr3",
        "kvstore": {"driver": "file", "path": str(path)},
        "metadata": {
            "shape": [8, 12],
            "data_type": "float32",
            "fill_value": 0,
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [4, 6]}},
            "codecs": [{"name": "sharding_indexed", "configuration": sharding}],
        },
    }
    t = ts.open(spec, create=True).result()
    t[:3, :8].write(np.ones((3, 8), np.float32)).result()
    t[:2, :3].write(np.zeros((2, 3), np.float32)).result()  # an inner chunk back to the fill
    written = [p for p in sorted(path.rglob("*")) if p.is_file() and p.name != "zarr.json"]
    assert len(written) == 2, written  # shards of the first row only
    for p in written:
        shards.shard_frames(p.read_bytes(), 4, fmt)
    raw = (tmp_path / "z.zarr" / "c" / "1" / "1").read_bytes()
    table, k = _index_table(raw, at_end)
    body = raw[:-k] if at_end else raw[k:]
    gap = b"stale frame"
    spaced = table.copy()
    spaced[:, 0] += len(gap)  # every frame after bytes no entry names
    index = spaced.astype("<u8").tobytes()
    shards.shard_frames(gap + body + index if at_end else index + gap + body, 4, fmt)
    twice = table.copy()
    twice[1] = twice[0]  # chunk 1 names chunk 0's frame
    got = shards.shard_frames(_with_index(raw, twice, at_end), 4, fmt)
    assert got.offsets.tolist()[:2] == [table[0, 0]] * 2, got


@pytest.mark.parametrize("index_location", ["end", "start"])
def test_a_shard_whose_index_says_every_chunk_is_absent_over_stored_bytes_is_damage(
    tmp_path: Path, index_location: str
) -> None:
    """h60f: a zarr-python shard whose index (bytes alone, no crc32c to catch it) was
    overwritten with every entry absent, its chunks' bytes still stored: zarr-python reads the
    shard as the fill value without an error, and so had the run, the output marked complete,
    and verify passed it. No writer makes such a shard (zarr-python, tensorstore and zarrs
    delete a shard whose chunks are all the fill value): its index is damaged."""
    at_end = index_location == "end"
    z, x = _zarr_shards(tmp_path / "a.zarr", index_location)
    unit = tmp_path / "a.zarr" / "c" / "0" / "1"
    raw = unit.read_bytes()
    table, k = _index_table(raw, at_end)
    unit.write_bytes(_with_index(raw, np.full_like(table, EMPTY), at_end))
    assert np.all(z[:4, 6:] == 0) and np.any(x[:4, 6:] != 0)  # zarr-python: the fill value
    fmt = shards.ShardFormat(index_at_end=at_end, index_crc32c=False)
    with pytest.raises(Damaged) as e:
        shards.shard_frames(unit.read_bytes(), 4, fmt)
    said = str(e.value)
    assert e.value.problem == "index" and "every chunk is absent" in said, said
    assert f"{len(raw) - k} bytes besides its {k}-byte index" in said, said
    alone = np.full_like(table, EMPTY).astype("<u8").tobytes()  # the index, and nothing else
    assert shards.shard_frames(alone, 4, fmt).sizes.tolist() == [EMPTY] * 4


@pytest.mark.parametrize("index_location", ["end", "start"])
def test_a_shard_whose_index_gives_chunks_overlapping_bytes_is_damage(
    tmp_path: Path, index_location: str
) -> None:
    """h60f: a zarr-python shard of uncompressed chunks whose index (no crc32c) was changed
    to start one chunk's frame inside another's: zarr-python reads both from those bytes
    without an error, the second chunk wrong. No writer lays frames over one another: the
    index is damaged, the chunk it names the later one's."""
    at_end = index_location == "end"
    z, x = _zarr_shards(tmp_path / "a.zarr", index_location)
    unit = tmp_path / "a.zarr" / "c" / "0" / "1"
    raw = unit.read_bytes()
    table, _ = _index_table(raw, at_end)
    first = int(np.argmin(table[:, 0]))
    later = int(np.argsort(table[:, 0])[1])
    table[later, 0] = table[first, 0] + 8  # inside the first frame, its size kept
    unit.write_bytes(_with_index(raw, table, at_end))
    assert not np.array_equal(z[:4, 6:], x[:4, 6:])  # zarr-python: no error, wrong values
    fmt = shards.ShardFormat(index_at_end=at_end, index_crc32c=False)
    with pytest.raises(Damaged) as e:
        shards.shard_frames(unit.read_bytes(), 4, fmt)
    said = str(e.value)
    assert (e.value.problem, e.value.chunk) == ("index", later), said
    a, b = sorted((first, later))
    assert f"gives chunks {a} and {b} overlapping bytes" in said, said


@pytest.mark.parametrize(
    "checksum",
    [numcodecs.Fletcher32(), numcodecs.JenkinsLookup3(), numcodecs.CRC32(), numcodecs.Adler32()],
    ids=lambda c: c.codec_id,
)
def test_a_checksum_mismatch_is_said_in_one_line(checksum: Any) -> None:
    """numcodecs' Fletcher32 error holds a newline (review 41: the run's line spanned two):
    the damage is said in one line, in the run's words (h63b: numcodecs' own, "Stored and
    computed crc32 checksum do not match. Stored: ...", had been quoted), as a checksum's."""
    x = np.ones((4, 4), "<f8")
    raw = bytearray(checksum.encode(x.tobytes()))
    raw[20] ^= 1
    fmt = codecs.ChunkFormat(
        shape=(4, 4), stored="<f8", codecs=(codecs._json(checksum.get_config()),)
    )
    with pytest.raises(Damaged) as e:
        fmt.decode_into(bytes(raw), np.empty((4, 4), "<f8"))
    assert e.value.problem == "checksum" and "\n" not in str(e.value), repr(str(e.value))
    assert str(e.value) == f"its {checksum.codec_id} checksum does not match", str(e.value)


def _handed_on_layouts() -> dict[str, dict[str, Any]]:
    """zarr-python 3 arrays (of 12 x 20 float32, chunks 4 x 5, the first rows zeros: chunks
    and inner chunks of the fill value are not stored) whose units' check decodes codecs that
    Zarr would decode again: over each Blosc frame, or over a whole shard."""
    import numcodecs.zarr3
    from zarr.codecs import (
        BloscCodec,
        BytesCodec,
        Crc32cCodec,
        GzipCodec,
        ShardingCodec,
        ZstdCodec,
    )

    def blosc() -> Any:
        return BloscCodec(cname="lz4", shuffle="shuffle")

    def delta() -> Any:
        return numcodecs.zarr3.Delta(dtype="<f4")

    def shards_of(inner: list[Any], **kw: Any) -> Any:
        return ShardingCodec(chunk_shape=(4, 5), codecs=inner, **kw)

    big_index = [BytesCodec(endian="big"), Crc32cCodec()]
    return {
        "v3-delta-blosc-zstd-crc32c": dict(
            filters=[delta()], compressors=[blosc(), ZstdCodec(), Crc32cCodec()]
        ),
        "v3-delta-blosc-gzip": dict(filters=[delta()], compressors=[blosc(), GzipCodec()]),
        "v3-shard-compressed-whole": dict(
            chunks=(8, 10), serializer=shards_of([BytesCodec(), blosc()]), compressors=ZstdCodec()
        ),
        "v3-shard-delta-blosc-zstd-index-at-start": dict(
            chunks=(8, 10),
            serializer=shards_of(
                [delta(), BytesCodec(), blosc(), ZstdCodec()], index_location="start"
            ),
            compressors=None,
        ),
        "v3-shard-blosc-gzip-big-endian-index": dict(
            chunks=(8, 10),
            serializer=shards_of([BytesCodec(), blosc(), GzipCodec()], index_codecs=big_index),
            compressors=None,
        ),
        "v3-shards-in-shards-blosc-zstd": dict(
            chunks=(8, 10),
            serializer=ShardingCodec(
                chunk_shape=(4, 10),
                codecs=[shards_of([BytesCodec(), blosc(), ZstdCodec()])],
            ),
            compressors=GzipCodec(),
        ),
        "v2-blosc-filter-zstd": dict(
            zarr_format=2,
            filters=[numcodecs.Blosc(cname="lz4")],
            compressors=numcodecs.Zstd(),
        ),
        "v2-delta-blosc-filters-gzip": dict(
            zarr_format=2,
            filters=[numcodecs.Delta(dtype="<f4"), numcodecs.Blosc()],
            compressors=numcodecs.GZip(),
        ),
    }


_HANDED_ON = [
    "v3-delta-blosc-zstd-crc32c",
    "v3-delta-blosc-gzip",
    "v3-shard-compressed-whole",
    "v3-shard-delta-blosc-zstd-index-at-start",
    "v3-shard-blosc-gzip-big-endian-index",
    "v3-shards-in-shards-blosc-zstd",
    "v2-blosc-filter-zstd",
    "v2-delta-blosc-filters-gzip",
]


@pytest.mark.parametrize("layout", _HANDED_ON)
def test_zarr_reads_the_units_a_check_hands_on_as_it_reads_the_store(
    tmp_path: Path, layout: str
) -> None:
    """h57c: the check of an input only Zarr decodes decodes the codecs over each Blosc frame
    (or over a whole shard) to reach the frame, and Zarr had decoded them all again: the check
    now hands its bytes on (:func:`codecs.check_unit`), and Zarr reads them under the chain
    less those codecs (:func:`arrays.array_over_units`), bit for bit what it reads from the
    store, without one of the codecs the check decoded left to decode again."""
    from pipeline.store import arrays, grid

    x = np.arange(240, dtype=np.float32).reshape(12, 20) / 7
    x[:4] = 0  # chunks of the fill value: absent chunks, absent inner chunks
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numcodecs.* codecs are not in the spec
        kw = dict(_handed_on_layouts()[layout])
        kw.setdefault("chunks", (4, 5))
        z = zarr.create_array(str(tmp_path / "a.zarr"), shape=x.shape, dtype="float32", **kw)
        z[...] = x
        doc = z.metadata.to_dict()
    check = codecs.unit_check(doc, np.dtype("float32"))
    assert check is not None and check.strips, check
    unit = tuple(kw["chunks"])
    units = {}
    for index in grid.iter_indices(grid.grid_shape(x.shape, unit)):
        key = z.metadata.encode_chunk_key(index)
        path = tmp_path / "a.zarr" / key
        raw = path.read_bytes() if path.exists() else None
        checked = codecs.check_unit(raw, unit, check)
        if checked is not None:
            units[key] = checked
    assert len(units) < math.prod(grid.grid_shape(x.shape, unit)) or "shard" in layout
    got = arrays.array_over_units(z, "", check, units)[...]
    assert np.array_equal(got.view(np.uint32), z[...].view(np.uint32))
    assert np.array_equal(got, x)
    left = _chunk_codecs(codecs.stripped_document(doc, check))
    assert left[-1] == "blosc" and not {"zstd", "gzip", "crc32c"} & set(left), left


def _chunk_codecs(doc: dict[str, Any]) -> list[str]:
    """The names of the codecs a metadata document's chunks are decoded by, shards' inner
    chunks' too (their index's not), in encode order."""
    if doc.get("zarr_format") == 2:
        return [c["id"] for c in [*(doc["filters"] or []), doc["compressor"]] if c]
    names: list[str] = []
    for c in doc["codecs"]:
        if c["name"] == "sharding_indexed":
            names += _chunk_codecs({"codecs": c["configuration"]["codecs"]})
        else:
            names.append(c["name"])
    return names
