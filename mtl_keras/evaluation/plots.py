"""PNG plots of a multi-task training run: per-task learning curves, task weights, gradient conflicts,
reliability diagrams.

Every function takes a ``History`` (or its ``.history`` dict), writes one PNG atomically and returns its
path, or returns None without writing when the history lacks the keys it plots. Figures are drawn with
matplotlib's Agg canvas directly (no pyplot, no display, no global backend switch).

A NaN value is a missing one (a task without labelled examples that epoch): it leaves a gap in its curve,
and a curve with no value at all is not drawn (the panel says so) rather than drawn at 0. Task weights that
never change (static weights) are not plotted.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mtl_keras._io import atomic_write_bytes
from mtl_keras.tasks import Task

_NOT_METRICS = ("loss", "weight")


def _history_dict(history: Any) -> dict[str, list[float]]:
    """A keras ``History`` or a ``{key: [value per epoch]}`` dict → the dict."""
    data = getattr(history, "history", history)
    if not isinstance(data, Mapping):
        raise ValueError(
            f"Expected a keras History or a dict of per-epoch values. Received: {type(history).__name__}"
        )
    return {str(k): [float(x) for x in np.ravel(np.asarray(v, dtype=np.float64))] for k, v in data.items()}


def _save(figure: Figure, path: str | os.PathLike[str]) -> str:
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return atomic_write_bytes(path, buffer.getvalue())


def _owner(key: str, task_names: Sequence[str]) -> str | None:
    """The task a (train) key such as ``a_b_loss`` belongs to: the longest task name it starts with."""
    for name in sorted(task_names, key=len, reverse=True):
        if key.startswith(f"{name}_"):
            return name
    return None


def main_metric(history: Mapping[str, Any], task: str, task_names: Sequence[str]) -> str | None:
    """The first logged metric of ``task`` other than its loss and weight (e.g. ``auc``), or None."""
    for key in history:
        if _owner(key, task_names) == task:
            metric = key[len(task) + 1 :]
            if metric not in _NOT_METRICS:
                return metric
    return None


def _names(tasks: Sequence[Any]) -> tuple[list[str], dict[str, str]]:
    """Task names, and the first declared metric of each given as a ``Task``."""
    names, declared = [], {}
    for task in tasks:
        if isinstance(task, Task):
            names.append(task.name)
            if task.metric_names():
                declared[task.name] = task.metric_names()[0]
        else:
            names.append(str(task))
    return names, declared


def _epochs(values: Sequence[float]) -> np.ndarray:
    return np.arange(1, len(values) + 1)


def _has_values(values: Sequence[float]) -> bool:
    """Whether a per-epoch series has at least one value that is not missing (NaN)."""
    return any(not math.isnan(v) for v in values)


def _is_constant(values: Sequence[float]) -> bool:
    finite = [v for v in values if not math.isnan(v)]
    return all(v == finite[0] for v in finite)


def plot_validation_curves(
    history: Any,
    task_names: Sequence[str | Task],
    path: str | os.PathLike[str],
    *,
    metrics: Mapping[str, str] | None = None,
) -> str | None:
    """One column per task: train and validation loss (top) and the task's main metric (bottom).

    Args:
        history: ``model.fit(...)`` result or its ``.history``.
        task_names: the tasks to plot: names (``model.task_names``) or ``Task`` objects (``model.tasks``),
            whose first declared metric is then the one plotted.
        path: the PNG to write.
        metrics: ``{task: metric}`` to plot instead; by default a task's first declared metric, else its
            first logged one (Keras sorts log keys, so ``accuracy`` comes before ``auc``).

    Returns the path, or None when no task has a ``<task>_loss`` entry.
    """
    data = _history_dict(history)
    names, declared = _names(task_names)
    chosen = {**declared, **dict(metrics or {})}
    tasks = [t for t in names if f"{t}_loss" in data or f"val_{t}_loss" in data]
    if not tasks:
        return None
    figure = Figure(figsize=(4.2 * len(tasks), 6.4), layout="constrained")
    axes = figure.subplots(2, len(tasks), squeeze=False)
    for column, task in enumerate(tasks):
        top, bottom = axes[0][column], axes[1][column]
        plotted = False
        for key, label, style in ((f"{task}_loss", "train", "-"), (f"val_{task}_loss", "validation", "--")):
            if key in data and _has_values(data[key]):
                top.plot(_epochs(data[key]), data[key], style, marker="o", markersize=3, label=label)
                plotted = True
        if plotted:
            top.set_title(f"{task}: loss")
            top.set_xlabel("epoch")
            top.set_ylabel("loss")
            top.legend()
            top.grid(alpha=0.3)
        else:
            top.set_axis_off()
            top.text(0.5, 0.5, f"{task}: no labelled examples", ha="center", va="center")
        metric = chosen.get(task) or main_metric(data, task, names)
        plotted, logged = False, False
        if metric is not None:
            for key, label, style in (
                (f"{task}_{metric}", "train", "-"),
                (f"val_{task}_{metric}", "validation", "--"),
            ):
                if key in data:
                    logged = True
                    if _has_values(data[key]):
                        bottom.plot(
                            _epochs(data[key]), data[key], style, marker="o", markersize=3, label=label
                        )
                        plotted = True
        if plotted:
            bottom.set_title(f"{task}: {metric}")
            bottom.set_xlabel("epoch")
            bottom.set_ylabel(str(metric))
            bottom.legend()
            bottom.grid(alpha=0.3)
        else:
            bottom.set_axis_off()
            note = f"{task} {metric}: no labelled examples" if logged else f"no metric logged for {task}"
            bottom.text(0.5, 0.5, note, ha="center", va="center")
    figure.suptitle("Per-task learning curves")
    return _save(figure, path)


def plot_task_weights(
    history: Any, task_names: Sequence[str | Task], path: str | os.PathLike[str]
) -> str | None:
    """The loss weight of each task (``<task>_weight``, epoch mean) against the epoch.

    Returns the path, or None when no ``<task>_weight`` entry is logged or every task's weight is the same
    in every epoch (static weights, which a ``MultiTaskModel`` no longer logs, in an older history).
    """
    data = _history_dict(history)
    tasks = [t for t in _names(task_names)[0] if f"{t}_weight" in data]
    if not tasks or all(_is_constant(data[f"{t}_weight"]) for t in tasks):
        return None
    figure = Figure(figsize=(6.4, 4.2), layout="constrained")
    axis = figure.subplots()
    for task in tasks:
        values = data[f"{task}_weight"]
        axis.plot(_epochs(values), values, marker="o", markersize=3, label=task)
    axis.set_title("Task loss weights (epoch mean)")
    axis.set_xlabel("epoch")
    axis.set_ylabel("weight λ")
    axis.legend(title="task")
    axis.grid(alpha=0.3)
    return _save(figure, path)


def cosine_matrix(history: Any, task_names: Sequence[str | Task]) -> np.ndarray | None:
    """The T×T matrix of epoch-averaged pairwise task-gradient cosines from ``cos_<a>_<b>`` keys.

    The diagonal is 1; pairs without an entry are NaN. None when no ``cos_`` entry is logged.
    """
    data = _history_dict(history)
    task_names = _names(task_names)[0]
    size = len(task_names)
    matrix = np.full((size, size), np.nan)
    np.fill_diagonal(matrix, 1.0)
    found = False
    for i, a in enumerate(task_names):
        for j in range(i + 1, size):
            key = f"cos_{a}_{task_names[j]}"
            if data.get(key):
                matrix[i, j] = matrix[j, i] = float(np.mean(data[key]))
                found = True
    return matrix if found else None


def plot_conflicts(
    history_or_matrix: Any,
    task_names: Sequence[str | Task],
    path: str | os.PathLike[str],
) -> str | None:
    """Heatmap of the mean pairwise cosine between task gradients on the shared parameters.

    Args:
        history_or_matrix: a History / history dict with ``cos_<a>_<b>`` entries (from
            ``compile(log_conflicts=True)``; averaged over epochs), a T×T cosine matrix, or a list of
            per-epoch matrices (:attr:`GradientConflictMonitor.matrices`, averaged).
        task_names: the tasks, in the matrix's order.
        path: the PNG to write.

    Returns the path, or None when the history has no ``cos_`` entries.
    """
    task_names = _names(task_names)[0]
    fraction = None
    if isinstance(history_or_matrix, (np.ndarray, list, tuple)):
        array = np.asarray(history_or_matrix, dtype=np.float64)
        matrix = array.mean(axis=0) if array.ndim == 3 else array
        if matrix.shape != (len(task_names), len(task_names)):
            raise ValueError(
                f"Expected a {len(task_names)}×{len(task_names)} cosine matrix (one row per task). "
                f"Received shape {array.shape}."
            )
    else:
        found = cosine_matrix(history_or_matrix, task_names)
        if found is None:
            return None
        matrix = found
        data = _history_dict(history_or_matrix)
        if data.get("conflict_fraction"):
            fraction = float(np.mean(data["conflict_fraction"]))
    size = len(task_names)
    figure = Figure(figsize=(1.2 * size + 3.2, 1.0 * size + 2.4), layout="constrained")
    axis = figure.subplots()
    image = axis.imshow(np.ma.masked_invalid(matrix), cmap="RdBu", vmin=-1.0, vmax=1.0)
    axis.set_xticks(range(size), labels=list(task_names), rotation=45, ha="right")
    axis.set_yticks(range(size), labels=list(task_names))
    for i in range(size):
        for j in range(size):
            value = matrix[i, j]
            text = "n/a" if math.isnan(value) else f"{value:+.2f}"
            colour = "white" if not math.isnan(value) and abs(value) > 0.6 else "black"
            axis.text(j, i, text, ha="center", va="center", color=colour, fontsize=9)
    figure.colorbar(image, ax=axis, label="mean cosine(g_i, g_j)")
    title = "Task-gradient cosine on shared parameters"
    if fraction is not None:
        title += f"\nmean fraction of conflicting pairs per step: {fraction:.2f}"
    axis.set_title(title, fontsize=10)
    return _save(figure, path)


def plot_reliability(reliability: Mapping[str, Any], path: str | os.PathLike[str]) -> str | None:
    """Reliability diagrams: per task, observed frequency against mean confidence per bin, before and (when
    calibrated) after, with the diagonal of perfect calibration.

    ``reliability`` is ``{task: {"before": data, "after": data}}`` with the data of
    :func:`mtl_keras.evaluation.calibration.reliability`. None (nothing written) without tasks.
    """
    tasks = list(reliability)
    if not tasks:
        return None
    figure = Figure(figsize=(4.2 * len(tasks), 4.2), layout="constrained")
    axes = figure.subplots(1, len(tasks), squeeze=False)[0]
    for axis, task in zip(axes, tasks, strict=True):
        axis.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect")
        for label, data in reliability[task].items():
            points = [
                (c, f) for c, f in zip(data["confidence"], data["frequency"], strict=True) if c is not None
            ]
            if points:
                xs, ys = zip(*points, strict=True)
                axis.plot(xs, ys, marker="o", markersize=3, label=label)
        axis.set_title(task)
        axis.set_xlabel("mean confidence")
        axis.set_ylabel("observed frequency")
        axis.set_xlim(0, 1)
        axis.set_ylim(0, 1)
        axis.legend()
        axis.grid(alpha=0.3)
    figure.suptitle("Reliability (test split)")
    return _save(figure, path)


#: Pairs drawn one by one in the cosine trend; beyond, only their mean and spread.
TREND_PAIRS = 10


def plot_conflict_trend(
    history: Any, task_names: Sequence[str | Task], path: str | os.PathLike[str]
) -> str | None:
    """The pairwise task-gradient cosines (``cos_<a>_<b>``, epoch means) against the epoch: one line per
    pair (up to :data:`TREND_PAIRS` pairs, else their mean with its min–max band) and, when logged, the
    fraction of conflicting pairs.

    Returns the path, or None when no ``cos_`` entry is logged or there is only one epoch (no trend).
    """
    data = _history_dict(history)
    names = _names(task_names)[0]
    pairs = [
        (a, b)
        for i, a in enumerate(names)
        for b in names[i + 1 :]
        if data.get(f"cos_{a}_{b}") and not all(math.isnan(v) for v in data[f"cos_{a}_{b}"])
    ]
    if not pairs or max(len(data[f"cos_{a}_{b}"]) for a, b in pairs) < 2:
        return None
    figure = Figure(figsize=(6.8, 4.2), layout="constrained")
    axis = figure.subplots()
    if len(pairs) <= TREND_PAIRS:
        for a, b in pairs:
            values = data[f"cos_{a}_{b}"]
            axis.plot(_epochs(values), values, marker="o", markersize=3, label=f"{a} · {b}")
    else:
        matrix = np.array([data[f"cos_{a}_{b}"] for a, b in pairs], dtype=np.float64)
        epochs = _epochs(list(matrix[0]))
        axis.fill_between(epochs, np.nanmin(matrix, 0), np.nanmax(matrix, 0), alpha=0.25, label="min–max")
        axis.plot(
            epochs, np.nanmean(matrix, 0), marker="o", markersize=3, label=f"mean of {len(pairs)} pairs"
        )
    if data.get("conflict_fraction"):
        values = data["conflict_fraction"]
        axis.plot(_epochs(values), values, color="black", linestyle="--", label="conflicting fraction")
    axis.axhline(0.0, color="grey", linewidth=0.8)
    axis.set_ylim(-1.05, 1.05)
    axis.set_title("Task-gradient cosine on shared parameters, per epoch")
    axis.set_xlabel("epoch")
    axis.set_ylabel("cosine(g_i, g_j)")
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3)
    return _save(figure, path)


def plot_gates(usage: Mapping[str, Any], path: str | os.PathLike[str]) -> str | None:
    """Heat-map of each gated mixture's mean weight per expert (:func:`mtl_keras.analysis.gates.gate_usage`);
    rows are the mixtures (one per task in MMoE), columns the experts of their stack. None without mixtures.
    """
    rows = dict(usage.get("mixtures") or {})
    if not rows:
        return None
    width = max(len(v) for v in rows.values())
    matrix = np.full((len(rows), width), np.nan)
    for i, values in enumerate(rows.values()):
        matrix[i, : len(values)] = values
    figure = Figure(figsize=(0.7 * width + 3.4, 0.45 * len(rows) + 1.8), layout="constrained")
    axis = figure.subplots()
    image = axis.imshow(np.ma.masked_invalid(matrix), cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    axis.set_yticks(range(len(rows)), labels=list(rows))
    axis.set_xticks(range(width))
    axis.set_xlabel("expert")
    if width * len(rows) <= 200:
        for i in range(len(rows)):
            for j in range(width):
                if not math.isnan(matrix[i, j]):
                    colour = "black" if matrix[i, j] > 0.6 else "white"
                    axis.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", color=colour, fontsize=8)
    figure.colorbar(image, ax=axis, label="mean gate weight")
    axis.set_title(
        f"Mean gate weight per expert ({usage.get('examples', 0):,} validation examples)", fontsize=10
    )
    return _save(figure, path)


def plot_front(payload: Mapping[str, Any], path: str | os.PathLike[str]) -> str | None:
    """The Pareto front of ``mtl-keras pareto`` (:func:`mtl_keras.analysis.pareto.run_pareto`) on the
    validation split: 2 tasks one panel, the points joined in preference order; 3 or more every pairwise
    projection. Non-dominated points are filled, the single-task models a star. None without points."""
    points = list(payload.get("points") or [])
    tasks = list(payload.get("tasks") or [])
    if not points or len(tasks) < 2:
        return None
    metrics = payload.get("metrics") or {}
    pairs = [(a, b) for i, a in enumerate(tasks) for b in tasks[i + 1 :]]
    columns = min(3, len(pairs))
    rows = (len(pairs) + columns - 1) // columns
    figure = Figure(figsize=(4.6 * columns, 4.2 * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    single = (payload.get("single_task") or {}).get("validation")
    for axis, (a, b) in zip(axes, pairs, strict=False):
        xs = np.array([p["validation"][a] for p in points], dtype=np.float64)
        ys = np.array([p["validation"][b] for p in points], dtype=np.float64)
        if len(tasks) == 2:
            axis.plot(xs, ys, color="grey", linewidth=1, zorder=1)
        flags = np.array([bool(p.get("non_dominated")) for p in points])
        axis.scatter(xs[flags], ys[flags], color="tab:blue", zorder=2, label="non-dominated")
        axis.scatter(
            xs[~flags], ys[~flags], facecolors="none", edgecolors="tab:blue", zorder=2, label="dominated"
        )
        for k, (x, y) in enumerate(zip(xs, ys, strict=True)):
            axis.annotate(str(k), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
        if single is not None:
            axis.scatter(
                [single[a]], [single[b]], marker="*", s=160, color="tab:red", zorder=3, label="single-task"
            )
        axis.set_xlabel(f"{a} {metrics.get(a, {}).get('name', '')} (validation)")
        axis.set_ylabel(f"{b} {metrics.get(b, {}).get('name', '')} (validation)")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    for axis in axes[len(pairs) :]:
        axis.set_visible(False)
    figure.suptitle(f"Pareto front ({payload.get('method')}), points numbered as in front.json")
    return _save(figure, path)
