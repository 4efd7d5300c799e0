import re

import numpy as np
import pytest
import tensorflow_datasets as tfds
from sklearn.datasets import load_digits

from mtl_keras.data.digits import multidigits, multimnist, overlay


def test_overlay_places_digits_and_takes_the_maximum():
    left = np.zeros((1, 2, 2), dtype=np.float32)
    right = np.zeros((1, 2, 2), dtype=np.float32)
    left[0] = [[0.2, 0.4], [0.6, 0.8]]
    right[0] = [[0.5, 0.1], [0.3, 1.0]]
    out = overlay(left, right, canvas_size=3, offset=1, image_size=None)
    expected = np.array([[0.2, 0.4, 0.0], [0.6, 0.8, 0.1], [0.0, 0.3, 1.0]], dtype=np.float32)
    assert out.shape == (1, 3, 3, 1) and out.dtype == np.float32
    np.testing.assert_allclose(out[0, :, :, 0], expected)
    resized = overlay(left, right, canvas_size=3, offset=1, image_size=2)
    assert resized.shape == (1, 2, 2, 1) and resized.min() >= 0.0 and resized.max() <= 1.0
    with pytest.raises(ValueError, match="fit on the canvas"):
        overlay(left, right, canvas_size=2, offset=1, image_size=None)


def test_multidigits_shapes_dtypes_and_tasks():
    data = multidigits(seed=0, n_train=300, n_validation=50, n_test=60)
    assert [len(s) for s in data.splits.values()] == [300, 50, 60]
    for split in data.splits.values():
        assert split.x.shape[1:] == (8, 8, 1) and split.x.dtype == np.float32
        assert split.x.min() >= 0.0 and split.x.max() <= 1.0
        for labels in split.y.values():
            assert labels.dtype == np.float32
            assert set(np.unique(labels).tolist()) <= set(range(10))
    assert data.task_names == ["left", "right"]
    assert all(t.kind == "multiclass" and t.num_classes == 10 for t in data.tasks)
    assert set(np.unique(data.train.y["left"]).tolist()) == set(range(10))


def test_multidigits_splits_use_disjoint_source_digits():
    # Without overlap (offset 8 on a 16×16 canvas, no resize) each composite shows both digits untouched, so
    # every composite can be traced back to its two source images.
    data = multidigits(
        seed=1, n_train=2_000, n_validation=400, n_test=400, canvas_size=16, offset=8, image_size=None
    )
    digits = load_digits()
    index = {(image / 16.0).astype(np.float32).tobytes(): i for i, image in enumerate(digits.images)}
    assert len(index) == len(digits.images)
    sources = {}
    for name, split in data.splits.items():
        left = [index[image.tobytes()] for image in split.x[:, :8, :8, 0]]
        right = [index[image.tobytes()] for image in split.x[:, 8:, 8:, 0]]
        np.testing.assert_array_equal(split.y["left"], digits.target[left])
        np.testing.assert_array_equal(split.y["right"], digits.target[right])
        assert all(a != b for a, b in zip(left, right, strict=True))
        sources[name] = set(left) | set(right)
    assert not sources["train"] & sources["test"]
    assert not sources["train"] & sources["validation"]
    assert not sources["validation"] & sources["test"]
    assert len(sources["test"]) == round(0.2 * 1797)


def test_multidigits_is_deterministic_and_validates_arguments():
    a, b = (
        multidigits(seed=3, n_train=20, n_validation=5, n_test=5),
        multidigits(seed=3, n_train=20, n_validation=5, n_test=5),
    )
    np.testing.assert_array_equal(a.train.x, b.train.x)
    np.testing.assert_array_equal(a.test.y["right"], b.test.y["right"])
    c = multidigits(seed=4, n_train=20, n_validation=5, n_test=5)
    assert not np.array_equal(a.train.x, c.train.x)
    assert len(multidigits(n_train=None, n_validation=None, n_test=None).test) == round(0.2 * 1797)
    message = "Expected `n_train` to be a positive integer. Received: n_train=-3"
    with pytest.raises(ValueError, match=re.escape(message)):
        multidigits(n_train=-3)
    with pytest.raises(ValueError, match="Expected `test_fraction`"):
        multidigits(test_fraction=0.0)
    with pytest.raises(ValueError, match="validation_fraction \\+ test_fraction"):
        multidigits(validation_fraction=0.5, test_fraction=0.5)


def _trace(composites, sources):
    """Find each composite's two source images (mock images are random noise, so the strips are unique)."""
    top = {image[:6].tobytes(): i for i, image in enumerate(sources)}  # rows 0-5: only the left digit
    bottom = {image[22:].tobytes(): i for i, image in enumerate(sources)}  # canvas rows 28-33: only the right
    left = np.array([top[c[:6, :28].tobytes()] for c in composites])
    right = np.array([bottom[c[28:34, 6:34].tobytes()] for c in composites])
    return left, right


def test_multimnist_from_mocked_tfds(tmp_path):
    with tfds.testing.mock_data(num_examples=60, data_dir=str(tmp_path)):
        data = multimnist(seed=0, data_dir=tmp_path)
        again = multimnist(seed=0, data_dir=tmp_path, n_train=7, n_test=3)
        raw = multimnist(seed=0, data_dir=tmp_path, image_size=None)
        mnist = tfds.load("mnist", split="train", data_dir=str(tmp_path), as_supervised=True)
        images, labels = map(np.stack, zip(*mnist.as_numpy_iterator(), strict=True))
    assert [len(s) for s in data.splits.values()] == [55, 5, 60]  # one composite per pool image
    assert data.train.x.shape[1:] == (28, 28, 1) and data.train.x.dtype == np.float32
    assert data.train.x.min() >= 0.0 and data.train.x.max() <= 1.0
    assert data.task_names == ["left", "right"]
    assert set(np.unique(data.test.y["left"]).tolist()) <= set(range(10))
    assert [len(s) for s in again.splits.values()] == [7, 5, 3]

    # the recipe, rebuilt independently: 36×36 canvas, left at (0, 0), right at (6, 6), pixelwise maximum
    sources = images[..., 0].astype(np.float32) / 255.0
    pools = {}
    for name in ("train", "validation"):
        composites = raw.splits[name].x[..., 0]
        assert composites.shape[1:] == (36, 36)
        left, right = _trace(composites, sources)
        canvas = np.zeros((len(left), 36, 36), dtype=np.float32)
        canvas[:, :28, :28] = sources[left]
        canvas[:, 6:34, 6:34] = np.maximum(canvas[:, 6:34, 6:34], sources[right])
        np.testing.assert_array_equal(composites, canvas)
        np.testing.assert_array_equal(raw.splits[name].y["left"], labels[left])
        np.testing.assert_array_equal(raw.splits[name].y["right"], labels[right])
        pools[name] = set(left.tolist()) | set(right.tolist())
    assert len(pools["train"]) == 55 and len(pools["validation"]) == 5
    assert not pools["train"] & pools["validation"]
