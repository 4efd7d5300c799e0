"""Cross-stitch networks (Misra et al., CVPR 2016): task columns mixed by learned α after chosen blocks.

The one implementation of stitched columns: with ``num_subspaces`` and ``layer_stitch=True`` it is a sluice
network (:func:`~mtl_keras.builders.sluice.sluice`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras

from mtl_keras.builders._common import (
    Block,
    Graph,
    apply_block,
    build_model,
    check_blocks,
    flatten,
    make_block,
    task_output,
)
from mtl_keras.layers._checks import check_positive_int, check_positive_ints
from mtl_keras.layers.cross_stitch import CrossStitch
from mtl_keras.layers.sluice import LayerStitch
from mtl_keras.model import MultiTaskModel
from mtl_keras.option_types import NonNegativeInt, PositiveFloat, PositiveInt, Rate, Units
from mtl_keras.tasks import Task


def check_stitch_after(stitch_after: Any, num_blocks: int) -> list[int]:
    """Sorted block indices after which a cross-stitch unit goes; None means after every block."""
    if stitch_after is None:
        return list(range(num_blocks))
    indices = (
        [stitch_after]
        if isinstance(stitch_after, int) and not isinstance(stitch_after, bool)
        else stitch_after
    )
    if (
        not isinstance(indices, Sequence)
        or isinstance(indices, str)
        or not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < num_blocks for i in indices)
        or len(set(indices)) != len(indices)
    ):
        raise ValueError(
            f"Expected `stitch_after` to be None or distinct block indices in [0, {num_blocks}) "
            f"(there are {num_blocks} blocks). Received: stitch_after={stitch_after!r}"
        )
    return sorted(indices)


def stitched_columns(
    tasks: list[Task],
    features: Any,
    *,
    prefix: str,
    blocks: list[Block],
    stitch_after: list[int],
    activation: str,
    lr_multiplier: float,
    num_subspaces: PositiveInt = 1,
) -> tuple[list[list[Any]], list[keras.layers.Layer]]:
    """Build one column per task; return (the columns' outputs after every block, the shared layers).

    A column block feeds other tasks' losses only through a later cross-stitch unit, so the shared layers
    are the units and the blocks up to the last unit; blocks after it are task-specific.
    """
    columns = [features] * len(tasks)
    per_depth: list[list[Any]] = []
    shared: list[keras.layers.Layer] = []
    last_stitch = max(stitch_after, default=-1)
    for k, block in enumerate(blocks):
        layers = [
            make_block(block, activation=activation, name=f"{prefix}{task.name}_block_{k}") for task in tasks
        ]
        if len({id(layer) for layer in layers}) != len(layers):
            raise ValueError(
                f"Expected block factories to return a new layer on every call (one per task column). "
                f"Block {k} returned the same layer: {layers[0]!r}"
            )
        columns = [
            apply_block(layer, h, flatten_name=f"{prefix}{task.name}_flatten_{k}")
            for layer, h, task in zip(layers, columns, tasks, strict=True)
        ]
        if k <= last_stitch:
            shared.extend(layers)
        if k in stitch_after:
            unit = CrossStitch(
                len(tasks),
                lr_multiplier=lr_multiplier,
                num_subspaces=num_subspaces,
                name=f"{prefix}cross_stitch_{k}",
            )
            columns = unit(columns)
            shared.append(unit)
        per_depth.append(list(columns))
    return per_depth, shared


def graph(
    tasks: list[Task],
    features: Any,
    *,
    prefix: str = "",
    blocks: Sequence[Block] = (64, 32),
    stitch_after: Sequence[NonNegativeInt] | NonNegativeInt | None = None,
    tower_units: Units = (16,),
    activation: str = "relu",
    lr_multiplier: PositiveFloat = 10.0,
    dropout: Rate = 0.0,
    num_subspaces: PositiveInt = 1,
    layer_stitch: bool = False,
) -> Graph:
    block_list = check_blocks(blocks, "blocks", non_empty=True)
    stitches = check_stitch_after(stitch_after, len(block_list))
    num_subspaces = check_positive_int(num_subspaces, "num_subspaces")
    tower_units = check_positive_ints(tower_units, "tower_units")
    per_depth, shared = stitched_columns(
        tasks,
        features,
        prefix=prefix,
        blocks=block_list,
        stitch_after=stitches,
        activation=activation,
        lr_multiplier=lr_multiplier,
        num_subspaces=num_subspaces,
    )
    if layer_stitch:
        shapes = [tuple(outputs[0].shape[1:]) for outputs in per_depth]
        if any(shape != shapes[0] for shape in shapes):
            raise ValueError(
                "Expected every block of a sluice network to output the same shape (the layer-stitch unit "
                f"sums them). Received: blocks={list(blocks)!r} with output shapes {shapes}"
            )
    outputs = {}
    for i, task in enumerate(tasks):
        h = per_depth[-1][i]
        if layer_stitch:
            h = LayerStitch(len(block_list), name=f"{prefix}{task.name}_layer_stitch")(
                [outputs_k[i] for outputs_k in per_depth]
            )
        h = flatten(h, f"{prefix}{task.name}_tower_flatten")
        outputs[task.name] = task_output(task, h, tower_units, dropout=dropout, prefix=prefix)
    return Graph(outputs=outputs, shared_layers=shared, representation=None)


def cross_stitch(
    tasks: Any,
    inputs: Any,
    *,
    blocks: Sequence[Block] = (64, 32),
    stitch_after: Sequence[NonNegativeInt] | NonNegativeInt | None = None,
    tower_units: Units = (16,),
    activation: str = "relu",
    lr_multiplier: PositiveFloat = 10.0,
    dropout: Rate = 0.0,
    num_subspaces: PositiveInt = 1,
    layer_stitch: bool = False,
    balancer: Any = None,
    name: str = "cross_stitch",
) -> MultiTaskModel:
    """Cross-stitch network: one column per task, a :class:`~mtl_keras.layers.cross_stitch.CrossStitch` unit
    mixing the columns' activations after each chosen block (Misra et al. 2016).

    Args:
        tasks: the tasks (``Task`` objects, names, or config dicts).
        inputs: an input size, a shape, :class:`~mtl_keras.builders.inputs.RawFeatures` or keras inputs.
        blocks: the blocks of every column: ints (Dense sizes; image inputs are flattened first) or
            zero-argument layer factories (``lambda: keras.layers.Conv2D(8, 3, padding="same")``), called
            once per task so every column has its own layers. A unit mixes same-shaped activations, so
            a factory's layer must give every column the same output shape (it does when the columns are
            built alike).
        stitch_after: indices of the blocks followed by a cross-stitch unit; None (default) means after every
            block, ``()`` gives independent columns.
        tower_units: hidden sizes of each task's tower (its column's output is flattened first).
        activation: activation of Dense blocks.
        lr_multiplier: how much faster the α matrices learn: m× with Adam-like optimizers, m²× with SGD
            (see :class:`~mtl_keras.layers.cross_stitch.CrossStitch`).
        dropout: dropout in the towers.
        num_subspaces: G: every unit splits each column's activations into G equal parts along the last
            axis and mixes the T·G parts (Ruder et al.'s subspaces); 1 (default) mixes whole columns.
        layer_stitch: each task's tower reads a learned mix (a
            :class:`~mtl_keras.layers.sluice.LayerStitch`) of its column's outputs at every depth instead
            of the last one; every block must then output the same shape. With ``num_subspaces`` this is
            a sluice network (:func:`~mtl_keras.builders.sluice.sluice`).
        balancer: default balancer used by ``compile``.
        name: model name.

    Shared layers are the cross-stitch units and every column block up to the last unit: through the units,
    every task's loss depends on every column, so these variables get the aggregated update of a gradient
    balancer. Blocks after the last unit feed only their own task and are task-specific. There is no shared
    representation (``representation=None``, so only ``balancer_level="param"`` works): each tower reads its
    own column's tensor, and no single tensor lies on every path from the shared variables to the losses.
    """
    return build_model(
        graph,
        tasks,
        inputs,
        name=name,
        balancer=balancer,
        blocks=blocks,
        stitch_after=stitch_after,
        tower_units=tower_units,
        activation=activation,
        lr_multiplier=lr_multiplier,
        dropout=dropout,
        num_subspaces=num_subspaces,
        layer_stitch=layer_stitch,
    )
