"""Ray's overhead per unit against the local engine: the same 40 one-case units of `rnnspec check oracle`, run
alternately by the local engine (one process, units one after another) and by Ray on a local 1-CPU cluster (one
task at a time), Ray started once beforehand (its start-up is measured apart). Wall seconds per unit; this
process's CPU seconds (Ray's daemons and workers are not its children: their CPU is not in it). Run from the
repository root: python benchmarks/units_ray_overhead.py >> benchmarks/units.log"""

import os
import time

import ray

from rnnspec.spec.engines import execute
from rnnspec.spec.runner import check
from rnnspec.spec.store import MemoryStore
from rnnspec.spec.units import units_of
from rnnspec.spec.worker import TargetName

UNITS = 40
clauses = tuple(c["id"] for c in check(TargetName("oracle"), target="oracle", examples=1).to_json()["clauses"])
units = units_of("oracle", "elman", "", None, 0, UNITS, None, clauses, 1, 60.0)
began = time.monotonic()
ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
print(f"ray.init (local, 1 CPU): {time.monotonic() - began:.1f} s wall")
for attempt in (1, 2):
    for engine in ("local", "ray"):
        load = os.getloadavg()[0]
        wall, cpu = time.monotonic(), time.process_time()
        progress = execute(units, MemoryStore(), engine=engine)
        wall, cpu = time.monotonic() - wall, time.process_time() - cpu
        inside = progress.busy / progress.done
        print(f"round {attempt} {engine:5s}: {UNITS} units in {wall:.1f} s wall, {wall / UNITS:.3f} s/unit "
              f"({inside:.3f} s inside run_unit), driver CPU {cpu:.1f} s; load {load:.1f}")
ray.shutdown()
