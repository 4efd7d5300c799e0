"""What :func:`mtl_keras.data.load_tfds` reads from a TFDS data set: the tasks (one label feature each) and
the inputs (one image or tensor feature, or a list of scalar features with their kinds), checked against the
data set's features."""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any

from mtl_keras._registry import suggest
from mtl_keras.data.base import FEATURE_KINDS, _check_positive_int
from mtl_keras.data.tfds_features import (
    column_name,
    example_shape,
    infer_kind,
    is_class_label,
    is_image,
    is_string,
    lookup,
    np_dtype,
)
from mtl_keras.tasks import Task

#: Keys a task spec may hold: ``feature`` (path of the label feature, default: the task name) and the
#: `Task` arguments.
TASK_SPEC_KEYS = ("feature", "kind", "num_classes", "loss", "metrics", "units")


def make_task(task_name: str, spec: Any, leaves: dict[str, Any], name: str) -> tuple[Task, str]:
    """A `Task` and the path of its label feature, from one entry of ``tasks``."""
    if spec is None:
        spec = {}
    if not isinstance(spec, Mapping):
        raise ValueError(
            f"Expected the spec of task {task_name!r} to be a dict with keys from {list(TASK_SPEC_KEYS)}. "
            f"Received: {spec!r}"
        )
    unknown = sorted(set(spec) - set(TASK_SPEC_KEYS))
    if unknown:
        raise ValueError(
            f"Unknown keys {unknown} in the spec of task {task_name!r}. Expected keys from "
            f"{list(TASK_SPEC_KEYS)}." + suggest(str(unknown[0]), list(TASK_SPEC_KEYS))
        )
    options = dict(spec)
    path = options.pop("feature", task_name)
    feature = lookup(leaves, path, name, f"label of task {task_name!r}")
    shape = example_shape(feature)
    if len(shape) > 1 or None in shape or is_string(feature):
        raise ValueError(
            f"Expected the label feature {path!r} of task {task_name!r} to be a number or a fixed-length "
            f"vector of numbers. Received: {feature!r}"
        )
    kind = options.pop("kind", None)
    if kind is None:
        if is_class_label(feature):
            kind = "binary" if feature.num_classes == 2 else "multiclass"
        elif np_dtype(feature).kind == "b":
            kind = "binary"
        elif np_dtype(feature).kind == "f":
            kind = "regression"
        else:
            raise ValueError(
                f"Cannot infer the kind of task {task_name!r}: its label feature {path!r} is {feature!r}. "
                "Pass `kind` ('regression', 'binary' or 'multiclass') in the task spec."
            )
    if kind == "multiclass":
        if shape:
            raise ValueError(
                f"Expected a scalar label (a class index) for multiclass task {task_name!r}. Received "
                f"feature {path!r} with shape {shape}."
            )
        if options.get("num_classes") is None:
            if not is_class_label(feature):
                raise ValueError(
                    f"Expected `num_classes` for multiclass task {task_name!r}: its label feature {path!r} "
                    f"is not a tfds ClassLabel. Received: {feature!r}"
                )
            options["num_classes"] = int(feature.num_classes)
    elif shape and options.get("units") is None:
        options["units"] = int(shape[0])
    return Task(name=task_name, kind=kind, **options), path


def input_paths(
    features: str | Sequence[str] | None, leaves: dict[str, Any], label_paths: list[str], info: Any, name: str
) -> str | list[str]:
    """The input feature path (one image / tensor) or paths (scalars), validated."""
    if features is None:
        keys = info.supervised_keys
        if keys and isinstance(keys[0], str) and keys[0] in leaves and keys[0] not in label_paths:
            features = keys[0]
        else:
            rest = [path for path in leaves if path not in label_paths]
            scalars = [path for path in rest if not example_shape(leaves[path])]
            if len(rest) == 1:
                features = rest[0]
            elif rest and scalars == rest:
                features = rest
            else:
                raise ValueError(
                    f"Cannot infer the input features of TFDS data set {name!r}: pass `features` (an image "
                    f"or tensor feature, or a list of scalar features). Available features: {sorted(leaves)}"
                )
    if isinstance(features, str):
        feature = lookup(leaves, features, name, "input")
        if is_image(feature) or example_shape(feature):
            paths: str | list[str] = features
        else:
            paths = [features]
    elif isinstance(features, Sequence) and features and all(isinstance(f, str) for f in features):
        paths = list(features)
        duplicates = sorted({p for p in paths if paths.count(p) > 1})
        if duplicates:
            raise ValueError(f"Expected distinct input features. Received duplicates: {duplicates}")
        for path in paths:
            shape = example_shape(lookup(leaves, path, name, "input"))
            if shape:
                raise ValueError(
                    f"Expected scalar features in a `features` list; pass an image or tensor feature alone, "
                    f"as a string. Received feature {path!r} with shape {shape}."
                )
    else:
        raise ValueError(
            "Expected `features` to be a feature path, a non-empty list of feature paths or None. "
            f"Received: features={features!r}"
        )
    for path in [paths] if isinstance(paths, str) else paths:
        if path in label_paths:
            raise ValueError(f"Feature {path!r} is both an input and a task label.")
    return paths


def feature_kinds_of(
    paths: list[str], leaves: dict[str, Any], overrides: Mapping[str, str] | None
) -> dict[str, str]:
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(paths))
    if unknown:
        raise ValueError(
            f"`feature_kinds` names features that are not inputs: {unknown}. Inputs: {paths}."
            + suggest(str(unknown[0]), paths)
        )
    kinds = {}
    for path in paths:
        kind = overrides.get(path, infer_kind(leaves[path]))
        if kind not in FEATURE_KINDS:
            raise ValueError(
                f"Expected the kind of feature {path!r} to be one of {list(FEATURE_KINDS)}. "
                f"Received: {kind!r}"
            )
        if (kind == "string_categorical") != is_string(leaves[path]):
            raise ValueError(
                f"Feature {path!r} ({leaves[path]!r}) cannot have kind {kind!r}: only string features are "
                "string_categorical."
            )
        kinds[path] = kind
    names = [column_name(path) for path in paths]
    if len(set(names)) != len(names):
        raise ValueError(f"Input features {paths} map to clashing column names {names}.")
    return kinds


def image_size_of(image_size: Any) -> tuple[int, int] | None:
    if image_size is None:
        return None
    if isinstance(image_size, numbers.Integral) and not isinstance(image_size, bool):
        size = _check_positive_int("image_size", image_size)
        return size, size
    if isinstance(image_size, Sequence) and len(image_size) == 2:
        height, width = (_check_positive_int("image_size", s) for s in image_size)
        return height, width
    raise ValueError(
        "Expected `image_size` to be a positive integer or (height, width). "
        f"Received: image_size={image_size!r}"
    )


def input_kinds(
    inputs: str | list[str],
    leaves: dict[str, Any],
    feature_kinds: Mapping[str, str] | None,
    size: tuple[int, int] | None,
) -> dict[str, str]:
    """``{feature path: kind}`` of scalar inputs (``{}`` for one image or tensor input), after checking that
    the inputs can be read as such and that ``feature_kinds`` and ``size`` (the resized image size) apply."""
    kinds: dict[str, str] = {}
    if isinstance(inputs, str):
        if feature_kinds:
            raise ValueError(
                f"`feature_kinds` applies to a list of scalar input features; the input is {inputs!r}."
            )
        feature = leaves[inputs]
        if is_image(feature):
            if size is None and None in example_shape(feature)[:2]:
                raise ValueError(
                    f"The images of feature {inputs!r} have no fixed size (shape {example_shape(feature)}). "
                    "Pass `image_size`."
                )
        elif is_string(feature) or np_dtype(feature).kind not in "biuf" or None in example_shape(feature):
            raise ValueError(
                f"Expected input feature {inputs!r} to be an image or a fixed-shape numeric tensor. "
                f"Received: {feature!r}"
            )
        elif size is not None:
            raise ValueError(f"`image_size` applies to image inputs; feature {inputs!r} is {feature!r}.")
    else:
        kinds = feature_kinds_of(inputs, leaves, feature_kinds)
        if size is not None:
            raise ValueError("`image_size` applies to image inputs; the inputs are scalar features.")
    return kinds


__all__ = ["TASK_SPEC_KEYS", "feature_kinds_of", "image_size_of", "input_kinds", "input_paths", "make_task"]
