"""Helpers shared by the loss weightings."""

from __future__ import annotations

import tensorflow as tf


def masked_softmax(logits: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """softmax of ``logits`` over the entries where ``mask`` is true, 0 elsewhere (all 0 for an empty mask)."""
    shifted = logits - tf.reduce_max(tf.where(mask, logits, tf.fill(tf.shape(logits), -1e30)))
    exp = tf.where(mask, tf.exp(tf.minimum(shifted, 0.0)), tf.zeros_like(logits))
    return tf.math.divide_no_nan(exp, tf.reduce_sum(exp))
