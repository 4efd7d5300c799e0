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

import os
from collections.abc import Mapping, Sequence
from typing import Any

import tensorflow_datasets as tfds

from mtl_keras.data import tfds_builders  # noqa: F401  (registers mtl_census and mtl_synthetic_mmoe)
from mtl_keras.data.base import MultiTaskDataset, Split, _check_fraction, _check_positive_int, _check_seed
from mtl_keras.data.base import split_validation as _carve_validation
from mtl_keras.data.tfds_features import column_name, leaves_of
from mtl_keras.data.tfds_reading import check_split_names, read_split
from mtl_keras.data.tfds_specs import TASK_SPEC_KEYS, image_size_of, input_kinds, input_paths, make_task


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
    size = image_size_of(image_size)

    builder = tfds.builder(
        name, data_dir=None if data_dir is None else os.fspath(data_dir), **dict(builder_kwargs or {})
    )
    info = builder.info
    leaves = leaves_of(info.features)
    built = [make_task(str(task_name), spec, leaves, name) for task_name, spec in tasks.items()]
    task_list = [task for task, _ in built]
    label_paths = {task.name: path for task, path in built}
    inputs = input_paths(features, leaves, list(label_paths.values()), info, name)
    kinds = input_kinds(inputs, leaves, feature_kinds, size)

    if download:
        builder.download_and_prepare()
    for split in (split_train, split_validation, split_test):
        if split is not None:
            check_split_names(split, builder.info, name)

    def read(split: str) -> Split:
        return read_split(builder, split, inputs, label_paths, leaves, kinds, size, max_examples)

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
        features={column_name(path): kind for path, kind in kinds.items()} or None,
        description=(
            f"TFDS {name} {info.version}: tasks {described}; inputs {inputs}; splits train={split_train!r}, "
            f"validation={validation_text}, test={split_test!r}"
            + ("" if max_examples is None else f"; at most {max_examples} examples per split")
            + "."
        ),
    )


__all__ = ["TASK_SPEC_KEYS", "load_tfds"]
