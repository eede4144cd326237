"""Evaluate equations in index notation on arrays: one interpreter for every precision.

Each top-level term becomes one ``einsum`` over its factors; a factor that is not a bare quantity
(``1 - tanh(z[i])**2``) is evaluated elementwise by a function SymPy generates for it. Quantities
that are per example carry a leading batch axis. Backends:

- ``float64``, ``complex128`` (complex step): NumPy arrays of that dtype;
- ``float32``, ``longdouble``: the same derived equations rounded in single or extended precision;
  the tolerance model compares a dtype's rounding against the next wider one;
- any of the float backends with a :class:`~rnnspec.derivations.rounding.Rounding`: its elementwise
  functions (tanh, exp, log, the logistic function) accurate to a number of ulps but rounded otherwise;
- ``mpmath``: object arrays of ``mpmath.mpf`` / ``mpc``, at ``mpmath.mp.dps`` digits;
- ``sympy``: object arrays of SymPy expressions (exact, for the proof);
- ``symengine``: the same in SymEngine, whose expressions share their subexpressions (the gated
  cells' unrolled gradients are millions of characters as SymPy trees, thousands as SymEngine's).
"""

from __future__ import annotations

import functools
import string
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import mpmath
import numpy as np
import symengine
import sympy as sp

from rnnspec.derivations.rounding import Rounding, rounded_form
from rnnspec.derivations.tensors import Equation, Shift, Var, index_symbols, indexed_atoms

BATCH = "Z"


@dataclass
class Backend:
    """How numbers are stored and how elementwise SymPy expressions become functions."""

    name: str
    dtype: object
    rounding: Rounding | None = None
    _compiled: dict = field(default_factory=dict, repr=False)
    #: the rounding's functions, made once (Rounding.namespace)
    _namespace: dict | None = field(default=None, repr=False)

    @property
    def exact(self) -> bool:
        return self.name in ("mpmath", "sympy", "symengine")

    def asarray(self, value) -> np.ndarray:
        exact = {"symengine": symengine.sympify, "mpmath": mpmath.mpmathify, "sympy": sp.sympify}
        if self.name in exact:
            # a ufunc of a 0-d array returns a bare scalar (a constant term such as the 1 of f = 1 - i): made an
            # array again
            return np.asarray(np.frompyfunc(exact[self.name], 1, 1)(np.asarray(value, dtype=object)), dtype=object)
        return np.asarray(value, dtype=self.dtype)

    def zeros(self, shape) -> np.ndarray:
        if self.exact:
            out = np.empty(shape, dtype=object)
            out[...] = {"mpmath": mpmath.mpf(0), "sympy": sp.Integer(0), "symengine": symengine.Integer(0)}[self.name]
            return out
        return np.zeros(shape, dtype=self.dtype)

    def elementwise(self, expr: sp.Expr, atoms: Sequence[sp.Expr]) -> Callable[..., np.ndarray]:
        key = (expr, tuple(atoms))
        if key in self._compiled:
            return self._compiled[key]
        if self.rounding is not None:
            # the template is compiled once for every rounding (a backend with one is made for each case):
            # only its rounded functions are bound here
            if self._namespace is None:
                self._namespace = self.rounding.namespace()
            self._compiled[key] = _rebind(_rounded_template(expr, key[1]), self._namespace)
        else:
            dummies = [sp.Dummy(f"a{n}") for n in range(len(atoms))]
            body = expr.xreplace(dict(zip(atoms, dummies)))
            if self.name in ("sympy", "symengine"):
                if self.name == "symengine":
                    dummies = [symengine.Symbol(f"_rnnspec_a{n}") for n in range(len(atoms))]
                    body = symengine.sympify(expr.xreplace(dict(zip(atoms, map(sp.Symbol, map(str, dummies))))))

                def scalar(*args, body=body, dummies=dummies):
                    return body.xreplace(dict(zip(dummies, args)))
                self._compiled[key] = np.frompyfunc(scalar, len(atoms), 1)
            elif self.name == "mpmath":
                self._compiled[key] = np.frompyfunc(sp.lambdify(dummies, body, "mpmath"), len(atoms), 1)
            else:
                self._compiled[key] = sp.lambdify(dummies, body, "numpy")
        return self._compiled[key]

    def constant(self, number: sp.Expr):
        if self.name in _FIXED_WIDTH:
            key = (self.name, number)
            if key not in _CONSTANTS:
                _CONSTANTS[key] = self._constant(number)
            return _CONSTANTS[key]
        return self._constant(number)

    def _constant(self, number: sp.Expr):
        if self.name == "sympy":
            return number
        if self.name == "symengine":
            return symengine.sympify(number)
        if self.name == "mpmath":
            return mpmath.mpmathify(str(sp.N(number, mpmath.mp.dps + 10)))
        if self.name == "longdouble":
            return np.longdouble(str(sp.N(number, 25)))
        return self.dtype(complex(number) if self.name == "complex128" else float(number))

    def shift(self, shift: Shift, source: np.ndarray) -> np.ndarray:
        """The value of a stop-gradient shift: a reduction over the source's last axis."""
        if self.name in ("sympy", "symengine"):
            return self.zeros(source.shape[:-1])
        if self.name == "mpmath":
            real = np.frompyfunc(lambda v: mpmath.re(v), 1, 1)(source)
            return self.asarray(np.max(real, axis=-1))
        return np.max(source.real, axis=-1).astype(self.dtype)


_FIXED_WIDTH = ("float32", "float64", "longdouble", "complex128")
#: numbers converted by the fixed-width backends, and the functions compiled by every backend
#: without a rounding, shared by all instances (a rounding's functions are its own)
_CONSTANTS: dict = {}
_SHARED_COMPILED: dict[str, dict] = {}

BACKENDS = {
    "float32": lambda: Backend("float32", np.float32),
    "float64": lambda: Backend("float64", np.float64),
    "longdouble": lambda: Backend("longdouble", np.longdouble),
    "complex128": lambda: Backend("complex128", np.complex128),
    "mpmath": lambda: Backend("mpmath", object),
    "sympy": lambda: Backend("sympy", object),
    "symengine": lambda: Backend("symengine", object),
}


#: rounded elementwise functions compiled once per expression, each rounding binding its own functions
_ROUNDED_TEMPLATES: dict = {}


def _rounded_template(expr: sp.Expr, atoms: tuple) -> Callable:
    """``expr`` of ``atoms`` with its functions rounded, compiled against placeholder rounded functions (the
    SymPy rewriting and code generation cost more than a case's whole evaluation; they are done once)."""
    key = (expr, atoms)
    if key not in _ROUNDED_TEMPLATES:
        dummies = [sp.Dummy(f"a{n}") for n in range(len(atoms))]
        body = expr.xreplace(dict(zip(atoms, dummies)))
        placeholders = Rounding(1.0, "float32", "away").namespace()
        _ROUNDED_TEMPLATES[key] = sp.lambdify(dummies, rounded_form(body), [placeholders, "numpy"])
    return _ROUNDED_TEMPLATES[key]


def _rebind(template: Callable, namespace: dict) -> Callable:
    """``template``'s code with the rounded functions of ``namespace`` in its globals."""
    scope = {**template.__globals__, **namespace}
    return types.FunctionType(template.__code__, scope, template.__name__, template.__defaults__)


def backend(name: str, rounding: Rounding | None = None) -> Backend:
    """The backend ``name``; ``rounding`` (float backends only) rounds its elementwise functions."""
    try:
        made = BACKENDS[name]()
    except KeyError:
        raise ValueError(f"backend must be one of {sorted(BACKENDS)}, got {name!r}") from None
    if rounding is not None:
        if made.exact or made.name == "complex128":
            raise ValueError(f"rounding applies to the real float backends, not {name!r}")
        made.rounding = rounding
    else:
        made._compiled = _SHARED_COMPILED.setdefault(name, {})
    return made


def _letters(symbols: list[sp.Symbol]) -> dict[sp.Symbol, str]:
    return dict(zip(symbols, string.ascii_lowercase))


@dataclass(frozen=True)
class _Operand:
    """One factor of a term: a quantity (``factor`` None), an elementwise expression of ``atoms``, or the
    identity matrix of a Kronecker delta between two indices (``identity``: its two einsum subscripts)."""

    atoms: tuple[tuple[str, str], ...]  # (name, einsum subscripts) of each quantity it reads
    factor: sp.Expr | None = None
    atom_exprs: tuple[sp.Expr, ...] = ()
    identity: str = ""

    @functools.cached_property
    def subscripts(self) -> str:
        if self.identity:
            return self.identity
        if self.factor is None:
            return self.atoms[0][1]
        return "".join(dict.fromkeys("".join(subs for _, subs in self.atoms)))

    @functools.cached_property
    def spread(self) -> tuple[tuple[str, str | None, tuple[int, ...] | None, tuple[int, ...]], ...]:
        """How each atom of an elementwise factor is laid along :attr:`subscripts`: (name, the einsum that takes
        a repeated index's diagonal or None, the transpose or None, where its axes go among the factor's)."""
        out = []
        for name, subs in self.atoms:
            unique = "".join(dict.fromkeys(subs))
            order = [unique.index(c) for c in self.subscripts if c in unique]
            out.append((name, f"{subs}->{unique}" if unique != subs else None,
                        tuple(order) if order != sorted(order) else None,
                        tuple(n for n, c in enumerate(self.subscripts) if c in unique)))
        return tuple(out)


@dataclass(frozen=True)
class _Term:
    coefficient: sp.Expr
    operands: tuple[_Operand, ...]
    keep: str  # the output subscripts this term carries

    @functools.cached_property
    def einsum(self) -> str:
        return ",".join(o.subscripts for o in self.operands) + "->" + self.keep

    @functools.cached_property
    def bare(self) -> tuple[str, ...] | None:
        """The quantities' names when every operand is one (no elementwise factor, no delta), else None."""
        if all(o.factor is None and not o.identity for o in self.operands):
            return tuple(o.atoms[0][0] for o in self.operands)
        return None

    @functools.cached_property
    def scaled(self) -> bool:
        """Whether the coefficient is other than 1 (times 1 is the same value)."""
        return self.coefficient != 1

    @functools.cached_property
    def copies(self) -> bool:
        """Whether the term is one quantity laid out as the output keeps it (its einsum a copy)."""
        return len(self.operands) == 1 and self.operands[0].subscripts == self.keep


def _atom_subscripts(atom: sp.Expr, quantities: Mapping[str, Var], letters: Mapping[sp.Symbol, str]) -> tuple[str, str]:
    """An atom's quantity name and its einsum subscripts (batch axis first when per example)."""
    if isinstance(atom, sp.Indexed):
        name, subs = atom.base.label.name, "".join(letters[i] for i in atom.indices)
    else:
        name, subs = atom.name, ""
    return name, (BATCH if quantities[name].per_example else "") + subs


def _plan_term(term: sp.Expr, eq: Equation, out_subs: str, quantities: Mapping[str, Var]) -> _Term:
    letters = _letters(list(eq.indices) + [i for i in index_symbols(term) if i not in eq.indices])
    coefficient, operands, elementwise = sp.Integer(1), [], sp.Integer(1)
    for factor in sp.Mul.make_args(term):
        if factor.is_number:
            coefficient *= factor
        elif isinstance(factor, sp.Indexed) or (factor.is_Symbol and factor.name in quantities):
            operands.append(_Operand((_atom_subscripts(factor, quantities, letters),)))
        elif isinstance(factor, sp.KroneckerDelta) and all(a in letters for a in factor.args):
            # delta_ij, as a step Jacobian's diagonal term (z_i delta_ij) leaves it: the identity matrix
            operands.append(_Operand((), identity="".join(letters[a] for a in factor.args)))
        else:
            if factor.has(sp.KroneckerDelta):
                raise ValueError(f"cannot evaluate the Kronecker delta left in {term}")
            elementwise *= factor
    if elementwise != 1:
        # one function for all of them, so that a rounding sees f'(z) whole (exp(-z) / (1 + exp(-z))^2)
        atoms = tuple(indexed_atoms(elementwise))
        operands.append(_Operand(tuple(_atom_subscripts(a, quantities, letters) for a in atoms), elementwise, atoms))
    present = set("".join(o.subscripts for o in operands))
    return _Term(coefficient, tuple(operands), "".join(c for c in out_subs if c in present))


#: the analysed terms of each equation, by the ids of the equation and its quantities (the entry keeps
#: both alive, so the ids stay theirs; hashing an equation costs more than evaluating it)
_PLANS: dict = {}


def _plan(eq: Equation, quantities: Mapping[str, Var]) -> tuple[str, tuple[_Term, ...]]:
    """The output subscripts and analysed terms of ``eq``: the SymPy work of :func:`evaluate`, done once."""
    key = (id(eq), id(quantities))
    if key not in _PLANS:
        out_letters = _letters(list(eq.indices))
        out_subs = (BATCH if eq.target.per_example else "") + "".join(out_letters[i] for i in eq.indices)
        terms = tuple(_plan_term(t, eq, out_subs, quantities) for t in sp.Add.make_args(eq.rhs) if t != 0)
        _PLANS[key] = (eq, quantities, out_subs, terms)
    return _PLANS[key][2:]


def _elementwise_operand(operand: _Operand, env, be: Backend) -> np.ndarray:
    axes = operand.subscripts
    sizes = {}
    for name, subs in operand.atoms:
        sizes.update(zip(subs, np.shape(env[name])))
    spread = []
    for name, diagonal, order, places in operand.spread:
        arr = env[name]
        arr = np.einsum(diagonal, arr) if diagonal else arr
        arr = np.transpose(arr, order) if order else arr
        shape = [1] * len(axes)
        for n in places:
            shape[n] = sizes[axes[n]]
        spread.append(arr.reshape(shape))
    value = np.asarray(be.elementwise(operand.factor, operand.atom_exprs)(*spread), dtype=be.dtype)
    full = tuple(sizes[c] for c in axes)
    return value if value.shape == full else np.broadcast_to(value, full)


def _identity(operand: _Operand, term: _Term, env, out_subs: str, shape: tuple[int, ...], be: Backend) -> np.ndarray:
    """The identity matrix of a delta operand, its size read off the output or another operand's axis."""
    sizes = dict(zip(out_subs, shape))
    for other in term.operands:
        for name, subs in other.atoms:
            sizes.update(zip(subs, np.shape(env[name])))
    known = [sizes[c] for c in operand.identity if c in sizes]
    if not known:
        raise ValueError(f"the size of the Kronecker delta over {operand.identity!r} is not known")
    out = be.zeros((known[0], known[0]))
    for n in range(known[0]):
        out[n, n] = be.constant(sp.Integer(1))
    return out


def evaluate(eq: Equation, env: Mapping[str, np.ndarray], quantities: Mapping[str, Var],
             sizes: Mapping[str, int], batch: int, be: Backend) -> np.ndarray:
    """The array of ``eq.target``: a batch axis first when it is per example."""
    out_subs, terms = _plan(eq, quantities)
    shape = ((batch,) if eq.target.per_example else ()) + tuple(sizes[s] for s in eq.target.shape)
    total = be.zeros(shape)
    for term in terms:
        if term.bare is not None:
            arrays = [env[name] for name in term.bare]
        else:
            arrays = [_identity(o, term, env, out_subs, shape, be) if o.identity else
                      env[o.atoms[0][0]] if o.factor is None else _elementwise_operand(o, env, be)
                      for o in term.operands]
        if not arrays:
            value = be.asarray(1)
        elif term.copies:  # what einsum would copy: the same values
            value = arrays[0]
        else:
            value = np.einsum(term.einsum, *arrays)
        if term.scaled:
            value = value * be.constant(term.coefficient)
        if term.keep != out_subs:
            value = np.reshape(value, [shape[n] if c in term.keep else 1 for n, c in enumerate(out_subs)])
        total = total + value
    return total
