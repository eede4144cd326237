"""A compiled target's cases on a few shapes (issue 35, item 6): fewer programs to compile, edge sizes kept."""

from __future__ import annotations

from collections import Counter

import pytest

from rnnspec.spec.cases import few_shapes, generate
from rnnspec.spec.declared import UsageError
from rnnspec.spec.runner import check

from cli_runner import rnnspec
from mutants import Elman

SIZES = ("T", "B", "I", "H", "K", "P")


def shape(case) -> tuple[int, ...]:
    return tuple(getattr(case, n) for n in SIZES)


@pytest.mark.parametrize("cell", ["elman", "lstm", "lstm-proj"])
def test_few_shapes_keeps_every_case_kind_and_the_edge_sizes(cell):
    cases = generate(50, 3, ("float32", "float64"), ("tanh",), cell)
    few = few_shapes(cases, 4)
    assert len(few) == len(cases) == len(set(few))
    assert len({shape(c) for c in few}) <= 4
    # the edge sizes of the drawn cases survive, and an input width that differs from the hidden one
    assert min(c.T for c in few) == min(c.T for c in cases)
    assert min(c.B for c in few) == min(c.B for c in cases)
    assert min(c.H for c in few) == min(c.H for c in cases)
    assert any(c.I != c.H for c in few)
    # each case keeps what decides its values but its sizes: dtype, activation, regime (and seed, but for repeats)
    kinds = lambda cs: Counter((c.dtype, c.activation, c.regime) for c in cs)
    assert kinds(few) == kinds(cases)
    assert few_shapes(cases, 4) == few  # deterministic


def test_few_shapes_refuses_a_count_that_is_not_a_positive_whole_number():
    cases = generate(4, 0, ("float64",), ("tanh",))
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="shapes must be a positive whole number"):
            few_shapes(cases, bad)


class FewShapes(Elman):
    shapes = 3


class WrongWhenOneStep(FewShapes):
    """Right on every sequence but one of length 1 (an edge a run on a few shapes must still reach)."""

    def forward(self, x, state0, params):
        out = super().forward(x, state0, params)
        return {"h": out["h"] * 1.5} if x.shape[0] == 1 else out


def _shapes_seen(impl, **options) -> set[tuple[int, ...]]:
    seen = []
    check(impl, examples=30, progress=lambda n, total, case: seen.append(shape(case)), **options)
    return set(seen)


def test_a_target_that_declares_shapes_gets_its_cases_on_that_many_and_all_restores_them():
    assert len(_shapes_seen(FewShapes())) <= 3
    assert len(_shapes_seen(FewShapes(), shapes="all")) > 3
    assert len(_shapes_seen(Elman(), shapes=2)) <= 2


def test_a_bug_at_an_edge_size_is_still_caught_on_few_shapes():
    report = check(WrongWhenOneStep(), examples=30)
    assert not report.conformant
    assert "--shapes" not in report.rerun  # the target's own declaration: the plain command reruns it


def test_a_bad_shapes_declaration_or_option_is_a_usage_error(capsys):
    class Bad(Elman):
        shapes = 0

    with pytest.raises(UsageError, match="the target declares shapes = 0"):
        check(Bad(), examples=2)
    with pytest.raises(UsageError, match="shapes must be a positive whole number or 'all'"):
        check(Elman(), examples=2, shapes="some")
    code, _, err = rnnspec(capsys, "check", "oracle", "--shapes", "0")
    assert code == 2 and "--shapes: expected a positive whole number of shapes or 'all', got '0'" in err
