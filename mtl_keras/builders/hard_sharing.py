"""Hard parameter sharing (Caruana 1997) with a tunable sharing depth."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mtl_keras.builders._common import (
    Block,
    Graph,
    apply_block,
    build_model,
    check_blocks,
    make_block,
    task_outputs,
)
from mtl_keras.layers._checks import check_positive_ints
from mtl_keras.model import MultiTaskModel
from mtl_keras.option_types import NonNegativeInt, Rate, Units
from mtl_keras.tasks import Task


def graph(
    tasks: list[Task],
    features: Any,
    *,
    prefix: str = "",
    trunk: Sequence[Block] = (64, 32),
    sharing_depth: NonNegativeInt | None = None,
    tower_units: Units = (16,),
    activation: str = "relu",
    dropout: Rate = 0.0,
    fuse_towers: bool = True,
) -> Graph:
    blocks = check_blocks(trunk, "trunk")
    tower_units = check_positive_ints(tower_units, "tower_units")
    depth = len(blocks) if sharing_depth is None else sharing_depth
    if isinstance(depth, bool) or not isinstance(depth, int) or not 0 <= depth <= len(blocks):
        raise ValueError(
            f"Expected `sharing_depth` to be an integer in [0, {len(blocks)}] (the number of trunk blocks). "
            f"Received: sharing_depth={sharing_depth!r}"
        )
    shared = []
    x = features
    for i in range(depth):
        layer = make_block(blocks[i], activation=activation, name=f"{prefix}shared_{i}")
        x = apply_block(layer, x, flatten_name=f"{prefix}shared_flatten_{i}")
        shared.append(layer)
    tower_inputs = {}
    for task in tasks:
        h = x
        for i in range(depth, len(blocks)):
            layer = make_block(blocks[i], activation=activation, name=f"{prefix}{task.name}_block_{i}")
            h = apply_block(layer, h, flatten_name=f"{prefix}{task.name}_flatten_{i}")
        tower_inputs[task.name] = h
    outputs, fused = task_outputs(
        tasks, tower_inputs, tower_units, dropout=dropout, prefix=prefix, fuse=fuse_towers
    )
    return Graph(
        outputs=outputs,
        shared_layers=shared,
        representation=shared[-1] if shared else None,
        columnwise=list(fused),
    )


def hard_sharing(
    tasks: Any,
    inputs: Any,
    *,
    trunk: Sequence[Block] = (64, 32),
    sharing_depth: NonNegativeInt | None = None,
    tower_units: Units = (16,),
    activation: str = "relu",
    dropout: Rate = 0.0,
    fuse_towers: bool = True,
    balancer: Any = None,
    name: str = "hard_sharing",
) -> MultiTaskModel:
    """Shared trunk, then one branch per task.

    Args:
        tasks: the tasks (``Task`` objects, names, or config dicts).
        inputs: an input size, a shape, :class:`~mtl_keras.builders.inputs.RawFeatures` or keras inputs.
        trunk: the trunk blocks: ints (Dense sizes) or layer factories (``lambda: Conv2D(...)``).
        sharing_depth: how many trunk blocks are shared; the remaining blocks are duplicated per task.
            ``len(trunk)`` (default) is the classic shared bottom, ``0`` is separate columns.
        tower_units: hidden sizes of each task's tower, before its output layer.
        activation: activation of Dense blocks.
        dropout: dropout in the towers.
        fuse_towers: compute the towers of tasks with the same output width as one batched
            :class:`~mtl_keras.layers.fused_towers.FusedTowers` layer named ``towers`` (same outputs and
            gradients as separate ``tower_<task>`` layers, fewer ops per step); ``False`` keeps one
            ``Tower`` per task. Towers on an image-shaped input are never fused.
        balancer: default balancer used by ``compile``.
        name: model name.

    The shared representation is the output of the last shared block.
    """
    return build_model(
        graph,
        tasks,
        inputs,
        name=name,
        balancer=balancer,
        trunk=trunk,
        sharing_depth=sharing_depth,
        tower_units=tower_units,
        activation=activation,
        dropout=dropout,
        fuse_towers=fuse_towers,
    )
