"""Loss-level weightings, one per file."""

from mtl_keras.balancers.weightings.db_mtl import DBMTL
from mtl_keras.balancers.weightings.dwa import DWA
from mtl_keras.balancers.weightings.excess_mtl import ExcessMTL
from mtl_keras.balancers.weightings.famo import FAMO
from mtl_keras.balancers.weightings.gradnorm import GradNorm
from mtl_keras.balancers.weightings.inverse_validation import InverseValidation
from mtl_keras.balancers.weightings.rlw import RLW
from mtl_keras.balancers.weightings.static import Static
from mtl_keras.balancers.weightings.stch import STCH
from mtl_keras.balancers.weightings.uncertainty import Uncertainty

__all__ = [
    "DBMTL",
    "DWA",
    "FAMO",
    "RLW",
    "STCH",
    "ExcessMTL",
    "GradNorm",
    "InverseValidation",
    "Static",
    "Uncertainty",
]
