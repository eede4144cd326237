"""Small calls (the bench's G1 and S1: T = 50, B = 1, I = 16, H = 32, K = 16), the kernels at a base commit against
the working tree, and PyTorch, in one process.

The base commit's tree is imported as the package ``rnnspec_base`` (``git archive BASE`` unpacked and its imports
renamed, below), so both sides run in one process: rounds of one timed call each, before and now in turn, each after
one untimed call of itself. PyTorch's calls run after, in a block of their own: in the same rounds its OpenMP
threads, spinning after each call, slowed the next side's call by up to a third.

    python benchmarks/cpu_issue37/small_calls/ab.py BASE [CELLS] [SIZES] [REPEATS] [WARMUPS]

SIZES "" (or left out): each cell's G1 or S1.

WARMUPS (20 by default) untimed calls of each before the rounds: fewer for the large sizes.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from rnnspec.kernels.cpu.bench import SIZES, make_case, runner

PHASES = ("forward", "train")


def base_package(commit: str) -> str:
    """The tree of ``commit`` unpacked under a new folder as ``rnnspec_base``, its imports renamed; the folder."""
    root = Path(tempfile.mkdtemp(prefix="rnnspec_base_"))
    archive = subprocess.run(["git", "archive", commit], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(root), "--one-top-level=rnnspec_base"], input=archive, check=True)
    for path in (root / "rnnspec_base").rglob("*.py"):
        text = path.read_text()
        text = text.replace("from rnnspec.", "from rnnspec_base.").replace("import rnnspec.", "import rnnspec_base.")
        path.write_text(text.replace("from rnnspec import", "from rnnspec_base import"))
    return str(root)


def rounds(calls: dict, repeats: int, warmups: int = 20) -> dict[str, list[float]]:
    """Seconds of each timed call, in rounds A B A B ..., each call after one untimed call of itself."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    for call in calls.values():
        for _ in range(warmups):
            call()
    for _ in range(repeats):
        for name, call in calls.items():
            call()
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return times


def main(base: str, cells: list[str], sizes: list[str] | None, repeats: int, warmups: int = 20) -> None:
    sys.path.insert(0, base_package(base))
    base_bench = importlib.import_module("rnnspec_base.kernels.cpu.bench")
    print(f"# base {base} against the working tree; medians of {repeats} calls, us")
    for cell in cells:
        for size in sizes or (["S1"] if cell == "elman" else ["G1"]):
            for dtype in ("float32", "float64"):
                case = make_case(*SIZES[size], dtype, cell=cell)
                now = dict(zip(PHASES, runner("rnnspec-cpu", cell)(case)))
                before = dict(zip(PHASES, base_bench.runner("rnnspec-cpu", cell)(case)))
                torch = dict(zip(PHASES, runner("torch", cell)(case)))
                for phase in PHASES:
                    mine = {k: np.median(v) * 1e6 for k, v in rounds({"before": before[phase], "now": now[phase]},
                                                                      repeats, warmups).items()}
                    theirs = np.median(rounds({"torch": torch[phase]}, repeats, warmups)["torch"]) * 1e6
                    print(f"{cell:16s} {size} {dtype} {phase:7s} before {mine['before']:7.1f}  now {mine['now']:7.1f} "
                          f"({mine['before'] / mine['now']:.2f}x)  torch {theirs:8.1f}  "
                          f"torch/now {theirs / mine['now']:5.2f}x (torch/before {theirs / mine['before']:5.2f}x)",
                          flush=True)


if __name__ == "__main__":
    all_cells = ["elman", "lstm", "lstm-proj", "gru-reset-after"]
    main(sys.argv[1], sys.argv[2].split(",") if len(sys.argv) > 2 else all_cells,
         sys.argv[3].split(",") if len(sys.argv) > 3 and sys.argv[3] else None,
         int(sys.argv[4]) if len(sys.argv) > 4 else 300,
         int(sys.argv[5]) if len(sys.argv) > 5 else 20)
