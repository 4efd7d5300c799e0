"""Layers of a mixture of experts (Ma et al., KDD 2018): experts, softmax gates, and the gated mixture."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from mtl_keras._registry import serializable
from mtl_keras.layers._checks import check_positive_int, check_positive_ints


@serializable
class Experts(keras.layers.Layer):
    """``num_experts`` independent ReLU MLPs on the same input, stacked: (batch, d) → (batch, num_experts, units[-1]).

    The experts' variables are batched into one kernel per depth, (num_experts, d_in, d_out), so the layer
    runs as a few batched matmuls instead of ``num_experts`` small ones.

    Args:
        num_experts: number of experts.
        units: hidden sizes of every expert (the last one is the expert's output width).
        activation: activation after every expert layer.
    """

    def __init__(
        self, num_experts: int, units: Sequence[int] = (16,), activation: str = "relu", **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.num_experts = check_positive_int(num_experts, "num_experts")
        self.units = check_positive_ints(units, "units", allow_empty=False)
        self.activation = activation
        self._activation = keras.activations.get(activation)

    def build(self, input_shape: Any) -> None:
        d_in = input_shape[-1]
        self.kernels, self.biases = [], []
        for depth, d_out in enumerate(self.units):
            self.kernels.append(
                self.add_weight(
                    shape=(self.num_experts, d_in, d_out),
                    initializer="glorot_uniform",
                    name=f"kernel_{depth}",
                )
            )
            self.biases.append(
                self.add_weight(shape=(self.num_experts, d_out), initializer="zeros", name=f"bias_{depth}")
            )
            d_in = d_out

    def call(self, inputs: Any) -> Any:
        # (batch, d) -> (batch, experts, d) then batched matmul per expert.
        x = ops.einsum("bd,edu->beu", inputs, self.kernels[0]) + self.biases[0]
        x = self._activation(x)
        for kernel, bias in zip(self.kernels[1:], self.biases[1:], strict=True):
            x = self._activation(ops.einsum("beu,euv->bev", x, kernel) + bias)
        return x

    def compute_output_shape(self, input_shape: Any) -> tuple[Any, ...]:
        return (input_shape[0], self.num_experts, self.units[-1])

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "num_experts": self.num_experts,
            "units": list(self.units),
            "activation": self.activation,
        }


@serializable
class Gate(keras.layers.Layer):
    """A softmax gate: (batch, d) → (batch, num_experts) weights that sum to 1 (a linear map then softmax).

    The logits follow the layer's dtype policy; the softmax is taken in float32 and its result cast to the
    compute dtype (under ``mixed_float16`` the weights still sum to 1 up to float16 rounding).
    """

    def __init__(self, num_experts: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_experts = check_positive_int(num_experts, "num_experts")
        self.dense = keras.layers.Dense(self.num_experts, dtype=self.dtype_policy, name="logits")

    def build(self, input_shape: Any) -> None:
        self.dense.build(input_shape)

    def call(self, inputs: Any) -> Any:
        weights = ops.softmax(ops.cast(self.dense(inputs), "float32"), axis=-1)
        return ops.cast(weights, self.compute_dtype)

    def compute_output_shape(self, input_shape: Any) -> tuple[Any, ...]:
        return (input_shape[0], self.num_experts)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "num_experts": self.num_experts}


@serializable
class GatedMixture(keras.layers.Layer):
    """Σ_e gate[b, e] · experts[b, e, :]: inputs ``[experts (batch, E, u), gate (batch, E)]`` → (batch, u)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._build_at_init()  # stateless: built once made, as Keras's own stateless layers are

    def call(self, inputs: Any) -> Any:
        experts, gate = inputs
        return ops.einsum("beu,be->bu", experts, ops.cast(gate, experts.dtype))

    def compute_output_shape(self, input_shape: Any) -> tuple[Any, ...]:
        experts_shape, _ = input_shape
        return (experts_shape[0], experts_shape[2])


@serializable
class ConcatExperts(keras.layers.Layer):
    """Concatenate stacked expert groups along the expert axis: [(b, E1, u), (b, E2, u)] → (b, E1+E2, u)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._build_at_init()  # stateless

    def call(self, inputs: Any) -> Any:
        return ops.concatenate(list(inputs), axis=1)

    def compute_output_shape(self, input_shape: Any) -> tuple[Any, ...]:
        return (input_shape[0][0], sum(s[1] for s in input_shape), input_shape[0][2])
