"""Gradient aggregators: map the (T, P) Jacobian of the task gradients to one update direction.

One class per file, each registered in :data:`mtl_keras.balancers.base.AGGREGATORS` under its name.
"""

from mtl_keras.balancers.aggregators.aligned_mtl import AlignedMTL
from mtl_keras.balancers.aggregators.cagrad import CAGrad
from mtl_keras.balancers.aggregators.config import ConFIG
from mtl_keras.balancers.aggregators.dualproj import DualProj
from mtl_keras.balancers.aggregators.epo import EPO
from mtl_keras.balancers.aggregators.fairgrad import FairGrad
from mtl_keras.balancers.aggregators.graddrop import GradDrop
from mtl_keras.balancers.aggregators.gradvac import GradVac
from mtl_keras.balancers.aggregators.imtl import IMTL
from mtl_keras.balancers.aggregators.mean import Mean
from mtl_keras.balancers.aggregators.mgda import MGDA
from mtl_keras.balancers.aggregators.moco import MoCo
from mtl_keras.balancers.aggregators.modo import MoDo
from mtl_keras.balancers.aggregators.nash_mtl import NashMTL
from mtl_keras.balancers.aggregators.pcgrad import PCGrad
from mtl_keras.balancers.aggregators.sdmgrad import SDMGrad
from mtl_keras.balancers.aggregators.sum import Sum
from mtl_keras.balancers.aggregators.upgrad import UPGrad

__all__ = [
    "EPO",
    "IMTL",
    "MGDA",
    "AlignedMTL",
    "CAGrad",
    "ConFIG",
    "DualProj",
    "FairGrad",
    "GradDrop",
    "GradVac",
    "Mean",
    "MoCo",
    "MoDo",
    "NashMTL",
    "PCGrad",
    "SDMGrad",
    "Sum",
    "UPGrad",
]
