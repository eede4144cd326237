"""The built-in targets ``torch-onnx`` and ``torch-onnx-torchscript``: PyTorch's nn.RNN, nn.LSTM (also with
``proj_size``) and nn.GRU exported by ``torch.onnx.export`` and run by ONNX Runtime's CPU provider.

``torch-onnx`` uses the dynamo exporter (``dynamo=True``: torch.export, then onnxscript's torchlib), PyTorch's
default since 2.9; ``torch-onnx-torchscript`` the TorchScript one (``dynamo=False``). Forward only: ONNX Runtime
runs no gradients of these graphs.

What is exported is the framework's own module, built as the ``torch`` target builds it, with its weights made
graph inputs so that one export serves every case of the same sizes (the weights change from case to case, the
exported function does not):

- dynamo: the module is called through ``torch.func.functional_call`` with the weights as arguments, so
  torch.export records them as inputs of the graph (the same aten op nn.GRU calls, fed by them);
- TorchScript: ``keep_initializers_as_inputs=True`` and ``do_constant_folding=False``, the exporter's own
  options for that (its gate reordering then stays in the graph, computed from the inputs); every parameter
  is fed by its name, and an export whose initializers do not name every parameter is refused here, never run
  with the weights it was traced with.

Time and batch are exported as dynamic dimensions. Where an exporter makes one static all the same (the dynamo
exporter unrolls nn.RNN over time: its T is fixed), it is read back from the exported graph's input and made
part of the export's key, so a case of another length gets an export of its own (exports are cached per
target instance: cell, activation, dtype, variant, I, H, P and the dimensions the graph fixed).

nn.LSTM returns the cell state of the last step only; c_t of every step is the final state of the exported
graph run one step from (h_{t-1}, c_{t-1}), chained from (h0, c0), as the ``torch`` target does with the module.

Variants: ``num_layers`` and ``bidirectional`` through both exporters; packed sequences
(``pack_padded_sequence``, ``enforce_sorted=False``, the "zero" semantics) through the TorchScript exporter
only, with the lengths a graph input. PyTorch refuses a length of 0, so, as in the ``torch`` target, those
sequences are left out of the batch that is run: their outputs are zero and their final states their initial
ones. The dynamo exporter refuses packed sequences (torch.export cannot trace the data-dependent batch sizes:
:data:`REFUSALS`).
"""

from __future__ import annotations

import io
import logging
import warnings
from contextlib import contextmanager

import numpy as np

from rnnspec import catalogue
from rnnspec.derivations.variants import Variant
from rnnspec.spec.conventions import pytorch as conventions
from rnnspec.spec.conventions import to_framework
from rnnspec.spec.conventions._layout import GATES, gates
from rnnspec.spec.frameworks import require
from rnnspec.spec.frameworks.torch_layers import LAYERS

#: the cells with a cell state c (nn.LSTM, with or without proj_size)
WITH_CELL_STATE = catalogue.with_cell_state()

#: what ONNX Runtime answers for a float64 RNN, LSTM or GRU operator (1.32.0), which is what both exporters make
#: of nn.LSTM and nn.GRU (and the TorchScript exporter of nn.RNN)
NO_DOUBLE = ("ONNX Runtime's CPU provider has no double kernel for the RNN operator (NOT_IMPLEMENTED at session "
             "creation) and its LSTM and GRU kernels answer 'operator does not support double yet'")

#: what each exporter refuses, in the exporter's own words (torch 2.13.0, onnxscript 0.7.2; the tests in
#: tests/test_onnx_export.py check that the exporters still answer so)
REFUSALS = {
    "torchscript": {
        "lstm-proj": "torch.onnx.export(dynamo=False): 'Unsupported: ONNX export of operator LSTM, LSTMs with "
                     "projections' (SymbolicValueError)",
    },
    "dynamo": {
        "lengths=zero": "torch.onnx.export(dynamo=True) of pack_padded_sequence: torch.export fails with "
                        "GuardOnDataDependentSymNode ('Could not guard on data-dependent expression'): the packed "
                        "batch sizes are data",
    },
}


@contextmanager
def _quiet():
    """The exporters' progress lines, warnings and the TorchScript exporter's graph dumps kept off the report."""
    torch_onnx = logging.getLogger("torch.onnx")
    level = torch_onnx.level
    torch_onnx.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        torch_onnx.setLevel(level)


class _Store:
    """Exported graphs kept on disk between runs: ``<XDG_CACHE_HOME, else ~/.cache>/rnnspec-onnx-export/<digest>/``,
    the digest of the exporter, the versions of torch, onnxscript and onnx, and this module's source, so that a new
    version of any of them exports anew. A graph is stored under the digest of its key, with the axes its export
    fixed; ``RNNSPEC_ONNX_EXPORT_CACHE=0`` turns the store off (every run exports anew)."""

    def __init__(self, exporter: str, key: str) -> None:
        import hashlib
        import importlib.metadata
        import os
        from pathlib import Path

        self.folder = None
        if os.environ.get("RNNSPEC_ONNX_EXPORT_CACHE", "1") == "0":
            return
        versions = []
        for package in ("torch", "onnxscript", "onnx"):
            try:
                versions.append(f"{package} {importlib.metadata.version(package)}")
            except importlib.metadata.PackageNotFoundError:
                versions.append(f"{package} -")
        source = Path(__file__).read_bytes()
        digest = hashlib.sha256(repr((exporter, versions)).encode() + source).hexdigest()[:16]
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        self.folder = Path(base) / "rnnspec-onnx-export" / digest
        self.stem = hashlib.sha256(key.encode()).hexdigest()[:24]

    def load(self) -> list[tuple[bytes, list[str]]]:
        """The stored graphs of this key, with the names of the example's inputs they were exported with."""
        if self.folder is None or not self.folder.is_dir():
            return []
        out = []
        for path in sorted(self.folder.glob(f"{self.stem}*.onnx")):
            try:
                inputs = path.with_suffix(".inputs").read_text().split()
                out.append((path.read_bytes(), inputs))
            except OSError:
                continue  # written by another process this instant: export anew
        return out

    def save(self, proto_bytes: bytes, static: dict[int, int], inputs: list[str]) -> None:
        import os

        if self.folder is None:
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            name = self.stem + "".join(f"-{axis}_{size}" for axis, size in sorted(static.items()))
            # written whole under another name first, so a reader never sees half a file
            for suffix, data in ((".inputs", " ".join(inputs).encode()), (".onnx", proto_bytes)):
                partial = self.folder / f"{name}{suffix}.{os.getpid()}"
                partial.write_bytes(data)
                partial.replace(self.folder / f"{name}{suffix}")
        except OSError:
            pass  # a store that cannot be written only costs time


class _Export:
    """One exported graph in an ONNX Runtime session, and how to feed it."""

    def __init__(self, proto_bytes: bytes, ort, static: dict[int, int], weight_names: list[str],
                 inputs: list[str]) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.log_severity_level = 4  # fatal only: a failing run raises its error, which the report shows
        self.session = ort.InferenceSession(proto_bytes, options, providers=["CPUExecutionProvider"])
        self.proto_bytes = proto_bytes
        #: the axes of x that the exporter fixed despite being asked for dynamic ones: axis -> size
        self.static = static
        self.weight_names = weight_names
        self.inputs = inputs

    def fits(self, x_shape: tuple[int, ...]) -> bool:
        return all(x_shape[axis] == size for axis, size in self.static.items())


class TorchOnnx:
    """nn.RNN / nn.LSTM / nn.GRU exported by ``torch.onnx.export(dynamo=True)``, run in ONNX Runtime."""

    exporter = "dynamo"
    name = "torch-onnx"
    cells = tuple(LAYERS)
    cell = "elman"
    dtypes = ("float32",)
    activations = ("tanh", "relu")
    variants = ("layers", "bidirectional")
    layers, bidirectional, lengths = 1, False, None
    #: the generated cases on this many shapes (rnnspec.spec.cases.few_shapes): a dynamo export costs seconds, one
    #: per shape; ``--shapes all`` gives every case its own, which is where defect 7 of docs/exporters.md shows
    shapes: int | None = 4
    #: why a cell, dtype or variant it does not declare is missing (the compatibility matrix prints it)
    not_provided = {"float64": NO_DOUBLE, **REFUSALS["dynamo"]}

    def __init__(self, activation: str = "tanh") -> None:
        self.torch = require(self.name, "torch", "torch")
        self.ort = require(self.name, "onnxruntime", "onnx")
        require(self.name, "onnx", "onnx")
        if self.exporter == "dynamo":
            require(self.name, "onnxscript", "onnx-export")
        if activation not in self.activations:
            from rnnspec.spec.targets import TargetError

            raise TargetError(f"target {self.name!r}: nn.RNN has no {activation!r} nonlinearity")
        self.activation = activation
        self._exports: dict[tuple, list[_Export]] = {}

    @property
    def variant(self) -> Variant:
        return Variant(self.layers, self.bidirectional, self.lengths)

    # -- the module and its export -------------------------------------------------------------------------

    def _weights(self, params) -> dict[str, np.ndarray]:
        """The module's weights, by PyTorch's names, from the canonical parameters."""
        variant = self.variant
        if variant.stacked:
            return conventions.to_runs(self.cell, params, variant)
        return to_framework("torch", self.cell, params)

    def _module(self, weights: dict, dtype):
        torch = self.torch
        gates_H, I = weights["weight_ih_l0"].shape
        H = gates_H // len(gates(GATES[self.cell]))
        options = {"nonlinearity": self.activation} if self.cell == "elman" else {}
        if "weight_hr_l0" in weights:
            options["proj_size"] = weights["weight_hr_l0"].shape[0]
        variant = self.variant
        options.update(num_layers=variant.layers, bidirectional=variant.bidirectional)
        module = getattr(torch.nn, LAYERS[self.cell])(I, H, **options).to(dtype)
        with torch.no_grad():
            for name, value in weights.items():
                getattr(module, name).copy_(torch.from_numpy(np.array(value)))
        return module.eval()

    def _export(self, weights: dict, example: dict) -> _Export:
        """The module of these weights' sizes exported with ``example`` (x, h0, c0, lengths) as its inputs."""
        key = (self.cell, self.activation, str(example["x"].dtype), self.variant,
               tuple((k, v.shape) for k, v in weights.items()))
        x_shape = example["x"].shape
        for made in self._exports.get(key, []):
            if made.fits(x_shape):
                return made
        store = _Store(self.exporter, repr(key))
        for proto_bytes, inputs in store.load():
            made = self._session(proto_bytes, inputs)
            if made.fits(x_shape):
                self._exports.setdefault(key, []).append(made)
                return made
        torch = self.torch
        dtype = torch.float32 if example["x"].dtype == np.float32 else torch.float64
        module = self._module(weights, dtype)
        tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in _example(example, self.exporter).items()}
        with _quiet():
            proto_bytes = (self._dynamo if self.exporter == "dynamo" else self._torchscript)(module, tensors)
        made = self._session(proto_bytes, list(example))
        if not made.fits(x_shape):  # the exporter fixed an axis at the example's size: export at the case's own
            with _quiet():
                tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in example.items()}
                proto_bytes = (self._dynamo if self.exporter == "dynamo" else self._torchscript)(module, tensors)
            made = self._session(proto_bytes, list(example))
        store.save(proto_bytes, made.static, list(example))
        self._exports.setdefault(key, []).append(made)
        return made

    def _session(self, proto_bytes: bytes, inputs: list[str]) -> _Export:
        import onnx

        proto = onnx.load_from_string(proto_bytes)
        names = [i.name for i in proto.graph.input]
        if self.exporter == "dynamo":
            # Exported.forward(x, states, weights): the graph's inputs are x, the states, then the weights
            states = len([k for k in inputs if k in ("h0", "c0")])
            weight_names = names[1 + states:]
        else:
            weight_names = [i.name for i in proto.graph.initializer if i.name.startswith("layer.")]
        return _Export(proto_bytes, self.ort, _static_axes(proto, 0), weight_names, names)

    def _dynamo(self, module, tensors: dict) -> bytes:
        torch = self.torch
        names = [n for n, _ in module.named_parameters()]
        with_c = self.cell in WITH_CELL_STATE

        class Exported(torch.nn.Module):
            """nn.<layer> with its weights as arguments (torch.export records them as graph inputs)."""

            def __init__(self):
                super().__init__()
                self.layer = module

            def forward(self, x, states, weights):
                start = tuple(states) if with_c else states[0]
                out, final = torch.func.functional_call(self.layer, dict(zip(names, weights)), (x, start))
                return (out, *final) if with_c else (out, final)

        T = torch.export.Dim("T")
        B = torch.export.Dim("B")
        weights = [p.detach() for p in module.parameters()]
        states = [tensors[k] for k in ("h0", "c0") if k in tensors]
        shapes = {"x": {0: T, 1: B}, "states": [{1: B}] * len(states), "weights": [None] * len(weights)}
        program = torch.onnx.export(Exported(), (tensors["x"], states, weights), dynamo=True,
                                    dynamic_shapes=shapes, verbose=False)
        return program.model_proto.SerializeToString()

    def _torchscript(self, module, tensors: dict) -> bytes:
        import onnx
        torch = self.torch
        from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

        with_c = self.cell in WITH_CELL_STATE
        packed = "lengths" in tensors

        class Exported(torch.nn.Module):
            """nn.<layer>, its inputs packed when the sequences have lengths."""

            def __init__(self):
                super().__init__()
                self.layer = module

            def forward(self, x, h0, *rest):
                c0, lengths = (rest[0], rest[1:]) if with_c else (None, rest)
                start = (h0, c0) if with_c else h0
                if packed:
                    sequences = pack_padded_sequence(x, lengths[0], enforce_sorted=False)
                    out, final = self.layer(sequences, start)
                    out, _ = pad_packed_sequence(out, total_length=x.shape[0])
                else:
                    out, final = self.layer(x, start)
                return (out, *final) if with_c else (out, final)

        inputs = ["x", "h0"] + (["c0"] if with_c else []) + (["lengths"] if packed else [])
        axes = {"x": {0: "T", 1: "B"}, "h0": {1: "B"}, "c0": {1: "B"}, "lengths": {0: "B"}}
        buffer = io.BytesIO()
        # the TorchScript exporter prints the traced graph on some errors: kept off the report (the error says why)
        torch.onnx.export(Exported(), tuple(tensors[k] for k in inputs), buffer, dynamo=False,
                          input_names=inputs, dynamic_axes={k: axes[k] for k in inputs},
                          keep_initializers_as_inputs=True, do_constant_folding=False)
        proto = onnx.load_from_string(buffer.getvalue())
        initializers = {i.name for i in proto.graph.initializer}
        names = [f"layer.{n}" for n, _ in module.named_parameters()]
        missing = [n for n in names if n not in initializers]
        if missing:
            raise RuntimeError(f"the TorchScript exporter's graph has no initializers {missing} (it has "
                               f"{sorted(initializers)}): the weights cannot be fed, so the graph is not run")
        return buffer.getvalue()

    # -- running ----------------------------------------------------------------------------------------------

    def _run(self, made: _Export, weights: dict, feed: dict) -> list[np.ndarray]:
        values = {k: np.ascontiguousarray(v) for k, v in feed.items()}
        if self.exporter == "dynamo":
            if len(made.weight_names) != len(weights):
                raise RuntimeError(f"the exported graph takes weights {made.weight_names}; the module has "
                                   f"{list(weights)}")
            # the weights in the module's order (named_parameters), which is the order of Exported's arguments
            values.update({name: np.ascontiguousarray(w) for name, w in zip(made.weight_names, weights.values())})
        else:
            # the initializers keep the parameters' names (Exported holds the module as ``layer``)
            named = {f"layer.{name}": w for name, w in weights.items()}
            if sorted(named) != sorted(made.weight_names):
                raise RuntimeError(f"the exported graph's initializers are {made.weight_names}; the module's "
                                   f"parameters {list(named)}: the weights cannot all be fed, so it is not run")
            values.update({k: np.ascontiguousarray(w) for k, w in named.items()})
        if self.exporter == "dynamo":
            # Exported.forward(x, states, weights): x, the states and the weights in the graph's input order
            ordered = [values["x"]] + [values[k] for k in ("h0", "c0") if k in values]
            values = dict(zip(made.inputs, ordered + [values[n] for n in made.weight_names]))
        return made.session.run(None, values, self._run_options())

    def _run_options(self):
        options = self.ort.RunOptions()
        options.log_severity_level = 4  # its error is raised, not also printed (3 still prints errors)
        return options

    def forward(self, x, state0, params, lengths=None):
        weights = self._weights(params)
        # the weights in the module's own order (named_parameters), as the export lists them
        order = [n for n in _parameter_order(self.cell, self.variant) if n in weights]
        weights = {n: weights[n] for n in order}
        if self.variant.plain:
            return self._forward_plain(x, state0, weights)
        return self._forward_variant(x, state0, weights, lengths)

    def _forward_plain(self, x, state0, weights):
        feed = {"x": x, "h0": state0["h0"][None]}
        if self.cell in WITH_CELL_STATE:
            feed["c0"] = state0["c0"][None]
        made = self._export(weights, feed)
        outputs = self._run(made, weights, feed)
        out = {"h": outputs[0]}
        if self.cell in WITH_CELL_STATE:
            # c_t of every step: the graph run one step at a time from the previous step's final states
            h, c, every = feed["h0"], feed["c0"], []
            for t in range(x.shape[0]):
                step = {"x": x[t: t + 1], "h0": h, "c0": c}
                _, h, c = self._run(self._export(weights, step), weights, step)
                every.append(c[0])
            out["c"] = np.stack(every) if every else np.zeros((0,) + state0["c0"].shape, x.dtype)
        return out

    def _forward_variant(self, x, state0, weights, lengths):
        variant = self.variant
        stacked = (lambda v: v) if variant.stacked else (lambda v: v[None])
        unstack = (lambda v: v) if variant.stacked else (lambda v: v[0])
        starts = {k: stacked(v) for k, v in state0.items()}
        with_c = self.cell in WITH_CELL_STATE
        T, B = x.shape[:2]
        width = state0["h0"].shape[-1] * variant.directions
        if lengths is None:
            live = np.arange(B)
        else:
            lengths = np.asarray(lengths)
            live = np.flatnonzero(lengths > 0)  # PyTorch refuses a length of 0: those sequences are not run
        out = {"h": np.zeros((T, B, width), x.dtype), "h_n": starts["h0"].copy()}
        if with_c:
            out["c_n"] = starts["c0"].copy()
        if live.size:
            feed = {"x": x[:, live], "h0": starts["h0"][:, live]}
            if with_c:
                feed["c0"] = starts["c0"][:, live]
            if lengths is not None:
                feed["lengths"] = lengths[live].astype(np.int64)
            outputs = self._run(self._export(weights, feed), weights, feed)
            out["h"][:, live] = outputs[0]
            out["h_n"][:, live] = outputs[1]
            if with_c:
                out["c_n"][:, live] = outputs[2]
        out["h_n"] = unstack(out["h_n"])
        if with_c:
            out["c_n"] = unstack(out["c_n"])
        return out


class TorchOnnxTorchScript(TorchOnnx):
    """The same layers exported by ``torch.onnx.export(dynamo=False)`` (the TorchScript exporter)."""

    exporter = "torchscript"
    name = "torch-onnx-torchscript"
    cells = tuple(c for c in LAYERS if c not in REFUSALS["torchscript"])
    variants = ("layers", "bidirectional", "lengths=zero")
    shapes = None  # a TorchScript export costs milliseconds: every case its own shape
    not_provided = {"float64": NO_DOUBLE, **REFUSALS["torchscript"]}


def _example(example: dict, exporter: str) -> dict:
    """The inputs to export with: for the dynamo exporter, T and B at least 2, since torch.export treats a dimension
    whose example size is 1 as a constant (and an export of nn.GRU(1, 1, num_layers=2, bidirectional=True) with
    its weights as inputs at T = B = 1 failed in torch.export's while_loop). The values do not matter to the
    exported graph, only the shapes; an axis the export fixed all the same is exported again at the case's size."""
    if exporter != "dynamo":
        return example
    grown = {}
    for name, value in example.items():
        shape = list(value.shape)
        axes = (0, 1) if name == "x" else (1,)
        for axis in axes:
            shape[axis] = max(shape[axis], 2)
        out = np.zeros(shape, value.dtype)
        out[tuple(slice(0, n) for n in value.shape)] = value
        grown[name] = out
    return grown


def _parameter_order(cell: str, variant: Variant) -> list[str]:
    """nn.RNN/LSTM/GRU's parameter names in named_parameters() order (per layer and direction: weight_ih,
    weight_hh, bias_ih, bias_hh, weight_hr)."""
    names = []
    for layer, direction in variant.runs():
        suffix = f"_l{layer}" + ("_reverse" if direction else "")
        names += [f"{n}{suffix}" for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")]
    return names


def _static_axes(proto, index: int) -> dict[int, int]:
    """The axes of graph input ``index`` whose size the exported graph fixed: axis -> size."""
    dims = proto.graph.input[index].type.tensor_type.shape.dim
    return {axis: d.dim_value for axis, d in enumerate(dims) if d.HasField("dim_value")}
