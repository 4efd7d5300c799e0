"""Per-task losses as masked means: NaN labels and zero per-task sample weights are missing labels.

A task without labels in a batch has loss 0 and no NaN. Under a ``tf.distribute`` strategy every replica
divides by the *global* number of labelled examples of each task, so the replicas' shares add up to the
single-device loss exactly (docs/methods.md, "Distribution").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import keras
import tensorflow as tf

from mtl_keras._registry import suggest
from mtl_keras.tasks import StandardizedLoss, Task
from mtl_keras.training.replicas import all_reduce_sum


class TaskLosses:
    """The masked per-task losses of a model's tasks, with one per-example loss function per task."""

    def __init__(self, tasks: Sequence[Task], loss_fns: Sequence[Callable[..., Any]]) -> None:
        self.tasks = list(tasks)
        self.names = [t.name for t in self.tasks]
        self.loss_fns = list(loss_fns)

    def standardize(self, y: Any, sample_weight: Any) -> tuple[list[Any], list[Any]]:
        """Labels and per-task sample weights as lists in task order; errors name the task."""
        names = self.names
        if not isinstance(y, dict):
            if len(names) != 1:
                raise ValueError(
                    f"Expected labels `y` as a dict keyed by the task names {names}. "
                    f"Received: {type(y).__name__}"
                )
            y = {names[0]: y}
        unknown = [k for k in y if k not in names]
        if unknown:
            raise ValueError(
                f"Unknown task {unknown[0]!r} in the labels. Expected task names {names}."
                + suggest(str(unknown[0]), names)
            )
        missing = [name for name in names if name not in y]
        if missing:
            raise ValueError(
                f"No labels for task(s) {missing}: every head needs a label entry (use NaN for missing "
                f"labels). Received labels for {sorted(y)}."
            )
        weights = {}
        if isinstance(sample_weight, dict):
            unknown = [k for k in sample_weight if k not in names]
            if unknown:
                raise ValueError(
                    f"Unknown task {unknown[0]!r} in `sample_weight`. Expected task names {names}."
                )
            weights = dict(sample_weight)
        elif sample_weight is not None:
            weights = {name: sample_weight for name in names}
        return [y[name] for name in names], [weights.get(name) for name in names]

    @staticmethod
    def _check_label_shape(task: Task, y_true: tf.Tensor, y_pred: tf.Tensor) -> None:
        """``y_true``: float32, rank ≥ 2 for multiclass (after expanding a (batch,) vector)."""
        if task.kind == "multiclass":
            if y_true.shape.rank == 1:
                return
            if y_true.shape.rank != 2 or y_true.shape[-1] not in (1, None):
                raise ValueError(
                    f"Expected integer class labels of shape (batch,) or (batch, 1) for multiclass task "
                    f"{task.name!r}. Received labels of shape {tuple(y_true.shape)}."
                )
        elif y_true.shape[1:].num_elements() != y_pred.shape[1:].num_elements():
            raise ValueError(
                f"Labels of task {task.name!r} have shape {tuple(y_true.shape)}; expected (batch,) + "
                f"{tuple(y_pred.shape[1:])} to match its head."
            )

    def masked_parts(
        self, index: int, y_true: Any, y_pred: tf.Tensor, sample_weight: Any
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
        """Per-task (sum of per-example losses over labelled examples, labelled count, clean labels, mask)."""
        task = self.tasks[index]
        y_pred = tf.cast(y_pred, tf.float32)
        y_true = tf.cast(y_true, tf.float32)
        if y_true.shape.rank == 1:
            y_true = tf.expand_dims(y_true, -1)
        self._check_label_shape(task, y_true, y_pred)
        labelled = tf.logical_not(tf.math.is_nan(y_true))
        if y_true.shape.rank > 1:
            labelled = tf.reduce_all(labelled, axis=list(range(1, y_true.shape.rank)))
        mask = tf.cast(labelled, tf.float32)
        if sample_weight is not None:
            weight = tf.reshape(tf.cast(sample_weight, tf.float32), [-1])
            mask = mask * weight
        clean = tf.where(tf.math.is_nan(y_true), tf.zeros_like(y_true), y_true)
        if task.kind != "multiclass":
            clean = tf.reshape(clean, tf.shape(y_pred))
        per_example = tf.cast(self.loss_fns[index](clean, y_pred), tf.float32)
        if per_example.shape.rank > 1:
            per_example = tf.reduce_mean(per_example, axis=list(range(1, per_example.shape.rank)))
        loss_sum = tf.reduce_sum(tf.where(mask > 0, per_example, tf.zeros_like(per_example)) * mask)
        return loss_sum, tf.reduce_sum(mask), clean, mask

    def __call__(
        self,
        y: list[Any],
        y_pred: dict[str, tf.Tensor],
        sample_weight: list[Any],
        *,
        vectorized: bool = False,
    ) -> TaskLossValues:
        """This replica's share of each task loss, the global task losses, the labelled counts and the clean
        labels/masks.

        With ``vectorized=False`` each share depends on its own head only, so its gradient never runs through
        the other heads (what steps that differentiate every task's loss separately need). With
        ``vectorized=True`` the tasks with the same built-in per-example loss and the same output shape are
        computed as one (batch, tasks) tensor op (:func:`vectorizable_groups`): the same values in a number
        of ops that does not grow with the number of tasks, for the steps that differentiate the objective
        once and for evaluation.
        """
        names = self.names
        sums: list[Any] = [None] * len(names)
        counts: list[Any] = [None] * len(names)
        extras: list[Any] = [None] * len(names)
        groups = self.vectorizable_groups(y_pred) if vectorized else []
        for group in groups:
            group_sums, group_counts, clean, mask = self._group_parts(group, y, y_pred, sample_weight)
            for j, i in enumerate(group):
                sums[i] = (group_sums, j)
                counts[i] = (group_counts, j)
                extras[i] = _Column(clean, mask, j)
        for i, name in enumerate(names):
            if sums[i] is None:
                loss_sum, count, clean, mask = self.masked_parts(i, y[i], y_pred[name], sample_weight[i])
                sums[i], counts[i], extras[i] = loss_sum, count, (clean, mask)
        count_vector = _assemble(counts)
        global_counts = all_reduce_sum(count_vector)
        if vectorized:
            share_vector = tf.math.divide_no_nan(_assemble(sums), global_counts)
            shares = tf.unstack(share_vector)
        else:
            # Per task from its own sum: the share's graph reaches its own head only.
            shares = [
                tf.math.divide_no_nan(s, c) for s, c in zip(sums, tf.unstack(global_counts), strict=True)
            ]
            share_vector = tf.stack(shares)
        global_losses = all_reduce_sum(tf.stop_gradient(share_vector))
        return TaskLossValues(shares, share_vector, global_losses, count_vector, _Extras(extras))

    def vectorizable_groups(self, y_pred: dict[str, tf.Tensor]) -> list[list[int]]:
        """Indices of the tasks computed together by ``vectorized`` calls: groups of two or more tasks with
        the same built-in per-example loss (one that reduces over the last axis only, see
        :data:`ELEMENTWISE_LOSSES`; label standardisation may differ), the same kind and the same output
        shape. Other tasks (custom losses, Loss objects) keep their own computation."""
        keys: dict[Any, list[int]] = {}
        for i, (task, fn) in enumerate(zip(self.tasks, self.loss_fns, strict=True)):
            inner = fn.inner if isinstance(fn, StandardizedLoss) else fn
            if not _is_elementwise(inner):
                continue
            shape = tuple(y_pred[task.name].shape[1:])
            if len(shape) != 1 or None in shape:
                continue
            keys.setdefault((inner, task.kind, shape), []).append(i)
        return [group for group in keys.values() if len(group) > 1]

    def _group_parts(
        self, group: list[int], y: list[Any], y_pred: dict[str, tf.Tensor], sample_weight: list[Any]
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
        """A group's (loss sums (G,), labelled counts (G,), clean labels (batch, G, k), masks (batch, G))."""
        first = self.tasks[group[0]]
        multiclass = first.kind == "multiclass"
        preds, labels = [], []
        for i in group:
            task = self.tasks[i]
            pred = tf.cast(y_pred[task.name], tf.float32)
            label = tf.cast(y[i], tf.float32)
            self._check_label_shape(task, label, pred)
            width = 1 if multiclass else int(pred.shape[1:].num_elements())
            if label.shape.rank != 2 or label.shape[-1] != width:
                label = tf.reshape(label, [-1, width])
            preds.append(tf.reshape(pred, [-1, int(pred.shape[1:].num_elements())]))
            labels.append(label)
        pred = tf.stack(preds, axis=1)  # (batch, G, units)
        label = tf.stack(labels, axis=1)  # (batch, G, width)
        missing = tf.math.is_nan(label)
        mask = tf.cast(tf.logical_not(tf.reduce_any(missing, axis=-1)), tf.float32)  # (batch, G)
        weights = [sample_weight[i] for i in group]
        if any(w is not None for w in weights):
            columns = [
                tf.ones_like(mask[:, 0]) if w is None else tf.reshape(tf.cast(w, tf.float32), [-1])
                for w in weights
            ]
            mask = mask * tf.stack(columns, axis=1)
        clean = tf.where(missing, tf.zeros_like(label), label)
        inner = self.loss_fns[group[0]]
        inner = inner.inner if isinstance(inner, StandardizedLoss) else inner
        standardized = [self.loss_fns[i] for i in group]
        if any(isinstance(fn, StandardizedLoss) for fn in standardized):
            mean = tf.constant(
                [[[fn.mean if isinstance(fn, StandardizedLoss) else 0.0] for fn in standardized]], tf.float32
            )
            std = tf.constant(
                [[[fn.std if isinstance(fn, StandardizedLoss) else 1.0] for fn in standardized]], tf.float32
            )
            per_example = inner((clean - mean) / std, (pred - mean) / std)
        else:
            per_example = inner(clean, pred)
        per_example = tf.cast(per_example, tf.float32)  # (batch, G)
        sums = tf.reduce_sum(tf.where(mask > 0, per_example, tf.zeros_like(per_example)) * mask, axis=0)
        return sums, tf.reduce_sum(mask, axis=0), clean, mask


#: Keras's per-example loss functions that reduce over the last axis only, so that ``fn`` on
#: (batch, tasks, units) tensors gives every task's per-example losses at once.
ELEMENTWISE_LOSSES = (
    keras.losses.mean_squared_error,
    keras.losses.mean_absolute_error,
    keras.losses.mean_squared_logarithmic_error,
    keras.losses.binary_crossentropy,
    keras.losses.sparse_categorical_crossentropy,
    keras.losses.huber,
    keras.losses.log_cosh,
    keras.losses.poisson,
)


def _is_elementwise(fn: Any) -> bool:
    return any(fn is known for known in ELEMENTWISE_LOSSES)


def _assemble(parts: list[Any]) -> tf.Tensor:
    """One (T,) vector from per-task scalars and ``(group vector, index)`` pairs, in task order; a single
    group covering every task in order is used as it is (no op)."""
    if all(isinstance(p, tuple) for p in parts):
        vectors = {id(p[0]) for p in parts}
        if len(vectors) == 1 and [p[1] for p in parts] == list(range(len(parts))):
            return parts[0][0]
    cache: dict[int, list[tf.Tensor]] = {}
    scalars = []
    for p in parts:
        if isinstance(p, tuple):
            vector, j = p
            if id(vector) not in cache:
                cache[id(vector)] = tf.unstack(vector)
            scalars.append(cache[id(vector)][j])
        else:
            scalars.append(p)
    return tf.stack(scalars)


class _Column:
    """Task ``j`` of a group's clean labels and mask, sliced only when read."""

    def __init__(self, clean: tf.Tensor, mask: tf.Tensor, j: int) -> None:
        self.clean, self.mask, self.j = clean, mask, j

    def get(self) -> tuple[tf.Tensor, tf.Tensor]:
        return self.clean[:, self.j], self.mask[:, self.j]


class _Extras(Sequence[tuple[tf.Tensor, tf.Tensor]]):
    """Per task (clean labels, mask); the columns of vectorised groups are sliced on first access."""

    def __init__(self, items: list[Any]) -> None:
        self._items = items

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        item = self._items[i]
        if isinstance(item, _Column):
            item = self._items[i] = item.get()
        return item

    def stacked(self, indices: Sequence[int], width: int) -> tuple[tf.Tensor, tf.Tensor]:
        """The clean labels (batch, G, ``width``) and masks (batch, G) of tasks ``indices`` on a task axis:
        a column gather when they are columns of one vectorised group, else the per-task tensors stacked."""
        items = [self._items[i] for i in indices]
        if all(isinstance(item, _Column) for item in items):
            columns = [item.j for item in items]
            first = items[0]
            if all(item.clean is first.clean for item in items) and first.clean.shape[-1] == width:
                if columns == list(range(first.mask.shape[1])):
                    return first.clean, first.mask
                return tf.gather(first.clean, columns, axis=1), tf.gather(first.mask, columns, axis=1)
        pairs = [self[i] for i in indices]
        clean = tf.stack([tf.reshape(c, [-1, width]) for c, _ in pairs], axis=1)
        mask = tf.stack([tf.reshape(m, [-1]) for _, m in pairs], axis=1)
        return clean, mask


@dataclasses.dataclass
class TaskLossValues:
    """What :class:`TaskLosses` computes for a batch.

    ``shares``: this replica's share of each task's masked mean loss (T scalars, recorded on the tape);
    ``share_vector``: the same as one (T,) tensor; ``losses``: the global task losses (T,), constants;
    ``counts``: this replica's labelled count per task (T,), sample weights included; ``extras``: per task
    its clean labels and mask.
    """

    shares: list[tf.Tensor]
    share_vector: tf.Tensor
    losses: tf.Tensor
    counts: tf.Tensor
    extras: Sequence[tuple[tf.Tensor, tf.Tensor]]
