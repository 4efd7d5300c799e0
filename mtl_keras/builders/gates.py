"""The gate kinds of the mixture-of-experts builders (MMoE/OMoE, CGC/PLE): ``softmax``, ``dselect_k``
(per-example) or ``dselect_k_static``."""

from __future__ import annotations

from typing import Any, Literal

import keras

from mtl_keras.layers.dselect_k import DSelectKGate
from mtl_keras.layers.mixture_of_experts import Gate

GateKind = Literal["softmax", "dselect_k", "dselect_k_static"]
#: ``dselect_k``: the per-example DSelect-k gate; ``dselect_k_static``: the same choice for every example.
GATES = ("softmax", "dselect_k", "dselect_k_static")


def check_gate(gate: Any, k: Any, num_experts: int) -> None:
    """Errors before any layer is built: an unknown gate kind, or ``k`` above the experts of a gate."""
    if gate not in GATES:
        raise ValueError(f"Expected `gate` to be one of {list(GATES)}. Received: gate={gate!r}")
    if gate != "softmax" and isinstance(k, int) and k > num_experts:
        raise ValueError(
            f"Expected `k` to be at most the number of experts a gate mixes ({num_experts}). Received: k={k!r}"
        )


def make_gate(
    gate: str, num_experts: int, *, k: int, gamma: float, entropy_weight: float, name: str
) -> keras.layers.Layer:
    """A softmax :class:`~mtl_keras.layers.mixture_of_experts.Gate` or a
    :class:`~mtl_keras.layers.dselect_k.DSelectKGate` over ``num_experts`` experts."""
    check_gate(gate, k, num_experts)
    if gate == "softmax":
        return Gate(num_experts, name=name)
    return DSelectKGate(
        num_experts,
        k=k,
        gamma=gamma,
        entropy_weight=entropy_weight,
        per_example=gate == "dselect_k",
        name=name,
    )
