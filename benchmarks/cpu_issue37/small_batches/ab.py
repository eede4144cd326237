"""Small batches on the whole-batch path: a step's products by panels beside OpenBLAS's two threads (the kernels'
choice, panels.wanted) against OpenBLAS's threads (``panels.max_threaded_rows`` 0, the choice before), and PyTorch,
in one process, timed in turn (bench.interleaved).

    python benchmarks/cpu_issue37/small_batches/ab.py CELL DTYPE T H B[,B...] [THRESHOLD=VALUE]

With THRESHOLD=VALUE the "before" side is the choice with that threshold of the tuning table instead (e.g.
split.beyond_l2_max_rows=0: the split never chosen by W's size).
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


def main(cell: str, dtype: str, T: int, H: int, batches: list[int], baseline: dict | None = None) -> None:
    baseline = baseline or {"panels.max_threaded_rows": 0}
    cpu = machine()["cpu"]
    emulated = f" emulated on {cpu['cpu_isa']}" if "cpu_isa" in cpu else ""
    print(f"# {cell} {dtype} T={T} I=64 H={H}; {cpu['cpu']} ({cpu['isa']}{emulated}, {cpu['cores']} cores, "
          f"OpenBLAS {cpu['blas_core']}); {tuning.active().source}")
    print(f"# medians of 7 calls, ms: the kernels' choice (now) | with {baseline} (before) | PyTorch")
    for B in batches:
        case = make_case(T, B, 64, H, 64, dtype, cell=cell)
        ours = dict(zip(PHASES, runner("rnnspec-cpu", cell)(case)))
        theirs = dict(zip(PHASES, runner("torch", cell)(case)))
        for phase in PHASES:
            times = interleaved({"now": ours[phase], "before": under(ours[phase], baseline),
                                 "torch": theirs[phase]}, 7)
            now, before, torch = (float(np.median(times[k])) * 1e3 for k in ("now", "before", "torch"))
            print(f"B={B:3d} {phase:7s} now {now:8.3f}  before {before:8.3f}  torch {torch:8.3f}   now/before "
                  f"{before / now:5.2f}x  torch/now {torch / now:5.2f}x  torch/before {torch / before:5.2f}x",
                  flush=True)


if __name__ == "__main__":
    setting = dict((name, float(value)) for name, value in (arg.split("=") for arg in sys.argv[6:7]))
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), [int(b) for b in sys.argv[5].split(",")],
         setting or None)
