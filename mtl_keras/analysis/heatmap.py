"""The affinity heat-map: a PNG of ``matrix[i][j]`` (affinity of row task i onto column task j).

Drawn like :mod:`mtl_keras.evaluation.plots` (matplotlib's Agg canvas, no pyplot, written atomically).
Colours are centred on 0 (red: helps, blue: hurts) and scaled by the largest off-diagonal entry; an
unmeasured entry (NaN) is grey and unlabelled.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from mtl_keras.evaluation.plots import _save


def plot_affinity(
    matrix: Any, tasks: Sequence[str], path: str | os.PathLike[str], *, title: str = "task affinity"
) -> str:
    """Write the heat-map of ``matrix`` for ``tasks`` to ``path``; returns the path."""
    values = np.asarray(matrix, dtype=np.float64)
    size = len(tasks)
    if values.shape != (size, size):
        raise ValueError(f"Expected a {size}x{size} matrix for tasks {list(tasks)}. Received: {values.shape}")
    # The colour scale is set by the off-diagonal entries (what grouping uses); a larger diagonal saturates.
    off = values[~np.eye(size, dtype=bool) & np.isfinite(values)]
    scale = float(np.max(np.abs(off))) if off.size and np.max(np.abs(off)) > 0 else 1.0
    side = 1.2 + 0.8 * size
    figure = Figure(figsize=(side + 1.2, side), layout="constrained")
    axes = figure.subplots()
    cmap = colormaps["coolwarm"].with_extremes(bad="lightgrey")
    image = axes.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=-scale, vmax=scale)
    axes.set_xticks(range(size), list(tasks), rotation=45, ha="right")
    axes.set_yticks(range(size), list(tasks))
    axes.set_xlabel("onto task j")
    axes.set_ylabel("from task i")
    axes.set_title(title)
    for i in range(size):
        for j in range(size):
            if np.isfinite(values[i, j]):
                axes.text(j, i, f"{values[i, j]:.3g}", ha="center", va="center", fontsize=8)
    figure.colorbar(image, ax=axes, shrink=0.8)
    return _save(figure, path)


__all__ = ["plot_affinity"]
