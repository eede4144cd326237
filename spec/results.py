"""What a run found: each clause's verdict over all cases, and the report of a whole run.

A clause's status follows from counts, never from the order cases came in:

- ``failed`` / ``error``: some case failed (or could not be judged because the call broke);
- ``timeout``: nothing failed or broke, but a call did not return in time, even retried in a fresh process
  (slow is not wrong: a run with timeouts is inconclusive, never non-conformant on their account);
- ``not provided``: the target has no method for it (whatever else happened);
- ``passed``: no failure, and at least :data:`MIN_DECISIVE_SHARE` of the judged cases decisive;
- ``undetermined``: no failure, but too few decisive cases to say it passed (ill-conditioned cases,
  a ReLU pre-activation at its kink, values near overflow): a clause that could not have failed is
  never reported passed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field

from rnnspec.spec.cases import Case
from rnnspec.spec.clauses import Clause
from rnnspec.spec.judge import Verdict

#: a clause passes only if at least this share of the cases it judged decided it
MIN_DECISIVE_SHARE = 0.5
SEVERITY = {"failed": 5, "error": 4, "timeout": 3, "passed": 2, "undetermined": 1, "skipped": 0, "not provided": 0}


@dataclass
class ClauseResult:
    clause: Clause
    #: cases by verdict status, and undetermined cases by reason
    counts: Counter = field(default_factory=Counter)
    reasons: Counter = field(default_factory=Counter)
    #: the verdict that ranks highest (severity, then error / tolerance), and its case
    worst: Verdict | None = None
    worst_case: Case | None = None
    first_failure: tuple[Case, Verdict] | None = None
    counterexample: dict | None = None
    unprovided: str = ""
    #: why the first skipped case was not run (a call skipped only after a timeout spent the run's time)
    skipped: str = ""

    def add(self, case: Case, verdict: Verdict) -> None:
        self.counts[verdict.status] += 1
        if verdict.status == "skipped":
            self.skipped = self.skipped or verdict.message
        if verdict.status == "undetermined":
            self.reasons[verdict.reason] += 1
        if verdict.status == "not provided":
            self.unprovided = self.unprovided or verdict.message
            return
        if verdict.status in ("failed", "error") and self.first_failure is None:
            self.first_failure = (case, verdict)
        rank = (SEVERITY[verdict.status], verdict.ratio)
        if verdict.status != "skipped" and (self.worst is None or rank > (SEVERITY[self.worst.status],
                                                                            self.worst.ratio)):
            self.worst, self.worst_case = verdict, case

    @property
    def decisive(self) -> int:
        """Cases that decided the clause: passed or failed (an error decides nothing numerically)."""
        return self.counts["passed"] + self.counts["failed"]

    @property
    def undetermined(self) -> int:
        return self.counts["undetermined"]

    @property
    def examples(self) -> int:
        """Cases judged: decided, undetermined or broken (not those not provided or skipped)."""
        return self.decisive + self.undetermined + self.counts["error"] + self.counts["timeout"]

    @property
    def status(self) -> str:
        c = self.counts
        if c["failed"]:
            return "failed"
        if c["error"]:
            return "error"
        if c["timeout"]:
            return "timeout"
        if c["not provided"]:
            return "not provided"
        if not self.examples:
            # a case is skipped only after a timeout (the method hung twice, or the time allowed after a
            # timeout is spent): inconclusive like the timeout itself, not an error of the target
            return "timeout" if c["skipped"] else "not provided"
        if self.decisive and self.decisive >= MIN_DECISIVE_SHARE * self.examples:
            return "passed"
        return "undetermined"

    @property
    def message(self) -> str:
        """Why the clause has its status, for every status but passed."""
        status = self.status
        if status == "not provided":
            return self.unprovided or "not provided"
        if status == "undetermined":
            why = ", ".join(f"{n} {reason}" for reason, n in self.reasons.most_common())
            return (f"only {self.decisive} of {self.examples} cases decisive ({why}): too few to say it passed; "
                    "run more --examples")
        if status in ("failed", "error") and self.counterexample:
            return self.counterexample["message"]  # of the smallest case, which the report shows
        if status == "timeout" and not self.worst:
            return self.skipped
        return self.worst.message if self.worst and status != "passed" else ""

    def to_json(self) -> dict:
        worst = self.worst
        return {"id": self.clause.id, "statement": self.clause.statement, "tolerance_rule": self.clause.tolerance_rule,
                "status": self.status, "examples": self.examples, "decisive": self.decisive,
                "undetermined": self.undetermined, "undetermined_reasons": dict(self.reasons),
                "worst_error": worst.error if worst else None, "tolerance": worst.tolerance if worst else None,
                "worst_case": asdict(self.worst_case) if self.worst_case and worst.error is not None else None,
                "message": self.message, "counterexample": self.counterexample}


@dataclass
class Report:
    target: str
    seed: int
    results: list[ClauseResult]
    cases: int
    seconds: float
    environment: dict = field(default_factory=dict)
    #: the accuracy class the tolerances assumed, as the report names it ("accurate (2 ulps)")
    accuracy: str = ""
    cell: str = "elman"
    #: the variant checked ("" one forward layer over full sequences)
    variant: str = ""
    #: the command that reruns the whole run ("" for a run of given cases)
    rerun: str = ""
    #: whether a clause not provided makes the run not conformant (``--require-all``)
    require_all: bool = False

    @property
    def unprovided_methods(self) -> list[str]:
        """The contract's methods whose clauses the target does not provide (``vjp``, ``loss``)."""
        missing = {r.clause.method for r in self.results if r.status == "not provided" and r.clause.method}
        return [m for m in ("forward", "vjp", "loss") if m in missing]

    @property
    def verdict(self) -> str:
        """"conformant", "not conformant" (a clause failed or broke) or "inconclusive" (nothing failed, but a
        clause had too few decisive cases, a call timed out, or no clause passed)."""
        statuses = {r.status for r in self.results}
        if statuses & {"failed", "error"} or (self.require_all and "not provided" in statuses):
            return "not conformant"
        if statuses & {"undetermined", "timeout"} or "passed" not in statuses:
            return "inconclusive"
        return "conformant"

    @property
    def conformant(self) -> bool:
        return self.verdict == "conformant"

    def to_json(self) -> dict:
        return {"schema": "rnnspec.report/2", "target": self.target, "cell": self.cell,
                **({"variant": self.variant} if self.variant else {}), "verdict": self.verdict,
                "conformant": self.conformant, "seed": self.seed, "cases": self.cases,
                "seconds": round(self.seconds, 3), "accuracy": self.accuracy, "environment": self.environment,
                "not_provided": self.unprovided_methods, "require_all": self.require_all, "rerun": self.rerun,
                "clauses": [r.to_json() for r in self.results]}
