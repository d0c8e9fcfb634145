"""CUDA C++ emission from lowered IR.

Inline-PTX helpers live here too: mma, ldmatrix, cp.async, lop3/prmt dequantisation.

Empty until the issue that builds it lands; see DESIGN.md.
"""
