"""Finding an implementation under test: built-in names, ``package.module:attr``, ``file.py:attr``."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from pathlib import Path

#: built-in targets: name -> (module, attribute). Imported only when asked for.
BUILTIN = {
    "oracle": ("rnnspec.derivations.oracle", "Oracle"),
    "rnnspec-cpu": ("rnnspec.spec.adapters", "RnnspecCPU"),
    "rnnspec-cuda": ("rnnspec.spec.adapters", "RnnspecCUDA"),
    "torch": ("rnnspec.spec.adapters", "TorchRNN"),
}


class TargetError(Exception):
    """A target could not be found or built; the message says which and why."""


def _instantiate(obj, name: str):
    if inspect.isclass(obj):
        try:
            return obj()
        except TargetError:
            raise
        except Exception as exc:  # the user's constructor: report, do not crash
            raise TargetError(f"target {name!r}: calling {obj.__name__}() failed: {exc!r}") from exc
    return obj


def _from_file(path: str, attr: str, name: str):
    file = Path(path)
    if not file.is_file():
        raise TargetError(f"target {name!r}: no file {file}")
    module_name = f"rnnspec_target_{abs(hash(str(file.resolve())))}"
    spec = importlib.util.spec_from_file_location(module_name, file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise TargetError(f"target {name!r}: importing {file} failed: {exc!r}") from exc
    return module


def load_target(name: str):
    """The implementation object that ``name`` designates (a class is instantiated with no arguments)."""
    if name in BUILTIN:
        module_name, attr = BUILTIN[name]
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise TargetError(f"target {name!r}: {exc}") from exc
        return _instantiate(getattr(module, attr), name)
    if ":" not in name:
        raise TargetError(f"unknown target {name!r}: use one of {sorted(BUILTIN)}, package.module:attr "
                          "or path/to/file.py:attr")
    where, attr = name.rsplit(":", 1)
    if where.endswith(".py"):
        module = _from_file(where, attr, name)
    else:
        try:
            module = importlib.import_module(where)
        except Exception as exc:
            raise TargetError(f"target {name!r}: importing {where} failed: {exc!r}") from exc
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise TargetError(f"target {name!r}: {where} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return _instantiate(obj, name)
