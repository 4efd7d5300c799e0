"""The representation-level step's all-gather variant: a non-Gramian aggregator that needs all of J (the
norm of the whole sum) gives the single-device update under two replicas."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from training.tiny_model import NAMES, build, data, reference, weights_of

from mtl_keras.balancers import Aggregator

LR = 0.1


class UnitSum(Aggregator):
    """The sum of the rows scaled to unit norm: wrong if any replica saw only its own columns."""

    def _aggregate(self, jacobian: tf.Tensor) -> tf.Tensor:
        total = tf.reduce_sum(jacobian, axis=0)
        return total / tf.norm(total)


@pytest.mark.parametrize("replicas", [1, 2])
def test_all_gathered_representation_jacobian_matches_numpy(replicas, mirrored_strategy):
    x, y = data(n=8)
    strategy = mirrored_strategy if replicas == 2 else tf.distribute.get_strategy()
    with strategy.scope():
        model = build()
        model.compile(keras.optimizers.SGD(LR), balancer=UnitSum(), balancer_level="rep")
    w = weights_of(model)
    ref = reference(w, x, y)
    total = sum(ref["dz"])  # static weights 1
    direction = total / np.linalg.norm(total)
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    after = weights_of(model)
    expected = {"W": ref["x"].T @ direction, "b": direction.sum(axis=0)}
    for name in ("W", "b"):
        np.testing.assert_allclose((w[name] - after[name]) / LR, expected[name], rtol=1e-4, atol=1e-6)
    for name in NAMES[2:]:
        own = sum(g[name] for g in ref["grads"])
        np.testing.assert_allclose((w[name] - after[name]) / LR, own, rtol=1e-4, atol=1e-6, err_msg=name)
