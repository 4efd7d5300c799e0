"""GradDrop: keep, per coordinate, only the gradients of one randomly chosen sign."""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from mtl_keras.balancers.aggregators._common import next_seed, step_counter
from mtl_keras.balancers.base import AGGREGATORS, Aggregator


@AGGREGATORS.register("graddrop")
class GradDrop(Aggregator):
    """Gradient Sign Dropout (Chen et al., "Just Pick a Sign: Optimizing Deep Multitask Models with
    Gradient Sign Dropout", NeurIPS 2020).

    Per coordinate k, the positive sign purity is ``P_k = ½ (1 + Σ_i g_ik / Σ_i |g_ik|)``; with
    ``U_k ~ Uniform(0, 1)`` the mask keeps the positive entries where ``P_k > U_k`` and the negative ones
    otherwise, ``M_ik = [P_k > U_k][g_ik > 0] + [P_k < U_k][g_ik < 0]``, and the update is
    ``Σ_i (ℓ + (1 − ℓ) M_ik) g_ik`` with the leak ℓ (0 in the paper's main experiments). This is the
    variant on the gradients as given (no batch-separated sign correction by the layer input). A
    coordinate where every task has a zero gradient stays zero, so absent tasks need no special case.

    Randomness: ``U`` is drawn with ``tf.random.stateless_uniform`` seeded by ``(seed, call counter)``.

    Args:
        leak: fraction of every gradient that passes the mask (in [0, 1]; 1 gives the sum).
        seed: seeds the dropout draws.
    """

    def __init__(self, *, leak: float = 0.0, seed: int | None = None) -> None:
        super().__init__(seed=seed)
        if not 0.0 <= leak <= 1.0:
            raise ValueError(f"Expected `leak` to be in [0, 1]. Received: leak={leak}")
        self.leak = float(leak)

    def build(self, num_tasks: int) -> None:
        super().build(num_tasks)
        self.iterations = step_counter()

    def _aggregate(self, jacobian: tf.Tensor) -> tf.Tensor:
        return self._aggregate_blocks([jacobian])[0]

    def _aggregate_blocks(self, blocks: list[tf.Tensor]) -> list[tf.Tensor]:
        """Per coordinate, so block by block; one uniform draw over all P coordinates, split by block."""
        sizes = [block.shape[1:].num_elements() for block in blocks]
        uniform = tf.random.stateless_uniform(
            [sum(sizes)], seed=next_seed(self, self.iterations), dtype=blocks[0].dtype
        )
        return [
            self._drop(block, tf.reshape(part, tf.shape(block)[1:]))
            for block, part in zip(blocks, tf.split(uniform, sizes), strict=True)
        ]

    def _drop(self, block: tf.Tensor, uniform: tf.Tensor) -> tf.Tensor:
        total = tf.reduce_sum(block, axis=0)
        purity = 0.5 * (1.0 + tf.math.divide_no_nan(total, tf.reduce_sum(tf.abs(block), axis=0)))
        keep = tf.where(purity > uniform, block > 0, block < 0)
        mask = self.leak + (1.0 - self.leak) * tf.cast(keep, block.dtype)
        return tf.reduce_sum(mask * block, axis=0)

    def get_config(self) -> dict[str, Any]:
        return {"leak": self.leak, **super().get_config()}
