"""CAGrad: maximise the worst task improvement in a ball around the mean gradient."""

from __future__ import annotations

from typing import Any, Literal

import tensorflow as tf

from mtl_keras.balancers.aggregators._common import active_rows, compiled, decouple, normalize, small_matvec
from mtl_keras.balancers.aggregators._interior_point import minimize, nonnegative_qp
from mtl_keras.balancers.base import AGGREGATORS, Aggregator
from mtl_keras.option_types import NonNegativeFloat

#: Added to ‖g_w‖² inside the square root, so the dual objective stays smooth when 0 is in the hull.
_SMOOTHING = 1e-14
#: The dual answer is accepted when its worst improvement is within this (of the largest ‖g_i‖²) of the
#: dual bound; otherwise the primal is solved by bisection on the worst improvement τ.
_GAP = 1e-9
#: Bisection: rounds, and values of τ tried at once (as one batch of QPs) per round; the bracket shrinks
#: by a factor of (_POINTS + 1) per round.
_ROUNDS = 5
_POINTS = 16


def cagrad_weights(g: tf.Tensor, c: tf.Tensor) -> tf.Tensor:
    """Row weights (T,) of the CAGrad update ``d = g0 + (√φ / ‖g_w‖) g_w`` for the Gram matrix g.

    ``w = argmin_{w ∈ simplex} g_wᵀ g0 + √φ ‖g_w‖`` over the active rows, with ``g0 = Jᵀ(1/T)``,
    ``φ = c² ‖g0‖²`` and ``g_w = Jᵀ w``, solved by the interior-point method on the Gram matrix
    normalised by its largest diagonal entry. When the dual answer misses the dual bound (0 in the hull),
    the primal bisection replaces it. The two are compiled separately, and the choice between them is made
    outside XLA, so the bisection is compiled only when a step first needs it.
    """
    alpha, lower, upper = _dual_weights(g, c)
    return tf.cond(
        upper - lower <= _GAP, lambda: alpha, lambda: _bisection_weights(g, c, alpha, lower, upper)
    )


def _problem(g: tf.Tensor, c: tf.Tensor) -> tuple[tf.Tensor, ...]:
    """``(active, h, mean, h_mean, radius)``: the active rows, the normalised Gram matrix, 1/T, H·(1/T) and
    the ball's radius c ‖g0‖ in normalised units."""
    active = active_rows(g)
    h, _ = normalize(g, active)
    num = tf.shape(h)[0]
    mean = tf.fill([num], 1.0 / tf.cast(num, tf.float64))
    h_mean = small_matvec(h, mean)
    radius = c * tf.sqrt(tf.maximum(tf.reduce_sum(mean * h_mean), 0.0))  # c ‖g0‖
    return active, h, mean, h_mean, radius


@compiled
def _dual_weights(g: tf.Tensor, c: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """``(alpha, lower, upper)``: the dual's row weights, their worst improvement and the dual bound."""
    active, h, mean, h_mean, radius = _problem(g, c)
    inactive = 1.0 - tf.cast(active, tf.float64)
    # An absent task gets a decoupled variable with ½ w² + (3 + 2c) w: its cost exceeds every partial
    # derivative on the active rows (each ≤ 1 + c after normalisation), so its optimal weight is 0.
    pin = 3.0 + 2.0 * c

    def objective(x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        hx = small_matvec(h, x[0])
        norm = tf.sqrt(tf.reduce_sum(x[0] * hx) + _SMOOTHING)
        grad = h_mean + radius * hx / norm + inactive * (x[0] + pin)
        hess = radius * (h / norm - hx[:, None] * hx[None, :] / norm**3) + tf.linalg.diag(inactive)
        return grad[None], hess[None]

    w = minimize(objective, mean[None], simplex=True)[0]
    w = tf.where(active, w, tf.zeros_like(w))
    w = w / tf.maximum(tf.reduce_sum(w), 1e-300)
    hw = small_matvec(h, w)
    norm = tf.sqrt(tf.reduce_sum(w * hw) + _SMOOTHING)
    alpha = mean + radius / norm * w
    # Weak duality: the dual objective at any simplex point bounds the worst improvement from above; the
    # dual's d attains it unless g_w vanishes at the optimum (0 in the hull), where its direction is arbitrary.
    upper = tf.reduce_sum(w * h_mean) + radius * tf.sqrt(tf.maximum(tf.reduce_sum(w * hw), 0.0))
    return alpha, _worst(h, alpha, active), upper


@compiled
def _bisection_weights(
    g: tf.Tensor, c: tf.Tensor, alpha: tf.Tensor, lower: tf.Tensor, upper: tf.Tensor
) -> tf.Tensor:
    """The primal optimum's row weights, bracketed by the dual answer ``alpha`` (worst improvement
    ``lower``, feasible) and the dual bound ``upper``."""
    active, h, mean, h_mean, radius = _problem(g, c)
    return _primal_by_bisection(h, mean, h_mean, radius, active, lower, upper, alpha)


def _worst(h: tf.Tensor, alpha: tf.Tensor, active: tf.Tensor) -> tf.Tensor:
    """min over the active rows of (h α)_i, the worst improvement of d = Jᵀα, for α (..., T)."""
    improvement = small_matvec(h, alpha)
    return tf.reduce_min(
        tf.where(active, improvement, tf.fill(tf.shape(improvement), tf.constant(1e300, tf.float64))), axis=-1
    )


def _primal_by_bisection(
    h: tf.Tensor,
    mean: tf.Tensor,
    h_mean: tf.Tensor,
    radius: tf.Tensor,
    active: tf.Tensor,
    lower: tf.Tensor,
    upper: tf.Tensor,
    fallback: tf.Tensor,
) -> tf.Tensor:
    """Row weights of the primal optimum: the largest τ whose set {d : J d ≥ τ} comes within the radius of g0.

    The projection of g0 onto {d : J_a d ≥ τ 1} (active rows) is ``g0 + J_aᵀ u`` with
    ``u = argmin_{u ≥ 0} ½ uᵀ H u + uᵀ (H m − τ 1)``, at distance √(uᵀ H u), non-decreasing in τ; so the
    feasible τ form an interval [.., τ*] and τ* is bracketed between the dual answer's worst improvement
    (feasible) and the dual bound. Each round solves the QP for _POINTS values of τ as one batch and keeps
    the bracket around the last feasible one. The result is always inside the ball; its worst improvement
    is at least the final lower end of the bracket.
    """
    mask = tf.cast(active, tf.float64)
    hd = decouple(h, active)
    limit = radius**2 * (1.0 + 1e-9) + 1e-18
    fractions = tf.range(1, _POINTS + 1, dtype=tf.float64) / (_POINTS + 1.0)

    def projection(taus: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        # The decoupled variable of an absent task gets a positive linear cost, so it stays exactly 0.
        q = (h_mean[None] - taus[:, None]) * mask[None] + (1.0 - mask)[None]
        u = nonnegative_qp(hd, q) * mask[None]
        return u, tf.reduce_sum(u * small_matvec(h, u), axis=-1)

    def one_round(i: tf.Tensor, low: tf.Tensor, high: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        taus = low + (high - low) * fractions
        u, distance2 = projection(taus)
        # Beyond the best τ of all (no d meets J d ≥ τ, e.g. opposite rows and τ > 0) the QP is unbounded:
        # its iterate is checked against the constraints, not only the distance.
        reached = _worst(h, mean[None] + u, active) >= taus - 1e-9
        feasible = tf.reduce_sum(tf.cast((distance2 <= limit) & reached, tf.int32))  # a prefix in τ
        bounds = tf.concat([low[None], taus, high[None]], axis=0)
        return i + 1, bounds[feasible], bounds[feasible + 1]

    _, low, _ = tf.while_loop(lambda i, low, high: i < _ROUNDS, one_round, (tf.constant(0), lower, upper))
    u, distance2 = projection(low[None])
    alpha = mean + u[0]
    better = (distance2[0] <= limit) & (_worst(h, alpha, active) >= lower)
    return tf.where(better, alpha, fallback)


@AGGREGATORS.register("cagrad")
class CAGrad(Aggregator):
    """Conflict-Averse Gradient descent (Liu et al., "Conflict-Averse Gradient Descent for Multi-task
    Learning", NeurIPS 2021).

    Maximises the worst local improvement ``min_i g_iᵀ d`` over the ball ``‖d − g0‖ ≤ c‖g0‖`` around the
    mean gradient ``g0 = (1/T) Σ_i g_i``. Through its dual, ``d = g0 + (√φ / ‖g_w‖) g_w`` with
    ``φ = c²‖g0‖²``, ``g_w = Σ_i w_i g_i`` and ``w = argmin_{w ∈ simplex} g_wᵀ g0 + √φ ‖g_w‖``. The paper's
    code solves the dual with SLSQP; here it is solved to ~1e-10 by an interior-point method on the
    (T, T) Gram matrix. When 0 lies in the hull of the rows at the optimum (e.g. two exactly opposite
    gradients), g_w → 0 and the formula's direction is arbitrary; the step checks the dual answer against
    the dual bound and, when they differ, solves the primal by bisection on the worst improvement (batched
    projections of g0 onto {d : J d ≥ τ}), which always stays inside the ball.

    Convention: ``rescale=1`` (default, as in the official code and LibMTL) divides d by ``1 + c²``;
    ``rescale=0`` returns d as in the paper's equations. For ``J = [[-4, 1, 1], [6, 1, 1]]``, c = 0.5:
    ``[0.1835, 1.2041, 1.2041]`` unrescaled, ``[0.1468, 0.9633, 0.9633]`` rescaled.

    Tasks with a zero gradient (absent from the batch) are left out of the simplex (a zero row would
    otherwise make ``g_w = 0`` feasible and the worst improvement meaningless); they still count in the
    1/T of the mean gradient, as in the mean aggregator. All-zero J gives a zero update.

    Args:
        c: radius of the ball relative to ‖g0‖ (0 gives the mean gradient).
        rescale: 0 for no rescaling, 1 to divide by ``1 + c²``.
    """

    gramian_based = True

    def __init__(self, *, c: NonNegativeFloat = 0.5, rescale: Literal[0, 1] = 1) -> None:
        super().__init__()
        if not c >= 0.0:
            raise ValueError(f"Expected `c` to be a non-negative number. Received: c={c}")
        if rescale not in (0, 1):
            raise ValueError(f"Expected `rescale` to be 0 or 1. Received: rescale={rescale!r}")
        self.c = float(c)
        self.rescale = int(rescale)

    def _row_weights(self, g: tf.Tensor) -> tf.Tensor:
        weights = cagrad_weights(g, tf.constant(self.c, tf.float64))
        if self.rescale == 1:
            weights /= 1.0 + self.c**2
        return weights

    def get_config(self) -> dict[str, Any]:
        return {"c": self.c, "rescale": self.rescale, **super().get_config()}
