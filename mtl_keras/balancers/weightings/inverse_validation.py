"""Inverse-validation weighting (the seed article's dynamic weights)."""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from mtl_keras.balancers.base import WEIGHTINGS, Weighting


@WEIGHTINGS.register("inverse_validation")
class InverseValidation(Weighting):
    """After each epoch, λ_i ∝ 1 / (validation score of task i), renormalised so that Σ λ_i = T.

    Args:
        metric: which validation value is the score: ``"loss"`` reads ``val_<task>_loss``, any other name
            reads ``val_<task>_<metric>``. Weights stay 1 until the first epoch with validation data.
    """

    def __init__(self, *, metric: str = "loss") -> None:
        super().__init__()
        self.metric = metric

    def build(self, num_tasks: int) -> None:
        super().build(num_tasks)
        self.lambdas = self.add_variable(tf.ones([num_tasks]), "inverse_validation_weights")

    def weights(self) -> tf.Tensor:
        return tf.convert_to_tensor(self.lambdas)

    def weigh(
        self, losses: tf.Tensor, *, gradient_norms: tf.Tensor | None = None, training: bool = True
    ) -> tuple[tf.Tensor, tf.Tensor]:
        return self.weights(), tf.zeros_like(losses)

    def on_epoch_end(self, epoch: int, train_losses: Any, validation_logs: dict[str, float]) -> None:
        keys = [f"val_{name}_{self.metric}" for name in self.task_names]
        if not validation_logs:
            return
        missing = [k for k in keys if k not in validation_logs]
        if missing:
            raise ValueError(
                f"inverse_validation weighting reads {missing[0]!r}, which is not in the validation logs "
                f"{sorted(validation_logs)}; check its `metric` option ({self.metric!r})."
            )
        scores = np.array([validation_logs[k] for k in keys], dtype=np.float64)
        inverse = 1.0 / np.maximum(scores, 1e-12)
        known = np.isfinite(inverse)
        if not known.any():  # no task had validation labels: keep the weights
            return
        # A task without validation labels (NaN score) gets the mean of the others' inverse scores.
        inverse = np.where(known, inverse, inverse[known].mean())
        self.lambdas.assign((len(keys) * inverse / inverse.sum()).astype("float32"))

    def get_config(self) -> dict[str, Any]:
        return {"metric": self.metric, **super().get_config()}
