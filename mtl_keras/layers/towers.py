"""`Tower`: a task's private Dense stack followed by its output layer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras

from mtl_keras._registry import serializable
from mtl_keras.layers._checks import check_positive_ints, check_rate


@serializable
class Tower(keras.layers.Layer):
    """Dense(units[0]) → … → Dense(units[-1]) → Dense(output_units, output_activation).

    Every sublayer follows the tower's dtype policy, so under ``mixed_float16`` the output is float16 (the
    compute dtype); a model that wants float32 outputs puts a float32 layer after the tower, the Keras way.

    Args:
        units: hidden layer sizes (may be empty: the tower is then just the output layer).
        output_units: width of the output.
        output_activation: ``"sigmoid"``, ``"softmax"``, ``"linear"``, ...
        activation: activation of the hidden layers.
        dropout: dropout rate after each hidden layer.
    """

    def __init__(
        self,
        units: Sequence[int] = (),
        output_units: int = 1,
        output_activation: str = "linear",
        activation: str = "relu",
        dropout: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.units = check_positive_ints(units, "units")
        self.output_units = check_positive_ints([output_units], "output_units")[0]
        self.output_activation = output_activation
        self.activation = activation
        self.dropout = check_rate(dropout, "dropout")
        policy = self.dtype_policy
        self.hidden = [
            keras.layers.Dense(u, activation=activation, dtype=policy, name=f"dense_{i}")
            for i, u in enumerate(self.units)
        ]
        self.dropouts = (
            [keras.layers.Dropout(self.dropout, dtype=policy) for _ in self.units] if self.dropout else []
        )
        self.head = keras.layers.Dense(
            output_units, activation=output_activation, dtype=policy, name="output"
        )

    def build(self, input_shape: Any) -> None:
        shape = input_shape
        for layer in self.hidden:
            layer.build(shape)
            shape = layer.compute_output_shape(shape)
        self.head.build(shape)

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        x = inputs
        for i, layer in enumerate(self.hidden):
            x = layer(x)
            if self.dropouts:
                x = self.dropouts[i](x, training=training)
        return self.head(x)

    def compute_output_shape(self, input_shape: Any) -> tuple[Any, ...]:
        return (*input_shape[:-1], self.output_units)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "units": list(self.units),
            "output_units": self.output_units,
            "output_activation": self.output_activation,
            "activation": self.activation,
            "dropout": self.dropout,
        }
