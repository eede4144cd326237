"""PyTorch / ours, the range over three runs, per (cell, size, dtype, phase), in each set of issue 37's idle bench
runs: before (the runs at 1829372, the Elman runs at 3ba26e2), after the panels (panels/), after the two threads
were kept on two CPUs (panels_apart/), after the overheads session (overheads/), after the projections by panels and
the wide vectors (projections/).

    python benchmarks/cpu_issue37/compare_sets.py > benchmarks/cpu_issue37/compare_sets.md
"""

from __future__ import annotations

import glob
import json
from collections import defaultdict

HERE = "benchmarks/cpu_issue37"
SETS = [("before", sorted(glob.glob(f"{HERE}/[gl]*_run?.json"))
                   + sorted(glob.glob(f"{HERE}/after_3ba26e2/elman_run?.json"))),
        ("panels", sorted(glob.glob(f"{HERE}/panels/*_run?.json"))),
        ("apart", sorted(glob.glob(f"{HERE}/panels_apart/*_run?.json"))),
        ("overheads", sorted(glob.glob(f"{HERE}/overheads/*_run?.json"))),
        ("projections", sorted(glob.glob(f"{HERE}/projections/*_run?.json")))]


def span(values: list[float]) -> str:
    if not values:
        return "-"
    low, high = f"{min(values):.2f}", f"{max(values):.2f}"
    return f"{low}x" if low == high else f"{low}-{high}x"


def main() -> None:
    ratios: dict[tuple, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for name, paths in SETS:
        for path in paths:
            report = json.load(open(path))
            by = {(r["size"], r["dtype"], r["phase"], r["impl"]): r for r in report["results"]}
            for (size, dtype, phase, impl), ours in by.items():
                theirs = by.get((size, dtype, phase, "torch"))
                if impl == "rnnspec-cpu" and theirs:
                    key = (report.get("cell", "elman"), size, dtype, phase)
                    ratios[key][name].append(theirs["median_s"] / ours["median_s"])
    print("| cell | size | dtype | phase | " + " | ".join(name for name, _ in SETS) + " |")
    print("|---|---|---|---|" + "---|" * len(SETS))
    for key in sorted(ratios):
        print(f"| {' | '.join(key)} | " + " | ".join(span(ratios[key][name]) for name, _ in SETS) + " |")


if __name__ == "__main__":
    main()
