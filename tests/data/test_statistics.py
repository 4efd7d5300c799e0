"""The streaming statistics pass: exact moments, bounded memory, numbers parsed from text, error messages."""

from __future__ import annotations

import collections
import json
import time

import numpy as np
import pytest

from mtl_keras.data import statistics
from mtl_keras.data.statistics import (
    ColumnStats,
    StatisticsPass,
    check_numeric_columns,
    compute_statistics,
    value_text,
)


def _chunks(columns: dict[str, np.ndarray], size: int) -> list[dict[str, np.ndarray]]:
    n = len(next(iter(columns.values())))
    return [{k: v[i : i + size] for k, v in columns.items()} for i in range(0, n, size)]


def test_moments_over_chunks_equal_numpy_on_the_concatenation() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(1e4, 3.0, size=10_001)  # a large mean: naive sum-of-squares would lose digits
    x[rng.choice(x.size, 500, replace=False)] = np.nan
    result = compute_statistics(_chunks({"x": x}, 997))["x"]
    present = x[~np.isnan(x)]
    assert (result.count, result.missing) == (10_001, 500)
    assert result.numeric and not result.integral
    np.testing.assert_allclose(result.mean, present.mean(), rtol=1e-13)
    np.testing.assert_allclose(result.variance, present.var(), rtol=1e-9)
    assert (result.minimum, result.maximum) == (present.min(), present.max())
    assert result.median == pytest.approx(np.median(present))  # all values are in the sample
    assert len(result.sample) == present.size


def test_text_numbers_missing_tokens_and_the_first_text_row() -> None:
    cells = np.array(["1", " 2 ", "", "NA", "3.5", "null", "?", "None", "nan", "4"], dtype=object)
    result = compute_statistics([{"a": cells}])["a"]
    assert result.missing == 6 and result.present == 4
    assert result.numeric and result.mean == pytest.approx(np.mean([1, 2, 3.5, 4]))
    text = np.array(["1", "2", "x7", "3", "abc"], dtype=object)
    state = StatisticsPass(["a"])
    state.update({"a": cells}, 0)
    state.update({"a": text}, 10)
    result = state.result()["a"]
    assert not result.numeric
    assert result.first_text == ("x7", 13)  # 1-based: the chunk starts at data row 11


def test_value_counts_top_distinct_and_tokens() -> None:
    rng = np.random.default_rng(0)
    cells = rng.choice(np.array(["a", "b|c", "c", "d| e", "", None], dtype=object), size=3000)
    result = compute_statistics(_chunks({"t": cells}, 256))["t"]
    truth = collections.Counter(v for v in cells if v not in ("", None))
    assert result.top == dict(sorted(truth.items(), key=lambda kv: (kv[1], kv[0]), reverse=True))
    assert result.distinct == 4 and not result.distinct_capped and result.top_exact
    present = sum(truth.values())
    assert result.missing == 3000 - present
    assert result.list_fraction == pytest.approx((truth["b|c"] + truth["d| e"]) / present)
    tokens = collections.Counter()
    for value, count in truth.items():
        for token in value.split("|"):
            tokens[token.strip()] += count
    assert result.tokens == dict(tokens)


def test_numeric_sources_ints_floats_and_objects() -> None:
    chunk = {
        "i": np.array([3, 1, 3, 2]),
        "f": np.array([0.5, np.nan, 2.0, 2.0]),
        "o": np.array([None, "x", 1, 2.0], dtype=object),
    }
    result = compute_statistics([chunk])
    assert result["i"].integral and result["i"].top == {"3": 2, "2": 1, "1": 1}
    assert result["f"].missing == 1 and result["f"].top == {"2": 2, "0.5": 1}
    assert result["o"].missing == 1 and not result["o"].numeric and result["o"].first_text == ("x", 2)
    assert list(value_text(np.array([1.0, 2.5, np.nan]))) == ["1", "2.5", ""]


def test_memory_is_bounded_past_the_caps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(statistics, "SAMPLE_SIZE", 500)
    monkeypatch.setattr(statistics, "DISTINCT_CAP", 300)
    monkeypatch.setattr(statistics, "TOP_MAX", 50)
    rng = np.random.default_rng(0)
    frequent = np.array([f"hot{i}" for i in range(5)], dtype=object)
    ids = np.where(
        rng.random(20_000) < 0.3, rng.choice(frequent, 20_000), rng.integers(0, 10**6, 20_000).astype(str)
    )
    numbers = rng.normal(size=20_000)
    result = compute_statistics(_chunks({"id": ids.astype(object), "x": numbers}, 1000))
    assert result["id"].distinct_capped and result["id"].distinct > 300 and not result["id"].top_exact
    assert len(result["id"].top) <= 50
    assert set(list(result["id"].top)[:5]) == set(frequent)  # the frequent values survive the pruning
    assert len(result["x"].sample) == 500
    assert abs(result["x"].median - np.median(numbers)) < 0.15  # a uniform sample's median
    np.testing.assert_allclose(result["x"].mean, numbers.mean(), rtol=1e-12)  # moments stay exact
    again = compute_statistics(_chunks({"id": ids.astype(object), "x": numbers}, 1000))
    np.testing.assert_array_equal(again["x"].sample, result["x"].sample)  # seeded


def test_json_round_trip() -> None:
    result = compute_statistics([{"a": np.array(["x", "y|z", "x", "1"], dtype=object), "b": np.arange(4.0)}])
    for stats in result.values():
        back = ColumnStats.from_dict(json.loads(json.dumps(stats.to_dict())))
        assert back.to_dict() == stats.to_dict()
    with pytest.raises(ValueError, match=r"Unknown column statistics fields \['colour'\]"):
        ColumnStats.from_dict({"name": "a", "colour": 1})


def test_check_numeric_columns_messages() -> None:
    cells = np.array(["1", "2"] * 8 + ["abc", "3"], dtype=object)
    stats = compute_statistics([{"price": cells, "empty": np.array([""] * 18, dtype=object)}])
    with pytest.raises(
        ValueError,
        match=r"^data file 'x.csv', column 'price': numeric feature has non-numeric text 'abc' \(row 17\)\.$",
    ):
        check_numeric_columns({"price": "numeric"}, stats, "data file 'x.csv'")
    with pytest.raises(ValueError, match=r"column 'empty' has no values \(all 18 rows missing\)"):
        check_numeric_columns({"empty": "numeric"}, stats, "data file 'x.csv'")
    check_numeric_columns({"price": "categorical"}, stats, "data file 'x.csv'")  # text is fine there


def test_two_million_rows_by_ten_columns_in_seconds() -> None:
    rng = np.random.default_rng(0)
    n = 2_000_000
    columns: dict[str, np.ndarray] = {f"x{i}": rng.normal(size=n) for i in range(6)}
    columns["k"] = rng.integers(0, 20, n)
    columns["c"] = rng.choice(np.array(["a", "b", "c"], dtype=object), n)
    columns["t"] = rng.integers(0, 1000, n).astype(str).astype(object)  # numbers as CSV text
    columns["m"] = np.where(rng.random(n) < 0.05, np.nan, rng.normal(size=n))
    start = time.perf_counter()
    result = compute_statistics(_chunks(columns, 250_000))
    elapsed = time.perf_counter() - start
    assert elapsed < 40, elapsed  # a few seconds on one core; generous for a loaded CI machine
    assert result["t"].numeric and result["t"].integral and result["c"].distinct == 3
    np.testing.assert_allclose(result["m"].mean, np.nanmean(columns["m"]), rtol=1e-12)
