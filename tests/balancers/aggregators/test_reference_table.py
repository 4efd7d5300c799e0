"""Every row of docs/methods.md, "Aggregator reference table", for J = [[-4, 1, 1], [6, 1, 1]].

The expected numbers come from the papers' definitions, recomputed independently of this code (see
the table's "origin" column), never from the aggregators' own output.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import tensorflow as tf

from mtl_keras.balancers.aggregators import NashMTL
from mtl_keras.balancers.base import AGGREGATORS

J = [[-4.0, 1.0, 1.0], [6.0, 1.0, 1.0]]

TABLE: list[tuple[str, dict[str, Any], list[float], float]] = [
    ("mean", {}, [1.0, 1.0, 1.0], 1e-4),
    ("sum", {}, [2.0, 2.0, 2.0], 1e-4),
    ("pcgrad", {"seed": 0}, [0.5848, 3.8012, 3.8012], 1e-4),
    ("pcgrad", {"seed": 1}, [0.5848, 3.8012, 3.8012], 1e-4),
    ("upgrad", {}, [0.2924, 1.9006, 1.9006], 1e-4),
    ("upgrad", {"eps": 1e-4}, [0.2929, 1.9004, 1.9004], 1e-4),  # TorchJD's regularisation
    ("mgda", {}, [0.0, 1.0, 1.0], 1e-4),
    ("cagrad", {"c": 0.5, "rescale": 0}, [0.1835, 1.2041, 1.2041], 1e-4),
    ("cagrad", {"c": 0.5, "rescale": 1}, [0.1468, 0.9633, 0.9633], 1e-4),
    ("imtl", {}, [0.0767, 1.0, 1.0], 1e-4),
    ("dualproj", {}, [0.5556, 1.1111, 1.1111], 1e-4),
    ("dualproj", {"eps": 1e-4}, [0.5563, 1.1109, 1.1109], 1e-4),  # TorchJD's regularisation
    ("nash_mtl", {"max_norm": None}, [0.0766, 0.9985, 0.9985], 1e-3),
    ("nash_mtl", {"max_norm": 1.0}, [0.0542, 0.7061, 0.7061], 1e-3),  # LibMTL's clipped update
]


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64])
@pytest.mark.parametrize(("name", "options", "expected", "tol"), TABLE)
def test_reference_table(
    name: str, options: dict[str, Any], expected: list[float], tol: float, dtype: tf.DType
) -> None:
    result = AGGREGATORS.get(name, **options).aggregate(tf.constant(J, dtype))
    assert result.dtype == dtype
    np.testing.assert_allclose(result.numpy(), expected, atol=tol, rtol=0)


def test_nash_mtl_bargaining_weights() -> None:
    """α = (0.5915, 0.4071) solves G α = 1/α; recover it from the unclipped update d = Jᵀ α."""
    update = NashMTL(max_norm=None).aggregate(tf.constant(J, tf.float64)).numpy()
    alpha = np.linalg.lstsq(np.array(J).T, update, rcond=None)[0]
    np.testing.assert_allclose(alpha, [0.5915, 0.4071], atol=1e-3)


def test_mgda_weights() -> None:
    """MGDA's weights are (0.6, 0.4)."""
    update = AGGREGATORS.get("mgda").aggregate(tf.constant(J, tf.float64)).numpy()
    weights = np.linalg.lstsq(np.array(J).T, update, rcond=None)[0]
    np.testing.assert_allclose(weights, [0.6, 0.4], atol=1e-4)
