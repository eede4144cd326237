"""Generated cases: sizes, activation, dtype and a regime, from which the arrays follow by seed.

Regimes are what real RNNs meet:

- ``contracting``: recurrent weights with spectral radius 0.5, moderate inputs;
- ``long-memory``: W = 0.99 Q with Q orthogonal, so signals persist over the whole sequence;
- ``saturating``: large input weights and biases, |z| of several units, f' near 0 for tanh/sigmoid;
- ``chaotic``: spectral radius 3 (bounded by the activation, rounding errors amplified);
- ``large-logits``: output weights of scale 30, logits in the hundreds.

A case is a small frozen record, so Hypothesis can shrink it and a report can print it.
"""

from __future__ import annotations

import itertools
import json
import tempfile
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace

import numpy as np

from rnnspec.spec.declared import KNOWN_ACTIVATIONS, KNOWN_DTYPES

REGIMES = ("contracting", "long-memory", "saturating", "chaotic", "large-logits")
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

    def __post_init__(self) -> None:
        """A ValueError naming the field, for a case written by hand (``--case``)."""
        for name, low in (("T", 1), ("B", 1), ("I", 1), ("H", 1), ("K", 2), ("seed", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"case field {name} must be an integer >= {low}, got {value!r}")
        if self.seed >= 2**32:
            raise ValueError(f"case field seed must be below 2**32, got {self.seed}")
        entries = self.T * self.B * max(self.I, self.H, self.K)
        if entries > MAX_ENTRIES or self.H * max(self.H, self.I, self.K) > MAX_ENTRIES:
            raise ValueError(f"case too large: T x B x max(I, H, K) = {entries} entries (at most {MAX_ENTRIES})")
        for name, known in (("activation", KNOWN_ACTIVATIONS), ("dtype", KNOWN_DTYPES), ("regime", REGIMES)):
            if getattr(self, name) not in known:
                raise ValueError(f"case field {name} must be one of {known}, got {getattr(self, name)!r}")

    def describe(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    def arrays(self) -> dict[str, np.ndarray]:
        """x, h0, U, W, b, V, c (in the case's dtype), targets (int64) and a cotangent for vjp."""
        rng = np.random.default_rng(self.seed)
        T, B, I, H, K = self.T, self.B, self.I, self.H, self.K
        input_scale, bias_scale, output_scale = 1.0, 0.3, 1.0
        if self.regime == "long-memory":
            q, _ = np.linalg.qr(rng.standard_normal((H, H)))
            W = 0.99 * q
            input_scale = 0.3
        else:
            radius = {"contracting": 0.5, "saturating": 0.9, "chaotic": 3.0, "large-logits": 0.8}[self.regime]
            W = rng.standard_normal((H, H))
            W *= radius / max(float(np.max(np.abs(np.linalg.eigvals(W)))), 1e-12)
        if self.regime == "saturating":
            input_scale, bias_scale = 4.0, 2.0
        if self.regime == "large-logits":
            output_scale = 30.0
        cast = lambda a: np.ascontiguousarray(a, dtype=self.dtype)
        return {
            "x": cast(rng.standard_normal((T, B, I))),
            "h0": cast(rng.standard_normal((B, H)) * 0.5),
            "U": cast(rng.standard_normal((H, I)) * input_scale / np.sqrt(I)),
            "W": cast(W),
            "b": cast(rng.standard_normal(H) * bias_scale),
            "V": cast(rng.standard_normal((K, H)) * output_scale),
            "c": cast(rng.standard_normal(K) * bias_scale * output_scale),
            "targets": rng.integers(0, K, (T, B)),
            "gh": cast(rng.standard_normal((T, B, H))),
        }

    def smaller(self) -> list[Case]:
        """Simpler neighbours, most aggressive first, for shrinking a failure."""
        out = []
        for field, values in (("T", (1, self.T // 2, self.T - 1)), ("B", (1, self.B - 1)), ("H", (1, self.H // 2)),
                              ("I", (1, self.I - 1)), ("K", (2, self.K - 1))):
            current = getattr(self, field)
            low = 2 if field == "K" else 1
            for v in values:
                if low <= v < current:
                    out.append(replace(self, **{field: v}))
        if self.regime != "contracting":
            out.append(replace(self, regime="contracting"))
        return list(dict.fromkeys(out))


def strategy(dtypes: tuple[str, ...], activations: tuple[str, ...], max_T: int = 96):
    """Hypothesis strategy of cases; short sequences are likelier than long ones."""
    from hypothesis import strategies as st

    return st.builds(
        Case,
        T=st.one_of(st.integers(1, 6), st.integers(7, 24), st.integers(25, max_T)),
        B=st.integers(1, 5),
        I=st.integers(1, 7),
        H=st.integers(1, 10),
        K=st.integers(2, 6),
        activation=st.sampled_from(activations),
        dtype=st.sampled_from(dtypes),
        regime=st.sampled_from(REGIMES),
        seed=st.integers(0, 2**32 - 1),
    )


def generate(count: int, seed: int, dtypes: tuple[str, ...], activations: tuple[str, ...]) -> list[Case]:
    """``count`` distinct cases, the same for the same seed (and Hypothesis version).

    The budget is split evenly over every declared (dtype, activation) pair and the pairs'
    cases interleaved, so each pair is always tested, whatever Hypothesis draws first.
    """
    pairs = [(d, a) for d in dtypes for a in activations]
    share = -(-count // len(pairs))
    per_pair = [_generate_pair(share, seed * 1000 + n, d, a) for n, (d, a) in enumerate(pairs)]
    mixed = [case for group in itertools.zip_longest(*per_pair) for case in group if case is not None]
    return list(dict.fromkeys(mixed))[:count]


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


def _generate_pair(count: int, seed: int, dtype: str, activation: str) -> list[Case]:
    from hypothesis import HealthCheck, Phase, Verbosity, given, settings
    from hypothesis import seed as hypothesis_seed

    found: list[Case] = []

    # every setting that shapes generation is pinned, so that the seed alone decides the cases,
    # whatever Hypothesis profile the caller has loaded
    @hypothesis_seed(seed)
    @settings(max_examples=count, phases=[Phase.generate], database=None, deadline=None, derandomize=False,
              suppress_health_check=list(HealthCheck), verbosity=Verbosity.quiet)
    @given(strategy((dtype,), (activation,)))
    def collect(case: Case) -> None:
        found.append(case)

    with _hypothesis_storage_elsewhere():
        collect()
    return list(dict.fromkeys(found))[:count]
