"""``ArgumentBinder``: a launch's fast argument binding agrees with ``inspect`` on every call."""

from __future__ import annotations

import inspect

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tilevm.lang.kernel import ArgumentBinder


def kernel_like(x, y, n, BLOCK=64, WARPS=4):
    pass


SIGNATURE = inspect.signature(kernel_like)
NAMES = list(SIGNATURE.parameters)


def _inspect(args, kwargs, partial):
    bound = (SIGNATURE.bind_partial if partial else SIGNATURE.bind)(*args, **kwargs)
    bound.apply_defaults()
    return dict(bound.arguments)


@given(
    st.integers(0, 6),
    st.lists(st.sampled_from([*NAMES, "other"]), unique=True, max_size=4),
    st.booleans(),
)
def test_it_binds_like_inspect_or_raises_the_same_error(positional, keywords, partial):
    args = tuple(range(positional))
    kwargs = {k: f"kw-{k}" for k in keywords}
    binder = ArgumentBinder(SIGNATURE)
    try:
        want = _inspect(args, kwargs, partial)
    except TypeError as err:
        with pytest.raises(TypeError) as info:
            binder.bind(args, kwargs, partial)
        assert str(info.value) == str(err)
        return
    got = binder.bind(args, kwargs, partial)
    assert got == want and list(got) == list(want)  # the same values in the same order


def test_the_usual_launch_never_calls_inspect(monkeypatch):
    binder = ArgumentBinder(SIGNATURE)
    monkeypatch.setattr(binder, "signature", None)  # any fall-back would fail here
    assert binder.bind((1, 2, 3), {"WARPS": 8}) == {"x": 1, "y": 2, "n": 3, "BLOCK": 64, "WARPS": 8}
    assert binder.bind((1,), {"n": 3}, partial=True) == {"x": 1, "n": 3, "BLOCK": 64, "WARPS": 4}
