"""What a search writes: ``results.json`` (every trial), ``best.yaml`` (the best trial's recipe, for
``mtl-keras train``) and ``objective.png``."""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import keras_tuner as kt
import yaml

from mtl_keras import __version__
from mtl_keras._io import atomic_write_bytes, atomic_write_text
from mtl_keras.recipes import validate
from mtl_keras.tuning.hypermodel import values_of
from mtl_keras.tuning.objectives import Objective, validation_metrics
from mtl_keras.tuning.schema import SearchSpec
from mtl_keras.tuning.space import substitute

RESULTS_FILE = "results.json"
BEST_FILE = "best.yaml"
PLOT_FILE = "objective.png"


def write_outputs(
    directory: Path, recipe: Mapping[str, Any], results: dict[str, Any], objective: Objective
) -> dict[str, Any]:
    """Write results.json, best.yaml and objective.png; return the best trial's values ({} when none)."""
    atomic_write_text(directory / RESULTS_FILE, json.dumps(results, indent=2, default=_json_default))
    best = next((t for t in results["trials"] if t["trial_id"] == results["best_trial"]), None)
    plot_objective(results, directory / PLOT_FILE)
    if best is None:
        return {}
    atomic_write_text(directory / BEST_FILE, best_recipe_yaml(recipe, best, objective, results))
    return dict(best["hyperparameters"])


def finished_trials(tuner: kt.Tuner) -> int:
    return sum(1 for t in tuner.oracle.trials.values() if t.status in ("COMPLETED", "FAILED", "INVALID"))


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def _finite(value: Any) -> float | None:
    return float(value) if value is not None and math.isfinite(float(value)) else None


def collect_results(
    tuner: kt.Tuner,
    search: SearchSpec,
    objective: Objective,
    task_names: list[str],
    recipe_name: str,
    extra: Mapping[str, Any],
) -> dict[str, Any]:
    """The results.json dict: one entry per trial in the order they started."""
    oracle = tuner.oracle
    order = [i for i in oracle.start_order if i in oracle.trials]
    order += sorted(i for i in oracle.trials if i not in order)
    trials = []
    for trial_id in order:
        trial = oracle.trials[trial_id]
        metrics = {name: trial.metrics.get_last_value(name) for name in trial.metrics.metrics}
        completed = trial.status == "COMPLETED"
        entry: dict[str, Any] = {
            "trial_id": trial_id,
            "status": trial.status,
            "hyperparameters": values_of(search.space, trial.hyperparameters.values),
            "objective": _finite(trial.score) if completed else None,
            "best_epoch": int(trial.best_step) + 1 if completed and trial.best_step is not None else None,
            "validation": validation_metrics(metrics, task_names) if completed else {},
        }
        if not completed and trial.message:
            entry["error"] = trial.message.strip().splitlines()[-1]
        schedule = {
            k.split("/", 1)[1]: v for k, v in trial.hyperparameters.values.items() if k.startswith("tuner/")
        }
        if schedule:
            entry["hyperband"] = schedule
        trials.append(entry)
    best = oracle.get_best_trials(1)
    scored = [t for t in trials if t["objective"] is not None]
    return {
        "recipe": recipe_name,
        "mtl_keras_version": __version__,
        "tuner": search.tuner,
        "max_trials": search.max_trials,
        "objective": objective.describe(),
        "space": search.model_dump()["space"],
        "best_trial": best[0].trial_id if best and scored else None,
        **{k: v for k, v in extra.items()},
        "trials": trials,
    }


def best_recipe_yaml(
    recipe: Mapping[str, Any], best: Mapping[str, Any], objective: Objective, results: Mapping[str, Any]
) -> str:
    """The recipe with the best trial's values and no search block, as YAML that ``mtl-keras train`` runs."""
    best_recipe = substitute(recipe, best["hyperparameters"])
    best_recipe["name"] = f"{recipe['name']}_best"
    best_recipe["description"] = (
        f"Best trial ({best['trial_id']}) of the {results['tuner']} search of {recipe['name']}: "
        f"{objective.name} = {best['objective']:.6g} on the validation split."
    )
    validate(best_recipe)  # what we write must load
    header = (
        f"# Written by `mtl-keras tune`: {recipe['name']} with the values of its best trial "
        f"({len(results['trials'])} trials, objective {objective.name}, {objective.direction}).\n"
        + "".join(f"#   {path}: {json.dumps(value)}\n" for path, value in best["hyperparameters"].items())
    )
    return header + yaml.safe_dump(best_recipe, sort_keys=False, default_flow_style=None, allow_unicode=True)


def plot_objective(results: Mapping[str, Any], path: str | os.PathLike[str]) -> str | None:
    """A PNG of each trial's objective (in start order) and the best so far; None when no trial scored."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    points = [(i, t["objective"]) for i, t in enumerate(results["trials"]) if t["objective"] is not None]
    if not points:
        return None
    objective = results["objective"]
    better = max if objective["direction"] == "max" else min
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    running = [better(ys[: i + 1]) for i in range(len(ys))]
    figure = Figure(figsize=(6.4, 4.0))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.plot(xs, ys, "o", label="trial")
    axes.step(xs, running, where="post", label="best so far")
    best = next(i for i, t in enumerate(results["trials"]) if t["trial_id"] == results["best_trial"])
    axes.plot([best], [results["trials"][best]["objective"]], "*", markersize=14, label="best trial")
    axes.set_xlabel("trial (in the order run)")
    axes.set_ylabel(
        f"{objective['name']} ({'higher' if objective['direction'] == 'max' else 'lower'} is better)"
    )
    axes.set_title(f"{results['recipe']}: {results['tuner']} search, validation split")
    axes.legend()
    axes.grid(alpha=0.3)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return atomic_write_bytes(path, buffer.getvalue())


__all__ = [
    "BEST_FILE",
    "PLOT_FILE",
    "RESULTS_FILE",
    "best_recipe_yaml",
    "collect_results",
    "finished_trials",
    "plot_objective",
    "write_outputs",
]
