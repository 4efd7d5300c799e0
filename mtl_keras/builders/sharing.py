"""Which layers of a Functional graph are shared: derived by walking back from every task output.

A layer is *shared* when its trainable variables are reachable from two or more task outputs that carry a
loss, walking the graph from each output back to the inputs: through a node, an output tensor is reached
from every input tensor of that node. These are the variables the gradient aggregators act on at parameter
level. What that means for each architecture:

* MMoE: the experts are reached from every output, each gate only from its own task's (through its
  mixture); OMoE's one gate and mixture are reached from every output.
* Cross-stitch and sluice: a unit mixes all columns, so every unit and every column block before the last
  unit are reached from every output; blocks after the last unit, the towers and the β layer stitches are
  reached from their own task's output only.
* A *columnwise* layer (:class:`~mtl_keras.layers.soft_sharing.SoftSharedDense`) maps a list of columns to
  a list of columns, column ``k`` computed from input ``k`` (or from its one input) with variable group
  ``k`` only. Walking back from its output ``k`` reaches its column ``k`` and input ``k``, so it is shared
  only when two outputs reach the same column.
* PLE: the derivation gives what :mod:`mtl_keras.builders.ple` lists by hand (shared experts and gates,
  inner levels' task experts, the task gates that feed them).
* An output *without a loss* of its own (ESMM's CVR head, learned only through the CTCVR product) makes no
  variable shared: only outputs that carry a loss count. ESMM's CTR tower is shared (CTR and CTCVR).

Layers without trainable variables (inputs, preprocessing, mixtures, flattening) are never shared.

Builders keep their own record (:attr:`~mtl_keras.builders._common.Graph.shared_layers`, in the order they
built the layers: the last one is GradNorm's ``W_s``) and ``build_model`` checks it with
:func:`check_shared_layers`, so a wrong record fails when the model is built, naming the layer.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any

import keras


def reaching_outputs(
    outputs: Mapping[str, Any],
    *,
    columnwise: Iterable[keras.layers.Layer] = (),
    loss_free: Collection[str] = (),
) -> dict[keras.layers.Layer, dict[int | None, set[str]]]:
    """``{layer: {column: names of the loss-carrying outputs that reach it}}`` for the layers with trainable
    variables (column ``None`` for a layer that is not columnwise)."""
    columnwise_ids = {id(layer) for layer in columnwise}
    reached: dict[int, dict[int | None, set[str]]] = {}
    layers: dict[int, keras.layers.Layer] = {}
    for name, output in outputs.items():
        if name in loss_free:
            continue
        seen: set[tuple[int, int | None]] = set()
        stack = [output]
        while stack:
            tensor = stack.pop()
            history = getattr(tensor, "_keras_history", None)
            if history is None or history.operation is None:
                continue
            layer, node_index, tensor_index = history
            node = layer._inbound_nodes[node_index]
            if node.is_input:
                continue
            column = tensor_index if id(layer) in columnwise_ids else None
            if (id(node), column) in seen:
                continue
            seen.add((id(node), column))
            if layer.trainable_variables:
                layers[id(layer)] = layer
                reached.setdefault(id(layer), {}).setdefault(column, set()).add(name)
            inputs = list(node.input_tensors)
            if column is not None and len(inputs) == len(node.outputs):
                inputs = [inputs[column]]
            stack.extend(inputs)
    return {layers[key]: columns for key, columns in reached.items()}


def bypassing_layers(
    outputs: Mapping[str, Any], representation: keras.layers.Layer, layers: Iterable[keras.layers.Layer]
) -> list[keras.layers.Layer]:
    """The ``layers`` some output reaches without passing through ``representation`` (walking back from the
    outputs and stopping at the representation layer). Shared layers before the representation must not be
    among them: their whole gradient has to pass through the representation for representation-level
    aggregation to be exact (e.g. MMoE's gates read the features directly, so with an embedding block or a
    backbone before the experts there is no such representation)."""
    wanted = {id(layer): layer for layer in layers}
    found: dict[int, keras.layers.Layer] = {}
    seen: set[int] = set()
    stack = list(outputs.values())
    while stack:
        tensor = stack.pop()
        history = getattr(tensor, "_keras_history", None)
        if history is None or history.operation is None or history.operation is representation:
            continue
        node = history.operation._inbound_nodes[history.node_index]
        if node.is_input or id(node) in seen:
            continue
        seen.add(id(node))
        if id(history.operation) in wanted:
            found[id(history.operation)] = history.operation
        stack.extend(node.input_tensors)
    return list(found.values())


def derive_shared_layers(
    outputs: Mapping[str, Any],
    *,
    columnwise: Iterable[keras.layers.Layer] = (),
    loss_free: Collection[str] = (),
) -> list[keras.layers.Layer]:
    """The shared layers (see the module docstring), in the order the walk first reaches them."""
    reached = reaching_outputs(outputs, columnwise=columnwise, loss_free=loss_free)
    return [layer for layer, columns in reached.items() if _shared(columns)]


def _shared(columns: Mapping[int | None, set[str]]) -> bool:
    return any(len(names) > 1 for names in columns.values())


def check_shared_layers(
    declared: Iterable[keras.layers.Layer],
    outputs: Mapping[str, Any],
    *,
    columnwise: Iterable[keras.layers.Layer] = (),
    loss_free: Collection[str] = (),
) -> None:
    """Raise a ``ValueError`` naming the first layer where ``declared`` and the derived shared layers differ.

    With fewer than two loss-carrying outputs no variable is reachable from two of them; the declared layers
    (a one-task model's trunk, say) are then left as they are. A declared layer without trainable variables
    (a frozen block) passes: it adds no shared variable until it is unfrozen.
    """
    if sum(name not in loss_free for name in outputs) < 2:
        return
    reached = reaching_outputs(outputs, columnwise=columnwise, loss_free=loss_free)
    by_layer = {id(layer): columns for layer, columns in reached.items()}
    declared_ids = set()
    for layer in declared:
        declared_ids.add(id(layer))
        columns = by_layer.get(id(layer), {})
        # A layer without trainable variables (a frozen block) adds nothing to the shared variables.
        if layer.trainable_variables and not _shared(columns):
            reaching = sorted(set().union(*columns.values())) if columns else []
            raise ValueError(
                f"Layer {layer.name!r} is declared shared, but the task outputs that reach its trainable "
                f"variables are {reaching} (a shared layer is reached by two or more outputs with a loss)."
            )
    for layer, columns in reached.items():
        if id(layer) not in declared_ids and _shared(columns):
            reaching = sorted(set().union(*columns.values()))
            raise ValueError(
                f"Layer {layer.name!r} is reached by the task outputs {reaching}, so its variables are "
                "shared, but it is not declared in the shared layers."
            )
