"""The comparison report of one recipe: multi-task vs single-task metrics per task, Δm %, cost.

:func:`build_report` turns two ``model.evaluate(..., return_dict=True)`` results (keys ``<task>_<metric>``
and ``<task>_loss``) into a JSON-ready dict, :func:`write_report` writes ``report.json`` and ``report.md``
atomically, and :func:`format_table` renders the same table as plain text for a terminal.

The report dict::

    {"recipe": str, "delta_m": float, "tasks": {task: {"multi_task": {metric: value},
                                                      "single_task": {metric: value},
                                                      "higher_is_better": {metric: bool | None},
                                                      "improvement_percent": {metric: float | None}}},
     "delta_m_metrics": {task: [metric]}, "delta_m_per_task": {task: float}, "delta_m_average": str,
     "delta_m_convention": str, "train_seconds": float, "params": int, ...extra}

``improvement_percent`` is the signed relative change that Δm averages: positive when the multi-task model
is better (see :mod:`mtl_keras.evaluation.delta_m`); None where the direction is unknown or the baseline 0.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

from mtl_keras._io import atomic_write_text
from mtl_keras.evaluation.delta_m import AVERAGES, delta_m_multi, relative_improvement
from mtl_keras.tasks import HIGHER_IS_BETTER, Task, as_tasks

CONVENTION = (
    "delta_m = 100/T * sum_i s_i * (M_i - M_single_i) / |M_single_i|, s_i = +1 if higher is better else -1; "
    "positive = multi-task better"
)
_RESERVED = (
    "recipe",
    "delta_m",
    "tasks",
    "train_seconds",
    "params",
    "delta_m_metrics",
    "delta_m_per_task",
    "delta_m_average",
    "delta_m_convention",
)
# Per-task entries of a MultiTaskModel's logs that are not metrics of the task.
_NOT_METRICS = ("weight",)


def split_results(results: Mapping[str, Any], task_names: Sequence[str]) -> dict[str, dict[str, float]]:
    """``{"<task>_<metric>": v, "loss": v, ...}`` → ``{task: {metric: v}}``.

    Each key goes to the longest task name it starts with (so tasks ``a`` and ``a_b`` do not mix); keys of
    no task (``loss``, ``cos_a_b``, ``conflict_fraction``) and ``<task>_weight`` are dropped.
    """
    by_length = sorted(task_names, key=len, reverse=True)
    split: dict[str, dict[str, float]] = {name: {} for name in task_names}
    for key, value in results.items():
        for name in by_length:
            if key.startswith(f"{name}_"):
                metric = key[len(name) + 1 :]
                if metric and metric not in _NOT_METRICS:
                    split[name][metric] = float(value)
                break
    return split


def _results_by_task(results: Mapping[str, Any], task_names: Sequence[str], argument: str) -> dict[str, Any]:
    """A flat evaluate() dict, or ``{task: evaluate() dict of that task's own model}``."""
    if results and all(isinstance(v, Mapping) for v in results.values()):
        missing = [name for name in task_names if name not in results]
        if missing:
            raise ValueError(f"No `{argument}` results for task(s) {missing}. Received: {sorted(results)}")
        return {name: split_results(results[name], task_names)[name] for name in task_names}
    return split_results(results, task_names)


def _default_metrics(task: Task, multi: Mapping[str, float], single: Mapping[str, float]) -> list[str]:
    both = [m for m in multi if m in single]
    chosen = [m for m in task.metric_names() if m in both]
    if not chosen:
        chosen = [m for m in both if m != "loss" and m in HIGHER_IS_BETTER]
    if not chosen and "loss" in both:
        chosen = ["loss"]
    return chosen


def build_report(
    multi_task: Mapping[str, Any],
    single_task: Mapping[str, Any],
    tasks: Sequence[Task | str | dict[str, Any]],
    *,
    recipe: str,
    train_seconds: float,
    params: int,
    delta_m_metrics: Mapping[str, Sequence[str] | str] | None = None,
    higher_is_better: Mapping[str, bool] | None = None,
    average: str = "task",
    **extra: Any,
) -> dict[str, Any]:
    """The report dict of one recipe.

    Args:
        multi_task: ``model.evaluate(..., return_dict=True)`` of the multi-task model.
        single_task: the same for the single-task baselines: one flat dict (e.g. from the
            :func:`~mtl_keras.builders.single_task` model), or ``{task: evaluate() dict}`` of one model
            per task.
        tasks: the tasks (``model.tasks``); their first-listed metrics are the default Δm metrics.
        recipe: the recipe's name.
        train_seconds: training time of the multi-task model.
        params: parameter count of the multi-task model.
        delta_m_metrics: ``{task: metric or [metrics]}`` entering Δm; default: the task's own metrics
            (``task.metric_names()``) found in both results, else every known-direction metric, else its loss.
        higher_is_better: ``{metric: bool}`` directions for metrics missing from
            :data:`~mtl_keras.tasks.HIGHER_IS_BETTER` (custom metric objects).
        average: ``"task"`` or ``"pair"`` (see :func:`~mtl_keras.evaluation.delta_m.delta_m_multi`).
        **extra: more top-level entries (seed, architecture, balancer, ...).
    """
    if average not in AVERAGES:
        raise ValueError(f"Expected `average` to be one of {AVERAGES}. Received: average={average!r}")
    clashes = [k for k in extra if k in _RESERVED]
    if clashes:
        raise ValueError(
            f"Extra report entries {clashes} clash with the report's own keys {list(_RESERVED)}."
        )
    task_list = as_tasks(tasks)
    names = [t.name for t in task_list]
    if delta_m_metrics is not None:
        unknown = [k for k in delta_m_metrics if k not in names]
        if unknown:
            raise ValueError(f"Unknown task(s) {unknown} in `delta_m_metrics`. Expected task names {names}.")
    directions = {**HIGHER_IS_BETTER, **dict(higher_is_better or {})}
    multi = _results_by_task(multi_task, names, "multi_task")
    single = _results_by_task(single_task, names, "single_task")

    task_entries: dict[str, Any] = {}
    chosen_metrics: dict[str, list[str]] = {}
    per_task: dict[str, float] = {}
    for task in task_list:
        m, s = multi[task.name], single[task.name]
        if delta_m_metrics is not None and task.name in delta_m_metrics:
            spec = delta_m_metrics[task.name]
            chosen = [spec] if isinstance(spec, str) else list(spec)
        else:
            chosen = _default_metrics(task, m, s)
        if not chosen:
            raise ValueError(
                f"No metric of task {task.name!r} is in both results (multi-task: {sorted(m)}, "
                f"single-task: {sorted(s)}), so Δm cannot be computed."
            )
        improvements: dict[str, float | None] = {}
        for metric in chosen:
            if metric not in m or metric not in s:
                raise ValueError(
                    f"Metric {metric!r} of task {task.name!r} is missing from the "
                    f"{'multi-task' if metric not in m else 'single-task'} results. "
                    f"Multi-task: {sorted(m)}, single-task: {sorted(s)}."
                )
            if metric not in directions:
                raise ValueError(
                    f"Unknown direction for metric {metric!r} of task {task.name!r}; pass "
                    f"`higher_is_better={{{metric!r}: True or False}}`."
                )
            improvements[metric] = relative_improvement(
                m[metric], s[metric], directions[metric], name=f"{task.name} {metric}"
            )
        values = [v for v in improvements.values() if v is not None]
        per_task[task.name] = sum(values) / len(values)
        chosen_metrics[task.name] = chosen
        ordered = chosen + sorted(k for k in {*m, *s} if k not in chosen and k != "loss")
        if "loss" not in chosen and ("loss" in m or "loss" in s):
            ordered.append("loss")
        for metric in ordered:
            if metric not in improvements:
                improvements[metric] = _safe_improvement(m.get(metric), s.get(metric), directions.get(metric))
        task_entries[task.name] = {
            "multi_task": {k: _clean(m[k]) for k in ordered if k in m},
            "single_task": {k: _clean(s[k]) for k in ordered if k in s},
            "higher_is_better": {k: directions.get(k) for k in ordered},
            "improvement_percent": {k: improvements[k] for k in ordered},
        }
    score = delta_m_multi(
        {t: {k: multi[t][k] for k in chosen_metrics[t]} for t in names},
        {t: {k: single[t][k] for k in chosen_metrics[t]} for t in names},
        {t: {k: directions[k] for k in chosen_metrics[t]} for t in names},
        average=average,
    )
    return {
        "recipe": str(recipe),
        "delta_m": score,
        "delta_m_convention": CONVENTION,
        "delta_m_average": average,
        "delta_m_metrics": chosen_metrics,
        "delta_m_per_task": per_task,
        "tasks": task_entries,
        "train_seconds": float(train_seconds),
        "params": int(params),
        **extra,
    }


def _safe_improvement(value: float | None, baseline: float | None, direction: bool | None) -> float | None:
    if value is None or baseline is None or direction is None:
        return None
    try:
        return relative_improvement(value, baseline, direction)
    except ValueError:
        return None


def _clean(value: Any) -> Any:
    """JSON has no NaN/inf: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


# --- rendering ----------------------------------------------------------------------------------------------

_HEADER = ("task", "metric", "multi-task", "single-task", "rel. change (+ = MTL better)")


def _format_value(value: Any) -> str:
    if value is None:
        return "n/a"
    value = float(value)
    if not math.isfinite(value):
        return "n/a"
    if value != 0 and (abs(value) >= 1e4 or abs(value) < 1e-3):
        return f"{value:.4g}"
    return f"{value:.4f}"


def _format_percent(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):+.2f} %"


def _rows(report: Mapping[str, Any]) -> list[tuple[str, str, str, str, str]]:
    rows = []
    used = report.get("delta_m_metrics", {})
    for task, entry in report["tasks"].items():
        metrics = list(entry.get("improvement_percent") or {**entry["multi_task"], **entry["single_task"]})
        for metric in metrics:
            label = f"{metric} *" if metric in used.get(task, ()) else metric
            rows.append(
                (
                    task,
                    label,
                    _format_value(entry["multi_task"].get(metric)),
                    _format_value(entry["single_task"].get(metric)),
                    _format_percent((entry.get("improvement_percent") or {}).get(metric)),
                )
            )
    return rows


def _summary_lines(report: Mapping[str, Any]) -> list[str]:
    averaged = (
        "over all (task, metric) pairs"
        if report.get("delta_m_average") == "pair"
        else "per task, then over tasks"
    )
    lines = [
        f"Δm = {float(report['delta_m']):+.2f} % (positive = multi-task better; * = metric in Δm, "
        f"averaged {averaged})"
        if report.get("delta_m") is not None
        else "Δm: not computed (no single-task baselines: baselines.enabled is false)",
        f"training time: {float(report['train_seconds']):.1f} s, parameters: {int(report['params']):,}",
    ]
    extra = {k: v for k, v in report.items() if k not in _RESERVED and not isinstance(v, (list, dict))}
    lines.extend(f"{k}: {_format_value(v) if isinstance(v, float) else v}" for k, v in extra.items())
    return lines


def to_markdown(report: Mapping[str, Any]) -> str:
    """``report.md``: a title, the per-task Markdown table and the Δm line."""
    lines = [f"# {report['recipe']}: multi-task vs single-task", ""]
    lines.append("| " + " | ".join(_HEADER) + " |")
    lines.append("|---|---|---:|---:|---:|")
    # Escape the "in Δm" marker so Markdown does not read it as emphasis.
    lines.extend("| " + " | ".join(row).replace(" *", " \\*") + " |" for row in _rows(report))
    lines.append("")
    summary = _summary_lines(report)
    lines.append("**" + summary[0].replace(" * ", " \\* ") + "**")
    lines.append("")
    lines.extend(f"- {line}" for line in summary[1:])
    return "\n".join(lines) + "\n"


def format_table(report: Mapping[str, Any]) -> str:
    """The report as an aligned plain-text table for a terminal."""
    rows = [_HEADER, *_rows(report)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_HEADER))]

    def line(row: Sequence[str]) -> str:
        cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1])]
        cells += [cell.rjust(width) for cell, width in zip(row[2:], widths[2:], strict=True)]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * w for w in widths)
    text = [f"{report['recipe']}", line(rows[0]), rule, *(line(r) for r in rows[1:]), rule]
    text.extend(_summary_lines(report))
    return "\n".join(text)


# --- files --------------------------------------------------------------------------------------------------


def to_json(report: Mapping[str, Any]) -> str:
    return json.dumps(_clean(dict(report)), indent=2, allow_nan=False, default=_json_default) + "\n"


def _json_default(value: Any) -> Any:
    # numpy scalars and arrays, paths
    if hasattr(value, "tolist"):
        return _clean(value.tolist())
    return str(value)


def write_report(report: Mapping[str, Any], directory: str | os.PathLike[str]) -> tuple[str, str]:
    """Write ``report.json`` and ``report.md`` into ``directory`` (created if needed), each atomically.

    Returns the two paths.
    """
    json_path = atomic_write_text(os.path.join(os.fspath(directory), "report.json"), to_json(report))
    md_path = atomic_write_text(os.path.join(os.fspath(directory), "report.md"), to_markdown(report))
    return json_path, md_path
