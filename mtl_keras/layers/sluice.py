"""`LayerStitch`: the learned β mix of a column's layer outputs (sluice networks, Ruder et al., AAAI 2019)."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from mtl_keras._registry import serializable
from mtl_keras.layers._checks import check_positive_int
from mtl_keras.layers.cross_stitch import check_input_shapes


@serializable
class LayerStitch(keras.layers.Layer):
    """``Σ_k β_k h_k``: inputs a list of the K same-shaped layer outputs of one task, output one tensor.

    β is a learned vector initialised to ``1/K`` (the "balanced" initialisation of Ruder et al.), so the
    tower reads a mix of shallow and deep features whose proportions are learned: the sluice network's
    layer-stitch unit, a learned skip connection from every layer into the task's tower.

    Args:
        num_layers: K, the number of inputs.
    """

    def __init__(self, num_layers: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_layers = check_positive_int(num_layers, "num_layers")

    def build(self, input_shape: Any) -> None:
        check_input_shapes(input_shape, self.num_layers, "num_layers", type(self).__name__)
        self.beta = self.add_weight(
            shape=(self.num_layers,),
            initializer=keras.initializers.Constant(np.full(self.num_layers, 1.0 / self.num_layers)),
            name="beta",
        )

    def call(self, inputs: Any) -> Any:
        stacked = ops.stack(list(inputs), axis=0)  # (K, batch, ...)
        return ops.tensordot(ops.cast(self.beta, stacked.dtype), stacked, axes=1)

    def compute_output_shape(self, input_shape: Any) -> tuple[Any, ...]:
        return tuple(input_shape[0])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "num_layers": self.num_layers}
