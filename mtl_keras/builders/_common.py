"""Pieces every builder uses: blocks, task heads, the graph record, and the final MultiTaskModel.

A builder is two functions in its own file: ``graph(tasks, features, *, prefix, **options) -> Graph`` wires
the layers on a feature tensor, and the public builder turns ``inputs`` into that feature tensor, calls
``graph`` and wraps the result. ``single_task`` reuses the ``graph`` functions to build per-task columns.

Every task output ends in :func:`float32_output`, so heads stay float32 under a ``mixed_float16`` policy
(losses and probabilities exact) while the layers before them compute in the policy's dtype; it is also
where a standardised regression task's output is mapped back to the labels' units. The shared
layers a graph declares are checked against those derived from the graph itself
(:mod:`mtl_keras.builders.sharing`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import keras

from mtl_keras.builders.inputs import check_not_text, make_inputs, trainable_input_layers
from mtl_keras.builders.sharing import bypassing_layers, check_shared_layers
from mtl_keras.layers._checks import check_positive_int, check_rate
from mtl_keras.layers.fused_towers import FusedTowers
from mtl_keras.layers.towers import Tower
from mtl_keras.model import MultiTaskModel
from mtl_keras.tasks import Task, as_tasks

#: A block of a column/trunk: an int (a Dense layer with that many units), a zero-argument factory returning
#: a fresh Keras layer (e.g. ``lambda: keras.layers.Conv2D(16, 3, activation="relu")``), or — as recipes
#: write it — a one-key mapping ``{LayerClass: {constructor arguments}}`` such as
#: ``{"Conv2D": {"filters": 16, "kernel_size": 3, "activation": "relu"}}``.
Block = int | Callable[[], keras.layers.Layer] | dict[str, dict[str, Any]]


@dataclasses.dataclass
class Graph:
    """What a builder wired: the task outputs, the layers shared by several tasks, the representation layer.

    ``shared_layers`` is the builder's record, in its order (the last one is GradNorm's ``W_s``);
    :func:`build_model` checks it against the layers reachable from two or more outputs. ``columnwise``
    names the layers whose ``k``-th output column uses only their ``k``-th variables and input, and
    ``loss_free`` the outputs without a loss of their own (see :mod:`mtl_keras.builders.sharing`).
    """

    outputs: dict[str, Any]
    shared_layers: list[keras.layers.Layer] = dataclasses.field(default_factory=list)
    representation: keras.layers.Layer | None = None
    columnwise: list[keras.layers.Layer] = dataclasses.field(default_factory=list)
    loss_free: tuple[str, ...] = ()


GraphFn = Callable[..., Graph]


def check_blocks(blocks: Any, name: str, *, non_empty: bool = False) -> list[Block]:
    if isinstance(blocks, (int, str)) or not isinstance(blocks, Sequence):
        raise ValueError(
            f"Expected `{name}` to be a list of blocks (ints for Dense sizes or layer factories). "
            f"Received: {name}={blocks!r}"
        )
    if non_empty and not blocks:
        raise ValueError(f"Expected `{name}` to be a non-empty list of blocks. Received: {name}=[]")
    for block in blocks:
        if isinstance(block, int) and not isinstance(block, bool):
            check_positive_int(block, name)
        elif isinstance(block, dict):
            _layer_from_mapping(block, name)  # validates eagerly
        elif not callable(block):
            raise ValueError(
                f"Expected every entry of `{name}` to be a positive int, a layer factory or a "
                f"{{LayerClass: {{arguments}}}} mapping. Received: {block!r}"
            )
    return list(blocks)


def _layer_from_mapping(block: dict[str, Any], argument: str) -> keras.layers.Layer:
    if len(block) != 1:
        raise ValueError(
            f"Expected a block mapping in `{argument}` to have exactly one key (the layer class). Received: {block!r}"
        )
    ((class_name, config),) = block.items()
    layer_class = getattr(keras.layers, str(class_name), None)
    if not (isinstance(layer_class, type) and issubclass(layer_class, keras.layers.Layer)):
        raise ValueError(f"Unknown Keras layer class {class_name!r} in `{argument}`.")
    try:
        return layer_class(**(config or {}))
    except (TypeError, ValueError) as error:
        raise ValueError(f"Cannot build {class_name} in `{argument}` from {config!r}: {error}") from None


def make_block(block: Block, *, activation: str, name: str) -> keras.layers.Layer:
    if isinstance(block, int):
        return keras.layers.Dense(block, activation=activation, name=name)
    layer = _layer_from_mapping(block, "blocks") if isinstance(block, dict) else block()
    if not isinstance(layer, keras.layers.Layer):
        raise ValueError(f"Expected a block factory to return a keras Layer. Received: {layer!r}")
    # Give factory-made layers a unique, predictable name inside the model.
    layer.name = name  # type: ignore[misc]
    return layer


def apply_block(layer: keras.layers.Layer, x: Any, *, flatten_name: str) -> Any:
    """Apply ``layer``; a Dense layer on an image-shaped tensor gets it flattened first."""
    if isinstance(layer, keras.layers.Dense) and len(x.shape) > 2:
        x = keras.layers.Flatten(name=flatten_name)(x)
    return layer(x)


def flatten(x: Any, name: str) -> Any:
    return keras.layers.Flatten(name=name)(x) if len(x.shape) > 2 else x


def tower(task: Task, units: Sequence[int], *, dropout: float = 0.0, prefix: str = "") -> Tower:
    """The tower of ``task``: hidden ``units`` then its linear output layer (the logits); the activation its
    kind needs comes after, in :func:`float32_output`."""
    return Tower(
        units=units,
        output_units=task.output_units,
        output_activation="linear",
        dropout=check_rate(dropout, "dropout"),
        name=f"{prefix}tower_{task.name}",
    )


def float32_output(x: Any, task: Task | str, *, activation: str = "linear", prefix: str = "") -> Any:
    """The final layer of a task's output: ``activation`` computed in float32.

    ``task`` is the `Task` (or, for an output with no standardisation, its name). Under a mixed policy the
    layers before it return the compute dtype (float16); this layer's own ``dtype="float32"`` casts its
    input first, so the sigmoid or softmax, every head output and every loss are float32 (Keras's advice
    for mixed precision). It has no variables; under a float32 policy it is the activation a Dense layer
    would have applied.

    For a standardised regression task (``task.label_mean`` / ``task.label_std`` set) it is instead the
    fixed affine map ``label_mean + label_std * x`` (a float32 ``Rescaling`` layer, no variables), so the
    output is in the labels' original units while ``x``, the Dense output, is in standardised units.
    """
    name = task if isinstance(task, str) else task.name
    layer_name = f"{prefix}output_{name}"
    if isinstance(task, Task) and task.label_mean is not None and task.label_std is not None:
        if activation != "linear":
            raise ValueError(
                f"A standardised task's output is linear; task {name!r} received activation={activation!r}."
            )
        return keras.layers.Rescaling(
            scale=task.label_std, offset=task.label_mean, dtype="float32", name=layer_name
        )(x)
    return keras.layers.Activation(activation, dtype="float32", name=layer_name)(x)


def task_output(task: Task, x: Any, units: Sequence[int], *, dropout: float = 0.0, prefix: str = "") -> Any:
    """Task ``task``'s output on ``x``: its :func:`tower`, then :func:`float32_output` with its activation
    (and its label standardisation, if any)."""
    logits = tower(task, units, dropout=dropout, prefix=prefix)(x)
    return float32_output(logits, task, activation=task.activation, prefix=prefix)


def task_outputs(
    tasks: Sequence[Task],
    inputs: Mapping[str, Any],
    units: Sequence[int],
    *,
    dropout: float = 0.0,
    prefix: str = "",
    fuse: bool = True,
) -> tuple[dict[str, Any], list[FusedTowers]]:
    """Every task's output, task ``t``'s tower reading ``inputs[t.name]``: ``({task: output}, fused layers)``.

    With ``fuse`` (the builders' ``fuse_towers``), the towers of tasks with the same output width whose
    inputs are ``(batch, d)`` tensors of one shape and dtype are one :class:`FusedTowers` layer (groups of
    two or more; named ``towers``, then ``towers_1``, ... in the order of their first task), reading the one
    tensor they all read or the list of their inputs; each column then goes through the task's
    :func:`float32_output` as a separate tower's logits do. The other towers, and every tower without
    ``fuse``, are separate :func:`tower` layers (``tower_<task>``). The fused layers are columnwise: a
    builder lists them in :attr:`Graph.columnwise`, so their variables are task-specific.
    """
    dropout = check_rate(dropout, "dropout")
    groups: dict[Any, list[Task]] = {}
    for task in tasks:
        x = inputs[task.name]
        shape = tuple(x.shape)
        key = (task.output_units, shape[1:], str(x.dtype)) if fuse and len(shape) == 2 else id(task)
        groups.setdefault(key, []).append(task)
    logits: dict[str, Any] = {}
    fused: list[FusedTowers] = []
    for group in groups.values():
        if len(group) < 2:
            (task,) = group
            logits[task.name] = tower(task, units, dropout=dropout, prefix=prefix)(inputs[task.name])
            continue
        layer = FusedTowers(
            num_towers=len(group),
            units=units,
            output_units=group[0].output_units,
            output_activation="linear",
            dropout=dropout,
            name=f"{prefix}towers" + (f"_{len(fused)}" if fused else ""),
        )
        group_inputs = [inputs[task.name] for task in group]
        same = all(x is group_inputs[0] for x in group_inputs)
        columns = layer(group_inputs[0] if same else group_inputs)
        logits.update({task.name: column for task, column in zip(group, columns, strict=True)})
        fused.append(layer)
    outputs = {
        task.name: float32_output(logits[task.name], task, activation=task.activation, prefix=prefix)
        for task in tasks
    }
    return outputs, fused


def build_model(
    graph_fn: GraphFn,
    tasks: Any,
    inputs: Any,
    *,
    name: str,
    balancer: Any = None,
    **options: Any,
) -> MultiTaskModel:
    """make_inputs → graph → MultiTaskModel recording its shared layers (checked against the graph, see
    :func:`~mtl_keras.builders.sharing.check_shared_layers`) and representation layer."""
    task_list = as_tasks(tasks)
    model_inputs, features = make_inputs(inputs)
    check_not_text(features)
    graph = graph_fn(task_list, features, prefix="", **options)
    # Embedding tables of raw features feed every task: shared, before the builder's own (W_s stays last).
    before = trainable_input_layers(features)
    shared = [*before, *graph.shared_layers]
    check_shared_layers(shared, graph.outputs, columnwise=graph.columnwise, loss_free=graph.loss_free)
    representation = graph.representation
    if representation is not None and bypassing_layers(graph.outputs, representation, before):
        # Embeddings or a backbone reach some output around the representation (MMoE's gates): no tensor
        # carries every shared gradient, so the model offers parameter level only.
        representation = None
    return MultiTaskModel(
        model_inputs,
        graph.outputs,
        tasks=task_list,
        shared_layers=[layer.name for layer in shared],
        representation=representation.name if representation is not None else None,
        balancer=balancer,
        name=name,
    )
