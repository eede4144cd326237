"""Every formula the generated documents print, read back and evaluated against what it renders.

Coverage: every display (a ``$$ ... $$`` line) and every formula in the body of a table (each ``$...$`` of a
row, but the row's first column, which labels it) in elman.md, lstm.md, gru.md and variants.md. Prose
(``$\\bar{q} = \\partial L / \\partial q$`` in a sentence) and table headers are notation, not rendered
formulas. :func:`test_the_documents_print_exactly_the_recorded_formulas` asserts that the formulas so found in
the committed documents are exactly those the generator recorded (``rnnspec.derivations.page``), in order, so
that no formula goes unchecked; the others evaluate each printed text (``tests/latex_reader.py``, written
apart from the renderer) on random numbers:

- an equation (forward, backward, in index or matrix form) against the derived equation evaluated by the
  project's evaluator, at values where the forward quantities are those of the cell's step;
- a step Jacobian against the Jacobian of the cell's forward step by complex step;
- a program (BPTT assembled, the total loss) run over three steps, against the oracle's loss and gradients;
- an expression (an activation's derivative) against the SymPy expression.
"""

from __future__ import annotations

import dataclasses
import re
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import sympy as sp

from rnnspec import catalogue
from rnnspec.derivations import generate, render
from rnnspec.derivations.derive import activation_gain, derive
from rnnspec.derivations.evaluate import backend
from rnnspec.derivations.evaluate import evaluate as evaluate_equation
from rnnspec.derivations.gated_document import gru_document
from rnnspec.derivations.oracle import Oracle
from rnnspec.derivations.page import Formula, Page, forward_equations
from rnnspec.derivations.registry import cell as registered
from rnnspec.derivations.tensors import PARAM, Equation, Var

from latex_reader import Context, Names, ReadError, evaluate, read

GENERATED = Path(__file__).parent.parent / "derivations" / "generated"
#: every axis a different length, so that a transposed or misplaced index cannot go unseen
SIZES = {"I": 2, "H": 3, "K": 4, "P": 5}
#: every generated document: one per document of the catalogue, and the variants'
DOCUMENTS = [f"{name}.md" for name in catalogue.documents()] + ["variants.md"]
#: the documents' generic activation f, read as tanh (the equations are made concrete the same way)
F = sp.Function("f")
FUNCTIONS = {"f": np.tanh, "f'": lambda u: 1 - np.tanh(u) ** 2}
TOLERANCE = 1e-10


@cache
def pages() -> dict[str, Page]:
    """Each document's formulas as the generator records them (certificates and curves do not change them)."""
    found: dict[str, Page] = {}
    generate.documents([], {"elman": np.zeros(61)}, found)
    return found


def printed_formulas(text: str) -> list[str]:
    """The displays and the formulas in table bodies (not a header row, nor a row's label column)."""
    lines, out = text.splitlines(), []
    for n, line in enumerate(lines):
        display = re.fullmatch(r"\$\$ (.*) \$\$", line)
        if display:
            out.append(display.group(1))
        elif line.startswith("|") and not line.startswith("|---") and n > 0 and lines[n - 1].startswith("|"):
            cells = line.strip("|").split(" | ")[1:]
            out += [m for cell in cells for m in re.findall(r"\$([^$]+)\$", cell)]
    return out


def test_the_documents_print_exactly_the_recorded_formulas():
    total = 0
    for name, page in pages().items():
        printed = printed_formulas((GENERATED / name).read_text())
        recorded = [f.latex for f in page.formulas]
        assert printed == recorded, f"{name}: printed and recorded formulas differ: " \
            f"{[p for p in printed if p not in recorded][:3]} / {[r for r in recorded if r not in printed][:3]}"
        total += len(printed)
    assert set(pages()) == set(DOCUMENTS)
    # every formula of every document: 61 + 93 + 102 + 31 = 287 when this was written
    assert total == sum(len(p.formulas) for p in pages().values()) > 250


# -- equations and Jacobians ------------------------------------------------------------------------------------

def concrete(expr: sp.Expr) -> sp.Expr:
    """``expr`` with the generic activation f as tanh."""
    return expr.replace(F, sp.tanh).doit() if expr.has(F) else expr


def _shape(var: Var) -> tuple[int, ...]:
    return ((1,) if var.per_example else ()) + tuple(SIZES[s] for s in var.shape)


def step_values(formula: Formula, rng, be=None, start: dict | None = None) -> dict[str, np.ndarray]:
    """Random values of every quantity of the formula's cell (and their cotangents), with each forward quantity
    then computed by the cell's step and head from the ones before it."""
    be = be or backend("float64")
    quantities = derive(formula.cell).quantities
    env = dict(start) if start else {n: rng.standard_normal(_shape(v)) for n, v in quantities.items()}
    shifts = formula.cell.head.shifts if formula.cell.head else ()
    for eq in forward_equations(formula.cell):
        env[eq.target.name] = evaluate_equation(Equation(eq.target, eq.indices, concrete(eq.rhs)), env, quantities,
                                                SIZES, 1, be)
        for shift in shifts:
            if shift.source.name == eq.target.name:
                env[shift.target.name] = np.max(env[eq.target.name].real, axis=-1).astype(env[eq.target.name].dtype)
    return env


def reader_names(formula: Formula) -> Names:
    """The printed names: as the formula's table writes them, else (as the renderer does) the quantity's own name."""
    plain: dict[str, str] = {}
    written = {**{key: key for key in derive(formula.cell).quantities}, **formula.names}
    for key, text in written.items():
        if plain.get(text, key) != key:
            raise AssertionError(f"{plain[text]} and {key} are both written {text!r}")
        plain[text] = key
    return Names(plain, functions=FUNCTIONS)


def _lookup(env, quantities):
    def lookup(key, step):
        if key not in env:
            raise ReadError(f"unknown quantity {key!r}")
        value = env[key]
        return value[0] if quantities[key].per_example else value
    return lookup


def printed_value(formula: Formula, env: dict, quantities) -> tuple[np.ndarray, np.ndarray]:
    """The printed right side evaluated as read (every entry, in index form), and its left side's name checked."""
    statement, = read(formula.latex, reader_names(formula))
    assert statement[0] == "relation" and statement[1] == ("=",), f"not an equation: {formula.latex}"
    lhs, rhs = statement[2]
    eq: Equation = formula.source
    letters = "".join(str(i) for i in eq.indices) if formula.form == "index" else ""
    assert lhs == ("leaf", eq.target.name, letters, None), f"left side {lhs} is not {eq.target.name}_{letters}"
    _check_sums(rhs, formula.latex)
    lookup = _lookup(env, quantities)
    if formula.form == "matrix":
        return evaluate(rhs, Context(lookup, True, FUNCTIONS))
    shape = tuple(SIZES[s] for s in eq.target.shape)
    out = np.empty(shape)
    for index in np.ndindex(shape):
        out[index] = evaluate(rhs, Context(lookup, False, FUNCTIONS, dict(zip(letters, index))))
    return out


def _check_sums(node, text: str) -> None:
    """A sum's body holds only factors that carry its index: a factor free of it belongs outside."""
    if not isinstance(node, tuple) or not node or not isinstance(node[0], str):
        return
    if node[0] == "sum" and node[2] is None:
        for factor in _factors(node[4]):
            assert _carries(factor, node[1]), f"sum over {node[1]} holds a factor free of it in {text}"
    for child in node[1:]:
        _check_sums(child, text)


def _factors(node) -> list:
    return _factors(node[1]) + _factors(node[2]) if node[0] in ("mul", "odot") else [node]


def _carries(node, letter: str) -> bool:
    if not isinstance(node, tuple):
        return False
    if node and node[0] == "leaf":
        return letter in node[2]
    if node and node[0] == "delta":
        return letter in node[1:]
    return any(_carries(child, letter) for child in node[1:] if isinstance(child, tuple))


def _column(value: np.ndarray, matrix: bool) -> np.ndarray:
    return value.reshape(-1, 1) if matrix and value.ndim == 1 else value


def check_equation(formula: Formula, rng) -> None:
    eq: Equation = formula.source
    quantities = {**derive(formula.cell).quantities, eq.target.name: eq.target}
    env = step_values(formula, rng)
    want = evaluate_equation(Equation(eq.target, eq.indices, concrete(eq.rhs)), env, quantities, SIZES, 1,
                             backend("float64"))
    want = _column(want[0] if eq.target.per_example else want, formula.form == "matrix")
    got = printed_value(formula, env, quantities)
    assert np.shape(got) == np.shape(want) and np.allclose(got, want, rtol=TOLERANCE, atol=TOLERANCE), \
        f"{formula.latex}\nreads {got}\nderived {want}"


def _jacobian_of(formula: Formula) -> tuple[str, str]:
    """(of, wrt) of a Jacobian formula: the states J_<of>_<wrt> differentiates."""
    name = formula.source.target.name
    pairs = [(o.name, i.name) for o in formula.cell.state_out for i in formula.cell.state_in]
    (pair,) = [p for p in pairs if name == f"J_{p[0]}_{p[1]}"]
    return pair


def complex_step_jacobian(formula: Formula, start: dict) -> np.ndarray:
    of, wrt = _jacobian_of(formula)
    be, columns = backend("complex128"), []
    for k in range(start[wrt].shape[-1]):
        moved = {name: np.asarray(value, dtype=complex) for name, value in start.items()}
        moved[wrt][0, k] += 1e-30j
        columns.append(step_values(formula, None, be, moved)[of][0].imag / 1e-30)
    return np.stack(columns, axis=-1)


def check_jacobian(formula: Formula, rng) -> None:
    eq: Equation = formula.source
    quantities = {**derive(formula.cell).quantities, eq.target.name: eq.target}
    start = {n: rng.standard_normal(_shape(v)) for n, v in quantities.items() if n != eq.target.name}
    env = step_values(formula, rng, start=start)
    want = complex_step_jacobian(formula, start)
    got = printed_value(formula, env, quantities)
    assert np.allclose(got, want, rtol=TOLERANCE, atol=TOLERANCE), \
        f"{formula.latex}\nreads {got}\nthe step's Jacobian by complex step is {want}"


# -- programs: BPTT over time, and the total loss ----------------------------------------------------------------

STEPS = 3


def program_run(cell, rng):
    """A run of the concrete cell over STEPS steps: per-step values of every forward quantity (``h`` also at step
    0), the oracle's loss and gradients, and the parameters."""
    concrete_cell = registered(cell.name, "tanh", cell.head.name)
    quantities = concrete_cell.quantities
    params = {v.name: 0.5 * rng.standard_normal(tuple(SIZES[s] for s in v.shape)) for v in concrete_cell.all_params}
    x = rng.standard_normal((STEPS, 1, SIZES["I"]))
    state0 = {key: rng.standard_normal((1, SIZES["H"])) for key in concrete_cell.state0_keys}
    targets = rng.integers(0, SIZES["K"], (STEPS, 1))
    loss, grads = Oracle(cell=concrete_cell).loss(x, state0, {v.key: params[v.name] for v in concrete_cell.all_params},
                                                 targets)
    series: dict[str, dict[int, np.ndarray]] = {}
    states = {inp.name: state0[out.key + "0"] for inp, out in concrete_cell.states}
    for inp, out in concrete_cell.states:
        series.setdefault(out.name, {})[0] = states[inp.name][0]
    head = concrete_cell.head
    for t in range(1, STEPS + 1):
        env = {**{k: v for k, v in params.items()}, "x": x[t - 1], **states,
               head.target.name: np.eye(SIZES["K"])[targets[t - 1]]}
        for eq in concrete_cell.step + head.equations + head.outputs:
            env[eq.target.name] = evaluate_equation(eq, env, quantities, SIZES, 1, backend("float64"))
            for shift in head.shifts:
                if shift.source.name == eq.target.name:
                    env[shift.target.name] = np.max(env[eq.target.name], axis=-1)
        for name, value in env.items():
            if quantities[name].per_example:
                series.setdefault(name, {})[t] = value[0]
        states = {inp.name: env[out.name] for inp, out in concrete_cell.states}
    return series, params, loss, grads


def program_names(formula: Formula) -> Names:
    """Names in a program: a per-step quantity q_{t} by its stem q (read at any step), parameters as written, and
    the run-level quantities the formula names (its ``source``: gradients, the loss, a Jacobian, the gain)."""
    quantities = derive(formula.cell).quantities
    families, plain = {}, dict(formula.source)
    written = {**{key: key for key in quantities}, **formula.names}
    for key, text in written.items():
        var = quantities.get(key)
        if var is None:
            continue
        if var.kind == PARAM:
            plain[text] = key
        elif text.endswith("_{t}"):
            families[text[:-4]] = key
    return Names(plain, families, FUNCTIONS)


def state_jacobians(cell, params, series) -> dict[tuple[int, int], np.ndarray]:
    """d h_t / d h_k of the run, for 0 <= k < t <= STEPS, by complex step through steps k+1..t."""
    concrete_cell = registered(cell.name, "tanh", cell.head.name)
    be = backend("complex128")
    out = {}
    for k in range(STEPS):
        for t in range(k + 1, STEPS + 1):
            columns = []
            for n in range(SIZES["H"]):
                h = series["h"][k].astype(complex).reshape(1, -1)
                h[0, n] += 1e-30j
                for step in range(k + 1, t + 1):
                    env = {**params, "x": series["x"][step].reshape(1, -1), "h_prev": h}
                    for eq in concrete_cell.step:
                        env[eq.target.name] = evaluate_equation(eq, env, concrete_cell.quantities, SIZES, 1, be)
                    h = env["h"]
                columns.append(h[0].imag / 1e-30)
            out[(t, k)] = np.stack(columns, axis=-1)
    return out


def check_programs(formulas: list[Formula], rng) -> None:
    """Run every statement of ``formulas`` (one document's programs, in order) over a run: recurrences q_{t} for
    t = T..1, boundary values q_{T+1}, then each gradient and the loss against the oracle's, each Jacobian of the
    state against complex step, and each chain of inequalities at every pair of steps."""
    cell = formulas[0].cell
    assert all(f.cell is cell for f in formulas)
    series, params, loss, grads = program_run(cell, rng)
    quantities = derive(cell).quantities
    statements = []
    for formula in formulas:
        for statement in read(formula.latex, program_names(formula)):
            assert statement[0] == "relation", f"not an equation: {formula.latex}"
            statements.append((formula.latex, statement))
    jacobians = {}
    gain = float(activation_gain("tanh"))

    def lookup(key, step, bind=None):
        if key == "gain":
            return gain
        if key.startswith("jacobian:"):
            return jacobians[(bind["t"], bind["k"])]
        if step is None:
            return params[key]
        if step not in series.get(key, {}):
            raise ReadError(f"{key} at step {step} is read before the program computes it")
        return series[key][step]

    def at(bind):
        return Context(lambda key, step: lookup(key, step, bind), True, FUNCTIONS, {"T": STEPS, **bind})

    equations = [(text, *statement[2]) for text, statement in statements if statement[1] == ("=",)]
    recurrences = [(lhs, rhs) for _, lhs, rhs in equations if lhs[0] == "leaf" and lhs[3] and "t" in lhs[3]]
    for _, lhs, rhs in equations:
        if lhs[0] == "leaf" and lhs[3] and "t" not in lhs[3]:  # a boundary value, q_{T+1} = 0
            shape = (SIZES[quantities[lhs[1]].shape[0]], 1)
            series.setdefault(lhs[1], {})[_at(lhs[3], STEPS)] = np.broadcast_to(evaluate(rhs, at({})), shape).ravel()
    for t in range(STEPS, 0, -1):
        for lhs, rhs in recurrences:
            series.setdefault(lhs[1], {})[t + _at(lhs[3], 0)] = np.asarray(evaluate(rhs, at({"t": t}))).ravel()
    if any("jacobian:" in str(statement) for _, statement in statements):
        jacobians.update(state_jacobians(cell, params, series))
    compared = 0
    for text, statement in statements:
        lhs = statement[2][0]
        key = lhs[1] if lhs[0] == "leaf" else None
        if statement[1] != ("=",) or (key and key.startswith("jacobian:")):  # over every pair of steps k < t
            for k in range(STEPS):
                for t in range(k + 1, STEPS + 1):
                    _compare(text, statement, at({"t": t, "k": k}), jacobians.get((t, k)))
            compared += 1
            continue
        if key == "loss":
            got, want = evaluate(statement[2][1], at({})), loss
        elif key and key.startswith("grad:"):
            contract = key.removeprefix("grad:")
            if contract == "x":  # dL/dx_t, at every step
                for t in range(1, STEPS + 1):
                    _compare(text, statement, at({"t": t}), grads["x"][t - 1, 0].reshape(-1, 1))
                compared += 1
                continue
            got = evaluate(statement[2][1], at({}))
            want = grads[contract][0] if contract.endswith("0") else grads[contract]
            want = want.reshape(-1, 1) if np.ndim(want) == 1 else want
        else:
            continue
        assert np.shape(got) == np.shape(want) and np.allclose(got, want, rtol=TOLERANCE, atol=TOLERANCE), \
            f"{text}: reads {got}, the oracle gives {want}"
        compared += 1
    assert compared, "no statement compared"


def _compare(text: str, statement, ctx: Context, want) -> None:
    """``a = b`` against ``want``, or a chain ``a \\le b \\le c`` holding (to rounding)."""
    ops = statement[1]
    if ops == ("=",):
        got = evaluate(statement[2][1], ctx)
        assert np.shape(got) == np.shape(want) and np.allclose(got, want, rtol=TOLERANCE, atol=TOLERANCE), \
            f"{text} at {ctx.bind}: reads {got}, against {want}"
        return
    parts = [evaluate(p, ctx) for p in statement[2]]
    for op, a, b in zip(ops, parts, parts[1:]):
        assert op == r"\le" and a <= b * (1 + 1e-12) + 1e-15, f"{text} at {ctx.bind}: {a} {op} {b} fails"


def _at(when: str, base: int) -> int:
    """The step offset of ``t+1`` (relative) or the step of ``T+1`` (with T = base)."""
    m = re.fullmatch(r"([tT])([+-]\d+)?|(\d+)", when)
    if m.group(3):
        return int(m.group(3))
    return (base if m.group(1) == "T" else 0) + int(m.group(2) or 0)


# -- expressions ---------------------------------------------------------------------------------------------------

def check_expression(formula: Formula, rng) -> None:
    expr: sp.Expr = formula.source
    symbols = sorted(expr.free_symbols, key=lambda s: s.name)
    plain = {sp.latex(s): s.name for s in symbols}
    lhs_text = formula.latex.split(" = ")[0] if " = " in formula.latex else None
    if lhs_text:
        plain[lhs_text] = "lhs"
    names = Names(plain, functions=FUNCTIONS)
    (statement,) = read(formula.latex, names)
    if lhs_text:
        assert statement[0] == "relation" and statement[2][0] == ("leaf", "lhs", "", None)
        statement = statement[2][1]
    function = sp.lambdify(symbols, expr, "numpy")
    for _ in range(6):
        values = {s.name: 2 * rng.standard_normal() for s in symbols}
        got = evaluate(statement, Context(lambda key, step, values=values: values[key], False, FUNCTIONS))
        want = function(*(values[s.name] for s in symbols))
        assert np.isclose(got, want, rtol=TOLERANCE, atol=TOLERANCE), f"{formula.latex} at {values}: {got} {want}"


# -- the checks, per document ----------------------------------------------------------------------------------------

def check_formula(formula: Formula, rng) -> None:
    """Read ``formula.latex`` and compare it with its source (programs are checked by :func:`check_programs`)."""
    {"equation": check_equation, "jacobian": check_jacobian, "expression": check_expression}[formula.kind](formula, rng)


def check_page(page: Page, seed: int = 0, first: bool = False) -> list[str]:
    """Every formula of ``page`` checked; the failures, as text (with ``first``, up to the first)."""
    rng, failures = np.random.default_rng(seed), []
    programs: dict[int, list[Formula]] = {}
    for formula in page.formulas:
        if formula.kind == "program":
            programs.setdefault(id(formula.cell), []).append(formula)
            continue
        try:
            check_formula(formula, rng)
        except (AssertionError, ReadError, KeyError) as error:
            failures.append(f"{formula.kind}: {error}")
            if first:
                return failures
    for group in programs.values():
        try:
            check_programs(group, rng)
        except (AssertionError, ReadError, KeyError) as error:
            failures.append(f"program: {error}")
    return failures


@pytest.mark.parametrize("document", DOCUMENTS)
def test_every_printed_formula_evaluates_to_what_it_renders(document):
    failures = check_page(pages()[document])
    assert not failures, f"{document}: {len(failures)} formulas read wrong:\n" + "\n\n".join(failures[:5])


def test_every_step_jacobian_also_reads_right_in_index_form():
    """The documents print the Jacobians in matrix form; their index form (where the reset-before GRU's sum over k
    went wrong) is rendered and read too: each sum after the factors free of its index, and right in value."""
    jacobians = [f for page in pages().values() for f in page.formulas if f.kind == "jacobian"]
    # elman's, lstm's four, and one of each cell of every other document (the two GRUs, the two MGUs)
    others = [cells for name, cells in catalogue.documents().items() if name not in ("elman", "lstm")]
    assert len(jacobians) == 1 + 4 + sum(len(cells) for cells in others)
    rng = np.random.default_rng(1)
    for formula in jacobians:
        scratch = Page()
        scratch.equation(formula.source, formula.names, formula.cell, "index", kind="jacobian")
        (indexed,) = scratch.formulas
        assert indexed.form == "index"
        check_formula(indexed, rng)
    before = [f for f in jacobians if f.cell.name == "gru-reset-before"][0]
    shown = Page().equation(before.source, before.names, before.cell, "index")
    assert r"\left(1 - n_{t,i}^{2}\right) \left(1 - z_{t,i}\right) \sum_{k} W_{n,ik}" in shown, shown


# -- the check can fail -----------------------------------------------------------------------------------------------

def _gru_before_jacobian() -> Formula:
    (formula,) = [f for f in pages()["gru.md"].formulas if f.kind == "jacobian" and f.cell.name == "gru-reset-before"]
    return formula


#: what main printed at 77676b5 for the reset-before GRU's step Jacobian: W_{n,ij} r_{t,j} inside sum_k
OLD_GRU_JACOBIAN = (
    r"\left(\frac{\partial h_{t}}{\partial h_{t-1}}\right)_{ij} = z_{t,i} \delta_{i j} + \sum_{k} \left(- z_{t,i} + 1"
    r"\right) \left(- \tanh^{2}{\left(\hat{n}_{t,i} \right)} + 1\right) \left(W_{n,ij} r_{t,j} + \frac{W_{n,ik} "
    r"W_{r,kj} h_{t-1,k} e^{- \hat{r}_{t,k}}}{\left(1 + e^{- \hat{r}_{t,k}}\right)^{2}}\right) + \frac{W_{z,ij} "
    r"h_{t-1,i} e^{- \hat{z}_{t,i}}}{\left(1 + e^{- \hat{z}_{t,i}}\right)^{2}} - \frac{W_{z,ij} n_{t,i} "
    r"e^{- \hat{z}_{t,i}}}{\left(1 + e^{- \hat{z}_{t,i}}\right)^{2}}"
)


def test_the_old_gru_jacobian_fails_the_check():
    formula = dataclasses.replace(_gru_before_jacobian(), latex=OLD_GRU_JACOBIAN, form="index")
    with pytest.raises(AssertionError, match="sum over k holds a factor free of it"):
        check_formula(formula, np.random.default_rng(0))
    # and by value, with the structural rule set aside: the sum counts W_{n,ij} r_{t,j} H times
    with pytest.raises(AssertionError, match="by complex step"):
        _check_value_only(formula)


def _check_value_only(formula: Formula) -> None:
    import test_rendered_formulas as me

    saved = me._check_sums
    me._check_sums = lambda node, text: None
    try:
        check_formula(formula, np.random.default_rng(0))
    finally:
        me._check_sums = saved


def _old_index_form(eq, names, defined=()):
    """The index form as main printed it at 77676b5: a term's sum in front of all its factors."""
    from rnnspec.derivations.tensors import index_symbols

    eq = render.for_reader(eq, defined)
    sub = lambda idx: "".join(str(i) for i in idx)

    def one(e):
        mapping = {a: render._with_index(names.get(a.base.label.name, a.base.label.name), sub(a.indices))
                   for a in e.atoms(sp.Indexed)}
        mapping.update({s: names[s.name] for s in e.free_symbols
                        if not isinstance(s, sp.Indexed) and not s.is_integer and s.name in names})
        return render.latex_with(e, mapping)
    terms = []
    for term in sp.Add.make_args(eq.rhs):
        prefix = "".join(r"\sum_{" + str(i) + "}" for i in index_symbols(term) if i not in eq.indices)
        body = one(term)
        sign, body = ("-", body[1:].lstrip()) if body.startswith("-") else ("", body)
        terms.append(sign + prefix + (" " if prefix else "") + body)
    lhs = render._with_index(names.get(eq.target.name, eq.target.name), sub(eq.indices))
    return lhs + " = " + " + ".join(terms).replace("+ -", "- ")


BREAKS = ["the old sum placement", "no transpose", "index letters reversed", "sigma' without (1 - sigma)"]


@pytest.mark.parametrize("break_it", BREAKS)
def test_a_broken_renderer_fails_the_check(monkeypatch, break_it):
    """Render the documents again with a deliberately broken renderer: the check must fail."""
    import rnnspec.derivations.page as page_module

    if break_it == "the old sum placement":  # every formula in index form, each term's sum in front of all of it
        monkeypatch.setattr(page_module, "index_form", _old_index_form)
        monkeypatch.setattr(page_module, "matrix_form", lambda *args, **kwargs: None)
    elif break_it == "no transpose":
        real_term = render._term_matrix
        monkeypatch.setattr(render, "_term_matrix", lambda *a: (real_term(*a) or "").replace("^{T}", "") or None)
    elif break_it == "index letters reversed":
        real_index = render._with_index
        monkeypatch.setattr(render, "_with_index", lambda base, index: real_index(base, index[::-1]))
    else:
        real_form = render.logistic_form
        monkeypatch.setattr(render, "logistic_form", lambda e: real_form(e).replace(
            lambda x: isinstance(x, sp.Add) and x.has(render.sigma), lambda x: sp.Integer(1)))
    broken = Page()
    gru_document([], generate.CELLS_FIGURE, {}, broken)  # it has every kind of formula that can break so
    assert check_page(broken, first=True), f"a renderer with {break_it} passed the check"
