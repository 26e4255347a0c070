"""Probe: host-side file I/O rates on the GPU host (tmpfs), pinned vs pageable, new vs reused."""
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

ROOT = "/dev/shm/pio"
N = 256 << 20
FILES = 32


def rate(fn, threads, items):
    with ThreadPoolExecutor(threads) as ex:
        t = time.perf_counter()
        list(ex.map(fn, items))
        return len(items) * N / (time.perf_counter() - t) / 1e9


def main():
    import cupy as cp

    os.makedirs(ROOT, exist_ok=True)
    src = np.random.default_rng(0).integers(0, 255, N, dtype=np.uint8)
    for i in range(FILES):
        with open(f"{ROOT}/in{i}", "wb") as f:
            f.write(src)
    local = {}

    def pinned(i):
        import threading
        k = threading.get_ident()
        if k not in local:
            mem = cp.cuda.alloc_pinned_memory(N)
            local[k] = np.frombuffer(mem, np.uint8, N), mem
        return local[k][0]

    pageable = {}

    def page(i):
        import threading
        k = threading.get_ident()
        if k not in pageable:
            pageable[k] = np.ones(N, np.uint8)
        return pageable[k]

    def read_with(buf_fn):
        def f(i):
            b = buf_fn(i)
            with open(f"{ROOT}/in{i}", "rb", buffering=0) as fh:
                fh.readinto(memoryview(b))
        return f

    def write_new(buf_fn):
        def f(i):
            b = buf_fn(i)
            with open(f"{ROOT}/out{i}", "wb", buffering=0) as fh:
                fh.write(memoryview(b))
        return f

    def write_inplace(buf_fn):
        def f(i):
            b = buf_fn(i)
            fd = os.open(f"{ROOT}/out{i}", os.O_WRONLY)
            os.pwrite(fd, memoryview(b), 0)
            os.close(fd)
        return f

    for th in (1, 4, 8):
        items = list(range(FILES))
        rate(read_with(pinned), th, items)  # warm buffers
        r1 = rate(read_with(pinned), th, items)
        r2 = rate(read_with(page), th, items)
        for i in items:
            try:
                os.remove(f"{ROOT}/out{i}")
            except FileNotFoundError:
                pass
        w1 = rate(write_new(pinned), th, items)
        w2 = rate(write_inplace(pinned), th, items)
        for i in items:
            os.remove(f"{ROOT}/out{i}")
        w3 = rate(write_new(page), th, items)
        print(f"threads {th}: read->pinned {r1:.2f}  read->pageable {r2:.2f}  write new from "
              f"pinned {w1:.2f}  overwrite in place {w2:.2f}  write new from pageable {w3:.2f} GB/s",
              flush=True)
    # anonymous memory first touch
    for th in (1, 8):
        def touch(i):
            a = np.empty(N, np.uint8)
            a.fill(1)
        print(f"threads {th}: fresh np.empty+fill {rate(touch, th, list(range(16))):.2f} GB/s",
              flush=True)
    os.system(f"rm -rf {ROOT}")
    print(open("/sys/kernel/mm/transparent_hugepage/enabled").read().strip())
    os.system("ls /sys/bus/virtio/drivers/ 2>/dev/null; cat /proc/meminfo | grep -i -E 'huge|shmem'")


if __name__ == "__main__":
    main()
