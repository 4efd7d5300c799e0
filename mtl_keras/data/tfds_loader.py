"""Any TFDS data set with several label features as a `MultiTaskDataset` (the recipe's ``tfds:`` block).

A task names the label feature it reads by its path in the (nested) TFDS feature dict, ``"/"``-separated::

    load_tfds(
        "celeb_a",
        tasks={
            "smiling": {"feature": "attributes/Smiling", "kind": "binary"},
            "male": {"feature": "attributes/Male", "kind": "binary"},
        },
        features="image",
        image_size=64,
        max_examples=10_000,
    )

Inputs (``features``):

- one image feature (`tfds.features.Image`): float32 NHWC in [0, 1] (integer pixels are divided by the largest
  value of their dtype, 255 for uint8), optionally resized to ``image_size``;
- one numeric tensor feature with at least one dimension (e.g. ``x`` of ``mtl_synthetic_mmoe``): float32
  ``(n, *shape)``;
- a list of scalar features (a single scalar feature counts as a list of one): a dict of raw columns keyed by
  the feature path with ``"/"`` replaced by ``"_"``, and the `MultiTaskDataset.features` kind map. Kinds are
  inferred from the TFDS feature types: strings (`tfds.features.Text`, ``tf.string``) ->
  ``string_categorical`` (str arrays), `tfds.features.ClassLabel` and other integers ->
  ``integer_categorical`` (int64 arrays), floats and bools -> ``numeric`` (float32 arrays); ``feature_kinds``
  overrides the inference.
- None: the data set's supervised input (``info.supervised_keys``) when it has one, otherwise every feature
  not read by a task when those are all scalars, or the single one left.

Task kinds, when a task spec gives none: a 2-class `ClassLabel` or a bool -> ``binary``, a ClassLabel with
more classes -> ``multiclass`` (``num_classes`` from the ClassLabel), a float -> ``regression``; other
integers need an explicit ``kind``. Labels become float32 as everywhere in :mod:`mtl_keras.data`.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from mtl_keras._registry import suggest
from mtl_keras.data import tfds_builders  # noqa: F401  (registers mtl_census and mtl_synthetic_mmoe)
from mtl_keras.data.base import (
    FEATURE_KINDS,
    MultiTaskDataset,
    Split,
    _check_fraction,
    _check_positive_int,
    _check_seed,
)
from mtl_keras.data.base import split_validation as _carve_validation
from mtl_keras.tasks import Task

#: Keys a task spec may hold: ``feature`` (path of the label feature, default: the task name) and the
#: `Task` arguments.
TASK_SPEC_KEYS = ("feature", "kind", "num_classes", "loss", "metrics", "units")

_BATCH = 1024


# === Feature lookup ===


def _leaves(features: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a/b": feature connector}`` for every leaf of a (nested) `tfds.features.FeaturesDict`."""
    leaves: dict[str, Any] = {}
    for key in features.keys():  # noqa: SIM118  (a FeaturesDict, not a dict)
        path = f"{prefix}{key}"
        feature = features[key]
        if isinstance(feature, tfds.features.FeaturesDict):
            leaves.update(_leaves(feature, prefix=f"{path}/"))
        else:
            leaves[path] = feature
    return leaves


def _lookup(leaves: dict[str, Any], path: Any, name: str, what: str) -> Any:
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


def _dtype(feature: Any) -> np.dtype:
    """The numpy dtype of a leaf; object for nested leaves (e.g. a `tfds.features.Sequence` of dicts)."""
    dtype = feature.np_dtype
    return np.dtype(object) if isinstance(dtype, Mapping) else np.dtype(dtype)


def _shape(feature: Any) -> tuple[Any, ...]:
    """The shape of one example of a leaf; ``(None,)`` for nested leaves."""
    shape = feature.shape
    return (None,) if isinstance(shape, Mapping) else tuple(shape)


def _is_string(feature: Any) -> bool:
    return _dtype(feature).kind in "OSU"


def _is_class_label(feature: Any) -> bool:
    return isinstance(feature, tfds.features.ClassLabel)


def _is_image(feature: Any) -> bool:
    return isinstance(feature, tfds.features.Image)


def _infer_kind(feature: Any) -> str:
    if _is_class_label(feature) or _dtype(feature).kind in "iu":
        return "integer_categorical"
    if _is_string(feature):
        return "string_categorical"
    return "numeric"


# === Tasks ===


def _make_task(task_name: str, spec: Any, leaves: dict[str, Any], name: str) -> tuple[Task, str]:
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
    feature = _lookup(leaves, path, name, f"label of task {task_name!r}")
    shape = _shape(feature)
    if len(shape) > 1 or None in shape or _is_string(feature):
        raise ValueError(
            f"Expected the label feature {path!r} of task {task_name!r} to be a number or a fixed-length "
            f"vector of numbers. Received: {feature!r}"
        )
    kind = options.pop("kind", None)
    if kind is None:
        if _is_class_label(feature):
            kind = "binary" if feature.num_classes == 2 else "multiclass"
        elif _dtype(feature).kind == "b":
            kind = "binary"
        elif _dtype(feature).kind == "f":
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
            if not _is_class_label(feature):
                raise ValueError(
                    f"Expected `num_classes` for multiclass task {task_name!r}: its label feature {path!r} "
                    f"is not a tfds ClassLabel. Received: {feature!r}"
                )
            options["num_classes"] = int(feature.num_classes)
    elif shape and options.get("units") is None:
        options["units"] = int(shape[0])
    return Task(name=task_name, kind=kind, **options), path


# === Inputs ===


def _input_paths(
    features: str | Sequence[str] | None, leaves: dict[str, Any], label_paths: list[str], info: Any, name: str
) -> str | list[str]:
    """The input feature path (one image / tensor) or paths (scalars), validated."""
    if features is None:
        keys = info.supervised_keys
        if keys and isinstance(keys[0], str) and keys[0] in leaves and keys[0] not in label_paths:
            features = keys[0]
        else:
            rest = [path for path in leaves if path not in label_paths]
            scalars = [path for path in rest if not _shape(leaves[path])]
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
        feature = _lookup(leaves, features, name, "input")
        if _is_image(feature) or _shape(feature):
            paths: str | list[str] = features
        else:
            paths = [features]
    elif isinstance(features, Sequence) and features and all(isinstance(f, str) for f in features):
        paths = list(features)
        duplicates = sorted({p for p in paths if paths.count(p) > 1})
        if duplicates:
            raise ValueError(f"Expected distinct input features. Received duplicates: {duplicates}")
        for path in paths:
            shape = _shape(_lookup(leaves, path, name, "input"))
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


def _column_name(path: str) -> str:
    return path.replace("/", "_")


def _feature_kinds(
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
        kind = overrides.get(path, _infer_kind(leaves[path]))
        if kind not in FEATURE_KINDS:
            raise ValueError(
                f"Expected the kind of feature {path!r} to be one of {list(FEATURE_KINDS)}. "
                f"Received: {kind!r}"
            )
        if (kind == "string_categorical") != _is_string(leaves[path]):
            raise ValueError(
                f"Feature {path!r} ({leaves[path]!r}) cannot have kind {kind!r}: only string features are "
                "string_categorical."
            )
        kinds[path] = kind
    names = [_column_name(path) for path in paths]
    if len(set(names)) != len(names):
        raise ValueError(f"Input features {paths} map to clashing column names {names}.")
    return kinds


def _image_size(image_size: Any) -> tuple[int, int] | None:
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


# === Reading ===


def _get(example: Any, path: str) -> Any:
    for key in path.split("/"):
        example = example[key]
    return example


def _read_split(
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
        dtype = _dtype(leaves[str(inputs)])
        image = tf.cast(image, tf.float32)
        if dtype.kind in "iu":
            image = image / float(np.iinfo(dtype).max)
        if size is not None:
            image = tf.clip_by_value(tf.image.resize(image, size), 0.0, 1.0)
        return image

    def select(example: Any) -> tuple[Any, dict[str, Any]]:
        labels = {task: _get(example, path) for task, path in label_paths.items()}
        if isinstance(inputs, str):
            x = _get(example, inputs)
            return (to_image(x) if _is_image(leaves[inputs]) else tf.cast(x, tf.float32)), labels
        return {path: _get(example, path) for path in inputs}, labels

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
        columns[_column_name(path)] = values
    return Split(x=columns, y=y)


def _check_split_names(split: str, info: Any, name: str) -> None:
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


# === Public ===


def load_tfds(
    name: str,
    *,
    tasks: Mapping[str, Mapping[str, Any] | None],
    features: str | Sequence[str] | None = None,
    split_train: str = "train",
    split_validation: str | None = None,
    validation_fraction: float = 0.1,
    split_test: str = "test",
    max_examples: int | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    seed: int = 0,
    image_size: int | Sequence[int] | None = None,
    feature_kinds: Mapping[str, str] | None = None,
    builder_kwargs: Mapping[str, Any] | None = None,
    download: bool = True,
) -> MultiTaskDataset:
    """Load a TFDS data set, reading one task from each of several label features.

    Our own TFDS data sets (``mtl_census``, ``mtl_synthetic_mmoe``, see :mod:`mtl_keras.data.tfds_builders`)
    are registered before loading.

    Args:
        name: TFDS name, optionally with a config and version (``"mtl_synthetic_mmoe/p0.5"``).
        tasks: ``{task name: spec}``; a spec holds ``feature`` (the label feature's path in the nested
            feature dict, ``"/"``-separated; default: the task name) and optionally ``kind``, ``num_classes``
            (read from a tfds ClassLabel when missing), ``loss``, ``metrics``, ``units`` as for `Task`.
        features: the input: one image or tensor feature path, a list of scalar feature paths, or None to
            infer it (see the module docstring).
        split_train, split_validation, split_test: TFDS split strings (slices such as ``"train[:80%]"``
            allowed). ``split_validation=None`` carves the validation split out of the training split with
            :func:`mtl_keras.data.split_validation`.
        validation_fraction: the carved fraction when ``split_validation`` is None.
        max_examples: read at most this many examples of each split (the first ones, files in order);
            None reads all.
        data_dir: the TFDS data folder; None uses TFDS's default.
        seed: seed of the carved validation split.
        image_size: resize images to this size (an int for square images, or ``(height, width)``); needed
            when the images have no fixed size.
        feature_kinds: ``{feature path: kind}`` overriding the inferred kind of scalar input features.
        builder_kwargs: more keyword arguments of `tfds.builder` (e.g. ``config``, ``version``).
        download: build / download the data set when ``data_dir`` does not hold it yet.

    Returns:
        A `MultiTaskDataset` named ``name`` with float32 labels.

    Raises:
        ValueError: an unknown feature path (the message lists the available ones), a task whose kind or
            number of classes cannot be read from the data, inputs that cannot be inferred, bad options.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"Expected `name` to be a TFDS data set name. Received: name={name!r}")
    if not isinstance(tasks, Mapping) or not tasks:
        raise ValueError(
            "Expected `tasks` to be a non-empty dict {task name: {'feature': path, 'kind': ...}}. "
            f"Received: tasks={tasks!r}"
        )
    for option, value in (("split_train", split_train), ("split_test", split_test)):
        if not isinstance(value, str) or not value:
            raise ValueError(f"Expected `{option}` to be a TFDS split string. Received: {option}={value!r}")
    if split_validation is None:
        validation_fraction = _check_fraction("validation_fraction", validation_fraction)
    elif not isinstance(split_validation, str) or not split_validation:
        raise ValueError(
            "Expected `split_validation` to be a TFDS split string or None. "
            f"Received: split_validation={split_validation!r}"
        )
    if max_examples is not None:
        max_examples = _check_positive_int("max_examples", max_examples)
    seed = _check_seed(seed)
    size = _image_size(image_size)

    builder = tfds.builder(
        name, data_dir=None if data_dir is None else os.fspath(data_dir), **dict(builder_kwargs or {})
    )
    info = builder.info
    leaves = _leaves(info.features)
    built = [_make_task(str(task_name), spec, leaves, name) for task_name, spec in tasks.items()]
    task_list = [task for task, _ in built]
    label_paths = {task.name: path for task, path in built}
    inputs = _input_paths(features, leaves, list(label_paths.values()), info, name)
    kinds: dict[str, str] = {}
    if isinstance(inputs, str):
        if feature_kinds:
            raise ValueError(
                f"`feature_kinds` applies to a list of scalar input features; the input is {inputs!r}."
            )
        feature = leaves[inputs]
        if _is_image(feature):
            if size is None and None in _shape(feature)[:2]:
                raise ValueError(
                    f"The images of feature {inputs!r} have no fixed size (shape {_shape(feature)}). "
                    "Pass `image_size`."
                )
        elif _is_string(feature) or _dtype(feature).kind not in "biuf" or None in _shape(feature):
            raise ValueError(
                f"Expected input feature {inputs!r} to be an image or a fixed-shape numeric tensor. "
                f"Received: {feature!r}"
            )
        elif size is not None:
            raise ValueError(f"`image_size` applies to image inputs; feature {inputs!r} is {feature!r}.")
    else:
        kinds = _feature_kinds(inputs, leaves, feature_kinds)
        if size is not None:
            raise ValueError("`image_size` applies to image inputs; the inputs are scalar features.")

    if download:
        builder.download_and_prepare()
    for split in (split_train, split_validation, split_test):
        if split is not None:
            _check_split_names(split, builder.info, name)

    def read(split: str) -> Split:
        return _read_split(builder, split, inputs, label_paths, leaves, kinds, size, max_examples)

    train = read(split_train)
    if split_validation is None:
        train, validation = _carve_validation(train, validation_fraction, seed)
        validation_text = f"{validation_fraction:g} of {split_train!r} (seed {seed})"
    else:
        validation = read(split_validation)
        validation_text = repr(split_validation)
    test = read(split_test)
    described = ", ".join(f"{task} <- {path}" for task, path in label_paths.items())
    return MultiTaskDataset(
        name=name,
        tasks=task_list,
        train=train,
        validation=validation,
        test=test,
        features={_column_name(path): kind for path, kind in kinds.items()} or None,
        description=(
            f"TFDS {name} {info.version}: tasks {described}; inputs {inputs}; splits train={split_train!r}, "
            f"validation={validation_text}, test={split_test!r}"
            + ("" if max_examples is None else f"; at most {max_examples} examples per split")
            + "."
        ),
    )


__all__ = ["TASK_SPEC_KEYS", "load_tfds"]
