"""pytest plugin: ``pytest --rnnspec-target=TARGET`` collects one test per clause.

Without the option the plugin only registers its options: it imports neither SymPy nor Numba
(nor anything of rnnspec beyond this module).
"""

from __future__ import annotations

import warnings

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("rnnspec", "rnnspec conformance suite")
    group.addoption("--rnnspec-target", help="check this RNN implementation (built-in name, module:attr, file.py:attr)")
    group.addoption("--rnnspec-xfails", help="file of clause ids expected to fail, one per line (# comments)")
    group.addoption("--rnnspec-seed", type=int, default=0, help="seed of the generated cases")
    group.addoption("--rnnspec-examples", type=int, default=None, help="number of generated cases")
    group.addoption("--rnnspec-timeout", type=float, default=60.0, help="seconds allowed per call")


def _xfails(path: str | None) -> set[str]:
    if not path:
        return set()
    with open(path) as handle:
        return {line.split("#")[0].strip() for line in handle} - {""}


class ClauseItem(pytest.Item):
    def __init__(self, *, clause, run, **kwargs) -> None:
        super().__init__(**kwargs)
        self.clause = clause
        self.run = run

    def runtest(self) -> None:
        result = self.run()[self.clause.id]
        if result.status in ("passed",):
            return
        if result.status == "not provided":
            pytest.skip(f"{self.clause.id}: not provided by the target")
        worst = result.worst
        lines = [f"{self.clause.id} {result.status}: {self.clause.statement}"]
        if worst and worst.error is not None:
            lines.append(f"worst error {worst.error:.3g}, tolerance {worst.tolerance:.3g}")
        if worst and worst.message:
            lines.append(worst.message)
        if result.counterexample:
            lines.append(f"case: {result.counterexample['case']}")
            lines.append(f"reproduce: {result.counterexample['reproduce']}")
        raise AssertionError("\n".join(lines))

    def repr_failure(self, excinfo):
        if isinstance(excinfo.value, AssertionError):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, None, f"rnnspec {self.clause.id}"


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list) -> None:
    target = config.getoption("rnnspec_target", None)
    if not target:
        return
    from rnnspec.spec.clauses import CLAUSES

    known = {c.id for c in CLAUSES}
    xfails = _xfails(config.getoption("rnnspec_xfails"))
    for unknown in sorted(xfails - known):
        warnings.warn(f"--rnnspec-xfails: {unknown!r} matches no clause id", pytest.PytestWarning, stacklevel=1)
    cache: dict = {}

    def run() -> dict:
        if not cache:
            from rnnspec.spec.runner import check
            from rnnspec.spec.targets import load_target

            report = check(load_target(target), target=target, seed=config.getoption("rnnspec_seed"),
                           examples=config.getoption("rnnspec_examples"),
                           timeout=config.getoption("rnnspec_timeout"))
            cache.update({r.clause.id: r for r in report.results})
        return cache

    for clause in CLAUSES:
        item = ClauseItem.from_parent(session, name=f"rnnspec[{target}][{clause.id}]", clause=clause, run=run)
        if clause.id in xfails:
            item.add_marker(pytest.mark.xfail(reason="listed in --rnnspec-xfails", strict=True))
        items.append(item)
