"""`GradientConflictMonitor`: per-epoch pairwise task-gradient cosines and the conflict fraction.

A model compiled with ``log_conflicts=True`` computes, every training step, the cosine between each pair of
task gradients on the shared parameters (or on the shared representation with ``balancer_level="rep"``)
and logs two kinds of epoch means: ``cos_<a>_<b>`` (the mean cosine of the pair) and ``conflict_fraction``
(the mean over steps of the fraction of task pairs whose cosine is negative; with two tasks, the fraction
of steps on which their gradients conflict). This callback collects them into T×T matrices, one per epoch.
"""

from __future__ import annotations

import json
import os
from typing import Any

import keras
import numpy as np

from mtl_keras._io import atomic_write_text


class GradientConflictMonitor(keras.callbacks.Callback):
    """Collect the epoch-mean cosine matrix of task gradients; optionally keep it in a JSON file.

    Args:
        path: a JSON file rewritten (atomically) after every epoch with ``task_names``, ``epochs``,
            ``matrices`` (per epoch, T×T, diagonal 1), ``conflict_fraction`` (per epoch) and
            ``mean_matrix``; None keeps everything in memory only.

    Attributes (reset by each ``fit``): ``task_names``, ``epochs`` (0-based), ``matrices`` (list of
    ``(T, T)`` arrays), ``conflict_fractions`` (list of floats). ``mean_matrix()`` averages the epochs; it
    can be passed to :func:`mtl_keras.evaluation.plot_conflicts`.

    Raises:
        ValueError: at the start of training, when the model was not compiled with ``log_conflicts=True``.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        super().__init__()
        self.path = None if path is None else os.fspath(path)
        self.task_names: list[str] = []
        self.epochs: list[int] = []
        self.matrices: list[np.ndarray] = []
        self.conflict_fractions: list[float] = []

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        balancer = getattr(self.model, "balancer", None)
        if balancer is None or not getattr(balancer, "log_conflicts", False):
            raise ValueError(
                f"GradientConflictMonitor reads the gradient cosines that a MultiTaskModel logs only when "
                f"compiled with `log_conflicts=True`; model {self.model.name!r} was not. Call "
                "`model.compile(..., log_conflicts=True)` (the model needs shared layers)."
            )
        self.task_names = list(self.model.task_names)
        self.epochs, self.matrices, self.conflict_fractions = [], [], []

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        names = self.task_names
        matrix = np.eye(len(names))
        for i, a in enumerate(names):
            for j in range(i + 1, len(names)):
                key = f"cos_{a}_{names[j]}"
                if key not in logs:
                    raise ValueError(f"Expected {key!r} in the epoch logs. Received keys: {sorted(logs)}")
                matrix[i, j] = matrix[j, i] = float(logs[key])
        self.epochs.append(int(epoch))
        self.matrices.append(matrix)
        self.conflict_fractions.append(float(logs.get("conflict_fraction", np.nan)))
        if self.path is not None:
            atomic_write_text(self.path, json.dumps(self.to_dict(), indent=2) + "\n")

    def mean_matrix(self) -> np.ndarray:
        """The cosine matrix averaged over the epochs seen."""
        if not self.matrices:
            raise ValueError("No epoch has been recorded yet.")
        return np.mean(np.stack(self.matrices), axis=0)

    def to_dict(self) -> dict[str, Any]:
        def clean(x: float) -> float | None:
            return None if not np.isfinite(x) else float(x)

        return {
            "task_names": list(self.task_names),
            "epochs": list(self.epochs),
            "matrices": [[[clean(x) for x in row] for row in m] for m in self.matrices],
            "conflict_fraction": [clean(x) for x in self.conflict_fractions],
            "mean_matrix": (
                [[clean(x) for x in row] for row in self.mean_matrix()] if self.matrices else None
            ),
        }
