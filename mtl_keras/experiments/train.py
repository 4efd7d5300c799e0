"""Run a recipe: train the multi-task model and its single-task baselines, evaluate, report, plot, export.

Everything that can be checked is checked before the output directory is touched: the recipe schema, the
data set and its task names, and building and compiling both models. Files are written atomically.

Training goes through the loop of the recipe's strategy (:func:`mtl_keras.distribute.loops.loop_for`:
``model.fit`` on one device or under ``MirroredStrategy``, the multi-worker loop under
``MultiWorkerMirroredStrategy``) over a deterministic stream of batches, with a fault-tolerance checkpoint
every ``distribute.checkpoint_every`` steps and at each epoch end; ``--resume`` continues from it exactly.
Under several workers every worker runs the same code; only the chief writes into the output directory.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
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
from mtl_keras.distribute.checkpoint import CheckpointMismatch, Restored, TrainingCheckpoint, restore
from mtl_keras.distribute.loops import TrainingRun, loop_for, replay_epoch_hooks
from mtl_keras.distribute.strategy import agree, in_scope, strategy_from_recipe, worker_role
from mtl_keras.distribute.stream import StreamSpec, training_stream
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


def _stream_spec(recipe: dict[str, Any], dataset: MultiTaskDataset) -> StreamSpec:
    training = recipe["training"]
    return StreamSpec.for_split(
        dataset.train,
        training["batch_size"],
        seed=recipe["seed"],
        steps_per_epoch=training["steps_per_epoch"],
    )


def _steps(recipe: dict[str, Any], dataset: MultiTaskDataset, epochs: int) -> int:
    return _stream_spec(recipe, dataset).steps_per_epoch * epochs


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


def _strategy(recipe: dict[str, Any]) -> Any:
    try:
        return strategy_from_recipe(recipe["distribute"])
    except ValueError as error:
        raise RecipeError("distribute", str(error)) from None


def prepare(recipe: dict[str, Any]) -> Prepared:
    """Load data, resolve tasks, build and compile both models: every recipe error surfaces here.

    The recipe's ``mixed_precision`` policy is the global Keras policy while the models are built (each
    layer keeps it) and the previous policy is back afterwards, so nothing else in the process changes.
    """
    previous = keras.mixed_precision.global_policy()
    try:
        if recipe["mixed_precision"] is not None:
            keras.mixed_precision.set_global_policy(recipe["mixed_precision"])
        # First: MultiWorkerMirroredStrategy configures the runtime's collectives, before other TF ops.
        strategy = _strategy(recipe)
        dataset = load_data(recipe)
        tasks = resolve_tasks(recipe, dataset)
        model, baseline = build_models(recipe, dataset, tasks, strategy)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    return Prepared(recipe, dataset, tasks, strategy, model, baseline)


# --- training -------------------------------------------------------------------------------------------------


def _fingerprint(recipe: dict[str, Any]) -> str:
    """What decides the baselines' result: data, tasks, architecture, training, seed, library version."""
    keys = ("data", "tasks", "architecture", "training", "baselines", "seed", "mixed_precision", "distribute")
    payload = json.dumps({k: recipe[k] for k in keys} | {"version": __version__}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def _checkpoint_fingerprint(recipe: dict[str, Any]) -> str:
    """What a checkpoint must match to be resumed (the strategy may change: the result does not depend
    on it beyond rounding)."""
    keys = ("data", "tasks", "architecture", "balancer", "training", "baselines", "seed", "mixed_precision")
    payload = json.dumps({k: recipe[k] for k in keys} | {"version": __version__}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def _verbosity() -> int:
    return 1 if sys.stderr.isatty() else 2


def _save_model(model: keras.Model, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp.keras")
    model.save(tmp)
    os.replace(tmp, path)


def _stoppers(recipe: dict[str, Any]) -> list[keras.callbacks.Callback]:
    from mtl_keras.callbacks import CompositeEarlyStopping, PerTaskEarlyStopping

    callbacks: list[keras.callbacks.Callback] = []
    early = recipe["training"]["early_stopping"]
    stoppers: dict[str, Callable[[], keras.callbacks.Callback]] = {
        "composite": lambda: CompositeEarlyStopping(patience=early["patience"]),
        "per_task": lambda: PerTaskEarlyStopping(patience=early["patience"]),
    }
    if early["mode"] in stoppers:
        callbacks.append(stoppers[early["mode"]]())
    return callbacks


def _restore(prepared: Prepared, model: MultiTaskModel, backup_dir: Path) -> Restored | None:
    strategy = prepared.strategy
    fingerprint = _checkpoint_fingerprint(prepared.recipe)
    try:
        restored: Restored | None = in_scope(
            strategy, lambda: restore(backup_dir, model, fingerprint=fingerprint)
        )
    except CheckpointMismatch as error:
        raise RecipeError("--resume", str(error)) from None
    agree(strategy, -1 if restored is None else restored.step, "the checkpoint to resume from")
    if restored is None:
        logger.info("No checkpoint in %s: training from the start.", backup_dir)
        return None
    epoch, step = _stream_spec(prepared.recipe, prepared.dataset).position(restored.step)
    logger.info(
        "Resuming from %s: %s.",
        restored.path,
        "training had finished" if restored.finished else f"epoch {epoch + 1}, after step {step}",
    )
    replay_epoch_hooks(model, restored.history)
    return restored


def _fit(
    prepared: Prepared, model: MultiTaskModel, epochs: int, backup_dir: Path, *, resume: bool
) -> tuple[dict[str, list[float]], float]:
    """Train ``model`` through the strategy's loop with checkpoints in ``backup_dir`` (read on every
    worker, written by the chief); with ``resume``, continue from the newest checkpoint there."""
    recipe, dataset = prepared.recipe, prepared.dataset
    training = recipe["training"]
    chief = worker_role(prepared.strategy).chief
    restored = _restore(prepared, model, backup_dir) if resume else None
    if restored is None and chief and backup_dir.exists():
        shutil.rmtree(backup_dir)
    spec = _stream_spec(recipe, dataset)
    checkpoint = TrainingCheckpoint(
        backup_dir,
        steps_per_epoch=spec.steps_per_epoch,
        fingerprint=_checkpoint_fingerprint(recipe),
        every=recipe["distribute"]["checkpoint_every"],
        chief=chief,
        restored=restored,
    )
    if restored is not None and restored.finished:
        return checkpoint.history, restored.seconds
    run = TrainingRun(
        model,
        stream=lambda step: training_stream(dataset.train, spec, epochs=epochs, start_step=step),
        steps_per_epoch=spec.steps_per_epoch,
        epochs=epochs,
        validation=to_dataset(dataset.validation, max(training["batch_size"], 1024)),
        # The checkpoint last: it records the logs the early stoppers add (val_composite).
        callbacks=[*_stoppers(recipe), checkpoint],
        start_step=checkpoint.step,
        verbose=_verbosity() if chief else 0,
    )
    loop_for(prepared.strategy).fit(run)
    checkpoint.save(finished=True)
    return checkpoint.history, checkpoint.seconds


def _evaluate(prepared: Prepared, model: MultiTaskModel) -> dict[str, float]:
    return loop_for(prepared.strategy).evaluate(model, to_dataset(prepared.dataset.test, 1024))


def train_baselines(
    prepared: Prepared, output_dir: Path, *, resume: bool, write_dir: Path | None = None
) -> dict[str, Any]:
    """Train (or reuse, when the fingerprint matches) the single-task baselines; returns their results.

    ``output_dir`` is read (cached results, checkpoints); ``write_dir`` (default ``output_dir``) written.
    """
    directory = output_dir / "single_task"
    writes = (write_dir or output_dir) / "single_task"
    fingerprint = _fingerprint(prepared.recipe)
    results_file = directory / "results.json"
    cached = json.loads(results_file.read_text()) if results_file.exists() else {}
    reuse = agree(prepared.strategy, int(cached.get("fingerprint") == fingerprint), "reusing the baselines")
    if reuse:
        logger.info("Reusing single-task baselines from %s (recipe and data unchanged).", directory)
        return dict(cached)
    writes.mkdir(parents=True, exist_ok=True)
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
    _save_model(prepared.baseline, writes / MODEL_FILE)
    atomic_write_text(writes / "results.json", json.dumps(results, indent=2))
    if writes == directory:
        shutil.rmtree(directory / "backup", ignore_errors=True)
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
    """Train, evaluate, report, plot and export one prepared recipe into ``output_dir``.

    Under several workers every worker calls this with the same arguments; the chief writes into
    ``output_dir``, the others into a temporary directory that is deleted at the end.
    """
    role = worker_role(prepared.strategy)
    out = Path(output_dir)
    if role.chief:
        return _run(prepared, out, out, resume=resume)
    scratch = Path(tempfile.mkdtemp(prefix="mtl-keras-worker-"))
    try:
        return _run(prepared, out, scratch, resume=resume)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _run(prepared: Prepared, out: Path, writes: Path, *, resume: bool) -> dict[str, Any]:
    recipe = prepared.recipe
    writes.mkdir(parents=True, exist_ok=True)
    atomic_write_text(writes / "recipe.json", json.dumps(recipe, indent=2, default=str))
    logger.info(
        "Training %s (%s) on %s.", recipe["name"], recipe["architecture"]["name"], prepared.dataset.name
    )
    history, seconds = _fit(
        prepared, prepared.model, recipe["training"]["epochs"], out / "backup", resume=resume
    )
    _save_model(prepared.model, writes / MODEL_FILE)
    multi = _evaluate(prepared, prepared.model)
    baselines = train_baselines(prepared, out, resume=resume, write_dir=writes)
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
    atomic_write_text(writes / "history.json", json.dumps(history, indent=2))
    report["plots"] = _plots(history, prepared.tasks, writes / "plots")
    if recipe["export"]["enabled"]:
        from mtl_keras.export import export_for_serving

        base_dir = recipe["export"]["base_dir"] or os.path.join("saved_models", recipe["name"])
        if writes != out:
            base_dir = str(writes / "saved_models")
        examples = prepared.dataset.test.take(np.arange(min(3, len(prepared.dataset.test))))
        version_dir = export_for_serving(prepared.model, base_dir, request_examples=model_inputs(examples.x))
        report["export"] = str(version_dir)
    write_report(report, writes)
    if writes == out:
        shutil.rmtree(out / "backup", ignore_errors=True)
    return report
