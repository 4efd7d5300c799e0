"""Loss-level weightings, one per file."""

from mtl_keras.balancers.weightings.static import Static

__all__ = ["Static"]
