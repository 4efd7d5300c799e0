"""Monitoring a served model: the training feature statistics an export carries, and skew against them."""

from mtl_keras.monitoring.feature_statistics import feature_statistics, read_feature_statistics
from mtl_keras.monitoring.skew import ALARM, WARN, check_skew, population_stability_index

__all__ = [
    "ALARM",
    "WARN",
    "check_skew",
    "feature_statistics",
    "population_stability_index",
    "read_feature_statistics",
]
