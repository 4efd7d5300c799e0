"""Run a recipe's search: load the data once, pick the tuner, search, write results, best recipe and plot.

The search directory holds::

    search.json        what was searched (recipe + search block); a resumed search must match it
    baselines.json     the single-task baselines' validation results (delta_m objective), reused
    trials/            Keras Tuner's project: oracle state, one folder per trial, best-epoch weights
    results.json       one entry per trial: values, per-task validation metrics, objective
    best.yaml          the recipe with the best trial's values and no search block (runs with `train`)
    objective.png      the objective of every trial and the best so far

Running the same search again on the same directory resumes it (Keras Tuner's ``overwrite=False``):
finished trials are kept and only the trials missing up to ``max_trials`` run.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import importlib.util
import io
import json
import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import keras
import keras_tuner as kt
import yaml

from mtl_keras import __version__
from mtl_keras._io import atomic_write_bytes, atomic_write_text
from mtl_keras.recipes.loading import read_raw_recipe
from mtl_keras.recipes.schema import RecipeError, validate
from mtl_keras.tuning.hypermodel import MultiTaskHyperModel, values_of
from mtl_keras.tuning.objectives import (
    Objective,
    constant_references,
    make_objective,
    objective_function,
    single_task_validation,
    validation_metrics,
)
from mtl_keras.tuning.schema import substitute, validate_search

logger = logging.getLogger("mtl_keras")

PROJECT = "trials"
RESULTS_FILE = "results.json"
BEST_FILE = "best.yaml"
PLOT_FILE = "objective.png"
SEARCH_FILE = "search.json"


@dataclasses.dataclass
class SearchResult:
    """What :func:`run_search` did: the directory, the trials, the best values, and the tuner itself."""

    directory: Path
    results: dict[str, Any]
    best_values: dict[str, Any]
    new_trials: int
    tuner: Any

    @property
    def best_trial(self) -> dict[str, Any] | None:
        best = self.results["best_trial"]
        return next((t for t in self.results["trials"] if t["trial_id"] == best), None)


# --- reading a search recipe -------------------------------------------------------------------------------


def load_search_recipe(
    path: str | os.PathLike[str], overrides: list[str] | tuple[str, ...] = ()
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read a recipe with a ``search:`` block; return ``(recipe as written, without search; search)``.

    ``overrides`` (``key=value``, YAML values) apply before validation and may reach into the search block
    (``search.max_trials=3``). Both parts are validated; errors name the key path.
    """
    raw = read_raw_recipe(path, overrides)
    if "search" not in raw:
        raise RecipeError(
            "search",
            "missing: `mtl-keras tune` needs a `search:` block (see docs/tuning.md); to train, use `train`",
        )
    block = raw.pop("search")
    validate(raw)
    return raw, validate_search(block, raw)


# --- the tuner ---------------------------------------------------------------------------------------------


def make_tuner(
    search: Mapping[str, Any],
    objective: Objective,
    hypermodel: kt.HyperModel,
    directory: Path,
    *,
    seed: int,
    max_epochs: int,
    overwrite: bool = False,
    distribution_strategy: Any = None,
) -> kt.Tuner:
    """The Keras Tuner of ``search["tuner"]`` on ``directory/trials``, capped at ``search["max_trials"]``."""
    common: dict[str, Any] = {
        "hypermodel": hypermodel,
        "objective": objective.keras_tuner(),
        "seed": seed,
        "executions_per_trial": search["executions_per_trial"],
        "distribution_strategy": distribution_strategy,
        "directory": str(directory),
        "project_name": PROJECT,
        "overwrite": overwrite,
    }
    name = search["tuner"]
    tuner: kt.Tuner
    if name == "random":
        tuner = kt.RandomSearch(max_trials=search["max_trials"], **common)
    elif name == "bayesian":
        options = search["bayesian"]
        tuner = kt.BayesianOptimization(
            max_trials=search["max_trials"],
            num_initial_points=options["num_initial_points"],
            alpha=options["alpha"],
            beta=options["beta"],
            **common,
        )
    else:
        options = search["hyperband"]
        tuner = kt.Hyperband(
            max_epochs=options["max_epochs"] or max_epochs,
            factor=options["factor"],
            hyperband_iterations=options["iterations"],
            **common,
        )
    # Hyperband has no trial cap of its own; and a reloaded oracle keeps the cap given now (resuming with a
    # larger max_trials runs only the missing trials).
    tuner.oracle.max_trials = search["max_trials"]
    return tuner


def _check_tensorboard() -> None:
    if keras.backend.backend() == "tensorflow" and importlib.util.find_spec("tensorboard") is None:
        raise ImportError(
            "Keras Tuner imports `tensorboard` for every trial on the TensorFlow backend; "
            "install it with `pip install tensorboard`."
        )


def _search_fingerprint(recipe: Mapping[str, Any], search: Mapping[str, Any]) -> dict[str, Any]:
    """What decides a search's trials (the trial budget left out, so it can grow on resume)."""
    kept = {k: v for k, v in search.items() if k != "max_trials"}
    payload = json.dumps({"recipe": recipe, "search": kept}, sort_keys=True, default=str)
    return {"sha256": hashlib.sha256(payload.encode()).hexdigest(), "recipe": recipe, "search": kept}


def _claim(directory: Path, fingerprint: dict[str, Any], overwrite: bool) -> None:
    path = directory / SEARCH_FILE
    if path.exists() and not overwrite:
        previous = json.loads(path.read_text())
        if previous.get("sha256") != fingerprint["sha256"]:
            raise RecipeError(
                "--output",
                f"{directory} holds a search of another recipe or search block; resume it with the same "
                "recipe and overrides, or pass --overwrite, or choose another --output",
            )
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(fingerprint, indent=2, default=str))


# --- running ---------------------------------------------------------------------------------------------


def run_search(
    recipe: Mapping[str, Any],
    search: Mapping[str, Any],
    output_dir: str | os.PathLike[str],
    *,
    max_trials: int | None = None,
    overwrite: bool = False,
    strategy: Any = None,
    verbose: int = 0,
) -> SearchResult:
    """Search ``recipe``'s hyperparameters; write results.json, best.yaml and objective.png.

    Args:
        recipe: the recipe as written, without ``search`` (see :func:`load_search_recipe`).
        search: the validated search block (:func:`mtl_keras.tuning.validate_search`).
        output_dir: the search directory; an existing search there of the same recipe is resumed.
        max_trials: overrides ``search["max_trials"]``.
        overwrite: start afresh (the cached baselines are kept: they depend on the recipe only).
        strategy: the `tf.distribute` strategy; default: the recipe's ``distribute.strategy``. Passed to
            Keras Tuner as ``distribution_strategy`` when it is not the default strategy.
        verbose: 0 silent; 1 Keras Tuner's trial display and one line per epoch.
    """
    import tensorflow as tf

    from mtl_keras.distribute.strategy import strategy_from_recipe
    from mtl_keras.experiments.train import load_data, resolve_tasks

    _check_tensorboard()
    recipe = {k: copy.deepcopy(v) for k, v in recipe.items() if k != "search"}
    search = dict(search)
    if max_trials is not None:
        search["max_trials"] = max_trials
    base = validate(recipe)
    if base["distribute"]["strategy"] not in ("default", "mirrored"):
        raise RecipeError(
            "distribute.strategy",
            f"a search runs on one machine: use default or mirrored, not {base['distribute']['strategy']!r}",
        )
    previous_policy = keras.mixed_precision.global_policy()
    if base["mixed_precision"] is not None:
        keras.mixed_precision.set_global_policy(base["mixed_precision"])  # while the trials' models are built
    try:
        directory = Path(output_dir)
        dataset = load_data(base)
        tasks = resolve_tasks(base, dataset)
        objective = make_objective(search["objective"], tasks)
        _claim(directory, _search_fingerprint(recipe, search), overwrite)
        if strategy is None:
            strategy = strategy_from_recipe(base["distribute"])
        distributed = (
            base["distribute"]["strategy"] != "default" or strategy is not tf.distribute.get_strategy()
        )

        extra: dict[str, Any] = {}
        if objective.kind == "delta_m":
            extra["baselines"] = single_task_validation(
                base, dataset, tasks, strategy, directory, verbose=2 if verbose else 0
            )
        elif objective.kind == "mean_normalized":
            extra["references"] = constant_references(dataset, tasks)
        function = objective_function(objective, tasks, **extra)
        hypermodel = MultiTaskHyperModel(
            recipe,
            search["space"],
            dataset,
            tasks,
            strategy,
            objective=(objective.name, function),
            verbose=2 if verbose else 0,
        )
        tuner = make_tuner(
            search,
            objective,
            hypermodel,
            directory,
            seed=base["seed"] if search["seed"] is None else search["seed"],
            max_epochs=base["training"]["epochs"],
            overwrite=overwrite,
            distribution_strategy=strategy if distributed else None,
        )
        done_before = _finished(tuner)
        stopped = None
        try:
            tuner.search(verbose=verbose)
        except RuntimeError as error:  # Keras Tuner gives up after consecutive failed trials
            if "consecutive failures" not in str(error):
                raise
            stopped = error
        new_trials = _finished(tuner) - done_before
        logger.info("Search of %s: %d new trial(s), %d in all.", base["name"], new_trials, _finished(tuner))

        results = collect_results(tuner, search, objective, [t.name for t in tasks], base["name"], extra)
        best_values = write_outputs(directory, recipe, results, objective)
        if stopped is not None:
            last = next((t["error"] for t in reversed(results["trials"]) if "error" in t), str(stopped))
            raise RecipeError(
                "search.space",
                f"Keras Tuner stopped after {tuner.oracle.max_consecutive_failed_trials} failed trials in a row; "
                f"the last error: {last} (every trial is in {directory / RESULTS_FILE})",
            )
        return SearchResult(directory, results, best_values, new_trials, tuner)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)


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


def _finished(tuner: kt.Tuner) -> int:
    return sum(1 for t in tuner.oracle.trials.values() if t.status in ("COMPLETED", "FAILED", "INVALID"))


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def _finite(value: Any) -> float | None:
    return float(value) if value is not None and math.isfinite(float(value)) else None


def collect_results(
    tuner: kt.Tuner,
    search: Mapping[str, Any],
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
            "hyperparameters": values_of(search["space"], trial.hyperparameters.values),
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
        "tuner": search["tuner"],
        "max_trials": search["max_trials"],
        "objective": objective.describe(),
        "space": search["space"],
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
    "SearchResult",
    "best_recipe_yaml",
    "collect_results",
    "load_search_recipe",
    "make_tuner",
    "plot_objective",
    "run_search",
    "write_outputs",
]
