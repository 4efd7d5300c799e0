"""`UnfreezeBackbone`: train with a frozen backbone for the first epochs, then fine-tune it.

At the start of epoch ``at_epoch`` (0-based: the backbone stays frozen for epochs 0 … ``at_epoch`` − 1)
the backbone layers become trainable: their variables join the update and their BatchNormalization layers
leave inference mode (they normalise with batch statistics and update their moving averages). The
model's training step is chosen again for the larger set of shared variables (a gradient aggregator that
fell back to the summed loss while nothing shared was trainable aggregates again) and the compiled train
function is traced anew, for ``fit`` and for the multi-worker loop alike.

The optimizer must know the backbone's variables before the first update (Keras refuses variables it was
not built with): :func:`prepare_unfreezing` builds it with every variable that will be trainable.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import keras

logger = logging.getLogger("mtl_keras")


def trainable_after_unfreezing(model: Any, layers: Sequence[keras.layers.Layer]) -> list[Any]:
    """``model``'s trainable variables once ``layers`` are trainable (the layers are left as they were)."""
    states = [layer.trainable for layer in layers]
    for layer in layers:
        layer.trainable = True
    try:
        return list(model.trainable_variables)
    finally:
        for layer, state in zip(layers, states, strict=True):
            layer.trainable = state


def prepare_unfreezing(model: Any, layers: Sequence[keras.layers.Layer]) -> None:
    """Build ``model``'s optimizer for its variables once ``layers`` are unfrozen (call in the strategy's
    scope, after ``compile``, before training); a built optimizer must already know them."""
    variables = trainable_after_unfreezing(model, layers)
    optimizer = model.optimizer
    if not optimizer.built:
        optimizer.build(variables)
        return
    known = optimizer._trainable_variables_indices
    unknown = [v.path for v in variables if optimizer._var_key(v) not in known]
    if unknown:
        raise ValueError(
            f"The optimizer of model {model.name!r} was built without the variables the backbone adds when "
            f"it is unfrozen ({unknown[:3]}...). Call prepare_unfreezing before the first training step."
        )


class UnfreezeBackbone(keras.callbacks.Callback):
    """Unfreeze ``layers`` (default: the model's backbone layers) at the start of epoch ``at_epoch``.

    Args:
        at_epoch: the first epoch (0-based) trained with the backbone unfrozen.
        layers: the layers to unfreeze, or None for :func:`~mtl_keras.builders.backbones.backbone_layers`.
    """

    def __init__(self, at_epoch: int, layers: Sequence[keras.layers.Layer] | None = None) -> None:
        super().__init__()
        if isinstance(at_epoch, bool) or not isinstance(at_epoch, int) or at_epoch < 0:
            raise ValueError(
                f"Expected `at_epoch` to be a non-negative integer. Received: at_epoch={at_epoch!r}"
            )
        self.at_epoch = at_epoch
        self.layers = None if layers is None else list(layers)
        self.unfrozen_at: int | None = None

    def _layers(self) -> list[keras.layers.Layer]:
        from mtl_keras.builders.backbones import backbone_layers

        layers = self.layers if self.layers is not None else backbone_layers(self.model)
        if not layers:
            raise ValueError(f"Model {self.model.name!r} has no backbone layer to unfreeze.")
        return layers

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        if epoch < self.at_epoch or self.unfrozen_at is not None:
            return
        layers = self._layers()
        if all(layer.trainable for layer in layers):
            self.unfrozen_at = epoch
            return
        for layer in layers:
            layer.trainable = True
        self.model.refresh_step()
        self.unfrozen_at = epoch
        logger.info(
            "Epoch %d: unfroze %s (%d shared variables now trained).",
            epoch + 1,
            ", ".join(repr(layer.name) for layer in layers),
            len(self.model.shared_variables),
        )


__all__ = ["UnfreezeBackbone", "prepare_unfreezing", "trainable_after_unfreezing"]
