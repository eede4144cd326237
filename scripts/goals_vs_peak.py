"""What a speed goal "ratio >= r against PyTorch" asks of the machine, from recorded ``rnnspec bench`` reports.

For each (cell, size) of train rows: PyTorch's median time t and rate (the benchmark's flop count over
t), the rate a kernel r times faster would run at, and both as a share of the peak measured in the same
run. A goal whose rate exceeds the peak cannot be met by any kernel doing the same arithmetic on this
machine; one near it needs every product, the step-by-step ones included, at GEMM speed.

    python scripts/goals_vs_peak.py benchmarks/cpu_cells/*_run?.json
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict

#: issue "Numba CPU kernels for LSTM and both GRUs": train, float32, PyTorch time / ours
GOALS = {
    "lstm": {"G1": 5, "G2": 1.5, "G3": 1.2, "G4": 1.3, "G5": 2},
    "gru-reset-after": {"G1": 20, "G2": 3, "G3": 2, "G4": 2, "G5": 8},
    "elman": {"S3": 2, "S4": 1.8, "S5": 8},
}


def main(paths: list[str]) -> None:
    rows: dict[tuple[str, str], list[tuple[float, float, float, float]]] = defaultdict(list)
    for path in paths:
        report = json.load(open(path))
        cell, peak = report.get("cell", "elman"), report["peak"]["float32"]["peak_gflops"]
        by = {(r["size"], r["impl"]): r for r in report["results"] if r["phase"] == "train" and r["dtype"] == "float32"}
        for (size, impl), r in by.items():
            goal = GOALS.get(cell, {}).get(size)
            ours = by.get((size, "rnnspec-cpu"))
            if impl != "torch" or goal is None or ours is None:
                continue
            rows[cell, size].append((r["gflops"] / peak, goal * r["gflops"] / peak, ours["gflops"] / peak,
                                     r["median_s"] / ours["median_s"]))
    print("| cell | size | goal | PyTorch, % of peak | the goal's rate, % of peak | ours, % of peak | ratio now |")
    print("|---|---|---|---|---|---|---|")
    span = lambda values, f: f"{f(min(values))}-{f(max(values))}"
    pct = lambda v: f"{100 * v:.0f}%"
    for (cell, size), values in sorted(rows.items()):
        torch_share, needed, ours, ratio = zip(*values)
        print(f"| {cell} | {size} | {GOALS[cell][size]}x | {span(torch_share, pct)} | {span(needed, pct)} | "
              f"{span(ours, pct)} | {span(ratio, lambda v: f'{v:.2f}x')} |")


if __name__ == "__main__":
    main(sys.argv[1:])
