"""What a builder's ``inputs`` argument may be, turned into Keras inputs and one feature tensor.

* an int ``d`` or a shape tuple: a dense vector ``(d,)`` or an image ``(H, W, C)``;
* :class:`RawFeatures`: a dict of raw named features (strings and numbers) that go through a preprocessing
  block of Keras preprocessing layers (``Normalization``, ``StringLookup``, ``IntegerLookup``) adapted on
  data, so the saved model takes raw values;
* an existing ``keras.Input`` tensor, or a dict of them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import keras
import numpy as np

from mtl_keras._registry import suggest

FEATURE_KINDS = ("numeric", "string_categorical", "integer_categorical")


@dataclasses.dataclass
class RawFeatures:
    """Raw named features and the data their preprocessing layers are adapted on.

    Args:
        features: ``{name: kind}`` with kind in ``"numeric"``, ``"string_categorical"``,
            ``"integer_categorical"``.
        data: ``{name: array}`` of training values used to adapt normalisation and vocabularies.
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


def _column(values: Any) -> np.ndarray:
    array = np.asarray(values)
    return array.reshape(-1, 1) if array.ndim == 1 else array


def _raw_block(spec: RawFeatures) -> tuple[dict[str, Any], Any]:
    inputs: dict[str, Any] = {}
    encoded = []
    for name, kind in spec.features.items():
        values = _column(spec.data[name])
        if kind == "numeric":
            inputs[name] = keras.Input(shape=(1,), dtype="float32", name=name)
            norm = keras.layers.Normalization(axis=-1, name=f"normalize_{name}")
            norm.adapt(values.astype("float32"))
            encoded.append(norm(inputs[name]))
        elif kind == "string_categorical":
            inputs[name] = keras.Input(shape=(1,), dtype="string", name=name)
            lookup = keras.layers.StringLookup(
                output_mode="one_hot", max_tokens=spec.max_tokens, name=f"lookup_{name}"
            )
            lookup.adapt(values.astype(str))
            encoded.append(lookup(inputs[name]))
        else:
            inputs[name] = keras.Input(shape=(1,), dtype="int64", name=name)
            int_lookup = keras.layers.IntegerLookup(
                output_mode="one_hot", max_tokens=spec.max_tokens, name=f"lookup_{name}"
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
