"""Functional-API builders, one per architecture; each returns a MultiTaskModel with dict outputs."""

from mtl_keras.builders.aitm import aitm
from mtl_keras.builders.backbones import Backbone, keras_application
from mtl_keras.builders.catalog import ARCHITECTURES, get_builder, names
from mtl_keras.builders.cross_stitch import cross_stitch
from mtl_keras.builders.escm2 import escm2, escm2_labels
from mtl_keras.builders.esmm import esmm, esmm_labels
from mtl_keras.builders.hard_sharing import hard_sharing
from mtl_keras.builders.inputs import RawFeatures
from mtl_keras.builders.keras_hub_backbone import keras_hub_backbone
from mtl_keras.builders.mmoe import mmoe, omoe
from mtl_keras.builders.mtan import mtan
from mtl_keras.builders.ple import cgc, ple
from mtl_keras.builders.shared_private import shared_private
from mtl_keras.builders.single_task import single_task
from mtl_keras.builders.sluice import sluice
from mtl_keras.builders.soft_sharing import soft_sharing

__all__ = [
    "ARCHITECTURES",
    "Backbone",
    "RawFeatures",
    "aitm",
    "cgc",
    "cross_stitch",
    "escm2",
    "escm2_labels",
    "esmm",
    "esmm_labels",
    "get_builder",
    "hard_sharing",
    "keras_application",
    "keras_hub_backbone",
    "mmoe",
    "mtan",
    "names",
    "omoe",
    "ple",
    "shared_private",
    "single_task",
    "sluice",
    "soft_sharing",
]
