"""`Relabelled`: a data set seen with another list of tasks — tasks it lacks get missing (NaN) labels in every
batch, and ``masked`` tasks lose theirs. Adding a task to a trained model trains on the new task's labels
only (the old tasks' labels masked) and evaluates the old tasks on data without the new task's labels.

Examples, splits and the stream's order are the data set's own; the rest is delegated to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from mtl_keras.tasks import Task


class Relabelled:
    """``dataset`` with labels for exactly ``tasks`` (missing for the tasks it lacks and for ``masked``)."""

    def __init__(self, dataset: Any, tasks: Sequence[Task], masked: Sequence[str] = ()) -> None:
        self._dataset = dataset
        self.tasks = list(tasks)
        self.task_names = [t.name for t in self.tasks]
        own = {t.name for t in dataset.tasks}
        self._missing = [t for t in self.tasks if t.name not in own or t.name in set(masked)]
        self.name = dataset.name

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._dataset, attribute)

    def _labels(self, x: Any, y: Any) -> dict[str, Any]:
        y = dict(y) if isinstance(y, dict) else {self._dataset.tasks[0].name: y}
        size = tf.shape(tf.nest.flatten(x)[0])[0]
        for task in self._missing:
            shape = (
                [size] if task.kind == "multiclass" or task.output_units == 1 else [size, task.output_units]
            )
            y[task.name] = tf.fill(shape, float("nan"))
        return {name: y[name] for name in self.task_names}

    def _mapped(self, dataset: tf.data.Dataset) -> tf.data.Dataset:
        def relabel(x: Any, y: Any, *rest: Any) -> Any:
            rest = tuple(
                {k: v for k, v in r.items() if k in self.task_names} if isinstance(r, dict) else r
                for r in rest
            )
            return (x, self._labels(x, y), *rest)

        return dataset.map(relabel, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    def batches(self, split: str, batch_size: int) -> tf.data.Dataset:
        return self._mapped(self._dataset.batches(split, batch_size))

    def training_stream(self, spec: Any, *, epochs: int, start_step: int = 0) -> tf.data.Dataset:
        stream = self._dataset.training_stream(spec, epochs=epochs, start_step=start_step)
        return self._mapped(stream).prefetch(tf.data.AUTOTUNE)

    def label_arrays(self, split: str) -> dict[str, np.ndarray]:
        arrays = dict(self._dataset.label_arrays(split))
        size = len(next(iter(arrays.values())))
        for task in self._missing:
            arrays[task.name] = np.full(size, np.nan, dtype=np.float32)
        return {name: arrays[name] for name in self.task_names}


__all__ = ["Relabelled"]
