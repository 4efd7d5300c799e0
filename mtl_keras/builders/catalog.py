"""The architectures by name: their public builder and the graph function ``single_task`` reuses."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from mtl_keras._registry import suggest
from mtl_keras.builders import (
    cross_stitch,
    esmm,
    hard_sharing,
    mmoe,
    ple,
    shared_private,
    sluice,
    soft_sharing,
)


@dataclasses.dataclass(frozen=True)
class Architecture:
    builder: Callable[..., Any]
    graph: Callable[..., Any]
    fixed: dict[str, Any] = dataclasses.field(default_factory=dict)


ARCHITECTURES: dict[str, Architecture] = {
    "hard_sharing": Architecture(hard_sharing.hard_sharing, hard_sharing.graph),
    "mmoe": Architecture(mmoe.mmoe, mmoe.graph),
    "omoe": Architecture(mmoe.omoe, mmoe.graph, {"one_gate": True}),
    "cgc": Architecture(ple.cgc, ple.graph, {"num_levels": 1}),
    "ple": Architecture(ple.ple, ple.graph),
    "esmm": Architecture(esmm.esmm, esmm.graph),
    "soft_sharing": Architecture(soft_sharing.soft_sharing, soft_sharing.graph),
    "shared_private": Architecture(shared_private.shared_private, shared_private.graph),
    "cross_stitch": Architecture(cross_stitch.cross_stitch, cross_stitch.graph),
    "sluice": Architecture(sluice.sluice, sluice.graph),
}


def _lookup(name: str) -> Architecture:
    if name not in ARCHITECTURES:
        names = sorted(ARCHITECTURES)
        raise ValueError(f"Unknown architecture {name!r}. Expected one of {names}." + suggest(name, names))
    return ARCHITECTURES[name]


def graph_for(name: str) -> tuple[Callable[..., Any], dict[str, Any]]:
    architecture = _lookup(name)
    return architecture.graph, architecture.fixed


def get_builder(name: str) -> Callable[..., Any]:
    """The public builder of architecture ``name`` (``"single_task"`` included)."""
    if name == "single_task":
        from mtl_keras.builders.single_task import single_task

        return single_task
    return _lookup(name).builder


def names() -> list[str]:
    return sorted([*ARCHITECTURES, "single_task"])
