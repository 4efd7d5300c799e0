"""SDMGrad: MGDA's min-norm direction regularised toward the mean gradient with a weight λ."""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from mtl_keras.balancers.aggregators._common import active_rows, compiled, decouple, normalize, small_matvec
from mtl_keras.balancers.aggregators._interior_point import simplex_qp
from mtl_keras.balancers.base import AGGREGATORS, Aggregator
from mtl_keras.option_types import NonNegativeFloat


@compiled
def sdmgrad_weights(g: tf.Tensor, lam: tf.Tensor) -> tf.Tensor:
    """Row weights ``(w + λ m) / (1 + λ)`` with ``w = argmin_{w ∈ simplex} ½ ‖Jᵀw + λ g0‖²`` over the active
    rows, ``g0 = Jᵀ m`` and ``m = 1/T``."""
    active = active_rows(g)
    mask = tf.cast(active, tf.float64)
    h, _ = normalize(g, active)
    num = tf.shape(h)[0]
    mean = tf.fill([num], 1.0 / tf.cast(num, tf.float64))
    # ½ wᵀ H w + λ wᵀ H m; an absent task's decoupled variable gets ½ w² + (2 + 2λ) w, whose derivative
    # exceeds every active one (each ≤ 1 + λ after normalisation), so its optimal weight is exactly 0.
    q = lam * small_matvec(h, mean) * mask + (2.0 + 2.0 * lam) * (1.0 - mask)
    w = simplex_qp(decouple(h, active), q)
    w = tf.where(active, w, tf.zeros_like(w))
    return (w + lam * mean) / (1.0 + lam)


@AGGREGATORS.register("sdmgrad")
class SDMGrad(Aggregator):
    """SDMGrad, Stochastic Direction-oriented Multi-objective Gradient descent (Xiao, Ban, Ji,
    "Direction-oriented Multi-objective Learning: Simple and Provable Stochastic Algorithms", NeurIPS 2023).

    MGDA restricted to directions near a target direction, here the mean gradient ``g0 = (1/T) Σ_i g_i``
    (the paper's choice for multi-task learning). Its dual is the regularised min-norm problem

        w = argmin_{w ∈ simplex} ½ ‖Σ_i w_i g_i + λ g0‖²,     d = (Σ_i w_i g_i + λ g0) / (1 + λ)

    λ = 0 is MGDA; λ → ∞ the mean gradient. The paper's algorithm takes a few projected-gradient steps on
    w per iteration (warm-started, 20 steps in the official code) with the Gram matrix from two
    independent mini-batches and the direction from a third, which makes its stochastic estimate
    unbiased. Here one batch serves all three (the same-batch approximation: J is the step's Jacobian)
    and w is the exact minimiser, solved by the interior-point method on the Gram matrix normalised by its
    largest diagonal entry; nothing is kept between steps. The paper's SDMGrad-OS (objective sampling) is
    not implemented.

    Tasks with a zero gradient (absent from the batch) are left out of the simplex; they still count in
    the 1/T of g0, as in the mean aggregator and CAGrad. All-zero J gives a zero update.

    Args:
        lam: λ ≥ 0, the weight of the mean gradient (0.3 by default; the paper tunes it per benchmark).
    """

    gramian_based = True

    def __init__(self, *, lam: NonNegativeFloat = 0.3) -> None:
        super().__init__()
        if not 0.0 <= lam < float("inf"):
            raise ValueError(f"Expected `lam` to be a non-negative finite number. Received: lam={lam}")
        self.lam = float(lam)

    def _row_weights(self, g: tf.Tensor) -> tf.Tensor:
        return sdmgrad_weights(g, tf.constant(self.lam, tf.float64))

    def get_config(self) -> dict[str, Any]:
        return {"lam": self.lam, **super().get_config()}
