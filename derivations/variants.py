"""Variants of a run, composed from cells: stacked layers, two directions, variable lengths, final states,
and the default initial states.

No formula is written here: every step is a registered cell's, and the padded steps are a cell too,
derived from it by :func:`masked`. A sequence b of length len_b has the mask m_t = 1 for t < len_b and
0 after; the masked cell is the cell's step followed, for every state s, by

    s_t = m_t s~_t + (1 - m_t) s_{t-1}        (s~_t: the cell's new state; a padded step keeps the state)

so the derivation engine gives its backward step like any cell's (a padded step hands g_s_t on to
s_{t-1} unchanged and adds nothing to any gradient). The reverse direction is the same masked cell run
over time reversed, x_{T-1} ... x_0 with its mask: its padded steps come first and keep its initial
state, so it starts at len_b - 1; its outputs are put back in time order. A direction's final state is
its state after its last step in its own order (len_b - 1 forward, 0 reverse; the initial state when
len_b = 0). A direction reports the outputs y_t = v_t h_t, with the output mask

    v_t = m_t                                 ("zero": PyTorch's packed sequences, ONNX Runtime's sequence_lens)
    v_t = 1 once the direction has run a valid step, else 0
                                              ("carry": Keras masking, which repeats its last output)

Under "carry" the forward direction repeats h at len_b - 1 over the padded steps (zeros when len_b = 0),
and the reverse direction, whose padded steps come before its first valid one, reports zeros there, as
under "zero" (measured against Keras 3's LSTM and GRU with a mask, with and without ``go_backwards``;
Keras starts the output it repeats at zeros, not at the initial state). Layer l + 1 reads layer l's
outputs, the directions concatenated along the features as [forward | reverse] (PyTorch's layout). The
loss sums the head's loss over the valid steps t < len_b only.

Under ``state0=default`` no initial state is passed: every run starts from the framework's own default,
zeros, s_0 = 0 for every state s (PyTorch's ``hidden=None``, ONNX without ``initial_h``, Keras without
``initial_state``, Flax's ``initialize_carry``). The function is the cell's with s_0 = 0, so nothing is
derived anew; what changes is the contract (no ``state0`` and no gradient of it) and the code path taken
in the implementation (ml-explore/mlx#3249: ``nn.GRU`` dropped b_hn at the first step on that path only).

Reversal, concatenation and y = v h are linear maps, so their VJPs are their transposes (reverse back,
split, multiply by v); BPTT through a stack runs the layers top down, each layer's dL/dx (both
directions summed) being the cotangent of the layer below's outputs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from functools import cache

import numpy as np
import sympy as sp

from rnnspec.derivations.cells import ACTIVATIONS, Cell, sigmoid
from rnnspec.derivations.tensors import INTERMEDIATE, Equation, Var, indices
from rnnspec.derivations.tensors import MASK as MASK_KIND

Arrays = Mapping[str, np.ndarray]

#: the two declared semantics of the steps after a sequence's end
LENGTH_SEMANTICS = ("zero", "carry")
#: the value of ``state0=`` that passes no initial states (the framework's own zero default)
DEFAULT_STATE = "default"
MASK = Var("mask", (), MASK_KIND, "m_t")


@dataclass(frozen=True)
class Variant:
    """How cells are composed into a run. The default is one forward layer over full sequences."""

    layers: int = 1
    bidirectional: bool = False
    #: None: every sequence has length T; else the semantics of the padded steps, "zero" or "carry"
    lengths: str | None = None
    #: True: no initial states are passed, every run starts from zeros, the framework's default (state0=default)
    default_state: bool = False
    #: None, or ONNX's ``clip`` threshold C > 0: every gate's pre-activation clipped to [-C, C] (:func:`clipped`)
    clip: float | None = None
    #: None, or ONNX's ``activations`` of a gated cell, lower case: (f, g) or (f, g, h) (:func:`reactivated`);
    #: spelled ``activations=f/g/h`` (not a target's ``activations``, Elman's f, which this is not)
    gate_activations: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.layers, bool) or not isinstance(self.layers, int) or not 1 <= self.layers <= 8:
            raise ValueError(f"variant: layers must be an integer in 1..8, got {self.layers!r}")
        if not isinstance(self.bidirectional, bool):
            raise ValueError(f"variant: bidirectional must be True or False, got {self.bidirectional!r}")
        if self.lengths is not None and self.lengths not in LENGTH_SEMANTICS:
            raise ValueError(f"variant: lengths must be None or one of {LENGTH_SEMANTICS}, got {self.lengths!r}")
        if not isinstance(self.default_state, bool):
            raise ValueError(f"variant: default_state must be True or False, got {self.default_state!r}")
        if self.clip is not None and (isinstance(self.clip, bool) or not isinstance(self.clip, (int, float))
                                      or not 0 < self.clip < np.inf):
            raise ValueError(f"variant: clip must be None or a positive finite threshold, got {self.clip!r}")
        acts = self.gate_activations
        if acts is not None and (not isinstance(acts, tuple) or not 2 <= len(acts) <= 3
                                 or any(a not in GATED_ACTIVATIONS for a in acts)):
            raise ValueError(f"variant: gate_activations must be None or 2 or 3 of {tuple(GATED_ACTIVATIONS)} "
                             f"(f, g, h), got {acts!r}")

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def plain(self) -> bool:
        """One forward layer over full sequences: the single-layer contract's outputs (every state at every
        step). The initial states may still be the default ones (``default_state``)."""
        return replace(self, default_state=False) == Variant()

    @property
    def stacked(self) -> bool:
        """Whether parameters and initial states are per layer and direction (names suffixed, h0 (L*D, B, H))."""
        return self.layers > 1 or self.bidirectional

    def suffix(self, layer: int, direction: int) -> str:
        """The parameter names' suffix of one layer and direction: ``_l1_reverse`` (PyTorch's); ""
        when the run has one forward layer."""
        if not self.stacked:
            return ""
        return f"_l{layer}" + ("_reverse" if direction else "")

    def runs(self) -> list[tuple[int, int]]:
        """(layer, direction) in the order of h0's first axis: index layer * D + direction."""
        return [(layer, d) for layer in range(self.layers) for d in range(self.directions)]

    @property
    def name(self) -> str:
        """``layers=2,bidirectional,lengths=zero,state0=default``; "" for the plain run."""
        parts = [f"layers={self.layers}"] if self.layers > 1 else []
        parts += ["bidirectional"] if self.bidirectional else []
        parts += [f"lengths={self.lengths}"] if self.lengths else []
        parts += [f"state0={DEFAULT_STATE}"] if self.default_state else []
        parts += [f"clip={self.clip:g}"] if self.clip is not None else []
        parts += [f"activations={'/'.join(self.gate_activations)}"] if self.gate_activations else []
        return ",".join(parts)

    @property
    def tag(self) -> str:
        """The clause ids' part: ``-L2-BIDIR-LEN-ZERO-STATE0-DEFAULT``."""
        parts = [f"L{self.layers}"] if self.layers > 1 else []
        parts += ["BIDIR"] if self.bidirectional else []
        parts += [f"LEN-{self.lengths.upper()}"] if self.lengths else []
        parts += [f"STATE0-{DEFAULT_STATE.upper()}"] if self.default_state else []
        parts += ["CLIP"] if self.clip is not None else []
        parts += ["ACT-" + "-".join(a.upper() for a in self.gate_activations)] if self.gate_activations else []
        return "".join("-" + p for p in parts)

    @property
    def features(self) -> tuple[str, ...]:
        """The features a target must declare to run this variant (``rnnspec.spec.declared.VARIANT_FEATURES``)."""
        parts = ["layers"] if self.layers > 1 else []
        parts += ["bidirectional"] if self.bidirectional else []
        parts += [f"lengths={self.lengths}"] if self.lengths else []
        parts += [f"state0={DEFAULT_STATE}"] if self.default_state else []
        parts += ["clip"] if self.clip is not None else []
        parts += ["activations"] if self.gate_activations else []
        return tuple(parts)


def run_params(params: Mapping, names: Iterable[str], variant: Variant, layer: int, direction: int) -> dict:
    """The parameters ``names`` (canonical: ``U_i``, ...) of one layer and direction, from the variant's suffixed
    ones (``U_i_l1_reverse``); a ValueError names any missing."""
    suffix = variant.suffix(layer, direction)
    names = list(names)
    missing = [n + suffix for n in names if n + suffix not in params]
    if missing:
        raise ValueError(f"params: missing {missing} (layer {layer}, direction {direction})")
    return {n: params[n + suffix] for n in names}


def parse_variant(text: str | Variant | None) -> Variant:
    """``"layers=2,bidirectional,lengths=zero,state0=default"`` (any order; "" or None is the plain run) as a
    Variant."""
    if isinstance(text, Variant):
        return text
    if text is None or not str(text).strip():
        return Variant()
    fields: dict = {}
    shown = str(text) if len(str(text)) <= 80 else str(text)[:60] + f"... ({len(str(text))} characters)"
    for part in (p.strip() for p in str(text).split(",")):
        if part == "bidirectional":
            name, value = "bidirectional", True
        elif re.fullmatch(r"layers=\d{1,3}", part):  # more digits than that is no layer count (1..8)
            name, value = "layers", int(part.split("=")[1])
        elif re.fullmatch(r"layers=\d+", part):
            raise ValueError(f"variant {shown!r}: layers must be an integer in 1..8, got {len(part) - 7} digits")
        elif part.startswith("lengths="):
            name, value = "lengths", part.split("=", 1)[1]
        elif part.startswith("state0="):
            given = part.split("=", 1)[1]
            if given != DEFAULT_STATE:  # passing the states is the run without this feature: no second spelling
                raise ValueError(f"variant {shown!r}: state0 must be {DEFAULT_STATE!r} (no initial states passed), "
                                 f"got {given!r}")
            name, value = "default_state", True
        elif part.startswith("clip="):
            try:
                name, value = "clip", float(part.split("=", 1)[1])
            except ValueError:
                raise ValueError(f"variant {shown!r}: clip must be a positive number (ONNX's threshold), got "
                                 f"{part.split('=', 1)[1]!r}") from None
            if not 0 < value < np.inf:
                raise ValueError(f"variant {shown!r}: clip must be a positive finite threshold, got {value!r}")
        elif part.startswith("activations="):
            name, value = "gate_activations", tuple(part.split("=", 1)[1].lower().split("/"))
            if not 2 <= len(value) <= 3 or any(a not in GATED_ACTIVATIONS for a in value):
                raise ValueError(f"variant {shown!r}: activations must be f/g or f/g/h, each one of "
                                 f"{'/'.join(GATED_ACTIVATIONS)}, got {part.split('=', 1)[1]!r}")
        else:
            raise ValueError(f"variant {shown!r}: cannot read {part!r}; write e.g. "
                             "'layers=2,bidirectional,lengths=zero,state0=default' (lengths: zero or carry; "
                             "clip=C: ONNX's clip threshold)")
        if name in fields:  # the second would silently win
            raise ValueError(f"variant {shown!r}: {name.replace('default_state', 'state0')} is given twice")
        fields[name] = value
    return Variant(**fields)


#: ONNX's defaults of HardSigmoid's alpha and beta
HARD_SIGMOID = (sp.Rational(1, 5), sp.Rational(1, 2))


def hard_sigmoid(u: sp.Expr) -> sp.Expr:
    """ONNX's HardSigmoid, max(0, min(1, alpha u + beta)), with the operator's defaults alpha = 0.2, beta = 0.5;
    its derivative is alpha strictly inside, 0 outside, and (the True branch) alpha at the two kinks."""
    alpha, beta = HARD_SIGMOID
    v = alpha * u + beta
    return sp.Piecewise((0, v < 0), (1, v > 1), (v, True))


#: the nonlinearities the variant activations=f/g/h may name (ONNX's names, lower case), with ONNX's defaults
GATED_ACTIVATIONS = {"sigmoid": sigmoid, "tanh": sp.tanh, "relu": ACTIVATIONS["relu"], "hardsigmoid": hard_sigmoid}


@cache
def reactivated(cell: Cell, names: tuple[str, ...]) -> Cell:
    """``cell`` with ONNX's ``activations`` list: f for every gate squashed by the logistic function, g for every
    pre-activation squashed by tanh (the candidate), and h for the other tanh (the LSTM's tanh(c_t)); ``names`` is
    (f, g) for a cell without that (the GRUs, the MGUs), (f, g, h) for one with it (the LSTMs)."""
    if not cell.gates:
        raise ValueError(f"variant activations: the cell {cell.name} has no gates; its nonlinearity is its activation")
    f, g, *h = (GATED_ACTIVATIONS[n] for n in names)
    pre = set(cell.pre_activations)
    step, rest = [], False
    for eq in cell.step:
        atoms = [a for a in eq.rhs.atoms(sp.Indexed) if str(a.base) in pre]
        if len(atoms) == 1 and eq.rhs == sigmoid(atoms[0]):
            step.append(Equation(eq.target, eq.indices, f(atoms[0])))
        elif len(atoms) == 1 and eq.rhs == sp.tanh(atoms[0]) and eq.target.kind == INTERMEDIATE:
            step.append(Equation(eq.target, eq.indices, g(atoms[0])))
        elif eq.rhs.has(sp.tanh):
            rest = True
            step.append(Equation(eq.target, eq.indices, eq.rhs.replace(sp.tanh, h[0]) if h else eq.rhs))
        else:
            step.append(eq)
    if len(names) != 2 + rest:
        raise ValueError(f"variant activations: the cell {cell.name} takes {2 + rest} (f, g{', h' if rest else ''}), "
                         f"got {len(names)}: {'/'.join(names)}")
    return replace(cell, name=f"{cell.name}+{'/'.join(names)}", step=tuple(step))


def clip_function(u: sp.Expr, threshold: sp.Expr) -> sp.Expr:
    """clip(u) = min(max(u, -C), C). Its derivative is 1 on [-C, C], bounds included (as torch.clamp's backward
    takes it), and 0 outside: at u = +-C exactly the True branch (u) is the one taken."""
    return sp.Piecewise((-threshold, u < -threshold), (threshold, u > threshold), (u, True))


@cache
def clipped(cell: Cell, threshold: float) -> Cell:
    """``cell`` with ONNX's ``clip``: every gate's pre-activation (each quantity of ``pre_activations`` that is not
    a state: Elman's z; the LSTM's i, f, g, o pre-activations, peepholes included, but not its cell state c_t,
    which tanh reads unclipped; the GRU's r, z and the candidate's whole pre-activation, the reset product
    included) clipped to [-C, C] before its nonlinearity: z = clip(z_raw). What ONNX Runtime 1.32.0 and OpenVINO
    2026.4.1 compute (docs/onnx-attributes.md)."""
    C = sp.nsimplify(threshold, rational=True)
    states = {out.name for out in cell.state_out}
    targets = [name for name in cell.pre_activations if name not in states]
    step = []
    for eq in cell.step:
        if eq.target.name not in targets:
            step.append(eq)
            continue
        raw = Var(eq.target.name + "_raw", eq.target.shape, INTERMEDIATE, rf"\tilde{{{eq.target.latex}}}")
        step.append(Equation(raw, eq.indices, eq.rhs))
        step.append(Equation(eq.target, eq.indices, clip_function(raw[eq.indices], C)))
    return replace(cell, name=f"{cell.name}+clip", step=tuple(step))


@cache
def masked(cell: Cell) -> Cell:
    """``cell`` with a per-example mask m_t: every state s_t = m_t s~_t + (1 - m_t) s_{t-1}."""
    candidates = {out.name: Var(out.name + "_new", out.shape, INTERMEDIATE, _tilde(out.latex))
                  for out in cell.state_out}
    rename = {sp.IndexedBase(name): sp.IndexedBase(var.name) for name, var in candidates.items()}
    step = []
    for eq in cell.step:
        target = candidates.get(eq.target.name, eq.target)
        step.append(Equation(target, eq.indices, eq.rhs.xreplace(rename)))
    m, (i,) = MASK.scalar, indices("i")
    for inp, out in cell.states:
        step.append(Equation(out, (i,), m * candidates[out.name][i] + (1 - m) * inp[i]))
    return replace(cell, name=cell.name + "+mask", inputs=(*cell.inputs, MASK), step=tuple(step), head=None)


def output_mask(mask: np.ndarray, semantics: str | None, reverse: bool) -> np.ndarray | None:
    """v[t, b] of y_t = v_t h_t, in time order (None: every output is h_t). ``mask`` is m[t, b]."""
    if semantics is None:
        return None
    if semantics == "zero" or reverse:
        return mask
    started = np.asarray(np.sum(mask, axis=0) > 0, dtype=np.int64)  # the forward direction ran a valid step
    return np.broadcast_to(started, np.shape(mask))


def zero_states(cell: Cell, variant: Variant, batch: int, params: Mapping, zeros=np.zeros) -> dict:
    """The default initial states of ``cell`` run as ``variant``: ``zeros((B, n))`` for each state (L * D
    leading for a stacked variant), n the state's size read off the first run's parameters (H, or the
    projected LSTM's P), by the shapes the cell declares. ``zeros`` is the backend's (``np.zeros``: float64;
    pass a dtype-bound one for another)."""
    sizes: dict[str, int] = {}
    suffix = variant.suffix(0, 0)
    for var in cell.params:
        key = var.key + suffix
        if key not in params:
            raise ValueError(f"params: missing {key!r} (the initial states' sizes are read off the parameters)")
        sizes.update(zip(var.shape, np.shape(params[key])))
    lead = (len(variant.runs()),) if variant.stacked else ()
    return {out.key + "0": zeros(lead + (batch, sizes[out.shape[0]])) for out in cell.state_out}


def _tilde(latex: str) -> str:
    """``\\tilde{h}_t`` from ``h_t``."""
    stem, _, sub = latex.partition("_")
    return rf"\tilde{{{stem}}}" + (f"_{sub}" if sub else "")


def mask_of(lengths: np.ndarray | None, steps: int, batch: int) -> np.ndarray:
    """m[t, b] = 1 where t < lengths[b] (every step when ``lengths`` is None), integers (T, B): exact in
    every backend (a float 1.0 would turn the symbolic backends' expressions into floating point)."""
    if lengths is None:
        return np.ones((steps, batch), dtype=np.int64)
    return (np.arange(steps)[:, None] < np.asarray(lengths)[None, :]).astype(np.int64)
