"""The built-in target ``onnx2pytorch``: ONNX's RNN, LSTM and GRU operators converted back into PyTorch
modules by ``onnx2pytorch`` (``ConvertModel``), forward and gradients through torch.autograd.

The graphs are those of the ``onnxruntime`` target (:func:`rnnspec.spec.frameworks.onnx_operators.build_model`:
one operator, inputs X, W, R, B, initial_h (, initial_c)), with W, R and B made initializers holding the case's
weights in ONNX's layout (:func:`rnnspec.spec.conventions.to_framework`, ``"onnx"``): the converter bakes the
weights into the module it builds and refuses them as graph inputs ("LSTM W has to be a constant"), so each
call converts its own graph (milliseconds: nothing is compiled). X and the initial states stay graph inputs.

onnx2pytorch 0.6.0 builds an nn.RNN, nn.LSTM or nn.GRU (PyTorch's layout) from the operator, and for
``linear_before_reset=0`` (gru-reset-before) an nn.GRU whose forward it replaces by a loop of its own. The
gradients of the canonical parameters are those of the converted module's parameters read through
:func:`rnnspec.spec.conventions.gradients_from_framework` (``"torch"``); the reset-before GRU's module holds
the same packing as the reset-after one, its n block's two biases adding up to b_n, so b_n's gradient is
either part's (:data:`_TORCH_PACKING`). The LSTM's Y_c is the last step's; c_t of every step is Y_c of a
one-step run from (h_{t-1}, c_{t-1}), chained from (h0, c0), as the ``torch`` target does.

``onnx2torch`` (the converter with a similar name, 1.5.15) has no converter for RNN, LSTM or GRU at all
(``NotImplementedError: Converter is not implemented``): no target, :data:`ONNX2TORCH_REFUSAL`.
Both converters import torchvision at import time for unrelated operators (NMS, RoiAlign, DeformConv, image
decoding); where torchvision is absent, :func:`_import` lends them a stand-in whose functions raise.
"""

from __future__ import annotations

import sys
import types
from contextlib import contextmanager

import numpy as np

from rnnspec import catalogue
from rnnspec.derivations.variants import Variant
from rnnspec.spec.conventions import gradients_from_framework, to_framework
from rnnspec.spec.conventions import pytorch as conventions
from rnnspec.spec.conventions._layout import first_part
from rnnspec.spec.frameworks import require
from rnnspec.spec.frameworks.onnx_operators import build_model, build_stacked_model
from rnnspec.spec.frameworks.torch_layers import TorchRNN
from rnnspec.spec.targets import TargetError

#: the cells with a cell state (initial_c, Y_c)
WITH_CELL_STATE = catalogue.with_cell_state()
#: the PyTorch packing the converter's module holds for each cell (a reset-before GRU in an nn.GRU's weights)
_TORCH_PACKING = {"elman": "elman", "lstm": "lstm", "gru-reset-after": "gru-reset-after",
                  "gru-reset-before": "gru-reset-after"}
#: the converter's own refusals, as it words them (tests/test_onnx2torch.py checks they still hold)
REFUSED = {"lstm-peephole": "onnx2pytorch 0.6.0 refuses the LSTM's peepholes: "
                            "NotImplementedError: LSTM P not yet implemented.",
           "lstm-coupled": "onnx2pytorch 0.6.0 refuses the LSTM's coupled gates: "
                           "NotImplementedError: LSTM input_forget 1."}
#: onnx2pytorch 0.6.0's answer to the clip attribute (RNN, LSTM and GRU alike: "LSTM clip 1.0"); it declares no clip
CLIP_REFUSAL = "onnx2pytorch 0.6.0 refuses the clip attribute: NotImplementedError: LSTM clip 1.0 (RNN, GRU alike)"
#: onnx2torch 1.5.15's answer to each of the three operators (tests/test_onnx2torch.py checks it still holds)
ONNX2TORCH_REFUSAL = ("onnx2torch 1.5.15 has no converter for ONNX's RNN, LSTM or GRU: NotImplementedError: "
                      "Converter is not implemented (OperationDescription(domain='', operation_type='LSTM', "
                      "version=14))")


def _stand_in_torchvision() -> types.ModuleType:
    """A torchvision whose every function raises: the converters import it for operators no RNN graph has."""

    def missing(name):
        if name.rsplit(".", 1)[-1].startswith("__"):  # __file__, __path__, ...: what introspection asks
            raise AttributeError(name)

        def call(*args, **kwargs):
            raise ImportError(f"torchvision is not installed: {name} needs it (pip install torchvision)")
        return call

    root = types.ModuleType("torchvision")
    for sub in ("ops", "io"):
        module = types.ModuleType(f"torchvision.{sub}")
        module.__getattr__ = lambda name, sub=sub: missing(f"torchvision.{sub}.{name}")
        setattr(root, sub, module)
    root.__getattr__ = lambda name: missing(f"torchvision.{name}")
    return root


@contextmanager
def _torchvision_if_missing():
    """A stand-in torchvision in sys.modules while the converter is imported, only where none imports."""
    import torch  # noqa: F401  (first: torch's own import looks at whatever torchvision is in sys.modules)

    try:
        import torchvision  # noqa: F401
        yield
        return
    except Exception:  # absent, or a build for another torch (its C++ ops fail to register)
        pass
    names = ["torchvision", "torchvision.ops", "torchvision.io"]
    saved = {n: sys.modules.pop(n) for n in list(sys.modules) if n == "torchvision" or n.startswith("torchvision.")}
    root = _stand_in_torchvision()
    sys.modules.update({"torchvision": root, "torchvision.ops": root.ops, "torchvision.io": root.io})
    try:
        yield
    finally:
        for n in names:
            sys.modules.pop(n, None)
        sys.modules.update(saved)


def _import(target: str, module: str):
    """``module`` (onnx2pytorch or onnx2torch), imported with a stand-in torchvision where it has none."""
    with _torchvision_if_missing():
        return require(target, module, "onnx2pytorch")


def baked(model, weights: dict, dtype: str):
    """``model`` with the graph inputs named in ``weights`` made initializers holding those values, and its
    floating-point inputs and outputs declared ``dtype`` (``build_stacked_model`` declares float32)."""
    from onnx import TensorProto, numpy_helper

    out = type(model)()
    out.CopyFrom(model)
    floats = TensorProto.FLOAT if dtype == "float32" else TensorProto.DOUBLE
    for value in [*out.graph.input, *out.graph.output]:
        if value.type.tensor_type.elem_type in (TensorProto.FLOAT, TensorProto.DOUBLE):
            value.type.tensor_type.elem_type = floats
    kept = [i for i in out.graph.input if i.name not in weights]
    del out.graph.input[:]
    out.graph.input.extend(kept)
    out.graph.initializer.extend(numpy_helper.from_array(np.ascontiguousarray(v), name=k) for k, v in weights.items())
    return out


class Onnx2PyTorch:
    """The ONNX RNN / LSTM / GRU operator converted to PyTorch by onnx2pytorch, run on the CPU."""

    cells = tuple(_TORCH_PACKING)
    cell = "elman"
    dtypes = ("float32", "float64")
    activations = ("tanh", "relu")
    variants = ("layers", "bidirectional", "lengths=zero")
    layers, bidirectional, lengths = 1, False, None
    #: why each cell the ONNX operators have but this target does not declare is missing (the converter's words)
    not_provided = REFUSED
    #: PyTorch's intra-op threads during a call, as the ``torch`` target (its docstring says why): on PyTorch's
    #: default, one per core, the LSTM's default check took 15.7 CPU s for 10 cases against 4.8 on one thread
    #: (idle cores; its threads spin between the many small steps of c_t's one-step chain), 68 CPU s for 50 at load 12
    threads: int | None = 1
    #: PyTorch's threads set to ``threads`` for one call and set back after it (TorchRNN's, for the same reason)
    _threads = TorchRNN._threads

    def __init__(self, activation: str = "tanh") -> None:
        self.torch = require("onnx2pytorch", "torch", "onnx2pytorch")
        require("onnx2pytorch", "onnx", "onnx2pytorch")
        self.convert = _import("onnx2pytorch", "onnx2pytorch").ConvertModel
        if activation not in self.activations:
            raise TargetError(f"target 'onnx2pytorch': the RNN converter takes Tanh or Relu, not {activation!r}")
        self.activation = activation

    @property
    def variant(self) -> Variant:
        return Variant(self.layers, self.bidirectional, self.lengths)

    def _tensor(self, array):
        return self.torch.from_numpy(np.array(array))

    def _converted(self, model, weights: dict, dtype: str):
        with self.torch.no_grad():
            return self.convert(baked(model, weights, dtype))

    def _run(self, x, state0, params, lengths, every_c: bool):
        """The converted module, the leaves (x and the initial states) and the outputs."""
        if not self.variant.plain:
            return self._run_variant(x, state0, params, lengths)
        torch = self.torch
        H = state0["h0"].shape[-1]
        module = self._converted(build_model(self.cell, H, self.activation, str(x.dtype)),
                                 to_framework("onnx", self.cell, params), str(x.dtype))
        leaves = {"x": self._tensor(x).requires_grad_(True)}
        leaves.update({k: self._tensor(v[None]).requires_grad_(True) for k, v in state0.items()})
        states = [leaves[k] for k in ("h0", "c0") if k in leaves]
        outputs = module(leaves["x"], *states)
        out = {"h": outputs[0][:, 0]}
        if every_c and self.cell in WITH_CELL_STATE:
            every, start = [], states
            for t in range(x.shape[0]):
                _, h, c = module(leaves["x"][t: t + 1], *start)
                every.append(c[0])
                start = [h, c]
            out["c"] = torch.stack(every)
        return module, leaves, out

    def _run_variant(self, x, state0, params, lengths):
        """The layers chained as the ``onnxruntime`` target chains them; outputs {"h", "h_n"(, "c_n")}."""
        from rnnspec.derivations.variants import run_params
        from rnnspec.spec.contract import contract

        torch = self.torch
        variant = self.variant
        D, L = variant.directions, variant.layers
        H = state0["h0"].shape[-1]
        weights = {}
        for layer in range(L):
            per_direction = [to_framework("onnx", self.cell, run_params(params, contract(self.cell).step_params,
                                                                        variant, layer, d)) for d in range(D)]
            weights.update({f"{k}{layer}": np.concatenate([w[k] for w in per_direction]) for k in ("W", "R", "B")})
        if lengths is not None:
            weights["sequence_lens"] = np.asarray(lengths, dtype=np.int32)
        model = build_stacked_model(self.cell, H, L, D, lengths is not None, self.activation)
        module = self._converted(model, weights, str(x.dtype))
        stacked = (lambda v: v) if variant.stacked else (lambda v: v[None])
        leaves = {"x": self._tensor(x).requires_grad_(True)}
        leaves.update({k: self._tensor(stacked(v)).requires_grad_(True) for k, v in state0.items()})
        keys = [k for k in ("h0", "c0") if k in leaves]
        inputs = [leaves[k][layer * D:(layer + 1) * D] for layer in range(L) for k in keys]
        outputs = module(leaves["x"], *inputs)
        Y, finals = outputs[0], outputs[1:]
        T, B = x.shape[:2]
        unstack = (lambda v: v) if variant.stacked else (lambda v: v[0])
        out = {"h": Y.transpose(1, 2).reshape(T, B, D * H), "h_n": unstack(torch.cat(finals[0::len(keys)]))}
        if len(keys) > 1:
            out["c_n"] = unstack(torch.cat(finals[1::len(keys)]))
        return module, leaves, out

    def _grads(self, module, leaves):
        grad = lambda t: (t.grad if t.grad is not None else self.torch.zeros_like(t)).detach().numpy()
        variant = self.variant
        packing = _TORCH_PACKING[self.cell]
        # the converter names a layer's module after its operator's first output ("LSTM_Y1" for layer 1's Y1; the
        # one-operator graph's is "Y", layer 0) and holds a one-layer PyTorch module in it: its "_l0" is that layer
        named = {}
        for name, p in module.named_parameters():
            node, own = name.split(".")[0], name.rsplit(".", 1)[-1]
            layer = node.rsplit("Y", 1)[-1] or "0"
            named[own.replace("_l0", f"_l{layer}")] = grad(p)
        if variant.plain:
            grads = gradients_from_framework("torch", packing, named)
        else:
            grads = conventions.from_runs(packing, named, first_part, variant)
        # the reset-before GRU has no b_hn: the n block's two biases add up to b_n, whose gradient is either's
        grads = {k: v for k, v in grads.items() if packing == self.cell or not k.startswith("b_hn")}
        grads["x"] = grad(leaves["x"])
        unstack = (lambda v: v) if variant.stacked else (lambda v: v[0])
        grads.update({k: unstack(grad(v)) for k, v in leaves.items() if k != "x"})
        return grads

    def forward(self, x, state0, params, lengths=None):
        with self._threads(), self.torch.no_grad():
            _, _, out = self._run(x, state0, params, lengths, every_c=True)
        return {k: v.numpy() for k, v in out.items()}

    def vjp(self, x, state0, params, cotangents, lengths=None):
        with self._threads():
            return self._vjp(x, state0, params, cotangents, lengths)

    def loss(self, x, state0, params, targets, lengths=None):
        with self._threads():
            return self._loss(x, state0, params, targets, lengths)

    def _vjp(self, x, state0, params, cotangents, lengths):
        module, leaves, out = self._run(x, state0, params, lengths, every_c=True)
        keys = [k for k in sorted(out) if out[k].requires_grad]
        self.torch.autograd.backward([out[k] for k in keys], [self._tensor(cotangents[k]) for k in keys])
        return self._grads(module, leaves)

    def _loss(self, x, state0, params, targets, lengths):
        torch = self.torch
        module, leaves, out = self._run(x, state0, params, lengths, every_c=False)
        V = self._tensor(params["V"]).requires_grad_(True)
        c = self._tensor(params["c"]).requires_grad_(True)
        h = out["h"]
        T, B, _ = h.shape
        logits = torch.nn.functional.linear(h, V, c).reshape(T * B, -1)
        per_step = torch.nn.functional.cross_entropy(logits, self._tensor(np.asarray(targets).reshape(-1)),
                                                     reduction="none")
        if lengths is not None:  # the valid steps only
            valid = np.arange(T)[:, None] < np.asarray(lengths)[None, :]
            per_step = per_step * self._tensor(valid.reshape(-1).astype(x.dtype))
        loss = per_step.sum()
        loss.backward()
        grads = self._grads(module, leaves)
        grads.update(V=V.grad.numpy(), c=c.grad.numpy())
        return float(loss.item()), grads
