"""What the early-stopping callbacks share: their base class (arguments, monitored keys, reading the
logs), metric directions, the composite score."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import keras

from mtl_keras.tasks import HIGHER_IS_BETTER

logger = logging.getLogger("mtl_keras.callbacks")

MODES = ("auto", "min", "max")


def monitored_key(task: str, spec: str) -> str:
    """The log key watched for ``task``.

    ``spec`` is a metric name (``"auc"`` → ``val_<task>_auc``), a pattern with ``{task}``
    (``"val_{task}_loss"``), or a full log key starting with ``val_``.
    """
    if "{task}" in spec:
        return spec.format(task=task)
    if spec.startswith("val_"):
        return spec
    return f"val_{task}_{spec}"


def metric_of(key: str, task: str) -> str:
    """``val_<task>_auc`` → ``auc``."""
    name = key[4:] if key.startswith("val_") else key
    return name[len(task) + 1 :] if name.startswith(f"{task}_") else name


def higher_is_better(key: str, task: str, mode: str, overrides: Mapping[str, bool] | None = None) -> bool:
    """The direction of a monitored key: from ``mode`` (``"min"``/``"max"``), else from the metric's name."""
    if mode not in MODES:
        raise ValueError(f"Expected `mode` to be one of {MODES}. Received: mode={mode!r} (task {task!r})")
    if mode != "auto":
        return mode == "max"
    metric = metric_of(key, task)
    directions = {**HIGHER_IS_BETTER, **dict(overrides or {})}
    if metric not in directions:
        raise ValueError(
            f"Cannot tell whether higher or lower is better for {key!r} (metric {metric!r} of task "
            f"{task!r}); give its mode ('min' or 'max'). Known metrics: {sorted(directions)}."
        )
    return directions[metric]


def per_task(value: Any, task_names: Sequence[str], argument: str) -> dict[str, Any]:
    """One value for every task, or a ``{task: value}`` dict covering some or all tasks."""
    if isinstance(value, Mapping):
        unknown = [k for k in value if k not in task_names]
        if unknown:
            raise ValueError(
                f"Unknown task(s) {unknown} in `{argument}`. Expected task names {list(task_names)}."
            )
        return dict(value)
    return {name: value for name in task_names}


def read(logs: Mapping[str, Any], key: str, callback: str) -> float:
    if key not in logs:
        raise ValueError(
            f"{callback} monitors {key!r}, which is not in the epoch logs. Pass validation data to `fit` "
            f"(validation keys start with 'val_'). Available keys: {sorted(logs)}"
        )
    return float(logs[key])


def relative_change(value: float, baseline: float, higher: bool) -> float:
    """``s · (value − baseline) / |baseline|`` with s = +1 when higher is better: positive = improved.

    A zero baseline has no scale; the absolute change is used then.
    """
    scale = abs(baseline)
    if scale == 0.0:
        logger.warning("Baseline value 0 in the composite score: using the absolute change instead.")
        scale = 1.0
    sign = 1.0 if higher else -1.0
    return sign * (value - baseline) / scale


def composite_score(
    values: Mapping[str, float],
    baselines: Mapping[str, float],
    directions: Mapping[str, bool],
    weights: Mapping[str, float] | None = None,
) -> float:
    """Weighted mean over tasks of :func:`relative_change`; higher is better, 0 at the baseline."""
    total, norm = 0.0, 0.0
    for task, value in values.items():
        weight = 1.0 if weights is None else float(weights.get(task, 0.0))
        if weight == 0.0:
            continue
        total += weight * relative_change(value, baselines[task], directions[task])
        norm += weight
    return total / norm if norm > 0 else math.nan


def improved(value: float, best: float | None, higher: bool, min_delta: float) -> bool:
    if math.isnan(value):
        return False
    if best is None:
        return True
    return value > best + min_delta if higher else value < best - min_delta


class TaskEarlyStopping(keras.callbacks.Callback):
    """The part of an early stopper over a multi-task model's tasks that does not depend on the rule:
    ``patience``/``min_delta`` checked, each task's monitored log key and direction, reading them at an
    epoch end.

    Subclasses set :attr:`callback_name` (used in messages), extend :meth:`_reset` with their own state
    and fill ``monitored``/``directions`` in ``on_train_begin`` through :meth:`_watch`.
    """

    callback_name = "TaskEarlyStopping"

    def __init__(self, patience: int, min_delta: float, restore_best_weights: bool, verbose: int) -> None:
        super().__init__()
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            raise ValueError(
                f"Expected `patience` to be a non-negative integer. Received: patience={patience!r}"
            )
        if min_delta < 0:
            raise ValueError(f"Expected `min_delta` >= 0. Received: min_delta={min_delta!r}")
        self.patience = patience
        self.min_delta = float(min_delta)
        self.restore_best_weights = restore_best_weights
        self.verbose = verbose
        self._reset()

    def _reset(self) -> None:
        """Forget a previous ``fit`` (called again at ``on_train_begin``)."""
        self.monitored: dict[str, str] = {}
        self.directions: dict[str, bool] = {}

    def _task_names(self, *required: str) -> list[str]:
        """The model's task names; a clear error when it is not a multi-task model (lacks ``task_names``
        or one of the ``required`` attributes)."""
        task_names = list(getattr(self.model, "task_names", []))
        if not task_names or not all(hasattr(self.model, name) for name in required):
            raise ValueError(f"{self.callback_name} needs a MultiTaskModel (a model with `task_names`).")
        return task_names

    def _watch(
        self, task: str, spec: str, mode: str = "auto", overrides: Mapping[str, bool] | None = None
    ) -> None:
        """Monitor ``task`` on ``spec`` (see :func:`monitored_key`) in the direction ``mode`` gives."""
        key = monitored_key(task, spec)
        self.monitored[task] = key
        self.directions[task] = higher_is_better(key, task, mode, overrides)

    def _read(self, logs: Mapping[str, Any]) -> dict[str, float]:
        """``{task: its monitored value}`` from an epoch's logs."""
        return {task: read(logs, key, self.callback_name) for task, key in self.monitored.items()}
