"""The training data of a whole run as one deterministic stream of batches that can start at any step.

`tf.data`'s ``shuffle(reshuffle_each_iteration=True)`` draws epoch ``e``'s order from how many iterators
the dataset has made, so a run restarted at epoch ``e`` would see epoch 0's order again. Here the order
of pass ``p`` over the examples is ``stateless_shuffle(range(n), seed=(seed, p))``: a function of the
recipe seed and the pass number only, the same in every process and on every worker. A resumed run
re-creates the stream from the step it stopped at and sees exactly the batches it would have seen.

Two layouts, as ``fit`` had them:

* one pass per epoch (``wrap=False``): epoch ``e`` is pass ``e`` in ``ceil(n / batch_size)`` batches,
  the last one partial;
* a step budget per epoch below one pass (``wrap=True``, the recipe's ``training.steps_per_epoch``): the
  passes follow each other without a break and every batch is full; epoch ``e`` is batches
  ``[e·S, (e+1)·S)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from mtl_keras.data.base import Split
from mtl_keras.data.pipeline import model_inputs


@dataclass(frozen=True)
class StreamSpec:
    """What decides the batches: the examples' count, the batch size, the seed, the epoch layout."""

    num_examples: int
    batch_size: int
    seed: int
    steps_per_epoch: int
    wrap: bool

    @classmethod
    def for_split(
        cls, split: Split, batch_size: int, *, seed: int, steps_per_epoch: int | None = None
    ) -> StreamSpec:
        """One pass per epoch, or, when ``steps_per_epoch`` caps it below one pass, that many full batches."""
        return cls.for_size(len(split), batch_size, seed=seed, steps_per_epoch=steps_per_epoch)

    @classmethod
    def for_size(
        cls, n: int, batch_size: int, *, seed: int, steps_per_epoch: int | None = None
    ) -> StreamSpec:
        """As :meth:`for_split`, for ``n`` examples."""
        per_pass = math.ceil(n / batch_size)
        if steps_per_epoch is None or steps_per_epoch >= per_pass:
            return cls(n, batch_size, seed, per_pass, wrap=False)
        return cls(n, batch_size, seed, steps_per_epoch, wrap=True)

    def position(self, step: int) -> tuple[int, int]:
        """Global step → (epoch, step within the epoch)."""
        return divmod(step, self.steps_per_epoch)


def _tensors(split: Split) -> tuple[Any, dict[str, tf.Tensor]]:
    x = model_inputs(split.x)
    if isinstance(x, dict):
        x = {k: tf.constant(v.astype(str) if v.dtype.kind in "OU" else v) for k, v in x.items()}
    else:
        x = tf.constant(x)
    return x, {k: tf.constant(np.asarray(v)) for k, v in split.y.items()}


def training_stream(split: Split, spec: StreamSpec, *, epochs: int, start_step: int = 0) -> tf.data.Dataset:
    """The batches ``(x, {task: y})`` of global steps ``start_step, start_step + 1, …``.

    Finite (up to the end of epoch ``epochs - 1``) with one pass per epoch; endless with ``wrap``.
    """
    n, batch = spec.num_examples, spec.batch_size
    if len(split) != n:
        raise ValueError(f"Expected a split of {n} examples. Received {len(split)}.")
    seed = tf.constant(spec.seed, tf.int64)

    def order(pass_index: tf.Tensor) -> tf.data.Dataset:
        indices = tf.random.experimental.stateless_shuffle(
            tf.range(n, dtype=tf.int64), seed=tf.stack([seed, tf.cast(pass_index, tf.int64)])
        )
        return tf.data.Dataset.from_tensor_slices(indices)

    if spec.wrap:
        first_pass, offset = divmod(start_step * batch, n)
        indices = (
            tf.data.Dataset.range(first_pass, np.iinfo(np.int64).max)
            .flat_map(order)
            .skip(offset)
            .batch(batch)
        )
    else:
        first_epoch, skip = spec.position(start_step)
        indices = (
            tf.data.Dataset.range(first_epoch, epochs).flat_map(lambda e: order(e).batch(batch)).skip(skip)
        )
    data = _tensors(split)
    dataset = indices.map(
        lambda i: tf.nest.map_structure(lambda t: tf.gather(t, i), data),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    options = tf.data.Options()
    options.deterministic = True
    # Every worker builds the same stream and keeps its part of each global batch.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)


__all__ = ["StreamSpec", "training_stream"]
