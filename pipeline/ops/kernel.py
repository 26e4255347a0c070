"""The fused chain's CUDA source: one elementwise kernel per stage chain, as text (and one
that decodes CF-packed elements, :func:`unpack_source`).

Each stage function of :mod:`pipeline.ops.stages` is evaluated on :class:`Expr`, a symbol whose
operators write C source, so the kernel follows from the same function NumPy runs. Every
operation is cast back to the stage's planned dtype, as NumPy rounds (or wraps) each one, and
float32/float64 arithmetic goes through :data:`CUDA_PREAMBLE`'s PTX helpers so results match
NumPy to the bit. Source text only: compiling it (CuPy) is :mod:`pipeline.devices.gpu`'s work.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from pipeline.ops.stages import BoundStage

#: The C type of each dtype a chain computes in (float16: its bits, ``pl_half`` of
#: :data:`CUDA_PREAMBLE`).
CTYPES = {
    "int8": "signed char",
    "int16": "short",
    "int32": "int",
    "int64": "long long",
    "uint8": "unsigned char",
    "uint16": "unsigned short",
    "uint32": "unsigned int",
    "uint64": "unsigned long long",
    "float16": "pl_half",
    "float32": "float",
    "float64": "double",
}


#: Device functions the generated source calls, so that float32 and float64 results match
#: NumPy's to the bit:
#:
#: - CuPy compiles every kernel with ``-ftz=true`` (a later ``-ftz=false`` does not win), which
#:   flushes float32 subnormals to zero, inputs and results, where NumPy keeps them. Arithmetic
#:   and float32<->float64 conversions are therefore PTX instructions without ``.ftz``: IEEE
#:   round-to-nearest with subnormals, never contracted into an FMA.
#: - A GPU operation with a NaN operand returns the canonical NaN; NumPy (the CPU) returns the
#:   first NaN operand, quieted, so payloads survive. An invalid operation (inf * 0, inf - inf)
#:   gives the x86 default NaN (sign set), as NumPy on x86-64 does.
#: - A comparison under ``-ftz=true`` takes a subnormal for zero: ``pl_eq_*`` compare exactly.
#: - A conversion of a NaN between float32 and float64 keeps its sign and payload, as x86-64's
#:   does (the GPU's gives its canonical NaN).
#: - float16 is held as its bits (``pl_half``), not as CuPy's float16 type, whose conversions
#:   give the canonical NaN: an operation converts its float16 operands to float32 exactly (a
#:   NaN's sign and payload kept), computes in float32 as above, and rounds the result to
#:   float16 (to nearest, ties to even; a NaN keeps its sign and its payload's top ten bits), as
#:   NumPy computes float16 arithmetic. float32 holds every float16 exactly and more than twice
#:   its precision, so that double rounding equals float16's own rounding (IEEE 754's +, -, x).
CUDA_PREAMBLE = r"""
typedef unsigned short pl_half;
__device__ __forceinline__ float pl_h2f(pl_half h) {
    const unsigned int s = ((unsigned int)h & 0x8000u) << 16;
    const unsigned int e = (unsigned int)h & 0x7c00u, m = (unsigned int)h & 0x03ffu;
    if (e == 0x7c00u) return __uint_as_float(s | 0x7f800000u | (m << 13));  // inf, NaN
    if (e != 0u) return __uint_as_float(s | ((((unsigned int)h & 0x7fffu) + 0x1c000u) << 13));
    // zero or subnormal: m units of 2^-24, exact (and normal) in float32
    float v; asm("mul.rn.f32 %0, %1, %2;" : "=f"(v) : "f"((float)m), "f"(5.9604644775390625e-08f));
    return __uint_as_float(__float_as_uint(v) | s);
}
__device__ __forceinline__ pl_half pl_f2h(float f) {
    const unsigned int u = __float_as_uint(f);
    const unsigned int s = (u >> 16) & 0x8000u, a = u & 0x7fffffffu;
    if (a > 0x7f800000u) {  // NaN: its payload's top bits, still a NaN
        const unsigned int m = (a & 0x007fffffu) >> 13;
        return (pl_half)(s | 0x7c00u | (m != 0u ? m : 1u));
    }
    if (a >= 0x477ff000u) return (pl_half)(s | 0x7c00u);  // 65520 and up round to inf
    unsigned int q, rest, tie;
    if (a >= 0x38800000u) {  // 2^-14 and up: a normal float16
        q = (a - 0x38000000u) >> 13;
        rest = a & 0x1fffu;
        tie = 0x1000u;
    } else if (a >= 0x33000000u) {  // a subnormal float16 (or 0 or 2^-14, as it rounds)
        const unsigned int shift = 126u - (a >> 23);  // 14..24: down to units of 2^-24
        const unsigned int m = (a & 0x007fffffu) | 0x00800000u;
        q = m >> shift;
        rest = m & ((1u << shift) - 1u);
        tie = 1u << (shift - 1u);
    } else {
        return (pl_half)s;  // under 2^-25: zero
    }
    if (rest > tie || (rest == tie && (q & 1u))) q += 1u;  // a carry is the next binade: right
    return (pl_half)(s | q);
}
__device__ __forceinline__ float pl_nan_f32(float a, float b) {
    if (a != a) return __uint_as_float(__float_as_uint(a) | 0x00400000u);
    if (b != b) return __uint_as_float(__float_as_uint(b) | 0x00400000u);
    return __uint_as_float(0xffc00000u);
}
__device__ __forceinline__ double pl_nan_f64(double a, double b) {
    if (a != a) return __longlong_as_double(__double_as_longlong(a) | 0x0008000000000000ll);
    if (b != b) return __longlong_as_double(__double_as_longlong(b) | 0x0008000000000000ll);
    return __longlong_as_double((long long)0xfff8000000000000ull);
}
__device__ __forceinline__ float pl_mul_f32(float a, float b) {
    float r; asm("mul.rn.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
    return r == r ? r : pl_nan_f32(a, b);
}
__device__ __forceinline__ float pl_add_f32(float a, float b) {
    float r; asm("add.rn.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
    return r == r ? r : pl_nan_f32(a, b);
}
__device__ __forceinline__ double pl_mul_f64(double a, double b) {
    double r; asm("mul.rn.f64 %0, %1, %2;" : "=d"(r) : "d"(a), "d"(b));
    return r == r ? r : pl_nan_f64(a, b);
}
__device__ __forceinline__ double pl_add_f64(double a, double b) {
    double r; asm("add.rn.f64 %0, %1, %2;" : "=d"(r) : "d"(a), "d"(b));
    return r == r ? r : pl_nan_f64(a, b);
}
__device__ __forceinline__ bool pl_eq_f32(float a, float b) {
    unsigned int r;
    asm("{\n\t.reg .pred p;\n\tsetp.eq.f32 p, %1, %2;\n\tselp.u32 %0, 1, 0, p;\n\t}"
        : "=r"(r) : "f"(a), "f"(b));
    return r != 0u;
}
__device__ __forceinline__ bool pl_eq_f64(double a, double b) {
    unsigned int r;
    asm("{\n\t.reg .pred p;\n\tsetp.eq.f64 p, %1, %2;\n\tselp.u32 %0, 1, 0, p;\n\t}"
        : "=r"(r) : "d"(a), "d"(b));
    return r != 0u;
}
__device__ __forceinline__ double pl_f32_to_f64(float a) {
    if (a != a) {  // as x86-64 converts a NaN: sign and payload kept, quieted
        unsigned long long u = __float_as_uint(a);
        return __longlong_as_double((long long)(((u & 0x80000000ull) << 32)
            | 0x7ff8000000000000ull | ((u & 0x003fffffull) << 29)));
    }
    double r; asm("cvt.f64.f32 %0, %1;" : "=d"(r) : "f"(a));
    return r;
}
__device__ __forceinline__ float pl_f64_to_f32(double a) {
    if (a != a) {
        unsigned long long u = (unsigned long long)__double_as_longlong(a);
        return __uint_as_float((unsigned int)((u >> 32) & 0x80000000ull) | 0x7fc00000u
            | (unsigned int)((u >> 29) & 0x003fffffull));
    }
    float r; asm("cvt.rn.f32.f64 %0, %1;" : "=f"(r) : "d"(a));
    return r;
}
__device__ __forceinline__ pl_half pl_mul_f16(pl_half a, pl_half b) {
    return pl_f2h(pl_mul_f32(pl_h2f(a), pl_h2f(b)));
}
__device__ __forceinline__ pl_half pl_add_f16(pl_half a, pl_half b) {
    return pl_f2h(pl_add_f32(pl_h2f(a), pl_h2f(b)));
}
"""

_FLOAT_OPS = {
    ("pl_half", "*"): "pl_mul_f16",
    ("pl_half", "+"): "pl_add_f16",
    ("float", "*"): "pl_mul_f32",
    ("float", "+"): "pl_add_f32",
    ("double", "*"): "pl_mul_f64",
    ("double", "+"): "pl_add_f64",
}


def _convert(code: str, src: str, dst: str) -> str:
    """C source converting ``code`` (C type ``src``) to C type ``dst``, subnormals kept."""
    if src == dst:
        return code
    if src == "pl_half":  # exact in float32, then as float32 converts
        return _convert(f"pl_h2f({code})", "float", dst)
    if dst == "pl_half":
        if src == "double":  # NumPy rounds it once, to float16; through float32 is twice
            raise ValueError("no exact conversion from float64 to float16 in a chain")
        # an integer: exact in float32 below 65520, and float16's inf from there on either way
        return f"pl_f2h({_convert(code, src, 'float')})"
    if (src, dst) == ("float", "double"):
        return f"pl_f32_to_f64({code})"
    if (src, dst) == ("double", "float"):
        return f"pl_f64_to_f32({code})"
    return f"({dst}){code}"


@dataclass
class _Builder:
    """Collects the scalar arguments one stage of a generated kernel needs."""

    dtype: np.dtype
    prefix: str
    scalars: list[tuple[str, np.generic]] = field(default_factory=list)

    def scalar(self, value: float | int | np.number) -> Expr:
        # the stage's dtype is NumPy's result dtype with the scalar (a NumPy scalar's own, or
        # one it promotes to), so converting it there is what NumPy does with it
        name = f"{self.prefix}{len(self.scalars)}"
        self.scalars.append((name, np.asarray(value, dtype=self.dtype)[()]))  # type: ignore[arg-type]
        return Expr(name, self)


@dataclass(frozen=True)
class Expr:
    """A CUDA expression of the builder's dtype; its operators build source text."""

    code: str
    builder: _Builder

    def _bin(self, other: Expr | float | int, op: str) -> Expr:
        # every operation is cast back to the stage's type, as NumPy rounds (or wraps) each one
        o = other if isinstance(other, Expr) else self.builder.scalar(other)
        ct = CTYPES[self.builder.dtype.name]
        fn = _FLOAT_OPS.get((ct, op))
        if fn is not None:  # see CUDA_PREAMBLE: subnormals and NaN payloads as NumPy has them
            return Expr(f"{fn}({self.code}, {o.code})", self.builder)
        return Expr(f"(({ct})({self.code} {op} {o.code}))", self.builder)

    def __mul__(self, other: Expr | float | int) -> Expr:
        return self._bin(other, "*")

    def __add__(self, other: Expr | float | int) -> Expr:
        return self._bin(other, "+")

    def __rmul__(self, other: float | int) -> Expr:
        return self.builder.scalar(other)._bin(self, "*")

    def __radd__(self, other: float | int) -> Expr:
        return self.builder.scalar(other)._bin(self, "+")


@dataclass(frozen=True)
class KernelSource:
    """Everything ``cupy.ElementwiseKernel`` needs for one fused chain."""

    in_params: str
    out_params: str
    body: str
    name: str
    scalars: tuple[np.generic, ...]


def cuda_source(chain: Sequence[BoundStage]) -> KernelSource:
    """Generate one elementwise kernel that runs the whole chain: one read, one write.

    Each stage's result is cast to its planned dtype, as :func:`apply_chain` does, and scalars
    travel as kernel arguments already converted by NumPy, so both backends see the same bits.
    """
    if not chain:
        raise ValueError("empty chain")
    lines: list[str] = []
    scalars: list[tuple[str, np.generic]] = []
    var, var_ct = "x", CTYPES[chain[0].in_dtype.name]
    for i, s in enumerate(chain):
        ct = CTYPES[s.out_dtype.name]
        b = _Builder(s.out_dtype, prefix=f"s{i}_")
        arg = Expr(f"t{i}_in", b)
        lines.append(f"{ct} t{i}_in = {_convert(var, var_ct, ct)};")
        lines.append(f"{ct} t{i} = {s.definition.fn(arg, s.params).code};")
        scalars.extend(b.scalars)
        var, var_ct = f"t{i}", ct
    lines.append(f"y = {var};")
    params = [f"{chain[0].in_dtype.name} x"] + [f"{v.dtype.name} {n}" for n, v in scalars]
    return KernelSource(
        in_params=", ".join(params),
        out_params=f"{chain[-1].out_dtype.name} y",
        body="\n".join(lines),
        name="pipeline_" + "_".join(s.name for s in chain)[:50],
        scalars=tuple(v for _, v in scalars),
    )


def unpack_source(
    stored: np.dtype,
    dtype: np.dtype,
    fill_values: Sequence[float],
    scale_factor: float | None,
    add_offset: float | None,
) -> KernelSource:
    """One elementwise kernel that decodes CF-packed elements as
    :meth:`pipeline.ops.cf.Unpacking.apply` does on NumPy, to the bit: each element of
    ``stored`` converted to ``dtype`` (float32 or float64), NaN (NumPy's ``np.nan``, as
    ``y[missing] = np.nan`` stores it) where that value equals one of ``fill_values``, else
    ``value * scale_factor + add_offset``, two separately rounded operations. The fill values,
    scale and offset travel converted to ``dtype``, as NumPy converts a Python scalar against an
    array (NEP 50); a fill value that is text (a v2 ``missing_value`` of text) is equal to no
    number, as NumPy's comparison has it, and is left out. Raises ValueError for another
    ``dtype`` (float16 goes through CuPy's own operations)."""
    if dtype.name not in ("float32", "float64"):
        raise ValueError(f"no unpacking kernel for {dtype}")
    ct = CTYPES[dtype.name]
    bits = "f32" if ct == "float" else "f64"
    nan = (
        "__uint_as_float(0x7fc00000u)"
        if ct == "float"
        else ("__longlong_as_double(0x7ff8000000000000ll)")
    )
    lines = [f"{ct} v = {_convert('x', CTYPES[stored.name], ct)};"]
    names: list[str] = []
    scalars: list[np.generic] = []

    def scalar(prefix: str, value: float) -> str:
        names.append(f"{prefix}{len(names)}")
        scalars.append(np.asarray(value, dtype=dtype)[()])  # type: ignore[arg-type]
        return names[-1]

    numbers = [fv for fv in fill_values if isinstance(fv, (int, float, np.number))]
    hits = [f"pl_eq_{bits}(v, {scalar('f', fv)})" for fv in numbers]  # text equals no number
    lines.append(f"const bool missing = {' || '.join(hits) if hits else 'false'};")
    if scale_factor is not None:
        lines.append(f"v = pl_mul_{bits}(v, {scalar('s', scale_factor)});")
    if add_offset is not None:
        lines.append(f"v = pl_add_{bits}(v, {scalar('o', add_offset)});")
    lines.append(f"y = missing ? {nan} : v;")
    return KernelSource(
        in_params=", ".join([f"{stored.name} x", *(f"{dtype.name} {n}" for n in names)]),
        out_params=f"{dtype.name} y",
        body="\n".join(lines),
        name=f"pipeline_unpack_{stored.name}_{dtype.name}",
        scalars=tuple(scalars),
    )
