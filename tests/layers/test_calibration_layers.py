"""TemperatureScaling and IsotonicCalibration: the layer round trip and NumPy formulas."""

from __future__ import annotations

import helpers
import numpy as np
import pytest

from mtl_keras.layers.calibration import IsotonicCalibration, TemperatureScaling


def test_temperature_scaling_binary_and_multiclass(tmp_path):
    p = np.array([[0.01], [0.3], [0.5], [0.97]], dtype="float32")
    layer = TemperatureScaling(2.5)
    helpers.check_layer(layer, p, tmp_path)
    z = np.log(p / (1 - p))
    np.testing.assert_allclose(np.asarray(layer(p)), 1 / (1 + np.exp(-z / 2.5)), atol=1e-6)

    q = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], dtype="float32")
    multi = TemperatureScaling(0.5, multiclass=True, name="multi")
    helpers.check_layer(multi, q, tmp_path)
    expected = q**2 / (q**2).sum(axis=1, keepdims=True)  # softmax(log q / 0.5) = q^2 / sum q^2
    np.testing.assert_allclose(np.asarray(multi(q)), expected, atol=1e-6)


def test_isotonic_is_linear_between_knots_and_flat_outside(tmp_path):
    x, y = [0.1, 0.4, 0.8], [0.0, 0.3, 0.9]
    layer = IsotonicCalibration(x, y)
    p = np.array([[0.0], [0.1], [0.25], [0.5], [0.8], [1.0]], dtype="float32")
    helpers.check_layer(layer, p, tmp_path)
    np.testing.assert_allclose(np.asarray(layer(p))[:, 0], np.interp(p[:, 0], x, y), atol=1e-6)
    np.testing.assert_allclose(np.asarray(IsotonicCalibration([0.3], [0.6])(p)), 0.6)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="temperature"):
        TemperatureScaling(0.0)
    with pytest.raises(ValueError, match="strictly increasing"):
        IsotonicCalibration([0.5, 0.5], [0.1, 0.2])
    with pytest.raises(ValueError, match="non-decreasing"):
        IsotonicCalibration([0.1, 0.5], [0.4, 0.2])
