"""pytest plugin: ``pytest --rnnspec-target=TARGET`` collects one test per clause.

Without the option the plugin only registers its options: it imports neither SymPy nor Numba
(nor anything of rnnspec beyond this module).
"""

from __future__ import annotations

import warnings

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("rnnspec", "rnnspec conformance suite")
    group.addoption("--rnnspec-target", help="check this RNN implementation (built-in name, module:attr, file.py:attr, "
                    "or exec:COMMAND: a program speaking docs/protocol.md)")
    group.addoption("--rnnspec-cell", help="the cell to check (default: the target's first)")
    group.addoption("--rnnspec-xfails", help="file of clause ids expected to fail, one per line (# comments)")
    group.addoption("--rnnspec-seed", type=int, default=0, help="seed of the generated cases")
    group.addoption("--rnnspec-examples", type=int, default=None, help="number of generated cases")
    group.addoption("--rnnspec-timeout", type=float, default=60.0, help="seconds allowed per call")


def _xfails(path: str | None) -> set[str]:
    if not path:
        return set()
    with open(path) as handle:
        return {line.split("#")[0].strip() for line in handle} - {""}


PREFIX = "rnnspec::"


class ClauseItem(pytest.Item):
    def __init__(self, *, clause, run, **kwargs) -> None:
        super().__init__(**kwargs)
        self.clause = clause
        self.run = run

    def runtest(self) -> None:
        result = self.run()[self.clause.id]
        if result.status == "passed":
            return
        if result.status == "not provided":
            pytest.skip(f"{self.clause.id}: not provided by the target")
        worst = result.worst
        lines = [f"{self.clause.id} {result.status}: {self.clause.statement}"]
        if worst and worst.error is not None:
            lines.append(f"worst error {worst.error:.3g}, tolerance {worst.tolerance:.3g} (the case with the largest "
                         "error / tolerance)")
        if result.message:
            lines.append(result.message)
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


class TargetCollector(pytest.Collector):
    """The target's clauses, collected as items ``rnnspec::<CLAUSE-ID>`` (selectable by that node id)."""

    def __init__(self, *, clauses, run, xfails, **kwargs) -> None:
        super().__init__(**kwargs)
        self.clauses, self.run, self.xfails = clauses, run, xfails

    def collect(self):
        for clause in self.clauses:
            item = ClauseItem.from_parent(self, name=clause.id, clause=clause, run=self.run)
            if clause.id in self.xfails:
                item.add_marker(pytest.mark.xfail(reason="listed in --rnnspec-xfails", strict=True))
            yield item


def pytest_configure(config: pytest.Config) -> None:
    """Check the target before collection: a bad one is one usage error, not a failure per clause.
    Node ids ``rnnspec::<ID>`` among the arguments select clauses (they are not paths)."""
    target = config.getoption("rnnspec_target", None)
    if not target:
        return
    selected = [a[len(PREFIX):] for a in config.args if a.startswith(PREFIX)]
    config.args[:] = [a for a in config.args if not a.startswith(PREFIX)]
    config.stash[_SELECTED] = selected
    from rnnspec.spec.declared import UsageError, declared
    from rnnspec.spec.runner import _cell_option, check_options
    from rnnspec.spec.targets import TargetError
    from rnnspec.spec.worker import TargetName, Worker

    try:
        check_options(config.getoption("rnnspec_examples"), config.getoption("rnnspec_timeout"))
        asked = _cell_option(config.getoption("rnnspec_cell"), None)
    except UsageError as exc:
        raise pytest.UsageError(f"--rnnspec options: {exc}") from None
    worker = Worker(TargetName(target), config.getoption("rnnspec_timeout"))
    try:
        config.stash[_CELL] = declared(worker.declarations()).choose(asked)
    except (TargetError, UsageError) as exc:
        raise pytest.UsageError(f"--rnnspec-target={target}: {exc}") from None
    finally:
        worker.stop()


_SELECTED = pytest.StashKey[list]()
_CELL = pytest.StashKey[str]()


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list) -> None:
    target = config.getoption("rnnspec_target", None)
    if not target:
        return
    from _pytest.runner import collect_one_node

    from rnnspec.spec.clauses import by_id
    from rnnspec.spec.clauses import clauses as cell_clauses

    cell = config.stash[_CELL]
    known = by_id(cell)
    xfails = _xfails(config.getoption("rnnspec_xfails"))
    for unknown in sorted(xfails - set(known)):
        warnings.warn(f"--rnnspec-xfails: {unknown!r} matches no clause id of cell {cell!r}", pytest.PytestWarning,
                      stacklevel=1)
    selected = config.stash.get(_SELECTED, [])
    unknown = [c for c in selected if c not in known]
    if unknown:
        raise pytest.UsageError(f"{', '.join(PREFIX + c for c in unknown)}: no such clause of cell {cell!r}; "
                                f"known: {sorted(known)}")
    clauses = [known[c] for c in selected] if selected else list(cell_clauses(cell))
    cache: dict = {}

    def run() -> dict:
        if not cache:
            from rnnspec.spec.runner import check
            from rnnspec.spec.worker import TargetName

            report = check(TargetName(target), target=target, seed=config.getoption("rnnspec_seed"),
                           examples=config.getoption("rnnspec_examples"), timeout=config.getoption("rnnspec_timeout"),
                           clauses=[c.id for c in clauses], cell=cell)
            cache.update({r.clause.id: r for r in report.results})
        return cache

    collector = TargetCollector.from_parent(session, name="rnnspec", nodeid="rnnspec", clauses=clauses, run=run,
                                            xfails=xfails)
    report = collect_one_node(collector)
    session.ihook.pytest_collectreport(report=report)
    items.extend(report.result)
