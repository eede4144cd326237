"""The proof: derived BPTT equals sympy.diff of the unrolled loss, and it can tell when it does not."""

import dataclasses

import pytest
import sympy as sp

import rnnspec.derivations.oracle as oracle_module
from rnnspec.derivations.cells import ACTIVATIONS, HEADS
from rnnspec.derivations.derive import derive
from rnnspec.derivations.proof import prove, subterm_sizes, vanishes

#: relu's two proofs take 16-23 s each on 2 cores: behind -m slow, since `rnnspec derive --check`
#: (tests/test_generated.py) proves every activation and head again in CI, and fails on any "no"
PROOFS = [pytest.param(a, h, marks=[pytest.mark.slow] if a == "relu" else []) for a in ACTIVATIONS for h in HEADS]


@pytest.mark.parametrize("activation,head", PROOFS)
def test_derived_bptt_is_proved(activation, head):
    cert = prove(activation, head, T=3, B=1, I=2, H=2, K=2)
    assert cert.proved, f"proof failed for {activation}/{head}: {cert}"
    assert cert.entries == 24


def test_a_wrong_derivation_is_not_proved(monkeypatch):
    """Swap h_{t-1} for h_t in dL/dW (a classic slip): the proof must refuse it."""
    real = derive

    def tampered(cell):
        d = real(cell)
        step = []
        for eq in d.step_backward:
            if eq.target.name == "g_W":
                eq = dataclasses.replace(eq, rhs=eq.rhs.xreplace({sp.IndexedBase("h_prev"): sp.IndexedBase("h")}))
            step.append(eq)
        return dataclasses.replace(d, step_backward=tuple(step))

    monkeypatch.setattr(oracle_module, "derive", tampered)
    cert = prove("tanh", "softmax-ce", T=2, B=1, I=1, H=2, K=2)
    assert not cert.proved and cert.worst_residual > 1e-3


def test_vanishes_is_a_sound_zero_test():
    x, y = sp.symbols("x y", real=True)
    assert vanishes(sp.tanh(x + y) ** 2 - sp.tanh(x + y) * sp.tanh(y + x))
    assert not vanishes(sp.tanh(x) - x)
    relu = sp.Piecewise((x, x > 0), (0, True))
    assert vanishes(sp.diff(relu * y, x) - y * sp.Piecewise((1, x > 0), (0, True)))


def test_vanishes_replaces_a_piecewise_inside_another_s_condition_first():
    """relu(relu(x) - y): the inner ReLU sits in the outer one's condition, so it must become its indicator
    before the outer one does; d/dx is then theta(x) theta(relu(x) - y), and theta(relu(x) - y) alone is
    not it."""
    x, y = sp.symbols("x y", real=True)
    relu = lambda u: sp.Piecewise((u, u > 0), (0, True))
    step = lambda u: sp.Piecewise((1, u > 0), (0, True))
    outer = relu(relu(x) - y)
    assert vanishes(sp.diff(outer, x) - step(x) * step(relu(x) - y))
    assert not vanishes(sp.diff(outer, x) - step(relu(x) - y))
    sizes = subterm_sizes(outer)
    assert sizes[relu(x)] < sizes[outer] and sizes[x] == 1


@pytest.mark.parametrize("cell", ["lstm", "gru-reset-after", "gru-reset-before"])
def test_gated_cells_are_proved(cell):
    cert = prove("tanh", "softmax-ce", T=1, B=2, I=2, H=1, K=3, cell=cell)
    assert cert.proved and cert.cell == cell, cert
    assert cert.exact > 0 and cert.worst_residual < 1e-40


@pytest.mark.parametrize("cell, target, swap", [  # 1-3 s each since subterm_sizes (16-26 s before)
    ("lstm", "g_C_prev", {sp.IndexedBase("fg"): sp.IndexedBase("ig")}),  # dL/dc_{t-1} through i, not f
    ("gru-reset-after", "g_W_n", {sp.IndexedBase("h_prev"): sp.IndexedBase("h")}),
    ("gru-reset-before", "g_W_n", {sp.IndexedBase("rh"): sp.IndexedBase("h_prev")}),  # h for r * h
])
def test_a_wrong_gated_derivation_is_not_proved(monkeypatch, cell, target, swap):
    real = derive

    def tampered(spec):
        d = real(spec)
        step = tuple(dataclasses.replace(eq, rhs=eq.rhs.xreplace(swap)) if eq.target.name == target else eq
                     for eq in d.step_backward)
        return dataclasses.replace(d, step_backward=step)

    monkeypatch.setattr(oracle_module, "derive", tampered)
    cert = prove("tanh", "softmax-ce", T=2, B=1, I=1, H=2, K=2, cell=cell)
    assert not cert.proved and cert.worst_residual > 1e-3, cert


VARIANT_PROOFS = [("layers=2", 2, 1, ()), ("bidirectional,lengths=zero", 2, 2, (2, 1)),
                  ("bidirectional,lengths=carry", 2, 2, (1, 0))]


@pytest.mark.parametrize("variant, T, B, lengths", VARIANT_PROOFS, ids=[v[0] for v in VARIANT_PROOFS])
@pytest.mark.parametrize("cell", ["elman", "lstm", "gru-reset-after", "gru-reset-before"])
def test_the_composition_of_every_cell_is_proved(cell, variant, T, B, lengths, request):
    """Two layers, and both directions over a padded batch: every gradient of the composed loss equals the
    derivative of the unrolled one. A gated two-layer run over two steps takes ~40 s in SymEngine: one step
    here, two under -m slow (tests/test_long_run.py)."""
    if variant == "layers=2" and cell != "elman":
        T = 1
    cert = prove("tanh", "softmax-ce", T=T, B=B, I=1, H=2 if cell == "elman" else 1, K=2, cell=cell,
                 variant=variant, lengths=lengths)
    assert cert.proved and cert.variant == variant, cert


def test_a_wrong_composition_is_not_proved(monkeypatch):
    """The reverse direction's dL/dx left in its processing order, not put back in time order."""
    from rnnspec.derivations.composed import Composed

    real = Composed._direction_backward

    def tampered(self, run, mask, g_y, finals):
        got = real(self, run, mask, g_y, finals)
        if run["reverse"]:
            got["x"] = got["x"][::-1]
        return got

    monkeypatch.setattr(Composed, "_direction_backward", tampered)
    cert = prove("tanh", "softmax-ce", T=2, B=1, I=1, H=1, K=2, variant="bidirectional")
    assert not cert.proved and cert.worst_residual > 1e-3
