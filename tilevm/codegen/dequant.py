"""Low-bit codes to float16/bfloat16 with bit tricks, two values to one 32-bit word.

The generic cast (:mod:`.values`) decodes every element through a float32
helper and rounds it back. For a cast from a type of at most 8 bits to
float16 or bfloat16 the value is known to be representable, so a few integer
operations place the code's bits where the 16-bit format wants them and one
packed float operation fixes the scale; two codes share each instruction as
the two lanes of a ``half2``/``bfloat162`` (element 0 in the low 16 bits).
The recipes are those of FasterTransformer, Marlin and FP6-LLM (see
``notes/dequant.md``); every one is exact.

Integers: a magic exponent. ``0x6400 | u`` is the float16 1024 + u for any
u < 1024, so masking the code into the low bits of a lane under 0x6400 and
subtracting 1024 leaves u. A signed code has its sign bit flipped first (XOR
2^(B-1): offset binary u = q + 2^(B-1)), and 1024 + 2^(B-1) is subtracted
instead. Worked for int3, codes 0b101 (-3) and 0b010 (2):

=======================  ===================  ===========================
step                     32-bit word          lanes (high | low)
=======================  ===================  ===========================
``prmt 0x5410``          ``0x0002_0005``      code 2 | code 5
``lop3 (w & 7) ^ K``     ``0x6406_6401``      1030.0 | 1025.0 (K = 0x6404)
``sub.f16x2 1028``       ``0x4000_C200``      2.0 | -3.0
=======================  ===================  ===========================

bfloat16 has only 7 mantissa bits: ``0x4300 | u`` is 128 + u for u < 128, and
sm_80 has ``fma.rn.bf16x2`` but no bf16 subtract (h * 1 - (128 + offset)).
8-bit codes go through float32 (``0x4B000000 | u`` is 2^23 + u, one float
subtract), and ``prmt 0x7632`` packs the two upper halves, exact because the
values are small integers.

Small floats ``s | e | m`` (E exponent, M mantissa bits, bias 2^(E-1) - 1):
shift the code so the exponent's lowest bit lands on bit 10 (the float16
exponent's), with the sign moved up to bit 15 first, then multiply by
2^(15 - bias). The placed bits read as the value times 2^(bias - 15) (a
subnormal code as a float16 subnormal m * 2^(-14 - M)), and multiplying by a
power of two is exact. Worked for float4_e2m1 (bias 1), code 0b1011 (-1.5):
the sign (bit 3) moves up 5 - E = 3 bits, giving 0b100_0011; shifted left by
10 - M = 9 that is 0x8600 = -1.5 * 2^-14; times 2^14 it is -1.5. E <= 5 fits
float16; with E = 5 (bias 15) the factor is 1 and e5m2 is pure byte placement,
its inf and NaN codes landing on float16's (a NaN keeps its payload). e4m3's
one NaN code (S.1111.111) would place as 480, so lanes above 448 get all ones
below the sign: sign | 0x7FFF, the generic cast's NaN. e5m0 and e5m1 have
finite codes in float16's top exponent, which saturate to 65504 as a cast does.

To bfloat16 a small float goes through the float16 sequence and two exact
``cvt.f32.f16`` (when float16 holds its values), or through float32 bit
placement and a float32 multiply by 2^(127 - bias) (bf16 arithmetic on
subnormal inputs is not relied on).

e4m3 by the hardware. From sm_89 ``cvt.rn.f16x2.e4m3x2`` (and
``cvt.rn.f16x2.e5m2x2``; PTX ISA 8.1 for sm_89, 7.8 for sm_90) converts the two
codes of a 16-bit register to a ``half2``, the low byte to lane 0, exactly
(every e4m3 and e5m2 value is a float16 value); a NaN code gives float16's
canonical NaN 0x7FFF, its sign dropped, where the generic cast keeps it. One
``prmt`` lays the codes out as the bytes c0, c0, c0, c1: ``cvt`` reads the high
half (free: its SASS, ``F2FP.F16.E4M3.UNPACK_B``, takes either half of a
register), and bits 15 and 31 of the same word are the codes' signs, which one
``lop3`` ORs into the result. That changes only NaN lanes; every other lane has
its sign already. Worked for e4m3, codes 0xFF (-NaN) and 0x38 (1.0):

=====================================  ===============  =====================
step                                   32-bit word      lanes (high | low)
=====================================  ===============  =====================
``prmt 0x4000``                        ``0x38FF_FFFF``  high half 0x38FF
``cvt.rn.f16x2.e4m3x2`` (high half)    ``0x3C00_7FFF``  1.0 | NaN
``lop3 h | (w & 0x80008000)``          ``0x3C00_FFFF``  1.0 | -NaN
=====================================  ===============  =====================

SASS instructions a value (NVRTC 13, ptxas, differences against a bare
``prmt``, for sm_89 and sm_90a alike):

==================  ======================  ==========================
cast                before sm_89            from sm_89
==================  ======================  ==========================
e4m3 -> float16     4 (with the NaN test)   1.5
e4m3 -> bfloat16    5.5                     3 (cvt, then as before)
e5m2 -> float16     0.5 (one ``prmt``)      0.5 (placement kept)
e5m2 -> bfloat16    2                       2 (placement kept)
==================  ======================  ==========================

e5m2 keeps its byte placement on every target: ``cvt`` would cost 1.5
instructions a value against 0.5 and buy only the NaN bits (placement keeps a
NaN code's payload, so the result is a NaN of other bits than the generic
cast's sign | 0x7FFF). The primitive takes e5m2 too, and the host tests check
it, should exact NaN bits ever matter more than the instruction.

One CUDA source serves every target, so the choice is made in the C++: the
macro ``TV_F8_CVT`` is 1 where ``__CUDA_ARCH__ >= 890`` (and, for sm_89 itself,
NVRTC is 12.1 or newer: 12.0 writes PTX ISA 8.0) and 0 elsewhere; the host
tests set it, to run both branches. The templates pick a sequence with
``if constexpr``. The ``cvt`` template is instantiated only where picked,
so the PTX for sm_80 never names the instruction ptxas would reject there.

Codes straight from packed words. The sequences above take each code in its
own register, which the view of packed words first cuts out (a shift and a
mask a code). Where a cast's source is such a view of 32-bit words, the CUDA
emitter skips that and reads each pair of codes from the words
(:func:`pairs_from_words`). The packed order (:mod:`tilevm.quant.packing`)
puts the two codes of a pair 16 bits apart for most widths: code 0 in a
word's low half, code 1 in its high half, so the word's lanes already hold
them, S bits up. Any other pair gets one ``prmt`` that copies the bytes
holding its codes into the two lanes. A signed code is read with every top
bit of its word flipped, once a word (offset binary u = q + 2^(B-1)).

For ints the magic number then works at any S with S + B within the mantissa
(10 bits for float16, 7 for bfloat16): one ``lop3`` ``K & (0xFC00FC00 | w)``,
with the immediate K = code mask | the exponent of 2^(10 - S), keeps the
lane's code bits under that exponent, so the lane is 2^(10 - S) + u (bit S
weighs 1), and one ``add.f16x2`` of the immediate -(2^(10 - S) + offset)
leaves the value exactly. The register constant is the same for every pair,
so nothing is rematerialised per pair. A code that lies too high for the
mantissa comes from a funnel shift of its word (one ``shf`` moves both lanes;
the fewest shifts that serve every pair of a word are chosen). Worked for
int4 to float16, word 0x0000_500B (codes -5 and 5 at bits 0 and 12 of the
low half: two pairs' low lanes; their high lanes are 0):

1. flip the top bits, ``w ^ 0x8888_8888``: 0x8888_D883, offset binary
   3 (= -5 + 8) at bit 0 and 5 + 8 = 13 at bit 12;
2. the first pair (S = 0): ``lop3`` with K = 0x640F_640F gives 0x6408_6403,
   the lanes 1024 + 8 and 1024 + 3; ``add.f16x2`` of -(1024 + 8) gives
   0x0000_C500, the lanes 0.0 and -5.0;
3. the second pair (S = 12 is too high: shifted right by 8, S = 4) gives
   1024 / 16 + 13 = 77 in its low lane, minus (64 + 8): 5.0.

Per pair that is 2 instructions (3 with a ``prmt``), plus a shift and a flip
now and then; the generic path first cuts each code out of the words (about
7). Before the packed order and the per-S magic, every pair took a ``prmt``
and a pair whose codes were not at bit 0 an fma with a constant register.
In the decode GEMM's compute (the blocks holding its 32 HMMA a 64 x 64 tile
and warp; NVRTC 13, sm_90a, float16) that cut the SASS from 342 to 254
instructions for uint1, 338 to 266 for int2, 386 to 324 for int3, 328 to 280
for int4 and 519 to 455 for float4_e2m1.

1-bit codes can do better than a cast: a code has two values, so a kernel
that knows them (the GEMM computes both once a group row and column, with the
arithmetic the wider codes use per weight) picks one with ``where``, and
lowering turns that into bit moves that serve two lanes at once
(:func:`bit_masks_from_words`). A left shift takes a pair's codes to the top
bits of two bytes; one ``prmt`` with bit 3 of its selector nibbles set copies
each of those bits through a whole lane, and one ``lop3`` (LUT ``0xCA``: mask
? a : b) takes each lane from the one value or the other. One shifted word
serves two pairs (4 byte tops), so a pair costs 2 instructions and a shift
every other pair, where the cast, zero point and scale cost 3 or 4. Worked for
pair 6 of a word (codes at bits 6 and 22), word 0x0040_0000 (code 0 clear,
code 1 set), values a = 0x3C00 (1.0) and b = 0xBC00 (-1.0):

===========================  ===============  ===========================
step                         32-bit word      lanes (high | low)
===========================  ===============  ===========================
``shl 1``                    ``0x0080_0000``  byte 2's top bit set
``prmt 0xAA88``              ``0xFFFF_0000``  sign of byte 2 | of byte 0
``lop3 0xCA`` with a, b      ``0x3C00_BC00``  1.0 | -1.0
===========================  ===============  ===========================

In the decode GEMM that cut the SASS of uint1 with zero points from 290 to 191
instructions a tile and warp at 8 rows, and from 303 to 207 at 16.

The sequences are C++ templates over a few primitives, ``tv_prmt``,
``tv_lop3``, the packed half operations, ``tv_fmul_rn`` and
``tv_cvt_f16x2_f8x2_hi``: inline PTX on the device; the host tests
(``tests/codegen_host.py``) give them exact C definitions and check every code
of every type against ``DataType.decode``, in both branches.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..dtypes import DataType, is_f16
from ..passes.select_instructions import KINDS, fast_cast_kind
from .prelude import SNIPPETS, Prelude, Snippet


def cast_pair(kind: str, src: DataType, c0: str, c1: str, pre: Prelude) -> str:
    """The C expression (a ``tv_u32``) of the two 16-bit results for the code elements c0, c1."""
    assert kind in KINDS, kind
    pre.use("dequant")
    if kind.startswith("int"):
        signed = "true" if src.kind == "int" else "false"
        args = f"{signed}" if kind == "int8_bf16" else f"{src.nbits}, {signed}"
    else:
        assert src.exponent_bits is not None and src.mantissa_bits is not None
        args = f"{src.exponent_bits}, {src.mantissa_bits}"
        if kind != "float_bf16":  # SPECIAL as tv_decode_float's: 2 inf and NaN, 1 NaN only
            args += f", {2 if src.has_inf else 1 if src.has_nan else 0}"
    return f"tv_dq_{kind}<{args}>({c0}, {c1})"


# -- the C++ ---------------------------------------------------------------------------------------
def _register(name: str, code: str, *needs: str) -> None:
    assert name not in SNIPPETS, f"prelude helper {name!r} registered twice"
    SNIPPETS[name] = Snippet(code.strip("\n"), needs)


_FN = "__device__ __forceinline__"

_register(
    "dq_ops",
    f"""
// Byte permute, 3-input logic and packed half arithmetic for the tv_dq_* sequences (inline PTX;
// the host tests define them in C). Lane 0 of a packed word is its low 16 bits.
//
// TV_F8_CVT: whether float8 e4m3 and e5m2 codes go through cvt.rn.f16x2.{{e4m3x2,e5m2x2}}, decided
// per target of the one source (the host tests set it themselves). ptxas takes the instruction
// for sm_90 from PTX ISA 7.8 on, for sm_89 from 8.1 on: CUDA 12.0's NVRTC writes 8.0.
#ifndef TV_F8_CVT
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890 && \\
    (__CUDA_ARCH__ >= 900 || __CUDACC_VER_MAJOR__ * 10 + __CUDACC_VER_MINOR__ >= 121)
#define TV_F8_CVT 1
#else
#define TV_F8_CVT 0
#endif
#endif
#ifdef __CUDA_ARCH__
// Byte i of the result is byte (SEL >> 4i) & 7 of {{b, a}} (a = bytes 0..3), or with bit 3 of
// that nibble set, that byte's top bit copied 8 times.
template <tv_u32 SEL> {_FN} tv_u32 tv_prmt(tv_u32 a, tv_u32 b) {{
  tv_u32 d;
  asm("prmt.b32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "n"(SEL));
  return d;
}}
// Any function of three words, bit by bit: LUT bit (a << 2 | b << 1 | c) is the result bit
// (so a = 0xF0, b = 0xCC, c = 0xAA, and (a & b) ^ c = 0x6A).
template <int LUT> {_FN} tv_u32 tv_lop3(tv_u32 a, tv_u32 b, tv_u32 c) {{
  tv_u32 d;
  asm("lop3.b32 %0, %1, %2, %3, %4;" : "=r"(d) : "r"(a), "r"(b), "r"(c), "n"(LUT));
  return d;
}}
{_FN} tv_u32 tv_hadd2(tv_u32 a, tv_u32 b) {{
  tv_u32 d;
  asm("add.rn.f16x2 %0, %1, %2;" : "=r"(d) : "r"(a), "r"(b));
  return d;
}}
{_FN} tv_u32 tv_hsub2(tv_u32 a, tv_u32 b) {{
  tv_u32 d;
  asm("sub.rn.f16x2 %0, %1, %2;" : "=r"(d) : "r"(a), "r"(b));
  return d;
}}
{_FN} tv_u32 tv_hmul2(tv_u32 a, tv_u32 b) {{
  tv_u32 d;
  asm("mul.rn.f16x2 %0, %1, %2;" : "=r"(d) : "r"(a), "r"(b));
  return d;
}}
{_FN} tv_u32 tv_hfma2(tv_u32 a, tv_u32 b, tv_u32 c) {{
  tv_u32 d;
  asm("fma.rn.f16x2 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
  return d;
}}
// Per lane: NaN loses to a number.
{_FN} tv_u32 tv_hmin2(tv_u32 a, tv_u32 b) {{
  tv_u32 d;
  asm("min.f16x2 %0, %1, %2;" : "=r"(d) : "r"(a), "r"(b));
  return d;
}}
// Per lane: 0xFFFF where a > b, else 0.
{_FN} tv_u32 tv_hgt2_mask(tv_u32 a, tv_u32 b) {{
  tv_u32 d;
  asm("set.gt.u32.f16x2 %0, %1, %2;" : "=r"(d) : "r"(a), "r"(b));
  return d;
}}
{_FN} tv_u32 tv_bfma2(tv_u32 a, tv_u32 b, tv_u32 c) {{
  tv_u32 d;
  asm("fma.rn.bf16x2 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
  return d;
}}
// Bits SH .. SH + 31 of the 64-bit hi:lo (a funnel shift).
template <int SH> {_FN} tv_u32 tv_shf_r(tv_u32 lo, tv_u32 hi) {{
  tv_u32 d;
  asm("shf.r.wrap.b32 %0, %1, %2, %3;" : "=r"(d) : "r"(lo), "r"(hi), "n"(SH));
  return d;
}}
// Not .ftz whatever the compile options: subnormal inputs count.
{_FN} float tv_fmul_rn(float a, float b) {{
  float d;
  asm("mul.rn.f32 %0, %1, %2;" : "=f"(d) : "f"(a), "f"(b));
  return d;
}}
// The two float8 codes in the high half of a (E = 4: e4m3, E = 5: e5m2; byte 2 to lane 0, byte 3
// to lane 1) to float16, exactly; a NaN code gives the canonical NaN 0x7FFF, its sign dropped.
// Only instantiated where TV_F8_CVT (ptxas rejects the instruction before sm_89); reading the
// high half costs nothing (the conversion takes either half of a register).
template <int E> {_FN} tv_u32 tv_cvt_f16x2_f8x2_hi(tv_u32 a) {{
  static_assert(E == 4 || E == 5, "cvt knows e4m3 and e5m2");
  tv_u32 d;
  if constexpr (E == 4) {{
    asm("{{ .reg .b16 lo, hi; mov.b32 {{lo, hi}}, %1; cvt.rn.f16x2.e4m3x2 %0, hi; }}"
        : "=r"(d) : "r"(a));
  }} else {{
    asm("{{ .reg .b16 lo, hi; mov.b32 {{lo, hi}}, %1; cvt.rn.f16x2.e5m2x2 %0, hi; }}"
        : "=r"(d) : "r"(a));
  }}
  return d;
}}
#endif
""",
    "types",
)

_register(
    "dequant",
    f"""
// Low-bit codes c0, c1 (one per register, the code in the low bits) to two float16 or bfloat16
// values in one word, element 0 in the low half. Exact: see tilevm/codegen/dequant.py.
// B-bit ints to float16: lane 0x6400 | u is 1024 + u (u = code, or code ^ 2^(B-1) for a signed
// code: offset binary); subtracting the magic itself leaves the value. The mask also drops an
// int8 element's sign extension (tv_i8).
template <int B, bool SIGNED> {_FN} tv_u32 tv_dq_int_f16(tv_u32 c0, tv_u32 c1) {{
  constexpr tv_u32 MASK = ((1u << B) - 1) * 0x10001u;
  constexpr tv_u32 MAGIC = (0x6400u | (SIGNED ? 1u << (B - 1) : 0u)) * 0x10001u;
  return tv_hsub2(tv_lop3<0x6A>(tv_prmt<0x5410>(c0, c1), MASK, MAGIC), MAGIC);
}}
// The float16 bits of an integer 1 <= n < 2048 (exact).
{_FN} constexpr tv_u32 tv_f16_int_bits(tv_u32 n) {{
  int e = 0;
  while (n >> (e + 1)) ++e;
  return (tv_u32)(e + 15) << 10 | ((n << (10 - e)) & 0x3FFu);
}}
// B-bit ints straight from packed words: w has code 0 at bit S0 of lane 0 and code 1 at bit S1
// of lane 1 (S + B <= 10), as unsigned codes u (a signed code's sign bit flipped, which the
// caller does a word at a time: offset binary, value u - OFF), other bits anything. One lop3
// K & (0xFC00FC00 | w), K the immediate mask | magic, keeps the code's bits under an exponent of
// 10 - S: the lane is 2^(10 - S) + u (bit S weighs 1), and the register constant is the same for
// every pair. Adding -(2^(10 - S) + OFF), an immediate, leaves the value exactly (all terms are
// integers below 2048).
template <int B, int OFF, int S0, int S1> {_FN} tv_u32 tv_dq_int_f16_at(tv_u32 w) {{
  static_assert(S0 + B <= 10 && S1 + B <= 10, "each code must lie in its lane's mantissa");
  constexpr tv_u32 CODE = (1u << B) - 1;
  constexpr tv_u32 K = (CODE << S0 | (25u - S0) << 10) | (CODE << S1 | (25u - S1) << 10) << 16;
  constexpr tv_u32 BIAS = 0x80008000u | tv_f16_int_bits((1024u >> S0) + OFF) |
                          tv_f16_int_bits((1024u >> S1) + OFF) << 16;
  return tv_hadd2(tv_lop3<0xC8>(w, K, 0xFC00FC00u), BIAS);  // 0xC8: b & (c | a)
}}
// B <= 7 bit ints to bfloat16: lane 0x4300 | u is 128 + u; h * 1 - (128 + offset).
template <int B, bool SIGNED> {_FN} tv_u32 tv_dq_int_bf16(tv_u32 c0, tv_u32 c1) {{
  static_assert(B <= 7, "bfloat16 has 7 mantissa bits");
  constexpr tv_u32 MASK = ((1u << B) - 1) * 0x10001u;
  constexpr tv_u32 MAGIC = (0x4300u | (SIGNED ? 1u << (B - 1) : 0u)) * 0x10001u;
  const tv_u32 h = tv_lop3<0x6A>(tv_prmt<0x5410>(c0, c1), MASK, MAGIC);
  return tv_bfma2(h, 0x3F803F80u, MAGIC | 0x80008000u);
}}
// The bfloat16 bits of an integer 1 <= n < 256 with at most 8 significant bits (exact).
{_FN} constexpr tv_u32 tv_bf16_int_bits(tv_u32 n) {{
  int e = 0;
  while (n >> (e + 1)) ++e;
  return (tv_u32)(e + 127) << 7 | ((n << (7 - e)) & 0x7Fu);
}}
// tv_dq_int_f16_at's bfloat16 twin (S + B <= 7): lanes 2^(7 - S) + u, h * 1 - (2^(7 - S) + OFF).
template <int B, int OFF, int S0, int S1> {_FN} tv_u32 tv_dq_int_bf16_at(tv_u32 w) {{
  static_assert(S0 + B <= 7 && S1 + B <= 7, "each code must lie in its lane's mantissa");
  constexpr tv_u32 CODE = (1u << B) - 1;
  constexpr tv_u32 K = (CODE << S0 | (134u - S0) << 7) | (CODE << S1 | (134u - S1) << 7) << 16;
  constexpr tv_u32 BIAS = 0x80008000u | tv_bf16_int_bits((128u >> S0) + OFF) |
                          tv_bf16_int_bits((128u >> S1) + OFF) << 16;
  return tv_bfma2(tv_lop3<0xC8>(w, K, 0xFF80FF80u), 0x3F803F80u, BIAS);
}}
// 8-bit ints to bfloat16 through float32: 0x4B000000 | u is 2^23 + u; the difference is a small
// integer, so its upper half is exact.
template <bool SIGNED> {_FN} tv_u32 tv_dq_int8_bf16(tv_u32 c0, tv_u32 c1) {{
  constexpr tv_u32 MAGIC = 0x4B000000u | (SIGNED ? 0x80u : 0u);
  const float base = __uint_as_float(MAGIC);
  const float f0 = __uint_as_float(tv_lop3<0x6A>(c0, 0xFFu, MAGIC)) - base;
  const float f1 = __uint_as_float(tv_lop3<0x6A>(c1, 0xFFu, MAGIC)) - base;
  return tv_prmt<0x7632>(__float_as_uint(f0), __float_as_uint(f1));
}}
// The same from packed words: byte J0 of a and byte J1 of b (offset binary for SIGNED: the
// words' bytes come in XORed with 0x80). One prmt a value places the byte under the magic.
template <bool SIGNED, int J0, int J1> {_FN} tv_u32 tv_dq_int8_bf16_at(tv_u32 a, tv_u32 b) {{
  constexpr tv_u32 MAGIC = 0x4B000000u;  // bytes 4..7 of the prmt: 0, 0, 0, 0x4B
  const float base = __uint_as_float(MAGIC | (SIGNED ? 0x80u : 0u));
  const float f0 = __uint_as_float(tv_prmt<J0 | 0x7540>(a, MAGIC)) - base;
  const float f1 = __uint_as_float(tv_prmt<J1 | 0x7540>(b, MAGIC)) - base;
  return tv_prmt<0x7632>(__float_as_uint(f0), __float_as_uint(f1));
}}
// e4m3 and e5m2 by the hardware (TV_F8_CVT). p's bytes are c0, c0, c0, c1: its high half is the
// pair cvt reads, and its bits 15 and 31 are the codes' signs, which OR into the result: a no-op
// on every lane but a NaN one, where cvt's 0x7FFF becomes the generic cast's sign | 0x7FFF.
template <int E> {_FN} tv_u32 tv_dq_f8_cvt(tv_u32 c0, tv_u32 c1) {{
  const tv_u32 p = tv_prmt<0x4000>(c0, c1);
  return tv_lop3<0xF8>(tv_cvt_f16x2_f8x2_hi<E>(p), p, 0x80008000u);  // a | (b & c)
}}
template <int E, int M, int SPECIAL>
constexpr bool tv_f8_cvt_format = E == 4 && M == 3 && SPECIAL == 1;  // e4m3 (e5m2: see above)
// Small floats (E <= 5) to float16: the sign to bit 15, the exponent's lowest bit to bit 10, then
// times 2^(15 - BIAS). SPECIAL as tv_decode_float: 1 = e4m3 (the NaN code places above the
// largest value: such lanes become sign | 0x7FFF), 2 = IEEE style (with E = 5, placement keeps
// inf and NaN); E = 5 finite formats saturate their top-exponent codes to 65504. CVT: e4m3
// takes tv_dq_f8_cvt instead (the default: where the target has the instruction).
// tv_dq_float_f16 from w, whose lanes hold the codes PRE bits up and nothing else.
template <int E, int M, int SPECIAL, int PRE> {_FN} tv_u32 tv_dq_float_f16_lanes(tv_u32 w) {{
  static_assert(E <= 5 && M <= 10, "float16 holds the values");
  constexpr int BIAS = (1 << (E - 1)) - 1;
  constexpr int SHIFT = 10 - M;
  static_assert(PRE <= SHIFT, "the shift places the codes");
  if (E < 5) {{  // sign bit E + M up by 5 - E: add 2^(5-E) - 1 times itself
    constexpr tv_u32 SIGN = (0x10001u << (E + M)) << PRE;
    w += (w & SIGN) * ((1u << (5 - E)) - 1);
  }}
  tv_u32 h = w << (SHIFT - PRE);
  if (BIAS != 15) h = tv_hmul2(h, ((tv_u32)(30 - BIAS) << 10) * 0x10001u);
  if (SPECIAL == 1) {{
    constexpr tv_u32 EXP = (1 << E) - 1 - BIAS + 15, MAX = EXP << 10 | ((1u << M) - 2) << (10 - M);
    // NaN lanes get all ones below the sign: sign | 0x7FFF, the generic cast's NaN
    h = tv_lop3<0xF8>(h, tv_hgt2_mask(h & 0x7FFF7FFFu, MAX * 0x10001u), 0x7FFF7FFFu);
  }}
  if (SPECIAL == 0 && E == 5) {{
    // min(|h|, 65504) (inf and NaN lose) | the sign: lop3 0xF8 is a | (b & c)
    h = tv_lop3<0xF8>(tv_hmin2(h & 0x7FFF7FFFu, 0x7BFF7BFFu), h, 0x80008000u);
  }}
  return h;
}}
template <int E, int M, int SPECIAL, bool CVT = TV_F8_CVT>
{_FN} tv_u32 tv_dq_float_f16(tv_u32 c0, tv_u32 c1) {{
  if constexpr (CVT && tv_f8_cvt_format<E, M, SPECIAL>) return tv_dq_f8_cvt<E>(c0, c1);
  constexpr int PRE = M == 2 ? 8 : 0;  // prmt places the codes a byte up for free
  const tv_u32 w = PRE ? tv_prmt<0x4501>(c0, c1) : tv_prmt<0x5410>(c0, c1);
  return tv_dq_float_f16_lanes<E, M, SPECIAL, PRE>(w);
}}
// Small float codes straight from packed words: w has the codes PRE bits up in both lanes
// (PRE <= 10 - M), other bits anything; one lop3 clears those.
template <int E, int M, int SPECIAL, int PRE = 0> {_FN} tv_u32 tv_dq_float_f16_at(tv_u32 w) {{
  constexpr tv_u32 CODES = (((1u << (1 + E + M)) - 1) << PRE) * 0x10001u;
  return tv_dq_float_f16_lanes<E, M, SPECIAL, PRE>(w & CODES);
}}
// Small floats whose values float16 holds, to bfloat16: widen both lanes exactly, keep the tops.
template <int E, int M, int SPECIAL> {_FN} tv_u32 tv_dq_float_bf16_via_f16(tv_u32 c0, tv_u32 c1) {{
  const tv_u32 h = tv_dq_float_f16<E, M, SPECIAL>(c0, c1);
  const float f0 = tv_f16_to_f32((tv_f16)h), f1 = tv_f16_to_f32((tv_f16)(h >> 16));
  return tv_prmt<0x7632>(__float_as_uint(f0), __float_as_uint(f1));
}}
// The same from packed words (tv_dq_float_f16_at's w).
template <int E, int M, int SPECIAL, int PRE = 0>
{_FN} tv_u32 tv_dq_float_bf16_via_f16_at(tv_u32 w) {{
  const tv_u32 h = tv_dq_float_f16_at<E, M, SPECIAL, PRE>(w);
  const float f0 = tv_f16_to_f32((tv_f16)h), f1 = tv_f16_to_f32((tv_f16)(h >> 16));
  return tv_prmt<0x7632>(__float_as_uint(f0), __float_as_uint(f1));
}}
// Every code finite, to float32: the sign to bit 31, the exponent's lowest bit to bit 23, times
// 2^(127 - BIAS) (a subnormal code is a float32 subnormal m * 2^(-126 - M) first).
template <int E, int M> {_FN} tv_u32 tv_dq_float_f32_bits(tv_u32 c) {{
  constexpr int BIAS = (1 << (E - 1)) - 1;
  const tv_u32 bits = (c + (c & (1u << (E + M))) * ((1u << (8 - E)) - 1)) << (23 - M);
  return __float_as_uint(tv_fmul_rn(__uint_as_float(bits), __uint_as_float((254u - BIAS) << 23)));
}}
template <int E, int M> {_FN} tv_u32 tv_dq_float_bf16(tv_u32 c0, tv_u32 c1) {{
  return tv_prmt<0x7632>(tv_dq_float_f32_bits<E, M>(c0), tv_dq_float_f32_bits<E, M>(c1));
}}
""",
    "types",
    "f16",
    "dq_ops",
    "pack",
)

_register(
    "pair_arith",
    f"""
// +, -, * of two float16 (bfloat16) lanes at once, for elementwise tile arithmetic. Each is
// correctly rounded, and so equal to the interpreter's float32 result rounded once to 16 bits:
// float32's 24 significand bits are at least 2 p + 2 (p = 11, 8), so that second rounding is
// the correct rounding of the exact result. Subnormals are kept (no .ftz). sm_80 has no bf16
// add or multiply: fma.rn.bf16x2 with 1 (a * 1 + b, b * -1 + a) or -0 (a * b + -0, which
// keeps the sign of a zero product) rounds once as well. OP: 0 add, 1 sub, 2 mul.
template <int OP> {_FN} tv_u32 tv_h2_arith(tv_u32 a, tv_u32 b) {{
  if constexpr (OP == 0) return tv_hadd2(a, b);
  else if constexpr (OP == 1) return tv_hsub2(a, b);
  else return tv_hmul2(a, b);
}}
template <int OP> {_FN} tv_u32 tv_bf2_arith(tv_u32 a, tv_u32 b) {{
  if constexpr (OP == 0) return tv_bfma2(a, 0x3F803F80u, b);
  else if constexpr (OP == 1) return tv_bfma2(b, 0xBF80BF80u, a);
  else return tv_bfma2(a, b, 0x80008000u);
}}
""",
    "types",
    "dq_ops",
    "pack",
)


# What each sequence that reads codes straight from packed words allows: the highest bit a code
# may reach in its lane (S + B: the magic number's mantissa; small floats, always at bit 0 of
# a byte after a prmt, instead need S <= 10 - M in a word's lanes, the shift that places
# them), and whether a code must sit at bit 0 when a prmt builds its lane.
_FROM_WORDS = {
    "int8_bf16": (8, True),
    "int_f16": (10, False),
    "int_bf16": (7, False),
    "float_f16": (10, True),
    "float_bf16_via_f16": (10, True),
}


@dataclass(frozen=True)
class _PairPlan:
    """Where one pair's lanes come from: ``sources`` (C texts of 32-bit words) and, per lane,
    ``(source index, first byte, S)``; ``in_lanes``: the one source already holds code 0 in
    its low half and code 1 in its high half, S bits up in each (no ``prmt``)."""

    sources: tuple[str, ...]
    lanes: tuple[tuple[int, int, int], ...]
    in_lanes: bool = False


def _word(words: str, word: int, num_words: int, flips: int) -> str:
    """Word ``word`` of the thread's words (the last one past the end), every code's top bit
    flipped when ``flips`` (the code width of a signed type) is given: offset binary."""
    word = min(word, num_words - 1)
    if not flips:
        return f"{words}[{word}]"
    # (codes straddle words when 32 is no multiple of b: positions count from the stream start)
    tops = sum(
        1 << (p - 32 * word)
        for p in range(flips - 1, 32 * num_words, flips)
        if 32 * word <= p < 32 * word + 32
    )
    return f"({words}[{word}] ^ 0x{tops:08X}u)"


def _shift(words: str, word: int, bits: int, num_words: int, flips: int = 0) -> str:
    """Bits ``bits ... bits + 31`` of the thread's bit string from word ``word`` on."""
    lo = _word(words, word, num_words, flips)
    if not bits:
        return lo
    return f"tv_shf_r<{bits}>({lo}, {_word(words, word + 1, num_words, flips)})"


def _lane_shifts(starts, src: DataType, limit: int, zero: bool) -> tuple[int, int, int] | None:
    """For a pair whose codes share a word, code 0 in the low half and code 1 in the high half,
    ``(word, lowest, highest)``: the right shifts of the word (one ``shf`` for both lanes) that
    leave each code low enough in its lane (at bit 0 for the ``zero`` plan). None otherwise."""
    (w0, o0), (w1, o1) = (divmod(p, 32) for p in starts)
    b = src.nbits
    if w0 != w1 or o0 + b > 16 or o1 < 16 or o1 + b > 32:
        return None
    s0, s1 = o0, o1 - 16
    if src.is_float:  # one shift places both lanes, so the codes sit equally high
        assert src.mantissa_bits is not None
        lowest = max(0, s0 - (10 - src.mantissa_bits))  # the placing shift allows S <= 10 - M
        return (w0, lowest, s0) if s0 == s1 else None
    if zero:
        return (w0, s0, s0) if s0 == s1 else None
    return w0, max(0, max(s0, s1) + b - limit), min(s0, s1)


def _stab(intervals: list[tuple[int, int]]) -> list[int]:
    """The fewest points that fall in every closed interval (the greedy by right ends)."""
    points: list[int] = []
    for lo, hi in sorted(intervals, key=lambda iv: iv[1]):
        if not points or points[-1] < lo:
            points.append(hi)
    return points


def _plan_pairs(pairs, src: DataType, kind, at_zero, words, num_words) -> list[_PairPlan | None]:
    """Each pair's plan. A pair whose codes share a word's two halves (:func:`_lane_shifts`)
    reads them from that word's lanes, shifted by one of the fewest shifts a word that serve
    all such pairs of it; any other pair gets the bytes that hold its codes copied into the
    lanes by one ``prmt`` from at most two sources. A signed code is read from its words with
    every top bit flipped (offset binary)."""
    limit = _FROM_WORDS[kind][0]
    flips = src.nbits if src.kind == "int" else 0
    # (the 8-bit ints to bfloat16 place each byte under a float32 magic by themselves)
    spans = [None if kind == "int8_bf16" else _lane_shifts(p, src, limit, at_zero) for p in pairs]
    spans = [s if s is not None and s[1] <= s[2] else None for s in spans]
    chosen = {
        word: _stab([(lo, hi) for w, lo, hi in filter(None, spans) if w == word])
        for word in {s[0] for s in spans if s is not None}
    }
    plans: list[_PairPlan | None] = []
    for starts, span in zip(pairs, spans):
        if span is not None:
            word, lo, hi = span
            shift = next(p for p in chosen[word] if lo <= p <= hi)
            (_, o0), (_, o1) = (divmod(p, 32) for p in starts)
            source = _shift(words, word, shift, num_words, flips)
            lanes = ((0, 0, o0 - shift), (0, 0, o1 - 16 - shift))
            plans.append(_PairPlan((source,), lanes, True))
            continue
        plans.append(_prmt_plan(starts, src.nbits, limit, at_zero, words, num_words, flips))
    return plans


def _prmt_plan(starts, b, limit, at_zero, words, num_words, flips) -> _PairPlan | None:
    """The bytes holding the pair's codes, for one ``prmt`` from at most two sources: the words,
    or funnel shifts of them where a code lies too high in its byte (to bit 0 of a byte)."""
    sources: list[str] = []
    lanes = []
    for p in starts:
        word, offset = divmod(p, 32)
        byte, bit = divmod(offset, 8)
        if (bit == 0 or not at_zero) and bit + b <= limit and offset + b <= 32:
            text = _shift(words, word, 0, num_words, flips)
        else:  # move the code to bit 0 of a byte of the shifted word
            text, bit = _shift(words, word, bit, num_words, flips), 0
        if text not in sources:
            sources.append(text)
        lanes.append((sources.index(text), byte, bit))
    return None if len(sources) > 2 else _PairPlan(tuple(sources), tuple(lanes))


def _plan_cost(plans: list[_PairPlan | None]) -> float:
    """Instructions beyond the 2 a pair always takes (mask, then one float add or fma): one
    ``prmt`` a pair not in its word's lanes, one ``shf`` a distinct shifted source."""
    if any(p is None for p in plans):
        return float("inf")
    shifted = {t for p in plans for t in p.sources if t.startswith("tv_shf_r")}  # type: ignore[union-attr]
    return len(shifted) + sum(not p.in_lanes for p in plans)  # type: ignore[union-attr]


def pairs_from_words(
    kind: str,
    src: DataType,
    words: str,
    pairs: list[tuple[int, int]],
    num_words: int,
    pre: Prelude,
    at_bit_zero: bool | None = None,
    offset: int = 0,
) -> list[str] | None:
    """The 16-bit pairs of codes read straight from a thread's packed 32-bit words (minus
    ``offset``, a whole number an int cast subtracts for free).

    ``pairs`` holds each pair's bit positions in the thread's bit string (word
    i holds bits ``32 i ... 32 i + 31``; ``words`` is the C array of its
    ``num_words`` words). Where a pair's codes share a word, code 0 in its low
    half and code 1 in its high half (how :mod:`tilevm.quant.packing` lays out
    most widths), the word's lanes already hold them: it is taken as it is, or
    shifted right where a code lies too high (one ``shf`` serves every pair of
    that word at that shift). Any other pair gets one ``prmt`` that copies the
    bytes holding its codes into the two lanes, from the words or from funnel
    shifts of them. The ``*_at`` sequence then masks and converts: for ints 2
    instructions a pair, 3 with the ``prmt`` (the generic path first cuts each
    code out of the words: about 7). For ints two plans are priced
    (:func:`_plan_cost`) and the cheaper taken: codes where they lie, or moved
    to bit 0 (``at_bit_zero`` forces one: True, every code at bit 0 of its
    lane or byte; False, codes stay where they fit). None for the sequences
    that cannot (8-bit floats, the small floats that go to bfloat16 through
    float32).
    """
    if kind not in _FROM_WORDS or (src.is_float and src.nbits == 8):
        return None
    assert not offset or kind in ("int_f16", "int_bf16"), "only an int cast subtracts an offset"
    at_zero = _FROM_WORDS[kind][1]
    options = [True] if at_zero else [False, True] if at_bit_zero is None else [at_bit_zero]
    plans = min(
        (_plan_pairs(pairs, src, kind, zero, words, num_words) for zero in options),
        key=_plan_cost,
    )
    if any(p is None for p in plans):
        return None
    pre.use("dequant")
    b = src.nbits
    if kind == "int8_bf16":  # a whole byte a value: each lane from its own source word
        signed = src.kind == "int"
        out = []
        for plan in plans:
            assert plan is not None and not plan.in_lanes
            texts = [plan.sources[i] for i, _, _ in plan.lanes]
            j0, j1 = (byte for _, byte, _ in plan.lanes)
            out.append(
                f"tv_dq_int8_bf16_at<{str(signed).lower()}, {j0}, {j1}>({texts[0]}, {texts[1]})"
            )
        return out
    out = []
    for plan in plans:
        assert plan is not None
        if plan.in_lanes:
            word = plan.sources[0]
        else:
            sel = 0
            for i, (source, byte, bit) in enumerate(plan.lanes):
                low = 4 * source + byte
                high = (
                    low + 1 if bit + b > 8 else low
                )  # the next byte only when the code reaches it
                sel |= (low | high << 4) << (8 * i)
            word = f"tv_prmt<0x{sel:04X}>({plan.sources[0]}, {plan.sources[-1]})"
        s0, s1 = (bit for _, _, bit in plan.lanes)
        if src.is_float:
            assert src.exponent_bits is not None and src.mantissa_bits is not None
            special = 2 if src.has_inf else 1 if src.has_nan else 0
            args = f"{src.exponent_bits}, {src.mantissa_bits}, {special}"
            out.append(f"tv_dq_{kind}_at<{args}{f', {s0}' if s0 else ''}>({word})")
        else:
            off = (1 << (b - 1) if src.kind == "int" else 0) + offset  # the words came flipped
            fn = "tv_dq_int_f16_at" if kind == "int_f16" else "tv_dq_int_bf16_at"
            out.append(f"{fn}<{b}, {off}, {s0}, {s1}>({word})")
    return out


def bit_masks_from_words(words: str, pairs: list[tuple[int, int]], num_words: int) -> list[str]:
    """Per pair of 1-bit codes, the 32-bit mask whose low lane is all ones where code 0 is
    set and whose high lane where code 1 is, read straight from a thread's packed words.

    ``pairs`` holds each pair's bit positions in the thread's bit string (as
    for :func:`pairs_from_words`). A left shift by ``7 - offset % 8`` takes a
    code to the top bit of its byte, and one ``prmt`` whose selector nibbles
    have bit 3 set copies the top bit of the byte it names into a whole byte:
    twice a lane, from at most two shifted words. A shifted word holds four
    codes at the tops of its bytes, so it serves two pairs of the packed order
    (codes 16 bits apart), and any pair that reads it shares it.
    """
    out = []
    for starts in pairs:
        sources: list[str] = []
        nibbles = []
        for p in starts:
            word, offset = divmod(p, 32)
            shift = 7 - offset % 8
            text = f"{words}[{word}]"
            text = f"({text} << {shift})" if shift else text
            if text not in sources:
                sources.append(text)
            nibbles.append(8 | 4 * sources.index(text) | offset // 8)
        sel = nibbles[0] * 0x11 | nibbles[1] * 0x1100
        out.append(f"tv_prmt<0x{sel:04X}>({sources[0]}, {sources[-1]})")
    return out


PAIR_OPS = {"add": 0, "sub": 1, "mul": 2}
"""Elementwise operations on float16/bfloat16 tiles that run two lanes an instruction."""


def arith_pair(op: str, dtype: DataType, a: str, b: str, pre: Prelude) -> str:
    """The C expression (a ``tv_u32``) of ``a op b`` for two packed 16-bit lanes of ``dtype``."""
    pre.use("pair_arith")
    fn = "tv_h2_arith" if is_f16(dtype) else "tv_bf2_arith"
    return f"{fn}<{PAIR_OPS[op]}>({a}, {b})"


__all__ = [
    "KINDS",
    "PAIR_OPS",
    "arith_pair",
    "bit_masks_from_words",
    "cast_pair",
    "fast_cast_kind",
    "pairs_from_words",
]
