"""ExcessMTL (docs/methods.md, "ExcessMTL") against a NumPy run of the paper's estimate on a quadratic toy."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from mtl_keras import MultiTaskModel, Task, balancers
from mtl_keras.balancers.weightings import ExcessMTL

SCALES = np.array([1.0, 3.0])  # L_a = θ_1², L_b = 9 θ_2²: task b converges 9× faster under SGD


def quadratic_model():
    inputs = keras.Input((1,))
    theta = keras.layers.Dense(2, use_bias=False, kernel_initializer="ones", name="theta")(inputs)
    return MultiTaskModel(
        inputs,
        {"a": theta[:, 0:1] * float(SCALES[0]), "b": theta[:, 1:2] * float(SCALES[1])},
        tasks=[Task("a", "regression", loss="mse"), Task("b", "regression", loss="mse")],
        shared_layers=["theta"],
    )


def numpy_excess_mtl(steps, lr, step_size):
    """SGD on Σ w_i L_i, L_i = (s_i θ_i)², with ExcessMTL's weights written from the paper: Adagrad
    accumulators A_i += g_i², ε_i = Σ g_i² / √(A_i + 1e-7), from the second step w_i ← w_i exp(η ε_i/ε_i(0))
    renormalised to Σ w = T."""
    theta, w = np.ones(2), np.ones(2)
    accumulator, initial = np.zeros((2, 2)), None
    history = []
    for _ in range(steps):
        grads = np.zeros((2, 2))
        grads[0, 0], grads[1, 1] = 2 * SCALES[0] ** 2 * theta[0], 2 * SCALES[1] ** 2 * theta[1]
        accumulator += grads**2
        risk = (grads**2 / np.sqrt(accumulator + 1e-7)).sum(axis=1)
        if initial is None:
            initial = risk
        else:
            w = w * np.exp(step_size * risk / initial)
            w = 2 * w / w.sum()
        theta = theta - lr * (w[0] * grads[0] + w[1] * grads[1])
        history.append(w)
    return np.array(history), theta


def test_excess_mtl_matches_numpy_and_the_task_far_from_its_optimum_gains_weight(tmp_path):
    steps, lr, step_size = 60, 0.02, 0.5
    model = quadratic_model()
    model.compile(keras.optimizers.SGD(lr), balancer=ExcessMTL(step_size=step_size))
    seen = []
    record = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda *_, **__: seen.append(model.balancer.weighting.weights().numpy())
    )
    data = np.ones((steps, 1), "float32")
    zeros = np.zeros(steps, "float32")
    model.fit(data, {"a": zeros, "b": zeros}, batch_size=1, verbose=0, shuffle=False, callbacks=[record])
    expected, theta = numpy_excess_mtl(steps, lr, step_size)
    np.testing.assert_allclose(np.array(seen), expected, rtol=1e-4)
    np.testing.assert_allclose(model.get_layer("theta").kernel.numpy()[0], theta, rtol=1e-4, atol=1e-7)
    # Task a, 9× slower, keeps more of its excess risk and gains weight; Σ w stays 2.
    final = seen[-1]
    assert final[0] > 1.2 > 0.8 > final[1]
    assert final.sum() == pytest.approx(2.0, rel=1e-5)
    # The weights and the per-parameter accumulators are saved and restored.
    path = str(tmp_path / "excess.keras")
    model.save(path)
    loaded = keras.models.load_model(path).balancer.weighting
    assert loaded.get_config() == {"step_size": step_size}
    assert [v.name for v in loaded.variables] == [v.name for v in model.balancer.weighting.variables]
    for a, b in zip(model.balancer.weighting.variables, loaded.variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_a_task_without_labels_keeps_its_weight_and_accumulator():
    excess = ExcessMTL(step_size=0.1)
    excess.build(3)
    excess.build_blocks([(2,)])
    steps = [
        ([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]], [1.0, 1.0, 1.0]),
        ([[0.5, 0.0], [0.0, 1.0], [0.0, 0.0]], [0.5, 0.5, 0.0]),  # task 2 has no labels
    ]
    excess.observe_gradients([[tf.constant(g)] for g in steps[0][0]])
    excess.weigh(tf.constant(steps[0][1]))
    accumulator = excess.accumulators[0].numpy()[2].copy()
    excess.observe_gradients([[tf.constant(g)] for g in steps[1][0]])
    weights, _ = excess.weigh(tf.constant(steps[1][1]))
    np.testing.assert_array_equal(excess.accumulators[0].numpy()[2], accumulator)
    assert weights.numpy()[2] == 1.0
    assert weights.numpy()[:2].sum() == pytest.approx(2.0, rel=1e-6)


def test_bad_options_and_shapes_are_named():
    with pytest.raises(ValueError, match="step_size"):
        ExcessMTL(step_size=0.0)
    excess = balancers.get("excess_mtl")
    excess.build(2)
    excess.build_blocks([(3, 4)])
    with pytest.raises(ValueError, match="shapes"):
        excess.build_blocks([(3, 5)])
