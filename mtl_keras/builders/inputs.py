"""What a builder's ``inputs`` argument may be, turned into Keras inputs and one feature tensor.

* an int ``d`` or a shape tuple: a dense vector ``(d,)`` or an image ``(H, W, C)``;
* :class:`RawFeatures`: a dict of raw named features (strings and numbers) that go through a preprocessing
  block of Keras preprocessing layers (``Normalization``, ``StringLookup``, ``IntegerLookup``) adapted on
  data, so the saved model takes raw values;
* an existing ``keras.Input`` tensor, or a dict of them.

Missing numeric values: a numeric column whose adaptation data holds NaN is normalised with the mean and
variance of its non-missing values, then :class:`~mtl_keras.layers.imputation.ImputeMissing` replaces NaN by
the (normalised) median of the non-missing values and appends a 0/1 missing-indicator feature, inside the
model, so ``predict`` and the serving export impute NaN too. Columns without NaN in the adaptation data get
no imputation layer (their graph is unchanged; a NaN sent to such a column is not imputed). A column that is
entirely missing is refused with a ``ValueError`` naming it.

Names: a feature name that is not a letter followed by letters, digits or ``_`` (e.g. ``"unit price"``,
``"a/b"``, ``"1st"``) gets a safe name (see :func:`safe_input_names`) for its ``keras.Input`` and its layers;
the model's input dict keys stay the feature names, so ``fit`` / ``predict`` take the original keys, and the
serving export uses the safe names as its signature keys.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Mapping
from typing import Any

import keras
import numpy as np

from mtl_keras._registry import suggest
from mtl_keras.layers.imputation import ImputeMissing

logger = logging.getLogger(__name__)

FEATURE_KINDS = ("numeric", "string_categorical", "integer_categorical")

_SAFE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


@dataclasses.dataclass
class RawFeatures:
    """Raw named features and the data their preprocessing layers are adapted on.

    Args:
        features: ``{name: kind}`` with kind in ``"numeric"``, ``"string_categorical"``,
            ``"integer_categorical"``.
        data: ``{name: array}`` of training values used to adapt normalisation and vocabularies. Numeric
            values may be NaN (missing; see the module docstring).
        max_tokens: cap on each categorical vocabulary (most frequent values kept; rarer ones map to OOV).
    """

    features: Mapping[str, str]
    data: Mapping[str, Any]
    max_tokens: int | None = None

    def __post_init__(self) -> None:
        if not self.features:
            raise ValueError("Expected at least one raw feature. Received: features={}")
        for name, kind in self.features.items():
            if kind not in FEATURE_KINDS:
                raise ValueError(
                    f"Expected the kind of feature {name!r} to be one of {list(FEATURE_KINDS)}. "
                    f"Received: {kind!r}." + suggest(str(kind), list(FEATURE_KINDS))
                )
            if name not in self.data:
                raise ValueError(
                    f"No adaptation data for raw feature {name!r}. Received data for {sorted(self.data)}."
                    + suggest(name, sorted(self.data))
                )


def safe_input_names(names: list[str]) -> dict[str, str]:
    """``{feature name: safe name}``: valid names stay; others get ``[^A-Za-z0-9_]`` replaced by ``_``, an
    ``f_`` prefix when they do not start with a letter, and a ``_2``, ``_3``, ... suffix when taken."""
    taken = {name for name in names if _SAFE_NAME.match(name)}
    result = {}
    for name in names:
        if name in taken:
            result[name] = name
            continue
        base = re.sub(r"[^A-Za-z0-9_]", "_", name)
        if not base[:1].isalpha():
            base = f"f_{base}"
        safe, count = base, 1
        while safe in taken:
            count += 1
            safe = f"{base}_{count}"
        taken.add(safe)
        result[name] = safe
    renamed = {k: v for k, v in result.items() if k != v}
    if renamed:
        logger.info("Raw feature names mapped to safe input and layer names: %s", renamed)
    return result


def _column(values: Any) -> np.ndarray:
    array = np.asarray(values)
    return array.reshape(-1, 1) if array.ndim == 1 else array


def _numeric(name: str, safe: str, values: np.ndarray, tensor: Any) -> Any:
    values = values.astype("float32")
    missing = np.isnan(values)
    count = int(missing.sum())
    norm = keras.layers.Normalization(axis=-1, name=f"normalize_{safe}")
    if not count:
        logger.debug("Raw feature %r: no missing values in %d.", name, values.size)
        norm.adapt(values)
        return norm(tensor)
    if count == values.size:
        raise ValueError(
            f"Numeric feature {name!r} is missing (NaN) in all {values.size} rows of its adaptation data; "
            "nothing to compute its statistics from. Drop the column or give it values."
        )
    present = values[~missing].reshape(-1, 1)
    norm.adapt(present)
    median = float(np.median(present))
    fill = float(keras.ops.convert_to_numpy(norm(np.array([[median]], "float32"))).reshape(()))
    logger.info(
        "Raw feature %r: %d of %d values missing (%.1f %%), imputed with the training median %g "
        "and a missing-indicator feature.",
        name,
        count,
        values.size,
        100.0 * count / values.size,
        median,
    )
    return ImputeMissing(fill, indicator=True, name=f"impute_{safe}")(norm(tensor))


def _raw_block(spec: RawFeatures) -> tuple[dict[str, Any], Any]:
    inputs: dict[str, Any] = {}
    encoded = []
    safe_names = safe_input_names(list(spec.features))
    for name, kind in spec.features.items():
        safe = safe_names[name]
        values = _column(spec.data[name])
        if kind == "numeric":
            inputs[name] = keras.Input(shape=(1,), dtype="float32", name=safe)
            encoded.append(_numeric(name, safe, values, inputs[name]))
        elif kind == "string_categorical":
            inputs[name] = keras.Input(shape=(1,), dtype="string", name=safe)
            lookup = keras.layers.StringLookup(
                output_mode="one_hot", max_tokens=spec.max_tokens, name=f"lookup_{safe}"
            )
            lookup.adapt(values.astype(str))
            encoded.append(lookup(inputs[name]))
        else:
            inputs[name] = keras.Input(shape=(1,), dtype="int64", name=safe)
            int_lookup = keras.layers.IntegerLookup(
                output_mode="one_hot", max_tokens=spec.max_tokens, name=f"lookup_{safe}"
            )
            int_lookup.adapt(values.astype("int64"))
            encoded.append(int_lookup(inputs[name]))
    features = keras.layers.Concatenate(name="raw_features")(encoded) if len(encoded) > 1 else encoded[0]
    return inputs, features


def make_inputs(inputs: Any) -> tuple[Any, Any]:
    """Return ``(model inputs, feature tensor)`` for any accepted ``inputs`` value."""
    if isinstance(inputs, RawFeatures):
        return _raw_block(inputs)
    if isinstance(inputs, bool):
        raise ValueError(
            f"Expected `inputs` to be a size, a shape, RawFeatures or keras.Input. Received: {inputs!r}"
        )
    if isinstance(inputs, int):
        if inputs < 1:
            raise ValueError(f"Expected `inputs` to be a positive input size. Received: inputs={inputs}")
        tensor = keras.Input(shape=(inputs,), name="features")
        return tensor, tensor
    if isinstance(inputs, tuple) and all(isinstance(d, int) and d > 0 for d in inputs) and inputs:
        tensor = keras.Input(shape=inputs, name="features")
        return tensor, tensor
    if isinstance(inputs, keras.KerasTensor):
        return inputs, inputs
    if (
        isinstance(inputs, Mapping)
        and inputs
        and all(isinstance(v, keras.KerasTensor) for v in inputs.values())
    ):
        tensors = list(inputs.values())
        features = (
            keras.layers.Concatenate(name="input_features")(tensors) if len(tensors) > 1 else tensors[0]
        )
        return dict(inputs), features
    raise ValueError(
        "Expected `inputs` to be a positive int (vector size), a shape tuple of positive ints, RawFeatures, "
        f"a keras.Input or a dict of keras.Input. Received: inputs={inputs!r}"
    )
