"""Render derived equations as LaTeX: index form always, matrix form where the term shapes allow.

Matrix form is read off each term's index pattern: vectors on the left index multiply
elementwise (odot), ``M[j, i] v[j]`` is M^T v, ``M[i, j] v[j]`` is M v, and a product of an
i-part and a j-part is the outer product (i-part)(j-part)^T.
"""

from __future__ import annotations

import itertools
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import sympy as sp

from rnnspec.derivations.tensors import INTERMEDIATE, Equation, Var, index_symbols


@dataclass(frozen=True)
class Style:
    """How matrix form is written: LaTeX for documents, plain text for clause statements."""

    printer: Callable[..., str]
    odot: str
    transpose: str
    open: str
    close: str
    diag: str


def _text(expr: sp.Expr, order: str = "lex") -> str:
    return sp.sstr(expr, order=order)


LATEX = Style(sp.latex, r" \odot ", "^{T}", r"\left(", r"\right)", r"\operatorname{diag}")
TEXT = Style(_text, " * ", "^T", "(", ")", "diag")


def _placeholders():
    for a, b in itertools.product(string.ascii_lowercase, repeat=2):
        yield f"Xq{a}{b}"


def latex_with(expr: sp.Expr, names: Mapping[sp.Expr, str], style: Style = LATEX) -> str:
    """LaTeX (or ``style``'s text) of ``expr`` with each listed atom printed as the given string; f'(u) for
    f's derivative."""
    expr = expr.replace(
        lambda e: isinstance(e, sp.Derivative) and len(e.args[0].args) == 1 and e.args[0].args[0] == e.args[1][0],
        lambda e: sp.Function(e.args[0].func.__name__ + "'")(e.args[1][0]),
    ) if expr.has(sp.Derivative) else expr
    mapping, text = {}, {}
    # placeholders in the order of the printed names: lex order then reads alphabetically and
    # does not depend on hash order, so the documents are reproducible byte for byte
    ordered = sorted(names, key=lambda atom: (names[atom], sp.default_sort_key(atom)))
    for atom, place in zip(ordered, _placeholders()):
        mapping[atom] = sp.Symbol(place)
        text[place] = names[atom]
    out = style.printer(expr.xreplace(mapping), order="lex").replace(r"\operatorname{f'}", "f'")
    for place in sorted(text, key=len, reverse=True):
        out = out.replace(place, text[place])
    return out


def _atom_names(expr: sp.Expr, names: Mapping[str, str]) -> dict[sp.Expr, str]:
    found = {}
    for atom in expr.atoms(sp.Indexed):
        found[atom] = names.get(atom.base.label.name, atom.base.label.name)
    for sym in expr.free_symbols:
        if not isinstance(sym, sp.Indexed) and not sym.is_integer and sym.name in names:
            found[sym] = names[sym.name]
    return found


def index_form(eq: Equation, names: Mapping[str, str]) -> str:
    """``lhs_{ij} = sum_k ...`` with explicit sums over the indices each term carries."""
    sub = lambda idx: "".join(str(i) for i in idx)
    def one(e: sp.Expr, idx) -> str:
        mapping = {}
        for atom in e.atoms(sp.Indexed):
            base = names.get(atom.base.label.name, atom.base.label.name)
            mapping[atom] = _with_index(base, sub(atom.indices))
        for sym in e.free_symbols:
            if not isinstance(sym, sp.Indexed) and not sym.is_integer and sym.name in names:
                mapping[sym] = names[sym.name]
        return latex_with(e, mapping)
    terms = []
    for term in sp.Add.make_args(eq.rhs):
        summed = [i for i in index_symbols(term) if i not in eq.indices]
        prefix = "".join(r"\sum_{" + str(i) + "}" for i in summed)
        body = one(term, ())
        sign, body = ("-", body[1:].lstrip()) if body.startswith("-") else ("", body)
        terms.append(sign + prefix + (" " if prefix else "") + body)
    lhs = _with_index(names.get(eq.target.name, eq.target.name), sub(eq.indices)) if eq.indices else \
        names.get(eq.target.name, eq.target.name)
    return lhs + " = " + " + ".join(terms).replace("+ -", "- ")


def _with_index(base: str, index: str) -> str:
    """Append index letters to a name that may carry a time subscript: h_{t-1} -> h_{t-1,i}."""
    if not index:
        return base
    if base.endswith("}") and "_{" in base:
        return base[:-1] + "," + index + "}"
    return base + "_{" + index + "}"


def _vector_latex(factors: list[sp.Expr], names: Mapping[str, str], style: Style) -> str:
    parts = []
    for f in factors:
        text = latex_with(f, _atom_names(f, names), style)
        parts.append(f"{style.open}{text}{style.close}" if f.is_Add else text)
    return style.odot.join(parts)


def matrix_form(eq: Equation, names: Mapping[str, str], style: Style = LATEX) -> str | None:
    """The equation in vector/matrix notation, or None when a term fits no pattern."""
    if not eq.indices:
        return None
    free = list(eq.indices)
    terms = []
    for term in sp.Add.make_args(eq.rhs):
        coefficient, scalars, by_index, matrices = sp.Integer(1), [], {}, []
        identity = [f for f in sp.Mul.make_args(term) if isinstance(f, sp.KroneckerDelta) and set(f.args) == set(free)]
        if identity and len(free) == 2:  # delta_ij v_i: diag(v)
            rest = sp.Mul(*[f for f in sp.Mul.make_args(term) if f is not identity[0]]).xreplace({free[1]: free[0]})
            inner = matrix_form(Equation(_Vector, (free[0],), rest), names, style)
            if inner is None:
                return None
            terms.append(f"{style.diag}{style.open}{inner.split(' = ', 1)[1]}{style.close}")
            continue
        for factor in sp.Mul.make_args(term):
            idx = index_symbols(factor)
            if factor.is_number:
                coefficient *= factor
            elif not idx:
                scalar = latex_with(factor, _atom_names(factor, names), style)
                scalars.append(f"{style.open}{scalar}{style.close}" if isinstance(factor, sp.Add) else scalar)
            elif len(idx) == 1:
                by_index.setdefault(idx[0], []).append(factor)
            elif isinstance(factor, sp.Indexed) and len(idx) == 2:
                matrices.append(factor)
            else:
                return None
        text = _term_matrix(free, by_index, matrices, names, style)
        if text is None:
            return None
        sign = "-" if coefficient == -1 else ""
        lead = latex_with(coefficient, {}, style) + " " if coefficient not in (1, -1) else sign
        terms.append(lead + " ".join(scalars + [text]))
    lhs = names.get(eq.target.name, eq.target.name)
    return lhs + " = " + " + ".join(terms).replace("+ -", "- ")


_Vector = Var("v", ("H",), INTERMEDIATE)


def _term_matrix(free, by_index, matrices, names, style: Style) -> str | None:
    if len(free) == 1 and not matrices and set(by_index) <= {free[0]}:
        return _vector_latex(by_index.get(free[0], []), names, style) or "1"
    if len(free) == 1 and len(matrices) == 1:
        (m,) = matrices
        (i,) = free
        summed = [j for j in m.indices if j != i]
        if len(summed) != 1 or set(by_index) - {summed[0]} or i not in m.indices:
            return None
        name = names.get(m.base.label.name, m.base.label.name)
        vector = _vector_latex(by_index.get(summed[0], []), names, style)
        transpose = style.transpose if m.indices[1] == i else ""
        return f"{name}{transpose} {vector if len(by_index.get(summed[0], [])) == 1 else '(' + vector + ')'}"
    if len(free) == 2 and len(matrices) == 1 and tuple(matrices[0].indices) == tuple(free) \
            and set(by_index) <= {free[0]}:
        name = names.get(matrices[0].base.label.name, matrices[0].base.label.name)
        vector = _vector_latex(by_index.get(free[0], []), names, style)
        return f"{style.diag}{style.open}{vector}{style.close} {name}"
    if len(free) == 2 and not matrices and set(by_index) <= set(free):
        left = _vector_latex(by_index.get(free[0], []), names, style)
        right = _vector_latex(by_index.get(free[1], []), names, style)
        wrap = lambda s, many: f"{style.open}{s}{style.close}" if many else s
        return wrap(left, len(by_index.get(free[0], [])) > 1) + " " + \
            wrap(right, len(by_index.get(free[1], [])) > 1) + style.transpose
    return None
