"""PyTorch's intra-op threads for the ``torch`` target: one thread against PyTorch's default (one per core).

    python benchmarks/torch_threads.py [--repeats 5] [--busy 0 1] [--sizes]

Part 1 times ``rnnspec check torch --cell lstm --examples 10`` (the target as shipped, ``threads = 1``)
against the same check of :class:`DefaultThreads` (``threads = None``: the process's setting), in
alternating runs, each a fresh process, under ``--busy`` extra busy-looping processes (a loaded 2-core
machine: other jobs want the cores the thread pool waits for). Part 2 (``--sizes``) times one LSTM
forward + vjp in float32 in this process, 1 thread against the default, alternating, at the suite's
largest case and at larger sizes, to see whether large cases would gain from more threads.
Output: one line per run, then the ranges; benchmarks/torch_threads.log holds a run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from rnnspec.spec.frameworks.torch_layers import TorchRNN

HERE = Path(__file__).resolve()


class DefaultThreads(TorchRNN):
    """The torch target with PyTorch's own thread setting (the behaviour before threads = 1)."""

    threads = None


def _load() -> str:
    return f"load average {os.getloadavg()[0]:.2f}"


def _busy(count: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


def _check(target: str) -> float:
    start = time.perf_counter()
    run = subprocess.run(["rnnspec", "check", target, "--cell", "lstm", "--examples", "10"], capture_output=True,
                         text=True)
    seconds = time.perf_counter() - start
    if run.returncode != 0:
        raise SystemExit(f"{target}: exit {run.returncode}\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}")
    return seconds


def cli(repeats: int, busy: int) -> None:
    targets = {"threads=1 (torch)": "torch", "default (DefaultThreads)": f"{HERE}:DefaultThreads"}
    times: dict[str, list[float]] = {k: [] for k in targets}
    loops = _busy(busy)
    try:
        for n in range(repeats):
            order = list(targets) if n % 2 == 0 else list(targets)[::-1]  # alternate which goes first
            for name in order:
                seconds = _check(targets[name])
                times[name].append(seconds)
                print(f"  busy={busy} run {n} {name:26s} {seconds:6.2f} s  ({_load()})", flush=True)
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()
    for name, values in times.items():
        print(f"busy={busy} {name:26s} min {min(values):6.2f}  median {statistics.median(values):6.2f}  "
              f"max {max(values):6.2f} s over {len(values)} runs", flush=True)


def sizes(repeats: int, busy: int) -> None:
    import numpy as np
    import torch

    from rnnspec.spec.contract import contract

    default = torch.get_num_threads()
    loops = _busy(busy)
    try:
        for T, B, I, H in [(96, 5, 7, 10), (100, 32, 64, 128), (50, 64, 256, 256), (50, 64, 512, 1024)]:
            rng = np.random.default_rng(0)
            shapes = contract("lstm").param_shapes(I, H, 2)
            params = {k: (0.1 * rng.standard_normal(shapes[k])).astype(np.float32)
                      for k in contract("lstm").step_params}
            x = rng.standard_normal((T, B, I)).astype(np.float32)
            state0 = {"h0": np.zeros((B, H), np.float32), "c0": np.zeros((B, H), np.float32)}
            cot = {"h": np.ones((T, B, H), np.float32), "c": np.ones((T, B, H), np.float32)}
            target = DefaultThreads()
            target.cell = "lstm"
            times: dict[int, list[float]] = {1: [], default: []}
            target.vjp(x, state0, params, cot)  # warm up
            for n in range(repeats):
                for threads in ([1, default] if n % 2 == 0 else [default, 1]):
                    torch.set_num_threads(threads)
                    start = time.perf_counter()
                    target.vjp(x, state0, params, cot)
                    times[threads].append(time.perf_counter() - start)
            torch.set_num_threads(default)
            line = "  ".join(f"{t} thread(s) {1e3 * min(v):8.1f}-{1e3 * max(v):8.1f} ms "
                             f"(median {1e3 * statistics.median(v):8.1f})" for t, v in times.items())
            print(f"busy={busy} LSTM vjp T={T} B={B} I={I} H={H}: {line}  ({_load()})", flush=True)
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--busy", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--sizes", action="store_true", help="also time the in-process sizes")
    parser.add_argument("--no-cli", action="store_true", help="skip the command-line runs")
    args = parser.parse_args()
    import torch

    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    cpu = next((line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name")), "?")
    print(f"python {sys.version.split()[0]}; torch {torch.__version__} ({torch.get_num_threads()} threads by "
          f"default); {cpu}; {os.cpu_count()} CPUs; {_load()}", flush=True)
    for busy in args.busy:
        if not args.no_cli:
            cli(args.repeats, busy)
        if args.sizes:
            sizes(args.repeats, busy)


if __name__ == "__main__":
    main()
