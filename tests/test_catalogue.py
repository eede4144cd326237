"""The catalogue (rnnspec.catalogue) is the one list of cells, gates and dtypes: a second copy anywhere in the
package or its scripts fails here, and so do equations that disagree with it."""

import ast
from pathlib import Path

import pytest

from rnnspec import catalogue

ROOT = Path(__file__).resolve().parent.parent
#: where a second copy would be read by users: the package's folders and the scripts
SCANNED = ("spec", "kernels", "derivations", "scripts")
#: framework facts: which cells each framework can represent, in its own gate order, and which cells a
#: framework's known defect shows on
FRAMEWORK_FACTS = ("spec/conventions/", "spec/frameworks/", "spec/defects.py")
#: where something is attached to each cell by name, and why that is not a second list (a test checks the keys)
ATTACHMENTS = {"derivations/registry.py": "the forward equations of each cell: test_every_cell_has_equations..."}
#: the generated documents: a table of those with a hand-written generator names documents, not cells
DOCUMENTS = set(catalogue.documents())
#: class attributes that are a target's declaration of what it implements (the contract's cells, dtypes)
DECLARATIONS = {"cells", "dtypes"}
#: module constants that declare what the module covers, cell by cell: the cells it implements (CELLS), a
#: framework's layer for each (LAYERS), goals set per cell (GOALS); each must be a subset of the catalogue
COVERAGE = {"CELLS", "LAYERS", "GOALS"}
GATE_ORDERS = {c.gates for c in catalogue.CELLS.values() if c.gates}
CELLISH = set(catalogue.NAMES) | set(catalogue.REFUSED)


def _strings(node) -> list[str]:
    elements = node.keys if isinstance(node, ast.Dict) else node.elts
    return [e.value for e in elements if isinstance(e, ast.Constant) and isinstance(e.value, str)]


def _declarations(tree) -> set[int]:
    """The ids of literals assigned to a class's ``cells`` or ``dtypes``, or to a module's coverage constant."""
    out = set()
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id in COVERAGE for t in stmt.targets):
            out.add(id(stmt.value))
    for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
        for stmt in cls.body:
            targets = (stmt.targets if isinstance(stmt, ast.Assign) else
                       [stmt.target] if isinstance(stmt, ast.AnnAssign) else [])
            if any(isinstance(t, ast.Name) and t.id in DECLARATIONS for t in targets) and stmt.value is not None:
                out.add(id(stmt.value))
    return out


def second_copies(path: Path, text: str) -> list[str]:
    """Each literal list of cells, gate order or list of dtypes in ``text`` that is not the catalogue's."""
    tree = ast.parse(text)
    declared = _declarations(tree)
    framework = any(str(path).startswith(p) for p in FRAMEWORK_FACTS) or str(path) in ATTACHMENTS
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Tuple, ast.List, ast.Set, ast.Dict)):
            strings = _strings(node)
            cells = [s for s in strings if s in CELLISH]
            if isinstance(node, ast.Dict) and strings and set(strings) <= DOCUMENTS:
                continue  # keyed by document ("gru" is a document, and a refused cell name)
            if len(cells) >= 2 and not framework and id(node) not in declared:
                found.append(f"{path}:{node.lineno}: a list of cells {cells}; read rnnspec.catalogue, or declare "
                             f"what the module covers in one of {sorted(COVERAGE)}")
            elif len(cells) >= 2 and set(cells) - set(catalogue.NAMES):
                stray = sorted(set(cells) - set(catalogue.NAMES))
                found.append(f"{path}:{node.lineno}: names not in the catalogue {stray}")
            # a dict keyed by dtype states a fact per dtype (an accuracy, a wider precision), not a list of them
            if not isinstance(node, ast.Dict) and set(strings) == set(catalogue.DTYPES) and id(node) not in declared:
                found.append(f"{path}:{node.lineno}: a list of dtypes {strings}; read rnnspec.catalogue.DTYPES")
        elif isinstance(node, ast.Constant) and node.value in GATE_ORDERS and not framework:
            found.append(f"{path}:{node.lineno}: a gate order {node.value!r}; read rnnspec.catalogue")
    return found


def test_no_second_list_of_cells_gates_or_dtypes():
    found = []
    for folder in SCANNED:
        for file in sorted((ROOT / folder).rglob("*.py")):
            found += second_copies(file.relative_to(ROOT), file.read_text())
    assert not found, "\n".join(found)


@pytest.mark.parametrize("stray", [
    'KNOWN = ("elman", "lstm", "gru-reset-after")',
    'for cell in ("lstm", "mgu"):\n    print(cell)',
    'ORDER = "ifgo"',
    'DTYPES = ["float32", "float64"]',
    'class Bench:\n    CELLS = ("lstm", "gru-reset-after")',  # a coverage constant counts at module level only
    'def f(cell):\n    return {"lstm": 1, "gru-reset-before": 2}[cell]',
])
def test_the_scan_catches_a_deliberately_added_stray_list(stray):
    assert second_copies(Path("spec/stray.py"), stray)


def test_a_target_declaration_and_a_frameworks_own_facts_are_not_second_copies():
    assert not second_copies(Path("spec/t.py"), 'class T:\n    cells = ("elman", "lstm")\n    dtypes = ("float32", '
                                                 '"float64")')
    assert not second_copies(Path("spec/conventions/x.py"), 'CANNOT = {"lstm-proj": "...", "gru-reset-before": "..."}')
    # but a framework's list that names a refused cell is caught
    assert second_copies(Path("spec/conventions/x.py"), 'CANNOT = {"gru": "...", "lstm-proj": "..."}')


def test_every_cell_has_equations_that_agree_with_the_catalogue():
    from rnnspec.derivations import registry

    assert set(registry._BUILDERS) == set(catalogue.NAMES)  # the equations are attached to exactly these names
    for name in catalogue.NAMES:
        built = registry.cell(name)
        assert tuple(v.key for v in built.params) == catalogue.cell(name).param_keys


def test_the_check_of_the_equations_fails_on_a_catalogue_that_disagrees(monkeypatch):
    from dataclasses import replace

    from rnnspec.derivations import registry

    wrong = replace(catalogue.CELLS["gru-reset-before"], params=catalogue.CELLS["gru-reset-before"].params[::-1])
    monkeypatch.setitem(catalogue.CELLS, "gru-reset-before", wrong)
    registry.cell.cache_clear()
    try:
        with pytest.raises(AssertionError, match="disagree with the catalogue"):
            registry.cell("gru-reset-before")
    finally:
        registry.cell.cache_clear()


def test_refused_names_are_refused_with_their_reason_everywhere():
    from rnnspec.derivations.registry import check_name

    for name, reason in catalogue.REFUSED.items():
        with pytest.raises(ValueError, match="ambiguous"):
            check_name(name)
        assert reason.startswith(f"'{name}'")
