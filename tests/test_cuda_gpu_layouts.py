"""The GPU's own layouts, run under the simulator before any GPU time is spent (slow: minutes).

tests/test_cuda.py takes every branch of the kernels at small H with the simulator's small blocks
(8 threads, GEMM tiles of 4 x 4 threads). Here each benchmark size runs with the layout that plan()
chooses for a 132-multiprocessor GPU (blocks of up to 1024 threads, GEMM tiles of 16 x 16 threads
with 4 x 4 outputs each), at its full H for T = 2 steps and a few batch rows (one block more than a
full one where a block takes several rows): index arithmetic that only those sizes reach (a 1024-wide
chunk, 48 of 128 terms in registers) is checked here rather than first on a lent GPU. Run with
``python -m pytest -m slow tests/test_cuda_gpu_layouts.py``.
"""

import numpy as np
import pytest

from strategies import rel_err, small_arrays

cuda = pytest.importorskip("rnnspec.kernels.cuda", reason="numba-cuda is not installed (pip install .[cuda])")

from rnnspec.kernels import elman_backward
from rnnspec.kernels.cuda import cooperative as cuda_cooperative
from rnnspec.kernels.cuda import elman as cuda_kernels
from rnnspec.kernels.cuda import gemm as cuda_gemm
from rnnspec.kernels.cuda.bench import FLOAT32_FLOOR, GPU_SIZES
from rnnspec.kernels.numpy_compat import SIMULATED

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not SIMULATED, reason="the simulator standing in for a GPU; a GPU runs test_cuda")]

MULTIPROCESSORS = 132  # an H100 SXM or H200


@pytest.fixture
def gpu_constants(monkeypatch):
    """The GPU's block sizes in the simulator; the kernels compiled with the simulator's are dropped
    before and after (their closures hold the sizes)."""
    monkeypatch.setattr(cuda_kernels, "MAX_THREADS", 1024)
    monkeypatch.setattr(cuda_cooperative, "THREADS", 256)
    for name, value in (("TILE", 16), ("PER", 4), ("BK", 16), ("SPLIT_TERMS", 128)):
        monkeypatch.setattr(cuda_gemm, name, value)
    monkeypatch.setattr(cuda, "TILE", 16)
    cuda_gemm.clear_compiled()
    cuda._planned.cache_clear()
    yield
    cuda_gemm.clear_compiled()
    cuda._planned.cache_clear()


def _check(dtype: str, batch: int, hidden: int, context: str, test_id: str) -> None:
    """elman_backward, in the layout that LAYOUT_OVERRIDE forces, against the CPU kernels in float64
    at T = 2: float64 to 1e-12 relative; float32 within the GPU bench's verdict (max(1e-4, 10x the
    CPU kernels' float32 error on the same case))."""
    a = small_arrays(dtype, T=2, B=batch, I=5, H=hidden, K=3, recurrent_scale=1 / np.sqrt(hidden))
    step = [a[k] for k in ("x", "h0", "U", "W", "b")]
    want = elman_backward(*(v.astype(np.float64) for v in step), a["gh"].astype(np.float64))
    got = cuda.elman_backward(*step, a["gh"])
    if dtype == "float64":
        limit = 1e-12
    else:
        cpu32 = elman_backward(*step, a["gh"])
        limit = max(FLOAT32_FLOOR, 10 * max(rel_err(cpu32[k], want[k]) for k in want))
    errors = {k: rel_err(got[k], want[k]) for k in want}
    assert max(errors.values()) <= limit, (
        f"{context}: worst relative error {max(errors.values()):.2e} over the limit {limit:.1e}: {errors}; "
        f"reproduce: python -m pytest -m slow '{test_id}'")


def _sizes():
    """Every size in float64; in float32 where its layout differs (H <= 256: minutes each above)."""
    for T, B, I, H in GPU_SIZES:
        for dtype in ("float64", "float32") if H <= 256 else ("float64",):
            yield pytest.param(B, H, dtype, id=f"{(T, B, I, H)}-{dtype}".replace(" ", ""))


@pytest.mark.parametrize("batch,hidden,dtype", list(_sizes()))
def test_the_gpu_layout_of_each_benchmark_size(gpu_constants, monkeypatch, request, batch, hidden, dtype):
    layout = cuda_kernels.plan(hidden, batch, dtype, MULTIPROCESSORS)
    monkeypatch.setattr(cuda, "LAYOUT_OVERRIDE", {k: getattr(layout, k) for k in ("split", "held", "rows", "ahead")})
    _check(dtype, min(batch, layout.rows + 1), hidden, f"{layout} at B = {batch}, H = {hidden}", request.node.nodeid)


def test_float32_runs_the_float64_layout_where_only_float64_is_run(gpu_constants):
    for _T, B, _I, H in GPU_SIZES:
        if H > 256:
            f32, f64 = (cuda_kernels.plan(H, B, dtype, MULTIPROCESSORS) for dtype in ("float32", "float64"))
            assert f32 == f64, (H, B, f32, f64)


def test_the_cooperative_grid_with_the_gpus_blocks(gpu_constants, monkeypatch, request):
    """256 threads per grid block, 8 rows of W, 4 batch rows per thread and 16 slices of the terms
    (H = 1024's layout at B = 64 on 132 multiprocessors), at H = 16 over two virtual blocks; 70 batch
    rows: a full chunk of 16 tiles, then one of 2 tiles, the last partly past the batch."""
    with monkeypatch.context() as planning:
        planning.setattr(cuda_cooperative, "SIMULATED", False)  # one grid block per launched block
        gpu = cuda_cooperative.cooperative_plan(1024, "float32", MULTIPROCESSORS, batch=64)
    monkeypatch.setattr(cuda, "LAYOUT_OVERRIDE", {"cooperative": True, "blocks": 2, "tile": gpu.tile,
                                                  "slices": gpu.slices})
    here = cuda.layout_for(16, 70, "float32")
    assert (here.threads, here.rows, here.tile, here.slices) == (gpu.threads, gpu.rows, gpu.tile, gpu.slices), here
    _check("float32", 70, 16, f"{here} at B = 70, H = 16", request.node.nodeid)
