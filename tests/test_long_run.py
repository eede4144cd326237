"""No false failures on correct implementations over thousands of generated cases (slow: -m slow)."""

import json
import os

import pytest

from rnnspec.spec import load_target
from rnnspec.spec.runner import check

import rounded_references

CASES = int(os.environ.get("RNNSPEC_LONG_CASES", "2000"))


def _summary(report) -> dict:
    """Per clause: status, decisive / judged cases, undetermined reasons, worst error / tolerance."""
    return {r.clause.id: {"status": r.status, "decisive": r.decisive, "judged": r.examples,
                          "undetermined": dict(r.reasons), "worst_ratio": r.worst.ratio if r.worst else None}
            for r in report.results}


def _long_run(impl, name: str):
    report = check(impl, target=name, examples=CASES, seed=12345)
    summary = _summary(report)
    print(f"{name}: {report.cases} cases in {report.seconds:.0f} s, accuracy {report.accuracy}\n"
          + json.dumps(summary, indent=1))
    assert report.conformant, {k: v for k, v in summary.items() if v["status"] != "passed"}
    assert all(r.examples == report.cases for r in report.results)
    return report


@pytest.mark.slow
@pytest.mark.parametrize("target", ["oracle", "rnnspec-cpu", "torch"])
def test_no_false_failures_over_thousands_of_cases(target):
    if target == "torch":
        pytest.importorskip("torch")
    _long_run(load_target(target), target)


@pytest.mark.slow
@pytest.mark.parametrize("reference", rounded_references.REFERENCES + rounded_references.AT_THE_BOUND,
                         ids=lambda c: c.__name__)
def test_activations_rounded_otherwise_pass_thousands_of_float32_cases(reference):
    impl = reference()
    impl.dtypes = ("float32",)
    _long_run(impl, reference.__name__)
