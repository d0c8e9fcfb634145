"""The CPU interpreter: runs any tilevm program bit-exactly with numpy, no GPU needed.

It depends on ir/ and layouts/ only.

Empty until the issue that builds it lands; see DESIGN.md.
"""
