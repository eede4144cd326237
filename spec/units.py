"""Runs as work units: a check is a deterministic list of units, each a range of the check's one case list.

A unit is (target, cell, variant, dtype or None, seed, examples, shapes, clause ids, start, stop): it loads
the target in a worker process (:class:`~rnnspec.spec.runner.Session`), regenerates the check's case list
(the same for the same declarations, seed and Hypothesis version; the unit carries its digest and refuses a
different list), runs cases ``[start, stop)``, judges every clause on each, and shrinks each clause's first
failure in the unit. Its record (:func:`run_unit`) is plain JSON: what :meth:`ClauseResult.add` needs per case
per clause, the counterexamples, the environment, and the unit's seconds (timings: never compared).

:func:`report_from` rebuilds the check's :class:`~rnnspec.spec.results.Report` from the records alone, in unit
order, taking each clause's counterexample from the earliest unit that failed it (which holds the clause's
first failure of the whole run): the same units give the same report wherever they ran. docs/runs.md has the
format.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field, fields

from rnnspec.spec.cases import Case, few_shapes, generate
from rnnspec.spec.clauses import by_id
from rnnspec.spec.declared import Declared, UsageError, declared
from rnnspec.spec.judge import METHODS, Verdict, judge

#: cases per unit unless asked (--unit-cases): a default check (50 cases) is two units
DEFAULT_UNIT_CASES = 25
RECORD_SCHEMA = "rnnspec.unit/1"


@dataclass(frozen=True)
class Unit:
    """One slice ``[start, stop)`` of a check's case list; ``key`` names it (and its results file)."""

    target: str
    cell: str
    variant: str
    dtype: str | None
    seed: int
    examples: int
    shapes: int | str | None
    clauses: tuple[str, ...]
    start: int
    stop: int
    #: given cases (``--case``) as JSON, instead of generated ones
    cases: tuple[str, ...] = ()
    #: the per-call timeout (a run's parameter, not part of what the unit is)
    timeout: float = field(default=60.0, compare=False)

    def identity(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "timeout"}
        out["clauses"], out["cases"] = list(self.clauses), list(self.cases)
        return out

    @property
    def key(self) -> str:
        """sha256 of the unit's identity (canonical JSON), 20 hex digits: the name of its results file."""
        text = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:20]

    @property
    def group(self) -> tuple:
        """The check this unit is part of: units of one group are merged into one report."""
        return (self.target, self.cell, self.variant, self.dtype, self.seed, self.examples, self.shapes,
                self.clauses, self.cases)

    def to_json(self) -> dict:
        return {**self.identity(), "timeout": self.timeout}

    @classmethod
    def from_json(cls, data: dict) -> Unit:
        data = dict(data)
        data["clauses"], data["cases"] = tuple(data["clauses"]), tuple(data.get("cases", ()))
        return cls(**data)

    def describe(self) -> str:
        what = " ".join(str(p) for p in (self.cell, self.variant, self.dtype) if p)
        return f"{self.target} {what} seed {self.seed} cases {self.start}-{self.stop - 1}"


def split(total: int, unit_cases: int) -> list[tuple[int, int]]:
    """``[start, stop)`` ranges of ``unit_cases`` covering ``range(total)`` (the last may be shorter)."""
    if isinstance(unit_cases, bool) or not isinstance(unit_cases, int) or unit_cases < 1:
        raise UsageError(f"unit_cases must be a positive whole number of cases, got {unit_cases!r}")
    return [(a, min(a + unit_cases, total)) for a in range(0, total, unit_cases)]


def units_of(target: str, cell: str, variant: str, dtype: str | None, seed: int, examples: int,
             shapes: int | str | None, clauses: tuple[str, ...], unit_cases: int, timeout: float,
             cases: tuple[str, ...] = ()) -> list[Unit]:
    """The units of one check, in case order. Their ranges are over ``examples`` (or the given cases), never over
    what a generation drew, so a planner needs no declarations; a unit past the end of a shorter list is empty."""
    total = len(cases) if cases else examples
    return [Unit(target, cell, variant, dtype, seed, examples, shapes, tuple(clauses), a, b, tuple(cases), timeout)
            for a, b in split(total, unit_cases)]


_CASES: dict[tuple, list[Case]] = {}


def case_list(unit: Unit, decl: Declared) -> list[Case]:
    """The check's whole case list (cached per process: a process running many units of a check draws it once)."""
    if unit.cases:
        return [Case(**json.loads(c)) for c in unit.cases]
    dtypes = (unit.dtype,) if unit.dtype else decl.dtypes
    activations = decl.activations_of(unit.cell)
    few = decl.shapes if unit.shapes is None else None if unit.shapes == "all" else unit.shapes
    key = (unit.seed, unit.examples, dtypes, activations, unit.cell, unit.variant, few, decl.max_T)
    if key not in _CASES:
        cases = generate(unit.examples, unit.seed, dtypes, activations, unit.cell, unit.variant)
        _CASES[key] = few_shapes(cases, few, decl.max_T) if few is not None else cases
    return _CASES[key]


def digest_cases(cases: list[Case]) -> str:
    text = "\n".join(c.describe() for c in cases)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _plain(value):
    """A JSON value from NumPy scalars; floats stay exact (JSON's repr round-trips a float64)."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON: {type(value).__name__}")


def _verdict_row(v: Verdict) -> list:
    return [v.status, v.message, None if v.error is None else float(v.error),
            None if v.tolerance is None else float(v.tolerance), v.reason]


#: this process's session by (target, timeout, object): the units it runs of one target in a row share a worker
#: process, so the target is loaded once per process, not once per unit (as the run before units loaded it once)
_SESSIONS: dict = {}


def session_for(unit: Unit, impl=None):
    """A session on ``unit``'s target (``impl``, or the target by name), reused across this process's units, reset
    to what a fresh one is: no method hung, no deadline, every method's first call in the unit given the warm-up
    limit (so a unit's time limits, and so its verdicts, do not depend on which units ran before it here)."""
    from rnnspec.spec.runner import Session
    from rnnspec.spec.worker import TargetName

    key = (unit.target, unit.timeout, id(impl) if impl is not None else None)
    session = _SESSIONS.get(key)
    if session is None:
        close_sessions()  # one target's process kept at a time: a matrix's units come target by target
        session = _SESSIONS[key] = Session(impl if impl is not None else TargetName(unit.target), unit.timeout)
    session.hung, session.deadline, session.worker.warm = set(), None, set()
    return session


def close_sessions() -> None:
    """Stop the worker processes of :func:`session_for` (at the end of a run)."""
    while _SESSIONS:
        _SESSIONS.popitem()[1].worker.stop()


def run_unit(unit: Unit, impl=None, cases: list[Case] | None = None, on_case=None) -> dict:
    """Run ``unit``: its cases through a worker process, every clause judged, each clause's first failure in the
    unit shrunk. ``impl``: the implementation object (else the worker loads ``unit.target`` by name); ``cases``: the
    check's case list when the caller has drawn it; ``on_case(n, case)`` for each case (n counts the whole list).
    The worker process is this process's for the target (:func:`session_for`); one that fails to load is stopped.
    Returns the unit's record (plain JSON values; docs/runs.md)."""
    from rnnspec.spec.expected import expected
    from rnnspec.spec.results import ClauseResult
    from rnnspec.spec.runner import _counterexample, _environment, _methods_for, _shrink_from

    start = time.monotonic()
    session = session_for(unit, impl)
    try:
        decl = declared(session.worker.declarations())
        decl.choose(unit.cell)
        everything = cases if cases is not None else case_list(unit, decl)
        mine = everything[unit.start:unit.stop]
        known = by_id(unit.cell, unit.variant)
        selected = [known[c] for c in unit.clauses]
        methods = tuple(dict.fromkeys(m for c in selected for m in _methods_for(c)))
        results = {c.id: ClauseResult(c) for c in selected}
        rows: dict[str, list] = {c.id: [] for c in selected}
        for n, case in enumerate(mine, unit.start + 1):
            if on_case:
                on_case(n, len(everything), case)
            spec = expected(case, ulps=decl.ulps(case.dtype))
            outcomes = session.run(case, case.arrays(), methods)
            for clause in selected:
                verdict = judge(clause, case, outcomes, spec)
                results[clause.id].add(case, verdict)
                rows[clause.id].append(_verdict_row(verdict))
        counterexamples = {}
        shrunk: dict[Case, Case] = {}
        for result in results.values():
            if not result.first_failure:
                continue
            case, verdict = result.first_failure
            if session.deadline is None:
                small, small_verdict, tries = _shrink_from(session, result.clause, case, verdict,
                                                           decl.ulps(case.dtype), shrunk)
            else:
                small, small_verdict, tries = case, verdict, 0
            counterexamples[result.clause.id] = _counterexample(unit.target, unit.seed, result.clause, small,
                                                                small_verdict, tries)
    except BaseException:
        close_sessions()  # a target that failed to load, or a run interrupted: no process kept for the next unit
        raise
    checked = tuple(dict.fromkeys(c.dtype for c in everything))
    return {"schema": RECORD_SCHEMA, "unit": unit.to_json(), "key": unit.key, "total_cases": len(everything),
            "cases_digest": digest_cases(everything), "cases": [asdict(c) for c in mine], "verdicts": rows,
            "counterexamples": counterexamples, "environment": _environment(decl),
            "accuracy": decl.accuracy_label(checked), "seconds": time.monotonic() - start}


def encode(record: dict) -> str:
    """A record as the text stored (``allow_nan``: an error may be inf or nan)."""
    return json.dumps(record, default=_plain, sort_keys=True) + "\n"


def report_from(records: list[dict], *, require_all: bool = False, rerun: str = "", seconds: float | None = None):
    """The report of one check from its units' records (every unit of it, any order).

    Case n of the whole list is added to each clause's result in order, so counts, the worst case and the first
    failure are those of one run over every case; a clause's counterexample is the earliest unit's that failed
    it. Records of different case lists (another Hypothesis version drew other cases) are refused.
    """
    from rnnspec.spec.results import ClauseResult, Report

    if not records:
        raise ValueError("no unit records to build a report from")
    records = sorted(records, key=lambda r: r["unit"]["start"])
    units = [Unit.from_json(r["unit"]) for r in records]
    first = units[0]
    if any(u.group != first.group for u in units):
        raise ValueError("the records are of different checks")
    digests = {r["cases_digest"] for r in records}
    if len(digests) > 1:
        raise UsageError("the units drew different case lists (another rnnspec or Hypothesis version?): "
                         + ", ".join(f"{u.describe()}: {r['cases_digest']}" for u, r in zip(units, records)))
    known = by_id(first.cell, first.variant)
    results = {c: ClauseResult(known[c]) for c in first.clauses}
    for record in records:
        cases = [Case(**c) for c in record["cases"]]
        for clause, rows in record["verdicts"].items():
            result = results[clause]
            for case, row in zip(cases, rows):
                result.add(case, Verdict(row[0], row[1], row[2], row[3], row[4]))
            if result.counterexample is None and clause in record["counterexamples"]:
                result.counterexample = record["counterexamples"][clause]
    total = seconds if seconds is not None else math.fsum(r["seconds"] for r in records)
    return Report(first.target, first.seed, list(results.values()), records[0]["total_cases"], total,
                  records[0]["environment"], records[0]["accuracy"], first.cell, first.variant, rerun, require_all)


def decode(text: str) -> dict:
    record = json.loads(text)
    if record.get("schema") != RECORD_SCHEMA:
        raise ValueError(f"not a unit record of {RECORD_SCHEMA}: schema {record.get('schema')!r}")
    return record


__all__ = ["DEFAULT_UNIT_CASES", "METHODS", "Unit", "case_list", "decode", "encode", "report_from", "run_unit",
           "split", "units_of"]
