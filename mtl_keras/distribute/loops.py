"""The training and evaluation loops, chosen by the strategy's type.

``model.fit``/``model.evaluate`` for one device and ``MirroredStrategy``; the loop of
:mod:`mtl_keras.distribute.multi_worker` for ``MultiWorkerMirroredStrategy``, where ``fit`` fails with
Keras 3 (keras-team/keras#20585, #20329). Both train a :class:`TrainingRun` — a model, the data stream
from any global step, epochs, validation data and callbacks — and both can start in the middle of an
epoch, which is how a checkpointed run resumes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import keras
import tensorflow as tf

from mtl_keras.model import MultiTaskModel, WeightingEpochHook


@dataclass
class TrainingRun:
    """What to train and how.

    Args:
        model: a compiled model (built under the strategy's scope).
        stream: ``start_step -> dataset`` of the batches from that global step on (see
            :func:`mtl_keras.distribute.stream.training_stream`).
        steps_per_epoch: steps of a full epoch.
        epochs: epochs in all (counting those done before ``start_step``).
        validation: validation batches, evaluated at each epoch end (None: none).
        callbacks: Keras callbacks (History and the balancer's epoch hook are added).
        start_step: the global step to start from (a restored checkpoint's).
        verbose: Keras's ``verbose`` (0 silent, 1 progress bar, 2 one line per epoch).
    """

    model: MultiTaskModel
    stream: Callable[[int], tf.data.Dataset]
    steps_per_epoch: int
    epochs: int
    validation: tf.data.Dataset | None = None
    callbacks: list[keras.callbacks.Callback] = field(default_factory=list)
    start_step: int = 0
    verbose: int = 0

    def phases(self) -> list[tuple[int, int, int]]:
        """``(first epoch, end epoch, steps per epoch)``: a partial first epoch, then whole epochs."""
        epoch, done = divmod(self.start_step, self.steps_per_epoch)
        result = []
        if done and epoch < self.epochs:
            result.append((epoch, epoch + 1, self.steps_per_epoch - done))
            epoch += 1
        if epoch < self.epochs:
            result.append((epoch, self.epochs, self.steps_per_epoch))
        return result


class RunCallbacks(keras.callbacks.CallbackList):
    """A ``CallbackList`` for one training run made of several ``fit`` calls: ``on_train_begin`` runs at
    the first, ``on_train_end`` only through :meth:`finish` (an early stopper restoring its best weights at
    the end of a partial first epoch would change the run)."""

    def __init__(self, run: TrainingRun, *, progbar: bool = True) -> None:
        super().__init__(
            # The balancer's epoch hook first: an epoch-end checkpoint then holds next epoch's weights.
            [WeightingEpochHook(), *run.callbacks],
            add_history=True,
            add_progbar=progbar and run.verbose != 0,
            model=run.model,
            verbose=run.verbose,
            epochs=run.epochs,
            steps=run.steps_per_epoch,
        )
        self._begun = False

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        if not self._begun:
            self._begun = True
            super().on_train_begin(logs)

    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
        """Deferred: see :meth:`finish`."""

    def finish(self, logs: Mapping[str, Any] | None = None) -> None:
        if self._begun:
            super().on_train_end(logs)

    def steps(self, steps: int) -> None:
        self.set_params({**self.params, "steps": steps})


def replay_epoch_hooks(model: MultiTaskModel, history: Mapping[str, list[float]]) -> None:
    """Hand the recorded epoch logs to the balancer's epoch hook again (DWA's loss history, …), as a
    resumed run starts without them."""
    epochs = len(next(iter(history.values()), []))
    hook = WeightingEpochHook()
    hook.set_model(model)
    for epoch in range(epochs):
        hook.on_epoch_end(epoch, {k: v[epoch] for k, v in history.items() if len(v) > epoch})


def keras_fit(run: TrainingRun) -> None:
    """``model.fit`` over the run's stream, in two calls when it starts mid-epoch."""
    model = run.model
    callbacks = RunCallbacks(run)
    logs: dict[str, Any] | None = None
    step = run.start_step
    for first, end, steps in run.phases():
        callbacks.steps(steps)
        # keras.Model.fit: MultiTaskModel.fit would add another epoch hook (RunCallbacks has one).
        history = keras.Model.fit(
            model,
            run.stream(step),
            validation_data=run.validation,
            epochs=end,
            initial_epoch=first,
            steps_per_epoch=steps,
            callbacks=callbacks,
            shuffle=False,  # the stream is in its order already
            verbose=run.verbose,
        )
        if history.epoch:
            logs = {k: v[-1] for k, v in history.history.items()}
        step = end * run.steps_per_epoch
        if model.stop_training:
            break
    callbacks.finish(logs)


def keras_evaluate(model: MultiTaskModel, dataset: tf.data.Dataset) -> dict[str, float]:
    results = model.evaluate(dataset, verbose=0, return_dict=True)
    return {k: float(v) for k, v in results.items()}


@dataclass(frozen=True)
class Loop:
    fit: Callable[[TrainingRun], None]
    evaluate: Callable[[MultiTaskModel, tf.data.Dataset], dict[str, float]]


KERAS_LOOP = Loop(keras_fit, keras_evaluate)


def _multi_worker_loop() -> Loop:
    from mtl_keras.distribute import multi_worker

    return Loop(multi_worker.fit, multi_worker.evaluate)


#: Strategy type → its loop; strategies not listed use ``fit``/``evaluate``.
LOOPS: dict[type, Callable[[], Loop]] = {
    tf.distribute.MultiWorkerMirroredStrategy: _multi_worker_loop,
}


def loop_for(strategy: tf.distribute.Strategy) -> Loop:
    """The training/evaluation loop for ``strategy``."""
    for kind, make in LOOPS.items():
        if isinstance(strategy, kind):
            return make()
    return KERAS_LOOP


__all__ = [
    "KERAS_LOOP",
    "LOOPS",
    "Loop",
    "RunCallbacks",
    "TrainingRun",
    "keras_evaluate",
    "keras_fit",
    "loop_for",
    "replay_epoch_hooks",
]
