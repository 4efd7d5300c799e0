"""Missing numeric values (NaN) replaced by a fixed value, with an optional 0/1 missing-indicator column;
`MissingIndicator` gives the indicator alone (for encodings that take the filled value by itself).

Used by the raw-feature preprocessing block (:mod:`mtl_keras.builders.inputs`) for numeric columns whose
adaptation data has missing values, so the saved model and its SavedModel export impute NaN themselves.
"""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import ops

from mtl_keras._registry import serializable


@serializable
class ImputeMissing(keras.layers.Layer):
    """Replace NaN by ``fill_value``; with ``indicator``, append one 0/1 "was missing" column per input column.

    Args:
        fill_value: the value put in place of NaN (the raw-feature block passes the training median of the
            non-missing values, in the units of this layer's input).
        indicator: append ``isnan(x)`` as float columns, so the output has twice the input's last dimension:
            ``[filled values..., indicators...]``.

    Input: a float tensor ``(..., d)``. Output: ``(..., d)``, or ``(..., 2 d)`` with ``indicator``.
    """

    def __init__(self, fill_value: float, indicator: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        fill_value = float(fill_value)
        if not math.isfinite(fill_value):
            raise ValueError(
                f"Expected `fill_value` to be a finite number. Received: fill_value={fill_value}"
            )
        self.fill_value = fill_value
        self.indicator = bool(indicator)
        self._build_at_init()  # stateless: built once made, as Keras's own stateless layers are

    def call(self, inputs: Any) -> Any:
        inputs = ops.cast(inputs, self.compute_dtype)
        missing = ops.isnan(inputs)
        filled = ops.where(missing, ops.cast(self.fill_value, self.compute_dtype), inputs)
        if not self.indicator:
            return filled
        return ops.concatenate([filled, ops.cast(missing, self.compute_dtype)], axis=-1)

    def compute_output_shape(self, input_shape: Any) -> Any:
        shape = tuple(input_shape)
        if not self.indicator:
            return shape
        last = shape[-1]
        return (*shape[:-1], None if last is None else 2 * last)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "fill_value": self.fill_value, "indicator": self.indicator}


@serializable
class MissingIndicator(keras.layers.Layer):
    """``isnan(x)`` as 0/1 float columns, the same shape as the input."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._build_at_init()  # stateless

    def call(self, inputs: Any) -> Any:
        return ops.cast(ops.isnan(ops.cast(inputs, self.compute_dtype)), self.compute_dtype)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return tuple(input_shape)
