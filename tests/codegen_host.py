"""Run the generated code's C++ helpers on the host, to check their numerics without a GPU.

The helpers in :mod:`tilevm.codegen.prelude` that are plain C++ (no inline
PTX) compile with the host's ``g++`` once a few CUDA intrinsics are given
host definitions. The PTX instructions of the dequantisation sequences
(``prmt``, ``lop3``, packed half arithmetic: the ``dq_ops`` snippet, defined
only for the device) get exact C definitions here, so the ``tv_dq_*``
sequences themselves run on the host. :func:`host_program` builds a program
from snippets and a ``main`` body; :func:`run_words` feeds it 32-bit words on
stdin and reads 32-bit words back.

The device picks some sequences by target (``TV_F8_CVT``: the float8 hardware
conversion from sm_89 on); a host program takes the choice as a macro in
``defines``, so every branch runs here.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from tilevm.codegen.prelude import SNIPPETS

SHIM = r"""
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#define __device__
#define __forceinline__ inline
static inline unsigned __float_as_uint(float f) { unsigned u; std::memcpy(&u, &f, 4); return u; }
static inline float __uint_as_float(unsigned u) { float f; std::memcpy(&f, &u, 4); return f; }
static inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }
static inline long long __float2ll_rn(float x) { return llrintf(x); }

// The PTX the tv_dq_* sequences use ("dq_ops" defines them only under __CUDA_ARCH__), exactly.
// A 16-bit float (E = 5, M = 10: float16; E = 8, M = 7: bfloat16) as a double, and a double
// rounded to one: nearest even, subnormals, overflow to inf, NaN to the canonical 0x7FFF.
static inline double tv_host_value16(unsigned h, int E, int M) {
  const int bias = (1 << (E - 1)) - 1;
  const unsigned e = (h >> M) & ((1u << E) - 1), m = h & ((1u << M) - 1);
  double mag = e == 0 ? std::ldexp((double)m, 1 - bias - M)
                      : std::ldexp((double)(m | (1u << M)), (int)e - bias - M);
  if (e == (1u << E) - 1) mag = m ? NAN : INFINITY;
  return (h >> (E + M)) & 1 ? -mag : mag;
}
static inline unsigned tv_host_round16(double x, int E, int M) {
  if (x != x) return 0x7FFF;
  const int bias = (1 << (E - 1)) - 1;
  const unsigned sign = std::signbit(x) ? 1u << (E + M) : 0u, inf = ((1u << E) - 1) << M;
  const double a = std::fabs(x);
  if (a == 0) return sign;
  if (std::isinf(a)) return sign | inf;
  int e;
  std::frexp(a, &e);  // a = f * 2^e, f in [0.5, 1)
  e = e - 1 < 1 - bias ? 1 - bias : e - 1;
  const double q = std::nearbyint(std::ldexp(a, M - e));  // ties to even
  const double code = (double)(e + bias - 1) * (1 << M) + q;  // q = 2^(M+1) carries over
  return code >= inf ? sign | inf : sign | (unsigned)code;
}
template <typename F>
static inline unsigned tv_host_lanes(unsigned a, unsigned b, unsigned c, F f) {
  return f(a & 0xFFFF, b & 0xFFFF, c & 0xFFFF) | (f(a >> 16, b >> 16, c >> 16) << 16);
}
static inline double tv_host_h(unsigned h) { return tv_host_value16(h, 5, 10); }
template <unsigned SEL> static inline unsigned tv_prmt(unsigned a, unsigned b) {
  const unsigned long long bytes = ((unsigned long long)b << 32) | a;
  unsigned d = 0;
  for (int i = 0; i < 4; ++i) {
    const unsigned s = (SEL >> (4 * i)) & 0xF;
    unsigned byte = (unsigned)(bytes >> (8 * (s & 7))) & 0xFF;
    if (s & 8) byte = byte & 0x80 ? 0xFF : 0;
    d |= byte << (8 * i);
  }
  return d;
}
template <int LUT> static inline unsigned tv_lop3(unsigned a, unsigned b, unsigned c) {
  unsigned d = 0;
  for (int k = 0; k < 8; ++k)
    if ((LUT >> k) & 1) d |= (k & 4 ? a : ~a) & (k & 2 ? b : ~b) & (k & 1 ? c : ~c);
  return d;
}
// Sums and products of two halves are exact in double: one rounding, as the hardware's.
static inline unsigned tv_hadd2(unsigned a, unsigned b) {
  return tv_host_lanes(a, b, 0, [](unsigned x, unsigned y, unsigned) {
    return tv_host_round16(tv_host_h(x) + tv_host_h(y), 5, 10);
  });
}
static inline unsigned tv_hsub2(unsigned a, unsigned b) {
  return tv_host_lanes(a, b, 0, [](unsigned x, unsigned y, unsigned) {
    return tv_host_round16(tv_host_h(x) - tv_host_h(y), 5, 10);
  });
}
static inline unsigned tv_hmul2(unsigned a, unsigned b) {
  return tv_host_lanes(a, b, 0, [](unsigned x, unsigned y, unsigned) {
    return tv_host_round16(tv_host_h(x) * tv_host_h(y), 5, 10);
  });
}
static inline unsigned tv_hfma2(unsigned a, unsigned b, unsigned c) {  // exact in double here
  return tv_host_lanes(a, b, c, [](unsigned x, unsigned y, unsigned z) {
    return tv_host_round16(std::fma(tv_host_h(x), tv_host_h(y), tv_host_h(z)), 5, 10);
  });
}
static inline unsigned tv_hmin2(unsigned a, unsigned b) {  // NaN loses; -0 < +0
  return tv_host_lanes(a, b, 0, [](unsigned x, unsigned y, unsigned) -> unsigned {
    const double u = tv_host_h(x), v = tv_host_h(y);
    if (u != u) return v != v ? 0x7FFF : y;
    if (v != v) return x;
    return u < v ? x : v < u ? y : (x & 0x8000 ? x : y);
  });
}
static inline unsigned tv_hgt2_mask(unsigned a, unsigned b) {
  return tv_host_lanes(a, b, 0, [](unsigned x, unsigned y, unsigned) -> unsigned {
    return tv_host_h(x) > tv_host_h(y) ? 0xFFFF : 0;
  });
}
// fma in double then bfloat16 rounds twice, which is exact where the sequences use it (the
// result has far fewer than 53 significant bits).
static inline unsigned tv_bfma2(unsigned a, unsigned b, unsigned c) {
  return tv_host_lanes(a, b, c, [](unsigned x, unsigned y, unsigned z) {
    const double r = std::fma(tv_host_value16(x, 8, 7), tv_host_value16(y, 8, 7),
                              tv_host_value16(z, 8, 7));
    return tv_host_round16(r, 8, 7);
  });
}
static inline float tv_fmul_rn(float a, float b) { return a * b; }  // SSE: no flush to zero
template <int SH> static inline unsigned tv_shf_r(unsigned lo, unsigned hi) {  // shf.r.wrap
  return (unsigned)((((unsigned long long)hi << 32) | lo) >> (SH & 31));
}
// cvt.rn.f16x2.e4m3x2 (E = 4) and .e5m2x2 (E = 5) of the high half of a: as the PTX ISA orders
// them, the half's low byte to lane 0 and its high byte to lane 1, each value exact in float16
// (e4m3 is OCP's: bias 7, no inf, NaN S.1111.111; e5m2 is IEEE style); a NaN becomes the
// canonical 0x7FFF, sign dropped, as CUDA's own fp8 conversions document it.
static inline double tv_host_f8(unsigned code, int E) {
  const int M = 7 - E, bias = (1 << (E - 1)) - 1;
  const unsigned e = (code >> M) & ((1u << E) - 1), m = code & ((1u << M) - 1);
  double mag = e == 0 ? std::ldexp((double)m, 1 - bias - M)
                      : std::ldexp((double)(m | (1u << M)), (int)e - bias - M);
  if (E == 4 && e == 15 && m == 7) mag = NAN;
  if (E == 5 && e == 31) mag = m ? NAN : INFINITY;
  return code & 0x80 ? -mag : mag;
}
template <int E> static inline unsigned tv_cvt_f16x2_f8x2_hi(unsigned a) {
  const unsigned lo = (a >> 16) & 0xFF, hi = a >> 24;  // tv_host_round16: NaN to 0x7FFF
  return tv_host_round16(tv_host_f8(lo, E), 5, 10) |
         tv_host_round16(tv_host_f8(hi, E), 5, 10) << 16;
}
// cvt.f32.f16, keeping a NaN's payload (a canonical NaN would do as well).
static inline float tv_f16_to_f32(unsigned short h) {
  if ((h & 0x7C00) == 0x7C00 && (h & 0x3FF))
    return __uint_as_float(((h & 0x8000u) << 16) | 0x7F800000u | ((h & 0x3FFu) << 13));
  return (float)tv_host_h(h);
}
"""


def have_compiler() -> bool:
    return shutil.which("g++") is not None


@functools.cache
def _workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="tilevm-host-"))


def host_program(
    name: str, snippets: list[str], main: str, defines: Mapping[str, str] | None = None
) -> Path:
    """Compile ``main`` (the body of ``int main()``) after ``snippets``; returns the binary.

    ``defines`` are macros set before the snippets (``{"TV_F8_CVT": "1"}``).
    """
    macros = "".join(f"#define {k} {v}\n" for k, v in (defines or {}).items())
    code = "\n".join(SNIPPETS[s].code for s in snippets)
    source = SHIM + macros + code + f"\nint main() {{\n{main}\n}}\n"
    cpp = _workdir() / f"{name}.cpp"
    binary = _workdir() / name
    cpp.write_text(source)
    subprocess.run(
        ["g++", "-O1", "-std=c++17", "-fno-fast-math", "-o", str(binary), str(cpp)],
        check=True,
        capture_output=True,
    )
    return binary


def run_words(binary: Path, words: np.ndarray) -> np.ndarray:
    """The binary's 32-bit output words for the 32-bit input ``words``."""
    data = np.ascontiguousarray(words, dtype=np.uint32).tobytes()
    done = subprocess.run([str(binary)], input=data, capture_output=True, check=True)
    return np.frombuffer(done.stdout, dtype=np.uint32)
