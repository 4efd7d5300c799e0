import re

import numpy as np
import pytest

from mtl_keras.data import DATASETS, ClickConversionDataset, MultiTaskDataset, click_conversion

SMALL = {"n": 4000, "n_validation": 50, "n_test": 60, "num_users": 300, "num_items": 80}


def test_shapes_kinds_and_the_observed_layout():
    data = click_conversion(seed=1, **SMALL)
    assert isinstance(data, ClickConversionDataset) and isinstance(data, MultiTaskDataset)
    assert DATASETS["click_conversion"] is click_conversion
    assert data.task_names == ["click", "conversion"]
    assert all(task.kind == "binary" for task in data.tasks)
    assert data.features["user_id"] == data.features["item_id"] == "id"
    assert data.features["category"] == data.features["device"] == "categorical"
    assert [k for k, v in data.features.items() if v == "numeric"] == ["x_0", "x_1", "x_2", "x_3"]
    assert [len(s) for s in data.splits.values()] == [4000, 50, 60]
    train, truth = data.train, data.truth["train"]
    assert sorted(truth) == ["click", "conversion", "ctr", "cvr", "elapsed", "logged_conversion"]
    assert all(v.shape == (4000,) for v in truth.values())
    assert np.all((truth["ctr"] > 0) & (truth["ctr"] < 1) & (truth["cvr"] > 0) & (truth["cvr"] < 1))
    clicked = train.y["click"] == 1
    np.testing.assert_array_equal(train.y["click"], truth["click"])
    # A conversion is observed exactly on the clicked impressions, and there it is the drawn outcome.
    assert np.all(np.isnan(train.y["conversion"]) == ~clicked)
    np.testing.assert_array_equal(train.y["conversion"][clicked], truth["conversion"][clicked])
    assert set(np.unique(truth["conversion"])) == {0.0, 1.0}
    assert set(train.x["user_id"]) <= {f"u{k}" for k in range(300)}
    assert set(train.x["item_id"]) <= {f"i{k}" for k in range(80)}


def test_the_draws_follow_the_true_probabilities():
    """Clicks and conversions (clicked or not) are Bernoulli draws of the recorded probabilities."""
    truth = click_conversion(seed=2, **{**SMALL, "n": 40_000}).truth["train"]
    for label, probability in (("click", "ctr"), ("conversion", "cvr")):
        gap = truth[label].mean() - truth[probability].mean()
        standard_error = np.sqrt(np.mean(truth[probability] * (1 - truth[probability])) / 40_000)
        assert abs(gap) < 4 * standard_error, (label, gap)
        # and the probabilities rank the draws: the top decile's rate beats the bottom decile's
        order = np.argsort(truth[probability])
        assert truth[label][order[-4000:]].mean() > truth[label][order[:4000]].mean() + 0.1


def test_selection_bias_makes_clicked_impressions_convert_more_often():
    def gap(strength):
        # Many ids, so that chance correlations of the drawn per-id effects stay small.
        sizes = {**SMALL, "n": 20_000, "num_users": 20_000, "num_items": 5_000}
        truth = click_conversion(seed=3, selection_bias=strength, **sizes).truth["train"]
        return truth["cvr"][truth["click"] == 1].mean() - truth["cvr"].mean()

    none, strong = gap(0.0), gap(2.0)
    assert abs(none) < 0.06  # clicks independent of conversion propensity: a fair sample
    assert strong > 0.15 and strong > none + 0.1


def test_id_popularity_has_a_head_and_seeds_reproduce():
    a = click_conversion(seed=4, **SMALL)
    b = click_conversion(seed=4, **SMALL)
    np.testing.assert_array_equal(a.train.x["item_id"], b.train.x["item_id"])
    np.testing.assert_array_equal(a.truth["test"]["cvr"], b.truth["test"]["cvr"])
    _, counts = np.unique(a.train.x["item_id"], return_counts=True)
    # Zipf(1) over 80 items: the most frequent item takes about 1/H_80 ≈ 20% of the impressions.
    assert 0.12 < counts.max() / 4000 < 0.3
    assert not np.array_equal(click_conversion(seed=5, **SMALL).truth["test"]["cvr"], a.truth["test"]["cvr"])


def test_default_sizes_are_large_id_spaces():
    import inspect

    defaults = inspect.signature(click_conversion).parameters
    assert defaults["num_users"].default >= 100_000 and defaults["num_items"].default >= 10_000


def test_entire_space_layout_is_esmm_labels():
    data = click_conversion(seed=1, layout="entire_space", **SMALL)
    observed = click_conversion(seed=1, **SMALL)
    assert data.task_names == ["ctr", "cvr", "ctcvr"]
    y, truth = data.train.y, data.truth["train"]
    assert np.all(np.isnan(y["cvr"]))
    np.testing.assert_array_equal(y["ctr"], truth["click"])
    np.testing.assert_array_equal(y["ctcvr"], truth["click"] * truth["conversion"])
    np.testing.assert_array_equal(truth["cvr"], observed.truth["train"]["cvr"])


def test_sequential_layout_is_the_funnel_for_aitm():
    data = click_conversion(seed=1, layout="sequential", **SMALL)
    assert data.task_names == ["ctr", "ctcvr"]
    y, truth = data.train.y, data.truth["train"]
    np.testing.assert_array_equal(y["ctr"], truth["click"])
    np.testing.assert_array_equal(y["ctcvr"], truth["click"] * truth["conversion"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n": 0}, "Received: n=0"),
        ({"num_users": -1}, "Expected `num_users` to be a positive integer"),
        ({"selection_bias": -0.5}, "Received: selection_bias=-0.5"),
        ({"popularity": 0}, "Expected `popularity` to be a positive number"),
        ({"layout": "esmm"}, "Expected `layout` to be one of ['observed', 'entire_space', 'sequential']"),
    ],
)
def test_errors(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        click_conversion(**{**SMALL, **kwargs})


def test_delayed_conversions_read_zero_at_the_cut_at_the_exponential_rate():
    """With mean delay m and Uniform(0, 1) time to the cut, a conversion is logged with probability
    ∫₀¹ (1 − e^(−t/m)) dt = 1 − m (1 − e^(−1/m)); a later one reads 0. The impressions are unchanged."""
    mean_delay = 0.5
    plain = click_conversion(seed=3, **{**SMALL, "n": 40_000})
    data = click_conversion(seed=3, **{**SMALL, "n": 40_000}, conversion_delay=mean_delay)
    truth = data.truth["train"]
    np.testing.assert_array_equal(truth["cvr"], plain.truth["train"]["cvr"])
    np.testing.assert_array_equal(truth["conversion"], plain.truth["train"]["conversion"])
    converted = truth["conversion"] == 1
    logged = truth["logged_conversion"]
    assert np.all(logged[~converted] == 0) and set(np.unique(logged)) == {0.0, 1.0}
    want = 1 - mean_delay * (1 - np.exp(-1 / mean_delay))
    share = logged[converted].mean()
    assert abs(share - want) < 4 * np.sqrt(want * (1 - want) / converted.sum())
    # late conversions are the ones with little time to the cut
    assert (
        truth["elapsed"][converted & (logged == 1)].mean()
        > truth["elapsed"][converted & (logged == 0)].mean()
    )
    clicked = data.train.y["click"] == 1
    np.testing.assert_array_equal(data.train.y["conversion"][clicked], logged[clicked])


def test_missing_conversion_labels_are_nan_at_the_given_share():
    data = click_conversion(seed=4, **{**SMALL, "n": 20_000}, layout="entire_space", missing_conversions=0.3)
    ctcvr = data.train.y["ctcvr"]
    assert abs(np.isnan(ctcvr).mean() - 0.3) < 4 * np.sqrt(0.21 / 20_000)
    assert not np.isnan(data.train.y["ctr"]).any()


@pytest.mark.parametrize(
    "option, value, expected",
    [("conversion_delay", -1.0, ">= 0"), ("missing_conversions", 1.0, r"\[0, 1\)")],
)
def test_bad_logging_options_name_the_option(option, value, expected):
    with pytest.raises(ValueError, match=rf"`{option}`.*{expected}.*{option}={value}"):
        click_conversion(**SMALL, **{option: value})
