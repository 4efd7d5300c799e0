"""Smooth Tchebycheff scalarisation, STCH (Lin, Zhang, Yang, Zhang & Zhang, ICML 2024)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from mtl_keras.balancers.base import WEIGHTINGS, Weighting
from mtl_keras.balancers.weightings._common import masked_softmax
from mtl_keras.option_types import NonNegativeFloat, NonNegativeInt, PositiveFloat

logger = logging.getLogger(__name__)

#: Added to every loss before its logarithm (the official code's 1e-20).
EPSILON = 1e-20


@WEIGHTINGS.register("stch")
class STCH(Weighting):
    """Minimise the smooth Tchebycheff scalarisation of the task objectives f_i,

        g(L) = T · μ · log Σ_i exp(λ_i (f_i − z_i) / μ),

    f_i = log L_i and z_i = log ẑ_i with ``log_losses=True`` (the paper's multi-task code), f_i = L_i and
    z_i = ẑ_i otherwise (the paper's formula), ẑ the ideal point in loss units, λ the preference. As μ → 0,
    g → T · max_i λ_i (f_i − z_i) (the Tchebycheff scalarisation, which reaches every Pareto-optimal point,
    also on a concave front); as μ → ∞ its gradient tends to that of the linear Σ_i λ_i f_i. The factor T
    is LibMTL's and the official code's (there λ = 1).

    The step's weights are g's gradient at the step's losses: λ_i^step = T λ_i s_i f_i'(L_i), s the softmax
    of λ_i (f_i − z_i) / μ over the tasks with labels in the step (a task without labels gets 0); the
    offsets make the logged objective (``loss``) g itself, over the tasks with labels.

    Ideal point: ``ideal_point`` when given; otherwise the model first trains ``warmup_epochs`` epochs on
    Σ_i f_i (equal weights of f), and ẑ is the epoch-mean training loss of the last warm-up epoch (as the
    official code, whose ``warmup_epoch=4`` is ``warmup_epochs=5`` here: it averages the losses of its epoch
    4, counting from 0). Not the minimum loss seen: the code uses the mean. If a task has no labels in that
    epoch the warm-up goes on until every task has an epoch mean.

    :meth:`scalarize` returns g itself, for use without a model (a Pareto-front sweep over λ).

    Args:
        preference: λ, one non-negative weight per task (not all 0), in the model's task order; ones by
            default. Only λ/μ matters in the softmax, so scaling λ is like dividing μ.
        mu: the smoothing μ > 0 (1.0 in the official code).
        ideal_point: ẑ, one value per task in loss units (positive with ``log_losses``), or None for the
            warm-up.
        warmup_epochs: epochs of warm-up when ``ideal_point`` is None (at least 1).
        log_losses: scalarise log L_i (the official multi-task code) rather than L_i.
    """

    def __init__(
        self,
        *,
        preference: Sequence[NonNegativeFloat] | None = None,
        mu: PositiveFloat = 1.0,
        ideal_point: Sequence[NonNegativeFloat] | None = None,
        warmup_epochs: NonNegativeInt = 5,
        log_losses: bool = True,
    ) -> None:
        super().__init__()
        if preference is not None:
            preference = [float(p) for p in preference]
            if any(not p >= 0 for p in preference) or not any(p > 0 for p in preference):
                raise ValueError(
                    f"Expected `preference` to be non-negative and not all 0. Received: preference={preference}"
                )
        if not mu > 0:
            raise ValueError(f"Expected `mu` to be positive. Received: mu={mu!r}")
        if ideal_point is not None:
            ideal_point = [float(z) for z in ideal_point]
            if log_losses and any(not z > 0 for z in ideal_point):
                raise ValueError(
                    "Expected a positive `ideal_point` with log_losses=True (its log is taken). "
                    f"Received: ideal_point={ideal_point}"
                )
        elif warmup_epochs < 1:
            raise ValueError(
                "Expected `warmup_epochs` >= 1 when no `ideal_point` is given (the warm-up sets it). "
                f"Received: warmup_epochs={warmup_epochs!r}"
            )
        self.preference = preference
        self.mu = float(mu)
        self.ideal_point = ideal_point
        self.warmup_epochs = int(warmup_epochs)
        self.log_losses = bool(log_losses)

    def build(self, num_tasks: int) -> None:
        for name, value in (("preference", self.preference), ("ideal_point", self.ideal_point)):
            if value is not None and len(value) != num_tasks:
                raise ValueError(
                    f"Expected `{name}` with {num_tasks} values (one per task). Received: {value}"
                )
        super().build(num_tasks)
        given = self.ideal_point is not None
        ideal = self.ideal_point if given else [1.0] * num_tasks
        self.ideal = self.add_variable(tf.constant(ideal, tf.float32), "stch_ideal_point")
        #: 1.0 once the ideal point is known (given, or after the warm-up)
        self.ready = self.add_variable(1.0 if given else 0.0, "stch_ready")
        self.epochs_seen = self.add_variable(0.0, "stch_epochs_seen")
        self.last = self.add_variable(tf.ones([num_tasks]), "stch_weights")

    def _lambda(self) -> tf.Tensor:
        assert self.num_tasks is not None
        if self.preference is None:
            return tf.ones([self.num_tasks])
        return tf.constant(self.preference, tf.float32)

    def _objectives(self, losses: tf.Tensor, zero_ideal: bool = False) -> tuple[tf.Tensor, tf.Tensor]:
        """(f − z, f'(L)) for the losses (T,); f itself with ``zero_ideal``."""
        if self.log_losses:
            f = tf.math.log(losses + EPSILON)
            return (f if zero_ideal else f - tf.math.log(self.ideal)), 1.0 / (losses + EPSILON)
        return (losses if zero_ideal else losses - self.ideal), tf.ones_like(losses)

    def weights(self) -> tf.Tensor:
        return tf.convert_to_tensor(self.last)

    def weigh(
        self, losses: tf.Tensor, *, gradient_norms: tf.Tensor | None = None, training: bool = True
    ) -> tuple[tf.Tensor, tf.Tensor]:
        losses = tf.cast(losses, tf.float32)
        present = losses > 0
        gap, derivative = self._objectives(losses)
        lam = self._lambda()
        softmax = masked_softmax(lam * gap / self.mu, present)
        stch = float(self.num_tasks or 1) * lam * softmax * derivative
        warmup = tf.where(present, derivative, tf.zeros_like(derivative))
        ready = self.ready > 0
        weights = tf.where(ready, stch, warmup)
        if training:
            self.last.assign(weights)
        # Offsets make the logged objective g itself (Σ_i f_i in the warm-up); they add no gradient.
        scaled = tf.where(present, lam * gap / self.mu, tf.fill(tf.shape(gap), -np.inf))
        value = tf.where(
            ready,
            float(self.num_tasks or 1) * self.mu * tf.reduce_logsumexp(scaled),
            tf.reduce_sum(tf.where(present, self._objectives(losses, zero_ideal=True)[0], 0.0)),
        )
        value = tf.where(tf.reduce_any(present), value, 0.0)
        offset = (value - tf.reduce_sum(weights * losses)) / float(self.num_tasks or 1)
        return weights, tf.fill(tf.shape(losses), offset)

    def scalarize(self, losses: Any) -> tf.Tensor:
        """g(L) for task losses (T,) (all present), with the current ideal point."""
        losses = tf.cast(tf.convert_to_tensor(losses), tf.float32)
        gap, _ = self._objectives(losses)
        scaled = self._lambda() * gap / self.mu
        return float(self.num_tasks or 1) * self.mu * tf.reduce_logsumexp(scaled)

    def on_epoch_end(self, epoch: int, train_losses: Any, validation_logs: dict[str, float]) -> None:
        if float(self.ready.numpy()) > 0:
            return
        seen = float(self.epochs_seen.numpy()) + 1
        self.epochs_seen.assign(seen)
        if seen < self.warmup_epochs:
            return
        means = np.asarray(train_losses, dtype=np.float64)
        if not np.all(np.isfinite(means) & (means > 0)):
            logger.warning(
                "STCH warm-up goes on: a task had no positive epoch-mean training loss (%s).", means.tolist()
            )
            return
        self.ideal.assign(means.astype("float32"))
        self.ready.assign(1.0)

    def get_config(self) -> dict[str, Any]:
        return {
            "preference": self.preference,
            "mu": self.mu,
            "ideal_point": self.ideal_point,
            "warmup_epochs": self.warmup_epochs,
            "log_losses": self.log_losses,
            **super().get_config(),
        }
