"""`TaskAttention`: one task's soft attention mask over a shared feature map (MTAN, Liu et al., CVPR 2019)."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from mtl_keras._registry import serializable
from mtl_keras.layers._checks import check_positive_int


@serializable
class TaskAttention(keras.layers.Layer):
    """``a ⊙ s`` with the mask ``a = σ(BN(W₂ · relu(BN(W₁ · [s ; p]))))``, computed at every position.

    Inputs: the shared features ``s`` of one trunk stage, or the list ``[s, p]`` with ``p`` this task's
    features from the previous stage (brought to ``s``'s resolution; any number of channels). ``W₁`` and
    ``W₂`` act on the last axis only, so on a feature map ``(batch, h, w, c)`` they are 1×1 convolutions and
    on a vector ``(batch, c)`` they are Dense layers; the same layer serves both. ``W₂`` has ``c`` outputs
    (the channels of ``s``), so the mask ``a ∈ (0, 1)`` has the shape of ``s`` and picks, per position and
    channel, how much of the shared feature this task uses. This is MTAN's attention module (docs/methods.md,
    "MTAN"); the two linear maps have no bias (each is followed by BatchNormalization's shift).

    Args:
        mask_units: the width of ``W₁``'s output; default: the channels of ``s``.
    """

    def __init__(self, mask_units: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mask_units = None if mask_units is None else check_positive_int(mask_units, "mask_units")
        policy = self.dtype_policy
        self.hidden_dense: keras.layers.Dense | None = None
        self.hidden_norm = keras.layers.BatchNormalization(
            synchronized=True, dtype=policy, name="hidden_norm"
        )
        self.mask_dense: keras.layers.Dense | None = None
        self.mask_norm = keras.layers.BatchNormalization(synchronized=True, dtype=policy, name="mask_norm")

    def build(self, input_shape: Any) -> None:
        shared, previous = _split_shapes(input_shape)
        channels = shared[-1]
        if channels is None:
            raise ValueError(f"Expected the shared features to have a known last axis. Received {shared}.")
        if previous is not None and tuple(previous[1:-1]) != tuple(shared[1:-1]):
            raise ValueError(
                "Expected the previous-stage features to have the shared features' resolution "
                f"{tuple(shared[1:-1])}. Received shapes {shared} and {previous}."
            )
        in_channels = channels + (previous[-1] if previous is not None else 0)
        hidden = self.mask_units or channels
        policy = self.dtype_policy
        self.hidden_dense = keras.layers.Dense(hidden, use_bias=False, dtype=policy, name="hidden")
        self.mask_dense = keras.layers.Dense(channels, use_bias=False, dtype=policy, name="mask")
        inner = (*shared[:-1], in_channels)
        self.hidden_dense.build(inner)
        self.hidden_norm.build((*shared[:-1], hidden))
        self.mask_dense.build((*shared[:-1], hidden))
        self.mask_norm.build(tuple(shared))

    def attention_mask(self, inputs: Any, training: bool | None = None) -> Any:
        """The mask ``a`` (the shape of the shared features)."""
        assert self.hidden_dense is not None and self.mask_dense is not None
        shared, previous = _split_inputs(inputs)
        x = shared if previous is None else ops.concatenate([shared, previous], axis=-1)
        x = ops.relu(self.hidden_norm(self.hidden_dense(x), training=training))
        return ops.sigmoid(self.mask_norm(self.mask_dense(x), training=training))

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        shared, _ = _split_inputs(inputs)
        return self.attention_mask(inputs, training=training) * shared

    def compute_output_shape(self, input_shape: Any) -> tuple[Any, ...]:
        return tuple(_split_shapes(input_shape)[0])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mask_units": self.mask_units}


def _is_shape(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and all(d is None or isinstance(d, int) for d in value)


def _split_shapes(input_shape: Any) -> tuple[tuple[Any, ...], tuple[Any, ...] | None]:
    if _is_shape(input_shape):
        return tuple(input_shape), None
    shapes = list(input_shape) if isinstance(input_shape, (list, tuple)) else []
    if len(shapes) not in (1, 2) or not all(_is_shape(s) for s in shapes):
        raise ValueError(
            "Expected TaskAttention inputs to be the shared features or [shared, previous]. "
            f"Received: {input_shape!r}"
        )
    if len(shapes) == 2 and len(shapes[0]) != len(shapes[1]):
        raise ValueError(
            f"Expected the shared and previous-stage features to have the same rank. Received {shapes}."
        )
    return tuple(shapes[0]), (tuple(shapes[1]) if len(shapes) == 2 else None)


def _split_inputs(inputs: Any) -> tuple[Any, Any]:
    if isinstance(inputs, (list, tuple)):
        return inputs[0], (inputs[1] if len(inputs) == 2 else None)
    return inputs, None
