"""Training feature statistics of a user's table (from its statistics pass) and the PSI they feed."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from mtl_keras.data import from_csv
from mtl_keras.data.tables import CsvPart
from mtl_keras.monitoring import feature_statistics, population_stability_index
from mtl_keras.monitoring.skew import compare


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    rng = np.random.default_rng(0)
    n = 400
    price = rng.normal(20.0, 5.0, n)
    price[rng.random(n) < 0.1] = np.nan
    frame = pd.DataFrame(
        {
            "unit price": price,
            "city": rng.choice(["paris", "oslo", "rome"], n, p=[0.5, 0.3, 0.2]),
            "bought": rng.integers(0, 2, n),
        }
    )
    path = tmp_path_factory.mktemp("table") / "shop.csv"
    frame.to_csv(path, index=False)
    dataset = from_csv(str(path), {"bought": "binary"}, split={"test": 0.2, "validation": 0.1})
    return path, frame, dataset


def test_statistics_of_a_users_table(table):
    _, _, dataset = table
    summary = feature_statistics(dataset)
    assert summary["ignored_columns"] == ["bought"]  # the label column may be in serving tables
    assert sorted(summary["columns"]) == ["city", "unit price"]
    price = dataset.statistics["unit price"]
    entry = summary["columns"]["unit price"]
    assert entry["kind"] == "numeric" and entry["count"] == dataset.num_examples("train")
    assert entry["missing_rate"] == pytest.approx(price.missing / price.count)
    assert entry["mean"] == pytest.approx(price.mean) and entry["std"] == pytest.approx(
        math.sqrt(price.variance)
    )
    assert len(entry["bins"]["edges"]) == 9  # distinct deciles of a continuous column
    assert sum(entry["bins"]["fractions"]) + entry["missing_rate"] == pytest.approx(1.0)
    city = summary["columns"]["city"]
    assert city["kind"] == "categorical" and set(city["top"]) == {"paris", "oslo", "rome"}
    assert city["other_rate"] == 0.0 and sum(city["top"].values()) == pytest.approx(1.0)


def test_the_whole_file_does_not_drift_from_its_training_split(table):
    path, frame, dataset = table
    part = CsvPart(str(path))
    report = compare(feature_statistics(dataset), part.chunks(), columns=part.columns())
    assert report["ok"] and report["drifted"] == []
    assert report["rows"] == len(frame)
    price = report["columns"]["unit price"]
    assert price["missing_rate_serving"] == pytest.approx(frame["unit price"].isna().mean())


def test_unseen_and_missing_categories(table):
    _, _, dataset = table
    summary = feature_statistics(dataset)
    city = summary["columns"]["city"]
    chunk = {
        "unit price": np.full(10, 20.0),
        "city": np.array(["lima"] * 5 + [""] * 2 + ["paris"] * 3, dtype=object),
    }
    report = compare(summary, [chunk], columns=["unit price", "city"])
    result = report["columns"]["city"]
    expected = [*city["top"].values(), city["other_rate"], city["missing_rate"]]
    names = [*city["top"], "<other>", "<missing>"]
    actual = [{"paris": 0.3}.get(name, 0.0) for name in names[:-2]] + [0.5, 0.2]
    e, a = np.maximum(expected, 1e-4), np.maximum(actual, 1e-4)
    assert result["psi"] == pytest.approx(float(np.sum((a - e) * np.log(a / e))))
    assert result["status"] == "alarm" and result["largest_shift"]["bin"] == "<other>"
    assert result["missing_rate_serving"] == pytest.approx(0.2)


def test_population_stability_index():
    # (0.25 - 0.5) ln(0.25 / 0.5) + (0.75 - 0.5) ln(0.75 / 0.5)
    assert population_stability_index([0.5, 0.5], [0.25, 0.75]) == pytest.approx(
        0.25 * math.log(2) + 0.25 * math.log(1.5)
    )
    assert population_stability_index([0.2, 0.8], [0.2, 0.8]) == 0.0
    # An empty bin is floored at 1e-4 instead of making the index infinite.
    assert population_stability_index([1.0, 0.0], [0.5, 0.5]) == pytest.approx(
        (0.5 - 1.0) * math.log(0.5) + (0.5 - 1e-4) * math.log(0.5 / 1e-4)
    )
    with pytest.raises(ValueError, match="same bins"):
        population_stability_index([0.5, 0.5], [1.0])
