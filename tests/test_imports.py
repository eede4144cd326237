"""Dependencies point one way (DESIGN.md, Layout): ``import rnnspec.kernels`` loads neither SymPy, nor
rnnspec.spec, nor rnnspec.derivations, nor the benchmark code; nothing under kernels/ imports spec or derivations."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import rnnspec.kernels

KERNELS = Path(rnnspec.kernels.__file__).parent
#: what the kernels never import: the suite and the mathematics (and, through them, SymPy)
FORBIDDEN = ("rnnspec.spec", "rnnspec.derivations", "sympy")


def _forbidden(name: str) -> bool:
    return any(name == f or name.startswith(f + ".") for f in FORBIDDEN)


def _benchmark(name: str) -> bool:
    """The kernels' benchmark code: the CPU and GPU benchmarks, their baselines, the peak's measurement."""
    last = name.rsplit(".", 1)[-1]
    return name.startswith("rnnspec.kernels.") and (last.startswith(("bench", "baselines")) or last == "peak")


@pytest.mark.parametrize("module", ["rnnspec.kernels", "rnnspec.kernels.cuda"])
def test_importing_the_kernels_loads_no_sympy_spec_derivations_nor_benchmark(module):
    code = f"import sys, json; import {module}; print(json.dumps(sorted(sys.modules)))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    loaded = json.loads(run.stdout.splitlines()[-1])
    assert module in loaded
    assert [m for m in loaded if _forbidden(m)] == []
    assert [m for m in loaded if _benchmark(m)] == []
    assert "torch" not in loaded  # only the benchmarks' baselines ask for it


def _imports(tree: ast.AST) -> list[tuple[int, str]]:
    """Every module a file imports, at any depth (a function's lazy import too), by import statements or by
    importlib.import_module / __import__ with a constant name."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.lineno, "." * node.level + (node.module or "")))
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None))
              in ("import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant)):
            found.append((node.lineno, str(node.args[0].value)))
    return found


def test_nothing_under_kernels_imports_spec_or_derivations():
    files = sorted(KERNELS.rglob("*.py"))
    assert len(files) > 20, files
    wrong = [f"{path.relative_to(KERNELS)}:{line} imports {name}" for path in files
             for line, name in _imports(ast.parse(path.read_text())) if _forbidden(name) or name.startswith(".")]
    assert wrong == []


def test_the_import_check_sees_every_way_of_importing(tmp_path):
    """The AST walk above finds a lazy import inside a function and an importlib call."""
    source = ("import os\ndef f():\n    from rnnspec.spec.conventions import port\n"
              "    import importlib\n    return importlib.import_module('rnnspec.derivations.cells')\n")
    assert [name for _, name in _imports(ast.parse(source)) if _forbidden(name)] == [
        "rnnspec.spec.conventions", "rnnspec.derivations.cells"]


@pytest.mark.parametrize("cell", ["lstm", "gru-reset-after"])
def test_the_gpu_benchmarks_torch_gradients_are_the_suites_conventions(cell):
    """bench_gated unpacks PyTorch's gradients itself (the kernels import nothing of spec): the same arrays as
    rnnspec.spec.conventions gives, for the module the benchmarks build, after a backward pass on the CPU."""
    torch = pytest.importorskip("torch")
    from rnnspec.kernels.cpu.baselines_variants import PLAIN, torch_modules
    from rnnspec.kernels.cuda.bench_gated import gated_case, torch_gradients
    from rnnspec.spec.conventions import gradients_from_framework

    case = gated_case(cell, 3, 2, 5, 4, "float64")
    module = torch_modules(case, cell, PLAIN)[0]
    h0 = torch.from_numpy(case["h0"][None])
    start = (h0, torch.from_numpy(case["c0"][None])) if "c0" in case else h0
    module(torch.from_numpy(case["x"]), start)[0].backward(torch.from_numpy(case["gh"]))
    named = {name: p.grad.numpy() for name, p in module.named_parameters()}
    ours, want = torch_gradients(named, cell, case), gradients_from_framework("torch", cell, named)
    assert sorted(ours) == sorted(want)
    for key, value in want.items():
        assert ours[key].shape == value.shape and np.array_equal(ours[key], value), key
