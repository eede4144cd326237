"""``rnnspec derive``: render the documents and figures into derivations/generated/."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from rnnspec.derivations import figure
from rnnspec.derivations.document import all_certificates_cases, elman_document
from rnnspec.derivations.proof import Certificate, prove

GENERATED = Path(__file__).parent / "generated"
FIGURE = "elman_gradient_norms.png"


def _prove(case: tuple[str, str, tuple[int, ...]]) -> Certificate:
    activation, head, (T, B, I, H, K) = case
    return prove(activation, head, T=T, B=B, I=I, H=H, K=K)


Progress = Callable[[str], None]


def certificates(workers: int = 2, progress: Progress | None = None) -> list[Certificate]:
    cases = all_certificates_cases()
    # the slowest proofs (ReLU's piecewise loss) go first so that the pool stays balanced
    order = sorted(cases, key=lambda c: c[0] != "relu")
    tell = progress or (lambda line: None)
    done = {}
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            futures = {pool.submit(_prove, c): c for c in order}
            for future in as_completed(futures):
                done[futures[future]] = future.result()
                tell(f"proved {_name(futures[future])} ({len(done)}/{len(cases)})")
    else:
        for c in order:
            done[c] = _prove(c)
            tell(f"proved {_name(c)} ({len(done)}/{len(cases)})")
    return [done[c] for c in cases]


def _name(case: tuple[str, str, tuple[int, ...]]) -> str:
    activation, head, sizes = case
    return f"{activation}, {head}, (T, B, I, H, K) = {sizes}"


def can_draw() -> bool:
    """Whether matplotlib (the ``docs`` extra) is installed, which the figure needs."""
    return importlib.util.find_spec("matplotlib") is not None


def render(workers: int = 2, progress: Progress | None = None) -> dict[str, bytes]:
    """File name -> content of every generated file (without the figure when matplotlib is missing)."""
    data = figure.series()
    files = {"elman.md": elman_document(certificates(workers, progress), FIGURE).encode(),
             "elman_gradient_norms.csv": figure.csv_text(data).encode()}
    if can_draw():
        files[FIGURE] = figure.png_bytes(data)
    return files


def write(out: Path, files: dict[str, bytes]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (out / name).write_bytes(content)


def stale(out: Path, files: dict[str, bytes]) -> list[str]:
    """Names whose committed content differs from a fresh render."""
    return [n for n, c in files.items() if not (out / n).exists() or (out / n).read_bytes() != c]
