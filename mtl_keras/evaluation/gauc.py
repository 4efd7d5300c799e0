"""Group AUC (GAUC): the AUC of each user's impressions, averaged over users weighted by impressions.

For user ``u`` with ``n_u`` labelled impressions, of which some are positive and some negative, ``AUC_u`` is
the usual ROC AUC of the scores within ``u`` (ties count one half: the Mann–Whitney statistic with mid
ranks). Then::

    GAUC = Σ_u n_u · AUC_u / Σ_u n_u

over the users with both classes only: a user whose impressions are all positive or all negative has no
AUC and is left out (with their impressions, from both sums). Impressions with a NaN label are dropped
first. With no user left, GAUC is NaN (a missing metric). Used for the recommender recipes whose data has a
user column (recipe ``evaluation.user_column``, see docs/methods.md, "GAUC").
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np


def _mid_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n of ``values``, ties given the mean of their ranks."""
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values), dtype=np.float64)
    sorted_values = values[order]
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], len(values)]
    for start, end in zip(starts, ends, strict=True):
        ranks[order[start:end]] = (start + end + 1) / 2.0
    return ranks


def group_auc(scores: Any, labels: Any, groups: Any) -> dict[str, float]:
    """``{"gauc", "users", "skipped_users", "impressions"}``: GAUC of ``scores`` against 0/1 ``labels``
    grouped by ``groups`` (any hashable values, e.g. user ids), and what entered it."""
    p = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    g = np.asarray(groups).reshape(-1)
    if not len(p) == len(y) == len(g):
        raise ValueError(
            "Expected one score, one label and one group per impression. "
            f"Received {len(p)} scores, {len(y)} labels, {len(g)} groups."
        )
    keep = ~np.isnan(y)
    p, y, g = p[keep], y[keep], g[keep]
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError(f"Expected 0/1 labels for GAUC. Received values {sorted(set(y.tolist()))[:5]}")
    _, index = np.unique(g.astype(str), return_inverse=True)
    order = np.argsort(index, kind="mergesort")
    bounds = np.flatnonzero(np.r_[True, np.diff(index[order]) != 0, True])
    total, weight, users, skipped = 0.0, 0, 0, 0
    for start, end in itertools.pairwise(bounds):
        rows = order[start:end]
        positives = int(y[rows].sum())
        negatives = len(rows) - positives
        if positives == 0 or negatives == 0:
            skipped += 1
            continue
        ranks = _mid_ranks(p[rows])
        auc = (ranks[y[rows] == 1].sum() - positives * (positives + 1) / 2.0) / (positives * negatives)
        total += len(rows) * auc
        weight += len(rows)
        users += 1
    return {
        "gauc": total / weight if weight else float("nan"),
        "users": float(users),
        "skipped_users": float(skipped),
        "impressions": float(weight),
    }


__all__ = ["group_auc"]
