"""Sluice networks (Ruder, Bingel, Augenstein & Søgaard, AAAI 2019): subspace cross-stitch + layer stitch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mtl_keras.builders._common import Block, Graph
from mtl_keras.builders.cross_stitch import cross_stitch
from mtl_keras.builders.cross_stitch import graph as cross_stitch_graph
from mtl_keras.model import MultiTaskModel
from mtl_keras.option_types import PositiveFloat, PositiveInt, Rate, Units
from mtl_keras.tasks import Task


def graph(
    tasks: list[Task],
    features: Any,
    *,
    prefix: str = "",
    blocks: Sequence[Block] = (32, 32),
    num_subspaces: PositiveInt = 2,
    tower_units: Units = (16,),
    activation: str = "relu",
    lr_multiplier: PositiveFloat = 10.0,
    dropout: Rate = 0.0,
) -> Graph:
    """The cross-stitch graph with a unit after every block, ``num_subspaces`` and layer stitches."""
    return cross_stitch_graph(
        tasks,
        features,
        prefix=prefix,
        blocks=blocks,
        num_subspaces=num_subspaces,
        tower_units=tower_units,
        activation=activation,
        lr_multiplier=lr_multiplier,
        dropout=dropout,
        layer_stitch=True,
    )


def sluice(
    tasks: Any,
    inputs: Any,
    *,
    blocks: Sequence[Block] = (32, 32),
    num_subspaces: PositiveInt = 2,
    tower_units: Units = (16,),
    activation: str = "relu",
    lr_multiplier: PositiveFloat = 10.0,
    dropout: Rate = 0.0,
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
    :func:`~mtl_keras.builders.cross_stitch.cross_stitch`, of which this is the variant with
    ``num_subspaces`` and ``layer_stitch=True``.
    """
    return cross_stitch(
        tasks,
        inputs,
        blocks=blocks,
        num_subspaces=num_subspaces,
        tower_units=tower_units,
        activation=activation,
        lr_multiplier=lr_multiplier,
        dropout=dropout,
        layer_stitch=True,
        balancer=balancer,
        name=name,
    )
