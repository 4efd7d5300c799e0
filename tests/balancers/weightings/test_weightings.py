"""Loss weightings against hand computations and the papers' stated behaviour."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import toy_data, toy_tasks

from mtl_keras import Task, balancers, builders


def test_registry_names_and_errors():
    assert {"static", "uncertainty", "dwa", "rlw", "gradnorm", "db_mtl", "inverse_validation"} <= set(
        balancers.WEIGHTINGS.names()
    )
    with pytest.raises(ValueError, match="Did you mean 'uncertainty'"):
        balancers.get("uncertainity")


def test_uncertainty_reaches_exp_s_equal_loss():
    """On fixed losses, minimising Σ L/(2e^s) + s/2 over s gives e^s = L (Kendall et al.)."""
    losses = tf.constant([0.5, 2.0, 8.0])
    weighting = balancers.get("uncertainty")
    weighting.build(3)
    optimizer = keras.optimizers.Adam(0.05)
    for _ in range(1500):
        with tf.GradientTape() as tape:
            weights, offsets = weighting.weigh(losses)
            objective = tf.reduce_sum(weights * losses + offsets)
        grads = tape.gradient(objective, [weighting.log_variance.value])
        optimizer.apply(grads, [weighting.log_variance])
    np.testing.assert_allclose(np.exp(weighting.log_variance.numpy()), losses.numpy(), rtol=1e-3)


def test_uncertainty_trains_inside_the_model_and_is_saved(tmp_path):
    x, y = toy_data(n=128)
    model = builders.hard_sharing(toy_tasks(), 12, trunk=(8,))
    model.compile(keras.optimizers.Adam(0.05), balancer="uncertainty")
    history = model.fit(x, y, epochs=2, batch_size=32, verbose=0).history
    s = model.balancer.weighting.log_variance.numpy()
    assert np.all(s != 0)
    assert history["a_weight"][-1] == pytest.approx(0.5 * np.exp(-s[0]), rel=0.2)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(loaded.balancer.weighting.log_variance.numpy(), s)


def test_dwa_matches_hand_computation():
    dwa = balancers.get("dwa", temperature=2.0)
    dwa.build(2)
    dwa.on_epoch_end(0, np.array([1.0, 4.0]), {})
    np.testing.assert_array_equal(dwa.weights().numpy(), [1.0, 1.0])  # first two epochs: λ = 1
    dwa.on_epoch_end(1, np.array([0.5, 3.0]), {})
    r = np.array([0.5 / 1.0, 3.0 / 4.0])
    expected = 2 * np.exp(r / 2) / np.exp(r / 2).sum()
    np.testing.assert_allclose(dwa.weights().numpy(), expected, rtol=1e-6)


def test_dwa_updates_during_fit():
    x, y = toy_data(n=64)
    model = builders.hard_sharing(toy_tasks(), 12, trunk=(8,))
    model.compile("adam", balancer="dwa")
    history = model.fit(x, y, epochs=3, batch_size=32, verbose=0).history
    assert history["a_weight"][:2] == [1.0, 1.0]
    assert history["a_weight"][2] != 1.0
    assert sum(history[f"{t}_weight"][2] for t in "abc") == pytest.approx(3.0, rel=1e-5)


def test_rlw_is_a_seeded_softmax_of_normals():
    rlw = balancers.get("rlw", seed=3)
    rlw.build(4)
    draws = [rlw.weigh(tf.ones(4))[0].numpy() for _ in range(3)]
    for d in draws:
        assert d.sum() == pytest.approx(1.0, rel=1e-6) and np.all(d > 0)
    assert not np.allclose(draws[0], draws[1])
    again = balancers.get("rlw", seed=3)
    again.build(4)
    np.testing.assert_array_equal(again.weigh(tf.ones(4))[0].numpy(), draws[0])
    expected = tf.nn.softmax(tf.random.stateless_normal([4], seed=[3, 0])).numpy()
    np.testing.assert_allclose(draws[0], expected, rtol=1e-6)


def test_inverse_validation_weights():
    weighting = balancers.get("inverse_validation")
    weighting.task_names = ["sin", "cos"]
    weighting.build(2)
    weighting.on_epoch_end(0, np.array([1.0, 1.0]), {"val_sin_loss": 0.1, "val_cos_loss": 0.3})
    np.testing.assert_allclose(weighting.weights().numpy(), [1.5, 0.5], rtol=1e-6)
    with pytest.raises(ValueError, match="val_sin_mae"):
        bad = balancers.get("inverse_validation", metric="mae")
        bad.task_names = ["sin", "cos"]
        bad.build(2)
        bad.on_epoch_end(0, np.array([1.0, 1.0]), {"val_sin_loss": 0.1, "val_cos_loss": 0.3})


def test_db_mtl_first_step_weights_match_a_plain_tape():
    x, y = toy_data(n=64)
    model = builders.hard_sharing(toy_tasks(), 12, trunk=(8,))
    model.compile(keras.optimizers.SGD(0.0), balancer="db_mtl")
    # Independent: per-task gradient norms of the shared variables, from a plain tape on the same batch.
    with tf.GradientTape(persistent=True) as tape:
        p = model(x, training=True)
        losses = [
            tf.reduce_mean(keras.losses.binary_crossentropy(y["a"][:, None], p["a"])),
            tf.reduce_mean(keras.losses.mean_squared_error(y["b"][:, None], p["b"])),
            tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y["c"], p["c"])),
        ]
    norms = []
    for loss in losses:
        grads = tape.gradient(loss, [v.value for v in model.shared_variables])
        norms.append(np.sqrt(sum(float(tf.reduce_sum(g * g)) for g in grads)))
    losses = np.array([float(v) for v in losses])
    log_norms = np.array(norms) / losses
    expected = (log_norms.max() / log_norms) / losses
    logs = model.train_on_batch(x, y, return_dict=True)
    np.testing.assert_allclose([logs[f"{t}_weight"] for t in "abc"], expected, rtol=1e-4)


def test_db_mtl_update_is_the_gradient_of_the_weighted_sum():
    """DB-MTL reuses the per-task gradients it took norms of for the shared update: one SGD step must move
    every variable (shared, heads) by lr · ∇(Σ λ_i L_i) computed on a plain tape, with λ from the logs."""
    x, y = toy_data(n=64)
    model = builders.hard_sharing(toy_tasks(), 12, trunk=(8, 6))
    model.compile(keras.optimizers.SGD(0.1), balancer="db_mtl")
    before = [v.numpy() for v in model.trainable_variables]
    with tf.GradientTape() as tape:
        p = model(x, training=True)
        losses = [
            tf.reduce_mean(keras.losses.binary_crossentropy(y["a"][:, None], p["a"])),
            tf.reduce_mean(keras.losses.mean_squared_error(y["b"][:, None], p["b"])),
            tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y["c"], p["c"])),
        ]
    logs = model.train_on_batch(x, y, return_dict=True)
    weights = [logs[f"{t}_weight"] for t in "abc"]
    with tape:
        objective = tf.add_n([w * loss for w, loss in zip(weights, losses, strict=True)])
    grads = tape.gradient(objective, [v.value for v in model.trainable_variables])
    for variable, start, grad in zip(model.trainable_variables, before, grads, strict=True):
        np.testing.assert_allclose(variable.numpy(), start - 0.1 * grad.numpy(), rtol=1e-4, atol=1e-6)


def test_gradnorm_toy_raises_the_weight_of_the_small_task():
    """docs/methods.md, "GradNorm toy": σ = (1, 100), α = 0.12 — the σ = 1 task's weight rises above the
    σ = 100 task's."""
    rng = np.random.default_rng(0)
    n, d_in, d_out = 2048, 250, 100
    b = rng.normal(0.0, np.sqrt(10.0), size=(d_out, d_in))
    x = rng.normal(size=(n, d_in)).astype("float32")
    y = {}
    for i, sigma in enumerate((1.0, 100.0)):
        eps = rng.normal(0.0, np.sqrt(3.5), size=(d_out, d_in))
        y[f"task_{i}"] = (sigma * np.tanh(x @ (b + eps).T)).astype("float32")
    tasks = [Task("task_0", units=d_out), Task("task_1", units=d_out)]
    keras.utils.set_random_seed(0)
    model = builders.hard_sharing(tasks, d_in, trunk=(100, 100, 100, 100), tower_units=())
    model.compile(keras.optimizers.Adam(1e-3), balancer=balancers.get("gradnorm", alpha=0.12))
    history = model.fit(x, y, epochs=4, batch_size=128, verbose=0).history
    w0, w1 = history["task_0_weight"][-1], history["task_1_weight"][-1]
    assert w0 > w1
    final = model.balancer.weighting.weights().numpy()
    assert final.sum() == pytest.approx(2.0, rel=1e-5)


def test_loss_weights_and_a_non_static_weighting_are_refused():
    model = builders.hard_sharing(toy_tasks(), 12, trunk=(8,))
    with pytest.raises(ValueError, match="cannot be combined"):
        model.compile("adam", loss_weights={"a": 2.0}, balancer="uncertainty")


def test_gradnorm_records_the_initial_loss_of_a_task_missing_from_the_first_batch():
    """A task without labels in the first batch (loss 0) gets L_i(0) from its first labelled batch. With equal
    losses and gradient norms from then on, every training rate is 1 and the target equals G_i, so the weights
    stay at 1 (sign(0) = 0). Recording L_b(0) = 0 gave task b a rate of 0 and pushed its weight to 1e-6."""
    gradnorm = balancers.get("gradnorm", alpha=1.5)
    gradnorm.build(2)
    gradnorm.weigh(tf.constant([1.0, 0.0]), gradient_norms=tf.constant([1.0, 0.0]))
    for _ in range(50):
        gradnorm.weigh(tf.constant([1.0, 1.0]), gradient_norms=tf.constant([1.0, 1.0]))
    np.testing.assert_allclose(gradnorm.initial_losses.numpy(), [1.0, 1.0])
    np.testing.assert_allclose(gradnorm.weights().numpy(), [1.0, 1.0], atol=1e-6)
