"""Ranking metrics of a run that recommender teams read: the test split's GAUC of every binary task.

The user column is the recipe's ``evaluation.user_column``, or ``user_id`` when the test inputs have a
column of that name; without one no GAUC is reported. GAUC itself is :func:`mtl_keras.evaluation.gauc.group_auc`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from mtl_keras.evaluation.gauc import group_auc
from mtl_keras.tasks import Task

logger = logging.getLogger("mtl_keras")

#: The user column used when the recipe names none.
DEFAULT_USER_COLUMN = "user_id"


def binary_tasks(tasks: Sequence[Task]) -> list[str]:
    return [t.name for t in tasks if t.kind == "binary" and t.output_units == 1]


def test_gauc(
    model: Any, dataset: Any, tasks: Sequence[Task], user_column: str | None = None, batch_size: int = 1024
) -> dict[str, float]:
    """``{"<task>_gauc": GAUC on the test split}`` of every binary task, grouped by the user column.

    An explicitly named ``user_column`` that the test inputs lack is an error; the default ``user_id`` is
    used only when present.
    """
    names = binary_tasks(tasks)
    if not names:
        return {}
    column = user_column or DEFAULT_USER_COLUMN
    scores: dict[str, list[np.ndarray]] = {t: [] for t in names}
    labels: dict[str, list[np.ndarray]] = {t: [] for t in names}
    users: list[np.ndarray] = []
    for batch in dataset.batches("test", batch_size):
        x, y = batch[0], batch[1]
        if not isinstance(x, dict) or column not in x:
            if user_column is not None:
                available = sorted(x) if isinstance(x, dict) else "one unnamed input"
                raise ValueError(
                    f"Expected the user column {user_column!r} (evaluation.user_column) among the test "
                    f"inputs. Received: {available}"
                )
            return {}
        result = model(x, training=False)
        users.append(np.asarray(x[column]).reshape(-1))
        for task in names:
            scores[task].append(np.asarray(result[task], dtype=np.float64).reshape(-1))
            labels[task].append(np.asarray(y[task], dtype=np.float64).reshape(-1))
    if not users:
        return {}
    groups = np.concatenate(users)
    metrics = {}
    for task in names:
        entry = group_auc(np.concatenate(scores[task]), np.concatenate(labels[task]), groups)
        metrics[f"{task}_gauc"] = entry["gauc"]
        logger.info(
            "GAUC of %s over %s: %.4f (%d users with both classes, %d users with one class left out).",
            task,
            column,
            entry["gauc"],
            entry["users"],
            entry["skipped_users"],
        )
    return metrics


__all__ = ["DEFAULT_USER_COLUMN", "binary_tasks", "test_gauc"]
