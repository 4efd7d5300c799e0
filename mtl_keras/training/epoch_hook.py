"""The Keras callback that hands each epoch's logs to the balancer's weighting (DWA, inverse validation)."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np


class WeightingEpochHook(keras.callbacks.Callback):
    """Hands the epoch's per-task training losses and validation logs to the balancer's weighting."""

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        model = self.model
        train_losses = np.array([float(logs.get(f"{name}_loss", np.nan)) for name in model.task_names])
        validation = {k: float(v) for k, v in logs.items() if k.startswith("val_")}
        model.balancer.weighting.on_epoch_end(epoch, train_losses, validation)
