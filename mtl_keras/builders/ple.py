"""Customized Gate Control (CGC) and Progressive Layered Extraction (PLE) (Tang et al., RecSys 2020).

One *extraction level* has a group of shared experts and one group of experts per task. Task ``i``'s softmax
gate (reading task ``i``'s input of the level) mixes its own experts and the shared experts into task ``i``'s
output of the level. In PLE every level but the last also has a shared gate: it reads the level's shared
input and mixes *all* experts (shared and every task's) into the next level's shared input. CGC is one level.

What is shared, i.e. which variables more than one task's loss depends on (with two or more tasks):

* the shared experts of every level (every task gate reads them);
* every inner level's shared gate (it feeds the next level's shared experts);
* the task experts of every inner level: the inner shared gate mixes them into the next level's shared
  input, so every task's loss depends on them, not only their own task's;
* the task gates of every level but the last two: their mixture is the task's input of the next level,
  whose task experts are shared when that next level is itself inner.

The task experts and gate of the last level, the task gate of the level before it, and the towers are
task-specific (also when fused into one ``towers`` layer: its column ``k`` uses slice ``k`` of its
variables only). With one task nothing is shared.
"""

from __future__ import annotations

from typing import Any

import keras

from mtl_keras.builders._common import Graph, build_model, flatten, task_outputs
from mtl_keras.builders.gates import GateKind, check_gate, make_gate
from mtl_keras.layers._checks import check_positive_int, check_positive_ints, check_rate
from mtl_keras.layers.mixture_of_experts import ConcatExperts, Experts, GatedMixture
from mtl_keras.model import MultiTaskModel
from mtl_keras.option_types import NonEmptyUnits, NonNegativeFloat, PositiveFloat, PositiveInt, Rate, Units
from mtl_keras.tasks import Task


def graph(
    tasks: list[Task],
    features: Any,
    *,
    prefix: str = "",
    num_levels: PositiveInt = 2,
    num_shared_experts: PositiveInt = 2,
    num_task_experts: PositiveInt = 2,
    expert_units: NonEmptyUnits = (16,),
    tower_units: Units = (8,),
    dropout: Rate = 0.0,
    gate: GateKind = "softmax",
    k: PositiveInt = 2,
    gamma: PositiveFloat = 1.0,
    entropy_weight: NonNegativeFloat = 0.1,
    fuse_towers: bool = True,
) -> Graph:
    num_levels = check_positive_int(num_levels, "num_levels")
    num_shared_experts = check_positive_int(num_shared_experts, "num_shared_experts")
    num_task_experts = check_positive_int(num_task_experts, "num_task_experts")
    expert_units = check_positive_ints(expert_units, "expert_units", allow_empty=False)
    tower_units = check_positive_ints(tower_units, "tower_units")
    dropout = check_rate(dropout, "dropout")
    check_gate(gate, k, num_task_experts + num_shared_experts)

    def new_gate(size: int, name: str) -> Any:
        return make_gate(gate, size, k=k, gamma=gamma, entropy_weight=entropy_weight, name=name)

    x = flatten(features, f"{prefix}flatten")
    shared_input = x
    task_inputs = {task.name: x for task in tasks}
    shared_layers: list[keras.layers.Layer] = []
    shared_experts: Experts | None = None
    for level in range(1, num_levels + 1):
        tag = f"{prefix}level_{level}_" if num_levels > 1 else prefix
        inner = level < num_levels
        shared_experts = Experts(num_shared_experts, expert_units, name=f"{tag}shared_experts")
        shared_outputs = shared_experts(shared_input)
        shared_layers.append(shared_experts)
        task_expert_outputs = []
        next_task_inputs = {}
        for task in tasks:
            experts = Experts(num_task_experts, expert_units, name=f"{tag}experts_{task.name}")
            own_outputs = experts(task_inputs[task.name])
            task_expert_outputs.append(own_outputs)
            task_gate = new_gate(num_task_experts + num_shared_experts, f"{tag}gate_{task.name}")
            candidates = ConcatExperts(name=f"{tag}concat_{task.name}")([own_outputs, shared_outputs])
            next_task_inputs[task.name] = GatedMixture(name=f"{tag}mixture_{task.name}")(
                [candidates, task_gate(task_inputs[task.name])]
            )
            if inner:  # read by this level's shared gate, hence by every task
                shared_layers.append(experts)
            if level < num_levels - 1:  # feeds the next level's task experts, which are shared
                shared_layers.append(task_gate)
        if inner:
            everything = ConcatExperts(name=f"{tag}all_experts")([shared_outputs, *task_expert_outputs])
            shared_gate = new_gate(num_shared_experts + len(tasks) * num_task_experts, f"{tag}shared_gate")
            shared_input = GatedMixture(name=f"{tag}shared_mixture")([everything, shared_gate(shared_input)])
            shared_layers.append(shared_gate)
        task_inputs = next_task_inputs

    outputs, fused = task_outputs(
        tasks, task_inputs, tower_units, dropout=dropout, prefix=prefix, fuse=fuse_towers
    )
    if len(tasks) < 2:
        return Graph(outputs=outputs)
    # In CGC every path from a shared variable (the shared experts are the only ones) to a loss goes through
    # the stacked shared expert outputs. In PLE the shared variables of inner levels also reach the losses
    # through every task's own path (task experts and gates of the last levels), so no single layer output
    # separates them from the losses: no representation, use level="param" balancers.
    representation = shared_experts if num_levels == 1 else None
    return Graph(
        outputs=outputs, shared_layers=shared_layers, representation=representation, columnwise=list(fused)
    )


def ple(
    tasks: Any,
    inputs: Any,
    *,
    num_levels: PositiveInt = 2,
    num_shared_experts: PositiveInt = 2,
    num_task_experts: PositiveInt = 2,
    expert_units: NonEmptyUnits = (16,),
    tower_units: Units = (8,),
    dropout: Rate = 0.0,
    gate: GateKind = "softmax",
    k: PositiveInt = 2,
    gamma: PositiveFloat = 1.0,
    entropy_weight: NonNegativeFloat = 0.1,
    fuse_towers: bool = True,
    balancer: Any = None,
    name: str = "ple",
) -> MultiTaskModel:
    """Progressive Layered Extraction (Tang et al., RecSys 2020): ``num_levels`` stacked extraction levels.

    Level ``l`` has ``num_shared_experts`` shared experts and ``num_task_experts`` experts per task. Task
    ``i``'s gate mixes its own and the shared experts into task ``i``'s input of level ``l + 1`` (of its
    tower after the last level); every level but the last also has a shared gate, over all experts, whose
    mixture is the shared experts' input of level ``l + 1``. ``num_levels=1`` is :func:`cgc`.

    Args:
        tasks: the tasks (``Task`` objects, names, or config dicts).
        inputs: an input size, a shape, :class:`~mtl_keras.builders.inputs.RawFeatures` or keras inputs.
        num_levels: number of extraction levels.
        num_shared_experts: shared experts per level.
        num_task_experts: experts per task and level.
        expert_units: hidden sizes of every expert (ReLU MLPs; the last one is the expert output width).
        tower_units: hidden sizes of each task's tower, before its output layer.
        dropout: dropout in the towers.
        gate: ``"softmax"``, ``"dselect_k"`` or ``"dselect_k_static"``: every gate (task and shared) becomes a DSelect-k gate
            (:class:`~mtl_keras.layers.dselect_k.DSelectKGate`) with ``k`` selectors, smooth-step width
            ``gamma`` and entropy regulariser weight ``entropy_weight``.
        k, gamma, entropy_weight: the DSelect-k options (ignored by softmax gates).
        fuse_towers: compute the towers of tasks with the same output width as one batched
            :class:`~mtl_keras.layers.fused_towers.FusedTowers` layer named ``towers``, tower ``k`` on task
            ``k``'s last mixture (same outputs and gradients as separate ``tower_<task>`` layers, fewer
            ops per step); ``False`` keeps one ``Tower`` per task.
        balancer: default balancer used by ``compile``.
        name: model name.

    Layers are named ``level_<l>_shared_experts``, ``level_<l>_experts_<task>``, ``level_<l>_gate_<task>``,
    ``level_<l>_shared_gate``. Shared layers (the variables several tasks' losses depend on): the shared
    experts of every level, the shared gates, the task experts of every level but the last (the shared gate
    of their level mixes them into the shared path) and the task gates of every level but the last two
    (they feed shared task experts). With ``num_levels >= 2`` no single tensor carries every shared
    gradient, so the model declares no shared representation: use ``level="param"`` balancers.
    """
    return build_model(
        graph,
        tasks,
        inputs,
        name=name,
        balancer=balancer,
        num_levels=num_levels,
        num_shared_experts=num_shared_experts,
        num_task_experts=num_task_experts,
        expert_units=expert_units,
        tower_units=tower_units,
        dropout=dropout,
        gate=gate,
        k=k,
        gamma=gamma,
        entropy_weight=entropy_weight,
        fuse_towers=fuse_towers,
    )


def cgc(
    tasks: Any,
    inputs: Any,
    *,
    num_shared_experts: PositiveInt = 2,
    num_task_experts: PositiveInt = 2,
    expert_units: NonEmptyUnits = (16,),
    tower_units: Units = (8,),
    dropout: Rate = 0.0,
    gate: GateKind = "softmax",
    k: PositiveInt = 2,
    gamma: PositiveFloat = 1.0,
    entropy_weight: NonNegativeFloat = 0.1,
    fuse_towers: bool = True,
    balancer: Any = None,
    name: str = "cgc",
) -> MultiTaskModel:
    """Customized Gate Control (Tang et al., RecSys 2020): :func:`ple` with one extraction level.

    Args:
        tasks: the tasks (``Task`` objects, names, or config dicts).
        inputs: an input size, a shape, :class:`~mtl_keras.builders.inputs.RawFeatures` or keras inputs.
        num_shared_experts: experts every task's gate can choose.
        num_task_experts: experts of each task, chosen only by that task's gate.
        expert_units: hidden sizes of every expert (ReLU MLPs; the last one is the expert output width).
        tower_units: hidden sizes of each task's tower, before its output layer.
        dropout: dropout in the towers.
        gate, k, gamma, entropy_weight: the gate kind and DSelect-k options, as for :func:`ple`.
        fuse_towers: one batched ``towers`` layer for the towers of one output width, as for :func:`ple`.
        balancer: default balancer used by ``compile``.
        name: model name.

    Layers are named ``shared_experts``, ``experts_<task>``, ``gate_<task>``, and ``towers`` (or
    ``tower_<task>`` without ``fuse_towers``, or for a task whose output width no other task has). The shared
    layer is ``shared_experts``; the shared representation (for ``level="rep"`` balancers) is its output,
    the stacked shared expert outputs (batch, num_shared_experts, expert_units[-1]).
    """
    return ple(
        tasks,
        inputs,
        num_levels=1,
        num_shared_experts=num_shared_experts,
        num_task_experts=num_task_experts,
        expert_units=expert_units,
        tower_units=tower_units,
        dropout=dropout,
        gate=gate,
        k=k,
        gamma=gamma,
        entropy_weight=entropy_weight,
        fuse_towers=fuse_towers,
        balancer=balancer,
        name=name,
    )
