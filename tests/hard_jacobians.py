"""Jacobians the reference tests of the newer aggregators share: random ones with T = 2, 3, 5 and hard cases
(nearly parallel rows, one row 1000x larger, a zero row, exactly opposite rows, rank(J) < T)."""

from __future__ import annotations

import numpy as np

NUM_PARAMS = 7


def _random(num_tasks: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(num_tasks, NUM_PARAMS))


_BASE = _random(3, 11)
_NEAR = _BASE[0] + 1e-2 * _random(1, 12)[0]

#: name -> J (float64). Every case keeps at least one task present.
RANDOM = {"T=2": _random(2, 0), "T=3": _random(3, 1), "T=5": _random(5, 2)}
HARD = {
    "nearly parallel rows": np.array([_BASE[0], _NEAR, _BASE[1]]),
    "one row 1000x larger": np.array([_BASE[0], 1000.0 * _BASE[1], _BASE[2]]),
    "zero row": np.array([_BASE[0], np.zeros(NUM_PARAMS), _BASE[2]]),
    "opposite rows": np.array([_BASE[0], -_BASE[0]]),
    "opposite rows and a third": np.array([_BASE[0], -_BASE[0], _BASE[1]]),
    "duplicated row": np.array([_BASE[0], _BASE[0], _BASE[1]]),
    "rank < T, 0 outside the hull": np.array([_BASE[0], _BASE[1], _BASE[0] + _BASE[1]]),
    "rank < T, 0 inside the hull": np.array([_BASE[0], _BASE[1], -(_BASE[0] + _BASE[1]) / 2]),
}
ALL = {**RANDOM, **HARD}


def present(jacobian: np.ndarray) -> np.ndarray:
    """Boolean (T,): the rows that are not zero (the tasks present in the batch)."""
    return np.linalg.norm(jacobian, axis=1) > 0
