"""Adding a task to a trained run without forgetting the old ones (``mtl-keras extend``).

:func:`extend` loads a run written by ``mtl-keras train``, adds a head for the new task on the trained
representation (:func:`~mtl_keras.builders.add_task.add_task`), trains it on data labelled for the new task
only (the old tasks' labels are masked: the usual case of a new label arriving) and protects the old tasks
by one of ``keep``:

* ``frozen``: every old variable is frozen (BatchNormalization statistics included); only the new head
  trains, and the old tasks' predictions are unchanged;
* ``distill``: Learning without Forgetting (Li & Hoiem 2016) — the model before training (a frozen copy)
  gives soft targets for the old tasks' outputs on the new training data
  (:class:`~mtl_keras.losses.Distillation`, weight ``distill_weight``, temperature ``temperature``);
* ``ewc``: elastic weight consolidation (Kirkpatrick et al. 2017) — the diagonal Fisher of the old tasks on
  the old training data and the penalty (λ/2) Σ F (θ − θ*)² (:class:`~mtl_keras.losses.EWCPenalty`,
  λ = ``ewc_strength``);
* ``none``: plain fine-tuning of everything (the reference that forgets).

It reports the old tasks' test metrics before and after (forgetting; on the old run's test split), the
largest change of their predictions, and the new task's test metric next to its single-task network's
(the architecture's own single-task column trained on the same data and budget; ``baseline: false`` skips
it), then writes a run directory (``model.keras``, ``recipe.json``, ``report.json``, ``report.md``) and a
new export version with a ``predict_<new task>`` signature. Training runs on one device.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any, Literal

import keras
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from mtl_keras.builders.add_task import add_task
from mtl_keras.data.relabelled import Relabelled
from mtl_keras.evaluation.report import _clean, atomic_write_text, split_results
from mtl_keras.experiments.optimizers import build_optimizer
from mtl_keras.option_types import NonNegativeFloat, PositiveFloat, PositiveInt
from mtl_keras.recipes import Recipe, RecipeError
from mtl_keras.recipes.sections import EarlyStoppingSpec, FreezeSpec
from mtl_keras.tasks import Task

logger = logging.getLogger("mtl_keras")

KEEP = ("frozen", "distill", "ewc", "none")
REPORT_FILE = "report.json"


class ExtendSettings(BaseModel):
    """How a task is added (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    keep: Literal["frozen", "distill", "ewc", "none"] = "frozen"
    epochs: PositiveInt | None = Field(default=None, description="default: the run's training.epochs")
    learning_rate: PositiveFloat | None = Field(default=None, description="default: the run's")
    distill_weight: NonNegativeFloat = 1.0
    temperature: PositiveFloat = 2.0
    ewc_strength: NonNegativeFloat = 100.0
    fisher_examples: PositiveInt = 1024
    baseline: bool = Field(default=True, description="train the new task's single-task network too")
    template: str | None = Field(default=None, description="the task whose branch the new head copies")


def load_run(run_dir: str | Path) -> tuple[Recipe, Any]:
    """The validated recipe and the trained model of a run directory."""
    from mtl_keras.experiments.warm_start import run_model_file
    from mtl_keras.recipes import validate

    directory = Path(run_dir)
    try:
        path = run_model_file(directory)
    except ValueError as error:
        raise RecipeError("RUN_DIR", str(error)) from None
    recipe = validate(json.loads((directory / "recipe.json").read_text()), directory=directory)
    return recipe, keras.models.load_model(path)


def extension_data(recipe: Recipe, task: str, data_file: str | None = None) -> tuple[Any, dict[str, Any]]:
    """The data set holding the new task ``NAME:KIND[:COLUMN]`` and its recipe ``data`` block: the run's file
    data set with the task added (and ``data_file`` as its file, split by the recipe's rule), or the run's
    bundled data set when it already has that task."""
    from mtl_keras.experiments.preparation import load_data
    from mtl_keras.recipes.components import FILE_SOURCES
    from mtl_keras.recipes.writer import parse_task

    name, spec = parse_task(task)
    block = {"name": recipe.data.name, **recipe.data.options}
    if recipe.data.name in FILE_SOURCES:
        block["tasks"] = {**block.get("tasks", {}), name: spec}
        column = spec.get("column", name)
        if isinstance(block.get("features"), dict):  # the label column was skipped as a feature
            block["features"] = {k: v for k, v in block["features"].items() if k != column}
        if data_file is not None:
            block = {k: v for k, v in block.items() if k not in ("test", "validation")}
            block["path"] = str(Path(data_file).resolve())
        from mtl_keras.recipes import validate

        data_recipe = validate({**recipe.model_dump(), "data": block})
        return load_data(data_recipe), block
    if data_file is not None:
        raise RecipeError(
            "--data", f"the run reads the bundled data set {recipe.data.name!r}, not a csv or parquet file"
        )
    dataset = load_data(recipe)
    if name not in [t.name for t in dataset.tasks]:
        raise RecipeError(
            "--add-task",
            f"data set {recipe.data.name!r} has no task {name!r} (its tasks: {[t.name for t in dataset.tasks]}); "
            "a run on a csv or parquet file can add any column",
        )
    return dataset, block


def _evaluate(model: Any, dataset: Any, names: list[str]) -> dict[str, dict[str, float]]:
    from mtl_keras.experiments.fitting import evaluate

    results = evaluate(model, dataset, _default_strategy())
    return {
        name: values for name, values in split_results(results, model.task_names).items() if name in names
    }


def _default_strategy() -> Any:
    import tensorflow as tf

    return tf.distribute.get_strategy()


def _training_recipe(recipe: Recipe, settings: ExtendSettings) -> Recipe:
    training = recipe.training.model_copy(
        update={
            "epochs": settings.epochs or recipe.training.epochs,
            "early_stopping": EarlyStoppingSpec(),
            "optimizer": recipe.training.optimizer.model_copy(
                update={"learning_rate": settings.learning_rate or recipe.training.optimizer.learning_rate}
            ),
        }
    )
    return recipe.model_copy(update={"training": training, "freeze": FreezeSpec(), "init_from": None})


def _fit(model: Any, recipe: Recipe, dataset: Any, *, verbose: int) -> Any:
    from mtl_keras.experiments.fitting import fit

    return fit(model, recipe, dataset, _default_strategy(), epochs=recipe.training.epochs, verbose=verbose)


def protections(
    model: Any, old: Any, old_tasks: list[Task], old_data: Any, settings: ExtendSettings, teacher_file: Path
) -> list[Any]:
    """Freeze the old layers (``frozen``) or return the loss terms of ``distill`` / ``ewc``."""
    from mtl_keras.losses import Distillation, EWCPenalty, diagonal_fisher

    if settings.keep == "frozen":
        for layer in old.layers:
            layer.trainable = False
        return []
    if settings.keep == "distill":
        teacher = keras.models.load_model(teacher_file)
        return [
            Distillation(teacher, old_tasks, weight=settings.distill_weight, temperature=settings.temperature)
        ]
    if settings.keep == "ewc":
        variables = list(old.trainable_variables)
        batches = Relabelled(old_data, old_tasks).batches("train", 64)
        fisher = diagonal_fisher(old, old_tasks, batches, variables, max_examples=settings.fisher_examples)
        logger.info(
            "EWC: Fisher diagonal of %d variables from %d examples (mean %.3g).",
            len(variables),
            settings.fisher_examples,
            float(np.mean([f.mean() for f in fisher])),
        )
        return [EWCPenalty(variables, fisher, strength=settings.ewc_strength)]
    return []


def _max_change(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float]:
    return {k: float(np.abs(np.asarray(after[k]) - np.asarray(before[k])).max()) for k in before}


def extend(
    run_dir: str | Path,
    task: str,
    data: Any,
    *,
    settings: ExtendSettings | None = None,
    output_dir: str | Path | None = None,
    export_base_dir: str | None = None,
    data_block: dict[str, Any] | None = None,
    verbose: int = 0,
) -> dict[str, Any]:
    """Add task ``task`` (a task of ``data``) to the run in ``run_dir``; returns the report.

    ``output_dir`` (default ``<run_dir>_<task>``) gets the new run; the export goes to ``export_base_dir``
    (default: the run's ``export.base_dir`` or ``saved_models/<recipe name>``; none when the run's export is
    disabled and no ``export_base_dir`` is given). ``data_block`` is the recipe ``data`` block of ``data`` (written to the new ``recipe.json``).
    """
    from mtl_keras.builders.catalog import get_builder
    from mtl_keras.experiments.preparation import load_data, policy
    from mtl_keras.experiments.train import MODEL_FILE, _save_model, export, export_dir

    settings = settings or ExtendSettings()
    recipe, old = load_run(run_dir)
    names = [t.name for t in data.tasks]
    if task not in names:
        raise RecipeError("--add-task", f"data set {data.name!r} has no task {task!r} (its tasks: {names})")
    new_task = next(t for t in data.tasks if t.name == task)
    old_tasks = list(old.tasks)
    old_names = [t.name for t in old_tasks]
    training = _training_recipe(recipe, settings)
    with policy(recipe):
        old_data = load_data(recipe)
        everything = [*old_tasks, new_task]
        old_test = Relabelled(old_data, everything)
        before = _evaluate(old, Relabelled(old_data, old_tasks), old_names)
        examples = old_data.examples("test", 256)
        predictions = old.predict(examples, verbose=0)
        try:
            model = add_task(old, new_task, template=settings.template)
        except ValueError as error:
            raise RecipeError("--add-task", str(error)) from None
        terms = protections(model, old, old_tasks, old_data, settings, Path(run_dir) / MODEL_FILE)
        steps = training.training.steps_per_epoch or math.ceil(
            data.num_examples("train") / training.training.batch_size
        )
        model.compile(
            build_optimizer(training.training, steps * training.training.epochs), extra_losses=terms
        )
        train_data = Relabelled(data, everything, masked=old_names)
        logger.info(
            "Adding task %r to %s (keep: %s, %d epochs).",
            task,
            run_dir,
            settings.keep,
            training.training.epochs,
        )
        fitted = _fit(model, training, train_data, verbose=verbose)
        after = _evaluate(model, old_test, old_names)
        change = _max_change(
            predictions, {k: v for k, v in model.predict(examples, verbose=0).items() if k in old_names}
        )
        new = _evaluate(model, train_data, [task])[task]
        single = None
        if settings.baseline:
            from mtl_keras.experiments.preparation import builder_inputs

            alone = Relabelled(data, [new_task])
            keras.utils.set_random_seed(recipe.seed)
            baseline = get_builder("single_task")(
                [new_task],
                builder_inputs(recipe, data),
                architecture=recipe.architecture.name,
                **recipe.architecture.options,
            )
            baseline.compile(build_optimizer(training.training, steps * training.training.epochs))
            _fit(baseline, training, alone, verbose=verbose)
            single = _evaluate(baseline, alone, [task])[task]
    out = Path(output_dir) if output_dir is not None else Path(f"{Path(run_dir)}_{task}")
    out.mkdir(parents=True, exist_ok=True)
    _save_model(model, out / MODEL_FILE)
    written = recipe.model_dump()
    if data_block is not None:
        written["data"] = data_block
    atomic_write_text(out / "recipe.json", json.dumps(written, indent=2, default=str))
    report: dict[str, Any] = {
        "recipe": recipe.name,
        "source_run": str(run_dir),
        "added_task": {"name": task, "kind": new_task.kind, "test": new, "single_task": single},
        "keep": settings.model_dump(),
        "old_tasks": {
            name: {
                "before": before[name],
                "after": after[name],
                "change": {m: after[name].get(m, math.nan) - v for m, v in before[name].items()},
                "max_abs_prediction_change": change[name],
            }
            for name in old_names
        },
        "epochs_run": len(fitted.history.history.get("loss", [])),
        "train_seconds": fitted.seconds,
        "params": int(model.count_params()),
    }
    if recipe.export.enabled or export_base_dir is not None:
        calibration_file = Path(run_dir) / "calibration.json"
        calibration = json.loads(calibration_file.read_text()) if calibration_file.exists() else None
        report["export"] = export(model, data, export_base_dir or export_dir(recipe), calibration=calibration)
    atomic_write_text(out / REPORT_FILE, json.dumps(_clean(report), indent=2))
    atomic_write_text(out / "report.md", format_extension(report))
    return report


def format_extension(report: dict[str, Any]) -> str:
    """The report as a Markdown table: old tasks before/after, the added task against its baseline."""
    added = report["added_task"]
    lines = [
        f"# {report['recipe']} + {added['name']} (keep: {report['keep']['keep']})",
        "",
        "| task | metric | before | after | change | max abs prediction change |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name, values in report["old_tasks"].items():
        for metric, value in values["before"].items():
            after = values["after"].get(metric, math.nan)
            lines.append(
                f"| {name} | {metric} | {value:.4f} | {after:.4f} | {after - value:+.4f} | "
                f"{values['max_abs_prediction_change']:.2e} |"
            )
    lines += [
        "",
        f"Added task {added['name']!r} ({added['kind']}), test split:",
        "",
        "| metric | multi-task | single-task |",
        "|---|---:|---:|",
    ]
    single = added["single_task"] or {}
    for metric, value in added["test"].items():
        other = single.get(metric)
        lines.append(f"| {metric} | {value:.4f} | {'—' if other is None else f'{other:.4f}'} |")
    if "export" in report:
        lines += ["", f"Exported {report['export']}."]
    return "\n".join(lines) + "\n"


__all__ = [
    "KEEP",
    "ExtendSettings",
    "extend",
    "extension_data",
    "format_extension",
    "load_run",
    "protections",
]
