"""The collectives of a training step under a ``tf.distribute`` strategy (no-ops on one replica)."""

from __future__ import annotations

from typing import Any

import tensorflow as tf


def num_replicas() -> int:
    """The number of replicas in sync (1 without a strategy)."""
    return int(tf.distribute.get_strategy().num_replicas_in_sync)


def all_reduce_sum(value: Any) -> Any:
    """``value`` (a tensor or a nest of tensors) summed over the replicas, in one batched all-reduce."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_reduce(tf.distribute.ReduceOp.SUM, value)


def all_gather_columns(local: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Concatenate (T, n_r) blocks of all replicas along columns; return (global, my offset, my size)."""
    size = tf.shape(local)[1]
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return local, tf.constant(0), size
    sizes = context.all_gather(tf.reshape(size, [1]), axis=0)
    replica = context.replica_id_in_sync_group
    offset = tf.reduce_sum(sizes[:replica])
    gathered = tf.reshape(context.all_gather(local, axis=1), [local.shape[0], -1])  # keep T static
    return gathered, offset, size
