"""What each mutant of the corpus declares a correct suite must catch, and how the tests read it.

A mutant's ``must_fail`` holds clause ids without the cell's (and variant's) prefix, as shell patterns:
``"VJP-W_F"`` is ``LSTM-VJP-W_F`` on an LSTM, ``"VJP-*_REVERSE"`` every reverse direction's vjp gradient
of a bidirectional run. Written without the prefix so that one declaration serves a mutant inherited
by both GRUs, or run under a variant. Every pattern must name some clause of the cell it is checked as
(a typo would otherwise declare nothing), and every clause it names must fail.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from rnnspec.spec.clauses import clauses
from rnnspec.spec.contract import contract

#: every gradient that flows back through the cell: vjp's, and loss's but for the head's V and c (whose
#: gradients read the forward only); what a bug in the backward pass reaches
BACKWARD = ("VJP-*", "LOSS-[XUWBP]*", "LOSS-[HC]0")
#: every value clause: a bug in the forward pass reaches the states, the loss and every gradient
EVERYTHING = ("FWD-*", "VJP-*", "LOSS-*")


def declared(mutant: type, cell: str, variant: str = "") -> set[str]:
    """The clause ids of ``cell`` run as ``variant`` that ``mutant.must_fail`` names.

    Raises AssertionError (a test's failure) where the mutant declares nothing, or a pattern names no
    clause of the cell.
    """
    patterns = getattr(mutant, "must_fail", ())
    assert patterns and not isinstance(patterns, str), (
        f"{mutant.__name__}.must_fail must be a non-empty tuple of clause-id patterns, got {patterns!r}")
    prefix = contract(cell, variant).prefix
    ids = [c.id for c in clauses(cell, variant)]
    named = set()
    for pattern in patterns:
        hits = {i for i in ids if fnmatchcase(i, f"{prefix}-{pattern}")}
        assert hits, f"{mutant.__name__}.must_fail: {pattern!r} names no clause of {prefix} (ids: {ids})"
        named |= hits
    return named


def verdicts(report) -> tuple[list[str], list[str]]:
    """The clause ids a report failed (a wrong value, shape, ...), and those it could not judge (a call raised)."""
    failed = [r.clause.id for r in report.results if r.status == "failed"]
    broken = [r.clause.id for r in report.results if r.status == "error"]
    return failed, broken


def assert_caught(mutant: type, report, cell: str, variant: str = "") -> None:
    """``report`` rejected ``mutant``, and every clause the mutant declares failed.

    A declared clause must fail, not merely break: a call that raises proves nothing about the clause's
    power to tell a wrong value from a right one.
    """
    expected = declared(mutant, cell, variant)
    failed, broken = verdicts(report)
    assert not report.conformant and failed, f"{mutant.__name__} ({mutant.__doc__}) failed no clause"
    escaped = sorted(expected - set(failed))
    assert not escaped, (f"{mutant.__name__} ({mutant.__doc__}) escaped clauses it must fail: {escaped}; "
                         f"failed {failed}, raised in {broken}")
