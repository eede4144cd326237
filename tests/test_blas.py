"""The kernels' BLAS: the AVX-512 GEMM chosen only when safe, NumPy's own BLAS never touched."""

import json
import subprocess
import sys

import pytest

from rnnspec.kernels.cpu import blas

AVX512 = set(blas.AVX512_NEEDED)


@pytest.mark.parametrize("numpy_core, flags, environ, loaded, forced, why", [
    ("Haswell", AVX512, {}, False, "SKYLAKEX", "detects Haswell on a CPU with AVX-512"),
    ("Zen", AVX512 | {"avx2"}, {}, False, "SKYLAKEX", "detects Zen"),
    ("SkylakeX", AVX512, {}, False, None, "nothing better to choose"),
    ("Cooperlake", AVX512, {}, False, None, "nothing better to choose"),
    ("Haswell", AVX512 - {"avx512bw"}, {}, False, None, "the CPU lacks avx512bw"),
    ("Haswell", AVX512, {"OPENBLAS_CORETYPE": "HASWELL"}, False, None, "set by the user"),
    ("Haswell", AVX512, {"RNNSPEC_OPENBLAS": "default"}, False, None, "RNNSPEC_OPENBLAS=default"),
    ("Haswell", AVX512, {}, True, None, "loaded before rnnspec.kernels"),
    (None, AVX512, {}, False, None, "an unknown core"),
])
def test_the_avx512_gemm_is_chosen_only_when_safe_and_better(numpy_core, flags, environ, loaded, forced, why):
    got, reason = blas.decide(numpy_core, flags, environ, loaded)
    assert got == forced and why in reason, (got, reason)


EMULATED_HASWELL = """
import os, json
os.environ["OPENBLAS_CORETYPE"] = "HASWELL"  # NumPy loads as on a machine OpenBLAS reads as Haswell
import numpy
del os.environ["OPENBLAS_CORETYPE"]
import rnnspec.kernels
from rnnspec.kernels.cpu import blas
print(json.dumps({**blas.report(), "left_in_environment": os.environ.get("OPENBLAS_CORETYPE")}))
"""


@pytest.mark.skipif(not AVX512 <= blas.cpu_flags(), reason="the CPU has no AVX-512")
def test_numpy_first_on_an_avx2_detected_machine_keeps_its_blas_and_the_kernels_get_avx512():
    out = subprocess.run([sys.executable, "-c", EMULATED_HASWELL], capture_output=True, text=True, check=True)
    report = json.loads(out.stdout)
    assert report["numpy_blas_core"] == "Haswell", report  # the user's NumPy is as they loaded it
    assert report["kernels_blas_core"] == "SkylakeX" and report["kernels_blas_forced"] == "SKYLAKEX", report
    assert report["left_in_environment"] is None, report


@pytest.mark.parametrize("kernels_better", [False, True])
def test_the_elman_large_regime_gives_the_same_results_through_either_blas(kernels_better, monkeypatch):
    """blas.matmul's two libraries: the Elman kernels' large regime (products around jitted loops)
    agrees with its all-in-Numba regime through either."""
    import numpy as np

    from rnnspec.kernels import elman_loss
    from rnnspec.kernels.cpu import elman

    rng = np.random.default_rng(0)
    T, B, I, H, K = 4, 3, 5, 6, 4
    args = [rng.standard_normal(s) * 0.4 for s in ((T, B, I), (B, H), (H, I), (H, H), (H,), (K, H), (K,))]
    targets = rng.integers(0, K, (T, B))
    want = elman_loss(*args, targets)
    monkeypatch.setitem(blas._decision, "forced", "SKYLAKEX" if kernels_better else None)
    monkeypatch.setattr(elman, "LARGE_STEP", 0)
    got = elman_loss(*args, targets)
    assert abs(got[0] - want[0]) <= 1e-12 * abs(want[0])
    for key in want[1]:
        np.testing.assert_allclose(got[1][key], want[1][key], rtol=1e-11, atol=1e-13, err_msg=key)
