"""GradVac: raise the cosine of conflicting task gradients to an adaptive (EMA) target."""

from __future__ import annotations

from typing import Annotated, Any

import tensorflow as tf
from annotated_types import Interval

from mtl_keras.balancers.aggregators._common import (
    active_rows,
    compiled,
    next_seed,
    small_matvec,
    step_counter,
)
from mtl_keras.balancers.aggregators.pcgrad import random_orders
from mtl_keras.balancers.base import AGGREGATORS, Aggregator, state_variable

#: Targets this close to ±1 make the vaccine coefficient blow up (1 − φ̂² in a denominator): skip them.
_MIN_TARGET_GAP = 1e-12


@AGGREGATORS.register("gradvac")
class GradVac(Aggregator):
    """Gradient Vaccine (Wang et al., "Gradient Vaccine: Investigating and Improving Multi-task
    Optimization in Massively Multilingual Models", ICLR 2021), on the whole shared gradient.

    Keeps a target cosine ``φ̂_ij`` per ordered task pair (state, initialised to 0). For every task i and
    every other task j in a random order (per task and per call, as PCGrad), with ``φ_ij`` the cosine of
    the current ``g_i`` and the original ``g_j``: if ``φ_ij < φ̂_ij``,

        g_i ← g_i + ‖g_i‖ (φ̂_ij √(1 − φ_ij²) − φ_ij √(1 − φ̂_ij²)) / (‖g_j‖ √(1 − φ̂_ij²)) · g_j,

    which sets their cosine to ``φ̂_ij``; then ``φ̂_ij ← (1 − β) φ̂_ij + β φ_ij`` (Algorithm 1 of the paper:
    the EMA is updated for every visited pair; LibMTL before its commit d2d84fa of 2024-02-15 updated it
    only when the condition held, so its targets could only decrease, and that commit changed it). The update is the sum of the modified gradients. With all targets at 0
    (the first call) this is PCGrad.

    A pair involving a zero row (absent task) is skipped: no change and no target update. Targets with
    ``1 − φ̂² ≤ 1e-12`` are not applied (the coefficient is unbounded there). The paper's per-layer
    granularity is not implemented: J is treated as one block.

    Args:
        beta: EMA rate of the targets (the paper's 1e-2).
        seed: seeds the orders; call ``k`` uses the stateless seed ``(seed, k)``.
    """

    gramian_based = True
    randomised = True

    def __init__(
        self, *, beta: Annotated[float, Interval(gt=0, le=1)] = 0.01, seed: int | None = None
    ) -> None:
        super().__init__()
        self.seed = seed
        if not 0.0 < beta <= 1.0:
            raise ValueError(f"Expected `beta` to be in (0, 1]. Received: beta={beta}")
        self.beta = float(beta)

    def build(self, num_tasks: int) -> None:
        super().build(num_tasks)
        self.iterations = step_counter()
        self.targets = state_variable(tf.zeros([num_tasks, num_tasks]), name="cosine_targets")

    def _row_weights(self, g: tf.Tensor) -> tf.Tensor:
        weights, targets = gradvac_weights(
            g,
            tf.cast(self.targets.read_value(), tf.float64),
            next_seed(self, self.iterations),
            tf.constant(self.beta, tf.float64),
        )
        self.targets.assign(tf.cast(targets, self.targets.dtype))
        return weights

    def get_config(self) -> dict[str, Any]:
        return {"beta": self.beta, **super().get_config()}


@compiled
def gradvac_weights(
    g: tf.Tensor, targets: tf.Tensor, seed: tf.Tensor, beta: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor]:
    """Row weights of the sum of the vaccinated gradients and the updated (T, T) cosine targets."""
    t = int(g.shape[0])
    sq_norms = tf.linalg.diag_part(g)
    active = active_rows(g)
    orders = random_orders(t, seed)
    rows = tf.range(t)
    coeffs = tf.eye(t, dtype=tf.float64)  # row i: modified g_i in the basis of the original rows
    for k in range(t - 1):
        other = orders[:, k]
        pair = tf.stack([rows, other], axis=1)
        dots = tf.reduce_sum(coeffs * tf.gather(g, other), axis=1)
        own = tf.reduce_sum(coeffs * small_matvec(g, coeffs), axis=1)  # ‖current g_i‖² (g symmetric)
        valid = active & tf.gather(active, other) & (own > 0.0)
        denominator = tf.where(valid, tf.sqrt(own * tf.gather(sq_norms, other)), tf.ones_like(own))
        cosine = tf.clip_by_value(tf.where(valid, dots / denominator, 0.0), -1.0, 1.0)
        target = tf.gather_nd(targets, pair)
        gap = tf.sqrt(tf.maximum(1.0 - target**2, 0.0))
        apply = valid & (cosine < target) & (gap**2 > _MIN_TARGET_GAP)
        ratio = tf.sqrt(own / tf.where(valid, tf.gather(sq_norms, other), tf.ones_like(own)))
        coefficient = ratio * (target * tf.sqrt(1.0 - cosine**2) - cosine * gap)
        coefficient /= tf.where(apply, gap, tf.ones_like(gap))
        coeffs += tf.where(apply, coefficient, 0.0)[:, None] * tf.one_hot(other, t, dtype=tf.float64)
        moved = (1.0 - beta) * target + beta * cosine
        targets = tf.tensor_scatter_nd_update(targets, pair, tf.where(valid, moved, target))
    return tf.reduce_sum(coeffs, axis=0), targets
