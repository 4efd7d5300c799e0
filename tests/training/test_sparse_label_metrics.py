"""Per-task losses and metrics with missing labels (issue 14, item 7).

A task's logged loss is the loss over every labelled example of the epoch, not a mean of batch means that
counts 0 for batches without labels; a task or split without labels reports NaN for its loss and its
metrics, never 0; static task weights are not logged. Every expected number is computed here with numpy
from the model's predictions.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import toy_data, toy_tasks

from mtl_keras import MultiTaskModel, Task, builders

BATCH = 20


def _zero_regression_model() -> MultiTaskModel:
    """Task ``a`` (binary) and ``b`` (regression) heads on one input; ``b`` predicts exactly 0."""
    inputs = keras.Input(shape=(3,), name="x")
    hidden = keras.layers.Dense(4, activation="relu", name="trunk")(inputs)
    outputs = {
        "a": keras.layers.Dense(1, activation="sigmoid", name="head_a")(hidden),
        "b": keras.layers.Dense(1, kernel_initializer="zeros", bias_initializer="zeros", name="head_b")(
            hidden
        ),
    }
    return MultiTaskModel(
        inputs, outputs, tasks=[Task("a", "binary"), Task("b", "regression")], shared_layers=["trunk"]
    )


def _five_percent_labels() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """20 batches of 20 rows; task b labelled in 20 rows (5 %): 10 in batch 0, 5 in batch 1 and one in each
    of batches 2-6, with squared labels 0.836, 3.064 and 1.0."""
    rng = np.random.default_rng(0)
    n = 20 * BATCH
    x = rng.normal(size=(n, 3)).astype("float32")
    b = np.full(n, np.nan, dtype="float32")
    b[:10] = np.sqrt(0.836)
    b[BATCH : BATCH + 5] = -np.sqrt(3.064)
    for batch in range(2, 7):
        b[batch * BATCH] = 1.0
    a = (x[:, 0] > 0).astype("float32")
    return x, {"a": a, "b": b}


def _batch_mean_of_means(per_example: np.ndarray, labelled: np.ndarray, batch: int) -> float:
    """The old logged value: the mean over batches of each batch's masked mean, 0 for unlabelled batches."""
    means = []
    for start in range(0, len(per_example), batch):
        part, mask = per_example[start : start + batch], labelled[start : start + batch]
        means.append(float(part[mask].mean()) if mask.any() else 0.0)
    return float(np.mean(means))


def test_loss_over_labelled_rows_not_mean_of_batch_means():
    """The issue's case: true MSE 1.434 over the labelled 5 %, where the old log showed 0.445."""
    x, y = _five_percent_labels()
    model = _zero_regression_model()
    model.compile(keras.optimizers.SGD(0.0))  # weights stay put: every batch sees the same predictions
    predictions = model.predict(x, batch_size=BATCH, verbose=0)["b"][:, 0]
    labelled = ~np.isnan(y["b"])
    squared = np.where(labelled, (predictions - np.nan_to_num(y["b"])) ** 2, 0.0)
    true_mse = float(squared[labelled].mean())
    assert true_mse == pytest.approx(1.434, abs=1e-6)
    assert _batch_mean_of_means(squared, labelled, BATCH) == pytest.approx(0.445, abs=1e-6)

    history = model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0).history
    assert history["b_loss"][0] == pytest.approx(true_mse, rel=1e-5)
    assert history["b_mse"][0] == pytest.approx(true_mse, rel=1e-5)
    result = model.evaluate(x, y, batch_size=BATCH, verbose=0, return_dict=True)
    assert result["b_loss"] == pytest.approx(true_mse, rel=1e-5)
    assert result["b_mse"] == pytest.approx(true_mse, rel=1e-5)


def _bce(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    p = np.clip(p.astype(np.float64), 1e-7, 1 - 1e-7)
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def test_random_sparse_labels_and_a_short_last_batch():
    """5 % random labels, 250 rows in batches of 32 (the last one 26 rows): evaluate's per-task losses are
    the losses over all labelled rows, for a regression and a binary task."""
    rng = np.random.default_rng(3)
    x, y = toy_data(n=250, seed=3)
    for name in ("a", "b"):
        y[name][rng.uniform(size=250) > 0.05] = np.nan
    keras.utils.set_random_seed(0)
    model = builders.hard_sharing(toy_tasks(), 12, trunk=(8,))
    model.compile("adam")
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    p = model.predict(x, batch_size=64, verbose=0)
    result = model.evaluate(x, y, batch_size=32, verbose=0, return_dict=True)
    b = ~np.isnan(y["b"])
    a = ~np.isnan(y["a"])
    assert result["b_loss"] == pytest.approx(np.mean((p["b"][b, 0] - y["b"][b]) ** 2), rel=1e-5)
    assert result["a_loss"] == pytest.approx(np.mean(_bce(p["a"][a, 0], y["a"][a])), rel=1e-5)
    probabilities = np.clip(p["c"].astype(np.float64), 1e-7, 1.0)
    expected_c = -np.mean(np.log(probabilities[np.arange(250), y["c"].astype(int)]))
    assert result["c_loss"] == pytest.approx(expected_c, rel=1e-5)


def test_sample_weights_weigh_the_labelled_rows():
    """With per-task sample weights the logged loss is Σ w·l / Σ w over the labelled rows of the epoch."""
    rng = np.random.default_rng(4)
    x, y = toy_data(n=96, seed=4)
    y["b"][rng.uniform(size=96) > 0.3] = np.nan
    weights = rng.uniform(0.5, 2.0, size=96).astype("float32")
    keras.utils.set_random_seed(0)
    model = builders.hard_sharing(toy_tasks(), 12, trunk=(8,))
    model.compile("adam")
    # Weights for b only (a dict of per-task weights): through tf.data, which takes any structure.
    dataset = tf.data.Dataset.from_tensor_slices((x, y, {"b": weights})).batch(32)
    result = model.evaluate(dataset, verbose=0, return_dict=True)
    p = model.predict(x, verbose=0)["b"][:, 0]
    b = ~np.isnan(y["b"])
    expected = np.sum(weights[b] * (p[b] - y["b"][b]) ** 2) / np.sum(weights[b])
    assert result["b_loss"] == pytest.approx(expected, rel=1e-5)


def test_task_without_labels_reports_nan_loss_and_metrics():
    """No labels for c in the validation data, none for a in the evaluated data: NaN, never 0.0."""
    x, y = toy_data(n=96, seed=5)
    keras.utils.set_random_seed(0)
    model = builders.hard_sharing(toy_tasks(), 12, trunk=(8,))
    model.compile("adam", metrics={"a": ["auc", "accuracy"]})
    y_val = {k: v.copy() for k, v in y.items()}
    y_val["c"][:] = np.nan
    history = model.fit(x, y, validation_data=(x, y_val), batch_size=32, epochs=1, verbose=0).history
    assert np.isnan(history["val_c_loss"][0]) and np.isnan(history["val_c_accuracy"][0])
    assert np.isfinite(history["c_loss"][0]) and np.isfinite(history["c_accuracy"][0])
    assert np.isfinite(history["val_a_auc"][0]) and np.isfinite(history["val_loss"][0])

    y_test = {k: v.copy() for k, v in y.items()}
    y_test["a"][:] = np.nan
    result = model.evaluate(x, y_test, batch_size=32, verbose=0, return_dict=True)
    for key in ("a_loss", "a_auc", "a_accuracy"):
        assert np.isnan(result[key]), key
    assert np.isfinite(result["b_loss"]) and np.isfinite(result["c_accuracy"])
    # The logs returned by fit and evaluate are the model's metric results.
    assert set(result) == set(model.get_metrics_result())
    # The training objective stays finite: the unlabelled task adds nothing, not NaN.
    assert np.isfinite(result["loss"])


def test_unlabelled_task_in_training_is_nan_and_nothing_else_is():
    x, y = toy_data(n=64, seed=6)
    y["c"][:] = np.nan
    keras.utils.set_random_seed(0)
    model = builders.hard_sharing(toy_tasks(), 12, trunk=(8,))
    model.compile("adam")
    history = model.fit(x, y, batch_size=32, epochs=2, verbose=0).history
    assert all(np.isnan(history["c_loss"])) and all(np.isnan(history["c_accuracy"]))
    for key, values in history.items():
        if not key.startswith("c_"):
            assert np.all(np.isfinite(values)), key
    for variable in model.trainable_variables:
        assert np.all(np.isfinite(variable.numpy())), variable.path


def test_static_weights_are_not_logged_and_changing_weights_are():
    x, y = toy_data(n=64, seed=7)
    for balancer, kwargs in (("pcgrad", {}), (None, {"loss_weights": {"a": 2.0}})):
        model = builders.hard_sharing(toy_tasks(), 12, trunk=(8,))
        model.compile("adam", balancer=balancer, **kwargs)
        logs = model.fit(x, y, batch_size=32, epochs=1, verbose=0).history
        assert not any(k.endswith("_weight") for k in logs), (balancer, sorted(logs))
    model = builders.hard_sharing(toy_tasks(), 12, trunk=(8,))
    model.compile("adam", balancer="uncertainty")
    logs = model.fit(x, y, batch_size=32, epochs=1, verbose=0).history
    assert {"a_weight", "b_weight", "c_weight"} <= set(logs)


# --- MirroredStrategy ----------------------------------------------------------------------------------------


def _mirrored_data() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    x, y = toy_data(n=320, seed=8)
    rng = np.random.default_rng(8)
    y["b"][rng.uniform(size=320) > 0.05] = np.nan  # sparse: many replica batches without labels
    rows = np.arange(320) % 32
    y["c"][rows >= 16] = np.nan  # c labelled in the first half of each batch: the first replica only
    return x, y


def _train_and_evaluate(strategy: tf.distribute.Strategy, x, y, y_val):
    with strategy.scope():
        keras.utils.set_random_seed(0)
        model = builders.hard_sharing(toy_tasks(), 12, trunk=(8,), tower_units=(4,))
        model.compile(keras.optimizers.Adam(1e-2), metrics={"a": ["auc"]})
    history = model.fit(
        x, y, validation_data=(x, y_val), batch_size=32, epochs=2, shuffle=False, verbose=0
    ).history
    result = model.evaluate(x, y, batch_size=32, verbose=0, return_dict=True)
    return history, result, model.predict(x, batch_size=64, verbose=0)


def test_two_replicas_log_the_single_device_per_task_losses(mirrored_strategy):
    x, y = _mirrored_data()
    y_val = {k: v.copy() for k, v in y.items()}
    y_val["a"][:] = np.nan
    one, one_result, _ = _train_and_evaluate(tf.distribute.get_strategy(), x, y, y_val)
    two, two_result, predictions = _train_and_evaluate(mirrored_strategy, x, y, y_val)
    assert sorted(one) == sorted(two)
    for key in one:
        np.testing.assert_allclose(one[key], two[key], rtol=1e-4, atol=1e-6, err_msg=key)
    for key in ("val_a_loss", "val_a_auc"):
        assert np.all(np.isnan(two[key])), key
    assert sorted(one_result) == sorted(two_result)
    for key in one_result:
        assert two_result[key] == pytest.approx(one_result[key], rel=1e-4, abs=1e-6), key
    # Independently: the distributed evaluate equals the losses over all labelled rows.
    b, c = ~np.isnan(y["b"]), ~np.isnan(y["c"])
    assert two_result["b_loss"] == pytest.approx(np.mean((predictions["b"][b, 0] - y["b"][b]) ** 2), rel=1e-5)
    probabilities = np.clip(predictions["c"][c].astype(np.float64), 1e-7, 1.0)
    expected_c = -np.mean(np.log(probabilities[np.arange(c.sum()), y["c"][c].astype(int)]))
    assert two_result["c_loss"] == pytest.approx(expected_c, rel=1e-5)
