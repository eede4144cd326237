"""Ranges over recorded ``rnnspec bench`` reports, one markdown row per (cell, size, phase) of rnnspec-cpu.

Each row: our median time, PyTorch's, the ratio PyTorch / ours and NumPy / ours (each ratio taken within
one run, then the range over the runs), our share of the peak measured in that run, and which threads ran.

    python scripts/bench_ranges.py benchmarks/cpu_cells/simd/*_run?.json
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict


def _span(values: list[float], form: str) -> str:
    low, high = min(values), max(values)
    return form.format(low) if form.format(low) == form.format(high) else f"{form.format(low)}-{form.format(high)}"


def main(paths: list[str]) -> None:
    rows: dict[tuple, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    peaks: list[str] = []
    for path in sorted(paths):
        report = json.load(open(path))
        cell, peak = report.get("cell", "elman"), report["peak"]["float32"]
        peaks.append(f"- {path}: peak {peak['peak_gflops']:.0f} GFLOP/s float32 (numpy_gemm {peak['numpy_gemm']:.0f}, "
                     f"kernels_gemm {peak['kernels_gemm']:.0f}, fma_microkernel {peak['fma_microkernel']:.0f})")
        by = {(r["size"], r["phase"], r["impl"]): r for r in report["results"] if r["dtype"] == "float32"}
        for (size, phase, impl), ours in by.items():
            if impl != "rnnspec-cpu":
                continue
            row = rows[cell, size, phase]
            row["ms"].append(ours["median_s"] * 1e3)
            row["peak"].append(100 * ours["gflops"] / peak["peak_gflops"])
            row["threads"].append(ours.get("parallel") or "one")
            for other in ("torch", "numpy"):
                if (size, phase, other) in by:
                    row[other + "_ms"].append(by[size, phase, other]["median_s"] * 1e3)
                    row["vs_" + other].append(by[size, phase, other]["median_s"] / ours["median_s"])
    print("| cell | size | phase | ours ms | PyTorch ms | vs PyTorch | vs NumPy | % of peak | threads |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (cell, size, phase), row in sorted(rows.items()):
        torch_ms = _span(row["torch_ms"], "{:.3g}") if row["torch_ms"] else "-"
        vs_torch = _span(row["vs_torch"], "{:.2f}x") if row["vs_torch"] else "-"
        vs_numpy = _span(row["vs_numpy"], "{:.2f}x") if row["vs_numpy"] else "-"
        print(f"| {cell} | {size} | {phase} | {_span(row['ms'], '{:.3g}')} | {torch_ms} | {vs_torch} | {vs_numpy} | "
              f"{_span(row['peak'], '{:.0f}%')} | {', '.join(sorted(set(row['threads'])))} |")
    print()
    print("\n".join(peaks))


if __name__ == "__main__":
    main(sys.argv[1:])
