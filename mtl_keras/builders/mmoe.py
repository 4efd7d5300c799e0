"""Multi-gate mixture of experts (MMoE) and its one-gate variant OMoE (Ma et al., KDD 2018)."""

from __future__ import annotations

from typing import Any

from mtl_keras.builders._common import Graph, build_model, flatten, task_outputs
from mtl_keras.builders.gates import GateKind, check_gate, make_gate
from mtl_keras.layers._checks import check_positive_ints
from mtl_keras.layers.mixture_of_experts import Experts, GatedMixture
from mtl_keras.model import MultiTaskModel
from mtl_keras.option_types import NonEmptyUnits, NonNegativeFloat, PositiveFloat, PositiveInt, Rate, Units
from mtl_keras.tasks import Task


def graph(
    tasks: list[Task],
    features: Any,
    *,
    prefix: str = "",
    num_experts: PositiveInt = 8,
    expert_units: NonEmptyUnits = (16,),
    tower_units: Units = (8,),
    one_gate: bool = False,
    dropout: Rate = 0.0,
    gate: GateKind = "softmax",
    k: PositiveInt = 2,
    gamma: PositiveFloat = 1.0,
    entropy_weight: NonNegativeFloat = 0.1,
    fuse_towers: bool = True,
) -> Graph:
    tower_units = check_positive_ints(tower_units, "tower_units")
    check_gate(gate, k, num_experts)

    def new_gate(name: str) -> Any:
        return make_gate(gate, num_experts, k=k, gamma=gamma, entropy_weight=entropy_weight, name=name)

    x = flatten(features, f"{prefix}flatten")
    experts = Experts(num_experts, expert_units, name=f"{prefix}experts")
    expert_outputs = experts(x)
    shared_gate = new_gate(f"{prefix}gate") if one_gate else None
    shared_layers = [experts] + ([shared_gate] if shared_gate is not None else [])
    mix_layer = GatedMixture(name=f"{prefix}mixture") if shared_gate is not None else None
    shared_mix = mix_layer([expert_outputs, shared_gate(x)]) if mix_layer and shared_gate else None
    mixtures = {}
    for task in tasks:
        if shared_mix is None:
            task_gate = new_gate(f"{prefix}gate_{task.name}")
            mixed = GatedMixture(name=f"{prefix}mixture_{task.name}")([expert_outputs, task_gate(x)])
        else:
            mixed = shared_mix
        mixtures[task.name] = mixed
    outputs, fused = task_outputs(
        tasks, mixtures, tower_units, dropout=dropout, prefix=prefix, fuse=fuse_towers
    )
    # MMoE's shared representation is the experts' outputs (the gates are task-specific). OMoE's single
    # gate is shared too, so its representation is the mixture all towers read.
    representation = experts if mix_layer is None else mix_layer
    return Graph(
        outputs=outputs, shared_layers=shared_layers, representation=representation, columnwise=list(fused)
    )


def mmoe(
    tasks: Any,
    inputs: Any,
    *,
    num_experts: PositiveInt = 8,
    expert_units: NonEmptyUnits = (16,),
    tower_units: Units = (8,),
    dropout: Rate = 0.0,
    one_gate: bool = False,
    gate: GateKind = "softmax",
    k: PositiveInt = 2,
    gamma: PositiveFloat = 1.0,
    entropy_weight: NonNegativeFloat = 0.1,
    fuse_towers: bool = True,
    balancer: Any = None,
    name: str = "mmoe",
) -> MultiTaskModel:
    """MMoE: ``num_experts`` shared experts, one softmax gate per task over them, one tower per task.

    Defaults are the MMoE paper's synthetic-data sizes (8 experts × 16 ReLU units, 8-unit towers). The shared
    representation (for ``level="rep"`` balancers) is the stacked expert outputs (batch, experts, units).
    ``one_gate=True`` is OMoE (:func:`omoe`): one gate shared by all tasks, whose mixture every tower reads
    (then the gate is shared too, and the representation is that mixture).

    ``gate="dselect_k"`` (or ``"dselect_k_static"``, one choice for all examples) replaces every softmax
    gate by a DSelect-k gate (Hazimeh et al., NeurIPS 2021,
    :class:`~mtl_keras.layers.dselect_k.DSelectKGate`): ``k`` binary-encoded selectors relaxed by a
    smooth-step of width ``gamma``, with the entropy regulariser weighted by ``entropy_weight``; once
    trained, each task's gate uses at most ``k`` experts.

    ``fuse_towers`` (default True) computes the towers of tasks with the same output width as one batched
    :class:`~mtl_keras.layers.fused_towers.FusedTowers` layer named ``towers``, tower ``k`` on task ``k``'s
    mixture (the same outputs and gradients as separate ``tower_<task>`` layers, fewer ops per step);
    ``False`` keeps one ``Tower`` per task.
    """
    return build_model(
        graph,
        tasks,
        inputs,
        name=name,
        balancer=balancer,
        num_experts=num_experts,
        expert_units=expert_units,
        tower_units=tower_units,
        dropout=dropout,
        one_gate=one_gate,
        gate=gate,
        k=k,
        gamma=gamma,
        entropy_weight=entropy_weight,
        fuse_towers=fuse_towers,
    )


def omoe(
    tasks: Any,
    inputs: Any,
    *,
    num_experts: PositiveInt = 8,
    expert_units: NonEmptyUnits = (16,),
    tower_units: Units = (8,),
    dropout: Rate = 0.0,
    gate: GateKind = "softmax",
    k: PositiveInt = 2,
    gamma: PositiveFloat = 1.0,
    entropy_weight: NonNegativeFloat = 0.1,
    fuse_towers: bool = True,
    balancer: Any = None,
    name: str = "omoe",
) -> MultiTaskModel:
    """OMoE: :func:`mmoe` with one gate shared by all tasks (so every tower reads the same mixture)."""
    return mmoe(
        tasks,
        inputs,
        num_experts=num_experts,
        expert_units=expert_units,
        tower_units=tower_units,
        dropout=dropout,
        one_gate=True,
        gate=gate,
        k=k,
        gamma=gamma,
        entropy_weight=entropy_weight,
        fuse_towers=fuse_towers,
        balancer=balancer,
        name=name,
    )
