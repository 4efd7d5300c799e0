"""`PerTaskEarlyStopping`: each task stops on its own validation metric and keeps its head's best weights.

Which variables are a task's head
---------------------------------
A variable belongs to task i's head when it is not a shared variable (not in a layer of
``model.shared_layer_names``) and task i's output is the *only* model output that depends on it. The
dependence is read from the graph, not from names and not from data: the model is traced once on symbolic
inputs (``tf.function`` on the input specs) and a variable is connected to an output when the gradient of
that output with respect to the variable is not ``None``. That is structural (dead ReLUs, missing labels
or zero gradients on a batch cannot hide a connection) and works for every builder: towers
(``tower_<task>``), unshared trunk blocks (``<task>_block_<k>``), MMoE/PLE gates and task experts, and every
column of a single-task baseline model. Non-trainable float variables (batch-norm statistics of a tower)
are included. ``task_layers={task: [layer names]}`` overrides the detection.

Fused towers (:class:`~mtl_keras.layers.fused_towers.FusedTowers`, the builders' default ``towers``
layer) hold every task's tower in one variable per depth, slice ``k`` being task ``k``'s: a task's head
then holds :class:`VariableSlice` entries, and saving or restoring it reads or writes its slice only. The
owner of slice ``k`` is read from the graph (the outputs reached from column ``k``, walking back as
:mod:`mtl_keras.builders.sharing` does), and since a fused layer back-propagates a zero, not a ``None``,
gradient into the other columns' inputs, a model with fused towers also intersects each layer's outputs
found by the gradient with those the graph walk finds (so MMoE's ``gate_<task>`` stays in its task's head).

What happens to the other variables
-----------------------------------
Shared variables, non-shared variables that several outputs depend on (cross-stitch and soft-sharing
columns, ESMM's CTR tower which also feeds CTCVR) and variables no output depends on (a balancer's loss
weights) are not restored per task. With ``shared_weights="final"`` (default) they keep their values of the
last epoch trained; with ``shared_weights="composite"`` they are restored to the epoch with the best mean,
over tasks, of the signed relative change of the monitored values since the first epoch (the score of
:class:`~mtl_keras.callbacks.CompositeEarlyStopping` with equal weights). Either way a head restored to its
best epoch then sits on a trunk from a later epoch: its validation score after restoring is close to, not
exactly, its best one.

A stopped task is no longer tracked, but its loss still trains the shared part and its head
until every task has stopped (then ``model.stop_training`` is set); the heads' best weights are put back at
the end of training.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from mtl_keras.builders.sharing import reaching_outputs
from mtl_keras.callbacks import _common
from mtl_keras.layers.fused_towers import FusedTowers

SHARED_WEIGHTS = ("final", "composite")


def _shared_ids(model: Any) -> set[int]:
    """The ids of the variables of the model's shared layers."""
    return {id(v) for name in model.shared_layer_names for v in model.get_layer(name).weights}


@dataclasses.dataclass(frozen=True)
class VariableSlice:
    """Slice ``index`` (along the first axis) of ``variable``: one task's part of a fused layer's variable.

    ``numpy()`` reads the slice and ``assign(value)`` writes it, leaving the other slices as they are.
    """

    variable: Any
    index: int

    @property
    def path(self) -> str:
        return f"{self.variable.path}[{self.index}]"

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.variable.shape[1:])

    def numpy(self) -> np.ndarray:
        return np.asarray(self.variable.numpy())[self.index]

    def assign(self, value: Any) -> None:
        full = np.array(self.variable.numpy(), copy=True)
        full[self.index] = value
        self.variable.assign(full)


def _fused_layers(model: Any, shared_ids: set[int]) -> list[FusedTowers]:
    return [
        layer
        for layer in model.layers
        if isinstance(layer, FusedTowers) and not any(id(v) in shared_ids for v in layer.weights)
    ]


def task_head_variables(model: Any) -> tuple[dict[str, list[Any]], list[Any]]:
    """``({task: variables only that task's output depends on}, [every other model variable])``.

    Detected by tracing the model on symbolic inputs (see the module docstring). Shared variables are never
    in a head. A fused tower layer's variables come as :class:`VariableSlice` entries, slice ``k`` in the
    head of the one task whose output reads column ``k`` (in the other variables when no single task does).
    """
    task_names = list(model.task_names)
    shared_ids = _shared_ids(model)
    fused = _fused_layers(model, shared_ids)
    fused_ids = {id(v) for layer in fused for v in layer.weights}
    candidates = [
        v
        for v in model.weights
        if id(v) not in shared_ids and id(v) not in fused_ids and tf.as_dtype(v.dtype).is_floating
    ]
    specs = tf.nest.map_structure(lambda t: tf.TensorSpec((None, *tuple(t.shape)[1:]), t.dtype), model.input)
    connected: dict[str, list[bool]] = {}

    def probe(inputs: Any) -> tf.Tensor:
        with tf.GradientTape(persistent=True, watch_accessed_variables=False) as tape:
            for variable in candidates:
                tape.watch(variable.value)
            outputs = model(inputs, training=False)
            totals = {name: tf.reduce_sum(tf.cast(outputs[name], tf.float32)) for name in task_names}
        for name in task_names:
            grads = tape.gradient(totals[name], [v.value for v in candidates])
            connected[name] = [g is not None for g in grads]
        return tf.constant(0)

    tf.function(probe).get_concrete_function(specs)
    heads: dict[str, list[Any]] = {name: [] for name in task_names}
    owned: set[int] = set()
    others: list[Any] = []
    walked: dict[int, set[str]] = {}
    if fused:
        reached = reaching_outputs(dict(model._outputs_struct), columnwise=fused)
        for layer, columns in reached.items():
            reaching = set().union(*columns.values())
            walked.update({id(v): reaching for v in layer.weights})
        for layer in fused:
            columns = reached.get(layer, {})
            for k in range(layer.num_towers):
                column_users = sorted(columns.get(k, set()))
                for variable in layer.weights:
                    part = VariableSlice(variable, k)
                    if len(column_users) == 1:
                        heads[column_users[0]].append(part)
                    else:
                        others.append(part)
                    owned.add(id(variable))
    for index, variable in enumerate(candidates):
        users = [
            name
            for name in task_names
            if connected[name][index] and (id(variable) not in walked or name in walked[id(variable)])
        ]
        if len(users) == 1:
            heads[users[0]].append(variable)
            owned.add(id(variable))
    others = [v for v in model.weights if id(v) not in owned] + others
    return heads, others


def _layers_variables(
    model: Any, task_layers: Mapping[str, Sequence[str]]
) -> tuple[dict[str, list[Any]], list[Any]]:
    heads: dict[str, list[Any]] = {name: [] for name in model.task_names}
    shared_ids = _shared_ids(model)
    owned: dict[int, str] = {}
    for task, names in task_layers.items():
        for layer_name in [names] if isinstance(names, str) else names:
            try:
                layer = model.get_layer(layer_name)
            except ValueError as error:
                raise ValueError(
                    f"Unknown layer {layer_name!r} in `task_layers` for task {task!r}. "
                    f"Layers: {[layer.name for layer in model.layers]}"
                ) from error
            for variable in layer.weights:
                if id(variable) in shared_ids:
                    raise ValueError(
                        f"Layer {layer_name!r} of task {task!r} is a shared layer; it has no owner."
                    )
                if owned.get(id(variable), task) != task:
                    raise ValueError(
                        f"Layer {layer_name!r} is listed for tasks {owned[id(variable)]!r} and {task!r}."
                    )
                if id(variable) not in owned:
                    owned[id(variable)] = task
                    heads[task].append(variable)
    return heads, [v for v in model.weights if id(v) not in owned]


def _values(variables: Sequence[Any]) -> list[np.ndarray]:
    return [np.array(v.numpy(), copy=True) for v in variables]


def _assign(variables: Sequence[Any], values: Sequence[np.ndarray]) -> None:
    for variable, value in zip(variables, values, strict=True):
        variable.assign(value)


class PerTaskEarlyStopping(_common.TaskEarlyStopping):
    """Early stopping per task: each task's head keeps the weights of its own best validation epoch.

    Args:
        monitor: the log key watched per task: a pattern with ``{task}`` (default ``"val_{task}_loss"``),
            a metric name (``"auc"`` → ``val_<task>_auc``), or a ``{task: key or metric}`` dict (tasks left
            out use ``"val_{task}_loss"``).
        mode: ``"auto"`` (direction from the metric name, :data:`mtl_keras.tasks.HIGHER_IS_BETTER`),
            ``"min"``, ``"max"``, or a ``{task: mode}`` dict.
        patience: epochs without improvement after which a task stops.
        min_delta: the smallest change that counts as an improvement.
        restore_best_weights: at the end of training, restore each head's variables to its best epoch.
        shared_weights: ``"final"`` or ``"composite"``: what the variables outside the heads end with (see the
            module docstring).
        task_layers: ``{task: [layer names]}`` forming each head, instead of the automatic detection.
        verbose: 1 logs each task's stop.

    After ``fit``: ``best_epochs`` ``{task: 0-based epoch}``, ``best_values``, ``stopped_epochs``
    ``{task: epoch or None}``, ``head_variables`` ``{task: [variables or VariableSlice]}``, ``monitored``
    ``{task: key}``.
    """

    callback_name = "PerTaskEarlyStopping"

    def __init__(
        self,
        monitor: str | Mapping[str, str] = "val_{task}_loss",
        mode: str | Mapping[str, str] = "auto",
        patience: int = 5,
        min_delta: float = 0.0,
        restore_best_weights: bool = True,
        shared_weights: str = "final",
        task_layers: Mapping[str, Sequence[str]] | None = None,
        verbose: int = 0,
    ) -> None:
        super().__init__(patience, min_delta, restore_best_weights, verbose)
        if shared_weights not in SHARED_WEIGHTS:
            raise ValueError(
                f"Expected `shared_weights` to be one of {SHARED_WEIGHTS}. "
                f"Received: shared_weights={shared_weights!r}"
            )
        self.monitor = monitor
        self.mode = mode
        self.shared_weights = shared_weights
        self.task_layers = task_layers

    def _reset(self) -> None:
        super()._reset()
        self.best_epochs: dict[str, int | None] = {}
        self.best_values: dict[str, float | None] = {}
        self.stopped_epochs: dict[str, int | None] = {}
        self.head_variables: dict[str, list[Any]] = {}
        self.other_variables: list[Any] = []
        self._wait: dict[str, int] = {}
        self._snapshots: dict[str, list[np.ndarray] | None] = {}
        self._baselines: dict[str, float] | None = None
        self._best_composite: float | None = None
        self.best_composite_epoch: int | None = None
        self._composite_snapshot: list[np.ndarray] | None = None

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._reset()
        model = self.model
        task_names = self._task_names("shared_layer_names")
        monitors = _common.per_task(self.monitor, task_names, "monitor")
        modes = _common.per_task(self.mode, task_names, "mode")
        for task in task_names:
            self._watch(task, monitors.get(task, "val_{task}_loss"), modes.get(task, "auto"))
            self.best_epochs[task] = None
            self.best_values[task] = None
            self.stopped_epochs[task] = None
            self._wait[task] = 0
            self._snapshots[task] = None
        if self.task_layers is not None:
            _common.per_task(self.task_layers, task_names, "task_layers")
            heads, others = _layers_variables(model, self.task_layers)
        else:
            heads, others = task_head_variables(model)
        self.head_variables, self.other_variables = heads, others

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs is None:
            return
        values = self._read(logs)
        for task, value in values.items():
            if self.stopped_epochs[task] is not None:
                continue
            if _common.improved(value, self.best_values[task], self.directions[task], self.min_delta):
                self.best_values[task], self.best_epochs[task], self._wait[task] = value, epoch, 0
                self._snapshots[task] = _values(self.head_variables[task])
                continue
            self._wait[task] += 1
            if self._wait[task] >= self.patience:
                self.stopped_epochs[task] = epoch
                if self.verbose:
                    _common.logger.info(
                        "PerTaskEarlyStopping: task %r stopped after epoch %d (best epoch %s, %s = %s).",
                        task,
                        epoch + 1,
                        None if self.best_epochs[task] is None else self.best_epochs[task] + 1,  # type: ignore[operator]
                        self.monitored[task],
                        self.best_values[task],
                    )
        if self.shared_weights == "composite":
            if self._baselines is None:
                self._baselines = dict(values)
            score = _common.composite_score(values, self._baselines, self.directions)
            if _common.improved(score, self._best_composite, True, 0.0):
                self._best_composite, self.best_composite_epoch = score, epoch
                self._composite_snapshot = _values(self.other_variables)
        if all(stopped is not None for stopped in self.stopped_epochs.values()):
            self.model.stop_training = True

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if not self.restore_best_weights:
            return
        for task, snapshot in self._snapshots.items():
            if snapshot is not None:
                _assign(self.head_variables[task], snapshot)
        if self.shared_weights == "composite" and self._composite_snapshot is not None:
            _assign(self.other_variables, self._composite_snapshot)
