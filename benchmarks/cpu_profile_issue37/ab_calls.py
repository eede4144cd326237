"""One side of an A/B of the kernels' calls (issue 37): run by each tree's interpreter in turn, A B A B.

    python ab_calls.py CELL SIZE DTYPE PHASE CALLS  ->  one JSON line: median and range of the wall and the
    process CPU seconds (user + sys of every thread, time.process_time) of CALLS calls after 2 untimed ones
"""

import json
import os
import sys
import time

import numpy as np

from rnnspec.kernels.cpu import bench
from rnnspec.kernels.cpu.baselines_gated import RUNNERS

cell, size, dtype, phase, calls = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
T, B, I, H, K = bench.SIZES[size]
case = bench.make_case(T, B, I, H, K, dtype, cell=cell)
call = dict(zip(bench.PHASES, RUNNERS["rnnspec-cpu"](case, cell)))[phase]
for _ in range(2):
    call()
walls, cpus = [], []
for _ in range(calls):
    w, c = time.perf_counter(), time.process_time()
    call()
    walls.append(time.perf_counter() - w)
    cpus.append(time.process_time() - c)
print(json.dumps({"tree": bench.SOURCE.as_posix(), "wall_ms": float(np.median(walls)) * 1e3,
                  "wall_range": [min(walls) * 1e3, max(walls) * 1e3], "cpu_ms": float(np.median(cpus)) * 1e3,
                  "cpu_range": [min(cpus) * 1e3, max(cpus) * 1e3], "load": os.getloadavg()[0]}))
