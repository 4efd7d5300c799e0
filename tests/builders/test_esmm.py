import re
from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import check_builder, check_sharing

from mtl_keras import Task
from mtl_keras.builders.esmm import esmm, esmm_labels

SMALL: dict[str, Any] = {"shared_units": (16,), "tower_units": (8,)}


def click_data(n=256, dim=8, seed=0):
    """Impressions x; click ~ Bernoulli(σ(u·x − 0.5)); conversion ~ Bernoulli(σ(v·x − 1)) given a click.

    Returns x, click, conversion (conversion is NaN on non-clicked impressions, as in logged data) and the
    true conversion probability given a click.
    """
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dim)).astype("float32")
    u, v = np.zeros(dim), np.zeros(dim)
    u[:2], v[2:4] = (1.5, -1.0), (2.0, 1.5)
    p_click = 1 / (1 + np.exp(-(x @ u - 0.5)))
    p_conversion = 1 / (1 + np.exp(-(x @ v - 1.0)))
    click = (rng.uniform(size=n) < p_click).astype("float32")
    conversion = np.where(click == 1, (rng.uniform(size=n) < p_conversion).astype("float32"), np.nan)
    return x, click, conversion.astype("float32"), p_conversion


def test_fit_lowers_ctr_and_ctcvr_losses_and_round_trip(tmp_path):
    x, click, conversion, _ = click_data()
    model = esmm(["ctr", "ctcvr"], 8, **SMALL)
    assert model.task_names == ["ctr", "cvr", "ctcvr"]
    check_builder(model, x, esmm_labels(click, conversion), tmp_path)


def test_ctcvr_is_ctr_times_cvr():
    x, *_ = click_data(n=32)
    outputs = esmm(["ctr", "ctcvr"], 8, **SMALL).predict(x, verbose=0)
    assert outputs["ctr"].shape == outputs["cvr"].shape == outputs["ctcvr"].shape == (32, 1)
    np.testing.assert_allclose(outputs["ctcvr"], outputs["ctr"] * outputs["cvr"], rtol=1e-6)
    for name in ("ctr", "cvr"):
        assert np.all((outputs[name] > 0) & (outputs[name] < 1))


def test_cvr_head_learns_conversion_through_the_product_only():
    """No CVR labels, yet the CVR head ranks impressions by their true conversion probability."""
    x, click, conversion, p_conversion = click_data(n=256, seed=3)
    keras.utils.set_random_seed(3)  # robust anyway: 0.63-0.80 over 8 seeds of data and initialisation
    model = esmm(["ctr", "ctcvr"], 8, **SMALL)
    model.compile(keras.optimizers.Adam(0.02))
    model.fit(x, esmm_labels(click, conversion), epochs=25, batch_size=64, verbose=0)
    predicted = model.predict(x, verbose=0)["cvr"][:, 0]
    assert np.corrcoef(predicted, p_conversion)[0, 1] > 0.5


def test_shared_layers_are_the_bottom_and_the_ctr_tower():
    x, click, conversion, _ = click_data(n=64)
    y = esmm_labels(click, conversion)
    model = esmm(["ctr", "ctcvr"], 8, shared_units=(16, 8), tower_units=(8,))
    assert model.shared_layer_names == ["shared_0", "shared_1", "tower_ctr"]
    assert model.representation_name is None
    check_sharing(model, x, y)
    # Independently: variables with a non-zero gradient from both labelled losses (BCE written out here).
    variables = model.trainable_variables
    with tf.GradientTape(persistent=True) as tape:
        out = model(x)
        losses = []
        for name in ("ctr", "ctcvr"):
            p, t = tf.clip_by_value(out[name][:, 0], 1e-7, 1 - 1e-7), tf.constant(y[name])
            losses.append(-tf.reduce_mean(t * tf.math.log(p) + (1 - t) * tf.math.log(1 - p)))
    used = [
        {
            v.path
            for v, g in zip(variables, tape.gradient(loss, [v.value for v in variables]), strict=True)
            if g is not None and float(tf.reduce_max(tf.abs(g))) > 0
        }
        for loss in losses
    ]
    del tape
    assert {v.path for v in model.shared_variables} == used[0] & used[1]
    assert any("tower_cvr" in path for path in used[1] - used[0])


def test_tasks_may_be_task_objects_with_custom_names_and_a_cvr_task():
    tasks = [Task("click", "binary"), Task("buy", "binary"), Task("convert", "binary", metrics=["auc"])]
    model = esmm(tasks, 8, ctr="click", cvr="convert", ctcvr="buy", **SMALL)
    assert model.task_names == ["click", "convert", "buy"]
    assert model.tasks[1].metrics == ["auc"]
    labels = esmm_labels([1, 0], [1, np.nan], ctr="click", cvr="convert", ctcvr="buy")
    assert sorted(labels) == ["buy", "click", "convert"]


def test_esmm_labels():
    labels = esmm_labels([1, 1, 0, 0, np.nan], [1, 0, 0, np.nan, 0])
    np.testing.assert_array_equal(labels["ctr"], [1, 1, 0, 0, np.nan])
    np.testing.assert_array_equal(labels["ctcvr"], [1, 0, 0, 0, np.nan])
    assert labels["cvr"].shape == (5,) and np.all(np.isnan(labels["cvr"]))
    assert all(v.dtype == np.float32 for v in labels.values())


@pytest.mark.parametrize(
    ("click", "conversion", "message"),
    [
        ([1, 0], [1, 0, 0], "Received: click.shape=(2,), conversion.shape=(3,)"),
        ([1, 2], [1, 0], "Expected `click` to hold 0, 1 or NaN. Received values [2.0]"),
        ([1, 0], [0.5, 0], "Expected `conversion` to hold 0, 1 or NaN. Received values [0.5]"),
        ([1, 0], [0, 1], "conversion=1 with click=0 at index 1"),
    ],
)
def test_esmm_labels_errors(click, conversion, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        esmm_labels(click, conversion)


@pytest.mark.parametrize(
    ("tasks", "kwargs", "message"),
    [
        (["ctr"], {}, "Missing: ['ctcvr']"),
        (["ctr", "ctcvr", "clicks"], {}, "Received a task named 'clicks'"),
        ([Task("ctr"), "ctcvr"], {}, "Expected ESMM task 'ctr' to be a binary task"),
        ([Task("ctr", "binary", units=2), "ctcvr"], {}, "Received: kind='binary', units=2"),
        (["ctr", "ctr", "ctcvr"], {}, "Received task 'ctr' twice"),
        (["ctr", "ctcvr"], {"cvr": "ctr"}, "Received: ctr='ctr', cvr='ctr', ctcvr='ctcvr'"),
        (["ctr", "ctcvr"], {"cvr": "c-v-r"}, "Received: cvr='c-v-r'"),
        (["ctr", "ctcvr"], {"shared_units": ()}, "Expected `shared_units` to be a non-empty list"),
        (["ctr", "ctcvr"], {"tower_units": (0,)}, "Received: tower_units=[0]"),
        (["ctr", "ctcvr"], {"dropout": 1.0}, "Received: dropout=1.0"),
    ],
)
def test_bad_arguments(tasks, kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        esmm(tasks, 8, **kwargs)
