"""The fixed-linear-combination step: aggregators whose update is Σ_i c_i g_i with constant c (mean, sum)."""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from mtl_keras.balancers import Aggregator
from mtl_keras.training.runner import Runner, Step, StepState


class LinearCombinationStep(Step):
    """The shared variables get Σ_i c_i ∇(task i's term) from one backward pass of the combined loss; the
    task-specific variables their own task's gradient (the objective's). No Jacobian is built.

    Args:
        aggregator: an aggregator whose ``combination_weights()`` are not None (read when the step is traced).
    """

    persistent = True

    def __init__(self, aggregator: Aggregator) -> None:
        self.aggregator = aggregator

    def record(self, runner: Runner, state: StepState) -> None:
        combination = self.aggregator.combination_weights()
        assert combination is not None, "the linear-combination step needs fixed row weights"
        combined = tf.add_n([c * term for c, term in zip(tf.unstack(combination), state.terms, strict=True)])
        state.recorded["combined"] = runner.loss_scaled(combined) + state.scaled_regularization

    def gradients(self, runner: Runner, tape: tf.GradientTape, state: StepState) -> list[Any]:
        shared_grads = tape.gradient(state.recorded["combined"], [v.value for v in runner.shared])
        return runner.split(tape, state, shared_grads)
