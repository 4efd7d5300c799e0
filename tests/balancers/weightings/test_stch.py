"""STCH (docs/methods.md, "STCH") against NumPy, and the concave front no linear weighting reaches."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import toy_data, toy_tasks

from mtl_keras import MultiTaskModel, Task, balancers, builders
from mtl_keras.balancers.weightings import STCH


def numpy_stch(losses, preference, mu, ideal, log_losses):
    """g(L) = T μ log Σ_{i present} exp(λ_i (f_i − z_i)/μ), float64, written from the paper's formula."""
    present = losses > 0
    f = np.log(losses[present]) if log_losses else losses[present]
    z = np.log(ideal[present]) if log_losses else ideal[present]
    a = preference[present] * (f - z) / mu
    return len(losses) * mu * (a.max() + np.log(np.exp(a - a.max()).sum()))


@pytest.mark.parametrize("log_losses", [True, False])
def test_weights_are_the_gradient_of_the_scalarisation(log_losses):
    losses = np.array([0.7, 1.9, 0.0, 0.4])  # task 2 has no labels in this step
    preference, ideal, mu = np.array([0.4, 0.1, 0.3, 0.2]), np.array([0.2, 0.5, 0.3, 0.1]), 0.3
    stch = STCH(preference=preference.tolist(), mu=mu, ideal_point=ideal.tolist(), log_losses=log_losses)
    stch.build(4)
    weights, offsets = stch.weigh(tf.constant(losses, tf.float32))
    expected = np.zeros(4)
    for i in (0, 1, 3):  # central differences of the NumPy scalarisation
        step = np.zeros(4)
        step[i] = 1e-6
        expected[i] = (
            numpy_stch(losses + step, preference, mu, ideal, log_losses)
            - numpy_stch(losses - step, preference, mu, ideal, log_losses)
        ) / 2e-6
    np.testing.assert_allclose(weights.numpy(), expected, rtol=1e-4, atol=1e-7)
    objective = np.sum(weights.numpy() * losses + offsets.numpy())
    assert objective == pytest.approx(numpy_stch(losses, preference, mu, ideal, log_losses), rel=1e-5)
    full = np.array([0.7, 1.9, 0.8, 0.4])
    assert float(stch.scalarize(full)) == pytest.approx(
        numpy_stch(full, preference, mu, ideal, log_losses), rel=1e-5
    )


def concave_front_model():
    """x = sigmoid(θ) ∈ (0, 1) from θ = 0; L_a = |x − 0| = x, L_b = |x² − 1| = 1 − x²: the front
    {(x, 1 − x²)} is concave."""
    inputs = keras.Input((1,))
    x = keras.layers.Dense(1, use_bias=False, activation="sigmoid", kernel_initializer="zeros", name="x")(
        inputs
    )
    return MultiTaskModel(
        inputs,
        {"a": x, "b": x * x},
        tasks=[Task("a", "regression", loss="mae"), Task("b", "regression", loss="mae")],
        shared_layers=["x"],
    )


def trained_x(balancer, steps=300):
    model = concave_front_model()
    model.compile(keras.optimizers.Adam(0.1), balancer=balancer)
    data = np.ones((steps, 1), "float32")
    model.fit(data, {"a": np.zeros(steps), "b": np.ones(steps)}, batch_size=1, verbose=0, shuffle=False)
    return float(keras.ops.sigmoid(model.get_layer("x").kernel)[0, 0])


def test_stch_reaches_a_point_of_a_concave_front_no_linear_weighting_reaches():
    grid = np.linspace(0.0, 1.0, 100001)
    front = np.stack([grid, 1 - grid**2], axis=1)
    # No linear weighting w·L has a minimiser inside (0, 1): w_a x + w_b (1 − x²) is concave in x.
    for w_a in np.linspace(0.0, 1.0, 101):
        best = grid[np.argmin(front @ np.array([w_a, 1 - w_a]))]
        assert best in (0.0, 1.0)
    # Trained linear weightings end at an endpoint (from x = 1/2 on either side of w_a = w_b).
    for weights, end in (([0.3, 0.7], 1.0), ([0.7, 0.3], 0.0)):
        assert trained_x(balancers.get("static", weights=weights)) == pytest.approx(end, abs=0.05)
    # STCH ends at its scalarisation's minimiser on the front, strictly inside.
    preference, mu = np.array([1.0, 1.0]), 0.05
    scalarised = [numpy_stch(p, preference, mu, np.zeros(2), False) for p in front[1:-1]]
    target = grid[1:-1][np.argmin(scalarised)]
    assert 0.55 < target < 0.65  # near the Tchebycheff point x = 1 − x², x = 0.618
    stch = STCH(preference=preference.tolist(), mu=mu, ideal_point=[0.0, 0.0], log_losses=False)
    assert trained_x(stch) == pytest.approx(target, abs=0.01)


def test_warmup_sets_the_ideal_point_to_the_last_warmup_epoch_mean(tmp_path):
    x, y = toy_data(n=64)
    model = builders.hard_sharing(toy_tasks(), 12, trunk=(8,))
    model.compile(keras.optimizers.Adam(0.01), balancer=STCH(warmup_epochs=2))
    history = model.fit(x, y, epochs=3, batch_size=32, verbose=0).history
    stch = model.balancer.weighting
    means = [history[f"{t}_loss"][1] for t in "abc"]
    np.testing.assert_allclose(stch.ideal.numpy(), means, rtol=1e-6)
    assert float(stch.ready.numpy()) == 1.0
    # The logged objective is Σ_i log L_i in the warm-up, then g (each epoch's mean over its batches).
    # (the epoch mean of Σ log L_i is at most Σ log of the epoch-mean losses, by Jensen's inequality)
    assert history["loss"][0] <= np.sum(np.log([history[f"{t}_loss"][0] for t in "abc"])) + 1e-6
    losses = np.array([0.5, 0.2, 0.9])
    weights, offsets = stch.weigh(tf.constant(losses, tf.float32), training=False)
    softmax = np.exp(np.log(losses / means)) / np.exp(np.log(losses / means)).sum()
    np.testing.assert_allclose(weights.numpy(), 3 * softmax / losses, rtol=1e-5)
    objective = float(tf.reduce_sum(weights * losses + offsets))
    assert objective == pytest.approx(numpy_stch(losses, np.ones(3), 1.0, np.array(means), True), rel=1e-5)
    path = str(tmp_path / "stch.keras")
    model.save(path)
    loaded = keras.models.load_model(path).balancer.weighting
    assert loaded.get_config() == stch.get_config()
    for a, b in zip(stch.variables, loaded.variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"mu": 0.0}, "mu"),
        ({"preference": [0.0, 0.0]}, "preference"),
        ({"preference": [1.0, -1.0]}, "preference"),
        ({"ideal_point": [0.0, 1.0]}, "positive `ideal_point`"),
        ({"warmup_epochs": 0}, "warmup_epochs"),
    ],
)
def test_bad_options_name_the_option(options, message):
    with pytest.raises(ValueError, match=message):
        STCH(**options)


def test_option_lengths_must_match_the_tasks():
    with pytest.raises(ValueError, match="`preference` with 3 values"):
        STCH(preference=[1.0, 1.0]).build(3)
