"""The negative-transfer verdict: its paired t-test against SciPy's own, and the verdict rules."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from mtl_keras.evaluation.verdict import (
    HELPS,
    HURTS,
    NO_EFFECT,
    serve_from,
    t_test_p_value,
    task_verdict,
    transfer_verdicts,
)


@pytest.mark.parametrize("values", [[0.1, 0.3, 0.2], [1.0, -0.5, 0.2, 0.4], [-3.0, -2.5, -2.9, -3.4, -2.0]])
def test_p_value_is_scipys_one_sample_t_test(values):
    expected = stats.ttest_1samp(values, 0.0).pvalue
    assert t_test_p_value(values) == pytest.approx(expected, rel=1e-10)


def test_p_value_edges():
    assert t_test_p_value([0.3]) is None
    assert t_test_p_value([]) is None
    assert t_test_p_value([0.2, 0.2, 0.2]) == 0.0  # the same non-zero value every seed: the sign decides
    assert t_test_p_value([0.0, 0.0]) == 1.0


def test_lower_is_better_metric_worse_for_multi_task_hurts():
    # MSE: multi-task 1.9 against single-task 0.02, 0.03, 0.01 — a paired difference far from 0.
    verdict = task_verdict([1.95, 1.96, 1.97], [0.02, 0.03, 0.01], higher_is_better=False)
    assert verdict["verdict"] == HURTS
    assert verdict["seeds"] == 3
    differences = -(np.array([1.95, 1.96, 1.97]) - np.array([0.02, 0.03, 0.01]))
    assert verdict["p_value"] == pytest.approx(stats.ttest_1samp(differences, 0.0).pvalue)
    expected_change = np.mean(100 * differences / np.array([0.02, 0.03, 0.01]))
    assert verdict["mean_percent"] == pytest.approx(expected_change)


def test_higher_is_better_consistent_gain_helps_and_noise_is_no_effect():
    assert task_verdict([0.91, 0.92, 0.905], [0.90, 0.91, 0.895], higher_is_better=True)["verdict"] == HELPS
    noisy = task_verdict([0.91, 0.89, 0.905], [0.90, 0.90, 0.90], higher_is_better=True)
    assert noisy["verdict"] == NO_EFFECT and 0.05 < noisy["p_value"] < 1


def test_one_seed_and_missing_values_give_no_verdict():
    assert task_verdict([0.5], [0.9], higher_is_better=True)["verdict"] == NO_EFFECT
    # A seed without labelled examples (None / NaN) is left out of the pairs.
    verdict = task_verdict([0.5, None, math.nan], [0.9, 0.8, 0.7], higher_is_better=True)
    assert verdict["seeds"] == 1 and verdict["verdict"] == NO_EFFECT


def test_min_effect_and_significance():
    kwargs = {"higher_is_better": True}
    small = ([0.9010, 0.9011, 0.9012], [0.9000, 0.9000, 0.9001])
    assert task_verdict(*small, **kwargs)["verdict"] == HELPS
    assert task_verdict(*small, **kwargs, min_effect_percent=1.0)["verdict"] == NO_EFFECT
    assert task_verdict(*small, **kwargs, significance=1e-9)["verdict"] == NO_EFFECT
    with pytest.raises(ValueError, match="significance"):
        task_verdict(*small, **kwargs, significance=1.5)
    with pytest.raises(ValueError, match="one single-task value per multi-task value"):
        task_verdict([0.1, 0.2], [0.1], **kwargs)


def _report(seed_values):
    tasks = {}
    for task, (metric, higher, multi, single) in seed_values.items():
        tasks[task] = {
            "multi_task": {metric: multi, "loss": 1.0},
            "single_task": {metric: single, "loss": 1.0},
            "higher_is_better": {metric: higher, "loss": False},
        }
    return {"recipe": "r", "delta_m_metrics": {t: [v[0]] for t, v in seed_values.items()}, "tasks": tasks}


def test_transfer_verdicts_from_reports_and_who_serves():
    reports = [
        _report({"ctr": ("auc", True, 0.80 + d, 0.78 + d), "cvr": ("mse", False, 0.5 + d, 0.3 + d)})
        for d in (0.0, 0.011, -0.007)
    ]
    verdicts = transfer_verdicts(reports)
    assert verdicts["ctr"]["verdict"] == HELPS and verdicts["ctr"]["metric"] == "auc"
    assert verdicts["cvr"]["verdict"] == HURTS and verdicts["cvr"]["seeds"] == 3
    assert verdicts["cvr"]["multi_task"] == pytest.approx([0.5, 0.511, 0.493])
    assert serve_from(verdicts) == {"ctr": "multi_task", "cvr": "single_task"}
    with pytest.raises(ValueError, match="at least one report"):
        transfer_verdicts([])
