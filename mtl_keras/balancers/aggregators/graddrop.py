"""GradDrop: keep, per coordinate, only the gradients of one randomly chosen sign."""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from mtl_keras.balancers.aggregators._common import compiled, next_seed, step_counter
from mtl_keras.balancers.base import AGGREGATORS, Aggregator
from mtl_keras.option_types import Probability


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

    Randomness: ``U_k`` comes from a counter-based generator, a 32-bit integer hash of the coordinate index
    keyed by ``(seed, call counter)`` (24 random bits per coordinate), computed inside the XLA-compiled
    element-wise kernel: ``tf.random.stateless_uniform`` cost as much as the rest of the method.

    Args:
        leak: fraction of every gradient that passes the mask (in [0, 1]; 1 gives the sum).
        seed: seeds the dropout draws.
    """

    randomised = True

    def __init__(self, *, leak: Probability = 0.0, seed: int | None = None) -> None:
        super().__init__()
        self.seed = seed
        if not 0.0 <= leak <= 1.0:
            raise ValueError(f"Expected `leak` to be in [0, 1]. Received: leak={leak}")
        self.leak = float(leak)

    def build(self, num_tasks: int) -> None:
        super().build(num_tasks)
        self.iterations = step_counter()

    def _aggregate(self, jacobian: tf.Tensor) -> tf.Tensor:
        return self._aggregate_blocks([jacobian])[0]

    def _aggregate_blocks(self, blocks: list[tf.Tensor]) -> list[tf.Tensor]:
        return graddrop_blocks(blocks, next_seed(self, self.iterations), self.leak)

    def _aggregate_rows(self, rows: list[list[tf.Tensor]]) -> list[tf.Tensor]:
        blocks = [list(task_grads) for task_grads in zip(*rows, strict=True)]
        return graddrop_blocks(blocks, next_seed(self, self.iterations), self.leak)

    def get_config(self) -> dict[str, Any]:
        return {"leak": self.leak, **super().get_config()}


@compiled
def graddrop_blocks(blocks: list[Any], seed: tf.Tensor, leak: float) -> list[tf.Tensor]:
    """GradDrop per coordinate, block by block (coordinate k of the flattened J is its own random draw).

    A block is a (T, ...) tensor or the list of the T tasks' gradients of one variable. Compiled with XLA,
    which fuses the passes over each block, the stacking and the random numbers included, into one.
    """
    key_a, key_b = _keys(seed)
    results, offset = [], 0
    for block in blocks:
        if isinstance(block, list):
            block = tf.stack(block)
        # Σ_i M_ik g_ik is the sum of the positive entries where P_k > U_k and of the negative ones
        # elsewhere: two reductions over the tasks, the rest per coordinate.
        positive = tf.reduce_sum(tf.maximum(block, 0.0), axis=0)
        negative = tf.reduce_sum(tf.minimum(block, 0.0), axis=0)
        total = positive + negative
        purity = 0.5 * (1.0 + tf.math.divide_no_nan(total, positive - negative))
        size = block.shape[1:].num_elements()
        uniform = tf.reshape(counter_uniform(offset, size, key_a, key_b, block.dtype), tf.shape(total))
        kept = tf.where(purity > uniform, positive, negative)
        results.append(kept if leak == 0.0 else leak * total + (1.0 - leak) * kept)
        offset += size
    return results


_MASK32 = 0xFFFFFFFF


def _mix32(x: tf.Tensor) -> tf.Tensor:
    """A bijective 32-bit integer hash with full avalanche ("lowbias32", C. Wellons' hash prospector)."""
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, 16))
    x = x * tf.constant(0x7FEB352D, tf.uint32)
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, 15))
    x = x * tf.constant(0x846CA68B, tf.uint32)
    return tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, 16))


def _keys(seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Two 32-bit keys from the (2,) int64 stateless seed (seed, step)."""
    words = tf.cast(tf.bitwise.bitwise_and(seed, _MASK32), tf.uint32)
    high = tf.cast(tf.bitwise.right_shift(seed, 32), tf.uint32)
    key_a = _mix32(words[0] ^ _mix32(high[0] ^ tf.constant(0x9E3779B9, tf.uint32)))
    key_b = _mix32(words[1] ^ _mix32(high[1] ^ key_a))
    return key_a, key_b


def counter_uniform(offset: int, size: int, key_a: tf.Tensor, key_b: tf.Tensor, dtype: tf.DType) -> tf.Tensor:
    """Uniform [0, 1) numbers for the coordinates ``offset … offset + size − 1``: a counter-based generator
    (the coordinate index hashed twice with the call's keys), so each coordinate's draw depends only on
    (seed, step, coordinate) and fuses into the surrounding XLA kernel."""
    counter = tf.bitcast(tf.range(offset, offset + size, dtype=tf.int32), tf.uint32)
    bits = _mix32(_mix32(counter ^ key_a) + key_b)
    return tf.cast(tf.bitwise.right_shift(bits, 8), dtype) * (1.0 / 16777216.0)  # 24 random bits
