"""Fault-tolerance checkpoints: the whole training state every N steps and at each epoch end, written
atomically, restored exactly.

``keras.callbacks.BackupAndRestore`` is not enough here: it restores the epoch but not the step (a run
killed mid-epoch repeats the steps it had done), writes in place (a kill during the write leaves a broken
file), and its ``.weights.h5`` holds neither the seed-generator states (dropout) nor the aggregators'
state (PCGrad's step counter, GradVac's targets) nor the metrics of the epoch in progress.

A checkpoint is a directory ``ckpt-<sequence>`` holding ``variables.npz`` (every variable of
:func:`training_variables`, in order) and ``state.json`` (global step, whether training finished, the
epoch logs so far, the recipe fingerprint). It is written under a temporary name and renamed: a directory
``ckpt-*`` is complete or absent. The two newest are kept; restoring falls back to the older one when the
newer cannot be read.

Only the chief writes into the run's directory. The other workers read the same variables (reading
metrics is a collective under ``MultiWorkerMirroredStrategy``, so every worker must take part) and write
into a temporary directory that is deleted at once.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

logger = logging.getLogger("mtl_keras")

STATE_FILE = "state.json"
ARRAYS_FILE = "variables.npz"
PREFIX = "ckpt-"
FORMAT = 1
KEEP = 2


class CheckpointMismatch(ValueError):
    """A checkpoint that does not belong to this model or recipe."""


# --- what is saved -----------------------------------------------------------------------------------------


def _metric_variables(model: keras.Model) -> list[Any]:
    return [v for metric in model.metrics for v in metric.variables]


def _aggregator_variables(model: keras.Model) -> list[Any]:
    """The ``tf.Variable`` attributes of the model's gradient aggregator (its state), by attribute name."""
    aggregator = getattr(getattr(model, "balancer", None), "aggregator", None)
    if aggregator is None:
        return []
    return [value for _, value in sorted(vars(aggregator).items()) if isinstance(value, tf.Variable)]


def training_variables(model: keras.Model) -> list[Any]:
    """Everything a step changes: model variables (seed generators included), balancer and aggregator
    state, optimizer variables, metric variables; each once, in a fixed order."""
    seen: set[int] = set()
    result = []
    optimizer = getattr(model, "optimizer", None)
    groups = [
        list(model.variables),
        list(optimizer.variables) if optimizer is not None else [],
        _aggregator_variables(model),
        _metric_variables(model),
    ]
    for group in groups:
        for variable in group:
            if id(variable) not in seen:
                seen.add(id(variable))
                result.append(variable)
    return result


def _read(variable: Any) -> np.ndarray:
    # In cross-replica context: a metric's (sync-on-read) variable reads as the sum over replicas.
    return np.asarray(tf.convert_to_tensor(variable))


def _describe(variable: Any) -> str:
    return str(getattr(variable, "path", None) or getattr(variable, "name", "?"))


# --- files -------------------------------------------------------------------------------------------------


def _checkpoints(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if p.is_dir() and p.name.startswith(PREFIX)]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX) :]) if p.name[len(PREFIX) :].isdigit() else -1)


def _write_file(path: Path, write: Any) -> None:
    with open(path, "wb") as handle:
        write(handle)
        handle.flush()
        os.fsync(handle.fileno())


def _write(directory: Path, arrays: list[np.ndarray], state: dict[str, Any]) -> Path:
    """Write one checkpoint atomically (temporary directory, then rename); prune old ones."""
    directory.mkdir(parents=True, exist_ok=True)
    existing = _checkpoints(directory)
    sequence = int(existing[-1].name[len(PREFIX) :]) + 1 if existing else 0
    tmp = directory / f".tmp-{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        _write_file(tmp / ARRAYS_FILE, lambda h: np.savez(h, *arrays))
        _write_file(tmp / STATE_FILE, lambda h: h.write(json.dumps(state, indent=1).encode()))
        final = directory / f"{PREFIX}{sequence:08d}"
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in _checkpoints(directory)[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    for stale in directory.glob(".tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    return final


# --- restoring ---------------------------------------------------------------------------------------------


@dataclass
class Restored:
    """What a checkpoint held besides the variables (already assigned)."""

    step: int
    finished: bool
    history: dict[str, list[float]]
    metric_values: list[np.ndarray] = field(default_factory=list)
    seconds: float = 0.0
    path: Path | None = None


def _load(path: Path, variables: list[Any], fingerprint: str) -> tuple[dict[str, Any], list[np.ndarray]]:
    state = json.loads((path / STATE_FILE).read_text())
    if state.get("format") != FORMAT:
        raise CheckpointMismatch(f"{path} has checkpoint format {state.get('format')!r}, expected {FORMAT}")
    if state["fingerprint"] != fingerprint:
        raise CheckpointMismatch(
            f"the checkpoint in {path.parent} was written by a different recipe (data, tasks, architecture, "
            "balancer, training or seed changed); run without --resume to start over"
        )
    with np.load(path / ARRAYS_FILE) as npz:
        arrays = [npz[f"arr_{i}"] for i in range(len(npz.files))]
    if len(arrays) != len(variables):
        raise CheckpointMismatch(
            f"{path} holds {len(arrays)} variables; the model has {len(variables)}: it was written for a "
            "different model"
        )
    for variable, array in zip(variables, arrays, strict=True):
        if tuple(array.shape) != tuple(variable.shape):
            raise CheckpointMismatch(
                f"{path}: variable {_describe(variable)} has shape {tuple(variable.shape)}, the checkpoint "
                f"{tuple(array.shape)}"
            )
    return state, arrays


def restore(directory: str | os.PathLike[str], model: keras.Model, *, fingerprint: str) -> Restored | None:
    """Assign the newest readable checkpoint in ``directory`` to ``model``; None when there is none.

    Call it inside the strategy's scope (it builds the optimizer's variables when they do not exist yet).
    A checkpoint of another recipe or model raises :class:`CheckpointMismatch`.
    """
    candidates = _checkpoints(Path(directory))
    if not candidates:
        return None
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and not optimizer.built:
        optimizer.build(model.trainable_variables)
    variables = training_variables(model)
    for path in reversed(candidates):
        try:
            state, arrays = _load(path, variables, fingerprint)
        except CheckpointMismatch:
            raise
        except (OSError, ValueError, KeyError, EOFError) as error:
            logger.warning("Cannot read checkpoint %s (%s); trying an older one.", path, error)
            continue
        for variable, array in zip(variables, arrays, strict=True):
            variable.assign(array)
        metrics = {id(v) for v in _metric_variables(model)}
        metric_values = [a for v, a in zip(variables, arrays, strict=True) if id(v) in metrics]
        return Restored(
            step=int(state["step"]),
            finished=bool(state["finished"]),
            history={k: [float(x) for x in v] for k, v in state["history"].items()},
            metric_values=metric_values,
            seconds=float(state.get("seconds", 0.0)),
            path=path,
        )
    raise CheckpointMismatch(f"no readable checkpoint in {directory}; run without --resume to start over")


# --- the callback ------------------------------------------------------------------------------------------


class TrainingCheckpoint(keras.callbacks.Callback):
    """Save the training state every ``every`` steps and at each epoch end; keep the epoch logs.

    The training loops (``fit`` and the multi-worker loop) call it like any Keras callback; it counts the
    global step itself, so a run that starts mid-epoch (``restored``) keeps counting where it stopped.

    Args:
        directory: where checkpoints are written (by the chief) and read.
        steps_per_epoch: steps of a full epoch.
        fingerprint: the recipe's fingerprint, checked when restoring.
        every: steps between checkpoints (None: epoch ends only).
        chief: whether this process writes into ``directory`` (the others write into a temporary one).
        restored: the state this run starts from.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        steps_per_epoch: int,
        fingerprint: str,
        every: int | None = None,
        chief: bool = True,
        restored: Restored | None = None,
    ) -> None:
        super().__init__()
        if every is not None and every < 1:
            raise ValueError(f"Expected `every` to be a positive integer or None. Received: every={every!r}")
        self.directory = Path(directory)
        self.steps_per_epoch = steps_per_epoch
        self.fingerprint = fingerprint
        self.every = every
        self.chief = chief
        self.step = restored.step if restored else 0
        self.history: dict[str, list[float]] = dict(restored.history) if restored else {}
        self._pending_metrics = (
            restored.metric_values if restored and restored.step % steps_per_epoch else None
        )
        self._seconds_before = restored.seconds if restored else 0.0
        self._started = time.perf_counter()

    @property
    def seconds(self) -> float:
        """Training time so far, the runs before a resume included."""
        return self._seconds_before + time.perf_counter() - self._started

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._started = time.perf_counter()

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self._pending_metrics is not None:
            # The loop reset the metrics at the start of this (resumed) epoch: put back the running
            # means of the steps done before the interruption, so the epoch's logs cover all of it.
            for variable, value in zip(_metric_variables(self.model), self._pending_metrics, strict=True):
                variable.assign(value)
            self._pending_metrics = None

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.step += 1
        at_epoch_end = self.step % self.steps_per_epoch == 0  # on_epoch_end saves then
        if self.every is not None and self.step % self.every == 0 and not at_epoch_end:
            self.save()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.step = (epoch + 1) * self.steps_per_epoch
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        self.save()

    def save(self, *, finished: bool = False) -> None:
        """Write the current state (every worker calls this; only the chief keeps it)."""
        arrays = [_read(v) for v in training_variables(self.model)]
        state = {
            "format": FORMAT,
            "step": self.step,
            "finished": finished,
            "history": self.history,
            "fingerprint": self.fingerprint,
            "seconds": self.seconds,
        }
        if self.chief:
            _write(self.directory, arrays, state)
            return
        scratch = Path(tempfile.mkdtemp(prefix="mtl-keras-worker-"))
        try:
            _write(scratch, arrays, state)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


__all__ = ["CheckpointMismatch", "Restored", "TrainingCheckpoint", "restore", "training_variables"]
