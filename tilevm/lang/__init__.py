"""The ``@tilevm.kernel`` frontend and the kernel language.

Write a kernel as a Python function over tiles and call the functions of this
module inside it (see :mod:`tilevm.lang.builtins` for the list)::

    import tilevm
    import tilevm.lang as tl

    @tilevm.kernel
    def add(x: tilevm.Ptr[tilevm.float32], y: tilevm.Ptr[tilevm.float32],
            n: tilevm.int32, BLOCK: tilevm.constexpr = 256):
        start = tl.block_idx() * BLOCK
        gx, gy = tl.global_view(x, [n]), tl.global_view(y, [n])
        tl.store(gy, tl.load(gx, [start], [BLOCK]) + tl.load(gy, [start], [BLOCK]), [start])

    add[(n + 255) // 256](x, y, n)     # numpy arrays or CPU tensors: the interpreter

Errors in a kernel raise :class:`KernelCompileError` pointing at the line.
"""

from .builtins import (
    abs,
    alloc_shared,
    annotate_layout,
    arange,
    atomic_add,
    block_idx,
    cast,
    copy_async,
    copy_async_commit,
    copy_async_wait,
    dot,
    exp,
    fence,
    free_shared,
    full,
    global_view,
    load,
    log,
    max,
    maximum,
    min,
    minimum,
    num_blocks,
    permute,
    print,
    range,
    reshape,
    slice,
    sqrt,
    static_range,
    store,
    sum,
    sync,
    trans,
    view,
    where,
    zeros,
)
from .errors import KernelCompileError
from .kernel import Kernel, LaunchError, Ptr, constexpr, func, kernel

__all__ = [
    "Kernel",
    "KernelCompileError",
    "LaunchError",
    "Ptr",
    "abs",
    "alloc_shared",
    "annotate_layout",
    "arange",
    "atomic_add",
    "block_idx",
    "cast",
    "constexpr",
    "copy_async",
    "copy_async_commit",
    "copy_async_wait",
    "dot",
    "exp",
    "fence",
    "free_shared",
    "full",
    "func",
    "global_view",
    "kernel",
    "load",
    "log",
    "max",
    "maximum",
    "min",
    "minimum",
    "num_blocks",
    "permute",
    "print",
    "range",
    "reshape",
    "slice",
    "sqrt",
    "static_range",
    "store",
    "sum",
    "sync",
    "trans",
    "view",
    "where",
    "zeros",
]
