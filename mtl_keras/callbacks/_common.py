"""What the early-stopping callbacks share: monitored keys, metric directions, the composite score."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

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
