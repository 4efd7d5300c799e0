"""MoDo against its weight recursion written here with NumPy (projection onto the simplex by bisection on
the threshold), its state, and its claimed fixed point (MGDA's weights when ρ = 0)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from hard_jacobians import ALL, HARD, RANDOM
from scipy import optimize

from mtl_keras.balancers.aggregators import MoDo


def project(v: np.ndarray, mass: float) -> np.ndarray:
    """argmin ‖x − v‖ over {x ≥ 0, Σ x = mass}: x = max(v − θ, 0) with θ found by bisection."""
    low, high = v.min() - mass, v.max()
    for _ in range(200):
        theta = 0.5 * (low + high)
        if np.maximum(v - theta, 0.0).sum() > mass:
            low = theta
        else:
            high = theta
    return np.maximum(v - 0.5 * (low + high), 0.0)


def modo_numpy(jacobian: np.ndarray, steps: int, gamma: float, rho: float) -> list[np.ndarray]:
    """The updates d_k = Jᵀλ_k of k = 1..steps calls, λ_k = Π(λ_{k−1} − γ (G + ρI) λ_{k−1}), λ_0 = 1/T."""
    gram = jacobian @ jacobian.T
    weights = np.full(len(jacobian), 1.0 / len(jacobian))
    updates = []
    for _ in range(steps):
        weights = project(weights - gamma * (gram @ weights + rho * weights), 1.0)
        updates.append(weights @ jacobian)
    return updates


@pytest.mark.parametrize("name", [name for name in ALL if name != "zero row"])
def test_matches_the_recursion(name: str) -> None:
    jacobian = ALL[name] / np.max(np.linalg.norm(ALL[name], axis=1))  # γ acts on the raw G
    aggregator = MoDo(gamma=0.3, rho=0.1)
    for expected in modo_numpy(jacobian, 4, 0.3, 0.1):
        result = aggregator.aggregate(tf.constant(jacobian)).numpy()
        np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-6)


def test_fixed_point_is_the_min_norm_weights() -> None:
    """ρ = 0: the fixed point of the projected step is MGDA's min-norm point of the hull (computed by SLSQP)."""
    jacobian = RANDOM["T=3"] / np.max(np.linalg.norm(RANDOM["T=3"], axis=1))
    gram = jacobian @ jacobian.T
    best = optimize.minimize(
        lambda w: w @ gram @ w,
        np.full(3, 1.0 / 3.0),
        bounds=[(0.0, 1.0)] * 3,
        constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0}],
        method="SLSQP",
        options={"ftol": 1e-15},
    ).x
    aggregator = MoDo(gamma=0.5, rho=0.0)
    step = tf.function(aggregator.aggregate)
    for _ in range(400):
        result = step(tf.constant(jacobian)).numpy()
    np.testing.assert_allclose(result, best @ jacobian, atol=1e-5)


def test_absent_task_keeps_its_share() -> None:
    jacobian = HARD["zero row"]
    aggregator = MoDo(gamma=0.01, rho=0.0)
    result = aggregator.aggregate(tf.constant(jacobian)).numpy()
    state = aggregator.task_weights.numpy()
    np.testing.assert_allclose(state[1], 1.0 / 3.0, rtol=1e-6)
    np.testing.assert_allclose(state.sum(), 1.0, rtol=1e-6)
    # The present tasks' weights: one step on their own simplex of mass 2/3, rescaled to sum 1.
    present = jacobian[[0, 2]]
    moved = np.full(2, 1.0 / 3.0) - 0.01 * (present @ present.T) @ np.full(2, 1.0 / 3.0)
    weights = project(moved, 2.0 / 3.0)
    np.testing.assert_allclose(state[[0, 2]], weights, rtol=1e-5)
    np.testing.assert_allclose(result, weights / weights.sum() @ present, rtol=1e-5)


def test_state_round_trips_through_a_checkpoint(tmp_path) -> None:  # type: ignore[no-untyped-def]
    aggregator = MoDo()
    aggregator.aggregate(tf.constant(RANDOM["T=3"]))
    checkpoint = tf.train.Checkpoint(weights=aggregator.task_weights)
    path = checkpoint.write(str(tmp_path / "modo"))
    restored = MoDo()
    restored.build(3)
    tf.train.Checkpoint(weights=restored.task_weights).read(path).assert_consumed()
    np.testing.assert_array_equal(restored.task_weights.numpy(), aggregator.task_weights.numpy())


@pytest.mark.parametrize(("option", "value"), [("gamma", 0.0), ("rho", -1.0), ("gamma", float("nan"))])
def test_invalid_options(option: str, value: float) -> None:
    with pytest.raises(ValueError, match=option):
        MoDo(**{option: value})
