"""The CUDA kernels of the gated cells (rnnspec.kernels.cuda.gated) against the oracle and the CPU
kernels, under numba-cuda's simulator in CI: small sizes, every recurrence layout forced.
scripts/gpu_check.sh runs these on a GPU, and the GPU bench checks the real sizes."""

import numpy as np
import pytest

cuda_kernels = pytest.importorskip("rnnspec.kernels.cuda", reason="numba-cuda is not installed (pip install .[cuda])")

import rnnspec.kernels as cpu_kernels
from rnnspec.derivations.oracle import Oracle
from rnnspec.kernels.cpu.bench import make_case
from rnnspec.kernels.cuda import gated
from rnnspec.kernels.cuda.gated_recurrence import GatedLayout, gated_plan
from rnnspec.spec import load_target
from rnnspec.spec.cases import Case
from rnnspec.spec.runner import check

CELLS = gated.CELLS
TOLERANCE = {"float64": 1e-12, "float32": 2e-5}


def _case(cell, dtype, T=3, B=2, I=2, H=5, K=3, seed=0):
    """(x, state0, params, head params, targets, cotangents): make_case's arrays, split as the API takes them."""
    case = make_case(T, B, I, H, K, dtype, seed, cell=cell)
    state_keys = ("h0", "c0") if cell == "lstm" else ("h0",)
    state0 = {k: case[k] for k in state_keys}
    params = {k: v for k, v in case.items() if k not in ("x", "targets", "V", "c", *state_keys)}
    rng = np.random.default_rng(seed + 7)
    cotangents = {k: rng.standard_normal((T, B, H)).astype(dtype) for k in ("h", "c")[: len(state_keys)]}
    return case["x"], state0, params, {"V": case["V"], "c": case["c"]}, case["targets"], cotangents


def _close(got: dict, want: dict, tol: float, context: str) -> None:
    assert set(got) == set(want), (context, sorted(set(got) ^ set(want)))
    for key in want:
        assert got[key].dtype == want[key].dtype, (context, key, got[key].dtype)
        np.testing.assert_allclose(got[key], want[key], rtol=tol, atol=tol, err_msg=f"{context}: {key}")


def _assert_matches_the_cpu(cell, dtype, context="", **sizes):
    x, state0, params, head, y, cot = _case(cell, dtype, **sizes)
    tol = TOLERANCE[dtype]
    _close(cuda_kernels.forward(cell, x, state0, params), cpu_kernels.forward(cell, x, state0, params), tol,
           f"{cell} {dtype} forward {context}")
    _close(cuda_kernels.backward(cell, x, state0, params, cot), cpu_kernels.backward(cell, x, state0, params, cot),
           tol, f"{cell} {dtype} backward {context}")
    value, grads = cuda_kernels.loss(cell, x, state0, {**params, **head}, y)
    want_value, want_grads = cpu_kernels.loss(cell, x, state0, {**params, **head}, y)
    assert abs(value - want_value) <= tol * max(1.0, abs(want_value)), (cell, dtype, value, want_value)
    _close(grads, want_grads, tol, f"{cell} {dtype} loss {context}")


@pytest.mark.parametrize("cell", CELLS)
def test_gated_kernels_agree_with_the_oracle_in_float64(cell):
    x, state0, params, head, y, cot = _case(cell, "float64")
    oracle = Oracle(cell=cell)
    _close(cuda_kernels.backward(cell, x, state0, params, cot), oracle.vjp(x, state0, params, cot), 1e-12,
           f"{cell} vjp against the oracle")
    value, grads = cuda_kernels.loss(cell, x, state0, {**params, **head}, y)
    want_value, want_grads = oracle.loss(x, state0, {**params, **head}, y)
    assert abs(value - want_value) <= 1e-12 * abs(want_value), (value, want_value)
    _close(grads, want_grads, 1e-12, f"{cell} loss against the oracle")


SLOW = pytest.mark.slow  # the simulator runs each GPU thread as a Python thread: a call costs about a second


@pytest.mark.parametrize("cell", [pytest.param(c, marks=[] if c == "lstm" else [SLOW]) for c in CELLS])
def test_gated_kernels_match_the_cpu_kernels_in_float32(cell):
    _assert_matches_the_cpu(cell, "float32")  # float64: against the oracle above, and in every layout below


COOPERATIVE = {"cooperative": True, "units": 2, "slices": 2}  # three groups of a grid, the last one short
LAYOUTS = [(COOPERATIVE, CELLS),
           pytest.param({"cooperative": True, "units": 2, "resident": False}, ("lstm",),  # weights from global memory
                        marks=SLOW),
           pytest.param({"cooperative": False, "rows": 1}, ("gru-reset-after",), marks=SLOW),  # one row per block
           ({"cooperative": False, "rows": 2, "resident": False, "slices": 4}, ("gru-reset-before",))]


def _assert_layout_matches_the_cpu(monkeypatch, layout, cells):
    monkeypatch.setattr(gated, "LAYOUT_OVERRIDE", layout)
    for cell in cells:
        chosen = gated.gated_layout_for(cell, 5, 3, "float64")
        assert all(getattr(chosen, k) == v for k, v in layout.items()), chosen
        x, state0, params, _, _, cot = _case(cell, "float64", T=2, B=3, H=5)
        _close(cuda_kernels.backward(cell, x, state0, params, cot), cpu_kernels.backward(cell, x, state0, params, cot),
               1e-12, f"{cell} {layout}")


@pytest.mark.parametrize("layout,cells", LAYOUTS, ids=lambda v: "-".join(f"{k}={x}" for k, x in v.items())
                         if isinstance(v, dict) else ",".join(v))
def test_every_recurrence_layout_matches_the_cpu_kernels(monkeypatch, layout, cells):
    """Every layout, and every cell on the cooperative grid (the GPU's default) in CI; each cell in every
    layout behind -m slow."""
    _assert_layout_matches_the_cpu(monkeypatch, layout, cells)


@pytest.mark.slow
@pytest.mark.parametrize("layout", [{"cooperative": True, "units": 2, "resident": False},
                                    {"cooperative": False, "rows": 1},
                                    {"cooperative": False, "rows": 2, "resident": False, "slices": 4}],
                         ids=lambda d: "-".join(f"{k}={v}" for k, v in d.items()))
def test_every_cell_in_every_recurrence_layout_matches_the_cpu_kernels(monkeypatch, layout):
    _assert_layout_matches_the_cpu(monkeypatch, layout, CELLS)


@pytest.mark.parametrize("sizes", [{"T": 1, "B": 1, "I": 1, "H": 1},
                                   pytest.param({"T": 4, "B": 1, "I": 3, "H": 3}, marks=SLOW)],
                         ids=["one-of-everything", "B1"])
def test_edge_sizes_match_the_cpu_kernels(sizes):
    for cell in CELLS:
        x, state0, params, _, _, cot = _case(cell, "float64", **sizes)
        _close(cuda_kernels.backward(cell, x, state0, params, cot), cpu_kernels.backward(cell, x, state0, params, cot),
               1e-12, f"{cell} {sizes}")


@pytest.mark.slow
@pytest.mark.parametrize("cell", CELLS)
def test_hypothesis_shapes_and_layouts_match_the_cpu_kernels(monkeypatch, cell):
    """Generated sizes, seeds and layouts (the plan's own, or forced cooperative, streamed, weights from
    global memory), float64 within 1e-12 of the CPU kernels: VJP with every cotangent, and the loss."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    layouts = st.sampled_from([{}, {"cooperative": True, "units": 1}, {"cooperative": True, "units": 3, "slices": 4},
                               {"cooperative": False, "rows": 1, "resident": False}, {"cooperative": False}])

    @settings(max_examples=12, deadline=None)
    @given(T=st.integers(1, 5), B=st.integers(1, 4), I=st.integers(1, 3), H=st.integers(1, 7),
           seed=st.integers(0, 2**16), layout=layouts)
    def compare(T, B, I, H, seed, layout):
        monkeypatch.setattr(gated, "LAYOUT_OVERRIDE", {k: v for k, v in layout.items() if k != "units" or v < H})
        x, state0, params, head, y, cot = _case(cell, "float64", T=T, B=B, I=I, H=H, seed=seed)
        context = f"{cell} T={T} B={B} I={I} H={H} seed={seed} layout={gated.LAYOUT_OVERRIDE}"
        _close(cuda_kernels.backward(cell, x, state0, params, cot), cpu_kernels.backward(cell, x, state0, params, cot),
               1e-12, context)
        value, grads = cuda_kernels.loss(cell, x, state0, {**params, **head}, y)
        want_value, want = cpu_kernels.loss(cell, x, state0, {**params, **head}, y)
        assert abs(value - want_value) <= 1e-12 * max(1.0, abs(want_value)), (context, value, want_value)
        _close(grads, want, 1e-12, context)

    compare()


def test_device_arrays_in_device_arrays_out_strided_inputs_read_in_place_and_results_reproducible():
    cell = "lstm"
    cuda = cuda_kernels.cuda
    x, state0, params, _, _, cot = _case(cell, "float32", T=3, B=2, H=4)
    kept = {k: v.copy() for k, v in {"x": x, **state0, **params}.items()}
    on = lambda d: {k: cuda.to_device(v) for k, v in d.items()}
    wide = np.full((*x.shape[:2], 2 * x.shape[2]), np.nan, x.dtype)
    wide[:, :, ::2] = x  # x as every other column of a wider array: a strided device array
    strided = cuda.to_device(wide)[:, :, ::2]
    assert not strided.is_c_contiguous()
    host_result = cuda_kernels.backward(cell, x, state0, params, cot)
    for given_x in (cuda.to_device(x), strided):
        result = cuda_kernels.backward(cell, given_x, on(state0), on(params), on(cot))
        assert all(hasattr(v, "copy_to_host") for v in result.values()), {k: type(v) for k, v in result.items()}
        for key, value in host_result.items():
            assert np.array_equal(result[key].copy_to_host(), value), key  # bit-identical: no atomics
    again = cuda_kernels.backward(cell, x, state0, params, cot)
    assert all(np.array_equal(again[k], v) for k, v in host_result.items())
    for key, value in {"x": x, **state0, **params}.items():
        assert np.array_equal(value, kept[key]), f"{key} was modified"


@pytest.mark.parametrize("cell", ["lstm", "gru-reset-before"])
def test_empty_runs_give_zeros_of_every_shape(cell):
    for T, B in ((0, 2), (3, 0)):
        x, state0, params, head, y, cot = _case(cell, "float64", T=max(T, 1), B=max(B, 1))
        x, y = np.zeros((T, B, x.shape[2])), np.zeros((T, B), np.int64)
        state0 = {k: np.zeros((B, v.shape[1])) for k, v in state0.items()}
        cot = {k: np.zeros((T, B, v.shape[2])) for k, v in cot.items()}
        out = cuda_kernels.forward(cell, x, state0, params)
        assert {k: v.shape for k, v in out.items()} == {k: (T, B, 5) for k in ("h", "c")[: len(state0)]}
        value, grads = cuda_kernels.loss(cell, x, state0, {**params, **head}, y)
        want_value, want = cpu_kernels.loss(cell, x, state0, {**params, **head}, y)
        assert value == 0 and {k: v.shape for k, v in grads.items()} == {k: v.shape for k, v in want.items()}
        assert all(not np.any(v) for v in grads.values())
        assert all(not np.any(v) for v in cuda_kernels.backward(cell, x, state0, params, cot).values())


def test_bad_arguments_are_named_before_anything_is_launched(monkeypatch):
    from rnnspec.kernels.cuda import launches

    monkeypatch.setattr(gated, "launch", lambda *args: pytest.fail("launched before the arguments were checked"))
    monkeypatch.setattr(launches, "launch", lambda *args: pytest.fail("launched before the arguments were checked"))
    x, state0, params, head, y, cot = _case("lstm", "float64")
    with pytest.raises(TypeError, match="W_f: dtype float32 differs"):
        cuda_kernels.forward("lstm", x, state0, {**params, "W_f": params["W_f"].astype(np.float32)})
    with pytest.raises(ValueError, match=r"W_o: expected shape"):
        cuda_kernels.forward("lstm", x, state0, {**params, "W_o": params["W_o"][:, :3]})
    with pytest.raises(ValueError, match=r"missing \['b_g'\]"):
        cuda_kernels.forward("lstm", x, state0, {k: v for k, v in params.items() if k != "b_g"})
    with pytest.raises(ValueError, match=r"cotangents\['c'\]: expected shape"):
        cuda_kernels.backward("lstm", x, state0, params, {**cot, "c": cot["c"][:2]})
    with pytest.raises(ValueError, match=r"targets: class indices"):
        cuda_kernels.loss("lstm", x, state0, {**params, **head}, y + 5)
    with pytest.raises(ValueError, match="cell: expected one of"):
        cuda_kernels.forward("lstm-proj", x, state0, params)
    with pytest.raises(TypeError, match="one dict or as named arguments"):
        cuda_kernels.forward("lstm", x, state0, params, U_i=params["U_i"])


def test_gated_plan_on_the_gpu_sizes_of_the_goals(monkeypatch):
    """On a 132-multiprocessor GPU (H100, H200) in float32: the goals' sizes on a cooperative grid of at
    most one group per multiprocessor, weights on chip up to H = 256, every layout within numba-cuda's
    48 KB of static shared memory; a forced layout that cannot fit is refused with its numbers."""
    from rnnspec.kernels.cuda import gated_recurrence

    monkeypatch.setattr(gated_recurrence, "THREADS", 256)  # the GPU's, not the simulator's
    monkeypatch.setattr(gated_recurrence, "MAX_SLICES", 32)
    monkeypatch.setattr(gated_recurrence, "SIMULATED", False)
    sizes = ((1, 64), (1, 256), (32, 128), (64, 256), (64, 1024))
    for cell in CELLS:
        for B, H in sizes:
            layout = gated_plan(cell, H, B, "float32", 132)
            assert layout.cooperative and layout.groups <= 132 and layout.units * layout.groups >= H, (cell, B, H)
            assert layout.resident == (H <= 256), (cell, B, H, layout)
            assert layout.shared_bytes(cell, H, 4) <= 48 * 1024
            outputs = B * layout.units * gated_recurrence.GATE_COUNT[cell]
            assert layout.slices == 1 or outputs * layout.slices <= layout.threads, (cell, B, H, layout)
    streamed = gated_plan("lstm", 128, 2048, "float32", 132)  # 2048 rows' totals do not fit a grid's groups
    assert not streamed.cooperative and streamed.units == 128 and streamed.groups == 2048 // streamed.rows
    with pytest.raises(ValueError, match="bytes of shared memory per block"):
        gated_plan("lstm", 1024, 1, "float32", 132, cooperative=False, resident=True)
    assert GatedLayout._fields == ("units", "rows", "groups", "threads", "slices", "virtual", "cooperative",
                                   "resident") and gated_recurrence.GATE_COUNT["lstm"] == 4


CONFORMANCE = {"lstm": ("float32", "contracting"), "gru-reset-after": ("float64", "saturating"),
               "gru-reset-before": ("float32", "large-logits")}


@pytest.mark.parametrize("cell", [pytest.param(c, marks=[] if c == "gru-reset-before" else [SLOW]) for c in CELLS])
def test_rnnspec_cuda_target_is_conformant_for_the_gated_cells(cell):
    dtype, regime = CONFORMANCE[cell]
    case = Case(T=3, B=2, I=2, H=4, K=3, activation="tanh", dtype=dtype, regime=regime, seed=CELLS.index(cell),
                cell=cell)
    report = check(load_target("rnnspec-cuda"), target="rnnspec-cuda", cases=[case], cell=cell)
    assert report.conformant, (cell, [(r.clause.id, r.status, r.worst and r.worst.message)
                                      for r in report.results if r.status != "passed"])


@pytest.mark.slow  # 25 s: run it (-m slow) before a GPU session; the GPU script runs the bench itself
def test_gpu_benchmark_of_the_gated_cells_runs_as_the_gpu_script_runs_it(tmp_path):
    """``rnnspec bench --device cuda --cell lstm,gru-reset-before --variants --json`` at one tiny size,
    torch's side on the CPU: the verdicts (the oracle's check included), PyTorch's gradients named and
    ported right (they agree with the CPU kernels), the reset-before GRU timed alone, a forced layout.
    In a process of its own: torch's CPU LSTM starts OpenMP threads, after which a forked worker (the
    suite's, in a later test of this process) can hang."""
    import json
    import os
    import subprocess
    import sys

    pytest.importorskip("torch")
    path = tmp_path / "gpu_bench_gated.json"
    argv = ["bench", "--device", "cuda", "--cell", "lstm,gru-reset-before", "--variants", "--repeats", "1",
            "--json", str(path)]
    script = f"""
import sys
from rnnspec.kernels.cuda import bench as bench_cuda, bench_gated
from rnnspec.spec import cli
bench_gated.GATED_GPU_SIZES = ((2, 1, 1, 3),)
bench_gated.VARIANTS = {{(2, 1, 1, 3): ({{"cooperative": False, "rows": 1}},)}}
bench_gated.TORCH_DEVICE = "cpu"
bench_cuda.MIN_REPEATS, bench_cuda.CLOCK_WARMUP_S = 1, 0.0
sys.exit(cli.main({argv!r}))
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600,
                         env={"NUMBA_ENABLE_CUDASIM": "1", **os.environ})  # the simulator, unless told otherwise
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = run.stdout
    report = json.loads(path.read_text())
    assert report["schema"] == "rnnspec.bench-cuda-gated/1" and "cudnn_allow_tf32" in report, report
    lstm, gru = report["results"]
    assert lstm["correct"] and gru["correct"], report
    assert lstm["train_ratio_vs_cudnn"] > 0 and "cudnn_train_s" not in gru, report
    assert lstm["correctness"]["cudnn_float32_vs_cpu_float64"] < 1e-5, lstm["correctness"]
    assert lstm["correctness"]["float64_vs_oracle_T2"] < 1e-12 and gru["correctness"]["float64_vs_cpu"] < 1e-12
    forced = lstm["variants"][0]
    assert forced["correct"] and not forced["layout"]["cooperative"] and forced["layout"]["rows"] == 1, forced
    assert lstm["forward_recurrence_s"] > 0 and lstm["backward_recurrence_s"] > 0, lstm
    assert "vs cuDNN (TF32)" in out and "forced streamed units=3 rows=1" in out and "INCORRECT" not in out, out
    assert "recurrence kernels alone: fwd" in out, out


def test_the_gpu_benchmark_refuses_an_unknown_or_mixed_cell(capsys):
    from rnnspec.spec import cli

    assert cli.main(["bench", "--device", "cuda", "--cell", "lstm,gru"]) == 2
    assert cli.main(["bench", "--device", "cuda", "--cell", "elman,lstm"]) == 2
    assert "choose elman alone, or any of" in capsys.readouterr().err
