"""Every wrong implementation of the corpus is rejected at default settings, failing at least the clauses
it declares (``must_fail``, read by tests/must_fail.py); the correct one passes."""

import pytest

from rnnspec.derivations.registry import CELL_NAMES
from rnnspec.spec.runner import check

import gated
import mutants
from must_fail import assert_caught, declared, verdicts

CORRECT = gated.MODELS
#: the least corpus of a cell: 15 for the first three, the 5 of issue 33 for the LSTM's projection and
#: peepholes and for both MGUs
LEAST = {"lstm-proj": 5, "lstm-peephole": 5, "mgu": 5, "mgu-flax": 5}
# one cell's checks share a process (pytest-xdist's loadgroup), so its 50 default cases' expectations are
# computed once there and every mutant of that cell meets them again
#: the slowest gated mutants (17-35 s each in CI), run with -m slow: each has a sibling of the same kind in CI
#: (the LSTM's input/forget and input/output swaps, the GRU's gate slope from the pre-activation, the
#: Elman MutatesInput and MissingTranspose)
SLOW_GATED = {"LstmOnnxOrderReadAsPyTorch", "LstmGateSlopeAtPreActivation", "GruBeforeMutatesInput",
              "GruBeforeRecurrentTransposed"}
#: and, to keep CI within its 15 minutes on a slower VM (2026-12-07: 14:25 of tests from a cold cache), mirrors: the
#: coupled LSTM's and the reset-before GRU's mutants that make the same mistake as one of the plain LSTM's or the
#: reset-after GRU's, which stays in CI (its sibling, the value); their -m slow run is benchmarks/mutants_slow.log
MIRRORS = {f"LstmCoupled{name}": f"Lstm{name}" for name in (
    "NoTanhOnCell", "DropsC0Gradient", "TruncatedThroughCell", "IgnoresCandidateBias", "CellCotangentWithoutOutputGate",
    "RecurrentGradWithCurrentState", "SigmoidCandidate", "LastStepSkipped", "TanhSlopeWithoutSquare")}
MIRRORS.update({f"GruBefore{name}": f"Gru{sibling}" for name, sibling in (
    ("IgnoresBn", "IgnoresBn"), ("GateSlope", "GateSlopeFromPreActivation"), ("Truncated", "TruncatedBPTT"),
    ("H0MissesDirectPath", "H0MissesDirectPath"), ("TanhSlope", "TanhSlopeAtPreActivation"),
    ("LastStepSkipped", "LastStepSkipped"), ("CarryScaled", "CarryScaled"))})
# the MGUs' mirrors of mistakes the GRU of their form makes in CI: flax's MGU is the reset-after GRU with one gate for
# both, the paper's the reset-before GRU's (mutants_gated.py)
MIRRORS.update({f"MguFlax{name}": f"Gru{sibling}" for name, sibling in (
    ("MixingFlipped", "UpdateConventionFlipped"), ("BhnOutsideGate", "BhnOutsideReset"), ("IgnoresBhn", "IgnoresBhn"),
    ("WnGradWithoutGate", "WnGradWithoutReset"), ("CarryMissesDirectPath", "H0MissesDirectPath"),
    ("GateBeforeProduct", "AfterResetBeforeProduct"))})
MIRRORS.update({f"Mgu{name}": f"GruBefore{sibling}" for name, sibling in (
    ("MixingFlipped", "UpdateFlipped"), ("GateAfterProduct", "ResetAfterProduct"), ("WnGradWithH", "WnGradWithH"))})
# and mirrors of one mistake across the family: a gate order swapped, a sigmoid's slope at its pre-activation, a
# bias gradient from the last step only, the update gate squashed by tanh
MIRRORS.update({"LstmCoupledOutputInputSwapped": "LstmInputOutputSwapped",
                "GruBeforeResetUpdateSwapped": "GruResetUpdateSwapped", "MguGateOrderSwapped": "GruResetUpdateSwapped",
                "MguGateSlopeAtPreActivation": "LstmCoupledGateSlopeAtPreActivation",
                "MguGateBiasLastStepOnly": "GruBiasesSummedOnce", "MguFlaxBhnGradLastStepOnly": "GruBiasesSummedOnce",
                "MguFlaxGateGradFromMixOnly": "MguGateGradFromMixOnly", "GruBeforeTanhUpdate": "GruSigmoidCandidate"})
SLOW_GATED |= set(MIRRORS)
GATED = [pytest.param(cell, m, id=m.__name__, marks=[pytest.mark.xdist_group(cell)]
                      + ([pytest.mark.slow] if m.__name__ in SLOW_GATED else []))
         for cell, corpus in mutants.GATED_MUTANTS.items() for m in corpus]


@pytest.mark.xdist_group("elman")
def test_the_correct_numpy_implementation_passes():
    report = check(mutants.Elman(), target="mutants.Elman")
    assert report.conformant, [(r.clause.id, r.status, r.worst and r.worst.message) for r in report.results]


@pytest.mark.xdist_group("elman")
@pytest.mark.parametrize("mutant", mutants.MUTANTS, ids=lambda m: m.__name__)
def test_mutant_is_rejected(mutant, record_property):
    report = check(mutant(), target=f"mutants.{mutant.__name__}")
    _record(mutant, report, record_property)
    assert_caught(mutant, report, "elman")


def _record(mutant, report, record_property):
    failed, broken = verdicts(report)
    record_property("caught_by", ",".join(failed))
    print(f"{mutant.__name__}: caught by {', '.join(failed) or 'nothing'}"
          + (f"; raised in {', '.join(broken)}" if broken else ""))


def test_corpus_is_large_and_distinct():
    assert len(mutants.MUTANTS) >= 20
    assert len({m.__doc__ for m in mutants.MUTANTS}) == len(mutants.MUTANTS)
    for m in mutants.MUTANTS:
        declared(m, "elman")  # every mutant says which clauses must catch it, each naming a clause


@pytest.mark.parametrize("cell", [pytest.param(c, marks=pytest.mark.xdist_group(c)) for c in CORRECT])
def test_the_correct_gated_implementation_passes(cell):
    report = check(CORRECT[cell](), target=f"gated.{CORRECT[cell].__name__}")
    assert report.cell == cell
    assert report.conformant, [(r.clause.id, r.status, r.worst and r.worst.message) for r in report.results]


@pytest.mark.parametrize("cell, mutant", GATED)
def test_gated_mutant_is_rejected(cell, mutant, record_property):
    report = check(mutant(), target=f"mutants.{mutant.__name__}")
    assert report.cell == cell, f"{mutant.__name__} was checked as {report.cell}, meant for {cell}"
    _record(mutant, report, record_property)
    assert_caught(mutant, report, cell)


def test_every_mirror_left_to_the_slow_runs_has_its_sibling_in_ci():
    """A mutant taken out of CI as a mirror leaves its mistake there, made by its sibling in another cell."""
    names = {m.__name__ for corpus in mutants.GATED_MUTANTS.values() for m in corpus}
    assert set(MIRRORS) <= names and set(MIRRORS.values()) <= names - SLOW_GATED


@pytest.mark.parametrize("cell", list(mutants.GATED_MUTANTS))
def test_gated_corpus_is_large_and_distinct(cell):
    corpus = mutants.GATED_MUTANTS[cell]
    assert len(corpus) >= LEAST.get(cell, 15)
    assert len({m.__doc__ for m in corpus}) == len(corpus)
    assert all(m().cell == cell for m in corpus)
    for m in corpus:
        declared(m, cell)


def test_every_cell_has_a_correct_model_and_a_corpus():
    """A cell added to the registry needs its correct model here and its mutants in tests/mutants_gated.py."""
    assert set(CORRECT) | {"elman"} == set(CELL_NAMES)
    assert set(mutants.GATED_MUTANTS) | {"elman"} == set(CELL_NAMES)
