"""Containers for multi-task data: `Split` (one set of examples) and `MultiTaskDataset` (tasks + 3 splits).

Labels are always a dict ``{task name: float32 array}`` with NaN marking a missing label, so data sets whose
examples are labelled for only some tasks (and batches mixed from several data sets, see
:mod:`mtl_keras.data.sampling`) need no special case.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mtl_keras.data.columns import COLUMN_KINDS, KIND_ALIASES
from mtl_keras.tasks import Task

#: Inputs: one dense array (vectors or NHWC images) or a dict of raw feature columns.
Inputs = np.ndarray | dict[str, np.ndarray]

#: Feature kinds a `MultiTaskDataset.features` entry may take (those of a column spec, and the older
#: name ``string_categorical`` for ``categorical``).
FEATURE_KINDS = (*COLUMN_KINDS, *KIND_ALIASES)


def _check_positive_int(name: str, value: Any, *, allow_zero: bool = False) -> int:
    """Return ``value`` as an int, or raise a ValueError naming the argument."""
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if ok and (value > 0 or (allow_zero and value == 0)):
        return int(value)
    expected = "a non-negative integer" if allow_zero else "a positive integer"
    raise ValueError(f"Expected `{name}` to be {expected}. Received: {name}={value!r}")


def _check_fraction(name: str, value: Any) -> float:
    """Return ``value`` as a float in the open interval (0, 1), or raise a ValueError naming the argument."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok and 0.0 < float(value) < 1.0:
        return float(value)
    raise ValueError(
        f"Expected `{name}` to be a number in the open interval (0, 1). Received: {name}={value!r}"
    )


def _check_seed(value: Any) -> int:
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and int(value) >= 0:
        return int(value)
    raise ValueError(f"Expected `seed` to be a non-negative integer. Received: seed={value!r}")


def _num_rows(array: np.ndarray, what: str) -> int:
    if array.ndim == 0:
        raise ValueError(f"Expected {what} to have a leading example dimension. Received a scalar: {array!r}")
    return int(array.shape[0])


@dataclasses.dataclass(eq=False)  # arrays: compare contents explicitly
class Split:
    """One set of examples: inputs ``x`` and per-task labels ``y``.

    Args:
        x: a float32 array (dense vectors ``(n, d)`` or images ``(n, H, W, C)``), or a dict
            ``{feature name: array}`` of raw feature columns (strings as str/object arrays, numbers as
            float32 / int64 arrays), each with ``n`` rows.
        y: ``{task name: labels}``; labels are converted to float32, NaN marks a missing label. Shape ``(n,)``
            for one output (class indices for multiclass tasks) or ``(n, units)``.
    """

    x: Inputs
    y: dict[str, np.ndarray]

    def __post_init__(self) -> None:
        if isinstance(self.x, Mapping):
            if not self.x:
                raise ValueError("Expected `x` to hold at least one feature. Received an empty dict.")
            self.x = {str(k): np.asarray(v) for k, v in self.x.items()}
            sizes = {k: _num_rows(v, f"feature {k!r}") for k, v in self.x.items()}
        else:
            self.x = np.asarray(self.x)
            sizes = {"x": _num_rows(self.x, "`x`")}
        if not isinstance(self.y, Mapping) or not self.y:
            raise ValueError(
                f"Expected `y` to be a non-empty dict {{task name: labels}}. Received: y={self.y!r}"
            )
        self.y = {str(k): np.asarray(v, dtype=np.float32) for k, v in self.y.items()}
        sizes.update({f"y[{k!r}]": _num_rows(v, f"labels of task {k!r}") for k, v in self.y.items()})
        if len(set(sizes.values())) > 1:
            raise ValueError(
                f"Expected every input and label array to have the same length. Received: {sizes}"
            )

    def __len__(self) -> int:
        return int(next(iter(self.y.values())).shape[0])

    @property
    def task_names(self) -> list[str]:
        return list(self.y)

    def take(self, indices: Sequence[int] | np.ndarray) -> Split:
        """A new `Split` with the examples at ``indices`` (in that order)."""
        index = np.asarray(indices)
        if index.ndim != 1 or not (np.issubdtype(index.dtype, np.integer) or index.size == 0):
            raise ValueError(
                f"Expected `indices` to be a 1-D sequence of integers. Received: indices with shape "
                f"{index.shape} and dtype {index.dtype}"
            )
        index = index.astype(np.int64)
        if index.size and (index.min() < -len(self) or index.max() >= len(self)):
            raise ValueError(
                f"Expected `indices` in [0, {len(self)}). Received: min={index.min()}, max={index.max()}"
            )
        if isinstance(self.x, dict):
            x: Inputs = {k: v[index] for k, v in self.x.items()}
        else:
            x = self.x[index]
        return Split(x=x, y={k: v[index] for k, v in self.y.items()})


@dataclasses.dataclass(eq=False)  # arrays: compare contents explicitly
class MultiTaskDataset:
    """Tasks plus train / validation / test splits.

    Args:
        name: data set name (a key of :data:`mtl_keras.data.DATASETS` for the bundled ones).
        tasks: the tasks; every split's ``y`` has exactly these task names.
        train, validation, test: the splits.
        features: for dict inputs, ``{raw feature name: kind}`` with kind one of :data:`FEATURE_KINDS`;
            None for dense / image inputs.
        description: free text (source, license, how it was built).
    """

    name: str
    tasks: list[Task]
    train: Split
    validation: Split
    test: Split
    features: dict[str, str] | None = None
    description: str = ""

    def __post_init__(self) -> None:
        self.tasks = list(self.tasks)
        if not self.tasks or not all(isinstance(t, Task) for t in self.tasks):
            raise ValueError(
                f"Expected `tasks` to be a non-empty list of Task. Received: tasks={self.tasks!r}"
            )
        names = [t.name for t in self.tasks]
        for split_name, split in self.splits.items():
            if not isinstance(split, Split):
                raise ValueError(f"Expected `{split_name}` to be a Split. Received: {split_name}={split!r}")
            if sorted(split.y) != sorted(names):
                raise ValueError(
                    f"Expected the labels of split `{split_name}` to be exactly the tasks {names}. "
                    f"Received: {sorted(split.y)}"
                )
        is_dict = [isinstance(s.x, dict) for s in self.splits.values()]
        if len(set(is_dict)) > 1:
            raise ValueError("Expected all splits to have the same kind of inputs (all dicts or all arrays).")
        if self.features is None:
            if is_dict[0]:
                raise ValueError(
                    "Expected `features` ({name: kind}) for dict inputs. Received: features=None"
                )
            return
        if not is_dict[0]:
            raise ValueError(
                "`features` describes dict inputs, but the splits hold arrays. "
                f"Received: features={self.features!r}"
            )
        for feature, kind in self.features.items():
            if kind not in FEATURE_KINDS:
                raise ValueError(
                    f"Expected the kind of feature {feature!r} to be one of {list(FEATURE_KINDS)}. "
                    f"Received: {kind!r}"
                )
        for split_name, split in self.splits.items():
            assert isinstance(split.x, dict)
            if sorted(split.x) != sorted(self.features):
                raise ValueError(
                    f"Expected the inputs of split `{split_name}` to be exactly the features "
                    f"{sorted(self.features)}. Received: {sorted(split.x)}"
                )

    @property
    def splits(self) -> dict[str, Split]:
        return {"train": self.train, "validation": self.validation, "test": self.test}

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    # --- what training reads (the same methods as a streamed data set) ---

    def num_examples(self, split: str) -> int:
        """The number of examples of ``split``."""
        return len(self.splits[split])

    def input_spec(self) -> Any:
        """A builder's ``inputs``: raw features adapted on the training split, a vector width or a shape."""
        from mtl_keras.builders.inputs import RawFeatures

        if self.features is not None:
            assert isinstance(self.train.x, dict)
            return RawFeatures(self.features, self.train.x)
        x = np.asarray(self.train.x)
        return int(x.shape[1]) if x.ndim == 2 else tuple(int(d) for d in x.shape[1:])

    def batches(self, split: str, batch_size: int) -> Any:
        """``split`` as a batched ``tf.data.Dataset`` of ``(x, y)`` in order (evaluation)."""
        from mtl_keras.data.pipeline import to_dataset

        return to_dataset(self.splits[split], batch_size)

    def training_stream(self, spec: Any, *, epochs: int, start_step: int = 0) -> Any:
        """The training batches of global steps ``start_step, …`` (see :mod:`mtl_keras.distribute.stream`)."""
        from mtl_keras.distribute.stream import training_stream

        return training_stream(self.train, spec, epochs=epochs, start_step=start_step)

    def examples(self, split: str, count: int) -> Inputs:
        """The model inputs of the first ``count`` examples of ``split`` (request examples of an export)."""
        from mtl_keras.data.pipeline import model_inputs

        part = self.splits[split]
        return model_inputs(part.take(np.arange(min(count, len(part)))).x)

    def label_arrays(self, split: str) -> dict[str, np.ndarray]:
        """The labels of ``split``."""
        return dict(self.splits[split].y)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}={len(v)}" for k, v in self.splits.items())
        return f"MultiTaskDataset(name={self.name!r}, tasks={self.task_names}, {sizes})"


def split_validation(split: Split, fraction: float, seed: int = 0) -> tuple[Split, Split]:
    """Carve a validation split out of ``split``: returns ``(train, validation)``.

    ``round(fraction * len(split))`` examples (at least 1, at most ``len(split) - 1``) chosen by a
    permutation from ``numpy.random.default_rng(seed)`` go to validation; both parts keep the original order.
    """
    fraction = _check_fraction("fraction", fraction)
    seed = _check_seed(seed)
    n = len(split)
    if n < 2:
        raise ValueError(
            f"Expected `split` to have at least 2 examples to carve a validation split. Received: {n}"
        )
    num_validation = min(max(round(fraction * n), 1), n - 1)
    permutation = np.random.default_rng(seed).permutation(n)
    validation = np.sort(permutation[:num_validation])
    train = np.sort(permutation[num_validation:])
    return split.take(train), split.take(validation)
