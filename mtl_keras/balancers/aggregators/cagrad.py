"""CAGrad: maximise the worst task improvement in a ball around the mean gradient."""

from __future__ import annotations

from typing import Any, Literal

import tensorflow as tf

from mtl_keras.balancers.aggregators._common import active_rows, compiled, normalize, small_matvec
from mtl_keras.balancers.aggregators._interior_point import minimize
from mtl_keras.balancers.base import AGGREGATORS, Aggregator
from mtl_keras.option_types import NonNegativeFloat

#: Added to ‖g_w‖² inside the square root, so the dual objective stays smooth when 0 is in the hull.
_SMOOTHING = 1e-14


@compiled
def cagrad_weights(g: tf.Tensor, c: tf.Tensor) -> tf.Tensor:
    """Row weights (T,) of the CAGrad update ``d = g0 + (√φ / ‖g_w‖) g_w`` for the Gram matrix g.

    ``w = argmin_{w ∈ simplex} g_wᵀ g0 + √φ ‖g_w‖`` over the active rows, with ``g0 = Jᵀ(1/T)``,
    ``φ = c² ‖g0‖²`` and ``g_w = Jᵀ w``, solved by the interior-point method on the Gram matrix
    normalised by its largest diagonal entry.
    """
    active = active_rows(g)
    h, _ = normalize(g, active)
    num = tf.shape(h)[0]
    mean = tf.fill([num], 1.0 / tf.cast(num, tf.float64))
    h_mean = small_matvec(h, mean)
    radius = c * tf.sqrt(tf.maximum(tf.reduce_sum(mean * h_mean), 0.0))  # c ‖g0‖
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
    norm = tf.sqrt(tf.reduce_sum(w * small_matvec(h, w)) + _SMOOTHING)
    return mean + radius / norm * w


@AGGREGATORS.register("cagrad")
class CAGrad(Aggregator):
    """Conflict-Averse Gradient descent (Liu et al., "Conflict-Averse Gradient Descent for Multi-task
    Learning", NeurIPS 2021).

    Maximises the worst local improvement ``min_i g_iᵀ d`` over the ball ``‖d − g0‖ ≤ c‖g0‖`` around the
    mean gradient ``g0 = (1/T) Σ_i g_i``. Through its dual, ``d = g0 + (√φ / ‖g_w‖) g_w`` with
    ``φ = c²‖g0‖²``, ``g_w = Σ_i w_i g_i`` and ``w = argmin_{w ∈ simplex} g_wᵀ g0 + √φ ‖g_w‖``. The paper's
    code solves the dual with SLSQP; here it is solved to ~1e-10 by an interior-point method on the
    (T, T) Gram matrix.

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
