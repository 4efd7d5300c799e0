"""Distribution: strategy selection (default, mirrored, multi-worker), the multi-worker training loop,
exact checkpoints for ``--resume``. See docs/distributed.md."""

from mtl_keras.distribute.multi_worker import WorkerLost
from mtl_keras.distribute.strategy import STRATEGIES, in_scope, make_strategy

__all__ = ["STRATEGIES", "WorkerLost", "in_scope", "make_strategy"]
