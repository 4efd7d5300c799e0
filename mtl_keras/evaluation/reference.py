"""Classical reference models per task: gradient boosting and a linear model on the same splits and features.

They answer "is the network competitive at all?" next to the single-task networks (Δm stays defined against
the networks). Per task, on the training rows that have its label:

* ``gbdt``: scikit-learn's ``HistGradientBoostingClassifier`` / ``Regressor`` (default settings, seeded).
  Numeric columns go in as they are (NaN is handled natively); text columns (``categorical``, ``id``,
  ``multi_hot`` -- a list cell as one value) and ``integer_categorical`` columns are ordinal-encoded and
  declared categorical, so the trees split on them natively; beyond :data:`MAX_CATEGORIES` values the rarest
  are grouped into one.
* ``linear``: ``LogisticRegression`` (L2, ``C = 1``) / ``Ridge`` (``alpha = 1``) on standardised numeric columns
  (NaN -> the training median plus a missing indicator) and one-hot text columns (at most
  :data:`MAX_ONE_HOT` values per column, the rest grouped).

Vector inputs (a 2-D array per example row) are numeric columns; image inputs are not tabular and get no
reference models (the report says so). The training rows are a uniform seeded sample of at most
``max_rows`` rows when the training split is larger (the report states the rows used); the test split is
scored whole, with the task's own Keras metrics and loss on its labelled rows, so the numbers are the same
quantities as the networks' rows.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from mtl_keras.evaluation.report import REFERENCE_LABELS
from mtl_keras.tasks import Task

logger = logging.getLogger(__name__)

#: The reference models, in the order they are reported.
REFERENCE_MODELS = ("gbdt", "linear")
#: Default cap on the training rows a reference model is fitted on.
MAX_ROWS = 200_000
#: Most distinct values of a categorical column the trees see (the rest grouped; HGB allows 255 bins).
MAX_CATEGORIES = 250
#: Most one-hot columns per text column in the linear model (the rest grouped).
MAX_ONE_HOT = 200

_BATCH = 8192
#: Below this many training rows the models are fitted on one thread.
_PARALLEL_ROWS = 50_000


def _concatenate(parts: list[Any]) -> Any:
    if isinstance(parts[0], dict):
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return np.concatenate(parts)


def _take(part: Any, index: np.ndarray) -> Any:
    return {k: v[index] for k, v in part.items()} if isinstance(part, dict) else part[index]


def _collect(
    dataset: Any, split: str, max_rows: int | None, seed: int
) -> tuple[Any, dict[str, np.ndarray], int]:
    """``(x, y, rows seen)`` of ``split`` as NumPy: x a dict of 1-D columns or a 2-D array; with ``max_rows``
    a uniform sample of that many rows (the ones with the smallest seeded random keys), in file order."""
    rng = np.random.default_rng(seed)
    parts_x: list[Any] = []
    parts_y: list[dict[str, np.ndarray]] = []
    parts_keys: list[np.ndarray] = []
    held = seen = 0

    def sample() -> tuple[Any, dict[str, np.ndarray], np.ndarray]:
        """The held rows reduced to the ``max_rows`` with the smallest keys, in file order."""
        x, y, keys = _concatenate(parts_x), _concatenate(parts_y), np.concatenate(parts_keys)
        if max_rows is None or len(keys) <= max_rows:
            return x, y, keys
        chosen = np.sort(np.argpartition(keys, max_rows)[:max_rows])
        return _take(x, chosen), _take(y, chosen), keys[chosen]

    for batch in dataset.batches(split, _BATCH):
        x, y = batch[0], batch[1]
        if isinstance(x, Mapping):
            x_np: Any = {k: np.asarray(v).reshape(len(v), -1)[:, 0] for k, v in x.items()}
            n = len(next(iter(x_np.values())))
        else:
            x_np = np.asarray(x)
            n = len(x_np)
        parts_x.append(x_np)
        parts_y.append({k: np.asarray(v, dtype=np.float64).reshape(n, -1)[:, 0] for k, v in y.items()})
        parts_keys.append(rng.random(n) if max_rows is not None else np.zeros(n))
        held += n
        seen += n
        if max_rows is not None and held > 2 * max_rows:  # memory bounded by the sample, not the split
            kept = sample()
            parts_x, parts_y, parts_keys = [kept[0]], [kept[1]], [kept[2]]
            held = len(kept[2])
    if not parts_x:
        raise ValueError(f"Expected rows in the {split!r} split to fit reference models on. Received none.")
    x_all, y_all, _ = sample()
    return x_all, y_all, seen


def _text(values: np.ndarray) -> np.ndarray:
    return np.array([v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values], dtype=object)


class _Features:
    """Turns collected columns into the two models' design matrices (fitted on the training rows)."""

    def __init__(self, kinds: Mapping[str, str] | None, x_train: Any) -> None:
        from sklearn.compose import ColumnTransformer
        from sklearn.impute import SimpleImputer
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

        if kinds is None:  # a dense vector per example: every position numeric
            width = np.asarray(x_train).shape[1]
            self.names = [f"x{i}" for i in range(width)]
            self.categorical: list[str] = []
        else:
            self.names = list(kinds)
            self.categorical = [n for n in self.names if kinds[n] != "numeric"]
        numeric = [n for n in self.names if n not in self.categorical]
        self.kinds = kinds
        frame = self.frame(x_train)
        trees = (
            [
                (
                    "categorical",
                    OrdinalEncoder(
                        handle_unknown="use_encoded_value",
                        unknown_value=np.nan,
                        encoded_missing_value=np.nan,
                        max_categories=MAX_CATEGORIES,
                    ),
                    self.categorical,
                )
            ]
            if self.categorical
            else []
        )
        self.tree_columns = ColumnTransformer(
            [*trees, ("numeric", "passthrough", numeric)], sparse_threshold=0.0
        )
        self.tree_train = self.tree_columns.fit_transform(frame).astype(np.float64)
        self.tree_categorical = np.arange(self.tree_train.shape[1]) < len(self.categorical)
        linear = (
            [
                (
                    "categorical",
                    OneHotEncoder(handle_unknown="infrequent_if_exist", max_categories=MAX_ONE_HOT),
                    self.categorical,
                )
            ]
            if self.categorical
            else []
        )
        if numeric:
            linear.append(
                (
                    "numeric",
                    make_pipeline(SimpleImputer(strategy="median", add_indicator=True), StandardScaler()),
                    numeric,
                )
            )
        self.linear_columns = ColumnTransformer(linear, sparse_threshold=0.3)
        self.linear_train = self.linear_columns.fit_transform(frame)

    def frame(self, x: Any) -> Any:
        import pandas as pd

        if self.kinds is None:
            return pd.DataFrame(np.asarray(x, dtype=np.float64).reshape(len(x), -1), columns=self.names)
        columns = {}
        for name in self.names:
            values = np.asarray(x[name])
            if name in self.categorical:
                columns[name] = (
                    _text(values) if values.dtype.kind in "OSU" else values.astype(np.int64).astype(str)
                )
            else:
                columns[name] = values.astype(np.float64)
        return pd.DataFrame(columns)

    def tree(self, x: Any) -> np.ndarray:
        return np.asarray(self.tree_columns.transform(self.frame(x)), dtype=np.float64)

    def linear(self, x: Any) -> Any:
        return self.linear_columns.transform(self.frame(x))


def _estimator(model: str, task: Task, categorical: np.ndarray, seed: int) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.linear_model import LogisticRegression, Ridge

    regression = task.kind == "regression"
    if model == "gbdt":
        options = {"categorical_features": categorical if categorical.any() else None, "random_state": seed}
        return (
            HistGradientBoostingRegressor(**options)
            if regression
            else HistGradientBoostingClassifier(**options)
        )
    return Ridge(alpha=1.0) if regression else LogisticRegression(C=1.0, max_iter=2000)


def _predict(estimator: Any, task: Task, features: Any) -> np.ndarray:
    """Predictions shaped as the task's head outputs them: ``(n, 1)`` values or probabilities, ``(n, K)``."""
    if task.kind == "regression":
        return np.asarray(estimator.predict(features), dtype=np.float64).reshape(-1, 1)
    proba = np.asarray(estimator.predict_proba(features), dtype=np.float64)
    classes = np.asarray(estimator.classes_).astype(np.int64)
    width = 1 if task.kind == "binary" else task.output_units
    if task.kind == "binary":
        positive = np.flatnonzero(classes == 1)
        return proba[:, positive] if positive.size else np.zeros((len(proba), 1))
    full = np.zeros((len(proba), width))
    full[:, classes] = proba
    return full


def _score(task: Task, y: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
    """The task's Keras metrics and mean loss on the labelled rows (names as in the networks' results)."""
    import keras

    labels = y.reshape(-1, 1).astype(np.float32)
    result: dict[str, float] = {}
    for metric in task.get_metrics():
        metric.update_state(labels, predictions.astype(np.float32))
        result[metric.name.removeprefix(f"{task.name}_")] = float(keras.ops.convert_to_numpy(metric.result()))
    loss = task.get_loss()(labels, predictions.astype(np.float32))
    result["loss"] = float(np.mean(keras.ops.convert_to_numpy(loss)))
    return result


def fit_reference_models(
    dataset: Any,
    tasks: Sequence[Task],
    models: Sequence[str] = REFERENCE_MODELS,
    *,
    max_rows: int | None = MAX_ROWS,
    seed: int = 0,
    split: str = "test",
) -> dict[str, Any]:
    """Fit the reference ``models`` per task on ``dataset``'s training split and score them on ``split``.

    Args:
        dataset: a data set of :mod:`mtl_keras.data` (its ``input_spec`` says whether it is tabular).
        tasks: the tasks (their labels, metrics and losses).
        models: any of :data:`REFERENCE_MODELS`.
        max_rows: cap on the training rows (a uniform seeded sample); None fits on all.
        seed: seed of the sample and of the boosting.
        split: the split scored.

    Returns:
        ``{"models": {model: {task: {metric: value}}}, "train_rows": int, "train_rows_total": int,
        "seconds": {model: float}}``, or ``{"skipped": reason}`` for inputs that are not tabular.
    """
    unknown = [m for m in models if m not in REFERENCE_MODELS]
    if unknown:
        raise ValueError(f"Expected reference models among {list(REFERENCE_MODELS)}. Received: {unknown}")
    spec = dataset.input_spec()
    columns = getattr(spec, "columns", None)
    if columns is not None:
        kinds: dict[str, str] | None = {n: c.kind for n, c in columns.items() if c.kind != "skip"}
    elif isinstance(spec, int):
        kinds = None
    else:
        reason = f"inputs of shape {spec!r} are not tabular columns"
        logger.info("No reference models: %s.", reason)
        return {"skipped": reason}
    x_train, y_train, total = _collect(dataset, "train", max_rows, seed)
    x_test, y_test, _ = _collect(dataset, split, None, seed)
    rows = len(next(iter(y_train.values())))
    if rows < total:
        logger.info("Reference models fitted on a uniform sample of %d of %d training rows.", rows, total)
    features = _Features(kinds, x_train)
    design = {
        "gbdt": (features.tree_train, features.tree),
        "linear": (features.linear_train, features.linear),
    }
    results: dict[str, dict[str, dict[str, float]]] = {}
    seconds: dict[str, float] = {}
    for model in models:
        start = time.perf_counter()
        train_matrix, transform = design[model]
        test_matrix = transform(x_test)
        results[model] = {}
        for task in tasks:
            labelled = ~np.isnan(y_train[task.name])
            tested = ~np.isnan(y_test[task.name])
            if (
                labelled.sum() < 2
                or len(np.unique(y_train[task.name][labelled])) < (1 if task.kind == "regression" else 2)
                or not tested.any()
            ):
                logger.warning("Reference %s: task %r has too few labelled rows; left out.", model, task.name)
                continue
            estimator = _estimator(model, task, features.tree_categorical, seed)
            target = y_train[task.name][labelled]
            # OpenMP threads on small data mostly wait on each other (and on a busy machine, badly).
            with threadpool_limits(limits=1 if rows < _PARALLEL_ROWS else None):
                estimator.fit(
                    train_matrix[labelled], target if task.kind == "regression" else target.astype(np.int64)
                )
            predictions = _predict(estimator, task, test_matrix[tested])
            results[model][task.name] = _score(task, y_test[task.name][tested], predictions)
        seconds[model] = time.perf_counter() - start
        logger.info("Reference %s fitted and scored in %.1f s.", REFERENCE_LABELS[model], seconds[model])
    return {"models": results, "train_rows": rows, "train_rows_total": total, "seconds": seconds}


__all__ = ["MAX_ROWS", "REFERENCE_MODELS", "fit_reference_models"]
