"""Losses beyond a head's own: the counterfactual CVR risk of ESCM², distillation of a teacher's outputs
(LwF) and the EWC penalty, the last two as loss terms for ``compile(extra_losses=[...])``."""

from mtl_keras.losses.counterfactual_cvr import VARIANTS, CounterfactualCVR
from mtl_keras.losses.distillation import Distillation, distillation_loss
from mtl_keras.losses.ewc import EWCPenalty, diagonal_fisher

__all__ = [
    "VARIANTS",
    "CounterfactualCVR",
    "Distillation",
    "EWCPenalty",
    "diagonal_fisher",
    "distillation_loss",
]
