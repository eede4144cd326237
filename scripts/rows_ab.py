"""One training call (``loss``) of a gated cell with its batch in halves on two threads and without, side by
side in one process: RNNSPEC_CPU_ROWS=never, then always, two rounds, medians of 7 calls
timed as ``rnnspec bench`` times them (bench.timings).

    python scripts/rows_ab.py CELL SIZE            # SIZE: G1..G5
    python scripts/rows_ab.py CELL T B I H K       # DT=float64 for float64

Prints each round's median (ms) and the speedup, best "never" over best "always"
(benchmarks/cpu_cells/rows/sweep.log).
"""

from __future__ import annotations

import os
import sys

import numpy as np

from rnnspec.kernels.cpu import gated, rows
from rnnspec.kernels.cpu.bench import SIZES, make_case, timings


def median_ms(call, repeats: int = 7) -> float:
    """The median of bench.timings (its quiet, its warm calls), in ms."""
    return float(np.median(timings(call, repeats))) * 1e3


def main(cell: str, size: list[str]) -> None:
    T, B, I, H, K = SIZES[size[0]] if len(size) == 1 else map(int, size)
    dtype = os.environ.get("DT", "float32")
    case = make_case(T, B, I, H, K, dtype, cell=cell)
    state_keys = ("h0", "c0") if cell.startswith("lstm") else ("h0",)
    params = {k: v for k, v in case.items() if k not in ("x", "targets", *state_keys)}
    state0 = {k: case[k] for k in state_keys}
    results: dict[str, list[float]] = {"never": [], "always": []}
    for _ in range(2):
        for mode in results:
            os.environ[rows.FORCE] = mode
            results[mode].append(median_ms(lambda: gated.loss(cell, case["x"], state0, params, case["targets"])))
    rounds = " ".join(f"{mode} " + "/".join(f"{v:.2f}" for v in values) for mode, values in results.items())
    print(cell, size, dtype, rounds, f"speedup {min(results['never']) / min(results['always']):.2f}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
