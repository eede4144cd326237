"""Deliberately wrong LSTMs and GRUs: each overrides one seam of a correct model of tests/gated.py."""

from __future__ import annotations

import numpy as np

from gated import LSTM, GRUResetAfter, GRUResetBefore, sigmoid


# -- LSTM mutants -----------------------------------------------------------------------------
class LstmInputForgetSwapped(LSTM):
    """Gate order read as f, i, g, o: the input and forget gates' parameters swapped."""

    order = "figo"


class LstmInputOutputSwapped(LSTM):
    """Gate order read as o, f, g, i: the input and output gates swapped."""

    order = "ofgi"


class LstmOnnxOrderReadAsPyTorch(LSTM):
    """ONNX's gate order i, o, f, c read as PyTorch's i, f, g, o (CrispASR#106, opencv#29931)."""

    order = "iofg"


class LstmForgetBiasAdded(LSTM):
    """TF1's forget_bias = 1 added at run time on top of b_f."""

    def biases(self, params):
        b = super().biases(params).copy()
        H = b.size // 4
        b[H:2 * H] += 1
        return b


class LstmNoTanhOnCell(LSTM):
    """h = o * c instead of o * tanh(c)."""

    def squash_cell(self, c):
        return c


class LstmDropsC0Gradient(LSTM):
    """dL/dc0 returned as zeros."""

    def initial_cell_grad(self, gc):
        return np.zeros_like(gc)


class LstmTruncatedThroughCell(LSTM):
    """BPTT through c cut: dL/dc_{t-1} gets nothing from dL/dc_t (only the path through h)."""

    def carry_cell(self, gc, f):
        return np.zeros_like(gc)


class LstmGateSlopeAtPreActivation(LSTM):
    """sigma'(u) taken as u (1 - u) at the pre-activation instead of y (1 - y) at the gate."""

    def gate_slope(self, y, u):
        return u * (1 - u)


class LstmIgnoresCandidateBias(LSTM):
    """b_g never added (one bias of four dropped)."""

    def biases(self, params):
        return self.stack({**params, "b_g": np.zeros_like(params["b_g"])}, "b")


class LstmCellCotangentWithoutOutputGate(LSTM):
    """dL/dc_t from h_t taken as gh (1 - tanh^2 c), the output gate forgotten."""

    def cell_cotangent(self, gh, o, tc, gc_next, gc_given):
        return gc_given + gc_next + gh * (1 - tc * tc)


class LstmRecurrentGradWithCurrentState(LSTM):
    """dL/dW pairs the step's pre-activation cotangent with h_t instead of h_{t-1}."""

    def previous_h(self, tape, state0, t):
        return tape[t]["h"]


class LstmSigmoidCandidate(LSTM):
    """The candidate g squashed by sigma instead of tanh."""

    def candidate(self, u):
        return sigmoid(u)

    def tanh_slope(self, y, u):
        return y * (1 - y)


class LstmIgnoresCellCotangent(LSTM):
    """vjp uses the cotangents on h only; those given on c are dropped."""

    def cell_cotangent(self, gh, o, tc, gc_next, gc_given):
        return gc_next + gh * o * (1 - tc * tc)


class LstmLastStepSkipped(LSTM):
    """The backward loop starts at T - 2: the last step's cotangents are lost."""

    def steps_back(self, T):
        return range(T - 2, -1, -1)


class LstmTanhSlopeWithoutSquare(LSTM):
    """tanh'(g) taken as 1 - g instead of 1 - g^2."""

    def tanh_slope(self, y, u):
        return 1 - y


# -- GRU mutants (reset gate after the recurrent product) ---------------------------------------
class GruResetUpdateSwapped(GRUResetAfter):
    """Gate order read as z, r, n: the reset and update gates' parameters swapped (zrh against rzn)."""

    order = "zrn"


class GruUpdateConventionFlipped(GRUResetAfter):
    """h' = z * n + (1 - z) * h: the update gate's convention flipped (as some papers write it)."""

    def blend(self, z, n, h_prev):
        return z * n + (1 - z) * h_prev

    def blend_grads(self, gh, z, n, h_prev):
        return gh * z, gh * (n - h_prev), gh * (1 - z)


class GruAfterResetBeforeProduct(GRUResetAfter):
    """ONNX's default (reset gate on h before W_n, b_hn folded into b_n) run for a reset-after cell
    (onnxscript#2852: GRU exported without linear_before_reset)."""

    cell = "gru-reset-after"
    reset_after = False

    def input_biases(self, params):
        return self.stack({**params, "b_n": params["b_n"] + params["b_hn"]}, "b")

    def _backward(self, x, state0, params, tape, cotangents):
        grads = super()._backward(x, state0, params, tape, cotangents)
        grads["b_hn"] = grads["b_n"].copy()
        return grads


class GruBhnOutsideReset(GRUResetAfter):
    """b_hn added outside the reset product: n = tanh(U_n x + b_n + b_hn + r * (W_n h)) (coremltools#1124)."""

    def input_biases(self, params):
        return self.stack({**params, "b_n": params["b_n"] + params["b_hn"]}, "b")

    def recurrent_bias(self, params):
        return 0


class GruIgnoresBhn(GRUResetAfter):
    """b_hn dropped (the second bias of a two-bias framework ignored)."""

    def recurrent_bias(self, params):
        return 0


class GruIgnoresBn(GRUResetAfter):
    """b_n dropped: only the recurrent bias b_hn reaches n."""

    def input_biases(self, params):
        return self.stack({**params, "b_n": np.zeros_like(params["b_n"])}, "b")


class GruWnGradWithoutReset(GRUResetAfter):
    """dL/dW_n computed from dL/dpre_n, not dL/dm = r * dL/dpre_n."""

    def n_weight_grad(self, d, s):
        return (d / np.where(s["r"] == 0, 1, s["r"])).T @ s["h_prev"]


class GruGateSlopeFromPreActivation(GRUResetAfter):
    """sigma' of the update gate taken as 1/4 (its value at 0) everywhere."""

    def gate_slope(self, y, u):
        return np.full_like(y, 0.25)


class GruTruncatedBPTT(GRUResetAfter):
    """The carried cotangent cut every 8 steps (truncated BPTT passed off as the full gradient)."""

    def _backward(self, *args):
        self._count = 0
        return super()._backward(*args)

    def carry(self, gh_prev):
        self._count += 1
        return gh_prev if self._count % 8 else np.zeros_like(gh_prev)


class GruH0MissesDirectPath(GRUResetAfter):
    """dL/dh_{t-1} loses the direct term z * dL/dh_t."""

    def blend_grads(self, gh, z, n, h_prev):
        gn, gz, _ = super().blend_grads(gh, z, n, h_prev)
        return gn, gz, np.zeros_like(gh)


class GruTanhSlopeAtPreActivation(GRUResetAfter):
    """tanh'(pre_n) taken as 1 - pre_n^2 instead of 1 - n^2."""

    def tanh_slope(self, y, u):
        return 1 - u * u


class GruSigmoidCandidate(GRUResetAfter):
    """The update gate squashed by tanh instead of sigma."""

    def update(self, u):
        return np.tanh(u)


class GruLastStepSkipped(GRUResetAfter):
    """The backward loop starts at T - 2: the last step's cotangents are lost."""

    def steps_back(self, T):
        return range(T - 2, -1, -1)


class GruBiasesSummedOnce(GRUResetAfter):
    """dL/db_r taken from the last step only."""

    def _backward(self, x, state0, params, tape, cotangents):
        grads = super()._backward(x, state0, params, tape, cotangents)
        last = super()._backward(x[-1:], {"h0": tape[-1]["h_prev"]}, params, tape[-1:],
                                 {k: v[-1:] for k, v in cotangents.items()})
        return {**grads, "b_r": last["b_r"]}


class GruCarryScaled(GRUResetAfter):
    """The carried cotangent halved every step (a stray 0.5 from a mean)."""

    def carry(self, gh_prev):
        return gh_prev * 0.5


# -- GRU mutants (reset gate before the recurrent product) --------------------------------------
class GruBeforeResetUpdateSwapped(GRUResetBefore):
    """Gate order read as z, r, n."""

    order = "zrn"


class GruBeforeUpdateFlipped(GruUpdateConventionFlipped, GRUResetBefore):
    """h' = z * n + (1 - z) * h in the reset-before cell."""

    reset_after = False


class GruBeforeResetAfterProduct(GRUResetBefore):
    """The reset gate applied after W_n (PyTorch's form, no b_hn) where the cell applies it before."""

    cell = "gru-reset-before"
    reset_after = True

    def recurrent_bias(self, params):
        return 0

    def _backward(self, x, state0, params, tape, cotangents):
        grads = super()._backward(x, state0, params, tape, cotangents)
        del grads["b_hn"]
        return grads


class GruBeforeWnGradWithH(GRUResetBefore):
    """dL/dW_n computed with h_{t-1} instead of r * h_{t-1}."""

    def n_weight_grad(self, d, s):
        return d.T @ s["h_prev"]


class GruBeforeIgnoresBn(GruIgnoresBn, GRUResetBefore):
    """b_n dropped in the reset-before cell."""

    reset_after = False


class GruBeforeResetGradWithoutH(GRUResetBefore):
    """dL/dh_{t-1} through r * h misses the factor r."""

    def through_reset(self, dm, r):
        return dm


class GruBeforeGateSlope(GruGateSlopeFromPreActivation, GRUResetBefore):
    """sigma' taken as 1/4 everywhere in the reset-before cell."""

    reset_after = False


class GruBeforeTruncated(GRUResetBefore):
    """The carried cotangent cut every 4 steps (truncated BPTT)."""

    def _backward(self, *args):
        self._count = 0
        return super()._backward(*args)

    def carry(self, gh_prev):
        self._count += 1
        return gh_prev if self._count % 4 else np.zeros_like(gh_prev)


class GruBeforeH0MissesDirectPath(GruH0MissesDirectPath, GRUResetBefore):
    """dL/dh_{t-1} loses z * dL/dh_t in the reset-before cell."""

    reset_after = False


class GruBeforeTanhSlope(GruTanhSlopeAtPreActivation, GRUResetBefore):
    """tanh' at the pre-activation in the reset-before cell."""

    reset_after = False


class GruBeforeTanhUpdate(GruSigmoidCandidate, GRUResetBefore):
    """The update gate squashed by tanh in the reset-before cell."""

    reset_after = False


class GruBeforeLastStepSkipped(GruLastStepSkipped, GRUResetBefore):
    """The last step's cotangents lost in the reset-before cell."""

    reset_after = False


class GruBeforeRecurrentTransposed(GRUResetBefore):
    """W_n applied transposed: (r * h) W_n instead of (r * h) W_n^T."""

    def _forward(self, x, state0, params):
        return super()._forward(x, state0, {**params, "W_n": params["W_n"].T})

    def _backward(self, x, state0, params, tape, cotangents):
        grads = super()._backward(x, state0, {**params, "W_n": params["W_n"].T}, tape, cotangents)
        grads["W_n"] = grads["W_n"].T
        return grads


class GruBeforeCarryScaled(GruCarryScaled, GRUResetBefore):
    """The carried cotangent halved every step in the reset-before cell."""

    reset_after = False


class GruBeforeMutatesInput(GRUResetBefore):
    """Clips x in place to [-3, 3] before using it."""

    def forward(self, x, state0, params):
        np.clip(x, -0.5, 0.5, out=x)
        return super().forward(x, state0, params)


GATED_MUTANTS = {
    "lstm": [LstmInputForgetSwapped, LstmInputOutputSwapped, LstmOnnxOrderReadAsPyTorch, LstmForgetBiasAdded,
             LstmNoTanhOnCell, LstmDropsC0Gradient, LstmTruncatedThroughCell, LstmGateSlopeAtPreActivation,
             LstmIgnoresCandidateBias, LstmCellCotangentWithoutOutputGate, LstmRecurrentGradWithCurrentState,
             LstmSigmoidCandidate, LstmIgnoresCellCotangent, LstmLastStepSkipped, LstmTanhSlopeWithoutSquare],
    "gru-reset-after": [GruResetUpdateSwapped, GruUpdateConventionFlipped, GruBhnOutsideReset, GruIgnoresBhn,
                        GruIgnoresBn, GruWnGradWithoutReset, GruGateSlopeFromPreActivation, GruTruncatedBPTT,
                        GruH0MissesDirectPath, GruTanhSlopeAtPreActivation, GruSigmoidCandidate, GruLastStepSkipped,
                        GruBiasesSummedOnce, GruCarryScaled, GruAfterResetBeforeProduct],
    "gru-reset-before": [GruBeforeResetUpdateSwapped, GruBeforeUpdateFlipped, GruBeforeResetAfterProduct,
                         GruBeforeWnGradWithH, GruBeforeIgnoresBn, GruBeforeResetGradWithoutH, GruBeforeGateSlope,
                         GruBeforeTruncated, GruBeforeH0MissesDirectPath, GruBeforeTanhSlope, GruBeforeTanhUpdate,
                         GruBeforeLastStepSkipped, GruBeforeRecurrentTransposed, GruBeforeCarryScaled,
                         GruBeforeMutatesInput],
}
