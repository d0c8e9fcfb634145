"""``python -m tilevm bench sass``: the GEMM kernels' SASS per weight tile, without a GPU.

The budgets below guard the decode kernel's dequantisation against regressions:
at 80 % of an H100's copy bandwidth an SM receives a 64 x 64 tile of b-bit codes
every 44 b clocks, time for at most 176 b instructions from its four schedulers.
"""

from __future__ import annotations

import pytest

import tilevm
from tilevm.__main__ import main
from tilevm.bench import sass

SASS_TEXT = """
        /*0100*/                   LDG.E.128 R4, desc[UR4][R2.64] ;
.L_x_3:
        /*0110*/                   LOP3.LUT R8, R4, 0x640f640f, R9, 0xc8, !PT ;
        /*0120*/                   HADD2 R8, R8, -1032, -1032 ;
        /*0130*/                   HMMA.16816.F32 R12, R16, R8, R12 ;
        /*0140*/                   HMMA.16816.F32 R20, R16, R10, R20 ;
        /*0150*/               @P0 BRA `(.L_x_3) ;
        /*0160*/                   EXIT ;
"""


def test_the_count_covers_the_blocks_that_hold_hmma_scaled_to_32():
    total, ops = sass.tile_counts(SASS_TEXT)
    assert total == 5 * 16  # LOP3, HADD2, two HMMA and the branch, times 32 / 2
    assert ops["HMMA"] == 32 and ops["LOP3"] == 16 and "LDG" not in ops and "EXIT" not in ops


def test_a_kernel_without_mma_is_an_error():
    with pytest.raises(ValueError, match="no HMMA"):
        sass.tile_counts("        /*0000*/                   EXIT ;\n")


def test_without_nvdisasm_the_command_exits_2_naming_the_wheel(monkeypatch, capsys):
    def missing():
        raise sass.NoDisassemblerError("needs nvdisasm: pip install nvidia-cuda-nvdisasm")

    monkeypatch.setattr(sass, "find_nvdisasm", missing)
    assert main(["bench", "sass", "--dtypes", "int4"]) == 2
    assert "nvidia-cuda-nvdisasm" in capsys.readouterr().err


need_nvdisasm = pytest.mark.skipif(
    not sass._found(), reason="needs nvdisasm (pip install nvidia-cuda-nvdisasm)"
)

# SASS a 64 x 64 tile and warp measured when these budgets were set (decode, float16, sm_90a):
# uint1 207 (with zero points, as quantize makes it), int2 254, int3 316, int4 273, e2m1 448;
# the budgets leave a few percent of room.
BUDGETS = {"uint1": 218, "int2": 265, "int3": 330, "int4": 285, "float4_e2m1": 465}
# The same at 8 rows (decode8: swap-AB, 16 HMMA a tile and warp): uint1 191, int2 240,
# int3 300, int4 258, e2m1 433. (e2m1 was 381 while the scales were loaded every tile: loaded
# once a pair of tiles, the kernel has fewer instructions, but ptxas allocates 96 registers
# instead of 122 and rematerialises constants in these blocks, 16 IMAD a tile more. uint1 was
# 290 at 8 rows and 303 at 16 while its codes were cast, its zeros subtracted and its scales
# multiplied a weight at a time.)
BUDGETS_8 = {"uint1": 200, "int2": 252, "int3": 312, "int4": 268, "float4_e2m1": 450}


@need_nvdisasm
@pytest.mark.parametrize(
    ("kernel", "dtype", "budget"),
    [("decode", *b) for b in BUDGETS.items()] + [("decode8", *b) for b in BUDGETS_8.items()],
)
def test_the_decode_kernels_compute_stays_within_its_instruction_budget(kernel, dtype, budget):
    row = sass.count(tilevm.dtype(dtype), tilevm.float16, kernel, "sm_90a", sass.find_nvdisasm())
    assert row["spills"] == 0
    assert row["ops"]["HMMA"] == (32 if kernel == "decode" else 16)
    assert row["per_tile"] <= budget, row["ops"].most_common(8)
    if tilevm.dtype(dtype).nbits in (2, 4):
        # the packed order puts each pair in one word's halves: no byte permute a pair
        assert row["ops"]["PRMT"] == 0
    if tilevm.dtype(dtype).nbits == 1:
        # a pair of 1-bit codes picks its two values by one prmt's mask and one lop3; the group
        # values are copied into both lanes of a word, 8 prmt a tile
        assert row["ops"]["PRMT"] <= 64 + 8 and row["ops"]["LOP3"] <= 64 + 8
        assert "HMUL2" not in row["ops"] and "HADD2" not in row["ops"]


@need_nvdisasm
def test_the_command_prints_a_row_per_type(capsys):
    assert main(["bench", "sass", "--dtypes", "int4,e2m1", "--kernel", "prefill0"]) == 0
    out = capsys.readouterr().out
    assert "prefill0 kernel" in out
    assert "| int4 | " in out and "| float4_e2m1 | " in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--dtypes", "int9"], "argument --dtypes: unknown data type 'int9'"),
        (["--dtypes", "float16"], "argument --dtypes: weights are 1 to 8 bits wide"),
        (["--kernel", "prefill7"], "argument --kernel: invalid choice: 'prefill7'"),
        (["--act", "float32"], "argument --act: invalid choice: 'float32'"),
    ],
)
def test_a_bad_argument_is_a_usage_error_naming_it(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["bench", "sass", *argv])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
