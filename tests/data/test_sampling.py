import math
import re

import numpy as np
import pytest

from mtl_keras.data.base import Split
from mtl_keras.data.sampling import TemperatureSampler, temperature_probabilities


@pytest.mark.parametrize(
    ("temperature", "expected"),
    [
        (1.0, [100 / 111, 10 / 111, 1 / 111]),  # proportional
        (2.0, [10 / (11 + math.sqrt(10)), math.sqrt(10) / (11 + math.sqrt(10)), 1 / (11 + math.sqrt(10))]),
        (0.5, [10_000 / 10_101, 100 / 10_101, 1 / 10_101]),
        (math.inf, [1 / 3, 1 / 3, 1 / 3]),  # uniform
    ],
)
def test_temperature_probabilities_hand_computed(temperature, expected):
    np.testing.assert_allclose(temperature_probabilities([100, 10, 1], temperature), expected, rtol=1e-12)


def test_temperature_probabilities_limits():
    assert temperature_probabilities([1_000, 10], 1e6) == pytest.approx([0.5, 0.5], abs=1e-5)
    small_t = temperature_probabilities([10**6, 10**5], 0.01)  # 10^100 : 1 without overflow
    assert small_t[1] == pytest.approx(1e-100, rel=1e-6) and small_t[0] == 1.0


@pytest.mark.parametrize("temperature", [0, -1.0, float("nan"), "2", None])
def test_temperature_must_be_positive(temperature):
    with pytest.raises(ValueError, match="Expected `temperature` to be a positive number"):
        temperature_probabilities([1, 2], temperature)


@pytest.mark.parametrize("sizes", [[], [0, 3], [-1, 2], [[1, 2]]])
def test_sizes_must_be_positive(sizes):
    with pytest.raises(ValueError, match="Expected `sizes`"):
        temperature_probabilities(sizes, 1.0)


def _splits():
    # labels equal the input, so every row of a batch can be checked against its own label
    a = Split(x=np.arange(100, dtype=np.float32)[:, None], y={"a": np.arange(100)})
    b = Split(x=1_000 + np.arange(10, dtype=np.float32)[:, None], y={"b": 1_000 + np.arange(10)})
    return {"a": a, "b": b}


def test_sampler_task_frequencies_follow_probabilities():
    sampler = TemperatureSampler(_splits(), temperature=2.0, seed=0)
    np.testing.assert_allclose(
        sampler.probabilities, [10 / (10 + math.sqrt(10)), math.sqrt(10) / (10 + math.sqrt(10))]
    )
    tasks = sampler.sample_tasks(20_000)
    assert np.mean(tasks == 1) == pytest.approx(sampler.probabilities[1], abs=0.01)


def test_sampler_mixed_batches_have_nan_for_other_tasks():
    sampler = TemperatureSampler(_splits(), temperature=math.inf, batch_size=64, seed=1)
    for x, y in sampler.batches(20):
        assert x.shape == (64, 1) and sorted(y) == ["a", "b"]
        labelled = ~np.isnan(y["a"]) ^ ~np.isnan(y["b"])
        assert labelled.all()  # exactly one task per row
        from_a = ~np.isnan(y["a"])
        np.testing.assert_array_equal(y["a"][from_a], x[from_a, 0])
        np.testing.assert_array_equal(y["b"][~from_a], x[~from_a, 0])
        assert np.all(x[from_a, 0] < 100) and np.all(x[~from_a, 0] >= 1_000)
        assert y["a"].dtype == np.float32


def test_sampler_visits_every_example_once_per_pass():
    sampler = TemperatureSampler({"b": _splits()["b"]}, batch_size=5, seed=0)
    seen = np.concatenate([x[:, 0] for x, _ in sampler.batches(2)])
    assert sorted(seen.tolist()) == [1_000 + i for i in range(10)]


def test_sampler_batch_mode_draws_one_task_per_batch_and_is_deterministic():
    first = [y for _, y in TemperatureSampler(_splits(), batch_size=8, mode="batch", seed=3).batches(30)]
    second = [y for _, y in TemperatureSampler(_splits(), batch_size=8, mode="batch", seed=3).batches(30)]
    for y, z in zip(first, second, strict=True):
        np.testing.assert_array_equal(y["a"], z["a"])
        assert np.isnan(y["a"]).all() or np.isnan(y["b"]).all()
    assert any(np.isnan(y["a"]).all() for y in first) and any(np.isnan(y["b"]).all() for y in first)


def test_sampler_dict_inputs_and_multi_unit_labels():
    a = Split(
        x={"f": np.arange(6, dtype=np.float32), "c": np.array(list("abcdef"))}, y={"a": np.ones((6, 3))}
    )
    b = Split(
        x={"f": np.zeros(4, dtype=np.float32), "c": np.array(["long-string"] * 4)}, y={"b": np.zeros(4)}
    )
    x, y = next(iter(TemperatureSampler({"a": a, "b": b}, temperature=math.inf, batch_size=16, seed=0)))
    assert x["f"].shape == (16,) and x["c"].shape == (16,)
    assert y["a"].shape == (16, 3) and y["b"].shape == (16,)
    from_b = x["c"] == "long-string"
    assert np.isnan(y["a"][from_b]).all() and not np.isnan(y["a"][~from_b]).any()


def test_sampler_argument_errors():
    splits = _splits()
    with pytest.raises(ValueError, match="non-empty dict"):
        TemperatureSampler({})
    with pytest.raises(ValueError, match="to have labels 'c'"):
        TemperatureSampler({"c": splits["a"]})
    with pytest.raises(ValueError, match="Expected `mode` to be one of"):
        TemperatureSampler(splits, mode="task")
    with pytest.raises(
        ValueError, match=re.escape("Expected `batch_size` to be a positive integer. Received: batch_size=0")
    ):
        TemperatureSampler(splits, batch_size=0)
    with pytest.raises(ValueError, match="Expected `temperature`"):
        TemperatureSampler(splits, temperature=0.0)
    other = Split(x=np.zeros((3, 2), dtype=np.float32), y={"b": np.zeros(3)})
    with pytest.raises(ValueError, match="same structure"):
        TemperatureSampler({"a": splits["a"], "b": other})
