"""Keras callbacks for multi-task training: per-task / composite early stopping, gradient-conflict logging,
lookahead inter-task affinity, unfreezing a backbone at an epoch, hardening DSelect-k gates at an epoch, and a warning when the tasks' losses differ in scale."""

from mtl_keras.callbacks.composite_early_stopping import CompositeEarlyStopping
from mtl_keras.callbacks.gradient_conflict_monitor import GradientConflictMonitor
from mtl_keras.callbacks.harden_dselect_k import HardenDSelectK, dselect_k_gates
from mtl_keras.callbacks.lookahead_affinity import LookaheadAffinity
from mtl_keras.callbacks.loss_scale import LossScaleWarning, loss_scale_message
from mtl_keras.callbacks.per_task_early_stopping import (
    PerTaskEarlyStopping,
    VariableSlice,
    task_head_variables,
)
from mtl_keras.callbacks.unfreeze import UnfreezeBackbone

__all__ = [
    "CompositeEarlyStopping",
    "GradientConflictMonitor",
    "HardenDSelectK",
    "LookaheadAffinity",
    "LossScaleWarning",
    "PerTaskEarlyStopping",
    "UnfreezeBackbone",
    "VariableSlice",
    "dselect_k_gates",
    "loss_scale_message",
    "task_head_variables",
]
