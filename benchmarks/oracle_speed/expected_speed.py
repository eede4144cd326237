"""Time compute_expected over generated cases of every cell (and two variants); save every value and
tolerance so a second run can be compared bit for bit."""
import pickle
import sys
import time

from rnnspec.derivations.registry import CELL_NAMES
from rnnspec.spec import tolerance as tol
from rnnspec.spec.cases import generate
from rnnspec.spec.expected import compute_expected

out, count = sys.argv[1], int(sys.argv[2])
acts = {"elman": ("tanh", "relu")}
results, times = {}, {}
for cell in CELL_NAMES:
    for variant in ("", "layers=2,bidirectional,lengths=zero") if cell in ("lstm", "elman") else ("",):
        cases = generate(count, 0, ("float32", "float64"), acts.get(cell, ("tanh",)), cell, variant)
        arrays = [c.arrays() for c in cases]
        compute_expected(cases[0], arrays[0], tol.ACCURACY_CLASSES[tol.DEFAULT_ACCURACY])  # warm
        t = time.perf_counter()
        for c, a in zip(cases, arrays):
            e = compute_expected(c, a, tol.ACCURACY_CLASSES[tol.DEFAULT_ACCURACY])
            results[(cell, variant, c)] = (e.values, e.tolerances, e.undetermined, e.overflow)
        times[(cell, variant)] = time.perf_counter() - t
        print(f"{cell:18s} {variant:38s} {len(cases)} cases {times[(cell, variant)]:7.2f} s", flush=True)
print("total", sum(times.values()))
pickle.dump(results, open(out, "wb"))
