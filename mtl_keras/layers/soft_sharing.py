"""`SoftSharedDense`: one Dense layer per task, pulled together by an L2 penalty (Duong et al., ACL 2015)."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from mtl_keras._registry import serializable
from mtl_keras.layers._checks import check_non_negative, check_positive_int


@serializable
class SoftSharedDense(keras.layers.Layer):
    """The T Dense layers of one depth of T task columns, with ``strength · Σ_{i<j} ‖W_i − W_j‖²``.

    Soft parameter sharing (Duong et al. 2015): no variable is shared; instead the kernels ``W_i``
    (``(d_in, units)`` each) of corresponding layers are tied by a squared-L2 penalty on their pairwise
    differences (biases are not penalised). The penalty is added with ``add_loss`` on every call (when
    ``strength > 0`` and ``T > 1``), so it is in ``model.losses`` and :class:`~mtl_keras.MultiTaskModel`
    adds it to the objective once per step.
    ``strength = 0`` gives independent columns; a large strength drives the kernels together.

    Input: a list of T tensors (column ``i`` reads tensor ``i``), or one tensor that every column reads
    (the first depth). Output: a list of T tensors ``activation(x_i W_i + b_i)``.

    Args:
        units: output width of every column.
        num_tasks: T, the number of columns.
        strength: weight of the penalty.
        activation: activation of every column.
    """

    def __init__(
        self, units: int, num_tasks: int, strength: float = 1e-3, activation: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.units = check_positive_int(units, "units")
        self.num_tasks = check_positive_int(num_tasks, "num_tasks")
        self.strength = check_non_negative(strength, "strength")
        self.activation = activation
        self._activation = keras.activations.get(activation)

    def build(self, input_shape: Any) -> None:
        shapes = self._shapes(input_shape)
        d_in = shapes[0][-1]
        if any(s[-1] != d_in for s in shapes) or d_in is None:
            raise ValueError(
                "Expected all SoftSharedDense inputs to have the same known last axis. "
                f"Received shapes {shapes}."
            )
        self.kernels = [
            self.add_weight(shape=(d_in, self.units), initializer="glorot_uniform", name=f"kernel_{i}")
            for i in range(self.num_tasks)
        ]
        self.biases = [
            self.add_weight(shape=(self.units,), initializer="zeros", name=f"bias_{i}")
            for i in range(self.num_tasks)
        ]

    def _shapes(self, input_shape: Any) -> list[tuple[Any, ...]]:
        if isinstance(input_shape, (list, tuple)) and all(isinstance(s, (list, tuple)) for s in input_shape):
            shapes = [tuple(s) for s in input_shape]
            if len(shapes) != self.num_tasks:
                raise ValueError(
                    "Expected SoftSharedDense inputs to be one tensor or a list of "
                    f"`num_tasks`={self.num_tasks} tensors. Received {len(shapes)} tensors: {shapes}."
                )
            return shapes
        return [tuple(input_shape)] * self.num_tasks

    def penalty(self) -> Any:
        """``strength · Σ_{i<j} ‖W_i − W_j‖²`` (float32 scalar)."""
        total = ops.convert_to_tensor(0.0, dtype="float32")
        for i in range(self.num_tasks):
            for j in range(i + 1, self.num_tasks):
                diff = ops.cast(self.kernels[i], "float32") - ops.cast(self.kernels[j], "float32")
                total = total + ops.sum(ops.square(diff))
        return self.strength * total

    def call(self, inputs: Any) -> list[Any]:
        columns = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs] * self.num_tasks
        if self.strength and self.num_tasks > 1:
            self.add_loss(self.penalty())
        return [
            self._activation(ops.matmul(x, ops.cast(w, x.dtype)) + ops.cast(b, x.dtype))
            for x, w, b in zip(columns, self.kernels, self.biases, strict=True)
        ]

    def compute_output_shape(self, input_shape: Any) -> list[tuple[Any, ...]]:
        return [(*s[:-1], self.units) for s in self._shapes(input_shape)]

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "units": self.units,
            "num_tasks": self.num_tasks,
            "strength": self.strength,
            "activation": self.activation,
        }
