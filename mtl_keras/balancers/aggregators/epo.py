"""EPO: Exact Pareto Optimal search along a preference ray (Mahapatra & Rajan, ICML 2020)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf
from scipy.optimize import linprog

from mtl_keras.balancers.aggregators._common import ACTIVE_RTOL
from mtl_keras.balancers.base import AGGREGATORS, Aggregator
from mtl_keras.option_types import NonNegativeFloat, PositiveFloat


def non_uniformity(weighted: np.ndarray) -> float:
    """μ = KL(l̂ ‖ 1/m) of the weighted losses ``r ⊙ l`` (m entries, positive): 0 exactly on the ray."""
    share = weighted / weighted.sum()
    return float(np.sum(share * np.log(share * len(share))))


def epo_weights(gram: np.ndarray, losses: np.ndarray, preference: np.ndarray, eps: float) -> np.ndarray:
    """The row weights α (simplex) of EPO's update ``Jᵀ α`` from G = J Jᵀ, the task losses and r.

    First-order, a step along ``−Jᵀ α`` changes the losses by ``−η G α``. With ``a_j = r_j (log(m l̂_j) − μ)``
    (the direction in which μ falls) and ``c = G a``:

    * balance mode (μ > eps): maximise ``cᵀ α`` (the fastest first-order fall of μ) subject to
      ``(G α)_j ≥ c_j`` for the ray tasks with ``c_j ≤ 0`` (a loss below the ray may rise, no more than its
      adjustment), ``(G α)_j ≥ 0`` for the tasks with the largest ``r_j l_j`` (the worst task never rises), and
      ``G α ≥ 0`` on every ray task when no ``c_j`` is positive;
    * descent mode (μ ≤ eps, on the ray): maximise ``Σ_j (G α)_j`` over the ray tasks subject to
      ``(G α)_j ≥ 0`` for them and ``cᵀ α ≥ min(max_j c_j, 0)`` (move down the front without leaving the ray).

    Tasks with ``r_j = 0`` are outside the ray: they neither constrain nor enter μ (their weight may still be
    positive when their gradient helps the others). Absent tasks (a zero row of G, or a loss that is not
    positive and finite) get weight 0. When the LP is infeasible, the descent problem with only
    ``G α ≥ 0`` is tried, then equal weights of the ray tasks.
    """
    num_tasks = len(losses)
    diag = np.diag(gram)
    largest = float(diag.max()) if num_tasks else 0.0
    active = (diag > ACTIVE_RTOL * largest) & np.isfinite(losses) & (losses > 0) & (largest > 0)
    weights = np.zeros(num_tasks)
    if not active.any():
        return weights
    index = np.flatnonzero(active)
    c_mat = gram[np.ix_(index, index)] / largest
    r = preference[index]
    on_ray = r > 0
    if not on_ray.any():
        weights[index] = 1.0 / len(index)
        return weights
    weighted = r[on_ray] * losses[index][on_ray]
    mu = non_uniformity(weighted)
    share = weighted / weighted.sum()
    adjustment = np.zeros(len(index))
    adjustment[on_ray] = r[on_ray] * (np.log(share * len(share)) - mu)
    c = c_mat @ adjustment
    ray_rows = np.flatnonzero(on_ray)
    if mu > eps:
        objective = c
        rows, bounds = [], []
        rising = ray_rows[c[ray_rows] > 0]
        if len(rising) == 0:
            rows, bounds = list(ray_rows), [0.0] * len(ray_rows)
        else:
            worst = ray_rows[weighted == weighted.max()]
            for j in ray_rows:
                if j in worst:
                    rows.append(j)
                    bounds.append(0.0)
                elif c[j] <= 0:
                    rows.append(j)
                    bounds.append(float(c[j]))
        a_ub = -c_mat[rows] if rows else None
        b_ub = -np.asarray(bounds) if rows else None
    else:
        objective = c_mat[ray_rows].sum(axis=0)
        a_ub = np.vstack([-c_mat[ray_rows], -c[None, :]])
        b_ub = np.concatenate([np.zeros(len(ray_rows)), [-min(float(c[ray_rows].max()), 0.0)]])
    alpha = _simplex_lp(objective, a_ub, b_ub)
    if alpha is None:
        alpha = _simplex_lp(c_mat[ray_rows].sum(axis=0), -c_mat[ray_rows], np.zeros(len(ray_rows)))
    if alpha is None:
        alpha = on_ray / on_ray.sum()
    weights[index] = alpha
    return weights


def _simplex_lp(objective: np.ndarray, a_ub: np.ndarray | None, b_ub: np.ndarray | None) -> np.ndarray | None:
    """argmax ``objectiveᵀ α`` over the simplex with ``a_ub α ≤ b_ub``, or None when infeasible."""
    size = len(objective)
    result = linprog(
        -objective,
        A_ub=a_ub,
        b_ub=b_ub,
        A_eq=np.ones((1, size)),
        b_eq=[1.0],
        bounds=[(0.0, None)] * size,
        method="highs",
    )
    if result.status != 0:
        return None
    alpha = np.clip(result.x, 0.0, None)
    return alpha / alpha.sum()


@AGGREGATORS.register("epo")
class EPO(Aggregator):
    """EPO search (Mahapatra & Rajan, "Multi-Task Learning with User Preferences: Gradient Descent with
    Controlled Ascent in Pareto Optimization", ICML 2020).

    Finds the Pareto-optimal point on the preference ray ``r_1 L_1 = r_2 L_2 = … = r_T L_T`` (losses inversely
    proportional to the preference): while the weighted losses are far from the ray (non-uniformity μ, a KL
    divergence, above ``eps``) each step solves a small linear programme for the direction that moves toward
    the ray fastest without letting the worst weighted loss rise; on the ray it descends along a direction
    that keeps every preferred loss from rising (see :func:`epo_weights`). The update is ``Jᵀ α`` with α on
    the simplex, computed from G = J Jᵀ and the step's task losses (:meth:`observe_losses`).

    The LP is solved by SciPy's HiGHS inside the step (``tf.numpy_function``): EPO runs in graph mode and
    under distribution strategies (every replica solves the same all-reduced problem), not under XLA
    (``jit_compile=True``). Without observed losses (a direct ``aggregate(J)`` call) the losses are taken as
    ones, so only r sets the ray. The paper's losses are the unweighted task losses; combined with a weighting
    the ray is that of the weighted losses.

    Args:
        preference: r, one non-negative weight per task (not all 0) in the model's task order; ones by
            default (the ray of equal losses). Tasks with r = 0 are left out of the ray.
        eps: the non-uniformity μ below which the step descends instead of balancing (μ is 0 on the ray).
            For two tasks μ ≤ eps bounds the ratio of the weighted losses by about 1 + 2·sqrt(2·eps)
            (1.03 for the default 1e-4).
    """

    gramian_based = True

    def __init__(
        self, *, preference: Sequence[NonNegativeFloat] | None = None, eps: PositiveFloat = 1e-4
    ) -> None:
        super().__init__()
        if preference is not None:
            preference = [float(p) for p in preference]
            if any(not p >= 0 for p in preference) or not any(p > 0 for p in preference):
                raise ValueError(
                    f"Expected `preference` to be non-negative and not all 0. Received: preference={preference}"
                )
        if not eps > 0:
            raise ValueError(f"Expected `eps` to be positive. Received: eps={eps!r}")
        self.preference = preference
        self.eps = float(eps)
        # The observed losses per thread: MirroredStrategy traces each replica's step in its own thread,
        # and the threads interleave at the all-reduces between observe_losses and the aggregation.
        self._losses: dict[int, tf.Tensor] = {}

    def build(self, num_tasks: int) -> None:
        if self.preference is not None and len(self.preference) != num_tasks:
            raise ValueError(
                f"Expected `preference` to have one entry per task ({num_tasks}). "
                f"Received {len(self.preference)}: {self.preference}"
            )
        super().build(num_tasks)

    def observe_losses(self, losses: tf.Tensor) -> None:
        self._losses[threading.get_ident()] = tf.cast(tf.convert_to_tensor(losses), tf.float64)

    def _row_weights(self, g: tf.Tensor) -> tf.Tensor:
        num_tasks = int(self.num_tasks or g.shape[0])
        # One observation per step: popped, so that a tensor of another trace is never reused.
        losses = self._losses.pop(threading.get_ident(), None)
        if losses is None:
            losses = tf.ones([num_tasks], tf.float64)
        preference = np.asarray(self.preference if self.preference is not None else [1.0] * num_tasks)
        eps = self.eps

        def solve(gram: np.ndarray, values: np.ndarray) -> np.ndarray:
            return epo_weights(gram, values, preference, eps).astype(np.float64)

        weights = tf.numpy_function(solve, [tf.cast(g, tf.float64), losses], tf.float64, stateful=False)
        return tf.ensure_shape(weights, [num_tasks])

    def get_config(self) -> dict[str, Any]:
        return {"preference": self.preference, "eps": self.eps, **super().get_config()}
