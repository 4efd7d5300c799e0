"""Objectives: names and directions for Keras Tuner, and their values against independent computations."""

import math

import numpy as np
import pytest

from mtl_keras import Task
from mtl_keras.data import MultiTaskDataset, Split
from mtl_keras.recipes import RecipeError
from mtl_keras.tuning import make_objective
from mtl_keras.tuning.objectives import (
    ObjectiveLogger,
    constant_references,
    delta_m_value,
    mean_normalized,
    objective_function,
)

TASKS = [
    Task("click", "binary", metrics=["auc", "accuracy"]),
    Task("price", "regression"),
    Task("kind", "multiclass", num_classes=3),
]


def _dataset(seed=0):
    rng = np.random.default_rng(seed)

    def split(n):
        return Split(
            rng.normal(size=(n, 4)).astype("float32"),
            {
                "click": (rng.random(n) < 0.3).astype("float32"),
                "price": rng.normal(2.0, 3.0, n).astype("float32"),
                "kind": rng.choice(3, n, p=[0.2, 0.5, 0.3]).astype("float32"),
            },
        )

    return MultiTaskDataset("toy", TASKS, split(400), split(300), split(10))


def test_names_and_directions():
    spec = {"kind": "task_metric", "task": "price", "metric": None}
    objective = make_objective(spec, TASKS)
    assert (objective.name, objective.direction) == ("val_price_mse", "min")
    objective = make_objective({**spec, "task": "click"}, TASKS)
    assert (objective.name, objective.direction) == ("val_click_auc", "max")  # the task's first metric
    objective = make_objective({**spec, "task": "click", "metric": "loss"}, TASKS)
    assert (objective.name, objective.direction) == ("val_click_loss", "min")
    tuner_objective = make_objective({"kind": "delta_m", "task": None, "metric": None}, TASKS).keras_tuner()
    assert (tuner_objective.name, tuner_objective.direction) == ("val_delta_m", "max")
    objective = make_objective({"kind": "mean_normalized", "task": None, "metric": None}, TASKS)
    assert (objective.name, objective.direction) == ("val_mean_normalized", "max")


@pytest.mark.parametrize(
    ("spec", "path"),
    [
        ({"kind": "task_metric", "task": "prices", "metric": None}, "search.objective.task"),
        ({"kind": "task_metric", "task": "price", "metric": "auc"}, "search.objective.metric"),
    ],
)
def test_objective_errors_name_the_key(spec, path):
    with pytest.raises(RecipeError) as info:
        make_objective(spec, TASKS)
    assert info.value.path == path


def test_constant_references_match_numpy():
    data = _dataset()
    references = constant_references(data, TASKS)
    train, valid = data.train.y, data.validation.y
    # Regression: the MSE of predicting the training mean.
    np.testing.assert_allclose(
        references["price"]["mse"], np.mean((valid["price"] - train["price"].mean()) ** 2), rtol=1e-5
    )
    # Binary: a constant score has AUC 0.5; below 0.5 it predicts "no click" for everyone.
    assert train["click"].mean() < 0.5
    assert references["click"]["auc"] == pytest.approx(0.5)
    assert references["click"]["accuracy"] == pytest.approx(np.mean(valid["click"] == 0))
    # Multiclass: the accuracy of always answering the training majority class.
    majority = np.bincount(train["kind"].astype(int)).argmax()
    assert references["kind"]["accuracy"] == pytest.approx(np.mean(valid["kind"] == majority))


def test_missing_labels_are_left_out():
    data = _dataset()
    data.validation.y["price"][:100] = np.nan
    data.train.y["price"][:50] = np.nan
    references = constant_references(data, TASKS)
    valid, train = data.validation.y["price"][100:], data.train.y["price"][50:]
    np.testing.assert_allclose(references["price"]["mse"], np.mean((valid - train.mean()) ** 2), rtol=1e-5)


def test_mean_normalized_is_r2_for_mse_and_scales_auc():
    references = {"price": {"mse": 4.0}, "click": {"auc": 0.5, "accuracy": 0.7}}
    metrics = {"price": {"mse": 1.0, "loss": 1.0}, "click": {"auc": 0.8, "accuracy": 0.85}}
    price = 1 - 1.0 / 4.0  # R²
    click = ((0.8 - 0.5) / 0.5 + (0.85 - 0.7) / 0.3) / 2
    assert mean_normalized(metrics, references) == pytest.approx((price + click) / 2)


def test_delta_m_follows_the_library_convention():
    # The example of mtl_keras.evaluation.delta_m: +5 % on AUC, −20 % on MSE → Δm = −7.5.
    tasks = [Task("a", "binary", metrics=["auc"]), Task("b", "regression")]
    value = delta_m_value({"a": {"auc": 0.84}, "b": {"mse": 0.6}}, {"a_auc": 0.80, "b_mse": 0.5}, tasks)
    assert value == pytest.approx(-7.5)


def test_objective_logger_adds_the_value_and_refuses_nan():
    tasks = [Task("a", "binary", metrics=["auc"]), Task("b", "regression")]
    objective = make_objective({"kind": "delta_m", "task": None, "metric": None}, tasks)
    function = objective_function(objective, tasks, baselines={"a_auc": 0.8, "b_mse": 0.5})
    logger = ObjectiveLogger(objective.name, function)
    logs = {"loss": 1.0, "val_a_auc": 0.84, "val_b_mse": 0.6, "a_auc": 0.1, "b_mse": 9.0}
    logger.on_epoch_end(0, logs)
    assert logs["val_delta_m"] == pytest.approx(-7.5)  # training metrics are not read
    with pytest.raises(ValueError, match="finite"):
        logger.on_epoch_end(1, {"val_a_auc": math.nan, "val_b_mse": 0.6})
    with pytest.raises(ValueError, match="validation"):
        logger.on_epoch_end(1, {"a_auc": 0.84, "b_mse": 0.6})
