"""Built-in targets over rnnspec's own kernels: the Numba CPU kernels and the numba-cuda ones."""

from __future__ import annotations

from rnnspec import catalogue
from rnnspec.kernels.checks import ACTIVATIONS as KERNEL_ACTIVATIONS
from rnnspec.spec.targets import TargetError


class RnnspecCPU:
    """The Numba CPU kernels (rnnspec.kernels): every cell, through the one API they share."""

    cells = catalogue.NAMES  # the kernels implement every cell of the catalogue
    cell = "elman"
    dtypes = ("float32", "float64")
    activations = KERNEL_ACTIVATIONS
    #: float32 uses vectorizing forms (kernels/cpu/elementwise.py): tanh within 6.5 ulps, the logistic
    #: function within 2.4; float64 uses libm
    accuracy = {"float32": 8, "float64": "accurate"}
    variants = ("layers", "bidirectional", "lengths=zero", "lengths=carry")
    layers, bidirectional, lengths = 1, False, None

    def __init__(self, activation: str = "tanh") -> None:
        self.activation = activation

    def _options(self, lengths) -> dict:
        """The kernels' keywords: the activation, and the variant the suite set (rnnspec.kernels.cpu.variants)."""
        options = {"activation": self.activation}
        if self.layers != 1 or self.bidirectional or self.lengths is not None:
            options.update(layers=self.layers, bidirectional=self.bidirectional, lengths=lengths,
                           padding=self.lengths or "zero")
        return options

    def forward(self, x, state0, params, lengths=None):
        from rnnspec.kernels import forward

        return forward(self.cell, x, state0, params, **self._options(lengths))

    def vjp(self, x, state0, params, cotangents, lengths=None):
        from rnnspec.kernels import backward

        return backward(self.cell, x, state0, params, cotangents, **self._options(lengths))

    def loss(self, x, state0, params, targets, lengths=None):
        from rnnspec.kernels import loss

        value, grads = loss(self.cell, x, state0, params, targets, **self._options(lengths))
        return float(value), grads


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
    variants = ()  # the CUDA kernels run one forward layer over full sequences
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
        return self.kernels.forward(self.cell, x, state0, params, activation=self.activation)

    def vjp(self, x, state0, params, cotangents):
        return self.kernels.backward(self.cell, x, state0, params, cotangents, activation=self.activation)

    def loss(self, x, state0, params, targets):
        value, grads = self.kernels.loss(self.cell, x, state0, params, targets, activation=self.activation)
        return float(value), grads
