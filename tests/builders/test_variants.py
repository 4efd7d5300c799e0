"""A variant is its base architecture with an option set: OMoE, CGC and sluice build the same graph."""

from __future__ import annotations

from typing import Any

import keras
from helpers import toy_tasks

from mtl_keras import builders


def _layers(model: Any) -> list[tuple[str, str, int]]:
    return [(layer.name, type(layer).__name__, layer.count_params()) for layer in model.layers]


def test_omoe_is_mmoe_with_one_gate() -> None:
    options = {"num_experts": 3, "expert_units": (4,), "tower_units": (2,)}
    omoe = builders.omoe(toy_tasks(), 6, **options)
    mmoe = builders.mmoe(toy_tasks(), 6, **options, one_gate=True, name="omoe")
    assert _layers(omoe) == _layers(mmoe)
    assert omoe.shared_layer_names == mmoe.shared_layer_names == ["experts", "gate"]
    assert omoe.representation_name == mmoe.representation_name == "mixture"


def test_cgc_is_ple_with_one_level() -> None:
    options = {"num_shared_experts": 1, "num_task_experts": 2, "expert_units": (4,)}
    cgc = builders.cgc(toy_tasks(), 6, **options)
    ple = builders.ple(toy_tasks(), 6, num_levels=1, **options, name="cgc")
    assert _layers(cgc) == _layers(ple)
    assert cgc.shared_layer_names == ple.shared_layer_names == ["shared_experts"]


def test_sluice_is_cross_stitch_with_subspaces_and_layer_stitch() -> None:
    keras.utils.set_random_seed(0)
    sluice = builders.sluice(toy_tasks(), 6, blocks=(4, 4), num_subspaces=2)
    cross = builders.cross_stitch(
        toy_tasks(), 6, blocks=(4, 4), num_subspaces=2, layer_stitch=True, name="sluice"
    )
    assert _layers(sluice) == _layers(cross)
    assert sluice.shared_layer_names == cross.shared_layer_names
