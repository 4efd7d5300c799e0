"""`BalancerState`: the layer that holds a model's balancer variables, so they are trained and saved."""

from __future__ import annotations

import logging
from typing import Any

import keras

from mtl_keras._registry import serializable

logger = logging.getLogger(__name__)


@serializable
class BalancerState(keras.layers.Layer):
    """A container layer for the variables of a model's balancer: the weighting's, then the aggregator's
    state (which files written before it was saved do not hold)."""

    def adopt(self, variables: list[Any], aggregator_state: list[Any] | None = None) -> None:
        for variable in list(self._trainable_variables) + list(self._non_trainable_variables):
            self._untrack_variable(variable)
        self._num_aggregator_state = len(aggregator_state or [])
        for variable in list(variables) + list(aggregator_state or []):
            self._track_variable(variable)

    def load_own_variables(self, store: Any) -> None:
        all_vars = self._trainable_variables + self._non_trainable_variables
        without_aggregator = len(all_vars) - getattr(self, "_num_aggregator_state", 0)
        if len(store.keys()) == without_aggregator < len(all_vars):
            # The aggregator's state is non-trainable and adopted last, so it is the tail of all_vars.
            logger.info(
                "The saved model holds no state of its gradient aggregator (saved before that state was "
                "saved): the aggregator starts from its initial state."
            )
            for i, variable in enumerate(all_vars[:without_aggregator]):
                variable.assign(store[f"{i}"])
            return
        super().load_own_variables(store)
