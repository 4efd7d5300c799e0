"""`MultiTaskModel`: a Functional Keras model with one named output per task and a balancing train step.

Outputs are always a dict keyed by task name. The train step computes every task's loss as a *masked* mean
over the examples that have a label (a task without labels in a batch has loss 0 and no NaN), weighs the
losses with the balancer's weighting, and either back-propagates the weighted sum once or lets the
balancer's gradient aggregator turn the task gradients of the shared variables (``level="param"``) or of the
shared representation (``level="rep"``) into the shared update; task-specific variables always get their own
task's gradient. ``compile`` chooses the one step object that does this for its balancer; the steps live in
:mod:`mtl_keras.training`.

The logged ``<task>_loss`` is the loss over every labelled example of the epoch (each batch counts by its
number of labelled examples), and a task with no labelled example logs NaN for its loss and its metrics,
never 0 (:mod:`mtl_keras.training.metrics`). ``<task>_weight`` is logged for weightings that change the
weights, not for static ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import tensorflow as tf

from mtl_keras import balancers as balancers_lib
from mtl_keras._registry import serializable, suggest
from mtl_keras.balancers.state import BalancerState
from mtl_keras.tasks import Task, as_tasks
from mtl_keras.training import LossTerm, Runner, StepMetrics, TaskGradientHook, TaskLosses, choose_step
from mtl_keras.training.arguments import per_task, serialized_per_task
from mtl_keras.training.epoch_hook import WeightingEpochHook
from mtl_keras.training.lookahead import LookaheadHook
from mtl_keras.training.select import JacobianMode

__all__ = ["BalancerState", "MultiTaskModel", "WeightingEpochHook"]


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
        self._loss_terms: list[LossTerm] = []
        self._task_gradient_hooks: list[TaskGradientHook] = []
        self._lookahead_hooks: list[LookaheadHook] = []
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
        extra_losses: Sequence[LossTerm] = (),
        jacobian: str = "auto",
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
            extra_losses: callables ``(x, labels by task, predictions by task) -> scalar`` added to the
                objective like the layers' regularisation (see :meth:`add_loss_term`); not saved.
            jacobian: how a parameter-level gradient aggregator gets the task gradients: ``"stored"``
                (every task's gradient of every shared variable at once, the fastest), ``"gramian"`` (the
                Gram matrix chunk by chunk, then one weighted backward pass: memory of one chunk instead of
                T × the shared parameters; Gramian-based aggregators only) or ``"auto"`` (Gramian above
                2^27 Jacobian entries when the aggregator allows it). See docs/methods.md, "Gramian mode".
            **kwargs: passed to ``keras.Model.compile`` (``steps_per_execution``, ...); ``jit_compile``
                defaults to False here.
        """
        for key in ("loss_weights", "weighted_metrics"):
            if key in kwargs:
                raise ValueError(f"`{key}` is not supported by MultiTaskModel.compile.")
        losses = per_task(loss, "loss", self.task_names)
        metric_spec = per_task(metrics, "metrics", self.task_names, broadcast=False)
        static_weights = None
        if loss_weights is not None:
            weights = per_task(loss_weights, "loss_weights", self.task_names, broadcast=False)
            static_weights = [float(weights.get(name, 1.0)) for name in self.task_names]
        self.balancer = balancers_lib.resolve(
            balancer if balancer is not None else self._default_balancer,
            level=balancer_level,
            log_conflicts=log_conflicts,
            static_weights=static_weights,
        )
        try:
            self.jacobian_mode = JacobianMode(jacobian)
        except ValueError:
            raise ValueError(
                f"Expected `jacobian` to be one of {[m.value for m in JacobianMode]}. Received: jacobian={jacobian!r}"
            ) from None
        self.balancer.build(self.task_names)
        step = choose_step(self, self.balancer)
        # After choose_step: per-parameter state is created there (Weighting/Aggregator.build_blocks).
        aggregator = self.balancer.aggregator
        self.balancer_state.adopt(
            self.balancer.weighting.variables, aggregator.variables if aggregator is not None else []
        )
        task_losses = TaskLosses(
            self.tasks,
            [t.get_loss(losses.get(t.name)) for t in self.tasks],
        )
        # Static weights never change: logging them only crowds the progress bar and the history.
        self._step_metrics = StepMetrics.for_tasks(
            self.tasks,
            metric_spec,
            log_conflicts=self.balancer.log_conflicts,
            log_weights=not isinstance(self.balancer.weighting, balancers_lib.weightings.Static),
        )
        self._extra_losses = list(extra_losses)
        self._runner = Runner(
            self,
            step,
            self.balancer,
            task_losses,
            self._step_metrics,
            loss_terms=[*self._loss_terms, *self._extra_losses],
            gradient_hooks=self._task_gradient_hooks,
            lookahead_hooks=self._lookahead_hooks,
        )
        # XLA is opt-in: the gradient aggregators' iterative solvers are written for graph mode, and
        # docs/methods.md measured no XLA speed-up on CPU.
        kwargs.setdefault("jit_compile", False)
        super().compile(optimizer=optimizer, **kwargs)
        self._mtl_compiled = True
        self._mtl_compile_config = {
            **serialized_per_task(losses, metric_spec),
            "balancer": self.balancer.get_config(),
            "jacobian": self.jacobian_mode.value,
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
        self.compile(
            optimizer=config["optimizer"],
            loss=config["loss"] or None,
            metrics=config["metrics"] or None,
            balancer=balancers_lib.Balancer.from_config(config["balancer"]),
            jacobian=config.get("jacobian", "auto"),  # files saved before the option: "auto"
        )
        if self.built:
            self.optimizer.build(self.trainable_variables)

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        if not getattr(self, "_mtl_compiled", False):
            return super().metrics
        return self._step_metrics.metrics

    @property
    def metrics_names(self) -> list[str]:
        if not getattr(self, "_mtl_compiled", False):
            return super().metrics_names
        return self._step_metrics.names

    def _flatten_metrics_in_order(self, logs: dict[str, Any]) -> Any:
        """``evaluate(return_dict=False)``'s list, in the order of :attr:`metrics_names` then the other keys
        sorted, as Keras orders it (the per-task losses are one metric object here, so Keras's own ordering by
        ``self.metrics`` would not find their names)."""
        if not getattr(self, "_mtl_compiled", False):
            return super()._flatten_metrics_in_order(logs)  # type: ignore[misc]
        names = self.metrics_names
        results = [logs[name] for name in names if name in logs]
        results += [logs[key] for key in sorted(logs) if key not in names]
        return results[0] if len(results) == 1 else results

    def get_metrics_result(self) -> dict[str, Any]:
        """The epoch logs (``fit``'s history, ``evaluate(return_dict=True)``): exact per-task losses over
        the labelled examples, and NaN for a task's loss and metrics when it had no labelled example."""
        if not getattr(self, "_mtl_compiled", False):
            return super().get_metrics_result()
        return self._step_metrics.logs()

    def add_loss_term(self, fn: LossTerm) -> None:
        """Add ``fn(x, labels by task, predictions by task) -> scalar`` to the objective, like the layers'
        regularisation under every balancer (each replica adds its value divided by the replica count).
        Kept across ``compile`` calls; not saved with the model."""
        self._loss_terms.append(fn)
        self._retrace()

    def add_task_gradient_hook(self, fn: TaskGradientHook) -> None:
        """Call ``fn(gradients, losses)`` in every training step, before the update, with every task's
        global gradient of the shared variables (``gradients[task][variable]``, unscaled) and the global
        task losses (T,). It runs inside the compiled step: keep results in variables. Costs one backward
        pass per task."""
        self._task_gradient_hooks.append(fn)
        self._retrace()

    def add_lookahead_hook(self, fn: LookaheadHook) -> None:
        """Call ``fn(probe)`` in every training step, before the update, with a
        :class:`~mtl_keras.training.lookahead.LookaheadProbe` of the step's batch: the task gradients of
        the shared variables and the task losses at other shared values, without assigning anything
        (task affinity, :class:`~mtl_keras.callbacks.LookaheadAffinity`). It runs inside the compiled step."""
        self._lookahead_hooks.append(fn)
        self._retrace()

    def remove_lookahead_hook(self, fn: LookaheadHook) -> None:
        """Forget a hook of :meth:`add_lookahead_hook` (the next step is traced without it)."""
        self._lookahead_hooks = [hook for hook in self._lookahead_hooks if hook != fn]
        self._retrace()

    def refresh_step(self) -> None:
        """Choose the training step again for the current trainable variables and trace it anew: call after
        layers were frozen or unfrozen during training (:class:`~mtl_keras.callbacks.UnfreezeBackbone`).
        The balancer keeps its state; a running ``fit`` continues with the new step from its next batch."""
        if not getattr(self, "_mtl_compiled", False):
            return
        self._runner.step = choose_step(self, self.balancer)
        self.balancer_state.adopt(self.balancer.weighting.variables)
        from mtl_keras.distribute.multi_worker import forget_functions

        forget_functions(self)
        if self.train_function is not None:  # a running fit calls self.train_function at every step
            self.make_train_function(force=True)
        self.test_function = None
        self.predict_function = None

    def _retrace(self) -> None:
        if getattr(self, "_mtl_compiled", False):
            self._runner.loss_terms = [*self._loss_terms, *self._extra_losses]
            self._runner.gradient_hooks = list(self._task_gradient_hooks)
            self._runner.lookahead_hooks = list(self._lookahead_hooks)
        self.train_function = None
        self.test_function = None

    def _standardize_targets(self, y: Any, sample_weight: Any) -> tuple[list[Any], list[Any]]:
        """Labels and per-task sample weights as lists in task order."""
        return self._runner.task_losses.standardize(y, sample_weight)

    def _task_losses_for(self, y: list[Any], y_pred: dict[str, tf.Tensor], sample_weight: list[Any]) -> Any:
        """(this replica's share of each task loss, global task losses (T,), clean labels and masks)."""
        return self._runner.task_losses(y, y_pred, sample_weight)

    # --- train / test -----------------------------------------------------------------------------------

    def train_step(self, data: Any) -> dict[str, tf.Tensor]:
        """One update by the step ``compile`` chose (see :mod:`mtl_keras.training`)."""
        return self._runner.train_step(data)

    def test_step(self, data: Any) -> dict[str, tf.Tensor]:
        return self._runner.test_step(data)

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
