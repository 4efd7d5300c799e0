"""Pairwise-training affinity: train every task pair and every task alone, compare on validation.

The direct definition of task affinity: the affinity of task j onto task i is the relative gain of i when
it is trained together with j instead of alone,

    A[j][i] = s_i · (M_i(i, j) − M_i(alone)) / |M_i(alone)|,

with M_i task i's first metric on the validation split (``Task.metric_names()[0]``: AUC, MSE, accuracy …)
and s_i = +1 when higher is better, −1 when lower is better (losses and errors are flipped, so a positive
affinity is always a gain). ``matrix[i][j]`` is the affinity of task i onto task j; the diagonal is 0 (a
task with itself is the task alone) and a pair that was not trained is NaN.

How each model is trained. The pair models are the recipe's architecture and balancer built for the two
tasks only, trained with the recipe's budget (``training.epochs`` over the same batches, the tasks' labels
kept, :class:`~mtl_keras.analysis.task_subset.TaskSubset`), through the one training path
(:func:`mtl_keras.experiments.fitting.fit`). "Alone" is the recipe's single-task baselines (one column per
task, ``baselines.epochs``), as `mtl-keras train` trains them.

Cost. T(T − 1)/2 pair trainings plus the baselines: it grows as T², where the lookahead affinity costs a
fraction of one run. ``pairs`` restricts the run to some pairs. Each finished model's validation metrics
are cached in ``<output>/pairwise/`` under the recipe's fingerprint: an interrupted run continues with the
models not trained yet, and a rerun with other pairs reuses the ones done.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mtl_keras._io import atomic_write_text
from mtl_keras.analysis.task_subset import TaskSubset
from mtl_keras.distribute.strategy import in_scope
from mtl_keras.experiments.fitting import evaluate, fingerprint, fit
from mtl_keras.experiments.preparation import Prepared, build_baseline, build_model
from mtl_keras.recipes import RecipeError
from mtl_keras.tasks import Task

logger = logging.getLogger("mtl_keras")

CACHE_DIR = "pairwise"


def parse_pairs(text: str | None, task_names: Sequence[str]) -> list[tuple[str, str]]:
    """``"a:b,c:d"`` → ``[("a", "b"), ("c", "d")]`` in the tasks' order; None or ``""`` → every pair."""
    names = list(task_names)
    if not text:
        return list(itertools.combinations(names, 2))
    pairs: list[tuple[str, str]] = []
    for item in text.split(","):
        parts = [p.strip() for p in item.split(":")]
        if len(parts) != 2 or not all(parts):
            raise RecipeError("--pairs", f"expected TASK:TASK pairs separated by commas, got {item!r}")
        for name in parts:
            if name not in names:
                raise RecipeError("--pairs", f"unknown task {name!r}; expected one of {names}")
        if parts[0] == parts[1]:
            raise RecipeError("--pairs", f"a pair needs two different tasks, got {item!r}")
        a, b = sorted(parts, key=names.index)
        if (a, b) not in pairs:
            pairs.append((a, b))
    return pairs


def primary_metric(task: Task) -> tuple[str, bool]:
    """Task ``task``'s first metric and whether higher is better (its loss when it has no metric)."""
    names = task.metric_names()
    if not names:
        return "loss", False
    return names[0], task.higher_is_better(names[0])


def relative_gain(value: float, alone: float, higher_is_better: bool) -> float:
    """``s · (value − alone) / |alone|``, NaN when either is missing or ``alone`` is 0."""
    if not (np.isfinite(value) and np.isfinite(alone)) or alone == 0.0:
        return float("nan")
    sign = 1.0 if higher_is_better else -1.0
    return sign * (value - alone) / abs(alone)


@dataclass
class PairwiseResult:
    """The affinity matrix and what it rests on: every model's validation metric per task."""

    tasks: list[str]
    matrix: np.ndarray
    metrics: dict[str, tuple[str, bool]]
    alone: dict[str, float]
    pairs: dict[str, dict[str, float]]
    seconds: dict[str, float]

    def details(self) -> dict[str, Any]:
        def clean(x: float) -> float | None:
            return float(x) if np.isfinite(x) else None

        return {
            "metric": {t: {"name": m, "higher_is_better": h} for t, (m, h) in self.metrics.items()},
            "alone": {t: clean(v) for t, v in self.alone.items()},
            "pairs": {k: {t: clean(v) for t, v in d.items()} for k, d in self.pairs.items()},
            "train_seconds": dict(self.seconds),
        }


def cached_result(path: Path, digest: str) -> dict[str, Any] | None:
    if not path.exists():
        return None
    stored = json.loads(path.read_text())
    return stored if stored.get("fingerprint") == digest else None


def split_metrics(
    model: Any, dataset: Any, prepared: Prepared, names: Sequence[str], split: str = "validation"
) -> dict[str, float]:
    """Each task of ``names``: its first metric (:func:`primary_metric`) on ``split``, NaN when absent."""
    results = evaluate(model, dataset, prepared.strategy, split=split)
    by_task = {t.name: t for t in prepared.tasks}
    values = {}
    for name in names:
        metric, _ = primary_metric(by_task[name])
        values[name] = float(results.get(f"{name}_{metric}", float("nan")))
    return values


def _train(
    prepared: Prepared, key: str, names: Sequence[str], cache: Path, digest: str
) -> tuple[dict[str, float], float]:
    """The validation metric of each task of ``names`` for one model (a pair, or the baselines)."""
    path = cache / f"{key}.json"
    stored = cached_result(path, digest)
    if stored is not None:
        logger.info("Reusing %s from %s.", key, path)
        return dict(stored["validation"]), float(stored["train_seconds"])
    recipe = prepared.recipe
    if key == "alone":
        dataset: Any = prepared.dataset
        model = in_scope(prepared.strategy, lambda: build_baseline(recipe, dataset, prepared.tasks))
        epochs = recipe.baseline_epochs
    else:
        dataset = TaskSubset(prepared.dataset, names)
        subset = [t for t in prepared.tasks if t.name in names]
        model = in_scope(prepared.strategy, lambda: build_model(recipe, dataset, subset))
        epochs = recipe.training.epochs
    logger.info("Training %s (%d epochs).", key, epochs)
    fitted = fit(model, recipe, dataset, prepared.strategy, epochs=epochs)
    values = split_metrics(model, dataset, prepared, names)
    cache.mkdir(parents=True, exist_ok=True)
    atomic_write_text(
        path,
        json.dumps(
            {
                "fingerprint": digest,
                "tasks": list(names),
                "validation": values,
                "train_seconds": fitted.seconds,
            },
            indent=2,
        ),
    )
    return values, fitted.seconds


def pairwise_affinity(
    prepared: Prepared, output_dir: str | Path, *, pairs: Sequence[tuple[str, str]] | None = None
) -> PairwiseResult:
    """Train the baselines and the ``pairs`` (default: every pair) of ``prepared``; the affinity matrix.

    The per-model results are cached in ``output_dir/pairwise`` (see the module docstring).
    """
    names = [t.name for t in prepared.tasks]
    chosen = list(itertools.combinations(names, 2)) if pairs is None else list(pairs)
    cache = Path(output_dir) / CACHE_DIR
    digest = fingerprint(prepared.recipe)
    logger.info(
        "Pairwise affinity: %d pair trainings + the single-task baselines (T(T-1)/2 = %d for all pairs).",
        len(chosen),
        len(names) * (len(names) - 1) // 2,
    )
    seconds: dict[str, float] = {}
    alone, seconds["alone"] = _train(prepared, "alone", names, cache, digest)
    trained: dict[str, dict[str, float]] = {}
    metrics = {t.name: primary_metric(t) for t in prepared.tasks}
    matrix = np.full((len(names), len(names)), np.nan)
    np.fill_diagonal(matrix, 0.0)
    for a, b in chosen:
        key = f"{a}+{b}"
        values, seconds[key] = _train(prepared, f"pair_{a}__{b}", (a, b), cache, digest)
        trained[key] = values
        i, j = names.index(a), names.index(b)
        matrix[i, j] = relative_gain(values[b], alone[b], metrics[b][1])  # a onto b
        matrix[j, i] = relative_gain(values[a], alone[a], metrics[a][1])  # b onto a
    return PairwiseResult(names, matrix, metrics, alone, trained, seconds)


__all__ = ["PairwiseResult", "pairwise_affinity", "parse_pairs", "primary_metric", "relative_gain"]
