"""A target that compiles declares how long a compiling call may take (``first_call_timeout``, issue 35 item 6).

A compiled target's first call of a method in a worker process, and, on a target that declares ``shapes`` (it
compiles a program per shape), its first call on each shape, compiles; under load that took longer than the
warm-up (3 x the 60 s timeout), the runner retried it in a fresh process, which compiled again, and the check
ended inconclusive. The declaration is seconds at the default timeout; ``--timeout`` scales it like every limit.
"""

from __future__ import annotations

import time

import pytest

from rnnspec.spec.cases import Case
from rnnspec.spec.declared import UsageError
from rnnspec.spec.runner import DEFAULT_TIMEOUT, WARMUP_FACTOR, Session, check

from mutants import Elman

#: the per-call timeout of these checks, and a compile's time: longer than the warm-up, shorter than the declared.
#: Not shorter: loading the target (a forked worker) has the per-call timeout too, and at 0.5 s it once missed it
#: under nice -n 19 beside other long runs
TIMEOUT = 1.0
COMPILE = 3.2
assert COMPILE > WARMUP_FACTOR * TIMEOUT


class Compiles(Elman):
    """Correct; forward's first call on each shape in a process sleeps COMPILE (a compile), then it is fast.
    Declares a first-call timeout of 3 x COMPILE at this file's TIMEOUT."""

    shapes = 2
    activations = ("tanh",)
    first_call_timeout = 3 * COMPILE * DEFAULT_TIMEOUT / TIMEOUT

    def forward(self, x, state0, params):
        seen = self.__dict__.setdefault("compiled", set())  # per process: a fresh worker compiles again
        key = (x.shape, x.dtype.str, self.activation)
        if key not in seen:
            time.sleep(COMPILE)
            seen.add(key)
        return super().forward(x, state0, params)


class CompilesUndeclared(Compiles):
    first_call_timeout = None


class SlowLater(Compiles):
    """Compiles as above, and from its fourth forward call in a process on (warm: a shape it has run) hangs."""

    def forward(self, x, state0, params):
        self.calls = getattr(self, "calls", 0) + 1
        if self.calls >= 4:
            time.sleep(COMPILE)
        return super().forward(x, state0, params)


def _not_passed(report) -> dict[str, str]:
    return {r.clause.id: f"{r.status}: {r.message}" for r in report.results if r.status != "passed"}


def test_a_compile_longer_than_the_warm_up_but_within_the_declared_first_call_timeout_passes():
    report = check(Compiles(), examples=4, timeout=TIMEOUT, dtype="float64", clauses=["ELMAN-FWD-H"])
    assert report.verdict == "conformant", _not_passed(report)


def test_without_the_declaration_the_same_compile_times_out():
    """What the declaration is for (and what the runner did for every compiled target before it)."""
    report = check(CompilesUndeclared(), examples=4, timeout=TIMEOUT, dtype="float64", clauses=["ELMAN-FWD-H"])
    status = {r.clause.id: r.status for r in report.results}
    assert status["ELMAN-FWD-H"] == "timeout", _not_passed(report)


def _case(**sizes) -> Case:
    fields = dict(T=2, B=2, I=3, H=4, K=2, activation="tanh", dtype="float64", regime="contracting", seed=0)
    return Case(**{**fields, **sizes})


@pytest.mark.parametrize("timeout", [TIMEOUT, 2 * TIMEOUT])
def test_the_limits_first_call_on_each_shape_then_the_timeout_all_scaled_by_timeout(timeout):
    session = Session(Compiles(), timeout)
    try:
        declared = Compiles.first_call_timeout * timeout / DEFAULT_TIMEOUT
        assert declared > WARMUP_FACTOR * timeout
        assert session.limit("forward", _case()) == pytest.approx(declared)
        assert session._call_once("forward", _case(), _case().arrays()).status == "ok"
        assert session.limit("forward", _case()) == timeout  # warm on this shape
        assert session.limit("forward", _case(T=3)) == pytest.approx(declared)  # a new shape compiles
        assert session.limit("forward", _case(dtype="float32")) == pytest.approx(declared)  # a new dtype too
        assert session.limit("vjp", _case()) == pytest.approx(declared)  # another method's first call
    finally:
        session.worker.stop()


def test_a_later_slow_call_on_a_shape_already_run_still_times_out():
    session = Session(SlowLater(), TIMEOUT)
    try:
        outcomes = [session._call_once("forward", _case(), _case().arrays()) for _ in range(4)]
        assert [o.status for o in outcomes] == ["ok", "ok", "ok", "timeout"]  # the first compiled, within its limit
        assert f"did not return within {TIMEOUT:.3g} s" in outcomes[-1].message, outcomes[-1].message
    finally:
        session.worker.stop()


def test_a_target_that_declares_no_shapes_is_warm_after_its_first_call_whatever_the_shape():
    class OneProgram(Elman):
        pass

    session = Session(OneProgram(), TIMEOUT)
    try:
        assert session.limit("forward", _case()) == WARMUP_FACTOR * TIMEOUT  # the warm-up, nothing declared
        assert session._call_once("forward", _case(), _case().arrays()).status == "ok"
        assert session.limit("forward", _case(T=3, dtype="float32")) == TIMEOUT
    finally:
        session.worker.stop()


@pytest.mark.parametrize("bad", [0, -1.0, float("inf"), "600", True])
def test_a_bad_first_call_timeout_is_a_usage_error_naming_it(bad):
    class Bad(Elman):
        first_call_timeout = bad

    with pytest.raises(UsageError, match=r"the target declares first_call_timeout = .*expected a positive, finite"):
        check(Bad(), examples=2)
