"""The work of a call, counted once: the benchmark's GFLOP/s and the kernels' choice of threads (rows.py) read it."""

from __future__ import annotations


def flops(phase: str, T: int, B: int, I: int, H: int, K: int, gates: int = 1, variant: dict | None = None,
          P: int | None = None) -> float:
    """The matrix products' multiply-adds x 2. h is P wide (P = H but for the projected LSTM, which adds the
    projection's T B H P). A variant runs D directions per layer, layer l > 0 reading D P features, the head
    reading D P; every step counts, padded ones included."""
    layers, D = (variant.get("layers", 1), 1 + bool(variant.get("bidirectional"))) if variant else (1, 1)
    P = H if P is None else P
    projection = 0 if P == H else 2.0 * T * B * H * P
    # layer 0 reads I features, each later one D P (a closed form: this runs at every call, rows.wanted)
    recurrent = D * (layers * (2.0 * T * B * H * gates * P + projection)
                     + 2.0 * T * B * H * gates * (I + (layers - 1) * D * P))
    return recurrent if phase == "forward" else 3 * recurrent + 6.0 * T * B * D * P * K
