"""Ctrl-C while a call of the Python API imports the libraries it loads on first use.

A notebook's first ``pipeline.run`` imports pydantic, Dask, xarray and Zarr (a second or
two, cold); a Ctrl-C then raised ``KeyboardInterrupt`` inside a module's body, which left its
package half imported, and every later call of that kernel failed on it (``AttributeError:
module 'zarr' has no attribute 'core'``) until a restart. Each scenario runs in a Python
process of its own (what the test process has imported does not matter), which sends itself
SIGINT as the watched module's body begins and reports, as JSON lines, what its caller caught
and what a second call in the same process (a notebook's next cell) does. The processes set
SIGINT's handler to Python's own first, as a kernel has it: a shell's background job (a
fresh-clone ``make test &``) inherits SIGINT ignored, where no Ctrl-C would ever land. No
timing is asserted: a busy 2-core machine only makes these slower.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.conftest import make_array, read_array
from tests.faultkit import ROOT, many_blocks_config, many_blocks_input, run_python, status


def next_call(call: str) -> str:
    """A subprocess script's tail: ``call`` (Python, in the script's names) made once more in
    the same process, its value or its error's type and text printed as one JSON line,
    ``{"again": ...}``: what a notebook's next cell gets after the first call stopped."""
    return (
        f"try:\n    second = {call}\nexcept BaseException as e:\n"
        '    second = f"{type(e).__name__}: {e}"\n'
        'print(json.dumps({"again": second}), flush=True)\n'
    )


#: ``python SCRIPT CALL CONFIG MODULE``: SIGINT sent as ``MODULE``'s body begins (the import
#: machinery's frames on the stack), during a first ``pipeline.CALL(CONFIG)``; then the same
#: call again. Each JSON line: ``fresh`` (MODULE not imported before the call: the test's
#: premise), what the first call raised, whether the import had ended when it was raised, and
#: what the second call returned.
SCRIPT = """
import importlib.machinery, json, signal, sys

# Ctrl-C raises KeyboardInterrupt, as in a notebook's kernel, however this process was started
signal.signal(signal.SIGINT, signal.default_int_handler)
import pipeline

call, config, module = sys.argv[1], sys.argv[2], sys.argv[3]
seen = {"fresh": module not in sys.modules, "sent": False, "import_ended": False}


class Interrupting(importlib.machinery.PathFinder):
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name != module:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path, target)
        body = spec.loader.exec_module

        def exec_module(m):
            sys.meta_path.remove(Interrupting)
            seen["sent"] = True
            signal.raise_signal(signal.SIGINT)  # its handler runs in this module's import
            body(m)
            seen["import_ended"] = True

        spec.loader.exec_module = exec_module
        return spec


def first():
    if call == "run":
        return pipeline.run(config).status
    if call == "plan":
        return pipeline.plan(config).n_blocks
    return pipeline.load_config(config).output.store


def again():
    if call == "run":
        return pipeline.run(config, overwrite=True).status
    return first()


sys.meta_path.insert(0, Interrupting)
try:
    got = first()
    caught = {"type": None, "returned": got}
except KeyboardInterrupt as e:
    caught = {
        "type": type(e).__name__,
        "state": getattr(e, "state", None),
        "import_ended": seen["import_ended"],
    }
caught.update(fresh=seen["fresh"], sent=seen["sent"])
print(json.dumps(caught), flush=True)
"""
SCRIPT += next_call("again()")


def _config(tmp_path: Path) -> Path:
    """A small job (an xarray Dataset's variable, CPU, no dashboard) and its config file."""
    import xarray as xr

    ds = xr.Dataset({"v": (("y", "x"), np.arange(60.0).reshape(6, 10))})
    ds.to_zarr(tmp_path / "in.zarr", zarr_format=2)
    cfg = {
        "input": {"store": str(tmp_path / "in.zarr"), "array": "v"},
        "output": {"store": str(tmp_path / "out.zarr")},
        "stages": [{"op": "square"}],
        "backend": "cpu",
        "cluster": {"dashboard": ""},
    }
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(cfg))
    return tmp_path / "run.yaml"


def _interrupted(tmp_path: Path, call: str, module: str) -> tuple[dict, dict, str]:
    """Run :data:`SCRIPT` in a process of its own: what its first call raised, what its
    second returned, and its stderr."""
    config = _config(tmp_path)
    (tmp_path / "script.py").write_text(SCRIPT)
    proc = run_python([tmp_path / "script.py", call, config, module], tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr
    first, again = (json.loads(line) for line in proc.stdout.splitlines()[-2:])
    # the scenario's premise, checked in the process itself: the module is imported by this
    # call, and the SIGINT was sent inside its import
    assert first["fresh"] and first["sent"], (module, proc.stdout, proc.stderr)
    return first, again, proc.stderr


@pytest.mark.parametrize(
    "module", ["pydantic.main", "toolz.functoolz", "xarray.core.dataset", "zarr.core.array"]
)
def test_ctrl_c_while_a_run_imports_leaves_no_package_half_imported(
    tmp_path: Path, module: str
) -> None:
    """A Ctrl-C in a notebook's first ``pipeline.run`` while it imports pydantic, Dask,
    xarray or Zarr: the interrupt waits for the import's end, then reaches the caller as
    the run's ``Interrupted``, and the kernel's next call runs. Python's
    ``KeyboardInterrupt`` in the module's body had left its package half made, and every
    later call failed (``module 'zarr' has no attribute 'core'``, ``name 'functoolz' is not
    defined``). Where the run is when the held-back signal is sent again (every
    ``waiting.STEP``) is not asserted: an import made just before the output is created
    (xarray's) let the run reach 'creating-new' first in one of three runs, on an idle
    machine."""
    first, again, stderr = _interrupted(tmp_path, "run", module)
    assert again == {"again": "complete"}, (first, again, stderr)
    assert first["type"] == "Interrupted", (first, stderr)
    assert first["import_ended"], first  # held back to the import's end, not raised inside it
    assert np.array_equal(
        read_array(tmp_path / "out.zarr", "v"), np.arange(60.0).reshape(6, 10) ** 2
    )


@pytest.mark.parametrize("call", ["load_config", "plan"])
def test_ctrl_c_while_a_config_call_imports_pydantic_leaves_it_whole(
    tmp_path: Path, call: str
) -> None:
    """The same for ``load_config`` and ``plan``, whose first call imports pydantic: a
    ``KeyboardInterrupt`` once the import is done (raised as the call ends where the call
    ended first), and the next call works (``pydantic.main`` half imported had failed it)."""
    first, again, stderr = _interrupted(tmp_path, call, "pydantic.main")
    expected = str(tmp_path / "out.zarr") if call == "load_config" else 1
    assert again == {"again": expected}, (first, again, stderr)
    assert first["type"] == "KeyboardInterrupt" and first["import_ended"], (first, stderr)


#: A module that runs ``pipeline.run`` as it is imported (``import analysis`` in a notebook),
#: Ctrl-C'd by a thread once 3 of its blocks are written.
IMPORTED_CALLER = """
import json, os, pathlib, signal, sys, threading

signal.signal(signal.SIGINT, signal.default_int_handler)  # as a notebook's kernel has it
import pipeline
from tests.faultkit import wait_for_markers

pipeline.run(sys.argv[2], overwrite=True)  # its imports made: the next run's are none
out = pathlib.Path(sys.argv[3])

def interrupt():
    wait_for_markers(None, out, 3, timeout=300)
    os.kill(os.getpid(), signal.SIGINT)

threading.Thread(target=interrupt, daemon=True).start()
try:
    pipeline.run(sys.argv[1])
    caught = {"type": None}
except KeyboardInterrupt as e:
    caught = {"type": type(e).__name__, "state": getattr(e, "state", None)}
print(json.dumps(caught), flush=True)
"""


def test_ctrl_c_in_a_run_called_while_its_caller_is_imported_stops_it_at_once(
    tmp_path: Path,
) -> None:
    """Only the imports a call makes hold a Ctrl-C back: a run called by a module as it is
    imported (its whole stack below importlib's frames) stops at the Ctrl-C, its output
    resumable, rather than at its end, complete."""
    many_blocks_input(tmp_path / "in.zarr", 6000)
    make_array(tmp_path / "small.zarr", np.ones((4, 4), np.float32), (4, 4))
    out = tmp_path / "out.zarr"
    cfg = many_blocks_config(tmp_path / "in.zarr", out, cluster={"dashboard": ""})
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(cfg))
    small = {**cfg, "input": {"store": str(tmp_path / "small.zarr")}, "chunking": {}}
    small["output"] = {"store": str(tmp_path / "small-out.zarr")}
    (tmp_path / "small.yaml").write_text(yaml.safe_dump(small))
    (tmp_path / "analysis.py").write_text(IMPORTED_CALLER)
    args = [tmp_path / "run.yaml", tmp_path / "small.yaml", out]
    code = "import sys; sys.path.insert(0, sys.argv.pop(1)); import analysis"
    proc = run_python(["-c", code, tmp_path, *args], ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr
    caught = json.loads(proc.stdout.splitlines()[-1])
    assert caught == {"type": "Interrupted", "state": "incomplete"}, (proc.stdout, proc.stderr)
    assert status(out) == "incomplete"


#: ``python SCRIPT CONFIG FAULT``: a first ``pipeline.run(CONFIG)`` in which the look at the
#: output made again once its lock is held (``output.decide_start(..., locked=True)``) raises
#: ``FAULT`` (Python's ``KeyboardInterrupt``, as a Ctrl-C landing there does, or a store's
#: ``OSError``); then the same call again in the same process (a notebook's next cell). Each
#: JSON line: what the first call raised, what the second returned.
LOCKED_FAULT = """
import json, sys

import pipeline
from pipeline.running import output

config, fault = sys.argv[1], sys.argv[2]
plain = output.decide_start
faults = [KeyboardInterrupt() if fault == "ctrl-c" else OSError(5, "Input/output error")]


def decide_start(*args, **kwargs):
    if kwargs.get("locked") and faults:
        raise faults.pop()
    return plain(*args, **kwargs)


output.decide_start = decide_start
try:
    got = {"returned": pipeline.run(config).status}
except BaseException as e:
    got = {"type": type(e).__name__, "state": getattr(e, "state", None)}
print(json.dumps(got), flush=True)
"""
LOCKED_FAULT += next_call("pipeline.run(config).status")


@pytest.mark.parametrize("fault", ["ctrl-c", "oserror"])
def test_a_run_stopped_once_it_holds_its_lock_gives_it_up_for_the_next_call(
    tmp_path: Path, fault: str
) -> None:
    """A Ctrl-C (or a store's failure) that lands in a run's second look at the output, made
    once its lock is held, gives the lock up: the same process's next ``pipeline.run`` (a
    notebook's next cell) runs. Only a ``PipelineError`` had given it up there: the lock
    stayed held by the process, and the next call was refused as "another run is writing
    ... (this process, another thread's `pipeline.run`)" (seen in one of three runs of
    :func:`test_ctrl_c_while_a_run_imports_leaves_no_package_half_imported`, the Ctrl-C held
    back to an import's end landing there)."""
    config = _config(tmp_path)
    (tmp_path / "script.py").write_text(LOCKED_FAULT)
    proc = run_python([tmp_path / "script.py", config, fault], tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr
    first, again = (json.loads(line) for line in proc.stdout.splitlines()[-2:])
    want = ("Interrupted", "untouched") if fault == "ctrl-c" else ("StoreError", None)
    assert (first["type"], first["state"]) == want, (first, proc.stderr)
    assert again == {"again": "complete"}, (first, again, proc.stderr)
    assert np.array_equal(
        read_array(tmp_path / "out.zarr", "v"), np.arange(60.0).reshape(6, 10) ** 2
    )


#: ``python SCRIPT CONFIG``: a first ``pipeline.run(CONFIG)`` whose Ctrl-C lands where Python
#: drops every exception, a ``__del__`` (as it did in a finalizer of a stage's object, or in
#: distributed's garbage-collector callback: "Exception ignored in ..."), on the main thread as
#: the run looks at its output again once its lock is held; then the same call again (a
#: notebook's next cell). Each JSON line: what the first call raised or returned and whether
#: the signal was sent, then what the second returned.
DROPPED = """
import json, signal, sys

signal.signal(signal.SIGINT, signal.default_int_handler)  # as a notebook's kernel has it
import pipeline
from pipeline.running import output

plain = output.decide_start
seen = {"sent": False}


class Finalized:
    def __del__(self):
        seen["sent"] = True
        signal.raise_signal(signal.SIGINT)  # its handler runs here, in the __del__


def decide_start(*args, **kwargs):
    if kwargs.get("locked") and not seen["sent"]:
        Finalized()  # freed at once
    return plain(*args, **kwargs)


output.decide_start = decide_start
try:
    caught = {"type": None, "returned": pipeline.run(sys.argv[1]).status}
except KeyboardInterrupt as e:
    caught = {"type": type(e).__name__, "state": getattr(e, "state", None)}
caught["sent"] = seen["sent"]
print(json.dumps(caught), flush=True)
"""
DROPPED += next_call("pipeline.run(sys.argv[1], overwrite=True).status")


def test_ctrl_c_that_python_dropped_in_a_finalizer_still_stops_the_run(tmp_path: Path) -> None:
    """A Ctrl-C in ``pipeline.run`` that lands in a ``__del__`` (Python prints "Exception
    ignored in ..." and drops the ``KeyboardInterrupt``) still reaches the caller as the
    run's ``Interrupted``: it stays pending until the run's next wait raises it again, or the
    call's end. It had been lost, and the run returned its output complete
    (:func:`test_ctrl_c_while_a_run_imports_leaves_no_package_half_imported` failed so in a
    CI run, the held-back signal sent again landing in a finalizer). The next call runs."""
    config = _config(tmp_path)
    (tmp_path / "script.py").write_text(DROPPED)
    proc = run_python([tmp_path / "script.py", config], tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr
    first, again = (json.loads(line) for line in proc.stdout.splitlines()[-2:])
    # the premise: the signal was sent in the finalizer, and Python dropped its exception there
    assert first["sent"] and "Exception ignored" in proc.stderr, (first, proc.stderr)
    assert first["type"] == "Interrupted", (first, proc.stderr)
    assert again == {"again": "complete"}, (first, again, proc.stderr)
    assert np.array_equal(
        read_array(tmp_path / "out.zarr", "v"), np.arange(60.0).reshape(6, 10) ** 2
    )


#: ``python SCRIPT CONFIG WHAT``: a Ctrl-C at each point where Python runs a signal's handler
#: in the own code of WHAT: ``guard``, ``waiting.imports_uninterrupted`` (an empty body), or
#: ``cli``, ``pipeline.cli.main(["schema"])`` as a caller in Python calls it (its handlers set
#: and put back); the points: as each call its frame makes is entered or returns, a C
#: function's too (a profile function sends SIGINT at the k-th, k = 1, 2, ... until the call
#: makes no more), each in a call of its own. A JSON line: the points, and those after which
#: SIGINT's or SIGTERM's handler was not the caller's, or the interrupt was left pending (for
#: ``guard`` also: no KeyboardInterrupt raised); then, each point again without a look
#: between, what the process's next ``pipeline.run`` (a notebook's next cell) returned.
EVERY_POINT = """
import contextlib, io, json, signal, sys

signal.signal(signal.SIGINT, signal.default_int_handler)  # as a notebook's kernel has it
import pipeline
from pipeline import cli
from pipeline.running import waiting

what = sys.argv[2]
code = (waiting.imports_uninterrupted.__wrapped__ if what == "guard" else cli.main).__code__


def call():
    if what == "guard":
        with waiting.imports_uninterrupted():
            pass
    else:
        with contextlib.redirect_stdout(io.StringIO()):
            cli.main(["schema"])


def attempt(k):
    count = [0]

    def profile(frame, event, arg):
        ours = (event in ("c_call", "c_return") and frame.f_code is code) or (
            event in ("call", "return")
            and frame.f_back is not None
            and frame.f_back.f_code is code
        )
        if ours:
            count[0] += 1
            if count[0] == k:
                signal.raise_signal(signal.SIGINT)

    raised = False
    sys.setprofile(profile)
    try:
        call()
    except KeyboardInterrupt:
        raised = True
    finally:
        sys.setprofile(None)
    return count[0] >= k, raised


points, bad = 0, []
while True:
    reached, raised = attempt(points + 1)
    if not reached:
        break
    points += 1
    left = [
        name
        for name, s, h in (
            ("SIGINT", signal.SIGINT, signal.default_int_handler),
            ("SIGTERM", signal.SIGTERM, signal.SIG_DFL),
        )
        if signal.getsignal(s) is not h
    ]
    if left or waiting.pending() or (what == "guard" and not raised):
        bad.append({"point": points, "raised": raised, "left": left,
                    "pending": waiting.pending()})
    signal.signal(signal.SIGINT, signal.default_int_handler)  # the next point afresh
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    waiting.reset()
print(json.dumps({"points": points, "bad": bad}), flush=True)
for k in range(1, points + 1):
    attempt(k)
"""
EVERY_POINT += next_call("pipeline.run(sys.argv[1]).status")


@pytest.mark.parametrize("what", ["guard", "cli"])
def test_ctrl_c_anywhere_in_setting_and_putting_back_handlers_leaves_nothing_behind(
    tmp_path: Path, what: str
) -> None:
    """A Ctrl-C that lands in the code that sets the pipeline's SIGINT handler and puts the
    caller's back (the API's ``imports_uninterrupted``, whose held-back signal sent again
    lands there too; ``cli.main`` called from Python) leaves the caller's handlers and no
    interrupt pending; the API's guard raises it. One that landed just after the handler
    was set, or as it was put back (``signal.signal`` is Python code, where handlers run),
    had left it set and the interrupt pending: the process's next ``pipeline.run`` found a
    handler not Python's, so started no state afresh, and stopped as interrupted at its
    first wait, no Ctrl-C pressed (and the caller's next Ctrl-C in an import of its own was
    dropped by the stale handler)."""
    config = _config(tmp_path)
    (tmp_path / "script.py").write_text(EVERY_POINT)
    proc = run_python([tmp_path / "script.py", config, what], tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr
    swept, again = (json.loads(line) for line in proc.stdout.splitlines()[-2:])
    assert swept["points"] >= 4, (swept, proc.stderr)  # the premise: the points were reached
    assert swept["bad"] == [], (swept, proc.stderr)
    assert again == {"again": "complete"}, (swept, again, proc.stderr)
    assert np.array_equal(
        read_array(tmp_path / "out.zarr", "v"), np.arange(60.0).reshape(6, 10) ** 2
    )
