"""Multi-task data sets, their containers and task sampling.

Every loader returns a `MultiTaskDataset` (tasks + train / validation / test `Split`s, labels as
``{task name: float32 array}`` with NaN for missing labels). `DATASETS` maps the names recipes use to loaders.

Importing this package registers our TFDS builders (``mtl_census``, ``mtl_synthetic_mmoe``; see
:mod:`mtl_keras.data.tfds_builders`), and `load_tfds` reads any TFDS data set with several label features.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mtl_keras._registry import suggest
from mtl_keras.data.base import FEATURE_KINDS, MultiTaskDataset, Split, split_validation
from mtl_keras.data.census import ChecksumError, download_census, load_census
from mtl_keras.data.digits import multidigits, multimnist
from mtl_keras.data.sampling import TemperatureSampler, temperature_probabilities
from mtl_keras.data.synthetic import gradnorm_toy, sincos, synthetic_mmoe
from mtl_keras.data.tfds_builders import CensusConfig, MtlCensus, MtlSyntheticMmoe, SyntheticMmoeConfig
from mtl_keras.data.tfds_loader import load_tfds

#: Data set name -> loader (keyword arguments of the loader are the recipe's data options).
DATASETS: dict[str, Callable[..., MultiTaskDataset]] = {
    "census": load_census,
    "synthetic_mmoe": synthetic_mmoe,
    "sincos": sincos,
    "gradnorm_toy": gradnorm_toy,
    "multidigits": multidigits,
    "multimnist": multimnist,
    "tfds": load_tfds,
}


def load_dataset(name: str, /, **options: Any) -> MultiTaskDataset:
    """Load a data set by its `DATASETS` name, e.g. ``load_dataset("synthetic_mmoe", p=0.5, seed=1)`` or
    ``load_dataset("tfds", name="mnist", tasks={"digit": {"feature": "label"}})``."""
    if name not in DATASETS:
        raise ValueError(
            f"Unknown data set {name!r}. Expected one of {sorted(DATASETS)}."
            + suggest(str(name), sorted(DATASETS))
        )
    return DATASETS[name](**options)


__all__ = [
    "DATASETS",
    "FEATURE_KINDS",
    "CensusConfig",
    "ChecksumError",
    "MtlCensus",
    "MtlSyntheticMmoe",
    "MultiTaskDataset",
    "Split",
    "SyntheticMmoeConfig",
    "TemperatureSampler",
    "download_census",
    "gradnorm_toy",
    "load_census",
    "load_dataset",
    "load_tfds",
    "multidigits",
    "multimnist",
    "sincos",
    "split_validation",
    "synthetic_mmoe",
    "temperature_probabilities",
]
