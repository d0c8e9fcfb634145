"""On a GPU: the device's own float conversions agree with tilevm's reference encoding."""

from __future__ import annotations

import numpy as np
import pytest

import tilevm

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize(
    ("name", "torch_name"),
    [
        ("float16", "float16"),
        ("bfloat16", "bfloat16"),
        ("float8_e4m3", "float8_e4m3fn"),
        ("float8_e5m2", "float8_e5m2"),
    ],
)
def test_cuda_casts_round_like_encode_inside_the_range(name, torch_name):
    torch = pytest.importorskip("torch")
    t, twin = tilevm.dtype(name), getattr(torch, torch_name)
    gen = torch.Generator(device="cuda").manual_seed(0)
    x = torch.empty(1 << 20, device="cuda").uniform_(-1.0, 1.0, generator=gen)
    x = x * torch.exp2(torch.randint(-20, 20, x.shape, device="cuda", generator=gen).float())
    x = x.clamp(-t.max_value, t.max_value)
    device_codes = x.to(twin).view(torch.int16 if t.nbits == 16 else torch.uint8).cpu().numpy()
    expected = t.encode(x.cpu().numpy())
    np.testing.assert_array_equal(device_codes.astype(np.int64) & ((1 << t.nbits) - 1), expected)
