"""FairGrad: α-fair allocation of the update among the tasks, the positive solution of (G w)_i = w_i^(−1/α)."""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from mtl_keras.balancers.aggregators._common import (
    active_rows,
    compiled,
    decouple,
    normalize,
    small_matvec,
    small_solve,
)
from mtl_keras.balancers.base import AGGREGATORS, Aggregator
from mtl_keras.option_types import PositiveFloat

#: Relative ridge: every diagonal entry of G is multiplied by 1 + _RIDGE. It keeps w finite when 0 is in the
#: convex hull of the gradients (the equation then has no positive solution) and moves it by a relative
#: ~1e-10 otherwise, also for a task whose gradient is much shorter than the others'.
_RIDGE = 1e-10
#: Step sizes tried at once by the backtracking line search: 1, 1/2, ..., 2^-(_HALVINGS - 1).
_HALVINGS = 40
_ARMIJO = 1e-4


def _utility(beta: tf.Tensor, alpha: tf.Tensor) -> tf.Tensor:
    """Σ_i φ(β_i) with φ' = β^(−1/α), over the last axis: (β^p − 1)/p with p = 1 − 1/α, log β at α = 1 (its
    limit), so α can stay a tensor and one compiled solver serves every α."""
    power = 1.0 - 1.0 / alpha
    is_log = tf.abs(power) < 1e-12
    safe = tf.where(is_log, tf.ones_like(power), power)
    values = tf.where(is_log, tf.math.log(beta), (beta**safe - 1.0) / safe)
    return tf.reduce_sum(values, axis=-1)


def fair_weights(h: tf.Tensor, alpha: tf.Tensor, max_iter: int = 100) -> tf.Tensor:
    """The positive solution of ``h β = β^(−1/α)`` for a positive-definite h (T, T), by Newton's method.

    It is the minimiser of the strictly convex ``f(β) = ½ βᵀ h β − Σ_i φ(β_i)`` (φ concave for α > 0). Each
    Newton step is followed by a backtracking line search (Armijo's rule over step sizes 1, 1/2, ...,
    capped at 99 % of the way to the boundary β = 0, all evaluated as one batch), which converges from any
    positive start; stops when the squared Newton decrement is below 1e-24 or after ``max_iter`` steps.
    """
    exponent = -1.0 / alpha
    # The exact solution for a diagonal h.
    beta0 = tf.linalg.diag_part(h) ** (-alpha / (alpha + 1.0))
    sizes = 0.5 ** tf.range(_HALVINGS, dtype=tf.float64)

    def objective(beta: tf.Tensor) -> tf.Tensor:
        return 0.5 * tf.reduce_sum(beta * small_matvec(h, beta), axis=-1) - _utility(beta, alpha)

    def body(it: tf.Tensor, beta: tf.Tensor, decrement: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        grad = small_matvec(h, beta) - beta**exponent
        hess = h + tf.linalg.diag((1.0 / alpha) * beta ** (exponent - 1.0))
        step = -small_solve(hess, grad)
        decrement = -tf.reduce_sum(grad * step)
        shrinking = step < 0
        to_boundary = tf.reduce_min(tf.where(shrinking, -beta / tf.where(shrinking, step, -1.0), 1e300))
        largest = tf.minimum(tf.constant(1.0, tf.float64), 0.99 * to_boundary)
        trials = beta[None] + (largest * sizes)[:, None] * step[None]
        values = objective(trials)
        accepted = values <= objective(beta) - _ARMIJO * largest * sizes * decrement
        first = tf.argmax(tf.cast(accepted, tf.int32))  # 0 when none is accepted: then take the smallest
        index = tf.where(tf.reduce_any(accepted), first, tf.cast(_HALVINGS - 1, first.dtype))
        return it + 1, tf.ensure_shape(tf.gather(trials, index), beta0.shape), decrement

    def cond(it: tf.Tensor, beta: tf.Tensor, decrement: tf.Tensor) -> tf.Tensor:
        return decrement > 1e-24

    start = tf.constant(0), beta0, tf.constant(float("inf"), tf.float64)
    _, beta, _ = tf.while_loop(cond, body, start, maximum_iterations=max_iter)
    return beta


@compiled
def _fairgrad_weights(g: tf.Tensor, alpha: tf.Tensor) -> tf.Tensor:
    active = active_rows(g)
    h, scale = normalize(g, active)
    # An absent task's decoupled variable solves β = β^(−1/α) on its own (β = 1) and is then dropped.
    beta = fair_weights(decouple(h, active) + _RIDGE * tf.linalg.diag(tf.linalg.diag_part(h)), alpha)
    # G = s·H: w = c·β solves G w = w^(−1/α) when (s c) = c^(−1/α), i.e. c = s^(−α/(α+1)).
    return tf.where(active, beta, tf.zeros_like(beta)) * scale ** (-alpha / (alpha + 1.0))


@AGGREGATORS.register("fairgrad")
class FairGrad(Aggregator):
    """FairGrad (Ban & Ji, "Fair Resource Allocation in Multi-Task Learning", ICML 2024).

    Treats the update as a resource shared by the tasks and maximises the α-fair utility
    ``Σ_i (g_iᵀ d)^(1−α) / (1−α)`` (``Σ_i log g_iᵀ d`` for α = 1) over a ball. With ``d = Jᵀ w`` the optimum
    satisfies ``(G w)_i = w_i^(−1/α)`` with ``w > 0``: task i's improvement ``g_iᵀ d`` is ``w_i^(−1/α)``.
    α = 1 is proportional fairness (Nash-MTL's ``G w = 1/w``); α → ∞ approaches max-min fairness (equal
    improvements ``G w = 1``); α → 0 the utilitarian sum. The paper's code solves the system with SciPy's
    ``least_squares``; here it is solved exactly (up to round-off) as the minimiser of the strictly
    convex ``½ wᵀ G w − Σ_i φ(w_i)``, ``φ' = w^(−1/α)``, by Newton steps with a backtracking line search on
    G normalised by its largest diagonal entry (w rescaled back afterwards). The update is not clipped.

    Tasks with a zero gradient (absent from the batch) get weight 0 and are left out of the system. When 0
    is in the convex hull of the others the system has no positive solution; a ridge (G's diagonal times
    1 + 1e-10) keeps w finite there, as in Nash-MTL, and the update is then dominated by the component that does not
    cancel. All-zero J gives a zero update.

    Args:
        alpha: the fairness parameter α > 0 (the official scripts use 2.0).
    """

    gramian_based = True

    def __init__(self, *, alpha: PositiveFloat = 2.0) -> None:
        super().__init__()
        if not alpha > 0.0 or alpha == float("inf"):
            raise ValueError(f"Expected `alpha` to be a positive finite number. Received: alpha={alpha}")
        self.alpha = float(alpha)

    def _row_weights(self, g: tf.Tensor) -> tf.Tensor:
        return _fairgrad_weights(g, tf.constant(self.alpha, tf.float64))

    def get_config(self) -> dict[str, Any]:
        return {"alpha": self.alpha, **super().get_config()}
