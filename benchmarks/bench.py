"""`make bench`: the pipeline on Zarr as people store it, against the ceilings of its data path
and against the programs a user would write instead, in one run.

Workloads (:mod:`benchmarks.data`, on ``--shm``): Zarr v2 Blosc lz4+shuffle, Zarr v3 as
zarr-python 3 writes it, a variable of an xarray-written Dataset (a smooth field plus noise,
float32, 16 MB chunks, ``--size-gb``), and the pipeline's own synthetic format (random normal,
sharded 128 KiB zstd). For each: the pipeline's compute phase on a warm cluster (median and
range of ``--reps`` after a warm-up) and its wall time as a user counts it (``python -m
pipeline run``, process start to exit, cold); the CPU Dask peer end to end (its own process)
and over its compute phase; the naive dask-cuda peer; the ceilings of its path (its codec
decoded on all cores and on one, GPU and CPU zstd encode of its values, PCIe, storage). The
pipeline's CPU backend runs on the Zarr v2 and v3 workloads. Every output is compared with
NumPy, every element, bit for bit.

Writes ``bench.json``, ``bench.md`` and ``bench.png`` under ``--out`` and prints the short
table last; exits 1 when any check or section failed. ``--quick``: all of it tiny on the CPU
(GPU parts skipped, visibly), in about a minute (the tests run it).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Any

from benchmarks import (
    ceilings,
    checks,
    clusters,
    data,
    machine,
    options,
    peers,
    pipelines,
    report,
    stats,
)
from benchmarks.report import Figure, Results
from benchmarks.timing import Clock
from pipeline.reporting.summary import phases_text

#: Sections a run can leave out (``--skip``) and extra ones it can add (``--with``).
SECTIONS = ("ceilings", "e2e", "cpu", "peers", "warm", "naive")
EXTRAS = ("memory", "device", "disk")
FIELD_KEYS = ("v2-blosc", "v3-zstd", "xarray")
#: The workloads the pipeline's CPU backend also runs (issue 17, target 3).
CPU_BACKEND_KEYS = ("v2-blosc", "v3-zstd")
#: Where the inputs and outputs go (``--shm``) and the local-disk workload (``--disk``) by
#: default; ``--quick`` makes a temporary directory where no ``--shm`` is named.
SHM = Path("/dev/shm/pipeline-bench")
DISK = Path("/var/tmp/pipeline-bench")
#: The size ``--quick`` records for its toy inputs (GB); the synthetic one's layout reads it.
QUICK_GB = 0.002


class Bench:
    """One run: its settings, results, clock and workloads."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.res = Results(args.out, "bench")
        self.clock = Clock()
        self.gpu = not args.quick
        self.backend = "gpu" if self.gpu else "cpu"
        self.cores = machine.cpu_count()
        # --quick without --shm: a new temporary directory, removed after the run
        self.root: Path = args.shm if args.shm is not None else data.temporary("pipeline-bench-")
        self.workloads: list[data.Workload] = []
        self.env = pipelines.env()

    # -- helpers ------------------------------------------------------------------------------

    def cluster_section(self) -> dict[str, Any]:
        """The pipeline's cluster settings: its defaults on the GPU host; one worker of two
        threads in quick mode (one process starts sooner)."""
        quick = {"workers": 1, "threads_per_worker": 2, "dashboard": ""}
        return quick if self.args.quick else {}

    def doc(self, w: data.Workload, out: Path, backend: str, **cluster: Any) -> dict[str, Any]:
        """The config document of a run on ``w`` into ``out``; ``cluster`` settings added."""
        doc = pipelines.config_doc(
            w.store, w.array, out, backend, cluster=self.cluster_section() | cluster
        )
        if w.output_codec:
            doc["output"]["codec"] = dict(w.output_codec)
        return doc

    def out(self, w: data.Workload, what: str) -> Path:
        """Where the output of ``what`` on ``w`` goes (removed once checked)."""
        return self.root / f"out-{what}-{w.key}.zarr"

    def check(self, w: data.Workload, output: Path) -> None:
        """Compare ``output`` with NumPy over ``w``'s input, then remove it."""
        self.res.check(checks.check_output(w.store, output, w.array))
        shutil.rmtree(output, ignore_errors=True)

    def skip_gpu(self, what: str) -> bool:
        """True (and recorded as skipped) when there is no GPU to measure ``what`` on."""
        if not self.gpu:
            self.res.skip(what, "--quick: CPU only")
        return not self.gpu

    def meta_of(self, w: data.Workload) -> dict[str, Any]:
        """``w``'s entry in the results' ``meta['workloads']``."""
        return next(m for m in self.res.meta["workloads"] if m["key"] == w.key)

    # -- sections ---------------------------------------------------------------------------

    def field_layout(self) -> tuple[list[int], list[int]]:
        """(shape, chunks) of the field workloads: ``--size-gb`` of 16 MB chunks; tiny ones
        in quick mode."""
        if self.args.quick:
            return [32, 128, 128], [4, 128, 128]
        return data.field_shape(self.args.size_gb)

    def check_space(self) -> None:
        """Stop at once, in one line, when --shm cannot hold the inputs and an output."""
        shape, _ = self.field_layout()
        need = 5 * shape[0] * shape[1] * shape[2] * 4  # four inputs and one output at a time
        free = data.free_bytes(self.root)
        if free < need:
            raise SystemExit(
                f"bench: {self.root} has {free / 1e9:.1f} GB free, the run needs about "
                f"{need / 1e9:.1f} GB: lower --size-gb or point --shm elsewhere"
            )

    def inputs(self) -> None:
        """Write the workloads' inputs on --shm; record what each is and where the pipeline
        would decode and encode it (its plan)."""
        a = self.args
        self.clock.stamp("inputs")
        shape, chunks = self.field_layout()
        self.root.mkdir(parents=True, exist_ok=True)
        wanted = set(a.workloads)
        if wanted & {*FIELD_KEYS, "v2-blosc-raw"}:
            values = data.make_field(shape, self.cores)
            if wanted & {"v2-blosc", "v2-blosc-raw"}:
                v2 = data.write_v2_blosc(self.root, values, chunks, self.cores)
                if "v2-blosc" in wanted:
                    self.workloads.append(v2)
                if "v2-blosc-raw" in wanted:
                    self.workloads.append(data.raw_output(v2))
            if "v3-zstd" in wanted:
                self.workloads.append(data.write_v3_default(self.root, values, chunks, self.cores))
            if "xarray" in wanted:
                try:
                    import xarray  # noqa: F401
                except ImportError:
                    self.res.skip("workload xarray", "xarray is not installed (pip install xarray)")
                else:
                    self.workloads.append(data.write_xarray(self.root, values, chunks))
            del values
        if wanted & {"synthetic", "synthetic-raw"}:
            synthetic = data.write_synthetic(self.root, a.size_gb, a.quick, self.backend)
            if "synthetic" in wanted:
                self.workloads.append(synthetic)
            if "synthetic-raw" in wanted:
                self.workloads.append(data.raw_output(synthetic))
        self.res.meta["workloads"] = []
        for w in self.workloads:
            cfg = pipelines.config(self.doc(w, self.out(w, "plan"), self.backend))
            path = pipelines.codec_path(cfg)
            self.res.meta["workloads"].append(w.describe() | path | {"backend": self.backend})
        self.res.save()

    def host_ceilings(self) -> None:
        """The host's ceilings, before any input exists (the storage ceilings write files of
        their own on --shm)."""
        a, res = self.args, self.res
        self.clock.stamp("ceilings of the host")
        reps = a.reps
        if not self.skip_gpu("GPU ceilings (device copy, fused kernel, PCIe, host path)"):
            with res.attempt("device ceilings"):
                ceilings.device(res, reps)
            with res.attempt("PCIe ceilings"):
                ceilings.pcie(res, reps)
            with res.attempt("host path ceiling"):
                # the pipeline's default GPU worker threads: 3 workers x 4 threads
                ceilings.host_path(res, self.root / "path", 12, reps, files=24)
        zstd_bytes = (16 if a.quick else 128) << 20
        ceilings.cpu_zstd(res, 1 if a.quick else reps, self.cores, zstd_bytes)
        files = dict(file_bytes=8 << 20, count=4) if a.quick else {}
        threads = min(8, self.cores)
        ceilings.files(
            res, self.root / "files", "storage", threads, 1 if a.quick else reps, **files
        )

    def workload_ceilings(self, w: data.Workload) -> None:
        """``w``'s codec decoded from its raw files on all cores and on one, zstd encode of
        its values on the CPU and (GPU) with nvCOMP, and (GPU, where the CPU decodes) the host
        side of its path with its decoder."""
        a, res = self.args, self.res
        if w.shares in {v.key for v in self.workloads}:
            return  # measured on the workload whose input this is
        self.clock.stamp(f"ceilings of {w.key}")
        decode_bytes = (64 << 20) if a.quick else (2 << 30)
        ceilings.cpu_decode(res, w, self.cores, a.reps, decode_bytes, "cpu-decode-all")
        ceilings.cpu_decode(res, w, 1, a.reps, decode_bytes // 8, "cpu-decode-1")
        sample = data.sample(w, (4 if a.quick else 256) << 20)
        ceilings.cpu_encode(res, a.reps, sample, self.cores, w.key)
        if not self.skip_gpu(f"GPU zstd ceilings of {w.key}"):
            with res.attempt(f"nvCOMP ceilings of {w.key}"):
                ceilings.nvcomp_zstd(res, a.reps, sample, w.key)
            if w.key == "synthetic":
                with res.attempt("nvCOMP streams"):
                    ceilings.nvcomp_streams(res, a.reps, sample)
            if self.meta_of(w)["decode_on"] == "cpu":
                with res.attempt(f"host side of {w.key}'s path"):
                    # as many threads as cores: the pipeline's decode threads (plan's
                    # decode_threads: 3 workers x 6 on 16 cores)
                    root = self.root / "decode-path"
                    ceilings.host_decode_path(res, root, w, self.cores, a.reps, decode_bytes)

    def command(self, w: data.Workload, backend: str, prefix: str) -> None:
        """``python -m pipeline run`` on ``w`` from start to exit, ``--cold-reps`` new
        processes one after the other, the output checked after the last; figures
        ``PREFIX-wall``, ``PREFIX-e2e-compute`` (each run's compute phase) and ``PREFIX-fixed``
        (wall minus compute), their medians what the tables show. The first of them on a fresh
        machine also compiles the chain's kernels into CuPy's cache, as a user's first run
        does; its figures stay among the values."""
        out = self.out(w, f"{prefix}-{backend}")
        runs = [
            pipelines.command_run(self.doc(w, out, backend), self.root / f"cmd-{w.key}")
            for _ in range(self.args.cold_reps)
        ]
        walls = [r.wall_s for r in runs]
        s = runs[walls.index(sorted(walls)[len(walls) // 2])].summary  # the middle run's
        note = (
            f"{s['workers']} x {s['threads_per_worker']} threads; middle run by wall: "
            + phases_text(s["seconds"])
            + f", total {s['seconds']['total']:.2f}"
        )
        label = f"pipeline ({backend})"
        wall = Figure(
            f"{prefix}-wall",
            f"{label}, `pipeline run` start to exit, cold",
            "pipeline",
            walls,
            "s",
            w.key,
            note,
        )
        wall.extra["summary"] = {k: s[k] for k in ("seconds", "task_time", "bound_by")}
        wall.extra["runs"] = [r.summary["seconds"] for r in runs]
        self.res.add(wall)
        self.res.add(
            Figure(
                f"{prefix}-e2e-compute",
                f"{label}, compute phase of those runs",
                "pipeline",
                [r.summary["bytes_in"] / r.compute_s / 1e9 for r in runs],
                workload=w.key,
            )
        )
        self.res.add(
            Figure(
                f"{prefix}-fixed",
                f"{label}, wall minus compute phase",
                "pipeline",
                [r.fixed_s for r in runs],
                "s",
                w.key,
            )
        )
        if prefix == "pipeline":
            m = self.meta_of(w)
            m["output_stored_bytes"], m["output_bytes"] = s["stored_bytes_written"], s["bytes_out"]
        self.check(w, out)

    def commands(self) -> None:
        """The pipeline as a user runs it on every workload, ``--cold-reps`` cold processes
        each."""
        for w in self.workloads:
            self.clock.stamp(f"pipeline run, {w.key} ({self.backend})")
            with self.res.attempt(f"pipeline run on {w.key}"):
                self.command(w, self.backend, "pipeline")

    def cpu_backend(self) -> None:
        """The pipeline's CPU backend on the Zarr v2 and v3 workloads, as :meth:`commands`
        runs it (without a GPU, the pipeline's runs are the CPU backend's already)."""
        for w in self.workloads:
            if w.key not in CPU_BACKEND_KEYS:
                continue
            if not self.gpu:  # the pipeline rows above are the CPU backend's already
                for key in ("e2e-compute", "wall", "fixed"):
                    f = self.res.get(f"pipeline-{key}", w.key)
                    if f is not None:
                        self.res.add(
                            Figure(
                                f"cpu-backend-{key}",
                                f.name,
                                "pipeline",
                                f.values,
                                f.unit,
                                w.key,
                                "the pipeline's run above (no GPU: CPU backend)",
                            )
                        )
                continue
            self.clock.stamp(f"pipeline run, {w.key} (cpu)")
            with self.res.attempt(f"pipeline run on {w.key}, CPU backend"):
                self.command(w, "cpu", "cpu-backend")

    def cpu_peers(self) -> None:
        """The CPU Dask peer on every workload, its own process each."""
        a = self.args
        for w in self.workloads:
            if w.shares in {v.key for v in self.workloads}:
                continue  # the same program on the same input
            self.clock.stamp(f"CPU Dask peer, {w.key}")
            with self.res.attempt(f"CPU Dask peer on {w.key}"):
                out = self.out(w, "peer-cpu")
                if a.cold_reps == 1 and w is self.workloads[0]:
                    # one run is the figure: an untimed one first, so that the first
                    # workload's peer does not alone pay the machine's first LocalCluster
                    # start (libraries read from disk: 8.4 s of cluster start against 0.9 s
                    # for the next workloads' in a --quick run, new-user review, 2026-12-01)
                    peers.cpu_peer(w.store, w.array, out, self.env, a.peer_workers, a.peer_threads)
                ps = [
                    peers.cpu_peer(w.store, w.array, out, self.env, a.peer_workers, a.peer_threads)
                    for _ in range(a.cold_reps)
                ]
                walls = [p["wall_s"] for p in ps]
                p = ps[walls.index(sorted(walls)[len(walls) // 2])]  # the middle run
                note = (
                    f"LocalCluster {p['workers']} workers, {p['threads']} threads; middle run "
                    "by wall: "
                    f"import {p['import_s']:.2f}, cluster {p['cluster_s']:.2f}, compute "
                    f"{p['compute_s']:.2f}, close {p['close_s']:.2f} s"
                )
                self.res.add(
                    Figure(
                        "peer-cpu-wall",
                        "peer: CPU Dask, process start to exit",
                        "peer",
                        walls,
                        "s",
                        w.key,
                        note,
                    )
                )
                self.res.add(
                    Figure(
                        "peer-cpu-compute",
                        "peer: CPU Dask, compute phase",
                        "peer",
                        [q["gbps"] for q in ps],
                        workload=w.key,
                        note="da.from_zarr -> stages -> to_zarr (zstd 1)",
                    )
                )
                self.check(w, out)

    def warm(self) -> None:
        """One cluster of the pipeline's own, then :meth:`warm_runs` on every workload on it;
        the in-memory extras on it; each ``--also`` setting on a cluster of its own."""
        a, res = self.args, self.res
        if not self.workloads:
            return
        first = self.workloads[0]
        doc = self.doc(first, self.out(first, "warm"), self.backend, dashboard="")
        self.clock.stamp(f"warm cluster ({self.backend})")
        machine.wait_gpu_freed()
        with (
            res.attempt("warm cluster"),
            clusters.pipeline_cluster(pipelines.plan(pipelines.config(doc)).cluster) as client,
        ):
            for w in self.workloads:
                self.clock.stamp(f"pipeline, warm, {w.key}")
                with res.attempt(f"warm pipeline runs on {w.key}"):
                    self.warm_runs(client, w, {})
            for extra in ("memory", "device"):
                if extra in a.extras:
                    self.in_memory(client, extra)
        for setting in a.also:
            self.variant(setting)

    def warm_runs(self, client: Any, w: data.Workload, cluster: dict[str, Any]) -> None:
        """The pipeline's compute phase on ``w``, ``--reps`` runs after a warm-up, on a warm
        cluster (``cluster``: the settings it was started with, {} for the defaults)."""
        out = self.out(w, "warm")
        cfg = pipelines.config(self.doc(w, out, self.backend, **cluster))
        busy = machine.GpuBusy() if self.gpu else None
        gbps, last = pipelines.warm_runs(client, cfg, self.args.reps, busy=busy)
        key = "pipeline-compute" + (
            f"-{cluster['workers_per_gpu']}x{cluster['threads_per_worker']}" if cluster else ""
        )
        top = max(last.task_time, key=last.task_time.get) if last.task_time else "-"
        f = self.res.add(
            Figure(
                key,
                f"pipeline, compute phase, warm ({self.backend})",
                "pipeline",
                gbps,
                workload=w.key,
                note=f"{last.workers} x {last.threads_per_worker} threads; {last.blocks_total} "
                f"blocks; {top} is the largest share of task time",
            )
        )
        f.extra.update(
            task_time=last.task_time,
            peak_device=last.peak_device_bytes,
            peak_rss=last.peak_host_bytes,
            gpu_busy_pct=busy.samples if busy else [],
        )
        self.check(w, out)

    def variant(self, setting: str) -> None:
        """The synthetic workload with ``WxT`` (W workers per GPU of T threads), on a cluster
        of its own, beside the default settings' figure."""
        w = next((w for w in self.workloads if w.key == "synthetic"), None)
        if w is None or self.skip_gpu(f"setting {setting}"):
            return
        per_gpu, threads = (int(v) for v in setting.lower().split("x"))
        section = {"workers_per_gpu": per_gpu, "threads_per_worker": threads}
        cfg = pipelines.config(self.doc(w, self.out(w, "warm"), "gpu", **section))
        self.clock.stamp(f"pipeline, warm, synthetic, {setting}")
        machine.wait_gpu_freed()
        with (
            self.res.attempt(f"setting {setting}"),
            clusters.pipeline_cluster(pipelines.plan(cfg).cluster) as client,
        ):
            self.warm_runs(client, w, section)

    def in_memory(self, client: Any, extra: str) -> None:
        """The synthetic input already in host memory (``memory``) or on the GPU (``device``),
        through Dask on the warm cluster."""
        w = next((w for w in self.workloads if w.key == "synthetic"), None)
        if w is None or self.skip_gpu(f"in-memory workload {extra}"):
            return
        self.clock.stamp(f"pipeline, data in {extra} memory")
        with self.res.attempt(f"in-memory workload {extra}"):
            if extra == "memory":
                self.res.add(
                    Figure(
                        "pipeline-memory",
                        "pipeline, input and result in host memory (pinned)",
                        "pipeline",
                        pipelines.memory_workload(client, w.store, self.args.reps, True),
                        workload=w.key,
                        note="page-locked chunks persisted in the workers",
                    )
                )
            else:
                self.res.add(
                    Figure(
                        "pipeline-device",
                        "pipeline, data already on GPU, through Dask (read+write bytes)",
                        "pipeline",
                        pipelines.device_workload(client, w.store, self.args.reps),
                        workload=w.key,
                        note="CuPy chunks persisted on the GPU",
                    )
                )

    def naive(self) -> None:
        """The naive dask-cuda peer on the first ``--peer-gb`` of every workload."""
        if self.skip_gpu("naive dask-cuda peer"):
            return
        self.clock.stamp("naive dask-cuda peer")
        machine.wait_gpu_freed()
        with self.res.attempt("naive dask-cuda peer"), clusters.naive_cuda() as client:
            for w in self.workloads:
                if w.shares in {v.key for v in self.workloads}:
                    continue
                with self.res.attempt(f"naive dask-cuda peer on {w.key}"):
                    a = w.stored()
                    plane = a.nbytes // a.shape[0]
                    unit = a.chunk[0]
                    rows = min(
                        a.shape[0], max(unit, int(self.args.peer_gb * 1e9 / plane) // unit * unit)
                    )
                    out = self.out(w, "peer-naive")
                    gbps = peers.naive_cuda(client, w.store, w.array, out, rows)
                    self.res.add(
                        Figure(
                            "peer-naive",
                            "peer: naive dask-cuda, compute phase",
                            "peer",
                            [gbps],
                            workload=w.key,
                            note=f"LocalCUDACluster defaults, first {rows * plane / 1e9:.2f} GB",
                        )
                    )
                    self.check(w, out)
            if "memory" in self.args.extras:
                synthetic = next((w for w in self.workloads if w.key == "synthetic"), None)
                if synthetic is not None:
                    self.res.add(
                        Figure(
                            "peer-naive-memory",
                            "peer: naive dask-cuda, input and result in host memory",
                            "peer",
                            peers.naive_memory(client, synthetic.store, 1),
                            workload="synthetic",
                            note="persisted NumPy chunks, cupy.asarray/asnumpy",
                        )
                    )

    def disk(self) -> None:
        """The synthetic input on local disk (``--disk``), caches dropped before each run and
        the output synced after it; the disk's own ceilings beside it."""
        w = next((w for w in self.workloads if w.key == "synthetic"), None)
        if w is None or self.skip_gpu("local disk workload"):
            return
        self.clock.stamp("local disk")
        root = self.args.disk
        with self.res.attempt("local disk workload"):
            data.scratch(root, "bench: --disk")
            both = ceilings.disk(self.res, root / "dd", 4)
            on_disk = data.Workload("synthetic", w.title, root / "input.zarr", codec=w.codec)
            shutil.copytree(w.store, on_disk.store)
            cfg = pipelines.config(self.doc(on_disk, root / "out.zarr", "gpu", dashboard=""))
            with clusters.pipeline_cluster(pipelines.plan(cfg).cluster) as client:
                gbps, last = pipelines.warm_runs(
                    client, cfg, 1, warmup=0, before=ceilings.drop_caches
                )
            moved = (last.stored_bytes_read + last.stored_bytes_written) / last.bytes_in
            f = self.res.add(
                Figure(
                    "pipeline-disk",
                    "pipeline, Zarr on local disk (GPU)",
                    "pipeline",
                    gbps,
                    workload="synthetic",
                    note=f"caches dropped first, output synced; {last.bound_by}",
                )
            )
            f.extra.update(
                disk_gbps_moved=gbps[0] * moved, of_disk_ceiling=stats.ratio(gbps[0] * moved, both)
            )
            self.check(on_disk, root / "out.zarr")
        data.release(root)

    def storage_ceilings(self) -> None:
        """The storage ceilings in GB/s of input bytes, per workload: the file read rate times
        input bytes per stored input byte; the write rate times output bytes per stored output
        byte (from the pipeline's run)."""
        read = self.res.value("storage-read-files")
        write = self.res.value("storage-write-files")
        for m in self.res.meta.get("workloads", []):
            if read:
                self.res.add(
                    Figure(
                        "storage-read",
                        "storage read, in input bytes",
                        "ceiling",
                        [read * m["nbytes"] / m["stored_bytes"]],
                        workload=m["key"],
                        note="file read rate x input bytes / stored bytes",
                    )
                )
            if write and m.get("output_stored_bytes"):
                self.res.add(
                    Figure(
                        "storage-write",
                        "storage write, in input bytes",
                        "ceiling",
                        [write * m["output_bytes"] / m["output_stored_bytes"]],
                        workload=m["key"],
                        note="file write rate x output bytes / stored output bytes",
                    )
                )

    # -- the run --------------------------------------------------------------------------------

    def run(self) -> int:
        """Every section in order; the report is written whatever happens. 0 when every
        section ran and every check passed, else 1."""
        a = self.args
        pipelines.checkout_bytecode()  # before describe() looks for it
        self.res.meta = machine.describe(want_gpu=self.gpu) | {
            "size_gb": a.size_gb,
            "reps": a.reps,
            "cold_reps": a.cold_reps,
            "quick": a.quick,
            "skip": sorted(a.skip),
            "shm": str(self.root),
            "command": " ".join(["python -m benchmarks.bench", *sys.argv[1:]]),
        }
        data.scratch(self.root, "bench: --shm")
        self.check_space()
        try:
            if "ceilings" not in a.skip:
                self.host_ceilings()
            self.inputs()
            if "ceilings" not in a.skip:
                for w in self.workloads:
                    self.workload_ceilings(w)
            if "e2e" not in a.skip:
                self.commands()
            if "cpu" not in a.skip:
                self.cpu_backend()
            if "peers" not in a.skip:
                self.cpu_peers()
            if "warm" not in a.skip:
                self.warm()
            if "naive" not in a.skip:
                self.naive()
            if "disk" in a.extras:
                self.disk()
            self.storage_ceilings()
        finally:
            self.clock.stamp("report")
            data.release(self.root)
            self.res.meta["elapsed_s"] = self.clock.elapsed()
            self.res.meta["sections_s"] = self.clock.sections
            finish(self.res)
        return 0 if self.res.ok else 1


# --------------------------------------------------------------------------------------------
# Targets, tables.


def evaluate(res: Results, rows: list[dict[str, Any]]) -> None:
    """Issue 17's targets, as ratios of figures measured in this run (GPU targets only on a
    run with a GPU)."""
    res.targets = []
    gpu = not res.meta.get("quick")

    def target(
        label: str, value: float | None, floor: float, unit: str, most: bool = False
    ) -> None:
        met = value is not None and (value <= floor if most else value >= floor)
        res.targets.append(
            {
                "target": label,
                "value": value,
                "floor": floor,
                "unit": unit,
                "at_most": most,
                "met": met,
            }
        )

    by = {r["key"]: r for r in rows}
    if gpu:
        for key, floor in (("v2-blosc", 6.0), ("v3-zstd", 5.0)):
            if key in by:
                target(f"{key}: compute phase", by[key]["compute_median"], floor, "GB/s")
                target(f"{key}: of the lowest ceiling of its path", by[key]["of_ceiling"], 0.7, "%")
        if "synthetic" in by:
            target(
                "synthetic: of its lowest ceiling (GPU zstd decode+encode)",
                by["synthetic"]["of_ceiling"],
                0.9,
                "%",
            )
        if "synthetic-raw" in by:
            target(
                "synthetic, units stored as zstd raw blocks: of the GPU zstd decode+encode "
                "ceiling (past it allowed: the output stays standard zstd)",
                by["synthetic-raw"]["of_ceiling"],
                0.9,
                "%",
            )
        if "v2-blosc" in by:
            target(
                "v2-blosc: end to end, x the CPU Dask peer end to end",
                by["v2-blosc"]["speedup_e2e"],
                3.0,
                "x",
            )
    for r in rows:
        target(
            f"{r['key']}: fixed cost (wall minus compute)",
            r["fixed_s"],
            3.0 if gpu else 1.5,
            "s",
            most=True,
        )
        if "cpu_backend" in r:
            target(
                f"{r['key']}: CPU backend compute, x the CPU Dask peer's",
                r["cpu_backend"]["vs_peer_compute"],
                2.0,
                "x",
            )
    target("outputs equal NumPy's, bit for bit", 1.0 if res.checks and res.ok else 0.0, 1.0, "")


def targets_table(res: Results) -> str:
    """The targets of :func:`evaluate` as a Markdown table."""
    rows = []
    for t in res.targets:
        if t["unit"] == "GB/s":
            v, wanted = stats.rate(t["value"]), f"{t['floor']:g} GB/s"
        elif t["unit"] == "%":  # a fraction, to a tenth of a point: 69.5% is not 70%
            v, wanted = report.fmt(t["value"], ".1%"), f"{t['floor']:.0%}"
        else:
            v = report.fmt(t["value"], ".2f", f" {t['unit']}".rstrip())
            wanted = f"{t['floor']:g} {t['unit']}".rstrip()
        floor = f"{'at most' if t['at_most'] else 'at least'} {wanted}"
        rows.append([t["target"], v, floor, "yes" if t["met"] else "NO"])
    return report.md_table(["target", "measured", "wanted", "met"], rows)


def why_empty(res: Results) -> dict[str, str]:
    """Why a table of :func:`markdown` would have no row, by table (``workloads``, ``cpu``,
    ``figures``): what ``--skip`` or ``--workloads`` left out, else the failures and skips
    listed at the end (an empty table had said nothing)."""
    m = res.meta
    skip = set(m.get("skip", []))
    keys = {w["key"] for w in m.get("workloads", [])}
    below = "see what was skipped or failed, at the end"
    if "cpu" in skip:
        cpu = "--skip cpu"
    elif not keys & set(CPU_BACKEND_KEYS):
        cpu = f"it runs on {' and '.join(CPU_BACKEND_KEYS)}, and no such workload ran"
    elif m.get("quick") and "e2e" in skip:
        cpu = "--quick's CPU backend rows are its `pipeline run`s, which --skip e2e leaves out"
    else:
        cpu = below
    measuring = [s for s in SECTIONS if s not in skip]
    figures = f"--skip {','.join(sorted(skip))} left out every section" if not measuring else below
    return {
        "workloads": f"No workload ran: {below}.",
        "cpu": f"No CPU backend run: {cpu}.",
        "figures": f"No figure: {figures}.",
    }


def markdown(res: Results, rows: list[dict[str, Any]]) -> str:
    """``bench.md``: date, hardware and inputs, the workload table, the checks, the CPU
    backend, the ceilings, the targets, every figure, and what was skipped or failed."""
    m = res.meta
    none = why_empty(res)
    sizes = ", ".join(
        f"{w['key']} {w['nbytes'] / 1e9:.3g} GB {w['shape']} ({w['codec']})"
        for w in m.get("workloads", [])
    )
    lines = [
        "# `make bench`",
        "",
        f"Measured {m.get('date')} on {machine.hardware_line(m)}. Command: `{m.get('command')}`; "
        f"{m.get('elapsed_s', 0):.0f} s. Inputs: {sizes}. Compute: rate of input bytes in the "
        f"compute phase, median of {m.get('reps')} warm runs (range); wall: median of "
        f"{m.get('cold_reps', 1)} cold `python -m pipeline run` (or peer) processes, each from "
        "start to exit.",
        "",
        *(
            [
                "Toy sizes (`--quick`): inputs of a few MB, so every rate and ratio below is "
                "the fixed cost of a run, not its speed; this checks that the benchmark runs.",
                "",
            ]
            if m.get("quick")
            else []
        ),
        report.workload_table(rows, none["workloads"]),
        "",
        report.checks_line(res),
        "",
        "## The pipeline's CPU backend against the CPU Dask peer",
        "",
        report.cpu_table(rows, none["cpu"]),
        "",
        "## Ceilings of each workload's path",
        "",
        report.ceilings_table(res, m.get("workloads", []), none["workloads"]),
        "",
        "## Targets (issue 17)",
        "",
        *(
            ["Toy sizes (`--quick`): these say nothing about the targets.", ""]
            if m.get("quick")
            else []
        ),
        targets_table(res),
        "",
        "## Every figure",
        "",
        report.figures_table(res, none["figures"]),
        "",
        *report.skipped_lines(res),
    ]
    return "\n".join(lines) + "\n"


def finish(res: Results) -> None:
    """Rows, targets, the Markdown and the chart; the short table printed last."""
    rows = [report.workload_row(res, w) for w in res.meta.get("workloads", [])]
    res.meta["rows"] = rows
    evaluate(res, rows)
    res.save()
    (res.out / "bench.md").write_text(markdown(res, rows))
    report.chart(
        res,
        res.out / "bench.png",
        f"pipeline vs ceilings and peers — {machine.hardware_line(res.meta)}",
    )
    print()
    print(f"{res.meta.get('date')}, {machine.hardware_line(res.meta)}")
    if res.meta.get("without_bytecode"):
        print(
            "note: installed without bytecode, which this Python does not write: "
            f"{', '.join(res.meta['without_bytecode'])}; every cold process compiled them "
            "(`python -m compileall` of site-packages does what `pip install` does by default)"
        )
    print(report.workload_table(rows, why_empty(res)["workloads"]))
    print(report.checks_line(res))
    for line in report.skipped_lines(res):
        print(line)
    print(f"wrote {res.out}/bench.{{json,md,png}} ({res.meta.get('elapsed_s', 0):.0f} s)")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line; ``--quick`` sets the sizes (refusing ``--size-gb``), and the
    repetitions and peer cluster not given; ``--disk`` without ``--with disk`` is refused."""
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny, CPU only (what the tests run)")
    p.add_argument(
        "--out",
        type=options.out_dir,
        default=Path("results/bench"),
        help="directory of bench.json, bench.md and bench.png (made where missing)",
    )
    p.add_argument(
        "--size-gb",
        type=options.gigabytes,
        help="size of each input (GB; default 8; --quick: toy sizes of its own)",
    )
    p.add_argument(
        "--reps",
        type=options.count,
        help="timed repetitions (after a warm-up; default 3, --quick 2)",
    )
    p.add_argument(
        "--cold-reps",
        type=options.count,
        help="new processes of `pipeline run` and of the CPU Dask peer per workload (the "
        "tables show their median; default 3, --quick 1)",
    )
    p.add_argument(
        "--shm",
        type=Path,
        help="where the inputs and outputs are written, memory-backed (default "
        f"{SHM}; --quick: a new temporary directory)",
    )
    p.add_argument(
        "--disk",
        type=Path,
        help=f"local-disk directory of --with disk (default {DISK})",
    )
    workloads = ("v2-blosc", "v2-blosc-raw", *FIELD_KEYS[1:], "synthetic", "synthetic-raw")
    p.add_argument(
        "--workloads",
        type=options.names(workloads),
        default=",".join(workloads),
        help="comma list of workloads",
    )
    p.add_argument(
        "--skip",
        type=options.names(SECTIONS, empty=True),
        default="",
        help=f"comma list of sections: {','.join(SECTIONS)}",
    )
    p.add_argument(
        "--with",
        dest="extras",
        type=options.names(EXTRAS, empty=True),
        default="",
        help=f"comma list of extra workloads: {','.join(EXTRAS)}",
    )
    p.add_argument(
        "--also",
        type=options.settings,
        default=[],
        help="comma list of WxT: the synthetic workload also with W workers per GPU "
        "of T threads each, beside the defaults",
    )
    p.add_argument(
        "--peer-gb",
        type=options.gigabytes,
        default=0.5,
        help="the naive dask-cuda peer runs on the first PEER_GB of each input",
    )
    p.add_argument(
        "--peer-workers", type=options.count, help="CPU Dask peer: workers (LocalCluster's default)"
    )
    p.add_argument("--peer-threads", type=options.count, help="CPU Dask peer: threads per worker")
    p.add_argument(
        "--from-json", type=Path, help="render the tables and chart of a bench.json again"
    )
    args = p.parse_args(argv)
    args.skip, args.extras = set(args.skip), set(args.extras)
    if args.disk is not None and "disk" not in args.extras:
        p.error(
            "argument --disk: the directory of --with disk, which this run does not measure: "
            "add --with disk, or leave --disk out"
        )
    options.settle(
        p,
        args,
        {
            "size_gb": (8.0, QUICK_GB),
            "reps": (3, 2),
            "cold_reps": (3, 1),
            "peer_workers": (None, 1),
            "peer_threads": (None, 2),
            "disk": (DISK, DISK),
        },
        sizes=("size_gb",),
    )
    if args.shm is None and not args.quick:  # --quick: a new one of its own (Bench makes it)
        args.shm = SHM
    if args.shm is not None:
        data.check_scratch(args.shm, "bench: --shm")
    if "disk" in args.extras:
        data.check_scratch(args.disk, "bench: --disk")
    return args


def _results_of(path: Path, out: Path) -> Results:
    """The results ``--from-json`` names; one that cannot be read, is no JSON or no benchmark's
    results is refused in one line (it had been a traceback)."""
    try:
        return Results.load(path, out)
    except OSError as e:
        why = e.strerror or str(e)
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
        why = f"not JSON ({e})"
    except (KeyError, TypeError):
        why = "not the results of a run (no meta, figures, checks, skipped, failures, targets)"
    raise SystemExit(f"bench: --from-json {path}: {why}; name a bench.json that a run wrote")


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.bench``: 0 when everything ran and passed, 1 when a section or
    check failed, 2 without the GPU backend (outside ``--quick``)."""
    args = parse_args(argv)
    if args.from_json:
        res = _results_of(args.from_json, args.out)
        finish(res)
        return 0 if res.ok else 1
    if not args.quick:
        usable, why = machine.gpu_status()
        if not usable:
            return options.needs_gpu("bench", why)
    return Bench(args).run()


if __name__ == "__main__":
    sys.exit(main())
