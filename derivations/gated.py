"""The gated cells: LSTM and the two GRUs, each forward step written once (everything else is derived).

Per-gate parameters, named after the notes' U (input), W (recurrent), b; sigma is the logistic function.

    lstm:             i = sigma(U_i x + W_i h + b_i),  f = sigma(U_f x + W_f h + b_f),
                      g = tanh(U_g x + W_g h + b_g),    o = sigma(U_o x + W_o h + b_o),
                      c' = f * c + i * g,               h' = o * tanh(c')
    lstm-coupled:     as lstm without U_f, W_f, b_f: f = 1 - i (ONNX's input_forget=1)
    gru-reset-after:  r = sigma(U_r x + W_r h + b_r),  z = sigma(U_z x + W_z h + b_z),
                      n = tanh(U_n x + b_n + r * (W_n h + b_hn)),   h' = (1 - z) * n + z * h
    gru-reset-before: as above with n = tanh(U_n x + W_n (r * h) + b_n), no b_hn
    mgu:              f = sigma(U_f x + W_f h + b_f),  n = tanh(U_n x + W_n (f * h) + b_n),
                      h' = (1 - f) * h + f * n   (the minimal gated unit, Zhou et al. 2016)
    mgu-flax:         f as above,  n = tanh(U_n x + b_n + f * (W_n h + b_hn)),  h' = (1 - f) * n + f * h
                      (what flax.linen's MGUCell computes: a GRU whose one gate is both reset and update)

Quantity names are short and distinct from the head's (``C`` is the LSTM's cell state, whose
contract name is ``c``; the head's ``c`` is its output bias).
"""

from __future__ import annotations

import sympy as sp

from rnnspec import catalogue
from rnnspec.derivations.cells import SIZES, Cell, Gate, sigmoid
from rnnspec.derivations.heads import make_head
from rnnspec.derivations.tensors import INPUT, INTERMEDIATE, PARAM, STATE_IN, STATE_OUT, Equation, Var, indices


def _gate_params(gates: str, state: str = "H") -> tuple[dict[str, Var], dict[str, Var], dict[str, Var]]:
    """U_k (H, I), W_k (H, size of the recurrent state), b_k (H,) for each gate k."""
    U = {g: Var(f"U_{g}", ("H", "I"), PARAM, f"U_{{{g}}}") for g in gates}
    W = {g: Var(f"W_{g}", ("H", state), PARAM, f"W_{{{g}}}") for g in gates}
    b = {g: Var(f"b_{g}", ("H",), PARAM, f"b_{{{g}}}") for g in gates}
    return U, W, b


def _pre(name: str, gate: str) -> Var:
    return Var(name, ("H",), INTERMEDIATE, rf"\hat{{{gate}}}_{{t}}")


def lstm(head: str | None = "softmax-ce", projection: bool = False, peephole: bool = False,
         coupled: bool = False) -> Cell:
    """The LSTM, gates in the order i, f, g, o (PyTorch's). With ``projection``, PyTorch's ``proj_size``:
    h_t = W_hr (o * tanh(c_t)), of size P, which the gates read back (W_k is (H, P)). With ``peephole``,
    ONNX's P: i and f also read P_i * c_{t-1}, P_f * c_{t-1}, and o reads P_o * c_t (the new cell state).
    With ``coupled``, ONNX's ``input_forget=1``: no forget-gate parameters, f = 1 - i (the input gate's value
    after its logistic function; ONNX Runtime computes exactly this, pf = 1 - pi), so c_t = (1 - i) c_{t-1} + i g."""
    i, j, k = indices("i j k")
    state = "P" if projection else "H"
    name = "lstm-proj" if projection else "lstm-peephole" if peephole else "lstm-coupled" if coupled else "lstm"
    order = catalogue.cell(name).gates
    U, W, b = _gate_params(order, state)
    x = Var("x", ("I",), INPUT, "x_t")
    h_prev = Var("h_prev", (state,), STATE_IN, "h_{t-1}")
    c_prev = Var("C_prev", ("H",), STATE_IN, "c_{t-1}", contract="c_prev")
    h = Var("h", (state,), STATE_OUT, "h_t")
    c = Var("C", ("H",), STATE_OUT, "c_t", contract="c")
    pre = {g: _pre(f"z{g}", g) for g in order}
    gate = {g: Var(f"{g}g", ("H",), INTERMEDIATE, f"{g}_{{t}}") for g in catalogue.cell("lstm").gates}
    squash = {"i": sigmoid, "f": sigmoid, "g": sp.tanh, "o": sigmoid}
    peep = {g: Var(f"P_{g}", ("H",), PARAM, f"P_{{{g}}}") for g in "ifo"} if peephole else {}
    reads = {"i": c_prev, "f": c_prev, "o": c}  # the cell state each peephole looks at
    params = [*U.values(), *W.values(), *b.values(), *peep.values()]
    step = []
    new_cell = Equation(c, (i,), gate["f"][i] * c_prev[i] + gate["i"][i] * gate["g"][i])
    for g in order:
        if g == "o" and peephole:  # the output gate's peephole reads the new cell state: c_t first
            step.append(new_cell)
        extra = peep[g][i] * reads[g][i] if g in peep else 0
        step.append(Equation(pre[g], (i,), U[g][i, j] * x[j] + W[g][i, k] * h_prev[k] + b[g][i] + extra))
        step.append(Equation(gate[g], (i,), squash[g](pre[g][i])))
        if coupled and g == "i":  # the forget gate is the input gate's complement, not a gate of its own
            step.append(Equation(gate["f"], (i,), 1 - gate["i"][i]))
    if not peephole:
        step.append(new_cell)
    if projection:
        unprojected = Var("r", ("H",), INTERMEDIATE, "r_{t}")  # o * tanh(c), before the projection
        W_hr = Var("W_hr", ("P", "H"), PARAM, "W_{hr}")
        params.append(W_hr)
        step.append(Equation(unprojected, (i,), gate["o"][i] * sp.tanh(c[i])))
        step.append(Equation(h, (i,), W_hr[i, k] * unprojected[k]))
    else:
        step.append(Equation(h, (i,), gate["o"][i] * sp.tanh(c[i])))
    return Cell(
        name=name,
        activation="tanh",
        sizes=SIZES + ((("P", "projection size"),) if projection else ()),
        params=tuple(params),
        inputs=(x,),
        states=((h_prev, h), (c_prev, c)),
        step=tuple(step),
        head=make_head(head, h),
        title=catalogue.cell(name).title,
        pre_activations=tuple(p.name for p in pre.values()) + ("C",),
        # the coupled cell's forget gate has no bias of its own: i shut is f open
        gates=tuple(Gate(g, f"b_{g}", meaning) for g, meaning in (("i", "input"), ("f", "forget"), ("o", "output"))
                    if g in order),
    )


def _candidate(gate: Var, after: bool, U: dict, W: dict, b: dict, x: Var, h_prev: Var,
               pre_n: Var) -> tuple[list[Equation], list[Var]]:
    """The candidate's pre-activation, with ``gate`` resetting h_{t-1} after the recurrent product, which then
    has a bias of its own (n^ = U_n x + b_n + gate * (W_n h + b_hn)), or before it (n^ = U_n x + W_n (gate * h) +
    b_n): the equations, and the extra parameter (b_hn) if any. The GRUs' reset gate r, the MGUs' gate f."""
    i, j, k = indices("i j k")
    if after:
        b_hn = Var("b_hn", ("H",), PARAM, "b_{hn}")
        recurrent = Var("m", ("H",), INTERMEDIATE, "m_{t}")  # W_n h_{t-1} + b_hn, before the gate
        return [Equation(recurrent, (i,), W["n"][i, k] * h_prev[k] + b_hn[i]),
                Equation(pre_n, (i,), U["n"][i, j] * x[j] + b["n"][i] + gate[i] * recurrent[i])], [b_hn]
    name = gate.name[0]  # the gate's letter: "r", "f"
    reset = Var(f"{name}h", ("H",), INTERMEDIATE, rf"({name}_{{t}} \odot h_{{t-1}})")
    return [Equation(reset, (i,), gate[i] * h_prev[i]),
            Equation(pre_n, (i,), U["n"][i, j] * x[j] + W["n"][i, k] * reset[k] + b["n"][i])], []


def gru(reset_after: bool = True, head: str | None = "softmax-ce") -> Cell:
    """The GRU, gates r, z, n; the reset gate after the recurrent product (PyTorch, cuDNN, Keras 3,
    Flax) with its own bias b_hn, or before it (ONNX's default, Keras ``reset_after=False``, the 2014 paper)."""
    i, j, k = indices("i j k")
    order = catalogue.cell("gru-reset-after").gates
    U, W, b = _gate_params(order)
    x = Var("x", ("I",), INPUT, "x_t")
    h_prev = Var("h_prev", ("H",), STATE_IN, "h_{t-1}")
    h = Var("h", ("H",), STATE_OUT, "h_t")
    pre = {g: _pre(f"z{g}", g) for g in order}
    gate = {g: Var(f"{g}g", ("H",), INTERMEDIATE, f"{g}_{{t}}") for g in order}
    step = []
    for g in "rz":
        step.append(Equation(pre[g], (i,), U[g][i, j] * x[j] + W[g][i, k] * h_prev[k] + b[g][i]))
        step.append(Equation(gate[g], (i,), sigmoid(pre[g][i])))
    candidate, extra = _candidate(gate["r"], reset_after, U, W, b, x, h_prev, pre["n"])
    params = [*U.values(), *W.values(), *b.values(), *extra]
    step += candidate
    step.append(Equation(gate["n"], (i,), sp.tanh(pre["n"][i])))
    step.append(Equation(h, (i,), (1 - gate["z"][i]) * gate["n"][i] + gate["z"][i] * h_prev[i]))
    form = "after" if reset_after else "before"
    return Cell(
        name=f"gru-reset-{form}",
        activation="tanh",
        sizes=SIZES,
        params=tuple(params),
        inputs=(x,),
        states=((h_prev, h),),
        step=tuple(step),
        head=make_head(head, h),
        title=catalogue.cell(f"gru-reset-{form}").title,
        pre_activations=tuple(p.name for p in pre.values()),
        gates=(Gate("r", "b_r", "reset"), Gate("z", "b_z", "update")),
    )


def mgu(flax: bool = False, head: str | None = "softmax-ce") -> Cell:
    """The minimal gated unit (Zhou, Wu, Zhang and Zhou, 2016), gates f, n: the forget gate f resets h before
    W_n and mixes the candidate in, h' = (1 - f) h + f n. With ``flax``, what flax.linen's MGUCell computes: f
    multiplies the recurrent product W_n h + b_hn (its own bias), and h' = (1 - f) n + f h."""
    i, j, k = indices("i j k")
    name = "mgu-flax" if flax else "mgu"
    order = catalogue.cell(name).gates
    U, W, b = _gate_params(order)
    x = Var("x", ("I",), INPUT, "x_t")
    h_prev = Var("h_prev", ("H",), STATE_IN, "h_{t-1}")
    h = Var("h", ("H",), STATE_OUT, "h_t")
    pre = {g: _pre(f"z{g}", g) for g in order}
    gate = {g: Var(f"{g}g", ("H",), INTERMEDIATE, f"{g}_{{t}}") for g in order}
    f, n = gate["f"], gate["n"]
    step = [Equation(pre["f"], (i,), U["f"][i, j] * x[j] + W["f"][i, k] * h_prev[k] + b["f"][i]),
            Equation(f, (i,), sigmoid(pre["f"][i]))]
    candidate, extra = _candidate(f, flax, U, W, b, x, h_prev, pre["n"])
    params = [*U.values(), *W.values(), *b.values(), *extra]
    step += candidate
    step.append(Equation(n, (i,), sp.tanh(pre["n"][i])))
    mix = (1 - f[i]) * n[i] + f[i] * h_prev[i] if flax else (1 - f[i]) * h_prev[i] + f[i] * n[i]
    step.append(Equation(h, (i,), mix))
    return Cell(
        name=name,
        activation="tanh",
        sizes=SIZES,
        params=tuple(params),
        inputs=(x,),
        states=((h_prev, h),),
        step=tuple(step),
        head=make_head(head, h),
        title=catalogue.cell(name).title,
        pre_activations=tuple(p.name for p in pre.values()),
        # f near 1 forgets h in the paper's cell, and keeps it in flax's, where it plays a GRU's update gate
        gates=(Gate("f", "b_f", "update" if flax else "forget"),),
    )
