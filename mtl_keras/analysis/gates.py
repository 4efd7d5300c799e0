"""What a mixture-of-experts model's gates do: mean gate weight per expert, and collapse warnings.

Every :class:`~mtl_keras.layers.mixture_of_experts.GatedMixture` of a model (one per task in MMoE, one per
task and level and the shared ones in CGC/PLE, the single one of OMoE; any gate layer, softmax or
DSelect-k, feeds them) mixes an expert stack ``(batch, E, d)`` with gate weights ``(batch, E)``.
:func:`gate_usage` averages those weights over a data set (the validation split in a run), giving one row
per mixture. :func:`collapse_warnings` reads the rows of mixtures over the same expert stack together:

* **collapse**: one expert takes more than ``dominant`` (default 0.9) of the mean weight of every mixture
  over its stack — the experts no longer specialise by task;
* **unused expert**: an expert gets less than ``unused`` (default 0.01) of every such mixture.

A DSelect-k gate with ``k = 1`` puts all weight on one expert by design; the warning then says what it sees.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras
import numpy as np

from mtl_keras.layers.mixture_of_experts import GatedMixture

DOMINANT = 0.9
UNUSED = 0.01


def mixtures(model: keras.Model) -> list[GatedMixture]:
    """The model's gated mixtures, in layer order (none for a model without experts)."""
    return [layer for layer in model.layers if isinstance(layer, GatedMixture)]


def gate_probe(model: keras.Model) -> keras.Model | None:
    """A Functional model from ``model``'s inputs to ``{mixture name: gate weights}`` (None without
    mixtures)."""
    found = mixtures(model)
    if not found:
        return None
    outputs = {layer.name: layer.input[1] for layer in found}
    return keras.Model(model._inputs_struct, outputs, name=f"{model.name}__gates")


def _stacks(model: keras.Model) -> dict[str, int]:
    """``{mixture name: index of its expert stack}``: mixtures reading the same expert tensor share one."""
    seen: dict[int, int] = {}
    groups = {}
    for layer in mixtures(model):
        key = id(layer.input[0])
        groups[layer.name] = seen.setdefault(key, len(seen))
    return groups


def gate_usage(model: keras.Model, batches: Any, *, max_batches: int | None = 50) -> dict[str, Any]:
    """The mean gate weight per expert of every mixture of ``model`` over ``batches``.

    Args:
        model: a model with gated mixtures (MMoE, OMoE, CGC, PLE, ...).
        batches: a ``tf.data.Dataset`` (or iterable) of ``(x, y)`` or ``(x, y, sample_weight)`` batches.
        max_batches: read at most this many batches (None: all).

    Returns:
        ``{"mixtures": {name: [mean weight of expert e, ...]}, "stacks": {name: stack index},
        "examples": n}``; empty ``mixtures`` for a model without experts.
    """
    probe = gate_probe(model)
    if probe is None:
        return {"mixtures": {}, "stacks": {}, "examples": 0}
    sums: dict[str, np.ndarray] = {}
    count = 0
    for i, batch in enumerate(batches):
        if max_batches is not None and i >= max_batches:
            break
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        weights = probe(x, training=False)
        for name, value in weights.items():
            array = np.asarray(keras.ops.convert_to_numpy(value), dtype=np.float64)
            sums[name] = sums.get(name, 0.0) + array.sum(axis=0)
        count += int(array.shape[0])
    if count == 0:
        raise ValueError("Expected at least one batch to measure the gates on. Received none.")
    usage = {name: (total / count).tolist() for name, total in sums.items()}
    return {"mixtures": usage, "stacks": _stacks(model), "examples": count}


def collapse_warnings(
    usage: Mapping[str, Any], *, dominant: float = DOMINANT, unused: float = UNUSED
) -> list[str]:
    """The collapse / unused-expert warnings of :func:`gate_usage`'s result (see the module docstring)."""
    by_stack: dict[int, list[str]] = {}
    for name, stack in usage.get("stacks", {}).items():
        by_stack.setdefault(int(stack), []).append(name)
    warnings = []
    for names in by_stack.values():
        rows = np.array([usage["mixtures"][n] for n in names], dtype=np.float64)
        listed = ", ".join(names)
        for expert in range(rows.shape[1]):
            column = rows[:, expert]
            if np.all(column > dominant):
                warnings.append(
                    f"experts collapsed: expert {expert} takes > {dominant:.0%} of every gate over its "
                    f"experts ({listed}; {', '.join(f'{v:.2f}' for v in column)})"
                )
            elif np.all(column < unused):
                warnings.append(
                    f"expert {expert} is never used: < {unused:.0%} of every gate over its experts ({listed})"
                )
    return warnings


__all__ = ["DOMINANT", "UNUSED", "collapse_warnings", "gate_probe", "gate_usage", "mixtures"]
