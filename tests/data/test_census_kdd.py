import fnmatch
import gzip
import hashlib
import logging
import re
from collections import Counter
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from mtl_keras.data import DATASETS, load_dataset
from mtl_keras.data.census import ChecksumError
from mtl_keras.data.census_kdd import download_census_kdd, load_census_kdd

# From data/census_income_kdd/SOURCE.md (independent of the code under test).
SHA256_GZ = "5ac4cacd3ca9f1ecb10de1a0a41e4ac68fdc419e3fec190f5c0c6cc03b2ea659"
SHA256_TEXT = "98402b1ab879573d0a7f38a699a40258080e25e33d3401e7bf9c96d3fa0fab8c"
NUM_ROWS = 99_762
# UCI census-income.names: the continuous attributes (instance weight left out: it is not a feature) and the
# nominal attributes written as numbers.
NUMERIC = [
    "age",
    "wage_per_hour",
    "capital_gains",
    "capital_losses",
    "dividends_from_stocks",
    "num_persons_worked_for_employer",
    "weeks_worked_in_year",
]
CODES = [
    "detailed_industry_recode",
    "detailed_occupation_recode",
    "own_business_or_self_employed",
    "veterans_benefits",
    "year",
]
# "At least college": any college attendance (the docstring's definition), written out here separately.
COLLEGE = {
    "Some college but no degree",
    "Associates degree-occup /vocational",
    "Associates degree-academic program",
    "Bachelors degree(BA AB BS)",
    "Masters degree(MA MS MEng MEd MSW MBA)",
    "Prof school degree (MD DDS DVM LLB JD)",
    "Doctorate degree(PhD EdD)",
}


def _shipped_bytes():
    return resources.files("mtl_keras.data").joinpath("files", "census-income.test.gz").read_bytes()


@pytest.fixture(scope="module")
def raw_rows():
    """The shipped file split by hand: a list of 42 stripped fields per row."""
    text = gzip.decompress(_shipped_bytes()).decode("utf-8")
    return [[field.strip() for field in line.split(",")] for line in text.split("\n") if line.strip()]


@pytest.fixture(scope="module")
def dataset():
    return load_census_kdd()


def _all(dataset, task):
    return np.concatenate([split.y[task] for split in dataset.splits.values()])


def test_shipped_file_is_the_original_with_attribution():
    data = _shipped_bytes()
    assert hashlib.sha256(data).hexdigest() == SHA256_GZ
    assert hashlib.sha256(gzip.decompress(data)).hexdigest() == SHA256_TEXT
    attribution = resources.files("mtl_keras.data").joinpath("files", "KDD_SOURCE.md").read_text()
    for needed in ("CC BY 4.0", "Lane", "Kohavi", "UCI", SHA256_GZ, SHA256_TEXT):
        assert needed in attribution


def test_shipped_files_are_package_data():
    # (a wheel and an sdist built from this pyproject were checked by hand to hold both files)
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["mtl_keras"]
    for name in ("data/files/census-income.test.gz", "data/files/KDD_SOURCE.md"):
        assert any(fnmatch.fnmatch(name, pattern) for pattern in patterns), name


def test_rows_positive_rates_and_split_sizes(dataset, raw_rows):
    assert len(raw_rows) == NUM_ROWS and {len(row) for row in raw_rows} == {42}
    assert len(dataset.train) + len(dataset.validation) == 70_000
    assert len(dataset.test) == 29_762
    assert len(dataset.validation) == 7_000
    # SOURCE.md: income > 50K 6.20 %, never married 43.25 % over all rows
    assert round(100 * _all(dataset, "income").mean(), 2) == 6.20
    assert round(100 * _all(dataset, "never_married").mean(), 2) == 43.25
    assert int(_all(dataset, "income").sum()) == sum(row[41] == "50000+." for row in raw_rows)


def test_features_are_raw_columns_without_labels_or_weight(dataset):
    assert dataset.name == "census_kdd" and dataset.task_names == ["income", "never_married"]
    assert all(task.kind == "binary" for task in dataset.tasks)
    assert len(dataset.features) == 42 - 3
    for removed in ("income", "marital_stat", "instance_weight"):
        assert removed not in dataset.features
    assert "education" in dataset.features
    assert all(name.isidentifier() for name in dataset.features)
    assert sorted(name for name, kind in dataset.features.items() if kind == "numeric") == sorted(NUMERIC)
    assert sorted(n for n, k in dataset.features.items() if k == "integer_categorical") == sorted(CODES)
    for split in dataset.splits.values():
        assert sorted(split.x) == sorted(dataset.features)
        for name, kind in dataset.features.items():
            expected = {"numeric": "f", "integer_categorical": "i", "categorical": "U"}[kind]
            assert split.x[name].dtype.kind == expected, name
        assert not any(value != value.strip() for value in np.unique(split.x["citizenship"]))
        assert "?" in set(split.x["country_of_birth_self"].tolist())


def test_split_follows_the_documented_seeded_permutation(dataset, raw_rows):
    # the documented rule, written with NumPy: test = the first 29,762 of default_rng(0).permutation(n),
    # then validation = the first 7,000 of default_rng(0).permutation(70,000) over the remaining rows
    permutation = np.random.default_rng(0).permutation(NUM_ROWS)
    test_rows = np.sort(permutation[:29_762])
    rest = np.sort(permutation[29_762:])
    inner = np.random.default_rng(0).permutation(70_000)
    validation_rows, train_rows = rest[np.sort(inner[:7_000])], rest[np.sort(inner[7_000:])]
    for split, rows in [(dataset.test, test_rows), (dataset.validation, validation_rows)]:
        np.testing.assert_array_equal(split.x["age"], [float(raw_rows[i][0]) for i in rows])
        np.testing.assert_array_equal(
            split.x["detailed_industry_recode"], [int(raw_rows[i][2]) for i in rows]
        )
        np.testing.assert_array_equal(split.x["class_of_worker"], [raw_rows[i][1] for i in rows])
        np.testing.assert_array_equal(split.y["income"], [raw_rows[i][41] == "50000+." for i in rows])
        np.testing.assert_array_equal(
            split.y["never_married"], [raw_rows[i][7] == "Never married" for i in rows]
        )
    assert Counter(dataset.train.x["dividends_from_stocks"].tolist()) == Counter(
        float(raw_rows[i][18]) for i in train_rows
    )


def test_education_pair(raw_rows):
    data = load_dataset("census_kdd", task_pair="education")
    assert data.task_names == ["education", "never_married"]
    assert "education" not in data.features and "income" not in data.features
    assert len(data.features) == 42 - 4
    positives = sum(row[4] in COLLEGE for row in raw_rows)
    assert int(_all(data, "education").sum()) == positives == 33_410
    assert set(np.unique(_all(data, "education")).tolist()) == {0.0, 1.0}


def test_seed_max_rows_and_test_fraction():
    small = load_census_kdd(max_rows=600, seed=0)
    assert len(small.train) + len(small.validation) == 600 - 179  # 600 - round(600 * 70,000 / 99,762)
    assert len(small.test) == 179 and len(small.validation) == round(0.1 * 421)
    again = load_census_kdd(max_rows=600, seed=0)
    np.testing.assert_array_equal(again.test.x["age"], small.test.x["age"])
    other = load_census_kdd(max_rows=600, seed=1)
    assert not np.array_equal(other.test.x["age"], small.test.x["age"])
    half = load_census_kdd(max_rows=600, test_fraction=0.5, validation_fraction=0.2)
    assert len(half.test) == 300 and len(half.validation) == 60 and len(half.train) == 240
    assert DATASETS["census_kdd"] is load_census_kdd
    chosen = load_census_kdd(max_rows=50, features=["year", "age", "education"])
    assert chosen.features == {"age": "numeric", "education": "categorical", "year": "integer_categorical"}
    assert sorted(chosen.test.x) == ["age", "education", "year"]
    with pytest.raises(ValueError, match=re.escape("Received: features=['education']")):
        load_census_kdd(task_pair="education", max_rows=50, features=["education"])


def test_argument_errors(tmp_path):
    with pytest.raises(
        ValueError, match=re.escape("Expected `task_pair` to be one of ['education', 'income']")
    ):
        load_census_kdd(task_pair="marital")
    with pytest.raises(ValueError, match=re.escape("Received: max_rows=-3")):
        load_census_kdd(max_rows=-3)
    with pytest.raises(ValueError, match="Expected `test_fraction`"):
        load_census_kdd(test_fraction=1.0)
    with pytest.raises(FileNotFoundError, match=re.escape("census-income.test")):
        load_census_kdd(data_dir=tmp_path)
    (tmp_path / "census-income.test").write_text("1, 2, 3\n")
    with pytest.raises(
        ValueError, match=re.escape("Expected 42 comma-separated fields per row in census-income.test")
    ):
        load_census_kdd(data_dir=tmp_path)


def _write_originals(folder, *, corrupt_test=False, train_rows=500):
    """A fake UCI folder: the shipped test file (or a corrupted copy) and a small fake training file."""
    folder.mkdir()
    test_text = gzip.decompress(_shipped_bytes())
    if corrupt_test:
        test_text = test_text.replace(b"38, Private, 6, 36,", b"39, Private, 6, 36,", 1)
    (folder / "census-income.test.gz").write_bytes(
        gzip.compress(test_text) if corrupt_test else _shipped_bytes()
    )
    lines = gzip.decompress(_shipped_bytes()).split(b"\n")[:train_rows]
    (folder / "census-income.data.gz").write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))


def test_download_offline_and_original_split(tmp_path, caplog):
    originals = tmp_path / "uci"
    _write_originals(originals)
    destination = tmp_path / "out"
    with caplog.at_level(logging.WARNING, logger="mtl_keras.data.census_kdd"):
        written = download_census_kdd(destination, base_url=originals.as_uri())
    assert sorted(written) == ["census-income.data", "census-income.test"]
    assert (destination / "census-income.test.gz").read_bytes() == _shipped_bytes()
    assert sorted(p.name for p in destination.iterdir()) == ["census-income.data.gz", "census-income.test.gz"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "census-income.data" in warnings[0] and "not verified" in warnings[0]
    loaded = load_census_kdd(data_dir=destination, max_rows=800)
    assert len(loaded.train) + len(loaded.validation) == 500  # the whole (fake) training file
    assert len(loaded.test) == 800  # the test file, not split
    with pytest.raises(ValueError, match=re.escape("Expected `test_fraction=None`")):
        load_census_kdd(data_dir=destination, test_fraction=0.3)


def test_download_with_bad_checksum_raises_and_writes_nothing(tmp_path):
    originals = tmp_path / "uci"
    _write_originals(originals, corrupt_test=True)
    destination = tmp_path / "out"
    with pytest.raises(ChecksumError) as info:
        download_census_kdd(destination, base_url=originals.as_uri() + "/")
    message = str(info.value)
    assert "census-income.test" in message and SHA256_TEXT in message
    assert len(set(re.findall(r"\b[0-9a-f]{64}\b", message)) - {SHA256_TEXT}) == 1
    assert not destination.exists()
    # a checksum given by the caller is checked too
    _write_originals(tmp_path / "uci2")
    with pytest.raises(ChecksumError, match=re.escape("census-income.data")):
        download_census_kdd(
            destination,
            base_url=(tmp_path / "uci2").as_uri(),
            files=["census-income.data"],
            sha256={"census-income.data": "0" * 64},
        )
    (tmp_path / "uci2" / "census-income.test.gz").write_bytes(b"not gzip")
    with pytest.raises(ValueError, match="to be a gzip file"):
        download_census_kdd(destination, base_url=(tmp_path / "uci2").as_uri(), files=["census-income.test"])
    assert not destination.exists()
