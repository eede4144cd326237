"""Small batches on the whole-batch path: a step's products by panels beside OpenBLAS's two threads (the kernels'
choice, panels.wanted) against OpenBLAS's threads (``panels.max_threaded_rows`` 0, the choice before), and PyTorch,
in one process, timed in turn (bench.interleaved).

    python benchmarks/cpu_issue37/small_batches/ab.py CELL DTYPE T H B[,B...]
"""

from __future__ import annotations

import sys

import numpy as np

from rnnspec.kernels.cpu import tuning
from rnnspec.kernels.cpu.bench import PHASES, interleaved, machine, make_case, runner


def under(call, values):
    def run():
        with tuning.override(values):
            call()
    return run


def main(cell: str, dtype: str, T: int, H: int, batches: list[int]) -> None:
    cpu = machine()["cpu"]
    emulated = f" emulated on {cpu['cpu_isa']}" if "cpu_isa" in cpu else ""
    print(f"# {cell} {dtype} T={T} I=64 H={H}; {cpu['cpu']} ({cpu['isa']}{emulated}, {cpu['cores']} cores, "
          f"OpenBLAS {cpu['blas_core']}); {tuning.active().source}")
    print("# medians of 7 calls, ms: panels beside the threads (now) | OpenBLAS's threads (before) | PyTorch")
    for B in batches:
        case = make_case(T, B, 64, H, 64, dtype, cell=cell)
        ours = dict(zip(PHASES, runner("rnnspec-cpu", cell)(case)))
        theirs = dict(zip(PHASES, runner("torch", cell)(case)))
        for phase in PHASES:
            times = interleaved({"now": ours[phase], "before": under(ours[phase], {"panels.max_threaded_rows": 0}),
                                 "torch": theirs[phase]}, 7)
            now, before, torch = (float(np.median(times[k])) * 1e3 for k in ("now", "before", "torch"))
            print(f"B={B:3d} {phase:7s} now {now:8.3f}  before {before:8.3f}  torch {torch:8.3f}   now/before "
                  f"{before / now:5.2f}x  torch/now {torch / now:5.2f}x  torch/before {torch / before:5.2f}x",
                  flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), [int(b) for b in sys.argv[5].split(",")])
