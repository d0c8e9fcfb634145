"""torch.nn modules over the ops, such as a drop-in quantised linear layer.

Empty until the issue that builds it lands; see DESIGN.md.
"""
