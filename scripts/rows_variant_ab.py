"""A variant's training call (``loss``) with the batch in halves on two threads and without, side by side in
one process (RNNSPEC_CPU_ROWS=never, then always; two rounds, medians of 5 calls timed by bench.timings).

    python scripts/rows_variant_ab.py CELL SIZE VARIANT     # e.g. lstm G2 layers=2,bidirectional,lengths=zero
"""

from __future__ import annotations

import os
import sys

from rows_ab import median_ms

from rnnspec.derivations.variants import parse_variant
from rnnspec.kernels import loss
from rnnspec.kernels.cpu import rows
from rnnspec.kernels.cpu.baselines_variants import make_variant_case
from rnnspec.kernels.cpu.bench import SIZES


def main(cell: str, size: str, text: str) -> None:
    parsed = parse_variant(text)
    variant = {"layers": parsed.layers, "bidirectional": parsed.bidirectional, "lengths": parsed.lengths}
    case = make_variant_case(cell, variant, *SIZES[size], "float32")
    states = {k: case[k] for k in ("h0", "c0") if k in case}
    params = {k: v for k, v in case.items() if k not in ("x", "targets", "lengths", "h0", "c0")}
    options = {"layers": variant["layers"], "bidirectional": variant["bidirectional"],
               "lengths": case.get("lengths"), "padding": variant["lengths"] or "zero"}
    results: dict[str, list[float]] = {"never": [], "always": []}
    for _ in range(2):
        for mode in results:
            os.environ[rows.FORCE] = mode
            results[mode].append(median_ms(lambda: loss(cell, case["x"], states, params, case["targets"], **options),
                                           repeats=5))
    rounds = " ".join(f"{mode} " + "/".join(f"{v:.1f}" for v in values) for mode, values in results.items())
    print(cell, size, text, rounds, f"speedup {min(results['never']) / min(results['always']):.2f}", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:4])
