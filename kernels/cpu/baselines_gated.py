"""What ``rnnspec bench --cell lstm|gru-reset-after|gru-reset-before`` times the kernels against.

Each runner takes a case (canonical per-gate parameters, V, c, targets) and returns ``forward()``
(every state) and ``train()`` (the loss and every gradient, x and the initial states included):
- ``torch``: nn.LSTM / nn.GRU, nn.Linear and cross_entropy (sum), autograd (no reset-before GRU);
- ``numpy``: the textbook loop, one step at a time with the gates stacked, gradients accumulated
  step by step.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from rnnspec import catalogue
from rnnspec.kernels.cpu.baselines_variants import PLAIN, rnnspec_variant, torch_variant

Case = dict


def _sigmoid(v):
    return 1 / (1 + np.exp(-v))


def _stack(case: Case, kind: str, gates: str) -> np.ndarray:
    return np.concatenate([case[f"{kind}_{g}"] for g in gates])


def _head(hs, V, c, y):
    """Loss and dL/dlogits of softmax cross-entropy, one step: hs (B, H), y (B,)."""
    a = hs @ V.T + c
    a -= a.max(axis=1, keepdims=True)
    p = np.exp(a)
    norm = p.sum(axis=1, keepdims=True)
    rows = np.arange(len(y))
    value = float(np.sum(np.log(norm[:, 0]) - a[rows, y]))
    p /= norm
    p[rows, y] -= 1
    return value, p


#: the cells the textbook loop runs
CELLS = ("lstm", "gru-reset-after", "gru-reset-before")


def numpy_gated(case: Case, cell: str) -> tuple[Callable, Callable]:
    if cell not in CELLS:
        raise ValueError(f"the textbook loop runs {', '.join(CELLS)}, not {cell!r}")
    gates = catalogue.cell(cell).gates
    U, W, b = (_stack(case, k, gates) for k in "UWb")
    x, h0, V, c, y = case["x"], case["h0"], case["V"], case["c"], case["targets"]
    T, B, _ = x.shape
    H = h0.shape[1]
    b_hn = case.get("b_hn")

    def step(t, h, c_prev, keep):
        a = x[t] @ U.T + b
        if cell == "lstm":
            z = a + h @ W.T
            i, f, o = _sigmoid(z[:, :H]), _sigmoid(z[:, H:2 * H]), _sigmoid(z[:, 3 * H:])
            g = np.tanh(z[:, 2 * H:3 * H])
            c_new = f * c_prev + i * g
            keep.append((h, c_prev, i, f, g, o, np.tanh(c_new)))
            return o * np.tanh(c_new), c_new
        rz = _sigmoid(a[:, :2 * H] + h @ W[:2 * H].T)
        r, z = rz[:, :H], rz[:, H:]
        if cell == "gru-reset-after":
            m = h @ W[2 * H:].T + b_hn
            n = np.tanh(a[:, 2 * H:] + r * m)
        else:
            m = r * h
            n = np.tanh(a[:, 2 * H:] + m @ W[2 * H:].T)
        keep.append((h, r, z, n, m))
        return (1 - z) * n + z * h, None

    def forward(keep=None):
        h, c_state = h0, case.get("c0")
        out = np.empty((T, B, H), x.dtype)
        for t in range(T):
            h, c_state = step(t, h, c_state, keep if keep is not None else [])
            out[t] = h
        return out

    def train():
        keep: list = []
        hs = forward(keep)
        grads = {k: np.zeros_like(v) for k, v in (("U", U), ("W", W), ("b", b), ("V", V), ("c", c))}
        if b_hn is not None:
            grads["b_hn"] = np.zeros_like(b_hn)
        gx, carry, carry_c, value = np.empty_like(x), np.zeros_like(h0), np.zeros_like(h0), 0.0
        for t in range(T - 1, -1, -1):
            part, p = _head(hs[t], V, c, y[t])
            value += part
            grads["V"] += p.T @ hs[t]
            grads["c"] += p.sum(axis=0)
            dh = p @ V + carry
            if cell == "lstm":
                h, c_prev, i, f, g, o, tc = keep[t]
                dc = dh * o * (1 - tc**2) + carry_c
                dz = np.concatenate([dc * g * i * (1 - i), dc * c_prev * f * (1 - f), dc * i * (1 - g**2),
                                     dh * tc * o * (1 - o)], axis=1)
                carry_c = dc * f
                recurrent, carry = dz, dz @ W
            else:
                h, r, z, n, m = keep[t]
                dzn = dh * (1 - z) * (1 - n**2)
                dzz = dh * (h - n) * z * (1 - z)
                if cell == "gru-reset-after":
                    dzr = dzn * m * r * (1 - r)
                    dz = np.concatenate([dzr, dzz, dzn], axis=1)
                    recurrent = np.concatenate([dzr, dzz, dzn * r], axis=1)
                    grads["b_hn"] += recurrent[:, 2 * H:].sum(axis=0)
                    carry = dh * z + recurrent @ W
                else:
                    d_rh = dzn @ W[2 * H:]
                    dzr = d_rh * h * r * (1 - r)
                    dz = np.concatenate([dzr, dzz, dzn], axis=1)
                    grads["W"][2 * H:] += dzn.T @ m
                    recurrent = dz[:, :2 * H]
                    carry = dh * z + d_rh * r + recurrent @ W[:2 * H]
            grads["U"] += dz.T @ x[t]
            grads["W"][: recurrent.shape[1]] += recurrent.T @ h
            grads["b"] += dz.sum(axis=0)
            gx[t] = dz @ U
        grads.update(x=gx, h0=carry)
        if cell == "lstm":
            grads["c0"] = carry_c
        return value, grads

    return forward, train


def torch_gated(case: Case, cell: str) -> tuple[Callable, Callable]:
    """nn.LSTM or nn.GRU (reset after) with the case's weights: gates stacked as the kernels stack them
    (PyTorch's own order), b in bias_ih, bias_hh zero but for b_hn in the GRU's n block. The one-layer
    case of :func:`baselines_variants.torch_variant`."""
    return torch_variant(case, cell, PLAIN)


def rnnspec_gated(case: Case, cell: str) -> tuple[Callable, Callable]:
    """The kernels: rnnspec.kernels.forward and loss with the case's parameters (one forward layer)."""
    return rnnspec_variant(case, cell, PLAIN)


RUNNERS: dict[str, Callable[[Case, str], tuple[Callable, Callable]]] = {
    "rnnspec-cpu": rnnspec_gated,
    "numpy": numpy_gated,
    "torch": torch_gated,
}
