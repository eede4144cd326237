"""What ``rnnspec bench --cell CELL --variant ...`` times: the CPU kernels on a stacked, bidirectional or
variable-length run against PyTorch's nn.RNN / nn.LSTM / nn.GRU with ``num_layers``, ``bidirectional`` and
packed sequences, with the same weights, the head on the last layer's outputs and cross-entropy summed over
the valid steps. The case's lengths are drawn in [T/2, T] with one sequence of length T (a typical padded
batch); "zero" padding only (PyTorch has no other).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from rnnspec.kernels.checks import GATED_CELLS

Case = dict[str, np.ndarray]
#: one forward layer over full sequences, in these runners' terms
PLAIN = {"layers": 1, "bidirectional": False, "lengths": None}
#: each cell's gates in stacking order ("" for Elman's one U, W, b)
GATES = {"elman": "", **{cell: gates for cell, (gates, _, _) in GATED_CELLS.items()}}



#: PyTorch's layer for each cell it computes (torch.nn.<name>)
LAYERS = {"elman": "RNN", "lstm": "LSTM", "lstm-proj": "LSTM", "gru-reset-after": "GRU"}

def projection_size(cell: str, H: int) -> int:
    """The width P of h in the benchmark's cases: H // 2 for lstm-proj (PyTorch's proj_size must be below
    H), else H."""
    return H // 2 if cell == "lstm-proj" else H


def suffix(variant: dict, layer: int, direction: int) -> str:
    stacked = variant["layers"] > 1 or variant["bidirectional"]
    return (f"_l{layer}" + ("_reverse" if direction else "")) if stacked else ""


def runs(variant: dict) -> list[tuple[int, int]]:
    return [(layer, d) for layer in range(variant["layers"]) for d in range(1 + variant["bidirectional"])]


def make_variant_case(cell: str, variant: dict, T: int, B: int, I: int, H: int, K: int, dtype: str,
                      seed: int = 0) -> Case:
    """The variant contract's arrays: parameters per layer and direction, stacked states, lengths."""
    rng = np.random.default_rng(seed)
    cast = lambda a: np.ascontiguousarray(a, dtype=dtype)
    D = 1 + variant["bidirectional"]
    P = projection_size(cell, H)
    stacked = variant["layers"] > 1 or variant["bidirectional"]
    lead = (len(runs(variant)),) if stacked else ()
    case = {"x": cast(rng.standard_normal((T, B, I))), "V": cast(rng.standard_normal((K, D * P)) / np.sqrt(D * P)),
            "c": cast(rng.standard_normal(K) * 0.1), "targets": rng.integers(0, K, (T, B)),
            "h0": cast(rng.standard_normal((*lead, B, P)) * 0.1)}
    if cell.startswith("lstm"):
        case["c0"] = cast(rng.standard_normal((*lead, B, H)) * 0.1)
    for layer, d in runs(variant):
        features = I if layer == 0 else D * P
        end = suffix(variant, layer, d)
        for gate in GATES[cell] or [""]:
            tail = (f"_{gate}" if gate else "") + end
            case["U" + tail] = cast(rng.standard_normal((H, features)) / np.sqrt(features))
            case["W" + tail] = cast(rng.standard_normal((H, P)) / np.sqrt(P))
            case["b" + tail] = cast(rng.standard_normal(H) * 0.1)
        if cell == "gru-reset-after":
            case["b_hn" + end] = cast(rng.standard_normal(H) * 0.1)
        if cell == "lstm-proj":
            case["W_hr" + end] = cast(rng.standard_normal((P, H)) / np.sqrt(H))
    if variant["lengths"]:
        lengths = rng.integers((T + 1) // 2, T + 1, B)
        lengths[rng.integers(B)] = T
        case["lengths"] = lengths
    return case


def _split(case: Case, cell: str) -> tuple[dict, dict]:
    states = {k: case[k] for k in (("h0", "c0") if cell.startswith("lstm") else ("h0",))}
    params = {k: v for k, v in case.items() if k not in ("x", "targets", "lengths", "V", "c", *states)}
    return states, params


def rnnspec_variant(case: Case, cell: str, variant: dict) -> tuple[Callable, Callable]:
    from rnnspec.kernels import forward, loss

    states, params = _split(case, cell)
    options = {"layers": variant["layers"], "bidirectional": variant["bidirectional"],
               "lengths": case.get("lengths"), "padding": variant["lengths"] or "zero"}
    with_head = {**params, "V": case["V"], "c": case["c"]}
    return (lambda: forward(cell, case["x"], states, params, **options),
            lambda: loss(cell, case["x"], states, with_head, case["targets"], **options))


def torch_modules(case: Case, cell: str, variant: dict):
    """(rnn, head): PyTorch's stacked module and nn.Linear holding the case's weights, in the case's dtype,
    for the CPU and GPU benchmarks: gates stacked as the kernels stack them (PyTorch's own order), b in
    bias_ih, bias_hh zero but for b_hn in the GRU's n block."""
    import torch

    if cell not in LAYERS:  # never another cell's layer in its place (nn.GRU is not the reset-before GRU)
        raise ValueError(f"PyTorch has no layer for {cell!r}; the baselines run {', '.join(LAYERS)}")
    I = case["x"].shape[2]
    H, K = case["c0" if cell.startswith("lstm") else "h0"].shape[-1], case["V"].shape[0]  # c is H wide, h P
    dtype = torch.float32 if case["x"].dtype == np.float32 else torch.float64
    layer = getattr(torch.nn, LAYERS[cell])
    extra = {"proj_size": case["h0"].shape[-1]} if cell == "lstm-proj" else {}
    rnn = layer(I, H, num_layers=variant["layers"], bidirectional=variant["bidirectional"], **extra).to(dtype)
    head = torch.nn.Linear(case["V"].shape[1], K).to(dtype)
    t = torch.from_numpy
    gates = GATES[cell]
    with torch.no_grad():
        for layer_index, d in runs(variant):
            ours, theirs = suffix(variant, layer_index, d), f"_l{layer_index}" + ("_reverse" if d else "")
            stacked = {kind: np.concatenate([case[f"{kind}_{g}{ours}"] for g in gates]) if gates else case[kind + ours]
                       for kind in "UWb"}
            getattr(rnn, "weight_ih" + theirs).copy_(t(stacked["U"]))
            getattr(rnn, "weight_hh" + theirs).copy_(t(stacked["W"]))
            getattr(rnn, "bias_ih" + theirs).copy_(t(stacked["b"]))
            bias_hh = getattr(rnn, "bias_hh" + theirs)
            bias_hh.zero_()
            if cell == "gru-reset-after":
                bias_hh[2 * H:].copy_(t(case["b_hn" + ours]))
            if cell == "lstm-proj":
                getattr(rnn, "weight_hr" + theirs).copy_(t(case["W_hr" + ours]))
        head.weight.copy_(t(case["V"]))
        head.bias.copy_(t(case["c"]))
    return rnn, head


def torch_variant(case: Case, cell: str, variant: dict) -> tuple[Callable, Callable]:
    """The stacked module; packed sequences (enforce_sorted=False) when the case has lengths."""
    import torch
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    if variant["lengths"] not in (None, "zero"):
        raise ValueError("PyTorch's packed sequences output zeros past a sequence's end (lengths=zero only)")
    rnn, head = torch_modules(case, cell, variant)
    T, B, _ = case["x"].shape
    K = case["V"].shape[0]
    t = torch.from_numpy
    lift = (lambda a: t(a)) if variant["layers"] > 1 or variant["bidirectional"] else (lambda a: t(a)[None])
    x, y = t(case["x"]), t(case["targets"].reshape(-1))
    lstm = cell.startswith("lstm")
    states = [lift(case[k]) for k in (("h0", "c0") if lstm else ("h0",))]
    lengths = case.get("lengths")
    valid = None
    if lengths is not None:
        valid = t((np.arange(T)[:, None] < lengths[None, :]).reshape(-1).astype(case["x"].dtype))

    def run(leaves):
        start = tuple(leaves[1:]) if lstm else leaves[1]
        if lengths is None:
            return rnn(leaves[0], start)[0]
        packed = pack_padded_sequence(leaves[0], t(lengths), enforce_sorted=False)
        return pad_packed_sequence(rnn(packed, start)[0], total_length=T)[0]

    def forward():
        with torch.no_grad():
            return run([x, *states])

    def train():
        for p in (*rnn.parameters(), *head.parameters()):
            p.grad = None
        leaves = [v.clone().requires_grad_(True) for v in (x, *states)]
        per_step = torch.nn.functional.cross_entropy(head(run(leaves)).reshape(T * B, K), y, reduction="none")
        value = (per_step if valid is None else per_step * valid).sum()
        value.backward()
        return value.item(), [v.grad for v in leaves]

    return forward, train


RUNNERS: dict[str, Callable[[Case, str, dict], tuple[Callable, Callable]]] = {
    "rnnspec-cpu": rnnspec_variant,
    "torch": torch_variant,
}
