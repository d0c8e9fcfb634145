"""``quant_matmul``: x @ dequantised(W)^T for weights of any 1-8 bit type, as a torch custom op.

:func:`quant_matmul` checks its arguments, flattens ``x`` to ``[M, K]`` and
calls the custom op ``torch.ops.tilevm.quant_matmul``, registered with
``torch.library`` so that ``torch.compile`` traces through it without a graph
break (a fake implementation gives the output's shape) and CUDA graphs can
capture it. CUDA tensors run the kernels of :mod:`.qgemm` on the GPU; CPU
tensors run the same kernels on the interpreter.

The launch depends on M (:func:`choose_config`):

- M <= 16 (decode): :data:`~.qgemm.GEMM`, blocks of up to four warps side by
  side, 8 rows (the mma's operands swapped) up to M = 8 and 16 above; the k
  tiles are split over ``splits`` blocks so that enough weight bytes are in
  flight, and the last block of each output tile sums the fp32 partials in a
  fixed order (per-tile counters, kept at 0 between launches, see
  :func:`_counters`);
- larger M (prefill): :data:`~.qgemm.GEMM_TC`, x staged in shared memory, a
  grid of warps; its tile shape is one of :data:`PREFILL_CONFIGS`, chosen by
  :mod:`tilevm.autotune` per GPU and per (M, N, K) bucket, weight type and
  group (``TILEVM_AUTOTUNE=0``, the CPU and CUDA graph capture of an untuned
  shape use the first). The k tiles are split only when the default tile
  shape leaves the device short of blocks.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import torch

from .. import dtypes
from ..autotune import Autotuner, enabled, next_power_of_two
from ..quant import TILE_K, TILE_N, QuantizedWeight
from .qgemm import GEMM, GEMM_TC, MMA_N, k_tiles_per_split

ACTIVATION_DTYPES = {torch.float16: dtypes.float16, torch.bfloat16: dtypes.bfloat16}


@dataclass(frozen=True)
class Config:
    """One launch of the GEMM: rows per block, warps, k-splits, and which kernel.

    ``warps`` warps side by side along n own 64 columns each. The decode kernel
    (``prefill=False``) has one row of warps and reads its k split from the grid;
    the prefill kernel stacks ``warps_m`` rows of warps along m (each
    ``block_m / warps_m`` rows). Both stage x in shared memory.
    """

    block_m: int
    warps: int
    splits: int
    k_tiles_per_split: int
    prefill: bool = False
    warps_m: int = 1

    @property
    def num_warps(self) -> int:
        return self.warps * self.warps_m


@functools.cache
def _sm_count(device: torch.device) -> int:
    if device.type != "cuda":
        return 1
    return torch.cuda.get_device_properties(device).multi_processor_count


DECODE_ROWS = 16
"""Up to this many rows of x use the decode kernel; more use the prefill kernel."""

SWAP_AB_ROWS = MMA_N
"""Up to this many rows the decode kernel takes blocks of 8 rows, x as the mma's n8 operand (half
the mma of a 16-row block, whose extra rows would be padding); more rows take 16-row blocks."""

PREFILL_CONFIGS = (
    {"BLOCK_M": 64, "WARPS_M": 2, "WARPS_N": 2, "NUM_WARPS": 4},
    {"BLOCK_M": 128, "WARPS_M": 2, "WARPS_N": 4, "NUM_WARPS": 8},
    {"BLOCK_M": 128, "WARPS_M": 4, "WARPS_N": 2, "NUM_WARPS": 8},
)
"""The prefill kernel's tile shapes: 64 x 128 blocks with 32 x 64 warp tiles, then 128 x 256
and 128 x 128 blocks of 8 warps (64 x 64 and 32 x 64 warp tiles)."""

SPLIT_PREFILL_CONFIGS = tuple(c for c in PREFILL_CONFIGS if c["BLOCK_M"] * c["WARPS_N"] < 512)
"""The shapes a split-K prefill launch chooses from: 128 x 256 blocks need every register for
their 64 x 64 warp tiles, and the split epilogue (partials, the last block's sum) tips them
into spilling."""

DECODE_CONFIGS = ({"WARPS": 4}, {"WARPS": 2}, {"WARPS": 1})
"""The decode kernel's block widths: 4, 2 or 1 warps of 64 columns; each launch splits k for
its own block count (:func:`_splits`)."""

TUNING_KEY = ("m", "n", "k", "WTYPE", "GROUP", "HAS_ZEROS")
"""What the best tile shape depends on (m, n and k bucketed to powers of two)."""


@functools.cache
def _tuned_prefill(act: dtypes.DataType, split: bool = False) -> Autotuner:
    """The prefill kernel's autotuner (one for unsplit launches, one for split ones)."""
    configs = SPLIT_PREFILL_CONFIGS if split else PREFILL_CONFIGS
    return Autotuner(GEMM_TC[act], configs, TUNING_KEY)


@functools.cache
def _tuned_decode(act: dtypes.DataType) -> Autotuner:
    """The decode kernel's autotuner over :data:`DECODE_CONFIGS`."""
    return Autotuner(GEMM[act], DECODE_CONFIGS, TUNING_KEY)


IN_FLIGHT_BYTES = 32 << 10
"""Weight bytes the decode kernel aims to have in flight per SM (Little's law: about 3.3 TB/s
times 1 µs of DRAM latency, over 132 SMs, is 25 KiB)."""

MIN_TILES_PER_SPLIT = 4
"""k tiles a split keeps at least, so its loads pipeline and its partial sums stay few."""


REGISTERS_PER_SM = 65536
MAX_BLOCKS_PER_SM = 32


def _decode_registers(block_m: int, nbits: int) -> int:
    """Registers a thread of the decode kernel takes (ptxas for sm_80 and sm_90a, ``bench
    sass``; a test holds the 8-row kernels to it): blocks of 8 rows 72 to 80 for 1 and 2 bits,
    94 to 130 from 3 bits (the small floats between, as ptxas schedules them), counted as
    136; blocks of 16 rows 128 to 166 (counted as 128: a split too many costs less than too
    few)."""
    if block_m > 8:
        return 128
    return 80 if nbits <= 2 else 136


def _blocks_per_sm(prefill: bool, warps: int, nbits: int, block_m: int = 8) -> int:
    """How many blocks per SM the k split aims for.

    A decode warp has two tiles of ``512 b`` bytes in flight (the one it
    computes and the next), so narrow weights need more blocks to keep
    :data:`IN_FLIGHT_BYTES` in flight, as many as the registers let an SM
    hold (:func:`_decode_registers`). For blocks of 4 warps: 2 from 4 bits
    up, 3 for 3 bits, 4 for 2 bits, 6 for 1 bit (8 wanted; 6 of 80 registers
    a thread fit; before, every width was held to 4). The prefill kernel
    computes more than it loads: 2.
    """
    if prefill:
        return 2
    wanted = -(-IN_FLIGHT_BYTES // (warps * 1024 * nbits))
    fit = REGISTERS_PER_SM // (_decode_registers(block_m, nbits) * 32 * warps)
    return max(2, min(wanted, fit, MAX_BLOCKS_PER_SM))


def _splits(
    blocks: int,
    k_tiles: int,
    prefill: bool,
    warps: int,
    nbits: int,
    device: torch.device,
    block_m: int = 8,
) -> int:
    """k splits for ``blocks`` blocks: about :func:`_blocks_per_sm` blocks per SM on a GPU,
    each split keeping at least :data:`MIN_TILES_PER_SPLIT` tiles; none on the CPU. Normalised
    so that no split is empty."""
    splits = 1
    if device.type == "cuda":
        per_sm = _blocks_per_sm(prefill, warps, nbits, block_m)
        wanted = math.ceil(per_sm * _sm_count(device) / blocks)
        splits = max(1, min(k_tiles // MIN_TILES_PER_SPLIT, wanted))
    return -(-k_tiles // k_tiles_per_split(k_tiles, splits))


def choose_config(m: int, n: int, k: int, nbits: int, device: torch.device) -> Config:
    """The launch for an ``[m, k] x [k, n]`` product with ``nbits`` weights on ``device``.

    Up to :data:`DECODE_ROWS` rows: the decode kernel with blocks of 4 warps,
    8 rows up to :data:`SWAP_AB_ROWS` and 16 above (a 16-row block needs about
    130-160 registers a thread: fp32 accumulators, two tiles of packed weights
    in flight and one k step of dequantised ones; an 8-row block 65-130). More
    rows: the prefill kernel in its first tile shape.
    A tuned launch may take another of :data:`DECODE_CONFIGS` or
    :data:`PREFILL_CONFIGS`; decode launches then split for their own width,
    prefill ones keep these splits (:func:`_splits`).
    """
    n_tiles = -(-n // TILE_N)
    k_tiles = -(-k // TILE_K)
    prefill = m > DECODE_ROWS
    if not prefill:
        block_m = MMA_N if m <= SWAP_AB_ROWS else 16
        warps, warps_m = min(DECODE_CONFIGS[0]["WARPS"], n_tiles), 1
    else:
        first = PREFILL_CONFIGS[0]
        block_m, warps, warps_m = first["BLOCK_M"], first["WARPS_N"], first["WARPS_M"]
    blocks = -(-m // block_m) * -(-n_tiles // warps)
    splits = _splits(blocks, k_tiles, prefill, warps, nbits, device, block_m)
    return Config(block_m, warps, splits, k_tiles_per_split(k_tiles, splits), prefill, warps_m)


_COUNTERS: dict[tuple[Any, ...], torch.Tensor] = {}


def _counters(device: torch.device, count: int) -> torch.Tensor:
    """At least ``count`` int32 zeros for the split-K tile counters, kept per device and stream.

    The kernels leave every counter at 0 when they finish, so the tensor is
    zeroed once, when it is made (or grown). One per stream: launches on one
    stream run in order, launches on two streams must not share counters.
    """
    stream = _current_stream()(device.index) if device.type == "cuda" else None
    key = (device, stream)
    have = _COUNTERS.get(key)
    if have is None or have.numel() < count:
        have = _COUNTERS[key] = torch.zeros(max(count, 1024), dtype=torch.int32, device=device)
    return have


@functools.cache
def _current_stream():
    from ..runtime.driver import current_stream_getter

    return current_stream_getter()


_UNREAD: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}


def _unread(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """A float32 and an int32 tensor to pass for the workspace and counters of a launch that does
    not split k (the kernels read neither then)."""
    have = _UNREAD.get(device)
    if have is None:
        have = _UNREAD[device] = (
            torch.empty(1, dtype=torch.float32, device=device),
            torch.empty(1, dtype=torch.int32, device=device),
        )
    return have


def _aligned(t: torch.Tensor) -> torch.Tensor:
    """``t``, or a copy of it where its start is not 16-byte aligned (a view with an offset)."""
    return t.clone() if t.data_ptr() % 16 else t


@dataclass(frozen=True)
class _Plan:
    """A launch worked out once for its shape: the kernel bound to its constants, grid and
    device (:meth:`tilevm.lang.Kernel.prepare`), and how many ways it splits k."""

    launch: Any  # tilevm.lang.launch.PreparedLaunch
    splits: int

    def __call__(self, x, packed, scales, zeros, bias, out, m, n, k) -> None:
        grid = self.launch.grid
        if self.splits > 1:
            work = torch.empty((self.splits, m, n), dtype=torch.float32, device=x.device)
            counters = _counters(x.device, grid[0] * grid[1])
        else:
            work, counters = _unread(x.device)
        zeros = x if zeros is None else zeros  # not read without HAS_ZEROS
        bias = x if bias is None else bias  # not read without HAS_BIAS
        self.launch(x, packed, scales, zeros, bias, out, work, counters, m, n, k, packed.shape[1])


_PLANS: dict[tuple[Any, ...], _Plan] = {}
MAX_PLANS = 4096
"""Launch plans kept (one per device, shape and weight format); the oldest go beyond it."""


def _run(
    x: torch.Tensor,
    packed: torch.Tensor,
    scales: torch.Tensor,
    zeros: torch.Tensor | None,
    bias: torch.Tensor | None,
    wtype: dtypes.DataType,
    group_size: int,
    n: int,
    zero_offset: int,
    cfg: Config | None = None,
) -> torch.Tensor:
    """The op's implementation: checks of alignment, then the launch.

    A shape seen before launches through its :class:`_Plan` (a few
    microseconds of host time); a new one works out its config (tuning it on
    a GPU when the autotuner has no choice yet for its bucket) and, once the
    choice is known, makes the plan. ``cfg`` forces a launch (tests).
    """
    m, k = x.shape
    # The kernels' vector accesses need 16-byte aligned starts (here, not in quant_matmul:
    # torch.compile traces that one, and a traced tensor has no address).
    x = _aligned(x)
    bias = None if bias is None else _aligned(bias)
    # A QuantizedWeight checks its own, but not while torch.compile traces it (no addresses).
    packed, scales = _aligned(packed), _aligned(scales)
    zeros = None if zeros is None else _aligned(zeros)
    out = torch.empty(m, n, dtype=x.dtype, device=x.device)
    if m == 0:
        return out
    key = None
    if cfg is None:
        flags = (zeros is not None, zero_offset, bias is not None)
        key = (x.device, x.dtype, m, n, k, wtype, group_size, *flags, enabled())
        plan = _PLANS.get(key)
        if plan is not None:
            plan(x, packed, scales, zeros, bias, out, m, n, k)
            return out
    plan = _plan(x, packed, scales, zeros, bias, out, wtype, group_size, n, zero_offset, cfg)
    if plan is not None:
        if key is not None:
            if len(_PLANS) >= MAX_PLANS:
                del _PLANS[next(iter(_PLANS))]
            _PLANS[key] = plan
        plan(x, packed, scales, zeros, bias, out, m, n, k)
    return out


def _plan(x, packed, scales, zeros, bias, out, wtype, group_size, n, zero_offset, cfg):
    """The plan of a launch with ``cfg`` (None: the tuned choice, when known); None when the
    autotuner had to choose, in which case it has launched the kernel itself."""
    m, k = x.shape
    act = ACTIVATION_DTYPES[x.dtype]
    tuned = cfg is None
    cfg = cfg or choose_config(m, n, k, wtype.nbits, x.device)
    n_tiles = packed.shape[1]
    k_tiles = packed.shape[0]
    mb = -(-m // cfg.block_m)
    if cfg.k_tiles_per_split != k_tiles_per_split(k_tiles, cfg.splits):
        raise ValueError(
            f"config {cfg}: the kernel splits {k_tiles} k tiles {cfg.splits} ways, "
            f"{k_tiles_per_split(k_tiles, cfg.splits)} a split; k_tiles_per_split says "
            f"{cfg.k_tiles_per_split}"
        )
    types = {"WTYPE": wtype, "GROUP": 0 if group_size == -1 else group_size}
    flags = {
        "HAS_ZEROS": zeros is not None,
        "ZERO_OFFSET": zero_offset,
        "HAS_BIAS": bias is not None,
    }
    if cfg.prefill:
        kernel, fixed = GEMM_TC[act], {}
        flags["PARTIAL"] = cfg.splits > 1
        tuner = _tuned_prefill(act, cfg.splits > 1) if tuned else None
        given = {"BLOCK_M": cfg.block_m, "WARPS_M": cfg.warps_m, "WARPS_N": cfg.warps}
        given["NUM_WARPS"] = cfg.num_warps

        def grid_of(a):  # a tuned tile shape keeps cfg's splits
            return (-(-m // a["BLOCK_M"]), -(-n_tiles // a["WARPS_N"]), cfg.splits)

    else:
        kernel, fixed = GEMM[act], {"BLOCK_M": cfg.block_m}
        tuner = _tuned_decode(act) if tuned else None
        given = {"WARPS": cfg.warps}

        def grid_of(a):  # a tuned block width splits k for its own block count
            blocks = mb * -(-n_tiles // a["WARPS"])
            splits = _splits(blocks, k_tiles, False, a["WARPS"], wtype.nbits, x.device, cfg.block_m)
            return (mb, -(-n_tiles // a["WARPS"]), splits if tuned else cfg.splits)

    chosen = given if tuner is None else _chosen(tuner, x, m, n, k, types, flags)
    if chosen is not None:
        grid = grid_of(chosen)
        launch = kernel.prepare(grid, x.device, **types, **fixed, **chosen, **flags)
        return _Plan(launch, grid[2])
    # Tune (or take the recorded choice) and launch, then remember the choice. The workspace
    # of partial sums and a counter per output tile serve whichever config runs.
    grids = [grid_of(c) for c in tuner.configs]
    most = max(g[2] for g in grids)
    work = torch.empty((most, m, n) if most > 1 else (1,), dtype=torch.float32, device=x.device)
    counters = _counters(x.device, max(g[0] * g[1] for g in grids) if most > 1 else 1)
    head = (
        x,
        packed,
        scales,
        zeros if zeros is not None else x,  # not read without HAS_ZEROS
        bias if bias is not None else x,  # not read without HAS_BIAS
        out,
        work,
        counters,
        m,
        n,
        k,
        n_tiles,
    )
    tuner[grid_of](*head, *types.values(), **fixed, **flags)
    _remember(tuner, x, m, n, k, types, flags)
    return None


# A launch's tuned tile shape, once known: later launches of the bucket skip the autotuner's
# generic argument binding (tens of microseconds of host time a call).
_CHOSEN: dict[tuple[Any, ...], dict[str, Any]] = {}


def _chosen_key(tuner: Autotuner, x: torch.Tensor, m, n, k, types, flags) -> tuple[Any, ...]:
    sizes = tuple(next_power_of_two(v) for v in (m, n, k))
    return (id(tuner), x.device, enabled(), *sizes, *types.values(), flags["HAS_ZEROS"])


def _chosen(tuner: Autotuner, x: torch.Tensor, m, n, k, types, flags) -> dict[str, Any] | None:
    """The remembered shape for this launch's bucket, or None (the autotuner must launch)."""
    return _CHOSEN.get(_chosen_key(tuner, x, m, n, k, types, flags))


def _remember(tuner: Autotuner, x: torch.Tensor, m, n, k, types, flags) -> None:
    """After the autotuner launched: keep its choice for the bucket (the default off the GPU)."""
    if x.device.type == "cuda" and x.device.index != torch.cuda.current_device():
        return  # best_config answers for the current device
    key = dict(m=m, n=n, k=k, **types, HAS_ZEROS=flags["HAS_ZEROS"])
    best = tuner.best_config(**key)
    if best is not None:
        _CHOSEN[_chosen_key(tuner, x, m, n, k, types, flags)] = best


# -- the torch custom op ---------------------------------------------------------------------------
@torch.library.custom_op("tilevm::quant_matmul", mutates_args=())
def _quant_matmul_op(
    x: torch.Tensor,
    packed: torch.Tensor,
    scales: torch.Tensor,
    zeros: torch.Tensor | None,
    bias: torch.Tensor | None,
    wtype: str,
    group_size: int,
    n: int,
    zero_offset: int,
) -> torch.Tensor:
    return _run(x, packed, scales, zeros, bias, dtypes.dtype(wtype), group_size, n, zero_offset)


@_quant_matmul_op.register_fake
def _(x, packed, scales, zeros, bias, wtype, group_size, n, zero_offset):
    return x.new_empty(x.shape[0], n)


# -- the public function ---------------------------------------------------------------------------
def _fail(message: str) -> None:
    raise ValueError(f"quant_matmul: {message}")


def _check(x: Any, qweight: Any, bias: Any) -> None:
    if not isinstance(qweight, QuantizedWeight):
        raise TypeError(
            f"quant_matmul: qweight must be a tilevm.QuantizedWeight; got {type(qweight).__name__}"
        )
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"quant_matmul: x must be a torch tensor; got {type(x).__name__}")
    n, k = qweight.shape
    if x.dtype not in ACTIVATION_DTYPES:
        _fail(f"x must be float16 or bfloat16; got {x.dtype}")
    if x.dtype != qweight.scale_dtype:
        _fail(
            f"x is {x.dtype} but the weight's scales are {qweight.scale_dtype}; quantise with "
            f"scale_dtype={x.dtype} (or cast x)"
        )
    if x.dim() < 1 or x.shape[-1] != k:
        _fail(f"x must have shape [..., {k}] (K = in_features); got {list(x.shape)}")
    if x.device != qweight.device:
        _fail(f"x is on {x.device} but qweight is on {qweight.device}; move one with .to()")
    if bias is not None:
        if not isinstance(bias, torch.Tensor):
            raise TypeError(f"quant_matmul: bias must be a tensor or None; got {type(bias)}")
        if bias.shape != (n,):
            _fail(f"bias must have shape [{n}] (N = out_features); got {list(bias.shape)}")
        if bias.dtype != x.dtype or bias.device != x.device:
            _fail(f"bias must be {x.dtype} on {x.device} like x; got {bias.dtype} on {bias.device}")


def quant_matmul(
    x: torch.Tensor, qweight: QuantizedWeight, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """``x @ qweight.dequantize().T (+ bias)`` with fp32 accumulation, in x's dtype.

    Parameters
    ----------
    x
        ``[..., K]`` float16 or bfloat16, on the weight's device (any strides
        and offset: it is copied when not contiguous or not 16-byte aligned).
    qweight
        A :class:`tilevm.QuantizedWeight` of shape ``[N, K]`` whose scales have
        x's dtype. With act order (``qweight.perm``), x's features are gathered
        into the stored order first.
    bias
        ``[N]`` in x's dtype, or None.

    Returns
    -------
    torch.Tensor
        ``[..., N]`` in x's dtype.
    """
    _check(x, qweight, bias)
    n, k = qweight.shape
    x2 = x.reshape(-1, k)
    # An act-order weight stores its in-features in the order perm (its groups are runs there).
    x2 = x2.contiguous() if qweight.perm is None else x2.index_select(1, qweight.perm)
    bias = None if bias is None else bias.contiguous()
    w = qweight
    if _eager(x2, w.packed, w.scales, w.zeros, bias):
        y = _run(x2, w.packed, w.scales, w.zeros, bias, w.dtype, w.group_size, n, w.zero_offset)
    else:
        y = torch.ops.tilevm.quant_matmul(
            x2, w.packed, w.scales, w.zeros, bias, str(w.dtype), w.group_size, n, w.zero_offset
        )
    return y.reshape(*x.shape[:-1], n)


_PLAIN = (torch.Tensor, torch.nn.Parameter)


def _eager(*tensors: torch.Tensor | None) -> bool:
    """Whether calling the op's implementation directly does exactly what calling the op would.

    True for plain tensors with no autograd to record, outside ``torch.compile``
    and jit tracing, with no dispatch or function mode and no functorch
    transform active: then :func:`quant_matmul` skips the dispatcher, about
    15 µs of host time a call. Otherwise the op runs, so that modes, tracing
    and autograd see it.
    """
    if torch.compiler.is_compiling() or torch.jit.is_tracing():
        return False
    grad = torch.is_grad_enabled()
    for t in tensors:
        if t is not None and (type(t) not in _PLAIN or (grad and t.requires_grad)):
            return False
    return not _modes_active()


def _modes_active() -> bool:
    """Any torch dispatch mode, function mode or functorch transform active (True when this
    torch lacks the private functions that say)."""
    c = torch._C
    try:
        return bool(
            c._len_torch_dispatch_stack()
            or c._len_torch_function_stack()
            or c._functorch.peek_interpreter_stack() is not None
        )
    except AttributeError:
        return True


__all__ = ["ACTIVATION_DTYPES", "Config", "choose_config", "quant_matmul"]
