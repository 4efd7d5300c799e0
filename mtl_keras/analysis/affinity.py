"""`mtl-keras affinity`: a recipe's task affinity, the best task grouping, ``affinity.json`` and a heat-map.

Two methods (docs/methods.md, "Task affinity and grouping"):

* ``lookahead`` (default): one normal training run of the recipe's multi-task model with
  :class:`~mtl_keras.callbacks.LookaheadAffinity` (Fifty et al., NeurIPS 2021), measured every ``every``
  steps; costs a fraction of one run on top of it (``benchmarks/affinity_cost.py``);
* ``pairwise``: every task pair and every task alone trained with the recipe's budget
  (:mod:`mtl_keras.analysis.pairwise`); costs T(T − 1)/2 runs plus the baselines.

``affinity.json`` holds ``tasks`` (the order), ``matrix`` (``matrix[i][j]`` = affinity of task i onto task
j; null where unmeasured), ``method``, ``settings``, ``groups`` (the grouping of
:func:`mtl_keras.analysis.grouping.best_grouping`), ``details`` (what the method measured) and ``plot``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Literal

import numpy as np
import tensorflow as tf
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt

from mtl_keras._io import atomic_write_text
from mtl_keras.analysis.grouping import best_grouping
from mtl_keras.analysis.heatmap import plot_affinity
from mtl_keras.analysis.pairwise import pairwise_affinity, parse_pairs
from mtl_keras.callbacks import LookaheadAffinity
from mtl_keras.experiments.fitting import fit
from mtl_keras.experiments.preparation import Prepared
from mtl_keras.recipes import RecipeError

logger = logging.getLogger("mtl_keras")

RESULT_FILE = "affinity.json"
PLOT_FILE = "affinity.png"


class AffinitySettings(BaseModel):
    """What ``mtl-keras affinity`` was asked for."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: Literal["lookahead", "pairwise"] = "lookahead"
    groups: PositiveInt = Field(default=2, description="at most this many groups")
    every: PositiveInt = Field(default=1, description="lookahead: measure every k training steps")
    learning_rate: PositiveFloat | None = Field(
        default=None, description="lookahead: the step size (default: the optimizer's learning rate)"
    )
    pairs: str | None = Field(default=None, description="pairwise: 'a:b,c:d' (default: every pair)")


def _clean(matrix: np.ndarray) -> list[list[float | None]]:
    return [[float(x) if np.isfinite(x) else None for x in row] for row in np.asarray(matrix, np.float64)]


def run_affinity(prepared: Prepared, output_dir: str | Path, settings: AffinitySettings) -> dict[str, Any]:
    """Measure the affinity of ``prepared``'s tasks, group them, write ``affinity.json`` and the heat-map
    into ``output_dir``; returns what ``affinity.json`` holds."""
    if isinstance(prepared.strategy, tf.distribute.MultiWorkerMirroredStrategy):
        raise RecipeError(
            "distribute.strategy",
            "mtl-keras affinity runs on one machine (strategy default or mirrored), not multi_worker",
        )
    names = [t.name for t in prepared.tasks]
    if len(names) < 2:
        raise RecipeError("tasks", f"task affinity needs at least two tasks; the data set has {names}")
    pairs = parse_pairs(settings.pairs, names) if settings.method == "pairwise" else None
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    recipe = prepared.recipe
    if settings.method == "lookahead":
        callback = LookaheadAffinity(every=settings.every, learning_rate=settings.learning_rate)
        fitted = fit(
            prepared.model,
            recipe,
            prepared.dataset,
            prepared.strategy,
            epochs=recipe.training.epochs,
            callbacks=[callback],
        )
        matrix = callback.mean_matrix()
        details: dict[str, Any] = {
            "counts": callback.to_dict()["counts"],
            "epoch_matrices": callback.to_dict()["epoch_matrices"],
            "train_seconds": fitted.seconds,
        }
    else:
        result = pairwise_affinity(prepared, out, pairs=pairs)
        matrix = result.matrix
        details = result.details()
    grouping = best_grouping(matrix, names, settings.groups)
    plot = plot_affinity(matrix, names, out / PLOT_FILE, title=f"{settings.method} affinity ({recipe.name})")
    payload = {
        "tasks": names,
        "matrix": _clean(matrix),
        "method": settings.method,
        "settings": {
            **settings.model_dump(),
            "recipe": recipe.name,
            "epochs": recipe.training.epochs,
            "batch_size": recipe.training.batch_size,
        },
        "groups": grouping.to_dict(),
        "details": details,
        "plot": str(plot),
    }
    atomic_write_text(out / RESULT_FILE, json.dumps(payload, indent=2, allow_nan=False) + "\n")
    return payload


def format_affinity(payload: dict[str, Any]) -> str:
    """The matrix (rows: from task i, columns: onto task j) and the grouping table, as text."""
    names = payload["tasks"]
    width = max(8, *(len(n) for n in names))
    lines = [f"{payload['method']} affinity, matrix[i][j] = affinity of task i onto task j:"]
    lines.append(" " * width + "".join(f"  {n:>{width}}" for n in names))
    for name, row in zip(names, payload["matrix"], strict=True):
        cells = "".join(f"  {'-' if v is None else f'{v:+.4f}':>{width}}" for v in row)
        lines.append(f"{name:<{width}}{cells}")
    groups = payload["groups"]
    lines.append("")
    lines.append(
        f"best split into at most {groups['max_groups']} groups ({groups['method']} search), "
        f"score {groups['score']:+.4f}:"
    )
    for index, group in enumerate(groups["groups"]):
        gains = ", ".join(f"{t} {g:+.4f}" for t, g in group["predicted_gain"].items())
        lines.append(f"  group {index + 1}: {' + '.join(group['tasks'])}  serves {gains}")
    return "\n".join(lines)


__all__ = ["PLOT_FILE", "RESULT_FILE", "AffinitySettings", "format_affinity", "run_affinity"]
