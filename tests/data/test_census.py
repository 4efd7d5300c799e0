import gzip
import hashlib
import re
from collections import Counter
from importlib import resources

import numpy as np
import pytest

from mtl_keras.data import census
from mtl_keras.data.census import ChecksumError, download_census, load_census

# From data/adult/SOURCE.md (independent of the code under test).
EXPECTED_SHA256 = {
    "adult.data.csv": "99c4f7ae498c576e385020fa5fd258b485528adb4a7bf789ac690cad732af582",
    "adult.test.csv": "4a08166b1e4930b5180b6fd90216416f965240e53ff9bcb29a7920ee2ad88de8",
}
NUMERIC = ["age", "fnlwgt", "education_num", "capital_gain", "capital_loss", "hours_per_week"]
CATEGORICAL = ["workclass", "education", "occupation", "relationship", "race", "sex", "native_country"]


@pytest.fixture(scope="module")
def dataset():
    return load_census()


def _shipped_text(name):
    resource = resources.files("mtl_keras.data").joinpath("files", name + ".gz")
    return gzip.decompress(resource.read_bytes()).decode("utf-8")


def test_shipped_files_match_source_checksums():
    for name, sha in EXPECTED_SHA256.items():
        assert hashlib.sha256(_shipped_text(name).encode("utf-8")).hexdigest() == sha
    attribution = resources.files("mtl_keras.data").joinpath("files", "ADULT_SOURCE.md").read_text()
    for needed in ("CC BY 4.0", "Becker", "Kohavi", "10.24432/C5XW20", "UCI"):
        assert needed in attribution


def test_label_counts_match_source(dataset):
    train_and_validation = {
        task: int(dataset.train.y[task].sum() + dataset.validation.y[task].sum())
        for task in dataset.task_names
    }
    assert len(dataset.train) + len(dataset.validation) == 32_561
    assert train_and_validation == {"income": 7_841, "never_married": 10_683}
    assert len(dataset.test) == 16_281
    assert int(dataset.test.y["income"].sum()) == 3_846
    assert int(dataset.test.y["never_married"].sum()) == 5_434
    assert len(dataset.validation) == round(0.1 * 32_561)


def test_inputs_are_raw_features_without_label_columns(dataset):
    assert dataset.task_names == ["income", "never_married"]
    assert all(t.kind == "binary" for t in dataset.tasks)
    assert sorted(dataset.features) == sorted(NUMERIC + CATEGORICAL)
    assert all(name.isidentifier() for name in dataset.features)
    for split in dataset.splits.values():
        assert sorted(split.x) == sorted(NUMERIC + CATEGORICAL)
        for name in NUMERIC:
            assert dataset.features[name] == "numeric"
            assert split.x[name].dtype == np.float32
            assert not np.isnan(split.x[name]).any()
        for name in CATEGORICAL:
            assert dataset.features[name] == "string_categorical"
            assert split.x[name].dtype.kind == "U"
        for labels in split.y.values():
            assert labels.dtype == np.float32
            assert set(np.unique(labels).tolist()) == {0.0, 1.0}
    first = dataset.test.take([0])  # 25,Private,226802,11th,7,Never-married,...,<=50K
    assert first.x["age"][0] == 25 and first.x["fnlwgt"][0] == 226802 and first.x["education"][0] == "11th"
    assert first.y["income"][0] == 0 and first.y["never_married"][0] == 1


def test_missing_values_are_their_own_category(dataset):
    workclass = np.concatenate([s.x["workclass"] for s in dataset.splits.values()])
    assert (workclass == "?").sum() > 0
    assert not any(value.startswith(" ") for value in np.unique(workclass))


def test_validation_split_is_deterministic_and_disjoint(dataset):
    again = load_census(seed=0)
    np.testing.assert_array_equal(again.validation.x["fnlwgt"], dataset.validation.x["fnlwgt"])
    other = load_census(seed=1)
    assert not np.array_equal(other.validation.x["fnlwgt"], dataset.validation.x["fnlwgt"])
    # train + validation is exactly adult.data (as a multiset of rows), read independently from the CSV text
    raw_lines = [line for line in _shipped_text("adult.data.csv").split("\n")[1:] if line]
    raw = Counter((int(f[0]), int(f[2]), f[3], int(f[12])) for f in (line.split(",") for line in raw_lines))

    def rows(split):
        x = split.x
        return Counter(
            zip(
                x["age"].astype(int).tolist(),
                x["fnlwgt"].astype(int).tolist(),
                x["education"].tolist(),
                x["hours_per_week"].astype(int).tolist(),
                strict=True,
            )
        )

    assert rows(dataset.train) + rows(dataset.validation) == raw


def test_max_rows_and_argument_errors():
    small = load_census(max_rows=100, validation_fraction=0.2)
    assert len(small.train) + len(small.validation) == 100 and len(small.test) == 100
    with pytest.raises(
        ValueError, match=re.escape("Expected `max_rows` to be a positive integer. Received: max_rows=-3")
    ):
        load_census(max_rows=-3)
    with pytest.raises(ValueError, match="Expected `validation_fraction`"):
        load_census(validation_fraction=1.0)
    with pytest.raises(FileNotFoundError, match=re.escape("adult.data.csv")):
        load_census(data_dir="/nonexistent-folder")


def _write_fake_originals(folder, corrupt=None):
    """Undo the CSV conversion of SOURCE.md: drop the header, ", " separators, test comment line and "."."""
    for csv_name, original in [("adult.data.csv", "adult.data"), ("adult.test.csv", "adult.test")]:
        lines = _shipped_text(csv_name).split("\n")[1:]
        is_test = original == "adult.test"
        lines = [", ".join(line.split(",")) + ("." if is_test else "") if line else "" for line in lines]
        if is_test:
            lines.insert(0, "|1x3 Cross validator")
        if corrupt == original:
            lines[5] = "1" + lines[5]  # age 25 -> 125
        (folder / original).write_text("\n".join(lines), encoding="utf-8")


def test_download_reproduces_checksums_offline(tmp_path):
    originals = tmp_path / "uci"
    originals.mkdir()
    _write_fake_originals(originals)
    assert (
        (originals / "adult.test").read_text().startswith("|1x3 Cross validator\n25, Private, 226802, 11th")
    )
    destination = tmp_path / "out"
    written = download_census(destination, base_url=originals.as_uri())
    assert sorted(written) == sorted(EXPECTED_SHA256)
    for name, sha in EXPECTED_SHA256.items():
        assert hashlib.sha256((destination / name).read_bytes()).hexdigest() == sha
    assert sorted(p.name for p in destination.iterdir()) == sorted(EXPECTED_SHA256)
    loaded = load_census(data_dir=destination, max_rows=50)
    assert len(loaded.test) == 50


@pytest.mark.parametrize("corrupt", ["adult.data", "adult.test"])
def test_download_with_bad_checksum_raises_and_writes_nothing(tmp_path, corrupt):
    originals = tmp_path / "uci"
    originals.mkdir()
    _write_fake_originals(originals, corrupt=corrupt)
    destination = tmp_path / "out"
    destination.mkdir()
    with pytest.raises(ChecksumError) as info:
        download_census(destination, base_url=originals.as_uri() + "/")
    message = str(info.value)
    assert f"{corrupt}.csv" in message
    assert EXPECTED_SHA256[f"{corrupt}.csv"] in message
    actual = set(re.findall(r"\b[0-9a-f]{64}\b", message)) - {EXPECTED_SHA256[f"{corrupt}.csv"]}
    assert len(actual) == 1
    assert list(destination.iterdir()) == []


def test_convert_original_handles_spaces_comment_and_trailing_dot():
    text = (
        "|1x3 Cross validator\n25, Private, 1, 11th, 7, Never-married, a, b, c, Male, 0, 0, 40, US, >50K.\n\n"
    )
    converted = census.convert_original(text, "adult.test")
    assert converted.split("\n")[1:] == [
        "25,Private,1,11th,7,Never-married,a,b,c,Male,0,0,40,US,>50K",
        "",
        "",
    ]
    assert converted.split("\n")[0].startswith("age,workclass,fnlwgt")
