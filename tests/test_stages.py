"""Stages: registry, dtype planning and overflow policy, and bit-exact evaluation."""

from __future__ import annotations

import re
import warnings
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from pipeline.errors import InputError, PlanError
from pipeline.ops import kernel, stages
from tests.conftest import record_of, reference

SEED = [
    ("multiply", stages.MultiplyParams(factor=5)),
    ("square", stages.StageParams()),
    ("add", stages.AddParams()),
]


def test_registry_has_the_seed_stages() -> None:
    assert {"multiply", "square", "add"} <= set(stages.REGISTRY)
    assert "multiply" in stages.known_stages()


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_float_chain_equals_numpy_reference(dtype: str) -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal(10_000).astype(dtype)
    chain = stages.plan_chain(SEED, np.dtype(dtype))
    assert [s.out_dtype for s in chain] == [np.dtype(dtype)] * 3
    out = stages.apply_chain(chain, x)
    assert out.dtype == np.dtype(dtype)
    assert np.array_equal(out, reference(x), equal_nan=True)


def test_blocked_evaluation_matches_whole_array() -> None:
    x = np.random.default_rng(2).standard_normal((37, 1001)).astype(np.float32)
    chain = stages.plan_chain(SEED, x.dtype)
    out = np.empty_like(x)
    stages.apply_chain_blocked(chain, x, out, block=1000)
    assert np.array_equal(out, stages.apply_chain(chain, x))


CHAINS = [
    SEED,
    [("add", stages.AddParams(value=3)), ("multiply", stages.MultiplyParams(factor=0.5))],
    [("multiply", stages.MultiplyParams(factor=-7)), ("add", stages.AddParams(value=-1.25))],
    [("square", stages.StageParams()), ("square", stages.StageParams())],
]
DTYPES = [
    "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64",
]  # fmt: skip


def _values(dtype: np.dtype, n: int) -> np.ndarray:
    """Every bit pattern class a chain meets: random bits (NaN payloads, subnormals, the
    extremes) for floats, the whole range for integers."""
    rng = np.random.default_rng(7)
    return rng.integers(0, 256, n * dtype.itemsize, dtype=np.uint8).view(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("chain_at", range(len(CHAINS)))
def test_traced_in_place_chain_equals_the_stage_by_stage_one(dtype: str, chain_at: int) -> None:
    """The CPU's pieces replay the chain traced into ufunc calls with ``out=`` buffers (it had
    allocated every stage's temporaries, 2-6x slower on worker threads); every bit of the
    result is what :func:`apply_chain` gives, casts between the planned dtypes included,
    over pieces that do not divide the array."""
    specs = CHAINS[chain_at]
    try:
        chain = stages.plan_chain(specs, np.dtype(dtype))
    except PlanError:  # a scalar the dtype cannot hold, or 64 bits overflowed: not a chain
        pytest.skip("the plan refuses this chain on this dtype")
    x = _values(np.dtype(dtype), 10_007).reshape(1, -1)
    assert stages.trace_chain(chain, x.dtype) is not None  # no silent fallback
    out = np.empty(x.shape, dtype=chain[-1].out_dtype)
    stages.apply_chain_blocked(chain, x, out, block=1000)
    whole = stages.apply_chain(chain, x)
    assert out.dtype == whole.dtype
    assert out.view(np.uint8).tobytes() == whole.view(np.uint8).tobytes()


@pytest.fixture
def cube_stage():
    """A stage written with ``**``, which the tape does not record: registered for one test."""

    @stages.stage("cube-for-test")
    def cube(x, p):
        """Cube every element."""
        return x**3

    yield stages.REGISTRY["cube-for-test"]
    del stages.REGISTRY["cube-for-test"]


@pytest.fixture
def odd_stages():
    """Stages whose result is not their last operation's: registered for one test."""

    @stages.stage("same-for-test")
    def same(x, p):
        """Every element as it is (a product computed and dropped)."""
        _ = x * 3
        return x

    @stages.stage("first-for-test")
    def first(x, p):
        """Twice every element (a later sum computed and dropped)."""
        y = x + x
        _ = y * 3
        return y

    yield
    del stages.REGISTRY["same-for-test"], stages.REGISTRY["first-for-test"]


@pytest.mark.parametrize(
    "names", [["same-for-test"], ["first-for-test"], ["square", "same-for-test"]]
)
def test_a_traced_stage_returning_an_earlier_value_gives_that_value(odd_stages, names) -> None:
    chain = stages.plan_chain([(n, stages.StageParams()) for n in names], np.dtype("float32"))
    assert stages.trace_chain(chain, np.dtype("float32")) is not None
    x = np.random.default_rng(4).standard_normal(3001).astype(np.float32)
    out = np.full_like(x, np.nan)
    stages.apply_chain_blocked(chain, x, out, block=1000)
    assert out.tobytes() == stages.apply_chain(chain, x).tobytes()


def test_a_stage_the_tape_cannot_record_is_evaluated_as_written(cube_stage) -> None:
    chain = stages.plan_chain(
        [("multiply", stages.MultiplyParams(factor=3)), ("cube-for-test", stages.StageParams())],
        np.dtype("float32"),
    )
    assert stages.trace_chain(chain, np.dtype("float32")) is None
    x = np.random.default_rng(3).standard_normal(5000).astype(np.float32)
    out = np.empty_like(x)
    stages.apply_chain_blocked(chain, x, out, block=999)
    assert out.tobytes() == stages.apply_chain(chain, x).tobytes()
    assert out.tobytes() == ((x * 3) ** 3).tobytes()


def test_nan_and_inf_flow_through_as_ieee_says() -> None:
    x = np.array([np.nan, np.inf, -np.inf, 1e30, -0.0], dtype=np.float32)
    out = stages.apply_chain(stages.plan_chain(SEED, x.dtype), x)
    with np.errstate(over="ignore", invalid="ignore"):
        assert np.array_equal(out, reference(x), equal_nan=True)
    assert np.isnan(out[0]) and out[1] == np.inf and out[2] == np.inf and out[3] == np.inf


@pytest.mark.parametrize(
    ("dtype", "expect"),
    [
        ("int8", ["int16", "int32", "int32"]),
        ("uint8", ["uint16", "uint32", "uint32"]),
        ("int16", ["int32", "int64", "int64"]),
    ],
)
def test_promote_policy_widens_to_hold_the_worst_case(dtype: str, expect: list[str]) -> None:
    chain = stages.plan_chain(SEED, np.dtype(dtype), "promote")
    assert [s.out_dtype.name for s in chain] == expect
    info = np.iinfo(dtype)
    x = np.array([info.min, info.min + 1, 0, 1, info.max // 3, info.max], dtype=dtype)
    exact = (x.astype(object) * 5) ** 2 * 2  # Python integers: no overflow at all
    out = stages.apply_chain(chain, x)
    assert out.tolist() == exact.tolist()


def test_promote_policy_refuses_what_64_bits_cannot_hold() -> None:
    with pytest.raises(PlanError) as e:
        stages.plan_chain(SEED, np.dtype("int32"), "promote")
    assert (e.value.stage, e.value.position, e.value.dtype) == ("square", 2, "int64")
    assert e.value.values[1] > np.iinfo(np.int64).max  # (x * 5) ** 2 of int32's range


def test_error_policy_refuses_a_chain_that_can_overflow() -> None:
    with pytest.raises(PlanError) as e:
        stages.plan_chain(SEED, np.dtype("int8"), "error")
    assert e.value.data == {
        "key": "stages.0",
        "stage": "multiply",
        "position": 1,
        "dtype": "int8",
        "values": (-128 * 5, 127 * 5),
        "bound": 128 * 5,
        "advice": "compute it in float64 instead: write its factor as a float, factor: 5.0 "
        "(integers with a float are float64s)",
    }
    # a chain that cannot overflow passes under the same policy
    chain = stages.plan_chain(
        [("multiply", stages.MultiplyParams(factor=1))], np.dtype("int64"), "error"
    )
    assert chain[0].out_dtype == np.dtype("int64")
    # adding any non-zero scalar to a full-range integer can overflow it
    with pytest.raises(PlanError) as e:
        stages.plan_chain([("add", stages.AddParams(value=1))], np.dtype("int16"), "error")
    assert (e.value.stage, e.value.dtype, e.value.values) == ("add", "int16", (-32767, 32768))
    assert stages.plan_chain([("add", stages.AddParams(value=1))], np.dtype("int16"), "promote")[
        0
    ].out_dtype == np.dtype("int32")


def test_float_scalar_on_integers_follows_numpy() -> None:
    chain = stages.plan_chain([("multiply", stages.MultiplyParams(factor=0.5))], np.dtype("int16"))
    assert chain[0].out_dtype == np.dtype("float64")
    x = np.arange(-5, 5, dtype=np.int16)
    assert np.array_equal(stages.apply_chain(chain, x), x * 0.5)


def test_scalar_that_does_not_fit_is_a_clear_error() -> None:
    with pytest.raises(PlanError) as e:
        stages.plan_chain([("add", stages.AddParams(value=-1))], np.dtype("uint8"))
    assert e.value.data == {
        "key": "stages.0.value",
        "stage": "add",
        "position": 1,
        "parameter": "value",
        "value": -1,
        "dtype": "uint8",
        "advice": "use a non-negative value, or give it a dtype that holds it, value: "
        "{dtype: int16, value: -1} (the stage then computes in int16), or write it as a "
        "float, value: -1.0 (it then computes in float64)",
    }
    assert str(e.value).endswith("; " + e.value.advice)  # uint8 with add -1: no input edit
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "dtype, value, fixes",
    [
        ("uint8", -1, ["int16", "float64"]),
        ("uint8", -100000, ["int32", "float64"]),  # int16 had been named
        ("uint16", -1, ["int32", "float64"]),
        ("uint32", -3, ["int64", "float64"]),
        ("uint64", -1, ["float64"]),
        ("uint8", 300, ["uint32", "float64"]),  # holds 255 * 300 too: so the stage does
        ("int8", -300, ["int32", "float64"]),
        ("int64", 2**63, ["float64"]),
        ("uint64", 2**64, ["float64"]),
        ("int64", 2**64 + 1, []),  # no float64 is that number: the range alone
    ],
)
def test_a_scalar_that_does_not_fit_names_the_configs_own_fixes(
    dtype: str, value: int, fixes: list[str]
) -> None:
    """A negative factor on unsigned integers said "convert the input to a wider dtype",
    which no wider unsigned dtype does (F6); then "convert the input to a signed or float
    dtype (int16 ...)", where the config alone does it, the input untouched (h72a: uint8 with
    ``add -1``). The refusal names the scalar given a dtype that holds it, and every input
    value, and the stage's results (``{dtype: int16, value: -1}``), and the scalar written
    as a float (float64), where float64 holds it exactly; for a negative value a
    non-negative one too; each fix so named plans (:func:`_followed`)."""
    params = stages.MultiplyParams(factor=value)
    with pytest.raises(PlanError) as e:
        stages.plan_chain([("multiply", params)], np.dtype(dtype))
    said = str(e.value)
    assert "wider dtype" not in said and "convert the input" not in said and "\n" not in said
    assert ("non-negative factor" in said) == (value < 0 and dtype.startswith("u")), said
    named = [t for t in re.findall(r"\{dtype: (\w+), value: -?\d+\}", said)]
    if "as a float" in said:
        named.append("float64")
    assert named == fixes, said
    for chain, policy in _followed(said, [("multiply", params)], "promote"):
        stages.plan_chain(chain, np.dtype(dtype), policy)


def _followed(
    said: str, chain: list[tuple[str, Any]], policy: str
) -> list[tuple[list[tuple[str, Any]], str]]:
    """Each fix that ``said``, a refusal of ``chain`` (stages with their params) under
    ``policy``, names, made: (the chain, the policy) as the config would then give them.
    A scalar given a dtype (``value: {dtype: int16, value: -1}``: the NumPy scalar the typed
    form makes) or written as a float (``factor: -3.0``), in the stage that has it; a first
    stage ``{op: multiply, factor: 1.0}``; ``integer_overflow: promote``."""
    made: list[tuple[list[tuple[str, Any]], str]] = []

    def with_scalar(key: str, scalar: Any) -> list[tuple[str, Any]]:
        out = []
        for name, params in chain:
            if key in type(params).model_fields and getattr(params, key) is not None:
                params = type(params)(**{key: scalar})
            out.append((name, params))
        return out

    for key, dtype, value in re.findall(r"(\w+): \{dtype: (\w+), value: ([^}]+)\}", said):
        number = int(value) if re.fullmatch(r"-?\d+", value) else float(value)
        made.append((with_scalar(key, np.dtype(dtype).type(number)), policy))
    for key, text in re.findall(r"as a float, (\w+): (\S+) \(", said):
        made.append((with_scalar(key, float(text)), policy))
    if "make {op: multiply, factor: 1.0} the first stage" in said:
        made.append(([("multiply", stages.MultiplyParams(factor=1.0)), *chain], policy))
    if "set integer_overflow: promote" in said:
        made.append((chain, "promote"))
    return made


_INTEGERS = ["uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64"]
_REFUSED_SCALARS = [-1, -3, 3, 300, -300, 70000, -100000, 2**31, 2**40, 2**63, 2**64, 3 * 2**62]


@pytest.mark.parametrize("policy", ["promote", "error"])
@pytest.mark.parametrize("dtype", _INTEGERS)
def test_every_refusal_of_an_integer_chain_names_fixes_that_plan(dtype: str, policy: str) -> None:
    """For every integer dtype, every stage that can refuse (``multiply`` and ``add`` with a
    scalar its dtype cannot hold or whose results overflow, ``square``, ``add`` of the array
    to itself, after a stage that widens it), under either ``integer_overflow``: each fix the
    refusal names is the config's own (the input is never touched: "convert the input" is
    named only beside the config's first-stage ``multiply 1.0``, for a stage with no scalar
    to write as a float), and the chain so made plans, or is refused by a later stage for its
    own results; ``integer_overflow: promote`` is named only where it plans the whole chain
    (uint32 times 2**20, then squared, had been told to set it, and then refused)."""
    chains: list[list[tuple[str, Any]]] = [
        [("square", stages.StageParams())],
        [("multiply", stages.MultiplyParams(factor=1000)), ("add", stages.AddParams())],
        [("multiply", stages.MultiplyParams(factor=2**20)), ("square", stages.StageParams())],
    ]
    for v in _REFUSED_SCALARS:
        chains += [
            [("add", stages.AddParams(value=v))],
            [("multiply", stages.MultiplyParams(factor=v))],
            [("square", stages.StageParams()), ("multiply", stages.MultiplyParams(factor=v))],
        ]
    refused = 0
    for chain in chains:
        try:
            stages.plan_chain(chain, np.dtype(dtype), policy)  # type: ignore[arg-type]
            continue
        except PlanError as e:
            said, position = str(e), e.data["position"]
        refused += 1
        fixes = _followed(said, chain, policy)
        assert fixes or "use a value within that range" in said, said
        if "convert the input" in said:
            assert "make {op: multiply, factor: 1.0} the first stage" in said, said
            scalars = [p for _, p in chain[position - 1 : position]]
            assert not any(p.model_dump(exclude_none=True) for p in scalars), said
        for followed, then in fixes:  # planned, or refused by a later stage, for its own
            try:
                stages.plan_chain(followed, np.dtype(dtype), then)  # type: ignore[arg-type]
            except PlanError as later:
                shift = len(followed) - len(chain)  # a first stage added
                assert later.data["position"] > position + shift, (said, str(later))
                assert then == policy, (said, str(later))  # promote plans the whole chain
    assert refused


def _fits(dtype: np.dtype, op: str, value: int | float) -> bool:
    """Whether plan_chain accepts ``value`` as the one scalar of ``op`` on ``dtype`` (a chain
    refused for the overflow of its results, ``int64 * -2**63``, took the scalar); raises any
    warning (as an error) and other errors."""
    params = (
        stages.MultiplyParams(factor=value) if op == "multiply" else stages.AddParams(value=value)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no NumPy warning on the way (1e39 on float32 had one)
        try:
            stages.plan_chain([(op, params)], dtype)
        except PlanError as e:
            if "parameter" not in e.data:  # the results' range, not the scalar
                return True
            assert e.data["parameter"] in ("factor", "value") and e.data["value"] == value
            assert e.data["stage"] == op and e.data["position"] == 1
            assert e.data["dtype"] == str(np.result_type(dtype, type(value)(0)))
            return False
    return True


INTEGERS = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"]
FLOATS = ["float16", "float32", "float64"]


@pytest.mark.parametrize("op", ["multiply", "add"])
@pytest.mark.parametrize("name", INTEGERS)
def test_integer_scalars_must_fit_the_input_dtype_as_numpy_2_says(name: str, op: str) -> None:
    """NumPy 2 (NEP 50) refuses a Python int its integer dtype cannot hold (``-1`` on uint8:
    OverflowError); so does the plan, naming the stage, the value and the range."""
    dt = np.dtype(name)
    info = np.iinfo(dt)
    lo, hi = int(info.min), int(info.max)
    for value, fits in [(lo, True), (hi, True), (lo - 1, False), (hi + 1, False), (2**64, False)]:
        assert _fits(dt, op, value) == fits, (value, fits)
        numpy_fits = True
        try:
            np.ones(2, dt) * value
        except OverflowError:
            numpy_fits = False
        assert numpy_fits == fits  # the plan says what NumPy does
    # a float scalar makes the result float64, which holds it
    assert _fits(dt, op, 0.5) and _fits(dt, op, -1e300)


@pytest.mark.parametrize("op", ["multiply", "add"])
@pytest.mark.parametrize("name", FLOATS)
def test_float_scalars_the_input_dtype_cannot_hold_are_refused(name: str, op: str) -> None:
    """A scalar NumPy would turn into inf (70000 on float16, 1e39 on float32, 2**64 on
    float16) or into 0 (1e-50 on float32) is refused; what the dtype holds passes, ints too."""
    dt = np.dtype(name)
    f = np.finfo(dt)
    top, tiny = float(f.max), float(f.smallest_subnormal)
    assert _fits(dt, op, top) and _fits(dt, op, -top) and _fits(dt, op, tiny)
    assert _fits(dt, op, 0.0) and _fits(dt, op, 0) and _fits(dt, op, -7)
    if name != "float64":  # a Python float is a float64: every finite one fits
        assert not _fits(dt, op, top * 2) and not _fits(dt, op, -top * 2)  # overflows to inf
        assert not _fits(dt, op, tiny / 4)  # underflows to 0
    assert _fits(dt, op, 2**64) == (name != "float16")  # 1.8e19 overflows only float16
    # no float dtype holds it: refused where the stage is made, as 1e400 is (h67b)
    with pytest.raises(ValueError, match="must be a finite number float64 holds"):
        _fits(dt, op, 2**1100)
    if name == "float16":
        assert not _fits(dt, op, 70000) and not _fits(dt, op, 70000.0)
    if name == "float32":
        assert not _fits(dt, op, 1e39) and not _fits(dt, op, 1e-50)


def test_a_scalar_is_checked_against_the_dtype_its_stage_meets() -> None:
    """After a stage that makes the chain float64 (int16 * 0.5), a later scalar meets float64."""
    specs = [
        ("multiply", stages.MultiplyParams(factor=0.5)),
        ("add", stages.AddParams(value=1e300)),
    ]
    chain = stages.plan_chain(specs, np.dtype("int16"))
    assert [s.out_dtype.name for s in chain] == ["float64", "float64"]
    specs = [("multiply", stages.MultiplyParams(factor=2)), ("add", stages.AddParams(value=1e39))]
    with pytest.raises(PlanError) as e:
        stages.plan_chain(specs, np.dtype("float32"))
    assert e.value.data["position"] == 2 and e.value.data["stage"] == "add"


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (float("inf"), "finite"),
        (float("-inf"), "finite"),
        (float("nan"), "finite"),
        (True, "true/false"),
        (np.True_, "true/false"),
        ("5", "text"),
        ([5], "a list"),
    ],
)
@pytest.mark.parametrize("model", [stages.MultiplyParams, stages.AddParams])
def test_stage_scalars_are_finite_numbers_never_coerced(value, problem, model) -> None:
    key = "factor" if model is stages.MultiplyParams else "value"
    with pytest.raises(ValidationError, match=problem) as e:  # the words say what was given
        model(**{key: value})
    assert [err["loc"] for err in e.value.errors()] == [(key,)]


def test_stage_scalars_keep_their_type() -> None:
    """An int stays an int (``int16 * 5`` is int16), a float a float; a NumPy scalar stays
    the NumPy scalar it is (strongly typed, as NumPy computes with it), a 0-d array becomes
    its scalar."""
    assert type(stages.MultiplyParams(factor=5).factor) is int
    assert type(stages.MultiplyParams(factor=5.0).factor) is float
    assert type(stages.AddParams(value=np.int64(3)).value) is np.int64
    assert type(stages.AddParams(value=np.float32(0.5)).value) is np.float32
    assert type(stages.AddParams(value=np.float64(0.5)).value) is np.float64
    assert type(stages.AddParams(value=np.array(2, dtype=np.uint8)).value) is np.uint8
    # the typed form, as a file or the summary's JSON gives it: NumPy's scalar of that dtype
    typed = stages.AddParams(value={"dtype": "float32", "value": np.float64(0.1)}).value
    assert type(typed) is np.float32 and typed == np.float32(0.1)
    big = stages.AddParams(value={"dtype": "uint64", "value": 2**64 - 1}).value
    assert type(big) is np.uint64 and int(big) == 2**64 - 1
    assert type(stages.AddParams(value={"dtype": "int8", "value": 4.0}).value) is np.int8
    assert stages.AddParams().value is None


def test_add_value_given_as_null_is_refused_and_left_out_stays_x_plus_x() -> None:
    """``value:`` with nothing after its colon (None) had been taken for ``value`` left out:
    the stage added the array to itself, not the number meant. Left out, it still does, and
    the config as data (``model_dump``, the summary's JSON) leaves it out, so it makes the same
    config again."""
    import pipeline

    with pytest.raises(ValidationError, match="has no value") as e:
        stages.AddParams(value=None)
    assert [err["loc"] for err in e.value.errors()] == [("value",)]
    assert stages.AddParams().value is None
    cfg = pipeline.Config(
        input={"store": "in.zarr"},
        output={"store": "out.zarr"},
        stages=[{"op": "add"}, {"op": "add", "value": 2}],
    )
    assert list(cfg.model_dump()["stages"]) == [{"op": "add"}, {"op": "add", "value": 2}]
    assert list(cfg.public_dict()["stages"]) == [{"op": "add"}, {"op": "add", "value": 2}]
    assert pipeline.Config(**cfg.model_dump()) == cfg
    assert pipeline.Config.model_validate_json(cfg.model_dump_json()) == cfg
    assert [p.value for _, p in cfg.stage_specs()] == [None, 2]


@pytest.mark.parametrize("number", ["1e-400", "-2e-324", "1e400"])
def test_a_json_stage_number_float64_cannot_hold_is_refused_not_read_as_zero(number) -> None:
    """JSON's ``"factor": 1e-400`` had been the factor 0.0 (pydantic reads the text with
    ``float()``), and a run multiplied every element by 0; as a YAML file's, it is refused,
    naming float64's range, in a stage's typed form too. 0.0e-400 is 0, as written."""
    import pipeline
    from pipeline.errors import ConfigError

    def config(scalar: str) -> str:
        return (
            '{"input": {"store": "in.zarr"}, "output": {"store": "out.zarr"}, '
            f'"stages": [{{"op": "multiply", "factor": {scalar}}}]}}'
        )

    for given in (number, f'{{"dtype": "float64", "value": {number}}}'):
        with pytest.raises(ConfigError, match="must be a finite number float64 holds") as e:
            pipeline.Config.model_validate_json(config(given))
        assert e.value.key == "stages.0.factor"
    zero = pipeline.Config.model_validate_json(config("0.0e-400")).stages[0]
    assert zero.factor == 0 and type(zero.factor) is float


@pytest.mark.parametrize("dtype", ["bool", "complex64", "U4", "object"])
def test_unsupported_dtypes_are_refused(dtype: str) -> None:
    with pytest.raises(InputError) as e:
        stages.plan_chain(SEED, np.dtype(dtype))
    assert e.value.data == {"dtype": str(np.dtype(dtype))}


def test_cuda_source_is_one_fused_kernel_with_exact_scalars() -> None:
    chain = stages.plan_chain(SEED, np.dtype("float32"))
    src = kernel.cuda_source(chain)
    assert src.in_params == "float32 x, float32 s0_0"
    assert src.out_params == "float32 y"
    # float32 arithmetic goes through PTX without .ftz: CuPy compiles with -ftz=true
    assert src.body.count("pl_mul_f32(t0_in, s0_0)") == 1
    assert "pl_mul_f32(t1_in, t1_in)" in src.body and "pl_add_f32(t2_in, t2_in)" in src.body
    assert src.body.endswith("y = t2;") and " * " not in src.body and " + " not in src.body
    assert "mul.rn.f32 " in kernel.CUDA_PREAMBLE and ".ftz" not in kernel.CUDA_PREAMBLE
    assert src.scalars == (np.float32(5),)
    src64 = kernel.cuda_source(stages.plan_chain(SEED, np.dtype("float64")))
    assert "pl_mul_f64(t0_in, s0_0)" in src64.body and "pl_add_f64(t2_in, t2_in)" in src64.body
    src16 = kernel.cuda_source(stages.plan_chain(SEED, np.dtype("int16")))
    assert "pl_" not in src16.body  # integers: plain C arithmetic


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", "int8", "uint16", "int16"])
def test_gpu_kernel_is_bit_identical_to_numpy(dtype: str) -> None:
    import cupy as cp

    from pipeline import devices

    rng = np.random.default_rng(3)
    if np.dtype(dtype).kind == "f":
        x = (rng.standard_normal(1_000_003) * 100).astype(dtype)
        x[:4] = [np.nan, np.inf, -np.inf, -0.0]
        # subnormal inputs, and inputs whose square is subnormal (CuPy's -ftz=true flushed
        # these to zero until the kernel used PTX without .ftz)
        tiny = float(np.finfo(dtype).tiny)
        r = float(np.sqrt(tiny))
        special = [tiny, -tiny / 4, tiny / 1000, r / 50, -r / 7, r / 5 * 1.3, r / 20000]
        x[4 : 4 + len(special)] = special
        x[-1000:] = (rng.standard_normal(1000) * r / 10).astype(dtype)
        nans = {  # NaNs with payloads: signalling and quiet, both signs
            "float32": [0x7F800001, 0xFF838B49, 0x7FEDCBEE, 0xFFC00000, 0x7FC00001],
            "float64": [0x7FF0000000000001, 0xFFF4000000000ABC, 0x7FF8000000000123],
            "float16": [0x7C01, 0xFD55, 0x7E00, 0xFE01, 0x7DFF],
        }.get(dtype, [])
        x.view(f"uint{8 * x.itemsize}")[20 : 20 + len(nans)] = nans
    else:
        info = np.iinfo(dtype)
        x = rng.integers(info.min, info.max, 1_000_003, endpoint=True).astype(dtype)
    chain = stages.plan_chain(SEED, np.dtype(dtype))
    be = devices.get("gpu")
    be.prepare()
    y = cp.asnumpy(be.apply_chain(chain, cp.asarray(x)))
    with np.errstate(over="ignore", invalid="ignore"):
        ref = stages.apply_chain(chain, x)
    assert y.dtype == ref.dtype
    # every bit, NaN payloads and subnormals included
    bad = np.flatnonzero(y.view(np.uint8) != ref.view(np.uint8))
    assert bad.size == 0, (x[bad[:4] // x.itemsize], y[bad[:4] // x.itemsize])


@pytest.mark.gpu
@pytest.mark.parametrize(
    "specs",
    [
        SEED,
        [("multiply", stages.MultiplyParams(factor=1.0009765625))],  # float16 ties, products
        [("multiply", stages.MultiplyParams(factor=0.000123))],  # into subnormals and to zero
        [("multiply", stages.MultiplyParams(factor=3)), ("add", stages.AddParams(value=-0.0))],
        [("add", stages.AddParams(value=1024.0))],  # sums that are float16 ties
        [("multiply", stages.MultiplyParams(factor=65504.0))],  # past float16's largest: inf
    ],
    ids=["seed", "ties", "subnormal", "neg-zero", "sum-ties", "overflow"],
)
def test_gpu_float16_chains_equal_numpys_for_every_float16(specs) -> None:
    """Every one of the 65536 float16 bit patterns (NaNs with their payloads, subnormals,
    both zeros, both infinities) through a chain on the GPU: NumPy's bits, each one."""
    import cupy as cp

    from pipeline import devices

    x = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16)
    chain = stages.plan_chain(specs, np.dtype("float16"))
    be = devices.get("gpu")
    be.prepare()
    y = cp.asnumpy(be.apply_chain(chain, cp.asarray(x)))
    with np.errstate(all="ignore"):
        ref = stages.apply_chain(chain, x)
    assert y.dtype == ref.dtype == np.float16
    bad = np.flatnonzero(y.view(np.uint16) != ref.view(np.uint16))
    first = bad[:6]
    assert bad.size == 0, [  # (input, GPU, NumPy) bits of the first few that differ
        [hex(int(v)) for v in a.view(np.uint16)[first]] for a in (x, y, ref)
    ]


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gpu_invalid_operations_give_numpys_default_nan(dtype: str) -> None:
    import platform

    import cupy as cp

    from pipeline import devices

    x = np.array([np.inf, -np.inf, 1.0, np.nan, 0.0], dtype=dtype)
    zero_plus_one = [
        ("multiply", stages.MultiplyParams(factor=0)),
        ("add", stages.AddParams(value=1)),
    ]
    chain = stages.plan_chain(zero_plus_one, x.dtype)
    be = devices.get("gpu")
    be.prepare()
    y = cp.asnumpy(be.apply_chain(chain, cp.asarray(x)))
    with np.errstate(invalid="ignore"):
        ref = stages.apply_chain(chain, x)
    assert np.array_equal(y, ref, equal_nan=True) and np.isnan(y[:2]).all()
    if platform.machine() in ("x86_64", "AMD64"):  # the default NaN is the CPU's own
        assert np.array_equal(y.view(np.uint8), ref.view(np.uint8))


#: Refusals on integer inputs whose fix is float64: (dtype, policy, the chain)
TO_FLOAT64 = {
    "int64-square": ("int64", "promote", [("square", None)]),
    "uint64-times-2": ("uint64", "promote", [("multiply", 2)]),
    "uint64-minus-1": ("uint64", "promote", [("add", -1)]),
    "uint32-times-minus-3": ("uint32", "promote", [("multiply", -3)]),
    "int64-times-2**63": ("int64", "promote", [("multiply", 2**63)]),
    "int32-square-error": ("int32", "error", [("square", None)]),
}


def _specs(chain: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    made = {
        "square": lambda v: stages.StageParams(),
        "multiply": lambda v: stages.MultiplyParams(factor=v),
        "add": lambda v: stages.AddParams(value=v),
    }
    return [(name, made[name](v)) for name, v in chain]


@pytest.mark.parametrize("name", list(TO_FLOAT64))
def test_the_float64_advice_for_integers_is_a_stage_that_plans(name: str) -> None:
    """ "convert the input to float64" named no way to do it, and the input is never
    modified: the refusal names the config's own, the least effort first: the overflowing
    stage's scalar written as a float (``factor: 2.0``: an integer array times a Python float
    is float64, h72a), where it has one; else a first stage ``{op: multiply, factor: 1.0}``;
    and the chain so made plans, in float64 from that stage."""
    dtype, policy, chain = TO_FLOAT64[name]
    with pytest.raises(PlanError) as e:
        stages.plan_chain(_specs(chain), np.dtype(dtype), policy)
    said = str(e.value)
    assert "\n" not in said, said
    scalar = [v for _, v in chain if v is not None]
    if scalar:
        key = "factor" if chain[0][0] == "multiply" else "value"
        assert f"as a float, {key}: {float(scalar[0])!r}" in said, said
        assert "convert the input" not in said, said
        followed = stages.plan_chain(_specs([(n, float(v)) for n, v in chain]), np.dtype(dtype))
        assert [s.out_dtype for s in followed] == [np.dtype("float64")] * len(followed)
        return
    assert "make {op: multiply, factor: 1.0} the first stage" in said, said
    assert "convert the input to float64" in said, said
    followed = stages.plan_chain(_specs([("multiply", 1.0), *chain]), np.dtype(dtype), policy)
    assert [s.out_dtype for s in followed] == [np.dtype("float64")] * len(followed)


@pytest.mark.parametrize(
    ("dtype", "value", "named"),
    [("float16", 70000, "float32"), ("float16", 1e-30, "float32"), ("float16", 1e39, "float64"),
     ("float32", 1e-50, "float64"), ("float32", 1e39, "float64")],
)  # fmt: skip
def test_a_float_scalar_that_does_not_fit_names_the_smallest_float_that_holds_it(
    dtype: str, value: float, named: str
) -> None:
    """float16 with a scalar of 70000 was told to convert the input to float64, twice the
    size of the float32 that holds it; then to convert it to float32, where the config
    alone does it (h72a): no stage converts floats with a plain number (float32 plus a Python
    float stays float32), but the scalar given the smallest float dtype that holds it (the
    typed form, ``{dtype: float32, value: 70000}``) makes the stage compute in it."""
    with pytest.raises(PlanError) as e:
        stages.plan_chain([("add", stages.AddParams(value=value))], np.dtype(dtype))
    said = str(e.value)
    assert said.endswith(
        f"value: {{dtype: {named}, value: {stages._shown(value)}}} (the stage then computes "
        f"in {named})"
    ), said
    assert "convert the input" not in said, said
    typed = stages.AddParams(value=np.dtype(named).type(value))
    assert stages.plan_chain([("add", typed)], np.dtype(dtype))[-1].out_dtype == named
    stages.plan_chain([("add", stages.AddParams(value=value))], np.dtype(named))
    if named == "float64":
        with pytest.raises(PlanError):
            stages.plan_chain([("add", stages.AddParams(value=value))], np.dtype("float32"))


def test_the_float64_advice_followed_computes_what_a_float64_input_computes(tmp_path) -> None:
    """int64 squared is refused (it can overflow 64-bit integers); the advice followed, a
    first stage that multiplies by 1.0, runs, and gives bit for bit what the same chain
    gives on the input converted to float64, the input untouched."""
    import zarr

    import pipeline

    x = np.array([[3, -(2**40), 2**53 + 1, 7], [0, 1, -(2**62), 2**31]], dtype=np.int64)
    zarr.create_array(str(tmp_path / "in.zarr"), shape=x.shape, dtype=x.dtype)[...] = x
    before = (tmp_path / "in.zarr" / "c" / "0" / "0").read_bytes()
    cfg = {
        "input": {"store": str(tmp_path / "in.zarr")},
        "output": {"store": str(tmp_path / "out.zarr")},
        "stages": [{"op": "square"}, {"op": "add", "value": 1}],
        "backend": "cpu",
    }
    with pytest.raises(PlanError) as e:
        pipeline.plan(cfg)
    assert "make {op: multiply, factor: 1.0} the first stage" in str(e.value)
    cfg["stages"] = [{"op": "multiply", "factor": 1.0}, *cfg["stages"]]
    pipeline.run(cfg)
    got = zarr.open_array(str(tmp_path / "out.zarr"), mode="r")[...]
    want = x.astype(np.float64) ** 2 + 1
    assert got.dtype == np.float64 and got.tobytes() == want.tobytes()
    assert (tmp_path / "in.zarr" / "c" / "0" / "0").read_bytes() == before


# --------------------------------------------------------------------------------------------
# NumPy scalars given through the API: strongly typed, as NumPy computes with them (NEP 50).

#: One of each NumPy scalar type the stages take, with values that neither overflow a narrow
#: integer input nor round to the same thing in every dtype (0.1 differs in each float).
NUMPY_SCALARS = [
    np.int8(-3), np.int16(7), np.int32(-5), np.int64(3),
    np.uint8(3), np.uint16(5), np.uint32(2), np.uint64(3),
    np.float16(0.1), np.float32(0.1), np.float64(0.1),
]  # fmt: skip


def _small(dtype: np.dtype) -> np.ndarray:
    """Values of ``dtype`` whose products and sums with :data:`NUMPY_SCALARS` fit any integer
    result (so NumPy's own values are the promoted chain's), with float fractions, zeros of
    both signs and a subnormal where the dtype has them."""
    if dtype.kind in "iu":
        lo = 0 if dtype.kind == "u" else -9
        return np.arange(lo, lo + 19).astype(dtype)
    v = np.array([0.0, -0.0, 1.0, -2.5, 3.3, 100.7, 1e-3, -7.1, 0.2], dtype=dtype)
    return np.append(v, np.finfo(dtype).smallest_subnormal)


@pytest.mark.parametrize("scalar", NUMPY_SCALARS, ids=lambda s: type(s).__name__)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", ["multiply", "add"])
def test_a_numpy_scalar_gives_numpys_dtype_and_bits(op: str, dtype: str, scalar: Any) -> None:
    """``x * np.float32(2)`` is float32 for a float16 ``x`` (NEP 50: a NumPy scalar is strongly
    typed); the stage had taken the scalar as its Python number, weakly (float16 stayed
    float16, int16 times np.float32(0.1) became float64, uint8 with np.int8(-1) refused).
    Every input dtype with every NumPy scalar type: the plan's dtype is ``np.result_type``'s
    (an integer one widened only where the overflow policy widens, as for a Python int), and
    the values are NumPy's to the bit, evaluated whole, in pieces, and on the traced tape."""
    x = _small(np.dtype(dtype))
    params = (
        stages.MultiplyParams(factor=scalar) if op == "multiply" else stages.AddParams(value=scalar)
    )
    assert type(getattr(params, "factor" if op == "multiply" else "value")) is type(scalar)
    want = x * scalar if op == "multiply" else x + scalar
    try:
        (bound,) = stages.plan_chain([(op, params)], x.dtype)
    except PlanError as e:  # a dtype's whole range times the scalar past 64 bits: as for 3
        assert want.dtype.kind in "iu" and "can overflow even 64-bit integers" in str(e)
        assert want.dtype.itemsize == 8 and abs(int(scalar)) > 1
        return
    assert bound.out_dtype.kind == want.dtype.kind
    if want.dtype.kind == "f":
        assert bound.out_dtype == want.dtype == np.result_type(x.dtype, scalar)
    else:  # integer_overflow: promote may widen it, never narrow it
        assert np.promote_types(want.dtype, bound.out_dtype) == bound.out_dtype
    got = stages.apply_chain([bound], x)
    pieces = np.empty(x.shape, dtype=bound.out_dtype)
    stages.apply_chain_blocked([bound], x, pieces, block=4)
    assert stages.trace_chain([bound], x.dtype) is not None  # replayed, not evaluated as is
    for y in (got, pieces):
        assert y.dtype == bound.out_dtype
        assert y.tobytes() == want.astype(bound.out_dtype).tobytes(), (x, y, want)


@pytest.mark.parametrize(
    ("dtype", "scalar", "result"),
    [
        ("float16", np.float32(2), "float32"),
        ("float16", np.float64(0.1), "float64"),
        ("int16", np.float32(0.1), "float32"),
        ("int32", np.float32(0.5), "float64"),
        ("uint8", np.int8(-1), "int16"),
        ("float32", np.float64(0.1), "float64"),
        ("int8", np.uint64(3), "float64"),
        ("float32", np.array(2.5, dtype=np.float32), "float32"),  # a 0-d array: its scalar
        ("float16", np.array(3, dtype=np.int8), "float16"),
    ],
)
def test_numpy_scalars_through_the_api_run_as_numpy_computes(
    tmp_path, backend_client: tuple[str, Any], dtype: str, scalar: Any, result: str
) -> None:
    """A whole run on a cluster, its stages given as NumPy scalars through the API: the
    output zarr-python reads is NumPy's chain on the input, dtype and bits; the plan and the
    summary name the scalar's type; the summary's config (JSON) runs again to the same bytes,
    and the config's model_dump makes the same config."""
    import json

    import zarr

    import pipeline

    backend, client = backend_client
    floats = np.dtype(result).kind == "f"
    rng = np.random.default_rng(5)
    if np.dtype(dtype).kind == "f":
        x = (rng.standard_normal((40, 30)) * 50).astype(dtype)
        x[0, :4] = [np.nan, np.inf, -0.0, np.finfo(dtype).smallest_subnormal]
    else:
        x = rng.integers(np.iinfo(dtype).min, np.iinfo(dtype).max, (40, 30), endpoint=True)
        x = x.astype(dtype)
    zarr.create_array(str(tmp_path / "in.zarr"), shape=x.shape, dtype=x.dtype, chunks=(10, 30))[
        ...
    ] = x
    cfg = pipeline.Config(
        input={"store": str(tmp_path / "in.zarr")},
        output={"store": str(tmp_path / "out.zarr")},
        stages=[
            {"op": "multiply", "factor": scalar},
            *([{"op": "square"}] if floats else []),  # integers: no promotion past NumPy's
            {"op": "add", "value": scalar},
            {"op": "add"},
        ],
        backend=backend,
        chunking={"block": [10, 30]},
    )
    assert pipeline.Config(**cfg.model_dump()) == cfg
    s = np.asarray(scalar)[()]
    with np.errstate(all="ignore"):
        y = x * s
        if floats:
            y = y * y
        want = (y + s) + (y + s)
    assert want.dtype == np.dtype(result)
    plan = pipeline.plan(cfg)
    assert plan.chain[0].describe() == f"multiply(factor={s!r}) {dtype} -> {result}"
    summary = pipeline.run(cfg, client=client, summary_json=tmp_path / "s.json")
    got = zarr.open_array(str(tmp_path / "out.zarr"), mode="r")[...]
    assert got.dtype == want.dtype and got.tobytes() == want.tobytes()
    assert summary.stages[0] == plan.chain[0].describe()
    saved = json.loads((tmp_path / "s.json").read_text())
    again = saved["config"]
    assert again["stages"][0]["factor"] == {"dtype": s.dtype.name, "value": s.item()}
    again["output"]["store"] = str(tmp_path / "again.zarr")
    pipeline.run(again, client=client)
    assert zarr.open_array(str(tmp_path / "again.zarr"), mode="r")[...].tobytes() == got.tobytes()


def test_a_yaml_number_stays_weak_and_the_typed_form_is_numpys(tmp_path, cli) -> None:
    """A config file's ``factor: 2.0`` is a Python float, weak (float16 stays float16), as
    before; ``value: {dtype: float32, value: 0.1}`` is ``np.float32(0.1)``, which the
    summary's JSON writes for a NumPy scalar: ``run`` computes NumPy's float32 result from
    it, the plan and the summary name it, and ``verify`` finds the output NumPy's."""
    import json

    import zarr

    import pipeline

    x = (np.random.default_rng(7).standard_normal((20, 16)) * 30).astype(np.float16)
    zarr.create_array(str(tmp_path / "in.zarr"), shape=x.shape, dtype=x.dtype, chunks=(5, 16))[
        ...
    ] = x
    path = tmp_path / "run.yaml"
    path.write_text(
        f"input: {{store: {tmp_path / 'in.zarr'}}}\noutput: {{store: {tmp_path / 'out.zarr'}}}\n"
        "stages:\n  - {op: multiply, factor: 2.0}\n"
        "  - {op: add, value: {dtype: float32, value: 0.1}}\n"
        "backend: cpu\ncluster: {workers: 1, threads_per_worker: 2, dashboard: ''}\n"
    )
    cfg = pipeline.load_config(path)
    weak, strong = cfg.stage_specs()
    assert type(weak[1].factor) is float
    assert type(strong[1].value) is np.float32 and strong[1].value == np.float32(0.1)
    chain = stages.plan_chain(cfg.stage_specs(), np.dtype("float16"))
    assert [str(s.out_dtype) for s in chain] == ["float16", "float32"]
    rc, out, err = cli("plan", path)
    assert rc == 0 and "add(value=np.float32(0.1)) float16 -> float32" in out, (out, err)
    rc, out, err = cli("run", path, "--summary-json", tmp_path / "s.json")
    assert rc == 0, err
    got = zarr.open_array(str(tmp_path / "out.zarr"), mode="r")[...]
    want = x * 2.0 + np.float32(0.1)
    assert got.dtype == want.dtype == np.float32 and got.tobytes() == want.tobytes()
    saved = json.loads((tmp_path / "s.json").read_text())
    exact = float(np.float32(0.1))  # 0.10000000149011612: the float32 exactly
    assert saved["config"]["stages"][1]["value"] == {"dtype": "float32", "value": exact}
    assert saved["config"]["stages"][0]["factor"] == 2.0
    rc, out, err = cli("verify", path, "--all")
    assert rc == 0, (out, err)


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (np.longdouble(2), "a NumPy float128 is wider than any dtype the stages compute in; give "),
        (np.complex64(1), "not a complex number"),
        # a duration, which Python counts as Real: it had been "wider than any dtype" (h81b)
        (np.timedelta64(3, "s"), "not a NumPy timedelta64[s] (a duration): give its count"),
        (np.array(np.timedelta64(3, "s")), "not a NumPy timedelta64[s] (a duration)"),
        (np.array([2.0]), "not that"),
        (np.float32("inf"), "finite"),
        (np.True_, "true/false"),
        ({"dtype": "float128", "value": 1}, "a typed number's dtype must be one of int8, "),
        ({"dtype": "int8", "value": 300}, "300 does not fit int8 (integers -128..127)"),
        ({"dtype": "int8", "value": 300}, "; use a value within that range, or dtype int16"),
        ({"dtype": "uint8", "value": -1}, "-1 does not fit uint8 (integers 0..255); use a "),
        ({"dtype": "uint8", "value": -1}, "or dtype int8"),
        # said as written, not as its 301 digits (r46b)
        ({"dtype": "int8", "value": 1e300}, "factor: 1e+300 does not fit int8 (integers "),
        ({"dtype": "int8", "value": 2.5}, "a typed number of dtype int8 must be a whole number"),
        ({"dtype": "int8", "value": 2.5}, "; for a fraction give a float dtype, as in {dtype: "),
        # a Fraction past float64: Python's OverflowError had come through as it was (r46b)
        (Fraction(10**400, 3), "must be a finite number float64 holds (magnitudes up to "),
        ({"dtype": "float32", "value": Fraction(10**400, 3)}, "finite number float64 holds"),
        ({"dtype": "int8", "value": Fraction(10**400, 3)}, "finite number float64 holds"),
        ({"dtype": "int8", "value": np.float32(2.5)}, "of dtype int8 must be a whole number"),
        ({"dtype": "float16", "value": 1e6}, "1000000.0 does not fit float16, which holds "),
        ({"dtype": "float16", "value": 1e6}, "; use a value within that range, or dtype float32"),
        ({"dtype": "float64", "value": 10**400}, "1.000000e+400 does not fit float64, which "),
        # below the dtype's least subnormal: 0, multiplying by 0 (r46b: it had run so)
        ({"dtype": "float32", "value": 1e-50}, "1e-50 does not fit float32, which holds "),
        ({"dtype": "float32", "value": 1e-50}, "down to 1.4e-45; use a value within that range, "),
        ({"dtype": "float16", "value": np.float32(1e-8)}, "or dtype float32"),
        ({"dtype": "float32", "value": float("nan")}, "finite number (not inf or NaN) in float32"),
        ({"dtype": "float32", "value": True}, "a typed number's value must be a number"),
        ({"value": 1}, "a typed number is a mapping of dtype and value, as in {dtype: float32"),
    ],
)
def test_a_scalar_no_stage_computes_as_numpy_does_is_one_config_error_line(value, words) -> None:
    """A NumPy scalar wider than 64 bits (np.longdouble: NumPy would compute in it, no
    stage does), a complex one, and a typed form that names no such NumPy scalar: one
    ConfigError line naming the key and what to give."""
    import pipeline

    if isinstance(value, np.longdouble) and np.dtype(np.longdouble).itemsize <= 8:
        pytest.skip("this platform's longdouble is float64")
    with pytest.raises(pipeline.ConfigError) as e:
        pipeline.Config(
            input={"store": "in.zarr"},
            output={"store": "out.zarr"},
            stages=[{"op": "multiply", "factor": value}],
        )
    line = str(e.value)
    assert len(line.splitlines()) == 1 and "stages.0.factor: " in line and words in line, line


@pytest.mark.parametrize(
    ("dtype", "value"),
    [
        ("float32", -0.0),
        ("float16", 2.0**-24),  # float16's least subnormal
        ("float32", float(np.finfo(np.float32).smallest_subnormal)),
        ("float32", float(np.finfo(np.float32).max)),
        ("float64", -float(np.finfo(np.float64).max)),
        ("float16", 65519),  # rounds to float16's max, 65504, as NumPy converts it
        ("int8", -128),
        ("int8", 127),
        ("uint64", 2**64 - 1),
        ("int64", -(2**63)),
    ],
)
def test_a_typed_number_at_its_dtypes_bounds_is_numpys(dtype, value) -> None:
    """A typed number at the edge of its dtype (its least subnormal, its largest, a negative
    zero, an integer's bounds) is the NumPy scalar of that value, never refused."""
    got = stages.MultiplyParams(factor={"dtype": dtype, "value": value}).factor
    want = np.dtype(dtype).type(value)
    assert type(got) is type(want) and got.tobytes() == want.tobytes()


@pytest.mark.parametrize(
    ("given", "scalar"),
    [
        ("f4", np.float32(2)),
        ("<f4", np.float32(2)),
        (">f4", np.float32(2)),  # the scalar is NumPy's, in the machine's byte order
        ("=i2", np.int16(2)),
        ("|u1", np.uint8(2)),
        ("u8", np.uint64(2)),
        ("f2", np.float16(2)),
        (np.float32, np.float32(2)),
        (np.dtype("float64"), np.float64(2)),
        (np.dtype(">i4"), np.int32(2)),
    ],
    ids=str,
)
def test_a_typed_numbers_dtype_may_be_spelled_as_numpy_spells_it(tmp_path, given, scalar) -> None:
    """A typed number's dtype given as NumPy's sized code (``f4``, ``<f4``: what
    ``np.dtype(...).str`` writes) or, through the API, as the NumPy type or dtype itself is
    that dtype's scalar; it had been refused as no dtype of the list. In a file too, and
    the summary's JSON writes its name."""
    import pipeline

    got = stages.MultiplyParams(factor={"dtype": given, "value": 2}).factor
    assert type(got) is type(scalar) and got == scalar and got.dtype.isnative
    typed = stages.AddParams(value={"dtype": given, "value": np.array(2)}).value  # a 0-d array
    assert type(typed) is type(scalar) and typed == scalar
    if isinstance(given, str):
        path = tmp_path / "c.yaml"
        path.write_text(
            "input: {store: in.zarr}\noutput: {store: out.zarr}\nstages:\n"
            f"  - {{op: multiply, factor: {{dtype: '{given}', value: 2}}}}\n"
        )
        cfg = pipeline.load_config(path)
        (_, params), *_ = cfg.stage_specs()
        assert type(params.factor) is type(scalar) and params.factor == scalar
        dumped = cfg.model_dump(mode="json")["stages"][0]["factor"]
        assert dumped == {"dtype": scalar.dtype.name, "value": scalar.item()}


@pytest.mark.parametrize("given", ["float", "int", "double", "d", "l", "f1", "i16", "c8", float])
def test_a_typed_numbers_dtype_without_its_size_is_one_config_error_line(given) -> None:
    """``int``, ``float``, ``double`` and the codes without a size (``l`` is another size on
    another platform, ``int`` reads as Python's weak int) are refused, in one line naming
    the names and codes taken."""
    import pipeline

    with pytest.raises(pipeline.ConfigError) as e:
        pipeline.Config(
            input={"store": "in.zarr"},
            output={"store": "out.zarr"},
            stages=[{"op": "multiply", "factor": {"dtype": given, "value": 2}}],
        )
    line = str(e.value)
    assert len(line.splitlines()) == 1, line
    assert "stages.0.factor: a typed number's dtype must be one of int8, " in line
    assert "(or NumPy's code for one with its size, f4 or <f4 for float32)" in line


def test_a_numpy_integer_is_planned_in_exact_integers() -> None:
    """The worst case of ``int64 * np.int64(3)`` is computed in Python's ints: in NumPy's
    int64 arithmetic it overflows (a warning, and a wrapped bound); ``int32 * np.int64(5)``
    is int64, as in NumPy (a Python 5 keeps int32, which promote widens to int64)."""
    with pytest.raises(PlanError, match="overflow even 64-bit"):
        stages.plan_chain([("multiply", stages.MultiplyParams(factor=np.int64(3)))], np.int64)
    (bound,) = stages.plan_chain(
        [("multiply", stages.MultiplyParams(factor=np.int64(5)))], np.dtype("int32")
    )
    assert bound.out_dtype == np.int64


def test_cuda_source_takes_a_numpy_scalar_in_numpys_result_dtype() -> None:
    """The kernel's scalar argument is the NumPy scalar converted to the stage's dtype, the
    input converted there first: float16 times np.float32(0.1) computes in float32."""
    chain = stages.plan_chain(
        [("multiply", stages.MultiplyParams(factor=np.float32(0.1)))], np.dtype("float16")
    )
    src = kernel.cuda_source(chain)
    assert src.in_params == "float16 x, float32 s0_0" and src.out_params == "float32 y"
    assert src.scalars == (np.float32(0.1),) and type(src.scalars[0]) is np.float32
    assert "float t0_in = pl_h2f(x);" in src.body and "pl_mul_f32(t0_in, s0_0)" in src.body


@pytest.mark.gpu
@pytest.mark.parametrize("scalar", NUMPY_SCALARS, ids=lambda s: type(s).__name__)
@pytest.mark.parametrize("dtype", ["float16", "int16", "uint8", "uint16", "float32", "int32"])
def test_gpu_numpy_scalars_give_numpys_bits(dtype: str, scalar: Any) -> None:
    """The GPU kernel with a NumPy scalar in each stage: NumPy's dtype and bits."""
    import cupy as cp

    from pipeline import devices

    x = np.tile(_small(np.dtype(dtype)), 1000)
    specs = [
        ("multiply", stages.MultiplyParams(factor=scalar)),
        ("add", stages.AddParams(value=scalar)),
    ]
    chain = stages.plan_chain(specs, x.dtype)
    be = devices.get("gpu")
    be.prepare()
    y = cp.asnumpy(be.apply_chain(chain, cp.asarray(x)))
    with np.errstate(all="ignore"):
        want = stages.apply_chain(chain, x)
        numpy_own = (x * scalar + scalar).astype(chain[-1].out_dtype)
    assert y.dtype == want.dtype and y.tobytes() == want.tobytes() == numpy_own.tobytes()


def test_a_resume_tells_a_numpy_scalar_from_the_python_number(tmp_path) -> None:
    """A float16 output made with ``np.float32(2)`` (float32, NumPy's) is not the one the
    Python ``2`` makes (float16): a resume with the other is refused, naming both as the
    plan does; with the same scalar it finds the output complete."""
    import zarr

    import pipeline

    x = np.arange(12, dtype=np.float16).reshape(3, 4)
    zarr.create_array(str(tmp_path / "in.zarr"), shape=x.shape, dtype=x.dtype)[...] = x
    cfg: dict[str, Any] = {
        "input": {"store": str(tmp_path / "in.zarr")},
        "output": {"store": str(tmp_path / "out.zarr")},
        "stages": [{"op": "multiply", "factor": np.float32(2)}],
        "backend": "cpu",
    }
    pipeline.run(cfg)
    assert zarr.open_array(str(tmp_path / "out.zarr"), mode="r").dtype == np.float32
    cfg["stages"] = [{"op": "multiply", "factor": 2}]
    with pytest.raises(pipeline.OutputError) as e:
        pipeline.run(cfg, resume=True)
    assert (
        "were multiply(factor=np.float32(2.0)) float16 -> float32, now multiply(factor=2) "
        "float16 -> float16" in str(e.value)
    )
    cfg["stages"] = [{"op": "multiply", "factor": np.array(2, dtype=np.float32)}]
    assert pipeline.run(cfg, resume=True).status == "complete (nothing to do)"


def test_an_output_made_with_a_decimal_resumes_with_the_float_and_the_fraction(tmp_path) -> None:
    """A ``decimal.Decimal`` factor is the float ``float(x)`` gives, as a ``Fraction`` is
    (it had been refused): the output is NumPy's ``x * 0.1`` (a weak float: float32 stays
    float32) bit for bit, its record holds the float, and a resume with the Decimal, the
    Fraction or the float 0.1 finds it complete; one with another number is refused."""
    from decimal import Decimal

    import zarr

    import pipeline

    x = np.random.default_rng(7).standard_normal((6, 5)).astype(np.float32)
    zarr.create_array(str(tmp_path / "in.zarr"), shape=x.shape, dtype=x.dtype)[...] = x
    cfg: dict[str, Any] = {
        "input": {"store": str(tmp_path / "in.zarr")},
        "output": {"store": str(tmp_path / "out.zarr")},
        "stages": [{"op": "multiply", "factor": Decimal("0.1")}, {"op": "add", "value": 1}],
        "backend": "cpu",
        "cluster": {"workers": 1, "threads_per_worker": 1, "dashboard": ""},
    }
    summary = pipeline.run(cfg)
    assert summary.config["stages"][0]["factor"] == 0.1
    got = zarr.open_array(str(tmp_path / "out.zarr"), mode="r")[...]
    want = x * 0.1 + 1
    assert got.dtype == want.dtype == np.float32 and got.tobytes() == want.tobytes()
    for same in (Decimal("0.1"), Fraction(1, 10), 0.1):
        cfg["stages"][0]["factor"] = same
        assert pipeline.run(cfg, resume=True).status == "complete (nothing to do)", same
    cfg["stages"][0]["factor"] = Decimal("0.2")
    with pytest.raises(pipeline.OutputError) as e:
        pipeline.run(cfg, resume=True)
    assert "were multiply(factor=0.1)" in str(e.value) and "now multiply(factor=0.2)" in str(
        e.value
    ), e.value


@pytest.mark.parametrize(
    ("written", "scalar"),
    [
        ("1e-5", np.float32(1e-5)),  # YAML 1.2's float; text to PyYAML (YAML 1.1)
        ("-2.5E+3", np.float32(-2500.0)),
        ("1e300", np.float64(1e300)),
        ("0o17", np.float32(15)),
        ("007", np.int8(7)),
        ("08", np.int8(8)),  # text to YAML 1.1
    ],
)
def test_a_typed_numbers_value_is_read_as_a_plain_factor_is(tmp_path, written, scalar) -> None:
    """``factor: {dtype: float32, value: 1e-5}`` is np.float32(1e-5), as ``factor: 1e-5`` is
    the float 1e-5 (YAML 1.2): the typed form's value had stayed PyYAML's text, refused as
    no number."""
    import pipeline

    path = tmp_path / "c.yaml"
    path.write_text(
        "input: {store: in.zarr}\noutput: {store: out.zarr}\nstages:\n"
        f"  - {{op: multiply, factor: {{dtype: {scalar.dtype.name}, value: {written}}}}}\n"
        f"  - op: add\n    value:\n      dtype: {scalar.dtype.name}\n      value: {written}\n"
    )
    (_, multiply), (_, add) = pipeline.load_config(path).stage_specs()
    for got in (multiply.factor, add.value):
        assert type(got) is type(scalar) and got == scalar


@pytest.mark.parametrize(
    ("written", "words"),
    [
        ("010", "stages.0.factor.value: 010 reads as 8 (octal) in YAML 1.1 but 10 in YAML 1.2"),
        ("1:30", "stages.0.factor.value: 1:30 reads as 90 in YAML 1.1 (base 60)"),
    ],
)
def test_a_typed_numbers_value_yaml_reads_two_ways_is_refused(tmp_path, written, words) -> None:
    """A typed number's ``value: 010`` (the octal 8 to PyYAML, 10 to YAML 1.2 and to whoever
    wrote it) is refused at its line, as ``factor: 010`` is; it had run as 8."""
    import pipeline

    path = tmp_path / "c.yaml"
    path.write_text(
        "input: {store: in.zarr}\noutput: {store: out.zarr}\nstages:\n"
        f"  - {{op: multiply, factor: {{dtype: int16, value: {written}}}}}\n"
    )
    with pytest.raises(pipeline.ConfigError) as e:
        pipeline.load_config(path)
    line = str(e.value)
    assert len(line.splitlines()) == 1 and f"c.yaml:4: {words}" in line, line


def test_the_summarys_config_saved_as_a_file_runs_to_the_same_bytes(tmp_path, cli) -> None:
    """The summary's config, saved as a file (JSON, which YAML reads), runs again through
    the command line to the same bytes with NumPy scalars whose JSON has an exponent and
    no dot (np.float64(1e-05) is written 1e-05, which PyYAML had read as text)."""
    import json

    import zarr

    import pipeline

    x = np.linspace(-3, 3, 60, dtype=np.float32).reshape(6, 10)
    zarr.create_array(str(tmp_path / "in.zarr"), shape=x.shape, dtype=x.dtype, chunks=(3, 10))[
        ...
    ] = x
    cfg = pipeline.Config(
        input={"store": str(tmp_path / "in.zarr")},
        output={"store": str(tmp_path / "out.zarr")},
        stages=[
            {"op": "multiply", "factor": np.float64(1e-5)},
            {"op": "add", "value": np.float32(1e20)},
        ],
        backend="cpu",
        cluster={"workers": 1, "threads_per_worker": 2, "dashboard": ""},
    )
    pipeline.run(cfg, summary_json=tmp_path / "s.json")
    got = zarr.open_array(str(tmp_path / "out.zarr"), mode="r")[...]
    want = x * np.float64(1e-5) + np.float32(1e20)
    assert got.dtype == want.dtype and got.tobytes() == want.tobytes()
    again = json.loads((tmp_path / "s.json").read_text())["config"]
    assert again["stages"][0]["factor"] == {"dtype": "float64", "value": 1e-05}
    again["output"]["store"] = str(tmp_path / "again.zarr")
    (tmp_path / "again.json").write_text(json.dumps(again))
    assert "1e-05" in (tmp_path / "again.json").read_text()
    rc, out, err = cli("run", tmp_path / "again.json")
    assert rc == 0, err
    assert zarr.open_array(str(tmp_path / "again.zarr"), mode="r")[...].tobytes() == got.tobytes()
    rc, out, err = cli("verify", tmp_path / "again.json", "--all")
    assert rc == 0, (out, err)


def test_a_numpy_scalars_record_does_not_follow_the_callers_print_options(tmp_path) -> None:
    """The plan, the summary and the output's record name a NumPy scalar with its type
    whatever NumPy's print options: with ``legacy='1.25'`` set (repr(np.float32(2)) is then
    ``2.0``) they had written ``multiply(factor=2.0)``, as for the Python number, and a
    resume with the default options refused the complete output as made by other stages."""
    import zarr

    import pipeline

    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    zarr.create_array(str(tmp_path / "in.zarr"), shape=x.shape, dtype=x.dtype)[...] = x
    cfg: dict[str, Any] = {
        "input": {"store": str(tmp_path / "in.zarr")},
        "output": {"store": str(tmp_path / "out.zarr")},
        "stages": [{"op": "multiply", "factor": np.float32(2)}],
        "backend": "cpu",
    }
    said = "multiply(factor=np.float32(2.0)) float32 -> float32"
    with np.printoptions(legacy="1.25"):
        assert pipeline.plan(cfg).chain[0].describe() == said
        summary = pipeline.run(cfg)
    assert summary.stages == [said]
    record = record_of(zarr.open_array(str(tmp_path / "out.zarr"), mode="r").attrs)
    assert record["stages"] == [said]
    assert pipeline.run(cfg, resume=True).status == "complete (nothing to do)"


@pytest.mark.parametrize(
    ("dtype", "params"),
    [
        ("int8", stages.MultiplyParams(factor=np.int8(100))),
        ("int8", stages.MultiplyParams(factor=100)),
        ("uint8", stages.MultiplyParams(factor={"dtype": "uint64", "value": 2**64 - 1})),
        ("uint64", stages.MultiplyParams(factor=3)),
        ("int64", stages.AddParams(value=np.int64(-(2**63)))),
        ("int32", stages.MultiplyParams(factor=5)),
    ],
    ids=str,
)
def test_integer_overflow_error_names_promote_only_where_promote_plans_it(dtype, params) -> None:
    """``integer_overflow: error``'s refusal names ``integer_overflow: promote`` as a fix
    only where promote plans the stage: uint8 times np.uint64(2**64 - 1) and uint64 times 3
    are past 64 bits, which promote refuses too (the line had named it there as well);
    the float64 fix is named always (the stage's scalar written as a float, where it has a
    Python int: h72a), and plans it."""
    op = "multiply" if isinstance(params, stages.MultiplyParams) else "add"
    with pytest.raises(PlanError) as e:
        stages.plan_chain([(op, params)], np.dtype(dtype), policy="error")
    line = str(e.value)
    assert len(line.splitlines()) == 1 and "compute" in line and "in float64 instead" in line
    try:
        stages.plan_chain([(op, params)], np.dtype(dtype), policy="promote")
        promotes = True
    except PlanError:
        promotes = False
    assert ("set integer_overflow: promote" in line) == promotes, line
    assert ("past 64 bits" in line) != promotes, line
    fixes = _followed(line, [(op, params)], "error")
    assert len(fixes) == 1 + promotes, line
    for chain, policy in fixes:
        assert stages.plan_chain(chain, np.dtype(dtype), policy)  # type: ignore[arg-type]
