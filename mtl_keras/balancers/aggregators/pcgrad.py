"""PCGrad: project each task gradient off the gradients it conflicts with."""

from __future__ import annotations

import tensorflow as tf

from mtl_keras.balancers.aggregators._common import active_rows, compiled, next_seed, step_counter
from mtl_keras.balancers.base import AGGREGATORS, Aggregator


def random_orders(num_tasks: int, seed: tf.Tensor) -> tf.Tensor:
    """(T, T-1) int32: row i is a random permutation of the tasks other than i (stateless, seeded)."""
    keys = tf.random.stateless_uniform([num_tasks, num_tasks], seed=seed, dtype=tf.float64)
    keys += 2.0 * tf.eye(num_tasks, dtype=tf.float64)  # task i itself sorts last
    return tf.argsort(keys, axis=-1)[:, : num_tasks - 1]


@AGGREGATORS.register("pcgrad")
class PCGrad(Aggregator):
    """Projecting Conflicting Gradients (Yu et al., "Gradient Surgery for Multi-Task Learning", NeurIPS 2020).

    For every task i, the other tasks j are visited in a random order (drawn per task and per call);
    whenever the current ``g_i`` conflicts with the ORIGINAL ``g_j`` (``g_iᵀ g_j < 0``) it is projected
    onto the normal plane of ``g_j``: ``g_i ← g_i − (g_iᵀ g_j / ‖g_j‖²) g_j``. The update is the SUM of the
    projected gradients (Algorithm 1 of the paper). The official TF1 code's shuffle
    bug is not reproduced: the orders are proper per-task permutations.

    Each projected ``g_i`` is kept as a combination of the original rows, so the loop works on the
    (T, T) Gram matrix and the P parameters are touched once, by the final ``weightsᵀ J``. A zero row
    (a task absent from the batch) is never projected against and stays zero.

    Args:
        seed: seeds the orders; call ``k`` of the aggregator uses the stateless seed ``(seed, k)``.
    """

    gramian_based = True
    randomised = True

    def __init__(self, *, seed: int | None = None) -> None:
        super().__init__()
        self.seed = seed

    def build(self, num_tasks: int) -> None:
        super().build(num_tasks)
        self.iterations = step_counter()

    def _row_weights(self, g: tf.Tensor) -> tf.Tensor:
        return pcgrad_weights(g, next_seed(self, self.iterations))


@compiled
def pcgrad_weights(g: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Row weights of the sum of the projected gradients, for the Gram matrix g and a (2,) seed."""
    t = int(g.shape[0])
    sq_norms = tf.linalg.diag_part(g)
    active = active_rows(g)
    orders = random_orders(t, seed)
    coeffs = tf.eye(t, dtype=tf.float64)  # row i: projected g_i in the basis of the original rows
    for k in range(t - 1):
        other = orders[:, k]
        dots = tf.reduce_sum(coeffs * tf.gather(g, other), axis=1)  # (current g_i)ᵀ g_j
        conflict = (dots < 0.0) & tf.gather(active, other)
        norms = tf.where(conflict, tf.gather(sq_norms, other), tf.ones_like(dots))
        coeffs -= tf.where(conflict, dots / norms, tf.zeros_like(dots))[:, None] * tf.one_hot(
            other, t, dtype=tf.float64
        )
    return tf.reduce_sum(coeffs, axis=0)
