import re

import numpy as np
import pytest
from helpers import check_layer

from mtl_keras.layers.orthogonality import OrthogonalityPenalty


def _features(seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(6, 4)).astype("float32"), rng.normal(size=(6, 3)).astype("float32")]


def test_round_trip(tmp_path):
    check_layer(OrthogonalityPenalty(0.5), _features(), tmp_path)


def test_output_is_the_concatenation_and_penalty_is_strength_times_squared_frobenius_norm():
    shared, private = _features()
    layer = OrthogonalityPenalty(0.3)
    output = layer([shared, private])
    np.testing.assert_allclose(np.asarray(output), np.concatenate([shared, private], axis=1))
    s, p = shared.astype("float64"), private.astype("float64")
    expected = 0.3 * sum((s[:, a] @ p[:, b]) ** 2 for a in range(4) for b in range(3))
    assert len(layer.losses) == 1
    np.testing.assert_allclose(float(layer.losses[0]), expected, rtol=1e-5)


def test_orthogonal_features_cost_nothing():
    # Shared features live on examples 0-2, private ones on examples 3-5: every column pair is orthogonal.
    rng = np.random.default_rng(1)
    shared = np.zeros((6, 4), "float32")
    private = np.zeros((6, 3), "float32")
    shared[:3] = rng.normal(size=(3, 4))
    private[3:] = rng.normal(size=(3, 3))
    layer = OrthogonalityPenalty(10.0)
    layer([shared, private])
    assert float(layer.losses[0]) == 0.0


def test_higher_rank_features_are_flattened_per_example():
    rng = np.random.default_rng(2)
    shared = rng.normal(size=(5, 2, 2, 3)).astype("float32")
    private = rng.normal(size=(5, 2, 2, 1)).astype("float32")
    layer = OrthogonalityPenalty(1.0)
    assert layer([shared, private]).shape == (5, 2, 2, 4)
    s, p = shared.reshape(5, -1).astype("float64"), private.reshape(5, -1).astype("float64")
    np.testing.assert_allclose(float(layer.losses[0]), np.sum((s.T @ p) ** 2), rtol=1e-5)


def test_zero_strength_adds_no_loss():
    layer = OrthogonalityPenalty(0.0)
    layer(_features())
    assert layer.losses == []


def test_bad_arguments_and_inputs():
    with pytest.raises(
        ValueError, match=re.escape("Expected `strength` to be a non-negative number. Received: strength=-1")
    ):
        OrthogonalityPenalty(-1)
    with pytest.raises(ValueError, match=r"\[shared, private\]"):
        OrthogonalityPenalty()(_features() + _features())
    with pytest.raises(ValueError, match="differ only in their last axis"):
        OrthogonalityPenalty()([np.zeros((4, 3), "float32"), np.zeros((4, 2, 2), "float32")])
