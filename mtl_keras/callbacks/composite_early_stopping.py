"""`CompositeEarlyStopping`: early stopping on a weighted mean of normalised per-task validation metrics."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mtl_keras.callbacks import _common


class CompositeEarlyStopping(_common.TaskEarlyStopping):
    """Stop when the composite validation score has not improved for ``patience`` epochs.

    Each epoch, with m_i the monitored validation metric of task i and m_i,0 its value after the first
    epoch of this ``fit``::

        val_composite = Σ_i w_i · s_i · (m_i − m_i,0) / |m_i,0|  /  Σ_i w_i

    where s_i = +1 when higher is better for that metric and −1 otherwise
    (:data:`mtl_keras.tasks.HIGHER_IS_BETTER`), so the score is 0 after the first epoch and grows as the
    tasks improve relative to where they started, whatever their scales. (A zero first-epoch value falls
    back to the absolute change.) ``val_composite`` is added to the epoch logs, so the ``History`` has it.

    Args:
        metrics: ``{task: metric}``: a metric name (``"auc"`` → ``val_<task>_auc``, ``"loss"``) or a full
            ``val_...`` key; tasks left out are not monitored. None: every task's first metric
            (``task.metric_names()[0]``), or its loss if it has none.
        weights: ``{task: weight}`` (default equal); weights must be >= 0, with a positive sum.
        patience: epochs without improvement before stopping.
        min_delta: the smallest increase of the score that counts as an improvement.
        restore_best_weights: at the end of training (stopped or not), restore the whole model's weights
            of the epoch with the best score.
        higher_is_better: ``{metric: bool}`` for metrics missing from ``HIGHER_IS_BETTER``.
        verbose: 1 logs when training stops.

    After ``fit``: ``best_epoch`` (0-based), ``best_score``, ``stopped_epoch`` (None when not stopped),
    ``scores`` (one per epoch), ``monitored`` (``{task: log key}``).
    """

    callback_name = "CompositeEarlyStopping"

    def __init__(
        self,
        metrics: Mapping[str, str] | None = None,
        weights: Mapping[str, float] | None = None,
        patience: int = 5,
        min_delta: float = 0.0,
        restore_best_weights: bool = True,
        higher_is_better: Mapping[str, bool] | None = None,
        verbose: int = 0,
    ) -> None:
        super().__init__(patience, min_delta, restore_best_weights, verbose)
        if weights is not None and (
            any(float(w) < 0 for w in weights.values()) or sum(float(w) for w in weights.values()) <= 0
        ):
            raise ValueError(
                f"Expected `weights` >= 0 with a positive sum. Received: weights={dict(weights)}"
            )
        self.metrics = dict(metrics) if metrics is not None else None
        self.weights = dict(weights) if weights is not None else None
        self.higher_is_better = dict(higher_is_better or {})

    def _reset(self) -> None:
        super()._reset()
        self.baselines: dict[str, float] | None = None
        self.scores: list[float] = []
        self.best_score: float | None = None
        self.best_epoch: int | None = None
        self.best_weights: list[Any] | None = None
        self.stopped_epoch: int | None = None
        self.wait = 0

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._reset()
        model = self.model
        task_names = self._task_names()
        if self.metrics is None:
            specs = {t.name: (t.metric_names()[0] if t.metric_names() else "loss") for t in model.tasks}
        else:
            specs = _common.per_task(self.metrics, task_names, "metrics")
        if self.weights is not None:
            _common.per_task(self.weights, task_names, "weights")
            specs = {t: s for t, s in specs.items() if float(self.weights.get(t, 0.0)) > 0}
        if not specs:
            raise ValueError(
                "CompositeEarlyStopping monitors no task: give `metrics` with positive `weights`."
            )
        for task, spec in specs.items():
            self._watch(task, spec, "auto", self.higher_is_better)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs is None:
            return
        values = self._read(logs)
        if self.baselines is None:
            self.baselines = dict(values)
        score = _common.composite_score(values, self.baselines, self.directions, self.weights)
        logs["val_composite"] = score
        self.scores.append(score)
        if _common.improved(score, self.best_score, True, self.min_delta):
            self.best_score, self.best_epoch, self.wait = score, epoch, 0
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            return
        self.wait += 1
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self.restore_best_weights and self.best_weights is not None:
            self.model.set_weights(self.best_weights)
        if self.verbose and self.stopped_epoch is not None:
            _common.logger.info(
                "CompositeEarlyStopping: stopped after epoch %d; best epoch %s (val_composite %.4f)%s.",
                self.stopped_epoch + 1,
                None if self.best_epoch is None else self.best_epoch + 1,
                self.best_score,
                ", weights restored" if self.restore_best_weights else "",
            )
