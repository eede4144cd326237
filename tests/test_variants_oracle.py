"""The composed oracle of the variants against an independent NumPy composition and complex step."""

import itertools

import numpy as np
import pytest
from variants_reference import Reference

from rnnspec.derivations.composed import Composed
from rnnspec.derivations.gradcheck import complex_step
from rnnspec.derivations.oracle import Oracle
from rnnspec.derivations.registry import CELL_NAMES
from rnnspec.derivations.registry import cell as registered
from rnnspec.derivations.variants import Variant, masked, parse_variant

VARIANTS = [Variant(layers, bi, lengths) for layers, bi, lengths in
            itertools.product((1, 2), (False, True), (None, "zero", "carry"))]
TIGHT = 1e-12


def arrays(cell, variant, T=4, B=4, I=2, H=3, K=3, seed=0, scale=0.6):
    """x, state0, params (V and c included), lengths with 0 and T among them, targets (lstm-proj: P = 2)."""
    rng = np.random.default_rng(seed)
    spec = registered(cell)
    dims = {"H": H, "P": 2, "K": K}
    width = dims[spec.state_out[0].shape[0]]
    params = {}
    for layer, d in variant.runs():
        for var in spec.params:
            shape = tuple({**dims, "I": I if layer == 0 else variant.directions * width}[s] for s in var.shape)
            params[var.key + variant.suffix(layer, d)] = rng.standard_normal(shape) * scale
    params.update(V=rng.standard_normal((K, variant.directions * width)), c=rng.standard_normal(K))
    lead = (len(variant.runs()),) if variant.stacked else ()
    state0 = {out.key + "0": rng.standard_normal(lead + (B, dims[out.shape[0]])) * 0.5 for out in spec.state_out}
    lengths = None if variant.lengths is None else np.array([T, 0, *rng.integers(0, T + 1, B - 2)])
    return rng.standard_normal((T, B, I)), state0, params, lengths, rng.integers(0, K, (T, B))


def relative(a, b):
    return float(np.max(np.abs(a - b)) / max(1.0, float(np.max(np.abs(b)))))


@pytest.mark.parametrize("cell", CELL_NAMES)
@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.name or "plain")
def test_composed_oracle_agrees_with_an_independent_composition(cell, variant):
    """Each sequence cut to its length and run alone (the reverse direction on the cut reversed), padded
    outputs and their cotangents routed by the semantics' words: forward, vjp and loss to 1e-12."""
    x, state0, params, lengths, targets = arrays(cell, variant, seed=len(variant.name) + len(cell))
    kw = {} if lengths is None else {"lengths": lengths}
    step_params = {k: v for k, v in params.items() if k not in ("V", "c")}
    composed, independent = Composed(cell, variant), Reference(cell, variant.layers, variant.bidirectional,
                                                                variant.lengths)
    got, want = composed.forward(x, state0, step_params, **kw), independent.forward(x, state0, step_params, **kw)
    assert sorted(got) == sorted(want)
    for key in want:
        assert got[key].shape == want[key].shape and relative(got[key], want[key]) <= TIGHT, key
    rng = np.random.default_rng(7)
    cotangents = {k: rng.standard_normal(v.shape) for k, v in got.items()}
    got, want = composed.vjp(x, state0, step_params, cotangents, **kw), independent.vjp(x, state0, step_params,
                                                                                        cotangents, **kw)
    assert sorted(got) == sorted(want)
    for key in want:
        assert relative(got[key], want[key]) <= TIGHT, f"vjp {key}: {relative(got[key], want[key])}"
    (value, got), (expected, want) = composed.loss(x, state0, params, targets, **kw), \
        independent.loss(x, state0, params, targets, **kw)
    assert abs(value - expected) <= TIGHT * max(1, abs(expected))
    for key in want:
        assert relative(got[key], want[key]) <= TIGHT, f"loss {key}: {relative(got[key], want[key])}"


@pytest.mark.parametrize("cell", CELL_NAMES)
@pytest.mark.parametrize("variant", [Variant(2, True, "zero"), Variant(2, True, "carry"), Variant(1, True)],
                         ids=lambda v: v.name)
def test_composed_vjp_and_loss_against_complex_step(cell, variant):
    x, state0, params, lengths, targets = arrays(cell, variant, T=3, B=3, seed=3)
    kw = {} if lengths is None else {"lengths": lengths}
    step_params = {k: v for k, v in params.items() if k not in ("V", "c")}
    composed, complex_composed = Composed(cell, variant), Composed(cell, variant, backend="complex128")
    rng = np.random.default_rng(1)
    outputs = composed.forward(x, state0, step_params, **kw)
    cotangents = {k: rng.standard_normal(v.shape) for k, v in outputs.items()}
    grads = composed.vjp(x, state0, step_params, cotangents, **kw)
    value, loss_grads = composed.loss(x, state0, params, targets, **kw)
    point = {"x": x, **state0, **params}

    def split(q):
        return q["x"], {k: q[k] for k in state0}, {k: q[k] for k in params if k not in ("V", "c")}

    def pairing(q):
        out = complex_composed.forward(*split(q), **kw)
        return sum(np.sum(out[k] * cotangents[k]) for k in cotangents)

    def loss(q):
        x_, s_, p_ = split(q)
        return complex_composed.loss(x_, s_, {**p_, "V": q["V"], "c": q["c"]}, targets, **kw)[0]

    assert abs(loss(point).real - value) <= TIGHT * max(1, abs(value))
    for name in point:
        direction = {name: rng.standard_normal(point[name].shape)}
        if name not in ("V", "c"):
            want = complex_step(pairing, point, direction)
            got = float(np.sum(grads[name] * direction[name]))
            assert abs(got - want) <= TIGHT * max(1, abs(want)), f"{cell} vjp {name}: {got} vs {want}"
        want = complex_step(loss, point, direction)
        got = float(np.sum(loss_grads[name] * direction[name]))
        assert abs(got - want) <= TIGHT * max(1, abs(want)), f"{cell} loss {name}: {got} vs {want}"


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_the_plain_variant_is_the_cell_and_its_final_state_the_last_step(cell):
    x, state0, params, _, _ = arrays(cell, Variant())
    plain = Oracle(cell=cell).forward(x, state0, params)
    composed = Composed(cell, "").forward(x, state0, params)
    for key, value in plain.items():
        np.testing.assert_array_equal(composed[key + "_n"], value[-1])
    np.testing.assert_array_equal(composed["h"], plain["h"])


def test_padded_steps_keep_the_state_and_give_nothing_to_the_gradients():
    """A sequence of length 0 leaves h_n = h0 and its cotangent passes to h0 unchanged; its outputs are zero
    under both semantics ("carry" repeats the last output, and there is none, as in Keras)."""
    for semantics in ("zero", "carry"):
        variant = Variant(1, False, semantics)
        x, state0, params, lengths, _ = arrays("lstm", variant)
        out = Composed("lstm", variant).forward(x, state0, params, lengths=lengths)
        np.testing.assert_array_equal(out["h_n"][1], state0["h0"][1])
        np.testing.assert_array_equal(out["c_n"][1], state0["c0"][1])
        np.testing.assert_array_equal(out["h"][:, 1], 0.0)
        cot = {"h_n": np.ones_like(out["h_n"]), "h": np.ones_like(out["h"])}
        grads = Composed("lstm", variant).vjp(x, state0, params, cot, lengths=lengths)
        np.testing.assert_array_equal(grads["h0"][1], 1.0)
        np.testing.assert_array_equal(grads["x"][:, 1], 0.0)


def test_carry_repeats_the_forward_directions_last_output_and_the_reverse_has_none_at_padded_steps():
    variant = Variant(1, True, "carry")
    x, state0, params, lengths, _ = arrays("gru-reset-after", variant, T=5, B=3)
    lengths = np.array([2, 5, 0])
    out = Composed("gru-reset-after", variant).forward(x, state0, params, lengths=lengths)
    H = state0["h0"].shape[-1]
    forward, reverse = out["h"][..., :H], out["h"][..., H:]
    np.testing.assert_array_equal(forward[2:, 0], np.broadcast_to(forward[1, 0], (3, H)))
    np.testing.assert_array_equal(forward[1, 0], out["h_n"][0, 0])
    np.testing.assert_array_equal(reverse[2:, 0], 0.0)
    np.testing.assert_array_equal(out["h"][:, 2], 0.0)


def test_the_masked_cell_is_derived_with_a_mask_input_and_the_cell_state_kept_by_padded_steps():
    cell = masked(registered("lstm", "tanh", None))
    assert [v.name for v in cell.inputs] == ["x", "mask"]
    step = {eq.target.name: str(eq.rhs) for eq in cell.step}
    assert step["C"] == "mask*C_new[i] + (1 - mask)*C_prev[i]"
    assert "C_new" in step["h_new"]


def test_variant_names_round_trip_and_bad_ones_are_named():
    for variant in VARIANTS:
        assert parse_variant(variant.name) == variant
    assert parse_variant("lengths=zero,layers=3").tag == "-L3-LEN-ZERO"
    for bad, words in (("layers=0", "layers"), ("lengths=pad", "lengths"), ("bidi", "cannot read")):
        with pytest.raises(ValueError, match=words):
            parse_variant(bad)


def test_bad_lengths_are_named():
    variant = Variant(1, False, "zero")
    x, state0, params, lengths, _ = arrays("elman", variant)
    composed = Composed("elman", variant)
    for bad, words in ((None, "required"), (lengths[:-1], "shape"), (lengths + 5, r"\[0, T=4\]"),
                       (lengths.astype(float), "integers")):
        with pytest.raises(ValueError, match=words):
            composed.forward(x, state0, params, lengths=bad)
    with pytest.raises(ValueError, match="without lengths"):
        Composed("elman", "").forward(x, state0, params, lengths=lengths)
