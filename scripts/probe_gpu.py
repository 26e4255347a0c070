"""One-shot probe of the GPU host's data path, to size the design (not the benchmark).

Prints one line per measurement and writes them as JSON to $OUT/probe.json.
"""

import json
import os
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor

import numpy as np

R: dict = {}


def rec(key, value):
    R[key] = value
    print(f"{key}: {value}", flush=True)


def section(fn):
    t = time.perf_counter()
    try:
        fn()
    except Exception:
        traceback.print_exc()
        rec(fn.__name__ + ".error", traceback.format_exc().splitlines()[-1])
    print(f"-- {fn.__name__} {time.perf_counter() - t:.1f}s", flush=True)


def med(xs):
    return float(np.median(xs))


def env():
    import cupy as cp

    rec("python", sys.version.split()[0])
    rec("cupy", cp.__version__)
    rec("numpy", np.__version__)
    p = cp.cuda.runtime.getDeviceProperties(0)
    rec("gpu", p["name"].decode())
    rec("mem_free_total", cp.cuda.runtime.memGetInfo())
    for m in (
        "dask",
        "distributed",
        "dask_cuda",
        "zarr",
        "numcodecs",
        "rmm",
        "pydantic",
        "pynvml",
        "cuda.core",
        "bokeh",
        "rich",
        "fsspec",
    ):
        try:
            mod = __import__(m, fromlist=["x"])
            rec("ver." + m, getattr(mod, "__version__", "?"))
        except Exception as e:
            rec("ver." + m, f"ERR {type(e).__name__}: {e}")
    from nvidia import nvcomp

    rec("ver.nvcomp", nvcomp.__version__)
    rec("cpus", os.cpu_count())
    rec("affinity", len(os.sched_getaffinity(0)))


def events_time(fn, reps=5, warm=2):
    import cupy as cp

    for _ in range(warm):
        fn()
    ts = []
    for _ in range(reps):
        a, b = cp.cuda.Event(), cp.cuda.Event()
        a.record()
        fn()
        b.record()
        b.synchronize()
        ts.append(cp.cuda.get_elapsed_time(a, b) / 1e3)
    return med(ts), min(ts), max(ts)


def device():
    import cupy as cp

    n = 1 << 30  # 1 Gi float32 = 4 GiB
    a = cp.random.standard_normal(n, dtype=cp.float32)
    b = cp.empty_like(a)
    t = events_time(lambda: cp.copyto(b, a))
    rec("d2d_copy_TBps(rw)", round(2 * a.nbytes / t[0] / 1e12, 3))
    k = cp.ElementwiseKernel(
        "float32 x, float32 f",
        "float32 y",
        "float t = x * f; t = t * t; y = t + t;",
        "fused3",
        options=("-fmad=false",),
    )
    t = events_time(lambda: k(a, np.float32(5), b))
    rec("fused_kernel_TBps(rw)", round(2 * a.nbytes / t[0] / 1e12, 3))
    ref = ((a[:1000] * 5) ** 2) * 2
    rec("fused_kernel_exact", bool((b[:1000] == ref).all()))
    a = b = None  # free the GPU memory (not `del`: the lambdas above name them)
    cp.get_default_memory_pool().free_all_blocks()


def pcie():
    import cupy as cp

    n = 2 << 30
    d = cp.empty(n, cp.uint8)
    pinned_mem = cp.cuda.alloc_pinned_memory(n)
    h = np.frombuffer(pinned_mem, np.uint8, n)
    h[:] = 1
    page = np.ones(n, np.uint8)
    s = cp.cuda.Stream(non_blocking=True)
    with s:
        for name, fn in [
            ("h2d_pinned", lambda: d.set(h, stream=s)),
            ("d2h_pinned", lambda: d.get(out=h, stream=s)),
        ]:
            ts = []
            for _ in range(4):
                s.synchronize()
                t0 = time.perf_counter()
                fn()
                s.synchronize()
                ts.append(time.perf_counter() - t0)
            rec(name + "_GBps", round(n / med(ts[1:]) / 1e9, 2))
        for name, fn in [
            ("h2d_pageable", lambda: d.set(page)),
            ("d2h_pageable", lambda: d.get(out=page)),
        ]:
            ts = []
            for _ in range(3):
                cp.cuda.Device().synchronize()
                t0 = time.perf_counter()
                fn()
                cp.cuda.Device().synchronize()
                ts.append(time.perf_counter() - t0)
            rec(name + "_GBps", round(n / med(ts[1:]) / 1e9, 2))
    # both directions at once, pinned, two streams
    half = n // 2
    d2 = cp.empty(half, cp.uint8)
    s1, s2 = cp.cuda.Stream(non_blocking=True), cp.cuda.Stream(non_blocking=True)
    ts = []
    for _ in range(4):
        cp.cuda.Device().synchronize()
        t0 = time.perf_counter()
        d[:half].set(h[:half], stream=s1)
        d2.get(out=h[half:], stream=s2)
        s1.synchronize()
        s2.synchronize()
        ts.append(time.perf_counter() - t0)
    rec("bidir_pinned_GBps_each_way", round(half / med(ts[1:]) / 1e9, 2))
    # pageable -> pinned memcpy, threads
    for th in (1, 4, 8, 16):
        src = page[: n // 2]
        dst = h[: n // 2]
        parts = np.array_split(np.arange(src.size // (1 << 20)), th)

        def cp_part(p, dst=dst, src=src):
            lo, hi = p[0] << 20, (p[-1] + 1) << 20
            np.copyto(dst[lo:hi], src[lo:hi])

        with ThreadPoolExecutor(th) as ex:
            ts = []
            for _ in range(3):
                t0 = time.perf_counter()
                list(ex.map(cp_part, parts))
                ts.append(time.perf_counter() - t0)
        rec(f"host_memcpy_{th}t_GBps", round(src.size / med(ts[1:]) / 1e9, 2))
    d = d2 = None  # free the GPU memory
    cp.get_default_memory_pool().free_all_blocks()


def nvcomp_zstd():
    import cupy as cp
    from nvidia import nvcomp

    pool = cp.get_default_memory_pool()
    nvcomp.set_device_allocator(lambda nbytes, stream: cp.cuda.alloc(nbytes))
    n = 256 << 20
    x = cp.random.standard_normal(n // 4, dtype=cp.float32).view(cp.uint8)
    s = cp.cuda.Stream(non_blocking=True)
    codec = nvcomp.Codec(
        algorithm="Zstd", bitstream_kind=nvcomp.BitstreamKind.RAW, device_id=0, cuda_stream=s.ptr
    )
    for ch in (32 << 10, 64 << 10, 128 << 10, 256 << 10):
        offs = list(range(0, n, ch))
        sz = [ch] * len(offs)
        slot = (codec.get_max_comp_buffer_size(nvcomp.as_array(x[:ch])) + 15) // 16 * 16
        cbuf = cp.empty(slot * len(offs), cp.uint8)
        cout = nvcomp.as_arrays(cbuf, [i * slot for i in range(len(offs))], [slot] * len(offs))
        src = nvcomp.as_arrays(x, offs, sz)
        s.synchronize()
        te, td = [], []
        out = cp.empty_like(x)
        ob = nvcomp.as_arrays(out, offs, sz)
        dc = codec.decompression_config(codec.compression_config(sz))
        peak = 0
        for _ in range(4):
            s.synchronize()
            t0 = time.perf_counter()
            r = codec.encode(src, out=cout)
            sizes = r.buffer_sizes
            s.synchronize()
            te.append(time.perf_counter() - t0)
            peak = max(peak, pool.total_bytes())
            cin = nvcomp.as_arrays(cbuf, [i * slot for i in range(len(offs))], list(sizes))
            s.synchronize()
            t0 = time.perf_counter()
            codec.decode(cin, out=ob, decompression_config=dc)
            s.synchronize()
            td.append(time.perf_counter() - t0)
        ok = bool((out == x).all())
        ratio = n / sum(sizes)
        rec(
            f"nvcomp_{ch >> 10}K",
            dict(
                enc_GBps=round(n / med(te[1:]) / 1e9, 2),
                dec_GBps=round(n / med(td[1:]) / 1e9, 2),
                ratio=round(ratio, 4),
                ok=ok,
                slot=slot,
                pool_total_GB=round(peak / 1e9, 2),
            ),
        )
    del codec
    # threads: each its own codec+stream, 128K frames
    ch = 128 << 10

    def worker(nrep, res):
        st = cp.cuda.Stream(non_blocking=True)
        with st:
            c = nvcomp.Codec(
                algorithm="Zstd",
                bitstream_kind=nvcomp.BitstreamKind.RAW,
                device_id=0,
                cuda_stream=st.ptr,
            )
            xx = cp.random.standard_normal(n // 4, dtype=cp.float32).view(cp.uint8)
            offs = list(range(0, n, ch))
            sz = [ch] * len(offs)
            slot = (c.get_max_comp_buffer_size(nvcomp.as_array(xx[:ch])) + 15) // 16 * 16
            cbuf = cp.empty(slot * len(offs), cp.uint8)
            so = [i * slot for i in range(len(offs))]
            cout = nvcomp.as_arrays(cbuf, so, [slot] * len(offs))
            src = nvcomp.as_arrays(xx, offs, sz)
            out = cp.empty_like(xx)
            ob = nvcomp.as_arrays(out, offs, sz)
            dc = c.decompression_config(c.compression_config(sz))
            st.synchronize()
            barrier.wait()
            t0 = time.perf_counter()
            for _ in range(nrep):
                r = c.encode(src, out=cout)
                sizes = r.buffer_sizes
                c.decode(nvcomp.as_arrays(cbuf, so, list(sizes)), out=ob, decompression_config=dc)
                st.synchronize()
            res.append(time.perf_counter() - t0)
            del c

    for th in (1, 2, 4, 8):
        barrier = threading.Barrier(th)
        res = []
        ts = [threading.Thread(target=worker, args=(4, res)) for _ in range(th)]
        [t.start() for t in ts]
        [t.join() for t in ts]
        rec(f"nvcomp_roundtrip_{th}threads_GBps", round(th * 4 * n / max(res) / 1e9, 2))
        pool.free_all_blocks()


def cpu_zstd():
    import numcodecs

    z = numcodecs.Zstd(level=1)
    x = np.random.default_rng(0).standard_normal(512 << 18, dtype=np.float32)  # 512 MiB
    ch = 128 << 10
    parts = [x.view(np.uint8)[o : o + ch] for o in range(0, x.nbytes, ch)]
    for th in (1, 8, 16):
        with ThreadPoolExecutor(th) as ex:
            t0 = time.perf_counter()
            e = list(ex.map(z.encode, parts))
            te = time.perf_counter() - t0
            t0 = time.perf_counter()
            list(ex.map(z.decode, e))
            td = time.perf_counter() - t0
        rec(
            f"cpu_zstd1_128K_{th}t",
            dict(
                enc_GBps=round(x.nbytes / te / 1e9, 2),
                dec_GBps=round(x.nbytes / td / 1e9, 2),
                ratio=round(x.nbytes / sum(map(len, e)), 4),
            ),
        )
    big = [x.view(np.uint8)[o : o + (64 << 20)] for o in range(0, x.nbytes, 64 << 20)]
    with ThreadPoolExecutor(8) as ex:
        t0 = time.perf_counter()
        e = list(ex.map(z.encode, big))
        te = time.perf_counter() - t0
        t0 = time.perf_counter()
        list(ex.map(z.decode, e))
        td = time.perf_counter() - t0
    rec(
        "cpu_zstd1_64M_8t",
        dict(enc_GBps=round(x.nbytes / te / 1e9, 2), dec_GBps=round(x.nbytes / td / 1e9, 2)),
    )


def files():
    import shutil
    import subprocess

    data = np.random.default_rng(1).integers(0, 255, 64 << 20, dtype=np.uint8).tobytes()
    for root in ("/dev/shm/probe", "/tmp/probe"):
        os.makedirs(root, exist_ok=True)
        for th in (1, 8):

            def w(i, root=root):
                with open(f"{root}/f{i}", "wb") as f:
                    f.write(data)

            def r(i, root=root):
                buf = bytearray(len(data))
                with open(f"{root}/f{i}", "rb") as f:
                    f.readinto(buf)

            with ThreadPoolExecutor(th) as ex:
                t0 = time.perf_counter()
                list(ex.map(w, range(32)))
                tw = time.perf_counter() - t0
                t0 = time.perf_counter()
                list(ex.map(r, range(32)))
                tr = time.perf_counter() - t0
            rec(
                f"files_{root.split('/')[1]}_{th}t",
                dict(
                    write_GBps=round(32 * len(data) / tw / 1e9, 2),
                    read_cached_GBps=round(32 * len(data) / tr / 1e9, 2),
                ),
            )
        shutil.rmtree(root)
    out = subprocess.run(
        "df -h /tmp /dev/shm; cat /proc/meminfo | head -3; lsblk 2>/dev/null | head; "
        "dd if=/dev/zero of=/tmp/ddtest bs=64M count=48 oflag=direct 2>&1 | tail -1; "
        "dd if=/tmp/ddtest of=/dev/null bs=64M iflag=direct 2>&1 | tail -1; rm -f /tmp/ddtest",
        shell=True,
        capture_output=True,
        text=True,
    )
    rec("disk", out.stdout + out.stderr)


def cluster():
    from dask_cuda import LocalCUDACluster
    from distributed import Client

    t0 = time.perf_counter()
    with LocalCUDACluster(threads_per_worker=8, dashboard_address=None) as c, Client(c) as cl:
        n = len(cl.scheduler_info()["workers"])
        rec("cluster_start_s", round(time.perf_counter() - t0, 2))
        rec("cluster_workers", n)
        import cupy as cp

        rec("worker_cupy_sum", cl.submit(lambda: float(cp.arange(10).sum())).result())


if __name__ == "__main__":
    only = sys.argv[1:] or ["env", "device", "pcie", "nvcomp_zstd", "cpu_zstd", "files", "cluster"]
    for name in only:
        section(globals()[name])
    out = os.environ.get("OUT", "/tmp")
    with open(os.path.join(out, "probe.json"), "w") as f:
        json.dump(R, f, indent=1, default=str)
