"""Test configuration: `gpu` tests skip without a GPU; CI runs hypothesis deterministically."""

from __future__ import annotations

import functools
import os
import tempfile

import pytest
from hypothesis import settings

# Compiled kernels go to a fresh cache per test session, never the user's own cache.
if "TILEVM_CACHE_DIR" not in os.environ:
    os.environ["TILEVM_CACHE_DIR"] = tempfile.mkdtemp(prefix="tilevm-test-cache-")

# CI runs draw the same examples every time, so a red run is reproducible; locally they vary.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@functools.cache
def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if cuda_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU; none is present")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=os.environ.get("TILEVM_MIRROR_ON_HOST") == "1")
def _mirror_every_launch_on_host():
    """With TILEVM_MIRROR_ON_HOST=1 every interpreter launch of every test also runs its
    generated CUDA on the host and is compared (see cuda_host.py): slow, a check to run by hand
    after a change to the passes or the emitter."""
    from cuda_host import mirrored_on_host

    with mirrored_on_host():
        yield
