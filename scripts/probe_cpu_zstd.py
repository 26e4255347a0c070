"""Probe: CPU zstd (numcodecs, level 1) on 128 KiB frames of random float32, by thread count."""
import time
from concurrent.futures import ThreadPoolExecutor

import numcodecs
import numpy as np

x = np.random.default_rng(0).standard_normal(256 << 18).astype(np.float32).view(np.uint8)
ch = 128 << 10
frames = [x[o:o + ch] for o in range(0, x.nbytes, ch)]
z = numcodecs.Zstd(level=1)
for th in (1, 4, 8, 12, 16):
    with ThreadPoolExecutor(th) as ex:
        list(ex.map(z.encode, frames[:64]))
        t = time.perf_counter()
        list(ex.map(z.encode, frames))
        dt = time.perf_counter() - t
    print(f"cpu zstd L1 128K frames, {th:2d} threads: {x.nbytes / dt / 1e9:.2f} GB/s", flush=True)
