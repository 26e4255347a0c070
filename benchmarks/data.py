"""The benchmarks' inputs, written by the tools people write Zarr with.

The field workloads hold one array: float32 ``[N, ny, nx]``, a smooth field (a travelling wave)
plus noise, in chunks ``[4, ny, nx]`` (16 MB at ``1000 x 1000``), stored as

* ``v2-blosc``: Zarr v2, Blosc lz4 with byte shuffle (zarr-python 2's default compressor),
  written by zarr-python 3 with ``zarr_format=2``;
* ``v3-zstd``: Zarr v3 as zarr-python 3 writes it by default (``bytes`` + ``zstd``, unsharded);
* ``xarray``: the variable ``field`` of a Dataset written by xarray's ``Dataset.to_zarr``.

The ``synthetic`` workload is the pipeline's own input format: random normal float32, sharded,
128 KiB zstd chunks, made by ``pipeline generate``'s code. Every value depends only on its
position and the seed, so the field stores hold the same values.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import rawzarr

#: Planes per chunk of the field workloads (16 MB chunks of 1000 x 1000 float32).
FIELD_PLANES = 4


@dataclass
class Workload:
    """One input: where it is and what it is."""

    key: str
    title: str
    store: Path
    array: str = ""
    codec: str = ""
    """how its chunks are compressed, in a few words"""
    output_codec: dict[str, Any] = field(default_factory=dict)
    """the run's ``output.codec`` settings beyond the defaults"""
    shares: str = ""
    """the workload whose input this is too: its ceilings and peers are this one's (measured
    once)"""

    def stored(self) -> rawzarr.StoredArray:
        """The array, read from its files with numcodecs."""
        return rawzarr.open_array(self.store, self.array)

    def describe(self) -> dict[str, Any]:
        a = self.stored()
        return {
            "key": self.key,
            "title": self.title,
            "store": str(self.store),
            "array": self.array,
            "codec": self.codec,
            "output_codec": self.output_codec,
            "shares": self.shares,
            "shape": list(a.shape),
            "unit": list(a.chunk),
            "nbytes": a.nbytes,
            "stored_bytes": a.stored_bytes(),
        }


def field_shape(size_gb: float, ny: int = 1000, nx: int = 1000) -> tuple[list[int], list[int]]:
    """(shape, chunks) of a field of about ``size_gb`` GB: whole chunks of
    :data:`FIELD_PLANES` planes of ``ny x nx``."""
    plane = ny * nx * 4
    n = max(FIELD_PLANES, round(size_gb * 1e9 / plane / FIELD_PLANES) * FIELD_PLANES)
    return [n, ny, nx], [FIELD_PLANES, ny, nx]


def field_values(t0: int, t1: int, ny: int, nx: int, seed: int = 0) -> np.ndarray:
    """Planes ``t0..t1`` of the field: ``sin(x + 0.02 t) cos(y - 0.02 t)`` on a ``ny x nx``
    grid, plus normal noise of standard deviation 0.01 drawn from ``(seed, t)``; float32."""
    y = np.linspace(0, 4 * np.pi, ny, dtype=np.float32)[:, None]
    x = np.linspace(0, 6 * np.pi, nx, dtype=np.float32)[None, :]
    out = np.empty((t1 - t0, ny, nx), np.float32)
    for k, t in enumerate(range(t0, t1)):
        phase = np.float32(0.02 * t)
        rng = np.random.default_rng([seed, t])
        rng.standard_normal((ny, nx), dtype=np.float32, out=out[k])
        out[k] *= np.float32(0.01)
        out[k] += np.sin(x + phase) * np.cos(y - phase)
    return out


def make_field(shape: list[int], threads: int) -> np.ndarray:
    """The whole field (:func:`field_values`), made on ``threads`` threads (NumPy's generators
    release the GIL)."""
    n, ny, nx = shape
    out = np.empty(shape, np.float32)
    step = max(1, -(-n // (4 * threads)))

    def one(t0: int) -> None:
        t1 = min(n, t0 + step)
        out[t0:t1] = field_values(t0, t1, ny, nx)

    with ThreadPoolExecutor(threads) as ex:
        list(ex.map(one, range(0, n, step)))
    return out


def _write_slabs(z: Any, values: np.ndarray, planes: int, threads: int) -> None:
    """Write ``values`` into the zarr array ``z``, ``planes`` planes per write, ``threads``
    writes at once (zarr-python encodes each write's chunks on its own threads)."""
    n = values.shape[0]

    def one(t0: int) -> None:
        z[t0 : t0 + planes] = values[t0 : t0 + planes]

    with ThreadPoolExecutor(threads) as ex:
        list(ex.map(one, range(0, n, planes)))


def write_v2_blosc(root: Path, values: np.ndarray, chunks: list[int], threads: int) -> Workload:
    """The field as zarr-python 2 wrote it by default (Blosc lz4, byte shuffle, level 5),
    written by zarr-python 3 with ``zarr_format=2``."""
    import numcodecs
    import zarr

    path = root / "v2-blosc.zarr"
    blosc = numcodecs.Blosc(cname="lz4", clevel=5, shuffle=numcodecs.Blosc.SHUFFLE)
    z = zarr.create_array(
        str(path),
        shape=values.shape,
        chunks=tuple(chunks),
        dtype="float32",
        zarr_format=2,
        compressors=blosc,
    )
    _write_slabs(z, values, 4 * chunks[0], threads)
    return Workload(
        "v2-blosc",
        "Zarr v2, Blosc lz4 + shuffle (zarr-python 2 default)",
        path,
        codec=f"blosc lz4, shuffle, {_mb(chunks)} chunks",
    )


def write_v3_default(root: Path, values: np.ndarray, chunks: list[int], threads: int) -> Workload:
    """The field as zarr-python 3 writes it by default: Zarr v3, ``bytes`` + ``zstd``,
    unsharded."""
    import zarr

    path = root / "v3-zstd.zarr"
    z = zarr.create_array(str(path), shape=values.shape, chunks=tuple(chunks), dtype="float32")
    _write_slabs(z, values, 4 * chunks[0], threads)
    return Workload(
        "v3-zstd",
        "Zarr v3, zarr-python 3 default (zstd)",
        path,
        codec=f"zstd (zarr-python default level), {_mb(chunks)} chunks",
    )


def write_xarray(root: Path, values: np.ndarray, chunks: list[int]) -> Workload:
    """The field as the variable ``field`` of an xarray Dataset (with a ``time`` coordinate),
    written by ``Dataset.to_zarr`` with its defaults from a Dask array of ``chunks`` (Dask's
    threads)."""
    import dask
    import dask.array as da
    import xarray as xr

    ds = xr.Dataset(
        {"field": (("time", "y", "x"), da.from_array(values, chunks=chunks), {"units": "1"})},
        coords={"time": np.arange(values.shape[0])},
        attrs={"title": "pipeline benchmark field"},
    )
    path = root / "xarray.zarr"
    with warnings.catch_warnings(), dask.config.set(scheduler="threads"):
        # zarr-python says consolidated metadata is not in the v3 spec: xarray's default
        warnings.simplefilter("ignore", UserWarning)
        ds.to_zarr(str(path), mode="w")
    a = rawzarr.open_array(path, "field")
    fmt = "v3" if (path / "field" / "zarr.json").exists() else "v2"
    return Workload(
        "xarray",
        f"xarray Dataset variable (Zarr {fmt}, xarray defaults)",
        path,
        "field",
        codec=f"{_codec_names(path / 'field')}, {_mb(list(a.chunk))} chunks",
    )


def synthetic_shape(size_gb: float, quick: bool) -> tuple[list[int], list[int], list[int]]:
    """(shape, shards, chunks) of the synthetic input: 256 MiB shards of 128 KiB chunks
    (smaller shards were no faster: `make bench-sweep`); in ``quick`` mode 1 MiB shards."""
    if quick:
        planes = max(16, round(size_gb * 1e9 / (64 << 10) / 16) * 16)
        return [planes, 128, 128], [16, 128, 128], [1, 32, 128]
    planes = max(64, round(size_gb * 1e9 / (4 << 20) / 64) * 64)  # 4 MiB planes
    return [planes, 1024, 1024], [64, 1024, 1024], [1, 32, 1024]


def write_synthetic(root: Path, size_gb: float, quick: bool, backend: str) -> Workload:
    """The pipeline's own input format, made by its generator on ``backend``."""
    from benchmarks import pipelines

    shape, shards, chunks = synthetic_shape(size_gb, quick)
    path = root / "synthetic.zarr"
    pipelines.generate(path, shape, shards, chunks, backend)
    return Workload(
        "synthetic",
        f"synthetic: random normal, sharded, {_mb(chunks)} zstd chunks (pipeline generate)",
        path,
        codec=f"zstd, {_mb(chunks)} chunks in {_mb(shards)} shards",
    )


#: ``output.codec.store_raw_below`` of the ``-raw`` workloads (``synthetic-raw``,
#: ``v2-blosc-raw``): random normal float32 saves about 7% under zstd (ratio 1.08), the field
#: workloads' outputs about 8% (0.918 of their bytes: RESULTS.md, 2026-12-06), so their units
#: are stored as zstd raw blocks.
RAW_BELOW = 0.1


def raw_output(w: Workload) -> Workload:
    """The input of ``w`` again (key ``<w.key>-raw``), its output's units stored as zstd raw
    blocks where a sample of their frames saves less than :data:`RAW_BELOW`
    (``output.codec.store_raw_below``): an option of the output, the input and its ceilings and
    peers ``w``'s."""
    return Workload(
        f"{w.key}-raw",
        f"{w.key}, output units saving < {RAW_BELOW:.0%} stored as zstd raw blocks",
        w.store,
        w.array,
        w.codec,
        output_codec={"store_raw_below": RAW_BELOW},
        shares=w.key,
    )


#: The file that marks a directory as a benchmark's scratch space, written when it makes one.
SCRATCH_MARK = ".pipeline-benchmark-scratch"
#: The mark's text where the directory was there before the benchmark (an empty one the user
#: named): it is emptied after the run, never removed.
KEPT = "kept: the directory was there before the benchmark; only its contents are removed\n"


def check_scratch(path: Path, option: str) -> None:
    """Refuse, in one line, a directory a benchmark would empty that is not its own: one that
    holds anything and no :data:`SCRATCH_MARK` (``--shm /dev/shm``, a folder of the user's).
    ``option`` names the program and option, ``bench: --shm``. The benchmarks empty their
    scratch directory before a run (an interrupted run's gigabytes) and remove what they wrote
    after (:func:`release`); they had emptied whatever was named, ignoring errors."""
    if path.exists() and not path.is_dir():
        raise SystemExit(f"{option} {path} is a file, not a directory: name a new directory")
    if path.is_dir() and not (path / SCRATCH_MARK).exists() and any(path.iterdir()):
        raise SystemExit(
            f"{option} {path} holds files no benchmark wrote, and the benchmark empties and "
            f"removes its directory: name a new one, such as {path / 'pipeline-bench'}"
        )


def scratch(path: Path, option: str) -> Path:
    """``path``, empty and marked as the benchmarks' own (:data:`SCRATCH_MARK`): made where
    missing, emptied where a benchmark made it; refused as :func:`check_scratch` says. An empty
    directory that was there before (the user's) is marked :data:`KEPT`, so that
    :func:`release` empties it and leaves it (it had been removed after the run)."""
    check_scratch(path, option)
    mark = path / SCRATCH_MARK
    kept = path.is_dir() and (not mark.exists() or mark.read_text() == KEPT)
    if kept:
        _empty(path)
    else:
        shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)
    mark.write_text(KEPT if kept else "")
    return path


def temporary(prefix: str) -> Path:
    """A new temporary directory, marked as a benchmark's own (``--quick``'s ``--shm`` where
    none is named): :func:`release` removes it."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    (path / SCRATCH_MARK).write_text("")
    return path


def release(path: Path) -> None:
    """Remove what a benchmark wrote in its scratch directory ``path`` after the run: the
    directory too where a benchmark made it, only its contents where it was there before
    (:data:`KEPT`); nothing where it holds no mark (no benchmark's)."""
    mark = path / SCRATCH_MARK
    try:
        kept = mark.read_text() == KEPT
    except OSError:
        return
    if kept:
        _empty(path)
    else:
        shutil.rmtree(path, ignore_errors=True)


def _empty(path: Path) -> None:
    """Remove everything in the directory ``path``, leaving it."""
    for child in path.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def free_bytes(root: Path) -> int:
    """Bytes free on the file system that holds ``root`` (or would)."""
    probe = root
    while not probe.exists():
        probe = probe.parent
    return shutil.disk_usage(probe).free


def sample(w: Workload, nbytes: int) -> np.ndarray:
    """The first planes of a workload's array, about ``nbytes`` (at least one plane), as
    uint8 bytes (read with numcodecs)."""
    a = w.stored()
    plane = math.prod(a.shape[1:]) * a.dtype.itemsize
    rows = max(1, min(a.shape[0], nbytes // plane))
    values = a.read((0,) * len(a.shape), (rows, *a.shape[1:]))
    return np.ascontiguousarray(values).view(np.uint8).reshape(-1)


def _mb(shape: list[int]) -> str:
    nbytes = math.prod(shape) * 4
    return f"{nbytes / 2**20:.3g} MiB" if nbytes >= 2**20 else f"{nbytes >> 10} KiB"


def _codec_names(array_dir: Path) -> str:
    """The compressor names in an array's metadata (v2 or v3)."""
    import json

    if (array_dir / "zarr.json").exists():
        meta = json.loads((array_dir / "zarr.json").read_text())
        return "+".join(c["name"] for c in meta["codecs"])
    meta = json.loads((array_dir / ".zarray").read_text())
    return (meta.get("compressor") or {}).get("id", "none")
