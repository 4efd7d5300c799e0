"""`Task`: what one head predicts, how its loss and metrics are computed, and where its labels come from.

A task owns its loss and its metrics (as TFRS tasks do); the model only sums tasks. The three kinds are
described by data (:data:`KINDS`), not by string comparisons in the training code.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np

from mtl_keras._registry import suggest


@dataclasses.dataclass(frozen=True)
class _Kind:
    activation: str
    default_loss: str
    default_metrics: tuple[str, ...]
    # metric aliases accepted for this kind -> Keras metric class name
    metric_aliases: dict[str, str]
    # higher is better for the default metrics (used by Δm and early stopping)
    needs_num_classes: bool = False


KINDS: dict[str, _Kind] = {
    "regression": _Kind(
        activation="linear",
        default_loss="mean_squared_error",
        default_metrics=("mse",),
        metric_aliases={
            "mse": "MeanSquaredError",
            "mae": "MeanAbsoluteError",
            "rmse": "RootMeanSquaredError",
        },
    ),
    "binary": _Kind(
        activation="sigmoid",
        default_loss="binary_crossentropy",
        default_metrics=("auc", "accuracy"),
        metric_aliases={
            "accuracy": "BinaryAccuracy",
            "auc": "AUC",
            "binary_crossentropy": "BinaryCrossentropy",
            "precision": "Precision",
            "recall": "Recall",
        },
    ),
    "multiclass": _Kind(
        activation="softmax",
        default_loss="sparse_categorical_crossentropy",
        default_metrics=("accuracy",),
        metric_aliases={
            "accuracy": "SparseCategoricalAccuracy",
            "sparse_categorical_crossentropy": "SparseCategoricalCrossentropy",
            "top5": "SparseTopKCategoricalAccuracy",
        },
        needs_num_classes=True,
    ),
}

#: Direction of each metric alias: True when higher is better.
HIGHER_IS_BETTER: dict[str, bool] = {
    "mse": False,
    "mae": False,
    "rmse": False,
    "accuracy": True,
    "auc": True,
    "binary_crossentropy": False,
    "sparse_categorical_crossentropy": False,
    "precision": True,
    "recall": True,
    "top5": True,
    "ece": False,  # expected calibration error (mtl_keras.evaluation.calibration), in run reports
    "gauc": True,  # AUC per user weighted by impressions (mtl_keras.evaluation.gauc), in run reports
    "loss": False,
}


@dataclasses.dataclass(frozen=True)
class Task:
    """One prediction task.

    Args:
        name: head name; the model's output dict and the label dict use it as key.
        kind: ``"regression"``, ``"binary"`` or ``"multiclass"``.
        num_classes: number of classes, required for ``"multiclass"``.
        loss: a Keras loss identifier or object; defaults by kind (MSE, binary / sparse categorical
            cross-entropy). Heads output probabilities for classification, so losses take probabilities.
        metrics: metric aliases (see :data:`KINDS`) or Keras metric objects; defaults by kind.
        label: the column the labels are read from; defaults to ``name``.
        label_fn: optional label preprocessing, applied to the raw label column (numpy in, numpy out).
            Not part of the model's saved config.
        units: output width; defaults to 1, or ``num_classes`` for multiclass.
        label_mean: with ``label_std``, standardises a regression task's labels (usually the training mean
            and standard deviation). The head then outputs ``label_mean + label_std * z`` for its Dense
            output ``z``, so predictions, serving outputs and metrics stay in the labels' units, while the
            loss compares ``(y - label_mean) / label_std`` with ``z`` (see :meth:`get_loss`). Give both or
            neither; saved in the task's config.
        label_std: the scale of the standardisation, a finite number > 0.
    """

    name: str
    kind: str = "regression"
    num_classes: int | None = None
    loss: Any = None
    metrics: Sequence[Any] | None = None
    label: str | None = None
    label_fn: Callable[[np.ndarray], np.ndarray] | None = dataclasses.field(default=None, compare=False)
    units: int | None = None
    label_mean: float | None = None
    label_std: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ValueError(
                f"Expected task `name` to be a Python identifier (it names a head). Received: name={self.name!r}"
            )
        if self.kind not in KINDS:
            raise ValueError(
                f"Expected task `kind` to be one of {sorted(KINDS)}. Received: kind={self.kind!r} "
                f"for task {self.name!r}." + suggest(str(self.kind), sorted(KINDS))
            )
        if KINDS[self.kind].needs_num_classes:
            if not isinstance(self.num_classes, int) or self.num_classes < 2:
                raise ValueError(
                    f"Expected `num_classes` to be an integer >= 2 for multiclass task {self.name!r}. "
                    f"Received: num_classes={self.num_classes!r}"
                )
        elif self.num_classes is not None:
            raise ValueError(
                f"`num_classes` is only used by multiclass tasks; task {self.name!r} has kind {self.kind!r} "
                f"and received num_classes={self.num_classes!r}."
            )
        if self.units is not None and (not isinstance(self.units, int) or self.units < 1):
            raise ValueError(
                f"Expected `units` to be a positive integer for task {self.name!r}. Received: units={self.units!r}"
            )
        self._check_standardization()
        for metric in self.metrics or ():
            if isinstance(metric, str) and metric not in KINDS[self.kind].metric_aliases:
                aliases = sorted(KINDS[self.kind].metric_aliases)
                raise ValueError(
                    f"Unknown metric {metric!r} for {self.kind} task {self.name!r}. Expected one of {aliases}."
                    + suggest(metric, aliases)
                )

    def _check_standardization(self) -> None:
        mean, std = self.label_mean, self.label_std
        if mean is None and std is None:
            return
        if mean is None or std is None:
            raise ValueError(
                f"Expected both `label_mean` and `label_std` or neither for task {self.name!r}. "
                f"Received: label_mean={mean!r}, label_std={std!r}"
            )
        if self.kind != "regression":
            raise ValueError(
                f"`label_mean`/`label_std` standardise regression labels only; task {self.name!r} has kind "
                f"{self.kind!r}. Received: label_mean={mean!r}, label_std={std!r}"
            )
        for key, value in (("label_mean", mean), ("label_std", std)):
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
                raise ValueError(
                    f"Expected `{key}` to be a finite number for task {self.name!r}. Received: {key}={value!r}"
                )
        if std <= 0:
            raise ValueError(f"Expected `label_std` > 0 for task {self.name!r}. Received: label_std={std!r}")
        # Plain floats, so configs are JSON and equal tasks compare equal.
        object.__setattr__(self, "label_mean", float(mean))
        object.__setattr__(self, "label_std", float(std))

    # --- what the head looks like -------------------------------------------------------------------

    @property
    def output_units(self) -> int:
        if self.units is not None:
            return self.units
        return self.num_classes if self.num_classes is not None else 1

    @property
    def activation(self) -> str:
        return KINDS[self.kind].activation

    @property
    def standardized(self) -> bool:
        """Whether the labels are standardised (``label_mean`` and ``label_std`` are set)."""
        return self.label_std is not None

    @property
    def label_column(self) -> str:
        return self.label or self.name

    # --- loss and metrics ---------------------------------------------------------------------------

    def get_loss(self, loss: Any = None) -> Callable[[Any, Any], Any]:
        """The loss as a function giving per-example values (masking and the mean happen in the model).

        ``loss`` overrides the task's own loss (``compile(loss={task: ...})``). For a standardised task
        the result is ``inner((y - label_mean) / label_std, (y_pred - label_mean) / label_std)``: the labels
        and the head's output (in original units) are both taken back to standardised units, so the loss
        is the one of the head's Dense output ``z`` against the standardised label, whatever ``inner`` is.
        """
        if loss is None:
            loss = self.loss if self.loss is not None else KINDS[self.kind].default_loss
        inner = per_example_loss(loss)
        if self.label_mean is None or self.label_std is None:
            return inner
        return StandardizedLoss(inner, self.label_mean, self.label_std)

    def metric_names(self) -> list[str]:
        return [m if isinstance(m, str) else m.name for m in self._metric_identifiers()]

    def _metric_identifiers(self) -> Sequence[Any]:
        return self.metrics if self.metrics is not None else KINDS[self.kind].default_metrics

    def get_metrics(self) -> list[keras.metrics.Metric]:
        """Fresh metric objects named ``<task>_<metric>``."""
        metrics = []
        aliases = KINDS[self.kind].metric_aliases
        for identifier in self._metric_identifiers():
            if isinstance(identifier, str):
                cls = getattr(keras.metrics, aliases[identifier])
                metrics.append(cls(name=f"{self.name}_{identifier}"))
            else:
                metric = keras.metrics.deserialize(keras.metrics.serialize(identifier))
                metric.name = f"{self.name}_{identifier.name}"
                metrics.append(metric)
        return metrics

    def higher_is_better(self, metric: str) -> bool:
        if metric not in HIGHER_IS_BETTER:
            raise ValueError(f"Unknown direction for metric {metric!r}. Known: {sorted(HIGHER_IS_BETTER)}")
        return HIGHER_IS_BETTER[metric]

    # --- labels -------------------------------------------------------------------------------------

    def prepare_labels(self, values: Any) -> np.ndarray:
        """Raw label column -> float32 array with NaN for missing labels (shape (n,) or (n, units))."""
        array = np.asarray(values)
        if self.label_fn is not None:
            array = np.asarray(self.label_fn(array))
        try:
            return array.astype(np.float32)
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"Labels of task {self.name!r} must be numeric after `label_fn`; got dtype {array.dtype}."
            ) from error

    # --- config -------------------------------------------------------------------------------------

    def get_config(self) -> dict[str, Any]:
        loss = self.loss
        if loss is not None and not isinstance(loss, str):
            loss = keras.losses.serialize(loss)
        metrics = None
        if self.metrics is not None:
            metrics = [m if isinstance(m, str) else keras.metrics.serialize(m) for m in self.metrics]
        return {
            "name": self.name,
            "kind": self.kind,
            "num_classes": self.num_classes,
            "loss": loss,
            "metrics": metrics,
            "label": self.label,
            "units": self.units,
            "label_mean": self.label_mean,
            "label_std": self.label_std,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Task:
        config = dict(config)
        if isinstance(config.get("loss"), dict):
            config["loss"] = keras.losses.deserialize(config["loss"])
        if config.get("metrics") is not None:
            config["metrics"] = [
                m if isinstance(m, str) else keras.metrics.deserialize(m) for m in config["metrics"]
            ]
        return cls(**config)


class StandardizedLoss:
    """``inner`` applied in standardised units: ``inner((y - mean) / std, (y_pred - mean) / std)``.

    Per-example values in, per-example values out (no reduction), as :func:`per_example_loss` gives them.
    """

    def __init__(self, inner: Callable[[Any, Any], Any], mean: float, std: float) -> None:
        self.inner = inner
        self.mean = float(mean)
        self.std = float(std)

    def __call__(self, y_true: Any, y_pred: Any) -> Any:
        return self.inner((y_true - self.mean) / self.std, (y_pred - self.mean) / self.std)

    def __repr__(self) -> str:
        return f"StandardizedLoss({self.inner!r}, mean={self.mean!r}, std={self.std!r})"


def per_example_loss(identifier: Any) -> Callable[[Any, Any], Any]:
    """A Keras loss identifier → a function ``(y_true, y_pred) -> per-example losses`` (no reduction)."""
    loss = keras.losses.get(identifier)
    if loss is None:
        raise ValueError(f"Unknown loss {identifier!r}.")
    if isinstance(loss, keras.losses.Loss):
        return loss.call  # type: ignore[no-any-return]
    return loss  # type: ignore[no-any-return]


def as_tasks(tasks: Sequence[Task | str | dict[str, Any]]) -> list[Task]:
    """Normalise a list of tasks given as `Task`, name (a regression task) or config dict."""
    if isinstance(tasks, (str, Task, dict)):
        tasks = [tasks]  # type: ignore[list-item]
    result: list[Task] = []
    for task in tasks:
        if isinstance(task, Task):
            result.append(task)
        elif isinstance(task, str):
            result.append(Task(name=task))
        elif isinstance(task, dict):
            result.append(Task.from_config(task))
        else:
            raise ValueError(f"Expected a Task, a task name or a task config dict. Received: {task!r}")
    if not result:
        raise ValueError("Expected at least one task. Received an empty list.")
    names = [t.name for t in result]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"Task names must be unique. Received duplicates: {duplicates}")
    return result
