import inspect

import pytest

from mtl_keras import data
from mtl_keras.data import DATASETS, MultiTaskDataset, load_dataset


def test_datasets_registry_names_the_loaders():
    assert {
        "census": data.load_census,
        "census_kdd": data.load_census_kdd,
        "click_conversion": data.click_conversion,
        "synthetic_mmoe": data.synthetic_mmoe,
        "sincos": data.sincos,
        "synthetic_text": data.synthetic_text,
        "gradnorm_toy": data.gradnorm_toy,
        "multidigits": data.multidigits,
        "multimnist": data.multimnist,
        "tfds": data.load_tfds,
        "csv": data.from_csv,
        "parquet": data.from_parquet,
        "tfrecord": data.from_tfrecord,
        "per_task": data.per_task,
    } == DATASETS
    for name, loader in DATASETS.items():
        # A user's files are split by `split: {seed: ...}`; generators and bundled sets take `seed`.
        parameter = "split" if name in ("csv", "parquet", "tfrecord") else "seed"  # per_task: seed
        assert parameter in inspect.signature(loader).parameters
        assert loader.__doc__


def test_load_dataset_by_name():
    dataset = load_dataset("sincos", n=10, n_validation=2, n_test=3, seed=1)
    assert isinstance(dataset, MultiTaskDataset) and dataset.name == "sincos"
    assert load_dataset("synthetic_mmoe", p=0.5, n=4, n_validation=2, n_test=2).name == "synthetic_mmoe"
    with pytest.raises(ValueError, match=r"Unknown data set 'censsu'.*Did you mean 'census'"):
        load_dataset("censsu")


def test_public_names_are_exported():
    for name in data.__all__:
        assert hasattr(data, name)
