"""``rnnspec derive``: render the documents and figures into derivations/generated/."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

from rnnspec import catalogue
from rnnspec.derivations import figure
from rnnspec.derivations.document import all_certificates_cases, elman_document
from rnnspec.derivations.gated_document import family_document, gru_document, lstm_document
from rnnspec.derivations.page import Page
from rnnspec.derivations.proof import Certificate, prove
from rnnspec.derivations.variants_document import VARIANT_PROOFS, variants_document

GENERATED = Path(__file__).parent / "generated"
FIGURE = "elman_gradient_norms.png"
CELLS_FIGURE = "gradient_flow.png"
#: the figures drawn when matplotlib is installed (the CSV files are written always)
FIGURES = (FIGURE, CELLS_FIGURE)


#: a proof: (cell, activation, head, (T, B, I, H, K), variant, lengths)
ProofCase = tuple[str, str, str, tuple[int, ...], str, tuple[int, ...]]


def proof_cases() -> list[ProofCase]:
    """The cells' proofs, then the variants'."""
    cells = [(*case, "", ()) for case in all_certificates_cases()]
    return cells + [(cell, "tanh", "softmax-ce", sizes, variant, lengths)
                    for cell, variant, sizes, lengths in VARIANT_PROOFS]


def _prove(case: ProofCase) -> Certificate:
    cell, activation, head, (T, B, I, H, K), variant, lengths = case
    return prove(activation, head, T=T, B=B, I=I, H=H, K=K, cell=cell, variant=variant, lengths=lengths)


def _cost(case: ProofCase) -> int:
    """Slowest first, so that the pool stays balanced: ReLU's piecewise loss (16-23 s each), then the
    gated cells over two steps (2-15 s), then the rest (1-3 s)."""
    cell, activation, _, sizes, _, _ = case
    return 0 if activation == "relu" else 1 if cell != "elman" and sizes[0] > 1 else 2


Progress = Callable[[str], None]


def certificates(workers: int = 2, progress: Progress | None = None) -> list[Certificate]:
    cases = proof_cases()
    order = sorted(cases, key=_cost)
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


def _name(case: ProofCase) -> str:
    cell, activation, head, sizes, variant, _ = case
    return f"{cell}{' ' + variant if variant else ''}, {activation}, {head}, (T, B, I, H, K) = {sizes}"


def can_draw() -> bool:
    """Whether matplotlib (the ``docs`` extra) is installed, which the figure needs."""
    return importlib.util.find_spec("matplotlib") is not None


def documents(proved: list[Certificate], curves: dict[str, np.ndarray],
              pages: dict[str, Page] | None = None) -> dict[str, str]:
    """File name -> text of every generated document; with ``pages``, the formulas each prints are recorded in
    ``pages[name]`` (what tests/test_rendered_formulas.py evaluates)."""
    pages = pages if pages is not None else {}
    page = lambda name: pages.setdefault(name, Page())
    filed = catalogue.documents()
    of = lambda document: [c for c in proved if c.cell in filed[document] and not c.variant]
    written = {"elman": lambda: elman_document(of("elman"), FIGURE, page("elman.md")),
               "lstm": lambda: lstm_document(of("lstm"), CELLS_FIGURE, curves, page("lstm.md")),
               "gru": lambda: gru_document(of("gru"), CELLS_FIGURE, curves, page("gru.md"))}
    out = {f"{name}.md": written[name]() if name in written else family_document(name, of(name), page(f"{name}.md"))
           for name in filed}
    out["variants.md"] = variants_document([c for c in proved if c.variant], page("variants.md"))
    unplaced = sorted({c.cell for c in proved} - {cell for cells in filed.values() for cell in cells})
    if unplaced:  # a proof that no document shows would run and be thrown away
        raise AssertionError(f"proofs of {unplaced} belong to no document of the catalogue")
    return out


def render(workers: int = 2, progress: Progress | None = None) -> dict[str, bytes]:
    """File name -> content of every generated file (without the figure when matplotlib is missing)."""
    data, curves = figure.series(), figure.cell_series()
    proved = certificates(workers, progress)
    files = {name: text.encode() for name, text in documents(proved, curves).items()}
    files.update({"elman_gradient_norms.csv": figure.csv_text(data).encode(),
                  "gradient_flow.csv": figure.cells_csv_text(curves).encode()})
    if can_draw():
        files[FIGURE] = figure.png_bytes(data)
        files[CELLS_FIGURE] = figure.cells_png_bytes(curves)
    return files


#: the README of a source checkout (absent from an installed package), whose Cells section is generated
README = Path(__file__).resolve().parent.parent / "README.md"
BEGIN, END = "<!-- cells:begin -->", "<!-- cells:end -->"


def cells_table() -> str:
    """The README's table of cells, from the catalogue: one row per cell."""
    rows = ["| cell | what it is | known as | gates | states | parameters | derived in |",
            "|---|---|---|---|---|---|---|"]
    shown = lambda params: ", ".join(f"`{p.key}` ({', '.join(p.shape)})" for p in params)
    for c in catalogue.CELLS.values():
        gates = ", ".join(c.gates) if c.gates else "none"
        per_gate = {f"{kind}_{g}" for kind in "UWb" for g in c.gates}
        extra = [p for p in c.params if p.key not in per_gate]
        params = shown(c.params) if not c.gates else (
            f"per gate k: `U_k` (H, I), `W_k` (H, {c.width}), `b_k` (H)" + (f"; {shown(extra)}" if extra else ""))
        rows.append(f"| `{c.name}` | {c.title} | {c.known_as} | {gates} | {', '.join(c.states)} | {params} "
                    f"| [{c.document}.md](derivations/generated/{c.document}.md) |")
    return "\n".join(rows)


def with_cells_table(readme: str) -> str:
    """``readme`` with the text between its cells markers replaced by :func:`cells_table`."""
    if readme.count(BEGIN) != 1 or readme.count(END) != 1:
        raise ValueError(f"README.md must hold {BEGIN} and {END} once each")
    head, rest = readme.split(BEGIN)
    return f"{head}{BEGIN}\n{cells_table()}\n{END}{rest.split(END, 1)[1]}"


def write(out: Path, files: dict[str, bytes]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (out / name).write_bytes(content)


def stale(out: Path, files: dict[str, bytes]) -> list[str]:
    """Names whose committed content differs from a fresh render."""
    return [n for n, c in files.items() if not (out / n).exists() or (out / n).read_bytes() != c]
