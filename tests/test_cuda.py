"""The CUDA kernels against the oracle and the CPU kernels, under numba-cuda's simulator in CI.

The simulator runs every GPU thread as a Python thread, so the sizes here are small; the GPU run
(scripts/gpu_check.py) covers the real sizes.
"""

import numpy as np
import pytest

from strategies import small_arrays

cuda_kernels = pytest.importorskip("rnnspec.kernels.cuda", reason="numba-cuda is not installed (pip install .[cuda])")

from rnnspec.kernels import elman_backward, elman_forward, elman_loss
from rnnspec.kernels.numpy_compat import SIMULATED
from rnnspec.spec import load_target
from rnnspec.spec.cases import Case
from rnnspec.spec.runner import check


def _args(dtype):
    return small_arrays(dtype, T=3, B=5, I=2, H=6, K=3, recurrent_scale=0.4)


def _assert_forward_and_vjp_match_the_cpu(a, dtype, activation, context=""):
    step = (a["x"], a["h0"], a["U"], a["W"], a["b"])
    tol = 1e-12 if dtype == "float64" else 2e-5
    np.testing.assert_allclose(cuda_kernels.elman_forward(*step, activation=activation),
                               elman_forward(*step, activation=activation), rtol=tol, atol=tol, err_msg=context)
    got = cuda_kernels.elman_backward(*step, a["gh"], activation=activation)
    want = elman_backward(*step, a["gh"], activation=activation)
    for key in want:
        assert got[key].dtype == np.dtype(dtype)
        np.testing.assert_allclose(got[key], want[key], rtol=tol, atol=tol, err_msg=f"{key} {context}")
    return step, tol


def _assert_match_the_cpu_at_every_length(a, dtype, activation, layout):
    """All T steps and the first 1, 2 and 3: where the first and last steps' prefetches meet."""
    for T in sorted({a["x"].shape[0], 3, 2, 1}, reverse=True):
        short = {k: (v[:T] if k in ("x", "gh") else v) for k, v in a.items()}
        _assert_forward_and_vjp_match_the_cpu(short, dtype, activation, f"T={T} with {layout}")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "relu", "identity"])
def test_cuda_matches_the_cpu_kernels(dtype, activation):
    a = _args(dtype)
    step, tol = _assert_forward_and_vjp_match_the_cpu(a, dtype, activation)
    loss, grads = cuda_kernels.elman_loss(*step, a["V"], a["c"], a["y"], activation=activation)
    want_loss, want_grads = elman_loss(*step, a["V"], a["c"], a["y"], activation=activation)
    assert abs(loss - want_loss) <= tol * abs(want_loss)
    for key in want_grads:
        np.testing.assert_allclose(grads[key], want_grads[key], rtol=tol, atol=tol, err_msg=key)


LAYOUTS = [  # (split, held, rows, ahead): every branch of the recurrence kernels, at H = 6, B = 5 and T = 7
    {"split": 1, "held": 8, "rows": 1, "ahead": 2},  # all of M in registers; inputs staged two steps at a time
    {"split": 2, "held": 4, "rows": 3, "ahead": 1},  # two lanes' outputs per thread, partial sums exchanged
    {"split": 2, "held": 0, "rows": 4, "ahead": 3},  # M streamed, a partly empty block; groups of 3, 3 and 1
    {"split": 1, "held": 4, "rows": 2, "ahead": 1},  # part of M in registers, the rest streamed
    {"split": 4, "held": 0, "rows": 2, "ahead": 8},  # chunks of 16 past H = 6: zero padding; one group past T
    {"split": 1, "held": 8, "rows": 2, "ahead": 4},  # two rows finished per thread, staged four at a time
    {"split": 1, "held": 0, "rows": 8, "ahead": 1},  # more rows per block than the batch has
]


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda d: "-".join(f"{k}={v}" for k, v in d.items()))
@pytest.mark.parametrize("dtype,activation", [("float64", "tanh"), ("float32", "relu")])
def test_every_recurrence_layout_matches_the_cpu_kernels(monkeypatch, layout, dtype, activation):
    monkeypatch.setattr(cuda_kernels, "LAYOUT_OVERRIDE", layout)
    a = small_arrays(dtype, T=7, B=5, I=2, H=6, K=3, recurrent_scale=0.4)
    chosen = cuda_kernels.layout_for(a["W"].shape[0], a["x"].shape[1], dtype)
    assert all(getattr(chosen, k) == v for k, v in layout.items()), chosen
    _assert_match_the_cpu_at_every_length(a, dtype, activation, chosen)


def test_inputs_one_step_ahead_unless_groups_are_forced():
    """plan() loads each step's inputs one step ahead (staged groups ran slower on the H200 at
    H = 64); groups of up to MAX_AHEAD steps when forced, where their shared memory fits."""
    from rnnspec.kernels import cuda_kernels as device_code

    assert device_code.plan(6, 5, "float32", 1).ahead == 1
    assert device_code.plan(6, 1, "float32", 1, ahead=8).ahead == 8
    with pytest.raises(ValueError, match="ahead: expected 1 to 8 steps, got 9"):
        device_code.plan(6, 1, "float32", 1, ahead=9)
    with pytest.raises(ValueError, match="ahead = 8 steps at H = 512 and 2 rows needs 73728 bytes"):
        device_code.plan(512, 2, "float32", 1, rows=2, ahead=8)


COOPERATIVE = [  # at H = 7 and B = 5, with 8 threads per grid block under the simulator
    {"blocks": 1},  # one block owns all 7 rows: tile 4, two slices, one chunk
    {"blocks": 3, "tile": 2, "slices": 4},  # 3 rows per block (the last has 1 unused); 2 chunks, the last half empty
    {"blocks": 7, "tile": 1, "slices": 2},  # one row per block; 5 tiles of 1 row in chunks of 4
    {"blocks": 3, "tile": 3, "slices": 8},  # 8 slices of 7 terms: slices 7 and 8 hold none; one tile per chunk
]


@pytest.mark.parametrize("forced", COOPERATIVE, ids=lambda d: "-".join(f"{k}={v}" for k, v in d.items()))
@pytest.mark.parametrize("dtype,activation", [("float64", "tanh"), ("float32", "sigmoid")])
def test_cooperative_grid_matches_the_cpu_kernels(monkeypatch, forced, dtype, activation):
    """W spread over the blocks of a cooperative grid, one grid sync per step; the terms of each dot
    product split over slices of threads and summed in a tree. Under the simulator the grid's blocks
    run as virtual blocks of one launched block (rnnspec.kernels.cuda_cooperative)."""
    from rnnspec.kernels.cuda_cooperative import CooperativeLayout

    monkeypatch.setattr(cuda_kernels, "LAYOUT_OVERRIDE", {"cooperative": True, **forced})
    a = small_arrays(dtype, T=3, B=5, I=2, H=7, K=3, recurrent_scale=0.4)
    chosen = cuda_kernels.layout_for(7, 5, dtype)
    assert isinstance(chosen, CooperativeLayout) and all(getattr(chosen, k) == v for k, v in forced.items()), chosen
    if SIMULATED:  # all grid blocks in one launched block
        assert chosen.virtual == chosen.blocks and chosen.launch == (1, chosen.blocks * chosen.threads), chosen
    else:  # a cooperative launch of the grid's blocks
        assert chosen.virtual == 1 and chosen.launch == (chosen.blocks, chosen.threads), chosen
    assert chosen.rows == {1: 7, 3: 3, 7: 1}[chosen.blocks], chosen
    _assert_match_the_cpu_at_every_length(a, dtype, activation, chosen)


def test_cooperative_grid_as_the_float32_default_from_a_given_hidden_size(monkeypatch):
    """COOPERATIVE_FROM_HIDDEN, the switch the GPU runs set: float32 from that H on the cooperative
    grid (below H = 512 up to COOPERATIVE_BELOW_512_MAX_BATCH), float64 and smaller H as before;
    results unchanged."""
    from rnnspec.kernels.cuda_cooperative import CooperativeLayout
    from rnnspec.kernels.cuda_kernels import Layout

    assert cuda_kernels.COOPERATIVE_FROM_HIDDEN == 256 and cuda_kernels.COOPERATIVE_BELOW_512_MAX_BATCH == 16
    monkeypatch.setattr(cuda_kernels, "COOPERATIVE_FROM_HIDDEN", 7)
    assert isinstance(cuda_kernels.layout_for(7, 5, "float32"), CooperativeLayout)
    assert isinstance(cuda_kernels.layout_for(7, 17, "float32"), Layout)  # more batch rows: streamed
    monkeypatch.setattr(cuda_kernels, "COOPERATIVE_BELOW_512_MAX_BATCH", 17)
    assert isinstance(cuda_kernels.layout_for(7, 17, "float32"), CooperativeLayout)
    assert isinstance(cuda_kernels.layout_for(6, 5, "float32"), Layout)
    assert isinstance(cuda_kernels.layout_for(7, 5, "float64"), Layout)
    a = small_arrays("float32", T=3, B=5, I=2, H=7, K=3, recurrent_scale=0.4)
    _assert_match_the_cpu_at_every_length(a, "float32", "tanh", cuda_kernels.layout_for(7, 5, "float32"))
    monkeypatch.setattr(cuda_kernels, "COOPERATIVE_FROM_HIDDEN", None)
    assert isinstance(cuda_kernels.layout_for(7, 5, "float32"), Layout)


def test_cooperative_plan_for_the_gpu(monkeypatch):
    from rnnspec.kernels import cuda_cooperative

    monkeypatch.setattr(cuda_cooperative, "SIMULATED", False)  # plan as for a GPU: one grid block per block
    monkeypatch.setattr(cuda_cooperative, "THREADS", 256)
    plan = cuda_cooperative.cooperative_plan
    layout = plan(1024, "float32", multiprocessors=132, batch=64)
    # 32 KB of W and 16 KB of partial sums per block; 16 tiles of 4 batch rows, 16 slices of 64 terms
    assert (layout.rows, layout.blocks, layout.virtual, layout.tile, layout.slices) == (8, 128, 1, 4, 16), layout
    assert layout.launch == (128, 256) and layout.shared_bytes(1024, 4) == 48 * 1024
    assert plan(1024, "float32", 132, batch=256).slices == 4  # 64 tiles: 4 slices of 256 terms, one chunk
    assert plan(1024, "float32", 114, batch=64).tile == 2  # 9 rows of W per block leave room for 2 batch rows
    assert plan(256, "float32", 132, batch=1)[:6] == (2, 128, 256, 1, 1, 64)  # one tile, 64 slices of 4 terms
    with pytest.raises(ValueError, match="H = 1024 in float64 over 128 blocks needs 73728 bytes"):
        plan(1024, "float64", multiprocessors=132)


def test_gpu_layouts_fit_a_block_and_keep_small_matrices_in_registers(monkeypatch):
    from rnnspec.kernels import cuda_kernels as device_code
    from rnnspec.spec.bench_cuda import GPU_SIZES

    monkeypatch.setattr(device_code, "MAX_THREADS", 1024)  # what a GPU block has, not the simulator's 8
    for _T, B, _I, H in GPU_SIZES:
        for dtype, itemsize in (("float32", 4), ("float64", 8)):
            layout = device_code.plan(H, B, dtype, multiprocessors=132)
            assert layout.threads <= 1024 and layout.lanes * layout.per_thread >= H, layout
            assert layout.split * layout.chunk >= H and layout.held % device_code.HELD_GROUP == 0
            assert layout.resident or (layout.chunk - layout.held) % device_code.STREAM_GROUP == 0, layout
            shared = (2 * layout.rows * layout.split * layout.chunk
                      + (layout.split * layout.rows * H if layout.split > 1 else 0)
                      + (2 * layout.ahead * layout.rows * H if layout.ahead > 1 else 0)) * itemsize
            assert shared <= device_code.SHARED_LIMIT, (layout, shared)
            assert layout.held * itemsize // 4 <= device_code.REGISTER_WORDS
            in_registers = layout.held * layout.threads / (H * H)
            if H <= 128:  # all of M in registers
                assert in_registers == 1.0, (H, dtype, layout)
            elif H == 256:  # over a third of M in float32 (the rest, 160 KB, can stay in L1)
                assert in_registers >= {"float32": 0.375, "float64": 0.18}[dtype], (H, dtype, layout)
            else:
                assert layout.held == 0, (H, dtype, layout)
            assert layout.rows == (1 if B <= 132 else 2), layout
            assert layout.ahead == 1, layout
            if H <= 128:  # the fewest threads that hold all of M: 64 words of it per thread
                assert layout.split == H * itemsize // 4 // 64, layout
    with pytest.raises(ValueError, match="H = 8192 in float64 needs 131072 bytes of shared memory"):
        device_code.plan(8192, 1, "float64", multiprocessors=132)


@pytest.mark.parametrize("splits", [1, 3])
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, False), (False, True), (True, True)])
def test_matrix_products_every_transpose_and_split_of_the_inner_dimension(trans_a, trans_b, splits):
    from numba import cuda

    from rnnspec.kernels.cuda_gemm import matmul_into

    rng = np.random.default_rng(7)
    rows, cols, inner = 11, 9, 37  # not multiples of any tile: every edge guard is taken
    a = rng.standard_normal((inner, rows) if trans_a else (rows, inner))
    b = rng.standard_normal((cols, inner) if trans_b else (inner, cols))
    out = cuda.to_device(np.full((rows, cols), np.nan))  # every entry must be written
    matmul_into(cuda.to_device(a), cuda.to_device(b), out, trans_a, trans_b, splits)
    want = (a.T if trans_a else a) @ (b.T if trans_b else b)
    np.testing.assert_allclose(out.copy_to_host(), want, rtol=1e-12, atol=1e-12,
                               err_msg=f"trans_a={trans_a} trans_b={trans_b} splits={splits}")


def test_device_arrays_in_device_arrays_out_and_no_bias():
    from numba import cuda

    a = _args("float64")
    dev = {k: cuda.to_device(v) for k, v in a.items() if k != "y"}
    h = cuda_kernels.elman_forward(dev["x"], dev["h0"], dev["U"], dev["W"], None)
    assert hasattr(h, "copy_to_host")
    np.testing.assert_allclose(h.copy_to_host(), elman_forward(a["x"], a["h0"], a["U"], a["W"], None), 1e-12)


def test_results_are_not_overwritten_by_later_calls_that_reuse_scratch():
    """Scratch arrays are reused from call to call (cuda_arrays); what a call returned on the device
    must stay as it was when later calls, of the same shapes or others, run."""
    from numba import cuda

    from rnnspec.kernels import cuda_arrays

    first, second = _args("float64"), small_arrays("float64", T=3, B=5, I=2, H=6, K=3, recurrent_scale=0.4, seed=9)
    names = ("x", "h0", "U", "W", "b")
    on_device = lambda a: {k: cuda.to_device(a[k]) for k in (*names, "gh", "V", "c")}
    kept = cuda_kernels.elman_backward(*(on_device(first)[k] for k in (*names, "gh")))
    _, kept_loss_grads = cuda_kernels.elman_loss(*(on_device(first)[k] for k in (*names, "V", "c")), first["y"])
    held = cuda_arrays.scratch_bytes()
    assert held > 0
    cuda_kernels.elman_backward(*(on_device(second)[k] for k in (*names, "gh")))
    cuda_kernels.elman_loss(*(on_device(second)[k] for k in (*names, "V", "c")), second["y"])
    assert cuda_arrays.scratch_bytes() == held, "same shapes: the scratch arrays are reused, not added to"
    longer = small_arrays("float64", T=7, B=5, I=2, H=6, K=3, recurrent_scale=0.4, seed=5)
    cuda_kernels.elman_backward(*(on_device(longer)[k] for k in (*names, "gh")))
    want = elman_backward(*(first[k] for k in names), first["gh"])
    _, want_loss_grads = elman_loss(*(first[k] for k in (*names, "V", "c")), first["y"])
    for got, expected, what in ((kept, want, "VJP"), (kept_loss_grads, want_loss_grads, "loss")):
        for key in expected:
            np.testing.assert_allclose(got[key].copy_to_host(), expected[key], rtol=1e-12, atol=1e-12,
                                       err_msg=f"{what} gradient of {key} changed by later calls")
    cuda_arrays.release_scratch()
    assert cuda_arrays.scratch_bytes() == 0


def test_strided_device_arrays_are_read_in_place_and_left_unchanged():
    """A strided device array (a slice, a transposed view) cannot be reshaped without a copy on a GPU;
    the kernels copy it on the device into a contiguous array and never write to the caller's."""
    from numba import cuda

    from rnnspec.kernels import cuda_arrays

    a = _args("float64")
    T, B, I = a["x"].shape
    wide_x = cuda.to_device(np.concatenate([a["x"], np.full_like(a["x"], np.nan)], axis=2))
    # columns of a wider array (a device array's .T is a copy on a GPU, a view under the simulator)
    wide_U = cuda.to_device(np.concatenate([a["U"], np.full_like(a["U"], np.nan)], axis=1))
    wide_gh = cuda.to_device(np.concatenate([np.full_like(a["gh"], np.nan), a["gh"]], axis=1))
    x, U, gh = wide_x[:, :, :I], wide_U[:, :I], wide_gh[:, B:, :]
    assert not (x.is_c_contiguous() or U.is_c_contiguous() or gh.is_c_contiguous() or U[:, 0].is_c_contiguous())
    for strided, values in ((x, a["x"]), (U, a["U"]), (gh, a["gh"]), (x[1], a["x"][1]), (U[:, 0], a["U"][:, 0])):
        copy = cuda_arrays.contiguous(strided)  # 3, 2 and 1 dimensions
        assert copy.is_c_contiguous() and copy.shape == values.shape
        np.testing.assert_array_equal(copy.copy_to_host(), values)
    before = {"x": wide_x.copy_to_host(), "U": wide_U.copy_to_host(), "gh": wide_gh.copy_to_host()}
    rest = {k: cuda.to_device(a[k]) for k in ("h0", "W", "b")}
    got = cuda_kernels.elman_backward(x, rest["h0"], U, rest["W"], rest["b"], gh)
    want = elman_backward(a["x"], a["h0"], a["U"], a["W"], a["b"], a["gh"])
    for key in want:
        np.testing.assert_allclose(got[key].copy_to_host(), want[key], rtol=1e-12, atol=1e-12, err_msg=key)
    for name, array in (("x", wide_x), ("U", wide_U), ("gh", wide_gh)):
        np.testing.assert_array_equal(array.copy_to_host(), before[name], err_msg=f"{name} was written to")


@pytest.mark.skipif(SIMULATED, reason="CUDA torch tensors need a GPU: runs in scripts/gpu_check.sh")
def test_cuda_array_interface_objects_are_viewed_not_rejected():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.fail("a GPU run without a CUDA build of torch cannot check __cuda_array_interface__ inputs")
    a = _args("float32")
    names = ("x", "h0", "U", "W", "b", "gh")
    tensors = {k: torch.from_numpy(a[k]).cuda() for k in names}
    tensors["U"] = torch.from_numpy(np.ascontiguousarray(a["U"].T)).cuda().T  # strided
    got = cuda_kernels.elman_backward(*(tensors[k] for k in names))
    want = elman_backward(*(a[k] for k in names))
    for key in want:
        np.testing.assert_allclose(got[key].copy_to_host(), want[key], rtol=2e-5, atol=2e-5, err_msg=key)


def test_bad_input_is_rejected_before_any_launch():
    a = _args("float64")
    with pytest.raises(TypeError, match="W: dtype float32 differs"):
        cuda_kernels.elman_forward(a["x"], a["h0"], a["U"], a["W"].astype(np.float32), a["b"])
    with pytest.raises(ValueError, match=r"targets: class indices"):
        cuda_kernels.elman_loss(a["x"], a["h0"], a["U"], a["W"], a["b"], a["V"], a["c"], a["y"] + 5)


def test_rnnspec_cuda_target_is_conformant_on_small_cases():
    cases = [Case(T=3, B=5, I=2, H=6, K=3, activation="tanh", dtype="float32", regime="contracting", seed=1),
             Case(T=4, B=2, I=3, H=5, K=4, activation="tanh", dtype="float64", regime="saturating", seed=2),
             Case(T=2, B=1, I=1, H=3, K=2, activation="relu", dtype="float64", regime="large-logits", seed=3),
             Case(T=5, B=3, I=2, H=4, K=3, activation="sigmoid", dtype="float32", regime="chaotic", seed=4)]
    report = check(load_target("rnnspec-cuda"), target="rnnspec-cuda", cases=cases)
    assert report.conformant, [(r.clause.id, r.status, r.worst and r.worst.message) for r in report.results
                               if r.status != "passed"]


def test_the_cuda_target_runs_in_a_spawned_worker(monkeypatch):
    """Where the process already holds a CUDA context (as on a GPU after any other kernel call) the
    worker is spawned, so the target must pickle; the first GPU runs failed here ("CUDA initialized
    before forking": the target held the kernels module, which does not pickle, so it was forked)."""
    from rnnspec.spec import worker

    monkeypatch.setattr(worker, "_cuda_initialized", lambda: True)
    target = load_target("rnnspec-cuda")
    assert worker.start_method(target) == "spawn"
    case = Case(T=2, B=1, I=1, H=3, K=2, activation="tanh", dtype="float64", regime="contracting", seed=3)
    report = check(target, target="rnnspec-cuda", cases=[case], clauses=["ELMAN-FWD-H", "ELMAN-VJP-W"])
    statuses = {r.clause.id: (r.status, r.worst and r.worst.message) for r in report.results}
    assert {k: v[0] for k, v in statuses.items()} == {"ELMAN-FWD-H": "passed", "ELMAN-VJP-W": "passed"}, statuses


def test_gpu_benchmark_measurements_run_under_the_simulator(monkeypatch):
    """Everything of ``rnnspec bench --device cuda`` at a tiny size, the torch side on the CPU: a bug
    here would otherwise first show on a lent GPU, whose minutes are few."""
    pytest.importorskip("torch")
    from rnnspec.spec import bench_cuda

    size = (3, 2, 2, 5)
    monkeypatch.setattr(bench_cuda, "VARIANTS", {size: ({"split": 2, "held": 0}, {"split": 1, "held": 4},
                                                        {"cooperative": True, "blocks": 2}, {"lean_launch": True})})
    torch_rnn = bench_cuda.cudnn_calls(*size, device="cpu")  # torch's CPU RNN: the same mapping
    ours = bench_cuda.rnnspec_timings(*size, repeats=1, cudnn=torch_rnn)
    assert set(ours) == {"rnnspec_first_train_s", "rnnspec_forward_s", "rnnspec_train_s", "cudnn_forward_s",
                         "cudnn_train_s", "forward_ratio_vs_cudnn", "train_ratio_vs_cudnn",
                         "rnnspec_train_fresh_scratch_s"}, ours
    assert all(t > 0 for t in ours.values()), ours
    assert ours["train_ratio_vs_cudnn"] == ours["cudnn_train_s"] / ours["rnnspec_train_s"], ours
    errors = bench_cuda.correctness(*size, cudnn=torch_rnn["gradients"]())
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
    assert rows[3].get("lean_launch") is True and not any(r.get("lean_launch") for r in rows[:3]), rows
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
    assert "x cuDNN), fwd+bwd" in line and " lean launch: recurrence fwd" in line, line
    from rnnspec.kernels import cuda_launch

    assert cuda_launch.LEAN_LAUNCH is False  # set for its variant only


def test_gpu_benchmark_command_runs_as_the_gpu_script_runs_it(monkeypatch, tmp_path, capsys):
    """``rnnspec bench --device cuda --variants --json`` as scripts/gpu_check.sh runs it, at one
    tiny size, torch's side on the CPU: the table with its verdict, the variants, the JSON report."""
    import json

    pytest.importorskip("torch")
    from rnnspec.spec import bench_cuda, cli

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
    assert report["schema"] == "rnnspec.bench-cuda/5" and len(report["results"]) == 1, report
    row = report["results"][0]
    assert row["correct"] is True and row["train_ratio_vs_cudnn"] > 0 and len(row["variants"]) == 1, row
    assert row["variants"][0]["train_ratio_vs_cudnn"] > 0, row


def test_timed_calls_alternate_in_blocks_after_a_shared_warm_up(monkeypatch):
    """The two sides of a ratio are warmed up together and timed in blocks, A B B A, so that an
    idle GPU's low clock or a drift cannot favour the side timed second."""
    from rnnspec.spec import bench_cuda

    monkeypatch.setattr(bench_cuda, "CLOCK_WARMUP_S", 0.0)
    order = []
    calls = {name: (lambda name=name: order.append(name), lambda: None) for name in ("ours", "cudnn")}
    times = bench_cuda._interleaved(calls, repeats=4)
    assert order == ["ours", "cudnn"] + ["ours"] * 2 + ["cudnn"] * 4 + ["ours"] * 2, order
    assert set(times) == {"ours", "cudnn"} and all(t >= 0 for t in times.values()), times


def test_launch_configurations_are_made_once_on_a_gpu(monkeypatch):
    """On a GPU each (kernel, grid, block) is configured once and the configuration reused; the
    simulator's kernel[grid, block] reconfigures the kernel object itself, so there it is redone."""
    from rnnspec.kernels import cuda_launch

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


LEAN_LAYOUT_CHECK = r"""
import numpy as np
from rnnspec.kernels.numpy_compat import cuda_module
cuda_module()
from numba.cuda import dispatcher, types
from numba.cuda.cudadrv.devicearray import _StridedLayoutShim, _StridedMemoryViewShim
from rnnspec.kernels.cuda_launch import parameters

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


@pytest.mark.skipif(SIMULATED, reason="the lean launch path exists on a GPU only (the simulator launches itself)")
def test_lean_launch_gives_the_same_results_on_a_gpu(monkeypatch):
    from rnnspec.kernels import cuda_launch

    monkeypatch.setattr(cuda_launch, "LEAN_LAUNCH", True)
    monkeypatch.setattr(cuda_launch, "_PLANS", {})
    a = _args("float32")
    for _ in range(2):  # the first call plans each launch through numba-cuda, the second uses the plans
        _assert_forward_and_vjp_match_the_cpu(a, "float32", "tanh", "lean launch")
        loss, grads = cuda_kernels.elman_loss(a["x"], a["h0"], a["U"], a["W"], a["b"], a["V"], a["c"], a["y"])
        want_loss, want_grads = elman_loss(a["x"], a["h0"], a["U"], a["W"], a["b"], a["V"], a["c"], a["y"])
        assert abs(loss - want_loss) <= 2e-5 * abs(want_loss)
        for key in want_grads:
            np.testing.assert_allclose(grads[key], want_grads[key], rtol=2e-5, atol=2e-5, err_msg=key)
    assert cuda_launch._PLANS and all(cuda_launch._PLANS.values()), cuda_launch._PLANS
