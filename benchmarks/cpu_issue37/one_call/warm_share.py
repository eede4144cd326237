"""The bench's warm-up and the small rows: each cell's latency-size row (S1, G1) timed by `rnnspec bench` with one
untimed call after the quiet before each timed call (WARM_S = 0, the rule before 796ad7e) and with WARM_S of calls,
one after the other in one process, twice, the kernels the same: how much of the rows' move is the timing's.

    python benchmarks/cpu_issue37/one_call/warm_share.py > benchmarks/cpu_issue37/one_call/warm_share.txt
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from pathlib import Path

from rnnspec.kernels.cpu import bench
from rnnspec.spec import cli

CELLS = {"elman": "S1", "lstm": "G1", "gru-reset-after": "G1"}


def ratios(cell: str, size: str, warm_s: float) -> dict[tuple[str, str], tuple[float, float, float]]:
    """{(dtype, phase): (ours us, PyTorch us, PyTorch / ours)} of one bench run with bench.WARM_S = warm_s."""
    bench.WARM_S = warm_s
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "run.json"
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            cli.main(["bench", "--cell", cell, "--sizes", size, "--impls", "rnnspec-cpu,torch", "--repeats", "15",
                      "--json", str(path)])
        results = json.loads(path.read_text())["results"]
    medians = {(r["impl"], r["dtype"], r["phase"]): r["median_s"] * 1e6 for r in results}
    return {(d, p): (medians["rnnspec-cpu", d, p], medians["torch", d, p],
                     medians["torch", d, p] / medians["rnnspec-cpu", d, p])
            for (impl, d, p) in medians if impl == "torch"}


def main() -> None:
    default = bench.WARM_S
    print(f"# medians of 15 timed calls, us; WARM_S = 0 (one untimed call) against WARM_S = {default} s, twice")
    for cell, size in CELLS.items():
        for attempt in (1, 2):
            for warm_s in (0.0, default):
                for (dtype, phase), (ours, theirs, ratio) in ratios(cell, size, warm_s).items():
                    print(f"{cell:16s} {size} {dtype} {phase:7s} WARM_S={warm_s:<5} (pass {attempt}) ours {ours:8.1f} "
                          f"torch {theirs:8.1f}  torch/ours {ratio:6.2f}x", flush=True)


if __name__ == "__main__":
    main()
