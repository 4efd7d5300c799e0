"""Δm % against hand-computed numbers; positive means the multi-task model is better."""

from __future__ import annotations

import pytest

from mtl_keras.evaluation import delta_m, delta_m_multi, relative_improvement


def test_one_higher_and_one_lower_is_better_metric() -> None:
    # AUC 0.84 vs 0.80: +0.04/0.80 = +5 %; MSE 0.60 vs 0.50: worse by 0.10/0.50 = -20 %; mean -7.5 %.
    value = delta_m({"a": 0.84, "b": 0.60}, {"a": 0.80, "b": 0.50}, {"a": True, "b": False})
    assert value == pytest.approx(-7.5)


def test_positive_when_multi_task_is_better_on_both() -> None:
    # AUC 0.90 vs 0.80: +12.5 %; MSE 0.40 vs 0.50: +20 %; mean +16.25 %.
    value = delta_m({"a": 0.90, "b": 0.40}, {"a": 0.80, "b": 0.50}, {"a": True, "b": False})
    assert value == pytest.approx(16.25)
    # Equal metrics: 0.
    assert delta_m({"a": 0.8}, {"a": 0.8}, {"a": True}) == 0.0


def test_negative_baseline_keeps_better_positive() -> None:
    # A higher-is-better score moving from -1.0 to -0.5 is an improvement of 0.5/|-1.0| = 50 %.
    assert relative_improvement(-0.5, -1.0, True) == pytest.approx(50.0)


def test_zero_baseline_raises() -> None:
    with pytest.raises(ValueError, match="baseline of task 'b' is 0"):
        delta_m({"a": 0.84, "b": 0.1}, {"a": 0.80, "b": 0.0}, {"a": True, "b": False})


def test_mismatched_tasks_raise() -> None:
    with pytest.raises(ValueError, match="same tasks"):
        delta_m({"a": 0.84, "b": 0.6}, {"a": 0.80}, {"a": True, "b": False})
    with pytest.raises(ValueError, match="at least one task"):
        delta_m({}, {}, {})


def test_several_metrics_per_task() -> None:
    multi = {"a": {"auc": 0.84, "accuracy": 0.90}, "b": {"mse": 0.60}}
    single = {"a": {"auc": 0.80, "accuracy": 0.75, "loss": 0.3}, "b": {"mse": 0.50}}
    # a: auc +5 %, accuracy +20 % -> task mean +12.5 %; b: -20 %.
    assert delta_m_multi(multi, single) == pytest.approx((12.5 - 20.0) / 2)
    # Over all (task, metric) pairs: (5 + 20 - 20) / 3.
    assert delta_m_multi(multi, single, average="pair") == pytest.approx(5.0 / 3.0)


def test_several_metrics_directions() -> None:
    multi = {"a": {"score": 0.6}}
    single = {"a": {"score": 0.5}}
    with pytest.raises(ValueError, match="Unknown direction for metric 'score'"):
        delta_m_multi(multi, single)
    assert delta_m_multi(multi, single, {"score": True}) == pytest.approx(20.0)
    assert delta_m_multi(multi, single, {"a": {"score": False}}) == pytest.approx(-20.0)
    with pytest.raises(ValueError, match="average"):
        delta_m_multi(multi, single, {"score": True}, average="metric")
    with pytest.raises(ValueError, match="No single-task baseline for metric 'auc'"):
        delta_m_multi({"a": {"auc": 0.9}}, single)


def test_missing_metrics_are_skipped_only_when_asked() -> None:
    from mtl_keras.evaluation.delta_m import is_missing, missing_pairs

    nan = float("nan")
    multi = {"a": {"auc": 0.84, "accuracy": nan}, "b": {"mse": None}, "c": {"mse": 0.6}}
    single = {"a": {"auc": 0.80, "accuracy": 0.75}, "b": {"mse": 0.5}, "c": {"mse": nan}}
    assert is_missing(nan) and is_missing(None) and not is_missing(0.0)
    assert missing_pairs(multi, single) == {"a": ["accuracy"], "b": ["mse"], "c": ["mse"]}
    # Only a's auc is left: +5 %, averaged over the one task that has a value.
    assert delta_m_multi(multi, single, skip_missing=True) == pytest.approx(5.0)
    assert delta_m_multi(multi, single, skip_missing=True, average="pair") == pytest.approx(5.0)
    with pytest.raises(ValueError, match=r"a accuracy is missing .* multi-task"):
        delta_m_multi(multi, single)
    with pytest.raises(ValueError, match="Every metric entering Δm is missing"):
        delta_m_multi({"b": {"mse": nan}}, {"b": {"mse": 0.5}}, skip_missing=True)
    with pytest.raises(ValueError, match=r"missing .* single-task"):
        relative_improvement(0.5, nan, False)
