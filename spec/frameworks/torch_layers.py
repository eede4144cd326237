"""The built-in target ``torch``: PyTorch's own layers (nn.RNN, nn.LSTM, nn.GRU), gradients by autograd.

The loss is nn.Linear's map and cross_entropy summed over time and batch. Weights go through
:mod:`rnnspec.spec.conventions` (stacked gates, two biases split at random). nn.LSTM returns the cell
state of the last step only; c_t of every step is its final state after one step of its own from
(h_{t-1}, c_{t-1}), chained from (h0, c0), so both outputs come from the layer itself (one call per
step; runs on the prefixes x[:t+1] would cost T^2 / 2 steps).

Variants (``num_layers``, ``bidirectional``, packed sequences): the module is built with the variant's
layers and directions, its weights from :func:`rnnspec.spec.conventions.pytorch.to_runs`; lengths go through
``pack_padded_sequence`` (``enforce_sorted=False``) and ``pad_packed_sequence``, whose padded outputs are
zero (the "zero" semantics). PyTorch refuses a length of 0, so those sequences are left out of the packed
batch: their outputs are zero and their final states their initial ones (through autograd, so their
cotangents reach h0). The loss counts the valid steps only (a per-step loss times the mask).

``state0=default`` calls the module with ``hidden=None`` (PyTorch's own zero initial state), alone or with the
other variants; the LSTM's c_t of every step is then chained from that same default first step. A sequence of
length 0, left out of the packed batch, has final states of zeros.

Each call runs on ``threads`` PyTorch threads (one), set for the call and set back after it.

``torch-cuda`` runs the same layers on a GPU (cuDNN) with PyTorch's defaults, under which cuDNN may
use TF32 for float32 (``torch.backends.cudnn.allow_tf32`` is True by default): TF32 rounds the
products' inputs to 10 bits, far outside float32's tolerance, so the suite reports that as not
conformant. ``torch-cuda-no-tf32`` sets ``allow_tf32 = False`` first.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from rnnspec import catalogue
from rnnspec.derivations.variants import Variant
from rnnspec.spec.conventions import gradients_from_framework, to_framework
from rnnspec.spec.conventions import pytorch as conventions
from rnnspec.spec.conventions._layout import GATES, first_part, gates
from rnnspec.spec.targets import TargetError

LAYERS = {"elman": "RNN", "lstm": "LSTM", "gru-reset-after": "GRU", "lstm-proj": "LSTM"}
#: the cells with a cell state c (nn.LSTM, with or without proj_size)
WITH_CELL_STATE = catalogue.with_cell_state()


class TorchRNN:
    """torch.nn.RNN (tanh, relu), nn.LSTM and nn.GRU (reset after) on the CPU."""

    cells = tuple(LAYERS)
    cell = "elman"
    dtypes = ("float32", "float64")
    activations = ("tanh", "relu")
    variants = ("layers", "bidirectional", "lengths=zero", "state0=default")
    layers, bidirectional, lengths = 1, False, None
    #: True (state0=default): state0 is {} and the module is called with hidden=None
    default_state = False

    device = "cpu"
    #: torch.backends.cudnn.allow_tf32 on a GPU (None: PyTorch's default, which allows it)
    allow_tf32: bool | None = None
    #: PyTorch's intra-op threads during a call (None: the process's own setting, PyTorch's default being one
    #: per core). One, because the suite's cases are small (H <= 10, B <= 5): a pool of threads only adds
    #: hand-offs, and on a loaded machine each one waits for a core (benchmarks/torch_threads.log).
    threads: int | None = 1

    def __init__(self, activation: str = "tanh") -> None:
        name = "torch" if self.device == "cpu" else f"torch-{self.device}"
        try:
            import torch
        except ImportError as exc:
            raise TargetError(f"target {name!r}: PyTorch is not installed (pip install torch)") from exc
        if activation not in self.activations:
            raise TargetError(f"target {name!r}: nn.RNN has no {activation!r} nonlinearity")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise TargetError(f"target {name!r}: PyTorch sees no CUDA device (torch {torch.__version__}, "
                              f"CUDA build {torch.version.cuda})")
        if self.device == "cuda" and self.allow_tf32 is not None:
            torch.backends.cudnn.allow_tf32 = self.allow_tf32
        self.torch = torch
        self.activation = activation

    def _tensor(self, array):
        return self.torch.from_numpy(np.array(array)).to(self.device)

    @property
    def variant(self) -> Variant:
        return Variant(self.layers, self.bidirectional, self.lengths, self.default_state)

    def _module(self, params, dtype):
        torch = self.torch
        variant = self.variant
        if variant.plain:
            weights = to_framework("torch", self.cell, params)
        else:
            weights = conventions.to_runs(self.cell, params, variant)
        gates_H, I = weights["weight_ih_l0"].shape
        H = gates_H // len(gates(GATES[self.cell]))
        options = {"nonlinearity": self.activation} if self.cell == "elman" else {}
        if "weight_hr_l0" in weights:
            options["proj_size"] = weights["weight_hr_l0"].shape[0]
        options.update(num_layers=variant.layers, bidirectional=variant.bidirectional)
        module = getattr(torch.nn, LAYERS[self.cell])(I, H, **options).to(dtype).to(self.device)
        with torch.no_grad():
            for name, value in weights.items():
                getattr(module, name).copy_(self._tensor(value))
        return module

    def _run(self, x, state0, params, every_c: bool):
        """The module, the leaf tensors (x and the initial states) and the outputs {"h", "c"}."""
        torch = self.torch
        dtype = torch.float32 if x.dtype == np.float32 else torch.float64
        module = self._module(params, dtype)
        leaves = {"x": self._tensor(x).requires_grad_(True)}
        leaves.update({k: self._tensor(v[None]).requires_grad_(True) for k, v in state0.items()})
        if self.cell not in WITH_CELL_STATE:
            out, _ = module(leaves["x"], None if self.default_state else leaves["h0"])
            return module, leaves, {"h": out}
        start = None if self.default_state else (leaves["h0"], leaves["c0"])  # None: PyTorch's default path
        out, _ = module(leaves["x"], start)
        outputs = {"h": out}
        if every_c:
            states, every = start, []
            for t in range(x.shape[0]):
                _, states = module(leaves["x"][t: t + 1], states)
                every.append(states[1][0])
            outputs["c"] = torch.stack(every)
        return module, leaves, outputs

    def _run_variant(self, x, state0, params, lengths):
        """The module, the leaves and {"h", "h_n" (, "c_n")} of a variant: packed when it has lengths."""
        torch = self.torch
        dtype = torch.float32 if x.dtype == np.float32 else torch.float64
        module = self._module(params, dtype)
        variant = self.variant
        leaves = {"x": self._tensor(x).requires_grad_(True)}
        stacked = (lambda v: v) if variant.stacked else (lambda v: v[None])
        leaves.update({k: self._tensor(stacked(v)).requires_grad_(True) for k, v in state0.items()})
        if variant.default_state:
            start = None  # hidden=None: PyTorch's own zero initial state
        else:
            start = (leaves["h0"], leaves["c0"]) if self.cell in WITH_CELL_STATE else leaves["h0"]
        if lengths is None:
            out, final = module(leaves["x"], start)
        else:
            out, final = self._packed(module, leaves, start, np.asarray(lengths))
        finals = final if self.cell in WITH_CELL_STATE else (final,)
        unstack = (lambda v: v) if variant.stacked else (lambda v: v[0])
        outputs = {"h": out, "h_n": unstack(finals[0])}
        if self.cell in WITH_CELL_STATE:
            outputs["c_n"] = unstack(finals[1])
        return module, leaves, outputs

    def _packed(self, module, leaves, start, lengths):
        """Packed sequences; those of length 0 (which PyTorch refuses) keep their initial states (zeros when
        ``start`` is None, PyTorch's default, with which the others are then run)."""
        torch = self.torch
        from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

        x = leaves["x"]
        T, B = x.shape[:2]
        directions = 2 if module.bidirectional else 1
        h_width = getattr(module, "proj_size", 0) or module.hidden_size
        width = h_width * directions
        live = np.flatnonzero(lengths > 0)
        with_c = self.cell in WITH_CELL_STATE
        if start is None:  # the final states of a sequence of length 0: the default initial ones, zeros
            runs = module.num_layers * directions
            starts = (x.new_zeros((runs, B, h_width)), x.new_zeros((runs, B, module.hidden_size)))[:1 + with_c]
        else:
            starts = start if isinstance(start, tuple) else (start,)
        if not live.size:
            return x.new_zeros((T, B, width)), starts if with_c else starts[0]
        index = torch.from_numpy(live).to(x.device)
        packed = pack_padded_sequence(x[:, index], torch.from_numpy(lengths[live]), enforce_sorted=False)
        if start is None:
            out, final = module(packed)
        else:
            sub_start = tuple(s[:, index] for s in starts)
            out, final = module(packed, sub_start if with_c else sub_start[0])
        out, _ = pad_packed_sequence(out, total_length=T)
        finals = final if isinstance(final, tuple) else (final,)
        full_out = x.new_zeros((T, B, width)).index_copy(1, index, out)
        full_finals = tuple(s.index_copy(1, index, f) for s, f in zip(starts, finals))
        return full_out, full_finals if with_c else full_finals[0]

    def _grads(self, module, leaves):
        # a parameter or leaf no output reached (every sequence of length 0) has no .grad: its gradient is 0
        grad = lambda t: (t.grad if t.grad is not None else self.torch.zeros_like(t)).detach().cpu().numpy()
        named = {n: grad(p) for n, p in module.named_parameters()}
        variant = self.variant
        if variant.plain:
            grads = gradients_from_framework("torch", self.cell, named)
        else:
            grads = conventions.from_runs(self.cell, named, first_part, variant)
        grads["x"] = grad(leaves["x"])
        unstack = (lambda v: v) if variant.stacked else (lambda v: v[0])
        grads.update({k: unstack(grad(v)) for k, v in leaves.items() if k != "x"})
        return grads

    def _outputs(self, x, state0, params, lengths, every_c):
        if self.variant.plain:
            return self._run(x, state0, params, every_c=every_c)
        return self._run_variant(x, state0, params, lengths)

    @contextmanager
    def _threads(self) -> Iterator[None]:
        """PyTorch's threads set to ``threads`` for one call and set back after it, so that a target built in
        the caller's own process (``check(TorchRNN())``) leaves that process's setting as it found it."""
        if self.threads is None:
            yield
            return
        before = self.torch.get_num_threads()
        self.torch.set_num_threads(self.threads)
        try:
            yield
        finally:
            self.torch.set_num_threads(before)

    def forward(self, x, state0, params, lengths=None):
        with self._threads():
            return self._forward(x, state0, params, lengths)

    def vjp(self, x, state0, params, cotangents, lengths=None):
        with self._threads():
            return self._vjp(x, state0, params, cotangents, lengths)

    def loss(self, x, state0, params, targets, lengths=None):
        with self._threads():
            return self._loss(x, state0, params, targets, lengths)

    def _forward(self, x, state0, params, lengths):
        with self.torch.no_grad():
            _, _, outputs = self._outputs(x, state0, params, lengths, every_c=True)
        return {k: v.detach().cpu().numpy() for k, v in outputs.items()}

    def _vjp(self, x, state0, params, cotangents, lengths):
        module, leaves, outputs = self._outputs(x, state0, params, lengths, every_c=True)
        keys = [k for k in sorted(outputs) if outputs[k].requires_grad]
        self.torch.autograd.backward([outputs[k] for k in keys],
                                     [self._tensor(cotangents[k]) for k in keys])
        return self._grads(module, leaves)

    def _loss(self, x, state0, params, targets, lengths):
        torch = self.torch
        module, leaves, outputs = self._outputs(x, state0, params, lengths, every_c=False)
        V = self._tensor(params["V"]).requires_grad_(True)
        c = self._tensor(params["c"]).requires_grad_(True)
        out = outputs["h"]
        T, B, H = out.shape
        logits = torch.nn.functional.linear(out, V, c).reshape(T * B, -1)
        per_step = torch.nn.functional.cross_entropy(logits, self._tensor(np.asarray(targets).reshape(-1)),
                                                     reduction="none")
        if lengths is not None:
            valid = np.arange(T)[:, None] < np.asarray(lengths)[None, :]
            per_step = per_step * self._tensor(valid.reshape(-1).astype(x.dtype))
        loss = per_step.sum()
        loss.backward()
        grads = self._grads(module, leaves)
        grads.update(V=V.grad.cpu().numpy(), c=c.grad.cpu().numpy())
        return float(loss.item()), grads


class TorchCUDA(TorchRNN):
    """The same layers on a CUDA device (cuDNN), with PyTorch's default TF32 setting."""

    device = "cuda"


class TorchCUDANoTF32(TorchCUDA):
    """On a CUDA device with ``torch.backends.cudnn.allow_tf32 = False``."""

    allow_tf32 = False
