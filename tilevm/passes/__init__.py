"""The compiler passes, one module a pass, each a function ``Program -> Program``.

``pipeline.py`` lists them in order.

Empty until the issue that builds it lands; see DESIGN.md.
"""
