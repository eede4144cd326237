"""Finding an implementation under test: built-in names, ``package.module:attr``, ``file.py:attr``."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import shlex
import sys
import traceback
from pathlib import Path

#: built-in targets: name -> (module, attribute). Imported only when asked for.
BUILTIN = {
    "oracle": ("rnnspec.derivations.oracle", "Oracle"),
    "rnnspec-cpu": ("rnnspec.spec.adapters", "RnnspecCPU"),
    "rnnspec-cuda": ("rnnspec.spec.adapters", "RnnspecCUDA"),
    "torch": ("rnnspec.spec.frameworks.torch_layers", "TorchRNN"),
    "torch-cuda": ("rnnspec.spec.frameworks.torch_layers", "TorchCUDA"),
    "torch-cuda-no-tf32": ("rnnspec.spec.frameworks.torch_layers", "TorchCUDANoTF32"),
    "onnxruntime": ("rnnspec.spec.frameworks.onnx_operators", "OnnxRuntime"),
    "flax": ("rnnspec.spec.frameworks.flax_cells", "FlaxRNN"),
    "keras": ("rnnspec.spec.frameworks.keras_layers", "KerasRNN"),
    "keras-jax": ("rnnspec.spec.frameworks.keras_layers", "KerasJax"),
    "keras-torch": ("rnnspec.spec.frameworks.keras_layers", "KerasTorch"),
    "keras-tensorflow": ("rnnspec.spec.frameworks.keras_layers", "KerasTensorflow"),
    "keras-onnx": ("rnnspec.spec.frameworks.keras_onnx", "KerasOnnx"),
    "keras-tf2onnx": ("rnnspec.spec.frameworks.keras_onnx", "KerasTf2onnx"),
    "tfjs": ("rnnspec.spec.frameworks.tfjs_layers", "TfjsRNN"),
    "mlx": ("rnnspec.spec.frameworks.mlx_layers", "MlxRNN"),
    "paddle": ("rnnspec.spec.frameworks.paddle_layers", "PaddleRNN"),
    "torch-onnx": ("rnnspec.spec.frameworks.onnx_export", "TorchOnnx"),
    "torch-onnx-torchscript": ("rnnspec.spec.frameworks.onnx_export", "TorchOnnxTorchScript"),
    "openvino": ("rnnspec.spec.frameworks.openvino_runtime", "OpenVino"),
    "openvino-f32": ("rnnspec.spec.frameworks.openvino_runtime", "OpenVinoF32"),
    "onnxruntime-batch-major": ("rnnspec.spec.frameworks.onnx_operators", "OnnxRuntimeBatchMajor"),
    "openvino-batch-major": ("rnnspec.spec.frameworks.openvino_runtime", "OpenVinoBatchMajor"),
    "torch-compile": ("rnnspec.spec.frameworks.torch_compiled", "TorchCompiled"),
    "torch-compile-loop": ("rnnspec.spec.frameworks.torch_compiled", "TorchCompiledLoop"),
    "onnx2pytorch": ("rnnspec.spec.frameworks.onnx2torch_layers", "Onnx2PyTorch"),
}


class TargetError(Exception):
    """A target could not be found or built; the message says which and why."""


def describe_exception(exc: BaseException, frames: int = 6) -> str:
    """The exception as Python prints it (the whole message; file, line and caret for a syntax error),
    after the last ``frames`` frames of its traceback outside rnnspec's own machinery."""
    # the loading and calling machinery, not the target (for a program, spec/process.py's message says it all)
    ours = ("spec/targets.py", "spec/worker.py", "spec/process.py")
    stack = [f for f in traceback.extract_tb(exc.__traceback__)
             if not f.filename.endswith(ours) and not f.filename.startswith("<frozen importlib")]
    where = "".join(traceback.format_list(stack[-frames:]))
    text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    return (f"{text}\n{where.rstrip()}" if where else text).strip()


def _instantiate(obj, name: str):
    if inspect.isclass(obj):
        try:
            return obj()
        except TargetError:
            raise
        except Exception as exc:  # the user's constructor: report, do not crash
            raise TargetError(f"target {name!r}: calling {obj.__name__}() failed:\n{describe_exception(exc)}") from exc
    return obj


def _from_file(path: str, attr: str, name: str):
    file = Path(path)
    if not file.is_file():
        raise TargetError(f"target {name!r}: no file {file}")
    # a digest, not hash(): str hashes are salted per process, and a report names the module (shards must agree)
    module_name = f"rnnspec_target_{hashlib.sha256(str(file.resolve()).encode()).hexdigest()[:16]}"
    spec = importlib.util.spec_from_file_location(module_name, file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    # as `python file.py` would, let the file import the modules beside it
    folder = str(file.resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise TargetError(f"target {name!r}: importing {file} failed:\n{describe_exception(exc)}") from exc
    return module


#: a target named ``exec:COMMAND`` is a program speaking docs/protocol.md
EXEC_PREFIX = "exec:"


def _from_program(name: str, timeout: float | None = None):
    """The :class:`~rnnspec.spec.process.ProcessTarget` of ``exec:COMMAND`` (the program started, its hello read;
    each exchange bounded by ``timeout`` seconds, or by the worker that loads it)."""
    from rnnspec.spec.process import ProcessTarget

    command = name[len(EXEC_PREFIX):]
    try:
        argv = shlex.split(command)
    except ValueError as exc:  # an unclosed quote
        raise TargetError(f"target {name!r}: cannot split the command as a shell would ({exc})") from None
    if not argv:
        raise TargetError(f"target {name!r}: name the program after {EXEC_PREFIX!r}, e.g. exec:\"./my_rnn --flags\"")
    return ProcessTarget(argv, timeout=timeout)


def load_target(name: str):
    """The implementation object that ``name`` designates (a class is instantiated with no arguments; ``exec:COMMAND``
    is a program speaking docs/protocol.md)."""
    if name.startswith(EXEC_PREFIX):
        return _from_program(name)
    if name in BUILTIN:
        module_name, attr = BUILTIN[name]
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise TargetError(f"target {name!r}: {exc}") from exc
        return _instantiate(getattr(module, attr), name)
    if ":" not in name:
        if name.endswith(".py") or Path(name).is_file():
            raise TargetError(f"target {name!r}: name the object in the file too, as {name}:ATTR (ATTR: the "
                              "implementation object, or a class to instantiate with no arguments)")
        raise TargetError(f"unknown target {name!r}: use one of {sorted(BUILTIN)}, package.module:attr, "
                          "path/to/file.py:attr or exec:COMMAND (a program speaking docs/protocol.md)")
    where, attr = name.rsplit(":", 1)
    if where.endswith(".py"):
        module = _from_file(where, attr, name)
    else:
        try:
            module = importlib.import_module(where)
        except Exception as exc:
            raise TargetError(f"target {name!r}: importing {where} failed:\n{describe_exception(exc)}") from exc
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise TargetError(f"target {name!r}: {where} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return _instantiate(obj, name)
