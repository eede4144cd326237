"""Built-in targets over rnnspec's own kernels: the Numba CPU kernels and the numba-cuda ones.

Under ``state0=default`` the kernels, whose API takes the initial states, are passed zeros (the default a
framework would supply), and the gradients of those zeros are not returned.
"""

from __future__ import annotations

from rnnspec import catalogue
from rnnspec.derivations.variants import Variant
from rnnspec.kernels.checks import ACTIVATIONS as KERNEL_ACTIVATIONS
from rnnspec.spec.contract import default_state0
from rnnspec.spec.targets import TargetError


class RnnspecCPU:
    """The Numba CPU kernels (rnnspec.kernels): every cell, through the one API they share."""

    cells = catalogue.NAMES  # the kernels implement every cell of the catalogue
    cell = "elman"
    dtypes = ("float32", "float64")
    activations = KERNEL_ACTIVATIONS
    #: float32 uses vectorizing forms (kernels/cpu/elementwise.py): tanh within 6.5 ulps, the logistic
    #: function within 2.4; float64 too (exp64 and tanh64, Cephes' forms): exp within 1.7 ulps, tanh 1.4, the
    #: logistic function 2.4, as libm's form was
    accuracy = {"float32": 8, "float64": "accurate"}
    variants = ("layers", "bidirectional", "lengths=zero", "lengths=carry", "state0=default")
    layers, bidirectional, lengths = 1, False, None
    #: True (state0=default): state0 is {}; the kernels get zeros
    default_state = False

    def __init__(self, activation: str = "tanh") -> None:
        self.activation = activation

    def _state0(self, x, state0, params) -> dict:
        """``state0``, or zeros in x's dtype under state0=default (the kernels take the initial states)."""
        if not self.default_state:
            return state0
        if state0:
            raise ValueError(f"state0: none is passed under state0=default, got {sorted(state0)}")
        variant = Variant(self.layers, self.bidirectional, self.lengths, True)
        return default_state0(self.cell, variant, x, params)

    def _given(self, grads: dict, state0: dict) -> dict:
        """The gradients without those of the zeros passed for the default initial states."""
        return {k: v for k, v in grads.items() if k not in state0} if self.default_state else grads

    def _options(self, lengths) -> dict:
        """The kernels' keywords: the activation, and the variant the suite set (rnnspec.kernels.cpu.variants)."""
        options = {"activation": self.activation}
        if self.layers != 1 or self.bidirectional or self.lengths is not None:
            options.update(layers=self.layers, bidirectional=self.bidirectional, lengths=lengths,
                           padding=self.lengths or "zero")
        return options

    def forward(self, x, state0, params, lengths=None):
        from rnnspec.kernels import forward

        return forward(self.cell, x, self._state0(x, state0, params), params, **self._options(lengths))

    def vjp(self, x, state0, params, cotangents, lengths=None):
        from rnnspec.kernels import backward

        start = self._state0(x, state0, params)
        return self._given(backward(self.cell, x, start, params, cotangents, **self._options(lengths)), start)

    def loss(self, x, state0, params, targets, lengths=None):
        from rnnspec.kernels import loss

        start = self._state0(x, state0, params)
        value, grads = loss(self.cell, x, start, params, targets, **self._options(lengths))
        return float(value), self._given(grads, start)


def _cuda_kernels():
    """rnnspec.kernels.cuda, or TargetError saying what to install."""
    try:
        from rnnspec.kernels import cuda
    except ImportError as exc:
        raise TargetError(f"target 'rnnspec-cuda': {exc} (pip install numba-cuda, and a GPU or "
                          "NUMBA_ENABLE_CUDASIM=1)") from exc
    return cuda


def _require_a_device() -> None:
    """A TargetError (a usage error: exit 2) where numba-cuda finds no GPU and its simulator is off."""
    from numba import cuda

    if not cuda.is_available():
        raise TargetError("target 'rnnspec-cuda': numba-cuda finds no CUDA GPU here; to run the CUDA kernels on "
                          "numba-cuda's simulator instead, set NUMBA_ENABLE_CUDASIM=1")


class RnnspecCUDA(RnnspecCPU):
    """The numba-cuda kernels (rnnspec.kernels.cuda): on a GPU, or under NUMBA_ENABLE_CUDASIM=1."""

    cells = ("elman", "lstm", "gru-reset-after", "gru-reset-before")
    #: the CUDA kernels run one forward layer over full sequences; from zeros passed for state0=default
    variants = ("state0=default",)
    device = "cuda"
    #: CUDA's tanhf and expf, within 2 ulps (float32 does not use the CPU's rational tanh)
    accuracy = "accurate"

    def __init__(self, activation: str = "tanh") -> None:
        _cuda_kernels()  # a clear error now, not at the first call
        _require_a_device()
        super().__init__(activation)

    @property
    def kernels(self):
        """rnnspec.kernels.cuda, looked up when used: a module held as an attribute would make the
        target unpicklable, and a process holding a CUDA context must spawn (pickle) its worker."""
        return _cuda_kernels()

    def forward(self, x, state0, params):
        return self.kernels.forward(self.cell, x, self._state0(x, state0, params), params, activation=self.activation)

    def vjp(self, x, state0, params, cotangents):
        start = self._state0(x, state0, params)
        return self._given(self.kernels.backward(self.cell, x, start, params, cotangents, activation=self.activation),
                           start)

    def loss(self, x, state0, params, targets):
        start = self._state0(x, state0, params)
        value, grads = self.kernels.loss(self.cell, x, start, params, targets, activation=self.activation)
        return float(value), self._given(grads, start)
