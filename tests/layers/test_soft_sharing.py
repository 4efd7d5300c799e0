import itertools
import re

import numpy as np
import pytest
from helpers import check_layer

from mtl_keras.layers.soft_sharing import SoftSharedDense


def _inputs(num_tasks, shape, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=shape).astype("float32") for _ in range(num_tasks)]


def _numpy_penalty(layer):
    kernels = [k.numpy().astype("float64") for k in layer.kernels]
    return layer.strength * sum(np.sum((a - b) ** 2) for a, b in itertools.combinations(kernels, 2))


@pytest.mark.parametrize(
    "inputs",
    [_inputs(3, (4, 5)), _inputs(1, (4, 5))[0]],  # one input per column; one input broadcast to all
    ids=["list", "broadcast"],
)
def test_round_trip(inputs, tmp_path):
    check_layer(SoftSharedDense(6, 3, strength=0.1, activation="relu"), inputs, tmp_path)


def test_columns_are_separate_dense_layers():
    layer = SoftSharedDense(4, 3, activation="relu")
    xs = _inputs(3, (5, 6))
    layer(xs)
    rng = np.random.default_rng(3)
    for variable in layer.kernels + layer.biases:
        variable.assign(rng.normal(size=variable.shape).astype("float32"))
    outputs = layer(xs)
    for i in range(3):
        expected = np.maximum(xs[i] @ layer.kernels[i].numpy() + layer.biases[i].numpy(), 0)
        np.testing.assert_allclose(np.asarray(outputs[i]), expected, rtol=1e-5, atol=1e-5)
    broadcast = layer(xs[0])
    for i in range(3):
        expected = np.maximum(xs[0] @ layer.kernels[i].numpy() + layer.biases[i].numpy(), 0)
        np.testing.assert_allclose(np.asarray(broadcast[i]), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("num_tasks", [2, 3, 4])
def test_penalty_is_strength_times_pairwise_squared_distance(num_tasks):
    layer = SoftSharedDense(3, num_tasks, strength=0.25)
    layer(_inputs(num_tasks, (2, 5)))
    assert len(layer.losses) == 1
    np.testing.assert_allclose(float(layer.losses[0]), _numpy_penalty(layer), rtol=1e-5)
    # Losses are per call: a second call replaces, not accumulates.
    layer(_inputs(num_tasks, (2, 5)))
    assert len(layer.losses) == 1


def test_no_penalty_without_strength_or_with_one_column():
    for layer in (SoftSharedDense(3, 3, strength=0.0), SoftSharedDense(3, 1, strength=1.0)):
        layer(np.ones((2, 4), "float32"))
        assert layer.losses == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"units": 0, "num_tasks": 2}, "Expected `units` to be a positive integer. Received: units=0"),
        ({"units": 3, "num_tasks": 0}, "num_tasks"),
        ({"units": 3, "num_tasks": 2, "strength": -1.0}, "Expected `strength` to be a non-negative number"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        SoftSharedDense(**kwargs)


def test_bad_inputs():
    with pytest.raises(ValueError, match="`num_tasks`=3"):
        SoftSharedDense(3, 3)(_inputs(2, (2, 4)))
    with pytest.raises(ValueError, match="same known last axis"):
        SoftSharedDense(3, 2)([np.zeros((2, 4), "float32"), np.zeros((2, 5), "float32")])
