"""`BalancerState`: the layer that holds a model's balancer variables, so they are trained and saved."""

from __future__ import annotations

from typing import Any

import keras

from mtl_keras._registry import serializable


@serializable
class BalancerState(keras.layers.Layer):
    """A container layer for the variables of a model's balancer."""

    def adopt(self, variables: list[Any]) -> None:
        for variable in list(self._trainable_variables) + list(self._non_trainable_variables):
            self._untrack_variable(variable)
        for variable in variables:
            self._track_variable(variable)
