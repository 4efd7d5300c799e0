"""`LossScaleWarning`: one logged warning when the tasks' losses differ in scale by more than a factor.

Losses of very different sizes (an MSE on unscaled targets in the thousands next to a cross-entropy near
0.7) let one task dominate the summed objective and its gradient. At the end of the first epoch of a
``fit`` this callback compares the epoch's per-task training losses (``<task>_loss``) and, when the
largest is more than ``ratio`` times the smallest, logs one line on the ``mtl_keras`` logger naming both
tasks, their losses and the ratio, and suggesting label standardisation or task weights.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import keras

logger = logging.getLogger("mtl_keras")


def loss_scale_message(losses: Mapping[str, Any], ratio: float = 100.0) -> str | None:
    """The warning for ``{task: loss}`` when the largest loss is more than ``ratio`` times the smallest,
    else None. Missing (NaN, None), infinite and non-positive losses are left out: a ratio to them says
    nothing about scale."""
    values = {}
    for task, loss in losses.items():
        if loss is None:
            continue
        value = float(loss)
        if math.isfinite(value) and value > 0:
            values[task] = value
    if len(values) < 2:
        return None
    big = max(values, key=values.__getitem__)
    small = min(values, key=values.__getitem__)
    scale = values[big] / values[small]
    if scale <= ratio:
        return None
    return (
        f"Task {big!r} has a training loss of {values[big]:.4g} after the first epoch, {scale:.4g}x the "
        f"{values[small]:.4g} of task {small!r} (more than {ratio:g}x): {big!r} dominates the objective; "
        f"standardise its labels (e.g. z-score regression targets) or set task weights "
        f"(compile(loss_weights=...) or a balancer such as 'uncertainty')."
    )


class LossScaleWarning(keras.callbacks.Callback):
    """Warn once per ``fit``, after its first epoch, when one task's loss is > ``ratio`` × another's.

    Args:
        ratio: the factor between the largest and the smallest per-task training loss above which to
            warn; a finite number greater than 1.
        task_names: the tasks to compare; default: the model's ``task_names``.

    Attributes: ``message``, the warning logged by the last ``fit`` (None when none was).
    """

    def __init__(self, ratio: float = 100.0, task_names: Sequence[str] | None = None) -> None:
        super().__init__()
        ratio = float(ratio)
        if not math.isfinite(ratio) or ratio <= 1:
            raise ValueError(
                f"Expected `ratio` of LossScaleWarning to be a finite number > 1. Received: ratio={ratio}"
            )
        self.ratio = ratio
        self.task_names = None if task_names is None else [str(t) for t in task_names]
        self.message: str | None = None
        self._checked = False

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.message = None
        self._checked = False

    def _names(self) -> list[str]:
        if self.task_names is not None:
            return self.task_names
        names = getattr(self.model, "task_names", None)
        if names is None:
            raise ValueError(
                "LossScaleWarning compares the per-task losses of a MultiTaskModel; the model "
                f"{getattr(self.model, 'name', self.model)!r} has no `task_names`: pass task_names=[...]."
            )
        return list(names)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self._checked:
            return
        self._checked = True
        logs = logs or {}
        losses = {name: logs.get(f"{name}_loss") for name in self._names()}
        self.message = loss_scale_message(losses, self.ratio)
        if self.message is not None:
            logger.warning(self.message)
