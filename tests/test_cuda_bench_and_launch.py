"""The GPU benchmark's measurements and the kernel launch paths, under numba-cuda's simulator in CI
(scripts/gpu_check.sh runs them on the GPU too): what `rnnspec bench --device cuda` measures and
reports, and the launch configurations and lean launch parameters (rnnspec.kernels.cuda.launches)."""

import pytest

pytest.importorskip("rnnspec.kernels.cuda", reason="numba-cuda is not installed (pip install .[cuda])")

def test_gpu_benchmark_measurements_run_under_the_simulator(monkeypatch):
    """Everything of ``rnnspec bench --device cuda`` at a tiny size, the torch side on the CPU: a bug
    here would otherwise first show on a lent GPU, whose minutes are few."""
    import re

    pytest.importorskip("torch")
    from rnnspec.kernels.cuda import bench as bench_cuda
    from rnnspec.kernels.cuda import gemm as cuda_gemm
    from rnnspec.kernels.cuda import launches as cuda_launch
    from rnnspec.kernels.numpy_compat import SIMULATED

    defaults = cuda_launch.LEAN_LAUNCH, cuda_gemm.UNSPLIT_TERMS
    size = (3, 2, 2, 5)
    monkeypatch.setattr(bench_cuda, "VARIANTS", {size: ({"split": 2, "held": 0}, {"split": 1, "held": 4},
                                                        {"cooperative": True, "blocks": 2}, {"lean_launch": True},
                                                        {"unsplit_terms": 8, "split": 2})})
    torch_rnn = bench_cuda.cudnn_calls(*size, device="cpu")  # torch's CPU RNN: the same mapping
    ours = bench_cuda.rnnspec_timings(*size, repeats=1, cudnn=torch_rnn)
    assert set(ours) == {"rnnspec_first_train_s", "rnnspec_forward_s", "rnnspec_train_s", "cudnn_forward_s",
                         "cudnn_train_s", "forward_ratio_vs_cudnn", "train_ratio_vs_cudnn",
                         "rnnspec_train_fresh_scratch_s"}, ours
    assert all(t > 0 for t in ours.values()), ours
    assert ours["train_ratio_vs_cudnn"] == ours["cudnn_train_s"] / ours["rnnspec_train_s"], ours
    from rnnspec.derivations.oracle import Oracle

    errors = bench_cuda.correctness(*size, cudnn=torch_rnn["gradients"](), reference=Oracle().vjp)
    assert set(errors) == {"float64_vs_oracle_T3", "float64_vs_cpu", "float32_vs_cpu_float64",
                           "cudnn_float32_vs_cpu_float64"}, errors
    assert errors["float64_vs_oracle_T3"] < 1e-12 and errors["float64_vs_cpu"] < 1e-12, errors
    assert errors["float32_vs_cpu_float64"] < 1e-5 and errors["cudnn_float32_vs_cpu_float64"] < 1e-5, errors
    alone = bench_cuda.recurrence_alone(*size, repeats=1)
    assert alone["forward_recurrence_s"] > 0 and alone["backward_recurrence_s"] > 0, alone
    rows = bench_cuda.variants(*size, repeats=1, baseline={"correctness": errors}, cudnn=torch_rnn)
    assert all(r["train_ratio_vs_cudnn"] == r["cudnn_train_s"] / r["rnnspec_train_s"] for r in rows), rows
    assert all(r["correct"] is True for r in rows), rows
    layouts = [(r["layout"].get("split"), r["layout"].get("held")) for r in rows]
    assert layouts[:3] == [(2, 0), (1, 4), (None, None)], rows
    assert rows[3].get("lean_launch") is True and not any(r.get("lean_launch") for r in (*rows[:3], rows[4])), rows
    assert rows[4]["unsplit_terms"] == 8 and rows[4]["layout"]["split"] == 2, rows[4]  # a setting with a layout
    assert all(r["float32_vs_cpu_float64"] < 1e-5 and r["check_steps"] == 3 for r in rows), rows
    assert bench_cuda.variants(4, 2, 2, 5, repeats=1) == []  # no variants at this size: nothing run
    assert bench_cuda.launch_overhead(repeats=1) > 0
    assert bench_cuda.verdict(errors) and not bench_cuda.verdict({**errors, "float64_vs_cpu": 1e-6})
    line = bench_cuda.table_row({"T": 3, "B": 2, "I": 2, "H": 5, "correctness": errors, "correct": True,
                                 **alone, **ours, "rnnspec_forward_s": 1e-3, "rnnspec_train_s": 2e-3,
                                 "cudnn_forward_s": 1e-3, "cudnn_train_s": 4e-3, "forward_ratio_vs_cudnn": 1.0,
                                 "train_ratio_vs_cudnn": 2.0, "variants": rows})
    assert "(2.00x)" in line and "variant split=2 held=0/16" in line, line
    threads = rows[2]["layout"]["threads"]  # 8 under the simulator, 256 on a GPU
    assert f"variant cooperative rows=3 blocks=2 threads={threads} tile=2 slices=2: recurrence fwd" in line, line
    planned = re.search(r" lean launch \((\d+) kinds of launch planned\): recurrence fwd", line)
    assert "x cuDNN), fwd+bwd" in line and planned, line
    assert (int(planned[1]) == 0) == SIMULATED, line  # the simulator launches itself; a GPU plans
    assert " unsplit_terms=8: recurrence fwd" in line, line
    assert (cuda_launch.LEAN_LAUNCH, cuda_gemm.UNSPLIT_TERMS) == defaults  # set for their variants only
    assert "numba-cuda launch: recurrence" in bench_cuda.variant_line({**rows[3], "lean_launch": False}), rows[3]


def test_gpu_benchmark_command_runs_as_the_gpu_script_runs_it(monkeypatch, tmp_path, capsys):
    """``rnnspec bench --device cuda --variants --json`` as scripts/gpu_check.sh runs it, at one
    tiny size, torch's side on the CPU: the table with its verdict, the variants, the JSON report."""
    import json

    pytest.importorskip("torch")
    from rnnspec.kernels.cuda import bench as bench_cuda
    from rnnspec.spec import cli

    size = (3, 2, 2, 5)
    monkeypatch.setattr(bench_cuda, "GPU_SIZES", (size,))
    monkeypatch.setattr(bench_cuda, "VARIANTS", {size: ({"ahead": 1},)})
    monkeypatch.setattr(bench_cuda, "TORCH_DEVICE", "cpu")
    monkeypatch.setattr(bench_cuda, "MIN_REPEATS", 1)
    path = tmp_path / "gpu_bench.json"
    assert cli.main(["bench", "--device", "cuda", "--variants", "--repeats", "1", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "empty numba-cuda launch + sync" in out and "correct: " in out and "ahead=1: recurrence fwd" in out, out
    assert "x); correct: float32 vs CPU float64" in out, out
    report = json.loads(path.read_text())
    assert report["schema"] == "rnnspec.bench-cuda/6" and len(report["results"]) == 1, report
    row = report["results"][0]
    assert row["correct"] is True and row["train_ratio_vs_cudnn"] > 0 and len(row["variants"]) == 1, row
    assert row["variants"][0]["train_ratio_vs_cudnn"] > 0, row


def test_the_bench_leaves_the_lean_launch_out_when_its_gpu_test_failed(monkeypatch):
    """scripts/gpu_check.sh sets RNNSPEC_BENCH_WITHOUT_LEAN_LAUNCH when the lean launch fails its
    test: its variants are then reported as left out, and nothing of them runs."""
    from rnnspec.kernels.cuda import bench as bench_cuda
    from rnnspec.kernels.cuda import launches as cuda_launch

    default = cuda_launch.LEAN_LAUNCH
    monkeypatch.setenv("RNNSPEC_BENCH_WITHOUT_LEAN_LAUNCH", "1")
    monkeypatch.setattr(bench_cuda, "VARIANTS", {(3, 2, 2, 5): ({"lean_launch": True},)})
    monkeypatch.setattr(bench_cuda, "recurrence_alone", lambda *args: pytest.fail("a left-out variant ran"))
    rows = bench_cuda.variants(3, 2, 2, 5, repeats=1)
    assert rows == [{"layout": {"lean_launch": True}, "error": "left out: the lean launch failed its GPU test"}]
    assert "variant {'lean_launch': True}: ERROR left out" in bench_cuda.variant_line(rows[0]), rows
    assert cuda_launch.LEAN_LAUNCH is default


def test_the_bench_times_through_numba_cuda_alone_when_the_lean_launch_failed(monkeypatch):
    """With RNNSPEC_BENCH_WITHOUT_LEAN_LAUNCH set, the lean launch (the default) is off for the
    whole run, the report says so, and it is on again after."""
    pytest.importorskip("torch")
    from rnnspec.kernels.cuda import bench as bench_cuda
    from rnnspec.kernels.cuda import launches as cuda_launch

    default = cuda_launch.LEAN_LAUNCH
    seen = []

    def cudnn_calls(*args):
        seen.append(cuda_launch.LEAN_LAUNCH)
        raise RuntimeError("stop here")

    monkeypatch.setenv("RNNSPEC_BENCH_WITHOUT_LEAN_LAUNCH", "1")
    monkeypatch.setattr(bench_cuda, "cudnn_calls", cudnn_calls)
    lines = []
    report = bench_cuda.run(repeats=1, sizes=((3, 2, 2, 5), (2, 1, 2, 3)), progress=lines.append)
    assert seen == [False, False] and report["lean_launch"] is False, (seen, report)
    assert [r["error"] for r in report["results"]] == ["RuntimeError: stop here"] * 2, report
    assert "launches through numba-cuda" in lines[0], lines
    assert cuda_launch.LEAN_LAUNCH is default


def test_timed_calls_alternate_in_blocks_after_a_shared_warm_up(monkeypatch):
    """The two sides of a ratio are warmed up together and timed in blocks, A B B A, so that an
    idle GPU's low clock or a drift cannot favour the side timed second."""
    from rnnspec.kernels.cuda import bench as bench_cuda

    monkeypatch.setattr(bench_cuda, "CLOCK_WARMUP_S", 0.0)
    order = []
    calls = {name: (lambda name=name: order.append(name), lambda: None) for name in ("ours", "cudnn")}
    times = bench_cuda._interleaved(calls, repeats=4)
    assert order == ["ours", "cudnn"] + ["ours"] * 2 + ["cudnn"] * 4 + ["ours"] * 2, order
    assert set(times) == {"ours", "cudnn"} and all(t >= 0 for t in times.values()), times


def test_launch_configurations_are_made_once_on_a_gpu(monkeypatch):
    """On a GPU each (kernel, grid, block) is configured once and the configuration reused; the
    simulator's kernel[grid, block] reconfigures the kernel object itself, so there it is redone."""
    from rnnspec.kernels.cuda import launches as cuda_launch

    class Kernel:
        made = 0

        def __getitem__(self, config):
            Kernel.made += 1
            return ("launch", id(self), config)

    kernel = Kernel()
    monkeypatch.setattr(cuda_launch, "SIMULATED", False)
    cuda_launch._kept_configuration.cache_clear()
    first = cuda_launch.configured(kernel, 3, 128)
    assert cuda_launch.configured(kernel, 3, 128) is first and Kernel.made == 1
    assert cuda_launch.configured(kernel, 4, 128) == ("launch", id(kernel), (4, 128)) and Kernel.made == 2
    monkeypatch.setattr(cuda_launch, "SIMULATED", True)
    cuda_launch.configured(kernel, 3, 128)
    assert Kernel.made == 3
    cuda_launch._kept_configuration.cache_clear()


def test_a_launch_the_lean_path_cannot_plan_goes_through_numba_cuda_and_says_why(monkeypatch):
    """An overload or attribute missing from this numba-cuda leaves a launch to numba-cuda, every
    time, and the bench's lean-launch rows say so (``lean_launch_plans``)."""
    from rnnspec.kernels.cuda import launches as cuda_launch

    calls = []

    class Kernel:
        __name__ = "fake_kernel"

        def __getitem__(self, config):
            return lambda *args: calls.append((config, args))

    def unplannable(*args):
        calls.append("plan")
        raise AttributeError("no such attribute in this numba-cuda")

    for name, value in (("SIMULATED", False), ("LEAN_LAUNCH", True), ("_PLANS", {}), ("_plan", unplannable)):
        monkeypatch.setattr(cuda_launch, name, value)
    cuda_launch._kept_configuration.cache_clear()
    kernel = Kernel()
    for _ in range(2):
        cuda_launch.launch(kernel, 3, 128, True)
    assert calls == [((3, 128), (True,)), "plan", ((3, 128), (True,))], calls  # planned once only
    assert cuda_launch.lean_launch_plans() == {
        "planned": 0, "fell_back": ["fake_kernel: AttributeError: no such attribute in this numba-cuda"]}
    cuda_launch._kept_configuration.cache_clear()



def test_a_planned_launch_goes_through_its_plan_from_the_second_launch_on(monkeypatch):
    """The first launch of a kind goes through numba-cuda (which compiles) and is planned; later
    ones call cuda.core's launch with the plan and the laid-out parameters, numba-cuda untouched."""
    from rnnspec.kernels.cuda import launches as cuda_launch

    calls = []

    class Kernel:
        def __getitem__(self, config):
            return lambda *args: calls.append(("numba-cuda", config, args))

    def core_launch(stream, config, function, *parameters):
        calls.append(("lean", stream, config, function, parameters))

    for name, value in (("SIMULATED", False), ("LEAN_LAUNCH", True), ("_PLANS", {}),
                        ("_plan", lambda *args: ("function", "config", "stream", core_launch))):
        monkeypatch.setattr(cuda_launch, name, value)
    cuda_launch._kept_configuration.cache_clear()
    kernel = Kernel()
    for _ in range(3):
        cuda_launch.launch(kernel, 3, 128, False)
    assert calls == [("numba-cuda", (3, 128), (False,))] + [("lean", "stream", "config", "function", (False,))] * 2
    assert cuda_launch.lean_launch_plans() == {"planned": 1, "fell_back": []}
    cuda_launch._kept_configuration.cache_clear()

LEAN_LAYOUT_CHECK = r"""
import numpy as np
from rnnspec.kernels.numpy_compat import cuda_module
cuda_module()
from numba.cuda import dispatcher, types
from numba.cuda.cudadrv.devicearray import _StridedLayoutShim, _StridedMemoryViewShim
from rnnspec.kernels.cuda.launches import parameters

class DeviceArray:  # what numba-cuda reads of a device array when it prepares a launch
    __cuda_memory__ = True

    def __init__(self, shape, dtype, pointer):
        a = np.empty(shape, dtype)
        layout = _StridedLayoutShim(strides_in_bytes=a.strides, is_contiguous_c=True,
                                    is_contiguous_f=a.ndim <= 1, is_contiguous_any=True)
        self._strided_memory_view_shim = _StridedMemoryViewShim(ptr=pointer, shape=a.shape, dtype=a.dtype,
                                                                size=a.size, _layout=layout)

class Kernel:
    extensions = []

args = [DeviceArray((5, 2, 3), np.float32, 4096), DeviceArray((3, 3), np.float64, 8192), True,
        DeviceArray((7,), np.float32, 12288), False]
argtypes = [types.Array(types.float32, 3, "C"), types.Array(types.float64, 2, "C"), types.boolean,
            types.Array(types.float32, 1, "C"), types.boolean]
theirs = []
for ty, value in zip(argtypes, args):
    dispatcher._Kernel._prepare_args(Kernel(), ty, value, 0, [], theirs)
ours = parameters(args)
assert ours == theirs and [type(v) for v in ours] == [type(v) for v in theirs], (ours, theirs)
print("the same", len(ours), "parameters")
"""


def test_lean_launch_lays_out_parameters_as_numba_cuda_does():
    """The lean launch path's parameters for arrays of 1 to 3 dimensions, both dtypes and bools,
    against numba-cuda's own _Kernel._prepare_args on the same arguments (numba-cuda's real launch
    code, importable without a GPU in a process without the simulator)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "0"}
    done = subprocess.run([sys.executable, "-c", LEAN_LAYOUT_CHECK], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 0 and "the same 29 parameters" in done.stdout, done.stderr[-3000:]
