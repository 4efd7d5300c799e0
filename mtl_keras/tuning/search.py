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
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mtl_keras._io import atomic_write_text
from mtl_keras.experiments import preparation
from mtl_keras.recipes import Recipe, RecipeError, validate
from mtl_keras.tuning.baselines import single_task_validation
from mtl_keras.tuning.hypermodel import MultiTaskHyperModel
from mtl_keras.tuning.objectives import Objective, constant_references, make_objective, objective_function
from mtl_keras.tuning.results import RESULTS_FILE, collect_results, finished_trials, write_outputs
from mtl_keras.tuning.schema import SearchSpec, parse_search
from mtl_keras.tuning.tuner import check_tensorboard, make_tuner

logger = logging.getLogger("mtl_keras")

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


def _search_fingerprint(recipe: Mapping[str, Any], search: SearchSpec) -> dict[str, Any]:
    """What decides a search's trials (the trial budget left out, so it can grow on resume)."""
    kept = search.model_dump(exclude={"max_trials"})
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


def _objective_values(
    objective: Objective, base: Recipe, data: Any, tasks: Any, strategy: Any, directory: Path, verbose: int
) -> dict[str, Any]:
    """What the objective compares against: the baselines' validation results (delta_m) or the constant
    predictor's (mean_normalized)."""
    if objective.kind == "delta_m":
        return {"baselines": single_task_validation(base, data, tasks, strategy, directory, verbose=verbose)}
    if objective.kind == "mean_normalized":
        return {"references": constant_references(data, tasks)}
    return {}


def run_search(
    recipe: Mapping[str, Any] | Recipe,
    search: SearchSpec | Mapping[str, Any],
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
        search: the search block (:func:`mtl_keras.tuning.parse_search`, or its mapping).
        output_dir: the search directory; an existing search there of the same recipe is resumed.
        max_trials: overrides ``search.max_trials``.
        overwrite: start afresh (the cached baselines are kept: they depend on the recipe only).
        strategy: the `tf.distribute` strategy; default: the recipe's ``distribute.strategy``. Passed to
            Keras Tuner as ``distribution_strategy`` when it is not the default strategy.
        verbose: 0 silent; 1 Keras Tuner's trial display and one line per epoch.
    """
    import tensorflow as tf

    check_tensorboard()
    raw = recipe.model_dump() if isinstance(recipe, Recipe) else copy.deepcopy(dict(recipe))
    raw.pop("search", None)
    spec = parse_search(search, raw).with_trials(max_trials)
    base = validate(raw)
    if base.distribute.strategy not in ("default", "mirrored"):
        raise RecipeError(
            "distribute.strategy",
            f"a search runs on one machine: use default or mirrored, not {base.distribute.strategy!r}",
        )
    if base.distill is not None:
        raise RecipeError(
            "distill",
            "the trials of a search train without teachers, so a search would not measure distillation; "
            "remove `distill` to search (`mtl-keras train` of the best recipe can add it back)",
        )
    with preparation.policy(base):  # while the trials' models are built
        directory = Path(output_dir)
        dataset = preparation.load_data(base)
        tasks = preparation.resolve_tasks(base, dataset)
        objective = make_objective(spec.objective, tasks)
        _claim(directory, _search_fingerprint(raw, spec), overwrite)
        if strategy is None:
            strategy = preparation.make_recipe_strategy(base)
        distributed = base.distribute.strategy != "default" or strategy is not tf.distribute.get_strategy()
        verbosity = 2 if verbose else 0
        extra = _objective_values(objective, base, dataset, tasks, strategy, directory, verbosity)
        hypermodel = MultiTaskHyperModel(
            raw,
            spec.space,
            dataset,
            tasks,
            strategy,
            objective=(objective.name, objective_function(objective, tasks, **extra)),
            verbose=verbosity,
        )
        tuner = make_tuner(
            spec,
            objective,
            hypermodel,
            directory,
            seed=base.seed if spec.seed is None else spec.seed,
            max_epochs=base.training.epochs,
            overwrite=overwrite,
            distribution_strategy=strategy if distributed else None,
        )
        done_before = finished_trials(tuner)
        stopped = None
        try:
            tuner.search(verbose=verbose)
        except RuntimeError as error:  # Keras Tuner gives up after consecutive failed trials
            if "consecutive failures" not in str(error):
                raise
            stopped = error
        new_trials = finished_trials(tuner) - done_before
        logger.info(
            "Search of %s: %d new trial(s), %d in all.", base.name, new_trials, finished_trials(tuner)
        )

        results = collect_results(tuner, spec, objective, [t.name for t in tasks], base.name, extra)
        best_values = write_outputs(directory, raw, results, objective)
        if stopped is not None:
            last = next((t["error"] for t in reversed(results["trials"]) if "error" in t), str(stopped))
            raise RecipeError(
                "search.space",
                f"Keras Tuner stopped after {tuner.oracle.max_consecutive_failed_trials} failed trials in a row; "
                f"the last error: {last} (every trial is in {directory / RESULTS_FILE})",
            )
        return SearchResult(directory, results, best_values, new_trials, tuner)


__all__ = ["SEARCH_FILE", "SearchResult", "run_search"]
