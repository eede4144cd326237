"""What the process protocol costs: the default check of the C LSTM client over the protocol against the same
arithmetic called in process (issue 34: "under 10% of the default check's time").

    python benchmarks/protocol_overhead.py [--repeats 3] [--out benchmarks/protocol_overhead.md]

Both targets run clients/c/rnn.c built with the same flags (clients/c/inprocess.py's ``build``): the program
``exec:rnn`` (frames over pipes) and the shared library through ctypes (``inprocess.py:CInProcess``). Two
measurements, the targets alternating so that a change of load hits both:

- in all: the wall time of ``rnnspec check TARGET --cell lstm`` (the defaults: 50 cases, seed 0), as a user
  runs it, Python's start-up included;
- per call: the same checks with each target wrapped in a timer (``TimedExec``, ``TimedInProcess`` below) that
  logs every forward/vjp/loss call's seconds, measured in the suite's worker process around the target's method
  (for exec: encoding, both pipes, the program's work, decoding).

The overhead is the difference of the two per-call sums; its share is against the default check's time.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from abc import ABC, abstractmethod
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLIENT = ROOT / "clients" / "c"


def _inprocess_module():
    spec = importlib.util.spec_from_file_location("rnnspec_c_inprocess", CLIENT / "inprocess.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Timed(ABC):
    """A target that times each call of the target it wraps and appends ``method seconds`` to $RNNSPEC_BENCH_LOG.
    Every other attribute, read or set (the declarations, the cell the suite sets), is the wrapped target's."""

    def __init__(self) -> None:
        object.__setattr__(self, "_inner", self._make())

    @abstractmethod
    def _make(self):
        """The target to time."""

    def __getattr__(self, name: str):
        return getattr(self._inner, name)

    def __setattr__(self, name: str, value) -> None:
        setattr(self._inner, name, value)

    def _timed(self, method: str, *args, **kwargs):
        start = time.perf_counter()
        out = getattr(self._inner, method)(*args, **kwargs)
        seconds = time.perf_counter() - start
        with open(os.environ["RNNSPEC_BENCH_LOG"], "a") as log:
            log.write(f"{method} {seconds:.9f}\n")
        return out

    def forward(self, *args, **kwargs):
        return self._timed("forward", *args, **kwargs)

    def vjp(self, *args, **kwargs):
        return self._timed("vjp", *args, **kwargs)

    def loss(self, *args, **kwargs):
        return self._timed("loss", *args, **kwargs)


class TimedExec(_Timed):
    """The program $RNNSPEC_BENCH_PROGRAM over the process protocol."""

    def _make(self):
        from rnnspec.spec.process import ProcessTarget

        return ProcessTarget([os.environ["RNNSPEC_BENCH_PROGRAM"]])


class TimedInProcess(_Timed):
    """The shared library $RNNSPEC_C_LIBRARY through ctypes."""

    def _make(self):
        return _inprocess_module().CInProcess()


def _check(target: str, env: dict, log: Path | None = None) -> float:
    """Seconds of one ``rnnspec check TARGET --cell lstm`` (the defaults otherwise); it must be conformant."""
    env = dict(env, **({"RNNSPEC_BENCH_LOG": str(log)} if log else {}))
    command = [str(Path(sys.executable).with_name("rnnspec")), "check", target, "--cell", "lstm", "--quiet"]
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited {done.returncode}:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return seconds


def _calls(log: Path) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for line in log.read_text().splitlines():
        method, seconds = line.split()
        out.setdefault(method, []).append(float(seconds))
    return out


def _machine() -> str:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next((line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name")), "?")
    return f"{model}, {os.cpu_count()} cores ({platform.machine()})"


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="checks of each target, alternating (default 3)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "protocol_overhead.md")
    args = parser.parse_args()

    build = _inprocess_module().build
    work = Path(tempfile.mkdtemp(prefix="rnnspec-overhead-"))
    program, library = build(work / "rnn"), build(work / "librnn.so", library=True)
    env = dict(os.environ, RNNSPEC_C_LIBRARY=str(library), RNNSPEC_BENCH_PROGRAM=str(program))
    targets = {"exec": f"exec:{program}", "in process": f"{CLIENT / 'inprocess.py'}:CInProcess"}
    here = Path(__file__).resolve()
    timed = {"exec": f"{here}:TimedExec", "in process": f"{here}:TimedInProcess"}
    loads = [_load()]

    wall: dict[str, list[float]] = {k: [] for k in targets}
    calls: dict[str, dict[str, list[float]]] = {k: {} for k in targets}
    for r in range(args.repeats):
        for kind in targets:
            wall[kind].append(_check(targets[kind], env))
            print(f"run {r + 1}: {kind}: {wall[kind][-1]:.1f} s (load {_load()})", flush=True)
        for kind in targets:
            log = work / f"calls_{kind.replace(' ', '_')}_{r}.log"
            _check(timed[kind], env, log)
            for method, seconds in _calls(log).items():
                calls[kind].setdefault(method, []).extend(seconds)
        loads.append(_load())

    n = {kind: {m: len(v) // args.repeats for m, v in calls[kind].items()} for kind in targets}
    per_run = {kind: sum(sum(v) for v in calls[kind].values()) / args.repeats for kind in targets}
    median_wall = {kind: statistics.median(v) for kind, v in wall.items()}
    overhead = per_run["exec"] - per_run["in process"]
    compiler = subprocess.run(["cc", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    lines = [
        "# The process protocol's overhead: the C LSTM client over exec: against the same arithmetic in process",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `python benchmarks/protocol_overhead.py "
        f"--repeats {args.repeats}` (its docstring says how).",
        f"Machine: {_machine()}; load averages (1, 5, 15 min) before and after each round: {' | '.join(loads)}.",
        f"Python {platform.python_version()}; both targets are clients/c/rnn.c built with "
        f"`cc {' '.join(_inprocess_module().CFLAGS)}` ({compiler}).",
        "",
        "## In all: `rnnspec check TARGET --cell lstm` (50 cases, seed 0, both dtypes), wall time",
        "",
        "| target | runs (s) | median (s) |",
        "|---|---|---|",
        *(f"| {kind} (`{targets[kind].replace(str(work), '$BUILD').replace(str(ROOT) + '/', '')}`) | "
          f"{', '.join(f'{s:.1f}' for s in wall[kind])} | {median_wall[kind]:.1f} |" for kind in targets),
        "",
        f"Difference of the medians: {median_wall['exec'] - median_wall['in process']:+.1f} s "
        f"({100 * (median_wall['exec'] - median_wall['in process']) / median_wall['exec']:+.1f}% of the exec check); "
        "on a shared 2-core machine this difference is within the runs' spread, so the per-call sums below are the "
        "measure.",
        "",
        "## Per call: seconds inside the suite's worker, around the target's method",
        "",
        "| method | calls per check | exec: mean (µs) | exec: median (µs) | in process: mean (µs) | "
        "in process: median (µs) | overhead per call (µs, means) |",
        "|---|---|---|---|---|---|---|",
    ]
    for method in ("forward", "vjp", "loss"):
        e, i = calls["exec"].get(method, []), calls["in process"].get(method, [])
        if not e or not i:
            continue
        lines.append(f"| {method} | {n['exec'][method]} | {1e6 * statistics.fmean(e):.0f} | "
                     f"{1e6 * statistics.median(e):.0f} | {1e6 * statistics.fmean(i):.0f} | "
                     f"{1e6 * statistics.median(i):.0f} | {1e6 * (statistics.fmean(e) - statistics.fmean(i)):.0f} |")
    total_calls = sum(n["exec"].values())
    lines += [
        "",
        f"Per check: {total_calls} calls; time in calls {per_run['exec']:.2f} s over exec, "
        f"{per_run['in process']:.2f} s in process: the protocol costs {overhead:.2f} s per default check, "
        f"{1e6 * overhead / max(total_calls, 1):.0f} µs per call, "
        f"**{100 * overhead / median_wall['exec']:.1f}% of the default check's {median_wall['exec']:.1f} s** "
        "(goal: under 10%).",
        "",
        "The rest of a check's time is the suite's own: generating cases, the float64 oracle and its deviation "
        "samples for every tolerance, shrinking, the worker's round trips; the C arithmetic itself takes "
        "microseconds at these sizes (T <= 96, B <= 5, H <= 10).",
        "",
    ]
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
