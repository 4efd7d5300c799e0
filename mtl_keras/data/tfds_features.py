"""The leaves of a TFDS feature dict, found by their ``"/"``-separated path, and what kind of value each holds
(for :func:`mtl_keras.data.load_tfds`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from mtl_keras._registry import suggest


def leaves_of(features: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a/b": feature connector}`` for every leaf of a (nested) `tfds.features.FeaturesDict`."""
    leaves: dict[str, Any] = {}
    for key in features.keys():  # noqa: SIM118  (a FeaturesDict, not a dict)
        path = f"{prefix}{key}"
        feature = features[key]
        if isinstance(feature, tfds.features.FeaturesDict):
            leaves.update(leaves_of(feature, prefix=f"{path}/"))
        else:
            leaves[path] = feature
    return leaves


def lookup(leaves: dict[str, Any], path: Any, name: str, what: str) -> Any:
    if isinstance(path, str) and path in leaves:
        return leaves[path]
    available = sorted(leaves)
    hint = ""
    if isinstance(path, str):
        nested = [p for p in available if p.endswith("/" + path)]  # "Smiling" -> "attributes/Smiling"
        hint = f" Did you mean {nested[0]!r}?" if nested else suggest(path, available)
    raise ValueError(
        f"Unknown feature {path!r} ({what}) in TFDS data set {name!r}. Available features: {available}."
        + hint
    )


def np_dtype(feature: Any) -> np.dtype:
    """The numpy dtype of a leaf; object for nested leaves (e.g. a `tfds.features.Sequence` of dicts)."""
    dtype = feature.np_dtype
    return np.dtype(object) if isinstance(dtype, Mapping) else np.dtype(dtype)


def example_shape(feature: Any) -> tuple[Any, ...]:
    """The shape of one example of a leaf; ``(None,)`` for nested leaves."""
    shape = feature.shape
    return (None,) if isinstance(shape, Mapping) else tuple(shape)


def is_string(feature: Any) -> bool:
    return np_dtype(feature).kind in "OSU"


def is_class_label(feature: Any) -> bool:
    return isinstance(feature, tfds.features.ClassLabel)


def is_image(feature: Any) -> bool:
    return isinstance(feature, tfds.features.Image)


def infer_kind(feature: Any) -> str:
    if is_class_label(feature) or np_dtype(feature).kind in "iu":
        return "integer_categorical"
    if is_string(feature):
        return "string_categorical"
    return "numeric"


def column_name(path: str) -> str:
    return path.replace("/", "_")


def get_path(example: Any, path: str) -> Any:
    for key in path.split("/"):
        example = example[key]
    return example


__all__ = [
    "column_name",
    "example_shape",
    "get_path",
    "infer_kind",
    "is_class_label",
    "is_image",
    "is_string",
    "leaves_of",
    "lookup",
    "np_dtype",
]
