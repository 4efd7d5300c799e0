"""Losses that read several columns of one head (the counterfactual CVR risk of ESCM²)."""

from mtl_keras.losses.counterfactual_cvr import VARIANTS, CounterfactualCVR

__all__ = ["VARIANTS", "CounterfactualCVR"]
