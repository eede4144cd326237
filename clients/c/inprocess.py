"""The C client's arithmetic in process: clients/c/rnn.c built as a shared library and called with ctypes.

It is the same code as the program ``exec:clients/c/build/rnn`` answers the process protocol with,
minus the pipes and the frames, so checking both measures what the protocol costs
(benchmarks/protocol_overhead.md)::

    rnnspec check clients/c/inprocess.py:CInProcess --cell lstm

The library is ``$RNNSPEC_C_LIBRARY`` when that is set, otherwise ``clients/c/build/librnn.so``,
(re)built with the system's C compiler when it is missing or older than its sources. What it
implements (cells, dtypes, methods, accuracy) is read from the library (``rnn_declaration``), and
the order of each method's arrays too (``rnn_names``): nothing here restates the C code's lists.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SOURCES = (HERE / "rnn.c", HERE / "rnn_cell.h")
#: the flags the tests build with; -DRNN_LIBRARY leaves out main and everything only the program needs
CFLAGS = ("-std=c99", "-O2", "-Wall", "-Werror")


def build(out: Path, *, library: bool = False, bug: int = 0, cc: str | None = None) -> Path:
    """Compile rnn.c into ``out`` (the program, or with ``library`` the shared library), with deliberate
    bug ``bug`` (0: none) compiled in. Raises RuntimeError with the compiler's output on failure."""
    cc = cc or shutil.which("cc")
    if cc is None:
        raise RuntimeError("no C compiler: `cc` is not on PATH")
    flags = [*CFLAGS, f"-DRNN_BUG={bug}"]
    if library:
        flags += ["-shared", "-fPIC", "-DRNN_LIBRARY"]
    out.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([cc, *flags, "-o", str(out), str(HERE / "rnn.c"), "-lm"],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{cc} failed building {out}:\n{done.stderr}")
    return out


def _library_path() -> Path:
    env = os.environ.get("RNNSPEC_C_LIBRARY")
    if env:
        return Path(env).resolve()  # "./librnn.so" would otherwise be searched for on the loader's path
    path = HERE / "build" / "librnn.so"
    if not path.exists() or path.stat().st_mtime < max(s.stat().st_mtime for s in SOURCES):
        build(path, library=True)
    return path


def _load(path: Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path))
    lib.rnn_declaration.restype = ctypes.c_char_p
    lib.rnn_names.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    for method in ("rnn_forward", "rnn_vjp", "rnn_loss"):
        fn = getattr(lib, method)
        fn.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int), ctypes.c_void_p,
                       ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
        fn.restype = ctypes.c_int
    return lib


class CInProcess:
    """A target (docs/targets.md) whose forward, vjp and loss are rnn.c's, called in this process."""

    cell = "elman"
    activation = "tanh"

    def __init__(self) -> None:
        self._lib = _load(_library_path())
        declared = json.loads(self._lib.rnn_declaration().decode())
        self.cells = tuple(declared["cells"])
        self.dtypes = tuple(declared["dtypes"])
        self.activations = tuple(declared["activations"])
        self.accuracy = declared["accuracy"]
        self.variants = tuple(declared["variants"])
        self._names: dict[tuple[str, str, int], list[str]] = {}

    def names(self, method: str, outputs: bool) -> list[str]:
        """The arrays ``method`` of the current cell takes (or returns), in the library's order."""
        key = (method, self.cell, int(outputs))
        if key not in self._names:
            buf = ctypes.create_string_buffer(1024)
            if self._lib.rnn_names(method.encode(), self.cell.encode(), int(outputs), buf, len(buf)):
                raise ValueError(f"the C library has no method {method!r} for cell {self.cell!r}")
            self._names[key] = buf.value.decode().split()
        return self._names[key]

    def _call(self, method: str, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = np.asarray(arrays["x"])
        dtype = x.dtype
        if dtype.name not in self.dtypes:
            raise TypeError(f"x must be one of {self.dtypes}, got {dtype.name}")
        # C-order copies only where needed; the library reads inputs and never writes them
        inputs = [np.ascontiguousarray(arrays[n], dtype=np.int64 if n == "targets" else dtype)
                  for n in self.names(method, False)]
        shapes = dict(zip(self.names(method, False), (a.shape for a in inputs), strict=True))
        T, B, I = x.shape
        H = shapes["h0"][-1]
        K = shapes["V"][0] if "V" in shapes else 0
        # an output is a state over time (T, B, H), the loss's value, or the gradient of an input
        out_shapes = {"h": (T, B, H), "c": (T, B, H)} if method == "forward" else {"value": ()}
        outputs = {n: np.empty(out_shapes[n] if n in out_shapes else shapes[n], dtype=dtype)
                   for n in self.names(method, True)}
        pointers_in = (ctypes.c_void_p * len(inputs))(*[a.ctypes.data for a in inputs])
        pointers_out = (ctypes.c_void_p * len(outputs))(*[a.ctypes.data for a in outputs.values()])
        dims = (ctypes.c_int * 5)(T, B, I, H, K)
        err = ctypes.create_string_buffer(512)
        fn = getattr(self._lib, "rnn_" + method)
        if fn(self.cell.encode(), dtype.name.encode(), dims, pointers_in, pointers_out, err, len(err)):
            raise ValueError(err.value.decode())
        return outputs

    def forward(self, x, state0, params):
        return self._call("forward", {"x": x, **state0, **params})

    def vjp(self, x, state0, params, cotangents):
        return self._call("vjp", {"x": x, **state0, **params, **{"cot_" + k: v for k, v in cotangents.items()}})

    def loss(self, x, state0, params, targets):
        out = self._call("loss", {"x": x, **state0, **params, "targets": targets})
        return float(out.pop("value")), out
