"""The oracle of every gated cell against an independent NumPy implementation and complex step."""

import numpy as np
import pytest

from rnnspec.derivations.gradcheck import complex_step
from rnnspec.derivations.oracle import Oracle
from rnnspec.spec.cases import Case, regimes
from rnnspec.spec.contract import contract

import gated

MODELS = {"lstm": gated.LSTM, "gru-reset-after": gated.GRUResetAfter, "gru-reset-before": gated.GRUResetBefore,
          "lstm-proj": gated.LSTMProjected, "lstm-peephole": gated.LSTMPeephole}
TIGHT = 1e-12

#: (T, B, I, H, K): the corners the issue names (T = 1, B = 1, H = 1, I != H) and a longer odd batch
SIZES = [(1, 1, 1, 1, 2), (1, 1, 3, 1, 2), (2, 1, 1, 2, 3), (5, 3, 4, 2, 3), (12, 2, 2, 5, 4), (40, 3, 3, 4, 2)]


def make_case(T, B, I, H, K, dtype, regime, seed, cell):
    """The case; the projected LSTM's with H >= 2 and a projection P = H // 2 (1 <= P < H)."""
    if cell == "lstm-proj":
        H = max(H, 2)
        return Case(T, B, I, H, K, "tanh", dtype, regime, seed, cell, P=H // 2)
    return Case(T, B, I, H, K, "tanh", dtype, regime, seed, cell)


def _relative(got, want):
    return float(np.max(np.abs(np.asarray(got) - want))) / max(1.0, float(np.max(np.abs(want))))


@pytest.mark.parametrize("cell", list(MODELS))
@pytest.mark.parametrize("size", SIZES, ids=lambda s: "T{}-B{}-I{}-H{}-K{}".format(*s))
def test_oracle_matches_the_independent_implementation(cell, size):
    for n, regime in enumerate(regimes(cell)):
        case = make_case(*size, "float64", regime, 100 + n, cell)
        arrays = case.arrays()
        assert np.any(arrays["h0"]) and all(np.any(arrays[k]) for k in contract(cell).state0)
        oracle, independent = Oracle(cell=cell), MODELS[cell]()
        for method in ("forward", "vjp", "loss"):
            args = contract(cell).call_args(method, arrays)
            want, got = getattr(independent, method)(*args), getattr(oracle, method)(*args)
            if method == "loss":
                assert abs(got[0] - want[0]) <= TIGHT * max(1, abs(want[0])), (cell, regime, "loss value")
                want, got = want[1], got[1]
            assert sorted(got) == sorted(want), (method, sorted(got), sorted(want))
            for key in want:
                assert _relative(got[key], want[key]) <= TIGHT, f"{cell} {regime} {method}[{key!r}] {size}"


@pytest.mark.parametrize("cell", list(MODELS))
def test_loss_gradients_against_complex_step(cell):
    case = make_case(4, 2, 3, 2, 3, "float64", "contracting", 7, cell)
    arrays = case.arrays()
    x, state0, params, targets = contract(cell).call_args("loss", arrays)
    oracle, complex_oracle = Oracle(cell=cell), Oracle(cell=cell, backend="complex128")
    _, grads = oracle.loss(x, state0, params, targets)
    point = {"x": x, **state0, **params}
    rng = np.random.default_rng(0)

    def loss(q):
        return complex_oracle.loss(q["x"], {k: q[k] for k in state0}, {k: q[k] for k in params}, targets)[0]

    for name in point:
        direction = {name: rng.standard_normal(point[name].shape)}
        want = complex_step(loss, point, direction)
        got = float(np.sum(grads[name] * direction[name]))
        assert abs(got - want) <= TIGHT * max(1, abs(want)), f"{cell} {name}: {got} vs {want}"


@pytest.mark.parametrize("cell", list(MODELS))
def test_vjp_against_complex_step_with_cotangents_on_every_state(cell):
    case = make_case(3, 2, 2, 3, 2, "float64", "saturating", 3, cell)
    arrays = case.arrays()
    x, state0, params, cotangents = contract(cell).call_args("vjp", arrays)
    oracle, complex_oracle = Oracle(cell=cell), Oracle(cell=cell, backend="complex128")
    grads = oracle.vjp(x, state0, params, cotangents)
    point = {"x": x, **state0, **params}
    rng = np.random.default_rng(1)

    def pairing(q):
        states = complex_oracle.forward(q["x"], {k: q[k] for k in state0}, {k: q[k] for k in params})
        return sum(np.sum(states[k] * cotangents[k]) for k in cotangents)

    for name in point:
        direction = {name: rng.standard_normal(point[name].shape)}
        want = complex_step(pairing, point, direction)
        got = float(np.sum(grads[name] * direction[name]))
        assert abs(got - want) <= TIGHT * max(1, abs(want)), f"{cell} {name}: {got} vs {want}"


def test_the_gate_regimes_saturate_the_gate_they_name():
    """forget-open holds f near 1, update-shut z near 0, ...: the cases exercise what they claim."""
    for cell, gate, var in (("lstm", "forget", "fg"), ("lstm", "input", "ig"), ("gru-reset-after", "reset", "rg"),
                            ("gru-reset-before", "update", "zg")):
        for side, low, high in (("open", 0.9, 1.0), ("shut", 0.0, 0.1)):
            case = Case(20, 3, 4, 6, 3, "tanh", "float64", f"{gate}-{side}", 5, cell)
            a = case.arrays()
            x, state0, params, cotangents = contract(cell).call_args("vjp", a)
            states, _, _ = Oracle(cell=cell).everything(x, state0, {**params, "V": a["V"], "c": a["c"]}, cotangents,
                                                         a["targets"])
            mean = float(np.mean(states[var]))
            assert low <= mean <= high, f"{cell} {gate}-{side}: mean {var} = {mean}"
