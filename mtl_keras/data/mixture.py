"""Per-task data sets: each task reads its own source (its own rows, size and columns), and training batches are
mixed row by row from those sources by a sampling strategy.

:func:`per_task` builds a :class:`MixedDataset` from ``{task name: StreamedDataset}`` (or, in a recipe,
``{task name: {name: csv, path: ..., tasks: {...}}}``). A source may hold other tasks too; only the named task's
labels are read from it, and every other task's label of its rows is NaN (missing, so masked out of that task's
loss and metrics).

Features: the model's inputs are the union of the sources' feature columns (the same name is the same column,
and its :class:`~mtl_keras.data.columns.ColumnSpec` must be the same in every source that has it). A row from a
source without a column feeds it as missing: NaN for numeric columns (imputed by the model's preprocessing with
the median), ``""`` for categorical / id / list columns, ``-1`` for integer categorical ones. A column's
statistics are merged over the sources that have it (:func:`merge_statistics`: exact counts, moments, extremes
and value counts; the median from a sample that takes each source in proportion to its values), so a category
seen in one source only is in the vocabulary; the rows of the sources without the column count as missing
values (which is what makes the model impute a numeric column for them).

Sampling (the task of each row of a training batch; task ``i``'s training split has ``n_i`` rows):

* ``proportional``: ``p_i ∝ n_i``;
* ``temperature``: ``p_i ∝ n_i^{1/T}`` (:func:`mtl_keras.data.sampling.temperature_probabilities`);
* ``round_robin``: the tasks in turn, row by row (row ``r`` of the run is task ``r mod K``);
* ``curriculum``: weights move linearly from ``start`` to ``end`` (``{task: weight}``; a task left out has weight
  0; ``end`` defaults to the proportional weights) over the first ``epochs`` epochs, step by step (step ``s`` of
  ``S`` per epoch uses ``α = min(s / (epochs·S), 1)``), then stay at ``end``.

An epoch has ``num_examples("train") = Σ n_i`` rows, in ``ceil(Σ n_i / batch_size)`` full batches (every batch
is full, also the last of an epoch, so the epoch may hold up to ``batch_size - 1`` rows more). Each task's rows
come in passes over its source; pass ``p`` of task ``i`` is its training rows in the source's block-shuffled order
seeded by ``(seed of task i, p)`` (:func:`mtl_keras.data.streamed.block_shuffle`). The task of each row of step
``s`` is drawn by a stateless categorical draw seeded by ``(recipe seed, s)``, so the stream is a function of the
seed and the step alone: restarted at step ``k`` it counts how many rows of each task steps ``0 … k-1`` took,
skips them in each task's stream, and gives exactly the batches of an uninterrupted run.

Validation and test batches are each task's own validation / test split, one source after the other (each
labelled for its own task only). Two tasks given the same source object see its rows twice in evaluation, each
time labelled for one of them.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np
import tensorflow as tf

from mtl_keras.data.columns import ColumnSpec
from mtl_keras.data.labels import label_parser
from mtl_keras.data.sampling import temperature_probabilities
from mtl_keras.data.splitting import SPLIT_NAMES
from mtl_keras.data.statistics import SAMPLE_SIZE, TOP_MAX, ColumnStats
from mtl_keras.data.streamed import (
    INTEGER_KINDS,
    TEXT_KINDS,
    StreamedDataset,
    block_shuffle,
    collect_labels,
    convert_feature,
    text_to_float,
)
from mtl_keras.tasks import Task

#: The sampling strategies of :func:`per_task`.
SAMPLINGS = ("proportional", "temperature", "round_robin", "curriculum")

#: Rows converted together in a task's row stream (conversion is vectorised; the rows are the same for any size).
_CHUNK = 256


def _merge_counts(counts: list[dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for one in counts:
        for key, value in one.items():
            total[key] = total.get(key, 0) + int(value)
    ordered = sorted(total.items(), key=lambda kv: (-kv[1], kv[0]))
    return dict(ordered[:TOP_MAX])


def merge_statistics(name: str, parts: list[ColumnStats], seed: int = 0, absent: int = 0) -> ColumnStats:
    """One column's statistics over several sources.

    ``absent`` rows (of sources without the column) are counted as missing values, so the model's
    preprocessing imputes the column for them.

    Exact: ``count``, ``missing``, mean and (population) variance (pooled), minimum, maximum, the value counts
    ``top`` and ``tokens`` (summed, then the :data:`~mtl_keras.data.statistics.TOP_MAX` most frequent kept),
    ``numeric`` / ``integral`` (all parts). ``sample`` takes from each part a share of
    :data:`~mtl_keras.data.statistics.SAMPLE_SIZE` proportional to its numeric values (seeded), and ``median``
    is that sample's. ``distinct`` is exact when every part's value counts were complete, a lower bound
    (the largest part's) otherwise.
    """
    if len(parts) == 1:
        one = dataclasses.replace(parts[0])
        one.count, one.missing = one.count + absent, one.missing + absent
        return one
    merged = ColumnStats(name, separator=parts[0].separator)
    merged.count = sum(p.count for p in parts) + absent
    merged.missing = sum(p.missing for p in parts) + absent
    merged.numeric = all(p.numeric for p in parts)
    merged.integral = all(p.integral for p in parts)
    with_values = [p for p in parts if p.mean is not None and p.present > 0]
    if with_values:
        weights = np.array([p.present for p in with_values], np.float64)
        means = np.array([p.mean for p in with_values], np.float64)
        variances = np.array([p.variance or 0.0 for p in with_values], np.float64)
        mean = float(np.sum(weights * means) / weights.sum())
        merged.mean = mean
        merged.variance = float(np.sum(weights * (variances + (means - mean) ** 2)) / weights.sum())
        merged.minimum = min(float(p.minimum) for p in with_values if p.minimum is not None)
        merged.maximum = max(float(p.maximum) for p in with_values if p.maximum is not None)
    rng = np.random.default_rng(seed)
    present = np.array([max(p.present, 0) for p in parts], np.float64)
    samples = []
    for part, share in zip(parts, present / max(present.sum(), 1.0), strict=True):
        take = min(len(part.sample), round(share * SAMPLE_SIZE))
        if take:
            samples.append(rng.choice(np.asarray(part.sample), size=take, replace=False))
    merged.sample = np.concatenate(samples) if samples else np.zeros(0)
    merged.median = float(np.median(merged.sample)) if len(merged.sample) else None
    merged.top = _merge_counts([p.top for p in parts])
    merged.top_exact = all(p.top_exact for p in parts)
    complete = all(p.top_exact and not p.distinct_capped and p.distinct == len(p.top) for p in parts)
    union = {key for p in parts for key in p.top}
    merged.distinct = len(union) if complete else max(p.distinct for p in parts)
    merged.distinct_capped = any(p.distinct_capped for p in parts)
    merged.first_text = next((p.first_text for p in parts if p.first_text is not None), None)
    merged.list_fraction = float(np.sum(present * [p.list_fraction for p in parts]) / max(present.sum(), 1.0))
    merged.tokens = _merge_counts([p.tokens for p in parts])
    return merged


def _missing_feature(kind: str, size: tf.Tensor) -> tf.Tensor:
    """A column of ``size`` missing values of ``kind``, shape (size, 1), as :func:`convert_feature` gives it."""
    shape = tf.stack([size, 1])
    if kind in TEXT_KINDS:
        return tf.fill(shape, "")
    if kind in INTEGER_KINDS:
        return tf.fill(shape, tf.constant(-1, tf.int64))
    return tf.fill(shape, tf.constant(np.nan, tf.float32))


def _check_weights(option: str, weights: Any, tasks: list[str]) -> np.ndarray:
    """``{task: weight}`` → weights in task order (tasks left out 0); non-negative, not all 0."""
    if not isinstance(weights, Mapping) or not weights:
        raise ValueError(
            f"Expected `{option}` to be a non-empty mapping {{task: weight}} over tasks {tasks}. "
            f"Received: {option}={weights!r}"
        )
    result = np.zeros(len(tasks), np.float64)
    for task, weight in weights.items():
        if task not in tasks:
            raise ValueError(f"Unknown task {task!r} in `{option}`; expected one of {tasks}.")
        ok = isinstance(weight, numbers.Real) and not isinstance(weight, bool)
        if not ok or not math.isfinite(float(weight)) or float(weight) < 0:
            raise ValueError(f"Expected `{option}.{task}` to be a non-negative number. Received: {weight!r}")
        result[tasks.index(task)] = float(weight)
    if result.sum() <= 0:
        raise ValueError(f"Expected some weight of `{option}` above 0. Received: {option}={dict(weights)!r}")
    return result / result.sum()


def _task_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, index]).generate_state(1)[0])


class MixedDataset:
    """Tasks whose examples come from their own :class:`~mtl_keras.data.StreamedDataset`, mixed by a sampling
    strategy (see the module docstring). Read by training through the same members as ``StreamedDataset``.

    Args:
        sources: ``{task name: source}``; each source has that task.
        sampling: one of :data:`SAMPLINGS`.
        temperature: T of ``temperature`` sampling.
        start, end, epochs: the weights and length of ``curriculum`` sampling.
        seed: added to the recipe's seed for the task draws and the per-task row orders; also seeds the
            sample of merged statistics.
        name: the data set's name.
    """

    name: str
    seed: int
    sources: dict[str, StreamedDataset]
    tasks: list[Task]
    columns: dict[str, ColumnSpec]
    statistics: dict[str, ColumnStats]
    weighted: bool
    description: str
    sampling: str
    temperature: float
    curriculum_epochs: int | None
    start: Mapping[str, float] | None
    end: Mapping[str, float] | None
    _start: np.ndarray | None
    _end: np.ndarray | None
    _probabilities: np.ndarray | None

    def __init__(
        self,
        sources: Mapping[str, StreamedDataset],
        *,
        sampling: str = "proportional",
        temperature: float = 2.0,
        start: Mapping[str, float] | None = None,
        end: Mapping[str, float] | None = None,
        epochs: int | None = None,
        seed: int = 0,
        name: str = "per_task",
    ) -> None:
        if not isinstance(sources, Mapping) or not sources:
            raise ValueError(
                f"Expected `sources` to be a non-empty mapping {{task: data set}}. Received: sources={sources!r}"
            )
        self.name = name
        if not isinstance(seed, numbers.Integral) or isinstance(seed, bool) or int(seed) < 0:
            raise ValueError(f"Expected `seed` to be a non-negative integer. Received: seed={seed!r}")
        self.seed = int(seed)
        self.sources: dict[str, StreamedDataset] = {}
        self.tasks: list[Task] = []
        for task, source in sources.items():
            if not isinstance(source, StreamedDataset):
                raise ValueError(
                    f"Expected the source of task {task!r} to be a StreamedDataset (from_csv, ...). "
                    f"Received: {type(source).__name__}"
                )
            if task not in source.task_names:
                raise ValueError(
                    f"Source {source.name!r} of task {task!r} has no task {task!r}; "
                    f"expected one of {source.task_names}."
                )
            if source.num_examples("train") <= 0:
                raise ValueError(
                    f"Source {source.name!r} of task {task!r} has no training rows; expected >= 1."
                )
            self.sources[str(task)] = source
            self.tasks.append(source.tasks[source.task_names.index(task)])
        self.columns, self.statistics = self._union()
        self.weighted = any(s.weight_column is not None for s in self.sources.values())
        self.description = "per-task sources: " + ", ".join(
            f"{t} <- {s.name}" for t, s in self.sources.items()
        )
        self.sampling, self.temperature, self.curriculum_epochs = sampling, temperature, epochs
        self._start = self._end = self._probabilities = None
        self._check_sampling(sampling, temperature, start, end, epochs)
        self.start, self.end = start, end

    # --- construction ----------------------------------------------------------------------------------

    def _union(self) -> tuple[dict[str, ColumnSpec], dict[str, ColumnStats]]:
        columns: dict[str, ColumnSpec] = {}
        owner: dict[str, str] = {}
        for task, source in self.sources.items():
            for column, spec in source.columns.items():
                if spec.kind == "skip":
                    continue
                if column in columns and columns[column] != spec:
                    first = columns[column]
                    what = (
                        f"kind {first.kind!r} vs {spec.kind!r}"
                        if first.kind != spec.kind
                        else f"{first.model_dump()} vs {spec.model_dump()}"
                    )
                    raise ValueError(
                        f"Column {column!r} differs between source {owner[column]!r} and source {source.name!r} "
                        f"(task {task!r}): {what}; expected the same column spec in every source."
                    )
                if column not in columns:
                    columns[column], owner[column] = spec, source.name
        if not columns:
            raise ValueError("Expected at least one feature column in the sources. Received: none.")
        distinct = _distinct(self.sources.values())
        statistics = {
            column: merge_statistics(
                column,
                [s.statistics[column] for s in distinct if column in s.features],
                self.seed,
                absent=sum(_statistics_rows(s) for s in distinct if column not in s.features),
            )
            for column in columns
        }
        return columns, statistics

    def _check_sampling(
        self,
        sampling: Any,
        temperature: Any,
        start: Any,
        end: Any,
        epochs: Any,
    ) -> None:
        if sampling not in SAMPLINGS:
            raise ValueError(f"Unknown sampling {sampling!r}; expected one of {list(SAMPLINGS)}.")
        if sampling != "curriculum":
            for option, value in (("start", start), ("end", end), ("epochs", epochs)):
                if value is not None:
                    raise ValueError(
                        f"Option `{option}` is for sampling='curriculum' only. Received: sampling={sampling!r}, "
                        f"{option}={value!r}"
                    )
        sizes = [self.sources[t].num_examples("train") for t in self.task_names]
        if sampling == "proportional":
            self._probabilities = temperature_probabilities(sizes, 1.0)
        elif sampling == "temperature":
            self._probabilities = temperature_probabilities(sizes, temperature)
        elif sampling == "curriculum":
            if start is None:
                raise ValueError(
                    "Expected `start` weights {task: weight} for sampling='curriculum'. Received: None"
                )
            ok = isinstance(epochs, numbers.Integral) and not isinstance(epochs, bool) and int(epochs) > 0
            if not ok:
                raise ValueError(
                    f"Expected `epochs` of sampling='curriculum' to be a positive integer. Received: epochs={epochs!r}"
                )
            self._start = _check_weights("start", start, self.task_names)
            self._end = (
                temperature_probabilities(sizes, 1.0)
                if end is None
                else _check_weights("end", end, self.task_names)
            )

    # --- what training reads ---------------------------------------------------------------------------

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    @property
    def features(self) -> dict[str, str]:
        """``{feature: kind}`` of the model's inputs: the union of the sources' feature columns."""
        return {name: spec.kind for name, spec in self.columns.items()}

    def num_examples(self, split: str) -> int:
        """Training: the rows of one epoch (the sum of the sources' training rows); otherwise the sum of each
        task's own split."""
        if split not in SPLIT_NAMES:
            raise ValueError(f"Unknown split {split!r}; expected one of {list(SPLIT_NAMES)}.")
        return sum(s.num_examples(split) for s in self.sources.values())

    def input_spec(self) -> Any:
        """A builder's ``inputs``: raw features with preprocessing built from the merged statistics."""
        from mtl_keras.builders.inputs import RawFeatures

        return RawFeatures(dict(self.columns), statistics=dict(self.statistics))

    def probabilities(self, step: int = 0, steps_per_epoch: int = 1) -> np.ndarray:
        """The task probabilities of a training row at global ``step`` (``round_robin``: uniform on average)."""
        if self.sampling == "round_robin":
            return np.full(len(self.tasks), 1.0 / len(self.tasks))
        if self.sampling == "curriculum":
            assert self._start is not None and self._end is not None and self.curriculum_epochs is not None
            alpha = min(step / (int(self.curriculum_epochs) * steps_per_epoch), 1.0)
            weights = (1.0 - alpha) * self._start + alpha * self._end
            return weights / weights.sum()
        assert self._probabilities is not None
        return self._probabilities

    def converter(self, task: str) -> Any:
        """Raw rows of ``task``'s source → ``(x, y[, sample_weight])`` of the mixture: every union feature (missing
        where the source lacks it), ``task``'s labels, NaN for every other task."""
        source = self.sources[task]
        spec = source.labels[task]
        parse = label_parser(spec, source.label_stats[task])
        own = source.features
        features = self.features
        names = self.task_names
        weighted = self.weighted

        def convert(batch: Mapping[str, tf.Tensor]) -> tuple[Any, ...]:
            size = tf.shape(batch[spec.label_column], out_type=tf.int32)[0]
            x = {
                name: convert_feature(kind, batch[name]) if name in own else _missing_feature(kind, size)
                for name, kind in features.items()
            }
            nan = tf.fill(tf.expand_dims(size, 0), tf.constant(np.nan, tf.float32))
            y = {name: parse(batch[spec.label_column]) if name == task else nan for name in names}
            if not weighted:
                return x, y
            if source.weight_column is None:
                return x, y, tf.ones(tf.expand_dims(size, 0), tf.float32)
            return x, y, text_to_float(batch[source.weight_column])

        return convert

    def batches(self, split: str, batch_size: int) -> tf.data.Dataset:
        """Each task's own ``split``, in task order, batched and converted (evaluation)."""
        parts = [
            (task, source) for task, source in self.sources.items() if source.num_examples(split) > 0
        ] or [next(iter(self.sources.items()))]
        result = None
        for task, source in parts:
            one = (
                source.rows(split)
                .batch(batch_size)
                .map(self.converter(task), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            )
            result = one if result is None else result.concatenate(one)
        assert result is not None
        return result.prefetch(tf.data.AUTOTUNE)

    def _choices(self, spec: Any) -> Any:
        """Global step → the task index of each of its ``batch_size`` rows (int64, stateless)."""
        k, batch = len(self.tasks), int(spec.batch_size)
        seed = tf.constant(int(spec.seed) + self.seed, tf.int64)
        if self.sampling == "round_robin":

            def turns(step: tf.Tensor) -> tf.Tensor:
                return (tf.cast(step, tf.int64) * batch + tf.range(batch, dtype=tf.int64)) % k

            return turns
        if self.sampling == "curriculum":
            start = tf.constant(self._start, tf.float64)
            end = tf.constant(self._end, tf.float64)
            length = float(int(self.curriculum_epochs or 1) * int(spec.steps_per_epoch))

            def logits(step: tf.Tensor) -> tf.Tensor:
                alpha = tf.minimum(tf.cast(step, tf.float64) / length, 1.0)
                return tf.math.log((1.0 - alpha) * start + alpha * end)

        else:
            assert self._probabilities is not None
            fixed = tf.constant(np.log(self._probabilities), tf.float64)

            def logits(step: tf.Tensor) -> tf.Tensor:
                return fixed

        def draw(step: tf.Tensor) -> tf.Tensor:
            step = tf.cast(step, tf.int64)
            return tf.random.stateless_categorical(
                tf.expand_dims(logits(step), 0), batch, seed=tf.stack([seed, step]), dtype=tf.int64
            )[0]

        return draw

    def consumed(self, spec: Any, steps: int) -> np.ndarray:
        """How many rows of each task the global steps ``0 … steps-1`` take."""
        k, rows = len(self.tasks), int(steps) * int(spec.batch_size)
        if self.sampling == "round_robin":
            return np.array([(rows - i + k - 1) // k if rows > i else 0 for i in range(k)], np.int64)
        if steps <= 0:
            return np.zeros(k, np.int64)
        choices = self._choices(spec)
        counts = tf.data.Dataset.range(int(steps)).reduce(
            tf.zeros([k], tf.int64),
            lambda total, step: (
                total + tf.math.bincount(choices(step), minlength=k, maxlength=k, dtype=tf.int64)
            ),
        )
        return counts.numpy()

    def _task_rows(self, index: int, seed: int, skip: int) -> tf.data.Dataset:
        """Task ``index``'s converted rows without end, passes over its source after each other, from row ``skip``."""
        task = self.task_names[index]
        source = self.sources[task]
        rows, n = source.rows("train"), source.num_examples("train")
        buffer, task_seed = source.shuffle_buffer, _task_seed(seed, index)
        first_pass, offset = divmod(int(skip), n)
        return (
            tf.data.Dataset.range(first_pass, np.iinfo(np.int64).max)
            .flat_map(lambda p: block_shuffle(rows, buffer, task_seed, p))
            .skip(offset)
            .batch(_CHUNK)
            .map(self.converter(task), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .unbatch()
        )

    def training_stream(self, spec: Any, *, epochs: int, start_step: int = 0) -> tf.data.Dataset:
        """The full batches of global steps ``start_step … epochs·steps_per_epoch - 1`` (see the module docstring)."""
        total = int(epochs) * int(spec.steps_per_epoch)
        done = self.consumed(spec, start_step)
        streams = [
            self._task_rows(i, int(spec.seed) + self.seed, int(done[i])) for i in range(len(self.tasks))
        ]
        choices = tf.data.Dataset.range(int(start_step), max(total, int(start_step))).map(self._choices(spec))
        rows = tf.data.Dataset.choose_from_datasets(streams, choices.unbatch(), stop_on_empty_dataset=False)
        dataset = rows.batch(int(spec.batch_size), drop_remainder=True)
        options = tf.data.Options()
        options.deterministic = True
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)

    def examples(self, split: str, count: int) -> dict[str, np.ndarray]:
        """The model inputs of the first ``count`` rows of ``split`` (the first tasks' rows first)."""
        parts: dict[str, list[np.ndarray]] = {}
        have = 0
        for batch in self.batches(split, count):
            for key, value in batch[0].items():
                parts.setdefault(key, []).append(value.numpy())
            have += int(next(iter(batch[0].values())).shape[0])
            if have >= count:
                break
        if not have:
            raise ValueError(f"Split {split!r} of data set {self.name!r} has no rows.")
        return {k: np.concatenate(v)[:count] for k, v in parts.items()}

    def label_arrays(self, split: str) -> dict[str, np.ndarray]:
        """Every label of ``split`` (NaN for the rows of other tasks' sources)."""
        return collect_labels(self.batches(split, 8192), self.task_names)

    def describe(self) -> dict[str, Any]:
        """What a run directory's ``data.json`` holds: sizes, sampling, sources, merged features, label encodings."""
        from mtl_keras.data.columns import columns_to_dict

        return {
            "name": self.name,
            "description": self.description,
            "rows": {s: self.num_examples(s) for s in SPLIT_NAMES},
            "sampling": {
                "name": self.sampling,
                "probabilities": [float(p) for p in self.probabilities()],
                **({"temperature": float(self.temperature)} if self.sampling == "temperature" else {}),
                **(
                    {"start": dict(self.start or {}), "end": self.end, "epochs": self.curriculum_epochs}
                    if self.sampling == "curriculum"
                    else {}
                ),
            },
            "sources": {
                task: {"name": s.name, "rows": {k: s.num_examples(k) for k in SPLIT_NAMES}}
                for task, s in self.sources.items()
            },
            "features": columns_to_dict(self.columns, self.statistics),
            "labels": {
                task: {"spec": s.labels[task].model_dump(), "stats": s.label_stats[task].to_dict()}
                for task, s in self.sources.items()
            },
            "weighted": self.weighted,
        }

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}={self.num_examples(k)}" for k in SPLIT_NAMES)
        return (
            f"MixedDataset(name={self.name!r}, tasks={self.task_names}, sampling={self.sampling!r}, {sizes})"
        )


def per_task(
    sources: Mapping[str, StreamedDataset | Mapping[str, Any]],
    *,
    sampling: str = "proportional",
    temperature: float = 2.0,
    start: dict[str, float] | None = None,
    end: dict[str, float] | None = None,
    epochs: int | None = None,
    seed: int = 0,
    name: str = "per_task",
) -> MixedDataset:
    """Per-task data sets mixed by ``sampling`` (see the module docstring).

    Args:
        sources: ``{task: StreamedDataset}``, or ``{task: {name: <loader>, <option>: ...}}`` (a recipe's form:
            each is loaded by :func:`mtl_keras.data.load_dataset`, e.g. ``{name: csv, path: a.csv, tasks: {...}}``).
        sampling: ``proportional``, ``temperature``, ``round_robin`` or ``curriculum``.
        temperature: T of ``temperature`` sampling (``p_i ∝ n_i^{1/T}``).
        start: ``curriculum``: the weights ``{task: weight}`` of the first step (tasks left out: 0).
        end: ``curriculum``: the weights reached after ``epochs`` epochs (None: proportional to the sizes).
        epochs: ``curriculum``: the epochs over which the weights move from ``start`` to ``end``.
        seed: added to the recipe's seed for the task draws and the per-task row orders (0: the recipe's
            seed alone); also seeds the sample of merged statistics.
        name: the data set's name.
    """
    from mtl_keras.data import load_dataset

    if not isinstance(sources, Mapping) or not sources:
        raise ValueError(
            f"Expected `sources` to be a non-empty mapping {{task: data set}}. Received: sources={sources!r}"
        )
    loaded: dict[str, StreamedDataset] = {}
    for task, source in sources.items():
        if isinstance(source, Mapping):
            options = {str(k): v for k, v in source.items() if k != "name"}
            if "name" not in source:
                raise ValueError(
                    f"Expected the source of task {task!r} to have a `name` (a loader). Received: {source!r}"
                )
            source = load_dataset(str(source["name"]), **options)  # type: ignore[assignment]
        if not isinstance(source, StreamedDataset):
            raise ValueError(
                f"Expected the source of task {task!r} to be a table (csv, parquet, tfrecord, from_dataframe, ...). "
                f"Received: {type(source).__name__}"
            )
        loaded[str(task)] = source
    return MixedDataset(
        loaded,
        sampling=sampling,
        temperature=temperature,
        start=start,
        end=end,
        epochs=epochs,
        seed=seed,
        name=name,
    )


def _statistics_rows(source: StreamedDataset) -> int:
    """The rows a source's column statistics were computed over."""
    return max((source.statistics[c].count for c in source.features if c in source.statistics), default=0)


def _distinct(sources: Any) -> list[StreamedDataset]:
    result: list[StreamedDataset] = []
    for source in sources:
        if all(s is not source for s in result):
            result.append(source)
    return result


__all__ = ["SAMPLINGS", "MixedDataset", "merge_statistics", "per_task"]
