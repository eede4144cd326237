"""Running the clauses against an implementation: generate cases, call, judge, shrink, report."""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, field

from rnnspec.spec.cases import Case, generate
from rnnspec.spec.clauses import BY_ID, CLAUSES, Clause
from rnnspec.spec.expected import call_args, expected
from rnnspec.spec.judge import METHODS, Verdict, judge
from rnnspec.spec.worker import Outcome, Worker

DEFAULT_EXAMPLES = 50
DEFAULT_TIMEOUT = 60.0
SHRINK_BUDGET = 40
KNOWN_DTYPES = ("float32", "float64")
KNOWN_ACTIVATIONS = ("tanh", "sigmoid", "relu", "identity")
SEVERITY = {"failed": 3, "error": 2, "passed": 1, "skipped": 0, "not provided": 0, "undetermined": 0}


class UsageError(Exception):
    """The target does not declare what the suite needs (a usage error, exit code 2)."""


@dataclass
class ClauseResult:
    clause: Clause
    status: str = "not provided"
    examples: int = 0
    worst: Verdict | None = None
    first_failure: tuple[Case, Verdict] | None = None
    counterexample: dict | None = None

    undetermined: int = 0

    def add(self, case: Case, verdict: Verdict) -> None:
        if verdict.status == "undetermined":
            self.undetermined += 1
            if self.status == "not provided":
                self.status, self.worst = "undetermined", verdict
            return
        if verdict.status in ("skipped", "not provided"):
            if self.examples == 0 and verdict.status == "skipped":
                self.status = "error"
                self.worst = self.worst or Verdict("error", verdict.message)
            return
        self.examples += 1
        if SEVERITY[verdict.status] > SEVERITY.get(self.status, 0):
            self.status = verdict.status
            if verdict.status in ("failed", "error"):
                self.first_failure = (case, verdict)
        if self.worst is None or verdict.ratio > self.worst.ratio or (
                verdict.status in ("failed", "error") and self.worst.status == "passed"):
            self.worst = verdict

    def to_json(self) -> dict:
        return {"id": self.clause.id, "statement": self.clause.statement, "tolerance_rule": self.clause.tolerance_rule,
                "status": self.status,
                "examples": self.examples, "undetermined": self.undetermined,
                "worst_error": self.worst.error if self.worst else None,
                "tolerance": self.worst.tolerance if self.worst else None,
                "message": self.worst.message if self.worst and self.status != "passed" else "",
                "counterexample": self.counterexample}


@dataclass
class Report:
    target: str
    seed: int
    results: list[ClauseResult]
    cases: int
    seconds: float
    environment: dict = field(default_factory=dict)

    @property
    def conformant(self) -> bool:
        statuses = {r.status for r in self.results}
        return statuses <= {"passed", "not provided", "undetermined"} and "passed" in statuses

    def to_json(self) -> dict:
        return {"schema": "rnnspec.report/1", "target": self.target, "conformant": self.conformant,
                "seed": self.seed, "cases": self.cases, "seconds": round(self.seconds, 3),
                "environment": self.environment, "clauses": [r.to_json() for r in self.results]}


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


def _declared(impl) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if getattr(impl, "cell", "elman") != "elman":
        raise UsageError(f"the target's cell is {impl.cell!r}; this suite checks 'elman'")
    dtypes = tuple(getattr(impl, "dtypes", ("float64",)))
    activations = tuple(getattr(impl, "activations", None) or (getattr(impl, "activation", "tanh"),))
    for name, values, known in (("dtypes", dtypes, KNOWN_DTYPES), ("activations", activations, KNOWN_ACTIVATIONS)):
        unknown = [v for v in values if v not in known]
        if unknown or not values:
            raise UsageError(f"the target declares {name} {values}; known: {known}")
    return dtypes, activations


def _methods_for(clause: Clause) -> tuple[str, ...]:
    return (clause.method,) if clause.method else METHODS


def shrink(session: Session, clause: Clause, case: Case, verdict: Verdict) -> tuple[Case, Verdict, int]:
    """The smallest neighbour of ``case`` that still fails ``clause`` the same way (greedy)."""
    tries = 0
    improved = True
    while improved and tries < SHRINK_BUDGET:
        improved = False
        for smaller in case.smaller():
            tries += 1
            arrays = smaller.arrays()
            candidate = judge(clause, smaller, session.run(smaller, arrays, _methods_for(clause)),
                              expected(smaller, arrays))
            if candidate.status == verdict.status:
                case, verdict, improved = smaller, candidate, True
                break
            if tries >= SHRINK_BUDGET:
                break
    return case, verdict, tries


def _environment(impl) -> dict:
    import platform

    import numpy as np

    env = {"python": platform.python_version(), "numpy": np.__version__, "platform": platform.platform(),
           "device": getattr(impl, "device", "cpu"), "target_class": f"{type(impl).__module__}.{type(impl).__name__}"}
    try:
        from importlib.metadata import version

        env["rnnspec"] = version("rnnspec")
    except Exception:  # not installed as a distribution
        env["rnnspec"] = "unknown"
    return env


def check(impl, *, target: str = "<object>", examples: int | None = None, seed: int = 0,
          timeout: float = DEFAULT_TIMEOUT, clauses: list[str] | None = None, cases: list[Case] | None = None,
          progress=None) -> Report:
    """Check ``impl`` against every clause (or those named) on generated cases; see README."""
    start = time.monotonic()
    dtypes, activations = _declared(impl)
    unknown = [c for c in clauses or () if c not in BY_ID]
    if unknown:
        raise UsageError(f"unknown clause ids {unknown}; known: {sorted(BY_ID)}")
    selected = [BY_ID[c] for c in clauses] if clauses else list(CLAUSES)
    if cases is None:
        cases = generate(examples or DEFAULT_EXAMPLES, seed, dtypes, activations)
    methods = tuple(dict.fromkeys(m for c in selected for m in _methods_for(c)))
    results = {c.id: ClauseResult(c) for c in selected}
    session = Session(impl, timeout)
    try:
        for n, case in enumerate(cases, 1):
            if progress:
                progress(n, len(cases), case)
            arrays = case.arrays()
            spec = expected(case, arrays)
            outcomes = session.run(case, arrays, methods)
            for clause in selected:
                results[clause.id].add(case, judge(clause, case, outcomes, spec))
        for result in results.values():
            if result.first_failure and session.deadline is None:
                case, verdict = result.first_failure
                small, small_verdict, tries = shrink(session, result.clause, case, verdict)
                result.counterexample = _counterexample(target, seed, result.clause, small, small_verdict, tries)
            elif result.first_failure:
                case, verdict = result.first_failure
                result.counterexample = _counterexample(target, seed, result.clause, case, verdict, 0)
    finally:
        session.worker.stop()
    return Report(target, seed, list(results.values()), len(cases), time.monotonic() - start, _environment(impl))


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
