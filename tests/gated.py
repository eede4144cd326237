"""Correct NumPy LSTMs, GRUs and MGUs (written for these tests, by hand, independently of the derivation).

Each model keeps its gates stacked along columns in ``order`` and reads the canonical per-gate
parameters into that layout; each small method is a seam where tests/mutants_gated.py plants one bug.
Backward passes are the textbook ones, typed here from the equations of issue "LSTM and both GRUs
through the whole suite" (and, for the MGUs, of issue 33), never from the engine's output.
"""

from __future__ import annotations

import numpy as np


def sigmoid(u):
    return 1 / (1 + np.exp(-u))


class Gated:
    """What the three cells share: the contract, stacked parameters, the head and the loss."""

    dtypes = ("float32", "float64")
    activations = ("tanh",)
    activation = "tanh"
    order = ""

    def stack(self, params, what):
        return np.concatenate([params[f"{what}_{g}"] for g in self.order])

    def unstack(self, stacked, what, hidden):
        return {f"{what}_{g}": stacked[n * hidden:(n + 1) * hidden] for n, g in enumerate(self.order)}

    def gate_slope(self, y, u):
        """sigma'(u) from its output y."""
        return y * (1 - y)

    def tanh_slope(self, y, u):
        return 1 - y * y

    def steps_back(self, T):
        return range(T - 1, -1, -1)

    def forward(self, x, state0, params):
        tape = self._forward(x, state0, params)
        return {k: np.stack([step[k] for step in tape]) for k in self.outputs}

    def vjp(self, x, state0, params, cotangents):
        tape = self._forward(x, state0, params)
        return self._backward(x, state0, params, tape, cotangents)

    def loss(self, x, state0, params, targets):
        tape = self._forward(x, state0, params)
        hs = np.stack([step["h"] for step in tape])
        T, B, H = hs.shape
        V, c = params["V"], params["c"]
        a = hs.reshape(T * B, H) @ V.T + c
        a = a - a.max(axis=1, keepdims=True)
        log_p = a - np.log(np.exp(a).sum(axis=1, keepdims=True))
        y = targets.reshape(-1)
        e = np.exp(log_p)
        e[np.arange(T * B), y] -= 1
        grads = self._backward(x, state0, params, tape, {"h": (e @ V).reshape(T, B, H)})
        grads.update(V=e.T @ hs.reshape(T * B, H), c=e.sum(axis=0))
        return float(-log_p[np.arange(T * B), y].sum()), grads


class LSTM(Gated):
    cell = "lstm"
    order = "ifgo"
    outputs = ("h", "c")

    def biases(self, params):
        return self.stack(params, "b")

    def squash(self, z, H):
        i, f, g, o = (z[:, n * H:(n + 1) * H] for n in range(4))
        return sigmoid(i), sigmoid(f), self.candidate(g), sigmoid(o)

    def candidate(self, u):
        return np.tanh(u)

    def new_cell(self, f, c_prev, i, g):
        return f * c_prev + i * g

    def squash_cell(self, c):
        return np.tanh(c)

    def carry_cell(self, gc, f):
        """dL/dc_{t-1} through the cell state: gc * f."""
        return gc * f

    def cell_cotangent(self, gh, o, tc, gc_next, gc_given):
        return gc_given + gc_next + gh * o * (1 - tc * tc)

    def _forward(self, x, state0, params):
        U, W, b = self.stack(params, "U"), self.stack(params, "W"), self.biases(params)
        H = W.shape[1]
        h, c = state0["h0"], state0["c0"]
        tape = []
        for t in range(x.shape[0]):
            z = x[t] @ U.T + h @ W.T + b
            i, f, g, o = self.squash(z, H)
            c_prev, h_prev = c, h
            c = self.new_cell(f, c_prev, i, g)
            h = o * self.squash_cell(c)
            tape.append(dict(z=z, i=i, f=f, g=g, o=o, c_prev=c_prev, h_prev=h_prev, c=c, h=h))
        return tape

    def _backward(self, x, state0, params, tape, cotangents):
        U, W = self.stack(params, "U"), self.stack(params, "W")
        H = W.shape[1]
        gU, gW, gb, gx = np.zeros_like(U), np.zeros_like(W), np.zeros(U.shape[0], x.dtype), np.zeros_like(x)
        gh_next, gc_next = np.zeros_like(state0["h0"]), np.zeros_like(state0["c0"])
        for t in self.steps_back(x.shape[0]):
            s = tape[t]
            gh = cotangents["h"][t] + gh_next
            tc = np.tanh(s["c"])
            gc = self.cell_cotangent(gh, s["o"], tc, gc_next, cotangents["c"][t] if "c" in cotangents else 0)
            dz = self.gate_cotangents(gh, gc, tc, s, H)
            gU += dz.T @ x[t]
            gW += dz.T @ self.previous_h(tape, state0, t)
            gb += dz.sum(axis=0)
            gx[t] = dz @ U
            gh_next = dz @ W
            gc_next = self.carry_cell(gc, s["f"])
        grads = {"x": gx, "h0": gh_next, "c0": self.initial_cell_grad(gc_next)}
        for what, value in (("U", gU), ("W", gW), ("b", gb)):
            grads.update(self.unstack(value, what, H))
        return grads

    def gate_cotangents(self, gh, gc, tc, s, H):
        """dz_t stacked in ``order`` from dL/dh_t (gh), dL/dc_t (gc) and tanh(c_t) (tc): dz_i = gc g sigma'(z_i),
        dz_f = gc c_{t-1} sigma'(z_f), dz_g = gc i tanh'(z_g), dz_o = gh tanh(c_t) sigma'(z_o)."""
        return np.concatenate([gc * s["g"] * self.gate_slope(s["i"], s["z"][:, :H]),
                               gc * s["c_prev"] * self.gate_slope(s["f"], s["z"][:, H:2 * H]),
                               gc * s["i"] * self.tanh_slope(s["g"], s["z"][:, 2 * H:3 * H]),
                               gh * tc * self.gate_slope(s["o"], s["z"][:, 3 * H:])], axis=1)

    def previous_h(self, tape, state0, t):
        return tape[t]["h_prev"]

    def initial_cell_grad(self, gc):
        return gc


class LSTMProjected(LSTM):
    """PyTorch's proj_size: h_t = W_hr (o * tanh(c_t)), (P,), read back by the gates (W_k is (H, P))."""

    cell = "lstm-proj"

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
            r = o * np.tanh(c)
            h = r @ W_hr.T
            tape.append(dict(z=z, i=i, f=f, g=g, o=o, c_prev=c_prev, h_prev=h_prev, c=c, r=r, h=h))
        return tape

    def _backward(self, x, state0, params, tape, cotangents):
        U, W, W_hr = self.stack(params, "U"), self.stack(params, "W"), params["W_hr"]
        H = U.shape[0] // 4
        gU, gW, gb, gx = np.zeros_like(U), np.zeros_like(W), np.zeros(4 * H, x.dtype), np.zeros_like(x)
        g_hr = np.zeros_like(W_hr)
        gh_next, gc_next = np.zeros_like(state0["h0"]), np.zeros_like(state0["c0"])
        for t in range(x.shape[0] - 1, -1, -1):
            s = tape[t]
            gh = cotangents["h"][t] + gh_next
            g_hr += gh.T @ s["r"]
            gr = gh @ W_hr  # dL/d(o * tanh(c))
            tc = np.tanh(s["c"])
            gc = (cotangents["c"][t] if "c" in cotangents else 0) + gc_next + gr * s["o"] * (1 - tc * tc)
            dz = np.concatenate([gc * s["g"] * s["i"] * (1 - s["i"]), gc * s["c_prev"] * s["f"] * (1 - s["f"]),
                                 gc * s["i"] * (1 - s["g"] ** 2), gr * tc * s["o"] * (1 - s["o"])], axis=1)
            gU += dz.T @ x[t]
            gW += dz.T @ s["h_prev"]
            gb += dz.sum(axis=0)
            gx[t] = dz @ U
            gh_next = dz @ W
            gc_next = gc * s["f"]
        grads = {"x": gx, "h0": gh_next, "c0": gc_next, "W_hr": g_hr}
        for what, value in (("U", gU), ("W", gW), ("b", gb)):
            grads.update(self.unstack(value, what, H))
        return grads


class LSTMPeephole(LSTM):
    """ONNX's peepholes: i, f read P_i * c_{t-1}, P_f * c_{t-1}; o reads P_o * c_t."""

    cell = "lstm-peephole"

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
            i, f, g = sigmoid(z[:, :H]), sigmoid(z[:, H:2 * H]), np.tanh(z[:, 2 * H:3 * H])
            c_prev, h_prev = c, h
            c = f * c_prev + i * g
            z[:, 3 * H:] += P_o * c
            o = sigmoid(z[:, 3 * H:])
            h = o * np.tanh(c)
            tape.append(dict(z=z, i=i, f=f, g=g, o=o, c_prev=c_prev, h_prev=h_prev, c=c, h=h))
        return tape

    def _backward(self, x, state0, params, tape, cotangents):
        U, W = self.stack(params, "U"), self.stack(params, "W")
        P_i, P_f, P_o = params["P_i"], params["P_f"], params["P_o"]
        H = W.shape[1]
        gU, gW, gb, gx = np.zeros_like(U), np.zeros_like(W), np.zeros(4 * H, x.dtype), np.zeros_like(x)
        gP = {k: np.zeros(H, x.dtype) for k in ("P_i", "P_f", "P_o")}
        gh_next, gc_next = np.zeros_like(state0["h0"]), np.zeros_like(state0["c0"])
        for t in range(x.shape[0] - 1, -1, -1):
            s = tape[t]
            gh = cotangents["h"][t] + gh_next
            tc = np.tanh(s["c"])
            do = gh * tc * s["o"] * (1 - s["o"])  # dL/dz_o
            gc = (cotangents["c"][t] if "c" in cotangents else 0) + gc_next + gh * s["o"] * (1 - tc * tc) + do * P_o
            di = gc * s["g"] * s["i"] * (1 - s["i"])
            df = gc * s["c_prev"] * s["f"] * (1 - s["f"])
            dg = gc * s["i"] * (1 - s["g"] ** 2)
            dz = np.concatenate([di, df, dg, do], axis=1)
            gP["P_i"] += (di * s["c_prev"]).sum(0)
            gP["P_f"] += (df * s["c_prev"]).sum(0)
            gP["P_o"] += (do * s["c"]).sum(0)
            gU += dz.T @ x[t]
            gW += dz.T @ s["h_prev"]
            gb += dz.sum(axis=0)
            gx[t] = dz @ U
            gh_next = dz @ W
            gc_next = gc * s["f"] + di * P_i + df * P_f
        grads = {"x": gx, "h0": gh_next, "c0": gc_next, **gP}
        for what, value in (("U", gU), ("W", gW), ("b", gb)):
            grads.update(self.unstack(value, what, H))
        return grads


class LSTMCoupled(LSTM):
    """ONNX's input_forget=1: gates i, g, o stacked, no forget-gate parameters, f = 1 - i."""

    cell = "lstm-coupled"
    order = "igo"

    def squash(self, z, H):
        i, g, o = (z[:, n * H:(n + 1) * H] for n in range(3))
        i = sigmoid(i)
        return i, self.forget(i), self.candidate(g), sigmoid(o)

    def forget(self, i):
        return 1 - i

    def input_slope(self, gc, s, H):
        """dL/dz_i: i reaches c_t through i g and through f = 1 - i, so dL/di = gc (g - c_{t-1})."""
        return gc * (s["g"] - s["c_prev"]) * self.gate_slope(s["i"], s["z"][:, :H])

    def gate_cotangents(self, gh, gc, tc, s, H):
        """dz_t stacked i, g, o: the LSTM's, dz_i by input_slope."""
        return np.concatenate([self.input_slope(gc, s, H),
                               gc * s["i"] * self.tanh_slope(s["g"], s["z"][:, H:2 * H]),
                               gh * tc * self.gate_slope(s["o"], s["z"][:, 2 * H:])], axis=1)


class GRU(Gated):
    """Both GRUs: ``reset_after`` says where the reset gate acts."""

    order = "rzn"
    outputs = ("h",)
    reset_after = True

    @property
    def cell(self) -> str:
        return "gru-reset-after" if self.reset_after else "gru-reset-before"

    def input_biases(self, params):
        return self.stack(params, "b")

    def recurrent_bias(self, params):
        return params["b_hn"] if self.reset_after else 0

    def update(self, u):
        return sigmoid(u)

    def blend(self, z, n, h_prev):
        return (1 - z) * n + z * h_prev

    def blend_grads(self, gh, z, n, h_prev):
        """(dL/dn, dL/dz, dL/dh_prev direct) of blend."""
        return gh * (1 - z), gh * (h_prev - n), gh * z

    def reset_after_product(self, r, m):
        return r * m

    def reset_before_product(self, r, h_prev):
        return r * h_prev

    def _forward(self, x, state0, params):
        U, b = self.stack(params, "U"), self.input_biases(params)
        W_r, W_z, W_n = (params[f"W_{g}"] for g in self.order)
        H = W_n.shape[0]
        h = state0["h0"]
        tape = []
        for t in range(x.shape[0]):
            zx = x[t] @ U.T + b
            r = sigmoid(zx[:, :H] + h @ W_r.T)
            z = self.update(zx[:, H:2 * H] + h @ W_z.T)
            if self.reset_after:
                m = h @ W_n.T + self.recurrent_bias(params)
                pre_n = zx[:, 2 * H:] + self.reset_after_product(r, m)
            else:
                m = self.reset_before_product(r, h)
                pre_n = zx[:, 2 * H:] + m @ W_n.T
            n = np.tanh(pre_n)
            h_prev, h = h, self.blend(z, n, h)
            tape.append(dict(r=r, z=z, n=n, m=m, pre_n=pre_n, h_prev=h_prev, h=h))
        return tape

    def _backward(self, x, state0, params, tape, cotangents):
        U = self.stack(params, "U")
        W_r, W_z, W_n = (params[f"W_{g}"] for g in self.order)
        H = W_n.shape[0]
        gU, gb, gx = np.zeros_like(U), np.zeros(U.shape[0], x.dtype), np.zeros_like(x)
        gW = {g: np.zeros_like(W_n) for g in self.order}
        g_bhn = np.zeros(H, x.dtype)
        gh_next = np.zeros_like(state0["h0"])
        for t in self.steps_back(x.shape[0]):
            s = tape[t]
            gh = cotangents["h"][t] + gh_next
            gn, gz, gh_prev = self.blend_grads(gh, s["z"], s["n"], s["h_prev"])
            dzn = gn * self.tanh_slope(s["n"], s["pre_n"])
            if self.reset_after:
                dm = dzn * s["r"]
                gr = dzn * s["m"]
                gW["n"] += self.n_weight_grad(dm, s)
                g_bhn += dm.sum(axis=0)
                gh_prev = gh_prev + dm @ W_n
            else:
                dm = dzn @ W_n
                gr = dm * s["h_prev"]
                gW["n"] += self.n_weight_grad(dzn, s)
                gh_prev = gh_prev + self.through_reset(dm, s["r"])
            dzr = gr * self.gate_slope(s["r"], None)
            dzz = gz * self.gate_slope(s["z"], None)
            dz = np.concatenate([dzr, dzz, dzn], axis=1)
            gU += dz.T @ x[t]
            gb += dz.sum(axis=0)
            gW["r"] += dzr.T @ s["h_prev"]
            gW["z"] += dzz.T @ s["h_prev"]
            gx[t] = dz @ U
            gh_next = self.carry(gh_prev + dzr @ W_r + dzz @ W_z)
        grads = {"x": gx, "h0": gh_next}
        grads.update(self.unstack(gU, "U", H))
        grads.update(self.unstack(gb, "b", H))
        grads.update({f"W_{g}": gW[g] for g in self.order})
        if self.reset_after:
            grads["b_hn"] = g_bhn
        return grads

    def n_weight_grad(self, d, s):
        """dL/dW_n of one step: (dL/dm) h_prev^T after the product, (dL/dpre_n) (r * h_prev)^T before."""
        return d.T @ (s["h_prev"] if self.reset_after else s["m"])

    def through_reset(self, dm, r):
        return dm * r

    def carry(self, gh_prev):
        return gh_prev


class GRUResetAfter(GRU):
    reset_after = True


class GRUResetBefore(GRU):
    reset_after = False


class MGU(Gated):
    """Both minimal gated units: ``flax`` says where the gate f acts and which way it mixes.

    mgu:      f = sigma(U_f x + W_f h + b_f),  n = tanh(U_n x + W_n (f * h) + b_n),   h' = (1 - f) h + f n
    mgu-flax: f as above,  n = tanh(U_n x + b_n + f * (W_n h + b_hn)),                 h' = (1 - f) n + f h

    Backward, with g = dL/dh' (given plus carried): in mgu, dL/dn = g f, dL/df = g (n - h) + (W_n^T dzn) h,
    dL/dh = g (1 - f) + f (W_n^T dzn) + W_f^T dzf; in mgu-flax, dL/dn = g (1 - f), dL/df = g (h - n) + dzn m
    (m = W_n h + b_hn), dL/dh = g f + W_n^T (f dzn) + W_f^T dzf; dzn = dL/dn (1 - n^2), dzf = dL/df f (1 - f).
    """

    order = "fn"
    outputs = ("h",)
    flax = False

    @property
    def cell(self) -> str:
        return "mgu-flax" if self.flax else "mgu"

    def input_biases(self, params):
        return self.stack(params, "b")

    def recurrent_bias(self, params):
        return params["b_hn"] if self.flax else 0

    def blend(self, f, n, h_prev):
        return (1 - f) * n + f * h_prev if self.flax else (1 - f) * h_prev + f * n

    def blend_grads(self, gh, f, n, h_prev):
        """(dL/dn, dL/df, dL/dh_prev direct) of blend."""
        if self.flax:
            return gh * (1 - f), gh * (h_prev - n), gh * f
        return gh * f, gh * (n - h_prev), gh * (1 - f)

    def _forward(self, x, state0, params):
        U, b = self.stack(params, "U"), self.input_biases(params)
        W_f, W_n = params["W_f"], params["W_n"]
        H = W_n.shape[0]
        h = state0["h0"]
        tape = []
        for t in range(x.shape[0]):
            zx = x[t] @ U.T + b
            pre_f = zx[:, :H] + h @ W_f.T
            f = sigmoid(pre_f)
            if self.flax:
                m = h @ W_n.T + self.recurrent_bias(params)  # the recurrent product, before the gate
                pre_n = zx[:, H:] + f * m
            else:
                m = f * h  # the gated state, before W_n
                pre_n = zx[:, H:] + m @ W_n.T
            n = np.tanh(pre_n)
            h_prev, h = h, self.blend(f, n, h)
            tape.append(dict(pre_f=pre_f, f=f, n=n, m=m, pre_n=pre_n, h_prev=h_prev, h=h))
        return tape

    def _backward(self, x, state0, params, tape, cotangents):
        U, W_f, W_n = self.stack(params, "U"), params["W_f"], params["W_n"]
        H = W_n.shape[0]
        gU, gb, gx = np.zeros_like(U), np.zeros(U.shape[0], x.dtype), np.zeros_like(x)
        gW_f, gW_n = np.zeros_like(W_f), np.zeros_like(W_n)
        g_bhn = np.zeros(H, x.dtype)
        gh_next = np.zeros_like(state0["h0"])
        for t in self.steps_back(x.shape[0]):
            s = tape[t]
            gh = cotangents["h"][t] + gh_next
            gn, gf, gh_prev = self.blend_grads(gh, s["f"], s["n"], s["h_prev"])
            dzn = gn * self.tanh_slope(s["n"], s["pre_n"])
            if self.flax:
                dm = dzn * s["f"]  # dL/d(W_n h + b_hn)
                gf = gf + self.gate_through_candidate(dzn, s)
                gW_n += self.n_weight_grad(dm, s)
                g_bhn += dm.sum(axis=0)
                gh_prev = gh_prev + self.through_recurrent(dm, W_n)
            else:
                dm = dzn @ W_n  # dL/d(f * h)
                gf = gf + self.gate_through_candidate(dm, s)
                gW_n += self.n_weight_grad(dzn, s)
                gh_prev = gh_prev + self.through_gate(dm, s["f"])
            dzf = gf * self.gate_slope(s["f"], s["pre_f"])
            dz = np.concatenate([dzf, dzn], axis=1)
            gU += dz.T @ x[t]
            gb += dz.sum(axis=0)
            gW_f += dzf.T @ s["h_prev"]
            gx[t] = dz @ U
            gh_next = self.carry(gh_prev + dzf @ W_f)
        grads = {"x": gx, "h0": gh_next, "W_f": gW_f, "W_n": gW_n}
        grads.update(self.unstack(gU, "U", H))
        grads.update(self.unstack(gb, "b", H))
        if self.flax:
            grads["b_hn"] = g_bhn
        return grads

    def n_weight_grad(self, d, s):
        """dL/dW_n of one step: (dL/dm) h_prev^T in flax's form, (dL/dpre_n) (f * h_prev)^T in the paper's."""
        return d.T @ (s["h_prev"] if self.flax else s["m"])

    def gate_through_candidate(self, d, s):
        """dL/df through n: dL/dpre_n * m in flax's form, dL/d(f * h) * h_prev in the paper's."""
        return d * (s["m"] if self.flax else s["h_prev"])

    def through_gate(self, dm, f):
        """The paper's dL/dh_prev through f * h_prev: dm * f."""
        return dm * f

    def through_recurrent(self, dm, W_n):
        """flax's dL/dh_prev through W_n h_prev: dm W_n (row vectors)."""
        return dm @ W_n

    def carry(self, gh_prev):
        return gh_prev


class MGUPaper(MGU):
    flax = False


class MGUFlax(MGU):
    flax = True


#: the correct model of every gated cell, by its catalogue name (the mutants' and the variants' references)
MODELS = {"lstm": LSTM, "gru-reset-after": GRUResetAfter, "gru-reset-before": GRUResetBefore,
          "lstm-proj": LSTMProjected, "lstm-peephole": LSTMPeephole, "mgu": MGUPaper, "mgu-flax": MGUFlax,
          "lstm-coupled": LSTMCoupled}
