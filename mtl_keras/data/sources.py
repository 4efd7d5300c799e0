"""A user's own data as a :class:`~mtl_keras.data.streamed.StreamedDataset`: :func:`from_csv`,
:func:`from_parquet`, :func:`from_tfrecord`, :func:`from_dataframe`, :func:`from_dataset`.

Each reads its table once, in chunks, before anything is trained (:func:`build_dataset`): it assigns every row
to a split, checks every feature and label value (a one-line ``ValueError`` naming the file, the column or task,
the value and its row), counts the rows of each split, and computes the training statistics (normalisation,
medians for missing values, vocabularies) that the model's preprocessing layers are built from. Feature kinds
not given in ``features`` are inferred from those statistics (:func:`mtl_keras.data.columns.infer_columns`).

``tasks`` maps each task name to its label: a kind (``"binary"``, ``"multiclass"``, ``"regression"``; the
column is the task's name) or a mapping of :class:`~mtl_keras.data.labels.LabelSpec` fields
(``{kind: binary, column: y, positive: "yes"}``).

Splits: ``test`` (and ``validation``) files of their own, or ``split`` from the training files:
``{validation: 0.1, test: 0.2, seed: 0}`` (random; the defaults: validation 0.1, and test 0.2 when there is no
test file) or ``{column: date, validation_from: "2024-01-01", test_from: "2024-03-01"}`` (temporal).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from mtl_keras._registry import suggest
from mtl_keras.data.columns import ColumnSpec, infer_columns
from mtl_keras.data.labels import LabelCheck, LabelSpec, LabelStats, check_has_labels, make_task
from mtl_keras.data.splitting import SPLIT_NAMES, TEST, TRAIN, VALIDATION, SplitRule, assign
from mtl_keras.data.statistics import StatisticsPass, check_numeric_columns
from mtl_keras.data.streamed import TEXT_KINDS, SplitSource, StreamedDataset, number_to_text
from mtl_keras.data.tables import (
    CsvPart,
    DatasetPart,
    FramePart,
    ParquetPart,
    Part,
    TFRecordPart,
    expand_paths,
)

logger = logging.getLogger("mtl_keras")

_DEFAULT_VALIDATION = 0.1
_DEFAULT_TEST = 0.2


def _label_specs(tasks: Mapping[str, Any]) -> dict[str, LabelSpec]:
    if not isinstance(tasks, Mapping) or not tasks:
        raise ValueError(
            "Expected `tasks` to be a non-empty mapping {task name: kind or {kind, column, ...}}. "
            f"Received: tasks={tasks!r}"
        )
    specs = {}
    for name, value in tasks.items():
        if isinstance(value, LabelSpec):
            spec = value
        elif isinstance(value, str):
            spec = LabelSpec(name=str(name), kind=value)  # type: ignore[arg-type]
        elif isinstance(value, Mapping):
            spec = LabelSpec(name=str(name), **{str(k): v for k, v in value.items()})
        else:
            raise ValueError(f"Expected task {name!r} to be a kind or a mapping. Received: {value!r}")
        specs[str(name)] = spec
    return specs


def _split_rule(split: Mapping[str, Any] | None, *, has_test: bool, has_validation: bool) -> SplitRule | None:
    options = dict(split or {})
    allowed = ["validation", "test", "seed", "column", "validation_from", "test_from"]
    unknown = [k for k in options if k not in allowed]
    if unknown:
        raise ValueError(
            f"Unknown split option {unknown[0]!r}; expected one of {allowed}."
            + suggest(str(unknown[0]), allowed)
        )
    if has_test and options.get("test"):
        raise ValueError("`split.test` cannot be combined with a test file of its own.")
    if has_validation and options.get("validation"):
        raise ValueError("`split.validation` cannot be combined with a validation file of its own.")
    if options.get("column") is None:
        options.setdefault("validation", 0.0 if has_validation else _DEFAULT_VALIDATION)
        options.setdefault("test", 0.0 if has_test else _DEFAULT_TEST)
    if has_test and has_validation and options.get("column") is None:
        return None
    return SplitRule(**options)


#: A column whose non-missing values are at least this fraction numbers is numeric: its text values are errors.
NUMERIC_MIN_FRACTION = 0.9


@dataclasses.dataclass
class _TextCheck:
    """Per column of one file: the first non-numeric text (value, row), and how many values are numbers/text."""

    first: dict[str, tuple[str, int]] = dataclasses.field(default_factory=dict)
    numbers: dict[str, int] = dataclasses.field(default_factory=dict)
    texts: dict[str, int] = dataclasses.field(default_factory=dict)

    def update(self, column: str, values: np.ndarray, row_offset: int) -> None:
        if values.dtype != object:
            self.numbers[column] = self.numbers.get(column, 0) + int(np.count_nonzero(~np.isnan(values)))
            return
        import pandas as pd

        from mtl_keras.data.statistics import MISSING_TOKENS

        text = pd.Series(values, dtype=object).astype(str).str.strip()
        missing = text.str.lower().isin(MISSING_TOKENS).to_numpy()
        parsed = pd.to_numeric(text.where(~missing, "0"), errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(parsed)
        self.numbers[column] = self.numbers.get(column, 0) + int(np.count_nonzero(~bad & ~missing))
        self.texts[column] = self.texts.get(column, 0) + int(np.count_nonzero(bad))
        where = np.flatnonzero(bad)
        if where.size and column not in self.first:
            self.first[column] = (str(values[where[0]]), row_offset + int(where[0]) + 1)


def _numeric_text_error(
    checks: Sequence[tuple[Part, _TextCheck]], columns: Mapping[str, ColumnSpec], overrides: Mapping[str, Any]
) -> None:
    """A numeric column with text in any file, or a mostly-numeric column with some text, is an error."""
    numbers: dict[str, int] = {}
    texts: dict[str, int] = {}
    for _, check in checks:
        for column, count in check.numbers.items():
            numbers[column] = numbers.get(column, 0) + count
        for column, count in check.texts.items():
            texts[column] = texts.get(column, 0) + count
    for part, check in checks:
        for column, (value, row) in check.first.items():
            if column not in columns:
                continue
            kind = columns[column].kind
            total = numbers.get(column, 0) + texts.get(column, 0)
            mostly = (
                column not in overrides and total and numbers.get(column, 0) / total >= NUMERIC_MIN_FRACTION
            )
            if kind == "numeric" or mostly:
                hint = (
                    ""
                    if kind == "numeric"
                    else (
                        f"; {numbers[column]} of {total} values are numbers (set features.{column}: categorical "
                        "if it is a category)"
                    )
                )
                raise ValueError(
                    f"{part.source}, column {column!r}: numeric feature has non-numeric text {value!r} "
                    f"(row {row}){hint}"
                )


def _check_columns(
    part: Part, needed: Iterable[str], labels: Mapping[str, LabelSpec], weight_column: str | None
) -> None:
    columns = part.columns()
    for task, spec in labels.items():
        column = spec.label_column
        if column not in columns:
            raise ValueError(
                f"{part.source}: task {task!r} has label column {column!r}, which is not a column; "
                f"columns are {columns}." + suggest(column, columns)
            )
    if weight_column is not None and weight_column not in columns:
        raise ValueError(
            f"{part.source}: weight column {weight_column!r} is not a column; columns are {columns}."
            + suggest(weight_column, columns)
        )
    for column in needed:
        if column not in columns:
            raise ValueError(
                f"{part.source}: column {column!r} (a feature of the training data) is missing; "
                f"columns are {columns}." + suggest(column, columns)
            )


def _check_weights(part: Part, column: str, values: np.ndarray, row_offset: int) -> None:
    import pandas as pd

    numbers = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(numbers) | (numbers < 0))
    if bad.size:
        raise ValueError(
            f"{part.source}, weight column {column!r}: expected a non-negative number in every row, "
            f"got {values[bad[0]]!r} (row {row_offset + int(bad[0]) + 1})"
        )


def build_dataset(
    train: Sequence[Part],
    tasks: Mapping[str, Any],
    *,
    test: Sequence[Part] | None = None,
    validation: Sequence[Part] | None = None,
    split: Mapping[str, Any] | None = None,
    features: Mapping[str, Any] | None = None,
    weight_column: str | None = None,
    name: str = "data",
    shuffle_buffer: int = 10_000,
) -> StreamedDataset:
    """Check ``train`` (and ``test`` / ``validation``) in one streaming pass and return the data set."""
    labels = _label_specs(tasks)
    rule = _split_rule(split, has_test=bool(test), has_validation=bool(validation))
    label_columns = [spec.label_column for task, spec in labels.items()]
    reserved = set(label_columns)
    reserved |= {weight_column} if weight_column is not None else set()
    reserved |= {rule.column} if rule is not None and rule.column is not None else set()
    first = train[0]
    header = first.columns()
    _check_columns(first, [], labels, weight_column)
    if rule is not None and rule.temporal and rule.column not in header:
        raise ValueError(
            f"{first.source}: temporal split column {rule.column!r} is not a column; columns are {header}."
            + suggest(str(rule.column), header)
        )
    overrides = dict(features or {})
    for column in overrides:
        if column not in header or column in reserved:
            candidates = [c for c in header if c not in reserved]
            raise ValueError(
                f"features.{column}: no such feature column in {first.source}; expected one of {candidates}."
                + suggest(str(column), candidates)
            )
    feature_columns = [c for c in header if c not in reserved and _override_kind(overrides.get(c)) != "skip"]
    text_overrides = {c for c in feature_columns if _override_kind(overrides.get(c)) in TEXT_KINDS}

    train_stats = StatisticsPass(feature_columns)
    checks: dict[str, dict[str, LabelCheck]] = {s: {} for s in ("all", *SPLIT_NAMES)}
    for task, spec in labels.items():
        for key in checks:
            checks[key][task] = LabelCheck(spec, first.source)
    counts = dict.fromkeys(SPLIT_NAMES, 0)
    text_checks: list[tuple[Part, _TextCheck]] = []
    file_sets = [("train", train), ("test", test or []), ("validation", validation or [])]
    for set_name, parts in file_sets:
        for part_index, part in enumerate(parts):
            _check_columns(part, feature_columns, labels, weight_column)
            text = _TextCheck()
            text_checks.append((part, text))
            offset = 0
            for chunk in part.chunks():
                count = len(next(iter(chunk.values()))) if chunk else 0
                if count == 0:
                    continue
                for column in text_overrides:
                    if chunk[column].dtype != object:
                        chunk[column] = np.array(
                            [v.decode() for v in number_to_text(chunk[column]).numpy()], dtype=object
                        )
                if set_name == "train" and rule is not None:
                    column_values = chunk[rule.column] if rule.column is not None else None
                    codes = assign(rule, part_index, offset, count, column_values)
                else:
                    codes = np.full(count, {"train": TRAIN, "test": TEST, "validation": VALIDATION}[set_name])
                for column in feature_columns:
                    text.update(column, chunk[column], offset)
                if weight_column is not None:
                    _check_weights(part, weight_column, chunk[weight_column], offset)
                for task, spec in labels.items():
                    values = chunk[spec.label_column]
                    check = checks["all"][task]
                    check.source = part.source
                    check.update(values, offset)
                    for code, split_name in enumerate(SPLIT_NAMES):
                        mask = codes == code
                        if mask.any():
                            checks[split_name][task].update(values[mask], 0)
                train_mask = codes == TRAIN
                if train_mask.any():
                    train_stats.update({c: chunk[c][train_mask] for c in feature_columns}, offset)
                for code, split_name in enumerate(SPLIT_NAMES):
                    counts[split_name] += int(np.sum(codes == code))
                offset += count
            if offset == 0:
                raise ValueError(f"{part.source} has no rows after the header.")
    for split_name in SPLIT_NAMES:
        if counts[split_name] == 0:
            raise ValueError(
                f"The {split_name} split of {first.source} is empty; give more rows, a {split_name} file, "
                "or other `split` fractions."
            )
    statistics = train_stats.result()
    skipped = {c: o for c, o in overrides.items() if _override_kind(o) == "skip"}
    used = {c: o for c, o in overrides.items() if c not in skipped}
    columns: dict[str, ColumnSpec] = infer_columns(statistics, used, exclude=reserved)
    columns.update({c: ColumnSpec(kind="skip") for c in skipped})
    _numeric_text_error(text_checks, columns, overrides)
    check_numeric_columns(columns, statistics, first.source)
    label_stats: dict[str, LabelStats] = {}
    task_list = []
    for task, spec in labels.items():
        whole = checks["all"][task].result()
        per_split = {s: checks[s][task].result() for s in SPLIT_NAMES}
        check_has_labels(per_split["train"], spec, "train", first.source)
        for split_name in ("validation", "test"):
            if per_split[split_name].labelled == 0:
                logger.warning(
                    "Task %r has no labels in the %s split: its %s metrics are reported as missing.",
                    task,
                    split_name,
                    split_name,
                )
        stats = _training_label_stats(whole, per_split["train"])
        label_stats[task] = stats
        task_list.append(make_task(spec, stats))
    sources = _split_sources(train, test, validation, rule, counts)
    dataset = StreamedDataset(
        name=name,
        tasks=task_list,
        columns=columns,
        statistics=statistics,
        labels=labels,
        label_stats=label_stats,
        splits_=sources,
        weight_column=weight_column,
        shuffle_buffer=shuffle_buffer,
        description=f"{first.source}: " + ", ".join(f"{s} {counts[s]} rows" for s in SPLIT_NAMES),
    )
    _log_columns(dataset)
    return dataset


def _override_kind(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, ColumnSpec):
        return value.kind
    if isinstance(value, Mapping):
        kind = value.get("kind")
        return kind if isinstance(kind, str) else None
    return None


def _training_label_stats(whole: LabelStats, train: LabelStats) -> LabelStats:
    """The label encoding of all rows (classes seen anywhere), the counts and moments of the training rows."""
    return dataclasses.replace(
        whole, labelled=train.labelled, rows=train.rows, mean=train.mean, std=train.std
    )


def _split_sources(
    train: Sequence[Part],
    test: Sequence[Part] | None,
    validation: Sequence[Part] | None,
    rule: SplitRule | None,
    counts: Mapping[str, int],
) -> dict[str, SplitSource]:
    indexed = list(enumerate(train))
    sources = {}
    for code, split_name in enumerate(SPLIT_NAMES):
        own = {"test": test, "validation": validation}.get(split_name)
        if own:
            sources[split_name] = SplitSource(list(enumerate(own)), None, code, counts[split_name])
        else:
            sources[split_name] = SplitSource(indexed, rule, code, counts[split_name])
    return sources


def _log_columns(dataset: StreamedDataset) -> None:
    from mtl_keras.data.columns import describe_columns

    logger.info("%s\n%s", dataset.description, describe_columns(dataset.columns, dataset.statistics))
    for name, spec in dataset.columns.items():
        stats = dataset.statistics.get(name)
        if stats is not None and spec.kind == "numeric" and stats.missing:
            logger.info(
                "Column %r: %d missing values in the training split, imputed with the training median %.6g "
                "(plus a missing indicator).",
                name,
                stats.missing,
                stats.median,
            )


# --- entry points ---------------------------------------------------------------------------------------


def _files(paths: str | Sequence[str] | None, what: str, make: Any) -> list[Part] | None:
    if paths is None:
        return None
    return [make(path) for path in expand_paths(paths, what)]


def _from_files(
    make: Any,
    path: str | list[str],
    tasks: dict[str, Any],
    test: str | list[str] | None,
    validation: str | list[str] | None,
    name: str | None,
    **options: Any,
) -> StreamedDataset:
    """:func:`build_dataset` over the parts ``make`` reads from each file of ``path``, ``test``, ``validation``."""
    train = _files(path, "data file", make)
    assert train is not None
    return build_dataset(
        train,
        tasks,
        test=_files(test, "test file", make),
        validation=_files(validation, "validation file", make),
        name=name or _stem(train[0]),
        **options,
    )


def from_csv(
    path: str | list[str],
    tasks: dict[str, Any],
    *,
    test: str | list[str] | None = None,
    validation: str | list[str] | None = None,
    split: dict[str, Any] | None = None,
    features: dict[str, Any] | None = None,
    weight_column: str | None = None,
    delimiter: str = ",",
    name: str | None = None,
    shuffle_buffer: int = 10_000,
) -> StreamedDataset:
    """CSV files with a header line (a path, a glob such as ``data/part-*.csv``, or a list; ``.gz`` is gzip).

    Args:
        path: the training file(s); also validation and test rows unless given separately.
        tasks: ``{task: kind}`` or ``{task: {kind, column, positive, classes, num_classes, standardize}}``.
        test, validation: files of those splits (same columns).
        split: how the training files are split (see the module docstring).
        features: per-column overrides ``{column: kind}`` or ``{column: {kind, encoding, ...}}``
            (:class:`~mtl_keras.data.columns.ColumnSpec`); ``skip`` leaves a column out.
        weight_column: a column of non-negative example weights.
        delimiter: the field separator.
        name: the data set's name in reports (default: the first file's name without its extension).
        shuffle_buffer: rows in the training stream's shuffle buffer.
    """

    def make(p: str) -> CsvPart:
        return CsvPart(p, delimiter=delimiter)

    return _from_files(
        make,
        path,
        tasks,
        test,
        validation,
        name,
        split=split,
        features=features,
        weight_column=weight_column,
        shuffle_buffer=shuffle_buffer,
    )


def _stem(part: Part) -> str:
    import os

    return os.path.basename(getattr(part, "path", "data")).split(".")[0] or "data"


def from_parquet(
    path: str | list[str],
    tasks: dict[str, Any],
    *,
    test: str | list[str] | None = None,
    validation: str | list[str] | None = None,
    split: dict[str, Any] | None = None,
    features: dict[str, Any] | None = None,
    weight_column: str | None = None,
    name: str | None = None,
    shuffle_buffer: int = 10_000,
) -> StreamedDataset:
    """Parquet files (read by pyarrow); arguments as :func:`from_csv`."""
    return _from_files(
        ParquetPart,
        path,
        tasks,
        test,
        validation,
        name,
        split=split,
        features=features,
        weight_column=weight_column,
        shuffle_buffer=shuffle_buffer,
    )


def from_tfrecord(
    path: str | list[str],
    tasks: dict[str, Any],
    *,
    spec: dict[str, str],
    test: str | list[str] | None = None,
    validation: str | list[str] | None = None,
    split: dict[str, Any] | None = None,
    features: dict[str, Any] | None = None,
    weight_column: str | None = None,
    name: str | None = None,
    shuffle_buffer: int = 10_000,
) -> StreamedDataset:
    """TFRecord files of ``tf.train.Example`` with scalar features; ``spec`` gives each feature's type
    (``float``, ``int`` or ``string``), labels included. Other arguments as :func:`from_csv`."""

    def make(p: str) -> TFRecordPart:
        return TFRecordPart(p, spec)

    return _from_files(
        make,
        path,
        tasks,
        test,
        validation,
        name,
        split=split,
        features=features,
        weight_column=weight_column,
        shuffle_buffer=shuffle_buffer,
    )


def _frame_part(frame: Any, what: str) -> FramePart:
    if hasattr(frame, "to_dict") and hasattr(frame, "columns"):
        data = {str(c): frame[c].to_numpy() for c in frame.columns}
    elif isinstance(frame, Mapping):
        data = {str(k): np.asarray(v) for k, v in frame.items()}
    else:
        raise ValueError(
            f"Expected {what} to be a pandas DataFrame or a dict of columns. Received: {frame!r}"
        )
    if not data:
        raise ValueError(f"{what} has no columns.")
    return FramePart(data, source=what)


def from_dataframe(
    frame: Any,
    tasks: dict[str, Any],
    *,
    test: Any = None,
    validation: Any = None,
    split: dict[str, Any] | None = None,
    features: dict[str, Any] | None = None,
    weight_column: str | None = None,
    name: str = "dataframe",
    shuffle_buffer: int = 10_000,
) -> StreamedDataset:
    """A pandas DataFrame (or a dict of equal-length columns); ``test`` / ``validation`` frames of their own
    or a ``split``. Other arguments as :func:`from_csv`."""
    return build_dataset(
        [_frame_part(frame, "the DataFrame")],
        tasks,
        test=[_frame_part(test, "the test DataFrame")] if test is not None else None,
        validation=[_frame_part(validation, "the validation DataFrame")] if validation is not None else None,
        split=split,
        features=features,
        weight_column=weight_column,
        name=name,
        shuffle_buffer=shuffle_buffer,
    )


def from_dataset(
    dataset: Any,
    tasks: dict[str, Any],
    *,
    test: Any = None,
    validation: Any = None,
    split: dict[str, Any] | None = None,
    features: dict[str, Any] | None = None,
    weight_column: str | None = None,
    name: str = "dataset",
    shuffle_buffer: int = 10_000,
) -> StreamedDataset:
    """An unbatched ``tf.data.Dataset`` of ``(features dict, labels dict)`` (or of one dict) of scalars; it is
    iterated once to check and describe it and then each epoch, so it must be re-iterable and finite."""
    return build_dataset(
        [DatasetPart(dataset)],
        tasks,
        test=[DatasetPart(test, "the test tf.data.Dataset")] if test is not None else None,
        validation=(
            [DatasetPart(validation, "the validation tf.data.Dataset")] if validation is not None else None
        ),
        split=split,
        features=features,
        weight_column=weight_column,
        name=name,
        shuffle_buffer=shuffle_buffer,
    )


__all__ = ["build_dataset", "from_csv", "from_dataframe", "from_dataset", "from_parquet", "from_tfrecord"]
