"""AITM's two layers (Xi et al., "Modeling the Sequential Dependence among Audience Multi-step Conversions
with Multi-task Learning in Targeted Display Advertising", KDD 2021): the adaptive information transfer
(AIT) module and the behavioural-expectation calibrator."""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import ops

from mtl_keras._registry import serializable
from mtl_keras.layers._checks import check_non_negative


@serializable
class AdaptiveInformationTransfer(keras.layers.Layer):
    """The AIT module: attention over two vectors, ``[p, q]`` (both (batch, d)) → z (batch, d).

    ``p`` is the information transferred from the previous task, ``q`` the current task's own
    representation. With ``h1``, ``h2``, ``h3`` three linear maps R^d → R^d::

        w_u = softmax_u( ⟨h1(u), h2(u)⟩ / √d ),   u ∈ {p, q}
        z   = Σ_u w_u · h3(u)

    The attention scores are computed in float32, ``z`` in the compute dtype.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.width = 0
        self.query: Any = None
        self.key: Any = None
        self.value: Any = None

    def build(self, input_shape: Any) -> None:
        p_shape, q_shape = input_shape
        if p_shape[-1] != q_shape[-1]:
            raise ValueError(
                "Expected the transferred and the own representation to have the same width. "
                f"Received shapes {tuple(p_shape)} and {tuple(q_shape)}."
            )
        width = int(q_shape[-1])
        self.width = width
        layers = [
            keras.layers.Dense(width, dtype=self.dtype_policy, name=n) for n in ("query", "key", "value")
        ]
        for layer in layers:
            layer.build(q_shape)
        self.query, self.key, self.value = layers

    def attention(self, inputs: Any) -> Any:
        """The weights ``[w_p, w_q]`` of every example: (batch, 2), float32."""
        stacked = ops.stack(list(inputs), axis=1)  # (batch, 2, d)
        query, key = ops.cast(self.query(stacked), "float32"), ops.cast(self.key(stacked), "float32")
        return ops.softmax(ops.sum(query * key, axis=-1) / math.sqrt(self.width), axis=-1)

    def call(self, inputs: Any) -> Any:
        stacked = ops.stack(list(inputs), axis=1)
        weights = ops.cast(self.attention(inputs), self.compute_dtype)
        return ops.einsum("bu,bud->bd", weights, self.value(stacked))

    def compute_output_shape(self, input_shape: Any) -> tuple[Any, ...]:
        return tuple(input_shape[1])


@serializable
class BehaviouralExpectation(keras.layers.Layer):
    """AITM's behavioural-expectation calibrator: ``[p_earlier, p_later]`` → ``p_later`` unchanged, with
    ``weight · mean_batch max(p_later − p_earlier, 0)`` added as a loss (a later step of a conversion
    funnel, a purchase after a click, cannot be likelier than the earlier one).

    Args:
        weight: the penalty's weight (α of the paper); 0 adds no loss.
    """

    def __init__(self, weight: float = 0.6, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.weight = check_non_negative(weight, "weight")
        self._build_at_init()  # no variables

    def call(self, inputs: Any) -> Any:
        earlier, later = inputs
        if self.weight > 0:
            excess = ops.relu(ops.cast(later, "float32") - ops.cast(earlier, "float32"))
            self.add_loss(self.weight * ops.mean(excess))
        return later

    def compute_output_shape(self, input_shape: Any) -> tuple[Any, ...]:
        return tuple(input_shape[1])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "weight": self.weight}
