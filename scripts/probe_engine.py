"""Probe: the block engine without Dask: T threads in P processes over all blocks of a run."""
import multiprocessing as mp
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

ROOT = "/dev/shm/pe"


def config():
    from pipeline.config import parse_config

    return parse_config({
        "input": {"store": f"{ROOT}/in.zarr", "generate": {
            "shape": [4096, 1024, 1024], "dtype": "float32", "shards": [64, 1024, 1024],
            "chunks": [1, 32, 1024]}},
        "output": {"store": f"{ROOT}/out.zarr", "overwrite": True},
        "stages": [{"op": "multiply", "factor": 5}, {"op": "square"}, {"op": "add"}],
        "backend": "gpu", "cluster": {"threads_per_worker": 4, "dashboard": "",
                                       "host_encode_share": 0}})


def make_plan():
    from pipeline.hardware import Facts
    from pipeline.plan import make_plan as mk

    return mk(config(), Facts.local())


def work(args):
    plan, blocks_, threads = args
    from pipeline import blocks, gpu

    gpu.setup(None)

    def one(b):
        x = blocks.read_block(plan.source, b)
        y = blocks.apply_stages(x, plan.chain, "gpu")
        blocks.write_block(y, plan.sink, b)

    with ThreadPoolExecutor(threads) as ex:
        list(ex.map(one, blocks_[:threads]))  # warm: kernels, pools, pinned buffers
        t = time.perf_counter()
        list(ex.map(one, blocks_))
        return time.perf_counter() - t, len(blocks_)


if __name__ == "__main__":
    from pipeline import layout, storage
    from pipeline.runner import generate_input

    if not os.path.exists(f"{ROOT}/in.zarr"):
        generate_input(config(), progress="none")
    plan = make_plan()
    o = plan.output
    storage.create_output(o.location, o.path, o.shape, o.dtype, o.chunk, o.unit, "zstd", 1,
                          False, {}, overwrite=True)
    all_blocks = list(layout.iter_indices(plan.block_grid))
    block_bytes = plan.input.nbytes / len(all_blocks)
    ctx = mp.get_context("spawn")
    for spec in sys.argv[1:]:
        p, t = (int(v) for v in spec.split("x"))
        parts = [(plan, all_blocks[i::p], t) for i in range(p)]
        t0 = time.perf_counter()
        if p == 1:
            res = [work(parts[0])]
        else:
            with ctx.Pool(p) as pool:
                res = pool.map(work, parts)
        wall = time.perf_counter() - t0
        slowest = max(r[0] for r in res)
        n = sum(r[1] for r in res)
        line = (f"{p} process(es) x {t} threads: {n * block_bytes / slowest / 1e9:.2f} GB/s "
                f"(timed part), wall incl. start {wall:.1f} s")
        print(line, flush=True)
        with open(os.path.join(os.environ.get("OUT", "/tmp"), "engine.txt"), "a") as f:
            f.write(line + "\n")
