"""Stages: registry, dtype planning and overflow policy, and bit-exact evaluation."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline import stages
from pipeline.errors import PipelineError
from tests.conftest import reference

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
    with pytest.raises(PipelineError, match="overflow even 64-bit"):
        stages.plan_chain(SEED, np.dtype("int32"), "promote")


def test_error_policy_refuses_a_chain_that_can_overflow() -> None:
    with pytest.raises(PipelineError, match="can overflow int8"):
        stages.plan_chain(SEED, np.dtype("int8"), "error")
    # a chain that cannot overflow passes under the same policy
    chain = stages.plan_chain(
        [("multiply", stages.MultiplyParams(factor=1))], np.dtype("int64"), "error"
    )
    assert chain[0].out_dtype == np.dtype("int64")
    # adding any non-zero scalar to a full-range integer can overflow it
    with pytest.raises(PipelineError, match="can overflow int16"):
        stages.plan_chain([("add", stages.AddParams(value=1))], np.dtype("int16"), "error")
    assert stages.plan_chain([("add", stages.AddParams(value=1))], np.dtype("int16"), "promote")[
        0
    ].out_dtype == np.dtype("int32")


def test_float_scalar_on_integers_follows_numpy() -> None:
    chain = stages.plan_chain([("multiply", stages.MultiplyParams(factor=0.5))], np.dtype("int16"))
    assert chain[0].out_dtype == np.dtype("float64")
    x = np.arange(-5, 5, dtype=np.int16)
    assert np.array_equal(stages.apply_chain(chain, x), x * 0.5)


def test_scalar_that_does_not_fit_is_a_clear_error() -> None:
    with pytest.raises(PipelineError, match="out of bounds for uint8"):
        stages.plan_chain([("add", stages.AddParams(value=-1))], np.dtype("uint8"))


@pytest.mark.parametrize("dtype", ["bool", "complex64", "U4", "object"])
def test_unsupported_dtypes_are_refused(dtype: str) -> None:
    with pytest.raises(PipelineError, match="unsupported dtype"):
        stages.plan_chain(SEED, np.dtype(dtype))


def test_cuda_source_is_one_fused_kernel_with_exact_scalars() -> None:
    chain = stages.plan_chain(SEED, np.dtype("float32"))
    src = stages.cuda_source(chain)
    assert src.in_params == "float32 x, float32 s0_0"
    assert src.out_params == "float32 y"
    # float32 arithmetic goes through PTX without .ftz: CuPy compiles with -ftz=true
    assert src.body.count("pl_mul_f32(t0_in, s0_0)") == 1
    assert "pl_mul_f32(t1_in, t1_in)" in src.body and "pl_add_f32(t2_in, t2_in)" in src.body
    assert src.body.endswith("y = t2;") and " * " not in src.body and " + " not in src.body
    assert "mul.rn.f32 " in stages.CUDA_PREAMBLE and ".ftz" not in stages.CUDA_PREAMBLE
    assert src.scalars == (np.float32(5),)
    src64 = stages.cuda_source(stages.plan_chain(SEED, np.dtype("float64")))
    assert "pl_mul_f64(t0_in, s0_0)" in src64.body and "pl_add_f64(t2_in, t2_in)" in src64.body
    src16 = stages.cuda_source(stages.plan_chain(SEED, np.dtype("int16")))
    assert "pl_" not in src16.body  # integers: plain C arithmetic


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", "int8", "uint16", "int16"])
def test_gpu_kernel_is_bit_identical_to_numpy(dtype: str) -> None:
    import cupy as cp

    from pipeline import backend

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
        }.get(dtype, [])
        x.view(f"uint{8 * x.itemsize}")[20 : 20 + len(nans)] = nans
    else:
        info = np.iinfo(dtype)
        x = rng.integers(info.min, info.max, 1_000_003, endpoint=True).astype(dtype)
    chain = stages.plan_chain(SEED, np.dtype(dtype))
    be = backend.get("gpu")
    be.prepare()
    y = cp.asnumpy(be.apply_chain(chain, cp.asarray(x)))
    with np.errstate(over="ignore", invalid="ignore"):
        ref = stages.apply_chain(chain, x)
    assert y.dtype == ref.dtype
    if dtype == "float16":  # NaN payloads are not kept in float16 (see stages.CUDA_PREAMBLE)
        assert np.array_equal(y, ref, equal_nan=True)
        assert np.array_equal(y[~np.isnan(y)].view(np.uint8), ref[~np.isnan(ref)].view(np.uint8))
    else:  # every bit, NaN payloads and subnormals included
        bad = np.flatnonzero(y.view(np.uint8) != ref.view(np.uint8))
        assert bad.size == 0, (x[bad[:4] // x.itemsize], y[bad[:4] // x.itemsize])


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gpu_invalid_operations_give_numpys_default_nan(dtype: str) -> None:
    import platform

    import cupy as cp

    from pipeline import backend

    x = np.array([np.inf, -np.inf, 1.0, np.nan, 0.0], dtype=dtype)
    zero_plus_one = [
        ("multiply", stages.MultiplyParams(factor=0)),
        ("add", stages.AddParams(value=1)),
    ]
    chain = stages.plan_chain(zero_plus_one, x.dtype)
    be = backend.get("gpu")
    be.prepare()
    y = cp.asnumpy(be.apply_chain(chain, cp.asarray(x)))
    with np.errstate(invalid="ignore"):
        ref = stages.apply_chain(chain, x)
    assert np.array_equal(y, ref, equal_nan=True) and np.isnan(y[:2]).all()
    if platform.machine() in ("x86_64", "AMD64"):  # the default NaN is the CPU's own
        assert np.array_equal(y.view(np.uint8), ref.view(np.uint8))
