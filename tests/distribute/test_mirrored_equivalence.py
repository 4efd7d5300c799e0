"""MirroredStrategy on 2 logical CPUs gives the single-device weights for every balancer (docs/methods.md,
"Distribution").

Per-task losses use the global number of labelled examples as the denominator on every replica, per-task
gradients are all-reduced before aggregation, and the aggregated update is divided by the replica count.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import toy_data, toy_tasks

from mtl_keras import balancers, builders

STEPS, BATCH = 10, 32


def _train(strategy, balancer, level, x, y, seed=0):
    with strategy.scope():
        keras.utils.set_random_seed(seed)
        model = builders.hard_sharing(toy_tasks(), 12, trunk=(16, 8), tower_units=(8,))
        spec = balancer if isinstance(balancer, str) else balancer()
        model.compile(keras.optimizers.Adam(1e-2), balancer=spec, balancer_level=level)
    model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
    return [v.numpy() for v in model.trainable_variables]


def _data():
    x, y = toy_data(n=STEPS * BATCH, seed=1)
    # Missing labels spread unevenly across replicas: the global-denominator masked mean must still match.
    y["b"][::3] = np.nan
    y["c"][: BATCH // 2] = np.nan
    return x, y


CASES = (
    [(name, "param") for name in balancers.WEIGHTINGS.names() if name != "inverse_validation"]
    + [(name, "param") for name in balancers.AGGREGATORS.names()]
    + [
        (name, "rep")
        for name in ("pcgrad", "mgda", "cagrad", "upgrad", "config", "fairgrad", "sdmgrad", "modo", "moco")
    ]
    + [("uncertainty+pcgrad", "param")]
    + [(lambda: balancers.get("stch", ideal_point=[0.5, 0.5, 0.5]), "param")]  # past STCH's warm-up
)


@pytest.mark.parametrize(("balancer", "level"), CASES)
def test_two_replicas_match_one_device(balancer, level, mirrored_strategy):
    x, y = _data()
    one = _train(tf.distribute.get_strategy(), balancer, level, x, y)
    two = _train(mirrored_strategy, balancer, level, x, y)
    for a, b in zip(one, two, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)


def test_raw_string_features_train_under_mirrored_strategy(mirrored_strategy):
    """Census raw features (strings) go through the model's preprocessing block on every replica."""
    from mtl_keras.builders import RawFeatures
    from mtl_keras.data import load_census
    from mtl_keras.data.pipeline import to_dataset

    data = load_census(max_rows=256)

    def train(strategy):
        with strategy.scope():
            keras.utils.set_random_seed(0)
            model = builders.hard_sharing(data.tasks, RawFeatures(data.features, data.train.x), trunk=(8,))
            model.compile(keras.optimizers.Adam(1e-2), balancer="pcgrad")
        model.fit(to_dataset(data.train, 64), epochs=1, verbose=0)
        return [v.numpy() for v in model.trainable_variables]

    for a, b in zip(train(tf.distribute.get_strategy()), train(mirrored_strategy), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)
