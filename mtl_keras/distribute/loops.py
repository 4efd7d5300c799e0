"""The training and evaluation loops, chosen by the strategy's type.

``model.fit``/``model.evaluate`` for one device and ``MirroredStrategy``; the loop of
:mod:`mtl_keras.distribute.multi_worker` for ``MultiWorkerMirroredStrategy``, where ``fit`` fails with
Keras 3 (keras-team/keras#20585, #20329). Both train a :class:`TrainingRun` — a model, the data stream
from any global step, epochs, validation data and callbacks — and both can start in the middle of an
epoch, which is how a checkpointed run resumes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import keras
import tensorflow as tf

from mtl_keras.distribute import multi_worker
from mtl_keras.distribute.run import RunCallbacks, TrainingRun
from mtl_keras.model import MultiTaskModel, WeightingEpochHook


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


#: Strategy type → its loop; strategies not listed use ``fit``/``evaluate``.
LOOPS: dict[type, Loop] = {
    tf.distribute.MultiWorkerMirroredStrategy: Loop(multi_worker.fit, multi_worker.evaluate),
}


def loop_for(strategy: tf.distribute.Strategy) -> Loop:
    """The training/evaluation loop for ``strategy``."""
    for kind, loop in LOOPS.items():
        if isinstance(strategy, kind):
            return loop
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
