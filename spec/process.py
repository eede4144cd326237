"""A program in any language as a target: the process protocol of docs/protocol.md, the suite's side.

The wire format (fixed; docs/protocol.md is the one place it is written): both directions send frames of

    uint32 little-endian N | N bytes of UTF-8 JSON header (an object) | the arrays its "arrays" lists, raw,
    little-endian, C order, in that order, each prod(shape) * itemsize bytes (float32, float64, int64)

:func:`write_frame` / :func:`read_frame` are the codec (strict: every malformation is a
:class:`ProtocolError` that says what was read and what was expected). :class:`ProcessClient` runs one
program over it: the hello handshake, one call at a time, a restart after anything but a clean answer,
and the program's stderr kept for the messages. :class:`ProcessTarget` is the implementation contract
of docs/targets.md on top of it; ``load_target("exec:./prog --flags")`` returns one.
"""

from __future__ import annotations

import atexit
import ctypes
import dataclasses
import json
import math
import multiprocessing.util
import os
import select
import shlex
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping

import numpy as np

try:
    import fcntl
except ImportError:  # not on Windows: the pipes keep their default size
    fcntl = None

PROTOCOL = 1
#: the dtypes a frame may carry, by their names on the wire
DTYPES = ("float32", "float64", "int64")
#: a header longer than this is refused (a stray text line read as a length is usually far longer)
MAX_HEADER = 1 << 20
#: the arrays of one frame may hold at most this many bytes in all
MAX_ARRAY_BYTES = 1 << 32
#: an array has at most this many axes
MAX_AXES = 32
#: the size asked for the program's pipes (fcntl F_SETPIPE_SZ, Linux), and the chunk written at once
PIPE_SIZE = 1 << 20
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031) if fcntl is not None else None
#: how much of the program's stderr an error message shows
STDERR_TAIL = 2000
STDERR_LINES = 20


class ProcessError(Exception):
    """Something went wrong talking to a program (the message says what, and shows its stderr)."""


class ProtocolError(ProcessError):
    """A frame that does not follow docs/protocol.md."""


class EndOfStream(ProtocolError):
    """The stream ended where a frame should start."""


class ProgramDied(ProcessError):
    """The program exited, crashed or stopped reading or writing during a call."""


class CallTimeout(ProcessError):
    """The program did not answer within the allowed time (it is killed)."""


class CallError(ProcessError):
    """The program answered ``{"type": "error"}``: it could not compute the call (it stays running)."""


class HelloError(ProtocolError):
    """The program's answer to hello is not a hello of this protocol."""


# -- the codec --------------------------------------------------------------------------------------------------

def _show(data: bytes, limit: int = 120) -> str:
    return repr(bytes(data[:limit])) + (f" ... ({len(data)} bytes)" if len(data) > limit else "")


def encode_frame(header: Mapping, arrays: Mapping[str, np.ndarray] | None = None) -> bytes:
    """The bytes of one frame: ``header`` with its ``"arrays"`` entries made from ``arrays`` (name -> array, in that
    order), then the arrays' bytes. ``header`` must not list arrays itself; neither argument is modified."""
    if not isinstance(header, Mapping):
        raise TypeError(f"header must be a dict, got {type(header).__name__}")
    if "arrays" in header:
        raise ValueError("header: leave 'arrays' out; it is made from the arrays argument")
    entries, blobs = [], []
    for name, value in (arrays or {}).items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"arrays: every name must be a non-empty string, got {name!r}")
        array = np.asarray(value)
        if array.dtype.name not in DTYPES:
            raise ValueError(f"arrays[{name!r}] has dtype {array.dtype}; the protocol carries {', '.join(DTYPES)}")
        little = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
        entries.append({"name": name, "dtype": array.dtype.name, "shape": list(array.shape)})
        blobs.append(little.tobytes())
    full = dict(header)
    if entries:
        full["arrays"] = entries
    text = json.dumps(full, allow_nan=False, separators=(",", ":")).encode()
    if len(text) > MAX_HEADER:
        raise ValueError(f"header: {len(text)} bytes of JSON, past the limit of {MAX_HEADER}")
    return b"".join([struct.pack("<I", len(text)), text, *blobs])


def write_frame(stream, header: Mapping, arrays: Mapping[str, np.ndarray] | None = None) -> None:
    """Write one frame (:func:`encode_frame`) to the binary ``stream`` and flush it."""
    stream.write(encode_frame(header, arrays))
    stream.flush()


def _read_exactly(stream, n: int, what: str) -> bytearray:
    """``n`` bytes of ``stream`` in a writable buffer (the arrays are views of it), or a ProtocolError."""
    data = stream.read(n)
    if len(data) < n:  # a pipe may return less than asked before its end: read on until the end
        data = bytearray(data)
        while len(data) < n:
            chunk = stream.read(n - len(data))
            if not chunk:
                if not data and what == "of a frame's length":
                    raise EndOfStream("the stream ended where a frame should start")
                raise ProtocolError(f"the stream ended after {len(data)} of the {n} bytes {what}")
            data += chunk
    return data if isinstance(data, bytearray) else bytearray(data)


def parse_entries(header: dict, max_bytes: int = MAX_ARRAY_BYTES) -> list[tuple[str, np.dtype, tuple[int, ...]]]:
    """The (name, dtype, shape) of each array a header lists, checked; a :class:`ProtocolError` says what is
    wrong with which entry."""
    entries = header.get("arrays", [])
    if not isinstance(entries, list):
        raise ProtocolError(f"the header's 'arrays' is {type(entries).__name__}, expected a list of "
                            "{'name', 'dtype', 'shape'} objects")
    out, names, total = [], set(), 0
    for n, entry in enumerate(entries):
        where = f"the header's arrays[{n}] ({json.dumps(entry)[:120]})"
        if not isinstance(entry, dict):
            raise ProtocolError(f"{where} is {type(entry).__name__}, expected an object with name, dtype, shape")
        for key in ("name", "dtype", "shape"):
            if key not in entry:
                raise ProtocolError(f"{where} has no {key!r}")
        name, dtype, shape = entry["name"], entry["dtype"], entry["shape"]
        if not isinstance(name, str) or not name:
            raise ProtocolError(f"{where}: name must be a non-empty string")
        if name in names:
            raise ProtocolError(f"{where}: array {name!r} is listed twice")
        if dtype not in DTYPES:
            raise ProtocolError(f"{where}: dtype {dtype!r} is not one of {', '.join(DTYPES)}")
        if (not isinstance(shape, list) or len(shape) > MAX_AXES
                or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
            raise ProtocolError(f"{where}: shape must be a list of at most {MAX_AXES} non-negative integers")
        names.add(name)
        total += math.prod(shape) * np.dtype(dtype).itemsize
        if total > max_bytes:
            raise ProtocolError(f"{where}: the arrays would hold more than {max_bytes} bytes")
        out.append((name, np.dtype(dtype), tuple(shape)))
    return out


def read_frame(stream, max_header: int = MAX_HEADER, max_bytes: int = MAX_ARRAY_BYTES) -> tuple[dict, dict]:
    """One frame from the binary ``stream`` (anything with ``read(n)``): ``(header, arrays)``, arrays by name in
    the header's order, native-endian and writable; the header keeps its ``"arrays"`` entries.

    Raises :class:`EndOfStream` when the stream ends before the frame starts, and :class:`ProtocolError`
    for anything else that is not a frame: a length past ``max_header``, a header that is not a JSON
    object, an array entry without name, dtype or shape, or fewer bytes than declared."""
    prefix = _read_exactly(stream, 4, "of a frame's length")
    (length,) = struct.unpack("<I", prefix)
    if length > max_header:
        hint = " (they look like text: a frame starts with the header's length as 4 bytes)" if \
            all(32 <= c < 127 or c in (9, 10, 13) for c in prefix) else ""
        raise ProtocolError(f"a frame's length is {length} (bytes {_show(prefix)}), past the limit of "
                            f"{max_header}{hint}")
    raw = _read_exactly(stream, length, "of the header")
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"the header ({length} bytes) is not UTF-8 JSON ({exc}): {_show(raw)}") from None
    if not isinstance(header, dict):
        raise ProtocolError(f"the header is a JSON {type(header).__name__}, expected an object: {_show(raw)}")
    arrays = {}
    for name, dtype, shape in parse_entries(header, max_bytes):
        size = math.prod(shape) * dtype.itemsize
        data = _read_exactly(stream, size, f"of array {name!r} ({dtype.name}, shape {list(shape)})")
        arrays[name] = np.frombuffer(data, dtype=dtype.newbyteorder("<")).astype(dtype, copy=False).reshape(shape)
    return header, arrays


# -- one program ------------------------------------------------------------------------------------------------

def _die_with_parent() -> None:
    """In the program's process before exec (Linux): SIGKILL it when the process that started it ends, so a
    worker killed for a timeout takes its program with it."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except Exception:  # no prctl (not Linux): the program still ends at EOF on its stdin
        pass


def _may_die_with_parent() -> bool:
    """PR_SET_PDEATHSIG fires when the starting *thread* ends: only a program started by the main thread (as the
    suite's worker starts it) gets it; one started from another thread ends at EOF on its stdin."""
    return sys.platform == "linux" and threading.current_thread() is threading.main_thread()


#: the clients whose program runs, held until closed: those of this process are closed (bye) when it exits, even
#: where the target object was dropped first (the suite's worker returns from its loop, then exits)
_LIVE: set = set()
_EXIT_HOOKED: set[int] = set()


def _close_at_exit(client: ProcessClient) -> None:
    _LIVE.add(client)
    if os.getpid() not in _EXIT_HOOKED:
        _EXIT_HOOKED.add(os.getpid())
        atexit.register(_close_all)
        # a multiprocessing child (the suite's worker) ends without atexit but runs these finalizers
        multiprocessing.util.Finalize(None, _close_all, exitpriority=10)


def _close_all() -> None:
    for client in list(_LIVE):
        if client._owner == os.getpid():
            client.close()


class _Pipes:
    """The program's stdin and stdout as raw file descriptors, read and written against a deadline (its
    output is read while a long frame is written, so a program that answers early cannot deadlock us)."""

    def __init__(self, stdin: int, stdout: int) -> None:
        self.stdin, self.stdout = stdin, stdout
        os.set_blocking(stdin, False)
        for fd in (stdin, stdout):  # 1 MiB pipes (Linux; 64 KiB by default): fewer wake-ups for a large array
            try:
                fcntl.fcntl(fd, F_SETPIPE_SZ, PIPE_SIZE)
            except (OSError, AttributeError):
                pass
        self.buffer = bytearray()
        self.eof = False
        self.deadline: float | None = None

    def _left(self) -> float | None:
        if self.deadline is None:
            return None
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise CallTimeout("timed out")
        return left

    def _fill(self, wait: float | None) -> None:
        readable, _, _ = select.select([self.stdout], [], [], wait)
        if readable:
            chunk = os.read(self.stdout, 1 << 20)
            if chunk:
                self.buffer += chunk
            else:
                self.eof = True

    def read(self, n: int) -> bytearray:
        """``n`` bytes, fewer only where the program closed its stdout; a large read goes straight into the result."""
        out = bytearray(n)
        got = min(n, len(self.buffer))
        out[:got] = self.buffer[:got]
        del self.buffer[:got]
        view = memoryview(out)
        while got < n and not self.eof:
            readable, _, _ = select.select([self.stdout], [], [], self._left())
            if readable:
                count = os.readv(self.stdout, [view[got:]])
                got += count
                self.eof = count == 0
        view.release()
        del out[got:]
        return out

    def write(self, data: bytes) -> None:
        view, done = memoryview(data), 0
        while done < len(data):
            readable, writable, _ = select.select([] if self.eof else [self.stdout], [self.stdin], [], self._left())
            if readable:
                self._fill(0)
            if writable:
                try:
                    done += os.write(self.stdin, view[done:done + PIPE_SIZE])
                except BlockingIOError:
                    continue


class ProcessClient:
    """One program speaking docs/protocol.md over its stdin and stdout.

    ``command`` is split as a POSIX shell splits it (no shell runs it) and run in ``cwd``. The program is
    started by :meth:`start` or by the first :meth:`call`; after any failure but an ``error`` answer it is
    killed, and the next call starts it again (with a new hello). ``timeout`` bounds each exchange (None:
    wait forever; the caller bounds it). Started from the main thread on Linux, the program is killed when the
    process that started it ends (PR_SET_PDEATHSIG: a worker killed for a timeout takes it along); it is
    always sent bye when that process exits normally, and sees EOF on its stdin when it dies. POSIX only
    (select on pipes).
    """

    def __init__(self, command: str | list[str], name: str | None = None, *, timeout: float | None = None,
                 cwd: str | None = None, env: Mapping[str, str] | None = None) -> None:
        argv = shlex.split(command) if isinstance(command, str) else [str(a) for a in command]
        if not argv:
            raise ValueError(f"command: expected a program and its arguments, got {command!r}")
        self.argv = argv
        self.name = name or shlex.join(argv)
        self.timeout = timeout
        self.cwd, self.env = cwd, dict(env) if env is not None else None
        self.process: subprocess.Popen | None = None
        self.hello: dict | None = None
        self._pipes: _Pipes | None = None
        self._stderr = None
        self._owner = 0
        self.starts = 0

    # -- life cycle -------------------------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None and self._owner == os.getpid() else None

    def start(self) -> dict:
        """Start the program and exchange hellos; its hello header (a :class:`HelloError` if it is not one)."""
        self._forget_inherited()
        if self.process is not None:
            self.close()
        self._stderr = tempfile.TemporaryFile()
        try:
            self.process = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                            stderr=self._stderr, cwd=self.cwd, env=self.env, bufsize=0,
                                            preexec_fn=_die_with_parent if _may_die_with_parent() else None)
        except FileNotFoundError:
            raise ProcessError(f"cannot start {self.name}: no program {self.argv[0]!r} (a path, or a name on "
                               "PATH)") from None
        except PermissionError:
            raise ProcessError(f"cannot start {self.name}: {self.argv[0]!r} is not executable") from None
        except OSError as exc:
            raise ProcessError(f"cannot start {self.name}: {exc}") from None
        self._owner = os.getpid()
        _close_at_exit(self)
        self.starts += 1
        self._pipes = _Pipes(self.process.stdin.fileno(), self.process.stdout.fileno())
        try:
            header, _ = self._exchange({"type": "hello", "protocol": PROTOCOL}, {}, self.timeout, "hello")
        except ProcessError as exc:
            raise HelloError(str(exc)) from None
        if header.get("type") != "hello" or header.get("protocol") != PROTOCOL:
            message = self._failed(f"answered hello with {json.dumps(header)[:300]}; expected "
                                   f'{{"type": "hello", "protocol": {PROTOCOL}, ...}}', "hello", kill=True)
            raise HelloError(message)
        self.hello = header
        return header

    def _forget_inherited(self) -> None:
        """In a forked child, the parent's program is not ours: drop our copies of its pipes, never wait on it."""
        if self.process is not None and self._owner != os.getpid():
            for stream in (self.process.stdin, self.process.stdout):
                try:
                    stream.close()
                except OSError:
                    pass
            self.process, self._pipes, self._stderr = None, None, None

    def close(self, timeout: float = 2.0) -> None:
        """Say bye, close the program's stdin, wait ``timeout`` seconds for it to exit, then kill it."""
        self._forget_inherited()
        _LIVE.discard(self)
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            try:
                self._pipes.deadline = time.monotonic() + timeout
                self._pipes.write(encode_frame({"type": "bye"}))
            except (OSError, ProcessError):
                pass
        self._reap(timeout)

    def _reap(self, timeout: float = 0.0) -> None:
        process = self.process
        if process is None:
            return
        for stream in (process.stdin, process.stdout):
            try:
                stream.close()
            except OSError:
                pass
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        self.process, self._pipes = None, None

    def running(self) -> bool:
        return self.pid is not None and self.process.poll() is None

    # -- calls ------------------------------------------------------------------------------------------------
    def call(self, header: Mapping, arrays: Mapping[str, np.ndarray] | None = None,
             timeout: float | None = None) -> dict[str, np.ndarray]:
        """Send a call (``header``'s ``type`` defaults to ``"call"``) and its arrays; the result's arrays by name.

        :class:`CallError` for an ``error`` answer; :class:`ProtocolError`, :class:`ProgramDied` or
        :class:`CallTimeout` (the program is then killed and restarted by the next call) for anything else
        that is not a ``result``. Each message names the program and the method and shows its stderr."""
        if not self.running():
            if self.process is not None and self._owner == os.getpid():
                self._reap()
            self.start()
        full = {"type": "call", **header}
        what = str(full.get("method", full["type"]))
        reply, out = self._exchange(full, arrays or {}, self.timeout if timeout is None else timeout, what)
        kind = reply.get("type")
        if kind == "result":
            return out
        if kind == "error":
            message = reply.get("message")
            raise CallError(f"{self.name} answered {what} with an error: "
                            f"{message if isinstance(message, str) else json.dumps(reply)[:300]}")
        raise ProtocolError(self._failed(f"answered {what} with a header of type {kind!r}, expected 'result' or "
                                         f"'error': {json.dumps(reply)[:300]}", what, kill=True))

    def _exchange(self, header: Mapping, arrays: Mapping, timeout: float | None, what: str) -> tuple[dict, dict]:
        frame = encode_frame(header, arrays)  # a caller's bad array is its ValueError, the program untouched
        pipes = self._pipes
        pipes.deadline = None if timeout is None else time.monotonic() + timeout
        try:
            pipes.write(frame)
            return read_frame(pipes)
        except CallTimeout:
            raise CallTimeout(self._failed(f"did not answer {what} within {timeout:.3g} s", what, kill=True)) from None
        except (BrokenPipeError, ConnectionResetError):
            raise ProgramDied(self._failed(f"stopped reading its stdin during {what}", what, kill=False)) from None
        except EndOfStream:
            raise ProgramDied(self._failed(f"closed its stdout without answering {what}", what, kill=False)) from None
        except ProtocolError as exc:
            raise ProtocolError(self._failed(f"sent a malformed frame in answer to {what}: {exc}", what,
                                             kill=True)) from None

    def _failed(self, what: str, method: str, kill: bool) -> str:
        """The message of a failed exchange: what happened, how the program ended, its stderr; the program is
        reaped (killed first if ``kill``, else given a second to exit) and restarted by the next call."""
        process, pid = self.process, self.pid
        ending = ""
        if process.poll() is None:
            if not kill:  # it closed a pipe: give it a moment to exit and say how
                try:
                    process.wait(timeout=1.0)
                except subprocess.TimeoutExpired:
                    pass
            if process.poll() is None:
                process.kill()
                ending = "it was still running: killed it" if not kill else "killed it"
        self._reap(5.0)
        code = process.returncode
        if not ending:
            if code < 0:
                try:
                    name = signal.Signals(-code).name
                except ValueError:
                    name = "unknown signal"
                ending = f"it died with signal {-code} ({name})"
            else:
                ending = f"it exited with code {code}"
        return f"program {self.name} (pid {pid}) {what}; {ending}\n{self.stderr_tail()}"

    def stderr_tail(self, limit: int = STDERR_TAIL, lines: int = STDERR_LINES) -> str:
        """The end of what the program wrote to stderr since it was last started, as a message's block."""
        if self._stderr is None:
            return "(no stderr kept)"
        try:
            self._stderr.seek(0, os.SEEK_END)
            size = self._stderr.tell()
            self._stderr.seek(max(0, size - limit))
            text = self._stderr.read().decode("utf-8", errors="replace").replace("\0", "")
        except (OSError, ValueError):
            return "(its stderr could not be read)"
        if not text.strip():
            return "its stderr: (empty)"
        kept = text.rstrip().splitlines()[-lines:]
        cut = size > limit or len(text.rstrip().splitlines()) > lines
        return f"its stderr{' (the end)' if cut else ''}:\n" + "\n".join("  | " + line for line in kept)


# -- the implementation contract over the protocol --------------------------------------------------------------

#: what a hello may declare beside type, protocol, name and methods: the attributes a Python target declares
#: (rnnspec.spec.declared reads them), each as its JSON type
_DECLARED = {"cell": str, "cells": list, "dtypes": list, "activation": str, "activations": list, "variants": list,
             "accuracy": (str, int, float, dict), "device": str}


def check_hello(hello: dict, source: str) -> dict:
    """The declarations of a hello (the fields present; lists as tuples), or a :class:`HelloError` naming the
    field that is malformed. Whether the names are known is :func:`rnnspec.spec.declared.declared`'s check."""
    from rnnspec.spec.declared import METHODS

    known = {"type", "protocol", "name", "methods", *_DECLARED}
    unknown = sorted(set(hello) - known)
    if unknown:
        raise HelloError(f"{source}: its hello has unknown fields {unknown}; a hello may have {sorted(known)} "
                         "(docs/protocol.md)")
    if "name" in hello and not isinstance(hello["name"], str):
        raise HelloError(f"{source}: its hello's name is {hello['name']!r}, expected a string")
    methods = hello.get("methods", ["forward"])
    if not isinstance(methods, list) or not all(isinstance(m, str) for m in methods):
        raise HelloError(f"{source}: its hello's methods is {methods!r}, expected a list of names from {METHODS}")
    unknown = [m for m in methods if m not in METHODS]
    if unknown or "forward" not in methods:
        raise HelloError(f"{source}: its hello declares methods {methods}; expected 'forward' and any of "
                         f"{[m for m in METHODS if m != 'forward']} (unknown: {unknown})")
    out = {"methods": tuple(dict.fromkeys(methods))}
    for field, kind in _DECLARED.items():
        if field not in hello:
            continue
        value = hello[field]
        if not isinstance(value, kind) or isinstance(value, bool):
            wanted = {list: "array of strings", str: "string"}.get(kind, "name, number or object")
            raise HelloError(f"{source}: its hello's {field} is {json.dumps(value)}, expected a JSON {wanted}")
        if kind is list:
            if not all(isinstance(v, str) for v in value):
                raise HelloError(f"{source}: its hello's {field} is {json.dumps(value)}, expected an array of strings")
            value = tuple(value)
        out[field] = value
    return out


class ProcessTarget:
    """A program speaking docs/protocol.md as an implementation of the contract (docs/targets.md).

    Its cells, dtypes, activations, variants and accuracy are those its hello declares; it has ``forward``,
    and ``vjp`` and ``loss`` only where the hello lists them. Each call sends the arrays of the contract
    flat (``x``, the initial states, the parameters, ``cot_<state>``, ``targets``, ``lengths``) with the
    cell, activation and variant the suite set, in the dtype of ``x``.
    """

    def __init__(self, command: str | list[str], *, timeout: float | None = None, cwd: str | None = None) -> None:
        self.command = command
        self.client = ProcessClient(command, timeout=timeout, cwd=cwd)
        source = f"exec:{self.client.name}"
        try:
            hello = self.client.start()
        except ProcessError as exc:
            from rnnspec.spec.targets import TargetError

            self.client.close()
            raise TargetError(f"target {source!r}: {exc}") from None
        try:
            self._declared = check_hello(hello, f"target {source!r}")
        except HelloError as exc:
            from rnnspec.spec.targets import TargetError

            self.client.close()
            raise TargetError(str(exc)) from None
        self.methods = self._declared.pop("methods")
        for field, value in self._declared.items():
            setattr(self, field, value)
        from rnnspec.spec.declared import declarations

        # the suite sets cell and activation before each call where the target has them: give it the defaults
        defaults = declarations(self)
        cells = getattr(self, "cells", None)
        self.cell = cells[0] if isinstance(cells, tuple) and cells else defaults["cell"]
        self.activation = defaults["activation"]
        self.name = hello.get("name", self.client.name)
        # the class name in reports and usage errors says which program this is
        self.__class__ = _labelled(f"{self.client.name}: {self.name}" if "name" in hello else self.client.name)

    def __reduce__(self):
        return _rebuild, (self.command, self.client.timeout, self.client.cwd)

    def __getattr__(self, name: str):
        # forward, vjp and loss exist only where the hello declares them (the suite tests callable(getattr(...)))
        if name in ("forward", "vjp", "loss") and name in self.__dict__.get("methods", ()):
            return getattr(self, "_" + name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __repr__(self) -> str:
        return f"ProcessTarget({self.client.name!r})"

    def close(self) -> None:
        self.client.close()

    def _variant(self) -> str:
        """The variant's name from the attributes the suite set (``layers``, ``bidirectional``, ``lengths``, ...:
        the fields of :class:`~rnnspec.derivations.variants.Variant`; unset, the plain run's)."""
        from rnnspec.derivations.variants import Variant

        return Variant(**{f.name: getattr(self, f.name, f.default) for f in dataclasses.fields(Variant)}).name

    def _call(self, method: str, arrays: dict, lengths) -> dict[str, np.ndarray]:
        x = arrays["x"]
        if lengths is not None:
            arrays["lengths"] = np.asarray(lengths).astype(np.int64, copy=False)
        header = {"method": method, "cell": self.cell, "activation": self.activation, "variant": self._variant(),
                  "dtype": np.asarray(x).dtype.name}
        return self.client.call(header, arrays)

    def _forward(self, x, state0, params, lengths=None) -> dict[str, np.ndarray]:
        return self._call("forward", {"x": x, **state0, **params}, lengths)

    def _vjp(self, x, state0, params, cotangents, lengths=None) -> dict[str, np.ndarray]:
        cot = {"cot_" + k: v for k, v in cotangents.items()}
        return self._call("vjp", {"x": x, **state0, **params, **cot}, lengths)

    def _loss(self, x, state0, params, targets, lengths=None) -> tuple[object, dict[str, np.ndarray]]:
        out = self._call("loss", {"x": x, **state0, **params, "targets": np.asarray(targets).astype(np.int64)},
                         lengths)
        value = out.pop("value", None)  # a missing value is the clauses' "missing output", not a crash here
        return (value[()] if isinstance(value, np.ndarray) and value.shape == () else value), out


_LABELLED: dict[str, type] = {}


def _labelled(label: str) -> type:
    """A subclass of ProcessTarget whose qualified name carries the program (reports print the target's class)."""
    if label not in _LABELLED:
        _LABELLED[label] = type(ProcessTarget.__name__, (ProcessTarget,), {"__qualname__": f"ProcessTarget[{label}]",
                                                                           "__module__": __name__})
    return _LABELLED[label]


def _rebuild(command, timeout, cwd) -> ProcessTarget:
    return ProcessTarget(command, timeout=timeout, cwd=cwd)
