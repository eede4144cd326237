"""Correct NumPy models (an Elman here; the LSTM and GRUs in tests/gated.py) and deliberately wrong variants
(the gated cells' in tests/mutants_gated.py, collected here as GATED_MUTANTS).

Each mutant overrides one small method of a correct model to carry one realistic bug, and declares in
``must_fail`` the clauses a correct suite must fail on it (tests/must_fail.py reads them). The suite must
reject every one at default settings, failing at least those clauses (tests/test_mutants.py).
"""

from __future__ import annotations

import numpy as np

from rnnspec.derivations.cells import ACTIVATIONS

import mutants_gated
from must_fail import BACKWARD, EVERYTHING


class Elman:
    """Contract-conforming Elman RNN in NumPy; computes in the dtype it is given."""

    cell = "elman"
    dtypes = ("float32", "float64")
    activations = tuple(ACTIVATIONS)
    activation = "tanh"

    # -- pieces the mutants replace ---------------------------------------------------------
    def f(self, z):
        return {"tanh": np.tanh, "sigmoid": lambda v: 1 / (1 + np.exp(-v)), "relu": lambda v: np.maximum(v, 0),
                "identity": lambda v: v}[self.activation](z)

    def slope(self, z, h):
        """f'(z), from h = f(z) where that is cheaper."""
        return {"tanh": lambda: 1 - h * h, "sigmoid": lambda: h * (1 - h), "relu": lambda: (z > 0).astype(z.dtype),
                "identity": lambda: np.ones_like(z)}[self.activation]()

    def recurrent(self, h, W):
        return h @ W.T

    def carry_back(self, delta, W):
        return delta @ W

    def previous(self, hs, h0, t):
        return hs[t - 1] if t else h0

    def start(self, h0):
        return h0

    def bias_grad(self, delta):
        return delta.sum(axis=0)

    def log_softmax(self, a):
        a = a - a.max(axis=1, keepdims=True)
        return a - np.log(np.exp(a).sum(axis=1, keepdims=True))

    def reduce_loss(self, losses):
        return losses.sum()

    def steps_back(self, T):
        return range(T - 1, -1, -1)

    def accumulator(self, like):
        return np.zeros_like(like)

    # -- the model ------------------------------------------------------------------------
    def _forward(self, x, h0, U, W, b):
        h = self.start(h0)
        hs, zs = np.empty((x.shape[0],) + h0.shape, x.dtype), np.empty((x.shape[0],) + h0.shape, x.dtype)
        for t in range(x.shape[0]):
            zs[t] = x[t] @ U.T + self.recurrent(h, W) + b
            h = hs[t] = self.f(zs[t])
        return hs, zs

    def _backward(self, x, h0, U, W, hs, zs, gh):
        gU, gW, gb = self.accumulator(U), self.accumulator(W), np.zeros(W.shape[0], x.dtype)
        gx, carry = np.zeros_like(x), np.zeros_like(h0)
        for t in self.steps_back(x.shape[0]):
            delta = (gh[t] + carry) * self.slope(zs[t], hs[t])
            gU += delta.T @ x[t]
            gW += delta.T @ self.previous(hs, h0, t)
            gb += self.bias_grad(delta)
            gx[t] = delta @ U
            carry = self.carry_back(delta, W)
        return {"x": gx, "h0": carry, "U": gU, "W": gW, "b": gb}

    def forward(self, x, state0, params):
        return {"h": self._forward(x, state0["h0"], params["U"], params["W"], params["b"])[0]}

    def vjp(self, x, state0, params, cotangents):
        hs, zs = self._forward(x, state0["h0"], params["U"], params["W"], params["b"])
        return self._backward(x, state0["h0"], params["U"], params["W"], hs, zs, cotangents["h"])

    def loss(self, x, state0, params, targets):
        U, W, b, V, c = (params[k] for k in ("U", "W", "b", "V", "c"))
        hs, zs = self._forward(x, state0["h0"], U, W, b)
        T, B = targets.shape
        log_p = self.log_softmax(hs.reshape(T * B, -1) @ V.T + c)
        y = targets.reshape(-1)
        losses = -log_p[np.arange(T * B), y]
        e = np.exp(log_p)
        e[np.arange(T * B), y] -= 1
        grads = self._backward(x, state0["h0"], U, W, hs, zs, (e @ V).reshape(hs.shape))
        grads.update(V=e.T @ hs.reshape(T * B, -1), c=e.sum(axis=0))
        return float(self.reduce_loss(losses)), grads


# -- the mutants: one bug each ----------------------------------------------------------------
class SlopeAtWrongPoint(Elman):
    """f'(h) instead of f'(z): the derivative evaluated at the output, not the pre-activation."""

    must_fail = BACKWARD

    def slope(self, z, h):
        return super().slope(h, self.f(h))


class TruncatedBPTT(Elman):
    """Backpropagation through time cut every 8 steps (truncated BPTT passed off as the full gradient)."""

    must_fail = BACKWARD

    def _backward(self, *args):
        self._count = 0
        return super()._backward(*args)

    def carry_back(self, delta, W):
        self._count += 1
        return delta @ W if self._count % 8 else np.zeros_like(delta @ W)


class OffByOneInTime(Elman):
    """dL/dW pairs delta_t with h_t instead of h_{t-1}."""

    must_fail = ("VJP-W", "LOSS-W")

    def previous(self, hs, h0, t):
        return hs[t]


class MissingTranspose(Elman):
    """The carry goes back through W^T twice: delta W^T instead of delta W."""

    must_fail = BACKWARD

    def carry_back(self, delta, W):
        return delta @ W.T


class ForwardTransposed(Elman):
    """The recurrent product uses h W instead of h W^T."""

    must_fail = EVERYTHING

    def recurrent(self, h, W):
        return h @ W


class BiasNotSummedOverBatch(Elman):
    """dL/db takes the first batch row only."""

    must_fail = ("VJP-B", "LOSS-B")

    def bias_grad(self, delta):
        return delta[0]


class BiasOnlyLastStep(Elman):
    """dL/db accumulated from the last step only."""

    must_fail = ("VJP-B", "LOSS-B")

    def _backward(self, x, h0, U, W, hs, zs, gh):
        grads = super()._backward(x, h0, U, W, hs, zs, gh)
        last = (gh[-1]) * self.slope(zs[-1], hs[-1])
        grads["b"] = last.sum(axis=0)
        return grads


class DropsH0Gradient(Elman):
    """dL/dh0 is left at zero."""

    must_fail = ("VJP-H0", "LOSS-H0")

    def _backward(self, x, h0, U, W, hs, zs, gh):
        grads = super()._backward(x, h0, U, W, hs, zs, gh)
        grads["h0"] = np.zeros_like(h0)
        return grads


class IgnoresH0(Elman):
    """The recurrence starts from zeros whatever state0 says."""

    must_fail = EVERYTHING

    def start(self, h0):
        return np.zeros_like(h0)


class MeanInsteadOfSum(Elman):
    """The loss is averaged over the batch and time, not summed."""

    must_fail = ("LOSS-VALUE",)

    def reduce_loss(self, losses):
        return losses.mean()


class PrecisionLoss(Elman):
    """Computes the forward in float16 whatever the input dtype."""

    must_fail = EVERYTHING

    def f(self, z):
        return super().f(z.astype(np.float16)).astype(z.dtype)


class OddBatchBug(Elman):
    """With an odd batch, the last row's states are not updated (a vectorisation remainder bug)."""

    must_fail = EVERYTHING

    def f(self, z):
        out = super().f(z)
        if z.ndim == 2 and z.shape[0] % 2 == 1 and z.shape[0] > 1:
            out[-1] = super().f(z[-1] * 0.5)
        return out


class LongSequenceBug(Elman):
    """Past 40 steps the state is reset (a fixed-size buffer)."""

    must_fail = EVERYTHING

    def _forward(self, x, h0, U, W, b):
        h = self.start(h0)
        hs, zs = np.empty((x.shape[0],) + h0.shape, x.dtype), np.empty((x.shape[0],) + h0.shape, x.dtype)
        for t in range(x.shape[0]):
            if t == 40:
                h = np.zeros_like(h)
            zs[t] = x[t] @ U.T + self.recurrent(h, W) + b
            h = hs[t] = self.f(zs[t])
        return hs, zs


class UnstableSoftmax(Elman):
    """log softmax without subtracting the max: overflows on large logits."""

    must_fail = ("LOSS-*", "FINITE")

    def log_softmax(self, a):
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            e = np.exp(a)
            return np.log(e / e.sum(axis=1, keepdims=True))


class TanhSlopeWithoutSquare(Elman):
    """tanh'(z) written 1 - h instead of 1 - h^2."""

    must_fail = BACKWARD

    def slope(self, z, h):
        return 1 - h if self.activation == "tanh" else super().slope(z, h)


class SigmoidSlopeWrong(Elman):
    """sigmoid'(z) written h (1 + h)."""

    must_fail = BACKWARD

    def slope(self, z, h):
        return h * (1 + h) if self.activation == "sigmoid" else super().slope(z, h)


class ReluSlopeFromSign(Elman):
    """relu'(z) taken as sign(z) (so -1 for negative z)."""

    must_fail = BACKWARD

    def slope(self, z, h):
        return np.sign(z).astype(z.dtype) if self.activation == "relu" else super().slope(z, h)


class LastCotangentDropped(Elman):
    """vjp loops t = T-2..0: the cotangent on the last state is dropped."""

    must_fail = BACKWARD

    def steps_back(self, T):
        return range(T - 2, -1, -1)


class UninitialisedAccumulator(Elman):
    """dL/dW accumulates into np.empty instead of np.zeros."""

    must_fail = ("VJP-U", "VJP-W", "LOSS-U", "LOSS-W", "DETERMINISTIC")

    def accumulator(self, like):
        out = np.empty_like(like)
        out[...] = np.random.default_rng().standard_normal(like.shape) * 1e-3
        return out


class MutatesInput(Elman):
    """Centres x in place before using it."""

    must_fail = ("FWD-H", "PURE")

    def forward(self, x, state0, params):
        x -= x.mean()
        return super().forward(x, state0, params)


class ReturnsFloat64ForFloat32(Elman):
    """Upcasts: float32 inputs give float64 outputs."""

    must_fail = ("SHAPE",)

    def forward(self, x, state0, params):
        out = super().forward(x, state0, params)
        return {"h": out["h"].astype(np.float64)}


class WrongBiasOfHead(Elman):
    """dL/dc sums the probabilities, forgetting the one-hot term."""

    must_fail = ("LOSS-C",)

    def loss(self, x, state0, params, targets):
        value, grads = super().loss(x, state0, params, targets)
        grads["c"] = grads["c"] + targets.size / params["c"].size
        return value, grads


MUTANTS = [SlopeAtWrongPoint, TruncatedBPTT, OffByOneInTime, MissingTranspose, ForwardTransposed,
           BiasNotSummedOverBatch, BiasOnlyLastStep, DropsH0Gradient, IgnoresH0, MeanInsteadOfSum, PrecisionLoss,
           OddBatchBug, LongSequenceBug, UnstableSoftmax, TanhSlopeWithoutSquare, SigmoidSlopeWrong,
           ReluSlopeFromSign, LastCotangentDropped, UninitialisedAccumulator, MutatesInput,
           ReturnsFloat64ForFloat32, WrongBiasOfHead]

#: the LSTM and GRU corpus, by cell (written in tests/mutants_gated.py)
GATED_MUTANTS = mutants_gated.GATED_MUTANTS
