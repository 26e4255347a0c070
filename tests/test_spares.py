"""Spare files (pipeline.spares): writes through pre-allocated nameless files are whole,
exact and leave nothing behind; a run that uses them matches NumPy."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from pipeline import spares
from pipeline.storage import Location
from tests.conftest import make_array, read_array, reference, write_config

SHM = Path("/dev/shm")


def _fs_type(path: Path) -> str:
    return subprocess.run(
        ["stat", "-f", "-c", "%T", str(path)], capture_output=True, text=True, check=True
    ).stdout.strip()


def _roots(tmp_path: Path) -> list[Path]:
    roots = [tmp_path / "disk"]
    if SHM.is_dir() and os.access(SHM, os.W_OK):
        roots.append(SHM / f"pipeline-test-{os.getpid()}-{tmp_path.name}")
    return roots


@pytest.fixture
def roots(tmp_path: Path):
    made = _roots(tmp_path)
    spares.release()  # none left over from an earlier test in this process
    for r in made:
        r.mkdir(parents=True)
    yield made
    spares.release()
    import shutil

    for r in made:
        shutil.rmtree(r, ignore_errors=True)


def _hidden(root: Path) -> list[str]:
    return [p.name for p in root.rglob(".*")]


def test_memory_backed_agrees_with_stat(tmp_path: Path) -> None:
    assert spares.memory_backed(str(tmp_path)) == (_fs_type(tmp_path) == "tmpfs")
    if SHM.is_dir():
        assert spares.memory_backed(str(SHM / "not" / "made" / "yet")) == (_fs_type(SHM) == "tmpfs")


def _wait_ready() -> None:
    deadline = time.monotonic() + 10
    while spares.counts()["ready"] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)


def test_writes_through_spares_are_whole_and_exact(roots: list[Path]) -> None:
    rng = np.random.default_rng(3)
    for root in roots:
        # each root starts with none ready, so that "ready" below counts this root's spares
        assert spares.counts()["ready"] == 0
        loc = Location.of(str(root))
        expected = {}
        for i in range(8):
            # sizes vary, larger and smaller than the spare made after the last write
            parts = [rng.bytes(int(rng.integers(1, 3 << 20))), b"index"]
            expected[f"c/{i}/0"] = b"".join(parts)
            assert loc.write(f"c/{i}/0", parts, spares=2) == len(expected[f"c/{i}/0"])
            _wait_ready()
        for key, want in expected.items():
            got = (root / key).read_bytes()
            assert got == want, key
        assert spares.counts()["used"] == 7  # after the first, each write had one
        assert _hidden(root) == []
        # an existing key is replaced whole
        loc.write("c/0/0", [b"short"], spares=2)
        assert (root / "c/0/0").read_bytes() == b"short"
        _wait_ready()
        released = spares.release()
        assert released["used"] == 8 and released["unused"] >= 1, released
        assert released["made"] == released["used"] + released["unused"], released
        assert spares.counts() == {"made": 0, "used": 0, "ready": 0}


def test_failed_spare_write_leaves_nothing(roots: list[Path]) -> None:
    root = roots[-1]
    loc = Location.of(str(root))
    loc.write("c/0", [b"x" * 1000], spares=1)
    _wait_ready()
    used = spares.counts()["used"]
    bad = np.arange(10)[::2]  # has a size, but cannot be written: not contiguous
    with pytest.raises(TypeError):
        loc.write("c/1", [b"first part", bad], spares=1)
    assert spares.counts()["used"] == used + 1  # it went through a spare
    assert not (root / "c/1").exists()
    assert _hidden(root) == []
    assert (root / "c/0").read_bytes() == b"x" * 1000


def test_run_with_spare_files_matches_numpy(tmp_path: Path, roots: list[Path], cli) -> None:
    x = np.random.default_rng(4).standard_normal((64, 300)).astype(np.float32)
    make_array(tmp_path / "in.zarr", x, (8, 300))
    out = roots[-1] / "out.zarr"
    cfg = write_config(
        tmp_path,
        tmp_path / "in.zarr",
        out,
        output={"spare_files": 2, "shards": [16, 300], "chunks": [4, 300]},
        chunking={"block": [16, 300]},
    )
    rc, text, err = cli("plan", cfg)
    assert rc == 0, err
    assert "spare files" in text and "2 per worker" in text
    rc, text, err = cli("run", cfg, "--summary-json", tmp_path / "s.json")
    assert rc == 0, err
    assert np.array_equal(read_array(out), reference(x))
    assert _hidden(out) == []
    got = json.loads((tmp_path / "s.json").read_text())["spare_files"]
    assert set(got) == {"made", "used", "unused"} and got["made"] >= got["used"]
    assert "spare files" in text


def test_auto_is_off_for_the_cpu_and_for_urls(tmp_path: Path) -> None:
    import pipeline

    x = np.ones((10, 10), np.float32)
    make_array(tmp_path / "in.zarr", x, (5, 10))
    inproc = {"protocol": "inproc"}
    for output, cluster, want in (
        ({"store": str(SHM / "never-written.zarr")}, {}, 0),  # auto: the CPU encodes
        ({"store": str(tmp_path / "o.zarr"), "spare_files": 3}, {}, 3),
        ({"store": "memory://o.zarr", "spare_files": 3}, inproc, 0),
    ):
        cfg = write_config(tmp_path, tmp_path / "in.zarr", "", output=output, cluster=cluster)
        assert pipeline.plan(pipeline.load_config(cfg)).sink.spares == want, output


@pytest.mark.gpu
def test_gpu_run_to_tmpfs_uses_spares_and_matches_numpy(tmp_path: Path, roots: list[Path], cli):
    import pipeline

    if not spares.memory_backed(str(roots[-1])):
        pytest.skip("no tmpfs at /dev/shm")
    x = np.random.default_rng(5).standard_normal((256, 4096)).astype(np.float32)
    make_array(tmp_path / "in.zarr", x, (8, 4096))
    out = roots[-1] / "out.zarr"
    cfg = write_config(
        tmp_path,
        tmp_path / "in.zarr",
        out,
        backend="gpu",
        # one worker, so that after its first writes each write finds a spare made
        cluster={"threads_per_worker": 2, "workers_per_gpu": 1, "dashboard": ""},
        output={"shards": [8, 4096], "chunks": [8, 4096]},
        chunking={"block": [8, 4096]},
    )
    assert pipeline.plan(pipeline.load_config(cfg)).sink.spares == 2  # auto: GPU, tmpfs
    rc, _, err = cli("run", cfg, "--summary-json", tmp_path / "s.json")
    assert rc == 0, err
    got = json.loads((tmp_path / "s.json").read_text())["spare_files"]
    assert got["used"] > 0 and got["made"] >= got["used"]
    assert np.array_equal(read_array(out), reference(x))
    assert _hidden(out) == []
