"""Facts about GPUs come from NVML, with CUDA's view of them: CUDA_VISIBLE_DEVICES picks and
orders the GPUs (indices or UUIDs, as CUDA reads it), and no CUDA context is made to read
them. The mapping is a pure function, tested here; the real NVML runs on the GPU host."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pipeline.devices.hardware import Facts, GpuInfo, cuda_visible, facts_from_workers, pci_bus_id
from tests.faultkit import env as child_env

UUIDS = [
    "GPU-8932f937-d72c-4106-c12f-20bd9faed9f6",
    "GPU-8932f937-aaaa-4106-c12f-20bd9faed9f6",
    "GPU-1f0e55c2-0d1e-4c3c-9b55-3a4e5f6a7b8c",
    "GPU-77aa0b1c-2d3e-4f50-8a9b-0c1d2e3f4a5b",
]


@pytest.mark.parametrize(
    ("setting", "visible"),
    [
        (None, [0, 1, 2, 3]),  # unset: every GPU, in NVML's (PCI bus) order
        ("", []),  # set but empty: none
        ("2", [2]),
        ("2,0", [2, 0]),  # CUDA numbers them in the order listed
        (" 3 , 1 ", [3, 1]),
        ("0,2,-1,1", [0, 2]),  # an invalid entry ends the list (CUDA's own example)
        ("1,7,2", [1]),  # an index past the last GPU is invalid
        ("0,0", [0]),  # one GPU is never listed twice
        ("0,,1", [0]),
        (UUIDS[2], [2]),
        (f"{UUIDS[3]},{UUIDS[0]}", [3, 0]),
        ("GPU-1f0e55c2", [2]),  # a unique prefix of a UUID is enough
        ("GPU-1F0E55C2", [2]),
        ("GPU-8932f937", []),  # a prefix two GPUs share names neither
        ("GPU-8932f937-a,2", [1, 2]),
        ("1,GPU-77aa", [1, 3]),  # indices and UUIDs mixed
        ("8932f937", []),  # a UUID is written with its GPU- prefix
        ("MIG-4d6f6b9c-1234", []),  # MIG instances are not GPUs NVML lists here
    ],
)
def test_cuda_visible_devices_maps_onto_nvml_devices(setting, visible) -> None:
    assert cuda_visible(UUIDS, setting) == visible


def test_no_gpus_no_setting() -> None:
    assert cuda_visible([], None) == [] and cuda_visible([], "0") == []


@pytest.mark.parametrize(
    "text",
    ["00000000:3B:00.0", "0000:3b:00.0", "0000:3B:00.0", " 00000000:3b:00.0\n"],
)
def test_pci_bus_ids_as_nvml_and_cuda_write_them_are_the_same(text) -> None:
    assert pci_bus_id(text) == "0000:3b:00.0"


def test_held_device_memory_is_matched_by_bus_id() -> None:
    """Memory a warm cluster's workers hold (keyed by their GPU's bus id as CUDA writes it)
    counts as free on the GPU NVML lists with that bus id, never beyond its total."""
    gib = 1 << 30
    facts = Facts(
        gpu_usable=True,
        gpu_reason="2 CUDA device(s) visible",
        gpus=(
            GpuInfo(0, "H200", 140 * gib, 100 * gib, bus_id="0000:18:00.0"),
            GpuInfo(1, "H200", 140 * gib, 130 * gib, bus_id="0000:2a:00.0"),
        ),
    )
    plus = facts.plus_held({pci_bus_id("0000:2A:00.0"): 20 * gib, "0000:99:00.0": gib})
    assert [g.free_bytes for g in plus.gpus] == [100 * gib, 140 * gib]
    assert facts.plus_held({}) is facts


def test_worker_facts_keep_their_bus_ids() -> None:
    gpu = GpuInfo(0, "H200", 8, 4, bus_id="0000:18:00.0")
    info = Facts(gpu_usable=True, gpu_reason="1 CUDA device(s) visible", gpus=(gpu,)).as_dict()
    info.update(host_available_bytes=1, memory_limit=None)
    assert facts_from_workers([info]).gpus == (gpu,)


def test_without_nvml_there_is_no_gpu() -> None:
    """Where NVML cannot be loaded (CI), the GPU backend is not usable, and says why; no CuPy
    is imported to find that out."""
    code = (
        "import sys, json\n"
        "from pipeline.devices.hardware import Facts, gpu_status\n"
        "f = Facts.local()\n"
        "print(json.dumps([gpu_status(), f.gpu_usable, len(f.gpus), 'cupy' in sys.modules]))\n"
    )
    env = child_env()
    try:
        import pynvml  # noqa: F401

        pytest.skip("NVML is installed here")
    except ImportError:
        pass
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    (usable, reason), facts_usable, n, cupy_loaded = json.loads(out.stdout)
    assert not usable and not facts_usable and n == 0 and not cupy_loaded
    assert reason


_SEEN_BY = {
    "nvml": (
        "import json, sys\n"
        "from pipeline.devices.hardware import Facts, gpu_status\n"
        "f = Facts.local()\n"
        "gpus = [[g.name, g.total_bytes, g.bus_id] for g in f.gpus]\n"
        "print(json.dumps([gpu_status()[0], gpus, f.driver, 'cupy' in sys.modules]))\n"
    ),
    "cuda": (
        "import json, cupy\n"
        "from pipeline.devices.hardware import pci_bus_id\n"
        "r = cupy.cuda.runtime\n"
        "gpus = []\n"
        "try:\n"
        "    n = r.getDeviceCount()\n"
        "except r.CUDARuntimeError:  # no device visible\n"
        "    n = 0\n"
        "for i in range(n):\n"
        "    p = r.getDeviceProperties(i)\n"
        "    name = p['name'].decode() if isinstance(p['name'], bytes) else p['name']\n"
        "    bus = pci_bus_id(cupy.cuda.Device(i).pci_bus_id)\n"
        "    gpus.append([name, p['totalGlobalMem'], bus])\n"
        "v = r.driverGetVersion()\n"
        "print(json.dumps([gpus, f'CUDA driver {v // 1000}.{(v % 1000) // 10}']))\n"
    ),
}


def _seen(by: str, visible: str | None) -> list:
    env = child_env()
    env.pop("CUDA_VISIBLE_DEVICES", None)
    if visible is not None:
        env["CUDA_VISIBLE_DEVICES"] = visible
    out = subprocess.run(
        [sys.executable, "-c", _SEEN_BY[by]], capture_output=True, text=True, env=env
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.gpu
def test_nvml_facts_are_what_cuda_sees() -> None:
    """On the GPU host, for CUDA_VISIBLE_DEVICES unset, reversed, a subset by UUID and by
    index, and empty: NVML's facts name the same GPUs (name, PCI bus id), in the same order,
    as CUDA does, with the driver CUDA reports, and about the memory CUDA reports (NVML counts
    the few hundred MiB the driver reserves); reading them imports no CuPy (so makes no CUDA
    context)."""
    import pynvml

    pynvml.nvmlInit()
    try:
        n = pynvml.nvmlDeviceGetCount()
        uuids = [pynvml.nvmlDeviceGetUUID(pynvml.nvmlDeviceGetHandleByIndex(i)) for i in range(n)]
    finally:
        pynvml.nvmlShutdown()
    uuids = [u.decode() if isinstance(u, bytes) else u for u in uuids]
    settings = [None, ",".join(str(i) for i in reversed(range(n))), uuids[-1][:12], "0", ""]
    if n > 1:
        settings.append(f"{uuids[1]},{uuids[0]}")
    for visible in settings:
        usable, gpus, driver, cupy_loaded = _seen("nvml", visible)
        cuda_gpus, cuda_driver = _seen("cuda", visible)
        assert [(g[0], g[2]) for g in gpus] == [(g[0], g[2]) for g in cuda_gpus], visible
        for (_, nvml_total, _), (_, cuda_total, _) in zip(gpus, cuda_gpus, strict=True):
            assert cuda_total <= nvml_total <= cuda_total * 1.02, visible
        assert usable == bool(cuda_gpus) and not cupy_loaded, visible
        assert driver == (cuda_driver if cuda_gpus else ""), visible


@pytest.mark.gpu
def test_local_facts_read_nvml_once() -> None:
    """On the GPU host, a GPU run's facts (``Facts.local(want_gpu=True)``, in its plan phase)
    start NVML once: whether the GPU backend can run and the GPUs listed come from one reading
    (they had started, listed and shut NVML down twice), and they list what that reading
    does."""
    code = (
        "import json, pynvml\n"
        "from pipeline.devices import hardware\n"
        "starts = []\n"
        "real = pynvml.nvmlInit\n"
        "pynvml.nvmlInit = lambda *a: (starts.append(1), real(*a))[1]\n"
        "f = hardware.Facts.local(want_gpu=True)\n"
        "n = len(starts)\n"
        "listed = hardware.nvml_gpus()\n"
        "names = [[g.name, g.bus_id, g.total_bytes] for g in listed[0]]\n"
        "got = [[g.name, g.bus_id, g.total_bytes] for g in f.gpus]\n"
        "print(json.dumps([n, f.gpu_usable, got == names, f.driver == listed[1]]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=child_env()
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [1, True, True, True]
