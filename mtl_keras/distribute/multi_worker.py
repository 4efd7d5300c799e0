"""Training and evaluation loops for ``MultiWorkerMirroredStrategy``.

``model.fit`` and ``model.evaluate`` fail under ``MultiWorkerMirroredStrategy`` with Keras 3.15:
``Trainer._maybe_symbolic_build`` reduces the first distributed batch with ``strategy.reduce``, which raises
``ValueError: Attempt to convert a value (PerReplica:{...}) with an unsupported type`` (keras-team/keras
#20585, #20329). These loops do what ``fit`` does with the pieces that work:

* the run's stream goes through ``strategy.experimental_distribute_dataset``: every worker builds the same
  global batches and keeps its consecutive slice of each (``AutoShardPolicy.DATA``);
* one ``tf.function`` per step: ``strategy.run(model.train_step, ...)`` (the model's train step already
  all-reduces what must be global: loss denominators, per-task gradients);
* at each epoch end the metrics are read in cross-replica context (an all-reduce across workers, so
  every worker gets the same logs and the same early-stopping decision), the validation data is evaluated
  the same way, and the callbacks get ``on_epoch_end``;
* callbacks: History, the balancer's epoch hook, the checkpoint callback
  (:class:`~mtl_keras.distribute.checkpoint.TrainingCheckpoint`) and the early stoppers. A progress line
  per epoch is printed by the chief only. Per-batch logs are empty (reading metrics every step would
  cost a collective per metric).

A worker that dies makes the others' collectives fail (the coordination service misses its heartbeats, or
the connection resets); the error is raised as :class:`WorkerLost`, with what to do next.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from typing import Any

import tensorflow as tf

from mtl_keras.distribute.run import RunCallbacks, TrainingRun
from mtl_keras.distribute.strategy import in_scope, worker_role
from mtl_keras.model import MultiTaskModel

logger = logging.getLogger("mtl_keras")

#: Errors a collective raises when a peer is gone or a collective timed out.
PEER_ERRORS: tuple[type[Exception], ...] = (
    tf.errors.UnavailableError,
    tf.errors.DeadlineExceededError,
    tf.errors.AbortedError,
    tf.errors.CancelledError,
)


class WorkerLost(RuntimeError):
    """A worker of the cluster died or became unreachable; training cannot go on."""


_FUNCTIONS: weakref.WeakKeyDictionary[Any, dict[str, Callable[..., Any]]] = weakref.WeakKeyDictionary()


def _functions(model: MultiTaskModel) -> dict[str, Callable[..., Any]]:
    """The model's distributed train and test step functions (traced once per model)."""
    cached = _FUNCTIONS.get(model)
    if cached is None:
        strategy = model.distribute_strategy

        @tf.function
        def train_function(iterator: Any) -> None:
            strategy.run(model.train_step, args=(next(iterator),))

        @tf.function
        def test_function(iterator: Any) -> None:
            strategy.run(model.test_step, args=(next(iterator),))

        cached = {"train": train_function, "test": test_function}
        _FUNCTIONS[model] = cached
    return cached


def forget_functions(model: MultiTaskModel) -> None:
    """Drop the model's traced step functions (the next step traces again: after (un)freezing layers)."""
    _FUNCTIONS.pop(model, None)


def _results(model: MultiTaskModel) -> dict[str, float]:
    # Cross-replica reads of the metrics' variables: an all-reduce over every replica of every worker.
    return {k: float(v) for k, v in model.get_metrics_result().items()}


#: Where TensorFlow's message says what happened to the peer.
_CAUSES = ("aborted by", "unhealthy", "Connection reset", "Socket closed", "timed out", "Deadline")


def _cause(error: Exception) -> str:
    lines = [line.strip() for line in str(getattr(error, "message", error)).splitlines() if line.strip()]
    for i, line in enumerate(lines):
        if any(marker in line for marker in _CAUSES):
            return f"{line} {lines[i + 1]}" if line.endswith(":") and i + 1 < len(lines) else line
    return lines[-1] if lines else type(error).__name__


def _lost(error: Exception) -> WorkerLost:
    return WorkerLost(
        f"A worker of the cluster died or became unreachable ({type(error).__name__}: {_cause(error)}). "
        "Training stopped. Restart every worker with the same command plus --resume to continue from the "
        "last checkpoint."
    )


def _evaluate(model: MultiTaskModel, dataset: tf.data.Dataset) -> dict[str, float]:
    steps = int(dataset.cardinality())
    if steps < 0:
        raise ValueError(
            "Expected an evaluation dataset of known, finite length (e.g. from_tensor_slices(...).batch(n)). "
            f"Received a dataset of cardinality {steps}."
        )
    strategy = model.distribute_strategy
    test = _functions(model)["test"]
    model.reset_metrics()
    iterator = iter(strategy.experimental_distribute_dataset(dataset))
    for _ in range(steps):
        test(iterator)
    return _results(model)


def evaluate(model: MultiTaskModel, dataset: tf.data.Dataset) -> dict[str, float]:
    """``model.evaluate(dataset, return_dict=True)`` under ``MultiWorkerMirroredStrategy``."""
    try:
        return _evaluate(model, dataset)
    except PEER_ERRORS as error:
        raise _lost(error) from error


def _fit(run: TrainingRun) -> None:
    model = run.model
    strategy = model.distribute_strategy
    if not model.optimizer.built:
        in_scope(strategy, lambda: model.optimizer.build(model.trainable_variables))
    chief = worker_role(strategy).chief
    callbacks = RunCallbacks(run, progbar=chief)
    train = _functions(model)["train"]
    model.stop_training = False
    callbacks.on_train_begin()
    logs: dict[str, float] | None = None
    step = run.start_step
    for first, end, steps in run.phases():
        callbacks.steps(steps)
        iterator = iter(strategy.experimental_distribute_dataset(run.stream(step)))
        for epoch in range(first, end):
            model.reset_metrics()
            callbacks.on_epoch_begin(epoch)
            for batch in range(steps):
                callbacks.on_train_batch_begin(batch)
                train(iterator)
                callbacks.on_train_batch_end(batch, {})
                if model.stop_training:
                    break
            logs = _results(model)
            if run.validation is not None:
                logs.update({f"val_{k}": v for k, v in _evaluate(model, run.validation).items()})
            callbacks.on_epoch_end(epoch, logs)
            if model.stop_training:
                break
        step = end * run.steps_per_epoch
        if model.stop_training:
            break
    callbacks.finish(logs)


def fit(run: TrainingRun) -> None:
    """Train ``run`` under ``MultiWorkerMirroredStrategy``, as :func:`~mtl_keras.distribute.loops.keras_fit`
    does with ``model.fit``; every worker calls it with the same run."""
    try:
        _fit(run)
    except PEER_ERRORS as error:
        raise _lost(error) from error


__all__ = ["PEER_ERRORS", "WorkerLost", "evaluate", "fit", "forget_functions"]
