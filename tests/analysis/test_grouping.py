"""Task grouping against a brute force written here: every collection of at most K groups that covers the
tasks, each task served by its best group."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from mtl_keras.analysis import best_grouping


def brute_force(matrix: np.ndarray, max_groups: int) -> float:
    size = matrix.shape[0]
    subsets = [frozenset(c) for r in range(1, size + 1) for c in itertools.combinations(range(size), r)]
    subsets = [s for s in subsets if all(np.isfinite(matrix[a, b]) for a in s for b in s if a != b)]

    def onto(group: frozenset, task: int) -> float:
        others = [j for j in group if j != task]
        return sum(matrix[j, task] for j in others) / len(others) if others else 0.0

    best = -np.inf
    for k in range(1, max_groups + 1):
        for split in itertools.combinations(subsets, k):
            if frozenset().union(*split) != frozenset(range(size)):
                continue
            score = sum(max(onto(g, i) for g in split if i in g) for i in range(size))
            best = max(best, score)
    return best


def names(size: int) -> list[str]:
    return [f"t{i}" for i in range(size)]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("max_groups", [1, 2, 3])
def test_exact_matches_brute_force_on_random_matrices(seed, max_groups):
    rng = np.random.default_rng(seed)
    size = 4 + seed % 2
    matrix = rng.normal(size=(size, size))
    grouping = best_grouping(matrix, names(size), max_groups, method="exact")
    assert grouping.score == pytest.approx(brute_force(matrix, max_groups), abs=1e-12)
    assert len(grouping.groups) <= max_groups
    # every task is served exactly once, by a group that holds it, with the gain the brute force computes
    served = [t for g in grouping.groups for t in g.serves]
    assert sorted(served) == names(size)
    for group in grouping.groups:
        members = [int(t[1:]) for t in group.tasks]
        for task in group.serves:
            i = int(task[1:])
            others = [j for j in members if j != i]
            expected = np.mean([matrix[j, i] for j in others]) if others else 0.0
            assert group.gains[task] == pytest.approx(expected)
    assert sum(grouping.predicted_gain.values()) == pytest.approx(grouping.score)


def test_unmeasured_pairs_are_never_grouped_and_match_brute_force():
    rng = np.random.default_rng(7)
    matrix = rng.normal(size=(5, 5)) + 1.0
    matrix[0, 3] = matrix[3, 0] = np.nan
    grouping = best_grouping(matrix, names(5), 2)
    assert grouping.score == pytest.approx(brute_force(matrix, 2), abs=1e-12)
    for group in grouping.groups:
        assert not {"t0", "t3"} <= set(group.tasks)


def test_block_structure_is_recovered_by_both_searches():
    # tasks 0-2 help each other, 3-5 help each other, the blocks hurt each other
    block = np.kron(np.eye(2), np.ones((3, 3)))
    matrix = np.where(block > 0, 0.5, -0.4)
    exact = best_grouping(matrix, names(6), 2, method="exact")
    beam = best_grouping(matrix, names(6), 2, method="beam")
    for grouping in (exact, beam):
        assert sorted(sorted(g.tasks) for g in grouping.groups) == [["t0", "t1", "t2"], ["t3", "t4", "t5"]]
        assert grouping.score == pytest.approx(6 * 0.5)


def test_beam_never_beats_exact_and_scales_past_the_exact_limit():
    rng = np.random.default_rng(3)
    matrix = rng.normal(size=(7, 7))
    exact = best_grouping(matrix, names(7), 3, method="exact")
    beam = best_grouping(matrix, names(7), 3, method="beam")
    assert beam.score <= exact.score + 1e-12
    big = best_grouping(rng.normal(size=(14, 14)), names(14), 4)
    assert big.method == "beam" and len(big.groups) <= 4
    assert sorted(t for g in big.groups for t in g.serves) == sorted(names(14))


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="3x3 affinity matrix"):
        best_grouping(np.zeros((2, 2)), names(3), 1)
    with pytest.raises(ValueError, match="max_groups"):
        best_grouping(np.zeros((3, 3)), names(3), 0)
