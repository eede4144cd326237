"""``rnnspec derive``: render the documents and figures into derivations/generated/."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from rnnspec.derivations import figure
from rnnspec.derivations.document import all_certificates_cases, elman_document
from rnnspec.derivations.proof import Certificate, prove

GENERATED = Path(__file__).parent / "generated"
FIGURE = "elman_gradient_norms.png"


def _prove(case: tuple[str, str, tuple[int, ...]]) -> Certificate:
    activation, head, (T, B, I, H, K) = case
    return prove(activation, head, T=T, B=B, I=I, H=H, K=K)


def certificates(workers: int = 2) -> list[Certificate]:
    cases = all_certificates_cases()
    # the slowest proofs (ReLU's piecewise loss) go first so that the pool stays balanced
    order = sorted(cases, key=lambda c: c[0] != "relu")
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            done = dict(zip(order, pool.map(_prove, order)))
    else:
        done = {c: _prove(c) for c in order}
    return [done[c] for c in cases]


def render(workers: int = 2) -> dict[str, bytes]:
    """File name -> content of every generated file."""
    data = figure.series()
    return {
        "elman.md": elman_document(certificates(workers), FIGURE).encode(),
        "elman_gradient_norms.csv": figure.csv_text(data).encode(),
        FIGURE: figure.png_bytes(data),
    }


def write(out: Path, files: dict[str, bytes]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (out / name).write_bytes(content)


def stale(out: Path, files: dict[str, bytes]) -> list[str]:
    """Names whose committed content differs from a fresh render."""
    return [n for n, c in files.items() if not (out / n).exists() or (out / n).read_bytes() != c]
