"""The one way a recipe's model is trained and tested: `mtl-keras train` (the multi-task model and its
baselines) and every trial of `mtl-keras tune` go through :func:`fit`.

Training goes through the loop of the strategy (:func:`mtl_keras.distribute.loops.loop_for`: ``model.fit``
on one device or under ``MirroredStrategy``, the multi-worker loop under ``MultiWorkerMirroredStrategy``)
over the recipe's deterministic stream of batches, validating on the validation split every epoch, with
the recipe's early stopping. With a checkpoint directory, a fault-tolerance checkpoint is written every
``distribute.checkpoint_every`` steps and at each epoch end, and ``resume`` continues from it exactly.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras

from mtl_keras import __version__
from mtl_keras.callbacks import LossScaleWarning
from mtl_keras.data import AnyDataset
from mtl_keras.distribute.checkpoint import CheckpointMismatch, Restored, TrainingCheckpoint, restore
from mtl_keras.distribute.loops import TrainingRun, loop_for, replay_epoch_hooks
from mtl_keras.distribute.strategy import agree, in_scope, worker_role
from mtl_keras.experiments.preparation import stream_spec
from mtl_keras.model import MultiTaskModel
from mtl_keras.recipes import EarlyStoppingSpec, Recipe, RecipeError
from mtl_keras.recipes.sections import FreezeSpec

logger = logging.getLogger("mtl_keras")

#: What decides a model's result: the data, the tasks, the architecture, the training budget, the seed.
RESULT_SECTIONS = (
    "imports",
    "data",
    "tasks",
    "architecture",
    "training",
    "baselines",
    "seed",
    "mixed_precision",
)


_DEFAULTS: dict[str, Any] = {"backbone": None, "freeze": FreezeSpec(), "distill": None}


def fingerprint(recipe: Recipe, sections: Sequence[str] = RESULT_SECTIONS) -> str:
    """A digest of ``sections`` of ``recipe`` and the library version (cached results are reused while it
    holds: the baselines' results, a checkpoint to resume)."""
    dumped = recipe.model_dump()
    if dumped.get("training", {}).get("harden_gates_at_epoch", 0) is None:
        del dumped["training"][
            "harden_gates_at_epoch"
        ]  # absent: the digests of older recipes stay as they were
    # A backbone, its freezing and distillation decide the result too; left out when absent, so that the
    # digests of recipes without them stay as they were.
    optional = {
        k: dumped[k]
        for k in ("backbone", "freeze", "distill")
        if k in dumped and getattr(recipe, k) != _DEFAULTS[k]
    }
    payload = json.dumps(
        {k: dumped[k] for k in sections} | optional | {"version": __version__, "files": data_files(recipe)},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def data_files(recipe: Recipe) -> list[tuple[str, int, float]]:
    """``(path, size, modification time)`` of every file a file-based data source reads: results computed from
    files are not reused once a file changed."""
    import tensorflow as tf

    from mtl_keras.recipes.components import FILE_KEYS, FILE_SOURCES

    blocks = [recipe.data.options] if recipe.data.name in FILE_SOURCES else []
    sources = recipe.data.options.get("sources") if recipe.data.name == "per_task" else None
    if isinstance(sources, dict):  # per-task data sets: each task's own files
        blocks += [b for b in sources.values() if isinstance(b, dict) and b.get("name") in FILE_SOURCES]
    found = []
    for block in blocks:
        for key in FILE_KEYS:
            value = block.get(key)
            for pattern in [value] if isinstance(value, str) else list(value or []):
                for path in sorted(tf.io.gfile.glob(pattern)):
                    stat = tf.io.gfile.stat(path)
                    found.append((path, int(stat.length), float(stat.mtime_nsec)))
    return found


def checkpoint_fingerprint(recipe: Recipe) -> str:
    """What a checkpoint must match to be resumed: the result's sections and the balancer (the strategy may
    change: the result does not depend on it beyond rounding)."""
    return fingerprint(recipe, (*RESULT_SECTIONS, "balancer"))


def stoppers(early: EarlyStoppingSpec) -> list[keras.callbacks.Callback]:
    """The early stopper of ``training.early_stopping`` (none for mode ``none``)."""
    from mtl_keras.callbacks import CompositeEarlyStopping, PerTaskEarlyStopping

    kinds: dict[str, Callable[[], keras.callbacks.Callback]] = {
        "composite": lambda: CompositeEarlyStopping(patience=early.patience),
        "per_task": lambda: PerTaskEarlyStopping(patience=early.patience),
    }
    return [kinds[early.mode]()] if early.mode in kinds else []


def unfreezing(recipe: Recipe, model: MultiTaskModel) -> list[keras.callbacks.Callback]:
    """The callback unfreezing the backbone at ``freeze.unfreeze_at_epoch`` (none without a schedule)."""
    from mtl_keras.builders.backbones import backbone_layers
    from mtl_keras.callbacks.unfreeze import UnfreezeBackbone

    at = recipe.freeze.unfreeze_at_epoch
    if at is None or not backbone_layers(model):
        return []
    return [UnfreezeBackbone(at)]


def hardening(recipe: Recipe) -> list[keras.callbacks.Callback]:
    """The callback hardening every DSelect-k gate at ``training.harden_gates_at_epoch`` (none without it)."""
    from mtl_keras.callbacks.harden_dselect_k import HardenDSelectK

    at = recipe.training.harden_gates_at_epoch
    return [] if at is None else [HardenDSelectK(at)]


@dataclass
class Fitted:
    """What :func:`fit` returns: the epoch logs (``history.history``) and the training time."""

    history: keras.callbacks.History
    seconds: float


def _restore(
    recipe: Recipe, dataset: AnyDataset, strategy: Any, model: MultiTaskModel, backup_dir: Path
) -> Restored | None:
    try:
        restored: Restored | None = in_scope(
            strategy, lambda: restore(backup_dir, model, fingerprint=checkpoint_fingerprint(recipe))
        )
    except CheckpointMismatch as error:
        raise RecipeError("--resume", str(error)) from None
    agree(strategy, -1 if restored is None else restored.step, "the checkpoint to resume from")
    if restored is None:
        logger.info("No checkpoint in %s: training from the start.", backup_dir)
        return None
    epoch, step = stream_spec(recipe, dataset).position(restored.step)
    logger.info(
        "Resuming from %s: %s.",
        restored.path,
        "training had finished" if restored.finished else f"epoch {epoch + 1}, after step {step}",
    )
    replay_epoch_hooks(model, restored.history)
    return restored


def _history(model: MultiTaskModel, logs: dict[str, list[float]]) -> keras.callbacks.History:
    history = keras.callbacks.History()
    history.set_model(model)
    history.history = {k: list(v) for k, v in logs.items()}
    history.epoch = list(range(len(next(iter(logs.values()), []))))
    return history


def fit(
    model: MultiTaskModel,
    recipe: Recipe,
    dataset: AnyDataset,
    strategy: Any,
    *,
    epochs: int,
    initial_epoch: int = 0,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    backup_dir: Path | None = None,
    resume: bool = False,
    verbose: int = 0,
) -> Fitted:
    """Train ``model`` on the training split until ``epochs`` (from ``initial_epoch``), validating every epoch.

    ``callbacks`` run before the early stoppers (a search objective they read goes first). With
    ``backup_dir``, fault-tolerance checkpoints go there (read on every worker, written by the chief) and
    ``resume`` continues from the newest one.
    """
    spec = stream_spec(recipe, dataset)
    chief = worker_role(strategy).chief
    after: list[keras.callbacks.Callback] = []
    checkpoint: TrainingCheckpoint | None = None
    start_step = initial_epoch * spec.steps_per_epoch
    if backup_dir is not None:
        restored = _restore(recipe, dataset, strategy, model, backup_dir) if resume else None
        if restored is None and chief and backup_dir.exists():
            shutil.rmtree(backup_dir)
        checkpoint = TrainingCheckpoint(
            backup_dir,
            steps_per_epoch=spec.steps_per_epoch,
            fingerprint=checkpoint_fingerprint(recipe),
            every=recipe.distribute.checkpoint_every,
            chief=chief,
            restored=restored,
        )
        if restored is not None and restored.finished:
            return Fitted(_history(model, checkpoint.history), restored.seconds)
        start_step = checkpoint.step
        after.append(checkpoint)  # last: it records the logs the early stoppers add (val_composite)
    history = keras.callbacks.History()
    run = TrainingRun(
        model,
        stream=lambda step: dataset.training_stream(spec, epochs=epochs, start_step=step),
        steps_per_epoch=spec.steps_per_epoch,
        epochs=epochs,
        validation=dataset.batches("validation", max(recipe.training.batch_size, 1024)),
        callbacks=[
            *unfreezing(recipe, model),
            *hardening(recipe),
            *callbacks,
            *([LossScaleWarning()] if chief else []),
            *stoppers(recipe.training.early_stopping),
            history,
            *after,
        ],
        start_step=start_step,
        verbose=verbose if chief else 0,
    )
    start = time.perf_counter()
    loop_for(strategy).fit(run)
    if checkpoint is None:
        return Fitted(history, time.perf_counter() - start)
    checkpoint.save(finished=True)
    return Fitted(_history(model, checkpoint.history), checkpoint.seconds)


def evaluate(
    model: MultiTaskModel, dataset: AnyDataset, strategy: Any, split: str = "test"
) -> dict[str, float]:
    """``{metric: value}`` of ``model`` on ``split`` of ``dataset`` (through the strategy's loop)."""
    return loop_for(strategy).evaluate(model, dataset.batches(split, 1024))


__all__ = [
    "RESULT_SECTIONS",
    "Fitted",
    "checkpoint_fingerprint",
    "data_files",
    "evaluate",
    "fingerprint",
    "fit",
    "stoppers",
    "unfreezing",
]
