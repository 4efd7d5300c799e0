"""`TaskSubset`: a data set seen through some of its tasks only (the pairs of a pairwise-affinity run).

Every split, the training stream and the labels keep the same examples in the same order; only the label
(and per-task sample weight) dicts lose the other tasks. The training budget (steps per epoch, batch size)
is therefore that of the whole data set. For a data set that samples its batches per task (a per-task
mixture), the batches drawn for the left-out tasks stay in the stream with no label for the kept tasks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from mtl_keras._registry import suggest


class TaskSubset:
    """``dataset`` restricted to ``task_names`` (kept in the data set's order); the rest is delegated."""

    def __init__(self, dataset: Any, task_names: Sequence[str]) -> None:
        names = [t.name for t in dataset.tasks]
        for name in task_names:
            if name not in names:
                raise ValueError(
                    f"Unknown task {name!r}. Expected one of the data set's tasks {names}."
                    + suggest(name, names)
                )
        if not task_names:
            raise ValueError("Expected at least one task name. Received none.")
        self._dataset = dataset
        self.tasks = [t for t in dataset.tasks if t.name in set(task_names)]
        self.task_names = [t.name for t in self.tasks]
        self.name = f"{dataset.name}[{','.join(self.task_names)}]"

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._dataset, attribute)

    def _keep(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: v for k, v in value.items() if k in self.task_names}
        return value

    def _filtered(self, dataset: tf.data.Dataset) -> tf.data.Dataset:
        def keep(x: Any, y: Any, *rest: Any) -> Any:
            return (x, self._keep(y), *(self._keep(r) for r in rest))

        return dataset.map(keep, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    def batches(self, split: str, batch_size: int) -> tf.data.Dataset:
        return self._filtered(self._dataset.batches(split, batch_size))

    def training_stream(self, spec: Any, *, epochs: int, start_step: int = 0) -> tf.data.Dataset:
        stream = self._dataset.training_stream(spec, epochs=epochs, start_step=start_step)
        return self._filtered(stream).prefetch(tf.data.AUTOTUNE)

    def label_arrays(self, split: str) -> dict[str, np.ndarray]:
        return self._keep(dict(self._dataset.label_arrays(split)))

    def __repr__(self) -> str:
        return f"TaskSubset({self._dataset!r}, tasks={self.task_names})"


__all__ = ["TaskSubset"]
