"""Expected calibration error and the post-hoc fits against independent NumPy computations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mtl_keras.evaluation import calibration


def _ece_by_loops(confidence, hit, bins):
    """ECE written out bin by bin with explicit edges: [lo, hi) and the last bin closed."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    total = 0.0
    for i in range(bins):
        lo, hi = edges[i], edges[i + 1]
        inside = (confidence >= lo) & ((confidence < hi) if i < bins - 1 else (confidence <= hi))
        if inside.any():
            total += inside.sum() / len(confidence) * abs(hit[inside].mean() - confidence[inside].mean())
    return total


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def test_binary_ece_matches_a_bin_by_bin_computation():
    rng = np.random.default_rng(0)
    p = rng.uniform(size=500)
    y = (rng.uniform(size=500) < p**2).astype(float)
    y[::7] = np.nan  # unlabelled examples are left out
    keep = ~np.isnan(y)
    for bins in (1, 10, 15):
        expected = _ece_by_loops(p[keep], y[keep], bins)
        assert calibration.expected_calibration_error(p[:, None], y, bins) == pytest.approx(
            expected, abs=1e-12
        )


def test_multiclass_ece_uses_the_top_label_confidence():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(400, 4)) * 2
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = rng.integers(0, 4, size=400).astype(float)
    expected = _ece_by_loops(p.max(axis=1), (p.argmax(axis=1) == y).astype(float), 15)
    assert calibration.expected_calibration_error(p, y, 15) == pytest.approx(expected, abs=1e-12)


def test_ece_of_a_hand_worked_example():
    # 2 bins: [0, .5) holds .2 and .4 (mean .3, labels 0, 1 -> .5); [.5, 1] holds .9 (label 1).
    value = calibration.expected_calibration_error([0.2, 0.4, 0.9], [0, 1, 1], bins=2)
    assert value == pytest.approx(2 / 3 * 0.2 + 1 / 3 * 0.1)
    assert math.isnan(calibration.expected_calibration_error([0.5], [np.nan]))
    with pytest.raises(ValueError, match="bins"):
        calibration.expected_calibration_error([0.5], [1], bins=0)


def test_reliability_bins_count_every_labelled_example():
    data = calibration.reliability([0.05, 0.5, 0.55, 1.0], [0, 1, 0, 1], bins=2)
    assert data["count"] == [1, 3]
    assert data["frequency"] == [0.0, pytest.approx(2 / 3)]
    assert data["edges"] == [0.0, 0.5, 1.0]


def _overconfident_binary(n=4000, scale=5.0, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=n)
    y = (rng.uniform(size=n) < _sigmoid(z)).astype(float)
    return _sigmoid(scale * z), y


def test_temperature_undoes_scaled_logits_and_lowers_ece():
    p, y = _overconfident_binary()
    temperature = calibration.fit_temperature(p, y)
    # The labels follow sigmoid(z); the model says sigmoid(5 z): the fitted temperature is close to 5.
    assert temperature == pytest.approx(5.0, rel=0.15)
    # The fit is the minimum of the NLL: no temperature on a fine grid does better.
    z = np.log(p / (1 - p))
    grid = np.exp(np.linspace(-1, 3, 2001))
    nll = [np.mean(np.logaddexp(0, -z / t) * y + np.logaddexp(0, z / t) * (1 - y)) for t in grid]
    assert abs(temperature - grid[int(np.argmin(nll))]) < 0.01
    before = calibration.expected_calibration_error(p, y)
    after = calibration.expected_calibration_error(calibration.apply_temperature(p, temperature), y)
    assert after < before / 2


def test_temperature_on_multiclass_log_probabilities():
    rng = np.random.default_rng(2)
    z = rng.normal(size=(3000, 3)) * 1.5
    true = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    y = np.array([rng.choice(3, p=row) for row in true], dtype=float)
    overconfident = np.exp(4 * z) / np.exp(4 * z).sum(axis=1, keepdims=True)
    temperature = calibration.fit_temperature(overconfident, y)
    assert temperature == pytest.approx(4.0, rel=0.15)
    after = calibration.apply_temperature(overconfident, temperature)
    np.testing.assert_allclose(after.sum(axis=1), 1.0, atol=1e-9)
    assert calibration.expected_calibration_error(after, y) < calibration.expected_calibration_error(
        overconfident, y
    )


def test_isotonic_knots_are_monotone_and_lower_ece():
    p, y = _overconfident_binary(seed=3)
    x_knots, y_knots = calibration.fit_isotonic(p, y)
    assert np.all(np.diff(x_knots) > 0) and np.all(np.diff(y_knots) >= 0)
    mapped = np.interp(p, x_knots, y_knots)
    assert (
        calibration.expected_calibration_error(mapped, y) < calibration.expected_calibration_error(p, y) / 2
    )
    with pytest.raises(ValueError, match="binary"):
        calibration.fit_isotonic(np.full((4, 3), 1 / 3), [0, 1, 2, 0])
