"""scripts/rows_ab.py over a grid of small sizes in one process, for the smallest call the halves should take
(rows.min_flops of kernels/cpu/tuning.py): each line starts with the training call's multiply-adds (work.flops / 2).

    python scripts/rows_sweep.py CELL [CELL ...]
"""

from __future__ import annotations

import sys

from rows_ab import main

from rnnspec.kernels import checks
from rnnspec.kernels.cpu.work import flops

#: (T, B, I, H, K): around the smallest winners and losers measured in sweep.log
GRID = [(T, B, H // 2, H, H // 2) for T in (32, 100) for B in (8, 16, 32, 64) for H in (16, 32, 64)]

if __name__ == "__main__":
    for cell in sys.argv[1:]:
        for T, B, I, H, K in GRID:
            gates = len(checks.GATED_CELLS[cell][0])
            print(f"work {flops('train', T, B, I, H, K, gates) / 2:.3g}", end=" ", flush=True)
            main(cell, [str(v) for v in (T, B, I, H, K)])
