"""Issue 37's speed goals against recorded ``rnnspec bench`` reports (three runs per cell), one markdown row per
cell x size x dtype x phase, and a count per goal.

    python scripts/bench_goals.py benchmarks/cpu_issue37/*_run?.json

Each row: PyTorch's median over ours in each run (the range over the runs), our rate and the GEMM rate measured in
the same run (the better of NumPy's and the kernels' GEMM), and each goal that applies, met in every run, in some
runs, or in none:

- no loss: at least 1.0x PyTorch, every size and phase (with ``--variant``, the variant goal: no slower than
  PyTorch's stacked, bidirectional, packed layers at G2-G4);
- compute-bound sizes (G3, G4, S3, S4), training: at least 85% of the GEMM rate, or at least 1.15x PyTorch;
- latency-bound sizes keep their lead: LSTM G1 >= 5x and G5 >= 2x, GRU G1 >= 20x and G5 >= 8x, Elman S1 >= 20x
  and S5 >= 8x.

The peaks each run measured (FMA chains against the GEMMs) follow the table.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict

#: the latency-bound sizes' leads, PyTorch / ours (the goal the issue sets per cell; the cells the bench times)
GOALS = {"lstm": {"G1": 5, "G5": 2}, "lstm-proj": {"G1": 5, "G5": 2}, "gru-reset-after": {"G1": 20, "G5": 8},
           "elman": {"S1": 20, "S5": 8}}
COMPUTE_BOUND = ("G3", "G4", "S3", "S4")
VARIANT_SIZES = ("G2", "G3", "G4")
VERDICTS = ("met", "some runs", "**not met**")


def _verdict(flags: list[bool]) -> str:
    return VERDICTS[0] if all(flags) else VERDICTS[1] if any(flags) else VERDICTS[2]


def _span(values: list[float], form: str) -> str:
    low, high = form.format(min(values)), form.format(max(values))
    return low if low == high else f"{low}-{high}"


def goals(cell: str, variant: str, size: str, phase: str, runs: list[tuple[float, float, float]]) -> dict:
    """{goal: [met in each run]} for one row; runs: (PyTorch / ours, our GFLOP/s, the GEMM rate) per run."""
    ratios = [ratio for ratio, _, _ in runs]
    if variant:
        return {"variant no slower": [r >= 1.0 for r in ratios]} if size in VARIANT_SIZES else {}
    out = {"no loss": [r >= 1.0 for r in ratios]}
    if size in COMPUTE_BOUND and phase == "train":
        out["compute-bound"] = [rate >= 0.85 * gemm or ratio >= 1.15 for ratio, rate, gemm in runs]
    if size in GOALS.get(cell, {}):
        out[f"latency {GOALS[cell][size]}x"] = [r >= GOALS[cell][size] for r in ratios]
    return out


def main(paths: list[str]) -> None:
    rows: dict[tuple, list[tuple[float, float, float]]] = defaultdict(list)
    peaks = []
    for path in sorted(paths):
        report = json.load(open(path))
        cell, variant = report.get("cell", "elman"), report.get("variant", "")
        gemm = {dtype: max(p["numpy_gemm"], p["kernels_gemm"]) for dtype, p in report["peak"].items()}
        peaks.append(f"| {path} | " + " | ".join(
            f"{p['peak_gflops']:.0f} ({p['numpy_gemm']:.0f}, {p['kernels_gemm']:.0f}, {p['fma_microkernel']:.0f})"
            for _, p in sorted(report["peak"].items())) + " |")
        by = {(r["size"], r["dtype"], r["phase"], r["impl"]): r for r in report["results"]}
        for (size, dtype, phase, impl), ours in by.items():
            theirs = by.get((size, dtype, phase, "torch"))
            if impl == "rnnspec-cpu" and theirs:
                rows[cell, variant, size, dtype, phase].append(
                    (theirs["median_s"] / ours["median_s"], ours["gflops"], gemm[dtype]))
    tally: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    print("| cell | variant | size | dtype | phase | runs | PyTorch / ours | ours GFLOP/s | GEMM GFLOP/s | "
          "ours / GEMM | goals |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for (cell, variant, size, dtype, phase), runs in sorted(rows.items()):
        said = []
        for goal, flags in goals(cell, variant, size, phase, runs).items():
            verdict = _verdict(flags)
            tally[goal][VERDICTS.index(verdict)] += 1
            said.append(f"{goal}: {verdict}")
        print(f"| {cell} | {variant or '-'} | {size} | {dtype} | {phase} | {len(runs)} | "
              f"{_span([r for r, _, _ in runs], '{:.2f}x')} | {_span([g for _, g, _ in runs], '{:.0f}')} | "
              f"{_span([m for _, _, m in runs], '{:.0f}')} | {_span([g / m for _, g, m in runs], '{:.0%}')} | "
              f"{'; '.join(said)} |")
    print("\n| goal | rows met in every run | in some runs | in none |\n|---|---|---|---|")
    for goal, (every, some, none) in tally.items():
        print(f"| {goal} | {every} | {some} | {none} |")
    print("\nPeak measured by each run, GFLOP/s: the best of (NumPy's GEMM, the kernels' GEMM, FMA chains)\n")
    print("| report | float32 | float64 |\n|---|---|---|")
    print("\n".join(peaks))


if __name__ == "__main__":
    main(sys.argv[1:])
