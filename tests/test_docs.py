"""The manual's shape: README.md stays short and its quick start is CI's, every relative link resolves,
benchmarks/README.md indexes exactly the files under benchmarks/, and the README's Cells section names the
registered cells."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
BENCHMARKS = ROOT / "benchmarks"
INDEX = BENCHMARKS / "README.md"
#: issue 33 asks for a README of about 200 lines; this is the line it must not pass
README_MAX_LINES = 220

#: a Markdown link or image: [text](target) or ![alt](target), target without spaces
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _pages() -> list[Path]:
    return [README, INDEX, *sorted((ROOT / "docs").glob("*.md"))]


def _relative_links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # code blocks hold no links
    return [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t)]


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _index_rows() -> list[list[str]]:
    """The paths named in the first column of every table row of the index."""
    rows = []
    for line in INDEX.read_text().splitlines():
        cells = line.split("|")
        if line.startswith("| `") and len(cells) > 2:
            rows.append(re.findall(r"`([^`]+)`", cells[1]))
    return rows


def _benchmark_files() -> set[str]:
    """Every file under benchmarks/ but the index itself, relative to benchmarks/ (caches left out)."""
    return {p.relative_to(BENCHMARKS).as_posix() for p in BENCHMARKS.rglob("*")
            if p.is_file() and p != INDEX and "__pycache__" not in p.parts and not p.name.startswith(".")}


def test_readme_stays_a_short_manual():
    lines = README.read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move detail into docs/"


def test_the_quick_start_is_two_commands_and_they_are_what_ci_runs():
    text = README.read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```bash\n(.*?)```", section, re.S)
    install, tests = block.strip().splitlines()
    ci = (ROOT / ".ci" / "run").read_text()
    # CI runs the install's pip arguments and the test command as the README gives them
    pip_args = install.split("pip install", 1)[1].split("&&", 1)[0].strip()
    assert pip_args in ci, (pip_args, ci)
    assert tests.strip() in ci, (tests, ci)
    assert install.rstrip().endswith("rnnspec check"), install


@pytest.mark.parametrize("page", _pages(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(page):
    missing = []
    for target in _relative_links(page):
        path, _, anchor = target.partition("#")
        if not path:  # a heading of this page
            headings = {_slug(h) for h in re.findall(r"^#+ (.*)$", page.read_text(), re.M)}
            if anchor not in headings:
                missing.append(target)
        elif not (page.parent / path).exists():
            missing.append(target)
    assert not missing, f"{page.relative_to(ROOT)} links to what does not exist: {missing}"


def test_every_file_under_benchmarks_is_in_the_index():
    indexed = {path for row in _index_rows() for path in row}
    unlisted = sorted(_benchmark_files() - indexed)
    assert not unlisted, f"add a row to benchmarks/README.md for: {unlisted}"


def test_the_index_names_only_files_that_exist():
    rows = _index_rows()
    assert len(rows) > 10, "the index's table rows were not found"
    named = [path for row in rows for path in row]
    missing = sorted(p for p in named if not (BENCHMARKS / p).is_file())
    assert not missing, f"benchmarks/README.md names files that do not exist: {missing}"
    twice = sorted({p for p in named if named.count(p) > 1})
    assert not twice, f"benchmarks/README.md names these files in more than one row: {twice}"


def test_the_cells_section_is_the_catalogues_table():
    """The README's Cells table is generated from the catalogue (rnnspec derive writes it; --check checks it)."""
    from rnnspec import catalogue
    from rnnspec.derivations import generate

    text = README.read_text()
    assert text == generate.with_cells_table(text), "README's Cells section is stale: run `rnnspec derive`"
    table = text.split("<!-- cells:begin -->", 1)[1].split("<!-- cells:end -->", 1)[0]
    first_column = [row.split("|")[1] for row in table.strip().splitlines()[2:]]
    named = [name for cell in first_column for name in re.findall(r"`([^`]+)`", cell)]
    assert named == list(catalogue.NAMES), named
