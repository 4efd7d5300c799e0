"""One training run: what to train (:class:`TrainingRun`) and the callbacks that span its ``fit`` calls
(:class:`RunCallbacks`). Both loops of :mod:`mtl_keras.distribute.loops` train one."""

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


__all__ = ["RunCallbacks", "TrainingRun"]
