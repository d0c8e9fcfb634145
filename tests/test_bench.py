"""``python -m tilevm bench gemm``: arguments, table, CSV and plot, and the answer without a GPU.

The measurements themselves need a GPU (the ``gpu`` test at the end); the
formatting is checked on synthetic results.
"""

from __future__ import annotations

import csv
import subprocess
import sys
import types

import pytest

from tilevm.__main__ import build_parser, main
from tilevm.bench import NO_GPU_STATUS, NoGPUError, time_cuda
from tilevm.bench.gemm import (
    CSV_FIELDS,
    DEFAULT_DTYPES,
    DEFAULT_MS,
    DEFAULT_SHAPES,
    Result,
    command_line,
    format_table,
    parse_dtypes,
    parse_ints,
    parse_shapes,
    plot,
    prepare_torch_int4,
    write_csv,
)


def no_gpu() -> bool:
    from conftest import cuda_available

    return not cuda_available()


# -- arguments -----------------------------------------------------------------------------------
def test_the_defaults_are_the_issues_shapes_sizes_and_types():
    args = build_parser().parse_args(["bench", "gemm"])
    assert args.command == "bench" and args.suite == "gemm"
    assert (
        args.shapes == DEFAULT_SHAPES == ((12288, 4096), (4096, 4096), (4096, 14336), (28672, 4096))
    )
    assert args.m == DEFAULT_MS == (1, 4, 16, 64, 256, 1024, 4096)
    assert args.dtypes == DEFAULT_DTYPES
    assert "int3" in args.dtypes and "float6_e3m2" in args.dtypes and "float4_e2m1" in args.dtypes
    assert (args.group, args.act, str(args.out), args.reps) == (128, "fp16", "bench-results", None)


def test_every_option_parses():
    command = "bench gemm --dtypes int3,e3m2,u5 --shapes 12288x4096,64X128 --m 1,16 --group -1"
    args = build_parser().parse_args(
        [*command.split(), "--act", "bf16", "--out", "somewhere", "--reps", "7"]
    )
    assert args.dtypes == ("int3", "float6_e3m2", "uint5")
    assert args.shapes == ((12288, 4096), (64, 128))
    assert args.m == (1, 16)
    assert (args.group, args.act, str(args.out), args.reps) == (-1, "bf16", "somewhere", 7)


def test_the_report_spells_out_the_command_that_reproduces_it():
    args = build_parser().parse_args(
        ["bench", "gemm", "--dtypes", "e3m2", "--m", "1", "--reps", "9"]
    )
    assert command_line(args) == (
        "python -m tilevm bench gemm --dtypes float6_e3m2 "
        "--shapes 12288x4096,4096x4096,4096x14336,28672x4096 --m 1 --group 128 --act fp16 --reps 9"
    )
    assert build_parser().parse_args(command_line(args).split()[3:]) == args


@pytest.mark.parametrize(
    ("parse", "text", "value"),
    [
        (parse_dtypes, "int4", ("int4",)),
        (parse_dtypes, " int1 , f4e2m1 ", ("int1", "float4_e2m1")),
        (parse_shapes, "4096x14336", ((4096, 14336),)),
        (parse_ints, "1,4,4096", (1, 4, 4096)),
    ],
)
def test_lists_parse(parse, text, value):
    assert parse(text) == value


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--dtypes", "int9"], "unknown data type 'int9'"),
        (["--dtypes", "float16"], "weights are 1 to 8 bits wide; got float16"),
        (["--dtypes", ","], "expected a comma-separated list"),
        (["--shapes", "4096"], "a shape is NxK of positive ints (e.g. 12288x4096); got '4096'"),
        (["--shapes", "0x64"], "got '0x64'"),
        (["--m", "1,-4"], "expected positive ints; got '-4'"),
        (["--group", "100"], "the group size is one of (32, 64, 128, -1); got '100'"),
        (["--act", "fp8"], "invalid choice: 'fp8'"),
        (["--reps", "0"], "expected positive ints; got '0'"),
    ],
)
def test_a_bad_argument_is_a_usage_error_naming_it(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["bench", "gemm", *argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert argv[0] in err and message in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--m", "0"], "expected positive ints; got '0'"),
        (["--n", "-64"], "expected positive ints; got '-64'"),
        (["--dtype", "float16"], "weights are 1 to 8 bits wide; got float16"),
        (["--dtype", "int9"], "unknown data type 'int9'"),
    ],
)
def test_a_bad_startup_argument_is_a_usage_error_naming_it(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["bench", "startup", *argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert argv[0] in err and message in err


def test_bench_needs_a_suite(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["bench"])
    assert exc.value.code == 2
    assert "SUITE" in capsys.readouterr().err


# -- without a GPU -------------------------------------------------------------------------------
@pytest.mark.skipif("not no_gpu()", reason="checks the answer on a machine without a GPU")
def test_without_a_gpu_the_command_exits_2_with_one_line():
    result = subprocess.run(
        [sys.executable, "-m", "tilevm", "bench", "gemm"], capture_output=True, text=True
    )
    assert result.returncode == NO_GPU_STATUS == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("tilevm bench gemm: needs a CUDA GPU and torch ")
    assert "sees none" in lines[0]


@pytest.mark.skipif("not no_gpu()", reason="checks the answer on a machine without a GPU")
def test_without_a_gpu_nothing_is_written(tmp_path, capsys):
    assert main(["bench", "gemm", "--out", str(tmp_path / "out")]) == 2
    assert "needs a CUDA GPU" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    with pytest.raises(NoGPUError):
        time_cuda(lambda: None)


# -- timing --------------------------------------------------------------------------------------
class FakeCuda:
    """Just enough of torch for time_cuda: a clock that runs, flushes and events advance."""

    def __init__(self, durations_us, flush_us=100.0, l2_bytes=50 << 20):
        self.now_ms = 0.0
        self.durations = list(durations_us)
        self.flush_us = flush_us
        self.log: list[str] = []
        self.allocated: list[int] = []
        fake = self

        class Event:
            def __init__(self, enable_timing=False):
                assert enable_timing

            def record(self):
                self.t = fake.now_ms

            def elapsed_time(self, end):
                return end.t - self.t

        class Buffer:
            def zero_(self):
                fake.log.append("flush")
                fake.now_ms += fake.flush_us / 1e3

        def empty(nbytes, dtype, device):
            fake.allocated.append(nbytes)
            return Buffer()

        props = types.SimpleNamespace(L2_cache_size=l2_bytes)
        self.torch = types.SimpleNamespace(
            uint8="uint8",
            empty=empty,
            cuda=types.SimpleNamespace(
                Event=Event,
                synchronize=lambda: None,
                current_device=lambda: 0,
                get_device_properties=lambda device: props,
            ),
        )

    def fn(self):
        self.log.append("run")
        self.now_ms += self.durations.pop(0) / 1e3


@pytest.fixture
def fake_cuda(monkeypatch):
    import tilevm.bench as bench

    def make(*args, **kwargs):
        fake = FakeCuda(*args, **kwargs)
        monkeypatch.setattr(bench, "require_cuda", lambda: fake.torch)
        monkeypatch.setattr(bench, "_flush_buffers", {})
        return fake

    return make


def test_time_cuda_flushes_the_l2_before_every_repetition_and_takes_the_median(fake_cuda):
    fake = fake_cuda([5000.0, 10.0, 30.0, 20.0, 50.0, 40.0])  # the first call is not timed
    assert time_cuda(fake.fn, reps=5) == pytest.approx(30.0)
    assert fake.log == ["run"] + ["flush", "run"] * 5
    assert fake.allocated == [256 << 20]  # 256 MiB, more than twice this L2


def test_the_flush_buffer_is_twice_a_large_l2(fake_cuda):
    fake = fake_cuda([1.0, 1.0], l2_bytes=200 << 20)
    time_cuda(fake.fn, reps=1)
    assert fake.allocated == [400 << 20]


def test_time_cuda_chooses_repetitions_to_fill_the_budget(fake_cuda):
    # Each repetition costs a 100 µs flush plus a 100 µs call: 1 ms of budget holds 5.
    fake = fake_cuda([100.0] * 30)
    time_cuda(fake.fn, budget_ms=1.0)
    assert fake.log.count("run") == 1 + 3 + 10  # warm-up, estimate, then at least 10
    fake = fake_cuda([100.0] * 40)
    time_cuda(fake.fn, budget_ms=6.0)
    assert fake.log.count("run") == 1 + 3 + 30
    fake = fake_cuda([100.0] * 40, flush_us=0.0)
    time_cuda(fake.fn, budget_ms=2.5, flush_l2=False)  # 100 µs a repetition without flushes
    assert fake.log.count("run") == 1 + 3 + 25
    assert "flush" not in fake.log and fake.allocated == []


# -- the table, CSV and plot ---------------------------------------------------------------------
def results() -> list[Result]:
    weight = 4096 * 4096 // 2 + 32 * 4096 * 2  # int4 codes and fp16 scales of a 4096x4096 weight
    return [
        Result("int4", 1, 4096, 4096, 10.0, weight, 3e12, 25.0, 12.5, 4.2e-4, 2e-3),
        Result("int4", 4096, 4096, 4096, 400.0, weight, 3e12, 200.0, None, 1.1e-3, 2e-3),
        Result("float6_e3m2", 16, 4096, 4096, 20.0, 2 * weight, 3e12, 26.0, 12.8, 5e-3, 2e-3),
        Result("int3", 1, 4096, 4096, None, 0, 3e12, 25.0, 12.5, None, 2e-3, "LaunchError: no"),
    ]


def test_a_result_derives_throughput_bandwidth_and_speedup():
    r = results()[0]
    assert r.tflops == pytest.approx(2 * 4096 * 4096 / 10e-6 / 1e12)  # 3.36
    assert r.bandwidth_pct == pytest.approx(100 * 8650752 / 10e-6 / 3e12)  # 28.8
    assert r.speedup == pytest.approx(2.5)
    assert r.ok
    failed = results()[3]
    assert failed.tflops is failed.bandwidth_pct is failed.speedup is None
    assert not failed.ok and not results()[2].ok  # too large an error


def test_the_table_aligns_numbers_and_marks_failures():
    table = format_table(results(), act="fp16")
    lines = table.splitlines()
    assert lines[0].split() == [
        "dtype", "M", "N", "K", "µs", "TFLOP/s", "BW", "%", "fp16", "µs", "vs", "fp16",
        "torch", "int4", "µs", "rel", "err",
    ]  # fmt: skip
    assert set(lines[1]) == {"-", " "}
    assert lines[2].split() == [
        "int4", "1", "4096", "4096", "10.0", "3.36", "28.8", "25.0", "2.50x", "12.5", "4.2e-04",
    ]  # fmt: skip
    assert lines[3].split()[-3:] == ["0.50x", "-", "1.1e-03"]
    assert lines[4].endswith("5.0e-03 FAIL")
    assert lines[5].split()[4:] == ["-", "-", "-", "25.0", "-", "12.5", "FAIL"]
    # Numbers are right-aligned: every row's µs column ends where the header's does.
    end = lines[0].index("µs") + len("µs")
    assert all(line[end - 1] != " " for line in lines[2:])


def test_the_csv_has_one_row_per_result_with_empty_cells_for_what_was_not_measured(tmp_path):
    path = write_csv(results(), tmp_path / "gemm.csv")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == CSV_FIELDS
    assert len(rows) == 4
    first = rows[0]
    assert (first["dtype"], first["m"], first["n"], first["k"]) == ("int4", "1", "4096", "4096")
    assert float(first["us"]) == 10.0
    assert float(first["tflops"]) == pytest.approx(3.355, rel=1e-3)
    assert float(first["bandwidth_pct"]) == pytest.approx(28.836, rel=1e-3)
    assert float(first["copy_bandwidth_gbs"]) == 3000.0
    assert float(first["speedup"]) == 2.5
    assert (first["ok"], first["note"]) == ("1", "")
    assert rows[1]["torch_int4_us"] == ""
    assert (rows[3]["us"], rows[3]["ok"], rows[3]["note"]) == ("", "0", "LaunchError: no")


def test_the_plot_is_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    path = plot(results(), tmp_path / "gemm.png", title="synthetic")
    assert path.read_bytes().startswith(b"\x89PNG")


# -- measuring (on the interpreter, with a fake timer) -------------------------------------------
@pytest.fixture
def fake_timer(monkeypatch):
    import tilevm.bench.gemm as gemm

    def time_cuda(fn, reps=None, **kwargs):
        fn()
        return 10.0

    monkeypatch.setattr(gemm, "time_cuda", time_cuda)
    monkeypatch.setattr(gemm, "copy_bandwidth", lambda reps=None: 3e12)


def small_args(*extra: str):
    argv = ["bench", "gemm", "--dtypes", "int4,e3m2", "--shapes", "64x128", "--m", "1,3"]
    return build_parser().parse_args([*argv, "--group", "64", *extra])


def test_measuring_checks_each_result_against_the_dequantised_reference(fake_timer, capsys):
    torch = pytest.importorskip("torch")
    from tilevm.bench.gemm import measure

    results = measure(small_args(), torch, [], device="cpu")
    assert [(r.dtype, r.m, r.n, r.k) for r in results] == [
        ("int4", 1, 64, 128),
        ("int4", 3, 64, 128),
        ("float6_e3m2", 1, 64, 128),
        ("float6_e3m2", 3, 64, 128),
    ]
    assert all(r.ok and r.error < 2e-3 and r.us == 10.0 and r.dense_us == 10.0 for r in results)
    assert results[0].weight_bytes == 64 * 128 // 2 + 2 * 64 * 2  # codes, two groups of scales
    assert results[2].weight_bytes == 64 * 128 * 6 // 8 + 2 * 64 * 2
    err = capsys.readouterr().err
    assert "[4/4] float6_e3m2 M=3 N=64 K=128: 10.0 µs" in err


def test_one_bit_weights_are_measured_with_zero_points_and_each_result_is_reported(
    fake_timer, tmp_path
):
    torch = pytest.importorskip("torch")
    from tilevm.bench.gemm import measure

    args = build_parser().parse_args(
        [
            "bench",
            "gemm",
            "--dtypes",
            "uint1,int2",
            "--shapes",
            "64x128",
            "--m",
            "2",
            "--group",
            "64",
        ]
    )
    seen = []
    results = measure(
        args, torch, [], device="cpu", on_result=lambda so_far: seen.append(len(so_far))
    )
    assert seen == [1, 2]
    assert all(r.ok for r in results), [r.note for r in results]
    # uint1: codes, scales and zero points of two groups
    assert results[0].weight_bytes == 64 * 128 // 8 + 2 * (2 * 64 * 2)
    path = write_csv(results[:1], tmp_path / "partial.csv")
    assert path.read_text().count("\n") == 2 and not list(tmp_path.glob(".*.tmp"))


def test_a_wrong_result_is_reported_as_failed(fake_timer, monkeypatch):
    torch = pytest.importorskip("torch")
    import tilevm.ops
    from tilevm.bench.gemm import measure

    monkeypatch.setattr(tilevm.ops, "quant_matmul", lambda x, qw: torch.zeros(x.shape[0], 64))
    results = measure(small_args("--act", "bf16"), torch, [], device="cpu")
    assert not any(r.ok for r in results)
    assert all(r.error == pytest.approx(1.0) and r.tolerance == 1e-2 for r in results)


# -- torch's int4 kernel -------------------------------------------------------------------------
def test_torch_int4_is_skipped_with_a_note_when_torch_lacks_it():
    old_torch = types.SimpleNamespace(__version__="2.0.0")
    fn, note = prepare_torch_int4(old_torch, None, 128)
    assert fn is None and note == "torch 2.0.0 has no _weight_int4pack_mm"


def test_torch_int4_is_skipped_with_a_note_for_shapes_it_does_not_take():
    torch = pytest.importorskip("torch")
    fn, note = prepare_torch_int4(torch, torch.zeros(100, 4096), 128)
    assert fn is None and "N % 8 == 0" in note and "N=100" in note
    fn, note = prepare_torch_int4(torch, torch.zeros(64, 4096), -1)
    assert fn is None and "groups of 32..256" in note


# -- on a GPU ------------------------------------------------------------------------------------
@pytest.mark.gpu
def test_on_a_gpu_a_small_benchmark_runs_checks_and_writes_its_files(tmp_path, capsys):
    out = tmp_path / "results"
    argv = ["bench", "gemm", "--dtypes", "int4,int3", "--shapes", "4096x4096", "--m", "1,16"]
    assert main([*argv, "--reps", "5", "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert "device: " in printed.out and "TFLOP/s" in printed.out
    assert "copy bandwidth" in printed.err and "[4/4]" in printed.err
    with open(out / "gemm.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["dtype"], r["m"]) for r in rows] == [("int4", "1"), ("int4", "16")] + [
        ("int3", "1"),
        ("int3", "16"),
    ]
    assert all(r["ok"] == "1" and float(r["us"]) > 0 for r in rows)
    assert (out / "gemm.txt").exists()


def test_startup_times_a_cold_and_a_warm_process_even_without_a_gpu(capsys):
    """``bench startup`` runs two fresh processes per M on one cache directory (the first
    compiles with NVRTC, the second reads the cache) and prints what each took."""
    assert main(["bench", "startup", "--n", "128", "--k", "128", "--m", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "tilevm bench startup: int4, N = 128, K = 128"
    row = [cell.strip() for cell in lines[-1].strip("|").split("|")]
    assert row[0] == "1"
    cold, warm = (float(s) for s in row[2].split(" / "))
    assert cold > 0 and warm > 0  # which is faster is not asserted: a loaded machine varies
    assert row[3] == "compile 3 decode shapes for sm_90a (tuner workers)" or row[3].startswith(
        "quant_matmul on"
    )
