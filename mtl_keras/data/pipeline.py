"""`Split` → batched ``tf.data.Dataset`` of ``(x, {task: y})`` for ``fit`` and ``evaluate``."""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from mtl_keras.data.base import Split


def model_inputs(x: Any) -> Any:
    """Raw feature columns of shape (n,) become (n, 1), as the models' raw inputs expect."""
    if isinstance(x, dict):
        return {k: (v.reshape(-1, 1) if v.ndim == 1 else v) for k, v in x.items()}
    return x


def to_dataset(
    split: Split, batch_size: int, *, shuffle: bool = False, seed: int = 0, repeat: bool = False
) -> tf.data.Dataset:
    """A batched dataset of ``(x, y)``; strings stay strings (the model's preprocessing block reads them)."""
    x = model_inputs(split.x)
    if isinstance(x, dict):
        x = {k: (v.astype(str) if v.dtype.kind in "OU" else v) for k, v in x.items()}
    dataset = tf.data.Dataset.from_tensor_slices((x, {k: np.asarray(v) for k, v in split.y.items()}))
    if shuffle:
        dataset = dataset.shuffle(len(split), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
