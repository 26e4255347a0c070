"""Stage parameters: a scalar is a finite number, written as a number, that the dtype it meets
can hold. Anything else is refused in one line before anything runs: at load (ConfigError, with
the file and line) or, once the input's dtype is known, at plan time (PlanError, naming the
stage, the value and the dtype's range). Real YAML files, real Zarr inputs, the real CLI.
"""

from __future__ import annotations

import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest

from pipeline import plan
from pipeline.config import load_config
from pipeline.errors import ConfigError, PlanError
from tests.conftest import make_array
from tests.faultkit import env, one_line_error


def _config(tmp: Path, scalar: str, dtype: str = "float32") -> Path:
    """A config whose stage 2 multiplies and stage 3 adds ``scalar`` (YAML text, as written),
    over a small input of ``dtype`` that stage 1 keeps; the scalars are on lines 7 and 8."""
    if not (tmp / "in.zarr").exists():
        make_array(tmp / "in.zarr", np.arange(60).reshape(6, 10).astype(dtype), (3, 10))
    p = tmp / "run.yaml"
    p.write_text(
        f"input: {{store: {tmp / 'in.zarr'}}}\n"
        f"output: {{store: {tmp / 'out.zarr'}}}\n"
        "backend: cpu\n"
        "cluster: {workers: 1, dashboard: ''}\n"
        "stages:\n"
        "  - {op: multiply, factor: 1}\n"
        f"  - {{op: multiply, factor: {scalar}}}\n"
        f"  - {{op: add, value: {scalar}}}\n"
    )
    return p


@pytest.mark.parametrize(
    "scalar",
    [
        *("1e400", "-1e400", ".nan", ".inf", "-.inf", "true", "false", '"5"', "'0.5'", "five"),
        *("[5]", "!!str 5", "!!str 1e3"),
    ],
)
def test_a_scalar_that_is_not_a_finite_number_is_refused_at_load(tmp_path, scalar) -> None:
    """``1e400`` (inf) and ``.nan`` used to run to an all-inf or all-NaN output; ``true`` and
    ``"5"`` were turned into 1 and 5; ``!!str 5``, text as its tag says, into the float 5.0
    (an int16 input computed in float64, exit 0: h81b)."""
    cfg = _config(tmp_path, scalar)
    with pytest.raises(ConfigError) as e:
        load_config(cfg)
    assert e.value.data == {"file": str(cfg), "line": 7, "key": "stages.1.factor"}
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    ("scalar", "value"),
    [("1e39", 1e39), ("1e-3", 0.001), ("-2.5E-3", -0.0025), ("1.0e+3", 1000.0), ("5", 5)],
)
def test_numbers_are_read_as_yaml_1_2_writes_them(tmp_path, scalar, value) -> None:
    """PyYAML (YAML 1.1) reads ``1e39`` and ``1e-3`` as text; in a stage they are numbers,
    and an int stays an int."""
    c = load_config(_config(tmp_path, scalar))
    for got in (c.stages[1].factor, c.stages[2].value):
        assert got == value and type(got) is type(value)


@pytest.mark.parametrize(
    ("scalar", "value"), [("0o17", 15), ("08", 8), ("-007", -7), ("0x10", 16), ("1_000", 1000)]
)
def test_integers_every_yaml_reads_alike_are_that_integer(tmp_path, scalar, value) -> None:
    """``08`` (text to YAML 1.1, so the float 8.0: an int16 input then computed in float64)
    and ``0o17`` (YAML 1.2's octal, text to YAML 1.1) are the integers YAML 1.2 reads."""
    c = load_config(_config(tmp_path, scalar))
    for got in (c.stages[1].factor, c.stages[2].value):
        assert got == value and type(got) is int


@pytest.mark.parametrize(
    ("scalar", "said"),
    [
        ("010", "010 reads as 8 (octal) in YAML 1.1 but 10 in YAML 1.2: write 10, or 8 if"),
        ("-0100", "-0100 reads as -64 (octal) in YAML 1.1 but -100 in YAML 1.2: write -100"),
        ("1:30", "1:30 reads as 90 in YAML 1.1 (base 60) but as text in YAML 1.2: write 90"),
    ],
)
def test_a_number_yaml_versions_read_otherwise_is_refused(tmp_path, scalar, said) -> None:
    """``value: 010`` ran as ``value: 8`` (PyYAML reads YAML 1.1, where a leading zero is
    octal), where YAML 1.2, most tools and the one who wrote it read 10: a wrong output,
    marked complete. Refused at its line, both readings named."""
    cfg = _config(tmp_path, scalar)
    with pytest.raises(ConfigError) as e:
        load_config(cfg)
    assert e.value.data == {"file": str(cfg), "line": 7, "key": "stages.1.factor"}
    assert str(e.value).startswith(f"{cfg}:7: stages.1.factor: {said}"), str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    ("scalar", "fix"),
    [
        ('"5"', " (write it unquoted)"),
        ("' 0.5 '", " (write it unquoted)"),
        ("!!str 5", " (drop its !!str tag)"),  # unquoted, it stays text (h81e)
        ("!!str 1e3", " (drop its !!str tag)"),
        ('!!str "0.5"', " (drop its !!str tag and the quotes)"),
        ("1,5", " (write 1.5: a decimal point, not a comma)"),
        ("-0,25", " (write -0.25: a decimal point, not a comma)"),
        ("1,000", " (write 1000, or 1.000 if the comma is a decimal point)"),
        ("1,000,000", " (write 1000000: no thousands separators)"),
        ("five", ""),
        ("5 K", ""),
        ("'nan'", ""),  # unquoted, YAML's NaN is .nan, refused as no finite number
    ],
)
def test_a_scalar_given_as_text_is_told_the_fix_its_text_needs(tmp_path, scalar, fix) -> None:
    """Every text had been told "(write it unquoted)", which for ``factor: 1,5`` (a decimal
    comma, unquoted: YAML reads it as text) or ``five`` changes nothing: the fix is named
    where there is one, and none is named where there is none. Text tagged ``!!str`` is told
    to drop the tag, which "write it unquoted" had left in place."""
    make_array(tmp_path / "in.zarr", np.arange(6, dtype="f4"), (3,))
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        f"input:\n  store: {tmp_path / 'in.zarr'}\noutput:\n  store: {tmp_path / 'out.zarr'}\n"
        f"stages:\n  - op: multiply\n    factor: {scalar}\n"
    )
    with pytest.raises(ConfigError) as e:
        load_config(cfg)
    assert e.value.data == {"file": str(cfg), "line": 7, "key": "stages.0.factor"}
    said = str(e.value)
    assert f"must be a number such as 5 or 0.5, not text{fix} (got " in said, said


_AT_ANCHOR = " (the value of &x, written at line 1)"


@pytest.mark.parametrize(
    ("anchor", "use", "said"),
    [
        ("&x !!str 5", "*x", f" (drop its !!str tag) (got '5'){_AT_ANCHOR}"),
        ('&x !!str "5"', "*x", f" (drop its !!str tag and the quotes) (got '5'){_AT_ANCHOR}"),
        ("&x !!str 5", "{dtype: float32, value: *x}", " (drop its !!str tag, at line 1)"),
        ("&x five", "*x", f" (got 'five'){_AT_ANCHOR}"),
    ],
)
def test_a_value_an_alias_gives_is_said_where_the_anchor_writes_it(
    tmp_path, anchor, use, said
) -> None:
    """``a: &x !!str 5`` then ``factor: *x``: refused at the key's line (the alias's), where
    no tag is written, the line of the anchor, where the value and its tag are, unsaid: it is
    said too. A typed number's value (``{dtype: float32, value: *x}``) is told the fix and
    the tag's line (it had been told only that it must be a number)."""
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        f"x-a: {anchor}\ninput:\n  store: {tmp_path / 'in.zarr'}\noutput:\n"
        f"  store: {tmp_path / 'out.zarr'}\nstages:\n  - op: multiply\n    factor: {use}\n"
    )
    with pytest.raises(ConfigError) as e:
        load_config(cfg)
    assert e.value.data["line"] == 8 and e.value.data["key"] == "stages.0.factor", e.value.data
    assert str(e.value).endswith(said), str(e.value)
    assert str(e.value).count("line 1") == 1, str(e.value)


def test_any_key_an_alias_gives_is_said_where_the_anchor_writes_it(tmp_path) -> None:
    """Not a stage's alone: ``workers: *w`` of ``&w abc`` names the anchor's line too, and a
    section given by an alias (``input: *w``) too; a value written at its key is said once."""
    cfg = tmp_path / "run.yaml"
    body = f"output:\n  store: {tmp_path / 'out.zarr'}\nstages:\n  - op: square\n"
    cfg.write_text(
        f"x-a: &w abc\ninput:\n  store: {tmp_path / 'in.zarr'}\n{body}cluster:\n  workers: *w\n"
    )
    with pytest.raises(ConfigError) as e:
        load_config(cfg)
    assert str(e.value).startswith(f"{cfg}:9: cluster.workers: "), str(e.value)
    assert str(e.value).endswith("(got 'abc') (the value of &w, written at line 1)"), str(e.value)
    cfg.write_text(f"x-a: &w 5\ninput: *w\n{body}")
    with pytest.raises(ConfigError) as e:
        load_config(cfg)
    assert str(e.value).startswith(f"{cfg}:2: input: "), str(e.value)
    assert str(e.value).endswith(" (the value of &w, written at line 1)"), str(e.value)
    cfg.write_text(f"input:\n  store: {tmp_path / 'in.zarr'}\n{body}cluster:\n  workers: abc\n")
    with pytest.raises(ConfigError) as e:
        load_config(cfg)
    assert "written at" not in str(e.value), str(e.value)


@pytest.mark.parametrize(
    ("anchor", "use", "key", "said"),
    [
        # an item of a list an alias gives (block: *dims)
        ("x-d: &d [2, -3]", "chunking:\n  block: *d", "chunking.block.1", "in the value of &d"),
        # an alias as an item of a list (block: [2, *n])
        ("x-n: &n -3", "chunking:\n  block: [2, *n]", "chunking.block.1", "the value of &n"),
        # a key of a mapping an alias gives as a list item (- *stage)
        (
            "x-s: &s\n  op: multiply\n  factor: abc",
            "stages:\n  - op: square\n  - *s",
            "stages.1.factor",
            "in the value of &s",
        ),
        # an item of a list of mappings an alias gives (stages: *st)
        (
            "x-s: &st\n  - op: square\n  - op: multiply\n    factor: abc",
            "stages: *st",
            "stages.1.factor",
            "in the value of &st",
        ),
        # a key of a section an alias gives (chunking: *c)
        ("x-c: &c {block: [2, -3]}", "chunking: *c", "chunking.block.1", "in the value of &c"),
    ],
    ids=["list-alias", "item-alias", "stage-alias", "stages-alias", "section-alias"],
)
def test_a_value_within_an_alias_is_said_at_the_alias_and_the_anchor(
    tmp_path, anchor, use, key, said
) -> None:
    """A refused value inside a list or mapping an alias gives (``block: *dims``, ``-
    *stage``, ``stages: *st``), or a list item that is an alias (``block: [2, *n]``), had
    been said at the anchor's line alone, where the user's key is not: it is said at the
    alias's line, where the user used it, and names the anchor and the line its value is
    written at (a value an alias gives at its key, ``factor: *x``, was said so)."""
    cfg = tmp_path / "run.yaml"
    head = f"{anchor}\ninput:\n  store: {tmp_path / 'in.zarr'}\noutput:\n"
    head += f"  store: {tmp_path / 'out.zarr'}\n"
    if not use.startswith("stages"):
        head += "stages:\n  - op: square\n"
    text = head + use + "\n"
    cfg.write_text(text)
    lines = text.splitlines()
    used = len(lines)  # the alias is on the last line
    written = next(i for i, ln in enumerate(lines, 1) if ("-3" in ln or "abc" in ln))
    with pytest.raises(ConfigError) as e:
        load_config(cfg)
    assert e.value.data["line"] == used and e.value.data["key"] == key, (e.value.data, text)
    assert str(e.value).startswith(f"{cfg}:{used}: {key}: "), str(e.value)
    assert str(e.value).endswith(f" ({said}, written at line {written})"), str(e.value)


@pytest.mark.parametrize(
    ("old", "new", "line", "key", "said"),
    [
        ("  chunks: auto", "  chunks: [010, 10]", 6, "output.chunks.0", "010 reads as 8 (octal)"),
        (
            "threads_per_worker: 1",
            "threads_per_worker: 010",
            7,
            "cluster.threads_per_worker",
            "010 reads as 8",
        ),
        (
            "  array: ''",
            "  array: 010",
            3,
            "input.array",
            "010 reads as 8 (octal) in YAML 1.1 but 10",
        ),
        (
            "  chunks: auto",
            "  chunks: [1:30, 10]",
            6,
            "output.chunks.0",
            "1:30 reads as 90 in YAML 1.1",
        ),
    ],
)
def test_a_number_yaml_versions_read_otherwise_is_refused_at_any_key(
    tmp_path, old, new, line, key, said
) -> None:
    """The stages' refusal, above, for every key: ``chunks: [010]`` was 8 rows, where YAML
    1.2 reads 10, and ``array: 010`` the number 8 where a name was meant. Refused at its line,
    both readings and the quoted text named; the integers every YAML reads alike still pass."""
    make_array(tmp_path / "in.zarr", np.arange(60).reshape(6, 10).astype("float32"), (3, 10))
    text = (
        f"input:\n  store: {tmp_path / 'in.zarr'}\n  array: ''\n"
        f"output:\n  store: {tmp_path / 'out.zarr'}\n  chunks: auto\n"
        "cluster: {workers: 1, dashboard: '', threads_per_worker: 1}\n"
        "backend: cpu\nstages:\n  - {op: multiply, factor: 2}\n"
    )
    cfg = tmp_path / "run.yaml"
    cfg.write_text(text)
    load_config(cfg)  # the config as it was is taken
    cfg.write_text(text.replace(old, new))
    with pytest.raises(ConfigError) as e:
        load_config(cfg)
    assert e.value.data == {"file": str(cfg), "line": line, "key": key}
    assert str(e.value).startswith(f"{cfg}:{line}: {key}: {said}"), str(e.value)
    assert str(e.value).endswith("(quoted) for the text") and "\n" not in str(e.value)
    if "array" not in key:
        cfg.write_text(text.replace(old, new.replace("010", "08").replace("1:30", "007")))
        load_config(cfg)  # what every YAML reads alike is taken


def test_only_stage_parameters_read_yaml_1_2_numbers(tmp_path) -> None:
    """The rest of the config reads YAML as before: an array named 1e3 stays a name."""
    cfg = _config(tmp_path, "2")
    cfg.write_text(cfg.read_text().replace("in.zarr}", "in.zarr, array: 1e3}"))
    assert load_config(cfg).input.array == "1e3"


def test_the_cli_refuses_a_non_finite_scalar_in_one_line_and_writes_nothing(tmp_path) -> None:
    cfg = _config(tmp_path, ".nan")
    r = subprocess.run(
        [*_pipeline(), "run", str(cfg)], capture_output=True, text=True, env=env(), timeout=120
    )
    assert r.returncode == 1
    line = one_line_error(r.stderr)
    assert line.startswith(f"error: {cfg}:7: stages.1.factor"), line
    assert not (tmp_path / "out.zarr").exists()


@pytest.mark.parametrize(
    ("dtype", "scalar", "position", "stage"),
    [
        ("float32", "1e39", 2, "multiply"),  # NumPy warned "overflow encountered in cast"
        ("float16", "70000", 2, "multiply"),
        ("uint8", "-1", 2, "multiply"),  # NumPy 2: OverflowError
        ("int8", "300", 2, "multiply"),
        ("uint64", "18446744073709551616", 2, "multiply"),  # 2**64
        ("int64", "18446744073709551616", 2, "multiply"),
        ("float16", "18446744073709551616", 2, "multiply"),
        ("float32", "1e-50", 2, "multiply"),  # becomes 0 in float32
    ],
)
def test_plan_refuses_a_scalar_the_dtype_cannot_hold(tmp_path, dtype, scalar, position, stage):
    """Found once the input's dtype is known: ``plan`` (and ``run``) refuse it, naming the
    stage, the value and the dtype's range; no NumPy warning on the way."""
    cfg = _config(tmp_path, scalar, dtype)
    config = load_config(cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(PlanError) as e:
            plan(config)
    value = config.stages[1].factor
    held = str(np.result_type(np.dtype(dtype), type(value)(0)))
    assert e.value.data == {
        "key": f"stages.{position - 1}.factor",
        "stage": stage,
        "position": position,
        "parameter": "factor",
        "value": value,
        "dtype": held,
        "advice": e.value.data.get("advice"),  # the fix the line ends with
        "file": str(cfg),  # a Config load_config read remembers its file (e433fc3)
        "line": 7,
    }
    assert str(e.value).endswith(f"; {e.value.advice}")
    r = subprocess.run(
        [*_pipeline(), "plan", str(cfg)], capture_output=True, text=True, env=env(), timeout=120
    )
    assert r.returncode == 1 and r.stdout == ""
    line = one_line_error(r.stderr)
    # the refusal above, as the command prints it: at the file's line of the key (7), which
    # the API's says too
    assert str(e.value).startswith(f"{cfg}:7: stage {position} ({stage}): ")
    assert line == f"error: {e.value}", line
    assert "Warning" not in r.stderr


@pytest.mark.parametrize(
    ("dtype", "scalar", "out"),
    [
        ("float32", "3.0e+38", "float32"),
        ("float16", "65504", "float16"),
        ("uint8", "255", "uint16"),  # 255 * 255 + 255 fits uint16
        ("float64", "18446744073709551616", "float64"),
        ("int16", "0.5", "float64"),
    ],
)
def test_plan_accepts_what_the_dtype_holds(tmp_path, dtype, scalar, out) -> None:
    p = plan(load_config(_config(tmp_path, scalar, dtype)))
    assert p.chain[-1].out_dtype == np.dtype(out)


def _pipeline() -> list[str]:
    import sys

    return [sys.executable, "-m", "pipeline"]


@pytest.mark.parametrize("section", ["output", "input.generate"])
@pytest.mark.parametrize(
    ("codec", "words"),
    [
        ("{name: none, checksum: true}", "checksum: true asks for a zstd frame checksum, and "),
        ("{name: none, level: 9}", "level 9 is zstd's compression level, and name: none "),
    ],
)
def test_what_codec_none_cannot_do_is_refused(tmp_path, section, codec, words) -> None:
    """``codec: {name: none, checksum: true}`` had written chunks without any checksum, exit 0,
    and a level was ignored so (h81b): refused at the codec's line, as ``store_raw_below``
    with ``name: none`` is. The defaults a summary's config writes for every codec
    (``level: 1``, ``checksum: false``) are still taken with ``name: none``."""
    gen = "{shape: [4], dtype: float32%s}" % (", codec: " + codec if section != "output" else "")
    out = codec if section == "output" else "none"
    p = tmp_path / "run.yaml"
    p.write_text(
        f"input: {{store: {tmp_path / 'in.zarr'}, generate: {gen}}}\n"
        f"output: {{store: {tmp_path / 'out.zarr'}, codec: {out}}}\n"
        "stages:\n  - op: square\n"
    )
    with pytest.raises(ConfigError) as e:
        load_config(p)
    said = str(e.value)
    assert said.startswith(f"{p}:") and f"{section}.codec: {words}" in said, said
    assert "\n" not in said
    p.write_text(
        f"input: {{store: {tmp_path / 'in.zarr'}}}\n"
        f"output: {{store: {tmp_path / 'out.zarr'}, "
        "codec: {name: none, level: 1, checksum: false}}\n"
        "stages:\n  - op: square\n"
    )
    assert load_config(p).output.codec.name == "none"


@pytest.mark.parametrize(
    ("key", "yaml_text", "line"),
    [
        ("chunking.block", "chunking: {block: !!set {4, 8}}", 4),
        ("output.chunks", "output: {store: out.zarr, chunks: !!set {4, 8}}", 2),
        ("input.generate.shape", "input: {store: in.zarr, generate: {shape: !!set {8, 4}}}", 1),
        ("cluster.gpus", "cluster: {gpus: !!set {1, 0}}", 4),
        ("output.dimension_names", "output: {store: out.zarr, dimension_names: !!set {y, x}}", 2),
    ],
)
def test_a_set_is_refused_where_a_list_is_meant(tmp_path, key, yaml_text, line) -> None:
    """A YAML ``!!set`` (or a Python set through the API) had been taken as a list in the
    set's own order: ``block: !!set {4, 8}`` ran with the block [8, 4], exit 0 (h81b)."""
    import pipeline

    sections = {
        "input": "input: {store: in.zarr}",
        "output": "output: {store: out.zarr}",
        "stages": "stages: [{op: square}]",
    }
    sections[key.split(".")[0]] = yaml_text
    p = tmp_path / "run.yaml"
    p.write_text("\n".join(sections.values()) + "\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    said = str(e.value)
    assert said.startswith(f"{p}:{line}: {key}: must not be a set"), said
    example = "['y', 'x']" if key == "output.dimension_names" else "[4, 8]"  # h88e
    assert f"write one, such as {example}" in said and "\n" not in said
    with pytest.raises(ConfigError) as e:
        pipeline.Config(
            input={"store": "in.zarr"},
            output={"store": "out.zarr"},
            stages=[{"op": "square"}],
            chunking={"block": {4, 8}},
        )
    assert "chunking.block: must not be a set" in str(e.value)


@pytest.mark.parametrize(
    ("given", "got"),
    [
        ("device_memory_limit: 8GB", "(got '8GB')"),
        ("device_memory_limit: '4 GiB'", "(got '4 GiB')"),
        ("device_memory_limit: '0.5'", "(got '0.5')"),
        ("device_memory_limit: 4096", "(got 4096)"),
    ],
)
def test_a_refused_size_is_quoted_as_written(tmp_path, given, got) -> None:
    """``device_memory_limit: 8GB`` beside ``backend: cpu`` had been refused "(got
    8000000000)", the bytes the text was read as: the value is quoted as the file wrote
    it."""
    cfg = _config(tmp_path, "2")
    text = cfg.read_text()
    cfg.write_text(text.replace("dashboard: ''}", f"dashboard: '', {given}}}"))
    with pytest.raises(ConfigError) as e:
        load_config(cfg)
    assert str(e.value).endswith(f"or set backend: gpu (or auto) {got}"), str(e.value)


@pytest.mark.parametrize(
    ("given", "key", "words"),
    [
        ("gpus: [1]", "cluster.gpus", "[1] names GPUs, and backend: cpu uses no GPU: leave "),
        ("workers_per_gpu: 2", "cluster.workers_per_gpu", "sets worker processes per GPU, "),
        ("device_memory_limit: 4GiB", "cluster.device_memory_limit", "is a GPU's memory budget"),
    ],
)
def test_a_gpu_only_setting_is_refused_with_backend_cpu(tmp_path, given, key, words) -> None:
    """``backend: cpu`` with ``gpus: [1]`` (or ``workers_per_gpu``, ``device_memory_limit``)
    had run on the CPU, the GPU setting ignored without a word (h81e): refused at its line,
    as codec none's ``checksum`` is, naming both fixes. The defaults a summary's config writes
    for them are still taken with ``backend: cpu``, and the setting with ``backend: auto``
    (a GPU host's config, whose plan says where no GPU is that the CPU runs it)."""
    cfg = _config(tmp_path, "2")
    text = cfg.read_text()
    cfg.write_text(text.replace("dashboard: ''}", f"dashboard: '', {given}}}"))
    with pytest.raises(ConfigError) as e:
        load_config(cfg)
    said = str(e.value)
    assert said.startswith(f"{cfg}:4: {key}: {words}"), said
    assert "or set backend: gpu (or auto)" in said and "\n" not in said, said
    assert e.value.data == {"file": str(cfg), "line": 4, "key": key}
    assert load_config(cfg, {"backend": "auto"}).backend == "auto"
    plain = load_config(_config(tmp_path, "2"))
    summary = plain.public_dict()  # the summary's config: every key, the defaults too
    assert summary["cluster"]["workers_per_gpu"] == 3 and summary["backend"] == "cpu"
    assert type(plain).model_validate(summary) == plain
