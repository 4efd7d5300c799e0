"""Multi-task data sets, their containers and task sampling.

The bundled loaders return a `MultiTaskDataset` (tasks + train / validation / test `Split`s in memory, labels
as ``{task name: float32 array}`` with NaN for missing labels). A user's own table comes through
`from_csv`, `from_parquet`, `from_tfrecord`, `from_dataframe` or `from_dataset` as a `StreamedDataset`
(checked in one streaming pass, then streamed through ``tf.data``). Both are read by training through the
same methods (``num_examples``, ``input_spec``, ``batches``, ``training_stream``, ``examples``).
`DATASETS` maps the names recipes use to loaders (``csv``, ``parquet`` and ``tfrecord`` among them).

Importing this package registers our TFDS builders (``mtl_census``, ``mtl_synthetic_mmoe``; see
:mod:`mtl_keras.data.tfds_builders`), and `load_tfds` reads any TFDS data set with several label features.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mtl_keras._registry import suggest
from mtl_keras.data.base import FEATURE_KINDS, MultiTaskDataset, Split, split_validation
from mtl_keras.data.census import ChecksumError, download_census, load_census
from mtl_keras.data.census_kdd import download_census_kdd, load_census_kdd
from mtl_keras.data.click_conversion import ClickConversionDataset, click_conversion
from mtl_keras.data.digits import multidigits, multimnist
from mtl_keras.data.mixture import MixedDataset, per_task
from mtl_keras.data.sampling import TemperatureSampler, temperature_probabilities
from mtl_keras.data.sources import from_csv, from_dataframe, from_dataset, from_parquet, from_tfrecord
from mtl_keras.data.streamed import StreamedDataset
from mtl_keras.data.synthetic import gradnorm_toy, sincos, synthetic_mmoe
from mtl_keras.data.synthetic_text import synthetic_text
from mtl_keras.data.tfds_builders import CensusConfig, MtlCensus, MtlSyntheticMmoe, SyntheticMmoeConfig
from mtl_keras.data.tfds_loader import load_tfds

#: Data set name -> loader (keyword arguments of the loader are the recipe's data options).
DATASETS: dict[str, Callable[..., MultiTaskDataset | StreamedDataset | MixedDataset]] = {
    "census": load_census,
    "census_kdd": load_census_kdd,
    "click_conversion": click_conversion,
    "synthetic_mmoe": synthetic_mmoe,
    "sincos": sincos,
    "synthetic_text": synthetic_text,
    "gradnorm_toy": gradnorm_toy,
    "multidigits": multidigits,
    "multimnist": multimnist,
    "tfds": load_tfds,
    "csv": from_csv,
    "parquet": from_parquet,
    "tfrecord": from_tfrecord,
    "per_task": per_task,
}

#: What training reads: a bundled data set in memory or a streamed table.
AnyDataset = MultiTaskDataset | StreamedDataset | MixedDataset


def load_dataset(name: str, /, **options: Any) -> AnyDataset:
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
    "AnyDataset",
    "CensusConfig",
    "ChecksumError",
    "ClickConversionDataset",
    "MixedDataset",
    "MtlCensus",
    "MtlSyntheticMmoe",
    "MultiTaskDataset",
    "Split",
    "StreamedDataset",
    "SyntheticMmoeConfig",
    "TemperatureSampler",
    "click_conversion",
    "download_census",
    "download_census_kdd",
    "from_csv",
    "from_dataframe",
    "from_dataset",
    "from_parquet",
    "from_tfrecord",
    "gradnorm_toy",
    "load_census",
    "load_census_kdd",
    "load_dataset",
    "load_tfds",
    "multidigits",
    "multimnist",
    "per_task",
    "sincos",
    "split_validation",
    "synthetic_mmoe",
    "synthetic_text",
    "temperature_probabilities",
]
