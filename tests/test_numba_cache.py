"""The kernels' compiled code is cached per version of their sources (rnnspec.kernels.numba_cache)."""

import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

from numba.core.dispatcher import Dispatcher

import rnnspec.kernels.cpu as cpu
from rnnspec.kernels import numba_cache
from rnnspec.kernels.numba_cache import cache_directory, source_digest


def test_every_cached_cpu_kernel_caches_under_the_digest_of_the_sources():
    found = []
    for info in pkgutil.iter_modules(cpu.__path__):
        module = importlib.import_module(f"rnnspec.kernels.cpu.{info.name}")
        for value in vars(module).values():
            cached = isinstance(value, Dispatcher) and hasattr(value._cache, "_cache_path")
            if cached and value.__module__ == module.__name__:
                found.append((value.__qualname__, value._cache._cache_path))
    assert len(found) > 30, found
    wrong = [(name, path) for name, path in found if not path.startswith(str(cache_directory()))]
    assert not wrong, wrong


def test_the_digest_follows_every_file(tmp_path):
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.py").write_text("y = 2\n")
    first = source_digest(tmp_path)
    (tmp_path / "sub" / "b.py").write_text("y = 3\n")
    assert source_digest(tmp_path) != first
    assert cache_directory(tmp_path).name == source_digest(tmp_path)


def test_the_digest_leaves_out_the_cuda_kernels_which_numba_never_caches(tmp_path):
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "cuda").mkdir()
    (tmp_path / "cuda" / "kernel.py").write_text("y = 2\n")
    first = source_digest(tmp_path)
    (tmp_path / "cuda" / "kernel.py").write_text("y = 3\n")
    assert source_digest(tmp_path) == first
    (tmp_path / "a.py").write_text("x = 2\n")
    assert source_digest(tmp_path) != first


def test_numbas_own_setting_is_left_as_it_was():
    code = "import numba.core.config as c; import rnnspec.kernels; print(repr(c.CACHE_DIR))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={k: v for k, v in __import__("os").environ.items() if k != "NUMBA_CACHE_DIR"})
    assert run.stdout.strip() == "''", run.stdout + run.stderr


def test_the_kernels_directory_is_the_one_their_code_was_bound_to_at_import(monkeypatch):
    """An edit while a process runs changes the digest of the files, not the directory the running kernels (and
    their tuning, kernels/cpu/tuning.py) use."""
    from rnnspec.kernels.cpu.blas import dot_into

    bound = Path(dot_into._cache._cache_path).parent
    assert cache_directory() == bound
    monkeypatch.setattr(numba_cache, "source_digest", lambda root=None: "edited")
    assert cache_directory() == bound


def _two_saves_at_once(cache_path):
    """Two threads save two keys of one function's cache into ``cache_path``, both reading the index before either
    writes it (Numba's own save, unlocked, then gives both the same data file); returns what each key loads."""
    import threading

    from numba.core.caching import IndexDataCacheFile

    files = [IndexDataCacheFile(str(cache_path), "f-1.py311", "stamp") for _ in range(2)]
    read, load = threading.Barrier(2, timeout=2), IndexDataCacheFile._load_index

    def slow_load(self):
        index = load(self)
        try:  # where the saves are not locked, both threads read the empty index here
            read.wait()
        except threading.BrokenBarrierError:  # locked: the other thread waits for this one's save to end
            pass
        return index

    IndexDataCacheFile._load_index = slow_load
    try:
        threads = [threading.Thread(target=f.save, args=(key, key)) for f, key in zip(files, ("float32", "float64"))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        IndexDataCacheFile._load_index = load
    return {key: files[0].load(key) for key in ("float32", "float64")}


def test_two_processes_saving_at_once_keep_each_signature_with_its_own_code(tmp_path):
    """Found when a fresh cache was filled by pytest's two workers: loops.project's float32 entry named the file
    its float64 code had been written to, and every float32 call failed ("can't unbox array"). Saves into the
    kernels' folder hold a lock (numba_cache.lock_saves); elsewhere Numba's own save shows the race this test sets
    up, so the test is seen to be able to fail."""
    numba_cache.lock_saves()
    kernels_own = tmp_path / numba_cache.FOLDER / "digest"
    kernels_own.mkdir(parents=True)
    assert _two_saves_at_once(kernels_own) == {"float32": "float32", "float64": "float64"}
    elsewhere = tmp_path / "other"
    elsewhere.mkdir()
    assert _two_saves_at_once(elsewhere) != {"float32": "float32", "float64": "float64"}
