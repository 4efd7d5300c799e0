"""The comparison report of one recipe: multi-task vs single-task metrics per task, Δm %, cost.

:func:`build_report` turns two ``model.evaluate(..., return_dict=True)`` results (keys ``<task>_<metric>``
and ``<task>_loss``) into a JSON-ready dict, :func:`write_report` writes ``report.json`` and ``report.md``
atomically, and :func:`format_table` renders the same table as plain text for a terminal.

The report dict::

    {"recipe": str, "delta_m": float, "tasks": {task: {"multi_task": {metric: value},
                                                      "single_task": {metric: value},
                                                      "higher_is_better": {metric: bool | None},
                                                      "improvement_percent": {metric: float | None}}},
     "delta_m_metrics": {task: [metric]}, "delta_m_per_task": {task: float | None},
     "delta_m_skipped": {task: [metric]}, "delta_m_average": str, "delta_m_convention": str,
     "train_seconds": float, "params": int, ...extra}

``improvement_percent`` is the signed relative change that Δm averages: positive when the multi-task model
is better (see :mod:`mtl_keras.evaluation.delta_m`); None where the direction is unknown or the baseline 0.

A metric that saw no labelled example (NaN from ``evaluate``, e.g. a task without labels in the test split)
is *missing*: None in the dict and ``null`` in ``report.json``, "—" in the tables, never 0. Δm leaves such
metrics out and lists them in ``delta_m_skipped`` (also a line under the tables and a logged warning); a
task with every Δm metric missing has ``delta_m_per_task`` None, and ``delta_m`` is NaN (``null`` in
JSON) when nothing is left to compare.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

from mtl_keras._io import atomic_write_text
from mtl_keras.evaluation.delta_m import AVERAGES, delta_m_multi, is_missing, relative_improvement
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
    "delta_m_skipped",
    "delta_m_average",
    "delta_m_convention",
    "reference",
)
# Per-task entries of a MultiTaskModel's logs that are not metrics of the task.
_NOT_METRICS = ("weight",)
#: The table cell of a missing value (a metric without labelled examples).
MISSING = "—"

logger = logging.getLogger("mtl_keras")


def split_results(results: Mapping[str, Any], task_names: Sequence[str]) -> dict[str, dict[str, float]]:
    """``{"<task>_<metric>": v, "loss": v, ...}`` → ``{task: {metric: v}}``.

    Each key goes to the longest task name it starts with (so tasks ``a`` and ``a_b`` do not mix); keys of
    no task (``loss``, ``cos_a_b``, ``conflict_fraction``) and ``<task>_weight`` are dropped. A None
    value (a missing metric read back from JSON) becomes NaN.
    """
    by_length = sorted(task_names, key=len, reverse=True)
    split: dict[str, dict[str, float]] = {name: {} for name in task_names}
    for key, value in results.items():
        for name in by_length:
            if key.startswith(f"{name}_"):
                metric = key[len(name) + 1 :]
                if metric and metric not in _NOT_METRICS:
                    split[name][metric] = math.nan if value is None else float(value)
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
    per_task: dict[str, float | None] = {}
    skipped: dict[str, list[str]] = {}
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
            if is_missing(m[metric]) or is_missing(s[metric]):
                improvements[metric] = None
                skipped.setdefault(task.name, []).append(metric)
                continue
            improvements[metric] = relative_improvement(
                m[metric], s[metric], directions[metric], name=f"{task.name} {metric}"
            )
        values = [v for v in improvements.values() if v is not None]
        per_task[task.name] = sum(values) / len(values) if values else None
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
    if skipped:
        logger.warning(
            "Δm skips metrics without labelled examples (NaN in the multi-task or single-task results): %s",
            "; ".join(f"{task}: {', '.join(metrics)}" for task, metrics in skipped.items()),
        )
    compared = {t: [k for k in chosen_metrics[t] if k not in skipped.get(t, ())] for t in names}
    compared = {t: metrics for t, metrics in compared.items() if metrics}
    score = (
        delta_m_multi(
            {t: {k: multi[t][k] for k in compared[t]} for t in compared},
            {t: {k: single[t][k] for k in compared[t]} for t in compared},
            {t: {k: directions[k] for k in compared[t]} for t in compared},
            average=average,
        )
        if compared
        else math.nan
    )
    return {
        "recipe": str(recipe),
        "delta_m": score,
        "delta_m_convention": CONVENTION,
        "delta_m_average": average,
        "delta_m_metrics": chosen_metrics,
        "delta_m_per_task": per_task,
        "delta_m_skipped": skipped,
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

#: Column titles of the reference models (see :mod:`mtl_keras.evaluation.reference`).
REFERENCE_LABELS = {"gbdt": "GBDT", "linear": "linear"}

_HEADER = ("task", "metric", "multi-task", "single-task", "rel. change (+ = MTL better)")


def _format_value(value: Any) -> str:
    if is_missing(value):
        return MISSING
    value = float(value)
    if not math.isfinite(value):
        return str(value)
    if value != 0 and (abs(value) >= 1e4 or abs(value) < 1e-3):
        return f"{value:.4g}"
    return f"{value:.4f}"


def _format_percent(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):+.2f} %"


def _references(report: Mapping[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """``{model: {task: {metric: value}}}`` of the report's reference models (none when absent/skipped)."""
    reference = report.get("reference")
    if not isinstance(reference, Mapping):
        return {}
    return dict(reference.get("models") or {})


def _header(report: Mapping[str, Any]) -> tuple[str, ...]:
    labels = tuple(REFERENCE_LABELS.get(m, m) for m in _references(report))
    return (*_HEADER[:4], *labels, _HEADER[4])


def _rows(report: Mapping[str, Any]) -> list[tuple[str, ...]]:
    rows = []
    used = report.get("delta_m_metrics", {})
    references = _references(report)
    for task, entry in report["tasks"].items():
        metrics = list(entry.get("improvement_percent") or {**entry["multi_task"], **entry["single_task"]})
        for metric in metrics:
            label = f"{metric} *" if metric in used.get(task, ()) else metric
            multi, single = entry["multi_task"].get(metric), entry["single_task"].get(metric)
            change = (entry.get("improvement_percent") or {}).get(metric)
            others = [_format_value(r.get(task, {}).get(metric)) for r in references.values()]
            rows.append(
                (
                    task,
                    label,
                    _format_value(multi),
                    _format_value(single),
                    *others,
                    MISSING if is_missing(multi) or is_missing(single) else _format_percent(change),
                )
            )
    return rows


def _summary_lines(report: Mapping[str, Any]) -> list[str]:
    averaged = (
        "over all (task, metric) pairs"
        if report.get("delta_m_average") == "pair"
        else "per task, then over tasks"
    )
    score = report.get("delta_m")
    skipped = report.get("delta_m_skipped") or {}
    if score is None and not skipped:
        first = "Δm: not computed (no single-task baselines: baselines.enabled is false)"
    elif score is None or is_missing(score):
        first = "Δm: not computed (every metric in Δm has no labelled examples in one of the results)"
    else:
        first = (
            f"Δm = {float(score):+.2f} % (positive = multi-task better; * = metric in Δm, "
            f"averaged {averaged})"
        )
    lines = [first]
    if skipped:
        listed = "; ".join(f"{task}: {', '.join(metrics)}" for task, metrics in skipped.items())
        lines.append(f"Δm skips metrics without labelled examples ({MISSING}): {listed}")
    lines.append(
        f"training time: {float(report['train_seconds']):.1f} s, parameters: {int(report['params']):,}"
    )
    extra = {k: v for k, v in report.items() if k not in _RESERVED and not isinstance(v, (list, dict))}
    lines.extend(f"{k}: {_format_value(v) if isinstance(v, float) else v}" for k, v in extra.items())
    lines.extend(_distill_lines(report.get("distill")))
    lines.extend(_calibration_lines(report.get("calibration")))
    gates = report.get("gates")
    if isinstance(gates, Mapping):
        lines.extend(f"gates: {warning}" for warning in gates.get("warnings") or [])
    lines.extend(_reference_lines(report.get("reference")))
    return lines


def _distill_lines(distill: Any) -> list[str]:
    """The recipe's ``distill``, when it was on: the teachers, weight and temperature."""
    if not isinstance(distill, Mapping):
        return []
    squared = " (classification terms × T²)" if distill.get("temperature_squared") else ""
    return [
        f"distillation: on, from the single-task networks (distill.from: {distill.get('from')}), weight "
        f"{distill.get('weight')}, temperature {distill.get('temperature')}{squared}; Δm is still against "
        "those single-task networks"
    ]


def _reference_lines(reference: Any) -> list[str]:
    """What the reference columns are (rows fitted on, time), or why there are none."""
    if not isinstance(reference, Mapping):
        return []
    if "skipped" in reference:
        return [f"reference models: none ({reference['skipped']})"]
    rows, total = reference.get("train_rows"), reference.get("train_rows_total")
    sample = f"a uniform sample of {rows:,} of {total:,}" if rows != total else f"all {rows:,}"
    timing = ", ".join(
        f"{REFERENCE_LABELS.get(m, m)} {float(s):.1f} s" for m, s in (reference.get("seconds") or {}).items()
    )
    return [
        f"reference models (scikit-learn, per task, not in Δm): fitted on {sample} training rows; {timing}"
    ]


def _calibration_lines(calibration: Any) -> list[str]:
    """One line per calibrated task: its fitted method and validation/test ECE before → after."""
    if not isinstance(calibration, Mapping) or not calibration.get("fitted"):
        return []
    lines = []
    for task, fitted in calibration["fitted"].items():
        entry = calibration.get("tasks", {}).get(task, {})
        how = (
            f"T = {fitted['temperature']:.3f}"
            if fitted.get("method") == "temperature"
            else fitted.get("method")
        )
        lines.append(
            f"calibration of {task} ({how}, fitted on validation): ECE validation "
            f"{_format_value(entry.get('validation_ece'))} → {_format_value(entry.get('validation_ece_calibrated'))}, "
            f"test {_format_value(entry.get('test_ece'))} → {_format_value(entry.get('test_ece_calibrated'))}"
        )
    return lines


def to_markdown(report: Mapping[str, Any]) -> str:
    """``report.md``: a title, the per-task Markdown table and the Δm line."""
    lines = [f"# {report['recipe']}: multi-task vs single-task", ""]
    header = _header(report)
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|---|---|" + "---:|" * (len(header) - 2))
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
    header = _header(report)
    rows = [header, *_rows(report)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]

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
