"""Run a recipe: train the multi-task model and its single-task baselines, evaluate, report, plot, export.

Everything that can be checked is checked before the output directory is touched: the recipe schema, the
data set and its task names, and building and compiling both models. Files are written atomically.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from mtl_keras import __version__
from mtl_keras.builders.catalog import get_builder
from mtl_keras.builders.inputs import RawFeatures
from mtl_keras.data import DATASETS, MultiTaskDataset, load_dataset
from mtl_keras.data.pipeline import model_inputs, to_dataset
from mtl_keras.distribute import in_scope, make_strategy
from mtl_keras.evaluation.report import atomic_write_text, build_report, write_report
from mtl_keras.experiments.optimizers import build_optimizer
from mtl_keras.model import MultiTaskModel
from mtl_keras.recipes.schema import RecipeError
from mtl_keras.tasks import Task

logger = logging.getLogger("mtl_keras")

MODEL_FILE = "model.keras"


@dataclass
class Prepared:
    """A validated recipe with its data, tasks and (compiled, untrained) models."""

    recipe: dict[str, Any]
    dataset: MultiTaskDataset
    tasks: list[Task]
    strategy: Any
    model: MultiTaskModel
    baseline: MultiTaskModel


# --- preparation (no files written) -------------------------------------------------------------------------


def load_data(recipe: dict[str, Any]) -> MultiTaskDataset:
    data = dict(recipe["data"])
    try:
        if "tfds" in data:
            return DATASETS["tfds"](**data["tfds"])
        name = data.pop("name")
        return load_dataset(name, **data)
    except (ValueError, TypeError, FileNotFoundError) as error:
        raise RecipeError("data", str(error).replace("\n", " ")) from None


def resolve_tasks(recipe: dict[str, Any], dataset: MultiTaskDataset) -> list[Task]:
    """The data set's tasks with the recipe's overrides (metrics, loss); unknown task names are errors."""
    names = [t.name for t in dataset.tasks]
    from mtl_keras._registry import suggest

    for name in recipe["tasks"]:
        if name not in names:
            raise RecipeError(
                f"tasks.{name}",
                f"no such task (label column) in data set; expected one of {names}." + suggest(name, names),
            )
    tasks = []
    for task in dataset.tasks:
        override = recipe["tasks"].get(task.name, {})
        config = task.get_config()
        if override.get("metrics") is not None:
            config["metrics"] = override["metrics"]
        if override.get("loss") is not None:
            config["loss"] = override["loss"]
        try:
            tasks.append(Task.from_config(config))
        except ValueError as error:
            raise RecipeError(f"tasks.{task.name}", str(error)) from None
    return tasks


def model_inputs_spec(dataset: MultiTaskDataset) -> Any:
    if dataset.features is not None:
        assert isinstance(dataset.train.x, dict)
        return RawFeatures(dataset.features, dataset.train.x)
    x = np.asarray(dataset.train.x)
    return int(x.shape[1]) if x.ndim == 2 else tuple(int(d) for d in x.shape[1:])


def _architecture_error(error: Exception) -> RecipeError:
    message = str(error)
    start = message.find("`")
    end = message.find("`", start + 1)
    key = message[start + 1 : end] if 0 <= start < end else ""
    return RecipeError(f"architecture.{key}" if key.isidentifier() else "architecture", message)


def _steps(recipe: dict[str, Any], dataset: MultiTaskDataset, epochs: int) -> int:
    training = recipe["training"]
    per_epoch = int(np.ceil(len(dataset.train) / training["batch_size"]))
    if training["steps_per_epoch"] is not None:
        per_epoch = min(per_epoch, training["steps_per_epoch"])
    return per_epoch * epochs


def _loss_weights(recipe: dict[str, Any], tasks: list[Task]) -> dict[str, float] | None:
    weights = {t.name: recipe["tasks"].get(t.name, {}).get("weight") for t in tasks}
    if all(w is None for w in weights.values()):
        return None
    return {k: (1.0 if w is None else w) for k, w in weights.items()}


def _balancer(recipe: dict[str, Any]) -> list[Any]:
    from mtl_keras import balancers

    spec = recipe["balancer"]
    parts = []
    for kind in ("weighting", "aggregator"):
        component = spec[kind]
        if component is not None:
            options = {k: v for k, v in component.items() if k != "name"}
            parts.append(balancers.get(component["name"], **options))
    return parts


def build_models(
    recipe: dict[str, Any], dataset: MultiTaskDataset, tasks: list[Task], strategy: Any
) -> tuple[MultiTaskModel, MultiTaskModel]:
    """The compiled multi-task model and its single-task baseline (same architecture options per task)."""
    architecture = dict(recipe["architecture"])
    name = architecture.pop("name")
    inputs = model_inputs_spec(dataset)
    training = recipe["training"]
    baseline_epochs = recipe["baselines"]["epochs"] or training["epochs"]

    def build() -> tuple[MultiTaskModel, MultiTaskModel]:
        keras.utils.set_random_seed(recipe["seed"])
        try:
            model = get_builder(name)(tasks, inputs, name=recipe["name"].replace("-", "_"), **architecture)
        except ValueError as error:
            raise _architecture_error(error) from None
        try:
            baseline = get_builder("single_task")(tasks, inputs, architecture=name, **architecture)
        except ValueError as error:
            raise RecipeError(
                "baselines", f"cannot build single-task baselines for {name!r}: {error}"
            ) from None
        balancer = recipe["balancer"]
        try:
            model.compile(
                build_optimizer(training, _steps(recipe, dataset, training["epochs"])),
                loss_weights=_loss_weights(recipe, tasks),
                balancer=_balancer(recipe),
                balancer_level=balancer["level"],
                log_conflicts=balancer["log_conflicts"],
            )
        except ValueError as error:
            raise RecipeError("balancer", str(error)) from None
        baseline.compile(
            build_optimizer(training, _steps(recipe, dataset, baseline_epochs)),
            loss_weights=_loss_weights(recipe, tasks),
        )
        return model, baseline

    return in_scope(strategy, build)


def prepare(recipe: dict[str, Any]) -> Prepared:
    """Load data, resolve tasks, build and compile both models: every recipe error surfaces here."""
    if recipe["mixed_precision"] is not None:
        keras.mixed_precision.set_global_policy(recipe["mixed_precision"])
    dataset = load_data(recipe)
    tasks = resolve_tasks(recipe, dataset)
    strategy = make_strategy(recipe["distribute"]["strategy"])
    model, baseline = build_models(recipe, dataset, tasks, strategy)
    return Prepared(recipe, dataset, tasks, strategy, model, baseline)


# --- training -------------------------------------------------------------------------------------------------


def _fingerprint(recipe: dict[str, Any]) -> str:
    """What decides the baselines' result: data, tasks, architecture, training, seed, library version."""
    keys = ("data", "tasks", "architecture", "training", "baselines", "seed", "mixed_precision", "distribute")
    payload = json.dumps({k: recipe[k] for k in keys} | {"version": __version__}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def _verbosity() -> int:
    return 1 if sys.stderr.isatty() else 2


def _save_model(model: keras.Model, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp.keras")
    model.save(tmp)
    os.replace(tmp, path)


def _callbacks(
    recipe: dict[str, Any], model: MultiTaskModel, backup_dir: Path
) -> list[keras.callbacks.Callback]:
    from mtl_keras.callbacks import CompositeEarlyStopping, PerTaskEarlyStopping

    callbacks: list[keras.callbacks.Callback] = [keras.callbacks.BackupAndRestore(str(backup_dir))]
    early = recipe["training"]["early_stopping"]
    stoppers: dict[str, Callable[[], keras.callbacks.Callback]] = {
        "composite": lambda: CompositeEarlyStopping(patience=early["patience"]),
        "per_task": lambda: PerTaskEarlyStopping(patience=early["patience"]),
    }
    if early["mode"] in stoppers:
        callbacks.append(stoppers[early["mode"]]())
    return callbacks


def _fit(
    prepared: Prepared, model: MultiTaskModel, epochs: int, backup_dir: Path, *, resume: bool
) -> tuple[dict[str, list[float]], float]:
    recipe, dataset = prepared.recipe, prepared.dataset
    training = recipe["training"]
    if backup_dir.exists() and not resume:
        shutil.rmtree(backup_dir)
    capped = training["steps_per_epoch"] is not None
    train = to_dataset(
        dataset.train, training["batch_size"], shuffle=True, seed=recipe["seed"], repeat=capped
    )
    validation = to_dataset(dataset.validation, max(training["batch_size"], 1024))
    start = time.perf_counter()
    history = model.fit(
        train,
        validation_data=validation,
        epochs=epochs,
        steps_per_epoch=training["steps_per_epoch"],
        callbacks=_callbacks(recipe, model, backup_dir),
        shuffle=False,  # the dataset shuffles itself
        verbose=_verbosity(),
    )
    return {k: [float(v) for v in vs] for k, vs in history.history.items()}, time.perf_counter() - start


def _evaluate(prepared: Prepared, model: MultiTaskModel) -> dict[str, float]:
    test = to_dataset(prepared.dataset.test, 1024)
    results = model.evaluate(test, verbose=0, return_dict=True)
    return {k: float(v) for k, v in results.items()}


def train_baselines(prepared: Prepared, output_dir: Path, *, resume: bool) -> dict[str, Any]:
    """Train (or reuse, when the fingerprint matches) the single-task baselines; returns their results."""
    directory = output_dir / "single_task"
    fingerprint = _fingerprint(prepared.recipe)
    results_file = directory / "results.json"
    if results_file.exists():
        cached = json.loads(results_file.read_text())
        if cached.get("fingerprint") == fingerprint:
            logger.info("Reusing single-task baselines from %s (recipe and data unchanged).", directory)
            return dict(cached)
    directory.mkdir(parents=True, exist_ok=True)
    epochs = prepared.recipe["baselines"]["epochs"] or prepared.recipe["training"]["epochs"]
    logger.info("Training single-task baselines (%d epochs).", epochs)
    history, seconds = _fit(prepared, prepared.baseline, epochs, directory / "backup", resume=resume)
    results = {
        "fingerprint": fingerprint,
        "test": _evaluate(prepared, prepared.baseline),
        "history": history,
        "train_seconds": seconds,
        "params": int(prepared.baseline.count_params()),
    }
    _save_model(prepared.baseline, directory / MODEL_FILE)
    atomic_write_text(results_file, json.dumps(results, indent=2))
    return results


def _plots(history: dict[str, list[float]], tasks: list[Task], plots_dir: Path) -> list[str]:
    from mtl_keras.evaluation import plots

    plots_dir.mkdir(parents=True, exist_ok=True)
    written = [
        plots.plot_validation_curves(history, tasks, plots_dir / "validation_curves.png"),
        plots.plot_task_weights(history, tasks, plots_dir / "task_weights.png"),
        plots.plot_conflicts(history, tasks, plots_dir / "gradient_cosine.png"),
    ]
    return [str(p) for p in written if p is not None]


def run(prepared: Prepared, output_dir: str | os.PathLike[str], *, resume: bool = False) -> dict[str, Any]:
    """Train, evaluate, report, plot and export one prepared recipe into ``output_dir``."""
    recipe = prepared.recipe
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "recipe.json", json.dumps(recipe, indent=2, default=str))
    logger.info(
        "Training %s (%s) on %s.", recipe["name"], recipe["architecture"]["name"], prepared.dataset.name
    )
    history, seconds = _fit(
        prepared, prepared.model, recipe["training"]["epochs"], out / "backup", resume=resume
    )
    _save_model(prepared.model, out / MODEL_FILE)
    multi = _evaluate(prepared, prepared.model)
    baselines = train_baselines(prepared, out, resume=resume)
    report = build_report(
        multi,
        baselines["test"],
        prepared.tasks,
        recipe=recipe["name"],
        train_seconds=seconds,
        params=int(prepared.model.count_params()),
        single_task_train_seconds=baselines["train_seconds"],
        single_task_params=baselines["params"],
        architecture=recipe["architecture"]["name"],
        balancer=prepared.model.balancer.describe(),
        epochs_run=len(history.get("loss", [])),
        dataset=prepared.dataset.name,
        mtl_keras_version=__version__,
    )
    atomic_write_text(out / "history.json", json.dumps(history, indent=2))
    report["plots"] = _plots(history, prepared.tasks, out / "plots")
    if recipe["export"]["enabled"]:
        from mtl_keras.export import export_for_serving

        base_dir = recipe["export"]["base_dir"] or os.path.join("saved_models", recipe["name"])
        examples = prepared.dataset.test.take(np.arange(min(3, len(prepared.dataset.test))))
        version_dir = export_for_serving(prepared.model, base_dir, request_examples=model_inputs(examples.x))
        report["export"] = str(version_dir)
    write_report(report, out)
    return report
