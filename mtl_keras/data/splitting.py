"""Which split each row of a table belongs to: separate files, a seeded random split, or a temporal split.

A random split hashes ``"<seed>:<file index>:<row index>"`` (FarmHash, ``tf.strings.to_hash_bucket_fast``) to a
number ``u`` in [0, 1): ``u < test`` is test, ``u < test + validation`` validation, the rest train. The same
function runs on a whole chunk in the statistics pass and on each row of the training stream, so both see the
same rows in each split, on any machine, without a shuffle of the file.

A temporal split compares a named column with thresholds: rows with ``column >= test_from`` are test, rows with
``validation_from <= column < test_from`` validation, earlier rows train. Numbers compare as numbers; text such as
ISO dates (``2024-03-01``, ``2024-03-01T12:00:00``) compares by its digits (up to 14, padded), so dates and
date-times of the same layout order correctly.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import tensorflow as tf

TRAIN, VALIDATION, TEST = 0, 1, 2
SPLIT_NAMES = ("train", "validation", "test")
_BUCKETS = 1 << 30


@dataclasses.dataclass(frozen=True)
class SplitRule:
    """How rows of one table are split.

    Args:
        validation: fraction of rows for validation (random split), or 0.
        test: fraction of rows for test (random split), or 0 (the test rows come from a file of their own).
        seed: the random split's seed.
        column: a temporal split's column (None: random split).
        validation_from, test_from: a temporal split's thresholds (numbers or date text).
    """

    validation: float = 0.0
    test: float = 0.0
    seed: int = 0
    column: str | None = None
    validation_from: Any = None
    test_from: Any = None

    def __post_init__(self) -> None:
        for name in ("validation", "test"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value < 1.0:
                raise ValueError(f"Expected split `{name}` to be a fraction in [0, 1). Received: {value!r}")
        if self.validation + self.test >= 1.0:
            raise ValueError(
                f"Expected split fractions validation + test < 1. Received: {self.validation} + {self.test}"
            )
        if self.column is not None and self.test_from is None and self.validation_from is None:
            raise ValueError(
                f"A temporal split on column {self.column!r} needs `test_from` and/or `validation_from`."
            )

    @property
    def temporal(self) -> bool:
        return self.column is not None


def time_key(value: Any) -> float:
    """A threshold as the number rows are compared with."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    digits = "".join(ch for ch in str(value) if ch.isdigit())
    if not digits:
        raise ValueError(f"Expected a number or a date as a temporal split threshold. Received: {value!r}")
    return float((digits + "0" * 14)[:14])


def _time_keys_tf(values: tf.Tensor) -> tf.Tensor:
    if values.dtype == tf.string:
        digits = tf.strings.regex_replace(values, "[^0-9]", "")
        padded = tf.strings.substr(tf.strings.join([digits, "00000000000000"]), 0, 14)
        return tf.where(tf.strings.length(digits) > 0, tf.strings.to_number(padded, tf.float64), np.nan)
    return tf.cast(values, tf.float64)


def assign_tf(rule: SplitRule, part: int, index: tf.Tensor, column: tf.Tensor | None) -> tf.Tensor:
    """Split codes (int32) of rows ``index`` (int64) of file ``part``; ``column``: the temporal column."""
    if rule.temporal:
        assert column is not None
        keys = _time_keys_tf(column)
        test = keys >= time_key(rule.test_from) if rule.test_from is not None else tf.zeros_like(keys) > 0
        validation = (
            keys >= time_key(rule.validation_from)
            if rule.validation_from is not None
            else tf.zeros_like(keys) > 0
        )
        return tf.where(test, TEST, tf.where(validation, VALIDATION, TRAIN))
    keys = tf.strings.join([f"{rule.seed}:{part}:", tf.strings.as_string(index)])
    u = tf.cast(tf.strings.to_hash_bucket_fast(keys, _BUCKETS), tf.float64) / _BUCKETS
    return tf.where(u < rule.test, TEST, tf.where(u < rule.test + rule.validation, VALIDATION, TRAIN))


def assign(rule: SplitRule, part: int, start: int, count: int, column: np.ndarray | None) -> np.ndarray:
    """Split codes of rows ``start .. start + count - 1`` of file ``part`` (the statistics pass)."""
    index = tf.range(start, start + count, dtype=tf.int64)
    values = None
    if column is not None:
        values = tf.constant(column.astype(str) if column.dtype == object else column)
    return assign_tf(rule, part, index, values).numpy()


def time_column_missing(column: np.ndarray) -> np.ndarray:
    """Rows whose temporal-split value is missing (no digits / NaN)."""
    values = tf.constant(column.astype(str) if column.dtype == object else column)
    return np.isnan(_time_keys_tf(values).numpy())


__all__ = [
    "SPLIT_NAMES",
    "TEST",
    "TRAIN",
    "VALIDATION",
    "SplitRule",
    "assign",
    "assign_tf",
    "time_column_missing",
    "time_key",
]
