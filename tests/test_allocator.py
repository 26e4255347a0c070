"""glibc's thresholds in the processes that run tasks (``pipeline/running/allocator.py``).

distributed's nanny gives every worker ``MALLOC_TRIM_THRESHOLD_=65536``, which fixes glibc's
mmap threshold at 128 KiB: a zstd frame of 128 KiB encoded by numcodecs (a little over that) was
then a fresh mapping each. Checked by what glibc itself counts (``mallinfo2``: mapped blocks),
in real processes: a real LocalCluster's nanny-started workers, and a command's own process.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os

import pytest

from tests.faultkit import cpu_cluster_plan, env, run_python


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        libc.mallinfo2  # noqa: B018  # glibc 2.33 and later
        libc.gnu_get_libc_version  # noqa: B018
    except (OSError, AttributeError, TypeError):
        return None
    return libc


pytestmark = pytest.mark.skipif(_libc() is None, reason="glibc's allocator (2.33 or later)")

FRAME = 200 << 10  # an allocation over 128 KiB and far under 4 MiB, as an encoded frame
#: Of the 40 allocations over the mmap threshold, how many at least are mappings: glibc serves
#: one from a free chunk of its heap where one is large enough (how many such the imports
#: left is not fixed), and none below the threshold is.
MAPPED_MOST = 30


def mapped_allocations(n: int = 40) -> dict:
    """How many of ``n`` live allocations of :data:`FRAME` bytes glibc made as mappings of
    their own, in this process; and its ``MALLOC_TRIM_THRESHOLD_``."""

    class Info(ctypes.Structure):
        _fields_ = [
            (f, ctypes.c_size_t)
            for f in (
                "arena",
                "ordblks",
                "smblks",
                "hblks",
                "hblkhd",
                "usmblks",
                "fsmblks",
                "uordblks",
                "fordblks",
                "keepcost",
            )
        ]

    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.mallinfo2.restype = Info
    before = libc.mallinfo2().hblks
    held = [bytearray(FRAME) for _ in range(n)]
    mapped = libc.mallinfo2().hblks - before
    del held
    return {"mapped": int(mapped), "trim": os.environ.get("MALLOC_TRIM_THRESHOLD_")}


def test_the_workers_of_a_run_s_own_cluster_take_frames_from_their_heaps() -> None:
    """The workers of a local cluster the pipeline starts (``cluster.connect``, as a run
    does), started by distributed's nanny with its trim threshold: after the pipeline's set-up
    plugin, no frame-sized allocation is a mapping of its own; a caller's cluster's workers
    (the same plugin registered on a LocalCluster the caller made) keep their allocator:
    every such allocation a mapping, as distributed's setting makes it."""
    from distributed import Client, LocalCluster

    from pipeline.running import cluster
    from pipeline.running.cluster import PipelineSetup

    plan = cpu_cluster_plan(workers=2, timeout=30.0)
    with cluster.connect(plan, quiet=True) as client:
        own = list(client.run(mapped_allocations).values())
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as theirs,
        Client(theirs) as client,
    ):
        client.register_plugin(PipelineSetup("cpu", None))
        callers = list(client.run(mapped_allocations).values())
    assert [w["trim"] for w in own + callers] == ["65536"] * 4  # the nanny's, as distributed sets
    assert [w["mapped"] for w in own] == [0, 0]
    # mappings all but those glibc serves from a free chunk its heap happens to hold (the
    # fresh-clone suite on a loaded machine saw 39 of 40)
    assert all(w["mapped"] >= MAPPED_MOST for w in callers), callers


PROBE = r"""
import json, sys
from tests.test_allocator import mapped_allocations
from pipeline.running import allocator
before = mapped_allocations()
set_ = allocator.tune()
after = mapped_allocations()["mapped"]
print(json.dumps({"before": before["mapped"], "set": set_, "after": after}))
"""


@pytest.mark.parametrize("own", [False, True])
def test_a_process_given_its_own_mmap_threshold_keeps_it(tmp_path, own: bool) -> None:
    """:func:`allocator.tune` in a process of its own, with distributed's trim threshold in
    its environment; with ``MALLOC_MMAP_THRESHOLD_`` set too (the user's choice), it sets
    nothing and frames stay mappings."""
    environ = {**env(), "MALLOC_TRIM_THRESHOLD_": "65536", "PYTHONPATH": os.getcwd()}
    if own:
        environ["MALLOC_MMAP_THRESHOLD_"] = str(128 << 10)
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    r = run_python([script], tmp_path, environ)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["before"] >= MAPPED_MOST and got["set"] is (not own), got
    if own:
        assert got["after"] >= MAPPED_MOST, got
    else:
        assert got["after"] == 0, got
