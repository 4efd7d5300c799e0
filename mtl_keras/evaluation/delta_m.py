"""Δm %: the average relative improvement of a multi-task model over its single-task baselines.

Convention (Maninis et al. CVPR 2019; Vandenhende et al. TPAMI 2021; LibMTL): **positive Δm means the
multi-task model is better**. For task i with metric value M_i (multi-task) and baseline M_b,i
(single-task, same split and budget)::

    Δm = (100 / T) Σ_i s_i · (M_i − M_b,i) / |M_b,i|,     s_i = +1 if higher is better, −1 if lower is better

which is the papers' ``(1/T) Σ (−1)^{l_i} (M_b,i − M_i) / M_b,i × 100`` with ``l_i = 1`` when higher is
better (docs/methods.md, "Δm"). (Pairing ``M_i − M_b,i`` in the numerator with ``l_i = 1`` for
higher-is-better metrics makes a *worse* multi-task model score positive; the library does not use that
sign.) Dividing by ``|M_b,i|`` instead of
``M_b,i`` only matters for a negative baseline, where it keeps "better" positive. A zero baseline has no
relative change and raises ``ValueError``.

With several metrics per task, :func:`delta_m_multi` averages each task's metrics first and then the
tasks (``average="task"``, as LibMTL does, so a task with many metrics does not outweigh one with a single
metric), or averages every (task, metric) pair alike (``average="pair"``).

A metric that saw no labelled example (a task without labels in the test split) is *missing*: NaN or
None. ``delta_m_multi(..., skip_missing=True)`` leaves such (task, metric) pairs out of the average (and a
task with nothing left out of the mean over tasks); :func:`missing_pairs` lists them so the caller can say
which were skipped.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from mtl_keras.tasks import HIGHER_IS_BETTER

AVERAGES = ("task", "pair")


def is_missing(value: Any) -> bool:
    """Whether a metric value is missing: None or NaN (no labelled example)."""
    if value is None:
        return True
    try:
        return math.isnan(float(value))
    except (TypeError, ValueError):
        return False


def missing_pairs(
    multi_task: Mapping[str, Mapping[str, Any]], single_task: Mapping[str, Mapping[str, Any]]
) -> dict[str, list[str]]:
    """``{task: [metric]}`` of the metrics of ``multi_task`` that are missing (None/NaN) in either result
    (a metric absent from ``single_task`` is not missing but an error of :func:`delta_m_multi`)."""
    result: dict[str, list[str]] = {}
    for task, metrics in multi_task.items():
        baseline = single_task.get(task, {})
        skipped = [
            m for m, v in metrics.items() if is_missing(v) or (m in baseline and is_missing(baseline[m]))
        ]
        if skipped:
            result[task] = skipped
    return result


def relative_improvement(
    value: float, baseline: float, higher_is_better: bool, *, name: str = "metric"
) -> float:
    """``s · (value − baseline) / |baseline| · 100``: percent by which ``value`` beats ``baseline``.

    Positive when ``value`` is better than ``baseline`` in the metric's direction.
    """
    if is_missing(value) or is_missing(baseline):
        raise ValueError(
            f"{name} is missing (NaN/None: no labelled example) in the "
            f"{'multi-task' if is_missing(value) else 'single-task'} results: multi-task={value!r}, "
            f"single-task={baseline!r}; expected numbers (leave it out of Δm, or pass skip_missing=True)."
        )
    value, baseline = float(value), float(baseline)
    if not math.isfinite(baseline) or not math.isfinite(value):
        raise ValueError(
            f"Expected finite values for {name}. Received: multi-task={value!r}, single-task={baseline!r}"
        )
    if baseline == 0.0:
        raise ValueError(
            f"The single-task baseline of {name} is 0, so its relative change (and Δm) is undefined. "
            "Use a metric whose baseline is non-zero, or leave this metric out of Δm."
        )
    sign = 1.0 if higher_is_better else -1.0
    return 100.0 * sign * (value - baseline) / abs(baseline)


def delta_m(
    multi_task: Mapping[str, float],
    single_task: Mapping[str, float],
    higher_is_better: Mapping[str, bool],
) -> float:
    """Δm % over tasks with one metric each; positive when the multi-task model is better.

    Args:
        multi_task: ``{task: metric value}`` of the multi-task model.
        single_task: ``{task: metric value}`` of the single-task baselines (same keys).
        higher_is_better: ``{task: bool}``, the direction of each task's metric.

    Example: AUC 0.84 vs 0.80 (higher is better, +5 %) and MSE 0.60 vs 0.50 (lower is better, −20 %)
    give Δm = (5 − 20) / 2 = −7.5.
    """
    tasks = list(multi_task)
    if not tasks:
        raise ValueError("Expected at least one task in `multi_task`. Received an empty mapping.")
    for argument, mapping in (("single_task", single_task), ("higher_is_better", higher_is_better)):
        if sorted(mapping) != sorted(tasks):
            raise ValueError(
                f"Expected `{argument}` to have the same tasks as `multi_task` {sorted(tasks)}. "
                f"Received: {sorted(mapping)}"
            )
    total = sum(
        relative_improvement(multi_task[t], single_task[t], bool(higher_is_better[t]), name=f"task {t!r}")
        for t in tasks
    )
    return total / len(tasks)


def delta_m_multi(
    multi_task: Mapping[str, Mapping[str, float]],
    single_task: Mapping[str, Mapping[str, float]],
    higher_is_better: Mapping[str, Mapping[str, bool]] | Mapping[str, bool] | None = None,
    *,
    average: str = "task",
    skip_missing: bool = False,
) -> float:
    """Δm % with several metrics per task: ``{task: {metric: value}}`` for both models.

    Args:
        multi_task: ``{task: {metric: value}}`` of the multi-task model; these metrics enter Δm.
        single_task: the baselines; must hold every metric of ``multi_task`` (extra entries are ignored).
        higher_is_better: ``{task: {metric: bool}}``, or ``{metric: bool}`` for every task, or None to use
            :data:`mtl_keras.tasks.HIGHER_IS_BETTER` (``"loss"``, ``"auc"``, ``"mse"``, ...).
        average: ``"task"`` (default): mean of each task's metrics, then mean over tasks.
            ``"pair"``: mean over all (task, metric) pairs.
        skip_missing: leave out the pairs whose value is missing (None/NaN) in either result (see
            :func:`missing_pairs`); a ``ValueError`` when nothing is left. Without it a missing value
            raises ``ValueError``.
    """
    if average not in AVERAGES:
        raise ValueError(f"Expected `average` to be one of {AVERAGES}. Received: average={average!r}")
    if not multi_task:
        raise ValueError("Expected at least one task in `multi_task`. Received an empty mapping.")
    per_task: list[list[float]] = []
    for task, metrics in multi_task.items():
        if not metrics:
            raise ValueError(f"Expected at least one metric for task {task!r}. Received none.")
        if task not in single_task:
            raise ValueError(f"No single-task baseline for task {task!r}. Baselines: {sorted(single_task)}")
        values = []
        for metric, value in metrics.items():
            if metric not in single_task[task]:
                raise ValueError(
                    f"No single-task baseline for metric {metric!r} of task {task!r}. "
                    f"Baseline metrics: {sorted(single_task[task])}"
                )
            baseline = single_task[task][metric]
            if skip_missing and (is_missing(value) or is_missing(baseline)):
                continue
            direction = _direction(higher_is_better, task, metric)
            values.append(relative_improvement(value, baseline, direction, name=f"{task} {metric}"))
        if values:
            per_task.append(values)
    if not per_task:
        raise ValueError(
            "Every metric entering Δm is missing (NaN/None: no labelled example) in the multi-task or "
            f"single-task results, so Δm is undefined. Missing: {missing_pairs(multi_task, single_task)}"
        )
    if average == "task":
        return sum(sum(v) / len(v) for v in per_task) / len(per_task)
    pairs = [x for values in per_task for x in values]
    return sum(pairs) / len(pairs)


def _direction(
    higher_is_better: Mapping[str, Mapping[str, bool]] | Mapping[str, bool] | None, task: str, metric: str
) -> bool:
    if higher_is_better is not None:
        entry = higher_is_better.get(task)
        if isinstance(entry, Mapping):
            if metric in entry:
                return bool(entry[metric])
        elif metric in higher_is_better and not isinstance(higher_is_better[metric], Mapping):
            return bool(higher_is_better[metric])
    if metric in HIGHER_IS_BETTER:
        return HIGHER_IS_BETTER[metric]
    raise ValueError(
        f"Unknown direction for metric {metric!r} of task {task!r}: pass it in `higher_is_better` "
        f"(known metrics: {sorted(HIGHER_IS_BETTER)})."
    )
