"""No false failures on correct implementations over thousands of generated cases (slow: -m slow)."""

import json
import os

import pytest

from rnnspec.spec import load_target
from rnnspec.spec.runner import check

CASES = int(os.environ.get("RNNSPEC_LONG_CASES", "2000"))


@pytest.mark.slow
@pytest.mark.parametrize("target", ["oracle", "rnnspec-cpu", "torch"])
def test_no_false_failures_over_thousands_of_cases(target, tmp_path):
    if target == "torch":
        pytest.importorskip("torch")
    report = check(load_target(target), target=target, examples=CASES, seed=12345)
    summary = {r.clause.id: (r.status, r.examples, r.worst.error if r.worst else None,
                             r.worst.tolerance if r.worst else None) for r in report.results}
    print(f"{target}: {report.cases} cases in {report.seconds:.0f} s\n" + json.dumps(summary, indent=1))
    assert report.conformant, {k: v for k, v in summary.items() if v[0] != "passed"}
    assert all(r.examples + r.undetermined == report.cases for r in report.results)
