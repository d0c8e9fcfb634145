"""The CPU interpreter: runs any tilevm program bit-exactly with numpy, no GPU needed.

It depends on ir/ and layouts/ only. :func:`run` executes a program block by
block; within a block each instruction works on whole tiles at once.

Semantics
---------
- Blocks run one after another, grid dimension 0 fastest; each gets fresh
  shared memory and a fresh scalar environment. ``block_idx(d)`` and
  ``num_blocks(d)`` come from the grid (1 block along a dimension it lacks).
- A register tile is an array of its logical shape holding *values*: float32
  for every float type, int64 for every integer type (both exact). After each
  operation the result is brought back into the tile's type: ints wrap modulo
  2^bits, float16/bfloat16 round to nearest even with overflow to inf,
  float32 is native, narrower floats round to nearest even and saturate.
  ``Cast`` is ``T.decode(T.encode(x))`` (nearest even, saturating).
- ``View`` with the same bit width and the same (or no) layout reinterprets
  each element's code; otherwise it moves each thread's bits exactly as the
  GPU would, using :func:`tilevm.layouts.view_moves` for both tiles' layouts.
- ``Dot`` accumulates in float32 (int64 then wrapped, for ints); ``Reduce``
  sums floats in float32 and ints in int64.
- Global accesses check bounds: masked elements outside the tensor read
  ``other`` (or are not stored); an unmasked one is an error naming the
  instruction, the tensor and the index; so is any element outside the
  argument buffer. Shared memory reads check for a missing
  ``sync_threads`` after a write and for async copies still in flight.
- Errors are :class:`InterpError` starting with ``file:line:``.

Worked example: a 1-D vector add of n = 10 elements in tiles of 4 runs 3
blocks. Block 2 loads offsets ``8 + [0, 1, 2, 3]`` = elements 8..11; 10 and
11 are outside the tensor of shape (10,), so with ``masked=True`` they read
0 and their stores are skipped:

======  ==========  ==========  ===========================
block   elements    in bounds   stored
======  ==========  ==========  ===========================
0       0 1 2 3     all         0 1 2 3
1       4 5 6 7     all         4 5 6 7
2       8 9 10 11   8 9         8 9 (10 and 11 are skipped)
======  ==========  ==========  ===========================

With ``masked=False`` block 2 fails instead: ``kernel.py:7: LoadGlobal:
index (10,) is outside 'x' of shape [10] and the access is not masked``.

A float16 ``x * y`` with ``x = y = 300`` gives inf (90000 overflows, as on
the GPU), while ``cast(90000.0 as float32, float16)`` saturates to 65504.
"""

from .machine import run
from .values import InterpError, storage_dtype

__all__ = ["InterpError", "run", "storage_dtype"]
