"""Task balancing: loss weightings and gradient aggregators, composable (``"uncertainty+pcgrad"``).

``mtl_keras.balancers.get(name, **options)`` returns one registered balancer object.
"""

from mtl_keras.balancers import aggregators as aggregators
from mtl_keras.balancers import weightings as weightings
from mtl_keras.balancers.base import AGGREGATORS, WEIGHTINGS, Aggregator, NormScope, Weighting
from mtl_keras.balancers.compose import Balancer, Level, get, names, resolve, split_name

__all__ = [
    "AGGREGATORS",
    "WEIGHTINGS",
    "Aggregator",
    "Balancer",
    "Level",
    "NormScope",
    "Weighting",
    "get",
    "names",
    "resolve",
    "split_name",
]
