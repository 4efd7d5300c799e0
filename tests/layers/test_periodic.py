"""PeriodicEmbedding (PLR) against the paper's formula written out in NumPy, per feature."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from mtl_keras.layers.periodic import PeriodicEmbedding


def _plr(x: np.ndarray, c: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Gorishniy et al. (2022) eq. 5–6 for each feature i: ReLU(W_i [sin(2π c_i x_i), cos(2π c_i x_i)] + b_i)."""
    features = x.shape[1]
    out = []
    for i in range(features):
        v = np.concatenate(
            [np.sin(2 * np.pi * np.outer(x[:, i], c[i])), np.cos(2 * np.pi * np.outer(x[:, i], c[i]))], axis=1
        )
        out.append(np.maximum(v @ w[i] + b[i], 0.0))
    return np.concatenate(out, axis=1)


def test_matches_the_formula_for_each_feature() -> None:
    layer = PeriodicEmbedding(embedding_dim=5, num_frequencies=4, frequency_scale=1.0, seed=3)
    x = np.random.default_rng(0).normal(size=(7, 3)).astype("float32")
    out = keras.ops.convert_to_numpy(layer(x))
    layer.bias.assign(np.random.default_rng(1).normal(size=(3, 5)))  # a nonzero bias is used too
    out = keras.ops.convert_to_numpy(layer(x))
    c, w, b = (keras.ops.convert_to_numpy(v) for v in (layer.frequencies, layer.kernel, layer.bias))
    assert out.shape == (7, 15)
    np.testing.assert_allclose(out, _plr(x.astype(np.float64), c, w, b), rtol=1e-4, atol=1e-5)


def test_frequencies_start_at_the_requested_scale() -> None:
    layer = PeriodicEmbedding(embedding_dim=2, num_frequencies=2000, frequency_scale=0.3, seed=0)
    layer.build((None, 1))
    c = keras.ops.convert_to_numpy(layer.frequencies)
    assert abs(c.std() - 0.3) < 0.02 and abs(c.mean()) < 0.03


def test_learns_a_periodic_target_a_linear_model_cannot() -> None:
    """y = sin(6 x) on [-2, 2]: the PLR features fit it; a linear model on x explains almost none of it."""
    keras.utils.set_random_seed(0)
    x = np.linspace(-2, 2, 512, dtype="float32")[:, None]
    y = np.sin(6 * x)
    inputs = keras.Input((1,))
    outputs = keras.layers.Dense(1)(PeriodicEmbedding(16, 16, frequency_scale=1.0)(inputs))
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    model.fit(x, y, epochs=150, batch_size=128, verbose=0)
    mse = float(np.mean((model.predict(x, verbose=0) - y) ** 2))
    linear = np.polyfit(x[:, 0], y[:, 0], 1)
    linear_mse = float(np.mean((np.polyval(linear, x[:, 0]) - y[:, 0]) ** 2))
    assert mse < 0.1 * linear_mse


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"embedding_dim": 0}, "embedding_dim"),
        ({"num_frequencies": 1.5}, "num_frequencies"),
        ({"frequency_scale": -1.0}, "frequency_scale"),
    ],
)
def test_bad_options_are_named(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PeriodicEmbedding(**kwargs)
