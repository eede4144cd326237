r"""Render derived equations as LaTeX: index form always, matrix form where the term shapes allow.

Matrix form is read off each term's index pattern: vectors on the left index multiply
elementwise (odot), ``M[j, i] v[j]`` is M^T v, ``M[i, j] v[j]`` is M v, and a product of an
i-part and a j-part is the outer product (i-part)(j-part)^T; a chain of matrices through summed
indices, with vectors on them, is diag(u) M diag(v) N ...

In index form a sum is written in front of the factors that carry its index, after those that do not:
``a_i \sum_k W_{ik} v_k``. The LaTeX is written for a reader (the plain text of clause statements is
SymPy's): the logistic function 1 / (1 + e^{-u}) is sigma(u) and its derivative e^{-u} / (1 + e^{-u})^2
is sigma(u) (1 - sigma(u)); where a forward equation defines q_i = F(u_i) (a gate: r_t = sigma(r^_t)),
F(u_i) in any other equation is written q_i, so sigma' of a gate reads r_t (1 - r_t); and a sum leads
with a positive term (1 - z, not -z + 1).
"""

from __future__ import annotations

import itertools
import re
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import sympy as sp
from sympy.core.function import UndefinedFunction
from sympy.printing.latex import LatexPrinter

from rnnspec.derivations.tensors import INTERMEDIATE, Equation, Var, index_symbols


class sigma(sp.Function):  # noqa: N801 (a SymPy function, named as it prints: \sigma)
    """The logistic function, as documents write it: sigma(u) = 1 / (1 + e^{-u})."""

    def _eval_rewrite_as_exp(self, u, **kwargs):
        return 1 / (1 + sp.exp(-u))


class _Latex(LatexPrinter):
    """SymPy's LaTeX, except that a sum leads with its first positive term (1 - z_{t}, not - z_{t} + 1) and a product
    of plain factors puts its sums last (sigma(u) (1 - sigma(u)), as textbooks write it)."""

    def _print_Mul(self, expr):
        factors = expr.as_ordered_factors()
        if not any(f.is_Add for f in factors) or any(f.is_Number or (f.is_Pow and f.exp.is_negative) for f in factors):
            return super()._print_Mul(expr)
        ordered = [f for f in factors if not f.is_Add] + [f for f in factors if f.is_Add]
        last = len(ordered) - 1
        return " ".join(rf"\left({self._print(f)}\right)" if self._needs_mul_brackets(f, first=n == 0, last=n == last)
                        else self._print(f) for n, f in enumerate(ordered))

    def _print_Add(self, expr, order=None):
        terms = list(self._as_ordered_terms(expr, order=order))
        lead = next((n for n, t in enumerate(terms) if not t.could_extract_minus_sign()), 0)
        terms = [terms[lead], *terms[:lead], *terms[lead + 1:]]
        tex = ""
        for n, term in enumerate(terms):
            if n and term.could_extract_minus_sign():
                tex += " - "
                term = -term
            elif n:
                tex += " + "
            term_tex = self._print(term)
            tex += rf"\left({term_tex}\right)" if self._needs_add_brackets(term) else term_tex
        return tex


def latex(expr: sp.Expr, order: str = "lex") -> str:
    """The LaTeX of ``expr`` as the documents print it (:class:`_Latex`)."""
    return _Latex({"order": order}).doprint(expr)


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


LATEX = Style(latex, r" \odot ", "^{T}", r"\left(", r"\right)", r"\operatorname{diag}")
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


def _logistic_argument(expr: sp.Expr) -> sp.Expr | None:
    """u where ``expr`` is 1 + e^{-u}, else None."""
    if expr.is_Add and len(expr.args) == 2 and sp.S.One in expr.args:
        (other,) = [a for a in expr.args if a != 1]
        if isinstance(other, sp.exp):
            return -other.args[0]
    return None


def logistic_form(expr: sp.Expr) -> sp.Expr:
    """``expr`` with 1 / (1 + e^{-u}) written sigma(u) and e^{-u} / (1 + e^{-u})^2 written sigma(u) (1 - sigma(u))
    (equal in value; SymPy's derivative of the logistic function comes back in the exponential form)."""
    if expr.is_Atom or isinstance(expr, sp.Indexed) or not expr.args:
        return expr
    args = [logistic_form(a) for a in expr.args]
    if args != list(expr.args):
        expr = expr.func(*args)
    if expr.is_Pow and expr.exp == -1 and (u := _logistic_argument(expr.base)) is not None:
        return sigma(u)
    if not expr.is_Mul:
        return expr
    factors = list(expr.args)
    for n, factor in enumerate(factors):
        if not (factor.is_Pow and factor.exp == -2) or (u := _logistic_argument(factor.base)) is None:
            continue
        for m, other in enumerate(factors):
            if isinstance(other, sp.exp) and -u in sp.Add.make_args(other.args[0]):
                factors[n], factors[m] = sigma(u) * (1 - sigma(u)), sp.exp(other.args[0] + u)
                break
    return sp.Mul(*factors)


def _definitions(defined: Sequence[Equation], skip: str) -> dict[tuple[type, sp.IndexedBase], sp.IndexedBase]:
    """(F, u) -> q for each equation q_i = F(u_i) of ``defined`` with F a known function (tanh, sigma), but not
    for q = ``skip``."""
    found = {}
    for eq in defined:
        rhs = logistic_form(eq.rhs)
        if eq.target.name == skip or not eq.indices or not isinstance(rhs, sp.Function) \
                or isinstance(rhs.func, UndefinedFunction) or len(rhs.args) != 1:
            continue
        (u,) = rhs.args
        if isinstance(u, sp.Indexed) and tuple(u.indices) == tuple(eq.indices):
            found[(rhs.func, u.base)] = eq.target.base
    return found


def _named(expr: sp.Expr, known: Mapping[tuple[type, sp.IndexedBase], sp.IndexedBase]) -> sp.Expr:
    """``expr`` with each F(u[p]) of ``known`` replaced by q[p] (not inside a derivative, whose variable it is)."""
    if expr.is_Atom or isinstance(expr, (sp.Indexed, sp.Derivative, sp.Subs)) or not expr.args:
        return expr
    if isinstance(expr, sp.Function) and len(expr.args) == 1 and isinstance(expr.args[0], sp.Indexed):
        q = known.get((expr.func, expr.args[0].base))
        if q is not None:
            return q[expr.args[0].indices]
    args = [_named(a, known) for a in expr.args]
    return expr.func(*args) if args != list(expr.args) else expr


def for_reader(eq: Equation, defined: Sequence[Equation] = ()) -> Equation:
    """``eq`` as a document prints it, equal in value: the logistic function and its derivative as sigma
    (:func:`logistic_form`), and F(u_i) as q_i where ``defined`` has q_i = F(u_i), in every equation but q's own."""
    rhs = _named(logistic_form(eq.rhs), _definitions(defined, eq.target.name))
    return Equation(eq.target, eq.indices, rhs)


def index_form(eq: Equation, names: Mapping[str, str], defined: Sequence[Equation] = ()) -> str:
    r"""``lhs_{ij} = a_{i} \sum_{k} b_{ik} c_{k} + ...``: each term summed over the indices it carries that the
    left side does not, the sum written after the term's factors free of those indices, before the others.
    ``defined``: the forward equations whose quantities name their right sides (:func:`for_reader`)."""
    eq = for_reader(eq, defined)
    sub = lambda idx: "".join(str(i) for i in idx)

    def one(e: sp.Expr) -> str:
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
        factors = sp.Mul.make_args(term)
        inside = [f for f in factors if set(index_symbols(f)) & set(summed)]
        outside = sp.Mul(*[f for f in factors if not set(index_symbols(f)) & set(summed)])
        if summed:
            lead = "" if outside == 1 else "-" if outside == -1 else one(outside) + " "
            body = lead + "".join(r"\sum_{" + str(i) + "} " for i in summed) + one(sp.Mul(*inside))
        else:
            body = one(term)
        sign, body = ("-", body[1:].lstrip()) if body.startswith("-") else ("", body)
        terms.append(sign + body)
    lhs = _with_index(names.get(eq.target.name, eq.target.name), sub(eq.indices)) if eq.indices else \
        names.get(eq.target.name, eq.target.name)
    return lhs + " = " + " + ".join(terms).replace("+ -", "- ")


def _with_index(base: str, index: str) -> str:
    r"""Append index letters to a name: into its subscript where it ends with one (h_{t-1} -> h_{t-1,i}), else as
    a subscript of its own (\overline{(r_t \odot h_{t-1})} -> \overline{(r_t \odot h_{t-1})}_{i})."""
    if not index:
        return base
    if re.search(r"_\{[^{}]*\}$", base):
        return base[:-1] + "," + index + "}"
    return base + "_{" + index + "}"


def _vector_latex(factors: list[sp.Expr], names: Mapping[str, str], style: Style) -> str:
    parts = []
    if style is LATEX:  # sums last: o_t \odot (1 - o_t)
        factors = [f for f in factors if not f.is_Add] + [f for f in factors if f.is_Add]
    for f in factors:
        text = latex_with(f, _atom_names(f, names), style)
        parts.append(f"{style.open}{text}{style.close}" if f.is_Add else text)
    return style.odot.join(parts)


def matrix_form(eq: Equation, names: Mapping[str, str], style: Style = LATEX,
                defined: Sequence[Equation] = ()) -> str | None:
    """The equation in vector/matrix notation, or None when a term fits no pattern. In LaTeX, ``defined``: the
    forward equations whose quantities name their right sides (:func:`for_reader`)."""
    if not eq.indices:
        return None
    if style is LATEX:
        eq = for_reader(eq, defined)
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
        if len(summed) == 1 and not set(by_index) - {summed[0]} and i in m.indices:
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
    return _chain(free, by_index, matrices, names, style)


def _chain(free, by_index, matrices, names, style: Style) -> str | None:
    """A product of matrices linked through summed indices, each index's vectors a diagonal between them:
    ``diag(u_i) M_ik diag(v_k) N_kj diag(w_j)`` for two free indices i, j; for one free index i, the chain ends
    on a summed index whose vectors it multiplies, ``u_i M_ik v_k`` as u odot (M v)."""
    if not matrices:
        return None
    start, rest, path, visited = free[0], list(matrices), [], [free[0]]
    while rest:
        step = [m for m in rest if visited[-1] in m.indices and len(set(m.indices)) == 2]
        if len(step) != 1:
            return None
        m = step[0]
        rest.remove(m)
        a, b = m.indices
        nxt, transpose = (b, "") if a == visited[-1] else (a, style.transpose)
        if nxt in visited:
            return None
        path.append(names.get(m.base.label.name, m.base.label.name) + transpose)
        visited.append(nxt)
    if set(by_index) - set(visited) or (len(free) == 2 and visited[-1] != free[1]) or \
            (len(free) == 1 and (visited[-1] in free or not by_index.get(visited[-1]))):
        return None
    diag = lambda idx: f"{style.diag}{style.open}{_vector_latex(by_index[idx], names, style)}{style.close}"
    parts = []
    for n, name in enumerate(path):
        parts.append(name)
        if n + 1 < len(path) and by_index.get(visited[n + 1]):
            parts.append(diag(visited[n + 1]))
    if len(free) == 2:
        left = [diag(start)] if by_index.get(start) else []
        right = [diag(visited[-1])] if by_index.get(visited[-1]) else []
        return " ".join(left + parts + right)
    last = by_index[visited[-1]]
    vector = _vector_latex(last, names, style)
    product = " ".join(parts + [vector if len(last) == 1 else f"{style.open}{vector}{style.close}"])
    if not by_index.get(start):
        return product
    return f"{_vector_latex(by_index[start], names, style)}{style.odot}{style.open}{product}{style.close}"
