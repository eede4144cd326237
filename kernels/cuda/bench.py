"""``rnnspec bench --device cuda``: the CUDA kernels against torch.nn.RNN (cuDNN), in one process.

For each size (T, B, I, H): the first float32 forward+backward (the cold start, JIT compile
included), then the correctness of the results (float64 against the oracle on the first T' steps,
T' as many as ORACLE_LIMIT allows; float64 against the CPU kernels on all T; float32 against the
CPU kernels in float64, which the tests check against the oracle), and forward and
forward+backward times, median of ``repeats`` after a warm-up, each timed call synchronised, the
two sides timed in alternating blocks (so that both see the same GPU clock).
forward+backward is the VJP for a cotangent on every h_t (dL/dx, dh0, dU, dW, db) on both sides.
Device arrays throughout: no host transfers are timed.

To tell kernel time from host overhead, each size also records the recurrence kernels alone on
prepared arrays, and the run records the cost of launching an empty kernel. With ``variants``, the
sizes in VARIANTS also time other recurrence layouts: the kernels alone and the whole calls, as
ratios to the same cuDNN times, each layout checked against the CPU kernels.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import time

import numpy as np

GPU_SIZES = ((1000, 1, 64, 64), (1000, 1, 128, 128), (100, 32, 64, 128), (1000, 1, 256, 256), (100, 64, 256, 256),
             (50, 64, 512, 1024), (100, 256, 1024, 1024))
ORACLE_LIMIT = 2_000_000  # T'*B*H*H multiply-adds for the float64 oracle check
#: other layouts timed with ``variants``: forced plan() choices (split, held, rows, ahead: any of them
#: turns the cooperative default off) or cooperative_plan() choices, the rest automatic; and SETTINGS
#: (with the default layout unless a layout is given too). The layouts are the runners-up of the
#: GPU runs (benchmarks/gpu_run_4.txt); the settings time what the lean launch and the split of
#: dU and dW's 1000 terms at B = 1 each buy (the defaults since that run)
VARIANTS = {(1000, 1, 64, 64): ({"lean_launch": False, "unsplit_terms": 1024}, {"unsplit_terms": 1024},
                                {"split": 2}, {"ahead": 8}),
            (1000, 1, 128, 128): ({"lean_launch": False, "unsplit_terms": 1024}, {"unsplit_terms": 1024},
                                  {"split": 4}),
            (100, 32, 64, 128): ({"lean_launch": False},),
            (1000, 1, 256, 256): ({"lean_launch": False}, {"split": 2}),  # the streamed single block
            (100, 64, 256, 256): ({"cooperative": True},),
            (50, 64, 512, 1024): ({"cooperative": True, "tile": 2},),
            (100, 256, 1024, 1024): ({"rows": 2},)}
#: variant keys that set a module constant while the variant runs: (module of rnnspec.kernels, name)
SETTINGS = {"lean_launch": ("cuda.launches", "LEAN_LAUNCH"), "unsplit_terms": ("cuda.gemm", "UNSPLIT_TERMS")}
VARIANT_CHECK_LIMIT = 200_000_000  # T'*B*H*H multiply-adds for a variant's float64 check against the CPU


def _case(T, B, I, H, dtype, seed=0):
    rng = np.random.default_rng(seed)
    f = lambda a: np.ascontiguousarray(a, dtype=dtype)
    return {"x": f(rng.standard_normal((T, B, I))), "h0": f(rng.standard_normal((B, H)) * 0.1),
            "U": f(rng.standard_normal((H, I)) / np.sqrt(I)), "W": f(rng.standard_normal((H, H)) / np.sqrt(H)),
            "b": f(rng.standard_normal(H) * 0.1), "gh": f(rng.standard_normal((T, B, H)))}


def _relative(got, want) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if not np.all(np.isfinite(got)):
        return float("inf")
    return float(np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-300))


def _worst(got: dict, want: dict) -> float:
    return max(_relative(got[k], want[k]) for k in want)


def correctness(T, B, I, H, cudnn: dict | None = None, reference=None) -> dict:
    """Worst relative errors, over every gradient, of the CUDA kernels (and of ``cudnn``: torch's
    float32 gradients for the same case, from ``cudnn_calls``) against the references.

    ``reference`` is the oracle's ``vjp`` (the caller passes it: the kernels never import the
    derivations); without it the float64 check against the oracle is left out of the result."""
    from rnnspec.kernels import cuda as gpu
    from rnnspec.kernels import elman_backward

    out = {}
    c64 = _case(T, B, I, H, "float64")
    names = ("x", "h0", "U", "W", "b")
    got64 = gpu.elman_backward(*(c64[k] for k in names), c64["gh"])
    short = max(1, min(T, ORACLE_LIMIT // (B * H * H)))
    cut = {k: (c64[k][:short] if k in ("x", "gh") else c64[k]) for k in c64}
    if reference is not None:
        want = reference(cut["x"], {"h0": cut["h0"]}, {k: cut[k] for k in ("U", "W", "b")}, {"h": cut["gh"]})
        out[f"float64_vs_oracle_T{short}"] = _worst(gpu.elman_backward(*(cut[k] for k in names), cut["gh"]), want)
    out["float64_vs_cpu"] = _worst(got64, elman_backward(*(c64[k] for k in names), c64["gh"]))
    c32 = _case(T, B, I, H, "float32")
    got32 = gpu.elman_backward(*(c32[k] for k in names), c32["gh"])
    want32 = elman_backward(*(c32[k].astype(np.float64) for k in names), c32["gh"].astype(np.float64))
    out["float32_vs_cpu_float64"] = _worst(got32, want32)
    if cudnn is not None:  # the baseline computes the same function, to the same precision
        out["cudnn_float32_vs_cpu_float64"] = _worst(cudnn, want32)
    return out


CLOCK_WARMUP_S = 0.2  # seconds of calls before timing: an idle GPU's clock is low (345 MHz on the H200)


def _interleaved(calls: dict, repeats: int) -> dict:
    """{name: median seconds} for ``calls`` {name: (call, sync)}: warmed up together for
    CLOCK_WARMUP_S (each at least once), then timed in blocks of consecutive calls, in order and
    then in reverse order (A B B A), each call synchronised; the median over both blocks. Both
    sides of a ratio see the same clock and any drift alike, and each runs in a block of its own:
    taking turns call by call slowed both sides' host code (the second GPU run: by 0.2 to 1 ms)."""
    deadline = time.perf_counter() + CLOCK_WARMUP_S
    while True:
        for call, sync in calls.values():
            call()
            sync()
        if time.perf_counter() >= deadline:
            break
    times = {name: [] for name in calls}
    half = max(1, repeats // 2)
    for order in (list(calls), list(calls)[::-1]):
        for name in order:
            call, sync = calls[name]
            for _ in range(half):
                start = time.perf_counter()
                call()
                sync()
                times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t)) for name, t in times.items()}


def _median(call, sync, repeats) -> float:
    return _interleaved({"call": (call, sync)}, repeats)["call"]


def launch_overhead(repeats: int) -> float:
    """Seconds to launch an empty numba-cuda kernel and synchronise (the floor under every launch)."""
    from rnnspec.kernels.numpy_compat import cuda_module

    cuda = cuda_module()

    @cuda.jit
    def empty(out):
        pass

    target = cuda.device_array(1, np.float32)
    return _median(lambda: empty[1, 32](target), cuda.synchronize, repeats)


def recurrence_alone(T, B, I, H, repeats, dtype="float32") -> dict:
    """The two recurrence kernels on prepared device arrays: launch + kernel, no GEMMs, no allocation."""
    from rnnspec.kernels import cuda as gpu

    cuda = gpu.cuda
    c = _case(T, B, I, H, dtype)
    layout = gpu.layout_for(H, B, dtype)
    rng = np.random.default_rng(1)
    states = cuda.to_device(np.tanh(rng.standard_normal((T + 1, B, H))).astype(dtype))
    W, h0, b_row = cuda.to_device(c["W"]), cuda.to_device(c["h0"]), cuda.to_device(c["b"].reshape(1, H))
    M = gpu.recurrent_matrix(W, layout, role="bench: W transposed")  # a role no kernel call shares
    bias_rows, direct = cuda.device_array((B, H), dtype), cuda.to_device(c["gh"])
    deltas, carry = cuda.device_array((T, B, H), dtype), cuda.device_array((B, H), dtype)
    return {"layout": layout._asdict(),
            "forward_recurrence_s": _median(lambda: gpu.forward_recurrence(states, h0, M, b_row, True, layout, 0),
                                            cuda.synchronize, repeats),
            "backward_recurrence_s": _median(lambda: gpu.backward_recurrence(direct, states, W, bias_rows, True,
                                                                             deltas, carry, layout, 0),
                                             cuda.synchronize, repeats)}


def variants(T, B, I, H, repeats, on_row=lambda row: None, baseline: dict | None = None, cudnn=None) -> list[dict]:
    """Other layouts at this size: the recurrence kernels' times, the whole forward and
    forward+backward calls, and float32 results (the timed dtype; some layouts do not fit in
    float64) against the CPU kernels in float64 on the first T' steps (T' <= 200, fewer at large
    B*H*H, at least 3). With ``cudnn`` (from ``cudnn_calls``) the whole calls are timed in blocks
    alternating with cuDNN's, and their ratios recorded, so that a layout that wins can become plan()'s choice on the
    strength of this run; ``baseline`` (the default layout's row) gives the float32 verdict's limit."""
    from rnnspec.kernels import cuda as gpu
    from rnnspec.kernels import elman_backward
    from rnnspec.kernels.cuda import launches as cuda_launch

    overrides = VARIANTS.get((T, B, I, H), ())
    if not overrides:
        return []
    rows = []
    short = min(T, max(3, min(200, VARIANT_CHECK_LIMIT // (B * H * H))))
    c32 = _case(short, B, I, H, "float32")
    names = ("x", "h0", "U", "W", "b", "gh")
    want = elman_backward(*(c32[k].astype(np.float64) for k in names))
    for override in overrides:
        if override.get("lean_launch") and os.environ.get("RNNSPEC_BENCH_WITHOUT_LEAN_LAUNCH"):
            rows.append({"layout": override, "error": "left out: the lean launch failed its GPU test"})
            on_row(rows[-1])
            continue
        try:
            with _variant(override) as settings:
                row = recurrence_alone(T, B, I, H, repeats)
                row.update(settings)
                if settings.get("lean_launch"):  # a launch it could not plan went through numba-cuda
                    row["lean_launch_plans"] = cuda_launch.lean_launch_plans()
                row["check_steps"] = short
                row["float32_vs_cpu_float64"] = _worst(gpu.elman_backward(*(c32[k] for k in names)), want)
                row.update(_whole_call_timings(T, B, I, H, repeats, cudnn))
            if baseline is not None:
                row["correct"] = row["float32_vs_cpu_float64"] <= float32_limit(baseline.get("correctness", {}))
        except Exception as exc:  # a layout that fails to compile or launch is a result too
            row = {"layout": override, "error": f"{type(exc).__name__}: {exc}"}
        rows.append(row)
        on_row(row)
    return rows


@contextlib.contextmanager
def _variant(override: dict):
    """The variant's layout (rnnspec.kernels.cuda.LAYOUT_OVERRIDE) and SETTINGS in force while it
    runs, all restored after; yields the settings it made."""
    from rnnspec.kernels import cuda as gpu

    settings = {k: v for k, v in override.items() if k in SETTINGS}
    targets = {k: (importlib.import_module(f"rnnspec.kernels.{SETTINGS[k][0]}"), SETTINGS[k][1]) for k in settings}
    saved = gpu.LAYOUT_OVERRIDE, {k: getattr(module, name) for k, (module, name) in targets.items()}
    gpu.LAYOUT_OVERRIDE = {k: v for k, v in override.items() if k not in SETTINGS}
    for key, (module, name) in targets.items():
        setattr(module, name, settings[key])
    try:
        yield settings
    finally:
        gpu.LAYOUT_OVERRIDE = saved[0]
        for key, (module, name) in targets.items():
            setattr(module, name, saved[1][key])


def _without_scratch_reuse(call):
    """``call`` with every scratch array allocated afresh (what reusing them saves: see cuda_arrays)."""
    from rnnspec.kernels.cuda import arrays as cuda_arrays

    def fresh():
        cuda_arrays.REUSE_SCRATCH = False
        try:
            return call()
        finally:
            cuda_arrays.REUSE_SCRATCH = True

    return fresh


def _device_calls(T, B, I, H):
    """The float32 case on the device, and the forward and forward+backward calls on it."""
    from rnnspec.kernels import cuda as gpu

    dev = {k: gpu.cuda.to_device(v) for k, v in _case(T, B, I, H, "float32").items()}
    step = (dev["x"], dev["h0"], dev["U"], dev["W"], dev["b"])
    return (lambda: gpu.elman_forward(*step)), (lambda: gpu.elman_backward(*step, dev["gh"]))


def _whole_call_timings(T, B, I, H, repeats, cudnn=None) -> dict:
    """Medians of the whole forward and forward+backward calls on device arrays; with ``cudnn``
    (from ``cudnn_calls``), timed in blocks alternating with cuDNN's, with the ratios."""
    return timed_against_cudnn(*_device_calls(T, B, I, H), repeats, cudnn)


def timed_against_cudnn(forward, train, repeats: int, cudnn: dict | None = None) -> dict:
    """Medians of our ``forward`` and ``train`` calls (any cell's); with ``cudnn`` ({"forward", "train",
    "sync"}), timed in blocks alternating with cuDNN's, with the ratios (cuDNN's time / ours)."""
    from rnnspec.kernels.numpy_compat import cuda_module

    sync = cuda_module().synchronize
    calls = {"rnnspec_forward_s": (forward, sync), "rnnspec_train_s": (train, sync)}
    if cudnn is not None:
        calls.update({"cudnn_forward_s": (cudnn["forward"], cudnn["sync"]),
                      "cudnn_train_s": (cudnn["train"], cudnn["sync"])})
    times = _interleaved(calls, repeats)
    if cudnn is not None:
        times["forward_ratio_vs_cudnn"] = times["cudnn_forward_s"] / times["rnnspec_forward_s"]
        times["train_ratio_vs_cudnn"] = times["cudnn_train_s"] / times["rnnspec_train_s"]
    return times


def rnnspec_timings(T, B, I, H, repeats, cudnn=None) -> dict:
    """The CUDA kernels' forward and forward+backward on device arrays (alternating with cuDNN's when
    ``cudnn`` is given), and with every scratch array allocated afresh; first the cold start: the
    first forward+backward, which compiles the kernels this size needs (those that earlier sizes or
    dtypes compiled are cached), timed apart from the warm medians."""
    from rnnspec.kernels.numpy_compat import cuda_module

    sync = cuda_module().synchronize
    _, train = _device_calls(T, B, I, H)
    start = time.perf_counter()
    train()
    sync()
    return {"rnnspec_first_train_s": time.perf_counter() - start, **_whole_call_timings(T, B, I, H, repeats, cudnn),
            "rnnspec_train_fresh_scratch_s": _median(_without_scratch_reuse(train), sync, repeats)}


def cudnn_calls(T, B, I, H, device: str = "cuda") -> dict:
    """torch.nn.RNN (cuDNN on "cuda") on the same case: "forward", and "train" (forward+backward
    for the same cotangents: gradients of x, h0 and every parameter; inputs are leaves whose
    gradients are reset, not copied), "sync", and "gradients" (after a train call: torch's
    gradients named as the kernels name them)."""
    import torch

    c = _case(T, B, I, H, "float32")
    rnn = torch.nn.RNN(I, H).to(device)
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(torch.from_numpy(c["U"]))
        rnn.weight_hh_l0.copy_(torch.from_numpy(c["W"]))
        rnn.bias_ih_l0.copy_(torch.from_numpy(c["b"]))
        rnn.bias_hh_l0.zero_()
    x = torch.from_numpy(c["x"]).to(device).requires_grad_(True)
    h0 = torch.from_numpy(c["h0"]).to(device)[None].detach().requires_grad_(True)
    gh = torch.from_numpy(c["gh"]).to(device)

    def forward():
        with torch.no_grad():
            rnn(x, h0)

    def train():
        rnn.zero_grad(set_to_none=True)
        x.grad = h0.grad = None
        out, _ = rnn(x, h0)
        out.backward(gh)

    def gradients():
        grads = {"x": x.grad, "h0": h0.grad[0], "U": rnn.weight_ih_l0.grad, "W": rnn.weight_hh_l0.grad,
                 "b": rnn.bias_ih_l0.grad}
        return {k: v.detach().cpu().numpy() for k, v in grads.items()}

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    return {"forward": forward, "train": train, "sync": sync, "gradients": gradients}


TORCH_DEVICE = "cuda"  # where torch.nn.RNN runs in ``run`` ("cpu" in the tests: torch's CPU RNN)
MIN_REPEATS = 20  # timed calls per median on a GPU, whatever --repeats asks
FLOAT64_LIMIT = 1e-10  # float64 against the oracle and the CPU kernels: rounding alone gives ~1e-13
FLOAT32_FLOOR = 1e-4  # float32 against float64 passes below this, or within 10x of cuDNN's own error


def float32_limit(correctness: dict) -> float:
    """The largest float32 error against float64 that passes: FLOAT32_FLOOR, or 10x cuDNN's own."""
    return max(FLOAT32_FLOOR, 10 * correctness.get("cudnn_float32_vs_cpu_float64", 0.0))


def verdict(correctness: dict) -> bool:
    """Correct: float64 at rounding level, float32 no further from float64 than cuDNN's float32 (x10)."""
    f64 = [v for k, v in correctness.items() if k.startswith("float64")]
    return all(v <= FLOAT64_LIMIT for v in f64) and correctness["float32_vs_cpu_float64"] <= float32_limit(correctness)


def run(repeats: int = 20, sizes=None, progress=print, with_variants: bool = False,
        save=lambda report: None, reference=None, torch_device: str | None = None) -> dict:
    """The whole GPU benchmark at ``sizes`` (GPU_SIZES by default); ``save(report)`` after each
    size, so that a run cut short keeps what it measured. torch.nn.RNN runs on ``torch_device``
    (TORCH_DEVICE by default). Where RNNSPEC_BENCH_WITHOUT_LEAN_LAUNCH is
    set (scripts/gpu_check.sh sets it when the lean launch failed its GPU test), every launch goes
    through numba-cuda and the variants that ask for the lean launch are left out."""
    if repeats < 1:
        raise ValueError(f"repeats: expected at least 1 timed call, got {repeats}")
    without_lean_launch = {"lean_launch": False} if os.environ.get("RNNSPEC_BENCH_WITHOUT_LEAN_LAUNCH") else {}
    with _variant(without_lean_launch):
        return _run(repeats, sizes, progress, with_variants, save, reference, torch_device or TORCH_DEVICE)


def report_head(schema: str, torch_device: str) -> dict:
    """The head of a GPU benchmark's report: schema, GPU, PyTorch and cuDNN, where torch ran, and the
    machine, source commit and BLAS kernel as the CPU benchmark records them."""
    import torch

    from rnnspec.kernels.cpu import bench as cpu_bench
    from rnnspec.kernels.numpy_compat import cuda_module

    name = getattr(cuda_module().get_current_device(), "name", "CUDA simulator")
    return {"schema": schema, "gpu": name.decode() if isinstance(name, bytes) else str(name),
            "torch": torch.__version__, "torch_device": torch_device, "cudnn": torch.backends.cudnn.version(),
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32, "machine": cpu_bench.machine(),
            **cpu_bench.commit(), "blas_kernel": cpu_bench.blas_kernel()}


def _run(repeats, sizes, progress, with_variants, save, reference, torch_device) -> dict:
    from rnnspec.kernels.cuda import gemm as cuda_gemm
    from rnnspec.kernels.cuda import launches as cuda_launch

    report = {**report_head("rnnspec.bench-cuda/6", torch_device),
              "launch_overhead_s": launch_overhead(repeats * 5), "lean_launch": cuda_launch.LEAN_LAUNCH,
              "unsplit_terms": cuda_gemm.UNSPLIT_TERMS, "results": []}
    progress(f"{report['gpu']}: empty numba-cuda launch + sync {report['launch_overhead_s'] * 1e6:.1f} us; "
             f"launches through {'the lean path' if report['lean_launch'] else 'numba-cuda'}, "
             f"unsplit_terms={report['unsplit_terms']}")
    for T, B, I, H in GPU_SIZES if sizes is None else sizes:
        row = {"T": T, "B": B, "I": I, "H": H, "dtype": "float32"}
        try:
            cudnn = cudnn_calls(T, B, I, H, torch_device)
            row.update(rnnspec_timings(T, B, I, H, repeats, cudnn))  # first: its first call is the cold start
            row["correctness"] = correctness(T, B, I, H, cudnn=cudnn["gradients"](), reference=reference)
            row["correct"] = verdict(row["correctness"])
            row.update(recurrence_alone(T, B, I, H, repeats))
        except Exception as exc:  # record and go on: one size must not lose the others
            row["error"] = f"{type(exc).__name__}: {exc}"
        report["results"].append(row)
        progress(table_row(row))
        save(report)
        if with_variants and "error" not in row:  # after the row is out: a variant may fail or be slow
            row["variants"] = []

            def on_variant(variant, row=row):
                row["variants"].append(variant)
                progress(variant_line(variant))
                save(report)

            variants(T, B, I, H, repeats, on_row=on_variant, baseline=row, cudnn=cudnn)
    report["lean_launch_plans"] = cuda_launch.lean_launch_plans()
    progress(f"lean launch: {report['lean_launch_plans']}")
    save(report)
    return report


def describe(layout: dict) -> str:
    """A recurrence layout (Layout or CooperativeLayout, as a dict) in one phrase."""
    if "split" in layout:
        return (f"split={layout['split']} held={layout['held']}/{layout['chunk']} rows={layout['rows']} "
                f"ahead={layout['ahead']}")
    return (f"cooperative rows={layout['rows']} blocks={layout['blocks']} threads={layout['threads']} "
            f"tile={layout['tile']} slices={layout['slices']}")


def verdict_words(r: dict) -> str:
    """A row's verdict and every error it rests on, in one phrase."""
    return ("correct" if r["correct"] else "INCORRECT") + ": " + \
        " ".join(f"{k}={v:.1e}" for k, v in r["correctness"].items())


def table_row(r: dict) -> str:
    size = f"({r['T']}, {r['B']}, {r['I']}, {r['H']})"
    if "error" in r:
        return f"{size:24s} ERROR {r['error']}"
    corr = verdict_words(r)
    lines = [f"{size:24s} fwd {r['rnnspec_forward_s'] * 1e3:8.3f} ms vs cuDNN {r['cudnn_forward_s'] * 1e3:8.3f} ms "
             f"({r['forward_ratio_vs_cudnn']:.2f}x)  fwd+bwd {r['rnnspec_train_s'] * 1e3:8.3f} ms vs "
             f"{r['cudnn_train_s'] * 1e3:8.3f} ms ({r['train_ratio_vs_cudnn']:.2f}x)  {corr}",
             f"{'':24s} recurrence kernels alone: fwd {r['forward_recurrence_s'] * 1e3:.3f} ms, bwd "
             f"{r['backward_recurrence_s'] * 1e3:.3f} ms; layout {describe(r['layout'])}; "
             f"fwd+bwd with fresh scratch arrays "
             f"{r['rnnspec_train_fresh_scratch_s'] * 1e3:.3f} ms; first fwd+bwd (JIT compile) "
             f"{r['rnnspec_first_train_s']:.2f} s"]
    return "\n".join(lines + [variant_line(v) for v in r.get("variants", [])])


def variant_line(v: dict) -> str:
    if "error" in v:
        return f"{'':24s} variant {v['layout']}: ERROR {v['error']}"
    ratios = (f" ({v['forward_ratio_vs_cudnn']:.2f}x cuDNN), fwd+bwd {v['rnnspec_train_s'] * 1e3:.3f} ms "
              f"({v['train_ratio_vs_cudnn']:.2f}x)") if "train_ratio_vs_cudnn" in v else ""
    verdict = {True: "correct: ", False: "INCORRECT: "}.get(v.get("correct"), "")
    plans = v.get("lean_launch_plans", {})
    launch = {True: f" lean launch ({plans.get('planned', 0)} kinds of launch planned"
                    f"{'; fell back: ' + ' | '.join(plans['fell_back']) if plans.get('fell_back') else ''})",
              False: " numba-cuda launch"}.get(v.get("lean_launch"), "") + \
        (f" unsplit_terms={v['unsplit_terms']}" if "unsplit_terms" in v else "")
    return (f"{'':24s} variant {describe(v['layout'])}{launch}: "
            f"recurrence fwd {v['forward_recurrence_s'] * 1e3:.3f} ms, bwd {v['backward_recurrence_s'] * 1e3:.3f} ms; "
            f"whole call fwd {v['rnnspec_forward_s'] * 1e3:.3f} ms"
            f"{ratios}; {verdict}float32 vs CPU float64 (T={v['check_steps']}) {v['float32_vs_cpu_float64']:.1e}")
