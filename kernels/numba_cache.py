"""Where the kernels' compiled code is cached: one directory per version of the kernels' sources.

Numba checks a cached function against its own file's timestamp only. A function that calls one in another
file keeps its cached machine code, the old callee compiled into it, when only the callee's file changes
(Numba's documented limitation). Measured here: after lstm_peephole.py was edited and edited back,
lstm.backward kept running the edited step from its cache and returned wrong gradients, silently, in every
new process. So while the kernels are imported, Numba's cache directory is
``<NUMBA_CACHE_DIR, else XDG_CACHE_HOME, else ~/.cache>/rnnspec-numba/<digest of every kernel source>``:
any change to any kernel file gives a fresh directory (the CUDA kernels' files aside: nothing of theirs
is cached on disk). The setting is Numba's global one, so it is put
back as soon as the kernels' functions exist (each binds its cache location when it is decorated).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

from numba.core import config
from numba.core.caching import IndexDataCacheFile

try:
    import fcntl
except ImportError:  # not POSIX: saves as Numba makes them
    fcntl = None

#: the kernels' sources: this folder and every folder below it
ROOT = Path(__file__).parent
#: folders below ROOT whose code Numba never caches on disk (numba-cuda compiles at the first launch of
#: each process): left out of the digest, so that editing them keeps the CPU kernels' cache
UNCACHED = ("cuda",)
#: the folder under the cache's base that holds the kernels' caches (cache_directory)
FOLDER = "rnnspec-numba"


def source_digest(root: Path = ROOT) -> str:
    """A digest of every ``*.py`` under ``root`` but those in UNCACHED folders, names and contents."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        if path.relative_to(root).parts[0] in UNCACHED:
            continue
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


@functools.cache
def _kernels_digest() -> str:
    return source_digest(ROOT)


def cache_directory(root: Path = ROOT) -> Path:
    """``<NUMBA_CACHE_DIR, else XDG_CACHE_HOME, else ~/.cache>/rnnspec-numba/<digest of root's sources>``. For
    the kernels (ROOT) the digest is taken once a process, when they are imported: the directory stays the one
    their compiled code was bound to, and the tuning measured for it (kernels/cpu/tuning.py), whatever is
    edited while the process runs."""
    base = os.environ.get("NUMBA_CACHE_DIR") or os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / FOLDER / (_kernels_digest() if root == ROOT else source_digest(root))


def _save_under_lock(save):
    """Numba's IndexDataCacheFile.save, under an exclusive lock on the index where the cache is the kernels' own.

    Numba's save reads the index, picks the first free data file name, writes the index, then the data, with no
    lock: two processes compiling the same function's first two signatures at once (pytest's two workers, the
    suite's worker processes) both pick ``<name>.1.nbc``, and the index can end up naming for one signature the
    file the other wrote. Seen here: ``loops.project``'s float32 entry held its float64 code, and every later
    float32 call in every process failed with "can't unbox array". Loads need no lock (each file is replaced
    whole); a load that finds an entry whose data is not written yet compiles it again."""
    def locked(self, key, data):
        if FOLDER not in Path(self._cache_path).parts or fcntl is None:
            return save(self, key, data)
        with open(self._index_path + ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                return save(self, key, data)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    locked.rnnspec_locked = True
    return locked


def lock_saves() -> None:
    """Numba's cache saves under a lock (:func:`_save_under_lock`) for the kernels' cache folders; once a process,
    every other cache as Numba keeps it."""
    if not getattr(IndexDataCacheFile.save, "rnnspec_locked", False):
        IndexDataCacheFile.save = _save_under_lock(IndexDataCacheFile.save)


@contextlib.contextmanager
def keyed_by_source() -> Iterator[None]:
    """Numba's cache directory set to :func:`cache_directory` for the functions decorated inside, whose saves
    run under a lock (:func:`lock_saves`)."""
    lock_saves()
    before = config.CACHE_DIR
    config.CACHE_DIR = str(cache_directory())
    try:
        yield
    finally:
        config.CACHE_DIR = before
