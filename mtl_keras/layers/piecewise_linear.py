"""Piecewise-linear encoding of a numerical feature over fixed bin edges (PLE; PLE-Q with quantile edges).

Gorishniy, Rubachev & Babenko, "On Embeddings for Numerical Features in Tabular Deep Learning" (NeurIPS 2022),
section 3.2, eq. 1–2: with edges ``b_0 < b_1 < ... < b_T`` a value ``x`` becomes ``T`` numbers, one per bin
``t = 1..T``::

    e_t = 0                                   if x < b_{t-1} and t > 1
    e_t = 1                                   if x >= b_t   and t < T
    e_t = (x - b_{t-1}) / (b_t - b_{t-1})     otherwise

so bins below ``x`` are full (1), bins above empty (0), the bin holding ``x`` is filled in proportion, and
values outside ``[b_0, b_T]`` extrapolate linearly in the first and last bin. With ``b`` the quantiles of the
training values (:func:`quantile_edges`) this is PLE-Q. The edges are constructor arguments (no weights).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
from keras import ops

from mtl_keras._registry import serializable


def quantile_edges(values: Any, num_bins: int) -> list[float]:
    """Bin edges at the ``0, 1/num_bins, ..., 1`` quantiles of the finite ``values``, duplicates removed.

    Fewer than ``num_bins`` bins come back when quantiles coincide (e.g. a column that is mostly 0). A column
    with a single distinct value gets the one bin ``[v, v + 1]``. Raises ``ValueError`` without finite values.
    """
    if isinstance(num_bins, bool) or not isinstance(num_bins, int) or num_bins < 1:
        raise ValueError(f"Expected `num_bins` to be a positive integer. Received: num_bins={num_bins!r}")
    array = np.asarray(values, dtype=np.float64).ravel()
    array = array[np.isfinite(array)]
    if array.size == 0:
        raise ValueError("Expected finite values to compute quantile bin edges from. Received none.")
    edges = np.unique(np.quantile(array, np.linspace(0.0, 1.0, num_bins + 1)))
    if edges.size < 2:
        edges = np.array([edges[0], edges[0] + 1.0])
    return [float(e) for e in edges]


@serializable
class PiecewiseLinearEncoding(keras.layers.Layer):
    """``(batch, 1)`` values → ``(batch, T)`` piecewise-linear encoding over ``T + 1`` increasing ``edges``.

    Args:
        edges: the bin edges ``b_0 < ... < b_T`` (at least two, strictly increasing, finite), e.g. from
            :func:`quantile_edges` on the training values.
    """

    def __init__(self, edges: Sequence[float], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        edges = [float(e) for e in edges]
        if len(edges) < 2 or not all(math.isfinite(e) for e in edges):
            raise ValueError(f"Expected at least two finite bin `edges`. Received: edges={edges!r}")
        if any(b <= a for a, b in itertools.pairwise(edges)):
            raise ValueError(f"Expected strictly increasing bin `edges`. Received: edges={edges!r}")
        self.edges = edges
        self._build_at_init()  # stateless: built once made, as Keras's own stateless layers are

    @property
    def num_bins(self) -> int:
        return len(self.edges) - 1

    def call(self, inputs: Any) -> Any:
        if inputs.shape[-1] not in (None, 1):
            raise ValueError(
                f"Expected PiecewiseLinearEncoding's input to have last dimension 1 (one value per example). "
                f"Received shape {tuple(inputs.shape)}."
            )
        x = ops.cast(inputs, "float32")
        lower = ops.convert_to_tensor(np.asarray(self.edges[:-1], dtype=np.float32))
        width = ops.convert_to_tensor(np.diff(np.asarray(self.edges, dtype=np.float64)).astype(np.float32))
        ratio = (x - lower) / width  # (batch, T) by broadcasting the (batch, 1) input
        bins = self.num_bins
        if bins == 1:
            encoded = ratio
        else:
            first = ops.minimum(ratio[..., :1], 1.0)
            middle = ops.clip(ratio[..., 1:-1], 0.0, 1.0)
            last = ops.maximum(ratio[..., -1:], 0.0)
            encoded = ops.concatenate([first, middle, last], axis=-1)
        return ops.cast(encoded, self.compute_dtype)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return (*input_shape[:-1], self.num_bins)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "edges": list(self.edges)}
