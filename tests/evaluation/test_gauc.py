"""GAUC against an independent per-user computation with scikit-learn (in a run's report: test_zoo.py)."""

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from mtl_keras.evaluation.gauc import group_auc


def sklearn_gauc(scores, labels, users):
    total = weight = 0.0
    for user in set(users.tolist()):
        rows = (users == user) & ~np.isnan(labels)
        if len(set(labels[rows].tolist())) < 2:
            continue
        total += rows.sum() * roc_auc_score(labels[rows], scores[rows])
        weight += rows.sum()
    return total / weight


def test_matches_sklearn_per_user_weighted_by_impressions():
    rng = np.random.default_rng(0)
    n = 2_000
    users = rng.integers(0, 150, n).astype(str)
    labels = (rng.uniform(size=n) < 0.3).astype(float)
    scores = np.round(labels * 0.3 + rng.uniform(size=n), 1)  # rounded: many ties
    labels[::17] = np.nan
    got = group_auc(scores, labels, users)
    assert got["gauc"] == pytest.approx(sklearn_gauc(scores, labels, users), abs=1e-12)
    one_class = sum(
        len(set(labels[(users == u) & ~np.isnan(labels)].tolist())) < 2 for u in set(users.tolist())
    )
    assert got["skipped_users"] == one_class > 0
    assert got["users"] + got["skipped_users"] == len(set(users.tolist()))


def test_hand_example_and_edge_cases():
    # user a: 4 impressions, AUC 0.75; user b: 2 impressions, AUC 0; user c: only positives, skipped.
    scores = [0.9, 0.5, 0.4, 0.3, 0.1, 0.8, 0.5]
    labels = [1, 0, 1, 0, 1, 0, 1]
    users = ["a", "a", "a", "a", "b", "b", "c"]
    got = group_auc(scores, labels, users)
    assert got["gauc"] == pytest.approx((4 * 0.75 + 2 * 0.0) / 6)
    assert (got["users"], got["skipped_users"], got["impressions"]) == (2, 1, 6)
    assert math.isnan(group_auc([0.1, 0.2], [1, 1], ["a", "b"])["gauc"])
    with pytest.raises(ValueError, match="Expected one score, one label and one group per impression"):
        group_auc([0.1], [1, 0], ["a", "a"])


# GAUC in a run's report: tests/cli/test_zoo.py (the click_conversion recipes).
