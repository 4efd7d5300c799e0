"""Soft parameter sharing (Duong et al., ACL 2015): a Dense column per task, kernels tied by an L2 penalty."""

from __future__ import annotations

from typing import Any

from mtl_keras.builders._common import Graph, build_model, flatten, task_output
from mtl_keras.layers._checks import check_positive_ints
from mtl_keras.layers.soft_sharing import SoftSharedDense
from mtl_keras.model import MultiTaskModel
from mtl_keras.option_types import NonNegativeFloat, Rate, Units
from mtl_keras.tasks import Task


def graph(
    tasks: list[Task],
    features: Any,
    *,
    prefix: str = "",
    units: Units = (64, 32),
    strength: NonNegativeFloat = 1e-3,
    tower_units: Units = (16,),
    activation: str = "relu",
    dropout: Rate = 0.0,
) -> Graph:
    units = check_positive_ints(units, "units", allow_empty=False)
    tower_units = check_positive_ints(tower_units, "tower_units")
    columns: Any = flatten(features, f"{prefix}flatten")
    layers = [
        SoftSharedDense(
            width, len(tasks), strength=strength, activation=activation, name=f"{prefix}soft_shared_{k}"
        )
        for k, width in enumerate(units)
    ]
    for layer in layers:
        columns = layer(columns)
    outputs = {
        task.name: task_output(task, h, tower_units, dropout=dropout, prefix=prefix)
        for task, h in zip(tasks, columns, strict=True)
    }
    # Column k of every SoftSharedDense has its own kernel: nothing is shared.
    return Graph(outputs=outputs, shared_layers=[], representation=None, columnwise=layers)


def soft_sharing(
    tasks: Any,
    inputs: Any,
    *,
    units: Units = (64, 32),
    strength: NonNegativeFloat = 1e-3,
    tower_units: Units = (16,),
    activation: str = "relu",
    dropout: Rate = 0.0,
    balancer: Any = None,
    name: str = "soft_sharing",
) -> MultiTaskModel:
    """Soft sharing: one Dense column per task; ``strength · Σ_{i<j} ‖W_i − W_j‖²`` between the kernels of
    every depth (a :class:`~mtl_keras.layers.soft_sharing.SoftSharedDense` per depth) is added to the loss.

    Args:
        tasks: the tasks (``Task`` objects, names, or config dicts).
        inputs: an input size, a shape, :class:`~mtl_keras.builders.inputs.RawFeatures` or keras inputs
            (image inputs are flattened).
        units: the Dense sizes of every column.
        strength: weight of the L2 penalty between corresponding kernels; 0 gives independent columns.
        tower_units: hidden sizes of each task's tower.
        activation: activation of the column layers.
        dropout: dropout in the towers.
        balancer: default balancer used by ``compile``; only loss weightings apply, since no variable is
            shared and gradient aggregators (which need shared variables) are refused by ``compile``.
        name: model name.

    No variable is shared (``shared_layers=[]``) and there is no shared representation: the columns
    interact only through the penalty, which the model adds to the objective as a regularisation loss.
    """
    return build_model(
        graph,
        tasks,
        inputs,
        name=name,
        balancer=balancer,
        units=units,
        strength=strength,
        tower_units=tower_units,
        activation=activation,
        dropout=dropout,
    )
