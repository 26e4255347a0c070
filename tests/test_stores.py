"""Stores as people name and package them: local paths whose names hold glob characters, and
read-only zip stores (written by zarr-python's ZipStore, or a store directory zipped with
Python's zipfile), end to end; and the plan-time guard that the raw reader sees the chunks
Zarr sees.

S3 with the same names is in ``test_s3.py`` (it needs the local S3 server).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import uuid
import zipfile
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pytest
import zarr

from pipeline import plan as pipeline_plan
from pipeline import run as pipeline_run
from pipeline.config import load_config
from pipeline.errors import ConfigError, InputError, OutputError, StoreError
from pipeline.running.runner import plan_run
from pipeline.store.arrays import ArrayInfo, check_reader_sees_chunks, describe_array
from pipeline.store.location import Location, files_on_inodes
from tests.conftest import make_array, read_array, record_of, reference, write_config
from tests.faultkit import error_of, refused, status, undeletable, undeletable_within
from tests.storekit import ODD_NAMES, check_literal_keys, round_trip, tar_of_uncompressed

# --------------------------------------------------------------------------------------------
# Names with glob characters.


@pytest.mark.parametrize(("name", "sibling"), ODD_NAMES, ids=lambda s: repr(s))
def test_odd_local_names_end_to_end(tmp_path, cli, name, sibling) -> None:
    round_trip(
        cli,
        tmp_path,
        str(tmp_path / f"in {name}"),
        str(tmp_path / name),
        siblings=(str(tmp_path / sibling),),
    )


def test_a_file_url_on_localhost_is_the_local_path(tmp_path, cli, monkeypatch) -> None:
    """``file://localhost/PATH`` is ``/PATH`` (RFC 8089); it was read as a folder
    ``localhost`` under the working directory, where the output went (helper-41)."""
    monkeypatch.chdir(tmp_path)
    x = _input_array()
    make_array(tmp_path / "in.zarr", x, (4, 5))
    cfg = write_config(
        tmp_path, f"file://localhost{tmp_path}/in.zarr", f"local://localhost{tmp_path}/out.zarr"
    )
    rc, _, err = cli("run", cfg)
    assert rc == 0, err
    assert np.array_equal(read_array(tmp_path / "out.zarr"), reference(x))
    assert not (tmp_path / "localhost").exists()
    assert (
        Location.of(f"zip::file://localhost{tmp_path}/a.zip").url == f"zip::file://{tmp_path}/a.zip"
    )


def _stores(tmp_path: Path, which: str, url: str) -> dict[str, str]:
    """The run's stores by section, ``input`` and ``output`` (local ``in.zarr`` and
    ``out.zarr`` in ``tmp_path``), ``url`` in place of the ``which`` one."""
    stores = {"input": str(tmp_path / "in.zarr"), "output": str(tmp_path / "out.zarr")}
    stores[which] = url
    return stores


def _run_refused_in_a_line(cli, tmp_path: Path, which: str, url: str, said: str) -> None:
    """The command line's ``run`` with ``url`` as the ``which`` store (:func:`_stores`)
    refused in one line that names the key, holds ``said`` and shows how to write a file URL
    (``file:///path``)."""
    stores = _stores(tmp_path, which, url)
    rc, out, err = cli("run", write_config(tmp_path, stores["input"], stores["output"]))
    assert rc != 0, out
    line = err.strip()
    assert "\n" not in line and f"{which}.store" in line and said in line, err
    assert "file:///path" in line, err


@pytest.mark.parametrize(
    ("which", "url"),
    [
        ("input", "file://otherhost{d}/in.zarr"),
        ("output", "local://otherhost{d}/out.zarr"),
        ("input", "zip::file://otherhost{d}/in.zip"),
        ("output", "tar::file://otherhost{d}/out.tar"),
    ],
)
def test_a_file_url_naming_another_host_is_refused(tmp_path, cli, monkeypatch, which, url):
    """``file://HOST/PATH`` with a host other than localhost was read as the relative path
    ``HOST/PATH`` under the working folder: another machine's data silently this one's other
    files. It is refused in one line, naming the key and how to write a file URL."""
    monkeypatch.chdir(tmp_path)
    x = _input_array()
    make_array(tmp_path / "in.zarr", x, (4, 5))
    relative = tmp_path / "otherhost" / str(tmp_path).lstrip("/")
    make_array(relative / "in.zarr", x + 1, (4, 5))  # what the URL was read as
    url = url.format(d=tmp_path)
    _run_refused_in_a_line(cli, tmp_path, which, url, "'otherhost'")
    assert not (relative / "out.zarr").exists() and not (tmp_path / "out.zarr").exists()
    with pytest.raises(StoreError, match="must name no host or localhost"):
        Location.of(url)


@pytest.mark.parametrize(
    ("which", "url"),
    [
        ("input", "file:{d}/in.zarr"),
        ("output", "file:{d}/out.zarr"),
        ("output", "local:{d}/out.zarr"),
        ("input", "zip::file:{d}/in.zip"),
    ],
)
def test_a_file_url_without_its_slashes_is_refused(tmp_path, cli, monkeypatch, which, url):
    """``file:/PATH`` (RFC 8089's short form) is no URL to fsspec: the output went to the
    folder ``./file:/PATH`` under the working folder, and the run said it was done
    (helper-50). Refused in one line naming the key and how to write a file URL."""
    monkeypatch.chdir(tmp_path)
    x = _input_array()
    make_array(tmp_path / "in.zarr", x, (4, 5))
    url = url.format(d=tmp_path)
    _run_refused_in_a_line(cli, tmp_path, which, url, "without '//'")
    assert not (tmp_path / "file:").exists() and not (tmp_path / "local:").exists()
    with pytest.raises(StoreError, match="without '//'"):
        Location.of(url)


def _refused_everywhere(tmp_path, cli, which: str, url: str, *said: str) -> dict:
    """``url`` as the ``which`` store (the other a local one over ``in.zarr``, which the
    caller wrote): refused by ``pipeline.run`` and by the command line's ``run``, each in one
    line naming the key and holding each of ``said`` (the URL meant, as ``repr``), nothing
    written. The config mapping."""
    stores = _stores(tmp_path, which, url)
    config = {
        "input": {"store": stores["input"]},
        "output": {"store": stores["output"]},
        "stages": [{"op": "square"}],
        "backend": "cpu",
        "cluster": {"dashboard": ""},
    }
    with pytest.raises(ConfigError) as e:
        pipeline_run(config)
    line = str(e.value)
    assert "\n" not in line and f"{which}.store" in line, line
    assert all(words in line for words in said), line
    rc, out, err = cli("run", write_config(tmp_path, stores["input"], stores["output"]))
    assert rc == 1, out
    assert err.count("\n") == 1 and f"{which}.store" in err, err
    assert all(words in err for words in said), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.zarr", "run.yaml"]
    return config


@pytest.mark.parametrize(
    ("which", "url", "meant"),
    [
        ("output", "s3:/bucket/out.zarr", "s3://bucket/out.zarr"),
        ("output", "s3:bucket/out.zarr", "s3://bucket/out.zarr"),
        ("output", "s3//bucket/out.zarr", "s3://bucket/out.zarr"),
        ("output", "GS:/bucket/out.zarr", "gs://bucket/out.zarr"),
        ("output", "memory:/out.zarr", "memory://out.zarr"),
        ("input", "s3:/bucket/in.zarr", "s3://bucket/in.zarr"),
        ("input", "zip::s3:/bucket/in.zip", "s3://bucket/in.zip"),
    ],
)
def test_a_url_without_its_slashes_is_refused(tmp_path, cli, monkeypatch, which, url, meant):
    """``s3:/bucket/out.zarr`` (a slash short) is no URL to fsspec, which takes a protocol
    only before ``://``: ``pipeline.run`` wrote the output into the local folder
    ``./s3:/bucket/out.zarr`` and returned a complete summary (helper-W); an input's was "does
    not exist" under the working folder. Refused, by the API, the command line and
    ``Location.of``, in one line naming the key, the URL meant, and the path for a local
    folder of that name, which still runs."""
    monkeypatch.chdir(tmp_path)
    x = _input_array()
    make_array(tmp_path / "in.zarr", x, (4, 5))
    config = _refused_everywhere(tmp_path, cli, which, url, repr(meant))
    with pytest.raises(StoreError, match="is no URL"):
        Location.of(url)
    if which == "output":  # the local folder of that name, said as a path, is written
        config["output"]["store"] = f"./{url}"
        assert pipeline_run(config).status == "complete"
        assert np.array_equal(read_array(tmp_path / url), x * x)


@pytest.mark.parametrize(
    ("which", "url", "meant"),
    [
        ("input", "S3://bucket/in.zarr", "s3://bucket/in.zarr"),
        ("output", "GS://bucket/out.zarr", "gs://bucket/out.zarr"),
        ("output", "Memory://out.zarr", "memory://out.zarr"),
        ("input", "zip::S3://bucket/in.zip", "s3://bucket/in.zip"),
    ],
)
def test_a_protocol_in_capitals_is_refused_naming_the_url_meant(tmp_path, cli, which, url, meant):
    """fsspec knows protocols in small letters only: ``S3://bucket/in.zarr`` failed when
    opened with fsspec's "Protocol not known: S3" (helper-W). Refused by the API, the command
    line and ``Location.of`` in one line naming the key and the URL meant; nothing written."""
    make_array(tmp_path / "in.zarr", _input_array(), (4, 5))
    _refused_everywhere(tmp_path, cli, which, url, repr(meant))
    with pytest.raises(StoreError, match="small letters"):
        Location.of(url)


@pytest.mark.parametrize("which", ["input", "output"])
def test_a_protocol_fsspec_does_not_know_is_refused_naming_the_key(tmp_path, cli, which) -> None:
    """``foo://bucket/x.zarr``: a protocol fsspec knows in no case had failed when opened, in
    "cannot open ... (ValueError: Protocol not known: foo); check the store's URL and its
    storage_options", naming neither the key nor what to write. Refused where the config is
    read, by the API and the command line, in one line naming the key; nothing written."""
    make_array(tmp_path / "in.zarr", _input_array(), (4, 5))
    words = f"{which}.store: 'foo' is no protocol fsspec knows: write a local path, or a URL"
    _refused_everywhere(tmp_path, cli, which, f"foo://bucket/{which}.zarr", words)


@pytest.mark.parametrize(
    ("which", "url", "missing", "meant"),
    [
        ("input", "s3://", "bucket", "s3://BUCKET/path"),
        ("output", "s3://", "bucket", "s3://BUCKET/path"),
        ("input", "s3:///in.zarr", "bucket", "s3://BUCKET/in.zarr"),
        ("output", "s3:///out.zarr", "bucket", "s3://BUCKET/out.zarr"),
        ("input", "gs://", "bucket", "gs://BUCKET/path"),
        ("output", "gcs:///out.zarr", "bucket", "gcs://BUCKET/out.zarr"),
        ("input", "abfs://", "container", "abfs://CONTAINER/path"),
        ("input", "https://", "host", "https://HOST/path"),
        ("input", "http:///in.zarr", "host", "http://HOST/in.zarr"),
        ("input", "http://:8080/in.zarr", "host", "http://HOST:8080/in.zarr"),
        ("output", "sftp:///out.zarr", "host", "sftp://HOST/out.zarr"),
        ("input", "zip::s3:///in.zip", "bucket", "s3://BUCKET/in.zip"),
        # a port is no bucket's (an endpoint goes in storage_options): it had been
        # "s3://BUCKET:9000/x", a bucket name botocore refuses
        ("input", "s3://:9000/in.zarr", "bucket", "s3://BUCKET/in.zarr"),
        # s3fs reads the first name as the bucket: said as what may be meant (h64d)
        (
            "input",
            "s3:///bkt/in.zarr",
            "bucket",
            "s3://BUCKET/bkt/in.zarr, the bucket's name in place of BUCKET (or "
            "s3://bkt/in.zarr, if 'bkt' is the bucket)",
        ),
        ("output", "sftp://me@:22/out.zarr", "host", "sftp://me@HOST:22/out.zarr"),
    ],
)
def test_a_store_url_that_names_no_bucket_or_host_is_refused(
    tmp_path, cli, which, url, missing, meant
) -> None:
    """``s3://`` alone (or ``s3:///in.zarr``, ``gs://``, ``https://``) names no bucket or
    host: it failed only when opened, with another cause ("s3://zarr.json holds metadata
    zarr-python cannot read (NoCredentialsError ...): mend the value ...", "input store
    https:// does not exist", "cannot open gs://: Please install gcsfs"). Refused where the
    config is read, by the API and the command line, in one line naming the key, what is
    missing and the URL to write; nothing written. ``Location.of`` refuses it too."""
    make_array(tmp_path / "in.zarr", _input_array(), (4, 5))
    said = f"names no {missing} (nothing between '://' and its path): write {meant}"
    _refused_everywhere(tmp_path, cli, which, url, said)
    with pytest.raises(StoreError, match=f"names no {missing}"):
        Location.of(url)


@pytest.mark.parametrize(
    ("which", "url", "meant"),
    [
        ("input", "http://[::1]:8080/in.zarr", "http://[0:0:0:0:0:0:0:1]:8080/in.zarr"),
        ("output", "https://[fd00::5]/o.zarr", "https://[fd00:0:0:0:0:0:0:5]/o.zarr"),
        (
            "input",
            "https://[fe80::1%25eth0]/in.zarr",
            "https://[fe80:0:0:0:0:0:0:1%25eth0]/in.zarr",
        ),
    ],
)
def test_an_ipv6_address_written_with_double_colons_is_refused(tmp_path, cli, which, url, meant):
    """fsspec splits a URL at every ``::`` into a chain of file systems, an IPv6 address's
    too: ``http://[::1]:8080/x`` had been read as ``http://[`` and a local path, refused as
    "input.storage_options make no file system for http://[::file:///...", blaming the
    options (h64d). Refused where the config is read, naming the address written in full,
    which fsspec reads (its zone kept); that one is not refused for it."""
    from pipeline.config.urls import ipv6_chain_problem

    make_array(tmp_path / "in.zarr", _input_array(), (4, 5))
    _refused_everywhere(tmp_path, cli, which, url, f"write the address in full, {meant}")
    assert ipv6_chain_problem(meant) is None


@pytest.mark.parametrize(
    ("url", "meant"),
    [
        ("s3://key:secret@/in.zarr", "give the URL without them, s3://BUCKET/in.zarr,"),
        ("simplecache::s3:///in.zarr", "give the URL without it, s3://BUCKET/in.zarr "),
    ],
)
def test_a_url_another_check_rewrites_is_suggested_naming_a_bucket(tmp_path, cli, url, meant):
    """A URL with credentials, or read through a caching layer, and naming no bucket: the
    line that takes those out had suggested ``s3:///in.zarr``, which the config then refused
    as naming no bucket (h64d); it suggests the URL with the bucket's place marked."""
    make_array(tmp_path / "in.zarr", _input_array(), (4, 5))
    _refused_everywhere(tmp_path, cli, "input", url, meant)


@pytest.mark.parametrize(
    "url", ["memory://out.zarr", "file:///tmp/x.zarr", "hdfs:///x.zarr", "s3://b", "http://[::1]/x"]
)
def test_a_url_whose_protocol_names_no_host_rightly_is_not_refused_for_it(url) -> None:
    """``memory://``, ``file:///`` and ``hdfs:///`` (the default name node) name no host by
    design, and a bucket alone or an IPv6 host is one: none is refused as naming none."""
    from pipeline.config.urls import url_without_host

    assert url_without_host(url) is None


@pytest.mark.parametrize("which", ["input", "output"])
@pytest.mark.parametrize("form", ["$H57G_DATA", "${H57G_DATA}"])
def test_an_environment_variable_in_a_store_path_is_refused_with_its_value(
    tmp_path, cli, monkeypatch, which, form
) -> None:
    """``$HOME/out.zarr``: nothing expands a variable in the config, so the path was taken
    as it is, relative: the input "did not exist" (in a folder named ``$HOME``), and the
    output was written into ``./$HOME/out.zarr``. Refused where the config is read, naming
    the key and the path meant; nothing written."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("H57G_DATA", str(tmp_path))
    make_array(tmp_path / "in.zarr", _input_array(), (4, 5))
    meant = repr(str(tmp_path / f"{which[:2]}.zarr"))
    words = f"{which}.store: {form} is an environment variable, which the config does not expand"
    _refused_everywhere(tmp_path, cli, which, f"{form}/{which[:2]}.zarr", words, meant)


@pytest.mark.parametrize("which", ["input", "output"])
@pytest.mark.parametrize("scheme", ["", "file://", "file://localhost"])
def test_a_folder_named_with_a_dollar_as_written_is_that_folder(
    tmp_path, cli, monkeypatch, which, scheme
) -> None:
    """A store in a folder whose name holds ``$NAME`` as written (``run$H58C_DATA``), the
    variable set: that folder exists, so it is the path meant, which no other writing names.
    It had been refused as an environment variable to expand, naming a path that did not
    exist."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("H58C_DATA", str(tmp_path / "elsewhere"))
    folder = tmp_path / "run$H58C_DATA"
    folder.mkdir()
    x = _input_array()
    stores = {"input": tmp_path / "in.zarr", "output": tmp_path / "out.zarr"}
    stores[which] = folder / f"{which[:2]}.zarr"
    make_array(stores["input"], x, (4, 5))
    urls = {k: f"{scheme}{v}" for k, v in stores.items()}
    rc, _, err = cli("run", write_config(tmp_path, urls["input"], urls["output"]))
    assert rc == 0, err
    np.testing.assert_array_equal(zarr.open_array(stores["output"], mode="r")[...], reference(x))
    assert not (tmp_path / "elsewhere").exists()


def test_a_file_url_host_localhost_in_any_case_is_this_machine(tmp_path) -> None:
    """RFC 8089's ``localhost`` is a host name, so case-insensitive."""
    assert Location.of(f"file://LocalHost{tmp_path}/x.zarr").url == f"{tmp_path}/x.zarr"


@pytest.mark.parametrize("kind", ["local", "memory"])
def test_keys_are_literal(tmp_path, kind) -> None:
    url = str(tmp_path / "s [0]") if kind == "local" else f"memory://{uuid.uuid4().hex}/s [0]"
    check_literal_keys(Location.of(url))


# --------------------------------------------------------------------------------------------
# Zip stores (read-only).


def _input_array() -> np.ndarray:
    """Nonzero everywhere but in rows 8-11, whose chunks Zarr leaves unwritten (fill value)."""
    x = np.random.default_rng(7).uniform(1, 2, (24, 10)).astype(np.float32)
    x[8:12] = 0
    return x


def _zipstore(path: Path, x: np.ndarray, zarr_format: int, **kw: Any) -> None:
    """``x`` written by zarr-python into a zip through its own ZipStore."""
    from zarr.storage import ZipStore

    store = ZipStore(path, mode="w")
    arr = zarr.create_array(
        store=store, shape=x.shape, dtype=x.dtype, zarr_format=zarr_format, **kw
    )
    arr[...] = x
    store.close()


def _zipped_dir(path: Path, x: np.ndarray, zarr_format: int, folder: str, **kw: Any) -> None:
    """``x`` written by zarr-python into a directory, which Python's zipfile then zips (under
    ``folder`` inside the zip, '' for its root), directory entries included."""
    src = path.with_suffix(".zarr")
    make_array(src, x, kw.pop("chunks"), zarr_format=zarr_format, **kw)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(src.rglob("*")):
            zf.write(p, str(Path(folder, p.relative_to(src))))


ZIPS = {
    # id: (how it is made, URL template, zarr_format, layout)
    "zipstore-v3": (_zipstore, "zip::file://{path}", 3, {"chunks": (4, 5)}),
    "zipstore-v3-sharded": (_zipstore, "{path}", 3, {"chunks": (2, 5), "shards": (4, 10)}),
    "zipstore-v2": (_zipstore, "zip::{path}", 2, {"chunks": (4, 5)}),
    "zipfile-v3": (_zipped_dir, "{path}", 3, {"chunks": (4, 5)}),
    "zipfile-v2-in-a-folder": (_zipped_dir, "zip://in.zarr::file://{path}", 2, {"chunks": (4, 5)}),
}


def _make_zip(tmp: Path, kind: str, x: np.ndarray) -> tuple[Path, str]:
    make, template, zarr_format, layout = ZIPS[kind]
    path = tmp / "input.zip"
    if make is _zipped_dir:
        _zipped_dir(path, x, zarr_format, "in.zarr" if "folder" in kind else "", **layout)
    else:
        make(path, x, zarr_format, **layout)
    return path, template.format(path=path)


@pytest.mark.parametrize("kind", list(ZIPS))
def test_zip_input_end_to_end(tmp_path, cli, kind) -> None:
    x = _input_array()
    path, url = _make_zip(tmp_path, kind, x)
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    src = zarr.open_array(store=Location.of(url).zarr_store(read_only=True), mode="r")
    assert np.array_equal(src[...], x)  # what zarr-python reads is the reference
    cfg = write_config(
        tmp_path,
        url,
        tmp_path / "out.zarr",
        cluster={"workers": 2, "threads_per_worker": 1, "dashboard": ""}
        | ({} if kind == "zipstore-v3" else {"protocol": "inproc"}),
    )
    rc, _, err = cli("run", cfg)
    assert rc == 0, err
    y = zarr.open_array(str(tmp_path / "out.zarr"), mode="r")
    assert np.array_equal(y[...], reference(x))
    assert record_of(y.attrs)["status"] == "complete"
    rc, out, err = cli("verify", cfg, "--all")
    assert rc == 0, err + out
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before  # the input is never modified


def test_tar_input_end_to_end(tmp_path, cli) -> None:
    """A store directory packed with Python's tarfile (uncompressed chunks, so a wrong byte is
    no decode error): a tar archive's members are read through one shared file position, so
    reads at once (Zarr's, which fetches a region's chunks together; a run's task threads)
    got each other's bytes, silently. Zarr's reads through the location and the run's output
    are the archived values, and the archive is never modified."""
    x = np.random.default_rng(5).standard_normal((400, 64)).astype(np.float32)
    url = tar_of_uncompressed(tmp_path, x, (2, 64))
    before = hashlib.sha256((tmp_path / "in.tar").read_bytes()).hexdigest()
    for _ in range(3):
        src = zarr.open_array(store=Location.of(url).zarr_store(read_only=True), mode="r")
        assert np.array_equal(src[...], x)
    cfg = write_config(
        tmp_path,
        url,
        tmp_path / "out.zarr",
        chunking={"block": [20, 64]},
        cluster={"workers": 1, "threads_per_worker": 4, "dashboard": "", "protocol": "inproc"},
    )
    rc, _, err = cli("run", cfg)
    assert rc == 0, err
    assert np.array_equal(zarr.open_array(str(tmp_path / "out.zarr"), mode="r")[...], reference(x))
    assert hashlib.sha256((tmp_path / "in.tar").read_bytes()).hexdigest() == before


def test_a_tar_of_dot_named_members_is_one_line_naming_the_fix(tmp_path) -> None:
    """GNU tar's ``tar -C DIR -cf FILE .`` names every member './...', which fsspec keeps and
    Zarr cannot address: the refusal says so and how to pack it instead, not only that no
    array is there."""
    import subprocess

    x = _input_array()
    make_array(tmp_path / "d", x, (5, x.shape[1]), zarr_format=2, compressor=None)
    subprocess.run(
        ["tar", "-C", str(tmp_path / "d"), "-cf", str(tmp_path / "x.tar"), "."], check=True
    )
    cfg = write_config(tmp_path, f"tar::file://{tmp_path}/x.tar", tmp_path / "out.zarr")
    error = refused("plan", cfg)
    assert isinstance(error, InputError)
    assert (error.status, error.reason) == ("absent", "members under './'")


def test_a_plain_tar_path_is_read_as_the_tar_store_it_holds(tmp_path, cli) -> None:
    """``input.store: in.tar`` (a path, as a zip's is taken): read as ``tar::file://`` (it
    said "no Zarr array at .../in.tar; check input.array", helper-40), to the bit, the
    archive untouched."""
    x = _input_array()
    tar_of_uncompressed(tmp_path, x, (5, x.shape[1]))
    path = tmp_path / "in.tar"
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    cfg = write_config(tmp_path, str(path), tmp_path / "out.zarr", cluster={"dashboard": ""})
    rc, _, err = cli("run", cfg)
    assert rc == 0, err
    assert np.array_equal(read_array(tmp_path / "out.zarr"), reference(x))
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


@pytest.mark.parametrize("kind", ["zipstore-v3", "zipfile-v2-in-a-folder"])
def test_a_zip_input_resumes_after_a_kill(tmp_path, kind) -> None:
    """A run of a zip input killed midway resumes (helper-54: every zip input's identity
    listed no files, the chained URL given to its file system, so the resume was refused as
    one whose input could not be checked), to the same bytes as a run never stopped."""
    import signal

    from tests.faultkit import markers, run_and_signal

    x = np.random.default_rng(3).standard_normal((64, 10)).astype(np.float32)
    make, template, zarr_format, _ = ZIPS[kind]
    path = tmp_path / "input.zip"
    layout = {"chunks": (1, 10)}
    if make is _zipped_dir:
        _zipped_dir(path, x, zarr_format, "in.zarr", **layout)
    else:
        make(path, x, zarr_format, **layout)
    cfg = write_config(
        tmp_path, template.format(path=path), tmp_path / "out.zarr", chunking={"block": [1, 10]}
    )
    stopped = run_and_signal(cfg, tmp_path / "out.zarr", signal.SIGKILL)
    assert stopped is not None and 0 < markers(tmp_path / "out.zarr") < 64, stopped
    assert plan_run(load_config(cfg)).input_unstamped is None
    done = pipeline_run(cfg, resume=True)
    assert done.status == "complete" and done.blocks_skipped > 0
    assert np.array_equal(read_array(tmp_path / "out.zarr"), reference(x))


def test_zip_reader_and_zarr_read_the_same_objects(tmp_path) -> None:
    """Each address ``join`` gives resolves (in fsspec) to the object the raw reader reads,
    and Zarr's store for the location reads it too."""
    x = _input_array()
    _, url = _make_zip(tmp_path, "zipfile-v2-in-a-folder", x)
    loc = Location.of(url)
    store = loc.zarr_store(read_only=True)
    from zarr.core.buffer import default_buffer_prototype
    from zarr.core.sync import sync

    for key in (".zarray", "0.0", "1.1", "5.1"):
        fs, path = fsspec.url_to_fs(loc.join(key))
        raw = loc.read(key)
        assert raw is not None and fs.cat_file(path) == raw
        assert sync(store.get(key, default_buffer_prototype())).to_bytes() == raw
    assert loc.read("2.1") is None and not loc.exists("2.1")  # all zeros: never written
    assert loc.list("") == sorted(
        [".zarray", ".zattrs", *(f"{i}.{j}" for i in (0, 1, 3, 4, 5) for j in (0, 1))]
    )


@pytest.mark.parametrize("zarr_format", [3, 2])
def test_an_input_chunk_key_that_is_a_folder_is_read_as_zarr_reads_it_and_warned_of(
    tmp_path, cli, caplog, zarr_format
) -> None:
    """A folder at an input chunk's key, a link to a folder at another's, and a file where a
    third's keys need a folder: zarr-python 3's LocalStore reads each as missing (its ``get``
    takes IsADirectoryError and NotADirectoryError for an absent key), so the fill value,
    and the run reads the same; but no Zarr writer leaves them (the chunks' data is lost or
    elsewhere), so the run warns in one line naming the first key and how many (h72c).
    Inputs as Zarr writes them, of every key layout, get no such warning.

    It is a note of the plan, said as every note is (h74b: it had been a bare line of `run`
    alone): a ``note`` row of ``plan`` and ``run --dry-run`` (an output there or not), a
    ``note:`` line of ``run``, of ``run -q`` (which had said nothing) and of ``verify``, and
    one of :func:`pipeline.plan`'s notes, logged by :func:`pipeline.run` as its notes are."""
    x = np.arange(24 * 20, dtype=np.float32).reshape(24, 20) + 1
    clean = {
        "v3": {"chunks": (4, 5)},
        "v3-sharded": {"chunks": (4, 5), "shards": (8, 10)},
        "v2-dot": {"chunks": (4, 5), "zarr_format": 2},
        "v2-slash": {
            "chunks": (4, 5),
            "zarr_format": 2,
            "chunk_key_encoding": {"name": "v2", "separator": "/"},
        },
    }
    for name, kw in clean.items():
        make_array(tmp_path / f"{name}.zarr", x, **kw)
        cfg = write_config(tmp_path, tmp_path / f"{name}.zarr", tmp_path / "o.zarr", f"{name}.yaml")
        notes = plan_run(load_config(cfg)).notes
        assert not [n for n in notes if "key(s) of its chunks" in n], (name, notes)
    make_array(tmp_path / "in.zarr", x, (4, 5), zarr_format=zarr_format)
    root = tmp_path / "in.zarr"
    folder, linked, under = ("c/1/1", "c/2/0", "c/3") if zarr_format == 3 else ("1.1", "2.0", "3.0")
    (root / folder).unlink()
    (root / folder).mkdir()
    (root / linked).unlink()
    (tmp_path / "elsewhere").mkdir()
    (root / linked).symlink_to(tmp_path / "elsewhere")
    if zarr_format == 3:  # a file where the folder of keys c/3/0, c/3/1 is
        for p in (root / under).iterdir():
            p.unlink()
        (root / under).rmdir()
        (root / under).write_bytes(b"not a folder")
    want = zarr.open_array(str(root), mode="r")[...]
    assert np.array_equal(want[4:8, 5:10], np.zeros((4, 5), np.float32))  # zarr reads fill
    cfg = write_config(tmp_path, root, tmp_path / "out.zarr")
    count = 6 if zarr_format == 3 else 2  # the file c/3 in the place of 4 keys, c/3/0 to c/3/3

    def said(text: str, start: str) -> None:  # once, as a note
        lines = [line.strip() for line in text.splitlines() if "key(s) of its chunks" in line]
        assert len(lines) == 1 and lines[0].startswith(start), text
        assert f"has {count} key(s)" in lines[0], lines
        assert repr(folder) in lines[0] and str(root) in lines[0], lines

    for first in (True, False):  # no output yet, then the run's
        for command in (("plan", cfg), ("run", cfg, "--dry-run", "--overwrite")):
            rc, out, err = cli(*command)
            assert rc == 0, err
            said(out, "note ")  # the table's note row
            assert "key(s) of its chunks" not in err, err
        if first:
            rc, out, err = cli("run", cfg, "--progress", "none")
            assert rc == 0, err
            said(err, "note: ")
            assert np.array_equal(read_array(tmp_path / "out.zarr"), reference(want))
    rc, out, err = cli("-q", "run", cfg, "--overwrite")
    assert rc == 0, err
    said(err, "note: ")
    rc, out, err = cli("-q", "verify", cfg)
    assert rc == 0, err
    said(err, "note: ")
    notes = [n for n in pipeline_plan(str(cfg)).notes if "key(s) of its chunks" in n]
    assert len(notes) == 1 and repr(folder) in notes[0], notes
    # pipeline.run's records, as its notes are logged (the logger's own handler: the command
    # line's main, called above, set its own and stopped their propagation)
    pipeline_log = logging.getLogger("pipeline")
    pipeline_log.addHandler(caplog.handler)
    try:
        assert pipeline_run(str(cfg), overwrite=True).status == "complete"
    finally:
        pipeline_log.removeHandler(caplog.handler)
    logged = [r.getMessage() for r in caplog.records if "key(s) of its chunks" in r.getMessage()]
    assert logged == [f"note: {notes[0]}"], logged


@pytest.mark.parametrize(
    "kw, file, first",
    [
        ({"zarr_format": 2, "chunk_key_encoding": {"name": "v2", "separator": "/"}}, "1", "1/0"),
        ({}, "c/1", "c/1/0"),
        ({}, "c", "c/0/0"),
    ],
    ids=["v2-slash", "v3", "v3-all"],
)
def test_the_note_of_a_file_in_a_folder_of_keys_place_counts_the_keys_it_hides(
    tmp_path, kw, file, first
) -> None:
    """A file where a folder of chunk keys goes (``1``, for the keys ``1/0`` to ``1/3``) is
    counted in the plan's note as the keys zarr-python reads as the fill value there, not as
    one entry of the folder: it had said "1 key(s) (first: '1')" for the four; a name that
    is on the way to no key of the array's grid (``9``, past its 6 rows of chunks) is no
    key's."""
    x = np.arange(24 * 20, dtype=np.float32).reshape(24, 20) + 1
    root = tmp_path / "in.zarr"
    make_array(root, x, (4, 5), **kw)  # a grid of 6 x 4 chunks
    beyond = () if file == "c" else ("9",) if "zarr_format" in kw else ("c/9",)
    for name in (file, *beyond):
        if (root / name).is_dir():
            for p in sorted((root / name).rglob("*"), reverse=True):
                p.rmdir() if p.is_dir() else p.unlink()
            (root / name).rmdir()
        (root / name).write_bytes(b"not a folder")
    hidden = 24 if file == "c" else 4
    want = zarr.open_array(str(root), mode="r")[...]
    assert (want == 0).sum() == hidden * 20, "zarr-python reads the fill value there"
    notes = plan_run(load_config(write_config(tmp_path, root, tmp_path / "out.zarr"))).notes
    said = [n for n in notes if "key(s) of its chunks" in n]
    assert len(said) == 1, notes
    assert f"has {hidden} key(s) of its chunks" in said[0], said
    assert f"(first: {first!r}, under the file {file!r})" in said[0], said


@pytest.mark.parametrize("scheme", ["", "file://"], ids=["local", "fsspec"])
def test_a_key_that_is_a_directory_holds_no_bytes_as_for_zarr(tmp_path, scheme) -> None:
    """A chunk key that is a directory, or lies under a file, is a missing key to
    zarr-python's stores (read as the fill value), and so to the raw reader: not an error.
    (fsspec: a ``file://`` Location made directly, which :meth:`Location.of` would make a
    local path, read through fsspec's local file system.)"""
    x = _input_array()
    make_array(tmp_path / "in.zarr", x, (4, 5))
    root = tmp_path / "in.zarr"
    (root / "c" / "1" / "1").unlink()
    (root / "c" / "1" / "1").mkdir()
    (root / "c" / "1" / "1" / "0").write_bytes(b"not a chunk")
    for p in (root / "c" / "3").iterdir():
        p.unlink()
    (root / "c" / "3").rmdir()
    (root / "c" / "3").write_bytes(b"not a folder")
    loc = Location(scheme + str(root))
    store = loc.zarr_store(read_only=True)
    from zarr.core.buffer import default_buffer_prototype
    from zarr.core.sync import sync

    for key in ("c/1/1", "c/3/0"):
        assert sync(store.get(key, default_buffer_prototype())) is None, key
        assert loc.read(key) is None, key
        assert loc.read_into(key, lambda n: memoryview(bytearray(n))) is None, key
    assert loc.read("c/0/0") is not None


def test_a_replaced_zip_is_read_anew(tmp_path) -> None:
    """A process that read a zip (a long-lived worker) reads the new one once it is replaced,
    not chunks from the old one's directory."""
    path = tmp_path / "input.zip"
    x = _input_array()
    _zipstore(path, x, 3, chunks=(4, 5))
    loc = Location.of(str(path))
    old = loc.read("c/0/0")
    assert np.array_equal(zarr.open_array(store=loc.zarr_store(True), mode="r")[...], x)
    _zipstore(path, x[::-1].copy(), 3, chunks=(4, 5))  # same keys, other bytes
    new = Location.of(str(path)).read("c/0/0")
    assert new is not None and new != old
    assert np.array_equal(zarr.open_array(store=loc.zarr_store(True), mode="r")[...], x[::-1])


@pytest.mark.parametrize("archive", ["zip", "tar"])
def test_an_archive_packed_again_with_the_same_sizes_and_times_is_a_changed_input(
    tmp_path, cli, archive
) -> None:
    """The archive replaced by one of other values whose members have the same sizes (chunks
    stored uncompressed), its file's modification time put back as ``cp -p`` does: the input
    changed, and a resume of the complete output is refused, which left it untouched. (A zip's
    members were told apart by their sizes alone.)"""
    x = _input_array()

    def pack(d: Path, values: np.ndarray) -> Path:
        d.mkdir()
        if archive == "zip":
            _zipstore(d / "in.zip", values, 2, chunks=(4, 5), compressors=None)
            return d / "in.zip"
        tar_of_uncompressed(d, values, (4, 5))
        return d / "in.tar"

    path = pack(tmp_path / "a", x)
    cfg = write_config(tmp_path, str(path), tmp_path / "out.zarr", cluster={"dashboard": ""})
    rc, _, err = cli("run", cfg)
    assert rc == 0, err
    before = {p: p.read_bytes() for p in (tmp_path / "out.zarr").rglob("*") if p.is_file()}
    st = path.stat()
    other = pack(tmp_path / "b", x * 2)
    assert other.stat().st_size == st.st_size
    other.replace(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    e = refused("run", cfg, "--resume")
    assert isinstance(e, OutputError) and e.changed == ["input.data"], e
    assert {p: p.read_bytes() for p in (tmp_path / "out.zarr").rglob("*") if p.is_file()} == before


def test_output_in_a_zip_is_refused_by_name(tmp_path, cli) -> None:
    make_array(tmp_path / "in.zarr", _input_array(), (4, 5))
    existing = tmp_path / "old.zip"
    _zipstore(existing, _input_array(), 3, chunks=(4, 5))
    for out in (f"zip::file://{tmp_path}/new.zip", str(existing)):
        cfg = write_config(tmp_path, tmp_path / "in.zarr", out)
        with pytest.raises(OutputError) as e:
            plan_run(load_config(cfg))
        assert e.value.output == Location.of(out).url
        assert e.value.archive == "zip"
        for command in ("plan", "run"):
            e2 = refused(command, cfg)
            assert isinstance(e2, OutputError) and e2.data == e.value.data
    assert not (tmp_path / "new.zip").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.zarr", "old.zip", "run.yaml"]


def test_generate_into_a_zip_is_refused(tmp_path, cli) -> None:
    cfg = write_config(
        tmp_path,
        "",
        tmp_path / "out.zarr",
        input={"store": f"zip::file://{tmp_path}/gen.zip", "generate": {"shape": [8, 8]}},
    )
    e = refused("generate", cfg)
    assert isinstance(e, OutputError) and e.archive == "zip"
    assert e.output == f"zip::file://{tmp_path}/gen.zip"
    assert not (tmp_path / "gen.zip").exists()


def test_chained_urls(tmp_path, monkeypatch) -> None:
    """A relative zip path names the same file in every process, whatever its directory; a
    key's address goes into the chain's path, where fsspec looks for it."""
    _zipstore(tmp_path / "input.zip", _input_array(), 3, chunks=(4, 5))
    monkeypatch.chdir(tmp_path)
    want = f"zip::file://{tmp_path}/input.zip"
    assert Location.of("zip::input.zip").url == want
    with pytest.raises(StoreError, match=r"naming the host 'input\.zip'"):
        Location.of("zip::file://input.zip")  # RFC 8089: a host, not a relative path
    assert Location.of("input.zip").url == want  # a local zip file is read as a zip store
    assert (
        Location.of("zip://in.zarr::input.zip").url == f"zip://in.zarr::file://{tmp_path}/input.zip"
    )
    assert Location.of("tar::s3://b/x.tar").url == "tar::s3://b/x.tar"
    assert Location.of("a::b.zarr").url == str(tmp_path / "a::b.zarr")  # a path, not a chain
    assert Location.of("zip::input.zip").join("a", "zarr.json") == (
        f"zip://a/zarr.json::file://{tmp_path}/input.zip"
    )
    with pytest.raises(StoreError, match="caching layer 'simplecache::'"):
        Location.of("simplecache::s3://b/x.zarr")  # refused: it could hand a run stale bytes


def test_missing_or_broken_zip_is_one_line(tmp_path, cli) -> None:
    cfg = write_config(tmp_path, f"zip::file://{tmp_path}/absent.zip", tmp_path / "out.zarr")
    with pytest.raises(InputError) as e:
        plan_run(load_config(cfg))
    assert (e.value.store, e.value.status) == (f"zip::file://{tmp_path}/absent.zip", "absent")
    e2 = refused("run", cfg)
    assert isinstance(e2, InputError) and e2.data == e.value.data

    (tmp_path / "broken.zip").write_bytes(b"not a zip at all")
    cfg = write_config(tmp_path, f"zip::file://{tmp_path}/broken.zip", tmp_path / "out.zarr")
    with pytest.raises(StoreError) as e:
        plan_run(load_config(cfg))
    assert e.value.store == f"zip::file://{tmp_path}/broken.zip"
    e2 = refused("run", cfg)
    assert isinstance(e2, StoreError) and e2.data == e.value.data
    assert not (tmp_path / "out.zarr").exists()


# --------------------------------------------------------------------------------------------
# The guard: what Zarr sees, the raw reader must see.


@dataclasses.dataclass(frozen=True)
class UrlJoined(Location):
    """The reader's fault the guard exists for: keys joined onto the URL string, as the
    pipeline once did (wrong for chained URLs such as zip::, whose root is inside the chain)."""

    def _path(self, key: str) -> str:
        return f"{self.url.rstrip('/')}/{key}"


class KeysWithoutPrefix(ArrayInfo):
    """A reader that computes other keys than Zarr's (v3 default keys without their 'c/')."""

    def key(self, index: tuple[int, ...]) -> str:
        return super().key(index).replace("c/", "", 1)


def _info_as(cls: type, info: ArrayInfo, **changes: Any) -> Any:
    fields = {f.name: getattr(info, f.name) for f in dataclasses.fields(info)}
    return cls(**(fields | changes))


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_guard_refuses_a_reader_that_looks_elsewhere(tmp_path, sparse) -> None:
    """Zarr finds chunks where the reader finds none: refused at plan time, naming the store
    and a key. ``sparse``: none of the units the guard probes by grid position is stored,
    so it finds one by listing."""
    x = np.zeros((64, 10), np.float32)
    x[24:28] = 1.0 if sparse else 0.0
    if not sparse:
        x += 1
    _, url = _make_zip(tmp_path, "zipstore-v3", x)
    info = describe_array(Location.of(url), "")
    check_reader_sees_chunks(info)  # the real reader sees them
    with pytest.raises(InputError) as e:
        check_reader_sees_chunks(_info_as(ArrayInfo, info, location=UrlJoined(url)))
    assert e.value.store == url
    assert e.value.key == ("c/6/0" if sparse else "c/0/0")


def test_guard_refuses_keys_zarr_does_not_use(tmp_path) -> None:
    make_array(tmp_path / "in.zarr", np.ones((8, 10), np.float32), (4, 5))
    info = describe_array(Location.of(str(tmp_path / "in.zarr")), "")
    with pytest.raises(InputError) as e:
        check_reader_sees_chunks(_info_as(KeysWithoutPrefix, info))
    assert e.value.store == str(tmp_path / "in.zarr") and e.value.key == "c/0/0"


def _keys_written_otherwise(path: Path, zarr_format: int, written: str, said: Any) -> np.ndarray:
    """An array written by zarr-python with chunk keys of the encoding ``written`` (``'/'`` or
    ``'.'``), whose metadata then says ``said`` instead (:func:`_key_encoding_said`):
    zarr-python finds none of its chunks. Its values."""
    x = np.arange(9 * 13, dtype=np.float32).reshape(9, 13) + 1
    encoding = {"name": "v2" if zarr_format == 2 else "default", "separator": written}
    make_array(path, x, (4, 6), zarr_format=zarr_format, chunk_key_encoding=encoding)
    _key_encoding_said(path, zarr_format, said)
    return x


def _key_encoding_said(path: Path, zarr_format: int, said: Any) -> None:
    """The metadata of the array at ``path`` edited to say ``said`` of its chunk keys' encoding
    (v2: the ``dimension_separator``, None for none, as zarr-python 2's NestedDirectoryStore
    before 2.8 left it; v3: the ``chunk_key_encoding``), its chunks left where they are."""
    import json

    doc = path / (".zarray" if zarr_format == 2 else "zarr.json")
    meta = json.loads(doc.read_text())
    key = "dimension_separator" if zarr_format == 2 else "chunk_key_encoding"
    meta.pop(key)
    if said is not None:
        meta[key] = said
    doc.write_text(json.dumps(meta))


def _same_encoding(key: str, like: str) -> bool:
    """Whether ``key`` is a chunk key of the encoding of ``like`` (a unit's key, any index:
    a refusal names the first key a listing finds)."""
    import re

    return re.fullmatch(re.sub(r"\d+", r"\\d+", re.escape(like)), key) is not None


#: Chunk keys written in one encoding (``'/'`` or ``'.'``) whose metadata then says another:
#: (Zarr format, the separator written, what the metadata says: :func:`_key_encoding_said`).
OTHER_KEY_ENCODINGS = {
    "v2-nested-no-separator": (2, "/", None),
    "v2-flat-said-nested": (2, ".", "/"),
    "v3-dots-said-slashes": (3, ".", {"name": "default", "configuration": {"separator": "/"}}),
    "v3-said-v2": (3, "/", {"name": "v2", "configuration": {"separator": "."}}),
}


def _each_encoding(cases: dict[str, tuple[int, str, Any]]) -> pytest.MarkDecorator:
    """A test run once for each of ``cases`` (id: (zarr_format, written, said))."""
    return pytest.mark.parametrize(
        ("zarr_format", "written", "said"), list(cases.values()), ids=list(cases)
    )


def _written_key(zarr_format: int, written: str, index: tuple[int, ...]) -> str:
    """The key zarr-python wrote the chunk ``index`` at, with the separator ``written``."""
    key = written.join(str(i) for i in index)
    return key if zarr_format == 2 else f"c{written}{key}"


@_each_encoding(OTHER_KEY_ENCODINGS)
def test_chunks_under_another_key_encoding_are_refused(
    tmp_path, zarr_format, written, said
) -> None:
    """An array whose chunks lie under the keys of another encoding than its metadata says
    (a zarr-python 2 NestedDirectoryStore array of before 2.8, which wrote no
    dimension_separator) reads as its fill value alone to zarr-python; the run had written an
    output of fill values, marked complete, which verify passed. Refused at plan time, naming
    a chunk's key and the metadata setting that finds them, before anything is written."""
    _keys_written_otherwise(tmp_path / "in.zarr", zarr_format, written, said)
    assert not zarr.open_array(str(tmp_path / "in.zarr"), mode="r")[...].any()
    cfg = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr")
    e = refused("run", cfg)
    assert isinstance(e, InputError), e
    assert _same_encoding(e.key, _written_key(zarr_format, written, (0, 0))), e
    setting = '"dimension_separator": "' + written if zarr_format == 2 else '"separator": "'
    assert setting in str(e) and "fill value" in str(e)
    assert not (tmp_path / "out.zarr").exists()


def test_verify_refuses_an_input_of_chunks_under_another_key_encoding(tmp_path) -> None:
    """verify of an output made from an array whose metadata then lost its
    ``dimension_separator`` (its chunks at ``0/0``: as zarr-python 2's NestedDirectoryStore
    before 2.8 left it) refuses the input as the run now does, naming a chunk's key: it had
    compared the fill values zarr-python reads with the output and said so."""
    import pipeline

    x = np.arange(9 * 13, dtype=np.float32).reshape(9, 13) + 1
    src = tmp_path / "in.zarr"
    make_array(src, x, (4, 6), zarr_format=2, chunk_key_encoding={"name": "v2", "separator": "/"})
    cfg = write_config(tmp_path, src, tmp_path / "out.zarr")
    pipeline_run(cfg)
    assert np.array_equal(read_array(tmp_path / "out.zarr"), reference(x))
    _key_encoding_said(src, 2, None)
    with pytest.raises(InputError) as e:
        pipeline.verify(cfg, all=True)
    assert _same_encoding(e.value.key, "0/0"), str(e.value)


def _sparse_written_otherwise(path: Path, zarr_format: int, written: str, said: Any) -> None:
    """A 200x200 array of 10x10 chunks of which zarr-python wrote only ``a[73:76, 133:135] =
    7`` (the one chunk ``(7, 13)``; the probed units hold none) with chunk keys of the
    encoding ``written``, whose metadata then says ``said`` (:func:`_key_encoding_said`;
    ``"keep"`` leaves the metadata as written: a correct sparse array)."""
    encoding = {"name": "v2" if zarr_format == 2 else "default", "separator": written}
    a = zarr.create_array(
        str(path), shape=(200, 200), dtype="f4", chunks=(10, 10), fill_value=0,
        zarr_format=zarr_format, chunk_key_encoding=encoding,
    )  # fmt: skip
    a[73:76, 133:135] = 7
    if said != "keep":
        _key_encoding_said(path, zarr_format, said)


def _notes_beside_chunks(path: Path) -> None:
    """20 files of a user's (``note-NN.txt``) in the array's folder at ``path`` and in each
    folder directly under it (``c``, ``7``), which a listing in the file system's order
    gives before the chunks' folder or files (one of them had been taken for the first
    stored key, and a sparse array of misplaced chunks run as its fill value: h64d)."""
    for folder in [path, *(p for p in path.iterdir() if p.is_dir())]:
        for i in range(20):
            (folder / f"note-{i:02}.txt").write_text("a user's note\n")


#: :data:`OTHER_KEY_ENCODINGS`, and v3 metadata that says the other separator or encoding
#: (a sparse array's first stored key is looked for, whatever the metadata says).
SPARSE_KEY_ENCODINGS = {
    **OTHER_KEY_ENCODINGS,
    "v3-slashes-said-dots": (3, "/", {"name": "default", "configuration": {"separator": "."}}),
    "v3-said-v2-slashes": (3, "/", {"name": "v2", "configuration": {"separator": "/"}}),
}


@_each_encoding(SPARSE_KEY_ENCODINGS)
def test_sparse_chunks_under_another_key_encoding_are_refused(
    tmp_path, zarr_format, written, said
) -> None:
    """A sparse array whose few chunks lie under another encoding's keys than its metadata
    says, none of them a probed unit, had passed plan and run (an output of zeros alone):
    the first stored key under the array is found (a listing that stops at it) and refused,
    named, by plan and run, before anything is written. The same array with its metadata
    as written runs."""
    src = tmp_path / "in.zarr"
    _sparse_written_otherwise(src, zarr_format, written, said)
    assert not zarr.open_array(str(src), mode="r")[...].any()
    cfg = write_config(tmp_path, src, tmp_path / "out.zarr")
    for notes in (False, True):
        if notes:  # a user's files beside the chunks, one of them listed first (h64d)
            _notes_beside_chunks(src)
        for command in ("plan", "run"):
            e = refused(command, cfg)
            assert isinstance(e, InputError), e
            assert e.key == _written_key(zarr_format, written, (7, 13)), e
            assert "fill value" in str(e)
    assert not (tmp_path / "out.zarr").exists()
    right = tmp_path / "right.zarr"
    _sparse_written_otherwise(right, zarr_format, written, "keep")
    _notes_beside_chunks(right)
    x = np.zeros((200, 200), np.float32)
    x[73:76, 133:135] = 7
    cfg = write_config(tmp_path, right, tmp_path / "right-out.zarr", name="right.yaml")
    pipeline_run(cfg)
    assert np.array_equal(read_array(tmp_path / "right-out.zarr"), reference(x))


def test_verify_refuses_a_sparse_input_of_chunks_under_another_key_encoding(tmp_path) -> None:
    """verify of an output made from a sparse array (none of its chunks a probed unit) whose
    metadata then lost its ``dimension_separator`` refuses the input, naming its chunk's
    key: it had compared the zeros zarr-python reads with the output and passed."""
    import pipeline

    src = tmp_path / "in.zarr"
    _sparse_written_otherwise(src, 2, "/", "keep")
    cfg = write_config(tmp_path, src, tmp_path / "out.zarr")
    pipeline_run(cfg)
    _key_encoding_said(src, 2, None)
    with pytest.raises(InputError) as e:
        pipeline.verify(cfg, all=True)
    assert e.value.key == "7/13", str(e.value)


def test_an_array_never_written_is_no_misplaced_chunks(tmp_path) -> None:
    """An array with no chunk stored under any key encoding (created, never written) reads as
    its fill value, and runs so."""
    for fmt in (2, 3):
        zarr.create_array(
            str(tmp_path / f"in{fmt}.zarr"), shape=(9, 13), dtype="f4", chunks=(4, 6),
            zarr_format=fmt, fill_value=1.5,
        )  # fmt: skip
        cfg = write_config(tmp_path, tmp_path / f"in{fmt}.zarr", tmp_path / f"out{fmt}.zarr")
        pipeline_run(cfg)
        assert np.array_equal(
            read_array(tmp_path / f"out{fmt}.zarr"), reference(np.full((9, 13), np.float32(1.5)))
        )


def test_a_local_delete_removes_the_tree_and_never_follows_links(tmp_path: Path) -> None:
    """``Location.delete(key, recursive=True)`` on a local store: every file under the key
    goes, big ones (unlinked on several threads) and small ones, in nested folders; a
    symbolic link inside is removed without touching what it points at, and a key that is
    itself a link to a folder loses the link, not the folder's files."""
    from pipeline.store.location import BIG_FILE

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.bin").write_bytes(b"k" * (BIG_FILE + 1))
    root = tmp_path / "store"
    tree = root / "arr" / "c"
    for i in range(6):
        (tree / str(i)).mkdir(parents=True)
        (tree / str(i) / "big").write_bytes(bytes([i]) * (BIG_FILE + i))
        (tree / str(i) / "small").write_bytes(b"s")
    (tree / "0" / "to-folder").symlink_to(outside, target_is_directory=True)
    (tree / "0" / "to-file").symlink_to(outside / "keep.bin")
    (root / "linked").symlink_to(outside, target_is_directory=True)
    loc = Location.of(str(root))
    loc.delete("arr/c", recursive=True)
    loc.delete("linked", recursive=True)
    loc.delete("absent", recursive=True)  # nothing there is fine
    assert sorted(p.name for p in root.iterdir()) == ["arr"]
    assert list((root / "arr").iterdir()) == []
    assert (outside / "keep.bin").read_bytes() == b"k" * (BIG_FILE + 1)


def _tree_with(root: Path) -> dict[str, Path]:
    """Under ``root/arr/c``: big files (unlinked on threads) and small ones, each file that a
    test makes undeletable alone in its folder."""
    from pipeline.store.location import BIG_FILE

    tree = root / "arr" / "c"
    files = {
        "big": tree / "0" / "big",
        "small": tree / "0" / "small",
        "big-alone": tree / "1" / "big",
        "small-alone": tree / "2" / "small",
        "big-too": tree / "3" / "big",
    }
    for name, f in files.items():
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"b" * (BIG_FILE + len(name)) if "big" in name else b"s")
    return files


@pytest.mark.parametrize("stuck", ["small-alone", "big-alone"])
def test_a_local_delete_that_cannot_remove_a_file_names_it(tmp_path: Path, stuck: str) -> None:
    """A file under the key that cannot be deleted (its folder read-only, or immutable):
    everything else goes, and the delete raises an OutputError naming the store and the file
    that stays. (rmtree's errors were ignored: a replaced output silently kept old files, and
    a big file's error came out as a bare PermissionError, before the rest was removed.)"""
    root = tmp_path / "store"
    files = _tree_with(root)
    loc = Location.of(str(root))
    with undeletable(files[stuck]), pytest.raises(OutputError) as e:
        loc.delete("arr/c", recursive=True)
    assert e.value.output == str(root)
    assert e.value.path == str(files[stuck])
    assert "\n" not in str(e.value)
    assert [p for p in (root / "arr").rglob("*") if p.is_file()] == [files[stuck]]
    loc.delete("arr/c", recursive=True)  # deletable again: gone, and nothing there is fine
    loc.delete("arr/c", recursive=True)
    assert list((root / "arr").iterdir()) == []


def test_overwrite_refuses_an_output_it_cannot_clear(tmp_path: Path) -> None:
    """``run --overwrite`` over an output one of whose chunk files cannot be deleted, with a
    config whose chunks leave that file outside the new chunk grid: refused with an
    OutputError naming the file (the replacement no longer completes with the old file left
    in it); once the file can go, the same command replaces the output with exactly the new
    one. The old chunks are moved into the run record and deleted while the run computes
    (h83d): the file is named where it was moved, the new array is made and stays
    incomplete (it was refused before the new array was made, the file named where it was,
    and this test failed since that merge)."""
    x = np.random.default_rng(5).standard_normal((24, 30)).astype(np.float32)
    make_array(tmp_path / "in.zarr", x, (6, 30))
    out = tmp_path / "out.zarr"
    cluster = {"workers": 1, "threads_per_worker": 1, "dashboard": ""}
    first = write_config(
        tmp_path,
        tmp_path / "in.zarr",
        out,
        "a.yaml",
        cluster=cluster,
        output={"chunks": [6, 30], "shards": "none"},
    )
    assert error_of("-q", "run", first, "--progress", "none") is None
    stale = out / "c" / "3" / "0"
    assert stale.is_file()
    second = write_config(
        tmp_path,
        tmp_path / "in.zarr",
        out,
        "b.yaml",
        cluster=cluster,
        output={"chunks": [12, 30], "shards": "none"},
    )
    with undeletable_within(out, stale):
        e = refused("-q", "run", second, "--overwrite", "--progress", "none")
        assert isinstance(e, OutputError)
        assert e.output == str(out), e
        moved = Path(e.path)
        assert moved.parts[-3:] == stale.parts[-3:] and moved.is_file(), e
        assert moved.parent.parent.parent.parent == out / ".pipeline" / "aside", e
        assert status(out) == "incomplete"
    assert error_of("-q", "run", second, "--overwrite", "--progress", "none") is None
    assert not (out / "c" / "3").exists()
    assert np.array_equal(read_array(out), reference(x))
    assert zarr.open_array(str(out), mode="r").chunks == (12, 30)


def test_a_run_record_that_cannot_be_removed_leaves_the_output_complete(tmp_path: Path) -> None:
    """The run record is removed after the output says it is complete: a file in the record
    that cannot be deleted leaves the run done (exit 0), the output complete and equal to
    NumPy's, and its lock released (a second run finds nothing to do), with a warning."""
    from pipeline.running.output import output_state

    x = np.random.default_rng(6).standard_normal((24, 30)).astype(np.float32)
    make_array(tmp_path / "in.zarr", x, (6, 30))
    out = tmp_path / "out.zarr"
    cfg = write_config(
        tmp_path,
        tmp_path / "in.zarr",
        out,
        cluster={"workers": 1, "threads_per_worker": 1, "dashboard": ""},
    )
    # under a name the record keeps (a torn write of run.json's), which the run deletes at
    # its end: one of the user's there is refused before the run (h84b)
    stuck = out / ".pipeline" / ".run.json.tmp-1-1" / "extra"
    stuck.parent.mkdir(parents=True)
    stuck.write_text("a file the run cannot remove")
    with undeletable(stuck):
        assert error_of("-q", "run", cfg, "--progress", "none", "--overwrite") is None
    assert np.array_equal(read_array(out), reference(x))
    plan = plan_run(load_config(cfg))
    assert output_state(plan) == "complete"
    assert error_of("-q", "run", cfg, "--progress", "none", "--resume") is None  # no lock held


@pytest.mark.parametrize(
    ("url", "checked"),
    [
        ("http://127.0.0.1:1/in.zarr", True),
        ("https://example.org/data/in.zarr", True),
        ("zip::http://127.0.0.1:1/in.zip", False),  # keys are the archive's members
        ("s3://bucket/in.zarr", False),
        ("memory://in.zarr", False),
        ("/tmp/in.zarr", False),
    ],
)
def test_names_a_url_reads_otherwise_are_refused_only_where_keys_are_urls(
    url: str, checked: bool
) -> None:
    """A key holding '?', '#' or a '%' escape is refused where the store's keys are paths of
    HTTP URLs (a zip member reached over HTTP is not one: review, it was refused), and every
    other name is not; nothing is read to tell."""
    from pipeline.errors import StoreError

    loc = Location.of(url)
    for key in ("v?1/zarr.json", "la#t", "p%41/0.0"):
        if checked:
            with pytest.raises(StoreError) as e:
                loc.check_url_safe(key)
            assert e.value.key == key and "local folder" in str(e.value)
        else:
            loc.check_url_safe(key)
    for key in ("w 1/zarr.json", "a+b&c=d;e", "50%/0.0", "x%zz", "tempé"):
        loc.check_url_safe(key)


@pytest.mark.parametrize("link", ["hard", "symbolic"])
def test_a_write_over_a_linked_file_replaces_it_and_leaves_the_other_file(
    tmp_path: Path, link: str
) -> None:
    """A chunk the output writes where a link to another store's file is (``cp -al
    in.zarr out.zarr``: the same inode; or a symbolic link into it) is a new file: the
    other store's bytes and inode stay (h72c: written through, the input was rewritten)."""
    other = tmp_path / "in.zarr" / "c" / "0"
    other.parent.mkdir(parents=True)
    other.write_bytes(b"input's bytes")
    ino = other.stat().st_ino
    at = tmp_path / "out.zarr" / "c" / "0"
    at.parent.mkdir(parents=True)

    def make_link() -> None:
        if link == "hard":
            os.link(other, at)
        else:
            at.symlink_to(other)

    make_link()
    loc = Location.of(str(tmp_path / "out.zarr"))
    for atomic in (False, True):
        assert loc.write("c/0", [b"output's", b" bytes"], atomic=atomic) == 14
        assert at.read_bytes() == b"output's bytes" and not at.is_symlink()
        assert other.read_bytes() == b"input's bytes" and other.stat().st_ino == ino
        assert other.stat().st_nlink == 1
        at.unlink()
        make_link()


def test_a_run_record_behind_a_link_to_nothing_is_not_called_a_chunk(tmp_path: Path) -> None:
    """A key of the run record (``.pipeline/run.json``) read through a link to nothing is
    refused naming the link, without a chunk's fix (its removal "if the chunk is meant to be
    the fill value", which a run record is not: h72c); a chunk's line keeps that fix."""
    store = tmp_path / "out.zarr"
    store.mkdir()
    (store / ".pipeline").symlink_to(tmp_path / "nowhere")
    (store / "c").symlink_to(tmp_path / "gone")
    loc = Location.of(str(store))
    with pytest.raises(StoreError) as info:
        loc.read(".pipeline/run.json")
    line = str(info.value)
    assert str(store / ".pipeline") in line and "chunk" not in line, line
    with pytest.raises(StoreError) as info:
        loc.read("c/0/0")
    assert "if the chunk is meant to be the fill value" in str(info.value)


#: A user no machine that runs the tests has.
NO_USER = "h74d-no-such-user"


@pytest.mark.parametrize("which", ["input", "output"])
@pytest.mark.parametrize("scheme", ["", "file://"])
def test_a_store_in_the_home_folder_of_no_user_is_refused(
    tmp_path, cli, monkeypatch, which, scheme
) -> None:
    """``~nouser/out.zarr``, of a user this machine does not have: ``os.path.expanduser``
    leaves it as it is, and a run had made a folder ``~nouser`` in the folder it ran in (an
    input there "did not exist", or was generated there). Refused where the config is read,
    naming the path, that there is no such user, and how to name such a folder; nothing
    written."""
    monkeypatch.chdir(tmp_path)
    make_array(tmp_path / "in.zarr", _input_array(), (4, 5))
    url = f"{scheme}~{NO_USER}/{which[:2]}.zarr"
    words = f"{which}.store: {url!r} begins with '~{NO_USER}', the home folder of a user named"
    _refused_everywhere(tmp_path, cli, which, url, words, "no such user", f"'./~{NO_USER}/")


def test_a_store_in_a_home_folder_that_exists_is_read_and_written_there(
    tmp_path, cli, monkeypatch
) -> None:
    """``~/in.zarr`` and ``file://~/out.zarr`` are the home folder's, as fsspec and the
    shell read them (``file://~`` had been refused as a file URL naming a host '~'); and
    ``~root/x`` is root's, never refused."""
    home, here = tmp_path / "home", tmp_path / "here"
    home.mkdir()
    here.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(here)
    x = _input_array()
    make_array(home / "in.zarr", x, (4, 5))
    rc, _, err = cli("run", write_config(here, "~/in.zarr", "file://~/out.zarr"))
    assert rc == 0, err
    np.testing.assert_array_equal(zarr.open_array(home / "out.zarr", mode="r")[...], reference(x))
    assert sorted(p.name for p in here.iterdir()) == ["run.yaml"]
    root = os.path.expanduser("~root")
    if root == "~root":
        pytest.skip("this machine has no user root")
    assert Location.of("~root/x.zarr").url == os.path.join(root, "x.zarr")
    load_config(write_config(here, "~root/in.zarr", "~root/out.zarr", name="root.yaml"))


@pytest.mark.parametrize("flag", ["--summary-json", "--report"])
def test_a_summary_in_the_home_folder_of_no_user_is_refused_before_the_run(
    tmp_path, cli, monkeypatch, flag
) -> None:
    """``--summary-json ~nouser/s.json`` (quoted, or after '='; a program's argument): the
    run's checks and its write had taken it as a relative path; refused before the run, in
    one line naming the flag and that no such user exists; nothing written."""
    monkeypatch.chdir(tmp_path)
    make_array(tmp_path / "in.zarr", _input_array(), (4, 5))
    cfg = write_config(tmp_path, str(tmp_path / "in.zarr"), str(tmp_path / "out.zarr"))
    rc, out, err = cli("run", cfg, flag, f"~{NO_USER}/s.json")
    assert rc == 1, out
    assert err.count("\n") == 1 and err.startswith(f"error: {flag}: "), err
    assert "no such user" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.zarr", "run.yaml"]


def test_a_summary_in_the_home_folder_is_written_there(tmp_path, cli, monkeypatch) -> None:
    """``--summary-json ~/s.json`` as the program gets it (quoted, or after '='): the checks
    before the run took the home folder's, and the run then wrote ``./~/s.json``, failing
    after the run where no folder ``~`` was there. Written in the home folder."""
    home, here = tmp_path / "home", tmp_path / "here"
    home.mkdir()
    here.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(here)
    make_array(here / "in.zarr", _input_array(), (4, 5))
    cfg = write_config(here, str(here / "in.zarr"), str(here / "out.zarr"))
    rc, _, err = cli("run", cfg, "--summary-json", "~/s.json")
    assert rc == 0, err
    assert json.loads((home / "s.json").read_text())["status"] == "complete"
    assert sorted(p.name for p in here.iterdir()) == ["in.zarr", "out.zarr", "run.yaml"]


def test_a_store_s_hard_links_are_looked_for_as_its_files_are_walked(tmp_path: Path) -> None:
    """``location.files_on_inodes`` (a resume's look for an output file that is a hard link
    to one of the input's) walks a store as its files are walked: into a folder that is a
    link elsewhere (chunks moved to another disk), but not up a link to the store's folder or
    above it, where it had taken the store's neighbours, the input among them, for the
    output's own files (and not into a top entry it is told to skip)."""
    inp, out, elsewhere = tmp_path / "in.zarr", tmp_path / "out.zarr", tmp_path / "disk"
    for folder in (inp / "c", out / "c", elsewhere, out / ".pipeline"):
        folder.mkdir(parents=True)
    (inp / "c" / "0").write_bytes(b"input")
    (inp / "c" / "1").write_bytes(b"input too")
    os.link(inp / "c" / "1", elsewhere / "1")  # behind the output's linked folder
    os.link(inp / "c" / "1", out / ".pipeline" / "1")  # in the skipped entry
    (out / "c" / "0").write_bytes(b"output")
    (out / "moved").symlink_to(elsewhere, target_is_directory=True)
    (out / "up").symlink_to("..", target_is_directory=True)  # the output's own neighbours
    inodes = {
        (s.st_dev, s.st_ino) for s in (os.stat(p) for p in (inp / "c" / "0", inp / "c" / "1"))
    }
    found = files_on_inodes(str(out), inodes, skip=(".pipeline",))
    assert found == [str(out / "moved" / "1")], found
