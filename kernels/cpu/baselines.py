"""Implementations that the benchmark measures rnnspec's kernels against.

Each runner takes the inputs of one benchmark case and returns two callables, ``forward()`` and
``train()``, that compute the same things as the kernels: all states, and the loss with every
gradient (x and h0 included).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Case = dict[str, np.ndarray]


def rnnspec_cpu(case: Case) -> tuple[Callable, Callable]:
    from rnnspec.kernels import elman_forward, elman_loss

    args = (case["x"], case["h0"], case["U"], case["W"], case["b"])

    def train():
        return elman_loss(*args, case["V"], case["c"], case["targets"])

    return (lambda: elman_forward(*args)), train


def plain_numpy(case: Case) -> tuple[Callable, Callable]:
    """The textbook loop: one step at a time, gradients accumulated step by step."""
    x, h0, U, W, b, V, c, y = (case[k] for k in ("x", "h0", "U", "W", "b", "V", "c", "targets"))
    T, B, _ = x.shape

    def forward():
        h, out = h0, np.empty((T, B, W.shape[0]), x.dtype)
        for t in range(T):
            h = out[t] = np.tanh(x[t] @ U.T + h @ W.T + b)
        return out

    def train():
        hs = forward()
        gU, gW, gb, gV, gc = (np.zeros_like(a) for a in (U, W, b, V, c))
        gx, carry, loss = np.empty_like(x), np.zeros_like(h0), 0.0
        rows = np.arange(B)
        for t in range(T - 1, -1, -1):
            a = hs[t] @ V.T + c
            a -= a.max(axis=1, keepdims=True)
            p = np.exp(a)
            norm = p.sum(axis=1, keepdims=True)
            loss += float(np.sum(np.log(norm[:, 0]) - a[rows, y[t]]))
            p /= norm
            p[rows, y[t]] -= 1
            gV += p.T @ hs[t]
            gc += p.sum(axis=0)
            delta = (p @ V + carry) * (1 - hs[t] ** 2)
            previous = hs[t - 1] if t else h0
            gU += delta.T @ x[t]
            gW += delta.T @ previous
            gb += delta.sum(axis=0)
            gx[t] = delta @ U
            carry = delta @ W
        return loss, {"x": gx, "h0": carry, "U": gU, "W": gW, "b": gb, "V": gV, "c": gc}

    return forward, train


def torch_cpu(case: Case) -> tuple[Callable, Callable]:
    """nn.RNN + nn.Linear + cross_entropy (sum), gradients by autograd, x and h0 included."""
    import torch

    T, B, I = case["x"].shape
    H, K = case["W"].shape[0], case["V"].shape[0]
    dtype = torch.float32 if case["x"].dtype == np.float32 else torch.float64
    rnn = torch.nn.RNN(I, H, nonlinearity="tanh").to(dtype)
    head = torch.nn.Linear(H, K).to(dtype)
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(torch.from_numpy(case["U"]))
        rnn.weight_hh_l0.copy_(torch.from_numpy(case["W"]))
        rnn.bias_ih_l0.copy_(torch.from_numpy(case["b"]))
        rnn.bias_hh_l0.zero_()
        head.weight.copy_(torch.from_numpy(case["V"]))
        head.bias.copy_(torch.from_numpy(case["c"]))
    x = torch.from_numpy(case["x"])
    h0 = torch.from_numpy(case["h0"])[None]
    y = torch.from_numpy(case["targets"].reshape(-1))

    def forward():
        with torch.no_grad():
            return rnn(x, h0)[0]

    def train():
        for p in (*rnn.parameters(), *head.parameters()):
            p.grad = None
        xg, hg = x.clone().requires_grad_(True), h0.clone().requires_grad_(True)
        out, _ = rnn(xg, hg)
        loss = torch.nn.functional.cross_entropy(head(out).reshape(T * B, K), y, reduction="sum")
        loss.backward()
        return loss.item(), xg.grad, hg.grad

    return forward, train


RUNNERS: dict[str, Callable[[Case], tuple[Callable, Callable]]] = {
    "rnnspec-cpu": rnnspec_cpu,
    "numpy": plain_numpy,
    "torch": torch_cpu,
}
