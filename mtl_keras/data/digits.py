"""Two-digit image data sets: MultiMNIST and its small offline sibling MultiDigits.

MultiMNIST (Sabour et al., "Dynamic Routing Between Capsules", NeurIPS 2017; as used by Sener & Koltun,
"Multi-Task Learning as Multi-Objective Optimization", NeurIPS 2018): two digits are put on a 36×36
canvas at offsets (0, 0) and (6, 6), combined by a pixelwise maximum and resized to 28×28. Task ``left``
is the digit at (0, 0), task ``right`` the digit at (6, 6).

MultiDigits applies the same recipe to scikit-learn's bundled 8×8 digits (UCI optical recognition of
handwritten digits), scaled by 8/28: canvas 36·8/28 ≈ 10, offset 6·8/28 ≈ 2, resized back to 8×8. It needs
no download.

Composites never mix sources across splits: the source images are first divided into disjoint train /
validation / test pools, and each split's pairs are drawn from its own pool.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

from mtl_keras.data.base import MultiTaskDataset, Split, _check_fraction, _check_positive_int, _check_seed
from mtl_keras.option_types import Fraction, NonNegativeInt, PositiveInt
from mtl_keras.tasks import Task

TASKS = (Task("left", kind="multiclass", num_classes=10), Task("right", kind="multiclass", num_classes=10))

_CHUNK = 4096


def overlay(
    left: np.ndarray,
    right: np.ndarray,
    *,
    canvas_size: int,
    offset: int,
    image_size: int | None,
    resize_method: str = "bilinear",
) -> np.ndarray:
    """Put ``left`` at (0, 0) and ``right`` at (offset, offset) on a square canvas, take the pixelwise
    maximum and resize to ``image_size`` (None keeps the canvas size).

    Args:
        left, right: ``(n, h, w)`` images in [0, 1].

    Returns:
        float32 ``(n, size, size, 1)`` images in [0, 1].
    """
    n, height, width = left.shape
    if right.shape != left.shape:
        raise ValueError(
            f"Expected `left` and `right` of the same shape. Received: {left.shape} and {right.shape}"
        )
    if offset < 0 or max(height, width) + offset > canvas_size:
        raise ValueError(
            f"Expected images of {height}×{width} at offset {offset} to fit on the canvas. "
            f"Received: canvas_size={canvas_size}, offset={offset}"
        )
    outputs = []
    for start in range(0, n, _CHUNK):
        stop = min(start + _CHUNK, n)
        canvas = np.zeros((stop - start, canvas_size, canvas_size), dtype=np.float32)
        canvas[:, :height, :width] = left[start:stop]
        shifted = canvas[:, offset : offset + height, offset : offset + width]
        np.maximum(shifted, right[start:stop], out=shifted)
        images = canvas[..., None]
        if image_size is not None and image_size != canvas_size:
            images = tf.image.resize(images, (image_size, image_size), method=resize_method).numpy()
        outputs.append(np.clip(images, 0.0, 1.0).astype(np.float32))
    if not outputs:
        size = canvas_size if image_size is None else image_size
        return np.zeros((0, size, size, 1), dtype=np.float32)
    return np.concatenate(outputs)


def _pools(
    num_images: int, validation_fraction: float, test_fraction: float, rng: np.random.Generator
) -> dict:
    if validation_fraction + test_fraction >= 1.0:
        raise ValueError(
            "Expected `validation_fraction + test_fraction` < 1. Received: "
            f"validation_fraction={validation_fraction}, test_fraction={test_fraction}"
        )
    permutation = rng.permutation(num_images)
    num_test = max(round(test_fraction * num_images), 2)
    num_validation = max(round(validation_fraction * num_images), 2)
    return {
        "test": permutation[:num_test],
        "validation": permutation[num_test : num_test + num_validation],
        "train": permutation[num_test + num_validation :],
    }


def _compose(
    images: np.ndarray, labels: np.ndarray, pool: np.ndarray, n: int, rng: np.random.Generator, **overlay_args
) -> Split:
    """``n`` composites from ``pool``: every pool image is a left digit once before any repeats; the right
    digit is a different, random pool image."""
    if pool.size < 2:
        raise ValueError(f"Expected at least 2 source images per split. Received a pool of {pool.size}.")
    left = np.resize(rng.permutation(pool.size), n)
    right = (left + rng.integers(1, pool.size, size=n)) % pool.size
    left, right = pool[left], pool[right]
    x = overlay(images[left], images[right], **overlay_args)
    return Split(x=x, y={"left": labels[left], "right": labels[right]})


def _build(
    name: str,
    images: dict[str, np.ndarray],
    labels: dict[str, np.ndarray],
    pools: dict[str, np.ndarray],
    sizes: dict[str, int | None],
    rng: np.random.Generator,
    description: str,
    **overlay_args,
) -> MultiTaskDataset:
    splits = {}
    for split_name in ("train", "validation", "test"):
        pool = pools[split_name]
        size = sizes[split_name]
        n = pool.size if size is None else _check_positive_int(f"n_{split_name}", size)
        splits[split_name] = _compose(images[split_name], labels[split_name], pool, n, rng, **overlay_args)
    return MultiTaskDataset(
        name=name,
        tasks=list(TASKS),
        train=splits["train"],
        validation=splits["validation"],
        test=splits["test"],
        description=description,
    )


def multidigits(
    seed: NonNegativeInt = 0,
    n_train: PositiveInt | None = 10_000,
    n_validation: PositiveInt | None = 1_000,
    n_test: PositiveInt | None = 2_000,
    *,
    validation_fraction: Fraction = 0.1,
    test_fraction: Fraction = 0.2,
    canvas_size: int = 10,
    offset: int = 2,
    image_size: int | None = 8,
    resize_method: str = "bilinear",
) -> MultiTaskDataset:
    """MultiDigits: MultiMNIST's recipe on scikit-learn's 1,797 bundled 8×8 digits (offline, fast).

    Args:
        seed: seeds the pools and the pairs.
        n_train, n_validation, n_test: number of composites per split; None makes one per pool image.
        validation_fraction, test_fraction: fractions of the 1,797 source digits in the validation / test
            pools (disjoint from the train pool).
        canvas_size, offset: the canvas and the right digit's offset, MultiMNIST's 36 and 6 scaled by 8/28.
        image_size: output size (8 like the source digits); None keeps the canvas size.
        resize_method: a `tf.image.resize` method.

    Returns:
        A `MultiTaskDataset` named ``"multidigits"`` with float32 NHWC images in [0, 1] and multiclass tasks
        ``left``, ``right`` (class indices as float32).
    """
    from sklearn.datasets import load_digits

    rng = np.random.default_rng(_check_seed(seed))
    validation_fraction = _check_fraction("validation_fraction", validation_fraction)
    test_fraction = _check_fraction("test_fraction", test_fraction)
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)
    labels = digits.target.astype(np.float32)
    pools = _pools(len(images), validation_fraction, test_fraction, rng)
    return _build(
        "multidigits",
        {k: images for k in pools},
        {k: labels for k in pools},
        pools,
        {"train": n_train, "validation": n_validation, "test": n_test},
        rng,
        f"MultiDigits: two scikit-learn 8x8 digits on a {canvas_size}x{canvas_size} canvas at (0,0) and "
        f"({offset},{offset}), pixelwise max, resized to {image_size}.",
        canvas_size=_check_positive_int("canvas_size", canvas_size),
        offset=_check_positive_int("offset", offset, allow_zero=True),
        image_size=None if image_size is None else _check_positive_int("image_size", image_size),
        resize_method=resize_method,
    )


def _to_numpy(dataset: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """(image, label) dataset -> float32 ``(n, 28, 28)`` images in [0, 1] and float32 labels.

    Batches and concatenates (``tfds.load(batch_size=-1)`` aborts under ``tfds.testing.mock_data``).
    """
    images, labels = [], []
    for image_batch, label_batch in dataset.batch(10_000).as_numpy_iterator():
        images.append(image_batch.reshape(image_batch.shape[0], 28, 28))
        labels.append(label_batch)
    if not images:
        raise ValueError("Expected MNIST splits with at least one image. Received an empty split.")
    return np.concatenate(images).astype(np.float32) / 255.0, np.concatenate(labels).astype(np.float32)


def multimnist(
    seed: NonNegativeInt = 0,
    n_train: PositiveInt | None = None,
    n_validation: PositiveInt | None = None,
    n_test: PositiveInt | None = None,
    *,
    validation_fraction: Fraction = 1 / 12,
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    canvas_size: int = 36,
    offset: int = 6,
    image_size: int | None = 28,
    resize_method: str = "bilinear",
) -> MultiTaskDataset:
    """MultiMNIST built from ``tfds.load("mnist")`` (36×36 canvas, offsets (0, 0) and (6, 6), max, 28×28).

    MNIST's training images are divided into a train pool and a validation pool (``validation_fraction``,
    5,000 of 60,000 by default); MNIST's test images form the test pool.

    Args:
        seed: seeds the pools and the pairs.
        n_train, n_validation, n_test: composites per split; None (default) makes one per pool image.
        validation_fraction: fraction of MNIST's training images in the validation pool.
        data_dir, download: passed to `tfds.load` (``download=True`` fetches MNIST once if it is not in
            ``data_dir``).
        canvas_size, offset, image_size, resize_method: the recipe; see `overlay`.

    Returns:
        A `MultiTaskDataset` named ``"multimnist"`` with float32 ``(n, 28, 28, 1)`` images in [0, 1] and
        multiclass tasks ``left``, ``right``.
    """
    import tensorflow_datasets as tfds

    rng = np.random.default_rng(_check_seed(seed))
    validation_fraction = _check_fraction("validation_fraction", validation_fraction)
    train_data, test_data = tfds.load(
        "mnist",
        split=["train", "test"],
        as_supervised=True,
        data_dir=None if data_dir is None else os.fspath(data_dir),
        download=download,
    )
    train_images, train_labels = _to_numpy(train_data)
    test_images, test_labels = _to_numpy(test_data)
    permutation = rng.permutation(len(train_images))
    num_validation = min(max(round(validation_fraction * len(train_images)), 2), len(train_images) - 2)
    pools = {
        "train": permutation[num_validation:],
        "validation": permutation[:num_validation],
        "test": np.arange(len(test_images)),
    }
    return _build(
        "multimnist",
        {"train": train_images, "validation": train_images, "test": test_images},
        {"train": train_labels, "validation": train_labels, "test": test_labels},
        pools,
        {"train": n_train, "validation": n_validation, "test": n_test},
        rng,
        "MultiMNIST (Sabour et al. 2017; Sener & Koltun 2018) from tfds mnist: "
        f"{canvas_size}x{canvas_size} canvas, offsets (0,0) and ({offset},{offset}), pixelwise max, "
        f"resized to {image_size}.",
        canvas_size=_check_positive_int("canvas_size", canvas_size),
        offset=_check_positive_int("offset", offset, allow_zero=True),
        image_size=None if image_size is None else _check_positive_int("image_size", image_size),
        resize_method=resize_method,
    )
