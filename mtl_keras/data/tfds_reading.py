"""Reading the splits of a TFDS data set into a `Split` (for :func:`mtl_keras.data.load_tfds`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from mtl_keras._registry import suggest
from mtl_keras.data.base import Split
from mtl_keras.data.tfds_features import (
    column_name,
    get_path,
    is_image,
    np_dtype,
)

_BATCH = 1024


def read_split(
    builder: Any,
    split: str,
    inputs: str | list[str],
    label_paths: dict[str, str],
    leaves: dict[str, Any],
    kinds: dict[str, str],
    size: tuple[int, int] | None,
    max_examples: int | None,
) -> Split:
    dataset = builder.as_dataset(split=split, shuffle_files=False)
    if max_examples is not None:
        dataset = dataset.take(max_examples)

    def to_image(image: tf.Tensor) -> tf.Tensor:
        dtype = np_dtype(leaves[str(inputs)])
        image = tf.cast(image, tf.float32)
        if dtype.kind in "iu":
            image = image / float(np.iinfo(dtype).max)
        if size is not None:
            image = tf.clip_by_value(tf.image.resize(image, size), 0.0, 1.0)
        return image

    def select(example: Any) -> tuple[Any, dict[str, Any]]:
        labels = {task: get_path(example, path) for task, path in label_paths.items()}
        if isinstance(inputs, str):
            x = get_path(example, inputs)
            return (to_image(x) if is_image(leaves[inputs]) else tf.cast(x, tf.float32)), labels
        return {path: get_path(example, path) for path in inputs}, labels

    xs: list[Any] = []
    ys: list[dict[str, np.ndarray]] = []
    for x_batch, y_batch in dataset.map(select).batch(_BATCH).as_numpy_iterator():
        xs.append(x_batch)
        ys.append(y_batch)
    if not ys:
        raise ValueError(f"Split {split!r} of TFDS data set {builder.name!r} has no examples.")
    y = {task: np.concatenate([batch[task] for batch in ys]).astype(np.float32) for task in label_paths}
    if isinstance(inputs, str):
        return Split(x=np.concatenate(xs).astype(np.float32), y=y)
    columns: dict[str, np.ndarray] = {}
    for path in inputs:
        values = np.concatenate([batch[path] for batch in xs])
        if kinds[path] == "string_categorical":
            values = np.array(
                [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values], dtype=str
            )
        elif kinds[path] == "integer_categorical":
            values = values.astype(np.int64)
        else:
            values = values.astype(np.float32)
        columns[column_name(path)] = values
    return Split(x=columns, y=y)


def check_split_names(split: str, info: Any, name: str) -> None:
    """Check the split names in ``split`` (e.g. ``"train[:80%]+test"``) against the built splits, if known."""
    known = sorted(info.splits.keys()) if info.splits else []
    if not known:  # not built (or mocked): TFDS reports unknown splits itself
        return
    for part in split.split("+"):
        base = part.split("[")[0].strip()
        if base not in known:
            raise ValueError(
                f"Unknown split {base!r} of TFDS data set {name!r}. Available splits: {known}."
                + suggest(base, known)
            )


__all__ = ["check_split_names", "read_split"]
