"""`FusedTowers`: several tasks' towers of one shape computed as one batched layer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from mtl_keras._registry import serializable
from mtl_keras.layers._checks import check_positive_int, check_positive_ints, check_rate


@serializable
class FusedTowers(keras.layers.Layer):
    """``num_towers`` :class:`~mtl_keras.layers.towers.Tower` stacks of one shape, batched over a task axis.

    Tower ``k`` is Dense(units[0]) → … → Dense(units[-1]) → Dense(output_units, output_activation) with its
    own variables: every depth holds one kernel ``(num_towers, d_in, d_out)`` and one bias
    ``(num_towers, 1, d_out)``, and slice ``k`` of them is tower ``k``'s Dense kernel and bias (initialised
    as Dense does, Glorot-uniform on each ``(d_in, d_out)`` slice and zero biases; without dropout, under
    one global seed, with the very values ``num_towers`` Towers made in its place would draw). Each depth
    is one einsum over the task axis (on one input, the first depth is one matmul with the kernels side
    by side) instead of ``num_towers`` small matmuls.

    The input is one tensor ``(batch, d)`` that every tower reads (towers on a shared trunk) or a list of
    ``num_towers`` tensors ``(batch, d)``, tower ``k`` reading the ``k``-th (MMoE's or PLE's mixtures). The
    output is the list of the ``num_towers`` tower outputs ``(batch, output_units)``, column ``k`` computed
    from input ``k`` (or the one input) and slice ``k`` of the variables only, so the gradient of output
    ``k`` touches slice ``k`` only. Dropout masks are drawn independently for every tower.

    Args:
        num_towers: number of towers (tasks).
        units: hidden layer sizes of every tower (may be empty: each tower is then its output layer).
        output_units: width of every tower's output.
        output_activation: activation of the output layer (``"linear"`` for logits).
        activation: activation of the hidden layers.
        dropout: dropout rate after each hidden layer.
    """

    def __init__(
        self,
        num_towers: int,
        units: Sequence[int] = (),
        output_units: int = 1,
        output_activation: str = "linear",
        activation: str = "relu",
        dropout: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.num_towers = check_positive_int(num_towers, "num_towers")
        self.units = check_positive_ints(units, "units")
        self.output_units = check_positive_ints([output_units], "output_units")[0]
        self.output_activation = output_activation
        self.activation = activation
        self.dropout = check_rate(dropout, "dropout")
        self._activation = keras.activations.get(activation)
        self._output_activation = keras.activations.get(output_activation)
        # One Glorot-uniform initializer per tower and depth, made in the order T separate Towers make their
        # Dense layers' (each draws its seed from Python's `random` when made): without dropout, the same
        # global seed then gives each slice the values the tower it replaces would have had.
        self._initializers = [
            [keras.initializers.GlorotUniform() for _ in range(len(self.units) + 1)]
            for _ in range(self.num_towers)
        ]
        self.dropouts = (
            [keras.layers.Dropout(self.dropout, dtype=self.dtype_policy) for _ in self.units]
            if self.dropout
            else []
        )

    def _input_shapes(self, input_shape: Any) -> list[tuple[Any, ...]]:
        if (
            isinstance(input_shape, (list, tuple))
            and input_shape
            and isinstance(input_shape[0], (list, tuple))
        ):
            shapes = [tuple(s) for s in input_shape]
            if len(shapes) != self.num_towers:
                raise ValueError(
                    f"Expected one input or a list of num_towers={self.num_towers} inputs. "
                    f"Received: {len(shapes)} inputs"
                )
        else:
            shapes = [tuple(input_shape)]
        for shape in shapes:
            if len(shape) != 2 or shape[-1] != shapes[0][-1]:
                raise ValueError(
                    f"Expected inputs of shape (batch, d) with one d for every tower. Received: {shapes}"
                )
        return shapes

    def build(self, input_shape: Any) -> None:
        d_in = self._input_shapes(input_shape)[0][-1]
        self.kernels, self.biases = [], []
        sizes = [*self.units, self.output_units]
        for depth, d_out in enumerate(sizes):
            name = "output" if depth == len(self.units) else f"dense_{depth}"
            self.kernels.append(
                self.add_weight(
                    shape=(self.num_towers, d_in, d_out),
                    initializer=self._kernel_initializer(depth),
                    name=f"{name}_kernel",
                )
            )
            self.biases.append(
                self.add_weight(shape=(self.num_towers, 1, d_out), initializer="zeros", name=f"{name}_bias")
            )
            d_in = d_out

    def _kernel_initializer(self, depth: int) -> Any:
        """Each (d_in, d_out) slice drawn by its tower's Glorot-uniform initializer, as a Dense kernel is
        (limit sqrt(6 / (d_in + d_out)) per slice, not for the 3-d kernel as a whole)."""

        def initialize(shape: Any, dtype: Any = None) -> Any:
            _, d_in, d_out = shape
            return ops.stack([tower[depth]((d_in, d_out), dtype=dtype) for tower in self._initializers])

        return initialize

    def call(self, inputs: Any, training: bool | None = None) -> list[Any]:
        towers = self.num_towers
        if isinstance(inputs, (list, tuple)):
            x = ops.einsum("tbd,tdu->tbu", ops.stack(list(inputs)), self.kernels[0]) + self.biases[0]
        else:
            # One input: one matmul with the towers' first kernels side by side, (d, towers·u) (measured
            # faster on the CPU than the einsum), then (batch, towers, u).
            _, d, u = self.kernels[0].shape
            side_by_side = ops.reshape(ops.transpose(self.kernels[0], (1, 0, 2)), (d, towers * u))
            x = ops.matmul(inputs, side_by_side) + ops.reshape(self.biases[0], (towers * u,))
            x = ops.reshape(x, (-1, towers, u))
            if len(self.kernels) == 1:
                return ops.unstack(self._output_activation(x), num=towers, axis=1)
            x = ops.transpose(x, (1, 0, 2))
        for depth in range(1, len(self.kernels)):
            x = self._activation(x)
            if self.dropouts:
                x = self.dropouts[depth - 1](x, training=training)
            x = ops.einsum("tbd,tdu->tbu", x, self.kernels[depth]) + self.biases[depth]
        return ops.unstack(self._output_activation(x), num=towers, axis=0)

    def compute_output_shape(self, input_shape: Any) -> list[tuple[Any, ...]]:
        batch = self._input_shapes(input_shape)[0][0]
        return [(batch, self.output_units) for _ in range(self.num_towers)]

    def tower_weights(self, k: int) -> list[Any]:
        """Tower ``k``'s weights in :class:`~mtl_keras.layers.towers.Tower`'s order (kernel, bias per depth)."""
        if not 0 <= k < self.num_towers:
            raise ValueError(f"Expected a tower index in [0, {self.num_towers}). Received: k={k!r}")
        weights = []
        for kernel, bias in zip(self.kernels, self.biases, strict=True):
            weights += [ops.convert_to_numpy(kernel)[k], ops.convert_to_numpy(bias)[k, 0]]
        return weights

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "num_towers": self.num_towers,
            "units": list(self.units),
            "output_units": self.output_units,
            "output_activation": self.output_activation,
            "activation": self.activation,
            "dropout": self.dropout,
        }
