"""A tour of tilevm's data types: quantise a weight row to several formats and pack it.

Run with ``python examples/dtypes_tour.py``. For each format it reports the
round-trip error of a random Gaussian row scaled into the format's range, and
the bytes the dense packing needs.
"""

import numpy as np

import tilevm

rng = np.random.default_rng(0)
row = rng.standard_normal(4096).astype(np.float32)

print(f"{'format':<13} {'bytes':>6} {'rms error':>10}  (row of {row.size} N(0,1) values)")
for name in ["int3", "int4", "uint5", "float4_e2m1", "float5_e2m2", "float6_e3m2", "float8_e4m3"]:
    t = tilevm.dtype(name)
    zero = 0 if t.is_signed else (t.max_value + 1) // 2  # uints store an offset code
    scale = np.abs(row).max() / (t.max_value - zero)  # one absmax scale for the row
    codes = t.encode(row / scale + zero)
    packed = tilevm.pack(codes, t)
    restored = (t.decode(tilevm.unpack(packed, t, row.size)) - zero) * scale
    rms = float(np.sqrt(np.mean((restored - row) ** 2)))
    print(f"{t.name:<13} {packed.size:>6} {rms:>10.4f}")
