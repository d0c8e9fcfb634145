"""NVRTC compilation, module loading, kernel launch, the compile cache and the autotuner.

So far it holds :mod:`tilevm.runtime.nvrtc`, which finds NVRTC through
cuda-python; the rest lands with the CUDA backend (see DESIGN.md).
"""
