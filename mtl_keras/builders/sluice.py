"""Sluice networks (Ruder, Bingel, Augenstein & Søgaard, AAAI 2019): subspace cross-stitch + layer stitch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mtl_keras.builders._common import Block, Graph, build_model, check_blocks, flatten, tower
from mtl_keras.builders.cross_stitch import stitched_columns
from mtl_keras.layers._checks import check_positive_int, check_positive_ints
from mtl_keras.layers.sluice import LayerStitch
from mtl_keras.model import MultiTaskModel
from mtl_keras.tasks import Task


def graph(
    tasks: list[Task],
    features: Any,
    *,
    prefix: str = "",
    blocks: Sequence[Block] = (32, 32),
    num_subspaces: int = 2,
    tower_units: Sequence[int] = (16,),
    activation: str = "relu",
    lr_multiplier: float = 10.0,
    dropout: float = 0.0,
) -> Graph:
    block_list = check_blocks(blocks, "blocks", non_empty=True)
    num_subspaces = check_positive_int(num_subspaces, "num_subspaces")
    tower_units = check_positive_ints(tower_units, "tower_units")
    per_depth, shared = stitched_columns(
        tasks,
        features,
        prefix=prefix,
        blocks=block_list,
        stitch_after=list(range(len(block_list))),
        activation=activation,
        lr_multiplier=lr_multiplier,
        num_subspaces=num_subspaces,
    )
    shapes = [tuple(outputs[0].shape[1:]) for outputs in per_depth]
    if any(shape != shapes[0] for shape in shapes):
        raise ValueError(
            "Expected every block of a sluice network to output the same shape (the layer-stitch unit sums "
            f"them). Received: blocks={list(blocks)!r} with output shapes {shapes}"
        )
    outputs = {}
    for i, task in enumerate(tasks):
        mixed = LayerStitch(len(block_list), name=f"{prefix}{task.name}_layer_stitch")(
            [outputs_k[i] for outputs_k in per_depth]
        )
        h = flatten(mixed, f"{prefix}{task.name}_tower_flatten")
        outputs[task.name] = tower(task, tower_units, dropout=dropout, prefix=prefix)(h)
    return Graph(outputs=outputs, shared_layers=shared, representation=None)


def sluice(
    tasks: Any,
    inputs: Any,
    *,
    blocks: Sequence[Block] = (32, 32),
    num_subspaces: int = 2,
    tower_units: Sequence[int] = (16,),
    activation: str = "relu",
    lr_multiplier: float = 10.0,
    dropout: float = 0.0,
    balancer: Any = None,
    name: str = "sluice",
) -> MultiTaskModel:
    """Sluice network: a cross-stitch network whose units mix subspaces, with learned layer skip weights β.

    After every block the columns' activations are split into ``num_subspaces`` equal parts along the last
    axis and mixed by a learned (T·G)×(T·G) matrix α (a
    :class:`~mtl_keras.layers.cross_stitch.CrossStitch` with ``num_subspaces``). Each task's tower reads
    ``Σ_k β_k h_k``, a learned mix (a :class:`~mtl_keras.layers.sluice.LayerStitch`, β initialised
    ``1/K``) of its column's stitched outputs at all K depths, so every block must output the same shape
    (e.g. equal Dense sizes, or ``padding="same"`` Conv2D blocks with equal filters).

    Left out from Ruder et al.: the subspace orthogonality constraint (in the paper a penalty on the LSTM
    weight matrices of the two subspaces) and the "concat"/"skip" alternatives to the β layer stitch.

    Args:
        tasks: the tasks (``Task`` objects, names, or config dicts).
        inputs: an input size, a shape, :class:`~mtl_keras.builders.inputs.RawFeatures` or keras inputs.
        blocks: the blocks of every column (ints for Dense sizes or zero-argument layer factories).
        num_subspaces: G; every block's output width must be divisible by it. 1 gives a cross-stitch
            network with layer-stitch skip connections.
        tower_units: hidden sizes of each task's tower.
        activation: activation of Dense blocks.
        lr_multiplier: learning-rate multiplier of the α matrices (m× with Adam, m²× with SGD).
        dropout: dropout in the towers.
        balancer: default balancer used by ``compile``.
        name: model name.

    Shared layers are the cross-stitch units and every column block (each block precedes a unit); the β
    units are task-specific. No shared representation, for the reason given in
    :func:`~mtl_keras.builders.cross_stitch.cross_stitch`.
    """
    return build_model(
        graph,
        tasks,
        inputs,
        name=name,
        balancer=balancer,
        blocks=blocks,
        num_subspaces=num_subspaces,
        tower_units=tower_units,
        activation=activation,
        lr_multiplier=lr_multiplier,
        dropout=dropout,
    )
