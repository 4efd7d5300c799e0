import re

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import check_layer

from mtl_keras.layers.cross_stitch import CrossStitch


def _inputs(num_tasks, shape, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=shape).astype("float32") for _ in range(num_tasks)]


@pytest.mark.parametrize(
    ("num_tasks", "shape", "options"),
    [
        (3, (4, 5), {}),  # Dense activations
        (2, (2, 4, 4, 3), {"lr_multiplier": 100.0}),  # Conv feature maps
        (2, (4, 6), {"num_subspaces": 2, "diagonal": 0.7}),  # sluice subspaces
        (1, (4, 5), {}),
    ],
)
def test_round_trip(num_tasks, shape, options, tmp_path):
    check_layer(CrossStitch(num_tasks, **options), _inputs(num_tasks, shape), tmp_path)


@pytest.mark.parametrize(
    ("num_tasks", "expected"),
    [
        (1, [[1.0]]),
        (2, [[0.9, 0.1], [0.1, 0.9]]),
        (3, [[0.9, 0.05, 0.05], [0.05, 0.9, 0.05], [0.05, 0.05, 0.9]]),
        (5, [[0.9 if i == j else 0.025 for j in range(5)] for i in range(5)]),
    ],
)
@pytest.mark.parametrize("lr_multiplier", [1.0, 10.0, 1000.0])
def test_alpha_starts_at_diagonal_0_9_and_off_diagonal_0_1_over_t_minus_1(num_tasks, expected, lr_multiplier):
    layer = CrossStitch(num_tasks, lr_multiplier=lr_multiplier)
    layer(_inputs(num_tasks, (2, 3)))
    np.testing.assert_allclose(np.asarray(layer.alpha), expected, rtol=1e-6)
    np.testing.assert_allclose(layer.theta.numpy(), np.asarray(expected) / lr_multiplier, rtol=1e-6)


def test_alpha_of_subspaces_is_the_task_alpha_on_each_subspace():
    layer = CrossStitch(2, num_subspaces=2)
    layer(_inputs(2, (2, 4)))
    # index i·G + g: (task 0, sub 0), (task 0, sub 1), (task 1, sub 0), (task 1, sub 1)
    expected = [[0.9, 0, 0.1, 0], [0, 0.9, 0, 0.1], [0.1, 0, 0.9, 0], [0, 0.1, 0, 0.9]]
    np.testing.assert_allclose(np.asarray(layer.alpha), expected, rtol=1e-6)


@pytest.mark.parametrize("shape", [(5, 4), (3, 4, 4, 2)])
def test_outputs_mix_inputs_with_alpha(shape):
    num_tasks = 3
    layer = CrossStitch(num_tasks, lr_multiplier=4.0)
    xs = _inputs(num_tasks, shape)
    layer(xs)
    alpha = np.random.default_rng(1).normal(size=(num_tasks, num_tasks)).astype("float32")
    layer.theta.assign(alpha / 4.0)
    outputs = layer(xs)
    for i in range(num_tasks):
        expected = sum(alpha[i, j] * xs[j] for j in range(num_tasks))
        np.testing.assert_allclose(np.asarray(outputs[i]), expected, rtol=1e-5, atol=1e-5)


def test_subspace_outputs_mix_subspaces():
    num_tasks, g, width = 2, 3, 6
    layer = CrossStitch(num_tasks, num_subspaces=g)
    xs = _inputs(num_tasks, (4, width))
    layer(xs)
    alpha = np.random.default_rng(2).normal(size=(num_tasks * g, num_tasks * g)).astype("float32")
    layer.theta.assign(alpha / layer.lr_multiplier)
    outputs = layer(xs)
    part = width // g
    for i in range(num_tasks):
        for s in range(g):
            expected = sum(
                alpha[i * g + s, j * g + h] * xs[j][:, h * part : (h + 1) * part]
                for j in range(num_tasks)
                for h in range(g)
            )
            got = np.asarray(outputs[i])[:, s * part : (s + 1) * part]
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def _alpha_step(lr_multiplier, optimizer):
    layer = CrossStitch(3, lr_multiplier=lr_multiplier)
    xs = _inputs(3, (8, 4))
    weights = _inputs(3, (8, 4), seed=5)
    layer(xs)
    before = np.asarray(layer.alpha)
    with tf.GradientTape() as tape:
        outputs = layer(xs)
        loss = sum(tf.reduce_sum(o * w) for o, w in zip(outputs, weights, strict=True))
    grads = tape.gradient(loss, [v.value for v in layer.trainable_variables])
    optimizer.apply(grads, layer.trainable_variables)
    return np.asarray(layer.alpha) - before


def test_lr_multiplier_moves_alpha_m_times_faster_with_adam():
    base = _alpha_step(1.0, keras.optimizers.Adam(1e-3))
    fast = _alpha_step(100.0, keras.optimizers.Adam(1e-3))
    assert np.all(np.abs(base) > 1e-4)
    np.testing.assert_allclose(fast, 100.0 * base, rtol=1e-3)


def test_lr_multiplier_moves_alpha_m_squared_times_faster_with_sgd():
    base = _alpha_step(1.0, keras.optimizers.SGD(1e-4))
    fast = _alpha_step(10.0, keras.optimizers.SGD(1e-4))
    np.testing.assert_allclose(fast, 100.0 * base, rtol=1e-3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_tasks": 0}, "Expected `num_tasks` to be a positive integer. Received: num_tasks=0"),
        ({"num_tasks": 2, "lr_multiplier": 0}, "Expected `lr_multiplier` to be a positive number"),
        ({"num_tasks": 2, "lr_multiplier": "fast"}, "lr_multiplier"),
        ({"num_tasks": 2, "diagonal": 1.5}, "Expected `diagonal` to be a number in"),
        ({"num_tasks": 2, "num_subspaces": 0}, "num_subspaces"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        CrossStitch(**kwargs)


@pytest.mark.parametrize(
    ("layer", "inputs", "message"),
    [
        (CrossStitch(3), _inputs(2, (2, 4)), "`num_tasks`=3"),
        (CrossStitch(2), [np.zeros((2, 4), "float32"), np.zeros((2, 5), "float32")], "same shape"),
        (CrossStitch(2, num_subspaces=3), _inputs(2, (2, 4)), "divisible by `num_subspaces`"),
    ],
)
def test_bad_inputs(layer, inputs, message):
    with pytest.raises(ValueError, match=message):
        layer(inputs)
