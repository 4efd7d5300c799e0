"""Temperature sampling of tasks whose examples come from different data sets of unequal sizes.

Task ``i`` with data set ``D_i`` is drawn with probability ``p_i ∝ |D_i|^{1/T}``: ``T = 1`` samples in
proportion to the data set sizes, ``T → ∞`` uniformly over tasks; T in 2–5 is the usual compromise when
sizes differ by orders of magnitude (Arivazhagan et al. 2019, "Massively Multilingual Neural Machine
Translation in the Wild").
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from mtl_keras.data.base import Inputs, Split, _check_positive_int, _check_seed

#: How `TemperatureSampler` fills a batch.
MODES = ("example", "batch")


def _check_temperature(temperature: Any) -> float:
    ok = isinstance(temperature, numbers.Real) and not isinstance(temperature, bool)
    if ok and float(temperature) > 0.0 and not math.isnan(float(temperature)):
        return float(temperature)
    raise ValueError(
        "Expected `temperature` to be a positive number (math.inf for uniform). "
        f"Received: temperature={temperature!r}"
    )


def temperature_probabilities(sizes: Sequence[int] | np.ndarray, temperature: float) -> np.ndarray:
    """``p_i = |D_i|^{1/T} / Σ_j |D_j|^{1/T}``.

    Args:
        sizes: positive data set sizes ``|D_i|``.
        temperature: T > 0; 1 gives proportional sampling, ``math.inf`` uniform sampling.

    Returns:
        float64 probabilities, one per size, summing to 1.
    """
    temperature = _check_temperature(temperature)
    array = np.asarray(sizes, dtype=np.float64)
    if array.ndim != 1 or array.size == 0 or not np.all(np.isfinite(array)) or np.any(array <= 0):
        raise ValueError(
            f"Expected `sizes` to be a non-empty list of positive numbers. Received: sizes={sizes!r}"
        )
    logits = np.log(array) / temperature  # log space: no overflow for large sizes and small T
    weights = np.exp(logits - logits.max())
    return weights / weights.sum()


class TemperatureSampler:
    """Batches mixed from per-task data sets, tasks drawn with ``p_i ∝ |D_i|^{1/T}``.

    Each task has its own `Split` whose ``y`` holds that task's labels under the task's name (other label
    keys are ignored). All splits must have the same input structure (the same feature names, or arrays with
    the same trailing shape). A batch's ``y`` has every task: the rows that came from another task's data
    set are NaN, which the model treats as missing labels.

    Within a task, examples are visited in a fresh random order on each pass through its data set (no
    repeats until the data set is exhausted).

    Example::

        sampler = TemperatureSampler({"a": split_a, "b": split_b}, temperature=2.0, batch_size=64, seed=0)
        model.fit(sampler.batches(), steps_per_epoch=100, epochs=5)

    Args:
        splits: ``{task name: Split}``, in the task order of `task_names`.
        temperature: T > 0 (``math.inf`` for uniform).
        batch_size: examples per batch.
        mode: ``"example"``: each example's task is drawn independently (mixed batches);
            ``"batch"``: one task is drawn per batch and the whole batch comes from it.
        seed: seeds the task draws and the per-task shuffles.
    """

    def __init__(
        self,
        splits: Mapping[str, Split],
        *,
        temperature: float = 1.0,
        batch_size: int = 32,
        mode: str = "example",
        seed: int = 0,
    ) -> None:
        if not isinstance(splits, Mapping) or not splits:
            raise ValueError(
                f"Expected `splits` to be a non-empty dict {{task name: Split}}. Received: {splits!r}"
            )
        for name, split in splits.items():
            if not isinstance(split, Split):
                raise ValueError(f"Expected a Split for task {name!r}. Received: {split!r}")
            if name not in split.y:
                raise ValueError(
                    f"Expected the split of task {name!r} to have labels {name!r}. "
                    f"Received labels {split.task_names}"
                )
        if mode not in MODES:
            raise ValueError(f"Expected `mode` to be one of {list(MODES)}. Received: mode={mode!r}")
        self.splits = dict(splits)
        self.task_names = list(self.splits)
        self.temperature = _check_temperature(temperature)
        self.batch_size = _check_positive_int("batch_size", batch_size)
        self.mode = mode
        self.sizes = np.array([len(s) for s in self.splits.values()], dtype=np.int64)
        self.probabilities = temperature_probabilities(self.sizes, self.temperature)
        self._check_inputs()
        self._rng = np.random.default_rng(_check_seed(seed))
        self._orders = [np.zeros(0, dtype=np.int64) for _ in self.task_names]
        self._positions = [0 for _ in self.task_names]

    def _check_inputs(self) -> None:
        def structure(x: Inputs) -> object:
            if isinstance(x, dict):
                return sorted((k, v.shape[1:]) for k, v in x.items())
            return x.shape[1:]

        structures = {name: structure(split.x) for name, split in self.splits.items()}
        if len({repr(s) for s in structures.values()}) > 1:
            raise ValueError(
                f"Expected every task's inputs to have the same structure. Received: {structures}"
            )

    def sample_tasks(self, num: int) -> np.ndarray:
        """``num`` task indices (into `task_names`) drawn i.i.d. from `probabilities`."""
        num = _check_positive_int("num", num)
        return self._rng.choice(len(self.task_names), size=num, p=self.probabilities)

    def _next_indices(self, task: int, count: int) -> np.ndarray:
        chunks = []
        while count > 0:
            if self._positions[task] >= self._orders[task].size:
                self._orders[task] = self._rng.permutation(int(self.sizes[task]))
                self._positions[task] = 0
            start = self._positions[task]
            chunk = self._orders[task][start : start + count]
            self._positions[task] += chunk.size
            count -= chunk.size
            chunks.append(chunk)
        return np.concatenate(chunks)

    def next_batch(self) -> tuple[Inputs, dict[str, np.ndarray]]:
        """One batch ``(x, y)``; ``y`` has every task, NaN where an example is not from its data set."""
        if self.mode == "batch":
            tasks = np.full(self.batch_size, self.sample_tasks(1)[0])
        else:
            tasks = np.sort(self.sample_tasks(self.batch_size))
        # `tasks` is sorted, so the concatenated parts line up with it row by row
        parts = {
            int(task): self.splits[self.task_names[task]].take(self._next_indices(int(task), int(count)))
            for task, count in zip(*np.unique(tasks, return_counts=True), strict=True)
        }
        order = self._rng.permutation(self.batch_size)
        first = next(iter(parts.values())).x
        if isinstance(first, dict):
            x: Inputs = {
                key: np.concatenate([p.x[key] for p in parts.values()])[order]  # type: ignore[index]
                for key in first
            }
        else:
            x = np.concatenate([p.x for p in parts.values()])[order]
        y = {}
        for task, name in enumerate(self.task_names):
            labels = self.splits[name].y[name]
            column = np.full((self.batch_size, *labels.shape[1:]), np.nan, dtype=np.float32)
            if task in parts:
                column[tasks == task] = parts[task].y[name]
            y[name] = column[order]
        return x, y

    def batches(self, num_batches: int | None = None) -> Iterator[tuple[Inputs, dict[str, np.ndarray]]]:
        """``num_batches`` batches (None: endless, for ``model.fit(..., steps_per_epoch=...)``)."""
        if num_batches is not None:
            num_batches = _check_positive_int("num_batches", num_batches)
        count = 0
        while num_batches is None or count < num_batches:
            yield self.next_batch()
            count += 1

    def __iter__(self) -> Iterator[tuple[Inputs, dict[str, np.ndarray]]]:
        return self.batches()

    def __repr__(self) -> str:
        probabilities = {
            n: round(float(p), 4) for n, p in zip(self.task_names, self.probabilities, strict=True)
        }
        return (
            f"TemperatureSampler(temperature={self.temperature}, batch_size={self.batch_size}, "
            f"mode={self.mode!r}, probabilities={probabilities})"
        )
