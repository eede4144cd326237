"""``rnnspec bench --device cuda``: the CUDA kernels against torch.nn.RNN (cuDNN), in one process.

For each size (T, B, I, H): correctness first (float64 against the oracle where the oracle is quick,
float32 against the CPU kernels in float64, which the tests check against the oracle), then
forward and forward+backward times, median of ``repeats`` after a warm-up, each timed call
synchronised. forward+backward is the VJP for a cotangent on every h_t (dL/dx, dh0, dU, dW, db) on
both sides. Device arrays throughout: no host transfers are timed.
"""

from __future__ import annotations

import time

import numpy as np

GPU_SIZES = ((1000, 1, 64, 64), (1000, 1, 128, 128), (100, 32, 64, 128), (1000, 1, 256, 256), (100, 64, 256, 256),
             (50, 64, 512, 1024), (100, 256, 1024, 1024))
ORACLE_LIMIT = 2_000_000  # T*B*H*H multiply-adds up to which the float64 oracle is run


def _case(T, B, I, H, dtype, seed=0):
    rng = np.random.default_rng(seed)
    f = lambda a: np.ascontiguousarray(a, dtype=dtype)
    return {"x": f(rng.standard_normal((T, B, I))), "h0": f(rng.standard_normal((B, H)) * 0.1),
            "U": f(rng.standard_normal((H, I)) / np.sqrt(I)), "W": f(rng.standard_normal((H, H)) / np.sqrt(H)),
            "b": f(rng.standard_normal(H) * 0.1), "gh": f(rng.standard_normal((T, B, H)))}


def _relative(got, want) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-300))


def correctness(T, B, I, H) -> dict:
    from rnnspec.kernels import cuda as gpu
    from rnnspec.kernels import elman_backward

    out = {}
    c64 = _case(T, B, I, H, "float64")
    step = (c64["x"], c64["h0"], c64["U"], c64["W"], c64["b"])
    got64 = gpu.elman_backward(*step, c64["gh"])
    if T * B * H * H <= ORACLE_LIMIT:
        from rnnspec.derivations.oracle import Oracle

        want = Oracle().vjp(c64["x"], {"h0": c64["h0"]}, {k: c64[k] for k in ("U", "W", "b")}, {"h": c64["gh"]})
        out["float64_vs_oracle"] = max(_relative(got64[k], want[k]) for k in want)
    want64 = elman_backward(*step, c64["gh"])
    out["float64_vs_cpu"] = max(_relative(got64[k], want64[k]) for k in want64)
    c32 = _case(T, B, I, H, "float32")
    got32 = gpu.elman_backward(c32["x"], c32["h0"], c32["U"], c32["W"], c32["b"], c32["gh"])
    want32 = elman_backward(*(c32[k].astype(np.float64) for k in ("x", "h0", "U", "W", "b")),
                            c32["gh"].astype(np.float64))
    out["float32_vs_cpu_float64"] = max(_relative(got32[k], want32[k]) for k in want32)
    return out


def _median(call, sync, repeats) -> float:
    call()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        sync()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def timings(T, B, I, H, repeats) -> dict:
    import torch
    from numba import cuda

    from rnnspec.kernels import cuda as gpu

    c = _case(T, B, I, H, "float32")
    dev = {k: cuda.to_device(v) for k, v in c.items()}
    step = (dev["x"], dev["h0"], dev["U"], dev["W"], dev["b"])
    rnn = torch.nn.RNN(I, H).cuda()
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(torch.from_numpy(c["U"]))
        rnn.weight_hh_l0.copy_(torch.from_numpy(c["W"]))
        rnn.bias_ih_l0.copy_(torch.from_numpy(c["b"]))
        rnn.bias_hh_l0.zero_()
    x = torch.from_numpy(c["x"]).cuda()
    h0 = torch.from_numpy(c["h0"]).cuda()[None]
    gh = torch.from_numpy(c["gh"]).cuda()

    def torch_forward():
        with torch.no_grad():
            rnn(x, h0)

    def torch_train():
        rnn.zero_grad(set_to_none=True)
        xg, hg = x.clone().requires_grad_(True), h0.clone().requires_grad_(True)
        out, _ = rnn(xg, hg)
        out.backward(gh)

    return {
        "rnnspec_forward_s": _median(lambda: gpu.elman_forward(*step), cuda.synchronize, repeats),
        "rnnspec_train_s": _median(lambda: gpu.elman_backward(*step, dev["gh"]), cuda.synchronize, repeats),
        "cudnn_forward_s": _median(torch_forward, torch.cuda.synchronize, repeats),
        "cudnn_train_s": _median(torch_train, torch.cuda.synchronize, repeats),
    }


def run(repeats: int = 20, sizes=GPU_SIZES, progress=print) -> dict:
    import torch
    from numba import cuda

    report = {"schema": "rnnspec.bench-cuda/1", "gpu": cuda.get_current_device().name.decode()
              if isinstance(cuda.get_current_device().name, bytes) else str(cuda.get_current_device().name),
              "torch": torch.__version__, "cudnn": torch.backends.cudnn.version(), "results": []}
    for T, B, I, H in sizes:
        row = {"T": T, "B": B, "I": I, "H": H, "dtype": "float32"}
        try:
            row["correctness"] = correctness(T, B, I, H)
            row.update(timings(T, B, I, H, repeats))
            row["forward_ratio_vs_cudnn"] = row["cudnn_forward_s"] / row["rnnspec_forward_s"]
            row["train_ratio_vs_cudnn"] = row["cudnn_train_s"] / row["rnnspec_train_s"]
        except Exception as exc:  # record and go on: one size must not lose the others
            row["error"] = f"{type(exc).__name__}: {exc}"
        report["results"].append(row)
        progress(table_row(row))
    return report


def table_row(r: dict) -> str:
    size = f"({r['T']}, {r['B']}, {r['I']}, {r['H']})"
    if "error" in r:
        return f"{size:24s} ERROR {r['error']}"
    corr = " ".join(f"{k}={v:.1e}" for k, v in r["correctness"].items())
    return (f"{size:24s} fwd {r['rnnspec_forward_s'] * 1e3:8.3f} ms vs cuDNN {r['cudnn_forward_s'] * 1e3:8.3f} ms "
            f"({r['forward_ratio_vs_cudnn']:.2f}x)  fwd+bwd {r['rnnspec_train_s'] * 1e3:8.3f} ms vs "
            f"{r['cudnn_train_s'] * 1e3:8.3f} ms ({r['train_ratio_vs_cudnn']:.2f}x)  {corr}")
