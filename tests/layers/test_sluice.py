import re

import numpy as np
import pytest
from helpers import check_layer

from mtl_keras.layers.sluice import LayerStitch


def _inputs(num_layers, shape):
    rng = np.random.default_rng(0)
    return [rng.normal(size=shape).astype("float32") for _ in range(num_layers)]


@pytest.mark.parametrize(("num_layers", "shape"), [(3, (4, 5)), (2, (2, 4, 4, 3)), (1, (4, 5))])
def test_round_trip(num_layers, shape, tmp_path):
    check_layer(LayerStitch(num_layers), _inputs(num_layers, shape), tmp_path)


def test_beta_starts_balanced_and_mixes_layer_outputs():
    layer = LayerStitch(4)
    xs = _inputs(4, (3, 5))
    np.testing.assert_allclose(np.asarray(layer(xs)), sum(xs) / 4, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layer.beta.numpy(), [0.25] * 4)
    beta = np.array([0.5, -1.0, 2.0, 0.1], "float32")
    layer.beta.assign(beta)
    expected = sum(b * x for b, x in zip(beta, xs, strict=True))
    np.testing.assert_allclose(np.asarray(layer(xs)), expected, rtol=1e-5, atol=1e-5)


def test_bad_arguments_and_inputs():
    with pytest.raises(
        ValueError, match=re.escape("Expected `num_layers` to be a positive integer. Received: num_layers=0")
    ):
        LayerStitch(0)
    with pytest.raises(ValueError, match="`num_layers`=3"):
        LayerStitch(3)(_inputs(2, (2, 4)))
    with pytest.raises(ValueError, match="same shape"):
        LayerStitch(2)([np.zeros((2, 4), "float32"), np.zeros((2, 3), "float32")])
