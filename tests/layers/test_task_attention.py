"""TaskAttention (MTAN's attention module) against a NumPy computation with the layer's weights."""

import numpy as np
import pytest
from helpers import check_layer

from mtl_keras.layers.task_attention import TaskAttention

EPSILON = 1e-3  # keras.layers.BatchNormalization's default


def _randomise(layer, rng):
    """Random kernels and BatchNormalization parameters and statistics (so every term matters)."""
    for weight in layer.weights:
        shape = tuple(weight.shape)
        if "moving_variance" in weight.path:
            weight.assign(rng.uniform(0.5, 2.0, size=shape).astype("float32"))
        else:
            weight.assign(rng.normal(size=shape).astype("float32"))


def _norm(x, bn):
    gamma, beta, mean, var = (np.asarray(w, np.float64) for w in bn.get_weights())
    return gamma * (x - mean) / np.sqrt(var + EPSILON) + beta


def _numpy_mask(layer, shared, previous=None):
    x = shared if previous is None else np.concatenate([shared, previous], axis=-1)
    x = x.astype(np.float64)
    hidden = np.maximum(_norm(x @ np.asarray(layer.hidden_dense.kernel, np.float64), layer.hidden_norm), 0)
    logits = _norm(hidden @ np.asarray(layer.mask_dense.kernel, np.float64), layer.mask_norm)
    return 1.0 / (1.0 + np.exp(-logits))


@pytest.mark.parametrize(
    ("shared_shape", "previous_shape", "mask_units"),
    [((3, 4, 4, 5), (3, 4, 4, 2), None), ((3, 4, 4, 5), None, 3), ((6, 7), (6, 4), 2), ((6, 7), None, None)],
)
def test_mask_and_output_match_numpy(shared_shape, previous_shape, mask_units):
    rng = np.random.default_rng(0)
    shared = rng.normal(size=shared_shape).astype("float32")
    previous = None if previous_shape is None else rng.normal(size=previous_shape).astype("float32")
    inputs = shared if previous is None else [shared, previous]
    layer = TaskAttention(mask_units)
    layer(inputs)
    _randomise(layer, rng)
    assert layer.hidden_dense.kernel.shape == (
        shared_shape[-1] + (previous_shape[-1] if previous_shape else 0),
        mask_units or shared_shape[-1],
    )
    expected_mask = _numpy_mask(layer, shared, previous)
    assert expected_mask.shape == shared.shape
    np.testing.assert_allclose(np.asarray(layer.attention_mask(inputs)), expected_mask, rtol=1e-5, atol=1e-6)
    out = np.asarray(layer(inputs, training=False))
    assert out.shape == shared.shape
    np.testing.assert_allclose(out, expected_mask * shared, rtol=1e-5, atol=1e-6)


def test_training_mode_normalises_with_the_batch_statistics():
    rng = np.random.default_rng(1)
    shared = rng.normal(size=(8, 3, 3, 4)).astype("float32")
    layer = TaskAttention(2)
    layer(shared)
    _randomise(layer, rng)
    x = shared.astype(np.float64) @ np.asarray(layer.hidden_dense.kernel, np.float64)
    axes = (0, 1, 2)
    gamma, beta = (np.asarray(w, np.float64) for w in layer.hidden_norm.get_weights()[:2])
    x = gamma * (x - x.mean(axes)) / np.sqrt(x.var(axes) + EPSILON) + beta
    x = np.maximum(x, 0) @ np.asarray(layer.mask_dense.kernel, np.float64)
    gamma, beta = (np.asarray(w, np.float64) for w in layer.mask_norm.get_weights()[:2])
    x = gamma * (x - x.mean(axes)) / np.sqrt(x.var(axes) + EPSILON) + beta
    expected = shared / (1.0 + np.exp(-x))
    np.testing.assert_allclose(np.asarray(layer(shared, training=True)), expected, rtol=1e-4, atol=1e-5)


def test_a_mask_forced_to_one_passes_the_shared_features_through():
    rng = np.random.default_rng(2)
    shared = rng.normal(size=(4, 5, 5, 3)).astype("float32")
    previous = rng.normal(size=(4, 5, 5, 6)).astype("float32")
    layer = TaskAttention()
    layer([shared, previous])
    _randomise(layer, rng)
    gamma, beta, mean, var = layer.mask_norm.get_weights()
    # γ = 0, β = 100: the logits are 100 wherever the hidden features are, σ(100) = 1 in float32.
    layer.mask_norm.set_weights([np.zeros_like(gamma), np.full_like(beta, 100.0), mean, var])
    np.testing.assert_array_equal(np.asarray(layer([shared, previous])), shared)


def test_config_and_keras_round_trip(tmp_path):
    rng = np.random.default_rng(3)
    shared = rng.normal(size=(2, 4, 4, 3)).astype("float32")
    previous = rng.normal(size=(2, 4, 4, 2)).astype("float32")
    layer = TaskAttention(mask_units=4, name="attention")
    assert layer.get_config()["mask_units"] == 4
    check_layer(layer, [shared, previous], tmp_path)
    check_layer(TaskAttention(name="dense_attention"), rng.normal(size=(3, 5)).astype("float32"), tmp_path)


@pytest.mark.parametrize(
    ("kwargs", "inputs", "message"),
    [
        ({"mask_units": 0}, None, "mask_units"),
        ({"mask_units": 2.5}, None, "mask_units"),
        ({}, [np.zeros((2, 4, 4, 3)), np.zeros((2, 2, 2, 3))], "resolution"),
        ({}, [np.zeros((2, 4, 4, 3)), np.zeros((2, 3))], "same rank"),
        ({}, [np.zeros((2, 3))] * 3, "shared, previous"),
    ],
)
def test_bad_arguments_and_inputs(kwargs, inputs, message):
    with pytest.raises(ValueError, match=message):
        layer = TaskAttention(**kwargs)
        layer([np.asarray(x, "float32") for x in inputs])
