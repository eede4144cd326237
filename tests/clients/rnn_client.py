#!/usr/bin/env python3
"""A program that speaks docs/protocol.md, written from that page alone (its own frame codec: struct, json,
NumPy), for the tests of rnnspec.spec.process.

It answers with rnnspec's float64 oracle (the inputs of a float32 call widened, the outputs rounded back),
or with one of the deliberately wrong models of tests/mutants.py (``--mutant LastCotangentDropped``).
``--misbehave KIND`` makes it misbehave on every call of ``--on METHOD`` (default forward), the other
methods answered correctly; ``--hello KIND`` sends a bad hello. ``--cells``/``--dtypes``/``--activations``
narrow what the hello declares (a shorter run).
"""

import argparse
import dataclasses
import json
import os
import signal
import struct
import sys
import time
from pathlib import Path

import numpy as np

TESTS = Path(__file__).resolve().parent.parent
MISBEHAVIOURS = ("crash", "hang", "exit", "not-json", "short-length", "text", "short-array", "bad-dtype",
                 "wrong-shape", "wrong-name", "stderr", "error-reply", "unknown-type", "no-entry-name")
HELLOS = ("not-hello", "wrong-protocol", "unknown-cell", "no-forward", "unknown-field", "bad-accuracy",
          "exit-before-hello", "cells-not-list")

stdin, stdout = sys.stdin.buffer, sys.stdout.buffer


def read_exactly(n):
    data = b""
    while len(data) < n:
        chunk = stdin.read(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def read_frame():
    prefix = read_exactly(4)
    if prefix is None:
        return None, None
    header = json.loads(read_exactly(struct.unpack("<I", prefix)[0]))
    arrays = {}
    for entry in header.get("arrays", []):
        dtype = np.dtype(entry["dtype"]).newbyteorder("<")
        count = int(np.prod(entry["shape"], dtype=np.int64))
        arrays[entry["name"]] = np.frombuffer(read_exactly(count * dtype.itemsize), dtype).reshape(entry["shape"])
    return header, arrays


def header_bytes(header):
    text = json.dumps(header).encode()
    return struct.pack("<I", len(text)) + text


def write_frame(header, arrays=None, entries=None):
    arrays = arrays or {}
    header = dict(header)
    if arrays:
        header["arrays"] = entries or [{"name": k, "dtype": v.dtype.name, "shape": list(v.shape)}
                                       for k, v in arrays.items()]
    body = b"".join(np.ascontiguousarray(v, v.dtype.newbyteorder("<")).tobytes() for v in arrays.values())
    stdout.write(header_bytes(header) + body)
    stdout.flush()


class Lazy:
    """The implementation, imported at its first use: with --cells and --activations given, the hello needs
    no import and the program answers it at once (rnnspec's oracle takes a second to import)."""

    def __init__(self, mutant):
        self.mutant, self.impl = mutant, None

    def get(self):
        if self.impl is None:
            if self.mutant is None:
                from rnnspec.derivations.oracle import Oracle

                self.impl = Oracle()
            else:
                sys.path.insert(0, str(TESTS))
                import mutants

                self.impl = getattr(mutants, self.mutant)()
        return self.impl


def hello_reply(args, lazy):
    hello = {"type": "hello", "protocol": 1, "name": f"rnn_client {args.mutant or 'oracle'}",
             "dtypes": args.dtypes.split(","), "methods": ["forward", "vjp", "loss"], "accuracy": "accurate"}
    if args.cells and args.activations:
        hello.update(cells=args.cells.split(","), activations=args.activations.split(","), variants=[])
    else:
        from rnnspec.derivations.cells import ACTIVATIONS

        impl = lazy.get()
        hello["cells"] = args.cells.split(",") if args.cells else list(getattr(impl, "cells", None) or [impl.cell])
        hello["activations"] = args.activations.split(",") if args.activations else list(ACTIVATIONS)
        hello["variants"] = list(getattr(impl, "variants", ()))
    bad = args.hello
    if bad == "not-hello":
        hello["type"] = "greetings"
    elif bad == "wrong-protocol":
        hello["protocol"] = 7
    elif bad == "unknown-cell":
        hello["cells"] = ["elman", "transformer"]
    elif bad == "no-forward":
        hello["methods"] = ["vjp"]
    elif bad == "unknown-field":
        hello["cels"] = hello.pop("cells")
    elif bad == "bad-accuracy":
        hello["accuracy"] = "faithful"
    elif bad == "cells-not-list":
        hello["cells"] = 42
    return hello


def compute(impl, header, arrays, oracle):
    from rnnspec.derivations.variants import parse_variant
    from rnnspec.spec.contract import contract

    method, dtype = header["method"], np.dtype(header["dtype"])
    impl.cell, impl.activation = header["cell"], header["activation"]
    variant = parse_variant(header["variant"])
    for field in dataclasses.fields(variant):  # layers, bidirectional, lengths, default_state, ...
        setattr(impl, field.name, getattr(variant, field.name))
    work = {k: (v.astype(np.float64) if oracle and v.dtype.kind == "f" else v.copy()) for k, v in arrays.items()}
    keys = contract(header["cell"], header["variant"])
    x, lengths = work.pop("x"), work.pop("lengths", None)
    state0 = {k: work.pop(k) for k in keys.state0}
    extra = {"lengths": lengths} if lengths is not None else {}
    if method == "forward":
        out = impl.forward(x, state0, work, **extra)
    elif method == "vjp":
        cot = {k[4:]: work.pop(k) for k in list(work) if k.startswith("cot_")}
        out = impl.vjp(x, state0, work, cot, **extra)
    else:
        targets = work.pop("targets")
        value, grads = impl.loss(x, state0, work, targets, **extra)
        out = {"value": np.asarray(value), **grads}
    return {k: np.asarray(v).astype(dtype) for k, v in out.items()}


def misbehave(kind, header, arrays, answer):
    """Do what ``kind`` says instead of answering: ``answer()`` computes the right answer where a wrong one is made
    from it; a frame broken anyway echoes the call's own arrays (no oracle to import)."""
    sys.stderr.write(f"rnn_client: misbehaving ({kind}) on {header['method']}\n")
    sys.stderr.flush()
    if kind == "crash":
        os.kill(os.getpid(), signal.SIGSEGV)
    elif kind == "hang":
        time.sleep(3600)
    elif kind == "exit":
        sys.exit(3)
    elif kind == "not-json":
        stdout.write(struct.pack("<I", 16) + b"this is not json")
    elif kind == "short-length":  # the length prefix cuts the header short
        text = json.dumps({"type": "result"}).encode()
        stdout.write(struct.pack("<I", len(text) - 3) + text)
    elif kind == "text":  # a debugging print on stdout: its first 4 bytes read as a huge length
        stdout.write(b"computing forward...\n")
    elif kind == "short-array":  # declares the arrays, writes half their bytes, ends
        result = arrays
        entries = [{"name": k, "dtype": v.dtype.name, "shape": list(v.shape)} for k, v in result.items()]
        body = b"".join(v.tobytes() for v in result.values())
        stdout.write(header_bytes({"type": "result", "arrays": entries}) + body[:len(body) // 2])
        stdout.flush()
        sys.exit(0)
    elif kind == "bad-dtype":
        result = arrays
        entries = [{"name": k, "dtype": "float16", "shape": list(v.shape)} for k, v in result.items()]
        stdout.write(header_bytes({"type": "result", "arrays": entries}))
    elif kind == "no-entry-name":
        result = arrays
        entries = [{"dtype": v.dtype.name, "shape": list(v.shape)} for v in result.values()]
        stdout.write(header_bytes({"type": "result", "arrays": entries}))
    elif kind == "unknown-type":
        write_frame({"type": "answer"}, arrays)
    elif kind == "wrong-shape":
        write_frame({"type": "result"}, {k: np.concatenate([v, v[..., :1]], -1) if v.ndim else v
                                         for k, v in answer().items()})
    elif kind == "wrong-name":
        write_frame({"type": "result"}, {"d" + k: v for k, v in answer().items()})  # dW for W
    elif kind == "error-reply":
        write_frame({"type": "error", "message": "rnn_client cannot compute this call"})
    elif kind == "stderr":  # far more than a pipe holds, every call; the answer itself is right
        sys.stderr.write("rnn_client chatter\n" * 20000)
        sys.stderr.flush()
        write_frame({"type": "result"}, answer())
    stdout.flush()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mutant")
    parser.add_argument("--misbehave", choices=MISBEHAVIOURS)
    parser.add_argument("--on", default="forward")
    parser.add_argument("--hello", choices=HELLOS)
    parser.add_argument("--cells")
    parser.add_argument("--dtypes", default="float64,float32")
    parser.add_argument("--activations")
    parser.add_argument("--tag", help="ignored: lets a test find its programs among the processes")
    parser.add_argument("--log", help="append 'bye' to this file when the suite says bye")
    args = parser.parse_args()
    if args.hello == "exit-before-hello":
        sys.stderr.write("rnn_client: cannot find my weights file\n")
        sys.exit(4)
    lazy = Lazy(args.mutant)
    while True:
        header, arrays = read_frame()
        if header is None or header["type"] == "bye":
            if header is not None and args.log:
                with open(args.log, "a") as log:
                    log.write("bye\n")
            return
        if header["type"] == "hello":
            write_frame(hello_reply(args, lazy))
            continue
        def answer(header=header, arrays=arrays):
            return compute(lazy.get(), header, arrays, oracle=args.mutant is None)

        if args.misbehave and header["method"] == args.on:
            misbehave(args.misbehave, header, arrays, answer)
        else:
            write_frame({"type": "result"}, answer())


if __name__ == "__main__":
    main()
