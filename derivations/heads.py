"""Heads: the map from the hidden state of every step to a scalar loss, written once for every cell.

Every cell's loss is a head applied to its hidden state h_t. The default, ``softmax-ce``, is the
source notes' a_t = V h_t + c, o_t = softmax(a_t), loss_t = -log o_t[y_t]. Its ``c`` is the output
bias, a parameter; the LSTM's c_t is a state, and the two are kept apart by name (``Var.key``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import sympy as sp

from rnnspec.derivations.tensors import INTERMEDIATE, PARAM, SHIFT, TARGET, Equation, Shift, Var, indices


@dataclass(frozen=True)
class Head:
    """Maps a state of every step to a scalar loss ``loss``; ``outputs`` define o_t for reports."""

    name: str
    reads: Var
    params: tuple[Var, ...]
    target: Var
    equations: tuple[Equation, ...]
    shifts: tuple[Shift, ...]
    loss: Var
    outputs: tuple[Equation, ...]


def softmax_cross_entropy(h: Var) -> Head:
    """loss_t = -log softmax(a_t)[y_t] = log sum_k exp(a_tk) - y_t . a_t, y_t one-hot.

    The shift mu_t = max_k a_tk keeps exp in range; the loss does not depend on it.
    """
    i, j, k = indices("i j k")
    V = Var("V", ("K", h.shape[0]), PARAM, "V")
    c = Var("c", ("K",), PARAM, "c")
    y = Var("y", ("K",), TARGET, "y")
    a = Var("a", ("K",), INTERMEDIATE, "a")
    mu = Var("mu", (), SHIFT, r"\mu")
    s = Var("s", (), INTERMEDIATE, "s")
    loss = Var("ell", (), INTERMEDIATE, r"\ell")
    o = Var("o", ("K",), INTERMEDIATE, "o")
    return Head(
        name="softmax-ce",
        reads=h,
        params=(V, c),
        target=y,
        equations=(
            Equation(a, (i,), V[i, j] * h[j] + c[i]),
            Equation(s, (), sp.exp(a[k] - mu.scalar)),
            Equation(loss, (), sp.log(s.scalar) + mu.scalar - y[k] * a[k]),
        ),
        shifts=(Shift(mu, a, "max"),),
        loss=loss,
        outputs=(Equation(o, (i,), sp.exp(a[i] - mu.scalar) / s.scalar),),
    )


def identity_squared_error(h: Var) -> Head:
    """loss_t = 1/2 ||a_t - y_t||^2 with o_t = a_t."""
    i, j, k = indices("i j k")
    V = Var("V", ("K", h.shape[0]), PARAM, "V")
    c = Var("c", ("K",), PARAM, "c")
    y = Var("y", ("K",), TARGET, "y")
    a = Var("a", ("K",), INTERMEDIATE, "a")
    loss = Var("ell", (), INTERMEDIATE, r"\ell")
    o = Var("o", ("K",), INTERMEDIATE, "o")
    return Head(
        name="identity-se",
        reads=h,
        params=(V, c),
        target=y,
        equations=(
            Equation(a, (i,), V[i, j] * h[j] + c[i]),
            Equation(loss, (), (a[k] - y[k]) ** 2 / 2),
        ),
        shifts=(),
        loss=loss,
        outputs=(Equation(o, (i,), a[i]),),
    )


#: head name -> builder from the state it reads
HEADS: dict[str, Callable[[Var], Head]] = {"softmax-ce": softmax_cross_entropy, "identity-se": identity_squared_error}


def make_head(name: str | None, reads: Var) -> Head | None:
    """The head ``name`` reading ``reads``, or None for no head."""
    if name is None:
        return None
    if name not in HEADS:
        raise ValueError(f"head must be one of {sorted(HEADS)} or None, got {name!r}")
    return HEADS[name](reads)
