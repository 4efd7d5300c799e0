"""`CrossStitch`: a learned linear mix of the tasks' activations (Misra et al., CVPR 2016).

With ``num_subspaces > 1`` it is the subspace-level unit of sluice networks (Ruder et al., AAAI 2019).
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from mtl_keras._registry import serializable
from mtl_keras.layers._checks import check_positive_int


def check_positive_number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not float(value) > 0:
        raise ValueError(f"Expected `{name}` to be a positive number. Received: {name}={value!r}")
    return float(value)


def initial_alpha(num_tasks: int, diagonal: float = 0.9, num_subspaces: int = 1) -> np.ndarray:
    """α at initialisation: ``diagonal`` on the diagonal, ``(1 - diagonal) / (T - 1)`` elsewhere.

    Every row sums to 1; one task gets ``[[1]]``. With G subspaces the (T·G)×(T·G) matrix is
    ``kron(α_tasks, I_G)``: subspace g of task i starts as the plain cross-stitch mix of subspace g of
    every task, so a sluice unit starts out as a cross-stitch unit.
    """
    if num_tasks == 1:
        tasks = np.ones((1, 1))
    else:
        tasks = np.full((num_tasks, num_tasks), (1.0 - diagonal) / (num_tasks - 1))
        np.fill_diagonal(tasks, diagonal)
    return np.kron(tasks, np.eye(num_subspaces)).astype("float32")


@serializable
class CrossStitch(keras.layers.Layer):
    """``out_i = Σ_j α_ij x_j``: inputs a list of T same-shaped tensors (any rank), outputs a list of T.

    ``α`` is a learned T×T matrix, initialised with ``diagonal`` (0.9) on the diagonal and
    ``(1 - diagonal) / (T - 1)`` off it (Misra et al. 2016; one task: ``α = [[1]]``). It mixes whole
    activations: Dense outputs ``(batch, d)`` and Conv feature maps ``(batch, h, w, c)`` alike.

    Learning rate of α: Misra et al. train α with a 10²–10³× larger learning rate than the columns. Keras
    optimizers have one learning rate for all variables, so the layer parameterises ``α = m · θ`` with
    ``m = lr_multiplier`` and trains ``θ`` (initialised ``α_init / m``). The gradient with respect to ``θ``
    is ``m`` times the gradient with respect to ``α``, and a step of ``Δθ`` moves ``α`` by ``m · Δθ``. So:

    * with a scale-invariant optimizer (Adam, RMSprop, Adagrad, Lion: the step hardly depends on the
      gradient's scale) α moves **m×** faster than it would as a plain variable;
    * with plain SGD (and SGD with momentum) α moves **m²×** faster (m from the gradient, m from the map);
      ``lr_multiplier=10`` is the paper's 10²× under SGD.

    The multiplier also scales weight decay's effect on α (AdamW decays θ, i.e. α by the same factor).

    Subspaces (sluice networks, Ruder et al. 2019): with ``num_subspaces = G`` the last axis of every
    input is split into G equal parts and α is a (T·G)×(T·G) matrix over (task, subspace) pairs, index
    ``i·G + g``: ``out_{i,g} = Σ_{j,h} α_{iG+g, jG+h} x_{j,h}``. It starts as ``kron(α_tasks, I_G)``.

    Args:
        num_tasks: T, the number of inputs and outputs.
        lr_multiplier: m, how much faster α learns (see above). 1 means α is a plain variable.
        diagonal: initial weight of a task's own activation, in [0, 1].
        num_subspaces: G; the last axis of the inputs must be divisible by it.
    """

    def __init__(
        self,
        num_tasks: int,
        lr_multiplier: float = 10.0,
        diagonal: float = 0.9,
        num_subspaces: int = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.num_tasks = check_positive_int(num_tasks, "num_tasks")
        self.lr_multiplier = check_positive_number(lr_multiplier, "lr_multiplier")
        if isinstance(diagonal, bool) or not isinstance(diagonal, (int, float)) or not 0 <= diagonal <= 1:
            raise ValueError(f"Expected `diagonal` to be a number in [0, 1]. Received: diagonal={diagonal!r}")
        self.diagonal = float(diagonal)
        self.num_subspaces = check_positive_int(num_subspaces, "num_subspaces")

    def build(self, input_shape: Any) -> None:
        shapes = check_input_shapes(input_shape, self.num_tasks, "num_tasks", type(self).__name__)
        channels = shapes[0][-1]
        if channels is None or channels % self.num_subspaces:
            raise ValueError(
                "Expected the last axis of the inputs to be divisible by "
                f"`num_subspaces`={self.num_subspaces}. Received input shape {tuple(shapes[0])}."
            )
        alpha = initial_alpha(self.num_tasks, self.diagonal, self.num_subspaces)
        size = alpha.shape[0]
        self.theta = self.add_weight(
            shape=(size, size),
            initializer=keras.initializers.Constant(alpha / self.lr_multiplier),
            name="theta",
        )

    @property
    def alpha(self) -> Any:
        """The mixing matrix ``lr_multiplier · θ``, shape (T·G, T·G)."""
        return self.lr_multiplier * ops.convert_to_tensor(self.theta)

    def call(self, inputs: Any) -> list[Any]:
        inputs = list(inputs)
        g = self.num_subspaces
        parts = [p for x in inputs for p in (ops.split(x, g, axis=-1) if g > 1 else [x])]
        stacked = ops.stack(parts, axis=0)  # (T·G, batch, ..., C / G)
        alpha = ops.cast(self.lr_multiplier * self.theta, stacked.dtype)
        mixed = ops.tensordot(alpha, stacked, axes=1)
        outputs = [mixed[k] for k in range(self.num_tasks * g)]
        if g == 1:
            return outputs
        return [ops.concatenate(outputs[i * g : (i + 1) * g], axis=-1) for i in range(self.num_tasks)]

    def compute_output_shape(self, input_shape: Any) -> list[tuple[Any, ...]]:
        return [tuple(shape) for shape in input_shape]

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "num_tasks": self.num_tasks,
            "lr_multiplier": self.lr_multiplier,
            "diagonal": self.diagonal,
            "num_subspaces": self.num_subspaces,
        }


def check_input_shapes(input_shape: Any, count: int, argument: str, layer: str) -> list[tuple[Any, ...]]:
    """Expect a list of ``count`` (the value of ``argument``) shapes, equal apart from the batch axis."""
    if not isinstance(input_shape, (list, tuple)) or not all(
        isinstance(s, (list, tuple)) for s in input_shape
    ):
        raise ValueError(
            f"Expected {layer} inputs to be a list of `{argument}`={count} tensors. Received: {input_shape!r}"
        )
    shapes = [tuple(s) for s in input_shape]
    if len(shapes) != count:
        raise ValueError(
            f"Expected {layer} inputs to be a list of `{argument}`={count} tensors. Received {len(shapes)} "
            f"tensors of shapes {shapes}."
        )
    if any(s[1:] != shapes[0][1:] for s in shapes):
        raise ValueError(f"Expected all {layer} inputs to have the same shape. Received shapes {shapes}.")
    return shapes
