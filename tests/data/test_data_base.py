import re

import numpy as np
import pytest

from mtl_keras.data.base import MultiTaskDataset, Split, split_validation
from mtl_keras.tasks import Task


def _split(n=10):
    return Split(x=np.arange(n, dtype=np.float32)[:, None], y={"a": np.arange(n), "b": np.arange(n) * 2.0})


def test_split_converts_labels_to_float32_and_has_length():
    split = _split(7)
    assert len(split) == 7
    assert split.y["a"].dtype == np.float32
    assert split.task_names == ["a", "b"]


def test_split_take_keeps_rows_together():
    split = Split(
        x={"num": np.arange(5, dtype=np.float32), "cat": np.array(list("abcde"))},
        y={"t": np.array([0.0, 1.0, np.nan, 3.0, 4.0])},
    )
    part = split.take([4, 0, 2])
    assert len(part) == 3
    np.testing.assert_array_equal(part.x["num"], [4.0, 0.0, 2.0])
    np.testing.assert_array_equal(part.x["cat"], ["e", "a", "c"])
    np.testing.assert_array_equal(part.y["t"], [4.0, 0.0, np.nan])


def test_split_take_rejects_bad_indices():
    with pytest.raises(ValueError, match="Expected `indices`"):
        _split().take([0.5])
    with pytest.raises(ValueError, match="Expected `indices` in"):
        _split(3).take([3])


def test_split_rejects_mismatched_lengths_and_empty_labels():
    with pytest.raises(ValueError, match="same length"):
        Split(x=np.zeros((3, 2)), y={"a": np.zeros(4)})
    with pytest.raises(ValueError, match="Expected `y`"):
        Split(x=np.zeros((3, 2)), y={})
    with pytest.raises(ValueError, match="at least one feature"):
        Split(x={}, y={"a": np.zeros(3)})


def test_split_validation_is_deterministic_disjoint_and_complete():
    split = _split(100)
    train, validation = split_validation(split, 0.2, seed=3)
    again_train, again_validation = split_validation(split, 0.2, seed=3)
    assert len(train) == 80 and len(validation) == 20
    np.testing.assert_array_equal(train.x, again_train.x)
    np.testing.assert_array_equal(validation.x, again_validation.x)
    ids_train, ids_validation = set(train.y["a"].tolist()), set(validation.y["a"].tolist())
    assert not ids_train & ids_validation
    assert ids_train | ids_validation == set(range(100))
    _, other = split_validation(split, 0.2, seed=4)
    assert set(other.y["a"].tolist()) != ids_validation


@pytest.mark.parametrize("fraction", [0, 1, 1.5, -0.1, "0.1", True])
def test_split_validation_rejects_bad_fraction(fraction):
    with pytest.raises(
        ValueError, match=r"Expected `fraction` to be a number in the open interval \(0, 1\)\. Received"
    ):
        split_validation(_split(), fraction, seed=0)


def test_split_validation_rejects_bad_seed():
    message = "Expected `seed` to be a non-negative integer. Received: seed=-1"
    with pytest.raises(ValueError, match=re.escape(message)):
        split_validation(_split(), 0.5, seed=-1)


def test_multitask_dataset_checks_tasks_and_features():
    tasks = [Task("a"), Task("b")]
    split = _split()
    dataset = MultiTaskDataset("toy", tasks, split, split, split)
    assert dataset.task_names == ["a", "b"]
    assert list(dataset.splits) == ["train", "validation", "test"]
    assert "toy" in repr(dataset)
    with pytest.raises(ValueError, match="exactly the tasks"):
        MultiTaskDataset("toy", [Task("a")], split, split, split)
    with pytest.raises(ValueError, match="non-empty list of Task"):
        MultiTaskDataset("toy", [], split, split, split)
    dict_split = Split(x={"f": np.zeros(3)}, y={"a": np.zeros(3), "b": np.zeros(3)})
    with pytest.raises(ValueError, match="Expected `features`"):
        MultiTaskDataset("toy", tasks, dict_split, dict_split, dict_split)
    with pytest.raises(ValueError, match="one of"):
        MultiTaskDataset("toy", tasks, dict_split, dict_split, dict_split, features={"f": "float"})
    with pytest.raises(ValueError, match="exactly the features"):
        MultiTaskDataset("toy", tasks, dict_split, dict_split, dict_split, features={"g": "numeric"})
    with pytest.raises(ValueError, match="same kind of inputs"):
        MultiTaskDataset("toy", tasks, dict_split, split, split, features={"f": "numeric"})
