"""`LookaheadAffinity`: inter-task affinity measured during normal training (Fifty et al., NeurIPS 2021).

Fifty, Amid, Zhao, Yu, Anil, Finn, "Efficiently Identifying Task Groupings for Multi-Task Networks"
(TAG). Every ``every`` training steps, on the step's own training batch, for each task i the shared
parameters θ_s take one lookahead step on task i's loss alone, θ_s' = θ_s − η ∇_{θ_s} L_i (the
task-specific parameters stay), and the affinity of task i onto task j is

    Z_{i→j} = 1 − L_j(θ_s', θ_j) / L_j(θ_s, θ_j),

positive when a step for i lowers j's loss. The matrix is averaged over the steps it was computed on.

The lookahead step. The paper applies the optimizer's own update; this callback takes a plain SGD step
with the optimizer's current learning rate η (a schedule evaluated at the step), or with ``learning_rate``
when given. With SGD both are the same. With Adam the real update is normalised per parameter, so the
SGD step is smaller and |Z| smaller than with Adam's step; the signs and the ordering of the affinities
are what grouping uses, and a larger ``learning_rate`` scales them up.

Masks. Task losses are the model's masked means (missing labels, per-task sample weights). Z_{i→j} is
left out of the average for a step on which task i or task j has no labelled example in the batch, or
L_j(θ) = 0; a pair that was never measured is NaN.

The trajectory. The lookahead losses are computed in a ``keras.StatelessScope`` (see
:mod:`mtl_keras.training.lookahead`): nothing is assigned, so weights, optimizer state, batch
normalisation statistics and dropout seeds are exactly those of a run without the callback.

MirroredStrategy. Exact: the task gradients and the loss sums/counts are summed over the replicas (outside
the ``tf.cond`` of ``every``, where collectives are allowed), so each replica moves θ_s by the global
gradient and each Z uses the global masked losses.

Cost. Per measured step: T backward passes (one per task) and T + 1 forward passes of the batch, on top of
the step; between measured steps only the tape is kept persistent. ``benchmarks/affinity_cost.py``
measures the factor over a plain run (benchmarks/results/affinity_cost.md).
"""

from __future__ import annotations

import json
import os
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from mtl_keras._io import atomic_write_text
from mtl_keras.training.lookahead import LookaheadProbe
from mtl_keras.training.replicas import all_reduce_sum


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"Expected `{name}` to be a positive integer. Received: {name}={value!r}")
    return value


class LookaheadAffinity(keras.callbacks.Callback):
    """Measure Z_{i→j} every ``every`` steps of ``fit`` on a :class:`~mtl_keras.MultiTaskModel`.

    Args:
        every: measure on every ``every``-th training step (the optimizer's step counter, from 0).
        learning_rate: the lookahead step size; None uses the optimizer's current learning rate.
        training: the mode of the lookahead forward passes (True: dropout and batch statistics as in
            training; the masks are the same in all T + 1 passes of one step).
        path: a JSON file rewritten after every epoch with :meth:`to_dict`; None keeps it in memory.

    Attributes (reset by each ``fit``): ``task_names``; ``epoch_matrices``, one (T, T) array per epoch with
    that epoch's mean, ``matrix[i][j]`` = affinity of task i onto task j; ``epoch_counts``, how many
    measurements each entry rests on. :meth:`mean_matrix` is the mean over all measured steps.

    Raises:
        ValueError: when ``fit`` starts on a model that is not a compiled MultiTaskModel with shared
            variables.
    """

    def __init__(
        self,
        every: int = 1,
        *,
        learning_rate: float | None = None,
        training: bool = True,
        path: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__()
        self.every = _positive_int("every", every)
        if learning_rate is not None and not float(learning_rate) > 0:
            raise ValueError(
                f"Expected `learning_rate` to be a positive number or None. Received: {learning_rate!r}"
            )
        self.learning_rate = None if learning_rate is None else float(learning_rate)
        self.training = bool(training)
        self.path = None if path is None else os.fspath(path)
        self.task_names: list[str] = []
        self.epoch_matrices: list[np.ndarray] = []
        self.epoch_counts: list[np.ndarray] = []
        self._epoch_sums: list[np.ndarray] = []
        self._hooked: Any = None
        self._sums: tf.Variable | None = None
        self._counts: tf.Variable | None = None

    # --- wiring ------------------------------------------------------------------------------------------

    def set_model(self, model: Any) -> None:
        """Register the lookahead hook (before ``fit`` builds its train function)."""
        super().set_model(model)
        if self._hooked is model:
            return
        self._unhook()
        if not hasattr(model, "add_lookahead_hook") or not getattr(model, "_mtl_compiled", False):
            raise ValueError(
                f"LookaheadAffinity needs a compiled MultiTaskModel. Received: {type(model).__name__} "
                f"{getattr(model, 'name', '')!r}."
            )
        if not model.shared_variables:
            raise ValueError(
                f"LookaheadAffinity moves the shared parameters, and model {model.name!r} declares no "
                "shared layers with trainable variables (`shared_layers`)."
            )
        self.task_names = list(model.task_names)
        size = len(self.task_names)
        with model.distribute_strategy.scope():
            self._sums = tf.Variable(
                tf.zeros([size, size]),
                trainable=False,
                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
                name="affinity_sums",
            )
            self._counts = tf.Variable(
                tf.zeros([size, size]),
                trainable=False,
                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
                name="affinity_counts",
            )
        model.add_lookahead_hook(self._hook)
        self._hooked = model

    def _unhook(self) -> None:
        if self._hooked is not None:
            self._hooked.remove_lookahead_hook(self._hook)
            self._hooked = None

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.epoch_matrices, self.epoch_counts, self._epoch_sums = [], [], []

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        assert self._sums is not None and self._counts is not None
        self._sums.assign(tf.zeros_like(self._sums))
        self._counts.assign(tf.zeros_like(self._counts))

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        assert self._sums is not None and self._counts is not None
        sums, counts = self._sums.numpy().astype(np.float64), self._counts.numpy().astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            self.epoch_matrices.append(np.where(counts > 0, sums / np.maximum(counts, 1.0), np.nan))
        self.epoch_counts.append(counts)
        self._epoch_sums.append(sums)
        if self.path is not None:
            atomic_write_text(self.path, json.dumps(self.to_dict(), indent=2) + "\n")

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self._unhook()

    # --- the measurement (inside the compiled step) -------------------------------------------------------

    def _hook(self, probe: LookaheadProbe) -> None:
        assert self._sums is not None and self._counts is not None
        size = len(probe.task_names)
        shared = [v.value for v in probe.shared_variables]
        on = tf.equal(tf.math.floormod(tf.cast(probe.iterations, tf.int64), self.every), 0)
        grads = tf.cond(
            on,
            probe.local_task_gradients,
            lambda: [[tf.zeros(v.shape, tf.float32) for v in shared] for _ in range(size)],
        )
        grads = all_reduce_sum(grads)  # outside the cond: the global gradients
        rate = self.learning_rate if self.learning_rate is not None else probe.learning_rate
        rate = tf.cast(rate, tf.float32)

        def losses() -> tuple[tf.Tensor, tf.Tensor]:
            base, counts = probe.local_loss_sums(training=self.training)
            rows = [base]
            for task in grads:
                moved = [tf.cast(v, tf.float32) - rate * g for v, g in zip(shared, task, strict=True)]
                rows.append(probe.local_loss_sums(moved, training=self.training)[0])
            return tf.stack(rows), counts

        sums, counts = tf.cond(on, losses, lambda: (tf.zeros([size + 1, size]), tf.zeros([size])))
        sums, counts = all_reduce_sum((sums, counts))
        means = tf.math.divide_no_nan(sums, counts[None, :])  # (T + 1, T): row 0 at θ, row 1 + i after i
        before, after = means[0], means[1:]
        labelled = counts > 0
        valid = on & labelled[:, None] & labelled[None, :] & (before[None, :] > 0) & tf.math.is_finite(after)
        z = 1.0 - tf.math.divide_no_nan(after, before[None, :])
        self._sums.assign_add(tf.where(valid, z, tf.zeros_like(z)))
        self._counts.assign_add(tf.cast(valid, tf.float32))

    # --- results -----------------------------------------------------------------------------------------

    def total_counts(self) -> np.ndarray:
        """How many measurements each entry of :meth:`mean_matrix` rests on."""
        if not self.epoch_counts:
            raise ValueError("No epoch has been recorded yet: train with this callback first.")
        return np.sum(np.stack(self.epoch_counts), axis=0)

    def mean_matrix(self) -> np.ndarray:
        """Z averaged over every measured step of the training run; NaN where never measured."""
        counts = self.total_counts()
        sums = np.sum(np.stack(self._epoch_sums), axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(counts > 0, sums / np.maximum(counts, 1.0), np.nan)

    def to_dict(self) -> dict[str, Any]:
        def clean(x: float) -> float | None:
            return None if not np.isfinite(x) else float(x)

        def rows(m: np.ndarray) -> list[list[float | None]]:
            return [[clean(x) for x in row] for row in m]

        return {
            "task_names": list(self.task_names),
            "every": self.every,
            "learning_rate": self.learning_rate,
            "epoch_matrices": [rows(m) for m in self.epoch_matrices],
            "matrix": rows(self.mean_matrix()) if self.epoch_matrices else None,
            "counts": rows(self.total_counts()) if self.epoch_counts else None,
        }
