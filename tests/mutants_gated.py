"""Deliberately wrong LSTMs, GRUs and MGUs: each overrides one seam of a correct model of tests/gated.py."""

from __future__ import annotations

import numpy as np

from gated import (
    LSTM,
    GRUResetAfter,
    GRUResetBefore,
    LSTMCoupled,
    LSTMPeephole,
    LSTMProjected,
    MGUFlax,
    MGUPaper,
    sigmoid,
)
from must_fail import BACKWARD, EVERYTHING


# -- LSTM mutants -----------------------------------------------------------------------------
class LstmInputForgetSwapped(LSTM):
    """Gate order read as f, i, g, o: the input and forget gates' parameters swapped."""

    must_fail = EVERYTHING

    order = "figo"


class LstmInputOutputSwapped(LSTM):
    """Gate order read as o, f, g, i: the input and output gates swapped."""

    must_fail = EVERYTHING

    order = "ofgi"


class LstmOnnxOrderReadAsPyTorch(LSTM):
    """ONNX's gate order i, o, f, c read as PyTorch's i, f, g, o (CrispASR#106, opencv#29931)."""

    must_fail = EVERYTHING

    order = "iofg"


class LstmForgetBiasAdded(LSTM):
    """TF1's forget_bias = 1 added at run time on top of b_f."""

    must_fail = EVERYTHING

    def biases(self, params):
        b = super().biases(params).copy()
        H = b.size // 4
        b[H:2 * H] += 1
        return b


class LstmNoTanhOnCell(LSTM):
    """h = o * c instead of o * tanh(c)."""

    must_fail = EVERYTHING

    def squash_cell(self, c):
        return c


class LstmDropsC0Gradient(LSTM):
    """dL/dc0 returned as zeros."""

    must_fail = ("VJP-C0", "LOSS-C0")

    def initial_cell_grad(self, gc):
        return np.zeros_like(gc)


class LstmTruncatedThroughCell(LSTM):
    """BPTT through c cut: dL/dc_{t-1} gets nothing from dL/dc_t (only the path through h)."""

    must_fail = BACKWARD

    def carry_cell(self, gc, f):
        return np.zeros_like(gc)


class LstmGateSlopeAtPreActivation(LSTM):
    """sigma'(u) taken as u (1 - u) at the pre-activation instead of y (1 - y) at the gate."""

    must_fail = BACKWARD

    def gate_slope(self, y, u):
        return u * (1 - u)


class LstmIgnoresCandidateBias(LSTM):
    """b_g never added (one bias of four dropped)."""

    must_fail = EVERYTHING

    def biases(self, params):
        return self.stack({**params, "b_g": np.zeros_like(params["b_g"])}, "b")


class LstmCellCotangentWithoutOutputGate(LSTM):
    """dL/dc_t from h_t taken as gh (1 - tanh^2 c), the output gate forgotten."""

    must_fail = BACKWARD

    def cell_cotangent(self, gh, o, tc, gc_next, gc_given):
        return gc_given + gc_next + gh * (1 - tc * tc)


class LstmRecurrentGradWithCurrentState(LSTM):
    """dL/dW pairs the step's pre-activation cotangent with h_t instead of h_{t-1}."""

    must_fail = ("VJP-W_?", "LOSS-W_?")

    def previous_h(self, tape, state0, t):
        return tape[t]["h"]


class LstmSigmoidCandidate(LSTM):
    """The candidate g squashed by sigma instead of tanh."""

    must_fail = EVERYTHING

    def candidate(self, u):
        return sigmoid(u)

    def tanh_slope(self, y, u):
        return y * (1 - y)


class LstmIgnoresCellCotangent(LSTM):
    """vjp uses the cotangents on h only; those given on c are dropped."""

    must_fail = ("VJP-*",)

    def cell_cotangent(self, gh, o, tc, gc_next, gc_given):
        return gc_next + gh * o * (1 - tc * tc)


class LstmLastStepSkipped(LSTM):
    """The backward loop starts at T - 2: the last step's cotangents are lost."""

    must_fail = BACKWARD

    def steps_back(self, T):
        return range(T - 2, -1, -1)


class LstmTanhSlopeWithoutSquare(LSTM):
    """tanh'(g) taken as 1 - g instead of 1 - g^2."""

    must_fail = BACKWARD

    def tanh_slope(self, y, u):
        return 1 - y


# -- GRU mutants (reset gate after the recurrent product) ---------------------------------------
class GruResetUpdateSwapped(GRUResetAfter):
    """Gate order read as z, r, n: the reset and update gates' parameters swapped (zrh against rzn)."""

    must_fail = EVERYTHING

    order = "zrn"


class GruUpdateConventionFlipped(GRUResetAfter):
    """h' = z * n + (1 - z) * h: the update gate's convention flipped (as some papers write it)."""

    must_fail = EVERYTHING

    def blend(self, z, n, h_prev):
        return z * n + (1 - z) * h_prev

    def blend_grads(self, gh, z, n, h_prev):
        return gh * z, gh * (n - h_prev), gh * (1 - z)


class GruAfterResetBeforeProduct(GRUResetAfter):
    """ONNX's default (reset gate on h before W_n, b_hn folded into b_n) run for a reset-after cell
    (onnxscript#2852: GRU exported without linear_before_reset)."""

    must_fail = EVERYTHING

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

    must_fail = EVERYTHING

    def input_biases(self, params):
        return self.stack({**params, "b_n": params["b_n"] + params["b_hn"]}, "b")

    def recurrent_bias(self, params):
        return 0


class GruIgnoresBhn(GRUResetAfter):
    """b_hn dropped (the second bias of a two-bias framework ignored)."""

    must_fail = EVERYTHING

    def recurrent_bias(self, params):
        return 0


class GruIgnoresBn(GRUResetAfter):
    """b_n dropped: only the recurrent bias b_hn reaches n."""

    must_fail = EVERYTHING

    def input_biases(self, params):
        return self.stack({**params, "b_n": np.zeros_like(params["b_n"])}, "b")


class GruWnGradWithoutReset(GRUResetAfter):
    """dL/dW_n computed from dL/dpre_n, not dL/dm = r * dL/dpre_n."""

    must_fail = ("VJP-W_N", "LOSS-W_N")

    def n_weight_grad(self, d, s):
        return (d / np.where(s["r"] == 0, 1, s["r"])).T @ s["h_prev"]


class GruGateSlopeFromPreActivation(GRUResetAfter):
    """sigma' of the update gate taken as 1/4 (its value at 0) everywhere."""

    must_fail = BACKWARD

    def gate_slope(self, y, u):
        return np.full_like(y, 0.25)


class GruTruncatedBPTT(GRUResetAfter):
    """The carried cotangent cut every 8 steps (truncated BPTT passed off as the full gradient)."""

    must_fail = BACKWARD

    def _backward(self, *args):
        self._count = 0
        return super()._backward(*args)

    def carry(self, gh_prev):
        self._count += 1
        return gh_prev if self._count % 8 else np.zeros_like(gh_prev)


class GruH0MissesDirectPath(GRUResetAfter):
    """dL/dh_{t-1} loses the direct term z * dL/dh_t."""

    must_fail = BACKWARD

    def blend_grads(self, gh, z, n, h_prev):
        gn, gz, _ = super().blend_grads(gh, z, n, h_prev)
        return gn, gz, np.zeros_like(gh)


class GruTanhSlopeAtPreActivation(GRUResetAfter):
    """tanh'(pre_n) taken as 1 - pre_n^2 instead of 1 - n^2."""

    must_fail = BACKWARD

    def tanh_slope(self, y, u):
        return 1 - u * u


class GruSigmoidCandidate(GRUResetAfter):
    """The update gate squashed by tanh instead of sigma."""

    must_fail = EVERYTHING

    def update(self, u):
        return np.tanh(u)


class GruLastStepSkipped(GRUResetAfter):
    """The backward loop starts at T - 2: the last step's cotangents are lost."""

    must_fail = BACKWARD

    def steps_back(self, T):
        return range(T - 2, -1, -1)


class GruBiasesSummedOnce(GRUResetAfter):
    """dL/db_r taken from the last step only."""

    must_fail = ("VJP-B_R", "LOSS-B_R")

    def _backward(self, x, state0, params, tape, cotangents):
        grads = super()._backward(x, state0, params, tape, cotangents)
        last = super()._backward(x[-1:], {"h0": tape[-1]["h_prev"]}, params, tape[-1:],
                                 {k: v[-1:] for k, v in cotangents.items()})
        return {**grads, "b_r": last["b_r"]}


class GruCarryScaled(GRUResetAfter):
    """The carried cotangent halved every step (a stray 0.5 from a mean)."""

    must_fail = BACKWARD

    def carry(self, gh_prev):
        return gh_prev * 0.5


# -- GRU mutants (reset gate before the recurrent product) --------------------------------------
class GruBeforeResetUpdateSwapped(GRUResetBefore):
    """Gate order read as z, r, n."""

    must_fail = EVERYTHING

    order = "zrn"


class GruBeforeUpdateFlipped(GruUpdateConventionFlipped, GRUResetBefore):
    """h' = z * n + (1 - z) * h in the reset-before cell."""

    reset_after = False


class GruBeforeResetAfterProduct(GRUResetBefore):
    """The reset gate applied after W_n (PyTorch's form, no b_hn) where the cell applies it before."""

    must_fail = EVERYTHING

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

    must_fail = ("VJP-W_N", "LOSS-W_N")

    def n_weight_grad(self, d, s):
        return d.T @ s["h_prev"]


class GruBeforeIgnoresBn(GruIgnoresBn, GRUResetBefore):
    """b_n dropped in the reset-before cell."""

    reset_after = False


class GruBeforeResetGradWithoutH(GRUResetBefore):
    """dL/dh_{t-1} through r * h misses the factor r."""

    must_fail = BACKWARD

    def through_reset(self, dm, r):
        return dm


class GruBeforeGateSlope(GruGateSlopeFromPreActivation, GRUResetBefore):
    """sigma' taken as 1/4 everywhere in the reset-before cell."""

    reset_after = False


class GruBeforeTruncated(GRUResetBefore):
    """The carried cotangent cut every 4 steps (truncated BPTT)."""

    must_fail = BACKWARD

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

    must_fail = EVERYTHING

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

    must_fail = ("FWD-H", "PURE")

    def forward(self, x, state0, params):
        np.clip(x, -0.5, 0.5, out=x)
        return super().forward(x, state0, params)


# -- LSTM with a projection (lstm-proj: h_t = W_hr r_t, r_t = o_t * tanh(c_t), (P,) with P < H) ------------
# LSTMProjected's loops have no seams: these mutants change what goes in (parameters, the forward's tape)
# or what comes out of its backward pass, and one retypes the forward loop with its bug.
class LstmProjTfKernelReshaped(LSTMProjected):
    """W_hr (P, H) taken as TF's num_proj kernel (H, P) and converted by reshape instead of transpose."""

    must_fail = EVERYTHING

    @staticmethod
    def misread(W_hr):
        P, H = W_hr.shape
        return W_hr.reshape(H, P).T

    def _forward(self, x, state0, params):
        return super()._forward(x, state0, {**params, "W_hr": self.misread(params["W_hr"])})

    def _backward(self, x, state0, params, tape, cotangents):
        grads = super()._backward(x, state0, {**params, "W_hr": self.misread(params["W_hr"])}, tape, cotangents)
        # the gradient of the function it does compute: misread's adjoint maps dL/dW_used back to dL/dW_hr
        grads["W_hr"] = grads["W_hr"].T.reshape(params["W_hr"].shape)
        return grads


class LstmProjUnsquashedCell(LSTMProjected):
    """h_t = W_hr (o_t * c_t): the projection applied to the gated cell state, its tanh forgotten (the
    backward pass is the correct one's, on this forward's states)."""

    must_fail = EVERYTHING

    def _forward(self, x, state0, params):
        U, W, b, W_hr = self.stack(params, "U"), self.stack(params, "W"), self.biases(params), params["W_hr"]
        H = U.shape[0] // 4
        h, c = state0["h0"], state0["c0"]
        tape = []
        for t in range(x.shape[0]):
            z = x[t] @ U.T + h @ W.T + b
            i, f, g, o = self.squash(z, H)
            c_prev, h_prev = c, h
            c = f * c_prev + i * g
            r = o * c
            h = r @ W_hr.T
            tape.append(dict(z=z, i=i, f=f, g=g, o=o, c_prev=c_prev, h_prev=h_prev, c=c, r=r, h=h))
        return tape


class LstmProjGradWithoutOutputGate(LSTMProjected):
    """dL/dW_hr pairs dL/dh_t with tanh(c_t) instead of r_t = o_t * tanh(c_t): the output gate forgotten."""

    must_fail = ("VJP-W_HR", "LOSS-W_HR")

    def _backward(self, x, state0, params, tape, cotangents):
        # the backward pass reads r only for dL/dW_hr
        return super()._backward(x, state0, params, [{**s, "r": np.tanh(s["c"])} for s in tape], cotangents)


class LstmProjGradOffByOne(LSTMProjected):
    """dL/dW_hr pairs dL/dh_t with r_{t-1} (zero at t = 0) instead of r_t."""

    must_fail = ("VJP-W_HR", "LOSS-W_HR")

    def _backward(self, x, state0, params, tape, cotangents):
        earlier = [np.zeros_like(tape[0]["r"])] + [s["r"] for s in tape[:-1]]
        return super()._backward(x, state0, params, [{**s, "r": r} for s, r in zip(tape, earlier)], cotangents)


class LstmProjGradFromGivenCotangentsOnly(LSTMProjected):
    """dL/dW_hr accumulated from the cotangents given on h_t only, not those carried back from step t + 1."""

    must_fail = ("VJP-W_HR", "LOSS-W_HR")

    def _backward(self, x, state0, params, tape, cotangents):
        grads = super()._backward(x, state0, params, tape, cotangents)
        grads["W_hr"] = sum(cotangents["h"][t].T @ s["r"] for t, s in enumerate(tape))
        return grads


class LstmProjRecurrenceNotCarried(LSTMProjected):
    """dL/dh_{t-1} gets nothing back through the gates' W_k: the projected state treated as an output only,
    as if it did not feed the next step."""

    must_fail = BACKWARD

    def _backward(self, x, state0, params, tape, cotangents):
        # the backward pass reads W_k only to carry dL/dz_t back to h_{t-1}
        no_W = {k: np.zeros_like(v) if k.startswith("W_") and k != "W_hr" else v for k, v in params.items()}
        return super()._backward(x, state0, no_W, tape, cotangents)


# -- LSTM with peepholes (lstm-peephole: i, f read P_i * c_{t-1}, P_f * c_{t-1}; o reads P_o * c_t) ----------
class LstmPeepholeOnnxOrderMisread(LSTMPeephole):
    """ONNX's peephole vector P = [P_i, P_o, P_f] split as [P_i, P_f, P_o]: the forget and output gates'
    peepholes swapped (forward and backward alike)."""

    must_fail = EVERYTHING

    @staticmethod
    def swapped(d):
        return {**d, "P_f": d["P_o"], "P_o": d["P_f"]}

    def _forward(self, x, state0, params):
        return super()._forward(x, state0, self.swapped(params))

    def _backward(self, x, state0, params, tape, cotangents):
        return self.swapped(super()._backward(x, state0, self.swapped(params), tape, cotangents))


class LstmPeepholesIgnored(LSTMPeephole):
    """A plain LSTM run for the peephole cell: P_i, P_f, P_o never read, their gradients zero."""

    must_fail = EVERYTHING

    @staticmethod
    def unpeeped(d):
        return {k: np.zeros_like(v) if k.startswith("P_") else v for k, v in d.items()}

    def _forward(self, x, state0, params):
        return super()._forward(x, state0, self.unpeeped(params))

    def _backward(self, x, state0, params, tape, cotangents):
        grads = super()._backward(x, state0, self.unpeeped(params), tape, cotangents)
        return {**grads, **self.unpeeped({k: grads[k] for k in ("P_i", "P_f", "P_o")})}


class LstmPeepholeOutputReadsPreviousCell(LSTMPeephole):
    """The output gate's peephole reads c_{t-1}, as the input and forget gates' do, instead of c_t (the
    backward pass is the correct one's, on this forward's states)."""

    must_fail = EVERYTHING

    def _forward(self, x, state0, params):
        U, W, b = self.stack(params, "U"), self.stack(params, "W"), self.biases(params)
        P_i, P_f, P_o = params["P_i"], params["P_f"], params["P_o"]
        H = W.shape[1]
        h, c = state0["h0"], state0["c0"]
        tape = []
        for t in range(x.shape[0]):
            z = x[t] @ U.T + h @ W.T + b
            z[:, :H] += P_i * c
            z[:, H:2 * H] += P_f * c
            z[:, 3 * H:] += P_o * c
            i, f, g, o = sigmoid(z[:, :H]), sigmoid(z[:, H:2 * H]), np.tanh(z[:, 2 * H:3 * H]), sigmoid(z[:, 3 * H:])
            c_prev, h_prev = c, h
            c = f * c_prev + i * g
            h = o * np.tanh(c)
            tape.append(dict(z=z, i=i, f=f, g=g, o=o, c_prev=c_prev, h_prev=h_prev, c=c, h=h))
        return tape


class LstmPeepholeCarryMissesGatePeepholes(LSTMPeephole):
    """dL/dc_{t-1} = dL/dc_t * f_t only: the paths from c_{t-1} through P_i * c_{t-1} and P_f * c_{t-1} forgotten."""

    must_fail = BACKWARD

    def _backward(self, x, state0, params, tape, cotangents):
        # the backward pass reads P_i and P_f only in the cotangent carried to c_{t-1}
        return super()._backward(x, state0, {**params, "P_i": 0 * params["P_i"], "P_f": 0 * params["P_f"]},
                                 tape, cotangents)


class LstmPeepholeCellMissesOutputPeephole(LSTMPeephole):
    """dL/dc_t misses P_o * dL/dz_o: the path from c_t through the output gate's peephole forgotten."""

    must_fail = BACKWARD

    def _backward(self, x, state0, params, tape, cotangents):
        # the backward pass reads P_o only in dL/dc_t's term through the output gate
        return super()._backward(x, state0, {**params, "P_o": 0 * params["P_o"]}, tape, cotangents)


class LstmPeepholeGradsLastStepOnly(LSTMPeephole):
    """dL/dP_i, dL/dP_f, dL/dP_o taken from the last step only, not accumulated over time."""

    must_fail = ("VJP-P_?", "LOSS-P_?")

    def _backward(self, x, state0, params, tape, cotangents):
        grads = super()._backward(x, state0, params, tape, cotangents)
        # the last step alone: its cotangents are all it receives (nothing is carried into it)
        last = super()._backward(x[-1:], {"h0": tape[-1]["h_prev"], "c0": tape[-1]["c_prev"]}, params, tape[-1:],
                                 {k: v[-1:] for k, v in cotangents.items()})
        return {**grads, **{k: last[k] for k in ("P_i", "P_f", "P_o")}}


# -- MGU mutants (the paper's: n = tanh(U_n x + W_n (f * h) + b_n), h' = (1 - f) h + f n) ------------------
# Each wrong forward comes with the backward pass of the function it does compute, as a self-consistent port
# would: only the comparison with the specification can catch it.
def paper_mix(f, n, h_prev):
    return (1 - f) * h_prev + f * n


def paper_mix_grads(gh, f, n, h_prev):
    return gh * f, gh * (n - h_prev), gh * (1 - f)


def flax_mix(f, n, h_prev):
    return (1 - f) * n + f * h_prev


def flax_mix_grads(gh, f, n, h_prev):
    return gh * (1 - f), gh * (h_prev - n), gh * f


class MguMixingFlipped(MGUPaper):
    """h' = (1 - f) n + f h: flax's mixing in the paper's cell (a port from flax.linen's MGUCell)."""

    must_fail = EVERYTHING

    def blend(self, f, n, h_prev):
        return flax_mix(f, n, h_prev)

    def blend_grads(self, gh, f, n, h_prev):
        return flax_mix_grads(gh, f, n, h_prev)


class MguGateAfterProduct(MGUPaper):
    """n = tanh(U_n x + b_n + f * (W_n h)): f applied after W_n (flax's placement, without b_hn) where the
    paper's cell applies it to h before."""

    must_fail = EVERYTHING

    cell = "mgu"
    flax = True

    def recurrent_bias(self, params):
        return 0

    def blend(self, f, n, h_prev):
        return paper_mix(f, n, h_prev)

    def blend_grads(self, gh, f, n, h_prev):
        return paper_mix_grads(gh, f, n, h_prev)

    def _backward(self, x, state0, params, tape, cotangents):
        grads = super()._backward(x, state0, params, tape, cotangents)
        del grads["b_hn"]
        return grads


class MguGateOrderSwapped(MGUPaper):
    """Gate order read as n, f: the gate's and the candidate's parameters swapped."""

    must_fail = EVERYTHING

    order = "nf"


class MguGateSlopeAtPreActivation(MGUPaper):
    """sigma'(u) taken as u (1 - u) at the pre-activation instead of f (1 - f) at the gate."""

    must_fail = BACKWARD

    def gate_slope(self, y, u):
        return u * (1 - u)


class MguWnGradWithH(MGUPaper):
    """dL/dW_n pairs dL/dpre_n with h_{t-1} instead of f * h_{t-1}."""

    must_fail = ("VJP-W_N", "LOSS-W_N")

    def n_weight_grad(self, d, s):
        return d.T @ s["h_prev"]


class MguCarryMissesGatedPath(MGUPaper):
    """dL/dh_{t-1} loses f * (W_n^T dL/dpre_n): only the direct (1 - f) term and the gate's W_f path carried."""

    must_fail = BACKWARD

    def through_gate(self, dm, f):
        return np.zeros_like(dm)


class MguGateGradFromMixOnly(MGUPaper):
    """dL/df from the mixing only: the gate's second role, resetting h before W_n, forgotten."""

    must_fail = BACKWARD

    def gate_through_candidate(self, d, s):
        return np.zeros_like(d)


class MguGateBiasLastStepOnly(MGUPaper):
    """dL/db_f taken from the last step only, not accumulated over time."""

    must_fail = ("VJP-B_F", "LOSS-B_F")

    def _backward(self, x, state0, params, tape, cotangents):
        grads = super()._backward(x, state0, params, tape, cotangents)
        # the last step alone: its cotangents are all it receives (nothing is carried into it)
        last = super()._backward(x[-1:], {"h0": tape[-1]["h_prev"]}, params, tape[-1:],
                                 {k: v[-1:] for k, v in cotangents.items()})
        return {**grads, "b_f": last["b_f"]}


# -- MGU mutants (flax.linen's: n = tanh(U_n x + b_n + f * (W_n h + b_hn)), h' = (1 - f) n + f h) -----------
class MguFlaxMixingFlipped(MGUFlax):
    """h' = (1 - f) h + f n: the paper's mixing in flax's cell."""

    must_fail = EVERYTHING

    def blend(self, f, n, h_prev):
        return paper_mix(f, n, h_prev)

    def blend_grads(self, gh, f, n, h_prev):
        return paper_mix_grads(gh, f, n, h_prev)


class MguFlaxGateBeforeProduct(MGUFlax):
    """n = tanh(U_n x + W_n (f * h) + b_n + b_hn): the paper's placement of f, before W_n, with b_hn folded
    into b_n (the reset-before/reset-after confusion of the GRUs, in the MGU)."""

    must_fail = EVERYTHING

    cell = "mgu-flax"
    flax = False

    def input_biases(self, params):
        return self.stack({**params, "b_n": params["b_n"] + params["b_hn"]}, "b")

    def blend(self, f, n, h_prev):
        return flax_mix(f, n, h_prev)

    def blend_grads(self, gh, f, n, h_prev):
        return flax_mix_grads(gh, f, n, h_prev)

    def _backward(self, x, state0, params, tape, cotangents):
        grads = super()._backward(x, state0, params, tape, cotangents)
        grads["b_hn"] = grads["b_n"].copy()
        return grads


class MguFlaxBhnOutsideGate(MGUFlax):
    """n = tanh(U_n x + b_n + b_hn + f * (W_n h)): b_hn added outside the gate's product."""

    must_fail = EVERYTHING

    def input_biases(self, params):
        return self.stack({**params, "b_n": params["b_n"] + params["b_hn"]}, "b")

    def recurrent_bias(self, params):
        return 0

    def _backward(self, x, state0, params, tape, cotangents):
        grads = super()._backward(x, state0, params, tape, cotangents)
        grads["b_hn"] = grads["b_n"].copy()
        return grads


class MguFlaxIgnoresBhn(MGUFlax):
    """b_hn dropped (the second bias of a two-bias framework ignored), its gradient still returned."""

    must_fail = EVERYTHING

    def recurrent_bias(self, params):
        return 0


class MguFlaxWnGradWithoutGate(MGUFlax):
    """dL/dW_n computed from dL/dpre_n, not dL/dm = f * dL/dpre_n."""

    must_fail = ("VJP-W_N", "LOSS-W_N")

    def n_weight_grad(self, d, s):
        return (d / np.where(s["f"] == 0, 1, s["f"])).T @ s["h_prev"]


class MguFlaxCarryMissesRecurrentPath(MGUFlax):
    """dL/dh_{t-1} loses W_n^T (f * dL/dpre_n): the candidate's recurrent path not carried back."""

    must_fail = BACKWARD

    def through_recurrent(self, dm, W_n):
        return np.zeros_like(dm)


class MguFlaxCarryMissesDirectPath(MGUFlax):
    """dL/dh_{t-1} loses the direct term f * dL/dh_t."""

    must_fail = BACKWARD

    def blend_grads(self, gh, f, n, h_prev):
        gn, gf, _ = super().blend_grads(gh, f, n, h_prev)
        return gn, gf, np.zeros_like(gh)


class MguFlaxGateGradFromMixOnly(MGUFlax):
    """dL/df from the mixing only: the gate's product with W_n h + b_hn forgotten."""

    must_fail = BACKWARD

    def gate_through_candidate(self, d, s):
        return np.zeros_like(d)


class MguFlaxBhnGradLastStepOnly(MGUFlax):
    """dL/db_hn taken from the last step only, not accumulated over time."""

    must_fail = ("VJP-B_HN", "LOSS-B_HN")

    def _backward(self, x, state0, params, tape, cotangents):
        grads = super()._backward(x, state0, params, tape, cotangents)
        last = super()._backward(x[-1:], {"h0": tape[-1]["h_prev"]}, params, tape[-1:],
                                 {k: v[-1:] for k, v in cotangents.items()})
        return {**grads, "b_hn": last["b_hn"]}


# -- LSTM with coupled gates (lstm-coupled, ONNX's input_forget=1: f = 1 - i, no forget-gate parameters) --------
class LstmCoupledForgetIsInput(LSTMCoupled):
    """The coupling's sign lost: f = i instead of 1 - i (forward and backward alike)."""

    must_fail = EVERYTHING

    def forget(self, i):
        return i

    def input_slope(self, gc, s, H):
        return gc * (s["g"] + s["c_prev"]) * self.gate_slope(s["i"], s["z"][:, :H])


class LstmCoupledForgetOpen(LSTMCoupled):
    """No forget gate at all: f = 1, c_t = c_{t-1} + i g (input_forget read as 'no forget gate')."""

    must_fail = EVERYTHING

    def forget(self, i):
        return np.ones_like(i)

    def input_slope(self, gc, s, H):
        return gc * s["g"] * self.gate_slope(s["i"], s["z"][:, :H])


class LstmCoupledInputSlopeMissesForgetPath(LSTMCoupled):
    """dL/dz_i = dL/dc g sigma'(z_i), the plain LSTM's: i's path through f = 1 - i forgotten."""

    must_fail = BACKWARD

    def input_slope(self, gc, s, H):
        return gc * s["g"] * self.gate_slope(s["i"], s["z"][:, :H])


class LstmCoupledCarryThroughInput(LSTMCoupled):
    """dL/dc_{t-1} = dL/dc_t i instead of dL/dc_t (1 - i): the carry reads the input gate for the forget gate."""

    must_fail = BACKWARD

    def carry_cell(self, gc, f):
        return gc * (1 - f)


class LstmCoupledGateOrderMisread(LSTMCoupled):
    """Gate order read as g, i, o: the input gate's and the candidate's parameters swapped."""

    must_fail = EVERYTHING

    order = "gio"


class LstmCoupledOutputInputSwapped(LSTMCoupled):
    """Gate order read as o, g, i: the input and output gates' parameters swapped."""

    must_fail = EVERYTHING

    order = "ogi"


# the plain LSTM's seam mutants, on the coupled cell (its model keeps every seam of the LSTM's)
class LstmCoupledNoTanhOnCell(LstmNoTanhOnCell, LSTMCoupled):
    """h = o * c instead of o * tanh(c), in the coupled cell."""


class LstmCoupledDropsC0Gradient(LstmDropsC0Gradient, LSTMCoupled):
    """dL/dc0 returned as zeros, in the coupled cell."""


class LstmCoupledTruncatedThroughCell(LstmTruncatedThroughCell, LSTMCoupled):
    """BPTT through c cut (dL/dc_{t-1} gets nothing from dL/dc_t), in the coupled cell."""


class LstmCoupledGateSlopeAtPreActivation(LstmGateSlopeAtPreActivation, LSTMCoupled):
    """sigma'(u) taken as u (1 - u) at the pre-activation, in the coupled cell."""


class LstmCoupledIgnoresCandidateBias(LstmIgnoresCandidateBias, LSTMCoupled):
    """b_g never added, in the coupled cell."""


class LstmCoupledCellCotangentWithoutOutputGate(LstmCellCotangentWithoutOutputGate, LSTMCoupled):
    """dL/dc_t from h_t taken as gh (1 - tanh^2 c), the output gate forgotten, in the coupled cell."""


class LstmCoupledRecurrentGradWithCurrentState(LstmRecurrentGradWithCurrentState, LSTMCoupled):
    """dL/dW pairs the step's cotangent with h_t instead of h_{t-1}, in the coupled cell."""


class LstmCoupledSigmoidCandidate(LstmSigmoidCandidate, LSTMCoupled):
    """The candidate g squashed by sigma instead of tanh, in the coupled cell."""


class LstmCoupledLastStepSkipped(LstmLastStepSkipped, LSTMCoupled):
    """The backward loop starts at T - 2, in the coupled cell."""


class LstmCoupledTanhSlopeWithoutSquare(LstmTanhSlopeWithoutSquare, LSTMCoupled):
    """tanh'(g) taken as 1 - g instead of 1 - g^2, in the coupled cell."""


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
    "lstm-proj": [LstmProjTfKernelReshaped, LstmProjUnsquashedCell, LstmProjGradWithoutOutputGate,
                  LstmProjGradOffByOne, LstmProjGradFromGivenCotangentsOnly, LstmProjRecurrenceNotCarried],
    "lstm-peephole": [LstmPeepholeOnnxOrderMisread, LstmPeepholesIgnored, LstmPeepholeOutputReadsPreviousCell,
                      LstmPeepholeCarryMissesGatePeepholes, LstmPeepholeCellMissesOutputPeephole,
                      LstmPeepholeGradsLastStepOnly],
    "lstm-coupled": [LstmCoupledForgetIsInput, LstmCoupledForgetOpen, LstmCoupledInputSlopeMissesForgetPath,
                     LstmCoupledCarryThroughInput, LstmCoupledGateOrderMisread, LstmCoupledOutputInputSwapped,
                     LstmCoupledNoTanhOnCell, LstmCoupledDropsC0Gradient, LstmCoupledTruncatedThroughCell,
                     LstmCoupledGateSlopeAtPreActivation, LstmCoupledIgnoresCandidateBias,
                     LstmCoupledCellCotangentWithoutOutputGate, LstmCoupledRecurrentGradWithCurrentState,
                     LstmCoupledSigmoidCandidate, LstmCoupledLastStepSkipped, LstmCoupledTanhSlopeWithoutSquare],
    "mgu": [MguMixingFlipped, MguGateAfterProduct, MguGateOrderSwapped, MguGateSlopeAtPreActivation, MguWnGradWithH,
            MguCarryMissesGatedPath, MguGateGradFromMixOnly, MguGateBiasLastStepOnly],
    "mgu-flax": [MguFlaxMixingFlipped, MguFlaxGateBeforeProduct, MguFlaxBhnOutsideGate, MguFlaxIgnoresBhn,
                 MguFlaxWnGradWithoutGate, MguFlaxCarryMissesRecurrentPath, MguFlaxCarryMissesDirectPath,
                 MguFlaxGateGradFromMixOnly, MguFlaxBhnGradLastStepOnly],
}
