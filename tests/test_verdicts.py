"""Verdicts you can trust: accurate activations rounded otherwise pass, a case that cannot fail decides
nothing, and reports say what happened (issue "Verdicts you can trust and act on")."""

import json

import numpy as np
import pytest

from rnnspec.derivations.rounding import Rounding, rounded_form
from rnnspec.kernels.cpu import bench
from rnnspec.spec.adapters import RnnspecCPU
from rnnspec.spec.cases import Case
from rnnspec.spec.expected import expected
from rnnspec.spec.report import table
from rnnspec.spec.runner import check
from rnnspec.spec.tolerance import DECISIVE_LIMIT

import misbehaving
import mutants
import rounded_references

#: z_1 = 4.79, f' = 1 - tanh^2 = 2.7e-4: one ulp of tanh is 4e-4 of f' (a false failure before the
#: accuracy class: relative error 4.2e-4 > tolerance 2.75e-4 for rnnspec-cpu)
SATURATED = Case(T=7, B=1, I=4, H=1, K=2, activation="tanh", dtype="float32", regime="saturating", seed=18934)
#: a float32 chaotic case whose dL/dU tolerance (4.3) would pass an all-zero output (relative error 1)
ILL_CONDITIONED = Case(T=46, B=1, I=5, H=10, K=3, activation="tanh", dtype="float32", regime="chaotic", seed=25)
#: z[12, 1, 3] = 3.4e-6, within float32 rounding reach of ReLU's kink
AT_THE_KINK = Case(T=20, B=3, I=3, H=6, K=3, activation="relu", dtype="float32", regime="contracting", seed=3)


def _status(report):
    return {r.clause.id: r.status for r in report.results}


def _float32(impl):
    impl.dtypes = ("float32",)
    return impl


# -- 1. accurate activations rounded otherwise -----------------------------------------------------

def test_rounding_moves_each_result_by_the_ulps_of_the_dtype():
    value = np.array([0.9998, -0.5, 1e-3])
    unit = np.spacing(np.abs(value).astype(np.float32)).astype(np.float64)
    np.testing.assert_array_equal(Rounding(2, "float32", "away")(value) - value, 2 * unit * np.sign(value))
    np.testing.assert_array_equal(Rounding(2, "float32", "toward")(value) - value, -2 * unit * np.sign(value))
    moved = Rounding(2, "float32", "random", seed=1)(value) - value
    assert np.all(np.abs(moved) <= 2 * unit) and np.any(moved != 0)


def test_a_rounded_logistic_reaches_its_derivative_as_implementations_compute_it():
    import sympy as sp

    u = sp.Symbol("u")
    derivative = sp.diff(1 / (1 + sp.exp(-u)), u)  # exp(-u) / (1 + exp(-u))^2, as SymPy derives it
    sigma = sp.Function("rounded_logistic")(u)
    assert sp.simplify(rounded_form(derivative) - sigma * (1 - sigma)) == 0
    assert rounded_form(sp.tanh(u)) == sp.Function("rounded_tanh")(u)


@pytest.mark.parametrize("impl", [RnnspecCPU, *rounded_references.REFERENCES, *rounded_references.AT_THE_BOUND],
                         ids=lambda c: c.__name__)
def test_the_saturated_case_passes_whatever_the_rounding_of_tanh(impl):
    report = check(impl(), cases=[SATURATED])
    assert report.conformant, [(r.clause.id, r.status, r.message) for r in report.results if r.status != "passed"]


@pytest.mark.parametrize("reference", rounded_references.REFERENCES, ids=lambda c: c.__name__)
def test_references_with_differently_rounded_float32_activations_are_conformant(reference):
    report = check(_float32(reference()), examples=40, seed=3)
    assert report.conformant, [(r.clause.id, r.status, r.message) for r in report.results if r.status != "passed"]


def test_a_coarser_declared_accuracy_widens_the_tolerance_and_the_report_names_it():
    benign = Case(T=10, B=2, I=3, H=4, K=3, activation="tanh", dtype="float32", regime="saturating", seed=1)
    accurate = expected(benign, benign.arrays())
    fast = expected(benign, benign.arrays(), ulps=4096)
    assert fast.tolerances[("vjp", "W")] > 10 * accurate.tolerances[("vjp", "W")]
    impl = mutants.Elman()
    impl.accuracy = "fast"
    report = check(impl, cases=[benign])
    assert "fast (4096 ulps)" in report.accuracy and "fast (4096 ulps)" in table(report)
    assert json.loads(json.dumps(report.to_json()))["accuracy"] == report.accuracy


# -- 2. vacuous passes -------------------------------------------------------------------------------

class ZeroGradients(mutants.Elman):
    """dL/dU, dL/dW, ... all zero: wrong everywhere, but within a tolerance of order 1."""

    def vjp(self, x, state0, params, cotangents):
        return {k: np.zeros_like(v) for k, v in super().vjp(x, state0, params, cotangents).items()}


def test_a_tolerance_that_would_pass_an_unrelated_output_decides_nothing():
    spec = expected(ILL_CONDITIONED, ILL_CONDITIONED.arrays())
    assert spec.tolerances[("vjp", "U")] > 1 > DECISIVE_LIMIT
    report = check(ZeroGradients(), cases=[ILL_CONDITIONED], clauses=["ELMAN-VJP-U"])
    (result,) = report.results
    assert result.status == "undetermined" and result.decisive == 0 and result.reasons == {"ill-conditioned": 1}
    assert "ill-conditioned" in result.message and report.verdict == "inconclusive" and not report.conformant


def test_zero_gradients_fail_at_default_settings():
    report = check(ZeroGradients())
    assert _status(report)["ELMAN-VJP-U"] == "failed"


def test_every_value_clause_is_mostly_decided_at_default_settings():
    """The generator's cases decide each value clause in at least 90% of cases (measured: 97-100%)."""
    report = check(RnnspecCPU())
    for r in report.results:
        if r.clause.kind == "value":
            assert r.decisive >= 0.9 * r.examples, (r.clause.id, r.decisive, r.examples, dict(r.reasons))


# -- 3. reports that say what happened ----------------------------------------------------------------

class RaisesOnEvenBatches(mutants.Elman):
    def vjp(self, x, state0, params, cotangents):
        if x.shape[1] % 2 == 0:
            raise AssertionError("Arrays are not equal\nthey differ:\n  x: 1.0\n  y: 2.0")
        return super().vjp(x, state0, params, cotangents)


def test_an_error_keeps_its_whole_message_and_where_the_target_raised():
    report = check(RaisesOnEvenBatches(), examples=12)
    result = next(r for r in report.results if r.clause.id == "ELMAN-VJP-W")
    assert result.status == "error" and result.counterexample
    for text in (result.message, result.to_json()["message"]):
        assert "they differ:" in text and "y: 2.0" in text, text
        assert "test_verdicts.py" in text and "line" in text and "in vjp" in text, text


def test_a_method_not_provided_wins_over_undetermined_cases():
    impl = misbehaving.NoVjpNoLoss()
    impl.activation, impl.dtypes = "relu", ("float32",)
    report = check(impl, cases=[AT_THE_KINK])
    status = _status(report)
    assert status["ELMAN-FWD-H"] == "passed"
    assert all(status[c] == "not provided" for c in status if "-VJP-" in c or "-LOSS-" in c), status


class ForwardBroken(mutants.Elman):
    def _forward(self, x, h0, U, W, b):
        raise ValueError("shapes (3,4) and (5,) not aligned")


def test_one_root_cause_is_one_block_with_one_reproducing_command():
    report = check(ForwardBroken(), examples=6)
    text = table(report)
    assert text.count("reproduce:") == 1 and text.count("smallest case found") == 1, text
    line = next(t for t in text.splitlines() if "reproduce:" in t)
    # every value clause fails on the same smallest case: the command reruns the case, every clause, in one short line
    assert "--clause" not in line and "--case" in line and len(line) < 300, line


def test_the_worst_case_is_named_and_a_failure_says_where():
    report = check(mutants.OffByOneInTime(), examples=8)
    text = table(report)
    assert "largest error / tolerance" in text and "worst case" in text
    result = next(r for r in report.results if r.clause.id == "ELMAN-VJP-W")
    assert "largest deviation at [" in result.message and "expected" in result.message and "got" in result.message
    assert result.worst_case.dtype in text.splitlines()[next(n for n, t in enumerate(text.splitlines())
                                                             if t.startswith("ELMAN-VJP-W"))]


def test_bench_rows_show_their_spread_and_noisy_ones_are_marked():
    rows = [{"impl": impl, "size": "S1", "dtype": "float32", "phase": "train", "median_s": m, "min_s": lo,
             "max_s": hi, "gflops": 1.0} for impl, lo, m, hi in (("rnnspec-cpu", 1e-3, 1.1e-3, 1.2e-3),
                                                                  ("torch", 1.5e-3, 1.6e-3, 28e-3))]
    text = bench.table({"peak": {"float32": {"numpy_gemm": 100.0, "peak_gflops": 100.0}}, "compile_s": {},
                        "skipped": [], "results": rows})
    assert "min ms" in text and "max ms" in text
    ours, theirs = (t for t in text.splitlines() if t.startswith("S1"))
    assert theirs.endswith("noisy") and ours.endswith("noisy")  # our ratio is against the noisy torch row
    assert not bench.noisy(rows[0]) and bench.noisy(rows[1])


def test_a_non_finite_output_near_overflow_decides_nothing_and_a_finite_wrong_one_fails():
    """Near the dtype's overflow (the spec's value 1e39 is past float32's largest) an inf decides nothing,
    as FINITE does there; a finite output far from the spec still fails; far from overflow, inf fails."""
    from rnnspec.spec.clauses import by_id
    from rnnspec.spec.expected import Expected
    from rnnspec.spec.judge import judge
    from rnnspec.spec.worker import Outcome

    case = Case(2, 1, 1, 1, 2, "relu", "float32", "chaotic", 0)
    clause = by_id("elman")["ELMAN-FWD-H"]
    key = ("forward", "h")

    def verdict(output, overflow):
        spec = Expected({key: np.full((2, 1, 1), 1e39)}, {key: 1e-5}, overflow=overflow)
        return judge(clause, case, {"forward": (Outcome("ok", {"h": output}), None)}, spec)

    infinite, finite = np.full((2, 1, 1), np.inf, np.float32), np.ones((2, 1, 1), np.float32)
    assert verdict(infinite, "pre-activations reach 1e39").status == "undetermined"
    assert verdict(finite, "pre-activations reach 1e39").status == "failed"
    assert verdict(infinite, "").status == "failed"


def test_a_clause_whose_every_case_was_skipped_after_a_timeout_is_a_timeout_with_its_reason():
    """Cases skipped because a method hung twice (or the time after a timeout ran out) decide nothing: the clause
    is a timeout (inconclusive) with the reason, never an error of the target with an empty message."""
    from rnnspec.spec.clauses import clauses
    from rnnspec.spec.judge import Verdict
    from rnnspec.spec.results import ClauseResult, Report

    clause = next(c for c in clauses("elman") if c.method == "loss")
    result = ClauseResult(clause)
    case = Case(T=2, B=1, I=1, H=1, K=2, activation="tanh", dtype="float64", regime="contracting", seed=0)
    result.add(case, Verdict("skipped", "not run: the time allowed after a timeout is spent"))
    assert result.status == "timeout"
    assert "time allowed after a timeout" in result.message
    assert Report("t", 0, [result], 1, 0.0).verdict == "inconclusive"
