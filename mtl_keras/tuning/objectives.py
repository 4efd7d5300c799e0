"""What a search maximises or minimises, computed from a trial's validation logs every epoch.

Three kinds (``search.objective.kind``), each a named value with an explicit direction, so Keras Tuner
gets ``kt.Objective(name, direction)``:

``task_metric`` → ``val_<task>_<metric>``
    One task's validation metric, as Keras logs it; direction from :data:`mtl_keras.tasks.HIGHER_IS_BETTER`.

``mean_normalized`` → ``val_mean_normalized`` (max)
    Each task metric m is put on one scale, 0 for a constant predictor and 1 for a perfect one::

        score = (m − m_const) / (m_perfect − m_const)

    where m_const is the metric of predicting the training-label mean (class frequencies for multiclass
    tasks) for every validation example and m_perfect is 1 for higher-is-better metrics (AUC, accuracy, ...)
    and 0 for errors and losses. For MSE the score is the validation R²; for AUC it is 2·AUC − 1. Scores are
    averaged over each task's metrics, then over tasks. The references need no training and are computed
    once per search.

``delta_m`` → ``val_delta_m`` (max)
    Δm % of the trial against single-task baselines, both on the validation split (the convention of
    :mod:`mtl_keras.evaluation.delta_m`: positive = multi-task better; the metrics of
    :func:`mtl_keras.evaluation.build_report`), against the validation results of the recipe's single-task
    baselines (:mod:`mtl_keras.tuning.baselines`).

Nothing here reads the test split.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import keras
import keras_tuner as kt
import numpy as np

from mtl_keras._registry import suggest
from mtl_keras.data import AnyDataset
from mtl_keras.evaluation.report import build_report, split_results
from mtl_keras.recipes import RecipeError
from mtl_keras.tasks import HIGHER_IS_BETTER, Task
from mtl_keras.tuning.schema import ObjectiveSpec


@dataclasses.dataclass(frozen=True)
class Objective:
    """A named objective: ``name`` is the epoch-log key Keras Tuner reads, ``direction`` ``"max"``/``"min"``."""

    kind: str
    name: str
    direction: str
    task: str | None = None
    metric: str | None = None

    def keras_tuner(self) -> kt.Objective:
        return kt.Objective(self.name, direction=self.direction)

    def describe(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "split": "validation"}


def make_objective(spec: ObjectiveSpec | Mapping[str, Any], tasks: Sequence[Task]) -> Objective:
    """The objective of a ``search.objective`` block (or its mapping), checked against the data set's tasks."""
    if not isinstance(spec, ObjectiveSpec):
        spec = ObjectiveSpec.model_validate(dict(spec))
    if spec.kind == "delta_m":
        return Objective(spec.kind, "val_delta_m", "max")
    if spec.kind == "mean_normalized":
        for task in tasks:
            for metric in task.metric_names():
                _direction(metric, f"task {task.name!r}")
        return Objective(spec.kind, "val_mean_normalized", "max")
    names = [t.name for t in tasks]
    if spec.task not in names:
        raise RecipeError(
            "search.objective.task",
            f"no such task in the data set; expected one of {names}." + suggest(str(spec.task), names),
        )
    task = tasks[names.index(spec.task)]
    metrics = [*task.metric_names(), "loss"]
    metric = spec.metric or metrics[0]
    if metric not in metrics:
        raise RecipeError(
            "search.objective.metric",
            f"task {task.name!r} logs no metric {metric!r}; expected one of {metrics}."
            + suggest(metric, metrics),
        )
    higher = HIGHER_IS_BETTER.get(metric)
    if higher is None:
        raise RecipeError("search.objective.metric", f"unknown direction for metric {metric!r}")
    return Objective(spec.kind, f"val_{task.name}_{metric}", "max" if higher else "min", task.name, metric)


def _direction(metric: str, where: str) -> bool:
    if metric not in HIGHER_IS_BETTER:
        raise RecipeError(
            "search.objective.kind",
            f"cannot normalise metric {metric!r} of {where}: its direction is unknown "
            f"(known: {sorted(HIGHER_IS_BETTER)})",
        )
    return HIGHER_IS_BETTER[metric]


def validation_metrics(logs: Mapping[str, Any], task_names: Sequence[str]) -> dict[str, dict[str, float]]:
    """``{"val_<task>_<metric>": v, ...}`` epoch logs → ``{task: {metric: v}}`` (training keys dropped)."""
    return split_results({k[4:]: v for k, v in logs.items() if k.startswith("val_")}, task_names)


# --- mean_normalized --------------------------------------------------------------------------------------


def constant_references(dataset: AnyDataset, tasks: Sequence[Task]) -> dict[str, dict[str, float]]:
    """``{task: {metric: m_const}}``: each validation metric of a constant predictor fitted on train labels."""
    references: dict[str, dict[str, float]] = {}
    train_labels, valid_labels = dataset.label_arrays("train"), dataset.label_arrays("validation")
    for task in tasks:
        train = np.asarray(train_labels[task.name], dtype=np.float64)
        valid = np.asarray(valid_labels[task.name], dtype=np.float64)
        train = train[np.all(np.isfinite(train.reshape(len(train), -1)), axis=1)]
        valid = valid[np.all(np.isfinite(valid.reshape(len(valid), -1)), axis=1)]
        if len(train) == 0 or len(valid) == 0:
            raise ValueError(
                f"Task {task.name!r} has no labelled train or validation example to normalise by."
            )
        if task.kind == "multiclass":
            counts = np.bincount(train.astype(int).ravel(), minlength=task.output_units)
            prediction = np.tile(counts / counts.sum(), (len(valid), 1))
        else:
            prediction = np.broadcast_to(train.mean(axis=0), valid.shape)
        references[task.name] = {}
        for name, metric in zip(task.metric_names(), task.get_metrics(), strict=True):
            metric.update_state(valid.astype("float32"), np.asarray(prediction, dtype="float32"))
            references[task.name][name] = float(metric.result())
    return references


def mean_normalized(
    metrics: Mapping[str, Mapping[str, float]], references: Mapping[str, Mapping[str, float]]
) -> float:
    """Mean over tasks of the mean over their metrics of ``(m − m_const) / (m_perfect − m_const)``."""
    per_task = []
    for task, reference in references.items():
        scores = []
        for metric, constant in reference.items():
            perfect = 1.0 if _direction(metric, f"task {task!r}") else 0.0
            if perfect == constant:
                continue  # a constant predictor is already perfect: nothing to learn, nothing to score
            scores.append((float(metrics[task][metric]) - constant) / (perfect - constant))
        if scores:
            per_task.append(sum(scores) / len(scores))
    return sum(per_task) / len(per_task) if per_task else math.nan


# --- delta_m ---------------------------------------------------------------------------------------------


def delta_m_value(
    metrics: Mapping[str, Mapping[str, float]], baselines: Mapping[str, float], tasks: Sequence[Task]
) -> float:
    """Δm % of ``{task: {metric: v}}`` against flat baseline results ``{"<task>_<metric>": v}``."""
    flat = {f"{task}_{metric}": v for task, values in metrics.items() for metric, v in values.items()}
    # A report leaves missing metrics out of Δm; a search must not: a NaN is a diverged trial (or a task with
    # no validation labels, which no trial can be compared on).
    bad = {k: v for k, v in flat.items() if not math.isfinite(float(v))}
    if bad:
        raise ValueError(
            f"The delta_m objective needs finite validation metrics; got {bad} (did training diverge, or does "
            "a task have no labels in the validation split?)"
        )
    report = build_report(flat, baselines, list(tasks), recipe="search", train_seconds=0.0, params=0)
    return float(report["delta_m"])


# --- the callback -----------------------------------------------------------------------------------------


def objective_function(
    objective: Objective,
    tasks: Sequence[Task],
    *,
    baselines: Mapping[str, float] | None = None,
    references: Mapping[str, Mapping[str, float]] | None = None,
) -> Callable[[Mapping[str, Any]], float]:
    """``epoch logs → objective value`` for ``objective`` (baselines for delta_m, references for mean_normalized)."""
    names = [t.name for t in tasks]
    if objective.kind == "delta_m":
        if baselines is None:
            raise ValueError("The delta_m objective needs the baselines' validation results.")
        fixed_baselines = dict(baselines)
        return lambda logs: delta_m_value(validation_metrics(logs, names), fixed_baselines, tasks)
    if objective.kind == "mean_normalized":
        if references is None:
            raise ValueError("The mean_normalized objective needs the constant-predictor references.")
        fixed_references = {k: dict(v) for k, v in references.items()}
        return lambda logs: mean_normalized(validation_metrics(logs, names), fixed_references)
    key = objective.name
    return lambda logs: float(logs[key])


class ObjectiveLogger(keras.callbacks.Callback):
    """Adds ``logs[name] = function(logs)`` at the end of every epoch, before Keras Tuner and `History` read them."""

    def __init__(self, name: str, function: Callable[[Mapping[str, Any]], float]) -> None:
        super().__init__()
        self.name = name
        self.function = function

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs is None:
            return
        if not any(k.startswith("val_") for k in logs):
            raise ValueError(
                f"The search objective {self.name!r} needs validation logs; fit got no validation_data."
            )
        value = float(self.function(logs))
        if not math.isfinite(value):
            raise ValueError(
                f"The search objective {self.name!r} is {value} after epoch {epoch + 1}: did training diverge?"
            )
        logs[self.name] = value


__all__ = [
    "Objective",
    "ObjectiveLogger",
    "constant_references",
    "delta_m_value",
    "make_objective",
    "mean_normalized",
    "objective_function",
    "validation_metrics",
]
