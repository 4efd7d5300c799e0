"""Harden every DSelect-k gate of a model at an epoch, so that each example uses at most ``k`` experts."""

from __future__ import annotations

from typing import Any

import keras

from mtl_keras.layers._checks import check_positive_int
from mtl_keras.layers.dselect_k import DSelectKGate


def dselect_k_gates(model: Any) -> list[DSelectKGate]:
    """Every :class:`~mtl_keras.layers.DSelectKGate` of ``model``, nested layers included."""
    return [layer for layer in model._flatten_layers(include_self=False) if isinstance(layer, DSelectKGate)]


class HardenDSelectK(keras.callbacks.Callback):
    """At the start of epoch ``epoch`` (0-based; the first epoch at or after it in a resumed run), call :meth:`~mtl_keras.layers.DSelectKGate.harden` on every
    DSelect-k gate of the model: the smooth-step becomes the step ``1[t > 0]``, so each selector picks exactly
    one expert for every example and the remaining epochs train the experts, towers and selector weights
    with that routing fixed.

    Args:
        epoch: the epoch to harden at (a positive integer, so that the gate is trained soft first).
    """

    def __init__(self, epoch: int) -> None:
        super().__init__()
        self.epoch = check_positive_int(epoch, "epoch")
        self.hardened_at: int | None = None

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        # The first epoch at or after `epoch` (a run resumed later hardens at once; hardening is idempotent).
        if epoch < self.epoch or self.hardened_at is not None:
            return
        gates = dselect_k_gates(self.model)
        if not gates:
            raise ValueError(
                f"Expected model {self.model.name!r} to have a DSelect-k gate (gate='dselect_k' or "
                "'dselect_k_static'). Received a model with none."
            )
        for gate in gates:
            gate.harden()
        self.hardened_at = epoch
