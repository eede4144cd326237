"""The Ray engine (``--engine ray [--address ADDR]``; ``pip install 'rnnspec[ray]'``): each unit a Ray task.

A task runs :func:`~rnnspec.spec.units.run_unit` on some node, which calls the target in a worker process of its own
as any run does (timeouts, crash isolation). A task lost with its node is run again by Ray (``max_retries``);
an exception inside a unit is not retried by Ray (the unit failed: rerunning the command retries it). A target that
refuses to be built (its own TargetError) is the task's result, not an exception, so Ray runs it once, and the
driver keeps it as the local engine does (:func:`~rnnspec.spec.engines.settle`: a matrix's refusal row). Only this
process (the driver) writes records, once per unit, as each task's result arrives: a retried task's result
arrives once.

Placing units where their framework is: when the cluster declares any custom resource named ``pkg:NAME`` (``ray
start --resources '{"pkg:torch": 1000}'`` on the nodes whose environment has torch), a unit whose target needs
packages (a matrix row's, :attr:`rnnspec.spec.matrix.Row.packages`) asks for a thousandth of ``pkg:NAME`` for
each, so it runs only on such nodes; a cluster that declares none is taken to have every framework everywhere.
"""

from __future__ import annotations

from collections.abc import Callable

from rnnspec.spec.declared import UsageError

#: Ray runs a task again this many times when its node (or worker) is lost
MAX_RETRIES = 3
RESOURCE_PREFIX = "pkg:"


def _ray():
    try:
        import ray
    except ImportError:
        raise UsageError("--engine ray: Ray is not installed here (pip install 'rnnspec[ray]')") from None
    return ray


def resources(packages: tuple[str, ...], declared: set[str]) -> dict[str, float]:
    """The custom resources a unit needing ``packages`` asks for, on a cluster declaring ``declared``."""
    if not any(name.startswith(RESOURCE_PREFIX) for name in declared):
        return {}
    return {f"{RESOURCE_PREFIX}{p}": 0.001 for p in packages}


def run_on_ray(pending: list, store, progress, failures: list[str], address: str | None,
               requirements: Callable[[object], tuple[str, ...]] | None,
               refusals: dict[str, str] | None = None) -> None:
    """Run ``pending`` units as Ray tasks at ``address`` (None: a Ray started here for the run), storing each record
    as it arrives and counting it in ``progress``; append to ``failures`` what failed; a target's refusal goes to
    ``refusals`` where given (:func:`~rnnspec.spec.engines.execute`)."""
    ray = _ray()
    from rnnspec.spec.engines import _named, settle

    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        declared = set(ray.cluster_resources())
        progress.parallel = max(1, int(ray.cluster_resources().get("CPU", 1)))  # for the ETA: units run at once
        task = ray.remote(_named).options(num_cpus=1, max_retries=MAX_RETRIES, retry_exceptions=False)
        refs = {}
        for unit in pending:
            needs = resources(requirements(unit) if requirements else (), declared)
            missing = [r for r in needs if r not in declared]
            if missing:
                failures.append(f"{unit.describe()}: no node of the cluster declares {missing} (its target needs "
                                f"them; ray start --resources on nodes whose environment has them)")
                progress.finished(0.0, ok=False)
                continue
            refs[task.options(resources=needs).remote(unit.to_json()) if needs else task.remote(unit.to_json())] = unit
        while refs:
            done, _ = ray.wait(list(refs), num_returns=1)
            for ref in done:
                try:
                    outcome = ray.get(ref)
                except Exception as exc:  # lost more than MAX_RETRIES times, or the task could not start
                    outcome = None, f"{type(exc).__name__}: {exc}", 0.0
                settle(refs.pop(ref), outcome, store, progress, failures, refusals)
    finally:
        if started:
            ray.shutdown()
