"""The single-task baselines of the ``delta_m`` objective: trained once per search, validation results cached.

They are the models ``mtl-keras train`` compares against (one per task, the recipe's architecture options
before any search value is substituted), built and trained as ``mtl-keras train`` trains them
(:func:`mtl_keras.experiments.fitting.fit`, budget ``baselines.epochs`` or ``training.epochs``) and
evaluated on the validation split. The cache (``<search dir>/baselines.json``) is keyed by the fingerprint
``mtl-keras train`` uses for its baselines (:func:`mtl_keras.experiments.fitting.fingerprint`), so a
changed recipe retrains.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from mtl_keras.data import AnyDataset
from mtl_keras.evaluation.report import atomic_write_text
from mtl_keras.experiments.fitting import evaluate, fingerprint, fit
from mtl_keras.experiments.preparation import build_models
from mtl_keras.recipes import Recipe
from mtl_keras.tasks import Task

logger = logging.getLogger("mtl_keras")

BASELINES_FILE = "baselines.json"


def single_task_validation(
    recipe: Recipe,
    dataset: AnyDataset,
    tasks: list[Task],
    strategy: Any,
    directory: Path,
    *,
    verbose: int = 0,
) -> dict[str, float]:
    """Validation results (``{"<task>_<metric>": v}``) of the recipe's single-task baselines."""
    path = directory / BASELINES_FILE
    digest = fingerprint(recipe)
    if path.exists():
        cached = json.loads(path.read_text())
        if cached.get("fingerprint") == digest:
            logger.info("Reusing the single-task baselines' validation results from %s.", path)
            return {k: float(v) for k, v in cached["validation"].items()}
    _, baseline = build_models(recipe, dataset, tasks, strategy)
    assert baseline is not None  # delta_m needs baselines.enabled (checked with the search block)
    epochs = recipe.baseline_epochs
    logger.info("Training the single-task baselines for Δm (%d epochs, once per search).", epochs)
    fitted = fit(baseline, recipe, dataset, strategy, epochs=epochs, verbose=verbose)
    validation = evaluate(baseline, dataset, strategy, split="validation")
    payload = {
        "fingerprint": digest,
        "split": "validation",
        "validation": validation,
        "epochs_run": len(fitted.history.history.get("loss", [])),
        "train_seconds": fitted.seconds,
        "params": int(baseline.count_params()),
    }
    atomic_write_text(path, json.dumps(payload, indent=2))
    return validation


__all__ = ["BASELINES_FILE", "single_task_validation"]
