import re

import numpy as np
import pytest

from mtl_keras.data.synthetic import gradnorm_toy, mmoe_weights, sincos, synthetic_mmoe


def _corr(dataset):
    return float(np.corrcoef(dataset.train.y["y1"], dataset.train.y["y2"])[0, 1])


def test_mmoe_shapes_dtypes_and_tasks():
    data = synthetic_mmoe(0.5, n=50, n_validation=7, n_test=9, seed=1)
    assert [len(s) for s in data.splits.values()] == [50, 7, 9]
    assert data.train.x.shape == (50, 100) and data.train.x.dtype == np.float32
    assert data.task_names == ["y1", "y2"] and all(t.kind == "regression" for t in data.tasks)
    assert data.train.y["y1"].shape == (50,) and data.train.y["y1"].dtype == np.float32
    assert data.features is None


def test_mmoe_weights_have_cosine_p_and_norm_c():
    rng = np.random.default_rng(0)
    for p in (0.0, 0.3, 0.9, 1.0, -0.5):
        w1, w2 = mmoe_weights(p, 100, 2.0, rng)
        assert np.linalg.norm(w1) == pytest.approx(2.0)
        assert np.linalg.norm(w2) == pytest.approx(2.0)
        assert w1 @ w2 / 4.0 == pytest.approx(p, abs=1e-12)


def test_mmoe_linear_part_recovers_weights_with_cosine_p():
    # with no sinusoids and no noise, y_i = w_iᵀx exactly: least squares recovers w1, w2
    data = synthetic_mmoe(0.7, n=300, seed=2, num_sin=0, noise_std=0.0)
    x = data.train.x.astype(np.float64)
    w1 = np.linalg.lstsq(x, data.train.y["y1"].astype(np.float64), rcond=None)[0]
    w2 = np.linalg.lstsq(x, data.train.y["y2"].astype(np.float64), rcond=None)[0]
    assert np.linalg.norm(w1) == pytest.approx(1.0, abs=1e-4)
    assert np.linalg.norm(w2) == pytest.approx(1.0, abs=1e-4)
    assert w1 @ w2 / (np.linalg.norm(w1) * np.linalg.norm(w2)) == pytest.approx(0.7, abs=1e-4)


def test_mmoe_sinusoids_are_alpha_j_beta_j_squared():
    linear = synthetic_mmoe(0.5, n=200, seed=3, num_sin=0, noise_std=0.0)
    full = synthetic_mmoe(0.5, n=200, seed=3, num_sin=10, noise_std=0.0)
    np.testing.assert_array_equal(linear.train.x, full.train.x)
    z = linear.train.y["y1"].astype(np.float64)
    expected = z + sum(np.sin(j * z + j * j) for j in range(1, 11))
    np.testing.assert_allclose(full.train.y["y1"], expected, atol=1e-4)


def test_mmoe_noise_has_the_requested_std():
    clean = synthetic_mmoe(0.5, n=20_000, seed=4, noise_std=0.0)
    noisy = synthetic_mmoe(0.5, n=20_000, seed=4, noise_std=0.1)
    assert np.std(noisy.train.y["y1"] - clean.train.y["y1"]) == pytest.approx(0.1, rel=0.05)


@pytest.mark.parametrize("sin_params", ["fixed", "random"])
def test_mmoe_label_correlation_increases_with_p(sin_params):
    correlations = [
        _corr(synthetic_mmoe(p, n=20_000, seed=0, sin_params=sin_params)) for p in (0.0, 0.5, 0.9, 1.0)
    ]
    assert abs(correlations[0]) < 0.05
    assert correlations[0] < correlations[1] < correlations[2] < correlations[3]
    assert correlations[3] > 0.97


def test_mmoe_is_deterministic_for_a_seed():
    a, b, c = (
        synthetic_mmoe(0.9, n=20, seed=5),
        synthetic_mmoe(0.9, n=20, seed=5),
        synthetic_mmoe(0.9, n=20, seed=6),
    )
    np.testing.assert_array_equal(a.train.x, b.train.x)
    np.testing.assert_array_equal(a.test.y["y2"], b.test.y["y2"])
    assert not np.array_equal(a.train.x, c.train.x)
    assert not np.array_equal(a.train.x, a.validation.x[:20])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"p": 1.5}, "Expected `p` to be a number in \\[-1, 1\\]. Received: p=1.5"),
        ({"p": 0.5, "n": -3}, "Expected `n` to be a positive integer. Received: n=-3"),
        ({"p": 0.5, "n_test": 0}, "Expected `n_test` to be a positive integer. Received: n_test=0"),
        ({"p": 0.5, "dim": 1}, "Expected `dim` to be at least 2"),
        ({"p": 0.5, "sin_params": "learned"}, "Expected `sin_params` to be one of"),
        ({"p": 0.5, "noise_std": -1.0}, "Expected `noise_std` to be a non-negative number"),
        ({"p": 0.5, "seed": -1}, "Expected `seed` to be a non-negative integer"),
    ],
)
def test_mmoe_argument_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        synthetic_mmoe(**kwargs)


def test_sincos():
    data = sincos(n=100, n_validation=10, n_test=20, seed=0)
    x = data.train.x
    assert x.shape == (100, 1) and x.dtype == np.float32
    assert x.min() >= -np.pi and x.max() <= np.pi
    np.testing.assert_allclose(data.train.y["sin"], np.sin(x[:, 0]), atol=1e-6)
    np.testing.assert_allclose(data.test.y["cos"], np.cos(data.test.x[:, 0]), atol=1e-6)
    noisy = sincos(n=5_000, seed=0, noise_std=0.05)
    assert np.std(noisy.train.y["sin"] - np.sin(noisy.train.x[:, 0])) == pytest.approx(0.05, rel=0.1)
    np.testing.assert_array_equal(sincos(n=10, seed=1).train.x, sincos(n=10, seed=1).train.x)
    with pytest.raises(ValueError, match=re.escape("Expected `n` to be a positive integer. Received: n=0")):
        sincos(n=0)


def test_gradnorm_toy_shapes_scales_and_tasks():
    data = gradnorm_toy(n=200, n_validation=10, n_test=10, seed=0)
    assert data.train.x.shape == (200, 250) and data.train.x.dtype == np.float32
    assert data.task_names == ["task_0", "task_1"]
    assert all(t.kind == "regression" and t.output_units == 100 for t in data.tasks)
    y0, y1 = data.train.y["task_0"], data.train.y["task_1"]
    assert y0.shape == y1.shape == (200, 100)
    assert np.abs(y0).max() <= 1.0 and np.abs(y1).max() <= 100.0
    # tanh is saturated (pre-activation std ≈ sqrt(250 * 13.5) ≈ 58): |f_i| ≈ σ_i
    assert np.mean(np.abs(y1)) > 90.0
    # the tasks share B: their signs mostly agree, but ε_i makes them differ
    agreement = np.mean(np.sign(y0) == np.sign(y1))
    assert 0.6 < agreement < 0.99


def test_gradnorm_toy_options_and_errors():
    data = gradnorm_toy(
        num_tasks=3, sigmas=(1, 10, 100), n=5, n_validation=2, n_test=2, output_dim=4, input_dim=6
    )
    assert data.task_names == ["task_0", "task_1", "task_2"]
    assert data.train.y["task_2"].shape == (5, 4) and data.train.x.shape == (5, 6)
    with pytest.raises(ValueError, match="one scale per task"):
        gradnorm_toy(num_tasks=3, sigmas=(1.0, 2.0))
    with pytest.raises(ValueError, match="Expected `num_tasks` to be a positive integer"):
        gradnorm_toy(num_tasks=0, sigmas=())
