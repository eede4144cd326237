"""Running the clauses against an implementation: generate cases, call, judge, shrink, report."""

from __future__ import annotations

import json
import math
import shlex
import sys
import time

from rnnspec.derivations.variants import parse_variant
from rnnspec.spec.cases import Case
from rnnspec.spec.clauses import Clause, by_id
from rnnspec.spec.clauses import clauses as cell_clauses
from rnnspec.spec.declared import Declared, UsageError, declared
from rnnspec.spec.expected import call_args, expected
from rnnspec.spec.judge import METHODS, Verdict, judge
from rnnspec.spec.results import ClauseResult, Report
from rnnspec.spec.worker import LoadError, Outcome, TargetName, Worker, program

__all__ = ["ShardDone", "UsageError", "check", "check_options", "print_progress", "shrink"]

DEFAULT_EXAMPLES = 50
DEFAULT_TIMEOUT = 60.0
SHRINK_BUDGET = 40


#: a method's first call in a process (imports, thread pools, tracing, compiling) may take this many times the
#: per-call timeout: a framework's first call is not its steady state
WARMUP_FACTOR = 3


def _load_note() -> str:
    """The machine's load, for a timeout's message: a call that timed out on a loaded machine may be correct."""
    import os

    try:
        one_minute = os.getloadavg()[0]
    except OSError:  # not available on this platform
        return ""
    return f"load average {one_minute:.2f} on {os.cpu_count()} cores"


class Session:
    """One target, one worker, and the time budget that bounds a run that meets hanging calls.

    A method's first call in a worker process (and on a target that declares ``shapes``, its first call on each
    shape) is its warm-up and may take ``WARMUP_FACTOR`` x the timeout, or longer where the target declares a
    ``first_call_timeout`` (:meth:`limit`);
    a call that times out is retried once in a fresh process (where it is a first call again); only a call
    that times out twice counts as hung, and the run then allows one more timeout's worth of time in all.
    """

    def __init__(self, impl, timeout: float) -> None:
        self.worker = Worker(impl, timeout)
        self.timeout = timeout
        self.warmup = WARMUP_FACTOR * timeout
        self.deadline: float | None = None
        self.hung: set[str] = set()

    def limit(self, method: str, case: Case) -> float:
        """The time ``method`` may take on ``case``: the timeout, or for a call that may compile (not
        :meth:`~rnnspec.spec.worker.Worker.is_warm`) the warm-up, ``WARMUP_FACTOR`` x the timeout or the target's
        declared ``first_call_timeout`` x timeout / ``DEFAULT_TIMEOUT``, whichever is longer (so ``--timeout``
        scales every limit alike)."""
        if self.worker.declared is None:
            try:  # loaded now, for its declarations; a target that fails to load fails its call as before
                self.worker.declarations()
            except LoadError:
                return self.warmup
        if self.worker.is_warm(method, program(case)):
            return self.timeout
        first = self.worker.declared.get("first_call_timeout")
        return max(self.warmup, first * self.timeout / DEFAULT_TIMEOUT) if first else self.warmup

    def _call_once(self, method: str, case: Case, arrays) -> Outcome:
        limit = self.limit(method, case)
        if self.deadline is not None:
            limit = min(limit, self.deadline - time.monotonic())
            if limit <= 0:
                return Outcome("skipped", message="not run: the time allowed after a timeout is spent")
        settings = {"cell": case.cell, "activation": case.activation, "variant": case.variant}
        return self.worker.call(method, settings, call_args(method, arrays, case.cell, case.variant), timeout=limit,
                                program=program(case))

    def call(self, method: str, case: Case, arrays) -> Outcome:
        if method in self.hung:
            return Outcome("skipped", message=f"{method}() was not called again after timing out twice")
        outcome = self._call_once(method, case, arrays)
        if outcome.status != "timeout":
            return outcome
        retry = self._call_once(method, case, arrays)  # in a fresh process, cold again: the warm-up limit
        if retry.status != "timeout":
            return retry
        self.hung.add(method)
        if self.deadline is None:
            self.deadline = time.monotonic() + self.timeout
        load = _load_note()
        return Outcome("timeout", message=f"{outcome.message}; retried once in a fresh process: {retry.message}"
                       + (f" ({load})" if load else "") + "; a slow machine can cause this: rerun with a longer "
                       "--timeout, or when it is quieter", seconds=outcome.seconds + retry.seconds)

    def run(self, case: Case, arrays, methods=METHODS) -> dict[str, tuple[Outcome, Outcome | None]]:
        out = {}
        for method in METHODS:
            if method not in methods:
                out[method] = (Outcome("skipped", message="not needed"), None)
                continue
            first = self.call(method, case, arrays)
            second = self.call(method, case, arrays) if first.status == "ok" else None
            out[method] = (first, second)
        return out


def _methods_for(clause: Clause) -> tuple[str, ...]:
    return (clause.method,) if clause.method else METHODS


def shrink(session: Session, clause: Clause, case: Case, verdict: Verdict, ulps: float) -> tuple[Case, Verdict, int]:
    """The smallest neighbour of ``case`` that still fails ``clause`` the same way (greedy)."""
    tries = 0
    improved = True
    while improved and tries < SHRINK_BUDGET:
        improved = False
        for smaller in case.smaller():
            tries += 1
            candidate = judge(clause, smaller, session.run(smaller, smaller.arrays(), _methods_for(clause)),
                              expected(smaller, ulps=ulps))
            if candidate.status == verdict.status:
                case, verdict, improved = smaller, candidate, True
                break
            if tries >= SHRINK_BUDGET:
                break
    return case, verdict, tries


def _shrink_from(session: Session, clause: Clause, case: Case, verdict: Verdict, ulps: float,
                 shrunk: dict[Case, Case]) -> tuple[Case, Verdict, int]:
    """:func:`shrink`; or, when an earlier clause failing first on the same case was shrunk, that smaller case
    if this clause fails there the same way (one call instead of a search: a broken target fails many
    clauses on the same cases)."""
    if shrunk.get(case, case) != case:
        small = shrunk[case]
        outcomes = session.run(small, small.arrays(), _methods_for(clause))
        again = judge(clause, small, outcomes, expected(small, ulps=ulps))
        if again.status == verdict.status:
            return small, again, 1
    small, small_verdict, tries = shrink(session, clause, case, verdict, ulps)
    shrunk.setdefault(case, small)
    return small, small_verdict, tries


def _environment(decl: Declared) -> dict:
    import platform

    import numpy as np

    env = {"python": platform.python_version(), "numpy": np.__version__, "platform": platform.platform(),
           "device": decl.device, "target_class": decl.target_class}
    try:
        from importlib.metadata import version

        env["rnnspec"] = version("rnnspec")
    except Exception:  # not installed as a distribution
        env["rnnspec"] = "unknown"
    return env


def check_options(examples: int | None, timeout: float) -> None:
    """Usage errors in the run's options, named, before any case runs."""
    if examples is not None and (isinstance(examples, bool) or not isinstance(examples, int) or examples < 1):
        raise UsageError(f"examples must be a positive integer, got {examples!r}")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not (0 < timeout < math.inf):
        raise UsageError(f"timeout must be a positive, finite number of seconds, got {timeout!r}")


def _cell_option(cell: str | None, cases: list[Case] | None) -> str | None:
    """The cell asked for (``cell=`` or the cases'), checked by name before anything loads."""
    from rnnspec.derivations.registry import check_name

    named = {c.cell for c in cases or ()}
    if cell is not None:
        named.add(cell)
    if len(named) > 1:
        raise UsageError(f"the cases and cell= name different cells: {sorted(named)}")
    if not named:
        return None
    (cell,) = named
    try:
        return check_name(cell)
    except ValueError as exc:
        raise UsageError(f"--cell: {exc}") from None


def _variant_option(variant: str | None, cases: list[Case] | None) -> str:
    """The variant asked for (``variant=`` or the cases'), in its canonical spelling."""
    named = {c.variant for c in cases or ()}
    try:
        if variant is not None:
            named.add(parse_variant(variant).name)
    except ValueError as exc:
        raise UsageError(f"--variant: {exc}") from None
    if len(named) > 1:
        raise UsageError(f"the cases and variant= name different variants: {sorted(named)}")
    return named.pop() if named else ""


def _clauses(cell: str, names: list[str] | None, variant: str = "") -> list[Clause]:
    known = by_id(cell, variant)
    unknown = [c for c in names or () if c not in known]
    if unknown:
        from rnnspec.spec.clauses import all_ids

        elsewhere = {c: all_ids()[c] for c in unknown if c in all_ids()}
        hint = "".join(f"; {c} is a clause of cell {other!r} (--cell {other})" for c, other in elsewhere.items())
        raise UsageError(f"unknown clause ids {unknown} for cell {cell!r}{hint}; known: {sorted(known)}")
    return [known[c] for c in names] if names else list(cell_clauses(cell, variant))


class ShardDone(Exception):
    """A shard ran its units but the run's others are elsewhere: no report yet (``rnnspec merge`` makes it)."""


def check(impl, *, target: str = "<object>", examples: int | None = None, seed: int = 0,
          timeout: float = DEFAULT_TIMEOUT, clauses: list[str] | None = None, cases: list[Case] | None = None,
          progress=None, cell: str | None = None, dtype: str | None = None, variant: str | None = None,
          require_all: bool = False, save_cases: str | None = None, shapes: int | str | None = None,
          results: str | None = None, shard: tuple[int, int] | None = None, workers: int = 1,
          engine: str = "local", address: str | None = None, unit_cases: int | None = None,
          units_progress=None) -> Report:
    """Check ``impl`` against every clause (or those named) of ``cell`` on generated cases; see README.

    ``impl`` is the implementation, or a :class:`~rnnspec.spec.worker.TargetName`: then it is loaded
    in the worker process, under ``timeout``, and this process never imports it. ``cell`` defaults to
    the target's (the first it declares); ``dtype`` restricts the generated cases to one declared dtype;
    ``variant`` (``"layers=2,bidirectional,lengths=zero"``) runs the cell stacked, both ways, on lengths.
    ``require_all``: a clause the target does not provide (no vjp, no loss) makes it not conformant.
    ``save_cases``: a folder where each failure's smallest case is written as ``.npz`` (inputs, expected, got;
    :mod:`rnnspec.spec.casefile`).
    ``shapes``: the generated cases on at most that many shapes (:func:`~rnnspec.spec.cases.few_shapes`); ``"all"``
    every case its own shape; None (default) what the target declares (a compiled target asks for a few).

    The run is a list of work units of ``unit_cases`` cases (:mod:`rnnspec.spec.units`; docs/runs.md), run by
    ``engine`` ("local": ``workers`` processes; "ray": Ray tasks, at ``address``), each unit's record stored as it
    finishes in the folder ``results`` (a rerun resumes there) or in memory. ``shard=(K, N)`` runs only the K-th
    of N slices of the units and raises :class:`ShardDone` when the others are not in ``results``.
    ``units_progress``: a stream for the live count of units done, failed and left (with an ETA).
    """
    from rnnspec.spec.engines import check_shard, execute
    from rnnspec.spec.store import FolderStore, MemoryStore
    from rnnspec.spec.units import DEFAULT_UNIT_CASES, Unit, close_sessions, report_from, session_for, units_of

    start = time.monotonic()
    explicit = cases is not None
    check_options(examples, timeout)
    check_shard(shard, results)
    if shapes is not None and shapes != "all" and (isinstance(shapes, bool) or not isinstance(shapes, int)
                                                   or shapes < 1):
        raise UsageError(f"shapes must be a positive whole number or 'all', got {shapes!r}")
    unit_cases = DEFAULT_UNIT_CASES if unit_cases is None else unit_cases
    if isinstance(unit_cases, bool) or not isinstance(unit_cases, int) or unit_cases < 1:
        raise UsageError(f"unit_cases must be a positive whole number of cases, got {unit_cases!r}")
    asked = _cell_option(cell, cases)
    variant = _variant_option(variant, cases)
    if asked is not None:
        _clauses(asked, clauses, variant)
    here = engine == "local" and workers == 1
    if not here and not (isinstance(impl, TargetName) and str(impl) == target):
        raise UsageError("workers > 1 and --engine ray load the target in other processes: give it by name (a "
                         f"TargetName equal to target=), not as an object (got {type(impl).__name__})")
    # the units run here call the target in this worker process too (units.session_for): loaded once, as before
    session = session_for(Unit(target, "", "", None, 0, 0, None, (), 0, 0, timeout=timeout), impl if here else None)
    try:
        decl = declared(session.worker.declarations())
        cell = decl.choose(asked)
        decl.admits_variant(parse_variant(variant))
        selected = _clauses(cell, clauses, variant)
        methods = tuple(dict.fromkeys(m for c in selected for m in _methods_for(c)))
        for case in cases or ():
            decl.admits(case)
        if dtype is not None and dtype not in decl.dtypes:
            raise UsageError(f"--dtype: {dtype!r} is not among the target's dtypes {decl.dtypes}")
    except BaseException:
        close_sessions()
        raise
    if not here:
        close_sessions()
    given = tuple(case.describe() for case in cases) if explicit else ()
    units = units_of(target, cell, variant, dtype, seed, examples or DEFAULT_EXAMPLES, shapes,
                     tuple(c.id for c in selected), unit_cases, timeout, given)
    parameters = {"target": target, "cell": cell, "variant": variant, "dtype": dtype, "seed": seed,
                  "examples": examples or DEFAULT_EXAMPLES, "shapes": shapes, "clauses": [c.id for c in selected],
                  "cases": list(given), "timeout": timeout, "unit_cases": unit_cases, "require_all": require_all}
    try:
        store = FolderStore.open(results, "check", parameters, units) if results is not None else MemoryStore()
    except BaseException:
        close_sessions()
        raise
    drawn: dict = {}

    def case_list(unit):
        """The check's cases, drawn once here for every unit run in this process."""
        from rnnspec.spec.units import case_list as draw

        if "cases" not in drawn:
            drawn["cases"] = draw(unit, decl)
        return drawn["cases"]

    execute(units, store, engine=engine, workers=workers, address=address, shard=shard,
            impl=impl if here else None, cases=case_list,
            on_case=(lambda n, total, case: progress(n, total, case)) if progress else None, stream=units_progress,
            requirements=lambda unit: _packages(unit.target))
    missing = [u for u in units if not store.has(u)]
    if missing:
        raise ShardDone(f"shard {shard[0]}/{shard[1]}: its units are stored in {results}; {len(missing)} of the "
                        f"run's {len(units)} units are not (the other shards'): put the folders together with "
                        f"rnnspec merge DIR...")
    records = [store.get(u) for u in units]
    total = len(records) and records[0]["total_cases"]
    rerun = _rerun_command(target, cell, variant, seed, total, dtype, explicit, shapes)
    report = report_from(records, require_all=require_all, rerun=rerun)
    report.seconds = time.monotonic() - start
    if save_cases is not None:
        session = Session(impl, timeout)
        try:
            _save_failures(session, report.results, methods, decl, save_cases)
        finally:
            session.worker.stop()
    return report


def _packages(target: str) -> tuple[str, ...]:
    """The packages a built-in framework target needs (its matrix row's), for an engine placing units on nodes."""
    from rnnspec.spec.matrix import ROWS

    return next((r.packages for r in ROWS if r.target == target), ())


def _rerun_command(target: str, cell: str, variant: str, seed: int, examples: int, dtype: str | None,
                   explicit: bool, shapes: int | str | None = None) -> str:
    """The command that reruns the whole run (none for a run of given cases: each block gives its own)."""
    if explicit:
        return ""
    parts = ["rnnspec check", shlex.quote(target), f"--cell {cell}", *(f"--variant {variant}",) * bool(variant),
             *(f"--dtype {dtype}",) * bool(dtype), f"--seed {seed}", f"--examples {examples}",
             *(f"--shapes {shapes}",) * (shapes is not None)]
    return " ".join(parts)


def _save_failures(session: Session, results: list[ClauseResult], methods: tuple[str, ...], decl, folder: str) -> None:
    """Each distinct smallest failing case, called once more, as ``<folder>/<case digest>.npz``; the path goes into
    the counterexample (``saved``)."""
    from rnnspec.spec.casefile import write_case

    written: dict[str, str] = {}
    for result in results:
        ce = result.counterexample
        if not ce:
            continue
        case = Case(**ce["case"])
        key = case.describe()
        if key not in written and session.deadline is None:
            outcomes = session.run(case, case.arrays(), methods)
            written[key] = write_case(folder, case, outcomes, expected(case, ulps=decl.ulps(case.dtype)))
        if key in written:
            ce["saved"] = written[key]


def _counterexample(target: str, seed: int, clause: Clause, case: Case, verdict: Verdict, tries: int) -> dict:
    return {"case": json.loads(case.describe()), "status": verdict.status, "error": verdict.error,
            "tolerance": verdict.tolerance, "message": verdict.message, "shrink_steps": tries,
            "reproduce": f"rnnspec check {shlex.quote(target)} --clause {clause.id} --case '{case.describe()}'"}


def print_progress(stream=sys.stderr):
    def show(n: int, total: int, case: Case) -> None:
        what = case.activation if case.cell == "elman" else case.cell
        line = (f"[{n}/{total}] T={case.T} B={case.B} I={case.I} H={case.H} K={case.K} {what} "
                f"{case.dtype} {case.regime}" + (f" {case.variant}" if case.variant else ""))
        end = "\r" if stream.isatty() else "\n"
        stream.write(line.ljust(90) + end)
        stream.flush()
    return show
