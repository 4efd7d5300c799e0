"""Strategy selection: one place where models, optimizers and balancer state are created in scope.

``default`` is one device, ``mirrored`` every local GPU (or the named ``devices``; the CPU when there is no
GPU), ``multi_worker`` a `tf.distribute.MultiWorkerMirroredStrategy` over the cluster described by the
``TF_CONFIG`` environment variable. :func:`worker_role` tells a multi-worker process whether it is the chief
(the only one that writes), and :func:`agree` checks that all workers took the same decision.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import tensorflow as tf

T = TypeVar("T")

logger = logging.getLogger("mtl_keras")


def _default(devices: Sequence[str] | None, collective_timeout: float | None) -> tf.distribute.Strategy:
    if devices:
        raise ValueError(
            "The default strategy runs on one device; `devices` is for `mirrored`. "
            f"Received: devices={list(devices)}"
        )
    return tf.distribute.get_strategy()


def _mirrored(devices: Sequence[str] | None, collective_timeout: float | None) -> tf.distribute.Strategy:
    return tf.distribute.MirroredStrategy(list(devices) if devices else None)


def _multi_worker(devices: Sequence[str] | None, collective_timeout: float | None) -> tf.distribute.Strategy:
    if devices:
        raise ValueError(
            "`multi_worker` uses every local GPU of every worker; `devices` is for `mirrored`. "
            f"Received: devices={list(devices)}"
        )
    if "TF_CONFIG" not in os.environ:
        logger.warning("multi_worker: TF_CONFIG is not set, so this process trains alone (one worker).")
    else:
        _check_tf_config(os.environ["TF_CONFIG"])
    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=collective_timeout)
    return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)


#: Strategy name → factory ``(devices, collective_timeout) -> strategy``.
STRATEGIES: dict[str, Callable[[Sequence[str] | None, float | None], tf.distribute.Strategy]] = {
    "default": _default,
    "mirrored": _mirrored,
    "multi_worker": _multi_worker,
}


def make_strategy(
    name: str = "default",
    *,
    devices: Sequence[str] | None = None,
    collective_timeout: float | None = None,
) -> tf.distribute.Strategy:
    """The strategy called ``name`` (a key of :data:`STRATEGIES`).

    Args:
        name: ``"default"``, ``"mirrored"`` or ``"multi_worker"``.
        devices: for ``mirrored``, the devices to replicate on (e.g. ``["/gpu:0", "/gpu:1"]``).
        collective_timeout: for ``multi_worker``, seconds after which a collective that has not finished
            fails with ``DeadlineExceededError`` (None: no timeout; a dead worker is still detected by the
            coordination service's heartbeats).
    """
    if name not in STRATEGIES:
        raise ValueError(f"Unknown strategy {name!r}. Expected one of {sorted(STRATEGIES)}.")
    return STRATEGIES[name](devices, collective_timeout)


def strategy_from_recipe(distribute: dict[str, Any]) -> tf.distribute.Strategy:
    """The strategy of a validated recipe's ``distribute`` section."""
    return make_strategy(
        distribute["strategy"],
        devices=distribute.get("devices"),
        collective_timeout=distribute.get("collective_timeout"),
    )


def in_scope(strategy: tf.distribute.Strategy, build: Callable[[], T]) -> T:
    """Run ``build`` (which creates the model, compiles it, builds its balancer or optimizer, restores a
    checkpoint) inside ``strategy.scope()``: the one place where training state is created."""
    with strategy.scope():
        return build()


# --- workers ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerRole:
    """Where this process stands in its cluster: only the ``chief`` writes checkpoints, reports, exports."""

    chief: bool
    name: str
    num_workers: int


def worker_role(strategy: tf.distribute.Strategy) -> WorkerRole:
    """This process's role: the chief unless ``strategy`` spans several workers.

    With a ``chief`` task in ``TF_CONFIG`` the chief is that task; without one, worker 0 is.
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().jobs:
        return WorkerRole(True, "single process", 1)
    spec = resolver.cluster_spec()
    workers = sum(spec.num_tasks(job) for job in spec.jobs if job in ("chief", "worker"))
    task_type, task_id = resolver.task_type, int(resolver.task_id or 0)
    chief = task_type == "chief" if "chief" in spec.jobs else (task_type == "worker" and task_id == 0)
    return WorkerRole(chief, f"{task_type} {task_id}", workers)


def agree(strategy: tf.distribute.Strategy, value: int, what: str) -> int:
    """Check that every worker holds the same ``value``; raise a clear error when they do not.

    A decision taken from files (a checkpoint's step, a cached result) must be the same on every worker,
    or the workers run different collectives and hang. One-process strategies return ``value`` unchanged.
    """
    if worker_role(strategy).num_workers == 1:
        return value

    def gather() -> tf.Tensor:
        return tf.distribute.get_replica_context().all_gather(tf.constant([value], tf.int64), axis=0)

    values = strategy.experimental_local_results(strategy.run(tf.function(gather)))[0].numpy()
    low, high = int(values.min()), int(values.max())
    if high != low:
        raise RuntimeError(
            f"The workers disagree about {what} (values from {low} to {high}). Every worker reads the "
            "output directory: it must be on storage shared by all workers (or copied to each of them)."
        )
    return value


def _check_tf_config(raw: str) -> None:
    try:
        config = json.loads(raw)
        cluster, task = config["cluster"], config["task"]
        task["type"], int(task["index"])
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(
            "Expected TF_CONFIG to be JSON like "
            '{"cluster": {"worker": ["host1:port", "host2:port"]}, "task": {"type": "worker", "index": 0}}. '
            f"Received: {raw!r} ({error})"
        ) from None
    if not isinstance(cluster, dict) or not any(cluster.get(k) for k in ("worker", "chief")):
        raise ValueError(
            f"Expected TF_CONFIG's cluster to list `worker` (and optionally `chief`) addresses. Received: {raw!r}"
        )


__all__ = [
    "STRATEGIES",
    "WorkerRole",
    "agree",
    "in_scope",
    "make_strategy",
    "strategy_from_recipe",
    "worker_role",
]
