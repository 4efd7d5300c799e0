"""PiecewiseLinearEncoding (PLE) and its quantile edges against the paper's definition, bin by bin."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from mtl_keras.layers.piecewise_linear import PiecewiseLinearEncoding, quantile_edges


def _ple(x: float, edges: list[float]) -> list[float]:
    """Gorishniy et al. (2022) eq. 2, one value, one bin at a time."""
    bins = len(edges) - 1
    result = []
    for t in range(1, bins + 1):
        lo, hi = edges[t - 1], edges[t]
        if x < lo and t > 1:
            result.append(0.0)
        elif x >= hi and t < bins:
            result.append(1.0)
        else:
            result.append((x - lo) / (hi - lo))
    return result


@pytest.mark.parametrize("edges", [[-1.0, 0.0, 0.5, 2.0], [0.0, 1.0], [0.0, 1.0, 3.0]])
def test_matches_the_definition_inside_at_edges_and_outside(edges: list[float]) -> None:
    values = [-3.0, -1.0, -0.5, 0.0, 0.25, 0.5, 1.0, 2.0, 2.5, 7.0]
    out = keras.ops.convert_to_numpy(PiecewiseLinearEncoding(edges)(np.array(values, "float32")[:, None]))
    expected = np.array([_ple(v, edges) for v in values])
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)


def test_encoding_sums_to_the_position_along_the_bins() -> None:
    """Inside [b_0, b_T] the encoding is 1 for each full bin plus the fraction of the current one."""
    edges = [0.0, 1.0, 2.0, 4.0]
    out = keras.ops.convert_to_numpy(PiecewiseLinearEncoding(edges)(np.array([[3.0]], "float32")))
    np.testing.assert_allclose(out, [[1.0, 1.0, 0.5]])


def test_quantile_edges_are_the_quantiles_without_duplicates() -> None:
    rng = np.random.default_rng(0)
    values = rng.exponential(size=1001)
    edges = quantile_edges(values, 4)
    np.testing.assert_allclose(edges, np.percentile(values, [0, 25, 50, 75, 100]))
    mostly_zero = np.concatenate([np.zeros(900), rng.uniform(1, 2, 100)])
    edges = quantile_edges(mostly_zero, 10)  # the 0 … 0.9 quantiles are all 0: one bin [0, q_0.9] left
    assert edges == sorted({float(q) for q in np.quantile(mostly_zero, np.linspace(0, 1, 11))})
    assert len(edges) == 3 and edges[0] == 0.0 < edges[1] < edges[2]
    assert quantile_edges([5.0, 5.0, np.nan], 8) == [5.0, 6.0]


@pytest.mark.parametrize(
    ("edges", "message"),
    [([1.0], "at least two"), ([0.0, 0.0, 1.0], "strictly increasing"), ([0.0, float("inf")], "finite")],
)
def test_bad_edges_are_refused(edges: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PiecewiseLinearEncoding(edges)


def test_more_than_one_value_per_example_is_refused() -> None:
    with pytest.raises(ValueError, match="last dimension 1"):
        PiecewiseLinearEncoding([0.0, 1.0])(np.zeros((2, 3), "float32"))
    with pytest.raises(ValueError, match="finite values"):
        quantile_edges([np.nan], 4)
