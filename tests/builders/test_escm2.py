import re

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import check_builder, check_sharing

from mtl_keras.builders.escm2 import escm2, escm2_labels
from mtl_keras.losses import CounterfactualCVR

SMALL = {"shared_units": (16,), "tower_units": (8,), "imputation_units": (4,)}


def click_data(n=256, dim=8, seed=0):
    """x; click ~ Bernoulli(σ(u·x − 0.5)); conversion ~ Bernoulli(σ(v·x − 1)) given a click (NaN without)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dim)).astype("float32")
    u, v = np.zeros(dim), np.zeros(dim)
    u[:2], v[2:4] = (1.5, -1.0), (2.0, 1.5)
    click = (rng.uniform(size=n) < 1 / (1 + np.exp(-(x @ u - 0.5)))).astype("float32")
    converted = rng.uniform(size=n) < 1 / (1 + np.exp(-(x @ v - 1.0)))
    return x, click, np.where(click == 1, converted, np.nan).astype("float32"), None


def _bce(r, p):
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return -(r * np.log(p) + (1 - r) * np.log(1 - p))


@pytest.mark.parametrize("variant", ["ips", "dr"])
def test_fit_lowers_every_loss_and_round_trip(variant, tmp_path):
    x, click, conversion, _ = click_data()
    model = escm2(["ctr", "ctcvr"], 8, variant=variant, **SMALL)
    assert model.task_names == ["ctr", "cvr", "ctcvr", "counterfactual"]
    assert model.shared_layer_names == ["shared_0", "tower_ctr", "tower_cvr"]
    y = escm2_labels(click, np.nan_to_num(conversion), variant=variant)
    check_builder(model, x, y, tmp_path)
    check_sharing(model, x, y)


@pytest.mark.parametrize("variant", ["ips", "dr"])
def test_counterfactual_head_stacks_cvr_and_the_ctr_propensity(variant):
    x, *_ = click_data(n=16)
    out = escm2(["ctr", "ctcvr"], 8, variant=variant, **SMALL).predict(x, verbose=0)
    stacked = out["counterfactual"]
    assert stacked.shape == (16, 2 if variant == "ips" else 3)
    np.testing.assert_allclose(stacked[:, 0], out["cvr"][:, 0], rtol=1e-6)
    np.testing.assert_allclose(stacked[:, 1], out["ctr"][:, 0], rtol=1e-6)
    np.testing.assert_allclose(out["ctcvr"], out["ctr"] * out["cvr"], rtol=1e-6)
    if variant == "dr":
        assert np.all(stacked[:, 2] > 0)  # a softplus error estimate


def test_ips_and_dr_losses_match_numpy():
    rng = np.random.default_rng(0)
    n = 50
    click = (rng.uniform(size=n) < 0.4).astype("float32")
    conversion = click * (rng.uniform(size=n) < 0.5)
    p_cvr, p_ctr, imputed = rng.uniform(0.01, 0.99, (3, n)).astype("float32")
    p_ctr[:5] = 0.01  # below min_propensity: clipped to it
    y_true = np.stack([click, conversion, np.zeros(n)], axis=1).astype("float32")
    q = np.maximum(p_ctr.astype(np.float64), 0.05)
    e = _bce(conversion.astype(np.float64), p_cvr.astype(np.float64))
    ips = click * e / q
    dr = imputed + click * (e - imputed) / q + click * (e - imputed) ** 2 / q
    got_ips = CounterfactualCVR("ips")(y_true[:, :2], np.stack([p_cvr, p_ctr], 1))
    got_dr = CounterfactualCVR("dr")(y_true, np.stack([p_cvr, p_ctr, imputed], 1))
    # Keras's default reduction is the mean over the batch: every impression counts.
    np.testing.assert_allclose(float(got_ips), ips.mean(), rtol=1e-5)
    np.testing.assert_allclose(float(got_dr), dr.mean(), rtol=1e-5)


def test_risk_gradients_match_numpy():
    """Gradients of the per-impression risks, written out by hand: with e = BCE(r, p) and q = max(p_ctr,
    clip), ∂e/∂p = (p − r) / (p (1 − p)); IPS: ∂/∂p = o ∂e/∂p / q; DR: the same ∂/∂p and ∂/∂ê = 2 o (ê − e) / q
    (ê is fixed in the risk, e in the imputation loss: the risk trains the CVR tower, the imputation loss the
    imputation tower, so the CVR tower's DR gradient is IPS's); no gradient to p_ctr in either."""
    rng = np.random.default_rng(2)
    n = 40
    click = (rng.uniform(size=n) < 0.5).astype("float32")
    conversion = (click * (rng.uniform(size=n) < 0.5)).astype("float32")
    p_cvr, p_ctr, imputed = rng.uniform(0.02, 0.98, (3, n)).astype("float32")
    p_ctr[:6] = 0.03
    o, r, p, h = (a.astype(np.float64) for a in (click, conversion, p_cvr, imputed))
    q = np.maximum(p_ctr.astype(np.float64), 0.05)
    de_dp = (p - r) / (p * (1 - p))
    e = _bce(r, p)
    for variant in ("ips", "dr"):
        columns = [p_cvr, p_ctr] + ([imputed] if variant == "dr" else [])
        y_pred = tf.Variable(np.stack(columns, 1))
        y_true = np.stack([click, conversion] + [np.zeros(n, "float32")] * (len(columns) - 2), 1)
        with tf.GradientTape() as tape:
            per_example = CounterfactualCVR(variant, reduction=None)(y_true, y_pred)
            total = tf.reduce_sum(per_example)
        grad = tape.gradient(total, y_pred).numpy().astype(np.float64)
        np.testing.assert_allclose(grad[:, 0], o * de_dp / q, rtol=1e-4, atol=1e-5)
        np.testing.assert_array_equal(grad[:, 1], 0.0)
        if variant == "dr":
            np.testing.assert_allclose(grad[:, 2], 2 * o * (h - e) / q, rtol=1e-4, atol=1e-5)


def test_ips_is_unbiased_for_the_risk_over_all_impressions():
    """With the true propensity, the mean IPS risk of the clicked impressions estimates the risk of all
    impressions (what the CVR model would pay on the whole space), while the clicked-only mean does not."""
    rng = np.random.default_rng(1)
    n = 400_000
    z = rng.normal(size=n)
    p_ctr, p_true = 1 / (1 + np.exp(-(z - 1))), 1 / (1 + np.exp(-(z - 0.5)))
    click = (rng.uniform(size=n) < p_ctr).astype(np.float32)
    conversion = (rng.uniform(size=n) < p_true).astype(np.float32)
    p_cvr = np.full(n, 0.4, np.float32)  # a constant CVR model
    full_risk = _bce(conversion, p_cvr).mean()
    loss = CounterfactualCVR("ips", min_propensity=1e-6)
    y_true = np.stack([click, click * conversion], 1)
    ips = float(loss(y_true, np.stack([p_cvr, p_ctr.astype(np.float32)], 1)))
    naive = _bce(conversion[click == 1], p_cvr[click == 1]).mean()
    assert abs(ips - full_risk) < 0.02 * full_risk
    assert abs(naive - full_risk) > 0.05 * full_risk


def test_propensity_gets_no_gradient_from_the_counterfactual_risk():
    x, click, conversion, _ = click_data(n=64)
    model = escm2(["ctr", "ctcvr"], 8, variant="dr", **SMALL)
    y = escm2_labels(click, np.nan_to_num(conversion), variant="dr")
    loss = CounterfactualCVR("dr")
    ctr_tower = model.get_layer("tower_ctr").trainable_variables
    cvr_tower = model.get_layer("tower_cvr").trainable_variables
    imputation = model.get_layer("tower_counterfactual_imputation").trainable_variables
    with tf.GradientTape() as tape:
        value = loss(y["counterfactual"], model(x)["counterfactual"])
    grads = tape.gradient(value, [v.value for v in ctr_tower + cvr_tower + imputation])
    ctr_grads, rest = grads[: len(ctr_tower)], grads[len(ctr_tower) :]
    assert all(g is None or float(tf.reduce_max(tf.abs(g))) == 0 for g in ctr_grads)
    assert all(g is not None and float(tf.reduce_max(tf.abs(g))) > 0 for g in rest[:1] + rest[-2:-1])


def test_escm2_labels():
    labels = escm2_labels([1, 1, 0, np.nan], [1, 0, np.nan, 0], variant="dr")
    assert sorted(labels) == ["counterfactual", "ctcvr", "ctr", "cvr"]
    np.testing.assert_array_equal(
        labels["counterfactual"], [[1, 1, 0], [1, 0, 0], [0, 0, 0], [np.nan, np.nan, np.nan]]
    )
    assert escm2_labels([1, 0], [0, 0])["counterfactual"].shape == (2, 2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"variant": "snips"}, "Expected `variant` to be one of ['ips', 'dr']. Received: variant='snips'"),
        ({"min_propensity": 0.0}, "Received: min_propensity=0.0"),
        ({"counterfactual": "ctr"}, "Received: counterfactual='ctr'"),
        ({"counterfactual": "c-f"}, "Received: counterfactual='c-f'"),
        ({"imputation_units": (0,)}, "Received: imputation_units=[0]"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        escm2(["ctr", "ctcvr"], 8, **kwargs)


def test_a_wrong_head_width_is_named():
    with pytest.raises(
        ValueError, match=re.escape("Expected the 'dr' counterfactual head to have 3 columns")
    ):
        CounterfactualCVR("dr")(np.zeros((2, 2)), np.full((2, 2), 0.5))


def test_counterfactual_weight_scales_its_share_of_the_objective():
    x, click, conversion, _ = click_data(n=64)
    y = escm2_labels(click, np.nan_to_num(conversion))
    model = escm2(["ctr", "ctcvr"], 8, **SMALL)
    model.compile(keras.optimizers.Adam(0.0), loss_weights={"counterfactual": 0.25})
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    expected = logs["ctr_loss"] + logs["ctcvr_loss"] + 0.25 * logs["counterfactual_loss"]
    np.testing.assert_allclose(logs["loss"], expected, rtol=1e-5)
