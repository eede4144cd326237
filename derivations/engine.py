"""The derivation engine: reverse mode over equations, with SymPy taking every local derivative.

For an equation ``v[I] = rhs`` and a quantity ``A`` that ``rhs`` reads, the contribution to the
cotangent of ``A`` is

    gA[P] += gv[I] * d rhs / d A[P]          (summed over every index except P)

SymPy computes ``d rhs / d A[P]``; it comes back as products with Kronecker deltas, which
:func:`resolve_deltas` contracts away. Nothing here knows which cell it is differentiating.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping

import sympy as sp

from rnnspec.derivations.tensors import (
    COTANGENT,
    INTERMEDIATE,
    PARAM,
    PARAM_COTANGENT,
    SHIFT,
    Equation,
    Var,
    index_symbols,
)

INDEX_LETTERS = "ijkpqrnuvw"


def cotangent(var: Var) -> Var:
    """The quantity that holds dL/d``var``."""
    kind = PARAM_COTANGENT if var.kind == PARAM else COTANGENT
    return Var("g_" + var.name, var.shape, kind, latex=r"\bar{%s}" % (var.latex or var.name))


def incoming(var: Var) -> Var:
    """The cotangent a seeded quantity receives from outside a block that also consumes it (the LSTM's
    c_t feeds h_t in its own step and c_{t+1} in the next): the block adds its own contributions to it."""
    latex = r"\bar{%s}^{\,\mathrm{in}}" % (var.latex or var.name)
    return Var("g_" + var.name + "_in", var.shape, COTANGENT, latex=latex)


def pull_deltas(piecewise: sp.Piecewise) -> sp.Expr:
    """``Piecewise((delta*A, c), (0, True))`` as ``delta * Piecewise((A, c), (0, True))``.

    SymPy puts the delta of d/dz[p] of a piecewise function inside its pieces; contracting it
    needs it outside, which is valid when every non-zero piece carries the same deltas.
    """
    pieces = [(sp.Mul.make_args(e), c) for e, c in piecewise.args]
    shared = [set(f for f in args if isinstance(f, sp.KroneckerDelta)) for args, _ in pieces if args != (0,)]
    common = set.intersection(*shared) if shared else set()
    if not common:
        return piecewise
    inner = sp.Piecewise(*[(sp.Mul(*[f for f in args if f not in common]) if args != (0,) else 0, c)
                           for args, c in pieces])
    return sp.Mul(*common) * inner


def split_terms(expr: sp.Expr) -> list[sp.Expr]:
    """Top-level terms of ``expr``, distributing products over sums that hold Kronecker deltas."""
    if isinstance(expr, sp.Piecewise) and expr.has(sp.KroneckerDelta):
        pulled = pull_deltas(expr)
        return [pulled] if pulled is expr else split_terms(pulled)
    if expr.is_Add:
        return [t for a in expr.args for t in split_terms(a)]
    if expr.is_Mul:
        parts = [split_terms(f) if ((f.is_Add or isinstance(f, sp.Piecewise)) and f.has(sp.KroneckerDelta))
                 else [f] for f in expr.args]
        return [sp.Mul(*combo) for combo in itertools.product(*parts)]
    return [expr]


def resolve_deltas(term: sp.Expr, free: Iterable[sp.Symbol]) -> sp.Expr:
    """Contract the Kronecker deltas of a product over its summed indices.

    ``sum_a delta(a, b) F(a) = F(b)`` when ``a`` is summed (not in ``free``).
    """
    free = set(free)
    while True:
        factors = list(sp.Mul.make_args(term))
        for n, f in enumerate(factors):
            if isinstance(f, sp.KroneckerDelta):
                a, b = f.args
                if a not in free or b not in free:
                    old, new = (a, b) if a not in free else (b, a)
                    rest = factors[:n] + factors[n + 1:]
                    term = sp.Mul(*rest).xreplace({old: new})
                    break
        else:
            if any(f.has(sp.KroneckerDelta) and not isinstance(f, sp.KroneckerDelta) for f in factors):
                raise ValueError(f"a Kronecker delta is nested where it cannot be contracted: {term}")
            return term


def canonical_term(term: sp.Expr, free: tuple[sp.Symbol, ...], target: tuple[sp.Symbol, ...]) -> sp.Expr:
    """Rename ``free`` to ``target`` and every summed index to the next unused letter."""
    summed = [i for i in index_symbols(term) if i not in free]
    letters = (sp.Symbol(c, integer=True) for c in INDEX_LETTERS)
    pool = [s for s in letters if s not in target]
    mapping = dict(zip(free, target))
    mapping.update(zip(summed, pool))
    return term.xreplace(mapping)


def canonical_indices(var: Var) -> tuple[sp.Symbol, ...]:
    return tuple(sp.Symbol(c, integer=True) for c in INDEX_LETTERS[: len(var.shape)])


def fresh_indices(var: Var, tag: str) -> tuple[sp.Symbol, ...]:
    return tuple(sp.Symbol(f"{tag}{n}", integer=True) for n in range(len(var.shape)))


def derivative_terms(seed: sp.Expr, rhs: sp.Expr, wrt: Var, out_index: tuple[sp.Symbol, ...]) -> list[sp.Expr]:
    """Terms of ``sum seed * d rhs / d wrt[out_index]``, deltas contracted, in canonical indices."""
    free = fresh_indices(wrt, "_P")
    local = sp.diff(rhs, wrt[free] if free else wrt.scalar)
    terms = []
    for term in split_terms(seed * local):
        term = resolve_deltas(term, free)
        if term != 0:
            terms.append(canonical_term(term, free, out_index))
    return terms


def reads(expr: sp.Expr, quantities: Mapping[str, Var]) -> list[Var]:
    """The quantities an expression reads, in a stable order."""
    names = {a.base.label.name for a in expr.atoms(sp.Indexed)}
    names |= {s.name for s in expr.free_symbols if not s.is_integer}
    return [quantities[n] for n in sorted(names) if n in quantities]


def reverse(
    equations: Iterable[Equation], quantities: Mapping[str, Var], seeds: Iterable[Var], wrt: Iterable[Var]
) -> list[Equation]:
    """Backward equations: the cotangents of ``wrt`` given external cotangents on ``seeds``.

    Intermediates that receive cotangent get an equation of their own (``g_z`` is the notes'
    delta), so the result reads as the recurrence it is and evaluates without repeated work. A seed
    that the block also consumes receives its outside cotangent as :func:`incoming`.
    """
    equations = list(equations)
    seeded = {v.name for v in seeds}
    contributions: dict[str, list[sp.Expr]] = {}
    backward: list[Equation] = []
    for eq in reversed(equations):
        name = eq.target.name
        if name not in contributions and name not in seeded:
            continue
        index = canonical_indices(eq.target)
        g = cotangent(eq.target)
        if name in contributions:
            terms = contributions.pop(name)
            if name in seeded:
                outside = incoming(eq.target)
                terms = [outside[index] if index else outside.scalar, *terms]
            backward.append(Equation(g, index, sp.Add(*terms)))
        seed = g[eq.indices] if eq.indices else g.scalar
        for var in reads(eq.rhs, quantities):
            if var.kind == SHIFT:
                continue
            out = canonical_indices(var)
            contributions.setdefault(var.name, []).extend(derivative_terms(seed, eq.rhs, var, out))
    for var in wrt:
        terms = contributions.get(var.name, [])
        index = canonical_indices(var)
        backward.append(Equation(cotangent(var), index, sp.Add(*terms)))
    return backward


def _apart(term: sp.Expr, kept: Iterable[sp.Symbol], counter: Iterator[int]) -> sp.Expr:
    """``term`` with every summed index (one not in ``kept``) renamed to a new ``_S<n>``, so that it cannot
    meet an index of the equation it is substituted into."""
    kept = set(kept)
    summed = [i for i in index_symbols(term) if i not in kept]
    return term.xreplace({i: sp.Symbol(f"_S{next(counter)}", integer=True) for i in summed})


def jacobian(equations: Iterable[Equation], quantities: Mapping[str, Var], of: Var, wrt: Var) -> Equation:
    """``J[I, Q] = d of[I] / d wrt[Q]`` by the chain rule through the equations (forward mode)."""
    q = fresh_indices(wrt, "_Q")
    known: dict[str, tuple[tuple[sp.Symbol, ...], sp.Expr]] = {}
    renamed = itertools.count()
    for eq in equations:
        total = sp.Integer(0)
        free = tuple(eq.indices) + q
        for var in reads(eq.rhs, quantities):
            p = fresh_indices(var, "_R" + var.name)
            local = sp.diff(eq.rhs, var[p] if p else var.scalar)
            if var.name == wrt.name:
                inner = [sp.Mul(*[sp.KroneckerDelta(a, b) for a, b in zip(p, q)])]
            elif var.name in known:
                known_index, known_expr = known[var.name]
                # each term of a known derivative is summed over its own indices: the product with the
                # local derivative is distributed over those terms (a factor (a_ij + b_ijk) would sum a_ij
                # over k too), and their summed indices are renamed apart from this equation's
                inner = [_apart(t, tuple(known_index) + q, renamed).xreplace(dict(zip(known_index, p)))
                         for t in sp.Add.make_args(known_expr)]
            else:
                continue
            for piece in inner:
                for term in split_terms(local * piece):
                    total += resolve_deltas(term, free)
        known[eq.target.name] = (tuple(eq.indices), total)
        if eq.target.name == of.name:
            break
    index, expr = known[of.name]
    target = Var(f"J_{of.name}_{wrt.name}", of.shape + wrt.shape, INTERMEDIATE)
    free = index + q
    out = canonical_indices(target)
    return Equation(target, out, sp.Add(*[canonical_term(t, free, out) for t in sp.Add.make_args(expr)]))
