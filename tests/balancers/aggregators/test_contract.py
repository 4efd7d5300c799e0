"""One contract test suite run over every registered gradient aggregator."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import mtl_keras.balancers.aggregators  # noqa: F401  (registers the aggregators)
from mtl_keras.balancers.base import AGGREGATORS, Aggregator

NAMES = AGGREGATORS.names()
NUM_TASKS, NUM_PARAMS = 3, 17
SEED = 7

RANDOM = np.random.default_rng(0).normal(size=(NUM_TASKS, NUM_PARAMS)).astype(np.float32)
ZERO_ROW = RANDOM.copy()
ZERO_ROW[1] = 0.0
CONFLICTING = np.stack([RANDOM[0], -RANDOM[0], RANDOM[2]])  # 0 in the convex hull
INPUTS = {
    "random": RANDOM,
    "zero_row": ZERO_ROW,
    "conflicting": CONFLICTING,
    "all_zero": np.zeros_like(RANDOM),
}


def make(name: str) -> Aggregator:
    """The aggregator called ``name``; seeded when it draws random numbers (only those take a seed)."""
    return AGGREGATORS.get(name, **({"seed": SEED} if AGGREGATORS.lookup(name).randomised else {}))


def run_eagerly(name: str) -> dict[str, np.ndarray]:
    aggregator = make(name)
    return {key: aggregator.aggregate(tf.constant(value)).numpy() for key, value in INPUTS.items()}


def test_every_method_is_registered() -> None:
    expected = {"mean", "sum", "pcgrad", "mgda", "cagrad", "imtl", "nash_mtl", "upgrad", "dualproj"}
    expected |= {"aligned_mtl", "graddrop", "gradvac", "config", "fairgrad", "sdmgrad", "modo", "moco"}
    assert expected <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_eager_and_tf_function_agree(name: str) -> None:
    """Same seed, same sequence of inputs: eager and graph results match, call after call."""
    aggregator = make(name)
    function = tf.function(aggregator.aggregate)  # traced once: every input has the same shape
    graph = {key: function(tf.constant(value)).numpy() for key, value in INPUTS.items()}
    eager = run_eagerly(name)
    for key in INPUTS:
        np.testing.assert_allclose(graph[key], eager[key], rtol=1e-5, atol=1e-6, err_msg=key)


@pytest.mark.parametrize("name", NAMES)
def test_output_shape_dtype_and_zero_rows(name: str) -> None:
    results = run_eagerly(name)
    for key, result in results.items():
        assert result.shape == (NUM_PARAMS,), key
        assert result.dtype == np.float32, key
        assert np.all(np.isfinite(result)), key
    np.testing.assert_array_equal(results["all_zero"], np.zeros(NUM_PARAMS, np.float32))
    assert np.any(results["zero_row"] != 0.0)


@pytest.mark.parametrize("name", NAMES)
def test_float64_in_float64_out(name: str) -> None:
    result = make(name).aggregate(tf.constant(RANDOM, tf.float64))
    assert result.dtype == tf.float64
    assert result.shape == (NUM_PARAMS,)


@pytest.mark.parametrize("name", NAMES)
def test_seeded_randomness_is_reproducible(name: str) -> None:
    first, second = make(name), make(name)
    for _ in range(3):
        np.testing.assert_array_equal(
            first.aggregate(tf.constant(RANDOM)).numpy(), second.aggregate(tf.constant(RANDOM)).numpy()
        )


@pytest.mark.parametrize("name", NAMES)
def test_config_round_trip(name: str) -> None:
    aggregator = make(name)
    config = aggregator.get_config()
    if aggregator.randomised:
        assert config["seed"] == SEED
    else:
        assert "seed" not in config
        # Files written before only randomised methods took a seed store `seed: None`.
        assert type(aggregator).from_config({**config, "seed": None}).get_config() == config
    assert type(aggregator).from_config(config).get_config() == config
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(aggregator))
    assert type(restored) is type(aggregator)
    assert restored.get_config() == config
    assert AGGREGATORS.lookup(name) is type(aggregator)


@pytest.mark.parametrize("name", NAMES)
def test_combination_weights(name: str) -> None:
    aggregator = make(name)
    result = aggregator.aggregate(tf.constant(RANDOM)).numpy()
    weights = aggregator.combination_weights()
    if aggregator.needs_jacobian:
        assert weights is None
    else:
        assert weights is not None
        np.testing.assert_allclose(weights.numpy() @ RANDOM, result, rtol=1e-6)


def test_unknown_options_are_rejected() -> None:
    with pytest.raises(TypeError):
        AGGREGATORS.get("pcgrad", bogus=1)


def test_only_randomised_aggregators_take_a_seed() -> None:
    randomised = {name for name in NAMES if AGGREGATORS.lookup(name).randomised}
    assert randomised == {"pcgrad", "gradvac", "graddrop"}
    for name in sorted(set(NAMES) - randomised):
        with pytest.raises(TypeError, match="seed"):
            AGGREGATORS.get(name, seed=0)


@pytest.mark.parametrize(
    ("name", "option", "value"),
    [
        ("cagrad", "c", -1.0),
        ("cagrad", "rescale", 2),
        ("upgrad", "eps", -1e-4),
        ("dualproj", "eps", float("nan")),
        ("nash_mtl", "max_norm", -1.0),
        ("graddrop", "leak", 1.5),
        ("gradvac", "beta", 0.0),
        ("config", "rcond", 1.0),
        ("fairgrad", "alpha", 0.0),
        ("sdmgrad", "lam", -1.0),
        ("modo", "gamma", 0.0),
        ("moco", "beta", 0.0),
    ],
)
def test_invalid_options_are_rejected(name: str, option: str, value: float) -> None:
    with pytest.raises(ValueError, match=option):
        AGGREGATORS.get(name, **{option: value})


@pytest.mark.parametrize("name", NAMES)
def test_mirrored_strategy_matches_one_device(name: str, mirrored_strategy: tf.distribute.Strategy) -> None:
    """Built in the strategy scope and run on every replica with the same (all-reduced) J, the state stays
    in step and every replica gets the one-device result, call after call."""
    with mirrored_strategy.scope():
        aggregator = make(name)
        aggregator.build(NUM_TASKS)
    reference = make(name)

    @tf.function
    def step(jacobian: tf.Tensor) -> tf.Tensor:
        return mirrored_strategy.run(aggregator.aggregate, args=(jacobian,))

    for _ in range(2):
        expected = reference.aggregate(tf.constant(RANDOM)).numpy()
        for result in mirrored_strategy.experimental_local_results(step(tf.constant(RANDOM))):
            np.testing.assert_allclose(result.numpy(), expected, rtol=1e-5, atol=1e-6)
