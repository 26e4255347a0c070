"""The Python API: ``pipeline.run`` from a script or notebook with a config file, a mapping or
a ``Config``, on a ``distributed.Client`` made here or on its own cluster, returning the
summary; failures raised as the typed errors, with the command line's one-line messages;
``pipeline.__version__`` and ``pipeline --version``; and an import of the package that loads
no Dask, Zarr or xarray."""

from __future__ import annotations

import functools
import json
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import uuid
import warnings
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
import zarr

import pipeline
from pipeline.config import load_config
from pipeline.errors import ConfigError, InputError, OutputError, PlanError
from pipeline.ops.stages import PAST_FLOAT64
from pipeline.reporting.summary import Summary
from tests.conftest import generated_config, make_array, read_array, reference, write_config
from tests.faultkit import (
    ROOT,
    ctrl_c_script,
    end_process,
    env,
    expected,
    external_cluster,
    file_states,
    many_blocks_input,
    one_line_error,
    run_python,
    status,
)


def small_input(tmp: Path, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((30, 70)).astype(np.float32)
    make_array(tmp / "in.zarr", x, (10, 70))
    return x


def _a_finished_output(tmp: Path) -> tuple[Path, Path, dict[str, Any]]:
    """A small input, a config, and the complete output of a run of it: (the config's path,
    the output, the output's file states)."""
    small_input(tmp)
    out = tmp / "out.zarr"
    path = write_config(tmp, tmp / "in.zarr", out)
    pipeline.run(path)
    return path, out, file_states(out)


def test_importing_the_package_is_light() -> None:
    code = "import json, sys, pipeline; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", code], env=env(), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    loaded = {m.split(".")[0] for m in json.loads(done.stdout)}
    assert "pipeline" in loaded
    heavy = {"dask", "distributed", "zarr", "numcodecs", "xarray", "cupy", "fsspec", "rich"}
    assert not loaded & heavy, sorted(loaded & heavy)


def test_planning_a_run_on_local_stores_loads_no_s3_client(tmp_path: Path) -> None:
    """The plan of a run whose stores are local folders imports no S3 library: the checks of
    the options s3fs passes to botocore read botocore's tables only for an s3fs store (a local
    store's plan had imported botocore, a tenth of a second or more of every run's plan)."""
    small_input(tmp_path)
    path = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr")
    code = (
        "import json, sys, pipeline; pipeline.plan(sys.argv[1]); "
        "print(json.dumps(sorted(sys.modules)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(path)],
        env=env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    loaded = {m.split(".")[0] for m in json.loads(done.stdout.splitlines()[-1])}
    assert "zarr" in loaded  # the input's metadata was read
    s3 = loaded & {"botocore", "s3fs", "aiobotocore"}
    assert not s3, sorted(s3)


# every re-export of each subpackage, checked after importing each module of the package
_REEXPORTS = r"""
import importlib, inspect, json, pkgutil, sys
wrong = []
for name in ("config", "devices", "ops", "planning", "reporting", "running", "store"):
    package = importlib.import_module("pipeline." + name)
    for module in pkgutil.iter_modules(package.__path__):
        try:
            importlib.import_module(package.__name__ + "." + module.name)
        except ModuleNotFoundError as missing:  # the GPU backend's CuPy, on a CPU machine
            if missing.name.startswith("pipeline"):
                raise
    for export in package.__all__:
        value = getattr(package, export)
        home = sys.modules.get(getattr(value, "__module__", ""), None)
        elsewhere = home is not None and getattr(home, export, value) is not value
        if inspect.ismodule(value) or elsewhere:
            wrong.append(package.__name__ + "." + export)
print(json.dumps(wrong))
"""


def test_each_reexport_is_its_object_after_its_module_is_imported() -> None:
    """``from pipeline.planning import describe`` gave the module ``planning/describe.py``,
    not the function, once anything had imported that module: a package's lazy re-export
    (its ``__getattr__``) is not asked for a name the import of a submodule of that name has
    set. No subpackage has a module named as one of its re-exports."""
    done = subprocess.run(
        [sys.executable, "-c", _REEXPORTS], env=env(), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


_LISTED = r"""
import importlib, json, pydoc, sys
unlisted = {}
for name in ("config", "devices", "planning", "reporting", "running", "store"):
    package = importlib.import_module("pipeline." + name)
    listed = set(dir(package))  # before any re-export is loaded: a notebook's completion
    shown = pydoc.render_doc(package, renderer=pydoc.plaintext)
    missing = [n for n in package.__all__ if n not in listed or f" {n}" not in shown]
    if missing:
        unlisted[package.__name__] = missing
print(json.dumps(unlisted))
"""


def test_each_subpackage_lists_and_documents_its_reexports() -> None:
    """``dir(pipeline.config)`` (a notebook's completion) and ``help(pipeline.config)`` name
    every re-export of the subpackages whose re-exports load on first use: they had named
    ``__getattr__`` alone (``help`` had documented ``Config`` and ``load_config`` while the
    package imported them at its top)."""
    done = subprocess.run(
        [sys.executable, "-c", _LISTED], env=env(), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {}


def test_plan_then_run_in_one_interpreter(tmp_path: Path) -> None:
    """``pipeline.plan(cfg)`` then ``pipeline.run(cfg)``, a notebook's order, in a fresh
    interpreter: the run had failed, ``TypeError: 'module' object is not callable`` (the
    runner's ``describe``, imported from the package after ``plan`` had loaded the module
    of that name)."""
    x = small_input(tmp_path)
    path = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr")
    code = (
        "import sys, pipeline; pipeline.plan(sys.argv[1]); print(pipeline.run(sys.argv[1]).status)"
    )
    done = run_python(["-c", code, path], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "complete"
    np.testing.assert_array_equal(
        zarr.open_array(str(tmp_path / "out.zarr"), mode="r")[:], expected(x)
    )


def test_the_version_is_the_packages() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert pipeline.__version__ == project["version"]
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "--version"],
        env=env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"pipeline {pipeline.__version__}\n"


@pytest.mark.parametrize("form", ["path", "text", "mapping", "Config"])
def test_run_takes_a_file_a_mapping_or_a_config_and_uses_the_client(
    tmp_path: Path, backend_client: tuple[str, Any], form: str, capsys: Any
) -> None:
    backend, client = backend_client
    x = small_input(tmp_path)
    path = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr", backend=backend)
    config = {
        "path": path,
        "text": str(path),
        "mapping": yaml.safe_load(path.read_text()),
        "Config": load_config(path),
    }[form]
    summary = pipeline.run(config, client=client)
    assert isinstance(summary, Summary)
    assert summary.status == "complete" and summary.blocks_done == summary.blocks_total
    # the plan was sized for the client's cluster, not the config's
    assert (summary.workers, summary.threads_per_worker) == (1, 2)
    assert np.array_equal(read_array(tmp_path / "out.zarr"), reference(x))
    captured = capsys.readouterr()
    assert "[run]" not in captured.out + captured.err  # no progress unless asked for
    assert client.submit(int, "7").result() == 7  # the client is left open


def test_a_memory_store_is_refused_for_a_clients_worker_processes(
    tmp_path: Path, backend_client: tuple[str, Any]
) -> None:
    """A ``memory://`` store lives in this process. A caller's cluster of worker processes
    read it as empty, and its output, all fill values, was marked complete (the config's
    ``cluster.protocol: inproc`` was believed over the client's workers): refused, naming
    the store, before anything is written. A client of threads of this process reads it."""
    import zarr
    from distributed import Client, LocalCluster

    backend, client = backend_client
    x = np.random.default_rng(3).standard_normal((30, 70)).astype(np.float32)
    url = f"memory://{uuid.uuid4().hex}/in.zarr"
    zarr.create_array(store=url, shape=x.shape, chunks=(10, 70), dtype=x.dtype)[...] = x
    out = tmp_path / "out.zarr"
    path = write_config(tmp_path, url, out, backend=backend, cluster={"protocol": "inproc"})
    with pytest.raises(ConfigError) as info:
        pipeline.run(path, client=client)
    assert info.value.key == "input.store" and "LocalCluster(processes=False)" in str(info.value)
    assert not out.exists()
    if backend != "cpu":
        return  # workers of this process's threads: the CPU backend's half
    with (
        LocalCluster(
            n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0"
        ) as threads,
        Client(threads) as here,
    ):
        summary = pipeline.run(path, client=here)
    assert summary.status == "complete"
    assert np.array_equal(read_array(out), reference(x))


def test_a_second_run_in_the_same_process_is_named_as_such(tmp_path: Path) -> None:
    """A run on an output that a run of this same process holds (another thread's
    ``pipeline.run``) is refused saying so, not naming this process's pid as another's."""
    from pipeline.running.runner import plan_run

    small_input(tmp_path)
    path = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr")
    ledger = plan_run(load_config(path)).sink.ledger
    assert ledger is not None
    ledger.acquire()
    try:
        with pytest.raises(OutputError) as info:
            pipeline.run(path)
    finally:
        ledger.release()
    assert "(this process, another thread's `pipeline.run`" in str(info.value)
    assert f"pid {os.getpid()}" not in str(info.value)
    assert pipeline.run(path).status == "complete"


def test_a_generation_in_the_same_process_is_named_by_its_api_call(tmp_path: Path) -> None:
    """An input that another thread of this process is generating (``pipeline.run`` with
    ``input.generate.when_missing``, the API's one call that generates) is refused naming
    that call: the line had named ``pipeline.generate_input``, which the package has not."""
    from pipeline.store.ledger import InputLock
    from pipeline.store.location import Location

    path = generated_config(tmp_path, {"shape": [8, 8], "chunks": [4, 8]})
    done = run_python(["-m", "pipeline", "generate", path, "--progress", "none"], tmp_path)
    assert done.returncode == 0, done.stderr
    lock = InputLock(Location.of(str(tmp_path / "in.zarr")), "")
    lock.acquire()
    try:
        for call in (pipeline.plan, pipeline.run):
            with pytest.raises(InputError) as info:
                call(path)
            said = str(info.value)
            assert "(this process, another thread's `pipeline.run` (input.generate" in said
            named = re.findall(r"`pipeline\.(\w+)", said)
            assert named and all(hasattr(pipeline, n) for n in named), said
    finally:
        lock.release()


def test_run_options_are_the_command_lines(
    tmp_path: Path, backend_client: tuple[str, Any], cli
) -> None:
    backend, client = backend_client
    small_input(tmp_path)
    path = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr", backend=backend)
    assert pipeline.run(path, client=client).status == "complete"
    with pytest.raises(OutputError) as info:
        pipeline.run(path, client=client)
    assert info.value.output == str(tmp_path / "out.zarr")
    rc, _, err = cli("run", path)
    assert rc == 1 and one_line_error(err) == f"error: {info.value}"
    again = pipeline.run(path, client=client, resume=True)
    assert again.status == "complete (nothing to do)"
    report = tmp_path / "s.json"
    summary = pipeline.run(path, client=client, overwrite=True, summary_json=str(report))
    assert json.loads(report.read_text())["status"] == summary.status == "complete"
    before = file_states(tmp_path / "out.zarr")
    with pytest.raises(TypeError):
        pipeline.run(path, client=client, overwrite=True, colour="blue")
    assert file_states(tmp_path / "out.zarr") == before


def test_run_without_a_client_starts_and_closes_its_own_cluster(tmp_path: Path) -> None:
    x = small_input(tmp_path, seed=1)
    doc = yaml.safe_load(
        write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr").read_text()
    )
    doc["cluster"] = {"workers": 1, "threads_per_worker": 2, "dashboard": ""}
    summary = pipeline.run(doc)
    assert summary.status == "complete"
    assert np.array_equal(read_array(tmp_path / "out.zarr"), reference(x))


BROKEN = {
    "unknown-key": (ConfigError, {"stagez": []}),
    "bad-value": (ConfigError, {"backend": "tpu"}),
    "no-input": (InputError, {"input": {"store": "nowhere.zarr"}}),
    "memory": (PlanError, {"cluster": {"workers": 1, "host_memory_limit": "1MiB"}}),
}


@pytest.mark.parametrize("name", list(BROKEN))
def test_errors_are_the_command_lines_typed_and_in_one_line(tmp_path: Path, cli, name: str) -> None:
    error, change = BROKEN[name]
    small_input(tmp_path)
    path = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr", **change)
    rc, _, err = cli("run", path)
    assert rc == 1
    line = one_line_error(err)
    with pytest.raises(error) as info:
        pipeline.run(path)
    assert type(info.value) is error
    assert line == f"error: {info.value}"
    if error is ConfigError:
        assert info.value.file == str(path) and info.value.key is not None
    if error is PlanError:
        assert info.value.host_budget < info.value.host_per_worker
    assert not (tmp_path / "out.zarr").exists()


def test_plan_takes_the_same_forms(tmp_path: Path) -> None:
    small_input(tmp_path)
    path = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr")
    by_file = pipeline.plan(path)
    by_mapping = pipeline.plan(yaml.safe_load(path.read_text()))
    assert by_file.fingerprint() == by_mapping.fingerprint()
    assert by_file.n_blocks >= 1 and not (tmp_path / "out.zarr").exists()


def _refused_output(tmp: Path, case: str) -> Path:
    """An output.store that ``run`` refuses whatever its options, beside ``small_input``'s
    ``in.zarr``: inside the input's store, holding it, under a file, or a folder of other
    files (which ``run`` never deletes)."""
    if case == "under a file":
        (tmp / "notes.txt").write_text("the user's")
        return tmp / "notes.txt" / "out.zarr"
    if case == "other files":
        (tmp / "out.zarr").mkdir()
        (tmp / "out.zarr" / "data.csv").write_text("the user's")
    return {"inside": tmp / "in.zarr" / "sub", "contains": tmp}.get(case, tmp / "out.zarr")


@pytest.mark.parametrize("case", ["inside", "contains", "under a file", "other files"])
def test_plan_raises_runs_refusal_of_the_output_as_the_command_line_does(
    tmp_path: Path, cli, case: str
) -> None:
    """``pipeline.plan`` did not judge the output: an output in the input's store was planned,
    though ``run`` raised OutputError and ``pipeline plan`` and ``run --dry-run`` exited 1;
    a script that checked its config with ``plan()`` ran into the refusal at ``run()``. It
    raises ``run``'s OutputError now, its words and fields, where the command line's plan
    refuses, and writes nothing (no lock, no output folder)."""
    from pipeline.errors import api_words

    small_input(tmp_path)
    path = write_config(tmp_path, tmp_path / "in.zarr", _refused_output(tmp_path, case))
    before = file_states(tmp_path)
    with pytest.raises(OutputError) as planned:
        pipeline.plan(path)
    assert file_states(tmp_path) == before
    with pytest.raises(OutputError) as ran:
        pipeline.run(path)
    assert (str(planned.value), planned.value.data) == (str(ran.value), ran.value.data)
    for args in (("plan", path), ("run", path, "--dry-run")):
        rc, _, err = cli(*args)
        assert rc == 1 and api_words(one_line_error(err)[len("error: ") :]) == str(planned.value)
    assert file_states(tmp_path) == before


def test_a_plan_reprs_in_a_line_and_prints_the_command_lines_table(tmp_path: Path, cli) -> None:
    """``pipeline.plan(cfg)`` ending a notebook's cell showed some 6,000 characters of
    dataclass fields and no table. Its ``repr()`` is one short line of the essentials now, as
    a Dask array's is; ``str()`` and the notebook's ``_repr_html_`` the table ``pipeline
    plan`` prints; the fields are kept.
    A plan says what ``run`` does at the output, as ``pipeline plan``'s row does, in the
    call's words: it had said "`run` creates it", the command line's (h72a)."""
    small_input(tmp_path)
    out = tmp_path / "out.zarr"
    path = write_config(tmp_path, tmp_path / "in.zarr", out)
    p = pipeline.plan(path)
    shown = repr(p)
    assert "\n" not in shown and len(shown) < 300, shown
    for part in (f"{tmp_path / 'in.zarr'} (30, 70) float32", f"{out} (30, 70) float32", "cpu"):
        assert part in shown, shown
    assert f"{p.n_blocks} blocks of {tuple(p.block)}" in shown and p.chain[0].name in shown
    rc, printed, _ = cli("plan", path)
    assert rc == 0, printed
    api_row = "\n  output now   absent: `pipeline.run(config)` creates it\n"
    cli_row = "\n  output now   absent: `run` creates it\n"
    assert api_row in str(p) and cli_row in printed
    assert p.output_now == "absent: `pipeline.run(config)` creates it"
    assert str(p).replace(api_row, cli_row).splitlines()[1:] == printed.splitlines()[1:]
    assert p._repr_html_().startswith("<pre>") and "output now" in p._repr_html_()


#: A command line's words in a string: a command named as typed (`run`, `pipeline verify`,
#: `run --resume`), or a flag (--overwrite).
_COMMAND_WORDS = re.compile(r"`(?:pipeline )?(?:run|plan|verify)\b(?!\()|--[a-z]")


def _strings(value: Any, at: str = "") -> list[tuple[str, str]]:
    """Every string in ``value``, a result of the API (a dataclass, its lists, tuples and
    mappings, at any depth), with where it is (``.notes[0]``)."""
    import dataclasses

    if isinstance(value, str):
        return [(at, value)]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [
            s
            for f in dataclasses.fields(value)
            for s in _strings(getattr(value, f.name), f"{at}.{f.name}")
        ]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in _strings(v, f"{at}[{k!r}]")]
    if isinstance(value, (list, tuple)):
        return [s for i, v in enumerate(value) for s in _strings(v, f"{at}[{i}]")]
    return []


def test_the_apis_results_say_no_command_line_words(tmp_path: Path, cli) -> None:
    """``pipeline.plan(config)`` had told a Python user "`run` creates it" (``output_now``) and
    "the input does not exist yet: `run` generates it first" (``notes``), the command line's
    words, which the table ``str(p)`` showed too. Every string of the API's results (the
    plan's fields and table, the summary's, verify's result's) names the call
    (``pipeline.run(config)``, ``overwrite=True``), never a command or flag; the command line
    keeps its own words."""
    path = generated_config(
        tmp_path,
        {"shape": [20, 30], "chunks": [10, 10], "dtype": "int16", "when_missing": True},
        stages=[{"op": "add", "value": 1}],
    )
    rc, printed, _ = cli("plan", path)
    assert rc == 0 and "`run` generates it first" in printed and "`run` creates it" in printed
    results = {"plan, no input": pipeline.plan(path)}
    assert results["plan, no input"].notes == (
        "the input does not exist yet: `pipeline.run(config)` generates it first",
    )
    results["run"] = pipeline.run(path)
    results["plan, complete"] = pipeline.plan(path)
    results["verify"] = pipeline.verify(path)
    doc = yaml.safe_load(path.read_text())
    doc["output"]["overwrite"] = True
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    results["plan, output.overwrite: true"] = pipeline.plan(path)
    results["run, output.overwrite: true"] = pipeline.run(path)
    said = [
        (name, at, text)
        for name, result in results.items()
        for at, text in [*_strings(result), ("str()", str(result))]
        if _COMMAND_WORDS.search(text)
    ]
    assert not said, said


def test_plan_of_an_output_a_plain_run_refuses_names_the_call_that_writes_it(
    tmp_path: Path, cli
) -> None:
    """Where a plain ``run`` refuses what is at the output but ``overwrite=True`` replaces it,
    ``plan`` returns, as ``pipeline plan`` exits 0, its ``output_now`` naming that call in
    the API's words (the command line's row names `run --overwrite`); nothing is written."""
    path, out, states = _a_finished_output(tmp_path)
    p = pipeline.plan(path)
    assert p.output_now == "complete: `pipeline.run(config, overwrite=True)` replaces it"
    rc, printed, _ = cli("plan", path)
    assert rc == 0 and "complete: `run --overwrite` replaces it" in printed
    with pytest.raises(OutputError, match=r"overwrite=True"):
        pipeline.run(path)
    assert file_states(out) == states


def _overwriting_config(tmp: Path, **sections: Any) -> tuple[Path, Path]:
    """A small input and a config, ``output.overwrite: true`` (``sections`` added), whose
    output a first run has made complete: (the config's path, the output)."""
    small_input(tmp)
    out = tmp / "out.zarr"
    path = write_config(tmp, tmp / "in.zarr", out, output={"overwrite": True}, **sections)
    pipeline.run(path)
    return path, out


@pytest.mark.parametrize("given", ["path", "Config", "mapping"])
def test_overwrite_false_given_wins_over_the_configs_output_overwrite(
    tmp_path: Path, given: str
) -> None:
    """``pipeline.run(config, overwrite=False)`` of a config with ``output.overwrite: true``
    had replaced its complete output ("8 of 8 blocks written"): the False given was taken for
    the command line's absent ``--overwrite``, so the config's true won (h71w). A value given
    wins over the config, as an argument does in any Python API (xarray's ``to_zarr(mode=)``):
    the output is refused, byte for byte untouched, the line naming ``overwrite=True`` (not
    the plain call, which is what the caller said no to); NumPy's False too. ``overwrite=None``
    and leaving it out are the config's: they replace it."""
    path, out = _overwriting_config(tmp_path)
    states = file_states(out)
    config = {
        "path": path,
        "Config": load_config(path),
        "mapping": yaml.safe_load(path.read_text()),
    }[given]
    for no in (False, np.False_):
        with pytest.raises(OutputError) as info:
            pipeline.run(config, overwrite=no)
        line = str(info.value)
        assert "already exists" in line and "overwrite=True" in line, line
        assert "output.overwrite" not in line and len(line.splitlines()) == 1, line
        assert file_states(out) == states
    for left in ({"overwrite": None}, {}):  # the config's: replaced
        assert pipeline.run(config, **left).status == "complete"
        assert file_states(out) != states
        states = file_states(out)


def test_overwrite_false_given_keeps_the_configs_file_and_line(tmp_path: Path, cli) -> None:
    """The explicit False goes with the run, not into a copy of the config, which would say
    nothing of where its keys were written (``locate_config`` knows a Config by itself): a
    loaded Config's refusal of a key still begins ``run.yaml:LINE:``, with the key, as the
    file's path's and the command line's do; the output untouched. The command line (no
    ``--overwrite``: the config's) still replaces the output."""
    path, out = _overwriting_config(tmp_path)
    states = file_states(out)
    rc, _, err = cli("run", path)  # --overwrite left out: output.overwrite: true replaces it
    assert rc == 0 and file_states(out) != states, err
    states = file_states(out)
    doc = yaml.safe_load(path.read_text())
    doc["cluster"]["host_memory_limit"] = "1MiB"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    rc, _, err = cli("run", path)
    lines = {str(path): one_line_error(err)}
    for config in (path, load_config(path)):
        with pytest.raises(PlanError) as info:
            pipeline.run(config, overwrite=False)
        e = info.value
        assert (e.file, type(e.line)) == (str(path), int) and e.key is not None, e
        assert f"error: {e}" == lines[str(path)] and rc == 1, (e, lines)
    assert file_states(out) == states


def test_a_summary_and_a_verify_result_repr_in_a_line_and_print_their_tables(
    tmp_path: Path, cli
) -> None:
    """A run's Summary and verify's result showed every field, in a notebook or at a
    ``print(repr(...))`` (a summary's versions, hardware and config: hundreds of characters).
    Their ``repr()`` is one line of the essentials; ``str()`` the table the command line
    prints (verify's with its advice, what ``assert result.ok, result`` says); the fields kept."""
    small_input(tmp_path)
    out = tmp_path / "out.zarr"
    path = write_config(tmp_path, tmp_path / "in.zarr", out)
    summary = pipeline.run(path)
    shown = repr(summary)
    assert "\n" not in shown and len(shown) < 300, shown
    n = summary.blocks_total
    assert shown.startswith(f"<Summary complete: {out}; {n} of {n} blocks written, ")
    lines = str(summary).splitlines()
    assert lines[0] == "run summary" and len(lines) == len(summary.rows()) + 1
    for line, (label, text) in zip(lines[1:], summary.rows(), strict=True):
        assert line.split() == [*label.split(), *text.split()], line
    assert summary.bytes_in > 0 and "run summary" in summary._repr_html_()

    result = pipeline.verify(path)
    shown = repr(result)
    assert shown == (
        f"<VerifyResult ok: {result.checked} of {result.total} blocks checked, 0 mismatched; "
        "output complete>"
    ), shown
    rc, printed, _ = cli("verify", path)
    assert rc == 0 and str(result).splitlines() == printed.splitlines()
    zarr.open_array(str(out), mode="r+")[0, 0] = 1e6
    result = pipeline.verify(path, all=True)
    shown = repr(result)
    assert shown.startswith("<VerifyResult failed: ") and "(first: block [0, 0])" in shown
    assert "\n" not in shown and result.advice is not None and result.advice in shown
    assert str(result).splitlines()[-1].split(maxsplit=1) == ["advice", result.advice]
    assert result.mismatched == [(0, 0)] and not result.ok


SCRIPT = """
import json, signal, sys
from distributed import Client, LocalCluster
import pipeline

if __name__ == "__main__":
    # Ctrl-C raises KeyboardInterrupt, as in a notebook's kernel, however this process was
    # started (a shell's background job inherits SIGINT ignored)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=":0") as cluster:
        with Client(cluster) as client:
            try:
                pipeline.run(sys.argv[1], client=client)
                doc = {"type": None}
            except KeyboardInterrupt as e:  # what a notebook's Ctrl-C handler catches
                doc = {
                    "type": type(e).__name__,
                    "pipeline_error": isinstance(e, pipeline.PipelineError),
                    "str": str(e),
                    "what": e.what,
                    "where": e.where,
                    "state": e.state,
                }
            print(json.dumps(doc), flush=True)
            done = pipeline.run(sys.argv[1], client=client, resume=True)
            print(json.dumps({"resumed": done.status}), flush=True)
"""


def test_ctrl_c_in_a_script_is_a_keyboard_interrupt_that_says_the_output_is_resumable(
    tmp_path: Path,
) -> None:
    """A real SIGINT to a script running ``pipeline.run`` on its own client (as a notebook's
    interrupt reaches its kernel): caught as KeyboardInterrupt, an ``Interrupted`` of one line
    naming the output and ``resume=True``; the same script then resumes it to complete."""
    from tests.faultkit import many_blocks_config, many_blocks_input, wait_for_markers

    out = tmp_path / "out.zarr"
    (tmp_path / "script.py").write_text(SCRIPT)
    for rows in (1500, 6000):  # a larger input where the run outpaced the signal
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(tmp_path / "in.zarr", ignore_errors=True)
        many_blocks_input(tmp_path / "in.zarr", rows)
        cfg = many_blocks_config(tmp_path / "in.zarr", out)
        (tmp_path / "run.yaml").write_text(yaml.safe_dump(cfg))
        proc = subprocess.Popen(
            [sys.executable, str(tmp_path / "script.py"), str(tmp_path / "run.yaml")],
            env=env(),
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert wait_for_markers(proc, out, 3, timeout=300) > 0, "ended before 3 blocks"
            proc.send_signal(signal.SIGINT)
            stdout, stderr = proc.communicate(timeout=300)
        finally:
            end_process(proc)
        assert proc.returncode == 0, stderr
        caught, resumed = (json.loads(line) for line in stdout.splitlines()[-2:])
        if caught["type"] is not None:
            break
    assert caught["type"] == "Interrupted" and not caught["pipeline_error"], (stdout, stderr)
    assert (caught["what"], caught["where"], caught["state"]) == ("run", str(out), "incomplete")
    assert len(caught["str"].splitlines()) == 1 and "resume=True" in caught["str"]
    assert resumed == {"resumed": "complete"}
    assert status(out) == "complete"


def test_interrupted_is_a_keyboard_interrupt_and_keeps_its_fields_when_pickled() -> None:
    import pickle

    e = pipeline.Interrupted("generate", "/data/in.zarr")
    assert isinstance(e, KeyboardInterrupt) and not isinstance(e, pipeline.PipelineError)
    back = pickle.loads(pickle.dumps(e))
    assert (back.what, back.where, str(back)) == ("generate", "/data/in.zarr", str(e))
    assert len(str(e).splitlines()) == 1
    done = pickle.loads(pickle.dumps(pipeline.Interrupted("run", "/data/out.zarr", "complete")))
    assert (done.what, done.where, done.state) == ("run", "/data/out.zarr", "complete")
    assert not done.joined  # the run's own workers; a joined cluster's run on (h60j)
    on_theirs = pickle.loads(pickle.dumps(pipeline.Interrupted("run", "/o", joined=True)))
    assert (on_theirs.state, on_theirs.joined) == ("incomplete", True)


def test_an_unknown_option_names_the_valid_ones(tmp_path: Path) -> None:
    small_input(tmp_path)
    path = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr")
    with pytest.raises(pipeline.OptionError) as info:
        pipeline.run(path, overwite=True)
    e = info.value
    assert isinstance(e, TypeError) and isinstance(e, ConfigError)
    assert (e.option, e.suggestion) == ("overwite", "overwrite")
    assert {"overwrite", "resume", "report", "summary_json", "progress"} <= set(e.valid)
    assert len(str(e).splitlines()) == 1
    with pytest.raises(pipeline.OptionError) as far:
        pipeline.run(path, colour="blue")
    assert far.value.suggestion is None
    assert not (tmp_path / "out.zarr").exists()


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("overwrite", "false"),  # a non-empty string is true: it would replace the output
        ("resume", "no"),
        ("progress", "bogus"),
        ("interval", -1),
        ("interval", True),
        ("interval", np.True_),
        ("interval", "2"),
        ("interval", None),
        ("interval", float("nan")),
        ("interval", np.float64("inf")),
        ("interval", 10**400),  # no float
        ("interval", 1e-300),  # no progress loop prints that often (MIN_INTERVAL)
        ("interval", np.float64(0.009)),
        ("overwrite", "none"),  # None leaves it to the config; "none" is no value it takes
        ("overwrite", np.int64(1)),
        ("report", 3),
    ],
)
def test_an_option_of_the_wrong_kind_is_refused_before_anything_is_touched(
    tmp_path: Path, option: str, value: Any
) -> None:
    path, out, before = _a_finished_output(tmp_path)
    with pytest.raises(pipeline.OptionError) as info:
        pipeline.run(path, **{option: value})
    assert info.value.option == option and len(str(info.value).splitlines()) == 1
    assert file_states(out) == before


_A_RUN: dict[str, Any] = {
    "input": {"store": "in.zarr"},
    "output": {"store": "out.zarr"},
    "stages": [{"op": "square"}],
}


@pytest.mark.parametrize(
    ("given", "key", "said"),
    [
        ({"foo": 1}, "foo", "unknown key 'foo' (valid keys: input, output, stages,"),
        ({"backend": "x"}, "backend", "backend: must be auto, gpu or cpu (got 'x')"),
        ({"stages": []}, "stages", "give at least one stage"),
        ({"stages": [{"op": "sqare"}]}, "stages.0", "unknown stage 'sqare'"),
        ({"stages": [{"op": "multiply", "factr": 2}]}, "stages.0.factr", "did you mean 'factor'"),
        ({"stages": [{"op": "multiply", "factor": "5"}]}, "stages.0.factor", "not text"),
        (  # pydantic's "Input should be a valid dictionary or instance of InputConfig"
            {"input": None},
            "input",
            "input: must be a mapping of its keys (store, array, storage_options, generate, "
            "mask_and_scale), not null",
        ),
        (  # pydantic's lax mode took true as 1 worker (helper-102)
            {"cluster": {"workers": True}},
            "cluster.workers",
            "cluster.workers: must be a whole number from 1 to 65536, not true/false",
        ),
        (
            {"chunking": {"target_bytes": False}},
            "chunking.target_bytes",
            "must be a size in bytes of at least 1 (or text such as '16GiB'), not true/false",
        ),
        (  # had been worded as if no stage were given
            {"stages": "square"},
            "stages",
            "stages: must be a list of stages, each a mapping naming its stage with op:, not "
            "text: write '- op: square' on a line under stages: (or stages: [{op: square}])",
        ),
        (
            {"stages": {"op": "multiply", "factor": 2}},
            "stages",
            "not one stage alone: write '- op: multiply'",
        ),
        ({"stages": ["square"]}, "stages.0", "write '- op: square' under stages:"),
        (  # "Input should be a valid tuple"
            {"cluster": {"gpus": 0}},
            "cluster.gpus",
            "cluster.gpus: must be a list of whole numbers from 0 to 65535: write it in brackets, "
            "gpus: [0]",
        ),
        (
            {"output": {"store": "out.zarr", "chunks": "64, 64"}},
            "output.chunks",
            "or auto: write it in brackets, chunks: [64, 64] (got '64, 64')",
        ),
        (  # xarray's form, by dimension name: had said only the list it takes (h82d)
            {"output": {"store": "out.zarr", "chunks": {"time": 1}}},
            "output.chunks",
            "or auto: one number per dimension, in the order of the array's dimensions, not "
            "a mapping by dimension name (xarray's chunks={...}): write it as a list, chunks: "
            "[...] (got ",
        ),
        (
            {"chunking": {"block": {"y": 4}}},
            "chunking.block",
            "not a mapping by dimension name (xarray's chunks={...}): write it as a list, "
            "block: [...]",
        ),
        (  # a union: pydantic's lines were one per alternative
            {"output": {"store": "out.zarr", "chunks": [0, 5]}},
            "output.chunks.0",
            "output.chunks.0: must be a whole number from 1 to 1099511627776 (got 0)",
        ),
        (
            {"cluster": {"device_memory_limit": "lots"}},
            "cluster.device_memory_limit",
            "not a size: 'lots'",
        ),
        (
            {"cluster": {"gpu_codec_slots": 2}},
            "cluster.gpu_codec_slots",
            "removed in this version",
        ),
        (  # refused before pydantic, as a file's is (problems.option_error)
            {"input": {"store": "https://h/in.zarr", "storage_options": {"headers": {"A": 1}}}},
            "input.storage_options.headers.A",
            "a header's value must be one string",
        ),
        (
            {"input": {"store": "s3://b/in.zarr", "storage_options": "key=SECRETX"}},
            "input.storage_options",
            "must be a mapping of fsspec options",
        ),
    ],
)
def test_the_config_made_from_keywords_is_one_config_error_line(
    tmp_path: Path, given: dict[str, Any], key: str, said: str
) -> None:
    """``pipeline.Config(...)`` (the model, made from keywords) gave pydantic's error: a line
    per problem (per alternative of a union), plus its URL, each quoting the value given
    (storage_options' secrets too). Now the one ConfigError line a config file or mapping
    gets, its key named, no value of storage_options said; and a file's and a mapping's
    errors still name the file and its line, or the mapping, not ``pipeline.Config()``
    (pydantic's model_validate calls a model's own ``__init__`` unless it is a base one)."""
    config = {**_A_RUN, **given}
    with pytest.raises(ConfigError) as info:
        pipeline.Config(**config)
    e = info.value
    assert len(str(e).splitlines()) == 1, e
    assert str(e).startswith("pipeline.Config(): ") and e.file == "pipeline.Config()", e
    assert "SECRETX" not in str(e) and "errors.pydantic.dev" not in str(e), e
    assert e.key == key and said in str(e), e
    assert e.line is None
    with pytest.raises(ConfigError) as info:
        pipeline.plan(config)
    assert str(info.value) == str(e).replace("pipeline.Config()", "the config mapping")
    # pydantic's model_validate: the same line, not pydantic's ValidationError (fix42-A)
    with pytest.raises(ConfigError) as info:
        pipeline.Config.model_validate(config)
    call = "pipeline.Config.model_validate()"
    assert str(info.value) == str(e).replace("pipeline.Config()", call)
    assert (info.value.file, info.value.key, info.value.line) == (call, key, None)
    # and model_validate_json: pydantic's ValidationError had quoted each value given,
    # storage_options' secrets too, and storage_options' own checks were skipped (review43)
    with pytest.raises(ConfigError) as info:
        pipeline.Config.model_validate_json(json.dumps(config))
    call = "pipeline.Config.model_validate_json()"
    assert str(info.value) == str(e).replace("pipeline.Config()", call)
    assert (info.value.file, info.value.key, info.value.line) == (call, key, None)
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    f = info.value
    assert (f.file, f.key) == (str(path), key) and f.line is not None, f
    # a null in a file is a section left empty there; through the API, None (review44)
    if given.get("input", {}) is None:
        assert str(f) == (
            f"{path}:{f.line}: input: is empty (nothing under it, or only comments, which "
            "YAML reads as null): write its keys on the lines below it, indented (it takes a "
            "mapping of its keys: store, array, storage_options, generate, mask_and_scale)"
        )
        return
    assert str(f) == str(e).replace("pipeline.Config()", f"{path}:{f.line}"), f


def _multi_line_objects(tmp: Path) -> dict[str, Any]:
    """Objects a notebook holds whose reprs span lines, given where the config takes text or a
    number: the Dataset of the input (in place of its path), a NumPy array."""
    import xarray as xr

    x = small_input(tmp)
    ds = xr.Dataset({f"v{i}": (("y", "x"), x) for i in range(8)}, attrs={"title": "t"})
    ds.to_zarr(tmp / "ds.zarr", mode="w", zarr_format=2)
    return {
        "dataset": ds,
        "numpy": np.zeros((30, 30)),
    }


@pytest.mark.parametrize("case", ["dataset", "numpy"])
def test_an_object_whose_repr_spans_lines_is_quoted_in_one_line(tmp_path: Path, case: str) -> None:
    """``pipeline.run({"input": {"store": ds}})``, a new user's first try with the Dataset
    in hand: the ConfigError quoted the object's repr whole, a dozen lines in what is one
    line (an xarray.Dataset's, a NumPy array's). Now its repr in one line, cut to 100
    characters; nothing is written."""
    given = _multi_line_objects(tmp_path)[case]
    out = tmp_path / "out.zarr"
    for where, config in [
        ("input.store", {"input": {"store": given}, "stages": [{"op": "square"}]}),
        (
            "stages.0.factor",
            {
                "input": {"store": str(tmp_path / "in.zarr")},
                "stages": [{"op": "multiply", "factor": given}],
            },
        ),
    ]:
        config = {**config, "output": {"store": str(out)}, "backend": "cpu"}
        for call in (pipeline.plan, pipeline.run, lambda c: pipeline.Config(**c)):
            with pytest.raises(ConfigError) as info:
                call(config)
            e = info.value
            assert len(str(e).splitlines()) == 1, e
            assert e.key == where, e
            got = str(e).split("(got ", 1)[1]
            assert len(got) <= 100 + len(")"), e
            assert got.startswith(" ".join(repr(given).split())[:40]), e
    assert not out.exists()


def test_an_object_given_where_a_path_or_address_is_taken_names_the_key_and_the_text(
    tmp_path: Path,
) -> None:
    """A store object given through the API where the config takes its path or URL (a
    zarr-python ``LocalStore``, ``MemoryStore``, ``FsspecStore``, an fsspec mapper, a zarr
    array as ``input.array``), or a ``distributed.LocalCluster`` and a port number where
    the cluster takes an address, had been pydantic's "Input should be a valid string": the
    line now names the key and the text it takes (the local path the store was opened at,
    where it has one; a cluster's address), before anything is written. A pathlib.Path is
    taken as the path it names, for a store; a NumPy dtype (or scalar type) as its name,
    for a generated input's dtype (refused as "Input should be a valid string" too)."""
    import fsspec
    import zarr

    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    make_array(tmp_path / "in.zarr", x, (3, 4))
    local = zarr.storage.LocalStore(tmp_path / "in.zarr")
    out = tmp_path / "out.zarr"
    run = {"input": {"store": str(tmp_path / "in.zarr")}, "output": {"store": str(out)}}
    said = "must be the store's path or URL as text (such as '/data/{}.zarr' or "
    memory = zarr.storage.MemoryStore()
    remote = zarr.storage.FsspecStore.from_url("memory://somewhere")
    cases = [
        ("input.store", local, said.format("in"), f"here {str(tmp_path / 'in.zarr')!r}"),
        ("input.store", fsspec.get_mapper(str(tmp_path / "in.zarr")), said.format("in"), "here"),
        # in this process's memory, where no path names it: written to a store first (its
        # line had said to give "the path or URL it was opened at", which it has none of)
        ("output.store", memory, said.format("out"), "MemoryStore, which this process holds"),
        ("input.store", x, said.format("in"), "not a NumPy array, which this process holds"),
        ("input.store", zarr.create_array(memory, data=x), said.format("in"), "write it to a"),
        ("output.store", remote, said.format("out"), "not a zarr FsspecStore: give the path"),
        ("input.array", zarr.open_array(local), "must be the array's path inside the", "'' here"),
        ("cluster.dashboard", 8787, "must be the dashboard's address as text", "not an integer"),
    ]
    for key, given, wanted, fix in cases:
        section, name = key.split(".")
        config = {**run, section: {**run.get(section, {}), name: given}}
        for call in (pipeline.plan, pipeline.run, lambda c: pipeline.Config(**c)):
            with pytest.raises(ConfigError) as info:
                call({**config, "stages": [{"op": "square"}], "backend": "cpu"})
            e = info.value
            assert e.key == key and "\n" not in str(e), e
            assert f"{key}: {wanted}" in str(e) and fix in str(e), e
            assert "valid string" not in str(e), e
        assert not out.exists()
    from distributed import LocalCluster

    with LocalCluster(n_workers=0, processes=False, dashboard_address=":0") as cluster:
        with pytest.raises(ConfigError) as info:
            pipeline.config.ClusterConfig(scheduler=cluster)
        assert str(info.value).startswith(
            "pipeline.config.ClusterConfig(): scheduler: must be the scheduler's address as "
            "text, such as 'tcp://host:8786', or 'local', not a distributed LocalCluster: give "
            f"its address, here {cluster.scheduler_address!r}"
        ), info.value
    generate = pipeline.config.GenerateConfig
    assert [generate(shape=[2], dtype=d).dtype for d in (np.int16, np.dtype("f4"))] == [
        "int16",
        "float32",
    ]
    with pytest.raises(ConfigError) as info:
        generate(shape=[2], dtype=np.float32(1))
    assert str(info.value).startswith(
        "pipeline.config.GenerateConfig(): dtype: must be a NumPy dtype's name as text, such "
        "as 'float32' (or a NumPy dtype), not a NumPy float32 (got "
    ), info.value
    paths = {"input": {"store": tmp_path / "in.zarr"}, "output": {"store": out}}
    config = pipeline.Config(**{**paths, "stages": [{"op": "square"}]})
    assert (config.input.store, config.output.store) == (str(tmp_path / "in.zarr"), str(out))


@pytest.mark.parametrize("zarr_format", [2, 3], ids=lambda f: f"v{f}")
def test_an_xarray_object_given_for_a_store_or_an_array_names_its_path(
    tmp_path: Path, zarr_format: int
) -> None:
    """An xarray Dataset opened with ``xr.open_zarr`` given as ``input.store``, or its
    DataArray ``ds["t"]`` as ``input.array``, as a notebook's user may write it: the line said
    "not a mapping" (a Dataset is a mapping of its variables) and "not a xarray DataArray",
    with the fix "give the path or URL it was opened at" and no path. It says what the object
    is, and the store's path it was opened from (its ``encoding["source"]``) and the
    variable's name; the output's store is named as the one to write to (h82d)."""
    xr = pytest.importorskip("xarray")
    src = tmp_path / "in.zarr"
    data = np.arange(12.0).reshape(3, 4)
    with warnings.catch_warnings():  # zarr: v3 consolidated metadata is not in the spec yet
        warnings.simplefilter("ignore")
        xr.Dataset({"t": (("y", "x"), data)}).to_zarr(str(src), zarr_format=zarr_format)
    ds = xr.open_zarr(str(src))
    out = tmp_path / "out.zarr"
    run = {"input": {"store": str(src), "array": "t"}, "output": {"store": str(out)}}
    cases = [
        (
            "input.store",
            ds,
            "not an xarray Dataset, the data itself: give the path of the "
            f"Zarr store it was opened from, here {str(src)!r} (got ",
        ),
        (
            "input.array",
            ds["t"],
            "not an xarray DataArray, the data itself: give its "
            "variable's path in the Zarr store ('t' here, after its group's path",
        ),
        (
            "input.array",
            ds,
            "not an xarray Dataset, the data itself: give the path in the "
            "Zarr store of the variable to compute",
        ),
        (
            "input.store",
            ds["t"] * 2,
            "not an xarray DataArray, the data itself: write it to "
            "a Zarr store first (to_zarr(STORE)) and give that store's path (got ",
        ),
        (
            "output.store",
            ds,
            "not an xarray Dataset, the data itself: give the path of the "
            "Zarr store to write the output to (got ",
        ),
    ]
    for key, given, said in cases:
        section, name = key.split(".")
        config = {**run, section: {**run[section], name: given}, "stages": [{"op": "square"}]}
        for call in (pipeline.plan, lambda c: pipeline.Config(**c)):
            with pytest.raises(ConfigError) as info:
                call(config)
            e = info.value
            assert e.key == key and "\n" not in str(e), e
            assert f"{key}: must be the " in str(e) and said in str(e), e
            assert "a mapping" not in str(e) and "a xarray" not in str(e), e
    assert not out.exists()
    assert pipeline.plan(run | {"stages": [{"op": "square"}]}).input.shape == (3, 4)


def test_model_validate_json_is_one_config_error_line_never_quoting_the_text() -> None:
    """``pipeline.Config.model_validate_json``: text that is no JSON, or JSON that is no
    object, had been pydantic's ValidationError quoting the text whole (a credential in it
    too); a good one makes the config the mapping makes (review43)."""
    for text in ('{"input": {"store": "s3://b/x", "storage_options": {"key": "SECRETX', "[1]"):
        with pytest.raises(ConfigError) as info:
            pipeline.Config.model_validate_json(text)
        e = info.value
        assert str(e).startswith("pipeline.Config.model_validate_json(): takes a "), e
        assert "SECRETX" not in str(e) and "\n" not in str(e), e
    assert pipeline.Config.model_validate_json(json.dumps(_A_RUN)) == pipeline.Config(**_A_RUN)


def test_model_validate_strings_names_the_list_it_cannot_read() -> None:
    """Pydantic's strings mode reads no list: ``model_validate_strings`` of a whole config
    (its ``stages``) or of ``gpus: ["0"]`` had been "(top level): Input should be a valid
    string", naming no key, a tuple quoted whole (a credential in it too); now the list's
    key and the calls that take it (review44). Text values still make a section."""
    cluster = pipeline.config.ClusterConfig
    assert cluster.model_validate_strings({"workers": "2", "timeout": "30"}).workers == 2
    cases = [
        (pipeline.Config, {**_A_RUN, "stages": ({"op": "square"},)}, "stages"),
        (cluster, {"gpus": ["0"]}, "gpus"),
        (
            pipeline.config.InputConfig,
            {"store": "s3://b/x", "storage_options": {"token": ("SECRETX",)}},
            "storage_options.token",
        ),
    ]
    for model, given, key in cases:
        with pytest.raises(ConfigError) as info:
            model.model_validate_strings(given)
        e = info.value
        call = f"pipeline.{'config.' if model is not pipeline.Config else ''}{model.__name__}"
        assert str(e).startswith(f"{call}.model_validate_strings(): {key}: is a list, "), e
        assert f"{call}.model_validate()" in str(e) and "SECRETX" not in str(e), e
        assert (e.key, e.line, len(str(e).splitlines())) == (key, None, 1), e


@pytest.mark.parametrize(
    ("model", "given", "key", "meant"),
    [
        ("ClusterConfig", {"gpus": "0"}, "gpus", {"gpus": [0]}),
        ("ClusterConfig", {"gpus": "0,1"}, "gpus", {"gpus": [0, 1]}),
        ("GenerateConfig", {"shape": "4096"}, "shape", {"shape": [4096]}),
        (
            "InputConfig",
            {"store": "s3://b/x", "storage_options": {"anon": "false"}},
            "storage_options.anon",
            {"store": "s3://b/x", "storage_options": {"anon": False}},
        ),
        (
            "Config",
            {**_A_RUN, "stages": "square"},
            "stages",
            {**_A_RUN, "stages": [{"op": "square"}]},
        ),
    ],
)
def test_model_validate_strings_offers_a_fix_it_names_a_call_for(
    model: str, given: dict[str, Any], key: str, meant: dict[str, Any]
) -> None:
    """``model_validate_strings`` takes text alone and reads no list, so the YAML spellings
    its lines had offered (``gpus: [0]``, ``write anon: false ... a YAML boolean,
    unquoted``, ``'- op: square' on a line under stages:``) were fixes it cannot take: the
    line names the call that takes the value (``model_validate()``, or ``_json()``), and
    that call takes it."""
    cls = pipeline.Config if model == "Config" else getattr(pipeline.config, model)
    with pytest.raises(ConfigError) as info:
        cls.model_validate_strings(given)
    e = info.value
    call = f"pipeline.{'config.' if model != 'Config' else ''}{model}"
    line = str(e)
    assert line.startswith(f"{call}.model_validate_strings(): {key}: "), line
    assert f"give the config to {call}.model_validate() with {key} as " in line, line
    assert f"or as JSON to {call}.model_validate_json()" in line, line
    for yaml_fix in ("brackets", "unquoted", "on a line under", ": [0]", ": false"):
        assert yaml_fix not in line, line
    assert e.key == key and len(line.splitlines()) == 1
    made = cls.model_validate(meant)  # the fix named is one that call takes
    assert made == cls.model_validate_json(json.dumps(meant))


@pytest.mark.parametrize(
    ("section", "given", "key", "said", "place"),
    [
        ("InputConfig", {"stor": "in.zarr"}, "stor", "did you mean 'store'?", "input"),
        (
            "InputConfig",
            {"store": "s3://b/in.zarr", "storage_options": {"params": {"sig": "SECRET%2BX"}}},
            "storage_options.params.sig",
            "holds a percent escape",
            "input",
        ),
        (
            "InputConfig",
            {"store": "s3://b/in.zarr", "storage_options": "key=SECRETX"},
            "storage_options",
            "must be a mapping of fsspec options",
            "input",
        ),
        ("OutputConfig", {"store": "o.zarr", "spare_files": 2}, "spare_files", "removed", "output"),
        (
            "OutputConfig",
            {"store": "o.zarr", "shards": [0]},
            "shards.0",
            "shards.0: must be a whole number from 1 to 1099511627776 (got 0)",
            "output",
        ),
        (
            "CodecConfig",
            {"level": 99},
            "level",
            "level: must be a whole number from -7 to 22 (got 99)",
            "output.codec",
        ),
        (
            "GenerateConfig",
            {"shape": "big"},
            "shape",
            "shape: must be a list of whole numbers from 1 to 281474976710656",
            "input.generate",
        ),
        ("ChunkingConfig", {"target_bytes": "lots"}, "target_bytes", "not a size", "chunking"),
        ("ClusterConfig", {"gpu_codec_slots": 1}, "gpu_codec_slots", "removed", "cluster"),
        (
            "ClusterConfig",
            {"workers": 0},
            "workers",
            "workers: must be a whole number from 1 to 65536 (got 0)",
            "cluster",
        ),
        ("ClusterConfig", {"host_memory_limit": 2.0}, "host_memory_limit", "(0, 1]", "cluster"),
    ],
)
def test_a_section_made_from_keywords_is_one_config_error_line(
    tmp_path: Path, section: str, given: dict[str, Any], key: str, said: str, place: str
) -> None:
    """Each section's model (``pipeline.config.ClusterConfig(workers=0)``, ...) gave
    pydantic's lines too; now the one line naming the call and the keyword, as a config file
    names the same key at its line (a removed key: why, as there, and ``e.removed``)."""
    model = getattr(pipeline.config, section)
    with pytest.raises(ConfigError) as info:
        model(**given)
    e = info.value
    assert len(str(e).splitlines()) == 1, e
    assert str(e).startswith(f"pipeline.config.{section}(): "), e
    assert e.file == f"pipeline.config.{section}()" and e.line is None, e
    assert "SECRET" not in str(e) and "errors.pydantic.dev" not in str(e), e
    assert e.key == key and said in str(e), e
    with pytest.raises(ConfigError) as info:  # model_validate too (fix42-A)
        model.model_validate(given)
    call = f"pipeline.config.{section}.model_validate()"
    assert str(info.value) == str(e).replace(f"pipeline.config.{section}()", call)
    # the same keys at the section's place in a file: the file's line names them so
    config: dict[str, Any] = json.loads(json.dumps(_A_RUN))
    *parents, last = place.split(".")
    target = config
    for k in parents:
        target = target[k]
    target[last] = {**target.get(last, {}), **given}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    f = info.value
    assert f.file == str(path) and f.key == f"{place}.{key}" and f.line is not None, f
    assert said in str(f) and getattr(f, "removed", None) == getattr(e, "removed", None), f


def test_every_config_model_made_from_keywords_names_an_unknown_one() -> None:
    """The kind, not a list: every model :mod:`pipeline.config` exports, made from
    keywords with one it does not take, is the one line naming it (a new section too)."""
    import pydantic

    models = [
        getattr(pipeline.config, n)
        for n in pipeline.config.__all__
        if isinstance(getattr(pipeline.config, n), type)
        and issubclass(getattr(pipeline.config, n), pydantic.BaseModel)
    ]
    assert len(models) >= 7 and pipeline.Config in models
    for model in models:
        with pytest.raises(ConfigError) as info:
            model(bogus_key=1)
        e = info.value
        assert e.key == "bogus_key" and len(str(e).splitlines()) == 1, (model, e)
        assert "unknown key 'bogus_key'" in str(e), (model, e)


def test_a_config_made_from_keywords_is_the_one_a_mapping_makes() -> None:
    """The constructor words only errors: a valid config from keywords, sections given as
    mappings or as models, is the one ``parse_config`` makes of the mapping."""
    from pipeline.config import ClusterConfig, InputConfig, parse_config

    made = pipeline.Config(**_A_RUN, cluster={"workers": 2})
    assert made == parse_config({**_A_RUN, "cluster": {"workers": 2}})
    assert made == pipeline.Config(
        **{**_A_RUN, "input": InputConfig(store="in.zarr")}, cluster=ClusterConfig(workers=2)
    )


@pytest.mark.parametrize(
    ("dtype", "stage", "one", "other"),
    [
        ("int16", "multiply", 2, 2.0),  # int16 * 2 is int16, * 2.0 float64
        ("float16", "multiply", 2, np.float32(2)),  # float16 * np.float32(2) is float32
        ("float32", "multiply", 2.0, np.float64(2)),
        ("uint8", "multiply", np.int8(-1), np.int16(-1)),
        ("float32", "add", 0.0, -0.0),  # -0.0 + 0.0 is 0.0, -0.0 + -0.0 is -0.0
    ],
)
def test_configs_whose_runs_differ_are_unequal_and_those_that_do_not_hash_alike(
    tmp_path: Path, dtype: str, stage: str, one: Any, other: Any
) -> None:
    """``==`` of two configs says whether they describe the same run: a stage's scalars of
    other kinds (a weak int, a weak float, NumPy's strongly typed scalars, -0.0 for 0.0), equal
    to Python, plan other dtypes or compute other bits, and a resume of the one's output with
    the other is refused as "the stages changed"; they had compared equal. Configs that are
    the same run (a file's typed number and the NumPy scalar, a pickled copy) are equal and
    hash alike, storage_options and all: pydantic's hash of a frozen config had raised
    ``TypeError: unhashable type: 'dict'``."""
    make_array(tmp_path / "in.zarr", np.arange(12, dtype=dtype).reshape(3, 4), (3, 4))
    key = "factor" if stage == "multiply" else "value"

    def config(scalar: Any) -> pipeline.Config:
        return pipeline.Config(
            input={"store": str(tmp_path / "in.zarr"), "storage_options": {"auto_mkdir": True}},
            output={"store": str(tmp_path / "out.zarr")},
            stages=[{"op": stage, key: scalar}],
            backend="cpu",
        )

    a, b = config(one), config(other)
    assert one == other  # to Python
    assert pipeline.plan(a).fingerprint() != pipeline.plan(b).fingerprint()  # to a resume
    assert a != b and a.stages != b.stages and (a == b) is False
    assert len({a, b}) == 2
    for scalar in (one, other):
        made = config(scalar)
        typed = (
            {"dtype": scalar.dtype.name, "value": scalar.item()}
            if isinstance(scalar, np.generic)
            else scalar
        )
        mapping = made.model_dump()
        mapping["stages"] = [{"op": stage, key: typed}]
        for same in (
            pipeline.Config.model_validate(mapping),
            pipeline.Config.model_validate_json(made.model_dump_json()),
            pickle.loads(pickle.dumps(made)),
        ):
            assert same == made and hash(same) == hash(made)
            assert pipeline.plan(same).fingerprint() == pipeline.plan(made).fingerprint()
    assert len({a, config(one), b, config(other)}) == 2


def test_a_memory_limit_of_bytes_is_not_the_fraction_written_alike() -> None:
    """``host_memory_limit: 1`` is a byte, ``1.0`` the whole budget: unequal configs (they
    had compared equal), and hashable."""
    from pipeline.config import ClusterConfig

    for key in ("host_memory_limit", "device_memory_limit"):
        as_bytes, as_fraction = ClusterConfig(**{key: 1}), ClusterConfig(**{key: 1.0})
        assert as_bytes != as_fraction
        assert len({as_bytes, as_fraction, ClusterConfig(**{key: 1})}) == 2


#: A config with every section (``input.generate`` and both codecs too), each valid.
_EVERY_SECTION: dict[str, Any] = {
    "input": {"store": "in.zarr", "generate": {"shape": [4], "codec": {}}},
    "output": {"store": "out.zarr", "codec": {}},
    "stages": [{"op": "square"}],
    "chunking": {},
    "cluster": {},
}


def _numeric_keys() -> list[tuple[str, ...]]:
    """Every key of a config (outside stages, whose scalars have their own check) that takes
    a number or a list of numbers, from the models' JSON schema (a new field too); a list's
    key ends in its first item's index, 0."""
    schema = pipeline.Config.model_json_schema()

    def walk(node: dict[str, Any], key: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        while "$ref" in node:
            node = schema["$defs"][node["$ref"].rsplit("/", 1)[-1]]
        found: list[tuple[Any, ...]] = []
        for alt in node.get("anyOf", [node]):
            alt = schema["$defs"][alt["$ref"].rsplit("/", 1)[-1]] if "$ref" in alt else alt
            if alt.get("type") in ("integer", "number"):
                found.append(key)
            elif alt.get("type") == "array" and key != ("stages",):
                found += walk(alt["items"], (*key, 0))
            for name, sub in alt.get("properties", {}).items():
                found += walk(sub, (*key, name))
        return list(dict.fromkeys(found))

    return walk(schema, ())


_SECTIONS = {
    ("input",): "InputConfig",
    ("input", "generate"): "GenerateConfig",
    ("input", "generate", "codec"): "CodecConfig",
    ("output",): "OutputConfig",
    ("output", "codec"): "CodecConfig",
    ("chunking",): "ChunkingConfig",
    ("cluster",): "ClusterConfig",
}


def test_a_boolean_is_no_number_for_any_numeric_key(tmp_path: Path) -> None:
    """``cluster: {workers: true}`` ran 1 worker, ``chunking.target_bytes: true`` was 1 byte:
    pydantic's lax mode takes true as 1 and false as 0 (helper-102). Every numeric key of
    every section, and every item of a list of numbers (found from the JSON schema, so a
    new one too), refuses a boolean (Python's or NumPy's) in the one line naming the key and
    what it takes: made from keywords (the section's constructor too), from a file (its
    line), or set by an override (its name)."""
    keys = _numeric_keys()
    dotted = {".".join(map(str, k)) for k in keys}
    assert {"cluster.workers", "cluster.gpus.0", "chunking.target_bytes", "output.chunks.0"} < (
        dotted
    ), dotted
    assert {"input.generate.codec.level", "cluster.host_memory_limit", "cluster.timeout"} < (
        dotted
    ), dotted
    for key in keys:
        said = ".".join(map(str, key))
        where = [i for i, k in enumerate(key) if isinstance(k, int)]
        field = key[: where[0]] if where else key  # the key that holds the number or list
        section = field[:-1]
        assert section in _SECTIONS, key  # a new section: add it above
        for flag in (True, False, np.True_):
            config = _with(key, flag)
            with pytest.raises(ConfigError) as info:
                pipeline.Config(**config)
            e = info.value
            assert e.key == said and str(e).endswith(", not true/false"), (key, e)
            assert str(e).startswith(f"pipeline.Config(): {said}: must be "), e
            assert len(str(e).splitlines()) == 1
            target = config
            for k in section:
                target = target[k]
            with pytest.raises(ConfigError) as info:
                getattr(pipeline.config, _SECTIONS[section])(**target)
            assert info.value.key == said.removeprefix(".".join(section) + "."), info.value
        path = tmp_path / "run.yaml"
        path.write_text(yaml.safe_dump(_with(key, True), sort_keys=False))
        with pytest.raises(ConfigError) as info:
            load_config(path)
        f = info.value
        line = path.read_text().splitlines()[f.line - 1] if f.line else ""
        assert f.key == said and "true" in line, (key, f, line)
        assert str(f).startswith(f"{path}:{f.line}: {said}: must be "), f
        path.write_text(yaml.safe_dump(_EVERY_SECTION, sort_keys=False))
        with pytest.raises(ConfigError) as info:
            load_config(path, {".".join(map(str, field)): [True] if where else True})
        o = info.value
        assert (o.key, o.override, o.line) == (said, ".".join(map(str, field)), None), o
    # the other forms each key took are still taken
    cluster = pipeline.config.ClusterConfig(
        workers=2.0, timeout=5, host_memory_limit="4 GiB", device_memory_limit=0.5, gpus=[0]
    )
    assert (cluster.workers, cluster.timeout, cluster.host_memory_limit) == (2, 5.0, 4 * 2**30)
    assert pipeline.config.ChunkingConfig(target_bytes="64MiB").target_bytes == 64 * 2**20


def test_a_whole_number_past_float64_is_refused_where_the_config_is_made(
    tmp_path: Path,
) -> None:
    """A whole number no float64 holds (1 and 400 zeros; 5000 digits, more than Python
    converts text to an int), at every numeric key (from the JSON schema) and every stage's
    scalar, is refused in one short line naming the key, made from keywords, from JSON or
    from a file, as a float past float64's range (``1e400``) is: a stage's had been refused
    only by the plan, a size's had passed the config and failed the plan in a bare
    OverflowError, and 5000 digits had been Python's ValueError out of the YAML and JSON
    readers (h67b). A key with a bound of its own says the bound; the others say float64's
    range, in the stages' words."""
    keys = [*_numeric_keys(), ("stages", 0, "factor"), ("stages", 1, "value")]
    sizes = ("chunking.target_bytes", "cluster.device_memory_limit", "cluster.host_memory_limit")
    unbounded = {*sizes, "stages.0.factor", "stages.1.value"}
    path = tmp_path / "run.yaml"
    for digits in (400, 5000):
        for sign in ("", "-"):
            text = f"{sign}1{'0' * digits}"
            for key in keys:
                said = ".".join(map(str, key))
                if key[0] == "stages":
                    stages = [{"op": "multiply", "factor": 2}, {"op": "add", "value": 3}]
                    stages[key[1]][key[2]] = 123456789
                    data = {**_EVERY_SECTION, "stages": stages}
                else:
                    data = _with(key, 123456789)
                dumped = json.dumps(data).replace("123456789", text)
                path.write_text(dumped)  # JSON is YAML
                made = [
                    functools.partial(pipeline.Config.model_validate_json, dumped),
                    functools.partial(load_config, path),
                ]
                if digits == 400:  # Python makes no int of 5000 digits from text
                    made.append(functools.partial(pipeline.Config, **json.loads(dumped)))
                for make in made:
                    with pytest.raises(ConfigError) as info:
                        make()
                    e = info.value
                    line = str(e)
                    assert e.key == said and len(line.splitlines()) == 1 and len(line) < 300, e
                    assert f"(got {sign}1.000000e{digits})" in line, line
                    assert f"{said}: must be " in line, line
                    if said in unbounded:
                        assert f"{said}: {PAST_FLOAT64} (got" in line, line


def _with(key: tuple[Any, ...], value: Any) -> dict[str, Any]:
    """:data:`_EVERY_SECTION` with ``value`` at ``key`` (a list's index: a list of it)."""
    config = json.loads(json.dumps(_EVERY_SECTION))
    target = config
    where = [i for i, k in enumerate(key) if isinstance(k, int)]
    field = key[: where[0]] if where else key
    for k in field[:-1]:
        target = target[k]
    target[field[-1]] = [value] if where else value
    return config


def _made_or_said(config: dict[str, Any]) -> Any:
    """The config ``config`` makes, or its ConfigError's line without the value it quotes."""
    try:
        return pipeline.Config(**config)
    except ConfigError as e:
        return re.sub(r" \(got .*\)$", "", str(e))


def test_a_fraction_and_a_decimal_are_the_float_they_convert_to_for_every_numeric_key() -> None:
    """One rule for the exact rationals NumPy converts with float(): a ``fractions.Fraction``
    and a ``decimal.Decimal`` are each taken as ``float(x)`` would be, for every numeric key
    (from the JSON schema, a new one too) and every stage's scalar (plain, and a typed one's
    value): the same config, or the same refusal, as the float; a whole one as a typed
    integer's value, exactly. A Fraction had been taken as a stage's factor and a Decimal
    refused ("must be a number such as 5 or 0.5, not that"). One past float64's range (or
    below its least subnormal, which float() makes 0) and a NaN are refused in one line
    naming the key."""
    from decimal import Decimal
    from fractions import Fraction

    keys = [*_numeric_keys(), ("stages", 0, "factor"), ("stages", 1, "value")]
    typed = [("stages", 1, "value", "f4"), ("stages", 1, "value", "i2")]

    def config(key: tuple[Any, ...], value: Any) -> dict[str, Any]:
        if key[0] != "stages":
            return _with(key, value)
        if key[3:] == ("f4",):
            value = {"dtype": "float32", "value": value}
        elif key[3:] == ("i2",):
            value = {"dtype": "int16", "value": value}
        stages = [{"op": "multiply", "factor": 3}, {"op": "add", "value": 1}]
        stages[key[1]][key[2]] = value
        return {**_EVERY_SECTION, "stages": stages}

    for key in [*keys, *typed]:
        for number in (Fraction(1, 2), Fraction(1, 3), Fraction(2), Fraction(4096), Fraction(-7)):
            as_float = _made_or_said(config(key, float(number)))
            decimal = Decimal(number.numerator) / Decimal(number.denominator)
            for given in (number, decimal):
                assert _made_or_said(config(key, given)) == as_float, (key, given)
    stage = pipeline.Config(**config(("stages", 0, "factor"), Decimal("0.1"))).stages[0]
    assert type(stage.factor) is float and stage.factor == 0.1
    # a whole one of an integer dtype exactly, as np.int64(Fraction(2**60 + 1)) is (the
    # Fraction had gone through float64: 2**60)
    for given in (Fraction(2**60 + 1), Decimal(2**60 + 1)):
        typed_int = {"dtype": "int64", "value": given}
        value = pipeline.Config(**config(("stages", 1, "value"), typed_int)).stages[1].value
        assert type(value) is np.int64 and value == np.int64(given) == 2**60 + 1, value
    for given in (Decimal("1e400"), Decimal("-1e-400"), Fraction(1, 10**400)):
        for key in [*keys[-2:], typed[0]]:
            line = _made_or_said(config(key, given))
            said = ".".join(map(str, key[:3]))
            assert line.startswith(f"pipeline.Config(): {said}: must be a finite number "), line
            assert "float64 holds (magnitudes up to 1.79769e+308, down to 4.94e-324)" in line
    for given in (Decimal("NaN"), Decimal("sNaN"), Decimal("-Infinity")):
        line = _made_or_said(config(("stages", 0, "factor"), given))
        said = "stages.0.factor: must be a finite number (not inf or NaN)"
        assert line == f"pipeline.Config(): {said}", line


def test_missing_keys_named_after_another_problem_are_said_to_be_missing() -> None:
    """``pipeline.Config(foo=1)`` ended "(also: input, output, stages)", not saying that
    those were required and missing; other problems are still named by key alone."""
    with pytest.raises(ConfigError) as info:
        pipeline.Config(foo=1)
    assert str(info.value).endswith(" (also: required, and missing: input, output, stages)")
    assert info.value.key == "foo"
    with pytest.raises(ConfigError) as info:
        pipeline.Config(**{**_A_RUN, "output": None, "backend": "x"}, bogus=1)
    assert str(info.value).endswith(" (also: output, backend)"), info.value
    with pytest.raises(ConfigError) as info:
        pipeline.Config(input={"store": "in.zarr"}, stages=[{"op": "add", "value": "x"}], x=1)
    said = " (also: stages.0.value; required, and missing: output)"
    assert str(info.value).endswith(said), info.value


@pytest.mark.parametrize(
    ("model", "given", "fix"),
    [
        ("Config", [_A_RUN], "write pipeline.Config(**mapping), or give the mapping as it is"),
        ("ClusterConfig", [{"workers": 2}], "write pipeline.config.ClusterConfig(**mapping)"),
        ("Config", ["run.yaml"], "pipeline.load_config(path)"),
        ("CodecConfig", ["zstd", 3], "as in pipeline.config.CodecConfig(name=...)"),
        ("Config", ["input:\n  store: s3://AKID:SECRETX@b/x\n"], "yaml.safe_load(text)"),
        ("ClusterConfig", [pipeline.config.ClusterConfig()], "it is made already"),
    ],
    ids=["mapping", "section-mapping", "path", "two", "yaml-text", "made-already"],
)
def test_a_positional_argument_to_a_models_constructor_is_one_line(
    model: str, given: list[Any], fix: str
) -> None:
    """``pipeline.Config({...})`` and ``pipeline.config.ClusterConfig({...})`` raised
    Python's bare "Model.__init__() takes 1 positional argument but 2 were given": the one
    line naming the fix, an OptionError (a TypeError still, and a ConfigError). Pydantic's
    own ways of making a model, which do not call the constructor, work as before."""
    cls = getattr(pipeline.config, model)
    call = "pipeline.Config" if model == "Config" else f"pipeline.config.{model}"
    with pytest.raises(pipeline.OptionError) as info:
        cls(*given)
    e = info.value
    assert isinstance(e, TypeError) and isinstance(e, ConfigError)
    assert str(e).startswith(f"{call}(): takes its keys by name, not "), e
    assert fix in str(e) and len(str(e).splitlines()) == 1, e
    assert "SECRETX" not in str(e) and "not 1 argument" not in str(e), e
    assert e.file == f"{call}()" and e.line is None
    config = pipeline.Config.model_validate(_A_RUN)
    assert config == pipeline.Config(**_A_RUN)
    assert pipeline.Config.model_validate(config) is config
    assert config.model_copy(update={"backend": "cpu"}).backend == "cpu"
    cluster = pipeline.config.ClusterConfig.model_validate({"workers": 2})
    assert cluster.workers == 2 and cluster.model_copy(deep=True) == cluster


@pytest.mark.parametrize(
    ("model", "update", "key", "said"),
    [
        ("Config", {"backend": "cpuu"}, "backend", "must be auto, gpu or cpu (got 'cpuu')"),
        ("Config", {"stages": "square"}, "stages", "- op: square"),
        ("Config", {"foo": 1}, "foo", "unknown key 'foo'"),
        ("ClusterConfig", {"workers": 2.5}, "workers", "whole number"),
        (
            "Config",
            {"backend": "cpu", "cluster": pipeline.config.ClusterConfig(gpus=[1])},
            "cluster.gpus",
            "cluster.gpus: [1] names GPUs",
        ),
    ],
    ids=["bad-value", "not-a-list", "unknown-key", "section", "in-a-section-given-as-a-model"],
)
def test_a_models_copy_with_changes_checks_them_as_its_constructor_does(
    tmp_path: Path, model: str, update: dict[str, Any], key: str, said: str
) -> None:
    """``config.model_copy(update=...)``, pydantic's way to change a frozen model (a notebook's
    next run), took its values unchecked: a stage given as a mapping reached the run as a
    dict, which failed deep in it with a bare AttributeError, and ``backend: cpuu`` ran. The
    changes are checked as the constructor checks them: valid ones give the model the
    constructor gives (a mapping made a section), an invalid one is its one ConfigError line,
    naming ``model_copy()`` and the key, inside a section given as a model too (it had been
    said at the section alone: ``cluster: [1] names GPUs``)."""
    cls = getattr(pipeline.config, model)
    made = pipeline.Config.model_validate(_A_RUN) if model == "Config" else cls()
    with pytest.raises(ConfigError) as info:
        made.model_copy(update=update)
    e = info.value
    call = "pipeline.Config" if model == "Config" else f"pipeline.config.{model}"
    assert str(e).startswith(f"{call}.model_copy(): "), e
    assert e.key == key and said in str(e) and len(str(e).splitlines()) == 1, e
    small_input(tmp_path)
    config = load_config(write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr"))
    changed = config.model_copy(
        update={"stages": [{"op": "multiply", "factor": 2}], "output": {"store": "o2.zarr"}}
    )
    assert changed == pipeline.Config(
        **{**config.model_dump(), "stages": [{"op": "multiply", "factor": 2}]},
    ).model_copy(update={"output": pipeline.config.OutputConfig(store="o2.zarr")})
    assert changed.output.store == "o2.zarr" and changed.stages[0].op == "multiply"
    assert changed.input == config.input and changed.model_copy() == changed
    assert config.model_copy(update={"backend": "cpu"}).backend == "cpu"


@pytest.mark.parametrize(
    ("stage", "update", "key", "said"),
    [
        (0, {"value": None}, "value", "has no value"),
        (0, {"value": Decimal("1e-400")}, "value", "float64 holds"),
        (1, {"factor": "5"}, "factor", "not text"),
        (1, {"factor": True}, "factor", "not true/false"),
        (1, {"op": "square"}, "op", "must be multiply"),
        (1, {"fator": 3}, "fator", "did you mean 'factor'"),
    ],
    ids=["add-null", "past-float64", "text", "bool", "other-op", "unknown-key"],
)
def test_a_stages_copy_with_changes_checks_them_as_its_constructor_does(
    tmp_path: Path, stage: int, update: dict[str, Any], key: str, said: str
) -> None:
    """A stage's ``model_copy(update=...)`` (``config.stages[0]``, a notebook's next run)
    took its values unchecked, as a section's had, and a Config holds a stage it is given as
    it is: add's ``value`` None ran as ``x + x``, exit 0, and a factor of ``"5"`` met
    pydantic's raw ValidationError in the run. The changes are checked as the constructor
    checks them: an invalid one is one ConfigError line naming the stage's ``model_copy()``
    and the key; a valid one runs as written, add's ``value`` left out staying left out."""
    x = small_input(tmp_path)
    path = write_config(
        tmp_path,
        tmp_path / "in.zarr",
        tmp_path / "out.zarr",
        stages=[{"op": "add", "value": 5}, {"op": "multiply", "factor": 2}],
    )
    config = load_config(path)
    with pytest.raises(ConfigError) as info:
        config.stages[stage].model_copy(update=update)
    e = info.value
    op = config.stages[stage].op
    assert str(e).startswith(f"the {op} stage's model_copy(): "), e
    assert e.key == key and said in str(e) and len(str(e).splitlines()) == 1, e
    assert config.stages[0].model_copy() == config.stages[0]
    itself = pipeline.Config(**{**config.model_dump(), "stages": [{"op": "add"}]})
    assert itself.stages[0].model_copy(update={}).model_dump() == {"op": "add"}
    changed = config.model_copy(
        update={"stages": [config.stages[0].model_copy(update={"value": 1})]}
    )
    pipeline.run(changed)
    np.testing.assert_array_equal(read_array(tmp_path / "out.zarr"), x + 1)


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ("cluster", "timeout"),
        ("cluster", "host_memory_limit"),
        ("cluster", "device_memory_limit"),
        ("chunking", "target_bytes"),
        ("output.codec", "store_raw_below"),
    ],
)
def test_a_config_number_float64_reads_as_zero_is_refused_naming_its_range(
    section: str, key: str
) -> None:
    """A number nearer 0 than float64 holds, outside the stages (``timeout: 1e-400``, as
    JSON, as a Decimal through the API): float64 reads it as 0, and the key had refused it as
    "must be greater than 0" or "a fraction must be in (0, 1]", which the number written is.
    It is refused naming float64's range, by every way of making a config; 0.0e-400, which is
    0, meets the key's own refusal of 0 (h66a)."""
    parts = section.split(".")
    dotted = f"{section}.{key}"

    def made(value: Any) -> dict[str, Any]:
        data: dict[str, Any] = {**_A_RUN}
        inner: dict[str, Any] = {key: value}
        for part in reversed(parts[1:]):
            inner = {part: inner}
        data[parts[0]] = {**data.get(parts[0], {}), **inner}
        return data

    text = json.dumps(made(0.5)).replace("0.5", "1e-400")
    config = pipeline.Config.model_validate(_A_RUN)
    for make in (
        lambda: pipeline.Config.model_validate_json(text),
        lambda: pipeline.Config(**made(Decimal("-1e-400") if key == "timeout" else "1e-400")),
        lambda: config.model_copy(update=made(Decimal("1e-400"))),
    ):
        with pytest.raises(ConfigError) as info:
            make()
        e = info.value
        assert e.key == dotted and "is nearer 0 than float64 holds (" in str(e), e
    with pytest.raises(ConfigError) as info:
        pipeline.Config.model_validate_json(text.replace("1e-400", "0.0e-400"))
    assert info.value.key == dotted and "float64" not in str(info.value), info.value


def test_a_cluster_count_given_as_null_is_the_count_left_out(tmp_path: Path) -> None:
    """``cluster.gpus``, ``workers`` and ``threads_per_worker`` given as null (``workers:``
    with nothing after its colon, ``~``, None) are the key left out, as Dask's None is for
    ``LocalCluster(n_workers=None, threads_per_worker=None)`` and dask-cuda's
    ``CUDA_VISIBLE_DEVICES=None`` (choose from the machine), and as the reference says of
    each: the same config, the same plan, by a file and by keywords (h67b). Unlike add's
    ``value`` and ``output.array``, no other meaning of null is there to take it for."""
    from pipeline.config.reference import schema_markdown
    from pipeline.planning.plan import plan_here

    make_array(tmp_path / "in.zarr", np.ones((8, 8), "f4"), (4, 8))
    run = {
        "input": {"store": str(tmp_path / "in.zarr")},
        "output": {"store": str(tmp_path / "out.zarr")},
        "stages": [{"op": "square"}],
        "backend": "cpu",
    }
    left_out = pipeline.Config(**run, cluster={"dashboard": ""})
    path = tmp_path / "run.yaml"
    path.write_text(
        yaml.safe_dump(run) + "cluster:\n  dashboard: ''\n  gpus:\n  workers: ~\n"
        "  threads_per_worker: null\n"
    )
    nulls = {"gpus": None, "workers": None, "threads_per_worker": None}
    for given in (load_config(path), pipeline.Config(**run, cluster={"dashboard": "", **nulls})):
        assert given == left_out
        assert plan_here(given).cluster == plan_here(left_out).cluster
    rows = [r for r in schema_markdown().splitlines() if r.startswith("| `")]
    for key in nulls:
        (row,) = [r for r in rows if r.startswith(f"| `{key}` |")]
        assert "omitted or null," in row, row


def test_a_models_copy_merges_a_mapping_given_for_a_section(tmp_path: Path) -> None:
    """``config.model_copy(update={"cluster": {"workers": 2}})``, a notebook's next run with
    one key changed, had replaced the whole section: the file's ``dashboard: ''`` back at
    ':0' (a Dask cluster started where the run had none) and ``output.chunks`` back at auto,
    silently (h71u). A mapping given for a section merges into it at any depth, as
    ``load_config``'s overrides do; a section's model, or storage_options' mapping,
    replaces; a bad key or value is still the one ConfigError line."""
    small_input(tmp_path)
    path = write_config(
        tmp_path,
        tmp_path / "in.zarr",
        tmp_path / "o.zarr",
        output={"chunks": [10, 35], "overwrite": True},
    )
    config = load_config(path)
    out = str(tmp_path / "p.zarr")
    copied = config.model_copy(update={"cluster": {"workers": 1}, "output": {"store": out}})
    assert (copied.cluster.workers, copied.cluster.dashboard) == (1, "")
    assert copied.cluster.threads_per_worker == config.cluster.threads_per_worker
    assert (copied.output.store, copied.output.chunks, copied.output.overwrite) == (
        out,
        (10, 35),
        True,
    )
    deeper = config.model_copy(update={"output": {"codec": {"level": 5}}}).output
    assert (deeper.codec.level, deeper.codec.name, deeper.chunks) == (5, "zstd", (10, 35))
    assert config.output.model_copy(update={"codec": {"level": 5}}).codec == deeper.codec
    replaced = config.model_copy(update={"cluster": pipeline.config.ClusterConfig(workers=1)})
    assert replaced.cluster.dashboard == pipeline.config.ClusterConfig().dashboard
    options = config.model_copy(update={"input": {"storage_options": {"anon": True}}})
    assert options.input.storage_options == {"anon": True}
    assert options.model_copy(update={"input": {"storage_options": {}}}).input.storage_options == {}
    with pytest.raises(ConfigError) as info:
        config.model_copy(update={"output": {"codec": {"levl": 5}}})
    assert info.value.key == "output.codec.levl" and "did you mean 'level'" in str(info.value)
    summary = pipeline.run(copied)
    assert summary.workers_in_process and summary.dashboard is None  # no cluster started
    assert zarr.open_array(tmp_path / "p.zarr", mode="r").chunks == (10, 35)


def test_output_array_left_out_is_left_out_of_the_dump_and_null_is_refused() -> None:
    """``output.array`` given as null had been taken for it left out (the input variable's
    name), where ``''`` may have been meant (h66a): refused, by the constructor and
    ``model_copy``; left out, it is left out of the config's dump too, so the dump (the
    summary's JSON) makes the same config again, and a section's copy keeps it left out."""
    config = pipeline.Config.model_validate(_A_RUN)
    assert "array" not in config.model_dump()["output"]
    assert pipeline.Config.model_validate_json(config.model_dump_json()) == config
    assert config.output.model_copy(update={"overwrite": True}).array is None
    for make in (
        lambda: pipeline.Config(**{**_A_RUN, "output": {"store": "o.zarr", "array": None}}),
        lambda: config.output.model_copy(update={"array": None}),
    ):
        with pytest.raises(ConfigError, match="array: has no value") as info:
            make()
        assert info.value.key in ("output.array", "array"), info.value
    named = config.model_copy(update={"output": {"store": "o.zarr", "array": ""}})
    assert named.output.array == "" and named.model_dump()["output"]["array"] == ""


def test_sizes_given_as_text_and_mps_off_are_read_as_yaml_reads_them(tmp_path: Path) -> None:
    """``host_memory_limit: '0.5'`` (a number quoted) was cut to whole bytes by dask's
    parse_bytes, a budget of 0 bytes, and ``'1.0'`` one of 1 byte; ``mps: off``, as the
    README writes it, is false to YAML and was refused as "Input should be 'auto' or 'off'
    (got False)"; a size of less than one byte (``'0 B'``, ``0``) was taken, and refused
    only by the plan (found by a reviewer, helper-108)."""
    path = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr")
    # the config's own cluster section left out: a second one is refused (review43), and
    # YAML had kept the last of the two, this one
    doc = yaml.safe_load(path.read_text())
    text = yaml.safe_dump({k: v for k, v in doc.items() if k != "cluster"}, sort_keys=False)
    for given, limit in (
        ("'0.5'", 0.5),
        ("'1.0'", 1.0),
        ("0.5", 0.5),
        ("'2'", 2),
        ("'1KiB'", 1024),
    ):
        p = tmp_path / "ok.yaml"
        p.write_text(f"{text}\ncluster:\n  mps: off\n  host_memory_limit: {given}\n")
        cluster = load_config(p).cluster
        assert cluster.mps == "off" and cluster.host_memory_limit == limit, given
        # a size written with a unit is an int that keeps its text (said as written)
        assert isinstance(cluster.host_memory_limit, type(limit)), given
        assert isinstance(cluster.host_memory_limit, float) == isinstance(limit, float), given
        assert getattr(cluster.host_memory_limit, "written", None) == (
            "1KiB" if given == "'1KiB'" else None
        ), given
        gpu_key = {"cluster.device_memory_limit": given.strip("'"), "backend": "auto"}
        assert load_config(p, gpu_key).cluster  # a GPU's key: refused with backend cpu
    for key, given in (
        ("host_memory_limit", "'0 B'"),
        ("device_memory_limit", "0"),
        ("host_memory_limit", "'0.3 B'"),
    ):
        p = tmp_path / "bad.yaml"
        p.write_text(f"{text}\ncluster:\n  {key}: {given}\n")
        with pytest.raises(ConfigError) as info:
            load_config(p)
        e = info.value
        assert e.key == f"cluster.{key}" and e.line is not None, e
        assert "byte" in str(e) and len(str(e).splitlines()) == 1, e


@pytest.mark.parametrize("key", ["", "cluster.", ".workers", "cluster..workers", "."])
def test_an_override_whose_key_has_an_empty_part_is_one_line(tmp_path: Path, key: str) -> None:
    """``load_config(path, {"": 2})`` was refused as an unknown key '(top level)', and
    ``{"cluster.": 2}`` as one named 'cluster.': the override's key names no key, and its
    line says so, naming it."""
    path = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr")
    with pytest.raises(ConfigError) as info:
        pipeline.load_config(path, {key: 2})
    e = info.value
    assert (e.key, e.override, e.line) == (key, key, None), e
    assert str(e).startswith(f"override {key!r} (given with {path}) "), e
    assert "such as 'cluster.workers'" in str(e) and "(top level)" not in str(e)
    assert len(str(e).splitlines()) == 1


@pytest.mark.parametrize("config", [None, [1, 2], 3, b"run.yaml"], ids=repr)
def test_a_config_of_the_wrong_kind_is_a_type_error_naming_what_it_takes(
    tmp_path: Path, config: Any
) -> None:
    """``pipeline.run(None)`` raised os.fspath's bare "expected str, bytes or os.PathLike
    object, not NoneType" (brk76 f4): an OptionError (a TypeError) says what a config is."""
    for call in (pipeline.run, pipeline.plan):
        with pytest.raises(pipeline.OptionError) as info:
            call(config)
        e = info.value
        assert isinstance(e, TypeError) and e.option == "config", e
        assert "a YAML file's path, a mapping or a pipeline.Config" in str(e), e
        assert type(config).__name__ in str(e) or config is None, e
        assert len(str(e).splitlines()) == 1 and "os.PathLike" not in str(e)


def test_a_client_that_is_no_client_or_is_closed_is_one_line(tmp_path: Path) -> None:
    """An address in place of a Client raised "'str' object has no attribute 'scheduler'", a
    closed Client "'NoneType' object has no attribute 'address'" (brk76 f4): an OptionError
    saying the address goes in cluster.scheduler; a ClusterError for the closed one; nothing
    touched."""
    from distributed import Client, LocalCluster

    path, out, before = _a_finished_output(tmp_path)
    with pytest.raises(pipeline.OptionError) as info:
        pipeline.run(path, client="tcp://127.0.0.1:8786", overwrite=True)
    e = info.value
    assert isinstance(e, TypeError) and e.option == "client", e
    assert "distributed.Client" in str(e) and "cluster.scheduler" in str(e), e
    with pytest.raises(pipeline.OptionError):
        pipeline.run(path, client=object(), overwrite=True)
    with LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=":0") as cluster:
        client = Client(cluster)
        client.close()
        with pytest.raises(pipeline.ClusterError) as closed:
            pipeline.run(path, client=client, overwrite=True)
    assert closed.value.reason == "closed" and "closed" in str(closed.value), closed.value
    assert len(str(closed.value).splitlines()) == 1
    assert file_states(out) == before


def test_numpy_bools_and_numbers_are_taken_as_pythons(tmp_path: Path, capsys: Any) -> None:
    """What a caller holds after computing with NumPy: ``np.True_`` (its type is named "bool"
    in NumPy 2, not "bool_": it had been refused as not True or False), ``np.float64``,
    ``np.int64``. The shortest interval taken prints plain lines."""
    x = small_input(tmp_path)
    out = tmp_path / "out.zarr"
    path = write_config(tmp_path, tmp_path / "in.zarr", out)
    flag = np.max(x) > np.min(x)  # np.True_
    assert type(flag) is np.bool_
    interval = np.float32(0.01)  # MIN_INTERVAL as float32 holds it: 0.0099999998
    summary = pipeline.run(path, resume=~flag, progress="plain", interval=interval)
    assert summary.status == "complete"
    assert re.search(r"^\[run\] \d+/\d+ blocks \(100%\)", capsys.readouterr().err, re.M)
    summary = pipeline.run(path, overwrite=flag, interval=np.int64(3))
    assert summary.status == "complete"
    assert np.array_equal(read_array(out), reference(x))


def _unwritable_report(tmp_path: Path, case: str) -> tuple[Path, str]:
    """A report path of kind ``case`` that cannot be written, and a word the refusal names."""
    if case == "absent-folder":
        return tmp_path / "absent" / "r.out", str(tmp_path / "absent")
    if case == "long-name":
        return tmp_path / ("r" * 300), "longer than"
    if case == "input-chunk":  # found by helper-37: the summary went over the chunk
        return tmp_path / "in.zarr" / "c" / "0" / "0", "inside the input store"
    if case == "input-metadata":
        return tmp_path / "in.zarr" / "zarr.json", "inside the input store"
    if case in ("output-store", "output-store-new"):
        return tmp_path / "out.zarr" / "report.html", "inside the output store"
    if case == "nul":  # h78d: a bare "ValueError: embedded null byte", naming no option
        return tmp_path / "r\0.out", "holds a NUL character"
    if os.geteuid() == 0:  # root writes a read-only file anyway
        pytest.skip("root can write a read-only file")
    made = tmp_path / "kept.out"
    made.write_text("kept")
    made.chmod(0o444)
    return made, "cannot be written"


@pytest.mark.parametrize(
    "case",
    [
        "absent-folder",
        "long-name",
        "read-only-file",
        "input-chunk",
        "input-metadata",
        "output-store",
        "output-store-new",
        "nul",
    ],
)
@pytest.mark.parametrize("option", ["report", "summary_json"])
def test_a_report_file_the_run_may_not_write_is_refused_before_the_run(
    tmp_path: Path, option: str, case: str
) -> None:
    """Found out only after the run, it had left the output incomplete (``report``) or the
    run failing on a complete output (``summary_json``). The refusal names the call's option
    (h60g: it said the command line's ``--summary-json``, which the caller never gave, and its
    field ``option`` was that flag); a file in an output store not made yet is inside it, not
    in "a folder that is not writable" (h60g: it was said so, the store being absent)."""
    small_input(tmp_path)
    out = tmp_path / "out.zarr"
    path = write_config(tmp_path, tmp_path / "in.zarr", out)
    where, word = _unwritable_report(tmp_path, case)
    if case == "output-store":  # an output there already, which --overwrite replaces
        pipeline.run(path)
    before = file_states(tmp_path / "in.zarr"), file_states(out)
    with pytest.raises(ConfigError) as info:
        pipeline.run(path, overwrite=True, **{option: str(where)})
    assert word in str(info.value) and len(str(info.value).splitlines()) == 1
    assert "\0" not in str(info.value)  # a NUL said as Python writes it, not printed raw
    if case == "output-store-new":  # no output to replace yet: the run writes it (h66c)
        assert "which the run writes" in str(info.value), info.value
    assert str(info.value).startswith(f"pipeline.run() option {option}={str(where)!r}: ")
    assert "--" not in str(info.value) and info.value.option == option
    assert (file_states(tmp_path / "in.zarr"), file_states(out)) == before
    if case == "read-only-file":
        assert where.read_text() == "kept"


def test_a_report_without_bokeh_is_refused_naming_the_calls_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """bokeh absent (``sys.modules`` holding None, as Python's import system reads a module
    known to be missing): ``report=`` is refused before anything is written, in the call's
    words (h60g: it said ``--report``, a flag the caller never gave, its field ``option`` too)."""
    small_input(tmp_path)
    out = tmp_path / "out.zarr"
    path = write_config(tmp_path, tmp_path / "in.zarr", out)
    monkeypatch.setitem(sys.modules, "bokeh", None)
    with pytest.raises(ConfigError) as info:
        pipeline.run(path, report=str(tmp_path / "r.html"))
    line = str(info.value)
    assert line.startswith("pipeline.run() option report needs bokeh"), line
    assert "--" not in line and info.value.option == "report"
    assert not out.exists()


CALLERS_WARNINGS = """
import sys, warnings
import numpy as np
import yaml
import zarr
import pipeline

if __name__ == "__main__":
    config = yaml.safe_load(open(sys.argv[1]))
    if sys.argv[2] == "own-cluster":
        pipeline.run(config, overwrite=True)
    else:
        from distributed import Client, LocalCluster

        with LocalCluster(processes=False, n_workers=1, dashboard_address=":0") as cluster:
            with Client(cluster) as client:
                pipeline.run(config, client=client, overwrite=True)
    with warnings.catch_warnings(record=True) as seen:  # the caller's filters, as they are now
        np.array([np.inf]) - np.array([np.inf])
    print(sum(issubclass(w.category, RuntimeWarning) for w in seen))
"""


@pytest.mark.parametrize("cluster", ["own-cluster", "callers-client"])
def test_a_callers_process_keeps_numpys_warnings(tmp_path: Path, cluster: str) -> None:
    """A run whose workers are threads of the caller's process (a local cluster with a
    dashboard on ``inproc``, or the caller's ``LocalCluster(processes=False)``) leaves the
    caller's warnings as they were: NumPy's 'invalid value' warning in its own code after the
    run is still shown (the workers' set-up ignored it in the whole process)."""
    small_input(tmp_path)
    cfg = write_config(
        tmp_path,
        tmp_path / "in.zarr",
        tmp_path / "out.zarr",
        cluster={"workers": 1, "dashboard": ":0", "protocol": "inproc"},
    )
    script = tmp_path / "caller.py"
    script.write_text(CALLERS_WARNINGS)
    done = run_python([script, cfg, cluster], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == "1", done.stdout + done.stderr


RUNS_AT_ONCE = """
import json, sys, threading
import dask
import dask.array as da
import pipeline
from pipeline.running import tasks

# each run's block writes wait on its gate (the runs' inputs differ in rows): the first run
# starts, the second starts, the first ends, then the second
writing = {30: threading.Event(), 40: threading.Event()}
gate = {30: threading.Event(), 40: threading.Event()}
plain = tasks.write_block


def write_block(y, sink, block_id):
    rows = sink.info.shape[0]
    writing[rows].set()
    gate[rows].wait(300)
    return plain(y, sink, block_id)


tasks.write_block = write_block

if __name__ == "__main__":
    done = []
    first = threading.Thread(target=lambda: done.append(pipeline.run(sys.argv[1]).status))
    second = threading.Thread(target=lambda: done.append(pipeline.run(sys.argv[2]).status))
    first.start()
    writing[30].wait(300)
    second.start()
    writing[40].wait(300)
    during = dask.config.get("scheduler", None)
    gate[30].set()
    first.join()
    gate[40].set()
    second.join()
    try:
        total = float(da.ones(10, chunks=5).sum().compute())
    except Exception as e:
        total = f"{type(e).__name__}: {e}"
    after = dask.config.get("scheduler", None)
    print(json.dumps({"done": done, "during": during, "after": after, "total": total}))
"""


def test_runs_at_once_in_threads_leave_dasks_scheduler_as_it_was(tmp_path: Path) -> None:
    """Two ``pipeline.run`` calls at once in threads of one process, each on a local cluster
    of its own, the first ending first: each run's client had been made distributed's default,
    which sets Dask's ``scheduler`` for the whole process and puts back, on its close, the
    setting it found; the second had found the first's, so after both ended the process was
    left with ``dask.distributed`` and no client, and the caller's next ``dask.compute`` failed
    ("Requested dask.distributed scheduler but no Client active"). While they ran, the
    caller's plain computations went to a run's cluster."""
    for rows in (30, 40):
        x = np.random.default_rng(rows).standard_normal((rows, 70)).astype(np.float32)
        make_array(tmp_path / f"in{rows}.zarr", x, (10, 70))
        write_config(
            tmp_path,
            tmp_path / f"in{rows}.zarr",
            tmp_path / f"out{rows}.zarr",
            name=f"run{rows}.yaml",
            cluster={"workers": 1, "dashboard": ":0", "protocol": "inproc"},
        )
    script = tmp_path / "runs.py"
    script.write_text(RUNS_AT_ONCE)
    done = run_python([script, tmp_path / "run30.yaml", tmp_path / "run40.yaml"], tmp_path)
    assert done.returncode == 0, done.stderr
    said = json.loads(done.stdout.splitlines()[-1])
    assert said == {"done": ["complete", "complete"], "during": None, "after": None, "total": 10.0}
    for rows in (30, 40):
        assert pipeline.verify(tmp_path / f"run{rows}.yaml", all=True).ok


def test_a_report_is_of_the_clients_cluster_where_another_client_was_made_since(
    tmp_path: Path,
) -> None:
    """``report=`` with a ``client`` that is not the latest the process made: the report was
    fetched from distributed's default client, the latest, whose cluster ran nothing of the
    run (the page said 0 tasks); it is the given client's, whose cluster ran the blocks."""
    from distributed import Client, LocalCluster

    small_input(tmp_path)
    path = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr")
    report = tmp_path / "report.html"
    with (
        LocalCluster(n_workers=1, processes=False, dashboard_address=":0") as given,
        LocalCluster(n_workers=1, processes=False, dashboard_address=":0") as other,
        Client(given) as client,
        Client(other),
    ):
        summary = pipeline.run(path, client=client, report=str(report))
    tasks = re.findall(r"number of tasks: (\d+)", report.read_text())
    assert tasks and int(tasks[0]) == summary.blocks_total, tasks


ON_THE_LOOP = """
import asyncio, json, os, sys
import pipeline


async def main():
    from distributed import Client, LocalCluster

    async with (
        LocalCluster(
            n_workers=1, processes=False, asynchronous=True, dashboard_address=":0"
        ) as cluster,
        Client(cluster, asynchronous=True) as client,
    ):
        try:
            pipeline.run(sys.argv[1], client=client)
        except pipeline.OptionError as e:
            said = {"option": e.option, "line": str(e), "written": os.path.exists(sys.argv[2])}
        # the fix the line names, which runs it
        summary = await asyncio.to_thread(pipeline.run, sys.argv[1], client=client)
        said["status"] = summary.status
        print(json.dumps(said))


if __name__ == "__main__":
    asyncio.run(main())
"""


def test_an_asynchronous_client_on_the_calls_own_loop_is_refused_not_a_hang(
    tmp_path: Path,
) -> None:
    """``pipeline.run(config, client=client)`` inside a running event loop (a notebook's, or
    ``asyncio.run``'s), ``client`` an asynchronous one of that loop: the run blocked the loop
    that had to answer the client, and the call hung without end. Refused in one line before
    anything is written, naming the fix (a thread: ``asyncio.to_thread``), which runs it."""
    x = small_input(tmp_path)
    path = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr")
    script = tmp_path / "loop.py"
    script.write_text(ON_THE_LOOP)
    done = run_python([script, path, tmp_path / "out.zarr"], tmp_path, timeout=180)
    assert done.returncode == 0, done.stderr
    said = json.loads(done.stdout.splitlines()[-1])
    assert said["option"] == "client" and "\n" not in said["line"], said
    assert not said["written"]
    assert "asyncio.to_thread(pipeline.run, config, client=client)" in said["line"]
    assert said["status"] == "complete"
    assert np.array_equal(read_array(tmp_path / "out.zarr"), reference(x))


CALLERS_ENVIRONMENT = """
import json, os, subprocess, sys
import pipeline

if __name__ == "__main__":
    before = dict(os.environ)
    status = pipeline.run(sys.argv[1]).status
    changed = {
        k: [before.get(k), os.environ.get(k)]
        for k in {*before, *os.environ}
        if before.get(k) != os.environ.get(k)
    }
    # what a subprocess the caller starts next inherits
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.environ.get('OMP_NUM_THREADS'))"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    print(json.dumps({"status": status, "changed": changed, "child": child}))
"""


def test_a_run_on_worker_processes_leaves_the_callers_environment_as_it_was(
    tmp_path: Path,
) -> None:
    """``pipeline.run`` on a local cluster of worker processes it starts: distributed's nanny
    sets, in the caller's own process, the environment it gives the workers
    (``OMP_NUM_THREADS=1``, ``MKL_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``,
    ``MALLOC_TRIM_THRESHOLD_``, ``PYTHONHASHSEED``, ``__DASK_PARENT_PID``); it stayed after the
    run, and every subprocess the caller started later inherited it (its BLAS on one thread).
    Put back once the cluster is closed."""
    x = small_input(tmp_path)
    path = write_config(
        tmp_path,
        tmp_path / "in.zarr",
        tmp_path / "out.zarr",
        cluster={"workers": 1, "protocol": "tcp", "dashboard": ""},
    )
    script = tmp_path / "caller.py"
    script.write_text(CALLERS_ENVIRONMENT)
    nanny = {"OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "PYTHONHASHSEED"}
    nanny |= {"MALLOC_TRIM_THRESHOLD_", "__DASK_PARENT_PID"}  # (the test's process may have them)
    environ = {k: v for k, v in env().items() if k not in nanny}
    done = run_python([script, path], tmp_path, environ=environ)
    assert done.returncode == 0, done.stderr
    said = json.loads(done.stdout.splitlines()[-1])
    assert said == {"status": "complete", "changed": {}, "child": "None"}, said
    assert np.array_equal(read_array(tmp_path / "out.zarr"), reference(x))


def test_a_resume_of_a_complete_output_reports_its_recorded_nonfinite_counts(
    tmp_path: Path,
) -> None:
    """Nothing to do: the summary's NaN and inf counts are the output's, as the run that made
    it recorded them (it had said 0)."""
    x = np.random.default_rng(0).standard_normal((30, 70)).astype(np.float32)
    x[1, 2], x[3, 4], x[5, 6] = np.nan, np.inf, np.nan
    make_array(tmp_path / "in.zarr", x, (10, 70))
    path = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr")
    first = pipeline.run(path)
    again = pipeline.run(path, resume=True)
    assert again.status.startswith("complete") and again.blocks_done == 0
    assert (again.nan, again.posinf, again.neginf) == (first.nan, first.posinf, first.neginf)
    assert first.nan == 2 and first.posinf == 1


def _replacement_stopped(
    tmp_path: Path, rows: int, output: dict[str, Any], linked: bool = True
) -> tuple[Path, np.ndarray, Any]:
    """A complete output (``out.zarr``, ``output``'s settings) of an input of ``rows`` rows,
    then an ``overwrite=True`` run of it stopped by a real Ctrl-C as it clears the old
    chunks: (the config, the input's values, the stopped process). ``linked``: the output's
    files hard-linked into a backup first (``cp -al``), so that the run deletes them where
    they are, as it did all (h83d: others are moved into its record first, and deleted
    there while it computes)."""
    from tests.faultkit import many_blocks_input

    path = tmp_path / "run.yaml"
    (tmp_path / "script.py").write_text(
        ctrl_c_script("pipeline.store.arrays", "clear_array", overwrite=True)
    )
    x = many_blocks_input(tmp_path / "in.zarr", rows, cols=64)
    cfg = {
        "input": {"store": str(tmp_path / "in.zarr")},
        "output": {"store": str(tmp_path / "out.zarr"), **output},
        "stages": [{"op": "multiply", "factor": 2}],
        "backend": "cpu",
        "cluster": {"dashboard": ""},
    }
    path.write_text(yaml.safe_dump(cfg))
    assert pipeline.run(path).status == "complete"
    if linked:
        shutil.copytree(tmp_path / "out.zarr", tmp_path / "backup.zarr", copy_function=os.link)
    proc = run_python([tmp_path / "script.py", path], tmp_path)
    assert proc.returncode == 0, proc.stderr
    return path, x, proc


@pytest.mark.parametrize("linked", [True, False], ids=["deleted-in-place", "set-aside"])
def test_ctrl_c_while_an_output_is_replaced_says_overwrite_starts_over(
    tmp_path: Path, linked: bool
) -> None:
    """A Ctrl-C while --overwrite deletes the old output's files (helper-39): the line said
    the output was resumable, and --resume then refused ("the remains of an output that a
    stopped run was replacing"), and where the run record had gone too, the folder of old
    chunks was one the pipeline never deletes. It says now that only --overwrite starts
    over, and it does. Old chunks moved into the run record (not ``linked``, h83d) are
    deleted there by the time the stopped run ends, which leaves only its record: a resume
    then makes the output as where nothing was (this test had expected the old chunks in
    place, and failed since that merge)."""
    out = tmp_path / "out.zarr"
    path, x, proc = _replacement_stopped(tmp_path, 16, {"chunks": [1, 8]}, linked)
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not (out / "zarr.json").exists()
    if linked:
        assert (out / "c").exists()  # the old chunks stay
    else:
        assert not (out / "c").exists()
        left = [p for p in (out / ".pipeline" / "aside").rglob("*") if p.is_file()]
        assert not left, f"{len(left)} set-aside files left as the run ended"
    assert got["state"] == "creating", got
    assert "overwrite=True" in got["str"] and len(got["str"].splitlines()) == 1
    if linked:
        with pytest.raises(pipeline.OutputError):
            pipeline.run(path, resume=True)
    else:  # nothing old left, only the run record: made as where nothing was
        assert pipeline.run(path, resume=True).status == "complete"
        assert np.array_equal(read_array(out), x * 2, equal_nan=True)
    assert pipeline.run(path, overwrite=True).status == "complete"
    assert np.array_equal(read_array(out), x * 2, equal_nan=True)


@pytest.mark.parametrize("overwrite", [False, True])
def test_ctrl_c_while_a_new_output_is_made_says_nothing_was_replaced(
    tmp_path: Path, overwrite: bool
) -> None:
    """A Ctrl-C while a run makes an output where nothing was (with or without overwrite):
    the line had said "what was there before is gone" (helper-89). It says only that the
    output was being made and that --overwrite starts over, which it does."""
    from tests.faultkit import many_blocks_input

    out = tmp_path / "out.zarr"
    path = tmp_path / "run.yaml"
    (tmp_path / "script.py").write_text(
        ctrl_c_script("pipeline.running.output", "group_attributes", overwrite=overwrite)
    )
    x = many_blocks_input(tmp_path / "in.zarr", 8, cols=64)
    cfg = {
        "input": {"store": str(tmp_path / "in.zarr")},
        "output": {"store": str(out)},
        "stages": [{"op": "multiply", "factor": 2}],
        "backend": "cpu",
        "cluster": {"dashboard": ""},
    }
    path.write_text(yaml.safe_dump(cfg))
    proc = run_python([tmp_path / "script.py", path], tmp_path)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["state"] == "creating-new", got
    assert "before" not in got["str"] and "overwrite=True" in got["str"], got
    assert len(got["str"].splitlines()) == 1
    assert pipeline.run(path, overwrite=True).status == "complete"
    assert np.array_equal(read_array(out), x * 2, equal_nan=True)


def test_ctrl_c_before_the_output_is_made_keeps_the_users_empty_folder(tmp_path: Path) -> None:
    """A Ctrl-C once the output's lock is taken and the cluster is up, before the output is
    made: the folders the lock made go (no trace), but an empty folder the user had made to
    receive the output stays; it had been removed, as one the lock created."""
    from tests.faultkit import many_blocks_input

    x = many_blocks_input(tmp_path / "in.zarr", 8, cols=64)
    (tmp_path / "script.py").write_text(
        ctrl_c_script("pipeline.running.runner", "_dashboard", overwrite=False)
    )
    mine, new = tmp_path / "results", tmp_path / "new" / "deeper" / "out.zarr"
    mine.mkdir()
    for out in (mine, new):
        path = tmp_path / "run.yaml"
        cfg = {
            "input": {"store": str(tmp_path / "in.zarr")},
            "output": {"store": str(out)},
            "stages": [{"op": "multiply", "factor": 2}],
            "backend": "cpu",
            "cluster": {"dashboard": ""},
        }
        path.write_text(yaml.safe_dump(cfg))
        proc = run_python([tmp_path / "script.py", path], tmp_path)
        assert proc.returncode == 0, proc.stderr
        got = json.loads(proc.stdout.strip().splitlines()[-1])
        assert got["state"] == "untouched", got
    assert mine.is_dir() and not any(mine.iterdir())  # the user's folder, as it was
    assert not (tmp_path / "new").exists()  # what the lock made, gone
    assert pipeline.run(path).status == "complete"
    assert np.array_equal(read_array(new), x * 2, equal_nan=True)


def test_verify_of_the_remains_of_a_stopped_replacement_says_what_run_says(
    tmp_path: Path, cli
) -> None:
    """A Ctrl-C while --overwrite cleared the old output's chunks, its metadata gone: `verify`
    said "no output ...: run the pipeline first", yet a plain `run` is refused there (F7). It
    says what `run` says, in one line: the remains, and `run --overwrite` starts over."""
    out = tmp_path / "out.zarr"
    path, _, _ = _replacement_stopped(tmp_path, 8, {})
    assert not (out / "zarr.json").exists() and (out / "c").exists()  # the remains
    rc, _, run_err = cli("run", path)
    assert rc == 1
    rc, _, err = cli("verify", path)
    assert rc == 1
    line = one_line_error(err)
    assert "remains" in line and "`run --overwrite` starts over" in line, line
    assert line == one_line_error(run_err), (line, run_err)


def test_ctrl_c_after_the_output_is_marked_complete_says_complete(tmp_path: Path) -> None:
    """A Ctrl-C once the output says it is complete, while its run record is removed
    (helper-42): the interrupt said "incomplete and resumable", and the record stayed in the
    finished output, which --resume ("nothing to do") left. The interrupt says complete; the
    resume removes the leftover record and touches nothing else."""
    out = tmp_path / "out.zarr"
    x = small_input(tmp_path)
    path = write_config(tmp_path, tmp_path / "in.zarr", out)
    (tmp_path / "script.py").write_text(
        ctrl_c_script("pipeline.store.ledger", "Ledger.clear", overwrite=False)
    )
    proc = run_python([tmp_path / "script.py", path], tmp_path)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["state"] == "complete", got
    assert status(out) == "complete" and (out / ".pipeline").exists()
    kept = {k: v for k, v in file_states(out).items() if not k.startswith(".pipeline")}
    again = pipeline.run(path, resume=True)
    assert again.status == "complete (nothing to do)"
    assert not (out / ".pipeline").exists()
    assert file_states(out) == kept
    assert np.array_equal(read_array(out), reference(x))


def test_overwrite_and_resume_together_are_refused_before_anything_is_touched(
    tmp_path: Path, cli
) -> None:
    """Starting over and keeping the finished blocks contradict (helper-40: overwrite had won,
    silently, and thrown the finished blocks away): refused by the API and the command line."""
    path, out, before = _a_finished_output(tmp_path)
    with pytest.raises(pipeline.OptionError) as info:
        pipeline.run(path, overwrite=True, resume=np.True_)
    assert len(str(info.value).splitlines()) == 1 and "contradict" in str(info.value)
    rc, _, err = cli("run", path, "--overwrite", "--resume")  # a usage error, in one line
    assert rc == 2 and err.count("\n") == 1 and "contradicts --resume" in err, err
    assert file_states(out) == before


UNGUARDED = """
import pipeline

pipeline.run(
    {
        "input": {"store": "in.zarr"},
        "output": {"store": "out.zarr"},
        "stages": [{"op": "add", "value": 1}],
        "cluster": {"workers": 2, "threads_per_worker": 1, "protocol": "tcp", "dashboard": ""},
    },
    overwrite=True,
)
"""


def test_a_script_without_a_main_guard_is_told_to_add_one(tmp_path: Path) -> None:
    """A script that calls ``pipeline.run`` with worker processes at its top level: each
    worker imports the script again and runs it (the output's lock refuses them), so the
    cluster does not start; the error said to check the config's cluster section, not the
    script (review). It names the guard now; with the guard the same run completes."""
    from tests.faultkit import run_python

    make_array(tmp_path / "in.zarr", np.arange(64 * 64, dtype=np.float32).reshape(64, 64), (16, 64))
    script = tmp_path / "unguarded.py"
    script.write_text(UNGUARDED)
    r = run_python([script], tmp_path)
    assert r.returncode != 0
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("pipeline.errors.ClusterError") and 'if __name__ == "__main__":' in last
    body = "\n".join("    " + line for line in UNGUARDED.strip().splitlines())
    script.write_text(f'if __name__ == "__main__":\n{body}\n')
    r = run_python([script], tmp_path)
    assert r.returncode == 0, r.stderr
    assert (
        read_array(tmp_path / "out.zarr").tobytes()
        == (np.arange(64 * 64, dtype=np.float32).reshape(64, 64) + 1).tobytes()
    )
    # a guarded script whose cluster fails for another reason is not told of the guard
    script.write_text(script.read_text().replace('"dashboard": ""', '"dashboard": "999.9.9.9:1"'))
    r = run_python([script], tmp_path)
    last = r.stderr.strip().splitlines()[-1]
    assert r.returncode != 0 and "did not start" in last and "__main__" not in last, last


def test_plan_s_docstring_names_what_the_plan_holds(tmp_path) -> None:
    """``help(pipeline.plan)`` said only "the resolved Plan": a user got a repr of several
    thousand characters, and no word of where the output's dtype is or what is raised. Every
    field its docstring names is the plan's, of the kind it says; the widened output dtype
    and the stage row it quotes are the planner's; the OutputError it raises where ``run``
    refuses the output is named."""
    src = tmp_path / "in.zarr"
    make_array(src, np.arange(24, dtype=np.int8).reshape(4, 6), chunks=(2, 6))
    cfg = {
        "input": {"store": str(src)},
        "output": {"store": str(tmp_path / "out.zarr")},
        "stages": [{"op": "multiply", "factor": 3}, {"op": "square"}, {"op": "add", "value": 1}],
    }
    doc = " ".join((pipeline.plan.__doc__ or "").split())
    p = pipeline.plan(cfg)
    named = set(re.findall(r"``p\.(\w+)", doc))
    assert named >= {"input", "output", "chain", "block", "n_blocks", "memory", "backend", "notes"}
    for field in named:
        assert hasattr(p, field), field
    for info in (p.input, p.output):
        assert isinstance(info.shape, tuple) and isinstance(info.dtype, np.dtype)
        assert all(isinstance(n, int) for n in info.shape + info.chunk)
    assert (p.input.dtype, p.output.dtype) == (np.int8, np.int32)
    assert (
        p.chain[0].describe() == "multiply(factor=3) int8 -> int16"
        and "``multiply(factor=3) int8 -> int16``" in doc
    )
    assert p.chain[-1].out_dtype == p.output.dtype and p.backend in ("cpu", "gpu")
    from pipeline.planning import describe

    assert "pipeline.planning.describe(p)" in doc
    assert dict(describe(p))["stages"] == "; ".join(s.describe() for s in p.chain)
    for error in ("ConfigError", "InputError", "PlanError", "OptionError"):
        assert f":class:`{error}`" in doc, error
    assert ":class:`OutputError`" in doc and "not judged" not in doc


def test_run_s_docstring_says_what_the_output_is_and_where(tmp_path) -> None:
    """``help(pipeline.run)`` named the summary's fields but not the output: where it is
    (``summary.output``), how to open it, its shape and dtype. What it says holds: the array
    at ``summary.output`` has the input's shape and the plan's dtype (int8 widened)."""
    doc = " ".join((pipeline.run.__doc__ or "").split())
    assert "xr.open_zarr(summary.output)" in doc and "zarr.open_array(summary.output)" in doc
    assert "the input's shape" in doc and "plan(config).output.dtype" in doc
    src = tmp_path / "in.zarr"
    make_array(src, np.arange(24, dtype=np.int8).reshape(4, 6), chunks=(2, 6))
    cfg = {
        "input": {"store": str(src)},
        "output": {"store": str(tmp_path / "out.zarr")},
        "stages": [{"op": "multiply", "factor": 3}, {"op": "square"}],
        "cluster": {"dashboard": ""},
    }
    summary = pipeline.run(cfg)
    out = zarr.open_array(summary.output, mode="r")
    assert out.shape == (4, 6) and out.dtype == pipeline.plan(cfg).output.dtype == np.int32
    assert np.array_equal(out[...], (np.arange(24, dtype=np.int32).reshape(4, 6) * 3) ** 2)


def test_data_given_as_the_config_is_refused_naming_the_input_to_make(tmp_path) -> None:
    """A user of xarray passes the Dataset itself, ``pipeline.run(ds)``: a Dataset is a mapping
    of its variables, and was read as the config's keys ("unknown key 'air' (valid keys:
    input, ...)", h63e). Data (an xarray Dataset or DataArray, a zarr group or array, a NumPy
    or Dask array) given as the config, to run, plan, verify or load_config, is an OptionError
    in one line naming what it is and how to make it the input a config names; a path given
    as NumPy's string is still a path. ``pipeline.load_config(ds)`` had said that a mapping is
    taken by pipeline.run and pipeline.plan as it is."""
    xr = pytest.importorskip("xarray")
    import dask.array as da

    store = tmp_path / "in.zarr"
    ds = xr.Dataset({"air": (("y", "x"), np.ones((4, 6), dtype=np.float32))})
    ds.to_zarr(store, consolidated=False)
    opened = xr.open_zarr(store, consolidated=False)
    group = zarr.open_group(store, mode="r")
    given = {
        "an xarray Dataset": (opened, "ds.to_zarr('in.zarr')"),
        "an xarray DataArray": (opened["air"], "array: VARIABLE"),
        "a zarr Group": (group, "{store: STORE, array: PATH}"),
        "a zarr Array": (group["air"], "{store: STORE, array: PATH}"),
        "a NumPy ndarray": (np.ones(3), "zarr.save_array('in.zarr', x)"),
        "a Dask Array": (da.ones(3), "x.to_zarr('in.zarr')"),
    }
    for said, (data, fix) in given.items():
        for call in (pipeline.run, pipeline.plan, pipeline.verify):
            with pytest.raises(pipeline.OptionError) as e:
                call(data)
            message = str(e.value)
            assert "\n" not in message and f"not {said}, the data itself" in message, message
            assert fix in message and "unknown key" not in message, message
            assert e.value.option == "config", e.value.data
        with pytest.raises(pipeline.OptionError) as e:  # not "a mapping is taken by run"
            pipeline.load_config(data)
        message = str(e.value)
        assert f"takes a YAML file's path, not {said}, the data itself" in message, message
        assert fix in message and "mapping" not in message and e.value.option == "path"
    path = write_config(
        tmp_path, store, tmp_path / "out.zarr", input={"store": str(store), "array": "air"}
    )
    assert pipeline.plan(np.str_(path)).input.shape == (4, 6)


def test_yaml_text_given_as_the_config_is_refused_in_one_line_unsaid(tmp_path, cli) -> None:
    """``pipeline.plan(open("c.yaml").read())``, the YAML text given where a path goes, was
    "ConfigError: config file not found: input:\\n  store: ..." quoting the whole text over
    several lines, storage_options' key and secret included (brk82). The API refuses a string
    that is YAML text (a line break; a one-line flow mapping naming no file) in one line that
    says none of it and names the fix; the command line's "config file not found" line quotes
    no more than one short line of the path it was given."""
    key, secret = "AKIAYAMLTEXT42", "YAMLTEXTS3CR3T"
    cfg = {
        "input": {
            "store": "s3://bkt/in.zarr",
            "storage_options": {"key": key, "secret": secret},
        },
        "output": {"store": str(tmp_path / "out.zarr")},
        "stages": [{"op": "square"}],
    }
    texts = [yaml.safe_dump(cfg), yaml.safe_dump(cfg, default_flow_style=True).strip()]
    for text in texts:
        for call in (pipeline.plan, pipeline.run):
            with pytest.raises(ConfigError) as e:
                call(text)
            message = str(e.value)
            assert "\n" not in message and key not in message and secret not in message, message
            assert "YAML text" in message and "yaml.safe_load(text)" in message, message
            assert e.value.option == "config", e.value.data
    rc, out, err = cli("plan", texts[0])
    line = one_line_error(err)
    assert rc == 1 and "config file not found" in line, line
    assert key not in out + err and secret not in out + err, out + err
    long = str(tmp_path / ("x" * 300 + ".yaml"))
    rc, _, err = cli("plan", long)
    line = one_line_error(err)
    assert rc == 1 and "config" in line and long not in line and "(cut: " in line, line
    missing = str(tmp_path / "missing.yaml")  # a short path: said whole
    rc, _, err = cli("plan", missing)
    assert rc == 1 and f"config file not found: {missing} " in err, err


def test_a_call_an_api_function_does_not_take_is_an_option_error(tmp_path: Path) -> None:
    """``pipeline.plan(cfg, overwrite=True)`` raised Python's bare "plan() got an unexpected
    keyword argument 'overwrite'", ``pipeline.run(cfg, client)`` "takes 1 positional argument but
    2 were given", ``pipeline.load_config(None)`` os.fspath's "expected str, bytes or
    os.PathLike object" and ``load_config(cfg, overrides=3)`` an AttributeError: each public
    function refuses what it does not take with an OptionError (a TypeError), one line
    naming the function, the argument and what it takes; nothing is written."""
    small_input(tmp_path)
    out = tmp_path / "out.zarr"
    path = write_config(tmp_path, tmp_path / "in.zarr", out)
    calls: list[tuple[Any, tuple[Any, ...], dict[str, Any], str | None, list[str]]] = [
        (pipeline.plan, (path,), {"clinet": None}, "clinet", ["did you mean 'client'"]),
        (pipeline.plan, (path,), {"overwrite": True}, "overwrite", ["pipeline.run()"]),
        (pipeline.plan, (path, None), {}, None, ["by position", "client by name"]),
        (pipeline.plan, (), {}, "config", ["needs its config"]),
        (pipeline.plan, (), {"confg": path}, "confg", ["did you mean 'config'"]),
        (pipeline.run, (), {"confg": path}, "config", ["needs its config", "'confg'"]),
        (pipeline.run, (path, None), {}, None, ["by position", "by name"]),
        (pipeline.run, (), {"overwrite": True}, "config", ["needs its config"]),
        (pipeline.run, (path,), {"config": path}, "config", ["twice"]),
        (pipeline.run, (path,), {"clinet": None}, "clinet", ["did you mean 'client'"]),
        (pipeline.load_config, (path,), {"client": None}, "client", ["pipeline.run()"]),
        (pipeline.load_config, (path, {}, None), {}, None, ["by position"]),
        (pipeline.load_config, (None,), {}, "path", ["YAML file's path", "None"]),
        (pipeline.load_config, (3,), {}, "path", ["not an integer"]),
        (pipeline.load_config, (b"run.yaml",), {}, "path", ["not bytes"]),
        (pipeline.load_config, ({"input": {}},), {}, "path", ["pipeline.run"]),
        (pipeline.load_config, (path.read_text(),), {}, "path", ["YAML text"]),
        (pipeline.load_config, (path,), {"overrides": 3}, "overrides", ["mapping"]),
        (pipeline.load_config, (path, [("a", 1)]), {}, "overrides", ["mapping"]),
        (pipeline.load_config, (path, {1: 2}), {}, "overrides", ["not all strings"]),
    ]
    for fn, args, kwargs, option, words in calls:
        with pytest.raises(pipeline.OptionError) as info:
            fn(*args, **kwargs)
        e = info.value
        message = str(e)
        assert isinstance(e, TypeError) and e.option == option, (fn, args, kwargs, e.data, e)
        assert len(message.splitlines()) == 1 and f"{fn.__name__}()" in message, message
        assert all(w in message for w in words), (words, message)
        assert str(tmp_path) not in message, message  # no argument's value is said
    assert not out.exists()
    assert pipeline.load_config(path, {"output.overwrite": True}).output.overwrite


def test_an_override_given_as_a_mapping_merges_into_the_files_section(tmp_path: Path) -> None:
    """``load_config(path, {"cluster": {"workers": 3}})`` replaced the file's whole cluster
    section, its other keys (threads_per_worker, dashboard, timeout) silently back at their
    defaults; a user of dask.config expects a nested mapping to merge. It merges, at any
    depth (output.codec.level keeps output.codec.name), and a later dotted override of the
    same section neither loses it nor modifies the caller's mapping."""
    small_input(tmp_path)
    path = write_config(
        tmp_path,
        tmp_path / "in.zarr",
        tmp_path / "out.zarr",
        cluster={"threads_per_worker": 2, "timeout": 7},
        output={"store": str(tmp_path / "out.zarr"), "codec": {"name": "zstd", "level": 3}},
    )
    cluster = {"workers": 3}
    output = {"codec": {"checksum": True}}
    given = {"cluster": cluster, "output": output, "cluster.dashboard": ":0"}
    config = pipeline.load_config(path, given)
    assert config.cluster.workers == 3 and config.cluster.threads_per_worker == 2
    assert config.cluster.timeout == 7 and config.cluster.dashboard == ":0"
    assert config.output.store == str(tmp_path / "out.zarr")
    assert config.output.codec.level == 3 and config.output.codec.checksum
    assert cluster == {"workers": 3} and output == {"codec": {"checksum": True}}  # unchanged
    # a value that is no mapping still replaces, and a mapping over a value does too
    assert pipeline.load_config(path, {"cluster.workers": 1}).cluster.workers == 1
    with pytest.raises(ConfigError) as info:
        pipeline.load_config(path, {"output": {"store": {"x": 1}}})
    assert info.value.key == "output.store", info.value


def test_an_override_sets_its_key_alone_where_the_file_shares_a_mapping(
    tmp_path: Path,
) -> None:
    """A file that gives its input and output one mapping through a YAML alias
    (``storage_options: &opts {...}`` and ``*opts``, as yaml.safe_dump writes one dict given
    twice): a dotted override of one side's key (``output.storage_options.auto_mkdir``) set
    it on both, the input's options (its credentials, say) changed by an override that
    named the output's. It sets its own key only, dotted or as a mapping, at any depth."""
    small_input(tmp_path)
    path = tmp_path / "alias.yaml"
    path.write_text(
        f"input: {{store: {tmp_path / 'in.zarr'}, storage_options: &opts {{auto_mkdir: false,"
        " listings: {cache: false}}}\n"
        f"output: {{store: {tmp_path / 'out.zarr'}, storage_options: *opts}}\n"
        "stages: [{op: square}]\nbackend: cpu\n"
    )
    for key, value in (
        ("output.storage_options.auto_mkdir", True),
        ("output.storage_options.listings.cache", True),
        ("output.storage_options", {"auto_mkdir": True}),
    ):
        config = pipeline.load_config(path, {key: value})
        shared = {"auto_mkdir": False, "listings": {"cache": False}}
        assert config.input.storage_options == shared, (key, config.input.storage_options)
        assert config.output.storage_options != shared, key
    assert pipeline.load_config(path).output.storage_options == shared


def test_an_override_inside_a_list_or_a_value_is_one_line(tmp_path: Path, cli) -> None:
    """An override whose dotted key runs through a list (``stages.0.factor``) or a value
    (``input.store.x``), and a command-line flag's override of a file that is no mapping
    (``pipeline plan list.yaml --scheduler ...``), had raised "'list' object has no attribute
    'setdefault'": one ConfigError line naming the key, or the file's own refusal."""
    small_input(tmp_path)
    path = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr")
    for key, words in [
        ("stages.0.factor", "stages holds a list"),
        ("input.store.x", "input.store holds a value"),
    ]:
        with pytest.raises(ConfigError) as info:
            pipeline.load_config(path, {key: 2})
        assert info.value.key == key and words in str(info.value), info.value
        assert len(str(info.value).splitlines()) == 1
    listed = tmp_path / "list.yaml"
    listed.write_text("- a\n- b\n")
    rc, _, err = cli("plan", str(listed), "--scheduler", "tcp://127.0.0.1:9")
    assert rc == 1 and "the config must be a mapping" in one_line_error(err), err


@pytest.mark.parametrize("workers", ["none", "paused"])
def test_a_clients_cluster_without_a_running_worker_is_one_line_not_a_wait(
    tmp_path: Path, workers: str
) -> None:
    """``pipeline.run(cfg, client=client)`` on a cluster with no worker (``LocalCluster(
    n_workers=0)``), or whose one worker Dask paused for memory (over
    distributed.worker.memory.pause of its memory limit: 1% here), waited without end for a
    worker to run its tasks. Within cluster.timeout, the ClusterError a joined scheduler
    gives: 'no-workers', or 'not-running' saying that its worker is paused and why; nothing
    written."""
    import dask
    from distributed import Client, LocalCluster

    small_input(tmp_path)
    out = tmp_path / "out.zarr"
    path = write_config(tmp_path, tmp_path / "in.zarr", out, cluster={"timeout": 2})
    pause = {"distributed.worker.memory.pause": 0.01} if workers == "paused" else {}
    with (
        dask.config.set(pause),
        LocalCluster(
            n_workers=0 if workers == "none" else 1,
            processes=False,
            memory_limit="2GB",
            dashboard_address=":0",
        ) as cluster,
        Client(cluster) as client,
    ):
        if workers == "paused":
            deadline = time.monotonic() + 60
            while [w["status"] for w in client.scheduler_info()["workers"].values()] != ["paused"]:
                assert time.monotonic() < deadline, client.scheduler_info()["workers"]
                time.sleep(0.1)
        started = time.monotonic()
        with pytest.raises(pipeline.ClusterError) as info:
            pipeline.run(path, client=client)
    e = info.value
    assert time.monotonic() - started < 30, e
    assert len(str(e).splitlines()) == 1, e
    if workers == "none":
        assert e.reason == "no-workers" and "has no workers" in str(e), e
    else:
        assert e.reason == "not-running" and e.states == {"paused": 1}, e.data
        assert "(1 paused)" in str(e) and "distributed.worker.memory.pause" in str(e), e
    assert not out.exists()


def test_a_joined_cluster_whose_workers_all_left_before_the_plan_is_one_line(
    tmp_path: Path,
) -> None:
    """The workers of a joined scheduler can all leave between its join (which saw one) and
    the plan's look at them (``runner.plan_joined``): the plan took ``min`` of no workers'
    threads, a bare ValueError. The state after they left is a scheduler with none: the
    ClusterError 'no-workers' that a join gives, one line saying how to start some."""
    from distributed import Client, LocalCluster

    from pipeline.running import runner

    small_input(tmp_path)
    with (
        LocalCluster(n_workers=0, processes=False, dashboard_address=":0") as lc,
        Client(lc) as client,
    ):
        path = write_config(
            tmp_path,
            tmp_path / "in.zarr",
            tmp_path / "out.zarr",
            cluster={"scheduler": lc.scheduler_address},
        )
        with pytest.raises(pipeline.ClusterError) as info:
            runner.plan_joined(load_config(path), client)
    e = info.value
    assert e.reason == "no-workers" and len(str(e).splitlines()) == 1, e
    assert f"the scheduler at {lc.scheduler_address} has no workers" in str(e), e
    assert "dask worker" in str(e), e


def test_a_config_mapping_takes_stores_as_path_objects(tmp_path) -> None:
    """A notebook builds the mapping with ``pathlib`` (``{"store": data / "in.zarr"}``):
    refused before as "input.store: Input should be a valid string", which named no fix. A
    path object is the path it names, for the input and the output, in ``run``, ``plan`` and
    ``load_config``'s overrides, and what the summary and a resume see is that path."""
    x = small_input(tmp_path)
    config = yaml.safe_load(write_config(tmp_path, tmp_path / "in.zarr", "x").read_text())
    config["input"]["store"] = tmp_path / "in.zarr"
    config["output"]["store"] = tmp_path / "out.zarr"
    assert pipeline.plan(config).config.output.store == str(tmp_path / "out.zarr")
    summary = pipeline.run(config)
    assert summary.status == "complete" and summary.output == str(tmp_path / "out.zarr")
    assert np.array_equal(read_array(tmp_path / "out.zarr"), reference(x))
    assert pipeline.run(config, resume=True).status == "complete (nothing to do)"
    path = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr", name="o.yaml")
    cfg = load_config(path, {"output.store": tmp_path / "other.zarr"})
    assert cfg.output.store == str(tmp_path / "other.zarr")


@pytest.mark.parametrize(
    "place, takes",
    [
        ("output.shards", "a list of whole numbers from 1 to 1099511627776 or auto or none (none"),
        ("output.overwrite", "true or false"),
        ("chunking.block", "a list of whole numbers from 1 to 1099511627776 or auto"),
        ("backend", "auto, gpu or cpu"),
        ("cluster.dashboard", "text: give the dashboard address of a local cluster; '' for none"),
    ],
)
def test_none_in_a_config_mapping_is_said_to_be_no_value(
    tmp_path: Path, place: str, takes: str
) -> None:
    """A notebook's mapping with None at a key that takes no None (``"shards": None`` for no
    shards, where the text ``none`` is meant) says that the key has no value and what it
    takes, as a text key's does: it had been "must be ... or auto or none (got None)",
    pydantic's "Input should be a valid boolean (got None)", "not a NoneType" (h71u)."""
    small_input(tmp_path)
    config = yaml.safe_load(write_config(tmp_path, tmp_path / "in.zarr", "o.zarr").read_text())
    section, _, key = place.rpartition(".")
    (config.setdefault(section, {}) if section else config)[key] = None
    with pytest.raises(ConfigError) as info:
        pipeline.plan(config)
    line = str(info.value)
    assert line.startswith(
        f"the config mapping: {place}: has no value (null: nothing after its colon, or ~, in "
        f"YAML; None in Python), where it takes {takes}"
    ), line
    assert "\n" not in line and info.value.key == place
    assert not (tmp_path / "o.zarr").exists()


def test_a_call_is_told_the_calls_that_do_what_its_line_names(tmp_path: Path) -> None:
    """What an error of the API names to do is said as calls, where a call does it: a
    complete output edited since had told ``pipeline.run``'s caller "(`pipeline verify` says
    what differs)", and an unfinished generated input "`pipeline run CONFIG` generates it
    again first" or "... when_missing: true and `run` does)" (h71u); ``pipeline generate``,
    which no call does, stays the command line's."""
    small_input(tmp_path)
    path = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr")
    pipeline.run(path)
    (tmp_path / "out.zarr" / "c" / "0" / "0").unlink()  # a chunk file gone
    for call in (pipeline.run, functools.partial(pipeline.run, resume=True)):
        with pytest.raises(OutputError) as info:
            call(path)
        line = str(info.value)
        assert line.endswith(
            "`pipeline.run(config, overwrite=True)` writes it again (`pipeline.verify(config)` "
            "says what differs)"
        ), line
    generate = {"shape": [20, 30], "dtype": "float32", "when_missing": True}
    made_here = tmp_path / "generated"
    made_here.mkdir()
    pipeline.run(generated_config(made_here, generate))
    made = zarr.open_array(made_here / "in.zarr", mode="r+")
    made.attrs["pipeline_generated"] = {**made.attrs["pipeline_generated"], "status": "incomplete"}
    for when_missing, said in [
        (True, "; `pipeline.run(config)` generates it again first (input.generate.when_missing)"),
        (
            False,
            "; `pipeline generate CONFIG` generates it again (or set "
            "input.generate.when_missing: true and `pipeline.run(config)` does)",
        ),
    ]:
        cfg = generated_config(made_here, {**generate, "when_missing": when_missing})
        with pytest.raises(InputError) as info:
            pipeline.verify(cfg)
        assert str(info.value).endswith(said), info.value


def test_an_overrides_bad_value_names_the_override_not_a_line_of_the_file(tmp_path: Path) -> None:
    """A value an override of ``load_config`` set that the config refuses had been said at a
    line of the file: the line of the file's value it replaced, its section's, or line 1 for
    a top-level key (``backend``). It names the override, and no line (``line`` None,
    ``override`` its key), whether the override is dotted or a mapping merged into the file's
    section, or made a section the file does not have; a problem of the file's own still
    names its line, overrides or not."""
    path = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr")
    for overrides, key, override in [
        ({"backend": "tpu"}, "backend", "backend"),  # the file's own value replaced
        ({"output.overwrite": "maybe"}, "output.overwrite", "output.overwrite"),
        ({"input.bogus": 1}, "input.bogus", "input.bogus"),  # unknown key
        ({"cluster": {"workers": 0}}, "cluster.workers", "cluster.workers"),  # merged
        ({"output": {"store": {"x": 1}}}, "output.store", "output.store"),
        ({"input.generate.seed": 1}, "input.generate.shape", "input.generate.seed"),
    ]:
        with pytest.raises(ConfigError) as info:
            pipeline.load_config(path, overrides)
        e = info.value
        assert (e.line, e.key, e.override) == (None, key, override), (overrides, e)
        text = str(e)
        assert text.startswith(f"override {override!r} (given with {path}, not read from it)")
        assert not re.search(rf"{re.escape(str(path))}:\d", text), text
        assert len(text.splitlines()) == 1
    # a section the file does not have, made by a mapping: named by its key, as when the
    # file has the section (it had been named 'cluster', the section)
    bare = tmp_path / "bare.yaml"
    bare.write_text(yaml.safe_dump({**_A_RUN, "backend": "cpu"}, sort_keys=False))
    for overrides, key, override in [
        ({"cluster": {"workers": 0}}, "cluster.workers", "cluster.workers"),
        ({"cluster.workers": 0}, "cluster.workers", "cluster.workers"),
        ({"cluster": {"timeout": 1, "gpus": 0}}, "cluster.gpus", "cluster.gpus"),
        ({"input": {"generate": {"seed": 1}}}, "input.generate.shape", "input.generate.seed"),
        ({"output": {"codec": {"level": 99}}}, "output.codec.level", "output.codec.level"),
    ]:
        with pytest.raises(ConfigError) as info:
            pipeline.load_config(bare, overrides)
        e = info.value
        assert (e.line, e.key, e.override) == (None, key, override), (overrides, e)
        assert str(e).startswith(f"override {override!r} (given with {bare}, not read from it)")
    bad = write_config(
        tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr", "bad.yaml", backend="tpu"
    )
    with pytest.raises(ConfigError) as info:
        pipeline.load_config(bad, {"cluster.workers": 3, "output": {"overwrite": True}})
    line = next(
        i for i, t in enumerate(bad.read_text().splitlines(), 1) if t.startswith("backend:")
    )
    assert (info.value.line, info.value.key) == (line, "backend"), info.value
    assert str(info.value).startswith(f"{bad}:{line}: backend:")
    assert "override" not in info.value.data


@pytest.mark.parametrize(
    ("given", "said"),
    [
        ("input: {store: in.zarr}\nsecret: SECRETX\n", "text"),
        (["SECRETX"], "a list of text"),
        (None, "None"),
        (5, "an integer"),
    ],
)
def test_model_validate_of_no_mapping_is_one_line(given: Any, said: str) -> None:
    """``pipeline.Config.model_validate`` of what is no mapping (YAML text, a list, None) was
    pydantic's ValidationError, quoting the value; now one ConfigError line naming what the
    call takes, never the value (fix42-A), what it was given in plain words (h72a: "not
    str", "not NoneType")."""
    with pytest.raises(ConfigError) as info:
        pipeline.Config.model_validate(given)
    e = info.value
    assert str(e) == (
        "pipeline.Config.model_validate(): takes a mapping of keys (input, output, stages, "
        f"backend, integer_overflow, chunking, cluster), not {said}"
    )
    assert e.file == "pipeline.Config.model_validate()" and e.key is None


def test_model_validate_from_attributes_is_pydantics_with_the_one_line() -> None:
    """``model_validate(obj, from_attributes=True)`` reads an object's attributes, as
    pydantic's does; an invalid one is the one ConfigError line (fix42-A)."""
    from types import SimpleNamespace

    cluster = pipeline.config.ClusterConfig
    made = cluster.model_validate(SimpleNamespace(workers=2), from_attributes=True)
    assert made.workers == 2
    with pytest.raises(ConfigError) as info:
        cluster.model_validate(SimpleNamespace(workers=0), from_attributes=True)
    assert str(info.value) == (
        "pipeline.config.ClusterConfig.model_validate(): workers: must be a whole number "
        "from 1 to 65536 (got 0)"
    )


def test_a_proxys_headers_are_masked_in_the_public_config() -> None:
    """An HTTP store's ``proxy_headers`` (aiohttp sends them to the proxy: its
    ``Proxy-Authorization``) are credentials as ``headers`` are: the summary's config
    (``Config.public_dict``, ``--summary-json``) had written their values as they are, no
    header's name being a secret's (review44)."""
    options = {
        "proxy": "http://proxy.example:3128",
        "proxy_headers": {"Proxy-Authorization": "Basic SECRETX"},
        "client_kwargs": {"proxy_headers": {"X-Proxy-Token": "SECRETY"}},
    }
    config = pipeline.Config(
        input={"store": "https://h.example/in.zarr", "storage_options": options},
        output={"store": "out.zarr"},
        stages=[{"op": "square"}],
    )
    public = json.dumps(config.public_dict())
    assert "SECRETX" not in public and "SECRETY" not in public, public
    assert "http://proxy.example:3128" in public, public  # no credential: said as it is


def test_a_refusal_raised_through_the_api_names_the_calls_options_not_the_flags(
    tmp_path: Path, backend_client: tuple[str, Any], cli
) -> None:
    """A refusal that ``pipeline.run`` raises says the command it names as the call's option
    (``pipeline.run(config, overwrite=True)``, ``even without overwrite=True``), where it had
    said the command line's (`run --overwrite`, ``--overwrite``) to an API user; the command
    line's own line is unchanged, and is the same refusal in its own words."""
    from pipeline.errors import api_words

    backend, client = backend_client
    small_input(tmp_path)
    path = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr", backend=backend)
    assert pipeline.run(path, client=client).status == "complete"
    other = write_config(
        tmp_path,
        tmp_path / "in.zarr",
        tmp_path / "out.zarr",
        "other.yaml",
        backend=backend,
        stages=[{"op": "multiply", "factor": 3}],
    )
    mixed = tmp_path / "mixed.zarr"  # a group of both formats: a run would delete its v2 files
    zarr.open_group(str(mixed), mode="w", zarr_format=2)
    zarr.open_group(str(mixed), mode="a", zarr_format=3)
    beside = write_config(
        tmp_path, tmp_path / "in.zarr", mixed, "mixed.yaml", backend=backend, output={"array": "t"}
    )
    for config, options, flags, said in [
        (
            other,
            {"resume": True},
            ["--resume"],
            "`pipeline.run(config, overwrite=True)` recomputes",
        ),
        (beside, {}, [], "a run would delete, even without overwrite=True;"),
    ]:
        before = file_states(tmp_path)
        with pytest.raises(OutputError) as info:
            pipeline.run(config, client=client, **options)
        assert said in str(info.value), info.value
        assert "--overwrite" not in str(info.value) and "`run " not in str(info.value)
        rc, _, err = cli("run", config, "-q", *flags)
        line = one_line_error(err)
        assert rc == 1 and "--overwrite" in line, line  # the command line's words, kept
        assert api_words(line) == f"error: {info.value}"
        assert file_states(tmp_path) == before


def test_verify_returns_the_result_the_command_line_prints_and_a_changed_chunk_fails_it(
    tmp_path: Path, cli
) -> None:
    """``pipeline.verify`` did not exist: a script had to run ``python -m pipeline verify`` and
    read its table. It returns the command line's result: a complete output compared block by
    block with NumPy, ``ok``; one whose chunk was replaced by a valid chunk of other values
    (written by zarr-python) not ``ok``, the block named in ``mismatched`` and
    ``first_difference``, as the command line's table names them. Nothing is written."""
    path, out, _ = _a_finished_output(tmp_path)
    result = pipeline.verify(path)
    assert result.ok and result.status == "complete" and result.mismatched == []
    assert (result.checked, result.total) == (3, 3)  # 3 blocks of 10 rows, fewer than 8
    assert pipeline.verify(path, samples=np.int64(1), seed=2).checked == 1
    assert pipeline.verify(path, all=True, samples=None).checked == 3  # None: not given
    rc, table, _ = cli("verify", path)
    assert rc == 0 and "3 of 3 blocks" in table, table
    # a valid chunk of other values, written by zarr-python, in the place of the second
    other = tmp_path / "other.zarr"
    shutil.copytree(out, other)
    changed = zarr.open_array(str(other), mode="r+")
    changed[10:20] = changed[10:20] + 1
    shutil.copyfile(other / "c" / "1" / "0", out / "c" / "1" / "0")
    before = file_states(tmp_path)
    result = pipeline.verify(path, all=True)
    assert not result.ok and result.status == "complete"
    assert result.mismatched == [(1, 0)] and (result.checked, result.total) == (3, 3)
    assert result.first_difference is not None and "[10, 0]" in result.first_difference
    rc, table, _ = cli("verify", path, "--all")
    assert rc == 1
    row = next(line for line in table.splitlines() if "mismatched" in line)
    assert f"block [1, 0]; against NumPy's: {result.first_difference}" in " ".join(row.split())
    assert file_states(tmp_path) == before


def test_verify_of_no_output_raises_the_command_lines_error_in_the_calls_words(
    tmp_path: Path, cli
) -> None:
    """Where there is nothing to verify, ``pipeline.verify`` raises the command line's error,
    of its type, with its fields, and its commands said as ``pipeline.run``'s options: no
    output at all ("run the pipeline first"), and no output in a group that a run would not
    write into without deleting (both Zarr formats' metadata), where the command line names
    `run`'s refusal with its flag."""
    from pipeline.errors import api_words

    small_input(tmp_path)
    mixed = tmp_path / "mixed.zarr"
    zarr.open_group(str(mixed), mode="w", zarr_format=2)
    zarr.open_group(str(mixed), mode="a", zarr_format=3)
    configs = [
        write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr"),
        write_config(tmp_path, tmp_path / "in.zarr", mixed, "mixed.yaml", output={"array": "t"}),
    ]
    for config in configs:
        before = file_states(tmp_path)
        rc, _, err = cli("verify", config)
        line = one_line_error(err)
        with pytest.raises(OutputError) as info:
            pipeline.verify(config)
        e = info.value
        assert rc == 1 and api_words(line) == f"error: {e}", (line, e)
        assert e.status == "absent" and e.output.endswith(("out.zarr", "t")), e.data
        assert "--overwrite" not in str(e) and "`run " not in str(e), e
        assert file_states(tmp_path) == before
    # the group's: the command line's flag, said as the call's option
    assert "--overwrite" in line and "nothing to verify" in str(e), line
    assert "overwrite=True" in str(e), e
    assert not (tmp_path / "out.zarr").exists()


def test_verify_refuses_an_option_it_does_not_take_as_run_does(tmp_path: Path) -> None:
    """An unknown keyword option of ``pipeline.verify`` (``sample=2``), one of ``run``'s, a
    client, or an option of the wrong kind (``all="yes"``, ``samples=0``, ``seed=1.5``) is an
    OptionError (a TypeError) in one line naming the call and what it takes, before anything
    is read; and so is ``all=True`` with ``samples`` (every block, and that many at random),
    as the command line refuses ``verify --all --samples 3``: all had won, silently."""
    small_input(tmp_path)
    path = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr")
    cases: list[tuple[dict[str, Any], str, str | None, list[str]]] = [
        ({"sample": 2}, "sample", "samples", ["did you mean 'samples'", "all, samples"]),
        ({"overwrite": True}, "overwrite", None, ["an option of pipeline.run()"]),
        ({"client": None}, "client", None, ["verify runs no Dask"]),
        ({"all": "yes"}, "all", None, ["all='yes'", "True or False"]),
        ({"all": None}, "all", None, ["True or False"]),
        ({"samples": 0}, "samples", None, ["at least 1"]),
        ({"samples": True}, "samples", None, ["at least 1"]),
        ({"seed": 1.5}, "seed", None, ["a whole number"]),
        ({"all": True, "samples": 3}, "samples", None, ["all=True", "samples=3", "contradict"]),
        ({"all": True, "samples": 8}, "samples", None, ["samples=8", "pass one of them"]),
    ]
    for kwargs, option, suggestion, words in cases:
        with pytest.raises(pipeline.OptionError) as info:
            pipeline.verify(path, **kwargs)
        e = info.value
        message = str(e)
        assert isinstance(e, TypeError) and e.option == option, (kwargs, e.data)
        assert e.suggestion == suggestion, e.data
        assert len(message.splitlines()) == 1 and "pipeline.verify()" in message, message
        assert all(w in message for w in words), (words, message)
    with pytest.raises(pipeline.OptionError):
        pipeline.verify(path, True)  # all by name only
    assert not (tmp_path / "out.zarr").exists()


def test_verify_of_a_store_that_refuses_raises_the_command_lines_input_error(
    tmp_path: Path, cli
) -> None:
    """An input over HTTP whose server refuses the password given, or fails a chunk while
    ``pipeline.verify`` compares its block: the command line's ``error:`` line, raised as its
    InputError with its fields (the store, the answer, the region), the password unsaid."""
    from tests.httpkit import serving

    x = np.arange(32 * 64, dtype="f4").reshape(32, 64)
    make_array(tmp_path / "in.zarr", x, (8, 64))
    with serving(tmp_path, basic=["user", "right"]) as server:

        def config(password: str) -> Path:
            url = server.url.replace("http://", f"http://user:{password}@") + "/in.zarr"
            return write_config(tmp_path, url, tmp_path / "out.zarr")

        pipeline.run(config("right"))
        assert pipeline.verify(config("right"), all=True).ok
        for password, fail, field in (
            ("wrong", {}, "status"),
            ("right", {"in.zarr/c/1/0": 500}, "region"),
        ):
            server.set(basic=["user", "right"], fail=fail)
            rc, _, err = cli("verify", config(password), "--all")
            line = one_line_error(err)
            with pytest.raises(InputError) as info:
                pipeline.verify(config(password), all=True)
            e = info.value
            assert rc == 1 and line == f"error: {e}", (line, e)
            assert e.reason.startswith(("HTTP 401", "HTTP 500")) and hasattr(e, field), e.data
            assert f":{password}@" not in str(e) and "user:***@" in str(e), e


def test_verify_and_run_joining_a_scheduler_leave_the_callers_logging_as_it_is(
    tmp_path: Path,
) -> None:
    """``pipeline.verify`` of a config that joins a scheduler (``cluster.scheduler``), whose
    refusal names the command `run` takes there (a plan on that cluster), had set every
    ``distributed`` and ``tornado`` logger of the caller's process, and Dask's config
    ``logging``, to CRITICAL: the caller's own client then said nothing of a lost worker.
    The API leaves the caller's logging as it is; so does ``pipeline.run`` there, whose
    output then verifies."""
    import logging

    import dask.config
    import distributed  # noqa: F401  (the caller's own, loaded before the call)

    x = np.arange(8 * 64, dtype=np.float32).reshape(8, 64)
    make_array(tmp_path / "in.zarr", x, (1, 64))
    with external_cluster(tmp_path, nworkers=1) as ext:
        cfg = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr")
        cfg.write_text(
            cfg.read_text().replace("cluster:\n", f"cluster:\n  scheduler: {ext.address}\n")
        )
        names = {
            "distributed": logging.DEBUG,
            "distributed.client": logging.WARNING,
            "distributed.worker": logging.INFO,
            "tornado": logging.INFO,
            "tornado.application": logging.WARNING,
        }
        saved = {n: logging.getLogger(n).level for n in names}
        config = dask.config.get("logging", None)
        try:
            for n, level in names.items():
                logging.getLogger(n).setLevel(level)

            def levels() -> tuple[dict[str, int], Any]:
                return {n: logging.getLogger(n).level for n in names}, dask.config.get(
                    "logging", None
                )

            before = levels()
            with pytest.raises(OutputError) as e:  # no output yet: `run` writes it
                pipeline.verify(cfg)
            assert e.value.status == "absent", e.value
            assert levels() == before
            summary = pipeline.run(cfg)
            assert summary.status == "complete"
            assert levels() == before
            assert pipeline.verify(cfg, all=True).ok
            assert levels() == before
        finally:
            for n, level in saved.items():
                logging.getLogger(n).setLevel(level)
            if config is None:
                dask.config.config.pop("logging", None)
            else:
                dask.config.set({"logging": config})
    assert np.array_equal(read_array(tmp_path / "out.zarr"), reference(x))


def test_ctrl_c_of_a_run_whose_config_overwrites_says_its_plain_run_starts_over(
    tmp_path: Path,
) -> None:
    """A real Ctrl-C while ``pipeline.run`` of a config with ``output.overwrite: true``
    writes a block: its Interrupted had said only that ``resume=True`` finishes the output,
    as for any config, where the plain call the script makes again starts over; it says
    both, as the command line's line does. The plain call then replaces the output whole."""
    x = many_blocks_input(tmp_path / "in.zarr", 40, 1024)
    out = tmp_path / "out.zarr"
    path = write_config(
        tmp_path,
        tmp_path / "in.zarr",
        out,
        output={"overwrite": True, "chunks": [1, 1024]},
        chunking={"block": [1, 1024]},
        cluster={"workers": 1, "threads_per_worker": 1, "dashboard": ""},
    )
    (tmp_path / "script.py").write_text(
        # the plain call (overwrite=None: as the config says; an overwrite=False given says no
        # to the config, and its line names overwrite=True, not the plain call)
        ctrl_c_script("pipeline.running.tasks", "write_block", overwrite=None)
    )
    proc = run_python([tmp_path / "script.py", path], tmp_path)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["state"] == "incomplete" and status(out) == "incomplete", got
    assert got["str"].endswith(
        "run again with resume=True (`pipeline run --resume`) to finish it; a plain "
        "`pipeline.run(config)` (output.overwrite: true) starts over"
    ), got
    assert pipeline.run(path).status == "complete"
    assert np.array_equal(read_array(out), expected(x), equal_nan=True)


def test_a_damaged_input_chunk_names_pipeline_verify_as_the_api_calls_it(tmp_path: Path) -> None:
    """``pipeline.run`` over an input whose chunk file was cut short raises the ChunkError
    naming the chunk, whose next step is ``pipeline.verify(config)``, the call an API user
    makes: it had named the command line's `pipeline verify`."""
    from pipeline.errors import ChunkError

    small_input(tmp_path)
    chunk = tmp_path / "in.zarr" / "c" / "1" / "0"
    chunk.write_bytes(chunk.read_bytes()[:40])
    path = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr")
    with pytest.raises(ChunkError) as err:
        pipeline.run(path)
    line = str(err.value)
    assert err.value.key == "c/1/0", line
    assert line.endswith(
        "then `pipeline.verify(config)` names the call that finishes the output"
    ), line
    assert "`pipeline verify`" not in line, line


def test_a_clients_workers_memory_limits_size_the_plan(tmp_path: Path) -> None:
    """``pipeline.run(cfg, client=client)`` sized the plan by this machine's RAM (0.8 of it a
    worker), whatever memory limit the client's workers have: a cluster of 120 MiB workers
    ran blocks they could not hold, and its nanny killed them, four times, before the run
    failed with the output incomplete. The workers' own limits size it, as for a scheduler
    joined by address: auto is the weakest worker's limit (shared by workers that are threads
    of one process), and a plan that limit cannot hold is refused before anything is
    written."""
    from distributed import Client, LocalCluster

    small_input(tmp_path)
    out = tmp_path / "out.zarr"
    path = write_config(tmp_path, tmp_path / "in.zarr", out)
    limit = 3 << 30  # more than this process uses (a worker past 80% of it is paused)
    for n in (1, 2):  # threads of this process, each comparing all of its memory with its limit
        with (
            LocalCluster(
                n_workers=n, processes=False, memory_limit=limit, dashboard_address=":0"
            ) as cluster,
            Client(cluster) as client,
        ):
            summary = pipeline.run(path, client=client, overwrite=True)
        assert summary.host_budget == limit // n, (n, summary.host_budget)
    with (
        LocalCluster(
            n_workers=1, threads_per_worker=1, memory_limit="120MiB", dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
        pytest.raises(PlanError) as info,
    ):
        pipeline.run(path, client=client, overwrite=True)
    e = info.value
    assert e.host_budget == 120 << 20 and "120.00 MiB" in str(e), str(e)
    assert len(str(e).splitlines()) == 1
    assert summary.status == "complete" and status(out) == "complete"


def test_plan_takes_a_client_and_plans_for_what_its_workers_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``pipeline.plan`` took no client (an OptionError naming ``pipeline.run``), so a user
    on a scheduler of their own could not see the plan of their run; and ``run``'s plan for
    a client took this machine's facts (whether a GPU is usable and why, its GPUs' free
    memory, its cores) but for the workers' memory limits. ``plan(config, client=client)``
    is the plan ``run(config, client=client)`` makes, from what each worker reports: here
    the workers are processes whose environment disables the GPU, and this process's does
    not, so the backend's reason is theirs; so does ``plan(config)`` of a config that names
    that cluster's scheduler. Nothing is written; the client is left open."""
    from distributed import Client, LocalCluster

    from pipeline.planning import describe

    monkeypatch.delenv("PIPELINE_DISABLE_GPU", raising=False)
    x = small_input(tmp_path)
    out = tmp_path / "out.zarr"
    path = write_config(tmp_path, tmp_path / "in.zarr", out, backend="auto")
    here = pipeline.plan(path)
    assert "PIPELINE_DISABLE_GPU" not in here.backend_reason, here.backend_reason
    with (
        LocalCluster(
            n_workers=1,
            threads_per_worker=1,
            memory_limit="1GiB",
            env={"PIPELINE_DISABLE_GPU": "1"},
            dashboard_address=":0",
        ) as cluster,
        Client(cluster) as client,
    ):
        p = pipeline.plan(path, client=client)
        assert not out.exists()
        assert "PIPELINE_DISABLE_GPU is set" in p.backend_reason, p.backend_reason
        assert p.facts is not None and p.facts.gpu_reason == "PIPELINE_DISABLE_GPU is set"
        c = p.cluster
        assert (c.workers, c.threads_per_worker, c.own, c.host_budget) == (1, 1, False, 1 << 30)
        rows = dict(describe(p))
        assert rows["workers"].startswith("the client's cluster: 1 worker(s)"), rows["workers"]
        assert "output now" in str(p)
        # without a client, a config that names the scheduler is planned for its workers too,
        # joined for the plan only, as `pipeline plan` plans it (it had been this machine's)
        address = cluster.scheduler_address
        named = write_config(
            tmp_path,
            tmp_path / "in.zarr",
            out,
            "named.yaml",
            backend="auto",
            cluster={"scheduler": address},
        )
        joined = pipeline.plan(named)
        assert joined.backend_reason == p.backend_reason
        assert (joined.cluster.workers, joined.cluster.host_budget) == (1, 1 << 30)
        assert dict(describe(joined))["workers"].startswith(f"the cluster at {address}: 1 ")
        summary = pipeline.run(path, client=client)
        assert client.submit(int, "7").result() == 7  # left open
    assert summary.hardware["gpu_reason"] == "PIPELINE_DISABLE_GPU is set", summary.hardware
    assert (summary.workers, summary.threads_per_worker, summary.host_budget) == (1, 1, 1 << 30)
    assert np.array_equal(read_array(out), reference(x))
    with pytest.raises(pipeline.OptionError) as info:
        pipeline.plan(path, client="tcp://127.0.0.1:8786")
    line = str(info.value)
    assert line.startswith("pipeline.plan() option client takes a distributed.Client"), line
    assert "cluster.scheduler" in line, line


def test_a_threads_clusters_client_without_workers_is_told_how_to_start_them(
    tmp_path: Path,
) -> None:
    """A caller's client of a cluster of this process's threads (``LocalCluster(processes=
    False)``, an ``inproc://`` scheduler) that has no worker, or whose cluster is closed
    while the plan waits for one: the line had told to start `dask worker inproc://...`,
    which cannot join a scheduler that only this process reaches (h70a). It names the
    cluster's ``scale(n)``; the client is left as the caller had it: the same plan is made
    once a worker comes."""
    import threading

    from distributed import Client, LocalCluster

    from pipeline.errors import ClusterError

    small_input(tmp_path)
    path = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr")
    cfg = pipeline.load_config(path, {"cluster.timeout": 1})
    with (
        LocalCluster(n_workers=0, processes=False, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        with pytest.raises(ClusterError) as info:
            pipeline.plan(cfg, client=client)
        line = str(info.value)
        assert info.value.reason == "no-workers" and len(line.splitlines()) == 1, line
        assert "dask worker inproc" not in line and "`scale(n)`" in line, line
        cluster.scale(1)
        assert pipeline.plan(cfg, client=client).cluster.workers == 1
        assert client.submit(int, "7").result() == 7  # left open
    with (
        LocalCluster(n_workers=0, processes=False, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        waiting = pipeline.load_config(path, {"cluster.timeout": 60})
        closing = threading.Timer(0.5, cluster.close)  # within the minute the plan waits
        closing.start()
        try:
            with pytest.raises(ClusterError) as info:
                pipeline.plan(waiting, client=client)
        finally:
            closing.join()
        line = str(info.value)
        assert info.value.reason == "lost" and len(line.splitlines()) == 1, line
        assert "dask worker inproc" not in line and "`scale(n)`" in line, line
    assert not (tmp_path / "out.zarr").exists()


#: Python's names for its types, which a line to a user had said ("not a builtins.int", "not
#: int", "a value of type bytes", pydantic's "output.shards.tuple[function-before[...]]").
_TYPE_NAMES = re.compile(
    r"builtins|\b(?:int|dict|str|float|bytes_|ndarray|NoneType)\b|of type|tuple\[|literal\[|"
    r"function-|constrained"
)


def test_a_value_of_the_wrong_kind_is_said_in_plain_words(tmp_path: Path, cli) -> None:
    """A value of the wrong kind, given to the API's functions, in a config mapping, in a YAML
    file, or as an override, is said in plain words ("not an integer", "not a mapping", "not
    a list of integers"), never by Python's name for its type: ``pipeline.load_config(3)``
    had said "not a builtins.int", ``Config.model_validate(5)`` "not int", a section given
    bytes "a value of type bytes", and a mapping given where a list or ``auto`` goes
    "output.shards.tuple[function-before[_not_bool(), constrained-int], ...]: must be a
    value", ``host_memory_limit`` "literal['auto']: Input should be 'auto'"."""
    small_input(tmp_path)
    path = write_config(tmp_path, tmp_path / "in.zarr", tmp_path / "out.zarr")
    doc = yaml.safe_load(path.read_text())

    def with_(section: str, key: str, value: Any) -> dict[str, Any]:
        return {**doc, section: {**doc.get(section, {}), key: value}}

    mapping = {"a": 1}
    cases: list[tuple[Any, str]] = [
        (lambda: pipeline.load_config(3), "takes a YAML file's path, not an integer"),
        (lambda: pipeline.load_config(b"run.yaml"), "not bytes"),
        (lambda: pipeline.load_config(path, [1, 2]), "not a list of integers"),
        (lambda: pipeline.plan(["run.yaml"]), "not a list of text"),
        (lambda: pipeline.plan(3.5), "or a pipeline.Config, not a number"),
        (lambda: pipeline.plan(path, client=5), "distributed.Client, not an integer"),
        (lambda: pipeline.run(path, client={}), "distributed.Client, not a mapping"),
        (lambda: pipeline.Config.model_validate(5), "cluster), not an integer"),
        (lambda: pipeline.config.InputConfig.model_validate([1]), "not a list of integers"),
        (lambda: pipeline.plan({**doc, "output": b"o"}), "output: must be a mapping of its"),
        (lambda: pipeline.plan(with_("input", "store", 5)), "as text (such as '/data/in.zarr'"),
        (lambda: pipeline.plan(with_("cluster", "scheduler", 5)), "'local', not an integer"),
        (lambda: pipeline.plan(with_("cluster", "dashboard", mapping)), "none, not a mapping"),
        (lambda: pipeline.plan(with_("output", "shards", mapping)), "output.shards: must be a"),
        (lambda: pipeline.plan(with_("output", "chunks", mapping)), "output.chunks: must be a"),
        (lambda: pipeline.plan(with_("chunking", "block", mapping)), "chunking.block: must be"),
        (lambda: pipeline.plan(with_("cluster", "host_memory_limit", mapping)), "must be auto"),
        (lambda: pipeline.plan(with_("cluster", "device_memory_limit", mapping)), "be auto"),
        (lambda: pipeline.load_config(path, {"output.shards": mapping}), "shards: must be a"),
        (lambda: pipeline.load_config(path, {"cluster": b"x"}), "not bytes"),
    ]
    for call, words in cases:
        with pytest.raises((pipeline.OptionError, ConfigError)) as info:
            call()
        line = str(info.value)
        assert words in line and "\n" not in line, (words, line)
        assert not _TYPE_NAMES.search(line), line
    doc["output"]["shards"] = mapping  # a YAML file, on the command line
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    rc, _, err = cli("plan", path)
    line = one_line_error(err)
    assert rc == 1 and "output.shards: must be a list of whole numbers" in line, line
    assert not _TYPE_NAMES.search(line), line
