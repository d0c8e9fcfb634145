"""The program representation: tensors, instructions, statements and scalar expressions.

Also its builder, printer and verifier.

Empty until the issue that builds it lands; see DESIGN.md.
"""
