"""The oracle: forward, VJP and loss of a cell, evaluated from the derived equations.

It implements the implementation contract (DESIGN.md) for every registered cell and is the built-in
target ``oracle``. Arrays are time-major, batch rows; each state starts from ``state0[key + "0"]``
(``h0``, and the LSTM's ``c0``), or, with ``default_state`` (the variant ``state0=default``), from zeros
with no ``state0`` passed and no gradient of it returned. Nothing here writes a formula: forward runs the
cell's equations, backward runs the engine's.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property

import numpy as np

from rnnspec import catalogue
from rnnspec.derivations.cells import Cell, elman
from rnnspec.derivations.derive import Derivation, derive
from rnnspec.derivations.evaluate import Backend, backend, evaluate
from rnnspec.derivations.registry import CELL_NAMES, check_name
from rnnspec.derivations.registry import cell as registered_cell
from rnnspec.derivations.rounding import Rounding
from rnnspec.derivations.tensors import Var

Arrays = Mapping[str, np.ndarray]


class Oracle:
    """Reference implementation of a cell in float64, complex128, mpmath or SymPy arithmetic.

    ``rounding`` makes its elementwise functions those of another accurate library (a float backend's
    tanh, exp, log rounded within some ulps of a dtype): the tolerance model's correct computations.
    """

    #: the cells the built-in target ``oracle`` implements (the suite sets ``cell`` before each call)
    cells = CELL_NAMES
    #: the variants it runs (rnnspec.derivations.composed); the suite sets ``layers``, ``bidirectional``,
    #: ``lengths`` (the padded steps' semantics) and ``default_state`` before each call
    variants = ("layers", "bidirectional", "lengths=zero", "lengths=carry", "state0=default")
    layers, bidirectional, lengths = 1, False, None
    #: True: no state0 is passed, every state starts at zero, and vjp and loss return no gradient of it
    default_state = False

    def __init__(self, activation: str = "tanh", backend: str = "float64", bias: bool = True,
                 head: str | None = "softmax-ce", cell: str | Cell = "elman", rounding: Rounding | None = None) -> None:
        if isinstance(cell, Cell):
            self._spec = cell
            self.cell = cell.name
        else:
            check_name(cell)
            self._spec = None
            self.cell = cell
        self.activation = activation
        self.bias = bias
        self.head = head
        self.backend_name = backend
        self.rounding = rounding
        self.dtypes = ("float64",)

    def __repr__(self) -> str:
        return f"Oracle(activation={self.activation!r}, backend={self.backend_name!r}, head={self.head!r})"

    @property
    def spec(self) -> Cell:
        """The cell's equations (looked up at each use: the suite sets ``cell`` and ``activation``)."""
        return self.derivation.cell

    @property
    def derivation(self) -> Derivation:
        key = (self.cell, self.activation, self.head, self.bias)
        if getattr(self, "_derived", (None,))[0] != key:  # hashing a Cell costs more than a step
            if self._spec is not None:
                made = self._spec
            elif self.cell == "elman" and not self.bias:
                made = elman(self.activation, False, self.head)
            else:
                made = registered_cell(self.cell, self.activation, self.head)
            self._derived = (key, derive(made))
        return self._derived[1]

    @cached_property
    def be(self) -> Backend:
        return backend(self.backend_name, self.rounding)

    def _composed(self, lengths):
        """The variant's oracle, or None for one forward layer over full sequences (which takes no lengths)."""
        from rnnspec.derivations.composed import Composed
        from rnnspec.derivations.variants import Variant

        variant = Variant(self.layers, self.bidirectional, self.lengths, self.default_state)
        if not variant.plain:
            return Composed(self.cell, variant, self.activation, self.backend_name, self.rounding, self.head)
        if lengths is not None:
            raise ValueError("lengths: given to a run without lengths (set the oracle's lengths to 'zero' or 'carry')")
        return None

    # -- the contract -------------------------------------------------------------------------
    def forward(self, x: np.ndarray, state0: Arrays, params: Arrays, lengths=None) -> dict[str, np.ndarray]:
        if (composed := self._composed(lengths)) is not None:
            return composed.forward(x, state0, params, lengths)
        tapes, _ = self._forward(x, state0, params)
        return {out.key: self._stack([tape[out.name] for tape in tapes], out) for out in self.spec.state_out}

    def vjp(self, x: np.ndarray, state0: Arrays, params: Arrays, cotangents: Arrays,
            lengths=None) -> dict[str, np.ndarray]:
        if (composed := self._composed(lengths)) is not None:
            return composed.vjp(x, state0, params, cotangents, lengths)
        tapes, sizes = self._forward(x, state0, params)
        per_step = self._cotangents(cotangents, len(tapes))
        return self._given(self._backward(tapes, per_step, sizes, self._step_params(params)))

    def _given(self, grads: dict) -> dict:
        """``grads`` without the initial states' when they were not passed (``default_state``)."""
        if self.default_state:
            for out in self.spec.state_out:
                grads.pop(out.key + "0", None)
        return grads

    def _cotangents(self, cotangents: Arrays, steps: int) -> list[dict[str, np.ndarray]]:
        """Per step, state name -> the cotangent given for it (by its contract key)."""
        by_key = {o.key: o.name for o in self.spec.state_out}
        for key in cotangents:
            if key not in by_key:
                raise ValueError(f"cotangents: unknown key {key!r} (expected {sorted(by_key)})")
        given = {by_key[k]: self.be.asarray(v) for k, v in cotangents.items()}
        return [{k: v[t] for k, v in given.items()} for t in range(steps)]

    def loss(self, x: np.ndarray, state0: Arrays, params: Arrays, targets: np.ndarray, lengths=None):
        """Sum over time and batch of the head's loss, and the gradients of every input."""
        if (composed := self._composed(lengths)) is not None:
            return composed.loss(x, state0, params, targets, lengths)
        tapes, sizes = self._forward(x, state0, params)
        return self._loss(tapes, sizes, params, targets)

    def _loss(self, tapes, sizes, params: Arrays, targets: np.ndarray):
        head = self.spec.head
        head_params = {v.name: self._param(params, v) for v in head.params}
        for v in head.params:
            self._size_check(sizes, v, head_params[v.name].shape, "params")
        y = self._targets(targets, sizes, len(tapes))
        total = self.be.zeros(())
        head_grads = {v.name: self.be.zeros(head_params[v.name].shape) for v in head.params}
        per_step = []
        batch = sizes["B"]
        for t, tape in enumerate(tapes):
            env = self._head_forward(tape, head_params, y[t], sizes)
            total = total + np.sum(env[head.loss.name])
            env["g_" + head.loss.name] = self._ones((batch,))
            for eq in self.derivation.head_backward:
                env[eq.target.name] = evaluate(eq, env, self.derivation.quantities, sizes, batch, self.be)
            for v in head.params:
                head_grads[v.name] = head_grads[v.name] + env["g_" + v.name]
            per_step.append({head.reads.name: env["g_" + head.reads.name]})
        grads = self._given(self._backward(tapes, per_step, sizes, self._step_params(params)))
        grads.update(head_grads)
        value = total[()] if isinstance(total, np.ndarray) else total
        return (float(value) if self.be.name in catalogue.DTYPES else value), grads

    def everything(self, x: np.ndarray, state0: Arrays, params: Arrays, cotangents: Arrays, targets: np.ndarray):
        """forward, vjp and loss of one case with a single forward pass: (states, vjp grads, (loss, grads)).

        ``states`` holds every step quantity of the cell by name (``z`` for Elman; the LSTM's cell state
        is ``C``), stacked over time.
        """
        tapes, sizes = self._forward(x, state0, params)
        states = {eq.target.name: self._stack([tape[eq.target.name] for tape in tapes], eq.target)
                  for eq in self.spec.step}
        vjp = self._backward(tapes, self._cotangents(cotangents, len(tapes)), sizes, self._step_params(params))
        return states, self._given(vjp), self._loss(tapes, sizes, params, targets)

    def outputs(self, x: np.ndarray, state0: Arrays, params: Arrays) -> np.ndarray:
        """o_t of the head for every step, (T, B, K)."""
        tapes, sizes = self._forward(x, state0, params)
        head = self.spec.head
        head_params = {v.name: self._param(params, v) for v in head.params}
        zeros_y = self.be.zeros((sizes["B"], sizes["K"]))
        out = []
        for tape in tapes:
            env = self._head_forward(tape, head_params, zeros_y, sizes)
            for eq in head.outputs:
                env[eq.target.name] = evaluate(eq, env, self.derivation.quantities, sizes, sizes["B"], self.be)
            out.append(env[head.outputs[0].target.name])
        return self._stack(out, head.outputs[0].target)

    # -- the machinery ------------------------------------------------------------------------
    def _ones(self, shape) -> np.ndarray:
        return self.be.zeros(shape) + self.be.constant(1)

    def _param(self, params: Arrays, var: Var) -> np.ndarray:
        if var.name not in params:
            raise ValueError(f"params: missing {var.name!r} (expected keys {[v.name for v in self.spec.params]})")
        return self.be.asarray(params[var.name])

    def _step_params(self, params: Arrays) -> dict[str, np.ndarray]:
        return {v.name: self._param(params, v) for v in self.spec.params}

    def _size_check(self, sizes: dict[str, int], var: Var, shape: tuple, where: str) -> None:
        if len(shape) != len(var.shape):
            raise ValueError(f"{where}[{var.name!r}]: expected {len(var.shape)} dims {var.shape}, got shape {shape}")
        for name, n in zip(var.shape, shape):
            if sizes.setdefault(name, n) != n:
                raise ValueError(f"{where}[{var.name!r}]: size {name}={n} disagrees with {sizes[name]} "
                                 f"set by another argument (shape {shape})")

    def _forward(self, x: np.ndarray, state0: Arrays, params: Arrays, extra: Arrays | None = None):
        """Every step's quantities (the tapes) and the sizes; ``extra`` holds the step inputs after x,
        each (T, B, ...) (the mask of :func:`rnnspec.derivations.variants.masked`)."""
        cell = self.spec
        xs = self.be.asarray(x)
        if xs.ndim != 3:
            raise ValueError(f"x: expected (T, B, I), got shape {xs.shape}")
        sizes = {"B": xs.shape[1]}
        x_var, *others = cell.inputs
        extra = {v.name: self.be.asarray(extra[v.name]) for v in others} if others else {}
        self._size_check(sizes, x_var, xs.shape[2:], "x")
        step_params = self._step_params(params)
        for v in cell.params:
            self._size_check(sizes, v, step_params[v.name].shape, "params")
        state = {}
        if self.default_state and state0:
            raise ValueError(f"state0: the initial states are the default (zeros) here, none may be passed; got "
                             f"{sorted(state0)}")
        for inp, out in cell.states:
            key = out.key + "0"
            if self.default_state:  # the framework's default: zeros, sized by the parameters read above
                state[inp.name] = self.be.zeros((sizes["B"], *(sizes[d] for d in inp.shape)))
                continue
            if key not in state0:
                raise ValueError(f"state0: missing {key!r}")
            value = self.be.asarray(state0[key])
            if value.ndim != 2 or value.shape[0] != sizes["B"]:
                raise ValueError(f"state0[{key!r}]: expected (B, H) with B={sizes['B']}, got {value.shape}")
            self._size_check(sizes, inp, value.shape[1:], "state0")
            state[inp.name] = value
        tapes = []
        for t in range(xs.shape[0]):
            env = {**step_params, **state, x_var.name: xs[t], **{k: v[t] for k, v in extra.items()}}
            for eq in cell.step:
                env[eq.target.name] = evaluate(eq, env, self.derivation.quantities, sizes, sizes["B"], self.be)
            tapes.append(env)
            state = {inp.name: env[out.name] for inp, out in cell.states}
        return tapes, sizes

    def _head_forward(self, tape: Arrays, head_params: Arrays, y: np.ndarray, sizes) -> dict:
        head = self.spec.head
        env = {**tape, **head_params, head.target.name: y}
        shifts = {s.source.name: s for s in head.shifts}
        for eq in head.equations:
            env[eq.target.name] = evaluate(eq, env, self.derivation.quantities, sizes, sizes["B"], self.be)
            if eq.target.name in shifts:
                shift = shifts[eq.target.name]
                env[shift.target.name] = self.be.shift(shift, env[eq.target.name])
        return env

    def _targets(self, targets: np.ndarray, sizes: dict, steps: int) -> np.ndarray:
        targets = np.asarray(targets)
        batch, classes = sizes["B"], sizes["K"]
        if self.head == "softmax-ce":
            if targets.shape != (steps, batch) or not np.issubdtype(targets.dtype, np.integer):
                raise ValueError(f"targets: expected integers of shape (T, B)=({steps}, {batch}), "
                                 f"got {targets.dtype} {targets.shape}")
            if targets.size and (targets.min() < 0 or targets.max() >= classes):
                raise ValueError(f"targets: class indices must lie in [0, {classes}), got "
                                 f"[{targets.min()}, {targets.max()}]")
            return self.be.asarray(np.eye(classes, dtype=np.int64)[targets])
        if targets.shape != (steps, batch, classes):
            raise ValueError(f"targets: expected (T, B, K)=({steps}, {batch}, {classes}), got {targets.shape}")
        return self.be.asarray(targets)

    def _backward(self, tapes, per_step, sizes, step_params, record: list | None = None) -> dict[str, np.ndarray]:
        """BPTT: the step's backward equations for t = T..1, carrying g_{state_in} to t-1.

        ``record`` receives, for t = T..1, the cotangents carried to step t-1 (by state name)."""
        cell, batch = self.spec, sizes["B"]
        steps = len(tapes)
        grads = {v.name: self.be.zeros(step_params[v.name].shape) for v in cell.params}
        x_var = cell.inputs[0]
        gx = self.be.zeros((steps, batch, *(sizes[d] for d in x_var.shape)))
        carried = {out.name: self.be.zeros((batch, *(sizes[d] for d in out.shape))) for out in cell.state_out}
        for t in reversed(range(steps)):
            env = dict(tapes[t])
            for out in cell.state_out:
                env[self.derivation.seeds[out.name]] = carried[out.name] + per_step[t].get(out.name, 0)
            for eq in self.derivation.step_backward:
                env[eq.target.name] = evaluate(eq, env, self.derivation.quantities, sizes, batch, self.be)
            for v in cell.params:
                grads[v.name] = grads[v.name] + env["g_" + v.name]
            gx[t] = env["g_" + x_var.name]
            carried = {out.name: env["g_" + inp.name] for inp, out in cell.states}
            if record is not None:
                record.append(carried)
        grads[x_var.name] = gx
        for out in cell.state_out:
            grads[out.key + "0"] = carried[out.name]
        return grads

    def _stack(self, items: list[np.ndarray], var: Var) -> np.ndarray:
        if items:
            return np.stack(items)
        raise ValueError(f"{var.name}: the sequence is empty (T=0)")
