"""Shared-private model: a shared encoder, a private encoder per task, orthogonal features.

The shared/private split with the orthogonality ("difference") penalty of domain separation networks
(Bousmalis et al., NeurIPS 2016), as used for multi-task learning by Liu, Qiu & Huang (ACL 2017), without
their adversarial task discriminator.
"""

from __future__ import annotations

from typing import Any

import keras

from mtl_keras.builders._common import Graph, build_model, flatten, task_output
from mtl_keras.layers._checks import check_positive_ints
from mtl_keras.layers.orthogonality import OrthogonalityPenalty
from mtl_keras.model import MultiTaskModel
from mtl_keras.option_types import NonNegativeFloat, Rate, Units
from mtl_keras.tasks import Task


def graph(
    tasks: list[Task],
    features: Any,
    *,
    prefix: str = "",
    shared_units: Units = (32,),
    private_units: Units = (16,),
    strength: NonNegativeFloat = 1e-4,
    tower_units: Units = (16,),
    activation: str = "relu",
    dropout: Rate = 0.0,
) -> Graph:
    shared_units = check_positive_ints(shared_units, "shared_units", allow_empty=False)
    private_units = check_positive_ints(private_units, "private_units", allow_empty=False)
    tower_units = check_positive_ints(tower_units, "tower_units")
    x = flatten(features, f"{prefix}flatten")
    shared_layers = [
        keras.layers.Dense(width, activation=activation, name=f"{prefix}shared_{k}")
        for k, width in enumerate(shared_units)
    ]
    shared = x
    for layer in shared_layers:
        shared = layer(shared)
    outputs = {}
    for task in tasks:
        private = x
        for k, width in enumerate(private_units):
            private = keras.layers.Dense(
                width, activation=activation, name=f"{prefix}{task.name}_private_{k}"
            )(private)
        joined = OrthogonalityPenalty(strength, name=f"{prefix}{task.name}_orthogonality")([shared, private])
        outputs[task.name] = task_output(task, joined, tower_units, dropout=dropout, prefix=prefix)
    return Graph(outputs=outputs, shared_layers=shared_layers, representation=shared_layers[-1])


def shared_private(
    tasks: Any,
    inputs: Any,
    *,
    shared_units: Units = (32,),
    private_units: Units = (16,),
    strength: NonNegativeFloat = 1e-4,
    tower_units: Units = (16,),
    activation: str = "relu",
    dropout: Rate = 0.0,
    balancer: Any = None,
    name: str = "shared_private",
) -> MultiTaskModel:
    """Shared-private model: task i's tower reads ``concat(S, P_i)`` of the shared encoder's features S and
    its private encoder's features P_i, and ``strength · Σ_i ‖Sᵀ P_i‖_F²`` on the batch feature matrices is
    added to the loss (an :class:`~mtl_keras.layers.orthogonality.OrthogonalityPenalty` per task), pushing
    the private encoders to capture what the shared one does not.

    Args:
        tasks: the tasks (``Task`` objects, names, or config dicts).
        inputs: an input size, a shape, :class:`~mtl_keras.builders.inputs.RawFeatures` or keras inputs
            (image inputs are flattened).
        shared_units: Dense sizes of the shared encoder.
        private_units: Dense sizes of every private encoder.
        strength: weight of the orthogonality penalty. ``Sᵀ P_i`` sums over the batch and the features are
            not normalised, so the penalty grows with the batch size and the feature scale: with ReLU
            encoders of 32 and 16 units and batches of 32 it starts about 100× above the task losses at
            ``strength=0.01``, hence the default ``1e-4``; raise it when the spaces should separate harder.
        tower_units: hidden sizes of each task's tower.
        activation: activation of the encoders.
        dropout: dropout in the towers.
        balancer: default balancer used by ``compile``.
        name: model name.

    Shared layers are the shared encoder's layers; the shared representation is its last layer's output.
    """
    return build_model(
        graph,
        tasks,
        inputs,
        name=name,
        balancer=balancer,
        shared_units=shared_units,
        private_units=private_units,
        strength=strength,
        tower_units=tower_units,
        activation=activation,
        dropout=dropout,
    )
