"""The low-bit GEMM library written as tilevm kernels, exposed as torch custom ops.

Empty until the issue that builds it lands; see DESIGN.md.
"""
