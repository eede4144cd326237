"""Built-in targets over ``torch.compile`` (inductor, CPU): PyTorch's layers, and a cell loop written in torch ops.

``torch-compile`` runs nn.RNN, nn.LSTM and nn.GRU (the ``torch`` target's modules, weights through
:mod:`rnnspec.spec.conventions`) through ``torch.compile(call, dynamic=True, fullgraph=True)``, with
``call(module, x, state) = module(x, state)``, and gradients through autograd of the compiled function
(inductor compiles the backward too). By default Dynamo does not compile these layers at all: it breaks
the graph at them ("Dynamo does not support RNN, GRU, or LSTM") and runs them eagerly, so that
``torch.compile(nn.LSTM(...))`` is the eager layer. The target sets ``torch._dynamo.config.allow_rnn``
for its calls (and ``fullgraph=True``, so that a graph break is an error, not a silent eager run): Dynamo
then traces the layer through ATen's decomposition of ``aten.lstm`` (``rnn_tanh``, ``gru``), which unrolls
the T steps in Python. So every new sequence length T is a new graph: ``dynamic=True`` leaves the batch
symbolic, but T (unrolled) and the module's sizes I, H (its int attributes) are specialised, and each
graph's C++ compile takes 15-140 s on 2 loaded cores (``docs/compilers.md`` has the numbers): the target
declares two shapes of at most ``MAX_T`` steps (``shapes``, ``max_T``), and a first-call timeout for its
compiles (``first_call_timeout``). The recompile limits are raised for the call: at the default limit (8)
Dynamo would fall back to running the layer eagerly, silently, after the eighth shape.

``torch-compile-loop`` is the cell as a user writes it in torch ops over PyTorch's packed weights
(:func:`rnnspec.spec.conventions.to_framework`, ``"torch"``; the chunks of a stacked matrix are named by
:data:`rnnspec.spec.conventions.pytorch.ORDER`), with the *step* compiled: ``torch.compile(step,
dynamic=True, fullgraph=True)``, called once per time step from a Python loop. Compiling the whole loop
would unroll it as the layers are (one graph per T); the step is one graph per cell, dtype and activation
whatever the sizes (B, I and H symbolic), so a check compiles a handful of graphs.

Both run on one PyTorch thread (as ``torch``): inductor's C++ kernels are parallel only when compiled
with more than one thread.
"""

from __future__ import annotations

from contextlib import contextmanager

from rnnspec.spec.conventions import gradients_from_framework, to_framework
from rnnspec.spec.conventions import pytorch as conventions
from rnnspec.spec.frameworks.torch_layers import LAYERS, TorchRNN

#: Dynamo's settings for a call: the layers traced (not skipped), and no silent eager fallback after N shapes
_DYNAMO = {"allow_rnn": True, "recompile_limit": 1_000_000, "accumulated_recompile_limit": 1_000_000}

#: seconds a call that compiles may take at the default per-call timeout (60 s; --timeout scales it): a cold
#: compile's first call outlasted the 180 s warm-up on 2 cores at load 12 (benchmarks/default_check_times.md)
FIRST_CALL_TIMEOUT = 600.0
#: the longest T of the layers' shapes: each step is unrolled into the graph (docs/compilers.md has the timings;
#: at 8 and 4 shapes, a default check of the LSTM took 98 CPU s)
MAX_T = 4

#: the cells each compiled target computes: those with a PyTorch layer (the loop runs PyTorch's packed weights,
#: so it has the layers' cells; PyTorch has no reset-before GRU nor peepholes, conventions.pytorch.CANNOT)
CELLS = tuple(LAYERS)


@contextmanager
def _dynamo_settings(torch):
    """Dynamo's settings for one call (set back after it). Duck shaping off: with it, sizes equal at the first
    compile share one symbol (a case with T == I guards x_t._base.size(0) == x_t.size(1)), and the next case
    recompiles."""
    from torch.fx.experimental import _config as shapes

    with torch._dynamo.config.patch(**_DYNAMO), shapes.patch(use_duck_shape=False):
        yield


class _CompiledModule:
    """A layer whose calls go through the compiled ``call``; its parameters are the layer's own."""

    def __init__(self, module, compiled, torch) -> None:
        self.module, self.compiled, self.torch = module, compiled, torch

    def __call__(self, x, state):
        with _dynamo_settings(self.torch):
            return self.compiled(self.module, x, state)

    def __getattr__(self, name):  # hidden_size, proj_size, bidirectional, named_parameters
        return getattr(self.module, name)


def _call(module, x, state):
    return module(x, state)


class _OneGraph:
    """forward() with autograd recording, as vjp and loss run: under no_grad Dynamo compiles a second (inference)
    graph for every shape, doubling the compile time of a check; so the forward clauses check the program the
    gradients come from, and the inference graph is not checked."""

    def _forward(self, x, state0, params, lengths):
        _, _, outputs = self._outputs(x, state0, params, lengths, every_c=True)
        return {k: v.detach().cpu().numpy() for k, v in outputs.items()}


class TorchCompiled(_OneGraph, TorchRNN):
    """nn.RNN (tanh, relu), nn.LSTM (with proj_size) and nn.GRU under torch.compile (inductor, CPU)."""

    cells = CELLS
    variants = ()  # packed sequences and stacked layers are not compiled here (docs/compilers.md)
    #: the compiled layers unroll T: every new (T, B = 1 or not, I, H, dtype) is a new graph, so the cases come on a
    #: few shapes, edge sizes among them (rnnspec.spec.cases.few_shapes: two keep T = 1, B = 1, H = 1 and I != H
    #: for seeds 0-2 of every cell), and a graph's compile grows with T (about 1.2 s of tracing per LSTM step, on
    #: top of about 1.3 s per graph), so those shapes are short: T = 1 among them, the others MAX_T steps at most.
    #: Two, not three: on 2 idle cores a cold default check of lstm-proj took 63 s on three shapes (T <= 4, or 62.6 s
    #: at T <= 3: the third shape's graphs, not the steps, cost it) and 35 s on two; --shapes N asks for more
    shapes = 2
    max_T = MAX_T
    first_call_timeout = FIRST_CALL_TIMEOUT

    def __init__(self, activation: str = "tanh") -> None:
        super().__init__(activation)
        # one compiled function per target: Dynamo keeps a graph per (T, I, H, dtype, grad mode) under it
        self._compiled = self.torch.compile(_call, dynamic=True, fullgraph=True)

    def _module(self, params, dtype):
        return _CompiledModule(super()._module(params, dtype), self._compiled, self.torch)


def _step(cell: str, activation: str):
    """The user's step, (x_t, state, weights) -> state, in PyTorch's packed layout.

    Elman: h' = f(x W_ih^T + b_ih + h W_hh^T + b_hh). LSTM (gates as ORDER names the chunks): c' = f ⊙ c + i ⊙ g,
    h' = o ⊙ tanh(c') (times W_hr^T with proj_size). GRU: n = tanh(gi_n + r ⊙ gh_n), h' = (1 − z) ⊙ n + z ⊙ h."""
    import torch

    order = conventions.ORDER[cell]
    act = {"tanh": torch.tanh, "relu": torch.relu}[activation]

    def split(x_t, h, w):
        gi = torch.nn.functional.linear(x_t, w["weight_ih_l0"], w["bias_ih_l0"])
        gh = torch.nn.functional.linear(h, w["weight_hh_l0"], w["bias_hh_l0"])
        return (dict(zip(order, gi.chunk(len(order), -1))), dict(zip(order, gh.chunk(len(order), -1))))

    def elman(x_t, state, w):
        (h,) = state
        gi = torch.nn.functional.linear(x_t, w["weight_ih_l0"], w["bias_ih_l0"])
        return (act(gi + torch.nn.functional.linear(h, w["weight_hh_l0"], w["bias_hh_l0"])),)

    def lstm(x_t, state, w):
        h, c = state
        gi, gh = split(x_t, h, w)
        i, f = torch.sigmoid(gi["i"] + gh["i"]), torch.sigmoid(gi["f"] + gh["f"])
        g, o = torch.tanh(gi["g"] + gh["g"]), torch.sigmoid(gi["o"] + gh["o"])
        c = f * c + i * g
        h = o * torch.tanh(c)
        if "weight_hr_l0" in w:
            h = h @ w["weight_hr_l0"].T
        return h, c

    def gru(x_t, state, w):
        (h,) = state
        gi, gh = split(x_t, h, w)
        r, z = torch.sigmoid(gi["r"] + gh["r"]), torch.sigmoid(gi["z"] + gh["z"])
        n = torch.tanh(gi["n"] + r * gh["n"])
        return ((1 - z) * n + z * h,)

    return {"RNN": elman, "LSTM": lstm, "GRU": gru}[LAYERS[cell]]


class TorchCompiledLoop(_OneGraph, TorchRNN):
    """A cell loop in torch ops over PyTorch's packed weights, its step under torch.compile (inductor, CPU)."""

    cells = CELLS
    variants = ()
    #: the step is one graph whatever B, I and H, except that Dynamo specialises a size of 1 (and inductor compiles
    #: forward and backward of each): every case on its own shape made a default check compile 14 graphs (28 with
    #: their backwards; 63 s CPU with a cold inductor cache, benchmarks/default_check_times.md); on a few shapes,
    #: edge sizes among them (rnnspec.spec.cases.few_shapes), it compiles fewer and still meets B = 1, H = 1, T = 1
    shapes = 4
    first_call_timeout = FIRST_CALL_TIMEOUT

    def __init__(self, activation: str = "tanh") -> None:
        super().__init__(activation)
        self._steps: dict = {}

    def _compiled_step(self):
        key = (self.cell, self.activation)
        if key not in self._steps:
            self._steps[key] = self.torch.compile(_step(*key), dynamic=True, fullgraph=True)
        return self._steps[key]

    def _run(self, x, state0, params, every_c: bool):
        """The weights (PyTorch's names), the leaves and {"h"(, "c")}: plain tensors, as a user's loop holds them
        (Dynamo gives an nn.Parameter static sizes, and guards on a view's base: h0[0] would be a second graph)."""
        torch = self.torch
        weights = {k: self._tensor(v).requires_grad_(True)
                   for k, v in to_framework("torch", self.cell, params).items()}
        leaves = {"x": self._tensor(x).requires_grad_(True)}
        leaves.update({k: self._tensor(v).requires_grad_(True) for k, v in state0.items()})
        step = self._compiled_step()
        state = tuple(leaves[k] for k in ("h0", "c0") if k in leaves)
        hs, cs = [], []
        with _dynamo_settings(torch):
            for t in range(x.shape[0]):
                state = step(leaves["x"][t], state, weights)
                hs.append(state[0])
                if len(state) > 1:
                    cs.append(state[1])
        outputs = {"h": torch.stack(hs)}
        if cs:
            outputs["c"] = torch.stack(cs)
        return weights, leaves, outputs

    def _grads(self, weights, leaves):
        grad = lambda t: (t.grad if t.grad is not None else self.torch.zeros_like(t)).detach().numpy()
        grads = gradients_from_framework("torch", self.cell, {k: grad(v) for k, v in weights.items()})
        grads.update({k: grad(v) for k, v in leaves.items()})
        return grads
