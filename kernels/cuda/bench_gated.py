"""``rnnspec bench --device cuda --cell lstm|gru-reset-after|gru-reset-before``: the CUDA kernels of a
gated cell against torch.nn.LSTM / nn.GRU (cuDNN), in one process.

For each size (T, B, I, H), as the Elman GPU bench does (rnnspec.kernels.cuda.bench):

- the cold start: the first float32 forward+backward, JIT compile included;
- correctness in the same run: float64 against the oracle on the first T' steps (T' as many as
  ORACLE_LIMIT allows) and against the CPU kernels on all T; float32 against the CPU kernels in
  float64; cuDNN's float32 gradients against the same, the yardstick for ours;
- forward and forward+backward (the VJP for a cotangent on every h_t: gradients of x, the initial
  states and every parameter) on device arrays, medians after a warm-up, each timed call
  synchronised, ours and cuDNN's in alternating blocks. The rows state cuDNN's TF32 setting.

The reset-before GRU has no cuDNN counterpart: its rows time ours alone. With ``variants`` each size
also times the recurrence layouts in VARIANTS (each checked against the CPU kernels), so that a GPU
run can settle gated_plan's choice.
"""

from __future__ import annotations

import contextlib
import time

import numpy as np

from rnnspec.kernels.cuda.bench import _worst, float32_limit, timed_against_cudnn, verdict, verdict_words
from rnnspec.kernels.cuda.gated_recurrence import CELLS as RECURRENCE_CELLS

#: the goals' sizes (T, B, I, H) of "CUDA kernels for LSTM and both GRUs"
GATED_GPU_SIZES = ((1000, 1, 64, 64), (1000, 1, 256, 256), (100, 32, 64, 128), (100, 64, 256, 256),
                   (50, 64, 512, 1024))
CELLS = RECURRENCE_CELLS  # every cell the CUDA recurrence implements
ORACLE_LIMIT = 200_000  # T' B H H multiply-adds for the float64 oracle check (it runs one step at a time)
#: layouts timed with ``variants`` (gated_plan's keywords) beside the default, per size: each costs two more
#: kernel compilations (seconds each), so only where they answer a question: what keeping W on chip buys at
#: H = 256, and whether streamed blocks beat the cooperative grid once the batch is large
VARIANTS = {(1000, 1, 256, 256): ({"resident": False},),
            (100, 32, 64, 128): ({"cooperative": False},),
            (100, 64, 256, 256): ({"cooperative": False}, {"resident": False})}
K = 16  # classes of the case's head: made, never timed
TORCH_DEVICE = "cuda"  # where nn.LSTM / nn.GRU run in ``run`` ("cpu" in the tests: torch's CPU layers)


def gated_case(cell: str, T: int, B: int, I: int, H: int, dtype: str, seed: int = 0) -> dict:
    """The CPU benchmark's case (rnnspec.kernels.cpu.bench.make_case) and a cotangent "gh" on every h_t."""
    from rnnspec.kernels.cpu.bench import make_case

    case = make_case(T, B, I, H, K, dtype, seed, cell=cell)
    case["gh"] = np.random.default_rng(seed + 1).standard_normal((T, B, H)).astype(dtype)
    return case


def _parts(case: dict, cell: str) -> tuple[dict, dict]:
    """(state0, params) of the case, without the head."""
    states = ("h0", "c0") if cell == "lstm" else ("h0",)
    skip = {"x", "targets", "lengths", "V", "c", "gh", *states}
    return {k: case[k] for k in states}, {k: v for k, v in case.items() if k not in skip}


def _cotangents(case: dict) -> dict:
    return {"h": case["gh"]}


def correctness(cell: str, T: int, B: int, I: int, H: int, cudnn: dict | None = None, reference=None) -> dict:
    """Worst relative errors over every gradient (see the module's docstring); ``reference(cell)`` is the
    oracle's ``vjp`` for that cell (the caller passes it: the kernels never import the derivations)."""
    from rnnspec.kernels import backward
    from rnnspec.kernels import cuda as gpu

    out = {}
    c64 = gated_case(cell, T, B, I, H, "float64")
    state0, params = _parts(c64, cell)
    got64 = gpu.backward(cell, c64["x"], state0, params, _cotangents(c64))
    out["float64_vs_cpu"] = _worst(got64, backward(cell, c64["x"], state0, params, _cotangents(c64)))
    if reference is not None:
        short = max(1, min(T, ORACLE_LIMIT // (B * H * H)))
        x, gh = c64["x"][:short], {"h": c64["gh"][:short]}
        out[f"float64_vs_oracle_T{short}"] = _worst(gpu.backward(cell, x, state0, params, gh),
                                                    reference(cell)(x, state0, params, gh))
    c32 = gated_case(cell, T, B, I, H, "float32")
    state0, params = _parts(c32, cell)
    got32 = gpu.backward(cell, c32["x"], state0, params, _cotangents(c32))
    wide = lambda d: {k: v.astype(np.float64) for k, v in d.items()}
    want32 = backward(cell, c32["x"].astype(np.float64), wide(state0), wide(params), wide(_cotangents(c32)))
    out["float32_vs_cpu_float64"] = _worst(got32, want32)
    if cudnn is not None:
        out["cudnn_float32_vs_cpu_float64"] = _worst(cudnn, want32)
    return out


def device_calls(cell: str, T: int, B: int, I: int, H: int):
    """The float32 case on the device, and our forward and forward+backward calls on it."""
    from rnnspec.kernels import cuda as gpu

    case = gated_case(cell, T, B, I, H, "float32")
    on = lambda d: {k: gpu.cuda.to_device(v) for k, v in d.items()}
    state0, params = (on(d) for d in _parts(case, cell))
    x, gh = gpu.cuda.to_device(case["x"]), on(_cotangents(case))
    return (lambda: gpu.forward(cell, x, state0, params)), (lambda: gpu.backward(cell, x, state0, params, gh))


def torch_gradients(named: dict, cell: str, case: dict) -> dict[str, np.ndarray]:
    """The canonical parameters' gradients from those of the module that
    :func:`rnnspec.kernels.cpu.baselines_variants.torch_modules` built for ``case`` (one layer, one direction),
    undoing its packing: gate k's rows k H..(k + 1) H of ``weight_ih_l0``, ``weight_hh_l0`` and ``bias_ih_l0``
    are U_k, W_k and b_k (b_k reaches ``bias_ih`` and ``bias_hh`` alike: either gradient is dL/db_k), and the
    n gate's block of ``bias_hh_l0`` is b_hn where the cell has it. Written here, not taken from the suite's
    conventions (rnnspec.spec), because the kernels import nothing of spec."""
    from rnnspec.kernels.cpu.baselines_variants import GATES

    H = named["weight_hh_l0"].shape[0] // len(GATES[cell])
    block = lambda name, k: named[name][k * H:(k + 1) * H]
    out = {}
    for k, gate in enumerate(GATES[cell]):
        out.update({f"U_{gate}": block("weight_ih_l0", k), f"W_{gate}": block("weight_hh_l0", k),
                    f"b_{gate}": block("bias_ih_l0", k)})
    if "b_hn" in case:
        out["b_hn"] = block("bias_hh_l0", GATES[cell].index("n"))
    return out


def cudnn_calls(cell: str, T: int, B: int, I: int, H: int, device: str = "cuda") -> dict:
    """nn.LSTM / nn.GRU with the case's weights (rnnspec.kernels.cpu.baselines_variants.torch_modules):
    "forward", "train" (forward+backward for the same cotangents), "sync", and "gradients" (after a
    train call: torch's gradients named as the kernels name them, by :func:`torch_gradients`)."""
    import torch

    from rnnspec.kernels.cpu.baselines_variants import PLAIN, torch_modules

    case = gated_case(cell, T, B, I, H, "float32")
    rnn = torch_modules(case, cell, PLAIN)[0].to(device)
    lstm = cell == "lstm"
    leaf = lambda a: torch.from_numpy(a).to(device).detach().requires_grad_(True)
    x, h0 = leaf(case["x"]), leaf(case["h0"][None])
    c0 = leaf(case["c0"][None]) if lstm else None
    gh = torch.from_numpy(case["gh"]).to(device)
    start = (h0, c0) if lstm else h0

    def forward():
        with torch.no_grad():
            rnn(x, start)

    def train():
        rnn.zero_grad(set_to_none=True)
        x.grad = h0.grad = None
        if lstm:
            c0.grad = None
        out, _ = rnn(x, start)
        out.backward(gh)

    def gradients():
        named = {name: p.grad.detach().cpu().numpy() for name, p in rnn.named_parameters()}
        grads = {"x": x.grad, "h0": h0.grad[0], **({"c0": c0.grad[0]} if lstm else {})}
        return {**{k: v.detach().cpu().numpy() for k, v in grads.items()}, **torch_gradients(named, cell, case)}

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    return {"forward": forward, "train": train, "sync": sync, "gradients": gradients}


def timings(cell: str, T: int, B: int, I: int, H: int, repeats: int, cudnn: dict | None = None) -> dict:
    """Our whole forward and forward+backward calls (with cuDNN's in alternating blocks when given)."""
    return timed_against_cudnn(*device_calls(cell, T, B, I, H), repeats, cudnn)


def recurrence_alone(cell: str, T: int, B: int, I: int, H: int, repeats: int) -> dict:
    """The two recurrence kernels alone (launch and sync included, no GEMMs, no allocation), replayed on
    the arrays of one forward+backward call: where the time goes, beside the whole calls."""
    from rnnspec.kernels.cuda import gated
    from rnnspec.kernels.cuda.bench import _median
    from rnnspec.kernels.cuda.launches import launch
    from rnnspec.kernels.numpy_compat import cuda_module

    cuda = cuda_module()
    case = gated_case(cell, T, B, I, H, "float32")
    on = lambda d: {k: cuda.to_device(v) for k, v in d.items()}
    state0, params = (on(d) for d in _parts(case, cell))
    run = gated._Run(cell, cuda.to_device(case["x"]), state0, params)
    run.forward(returned=False)
    run.backward(cuda.to_device(case["gh"]))
    return {f"{direction}_recurrence_s": _median(lambda kept=kept: launch(*kept), cuda.synchronize, repeats)
            for direction, kept in run.launches.items()}


@contextlib.contextmanager
def forced_layout(override: dict):
    """rnnspec.kernels.cuda.gated.LAYOUT_OVERRIDE set to ``override`` while it runs."""
    from rnnspec.kernels.cuda import gated

    saved, gated.LAYOUT_OVERRIDE = gated.LAYOUT_OVERRIDE, dict(override)
    try:
        yield
    finally:
        gated.LAYOUT_OVERRIDE = saved


def variants(cell: str, T: int, B: int, I: int, H: int, repeats: int, cudnn: dict | None, limit: float) -> list:
    """Each of VARIANTS at this size (none at most sizes): its layout, float32 against the CPU kernels in
    float64 on the first min(T, 50) steps, and the whole calls' times (with cuDNN's ratios when given)."""
    from rnnspec.kernels import backward
    from rnnspec.kernels.cuda import gated

    rows = []
    short = min(T, 50)
    case = gated_case(cell, short, B, I, H, "float32")
    state0, params = _parts(case, cell)
    wide = lambda d: {k: v.astype(np.float64) for k, v in d.items()}
    want = backward(cell, case["x"].astype(np.float64), wide(state0), wide(params), wide(_cotangents(case)))
    for override in VARIANTS.get((T, B, I, H), ()):
        try:
            with forced_layout(override):
                row = {"forced": override, "layout": gated.gated_layout_for(cell, H, B, "float32")._asdict()}
                got = gated.backward(cell, case["x"], state0, params, _cotangents(case))
                row["float32_vs_cpu_float64"] = _worst(got, want)
                row["correct"] = row["float32_vs_cpu_float64"] <= limit
                row.update(timings(cell, T, B, I, H, repeats, cudnn))
        except Exception as exc:  # a layout that does not fit or fails to launch is a result too
            row = {"forced": override, "error": f"{type(exc).__name__}: {exc}"}
        rows.append(row)
    return rows


def run(cells=CELLS, repeats: int = 20, sizes=None, progress=print, with_variants: bool = False,
        save=lambda report: None, reference=None, torch_device: str | None = None) -> dict:
    """The gated cells' GPU benchmark; ``save(report)`` after each row, so that a run cut short keeps
    what it measured. ``reference(cell)`` gives the oracle's vjp for a cell; PyTorch's layers run on
    ``torch_device`` (TORCH_DEVICE by default)."""
    import torch

    from rnnspec.kernels.cuda import gated
    from rnnspec.kernels.cuda.bench import report_head
    from rnnspec.kernels.numpy_compat import cuda_module

    if repeats < 1:
        raise ValueError(f"repeats: expected at least 1 timed call, got {repeats}")
    torch_device = torch_device or TORCH_DEVICE
    cuda = cuda_module()
    report = {**report_head("rnnspec.bench-cuda-gated/1", torch_device), "results": []}
    progress(f"{report['gpu']}: cuDNN {report['cudnn']}, cudnn.allow_tf32={report['cudnn_allow_tf32']}")
    for cell in cells:
        for T, B, I, H in GATED_GPU_SIZES if sizes is None else sizes:
            row = {"cell": cell, "T": T, "B": B, "I": I, "H": H, "dtype": "float32",
                   "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32}
            try:
                row["layout"] = gated.gated_layout_for(cell, H, B, "float32")._asdict()
                cudnn = None if cell == "gru-reset-before" else cudnn_calls(cell, T, B, I, H, torch_device)
                _, train = device_calls(cell, T, B, I, H)
                start = time.perf_counter()
                train()
                cuda.synchronize()
                row["rnnspec_first_train_s"] = time.perf_counter() - start
                row.update(timings(cell, T, B, I, H, repeats, cudnn))
                row.update(recurrence_alone(cell, T, B, I, H, repeats))
                row["correctness"] = correctness(cell, T, B, I, H, cudnn["gradients"]() if cudnn else None, reference)
                row["correct"] = verdict(row["correctness"])
                if with_variants:
                    row["variants"] = variants(cell, T, B, I, H, repeats, cudnn, float32_limit(row["correctness"]))
            except Exception as exc:  # record and go on: one size must not lose the others
                row["error"] = f"{type(exc).__name__}: {exc}"
            report["results"].append(row)
            progress(table_row(row))
            save(report)
    return report


def _layout_words(layout: dict) -> str:
    kind = "cooperative" if layout["cooperative"] else "streamed"
    return (f"{kind} units={layout['units']} rows={layout['rows']} groups={layout['groups']} "
            f"slices={layout['slices']} {'resident' if layout['resident'] else 'W through L1/L2'}")


def table_row(r: dict) -> str:
    size = f"{r['cell']:17s} ({r['T']}, {r['B']}, {r['I']}, {r['H']})"
    if "error" in r:
        return f"{size:40s} ERROR {r['error']}"
    corr = verdict_words(r)
    tf32 = "TF32" if r.get("cudnn_allow_tf32") else "no TF32"
    versus = (lambda phase: f" vs cuDNN ({tf32}) {r[f'cudnn_{phase}_s'] * 1e3:8.3f} ms "
              f"({r[f'{phase}_ratio_vs_cudnn']:.2f}x)") if "cudnn_train_s" in r else (lambda phase: "")
    lines = [f"{size:40s} fwd {r['rnnspec_forward_s'] * 1e3:8.3f} ms{versus('forward')}  fwd+bwd "
             f"{r['rnnspec_train_s'] * 1e3:8.3f} ms{versus('train')}  {corr}",
             f"{'':40s} recurrence kernels alone: fwd {r['forward_recurrence_s'] * 1e3:.3f} ms, bwd "
             f"{r['backward_recurrence_s'] * 1e3:.3f} ms; layout {_layout_words(r['layout'])}; first fwd+bwd "
             f"(JIT compile) {r['rnnspec_first_train_s']:.2f} s"]
    for v in r.get("variants", []):
        if "error" in v:
            lines.append(f"{'':40s} forced {v['forced']}: ERROR {v['error']}")
            continue
        ratio = f" ({v['train_ratio_vs_cudnn']:.2f}x cuDNN)" if "train_ratio_vs_cudnn" in v else ""
        lines.append(f"{'':40s} forced {_layout_words(v['layout'])}: fwd {v['rnnspec_forward_s'] * 1e3:.3f} ms, "
                     f"fwd+bwd {v['rnnspec_train_s'] * 1e3:.3f} ms{ratio}; "
                     f"{'correct' if v['correct'] else 'INCORRECT'} float32 vs CPU float64 "
                     f"{v['float32_vs_cpu_float64']:.1e}")
    return "\n".join(lines)
