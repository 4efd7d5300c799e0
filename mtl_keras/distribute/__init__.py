"""Distribution: strategy selection (multi-worker training is tracked in issue 7)."""

from mtl_keras.distribute.strategy import STRATEGIES, in_scope, make_strategy

__all__ = ["STRATEGIES", "in_scope", "make_strategy"]
