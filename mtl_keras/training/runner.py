"""The training step around any step kind: forward pass, losses, weighting, loss scaling, replicas,
regularisation and extra loss terms, ``optimizer.apply``, the after-update hooks and the metrics.

A :class:`Step` (one module per kind in this package) only turns the recorded objective into gradients;
everything every kind shares is here, in :class:`Runner`, which the steps call back into:

* loss scaling: under mixed precision Keras wraps the optimizer in a ``LossScaleOptimizer``; everything
  differentiated is loss-scaled inside the tape (float16 gradients do not underflow), per-task gradients
  are unscaled before a balancer sees them (:meth:`Runner.unscaled`) and an aggregated update is scaled
  again for the optimizer, which unscales it (:meth:`Runner.for_optimizer`);
* replicas: Keras losses are already divided by the number of replicas R and ``optimizer.apply`` sums
  the replicas' gradients, so per-task gradients are all-reduced before aggregation and an aggregated
  update is divided by R (docs/methods.md, "Distribution");
* regularisation: the layers' added losses plus the extra loss terms, divided by R, added to every
  variable's gradient under every step kind.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import keras
import tensorflow as tf

from mtl_keras.balancers import Balancer
from mtl_keras.training.lookahead import LookaheadHook, LookaheadProbe
from mtl_keras.training.losses import TaskLosses
from mtl_keras.training.metrics import StepMetrics
from mtl_keras.training.replicas import all_reduce_sum, num_replicas

#: An extra loss term: ``(x, labels by task, predictions by task) -> scalar``, added to the objective.
LossTerm = Callable[[Any, dict[str, Any], dict[str, tf.Tensor]], Any]
#: A per-task gradient hook: ``(gradients [task][shared variable], global task losses (T,)) -> None``.
TaskGradientHook = Callable[[list[list[tf.Tensor]], tf.Tensor], None]


@dataclasses.dataclass
class StepState:
    """What the runner computed for one batch; a step reads it and may keep tensors in ``recorded``."""

    x: Any
    y: dict[str, Any]
    y_pred: dict[str, tf.Tensor]
    representation: tf.Tensor | None
    #: this replica's share of each task's masked mean loss (recorded on the tape)
    shares: list[tf.Tensor]
    #: the global task losses (T,), constants
    losses: tf.Tensor
    extras: Sequence[tuple[tf.Tensor, tf.Tensor]]
    #: this replica's layer losses plus extra loss terms, unscaled (0.0 when there are none)
    regularization: Any
    weights: Any = None
    offsets: Any = None
    #: this replica's labelled count per task (T,), sample weights included
    counts: Any = None
    #: task i's term λ_i·share_i + c_i/R; the objective is their sum plus the regularisation (left empty
    #: when the losses are vectorised: the objective is then one weighted sum)
    terms: list[tf.Tensor] = dataclasses.field(default_factory=list)
    scaled_regularization: Any = 0.0
    scaled_objective: Any = None
    variables: list[Any] = dataclasses.field(default_factory=list)
    recorded: dict[str, Any] = dataclasses.field(default_factory=dict)


class Step:
    """One way of turning the recorded objective into the gradients of the trainable variables."""

    #: whether :meth:`gradients` differentiates more than once (a persistent tape)
    persistent: ClassVar[bool] = False
    #: whether the step differentiates each task's loss on its own (per-task passes), so each task's loss
    #: must reach its own head only; False lets the runner compute the losses of same-kind tasks as one
    #: (batch, tasks) op and the objective as one weighted sum (steps that differentiate the objective once)
    separate_task_losses: ClassVar[bool] = True

    def forward(self, runner: Runner, x: Any) -> tuple[dict[str, tf.Tensor], tf.Tensor | None]:
        """Inside the tape: the predictions and, for steps that need it, the shared representation."""
        return runner.model(x, training=True), None

    def weigh(self, runner: Runner, tape: tf.GradientTape, state: StepState) -> tuple[tf.Tensor, tf.Tensor]:
        """Inside the tape: the weighting's ``(λ, c)`` for the global task losses."""
        return runner.balancer.weighting.weigh(state.losses)

    def record(self, runner: Runner, state: StepState) -> None:
        """Inside the tape, after the objective: record what :meth:`gradients` differentiates."""

    def gradients(self, runner: Runner, tape: tf.GradientTape, state: StepState) -> list[Any]:
        """After the tape: the gradients of ``state.variables``, ready for ``optimizer.apply``."""
        raise NotImplementedError


class Runner:
    """Runs one :class:`Step` as a model's train and test step (see the module docstring)."""

    def __init__(
        self,
        model: Any,
        step: Step,
        balancer: Balancer,
        task_losses: TaskLosses,
        metrics: StepMetrics,
        *,
        loss_terms: Sequence[LossTerm] = (),
        gradient_hooks: Sequence[TaskGradientHook] = (),
        lookahead_hooks: Sequence[LookaheadHook] = (),
    ) -> None:
        self.model = model
        self.step = step
        self.balancer = balancer
        self.task_losses = task_losses
        self.metrics = metrics
        self.loss_terms = list(loss_terms)
        self.gradient_hooks = list(gradient_hooks)
        self.lookahead_hooks = list(lookahead_hooks)

    # --- loss scaling and replicas ----------------------------------------------------------------------

    @property
    def uses_loss_scaling(self) -> bool:
        return isinstance(self.model.optimizer, keras.optimizers.LossScaleOptimizer)

    def loss_scale(self) -> tf.Tensor:
        """The optimizer's current loss scale (float32); only meaningful with loss scaling."""
        return tf.cast(self.model.optimizer.scale_loss(tf.constant(1.0)), tf.float32)

    def loss_scaled(self, value: Any) -> Any:
        """``value`` times the optimizer's loss scale (mixed precision); ``value`` itself without one."""
        return self.loss_scale() * value if self.uses_loss_scaling else value

    def unscaled(self, values: list[tf.Tensor]) -> list[tf.Tensor]:
        """Gradients of loss-scaled terms divided by the loss scale (no-op without loss scaling)."""
        if not self.uses_loss_scaling:
            return values
        scale = self.loss_scale()
        return [v / tf.cast(scale, v.dtype) for v in values]

    @property
    def vectorized_losses(self) -> bool:
        """Whether the training step computes the task losses vectorised (see
        :attr:`Step.separate_task_losses`): only when neither the step nor a hook differentiates a task's
        loss on its own."""
        return not (self.step.separate_task_losses or self.gradient_hooks or self.lookahead_hooks)

    @property
    def num_replicas(self) -> int:
        return num_replicas()

    def for_optimizer(self, direction: list[tf.Tensor]) -> list[tf.Tensor]:
        """Loss-scale an update (the optimizer unscales it) and divide it among the replicas
        (``optimizer.apply`` sums the replicas' gradients again)."""
        if self.uses_loss_scaling:
            scale = self.loss_scale()
            direction = [scale * d for d in direction]
        if self.num_replicas > 1:
            direction = [d / self.num_replicas for d in direction]
        return direction

    def per_task_gradients(
        self, tape: tf.GradientTape, scaled_targets: list[tf.Tensor], values: list[Any]
    ) -> list[list[tf.Tensor]]:
        """Each loss-scaled target's gradient of ``values`` (``[task][variable]``), float32, summed over the
        replicas (the global gradient) and unscaled."""
        grads = [
            [tf.cast(g, tf.float32) for g in tape.gradient(t, values, unconnected_gradients="zero")]
            for t in scaled_targets
        ]
        return [self.unscaled(task) for task in all_reduce_sum(grads)]

    # --- variables and regularisation -------------------------------------------------------------------

    @property
    def shared(self) -> list[Any]:
        return list(self.model.shared_variables)

    def task_specific(self, variables: list[Any]) -> list[Any]:
        """The variables of ``variables`` that are not shared (heads, balancer state), in order."""
        shared_ids = {id(v) for v in self.shared}
        return [v for v in variables if id(v) not in shared_ids]

    def assemble(
        self, variables: list[Any], shared_grads: list[Any], specific: list[Any], specific_grads: list[Any]
    ) -> list[Any]:
        """The gradients in the order of ``variables``, from those of the shared and the other variables."""
        by_id = {id(v): g for v, g in zip(specific, specific_grads, strict=True)}
        by_id.update({id(v): g for v, g in zip(self.shared, shared_grads, strict=True)})
        return [by_id[id(v)] for v in variables]

    def split(self, tape: tf.GradientTape, state: StepState, shared_grads: list[Any]) -> list[Any]:
        """Shared variables get ``shared_grads``; every other variable the gradient of the objective."""
        specific = self.task_specific(state.variables)
        specific_grads = tape.gradient(
            state.scaled_objective, [v.value for v in specific], unconnected_gradients="zero"
        )
        return self.assemble(state.variables, shared_grads, specific, specific_grads)

    def with_regularization(
        self, tape: tf.GradientTape, state: StepState, values: list[Any], grads: list[Any]
    ) -> list[Any]:
        """``grads`` (of ``values``) plus the gradient of the regularisation, if any."""
        if not isinstance(state.scaled_regularization, tf.Tensor):
            return grads
        reg_grads = tape.gradient(state.scaled_regularization, values, unconnected_gradients="zero")
        return [g + r for g, r in zip(grads, reg_grads, strict=True)]

    def regularization(self, x: Any, y: dict[str, Any], y_pred: dict[str, tf.Tensor]) -> Any:
        """The layers' added losses of the last forward pass plus the extra loss terms, or 0.0."""
        parts = [tf.cast(v, tf.float32) for v in self.model.losses]
        parts += [tf.cast(term(x, y, y_pred), tf.float32) for term in self.loss_terms]
        return tf.add_n(parts) if parts else 0.0

    # --- the steps --------------------------------------------------------------------------------------

    def compute(self, data: Any) -> tuple[list[Any], StepState]:
        """Run the forward pass and the step on one batch; return the gradients and the state."""
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        labels, sample_weight = self.task_losses.standardize(y, sample_weight)
        step, replicas = self.step, self.num_replicas
        persistent = step.persistent or bool(self.gradient_hooks) or bool(self.lookahead_hooks)
        with tf.GradientTape(persistent=persistent) as tape:
            y_pred, representation = step.forward(self, x)
            by_task = dict(zip(self.task_losses.names, labels, strict=True))
            # Read the layers' added losses right after this replica's forward pass: replica threads share
            # the layers, and an all-reduce below lets another replica's forward pass overwrite them.
            regularization = self.regularization(x, by_task, y_pred)
            vectorized = self.vectorized_losses
            values = self.task_losses(labels, y_pred, sample_weight, vectorized=vectorized)
            shares, losses = values.shares, values.losses
            state = StepState(
                x, by_task, y_pred, representation, shares, losses, values.extras, regularization
            )
            state.counts = values.counts
            state.weights, state.offsets = weights, offsets = step.weigh(self, tape, state)
            state.scaled_regularization = self.loss_scaled(regularization / replicas)
            if vectorized:
                objective = tf.reduce_sum(weights * values.share_vector) + tf.reduce_sum(offsets) / replicas
            else:
                state.terms = [
                    weights[i] * share + (offsets[i] / replicas if replicas > 1 else offsets[i])
                    for i, share in enumerate(shares)
                ]
                objective = tf.add_n(state.terms)
            state.scaled_objective = self.loss_scaled(objective) + state.scaled_regularization
            if self.gradient_hooks or self.lookahead_hooks:
                state.recorded["hooks"] = [self.loss_scaled(share) for share in shares]
            step.record(self, state)
        state.variables = self.model.trainable_variables
        grads = step.gradients(self, tape, state)
        if self.gradient_hooks:
            task_grads = self.per_task_gradients(
                tape, state.recorded["hooks"], [v.value for v in self.shared]
            )
            for hook in self.gradient_hooks:
                hook(task_grads, losses)
        if self.lookahead_hooks:
            probe = LookaheadProbe(self, tape, state.recorded["hooks"], x, labels, sample_weight)
            for lookahead in self.lookahead_hooks:
                lookahead(probe)
        del tape
        return grads, state

    def train_step(self, data: Any) -> dict[str, tf.Tensor]:
        grads, state = self.compute(data)
        self.model.optimizer.apply(grads, state.variables)
        self.balancer.after_step(state.losses)
        total = tf.reduce_sum(state.weights * state.losses + state.offsets) + state.regularization
        self.metrics.update(state.losses, total, state.weights, state.y_pred, state.extras, state.counts)
        return self.metrics.logs()

    def test_step(self, data: Any) -> dict[str, tf.Tensor]:
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        labels, sample_weight = self.task_losses.standardize(y, sample_weight)
        y_pred = self.model(x, training=False)
        regularization = self.regularization(
            x, dict(zip(self.task_losses.names, labels, strict=True)), y_pred
        )
        values = self.task_losses(labels, y_pred, sample_weight, vectorized=True)
        weights, offsets = self.balancer.weighting.weigh(values.losses, training=False)
        total = tf.reduce_sum(weights * values.losses + offsets) + regularization
        self.metrics.update(values.losses, total, weights, y_pred, values.extras, values.counts)
        return self.metrics.logs()
