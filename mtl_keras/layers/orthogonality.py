"""`OrthogonalityPenalty`: concatenate shared and private features and push them to be orthogonal.

The "difference loss" of domain separation networks (Bousmalis et al., NeurIPS 2016) as used for
multi-task learning in adversarial shared-private models (Liu, Qiu & Huang, ACL 2017).
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf
from keras import ops

from mtl_keras._registry import serializable
from mtl_keras.layers._checks import check_non_negative


@serializable
class OrthogonalityPenalty(keras.layers.Layer):
    """``[shared S, private P] → concat(S, P)``, adding ``strength · ‖Sᵀ P‖_F²`` with ``add_loss``.

    ``S`` (batch, d_s) and ``P`` (batch, d_p) are the batch feature matrices (rows are examples; inputs of
    higher rank are flattened per example), so ``Sᵀ P`` is the (d_s, d_p) matrix of feature inner products
    over the batch and the penalty is zero when every shared feature is orthogonal to every private one on
    the batch. Features are used as they are (not centred or normalised), so the penalty grows with the
    batch size and the scale of the features; choose ``strength`` with the batch size in mind. One layer
    per task gives the sum over tasks ``Σ_i ‖Sᵀ P_i‖_F²`` of Liu et al. 2017.

    Args:
        strength: weight of the penalty (0 turns it off and leaves a plain concatenation).
    """

    def __init__(self, strength: float = 0.01, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.strength = check_non_negative(strength, "strength")

    def build(self, input_shape: Any) -> None:
        if (
            not isinstance(input_shape, (list, tuple))
            or len(input_shape) != 2
            or not all(isinstance(s, (list, tuple)) for s in input_shape)
        ):
            raise ValueError(
                "Expected OrthogonalityPenalty inputs to be a list [shared, private]. "
                f"Received: {input_shape!r}"
            )
        shared, private = (tuple(s) for s in input_shape)
        if shared[:-1] != private[:-1]:
            raise ValueError(
                "Expected the shared and private features to differ only in their last axis. "
                f"Received shapes {shared} and {private}."
            )

    def penalty(self, shared: Any, private: Any) -> Any:
        """``strength · ‖Sᵀ P‖_F²`` in float32."""
        batch = ops.shape(shared)[0]
        s = ops.reshape(ops.cast(shared, "float32"), (batch, -1))
        p = ops.reshape(ops.cast(private, "float32"), (batch, -1))
        product = ops.matmul(ops.transpose(s), p)
        # Under a distribution strategy SᵀP is a sum over the global batch: add the replicas' parts before
        # squaring, so the penalty (and its gradient) is the single-device one.
        context = tf.distribute.get_replica_context()
        if context is not None and context.num_replicas_in_sync > 1:
            product = context.all_reduce(tf.distribute.ReduceOp.SUM, product)
        return self.strength * ops.sum(ops.square(product))

    def call(self, inputs: Any) -> Any:
        shared, private = inputs
        if self.strength:
            self.add_loss(self.penalty(shared, private))
        return ops.concatenate([shared, ops.cast(private, shared.dtype)], axis=-1)

    def compute_output_shape(self, input_shape: Any) -> tuple[Any, ...]:
        shared, private = input_shape
        last = None if shared[-1] is None or private[-1] is None else shared[-1] + private[-1]
        return (*shared[:-1], last)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "strength": self.strength}
