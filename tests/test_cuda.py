"""The CUDA kernels against the oracle and the CPU kernels, under numba-cuda's simulator in CI.

The simulator runs every GPU thread as a Python thread, so the sizes here are small; the GPU run
(scripts/gpu_check.sh) covers the real sizes.
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


DTYPES = [("float64", "tanh"), ("float32", "relu")]


def _alternating(layouts, dtypes):
    """Every (layout, dtype) pair: in CI each layout with one dtype, taking turns; the rest behind -m slow
    (the simulator runs each GPU thread as a Python thread: each pair costs seconds)."""
    return [pytest.param(layout, *pair, marks=[] if k == n % len(dtypes) else [pytest.mark.slow],
                         id="-".join(f"{key}={v}" for key, v in layout.items()) + f"-{pair[0]}")
            for n, layout in enumerate(layouts) for k, pair in enumerate(dtypes)]


@pytest.mark.parametrize("layout,dtype,activation", _alternating(LAYOUTS, DTYPES))
def test_every_recurrence_layout_matches_the_cpu_kernels(monkeypatch, layout, dtype, activation):
    monkeypatch.setattr(cuda_kernels, "LAYOUT_OVERRIDE", layout)
    a = small_arrays(dtype, T=7, B=5, I=2, H=6, K=3, recurrent_scale=0.4)
    chosen = cuda_kernels.layout_for(a["W"].shape[0], a["x"].shape[1], dtype)
    assert all(getattr(chosen, k) == v for k, v in layout.items()), chosen
    _assert_match_the_cpu_at_every_length(a, dtype, activation, chosen)


def test_inputs_one_step_ahead_unless_groups_are_forced():
    """plan() loads each step's inputs one step ahead (staged groups ran slower on the H200 at
    H = 64); groups of up to MAX_AHEAD steps when forced, where their shared memory fits."""
    from rnnspec.kernels.cuda import elman as device_code

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


@pytest.mark.parametrize("forced,dtype,activation",
                         _alternating(COOPERATIVE, [("float64", "tanh"), ("float32", "sigmoid")]))
def test_cooperative_grid_matches_the_cpu_kernels(monkeypatch, forced, dtype, activation):
    """W spread over the blocks of a cooperative grid, one grid sync per step; the terms of each dot
    product split over slices of threads and summed in a tree. Under the simulator the grid's blocks
    run as virtual blocks of one launched block (rnnspec.kernels.cuda.cooperative)."""
    from rnnspec.kernels.cuda.cooperative import CooperativeLayout

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
    from rnnspec.kernels.cuda.cooperative import CooperativeLayout
    from rnnspec.kernels.cuda.elman import Layout

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
    from rnnspec.kernels.cuda import cooperative as cuda_cooperative

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
    from rnnspec.kernels.cuda import elman as device_code
    from rnnspec.kernels.cuda.bench import GPU_SIZES

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

    from rnnspec.kernels.cuda.gemm import matmul_into

    rng = np.random.default_rng(7)
    rows, cols, inner = 11, 9, 37  # not multiples of any tile: every edge guard is taken
    a = rng.standard_normal((inner, rows) if trans_a else (rows, inner))
    b = rng.standard_normal((cols, inner) if trans_b else (inner, cols))
    out = cuda.to_device(np.full((rows, cols), np.nan))  # every entry must be written
    matmul_into(cuda.to_device(a), cuda.to_device(b), out, trans_a, trans_b, splits)
    want = (a.T if trans_a else a) @ (b.T if trans_b else b)
    np.testing.assert_allclose(out.copy_to_host(), want, rtol=1e-12, atol=1e-12,
                               err_msg=f"trans_a={trans_a} trans_b={trans_b} splits={splits}")


@pytest.mark.parametrize("splits", [1, 2])
@pytest.mark.parametrize("wider", ["first", "second"])
def test_a_pair_of_products_in_one_launch_as_two_apart(splits, wider):
    """dU = deltas^T X and dW = deltas^T H as the backward pass launches them, one product with more
    column tiles than the other (either way round: the grid covers the wider one) and more than one
    row tile: each product bit for bit what it is when launched alone."""
    from numba import cuda

    from rnnspec.kernels.cuda.gemm import matmul_into, matmul_pair_into

    rng = np.random.default_rng(3)
    inner, rows = 9, 11  # with the simulator's 8 x 8 tiles: 2 row tiles, 2 and 1 column tiles
    cols = (13, 5) if wider == "first" else (5, 13)
    a = cuda.to_device(rng.standard_normal((inner, rows)))
    bs = [cuda.to_device(rng.standard_normal((inner, n))) for n in cols]
    outs = [cuda.to_device(np.full((rows, n), np.nan)) for n in cols]
    matmul_pair_into(a, (bs[0], outs[0], None), (bs[1], outs[1], None), True, False, splits)
    for b, out, n in zip(bs, outs, cols):
        alone = cuda.to_device(np.full((rows, n), np.nan))
        matmul_into(a, b, alone, True, False, splits)
        np.testing.assert_array_equal(out.copy_to_host(), alone.copy_to_host(), err_msg=f"{n} columns")
        np.testing.assert_allclose(alone.copy_to_host(), a.copy_to_host().T @ b.copy_to_host(), rtol=1e-12)


def test_the_three_products_of_the_deltas_in_one_launch_as_three_apart():
    """dx = D U, dU = D^T X and dW = D^T H as one launch when none is split: the grid covers the
    tallest (dx) and the widest (dW); each product bit for bit what it is launched alone."""
    from numba import cuda

    from rnnspec.kernels.cuda.gemm import deltas_products_into, matmul_into

    rng = np.random.default_rng(5)
    rows, hidden, inputs = 19, 10, 5  # 8 x 8 tiles: dx 3 x 1, dU 2 x 1, dW 2 x 2
    d, u, x, h = (cuda.to_device(rng.standard_normal(shape))
                  for shape in ((rows, hidden), (hidden, inputs), (rows, inputs), (rows, hidden)))
    shapes = {"dx": (rows, inputs), "dU": (hidden, inputs), "dW": (hidden, hidden)}
    outs = {k: cuda.to_device(np.full(v, np.nan)) for k, v in shapes.items()}
    deltas_products_into(d, (u, outs["dx"]), (x, outs["dU"]), (h, outs["dW"]))
    for name, right, trans_a in (("dx", u, False), ("dU", x, True), ("dW", h, True)):
        alone = cuda.to_device(np.full(shapes[name], np.nan))
        matmul_into(d, right, alone, trans_a, False, 1)
        np.testing.assert_array_equal(outs[name].copy_to_host(), alone.copy_to_host(), err_msg=name)
        left = d.copy_to_host().T if trans_a else d.copy_to_host()
        np.testing.assert_allclose(alone.copy_to_host(), left @ right.copy_to_host(), rtol=1e-12, err_msg=name)


def test_backward_with_its_products_split(monkeypatch):
    """Long inner dimensions (T*B past UNSPLIT_TERMS) split dU and dW into partial products, the pair
    launch then summed, and dx launched apart: forced here at T*B = 15, against the CPU kernels."""
    from rnnspec.kernels.cuda import gemm as cuda_gemm
    from rnnspec.kernels.cuda import host

    monkeypatch.setattr(cuda_gemm, "UNSPLIT_TERMS", 4)
    monkeypatch.setattr(cuda_gemm, "SPLIT_TERMS", 4)
    monkeypatch.setattr(host, "multiprocessors", lambda: 132)
    launched = []
    monkeypatch.setattr(cuda_kernels, "matmul_pair_into", lambda *args: launched.append(args[-1]) or
                        cuda_gemm.matmul_pair_into(*args))
    a = _args("float64")
    _assert_forward_and_vjp_match_the_cpu(a, "float64", "tanh", "split products")
    assert launched and all(splits > 1 for splits in launched), launched


def test_device_arrays_in_device_arrays_out_and_no_bias():
    from numba import cuda

    a = _args("float64")
    dev = {k: cuda.to_device(v) for k, v in a.items() if k != "y"}
    h = cuda_kernels.elman_forward(dev["x"], dev["h0"], dev["U"], dev["W"], None)
    assert hasattr(h, "copy_to_host")
    np.testing.assert_allclose(h.copy_to_host(), elman_forward(a["x"], a["h0"], a["U"], a["W"], None), 1e-12)


@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize("where", ["host", "device"])
def test_every_result_of_a_call_from_one_allocation(monkeypatch, batch, where):
    """A call's results are carved out of one allocation (cuda_arrays.fresh_arrays), db included
    (written by the backward kernel itself at B = 1, by a column sum above), and come back to the
    host in one transfer: each gradient of the loss against the CPU kernels, and one allocation."""
    import gc

    from numba import cuda

    from rnnspec.kernels.cuda import arrays as cuda_arrays

    carved = []
    monkeypatch.setattr(cuda_kernels, "fresh_arrays",
                        lambda shapes, dtype: carved.append(shapes) or cuda_arrays.fresh_arrays(shapes, dtype))
    a = small_arrays("float64", T=4, B=batch, I=3, H=5, K=3, recurrent_scale=0.4, seed=2)
    names = ("x", "h0", "U", "W", "b", "V", "c")
    args = [cuda.to_device(a[k]) if where == "device" else a[k] for k in names]
    loss, grads = cuda_kernels.elman_loss(*args, a["y"])
    want_loss, want = elman_loss(*(a[k] for k in names), a["y"])
    assert len(carved) == 1 and set(carved[0]) == set(want), carved
    assert abs(loss - want_loss) <= 1e-12 * abs(want_loss)
    gc.collect()  # the allocation outlives the call's own reference to it while any result lives
    cuda_kernels.elman_loss(*args, a["y"])  # and is not handed to a later call meanwhile
    for key in want:
        got = grads[key].copy_to_host() if where == "device" else grads[key]
        assert isinstance(grads[key], np.ndarray) == (where == "host"), key
        np.testing.assert_allclose(got, want[key], rtol=1e-12, atol=1e-12, err_msg=f"{key} B={batch} {where}")


def test_fresh_arrays_are_aligned_disjoint_views_of_one_buffer():
    from rnnspec.kernels.cuda.arrays import copied_to_host, fresh_arrays

    shapes = {"x": (3, 2, 5), "h0": (2, 6), "b": (7,), "none": (0, 4), "W": (6, 6)}
    arrays = fresh_arrays(shapes, "float32")
    assert {k: v.shape for k, v in arrays.items()} == shapes
    ends = sorted((arrays.offsets[k], arrays.offsets[k] + 4 * int(np.prod(s))) for k, s in shapes.items())
    assert all(start % 256 == 0 for start, _ in ends), ends
    assert all(end <= start for (_, end), (start, _) in zip(ends, ends[1:])), ends
    assert ends[-1][1] <= arrays.buffer.size, (ends, arrays.buffer.size)
    for n, (name, array) in enumerate(arrays.items()):  # written one by one: a write into another shows
        if array.size:
            array.copy_to_device(np.full(shapes[name], n, np.float32))
    back = copied_to_host(arrays, {"b": (7, 1)})
    for n, (name, shape) in enumerate(shapes.items()):
        assert back[name].shape == (shape if name != "b" else (7, 1)) and np.all(back[name] == n), (name, back[name])


FRESH_ARRAYS_ON_A_GPU = r"""
import numpy as np
from rnnspec.kernels.cuda import arrays as cuda_arrays
from numba.cuda.cudadrv import driver
from numba.cuda.cudadrv.devicearray import DeviceNDArray
from cuda.bindings import driver as binding

base = 1 << 20  # a device buffer that is never touched: its pointers are only read
cuda_arrays.cuda.device_array = lambda n, dtype: DeviceNDArray(
    (n,), (1,), dtype, gpu_data=driver.MemoryPointer(None, binding.CUdeviceptr(base), n))
shapes = {"x": (3, 2, 5), "h0": (2, 6), "b": (7,)}
arrays = cuda_arrays.fresh_arrays(shapes, "float64")
for name, array in arrays.items():
    interface = array.__cuda_array_interface__
    assert interface["data"][0] == base + arrays.offsets[name], (name, interface)
    assert interface["shape"] == shapes[name] and interface["strides"] is None, interface
    assert interface["typestr"] == "<f8" and array.is_c_contiguous(), interface
print("carved", sorted(arrays.offsets.values()))
"""


def test_fresh_arrays_on_a_gpu_point_into_their_buffer():
    """The GPU's branch of fresh_arrays (numba-cuda device arrays over views of the buffer's device
    memory), run without a GPU over a buffer that is never dereferenced: each array's device pointer
    is the buffer's plus its offset, with its shape and C-contiguous strides."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "0"}
    done = subprocess.run([sys.executable, "-c", FRESH_ARRAYS_ON_A_GPU], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 0 and "carved [0, 256, 512]" in done.stdout, (done.stdout, done.stderr[-3000:])


def test_results_are_not_overwritten_by_later_calls_that_reuse_scratch():
    """Scratch arrays are reused from call to call (cuda_arrays); what a call returned on the device
    must stay as it was when later calls, of the same shapes or others, run."""
    from numba import cuda

    from rnnspec.kernels.cuda import arrays as cuda_arrays

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

    from rnnspec.kernels.cuda import arrays as cuda_arrays

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


@pytest.mark.skipif(SIMULATED, reason="the lean launch path exists on a GPU only (the simulator launches itself)")
def test_lean_launch_gives_the_same_results_on_a_gpu(monkeypatch):
    from rnnspec.kernels.cuda import launches as cuda_launch

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
    plans = cuda_launch.lean_launch_plans()
    assert plans["planned"] == len(cuda_launch._PLANS) > 0 and not plans["fell_back"], plans
