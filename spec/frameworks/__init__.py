"""Built-in targets over the frameworks' own layers, each importing its framework only when built.

Every target here takes the canonical parameters through :mod:`rnnspec.spec.conventions` and names
its framework's extra when the framework is missing (:func:`require`).
"""

from __future__ import annotations

import importlib

from rnnspec.spec.targets import TargetError


def require(target: str, module: str, extra: str):
    """``import module``, or a TargetError naming what installs it: rnnspec's extra, or a package."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        install = extra if " " in extra else f"pip install 'rnnspec[{extra}]'"
        raise TargetError(f"target {target!r}: {module} is not installed ({exc}); {install}") from exc
