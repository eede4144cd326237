"""An Elman RNN written independently of rnnspec, straight from the textbook, in NumPy float64.

Used only as a second opinion on the oracle; it shares no code with the package.
"""

import numpy as np

ACT = {
    "tanh": (np.tanh, lambda z, h: 1 - h**2),
    "sigmoid": (lambda z: 1 / (1 + np.exp(-z)), lambda z, h: h * (1 - h)),
    "relu": (lambda z: np.maximum(z, 0), lambda z, h: (z > 0).astype(float)),
    "identity": (lambda z: z, lambda z, h: np.ones_like(z)),
}


def forward(x, h0, U, W, b, activation="tanh"):
    f, _ = ACT[activation]
    hs, zs, h = [], [], h0
    for t in range(x.shape[0]):
        z = x[t] @ U.T + h @ W.T + b
        h = f(z)
        zs.append(z)
        hs.append(h)
    return np.array(hs), np.array(zs)


def vjp(x, h0, U, W, b, gh, activation="tanh"):
    _, df = ACT[activation]
    hs, zs = forward(x, h0, U, W, b, activation)
    T = x.shape[0]
    gU, gW, gb = np.zeros_like(U), np.zeros_like(W), np.zeros_like(b)
    gx = np.zeros_like(x)
    carry = np.zeros_like(h0)
    for t in reversed(range(T)):
        delta = (gh[t] + carry) * df(zs[t], hs[t])
        prev = hs[t - 1] if t > 0 else h0
        gU += delta.T @ x[t]
        gW += delta.T @ prev
        gb += delta.sum(0)
        gx[t] = delta @ U
        carry = delta @ W
    return {"x": gx, "h0": carry, "U": gU, "W": gW, "b": gb}


def loss(x, h0, U, W, b, V, c, targets, activation="tanh"):
    hs, _ = forward(x, h0, U, W, b, activation)
    T, B = targets.shape
    total, gh = 0.0, np.zeros_like(hs)
    gV, gc = np.zeros_like(V), np.zeros_like(c)
    for t in range(T):
        a = hs[t] @ V.T + c
        a = a - a.max(axis=1, keepdims=True)
        log_norm = np.log(np.exp(a).sum(axis=1, keepdims=True))
        p = np.exp(a - log_norm)
        total += -(a - log_norm)[np.arange(B), targets[t]].sum()
        e = p.copy()
        e[np.arange(B), targets[t]] -= 1
        gV += e.T @ hs[t]
        gc += e.sum(0)
        gh[t] = e @ V
    grads = vjp(x, h0, U, W, b, gh, activation)
    grads.update(V=gV, c=gc)
    return total, grads
