"""Strategy selection: one place where models, optimizers and balancer state are created in scope."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import tensorflow as tf

T = TypeVar("T")

STRATEGIES: dict[str, Callable[[], tf.distribute.Strategy]] = {
    "default": tf.distribute.get_strategy,
    "mirrored": tf.distribute.MirroredStrategy,
}


def make_strategy(name: str = "default") -> tf.distribute.Strategy:
    """``"default"`` (one device) or ``"mirrored"`` (every local GPU, or the CPU when there is none)."""
    if name not in STRATEGIES:
        raise ValueError(f"Unknown strategy {name!r}. Expected one of {sorted(STRATEGIES)}.")
    return STRATEGIES[name]()


def in_scope(strategy: tf.distribute.Strategy, build: Callable[[], T]) -> T:
    """Run ``build`` (which creates the model, compiles it, builds its balancer) inside ``strategy.scope()``."""
    with strategy.scope():
        return build()


__all__ = ["STRATEGIES", "in_scope", "make_strategy"]
