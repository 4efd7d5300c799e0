"""MoDo: task weights kept across steps, moved by one projected-gradient step of MGDA's objective per step."""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from mtl_keras.balancers.aggregators._common import active_rows, compiled, small_matvec
from mtl_keras.balancers.base import AGGREGATORS, Aggregator, state_variable
from mtl_keras.option_types import NonNegativeFloat, PositiveFloat


def project_to_simplex(v: tf.Tensor, mask: tf.Tensor, mass: tf.Tensor) -> tf.Tensor:
    """Euclidean projection of the entries of v where ``mask`` is 1 onto ``{x ≥ 0, Σ x = mass}`` (sorting
    method); 0 elsewhere. ``mass`` > 0 and at least one entry masked."""
    num = v.shape[0]
    masked = tf.where(mask > 0, v, tf.fill(tf.shape(v), tf.constant(-1e300, v.dtype)))
    ordered = tf.sort(masked, direction="DESCENDING")
    count = tf.reduce_sum(mask)
    ks = tf.range(1, num + 1, dtype=v.dtype)
    sums = tf.cumsum(tf.where(ks <= count, ordered, tf.zeros_like(ordered)))
    valid = (ks <= count) & (ordered - (sums - mass) / ks > 0)
    rho = tf.reduce_max(tf.where(valid, tf.range(num), tf.zeros([num], tf.int32)))
    theta = (tf.gather(sums, rho) - mass) / tf.cast(rho + 1, v.dtype)
    return tf.maximum(v - theta, 0.0) * mask


def projected_weight_step(
    g: tf.Tensor, weights: tf.Tensor, mask: tf.Tensor, gamma: tf.Tensor, rho: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor]:
    """``(row weights, new state)``: ``λ ← Π(λ − γ (G + ρ I) λ)`` over the tasks where ``mask`` is 1 (only
    their rows and columns of G are used), the others keeping their share; the row weights are the
    present tasks' λ rescaled to sum 1 (all zero when no task is present). Shared with MoCo, which takes
    the step on the Gram matrix of its tracked Jacobian."""
    absent_mass = tf.reduce_sum(weights * (1.0 - mask))
    mass = 1.0 - absent_mass
    any_active = (tf.reduce_sum(mask) > 0) & (mass > 0)
    masked = g * mask[:, None] * mask[None, :]
    moved = weights - gamma * (small_matvec(masked, weights * mask) + rho * weights)
    safe_mass = tf.where(any_active, mass, tf.ones_like(mass))
    projected = project_to_simplex(moved, mask, safe_mass)
    state = tf.where(any_active, projected + weights * (1.0 - mask), weights)
    row = tf.where(any_active, projected / safe_mass, tf.zeros_like(mask))
    return row, state


@compiled
def modo_step(
    g: tf.Tensor, weights: tf.Tensor, gamma: tf.Tensor, rho: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor]:
    """``(row weights, new state)`` of :func:`projected_weight_step` on the step's G, the absent tasks
    (zero rows) masked out."""
    return projected_weight_step(g, weights, tf.cast(active_rows(g), tf.float64), gamma, rho)


@AGGREGATORS.register("modo")
class MoDo(Aggregator):
    """MoDo, Multi-objective gradient with Double sampling (Chen, Kwok, Chen, "Three-Way Trade-Off in
    Multi-Objective Learning: Optimization, Generalization and Conflict-Avoidance", NeurIPS 2023).

    Keeps task weights λ on the simplex (state, initialised to 1/T) and, at every step, moves them by one
    projected-gradient step on MGDA's objective ½‖Jᵀλ‖² (with a ρ‖λ‖²/2 regulariser) before using them:

        λ ← Π_simplex(λ − γ (G + ρ I) λ),      d = Jᵀ λ

    The paper estimates G with two independent mini-batches and the update with a third, so that the
    stochastic λ-step is unbiased (double sampling). Here one batch serves for both (the same-batch
    approximation, as for SDMGrad): G is the step's Gram matrix. γ acts on the raw G, so its scale is that
    of 1/‖g_i‖² (as in the paper). With γ small the weights move slowly, so the update stays close to
    the equal-weights update early in training and tracks MGDA's weights later.

    Absent tasks (zero rows) keep their weight in the state and are left out of the step: the present
    tasks' weights are projected onto the simplex of their own share and rescaled to sum 1 for the update.
    The weights are saved with the model (a ``tf.Variable``, as GradVac's targets). All-zero J gives a zero
    update and leaves the state unchanged.

    Args:
        gamma: step size γ > 0 of the weights (LibMTL's default 0.1).
        rho: regularisation ρ ≥ 0 of the weight subproblem (LibMTL's default 0.1).
    """

    gramian_based = True

    def __init__(self, *, gamma: PositiveFloat = 0.1, rho: NonNegativeFloat = 0.1) -> None:
        super().__init__()
        if not 0.0 < gamma < float("inf"):
            raise ValueError(f"Expected `gamma` to be a positive finite number. Received: gamma={gamma}")
        if not 0.0 <= rho < float("inf"):
            raise ValueError(f"Expected `rho` to be a non-negative finite number. Received: rho={rho}")
        self.gamma = float(gamma)
        self.rho = float(rho)

    def build(self, num_tasks: int) -> None:
        super().build(num_tasks)
        self.task_weights = state_variable(tf.fill([num_tasks], 1.0 / num_tasks), name="modo_weights")

    def _row_weights(self, g: tf.Tensor) -> tf.Tensor:
        row, state = modo_step(
            g,
            tf.cast(self.task_weights.read_value(), tf.float64),
            tf.constant(self.gamma, tf.float64),
            tf.constant(self.rho, tf.float64),
        )
        self.task_weights.assign(tf.cast(state, self.task_weights.dtype))
        return row

    def get_config(self) -> dict[str, Any]:
        return {"gamma": self.gamma, "rho": self.rho, **super().get_config()}
