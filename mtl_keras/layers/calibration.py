"""Post-hoc calibration layers applied to a classification head's probabilities (see docs/methods.md).

`TemperatureScaling` divides the head's logits by a fitted temperature: ``sigmoid(logit(p) / T)`` for a
binary ``(batch, 1)`` output, ``softmax(log p / T)`` for a multiclass ``(batch, K)`` output.
`IsotonicCalibration` maps a binary probability through a non-decreasing piecewise-linear function given by
its knots (constant beyond the first and last knot). Both have no trainable weights: their fitted values are
constructor arguments, so ``get_config`` / ``from_config`` and a saved model carry them.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from mtl_keras._registry import serializable

_EPSILON = 1e-7


@serializable
class TemperatureScaling(keras.layers.Layer):
    """Probabilities → probabilities with logits divided by ``temperature``.

    Args:
        temperature: a positive number (1.0 leaves the probabilities unchanged up to clipping at 1e-7).
        multiclass: the input is a softmax output ``(batch, K)``; otherwise a sigmoid output.
    """

    def __init__(self, temperature: float = 1.0, multiclass: bool = False, **kwargs: Any) -> None:
        # Probabilities stay float32 under a mixed policy, as the heads do.
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if (
            isinstance(temperature, bool)
            or not isinstance(temperature, (int, float))
            or not math.isfinite(temperature)
            or temperature <= 0
        ):
            raise ValueError(
                f"Expected `temperature` to be a positive finite number. Received: temperature={temperature!r}"
            )
        self.temperature = float(temperature)
        self.multiclass = bool(multiclass)
        self._build_at_init()  # stateless: built once made, as Keras's own stateless layers are

    def call(self, probabilities: Any) -> Any:
        p = ops.clip(ops.cast(probabilities, "float32"), _EPSILON, 1.0 - _EPSILON)
        if self.multiclass:
            return ops.cast(ops.softmax(ops.log(p) / self.temperature, axis=-1), self.compute_dtype)
        return ops.cast(ops.sigmoid((ops.log(p) - ops.log(1.0 - p)) / self.temperature), self.compute_dtype)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "temperature": self.temperature, "multiclass": self.multiclass}


@serializable
class IsotonicCalibration(keras.layers.Layer):
    """A binary probability → the isotonic map through the knots ``(x[i], y[i])``, linear in between.

    Args:
        x: knot positions, strictly increasing (at least one).
        y: the values at the knots, non-decreasing, in [0, 1].
    """

    def __init__(
        self, x: Sequence[float] = (0.0, 1.0), y: Sequence[float] = (0.0, 1.0), **kwargs: Any
    ) -> None:
        # Probabilities stay float32 under a mixed policy, as the heads do.
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        xs, ys = [float(v) for v in x], [float(v) for v in y]
        if not xs or len(xs) != len(ys):
            raise ValueError(
                f"Expected `x` and `y` to be knots of the same non-zero length. Received {len(xs)} and {len(ys)}."
            )
        if any(b <= a for a, b in itertools.pairwise(xs)):
            raise ValueError(f"Expected `x` to be strictly increasing. Received: x={xs}")
        if any(b < a for a, b in itertools.pairwise(ys)) or not all(0.0 <= v <= 1.0 for v in ys):
            raise ValueError(f"Expected `y` to be non-decreasing values in [0, 1]. Received: y={ys}")
        self.x, self.y = xs, ys
        self._build_at_init()  # stateless: built once made, as Keras's own stateless layers are

    def call(self, probabilities: Any) -> Any:
        p = ops.cast(probabilities, "float32")
        if len(self.x) == 1:
            return ops.cast(ops.full_like(p, self.y[0]), self.compute_dtype)
        x = ops.convert_to_tensor(self.x, dtype="float32")
        y = ops.convert_to_tensor(self.y, dtype="float32")
        flat = ops.reshape(p, (-1,))
        upper = ops.clip(ops.searchsorted(x, flat, side="right"), 1, len(self.x) - 1)
        x0, x1 = ops.take(x, upper - 1), ops.take(x, upper)
        y0, y1 = ops.take(y, upper - 1), ops.take(y, upper)
        t = ops.clip((flat - x0) / (x1 - x0), 0.0, 1.0)
        return ops.cast(ops.reshape(y0 + t * (y1 - y0), ops.shape(p)), self.compute_dtype)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "x": list(self.x), "y": list(self.y)}


__all__ = ["IsotonicCalibration", "TemperatureScaling"]
