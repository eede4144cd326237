"""The default-state path (issue 35, item 5): ``state0=default``, the initial states not passed.

A framework called without initial states (``hidden=None``, no ``initial_h``, no ``initial_state``, no
``initial_carry``) takes its own zeros on a code path of its own: ml-explore/mlx#3249's ``nn.GRU`` dropped
b_hn at the first step there only. The variant checks that path: the contract passes ``state0 = {}``, the
oracle starts from zeros and returns no gradient of them.
"""

import json

import numpy as np
import pytest
import variants_reference
from test_framework_targets import needs

from rnnspec.derivations.composed import Composed
from rnnspec.derivations.oracle import Oracle
from rnnspec.derivations.registry import CELL_NAMES
from rnnspec.derivations.variants import Variant, parse_variant
from rnnspec.spec import load_target
from rnnspec.spec.cases import Case
from rnnspec.spec.contract import contract
from rnnspec.spec.expected import expected
from rnnspec.spec.frameworks.torch_layers import TorchRNN
from rnnspec.spec.runner import UsageError, check
from rnnspec.spec.worker import TargetName

DEFAULT = "state0=default"
ALL = "layers=2,bidirectional,lengths=zero,state0=default"


def _failing(report) -> list:
    return [(r.clause.id, r.status, r.message.splitlines()[:1]) for r in report.results
            if r.status not in ("passed", "not provided")]


# -- the variant and its contract -------------------------------------------------------------------------

def test_the_spelling_is_canonical_and_combines_with_the_others():
    assert parse_variant("state0=default") == Variant(default_state=True)
    both = parse_variant("state0=default,lengths=carry,bidirectional,layers=3")
    assert both.name == "layers=3,bidirectional,lengths=carry,state0=default"
    assert both.tag == "-L3-BIDIR-LEN-CARRY-STATE0-DEFAULT"
    assert parse_variant(both.name) == both
    assert Variant(default_state=True).plain and not Variant(default_state=True).stacked
    with pytest.raises(ValueError, match=r"state0 must be 'default'.*got 'zeros'"):
        parse_variant("state0=zeros")
    with pytest.raises(ValueError, match="state0 is given twice"):
        parse_variant("state0=default,state0=default")
    with pytest.raises(ValueError, match="default_state must be True or False"):
        Variant(default_state="yes")


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_the_contract_passes_no_initial_state_and_asks_no_gradient_of_it(cell):
    plain, default, stacked = contract(cell), contract(cell, DEFAULT), contract(cell, ALL)
    assert plain.state0 and default.state0 == () and stacked.state0 == ()
    assert default.vjp_keys == tuple(k for k in plain.vjp_keys if k not in plain.state0)
    assert not set(plain.state0) & set(stacked.loss_keys)
    assert default.states == plain.states  # alone, the plain outputs: every state at every step
    assert stacked.states == contract(cell, ALL.replace(",state0=default", "")).states  # with h_n (and c_n)
    case = Case(4, 3, 2, 3, 3, "tanh", "float64", "contracting", 5, cell, DEFAULT, P=2 if cell == "lstm-proj" else 0)
    arrays = case.arrays()
    assert not set(plain.state0) & set(arrays)
    x, state0, *_ = default.call_args("forward", arrays)
    assert state0 == {}
    assert Case(**json.loads(case.describe())) == case


# -- the oracle against an independent computation, from explicit zeros ----------------------------------

@pytest.mark.parametrize("cell", CELL_NAMES)
@pytest.mark.parametrize("variant", [DEFAULT, "bidirectional,lengths=carry,state0=default", ALL])
def test_the_oracle_starts_from_zeros(cell, variant):
    """The expected values under state0=default equal an independent computation given explicit zeros (the cells
    and compositions written apart from the oracle: tests/variants_reference.py); the gradients of those zeros are
    the only keys dropped."""
    P = 2 if cell == "lstm-proj" else 0
    case = Case(5, 3, 2, 3, 3, "tanh", "float64", "saturating", 11, cell, variant, P=P)
    arrays = case.arrays()
    spec = contract(cell, variant)
    given = contract(cell, variant.replace(",state0=default", "").replace("state0=default", ""))
    zeros = {k: np.zeros(s) for k, s in given.state_shapes(case.B, case.H, P).items()}
    x, _, params, *rest = given.call_args("vjp", {**arrays, **zeros})
    cotangents = rest[0]
    keywords = rest[1] if len(rest) > 1 else {}
    v = given.variant
    if v.plain:  # the cell written by hand (tests/gated.py, tests/reference.py)
        reference = variants_reference.model(cell)
    else:
        reference = variants_reference.Reference(cell, v.layers, v.bidirectional, v.lengths)
    want_h = reference.forward(x, zeros, params, **keywords)
    want_g = reference.vjp(x, zeros, params, cotangents, **keywords)
    got = expected(case).values
    for key in spec.states:
        np.testing.assert_allclose(got[("forward", key)], want_h[key], rtol=1e-12, atol=1e-12, err_msg=key)
    assert set(spec.vjp_keys) == set(want_g) - set(zeros)
    for key in spec.vjp_keys:
        np.testing.assert_allclose(got[("vjp", key)], want_g[key], rtol=1e-10, atol=1e-12, err_msg=key)


def test_the_oracle_refuses_initial_states_under_the_default():
    case = Case(3, 2, 2, 2, 2, "tanh", "float64", "contracting", 1, "lstm")
    x, state0, params = contract("lstm").call_args("forward", case.arrays())
    oracle = Oracle("tanh", cell="lstm")
    oracle.default_state = True
    with pytest.raises(ValueError, match=r"state0: .*none may be passed; got \['c0', 'h0'\]"):
        oracle.forward(x, state0, params)
    with pytest.raises(ValueError, match=r"state0: the variant 'bidirectional,state0=default' passes no initial"):
        Composed("lstm", "bidirectional,state0=default").forward(x, {"h0": np.zeros((2, 2, 2))}, params)


# -- the mlx#3249 shape of bug ------------------------------------------------------------------------------

class DropsBhnAtTheFirstDefaultStep:
    """A GRU (reset after) that, called without an initial state, computes its first step without b_hn (what
    ml-explore/mlx#3249 reported of mlx's nn.GRU); with one, it is correct. Forward only."""

    cells = ("gru-reset-after",)
    cell = "gru-reset-after"
    variants = ("state0=default",)
    layers, bidirectional, lengths, default_state = 1, False, None, False

    def forward(self, x, state0, params):
        oracle = Oracle("tanh", cell=self.cell)
        if not self.default_state:
            return oracle.forward(x, state0, params)
        zero = {"h0": np.zeros((x.shape[1], params["W_n"].shape[0]), x.dtype)}
        first = oracle.forward(x[:1], zero, {**params, "b_hn": np.zeros_like(params["b_hn"])})["h"]
        rest = oracle.forward(x[1:], {"h0": first[-1]}, params)["h"] if len(x) > 1 else first[:0]
        return {"h": np.concatenate([first, rest]).astype(x.dtype)}


def test_a_bias_dropped_on_the_default_path_only_is_caught_there_only():
    mutant = DropsBhnAtTheFirstDefaultStep()
    plain = check(mutant, cell="gru-reset-after", examples=6)
    assert plain.conformant, _failing(plain)
    default = check(mutant, cell="gru-reset-after", variant=DEFAULT, examples=6)
    assert not default.conformant
    assert next(r for r in default.results if r.clause.id == "GRU-RESET-AFTER-STATE0-DEFAULT-FWD-H").status == "failed"


# -- usage errors ---------------------------------------------------------------------------------------------

class PlainOnly:
    """A correct Elman target that takes its initial states and declares no variant."""

    def forward(self, x, state0, params):
        return Oracle("tanh").forward(x, state0, params)


def test_a_target_that_does_not_declare_it_is_refused():
    refusal = r"--variant state0=default: the target .*does not declare \['state0=default'\]"
    with pytest.raises(UsageError, match=refusal):
        check(PlainOnly(), variant=DEFAULT, examples=1)
    needs("keras")
    with pytest.raises(UsageError, match=r"does not declare \['layers'\]"):  # keras runs one layer, default or not
        check(TargetName("keras-torch"), cell="lstm", variant="layers=2,state0=default", examples=1)


def test_the_cli_refuses_a_wrong_spelling(capsys):
    from cli_runner import rnnspec

    code, out, err = rnnspec(capsys, "check", "oracle", "--variant", "state0=random", "--examples", "1")
    assert code == 2 and "state0 must be 'default'" in out + err


# -- every built-in target whose API allows it ---------------------------------------------------------------

def _conformant(target: str, cell: str, variant: str, examples: int = 3, **options) -> None:
    report = check(TargetName(target), target=target, cell=cell, variant=variant, examples=examples, **options)
    assert report.variant == variant
    assert report.conformant, _failing(report)
    assert any(r.clause.id.startswith(contract(cell, variant).prefix + "-") and r.status == "passed"
               for r in report.results)


@pytest.mark.parametrize("target", ["oracle", "rnnspec-cpu"])
@pytest.mark.parametrize("cell,variant", [("lstm", DEFAULT), ("gru-reset-after", ALL),
                                          ("lstm-proj", "bidirectional,lengths=carry,state0=default")])
def test_the_reference_targets_are_conformant(target, cell, variant):
    _conformant(target, cell, variant)


@pytest.mark.parametrize("cell,variant", [("gru-reset-after", DEFAULT), ("lstm", DEFAULT), ("lstm", ALL),
                                          pytest.param("elman", ALL, marks=pytest.mark.slow),
                                          pytest.param("lstm-proj", DEFAULT, marks=pytest.mark.slow)])
def test_torch_with_hidden_none_is_conformant(cell, variant):
    needs("torch")
    _conformant("torch", cell, variant)


@pytest.mark.parametrize("cell,variant", [("gru-reset-before", DEFAULT), ("lstm-peephole", ALL),
                                          pytest.param("lstm", DEFAULT, marks=pytest.mark.slow)])
def test_onnxruntime_without_initial_h_is_conformant(cell, variant):
    needs("onnxruntime", "onnx")
    _conformant("onnxruntime", cell, variant)


@pytest.mark.parametrize("cell,variant", [("gru-reset-after", DEFAULT),
                                          pytest.param("lstm", "bidirectional,lengths=carry,state0=default",
                                                       marks=pytest.mark.slow)])
def test_keras_without_initial_state_is_conformant_in_float32(cell, variant):
    """float32: Keras 3 computes float64 in float32 on its torch backend (spec/defects.py), default state or not."""
    needs("keras", "torch")
    _conformant("keras-torch", cell, variant, dtype="float32")


@pytest.mark.parametrize("cell", ["gru-reset-after", pytest.param("lstm", marks=pytest.mark.slow)])
def test_flax_without_initial_carry_is_conformant(cell):
    """Both dtypes: float64 needs the cells' param_dtype, the dtype of Flax's default carry."""
    needs("flax", "jax")
    _conformant("flax", cell, DEFAULT)


def test_the_cuda_kernels_given_zeros_are_conformant():
    pytest.importorskip("rnnspec.kernels.cuda", reason="numba-cuda is not installed (pip install .[cuda])")
    case = Case(3, 2, 2, 3, 2, "tanh", "float64", "contracting", 4, "gru-reset-after", DEFAULT)
    report = check(load_target("rnnspec-cuda"), target="rnnspec-cuda", cases=[case], cell="gru-reset-after")
    assert report.conformant, _failing(report)


# -- the long run (benchmarks/long_run_default_state.log) -----------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("cell", TorchRNN.cells)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_torch_default_state_is_conformant_over_200_cases_per_dtype(cell, seed):
    """hidden=None on every cell of the torch target, float32 and float64, 200 examples each, three seeds."""
    from test_long_run import _long_run

    needs("torch")
    _long_run(load_target("torch"), "torch", cell, examples=400, seed=seed, variant=DEFAULT)
