"""Register, shared and global layouts and their algebra.

Tensor-core fragment layouts are written in that algebra, and layouts can be
drawn. Pure functions over immutable values; imports nothing from the IR.

Empty until the issue that builds it lands; see DESIGN.md.
"""
