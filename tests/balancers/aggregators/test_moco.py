"""MoCo against the paper's update rules written here with NumPy (projection onto the simplex by bisection
on the threshold) over several steps of J, its representation-level (tracked Gram) form, absent tasks, its
claimed behaviour (a fixed J and β = 1: the weights converge to MGDA's min-norm weights, from SLSQP) and
its state saved with the model."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from hard_jacobians import ALL, HARD, RANDOM
from helpers import toy_data, toy_tasks
from scipy import optimize

from mtl_keras import builders
from mtl_keras.balancers.aggregators import MoCo

OPTIONS = {"beta": 0.5, "beta_decay": 0.5, "gamma": 0.3, "gamma_decay": 0.5, "rho": 0.1}


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


def moco_numpy(
    jacobians: list[np.ndarray], beta: float, beta_decay: float, gamma: float, gamma_decay: float, rho: float
) -> list[np.ndarray]:
    """Algorithm 1 of the paper: y ← y − β_k (y − J_k), λ ← Π(λ − γ_k (Y Yᵀ + ρ I) λ), d_k = Yᵀ λ,
    β_k = β / k^beta_decay, γ_k = γ / k^gamma_decay, Y_0 = 0, λ_0 = 1/T."""
    num_tasks = len(jacobians[0])
    tracked = np.zeros_like(jacobians[0])
    weights = np.full(num_tasks, 1.0 / num_tasks)
    updates = []
    for k, jacobian in enumerate(jacobians, start=1):
        tracked = tracked - beta / k**beta_decay * (tracked - jacobian)
        step = gamma / k**gamma_decay
        moved = weights - step * ((tracked @ tracked.T) @ weights + rho * weights)
        weights = project(moved, 1.0)
        updates.append(tracked.T @ weights)
    return updates


def jacobian_sequence(jacobian: np.ndarray, steps: int, seed: int = 0) -> list[np.ndarray]:
    """``steps`` noisy copies of J (scaled to a largest row norm of 1), as mini-batch Jacobians would be."""
    rng = np.random.default_rng(seed)
    base = jacobian / np.max(np.linalg.norm(jacobian, axis=1))
    return [
        base + 0.1 * rng.normal(size=base.shape) * (np.linalg.norm(base, axis=1) > 0)[:, None]
        for _ in range(steps)
    ]


def tracking(num_tasks: int, num_params: int, **options: float) -> MoCo:
    """A parameter-level MoCo: built with one Jacobian block of ``num_params`` columns."""
    aggregator = MoCo(**options)
    aggregator.build(num_tasks)
    aggregator.build_blocks([(num_params,)])
    return aggregator


@pytest.mark.parametrize("name", [name for name in ALL if name != "zero row"])
def test_matches_the_paper_recursion(name: str) -> None:
    jacobians = jacobian_sequence(ALL[name], 5)
    aggregator = tracking(*jacobians[0].shape, **OPTIONS)
    step = tf.function(aggregator.aggregate)
    for jacobian, expected in zip(jacobians, moco_numpy(jacobians, **OPTIONS), strict=True):
        result = step(tf.constant(jacobian, tf.float32)).numpy()
        np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())


def test_blocks_track_the_same_jacobian() -> None:
    """Y split over variables of shapes (3,) and (2, 2) gives the same updates as one (7,) block."""
    jacobians = jacobian_sequence(RANDOM["T=3"], 3)
    blocks = MoCo(**OPTIONS)
    blocks.build(3)
    blocks.build_blocks([(3,), (2, 2)])
    for jacobian, expected in zip(jacobians, moco_numpy(jacobians, **OPTIONS), strict=True):
        parts = blocks.aggregate_blocks(
            [tf.constant(jacobian[:, :3]), tf.constant(jacobian[:, 3:].reshape(3, 2, 2))]
        )
        result = np.concatenate([parts[0].numpy(), parts[1].numpy().reshape(-1)])
        np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-7)
    assert [tuple(v.shape) for v in blocks.tracked_jacobian] == [(3, 3), (3, 2, 2)]


def test_representation_level_tracks_the_gram_matrix() -> None:
    """Without build_blocks: Ĝ ← Ĝ − β_k (Ĝ − G_k), the weight step on Ĝ, d = J_kᵀ λ."""
    jacobians = jacobian_sequence(RANDOM["T=5"], 4, seed=3)
    aggregator = MoCo(**OPTIONS)
    tracked, weights = np.zeros((5, 5)), np.full(5, 0.2)
    for k, jacobian in enumerate(jacobians, start=1):
        tracked = tracked - 0.5 / k**0.5 * (tracked - jacobian @ jacobian.T)
        weights = project(weights - 0.3 / k**0.5 * (tracked @ weights + 0.1 * weights), 1.0)
        result = aggregator.aggregate(tf.constant(jacobian)).numpy()
        np.testing.assert_allclose(result, jacobian.T @ weights, rtol=1e-5, atol=1e-7)


def test_absent_task_keeps_its_tracked_row_and_share() -> None:
    jacobians = jacobian_sequence(RANDOM["T=3"], 2)
    aggregator = tracking(3, 7, **OPTIONS)
    aggregator.aggregate(tf.constant(jacobians[0]))
    before_row = aggregator.tracked_jacobian[0].numpy()[1].copy()
    before = aggregator.task_weights.numpy().astype(np.float64)
    absent = jacobians[1].copy()
    absent[1] = 0.0
    result = aggregator.aggregate(tf.constant(absent)).numpy()
    tracked = aggregator.tracked_jacobian[0].numpy().astype(np.float64)
    np.testing.assert_array_equal(tracked[1], before_row)
    # The present rows move with β_2 = 0.5/√2; the weight step is over tasks 0 and 2 on their share.
    first = 0.5 * jacobians[0]
    np.testing.assert_allclose(
        tracked[[0, 2]], first[[0, 2]] - 0.5 / np.sqrt(2) * (first - absent)[[0, 2]], rtol=1e-5
    )
    present = tracked[[0, 2]]
    mass = before[0] + before[2]
    moved = before[[0, 2]] - 0.3 / np.sqrt(2) * (present @ present.T @ before[[0, 2]] + 0.1 * before[[0, 2]])
    weights = project(moved, mass)
    state = aggregator.task_weights.numpy()
    np.testing.assert_allclose(state[1], before[1], rtol=1e-6)
    np.testing.assert_allclose(state[[0, 2]], weights, rtol=1e-5)
    np.testing.assert_allclose(result, weights / mass @ present, rtol=1e-5)


def test_all_zero_jacobian_gives_a_zero_update() -> None:
    aggregator = tracking(3, 7)
    result = aggregator.aggregate(tf.zeros([3, 7])).numpy()
    np.testing.assert_array_equal(result, np.zeros(7))
    np.testing.assert_allclose(aggregator.task_weights.numpy(), np.full(3, 1.0 / 3.0))


@pytest.mark.parametrize("name", ["T=3", "rank < T, 0 outside the hull"])
def test_fixed_jacobian_converges_to_the_min_norm_weights(name: str) -> None:
    """β = 1 (Y = J), constant γ, ρ = 0: λ converges to MGDA's min-norm weights (computed by SLSQP)."""
    jacobian = ALL[name] / np.max(np.linalg.norm(ALL[name], axis=1))
    gram = jacobian @ jacobian.T
    best = optimize.minimize(
        lambda w: w @ gram @ w,
        np.full(3, 1.0 / 3.0),
        bounds=[(0.0, 1.0)] * 3,
        constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0}],
        method="SLSQP",
        options={"ftol": 1e-15},
    ).x
    aggregator = tracking(3, 7, beta=1.0, beta_decay=0.0, gamma=0.5, gamma_decay=0.0, rho=0.0)
    step = tf.function(aggregator.aggregate)
    for _ in range(400):
        result = step(tf.constant(jacobian)).numpy()
    np.testing.assert_allclose(result, best @ jacobian, atol=1e-5)
    np.testing.assert_allclose(
        aggregator.task_weights.numpy() @ gram @ aggregator.task_weights.numpy(),
        best @ gram @ best,
        rtol=1e-4,
    )


def test_state_is_saved_with_the_model(tmp_path) -> None:  # type: ignore[no-untyped-def]
    keras.utils.set_random_seed(0)
    x, y = toy_data(n=64, seed=0)
    model = builders.hard_sharing(toy_tasks(), 12, trunk=(8,), tower_units=(4,))
    model.compile(keras.optimizers.Adam(1e-2), balancer="moco")
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    aggregator = model.balancer.aggregator
    assert [tuple(v.shape) for v in aggregator.tracked_jacobian] == [
        (3, *v.shape) for v in model.shared_variables
    ]
    model.save(tmp_path / "moco.keras")
    loaded = keras.models.load_model(tmp_path / "moco.keras").balancer.aggregator
    for a, b in zip(aggregator.variables, loaded.variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert int(loaded.iterations.numpy()) == 2


def test_representation_level_trains() -> None:
    x, y = toy_data(n=64, seed=0)
    model = builders.hard_sharing(toy_tasks(), 12, trunk=(8,), tower_units=(4,))
    model.compile(keras.optimizers.Adam(1e-2), balancer="moco", balancer_level="rep")
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    aggregator = model.balancer.aggregator
    assert aggregator.tracked_jacobian == [] and aggregator.gramian_based
    assert np.abs(aggregator.tracked_gram.numpy()).sum() > 0


@pytest.mark.parametrize(
    ("option", "value"),
    [("beta", 0.0), ("beta", 1.5), ("gamma", 0.0), ("rho", -1.0), ("beta_decay", float("nan"))],
)
def test_invalid_options(option: str, value: float) -> None:
    with pytest.raises(ValueError, match=option):
        MoCo(**{option: value})


def test_hard_zero_row_case_leaves_the_absent_row_at_zero() -> None:
    aggregator = tracking(3, 7)
    result = aggregator.aggregate(tf.constant(HARD["zero row"])).numpy()
    assert np.all(np.isfinite(result))
    np.testing.assert_array_equal(aggregator.tracked_jacobian[0].numpy()[1], np.zeros(7))
