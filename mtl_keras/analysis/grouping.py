"""Task grouping from an affinity matrix: which tasks should share a network (Fifty et al., NeurIPS 2021).

``matrix[i][j]`` is the affinity of task i onto task j (positive: training with i helps j). A *group* is a
set of tasks trained together; the affinity of group G onto one of its tasks i is the mean of the
affinities of the other members onto i,

    a(G, i) = mean_{j ∈ G, j ≠ i} matrix[j][i],      a({i}, i) = 0 (the task alone).

A *split* is at most K groups covering every task; a task may be in several groups (as in the paper),
and each task is served by the group of the split that helps it most. The split's score is

    score = Σ_i max_{G ∋ i} a(G, i),

which is also the predicted gain of each task (in the units of the matrix: a relative loss decrease for
the lookahead affinity, a relative metric gain for the pairwise one) summed.

Exact search (T ≤ ``EXACT_MAX_TASKS``). In a best split every group can be taken to serve at least one
task, and the sets of tasks the groups serve partition the tasks; so the best score is the best partition
of the tasks into at most K blocks S, each block valued by its best superset,
``best(S) = max_{G ⊇ S} Σ_{i ∈ S} a(G, i)``. ``best`` is tabulated over all (S ⊆ G) pairs (3^T of them) and
the partition found by dynamic programming over subsets (K · 3^T steps).

Beyond that, a beam search (documented heuristic, not exact): start from every task alone, merge two
blocks of the partition at a time keeping the ``beam`` best partitions of each size, down to K blocks,
and value each block by its best superset among the merged blocks' unions with one more task.

Unmeasured pairs (NaN, e.g. pairs left out of a pairwise run) are not guessed: a group containing an
unmeasured pair is never proposed.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: The largest number of tasks searched exhaustively (3^T subset pairs).
EXACT_MAX_TASKS = 10


@dataclass(frozen=True)
class Group:
    """One group of a split: its ``tasks``, the tasks it ``serves`` and their predicted gains."""

    tasks: tuple[str, ...]
    serves: tuple[str, ...]
    gains: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tasks": list(self.tasks),
            "serves": list(self.serves),
            "predicted_gain": {t: float(v) for t, v in self.gains.items()},
        }


@dataclass(frozen=True)
class Grouping:
    """The best split found: its groups, each task's group and predicted gain, the score and the method."""

    groups: tuple[Group, ...]
    score: float
    method: str
    max_groups: int

    @property
    def predicted_gain(self) -> dict[str, float]:
        """``{task: the affinity onto it of the group that serves it}``."""
        return {t: g for group in self.groups for t, g in group.gains.items()}

    @property
    def served_by(self) -> dict[str, int]:
        """``{task: index of the group that serves it}``."""
        return {t: k for k, group in enumerate(self.groups) for t in group.serves}

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_groups": self.max_groups,
            "method": self.method,
            "score": float(self.score),
            "groups": [g.to_dict() for g in self.groups],
            "served_by": self.served_by,
            "predicted_gain": self.predicted_gain,
        }


def check_matrix(matrix: Any, tasks: Sequence[str]) -> np.ndarray:
    """``matrix`` as a (T, T) float array for ``tasks``; errors name what was expected."""
    array = np.asarray(matrix, dtype=np.float64)
    size = len(tasks)
    if array.shape != (size, size):
        raise ValueError(
            f"Expected a {size}x{size} affinity matrix for tasks {list(tasks)}. Received shape {array.shape}."
        )
    if len(set(tasks)) != size:
        raise ValueError(f"Expected distinct task names. Received: {list(tasks)}")
    return array


def group_affinity(matrix: np.ndarray, members: Sequence[int], task: int) -> float:
    """a(G, i): the mean affinity of the other members of G onto ``task`` (0 alone, NaN if unmeasured)."""
    others = [j for j in members if j != task]
    if not others:
        return 0.0
    return float(np.mean([matrix[j, task] for j in others]))


def _measured(matrix: np.ndarray, members: Sequence[int]) -> bool:
    return all(np.isfinite(matrix[a, b]) for a in members for b in members if a != b)


def _members(mask: int, size: int) -> list[int]:
    return [i for i in range(size) if mask >> i & 1]


def _exact(matrix: np.ndarray, max_groups: int) -> list[tuple[int, int]]:
    """(block mask, group mask) pairs of the best partition into ≤ K blocks (see the module docstring)."""
    size = matrix.shape[0]
    full = (1 << size) - 1
    best = [-math.inf] * (full + 1)
    best_group = [0] * (full + 1)
    for group in range(1, full + 1):
        members = _members(group, size)
        if not _measured(matrix, members):
            continue
        values = {i: group_affinity(matrix, members, i) for i in members}
        served = group
        while served:  # every non-empty subset of the group
            total = sum(values[i] for i in _members(served, size))
            if total > best[served]:
                best[served], best_group[served] = total, group
            served = (served - 1) & group
    # dp[k][mask]: the best cover of `mask` by ≤ k blocks; a block holds the lowest task of what is left.
    dp = [[-math.inf] * (full + 1) for _ in range(max_groups + 1)]
    choice = [[0] * (full + 1) for _ in range(max_groups + 1)]
    for k in range(max_groups + 1):
        dp[k][0] = 0.0
    for k in range(1, max_groups + 1):
        for mask in range(1, full + 1):
            low = mask & -mask
            rest = mask ^ low
            sub = rest
            while True:
                block = sub | low
                value = best[block] + dp[k - 1][mask ^ block]
                if value > dp[k][mask]:
                    dp[k][mask], choice[k][mask] = value, block
                if sub == 0:
                    break
                sub = (sub - 1) & rest
    blocks, mask, k = [], full, max_groups
    while mask:
        block = choice[k][mask]
        blocks.append((block, best_group[block]))
        mask ^= block
        k -= 1
    return blocks


def _beam(matrix: np.ndarray, max_groups: int, beam: int) -> list[tuple[int, int]]:
    """A beam search over partitions (heuristic; see the module docstring)."""
    size = matrix.shape[0]
    cache: dict[int, tuple[float, int]] = {}

    def value(block: int) -> tuple[float, int]:
        """The best superset of ``block`` among itself and itself plus one task."""
        if block not in cache:
            candidates = [block] + [block | 1 << t for t in range(size) if not block >> t & 1]
            found = (-math.inf, block)
            served = _members(block, size)
            for group in candidates:
                members = _members(group, size)
                if _measured(matrix, members):
                    total = sum(group_affinity(matrix, members, i) for i in served)
                    if total > found[0]:
                        found = (total, group)
            cache[block] = found
        return cache[block]

    def score(partition: tuple[int, ...]) -> float:
        return sum(value(b)[0] for b in partition)

    start = tuple(1 << i for i in range(size))
    layer = [start]
    best = start if len(start) <= max_groups else None
    while layer and len(layer[0]) > 1:
        merged: dict[tuple[int, ...], float] = {}
        for partition in layer:
            for a, b in itertools.combinations(range(len(partition)), 2):
                blocks = [p for k, p in enumerate(partition) if k not in (a, b)]
                candidate = tuple(sorted([*blocks, partition[a] | partition[b]]))
                if candidate not in merged:
                    merged[candidate] = score(candidate)
        layer = sorted(merged, key=lambda p: -merged[p])[:beam]
        if layer and len(layer[0]) <= max_groups and (best is None or score(layer[0]) > score(best)):
            best = layer[0]
    assert best is not None
    return [(block, value(block)[1]) for block in best]


def best_grouping(
    matrix: Any,
    tasks: Sequence[str],
    max_groups: int,
    *,
    method: str = "auto",
    beam: int = 20,
) -> Grouping:
    """The best split of ``tasks`` into at most ``max_groups`` groups for ``matrix`` (module docstring).

    Args:
        matrix: (T, T), ``matrix[i][j]`` the affinity of task i onto task j; the diagonal is ignored and
            NaN marks an unmeasured pair.
        tasks: the task names, in the matrix's order.
        max_groups: K ≥ 1.
        method: ``"exact"``, ``"beam"`` or ``"auto"`` (exact for T ≤ :data:`EXACT_MAX_TASKS`).
        beam: the beam width of ``"beam"``.
    """
    array = check_matrix(matrix, tasks)
    if isinstance(max_groups, bool) or not isinstance(max_groups, int) or max_groups < 1:
        raise ValueError(f"Expected `max_groups` to be a positive integer. Received: {max_groups!r}")
    if method not in ("auto", "exact", "beam"):
        raise ValueError(f"Expected `method` to be 'auto', 'exact' or 'beam'. Received: {method!r}")
    if method == "auto":
        method = "exact" if len(tasks) <= EXACT_MAX_TASKS else "beam"
    k = min(max_groups, len(tasks))
    pairs = _exact(array, k) if method == "exact" else _beam(array, k, beam)
    size = len(tasks)
    chosen = sorted({group for _, group in pairs}, key=lambda g: _members(g, size))
    # Each task is served by its best group of the split (ties: the first group).
    serving: dict[int, tuple[int, float]] = {}
    for index, group in enumerate(chosen):
        members = _members(group, size)
        for i in members:
            gain = group_affinity(array, members, i)
            if i not in serving or gain > serving[i][1]:
                serving[i] = (index, gain)
    groups = []
    for index, group in enumerate(chosen):
        members = _members(group, size)
        served = [i for i in members if serving[i][0] == index]
        if not served:  # another group of the split is at least as good for each of its tasks
            continue
        groups.append(
            Group(
                tasks=tuple(tasks[i] for i in members),
                serves=tuple(tasks[i] for i in served),
                gains={tasks[i]: serving[i][1] for i in served},
            )
        )
    score = float(sum(gain for _, gain in serving.values()))
    return Grouping(tuple(groups), score, method, max_groups)


__all__ = ["EXACT_MAX_TASKS", "Group", "Grouping", "best_grouping", "check_matrix", "group_affinity"]
