"""The ``@tilevm.kernel`` frontend: Python AST to IR.

Its errors point at the user's source line.

Empty until the issue that builds it lands; see DESIGN.md.
"""
