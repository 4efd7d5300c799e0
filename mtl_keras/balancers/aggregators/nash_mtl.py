"""Nash-MTL: the Nash bargaining solution of the tasks, G α = 1/α."""

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
from mtl_keras.option_types import NonNegativeFloat

#: Ridge added to the normalised Gram matrix. Gα = 1/α has no solution when 0 is in the convex hull of
#: the gradients (G has a non-negative null vector); the ridge keeps α finite there (≤ 1e5 / max‖g_i‖)
#: and moves the exact solution by a relative ~1e-10·β² otherwise (β = α·max‖g_i‖, O(1) unless the
#: problem is nearly degenerate).
_RIDGE = 1e-10


@tf.function(reduce_retracing=True, jit_compile=True)
def bargaining_weights(h: tf.Tensor, max_iter: int = 100) -> tf.Tensor:
    """The positive solution of ``h β = 1/β`` for a positive-definite h (T, T), by damped Newton steps.

    It is the minimiser of the strictly convex, self-concordant ``f(β) = ½ βᵀ h β − Σ_i log β_i``. Damped
    steps ``1/(1 + λ)`` (λ the Newton decrement) stay in β > 0 and converge from any positive start; full
    steps are taken once λ < 1/4 (quadratic convergence). Stops when λ² < 1e-24 or after ``max_iter``.
    """
    beta0 = tf.math.rsqrt(tf.linalg.diag_part(h))

    def body(it: tf.Tensor, beta: tf.Tensor, decrement: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        grad = small_matvec(h, beta) - 1.0 / beta
        hess = h + tf.linalg.diag(1.0 / beta**2)
        step = small_solve(hess, grad)
        decrement = tf.reduce_sum(grad * step)
        damped = 1.0 / (1.0 + tf.sqrt(tf.maximum(decrement, 0.0)))
        size = tf.where(decrement < 1.0 / 16.0, tf.ones_like(damped), damped)
        return it + 1, tf.ensure_shape(beta - size * step, beta0.shape), decrement

    def cond(it: tf.Tensor, beta: tf.Tensor, decrement: tf.Tensor) -> tf.Tensor:
        return decrement > 1e-24

    start = tf.constant(0), beta0, tf.constant(float("inf"), tf.float64)
    _, beta, _ = tf.while_loop(cond, body, start, maximum_iterations=max_iter)
    return beta


@AGGREGATORS.register("nash_mtl")
class NashMTL(Aggregator):
    """Nash-MTL (Navon et al., "Multi-Task Learning as a Bargaining Game", ICML 2022).

    The update is ``d = Σ_i α_i g_i`` with ``α > 0`` the solution of ``G α = 1/α`` (element-wise), i.e.
    ``g_iᵀ d = 1/α_i`` for every task: the Nash bargaining solution. It is computed exactly (up to
    round-off) as the minimiser of the convex ``½ αᵀ G α − Σ_i log α_i`` by damped Newton steps on the Gram
    matrix normalised by its largest diagonal entry (α rescaled back afterwards), instead of the paper's
    ≤ 20 CCCP iterations of cvxpy. Consequence of the convention: ``‖d‖² = αᵀGα`` equals the number of
    tasks present before clipping.

    ``max_norm`` clips the norm of the update as the paper's code and LibMTL do (``clip_grad_norm_`` on the
    shared parameters, default 1.0); ``max_norm=None`` (or 0) disables it. For
    ``J = [[-4, 1, 1], [6, 1, 1]]`` the exact solution is ``α = (0.5915, 0.4071)``, ``d = [0.0766, 0.9985,
    0.9985]``; clipped to norm 1 it is ``[0.0542, 0.7060, 0.7060]``, which is what LibMTL reports
    (≈ [0.0542, 0.7061, 0.7061] from its normalised Gram matrix and CCCP steps). Note that when the
    aggregator sees only part of the shared parameters (or the shared representation), the clip applies
    to that part only.

    Tasks with a zero gradient (absent from the batch) get α = 0 and are left out of the system, which
    would have no solution otherwise. A tiny ridge (1e-10 of the largest squared gradient norm) keeps α
    finite when 0 is in the convex hull of the gradients. All-zero J gives a zero update.

    Args:
        max_norm: clip the norm of the update to this value; None or 0 disables clipping.
    """

    gramian_based = True

    def __init__(self, *, max_norm: NonNegativeFloat | None = 1.0) -> None:
        super().__init__()
        if max_norm is not None:
            if not max_norm >= 0.0:
                raise ValueError(
                    f"Expected `max_norm` to be None or a non-negative number. Received: max_norm={max_norm}"
                )
            max_norm = float(max_norm)
        self.max_norm = max_norm

    def _row_weights(self, g: tf.Tensor) -> tf.Tensor:
        return nash_weights(g, tf.constant(self.max_norm or 0.0, tf.float64))

    def get_config(self) -> dict[str, Any]:
        return {"max_norm": self.max_norm, **super().get_config()}


@compiled
def nash_weights(g: tf.Tensor, max_norm: tf.Tensor) -> tf.Tensor:
    """α (T,) for the Gram matrix g: the bargaining solution, rescaled so that ‖Jᵀα‖ ≤ max_norm (if > 0)."""
    active = active_rows(g)
    h, scale = normalize(g, active)
    beta = bargaining_weights(decouple(h, active) + _RIDGE * tf.linalg.diag(tf.cast(active, tf.float64)))
    alpha = tf.where(active, beta, tf.zeros_like(beta)) * tf.math.rsqrt(scale)
    # ‖Jᵀα‖² = αᵀ G α: the clip is a rescaling of the weights.
    norm = tf.sqrt(tf.maximum(tf.reduce_sum(alpha * small_matvec(g, alpha)), 0.0))
    too_long = (max_norm > 0.0) & (norm > max_norm)
    return alpha * tf.where(too_long, max_norm / tf.where(too_long, norm, 1.0), 1.0)
