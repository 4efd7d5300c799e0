import csv
import gzip
import io
import sys
from importlib import resources

import numpy as np
import pytest
import tensorflow_datasets as tfds

from mtl_keras.data import load_census, synthetic_mmoe
from mtl_keras.data.census import FEATURES
from mtl_keras.data.tfds_builders import CensusConfig, MtlCensus, MtlSyntheticMmoe, SyntheticMmoeConfig

ROWS = 30


def _raw_rows(filename, count):
    """The first ``count`` rows of a shipped CSV as dicts, read without the code under test."""
    data = resources.files("mtl_keras.data").joinpath("files", filename + ".gz").read_bytes()
    reader = csv.DictReader(io.StringIO(gzip.decompress(data).decode("utf-8")))
    return [row for _, row in zip(range(count), reader, strict=False)]


def _as_columns(dataset):
    rows = list(dataset.as_numpy_iterator())
    return {key: np.array([row[key] for row in rows]) for key in rows[0]}


@pytest.fixture(scope="module")
def census_dir(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("tfds")
    builder = tfds.builder(
        "mtl_census", data_dir=str(data_dir), config=CensusConfig(name="small", max_rows=ROWS)
    )
    builder.download_and_prepare()
    return data_dir


def test_builders_are_registered_under_their_names(tmp_path):
    assert {"mtl_census", "mtl_synthetic_mmoe"} <= set(tfds.list_builders(with_community_datasets=False))
    census = tfds.builder("mtl_census", data_dir=str(tmp_path))
    assert isinstance(census, MtlCensus) and census.builder_config.name == "full"
    assert census.builder_config.max_rows is None
    features = census.info.features
    assert set(features.keys()) == set(FEATURES) | {"income", "never_married"}
    for name, kind in FEATURES.items():
        expected = tfds.features.Text if kind == "string_categorical" else tfds.features.Tensor
        assert isinstance(features[name], expected), name
    assert features["income"].names == ["<=50K", ">50K"] and features["never_married"].num_classes == 2

    synthetic = tfds.builder("mtl_synthetic_mmoe/p0.9", data_dir=str(tmp_path))
    assert isinstance(synthetic, MtlSyntheticMmoe)
    assert [c.name for c in MtlSyntheticMmoe.BUILDER_CONFIGS] == ["p0.0", "p0.5", "p0.9", "p1.0"]
    assert synthetic.builder_config.p == 0.9 and synthetic.builder_config.n == 10_000
    assert synthetic.info.features["x"].shape == (100,)
    assert tfds.builder("mtl_synthetic_mmoe", data_dir=str(tmp_path)).builder_config.p == 0.0


def test_census_builds_offline_and_matches_load_census(census_dir):
    config = CensusConfig(name="small", max_rows=ROWS)
    train, test = tfds.load(
        "mtl_census", split=["train", "test"], data_dir=str(census_dir), builder_kwargs={"config": config}
    )
    builder = tfds.builder("mtl_census", data_dir=str(census_dir), config=config)
    assert {k: v.num_examples for k, v in builder.info.splits.items()} == {"train": ROWS, "test": ROWS}

    # Test split: same rows, same order, same values as load_census.
    reference = load_census(max_rows=ROWS).test
    columns = _as_columns(test)
    for name in FEATURES:
        values = columns[name]
        if values.dtype.kind == "S":
            values = values.astype(str)
        np.testing.assert_array_equal(values, reference.x[name], err_msg=name)
    for task in ("income", "never_married"):
        assert columns[task].dtype == np.int64
        np.testing.assert_array_equal(columns[task].astype(np.float32), reference.y[task])

    # Train split against the raw CSV.
    raw = _raw_rows("adult.data.csv", ROWS)
    columns = _as_columns(train)
    np.testing.assert_array_equal(columns["age"], np.array([float(r["age"]) for r in raw], dtype=np.float32))
    np.testing.assert_array_equal(columns["native_country"].astype(str), [r["native-country"] for r in raw])
    np.testing.assert_array_equal(columns["income"], [int(r["class"] == ">50K") for r in raw])
    np.testing.assert_array_equal(
        columns["never_married"], [int(r["marital-status"] == "Never-married") for r in raw]
    )


def test_census_reads_csvs_from_manual_dir(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    for filename in ("adult.data.csv", "adult.test.csv"):
        rows = _raw_rows(filename, 3)
        rows[0]["age"] = "99"
        with open(manual / filename, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    builder = tfds.builder("mtl_census", data_dir=str(tmp_path / "data"), config=CensusConfig(name="manual"))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))
    assert builder.info.splits["train"].num_examples == 3 and builder.info.splits["test"].num_examples == 3
    first = next(iter(builder.as_dataset(split="test").as_numpy_iterator()))
    assert first["age"] == 99.0 and first["education"] == b"11th"


def test_census_manual_dir_without_the_csvs_is_an_error(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    (manual / "notes.txt").write_text("not the data")
    builder = tfds.builder("mtl_census", data_dir=str(tmp_path / "data"), config=CensusConfig(name="missing"))
    with pytest.raises(FileNotFoundError, match=r"adult\.data\.csv"):
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))


def test_synthetic_mmoe_builds_and_matches_the_generator(tmp_path):
    config = SyntheticMmoeConfig(name="p0.5_small", p=0.5, n=20, n_validation=5, n_test=6, dim=4, seed=3)
    splits = tfds.load(
        "mtl_synthetic_mmoe",
        split=["train", "validation", "test"],
        data_dir=str(tmp_path),
        builder_kwargs={"config": config},
    )
    reference = synthetic_mmoe(0.5, n=20, n_validation=5, n_test=6, dim=4, seed=3)
    for name, dataset in zip(["train", "validation", "test"], splits, strict=True):
        columns = _as_columns(dataset)
        expected = reference.splits[name]
        assert columns["x"].shape == (len(expected), 4) and columns["x"].dtype == np.float32
        np.testing.assert_array_equal(columns["x"], expected.x)
        np.testing.assert_array_equal(columns["y1"], expected.y["y1"])
        np.testing.assert_array_equal(columns["y2"], expected.y["y2"])


def test_building_without_importlib_resources_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "importlib_resources", None)
    builder = tfds.builder("mtl_census", data_dir=str(tmp_path), config=CensusConfig(name="tiny", max_rows=2))
    with pytest.raises(ImportError, match="pip install importlib_resources"):
        builder.download_and_prepare()
