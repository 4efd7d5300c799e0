"""Adding a task to a built multi-task model: a new head on the trained representation, built as the
architecture built its towers.

The new task's branch is a fresh copy of an existing task's branch (the ``template``, default the first
task): every layer that only the template's output uses and that is not a shared layer (its tower, its
per-task blocks, MMoE's or PLE's task gate and mixture, ...) is rebuilt from its config with new weights and
a name for the new task, and applied to the same shared tensors; the tower's output size and the output
activation (or standardisation) follow the new task's kind. When the template's tower is a column of a
:class:`~mtl_keras.layers.fused_towers.FusedTowers` layer, the new task gets a separate
:class:`~mtl_keras.layers.towers.Tower` ``tower_<new task>`` of the same hidden sizes, activation and
dropout (fresh weights, as for a separate template tower), on the template's tower input (rebuilt if it is
the template's own, e.g. MMoE's mixture); the fused layer itself stays as it is. Everything else — the shared layers, the other
tasks' branches — is the same layer objects, so the extended model shares their weights with ``model``.
"""

from __future__ import annotations

import re
from typing import Any

import keras

from mtl_keras._registry import suggest
from mtl_keras.builders._common import float32_output
from mtl_keras.layers.fused_towers import FusedTowers
from mtl_keras.layers.towers import Tower
from mtl_keras.model import MultiTaskModel
from mtl_keras.tasks import Task, as_tasks


def _producer(tensor: Any) -> tuple[Any, int] | None:
    history = getattr(tensor, "_keras_history", None)
    if history is None or history.operation is None:
        return None
    return history.operation, history.node_index


def _upstream(tensor: Any) -> set[int]:
    """ids of the layers ``tensor`` is computed with (column ``k`` of a :class:`FusedTowers` on a list of
    inputs is computed from its ``k``-th input only)."""
    found: set[int] = set()
    seen: set[tuple[int, int, int]] = set()
    stack = [tensor]
    while stack:
        current = stack.pop()
        produced = _producer(current)
        if produced is None:
            continue
        layer, index = produced
        column = current._keras_history.tensor_index if isinstance(layer, FusedTowers) else 0
        if (id(layer), index, column) in seen:
            continue
        seen.add((id(layer), index, column))
        found.add(id(layer))
        arguments = layer._inbound_nodes[index].arguments
        argument = arguments.args[0] if isinstance(layer, FusedTowers) else None
        if isinstance(argument, (list, tuple)):
            stack.append(argument[column])
        else:
            stack.extend(arguments.keras_tensors)
    return found


def _renamed(name: str, template: str, new: str, taken: set[str]) -> str:
    pattern = rf"(?<![A-Za-z0-9]){re.escape(template)}(?![A-Za-z0-9])"
    candidate = re.sub(pattern, new, name) if re.search(pattern, name) else f"{name}_{new}"
    base, k = candidate, 1
    while candidate in taken:
        candidate, k = f"{base}_{k}", k + 1
    taken.add(candidate)
    return candidate


def add_task(
    model: MultiTaskModel, task: Task | str | dict[str, Any], *, template: str | None = None
) -> MultiTaskModel:
    """A new :class:`MultiTaskModel` with ``model``'s outputs plus one for ``task`` (see the module docstring).

    Args:
        model: a built multi-task model (e.g. a trained run's ``model.keras``).
        task: the new task (its name must be new).
        template: the task whose branch is copied (default: the first task).
    """
    (new,) = as_tasks([task])
    if new.name in model.task_names:
        raise ValueError(
            f"Expected a new task name. Received: task {new.name!r}, already one of {model.task_names}."
        )
    template = template or model.task_names[0]
    if template not in model.task_names:
        raise ValueError(
            f"Unknown template task {template!r}. Expected one of {model.task_names}."
            + suggest(template, model.task_names)
        )
    outputs = dict(model._outputs_struct)
    others: set[int] = set()
    for name, tensor in outputs.items():
        if name != template:
            others |= _upstream(tensor)
    shared = {id(model.get_layer(name)) for name in model.shared_layer_names}
    own = _upstream(outputs[template]) - others - shared
    taken = {layer.name for layer in model.layers}
    built: dict[tuple[int, ...], Any] = {}

    def rebuild(tensor: Any) -> Any:
        produced = _producer(tensor)
        if produced is not None and isinstance(produced[0], FusedTowers) and id(produced[0]) not in shared:
            return fused_column(tensor, *produced)
        if produced is None or id(produced[0]) not in own:
            return tensor
        layer, index = produced
        if (id(layer), index) not in built:
            node = layer._inbound_nodes[index]
            args = keras.tree.map_structure(
                lambda t: rebuild(t) if isinstance(t, keras.KerasTensor) else t, node.arguments.args
            )
            kwargs = keras.tree.map_structure(
                lambda t: rebuild(t) if isinstance(t, keras.KerasTensor) else t, node.arguments.kwargs
            )
            if tensor is outputs[template]:  # the output layer: the new task's activation or standardisation
                built[(id(layer), index)] = [float32_output(args[0], new, activation=new.activation)]
            else:
                config = {**layer.get_config(), "name": _renamed(layer.name, template, new.name, taken)}
                if isinstance(layer, Tower):
                    config["output_units"] = new.output_units
                result = type(layer).from_config(config)(*args, **kwargs)
                built[(id(layer), index)] = keras.tree.flatten(result)
        return built[(id(layer), index)][tensor._keras_history.tensor_index]

    def fused_column(tensor: Any, layer: FusedTowers, index: int) -> Any:
        """A separate tower for the new task in place of the template's column of ``layer``."""
        column = tensor._keras_history.tensor_index
        key = (id(layer), index, column)
        if key not in built:
            argument = layer._inbound_nodes[index].arguments.args[0]
            x = argument[column] if isinstance(argument, (list, tuple)) else argument
            new_tower = Tower(
                units=layer.units,
                output_units=new.output_units,
                output_activation=layer.output_activation,
                activation=layer.activation,
                dropout=layer.dropout,
                dtype=layer.dtype_policy,
                name=_renamed(f"tower_{template}", template, new.name, taken),
            )
            built[key] = [new_tower(rebuild(x))]
        return built[key][0]

    outputs[new.name] = rebuild(outputs[template])
    if outputs[new.name] is outputs[template]:
        raise ValueError(f"Task {template!r} has no layer of its own to copy for task {new.name!r}.")
    return MultiTaskModel(
        model._inputs_struct,
        outputs,
        tasks=[*model.tasks, new],
        shared_layers=model.shared_layer_names,
        representation=model.representation_name,
        name=model.name,
    )


__all__ = ["add_task"]
