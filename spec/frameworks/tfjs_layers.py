"""The built-in target ``tfjs``: TensorFlow.js's own layers on Node, its pure-JS CPU backend.

tf.layers.simpleRNN (every Elman activation), tf.layers.lstm and tf.layers.gru (gru-reset-before: TF.js
has no reset-after GRU, see :mod:`rnnspec.spec.conventions.tfjs`), gradients by ``tf.variableGrads``, the
loss by ``tf.losses.softmaxCrossEntropy`` of the head ``V h_t + c`` summed over time and batch. The
canonical parameters are packed into TF.js's layout by :mod:`rnnspec.spec.conventions` here, sent to
``tfjs/server.js`` (one Node process per worker, started at its first call and kept) over the frames of
docs/protocol.md, and the gradients unpacked from TF.js's layout on the way back; the server's header
says which arrays it receives and answers.

float32 only: TF.js has no float64 (its tensors are float32, int32, bool, complex64 or string).

The npm packages (package-lock.json beside server.js pins @tensorflow/tfjs 4.22.0 and everything below it)
live outside the source tree, in ``$RNNSPEC_TFJS_HOME`` if set, else in
``<XDG_CACHE_HOME, else ~/.cache>/rnnspec-tfjs/<digest of package-lock.json>`` (a changed lock installs
afresh beside the old one). Install them with::

    python -m rnnspec.spec.frameworks.tfjs_layers --install
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from rnnspec import catalogue
from rnnspec.spec.conventions import gradients_from_framework, sequence_from, sequence_to, to_framework
from rnnspec.spec.conventions import tfjs as layout
from rnnspec.spec.targets import TargetError

#: server.js, package.json and package-lock.json
SOURCE = Path(__file__).resolve().parent / "tfjs"
SERVER = SOURCE / "server.js"
LOCK = SOURCE / "package-lock.json"
#: the package the target runs, and the version package.json pins
PACKAGE = "@tensorflow/tfjs"
INSTALL_COMMAND = "python -m rnnspec.spec.frameworks.tfjs_layers --install"
#: what TF.js 4.22.0 throws when it differentiates a recurrent layer with respect to its input over a sequence
#: of one step: the gradient of tf.unstack into one piece calls tf.stack on a tensor (server.js's header)
ONE_STEP_DEFECT = "Argument tensors passed to stack must be a `Tensor[]` or `TensorLike[]`"
#: written into the folder last, when npm ci has succeeded: a half-finished install is not taken for one
_MARKER = ".rnnspec-installed"


def pinned_version() -> str:
    """The version of @tensorflow/tfjs that package.json pins."""
    return json.loads((SOURCE / "package.json").read_text())["dependencies"][PACKAGE]


def _lock_digest() -> str:
    return hashlib.sha256(LOCK.read_bytes()).hexdigest()[:16]


def home() -> Path:
    """Where the npm packages are installed: ``$RNNSPEC_TFJS_HOME``, else
    ``<XDG_CACHE_HOME, else ~/.cache>/rnnspec-tfjs/<first 16 hex digits of sha256(package-lock.json)>``."""
    chosen = os.environ.get("RNNSPEC_TFJS_HOME")
    if chosen:
        return Path(chosen).expanduser().resolve()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "rnnspec-tfjs" / _lock_digest()


def missing(where: Path | None = None) -> str:
    """Why the target cannot run here, in one line that names the command to run; "" if it can."""
    node = shutil.which("node")
    if node is None:
        return (f"node is not on PATH: install Node.js 18 or later (with npm), then run {INSTALL_COMMAND}")
    where = where or home()
    marker = where / _MARKER
    if not marker.is_file() or marker.read_text().strip() != _lock_digest():
        return (f"TensorFlow.js {pinned_version()} (npm packages of {LOCK}) is not installed in {where}: "
                f"run {INSTALL_COMMAND}")
    return ""


def installed() -> bool:
    """Whether node and the pinned npm packages are there (what the compatibility matrix asks of a row)."""
    return not missing()


def version() -> str:
    """The installed @tensorflow/tfjs's version (the pin, once installed), and Node's."""
    package = json.loads((home() / "node_modules" / PACKAGE / "package.json").read_text())
    node = subprocess.run(["node", "--version"], capture_output=True, text=True, check=True).stdout.strip()
    return f"{package['version']} (Node {node})"


def install(where: Path | None = None, quiet: bool = False) -> Path:
    """``npm ci`` of package-lock.json into ``where`` (default :func:`home`) unless already there; the folder.

    Safe to call from several processes at once (a file lock), and fast when the packages are there."""
    npm = shutil.which("npm")
    if shutil.which("node") is None or npm is None:
        raise RuntimeError("node and npm are not both on PATH: install Node.js 18 or later (it comes with npm)")
    where = (where or home()).resolve()
    where.mkdir(parents=True, exist_ok=True)
    with open(where / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second installer waits here, then finds the packages there
        if not missing(where):
            return where
        with contextlib.suppress(FileNotFoundError):
            (where / _MARKER).unlink()
        for name in ("package.json", "package-lock.json"):
            shutil.copyfile(SOURCE / name, where / name)
        # --ignore-scripts: nothing in the tree needs an install script (core-js's prints an advert)
        command = [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--prefix", str(where)]
        done = subprocess.run(command, cwd=where, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed (exit code {done.returncode}):\n"
                               f"{done.stdout[-2000:]}{done.stderr[-2000:]}")
        if not quiet:
            print(done.stdout.strip() or f"installed into {where}", file=sys.stderr)
        (where / _MARKER).write_text(_lock_digest() + "\n")
    return where


class TfjsRNN:
    """TensorFlow.js's tf.layers.simpleRNN / lstm / gru on Node, float32, over one kept Node process."""

    #: every cell the TF.js layout has a layer for (spec/conventions/tfjs.py), Elman first (the default)
    cells = tuple(layout.LAYERS)
    cell = "elman"
    dtypes = ("float32",)
    #: why a dtype it does not declare is missing (the compatibility matrix prints it)
    not_provided = {"float64": "TensorFlow.js has no float64: its tensors are float32, int32, bool, complex64 or "
                               "string, and tf.tensor refuses a Float64Array"}
    #: tf.layers.simpleRNN's activation takes every one (identity is its 'linear')
    activations = catalogue.ELMAN_ACTIVATIONS
    #: the loss's cross-entropy: TF.js's loss function tf.losses.softmaxCrossEntropy, which loses accuracy on
    #: large logits (server.js's header); "logSoftmax" (-sum(labels * tf.logSoftmax(logits))) shows where
    head = "softmaxCrossEntropy"

    def __init__(self, activation: str = "tanh") -> None:
        from rnnspec.spec.process import ProcessClient

        reason = missing()
        if reason:
            raise TargetError(f"target 'tfjs': {reason}")
        self.activation = activation
        # started by its first call, in the process that makes it (the suite's worker), and kept
        self.client = ProcessClient([shutil.which("node"), str(SERVER), str(home())],
                                    name=f"TensorFlow.js (node {SERVER.name})")

    def close(self) -> None:
        self.client.close()

    def _states(self) -> list[str]:
        return ["h0", "c0"] if self.cell == "lstm" else ["h0"]

    def _arrays(self, x, state0: dict, params: dict) -> dict[str, np.ndarray]:
        """TF.js's weights of the canonical ``params``, x batch-major, the initial states; float32 checked first."""
        given = {"x": x, **{f"state0[{k!r}]": state0[k] for k in self._states()},
                 **{f"params[{k!r}]": v for k, v in params.items()}}
        for name, value in given.items():
            dtype = np.asarray(value).dtype
            if dtype != np.float32:
                raise TypeError(f"{name}: TensorFlow.js computes in float32 only (the target declares "
                                f"{self.dtypes}); got {dtype}")
        weights = to_framework("tfjs", self.cell, params)
        return {**weights, "x": sequence_to("tfjs", np.asarray(x)), **{k: state0[k] for k in self._states()}}

    def _call(self, method: str, arrays: dict, **more: str) -> dict[str, np.ndarray]:
        from rnnspec.spec.process import CallError

        header = {"method": method, "cell": self.cell, "activation": self.activation, "dtype": "float32", **more}
        try:
            return self.client.call(header, arrays)
        except CallError as exc:
            if arrays["x"].shape[1] == 1 and ONE_STEP_DEFECT in str(exc):  # batch-major: T is axis 1
                raise CallError(f"{exc} [a TensorFlow.js {pinned_version()} defect: it cannot differentiate a "
                                "recurrent layer with respect to its input over a sequence of one step, the "
                                "gradient of a one-piece tf.unstack throws; tensorflow/tfjs#1529]") from None
            raise

    def _gradients(self, out: dict, head: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
        """The canonical gradients of the server's answer in TF.js's layout."""
        grads = gradients_from_framework("tfjs", self.cell, {k: out[k] for k in layout.WEIGHTS})
        grads["x"] = sequence_from("tfjs", out["x"])
        grads.update({k: out[k] for k in (*self._states(), *head)})
        return grads

    def forward(self, x, state0, params) -> dict[str, np.ndarray]:
        out = self._call("forward", self._arrays(x, state0, params))
        return {k: sequence_from("tfjs", v) for k, v in out.items()}

    def vjp(self, x, state0, params, cotangents) -> dict[str, np.ndarray]:
        arrays = self._arrays(x, state0, params)
        names = ["h", "c"] if self.cell == "lstm" else ["h"]
        for k in names:
            if np.asarray(cotangents[k]).dtype != np.float32:
                raise TypeError(f"cotangents[{k!r}]: TensorFlow.js computes in float32 only; got "
                                f"{np.asarray(cotangents[k]).dtype}")
        arrays.update({f"cot_{k}": sequence_to("tfjs", np.asarray(cotangents[k])) for k in names})
        return self._gradients(self._call("vjp", arrays))

    def loss(self, x, state0, params, targets) -> tuple[float, dict[str, np.ndarray]]:
        arrays = self._arrays(x, state0, params)
        arrays.update(V=params["V"], c=params["c"], targets=sequence_to("tfjs", np.asarray(targets, np.int64)))
        out = self._call("loss", arrays, head=self.head)
        return float(out.pop("value")), self._gradients(out, ("V", "c"))


class TfjsLogSoftmaxHead(TfjsRNN):
    """TfjsRNN with the loss's cross-entropy taken as -sum(labels * tf.logSoftmax(logits)) instead of TF.js's loss
    function: not what a TF.js user calls, but what locates tf.losses.softmaxCrossEntropy's loss of accuracy on
    large logits (server.js's header): a LOSS failure that this passes is that defect's."""

    head = "logSoftmax"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rnnspec.spec.frameworks.tfjs_layers",
                                     description="The npm packages of the tfjs target (TensorFlow.js on Node).")
    parser.add_argument("--install", action="store_true", help="npm ci them into the folder the target reads "
                        "($RNNSPEC_TFJS_HOME, else a folder of the user's cache named by the lock's digest)")
    parser.add_argument("--where", action="store_true", help="print that folder and whether they are there")
    args = parser.parse_args(argv)
    if args.install:
        try:
            print(install())
        except RuntimeError as exc:  # node or npm missing, or npm ci failed: its message, no traceback
            print(f"error: {exc}", file=sys.stderr)
            return 1
        return 0
    if args.where:
        reason = missing()
        print(home() if not reason else f"{home()}: {reason}")
        return 0 if not reason else 1
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
