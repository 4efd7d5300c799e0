"""FusedTowers: the same outputs and gradients as separate Towers holding its slices, per-tower dropout and
initialisation, config and .keras round trips, errors."""

from __future__ import annotations

import math

import helpers
import keras
import numpy as np
import pytest
import tensorflow as tf

from mtl_keras.layers.fused_towers import FusedTowers
from mtl_keras.layers.towers import Tower


def _towers_from_slices(fused: FusedTowers, input_shape: tuple[int, ...]) -> list[Tower]:
    """Separate Towers of the fused layer's shape, each holding its slice of the fused weights."""
    towers = []
    for k in range(fused.num_towers):
        tower = Tower(
            units=fused.units,
            output_units=fused.output_units,
            output_activation=fused.output_activation,
            activation=fused.activation,
        )
        tower.build(input_shape)
        kernels = [w.numpy()[k] for w in fused.weights if w.path.endswith("kernel")]
        biases = [w.numpy()[k, 0] for w in fused.weights if w.path.endswith("bias")]
        tower.set_weights([w for pair in zip(kernels, biases, strict=True) for w in pair])
        towers.append(tower)
    return towers


@pytest.mark.parametrize("list_input", [False, True])
@pytest.mark.parametrize(
    ("units", "output_units", "activation", "output_activation"),
    [((8, 4), 3, "tanh", "linear"), ((), 1, "relu", "sigmoid"), ((5,), 2, "relu", "softmax")],
)
def test_same_outputs_and_gradients_as_separate_towers(
    list_input: bool, units: tuple[int, ...], output_units: int, activation: str, output_activation: str
) -> None:
    rng = np.random.default_rng(0)
    num_towers, d = 3, 6
    fused = FusedTowers(num_towers, units, output_units, output_activation, activation)
    x = [tf.constant(rng.normal(size=(7, d)), tf.float32) for _ in range(num_towers if list_input else 1)]
    fused_input = x if list_input else x[0]
    fused.build([(7, d)] * num_towers if list_input else (7, d))
    for w in fused.weights:  # non-zero biases, so a wrong bias slice shows
        w.assign(rng.normal(size=w.shape).astype("float32") * 0.5)
    towers = _towers_from_slices(fused, (7, d))
    weights = tf.constant(rng.normal(size=(num_towers, 7, output_units)), tf.float32)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        fused_out = fused(fused_input)
        separate_out = [tower(x[k if list_input else 0]) for k, tower in enumerate(towers)]
        fused_loss = sum(tf.reduce_sum(weights[k] * out**2) for k, out in enumerate(fused_out))
        separate_loss = sum(tf.reduce_sum(weights[k] * out**2) for k, out in enumerate(separate_out))
    assert len(fused_out) == num_towers
    for a, b in zip(fused_out, separate_out, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)
    fused_grads = tape.gradient(fused_loss, fused.trainable_variables)
    for k, tower in enumerate(towers):
        tower_grads = tape.gradient(separate_loss, tower.trainable_variables)
        for fused_grad, tower_grad in zip(fused_grads, tower_grads, strict=True):
            fused_slice = fused_grad.numpy()[k]
            np.testing.assert_allclose(fused_slice.reshape(tower_grad.shape), tower_grad.numpy(), atol=1e-5)
    for a, b in zip(tape.gradient(fused_loss, x), tape.gradient(separate_loss, x), strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)


def test_the_gradient_of_one_output_touches_its_slice_only() -> None:
    fused = FusedTowers(4, (5,), 2)
    x = tf.constant(np.random.default_rng(1).normal(size=(6, 3)), tf.float32)
    with tf.GradientTape() as tape:
        out = fused(x)[2]
        loss = tf.reduce_sum(out)
    for grad in tape.gradient(loss, fused.trainable_variables):
        norms = np.abs(grad.numpy()).reshape(4, -1).sum(axis=1)
        assert norms[2] > 0 and np.all(norms[[0, 1, 3]] == 0)


def test_each_slice_is_initialised_as_a_dense_kernel() -> None:
    keras.utils.set_random_seed(0)
    fused = FusedTowers(8, (40,), 30)
    fused.build((None, 60))
    hidden, hidden_bias, output, output_bias = (w.numpy() for w in fused.weights)
    # Dense's Glorot-uniform limit sqrt(6 / (fan_in + fan_out)) of each slice, not of the (8, d, u) tensor.
    for kernel, (d_in, d_out) in ((hidden, (60, 40)), (output, (40, 30))):
        limit = math.sqrt(6.0 / (d_in + d_out))
        assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > 0.98 * limit
        np.testing.assert_allclose(kernel.var(), limit**2 / 3, rtol=0.05)  # variance of U(-l, l)
        assert not np.allclose(kernel[0], kernel[1])
    assert not hidden_bias.any() and not output_bias.any()


def test_dropout_masks_are_drawn_per_tower() -> None:
    fused = FusedTowers(3, (64,), 4, dropout=0.5)
    x = tf.constant(np.random.default_rng(2).normal(size=(16, 5)), tf.float32)
    fused.build(x.shape)
    for w in fused.weights:  # three identical towers
        w.assign(np.broadcast_to(w.numpy()[:1], w.shape))
    inference = [t.numpy() for t in fused(x, training=False)]
    np.testing.assert_allclose(inference[0], inference[1], atol=1e-6)
    np.testing.assert_allclose(inference[0], inference[2], atol=1e-6)
    training = [t.numpy() for t in fused(x, training=True)]
    # One mask shared by the towers would give identical outputs; independent masks differ.
    assert not np.allclose(training[0], training[1]) and not np.allclose(training[1], training[2])
    assert not np.allclose(training[0], inference[0])


def test_round_trips(tmp_path) -> None:
    x = np.random.default_rng(3).normal(size=(4, 6)).astype("float32")
    helpers.check_layer(FusedTowers(3, (5,), 2, dropout=0.2, name="fused"), x, tmp_path)
    helpers.check_layer(FusedTowers(2, (), 1, "sigmoid", name="fused_list"), [x, 2 * x], tmp_path)
    assert FusedTowers(2, [4], 3, dropout=0.1).get_config()["units"] == [4]


def test_errors_name_the_argument() -> None:
    with pytest.raises(ValueError, match="num_towers"):
        FusedTowers(0)
    with pytest.raises(ValueError, match="units"):
        FusedTowers(2, (4, 0))
    with pytest.raises(ValueError, match=r"num_towers=3 inputs. Received: 2"):
        FusedTowers(3).build([(None, 4), (None, 4)])
    with pytest.raises(ValueError, match=r"\(batch, d\)"):
        FusedTowers(2).build([(None, 4), (None, 5)])
    with pytest.raises(ValueError, match=r"\(batch, d\)"):
        FusedTowers(2).build((None, 4, 4))
    with pytest.raises(ValueError, match=r"tower index in \[0, 2\)"):
        layer = FusedTowers(2)
        layer.build((None, 3))
        layer.tower_weights(2)
