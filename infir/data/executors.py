"""Run one function over many shard tasks: inline, a local process pool, or Ray (local or a cluster).

Tasks must be deterministic per shard and write their own outputs, so every executor gives the same files.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from infir.utils.log import get_logger, progress

log = get_logger(__name__)


def run_tasks(
    fn: Callable[..., Any],
    tasks: Sequence[tuple],
    executor: str = "local",
    workers: int = 1,
    ray_address: str | None = None,
    label: str = "shards",
) -> list[Any]:
    """Call fn(*task) for every task; results in task order."""
    if not tasks:
        return []
    if executor == "ray":
        return _run_ray(fn, tasks, workers, ray_address)
    if executor != "local":
        raise ValueError(f"unknown executor '{executor}' (local or ray)")
    if workers <= 1 or len(tasks) == 1:
        results = []
        with progress() as bar:
            job = bar.add_task(label, total=len(tasks))
            for task in tasks:
                results.append(fn(*task))
                bar.advance(job)
        return results
    ctx = multiprocessing.get_context("fork" if hasattr(multiprocessing, "get_context") else None)
    with ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=ctx) as pool:
        futures = [pool.submit(fn, *task) for task in tasks]
        with progress() as bar:
            job = bar.add_task(label, total=len(tasks))
            results = []
            for f in futures:
                results.append(f.result())
                bar.advance(job)
    return results


def _run_ray(fn: Callable[..., Any], tasks: Sequence[tuple], workers: int, address: str | None) -> list[Any]:
    try:
        import ray
    except ImportError as e:
        raise RuntimeError("executor 'ray' needs the ray package: pip install 'infir[ray]'") from e
    if not ray.is_initialized():
        if address:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(num_cpus=max(workers, 1), include_dashboard=False, log_to_driver=False)
        log.info("ray: %s", ray.cluster_resources())
    remote = ray.remote(num_cpus=1)(fn)
    return ray.get([remote.remote(*task) for task in tasks])
