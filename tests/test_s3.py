"""Remote stores end to end: S3 against a real S3-compatible server, file:// and memory:// URLs.

The S3 server is moto's, started as a separate process on 127.0.0.1 for this module; the
pipeline talks to it through s3fs exactly as it would to AWS (endpoint_url, key and secret in
``storage_options``), from the client and from the workers' own processes.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
import zarr

from pipeline.errors import ConfigError, InputError, OutputError, PipelineError
from pipeline.store.location import WRITE_PROBE, Location, is_write_probe
from tests.conftest import make_array, read_array, record_of, reference, write_config
from tests.faultkit import (
    end_process,
    env,
    error_of,
    go_on,
    held_at_complete_mark,
    holding_input_lock,
    kill_group,
    killed_generation,
    one_line_error,
    paused_at_lock,
    refused,
    run_python,
)
from tests.storekit import ODD_NAMES, check_literal_keys, round_trip, zarr_store

pytest.importorskip("s3fs")
pytest.importorskip("moto")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _moto_server(environ: dict[str, str] | None = None, log: Path | None = None) -> Iterator[str]:
    """A moto S3 server in a process of its own, with ``environ`` (or this process's): its
    address, once it answers. ``log``: the file its request log goes to (one line a request,
    as werkzeug writes it: '"GET /bucket/key HTTP/1.1" 200'), whole once the block is left."""
    port = _free_port()
    logged = open(log, "w") if log is not None else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=logged,
        env=environ,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(url, timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto's S3 server did not start") from None
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
        if log is not None:
            logged.close()  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """The address of a moto S3 server running in its own process."""
    with _moto_server() as url:
        yield url


@pytest.fixture
def bucket(s3_endpoint: str) -> tuple[str, dict[str, Any]]:
    """A fresh bucket: (its s3:// URL, the storage_options that reach it)."""
    import s3fs

    options = {"endpoint_url": s3_endpoint, "key": "testing", "secret": "testing", "anon": False}
    name = f"test-{uuid.uuid4().hex[:12]}"
    s3fs.S3FileSystem(skip_instance_cache=True, **options).mkdir(name)
    return f"s3://{name}", options


def _zarr_s3(url: str, options: dict[str, Any]) -> Any:
    from zarr.storage import FsspecStore

    return zarr.open_array(
        store=FsspecStore.from_url(url, storage_options=options, read_only=True), mode="r"
    )


def test_input_and_output_on_s3(tmp_path, cli, bucket) -> None:
    url, options = bucket
    from zarr.storage import FsspecStore

    x = np.random.default_rng(0).standard_normal((40, 30, 7)).astype(np.float32)
    store = FsspecStore.from_url(f"{url}/in.zarr", storage_options=options)
    arr = zarr.create_array(store=store, shape=x.shape, dtype=x.dtype, chunks=(5, 30, 7))
    arr[...] = x
    cfg = write_config(
        tmp_path,
        "",
        "",
        input={"store": f"{url}/in.zarr", "storage_options": options},
        output={"store": f"{url}/out.zarr", "storage_options": options},
        chunking={"target_bytes": 20_000},
    )
    rc, out, err = cli("run", cfg, "--summary-json", tmp_path / "s.json")
    assert rc == 0, err
    y = _zarr_s3(f"{url}/out.zarr", options)
    assert np.array_equal(y[...], reference(x))
    assert record_of(y.attrs)["status"] == "complete"
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["blocks_done"] == summary["blocks_total"] > 1
    assert summary["stored_bytes_written"] > 0
    # credentials never reach the summary
    assert "testing" not in (tmp_path / "s.json").read_text()
    assert summary["config"]["input"]["storage_options"]["secret"] == "***"
    # the run record is gone, and a second run sees a complete output
    assert not Location.of(f"{url}/out.zarr", options).exists(".pipeline")
    e = refused("run", cfg)
    assert isinstance(e, OutputError) and e.status == "complete", e
    rc, out, err = cli("verify", cfg, "--all")
    assert rc == 0, err + out


def test_resume_notices_an_s3_input_rewritten_since(tmp_path, cli, bucket) -> None:
    """An object store has no file times to walk: the objects' ETags tell that a chunk of the
    input was rewritten (same size, other values) since the output was made."""
    url, options = bucket
    from zarr.storage import FsspecStore

    from pipeline.errors import OutputError

    x = np.random.default_rng(4).standard_normal((20, 30)).astype(np.float32)
    store = FsspecStore.from_url(f"{url}/in.zarr", storage_options=options)
    arr = zarr.create_array(
        store=store, shape=x.shape, dtype=x.dtype, chunks=(5, 30), compressors=None
    )
    arr[...] = x
    cfg = write_config(
        tmp_path,
        "",
        "",
        input={"store": f"{url}/in.zarr", "storage_options": options},
        output={"store": f"{url}/out.zarr", "storage_options": options},
    )
    assert cli("run", cfg)[0] == 0
    rc, _, err = cli("run", cfg, "--resume")
    assert rc == 0 and "nothing to do" in err, err
    arr[:5] = x[:5] + 1  # one chunk object rewritten, to the same size
    with pytest.raises(OutputError) as e:
        cli("--debug", "run", cfg, "--resume")
    assert e.value.changed == ["input.data"]
    # said as an object store's identity is kept: ETags, not file times or hard links
    assert "ETag" in str(e.value) and "hard links" not in str(e.value), e.value


def test_generate_run_verify_on_s3(tmp_path, cli, bucket) -> None:
    """Workers create the input on S3 too (generate), sharded, then the run reads it back."""
    url, options = bucket
    cfg = write_config(
        tmp_path,
        "",
        "",
        input={
            "store": f"{url}/gen.zarr",
            "storage_options": options,
            "generate": {"shape": [24, 16, 9], "chunks": [2, 16, 9], "shards": [8, 16, 9]},
        },
        output={"store": f"{url}/res.zarr", "storage_options": options, "chunks": [4, 8, 9]},
    )
    rc, _, err = cli("generate", cfg, "--progress", "none")
    assert rc == 0, err
    rc, _, err = cli("run", cfg)
    assert rc == 0, err
    x = _zarr_s3(f"{url}/gen.zarr", options)[...]
    y = _zarr_s3(f"{url}/res.zarr", options)
    assert y.chunks == (4, 8, 9) and y.shards is not None
    assert np.array_equal(y[...], reference(x))


def test_a_complete_s3_output_missing_a_shard_object_fails_verify(tmp_path, cli, bucket) -> None:
    """A shard object of a complete output on S3 deleted since the run (read as the fill
    value): a verify that compared only another block had passed it, and `run --resume` had
    said "nothing to do". The output's record of its objects' keys and sizes, against one
    listing, fails it; `run --overwrite` writes it again."""
    import s3fs

    url, options = bucket
    x = np.random.default_rng(4).standard_normal((16, 9)).astype(np.float32)
    make_array(tmp_path / "in.zarr", x, (4, 9))
    out = f"{url}/damaged.zarr"
    cfg = write_config(
        tmp_path,
        tmp_path / "in.zarr",
        "",
        output={"store": out, "storage_options": options, "chunks": [4, 9], "shards": [8, 9]},
        chunking={"block": [8, 9]},
    )
    rc, _, err = cli("run", cfg, "--progress", "none")
    assert rc == 0, err
    # verify --samples 1 (seed 0) compares block [1, 0]: the shard of block [0, 0] goes
    s3fs.S3FileSystem(skip_instance_cache=True, **options).rm(f"{out[5:]}/c/0/0")
    rc, text, err = cli("verify", cfg, "--samples", "1")
    assert rc == 1 and "mismatched     0" in text, err
    assert "1 of its 2 shard files gone (c/0/0)" in err, err
    rc, _, err = cli("run", cfg, "--resume", "--progress", "none")
    assert rc == 1 and "it is not what the run wrote" in err, err
    rc, _, err = cli("run", cfg, "--overwrite", "--progress", "none")
    assert rc == 0, err
    y = _zarr_s3(out, options)[...]
    assert y.tobytes() == reference(x).tobytes()
    rc, _, err = cli("verify", cfg, "--samples", "1")
    assert rc == 0, err


def test_s3_location_primitives(bucket) -> None:
    """What the run record relies on: exclusive create, and listings that see other
    processes' writes (no stale listing cache)."""
    import s3fs

    url, options = bucket
    loc = Location.of(f"{url}/rec", options)
    assert loc.list("done") == [] and not loc.exists("done")
    assert loc.create_exclusive("lock", b"me")
    assert not loc.create_exclusive("lock", b"someone else")
    assert loc.read("lock") == b"me"
    loc.write("done/0.0", [b""])
    assert loc.list("done") == ["0.0"]
    # another process's writes: an independent client, then this location lists again
    other = s3fs.S3FileSystem(skip_instance_cache=True, **options)
    other.pipe_file(f"{url}/rec/done/0.1", b"")
    assert loc.list("done") == ["0.0", "0.1"]
    assert loc.exists("done/0.1")
    loc.delete("done", recursive=True)
    assert loc.list("done") == []


def test_unwritable_s3_output_is_one_line(tmp_path, cli, bucket) -> None:
    url, options = bucket
    x = np.arange(100, dtype=np.float32).reshape(10, 10)
    make_array(tmp_path / "in.zarr", x, (5, 10))
    cfg = write_config(
        tmp_path,
        tmp_path / "in.zarr",
        "",
        output={"store": f"{url}-missing/out.zarr", "storage_options": options},
    )
    rc, _, err = cli("run", cfg)
    assert rc == 1
    assert err.count("\n") == 1 and "testing" not in err, err  # one line, no credentials
    e = refused("run", cfg)
    assert isinstance(e, OutputError) and e.output == f"{url}-missing/out.zarr", e
    assert err == f"error: {e}\n"


@pytest.mark.parametrize(("name", "sibling"), ODD_NAMES, ids=lambda s: repr(s))
def test_odd_names_on_s3_end_to_end(tmp_path, cli, bucket, name, sibling) -> None:
    """Input and output named with glob characters: run, interrupted run, resume, refused
    rerun, overwrite; stores whose names the output's name matches as a pattern keep their
    files. (A local cluster of threads: test_input_and_output_on_s3 has worker processes.)"""
    url, options = bucket
    round_trip(
        cli,
        tmp_path,
        f"{url}/in {name}",
        f"{url}/{name}",
        options,
        siblings=(f"{url}/{sibling}",),
    )


def test_s3_keys_are_literal(bucket) -> None:
    url, options = bucket
    check_literal_keys(Location.of(f"{url}/s [0]", options))


def test_write_probe_leaves_nothing(bucket) -> None:
    import s3fs

    url, options = bucket
    fs = s3fs.S3FileSystem(skip_instance_cache=True, **options)
    Location.of(f"{url}/out[v0].zarr", options).writable_probe()
    assert fs.find(url) == []
    with pytest.raises(OutputError) as e:
        Location.of(f"{url}-missing/out[v0].zarr", options).writable_probe()
    assert e.value.output == f"{url}-missing/out[v0].zarr"
    assert fs.find(url) == []


@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_write_probe_leaves_another_run_s_probe_alone(tmp_path, bucket, where) -> None:
    """Two runs probe one store at once (two writing variables into one group): each writes
    and deletes its own object, so neither deletes the other's nor finds it after deleting
    its own (one shared name had failed a run on S3 with "... is still there after it was
    deleted"). Another run's probe in flight, of this release's name or an older one's,
    is there before and after, byte for byte."""
    url, options = (str(tmp_path / "out.zarr"), {}) if where == "local" else bucket
    loc = Location.of(url, options)
    others = [WRITE_PROBE, f"{WRITE_PROBE}-{'0' * 32}"]
    for other in others:
        loc.write(other, [b"in flight"])
    loc.writable_probe()
    loc.writable_probe()
    assert loc.list("") == sorted(others)
    assert all(loc.read(o) == b"in flight" for o in others)
    assert all(is_write_probe(o) for o in others)
    assert not is_write_probe(f"{WRITE_PROBE}-x") and not is_write_probe(f"{WRITE_PROBE}.tmp")


def test_zip_input_on_s3(tmp_path, cli, bucket) -> None:
    """A chained URL: a zip (written by zarr's ZipStore) in a bucket, options nested under
    the inner file system's name, as fsspec takes them."""
    import s3fs
    from zarr.storage import ZipStore

    url, options = bucket
    x = np.random.default_rng(4).standard_normal((12, 10)).astype(np.float32)
    store = ZipStore(tmp_path / "in.zip", mode="w")
    zarr.create_array(store=store, shape=x.shape, dtype=x.dtype, chunks=(4, 5))[...] = x
    store.close()
    s3fs.S3FileSystem(skip_instance_cache=True, **options).put_file(
        str(tmp_path / "in.zip"), f"{url}/data [1].zip"
    )
    cfg = write_config(
        tmp_path,
        "",
        tmp_path / "out.zarr",
        input={"store": f"zip::{url}/data [1].zip", "storage_options": {"s3": options}},
        cluster={"protocol": "inproc"},
    )
    rc, _, err = cli("run", cfg)
    assert rc == 0, err
    assert np.array_equal(read_array(tmp_path / "out.zarr"), reference(x))


def test_file_urls(tmp_path, cli) -> None:
    x = np.random.default_rng(2).standard_normal((50, 20)).astype(np.float64)
    make_array(tmp_path / "in.zarr", x, (10, 20))
    cfg = write_config(tmp_path, f"file://{tmp_path}/in.zarr", f"file://{tmp_path}/out.zarr")
    rc, _, err = cli("run", cfg)
    assert rc == 0, err
    assert np.array_equal(read_array(tmp_path / "out.zarr"), reference(x))


def test_memory_urls_need_an_in_process_cluster(tmp_path, cli) -> None:
    from zarr.storage import FsspecStore

    x = np.random.default_rng(3).standard_normal((30, 10)).astype(np.float32)
    root = f"memory://{uuid.uuid4().hex}"
    arr = zarr.create_array(
        store=FsspecStore.from_url(f"{root}/in.zarr"), shape=x.shape, dtype=x.dtype, chunks=(5, 10)
    )
    arr[...] = x
    # worker processes: asked for, or the default for a CPU run of more than 4 task threads
    for cluster in ({"protocol": "tcp"}, {"workers": 8}):
        cfg = write_config(tmp_path, f"{root}/in.zarr", f"{root}/out.zarr", cluster=cluster)
        e = refused("run", cfg)
        assert isinstance(e, ConfigError)
        assert (e.key, e.store) == ("input.store", f"{root}/in.zarr")
    # threads of this process: asked for, or the default for a small CPU run
    for i, cluster in enumerate(({"protocol": "inproc"}, {})):
        out = f"{root}/out{i}.zarr"
        cfg = write_config(tmp_path, f"{root}/in.zarr", out, cluster=cluster)
        rc, _, err = cli("run", cfg)
        assert rc == 0, err
        y = zarr.open_array(store=FsspecStore.from_url(out, read_only=True), mode="r")
        assert np.array_equal(y[...], reference(x))


@pytest.mark.parametrize("where", ["input", "output", "zip input"])
def test_an_s3_store_without_credentials_is_one_line_naming_the_fix(
    tmp_path, cli, bucket, monkeypatch, where: str
) -> None:
    """No key, no secret, no AWS environment: botocore's NoCredentialsError came out as its
    bare name (helper-41), then for an output and a zip in a bucket inside lines that named
    the wrong fix ("choose a writable store", helper-43); each line says what gives
    credentials, before anything is written."""
    import s3fs
    from zarr.storage import FsspecStore, ZipStore

    url, options = bucket
    x = np.arange(20, dtype=np.float32).reshape(4, 5)
    store = FsspecStore.from_url(f"{url}/in.zarr", storage_options=options)  # credentials
    zarr.create_array(store=store, shape=x.shape, dtype=x.dtype, chunks=(2, 5))[...] = x
    zipped = ZipStore(tmp_path / "in.zip", mode="w")
    zarr.create_array(store=zipped, shape=x.shape, dtype=x.dtype, chunks=(2, 5))[...] = x
    zipped.close()
    s3fs.S3FileSystem(skip_instance_cache=True, **options).put_file(
        str(tmp_path / "in.zip"), f"{url}/in.zip"
    )
    for var in [v for v in os.environ if v.startswith("AWS_")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    bare = {"endpoint_url": options["endpoint_url"]}
    sections = {
        "input": {
            "input": {"store": f"{url}/in.zarr", "storage_options": bare},
        },
        "output": {
            "input": {"store": f"{url}/in.zarr", "storage_options": options},
            "output": {"store": f"{url}/out.zarr", "storage_options": bare},
        },
        "zip input": {
            "input": {"store": f"zip::{url}/in.zip", "storage_options": {"s3": bare}},
        },
    }[where]
    cfg = write_config(tmp_path, "", tmp_path / "out.zarr", **sections)
    rc, _, err = cli("run", cfg)
    assert rc == 1
    line = one_line_error(err)
    assert "credentials" in line and "anon: true" in line, line
    assert "writable store" not in line and "NoCredentialsError" not in line, line
    # which store lacks them: the input's line had said "an S3 store needs credentials"
    side = where.split()[-1]
    assert f"{side} store" in line and url in line, line
    assert not (tmp_path / "out.zarr").exists()
    import pipeline
    from pipeline.errors import PipelineError

    # the Python API raises what the command line prints (botocore's bare NoCredentialsError
    # had come out of pipeline.plan and pipeline.run for an input: helper-102)
    calls = [pipeline.run] + ([pipeline.plan] if where != "output" else [])
    for call in calls:
        with pytest.raises(PipelineError) as got:
            call(cfg)
        said = str(got.value)
        assert "credentials" in said and "anon: true" in said and "\n" not in said, said
        assert f"{side} store" in said, said
    assert not (tmp_path / "out.zarr").exists()


def test_a_plan_s_repr_shows_no_credential(bucket) -> None:
    """``pipeline.plan(cfg)`` ending a notebook's cell displays ``repr(plan)``, which showed
    storage_options whole (brk76: the S3 key and secret), through its config, its source's and
    sink's Locations and its ledger. Every value of storage_options is ``***`` there now, as
    in the config's own repr and str; the plan still runs with the real credentials."""
    import pipeline

    url, options = bucket
    key, secret = "AKIDPLANREPR42", "S3CR3TPLANREPR987"  # moto takes any key and secret
    options = {**options, "key": key, "secret": secret}
    x = np.arange(64, dtype=np.float32).reshape(8, 8)
    zarr.create_array(
        store=_s3_store(f"{url}/in.zarr", options), shape=x.shape, dtype=x.dtype, chunks=(4, 8)
    )[...] = x
    cfg = {
        "input": {"store": f"{url}/in.zarr", "storage_options": options},
        "output": {"store": f"{url}/out.zarr", "storage_options": options},
        "stages": [{"op": "square"}],
    }
    plan = pipeline.plan(cfg)
    shown = [repr(plan), str(plan), repr(plan.config), str(plan.config)]
    shown += [repr(plan.source.info.location), repr(plan.sink), repr(plan.config.input)]
    for text in shown:
        assert key not in text and secret not in text, text
    assert "'secret': '***'" in repr(plan.config.input), repr(plan.config.input)
    assert plan.config.input.storage_options["secret"] == secret  # the data itself is whole
    summary = pipeline.run(cfg)
    assert summary.status == "complete" and secret not in repr(summary)
    assert np.array_equal(_zarr_s3(f"{url}/out.zarr", options)[...], x * x)


def _s3_store(url: str, options: dict[str, Any]) -> Any:
    from zarr.storage import FsspecStore

    return FsspecStore.from_url(url, storage_options=options)


def _write_input(url: str, options: dict[str, Any]) -> np.ndarray:
    """Write a 4x5 float32 array, chunks of (2, 5), at ``{url}/in.zarr`` with ``options``;
    the array written."""
    x = np.arange(20, dtype=np.float32).reshape(4, 5)
    zarr.create_array(
        store=_s3_store(f"{url}/in.zarr", options), shape=x.shape, dtype=x.dtype, chunks=(2, 5)
    )[...] = x
    return x


def _sections_over_an_input(url: str, options: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Write a 4x5 float32 array at ``{url}/in.zarr`` (:func:`_write_input`); a config's
    input and output sections that read it and write ``{url}/out.zarr``, both with
    ``options``."""
    _write_input(url, options)
    return {
        "input": {"store": f"{url}/in.zarr", "storage_options": options},
        "output": {"store": f"{url}/out.zarr", "storage_options": options},
    }


@pytest.mark.parametrize("secret", ["S3CR3TURL987", "wJalr/K7MDENG/bPxRfi+Y"])
def test_credentials_in_an_s3_url_are_refused_in_one_line_unsaid(
    tmp_path, cli, bucket, secret: str
) -> None:
    """``s3://KEY:SECRET@bucket/in.zarr``: s3fs read ``KEY:SECRET@bucket`` as the bucket's
    name, and botocore's ParamValidationError, many lines long, quoted it whole (brk76); an
    AWS secret holding '/' was not even masked as a URL's password. The config refuses such a
    URL, input or output, in one line naming storage_options and neither the key nor the
    secret; the same credentials given there read the bucket."""
    import pipeline

    url, options = bucket
    key = "AKIDINURL42"
    x = np.arange(16, dtype=np.float32).reshape(4, 4)
    zarr.create_array(
        store=_s3_store(f"{url}/in.zarr", options), shape=x.shape, dtype=x.dtype, chunks=(2, 4)
    )[...] = x
    with_creds = url.replace("s3://", f"s3://{key}:{secret}@")
    endpoint = {"endpoint_url": options["endpoint_url"]}
    for side in ("input", "output"):
        sections = {
            "input": {"store": f"{url}/in.zarr", "storage_options": options},
            "output": {"store": f"{url}/out.zarr", "storage_options": options},
        }
        sections[side] = {"store": f"{with_creds}/{side}.zarr", "storage_options": endpoint}
        cfg = write_config(tmp_path, "", "", **sections)
        for command in ("plan", "run"):
            rc, out, err = cli(command, cfg)
            line = one_line_error(err)
            assert rc == 1 and f"{side}.store" in line and "storage_options" in line, line
            assert "{key: ..., secret: ...}" in line and f"{url}/{side}.zarr" in line, line
            for s in (key, secret, secret.split("/")[-1]):
                assert s not in out + err, out + err
        with pytest.raises(ConfigError) as e:
            pipeline.plan(cfg)
        assert e.value.key == f"{side}.store", e.value.data
        assert key not in str(e.value) + str(e.value.data) and secret not in str(e.value), e.value
    creds = {**endpoint, "key": key, "secret": secret}  # the fix the line names
    cfg = write_config(
        tmp_path,
        "",
        "",
        input={"store": f"{url}/in.zarr", "storage_options": creds},
        output={"store": f"{url}/out.zarr", "storage_options": creds},
    )
    rc, out, err = cli("run", cfg)
    assert rc == 0 and secret not in out + err, err
    assert np.array_equal(_zarr_s3(f"{url}/out.zarr", options)[...], reference(x))


@pytest.mark.parametrize("where", ["input", "output"])
@pytest.mark.parametrize(
    ("wrong", "reason"),
    [
        ({"bogus_option": 1}, "bogus_option"),
        ({"config_kwargs": "x"}, "given as text, where s3fs's S3FileSystem takes a mapping"),
        ({"endpoint_url": "notaurl-SECRETISH"}, "Invalid endpoint"),
        (
            {"config_kwargs": {"signature_version": "s3v5SECRETISH"}},
            "signature_version: given as text that is none of the values botocore's signer",
        ),
        ({"signature_version": "s3v4"}, "'signature_version'"),
        ({"secret": 12345678}, "secret: given as an integer, where s3fs's S3FileSystem takes text"),
        ({"asynchronous": True}, "remove asynchronous"),
        (
            {"config_kwargs": {"connect_timeout": "SECRETISH"}},
            "connect_timeout: given as text, where botocore's Config takes a number",
        ),
        ({"client_kwargs": {"verify": "/no/SECRETISH.pem"}}, "path of a CA bundle"),
    ],
    ids=[
        "unknown",
        "config_kwargs",
        "endpoint",
        "signature",
        "top-signature",
        "int",
        "async",
        "timeout",
        "verify",
    ],
)
def test_storage_options_that_make_no_file_system_are_one_config_line(
    tmp_path, cli, bucket, where: str, wrong: dict[str, Any], reason: str
) -> None:
    """An unknown s3fs option, a config_kwargs that is no mapping (now refused at its own key,
    where the config is read: ``urls.mapping_option``), an endpoint that is no URL:
    s3fs takes them and fails at its first request, so plan, run and verify said the
    library's bare TypeError, AttributeError or ValueError (and for the output a line
    saying "choose a writable store"), and pipeline.run raised them as they were. One
    ConfigError now names the section's storage_options and the library's reason, with no
    option's value in it (brk76 f3). Likewise what botocore learns only when it signs the
    first request (a signature version it does not know, which its error quoted, now
    refused at its own key where the config is read, its value unsaid where it is near no
    version botocore knows: ``urls.choice_option``; a secret that YAML read as a number,
    there too: ``urls.text_option``), what botocore's HTTP layer learns only when it sends (a
    ``connect_timeout`` that is no number, a CA bundle that is not there: 'HTTPClientError:
    An HTTP Client raised an unhandled exception', after s3fs's retries) and
    ``asynchronous: true`` (fsspec's "Loop is not running")."""
    import s3fs

    import pipeline

    url, options = bucket
    secret_options = {**options, "secret": "TOPSECRETVALUE42"}
    sections = _sections_over_an_input(url, options)
    sections[where] = {**sections[where], "storage_options": {**secret_options, **wrong}}
    cfg = write_config(tmp_path, "", "", **sections)
    for command in ("plan", "run", "verify"):
        rc, _, err = cli(command, cfg)
        assert rc != 0, (command, err)
        line = one_line_error(err)
        assert f"{where}.storage_options" in line and reason in line, (command, line)
        assert "TOPSECRETVALUE42" not in line and "SECRETISH" not in line, line
        assert "writable store" not in line and "--debug" not in line, line
    for call in (pipeline.run, pipeline.plan):  # pipeline.plan opens the output's too
        with pytest.raises(ConfigError) as got:
            call(cfg)
        # asynchronous, config_kwargs, secret, a timeout: the option's own key, where the
        # config is read
        own = next((k for k, v in wrong.items() if k in ("asynchronous", "secret") or v == "x"), "")
        own = "config_kwargs.connect_timeout" if "connect_timeout" in str(wrong) else own
        own = "config_kwargs.signature_version" if "s3v5" in str(wrong) else own
        key = f"{where}.storage_options{'.' + own if own else ''}"
        assert got.value.key == key, got.value
        assert reason in str(got.value) and "TOPSECRETVALUE42" not in str(got.value), got.value
        assert "TOPSECRETVALUE42" not in repr(got.value.data), got.value.data
    s3 = s3fs.S3FileSystem(skip_instance_cache=True, **options)
    assert not s3.exists(f"{url}/out.zarr")  # refused before anything was written


@pytest.mark.parametrize("where", ["input", "output"])
@pytest.mark.parametrize(
    ("wrong", "right", "key"),
    [
        ({"anon": "false"}, {"anon": False}, "anon"),
        ({"use_ssl": "false"}, {"use_ssl": False}, "use_ssl"),
        ({"use_listings_cache": "no"}, {"use_listings_cache": False}, "use_listings_cache"),
        (
            {"client_kwargs": {"use_ssl": "x"}},
            {"client_kwargs": {"use_ssl": False}},
            "client_kwargs.use_ssl",
        ),
        (
            {"config_kwargs": {"use_fips_endpoint": "false"}},
            {"config_kwargs": {"use_fips_endpoint": False}},
            "config_kwargs.use_fips_endpoint",
        ),
        (
            {"config_kwargs": {"s3": {"addressing_style": "path", "use_accelerate_endpoint": "0"}}},
            {
                "config_kwargs": {
                    "s3": {"addressing_style": "path", "use_accelerate_endpoint": False}
                }
            },
            "config_kwargs.s3.use_accelerate_endpoint",
        ),
    ],
    ids=["anon", "use_ssl", "listings", "client-use_ssl", "config-fips", "config-s3-accelerate"],
)
def test_a_boolean_s3_option_given_as_text_is_one_config_line(
    tmp_path, cli, bucket, where: str, wrong: dict[str, Any], right: dict[str, Any], key: str
) -> None:
    """s3fs (and botocore, fsspec) test their boolean options for truth: ``anon: 'false'``
    (quoted in YAML, or a string in a mapping) was true, so the run went on with unsigned
    requests, another credentials mode, and said nothing. One ConfigError line names the key
    and the fix (a YAML boolean), not the value; nothing written. The option names are read
    from the libraries' signatures (``urls.text_bool_option``). The line is the config's,
    where it is read (``problems._store_option_problem``): it names the file and the option's
    line, as every other problem of a config does (it had come only when the store was
    opened, naming neither), and ``pipeline.plan`` refuses the output's too."""
    import botocore
    import s3fs

    import pipeline

    url, options = bucket
    text = s3fs.S3FileSystem(skip_instance_cache=True, **{**options, "anon": "false"})
    text.connect()
    assert text.s3.meta.config.signature_version is botocore.UNSIGNED  # 'false' was true
    sections = _sections_over_an_input(url, options)
    sections[where] = {**sections[where], "storage_options": {**options, **wrong}}
    cfg = write_config(tmp_path, "", "", **sections)
    lines = cfg.read_text().splitlines()
    for command in ("plan", "run"):
        rc, _, err = cli(command, cfg)
        line = one_line_error(err)
        assert rc != 0 and f"{where}.storage_options.{key}: given as text" in line, line
        assert "YAML boolean" in line and "testing" not in line, line
        at = int(line.removeprefix(f"error: {cfg}:").split(":", 1)[0])
        assert lines[at - 1].strip().startswith(f"{key.rsplit('.', 1)[-1]}:"), (at, lines)
    for call in (pipeline.run, pipeline.plan):
        with pytest.raises(ConfigError) as got:
            call(cfg)
        assert got.value.key == f"{where}.storage_options.{key}", got.value
        assert got.value.file == str(cfg) and got.value.line == at, got.value.data
        assert "testing" not in str(got.value) + repr(got.value.data), got.value
    fs = s3fs.S3FileSystem(skip_instance_cache=True, **options)
    assert not fs.exists(f"{url}/out.zarr")  # refused before anything was written
    sections[where]["storage_options"] = {**options, **right}
    assert pipeline.plan(write_config(tmp_path, "", "", **sections))  # a boolean is taken


@pytest.mark.parametrize("where", ["input", "output"])
def test_a_boolean_option_given_as_text_names_where_it_came_from(tmp_path, where: str) -> None:
    """``anon: 'false'`` (or botocore's ``config_kwargs``' ``use_fips_endpoint: 'false'``) is
    refused where the config is read, naming where the text came from as every other
    problem of a config does (``problems._where``): an override by its key and no line of
    the file, a mapping given to the API as the mapping, a model made from keywords as its
    call; never the value, nor the credentials beside it. It had been refused only where
    the store was opened, at plan time, naming none of them (``file`` and ``line`` None).
    Nothing is asked of a server: the check reads the libraries' signatures."""
    import pipeline
    from pipeline.config import InputConfig, OutputConfig

    options = {"key": "AKIDTEXTBOOL", "secret": "SECRETTEXTBOOL", "anon": False}
    sections = {
        "input": {"store": "s3://b/in.zarr", "storage_options": options},
        "output": {"store": "s3://b/out.zarr", "storage_options": options},
    }
    cfg = write_config(tmp_path, "", "", **sections)
    pipeline.load_config(cfg)  # the booleans are taken

    def refused(call: Any, *args: Any, **kwargs: Any) -> ConfigError:
        with pytest.raises(ConfigError) as got:
            call(*args, **kwargs)
        said = str(got.value) + repr(got.value.data)
        assert "TEXTBOOL" not in said and "YAML boolean" in said, said
        return got.value

    fips = f"{where}.storage_options.config_kwargs.use_fips_endpoint"
    e = refused(pipeline.load_config, cfg, {fips: "false"})
    assert e.key == fips and e.data.get("override") == fips and e.line is None, e.data
    assert str(e).startswith(f"override {fips!r} (given with {cfg}"), e
    merged = {f"{where}.storage_options": {"anon": "false"}}  # merged into the file's options
    e = refused(pipeline.load_config, cfg, merged)
    anon = f"{where}.storage_options.anon"
    assert e.key == anon and e.data.get("override") == anon and e.line is None, e.data
    mapping = {**yaml.safe_load(cfg.read_text())}
    mapping[where] = {**mapping[where], "storage_options": {**options, "anon": "false"}}
    e = refused(pipeline.plan, mapping)
    assert e.key == anon and str(e).startswith(f"the config mapping: {anon}: given as text"), e
    e = refused(pipeline.Config, **mapping)
    assert e.key == anon and str(e).startswith(f"pipeline.Config(): {anon}: given as text"), e
    section = InputConfig if where == "input" else OutputConfig
    e = refused(section, **mapping[where])
    assert e.key == "storage_options.anon", e
    assert str(e).startswith(f"pipeline.config.{section.__name__}(): storage_options.anon"), e


def _refused_s3_option(
    tmp_path: Path,
    cli: Any,
    where: str,
    options: dict[str, Any],
    key: str,
    secret: dict[str, str],
    check: Callable[[int, str], None],
) -> dict[str, dict[str, Any]]:
    """A config of two S3 stores, ``s3://b/in.zarr`` and ``s3://b/out.zarr``, each given
    ``secret`` as its credentials and the section ``where`` ``options`` too, run by ``plan``
    and ``run``: ``check`` is given each one's exit status and one-line error, which then
    names the option ``key``'s line in the file (a list's item's, for an index);
    ``pipeline.plan`` of the same config as a mapping refuses that section's
    ``storage_options.{key}``. Returns the sections (``where``'s a copy of its own), to write
    a config that is taken. Nothing is asked of a server."""
    import pipeline

    sections = {
        "input": {"store": "s3://b/in.zarr", "storage_options": secret},
        "output": {"store": "s3://b/out.zarr", "storage_options": secret},
    }
    sections[where] = {**sections[where], "storage_options": {**secret, **options}}
    cfg = write_config(tmp_path, "", "", **sections)
    lines = cfg.read_text().splitlines()
    for command in ("plan", "run"):
        rc, _, err = cli(command, cfg)
        line = one_line_error(err)
        check(rc, line)
        at = int(line.removeprefix(f"error: {cfg}:").split(":", 1)[0])
        last = key.rsplit(".", 1)[-1]  # a list's item: its index
        assert lines[at - 1].strip().startswith("- " if last.isdigit() else f"{last}:"), at
    with pytest.raises(ConfigError) as got:
        pipeline.plan(yaml.safe_load(cfg.read_text()))
    assert got.value.key == f"{where}.storage_options.{key}", got.value
    return sections


@pytest.mark.parametrize("where", ["input", "output"])
@pytest.mark.parametrize(
    ("options", "key", "kind"),
    [
        ({"client_kwargs": 5}, "client_kwargs", "an integer"),
        ({"config_kwargs": "connect_timeout=5"}, "config_kwargs", "text"),
        ({"s3_additional_kwargs": ["ACL", "private"]}, "s3_additional_kwargs", "a list"),
        ({"config_kwargs": {"s3": 5}}, "config_kwargs.s3", "an integer"),
        ({"config_kwargs": {"retries": "3"}}, "config_kwargs.retries", "text"),
    ],
    ids=["client", "config", "s3-additional", "config-s3", "config-retries"],
)
def test_an_s3_option_that_takes_a_mapping_given_another_kind_is_one_config_line(
    tmp_path, cli, where: str, options: dict[str, Any], key: str, kind: str
) -> None:
    """s3fs takes ``client_kwargs``, ``config_kwargs`` and ``s3_additional_kwargs`` (and
    botocore's ``Config`` its ``s3``, ``retries``, ... in ``config_kwargs``) as mappings;
    another kind had failed where the store was opened, as "(AttributeError: 'int' object
    has no attribute 'copy')" (``s3_additional_kwargs``: that bare AttributeError, a
    traceback). One line where the config is read names the key, the kind given in plain
    words and the fix, at the option's line; never the value. Nothing is asked of a server."""
    import pipeline

    secret = {"key": "AKIDMAPPING", "secret": "SECRETMAPPING"}
    full = f"{where}.storage_options.{key}"

    def check(rc: int, line: str) -> None:
        assert rc != 0 and f"{full}: given as {kind}" in line, line
        assert "takes a mapping" in line and "AttributeError" not in line, line
        assert "MAPPING" not in line and "private" not in line, line

    sections = _refused_s3_option(tmp_path, cli, where, options, key, secret, check)
    sections[where]["storage_options"] = {**secret, "client_kwargs": None, "config_kwargs": {}}
    pipeline.load_config(write_config(tmp_path, "", "", **sections))  # None, a mapping: taken


@pytest.mark.parametrize("where", ["input", "output"])
@pytest.mark.parametrize(
    ("options", "key", "kind"),
    [
        ({"endpoint_url": 5}, "endpoint_url", "an integer"),
        ({"endpoint_url": ["a", "b"]}, "endpoint_url", "a list of text"),
        ({"client_kwargs": {"region_name": 5}}, "client_kwargs.region_name", "an integer"),
        ({"config_kwargs": {"region_name": False}}, "config_kwargs.region_name", "true/false"),
        ({"profile": {"a": 1}}, "profile", "a mapping"),
        ({"token": 12345678}, "token", "an integer"),
        ({"key": ["string"]}, "key", "a list of text"),
        ({"key": ["a"]}, "key", "a list of text"),
        ({"username": ["a"]}, "username", "a list of text"),
        ({"password": 12345678}, "password", "an integer"),
        (
            {"config_kwargs": {"sigv4a_signing_region_set": ["us-east-1", "us-west-2"]}},
            "config_kwargs.sigv4a_signing_region_set",
            "a list of text",
        ),
        (  # an account's number, which YAML reads as one (h74a: botocore's bare words)
            {"s3_additional_kwargs": {"ExpectedBucketOwner": 123456789012}},
            "s3_additional_kwargs.ExpectedBucketOwner",
            "an integer",
        ),
    ],
    ids=[
        "endpoint",
        "endpoint-list",
        "region",
        "config-region",
        "profile",
        "token",
        "key",
        "a",
        "username",
        "password",
        "region-set",
        "request",
    ],
)
def test_an_s3_option_that_takes_text_given_another_kind_is_one_config_line(
    tmp_path, cli, where: str, options: dict[str, Any], key: str, kind: str
) -> None:
    """s3fs and botocore take ``endpoint_url``, ``key``, ``secret``, ``token``, ``profile``
    (botocore's session), ``client_kwargs``' ``region_name``, ... as text (read from their
    signatures and docstrings); another kind had failed where the store was opened, naming
    no option ("TypeError: 'int' object is not iterable", "unhashable type: 'list'"), and
    ``key: [a]`` as "key is not ... string" (its value hidden out of the line's own words);
    an ``s3_additional_kwargs`` parameter S3 takes as text, given a number, had reached
    botocore's bare ParamValidationError, its value in its words, when the store was read.
    s3fs's aliases ``username`` and ``password``, which nothing types, had been refused only
    there, as "key is not a string", naming the option not given. botocore's
    ``sigv4a_signing_region_set`` is text too (its ``Config`` hands it to the signer as the
    region, which awscrt takes only as text): a list of regions stays refused. One line
    where the config is read names the key, the kind given and the fix, at the option's
    line, readable, never the value. Nothing is asked of a server."""
    import pipeline

    secret = {"key": "AKIDTEXTKIND", "secret": "SECRETTEXTKIND"}
    full = f"{where}.storage_options.{key}"

    def check(rc: int, line: str) -> None:
        assert rc != 0 and f"{full}: given as {kind}, where " in line, line
        assert " takes text: write it as text" in line and "TypeError" not in line, line
        assert "TEXTKIND" not in line and "string'" not in line, line

    sections = _refused_s3_option(tmp_path, cli, where, options, key, secret, check)
    sections[where]["storage_options"] = {
        **secret,
        "endpoint_url": None,
        "profile": "p",
        # text, and a request parameter S3 takes otherwise (a date and time): taken
        "s3_additional_kwargs": {"ExpectedBucketOwner": "1", "Expires": datetime(2030, 1, 1)},
    }
    pipeline.load_config(write_config(tmp_path, "", "", **sections))  # None, text: taken


@pytest.mark.parametrize(
    "options",
    [{"key": b"k", "secret": "a"}, {"key": b"k", "secret": "string"}],
    ids=["a", "string"],
)
def test_a_credential_of_another_kind_keeps_its_line_whole_where_values_are_hidden(
    tmp_path, cli, options: dict[str, Any]
) -> None:
    """A key YAML reads as no text that the config's check of kinds takes (``!!binary``:
    bytes) reaches the store's own check of the credentials' kind; the values hidden out of
    a library's words had been hidden out of that check's own words too: beside a secret
    ``a`` it said "key is not ... string (YAML read it as ... number ...)", beside
    ``string`` "key is not a ...". The pipeline's own words, which hold no value, are said
    whole. Nothing is asked of a server."""
    cfg = write_config(
        tmp_path,
        "",
        tmp_path / "out.zarr",
        input={"store": "s3://b/in.zarr", "storage_options": options},
    )
    rc, _, err = cli("plan", cfg)
    line = one_line_error(err)
    assert rc != 0 and "key is not a string (YAML read it as a number or other type)" in line
    assert "input.storage_options" in line and "..." not in line, line


@pytest.mark.parametrize(("option", "alias"), [("key", "username"), ("secret", "password")])
def test_an_s3_credential_and_its_alias_together_are_one_config_line(
    tmp_path, option: str, alias: str
) -> None:
    """s3fs takes ``username`` and ``password`` as other names of ``key`` and ``secret``, and
    refuses one given beside the other with a bare ``KeyError`` ("Supply either key or
    username, not both"), which had come where the plan opened the store: "cannot open ...
    (KeyError: ...)", naming no line. It is refused where the config is read, at the alias's
    line, naming both options and neither value; an empty one beside the other is taken, as
    s3fs takes it. Nothing is asked of a server."""
    import pipeline

    options = {"key": "AKIDALIAS42", "secret": "SECRETALIAS987", alias: "ALIASVALUE"}
    cfg = write_config(
        tmp_path,
        "",
        tmp_path / "out.zarr",
        input={"store": "s3://b/in.zarr", "storage_options": options},
    )
    lines = cfg.read_text().splitlines()
    with pytest.raises(ConfigError) as got:
        pipeline.load_config(cfg)
    e = got.value
    said = f"input.storage_options.{alias}"
    assert e.key == said and str(e).startswith(f"{cfg}:{e.line}: {said}: given beside "), e
    assert f"beside {option}," in str(e) and "keep one" in str(e) and "KeyError" not in str(e)
    assert "ALIAS" not in str(e) + repr(e.data), e
    assert lines[e.line - 1].strip().startswith(f"{alias}:"), (e.line, lines)
    options[option] = ""
    taken = write_config(
        tmp_path,
        "",
        tmp_path / "out.zarr",
        name="taken.yaml",
        input={"store": "s3://b/in.zarr", "storage_options": options},
    )
    pipeline.load_config(taken)


def test_a_region_set_given_as_a_list_is_told_how_botocore_takes_it(tmp_path) -> None:
    """botocore's ``Config`` hands ``sigv4a_signing_region_set`` as it is to the signer as
    its region, text (awscrt takes no other; botocore joins an endpoint rule's list of
    regions with commas itself), so a list of regions is refused where the config is read;
    its line says how the set is written: the regions separated by commas, or '*'."""
    import pipeline

    options = {"config_kwargs": {"sigv4a_signing_region_set": ["us-east-1", "eu-west-1"]}}
    cfg = write_config(
        tmp_path,
        "",
        tmp_path / "out.zarr",
        input={"store": "s3://b/in.zarr", "storage_options": options},
    )
    with pytest.raises(ConfigError) as got:
        pipeline.load_config(cfg)
    e = got.value
    assert e.key == "input.storage_options.config_kwargs.sigv4a_signing_region_set", e
    assert "given as a list of text" in str(e), e
    assert "sigv4a_signing_region_set: 'us-east-1,us-west-2' (the regions, or '*')" in str(e), e
    assert "eu-west-1" not in str(e), e


@pytest.mark.parametrize("where", ["input", "output"])
@pytest.mark.parametrize(
    ("options", "key", "said", "right"),
    [
        (
            {"config_kwargs": {"proxies": {"http": 8080}}},
            "config_kwargs.proxies.http",
            "given as an integer, where botocore's Config (its proxies) takes text",
            {"config_kwargs": {"proxies": {"http": "http://127.0.0.1:8080"}}},
        ),
        (
            {"config_kwargs": {"retries": {"max_attempts": "7"}}},
            "config_kwargs.retries.max_attempts",
            "given as text, where botocore's Config takes a whole number",
            {"config_kwargs": {"retries": {"max_attempts": 7}}},
        ),
        (
            {"config_kwargs": {"max_pool_connections": 2.5}},
            "config_kwargs.max_pool_connections",
            "given as a number, where botocore's Config takes a whole number",
            {"config_kwargs": {"max_pool_connections": 4}},
        ),
        (
            {"config_kwargs": {"client_cert": 5}},
            "config_kwargs.client_cert",
            "given as an integer, where botocore's Config takes a path, or a list of two paths",
            {"config_kwargs": {"client_cert": ["/c.pem", "/k.pem"]}},
        ),
        (
            {"config_kwargs": {"s3": {"addressing_style": 5}}},
            "config_kwargs.s3.addressing_style",
            "given as an integer, where botocore's Config takes text",
            {"config_kwargs": {"s3": {"addressing_style": "path"}}},
        ),
        (
            {"config_kwargs": {"proxies_config": {"proxy_use_forwarding_for_https": "false"}}},
            "config_kwargs.proxies_config.proxy_use_forwarding_for_https",
            "given as text, where botocore's Config takes true or false",
            {"config_kwargs": {"proxies_config": {"proxy_use_forwarding_for_https": False}}},
        ),
        (
            {"s3_additional_kwargs": {"BucketKeyEnabled": "yes"}},
            "s3_additional_kwargs.BucketKeyEnabled",
            "given as text, where S3's API takes true or false",
            {"s3_additional_kwargs": {"BucketKeyEnabled": True}},
        ),
        (
            {"s3_additional_kwargs": {"ContentLength": "12"}},
            "s3_additional_kwargs.ContentLength",
            "given as text, where S3's API takes a whole number",
            {"s3_additional_kwargs": {"ContentLength": 12}},
        ),
        (
            {"s3_additional_kwargs": {"ContentLength": True}},
            "s3_additional_kwargs.ContentLength",
            "given as true/false, where S3's API takes a whole number",
            {"s3_additional_kwargs": {"ContentLength": 12}},
        ),
        (  # YAML's 2030-01-01 is a date, which botocore's timestamps do not take
            {"s3_additional_kwargs": {"Expires": date(2030, 1, 1)}},
            "s3_additional_kwargs.Expires",
            "given as a date, where S3's API takes a date and time",
            {"s3_additional_kwargs": {"Expires": datetime(2030, 1, 1)}},
        ),
        (
            {"s3_additional_kwargs": {"Metadata": {"version": 2}}},
            "s3_additional_kwargs.Metadata.version",
            "given as an integer, where S3's API takes text",
            {"s3_additional_kwargs": {"Metadata": {"version": "2"}}},
        ),
        (
            {"s3_additional_kwargs": {"ObjectAttributes": "ETag"}},
            "s3_additional_kwargs.ObjectAttributes",
            "given as text, where S3's API takes a list",
            {"s3_additional_kwargs": {"ObjectAttributes": ["ETag"]}},
        ),
    ],
    ids=[
        "proxies",
        "retries",
        "pool",
        "client-cert",
        "addressing",
        "proxy-forwarding",
        "bool",
        "long",
        "long-bool",
        "timestamp",
        "metadata",
        "list",
    ],
)
def test_an_option_s3fs_passes_to_botocore_given_another_kind_is_one_config_line(
    tmp_path,
    cli,
    where: str,
    options: dict[str, Any],
    key: str,
    said: str,
    right: dict[str, Any],
) -> None:
    """botocore's ``Config`` (s3fs's ``config_kwargs``, its own options and its mappings')
    takes numbers, text, pairs of paths and true or false, as its docstring types them, and
    S3's API its request parameters (``s3_additional_kwargs``) as its service model's shapes
    do: a proxy given as a port (``proxies: {http: 8080}``) had failed every request as
    "HTTPClientError: ... 'int' object has no attribute 'startswith'", retries given as
    text as "TypeError: '<' not supported ...", a ``client_cert`` of no kind passed unused
    over http, ``BucketKeyEnabled: 'yes'``, ``ContentLength: '12'`` or a date for
    ``Expires`` met botocore's bare ParamValidationError, its value in it, at the first
    write. One line where the config is read names the key, the kind given, what it takes
    and the fix, at the option's line, never the value; the right kind is taken. Nothing is
    asked of a server."""
    import pipeline

    secret = {"key": "AKIDBOTOKIND", "secret": "SECRETBOTOKIND"}
    full = f"{where}.storage_options.{key}"

    def check(rc: int, line: str) -> None:
        assert rc != 0 and f"{full}: {said}" in line, line
        assert "(its value is not said here)" in line and "Error" not in line, line
        assert "BOTOKIND" not in line and "8080" not in line and "yes" not in line, line

    sections = _refused_s3_option(tmp_path, cli, where, options, key, secret, check)
    sections[where]["storage_options"] = {**secret, **right}
    pipeline.load_config(write_config(tmp_path, "", "", name="taken.yaml", **sections))


def test_an_s3_request_parameter_of_another_kind_is_refused_before_anything_is_written(
    tmp_path, cli, bucket
) -> None:
    """On a real S3 server: ``s3_additional_kwargs`` that S3's API takes as true or false, or
    a mapping of text, given otherwise (``BucketKeyEnabled: 'yes'``, ``Metadata: {version:
    2}``), had let the run begin and fail at its first write with "cannot write to the output
    store ... (ParamValidationError: ... value: yes ...); choose a writable output.store" (or
    "AttributeError: 'int' object has no attribute 'encode'"), naming no line. The command
    line and ``pipeline.run`` of the file now refuse it in one line at the option's line in
    the file, and nothing is written; given as S3 takes them, the run writes the output, its
    objects carrying the metadata."""
    import s3fs

    import pipeline

    url, options = bucket
    sections = _sections_over_an_input(url, options)
    fs = s3fs.S3FileSystem(skip_instance_cache=True, **options)
    for extra, key in (
        ({"BucketKeyEnabled": "yes"}, "BucketKeyEnabled"),
        ({"Metadata": {"version": 2}}, "Metadata.version"),
    ):
        out = {**options, "s3_additional_kwargs": extra}
        output = {**sections["output"], "storage_options": out}
        cfg = write_config(tmp_path, "", "", input=sections["input"], output=output)
        lines = cfg.read_text().splitlines()
        full = f"output.storage_options.s3_additional_kwargs.{key}"
        rc, _, err = cli("run", cfg)
        line = one_line_error(err)
        assert rc != 0 and line.startswith(f"error: {cfg}:"), line
        at = int(line.removeprefix(f"error: {cfg}:").split(":", 1)[0])
        assert lines[at - 1].strip().startswith(key.rsplit(".", 1)[-1] + ":"), (at, lines)
        assert f": {full}: given as " in line and "ParamValidationError" not in line, line
        with pytest.raises(ConfigError) as got:
            pipeline.run(cfg)
        assert (got.value.file, got.value.line, got.value.key) == (str(cfg), at, full), got.value
        assert f"error: {got.value}" == line, (got.value, line)
        assert not fs.exists(f"{url}/out.zarr"), fs.find(f"{url}/out.zarr")
    right = {**options, "s3_additional_kwargs": {"BucketKeyEnabled": True, "Metadata": {"v": "2"}}}
    output = {**sections["output"], "storage_options": right}
    cfg = write_config(tmp_path, "", "", input=sections["input"], output=output)
    rc, _, err = cli("run", cfg)
    assert rc == 0, err
    x = np.arange(20, dtype=np.float32).reshape(4, 5)
    assert np.array_equal(_zarr_s3(f"{url}/out.zarr", options)[...], reference(x))
    head = fs.call_s3("head_object", Bucket=url[5:], Key="out.zarr/zarr.json")
    assert head["Metadata"] == {"v": "2"}, head


@pytest.mark.parametrize(("name", "near"), [("ServerSideEncyption", "ServerSideEncryption")])
def test_an_s3_request_parameter_no_operation_takes_is_refused_not_dropped(
    tmp_path, cli, bucket, name: str, near: str
) -> None:
    """s3fs passes each request only the ``s3_additional_kwargs`` its S3 operation takes, and
    drops the others unsent: a misspelt ``ServerSideEncyption: AES256`` had written every
    object without it, and the run succeeded, saying nothing. The command line and
    ``pipeline.run`` now refuse it in one line at its line in the file, naming S3's near
    name (from botocore's service model), and nothing is written; spelt so, the objects are
    written encrypted."""
    import s3fs

    import pipeline

    url, options = bucket
    sections = _sections_over_an_input(url, options)
    fs = s3fs.S3FileSystem(skip_instance_cache=True, **options)
    output = {**sections["output"]}
    output["storage_options"] = {**options, "s3_additional_kwargs": {name: "AES256"}}
    cfg = write_config(tmp_path, "", "", input=sections["input"], output=output)
    lines = cfg.read_text().splitlines()
    full = f"output.storage_options.s3_additional_kwargs.{name}"
    rc, _, err = cli("run", cfg)
    line = one_line_error(err)
    assert rc != 0 and line.startswith(f"error: {cfg}:"), line
    at = int(line.removeprefix(f"error: {cfg}:").split(":", 1)[0])
    assert lines[at - 1].strip().startswith(f"{name}:"), (at, lines)
    assert f": {full}: is no request parameter of S3's API" in line, line
    assert f"write {near}, S3's name for it" in line and "AES256" not in line, line
    with pytest.raises(ConfigError) as got:
        pipeline.run(cfg)
    assert (got.value.file, got.value.line, got.value.key) == (str(cfg), at, full), got.value
    assert not fs.exists(f"{url}/out.zarr")
    output["storage_options"] = {**options, "s3_additional_kwargs": {near: "AES256"}}
    cfg = write_config(tmp_path, "", "", input=sections["input"], output=output)
    rc, _, err = cli("run", cfg)
    assert rc == 0, err
    head = fs.call_s3("head_object", Bucket=url[5:], Key="out.zarr/zarr.json")
    assert head.get("ServerSideEncryption") == "AES256", head


#: Values none of those their taker takes, each (options, its key, what the line says of it,
#: the fix it names, options taken in its place): S3's request parameters whose shapes in
#: botocore's service model list their values (an ``enum``), in a list too, and botocore
#: ``Config``'s options whose values its docstring lists, or its signer knows.
_WRONG_VALUES = [
    (
        {"s3_additional_kwargs": {"ServerSideEncryption": "AES257"}},
        "s3_additional_kwargs.ServerSideEncryption",
        "'AES257' is none of the values S3's API takes for ServerSideEncryption (AES256, ",
        "write AES256, the nearest, or remove it",
        {"s3_additional_kwargs": {"ServerSideEncryption": "aws:kms"}},
    ),
    (
        {"s3_additional_kwargs": {"ObjectLockMode": "GOVERNENCE"}},
        "s3_additional_kwargs.ObjectLockMode",
        "'GOVERNENCE' is none of the values S3's API takes for ObjectLockMode (",
        "write GOVERNANCE, the nearest, or remove it",
        {"s3_additional_kwargs": {"ObjectLockMode": "COMPLIANCE"}},
    ),
    (
        {"s3_additional_kwargs": {"ObjectAttributes": ["ETag", "Sizee"]}},
        "s3_additional_kwargs.ObjectAttributes.1",
        "given as text that is none of the values S3's API takes for an item of "
        "ObjectAttributes (ETag,",
        "write one of them, or remove it (its value is not said here)",
        {"s3_additional_kwargs": {"ObjectAttributes": ["ETag", "ObjectSize"]}},
    ),
    (  # a value that may be a credential is not said
        {"s3_additional_kwargs": {"StorageClass": "wJalrXUtnFEMI/K7MDENG/bPxRfiCY1234"}},
        "s3_additional_kwargs.StorageClass",
        "given as text that is none of the values S3's API takes for StorageClass (STANDARD,",
        "write one of them, or remove it (its value is not said here)",
        {"s3_additional_kwargs": {"StorageClass": "GLACIER_IR"}},
    ),
    (
        {"config_kwargs": {"retries": {"mode": "standrd"}}},
        "config_kwargs.retries.mode",
        "'standrd' is none of the values botocore's Config takes for mode (legacy, standard, ",
        "write standard, the nearest, or remove it",
        {"config_kwargs": {"retries": {"mode": "adaptive"}}},
    ),
    (
        {"config_kwargs": {"s3": {"addressing_style": "virtul"}}},
        "config_kwargs.s3.addressing_style",
        "'virtul' is none of the values botocore's Config takes for addressing_style (auto, ",
        "write virtual, the nearest, or remove it",
        {"config_kwargs": {"s3": {"addressing_style": "path"}}},
    ),
    (  # botocore takes its checksum settings in any case: WHEN_REQUIRED is taken
        {"config_kwargs": {"request_checksum_calculation": "when_suported"}},
        "config_kwargs.request_checksum_calculation",
        "'when_suported' is none of the values botocore's Config takes for "
        "request_checksum_calculation (when_supported, when_required)",
        "write when_supported, the nearest, or remove it",
        {"config_kwargs": {"request_checksum_calculation": "WHEN_REQUIRED"}},
    ),
    (
        {"config_kwargs": {"signature_version": "s3v5"}},
        "config_kwargs.signature_version",
        "'s3v5' is none of the values botocore's signer takes for signature_version (",
        "write s3v4, the nearest, or remove it",
        {"config_kwargs": {"signature_version": "s3v4"}},
    ),
]


@pytest.mark.parametrize("where", ["input", "output"])
@pytest.mark.parametrize(
    ("options", "key", "said", "fix", "right"),
    _WRONG_VALUES,
    ids=["sse", "lock-mode", "list", "unsaid", "retries", "addressing", "checksum", "signature"],
)
def test_an_s3_option_given_none_of_its_values_is_one_config_line(
    tmp_path,
    cli,
    where: str,
    options: dict[str, Any],
    key: str,
    said: str,
    fix: str,
    right: dict[str, Any],
) -> None:
    """Only the kinds of the options s3fs passes to botocore were checked, not their values:
    ``ServerSideEncryption: AES257`` passed the config and botocore sent it unchecked (moto's
    server wrote every object with it and the run's exit was 0; S3 refuses it at the first
    write), and botocore ``Config``'s ``retries: {mode: standrd}`` was said only where the
    plan opened the store, naming no line. One line where the config is read names the key,
    the value, the values taken (read from botocore's service model and ``Config``
    docstring) and the nearest; values taken pass. Nothing is asked of a server."""
    import pipeline

    secret = {"key": "AKIDVALUES", "secret": "SECRETVALUES", "endpoint_url": "http://127.0.0.1:9"}
    full = f"{where}.storage_options.{key}"

    def check(rc: int, line: str) -> None:
        assert rc != 0 and f"{full}: {said}" in line and line.endswith(f": {fix}"), line
        assert "VALUES" not in line and "Error" not in line and "wJalr" not in line, line

    sections = _refused_s3_option(tmp_path, cli, where, options, key, secret, check)
    sections[where]["storage_options"] = {**secret, **right}
    pipeline.load_config(write_config(tmp_path, "", "", name="taken.yaml", **sections))


@pytest.mark.parametrize(
    ("name", "wrong", "right"),
    [
        ("ServerSideEncryption", "AES257", "AES256"),
        ("StorageClass", "STANDARD_AI", "STANDARD_IA"),
        ("ACL", "privat", "private"),
    ],
)
def test_an_s3_request_value_s3_does_not_take_is_refused_before_anything_is_written(
    tmp_path, cli, bucket, name: str, wrong: str, right: str
) -> None:
    """On a real S3 server: an ``s3_additional_kwargs`` value none of those S3 takes had been
    sent as given, botocore checking only its kind: ``ServerSideEncryption: AES257`` wrote
    every object with it and the run's exit was 0 on moto's server (S3 refuses it), where the
    user asked for encryption; ``StorageClass: STANDARD_AI`` and ``ACL: privat`` failed at
    the first write as "cannot write to the output store ... (S3 PutObject answered HTTP 400
    InvalidStorageClass, or 500); choose a writable output.store", naming no line and the
    wrong fix. The command line and ``pipeline.run`` now refuse it in one line at its line
    in the file, naming the value and the nearest S3 takes, and nothing is written; spelt so,
    the run writes the output."""
    import s3fs

    import pipeline

    url, options = bucket
    sections = _sections_over_an_input(url, options)
    fs = s3fs.S3FileSystem(skip_instance_cache=True, **options)
    output = {**sections["output"]}
    output["storage_options"] = {**options, "s3_additional_kwargs": {name: wrong}}
    cfg = write_config(tmp_path, "", "", input=sections["input"], output=output)
    lines = cfg.read_text().splitlines()
    full = f"output.storage_options.s3_additional_kwargs.{name}"
    rc, _, err = cli("run", cfg)
    line = one_line_error(err)
    assert rc != 0 and line.startswith(f"error: {cfg}:"), line
    at = int(line.removeprefix(f"error: {cfg}:").split(":", 1)[0])
    assert lines[at - 1].strip().startswith(f"{name}:"), (at, lines)
    assert f": {full}: {wrong!r} is none of the values S3's API takes for {name} (" in line
    assert line.endswith(f": write {right}, the nearest, or remove it"), line
    with pytest.raises(ConfigError) as got:
        pipeline.run(cfg)
    assert (got.value.file, got.value.line, got.value.key) == (str(cfg), at, full), got.value
    assert f"error: {got.value}" == line, (got.value, line)
    assert not fs.exists(f"{url}/out.zarr"), fs.find(f"{url}/out.zarr")
    output["storage_options"] = {**options, "s3_additional_kwargs": {name: right}}
    cfg = write_config(tmp_path, "", "", input=sections["input"], output=output)
    rc, _, err = cli("run", cfg)
    assert rc == 0, err
    x = np.arange(20, dtype=np.float32).reshape(4, 5)
    assert np.array_equal(_zarr_s3(f"{url}/out.zarr", options)[...], reference(x))
    if name != "ACL":  # moto's HeadObject says no ACL
        head = fs.call_s3("head_object", Bucket=url[5:], Key="out.zarr/zarr.json")
        assert head.get(name) == right, head


@pytest.mark.parametrize(
    "extra",
    [
        {"s3_additional_kwargs": {"ServerSideEncryption": "AES257"}},
        {"s3_additional_kwargs": {"ServerSideEncyption": "AES256"}},
        {"s3_additional_kwargs": {"BucketKeyEnabled": "yes"}},
        {"s3_additional_kwargs": {"ExpectedBucketOwner": 123456789012}},
        {"config_kwargs": {"retries": {"mode": "standrd"}}},
    ],
    ids=["value", "unknown", "kind", "text", "config-value"],
)
def test_a_location_made_without_a_config_checks_its_options_as_a_config_does(
    bucket, extra: dict[str, Any]
) -> None:
    """A ``Location`` made through the Python API (``pipeline.store.Location.of(url,
    options)``), from no config, had its options checked where it was opened only for some
    problems (text where true or false is taken, ``asynchronous``, an endpoint with
    credentials): ``ServerSideEncryption: AES257`` and a misspelt ``ServerSideEncyption``
    wrote its objects as asked of no encryption, ``BucketKeyEnabled: 'yes'`` failed at the
    write with botocore's ParamValidationError. The config's one check is asked where it is
    opened: the line a section made of the same options gives, without a file's, and
    nothing is written. On a real S3 server."""
    import s3fs

    from pipeline.config import OutputConfig

    url, options = bucket
    given = {**options, **extra}
    with pytest.raises(ConfigError) as config:
        OutputConfig(store=f"{url}/api.zarr", storage_options=given)
    said = str(config.value).removeprefix("pipeline.config.OutputConfig(): ")
    loc = Location.of(f"{url}/api.zarr", given)
    with pytest.raises(ConfigError) as got:
        loc.write("zarr.json", [b"{}"])
    assert str(got.value) == said and got.value.key == config.value.key, (got.value, said)
    assert got.value.file is None and got.value.line is None, got.value
    fs = s3fs.S3FileSystem(skip_instance_cache=True, **options)
    assert fs.find(url) == [], fs.find(url)
    loc = Location.of(f"{url}/api.zarr", options, "output")
    loc.write("zarr.json", [b"{}"])  # its options taken, it writes
    assert fs.cat(f"{url}/api.zarr/zarr.json") == b"{}"


def test_s3_credentials_given_as_username_and_password_are_never_written_out(
    tmp_path, bucket
) -> None:
    """s3fs's ``username`` and ``password`` carry the access key's ID and secret, as ``key``
    and ``secret`` do: a run given them reads and writes the bucket (moto takes any), and
    its summary (the config it shows, its JSON) says neither; the summary had shown
    ``username`` whole, where ``key`` is ``***``."""
    import pipeline

    url, options = bucket
    user, password = "AKIDUSERNAME42", "PASSWORDSECRET987"
    given = {k: v for k, v in options.items() if k not in ("key", "secret")}
    given = {**given, "username": user, "password": password}
    x = np.arange(20, dtype=np.float32).reshape(4, 5)  # as _sections_over_an_input writes it
    cfg = {**_sections_over_an_input(url, given), "stages": [{"op": "square"}]}
    summary = pipeline.run(cfg)
    assert summary.status == "complete"
    assert np.array_equal(_zarr_s3(f"{url}/out.zarr", options)[...], x * x)
    for text in (summary.to_json(), repr(summary), str(summary.config)):
        assert user not in text and password not in text, text
    assert summary.config["input"]["storage_options"]["username"] == "***", summary.config


@pytest.mark.parametrize("where", ["input", "output"])
@pytest.mark.parametrize(
    ("option", "value", "words"),
    [
        ("asynchronous", True, "remove asynchronous"),
        ("endpoint_url", "http://user:PASSW0RDX@127.0.0.1:9000", "has credentials in it"),
        ("client_kwargs", {"endpoint_url": "http://user:PASSW0RDX@h:1"}, "has credentials"),
    ],
    ids=["asynchronous", "endpoint-userinfo", "client-endpoint-userinfo"],
)
def test_options_refused_before_any_request_name_their_line_or_override(
    tmp_path, where: str, option: str, value: Any, words: str
) -> None:
    """``asynchronous: true`` and an ``endpoint_url`` with credentials in it were refused
    where the store was opened, at plan time, with no file, line or override named, where
    every other problem of a config names them. They are refused where the config is read
    (``problems._store_option_problem``), keyed at the option, never saying the password;
    nothing is asked of a server."""
    import pipeline

    options = {"key": "AKIDLINE", "secret": "SECRETLINE", "anon": False}
    sections = {
        "input": {"store": "s3://b/in.zarr", "storage_options": dict(options)},
        "output": {"store": "s3://b/out.zarr", "storage_options": dict(options)},
    }
    cfg = write_config(tmp_path, "", "", **sections)
    key = f"{where}.storage_options.{option}"
    said = key if option != "client_kwargs" else f"{key}.endpoint_url"
    sections[where]["storage_options"][option] = value
    wrong = write_config(tmp_path, "", "", name="wrong.yaml", **sections)
    lines = wrong.read_text().splitlines()
    for call, args in (
        (pipeline.load_config, (wrong,)),
        (pipeline.load_config, (cfg, {key: value})),
    ):
        with pytest.raises(ConfigError) as got:
            call(*args)
        e = got.value
        text = str(e) + repr(e.data)
        assert e.key == said and words in str(e), e
        assert "PASSW0RDX" not in text and "SECRETLINE" not in text, text
        if args[0] == wrong:
            assert str(e).startswith(f"{wrong}:{e.line}: {said}: "), e
            assert lines[e.line - 1].strip().startswith(said.rsplit(".", 1)[-1]), e.line
        else:  # a mapping that makes a section the file lacks: named by the key it sets
            assert e.data.get("override") == said and e.line is None, e.data


@pytest.mark.parametrize(
    ("store", "options", "said", "words"),
    [
        (
            "zip::s3://b/in.zip",
            {"s3": {"endpoint_url": "http://u:PASSW0RDX@127.0.0.1:1", "key": "k"}},
            "input.storage_options.s3.endpoint_url",
            "as input.storage_options.s3 key and secret",
        ),
        (
            "zip::s3://b/in.zip",
            {"s3": {"client_kwargs": {"endpoint_url": "http://u:PASSW0RDX@127.0.0.1:1"}}},
            "input.storage_options.s3.client_kwargs.endpoint_url",
            "has credentials in it",
        ),
        (
            "s3://b/in.zarr",
            {
                "endpoint_url": "http://127.0.0.1:1",
                "client_kwargs": {"endpoint_url": "http://u:PASSW0RDX@127.0.0.1:1"},
            },
            "input.storage_options.client_kwargs.endpoint_url",
            "has credentials in it",
        ),
        (
            "s3://b/in.zarr",
            {"endpoint_url": "http://127.0.0.1:1", "client_kwargs": {"endpoint_url": "http://h:2"}},
            "input.storage_options.client_kwargs.endpoint_url",
            "keep one of the two",
        ),
    ],
    ids=["chained-endpoint", "chained-client-endpoint", "second-endpoint", "endpoint-twice"],
)
def test_every_endpoint_url_is_checked_where_the_config_is_read(
    tmp_path, store: str, options: dict, said: str, words: str
) -> None:
    """An ``endpoint_url`` with credentials in it under a chained URL's file system
    (``zip::s3://`` with ``s3: {endpoint_url: ...}``), or beside another that a client
    would take first, reached botocore (its own words, no file, line or key); two
    endpoint_urls (the options' own and client_kwargs') reached it too (``TypeError: got
    multiple values for keyword argument 'endpoint_url'``). Each is refused where the config
    is read, at its line, never saying the password."""
    import pipeline

    cfg = write_config(
        tmp_path,
        "",
        "",
        input={"store": store, "storage_options": options},
        output={"store": str(tmp_path / "out.zarr")},
    )
    with pytest.raises(ConfigError) as got:
        pipeline.load_config(cfg)
    e = got.value
    assert e.key == said and words in str(e), e
    assert str(e).startswith(f"{cfg}:{e.line}: {said}: "), e
    assert "PASSW0RDX" not in str(e) + repr(e.data), e
    assert not (tmp_path / "out.zarr").exists()


def test_a_ca_bundle_given_as_a_path_object_is_taken(tmp_path, bucket) -> None:
    """A config given to the API as a mapping may name ``client_kwargs``' ``verify`` CA
    bundle as a ``pathlib.Path``, which botocore takes as it takes the path's text (checked
    against moto's server over TLS with its own certificate). The check of the values
    botocore's HTTP layer refuses only as it sends (245e3dc) took only text, and refused it:
    "verify is neither true, false nor the path of a CA bundle that exists here". A path to
    a bundle that is not there stays refused, however given."""
    from pathlib import Path

    from botocore.httpsession import DEFAULT_CA_BUNDLE

    import pipeline

    _write_input(*bucket)
    plan = pipeline.plan(_ca_bundle_config(tmp_path, bucket, Path(DEFAULT_CA_BUNDLE)))
    assert plan.config.input.storage_options["client_kwargs"]["verify"] == Path(DEFAULT_CA_BUNDLE)
    with pytest.raises(ConfigError, match="path of a CA bundle"):
        pipeline.plan(_ca_bundle_config(tmp_path, bucket, tmp_path / "no-such-ca.pem"))


def _ca_bundle_config(tmp_path, bucket, verify: Any) -> dict[str, Any]:
    """A config squaring the bucket's ``in.zarr`` into ``tmp_path``'s ``out.zarr``, its
    input's options naming ``verify`` as botocore's CA bundle (``client_kwargs``)."""
    url, options = bucket
    given = {**options, "client_kwargs": {"verify": verify}}
    return {
        "input": {"store": f"{url}/in.zarr", "storage_options": given},
        "output": {"store": str(tmp_path / "out.zarr")},
        "stages": [{"op": "square"}],
    }


def test_a_ca_bundle_in_the_home_folder_is_named_in_full(tmp_path, bucket, monkeypatch) -> None:
    """``verify: ~/ca.pem``: botocore opens the path as written (no home folder expanded), so
    each request failed, while the check here, expanding it, had let it through. Refused
    where the plan is made, in words that say '~' is not expanded and what to write, not
    the path itself; the same bundle named in full is taken."""
    import shutil

    from botocore.httpsession import DEFAULT_CA_BUNDLE

    import pipeline

    url, options = bucket
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(DEFAULT_CA_BUNDLE, home / "ca.pem")
    monkeypatch.setenv("HOME", str(home))
    _write_input(url, options)

    with pytest.raises(ConfigError, match="begins with '~', a home folder, which botocore"):
        pipeline.plan(_ca_bundle_config(tmp_path, bucket, "~/ca.pem"))
    pipeline.plan(_ca_bundle_config(tmp_path, bucket, str(home / "ca.pem")))


@pytest.fixture(scope="module")
def checking_s3() -> Iterator[dict[str, Any]]:
    """A moto S3 server that checks credentials (``INITIAL_NO_AUTH_ACTION_COUNT``: its first
    requests are let through, enough to make a user), with one IAM user allowed everything:
    the storage_options of that user."""
    import boto3

    with _moto_server({**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "6"}) as url:
        iam = boto3.client(
            "iam",
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id="x",
            aws_secret_access_key="y",
        )
        iam.create_user(UserName="u")
        key = iam.create_access_key(UserName="u")["AccessKey"]
        allow = {"Effect": "Allow", "Action": "*", "Resource": "*"}
        policy = {"Version": "2012-10-17", "Statement": [allow]}
        iam.put_user_policy(UserName="u", PolicyName="all", PolicyDocument=json.dumps(policy))
        yield {
            "endpoint_url": url,
            "key": key["AccessKeyId"],
            "secret": key["SecretAccessKey"],
            "anon": False,
        }


@pytest.mark.parametrize("where", ["input", "output"])
def test_a_wrong_s3_secret_names_the_store_and_its_credentials(
    tmp_path, cli, checking_s3, where: str
) -> None:
    """A wrong secret on the input came out as 'a store answered PermissionError: Forbidden',
    naming neither the store nor the input; on the output as 'choose a writable store', where
    the fix is the credentials. Each line names the store (its URL, no credentials), whether
    it is the input or the output, and that section's storage_options; plan says the same."""
    import s3fs

    good = checking_s3
    name = f"test-{uuid.uuid4().hex[:12]}"
    s3fs.S3FileSystem(skip_instance_cache=True, **good).mkdir(name)
    x = np.arange(600, dtype=np.float32).reshape(20, 30)
    from zarr.storage import FsspecStore

    store = FsspecStore.from_url(f"s3://{name}/in.zarr", storage_options=good)
    zarr.create_array(store=store, shape=x.shape, dtype=x.dtype, chunks=(5, 30))[...] = x
    bad = {**good, "secret": "WRONGsecretWRONGsecret99"}
    with pytest.raises(PermissionError):  # the server does check credentials
        s3fs.S3FileSystem(skip_instance_cache=True, **bad).cat_file(f"{name}/in.zarr/zarr.json")
    opts = {"input": good, "output": good, where: bad}
    url = f"s3://{name}/{'in' if where == 'input' else 'out'}.zarr"
    cfg = write_config(
        tmp_path,
        "",
        "",
        input={"store": f"s3://{name}/in.zarr", "storage_options": opts["input"]},
        output={"store": f"s3://{name}/out.zarr", "storage_options": opts["output"]},
    )
    for command in ("run", "plan"):
        rc, out, err = cli(command, cfg)
        assert rc == 1
        line = one_line_error(err)
        assert f"{where} store {url}" in line, line
        assert f"credentials in {where}.storage_options" in line, line
        assert "writable store" not in line, line
        assert "WRONGsecret" not in out + err and good["secret"] not in out + err


def test_an_s3_output_that_is_a_plain_object_is_said_to_be_one(tmp_path, cli, bucket) -> None:
    """An output key that is one object (a file), not a folder of keys, was refused as "a
    directory that holds other files (out.zarr, ...)": it is said to be an object, by run,
    run --overwrite and plan alike, and is kept."""
    import s3fs

    url, options = bucket
    fs = s3fs.S3FileSystem(skip_instance_cache=True, **options)
    fs.pipe_file(f"{url}/out.zarr", b"my notes")
    x = np.arange(100, dtype=np.float32).reshape(10, 10)
    make_array(tmp_path / "in.zarr", x, (5, 10))
    cfg = write_config(
        tmp_path,
        tmp_path / "in.zarr",
        "",
        output={"store": f"{url}/out.zarr", "storage_options": options},
    )
    for args in (("run", cfg), ("run", cfg, "--overwrite"), ("plan", cfg)):
        rc, _, err = cli(*args)
        assert rc == 1
        line = one_line_error(err)
        assert f"{url}/out.zarr is a single object (a file" in line, line
        assert "directory" not in line, line
    e = refused("run", cfg)
    assert isinstance(e, OutputError) and e.node == "object", e
    assert fs.cat_file(f"{url}/out.zarr") == b"my notes"


def test_an_option_named_by_a_yaml_typo_is_never_said(tmp_path, cli, bucket) -> None:
    """``storage_options: {secret:VALUE, key: ...}`` (no space after the colon) makes an
    option NAMED ``secret:VALUE``: the line said s3fs's ``TypeError: AioSession.__init__()
    got an unexpected keyword argument 'secret:VALUE'`` (brk82). A name that is no plain
    identifier is never said: the line names storage_options, an option s3fs does not take,
    and the YAML fix."""
    import pipeline

    url, options = bucket
    x = np.arange(16, dtype=np.float32).reshape(4, 4)
    zarr.create_array(
        store=_s3_store(f"{url}/in.zarr", options), shape=x.shape, dtype=x.dtype, chunks=(2, 4)
    )[...] = x
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"input:\n  store: {url}/in.zarr\n"
        f"  storage_options: {{endpoint_url: '{options['endpoint_url']}', "
        "secret:SUPERSECRETVALUE, key: testing, anon: false}\n"
        f"output:\n  store: {tmp_path / 'out.zarr'}\nbackend: cpu\nstages: [{{op: square}}]\n"
    )
    for command in ("plan", "run"):
        rc, out, err = cli(command, cfg)
        line = one_line_error(err)
        assert rc == 1 and "input.storage_options" in line, line
        assert "an option s3fs does not take" in line and "needs a space" in line, line
        assert "SUPERSECRETVALUE" not in out + err, out + err
    with pytest.raises(ConfigError) as e:
        pipeline.plan(cfg)
    assert "SUPERSECRETVALUE" not in str(e.value) + repr(e.value.data), e.value


@pytest.mark.parametrize(
    ("side", "store"),
    [
        ("output", "{url}/outq.zarr?X-Amz-Security-Token=QUERYS3CR3T"),
        ("input", "{url}/in.zarr?X-Amz-Security-Token=QUERYS3CR3T"),
        ("input", "zip::{url}/in.zip?X-Amz-Signature=QUERYS3CR3T&X-Amz-Date=1"),
        ("output", "{url}/outf.zarr#QUERYS3CR3T"),
    ],
    ids=["output-query", "input-query", "chained-input-query", "output-fragment"],
)
def test_a_query_on_an_s3_url_is_refused_in_one_line_unsaid(
    tmp_path, cli, bucket, side: str, store: str
) -> None:
    """``s3://bkt/outq.zarr?X-Amz-Security-Token=...`` (brk82): s3fs reads no query, so the
    run exited 0 with the token in the plan line and the summary, stored in the output's
    zarr.json and shown in ``repr(pipeline.plan(cfg))``, and the data went to keys named
    ``outq.zarr?X-Amz-Security-Token=.../c/0/0``. Now `plan`, `run` and the API refuse such
    a URL (a query or a fragment, alone or in a chain, input or output) in one line naming
    storage_options and never the query's values; nothing is written to the bucket."""
    import s3fs

    import pipeline

    url, options = bucket
    secret = "QUERYS3CR3T"
    x = np.arange(16, dtype=np.float32).reshape(4, 4)
    zarr.create_array(
        store=_s3_store(f"{url}/in.zarr", options), shape=x.shape, dtype=x.dtype, chunks=(2, 4)
    )[...] = x
    sections = {
        "input": {"store": f"{url}/in.zarr", "storage_options": options},
        "output": {"store": f"{url}/out.zarr", "storage_options": options},
    }
    sections[side] = {"store": store.format(url=url), "storage_options": options}
    cfg = write_config(tmp_path, "", "", **sections)
    for command in ("plan", "run"):
        rc, out, err = cli(command, cfg)
        line = one_line_error(err)
        assert rc == 1 and f"{side}.store" in line and "storage_options" in line, line
        assert "{key: ..., secret: ..., token: ...}" in line, line
        assert secret not in out + err, out + err
    with pytest.raises(ConfigError) as e:
        pipeline.plan(cfg)
    assert e.value.key == f"{side}.store", e.value.data
    assert secret not in str(e.value) + repr(e.value.data), e.value
    fs = s3fs.S3FileSystem(skip_instance_cache=True, **options)
    written = fs.find(url.removeprefix("s3://"))
    assert all("?" not in k and "#" not in k and "out" not in k for k in written), written


@pytest.mark.parametrize("name", ["out?.zarr", "out.zarr?", "out.zarr??"])
def test_a_question_mark_in_an_s3_name_is_no_query(tmp_path, cli, bucket, name: str) -> None:
    """A lone '?' in an object's name (no parameter after it), ending the URL too, is a
    character of the name, as s3fs stores it (the odd names' round trips): not refused as a
    query; the keys are written under the name as given, and read back through it."""
    url, options = bucket
    x = np.arange(16, dtype=np.float32).reshape(4, 4)
    zarr.create_array(
        store=_s3_store(f"{url}/in.zarr", options), shape=x.shape, dtype=x.dtype, chunks=(2, 4)
    )[...] = x
    cfg = write_config(
        tmp_path,
        "",
        "",
        input={"store": f"{url}/in.zarr", "storage_options": options},
        output={"store": f"{url}/{name}", "storage_options": options},
    )
    rc, _, err = cli("run", cfg)
    assert rc == 0, err
    assert np.array_equal(_zarr_s3(f"{url}/{name}", options)[...], reference(x))
    import s3fs

    bucket_name = url.removeprefix("s3://")
    written = s3fs.S3FileSystem(skip_instance_cache=True, **options).find(bucket_name)
    assert f"{bucket_name}/{name}/zarr.json" in written, written


def _object_keys(bucket_name: str, options: dict[str, Any]) -> list[str]:
    """Every object's key in the bucket, as S3 keeps them (a key may begin with '/', which
    s3fs's listings drop), through botocore's own listing."""
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=options["endpoint_url"],
        aws_access_key_id=options["key"],
        aws_secret_access_key=options["secret"],
        region_name="us-east-1",
    )
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket_name)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


@pytest.mark.parametrize("side", ["input", "output"])
@pytest.mark.parametrize("slashes", ["//", "///"])
def test_an_s3_url_whose_bucket_is_followed_by_an_empty_name_is_one_config_line(
    tmp_path, cli, bucket, side: str, slashes: str
) -> None:
    """``s3://bucket//out.zarr``: s3fs writes and reads its objects under keys beginning with
    '/' (as zarr-python does), but lists the folder without it, another folder. An output there
    had every block written, under '/out.zarr/...', and the check that each was recorded
    found none ("6 block(s) have no record of being written ...; `run --resume` retries
    them", as each resume again); an input there was "no Zarr array at ...; check
    input.array", though its folder, listed, was the input's without '//'. It is refused
    where the config is read, naming the URL meant, and nothing is written."""
    url, options = bucket
    name = url.removeprefix("s3://")
    x = np.arange(48, dtype=np.float32).reshape(12, 4)
    zarr.create_array(
        store=_s3_store(f"{url}/in.zarr", options), shape=x.shape, dtype=x.dtype, chunks=(2, 4)
    )[...] = x
    stores = {"input": f"{url}/in.zarr", "output": f"{url}/out.zarr"}
    stores[side] = stores[side].replace(f"{name}/", f"{name}{slashes}")
    cfg = write_config(
        tmp_path,
        "",
        "",
        input={"store": stores["input"], "storage_options": options},
        output={"store": stores["output"], "storage_options": options},
        chunking={"target_bytes": 64},
    )
    before = sorted(_object_keys(name, options))
    rc, _, err = cli("run", cfg)
    assert rc == 1, err
    line = one_line_error(err)
    assert f"{side}.store: {stores[side]!r} has an empty name after its bucket" in line, line
    meant = f"{url}/in.zarr" if side == "input" else f"{url}/out.zarr"
    assert line.endswith(f"write {meant!r}"), line
    assert sorted(_object_keys(name, options)) == before


@pytest.mark.parametrize("fmt", [2, 3])
def test_an_s3_prefix_of_chunks_without_metadata_is_said_to_be_one(
    tmp_path, cli, bucket, fmt: int
) -> None:
    """An input prefix that holds an array's chunks but not its metadata (its ``zarr.json``
    or ``.zarray`` deleted, or never copied): it had been "no Zarr array at ...; check
    input.array", though no input.array is set and none finds it. The line says that the
    prefix holds chunks and no metadata, and what to do; nothing written, the input kept."""
    import s3fs

    url, options = bucket
    x = np.arange(48, dtype=np.float32).reshape(12, 4)
    zarr.create_array(
        store=_s3_store(f"{url}/in.zarr", options),
        shape=x.shape,
        dtype=x.dtype,
        chunks=(4, 4),
        zarr_format=fmt,
    )[...] = x
    fs = s3fs.S3FileSystem(skip_instance_cache=True, **options)
    name = url.removeprefix("s3://")
    for document in ("zarr.json", ".zarray", ".zattrs"):
        if fs.exists(f"{name}/in.zarr/{document}"):
            fs.rm(f"{name}/in.zarr/{document}")
    kept = {p: fs.info(p)["ETag"] for p in fs.find(f"{name}/in.zarr")}
    cfg = write_config(
        tmp_path,
        "",
        tmp_path / "out.zarr",
        input={"store": f"{url}/in.zarr", "storage_options": options},
    )
    rc, _, err = cli("run", cfg)
    assert rc == 1, err
    line = one_line_error(err)
    first = "under 'c/'" if fmt == 3 else "'0.0'"
    assert line.startswith(
        f"error: no Zarr array at {url}/in.zarr: it holds chunks ({first}) but no metadata"
    ), line
    assert "check input.array" not in line, line
    assert not (tmp_path / "out.zarr").exists()
    fs.invalidate_cache()
    assert {p: fs.info(p)["ETag"] for p in fs.find(f"{name}/in.zarr")} == kept


@pytest.mark.parametrize(
    "wrong",
    [
        {"no_such_option": 1},
        {"config_kwargs": {"signature_version": "s3v9"}},
        {"asynchronous": True},
        {"anon": "false"},
        {"endpoint_url": "http://user:TOPSECRETVALUE42@127.0.0.1:9000"},
        {"endpoint_url": "refused"},
    ],
    ids=["unknown", "signature", "asynchronous", "text-boolean", "endpoint-userinfo", "refused"],
)
def test_pipeline_plan_refuses_the_output_s_storage_options_as_the_command_does(
    tmp_path, cli, bucket, wrong: dict[str, Any]
) -> None:
    """``pipeline plan`` refused the output's storage_options where they make no file
    system (an option s3fs does not take, a signature version botocore does not know,
    ``asynchronous``, an endpoint with credentials in it or where nothing listens), as it
    looked at what is at the output; ``pipeline.plan``, which does not, returned a plan
    whose run they refused. The plan opens the output's file system, writing nothing
    (``plan.check_output_options``): the API's plan, of a file or a mapping, raises the
    command's own line, keyed at output.storage_options, and says no credential."""
    import s3fs

    import pipeline

    url, options = bucket
    if wrong.get("endpoint_url") == "refused":
        wrong = {"endpoint_url": f"http://127.0.0.1:{_free_port()}"}
    sections = _sections_over_an_input(url, options)
    given = {**options, "secret": "TOPSECRETVALUE42", **wrong}
    sections["output"] = {**sections["output"], "storage_options": given}
    cfg = write_config(tmp_path, "", "", **sections)
    rc, _, err = cli("plan", cfg)
    line = one_line_error(err)
    assert rc == 1 and "TOPSECRETVALUE42" not in line, line
    for config in (cfg, yaml.safe_load(cfg.read_text())):
        with pytest.raises(ConfigError) as got:
            pipeline.plan(config)
        said = str(got.value) + repr(got.value.data)
        assert got.value.key.startswith("output.storage_options"), got.value
        assert "TOPSECRETVALUE42" not in said and "\n" not in str(got.value), said
        if config == cfg:
            assert line == f"error: {got.value}", (line, str(got.value))
    s3 = s3fs.S3FileSystem(skip_instance_cache=True, **options)
    assert not s3.exists(f"{url}/out.zarr")  # nothing written


@pytest.mark.parametrize("where", ["input", "output"])
@pytest.mark.parametrize("wrong", ["refused", "https", "userinfo"])
def test_a_wrong_endpoint_url_names_the_endpoint_not_the_store(
    tmp_path, cli, bucket, where: str, wrong: str
) -> None:
    """An endpoint_url where nothing listens, one of https where the server speaks http, or
    one with credentials in it: the input said the library's HTTPClientError or "make the
    store reachable", the output "choose a writable output.store" (brk82 f7). One line now
    names the section's storage_options endpoint_url, and never the password in it;
    ``pipeline.plan`` raises the same line, for the output too."""
    import pipeline

    url, options = bucket
    sections = _sections_over_an_input(url, options)
    good = options["endpoint_url"]
    endpoint = {
        "refused": f"http://127.0.0.1:{_free_port()}",
        "https": good.replace("http://", "https://"),
        "userinfo": good.replace("http://", "http://user:PASSW0RDX@"),
    }[wrong]
    sections[where] = {
        **sections[where],
        "storage_options": {**options, "endpoint_url": endpoint},
    }
    cfg = write_config(tmp_path, "", "", **sections)
    rc, _, err = cli("plan", cfg)
    assert rc != 0, err
    line = one_line_error(err)
    if wrong == "userinfo":  # refused where the config is read, at the option's line
        assert f"{cfg}:" in line and f"{where}.storage_options.endpoint_url: " in line, line
    else:
        assert f"{where}.storage_options endpoint_url" in line, line
    assert "writable output.store" not in line and "PASSW0RDX" not in line, line
    assert "HTTPClientError" not in line and "--debug" not in line, line
    with pytest.raises(ConfigError) as got:  # the output's too (it had returned a plan)
        pipeline.plan(cfg)
    assert line == f"error: {got.value}" and "PASSW0RDX" not in repr(got.value.data), line


@pytest.mark.parametrize("where", ["input", "output"])
@pytest.mark.parametrize("wrong", ["refused", "unknown-host", "https"])
def test_an_endpoint_where_nothing_listens_is_said_at_once(
    tmp_path, cli, bucket, where: str, wrong: str
) -> None:
    """An endpoint_url where nothing listens (a port refused, a host name not known, a
    server that speaks no TLS to https): botocore retried each request with growing pauses,
    so plan, run and verify said so after 10 to 20 s. Now each says it at once, as a
    ConfigError keyed at the section's storage_options, naming the endpoint (no credential),
    before any request; the API raises the same."""
    import s3fs

    import pipeline

    url, options = bucket
    sections = _sections_over_an_input(url, options)
    endpoint = {
        "refused": f"http://127.0.0.1:{_free_port()}",
        "unknown-host": "http://no-such-host.invalid:9000",
        "https": options["endpoint_url"].replace("http://", "https://"),
    }[wrong]
    sections[where] = {
        **sections[where],
        "storage_options": {**options, "secret": "TOPSECRETVALUE42", "endpoint_url": endpoint},
    }
    cfg = write_config(tmp_path, "", "", **sections)
    for command in ("plan", "run", "verify"):
        # the line keyed at the section comes from the check made before any request (no
        # timing asserted: botocore's retries had taken 12-17 s, a busy machine takes seconds)
        rc, out, err = cli(command, cfg)
        line = one_line_error(err)
        assert rc == 1 and f"{where}.storage_options endpoint_url" in line, (command, line)
        assert "TOPSECRETVALUE42" not in out + err, line
    for call in (pipeline.run, pipeline.plan):  # pipeline.plan opens the output's too
        with pytest.raises(ConfigError) as e:
            call(cfg)
        assert e.value.key == f"{where}.storage_options", e.value.data
        assert e.value.data["endpoint"] == endpoint, e.value.data
    s3 = s3fs.S3FileSystem(skip_instance_cache=True, **options)
    assert not s3.exists(f"{url}/out.zarr")  # refused before anything was written


def test_a_server_that_listens_is_left_to_the_client_s_retries() -> None:
    """The check of an endpoint connects once and sends nothing: a server that accepts the
    connection but is slow to answer (or a TLS server slow to shake hands), and an endpoint
    reached through a proxy, are not refused: botocore's retries and timeouts apply to
    them as before."""
    from pipeline.store.location import endpoint_refused

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        for scheme in ("http", "https"):
            options = {"endpoint_url": f"{scheme}://127.0.0.1:{port}"}
            assert endpoint_refused("s3://b/x", options, "input") is None, scheme
    refused = {"endpoint_url": f"http://127.0.0.1:{_free_port()}"}
    assert endpoint_refused("s3://b/x", refused, "input") is not None
    proxied = {**refused, "config_kwargs": {"proxies": {"http": "http://proxy:3128"}}}
    assert endpoint_refused("s3://b/x", proxied, "input") is None


@pytest.mark.parametrize("output", [{"array": "w"}, {"store": "in.zarr/sub"}])
def test_an_s3_output_in_the_input_s_store_is_refused_and_the_input_kept(
    tmp_path, cli, bucket, output: dict[str, str]
) -> None:
    """An output in the S3 input's store, beside its array in its consolidated group or as a
    store of its own in a folder of it, is refused in one line naming the input's store and
    the fix, before anything is written: the bucket's objects the same, with the same ETags
    (review 41: it ran, writing the array and the group's ``zarr.json`` again)."""
    import warnings

    import s3fs
    from zarr.storage import FsspecStore

    url, options = bucket
    store = FsspecStore.from_url(f"{url}/in.zarr", storage_options=options)
    group = zarr.open_group(store=store, mode="w", zarr_format=3)
    group.create_array("v", shape=(4, 4), dtype="f4", chunks=(2, 2))[...] = 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zarr's: v3 consolidated metadata is no spec yet
        zarr.consolidate_metadata(store)
    out = {"store": f"{url}/{output.get('store', 'in.zarr')}", "storage_options": options}
    if "array" in output:
        out["array"] = output["array"]
    cfg = write_config(
        tmp_path,
        "",
        "",
        input={"store": f"{url}/in.zarr", "array": "v", "storage_options": options},
        output=out,
    )
    fs = s3fs.S3FileSystem(skip_instance_cache=True, **options)

    def objects() -> dict[str, Any]:
        fs.invalidate_cache()
        return {k: (v["ETag"], v["size"]) for k, v in fs.find(url, detail=True).items()}

    before = objects()
    for flags in ((), ("--overwrite",)):
        rc, _, err = cli("run", cfg, *flags)
        assert rc == 1
        line = one_line_error(err)
        assert (
            f"the input store {url}/in.zarr" in line
            and "output.store apart from the input's store" in line
        ), line
        assert "testing" not in err
    e = refused("run", cfg)
    assert isinstance(e, OutputError) and e.relation == "is inside", e
    assert objects() == before


@pytest.mark.parametrize("fmt", [2, 3])
def test_metadata_no_json_object_among_many_s3_members_is_found(tmp_path, bucket, fmt) -> None:
    """A Dataset of many variables on S3, whose documents the plan reads on several threads
    (``arrays.check_documents``): planned as before where every document is an object, and a
    member's attributes that are a list, wherever it lists, refused in one line naming that
    member's file, before anything is written."""
    import warnings

    import s3fs
    import xarray as xr

    import pipeline
    from pipeline.errors import InputError

    url, options = bucket
    fs = s3fs.S3FileSystem(skip_instance_cache=True, **options)
    ds = xr.Dataset(
        {f"v{i:02d}": (("y", "x"), np.full((4, 4), i, "f4")) for i in range(24)},
        coords={"x": np.arange(4.0), "y": np.arange(4)},
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(fs.get_mapper(f"{url}/in.zarr"), zarr_format=fmt, mode="w")
    cfg = {
        "input": {"store": f"{url}/in.zarr", "array": "v03", "storage_options": options},
        "output": {"store": str(tmp_path / "out.zarr")},
        "stages": [{"op": "square"}],
    }
    plan = pipeline.plan(pipeline.Config(**cfg))
    assert plan.output.path == "v03" and plan.input.shape == (4, 4)
    # the last member listed, and one in the middle
    for member in ("v23", "v11"):
        key = f"{url}/in.zarr/{member}/" + (".zattrs" if fmt == 2 else "zarr.json")
        doc = json.loads(fs.cat_file(key))
        fs.pipe_file(key, json.dumps([1] if fmt == 2 else {**doc, "attributes": [1]}).encode())
        with pytest.raises(InputError) as e:
            pipeline.plan(pipeline.Config(**cfg))
        assert str(e.value).startswith(key) and "not a JSON object" in str(e.value), e.value
        assert "\n" not in str(e.value) and "testing" not in str(e.value)
        fs.pipe_file(key, json.dumps(doc).encode())
    assert not (tmp_path / "out.zarr").exists()


# A complete output's consolidated copies on S3: stale (an array added to an enclosing group
# since it was consolidated, v3 and v2) and removed (the output's own v3 copy), as
# tests/test_xarray.py checks them on local stores.


def _said(cli, *command: str) -> tuple[int, str]:
    """``python -m pipeline COMMAND`` in this process, quietly: (exit status, its words)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zarr's: v3 consolidated metadata is no spec yet
        rc, out, err = cli(*command)
    return rc, out + err


def _chunk_stamps(url: str, options: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """(ETag, LastModified) of every object below ``url`` but the metadata documents."""
    import s3fs

    fs = s3fs.S3FileSystem(skip_instance_cache=True, **options)
    meta = ("zarr.json", ".zmetadata", ".zgroup", ".zattrs", ".zarray")
    return {
        k: (fs.info(k)["ETag"], fs.info(k)["LastModified"])
        for k in fs.find(url)
        if k.rpartition("/")[2] not in meta
    }


def _pasted(said: str, call: str, options: dict[str, Any]) -> None:
    """Run the zarr-python call that ``said`` names, as a user pastes it: ``call`` in
    backticks, with ``storage_options`` bound to the config's output.storage_options where it
    names them, as the line then says."""
    import warnings

    assert f"`{call}`" in said, said
    named = "storage_options being the config's output.storage_options" in said
    assert named == ("storage_options=storage_options" in call), said
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        eval(call, {"zarr": zarr, "storage_options": options})


@pytest.mark.parametrize("fmt", [3, 2])
def test_a_stale_copy_of_an_enclosing_group_on_s3_is_written_again_not_the_output(
    tmp_path, cli, bucket, fmt: int
) -> None:
    """`encl.zarr` on S3 consolidated (v3 `zarr.json`, v2 `.zmetadata`), a complete output at
    `encl.zarr/sub`, then an array added at `encl.zarr/other/new` without consolidating:
    `verify`, a plain `run` (and its dry run) and `plan` name the stale copy and `run
    --resume`, never `run --overwrite`, with the zarr-python call that writes it: one a user
    can paste for the s3:// URL, its storage options named (it had shown
    ``storage_options=...``, which zarr-python takes as Ellipsis). That call, run, makes
    verify pass; an array added again, `run --resume` writes the copy again, nothing
    recomputed; verify passes and the copy lists both."""
    import warnings

    from tests.storekit import zarr_store

    url, options = bucket
    src, encl = f"{url}/in.zarr", f"{url}/encl.zarr"
    zarr.create_array(
        store=zarr_store(src, options, read_only=False), shape=(8, 8), chunks=(4, 4), dtype="f4"
    )[...] = 1.0
    zarr.open_group(zarr_store(encl, options, False), mode="w", zarr_format=fmt).create_group(
        "keep"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(zarr_store(encl, options, False), zarr_format=fmt)
    cfg = write_config(
        tmp_path,
        "",
        "",
        input={"store": src, "storage_options": options},
        output={"store": f"{encl}/sub", "storage_options": options},
        cluster={"workers": 1, "threads_per_worker": 1, "dashboard": "", "protocol": "inproc"},
    )
    rc, said = _said(cli, "-q", "run", cfg, "--progress", "none")
    assert rc == 0, said
    rc, said = _said(cli, "-q", "verify", cfg)
    assert rc == 0, said

    def add(name: str) -> None:
        zarr.create_array(
            zarr_store(encl, options, False), name=name, shape=(3,), dtype="i4", zarr_format=fmt
        )

    add("other/new")
    call = (
        f"zarr.consolidate_metadata(zarr.storage.FsspecStore.from_url({encl!r}, "
        "storage_options=storage_options))"
    )
    stale = f"the consolidated metadata of {encl} does not list 'other'"
    rc, said = _said(cli, "-q", "verify", cfg)
    assert rc == 1 and stale in said and "`run --resume` writes it again" in said, said
    assert f"`{call}`" in said and "--overwrite" not in said, said
    for command in (("run", cfg), ("run", cfg, "--dry-run")):
        rc, said = _said(cli, "-q", *command, "--progress", "none")
        assert rc == 1 and stale in said and f"`{call}`" in said, said
        assert "`run --resume` writes it again" in said and "--overwrite" not in said, said
    rc, said = _said(cli, "-q", "plan", cfg)
    row = [ln for ln in said.splitlines() if "output now" in ln]
    assert rc == 0 and stale in row[0] and "`run --resume` writes it again" in row[0], said
    rc, said = _said(cli, "-q", "verify", cfg)
    _pasted(said, call, options)
    rc, said = _said(cli, "-q", "verify", cfg, "--all")
    assert rc == 0, said

    add("other/newer")
    rc, said = _said(cli, "run", cfg, "--resume", "--dry-run")
    assert rc == 0 and "writes its consolidated metadata again" in said, said
    chunks = _chunk_stamps(f"{encl}/sub", options)
    time.sleep(1.1)  # an object written again would show a later LastModified
    rc, said = _said(cli, "run", cfg, "--resume", "--progress", "none")
    assert rc == 0 and "consolidated metadata written again" in said, said
    assert _chunk_stamps(f"{encl}/sub", options) == chunks  # nothing recomputed
    rc, said = _said(cli, "-q", "verify", cfg, "--all")
    assert rc == 0, said
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        listed = zarr.open_consolidated(zarr_store(encl, options), mode="r", zarr_format=fmt)
        members = dict(listed.members(max_depth=None))
    assert "other/new" in members and "other/newer" in members, members


@pytest.mark.parametrize(
    ("how", "given"),
    [
        ("group attribute edited", "storage_options"),
        ("copy dropped", "storage_options"),
        ("copy dropped", "environment"),
    ],
)
def test_a_copy_removed_from_a_complete_output_on_s3_is_written_again_by_resume(
    tmp_path, cli, bucket, monkeypatch, how: str, given: str
) -> None:
    """The consolidated copy of a complete Dataset output on S3 removed (zarr-python's group
    attribute edit with ``use_consolidated=False`` rewrites a v3 ``zarr.json`` without it, or
    the copy dropped from it): `verify`, a plain `run` and `plan` name it as gone, `run
    --resume` and the zarr-python call that writes it again, one a user can paste for the
    s3:// URL with its storage options (``given`` in the config, or by the AWS environment:
    the URL alone); that call, run, makes verify pass; removed again, `run --resume` writes
    it again from the output's metadata (the user's attribute kept, nothing recomputed),
    verify passes, and ``xr.open_zarr`` reads the output without a warning."""
    import warnings

    xr = pytest.importorskip("xarray")
    from tests.storekit import zarr_store

    url, options = bucket
    section: dict[str, Any] = {"storage_options": options}
    if given == "environment":
        monkeypatch.setenv("AWS_ENDPOINT_URL", options["endpoint_url"])
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", options["key"])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", options["secret"])
        section = {}
    src, out = f"{url}/in.zarr", f"{url}/out.zarr"
    ds = xr.Dataset(
        {"v": (("y", "x"), np.arange(16, dtype="f4").reshape(4, 4))},
        coords={"x": np.arange(4.0)},
        attrs={"title": "t"},
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(src, zarr_format=3, consolidated=True, storage_options=options)
    cfg = write_config(
        tmp_path,
        "",
        "",
        input={"store": src, "array": "v", **section},
        output={"store": out, **section},
        cluster={"workers": 1, "threads_per_worker": 1, "dashboard": "", "protocol": "inproc"},
    )
    rc, said = _said(cli, "-q", "run", cfg, "--progress", "none")
    assert rc == 0, said
    loc = Location.of(out, options)

    def remove() -> None:
        if how == "group attribute edited":
            group = zarr.open_group(zarr_store(out, options, False), use_consolidated=False)
            group.attrs["note"] = "mine"
        else:
            doc = json.loads(loc.read("zarr.json") or b"")
            doc.pop("consolidated_metadata")
            loc.write("zarr.json", [json.dumps(doc).encode()])
        assert json.loads(loc.read("zarr.json") or b"").get("consolidated_metadata") is None

    remove()
    gone = f"the consolidated metadata of {out} is gone"
    call = (
        f"zarr.consolidate_metadata(zarr.storage.FsspecStore.from_url({out!r}, "
        "storage_options=storage_options))"
        if section
        else f"zarr.consolidate_metadata({out!r})"
    )
    rc, said = _said(cli, "-q", "verify", cfg)
    assert rc == 1 and "is gone" in said and "`run --resume` writes it again" in said, said
    assert f"`{call}`" in said and "--overwrite" not in said, said
    rc, said = _said(cli, "-q", "run", cfg, "--progress", "none")
    assert rc == 1 and gone in said and f"`{call}`" in said and "`run --resume`" in said, said
    rc, said = _said(cli, "-q", "plan", cfg)
    assert rc == 0 and gone in said and "`run --resume` writes it again" in said, said
    rc, said = _said(cli, "-q", "verify", cfg)
    _pasted(said, call, options)
    rc, said = _said(cli, "-q", "verify", cfg, "--all")
    assert rc == 0, said

    remove()
    rc, said = _said(cli, "run", cfg, "--resume", "--dry-run")
    assert rc == 0 and "writes its consolidated metadata again" in said, said
    chunks = _chunk_stamps(f"{out}/v", options)
    time.sleep(1.1)  # an object written again would show a later LastModified
    rc, said = _said(cli, "run", cfg, "--resume", "--progress", "none")
    assert rc == 0 and "consolidated metadata written again" in said, said
    assert "nothing to do" not in said, said
    assert _chunk_stamps(f"{out}/v", options) == chunks  # nothing recomputed
    rc, said = _said(cli, "-q", "verify", cfg, "--all")
    assert rc == 0, said
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "Failed to open Zarr store with consolidated"
        got = xr.open_zarr(out, storage_options=options).load()
    assert got.attrs.get("note") == ("mine" if how.startswith("group") else None), got.attrs
    assert sorted(got.variables) == ["v", "x"], got
    want = ((ds["v"].values * 5) ** 2) * 2
    assert got["v"].values.tobytes() == want.tobytes()


def _lock_object(loc: Location, group: str) -> dict[str, Any] | None:
    """The group's lock object, read (None where there is none)."""
    raw = loc.read(f"{group}/.pipeline/group.lock")
    return None if raw is None else json.loads(raw)


def test_an_s3_group_lock_is_waited_for_and_leaves_nothing(bucket) -> None:
    """The lock of an output group on S3 (``ledger.group_lock``) is a lock object,
    ``<group>/.pipeline/group.lock``, made with a conditional PUT: it names its holder (pid,
    host, since); the thread holding it takes it again; another thread of this process (a
    second ``pipeline.run``) waits until the first lets it go, and the object is gone after.
    It had held nothing on an object store: the second went in at once."""
    import threading

    from pipeline.store.ledger import group_lock

    url, options = bucket
    loc = Location.of(f"{url}/out.zarr", options)
    order: list[str] = []

    def second() -> None:
        with group_lock(loc, "g"):
            order.append("second in")
            assert _lock_object(loc, "g") is not None

    with group_lock(loc, "g"):
        held = _lock_object(loc, "g")
        assert held is not None
        assert (held["pid"], held["host"]) == (os.getpid(), socket.gethostname())
        assert isinstance(held["since"], float)
        with group_lock(loc, "g"):  # the same thread: taken again at once
            order.append("again")
        other = threading.Thread(target=second)
        other.start()
        other.join(1.5)
        assert other.is_alive()  # waiting
        order.append("first out")
    other.join(60)
    assert order == ["again", "first out", "second in"]
    assert loc.list("g") == [] and loc.list("") == []


def test_a_stopped_run_s_s3_group_lock_is_taken_over_and_a_live_one_named(
    bucket, monkeypatch
) -> None:
    """A group lock object left by a stopped run is taken over: one whose holder on this
    host has ended, and one this process has seen unchanged for longer than
    ``GROUP_LOCK_STALE`` (1 s here: a run on another host, killed; its ``beat`` is now by
    that host's clock, which is never compared with this one's); the taker's own object is
    gone after. One a live run holds (another host) is waited for, up to the wait's bound,
    then refused in one line naming the object to remove; it is left as it was."""
    from pipeline.store import ledger
    from pipeline.store.ledger import group_lock

    url, options = bucket
    loc = Location.of(f"{url}/out.zarr", options)
    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    now = time.time()
    monkeypatch.setattr(ledger, "GROUP_LOCK_STALE", 1.0)
    for holder in (
        {"pid": int(ended.stdout), "host": socket.gethostname(), "since": now, "beat": now},
        {"pid": 1, "host": "elsewhere", "since": now, "beat": now},
    ):
        loc.write("g/.pipeline/group.lock", [json.dumps(holder).encode()])
        with group_lock(loc, "g", wait=30):
            taken = _lock_object(loc, "g")
            assert taken is not None and taken["pid"] == os.getpid(), holder
        assert loc.list("g") == [], holder
    live = {"pid": 1, "host": "elsewhere", "since": now - 5, "beat": time.time()}
    body = json.dumps(live).encode()
    loc.write("g/.pipeline/group.lock", [body])
    monkeypatch.setattr(ledger, "GROUP_LOCK_STALE", 120.0)
    with pytest.raises(OutputError) as info, group_lock(loc, "g", wait=1.0):
        pass
    e = info.value
    lock = f"{url}/out.zarr/g/.pipeline/group.lock"
    assert (e.lock, e.output, e.holder) == (lock, f"{url}/out.zarr/g", live)
    line = str(e)
    assert "\n" not in line and "pid 1 on elsewhere" in line, line
    assert f"remove {lock} if that run is gone" in line, line
    assert loc.read("g/.pipeline/group.lock") == body


def test_a_held_s3_group_lock_is_renewed_while_held(bucket, monkeypatch) -> None:
    """A run holding a group's lock on S3 renews its lock object (its ``beat``) every
    ``GROUP_LOCK_BEAT`` seconds (0.2 here), so that a long step (an overwritten output's
    chunks deleted) is never taken for a stopped run's; the object is still its own, and
    gone after."""
    from pipeline.store import ledger

    url, options = bucket
    loc = Location.of(f"{url}/out.zarr", options)
    monkeypatch.setattr(ledger, "GROUP_LOCK_BEAT", 0.2)
    with ledger.group_lock(loc, "g"):
        first = _lock_object(loc, "g")
        assert first is not None
        beats = {first["beat"]}
        for _ in range(100):
            now = _lock_object(loc, "g")
            assert now is not None and now["token"] == first["token"]
            beats.add(now["beat"])
            if len(beats) > 2:
                break
            time.sleep(0.1)
        assert len(beats) > 2 and max(beats) > first["beat"]
    assert loc.list("g") == []


#: A process that holds the S3 group lock of ``g`` (``argv[5]`` "group"; "output": the
#: store's own output lock) in the store ``argv[1]`` (storage options ``argv[2]``, JSON),
#: renewing a group lock every 0.2 s, with its clock (``time.time``) ``argv[3]`` seconds
#: behind this host's: it prints "held" once it holds it, holds it ``argv[4]`` seconds, and
#: exits 0 once it has let it go (else the line of its refusal, 1).
_GROUP_HOLDER = """
import contextlib, json, sys, time
skew, hold, kind = float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
real = time.time
time.time = lambda: real() - skew
from pipeline.store import ledger
from pipeline.store.location import Location
ledger.GROUP_LOCK_BEAT = 0.2
loc = Location.of(sys.argv[1], json.loads(sys.argv[2]))

@contextlib.contextmanager
def output_lock():
    lock = ledger.Ledger(loc, "")
    lock.acquire()
    try:
        yield
    finally:
        lock.release()

try:
    with ledger.group_lock(loc, "g") if kind == "group" else output_lock():
        print("held", flush=True)
        time.sleep(hold)
except Exception as e:
    print(e, file=sys.stderr)
    sys.exit(1)
"""


@contextlib.contextmanager
def _group_holder(
    url: str,
    options: dict[str, Any],
    skew: float,
    hold: float,
    kind: str = "group",
    apart: bool = False,
) -> Iterator[subprocess.Popen[str]]:
    """:data:`_GROUP_HOLDER` run as a process of its own, once it holds the lock; ``apart``:
    in a PID namespace of its own (``unshare``: a container of this host's name)."""
    command = [sys.executable, "-c", _GROUP_HOLDER, url, json.dumps(options), str(skew)]
    command += [str(hold), kind]
    if apart:
        command = ["unshare", "-Urpf", "--mount-proc", *command]
    proc = subprocess.Popen(
        command,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "held\n", proc.communicate()
        yield proc
    finally:
        if proc.poll() is None:
            end_process(proc)


def test_a_live_s3_group_lock_of_a_host_whose_clock_is_behind_is_never_taken_over(
    bucket, monkeypatch
) -> None:
    """h82e: a group lock object renewed by a live run whose clock is an hour behind this
    host's (its ``beat``, its own time, an hour old) is waited for, never taken over: a lock
    is stale when this process has seen it unchanged for ``GROUP_LOCK_STALE`` seconds (1 s
    here) on its own clock. The holder's ``beat`` had been compared with this clock: the
    live run's lock was taken over at once, both then rewriting the group's shared metadata
    (real processes)."""
    from pipeline.store import ledger

    url, options = bucket
    loc = Location.of(f"{url}/out.zarr", options)
    monkeypatch.setattr(ledger, "GROUP_LOCK_STALE", 1.0)
    with _group_holder(loc.url, options, skew=3600.0, hold=6.0) as holder:
        held = _lock_object(loc, "g")
        assert held is not None and held["pid"] == holder.pid
        with pytest.raises(OutputError) as info, ledger.group_lock(loc, "g", wait=3.0):
            pass
        assert f"pid {holder.pid} on {socket.gethostname()}" in str(info.value), info.value
        _out, err = holder.communicate(timeout=60)
        assert holder.returncode == 0, err
    assert loc.list("g") == []


@pytest.mark.parametrize("kind", ["group", "output"])
def test_a_live_s3_lock_of_a_container_of_this_host_s_name_is_never_taken_over(
    bucket, kind: str
) -> None:
    """h82e: a lock object (a group's, an output's) held by a live process of another PID
    namespace under this host's name (a container given it), whose pid names no process here
    or another one (its pid 1, this host's init), is another machine's: waited for, then
    refused naming it, never taken over. Its host name alone had been compared: its pid
    looked up here, it was taken for an ended run's and its lock taken over at once, two
    writers then writing as the only one (real processes, ``unshare``)."""
    from pipeline.store import ledger

    probe = subprocess.run(["unshare", "-Urpf", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip("no unprivileged PID namespaces here (unshare -Urpf)")
    url, options = bucket
    loc = Location.of(f"{url}/out.zarr", options)
    with _group_holder(loc.url, options, skew=0.0, hold=6.0, kind=kind, apart=True) as holder:
        with pytest.raises(OutputError) as info:
            if kind == "group":
                with ledger.group_lock(loc, "g", wait=2.0):
                    pass
            else:
                ledger.Ledger(loc, "").acquire()
        line = str(info.value)
        assert "\n" not in line and f"on {socket.gethostname()}" in line, line
        assert "if that run is gone" in line, line
        _out, err = holder.communicate(timeout=60)
        assert holder.returncode == 0, err
    assert loc.list("g") == [] and loc.list(".pipeline") == []


def test_a_run_whose_s3_group_lock_is_taken_over_while_it_holds_it_stops(
    bucket, monkeypatch
) -> None:
    """h82e: a run holding a group's lock that is stopped (SIGSTOP) for longer than
    ``GROUP_LOCK_STALE`` (1 s here) has it taken over by another run; once it goes on
    (SIGCONT), its held step ends in one line saying that the lock was taken over while it
    held it, naming the other run and `pipeline verify`, and exits 1, never 0; the other
    run's lock object is left to it. It had gone on as if it still held it, both runs having
    rewritten the group's shared metadata at once (real processes)."""
    import signal

    from pipeline.store import ledger

    url, options = bucket
    loc = Location.of(f"{url}/out.zarr", options)
    monkeypatch.setattr(ledger, "GROUP_LOCK_STALE", 1.0)
    with _group_holder(loc.url, options, skew=0.0, hold=2.0) as holder:
        os.kill(holder.pid, signal.SIGSTOP)
        try:
            with ledger.group_lock(loc, "g", wait=30.0):
                mine = _lock_object(loc, "g")
                assert mine is not None and mine["pid"] == os.getpid()
                os.kill(holder.pid, signal.SIGCONT)
                out, err = holder.communicate(timeout=60)
                now = _lock_object(loc, "g")  # left to this run (perhaps renewed)
                assert now is not None and now["token"] == mine["token"], now
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(holder.pid, signal.SIGCONT)
    assert holder.returncode == 1, (out, err)
    line = err.strip()
    assert "\n" not in line, line
    assert "was taken over by another run" in line and f"pid {os.getpid()}" in line, line
    assert "`pipeline verify`" in line, line
    assert loc.list("g") == []


#: The lock objects that a stopped process's holder is taken over in, by the lock's kind:
#: (its key under the store, the locking call's name).
_LOCK_KEYS = {
    "output": ".pipeline/lock",
    "input": ".pipeline/generate.lock",
    "group": "g/.pipeline/group.lock",
}


def _take_lock(
    kind: str,
    role: str,
    url: str,
    options: dict[str, Any],
    met: Any,
    went: Any,
    said: Any,
    done: Any,
) -> None:
    """In a process of its own: take the S3 lock ``kind`` of ``url`` (the output's,
    ``Ledger.acquire``; the input's, ``InputLock.acquire``; the group 'g''s, ``group_lock``),
    which a stopped process holds, and put (``role``, 'took' or 'busy') on ``said``. Its first
    change to the lock object (the take-over's delete or replacement) waits for ``met``, a
    barrier the other process passes at its own, so both have read the stopped holder; then
    role 'a' goes on, and role 'b' only once 'a' has taken it or been refused (``went``). Each
    keeps what it took until both are done (``done``), so the other never finds it stopped."""
    from pipeline.store.ledger import InputLock, Ledger, group_lock

    key = _LOCK_KEYS[kind]
    first: list[bool] = []

    def held_back(plain: Any) -> Any:
        def change(self: Location, at: str, *args: Any, **kwargs: Any) -> Any:
            if at == key and not first:
                first.append(True)
                met.wait(30)
                if role == "b":
                    went.wait(30)
            return plain(self, at, *args, **kwargs)

        return change

    for name in ("delete", "replace_if"):  # whichever changes the lock object
        if hasattr(Location, name):
            setattr(Location, name, held_back(getattr(Location, name)))
    loc = Location.of(url, options)
    try:
        if kind == "group":
            with group_lock(loc, "g", wait=2.0):
                said.put((role, "took"))
                went.set()
                done.wait(30)
            return
        (InputLock if kind == "input" else Ledger)(loc, "").acquire()
        said.put((role, "took"))
    except PipelineError:
        said.put((role, "busy"))
    went.set()
    done.wait(30)


@pytest.mark.parametrize("kind", sorted(_LOCK_KEYS))
def test_two_runs_finding_a_stopped_runs_s3_lock_at_once_take_it_one(bucket, kind) -> None:
    """h63d, h68a: an S3 lock object (the output's ``.pipeline/lock``, a generation's
    ``generate.lock``, an output group's ``group.lock``) of a process that has ended on this
    host, found by two processes at once: exactly one takes it over, the other is refused
    as busy (a group's waiter gives up after its ``wait``). The interleaving is forced: both
    read the stopped holder before either changes the object, then one takes it over whole
    before the other goes on. Deleting the lock if still the stopped one, then racing with
    the conditional create, had let the second delete the first one's new lock and create
    its own: both had taken it, two writers of one output (on a busy machine, h68a). It is
    taken over by a PUT conditional on the stopped holder's version (If-Match, its ETag)."""
    import multiprocessing

    url, options = bucket
    out = f"{url}/{kind}.zarr"
    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    stopped = {"pid": int(ended.stdout), "host": socket.gethostname(), "since": time.time()}
    Location.of(out, options).write(_LOCK_KEYS[kind], [json.dumps(stopped).encode()])
    spawn = multiprocessing.get_context("spawn")
    met, went, said, done = spawn.Barrier(2), spawn.Event(), spawn.Queue(), spawn.Barrier(2)
    runs = [
        spawn.Process(target=_take_lock, args=(kind, role, out, options, met, went, said, done))
        for role in "ab"
    ]
    for run in runs:
        run.start()
    for run in runs:
        run.join(120)
    assert [run.exitcode for run in runs] == [0, 0]
    assert sorted(said.get(timeout=5) for _ in runs) == [("a", "took"), ("b", "busy")]


def test_s3_conditional_replace_and_delete_compare_the_version_read(bucket) -> None:
    """``Location.read_tagged`` gives an object's bytes and ETag in one request;
    ``replace_if`` and ``delete_if`` change it only while it is still that version (S3's
    If-Match), which the lock take-over and release rely on (h68a): a version replaced
    since, or none, is left as it is."""
    url, options = bucket
    loc = Location.of(f"{url}/tagged", options)
    assert loc.read_tagged("lock") is None
    assert loc.replace_if("lock", b"me", '"0"') is None and loc.read("lock") is None
    assert not loc.delete_if("lock", '"0"')
    loc.write("lock", [b"stopped"])
    read = loc.read_tagged("lock")
    assert read is not None and read[0] == b"stopped" and read[1]
    mine = loc.replace_if("lock", b"mine", read[1])
    assert mine and mine != read[1] and loc.read("lock") == b"mine"
    assert loc.replace_if("lock", b"theirs", read[1]) is None  # the version read is gone
    assert not loc.delete_if("lock", read[1]) and loc.read("lock") == b"mine"
    assert loc.delete_if("lock", mine) and loc.read("lock") is None


@pytest.mark.parametrize("step", ["release", "drop", "renew"])
def test_an_s3_lock_taken_over_meanwhile_is_left_to_its_new_holder(
    bucket, monkeypatch, step
) -> None:
    """h68a: a lock object that another run takes over (this one thought stopped) between
    this run's read of it, which still names this run, and its change of it, is left to that
    run: the output lock's ``release``, the group lock's deletion at its end (``drop``) and
    its renewal (``renew``) change it only if it is still the version read (If-Match). Each
    had deleted the new holder's lock, or written this run's over it, then deleted it: a
    third run then took it as free, beside the new holder. The take-over is forced right
    after the read (a hook on the read)."""
    from pipeline.store import ledger
    from pipeline.store.ledger import Ledger, group_lock

    url, options = bucket
    loc = Location.of(f"{url}/{step}.zarr", options)
    key = ".pipeline/lock" if step == "release" else "g/.pipeline/group.lock"
    now = time.time()
    other = {"pid": 1, "host": "elsewhere", "since": now, "beat": now, "token": "other"}
    armed, hit = threading.Event(), threading.Event()
    write = Location.write

    def then_taken_over(plain: Any) -> Any:
        def read(self: Location, at: str, *args: Any, **kwargs: Any) -> Any:
            got = plain(self, at, *args, **kwargs)
            if at == key and armed.is_set() and not hit.is_set():
                hit.set()
                write(self, key, [json.dumps(other).encode()])  # another run takes it now
            return got

        return read

    for name in ("read", "read_tagged"):  # whichever reads the lock object
        if hasattr(Location, name):
            monkeypatch.setattr(Location, name, then_taken_over(getattr(Location, name)))
    monkeypatch.setattr(ledger, "GROUP_LOCK_BEAT", 0.05 if step == "renew" else 600.0)
    if step == "release":
        held = Ledger(loc, "")
        held.acquire()
        armed.set()
        held.release()
    else:  # taken over while the step was held (``renew``), the step is then refused;
        # taken over as it is deleted (``drop``), after the step, it is not
        refused = (
            pytest.raises(OutputError, match="was taken over by another run")
            if step == "renew"
            else contextlib.nullcontext()
        )
        with refused, group_lock(loc, "g"):
            armed.set()
            if step == "renew":
                assert hit.wait(30)  # the renewal read it; leaving waits for its write
    assert hit.is_set()
    raw = loc.read(key)
    assert raw is not None and json.loads(raw) == other


def test_os_files_in_an_s3_output_change_nothing_and_a_node_named_so_is_one(
    tmp_path, cli, bucket
) -> None:
    """A ``.DS_Store`` and an AppleDouble ``._0`` object in a complete S3 output (copied
    there with the folder from a Mac) are passed by as on a local disk
    (tests/test_state.py): ``plan``, ``run``, ``run --resume`` and ``verify`` say of the
    output what they say without them, and ``run --overwrite`` replaces it, them too. A
    prefix named ``._x`` that holds a Zarr array (a legal node name) is no such file: the
    group holding it is a group that holds a node, which no run replaces (it had been taken
    for an empty group, and its ``._x`` files said to be beside "the array's" chunks)."""
    import s3fs

    url, options = bucket
    fs = s3fs.S3FileSystem(skip_instance_cache=True, **options)
    x = np.random.default_rng(5).standard_normal((8, 6)).astype(np.float32)
    make_array(tmp_path / "in.zarr", x, (4, 6))
    out = f"{url}/os-files.zarr"
    one = {"workers": 1, "threads_per_worker": 1, "dashboard": ""}
    cfg = write_config(
        tmp_path,
        tmp_path / "in.zarr",
        "",
        output={"store": out, "storage_options": options, "chunks": [4, 6]},
        cluster=one,
    )
    rc, _, err = cli("run", cfg, "--progress", "none")
    assert rc == 0, err

    def said() -> list[Any]:
        rc, text, err = cli("plan", cfg)
        now = re.search(r"output now\s+(.*)", text)
        rc_run, _, err_run = cli("run", cfg, "--progress", "none")
        rc_resume, out_resume, err_resume = cli("run", cfg, "--resume", "--progress", "none")
        rc_verify, text_verify, _ = cli("verify", cfg, "--samples", "2")
        status = re.search(r"output status\s+(\S+)", text_verify)
        return [
            (rc, now.group(1) if now else err),
            (rc_run, one_line_error(err_run)),
            (rc_resume, "nothing to do" in out_resume + err_resume),
            (rc_verify, status.group(1) if status else text_verify),
        ]

    clean = said()
    assert clean[0] == (0, "complete: `run --overwrite` replaces it"), clean
    assert clean[1][0] == 1 and "already exists; pass --overwrite" in clean[1][1], clean
    assert clean[2:] == [(0, True), (0, "complete")], clean
    objects = set(fs.find(out[5:]))
    added = [".DS_Store", "c/.DS_Store", "c/._0"]
    for rel in added:
        fs.pipe_file(f"{out[5:]}/{rel}", b"\x00\x00\x00\x01Bud1")
    fs.invalidate_cache()
    assert said() == clean
    rc, _, err = cli("run", cfg, "--overwrite", "--progress", "none")
    assert rc == 0, err
    fs.invalidate_cache()
    assert set(fs.find(out[5:])) == objects  # the OS files went with the output
    assert _zarr_s3(out, options)[...].tobytes() == reference(x).tobytes()

    group = f"{url}/group.zarr"
    store = zarr.storage.FsspecStore.from_url(group, storage_options=options)
    zarr.open_group(store, mode="w").create_array("._x", shape=(3,), dtype="int16")[...] = 7
    cfg = write_config(
        tmp_path,
        tmp_path / "in.zarr",
        "",
        output={"store": group, "storage_options": options},
        cluster=one,
    )
    for flags in ((), ("--overwrite",)):
        e = refused("run", cfg, *flags)
        assert isinstance(e, OutputError) and e.status == "group", e
        assert "is a Zarr group that holds '._x'" in str(e), e
    assert np.array_equal(_zarr_s3(f"{group}/._x", options)[...], np.full(3, 7, np.int16))


def test_generate_with_input_store_inside_a_dataset_on_s3_is_refused(tmp_path, cli, bucket) -> None:
    """input.store inside a user's xarray Dataset on S3 (``ds.zarr/gen``): the group above
    the store's root is looked at on S3 as on a local disk (``Location.parent``), and the
    write that had left the Dataset unopenable (an array naming no dimensions) is refused
    in one line, nothing written."""
    import s3fs
    import xarray as xr
    from zarr.storage import FsspecStore

    from pipeline.errors import InputError

    url, options = bucket
    store = FsspecStore.from_url(f"{url}/ds.zarr", storage_options=options, read_only=False)
    xr.Dataset({"t": (("x",), np.arange(4.0))}).to_zarr(store, mode="w", consolidated=False)
    cfg = write_config(
        tmp_path,
        "",
        "",
        input={
            "store": f"{url}/ds.zarr/gen",
            "storage_options": options,
            "generate": {"shape": [4, 8], "chunks": [2, 8], "shards": "none"},
        },
        output={"store": f"{url}/res.zarr", "storage_options": options},
    )
    e = refused("generate", cfg)
    assert isinstance(e, InputError) and e.status == "dataset", e
    rc, _, err = cli("generate", cfg)
    line = one_line_error(err)
    assert rc == 1 and "holds an xarray Dataset" in line, err
    fs = s3fs.S3FileSystem(**options)
    assert not fs.exists(f"{url}/ds.zarr/gen".removeprefix("s3://"))
    read = FsspecStore.from_url(f"{url}/ds.zarr", storage_options=options, read_only=True)
    with xr.open_zarr(read, consolidated=False) as ds:
        assert list(ds.data_vars) == ["t"]


def test_a_run_that_could_not_consolidate_again_on_s3_is_refused_and_writes_nothing(
    tmp_path, cli, bucket
) -> None:
    """A consolidated Dataset on S3 (v3, xarray's) whose member ``r`` has its zarr.json cut
    short: a run writing a new variable into that store would consolidate it again at its
    end, which reads every member. Refused before anything is written, in one line naming
    the member's s3:// URL, as tests/test_xarray.py checks on local stores; every object is
    as it was (ETags and times), the consolidated copy with them."""
    import warnings

    import s3fs

    xr = pytest.importorskip("xarray")
    url, options = bucket
    out = f"{url}/out.zarr"
    users = xr.Dataset({"q": ("z", np.arange(3.0)), "r": ("z", np.ones(3))})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        users.to_zarr(out, zarr_format=3, consolidated=True, storage_options=options)
    fs = s3fs.S3FileSystem(skip_instance_cache=True, **options)
    document = f"{out}/r/zarr.json"
    whole = fs.cat_file(document)
    fs.pipe_file(document, whole[: len(whole) // 2])
    x = np.arange(48, dtype=np.float32).reshape(6, 8)
    make_array(tmp_path / "in.zarr", x, (3, 8))
    cfg = write_config(
        tmp_path,
        tmp_path / "in.zarr",
        "",
        output={"store": out, "array": "new/t", "storage_options": options},
        cluster={"workers": 1, "threads_per_worker": 1, "dashboard": "", "protocol": "inproc"},
    )

    def objects() -> dict[str, tuple[Any, Any]]:
        found = fs.find(out, detail=True)
        return {k: (v["ETag"], v["LastModified"]) for k, v in found.items()}

    before = objects()
    time.sleep(1.1)  # an object written again would show a later LastModified
    rc, said = _said(cli, "-q", "run", cfg, "--progress", "none")
    assert rc == 1, said
    assert len(said.strip().splitlines()) == 1, said
    assert f"{out}/r holds Zarr metadata that zarr-python cannot read (JSONDecodeError" in said
    assert objects() == before
    assert json.loads(fs.cat_file(f"{out}/zarr.json")).get("consolidated_metadata") is not None


@pytest.mark.parametrize("command", ["run", "generate"])
def test_workers_lacking_s3fs_are_refused_naming_them(tmp_path, bucket, command: str) -> None:
    """A joined cluster whose worker's Python lacks s3fs, this process having it: every task
    had failed with "cannot open s3://...: Install s3fs to access S3", which named no worker,
    after a run had made its output (left incomplete). The run is refused before anything is
    written, and generate before its units are, in one line naming the store, the worker and
    where to install s3fs."""
    import s3fs

    from tests.faultkit import env
    from tests.test_scheduler import _WITHOUT_MODULES, ROOT, _one_worker_cluster

    url, options = bucket
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(_WITHOUT_MODULES)
    if command == "run":
        x = np.arange(48, dtype=np.float32).reshape(12, 4)
        zarr.create_array(
            store=_s3_store(f"{url}/in.zarr", options), shape=x.shape, dtype=x.dtype, chunks=(4, 4)
        )[...] = x
        input_section: dict[str, Any] = {}
    else:
        input_section = {"generate": {"shape": [12, 4], "chunks": [4, 4], "dtype": "float32"}}
    cfg = write_config(
        tmp_path,
        "",
        "",
        input={"store": f"{url}/in.zarr", "storage_options": options, **input_section},
        output={"store": f"{url}/out.zarr", "storage_options": options},
        cluster={"timeout": 60},
    )
    worker_env = {"PYTHONPATH": os.pathsep.join((str(site), str(ROOT))), "WITHOUT_MODULES": "s3fs"}
    with _one_worker_cluster(tmp_path / "dask.log", env(), **worker_env) as address:
        proc = subprocess.run(
            [sys.executable, "-m", "pipeline", command, str(cfg), "--scheduler", address],
            capture_output=True,
            text=True,
            timeout=300,
            env=env(),
            cwd=tmp_path,
        )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    line = one_line_error(proc.stderr)
    assert line.startswith(
        f"error: the input store {url}/in.zarr cannot be opened on the cluster at {address}: "
        "its worker tcp://127.0.0.1:"
    ), line
    assert "lacks its file system's package (Install s3fs to access S3)" in line, line
    fs = s3fs.S3FileSystem(skip_instance_cache=True, **options)
    assert not fs.exists(f"{url}/out.zarr")
    if command == "generate":  # its metadata made, marked unfinished: no unit written
        assert not fs.exists(f"{url}/in.zarr/c")


@pytest.mark.parametrize(
    ("zarr_format", "written", "said", "stored"),
    [
        (2, "/", None, "7/13"),
        (3, "/", {"name": "default", "configuration": {"separator": "."}}, "c/7/13"),
        (3, ".", {"name": "default", "configuration": {"separator": "/"}}, "c.7.13"),
    ],
    ids=["v2-nested-no-separator", "v3-slashes-said-dots", "v3-dots-said-slashes"],
)
def test_sparse_chunks_under_another_key_encoding_on_s3_are_refused(
    tmp_path, bucket, zarr_format, written, said, stored
) -> None:
    """A sparse array on S3 whose one chunk lies under another encoding's key than its
    metadata says (no probed unit holds one) is refused by plan, naming that key, from a
    listing that stops at the first name that may be a chunk's, also where 20 files of a
    user's are listed first (S3 lists in byte order: ``Note-00.txt`` before ``c``; a listing
    that gave up after 8 files had found no key, and the array of misplaced chunks had run
    as its fill value, verify passing: h65f); the same array with its metadata as written,
    notes and all, plans and runs."""
    import s3fs
    from zarr.storage import FsspecStore

    import pipeline

    url, options = bucket
    fs = s3fs.S3FileSystem(skip_instance_cache=True, **options)
    for name in ("in.zarr", "right.zarr"):
        store = FsspecStore.from_url(f"{url}/{name}", storage_options=options)
        encoding = {"name": "v2" if zarr_format == 2 else "default", "separator": written}
        a = zarr.create_array(
            store=store, shape=(200, 200), dtype="f4", chunks=(10, 10), fill_value=0,
            zarr_format=zarr_format, chunk_key_encoding=encoding,
        )  # fmt: skip
        a[73:76, 133:135] = 7
    doc = f"{url}/in.zarr/" + (".zarray" if zarr_format == 2 else "zarr.json")
    meta = json.loads(fs.cat(doc))
    key = "dimension_separator" if zarr_format == 2 else "chunk_key_encoding"
    meta.pop(key)
    if said is not None:
        meta[key] = said
    fs.pipe(doc, json.dumps(meta).encode())
    cfg = write_config(
        tmp_path, "", "",
        input={"store": f"{url}/in.zarr", "storage_options": options},
        output={"store": f"{url}/out.zarr", "storage_options": options},
    )  # fmt: skip
    for notes in (False, True):
        if notes:  # a user's files, listed before the chunks' names (upper case before 'c')
            for name in ("in.zarr", "right.zarr"):
                found = fs.ls(f"{url}/{name}", detail=True)
                folders = [f["name"] for f in found if f["type"] == "directory"]
                for folder in (f"{url}/{name}", *(f"s3://{f}" for f in folders)):
                    fs.pipe({f"{folder}/Note-{i:02}.txt": b"a note" for i in range(20)})
        e = refused("plan", cfg)
        assert isinstance(e, InputError) and e.key == stored, e
    assert not fs.exists(f"{url}/out.zarr")
    right = write_config(
        tmp_path, "", "", name="right.yaml",
        input={"store": f"{url}/right.zarr", "storage_options": options},
        output={"store": f"{url}/right-out.zarr", "storage_options": options},
    )  # fmt: skip
    x = np.zeros((200, 200), np.float32)
    x[73:76, 133:135] = 7
    pipeline.run(right)
    assert np.array_equal(_zarr_s3(f"{url}/right-out.zarr", options)[...], reference(x))


#: What a user allowed to read and write a store's objects may do, in moto's names of the
#: actions (the API operation's: HeadObject where AWS checks s3:GetObject, a multipart
#: upload's parts where it checks s3:PutObject); no listing (ListObjectsV2, HeadBucket),
#: which AWS grants as s3:ListBucket.
_OBJECT_ACTIONS = [
    "s3:GetObject",
    "s3:HeadObject",
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:DeleteObjects",
    "s3:CopyObject",
    "s3:CreateMultipartUpload",
    "s3:UploadPart",
    "s3:CompleteMultipartUpload",
    "s3:AbortMultipartUpload",
]


@pytest.fixture(scope="module")
def unlisting_s3(checking_s3: dict[str, Any]) -> dict[str, Any]:
    """A bucket on :func:`checking_s3`'s server, and users who may not list it: ``reader``
    reads every object and writes those under ``out/``; ``prefix`` reads and writes only
    those under ``data/``; ``keeper``, who may list, read and write it but delete
    nothing; and ``stores``, who may list it and read and write only the keys under each
    ``stores/NAME.zarr/`` (not the store's own name, nor the folders above it). Their
    storage_options, the admin's (``admin``) and the bucket's name
    (``bucket``)."""
    import boto3
    import s3fs

    admin = checking_s3
    name = f"unlisting-{uuid.uuid4().hex[:8]}"
    s3fs.S3FileSystem(skip_instance_cache=True, **admin).mkdir(name)
    iam = boto3.client(
        "iam",
        endpoint_url=admin["endpoint_url"],
        region_name="us-east-1",
        aws_access_key_id=admin["key"],
        aws_secret_access_key=admin["secret"],
    )
    found: dict[str, Any] = {"admin": admin, "bucket": name}
    arn = f"arn:aws:s3:::{name}"
    listing = ["s3:ListObjectsV2", "s3:ListObjects", "s3:HeadBucket"]
    keeping = [a for a in _OBJECT_ACTIONS if "Delete" not in a]
    users = {
        "reader": [
            {"Effect": "Allow", "Action": ["s3:GetObject", "s3:HeadObject"], "Resource": "*"},
            {"Effect": "Allow", "Action": _OBJECT_ACTIONS, "Resource": f"{arn}/out/*"},
        ],
        "prefix": [
            {"Effect": "Allow", "Action": _OBJECT_ACTIONS, "Resource": f"{arn}/data/*"},
        ],
        "keeper": [
            {"Effect": "Allow", "Action": listing, "Resource": arn},
            {"Effect": "Allow", "Action": keeping, "Resource": f"{arn}/*"},
        ],
        "stores": [
            {"Effect": "Allow", "Action": listing, "Resource": arn},
            {"Effect": "Allow", "Action": _OBJECT_ACTIONS, "Resource": f"{arn}/stores/*.zarr/*"},
        ],
    }  # fmt: skip
    for user, statements in users.items():
        iam.create_user(UserName=f"{name}-{user}")
        key = iam.create_access_key(UserName=f"{name}-{user}")["AccessKey"]
        policy = {"Version": "2012-10-17", "Statement": statements}
        iam.put_user_policy(
            UserName=f"{name}-{user}", PolicyName="objects", PolicyDocument=json.dumps(policy)
        )
        found[user] = {**admin, "key": key["AccessKeyId"], "secret": key["SecretAccessKey"]}
    return found


def _unlisted_config(tmp_path, s3: dict[str, Any], inp: tuple[str, str], out: tuple[str, str]):
    """A config over ``s3://BUCKET/{inp[0]}`` and ``.../{out[0]}``, reached as the users
    ``inp[1]`` and ``out[1]`` of :func:`unlisting_s3`."""
    url = f"s3://{s3['bucket']}"
    return write_config(
        tmp_path, "", "", name=f"{uuid.uuid4().hex[:8]}.yaml",
        input={"store": f"{url}/{inp[0]}", "storage_options": s3[inp[1]]},
        output={"store": f"{url}/{out[0]}", "storage_options": s3[out[1]]},
    )  # fmt: skip


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_an_s3_store_its_user_may_not_list_names_s3_list_bucket(
    tmp_path, cli, unlisting_s3, zarr_format: int
) -> None:
    """Credentials that may read (and write under a prefix) but not list the bucket: Zarr
    cannot read an array there (s3fs asks for a listing where a key is not there: a HEAD
    answered 404, and S3 answers 403 for it, to such a user), and the pipeline had said
    'PermissionError: Access Denied ...: give access to it', naming no permission, and
    verify 'no output at ...: run the pipeline first' of an output it could not read. Plan,
    run, resume and verify each end in one line naming the store, s3:ListBucket and the
    section whose credentials need it, on the input's side and on the output's, and for a
    user who may read and write only the objects under a prefix that holds both."""
    import s3fs
    from zarr.storage import FsspecStore

    s3 = unlisting_s3
    name = f"data/in-{uuid.uuid4().hex[:8]}.zarr"
    x = np.zeros((60, 40), np.float32)
    x[13:15, 21:24] = 7  # a sparse array: its probed chunks are not there
    store = FsspecStore.from_url(f"s3://{s3['bucket']}/{name}", storage_options=s3["admin"])
    zarr.create_array(
        store=store, shape=x.shape, dtype=x.dtype, chunks=(10, 10), fill_value=0,
        zarr_format=zarr_format,
    )[...] = x  # fmt: skip
    reader = FsspecStore.from_url(
        f"s3://{s3['bucket']}/{name}", storage_options=s3["reader"], read_only=True
    )
    with pytest.raises(PermissionError):  # zarr-python cannot read it as this user either
        zarr.open_array(store=reader, mode="r")[...]
    cases = [
        ("input", (name, "reader"), ("out/o.zarr", "admin")),
        ("output", (name, "admin"), ("out/o.zarr", "reader")),
        # one user who may read and write only the objects under data/: both stores there
        ("input", (name, "prefix"), ("data/o.zarr", "prefix")),
    ]
    for side, inp, out in cases:
        cfg = _unlisted_config(tmp_path, s3, inp, out)
        store_url = f"s3://{s3['bucket']}/{(inp if side == 'input' else out)[0]}"
        for command in (("plan",), ("run",), ("run", "--resume"), ("verify",)):
            rc, stdout, err = cli(*command, cfg)
            assert rc == 1, (command, stdout, err)
            line = one_line_error(err)
            assert store_url in line, (command, line)
            assert "S3 ListObjectsV2 needs s3:ListBucket" in line, (command, line)
            assert "grant s3:ListBucket on the store's bucket" in line, (command, line)
            assert f"credentials in {side}.storage_options" in line, (command, line)
            assert "run the pipeline first" not in line, (command, line)
            if command == ("verify",):  # no "nothing to verify": it could not read it
                assert re.match(f"error: cannot read {side} store", line), line
    # nothing was written as the users who may not list
    fs = s3fs.S3FileSystem(skip_instance_cache=True, **s3["admin"])
    assert fs.find(f"{s3['bucket']}/out") == []
    assert fs.find(f"{s3['bucket']}/data/o.zarr") == []


def test_an_s3_listing_refused_while_looking_for_a_sparse_array_s_chunk_is_said(
    unlisting_s3,
) -> None:
    """The listing that looks for a sparse array's first stored key (``_stored_key_of``), made
    with credentials that may read but not list: it had been taken as a server that lists
    no folders (HTTP 403), its probe dropped and the array run, misplaced chunks and all, as
    its fill value. S3 lists to every user with s3:ListBucket, so its refusal is an
    InputError naming that permission. (s3fs lists for a key that is not there, so Zarr's
    reads refuse such a user first: this calls the step itself, with the metadata read as a
    user who may list.)"""
    from zarr.storage import FsspecStore

    from pipeline.store import arrays

    s3 = unlisting_s3
    url = f"s3://{s3['bucket']}/data/sparse-{uuid.uuid4().hex[:8]}.zarr"
    store = FsspecStore.from_url(url, storage_options=s3["admin"])
    zarr.create_array(store=store, shape=(60, 40), dtype="f4", chunks=(10, 10), fill_value=0)[
        13:15, 21:24
    ] = 7
    loc = Location.of(url, s3["admin"], "input")
    arr = arrays.open_zarr_array(loc, "")
    info = arrays.describe_array(loc, "", arr)
    assert arrays._stored_key_of(info, arr, arr.store_path.store, "") == "c/1/2"
    unlisted = FsspecStore.from_url(url, storage_options=s3["reader"], read_only=True)
    with pytest.raises(InputError) as e:
        arrays._stored_key_of(info, arr, unlisted, "")
    line = str(e.value)
    assert line.startswith(f"cannot list input store {url} for the first stored chunk"), line
    assert "S3 ListObjectsV2 needs s3:ListBucket" in line, line
    assert "credentials in input.storage_options" in line and "\n" not in line, line


def test_credentials_granted_only_the_stores_prefixes_run_plan_resume_and_verify(
    tmp_path, cli, unlisting_s3
) -> None:
    """A user who may list the bucket but read and write only the keys under each store
    (``bucket/stores/in.zarr/*``, ``.../out.zarr/*``): S3 refuses a HEAD of the store's own
    name (``stores/in.zarr``, no object: the prefix) and of the folders above it
    (``stores/zarr.json``), which s3fs asks before it lists, and the pipeline had refused
    every command ("cannot read input store ...: it answered PermissionError: Forbidden ...
    for the metadata of its root"), for a store it could read whole. The store is found by
    a listing under its prefix (``Location.exists``), and a folder above it whose metadata is
    refused is one nothing is known of (``arrays.array_above``, ``enclosing_groups``). Plan,
    run, resume and verify pass, and the output is NumPy's. (moto grants a listing of the
    whole bucket or none: a listing limited by ``s3:prefix`` is not checked here.)"""
    import s3fs
    from zarr.storage import FsspecStore

    s3 = unlisting_s3
    tag = uuid.uuid4().hex[:8]
    inp, out = f"stores/in-{tag}.zarr", f"stores/out-{tag}.zarr"
    x = np.arange(600, dtype=np.float32).reshape(30, 20)
    store = FsspecStore.from_url(f"s3://{s3['bucket']}/{inp}", storage_options=s3["admin"])
    zarr.create_array(store=store, shape=x.shape, dtype=x.dtype, chunks=(10, 20))[...] = x
    fs = s3fs.S3FileSystem(skip_instance_cache=True, **s3["stores"])
    with pytest.raises(PermissionError):  # S3 does refuse the store's own name to this user
        fs.info(f"{s3['bucket']}/{inp}")
    cfg = _unlisted_config(tmp_path, s3, (inp, "stores"), (out, "stores"))
    for command in (
        ("plan",), ("run", "--progress", "plain"), ("run", "--resume"), ("verify",),
        ("run", "--overwrite", "--progress", "none"), ("verify",),
    ):  # fmt: skip
        rc, stdout, err = cli(*command, cfg)
        assert rc == 0, (command, stdout, err)
        assert "error" not in err and "Traceback" not in err, (command, err)
    got = _zarr_s3(f"s3://{s3['bucket']}/{out}", s3["admin"])[...]
    assert np.array_equal(got, reference(x))


def _denied_user(
    admin: dict[str, Any], denied: dict[str, list[str]], rows: int = 30
) -> tuple[str, dict[str, Any]]:
    """A fresh bucket on :func:`checking_s3`'s server holding ``in.zarr`` (float32, ``rows``
    by 20, chunks of 10 rows), and a user allowed everything there but the actions
    ``denied`` (moto's names of them) on each key pattern under the bucket (its own name
    for ``""``: a listing): (the bucket's name, the user's storage_options)."""
    import boto3
    import s3fs
    from zarr.storage import FsspecStore

    name = f"refused-{uuid.uuid4().hex[:8]}"
    s3fs.S3FileSystem(skip_instance_cache=True, **admin).mkdir(name)
    iam = boto3.client(
        "iam", endpoint_url=admin["endpoint_url"], region_name="us-east-1",
        aws_access_key_id=admin["key"], aws_secret_access_key=admin["secret"],
    )  # fmt: skip
    statements = [{"Effect": "Allow", "Action": "*", "Resource": "*"}] + [
        {"Effect": "Deny", "Action": actions, "Resource": f"arn:aws:s3:::{name}/{keys}".rstrip("/")}
        for keys, actions in denied.items()
    ]
    iam.create_user(UserName=name)
    made = iam.create_access_key(UserName=name)["AccessKey"]
    policy = json.dumps({"Version": "2012-10-17", "Statement": statements})
    iam.put_user_policy(UserName=name, PolicyName="refused", PolicyDocument=policy)
    x = np.arange(rows * 20, dtype=np.float32).reshape(rows, 20)
    store = FsspecStore.from_url(f"s3://{name}/in.zarr", storage_options=admin)
    zarr.create_array(store=store, shape=x.shape, dtype=x.dtype, chunks=(10, 20))[...] = x
    return name, {**admin, "key": made["AccessKeyId"], "secret": made["SecretAccessKey"]}


def _in_and_out_on(tmp_path, name: str, **more: Any) -> Any:
    """A function of (storage_options, file name, the input's storage_options where they
    differ) that writes a config over ``s3://NAME/in.zarr`` and ``.../out.zarr`` (``more``:
    other sections): its path."""

    def config(options: dict[str, Any], file: str, inp: dict[str, Any] | None = None) -> Any:
        return write_config(
            tmp_path, "", "", name=file,
            input={"store": f"s3://{name}/in.zarr", "storage_options": inp or options},
            output={"store": f"s3://{name}/out.zarr", "storage_options": options},
            **more,
        )  # fmt: skip

    return config


#: Requests refused to one user by an IAM Deny (moto's names of the actions, on a key
#: pattern under the bucket), the command (run as an admin first: ``resumed``), and what its
#: line names: the store's section, the action and the key.
_REFUSED = {
    "input metadata, on resume": (
        ["s3:GetObject", "s3:HeadObject"], "in.zarr/*", ("run", "--resume"), True,
        ("input", "read", "in.zarr/zarr.json"),
    ),
    "output lock, taken": (
        ["s3:PutObject"], "out.zarr/.pipeline/*", ("run", "--progress", "plain"), False,
        ("output", "write", "out.zarr/.pipeline/lock"),
    ),
    "output metadata, written": (
        ["s3:PutObject"], "out.zarr/zarr.json", ("run", "--overwrite"), True,
        ("output", "write", "out.zarr/zarr.json"),
    ),
    "output lock, read by verify": (
        ["s3:GetObject", "s3:HeadObject"], "out.zarr/.pipeline/*", ("verify",), True,
        ("output", "read", "out.zarr/.pipeline/lock"),
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(_REFUSED))
def test_a_refused_s3_request_no_step_names_says_the_store_action_and_key(
    tmp_path, cli, checking_s3, case: str
) -> None:
    """Input and output on S3, one request refused (HTTP 403) where no step of the pipeline
    says it itself: the input's metadata read for a resume's record, the output's lock
    taken or read, its metadata written by Zarr. s3fs's PermissionError names no key, and
    with both stores remote the line had been 'a store answered PermissionError: ...: ...
    the store's storage_options', naming neither the store nor the key. It names the store
    and its section, the action refused and the key (``errors.mark_asked``)."""
    actions, keys, command, resumed, (side, action, key) = _REFUSED[case]
    admin = checking_s3
    name, user = _denied_user(admin, {keys: actions})
    config = _in_and_out_on(tmp_path, name)
    if resumed:
        assert cli("run", config(admin, "admin.yaml"))[0] == 0
    rc, out, err = cli(*command, config(user, "user.yaml"))
    assert rc == 1, out + err
    line = one_line_error(err)
    url = f"s3://{name}/{'in' if side == 'input' else 'out'}.zarr"
    assert line.startswith(f"error: the {side} store {url} answered PermissionError"), line
    assert f" to the {action} of s3://{name}/{key}: " in line, line
    assert f"credentials in {side}.storage_options" in line, line
    assert user["secret"] not in out + err and admin["secret"] not in out + err


_LIST = ["s3:ListObjectsV2", "s3:ListObjects", "s3:ListBucket"]
_DELETE = ["s3:DeleteObject", "s3:DeleteObjects"]

#: Credentials that may write the output but not read it back (key patterns under the
#: bucket and the actions denied there, as an IAM policy can say), the action the line
#: names and the request refused, of the write probe the store took.
_WRITE_ONLY = {
    "objects not read": (
        {"out.zarr/*": ["s3:GetObject", "s3:HeadObject"]}, "read", "the read of {url}/",
    ),
    "bucket not listed": (
        {"": _LIST}, "list", "the list (S3 ListObjectsV2) made for the look up of {url}/",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(_WRITE_ONLY))
def test_an_s3_output_its_user_may_write_but_not_read_names_the_read_refused(
    tmp_path, cli, checking_s3, case: str
) -> None:
    """Output credentials that may write (PutObject, DeleteObject) but not read the output
    back: S3 takes the write probe and refuses its look-up (a HEAD, or the listing s3fs
    makes after it), and the line had been 'cannot write to the output store ... or choose
    a writable output.store', blaming the permission that was granted. Plan, run and resume
    say the action refused (read, list), the key and the permission to grant, for the
    output's credentials (``errors.refused_request``)."""
    denied, action, asked = _WRITE_ONLY[case]
    admin = checking_s3
    name, user = _denied_user(admin, denied)
    url = f"s3://{name}/out.zarr"
    cfg = _in_and_out_on(tmp_path, name)(user, "user.yaml", inp=admin)
    for command in (("plan",), ("run",), ("run", "--resume")):
        rc, out, err = cli(*command, cfg)
        assert rc == 1, (command, out, err)
        line = one_line_error(err)
        assert line.startswith(f"error: cannot {action} the output store {url}: "), line
        assert f" to {asked.format(url=url)}{WRITE_PROBE}-" in line, line
        permission = "s3:ListBucket" if action == "list" else "s3:GetObject"
        assert permission in line and "credentials in output.storage_options" in line, line
        assert "cannot write" not in line and "writable" not in line, line


def test_an_s3_input_generate_may_write_but_not_read_names_the_read_refused(
    tmp_path, cli, checking_s3
) -> None:
    """``generate`` with input credentials that may write the input but not read it: its
    probe's look-up is refused, said as a refused read of the input store, not as 'cannot
    write to the input store'."""
    admin = checking_s3
    name, user = _denied_user(admin, {"gen.zarr/*": ["s3:GetObject", "s3:HeadObject"]})
    generate = {"shape": [20, 10], "chunks": [10, 10]}
    cfg = write_config(
        tmp_path, "", "",
        input={"store": f"s3://{name}/gen.zarr", "storage_options": user, "generate": generate},
        output={"store": f"s3://{name}/out.zarr", "storage_options": admin},
    )  # fmt: skip
    rc, out, err = cli("generate", cfg)
    assert rc == 1, out + err
    line = one_line_error(err)
    assert line.startswith(f"error: cannot read the input store s3://{name}/gen.zarr: "), line
    assert "s3:GetObject" in line and "credentials in input.storage_options" in line, line
    assert "cannot write" not in line and "writable" not in line, line


def test_a_refused_s3_delete_names_the_object_refused_and_leaves_no_lock(
    tmp_path, cli, checking_s3
) -> None:
    """An --overwrite whose credentials may not delete the old output's chunks: the line
    names the object S3 refused to delete (it had named the folder it was deleting), and
    the lock is given up."""
    import s3fs

    admin = checking_s3
    name, user = _denied_user(admin, {"out.zarr/c/*": _DELETE})
    config = _in_and_out_on(tmp_path, name)
    assert cli("run", config(admin, "admin.yaml"))[0] == 0
    rc, out, err = cli("run", "--overwrite", config(user, "user.yaml"))
    assert rc == 1, out + err
    line = one_line_error(err)
    url = f"s3://{name}/out.zarr"
    said = re.escape(f"error: cannot delete {url}/c/") + r"\d+/\d+ \(PermissionError: "
    assert re.match(said, line), line
    assert "(S3 DeleteObject needs s3:DeleteObject)" in line, line
    fs = s3fs.S3FileSystem(skip_instance_cache=True, **admin)
    assert not fs.exists(f"{name}/out.zarr/.pipeline/lock")


#: Credentials that may write the output but not delete part of its run record (key
#: patterns and the actions denied there), whether the run itself is refused (its chunks'
#: writes), and whether the lock itself can be deleted.
_UNDELETABLE = {
    "markers, the run complete": ({"out.zarr/.pipeline/done/*": _DELETE}, False, True),
    "the record, the run complete": ({"out.zarr/.pipeline/*": _DELETE}, False, False),
    "the record, the run refused": (
        {"out.zarr/.pipeline/*": _DELETE, "out.zarr/c/*": ["s3:PutObject"]}, True, False,
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(_UNDELETABLE))
def test_a_refused_delete_of_an_s3_run_record_gives_up_the_lock_or_says_how(
    tmp_path, cli, checking_s3, case: str
) -> None:
    """Credentials that may write the output but not delete (part of) its run record: the
    run's end (or its refusal) left the lock object held, unsaid, and the next run was
    refused as 'another run is writing'. Where only the record's other objects are refused
    (more markers than one batch of deletes), the lock is given up; where the lock itself
    cannot be deleted, the line (the complete run's warning, or the refused run's error)
    says it stays, S3's answer, and the command that deletes it, which done lets the next
    run go on."""
    import s3fs

    denied, refused, deletable = _UNDELETABLE[case]
    admin = checking_s3
    name, user = _denied_user(admin, denied, rows=650)  # 65 blocks: over one batch of 64
    config = _in_and_out_on(tmp_path, name, chunking={"block": [10, 20]})
    url = f"s3://{name}/out.zarr"
    rc, out, err = cli("run", config(user, "user.yaml"))
    assert rc == (1 if refused else 0), out + err
    fs = s3fs.S3FileSystem(skip_instance_cache=True, **admin)
    lock = f"{name}/out.zarr/.pipeline/lock"
    if refused:
        line = one_line_error(err)
        assert line.startswith("error: cannot write output chunk "), line
        assert "another run is writing" not in line, line
    else:
        line = err
        assert "the output is complete, but its run record stays" in err, err
    if deletable:
        assert not fs.exists(lock) and "its lock" not in err, err
    else:
        assert fs.exists(lock)
        said = (
            f"its lock {url}/.pipeline/lock stays (PermissionError: Access Denied (S3 "
            "DeleteObject needs s3:DeleteObject)): grant s3:DeleteObject on the store's keys "
            "to the credentials in output.storage_options, or delete it yourself (`aws s3 rm "
            f"{url}/.pipeline/lock --endpoint-url {admin['endpoint_url']}`)"
        )
        assert said in line, line
        fs.rm_file(lock)  # as the line says, with credentials that may
    rc, out, err = cli("run", "--resume", config(admin, "admin.yaml"))
    assert rc == 0, out + err
    got = _zarr_s3(url, admin)[...]
    assert np.array_equal(got, reference(_zarr_s3(f"s3://{name}/in.zarr", admin)[...]))


def test_a_refused_s3_generation_whose_lock_cannot_be_deleted_says_both(
    tmp_path, cli, checking_s3
) -> None:
    """``generate`` refused a chunk's write by credentials that may not delete its lock
    object either: the lock's refused delete, in its ``finally``, had replaced the
    refusal's line (the user saw 'cannot delete ... generate.lock', not why the generation
    failed). The line is the chunk's refusal, ending with the lock that stays and the
    command that deletes it."""
    admin = checking_s3
    name, user = _denied_user(
        admin, {"gen.zarr/c/*": ["s3:PutObject"], "gen.zarr/.pipeline/*": _DELETE}
    )
    generate = {"shape": [20, 10], "chunks": [10, 10]}
    cfg = write_config(
        tmp_path, "", "",
        input={"store": f"s3://{name}/gen.zarr", "storage_options": user, "generate": generate},
        output={"store": f"s3://{name}/out.zarr", "storage_options": admin},
    )  # fmt: skip
    rc, out, err = cli("generate", cfg)
    assert rc == 1, out + err
    line = one_line_error(err)
    assert line.startswith("error: cannot write input chunk 'c/"), line
    assert "(S3 PutObject needs s3:PutObject)" in line, line
    lock = f"s3://{name}/gen.zarr/.pipeline/generate.lock"
    assert f"its lock {lock} stays (PermissionError: Access Denied (S3 DeleteObject " in line
    assert f"(`aws s3 rm {lock} --endpoint-url {admin['endpoint_url']}`)" in line, line


def test_an_s3_output_lock_left_by_a_killed_run_is_taken_over(tmp_path, cli, bucket) -> None:
    """A run killed (SIGKILL) while it holds the output's lock object on S3 leaves it there;
    the next run on this host finds its holder's process gone and takes the lock over (a
    PUT conditional on the version read: ``ledger._take_over``), says so, and finishes; no
    lock stays."""
    import s3fs

    url, options = bucket
    x = np.arange(600, dtype=np.float32).reshape(30, 20)
    store = _s3_store(f"{url}/in.zarr", options)
    zarr.create_array(store=store, shape=x.shape, dtype=x.dtype, chunks=(10, 20))[...] = x
    cfg = write_config(
        tmp_path, "", "",
        input={"store": f"{url}/in.zarr", "storage_options": options},
        output={"store": f"{url}/out.zarr", "storage_options": options},
    )  # fmt: skip
    fs = s3fs.S3FileSystem(skip_instance_cache=True, **options)
    lock = f"{url.removeprefix('s3://')}/out.zarr/.pipeline/lock"
    with paused_at_lock("run", cfg, cwd=tmp_path) as held:
        holder = json.loads(fs.cat_file(lock))
        assert holder["pid"] == held.pid
        kill_group(held)  # the run and whatever it started
        held.wait(30)
    fs.invalidate_cache()
    assert fs.exists(lock)  # what the killed run left
    rc, out, err = cli("run", cfg, "--progress", "plain")
    assert rc == 0, out + err
    assert f"taking over {url}/out.zarr/.pipeline/lock, left by a stopped run" in err, err
    fs.invalidate_cache()
    assert not fs.exists(lock)
    assert np.array_equal(_zarr_s3(f"{url}/out.zarr", options)[...], reference(x))


@contextlib.contextmanager
def _failing_s3(endpoint: str, failing: tuple[str, ...]) -> Iterator[str]:
    """A proxy in a thread of this process before the S3 server at ``endpoint``, answering
    each GET or HEAD of a key whose path ends with one of ``failing`` as S3 does when it
    fails (HTTP 500, ``InternalError``), and passing everything else on as it came: its
    address."""
    import http.client
    import http.server
    import threading
    from urllib.parse import urlsplit

    target = urlsplit(endpoint)
    error = (
        b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code>'
        b"<Message>We encountered an internal error. Please try again.</Message></Error>"
    )

    class Proxy(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            head = self.command == "HEAD"
            if self.command in ("GET", "HEAD") and urlsplit(self.path).path.endswith(failing):
                self.send_response(500)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", "0" if head else str(len(error)))
                self.end_headers()
                if not head:
                    self.wfile.write(error)
                return
            conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
            conn.request(self.command, self.path, body=body, headers=dict(self.headers))
            got = conn.getresponse()
            data = got.read()
            self.send_response(got.status)
            for name, value in got.getheaders():
                if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(name, value)
            size = got.getheader("Content-Length") if head else str(len(data))
            self.send_header("Content-Length", size or "0")
            self.end_headers()
            if not head:
                self.wfile.write(data)
            conn.close()

        do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = answer

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.parametrize("failing", ["in.zarr/zarr.json", "in.zarr/c/1/0"])
def test_an_s3_server_s_failure_is_said_to_be_the_server_s(
    tmp_path, cli, bucket, failing: str
) -> None:
    """An S3 server that fails (HTTP 500 InternalError) on the input's metadata or a chunk:
    s3fs raises it as an OSError with an errno of its own (EREMOTEIO; EIO for a code it does
    not know), which had been read as a file system's: "mend what is at that path of the
    store (the file system's error above)", "check the disk or file system that holds the
    store". The line names the request and S3's answer, and the fix is the server's."""
    url, options = bucket
    x = np.arange(600, dtype=np.float32).reshape(30, 20)
    store = zarr_store(f"{url}/in.zarr", options, read_only=False)
    zarr.create_array(store=store, shape=x.shape, dtype=x.dtype, chunks=(10, 20))[...] = x
    with _failing_s3(options["endpoint_url"], (failing,)) as proxy:
        through = {
            **options,
            "endpoint_url": proxy,
            "config_kwargs": {"retries": {"total_max_attempts": 1}},
        }
        cfg = write_config(
            tmp_path, "", "",
            input={"store": f"{url}/in.zarr", "storage_options": through},
            output={"store": f"{url}/out.zarr", "storage_options": options},
        )  # fmt: skip
        rc, out, err = cli("run", cfg)
    assert rc == 1, out + err
    line = one_line_error(err)
    assert line.startswith(f"error: cannot read input store {url}/in.zarr: "), line
    assert re.search(r"\(S3 (Head|Get)Object answered HTTP 500( InternalError)?\)", line), line
    assert "make the store reachable (the server answering again)" in line, line
    assert "mend what is at" not in line and "disk" not in line, line


def test_an_s3_output_its_user_may_not_delete_from_names_s3_delete_object(
    tmp_path, cli, unlisting_s3
) -> None:
    """Credentials that may list, read and write the output's bucket but delete nothing: the
    write probe's object could not be deleted, and the line had given a local folder's fix
    ("make it deletable (write permission on its folder, no immutable attribute)"). It names
    the object, S3's refusal and s3:DeleteObject, for the output's credentials; nothing but
    that probe is written."""
    import s3fs
    from zarr.storage import FsspecStore

    s3 = unlisting_s3
    tag = uuid.uuid4().hex[:8]
    x = np.arange(600, dtype=np.float32).reshape(30, 20)
    store = FsspecStore.from_url(f"s3://{s3['bucket']}/in-{tag}.zarr", storage_options=s3["admin"])
    zarr.create_array(store=store, shape=x.shape, dtype=x.dtype, chunks=(10, 20))[...] = x
    cfg = _unlisted_config(tmp_path, s3, (f"in-{tag}.zarr", "admin"), (f"o-{tag}.zarr", "keeper"))
    rc, out, err = cli("run", cfg)
    assert rc == 1, out + err
    line = one_line_error(err)
    out_url = f"s3://{s3['bucket']}/o-{tag}.zarr"
    assert line.startswith(f"error: cannot delete {out_url}/"), line
    assert "(S3 DeleteObject needs s3:DeleteObject)" in line, line
    assert "grant s3:DeleteObject on the store's keys to the credentials in output" in line, line
    assert "immutable" not in line, line
    fs = s3fs.S3FileSystem(skip_instance_cache=True, **s3["admin"])
    left = [k.rpartition("/")[2] for k in fs.find(out_url)]
    assert all(is_write_probe(k) for k in left), left


def test_an_s3_input_s_generation_lock_refuses_survives_its_rewrite_and_is_taken_over(
    tmp_path, cli, bucket
) -> None:
    """On S3 a generation's lock is an object, ``<array>/.pipeline/generate.lock``, made by a
    conditional PUT. Held by a live process (a real one): ``generate`` is refused in one line
    naming it and the object to remove if it is gone, ``run`` as reading an input being
    generated; zarr-python lists the group's members as without it. Once its holder has
    ended (same host) the next ``generate`` takes it over, and leaves no lock. Zarr's
    overwrite had deleted every object under the array, a lock there too: the input made
    again keeps a held lock."""
    import pipeline
    from pipeline.running.generate import create_input
    from pipeline.store.ledger import InputLock

    url, options = bucket
    store = f"{url}/gen.zarr"
    cfg = write_config(
        tmp_path,
        "",
        "",
        input={
            "store": store,
            "array": "x",
            "storage_options": options,
            "generate": {"shape": [8, 6], "chunks": [4, 6]},
        },
        output={"store": f"{url}/res.zarr", "storage_options": options},
    )
    assert cli("generate", cfg, "--progress", "none")[0] == 0
    loc = Location.of(store, options)
    lock = f"{store}/x/.pipeline/generate.lock"
    with holding_input_lock(store, "x", options) as holder:
        e = refused("generate", cfg)
        assert isinstance(e, InputError) and e.status == "generating", e
        assert (e.holder["pid"], e.holder["host"]) == (holder.pid, socket.gethostname())
        assert f"another process is generating the input {store}/x (pid {holder.pid} on " in str(e)
        assert str(e).endswith(f"or remove {lock} if that process is gone"), e
        r = refused("run", cfg)
        assert isinstance(r, InputError) and r.status == "generating", r
        # (warnings are errors: a lock object taken for a node would warn)
        assert sorted(zarr.open_group(zarr_store(store, options), mode="r").keys()) == ["x"]
    rc, _, err = cli("generate", cfg, "--progress", "none")
    assert rc == 0, err
    assert not loc.exists("x/.pipeline")
    mine = InputLock(loc, "x")
    mine.acquire()
    try:
        create_input(pipeline.load_config(cfg), "cpu")  # the input made again under it
        kept = mine.holder()
        assert kept is not None and kept["pid"] == os.getpid(), kept
    finally:
        mine.clear()
    assert not loc.exists("x/.pipeline")


@pytest.mark.parametrize("at", ["cleared", "half-cleared", "units"])
def test_an_s3_input_whose_generation_was_killed_is_named_unfinished_and_taken_over(
    tmp_path, bucket, at
) -> None:
    """On S3, a ``generate`` killed (SIGKILL, at a point reached deterministically) before it
    wrote the metadata, having deleted part of an earlier input, or after some chunks, leaves
    its lock object naming a process that has ended (this host): ``plan``, ``run`` and
    ``verify`` say in one line that the input's generation was stopped and the command that
    makes it again (it had been "no Zarr array at ...: check input.array"), and ``generate``
    takes it over and makes the input whole, its lock gone."""
    url, options = bucket
    store = f"{url}/gen.zarr"
    rows, cols = 6, 4
    cfg = write_config(
        tmp_path,
        "",
        "",
        input={
            "store": store,
            "array": "x",
            "storage_options": options,
            "generate": {
                "shape": [rows, cols],
                "chunks": [1, cols],
                "shards": [1, cols],
                "distribution": "ramp",
            },
        },
        output={"store": f"{url}/res.zarr", "storage_options": options},
        cluster={"workers": 1, "threads_per_worker": 1, "dashboard": ""},
    )
    if at == "half-cleared":
        assert error_of("generate", cfg) is None
    pid = killed_generation(cfg, at, tmp_path)
    loc = Location.of(store, options)
    assert loc.exists("x/.pipeline/generate.lock")
    for command in ("plan", "run", "verify"):
        e = refused(command, cfg)
        assert isinstance(e, InputError), (command, e)
        assert (e.status, e.made_by, e.holder["pid"]) == ("incomplete", "generate", pid), e
        said = f"the input {store}/x is unfinished: its generation (pid {pid}) was stopped "
        assert str(e).startswith(said + "before it finished"), (command, e)
        assert f"`pipeline generate {cfg}` generates it again" in str(e), (command, e)
    assert error_of("generate", cfg) is None
    assert not loc.exists("x/.pipeline")
    ramp = ((np.arange(rows * cols) % 1024) * 0.5).astype(np.float32).reshape(rows, cols)
    made = zarr.open_array(zarr_store(store, options), path="x", mode="r")[:]
    assert np.array_equal(made, ramp)


@pytest.mark.parametrize("paused", ["outer", "inner"])
def test_runs_whose_s3_outputs_nest_are_refused_before_writing(tmp_path, bucket, paused) -> None:
    """On S3 as on a local disk: two runs at once (real processes, the first held once it
    has taken its lock object, before it writes), one writing ``out.zarr``, the other
    ``out.zarr/sub``. Each had taken its own lock object, and the outer run's clearing of
    its prefix deleted the inner one's objects, its lock too. The second is refused before
    it writes an object, naming both; the first then finishes."""
    url, options = bucket
    x = np.arange(400, dtype=np.float32).reshape(20, 20)
    make_array(tmp_path / "in.zarr", x, (5, 20))
    out, inner = f"{url}/out.zarr", f"{url}/out.zarr/sub"
    cluster = {"workers": 1, "threads_per_worker": 1, "dashboard": "", "protocol": "inproc"}

    def config(name: str, store: str) -> Any:
        return write_config(
            tmp_path,
            tmp_path / "in.zarr",
            "",
            name=name,
            output={"store": store, "storage_options": options},
            cluster=cluster,
        )

    outer_cfg, inner_cfg = config("outer.yaml", out), config("inner.yaml", inner)
    first, second = (outer_cfg, inner_cfg) if paused == "outer" else (inner_cfg, outer_cfg)
    loc = Location.of(url, options)
    with paused_at_lock("run", first, cwd=tmp_path) as held:
        before = sorted(loc.fs().find(loc.path_of("")))
        r = run_python(
            ["-m", "pipeline", "run", second, "--progress", "none", "--overwrite"], tmp_path
        )
        assert r.returncode == 1, r.stdout + r.stderr
        line = one_line_error(r.stderr)
        mine, rel, other = (
            (inner, "lies inside", out) if paused == "outer" else (out, "holds", inner)
        )
        assert line.startswith(
            f"error: the output {mine} {rel} {other}, which another run is writing as its "
            "output now (pid "
        ), line
        assert sorted(loc.fs().find(loc.path_of(""))) == before
        _, err = go_on(held)
        assert held.returncode == 0, err
    y = _zarr_s3(out if paused == "outer" else inner, options)
    assert np.array_equal(y[...], reference(x))


def test_an_s3_inputs_edited_dtype_is_refused_before_the_output_is_made(
    tmp_path, cli, bucket
) -> None:
    """A sharded v3 input on S3 (zarr-python: inner chunks bytes + zstd, the index at the
    shard's end) whose ``data_type`` was edited by hand (float32 to float64) after its chunks
    were written: h72d: the run said so at its first chunk read, the output made on S3 and
    left incomplete. The plan reads one inner chunk (the shard's index, then the chunk, by
    ranged GETs) and refuses the run in one line naming the metadata's document, before the
    output exists; the input is left as it was."""
    import s3fs
    from zarr.codecs import BytesCodec, ShardingCodec, ZstdCodec
    from zarr.storage import FsspecStore

    url, options = bucket
    x = np.random.default_rng(0).standard_normal((16, 24)).astype(np.float32)
    store = FsspecStore.from_url(f"{url}/in.zarr", storage_options=options)
    serializer = ShardingCodec(chunk_shape=(4, 6), codecs=[BytesCodec(), ZstdCodec()])
    arr = zarr.create_array(
        store=store,
        shape=x.shape,
        dtype=x.dtype,
        chunks=(8, 12),
        serializer=serializer,
        compressors=None,
    )
    arr[...] = x
    fs = s3fs.S3FileSystem(skip_instance_cache=True, **options)
    doc = f"{url}/in.zarr/zarr.json"
    meta = json.loads(fs.cat_file(doc))
    fs.pipe_file(doc, json.dumps({**meta, "data_type": "float64"}).encode())
    before = {k: fs.info(k)["ETag"] for k in fs.find(f"{url}/in.zarr")}
    cfg = write_config(
        tmp_path,
        "",
        "",
        input={"store": f"{url}/in.zarr", "storage_options": options},
        output={"store": f"{url}/out.zarr", "storage_options": options},
    )
    rc, _, err = cli("run", "--progress", "none", cfg)
    line = one_line_error(err)
    assert rc != 0 and line.startswith(f"error: input {url}/in.zarr does not match its "), err
    assert "where its metadata zarr.json (dtype float64, chunk shape [4, 6]) says 192 (96 " in line
    assert line.endswith(
        "; nothing was written: write back the dtype and chunk shape they were written with"
    ), line
    fresh = s3fs.S3FileSystem(skip_instance_cache=True, **options)  # no listing cached
    assert not fresh.exists(f"{url}/out.zarr")
    assert {k: fresh.info(k)["ETag"] for k in fresh.find(f"{url}/in.zarr")} == before


#: ``python -m pipeline`` (argv[2:]) whose third block's write is held (before its task asks
#: that its lock is still its run's) until the file ``argv[1].release`` exists, writing
#: ``argv[1].held`` as it begins to wait: a run with one worker thread, two blocks written,
#: held between blocks (a process stopped there, a suspended laptop), no timing.
_HELD_AT_THIRD_BLOCK = """
import os, sys, time
from pipeline.running import tasks

gate = sys.argv.pop(1)
calls = []


def held(plain):
    def write(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            open(gate + ".held", "w").close()
            while not os.path.exists(gate + ".release"):
                time.sleep(0.02)
        return plain(*args, **kwargs)

    return write


tasks.write_block = held(tasks.write_block)
from pipeline.cli import main
sys.exit(main(sys.argv[1:]))
"""

#: :data:`_HELD_AT_THIRD_BLOCK` of ``pipeline generate``: its third unit's write held.
_HELD_AT_THIRD_UNIT = _HELD_AT_THIRD_BLOCK.replace(
    "tasks.write_block = held(tasks.write_block)",
    "from pipeline.running import generate\ngenerate.write_unit = held(generate.write_unit)",
)


@contextlib.contextmanager
def _held_at_third(
    tmp_path: Path, script: str, *command: str
) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """``pipeline COMMAND`` (``command``) run by ``script`` (:data:`_HELD_AT_THIRD_BLOCK` or
    :data:`_HELD_AT_THIRD_UNIT`) in its own process group, once it is held at its third
    write: the process and its gate (touch ``<gate>.release`` to let it go on). Ended, if it
    has not, on the way out (continued first, where a test stopped it)."""
    import signal

    gate = tmp_path / "gate"
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(gate), *command, "--progress", "none"],
        env=env(),
        cwd=str(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        while not Path(f"{gate}.held").exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, f"{command[0]} never reached its third write"
            time.sleep(0.05)
        yield proc, gate
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGCONT)
        if proc.poll() is None:
            kill_group(proc)
            proc.wait(30)


def _two_runs_of_one_s3_output(
    tmp_path: Path, url: str, options: dict, seed: int = 7, output: dict | None = None
) -> tuple[np.ndarray, Path, Path]:
    """An S3 input of 12 rows of one block each (float32 [12, 256], written by zarr-python,
    from ``seed``), and two configs that write ``{url}/out.zarr`` from it, multiplying by 2
    (``a.yaml``) and by 3 (``b.yaml``), on one inproc worker of one thread, ``output``'s
    settings added to the output's: the input and the two configs."""
    rows, cols = 12, 256
    x = np.random.default_rng(seed).standard_normal((rows, cols)).astype(np.float32)
    zarr.create_array(
        store=_s3_store(f"{url}/in.zarr", options), shape=x.shape, dtype=x.dtype, chunks=(1, cols)
    )[...] = x

    def config(name: str, factor: int) -> Path:
        return write_config(
            tmp_path, "", "", name,
            input={"store": f"{url}/in.zarr", "storage_options": options},
            output={
                "store": f"{url}/out.zarr", "storage_options": options, "chunks": [1, cols],
                **(output or {}),
            },
            stages=[{"op": "multiply", "factor": factor}],
            chunking={"block": [1, cols]},
            cluster={"workers": 1, "threads_per_worker": 1, "protocol": "inproc", "dashboard": ""},
        )  # fmt: skip

    return x, config("a.yaml", 2), config("b.yaml", 3)


@pytest.mark.parametrize("other", ["ended", "writing"])
def test_a_run_whose_s3_lock_object_is_removed_stops_writing_there(
    tmp_path, bucket, other: str
) -> None:
    """A run writing an S3 output whose lock object is removed meanwhile (stopped with
    SIGSTOP, it is refused as live to a second run, whose line says to remove the lock if that
    run is gone; a user does), and a run of another config with ``--overwrite`` that takes the
    lock: once it goes on (SIGCONT), the first run stops before its next block, in one line
    naming the lock and that it is gone or another run's (real processes). The second
    run's output is its own alone, complete, NumPy's bit for bit (``ended``: it had ended
    first; ``writing``: it holds the lock, stopped before it writes, and its lock object stays
    its own through the first one's end). ``Ledger.check_held`` had returned at once on an
    object store: the first run wrote its blocks, markers and "complete" into the other's
    output, and its end deleted that run's record, its lock too, both exiting 0 (h77d)."""
    import signal

    import s3fs

    url, options = bucket
    x, first, second = _two_runs_of_one_s3_output(tmp_path, url, options)
    fs = s3fs.S3FileSystem(skip_instance_cache=True, **options)
    lock = f"{url}/out.zarr/.pipeline/lock"
    with _held_at_third(tmp_path, _HELD_AT_THIRD_BLOCK, "run", str(first)) as (proc, gate):
        os.kill(proc.pid, signal.SIGSTOP)
        e = refused("run", second, "--overwrite")  # a live run, stopped: named
        assert isinstance(e, OutputError) and e.holder["pid"] == proc.pid, e
        assert f"or remove {lock} if that run is gone" in str(e), e
        fs.rm_file(lock.removeprefix("s3://"))  # as the line says (the run seems gone)
        with contextlib.ExitStack() as stack:
            later = None
            if other == "ended":
                assert error_of("run", second, "--overwrite", "--progress", "none") is None
                now, then = "it is now gone", "`run --overwrite` recomputes it"  # run's own
            else:
                later = stack.enter_context(
                    paused_at_lock("run", second, "--overwrite", cwd=tmp_path)
                )
                now = f"it is now another run's (pid {later.pid} on "
                then = f"another run is writing {url}/out.zarr (pid {later.pid} on "
            Path(f"{gate}.release").touch()
            os.kill(proc.pid, signal.SIGCONT)
            _, err = proc.communicate(timeout=300)
            assert proc.returncode == 1, err
            line = one_line_error(err)
            assert line.startswith(
                f"error: the lock {lock} of {url}/out.zarr was removed, or taken by another "
                f"run, while this run wrote it ({now}"
            ), line
            assert "this run stopped, so as not to write into another's; " in line, line
            assert then in line, line
            if later is not None:  # its lock object is still its own: no third run takes it
                fs.invalidate_cache()
                assert json.loads(fs.cat_file(lock.removeprefix("s3://")))["pid"] == later.pid
                out, err = go_on(later)
                assert later.returncode == 0, out + err
        y = _zarr_s3(f"{url}/out.zarr", options)
        assert np.array_equal(y[...].view(np.uint32), (x * np.float32(3)).view(np.uint32))
        assert record_of(y.attrs)["status"] == "complete"
        assert not Location.of(f"{url}/out.zarr", options).exists(".pipeline")


def test_a_run_whose_s3_lock_is_taken_as_it_writes_a_block_names_that_block(
    tmp_path, bucket
) -> None:
    """h82e: a run whose S3 lock object is removed and taken by a run with ``--overwrite``
    after its check of the lock for a block and before that block's writes (held there, real
    processes) writes that block's units by the output's keys (S3 has no write conditional
    on another object: the limit the README states), then stops at its check before the
    block's marker, in one line that names that block, says it may be in the other run's
    output, and names `pipeline verify --all`; it had said only that the lock was taken.
    The other run, which overwrites the output after, ends with its own output, NumPy's."""
    import s3fs

    url, options = bucket
    x, first, second = _two_runs_of_one_s3_output(tmp_path, url, options)
    fs = s3fs.S3FileSystem(skip_instance_cache=True, **options)
    lock = f"{url}/out.zarr/.pipeline/lock"
    script = _HELD_AT_THIRD_BLOCK.replace("tasks.write_block =", "tasks.write_unit =").replace(
        "held(tasks.write_block)", "held(tasks.write_unit)"
    )
    with _held_at_third(tmp_path, script, "run", str(first)) as (proc, gate):
        fs.rm_file(lock.removeprefix("s3://"))  # as a busy run's line says, if its run is gone
        with paused_at_lock("run", second, "--overwrite", cwd=tmp_path) as later:
            Path(f"{gate}.release").touch()
            _, err = proc.communicate(timeout=300)
            assert proc.returncode == 1, err
            line = one_line_error(err)
            assert line.startswith(f"error: the lock {lock} of {url}/out.zarr was removed"), line
            # (the third block written: whichever Dask ran third)
            assert re.search(r"; its block \(\d+, 0\), and any other it was writing then", line)
            assert "may be in the output of the run that took it" in line, line
            assert "`pipeline verify --all` with that run's config" in line, line
            out, err = go_on(later)
            assert later.returncode == 0, out + err
    y = _zarr_s3(f"{url}/out.zarr", options)
    assert np.array_equal(y[...].view(np.uint32), (x * np.float32(3)).view(np.uint32))
    assert record_of(y.attrs)["status"] == "complete"


#: :data:`_HELD_AT_THIRD_BLOCK` held at the NTH marker's write instead: after the block's
#: units and the check before its marker (``Ledger.mark``), where another run taking the
#: lock meanwhile has its marker land in that run's record.
_HELD_AT_MARK = (
    _HELD_AT_THIRD_BLOCK.replace("len(calls) == 3", "len(calls) == NTH")
    .replace("from pipeline.running import tasks", "from pipeline.store import ledger")
    .replace(
        "tasks.write_block = held(tasks.write_block)",
        "plain_mark = ledger.Ledger.mark\n"
        "ledger.Ledger.mark = lambda self, *a, **k: held(lambda: plain_mark(self, *a, **k))()",
    )
)


def test_a_marker_written_after_another_run_took_the_s3_lock_counts_in_no_record_of_its(
    tmp_path, bucket
) -> None:
    """h83f: a run (``a.yaml``, x2) held after its check of the lock before a block's marker,
    its S3 lock object removed and taken by a run of another config with ``--overwrite``
    (``b.yaml``, x3), which writes every block and is killed before its last marker (real
    processes, held there, no timing): the first run's marker then lands in the other's
    record, over the marker of a block that run wrote (S3 has no write conditional on
    another object), and the first stops. The resume of the other run counts that marker as
    no block of its record's: it writes that block again (10 of its own 11 markers skipped,
    not 11, the first run's counts and its marker taken as its own) and ends complete,
    NumPy's bit for bit. A marker carried no mark of its record: any marker in the record's
    folder counted as written by it."""
    url, options = bucket
    rows = 12
    # a block's bytes the same whichever run wrote it
    x, first, second = _two_runs_of_one_s3_output(
        tmp_path, url, options, seed=11, output={"codec": {"name": "none"}}
    )
    loc = Location.of(f"{url}/out.zarr", options)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a_script = _HELD_AT_MARK.replace("NTH", "3")
    b_script = _HELD_AT_MARK.replace("NTH", str(rows))
    with _held_at_third(tmp_path / "a", a_script, "run", str(first)) as (proc, gate):
        loc.delete(".pipeline/lock")  # as a busy run's line says, if its run is gone
        with _held_at_third(tmp_path / "b", b_script, "run", str(second), "--overwrite") as (
            later,
            _,
        ):
            assert len(loc.list(".pipeline/done")) == rows - 1  # the other's, all but one
            Path(f"{gate}.release").touch()
            _, err = proc.communicate(timeout=300)
            assert proc.returncode == 1, err
            assert "was removed, or taken by another run" in one_line_error(err), err
            kill_group(later)  # the other run killed before its last marker
            later.wait(30)
    assert len(loc.list(".pipeline/done")) == rows - 1  # one of them the first run's
    summary = tmp_path / "s.json"
    assert error_of("run", second, "--resume", "--summary-json", str(summary)) is None
    said = json.loads(summary.read_text())
    assert (said["blocks_skipped"], said["blocks_done"]) == (rows - 2, 2), said
    y = _zarr_s3(f"{url}/out.zarr", options)
    assert np.array_equal(y[...].view(np.uint32), (x * np.float32(3)).view(np.uint32))
    assert record_of(y.attrs)["status"] == "complete"


def test_a_run_s_end_on_s3_lists_its_markers_and_a_resume_skips_exactly_the_written_ones(
    tmp_path,
) -> None:
    """h84c: a run killed at its third block (two blocks written, real processes), then
    resumed: the resume skips exactly the two blocks written (its summary: 2 skipped, 10
    done), ends complete, NumPy's bit for bit, and reads no marker at its end (the server's
    request log: each of the two markers read once, with a GET, as the resume checks the
    blocks it skips; none of the 10 it wrote itself, none again at the end, which lists
    them): every marker had been read with a GET of its own at a run's end, the skipped
    ones again for their counts. (h83f's rule, that a marker counts only in its own record,
    holds still: the test of a marker written after another run took the lock.)"""
    import s3fs

    log = tmp_path / "requests.log"
    with _moto_server(log=log) as endpoint:
        options = {"endpoint_url": endpoint, "key": "testing", "secret": "testing", "anon": False}
        name = f"test-{uuid.uuid4().hex[:12]}"
        s3fs.S3FileSystem(skip_instance_cache=True, **options).mkdir(name)
        url = f"s3://{name}"
        x, first, _ = _two_runs_of_one_s3_output(tmp_path, url, options)
        loc = Location.of(f"{url}/out.zarr", options)
        with _held_at_third(tmp_path, _HELD_AT_THIRD_BLOCK, "run", str(first)) as (proc, _):
            kill_group(proc)  # two blocks written, its third held
            proc.wait(30)
        written = loc.list(".pipeline/done")
        assert len(written) == 2, written
        summary = tmp_path / "s.json"
        assert error_of("run", first, "--resume", "--summary-json", str(summary)) is None
        said = json.loads(summary.read_text())
        assert (said["blocks_skipped"], said["blocks_done"]) == (2, 10), said
        y = _zarr_s3(f"{url}/out.zarr", options)
        assert np.array_equal(y[...].view(np.uint32), (x * np.float32(2)).view(np.uint32))
        assert record_of(y.attrs)["status"] == "complete"
    requests = log.read_text().splitlines()
    done = f"/{name}/out.zarr/.pipeline/done/"
    read = sorted(
        line.split('"')[1].split()[1].rsplit("/", 1)[-1]
        for line in requests
        if re.search(rf'"(GET|HEAD) {re.escape(done)}', line)
    )
    assert read == sorted(written), read  # once each, as the resume began
    listed = [line for line in requests if "prefix=out.zarr/.pipeline/done/" in line]
    assert listed, "the markers were never listed"


@contextlib.contextmanager
def _displaced_s3_run(
    tmp_path: Path, bucket: tuple[str, dict], script: str
) -> Iterator[tuple[str, subprocess.Popen[str], Location]]:
    """The two runs of :func:`_two_runs_of_one_s3_output` (real processes, no timing): the
    first (``a.yaml``, x2) run by ``script`` and held where it says (:func:`_held_at_third`),
    its S3 lock object removed and taken by the second (``b.yaml``, x3, ``--overwrite``),
    which writes every block and is held before it marks the output complete; the first then
    let go, and stopped (exit 1, one line: its lock removed). While the block runs: that
    line, the second (still held), the output's location. After it, the second goes on and
    ends complete, NumPy's x3 bit for bit."""
    url, options = bucket
    x, first, second = _two_runs_of_one_s3_output(tmp_path, url, options)
    lock = f"{url}/out.zarr/.pipeline/lock"
    loc = Location.of(f"{url}/out.zarr", options)
    with _held_at_third(tmp_path, script, "run", str(first)) as (proc, gate):
        loc.delete(".pipeline/lock")  # as a busy run's line says, if its run is gone
        at = "pipeline.running.output:mark_complete"
        with paused_at_lock("run", second, "--overwrite", cwd=tmp_path, at=at) as later:
            Path(f"{gate}.release").touch()  # every block of the other's written
            _, err = proc.communicate(timeout=300)
            assert proc.returncode == 1, err
            line = one_line_error(err)
            assert line.startswith(f"error: the lock {lock} of {url}/out.zarr was removed"), line
            yield line, later, loc
            out, err = go_on(later)
            assert later.returncode == 0, out + err
    y = _zarr_s3(f"{url}/out.zarr", options)
    assert np.array_equal(y[...].view(np.uint32), (x * np.float32(3)).view(np.uint32))
    assert record_of(y.attrs)["status"] == "complete"


def test_a_unit_written_after_another_run_took_the_s3_lock_is_not_in_that_run_s_output(
    tmp_path, bucket
) -> None:
    """h83f: a run (``a.yaml``, x2) held at a unit's write after its check of the lock, its
    S3 lock object removed and taken by a run of another config with ``--overwrite``
    (``b.yaml``, x3), which writes every block and is held before it marks the output
    complete (real processes, no timing): the first, let go, is refused its write over that
    run's unit and stops in one line naming its block; the other ends complete, NumPy's x3
    bit for bit. The unit had been written over the other's, in its output marked complete."""
    script = _HELD_AT_THIRD_BLOCK.replace("tasks.write_block =", "tasks.write_unit =").replace(
        "held(tasks.write_block)", "held(tasks.write_unit)"
    )
    with _displaced_s3_run(tmp_path, bucket, script) as (line, _, _):
        assert re.search(r"; its block \(\d+, 0\), and any other it was writing then", line)


#: :func:`held_at_complete_mark` of an S3 output (the PUT of ``out.zarr/zarr.json``): a run
#: paused at its end, past its lock's lease.
_HELD_AT_COMPLETE_MARK = held_at_complete_mark("""
import asyncio
import s3fs
from fsspec.asyn import sync_wrapper

plain_call = s3fs.S3FileSystem._call_s3


async def call(self, method, *args, **kwargs):
    key = str(kwargs.get("Key", ""))
    if hold(method == "put_object" and key.endswith("out.zarr/zarr.json")):
        while not released():
            await asyncio.sleep(0.02)
    return await plain_call(self, method, *args, **kwargs)


s3fs.S3FileSystem._call_s3 = call
s3fs.S3FileSystem.call_s3 = sync_wrapper(call)  # (bound to the plain one when it was made)
""")


def test_a_displaced_run_s_complete_mark_never_lands_in_the_new_holder_s_s3_output(
    tmp_path, bucket
) -> None:
    """h84c: a run (``a.yaml``, x2) held at its end just before it writes its "complete"
    mark, after its last check of the lock (a run paused past its lease), its S3 lock object
    removed and taken by a run of another config with ``--overwrite`` (``b.yaml``, x3), which
    writes every block and is held before its own mark (real processes, no timing): the
    first, let go, stops in one line saying its lock was taken, and the other's output still
    says "incomplete" with its own record (its attributes, the mark's document, were
    rewritten since the first read them: the mark is written only while they are the version
    read, S3's If-Match); the other then ends complete, NumPy's x3 bit for bit. The first
    run's whole document, marked complete, had been written over the other's output, which
    then read as complete with the first run's record while that run still wrote it."""
    with _displaced_s3_run(tmp_path, bucket, _HELD_AT_COMPLETE_MARK) as (line, later, loc):
        assert f"(it is now another run's (pid {later.pid} on " in line, line
        record = record_of(json.loads(loc.read("zarr.json") or b"{}")["attributes"])
        assert record["status"] == "incomplete", record  # the first run's mark: not there
        assert [s.split(" ")[0] for s in record["stages"]] == ["multiply(factor=3)"], record
    assert not loc.exists(".pipeline")


def test_a_generation_whose_s3_lock_object_is_removed_stops_and_leaves_the_new_one_s(
    tmp_path, bucket
) -> None:
    """A generation of an S3 input whose lock object (``generate.lock``) is removed while it
    writes, and another generation that takes it (real processes, held before it writes):
    the first stops before its next unit, in one line naming the lock and the other's
    process, and leaves the other's lock object as it is; the other then makes the input
    whole. ``InputLock.check_held`` had returned at once on an object store: the first
    wrote on, marked the input generated and deleted its record, the other's lock in it,
    exiting 0 (h77d)."""
    url, options = bucket
    store = f"{url}/gen.zarr"
    cfg = write_config(
        tmp_path, "", "",
        input={
            "store": store, "array": "x", "storage_options": options,
            "generate": {"shape": [12, 64], "chunks": [1, 64], "shards": [1, 64]},
        },
        output={"store": f"{url}/res.zarr", "storage_options": options},
        cluster={"workers": 1, "threads_per_worker": 1, "protocol": "inproc", "dashboard": ""},
    )  # fmt: skip
    loc = Location.of(store, options)
    key = "x/.pipeline/generate.lock"
    with _held_at_third(tmp_path, _HELD_AT_THIRD_UNIT, "generate", str(cfg)) as (proc, gate):
        loc.delete(key)  # as a user would (the busy line names it to remove)
        with paused_at_lock("generate", cfg, cwd=tmp_path) as later:
            Path(f"{gate}.release").touch()
            _, err = proc.communicate(timeout=300)
            assert proc.returncode == 1, err
            line = one_line_error(err)
            lock = f"{store}/x/.pipeline/generate.lock"
            assert line.startswith(
                f"error: the lock {lock} of {store}/x was removed, or taken by another run, "
                f"while this generation wrote it (it is now another run's (pid {later.pid} on "
            ), line
            assert line.endswith(
                "this generation stopped, so as not to write into another's; generate it again "
                "once no other generation writes it"
            ), line
            raw = loc.read(key)
            assert raw is not None and json.loads(raw)["pid"] == later.pid
            out, err = go_on(later)
            assert later.returncode == 0, out + err
        assert not loc.exists("x/.pipeline")
        values = _zarr_s3(f"{store}/x", options)[...]
        assert values.shape == (12, 64) and np.isfinite(values).all()


def test_a_generation_s_unit_written_after_another_took_its_s3_lock_is_not_in_that_one_s(
    tmp_path, bucket
) -> None:
    """h83f: a generation of an S3 input (seed 1) held at its third unit's write, after its
    check of the lock (which stands for a second: ``ledger.UNIT_CHECK_WITHIN``), its lock
    object removed and taken by a generation of seed 2, which writes every unit and is held
    before it marks the input generated (real processes, no timing): the first, let go,
    is refused its write over that one's unit and stops in one line naming the lock; the
    other ends with its own values alone, those of seed 2 as a generation of its own
    elsewhere makes them. The unit had been written over the other's, which then marked
    the input generated with one unit of seed 1, both unsaid."""
    url, options = bucket

    def config(name: str, seed: int, array: str = "x") -> Path:
        return write_config(
            tmp_path, "", "", name,
            input={
                "store": f"{url}/gen.zarr", "array": array, "storage_options": options,
                "generate": {
                    "shape": [12, 64], "chunks": [1, 64], "shards": [1, 64], "seed": seed,
                },
            },
            output={"store": f"{url}/res.zarr", "storage_options": options},
            cluster={"workers": 1, "threads_per_worker": 1, "protocol": "inproc", "dashboard": ""},
        )  # fmt: skip

    first, second = config("a.yaml", 1), config("b.yaml", 2)
    loc = Location.of(f"{url}/gen.zarr", options)
    key = "x/.pipeline/generate.lock"
    with _held_at_third(tmp_path, _HELD_AT_THIRD_UNIT, "generate", str(first)) as (proc, gate):
        loc.delete(key)  # as a user would (the busy line names it to remove)
        at = "pipeline.running.generate:mark_generated"
        with paused_at_lock("generate", second, cwd=tmp_path, at=at) as later:
            Path(f"{gate}.release").touch()  # every unit of the other's written
            _, err = proc.communicate(timeout=300)
            assert proc.returncode == 1, err
            line = one_line_error(err)
            assert line.startswith(f"error: the lock {url}/gen.zarr/{key} of "), line
            assert f"it is now another run's (pid {later.pid} on " in line, line
            out, err = go_on(later)
            assert later.returncode == 0, out + err
    assert error_of("generate", config("c.yaml", 2, "y")) is None  # seed 2, elsewhere
    got = _zarr_s3(f"{url}/gen.zarr/x", options)[...]
    want = _zarr_s3(f"{url}/gen.zarr/y", options)[...]
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32))


def test_an_s3_lock_removed_and_taken_in_the_same_process_is_left_to_its_new_holder(
    bucket,
) -> None:
    """An S3 output lock object removed while its run holds it, and taken by another run of
    the same process (another thread's ``pipeline.run``, a notebook's): the first run's
    block write is refused naming it, and its release, and its record's removal, leave that
    run's lock and record as they are; the other run's own check passes. The holder had been
    told by its pid and host alone: the first run's end deleted the other's lock, which a
    third run then took beside it (h77d)."""
    from pipeline.store.ledger import Ledger

    url, options = bucket
    loc = Location.of(f"{url}/same.zarr", options)
    first, second = Ledger(loc, ""), Ledger(loc, "")
    first.acquire()
    first.check_held()
    loc.delete(".pipeline/lock")  # removed by hand, its run thought gone
    second.acquire()
    second.write_manifest({"the": "second's"})
    with pytest.raises(OutputError) as info:
        first.check_held()
    assert info.value.status == "displaced" and "this process, another thread's" in str(
        info.value
    ), info.value
    first.release()
    first.clear_after(info.value)
    second.check_held()
    raw = loc.read(".pipeline/lock")
    assert raw is not None and json.loads(raw)["token"] == second.token
    assert second.read_manifest() == {"the": "second's"}
    second.clear()
    assert not loc.exists(".pipeline")


def test_a_run_whose_s3_lock_object_is_removed_before_it_creates_the_output_leaves_it(
    tmp_path, bucket
) -> None:
    """A run held between taking its S3 lock and creating its output (a slow cluster start,
    a process stopped there), whose lock object is removed, and a run of another config with
    ``--overwrite`` that completes the output meanwhile: the first, going on, stops in one
    line before it creates anything, and the output stays the second's, NumPy's bit for bit.
    Its create had replaced the other's complete output, and it exited 0 (h77d)."""
    url, options = bucket
    x = np.random.default_rng(3).standard_normal((6, 32)).astype(np.float32)
    zarr.create_array(
        store=_s3_store(f"{url}/in.zarr", options), shape=x.shape, dtype=x.dtype, chunks=(2, 32)
    )[...] = x

    def config(name: str, factor: int) -> Path:
        return write_config(
            tmp_path, "", "", name,
            input={"store": f"{url}/in.zarr", "storage_options": options},
            output={"store": f"{url}/out.zarr", "storage_options": options},
            stages=[{"op": "multiply", "factor": factor}],
            cluster={"workers": 1, "threads_per_worker": 1, "protocol": "inproc", "dashboard": ""},
        )  # fmt: skip

    first, second = config("a.yaml", 2), config("b.yaml", 3)
    loc = Location.of(f"{url}/out.zarr", options)
    with paused_at_lock("run", first, cwd=tmp_path) as held:
        loc.delete(".pipeline/lock")  # as a user would, its run thought gone
        assert error_of("run", second, "--overwrite", "--progress", "none") is None
        _, err = go_on(held)
        assert held.returncode == 1, err
        line = one_line_error(err)
        assert line.startswith(
            f"error: the lock {url}/out.zarr/.pipeline/lock of {url}/out.zarr was removed, or "
            "taken by another run, while this run wrote it (it is now gone): this run stopped"
        ), line
    y = _zarr_s3(f"{url}/out.zarr", options)
    assert np.array_equal(y[...].view(np.uint32), (x * np.float32(3)).view(np.uint32))
    assert record_of(y.attrs)["status"] == "complete"
    assert not loc.exists(".pipeline")


def test_an_s3_output_replaced_keeps_no_old_object_and_no_record(tmp_path, cli, bucket) -> None:
    """`run --overwrite` of an S3 output of another chunk grid (more objects than the new
    one): nothing is set aside on an object store (no folder to move them in, h83d), the old
    objects are deleted as before, so none is left, nor the run record, and the output is
    NumPy's bit for bit."""
    import s3fs

    url, options = bucket
    fs = s3fs.S3FileSystem(skip_instance_cache=True, **options)
    x = np.random.default_rng(5).standard_normal((16, 9)).astype(np.float32)
    make_array(tmp_path / "in.zarr", x, (4, 9))
    out = f"{url}/replaced.zarr"

    def cfg_of(chunks: list[int], name: str) -> Path:
        output = {"store": out, "storage_options": options, "chunks": chunks, "shards": "none"}
        return write_config(tmp_path, tmp_path / "in.zarr", "", name=name, output=output)

    rc, _, err = cli("run", cfg_of([2, 3], "old.yaml"), "--progress", "none")
    assert rc == 0, err
    old = {k[len(out) - 5 + 1 :] for k in fs.find(out[5:])}
    cfg = cfg_of([4, 9], "new.yaml")
    rc, _, err = cli("run", cfg, "--overwrite", "--progress", "none")
    assert rc == 0, err
    fs.invalidate_cache()
    now = {k[len(out) - 5 + 1 :] for k in fs.find(out[5:])}
    assert now == {"zarr.json"} | {f"c/{i}/0" for i in range(4)}, sorted(now)
    assert old - now and not any(k.startswith(".pipeline") for k in now)
    assert _zarr_s3(out, options)[...].tobytes() == reference(x).tobytes()
    rc, _, err = cli("verify", cfg)
    assert rc == 0, err


#: A user's objects under an S3 output's run record (``.pipeline/``), none the pipeline's:
#: one beside its lock, one under ``aside/`` (a local store's folder of what a replacement
#: set aside, which nothing makes on an object store) and one under ``done/`` that names no
#: block.
_USER_RECORD_OBJECTS = (
    ".pipeline/notes.txt",
    ".pipeline/aside/x",
    ".pipeline/done/mine.txt",
    ".pipeline/done/3",  # one index of a 2-D output's block (h86e)
    ".pipeline/done/99.0",  # past its grid of blocks
)


def _s3_record_job(tmp_path: Path, bucket: Any, seed: int) -> tuple[Any, Any, str, str, Any, Path]:
    """A float32 (12, 9) input in ``tmp_path`` (chunks (4, 9), NumPy's seed ``seed``) and a
    config writing it to ``out.zarr`` of the test's S3 bucket: (an s3fs file system, the
    input's values, the bucket's URL, the output's URL, the storage options, the config)."""
    import s3fs

    url, options = bucket
    fs = s3fs.S3FileSystem(skip_instance_cache=True, **options)
    x = np.random.default_rng(seed).standard_normal((12, 9)).astype(np.float32)
    make_array(tmp_path / "in.zarr", x, (4, 9))
    out = f"{url}/out.zarr"
    output = {"store": out, "storage_options": options}
    return fs, x, url, out, options, write_config(tmp_path, tmp_path / "in.zarr", "", output=output)


@pytest.mark.parametrize("flag", ["", "--overwrite"])
def test_a_user_s_object_in_an_s3_run_record_is_refused_before_anything_is_written(
    tmp_path, cli, bucket, flag: str
) -> None:
    """A user's objects anywhere under an S3 output's ``.pipeline/`` (:data:`_USER_RECORD_
    OBJECTS`), none the pipeline's: every start (a plain run, ``--overwrite``) is refused in
    one line naming each of them and the fix (move them elsewhere), before anything is
    written; every run's end had deleted the whole prefix, with no word (h85b). Once they
    are moved, the run writes the output, NumPy's bit for bit."""
    fs, x, url, out, options, cfg = _s3_record_job(tmp_path, bucket, 8)
    for key in _USER_RECORD_OBJECTS:
        fs.pipe_file(f"{out[5:]}/{key}", b"mine")
    before = {k: fs.cat_file(k) for k in fs.find(out[5:])}
    rc, _, err = cli("run", cfg, "--progress", "none", *([flag] if flag else []))
    assert rc == 1, err
    line = one_line_error(err)
    named = sorted(key.removeprefix(".pipeline/") for key in _USER_RECORD_OBJECTS)
    assert f"holds {', '.join(named[:3])} and {len(named) - 3} more, which" in line, line
    assert f"{out}/.pipeline" in line and "move them elsewhere" in line, line
    fs.invalidate_cache()
    assert {k: fs.cat_file(k) for k in fs.find(out[5:])} == before
    for key in _USER_RECORD_OBJECTS:
        fs.mv(f"{out[5:]}/{key}", f"{url[5:]}/kept/{key}")
    rc, _, err = cli("run", cfg, "--progress", "none", *([flag] if flag else []))
    assert rc == 0, err
    assert _zarr_s3(out, options)[...].tobytes() == reference(x).tobytes()
    fs.invalidate_cache()
    assert not any(".pipeline" in k for k in fs.find(out[5:]))


def test_an_s3_run_s_end_deletes_its_own_record_keys_alone(tmp_path, cli, bucket) -> None:
    """A user's objects put under an S3 output's ``.pipeline/`` while its run writes it
    (after its start's check): the run's end deletes its own keys alone (its lock, run.json,
    its markers) and leaves the user's, bytes and all; it had deleted the whole prefix
    (h85b). The output is complete, NumPy's bit for bit, and a next run finds the user's
    objects and names them."""
    fs, x, _, out, options, cfg = _s3_record_job(tmp_path, bucket, 9)
    with paused_at_lock("run", cfg, cwd=tmp_path) as held:
        for key in _USER_RECORD_OBJECTS:
            fs.pipe_file(f"{out[5:]}/{key}", key.encode())
        _, err = go_on(held)
        assert held.returncode == 0, err
    fs.invalidate_cache()
    left = sorted(k[len(out) - 4 :] for k in fs.find(out[5:]) if "/.pipeline/" in k)
    assert left == sorted(_USER_RECORD_OBJECTS), left
    for key in _USER_RECORD_OBJECTS:
        assert fs.cat_file(f"{out[5:]}/{key}") == key.encode()
    y = _zarr_s3(out, options)
    assert y[...].tobytes() == reference(x).tobytes()
    assert record_of(y.attrs)["status"] == "complete"
    rc, _, err = cli("run", cfg, "--progress", "none", "--overwrite")
    # each named, three by name then how many more (h86c), sorted: notes.txt is of the more
    assert rc == 1 and "holds aside/x, done/3, done/99.0 and 2 more" in one_line_error(err), err


def test_an_s3_overwrite_with_other_blocks_takes_the_earlier_layouts_markers_for_its_own(
    tmp_path, cli, bucket
) -> None:
    """An S3 output whose run was killed (SIGKILL) once every block was written, just before
    it marked the output complete: blocks of 2 rows, a grid of 6 x 1, which its run record
    says, and their markers ``done/0.0`` to ``done/5.0``. With the config now planning one
    block of 12 rows (a grid of 1 x 1), `run --overwrite` takes that earlier layout's
    markers for the pipeline's (h87b): they had been refused as objects "the pipeline did
    not write", and the start's and the end's deletes, told by the new grid alone, had kept
    them, refused at the next start. A user's object named as a marker past both grids
    (``done/6.0``) is still a user's: refused before anything is written. Moved out, the
    overwrite writes the output, NumPy's bit for bit, and no key of the record stays."""
    fs, x, url, out, options, _ = _s3_record_job(tmp_path, bucket, 10)
    make_array(tmp_path / "in.zarr", x, (2, 9))  # a chunk per block of 2 rows
    output = {"store": out, "storage_options": options}
    one = {"workers": 1, "threads_per_worker": 1, "dashboard": ""}
    small, whole = (
        write_config(
            tmp_path,
            tmp_path / "in.zarr",
            "",
            name=name,
            output=output,
            chunking={"block": [rows, 9]},
            cluster=one,
        )
        for name, rows in (("small.yaml", 2), ("whole.yaml", 12))
    )
    with _held_at_third(tmp_path, _HELD_AT_COMPLETE_MARK, "run", str(small)) as (proc, _):
        kill_group(proc)  # the run and whatever it started
        proc.wait(30)
    record = f"{out[5:]}/.pipeline"
    fs.invalidate_cache()
    assert json.loads(fs.cat_file(f"{record}/run.json"))["block_grid"] == [6, 1]
    markers = sorted(k.rpartition("/")[2] for k in fs.find(f"{record}/done"))
    assert markers == [f"{i}.0" for i in range(6)], markers  # 1.0 and on: past 1 x 1
    fs.pipe_file(f"{record}/done/6.0", b"mine")
    before = {k: fs.cat_file(k) for k in fs.find(out[5:])}
    rc, _, err = cli("run", whole, "--overwrite", "--progress", "none")
    line = one_line_error(err)
    assert rc == 1 and f"{out}/.pipeline holds done/6.0, which the pipeline" in line, line
    fs.invalidate_cache()
    assert {k: fs.cat_file(k) for k in fs.find(out[5:])} == before
    fs.mv(f"{record}/done/6.0", f"{url[5:]}/kept/6.0")
    rc, _, err = cli("run", whole, "--overwrite", "--progress", "none")
    assert rc == 0, err
    assert _zarr_s3(out, options)[...].tobytes() == reference(x).tobytes()
    fs.invalidate_cache()
    assert not any(".pipeline" in k for k in fs.find(out[5:]))
    assert fs.cat_file(f"{url[5:]}/kept/6.0") == b"mine"


def test_verify_of_an_output_in_a_group_whose_folder_between_fails_names_the_server(
    tmp_path, cli, bucket
) -> None:
    """An output store inside a Zarr group (``g.zarr/a/out.zarr``) whose group between
    (``a``) answers HTTP 500 when verify looks for its metadata: the look
    (``arrays.groups_between_missing``) had been unguarded; verify ends in the line that names
    the server's failure and its fix, as its other reads of the store do, never a traceback."""
    url, options = bucket
    x = np.arange(600, dtype=np.float32).reshape(30, 20)
    zarr.create_array(
        store=zarr_store(f"{url}/in.zarr", options, read_only=False),
        shape=x.shape, dtype=x.dtype, chunks=(10, 20),
    )[...] = x  # fmt: skip
    zarr.open_group(zarr_store(f"{url}/g.zarr", options, read_only=False), mode="w")
    cfg = write_config(
        tmp_path, "", "",
        input={"store": f"{url}/in.zarr", "storage_options": options},
        output={"store": f"{url}/g.zarr/a/out.zarr", "storage_options": options},
    )  # fmt: skip
    rc, out, err = cli("run", cfg)
    assert rc == 0, out + err
    rc, out, err = cli("verify", cfg)
    assert rc == 0, out + err
    with _failing_s3(options["endpoint_url"], ("g.zarr/a/zarr.json",)) as proxy:
        through = {
            **options,
            "endpoint_url": proxy,
            "config_kwargs": {"retries": {"total_max_attempts": 1}},
        }
        cfg = write_config(
            tmp_path, "", "",
            input={"store": f"{url}/in.zarr", "storage_options": options},
            output={"store": f"{url}/g.zarr/a/out.zarr", "storage_options": through},
        )  # fmt: skip
        rc, out, err = cli("verify", cfg)
    assert rc == 1, out + err
    line = one_line_error(err)  # it had said "a store answered ...", naming no store
    assert line.startswith(f"error: cannot read output store {url}/g.zarr/a: "), line
    assert re.search(r"\(S3 (Head|Get)Object answered HTTP 500( InternalError)?\)", line), line
    assert "make the store reachable (the server answering again)" in line, line
