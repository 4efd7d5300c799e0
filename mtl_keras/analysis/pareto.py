"""`mtl-keras pareto`: a recipe trained for several task preferences, its Pareto front and a runnable recipe
for every point.

For ``points`` preference vectors λ on the simplex over the front's tasks (``tasks``, default all; 2 tasks:
evenly spaced from (1, 0) to (0, 1); 3 or more: the simplex lattice {k/H} with the largest H that gives at
most ``points`` vectors), the recipe's model is trained once per λ with

* ``linear``: static task weights λ (``tasks.<name>.weight``; tasks outside the front keep weight 1);
* ``stch``: the smooth Tchebycheff balancer (:class:`~mtl_keras.balancers.weightings.stch.STCH`) with
  preference λ (1 for tasks outside the front); its other options are the recipe's own when its balancer
  is already ``stch``, else the defaults with ``warmup_epochs = max(1, epochs // 5)``;
* ``epo``: the EPO aggregator (:class:`~mtl_keras.balancers.aggregators.epo.EPO`, preference-exact) with
  preference λ (1 for tasks outside the front), static weights 1: each point's training losses end on the
  ray ``λ_1 L_1 = λ_2 L_2 = …`` up to EPO's ``eps`` (a task with λ_i = 0 is left out of the ray). EPO's
  other options are the recipe's own when its aggregator is already ``epo``.

The recipe's own balancer is replaced. Every point is trained through the one training path
(:func:`mtl_keras.experiments.fitting.fit`) with the recipe's budget, evaluated on the validation and test
splits (each task's first metric, as in affinity and Δm), and cached in ``<output>/points/`` under the
point recipe's fingerprint, as are the single-task baselines (marked on the plot). A point is
non-dominated when no other point is at least as good on every front task's validation metric and better
on one. ``front.json`` holds ``tasks``, ``method``, ``metrics``, ``points`` (preference, validation, test,
non_dominated, recipe), ``single_task`` and ``settings``; ``front.png`` is the front (2 tasks: a curve in
preference order; 3 or more: every pairwise projection); ``points/point_<k>.yaml`` is a runnable recipe
of point k (``mtl-keras train`` it to get that model with its report and export).

A linear or STCH point lies near, not on, its preference ray; an EPO point lies on it (for its training
losses, within ``eps``; validation and test metrics are off the ray by the generalisation gap).
"""

from __future__ import annotations

import itertools
import json
import logging
import math
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field

from mtl_keras._io import atomic_write_text
from mtl_keras.analysis.pairwise import cached_result, primary_metric, split_metrics
from mtl_keras.distribute.strategy import in_scope
from mtl_keras.evaluation.report import _clean
from mtl_keras.experiments.fitting import fingerprint, fit
from mtl_keras.experiments.preparation import Prepared, build_baseline, build_model
from mtl_keras.recipes import Recipe, RecipeError, validate

logger = logging.getLogger("mtl_keras")

RESULT_FILE = "front.json"
PLOT_FILE = "front.png"
POINTS_DIR = "points"


class ParetoSettings(BaseModel):
    """What ``mtl-keras pareto`` was asked for."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    points: int = Field(default=5, ge=2, description="preference vectors to train")
    method: Literal["linear", "stch", "epo"] = "linear"
    tasks: str | None = Field(default=None, description="'a,b': the front's tasks (default: all)")


def front_tasks(text: str | None, names: list[str]) -> list[str]:
    """``"a,b"`` → the front's tasks in the data set's order; None → every task."""
    if not text:
        chosen = list(names)
    else:
        chosen = [t.strip() for t in text.split(",") if t.strip()]
        unknown = [t for t in chosen if t not in names]
        if unknown:
            raise RecipeError("--tasks", f"unknown task(s) {unknown}; expected tasks from {names}")
        chosen = [t for t in names if t in chosen]
    if len(chosen) < 2:
        raise RecipeError("--tasks", f"a front needs at least two tasks; got {chosen}")
    return chosen


def preferences(num_tasks: int, points: int) -> list[list[float]]:
    """The preference vectors (see the module docstring), each summing to 1."""
    if num_tasks == 2:
        return [[1.0 - k / (points - 1), k / (points - 1)] for k in range(points)]
    divisions = 1
    while math.comb(divisions + 1 + num_tasks - 1, num_tasks - 1) <= points:
        divisions += 1
    lattice = [
        [c / divisions for c in combo]
        for combo in itertools.product(range(divisions + 1), repeat=num_tasks)
        if sum(combo) == divisions
    ]
    return sorted(lattice, reverse=True)


def point_recipe(
    recipe: Recipe, front: list[str], names: list[str], weights: list[float], method: str
) -> Recipe:
    """The recipe of one point: ``recipe`` with its balancer replaced by the point's (module docstring)."""
    raw = recipe.model_dump()
    by_task = dict(zip(front, weights, strict=True))
    full = [by_task.get(name, 1.0) for name in names]
    tasks = {name: dict(raw["tasks"].get(name) or {}) for name in names}
    if method == "linear":
        for name, weight in zip(names, full, strict=True):
            tasks[name]["weight"] = weight
        raw["balancer"] = {"weighting": None, "aggregator": None}
    elif method == "epo":
        for entry in tasks.values():
            entry["weight"] = None
        own = raw["balancer"].get("aggregator") or {}
        options = dict(own) if own.get("name") == "epo" else {"name": "epo"}
        options["preference"] = full
        raw["balancer"] = {"weighting": None, "aggregator": options}
    else:
        for entry in tasks.values():
            entry["weight"] = None
        own = raw["balancer"].get("weighting") or {}
        options = (
            dict(own)
            if own.get("name") == "stch"
            else {
                "name": "stch",
                "warmup_epochs": max(1, recipe.training.epochs // 5),
            }
        )
        options["preference"] = full
        raw["balancer"] = {"weighting": options, "aggregator": None}
    raw["tasks"] = tasks
    raw["seeds"] = 1
    return validate(_minimal(raw))


def _minimal(raw: dict[str, Any]) -> dict[str, Any]:
    """The dumped recipe without null entries of the balancer (its sections refuse an explicit null)."""
    balancer = {k: v for k, v in raw["balancer"].items() if v is not None}
    return {**raw, "balancer": balancer}


def _train(prepared: Prepared, recipe: Recipe, path: Path, *, baseline: bool = False) -> dict[str, Any]:
    digest = fingerprint(recipe)
    stored = cached_result(path, digest)
    if stored is not None:
        logger.info("Reusing %s.", path)
        return stored
    dataset = prepared.dataset
    build = build_baseline if baseline else build_model
    model = in_scope(prepared.strategy, lambda: build(recipe, dataset, prepared.tasks))
    epochs = recipe.baseline_epochs if baseline else recipe.training.epochs
    names = [t.name for t in prepared.tasks]
    fitted = fit(model, recipe, dataset, prepared.strategy, epochs=epochs)
    result = {
        "fingerprint": digest,
        "validation": split_metrics(model, dataset, prepared, names, "validation"),
        "test": split_metrics(model, dataset, prepared, names, "test"),
        "train_seconds": fitted.seconds,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(result, indent=2))
    return result


def non_dominated(values: np.ndarray) -> list[bool]:
    """For each row (a point's metrics, oriented so that higher is better): no other row is ≥ on every
    column and > on one. NaN rows are dominated."""
    flags = []
    for i, row in enumerate(values):
        if not np.all(np.isfinite(row)):
            flags.append(False)
            continue
        dominated = any(
            np.all(other >= row) and np.any(other > row)
            for j, other in enumerate(values)
            if j != i and np.all(np.isfinite(other))
        )
        flags.append(not dominated)
    return flags


def run_pareto(prepared: Prepared, output_dir: str | Path, settings: ParetoSettings) -> dict[str, Any]:
    """Train every point and the single-task baselines, write ``front.json``, ``front.png`` and one recipe
    per point into ``output_dir``; returns what ``front.json`` holds."""
    names = [t.name for t in prepared.tasks]
    front = front_tasks(settings.tasks, names)
    out = Path(output_dir)
    (out / POINTS_DIR).mkdir(parents=True, exist_ok=True)
    metrics = {t.name: primary_metric(t) for t in prepared.tasks}
    vectors = preferences(len(front), settings.points)
    logger.info(
        "Pareto front over %s: %d %s points + the single-task baselines.",
        front,
        len(vectors),
        settings.method,
    )
    points = []
    for k, weights in enumerate(vectors):
        recipe = point_recipe(prepared.recipe, front, names, weights, settings.method)
        recipe_path = out / POINTS_DIR / f"point_{k}.yaml"
        atomic_write_text(recipe_path, yaml.safe_dump(_minimal(recipe.model_dump()), sort_keys=False))
        logger.info("Point %d of %d: preference %s.", k + 1, len(vectors), weights)
        result = _train(prepared, recipe, out / POINTS_DIR / f"point_{k}.json")
        points.append(
            {
                "preference": dict(zip(front, weights, strict=True)),
                "validation": result["validation"],
                "test": result["test"],
                "train_seconds": result["train_seconds"],
                "recipe": str(recipe_path),
            }
        )
    single = None
    if prepared.recipe.baselines.single_task:
        single = _train(prepared, prepared.recipe, out / POINTS_DIR / "single_task.json", baseline=True)
    signs = np.array([1.0 if metrics[t][1] else -1.0 for t in front])
    oriented = np.array([[p["validation"][t] for t in front] for p in points], dtype=np.float64) * signs
    for point, flag in zip(points, non_dominated(oriented), strict=True):
        point["non_dominated"] = flag
    payload: dict[str, Any] = {
        "tasks": front,
        "method": settings.method,
        "metrics": {t: {"name": metrics[t][0], "higher_is_better": metrics[t][1]} for t in names},
        "points": points,
        "single_task": None
        if single is None
        else {"validation": single["validation"], "test": single["test"]},
        "settings": {**settings.model_dump(), "recipe": prepared.recipe.name},
    }
    from mtl_keras.evaluation.plots import plot_front

    payload["plot"] = plot_front(payload, out / PLOT_FILE)
    atomic_write_text(out / RESULT_FILE, json.dumps(_clean(payload), indent=2) + "\n")
    return payload


def format_front(payload: dict[str, Any]) -> str:
    """The points as a plain-text table: preference, validation and test metric per front task."""
    front = payload["tasks"]
    metrics = payload["metrics"]
    header = ["point", "preference", *(f"val {t} {metrics[t]['name']}" for t in front)]
    header += [f"test {t} {metrics[t]['name']}" for t in front] + ["non-dominated"]
    rows = [header]

    def cell(value: Any) -> str:
        return "—" if value is None or not math.isfinite(float(value)) else f"{float(value):.4f}"

    for k, point in enumerate(payload["points"]):
        preference = ", ".join(f"{point['preference'][t]:.2f}" for t in front)
        rows.append(
            [str(k), preference, *(cell(point["validation"][t]) for t in front)]
            + [cell(point["test"][t]) for t in front]
            + ["yes" if point["non_dominated"] else ""]
        )
    if payload.get("single_task"):
        single = payload["single_task"]
        rows.append(
            ["single-task", "", *(cell(single["validation"][t]) for t in front)]
            + [cell(single["test"][t]) for t in front]
            + [""]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join([f"Pareto front ({payload['method']}) of {payload['settings']['recipe']}", *lines])


__all__ = [
    "ParetoSettings",
    "format_front",
    "front_tasks",
    "non_dominated",
    "point_recipe",
    "preferences",
    "run_pareto",
]
