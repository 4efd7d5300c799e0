"""Adaptive Information Transfer Multi-task (AITM) (Xi et al., KDD 2021): towers in a conversion funnel.

The tasks are the steps of a sequence (impression → click → purchase …), in the order given, all binary and
labelled over every impression (a later step's label implies the earlier one's). Task ``t`` has its own
encoder on the shared input features, giving ``q_t``. The first task's tower reads ``z_1 = q_1``; task
``t > 1`` reads ``z_t = AIT(p_{t−1}, q_t)``, the attention of
:class:`~mtl_keras.layers.information_transfer.AdaptiveInformationTransfer` over its own ``q_t`` and the
information ``p_{t−1} = g_{t−1}(z_{t−1})`` transferred from the previous task (``g`` a ReLU Dense layer).
The behavioural-expectation calibrator
(:class:`~mtl_keras.layers.information_transfer.BehaviouralExpectation`) adds
``calibrator_weight · mean max(ŷ_t − ŷ_{t−1}, 0)`` for every ``t > 1``, keeping p(later) ≤ p(earlier).

Shared layers (their variables reach the outputs of two or more tasks): every layer of a task before the
last (its encoder, its AIT module, and its tower when the calibrator is on, since the next task's penalty
reads its output), and the transfer layers that feed a task before the last. The last task's encoder, AIT
module and tower are its own. No shared representation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras

from mtl_keras.builders._common import Graph, build_model, flatten, float32_output, tower
from mtl_keras.layers._checks import check_non_negative, check_positive_ints, check_rate
from mtl_keras.layers.information_transfer import AdaptiveInformationTransfer, BehaviouralExpectation
from mtl_keras.layers.towers import Tower
from mtl_keras.model import MultiTaskModel
from mtl_keras.option_types import NonEmptyUnits, NonNegativeFloat, Rate, Units
from mtl_keras.tasks import Task, as_tasks


def aitm_tasks(tasks: Any) -> list[Task]:
    """The tasks in sequence order; each must be binary with one output (a step of the funnel). A task
    given by its name is a binary task."""
    if isinstance(tasks, str):
        tasks = [tasks]
    if isinstance(tasks, Sequence):
        tasks = [Task(task, "binary") if isinstance(task, str) else task for task in tasks]
    task_list = as_tasks(tasks)
    for task in task_list:
        if task.kind != "binary" or task.output_units != 1:
            raise ValueError(
                f"Expected AITM task {task.name!r} to be a binary task with one output unit (a step of a "
                f"conversion sequence). Received: kind={task.kind!r}, units={task.output_units}"
            )
    return task_list


def graph(
    tasks: list[Task],
    features: Any,
    *,
    prefix: str = "",
    encoder_units: Sequence[int] = (64, 32),
    tower_units: Sequence[int] = (16,),
    calibrator_weight: float = 0.6,
    dropout: float = 0.0,
) -> Graph:
    tasks = aitm_tasks(tasks)
    encoder_units = check_positive_ints(encoder_units, "encoder_units", allow_empty=False)
    tower_units = check_positive_ints(tower_units, "tower_units")
    calibrator_weight = check_non_negative(calibrator_weight, "calibrator_weight")
    dropout = check_rate(dropout, "dropout")
    x = flatten(features, f"{prefix}flatten")
    width = encoder_units[-1]
    outputs: dict[str, Any] = {}
    layers_of: list[list[keras.layers.Layer]] = []  # per task: the layers its own output goes through
    transfers: list[keras.layers.Layer] = []  # transfers[t - 1] feeds task t
    previous_z = previous_output = None
    for t, task in enumerate(tasks):
        encoder = Tower(
            units=encoder_units[:-1],
            output_units=width,
            output_activation="relu",
            name=f"{prefix}encoder_{task.name}",
        )
        own = [encoder]
        z = encoder(x)
        if previous_z is not None:
            transfer = keras.layers.Dense(
                width, activation="relu", name=f"{prefix}transfer_{tasks[t - 1].name}_{task.name}"
            )
            transfers.append(transfer)
            ait = AdaptiveInformationTransfer(name=f"{prefix}ait_{task.name}")
            z = ait([transfer(previous_z), z])
            own.append(ait)
        task_tower = tower(task, tower_units, dropout=dropout, prefix=prefix)
        own.append(task_tower)
        logits = task_tower(z)
        if previous_output is None or calibrator_weight == 0:
            output = float32_output(logits, task, activation=task.activation, prefix=prefix)
        else:
            probability = keras.layers.Activation(
                task.activation, dtype="float32", name=f"{prefix}probability_{task.name}"
            )(logits)
            calibrated = BehaviouralExpectation(calibrator_weight, name=f"{prefix}calibrator_{task.name}")(
                [previous_output, probability]
            )
            output = float32_output(calibrated, task, prefix=prefix)
        outputs[task.name] = output
        layers_of.append(own)
        previous_z, previous_output = z, output

    shared: list[keras.layers.Layer] = []
    last = len(tasks) - 1
    for t in range(last):
        encoder, *middle, task_tower = layers_of[t]
        if t >= 1:
            shared.append(transfers[t - 1])
        shared += [encoder, *middle]
        if calibrator_weight > 0:  # the next task's penalty reads this task's output
            shared.append(task_tower)
    return Graph(outputs=outputs, shared_layers=shared)


def aitm(
    tasks: Any,
    inputs: Any,
    *,
    encoder_units: NonEmptyUnits = (64, 32),
    tower_units: Units = (16,),
    calibrator_weight: NonNegativeFloat = 0.6,
    dropout: Rate = 0.0,
    balancer: Any = None,
    name: str = "aitm",
) -> MultiTaskModel:
    """AITM: one encoder and tower per task, in sequence, with attention-based transfer from the previous task.

    Args:
        tasks: the steps of the sequence in order (e.g. ``["ctr", "ctcvr"]``: click, then click and
            purchase), binary tasks labelled over every impression; any number of them.
        inputs: an input size, a shape, :class:`~mtl_keras.builders.inputs.RawFeatures` or keras inputs.
        encoder_units: sizes of each task's ReLU encoder on the input; the last one is the width ``d`` of
            ``q_t``, of the transferred information and of the AIT module.
        tower_units: hidden sizes of each task's tower on ``z_t``, before its sigmoid output.
        calibrator_weight: weight α of the behavioural-expectation penalty ``mean max(ŷ_t − ŷ_{t−1}, 0)``
            (0: none); the default 0.6 is ours.
        dropout: dropout in the towers.
        balancer: default balancer used by ``compile``.
        name: model name.

    Layers: ``encoder_<task>``, ``transfer_<earlier>_<later>``, ``ait_<task>``, ``tower_<task>``,
    ``calibrator_<task>``. The CVR of the last two steps is ``ŷ_t / ŷ_{t−1}``.
    """
    return build_model(
        graph,
        aitm_tasks(tasks),
        inputs,
        name=name,
        balancer=balancer,
        encoder_units=encoder_units,
        tower_units=tower_units,
        calibrator_weight=calibrator_weight,
        dropout=dropout,
    )
