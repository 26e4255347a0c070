"""Credentials in a config never said or written: a password in a store URL's user part
(``http://user:password@host/in.zarr``), storage_options' ``params`` and ``headers`` of any
type, and values that would not reach the server as written. Real servers
(``tests/httpkit.py``), real zarr-python stores."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

import pipeline
from pipeline.errors import ConfigError
from tests.conftest import record_of, reference, write_config
from tests.faultkit import one_line_error
from tests.httpkit import serving

ROWS, COLS = 32, 64
SECRET = "pa55w0rdXYZ"


def _input(path: Path) -> np.ndarray:
    x = np.arange(ROWS * COLS, dtype="f4").reshape(ROWS, COLS)
    z = zarr.create_array(str(path), shape=x.shape, dtype=x.dtype, chunks=(8, COLS))
    z[...] = x
    return x


def _options_config(tmp_path: Path, options: str, store: str = "s3://b/in.zarr") -> Path:
    """``c.yaml`` in ``tmp_path``: an input ``store`` whose storage_options are the YAML text
    ``options`` (the file's line 3), squared into out.zarr there."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"input:\n  store: {store}\n  storage_options: {options}\n"
        f"output:\n  store: {tmp_path / 'out.zarr'}\nstages: [{{op: square}}]\n"
    )
    return cfg


def _plan_refused(cli: Any, cfg: Path) -> tuple[str, str]:
    """``plan CFG`` refused: exit status 1, one error line. (That line, all it said.)"""
    rc, out, err = cli("plan", cfg)
    line = one_line_error(err)
    assert rc == 1, out + err
    return line, out + err


def _nowhere(secret: str, *places: Path) -> None:
    """``secret`` in no file under ``places`` (the output, its run record, a summary)."""
    for place in places:
        files = [place] if place.is_file() else [p for p in place.rglob("*") if p.is_file()]
        for f in files:
            assert secret.encode() not in f.read_bytes(), f


def test_a_password_in_the_store_url_is_never_said_or_written(tmp_path: Path, cli) -> None:
    """``input.store: http://user:PASSWORD@host/in.zarr`` (fsspec's HTTP file system sends
    it as Basic authentication) was written whole to --summary-json (``input``,
    ``config.input.store``), the output's attributes (``pipeline.source.store``, its
    identity) and error lines ("cannot read input store http://user:PASSWORD@..."). Now
    every one shows ``user:***@``; the run reads the store with the password, bit for bit;
    verify and a resume compare the identity in the same masked form."""
    x = _input(tmp_path / "in.zarr")
    with serving(tmp_path, basic=["user", SECRET]) as server:
        url = server.url.replace("http://", f"http://user:{SECRET}@") + "/in.zarr"
        summary = tmp_path / "summary.json"
        out = tmp_path / "out.zarr"
        cfg = write_config(tmp_path, url, out, chunking={"block": [8, COLS]})
        rc, o, err = cli("plan", cfg)
        assert rc == 0 and SECRET not in o + err, o + err
        server.set(basic=["user", SECRET], fail={"in.zarr/c/3/0": 500})  # stopped at the last
        rc, o, err = cli("run", cfg)
        assert rc == 1 and SECRET not in o + err, o + err
        assert record_of(zarr.open_array(str(out)).attrs)["status"] == "incomplete"
        _nowhere(SECRET, out)  # the output's attributes and its run record
        server.set(basic=["user", SECRET])
        rc, o, err = cli("run", cfg, "--resume", "--summary-json", summary)
        assert rc == 0, err
        assert SECRET not in o + err and "resum" in err, o + err
        got = zarr.open_array(str(out), mode="r")[...]
        assert got.tobytes() == reference(x).tobytes()
        assert "user:***@" in summary.read_text()
        assert record_of(zarr.open_array(str(out)).attrs)["source"]["store"].startswith(
            "http://user:***@"
        )
        _nowhere(SECRET, summary, out)
        for args in (("verify", cfg, "--all"), ("run", cfg, "--resume")):
            rc, o, err = cli(*args)
            assert rc == 0 and SECRET not in o + err, o + err
        assert "nothing to do" in err, err
        server.set(basic=["user", "another"])  # the password refused
        for args in (("plan", cfg), ("run", cfg, "--overwrite")):
            rc, o, err = cli(*args)
            assert rc == 1 and SECRET not in o + err, o + err
            line = one_line_error(err)
            assert "user:***@" in line and "401" in line, line
        _nowhere(SECRET, out)


def test_every_value_of_params_is_masked_whatever_its_type(tmp_path: Path, cli) -> None:
    """A number in ``params`` (``sig: 12345678901234``, unquoted in YAML) was written as is
    to --summary-json: only strings were masked. Now every value is; the run sends it."""
    x = _input(tmp_path / "in.zarr")
    with serving(tmp_path, token={"sig": "98765432109876", "v": "31415.9265"}) as server:
        summary = tmp_path / "summary.json"
        cfg = write_config(
            tmp_path,
            f"{server.url}/in.zarr",
            tmp_path / "out.zarr",
            input={"storage_options": {"params": {"sig": 98765432109876, "v": 31415.9265}}},
        )
        rc, _, err = cli("run", cfg, "--summary-json", summary)
        assert rc == 0, err
        got = zarr.open_array(str(tmp_path / "out.zarr"), mode="r")[...]
        assert got.tobytes() == reference(x).tobytes()
        for secret in ("98765432109876", "31415.9265"):
            assert secret not in err
            _nowhere(secret, summary, tmp_path / "out.zarr")


@pytest.mark.parametrize(
    "options, key",
    [
        ({"headers": {"X-Key": 987654321}}, "input.storage_options.headers.X-Key"),
        (
            {"headers": {"Authorization": ["987654321"]}},
            "input.storage_options.headers.Authorization",
        ),
        ({"params": {"sig": {"nested": "987654321"}}}, "input.storage_options.params.sig"),
        ({"params": {"sig": True}}, "input.storage_options.params.sig"),
        ({"http": {"params": {"sig": None}}}, "input.storage_options.http.params.sig"),
        ({"params": {"sig": "a%2Bb%2F987654321%3D"}}, "input.storage_options.params.sig"),
    ],
    ids=["int-header", "list-header", "nested-param", "bool-param", "null-param", "encoded"],
)
def test_a_header_or_parameter_that_cannot_be_sent_as_written_is_refused_unsaid(
    tmp_path: Path, cli, options: dict, key: str
) -> None:
    """A header value that is not a string (``X-Key: 987654321``: "error: TypeError: Cannot
    serialize non-str key 987654321"), a list or a mapping as a header or parameter value,
    printed the value. A percent-encoded parameter (``sig: a%2Bb%2Fc%3D``, copied from a
    URL) was encoded again and answered 403. Each is now one ConfigError naming the file,
    the line and the key, never the value, before anything is read."""
    _input(tmp_path / "in.zarr")
    with serving(tmp_path) as server:
        cfg = write_config(
            tmp_path, f"{server.url}/in.zarr", tmp_path / "out.zarr",
            input={"storage_options": options},
        )  # fmt: skip
        for command in ("plan", "run"):
            rc, o, err = cli(command, cfg)
            line = one_line_error(err)
            assert rc == 1 and "987654321" not in o + err, o + err
            assert f"{cfg}:" in line and key in line, line
            if "%" in str(options):
                assert "decoded" in line and "'+'" in line, line
    assert not (tmp_path / "out.zarr").exists()
    from pipeline.config.loading import load_config

    with pytest.raises(ConfigError) as e:
        load_config(cfg)
    assert e.value.key == key and e.value.line is not None


def test_a_parameter_given_decoded_reaches_the_server_as_the_url_s(tmp_path: Path, cli) -> None:
    """The README's advice: a SAS ``sig`` copied from a URL (``a%2Bb%2Fc%3D``) goes in params
    decoded (``a+b/c=``); aiohttp encodes it, and the server gets the URL's value."""
    x = _input(tmp_path / "in.zarr")
    with serving(tmp_path, token={"sig": "a+b/c="}) as server:
        cfg = write_config(
            tmp_path, f"{server.url}/in.zarr", tmp_path / "out.zarr",
            input={"storage_options": {"params": {"sig": "a+b/c="}}},
        )  # fmt: skip
        rc, _, err = cli("run", cfg)
        assert rc == 0, err
        got = zarr.open_array(str(tmp_path / "out.zarr"), mode="r")[...]
        assert got.tobytes() == reference(x).tobytes()


def test_an_error_s_line_and_fields_mask_every_url_s_password() -> None:
    """The safety net: a PipelineError's message and string fields (and so its pickled copy,
    from a worker) show every URL's password as ``***``, in a chain too, with the query
    hidden as before; a user without a password, and a path with an '@', stay as they are."""
    import pickle

    from pipeline.errors import InputError

    url = f"simplecache::https://user:{SECRET}@host:8443/in.zarr?sig=abc"
    e = pickle.loads(pickle.dumps(InputError(f"cannot read input store {url}: x", store=url)))
    assert SECRET not in str(e) + e.store and "sig=abc" not in str(e)
    assert e.store == "simplecache::https://user:***@host:8443/in.zarr?..."
    assert str(InputError("sftp://bob@host/a@b.zarr")) == "sftp://bob@host/a@b.zarr"


def test_another_password_resumes_and_no_line_says_either(tmp_path: Path, cli) -> None:
    """A run stopped part-way, then resumed with another password (the server's changed): the
    resume was refused as "the input's data changed" (each file's full URL, password and all,
    went into the input's identity, and a digest of it into the run record). Now it goes
    ahead, bit for bit, and neither password is said or written. Over a server that gives no
    change stamps, verify's line on the unstamped files named the first file's URL whole;
    and a password the server refuses was aiohttp's bare ``ClientResponseError: 401`` on a
    resume: now one line naming the store's answer and the fix, which is the password in the
    input's URL (the line had said "the credentials in the store's storage_options", which
    this config has none of; verify and plan said input.storage_options)."""
    x = _input(tmp_path / "in.zarr")
    one, two = f"{SECRET}1", f"{SECRET}2"
    with serving(tmp_path, basic=["user", one]) as server:

        def config(password: str, out: str) -> Path:
            url = server.url.replace("http://", f"http://user:{password}@") + "/in.zarr"
            return write_config(tmp_path, url, tmp_path / out, chunking={"block": [8, COLS]})

        for stamps, out in ((True, "out.zarr"), (False, "unstamped.zarr")):
            server.set(basic=["user", one], stamps=stamps, fail={"in.zarr/c/3/0": 500})
            rc, o, err = cli("run", config(one, out))
            assert rc == 1 and one not in o + err, o + err
        server.set(basic=["user", one], stamps=False)
        rc, o, err = cli("verify", config(one, "unstamped.zarr"))
        assert rc == 1 and "no change stamp" in o + err and one not in o + err, o + err
        server.set(basic=["user", two])
        rc, o, err = cli("run", config(two, "out.zarr"), "--resume")
        assert rc == 0 and "resum" in err, err
        assert one not in o + err and two not in o + err, o + err
        got = zarr.open_array(str(tmp_path / "out.zarr"), mode="r")[...]
        assert got.tobytes() == reference(x).tobytes()
        for secret in (one, two):
            _nowhere(secret, tmp_path / "out.zarr", tmp_path / "unstamped.zarr")
        server.set(basic=["user", "a third"])
        rc, o, err = cli("run", config(two, "out.zarr"), "--resume")
        assert rc == 1 and two not in o + err, o + err
        line = one_line_error(err)
        assert "HTTP 401" in line and "the input store http://user:***@" in line, line
        # the password is in the URL, where the fix is: not in storage_options (it has none)
        assert "correct the user and password in input.store's URL" in line, line
        assert "storage_options" not in line, line
        with pytest.raises(pipeline.StoreError) as e:  # the API raises what the line says
            pipeline.run(config(two, "out.zarr"), resume=True)
        assert f"error: {e.value}" == line and e.value.reason == "HTTP 401 Unauthorized"
        assert e.value.setting == "input", e.value.data
        for command in ("verify", "plan"):  # the steps that name the store say the same fix
            rc, o, err = cli(command, config(two, "out.zarr"))
            line = one_line_error(err)
            assert rc == 1 and "input.store's URL" in line, line
            assert "storage_options" not in line and two not in o + err, line


@pytest.mark.parametrize(
    ("url", "options"),
    [
        ("ftp://bob@127.0.0.1:2121/in.zarr", {"password": SECRET}),
        ("sftp://bob@127.0.0.1/in.zarr", {"password": SECRET}),
        ("zip::ftp://bob@127.0.0.1:2121/in.zip", {"ftp": {"password": SECRET}}),
        ("ftp://bob@127.0.0.1:2121/in.zarr", {"session": object()}),
    ],
    ids=["ftp", "sftp", "chained", "session"],
)
def test_a_refused_store_whose_password_is_an_option_names_the_options(
    url: str, options: dict[str, Any]
) -> None:
    """FTP's, SFTP's and SMB's ``username`` and ``password`` (s3fs's aliases of its key and
    secret too, and the ``session`` it is given) carry credentials, but were not among the
    options that do (``location.CREDENTIAL_OPTIONS``): a store whose URL names its user and
    whose password is in storage_options, refused, was advised to correct "the user and
    password in input.store's URL" alone, where the password it could not see was. The fix
    names both places now, and never the password."""
    from pipeline.store.location import Location

    loc = Location.of(url, options, "input")
    for failure, fix in (
        ("PermissionError: 530 Login incorrect", "give access to it (its permissions, or "),
        ("HTTP 401 Unauthorized", "correct "),
    ):
        said = loc.answer_fix(failure, "input")
        assert said.startswith(fix) and "the credentials in input.storage_options" in said, said
        assert SECRET not in said, said


def test_a_password_is_hidden_before_a_query_or_fragment_is_cut() -> None:
    """An unencoded '?' or '#' in a password (``http://user:ab?cd@host/in.zarr``): the refusal
    of a URL with a query showed the password up to that character. Also: a token given as
    an HTTP URL's user is hidden, and fsspec's ``github://org:repo@ref`` is not a password."""
    from pipeline.config.urls import url_query_problem
    from pipeline.errors import hide_url_passwords

    for url in (f"http://user:ab?{SECRET}@h/in.zarr", f"http://user:{SECRET}#x@h/in.zarr"):
        problem = url_query_problem(url)
        assert problem is not None and SECRET not in problem and "ab?" not in problem, problem
    assert hide_url_passwords(f"see https://{SECRET}@h/in.zarr") == "see https://***@h/in.zarr"
    assert hide_url_passwords("sftp://bob@h/in.zarr") == "sftp://bob@h/in.zarr"
    kept = "github://pydata:xarray-data@master/air.zarr"
    assert hide_url_passwords(kept) == kept


def test_the_repr_of_a_config_and_a_location_shows_no_credential() -> None:
    """``repr()`` and ``str()`` of the config's models showed storage_options whole (brk76: a
    notebook cell ending in ``pipeline.plan(cfg)`` or a config displayed the S3 secret), and a
    Location's repr its URL's password. Every value of storage_options, at any depth and of
    any name or type, is ``***`` now (its keys stay), and every URL's password."""
    from pipeline.config import parse_config
    from pipeline.store.location import Location

    options = {
        "key": "AKIDKEY123",
        "secret": SECRET,  # (an endpoint_url with credentials in it is refused: test_s3)
        "client_kwargs": {"aws_session_token": "T0KENVALUE", "region_name": "eu-x"},
        "anon": False,
        "profile": "",
    }
    url = f"http://user:{SECRET}@127.0.0.1:1/in.zarr"
    cfg = parse_config(
        {
            "input": {"store": url, "storage_options": options},
            "output": {"store": "s3://b/out.zarr", "storage_options": {"secret": SECRET}},
            "stages": [{"op": "square"}],
        }
    )
    loc = Location.of(url, options)
    for text in (repr(cfg), str(cfg), repr(cfg.input), str(cfg.output), repr(loc), str(loc)):
        for secret in (SECRET, "AKIDKEY123", "T0KENVALUE", "eu-x"):
            assert secret not in text, text
    assert "'client_kwargs': {'aws_session_token': '***', 'region_name': '***'}" in repr(cfg)
    assert "'profile': ''" in repr(cfg) and "user:***@" in repr(cfg) and "user:***@" in repr(loc)
    assert cfg.input.storage_options == options and loc.storage_options == options


@pytest.mark.parametrize(
    "options", ['"key=AKIDKEY123 secret=S3CR3T987"', "[AKIDKEY123, S3CR3T987]"]
)
def test_storage_options_of_the_wrong_type_are_refused_unsaid(
    tmp_path: Path, cli, options: str
) -> None:
    """``storage_options: "key=... secret=..."`` (a string, not a mapping) was refused with
    its value quoted: ``(got 'key=AKID... secret=...')`` (brk76). The line names the key and
    the fix, never the value, whatever its type."""
    cfg = _options_config(tmp_path, options)
    line, said = _plan_refused(cli, cfg)
    assert "input.storage_options" in line and "{key: ..., secret: ...}" in line
    assert "AKIDKEY123" not in said and "S3CR3T987" not in said, line


@pytest.mark.parametrize(
    "url",
    [
        "s3://AKIDKEY123:S3CR3T987@b/in.zarr",
        "s3://AKIDKEY123:S3/CR3T987@b/in.zarr",
        "s3a://AKIDKEY123@b/in.zarr",
        "gs://S3CR3T987@b/in.zarr",
        "zip::s3://AKIDKEY123:S3CR3T987@b/in.zip",
        "abfs://container:S3CR3T987@account.dfs.core.windows.net/in.zarr",
        "file://AKIDKEY123:S3CR3T987@localhost/in.zarr",
    ],
)
def test_credentials_in_a_url_that_takes_none_are_refused_unsaid(url: str) -> None:
    """A user or password in the URL of a file system that takes none from it (s3, gs, a file
    URL; a password for Azure's, whose user part names the container) is refused by the
    config and by ``Location.of`` in one line naming storage_options and neither credential
    (brk76: botocore's error quoted ``s3://KEY:SECRET@bucket`` whole). Those that take one
    (HTTP, SFTP) and Azure's ``container@account`` are not."""
    from pipeline.config import parse_config
    from pipeline.errors import StoreError
    from pipeline.store.location import Location

    with pytest.raises(ConfigError) as e:
        parse_config(
            {"input": {"store": url}, "output": {"store": url}, "stages": [{"op": "square"}]}
        )
    with pytest.raises(StoreError) as s:
        Location.of(url)
    for error in (e.value, s.value):
        text = str(error) + repr(error.data)
        assert "AKIDKEY123" not in text and "S3CR3T987" not in text and "CR3T987" not in text
        assert "\n" not in str(error) and "***@" in str(error), str(error)
    if not url.startswith("file"):
        assert "storage_options" in str(e.value) and "storage_options" in str(s.value)
    for fine in (
        "abfs://container@account.dfs.core.windows.net/in.zarr",
        "sftp://user:pw@host/in.zarr",
        "s3://bucket/a@b/in.zarr",
        "s3://bucket/a:b@c/in.zarr",
    ):
        assert Location.of(fine).url == fine


@pytest.mark.parametrize(
    ("url", "plain"),
    [
        ("s3://AKIDKEY123:s3cr@tPART@b/in.zarr", "s3://b/in.zarr"),
        ("s3://AKIDKEY123:a/b@tPART@b/in.zarr", "s3://b/in.zarr"),
        ("zip::s3://AKIDKEY123:s3cr@tPART@b/in.zip", "zip::s3://b/in.zip"),
        ("gs://TOK@tPART@b/in.zarr", "gs://b/in.zarr"),
    ],
)
def test_a_secret_holding_at_is_hidden_whole_and_advised_without(url: str, plain: str) -> None:
    """``s3://KEY:s3cr@tPART@bucket/in.zarr``: the user information ran to the first '@', so
    the line showed ``s3://***@tPART@bucket/...`` and advised ``s3://tPART@bucket/...``,
    refused again (brk82). It runs to the last '@' before the path: neither is said, and the
    advice is the bare URL. A path holding '@' or ':' is still no user information."""
    from pipeline.config import parse_config
    from pipeline.store.location import Location

    with pytest.raises(ConfigError) as e:
        parse_config(
            {"input": {"store": url}, "output": {"store": url}, "stages": [{"op": "square"}]}
        )
    text = str(e.value) + repr(e.value.data)
    assert "tPART" not in text and "AKIDKEY123" not in text and "TOK" not in text, text
    assert f"give the URL without them, {plain}," in str(e.value), str(e.value)
    for fine in ("s3://bucket/a:b@c/in.zarr", "zip::s3://bucket/a:b@c.zip", "gs://bucket/a@b"):
        assert Location.of(fine).url == fine


def test_an_azure_password_is_hidden_and_its_container_kept() -> None:
    """``abfs://cont:KEY@account...``: the line hid the container too (``abfs://***@...``,
    no credential) and advised the URL without it, another store (brk82). Only the password
    is hidden and stripped: ``abfs://cont:***@...``, advised ``abfs://cont@...``."""
    from pipeline.config.urls import url_userinfo_problem

    url = "abfs://cont:S3CR3T987@acct.dfs.core.windows.net/x.zarr"
    line = url_userinfo_problem(url)
    assert line is not None and "S3CR3T987" not in line, line
    assert line.startswith("abfs://cont:***@acct.dfs.core.windows.net/x.zarr "), line
    assert "without them, abfs://cont@acct.dfs.core.windows.net/x.zarr," in line, line
    slashed = url_userinfo_problem("abfs://cont:S3/CR3T@987@acct.dfs.core.windows.net/x.zarr")
    assert slashed is not None and "CR3T" not in slashed and "987" not in slashed, slashed
    assert "without them, abfs://cont@acct.dfs.core.windows.net/x.zarr," in slashed, slashed


def test_a_password_holding_a_slash_is_hidden() -> None:
    """``http://user:pa/ssPW@host/x``: the password ended at its '/' for the mask, so a
    Location's repr and str showed it whole (brk82); ``host:8080/a@b`` is no password."""
    from pipeline.errors import hide_url_secrets
    from pipeline.store.location import Location

    loc = Location.of("http://user:pa/ssPW@h/x")
    for text in (repr(loc), str(loc), hide_url_secrets("see http://user:pa/ssPW@h/x here")):
        assert "ssPW" not in text and "user:***@h/x" in text, text
    for fine in ("http://host:8080/a@b", "https://h/a:b/c@d", "github://org:repo@ref/x"):
        assert hide_url_secrets(fine) == fine


@pytest.mark.parametrize(
    ("store", "options", "key"),
    [
        ("s3://b/in.zarr", "{1: S3CR3T987}", "input.storage_options.1"),
        ("s3://b/in.zarr", "{config_kwargs: {1: S3CR3T987}}", "config_kwargs.1"),
        ("http://h/in.zarr", "{client_kwargs: {true: S3CR3T987}}", "client_kwargs.True"),
        ("zip::s3://b/in.zip", "{s3: {client_kwargs: {null: S3CR3T987}}}", "client_kwargs.None"),
    ],
    ids=["top", "config_kwargs", "http-client_kwargs", "chained"],
)
def test_an_option_whose_name_is_no_string_is_refused_unsaid(
    tmp_path: Path, cli, store: str, options: str, key: str
) -> None:
    """YAML reads ``1:``, ``true:`` and ``null:`` as no string: inside ``client_kwargs`` (or
    any mapping in storage_options) that was fsspec's or aiohttp's bare ``TypeError: keywords
    must be strings``, or on S3 a line telling to put a space after a colon. One line now,
    at the config's line, names the option and the fix, never its value."""
    cfg = _options_config(tmp_path, options, store)
    line, said = _plan_refused(cli, cfg)
    assert "c.yaml:3: input.storage_options." in line and key in line, line
    assert "must be a string" in line and "S3CR3T987" not in said, line
    assert not (tmp_path / "out.zarr").exists()


def test_an_option_named_by_a_yaml_typo_is_never_said(tmp_path: Path) -> None:
    """``storage_options: {secret:VALUE, key: ...}`` (no space after the colon) makes an
    option NAMED ``secret:VALUE``: ``repr(Config)`` masked the values only, showing it
    (brk82). An option's name that is no plain identifier is ``***``."""
    from pipeline.config import load_config

    cfg = _options_config(
        tmp_path, "{endpoint_url: 'http://127.0.0.1:1', secret:S3CR3T987, key: AK}"
    )
    config = load_config(cfg)
    assert "secret:S3CR3T987" in config.input.storage_options  # YAML's reading, kept
    for text in (repr(config), str(config), repr(config.input)):
        assert "S3CR3T987" not in text and "'***': None" in text, text


def test_a_query_on_any_scheme_s_url_is_hidden_and_local_names_are_kept(tmp_path, cli) -> None:
    """``hide_url_secrets`` hid only an HTTP(S) URL's query: a line quoting
    ``s3://bkt/out.zarr?X-Amz-Security-Token=...`` showed the token (brk82). Every scheme's
    query is hidden now. The config refuses a query on object stores only: a local path's
    or a file URL's '?' and '#' are characters of a file's name (fsspec's local file system
    reads them so), and such a run writes the folder so named."""
    from pipeline.config.urls import url_query_problem
    from pipeline.errors import hide_url_secrets

    for url in (
        f"s3://bkt/out.zarr?X-Amz-Security-Token={SECRET}",
        f"zip::gs://bkt/in.zip?token={SECRET}",
        f"abfs://cont@acct.dfs.core.windows.net/in.zarr?sv=1&sig={SECRET}",
    ):
        said = hide_url_secrets(f"cannot open {url}: failed")
        assert SECRET not in said and "?..." in said, said
        problem = url_query_problem(url)
        assert problem is not None and SECRET not in problem, problem
        assert "storage_options" in problem and "\n" not in problem, problem
    x = np.arange(16, dtype=np.float32).reshape(4, 4)
    zarr.create_array(store=str(tmp_path / "in.zarr"), shape=x.shape, dtype=x.dtype)[...] = x
    for out in ("o?x=1#y.zarr", "f?x=1#y.zarr"):
        path = tmp_path / out
        store = f"file://{path}" if out[0] == "f" else str(path)
        assert url_query_problem(store) is None
        cfg = write_config(tmp_path, tmp_path / "in.zarr", store)
        rc, _, err = cli("run", cfg)
        assert rc == 0, err
        assert np.array_equal(zarr.open_array(str(path), mode="r")[...], reference(x))


@pytest.mark.parametrize(
    ("side", "store", "read"),
    [
        ("output", "ftp://127.0.0.1:9/out?.zarr", "ftp://127.0.0.1:9/out"),
        ("output", "sftp://127.0.0.1:9/data/out.zarr?", "sftp://127.0.0.1:9/data/out.zarr"),
        ("input", "webhdfs://127.0.0.1:9/in?x.zarr", "webhdfs://127.0.0.1:9/in"),
        ("input", "zip::smb://127.0.0.1/share/in.zip?", "zip::smb://127.0.0.1/share/in.zip"),
        ("output", "abfs://cont/out.zarr?", "abfs://cont/out.zarr"),
    ],
    ids=["ftp-inner", "sftp-trailing", "webhdfs-inner", "zip-smb-trailing", "abfs-trailing"],
)
def test_a_question_mark_its_file_system_drops_is_refused_naming_the_store_it_would_be(
    tmp_path: Path, cli, side: str, store: str, read: str
) -> None:
    """A lone '?' in an object store's URL was taken for a character of a name, as s3fs and
    gcsfs keep it; but fsspec's ftp, sftp, webhdfs and smb file systems read their URL with
    ``infer_storage_options`` (urllib's ``urlsplit``), which drops the '?' and all after it,
    and adlfs puts only a non-empty query back: ``ftp://host/out?.zarr`` ran on ``/out``,
    ``abfs://cont/out.zarr?`` on ``out.zarr``, while every line said the URL as written. Such
    a URL is refused now, in one line that names the store it would have been."""
    from fsspec.implementations.ftp import FTPFileSystem
    from fsspec.utils import infer_storage_options

    assert FTPFileSystem._strip_protocol("ftp://h/out?.zarr") == "/out"  # fsspec's reading
    assert infer_storage_options("abfs://cont/out.zarr?")["path"] == "/out.zarr"  # adlfs'
    _input(tmp_path / "in.zarr")
    cfg = write_config(
        tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr", **{side: {"store": store}}
    )
    line, _ = _plan_refused(cli, cfg)
    assert f"{side}.store" in line, line
    assert f"so the store would be {read}, not the one named" in line, line
    with pytest.raises(ConfigError) as e:
        pipeline.plan(cfg)
    assert e.value.key == f"{side}.store"
    assert not (tmp_path / "out.zarr").exists()


def test_a_lone_question_mark_that_s3fs_and_gcsfs_keep_is_no_query() -> None:
    """s3fs, gcsfs and ossfs keep a '?' without parameters in a key's name (the moto round
    trips in tests/test_s3.py), so such a URL is not refused; a '#' alone still is, as any
    fragment on an object store."""
    from pipeline.config.urls import url_query_problem

    for url in ("s3://bkt/out.zarr?", "s3://bkt/out?.zarr", "gs://bkt/o?", "oss://bkt/a?b"):
        assert url_query_problem(url) is None, url
    for url in ("s3://bkt/out.zarr#", "gs://bkt/o?#", "ftp://h/o#"):
        problem = url_query_problem(url)
        assert problem is not None and "fragment" in problem, url


def test_options_whose_names_are_hidden_stay_apart_in_reprs_and_summaries(tmp_path: Path) -> None:
    """Two options whose names are no plain identifiers were both shown as ``***``, so a
    ``repr`` kept one of them (``{secret:A, token:B}`` showed as one option) and the
    summary's config showed the last one's value in the first one's place (a secret's
    ``***`` replaced by another option's plain value). Each hidden name is one of its own now:
    ``***``, ``***2``, ... in order, at every depth; no name nor secret value is said."""
    from pipeline.config import load_config
    from pipeline.store.location import Location

    cfg = _options_config(
        tmp_path,
        "{secret:S3CR3T987, token:T0K3N654, key: AK, my secret: TOPSECRET,"
        " my opt: shown, client_kwargs: {x y: 1, z w: 2}}",
    )
    config = load_config(cfg)
    options = config.input.storage_options
    loc = Location.of(config.input.store, options)
    want = "'***': None, '***2': None, 'key': '***', '***3': '***', '***4': '***'"
    for text in (repr(config), str(config), repr(config.input), repr(loc)):
        assert want in text and "'client_kwargs': {'***': '***', '***2': '***'}" in text, text
        for secret in ("S3CR3T987", "T0K3N654", "TOPSECRET", "AK'", "my ", "x y", "z w"):
            assert secret not in text, (secret, text)
    public = config.public_dict()["input"]["storage_options"]
    assert list(public) == ["***", "***2", "key", "***3", "***4", "client_kwargs"], public
    assert public["***3"] == "***" and public["***4"] == "shown", public  # my secret, my opt
    assert "TOPSECRET" not in repr(public) and "S3CR3T987" not in repr(public), public


def test_an_aiohttp_auth_in_a_mapping_config_is_never_written() -> None:
    """A config given to the API as a mapping may hold aiohttp's ``BasicAuth`` as an HTTP
    store's ``auth`` (or its ``client_kwargs``'): the summary's config
    (:meth:`~pipeline.config.Config.public_dict`, ``--summary-json``) wrote it as
    ``["user", "PASSWORD", "latin1"]``, ``auth`` being no name of a secret. Every value under
    ``auth`` is masked now, as under ``headers`` and ``params``."""
    import json
    import warnings

    import aiohttp

    from pipeline.config import parse_config

    with warnings.catch_warnings():  # aiohttp 3.14 deprecates it, and still takes it
        warnings.simplefilter("ignore", DeprecationWarning)
        auth = aiohttp.BasicAuth("user", SECRET)
    config = parse_config(
        {
            "input": {
                "store": "https://example.org/in.zarr",
                "storage_options": {"auth": auth, "client_kwargs": {"auth": auth}},
            },
            "output": {"store": "/tmp/out.zarr"},
            "stages": [{"op": "square"}],
        },
        "the config mapping",
    )
    public = config.public_dict()["input"]["storage_options"]
    masked = ["***", "***", "***"]  # user, password, encoding
    assert public == {"auth": masked, "client_kwargs": {"auth": masked}}, public
    assert SECRET not in json.dumps(public), public


def test_a_secret_typed_as_an_option_s_name_is_never_said(tmp_path: Path, cli) -> None:
    """``storage_options: {key: AK, wJalr...}``, a secret without its ``secret:``, makes YAML
    an option NAMED after the secret (value null). Its name was a plain identifier, so
    ``repr(Config)`` showed it and the plan's line quoted botocore's "unexpected keyword
    argument 'wJalr...'". A name is said only where it looks like a file system's option
    (lower-case words joined by '_'); the line still names the section and the fix."""
    from pipeline.config import load_config
    from pipeline.errors import said_option

    secret = "wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY"
    cfg = _options_config(tmp_path, f"{{endpoint_url: 'http://127.0.0.1:9', key: AK, {secret}}}")
    config = load_config(cfg)
    assert secret in config.input.storage_options  # YAML's reading, kept
    for text in (repr(config), str(config), repr(config.input)):
        assert secret not in text and "'***': None" in text, text
    line, said = _plan_refused(cli, cfg)
    assert secret not in said, said
    assert "input.storage_options" in line and "does not take" in line, line
    for name in ("endpoint_url", "s3_additional_kwargs", "client_kwargs", "anon", "http"):
        assert said_option(name) == name
    for name in ("AKIAIOSFODNN7EXAMPLE", "d41d8cd98f00b204e980", "Token", "a" * 41, "x:y"):
        assert said_option(name) == "***", name


def test_a_refused_connection_of_no_store_names_no_store() -> None:
    """The last resort's line names the store that answered only where the answer is that
    store's: a connection refused that no storage library raised (a scheduler's, say) is
    not said to be the only remote store's, with its endpoint_url to correct."""
    import socket

    from pipeline.errors import store_answer
    from pipeline.store.location import Location

    stores = [
        Location.of("s3://b/in.zarr", {"endpoint_url": "http://127.0.0.1:9"}, "input"),
        Location.of("/tmp/out.zarr", {}, "output"),
    ]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2)
    except ConnectionRefusedError as e:
        refused = e
    answer = store_answer(refused, stores)
    assert answer is not None and answer.setting == "", answer
    assert "input" not in str(answer) and "endpoint_url" not in str(answer), answer
