"""`StreamedDataset`: a user's table (CSV, Parquet, TFRecord, DataFrame, ``tf.data``) as tasks, a per-column
feature spec with its training statistics, and three splits that are ``tf.data`` pipelines.

Nothing of the table is held in memory: each split is re-read from its files when iterated. The training stream
is deterministic and can start at any step (for exact resume): pass ``p`` over the training rows is the rows in
file order, each block of ``shuffle_buffer`` consecutive rows in a random order drawn from ``(recipe seed, p,
block)`` by a stateless shuffle (rows move within their block only: a table sorted by something that matters
should be shuffled once when written, or given a larger ``shuffle_buffer``); the epoch layout (one pass per epoch, or
``steps_per_epoch`` full batches across passes) is that of :class:`mtl_keras.distribute.stream.StreamSpec`.

Rows are converted to model inputs per batch (vectorised): numeric columns to float32 (missing values NaN, which
the model's preprocessing imputes), categorical / id / list columns to text, integer categorical columns to int64
(missing values -1), labels through each task's label parser (missing labels NaN).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
import tensorflow as tf

from mtl_keras.data.columns import ColumnSpec
from mtl_keras.data.labels import LabelSpec, LabelStats, label_parser
from mtl_keras.data.splitting import SPLIT_NAMES, SplitRule, assign_tf
from mtl_keras.data.statistics import MISSING_TOKENS, ColumnStats
from mtl_keras.data.tables import Part
from mtl_keras.tasks import Task

#: Feature kinds whose model input is text, and the one whose input is int64.
TEXT_KINDS = ("categorical", "id", "multi_hot", "text")
INTEGER_KINDS = ("integer_categorical",)


@dataclasses.dataclass
class SplitSource:
    """The rows of one split: files of a table, each filtered by a split rule to one split code (or whole)."""

    parts: list[tuple[int, Part]]
    rule: SplitRule | None = None
    code: int = 0
    num_examples: int = 0


def is_missing_text(values: tf.Tensor) -> tf.Tensor:
    """Text values that mean "missing" (empty or one of MISSING_TOKENS, any case, surrounding spaces ignored)."""
    cleaned = tf.strings.lower(tf.strings.strip(values))
    missing = tf.zeros_like(cleaned, dtype=tf.bool)
    for token in MISSING_TOKENS:
        missing = missing | tf.equal(cleaned, token)
    return missing


def text_to_float(values: tf.Tensor) -> tf.Tensor:
    """Text or numbers → float32, missing → NaN."""
    if values.dtype != tf.string:
        return tf.cast(values, tf.float32)
    missing = is_missing_text(values)
    return tf.strings.to_number(tf.where(missing, "nan", tf.strings.strip(values)), tf.float32)


def number_to_text(values: tf.Tensor) -> tf.Tensor:
    """The text of numbers as categorical input: integral values without a decimal part, NaN → ""."""
    if values.dtype == tf.string:
        return values
    floats = tf.cast(values, tf.float64)
    integral = tf.equal(floats, tf.round(floats))
    text = tf.where(
        integral,
        tf.strings.as_string(tf.cast(tf.where(integral, floats, 0.0), tf.int64)),
        tf.strings.as_string(floats, shortest=True),
    )
    return tf.where(tf.math.is_nan(floats), "", text)


def _to_integer(values: tf.Tensor) -> tf.Tensor:
    floats = tf.cast(text_to_float(values), tf.float64)
    return tf.cast(tf.where(tf.math.is_nan(floats), -1.0, floats), tf.int64)


def convert_feature(kind: str, values: tf.Tensor) -> tf.Tensor:
    """One column of a batch as the model input of its kind, shape (batch, 1)."""
    if kind in TEXT_KINDS:
        converted = number_to_text(values)
    elif kind in INTEGER_KINDS:
        converted = _to_integer(values)
    else:
        converted = text_to_float(values)
    return tf.expand_dims(converted, -1)


def shuffled_blocks(
    batches: tf.data.Dataset, block: int, seed: int, pass_index: tf.Tensor
) -> tf.data.Dataset:
    """``batches`` of rows (any nest of tensors with the rows on the first axis) re-cut into blocks of
    ``block`` consecutive rows, each block's rows in a random order that depends only on ``(seed, pass_index, block index)`` (stateless: the same on every run, worker
    and resume)."""
    pass_index = tf.cast(pass_index, tf.int64)

    def shuffle(index: tf.Tensor, rows: Any) -> Any:
        size = tf.shape(tf.nest.flatten(rows)[0], out_type=tf.int64)[0]
        order = tf.random.experimental.stateless_shuffle(
            tf.range(size), seed=tf.stack([tf.constant(seed, tf.int64), pass_index * (1 << 32) + index])
        )
        return tf.nest.map_structure(lambda v: tf.gather(v, order), rows)

    return batches.rebatch(block).enumerate().map(shuffle)


def block_shuffle(rows: tf.data.Dataset, block: int, seed: int, pass_index: tf.Tensor) -> tf.data.Dataset:
    """Single ``rows`` in the order of :func:`shuffled_blocks`."""
    return shuffled_blocks(rows.batch(block), block, seed, pass_index).unbatch()


def collect_labels(batches: tf.data.Dataset, task_names: list[str]) -> dict[str, np.ndarray]:
    """``{task: every label}`` of converted batches ``(x, y, ...)``, in order."""
    parts: dict[str, list[np.ndarray]] = {t: [] for t in task_names}
    for batch in batches:
        for task, values in batch[1].items():
            parts[task].append(values.numpy())
    return {t: np.concatenate(v) if v else np.zeros((0,), np.float32) for t, v in parts.items()}


@dataclasses.dataclass(eq=False)
class StreamedDataset:
    """Tasks, a feature spec and three streamed splits of a user's table.

    Built by :func:`mtl_keras.data.from_csv` and the other ``from_*`` functions, which check every value in one
    streaming pass first; read by training through the same methods as the in-memory
    :class:`~mtl_keras.data.MultiTaskDataset`.
    """

    name: str
    tasks: list[Task]
    columns: dict[str, ColumnSpec]
    statistics: dict[str, ColumnStats]
    labels: dict[str, LabelSpec]
    label_stats: dict[str, LabelStats]
    splits_: dict[str, SplitSource]
    weight_column: str | None = None
    shuffle_buffer: int = 10_000
    description: str = ""
    safe_names: dict[str, str] = dataclasses.field(default_factory=dict)

    # --- what training reads ---------------------------------------------------------------------------

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    @property
    def features(self) -> dict[str, str]:
        """``{feature: kind}`` of the model's inputs (skipped columns left out)."""
        return {name: spec.kind for name, spec in self.columns.items() if spec.kind != "skip"}

    def num_examples(self, split: str) -> int:
        return self.splits_[split].num_examples

    def input_spec(self) -> Any:
        """A builder's ``inputs``: raw features with preprocessing built from the training statistics."""
        from mtl_keras.builders.inputs import RawFeatures

        used = {n: s for n, s in self.columns.items() if s.kind != "skip"}
        return RawFeatures(used, statistics={n: self.statistics[n] for n in used})

    def _raw_columns(self, split: str) -> list[str]:
        names = list(self.features) + [self.labels[t].label_column for t in self.task_names]
        if self.weight_column is not None:
            names.append(self.weight_column)
        rule = self.splits_[split].rule
        if rule is not None and rule.column is not None and rule.column not in names:
            names.append(rule.column)
        return list(dict.fromkeys(names))

    def raw_batches(self, split: str) -> tf.data.Dataset:
        """The raw rows of ``split`` in file order, as batches of varying size (vectorised split filter)."""
        source = self.splits_[split]
        columns = self._raw_columns(split)
        datasets = []
        for index, part in source.parts:
            batches = part.batches(columns)
            if source.rule is not None:

                def keep(
                    start: tf.Tensor,
                    rows: dict[str, tf.Tensor],
                    rule: SplitRule = source.rule,
                    part_index: int = index,
                    code: int = source.code,
                ) -> dict[str, tf.Tensor]:
                    size = tf.shape(next(iter(rows.values())), out_type=tf.int64)[0]
                    column = rows[rule.column] if rule.column is not None else None
                    codes = assign_tf(rule, part_index, start + tf.range(size), column)
                    mask = tf.equal(codes, code)
                    return {k: tf.boolean_mask(v, mask) for k, v in rows.items()}

                def offsets(start: tf.Tensor, rows: dict[str, tf.Tensor]) -> Any:
                    size = tf.shape(next(iter(rows.values())), out_type=tf.int64)[0]
                    return start + size, (start, rows)

                batches = batches.scan(tf.constant(0, tf.int64), offsets).map(keep)
            datasets.append(batches)
        result = datasets[0]
        for more in datasets[1:]:
            result = result.concatenate(more)
        return result

    def rows(self, split: str) -> tf.data.Dataset:
        """The raw rows of ``split`` in file order, one by one."""
        return self.raw_batches(split).unbatch()

    def convert(self, batch: Mapping[str, tf.Tensor]) -> tuple[Any, ...]:
        """A batch of raw rows → ``(x, y)`` or ``(x, y, sample_weight)`` as the model takes them."""
        x = {name: convert_feature(kind, batch[name]) for name, kind in self.features.items()}
        y = {}
        for task in self.task_names:
            spec = self.labels[task]
            y[task] = label_parser(spec, self.label_stats[task])(batch[spec.label_column])
        if self.weight_column is None:
            return x, y
        return x, y, text_to_float(batch[self.weight_column])

    def batches(self, split: str, batch_size: int) -> tf.data.Dataset:
        """``split`` in file order, batched and converted (evaluation)."""
        return (
            self.raw_batches(split)
            .rebatch(batch_size)
            .map(self.convert, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .prefetch(tf.data.AUTOTUNE)
        )

    def training_stream(self, spec: Any, *, epochs: int, start_step: int = 0) -> tf.data.Dataset:
        """The batches of global steps ``start_step, start_step + 1, …`` (see the module docstring)."""
        batch = spec.batch_size
        # Converted once per read batch, before the shuffle: the same rows and order as converting the
        # shuffled batches (conversion is row by row), with numbers instead of text to shuffle.
        raw = self.raw_batches("train").map(
            self.convert, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
        )
        buffer = self.shuffle_buffer
        seed = int(spec.seed)

        def one_pass(p: tf.Tensor) -> tf.data.Dataset:
            return shuffled_blocks(raw, buffer, seed, p)

        # The number of batches is declared (Keras then knows where the stream ends).
        if spec.wrap:  # passes follow each other: from the first pass, skipping the steps done
            batches = (
                tf.data.Dataset.range(0, np.iinfo(np.int64).max)
                .flat_map(one_pass)
                .rebatch(batch, drop_remainder=True)
                .skip(start_step)
                .apply(tf.data.experimental.assert_cardinality(tf.data.INFINITE_CARDINALITY))
            )
        else:
            first_epoch, skip = spec.position(start_step)
            total = (epochs - first_epoch) * spec.steps_per_epoch - skip
            batches = (
                tf.data.Dataset.range(first_epoch, epochs)
                .flat_map(lambda e: one_pass(e).rebatch(batch))
                .skip(skip)
                .apply(tf.data.experimental.assert_cardinality(max(total, 0)))
            )
        dataset = batches
        options = tf.data.Options()
        options.deterministic = True
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)

    def examples(self, split: str, count: int) -> dict[str, np.ndarray]:
        """The model inputs of the first ``count`` rows of ``split`` (request examples of an export)."""
        for batch in self.batches(split, count).take(1):
            return {k: v.numpy() for k, v in batch[0].items()}
        raise ValueError(f"Split {split!r} of data set {self.name!r} has no rows.")

    def label_arrays(self, split: str) -> dict[str, np.ndarray]:
        """Every label of ``split`` (one pass; labels only)."""
        return collect_labels(self.batches(split, 8192), self.task_names)

    def describe(self) -> dict[str, Any]:
        """What a run directory's ``data.json`` holds: sizes, feature kinds and statistics, label encodings."""
        from mtl_keras.data.columns import columns_to_dict

        return {
            "name": self.name,
            "description": self.description,
            "rows": {s: self.num_examples(s) for s in SPLIT_NAMES},
            "features": columns_to_dict(self.columns, self.statistics),
            "labels": {
                task: {"spec": self.labels[task].model_dump(), "stats": self.label_stats[task].to_dict()}
                for task in self.task_names
            },
            "weight_column": self.weight_column,
        }

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}={self.num_examples(k)}" for k in SPLIT_NAMES)
        return f"StreamedDataset(name={self.name!r}, tasks={self.task_names}, {sizes})"


__all__ = [
    "INTEGER_KINDS",
    "TEXT_KINDS",
    "SplitSource",
    "StreamedDataset",
    "block_shuffle",
    "collect_labels",
    "convert_feature",
    "is_missing_text",
    "number_to_text",
    "shuffled_blocks",
    "text_to_float",
]
