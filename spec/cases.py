"""Generated cases: cell, sizes, activation, dtype and a regime, from which the arrays follow by seed.

Regimes are what real RNNs meet (every recurrent matrix of the cell drawn alike):

- ``contracting``: recurrent weights with spectral radius 0.5, moderate inputs;
- ``long-memory``: W = 0.99 Q with Q orthogonal, so signals persist over the whole sequence;
- ``saturating``: large input weights and biases, |z| of several units, f' near 0 for tanh/sigmoid;
- ``chaotic``: spectral radius 3 (bounded by the activation, rounding errors amplified);
- ``large-logits``: output weights of scale 30, logits in the hundreds;

and for gated cells, from the gates the cell names (``Cell.gates``):

- ``small-biases``: biases of scale 0.01;
- ``<gate>-open`` / ``<gate>-shut``: that gate's bias offset by +6 / -6, so the gate sits near 1 or 0
  (``forget-open`` is the LSTM's long memory, ``forget-shut`` forgets every step, ``update-open``
  makes a GRU copy its state, ``reset-shut`` cuts the recurrent path of n).

Every gate gets its own random weights (never constant ones, under which a gate-order bug is
invisible). A case is a small frozen record, so Hypothesis can shrink it and a report can print it.
"""

from __future__ import annotations

import itertools
import json
import tempfile
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace

import numpy as np

from rnnspec.derivations.registry import check_name
from rnnspec.derivations.variants import parse_variant
from rnnspec.spec.contract import contract
from rnnspec.spec.declared import KNOWN_DTYPES, is_count

REGIMES = ("contracting", "long-memory", "saturating", "chaotic", "large-logits")
#: the bias offset that drives a gate open (+) or shut (-): sigma(6) = 0.9975
GATE_OFFSET = 6.0


def regimes(cell: str) -> tuple[str, ...]:
    """The regimes of ``cell``'s cases: the common ones, and two per gate for a gated cell."""
    gates = contract(cell).cell.gates
    if not gates:
        return REGIMES
    return REGIMES + ("small-biases",) + tuple(f"{g.meaning}-{side}" for g in gates for side in ("open", "shut"))


def _bias_offsets(cell: str, regime: str) -> dict[str, float]:
    for gate in contract(cell).cell.gates:
        if regime == f"{gate.meaning}-open":
            return {gate.bias: GATE_OFFSET}
        if regime == f"{gate.meaning}-shut":
            return {gate.bias: -GATE_OFFSET}
    return {}
def _spectral_radius(W: np.ndarray) -> float:
    """Of a square matrix; of a projected LSTM's W_k (H, P), the largest singular value (what scales h)."""
    if W.shape[0] == W.shape[1]:
        return float(np.max(np.abs(np.linalg.eigvals(W))))
    return float(np.linalg.norm(W, 2))


def _lengths(rng: np.random.Generator, T: int, B: int) -> np.ndarray:
    """Sequence lengths in [0, T]; with two sequences or more, T and 0 among them (at random places)."""
    lengths = rng.integers(0, T + 1, B)
    ends = rng.permutation(B)
    if B >= 2:
        lengths[ends[0]] = T
    if B >= 3:
        lengths[ends[1]] = 0
    return lengths


#: the longest generated sequence of a variant: a case runs L x D cells, and what a variant adds (the
#: composition) shows on short sequences; long ones are the plain cells' cases
VARIANT_MAX_T = 48

#: the largest case accepted: entries of the largest array (x, the states or the logits)
MAX_ENTRIES = 10_000_000


@dataclass(frozen=True)
class Case:
    T: int
    B: int
    I: int
    H: int
    K: int
    activation: str
    dtype: str
    regime: str
    seed: int
    cell: str = "elman"
    #: how the cell is run (:class:`~rnnspec.derivations.variants.Variant`): "" one forward layer, else e.g.
    #: ``layers=2,bidirectional,lengths=zero``, kept in that canonical spelling
    variant: str = ""
    #: the projection size of the LSTM with a projection (``lstm-proj``: 1 <= P < H); 0 for every other cell
    P: int = 0

    def __post_init__(self) -> None:
        """A ValueError naming the field, for a case written by hand (``--case``)."""
        for name in ("cell", "activation", "dtype", "regime", "variant"):
            value = getattr(self, name)
            if not isinstance(value, str):
                raise ValueError(f"case field {name} must be a string, got {type(value).__name__} {value!r}")
        for name, low in (("T", 1), ("B", 1), ("I", 1), ("H", 1), ("K", 2), ("seed", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"case field {name} must be an integer >= {low}, got {value!r}")
        if self.seed >= 2**32:
            raise ValueError(f"case field seed must be below 2**32, got {self.seed}")
        entries = self.T * self.B * max(self.I, self.H, self.K)
        if entries > MAX_ENTRIES or self.H * max(self.H, self.I, self.K) > MAX_ENTRIES:
            raise ValueError(f"case too large: T x B x max(I, H, K) = {entries} entries (at most {MAX_ENTRIES})")
        try:
            check_name(self.cell)
        except ValueError as exc:
            raise ValueError(f"case field cell: {exc}") from None
        projected = "P" in dict(contract(self.cell).cell.sizes)
        if projected and (isinstance(self.P, bool) or not isinstance(self.P, (int, np.integer))
                          or not 1 <= self.P < self.H):
            raise ValueError(f"case field P (projection size) must be an integer in [1, H={self.H}) for cell "
                             f"{self.cell}, got {self.P!r}")
        if not projected and self.P != 0:
            raise ValueError(f"case field P is for a cell with a projection; cell {self.cell} takes P = 0")
        try:
            object.__setattr__(self, "variant", parse_variant(self.variant).name)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"case field {exc}") from None
        activations = contract(self.cell).cell.activations
        for name, known in (("activation", activations), ("dtype", KNOWN_DTYPES), ("regime", regimes(self.cell))):
            if getattr(self, name) not in known:
                raise ValueError(f"case field {name} must be one of {known} (cell {self.cell}), "
                                 f"got {getattr(self, name)!r}")

    def describe(self) -> str:
        """The case as JSON (without the cell when it is the default, elman, as before cells were many)."""
        fields = asdict(self)
        if self.cell == "elman":
            del fields["cell"]
        if not self.variant:
            del fields["variant"]
        if not self.P:
            del fields["P"]
        return json.dumps(fields, separators=(",", ":"))

    def arrays(self) -> dict[str, np.ndarray]:
        """x, the initial states (none under ``state0=default``), every parameter (in the case's dtype), targets
        (int64), a cotangent ``cot_<output>`` per forward output for vjp, and for a variant with lengths,
        ``lengths``. Drawn in a
        fixed order: every recurrent matrix, x, the initial states, the step parameters in the cell's order
        (layer by layer, forward then reverse, for a variant), V, c, targets, cotangents, lengths."""
        rng = np.random.default_rng(self.seed)
        T, B, I, H, K = self.T, self.B, self.I, self.H, self.K
        cell = contract(self.cell, self.variant)
        shapes = cell.param_shapes(I, H, K, self.P)
        input_scale, bias_scale, output_scale = 1.0, 0.3, 1.0
        recurrent = {}
        width = cell.width
        recurrent_keys = [v.key + cell.variant.suffix(layer, d) for layer, d in cell.variant.runs()
                          for v in cell.cell.params if v.shape == ("H", width)]
        for key in recurrent_keys:
            if self.regime == "long-memory":
                q, _ = np.linalg.qr(rng.standard_normal((H, H)))
                recurrent[key] = 0.99 * q[:, :shapes[key][1]]
            else:
                radius = {"saturating": 0.9, "chaotic": 3.0, "large-logits": 0.8}.get(self.regime, 0.5)
                W = rng.standard_normal(shapes[key])
                recurrent[key] = W * radius / max(_spectral_radius(W), 1e-12)
        if self.regime == "long-memory":
            input_scale = 0.3
        if self.regime == "saturating":
            input_scale, bias_scale = 4.0, 2.0
        if self.regime == "small-biases":
            bias_scale = 0.01
        if self.regime == "large-logits":
            output_scale = 30.0
        offsets = _bias_offsets(self.cell, self.regime)
        cast = lambda a: np.ascontiguousarray(a, dtype=self.dtype)
        out = {"x": cast(rng.standard_normal((T, B, I)))}
        out.update({k: cast(rng.standard_normal(shape) * 0.5) for k, shape in cell.state_shapes(B, H, self.P).items()
                    if k in cell.state0})  # none under state0=default: the target starts from its own zeros
        for layer, d in cell.variant.runs():
            suffix = cell.variant.suffix(layer, d)
            for var in cell.cell.params:
                key = var.key + suffix
                if key in recurrent:
                    out[key] = cast(recurrent[key])
                elif len(var.shape) == 2:
                    fan_in = shapes[key][1]
                    out[key] = cast(rng.standard_normal(shapes[key]) * input_scale / np.sqrt(fan_in))
                else:
                    out[key] = cast(rng.standard_normal(H) * bias_scale + offsets.get(var.key, 0.0))
        out["V"] = cast(rng.standard_normal(shapes["V"]) * output_scale)
        out["c"] = cast(rng.standard_normal(K) * bias_scale * output_scale)
        out["targets"] = rng.integers(0, K, (T, B))
        out.update({"cot_" + k: cast(rng.standard_normal(shape))
                    for k, shape in cell.output_shapes(T, B, H, self.P).items()})
        if cell.variant.lengths:
            out["lengths"] = _lengths(rng, T, B)
        return out

    def smaller(self) -> list[Case]:
        """Simpler neighbours, most aggressive first, for shrinking a failure (a projection kept below H)."""
        if self.P:
            out = [replace(self, P=p) for p in (1, self.P - 1) if 1 <= p < self.P]
            out += [replace(self, H=h, P=min(self.P, h - 1)) for h in (2, self.H - 1) if 2 <= h < self.H]
            return list(dict.fromkeys(out + self._smaller(shrink_H=False)))
        return self._smaller()

    def _smaller(self, shrink_H: bool = True) -> list[Case]:
        out = []
        for field, values in (("T", (1, self.T // 2, self.T - 1)), ("B", (1, self.B - 1)),
                              ("H", (1, self.H // 2) if shrink_H else ()),
                              ("I", (1, self.I - 1)), ("K", (2, self.K - 1))):
            current = getattr(self, field)
            low = 2 if field == "K" else 1
            for v in values:
                if low <= v < current:
                    out.append(replace(self, **{field: v}))
        if self.regime != "contracting":
            out.append(replace(self, regime="contracting"))
        return list(dict.fromkeys(out))


def strategy(dtypes: tuple[str, ...], activations: tuple[str, ...], max_T: int = 96, cell: str = "elman",
             variant: str = ""):
    """Hypothesis strategy of cases of ``cell``; short sequences are likelier than long ones. A projected
    cell's cases have H >= 2 and a projection size 1 <= P < H."""
    from hypothesis import strategies as st

    projected = "P" in dict(contract(cell).cell.sizes)
    fields = dict(
        T=st.one_of(st.integers(1, 6), st.integers(7, 24), st.integers(25, max_T)),
        B=st.integers(1, 5),
        I=st.integers(1, 7),
        H=st.integers(2 if projected else 1, 10),
        K=st.integers(2, 6),
        activation=st.sampled_from(activations),
        dtype=st.sampled_from(dtypes),
        regime=st.sampled_from(regimes(cell)),
        seed=st.integers(0, 2**32 - 1),
        cell=st.just(cell),
        variant=st.just(variant),
    )
    if projected:
        return st.builds(_projected, P=st.integers(1, 9), **fields)
    return st.builds(Case, **fields)


def _projected(P: int, H: int, **fields) -> Case:
    return Case(H=H, P=min(P, H - 1), **fields)


def generate(count: int, seed: int, dtypes: tuple[str, ...], activations: tuple[str, ...],
             cell: str = "elman", variant: str = "") -> list[Case]:
    """``count`` distinct cases, the same for the same seed (and Hypothesis version).

    The budget is split evenly over every declared (dtype, activation) pair and the pairs'
    cases interleaved, so each pair is always tested, whatever Hypothesis draws first.
    """
    pairs = [(d, a) for d in dtypes for a in activations]
    share = -(-count // len(pairs))
    per_pair = [_generate_pair(share, seed * 1000 + n, d, a, cell, variant) for n, (d, a) in enumerate(pairs)]
    mixed = [case for group in itertools.zip_longest(*per_pair) for case in group if case is not None]
    return list(dict.fromkeys(mixed))[:count]


def few_shapes(cases: list[Case], most: int, max_T: int | None = None) -> list[Case]:
    """The same cases on at most ``most`` shapes (T, B, I, H, K, P), for a target that compiles a program per
    shape (``jax.jit``, an exporter): its run then compiles a few programs per dtype and method, not one per case.

    The shapes are the cases' own, edge sizes first: the smallest T (1 when any case has it), the smallest B and
    H, a case with I != H; then the others in the order drawn. Case n keeps its dtype, activation, regime and
    seed (so its values) and takes shape n mod the number of shapes, so every shape meets every kind of case; a
    case that would repeat an earlier one (Hypothesis draws some seeds more than once) takes the next seed.
    ``max_T``: each shape's T is min(T, max_T) (for a target whose program grows with T: it unrolls the steps).
    """
    if not is_count(most):
        raise ValueError(f"shapes must be a positive whole number of shapes, got {most!r}")
    if max_T is not None and not is_count(max_T):
        raise ValueError(f"max_T must be a positive whole number of steps or None, got {max_T!r}")
    shape = lambda c: (c.T if max_T is None else min(c.T, max_T), c.B, c.I, c.H, c.K, c.P)
    edges = [min(cases, key=lambda c: c.T), min(cases, key=lambda c: c.B), min(cases, key=lambda c: c.H),
             *[c for c in cases if c.I != c.H][:1]] if cases else []
    pool = list(dict.fromkeys(shape(c) for c in edges + cases))[:most]
    fields = ("T", "B", "I", "H", "K", "P")
    moved: dict[Case, None] = {}
    for n, case in enumerate(cases):
        case = replace(case, **dict(zip(fields, pool[n % len(pool)])))
        while case in moved:
            case = replace(case, seed=(case.seed + 1) % 2**32)
        moved[case] = None
    return list(moved)


@contextmanager
def _hypothesis_storage_elsewhere():
    """Hypothesis may cache data under its home folder (``./.hypothesis`` unless set): generating
    cases leaves the user's working folder as it was, and restores the home folder after."""
    from hypothesis import configuration

    previous = getattr(configuration, "__hypothesis_home_directory", None)
    with tempfile.TemporaryDirectory(prefix="rnnspec-hypothesis-") as folder:
        configuration.set_hypothesis_home_dir(folder)
        try:
            yield
        finally:
            configuration.set_hypothesis_home_dir(previous)


def _generate_pair(count: int, seed: int, dtype: str, activation: str, cell: str, variant: str = "") -> list[Case]:
    from hypothesis import HealthCheck, Phase, Verbosity, given, settings
    from hypothesis import seed as hypothesis_seed

    found: list[Case] = []
    # a projected cell's P is clamped below H, so draws that differ only in P can repeat a case: draw more
    budget = 2 * count if "P" in dict(contract(cell).cell.sizes) else count

    # every setting that shapes generation is pinned, so that the seed alone decides the cases,
    # whatever Hypothesis profile the caller has loaded
    @hypothesis_seed(seed)
    @settings(max_examples=budget, phases=[Phase.generate], database=None, deadline=None, derandomize=False,
              suppress_health_check=list(HealthCheck), verbosity=Verbosity.quiet)
    @given(strategy((dtype,), (activation,), max_T=VARIANT_MAX_T if variant else 96, cell=cell, variant=variant))
    def collect(case: Case) -> None:
        found.append(case)

    with _hypothesis_storage_elsewhere():
        collect()
    return list(dict.fromkeys(found))[:count]
