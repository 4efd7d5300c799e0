"""A run's calibration: per-task ECE on validation and test, the recipe's post-hoc fit on the validation
split, and the calibrated model that is exported (see docs/methods.md and :mod:`mtl_keras.evaluation.calibration`).

The fitted parameters are plain data (``{task: {"method": "temperature", "temperature": T, "multiclass": b}``
or ``{"method": "isotonic", "x": [...], "y": [...]}``), written to the run directory as ``calibration.json``
so that ``mtl-keras export RUN_DIR`` rebuilds the same calibrated model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np

from mtl_keras.evaluation import calibration as ece
from mtl_keras.layers.calibration import IsotonicCalibration, TemperatureScaling
from mtl_keras.recipes import CalibrationSpec, RecipeError
from mtl_keras.tasks import Task

CALIBRATION_FILE = "calibration.json"


def classification_tasks(tasks: Sequence[Task]) -> list[str]:
    return [t.name for t in tasks if t.kind in ("binary", "multiclass")]


def calibrated_tasks(spec: CalibrationSpec, tasks: Sequence[Task]) -> list[str]:
    """The tasks ``spec`` calibrates (none for method ``none``); refuses unknown, regression and, for
    isotonic, multiclass tasks."""
    if spec.method == "none":
        return []
    kinds = {t.name: t.kind for t in tasks}
    names = spec.tasks or classification_tasks(tasks)
    for name in names:
        if name not in kinds:
            raise RecipeError("calibration.tasks", f"unknown task {name!r}; expected one of {sorted(kinds)}")
        if kinds[name] == "regression" or (spec.method == "isotonic" and kinds[name] != "binary"):
            allowed = "binary" if spec.method == "isotonic" else "binary and multiclass"
            raise RecipeError(
                "calibration.tasks",
                f"{spec.method} calibration is for {allowed} tasks; task {name!r} is {kinds[name]}",
            )
    return list(names)


def fit_calibration(method: str, outputs: Mapping[str, Any], labels: Mapping[str, Any]) -> dict[str, Any]:
    """``{task: parameters}`` of ``method`` fitted on the given (validation) outputs."""
    fitted: dict[str, Any] = {}
    for task, p in outputs.items():
        p = np.asarray(p)
        if method == "temperature":
            multiclass = p.ndim == 2 and p.shape[1] > 1
            temperature = ece.fit_temperature(p, labels[task])
            fitted[task] = {"method": "temperature", "temperature": temperature, "multiclass": multiclass}
        elif method == "isotonic":
            x, y = ece.fit_isotonic(p, labels[task])
            fitted[task] = {"method": "isotonic", "x": x, "y": y}
        else:
            raise ValueError(f"Expected method 'temperature' or 'isotonic'. Received: method={method!r}")
    return fitted


def calibration_layer(task: str, parameters: Mapping[str, Any]) -> keras.layers.Layer:
    if parameters["method"] == "temperature":
        return TemperatureScaling(
            parameters["temperature"], multiclass=parameters["multiclass"], name=f"{task}_calibration"
        )
    return IsotonicCalibration(parameters["x"], parameters["y"], name=f"{task}_calibration")


def calibrated_model(model: keras.Model, fitted: Mapping[str, Any]) -> keras.Model:
    """A Functional model over ``model``'s layers whose calibrated tasks' outputs go through their layer."""
    if not fitted:
        return model
    outputs = dict(model._outputs_struct)
    for task, parameters in fitted.items():
        outputs[task] = calibration_layer(task, parameters)(outputs[task])
    return keras.Model(model._inputs_struct, outputs, name=model.name)


def test_ece(model: keras.Model, dataset: Any, tasks: Sequence[Task], bins: int = 15) -> dict[str, float]:
    """``{"<task>_ece": ECE on the test split}`` of every classification task (merged into evaluate()'s dict)."""
    names = classification_tasks(tasks)
    if not names:
        return {}
    outputs, labels = ece.collect_outputs(model, dataset.batches("test", 1024), names)
    return {f"{t}_ece": v for t, v in ece.task_ece(outputs, labels, bins).items()}


def run_calibration(
    model: keras.Model, dataset: Any, tasks: Sequence[Task], spec: CalibrationSpec, batch_size: int = 1024
) -> dict[str, Any]:
    """ECE of every classification task on validation and test, before and (when fitted) after.

    Returns ``{"method", "bins", "fitted": {task: parameters}, "tasks": {task: {"validation_ece",
    "test_ece", "validation_ece_calibrated", "test_ece_calibrated"}}, "reliability": {task: test data}}``.
    """
    names = classification_tasks(tasks)
    chosen = calibrated_tasks(spec, tasks)
    result: dict[str, Any] = {"method": spec.method, "bins": spec.bins, "fitted": {}, "tasks": {}}
    if not names:
        result["reliability"] = {}
        return result
    val_out, val_y = ece.collect_outputs(model, dataset.batches("validation", batch_size), names)
    test_out, test_y = ece.collect_outputs(model, dataset.batches("test", batch_size), names)
    fitted = fit_calibration(spec.method, {t: val_out[t] for t in chosen}, val_y) if chosen else {}
    result["fitted"] = fitted
    calibrated = calibrated_model(model, fitted)
    entries: dict[str, dict[str, float]] = {
        t: {
            "validation_ece": ece.expected_calibration_error(val_out[t], val_y[t], spec.bins),
            "test_ece": ece.expected_calibration_error(test_out[t], test_y[t], spec.bins),
        }
        for t in names
    }
    reliability = {t: {"before": ece.reliability(test_out[t], test_y[t], spec.bins)} for t in names}
    if fitted:
        cal_val, _ = ece.collect_outputs(calibrated, dataset.batches("validation", batch_size), list(fitted))
        cal_test, _ = ece.collect_outputs(calibrated, dataset.batches("test", batch_size), list(fitted))
        for t in fitted:
            entries[t]["validation_ece_calibrated"] = ece.expected_calibration_error(
                cal_val[t], val_y[t], spec.bins
            )
            entries[t]["test_ece_calibrated"] = ece.expected_calibration_error(
                cal_test[t], test_y[t], spec.bins
            )
            reliability[t]["after"] = ece.reliability(cal_test[t], test_y[t], spec.bins)
    result["tasks"] = entries
    result["reliability"] = reliability
    return result


__all__ = [
    "CALIBRATION_FILE",
    "calibrated_model",
    "calibrated_tasks",
    "calibration_layer",
    "classification_tasks",
    "fit_calibration",
    "run_calibration",
    "test_ece",
]
