"""A discriminative learning rate: some variables (a pretrained backbone) step with ``multiplier`` × the
optimizer's learning rate, the rest with the learning rate itself.

The optimizer's per-variable ``update_step(gradient, variable, learning_rate)`` is wrapped so that it receives
``multiplier * learning_rate`` for the chosen variables. Every Keras optimizer's step is linear in the
learning rate it is handed (SGD with or without momentum, Adam, AdamW's adaptive part, RMSprop), so the
chosen variables' update is exactly ``multiplier`` × what it would have been — unlike scaling their
gradients, which Adam's normalisation undoes. The weighting, the gradient aggregator and the replicas'
all-reduce act on the gradients before this point, so it composes with every balancer and every strategy
(variables are matched by the optimizer's own key, which resolves a replica's copy to its distributed
variable). AdamW's decoupled weight decay uses the optimizer's learning rate for every variable.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras

#: The attribute of a wrapped optimizer holding ``(keys of the chosen variables, multiplier)``.
_ATTRIBUTE = "_mtl_discriminative"


def scale_learning_rate(
    optimizer: keras.optimizers.Optimizer, variables: Sequence[Any], multiplier: float
) -> None:
    """Make ``optimizer`` step ``variables`` with ``multiplier`` × its learning rate (call once per optimizer;
    a second call replaces the first's variables and multiplier)."""
    if isinstance(multiplier, bool) or not isinstance(multiplier, (int, float)) or not multiplier > 0:
        raise ValueError(
            f"Expected `multiplier` to be a positive number. Received: multiplier={multiplier!r}"
        )
    keys = {optimizer._var_key(v) for v in variables}
    already = getattr(optimizer, _ATTRIBUTE, None)
    object.__setattr__(optimizer, _ATTRIBUTE, (keys, float(multiplier)))
    if already is not None:
        return
    update_step = optimizer.update_step

    def scaled_update_step(gradient: Any, variable: Any, learning_rate: Any) -> Any:
        chosen, factor = getattr(optimizer, _ATTRIBUTE)
        if optimizer._var_key(variable) in chosen:
            learning_rate = learning_rate * factor
        return update_step(gradient, variable, learning_rate)

    object.__setattr__(optimizer, "update_step", scaled_update_step)


def learning_rate_multiplier(optimizer: keras.optimizers.Optimizer, variable: Any) -> float:
    """The multiplier ``optimizer`` applies to ``variable``'s learning rate (1.0 when none)."""
    chosen = getattr(optimizer, _ATTRIBUTE, None)
    if chosen is None or optimizer._var_key(variable) not in chosen[0]:
        return 1.0
    return chosen[1]


__all__ = ["learning_rate_multiplier", "scale_learning_rate"]
