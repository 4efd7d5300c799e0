"""MultiTaskModel: masked losses, the plain Keras compile/fit path, errors."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import toy_data, toy_tasks

from mtl_keras import MultiTaskModel, Task, builders


def _model(seed=0):
    keras.utils.set_random_seed(seed)
    return builders.hard_sharing(toy_tasks(), 12, trunk=(8,), tower_units=(4,))


def test_half_nan_labels_equal_the_loss_without_those_rows():
    x, y = toy_data(n=64)
    model = _model()
    model.compile("adam")
    drop = np.arange(64) % 2 == 0
    y_nan = {k: v.copy() for k, v in y.items()}
    y_nan["b"][drop] = np.nan
    with_nan = model.evaluate(x, y_nan, batch_size=64, verbose=0, return_dict=True)
    # Task b on the labelled rows only, computed independently with Keras' own MSE.
    predictions = model.predict(x, verbose=0)
    expected_b = float(keras.losses.MeanSquaredError()(y["b"][~drop, None], predictions["b"][~drop]))
    assert with_nan["b_loss"] == pytest.approx(expected_b, rel=1e-6)
    removed = model.evaluate(
        x[~drop],
        {"b": y["b"][~drop], "a": y["a"][~drop], "c": y["c"][~drop]},
        batch_size=64,
        verbose=0,
        return_dict=True,
    )
    assert with_nan["b_loss"] == pytest.approx(removed["b_loss"], rel=1e-6)
    # The other tasks use every row.
    full = model.evaluate(x, y, batch_size=64, verbose=0, return_dict=True)
    assert with_nan["a_loss"] == pytest.approx(full["a_loss"], rel=1e-6)


def test_per_task_sample_weight_mask_equals_nan_mask():
    x, y = toy_data(n=64)
    model = _model()
    model.compile("adam")
    mask = (np.arange(64) % 3 != 0).astype("float32")
    y_nan = {k: v.copy() for k, v in y.items()}
    y_nan["a"][mask == 0] = np.nan
    by_nan = model.evaluate(x, y_nan, batch_size=64, verbose=0, return_dict=True)
    by_mask = model.evaluate(
        x,
        y,
        sample_weight={"a": mask, "b": np.ones(64), "c": np.ones(64)},
        batch_size=64,
        verbose=0,
        return_dict=True,
    )
    assert by_nan["a_loss"] == pytest.approx(by_mask["a_loss"], rel=1e-6)
    assert by_nan["a_accuracy"] == pytest.approx(by_mask["a_accuracy"], rel=1e-6)


def test_task_without_labels_trains_nothing_and_logs_nan():
    x, y = toy_data(n=64)
    y["c"][:] = np.nan
    model = _model()
    model.compile("adam")
    before = [v.numpy().copy() for v in model.trainable_variables]
    history = model.fit(x, y, batch_size=32, epochs=1, verbose=0).history
    # No labelled example: its loss and metrics are missing (NaN), not 0; everything else is finite.
    assert np.isnan(history["c_loss"][0]) and np.isnan(history["c_accuracy"][0])
    assert all(np.isfinite(values[0]) for key, values in history.items() if not key.startswith("c_"))
    for v, b in zip(model.trainable_variables, before, strict=True):
        assert np.all(np.isfinite(v.numpy()))
        if "tower_c" in v.path:
            np.testing.assert_array_equal(v.numpy(), b)  # no gradient, Adam leaves it unchanged


def test_plain_keras_compile_with_losses_metrics_and_weights():
    x, y = toy_data(n=128)
    model = _model()
    model.compile(
        keras.optimizers.Adam(0.01),
        loss={"b": "mae"},
        metrics={"b": ["rmse"], "a": ["auc"]},
        loss_weights={"a": 2.0, "c": 0.5},
    )
    logs = model.fit(x, y, epochs=2, batch_size=32, verbose=0).history
    assert {"loss", "a_loss", "b_loss", "c_loss", "b_rmse", "a_auc", "c_accuracy"} <= set(logs)
    assert not any(key.endswith("_weight") for key in logs)  # static weights are constant: not logged
    result = model.evaluate(x, y, verbose=0, return_dict=True)
    predictions = model.predict(x, verbose=0)
    mae = float(np.mean(np.abs(predictions["b"][:, 0] - y["b"])))
    assert result["b_loss"] == pytest.approx(mae, rel=1e-5)
    expected_total = 2.0 * result["a_loss"] + result["b_loss"] + 0.5 * result["c_loss"]
    assert result["loss"] == pytest.approx(expected_total, rel=1e-5)


def test_static_weights_scale_the_gradient_exactly():
    """One SGD step with weights (2, 1, 0) equals a step on 2·L_a + L_b, computed with a plain tape."""
    x, y = toy_data(n=32)
    model = _model()
    reference = _model()
    reference.set_weights(model.get_weights())
    model.compile(keras.optimizers.SGD(0.1), loss_weights=[2.0, 1.0, 0.0])
    model.train_on_batch(x, y)
    with tf.GradientTape() as tape:
        p = reference(x)
        loss = 2.0 * tf.reduce_mean(
            keras.losses.binary_crossentropy(y["a"][:, None], p["a"])
        ) + tf.reduce_mean(keras.losses.mean_squared_error(y["b"][:, None], p["b"]))
    grads = tape.gradient(loss, reference.trainable_variables)
    for v, r, g in zip(model.trainable_variables, reference.trainable_variables, grads, strict=True):
        expected = r.numpy() - 0.1 * (g.numpy() if g is not None else 0.0)
        np.testing.assert_allclose(v.numpy(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (lambda y: {**y, "d": y["a"]}, "Unknown task 'd'"),
        (lambda y: {"a": y["a"], "b": y["b"]}, r"No labels for task\(s\) \['c'\]"),
        (lambda y: {"a": y["a"], "b": y["b"], "cc": y["c"]}, "Did you mean 'c'"),
        (lambda y: y["a"], "dict keyed by the task names"),
    ],
)
def test_label_errors_name_the_task(labels, message):
    x, y = toy_data(n=32)
    model = _model()
    model.compile("adam")
    with pytest.raises(ValueError, match=message):
        model.fit(x, labels(y), epochs=1, verbose=0)


def test_label_shape_mismatch_is_named():
    x, y = toy_data(n=32)
    model = _model()
    model.compile("adam")
    y["b"] = np.zeros((32, 3), "float32")
    with pytest.raises(ValueError, match="Labels of task 'b' have shape"):
        model.fit(x, y, epochs=1, verbose=0)


def test_compile_argument_errors():
    model = _model()
    with pytest.raises(ValueError, match="Unknown task 'bb' in `loss`"):
        model.compile("adam", loss={"bb": "mse"})
    with pytest.raises(ValueError, match="Expected `loss_weights` to have 3 entries"):
        model.compile("adam", loss_weights=[1.0, 2.0])
    with pytest.raises(ValueError, match=r"Unknown metric 'acuracy'.*Did you mean 'accuracy'"):
        model.compile("adam", metrics={"a": ["acuracy"]})


def test_outputs_must_be_keyed_by_task_names():
    inputs = keras.Input((3,))
    with pytest.raises(ValueError, match="dict keyed by the task names"):
        MultiTaskModel(inputs, {"x": keras.layers.Dense(1)(inputs)}, tasks=[Task("y")])


def test_wrong_input_shape_is_reported():
    model = _model()
    model.compile("adam")
    with pytest.raises(ValueError, match="shape"):
        model.predict(np.zeros((4, 5), "float32"), verbose=0)
