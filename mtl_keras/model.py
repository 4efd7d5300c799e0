"""`MultiTaskModel`: a Functional Keras model with one named output per task and a balancing train step.

Outputs are always a dict keyed by task name. The train step

1. computes every task's loss as a *masked* mean over the examples that have a label (NaN labels and zero
   per-task sample weights are missing labels), so a task without labels in a batch has loss 0 and no NaN;
2. weighs the losses with the balancer's loss weighting (static weights by default);
3. either back-propagates the weighted sum once, or builds the Jacobian of the task losses with respect to
   the shared variables (``level="param"``) or the shared representation (``level="rep"``) and lets the
   balancer's gradient aggregator turn it into one update of the shared part. Task-specific variables always
   get the gradient of the weighted sum, i.e. their own task's gradient.

Under a ``tf.distribute`` strategy every replica uses the *global* number of labelled examples per task as
the denominator of its masked mean, so the replicas' losses add up to the single-device loss exactly; the
per-task gradients are all-reduced before aggregation and the aggregated update is divided by the number of
replicas before ``optimizer.apply`` sums it again (REFERENCE.md, "Distribution").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from mtl_keras import balancers as balancers_lib
from mtl_keras._registry import serializable, suggest
from mtl_keras.balancers._gramian import combine_blocks, gram_of_blocks
from mtl_keras.tasks import Task, as_tasks, per_example_loss


@serializable
class BalancerState(keras.layers.Layer):
    """A container layer for the variables of a model's balancer."""

    def adopt(self, variables: list[Any]) -> None:
        for variable in list(self._trainable_variables) + list(self._non_trainable_variables):
            self._untrack_variable(variable)
        for variable in variables:
            self._track_variable(variable)


@serializable
class MultiTaskModel(keras.Model):
    """A Functional model whose outputs are ``{task name: tensor}``.

    Build one with a builder (``mtl_keras.builders.mmoe(...)``) or directly from functional inputs and a dict
    of outputs: ``MultiTaskModel(inputs, {"a": head_a, "b": head_b}, tasks=[Task("a"), Task("b")])``.

    Args:
        tasks: the tasks, one per output; output keys must equal the task names.
        shared_layers: names of the layers whose variables are shared by several tasks (the variables the
            gradient aggregators act on at parameter level).
        representation: name of the layer whose output is the shared representation (the tensor the
            aggregators act on at representation level); every path from a shared variable to a loss must
            pass through it.
        balancer: default balancer for ``compile`` (see :func:`mtl_keras.balancers.resolve`).
    """

    def __init__(
        self,
        *args: Any,
        tasks: Sequence[Task | str | dict[str, Any]],
        shared_layers: Sequence[str] = (),
        representation: str | None = None,
        balancer: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.tasks = as_tasks(tasks)
        self.task_names = [t.name for t in self.tasks]
        output_names = self._output_dict_keys()
        if sorted(output_names) != sorted(self.task_names):
            raise ValueError(
                "Expected the model outputs to be a dict keyed by the task names "
                f"{self.task_names}. Received outputs keyed by {output_names}."
            )
        layer_names = {layer.name for layer in self.layers}
        for name in list(shared_layers) + ([representation] if representation else []):
            if name not in layer_names:
                raise ValueError(
                    f"Unknown layer {name!r} in `shared_layers`/`representation`."
                    + suggest(name, sorted(layer_names))
                )
        self.shared_layer_names = list(shared_layers)
        self.representation_name = representation
        self._default_balancer = balancer
        self._mtl_compiled = False
        # Holds the balancer's own variables (e.g. uncertainty log-variances) so they are trained,
        # saved and restored with the model; it is not part of the graph.
        self.balancer_state = BalancerState(name="balancer_state")
        self.balancer_state.built = True

    def _output_dict_keys(self) -> list[str]:
        structure = getattr(self, "_outputs_struct", None)
        if not isinstance(structure, dict):
            return []
        return list(structure.keys())

    # --- what is shared ---------------------------------------------------------------------------------

    @property
    def shared_variables(self) -> list[keras.Variable]:
        """Trainable variables of the shared layers (deduplicated, in layer order)."""
        seen: set[int] = set()
        result = []
        for name in self.shared_layer_names:
            for variable in self.get_layer(name).trainable_variables:
                if id(variable) not in seen:
                    seen.add(id(variable))
                    result.append(variable)
        return result

    @property
    def last_shared_variables(self) -> list[keras.Variable]:
        """Trainable variables of the last shared layer (GradNorm's W_s)."""
        if not self.shared_layer_names:
            return []
        return list(self.get_layer(self.shared_layer_names[-1]).trainable_variables)

    @property
    def task_specific_variables(self) -> list[keras.Variable]:
        shared = {id(v) for v in self.shared_variables}
        return [v for v in self.trainable_variables if id(v) not in shared]

    def _representation_model(self) -> keras.Model:
        """A Functional model over the same layers returning ``(outputs, representation)``."""
        cached = self.__dict__.get("_rep_model")
        if cached is None:
            if self.representation_name is None:
                raise ValueError(
                    f"Model {self.name!r} declares no shared representation, so `level='rep'` cannot be "
                    "used; use level='param'."
                )
            representation = self.get_layer(self.representation_name).output
            cached = keras.Model(self._inputs_struct, [self._outputs_struct, representation])
            # Bypass Keras attribute tracking: the layers are already this model's layers.
            object.__setattr__(self, "_rep_model", cached)
        return cached

    # --- compile ----------------------------------------------------------------------------------------

    def compile(  # type: ignore[override]
        self,
        optimizer: Any = "adam",
        loss: Any = None,
        metrics: Any = None,
        loss_weights: Any = None,
        *,
        balancer: Any = None,
        balancer_level: str = "param",
        log_conflicts: bool = False,
        **kwargs: Any,
    ) -> None:
        """Configure training.

        Args:
            optimizer: a Keras optimizer or its name.
            loss: ``{task: loss}`` (tasks left out use their `Task` loss), or one loss for every task.
            metrics: ``{task: [metrics]}`` (tasks left out use their `Task` metrics).
            loss_weights: ``{task: weight}`` or a list in task order: static weights.
            balancer: a loss weighting and/or gradient aggregator (``"uncertainty"``, ``"pcgrad"``,
                ``"uncertainty+pcgrad"``, objects, or a :class:`~mtl_keras.balancers.Balancer`).
            balancer_level: ``"param"`` or ``"rep"``, where gradient aggregators act.
            log_conflicts: log pairwise task-gradient cosines and the fraction of conflicting pairs.
            **kwargs: passed to ``keras.Model.compile`` (``steps_per_execution``, ...); ``jit_compile``
                defaults to False here.
        """
        for key in ("loss_weights", "weighted_metrics"):
            if key in kwargs:
                raise ValueError(f"`{key}` is not supported by MultiTaskModel.compile.")
        losses = self._per_task(loss, "loss")
        metric_spec = self._per_task(metrics, "metrics", broadcast=False)
        static_weights = None
        if loss_weights is not None:
            weights = self._per_task(loss_weights, "loss_weights", broadcast=False)
            static_weights = [float(weights.get(name, 1.0)) for name in self.task_names]
        self.balancer = balancers_lib.resolve(
            balancer if balancer is not None else self._default_balancer,
            level=balancer_level,
            log_conflicts=log_conflicts,
            static_weights=static_weights,
        )
        self.balancer.build(self.task_names)
        self.balancer_state.adopt(self.balancer.weighting.variables)
        if self.balancer.level == "rep" and self.balancer.aggregator is not None:
            self._representation_model()
        if self.balancer.needs_jacobian and not self.shared_layer_names:
            raise ValueError(
                f"Balancer {self.balancer.describe()!r} aggregates gradients of shared variables, but model "
                f"{self.name!r} declares none (e.g. soft sharing or single-task models)."
            )
        self._task_losses = [
            per_example_loss(losses[t.name]) if t.name in losses else t.get_loss() for t in self.tasks
        ]
        self._task_metrics = []
        for task in self.tasks:
            if task.name in metric_spec:
                spec = metric_spec[task.name]
                spec = [spec] if isinstance(spec, (str, keras.metrics.Metric)) else list(spec)
                task = Task(**{**task.get_config(), "metrics": spec})  # validated like Task metrics
            self._task_metrics.append(task.get_metrics())
        self._total_tracker = keras.metrics.Mean(name="loss")
        self._loss_trackers = [keras.metrics.Mean(name=f"{name}_loss") for name in self.task_names]
        self._weight_trackers = [keras.metrics.Mean(name=f"{name}_weight") for name in self.task_names]
        self._conflict_trackers: list[keras.metrics.Metric] = []
        if self.balancer.log_conflicts:
            for i, a in enumerate(self.task_names):
                for b in self.task_names[i + 1 :]:
                    self._conflict_trackers.append(keras.metrics.Mean(name=f"cos_{a}_{b}"))
            self._conflict_trackers.append(keras.metrics.Mean(name="conflict_fraction"))
        # XLA is opt-in: the gradient aggregators' iterative solvers are written for graph mode, and
        # REFERENCE.md measured no XLA speed-up on CPU.
        kwargs.setdefault("jit_compile", False)
        super().compile(optimizer=optimizer, **kwargs)
        self._mtl_compiled = True
        self._mtl_compile_config = {
            "loss": {k: keras.saving.serialize_keras_object(v) for k, v in losses.items()},
            "metrics": {
                k: [m if isinstance(m, str) else keras.saving.serialize_keras_object(m) for m in _as_list(v)]
                for k, v in metric_spec.items()
            },
            "balancer": _serialize_balancer(self.balancer),
        }

    def get_compile_config(self) -> dict[str, Any] | None:
        if not getattr(self, "_mtl_compiled", False):
            return None
        return {
            "optimizer": keras.saving.serialize_keras_object(self.optimizer),
            **self._mtl_compile_config,
        }

    def compile_from_config(self, config: dict[str, Any]) -> None:
        config = keras.saving.deserialize_keras_object(config)
        balancer = config["balancer"]
        self.compile(
            optimizer=config["optimizer"],
            loss=config["loss"] or None,
            metrics=config["metrics"] or None,
            balancer=balancers_lib.Balancer(
                weighting=balancer["weighting"],
                aggregator=balancer["aggregator"],
                level=balancer["level"],
                log_conflicts=balancer["log_conflicts"],
            ),
        )
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def _per_task(self, value: Any, argument: str, *, broadcast: bool = True) -> dict[str, Any]:
        if value is None:
            return {}
        if isinstance(value, dict):
            unknown = [k for k in value if k not in self.task_names]
            if unknown:
                raise ValueError(
                    f"Unknown task {unknown[0]!r} in `{argument}`. Expected task names {self.task_names}."
                    + suggest(str(unknown[0]), self.task_names)
                )
            return dict(value)
        if isinstance(value, (list, tuple)) and argument == "loss_weights":
            if len(value) != len(self.task_names):
                raise ValueError(
                    f"Expected `{argument}` to have {len(self.task_names)} entries (one per task). "
                    f"Received: {len(value)}"
                )
            return dict(zip(self.task_names, value, strict=True))
        if broadcast or argument == "metrics":
            return {name: value for name in self.task_names}
        raise ValueError(f"Expected `{argument}` to be a dict keyed by task names. Received: {value!r}")

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        if not getattr(self, "_mtl_compiled", False):
            return super().metrics
        result: list[keras.metrics.Metric] = [self._total_tracker, *self._loss_trackers]
        for task_metrics in self._task_metrics:
            result.extend(task_metrics)
        return result + self._weight_trackers + self._conflict_trackers

    # --- labels and losses ------------------------------------------------------------------------------

    def _standardize_targets(self, y: Any, sample_weight: Any) -> tuple[list[tf.Tensor], list[Any]]:
        if not isinstance(y, dict):
            if len(self.tasks) == 1:
                y = {self.task_names[0]: y}
            else:
                raise ValueError(
                    f"Expected labels `y` as a dict keyed by the task names {self.task_names}. "
                    f"Received: {type(y).__name__}"
                )
        unknown = [k for k in y if k not in self.task_names]
        if unknown:
            raise ValueError(
                f"Unknown task {unknown[0]!r} in the labels. Expected task names {self.task_names}."
                + suggest(str(unknown[0]), self.task_names)
            )
        missing = [name for name in self.task_names if name not in y]
        if missing:
            raise ValueError(
                f"No labels for task(s) {missing}: every head needs a label entry (use NaN for missing "
                f"labels). Received labels for {sorted(y)}."
            )
        weights = {}
        if isinstance(sample_weight, dict):
            unknown = [k for k in sample_weight if k not in self.task_names]
            if unknown:
                raise ValueError(
                    f"Unknown task {unknown[0]!r} in `sample_weight`. Expected task names {self.task_names}."
                )
            weights = dict(sample_weight)
        elif sample_weight is not None:
            weights = {name: sample_weight for name in self.task_names}
        return [y[name] for name in self.task_names], [weights.get(name) for name in self.task_names]

    def _masked_parts(
        self, index: int, y_true: Any, y_pred: tf.Tensor, sample_weight: Any
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
        """Per-task (sum of per-example losses over labelled examples, labelled count, clean labels, mask)."""
        task = self.tasks[index]
        y_pred = tf.cast(y_pred, tf.float32)
        y_true = tf.cast(y_true, tf.float32)
        if y_true.shape.rank == 1:
            y_true = tf.expand_dims(y_true, -1)
        if task.kind == "multiclass":
            if y_true.shape.rank != 2 or y_true.shape[-1] not in (1, None):
                raise ValueError(
                    f"Expected integer class labels of shape (batch,) or (batch, 1) for multiclass task "
                    f"{task.name!r}. Received labels of shape {tuple(y_true.shape)}."
                )
        elif y_true.shape[1:].num_elements() != y_pred.shape[1:].num_elements():
            raise ValueError(
                f"Labels of task {task.name!r} have shape {tuple(y_true.shape)}; expected (batch,) + "
                f"{tuple(y_pred.shape[1:])} to match its head."
            )
        labelled = tf.logical_not(tf.math.is_nan(y_true))
        if y_true.shape.rank > 1:
            labelled = tf.reduce_all(labelled, axis=list(range(1, y_true.shape.rank)))
        mask = tf.cast(labelled, tf.float32)
        if sample_weight is not None:
            weight = tf.reshape(tf.cast(sample_weight, tf.float32), [-1])
            mask = mask * weight
        clean = tf.where(tf.math.is_nan(y_true), tf.zeros_like(y_true), y_true)
        if task.kind != "multiclass":
            clean = tf.reshape(clean, tf.shape(y_pred))
        per_example = self._task_losses[index](clean, y_pred)
        per_example = tf.cast(per_example, tf.float32)
        if per_example.shape.rank > 1:
            per_example = tf.reduce_mean(per_example, axis=list(range(1, per_example.shape.rank)))
        loss_sum = tf.reduce_sum(tf.where(mask > 0, per_example, tf.zeros_like(per_example)) * mask)
        return loss_sum, tf.reduce_sum(mask), clean, mask

    def _task_losses_for(
        self, y: list[Any], y_pred: dict[str, tf.Tensor], sample_weight: list[Any]
    ) -> tuple[list[tf.Tensor], tf.Tensor, list[tuple[tf.Tensor, tf.Tensor]]]:
        """Return (this replica's share of each task loss, T scalars; global task losses (T,); clean
        labels/masks). Each share depends on its own head only, so its gradient never runs through the
        other heads."""
        sums, counts, extras = [], [], []
        for i, name in enumerate(self.task_names):
            loss_sum, count, clean, mask = self._masked_parts(i, y[i], y_pred[name], sample_weight[i])
            sums.append(loss_sum)
            counts.append(count)
            extras.append((clean, mask))
        global_counts = tf.unstack(_all_reduce_sum(tf.stack(counts)))
        shares = [tf.math.divide_no_nan(s, c) for s, c in zip(sums, global_counts, strict=True)]
        global_losses = _all_reduce_sum(tf.stop_gradient(tf.stack(shares)))
        return shares, global_losses, extras

    def _update_metrics(
        self,
        global_losses: tf.Tensor,
        total: tf.Tensor,
        weights: tf.Tensor,
        y_pred: dict[str, tf.Tensor],
        extras: list[tuple[tf.Tensor, tf.Tensor]],
    ) -> None:
        # Replicas compute identical global values; Keras sums metric states across replicas, so
        # updating with the same value on each replica keeps the mean right.
        self._total_tracker.update_state(total)
        for i, name in enumerate(self.task_names):
            self._loss_trackers[i].update_state(global_losses[i])
            self._weight_trackers[i].update_state(weights[i])
            clean, mask = extras[i]
            for metric in self._task_metrics[i]:
                metric.update_state(clean, tf.cast(y_pred[name], tf.float32), sample_weight=mask)

    def _logs(self) -> dict[str, tf.Tensor]:
        return {m.name: m.result() for m in self.metrics}

    # --- train / test -----------------------------------------------------------------------------------

    def train_step(self, data: Any) -> dict[str, tf.Tensor]:
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        y, sample_weight = self._standardize_targets(y, sample_weight)
        balancer = self.balancer
        use_rep = balancer.level == "rep" and balancer.aggregator is not None
        num_replicas = tf.distribute.get_strategy().num_replicas_in_sync
        combination = None if balancer.aggregator is None else balancer.aggregator.combination_weights()
        needs_norms = balancer.weighting.norm_variables(self) is not None
        persistent = balancer.needs_jacobian or combination is not None or needs_norms
        with tf.GradientTape(persistent=persistent) as tape:
            representation = None
            if use_rep:
                y_pred, representation = self._representation_model()(x, training=True)
            else:
                y_pred = self(x, training=True)
            # Read the layers' added losses right after this replica's forward pass: replica threads share
            # the layers, and an all-reduce below lets another replica's forward pass overwrite them.
            regularization = self._regularization()
            shares, global_losses, extras = self._task_losses_for(y, y_pred, sample_weight)
            gradient_norms, norm_grads = self._gradient_norms(tape, shares) if needs_norms else (None, None)
            weights, offsets = balancer.weighting.weigh(global_losses, gradient_norms=gradient_norms)
            # Task i's term λ_i·(its share of L_i) + c_i/R; the objective is their sum.
            terms = [
                weights[i] * share + (offsets[i] / num_replicas if num_replicas > 1 else offsets[i])
                for i, share in enumerate(shares)
            ]
            # Everything differentiated below is computed inside the tape, already loss-scaled for
            # mixed precision: the objective, each task's term, the combined shared objective.
            scaled_regularization = self._loss_scaled(regularization / num_replicas)
            scaled_objective = self._loss_scaled(tf.add_n(terms)) + scaled_regularization
            task_terms = [self._loss_scaled(term) for term in terms] if balancer.needs_jacobian else []
            if combination is not None:
                combined = tf.add_n(
                    [c * term for c, term in zip(tf.unstack(combination), terms, strict=True)]
                )
                combined = self._loss_scaled(combined) + scaled_regularization
        variables = self.trainable_variables
        if balancer.needs_jacobian:
            grads = self._balanced_gradients(
                tape,
                task_terms,
                scaled_regularization,
                variables,
                representation,
            )
        elif combination is not None:
            # A linear aggregator (mean, sum): the shared part gets Σ c_i g_i in one backward pass, the
            # task-specific part its own task's gradient.
            grads = self._split_gradients(
                tape,
                tape.gradient(combined, [v.value for v in self.shared_variables]),
                scaled_objective,
                variables,
            )
        elif norm_grads is not None and self._norms_cover_shared():
            # The weighting already needed every task's gradient of every shared variable (DB-MTL): the
            # shared update Σ_i λ_i g_i reuses them instead of another backward pass through the trunk.
            lam = tf.unstack(tf.stop_gradient(weights))
            direction = [
                tf.add_n([lam[i] * task[k] for i, task in enumerate(norm_grads)])
                for k in range(len(norm_grads[0]))
            ]
            shared_grads = self._with_regularization(
                tape,
                scaled_regularization,
                [v.value for v in self.shared_variables],
                self._for_optimizer(direction),
            )
            grads = self._split_gradients(tape, shared_grads, scaled_objective, variables)
        else:
            grads = tape.gradient(scaled_objective, [v.value for v in variables])
        del tape
        self.optimizer.apply(grads, variables)
        total = tf.reduce_sum(weights * global_losses + offsets) + regularization
        self._update_metrics(global_losses, total, weights, y_pred, extras)
        return self._logs()

    @property
    def _uses_loss_scaling(self) -> bool:
        return isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer)

    def _loss_scale(self) -> tf.Tensor:
        """The optimizer's current loss scale (float32); only meaningful with loss scaling."""
        return tf.cast(self.optimizer.scale_loss(tf.constant(1.0)), tf.float32)

    def _loss_scaled(self, value: Any) -> Any:
        """``value`` times the optimizer's loss scale (mixed precision); ``value`` itself without one."""
        if not self._uses_loss_scaling:
            return value
        return self._loss_scale() * value

    def _unscaled(self, values: list[tf.Tensor]) -> list[tf.Tensor]:
        """Gradients of loss-scaled terms divided by the loss scale (no-op without loss scaling)."""
        if not self._uses_loss_scaling:
            return values
        scale = self._loss_scale()
        return [v / tf.cast(scale, v.dtype) for v in values]

    def _regularization(self) -> Any:
        """The sum of the losses layers added in the last forward pass (penalties, regularisers), or 0.0."""
        return tf.add_n([tf.cast(v, tf.float32) for v in self.losses]) if self.losses else 0.0

    def _gradient_norms(
        self, tape: tf.GradientTape, terms: list[tf.Tensor]
    ) -> tuple[tf.Tensor, list[list[tf.Tensor]]]:
        """Norms of each task's (global) loss gradient w.r.t. the variables the weighting asks for, and
        those gradients (``[task][variable]``, all-reduced and unscaled)."""
        values = [v.value for v in self.balancer.weighting.norm_variables(self) or []]
        scaled = [self._loss_scaled(term) for term in terms]  # recorded: float16 gradients do not underflow
        with tape.stop_recording():
            grads = [
                [tf.cast(g, tf.float32) for g in tape.gradient(term, values, unconnected_gradients="zero")]
                for term in scaled
            ]
            grads = _all_reduce_sum(grads)  # the norm of the global gradient, not the sum of norms
            grads = [self._unscaled(task) for task in grads]
            squared = [tf.add_n([tf.reduce_sum(tf.square(g)) for g in task]) for task in grads]
            return tf.sqrt(tf.stack(squared)), grads

    def _norms_cover_shared(self) -> bool:
        """True when the weighting's gradient norms are taken over exactly the shared variables."""
        norm_variables = self.balancer.weighting.norm_variables(self) or []
        return {id(v) for v in norm_variables} == {id(v) for v in self.shared_variables}

    def _split_gradients(
        self,
        tape: tf.GradientTape,
        shared_grads: list[Any],
        scaled_objective: tf.Tensor,
        variables: list[Any],
    ) -> list[tf.Tensor]:
        """Shared variables get ``shared_grads``; every other variable the gradient of the objective."""
        task_specific = self._task_specific(variables)
        specific_grads = tape.gradient(
            scaled_objective, [v.value for v in task_specific], unconnected_gradients="zero"
        )
        return self._assemble(variables, shared_grads, task_specific, specific_grads)

    def _task_specific(self, variables: list[Any]) -> list[Any]:
        """The variables of ``variables`` that are not shared (heads, balancer state), in order."""
        shared_ids = {id(v) for v in self.shared_variables}
        return [v for v in variables if id(v) not in shared_ids]

    def _assemble(
        self,
        variables: list[Any],
        shared_grads: list[Any],
        task_specific: list[Any],
        specific_grads: list[Any],
    ) -> list[Any]:
        """The gradients in the order of ``variables``, from those of the shared and the other variables."""
        by_id = {id(v): g for v, g in zip(task_specific, specific_grads, strict=True)}
        by_id.update({id(v): g for v, g in zip(self.shared_variables, shared_grads, strict=True)})
        return [by_id[id(v)] for v in variables]

    def _with_regularization(
        self, tape: tf.GradientTape, scaled_regularization: Any, values: list[Any], grads: list[Any]
    ) -> list[Any]:
        """``grads`` (of ``values``) plus the gradient of the layers' regularisation losses, if any."""
        if not isinstance(scaled_regularization, tf.Tensor):
            return grads
        reg_grads = tape.gradient(scaled_regularization, values, unconnected_gradients="zero")
        return [g + r for g, r in zip(grads, reg_grads, strict=True)]

    def _balanced_gradients(
        self,
        tape: tf.GradientTape,
        task_terms: list[tf.Tensor],
        scaled_regularization: Any,
        variables: list[Any],
        representation: tf.Tensor | None,
    ) -> list[tf.Tensor]:
        """Gradients where the shared part's update comes from the aggregator.

        One backward pass per task gives both its row of the Jacobian (w.r.t. the shared variables or the
        representation) and its gradient of the task-specific variables; those are summed over the tasks,
        which is the gradient of the objective without a separate backward pass.
        """
        shared = self.shared_variables
        specific = self._task_specific(variables)
        shared_values = [v.value for v in shared]
        specific_values = [v.value for v in specific]
        targets = [representation] if representation is not None else shared_values
        rows: list[list[tf.Tensor]] = []
        specific_grads: list[list[tf.Tensor]] = [[] for _ in specific]
        for term in task_terms:
            grads = tape.gradient(term, targets + specific_values)
            rows.append([tf.zeros_like(t) if g is None else g for g, t in zip(grads, targets, strict=False)])
            for k, g in enumerate(grads[len(targets) :]):
                if g is not None:
                    specific_grads[k].append(g)
        summed = [
            tf.add_n(parts) if parts else tf.zeros_like(value)
            for parts, value in zip(specific_grads, specific_values, strict=True)
        ]
        if representation is not None:
            shared_grads = self._representation_level(
                tape, [r[0] for r in rows], representation, shared_values
            )
        else:
            shared_grads = self._parameter_level(rows)
        # Regularisation losses (penalties, kernel regularisers) are added to every variable's gradient.
        grads = self._with_regularization(
            tape, scaled_regularization, shared_values + specific_values, shared_grads + summed
        )
        return self._assemble(variables, grads[: len(shared)], specific, grads[len(shared) :])

    def _parameter_level(self, rows: list[list[tf.Tensor]]) -> list[tf.Tensor]:
        """Aggregate the Jacobian w.r.t. the shared variables, given as one (T, ...) block per variable.

        ``rows[i][k]`` is task i's gradient of shared variable k, from one backward pass per task (measured:
        faster on CPU than a pfor-vectorised ``tape.jacobian``, which also runs every task's pass through
        the other heads).
        """
        aggregator = self.balancer.aggregator
        # The global Jacobian: the replicas' rows summed (one batched all-reduce), unscaled.
        rows = _all_reduce_sum([[tf.cast(g, tf.float32) for g in row] for row in rows])
        rows = [self._unscaled(row) for row in rows]
        if self.balancer.log_conflicts:
            self._log_conflicts(
                gram_of_blocks([tf.stack(task_grads) for task_grads in zip(*rows, strict=True)])
            )
        if aggregator is None:
            direction = [tf.add_n(list(task_grads)) for task_grads in zip(*rows, strict=True)]
        else:
            direction = aggregator.aggregate_rows(rows)
        # ``optimizer.apply`` sums the replicas' gradients again: every replica contributes 1/R of the update.
        return self._for_optimizer(direction)

    def _representation_level(
        self,
        tape: tf.GradientTape,
        rows: list[tf.Tensor],
        representation: tf.Tensor,
        shared_values: list[tf.Tensor],
    ) -> list[tf.Tensor]:
        """Aggregate the Jacobian w.r.t. the shared representation; one backward pass of the result.

        The rows of J are split along the batch over the replicas. A Gramian-based aggregator needs only
        ``G = Σ_r J_r J_rᵀ`` (one (T, T) all-reduce); the others see the all-gathered J.
        """
        aggregator = self.balancer.aggregator
        assert aggregator is not None  # level "rep" is used only with an aggregator
        rows = self._unscaled([tf.cast(row, tf.float32) for row in rows])  # each (batch, ...)
        num_replicas = tf.distribute.get_strategy().num_replicas_in_sync
        if aggregator.gramian_based:
            local = tf.stack(rows)  # (T, batch, ...)
            g = _all_reduce_sum(gram_of_blocks([local]))
            if self.balancer.log_conflicts:
                self._log_conflicts(g)
            local_direction = combine_blocks(aggregator.row_weights(g), [local])[0]
        elif num_replicas == 1:
            if self.balancer.log_conflicts:
                self._log_conflicts(gram_of_blocks([tf.stack(rows)]))
            local_direction = aggregator.aggregate_rows([[row] for row in rows])[0]
        else:
            flat = tf.reshape(tf.stack(rows), [len(rows), -1])
            jacobian, offset, local_size = _all_gather_columns(flat)
            if self.balancer.log_conflicts:
                self._log_conflicts(gram_of_blocks([jacobian]))
            direction = aggregator.aggregate(jacobian)
            local_direction = tf.reshape(direction[offset : offset + local_size], tf.shape(representation))
        return tape.gradient(
            representation,
            shared_values,
            output_gradients=tf.cast(self._loss_scaled(local_direction), representation.dtype),
            unconnected_gradients="zero",
        )

    def _for_optimizer(self, direction: list[tf.Tensor]) -> list[tf.Tensor]:
        """Loss-scale the update (the optimizer unscales it) and divide it among the replicas."""
        num_replicas = tf.distribute.get_strategy().num_replicas_in_sync
        if self._uses_loss_scaling:
            scale = self._loss_scale()
            direction = [scale * d for d in direction]
        if num_replicas > 1:
            direction = [d / num_replicas for d in direction]
        return direction

    def _log_conflicts(self, gram_matrix: tf.Tensor) -> None:
        """Pairwise cosines of the task gradients and the fraction of conflicting pairs, from J Jᵀ."""
        norms = tf.sqrt(tf.linalg.diag_part(gram_matrix))
        cosine = tf.math.divide_no_nan(gram_matrix, norms[:, None] * norms[None, :])
        conflicts = []
        k = 0
        for i in range(len(self.tasks)):
            for j in range(i + 1, len(self.tasks)):
                self._conflict_trackers[k].update_state(tf.cast(cosine[i, j], tf.float32))
                conflicts.append(tf.cast(cosine[i, j] < 0, tf.float32))
                k += 1
        self._conflict_trackers[-1].update_state(tf.reduce_mean(tf.stack(conflicts)) if conflicts else 0.0)

    def test_step(self, data: Any) -> dict[str, tf.Tensor]:
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        y, sample_weight = self._standardize_targets(y, sample_weight)
        y_pred = self(x, training=False)
        regularization = self._regularization()
        _, global_losses, extras = self._task_losses_for(y, y_pred, sample_weight)
        weights, offsets = self.balancer.weighting.weigh(global_losses, training=False)
        total = tf.reduce_sum(weights * global_losses + offsets) + regularization
        self._update_metrics(global_losses, total, weights, y_pred, extras)
        return self._logs()

    def _maybe_symbolic_build(self, iterator: Any = None, data_batch: Any = None) -> None:
        """Keras builds state under a strategy by MEAN-reducing a distributed batch, which fails for string
        features (raw census inputs). This model is built at construction and its metrics in ``compile``;
        only the optimizer is left to build."""
        built = all(layer.built for layer in self._flatten_layers())
        if getattr(self, "_distribute_strategy", None) is None or not built:
            super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)  # type: ignore[misc]
            return
        with self.distribute_strategy.scope():
            if self.optimizer is not None and not self.optimizer.built:
                self.optimizer.build(self.trainable_variables)

    def fit(self, *args: Any, callbacks: Any = None, **kwargs: Any) -> keras.callbacks.History:
        """``keras.Model.fit``, plus the epoch-end hook of the balancer's weighting (DWA, inverse validation)."""
        callbacks = [*list(callbacks or []), WeightingEpochHook()]
        return super().fit(*args, callbacks=callbacks, **kwargs)

    # --- config -----------------------------------------------------------------------------------------

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "tasks": [t.get_config() for t in self.tasks],
                "shared_layers": list(self.shared_layer_names),
                "representation": self.representation_name,
            }
        )
        return config


class WeightingEpochHook(keras.callbacks.Callback):
    """Hands the epoch's per-task training losses and validation logs to the balancer's weighting."""

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        model = self.model
        train_losses = np.array([float(logs.get(f"{name}_loss", np.nan)) for name in model.task_names])
        validation = {k: float(v) for k, v in logs.items() if k.startswith("val_")}
        model.balancer.weighting.on_epoch_end(epoch, train_losses, validation)


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _serialize_balancer(balancer: balancers_lib.Balancer) -> dict[str, Any]:
    return {
        "weighting": keras.saving.serialize_keras_object(balancer.weighting),
        "aggregator": (
            keras.saving.serialize_keras_object(balancer.aggregator)
            if balancer.aggregator is not None
            else None
        ),
        "level": balancer.level,
        "log_conflicts": balancer.log_conflicts,
    }


def _all_reduce_sum(value: tf.Tensor) -> tf.Tensor:
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_reduce(tf.distribute.ReduceOp.SUM, value)


def _all_gather_columns(local: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Concatenate (T, n_r) blocks of all replicas along columns; return (global, my offset, my size)."""
    size = tf.shape(local)[1]
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return local, tf.constant(0), size
    sizes = context.all_gather(tf.reshape(size, [1]), axis=0)
    replica = context.replica_id_in_sync_group
    offset = tf.reduce_sum(sizes[:replica])
    gathered = tf.reshape(context.all_gather(local, axis=1), [local.shape[0], -1])  # keep T static
    return gathered, offset, size
