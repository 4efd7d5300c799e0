"""Label columns of a user's own data: what each task's column holds, one streaming check of it, and its
encoding into the float32 labels the model trains on (NaN = missing).

* :class:`LabelSpec` says which column a task reads and how to read it (binary labels given as two words
  need ``positive``; multiclass labels given as names map through ``classes``).
* :class:`LabelCheck` takes a split's label column chunk by chunk (``update``), refuses bad values with the
  data row they are in, and ends with :class:`LabelStats`: the counts, the string → label mapping, the
  number of classes, and a regression column's mean and standard deviation.
* :func:`encode_labels` (numpy) and :func:`label_parser` (TensorFlow, for a streamed batch) turn raw values
  into labels with the training split's statistics; both give the same numbers.
* :func:`make_task` builds the :class:`~mtl_keras.tasks.Task` (standardised from the training statistics
  when ``standardize`` is set).

Raw values are 1-D numpy arrays: object arrays of text (CSV; a missing value is an empty field or one of
:data:`MISSING_TOKENS`, any case) or of Python values, or float / int / bool arrays (NaN = missing). Text is
stripped of ASCII white space. A text value is a number when it matches :data:`NUMBER_PATTERN`.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import re
from collections.abc import Callable, Iterable
from typing import Any, Literal, NoReturn

import numpy as np
import pydantic
import tensorflow as tf

from mtl_keras.tasks import Task

#: Text values that mean "missing" (compared after stripping and lower-casing), besides the empty string.
MISSING_TOKENS: tuple[str, ...] = ("", "na", "nan", "null", "none", "?")
#: How many distinct class names a multiclass column without ``classes`` may have.
MAX_CLASS_NAMES = 1000
#: Text that counts as a number (the same regular expression in numpy and TensorFlow).
NUMBER_PATTERN = r"(?i)[+-]?(?:(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:e[+-]?[0-9]+)?|inf|infinity)"

_NUMBER = re.compile(NUMBER_PATTERN, re.ASCII)  # as RE2 in pyarrow and TensorFlow: "ınf" is no number
_WHITESPACE = " \t\n\v\f\r"  # what tf.strings.strip removes
_TRUE_FALSE = {"true": 1.0, "false": 0.0}
_SPLITS = ("train", "training", "validation", "test")


# --- the spec -----------------------------------------------------------------------------------------------


class LabelSpec(pydantic.BaseModel):
    """How one task's labels are read.

    Args:
        name: the task name.
        kind: ``"binary"``, ``"multiclass"`` or ``"regression"``.
        column: the label column; defaults to ``name``.
        num_classes: multiclass: the number of classes; default ``len(classes)``, or the largest integer
            label + 1, or the number of distinct class names seen.
        positive: binary labels given as two values other than 0/1 and true/false: the one that means 1
            (compared exactly, after stripping white space).
        classes: multiclass labels given as names: the class order (class ``i`` is ``classes[i]``);
            default: the distinct names of the training split, sorted.
        standardize: regression: train on labels standardised with the training mean and standard
            deviation (predictions and metrics stay in the labels' units).

    Errors are one-line ``ValueError``s naming the task and the option.
    """

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid", strict=True)

    name: str
    kind: Literal["binary", "multiclass", "regression"]
    column: str | None = None
    num_classes: int | None = None
    positive: str | None = None
    classes: list[str] | None = None
    standardize: bool = False

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except pydantic.ValidationError as error:
            raise ValueError(_one_line(error, data)) from None

    @pydantic.field_validator("positive", mode="before")
    @classmethod
    def _positive_text(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError(
                f"expected a string; received the boolean {value!r} (YAML reads unquoted yes/no/true/false "
                "as booleans: quote the value, e.g. positive: 'yes')"
            )
        return str(value) if isinstance(value, int) else value

    @pydantic.field_validator("classes", mode="before")
    @classmethod
    def _classes_text(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [str(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value]
        return value

    @pydantic.model_validator(mode="after")
    def _check(self) -> LabelSpec:
        if not self.name:
            raise ValueError("expected a non-empty task name; received name=''")
        if self.column == "":
            raise ValueError(f"expected a non-empty label column for task {self.name!r}; received column=''")
        for option, value, kind in (
            ("positive", self.positive, "binary"),
            ("classes", self.classes, "multiclass"),
            ("num_classes", self.num_classes, "multiclass"),
            ("standardize", self.standardize or None, "regression"),
        ):
            if value is not None and self.kind != kind:
                raise ValueError(
                    f"`{option}` is only for {kind} tasks; task {self.name!r} has kind {self.kind!r} "
                    f"and received {option}={value!r}"
                )
        if self.positive is not None and not _is_label_text(self.positive):
            raise ValueError(
                f"expected `positive` of task {self.name!r} to be a label value (non-empty, no surrounding "
                f"white space, not a missing-value token); received positive={self.positive!r}"
            )
        if self.num_classes is not None and self.num_classes < 2:
            raise ValueError(
                f"expected `num_classes` >= 2 for task {self.name!r}; received num_classes={self.num_classes!r}"
            )
        if self.classes is not None:
            bad = [c for c in self.classes if not _is_label_text(c)]
            if bad:
                raise ValueError(
                    f"expected every entry of `classes` of task {self.name!r} to be a label value (non-empty, "
                    f"no surrounding white space, not a missing-value token); received {bad[0]!r}"
                )
            repeated = sorted({c for c in self.classes if self.classes.count(c) > 1})
            if repeated:
                raise ValueError(
                    f"expected distinct `classes` for task {self.name!r}; received {repeated[0]!r} twice"
                )
            if len(self.classes) < 2:
                raise ValueError(
                    f"expected at least 2 `classes` for task {self.name!r}; received classes={self.classes!r}"
                )
            if self.num_classes is not None and self.num_classes != len(self.classes):
                raise ValueError(
                    f"`num_classes` of task {self.name!r} must equal the number of `classes` "
                    f"({len(self.classes)}); received num_classes={self.num_classes}"
                )
        return self

    @property
    def label_column(self) -> str:
        """The column the labels are read from."""
        return self.column if self.column is not None else self.name


def _is_label_text(value: str) -> bool:
    return bool(value) and value == value.strip(_WHITESPACE) and not _is_missing_text(value)


def _one_line(error: pydantic.ValidationError, data: dict[str, Any]) -> str:
    first = error.errors()[0]
    location = ".".join(str(part) for part in first["loc"])
    message = str(first["msg"]).removeprefix("Value error, ")
    task = data.get("name")
    where = f"Label spec of task {task!r}" if isinstance(task, str) else "Label spec"
    if first["type"] == "extra_forbidden":
        allowed = sorted(LabelSpec.model_fields)
        return f"{where}: unknown option `{location}`; expected one of {allowed}"
    if location:
        return f"{where}: `{location}`: {message}; received {first.get('input')!r}"
    return f"{where}: {message}"


# --- the statistics ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LabelStats:
    """What one pass over a split's label column found.

    Attributes:
        labelled: rows with a label.
        rows: rows seen.
        mapping: string value -> encoded label, for binary labels with ``positive`` and for multiclass
            class names; None when the labels are numbers (or 0/1, true/false).
        num_classes: multiclass: the number of classes (None before any label is seen).
        mean, std: regression: the mean and (population) standard deviation of the labels; None without
            labels.
    """

    labelled: int
    rows: int
    mapping: dict[str, float] | None = None
    num_classes: int | None = None
    mean: float | None = None
    std: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; :meth:`from_dict` reads it back."""
        return {
            "labelled": self.labelled,
            "rows": self.rows,
            "mapping": None if self.mapping is None else dict(self.mapping),
            "num_classes": self.num_classes,
            "mean": self.mean,
            "std": self.std,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabelStats:
        expected = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(data) - expected)
        missing = sorted({"labelled", "rows"} - set(data))
        if unknown or missing:
            raise ValueError(
                f"Expected label statistics with keys {sorted(expected)}; received keys {sorted(data)}"
                + (f" (unknown: {unknown})" if unknown else "")
                + (f" (missing: {missing})" if missing else "")
            )
        mapping = data.get("mapping")
        return cls(
            labelled=int(data["labelled"]),
            rows=int(data["rows"]),
            mapping=None if mapping is None else {str(k): float(v) for k, v in mapping.items()},
            num_classes=None if data.get("num_classes") is None else int(data["num_classes"]),
            mean=None if data.get("mean") is None else float(data["mean"]),
            std=None if data.get("std") is None else float(data["std"]),
        )


# --- reading raw values -----------------------------------------------------------------------------------


def _is_missing_text(text: str) -> bool:
    return text.isascii() and text.lower() in MISSING_TOKENS


def _canonical(number: float) -> str:
    """The text a number is matched by against ``positive`` and ``classes``: ``2.0`` -> ``'2'``."""
    if number.is_integer() and abs(number) < 2**63:
        return str(int(number))
    return repr(float(number))


@dataclasses.dataclass
class _Values:
    """One chunk of raw values, read once."""

    missing: np.ndarray  # bool
    numeric: np.ndarray  # bool: not missing, and a number (or text matching NUMBER_PATTERN)
    number: np.ndarray  # float64, NaN where not numeric
    text: np.ndarray  # object: the stripped text of text values, None for the others

    def key(self, i: int) -> str:
        """How value ``i`` is looked up in a mapping: its text, or the canonical text of its number."""
        text = self.text[i]
        return text if text is not None else _canonical(float(self.number[i]))

    def keys(self, indices: Iterable[int]) -> list[str]:
        return [self.key(int(i)) for i in indices]

    def show(self, i: int) -> str:
        """Value ``i`` for an error message: text quoted, numbers as numbers."""
        text = self.text[i]
        return repr(text) if text is not None else _canonical(float(self.number[i]))


def _all_text(array: np.ndarray) -> bool:
    import pandas as pd

    return len(array) > 0 and pd.api.types.infer_dtype(array, skipna=False) == "string"


def _read_text(array: np.ndarray) -> _Values:
    """:func:`_read` of an array of ``str`` (a CSV column), in pyarrow's vectorised string kernels: the same
    stripping, missing tokens (ASCII only) and number pattern as the per-value loop."""
    import pyarrow as pa
    import pyarrow.compute as pc

    values = pa.array(array.astype(object) if array.dtype.kind in "US" else array, type=pa.string())
    stripped = pc.utf8_trim(values, characters=_WHITESPACE)
    missing_tokens = pc.is_in(pc.utf8_lower(stripped), value_set=pa.array(MISSING_TOKENS, pa.string()))
    missing = pc.and_(missing_tokens, pc.string_is_ascii(stripped)).to_numpy(zero_copy_only=False)
    matched = pc.match_substring_regex(stripped, f"^(?:{NUMBER_PATTERN})$").to_numpy(zero_copy_only=False)
    numeric = matched & ~missing
    text = stripped.to_numpy(zero_copy_only=False).astype(object)
    text[missing] = None
    number = np.full(len(array), np.nan)
    if numeric.any():
        number[numeric] = text[numeric].astype(np.float64)  # float(), as the loop
    return _Values(missing, numeric, number, text)


def _read(values: Any, where: str, row_offset: int) -> _Values:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{where}: expected a 1-D array of labels; received shape {array.shape}")
    n = len(array)
    if array.dtype.kind in "biuf":
        number = array.astype(np.float64)
        missing = np.isnan(number)
        return _Values(missing, ~missing, number, np.full(n, None, dtype=object))
    if array.dtype.kind not in "OSU":
        raise ValueError(f"{where}: expected text or numbers; received an array of dtype {array.dtype}")
    if array.dtype.kind in "US" or _all_text(array):
        return _read_text(array)
    missing = np.zeros(n, dtype=bool)
    numeric = np.zeros(n, dtype=bool)
    number = np.full(n, np.nan)
    text = np.full(n, None, dtype=object)
    for i, value in enumerate(array.tolist()):
        if isinstance(value, bytes):
            value = value.decode("utf-8")
        if isinstance(value, str):
            stripped = value.strip(_WHITESPACE)
            if _is_missing_text(stripped):
                missing[i] = True
                continue
            text[i] = stripped
            if _NUMBER.fullmatch(stripped):
                numeric[i] = True
                number[i] = float(stripped)
        elif value is None or type(value).__name__ in ("NAType", "NaTType"):
            missing[i] = True
        elif isinstance(value, (bool, np.bool_, numbers.Real)):
            number[i] = float(value)
            missing[i] = math.isnan(number[i])
            numeric[i] = not missing[i]
        else:
            raise ValueError(
                f"{where}: value {value!r} at row {row_offset + i + 1} is neither text nor a number"
            )
    return _Values(missing, numeric, number, text)


def _where(spec: LabelSpec, source: str) -> str:
    return f"task {spec.name!r} (column {spec.label_column!r}) in {source}"


def _first(mask: np.ndarray) -> int | None:
    hits = np.flatnonzero(mask)
    return int(hits[0]) if hits.size else None


def _listing(values: Iterable[str], limit: int = 10) -> str:
    values = list(values)
    shown = ", ".join(repr(v) for v in values[:limit])
    return shown + (f", ... ({len(values)} in all)" if len(values) > limit else "")


# --- encoding (shared by LabelCheck, encode_labels and, in TensorFlow, label_parser) ---------------------


def _expected(spec: LabelSpec, stats: LabelStats) -> str:
    if spec.kind == "regression":
        return "expected a finite number"
    if stats.mapping is not None:
        if spec.classes is not None:
            return f"expected one of the `classes` {_listing(spec.classes)}"
        return f"expected one of {_listing(stats.mapping)} (the label values of the training split)"
    if spec.kind == "binary":
        return "expected 0/1 or true/false (any case)"
    bound = f", {stats.num_classes})" if stats.num_classes is not None else ", ...)"
    return f"expected an integer class label in [0{bound}"


def _encode(values: _Values, spec: LabelSpec, stats: LabelStats) -> tuple[np.ndarray, np.ndarray]:
    """(codes as float64 with NaN for missing, mask of the values that are not valid labels)."""
    n = len(values.missing)
    codes = np.full(n, np.nan)
    present = ~values.missing
    if stats.mapping is not None:
        valid = np.zeros(n, dtype=bool)
        for i in np.flatnonzero(present):
            code = stats.mapping.get(values.key(int(i)))
            if code is not None:
                codes[i] = code
                valid[i] = True
        return codes, present & ~valid
    number = values.number
    if spec.kind == "regression":
        valid = values.numeric & np.isfinite(number)
        codes[valid] = number[valid]
    elif spec.kind == "binary":
        valid = values.numeric & ((number == 0) | (number == 1))
        codes[valid] = number[valid]
        for i in np.flatnonzero(present & ~values.numeric):
            text = values.text[i]
            code = _TRUE_FALSE.get(text.lower()) if text is not None and text.isascii() else None
            if code is not None:
                codes[i] = code
                valid[i] = True
    else:
        with np.errstate(invalid="ignore"):
            valid = values.numeric & (np.floor(number) == number) & (number >= 0)
            if stats.num_classes is not None:
                valid &= number < stats.num_classes
        codes[valid] = number[valid]
    return codes, present & ~valid


def encode_labels(
    values: Any, spec: LabelSpec, stats: LabelStats, *, source: str = "the labels", row_offset: int = 0
) -> np.ndarray:
    """Raw label values -> float32 labels (NaN = missing), with the training split's ``stats``.

    Binary: 0/1 (true/false), or through ``stats.mapping``; multiclass: the class index; regression: the
    value in its own units (the model standardises). A value that is not a label is a ``ValueError``
    naming ``source``, the task, the column, the value and its 1-based row (``row_offset + index + 1``).
    """
    where = _where(spec, source)
    read = _read(values, where, row_offset)
    codes, bad = _encode(read, spec, stats)
    index = _first(bad)
    if index is not None:
        raise ValueError(
            f"{where}: value {read.show(index)} at row {row_offset + index + 1} is not a {spec.kind} label; "
            f"{_expected(spec, stats)}"
        )
    return codes.astype(np.float32)


# --- the streaming check ----------------------------------------------------------------------------------


class LabelCheck:
    """One streaming pass over a split's label column: call :meth:`update` per chunk, then :meth:`result`.

    Args:
        spec: the task's label spec.
        source: how messages name the data, e.g. ``"data file 'train.csv'"``; an attribute that may be set
            again before each chunk (one per file of a table).
        reference: the training split's statistics when checking a validation or test split: values are
            then checked against the training mapping and number of classes (a class name the training
            split never had is an error).
    """

    def __init__(self, spec: LabelSpec, source: str, *, reference: LabelStats | None = None) -> None:
        self.spec = spec
        self.source = source
        self.reference = reference
        self._rows = 0
        self._labelled = 0
        # regression: count, mean and sum of squared deviations, merged chunk by chunk (Chan et al.)
        self._count = 0
        self._mean = 0.0
        self._m2 = 0.0
        # binary
        self._standard: tuple[str, int] | None = None  # first 0/1/true/false value and its row
        self._others: dict[str, int] = {}  # other values -> first row (without `positive`)
        self._negative: tuple[str, int] | None = None  # with `positive`: the other value and its row
        # multiclass
        self._number: tuple[str, int] | None = None  # first integer label and its row
        self._max_class = -1
        self._names: dict[str, int] = {}  # class names -> first row

    @property
    def _where(self) -> str:
        # From ``source`` at the time of the message: a caller may set it per file of a table.
        return _where(self.spec, self.source)

    def _fixed(self) -> LabelStats | None:
        """The statistics values are checked against as they come, when those are known in advance."""
        spec = self.spec
        if self.reference is not None:
            return self.reference
        if spec.kind == "multiclass" and spec.classes is not None:
            return LabelStats(0, 0, {c: float(i) for i, c in enumerate(spec.classes)}, len(spec.classes))
        return None

    def _fail(self, values: _Values, index: int, row_offset: int, reason: str) -> NoReturn:
        raise ValueError(
            f"{self._where}: value {values.show(index)} at row {row_offset + index + 1} {reason}"
        )

    def update(self, values: Any, row_offset: int) -> None:
        """Check one chunk; ``row_offset`` is the number of data rows before it."""
        read = _read(values, self._where, row_offset)
        self._rows += len(read.missing)
        self._labelled += int(np.count_nonzero(~read.missing))
        fixed = self._fixed()
        if fixed is not None:
            _, bad = _encode(read, self.spec, fixed)
            index = _first(bad)
            if index is not None:
                self._fail(
                    read, index, row_offset, f"is not a {self.spec.kind} label; {_expected(self.spec, fixed)}"
                )
            if self.spec.kind == "regression":
                self._add_moments(read)
            return
        if self.spec.kind == "regression":
            self._update_regression(read, row_offset)
        elif self.spec.kind == "binary":
            self._update_binary(read, row_offset)
        else:
            self._update_multiclass(read, row_offset)

    # --- per kind

    def _update_regression(self, read: _Values, row_offset: int) -> None:
        present = ~read.missing
        index = _first(present & ~read.numeric)
        if index is not None:
            self._fail(read, index, row_offset, "is not a number; expected a regression label")
        index = _first(present & ~np.isfinite(read.number))
        if index is not None:
            self._fail(read, index, row_offset, "is not finite; expected a finite regression label")
        self._add_moments(read)

    def _add_moments(self, read: _Values) -> None:
        x = read.number[~read.missing]
        if not x.size:
            return
        n_b = int(x.size)
        mean_b = float(np.mean(x))
        m2_b = float(np.sum((x - mean_b) ** 2))
        n_a = self._count
        n = n_a + n_b
        delta = mean_b - self._mean
        self._mean += delta * n_b / n
        self._m2 += m2_b + delta * delta * n_a * n_b / n
        self._count = n

    def _update_binary(self, read: _Values, row_offset: int) -> None:
        spec = self.spec
        present = ~read.missing
        if spec.positive is not None:
            for first in _first_rows(read, present):
                key = read.key(first)
                if key == spec.positive:
                    continue
                if self._negative is None:
                    self._negative = (key, row_offset + first + 1)
                elif key != self._negative[0]:
                    value, row = self._negative
                    self._fail(
                        read,
                        first,
                        row_offset,
                        f"is a third label value; with `positive: {spec.positive}` the labels are "
                        f"{spec.positive!r} (1) and {value!r} (0, first at row {row})",
                    )
            return
        none = LabelStats(0, 0)
        _, other = _encode(read, spec, none)
        index = _first(other & read.numeric)
        if index is not None:
            self._fail(read, index, row_offset, f"is not a binary label; {_expected(spec, none)}")
        standard = present & ~other
        index = _first(standard)
        if index is not None and self._standard is None:
            self._standard = (read.show(index), row_offset + index + 1)
        for index in _first_rows(read, other):
            self._others.setdefault(read.key(index), row_offset + index + 1)
        if self._others and self._standard is not None:
            value, row = next(iter(self._others.items()))
            raise ValueError(
                f"{self._where}: value {value!r} at row {row} is not a binary label; expected 0/1 or "
                f"true/false (any case), like {self._standard[0]} at row {self._standard[1]}"
            )
        if len(self._others) >= 2:
            raise ValueError(self._positive_needed())

    def _positive_needed(self) -> str:
        listed = " and ".join(f"{value!r} (row {row})" for value, row in list(self._others.items())[:3])
        if len(self._others) > 2:
            return (
                f"{self._where}: binary labels take two values; received {listed}; expected 0/1 or "
                "true/false (any case), or two values with `positive: <VALUE>`"
            )
        choices = " or ".join(repr(v) for v in sorted(self._others))
        return (
            f"{self._where}: binary labels {listed} are not 0/1 or true/false; set `positive: <VALUE>` "
            f"to the value that means 1 ({choices})"
        )

    def _update_multiclass(self, read: _Values, row_offset: int) -> None:
        spec = self.spec
        present = ~read.missing
        numeric = read.numeric
        number = read.number
        with np.errstate(invalid="ignore"):
            index = _first(numeric & (np.floor(number) != number))
            if index is not None:
                self._fail(read, index, row_offset, "is not an integer class label; expected 0, 1, 2, ...")
            index = _first(numeric & (number < 0))
            if index is not None:
                self._fail(read, index, row_offset, "is a negative class label; expected 0, 1, 2, ...")
            if spec.num_classes is not None:
                index = _first(numeric & (number >= spec.num_classes))
                if index is not None:
                    self._fail(
                        read,
                        index,
                        row_offset,
                        f"is out of range; expected an integer class label in [0, {spec.num_classes}) "
                        f"(num_classes: {spec.num_classes})",
                    )
        index = _first(numeric)
        if index is not None:
            self._max_class = max(self._max_class, int(np.max(number[numeric])))
            if self._number is None:
                self._number = (read.show(index), row_offset + index + 1)
        for index in _first_rows(read, present & ~numeric):
            name = read.key(index)
            if name in self._names:
                continue
            self._names[name] = row_offset + index + 1
            if len(self._names) > MAX_CLASS_NAMES:
                self._fail(
                    read,
                    index,
                    row_offset,
                    f"is class name number {len(self._names)}; more than {MAX_CLASS_NAMES} distinct class "
                    "names: give the class order with `classes`, or use integer labels",
                )
            if spec.num_classes is not None and len(self._names) > spec.num_classes:
                self._fail(
                    read,
                    index,
                    row_offset,
                    f"is class name number {len(self._names)} but num_classes is {spec.num_classes}",
                )
        if self._number is not None and self._names:
            name, row = next(iter(self._names.items()))
            raise ValueError(
                f"{self._where}: labels mix integer classes ({self._number[0]} at row {self._number[1]}) and "
                f"class names ({name!r} at row {row}); give the class names in order with `classes`"
            )

    # --- the result

    def result(self) -> LabelStats:
        """The statistics of the pass; errors left for the end (a binary column of one word) raise here."""
        spec = self.spec
        labelled, rows = self._labelled, self._rows
        mean, std = self._moments() if spec.kind == "regression" else (None, None)
        if self.reference is not None:
            return LabelStats(labelled, rows, self.reference.mapping, self.reference.num_classes, mean, std)
        if spec.kind == "regression":
            return LabelStats(labelled, rows, mean=mean, std=std)
        if spec.kind == "binary":
            if spec.positive is not None:
                mapping = {spec.positive: 1.0}
                if self._negative is not None:
                    mapping[self._negative[0]] = 0.0
                return LabelStats(labelled, rows, mapping)
            if self._others:
                raise ValueError(self._positive_needed())
            return LabelStats(labelled, rows)
        if spec.classes is not None:
            classes = {c: float(i) for i, c in enumerate(spec.classes)}
            return LabelStats(labelled, rows, classes, len(spec.classes))
        if self._names:
            names = {c: float(i) for i, c in enumerate(sorted(self._names))}
            return LabelStats(labelled, rows, names, spec.num_classes or len(names))
        inferred = self._max_class + 1 if self._number is not None else None
        return LabelStats(labelled, rows, None, spec.num_classes or inferred)

    def _moments(self) -> tuple[float | None, float | None]:
        if not self._count:
            return None, None
        return self._mean, math.sqrt(max(self._m2, 0.0) / self._count)


def _first_rows(read: _Values, mask: np.ndarray) -> list[int]:
    """Indices of the first occurrence of each distinct key among ``mask``, in row order."""
    seen: dict[str, int] = {}
    for i in np.flatnonzero(mask):
        seen.setdefault(read.key(int(i)), int(i))
    return sorted(seen.values())


def check_has_labels(stats: LabelStats, spec: LabelSpec, split_name: str, source: str) -> None:
    """Refuse a training split without labels for the task; return quietly for validation and test (whose
    metrics the caller then reports as missing)."""
    if split_name not in _SPLITS:
        raise ValueError(f"Expected a split name in {list(_SPLITS)}; received split_name={split_name!r}")
    if stats.labelled == 0 and split_name in ("train", "training"):
        raise ValueError(
            f"task {spec.name!r} (column {spec.label_column!r}) has no labels in the training split of {source}"
        )


# --- TensorFlow ---------------------------------------------------------------------------------------------


def label_parser(spec: LabelSpec, stats: LabelStats) -> Callable[[tf.Tensor], tf.Tensor]:
    """The TensorFlow version of :func:`encode_labels` for a streamed batch.

    The returned function takes a ``tf.string`` tensor (raw CSV text) or a numeric / bool tensor and gives
    float32 labels with NaN for missing, the same values as :func:`encode_labels` on the same values. A
    value that is not a label fails the pipeline with an ``InvalidArgumentError`` naming the task and the
    column (the streaming check has refused such data before training). Its lookup table (for a mapping)
    is built eagerly even when ``label_parser`` is called while a ``tf.data`` map function or a
    ``tf.function`` is traced; build the parser once where possible.
    """
    where = f"task {spec.name!r} (column {spec.label_column!r})"
    message = f"{where}: a value is not a {spec.kind} label; {_expected(spec, stats)}. Values:"
    table = None
    numeric_keys = numeric_codes = None
    if stats.mapping is not None:
        with tf.init_scope():
            table = tf.lookup.StaticHashTable(
                tf.lookup.KeyValueTensorInitializer(
                    tf.constant(list(stats.mapping), tf.string),
                    tf.constant(list(stats.mapping.values()), tf.float64),
                ),
                default_value=np.nan,
            )
        pairs = sorted(
            (float(key), code)
            for key, code in stats.mapping.items()
            if _NUMBER.fullmatch(key) and _canonical(float(key)) == key
        )
        numeric_keys = tf.constant([k for k, _ in pairs] or [np.inf], tf.float64)
        numeric_codes = tf.constant([c for _, c in pairs] or [np.nan], tf.float64)
    num_classes = stats.num_classes

    def parse(values: tf.Tensor) -> tf.Tensor:
        values = tf.convert_to_tensor(values)
        nan = tf.constant(np.nan, tf.float64)
        if values.dtype == tf.string:
            text = tf.strings.strip(values)
            lower = tf.strings.lower(text)
            missing = tf.reduce_any(tf.stack([tf.equal(lower, t) for t in MISSING_TOKENS]), axis=0)
            numeric = tf.logical_and(tf.strings.regex_full_match(text, NUMBER_PATTERN), ~missing)
            safe = tf.where(numeric, text, tf.fill(tf.shape(text), "0"))
            number = tf.where(numeric, tf.strings.to_number(safe, tf.float64), nan)
        else:
            number = tf.cast(values, tf.float64)
            missing = tf.math.is_nan(number)
            numeric = ~missing
            text = lower = None
        if table is not None:
            if text is not None:
                codes = table.lookup(text)
            else:
                flat = tf.reshape(number, [-1])
                position = tf.searchsorted(numeric_keys, flat)
                position = tf.minimum(position, tf.size(numeric_keys) - 1)
                hit = tf.equal(tf.gather(numeric_keys, position), flat)
                codes = tf.reshape(tf.where(hit, tf.gather(numeric_codes, position), nan), tf.shape(number))
            valid = ~tf.math.is_nan(codes)
        elif spec.kind == "regression":
            valid = numeric & tf.math.is_finite(number)
            codes = number
        elif spec.kind == "binary":
            valid = numeric & (tf.equal(number, 0.0) | tf.equal(number, 1.0))
            codes = number
            if lower is not None:
                true, false = tf.equal(lower, "true"), tf.equal(lower, "false")
                valid = valid | ((true | false) & ~numeric)
                codes = tf.where(true & ~numeric, tf.constant(1.0, tf.float64), codes)
                codes = tf.where(false & ~numeric, tf.constant(0.0, tf.float64), codes)
        else:
            valid = numeric & tf.equal(tf.floor(number), number) & (number >= 0.0)
            if num_classes is not None:
                valid = valid & (number < float(num_classes))
            codes = number
        bad = ~missing & ~valid
        check = tf.debugging.Assert(~tf.reduce_any(bad), [message, tf.boolean_mask(values, bad)], summarize=5)
        with tf.control_dependencies([check]):
            return tf.cast(tf.where(missing | ~valid, nan, codes), tf.float32)

    return parse


# --- the task -----------------------------------------------------------------------------------------------

_TASK_FIELDS = ("name", "kind", "num_classes", "label", "label_mean", "label_std")


def make_task(spec: LabelSpec, stats: LabelStats, **task_options: Any) -> Task:
    """The `Task` of ``spec`` with the training split's ``stats``: its number of classes, and for a
    ``standardize`` regression task its ``label_mean`` / ``label_std``. ``task_options`` are the other
    `Task` arguments (``loss``, ``metrics``, ``units``, ``label_fn``)."""
    where = f"task {spec.name!r} (column {spec.label_column!r})"
    clash = [key for key in task_options if key in _TASK_FIELDS]
    if clash:
        raise ValueError(
            f"{where}: `{clash[0]}` comes from the label spec and its statistics; expected only other Task "
            f"options, received {clash[0]}={task_options[clash[0]]!r}"
        )
    options: dict[str, Any] = {"label": spec.column}
    if spec.kind == "multiclass":
        if stats.num_classes is None or stats.num_classes < 2:
            raise ValueError(
                f"{where}: the training labels give num_classes={stats.num_classes!r}; expected at least 2 "
                "classes: set `num_classes` (or `classes`)"
            )
        options["num_classes"] = stats.num_classes
    if spec.kind == "regression" and spec.standardize:
        if stats.mean is None or stats.std is None:
            raise ValueError(f"{where}: cannot standardise without training labels; received {stats!r}")
        if not stats.std > 0:
            raise ValueError(
                f"{where}: cannot standardise labels that are all equal (training mean {stats.mean!r}, "
                f"std {stats.std!r}); set `standardize: false`"
            )
        options.update(label_mean=stats.mean, label_std=stats.std)
    return Task(spec.name, spec.kind, **options, **task_options)


__all__ = [
    "MAX_CLASS_NAMES",
    "MISSING_TOKENS",
    "NUMBER_PATTERN",
    "LabelCheck",
    "LabelSpec",
    "LabelStats",
    "check_has_labels",
    "encode_labels",
    "label_parser",
    "make_task",
]
