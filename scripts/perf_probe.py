"""First end-to-end GPU throughput probe (not the benchmark): 16 GiB on /dev/shm."""
import json
import os
import sys
import time

from pipeline.config import parse_config
from pipeline.runner import RunOptions, generate_input, run

ROOT = os.environ.get("PROBE_ROOT", "/dev/shm/pp")
SHAPE = [4096, 1024, 1024]


def cfg(threads, out="out.zarr", extra=None):
    d = {
        "input": {"store": f"{ROOT}/in.zarr",
                  "generate": {"shape": SHAPE, "dtype": "float32", "seed": 0,
                               "shards": [64, 1024, 1024], "chunks": [1, 32, 1024]}},
        "output": {"store": f"{ROOT}/{out}", "overwrite": True},
        "stages": [{"op": "multiply", "factor": 5}, {"op": "square"}, {"op": "add"}],
        "backend": "gpu",
        "cluster": {"threads_per_worker": threads, "dashboard": ""},
    }
    for k, v in (extra or {}).items():
        d[k] = {**d.get(k, {}), **v}  # type: ignore[dict-item]
    return parse_config(d)


if __name__ == "__main__":
    results = {}
    t = time.perf_counter()
    generate_input(cfg(8), progress="none")
    results["generate_s"] = time.perf_counter() - t
    print("generated in", round(results["generate_s"], 1), "s", flush=True)
    for arg in sys.argv[1:] or ["8:0"]:
        threads, share = int(arg.split(":")[0]), float(arg.split(":")[1])
        s = run(cfg(threads, extra={"cluster": {"host_encode_share": share}}),
                RunOptions(progress="none"))
        threads = arg
        results[f"t{threads}"] = {"gbps": s.gbps_in, "compute_s": s.seconds["compute"],
                                  "task_time": s.task_time, "peak_dev": s.peak_device_bytes,
                                  "peak_rss": s.peak_host_bytes, "stored_in": s.stored_bytes_read,
                                  "stored_out": s.stored_bytes_written}
        print(threads, json.dumps(results[f"t{threads}"]), flush=True)
    with open(os.path.join(os.environ.get("OUT", "/tmp"), "perf_probe.json"), "w") as f:
        json.dump(results, f, indent=1)
