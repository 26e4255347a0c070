"""Inputs read over HTTP (``input.store: http://...``) from a real server in a process of its
own (``tests/httpkit.py``): a rewrite between an interrupted run and its resume is seen where
the server says when files change, and a resume is refused where it does not; a server's
error on a chunk is one line that says what to do.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

from pipeline.errors import OutputError
from tests.conftest import record_of, reference, write_config
from tests.faultkit import DIED_OF_SIGINT, one_line_error, refused
from tests.httpkit import serving

ROWS, COLS, CHUNK = 64, 256, 8


def _input(path: Path, x: np.ndarray) -> None:
    """``x`` as a v2 array of uncompressed chunks of CHUNK rows (a rewrite keeps every size)."""
    z = zarr.create_array(
        str(path), shape=x.shape, dtype=x.dtype, chunks=(CHUNK, COLS), zarr_format=2,
        compressors=None, overwrite=True,
    )  # fmt: skip
    z[...] = x


def _ramp(tmp: Path) -> np.ndarray:
    """ROWS x COLS float32 counting up from 0, written as in.zarr in ``tmp`` (:func:`_input`);
    those values."""
    x = np.arange(ROWS * COLS, dtype="f4").reshape(ROWS, COLS)
    _input(tmp / "in.zarr", x)
    return x


#: the cluster section of a run on one worker process (its results pickled back)
WORKER_PROCESS = {"protocol": "tcp", "workers": 1, "threads_per_worker": 1, "dashboard": ""}


def _config(tmp: Path, url: str, **sections: Any) -> Path:
    """A config reading in.zarr served at ``url`` a chunk a block into out.zarr in ``tmp``
    (``sections`` over :func:`write_config`'s)."""
    return write_config(
        tmp, f"{url}/in.zarr", tmp / "out.zarr", chunking={"block": [CHUNK, COLS]}, **sections
    )


def _interrupted(tmp: Path, cli, server, stamps: bool) -> Path:
    """A run of the input served by ``server`` stopped by the server's 500 on the last chunk:
    an incomplete output, with its run record."""
    cfg = _config(tmp, server.url)
    last = f"in.zarr/{ROWS // CHUNK - 1}.0"
    server.set(fail={last: 500}, stamps=stamps)
    rc, _, err = cli("run", cfg)
    assert rc == 1, err
    assert record_of(zarr.open_array(str(tmp / "out.zarr")).attrs)["status"] == "incomplete"
    server.set(stamps=stamps)
    return cfg


@pytest.mark.parametrize("stamps", [True, False], ids=["last-modified", "no-stamps"])
def test_resume_is_refused_when_the_served_input_was_rewritten(tmp_path: Path, cli, stamps) -> None:
    """F3: the input rewritten on the server between an interrupted run and its resume, same
    names and sizes. The listing of an HTTP folder gives no stamps, so the resume took the
    input for the same and marked complete an output of both versions' values. Where the
    server sends Last-Modified (HEAD), the rewrite is seen; where it sends no stamp, nothing
    can see it, and the resume is refused for that reason."""
    x = _ramp(tmp_path)
    with serving(tmp_path) as server:
        cfg = _interrupted(tmp_path, cli, server, stamps)
        time.sleep(1.1)  # Last-Modified counts whole seconds
        _input(tmp_path / "in.zarr", -x)
        e = refused("run", cfg, "--resume")
        assert isinstance(e, OutputError)
        assert e.status == "incomplete"
        if stamps:
            assert e.changed == ["input.data"]
        else:
            assert "no change stamp" in e.unstamped and "--overwrite" in str(e)
        assert record_of(zarr.open_array(str(tmp_path / "out.zarr")).attrs)["status"] == (
            "incomplete"
        )
        rc, _, err = cli("run", cfg, "--overwrite")
        assert rc == 0, err
        assert np.array_equal(zarr.open_array(str(tmp_path / "out.zarr"))[...], reference(-x))


def test_a_served_input_without_stamps_is_not_claimed_checked(tmp_path: Path, cli) -> None:
    """Where the server sends no change stamps, the run's end and ``verify`` cannot tell the
    input unchanged, and say so: the run warns; ``verify`` of sampled blocks fails, naming
    ``--all``, and ``verify --all`` (every block compared with the input as it is) passes
    with a note."""
    _ramp(tmp_path)
    with serving(tmp_path, stamps=False) as server:
        cfg = _config(tmp_path, server.url)
        rc, _, err = cli("run", cfg)
        assert rc == 0, err
        assert "was not checked for a rewrite" in err and "no change stamp" in err
        rc, _, err = cli("verify", cfg, "--samples", "2")
        assert rc == 1
        assert "cannot show a rewrite" in err and "verify --all" in err
        rc, _, err = cli("verify", cfg, "--all")
        assert rc == 0, err
        assert "every block was compared" in err
        rc, _, err = cli("run", cfg, "--resume")  # complete: nothing to do, and what it can't tell
        assert rc == 0, err
        assert "nothing to do" in err and "cannot be told" in err and "--overwrite" in err


def test_a_server_error_on_a_chunk_is_one_line_naming_it(tmp_path: Path, cli) -> None:
    """F8: an HTTP 403 (or 500) on a chunk was a bare ``ClientResponseError: 403, ...``,
    naming no fix and not saying the output stays incomplete. h86f: its stop is no refusal of
    the input's own data (the server answering again mends it, the input as it was), so the
    record keeps no ``stopped_on_input`` and verify says `run --resume`, which finishes it."""
    _ramp(tmp_path)
    with serving(tmp_path) as server:
        cfg = _config(tmp_path, server.url)
        for status in (403, 500):
            server.set(fail={"in.zarr/2.0": status})
            rc, _, err = cli("run", cfg, "--overwrite")
            assert rc == 1
            line = one_line_error(err)
            assert f"HTTP {status}" in line and "'2.0'" in line, line
            assert server.url in line and "stays incomplete" in line, line
            # what finishes it depends on the fix (one that rewrites the input's files makes
            # a resume refused): verify asks `run` once it is made
            assert "`pipeline verify`" in line and "--resume" not in line, line
        record = json.loads((tmp_path / "out.zarr" / ".pipeline" / "run.json").read_text())
        assert "HTTP 500" in record["stopped"] and "stopped_on_input" not in record, record
        server.set()
        rc, _, err = cli("verify", cfg)  # the server serves it again: nothing was rewritten
        assert rc == 1 and "`run --resume` finishes it" in one_line_error(err), err
        rc, _, err = cli("run", cfg, "--resume")
        assert rc == 0, err
        server.set(fail={"in.zarr/2.0": 403})  # verify reads through zarr-python: not damage
        rc, _, err = cli("verify", cfg, "--all")
        line = one_line_error(err.split("\n", 1)[-1] if err.startswith("verify") else err)
        assert "HTTP 403" in line and "damaged" not in line, line


def test_ctrl_c_of_a_run_of_an_unstamped_input_says_to_start_over(tmp_path: Path) -> None:
    """Ctrl-C during a run of an input whose server sends no change stamps: the output stays
    incomplete, and the line names `--overwrite`, not a `--resume` that would be refused."""
    import signal

    from tests.faultkit import run_and_signal

    rows = 8 * ROWS
    for _ in range(3):  # a machine fast enough to finish before the signal gets more rows
        _input(tmp_path / "in.zarr", np.arange(rows * COLS, dtype="f4").reshape(rows, COLS))
        with serving(tmp_path, stamps=False) as server:
            cfg = _config(tmp_path, server.url)
            stopped = run_and_signal(
                cfg, tmp_path / "out.zarr", signal.SIGINT, args=("--overwrite",)
            )
        if stopped is not None:
            break
        rows *= 4
    assert stopped is not None, "every run ended before the signal"
    assert stopped.returncode == DIED_OF_SIGINT, stopped.stderr
    assert (
        "no change stamps" in stopped.stderr and "`run --overwrite` starts over" in stopped.stderr
    )
    assert "--resume" not in stopped.stderr


def test_a_server_error_on_a_chunk_comes_back_from_worker_processes_as_itself(
    tmp_path: Path,
) -> None:
    """On a cluster of worker processes, the store's error had ridden along as the one-line
    error's ``__context__``; aiohttp's does not pickle, so distributed handed back a bare
    ``Exception`` wrapping the line, and the API raised that, not an ``InputError``
    (helper-54). Raised as itself, with its fields."""
    import pipeline
    from pipeline.errors import InputError

    _ramp(tmp_path)
    with serving(tmp_path) as server:
        cfg = _config(tmp_path, server.url, cluster=WORKER_PROCESS)
        server.set(fail={"in.zarr/2.0": 403})
        with pytest.raises(InputError) as info:
            pipeline.run(cfg)
    assert info.value.key == "2.0" and "HTTP 403" in str(info.value), info.value


def test_verify_of_an_incomplete_output_of_an_unstamped_input_says_to_start_over(
    tmp_path: Path, cli
) -> None:
    """An output left incomplete by a run of an input whose server sends no change stamps:
    `run --resume` is refused (`run --overwrite` starts over), but `verify` said "`run
    --resume` finishes it" (F8). It says what `run` says, in one line."""
    _ramp(tmp_path)
    with serving(tmp_path) as server:
        cfg = _interrupted(tmp_path, cli, server, stamps=False)
        rc, _, err = cli("verify", cfg)
        assert rc == 1, err
        line = one_line_error(err.split("\n", 1)[-1] if err.startswith("verify") else err)
        assert "no change stamp" in line and "`run --overwrite` starts over" in line, line
        assert "--resume" not in err, err
        assert "no change stamp" in str(refused("run", cfg, "--resume"))


# -- a server that lists no folders (nginx without autoindex) ---------------------------------


def _sparse(path: Path, zarr_format: int) -> np.ndarray:
    """An input at ``path`` with one stored unit absent (all fill value, which zarr-python does
    not write): v2 uncompressed chunks of CHUNK rows (flat keys ``2.0``), or v3 zstd chunks
    in shards of 2 x 2 chunks (nested keys ``c/1/0``). Returns the values written."""
    x = np.arange(ROWS * COLS, dtype="f4").reshape(ROWS, COLS) - 1000.5
    x[2 * CHUNK : 4 * CHUNK] = 0  # unit 2.0 (v2: 2 chunks; v3: shard c/1/0 and c/1/1)
    if zarr_format == 2:
        z = zarr.create_array(
            str(path), shape=x.shape, dtype=x.dtype, chunks=(CHUNK, COLS), zarr_format=2,
            compressors=None, fill_value=0, overwrite=True,
        )  # fmt: skip
    else:
        z = zarr.create_array(
            str(path), shape=x.shape, dtype=x.dtype, chunks=(CHUNK, COLS // 4),
            shards=(2 * CHUNK, COLS // 2), fill_value=0, overwrite=True,
        )  # fmt: skip
    z[...] = x
    return x


@pytest.mark.parametrize("zarr_format", [2, 3], ids=["v2", "v3-sharded"])
@pytest.mark.parametrize("status", [403, 404])
def test_an_input_whose_server_lists_no_folders_is_read_as_zarr_reads_it(
    tmp_path: Path, cli, status: int, zarr_format: int
) -> None:
    """A server that refuses folder listings (nginx without autoindex: a GET of a folder URL
    answers 403 or 404, every file URL works): `plan` and `run` failed with a bare
    ``ClientResponseError: 403`` (or "input store ... does not exist" for 404), though
    zarr-python reads the store. Now the run reads it as zarr-python does, an absent unit
    as the fill value, bit for bit; its identity is taken from the keys the metadata
    implies, stamped, so the run's end and `verify` check it as for a listing server."""
    x = _sparse(tmp_path / "in.zarr", zarr_format)
    with serving(tmp_path, folders=status) as server:
        url = f"{server.url}/in.zarr"
        read = zarr.open_array(url, mode="r")[...]  # zarr-python, over the same server
        assert np.array_equal(read, x)
        cfg = write_config(tmp_path, url, tmp_path / "out.zarr", chunking={"block": [16, COLS]})
        rc, _, err = cli("plan", cfg)
        assert rc == 0, err
        rc, _, err = cli("run", cfg)
        assert rc == 0, err
        assert "not checked" not in err and "no change stamp" not in err, err
        got = zarr.open_array(str(tmp_path / "out.zarr"), mode="r")[...]
        want = reference(read)
        assert got.dtype == want.dtype and got.tobytes() == want.tobytes()
        for args in (("--samples", "2"), ("--all",)):
            rc, _, err = cli("verify", cfg, *args)
            assert rc == 0, err
            assert "cannot show a rewrite" not in err, err
        rc, _, err = cli("run", cfg, "--resume")
        assert rc == 0 and "nothing to do" in err, err


@pytest.mark.parametrize("layout", ["v3-sharded", "v3-delta-blosc-under-gzip"])
def test_verify_asks_the_server_for_each_input_unit_once(tmp_path: Path, cli, layout: str) -> None:
    """h60f: verify checks each input unit it compares (a shard's index; a Blosc frame under
    gzip, of a chain only Zarr decodes) from the bytes it reads, then had zarr-python read
    the region from the store again: every unit fetched twice (and decoded twice, gzip
    and all, where the check decodes). It now reads each once: zarr-python reads the region
    from the bytes the check read, under the array's own chain, bit for bit as before."""
    import numcodecs.zarr3
    from zarr.codecs import BloscCodec, GzipCodec

    x = np.arange(ROWS * COLS, dtype="f4").reshape(ROWS, COLS) / 7
    with warnings.catch_warnings():  # numcodecs.* codecs are not in the spec
        warnings.simplefilter("ignore")
        if layout == "v3-sharded":
            kw: dict[str, Any] = {"shards": (32, COLS)}
        else:
            kw = {
                "filters": [numcodecs.zarr3.Delta(dtype="<f4")],
                "compressors": [BloscCodec(cname="lz4"), GzipCodec()],
            }
        z = zarr.create_array(
            str(tmp_path / "in.zarr"), shape=x.shape, dtype="f4", chunks=(16, COLS), **kw
        )
        z[...] = x
    units = sorted(
        p.relative_to(tmp_path).as_posix()
        for p in (tmp_path / "in.zarr" / "c").rglob("*")
        if p.is_file()
    )
    assert len(units) == (2 if layout == "v3-sharded" else 4), units
    with serving(tmp_path) as server:
        cfg = write_config(
            tmp_path, f"{server.url}/in.zarr", tmp_path / "out.zarr", chunking={"block": [32, COLS]}
        )
        rc, _, err = cli("run", cfg)
        assert rc == 0, err
        log = tmp_path / "requests.log"
        server.set(log=str(log))
        rc, out, err = cli("verify", "--all", cfg)
        assert rc == 0 and "mismatched     0" in out, out + err
        requests = [line.split() for line in log.read_text().splitlines()]
        asked = [path.lstrip("/") for method, path in requests if method == "GET"]
        got = {u: sum(1 for a in asked if a.split("?")[0] == u) for u in units}
        assert got == dict.fromkeys(units, 1), got


def test_an_identity_without_listings_is_the_listing_s_and_sees_a_unit_appear(
    tmp_path: Path,
) -> None:
    """The identity of an input its server does not list is the one a listing of the same
    files gives (a server that stops listing between a run and its resume is the same
    input), every unit stamped by a HEAD; a unit that was absent (fill value) and is written
    since changes it, as it changes a listing."""
    from pipeline.planning.plan import identify_store
    from pipeline.store.location import Location

    _sparse(tmp_path / "in.zarr", 3)
    with serving(tmp_path) as server:
        loc = Location.of(f"{server.url}/in.zarr")
        listed = identify_store(loc, "")
        assert listed.unstamped is None
        for status in (403, 404):
            server.set(folders=status)
            assert identify_store(loc, "") == listed
        time.sleep(1.1)  # Last-Modified counts whole seconds: only the new unit may differ
        zarr.open_array(str(tmp_path / "in.zarr"), mode="r+")[2 * CHUNK : 3 * CHUNK] = 7
        server.set(folders=403)
        unlisted = identify_store(loc, "")
        assert unlisted.unstamped is None and unlisted.identity != listed.identity
        server.set()
        assert identify_store(loc, "") == unlisted
        server.set(folders=403, stamps=False)
        why = identify_store(loc, "").unstamped
        assert why is not None and "no change stamp" in why, why


@pytest.mark.parametrize("stamps", [True, False], ids=["last-modified", "no-stamps"])
def test_resume_of_an_unlisted_input_written_since_is_refused(
    tmp_path: Path, cli, stamps: bool
) -> None:
    """An interrupted run of an input whose server lists no folders: where the server sends
    no stamps, its resume is refused since nothing could show a rewrite; a unit that was
    absent (fill value) and is written since is a changed input either way (a new key of
    the grid is there); `--overwrite` computes the new values."""
    x = _sparse(tmp_path / "in.zarr", 2)
    with serving(tmp_path, folders=403) as server:
        cfg = _config(tmp_path, server.url)
        server.set(folders=403, stamps=stamps, fail={f"in.zarr/{ROWS // CHUNK - 1}.0": 500})
        rc, _, err = cli("run", cfg)
        assert rc == 1, err
        server.set(folders=403, stamps=stamps)
        if not stamps:
            e = refused("run", cfg, "--resume")
            assert isinstance(e, OutputError) and e.status == "incomplete"
            assert "no change stamp" in e.unstamped and "--overwrite" in str(e)
        x[2 * CHUNK : 3 * CHUNK] = 7
        zarr.open_array(str(tmp_path / "in.zarr"), mode="r+")[2 * CHUNK : 3 * CHUNK] = 7
        e = refused("run", cfg, "--resume")
        assert isinstance(e, OutputError) and e.status == "incomplete"
        assert e.changed == ["input.data"], e
        rc, _, err = cli("run", cfg, "--overwrite")
        assert rc == 0, err
        got = zarr.open_array(str(tmp_path / "out.zarr"), mode="r")[...]
        assert got.tobytes() == reference(x).tobytes()


def test_a_listing_the_server_refuses_is_one_line_naming_the_fix(tmp_path: Path) -> None:
    """Where a listing is needed and the server refuses it (HTTP 403), the error is a
    ListingError naming the store, the status and the fix, not aiohttp's bare error."""
    from pipeline.errors import ListingError
    from pipeline.store.location import Location

    _sparse(tmp_path / "in.zarr", 2)
    with serving(tmp_path, folders=403) as server:
        loc = Location.of(f"{server.url}/in.zarr")
        for call in (
            lambda: loc.list(""),
            lambda: loc.file_sizes(""),
            lambda: loc.stamped_files(""),
        ):
            with pytest.raises(ListingError) as info:
                call()
            e = info.value
            assert e.store == loc.url and e.failure == "HTTP 403 Forbidden", e
            assert "autoindex" in str(e) and "\n" not in str(e)
        server.set(folders=404)  # as no such folder: nothing listed
        assert loc.list("") == [] and loc.file_sizes("") == {}


@pytest.mark.parametrize("status", [401, 403])
def test_a_listing_refused_for_access_says_so_in_its_one_line(
    tmp_path: Path, cli, status: int
) -> None:
    """A listing refused with 401 (no credentials) had been worded as a server without folder
    listings ("enable folder listings on it (nginx: `autoindex on`)"), which no listing
    setting fixes: a 401 names credentials, and only them; a 403 (no permission, or a server
    without listings: nginx answers 403) names both. In `Location`'s errors, and in the one
    line of `plan` and `run` of a Dataset without consolidated metadata, whose group xarray
    reads from its listing."""
    from pipeline.errors import ListingError
    from pipeline.store.location import Location

    _dataset(tmp_path / "in.zarr", 2, consolidated=False)

    def says_access(line: str) -> None:
        assert "\n" not in line and f"HTTP {status} " in line, line
        assert "credentials" in line and "storage_options" in line, line
        if status == 401:
            assert "without credentials" in line and "autoindex" not in line, line
        else:
            assert "permission" in line and "autoindex" in line, line

    with serving(tmp_path, folders=status) as server:
        url = f"{server.url}/in.zarr"
        loc = Location.of(url)
        for call in (lambda: loc.list(""), lambda: loc.stamped_files("")):
            with pytest.raises(ListingError) as info:
                call()
            assert info.value.failure.startswith(f"HTTP {status} "), info.value
            says_access(str(info.value))
        sections = {"chunking": {"block": [CHUNK, COLS]}, "input": {"store": url, "array": "v"}}
        cfg = write_config(tmp_path, url, tmp_path / "out.zarr", **sections)
        for command in ("plan", "run"):
            rc, _, err = cli(command, cfg)
            assert rc == 1
            line = one_line_error(err)
            says_access(line)
            assert url in line and "output.array: ''" in line, line
        assert not (tmp_path / "out.zarr").exists()


@pytest.mark.parametrize("status", [403, 404])
def test_a_dataset_whose_server_lists_no_folders_is_one_line_or_the_variable_alone(
    tmp_path: Path, cli, status: int
) -> None:
    """An input variable in an xarray Dataset without consolidated metadata on a server that
    lists no folders: xarray reads the group's members from a listing, so writing the Dataset
    around the output is refused at plan time in one line naming the fixes (a 404 listing
    had read as a group without its coordinates, and the output lost them silently); with
    `output.array: ''` the variable alone is computed, bit for bit."""
    _dataset(tmp_path / "in.zarr", 2, consolidated=False)
    with serving(tmp_path, folders=status) as server:
        url, sections, cfg = _variable_config(tmp_path, server.url)
        for command in ("plan", "run"):
            rc, _, err = cli(command, cfg)
            assert rc == 1
            line = one_line_error(err)
            assert url in line and "output.array: ''" in line and "autoindex" in line, line
            assert "zarr.consolidate_metadata" in line, line
            # the server's own answer, not a listing "that lacks" a member (review)
            assert f"HTTP {status}" in line if status != 404 else "a 404" in line, line
            assert "its listing lacks" not in line, line
        assert not (tmp_path / "out.zarr").exists()
        cfg = write_config(tmp_path, url, tmp_path / "out.zarr", **sections, output={"array": ""})
        rc, _, err = cli("run", cfg)
        assert rc == 0, err
        read = zarr.open_array(url, path="v", mode="r")[...]
        got = zarr.open_array(str(tmp_path / "out.zarr"), mode="r")[...]
        assert got.tobytes() == reference(read).tobytes()


def _variable_config(tmp_path: Path, served: str) -> tuple[str, dict[str, Any], Path]:
    """The URL of ``in.zarr`` at the server ``served``, the config sections that read its
    variable ``v`` in blocks of CHUNK rows, and a config of them writing ``out.zarr`` (a
    Dataset output)."""
    url = f"{served}/in.zarr"
    sections = {"chunking": {"block": [CHUNK, COLS]}, "input": {"store": url, "array": "v"}}
    return url, sections, write_config(tmp_path, url, tmp_path / "out.zarr", **sections)


def _dataset(path: Path, zarr_format: int, consolidated: bool = True) -> Any:
    """An xarray Dataset written to ``path`` as ``ds.to_zarr`` writes it (consolidated by
    default): the variable ``v`` (y, x) in chunks of CHUNK rows, its dimension coordinates
    (``x`` in two chunks), a second variable ``w`` and group attributes. Returns it."""
    import xarray as xr

    x = np.arange(ROWS * COLS, dtype="f4").reshape(ROWS, COLS) - 1000.5
    ds = xr.Dataset(
        {"v": (("y", "x"), x, {"units": "K"}), "w": (("y",), np.ones(ROWS))},
        coords={"y": ("y", np.arange(ROWS) * 0.5, {"axis": "Y"}), "x": np.arange(COLS) * 2},
        attrs={"title": "served"},
    )
    encoding = {"v": {"chunks": (CHUNK, COLS)}, "x": {"chunks": (COLS // 2,)}}
    with warnings.catch_warnings():  # zarr: v3 consolidated metadata is not in the spec yet
        warnings.simplefilter("ignore", UserWarning)
        ds.to_zarr(
            path, mode="w", zarr_format=zarr_format, consolidated=consolidated, encoding=encoding
        )
    return ds


@pytest.mark.parametrize("zarr_format", [2, 3], ids=["v2", "v3"])
def test_the_coordinates_identity_without_listings_is_the_listing_s(
    tmp_path: Path, zarr_format: int
) -> None:
    """The identity of the coordinates a Dataset output carries (`frame_identity`) was taken
    from a listing of each coordinate's folder: a server that lists no folders refused it
    (403: the run failed after its plan), or listed nothing (404: the coordinates were left
    out, and a rewrite of their values went unseen). Now it is taken from the keys their
    metadata implies, as for the input's own identity: the listing's, and it changes with a
    coordinate's values."""
    from pipeline.planning.plan import frame_identity
    from pipeline.planning.variable import Carried
    from pipeline.store.datasets import Variable
    from pipeline.store.location import Location

    _dataset(tmp_path / "in.zarr", zarr_format)
    kept = Carried(variable=Variable("", "v", ("y", "x"), coords=("y", "x")), frame=True)
    with serving(tmp_path) as server:
        loc = Location.of(f"{server.url}/in.zarr")
        listed = frame_identity(loc, kept)
        for status in (403, 404):
            server.set(folders=status)
            assert frame_identity(loc, kept) == listed, status
        zarr.open_array(str(tmp_path / "in.zarr"), path="x", mode="r+")[:4] = -1
        for status in (403, 404):
            server.set(folders=status)
            assert frame_identity(loc, kept) != listed, status


@pytest.mark.parametrize("zarr_format", [2, 3], ids=["v2", "v3"])
@pytest.mark.parametrize("status", [403, 404])
def test_a_consolidated_dataset_whose_server_lists_no_folders_is_written_whole(
    tmp_path: Path, cli, status: int, zarr_format: int
) -> None:
    """A variable of a Dataset that `ds.to_zarr` wrote (consolidated metadata, v2 and v3) on a
    server that lists no folders: a Dataset output was refused, its line saying xarray needs
    the listing, though xarray reads the members from the consolidated copy. Now the members
    are those the copy lists, each read from its own metadata: the output holds the computed
    variable bit for bit and the coordinates and group attributes as xarray reads them from
    the input; `verify` passes, a resume has nothing to do, and so for the variable alone
    (`output.array: ''`). The consolidated copy is still checked against each member's own
    metadata: a stale attribute xarray decodes by, and a coordinate added since and named by
    the variable, are refused as over a listing."""
    import xarray as xr

    _dataset(tmp_path / "in.zarr", zarr_format)
    want = xr.open_zarr(tmp_path / "in.zarr").load()  # as xarray reads the input
    with serving(tmp_path, folders=status) as server:
        url, sections, cfg = _variable_config(tmp_path, server.url)
        for command in ("plan", "run"):
            rc, _, err = cli(command, cfg)
            assert rc == 0, err
        got = xr.open_zarr(tmp_path / "out.zarr").load()
        computed = reference(want["v"].values)
        assert got["v"].dtype == computed.dtype and got["v"].values.tobytes() == computed.tobytes()
        assert set(got.data_vars) == {"v"} and got.attrs["title"] == "served"
        for c in ("y", "x"):
            assert got[c].variable.identical(want[c].variable), c
        rc, _, err = cli("verify", cfg, "--all")
        assert rc == 0, err
        rc, _, err = cli("run", cfg, "--resume")
        assert rc == 0 and "nothing to do" in err, err

        alone = write_config(
            tmp_path, url, tmp_path / "alone.zarr", "alone.yaml", **sections, output={"array": ""}
        )
        for command in ("run", "verify"):
            rc, _, err = cli(command, alone)
            assert rc == 0, err
        got_alone = zarr.open_array(str(tmp_path / "alone.zarr"), mode="r")[...]
        assert got_alone.tobytes() == computed.tobytes()

        y = zarr.open_array(str(tmp_path / "in.zarr"), path="y", mode="r+")
        y.attrs["scale_factor"] = 2.0  # its own metadata only: the copy is stale
        rc, _, err = cli("plan", cfg)
        line = one_line_error(err)
        assert "consolidated metadata" in line and "stale" in line and "'y'" in line, line
        del y.attrs["scale_factor"]
        lat = zarr.create_array(
            str(tmp_path / "in.zarr"), name="lat", shape=(ROWS,), dtype="f8",
            zarr_format=zarr_format, dimension_names=("y",) if zarr_format == 3 else None,
            attributes={"_ARRAY_DIMENSIONS": ["y"]} if zarr_format == 2 else None,
        )  # fmt: skip
        lat[...] = 1.0
        zarr.open_array(str(tmp_path / "in.zarr"), path="v", mode="r+").attrs["coordinates"] = "lat"
        rc, _, err = cli("plan", cfg)
        line = one_line_error(err)
        assert "stale" in line and "does not list 'lat'" in line, line


@pytest.mark.parametrize(
    ("consolidated", "status", "added"),
    [
        (False, 404, ("lat", "lon")),
        (True, 403, ("lat", "lon")),
        (True, 404, ("lat", "lon")),
        (True, 404, ("lat",)),
    ],
    ids=["unconsolidated-404", "consolidated-403", "consolidated-404", "consolidated-one"],
)
def test_members_a_server_does_not_list_are_each_named(
    tmp_path: Path, consolidated: bool, status: int, added: tuple[str, ...]
) -> None:
    """h85b, whose lines no test had reached (h86c): a Dataset on a server that lists no
    folders, whose coordinates the variable names are found by their keys: where the group
    has no consolidated metadata and the server answers its folder with no listing (404), or
    where it has, and coordinates were added since it was consolidated, the line had named
    the first member alone, and its fix met the next. Each is named (three, then how many
    more), "which is" or "which are" as they are, in the line and its ``failure``; the
    ListingError comes before anything is written (the frame is written into memory)."""
    from pipeline.errors import ListingError
    from pipeline.store.datasets import Variable, frame_failure
    from pipeline.store.location import Location

    _dataset(tmp_path / "in.zarr", 3, consolidated=consolidated)
    for name in added:  # each named by the variable, after any consolidation
        a = zarr.create_array(
            str(tmp_path / "in.zarr"), name=name, shape=(ROWS,), dtype="f8",
            dimension_names=("y",),
        )  # fmt: skip
        a[...] = 1.0
    coords = ("y", "x", *added)
    var = Variable("", "v", ("y", "x"), coords=coords)
    with serving(tmp_path, folders=status) as server:
        store = Location.of(f"{server.url}/in.zarr").zarr_store(read_only=True)
        with pytest.raises(ListingError) as caught:
            frame_failure(store, var)
    line = str(caught.value)
    assert "\n" not in line, line
    if not consolidated:  # none of them listed: every member found by its key is named
        said = "'y', 'x', 'lat' and 1 more"
        assert f"no listing that names {said}, which are there" in line, line
        assert caught.value.failure == f"{said} not listed", caught.value.failure
        assert "consolidate the group's metadata" in line, line
        return
    said = ", ".join(repr(n) for n in added)
    which = "which is" if len(added) == 1 else "which are"
    assert f"read in place of a listing, lacks {said}, {which} there" in line, line
    assert caught.value.failure == f"{said} not in the consolidated metadata", caught.value
    assert "consolidate the input's metadata again" in line, line


@pytest.mark.parametrize("folders", [None, 404], ids=["listing", "no-listing"])
def test_a_name_a_url_reads_otherwise_is_refused_over_http_as_such(
    tmp_path: Path, cli, folders
) -> None:
    """An array or a carried coordinate whose name holds '?', '#' or a '%' escape: over
    HTTP its URL is another (xarray read such a variable as its fill value). The refusal had
    named another cause ("no Zarr array", "does not exist", a consolidated copy "stale" with a
    coordinate it lists) (review); it names the character and the fix, and the same stores
    run from a local folder, bit for bit, as does the variable alone where only a coordinate's
    name is the problem."""
    import xarray as xr

    values = np.arange(32, dtype="f4").reshape(4, 8)
    with warnings.catch_warnings():  # zarr: v3 consolidated metadata is not in the spec yet
        warnings.simplefilter("ignore", UserWarning)
        for name in ("v?1", "v%41"):
            xr.Dataset({name: (("y", "x"), values)}).to_zarr(tmp_path / f"{name[1]}.zarr")
        coords = {"la#t": ("y", np.arange(4.0))}
        xr.Dataset({"v": (("y", "x"), values)}, coords=coords).to_zarr(
            tmp_path / "c.zarr", zarr_format=2
        )
        unread = [
            xr.Dataset({"t": (("time", "x#1"), values)}, coords={"time": np.arange(4)}),
            xr.Dataset({"t": (("y", "x"), values, {"ancillary_variables": "qc#flag"})}),
        ]
        for i, ds in enumerate(unread):
            ds.to_zarr(tmp_path / f"unread{i}.zarr")
    cases = [("?.zarr", "v?1", {}, "'?'"), ("%.zarr", "v%41", {}, "'%41'")]
    cases.append(("c.zarr", "v", {}, "'#'"))
    control = {} if folders is None else {"folders": folders}
    with serving(tmp_path, **control) as server:
        for i, (store, array, output, char) in enumerate(cases):
            url = f"{server.url}/{store}"
            out = {"store": str(tmp_path / f"out{i}.zarr"), **output}
            cfg = write_config(tmp_path, url, "", input={"array": array}, output=out)
            for command in ("plan", "run"):
                rc, _, err = cli(command, cfg)
                line = one_line_error(err)
                assert rc == 1 and f"holds {char}" in line and "local folder" in line, line
            local = write_config(tmp_path, tmp_path / store, "", input={"array": array}, output=out)
            rc, _, err = cli("run", local)
            assert rc == 0, err
            got = zarr.open_array(str(tmp_path / f"out{i}.zarr"), path=output.get("array", array))
            assert got[...].tobytes() == reference(values).tobytes()
        # names no one reads are not refused: a dimension without a coordinate, a CF
        # reference to a variable the group does not hold (review: both were)
        for i, ds in enumerate(unread):
            store = f"unread{i}.zarr"
            out = {"store": str(tmp_path / f"unread-out{i}.zarr")}
            cfg = write_config(
                tmp_path, f"{server.url}/{store}", "", input={"array": "t"}, output=out
            )
            rc, _, err = cli("run", cfg)
            assert rc == 0, err
            got = xr.open_zarr(tmp_path / f"unread-out{i}.zarr")
            assert got["t"].dims == ds["t"].dims
            assert got["t"].values.tobytes() == reference(values).tobytes()
        alone = {"store": str(tmp_path / "alone.zarr"), "array": ""}
        cfg = write_config(tmp_path, f"{server.url}/c.zarr", "", input={"array": "v"}, output=alone)
        rc, _, err = cli("run", cfg)
        assert rc == 0, err
        assert zarr.open_array(str(tmp_path / "alone.zarr"))[...].tobytes() == (
            reference(values).tobytes()
        )


# -- a store URL with a query (a signed URL, an Azure SAS token) ------------------------------

SECRET = "s3cr3t"


@pytest.mark.parametrize(
    "store, output",
    [
        ("{url}/in.zarr?sig=" + SECRET, ""),
        ("zip::{url}/in.zip?sv=1&sig=" + SECRET, ""),
        ("{url}/in.zarr", "{url}/out.zarr?sig=" + SECRET),
    ],
    ids=["input", "chained-input", "output"],
)
def test_a_store_url_with_a_query_is_refused_in_one_line_that_keeps_it_secret(
    tmp_path: Path, cli, store: str, output: str
) -> None:
    """An HTTP store URL with a query: the keys were joined after the query
    (``in.zarr?sig=X/zarr.json``, the server's folder page read as metadata), and the run
    failed with "JSONDecodeError", the token in the line. Now `plan` and `run` refuse it before
    anything is read, in one line naming storage_options' ``params`` (under the ``http`` key
    in a chain) and never the query's values; an output URL with a query alike."""
    _ramp(tmp_path)
    with serving(tmp_path) as server:
        out = output.format(url=server.url) or str(tmp_path / "out.zarr")
        cfg = write_config(tmp_path, store.format(url=server.url), out)
        for command in ("plan", "run"):
            rc, _, err = cli(command, cfg)
            line = one_line_error(err)
            assert rc == 1 and SECRET not in err, line
            assert "query" in line and "?..." in line, line
            if output:
                assert "no output over HTTP" in line and "output.store" in line, line
            elif store.startswith("zip"):
                assert "storage_options: {http: {params: {sv: ..., sig: ...}}}" in line, line
            else:
                assert "storage_options: {params: {sig: ...}}" in line, line
        assert not (tmp_path / "out.zarr").exists()


def test_query_parameters_in_storage_options_reach_every_request_and_stay_secret(
    tmp_path: Path, cli
) -> None:
    """The fix the refusal names, end to end, with a server that answers 403 to any request
    without the token: metadata, chunks, folder listings and the identity's HEADs all carry
    ``params``; the output is bit for bit what zarr-python reads; the summary masks every
    parameter (a SAS token's ``sig`` had been written out: only option names holding "key",
    "token", "secret"... were masked)."""
    x = _sparse(tmp_path / "in.zarr", 3)
    token = {"sig": SECRET}
    with serving(tmp_path, token=token) as server:
        url = f"{server.url}/in.zarr"
        read = zarr.open_array(url, mode="r", storage_options={"params": token})[...]
        assert np.array_equal(read, x)
        summary = tmp_path / "summary.json"
        cfg = write_config(
            tmp_path,
            url,
            tmp_path / "out.zarr",
            input={"storage_options": {"params": token}},
            chunking={"block": [16, COLS]},
        )
        rc, _, err = cli("run", cfg, "--summary-json", summary)
        assert rc == 0, err
        assert "not checked" not in err and SECRET not in err, err
        got = zarr.open_array(str(tmp_path / "out.zarr"), mode="r")[...]
        assert got.tobytes() == reference(read).tobytes()
        assert SECRET not in summary.read_text()
        written = (tmp_path / "out.zarr").rglob("*.json")  # the output's metadata, run record
        assert all(SECRET not in p.read_text(errors="ignore") for p in written)
        rc, _, err = cli("verify", cfg, "--all")
        assert rc == 0, err
        rc, _, err = cli("run", cfg, "--resume")
        assert rc == 0 and "nothing to do" in err, err
        server.set(token={"sig": "another"})  # the token refused: naming no token
        rc, _, err = cli("run", cfg, "--overwrite")
        assert SECRET not in err, err
        assert rc == 1, err


@pytest.mark.parametrize(
    "control, options, answer",
    [
        ({"token": {"sig": SECRET}}, None, "HTTP 403"),
        ({"token": {"sig": SECRET}}, {"params": {"sig": "another"}}, "HTTP 403"),
        ({"folders": 404, "fail": {"in.zarr/zarr.json": 403}}, None, "HTTP 403"),
        ({"fail": {"in.zarr/zarr.json": 403}}, None, "HTTP 403"),
        ({"fail": {"in.zarr/zarr.json": 500}}, None, "HTTP 500"),
    ],
    ids=["no-token", "wrong-token", "unlisted-metadata-403", "metadata-403", "metadata-500"],
)
def test_a_store_that_refuses_its_metadata_is_not_called_absent(
    tmp_path: Path, cli, control: dict, options: dict | None, answer: str
) -> None:
    """A store that answers 403 for its metadata (a signed URL's token missing or wrong; a
    server without folder listings refusing the array's metadata) was "input store ... does
    not exist: fix input.store", whose fix is elsewhere, and one that refused or failed only
    the metadata's GET "cannot open ...: ClientResponseError: 403, message=..., url=...": plan
    and run now say what it answered and what to do (give access: the credentials in
    input.storage_options; or the server answering again), and never the token."""
    _sparse(tmp_path / "in.zarr", 3)
    with serving(tmp_path, **control) as server:
        section = {"storage_options": options} if options else {}
        cfg = write_config(tmp_path, f"{server.url}/in.zarr", tmp_path / "out.zarr", input=section)
        for command in ("plan", "run"):
            rc, _, err = cli(command, cfg)
            assert rc == 1, err
            line = err.strip().splitlines()[-1]
            assert line.startswith("error: cannot read input store"), err
            assert answer in line, err
            fix = "input.storage_options" if answer == "HTTP 403" else "answering again"
            assert fix in line, err
            assert "does not exist" not in err and SECRET not in err, err
    assert not (tmp_path / "out.zarr").exists()


@pytest.mark.parametrize("array", ["", "v"])
def test_a_store_whose_server_does_not_answer_is_not_called_absent(
    tmp_path: Path, cli, array: str
) -> None:
    """An HTTP input whose server is down (nothing listens at its port): plan and run had
    said "input store ... does not exist: fix input.store", the connection refused taken for
    a folder where the metadata belongs; they say that it could not be read, and to make the
    store reachable, before anything is written."""
    _sparse(tmp_path / "in.zarr", 3)
    with serving(tmp_path) as server:
        url = server.url
    # the server has stopped: nothing listens at its port
    cfg = write_config(tmp_path, f"{url}/in.zarr", tmp_path / "out.zarr", input={"array": array})
    for command in ("plan", "run"):
        rc, _, err = cli(command, cfg)
        line = err.strip().splitlines()[-1]
        assert rc == 1 and line.startswith("error: cannot read input store"), err
        assert "reachable" in line and "does not exist" not in err, err
    assert not (tmp_path / "out.zarr").exists()


@pytest.mark.parametrize("failing", ["in.zarr/zarr.json", "in.zarr/c/1/0"])
def test_a_failing_request_never_shows_the_query_parameters(
    tmp_path: Path, cli, failing: str
) -> None:
    """A server that fails (HTTP 500) on a request that carries storage_options' ``params``
    (a signed URL's token): aiohttp's error quotes the URL it asked for, query and all, and
    `plan`, `run` and `verify` printed it (``cannot open ...: ClientResponseError: 500, ...,
    url='.../zarr.json?sig=...'``); now every line shows the query as ``?...``."""
    _sparse(tmp_path / "in.zarr", 3)
    with serving(tmp_path, token={"sig": SECRET}, fail={failing: 500}) as server:
        cfg = write_config(
            tmp_path,
            f"{server.url}/in.zarr",
            tmp_path / "out.zarr",
            input={"storage_options": {"params": {"sig": SECRET}}},
            cluster={"workers": 2, "threads_per_worker": 2},
        )
        for command in ("plan", "run", "verify"):
            rc, out, err = cli(command, cfg)
            assert SECRET not in out + err, (command, out + err)
            if command == "run" or failing.endswith("zarr.json"):
                assert rc == 1, (command, err)


# -- refused before anything is read: caching layers, fragments, misplaced options ----------


def _refused_unread(tmp_path: Path, cli, server, cfg: Path, *words: str) -> str:
    """Assert that `plan`, `run`, `run --dry-run` and `verify` of ``cfg`` each exit 1 with one
    line holding ``words`` and never SECRET, that nothing was written (no output, no cache
    folder) and that no request reached ``server``; the line."""
    log = tmp_path / "requests.log"
    server.set(log=str(log))
    line = ""
    for args in (("plan",), ("run",), ("run", "--dry-run"), ("verify", "--all")):
        rc, out, err = cli(*args, cfg)
        line = one_line_error(err)
        assert rc == 1 and SECRET not in out + err, (args, err)
        assert all(w in line for w in words), (args, line)
    assert not (tmp_path / "out.zarr").exists()
    assert not (tmp_path / "cache").exists()
    assert not log.exists() or not log.read_text(), log.read_text()
    return line


def _options_refused_unread(tmp_path: Path, cli, options: dict, *words: str) -> None:
    """Serve a sparse input and assert (``_refused_unread``) that a config reading it with
    ``options`` as its input's storage_options is refused in one line holding ``words``,
    unread. Options chained under ``http`` are given to a ``zip::`` URL over the server (an
    empty file, never read: refused before)."""
    _sparse(tmp_path / "in.zarr", 2)
    with serving(tmp_path) as server:
        store = server.url + "/in.zarr"
        if "http" in options:
            (tmp_path / "in.zip").write_bytes(b"")  # never read: refused before
            store = "zip::" + server.url + "/in.zip"
        cfg = write_config(
            tmp_path, store, tmp_path / "out.zarr", input={"storage_options": options}
        )
        _refused_unread(tmp_path, cli, server, cfg, *words)


@pytest.mark.parametrize("cache", ["simplecache", "filecache", "blockcache", "cached"])
@pytest.mark.parametrize("output", [False, True], ids=["input", "output"])
def test_a_caching_layer_is_refused_before_anything_is_read_or_written(
    tmp_path: Path, cli, cache: str, output: bool
) -> None:
    """fsspec's caching layers (``simplecache::http://...``, any ``CachingFileSystem``) keep
    the bytes of an earlier run without checking that the input changed: after the served
    input was rewritten, ``run --overwrite`` computed from the stale cached chunks, recorded
    the input's new identity and marked the output complete, and ``verify --all`` passed,
    reading through the same cache (``run --dry-run`` filled the cache folder). Now every
    command refuses such a store, input or output, in one line naming the layer, why, and the
    URL without it, before any request or write."""
    _sparse(tmp_path / "in.zarr", 2)
    with serving(tmp_path) as server:
        layered = f"{cache}::{server.url}/in.zarr"
        options = {cache: {"cache_storage": str(tmp_path / "cache")}, "http": {"params": {}}}
        if output:
            cfg = write_config(
                tmp_path,
                f"{server.url}/in.zarr",
                f"{cache}::{tmp_path / 'out.zarr'}",
                output={"storage_options": {cache: options[cache]}},
            )
        else:
            cfg = write_config(
                tmp_path, layered, tmp_path / "out.zarr", input={"storage_options": options}
            )
        where = "output.store" if output else "input.store"
        plain = str(tmp_path / "out.zarr") if output else f"{server.url}/in.zarr"
        line = _refused_unread(
            tmp_path, cli, server, cfg, where, f"caching layer '{cache}::'", "stale chunks",
            f"without it, {plain} (", f"'{cache}' key dropped",
        )  # fmt: skip
        assert "{http: {...}}" in line or output, line


def test_a_caching_layer_is_refused_with_a_query_secret(tmp_path: Path, cli) -> None:
    """A caching layer over a URL with a query (a signed URL): refused as a caching layer
    first, the query never said, and the URL left to give shown as ``?...``."""
    _sparse(tmp_path / "in.zarr", 2)
    with serving(tmp_path, token={"sig": SECRET}) as server:
        cfg = write_config(
            tmp_path,
            f"simplecache::{server.url}/in.zarr?sig={SECRET}",
            tmp_path / "out.zarr",
            input={"storage_options": {"http": {"params": {"sig": SECRET}}}},
        )
        _refused_unread(
            tmp_path, cli, server, cfg, "caching layer 'simplecache::'",
            f"without it, {server.url}/in.zarr?... (",
        )  # fmt: skip


def test_location_of_refuses_a_caching_layer() -> None:
    """The stores refuse one too (an API caller's Location, a worker's): a StoreError."""
    from pipeline.errors import StoreError
    from pipeline.store.location import Location

    with pytest.raises(StoreError, match="caching layer 'filecache::'"):
        Location.of("filecache::http://127.0.0.1:1/in.zarr")
    with pytest.raises(StoreError, match="fragment"):
        Location.of("http://127.0.0.1:1/in.zarr#x")
    with pytest.raises(StoreError, match="top level of storage_options"):
        Location.of("http://127.0.0.1:1/in.zarr", {"http": {"params": {"a": "b"}}})


@pytest.mark.parametrize("output", [False, True], ids=["input", "output"])
def test_a_store_url_with_a_fragment_is_refused_in_one_line_that_keeps_it_secret(
    tmp_path: Path, cli, output: bool
) -> None:
    """``http://host/in.zarr#frag``: a URL's fragment is never sent to the server, so the
    store's keys followed it and the server was asked for ``in.zarr`` alone: a zarr warning,
    then "cannot open ...#frag/: JSONDecodeError". Now refused in one line, before any
    request, showing ``#...`` and never what follows the '#'."""
    _sparse(tmp_path / "in.zarr", 2)
    with serving(tmp_path) as server:
        if output:
            cfg = write_config(tmp_path, f"{server.url}/in.zarr", f"{server.url}/out.zarr#{SECRET}")
        else:
            cfg = write_config(tmp_path, f"{server.url}/in.zarr#{SECRET}", tmp_path / "out.zarr")
        line = _refused_unread(tmp_path, cli, server, cfg, "fragment", "#...")
        assert ("no output over HTTP" in line) == output, line


@pytest.mark.parametrize(
    "store, options, words",
    [
        ("{url}/in.zarr", {"http": {"params": {"sig": SECRET}}}, ["no chain", "{params: ...}"]),
        ("{url}/in.zarr", {"s3": {"anon": True}}, ["no chain", "top level"]),
        ("zip::{url}/in.zip", {"https": {"params": {"sig": SECRET}}}, ["does not chain", "'http'"]),
    ],
    ids=["http-options-on-http", "s3-options-on-http", "https-options-on-zip-http"],
)
def test_options_for_a_file_system_the_url_does_not_chain_are_refused(
    tmp_path: Path, cli, store: str, options: dict, words: list[str]
) -> None:
    """``store: http://host/in.zarr`` with ``storage_options: {http: {params: ...}}`` failed
    with "error: RuntimeError: Loop is not running" (fsspec passed ``http=`` on to aiohttp):
    options under a protocol's name are for the part of a '::' chain of that very name. Now
    refused in one line, at input.storage_options, naming the fix, before any request."""
    _sparse(tmp_path / "in.zarr", 2)
    with serving(tmp_path) as server:
        cfg = write_config(
            tmp_path,
            store.format(url=server.url),
            tmp_path / "out.zarr",
            input={"storage_options": options},
        )
        _refused_unread(tmp_path, cli, server, cfg, "input.storage_options", *words)


@pytest.mark.parametrize(
    "options, words",
    [
        ({"bogus_option": SECRET}, ["make no file system", "take no option 'bogus_option'"]),
        ({"client_kwargs": {"bogus_option": SECRET}}, ["ClientSession", "'bogus_option'"]),
        ({"asynchronous": True}, ["asynchronous", "remove asynchronous"]),
        ({"http": {"asynchronous": True}}, ["asynchronous", "remove asynchronous"]),
        ({"headers": f"Authorization: {SECRET}"}, ["headers is not a mapping"]),
        ({"client_kwargs": {"auth": ["user", SECRET]}}, ["BasicAuth", "the store's URL"]),
        ({"timeout": SECRET}, ["timeout is not a number"]),
    ],
    ids=[
        "request-option",
        "session-option",
        "asynchronous",
        "chained-asynchronous",
        "headers",
        "auth",
        "timeout",
    ],
)
def test_http_options_that_fail_on_the_first_request_are_one_config_line(
    tmp_path: Path, cli, options: dict, words: list[str]
) -> None:
    """An option fsspec's HTTP file system takes but aiohttp does not (it passes the
    unknown ones to every request, ``client_kwargs`` to its session) and ``asynchronous:
    true`` (a file system for code in an event loop) were taken where the file system was
    made and failed on its first request: ``error: TypeError: ClientSession._request() got
    an unexpected keyword argument ...`` and ``RuntimeError: Loop is not running``; so were
    values aiohttp refuses only as it sends (headers that are no mapping, an ``auth`` that is
    not its BasicAuth object, which YAML cannot make, a timeout that is no number). Now one
    line at input.storage_options, before any request, its values unsaid."""
    _options_refused_unread(tmp_path, cli, options, "input.storage_options", *words)


@pytest.mark.parametrize(
    "options, key",
    [
        ({"ssl": SECRET}, "input.storage_options.ssl"),
        (
            {"client_kwargs": {"trust_env": "false"}},
            "input.storage_options.client_kwargs.trust_env",
        ),
        ({"simple_links": "false"}, "input.storage_options.simple_links"),
        ({"http": {"allow_redirects": "no"}}, "input.storage_options.http.allow_redirects"),
    ],
    ids=["ssl", "session-trust_env", "simple_links", "chained-allow_redirects"],
)
def test_http_boolean_options_given_as_text_are_one_config_line(
    tmp_path: Path, cli, options: dict, key: str
) -> None:
    """Options that fsspec's HTTP file system, aiohttp's requests or its session take as
    true or false, given as text (``ssl: 'false'``, quoted): each tests them for truth, so
    'false' was true (``trust_env``, ``allow_redirects``), or aiohttp refused ``ssl`` only
    as it sent. One line naming the key and the fix (a YAML boolean), before any request,
    the value unsaid, at the option's line (``urls.text_bool_option``)."""
    _options_refused_unread(tmp_path, cli, options, f"{key}: given as text", "YAML boolean")


def test_aiohttp_objects_in_a_mapping_config_are_taken(tmp_path: Path) -> None:
    """A config given to the API as a mapping may hold what aiohttp takes besides YAML's
    kinds: ``headers`` as a ``CIMultiDict``, a ``timeout`` as its ``ClientTimeout``. The
    checks of the values aiohttp refuses only as it sends (245e3dc) took only a dict and a
    number ("headers is not a mapping", "timeout is not a number of seconds"), and a run
    given them before those checks wrote its output, then failed making its summary
    ("PydanticSerializationError: Unable to serialize unknown type"). The run reads the input
    behind a password with those headers; its summary says neither the password nor the
    objects' contents."""
    import base64
    import json

    import aiohttp
    import yaml
    from aiohttp.typedefs import CIMultiDict

    import pipeline

    x = _ramp(tmp_path)
    token = base64.b64encode(f"user:{SECRET}".encode()).decode()
    with serving(tmp_path, basic=["user", SECRET]) as server:
        path = _config(tmp_path, server.url, cluster=WORKER_PROCESS)
        cfg = yaml.safe_load(path.read_text())
        cfg["input"]["storage_options"] = {
            "headers": CIMultiDict({"Authorization": f"Basic {token}"}),
            "timeout": aiohttp.ClientTimeout(total=60),
        }
        summary = pipeline.run(cfg, summary_json=str(tmp_path / "summary.json"))
    assert summary.status == "complete", summary.status
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "out.zarr"))[...], reference(x))
    written = (tmp_path / "summary.json").read_text()
    assert SECRET not in written and token not in written, written
    said = json.loads(written)["config"]["input"]["storage_options"]
    assert said == {"headers": "***", "timeout": "<ClientTimeout>"}, said


def test_a_refusal_on_resume_names_the_store_and_its_storage_options(tmp_path: Path, cli) -> None:
    """An input of signed URLs (its token in storage_options' ``params``) left incomplete,
    then resumed once the server takes another token: the layout read's 403 reached the
    last resort (:func:`~pipeline.errors.store_answer`), which said "a store answered HTTP
    403 Forbidden for URL?... give access to it (... the store's storage_options)": no store,
    no section, and the colon after the URL gone with its masked query. It names the input
    store and input.storage_options now, never the token, from the command line and the API
    alike."""
    import pipeline

    x = np.arange(64 * COLS, dtype=np.float32).reshape(64, COLS)
    zarr.create_array(
        store=str(tmp_path / "in.zarr"), shape=x.shape, dtype=x.dtype, chunks=(8, COLS)
    )[...] = x
    with serving(tmp_path, token={"sig": SECRET}, fail={"in.zarr/c/3/0": 500}) as server:
        cfg = write_config(
            tmp_path,
            server.url + "/in.zarr",
            tmp_path / "out.zarr",
            input={"storage_options": {"params": {"sig": SECRET}}},
            chunking={"block": [8, COLS]},
        )
        rc, _, err = cli("run", cfg)
        assert rc == 1 and "c/3/0" in err, err
        server.set(token={"sig": "another"})
        rc, out, err = cli("run", cfg, "--resume")
        line = one_line_error(err)
        assert rc == 1 and SECRET not in out + err, err
        assert f"the input store {server.url}/in.zarr answered HTTP 403" in line, line
        assert "/in.zarr/zarr.json: give access" in line, line
        assert "credentials in input.storage_options" in line, line
        with pytest.raises(pipeline.StoreError) as e:
            pipeline.run(cfg, resume=True)
        assert f"error: {e.value}" == line and e.value.setting == "input", e.value.data


def test_a_403_through_a_chain_with_top_level_options_names_the_inner_file_system_s_key(
    tmp_path: Path, cli
) -> None:
    """``zip::http://host/in.zip`` with ``storage_options: {params: {sig: ...}}``: fsspec gives
    top-level options to the chain's outermost file system (zip) alone, so the server never
    got the token and answered 403, and the line said only to give access. Now it also says
    where the HTTP file system's options go: ``{http: {params: ...}}``."""
    from zarr.storage import ZipStore

    store = ZipStore(tmp_path / "in.zip", mode="w")
    z = zarr.create_array(store=store, shape=(ROWS, COLS), dtype="f4", chunks=(CHUNK, COLS))
    z[...] = 1
    store.close()
    with serving(tmp_path, token={"sig": SECRET}) as server:
        cfg = write_config(
            tmp_path,
            f"zip::{server.url}/in.zip",
            tmp_path / "out.zarr",
            input={"storage_options": {"params": {"sig": SECRET}}},
        )
        for command in ("plan", "run"):
            rc, _, err = cli(command, cfg)
            line = one_line_error(err)
            assert rc == 1 and SECRET not in err, line
            assert "HTTP 403" in line and "{http: {params: ...}}" in line, line
    assert not (tmp_path / "out.zarr").exists()


@pytest.mark.parametrize("folders", [None, 404], ids=["listing", "no-listing"])
def test_a_listed_coordinate_a_url_reads_otherwise_is_refused_over_http(
    tmp_path: Path, cli, folders
) -> None:
    """A coordinate on the variable's dimensions that only another variable's
    ``coordinates`` or the group's ``coordinates`` lists (xarray gives it to the variable),
    whose name holds '#', '?' or a '%' escape: over HTTP it was looked for by its key, under
    another URL, not found, and left out of the output silently. It is refused in one line
    naming the coordinate, the character and the fix, as one the variable names itself; from
    a local folder it is carried."""
    import xarray as xr

    values = np.arange(32, dtype="f4").reshape(4, 8)
    cases = []
    for i, (name, lister) in enumerate([("la#t", "w"), ("la?t", ""), ("la%41t", "w")]):
        attrs = {"coordinates": name} if lister else {}
        ds = xr.Dataset(
            {
                "v": (("y", "x"), values),
                "w": (("y", "x"), values, attrs),
                name: ("y", np.arange(4.0)),
            }
        )
        store = tmp_path / f"listed{i}.zarr"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            ds.to_zarr(store, zarr_format=2)
            if not lister:  # the group's own list (xarray writes it for no variable here)
                zarr.open_group(str(store), mode="r+").attrs["coordinates"] = name
                zarr.consolidate_metadata(str(store))
            assert name in xr.open_zarr(store)["v"].coords
        cases.append((store.name, name))
    control = {} if folders is None else {"folders": folders}
    with serving(tmp_path, **control) as server:
        for i, (store, name) in enumerate(cases):
            out = {"store": str(tmp_path / f"out{i}.zarr")}
            cfg = write_config(
                tmp_path, f"{server.url}/{store}", "", input={"array": "v"}, output=out
            )
            for command in ("plan", "run"):
                rc, _, err = cli(command, cfg)
                line = one_line_error(err)
                assert rc == 1 and repr(name) in line and "local folder" in line, line
            assert not (tmp_path / f"out{i}.zarr").exists()
            local = write_config(tmp_path, tmp_path / store, "", input={"array": "v"}, output=out)
            rc, _, err = cli("run", local)
            assert rc == 0, err
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                got = xr.open_zarr(tmp_path / f"out{i}.zarr")
            assert name in got["v"].coords, name
