"""The split (kernels/cpu/split.py, each thread its half of the units and of W) forced at any size, against the
kernels' choice and PyTorch, at a few rows. split_ab.txt was its run as an experiment, before the split's products of
several rows by panels became the kernels' path (c3bba5b).

    python benchmarks/cpu_issue37/small_batches/split_ab.py CELL T H B[,B...]
"""

from __future__ import annotations

import os
import sys

import numpy as np

from rnnspec.kernels.cpu import tuning
from rnnspec.kernels.cpu.bench import PHASES, interleaved, make_case, runner


def forced(call):
    def run():
        os.environ["RNNSPEC_CPU_SPLIT"] = "always"
        try:
            with tuning.override({"split.max_rows": 64}):
                call()
        finally:
            del os.environ["RNNSPEC_CPU_SPLIT"]
    return run


def main(cell: str, T: int, H: int, batches: list[int]) -> None:
    for B in batches:
        case = make_case(T, B, 64, H, 64, "float32", cell=cell)
        ours = dict(zip(PHASES, runner("rnnspec-cpu", cell)(case)))
        theirs = dict(zip(PHASES, runner("torch", cell)(case)))
        for phase in PHASES:
            times = interleaved({"now": ours[phase], "split": forced(ours[phase]), "torch": theirs[phase]}, 5)
            print(f"B={B} {phase}: " + "  ".join(f"{k} {np.median(v) * 1e3:.2f}" for k, v in times.items()),
                  flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), [int(b) for b in sys.argv[4].split(",")])
