"""Every threshold that picks a CPU kernel path, in one table, and their measurement on the machine at hand.

The CPU kernels choose between paths that compute the same values (the same bits, or within the bounds
their tests state) at different speeds on different machines: the recurrence on two threads
(:mod:`split`), the batch in two halves on two threads (:mod:`rows`), a step's product as (W a^T)^T
(:func:`blas.transposed_wins`), a step's product in several BLAS calls (:func:`blas.rows_per_call`), a step's
product by the kernels' own tiles (:func:`panels.wanted`).
Each choice compares the call's sizes with thresholds; :data:`TABLE` holds every one of them, with the
value to use where nothing was measured on this machine (``safe``), why, and how :func:`measure` derives it.

Where the values come from, first match wins:

1. :func:`override` (the tests, and :func:`measure` while it forces a path);
2. ``RNNSPEC_CPU_TUNING=safe`` in the environment (read with the file): the safe values, whatever was measured;
3. the file :func:`measure` wrote for this machine (:func:`cache_path`: beside Numba's cache of the
   kernels, ``<cache>/rnnspec-numba/<digest of the kernels' sources>/tuning-<machine key>.json``),
   read once, at the first choice a kernel makes. A file for another machine (:func:`machine`: CPU
   model, instruction set, cores this process may use, L2 size, the kernels' OpenBLAS core type), of
   another schema, or unreadable, is not used; a change to any kernel source gives a new directory, so
   measured values never outlive the code they were measured on;
4. the safe values (:func:`safe_values`): those measured on :data:`REFERENCE` (the transposed products only
   on the BLAS kernels they were measured on).

Nothing is measured at import or inside a kernel's call: ``python -m rnnspec.kernels.cpu.tune``
(or :func:`measure` then :func:`save`) measures, in about half a minute on an idle 2-core machine once
the kernels are compiled, and writes the file; ``--show`` prints the values in use and where they come
from. Each measured threshold is the boundary between the sizes where one path won and those where the
other did, in calls of the kernels themselves, both paths timed in turn in one process (:func:`_pair`).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

SCHEMA = "rnnspec.cpu-tuning/1"
#: "safe": the safe values, whatever a measurement left for this machine
ENVIRONMENT = "RNNSPEC_CPU_TUNING"

#: the machine the safe values were measured on (benchmarks/cpu_cells/{split,rows}/README.md,
#: benchmarks/cpu_cells/simd/transposed_sweep.log, 2026-12-02 and -03); its CPU model number was not recorded
REFERENCE = {"cpu": "AMD EPYC, Zen 4 class (model number not recorded)", "isa": "avx512", "cores": 2,
             "l2_bytes": 1 << 20, "blas_core": "SkylakeX (both OpenBLAS libraries)",
             "software": "NumPy 2.4.6, SciPy 1.17.1, Numba 0.68.1", "load": "shared VM, load average 1.3-2.0"}


@dataclass(frozen=True)
class Threshold:
    """One path-choosing threshold: its safe value, why it is what it is, and how :func:`measure` derives
    it (None: not measured here, a property of a library or a bound of what was measured)."""

    safe: float
    why: str
    measured_by: str | None = None


TABLE: dict[str, Threshold] = {
    # the recurrence on two threads (split.py): where two threads won on REFERENCE (float32, I = 64, training
    # calls, two rounds, benchmarks/cpu_cells/split/README.md): at T = 1000, B = 1 and H = 256 (both cells), and
    # at B = 2, H = 256 for the LSTM; not at H = 128 or 64, nor at T = 32-100 for the GRU
    "split.max_rows": Threshold(
        2, "at most this many batch rows (a row's loop streamed W once per row until the split's products of "
           "several rows ran by panels, c3bba5b; since then the LSTM at H = 192, T = 256 split won at B = 2-4, "
           "1.08-1.11x, and 1.24-1.31x as AVX2: 4 measured)",
        "the last B of SPLIT_B up to which two threads won (the LSTM at T = 256, the smallest H that won)"),
    "split.min_row_step": Threshold(
        3 * 256 * 256, "at least this many multiply-adds G H H per row in a step's product: W of 768 KB in "
                       "float32 and up",
        "the boundary in G H H of the LSTM at B = 1, T = 256, H in SPLIT_H"),
    "split.beyond_l2_max_rows": Threshold(
        32, "where the stacked W is larger than a core's L2, calls of 2 to this many rows split the units over two "
           "threads at any T: each step streams W from memory, and two cores stream their halves at about twice one "
           "core's rate (the LSTM at H = 1024, T = 50, float32, W 16 MB: B = 2-4 forward 27-33 against 45-51 ms, "
           "training 62-66 against 94-95, with the split's products by panels; B = 1 keeps the rule above: there "
           "the split lost in training, 58.5 against 44.3 ms). Safe: the LSTM at T = 16, H = 1024 won at B = 2-32, "
           "1.15-1.40x natively and 1.06-1.46x as AVX2 (benchmarks/cpu_issue37/small_batches/)",
        "the last B of BEYOND_L2_B up to which the split won (LSTM training calls at (T, I, H) = BEYOND_L2)"),
    "split.min_steps": Threshold(
        128, "at least this many steps, for the threads' start and the packing of W (about 0.3 ms) to pay",
        "the boundary in T of the LSTM at B = 1 and the smallest H that won, T in SPLIT_T"),
    # the batch in halves (rows.py): benchmarks/cpu_cells/rows/README.md
    "rows.min_rows": Threshold(8, "at least this many rows (each half 4 or more)"),
    "rows.min_steps": Threshold(32, "at least this many steps: below, the GEMMs before and after the recurrence "
                                    "dominate, and two-thread BLAS runs them as well"),
    "rows.max_weight_bytes": Threshold(
        2 << 20, "at most this many bytes of recurrent weights G H P, each core keeping its own W in its cache: "
                 "the LSTM at H = 256 in float64 (2 MiB) still gained 1.34x, the GRUs at H = 512 in float32 "
                 "(3 MiB) lost 12%, G4's 16 MB 20% (REFERENCE: 1 MiB of L2 a core)",
        "the upper boundary, in bytes of W, of the LSTM's run of wins at (T, B, I) = ROWS, H in ROWS_H"),
    "rows.large_weight_min_rows": Threshold(
        64, "from this many rows the halves run whatever the size of W (above rows.max_weight_bytes too): each half "
            "streams all of W from memory at every step, which pays where each half's rows are many. G4 (B = 64, "
            "H = 1024: 16 MB in float32) in halves against whole, 2026-12-07, Intel AVX-512 2-core VM: forward "
            "1.13-1.17x (LSTM), 1.08x (GRU), 1.07x (lstm-proj float64), Elman's S4 float64 1.25x; training "
            "1.02-1.13x; at B = 16, H = 1024 a tie (1.01x) (benchmarks/cpu_issue37/README.md)",
        "the first B of LARGE_WEIGHT_B from which the halves won (the LSTM's training calls at (T, I, H) = "
        "LARGE_WEIGHT), rounded up to whole rows"),
    "rows.min_flops": Threshold(
        350_000_000, "at least this many flops a call (work.flops): below, the handover to the second thread "
                     "(0.25-0.35 ms for two nogil loops, handover.log) and the halves' poor overlap at small sizes "
                     "cost more than half the compiled work saves. Training calls: of 65 under 3e8 flops 60 lost "
                     "(up to 70%); at 3.3e8 the LSTM lost 27%, at 3.9e8 the GRUs won 19-26%, every call of "
                     "4.2e8-1e9 won 30-69% (sweep_small.log counts multiply-adds, half the flops); the threshold "
                     "lies between the last loser and the first winners",
        "the lower boundary, in flops, of the LSTM's run of wins at (T, B, I) = ROWS, H in ROWS_H"),
    # a step's product as (W a^T)^T (blas.transposed_wins, loops.step_product): the same bits either way. On
    # SkylakeX kernels, two threads, side by side (scripts/transposed_sweep.py, three sweeps,
    # benchmarks/cpu_cells/simd/transposed_sweep.log the last two; B rows, a stacked W of G gates and H units;
    # forward h W^T / BPTT d W): H = 1024, G = 4: B = 64 1.08-1.19x / 1.38-1.39x, B = 32 0.97-1.21x /
    # 1.58-1.80x, B = 8-16 1.01-1.47x / 1.98-2.43x; H = 1024, G = 3: 1.01-1.11x / 1.31-1.42x; H = 768:
    # 0.93-1.09x / 1.13-1.33x; H = 2048: 1.08-1.16x / 1.25-1.30x. At 4 MiB (H = 512, G = 4) the forward lost as
    # often as it won (0.90-1.24x), at H = 256 both lost (0.73-0.96x), float64 nearly everywhere (0.63-0.95x
    # forward, 0.79-1.04x BPTT): float32 only
    "blas.transposed_min_bytes": Threshold(
        6 * 2**20, "float32 step products by a W of at least this many bytes run transposed; unmeasured on this "
                   "machine, only on the BLAS kernels it was measured on (blas.has_small_kernels())",
        "the boundary in bytes of W of the LSTM's float32 training call at (T, B, I) = TRANSPOSED, H in "
        "TRANSPOSED_H"),
    "blas.transposed_min_rows": Threshold(8, "the fewest rows the transposed products were measured to win at"),
    "blas.transposed_max_rows": Threshold(64, "the most rows the transposed products were measured to win at"),
    # a step's product in several BLAS calls (blas.rows_per_call): properties of OpenBLAS's kernels
    "blas.small_kernel_mnk": Threshold(
        1_000_000, "OpenBLAS's SkylakeX GEMM (and its successors') sends M N K up to this to its small-matrix "
                   "kernels, which skip packing: float32 16 x 128 by 128 x 488 ran at 105 GFLOP/s, by 128 x 496 "
                   "(just over) at 52; float64 alike"),
    "blas.row_multiple": Threshold(
        4, "rows per small-kernel call in multiples of this: 4 or 8 rows ran at 107 GFLOP/s, 7 or 15 at 76-86"),
    # a step's products by the kernels' own tiles over packed panels (panels.py) instead of BLAS calls
    "panels.enabled": Threshold(
        1, "1: a step's products on one thread run by panels (panels.wanted); 0: by BLAS. On the 2-core AVX-512 "
           "machine the panels ran the step products at 120-171 GFLOP/s float32 where one OpenBLAS call ran 68-99 "
           "(benchmarks/cpu_issue37/panel_products.md); unmeasured on AVX2, so 0 there unless measured",
        "1 where the panels won at some H of PANELS_H and lost at none (training calls at (T, B, I) = PANELS, the "
        "batch in halves; at H = 128 OpenBLAS's calls of 8 rows stay on its small-matrix kernels and may tie)"),
    # a step's products by panels on the calling thread where OpenBLAS has two threads for the call's larger
    # products, between these rows: OpenBLAS's two threads took 68 us a step for the LSTM's 4 x 256 by 256 x 1024
    # float32 product (T = 50 forward: 4.6 ms against PyTorch's 1.1). LSTM training calls at T = 32 on the 2-core
    # AVX-512 machine, the panels against OpenBLAS's threads: B = 4-32 1.06-2.30x at H = 256 (three tunes; B = 2
    # 0.94-1.13x), B = 2-32 1.12-1.80x at 512 and 1.07-1.84x at 1024; B = 1 (OpenBLAS on one thread there)
    # 0.56-0.97x; B = 48-64 0.86-1.00x. As AVX2 (emulated): B = 2-16 1.06-2.45x, B = 32 0.90x. Safe: the
    # boundaries on AVX-512 (benchmarks/cpu_issue37/small_batches/)
    "panels.min_threaded_rows": Threshold(
        2, "the fewest rows whose step products run by panels beside OpenBLAS's two threads",
        "the lower boundary of the longest run of B of THREADED_B where the panels won (training calls at (T, I, "
        "H) = THREADED, the whole batch: no halves, no split)"),
    "panels.max_threaded_rows": Threshold(
        32, "the most rows whose step products run by panels beside OpenBLAS's two threads",
        "the upper boundary of that run"),
}


# ---- the machine ---------------------------------------------------------------------------------------------

def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (empty where there is none)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        pass
    return fields


@functools.cache
def l2_bytes() -> int:
    """The L2 cache of the first core in bytes (Linux sysfs), read once; 0 where not found."""
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            if (index / "level").read_text().strip() == "2":
                size = (index / "size").read_text().strip()
                scale = {"K": 1 << 10, "M": 1 << 20}.get(size[-1:], 1)
                return int(size.rstrip("KM")) * scale
        except (OSError, ValueError):
            continue
    return 0


def machine() -> dict:
    """What the thresholds depend on: the CPU (model, family and model number, the widest vector instructions
    the kernels use), the cores this process may use, the L2 size, and the OpenBLAS core type the kernels'
    BLAS runs."""
    from rnnspec.kernels.cpu import blas, simd

    blas.prepare()
    info, flags = _cpuinfo(), blas.cpu_flags()
    isa = "avx512" if all(f in flags for f in blas.AVX512_NEEDED) else "avx2" if "avx2" in flags else "other"
    described = {"cpu": info.get("model name", platform.processor() or platform.machine()),
                 "family": info.get("cpu family", ""), "model": info.get("model", ""), "arch": platform.machine(),
                 "isa": isa, "cores": cores(), "l2_bytes": l2_bytes(), "blas_core": blas.core_name("scipy")}
    built = simd.compiled_isa()
    if built is not None and built != isa:
        # another CPU's code, emulated here (kernels/cpu/emulate.py): its thresholds are that code's, not this
        # CPU's own, and a report names both
        described.update(isa=built, cpu_isa=isa)
    return described


def machine_key(described: dict) -> str:
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:16]


def cache_path(described: dict | None = None) -> Path:
    """Where :func:`save` writes, and the kernels read, the measured values for ``described`` (this machine)."""
    from rnnspec.kernels.numba_cache import cache_directory

    return cache_directory() / f"tuning-{machine_key(described or machine())}.json"


# ---- the values in use ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Tuning:
    """The measured values in use (names of TABLE), and where they came from."""

    values: dict
    source: str


SAFE = Tuning({}, "the safe values (TABLE)")
_loaded: list[Tuning] = []
_overrides: list[dict] = []
#: every threshold's value in force, resolved at the first choice and after any change (an override, reload):
#: a choice reads a dict, not the environment or the stack of overrides (a kernel's call makes a dozen)
_resolved: dict | None = None


def safe_values() -> dict[str, float]:
    """TABLE's safe values, but the transposed products' never (infinity) where the kernels' BLAS is not of the
    kernels they were measured on (blas.has_small_kernels)."""
    from rnnspec.kernels.cpu import blas
    from rnnspec.kernels.cpu.simd import AVX512

    values = {name: threshold.safe for name, threshold in TABLE.items()}
    if not blas.has_small_kernels():
        values["blas.transposed_min_bytes"] = math.inf
    if not AVX512:
        values["panels.enabled"] = 0
    return values


def read(path: Path, described: dict) -> Tuning:
    """The measured values in ``path`` if it is a measurement of this schema for ``described``, else SAFE with
    the reason in its source."""
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        return Tuning({}, f"the safe values (TABLE): nothing measured on this machine ({path} absent)")
    except (OSError, ValueError) as error:
        return Tuning({}, f"the safe values (TABLE): {path} unreadable ({error})")
    if not isinstance(record, dict) or record.get("schema") != SCHEMA:
        return Tuning({}, f"the safe values (TABLE): {path} is not of schema {SCHEMA}")
    if record.get("machine") != described:
        return Tuning({}, f"the safe values (TABLE): {path} was measured on another machine")
    values = record.get("values")
    measurable = {name for name, t in TABLE.items() if t.measured_by}
    if (not isinstance(values, dict) or not set(values) <= measurable
            or not all(isinstance(v, (int, float)) and not math.isnan(v) for v in values.values())):
        return Tuning({}, f"the safe values (TABLE): {path} holds values other than numbers for {sorted(measurable)}")
    return Tuning(values, f"measured on this machine {record.get('measured_at', '')} ({path})")


def active() -> Tuning:
    """The measured values in use (see the module's docstring): SAFE where the environment asks for it, else
    this machine's file, read at the first call (and the first after :func:`reload`) only."""
    if not _loaded:
        if os.environ.get(ENVIRONMENT, "") == "safe":
            _loaded.append(Tuning({}, f"the safe values (TABLE): {ENVIRONMENT}=safe"))
        else:
            described = machine()
            _loaded.append(read(cache_path(described), described))
    return _loaded[0]


def reload() -> None:
    """Forget what was read (the file, the environment), so that the next choice reads them again."""
    global _resolved
    _loaded.clear()
    _resolved = None


def _resolve() -> dict:
    global _resolved
    values = {**safe_values(), **active().values}
    for pushed in _overrides:
        values.update(pushed)
    _resolved = values
    return values


#: os.environ's own dict (bytes to bytes) where the platform keeps one (POSIX): reading an unset variable through
#: os.environ.get raises and catches a KeyError inside (0.66 against 0.03 us), and a small call reads several
_ENVIRON_BYTES = getattr(os.environ, "_data", None) if os.name == "posix" else None


def environment(variable: str) -> str:
    """os.environ.get(variable, ""), read from os.environ's own dict where it keeps one (every change made through
    os.environ updates it)."""
    if _ENVIRON_BYTES is None:
        return os.environ.get(variable, "")
    raw = _ENVIRON_BYTES.get(variable.encode())
    return "" if raw is None else os.fsdecode(raw)


def forced(variable: str) -> bool | None:
    """What the environment variable ``variable`` forces: True ("always"), False ("never") or None (unset)."""
    force = environment(variable)
    if force not in ("", "always", "never"):
        raise ValueError(f"{variable}={force!r}: expected 'always', 'never' or unset")
    return force == "always" if force else None


def value(name: str) -> float:
    """The threshold ``name`` of TABLE as the kernels use it now."""
    return (_resolved or _resolve())[name]


def measured(name: str) -> bool:
    """Whether the value of ``name`` in use, overrides aside, was measured on this machine."""
    return name in active().values


@contextlib.contextmanager
def override(values: dict) -> Iterator[None]:
    """The thresholds in ``values`` (names of TABLE) in force while inside, over anything else."""
    global _resolved
    unknown = sorted(set(values) - set(TABLE))
    if unknown:
        raise ValueError(f"override: unknown thresholds {unknown}; known: {sorted(TABLE)}")
    pushed = dict(values)
    _overrides.append(pushed)
    _resolved = None
    try:
        yield
    finally:
        del _overrides[next(k for k, v in enumerate(_overrides) if v is pushed)]
        _resolved = None


# ---- the measurement -----------------------------------------------------------------------------------------

#: a path wins where the other's time over its own is at least this: a tie keeps the one-thread, plain path
WIN = 1.05
#: seconds of timed calls per side and round (at least 2 calls, at most 10)
BLOCK_S = 0.03
ROUNDS = 3
#: a load average above this many per core makes the command warn that the comparisons mean little
BUSY = 0.5


def _pair(first: Callable[[], object], second: Callable[[], object]) -> tuple[float, float]:
    """(best seconds of ``first``, of ``second``): ROUNDS rounds, each timing a block of calls of one then the
    other (the order alternating), each block after one untimed call (the other's thread pools may still
    spin). The best call of each, not the median: on a shared machine load only ever adds time."""
    best = [math.inf, math.inf]
    calls = (first, second)
    for call in calls:  # compiles, and sizes the blocks
        call()
    start = time.perf_counter()
    first()
    n = int(min(10, max(2, BLOCK_S / max(time.perf_counter() - start, 1e-9))))
    for round_ in range(ROUNDS):
        for side in ((0, 1) if round_ % 2 == 0 else (1, 0)):
            calls[side]()
            for _ in range(n):
                start = time.perf_counter()
                calls[side]()
                best[side] = min(best[side], time.perf_counter() - start)
    return best[0], best[1]


@contextlib.contextmanager
def _paths(split: str, rows: str, transposed: float, panels: int | None = None,
           threaded_rows: float | None = None) -> Iterator[None]:
    """split's and rows' FORCE variables set ("always" or "never"), ``blas.transposed_min_bytes`` to
    ``transposed`` (0: always, infinity: never), ``panels.enabled`` to ``panels`` and the rows that run by panels
    beside OpenBLAS's threads to 0-``threaded_rows`` (None: as they are, so that the other probes time the
    products as the kernels would run them), while inside; the variables put back after."""
    from rnnspec.kernels.cpu import rows as rows_module
    from rnnspec.kernels.cpu import split as split_module

    wanted = {split_module.FORCE: split, rows_module.FORCE: rows}
    before = {name: os.environ.get(name) for name in wanted}
    os.environ.update(wanted)
    try:
        chosen = ({"blas.transposed_min_bytes": transposed} | ({} if panels is None else {"panels.enabled": panels})
                  | ({} if threaded_rows is None else {"panels.min_threaded_rows": 0,
                                                        "panels.max_threaded_rows": threaded_rows}))
        with override(chosen):
            yield
    finally:
        for name, old in before.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old


#: what each probe compares: (the plain path, the other) as arguments of _paths
PATHS = {"rows": (("never", "never", math.inf), ("never", "always", math.inf)),
         "split": (("never", "never", math.inf), ("always", "never", math.inf)),
         "transposed": (("never", "never", math.inf), ("never", "never", 0)),
         "panels": (("never", "always", math.inf, 0), ("never", "always", math.inf, 1)),
         "threaded": (("never", "never", math.inf, None, 0), ("never", "never", math.inf, None, math.inf))}
#: the cell every probe times, and its gates
CELL, GATES = "lstm", 4


def probe(kind: str, T: int, B: int, I: int, H: int) -> dict:
    """{"one_s", "two_s", "ratio"}: a float32 training call of CELL (loss and every gradient, on the benchmark's
    case of these sizes) on the plain path and on the other path of ``kind`` (PATHS), timed by :func:`_pair`."""
    from rnnspec.kernels.cpu.baselines_variants import PLAIN, make_variant_case, rnnspec_variant

    call = rnnspec_variant(make_variant_case(CELL, PLAIN, T, B, I, H, 16, "float32"), CELL, PLAIN)[1]

    def under(path):
        def run():
            with _paths(*path):
                call()
        return run

    t_one, t_two = _pair(*(under(path) for path in PATHS[kind]))
    return {"one_s": t_one, "two_s": t_two, "ratio": t_one / t_two}


def _geometric(a: float, b: float) -> float:
    return math.sqrt(a * b)


def lower_boundary(points: list[tuple[float, float]]) -> float:
    """The threshold from which the other path wins: ``points`` (x, ratio) in increasing x; the geometric
    mean of the last x that lost and the first of the run of wins that reaches the largest x; the smallest x
    where every one won (nothing below was measured); infinity where the largest lost."""
    wins = [ratio >= WIN for _, ratio in points]
    if not wins or not wins[-1]:
        return math.inf
    first = len(wins) - 1
    while first > 0 and wins[first - 1]:
        first -= 1
    return points[0][0] if first == 0 else _geometric(points[first - 1][0], points[first][0])


def win_range(points: list[tuple[float, float]]) -> tuple[float, float]:
    """(lower, upper) boundaries of the longest run of wins in ``points`` (x, ratio), increasing x (the first
    such run where two are as long): each the geometric mean of the run's end and the loser beside it, or the
    run's end itself at either end of the points; (infinity, 0) where nothing won."""
    wins = [ratio >= WIN for _, ratio in points] + [False]
    best, start = (0, -1), None
    for k, won in enumerate(wins):
        if won and start is None:
            start = k
        elif not won and start is not None:
            if k - start > best[1] - best[0] + 1:
                best = (start, k - 1)
            start = None
    first, last = best
    if last < first:
        return math.inf, 0.0
    xs = [x for x, _ in points]
    lower = xs[first] if first == 0 else _geometric(xs[first - 1], xs[first])
    upper = xs[last] if last == len(xs) - 1 else _geometric(xs[last], xs[last + 1])
    return lower, upper


#: the probes' sizes (see TABLE's measured_by): the batch in halves at (T, B, I) = ROWS, H in ROWS_H; the
#: recurrence on two threads at SPLIT, H in SPLIT_H, then T in SPLIT_T and B in SPLIT_B at the smallest H that
#: won; the transposed products at TRANSPOSED, H in TRANSPOSED_H
ROWS, ROWS_H = (32, 16, 32), (32, 48, 64, 96, 128, 192, 256, 384, 512, 768)
SPLIT, SPLIT_H, SPLIT_T, SPLIT_B = (256, 1, 32), (64, 128, 192, 256, 384, 512), (16, 32, 64, 128, 256), (1, 2, 3, 4)
TRANSPOSED, TRANSPOSED_H = (8, 16, 64), (512, 768, 1024)
#: the panels against BLAS calls on the batch's halves (the products they replace), at G2's and G3's H
PANELS, PANELS_H = (32, 32, 64), (128, 256)
#: the batch in halves where W is beyond rows.max_weight_bytes (H = 1024: 16 MB float32), B in LARGE_WEIGHT_B
LARGE_WEIGHT, LARGE_WEIGHT_B = (16, 32, 1024), (16, 32, 64)
#: the split where W is larger than L2 (H = 1024: 16 MB float32), B in BEYOND_L2_B
BEYOND_L2, BEYOND_L2_B = (16, 64, 1024), (2, 4, 8, 16, 32)
#: the panels on the calling thread against OpenBLAS's two threads on the whole batch, B in THREADED_B
THREADED, THREADED_B = (32, 64, 256), (1, 2, 4, 8, 16, 32, 48)


def measure(progress: Callable[[str], None] | None = None) -> dict:
    """Measure every threshold of TABLE that has a ``measured_by`` on this machine; returns the record
    :func:`save` writes: schema, machine, time, load average before and after, the values, and every probe
    (sizes, best seconds of each path, ratio). Every other threshold holds its safe value meanwhile."""
    say = progress or (lambda line: None)
    probes: list[dict] = []
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    started = time.perf_counter()

    def run(kind: str, T: int, B: int, I: int, H: int) -> float:
        result = probe(kind, T, B, I, H)
        probes.append({"kind": kind, "T": T, "B": B, "I": I, "H": H, **result})
        say(f"{kind:10s} T={T:<4d} B={B:<3d} I={I:<3d} H={H:<5d} plain {result['one_s'] * 1e3:8.3f} ms, "
            f"the other path {result['two_s'] * 1e3:8.3f} ms: {result['ratio']:.2f}x")
        return result["ratio"]

    values: dict[str, float] = {}
    with override(safe_values()):
        # the panels first: the halves of every probe below run their step products as the kernels will. Measured
        # last, the rows' probes ran on AVX2 with the safe value (no panels), and the halves lost to the whole
        # batch at every H (0.71-0.94x) where with the panels they run 1.27-1.40x faster (emulated AVX2,
        # benchmarks/cpu_issue37/avx2_emulated/)
        T, B, I = PANELS
        ratios = [run("panels", T, B, I, H) for H in PANELS_H]
        values["panels.enabled"] = float(any(r >= WIN for r in ratios) and all(r * WIN >= 1 for r in ratios))
        with override({"panels.enabled": values["panels.enabled"]}):
            _measure_paths(run, values)
    return {"schema": SCHEMA, "machine": machine(), "measured_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "seconds": round(time.perf_counter() - started, 1), "load_before": load_before,
            "load_after": os.getloadavg() if hasattr(os, "getloadavg") else None, "win": WIN,
            "values": values, "probes": probes}


def _measure_paths(run: Callable[[str, int, int, int, int], float], values: dict[str, float]) -> None:
    """The rows', the split's and the transposed products' thresholds into ``values``, from ``run`` (kind, T, B,
    I, H) -> the other path's ratio."""
    from rnnspec.kernels.cpu.work import flops

    T, B, I = ROWS
    ratios = [run("rows", T, B, I, H) for H in ROWS_H]
    values["rows.min_flops"] = win_range([(flops("train", T, B, I, H, 16, GATES), r)
                                          for H, r in zip(ROWS_H, ratios)])[0]
    values["rows.max_weight_bytes"] = win_range([(GATES * H * H * 4, r) for H, r in zip(ROWS_H, ratios)])[1]
    T, I, H = LARGE_WEIGHT
    values["rows.large_weight_min_rows"] = _whole_rows(lower_boundary([(B, run("rows", T, B, I, H))
                                                                       for B in LARGE_WEIGHT_B]))
    T, B, I = SPLIT
    by_units = {H: run("split", T, B, I, H) for H in SPLIT_H}
    values["split.min_row_step"] = lower_boundary([(GATES * H * H, r) for H, r in by_units.items()])
    won = [H for H in SPLIT_H if GATES * H * H >= values["split.min_row_step"]]
    if won:  # else the split never runs, whatever its other thresholds
        H = won[0]  # the ladders below share SPLIT's point with the one above: measured once, read alike
        by_steps = {t: by_units[H] if t == T else run("split", t, B, I, H) for t in SPLIT_T}
        values["split.min_steps"] = lower_boundary(sorted(by_steps.items()))
        values["split.max_rows"] = 0
        for rows in SPLIT_B:
            if (by_units[H] if rows == B else run("split", T, rows, I, H)) < WIN:
                break
            values["split.max_rows"] = rows
    if GATES * BEYOND_L2[2] ** 2 * 4 > l2_bytes() > 0:  # else W fits in L2 at that H: nothing to measure
        T, I, H = BEYOND_L2
        values["split.beyond_l2_max_rows"] = 0
        for B in BEYOND_L2_B:  # up to the first B where the split did not win
            if run("split", T, B, I, H) < WIN:
                break
            values["split.beyond_l2_max_rows"] = B
    T, B, I = TRANSPOSED
    ratios = [run("transposed", T, B, I, H) for H in TRANSPOSED_H]
    values["blas.transposed_min_bytes"] = lower_boundary([(GATES * H * H * 4, r)
                                                          for H, r in zip(TRANSPOSED_H, ratios)])
    if values["panels.enabled"]:  # else no product runs by panels, on any thread
        T, I, H = THREADED
        ratios = [run("threaded", T, B, I, H) for B in THREADED_B]
        lower, upper = win_range(list(zip(THREADED_B, ratios)))
        values["panels.min_threaded_rows"] = _whole_rows(lower)
        values["panels.max_threaded_rows"] = math.floor(upper)


def _whole_rows(lower: float) -> float:
    """A lower boundary between measured B as whole rows, rounded inwards (1.41 means from 2 rows on); infinity
    (never) stays."""
    return math.ceil(lower) if lower < math.inf else math.inf


def save(record: dict, path: Path | None = None) -> Path:
    """Write ``record`` (from :func:`measure`) where the kernels read it (:func:`cache_path` of its machine), and
    make the kernels read it at their next choice."""
    path = path or cache_path(record["machine"])
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(record, indent=1) + "\n")
    partial.replace(path)  # whole or not at all: a process reading meanwhile sees the old file or the new
    reload()
    return path


def show() -> str:
    """The values in use, each marked measured or safe, and where they come from."""
    tuning, safe = active(), safe_values()
    lines = [f"CPU kernel thresholds: {tuning.source}"]
    for name in TABLE:
        mark = "measured" if name in tuning.values else "safe"
        lines.append(f"  {name:28s} {value(name):>14,.0f}  ({mark}; safe {safe[name]:,.0f})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m rnnspec.kernels.cpu.tune [--show] [--busy-ok]``: measure and save (or, with --show, print the
    values in use). On a busy machine (a load average above BUSY per core) nothing is measured unless
    --busy-ok: other processes' work would land on one side of a comparison or the other, and the values saved
    would steer every later call. Returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    if not set(argv) <= {"--show", "--busy-ok"}:
        print("usage: python -m rnnspec.kernels.cpu.tune [--show] [--busy-ok]", file=sys.stderr)
        return 2
    if "--show" in argv:
        print(show())
        return 0
    described = machine()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    print(f"measuring the CPU kernels' thresholds on {described['cpu']} ({described['isa']}, {described['cores']} "
          f"cores, OpenBLAS {described['blas_core']}); load average {load:.2f}", flush=True)
    if load > BUSY * described["cores"]:
        print(f"the machine is busy (load average {load:.2f} on {described['cores']} cores): other processes' work "
              "lands on one side of a comparison or the other", file=sys.stderr, flush=True)
        if "--busy-ok" not in argv:
            print("not measured: run again when it is idle (or with --busy-ok)", file=sys.stderr)
            return 3
    record = measure(lambda line: print(line, flush=True))
    path = save(record)
    print(f"{record['seconds']} s; written to {path}")
    print(show())
    return 0
