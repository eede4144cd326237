"""Running the clauses against an implementation: generate cases, call, judge, shrink, report."""

from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict

from rnnspec.spec.cases import Case, generate
from rnnspec.spec.clauses import BY_ID, CLAUSES, Clause
from rnnspec.spec.declared import Declared, UsageError, declared
from rnnspec.spec.expected import call_args, expected
from rnnspec.spec.judge import METHODS, Verdict, judge
from rnnspec.spec.results import ClauseResult, Report
from rnnspec.spec.worker import Outcome, Worker

__all__ = ["UsageError", "check", "check_options", "print_progress", "shrink"]

DEFAULT_EXAMPLES = 50
DEFAULT_TIMEOUT = 60.0
SHRINK_BUDGET = 40


class Session:
    """One target, one worker, and the time budget that bounds a run that meets hanging calls."""

    def __init__(self, impl, timeout: float) -> None:
        self.worker = Worker(impl, timeout)
        self.timeout = timeout
        self.deadline: float | None = None
        self.hung: set[str] = set()

    def call(self, method: str, case: Case, arrays) -> Outcome:
        if method in self.hung:
            return Outcome("skipped", message=f"{method}() was not called again after timing out")
        limit = self.timeout
        if self.deadline is not None:
            limit = self.deadline - time.monotonic()
            if limit <= 0:
                return Outcome("skipped", message="not run: the time allowed after a timeout is spent")
        outcome = self.worker.call(method, case.activation, call_args(method, arrays), timeout=limit)
        if outcome.status == "timeout":
            self.hung.add(method)
            if self.deadline is None:
                self.deadline = time.monotonic() + self.timeout
        return outcome

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
            arrays = smaller.arrays()
            candidate = judge(clause, smaller, session.run(smaller, arrays, _methods_for(clause)),
                              expected(smaller, arrays, ulps))
            if candidate.status == verdict.status:
                case, verdict, improved = smaller, candidate, True
                break
            if tries >= SHRINK_BUDGET:
                break
    return case, verdict, tries


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


def check(impl, *, target: str = "<object>", examples: int | None = None, seed: int = 0,
          timeout: float = DEFAULT_TIMEOUT, clauses: list[str] | None = None, cases: list[Case] | None = None,
          progress=None) -> Report:
    """Check ``impl`` against every clause (or those named) on generated cases; see README.

    ``impl`` is the implementation, or a :class:`~rnnspec.spec.worker.TargetName`: then it is loaded
    in the worker process, under ``timeout``, and this process never imports it.
    """
    start = time.monotonic()
    check_options(examples, timeout)
    unknown = [c for c in clauses or () if c not in BY_ID]
    if unknown:
        raise UsageError(f"unknown clause ids {unknown}; known: {sorted(BY_ID)}")
    selected = [BY_ID[c] for c in clauses] if clauses else list(CLAUSES)
    methods = tuple(dict.fromkeys(m for c in selected for m in _methods_for(c)))
    session = Session(impl, timeout)
    try:
        decl = declared(session.worker.declarations())
        for case in cases or ():
            decl.admits(case)
        if cases is None:
            cases = generate(examples or DEFAULT_EXAMPLES, seed, decl.dtypes, decl.activations)
        results = {c.id: ClauseResult(c) for c in selected}
        for n, case in enumerate(cases, 1):
            if progress:
                progress(n, len(cases), case)
            arrays = case.arrays()
            spec = expected(case, arrays, decl.ulps(case.dtype))
            outcomes = session.run(case, arrays, methods)
            for clause in selected:
                results[clause.id].add(case, judge(clause, case, outcomes, spec))
        for result in results.values():
            if result.first_failure and session.deadline is None:
                case, verdict = result.first_failure
                small, small_verdict, tries = shrink(session, result.clause, case, verdict, decl.ulps(case.dtype))
                result.counterexample = _counterexample(target, seed, result.clause, small, small_verdict, tries)
            elif result.first_failure:
                case, verdict = result.first_failure
                result.counterexample = _counterexample(target, seed, result.clause, case, verdict, 0)
    finally:
        session.worker.stop()
    return Report(target, seed, list(results.values()), len(cases), time.monotonic() - start, _environment(decl),
                  decl.accuracy_label)


def _counterexample(target: str, seed: int, clause: Clause, case: Case, verdict: Verdict, tries: int) -> dict:
    return {"case": asdict(case), "status": verdict.status, "error": verdict.error, "tolerance": verdict.tolerance,
            "message": verdict.message, "shrink_steps": tries,
            "reproduce": f"rnnspec check {target} --clause {clause.id} --case '{case.describe()}'"}


def print_progress(stream=sys.stderr):
    def show(n: int, total: int, case: Case) -> None:
        line = (f"[{n}/{total}] T={case.T} B={case.B} I={case.I} H={case.H} K={case.K} {case.activation} "
                f"{case.dtype} {case.regime}")
        end = "\r" if stream.isatty() else "\n"
        stream.write(line.ljust(90) + end)
        stream.flush()
    return show
