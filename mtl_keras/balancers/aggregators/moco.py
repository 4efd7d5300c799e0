"""MoCo: MGDA's weights from a tracked (moving-average) Jacobian, one projected-gradient step per step."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import tensorflow as tf
from annotated_types import Interval

from mtl_keras.balancers._gramian import combine_blocks, gram_of_blocks
from mtl_keras.balancers.aggregators._common import active_rows, compiled, step_counter
from mtl_keras.balancers.aggregators.modo import projected_weight_step
from mtl_keras.balancers.base import AGGREGATORS, Aggregator, state_variable
from mtl_keras.option_types import NonNegativeFloat, PositiveFloat


def decayed(rate: float, decay: float, step: tf.Tensor) -> tf.Tensor:
    """``rate / k^decay`` for the 1-based call number ``step`` (float64)."""
    return tf.constant(rate, tf.float64) / tf.cast(step, tf.float64) ** decay


@compiled
def moco_gram_step(
    g: tf.Tensor, tracked: tf.Tensor, weights: tf.Tensor, beta: tf.Tensor, gamma: tf.Tensor, rho: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """The representation-level step: ``Ĝ ← Ĝ − β (Ĝ − G)`` on the entries of present tasks, then the
    weight step on Ĝ. Returns ``(row weights, new Ĝ, new λ)``."""
    mask = tf.cast(active_rows(g), tf.float64)
    pair = mask[:, None] * mask[None, :]
    tracked = tracked - beta * pair * (tracked - g)
    row, state = projected_weight_step(tracked, weights, mask, gamma, rho)
    return row, tracked, state


#: The weight step on the Gram matrix of the tracked Jacobian (parameter level).
compiled_weight_step = compiled(projected_weight_step)


@AGGREGATORS.register("moco")
class MoCo(Aggregator):
    """MoCo (Fernando, Shen, Liu, Chaudhury, Murugesan, Chen, "Mitigating Gradient Bias in Multi-objective
    Learning: A Provably Convergent Approach", ICLR 2023).

    MGDA's weights computed from one mini-batch are a biased estimate of the weights of the full
    objective. MoCo keeps a tracked Jacobian Y (state, one row per task, initialised to 0) and task
    weights λ on the simplex (state, initialised to 1/T), and at call k (k = 1, 2, …):

        Y ← Y − β_k (Y − J),    λ ← Π_simplex(λ − γ_k (Y Yᵀ + ρ I) λ),    d = Yᵀ λ

    with ``β_k = beta / k^beta_decay`` and ``γ_k = gamma / k^gamma_decay``. The paper's analysis takes
    decreasing step sizes; the defaults (β = 0.5, γ = 0.1, both decaying as 1/√k, ρ = 0) are those of the
    authors' code as LibMTL ships it. β_k acts on Y, γ_k on the raw Y Yᵀ (its scale is 1/‖g_i‖², as MoDo's γ).

    Differences from LibMTL's MoCo, which the comparison benchmark shows: LibMTL rescales every task
    gradient to the norm of its loss before tracking (g_i L_i / ‖g_i‖, the aggregator here does not see
    the losses: scale the losses with a weighting instead) and replaces the projection onto the simplex
    by a softmax of the moved weights; here the projection of the paper's Algorithm 1 is used.

    Levels. At parameter level Y has the shape of the Jacobian, one (T, ...) block per shared variable
    (created when the model compiles, :meth:`build_blocks`), so the state costs T copies of the shared
    parameters. At representation level the rows of J are gradients of the batch's own examples, which
    differ from batch to batch, so no Jacobian can be tracked there: MoCo then tracks the (T, T) Gram
    matrix, ``Ĝ ← Ĝ − β_k (Ĝ − G)``, takes the weight step on Ĝ and returns ``d = Jᵀ λ`` with the current
    J (the same happens for a bare :meth:`aggregate` call without :meth:`build_blocks`).

    Absent tasks (zero rows): their row of Y (entries of Ĝ) is left unchanged, they keep their weight in
    the state and get weight 0 in this step's direction; the present tasks' weights are projected onto the
    simplex of their own share and rescaled to sum 1 (as MoDo). An all-zero J gives a zero update; the call
    still counts for the step-size schedule. Y, Ĝ, λ and k are saved with the model.

    Args:
        beta: tracking rate β of the Jacobian, in (0, 1] (β = 1 with ``beta_decay = 0``: Y = J, MoDo).
        beta_decay: exponent of the decay of β_k (0: constant).
        gamma: step size γ > 0 of the weights.
        gamma_decay: exponent of the decay of γ_k (0: constant).
        rho: regularisation ρ ≥ 0 of the weight subproblem.
    """

    gramian_based = True  # until build_blocks gives it a Jacobian to track

    def __init__(
        self,
        *,
        beta: Annotated[float, Interval(gt=0, le=1)] = 0.5,
        beta_decay: NonNegativeFloat = 0.5,
        gamma: PositiveFloat = 0.1,
        gamma_decay: NonNegativeFloat = 0.5,
        rho: NonNegativeFloat = 0.0,
    ) -> None:
        super().__init__()
        if not 0.0 < beta <= 1.0:
            raise ValueError(f"Expected `beta` to be in (0, 1]. Received: beta={beta}")
        if not 0.0 < gamma < float("inf"):
            raise ValueError(f"Expected `gamma` to be a positive finite number. Received: gamma={gamma}")
        for name, value in (("beta_decay", beta_decay), ("gamma_decay", gamma_decay), ("rho", rho)):
            if not 0.0 <= value < float("inf"):
                raise ValueError(
                    f"Expected `{name}` to be a non-negative finite number. Received: {name}={value}"
                )
        self.beta = float(beta)
        self.beta_decay = float(beta_decay)
        self.gamma = float(gamma)
        self.gamma_decay = float(gamma_decay)
        self.rho = float(rho)
        self.tracked_jacobian: list[tf.Variable] = []

    def build(self, num_tasks: int) -> None:
        super().build(num_tasks)
        self.iterations = step_counter()
        self.task_weights = state_variable(tf.fill([num_tasks], 1.0 / num_tasks), name="moco_weights")
        self.tracked_gram = state_variable(
            tf.zeros([num_tasks, num_tasks]), name="moco_tracked_gram", dtype=tf.float64
        )

    def build_blocks(self, block_shapes: Sequence[tuple[int, ...]]) -> None:
        """Create Y: one zero (T, *shape) variable per block; from then on the Jacobian is tracked."""
        if self.num_tasks is None:
            raise ValueError("Expected MoCo to be built with the number of tasks before `build_blocks`.")
        self.tracked_jacobian = [
            state_variable(tf.zeros([self.num_tasks, *shape]), name=f"moco_tracked_jacobian_{i}")
            for i, shape in enumerate(block_shapes)
        ]
        self.gramian_based = False

    def _schedule(self) -> tuple[tf.Tensor, tf.Tensor]:
        step = self.iterations.assign_add(1)
        return decayed(self.beta, self.beta_decay, step), decayed(self.gamma, self.gamma_decay, step)

    def _row_weights(self, g: tf.Tensor) -> tf.Tensor:
        beta, gamma = self._schedule()
        row, tracked, state = moco_gram_step(
            g,
            self.tracked_gram.read_value(),
            tf.cast(self.task_weights.read_value(), tf.float64),
            beta,
            gamma,
            tf.constant(self.rho, tf.float64),
        )
        self.tracked_gram.assign(tracked)
        self.task_weights.assign(tf.cast(state, self.task_weights.dtype))
        return row

    def _aggregate(self, jacobian: tf.Tensor) -> tf.Tensor:
        return self._aggregate_blocks([jacobian])[0]

    def _aggregate_blocks(self, blocks: list[tf.Tensor]) -> list[tf.Tensor]:
        shapes = [tuple(b.shape[1:]) for b in blocks]
        expected = [tuple(v.shape[1:]) for v in self.tracked_jacobian]
        if shapes != expected:
            raise ValueError(
                f"Expected Jacobian blocks of the shapes MoCo was built with, {expected}. Received: {shapes}"
            )
        beta, gamma = self._schedule()
        # Which tasks are present, from this step's Gram matrix (float32 matmuls, rescaled only on
        # overflow or underflow) rather than float64 squares of every entry of J.
        active = active_rows(gram_of_blocks(blocks))
        keep = tf.cast(active, tf.float32)
        tracked = []
        for variable, block in zip(self.tracked_jacobian, blocks, strict=True):
            y = variable.read_value()
            rate = tf.reshape(tf.cast(beta, tf.float32) * keep, [-1] + [1] * (len(y.shape) - 1))
            moved = y - rate * (y - tf.cast(block, y.dtype))
            variable.assign(moved)
            tracked.append(moved)
        row, state = compiled_weight_step(
            gram_of_blocks(tracked),
            tf.cast(self.task_weights.read_value(), tf.float64),
            tf.cast(active, tf.float64),
            gamma,
            tf.constant(self.rho, tf.float64),
        )
        self.task_weights.assign(tf.cast(state, self.task_weights.dtype))
        return [tf.cast(d, b.dtype) for d, b in zip(combine_blocks(row, tracked), blocks, strict=True)]

    def get_config(self) -> dict[str, Any]:
        return {
            "beta": self.beta,
            "beta_decay": self.beta_decay,
            "gamma": self.gamma,
            "gamma_decay": self.gamma_decay,
            "rho": self.rho,
            **super().get_config(),
        }
