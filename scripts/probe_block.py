"""Probe: the cost of each step of one block on the GPU, in isolation (one thread, synced)."""
import math
import time

import cupy as cp
import numpy as np

from pipeline import backend as backends
from pipeline import blocks, layout, stages
from pipeline.config import parse_config
from pipeline.plan import make_plan
from pipeline.hardware import Facts
from pipeline.runner import generate_input

ROOT = "/dev/shm/pb"


def timed(label, fn, reps=5):
    out = None
    ts = []
    for _ in range(reps):
        cp.cuda.get_current_stream().synchronize()
        t = time.perf_counter()
        out = fn()
        cp.cuda.get_current_stream().synchronize()
        ts.append(time.perf_counter() - t)
    print(f"{label:28s} median {1e3 * float(np.median(ts)):8.2f} ms  min {1e3 * min(ts):8.2f}",
          flush=True)
    return out


if __name__ == "__main__":
    cfg = parse_config({
        "input": {"store": f"{ROOT}/in.zarr", "generate": {
            "shape": [512, 1024, 1024], "dtype": "float32", "shards": [64, 1024, 1024],
            "chunks": [1, 32, 1024]}},
        "output": {"store": f"{ROOT}/out.zarr", "overwrite": True},
        "stages": [{"op": "multiply", "factor": 5}, {"op": "square"}, {"op": "add"}],
        "backend": "gpu", "cluster": {"threads_per_worker": 4, "dashboard": ""}})
    generate_input(cfg, progress="none")
    plan = make_plan(cfg, Facts.local())
    from pipeline import storage
    o = plan.output
    storage.create_output(o.location, o.path, o.shape, o.dtype, o.chunk, o.unit, "zstd", 1,
                          False, {}, overwrite=True)
    be = backends.get("gpu")
    be.prepare()
    info = plan.input
    chain = plan.chain
    n = math.prod(info.chunks_per_unit)
    key = info.key((1, 0, 0))
    raw = timed("read file -> pinned", lambda: info.location.read_into(
        key, lambda k: be.host_buffer(k, "read")))
    frames = backends.frames_of(raw, info.sharded, info.index_at_end, n, info.chunk_nbytes,
                                "zstd")
    flat = timed("H2D + nvCOMP decode", lambda: be.decode_frames(
        raw, frames, "zstd", info.chunk_nbytes, info.dtype, 0))
    unit = timed("frames_to_unit", lambda: layout.frames_to_unit(flat, info.unit, info.chunk))
    print("unit contiguous:", unit.flags.c_contiguous, unit.shape)
    y = timed("apply_chain (fused kernel)", lambda: be.apply_chain(chain, unit))
    timed("count_nonfinite", lambda: be.count_nonfinite(y))
    from pipeline.gpu import chain_kernel
    k = chain_kernel(chain)
    big = cp.random.standard_normal(1 << 30, dtype=cp.float32)
    ev = [cp.cuda.Event(), cp.cuda.Event()]
    for _ in range(3):
        ev[0].record(); yb = k(big, np.dtype("float32")); ev[1].record(); ev[1].synchronize()
    ms = cp.cuda.get_elapsed_time(ev[0], ev[1])
    print(f"fused kernel 4 GiB: {ms:.2f} ms = {2 * big.nbytes / ms / 1e9:.3f} TB/s (r+w)")
    ev[0].record(); cp.copyto(yb, big); ev[1].record(); ev[1].synchronize()
    ms2 = cp.cuda.get_elapsed_time(ev[0], ev[1])
    print(f"copy 4 GiB: {ms2:.2f} ms = {2 * big.nbytes / ms2 / 1e9:.3f} TB/s (r+w)")
    del big, yb
    frames_out = timed("unit_to_frames", lambda: layout.unit_to_frames(y, plan.output.chunk))
    present = blocks.present_mask((1, 0, 0), plan.output.unit, plan.output.chunk, info.shape)
    parts, sizes = timed("encode + compact + D2H", lambda: be.encode_frames(
        frames_out, n, present, "zstd", 1, False))
    timed("write file", lambda: plan.output.location.write(plan.output.key((1, 0, 0)), parts))
    sink = plan.sink
    timed("write_unit (encode+write)", lambda: blocks.write_unit(be, sink, (1, 0, 0), y))
    timed("read_block total", lambda: blocks.read_block(plan.source, (1, 0, 0)))
    xb = blocks.read_block(plan.source, (1, 0, 0))
    yb = timed("apply_stages total", lambda: blocks.apply_stages(xb, chain, "gpu"))
    timed("write_block total", lambda: blocks.write_block(yb, sink, (1, 0, 0)))
