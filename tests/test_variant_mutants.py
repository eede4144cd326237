"""Every wrong variant of the corpus is rejected, failing at least the clauses it declares (``must_fail``, read
by tests/must_fail.py); the correct composition passes, for every cell."""

import mutants_variants as corpus
import pytest

from rnnspec.spec.runner import check

from must_fail import assert_caught, declared, verdicts

#: cases per check: the variants' cases cost L * D cells each, so the corpus runs on fewer than the default
EXAMPLES = 10


def _group(cell, variant):
    """One process per (cell, variant): the cases' expectations are computed once there, met by every mutant."""
    return pytest.mark.xdist_group(f"{cell}:{variant}")


@pytest.mark.parametrize("cell, target", [
    pytest.param(c, t, marks=[_group(c, t.checked_as)] + ([] if c == t.cell else [pytest.mark.slow]))
    for c, t in [(c, corpus.VariantTarget) for c in corpus.VariantTarget.cells] + [("gru-reset-after",
                                                                                     corpus.CarryTarget)]])
def test_the_correct_composition_passes(cell, target):
    """The cells the mutants run as in CI, every cell under -m slow (tests/test_variants_oracle.py checks the
    same composition against the oracle to 1e-12 for every cell)."""
    report = check(target(), target=f"mutants_variants.{target.__name__}", cell=cell, variant=target.checked_as,
                   examples=EXAMPLES)
    assert report.variant == target.checked_as
    assert report.conformant, [(r.clause.id, r.status, r.worst and r.worst.message) for r in report.results]


#: 12 s in CI; ReverseStartsAtTheEnd, another reverse-direction mutant, stays there
SLOW = {"ReverseOutputsNotRestored"}


@pytest.mark.parametrize("mutant", [pytest.param(m, marks=[_group(m.cell, m.checked_as)]
                                                 + ([pytest.mark.slow] if m.__name__ in SLOW else []),
                                                 id=m.__name__) for m in corpus.MUTANTS])
def test_variant_mutant_is_rejected(mutant, record_property):
    report = check(mutant(), target=f"mutants_variants.{mutant.__name__}", cell=mutant.cell,
                   variant=mutant.checked_as, examples=EXAMPLES)
    failed, broken = verdicts(report)
    record_property("caught_by", ",".join(failed))
    print(f"{mutant.__name__}: caught by {len(failed)} clauses, {', '.join(failed[:6]) or 'nothing'}"
          + (f"; raised in {', '.join(broken[:6])}" if broken else ""))
    assert_caught(mutant, report, mutant.cell, mutant.checked_as)


def test_variant_corpus_is_distinct():
    assert len(corpus.MUTANTS) >= 15
    assert len({m.__doc__ for m in corpus.MUTANTS}) == len(corpus.MUTANTS)
    for m in corpus.MUTANTS:
        declared(m, m.cell, m.checked_as)
