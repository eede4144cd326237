"""Engines that run a plan's units: here, one after another (``workers=1``); in ``workers`` local processes; or
as Ray tasks (:mod:`rnnspec.spec.ray_engine`). Each unit still calls the target in a worker process of its own
(:class:`~rnnspec.spec.runner.Session`: timeouts and crash isolation as in any run); only this process writes
records, each once, as the unit finishes.

``shard=(K, N)`` runs the units whose index in the plan is K-1 modulo N: the units never depend on N, so N shards
together run each unit of the plan exactly once (``rnnspec merge`` puts their folders together).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from rnnspec.spec.declared import UsageError
from rnnspec.spec.progress import UnitProgress
from rnnspec.spec.store import MemoryStore
from rnnspec.spec.targets import TargetError
from rnnspec.spec.units import Unit, close_sessions, run_unit

ENGINES = ("local", "ray")


class RunError(Exception):
    """Units that could not run (the target would not load, a worker process was lost...): the others are stored,
    and rerunning the command runs these again."""


def parse_shard(text: str) -> tuple[int, int]:
    """``K/N`` with 1 <= K <= N, or a UsageError naming --shard."""
    try:
        k, n = (int(p) for p in text.split("/"))
    except ValueError:
        raise UsageError(f"--shard: expected K/N (e.g. 2/3, the 2nd of 3 slices), got {text!r}") from None
    if not 1 <= k <= n:
        raise UsageError(f"--shard: expected K/N with 1 <= K <= N, got {text!r}")
    return k, n


def check_shard(shard: tuple[int, int] | None, results: str | None) -> None:
    """A usage error for a shard whose units would be kept nowhere (a shard's results are merged later)."""
    if shard is not None and results is None:
        raise UsageError(f"--shard {shard[0]}/{shard[1]}: give --results DIR too: a shard's results are merged "
                         "later with the other shards' (rnnspec merge)")


def selected(units: list[Unit], shard: tuple[int, int] | None) -> list[Unit]:
    if shard is None:
        return list(units)
    k, n = shard
    return [u for i, u in enumerate(units) if i % n == k - 1]


def _named(unit_json: dict) -> tuple[dict | None, str, float]:
    """In a pool process: the unit's record, or why it could not run."""
    from rnnspec.spec.worker import Refused

    start = time.monotonic()
    try:
        return run_unit(Unit.from_json(unit_json)), "", time.monotonic() - start
    except Refused as exc:  # the target's own refusal: a result of the unit for a caller that keeps refusals
        return {"refused": str(exc)}, "", time.monotonic() - start
    except Exception as exc:  # the unit fails, the run goes on; rerunning retries it
        return None, f"{type(exc).__name__}: {exc}", time.monotonic() - start


def settle(unit: Unit, outcome: tuple[dict | None, str, float], store: MemoryStore, progress: UnitProgress,
           failures: list[str], refusals: dict[str, str] | None) -> None:
    """Keep what :func:`_named` gave for ``unit`` in another process (a pool process, a Ray task): its record, stored;
    its target's refusal, in ``refusals`` by unit key and not stored (a failure where the caller keeps no
    refusals); or why it failed, in ``failures``. Counts it in ``progress``."""
    record, problem, seconds = outcome
    if record is not None and "refused" in record:
        if refusals is not None:
            refusals[unit.key] = record["refused"]
            progress.finished(seconds)
            return
        record, problem = None, f"Refused: {record['refused']}"
    if record is None:
        failures.append(f"{unit.describe()}: {problem}")
        progress.finished(seconds, ok=False)
    else:
        store.put(unit, record)
        progress.finished(record["seconds"])


def execute(units: list[Unit], store: MemoryStore, *, engine: str = "local", workers: int = 1,
            address: str | None = None, shard: tuple[int, int] | None = None, impl=None,
            cases: Callable[[Unit], list] | None = None, on_case=None, stream=None,
            requirements: Callable[[Unit], tuple[str, ...]] | None = None,
            refusals: dict[str, str] | None = None) -> UnitProgress:
    """Run the units of ``units`` (of this ``shard``) whose record ``store`` lacks, storing each record as its unit
    finishes. ``impl``: the implementation object, for units run here (``workers=1``); ``cases(unit)``: the case
    list already drawn for a unit, if any. ``requirements(unit)``: the packages a unit's target needs (Ray sends
    it only to nodes that have them). ``refusals``: where given, a unit whose target refuses to be built
    (:class:`~rnnspec.spec.worker.Refused`) is not a failure: its reason goes there, by unit key, and is not stored
    (installing what was missing and rerunning runs it). Raises :class:`RunError` naming the units that failed,
    after running the others. Returns the progress counts."""
    if engine not in ENGINES:
        raise UsageError(f"--engine: expected one of {ENGINES}, got {engine!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise UsageError(f"workers must be a positive whole number of processes, got {workers!r}")
    mine = selected(units, shard)
    pending = [u for u in mine if not store.has(u)]
    progress = UnitProgress(len(mine), len(mine) - len(pending), workers, stream)
    failures: list[str] = []
    if pending:
        progress.show()
    try:
        _run(pending, store, progress, failures, engine, workers, address, impl, cases, on_case, requirements,
             refusals)
    finally:
        close_sessions()
    if failures:
        raise RunError(f"{len(failures)} of {len(mine)} units failed (the others are stored; rerun the same "
                       "command to run these again):\n  " + "\n  ".join(failures))
    return progress


def _run(pending, store, progress, failures, engine, workers, address, impl, cases, on_case, requirements,
         refusals) -> None:
    from rnnspec.spec.worker import Refused

    if engine == "ray":
        from rnnspec.spec.ray_engine import run_on_ray

        run_on_ray(pending, store, progress, failures, address, requirements, refusals)
    elif workers == 1:
        for unit in pending:
            began = time.monotonic()
            try:
                record = run_unit(unit, impl, cases(unit) if cases else None, on_case)
            except Refused as exc:
                if refusals is None:
                    if len(pending) == 1:
                        raise
                    failures.append(f"{unit.describe()}: {type(exc).__name__}: {exc}")
                    progress.finished(time.monotonic() - began, ok=False)
                else:
                    refusals[unit.key] = str(exc)
                    progress.finished(time.monotonic() - began)
                continue
            except (TargetError, UsageError) as exc:  # anything else is a bug of rnnspec's: raised with its traceback
                if len(pending) == 1:
                    raise  # a run of one unit fails as a check always did: with the target's own error
                failures.append(f"{unit.describe()}: {type(exc).__name__}: {exc}")
                progress.finished(time.monotonic() - began, ok=False)
                continue
            store.put(unit, record)
            progress.finished(record["seconds"])
    else:
        if impl is not None:
            raise UsageError("workers > 1 run the target in other processes: give it by name (a TargetName, as "
                             "on the command line), not as an object")
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        # spawned: a forked pool process would inherit whatever this process imported (CUDA, thread pools)
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(_named, u.to_json()): u for u in pending}
            for future in as_completed(futures):
                try:
                    outcome = future.result()
                except Exception as exc:  # the pool process itself was lost
                    outcome = None, f"{type(exc).__name__}: {exc}", 0.0
                settle(futures[future], outcome, store, progress, failures, refusals)
