"""List-valued text cells (``"red|green"``) as token matrices, and the mean of their token embeddings.

Used by the raw-feature block (:mod:`mtl_keras.builders.inputs`) for ``multi_hot`` columns:
``SplitTokens`` -> ``StringLookup(mask_token="")`` -> ``Embedding`` -> ``MaskedMean`` (or ``StringLookup``
with ``output_mode="multi_hot"``). Both layers are stateless and survive a ``.keras`` save and a SavedModel
export. String ops need the TensorFlow backend (as the other string preprocessing layers do).
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf
from keras import ops

from mtl_keras._registry import serializable


@serializable
class SplitTokens(keras.layers.Layer):
    """Split each string on ``separator`` into stripped tokens, padded with ``""`` to one width.

    Input: a string tensor ``(batch,)`` or ``(batch, 1)``. Output: a string tensor ``(batch, width)`` where
    ``width`` is the most tokens in the batch plus one, so an all-empty batch still has a column; empty
    tokens (``"a||b"``, a missing ``""`` cell) are ``""``, the padding value.
    """

    def __init__(self, separator: str = "|", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not isinstance(separator, str) or not separator:
            raise ValueError(
                f"Expected `separator` to be a non-empty string. Received: separator={separator!r}"
            )
        self.separator = separator
        self._build_at_init()

    def call(self, inputs: Any) -> Any:
        text = tf.reshape(tf.convert_to_tensor(inputs, dtype=tf.string), [-1])
        tokens = tf.strings.strip(tf.strings.split(text, sep=self.separator))
        dense = tokens.to_tensor(default_value="")
        return tf.concat([dense, tf.fill(tf.stack([tf.shape(dense)[0], 1]), "")], axis=1)

    def compute_output_spec(self, inputs: Any) -> Any:
        return keras.KerasTensor((inputs.shape[0], None), dtype="string")

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "separator": self.separator}


@serializable
class MaskedMean(keras.layers.Layer):
    """The mean over axis 1 of ``values`` where ``ids`` is not ``mask_value``; 0 where every id is masked.

    Inputs: ``[values (batch, width, d), ids (batch, width)]``. Output: ``(batch, d)``.
    """

    def __init__(self, mask_value: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mask_value = int(mask_value)
        self._build_at_init()

    def call(self, inputs: Any) -> Any:
        values, ids = inputs
        values = ops.cast(values, self.compute_dtype)
        keep = ops.cast(ops.not_equal(ids, self.mask_value), self.compute_dtype)[..., None]
        total = ops.sum(values * keep, axis=1)
        count = ops.sum(keep, axis=1)
        return total / ops.maximum(count, ops.cast(1.0, self.compute_dtype))

    def compute_output_shape(self, input_shape: Any) -> Any:
        values_shape = tuple(input_shape[0])
        return (values_shape[0], values_shape[-1])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mask_value": self.mask_value}
