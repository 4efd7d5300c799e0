"""The DSelect-k gate (Hazimeh et al., "DSelect-k: Differentiable Selection in the Mixture of Experts with
Applications to Multi-Task Learning", NeurIPS 2021): a differentiable top-k choice among experts.

With ``n`` experts and ``m = max(1, ⌈log₂ n⌉)`` bits, a *single expert selector* is a vector ``z ∈ R^m``.
Each bit is relaxed by the cubic smooth-step ``S`` (``γ`` its width)::

    S(t) = 0                                   if t <= -γ/2
           -2/γ³ · t³ + 3/(2γ) · t + 1/2       if -γ/2 <= t <= γ/2
           1                                   if t >= γ/2

and the selector puts weight ``r_c(z) = Π_j S(z_j)^{b_cj} (1 − S(z_j))^{1 − b_cj}`` on code ``c``, with
``b_c`` the binary encoding of ``c`` (bit ``j`` of ``c``, least significant first); these weights sum to 1
over the ``2^m`` codes. The gate has ``k`` selectors ``z⁽¹⁾ … z⁽ᵏ⁾`` and mixes them with ``softmax(α)``:
``q = Σ_i softmax(α)_i · r(z⁽ⁱ⁾)``. Both of the paper's forms are here: the *per-example* gate
(``per_example=True``, the default), where ``Z = W x + b`` and ``α = A x + a`` are linear maps of the gate's
input as an MMoE gate's logits are, and the *static* gate, where ``Z`` and ``α`` are variables (the same
choice of experts for every example).

Once every ``S(z_j)`` is 0 or 1 (``|z_j| >= γ/2``) each selector picks one expert and the gate is exactly
sparse: at most ``k`` experts get a non-zero weight (fewer when two selectors pick the same one). The
paper's entropy regulariser pushes the selectors there: ``entropy_weight · Σ_i H(r(z⁽ⁱ⁾))`` (natural log,
averaged over the batch for the per-example gate), added with ``add_loss``. A static gate converges to
exactly ``k`` selections; a per-example gate is exactly sparse only on the examples whose selector logits
have left ``(−γ/2, γ/2)`` (docs/methods.md has what we measured).

*Hardening* makes every example exactly sparse. With ``Z = W x + b`` every bit has a hyperplane
``W_j x + b_j = 0`` in the input space and the examples within ``γ / (2‖W_j‖)`` of it are not binary; the
entropy regulariser narrows that band (it grows ``‖W_j‖``) but cannot empty it unless the data have a
margin there. :meth:`DSelectKGate.harden` replaces the smooth-step by its ``γ → 0`` limit, the step
``1[t > 0]``: an example that is already binary keeps its selection, one inside the band has each bit
rounded to the side its logit is on, and each selector then picks exactly one expert for every input
(seen or not). The logits get no gradient once hardened (the step is flat), so training after it fine-tunes
the experts, the towers and ``α`` with the routing fixed; :class:`~mtl_keras.callbacks.HardenDSelectK`
hardens every gate of a model at a chosen epoch. The flag is a non-trainable variable, saved with the
weights.

When ``n`` is not a power of two, the ``2^m − n`` spare codes are folded onto experts: code ``c`` is
expert ``c mod n`` (its weight is added there), so the gate's weights still sum to 1 and a converged
selector still picks exactly one expert. (The paper assumes ``n`` a power of two for the encoding; this
fold is our choice.)
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
from keras import ops

from mtl_keras._registry import serializable
from mtl_keras.layers._checks import check_non_negative, check_positive_int


def smooth_step(t: Any, gamma: float) -> Any:
    """The cubic smooth-step of width ``gamma``: 0 below ``-gamma/2``, 1 above ``gamma/2``, C¹ in between."""
    half = gamma / 2.0
    cubic = -2.0 / gamma**3 * t**3 + 3.0 / (2.0 * gamma) * t + 0.5
    return ops.where(t <= -half, ops.zeros_like(t), ops.where(t >= half, ops.ones_like(t), cubic))


def binary_codes(num_bits: int) -> np.ndarray:
    """``(2^num_bits, num_bits)`` 0/1 matrix: row ``c`` is the binary encoding of ``c``, least significant bit first."""
    codes = np.arange(2**num_bits)[:, None]
    return ((codes >> np.arange(num_bits)[None, :]) & 1).astype("float32")


def num_bits(num_experts: int) -> int:
    """``m = max(1, ⌈log₂ n⌉)``: the bits of one selector."""
    return max(1, math.ceil(math.log2(num_experts)))


@serializable
class DSelectKGate(keras.layers.Layer):
    """A DSelect-k gate: (batch, d) → (batch, num_experts) weights that sum to 1, at most ``k`` non-zero
    once the selectors have converged.

    Args:
        num_experts: number of experts the gate mixes.
        k: number of selectors (the most experts the converged gate uses).
        gamma: width of the smooth-step; a selector's bit is binary once ``|z_j| >= gamma / 2``.
        entropy_weight: weight of the entropy regulariser (0: none, no loss is added).
        per_example: selectors computed from the input (True) or learned once for all examples (False).

    The selector logits are initialised in the smooth-step's open interval (bias, or the static logits,
    uniform in ``(−0.9 γ/2, 0.9 γ/2)``; a small kernel), so every bit starts with a gradient. Computed in float32; the
    weights are cast to the compute dtype.
    """

    def __init__(
        self,
        num_experts: int,
        k: int = 2,
        gamma: float = 1.0,
        entropy_weight: float = 0.1,
        per_example: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.num_experts = check_positive_int(num_experts, "num_experts")
        self.k = check_positive_int(k, "k")
        if self.k > self.num_experts:
            raise ValueError(
                f"Expected `k` to be at most the number of experts ({self.num_experts}). Received: k={k!r}"
            )
        if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not float(gamma) > 0:
            raise ValueError(f"Expected `gamma` to be a positive number. Received: gamma={gamma!r}")
        self.gamma = float(gamma)
        self.entropy_weight = check_non_negative(entropy_weight, "entropy_weight")
        if not isinstance(per_example, bool):
            raise ValueError(
                f"Expected `per_example` to be True or False. Received: per_example={per_example!r}"
            )
        self.per_example = per_example
        self.num_bits = num_bits(self.num_experts)
        half = self.gamma / 2.0
        self._logit_init = keras.initializers.RandomUniform(-0.9 * half, 0.9 * half)
        if per_example:
            self.selectors = keras.layers.Dense(
                self.k * self.num_bits,
                kernel_initializer=keras.initializers.RandomUniform(-0.05 * half, 0.05 * half),
                bias_initializer=self._logit_init,
                dtype=self.dtype_policy,
                name="selectors",
            )
            self.selector_weights = keras.layers.Dense(
                self.k, dtype=self.dtype_policy, name="selector_weights"
            )
        codes = binary_codes(self.num_bits)
        fold = np.zeros((len(codes), self.num_experts), dtype="float32")
        fold[np.arange(len(codes)), np.arange(len(codes)) % self.num_experts] = 1.0
        self._codes, self._fold = codes, fold

    def build(self, input_shape: Any) -> None:
        # 1.0 once hardened (the smooth-step replaced by the step 1[t > 0]); a variable, so that a compiled
        # train step reads it and the saved weights keep it.
        self.hardened = self.add_weight(
            shape=(), initializer="zeros", dtype="float32", trainable=False, name="hardened"
        )
        if self.per_example:
            self.selectors.build(input_shape)
            self.selector_weights.build(input_shape)
        else:
            self.static_selectors = self.add_weight(
                shape=(self.k, self.num_bits), initializer=self._logit_init, name="static_selectors"
            )
            self.static_selector_weights = self.add_weight(
                shape=(self.k,), initializer="zeros", name="static_selector_weights"
            )

    def _logits(self, inputs: Any) -> tuple[Any, Any]:
        """Selector logits (batch or 1, k, m) and selector-weight logits (batch or 1, k), in float32."""
        if self.per_example:
            z = ops.cast(self.selectors(inputs), "float32")
            return ops.reshape(z, (-1, self.k, self.num_bits)), ops.cast(
                self.selector_weights(inputs), "float32"
            )
        z = ops.cast(self.static_selectors, "float32")[None]
        return z, ops.cast(self.static_selector_weights, "float32")[None]

    def code_weights(self, inputs: Any) -> Any:
        """``r(z⁽ⁱ⁾)`` of every selector: (batch, k, 2^m) weights over the codes (batch 1 for a static gate),
        in float32."""
        z, _ = self._logits(inputs)
        z = z[:, :, None, :]
        step = ops.cast(z > 0, "float32")
        s = ops.where(self.hardened > 0.5, step, smooth_step(z, self.gamma))
        codes = ops.convert_to_tensor(self._codes)  # (2^m, m)
        per_bit = codes * s + (1.0 - codes) * (1.0 - s)  # (batch, k, 2^m, m)
        return ops.prod(per_bit, axis=-1)

    def harden(self, hard: bool = True) -> None:
        """Replace the smooth-step by the step ``1[t > 0]`` (``hard=False``: back to the smooth-step). A
        hardened gate gives every example at most ``k`` non-zero weights; see the module docstring."""
        if not isinstance(hard, bool):
            raise ValueError(f"Expected `hard` to be True or False. Received: hard={hard!r}")
        if not self.built:
            raise ValueError(f"Expected the DSelect-k gate {self.name!r} to be built before `harden`.")
        self.hardened.assign(1.0 if hard else 0.0)

    @property
    def is_hard(self) -> bool:
        """Whether the gate is hardened (False before it is built)."""
        return bool(self.built and float(keras.ops.convert_to_numpy(self.hardened)) > 0.5)

    def call(self, inputs: Any) -> Any:
        r = self.code_weights(inputs)
        if self.entropy_weight > 0:
            positive = r > 0
            logs = ops.log(ops.where(positive, r, ops.ones_like(r)))  # no log(0): its gradient would be NaN
            entropy = -ops.sum(ops.where(positive, r * logs, ops.zeros_like(r)), axis=(1, 2))
            self.add_loss(self.entropy_weight * ops.mean(entropy))
        logits = self._logits(inputs)[1]
        # softmax(α) over k selectors; with one selector it is 1.
        alpha = ops.softmax(logits, axis=-1) if self.k > 1 else ops.ones_like(logits)
        mixed = ops.einsum("bk,bkc->bc", alpha, r)
        weights = ops.matmul(mixed, ops.convert_to_tensor(self._fold))
        if not self.per_example:  # the same weights for every example
            weights = ops.broadcast_to(weights, (ops.shape(inputs)[0], self.num_experts))
        return ops.cast(weights, self.compute_dtype)

    def compute_output_shape(self, input_shape: Any) -> tuple[Any, ...]:
        return (input_shape[0], self.num_experts)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "num_experts": self.num_experts,
            "k": self.k,
            "gamma": self.gamma,
            "entropy_weight": self.entropy_weight,
            "per_example": self.per_example,
        }
