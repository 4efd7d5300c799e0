"""A recipe over several seeds: a negative-transfer verdict per task, and an export that acts on it.

``seeds: N`` in a recipe (``mtl-keras train RECIPE --seeds N``) trains the recipe N times, with
``seed``, ``seed + 1``, …, each run (multi-task model and single-task networks with that seed, on the same
splits) in ``OUTPUT/seed_<s>/`` with its own report, then writes ``OUTPUT/report.json`` / ``report.md``:
per task the mean ± std of both models' first Δm metric, the relative change per seed, and a verdict
(:mod:`mtl_keras.evaluation.verdict`: ``helps``, ``no measurable effect`` or ``hurts``, with the number of
seeds it rests on). Every seed run is cached by its recipe fingerprint like any run (``--resume`` continues
an interrupted seed).

The export (``export.enabled``) is one SavedModel of the first seed's models: with ``export.serve: best``
(the default) a task whose verdict is ``hurts`` is served by its single-task network and every other task
by the multi-task model, from one endpoint (:func:`mtl_keras.export.composite.composite_model`); with
``multi_task`` the multi-task model serves every task. ``OUTPUT/serving.json`` records which model serves
each task; ``mtl-keras export OUTPUT`` rebuilds the same composite.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import keras

from mtl_keras._io import atomic_write_text
from mtl_keras.evaluation.verdict import _mean, _std, serve_from, transfer_verdicts, verdicts_markdown
from mtl_keras.experiments.preparation import Prepared
from mtl_keras.recipes import Recipe

logger = logging.getLogger("mtl_keras")

#: ``{task: "multi_task" | "single_task"}`` of a multi-seed run, and the seed whose models are served.
SERVING_FILE = "serving.json"


def seed_recipes(recipe: Recipe) -> list[Recipe]:
    """One recipe per seed (``seed``, ``seed + 1``, …), each a single-seed run that does not export."""
    export = recipe.export.model_copy(update={"enabled": False})
    return [
        recipe.model_copy(update={"seed": recipe.seed + k, "seeds": 1, "export": export})
        for k in range(recipe.seeds)
    ]


def seed_dir(output: Path, recipe: Recipe) -> Path:
    return output / f"seed_{recipe.seed}"


def _delta_m(reports: list[dict[str, Any]]) -> dict[str, Any]:
    values = [None if r.get("delta_m") is None else float(r["delta_m"]) for r in reports]
    return {"mean": _mean(values), "std": _std(values), "per_seed": values}


def summarise(recipe: Recipe, reports: list[dict[str, Any]], runs: list[str]) -> dict[str, Any]:
    """The multi-seed report: verdicts per task, Δm over the seeds, which model serves each task."""
    verdicts = transfer_verdicts(
        reports,
        significance=recipe.baselines.significance,
        min_effect_percent=recipe.baselines.min_effect_percent,
    )
    served = serve_from(verdicts) if recipe.export.serve == "best" else dict.fromkeys(verdicts, "multi_task")
    return {
        "recipe": recipe.name,
        "seeds": [recipe.seed + k for k in range(len(reports))],
        "significance": recipe.baselines.significance,
        "min_effect_percent": recipe.baselines.min_effect_percent,
        "verdicts": verdicts,
        "delta_m": _delta_m(reports),
        "serve_from": served,
        "runs": runs,
        "train_seconds": sum(float(r["train_seconds"]) for r in reports),
    }


def run_seeds(
    recipe: Recipe, output: str | Path, *, resume: bool = False, first: Prepared | None = None
) -> dict[str, Any]:
    """Train ``recipe`` with each of its ``seeds`` into ``output/seed_<s>/``; write and return the summary.

    ``first`` is the prepared first seed recipe (``prepare(seed_recipes(recipe)[0])``), when the caller
    prepared it already to surface recipe errors before anything is written.
    """
    from mtl_keras.evaluation.report import to_json
    from mtl_keras.experiments.preparation import prepare
    from mtl_keras.experiments.train import run

    out = Path(output)
    recipes = seed_recipes(recipe)
    reports, runs = [], []
    dataset = None
    for k, single in enumerate(recipes):
        logger.info("Seed %d (%d of %d).", single.seed, k + 1, len(recipes))
        directory = seed_dir(out, single)
        prepared = first if k == 0 and first is not None else prepare(single)
        reports.append(run(prepared, directory, resume=resume))
        if k == 0:
            dataset = prepared.dataset  # the splits every seed shares: the export's request rows
        del prepared
        runs.append(directory.name)
    summary = summarise(recipe, reports, runs)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "recipe.json", json.dumps(recipe.model_dump(), indent=2, default=str))
    serving = {"seed": recipe.seed, "run": runs[0], "serve_from": summary["serve_from"]}
    atomic_write_text(out / SERVING_FILE, json.dumps(serving, indent=2) + "\n")
    if recipe.export.enabled:
        from mtl_keras.experiments.train import export_dir

        summary["export"] = export_seeds(out, recipe, export_dir(recipe), dataset=dataset)
    atomic_write_text(out / "report.json", to_json(summary))
    atomic_write_text(out / "report.md", verdicts_markdown(summary))
    return summary


def is_seeds_run(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` was written by a multi-seed run (it holds ``serving.json``)."""
    return (Path(run_dir) / SERVING_FILE).exists()


def serving_model(run_dir: str | Path) -> tuple[keras.Model, dict[str, Any]]:
    """The model a multi-seed run serves (see the module docstring) and the calibration it applies."""
    from mtl_keras.experiments.calibrating import CALIBRATION_FILE
    from mtl_keras.experiments.train import MODEL_FILE
    from mtl_keras.export.composite import composite_model

    directory = Path(run_dir)
    serving = json.loads((directory / SERVING_FILE).read_text())
    run = directory / serving["run"]
    chosen: dict[str, str] = serving["serve_from"]
    multi = keras.models.load_model(run / MODEL_FILE)
    calibration_file = run / CALIBRATION_FILE
    fitted = json.loads(calibration_file.read_text()) if calibration_file.exists() else {}
    # The multi-task model's calibration was fitted on its own outputs: it applies to its tasks only.
    fitted = {task: value for task, value in fitted.items() if chosen.get(task) == "multi_task"}
    if all(source == "multi_task" for source in chosen.values()):
        return multi, fitted
    from mtl_keras.experiments.calibrating import calibrated_model

    single = keras.models.load_model(run / "single_task" / MODEL_FILE)
    models = {"multi_task": calibrated_model(multi, fitted), "single_task": single}
    return composite_model(models, chosen, name=multi.name), {}


def export_seeds(run_dir: str | Path, recipe: Recipe, base_dir: str, *, dataset: Any = None) -> str:
    """Export the model a multi-seed run serves as a new TF Serving version under ``base_dir``; the
    recipe's data set is loaded unless ``dataset`` is given."""
    from mtl_keras.experiments.preparation import load_data
    from mtl_keras.experiments.train import export

    model, calibration = serving_model(run_dir)
    data = load_data(recipe) if dataset is None else dataset
    return export(model, data, base_dir, calibration=calibration, fusion=recipe.export.fusion)


__all__ = [
    "SERVING_FILE",
    "export_seeds",
    "is_seeds_run",
    "run_seeds",
    "seed_recipes",
    "serving_model",
    "summarise",
]
