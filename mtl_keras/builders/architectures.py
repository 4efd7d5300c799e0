"""The multi-task architectures by name: their public builder and the graph function ``single_task`` reuses.

A *variant* (OMoE, CGC) is a registered entry whose graph is another architecture's with some options
fixed. :mod:`mtl_keras.builders.catalog` adds ``single_task`` on top of this table.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from mtl_keras._registry import suggest
from mtl_keras.builders.aitm import aitm
from mtl_keras.builders.aitm import graph as aitm_graph
from mtl_keras.builders.cross_stitch import cross_stitch
from mtl_keras.builders.cross_stitch import graph as cross_stitch_graph
from mtl_keras.builders.escm2 import escm2
from mtl_keras.builders.escm2 import graph as escm2_graph
from mtl_keras.builders.esmm import esmm
from mtl_keras.builders.esmm import graph as esmm_graph
from mtl_keras.builders.hard_sharing import graph as hard_sharing_graph
from mtl_keras.builders.hard_sharing import hard_sharing
from mtl_keras.builders.mmoe import graph as mmoe_graph
from mtl_keras.builders.mmoe import mmoe, omoe
from mtl_keras.builders.mtan import graph as mtan_graph
from mtl_keras.builders.mtan import mtan
from mtl_keras.builders.ple import cgc, ple
from mtl_keras.builders.ple import graph as ple_graph
from mtl_keras.builders.shared_private import graph as shared_private_graph
from mtl_keras.builders.shared_private import shared_private
from mtl_keras.builders.sluice import graph as sluice_graph
from mtl_keras.builders.sluice import sluice
from mtl_keras.builders.soft_sharing import graph as soft_sharing_graph
from mtl_keras.builders.soft_sharing import soft_sharing


@dataclasses.dataclass(frozen=True)
class Architecture:
    builder: Callable[..., Any]
    graph: Callable[..., Any]
    fixed: dict[str, Any] = dataclasses.field(default_factory=dict)


ARCHITECTURES: dict[str, Architecture] = {
    "hard_sharing": Architecture(hard_sharing, hard_sharing_graph),
    "mmoe": Architecture(mmoe, mmoe_graph),
    "omoe": Architecture(omoe, mmoe_graph, {"one_gate": True}),
    "cgc": Architecture(cgc, ple_graph, {"num_levels": 1}),
    "ple": Architecture(ple, ple_graph),
    "esmm": Architecture(esmm, esmm_graph),
    "escm2": Architecture(escm2, escm2_graph),
    "aitm": Architecture(aitm, aitm_graph),
    "soft_sharing": Architecture(soft_sharing, soft_sharing_graph),
    "shared_private": Architecture(shared_private, shared_private_graph),
    "cross_stitch": Architecture(cross_stitch, cross_stitch_graph),
    "sluice": Architecture(sluice, sluice_graph),
    "mtan": Architecture(mtan, mtan_graph),
}


def lookup(name: str) -> Architecture:
    """The architecture registered as ``name``; an unknown name is an error with a suggestion."""
    if name not in ARCHITECTURES:
        names = sorted(ARCHITECTURES)
        raise ValueError(f"Unknown architecture {name!r}. Expected one of {names}." + suggest(name, names))
    return ARCHITECTURES[name]
