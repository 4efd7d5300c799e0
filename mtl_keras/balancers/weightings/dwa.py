"""Dynamic weight average (Liu, Johns & Davison, CVPR 2019)."""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from mtl_keras.balancers.base import WEIGHTINGS, Weighting
from mtl_keras.option_types import PositiveFloat


@WEIGHTINGS.register("dwa")
class DWA(Weighting):
    """λ = T·softmax(r / τ), r_i = L̄_i(t−1) / L̄_i(t−2) from epoch-mean training losses; λ = 1 for the first
    two epochs.

    Args:
        temperature: τ (2 in the paper).
    """

    def __init__(self, *, temperature: PositiveFloat = 2.0) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"Expected `temperature` to be positive. Received: temperature={temperature!r}")
        self.temperature = float(temperature)

    def build(self, num_tasks: int) -> None:
        super().build(num_tasks)
        self.lambdas = self.add_variable(tf.ones([num_tasks]), "dwa_weights")
        self._history: list[np.ndarray] = []

    def weights(self) -> tf.Tensor:
        return tf.convert_to_tensor(self.lambdas)

    def weigh(
        self, losses: tf.Tensor, *, gradient_norms: tf.Tensor | None = None, training: bool = True
    ) -> tuple[tf.Tensor, tf.Tensor]:
        return self.weights(), tf.zeros_like(losses)

    def on_epoch_end(self, epoch: int, train_losses: Any, validation_logs: dict[str, float]) -> None:
        self._history = [*self._history[-1:], np.asarray(train_losses, dtype=np.float64)]
        if len(self._history) < 2:
            return
        ratio = self._history[1] / np.maximum(self._history[0], 1e-12)
        # A task without labels in an epoch has a NaN loss: its rate is unknown, taken as neutral (1).
        ratio = np.where(np.isfinite(ratio), ratio, 1.0)
        logits = ratio / self.temperature
        exp = np.exp(logits - logits.max())
        assert self.num_tasks is not None
        self.lambdas.assign((self.num_tasks * exp / exp.sum()).astype("float32"))

    def get_config(self) -> dict[str, Any]:
        return {"temperature": self.temperature, **super().get_config()}
