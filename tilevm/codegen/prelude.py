"""The C++ helpers generated kernels use, each emitted only when a kernel needs it.

Generated code includes no CUDA header (NVRTC has none; see
:mod:`tilevm.runtime.compiler`): fixed-width types are typedefs here,
half-precision values are their raw bits, and conversions, async copies and
tensor-core operations are inline PTX. Every helper reproduces the CPU
interpreter's semantics (:mod:`tilevm.interp.values`), which the comments
state beside the code.

:class:`Prelude` collects the names of the helpers an emitter used; its text
lists them in the order of :data:`SNIPPETS` after their dependencies, so the
same kernel always gets the same prelude.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Snippet:
    code: str
    needs: tuple[str, ...] = ()


SNIPPETS: dict[str, Snippet] = {}


def _snippet(name: str, code: str, *needs: str) -> None:
    assert name not in SNIPPETS, name
    SNIPPETS[name] = Snippet(code.strip("\n"), needs)


# Not static: an unused static function draws a warning; these are inline, one TU anyway.
_FN = "__device__ __forceinline__"

_snippet(
    "types",
    """
typedef unsigned char tv_u8;
typedef signed char tv_i8;
typedef unsigned short tv_u16;
typedef short tv_i16;
typedef unsigned int tv_u32;
typedef long long tv_i64;
typedef unsigned long long tv_u64;
typedef unsigned short tv_f16;   // IEEE binary16, as its bits
typedef unsigned short tv_bf16;  // bfloat16, as its bits
""",
)

_snippet(
    "vectors",
    """
// 8- and 16-byte vectors for ld/st.global.v2/.v4 and shared-memory vector accesses.
struct alignas(8) tv_b64 { tv_u32 w[2]; };
struct alignas(16) tv_b128 { tv_u32 w[4]; };
""",
    "types",
)

_snippet(
    "in_bounds",
    f"""
// 0 <= i < n for a size n >= 0, in one unsigned comparison.
{_FN} bool tv_in(int i, int n) {{ return (unsigned)i < (unsigned)n; }}
""",
)

_snippet(
    "int_division",
    f"""
// Python's // and % on integers: the quotient rounds toward minus infinity.
{_FN} int tv_floordiv(int a, int b) {{
  const int q = a / b, r = a % b;
  return (r != 0 && ((r < 0) != (b < 0))) ? q - 1 : q;
}}
{_FN} long long tv_floordiv(long long a, long long b) {{
  const long long q = a / b, r = a % b;
  return (r != 0 && ((r < 0) != (b < 0))) ? q - 1 : q;
}}
{_FN} int tv_mod(int a, int b) {{
  const int r = a % b;
  return (r != 0 && ((r < 0) != (b < 0))) ? r + b : r;
}}
{_FN} long long tv_mod(long long a, long long b) {{
  const long long r = a % b;
  return (r != 0 && ((r < 0) != (b < 0))) ? r + b : r;
}}
""",
)

_snippet(
    "int_shift",
    f"""
// Shifts of exact integers: shifting by 64 or more leaves nothing (or the sign).
{_FN} long long tv_shl(long long a, long long b) {{
  return b >= 64 ? 0 : (long long)((unsigned long long)a << b);
}}
{_FN} long long tv_shr(long long a, long long b) {{ return a >> (b > 63 ? 63 : b); }}
""",
)

_snippet(
    "int_minmax",
    f"""
template <typename T> {_FN} T tv_min(T a, T b) {{ return b < a ? b : a; }}
template <typename T> {_FN} T tv_max(T a, T b) {{ return a < b ? b : a; }}
template <typename T> {_FN} T tv_abs(T a) {{ return a < 0 ? -a : a; }}
{_FN} long long tv_clamp(long long x, long long lo, long long hi) {{
  return x < lo ? lo : (x > hi ? hi : x);
}}
""",
)

_snippet(
    "sext",
    f"""
// The value of a B-bit two's-complement code.
template <int B> {_FN} int tv_sext(tv_u32 code) {{ return (int)(code << (32 - B)) >> (32 - B); }}
""",
    "types",
)

_snippet(
    "float_minmax",
    f"""
// numpy's minimum/maximum: NaN in either operand gives NaN.
{_FN} float tv_fmin(float a, float b) {{ return (a != a || a < b) ? a : b; }}
{_FN} float tv_fmax(float a, float b) {{ return (a != a || a > b) ? a : b; }}
""",
)

_snippet(
    "float_division",
    f"""
// numpy's floor_divide and mod on float32: the remainder takes the divisor's sign.
{_FN} float tv_fmod_py(float a, float b) {{
  float r = fmodf(a, b);
  if (r != 0.0f) {{
    if ((b < 0.0f) != (r < 0.0f)) r += b;
  }} else {{
    r = copysignf(0.0f, b);
  }}
  return b == 0.0f ? fmodf(a, b) : r;
}}
{_FN} float tv_ffloordiv(float a, float b) {{
  if (b == 0.0f) return a / b;
  const float m = fmodf(a, b);
  float d = (a - m) / b;
  if (m != 0.0f && ((b < 0.0f) != (m < 0.0f))) d -= 1.0f;
  if (d == 0.0f) return copysignf(0.0f, a / b);
  float f = floorf(d);
  if (d - f > 0.5f) f += 1.0f;
  return f;
}}
""",
)

_snippet(
    "f16",
    f"""
// float16 <-> float32. Arithmetic rounds to nearest even and overflows to inf (cvt.rn);
// a cast saturates finite values to +-65504 and keeps inf.
{_FN} float tv_f16_to_f32(tv_f16 h) {{
  float f;
  asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
  return f;
}}
{_FN} tv_f16 tv_f32_to_f16(float f) {{
  tv_f16 h;
  asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
  return h;
}}
{_FN} tv_f16 tv_f32_to_f16_sat(float f) {{
  const tv_f16 h = tv_f32_to_f16(f);
  const bool overflow = (h & 0x7FFF) == 0x7C00 && fabsf(f) != __int_as_float(0x7F800000);
  return overflow ? (tv_f16)((h & 0x8000) | 0x7BFF) : h;
}}
""",
    "types",
)

_snippet(
    "bf16",
    f"""
// bfloat16 <-> float32 (the same rules as float16; the top 16 bits of a float32).
{_FN} float tv_bf16_to_f32(tv_bf16 h) {{ return __uint_as_float((tv_u32)h << 16); }}
{_FN} tv_bf16 tv_f32_to_bf16(float f) {{
  tv_bf16 h;
  asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(h) : "f"(f));
  return h;
}}
{_FN} tv_bf16 tv_f32_to_bf16_sat(float f) {{
  const tv_bf16 h = tv_f32_to_bf16(f);
  const bool overflow = (h & 0x7FFF) == 0x7F80 && fabsf(f) != __int_as_float(0x7F800000);
  return overflow ? (tv_bf16)((h & 0x8000) | 0x7F7F) : h;
}}
""",
    "types",
)

_snippet(
    "small_float",
    f"""
// Floats of at most 8 bits: sign, E exponent bits, M mantissa bits, bias 2^(E-1) - 1, held
// as their code. SPECIAL: 0 every code finite, 1 e4m3-style (one NaN code, no inf),
// 2 IEEE-style (inf and NaN in the top exponent).
template <int E, int M, int SPECIAL> {_FN} float tv_decode_float(tv_u32 code) {{
  constexpr int BIAS = (1 << (E - 1)) - 1;
  const tv_u32 e = (code >> M) & ((1u << E) - 1);
  const tv_u32 m = code & ((1u << M) - 1);
  // Subnormals are m * 2^(1 - BIAS - M); normal codes move their fields into a float32.
  float mag = e == 0 ? (float)m * __uint_as_float((tv_u32)(128 - BIAS - M) << 23)
                     : __uint_as_float(((e + 127 - BIAS) << 23) | (m << (23 - M)));
  const bool top = e == (1u << E) - 1;
  if (SPECIAL == 2 && top) mag = m == 0 ? __int_as_float(0x7F800000) : __int_as_float(0x7FFFFFFF);
  if (SPECIAL == 1 && top && m == (1u << M) - 1) mag = __int_as_float(0x7FFFFFFF);
  return ((code >> (E + M)) & 1) ? -mag : mag;
}}
// The code of x rounded to nearest, ties to even; finite values beyond the largest saturate
// to it. ARITH (IEEE-style formats only): values from max + ulp/2 on become inf, as
// arithmetic rounds. NaN becomes the NaN code, or 0 in a format without NaN (the
// interpreter raises there).
template <int E, int M, int SPECIAL, bool ARITH> {_FN} tv_u32 tv_encode_float(float x) {{
  constexpr int BIAS = (1 << (E - 1)) - 1;
  constexpr tv_u32 INF_CODE = ((1u << E) - 1) << M;
  constexpr tv_u32 MAX_CODE = SPECIAL == 0 ? (1u << (E + M)) - 1
                            : SPECIAL == 1 ? (1u << (E + M)) - 2 : INF_CODE - 1;
  constexpr int EMAX = (int)(MAX_CODE >> M) - BIAS;
  constexpr tv_u32 MAX_MANT = (MAX_CODE & ((1u << M) - 1)) << (23 - M);
  const float max_value = __uint_as_float(((tv_u32)(EMAX + 127) << 23) | MAX_MANT);
  const float limit = __uint_as_float(((tv_u32)(EMAX + 127) << 23) | MAX_MANT | (1u << (22 - M)));
  const tv_u32 sign = (__float_as_uint(x) >> 31) << (E + M);
  const float a = fabsf(x);
  if (a != a) return SPECIAL != 0 ? (sign | ((1u << (E + M)) - 1)) : 0u;
  const bool inf = a == __int_as_float(0x7F800000);
  if (SPECIAL == 2 && (inf || (ARITH && a >= limit))) return sign | INF_CODE;
  if (a >= max_value) return sign | MAX_CODE;
  // e = max(floor(log2 a), 1 - BIAS); scaling by 2^(M - e) is exact, rintf rounds ties to even.
  int e = (int)(__float_as_uint(a) >> 23) - 127;
  e = e < 1 - BIAS ? 1 - BIAS : e;
  const tv_u32 q = (tv_u32)rintf(a * __uint_as_float((tv_u32)(127 + M - e) << 23));
  // A significand that rounds up to 2^(M+1) carries into the exponent by itself.
  return sign | ((tv_u32)(e + BIAS - 1) * (1u << M) + q);
}}
""",
    "types",
)

_snippet(
    "float_to_int",
    f"""
// A cast of a float to an integer type [lo, hi]: nearest even, saturating (NaN gives lo;
// the interpreter raises there).
{_FN} long long tv_f32_to_int(float x, long long lo, long long hi) {{
  if (x != x) return lo;
  return x >= (float)hi ? hi : (x <= (float)lo ? lo : __float2ll_rn(x));
}}
""",
)

_snippet(
    "int_to_f32_odd",
    f"""
// An integer as a float32 rounded to odd: rounding that again to a format with at most 22
// significand bits gives the correctly rounded result (no double-rounding error).
{_FN} float tv_int_to_f32_odd(long long x) {{
  float f;
  asm("cvt.rz.f32.s64 %0, %1;" : "=f"(f) : "l"(x));
  return (long long)f == x ? f : __uint_as_float(__float_as_uint(f) | 1u);
}}
""",
    "types",
)

_snippet(
    "pack",
    f"""
// Tensor-core operand registers: two 16-bit or four 8-bit elements, the lowest index in
// the lowest bits.
{_FN} tv_u32 tv_pack2(tv_u16 lo, tv_u16 hi) {{ return (tv_u32)lo | ((tv_u32)hi << 16); }}
{_FN} void tv_unpack2(tv_u16& lo, tv_u16& hi, tv_u32 w) {{
  lo = (tv_u16)w;
  hi = (tv_u16)(w >> 16);
}}
{_FN} tv_u32 tv_pack4(tv_u8 a, tv_u8 b, tv_u8 c, tv_u8 d) {{
  return (tv_u32)a | ((tv_u32)b << 8) | ((tv_u32)c << 16) | ((tv_u32)d << 24);
}}
""",
    "types",
)

_snippet(
    "halves",
    f"""
// Half ``hi`` (0: bits 0..15, 1: bits 16..31) of a word as a 16-bit register, through PTX's
// unpacking mov: ptxas then reads it as the word's half (an operand's .H0/.H1 selector),
// where after a shift it would spend an instruction pairing it again.
{_FN} tv_u16 tv_half(tv_u32 w, int hi) {{
  tv_u16 lo16, hi16;
  asm("mov.b32 {{%0, %1}}, %2;" : "=h"(lo16), "=h"(hi16) : "r"(w));
  return hi ? hi16 : lo16;
}}
""",
    "types",
)

_MMA_BODY = """  asm volatile(
      "mma.sync.aligned.{shape}.row.col.{types} "
      "{{%0, %1, %2, %3}}, {{%4, %5, %6, %7}}, {{%8, %9}}, {{%10, %11, %12, %13}};"
      : "={c}"(d[0]), "={c}"(d[1]), "={c}"(d[2]), "={c}"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]),
        "{c}"(c[0]), "{c}"(c[1]), "{c}"(c[2]), "{c}"(c[3]));"""


def _mma(name: str, shape: str, types: str, acc: str, constraint: str) -> None:
    body = _MMA_BODY.format(shape=shape, types=types, c=constraint)
    signature = f"{_FN} void {name}({acc}* d, const tv_u32* a, const tv_u32* b, const {acc}* c)"
    comment = f"// d = a @ b + c on one {shape} tile of a warp ({types})."
    _snippet(name, f"{comment}\n{signature} {{\n{body}\n}}", "types")


_mma("tv_mma_f16", "m16n8k16", "f32.f16.f16.f32", "float", "f")
_mma("tv_mma_bf16", "m16n8k16", "f32.bf16.bf16.f32", "float", "f")
for _a in ("s8", "u8"):
    for _b in ("s8", "u8"):
        _mma(f"tv_mma_{_a}{_b}", "m16n8k32", f"s32.{_a}.{_b}.s32", "int", "r")

_snippet(
    "cp_async",
    f"""
// Asynchronous global -> shared copies of 4, 8 or 16 bytes (16: .cg, bypassing L1). Bytes
// past src_bytes are zero-filled: a masked copy of elements outside the tensor reads nothing.
{_FN} tv_u32 tv_smem_addr(const void* p) {{ return (tv_u32)__cvta_generic_to_shared(p); }}
{_FN} void tv_cp_async16(void* dst, const void* src, int src_bytes) {{
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;"
               :: "r"(tv_smem_addr(dst)), "l"(src), "r"(src_bytes) : "memory");
}}
{_FN} void tv_cp_async8(void* dst, const void* src, int src_bytes) {{
  asm volatile("cp.async.ca.shared.global [%0], [%1], 8, %2;"
               :: "r"(tv_smem_addr(dst)), "l"(src), "r"(src_bytes) : "memory");
}}
{_FN} void tv_cp_async4(void* dst, const void* src, int src_bytes) {{
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;"
               :: "r"(tv_smem_addr(dst)), "l"(src), "r"(src_bytes) : "memory");
}}
{_FN} void tv_cp_async_commit() {{ asm volatile("cp.async.commit_group;" ::: "memory"); }}
template <int N> {_FN} void tv_cp_async_wait() {{
  asm volatile("cp.async.wait_group %0;" :: "n"(N) : "memory");
}}
""",
    "types",
)

_snippet(
    "swizzle",
    f"""
// XOR of offset bits [BASE + SHIFT, BASE + SHIFT + BITS) into bits [BASE, BASE + BITS).
template <int BITS, int BASE, int SHIFT> {_FN} int tv_swizzle(int o) {{
  return o ^ (((o >> (BASE + SHIFT)) & ((1 << BITS) - 1)) << BASE);
}}
""",
)


def _ldmatrix_helpers() -> str:
    out = []
    for num in (1, 2, 4):
        for trans in ("", "_trans"):
            regs = ", ".join(f"%{j}" for j in range(num))
            outs = ", ".join(f'"=r"(d[{j}])' for j in range(num))
            out.append(
                f"{_FN} void tv_ldmatrix_x{num}{trans}(tv_u32* d, const void* row) {{\n"
                f'  asm volatile("ldmatrix.sync.aligned.m8n8.x{num}{trans.replace("_", ".")}'
                f'.shared.b16 {{{regs}}}, [%{num}];"\n'
                f"               : {outs}\n"
                f'               : "r"((tv_u32)__cvta_generic_to_shared(row)) : "memory");\n'
                "}"
            )
    return "\n".join(out)


_snippet(
    "ldmatrix",
    """
// The warp loads 1, 2 or 4 8x8 matrices of 16-bit elements from shared memory: lane l gives
// the address of row l % 8 of matrix l / 8 (16 contiguous bytes, 16-byte aligned), and word j
// of every lane receives two elements of matrix j, the lower-indexed in the low half: row
// l / 4, columns 2 (l % 4) and 2 (l % 4) + 1; with .trans column l / 4, rows 2 (l % 4) and
// 2 (l % 4) + 1. Every lane of the warp takes part (.sync.aligned).
"""
    + _ldmatrix_helpers(),
    "types",
)


class Prelude:
    """The helpers one kernel uses; :meth:`text` emits them with their dependencies."""

    def __init__(self) -> None:
        self._used: set[str] = set()

    def use(self, *names: str) -> None:
        for name in names:
            assert name in SNIPPETS, f"unknown prelude helper {name!r}"
            if name not in self._used:
                self._used.add(name)
                self.use(*SNIPPETS[name].needs)

    @property
    def used(self) -> tuple[str, ...]:
        """The helpers used, with their dependencies, in emission order."""
        return tuple(name for name in SNIPPETS if name in self._used)

    def text(self) -> str:
        return "\n\n".join(SNIPPETS[name].code for name in self.used)


__all__ = ["SNIPPETS", "Prelude", "Snippet"]
