import numpy as np
import pytest
import tensorflow_datasets as tfds

from mtl_keras.data import DATASETS, load_census, load_dataset, load_tfds, synthetic_mmoe
from mtl_keras.data.census import FEATURES
from mtl_keras.data.tfds_builders import CensusConfig, SyntheticMmoeConfig

NUM_EXAMPLES = 12
CELEB_TASKS = {
    "smiling": {"feature": "attributes/Smiling", "kind": "binary"},
    "male": {"feature": "attributes/Male"},
    "young": {"feature": "attributes/Young", "kind": "binary"},
}


@pytest.fixture
def mocked(tmp_path):
    with tfds.testing.mock_data(num_examples=NUM_EXAMPLES, data_dir=str(tmp_path)):
        yield


def _raw(name, split, count):
    """The mocked examples, read with tfds.load (as_numpy, not batch_size=-1)."""
    dataset = tfds.load(name, split=split, shuffle_files=False).take(count)
    return list(dataset.as_numpy_iterator())


def test_celeb_a_attributes_as_tasks_with_image_input(mocked):
    data = load_tfds("celeb_a", tasks=CELEB_TASKS, features="image", max_examples=10)
    assert data.name == "celeb_a" and data.task_names == ["smiling", "male", "young"]
    assert all(task.kind == "binary" for task in data.tasks)
    assert data.features is None
    assert [len(s) for s in data.splits.values()] == [9, 1, 10]
    test = data.test
    assert test.x.shape == (10, 218, 178, 3) and test.x.dtype == np.float32
    raw = _raw("celeb_a", "test", 10)
    np.testing.assert_allclose(test.x, np.stack([r["image"] for r in raw]) / 255.0, rtol=0, atol=1e-7)
    for task, spec in CELEB_TASKS.items():
        attribute = spec["feature"].split("/")[1]
        expected = np.array([r["attributes"][attribute] for r in raw], dtype=np.float32)
        np.testing.assert_array_equal(test.y[task], expected)
        assert test.y[task].dtype == np.float32


def test_celeb_a_resized_images_stay_in_unit_range(mocked):
    data = load_tfds(
        "celeb_a", tasks=CELEB_TASKS, features="image", max_examples=4, image_size=(16, 12), seed=1
    )
    for split in data.splits.values():
        assert split.x.shape[1:] == (16, 12, 3) and split.x.dtype == np.float32
        assert split.x.min() >= 0.0 and split.x.max() <= 1.0


def test_mnist_single_label_via_load_dataset(mocked):
    assert DATASETS["tfds"] is load_tfds
    data = load_dataset("tfds", name="mnist", tasks={"digit": {"feature": "label"}}, validation_fraction=0.25)
    (task,) = data.tasks
    assert task.name == "digit" and task.kind == "multiclass" and task.num_classes == 10
    assert [len(s) for s in data.splits.values()] == [9, 3, NUM_EXAMPLES]
    assert data.train.x.shape == (9, 28, 28, 1)  # the supervised input, inferred
    raw = _raw("mnist", "test", NUM_EXAMPLES)
    np.testing.assert_array_equal(data.test.y["digit"], [r["label"] for r in raw])
    assert set(np.unique(data.test.y["digit"])) <= set(range(10))


def test_scalar_features_become_raw_columns_with_kinds(mocked):
    data = load_tfds(
        "celeb_a",
        tasks={"smiling": {"feature": "attributes/Smiling"}},
        features=["landmarks/nose_x", "identity/Identity_No", "attributes/Male"],
        feature_kinds={"landmarks/nose_x": "numeric"},
        split_validation="validation",
    )
    assert data.features == {
        "landmarks_nose_x": "numeric",
        "identity_Identity_No": "integer_categorical",
        "attributes_Male": "numeric",
    }
    x = data.validation.x
    assert x["landmarks_nose_x"].dtype == np.float32 and x["identity_Identity_No"].dtype == np.int64
    raw = _raw("celeb_a", "validation", NUM_EXAMPLES)
    np.testing.assert_array_equal(x["identity_Identity_No"], [r["identity"]["Identity_No"] for r in raw])
    np.testing.assert_array_equal(x["attributes_Male"], [float(r["attributes"]["Male"]) for r in raw])


@pytest.mark.parametrize(
    ("tasks", "features", "message"),
    [
        (
            {"smiling": {"feature": "attributes/Smilng"}},
            "image",
            r"Unknown feature 'attributes/Smilng' \(label of task 'smiling'\).*"
            r"Available features: \[.*'attributes/Young'.*\]\. Did you mean 'attributes/Smiling'\?",
        ),
        ({"smiling": {"feature": "Smiling"}}, "image", r"Did you mean 'attributes/Smiling'\?"),
        ({"smiling": {"feature": "attributes/Smiling"}}, "imgae", r"Unknown feature 'imgae' \(input\)"),
        ({"smiling": {"featur": "attributes/Smiling"}}, "image", r"Unknown keys \['featur'\].*'feature'"),
        ({"nose": {"feature": "landmarks/nose_x"}}, "image", r"Cannot infer the kind of task 'nose'"),
        ({"nose": {"feature": "landmarks/nose_x", "kind": "multiclass"}}, "image", r"`num_classes`"),
        ({"smiling": {"feature": "attributes/Smiling"}}, None, r"Cannot infer the input features"),
        ({"smiling": {"feature": "attributes/Smiling"}}, ["image"], r"Expected scalar features"),
        (
            {"smiling": {"feature": "attributes/Smiling"}},
            ["attributes/Smiling"],
            r"both an input and a task label",
        ),
        ({}, "image", r"non-empty dict"),
    ],
)
def test_clear_errors(mocked, tasks, features, message):
    with pytest.raises(ValueError, match=message):
        load_tfds("celeb_a", tasks=tasks, features=features)


def test_option_errors(mocked):
    tasks = {"digit": {"feature": "label"}}
    with pytest.raises(ValueError, match="max_examples"):
        load_tfds("mnist", tasks=tasks, max_examples=0)
    with pytest.raises(ValueError, match="image_size"):
        load_tfds("celeb_a", tasks=CELEB_TASKS, features=["landmarks/nose_x"], image_size=8)
    with pytest.raises(ValueError, match=r"feature_kinds.*not inputs.*Did you mean 'landmarks/nose_x'"):
        load_tfds(
            "celeb_a",
            tasks=CELEB_TASKS,
            features=["landmarks/nose_x"],
            feature_kinds={"landmarks/nose_y": "numeric"},
        )
    with pytest.raises(ValueError, match="validation_fraction"):
        load_tfds("mnist", tasks=tasks, validation_fraction=1.5)


def test_own_census_builder_matches_load_census(tmp_path):
    rows = 40
    data = load_tfds(
        "mtl_census",
        tasks={"income": {}, "never_married": {}},
        data_dir=tmp_path,
        builder_kwargs={"config": CensusConfig(name="small", max_rows=rows)},
    )
    reference = load_census(max_rows=rows)
    assert data.features == FEATURES  # every non-label feature, kinds from the tfds types
    assert [(t.name, t.kind) for t in data.tasks] == [("income", "binary"), ("never_married", "binary")]
    for name, split in data.splits.items():
        expected = reference.splits[name]
        assert len(split) == len(expected)
        for column in FEATURES:
            np.testing.assert_array_equal(split.x[column], expected.x[column], err_msg=column)
        for task in ("income", "never_married"):
            np.testing.assert_array_equal(split.y[task], expected.y[task])
    with pytest.raises(ValueError, match=r"Unknown split 'tets'.*Did you mean 'test'"):
        load_tfds(
            "mtl_census",
            tasks={"income": {}},
            split_test="tets",
            data_dir=tmp_path,
            builder_kwargs={"config": CensusConfig(name="small", max_rows=rows)},
        )


def test_own_synthetic_builder_with_named_splits(tmp_path):
    config = SyntheticMmoeConfig(name="p0.9_small", p=0.9, n=16, n_validation=4, n_test=5, dim=3)
    data = load_dataset(
        "tfds",
        name="mtl_synthetic_mmoe",
        tasks={"y1": {}, "y2": {"metrics": ["mae"]}},
        features="x",
        split_validation="validation",
        data_dir=tmp_path,
        builder_kwargs={"config": config},
    )
    reference = synthetic_mmoe(0.9, n=16, n_validation=4, n_test=5, dim=3)
    assert [t.kind for t in data.tasks] == ["regression", "regression"] and data.tasks[1].metrics == ["mae"]
    for name, split in data.splits.items():
        np.testing.assert_array_equal(split.x, reference.splits[name].x)
        np.testing.assert_array_equal(split.y["y2"], reference.splits[name].y["y2"])
