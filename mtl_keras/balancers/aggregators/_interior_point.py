"""A small primal-dual interior-point solver for the (T, T) problems of the aggregators, in TensorFlow.

It minimises a smooth convex function of ``x ∈ R^T`` subject to ``x ≥ 0`` and, optionally, ``Σ x = 1``
(the probability simplex), for a batch of problems at once. The steps are Mehrotra's predictor-corrector
on the KKT conditions

    ∇f(x) − z + y·1 = 0,   Σ x = 1 (simplex only),   x ∘ z = 0,   x, z ≥ 0,

with two solves of the small Newton system per iteration. The loop is a ``tf.while_loop`` that stops
when the residuals and the duality measure fall below ``tol`` or after ``max_iter`` iterations; the entry
points are compiled with XLA (``jit_compile=True``), which runs these (T, T) problems several times faster
than graph mode, and run eagerly and inside ``tf.function`` alike. Quadratic problems reach the default
tolerance (1e-14) in 5 to 20 iterations.

Written from the textbook method (Nocedal & Wright, Numerical Optimization, 2nd ed., §16.6).
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

from mtl_keras.balancers.aggregators._common import small_matvec, small_solve

#: Diagonal added to the Newton matrix (not to the problem): keeps it invertible when f is flat along
#: a direction; it changes the search direction slightly, never the solution.
_NEWTON_RIDGE = 1e-12
#: Fraction of the way to the boundary of the positive orthant a step may go.
_TO_BOUNDARY = 0.995

Objective = Callable[[tf.Tensor], tuple[tf.Tensor, tf.Tensor]]


def _max_step(v: tf.Tensor, dv: tf.Tensor) -> tf.Tensor:
    """Per problem, the largest a ≤ 1 with v + a·dv ≥ 0 (v > 0)."""
    shrinking = dv < 0
    ratio = tf.where(shrinking, -v / tf.where(shrinking, dv, -tf.ones_like(dv)), tf.ones_like(v))
    return tf.minimum(tf.reduce_min(ratio, axis=-1), 1.0)


def minimize(
    objective: Objective,
    x0: tf.Tensor,
    *,
    simplex: bool,
    max_iter: int = 60,
    tol: float = 1e-14,
) -> tf.Tensor:
    """Minimise a convex f over ``x ≥ 0`` (and ``Σ x = 1`` when ``simplex``), batched.

    Args:
        objective: maps x (B, T) to the gradient (B, T) and the Hessian (B, T, T) of f at x.
        x0: strictly positive float64 starting point (B, T); on the simplex when ``simplex``.
        simplex: add the equality constraint ``Σ x = 1``.
        max_iter: iteration limit.
        tol: stop when the dual and primal residuals and the mean complementarity are all below it.

    Returns:
        The minimiser, (B, T) float64, strictly positive.
    """
    num = tf.shape(x0)[-1]
    eye = tf.eye(num, dtype=tf.float64)
    z0 = tf.ones_like(x0)
    y0 = tf.zeros_like(x0[..., 0])

    def residuals(
        x: tf.Tensor, z: tf.Tensor, y: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
        grad, hess = objective(x)
        r_dual = grad - z + (y[..., None] if simplex else 0.0)
        r_primal = tf.reduce_sum(x, axis=-1) - 1.0 if simplex else tf.zeros_like(y)
        return r_dual, r_primal, grad, hess

    def error(x: tf.Tensor, z: tf.Tensor, r_dual: tf.Tensor, r_primal: tf.Tensor) -> tf.Tensor:
        return tf.reduce_max(
            tf.stack(
                [
                    tf.reduce_max(tf.abs(r_dual)),
                    tf.reduce_max(tf.abs(r_primal)),
                    tf.reduce_max(tf.reduce_mean(x * z, axis=-1)),
                ]
            )
        )

    def body(
        it: tf.Tensor, x: tf.Tensor, z: tf.Tensor, y: tf.Tensor, err: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
        r_dual, r_primal, _, hess = residuals(x, z, y)
        mu = tf.reduce_mean(x * z, axis=-1, keepdims=True)
        newton = hess + tf.linalg.diag(z / x) + _NEWTON_RIDGE * eye
        if simplex:
            ones = tf.ones_like(x)[..., None]
            newton = tf.concat(
                [
                    tf.concat([newton, ones], axis=-1),
                    tf.concat([tf.linalg.matrix_transpose(ones), tf.zeros_like(ones[..., :1, :])], axis=-1),
                ],
                axis=-2,
            )

        def direction(target: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
            """Newton step towards x ∘ z = target."""
            rhs = -r_dual + target / x - z
            if simplex:
                rhs = tf.concat([rhs, -r_primal[..., None]], axis=-1)
            sol = small_solve(newton, rhs)
            dx = sol[..., :num]
            dy = sol[..., num] if simplex else tf.zeros_like(y)
            dz = (target - x * z - z * dx) / x
            return dx, dz, dy

        # Predictor (affine scaling), then Mehrotra's centring and second-order correction.
        dx_aff, dz_aff, _ = direction(tf.zeros_like(x))
        step_p = _max_step(x, dx_aff)[..., None]
        step_d = _max_step(z, dz_aff)[..., None]
        mu_aff = tf.reduce_mean((x + step_p * dx_aff) * (z + step_d * dz_aff), axis=-1, keepdims=True)
        sigma = tf.clip_by_value(tf.math.divide_no_nan(mu_aff, mu) ** 3, 0.0, 1.0)
        dx, dz, dy = direction(sigma * mu - dx_aff * dz_aff)
        step = _TO_BOUNDARY * tf.minimum(_max_step(x, dx), _max_step(z, dz))
        x = tf.ensure_shape(x + step[..., None] * dx, x0.shape)
        z = tf.ensure_shape(z + step[..., None] * dz, x0.shape)
        y = tf.ensure_shape(y + step * dy, y0.shape)
        r_dual, r_primal, _, _ = residuals(x, z, y)
        return it + 1, x, z, y, error(x, z, r_dual, r_primal)

    def cond(it: tf.Tensor, x: tf.Tensor, z: tf.Tensor, y: tf.Tensor, err: tf.Tensor) -> tf.Tensor:
        return err > tol

    start = tf.constant(0), x0, z0, y0, tf.constant(float("inf"), tf.float64)
    _, x, _, _, _ = tf.while_loop(cond, body, start, maximum_iterations=max_iter)
    return x


@tf.function(reduce_retracing=True, jit_compile=True)
def nonnegative_qp(h: tf.Tensor, q: tf.Tensor, *, max_iter: int = 60) -> tf.Tensor:
    """``argmin_{x ≥ 0} ½ xᵀ h x + qᵀ x`` for PSD h (T, T) and a batch of q (B, T); returns (B, T)."""

    def objective(x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return small_matvec(h, x) + q, tf.broadcast_to(h, tf.concat([tf.shape(x), tf.shape(x)[-1:]], 0))

    return minimize(objective, tf.ones_like(q), simplex=False, max_iter=max_iter)


@tf.function(reduce_retracing=True, jit_compile=True)
def simplex_qp(h: tf.Tensor, q: tf.Tensor, *, max_iter: int = 60) -> tf.Tensor:
    """``argmin ½ xᵀ h x + qᵀ x`` over the probability simplex, for PSD h (T, T) and q (T,); returns (T,)."""

    def objective(x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return small_matvec(h, x) + q, h[None]

    x0 = tf.fill(tf.shape(q[None]), 1.0 / tf.cast(tf.size(q), tf.float64))
    return minimize(objective, x0, simplex=True, max_iter=max_iter)[0]
