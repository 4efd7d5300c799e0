"""Aligned-MTL: align the principal components of the Jacobian (condition number 1)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from mtl_keras.balancers.aggregators._common import active_rows, normalize
from mtl_keras.balancers.base import AGGREGATORS, Aggregator


@AGGREGATORS.register("aligned_mtl")
class AlignedMTL(Aggregator):
    """Aligned-MTL (Senushkin et al., "Independent Component Alignment for Multi-Task Learning", CVPR 2023).

    With ``G = J Jᵀ = V Λ Vᵀ`` restricted to its numerical rank R, the aligned Jacobian is ``Ĵ = B J`` with
    ``B = √λ_R · V Λ^{-1/2} Vᵀ`` (λ_R the smallest kept eigenvalue): the closest matrix to J whose non-zero
    singular values all equal ``σ_min`` (condition number 1; equivalently ``Ĵ = σ_min U Wᵀ`` for the SVD
    ``J = U Σ Wᵀ``). The update is the SUM of the aligned task gradients, ``1ᵀ B J`` (unit task weights, the
    paper's ``scale_mode="min"`` as in the official code and LibMTL).

    Eigenvalues at most ``λ_max · T · eps(float32)`` are dropped (the rank test of the official code, at
    the resolution of float32 gradients whatever the dtype of J), so a
    zero row (absent task) falls out of the range of G and gets weight 0 without affecting the others.
    All-zero J gives a zero update.
    """

    gramian_based = True

    def _row_weights(self, g: tf.Tensor) -> tf.Tensor:
        assert self.num_tasks is not None
        h, _ = normalize(g, active_rows(g))
        eigenvalues, vectors = tf.linalg.eigh(h)
        eps = float(np.finfo(np.float32).eps)
        kept = eigenvalues > tf.reduce_max(eigenvalues) * self.num_tasks * eps
        smallest = tf.reduce_min(
            tf.where(kept, eigenvalues, tf.fill(tf.shape(eigenvalues), tf.constant(np.inf, tf.float64)))
        )
        smallest = tf.where(tf.reduce_any(kept), smallest, tf.zeros_like(smallest))
        inv_sqrt = tf.where(kept, tf.math.rsqrt(tf.where(kept, eigenvalues, tf.ones_like(eigenvalues))), 0.0)
        align = tf.sqrt(smallest) * tf.matmul(vectors * inv_sqrt[None, :], vectors, transpose_b=True)
        return tf.reduce_sum(align, axis=0)
