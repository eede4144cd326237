"""The input projection by panels on against off (panels.projection_wanted patched to False), one call of each in
turn, in one process: ab_G2.txt (run by this script's first form, with x unscaled and the same sizes and calls).

    python benchmarks/cpu_issue37/projections/ab.py CELL DTYPE SIZE [forward|train]
"""

import sys
import time

import numpy as np

from rnnspec.kernels.cpu import cells, elman, gated, panels
from rnnspec.kernels.cpu.bench import SIZES

CALLS = 40


def arguments(cell: str, dtype: np.dtype, T: int, B: int, I: int, H: int) -> tuple:
    rng = np.random.default_rng(0)

    def draw(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.1).astype(dtype)

    if cell == "elman":
        return draw(T, B, I), draw(B, H), draw(H, I), draw(H, H), np.zeros(H, dtype)
    kernel = cells.kernel(cell)
    P = H // 2 if cell == "lstm-proj" else H
    state0 = {name + "0": draw(B, P if name == "h" else H) for name in kernel.entry.states}
    params = {}
    for g in kernel.gates:
        params.update({f"U_{g}": draw(H, I), f"W_{g}": draw(H, P), f"b_{g}": draw(H)})
    if cell == "gru-reset-after":
        params["b_hn"] = draw(H)
    if cell == "lstm-proj":
        params["W_hr"] = draw(P, H)
    return draw(T, B, I), state0, params


def timed_call(cell: str, phase: str, dtype: np.dtype, T: int, B: int, args: tuple):
    """The call timed: Elman's forward, or a gated cell's forward or loss with every gradient ("train")."""
    if cell == "elman":
        return lambda: elman.elman_forward(*args)
    if phase == "train":
        classes = 16
        x, state0, params = args
        params.update(V=np.zeros((classes, state0["h0"].shape[1]), dtype), c=np.zeros(classes, dtype))
        y = np.random.default_rng(1).integers(0, classes, (T, B))
        return lambda: gated.loss(cell, x, state0, params, y)
    return lambda: gated.forward(cell, *args)


def main() -> None:
    cell, dtype, size = sys.argv[1], np.dtype(sys.argv[2]), sys.argv[3]
    phase = sys.argv[4] if len(sys.argv) > 4 else "forward"
    T, B, I, H, _ = SIZES[size]
    call = timed_call(cell, phase, dtype, T, B, arguments(cell, dtype, T, B, I, H))
    wanted, seen = panels.projection_wanted, []

    def spy(*a):
        seen.append(wanted(*a))
        return seen[-1]

    modes = {"on": spy, "off": lambda *a: False}
    times = {mode: [] for mode in modes}
    for choice in modes.values():  # warm both
        panels.projection_wanted = choice
        for _ in range(3):
            call()
    for _ in range(CALLS):
        for mode, choice in modes.items():
            panels.projection_wanted = choice
            start = time.perf_counter()
            call()
            times[mode].append(time.perf_counter() - start)
    summary = {m: f"min {np.min(v) * 1e3:.3f} med {np.median(v) * 1e3:.3f}" for m, v in times.items()}
    print(cell, size, dtype, phase, "taken:", any(seen), summary)


if __name__ == "__main__":
    main()
