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


def _long_run(impl, name: str, cell: str | None = None, examples: int = CASES, seed: int = 12345,
              variant: str | None = None):
    report = check(impl, target=name, examples=examples, seed=seed, cell=cell, variant=variant)
    summary = _summary(report)
    run = f"cell {report.cell}" + (f", variant {report.variant}" if report.variant else "")
    print(f"{name}, {run}, seed {seed}: {report.cases} cases in {report.seconds:.0f} s, accuracy "
          f"{report.accuracy}\n" + json.dumps(summary, indent=1), flush=True)
    assert report.conformant, {k: v for k, v in summary.items() if v["status"] != "passed"}
    assert all(r.examples == report.cases for r in report.results)
    return report


@pytest.mark.slow
@pytest.mark.parametrize("target", ["oracle", "rnnspec-cpu", "torch"])
def test_no_false_failures_over_thousands_of_cases(target):
    if target == "torch":
        pytest.importorskip("torch")
    _long_run(load_target(target), target)


GATED = ["lstm", "gru-reset-after", "gru-reset-before"]


@pytest.mark.slow
@pytest.mark.parametrize("target, cell", [("oracle", c) for c in GATED] + [("torch", "lstm"),
                                                                            ("torch", "gru-reset-after")])
def test_no_false_failures_on_gated_cells_over_thousands_of_cases(target, cell):
    if target == "torch":
        pytest.importorskip("torch")
    _long_run(load_target(target), target, cell)


@pytest.mark.slow
@pytest.mark.parametrize("cell", ["lstm", "gru-reset-after"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_torch_gated_layers_are_conformant_over_200_cases_per_dtype(cell, seed):
    """The issue's bar: nn.LSTM and nn.GRU, float32 and float64, 200 examples each, three seeds."""
    pytest.importorskip("torch")
    # generate() splits the cases evenly over the declared dtypes: 200 float32, 200 float64
    _long_run(load_target("torch"), "torch", cell, examples=400, seed=seed)


@pytest.mark.slow
@pytest.mark.parametrize("reference", rounded_references.REFERENCES + rounded_references.AT_THE_BOUND,
                         ids=lambda c: c.__name__)
def test_activations_rounded_otherwise_pass_thousands_of_float32_cases(reference):
    impl = reference()
    impl.dtypes = ("float32",)
    _long_run(impl, reference.__name__)


@pytest.mark.slow
@pytest.mark.parametrize("cell", [*GATED, "lstm-proj", "lstm-peephole"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cpu_kernels_of_the_gated_cells_are_conformant_over_200_cases_per_dtype(cell, seed):
    """Issue "Numba CPU kernels for LSTM and both GRUs": rnnspec-cpu, every gated cell, 200 examples per
    dtype on three seeds."""
    _long_run(load_target("rnnspec-cpu"), "rnnspec-cpu", cell, examples=400, seed=seed)


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["layers=2,bidirectional,lengths=zero", "layers=2,bidirectional,lengths=carry"])
@pytest.mark.parametrize("cell", ["elman", "lstm", "gru-reset-after", "gru-reset-before", "lstm-proj",
                                  "lstm-peephole"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cpu_kernels_run_every_variant_conformantly_over_200_cases_per_dtype(cell, seed, variant):
    """Issue "Numba CPU kernels for LSTM and both GRUs", extended to the variants: rnnspec-cpu, every cell
    stacked, both ways, on lengths with either padding, 200 examples per dtype on three seeds."""
    _long_run(load_target("rnnspec-cpu"), "rnnspec-cpu", cell, examples=400, seed=seed, variant=variant)


@pytest.mark.slow
@pytest.mark.parametrize("cell", ["lstm", "gru-reset-after", "elman", "lstm-proj"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_torch_stacked_bidirectional_packed_is_conformant_over_200_cases_per_dtype(cell, seed):
    """Issue "Stacked, bidirectional and variable-length runs": num_layers=2, bidirectional, packed sequences
    (lengths with 0 and T, odd and even batches), and proj_size (lstm-proj), float32 and float64, 200 examples
    each, three seeds."""
    pytest.importorskip("torch")
    _long_run(load_target("torch"), "torch", cell, examples=400, seed=seed,
              variant="layers=2,bidirectional,lengths=zero")


@pytest.mark.slow
@pytest.mark.parametrize("cell", GATED)
def test_two_layer_gated_compositions_are_proved_over_two_steps(cell):
    from rnnspec.derivations.proof import prove

    cert = prove("tanh", "softmax-ce", T=2, B=1, I=1, H=1, K=2, cell=cell, variant="layers=2")
    assert cert.proved, cert
