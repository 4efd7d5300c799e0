"""Task balancing: loss weightings and gradient aggregators, composable (``"uncertainty+pcgrad"``).

``mtl_keras.balancers.get(name, **options)`` returns one registered balancer object.
"""

from mtl_keras.balancers import aggregators as aggregators
from mtl_keras.balancers import weightings as weightings
from mtl_keras.balancers.base import AGGREGATORS, WEIGHTINGS, Aggregator, Weighting
from mtl_keras.balancers.compose import Balancer, get, names, resolve

__all__ = ["AGGREGATORS", "WEIGHTINGS", "Aggregator", "Balancer", "Weighting", "get", "names", "resolve"]
