"""Run the generated code's C++ helpers on the host, to check their numerics without a GPU.

The helpers in :mod:`tilevm.codegen.prelude` that are plain C++ (no inline
PTX) compile with the host's ``g++`` once a few CUDA intrinsics are given
host definitions. :func:`host_program` builds a program from snippets and a
``main`` body; :func:`run_words` feeds it 32-bit words on stdin and reads
32-bit words back.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import tempfile
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
"""


def have_compiler() -> bool:
    return shutil.which("g++") is not None


@functools.cache
def _workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="tilevm-host-"))


def host_program(name: str, snippets: list[str], main: str) -> Path:
    """Compile ``main`` (the body of ``int main()``) after ``snippets``; returns the binary."""
    source = SHIM + "\n".join(SNIPPETS[s].code for s in snippets) + f"\nint main() {{\n{main}\n}}\n"
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
