"""What the pipeline prints is printed as it is: no value is read as rich markup.

On a terminal the tables and the progress bar are drawn by rich, which reads ``[red]`` or
``[/]`` in a string as markup and drops it (``pip install '.[cu12]'`` came out as ``'.'``). The
CLI runs here at a real pseudo-terminal, as a user sees it, with paths that hold markup.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import yaml

from pipeline.reporting.info import rows as info_rows
from pipeline.reporting.progress import Progress
from tests.conftest import make_array
from tests.terminal import at_terminal

#: Directory names that are rich markup: an opening tag, a closing one, a bare closing one.
MARKUP = ("in[red]x[/].zarr", "out[/]y[red].zarr", "c[bold]fg")


def _config(tmp: Path) -> tuple[Path, Path, Path]:
    """A small input and a config, at paths that hold markup; (config, input, output)."""
    src, dst = tmp / MARKUP[0], tmp / MARKUP[1]
    make_array(src, np.arange(600, dtype=np.float32).reshape(20, 30), (5, 30))
    (tmp / MARKUP[2]).mkdir()
    cfg = tmp / MARKUP[2] / "run.yaml"
    doc = {
        "input": {"store": str(src)},
        "output": {"store": str(dst)},
        "stages": [{"op": "multiply", "factor": 5}],
        "backend": "cpu",
        "cluster": {"workers": 1, "threads_per_worker": 1, "dashboard": ""},
    }
    cfg.write_text(yaml.safe_dump(doc, sort_keys=False))
    return cfg, src, dst


def _at_terminal(*args: str | Path, cwd: Path) -> tuple[int, str, str]:
    """(exit status, what the terminal shows, stderr) of ``python -m pipeline ARGS``."""
    with at_terminal(*args, cwd=cwd) as (w, term):
        rc, err = w.finish(timeout=300)
        return rc, term.text(), err


def test_plan_and_run_tables_show_paths_that_hold_markup(tmp_path: Path) -> None:
    cfg, src, dst = _config(tmp_path)
    rc, shown, err = _at_terminal("plan", cfg, cwd=tmp_path)
    assert rc == 0, err
    assert any(bar in shown for bar in "│┃|"), shown  # rich drew a table: the terminal path
    assert f"plan of {cfg}" in shown, shown  # the title
    assert f"{src}: [20, 30] float32" in shown, shown
    assert f"{dst}: [20, 30] float32" in shown, shown
    rc, shown, err = _at_terminal("run", cfg, "--progress", "bar", cwd=tmp_path)
    assert rc == 0, err
    assert str(dst) in shown and "run summary" in shown, shown
    assert "run" in err and "2/2" in err  # the progress bar (on stderr, not a terminal)


def test_info_rows_are_shown_whole(tmp_path: Path) -> None:
    """Every row of ``pipeline info`` with brackets in it (here: ``pip install '.[cu12]'``
    where CuPy is missing) is shown as it is."""
    rc, shown, err = _at_terminal("info", cwd=tmp_path)
    assert rc == 0, err
    bracketed = [(k, v) for k, v in info_rows() if "[" in k + v]
    for k, v in bracketed:
        assert k in shown and v in shown, (k, v, shown)
    for k, v in info_rows():
        if k in ("python", "pipeline", "numpy", "dask", "zarr"):
            assert v in shown, (k, v, shown)


def test_the_progress_bar_shows_its_label_as_text() -> None:
    out = io.StringIO()
    with Progress(2, 1e6, mode="bar", stream=out, label="[red]gen[/]") as p:
        p.advance(2)
    assert "[red]gen[/]" in out.getvalue(), out.getvalue()
