"""The corpus's declarations are checked, not decoration: a declared clause that passes, or only raises, fails
the mutant's test; a pattern that names no clause is refused."""

import pytest

from rnnspec.spec.runner import check

import mutants
from must_fail import BACKWARD, assert_caught, declared

#: two clauses and a handful of cases: enough to reach a verdict on each, in a second
FAST = {"clauses": ["ELMAN-VJP-W", "ELMAN-VJP-B"], "examples": 6}


class WrongDeclaration(mutants.OffByOneInTime):
    """dL/dW off by one in time, declared to be caught by dL/db, which it leaves right."""

    must_fail = ("VJP-W", "VJP-B")


class RaisesInVjp(mutants.IgnoresH0):
    """A wrong forward whose vjp raises: its vjp clauses are errors, which prove nothing about telling values
    apart."""

    must_fail = ("FWD-H", "VJP-W")

    def vjp(self, x, state0, params, cotangents):
        raise RuntimeError("no vjp here")


def test_a_declared_clause_that_passes_fails_the_mutants_test():
    report = check(WrongDeclaration(), target="WrongDeclaration", **FAST)
    assert {r.clause.id: r.status for r in report.results} == {"ELMAN-VJP-W": "failed", "ELMAN-VJP-B": "passed"}
    with pytest.raises(AssertionError, match=r"escaped clauses it must fail: \['ELMAN-VJP-B'\]"):
        assert_caught(WrongDeclaration, report, "elman")


def test_a_declared_clause_left_unrun_escapes_and_a_right_declaration_passes():
    report = check(mutants.OffByOneInTime(), target="OffByOneInTime", **FAST)
    with pytest.raises(AssertionError, match="ELMAN-LOSS-W"):  # declared, but not among the clauses run
        assert_caught(mutants.OffByOneInTime, report, "elman")
    assert_caught(type("OnlyW", (mutants.OffByOneInTime,), {"must_fail": ("VJP-W",)}), report, "elman")


def test_a_declared_clause_that_only_raises_does_not_count():
    report = check(RaisesInVjp(), target="RaisesInVjp", clauses=["ELMAN-FWD-H", "ELMAN-VJP-W"], examples=6)
    assert {r.clause.id: r.status for r in report.results} == {"ELMAN-FWD-H": "failed", "ELMAN-VJP-W": "error"}
    with pytest.raises(AssertionError, match=r"escaped clauses it must fail: \['ELMAN-VJP-W'\].*raised in"):
        assert_caught(RaisesInVjp, report, "elman")


@pytest.mark.parametrize("must_fail", [(), "VJP-W", None])
def test_a_mutant_must_declare_a_tuple_of_patterns(must_fail):
    mutant = type("Undeclared", (mutants.Elman,), {"must_fail": must_fail})
    with pytest.raises(AssertionError, match="must_fail must be a non-empty tuple"):
        declared(mutant, "elman")


def test_a_pattern_that_names_no_clause_is_refused():
    mutant = type("Typo", (mutants.Elman,), {"must_fail": ("VJP-W", "VJP-W_F")})
    with pytest.raises(AssertionError, match=r"'VJP-W_F' names no clause of ELMAN"):
        declared(mutant, "elman")


def test_patterns_take_the_cells_and_the_variants_prefix():
    backward = type("Backward", (mutants.Elman,), {"must_fail": BACKWARD})
    assert declared(backward, "elman") == {
        "ELMAN-VJP-X", "ELMAN-VJP-H0", "ELMAN-VJP-U", "ELMAN-VJP-W", "ELMAN-VJP-B",
        "ELMAN-LOSS-X", "ELMAN-LOSS-H0", "ELMAN-LOSS-U", "ELMAN-LOSS-W", "ELMAN-LOSS-B"}
    peephole = declared(backward, "lstm-peephole")
    assert {"LSTM-PEEPHOLE-LOSS-P_O", "LSTM-PEEPHOLE-LOSS-C0", "LSTM-PEEPHOLE-VJP-P_I"} <= peephole
    assert not {"LSTM-PEEPHOLE-LOSS-VALUE", "LSTM-PEEPHOLE-LOSS-V", "LSTM-PEEPHOLE-LOSS-C",
                "LSTM-PEEPHOLE-FWD-H"} & peephole
    reverse = type("Reverse", (mutants.Elman,), {"must_fail": ("VJP-W_*_REVERSE",)})
    assert declared(reverse, "elman", "layers=2,bidirectional") == {"ELMAN-L2-BIDIR-VJP-W_L0_REVERSE",
                                                                    "ELMAN-L2-BIDIR-VJP-W_L1_REVERSE"}
