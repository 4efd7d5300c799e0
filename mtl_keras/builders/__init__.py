"""Functional-API builders, one per architecture; each returns a MultiTaskModel with dict outputs."""

from mtl_keras.builders.catalog import ARCHITECTURES, get_builder, names
from mtl_keras.builders.esmm import esmm, esmm_labels
from mtl_keras.builders.hard_sharing import hard_sharing
from mtl_keras.builders.inputs import RawFeatures
from mtl_keras.builders.mmoe import mmoe, omoe
from mtl_keras.builders.ple import cgc, ple
from mtl_keras.builders.single_task import single_task

__all__ = [
    "ARCHITECTURES",
    "RawFeatures",
    "cgc",
    "esmm",
    "esmm_labels",
    "get_builder",
    "hard_sharing",
    "mmoe",
    "names",
    "omoe",
    "ple",
    "single_task",
]
