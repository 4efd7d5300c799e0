"""Elastic weight consolidation (Kirkpatrick et al., PNAS 2017): a quadratic penalty keeping the weights
important to old tasks near their trained values while a new task trains.

The importance of weight j is the diagonal of the Fisher information of the old tasks at the trained
weights θ*, estimated on the old training data as the mean over examples of the squared per-example
gradient of the old tasks' negative log-likelihood (the *empirical* Fisher: with the examples' own labels;
tasks without a label on an example add nothing for it):

    F_j = (1/N) Σ_n (∂/∂θ_j Σ_t NLL_t(x_n, y_n))²,   penalty = (λ/2) Σ_j F_j (θ_j − θ*_j)².

The NLL of a binary task is the cross-entropy, of a multiclass task −log p_y, of a regression task
½ (y − ŷ)² (a unit-variance Gaussian, in standardised units when the task has a standardisation).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from mtl_keras.tasks import Task

EPSILON = 1e-7


def negative_log_likelihood(task: Task, y: Any, prediction: Any) -> tf.Tensor:
    """Per-example NLL (batch,) of ``task``; 0 where the label is missing (NaN)."""
    prediction = tf.cast(prediction, tf.float32)
    y = tf.reshape(tf.cast(y, tf.float32), [tf.shape(prediction)[0], -1])
    missing = tf.reduce_any(tf.math.is_nan(y), axis=-1)
    y = tf.where(tf.math.is_nan(y), tf.zeros_like(y), y)
    if task.kind == "multiclass":
        p = tf.clip_by_value(prediction, EPSILON, 1.0)
        nll = -tf.math.log(tf.gather(p, tf.cast(y[:, 0], tf.int32), axis=-1, batch_dims=1))
    elif task.kind == "binary":
        p = tf.clip_by_value(tf.reshape(prediction, tf.shape(y)), EPSILON, 1.0 - EPSILON)
        nll = -tf.reduce_sum(y * tf.math.log(p) + (1.0 - y) * tf.math.log1p(-p), axis=-1)
    else:
        scale = task.label_std if task.label_std is not None else 1.0
        nll = 0.5 * tf.reduce_sum(tf.square((tf.reshape(prediction, tf.shape(y)) - y) / scale), axis=-1)
    return tf.where(missing, tf.zeros_like(nll), nll)


def diagonal_fisher(
    model: Any,
    tasks: Sequence[Task],
    batches: Iterable[Any],
    variables: Sequence[Any],
    *,
    max_examples: int = 1024,
) -> list[np.ndarray]:
    """The empirical Fisher diagonal of ``tasks`` for ``variables`` over up to ``max_examples`` examples of
    ``batches`` (``(x, {task: y})`` pairs), one array per variable."""
    sums = [np.zeros(tuple(v.shape), dtype=np.float64) for v in variables]

    @tf.function(reduce_retracing=True)
    def squared_gradients(x: Any, y: Any, take: tf.Tensor) -> list[tf.Tensor]:
        # one traced graph for every batch (a pfor Jacobian retraced per batch is slow)
        with tf.GradientTape() as tape:
            outputs = model(x, training=False)
            per_example = tf.add_n([negative_log_likelihood(t, y[t.name], outputs[t.name]) for t in tasks])
        jacobians = tape.jacobian(per_example, [v.value for v in variables])
        kept = tf.cast(tf.range(tf.shape(per_example)[0]) < take, tf.float32)
        return [
            tf.zeros(tuple(v.shape)) if j is None else tf.tensordot(kept, tf.square(j), axes=1)
            for v, j in zip(variables, jacobians, strict=True)
        ]

    count = 0
    for batch in batches:
        x, y = batch[0], batch[1]
        n = int(tf.nest.flatten(x)[0].shape[0])
        take = min(n, max_examples - count)
        for k, value in enumerate(squared_gradients(x, y, tf.constant(take))):
            sums[k] += value.numpy().astype(np.float64)
        count += take
        if count >= max_examples:
            break
    if count == 0:
        raise ValueError("Expected at least one example to estimate the Fisher information. Received none.")
    return [(s / count).astype(np.float32) for s in sums]


class EWCPenalty:
    """``(λ/2) Σ F (θ − θ*)²`` over ``variables`` as a loss term (``compile(extra_losses=[...])``).

    Args:
        variables: the protected variables θ (their current values are taken as θ*, unless ``anchors``).
        fisher: one Fisher-diagonal array per variable (:func:`diagonal_fisher`).
        strength: λ.
        anchors: θ* (default: the variables' values now).
    """

    def __init__(
        self,
        variables: Sequence[Any],
        fisher: Sequence[Any],
        *,
        strength: float = 1.0,
        anchors: Sequence[Any] | None = None,
    ) -> None:
        if len(fisher) != len(variables):
            raise ValueError(
                f"Expected one Fisher array per variable ({len(variables)}). Received: {len(fisher)}."
            )
        if not strength >= 0:
            raise ValueError(
                f"Expected `strength` to be a non-negative number. Received: strength={strength!r}"
            )
        self.variables = list(variables)
        values = anchors if anchors is not None else [np.array(v.numpy()) for v in self.variables]
        self.anchors = [tf.constant(a, tf.float32) for a in values]
        self.fisher = [tf.constant(f, tf.float32) for f in fisher]
        self.strength = float(strength)

    def __call__(self, x: Any = None, labels: Any = None, predictions: Any = None) -> tf.Tensor:
        terms = [
            tf.reduce_sum(f * tf.square(tf.cast(v.value, tf.float32) - a))
            for v, a, f in zip(self.variables, self.anchors, self.fisher, strict=True)
        ]
        return 0.5 * self.strength * tf.add_n(terms) if terms else tf.constant(0.0)


__all__ = ["EWCPenalty", "diagonal_fisher", "negative_log_likelihood"]
