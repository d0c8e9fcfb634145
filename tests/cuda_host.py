"""Run a kernel's generated CUDA C++ on the host: every thread of a block as a fiber.

NVRTC proves the generated code compiles; the interpreter proves the *program*
computes the right thing. Neither runs the generated code itself: its
indexing, masks, vector accesses, shared-memory plan, barriers and the way it
feeds the warp-wide instructions. This harness does, without a GPU. The
source :func:`tilevm.codegen.emit_cuda` made is compiled by ``g++`` into a
shared library, with

- the helpers that hold inline PTX (conversions, ``mma.sync``,
  ``ldmatrix``, ``cp.async``) replaced by host definitions written from the
  PTX ISA's descriptions (not from tilevm's layouts, so that a shared mistake
  does not hide), and the dequantisation PTX of :mod:`codegen_host`;
- each thread of a block a ``ucontext`` fiber on one OS thread, switched at
  ``__syncthreads`` and at the warp-wide instructions. A warp-wide
  instruction gathers the operands of the warp's 32 lanes, as the hardware
  does; a barrier that not every live thread reaches is reported as a
  deadlock, not a hang;
- ``cp.async`` copies queued per thread and done at the
  ``cp.async.wait_group`` that waits for them, so a kernel that reads its
  staged tile before waiting reads stale bytes; shared memory starts each
  block filled with ``0xCD``;
- every tensor copied into a buffer with guard bytes on both sides, checked
  after the launch, so a store outside a tensor is an error;
- the addresses of every ``ldmatrix``, ``cp.async`` and vector load costed
  (:class:`MemoryTraffic`): shared memory in wavefronts by the banks they hit,
  global memory in 32-byte sectors a warp touches, against the ideal. A tile
  whose layout makes accesses conflict, or loads that scatter, compute the
  right thing at a fraction of the speed; this shows it without a GPU.
  Tensors are 256-byte aligned, as CUDA allocates them.

Blocks run one after another, in grid order. Float results of ``mma`` are
summed in double and rounded once (the hardware's order is its own), so they
can differ from the interpreter's float32 sums in the last bits: compare them
with a tolerance, integer results exactly.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import re
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from codegen_host import SHIM, _workdir

from tilevm.codegen import emit_cuda
from tilevm.codegen.prelude import SNIPPETS
from tilevm.interp import storage_dtype
from tilevm.ir.program import Program
from tilevm.passes.pipeline import run_pipeline
from tilevm.runtime.driver import scalar_ctype

GUARD = 4096  # bytes of 0xAB on each side of every tensor
STACK = 512 << 10  # bytes of stack a fiber

# -- host definitions of the helpers that hold PTX -----------------------------------------------
HOST_HELPERS = {
    "f16": r"""
static inline tv_f16 tv_f32_to_f16(float f) { return (tv_f16)tv_host_round16((double)f, 5, 10); }
static inline tv_f16 tv_f32_to_f16_sat(float f) {
  const tv_f16 h = tv_f32_to_f16(f);
  const bool overflow = (h & 0x7FFF) == 0x7C00 && fabsf(f) != __int_as_float(0x7F800000);
  return overflow ? (tv_f16)((h & 0x8000) | 0x7BFF) : h;
}
""",
    "halves": r"""
static inline tv_u16 tv_half(tv_u32 w, int hi) { return (tv_u16)(hi ? w >> 16 : w); }
""",
    "bf16": r"""
static inline float tv_bf16_to_f32(tv_bf16 h) { return __uint_as_float((tv_u32)h << 16); }
static inline tv_bf16 tv_f32_to_bf16(float f) { return (tv_bf16)tv_host_round16((double)f, 8, 7); }
static inline tv_bf16 tv_f32_to_bf16_sat(float f) {
  const tv_bf16 h = tv_f32_to_bf16(f);
  const bool overflow = (h & 0x7FFF) == 0x7F80 && fabsf(f) != __int_as_float(0x7F800000);
  return overflow ? (tv_bf16)((h & 0x8000) | 0x7F7F) : h;
}
""",
    "int_to_f32_odd": r"""
static inline float tv_int_to_f32_odd(long long x) {  // cvt.rz.f32.s64, then the odd bit
  float f = (float)x;
  if ((__int128)f > (__int128)x && x >= 0) f = std::nextafterf(f, 0.0f);
  if ((__int128)f < (__int128)x && x < 0) f = std::nextafterf(f, 0.0f);
  return (long long)f == x ? f : __uint_as_float(__float_as_uint(f) | 1u);
}
""",
    "cp_async": "".join(
        f"static inline void tv_cp_async{n}(void* dst, const void* src, int src_bytes) {{\n"
        f"  tv_host_cp(dst, src, {n}, src_bytes);\n}}\n"
        for n in (16, 8, 4)
    )
    + r"""
static inline void tv_cp_async_commit() { tv_host_cp_commit(); }
template <int N> static inline void tv_cp_async_wait() { tv_host_cp_wait(N); }
""",
    "ldmatrix": "".join(
        f"static inline void tv_ldmatrix_x{n}{'_trans' if t else ''}(tv_u32* d, const void* row) "
        f"{{\n  tv_host_ldmatrix(d, row, {n}, {'true' if t else 'false'});\n}}\n"
        for n in (1, 2, 4)
        for t in (False, True)
    ),
    "tv_mma_f16": r"""
static inline void tv_mma_f16(float* d, const tv_u32* a, const tv_u32* b, const float* c) {
  tv_host_mma_16816(d, a, b, c, 5, 10);
}
""",
    "tv_mma_bf16": r"""
static inline void tv_mma_bf16(float* d, const tv_u32* a, const tv_u32* b, const float* c) {
  tv_host_mma_16816(d, a, b, c, 8, 7);
}
""",
    **{
        f"tv_mma_{x}{y}": f"""
static inline void tv_mma_{x}{y}(int* d, const tv_u32* a, const tv_u32* b, const int* c) {{
  tv_host_mma_16832(d, a, b, c, {str(x == "s8").lower()}, {str(y == "s8").lower()});
}}
"""
        for x in ("s8", "u8")
        for y in ("s8", "u8")
    },
}

# The block's threads as fibers, and the warp-wide instructions over them.
RUNTIME = r"""
#include <ucontext.h>
#include <algorithm>
#include <cstdlib>
#include <vector>
#include <string>
#define __global__
#define __launch_bounds__(n)
#define __shared__ static  // one object for the block's fibers (blocks run one at a time)
struct tv_host_dim3 { unsigned x, y, z; };
static tv_host_dim3 threadIdx, blockIdx, gridDim, blockDim;
static const int warpSize = 32;

enum { TV_READY, TV_AT_BLOCK, TV_AT_WARP, TV_DONE };
struct tv_host_copy { void* dst; const void* src; int size, src_bytes; };
struct tv_host_fiber {
  ucontext_t ctx;
  int state;
  std::vector<std::vector<tv_host_copy>> groups;  // committed cp.async groups, oldest first
  std::vector<tv_host_copy> open;                 // copies not yet committed
  std::vector<tv_host_copy> issued;               // every cp.async, in issue order (banks)
  std::vector<tv_host_copy> loads;                // every watched global vector load, in order
};
static std::vector<tv_host_fiber> tv_fibers;
static char* tv_stacks = nullptr;  // the fibers' stacks, for one launch (pages touched on use)
static ucontext_t tv_scheduler;
static int tv_current = 0;
alignas(16) static unsigned char tv_smem[232448];
static std::string tv_error;

// Shared-memory bank model (as the hardware serves a warp's access): 32 banks of 4-byte words;
// a phase is 32 lanes for accesses of up to 4 bytes, 16 for 8 bytes, 8 for 16 bytes (one
// ldmatrix matrix is one phase of 8 rows); a phase takes as many wavefronts as the most
// distinct words one bank must deliver. Totals per launch: wavefronts and the ideal (phases).
enum { TV_LDMATRIX, TV_CP_ASYNC, TV_GLOBAL_LOAD, TV_GLOBAL_COPY };
static long long tv_wavefronts[4][2];
static void tv_bank_phase(int kind, const unsigned char* const* starts, int lanes, int bytes) {
  int load[32] = {0};
  std::vector<long long> seen;
  for (int i = 0; i < lanes; ++i) {
    if (!starts[i]) continue;
    for (int b = 0; b < (bytes + 3) / 4; ++b) {
      const long long word = (starts[i] - tv_smem) / 4 + b;
      bool again = false;
      for (long long w : seen) again = again || w == word;
      if (again) continue;
      seen.push_back(word);
      ++load[word % 32];
    }
  }
  if (seen.empty()) return;
  int most = 0;
  for (int b = 0; b < 32; ++b) most = load[b] > most ? load[b] : most;
  tv_wavefronts[kind][0] += most;
  tv_wavefronts[kind][1] += 1;
}

// Global memory: a warp's access costs the distinct 32-byte sectors it touches; ideally its
// distinct bytes, packed (for TV_GLOBAL_LOAD / TV_GLOBAL_COPY, sectors against that ideal).
static void tv_sectors(int kind, const unsigned char* const* starts, const int* sizes, int lanes) {
  std::vector<std::uintptr_t> sectors, bytes;
  for (int i = 0; i < lanes; ++i) {
    if (!starts[i] || !sizes[i]) continue;
    for (int b = 0; b < sizes[i]; ++b) bytes.push_back((std::uintptr_t)starts[i] + b);
  }
  if (bytes.empty()) return;
  std::sort(bytes.begin(), bytes.end());
  bytes.erase(std::unique(bytes.begin(), bytes.end()), bytes.end());
  for (std::uintptr_t a : bytes) sectors.push_back(a / 32);
  sectors.erase(std::unique(sectors.begin(), sectors.end()), sectors.end());
  tv_wavefronts[kind][0] += (long long)sectors.size();
  tv_wavefronts[kind][1] += (long long)((bytes.size() + 31) / 32);
}

// A vector load the harness watches (the emitter's loads of 2 to 16 bytes): logged if it is
// from global memory, then done as the kernel wrote it.
template <typename T> static inline const T* tv_host_watch(const void* p) {
  const unsigned char* q = (const unsigned char*)p;
  if (q < tv_smem || q >= tv_smem + sizeof tv_smem) {
    tv_fibers[tv_current].loads.push_back({nullptr, p, (int)sizeof(T), (int)sizeof(T)});
  }
  return (const T*)p;
}

static void tv_yield(int state) {
  tv_fibers[tv_current].state = state;
  swapcontext(&tv_fibers[tv_current].ctx, &tv_scheduler);
}
static inline void __syncthreads() { tv_yield(TV_AT_BLOCK); }
static inline void __threadfence() {}
static inline void tv_warp_sync() { tv_yield(TV_AT_WARP); }
static inline int tv_lane() { return tv_current % 32; }
static inline int tv_warp_base() { return tv_current - tv_current % 32; }
template <typename T> static inline T atomicAdd(T* p, T v) {
  const T old = *p;
  *p = old + v;
  return old;
}

// Warp-wide exchange: every lane deposits its words, the warp meets, each lane reads what it
// needs, the warp meets again (so no lane overwrites a slot another has yet to read).
static unsigned tv_slots[1024][16];
static const void* tv_ptrs[1024];

template <typename T> static inline T __shfl_xor_sync(unsigned, T v, int mask) {
  static_assert(sizeof(T) <= 8, "shfl of a wide type");
  std::memcpy(tv_slots[tv_current], &v, sizeof(T));
  tv_warp_sync();
  T out;
  std::memcpy(&out, tv_slots[tv_warp_base() + (tv_lane() ^ mask)], sizeof(T));
  tv_warp_sync();
  return out;
}

// ldmatrix.m8n8.x{num}[.trans].b16: lanes 8j..8j+7 give the rows of matrix j; without .trans,
// lane l's word j holds row l/4, columns 2(l%4) and 2(l%4)+1 of matrix j; with .trans,
// column l/4, rows 2(l%4) and 2(l%4)+1 (the lower-indexed element in the low half).
// Whether [p, p + bytes) lies in the block's shared buffer (TV_SMEM_BYTES, what the kernel
// declares) and p is aligned to ``align``; else the launch reports ``what``.
static void tv_check_shared(const void* p, int bytes, int align, const char* what) {
  const long long at = (const unsigned char*)p - tv_smem;
  if (at < 0 || at + bytes > TV_SMEM_BYTES) {
    tv_error = std::string(what) + " outside the " + std::to_string(TV_SMEM_BYTES) +
               " bytes of shared memory the kernel declares, at byte " + std::to_string(at);
  } else if (at % align) {
    tv_error = std::string(what) + " at byte " + std::to_string(at) + ", not " +
               std::to_string(align) + "-byte aligned";
  }
}

static void tv_host_ldmatrix(unsigned* d, const void* row, int num, bool trans) {
  if (tv_lane() < 8 * num) tv_check_shared(row, 16, 16, "an ldmatrix row");
  tv_ptrs[tv_current] = row;
  tv_warp_sync();
  const int l = tv_lane(), base = tv_warp_base();
  if (l == 0) {
    for (int j = 0; j < num; ++j) {
      const unsigned char* rows[8];
      for (int r = 0; r < 8; ++r) rows[r] = (const unsigned char*)tv_ptrs[base + 8 * j + r];
      tv_bank_phase(TV_LDMATRIX, rows, 8, 16);
    }
  }
  for (int j = 0; j < num; ++j) {
    unsigned short e[2];
    for (int h = 0; h < 2; ++h) {
      const int r = trans ? 2 * (l % 4) + h : l / 4, c = trans ? l / 4 : 2 * (l % 4) + h;
      std::memcpy(&e[h], (const char*)tv_ptrs[base + 8 * j + r] + 2 * c, 2);
    }
    d[j] = (unsigned)e[0] | ((unsigned)e[1] << 16);
  }
  tv_warp_sync();
}

// mma.sync.m16n8k16.row.col with 16-bit inputs and float32 accumulators. With g = lane / 4
// and t = lane % 4: A (16 x 16) a0,a1: (g, 2t..2t+1), a2,a3: (g+8, 2t..), a4,a5: (g, 2t+8..),
// a6,a7: (g+8, 2t+8..); B (16 x 8) b0,b1: (2t..2t+1, g), b2,b3: (2t+8..2t+9, g); C and D
// (16 x 8) c0,c1: (g, 2t..2t+1), c2,c3: (g+8, 2t..2t+1).
static void tv_host_mma_16816(float* d, const unsigned* a, const unsigned* b, const float* c,
                              int E, int M) {
  unsigned* s = tv_slots[tv_current];
  for (int i = 0; i < 4; ++i) s[i] = a[i];
  for (int i = 0; i < 2; ++i) s[4 + i] = b[i];
  for (int i = 0; i < 4; ++i) std::memcpy(&s[6 + i], &c[i], 4);
  tv_warp_sync();
  const int base = tv_warp_base(), l = tv_lane();
  auto A = [&](int r, int k) {  // element (r, k) of A, from the lane that holds it
    const int lane = (r % 8) * 4 + (k % 8) / 2, reg = (r >= 8) + 2 * (k >= 8);
    return tv_host_value16((tv_slots[base + lane][reg] >> (16 * (k % 2))) & 0xFFFF, E, M);
  };
  auto B = [&](int k, int n) {
    const int lane = n * 4 + (k % 8) / 2, reg = k >= 8;
    return tv_host_value16((tv_slots[base + lane][4 + reg] >> (16 * (k % 2))) & 0xFFFF, E, M);
  };
  float out[4];
  for (int i = 0; i < 4; ++i) {
    const int r = l / 4 + 8 * (i / 2), n = 2 * (l % 4) + i % 2;
    float acc;
    std::memcpy(&acc, &tv_slots[base + l][6 + i], 4);
    double sum = acc;
    for (int k = 0; k < 16; ++k) sum += A(r, k) * B(k, n);
    out[i] = (float)sum;
  }
  tv_warp_sync();
  for (int i = 0; i < 4; ++i) d[i] = out[i];
}

// mma.sync.m16n8k32.row.col with 8-bit integers and int32 accumulators: A (16 x 32) a0: (g,
// 4t..4t+3), a1: (g+8, 4t..), a2: (g, 4t+16..), a3: (g+8, 4t+16..); B (32 x 8) b0: (4t..4t+3,
// g), b1: (4t+16..4t+19, g); C and D as for m16n8k16.
static void tv_host_mma_16832(int* d, const unsigned* a, const unsigned* b, const int* c,
                              bool sa, bool sb) {
  unsigned* s = tv_slots[tv_current];
  for (int i = 0; i < 4; ++i) s[i] = a[i];
  for (int i = 0; i < 2; ++i) s[4 + i] = b[i];
  for (int i = 0; i < 4; ++i) s[6 + i] = (unsigned)c[i];
  tv_warp_sync();
  const int base = tv_warp_base(), l = tv_lane();
  auto byte = [](unsigned w, int i, bool sig) -> long long {
    const int v = (w >> (8 * i)) & 0xFF;
    return sig && v >= 128 ? v - 256 : v;
  };
  auto A = [&](int r, int k) {
    const int lane = (r % 8) * 4 + (k % 16) / 4, reg = (r >= 8) + 2 * (k >= 16);
    return byte(tv_slots[base + lane][reg], k % 4, sa);
  };
  auto B = [&](int k, int n) {
    const int lane = n * 4 + (k % 16) / 4, reg = k >= 16;
    return byte(tv_slots[base + lane][4 + reg], k % 4, sb);
  };
  int out[4];
  for (int i = 0; i < 4; ++i) {
    const int r = l / 4 + 8 * (i / 2), n = 2 * (l % 4) + i % 2;
    long long sum = (int)tv_slots[base + l][6 + i];
    for (int k = 0; k < 32; ++k) sum += A(r, k) * B(k, n);
    out[i] = (int)(unsigned)(unsigned long long)sum;  // wraps, as the hardware's adder
  }
  tv_warp_sync();
  for (int i = 0; i < 4; ++i) d[i] = out[i];
}

// cp.async: queued, done when a wait_group no longer allows it to be pending.
static void tv_host_cp(void* dst, const void* src, int size, int src_bytes) {
  if ((std::uintptr_t)dst % size || (std::uintptr_t)src % size) {
    tv_error = "cp.async of " + std::to_string(size) + " bytes at a misaligned address";
  }
  tv_check_shared(dst, size, size, "a cp.async destination");
  tv_fibers[tv_current].open.push_back({dst, src, size, src_bytes});
  tv_fibers[tv_current].issued.push_back({dst, src, size, src_bytes});
}

// A warp's accesses of one kind, one instruction at a time: the i-th record of each lane's
// ``log`` is one instruction (every kernel here issues them without divergence); ``cost`` gets
// the 32 lanes' records, nullptr for a lane without one.
template <typename F>
static void tv_each_warp_access(int threads, std::vector<tv_host_copy> tv_host_fiber::*log,
                                F cost) {
  for (int w = 0; w < threads; w += 32) {
    size_t most = 0;
    for (int t = w; t < w + 32 && t < threads; ++t) {
      most = (tv_fibers[t].*log).size() > most ? (tv_fibers[t].*log).size() : most;
    }
    for (size_t i = 0; i < most; ++i) {
      const tv_host_copy* lanes[32] = {nullptr};
      for (int t = w; t < w + 32 && t < threads; ++t) {
        if (i < (tv_fibers[t].*log).size()) lanes[t - w] = &(tv_fibers[t].*log)[i];
      }
      cost(lanes);
    }
  }
}

// The block's watched global loads (sectors), and its cp.async writes into shared memory
// (banks) and reads from global memory (sectors).
static void tv_block_traffic(int threads) {
  tv_each_warp_access(threads, &tv_host_fiber::loads, [](const tv_host_copy* const* lanes) {
    const unsigned char* starts[32] = {nullptr};
    int sizes[32] = {0};
    for (int l = 0; l < 32; ++l) {
      if (lanes[l]) starts[l] = (const unsigned char*)lanes[l]->src, sizes[l] = lanes[l]->size;
    }
    tv_sectors(TV_GLOBAL_LOAD, starts, sizes, 32);
  });
  tv_each_warp_access(threads, &tv_host_fiber::issued, [](const tv_host_copy* const* lanes) {
    const unsigned char* starts[32] = {nullptr};
    const unsigned char* sources[32] = {nullptr};
    int bytes = 0, read[32] = {0};
    for (int l = 0; l < 32; ++l) {
      if (!lanes[l]) continue;
      const tv_host_copy& c = *lanes[l];
      starts[l] = (const unsigned char*)c.dst;
      sources[l] = (const unsigned char*)c.src;
      bytes = c.size;
      read[l] = c.src_bytes < c.size ? c.src_bytes : c.size;
    }
    const int per_phase = bytes <= 4 ? 32 : 128 / bytes;
    for (int p = 0; p < 32; p += per_phase) {
      tv_bank_phase(TV_CP_ASYNC, starts + p, per_phase, bytes);
    }
    tv_sectors(TV_GLOBAL_COPY, sources, read, 32);
  });
}
static void tv_host_cp_commit() {
  tv_host_fiber& f = tv_fibers[tv_current];
  f.groups.push_back(f.open);
  f.open.clear();
}
static void tv_host_cp_wait(int pending) {
  tv_host_fiber& f = tv_fibers[tv_current];
  while ((int)f.groups.size() > pending) {
    for (const tv_host_copy& c : f.groups.front()) {
      std::memset(c.dst, 0, c.size);
      std::memcpy(c.dst, c.src, c.src_bytes < c.size ? c.src_bytes : c.size);
    }
    f.groups.erase(f.groups.begin());
  }
}

static void (*tv_entry)();
static void tv_fiber_main() {
  tv_entry();
  tv_fibers[tv_current].state = TV_DONE;
  swapcontext(&tv_fibers[tv_current].ctx, &tv_scheduler);
}

// One block: run every ready fiber until it yields; release a warp whose live lanes all
// wait at a warp-wide instruction, or the block when every live thread waits at the barrier.
static bool tv_run_block(int threads) {
  tv_fibers.assign(threads, tv_host_fiber());
  for (int t = 0; t < threads; ++t) {
    tv_host_fiber& f = tv_fibers[t];
    getcontext(&f.ctx);
    f.ctx.uc_stack.ss_sp = tv_stacks + (size_t)t * TV_STACK;
    f.ctx.uc_stack.ss_size = TV_STACK;
    f.ctx.uc_link = nullptr;
    makecontext(&f.ctx, tv_fiber_main, 0);
    f.state = TV_READY;
  }
  std::memset(tv_smem, 0xCD, sizeof tv_smem);
  for (;;) {
    bool ran = false;
    for (int t = 0; t < threads; ++t) {
      if (tv_fibers[t].state != TV_READY) continue;
      tv_current = t;
      threadIdx.x = t;
      swapcontext(&tv_scheduler, &tv_fibers[t].ctx);
      ran = true;
    }
    if (ran) continue;
    bool released = false, done = true, at_block = false;
    for (int w = 0; w < threads; w += 32) {
      int waiting = 0, live = 0;
      for (int t = w; t < w + 32 && t < threads; ++t) {
        live += tv_fibers[t].state != TV_DONE;
        waiting += tv_fibers[t].state == TV_AT_WARP;
      }
      if (waiting && waiting == live && live == (threads - w < 32 ? threads - w : 32)) {
        for (int t = w; t < w + 32 && t < threads; ++t) tv_fibers[t].state = TV_READY;
        released = true;
      } else if (waiting) {
        tv_error = "warp " + std::to_string(w / 32) + ": a warp-wide instruction that not all "
                   "32 lanes reach (some exited or wait at a barrier)";
        return false;
      }
    }
    if (released) continue;
    for (int t = 0; t < threads; ++t) {
      done = done && tv_fibers[t].state == TV_DONE;
      at_block = at_block || tv_fibers[t].state == TV_AT_BLOCK;
    }
    if (done) {
      tv_block_traffic(threads);
      return true;
    }
    for (int t = 0; t < threads; ++t) {
      if (tv_fibers[t].state == TV_DONE) {
        tv_error = "__syncthreads that thread " + std::to_string(t) + " never reaches (it exited)";
        return false;
      }
    }
    for (int t = 0; t < threads; ++t) tv_fibers[t].state = TV_READY;
  }
}

// Blocks run one at a time, in the order given: linear indices x + gx (y + gy z).
extern "C" int tv_host_launch(int gx, int gy, int gz, const int* order, char* error,
                              int error_size) {
  tv_stacks = (char*)std::malloc((size_t)TV_THREADS * TV_STACK);
  struct Free {
    ~Free() {
      std::free(tv_stacks);
      tv_stacks = nullptr;
      tv_fibers.clear();
    }
  } free_stacks;
  std::memset(tv_wavefronts, 0, sizeof tv_wavefronts);
  gridDim = {(unsigned)gx, (unsigned)gy, (unsigned)gz};
  blockDim = {(unsigned)TV_THREADS, 1, 1};
  tv_error.clear();
  for (int i = 0; i < gx * gy * gz; ++i) {
    const int b = order[i], x = b % gx, y = b / gx % gy, z = b / (gx * gy);
    blockIdx = {(unsigned)x, (unsigned)y, (unsigned)z};
    const bool ok = tv_run_block(TV_THREADS);
    if (!ok || !tv_error.empty()) {
      const std::string where = "block (" + std::to_string(x) + ", " + std::to_string(y) +
                                ", " + std::to_string(z) + "): " + tv_error;
      std::snprintf(error, error_size, "%s", where.c_str());
      return 1;
    }
  }
  return 0;
}

// The last launch's memory traffic against its ideal: ldmatrix and cp.async shared-memory
// wavefronts, then the global sectors of the watched loads and of the cp.async reads.
extern "C" void tv_host_traffic(long long* out) {
  std::memcpy(out, tv_wavefronts, sizeof tv_wavefronts);
}
"""


@dataclass(frozen=True)
class MemoryTraffic:
    """A launch's memory traffic against its ideal, per kind of access the harness sees the
    addresses of: (cost, ideal), equal when nothing is wasted.

    ``ldmatrix`` and ``cp_async`` are shared-memory wavefronts (the ideal: one a phase);
    ``global_loads`` (the emitter's vector loads of 2 to 16 bytes) and ``global_copies``
    (what cp.async reads) are 32-byte sectors of global memory (the ideal: the warp's
    distinct bytes, packed)."""

    ldmatrix: tuple[int, int]
    cp_async: tuple[int, int]
    global_loads: tuple[int, int]
    global_copies: tuple[int, int]

    @property
    def conflict_free(self) -> bool:
        """No shared-memory bank conflict."""
        return self.ldmatrix[0] == self.ldmatrix[1] and self.cp_async[0] == self.cp_async[1]

    @property
    def coalesced(self) -> bool:
        """No global sector read that a warp's bytes could have shared."""
        pairs = (self.global_loads, self.global_copies)
        return all(cost == ideal for cost, ideal in pairs)


class HostRunError(AssertionError):
    """The emulated kernel deadlocked, misused an instruction or wrote outside a tensor."""


def host_source(
    program: Program,
    defines: Mapping[str, str] | None = None,
    edit: Callable[[str], str] | None = None,
) -> tuple[str, Any]:
    """The host translation unit for ``program`` (run through the pass pipeline), and its
    :class:`~tilevm.codegen.kernel.CudaKernel`. ``edit`` changes the generated source first
    (the harness's own tests break kernels on purpose)."""
    kernel = emit_cuda(run_pipeline(program))
    source = kernel.source if edit is None else edit(kernel.source)
    # the emitter's vector loads, watched (shared ones are told apart by their address)
    source = re.sub(
        r"\*reinterpret_cast<const (tv_u16|tv_u32|tv_b64|tv_b128)\*>\(",
        r"*tv_host_watch<\1>(",
        source,
    )
    for name, host in HOST_HELPERS.items():
        code = SNIPPETS[name].code
        if code in source:
            source = source.replace(code, host.strip("\n"))
    # dq_ops defines its PTX only for the device; the shim gives the host its own
    assert not re.search(r"\basm\b", source.replace(SNIPPETS["dq_ops"].code, "")), (
        "a helper with PTX has no host definition"
    )
    source = re.sub(
        r"(extern )?__shared__ alignas\(16\) unsigned char smem\[\d*\];",
        "unsigned char* const smem = tv_smem;",
        source,
    )
    smem_bytes = kernel.shared_bytes
    args = ", ".join(f"*({p.ctype}*)tv_args[{i}]" for i, p in enumerate(kernel.params))
    entry = (
        f"static void* tv_args[{max(len(kernel.params), 1)}];\n"
        f"static void tv_call() {{ {kernel.name}({args}); }}\n"
        'extern "C" void** tv_host_args() { tv_entry = tv_call; return tv_args; }\n'
    )
    macros = "".join(f"#define {k} {v}\n" for k, v in (defines or {}).items())
    head = (
        f"#define TV_THREADS {kernel.num_threads}\n#define TV_STACK {STACK}\n"
        f"#define TV_SMEM_BYTES {smem_bytes}\n"
    )
    return SHIM + head + RUNTIME + macros + source + entry, kernel


@functools.cache
def _library(source: str) -> ctypes.CDLL:
    digest = hashlib.sha256(source.encode()).hexdigest()[:20]
    lib = _workdir() / f"kernel_{digest}.so"
    if not lib.exists():
        cpp = lib.with_suffix(".cpp")
        cpp.write_text(source)
        done = subprocess.run(
            ["g++", "-O1", "-std=c++17", "-fno-fast-math", "-shared", "-fPIC", "-w"]
            + ["-o", str(lib), str(cpp)],
            capture_output=True,
            text=True,
        )
        if done.returncode:
            raise AssertionError(f"g++ failed on {cpp}:\n{done.stderr[-4000:]}")
    return ctypes.CDLL(str(lib))


def run_on_host(
    program: Program,
    grid: tuple[int, ...],
    args: Mapping[str, Any],
    defines: Mapping[str, str] | None = None,
    edit: Callable[[str], str] | None = None,
    shuffle: int | None = None,
) -> MemoryTraffic:
    """Launch ``program``'s generated CUDA on ``grid`` on the host; numpy arrays in ``args``
    (by parameter name, in the interpreter's storage types) are written in place. ``defines``
    are macros set before the kernel; ``edit`` see :func:`host_source`. Blocks run in grid
    order (x fastest), or with ``shuffle`` in an order drawn from that seed, as a GPU may
    schedule them. Returns the launch's shared-memory traffic (``ldmatrix`` reads and
    ``cp.async`` writes, in wavefronts)."""
    source, _ = host_source(program, defines, edit)
    lib = _library(source)
    lib.tv_host_args.restype = ctypes.POINTER(ctypes.c_void_p)
    slots = lib.tv_host_args()
    held, buffers = [], []
    for i, param in enumerate(program.params):
        value = args[param.name]
        if param.kind == "pointer":
            array = np.ascontiguousarray(value).view(np.uint8).reshape(-1)
            assert value.dtype == storage_dtype(param.dtype), (param.name, value.dtype)
            size = array.size
            padded = np.empty(size + 2 * GUARD + 256, np.uint8)
            start = GUARD + (-padded.ctypes.data - GUARD) % 256  # aligned as CUDA allocates
            padded[:] = 0xAB
            padded[start : start + size] = array
            buffers.append((param.name, value, padded, start, size))
            pointer = ctypes.c_void_p(padded.ctypes.data + start)
            held.append(pointer)
        else:
            held.append(scalar_ctype(param.dtype)(value))
        slots[i] = ctypes.addressof(held[-1])
    gx, gy, gz = (*grid, 1, 1)[:3]
    error = ctypes.create_string_buffer(512)
    lib.tv_host_launch.argtypes = [ctypes.c_int] * 3 + [
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.c_int,
    ]
    order = np.arange(gx * gy * gz, dtype=np.int32)
    if shuffle is not None:
        np.random.default_rng(shuffle).shuffle(order)
    failed = lib.tv_host_launch(gx, gy, gz, order.ctypes.data_as(ctypes.c_void_p), error, 512)
    if failed:
        raise HostRunError(f"{program.name}: {error.value.decode()}")
    for name, value, padded, start, size in buffers:
        before, after = padded[:start], padded[start + size :]
        if (before != 0xAB).any() or (after != 0xAB).any():
            raise HostRunError(f"{program.name}: a store outside tensor {name!r}")
        np.copyto(value.reshape(-1).view(np.uint8), padded[start : start + size])
    counts = np.zeros(8, np.int64)
    lib.tv_host_traffic(counts.ctypes.data_as(ctypes.c_void_p))
    return MemoryTraffic(*((int(counts[i]), int(counts[i + 1])) for i in range(0, 8, 2)))


def _as_float(array: np.ndarray, dtype) -> np.ndarray:
    """A tensor's values as float64 (16- and 8-bit float storage decoded)."""
    if array.dtype.kind == "f":
        return array.astype(np.float64)
    return np.asarray(dtype.decode(array), np.float64)


def compare(name: str, dtype, interpreted: np.ndarray, emulated: np.ndarray, rtol: float) -> None:
    """The emulated tensor against the interpreter's: integers exactly, floats to ``rtol`` of
    the tensor's largest magnitude (the mma sums in another order)."""
    if not dtype.is_float:
        mismatch = np.flatnonzero(interpreted.reshape(-1) != emulated.reshape(-1))
        if mismatch.size:
            i = mismatch[0]
            raise AssertionError(
                f"{name}: {mismatch.size} elements differ, first at {i}: interpreter "
                f"{interpreted.reshape(-1)[i]}, generated code {emulated.reshape(-1)[i]}"
            )
        return
    a, b = _as_float(interpreted, dtype).reshape(-1), _as_float(emulated, dtype).reshape(-1)
    both_nan = np.isnan(a) & np.isnan(b)
    scale = np.abs(a[np.isfinite(a)]).max(initial=0.0)
    bad = ~both_nan & ~(np.abs(a - b) <= rtol * scale)
    bad &= ~(a == b)  # infinities of one sign
    if bad.any():
        i = np.flatnonzero(bad)[0]
        raise AssertionError(
            f"{name}: {int(bad.sum())} of {a.size} elements differ beyond {rtol} of {scale}, "
            f"first at {i}: interpreter {a[i]}, generated code {b[i]}"
        )


class _Mirrored(list):
    """Names of the programs mirrored, with their launches' bank traffic."""

    def __init__(self):
        super().__init__()
        self.traffic: list[MemoryTraffic] = []


@contextlib.contextmanager
def mirrored_on_host(rtol: float = 2.0**-9, defines: Mapping[str, str] | None = None):
    """Within the block, every launch on the CPU also runs its generated CUDA on the host (on
    copies of the arguments, with the macros ``defines``), compared with the interpreter's
    results tensor by tensor.

    Yields the list of program names mirrored so far; its ``traffic`` holds each launch's
    :class:`MemoryTraffic`, in the same order.
    """
    from tilevm.lang import launch

    interpret = launch.run_on_cpu
    mirrored = _Mirrored()

    def both(kernel, program, grid, values):
        arrays: dict[str, Any] = {}
        for p in kernel.params:
            if p.kind == "pointer":
                array, _ = launch._as_array(
                    kernel, p.name, p.dtype, values[p.name], storage_dtype(p.dtype)
                )
                arrays[p.name] = array.copy()
            elif p.kind == "scalar":
                arrays[p.name] = launch._scalar(kernel, p.name, p.dtype, values[p.name])
        interpret(kernel, program, grid, values)  # first: what it refuses is the test's to see
        mirrored.traffic.append(run_on_host(program, grid, arrays, defines))
        for p in program.params:
            if p.kind == "pointer":
                result, _ = launch._as_array(
                    kernel, p.name, p.dtype, values[p.name], storage_dtype(p.dtype)
                )
                where = f"{program.name} on grid {grid}: tensor {p.name!r}"
                compare(where, p.dtype, result, arrays[p.name], rtol)
        mirrored.append(program.name)

    launch.run_on_cpu = both
    try:
        yield mirrored
    finally:
        launch.run_on_cpu = interpret


__all__ = [
    "HostRunError",
    "MemoryTraffic",
    "compare",
    "host_source",
    "mirrored_on_host",
    "run_on_host",
]
