"""Did multi-task learning help each task? A verdict per task from the reports of several seeds.

Each seed's report (:func:`mtl_keras.evaluation.report.build_report`) holds, per task, its first Δm metric
for the multi-task model and for the single-task network trained with the same seed. Over the ``n`` seeds
these give ``n`` paired differences d_s = ±(multi-task − single-task), the sign making positive mean
multi-task better; the verdict is a two-sided paired t-test of ``mean(d) = 0`` at the level
``significance`` (on the differences, not on the relative changes: a ratio to a near-zero single-task error
is heavy-tailed and would hide a large, consistent effect):

* ``helps``: p < significance and mean(d) > 0;
* ``hurts``: p < significance and mean(d) < 0 — serve this task from its single-task model;
* ``no measurable effect``: otherwise (including every run of fewer than 2 seeds, where no test exists).

When every d_s is the same non-zero value (spread 0, e.g. a deterministic toy) the sign decides. With 3
seeds the test needs |mean| > 4.3 standard errors: few seeds make "no measurable effect" the common
answer, which is the honest one. The report also gives the mean relative change (percent, as in Δm);
``min_effect_percent`` requires its magnitude to reach that many percent before a task is said to be
helped or hurt.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

HELPS = "helps"
NO_EFFECT = "no measurable effect"
HURTS = "hurts"
VERDICTS = (HELPS, NO_EFFECT, HURTS)


def t_test_p_value(differences: Sequence[float]) -> float | None:
    """The two-sided p-value of a one-sample t-test of mean 0 (None for fewer than 2 values; 0 or 1 when
    the values do not vary: 0 when they are all the same non-zero value, 1 when all are 0)."""
    values = [float(d) for d in differences]
    n = len(values)
    if n < 2:
        return None
    mean = sum(values) / n
    spread = math.sqrt(sum((d - mean) ** 2 for d in values) / (n - 1))
    if spread <= 1e-12 * max(1.0, abs(mean)):
        return 1.0 if mean == 0 else 0.0
    from scipy import stats

    statistic = mean / (spread / math.sqrt(n))
    return float(2.0 * stats.t.sf(abs(statistic), df=n - 1))


def _finite(value: Any) -> bool:
    return value is not None and math.isfinite(float(value))


def task_verdict(
    multi_task: Sequence[float | None],
    single_task: Sequence[float | None],
    *,
    higher_is_better: bool,
    significance: float = 0.05,
    min_effect_percent: float = 0.0,
) -> dict[str, Any]:
    """The verdict of one task from its per-seed metric values of both models (paired by seed; a seed
    where either value is missing is left out)."""
    if not 0.0 < significance < 1.0:
        raise ValueError(f"Expected `significance` in (0, 1). Received: significance={significance}")
    if len(multi_task) != len(single_task):
        raise ValueError(
            f"Expected one single-task value per multi-task value. Received {len(multi_task)} and "
            f"{len(single_task)}."
        )
    sign = 1.0 if higher_is_better else -1.0
    pairs = [
        (float(m), float(s))
        for m, s in zip(multi_task, single_task, strict=True)
        if m is not None and s is not None and _finite(m) and _finite(s)
    ]
    differences = [sign * (m - s) for m, s in pairs]
    changes = [100.0 * sign * (m - s) / abs(s) if s != 0 else None for m, s in pairs]
    n = len(differences)
    finite_changes = [c for c in changes if c is not None]
    mean = sum(finite_changes) / len(finite_changes) if finite_changes else None
    std = _std(finite_changes)
    p = t_test_p_value(differences)
    mean_difference = sum(differences) / n if n else 0.0
    verdict = NO_EFFECT
    big_enough = mean is not None and abs(mean) >= min_effect_percent
    if p is not None and p < significance and mean_difference != 0 and big_enough:
        verdict = HELPS if mean_difference > 0 else HURTS
    return {
        "verdict": verdict,
        "seeds": n,
        "mean_difference": mean_difference if n else None,
        "mean_percent": mean,
        "std_percent": std,
        "p_value": p,
        "per_seed_percent": changes,
    }


def _primary_metric(report: Mapping[str, Any], task: str) -> str:
    chosen = (report.get("delta_m_metrics") or {}).get(task) or []
    if not chosen:
        raise ValueError(
            f"Expected report of recipe {report.get('recipe')!r} to name Δm metrics of {task!r}."
        )
    return str(chosen[0])


def transfer_verdicts(
    reports: Sequence[Mapping[str, Any]], *, significance: float = 0.05, min_effect_percent: float = 0.0
) -> dict[str, dict[str, Any]]:
    """``{task: verdict entry}`` from the reports of the same recipe under different seeds.

    Every report must have single-task results (``delta_m_metrics``). Each entry holds the verdict, the
    number of seeds it rests on, the metric compared, the mean paired difference, the mean / std /
    per-seed relative change (percent), the p-value and the per-seed metric values of both models.
    """
    if not reports:
        raise ValueError("Expected at least one report. Received none.")
    tasks = list(reports[0]["tasks"])
    result = {}
    for task in tasks:
        metric = _primary_metric(reports[0], task)
        multi, single, direction = [], [], None
        for report in reports:
            entry = report["tasks"].get(task)
            if entry is None:
                raise ValueError(
                    f"Expected task {task!r} in every report; {report.get('recipe')!r} lacks it."
                )
            multi.append(entry["multi_task"].get(metric))
            single.append(entry["single_task"].get(metric))
            direction = (entry.get("higher_is_better") or {}).get(metric, direction)
        if direction is None:
            raise ValueError(f"Expected the report to give the direction of {task!r}'s metric {metric!r}.")
        verdict = task_verdict(
            multi,
            single,
            higher_is_better=bool(direction),
            significance=significance,
            min_effect_percent=min_effect_percent,
        )
        result[task] = {"metric": metric, **verdict, "multi_task": multi, "single_task": single}
    return result


def serve_from(verdicts: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """``{task: "multi_task" | "single_task"}``: a task whose verdict is ``hurts`` is served by its
    single-task model, every other task by the multi-task model."""
    return {task: "single_task" if v["verdict"] == HURTS else "multi_task" for task, v in verdicts.items()}


def _mean(values: Sequence[Any]) -> float | None:
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return sum(finite) / len(finite) if finite else None


def _std(values: Sequence[Any]) -> float | None:
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if len(finite) < 2:
        return None
    mean = sum(finite) / len(finite)
    return math.sqrt(sum((v - mean) ** 2 for v in finite) / (len(finite) - 1))


def _cell(mean: float | None, std: float | None, percent: bool = False) -> str:
    if mean is None:
        return "—"
    text = f"{mean:+.2f} %" if percent else f"{mean:.4f}"
    if std is not None:
        text += f" ± {std:.2f}" if percent else f" ± {std:.4f}"
    return text


_HEADER = ("task", "metric", "multi-task", "single-task", "rel. change", "p", "verdict")


def verdict_rows(verdicts: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, ...]]:
    """Table rows: task, metric, mean ± std of both models, mean ± std change, p-value, verdict."""
    rows: list[tuple[str, ...]] = []
    for task, v in verdicts.items():
        p = v.get("p_value")
        rows.append(
            (
                task,
                str(v["metric"]),
                _cell(_mean(v["multi_task"]), _std(v["multi_task"])),
                _cell(_mean(v["single_task"]), _std(v["single_task"])),
                _cell(v.get("mean_percent"), v.get("std_percent"), percent=True),
                "—" if p is None else f"{p:.3g}",
                str(v["verdict"]) + (": serve from its single-task model" if v["verdict"] == HURTS else ""),
            )
        )
    return rows


def _summary(summary: Mapping[str, Any]) -> list[str]:
    seeds = summary["seeds"]
    delta = summary.get("delta_m") or {}
    lines = [
        f"seeds: {len(seeds)} ({', '.join(str(s) for s in seeds)}); verdicts: two-sided paired t-test of the per-seed "
        f"metric difference (multi-task − single-task) at significance {summary['significance']}"
        + (f", |mean| ≥ {summary['min_effect_percent']} %" if summary.get("min_effect_percent") else ""),
        f"Δm = {_cell(delta.get('mean'), delta.get('std'), percent=True)} over the seeds "
        f"(per seed: {', '.join('—' if d is None else f'{d:+.2f}' for d in delta.get('per_seed', []))})",
    ]
    if len(seeds) < 3:
        lines.append(
            f"fewer than 3 seeds ({len(seeds)}): a verdict other than 'no measurable effect' is unlikely"
        )
    served = summary.get("serve_from") or {}
    singles = [t for t, source in served.items() if source == "single_task"]
    if singles:
        lines.append(f"served from their single-task models: {', '.join(singles)}")
    if summary.get("export"):
        lines.append(f"export: {summary['export']}")
    return lines


def format_verdicts(summary: Mapping[str, Any]) -> str:
    """The multi-seed summary (:func:`mtl_keras.experiments.seeds.run_seeds`) as a plain-text table."""
    rows = [_HEADER, *verdict_rows(summary["verdicts"])]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_HEADER))]

    def line(row: Sequence[str]) -> str:
        cells = [
            c.ljust(w) if i in (0, 1, 6) else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join(
        [str(summary["recipe"]), line(rows[0]), rule, *map(line, rows[1:]), rule, *_summary(summary)]
    )


def verdicts_markdown(summary: Mapping[str, Any]) -> str:
    """``report.md`` of a multi-seed run."""
    lines = [f"# {summary['recipe']}: multi-task vs single-task over {len(summary['seeds'])} seeds", ""]
    lines.append("| " + " | ".join(_HEADER) + " |")
    lines.append("|---|---|" + "---:|" * 4 + "---|")
    lines.extend("| " + " | ".join(row) + " |" for row in verdict_rows(summary["verdicts"]))
    lines.append("")
    lines.extend(f"- {line}" for line in _summary(summary))
    lines.append("- each seed's own report: " + ", ".join(f"`{d}/report.md`" for d in summary["runs"]))
    return "\n".join(lines) + "\n"


__all__ = [
    "HELPS",
    "HURTS",
    "NO_EFFECT",
    "VERDICTS",
    "format_verdicts",
    "serve_from",
    "t_test_p_value",
    "task_verdict",
    "transfer_verdicts",
    "verdict_rows",
    "verdicts_markdown",
]
