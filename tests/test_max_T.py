"""``max_T``: a target whose program grows with T (torch.compile unrolls nn.LSTM's steps) bounds the T of its few
shapes (issue 35, item 6), keeping the edge sizes and every kind of case."""

from __future__ import annotations

from collections import Counter

import pytest

from rnnspec.spec.cases import few_shapes, generate
from rnnspec.spec.declared import UsageError
from rnnspec.spec.runner import check

from mutants import Elman

SIZES = ("T", "B", "I", "H", "K", "P")


def shape(case) -> tuple[int, ...]:
    return tuple(getattr(case, n) for n in SIZES)


@pytest.mark.parametrize("cell", ["elman", "lstm", "lstm-proj"])
def test_few_shapes_bounds_T_and_keeps_the_edge_sizes_and_every_case_kind(cell):
    cases = generate(50, 0, ("float32", "float64"), ("tanh",), cell)
    assert max(c.T for c in cases) > 8  # else this would show nothing
    few = few_shapes(cases, 4, max_T=8)
    assert len(few) == len(cases) == len(set(few))
    assert max(c.T for c in few) <= 8
    assert len({shape(c) for c in few}) == min(4, len({(min(c.T, 8), *shape(c)[1:]) for c in cases}))
    for size in ("T", "B", "H"):
        assert min(getattr(c, size) for c in few) == min(getattr(c, size) for c in cases), size
    assert any(c.I != c.H for c in few)
    kinds = lambda cs: Counter((c.dtype, c.activation, c.regime) for c in cs)
    assert kinds(few) == kinds(cases)
    assert few_shapes(cases, 4) != few  # the bound changed something
    assert few_shapes(cases, 4, max_T=1000) == few_shapes(cases, 4)  # and is nothing where T is below it


def test_few_shapes_refuses_a_bound_that_is_not_a_positive_whole_number():
    cases = generate(4, 0, ("float64",), ("tanh",))
    for bad in (0, -1, 2.5, True, "8"):
        with pytest.raises(ValueError, match="max_T must be a positive whole number"):
            few_shapes(cases, 2, max_T=bad)


class ShortShapes(Elman):
    shapes = 3
    max_T = 4


class WrongAfterOneStep(ShortShapes):
    """Right on a single step, wrong from the second on (a bug of the recurrence a short T must still reach)."""

    def forward(self, x, state0, params):
        out = super().forward(x, state0, params)
        h = out["h"].copy()
        h[1:] *= 1.5
        return {"h": h}


def _cases_seen(impl, **options) -> list:
    seen = []
    check(impl, examples=30, progress=lambda n, total, case: seen.append(case), **options)
    return seen


def test_a_target_that_declares_max_T_gets_short_cases_and_shapes_all_restores_the_drawn_ones():
    seen = _cases_seen(ShortShapes())
    assert max(c.T for c in seen) <= 4 and len({shape(c) for c in seen}) <= 3
    assert min(c.T for c in seen) == 1
    assert max(c.T for c in _cases_seen(ShortShapes(), shapes="all")) > 4
    assert max(c.T for c in _cases_seen(ShortShapes(), shapes=2)) <= 4  # --shapes N keeps the bound


def test_a_bug_of_the_recurrence_is_still_caught_on_short_shapes():
    report = check(WrongAfterOneStep(), examples=30)
    assert not report.conformant
    assert "ELMAN-FWD-H" in {r.clause.id for r in report.results if r.status == "failed"}


@pytest.mark.parametrize("bad,message", [(0, "the target declares max_T = 0"), ("8", "the target declares max_T = '8'"),
                                         (True, "the target declares max_T = True")])
def test_a_bad_max_T_is_a_usage_error_naming_it(bad, message):
    class Bad(ShortShapes):
        max_T = bad

    with pytest.raises(UsageError, match=message):
        check(Bad(), examples=2)


def test_max_T_without_shapes_is_a_usage_error():
    class NoShapes(Elman):
        max_T = 4

    with pytest.raises(UsageError, match="declares max_T = 4 but no shapes"):
        check(NoShapes(), examples=2)
