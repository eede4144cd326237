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

import string
import types
from collections.abc import Callable, Mapping
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

    def elementwise(self, expr: sp.Expr, atoms: list[sp.Expr]) -> Callable[..., np.ndarray]:
        key = (expr, tuple(atoms))
        if key not in self._compiled:
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
            elif self.rounding is not None:
                self._compiled[key] = _rebind(_rounded_template(expr, tuple(atoms)), self.rounding.namespace())
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

    @property
    def subscripts(self) -> str:
        if self.identity:
            return self.identity
        if self.factor is None:
            return self.atoms[0][1]
        return "".join(dict.fromkeys("".join(subs for _, subs in self.atoms)))


@dataclass(frozen=True)
class _Term:
    coefficient: sp.Expr
    operands: tuple[_Operand, ...]
    keep: str  # the output subscripts this term carries


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
    for name, subs in operand.atoms:
        arr = env[name]
        unique = "".join(dict.fromkeys(subs))
        arr = np.einsum(f"{subs}->{unique}", arr) if unique != subs else arr
        order = [unique.index(c) for c in axes if c in unique]
        arr = np.transpose(arr, order) if order != sorted(order) else arr
        shape = [sizes[c] if c in unique else 1 for c in axes]
        spread.append(np.reshape(arr, shape))
    value = be.elementwise(operand.factor, list(operand.atom_exprs))(*spread)
    return np.broadcast_to(np.asarray(value, dtype=be.dtype), [sizes[c] for c in axes])


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
        arrays = [_identity(o, term, env, out_subs, shape, be) if o.identity else
                  env[o.atoms[0][0]] if o.factor is None else _elementwise_operand(o, env, be) for o in term.operands]
        if arrays:
            subscripts = ",".join(o.subscripts for o in term.operands) + "->" + term.keep
            value = np.einsum(subscripts, *arrays)
        else:
            value = be.asarray(1)
        value = value * be.constant(term.coefficient)
        expand = [shape[n] if c in term.keep else 1 for n, c in enumerate(out_subs)]
        total = total + np.reshape(value, expand)
    return total
