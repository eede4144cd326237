"""rnnspec.spec: the conformance suite. Heavy modules load on first use."""

from __future__ import annotations

from rnnspec.spec.targets import TargetError, load_target

__all__ = ["TargetError", "load_target", "check"]


def check(impl, **options):
    """Run every clause against ``impl``; see :func:`rnnspec.spec.runner.check`."""
    from rnnspec.spec.runner import check as run

    return run(impl, **options)
