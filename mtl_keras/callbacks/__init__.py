"""Keras callbacks for multi-task training: per-task / composite early stopping, gradient-conflict logging."""

from mtl_keras.callbacks.composite_early_stopping import CompositeEarlyStopping
from mtl_keras.callbacks.gradient_conflict_monitor import GradientConflictMonitor
from mtl_keras.callbacks.per_task_early_stopping import PerTaskEarlyStopping, task_head_variables

__all__ = ["CompositeEarlyStopping", "GradientConflictMonitor", "PerTaskEarlyStopping", "task_head_variables"]
