"""The catalogue of cells: plain data, no SymPy, the one place where the cells are listed.

Each entry gives a cell's name, its gates in canonical order, its states, its step parameters with their
shapes (in size names: I input, H hidden, P projection), the generated document it belongs to, whether it
runs as a variant (stacked, both ways, on lengths) and the activations it takes. Everything else reads it:
derivations attaches the forward equations to each name (and checks that they declare these parameters,
gates and states), spec reads the clauses, cases, matrix rows and CLI help from it, the kernels their
dispatch, the documents their sections, the tests their parameters. ``tests/test_catalogue.py`` fails on a
second list of cells, gates or dtypes in the tree.

The per-gate parameters follow the notes: ``U_k`` (H, I) input, ``W_k`` (H, width) recurrent, ``b_k`` (H,)
for each gate k, in that order (every U, then every W, then every b); then the cell's extra parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

#: the dtypes every cell is specified, checked and computed in
DTYPES: tuple[str, ...] = ("float32", "float64")
#: Elman's activations f (the gated cells' nonlinearities are fixed: "tanh")
ELMAN_ACTIVATIONS: tuple[str, ...] = ("tanh", "sigmoid", "relu", "identity")


@dataclass(frozen=True)
class Param:
    key: str
    shape: tuple[str, ...]


@dataclass(frozen=True)
class Cell:
    name: str
    title: str
    #: the generated document (derivations/generated/<document>.md) whose sections hold this cell
    document: str
    #: gate names in canonical order ("" for the Elman cell, which has none)
    gates: str
    #: the contract's state names: forward's outputs, and ``<state>0`` the initial states
    states: tuple[str, ...]
    params: tuple[Param, ...]
    #: the size names the cell's shapes use
    sizes: tuple[str, ...] = ("I", "H", "K")
    activations: tuple[str, ...] = ("tanh",)
    #: the frameworks' names for it, for the README's table
    known_as: str = ""

    @property
    def param_keys(self) -> tuple[str, ...]:
        return tuple(p.key for p in self.params)

    @property
    def width(self) -> str:
        """The size of the output h: H, or P for a cell with a projection."""
        return "P" if "P" in self.sizes else "H"


def _per_gate(gates: str, width: str = "H", extra: tuple[Param, ...] = ()) -> tuple[Param, ...]:
    return (*(Param(f"U_{g}", ("H", "I")) for g in gates), *(Param(f"W_{g}", ("H", width)) for g in gates),
            *(Param(f"b_{g}", ("H",)) for g in gates), *extra)


_CELLS = (
    Cell("elman", "Elman RNN", "elman", "", ("h",),
         (Param("U", ("H", "I")), Param("W", ("H", "H")), Param("b", ("H",))), activations=ELMAN_ACTIVATIONS,
         known_as="nn.RNN, SimpleRNN, ONNX RNN"),
    Cell("lstm", "LSTM", "lstm", "ifgo", ("h", "c"), _per_gate("ifgo"), known_as="nn.LSTM, Keras LSTM, ONNX LSTM"),
    Cell("lstm-proj", "LSTM with a projection (PyTorch's proj_size)", "lstm", "ifgo", ("h", "c"),
         _per_gate("ifgo", "P", (Param("W_hr", ("P", "H")),)), sizes=("I", "H", "K", "P"),
         known_as="nn.LSTM(proj_size=P)"),
    Cell("lstm-peephole", "LSTM with peepholes (ONNX's P)", "lstm", "ifgo", ("h", "c"),
         _per_gate("ifgo", extra=tuple(Param(f"P_{g}", ("H",)) for g in "ifo")), known_as="ONNX LSTM with P"),
    # no forget-gate parameters: f = 1 - i
    Cell("lstm-coupled", "LSTM with coupled input and forget gates (ONNX's input_forget=1)", "lstm", "igo",
         ("h", "c"), _per_gate("igo"), known_as="ONNX LSTM input_forget=1"),
    Cell("gru-reset-after", "GRU, reset gate after the recurrent product", "gru", "rzn", ("h",),
         _per_gate("rzn", extra=(Param("b_hn", ("H",)),)),
         known_as="nn.GRU, cuDNN, Keras reset_after=True, Flax GRUCell, ONNX linear_before_reset=1"),
    Cell("gru-reset-before", "GRU, reset gate before the recurrent product", "gru", "rzn", ("h",), _per_gate("rzn"),
         known_as="ONNX GRU (default), Keras reset_after=False, the 2014 paper"),
    Cell("mgu", "Minimal gated unit (Zhou et al., 2016)", "mgu", "fn", ("h",), _per_gate("fn"),
         known_as="the MGU paper's equations"),
    Cell("mgu-flax", "MGU as flax.linen's MGUCell computes it", "mgu", "fn", ("h",),
         _per_gate("fn", extra=(Param("b_hn", ("H",)),)), known_as="flax.linen.MGUCell"),
)

#: every cell by name, in the catalogue's order
CELLS: dict[str, Cell] = {c.name: c for c in _CELLS}
NAMES: tuple[str, ...] = tuple(CELLS)

#: names refused with a reason, rather than as unknown
REFUSED: dict[str, str] = {
    "gru": "'gru' is ambiguous: say 'gru-reset-after' (the reset gate multiplies the recurrent product "
           "W_n h + b_hn: PyTorch, cuDNN, Keras 3 with reset_after=True, Flax) or 'gru-reset-before' (the reset "
           "gate multiplies h before W_n, no b_hn: ONNX's default linear_before_reset=0, Keras reset_after=False, "
           "TensorFlow 1, the 2014 paper)",
}


def check_name(name: object) -> str:
    """``name`` if it is a cell of the catalogue, else a ValueError that says why (refused, or unknown)."""
    if isinstance(name, str) and name in REFUSED:
        raise ValueError(REFUSED[name])
    if not isinstance(name, str) or name not in CELLS:
        raise ValueError(f"unknown cell {name!r}; known: {', '.join(NAMES)}")
    return name


def cell(name: str) -> Cell:
    """The catalogue entry of ``name`` (a ValueError for an unknown or refused name)."""
    return CELLS[check_name(name)]


def with_cell_state() -> tuple[str, ...]:
    """The cells with a cell state ``c`` beside ``h`` (the LSTMs)."""
    return tuple(name for name, c in CELLS.items() if "c" in c.states)


def documents() -> dict[str, tuple[str, ...]]:
    """Each generated document and its cells, in catalogue order."""
    out: dict[str, tuple[str, ...]] = {}
    for c in _CELLS:
        out[c.document] = out.get(c.document, ()) + (c.name,)
    return out
