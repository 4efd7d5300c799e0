"""Column statistics from one streaming pass over chunks of rows, in memory that does not grow with the rows.

A source (CSV, Parquet, a DataFrame, in-memory arrays) hands :class:`StatisticsPass` its rows as chunks
``{column: 1-D numpy array}``; :func:`compute_statistics` does the whole pass. The result, one
:class:`ColumnStats` per column, is what :func:`mtl_keras.data.columns.infer_columns` infers the feature
kinds from and what :class:`mtl_keras.builders.RawFeatures` builds its preprocessing layers from (no Keras
``adapt``, so a streamed source never needs its columns in memory).

What a chunk may hold, per column:

* an object array of ``str``: raw text (the CSV reader's cells, missing cells as ``""``);
* a float array: NaN is missing;
* an int or bool array: nothing is missing;
* an object array with ``None`` / NaN for missing values and ``str`` or numbers otherwise (a DataFrame column).

Missing values: NaN, ``None``, and text that, stripped and lower-cased, is one of :data:`MISSING_TOKENS`
(``""``, ``"na"``, ``"nan"``, ``"null"``, ``"none"``, ``"?"``). A text value is *numeric* when Python's
``float`` parses it (surrounding spaces allowed) to a finite number; ``"inf"`` and other text is not.

Per column the pass keeps:

* exact count, missing count, and for numeric values exact mean and (population) variance, merged chunk
  by chunk with the pairwise formulas of Chan, Golub and LeVeque, minimum and maximum;
* a uniform random sample of at most :data:`SAMPLE_SIZE` numeric values (seeded: the same chunks give the
  same sample), whose median is ``median`` (exact while the column has at most ``SAMPLE_SIZE`` values);
* value counts: exact while a column has at most :data:`DISTINCT_CAP` distinct non-missing values; beyond
  that the counts are pruned to the most frequent ``2 * TOP_MAX`` after each chunk (approximate counts,
  ``top_exact`` False) and ``distinct`` becomes a lower bound (``distinct_capped`` True). ``top`` holds the
  :data:`TOP_MAX` most frequent non-missing values, keyed by their text (numbers of numeric sources as
  :func:`value_text` writes them, e.g. ``3`` not ``3.0``). Text is kept verbatim (not stripped), since it
  is what the model's string input receives;
* ``list_fraction``: the fraction of non-missing values that contain the separator (``"|"`` unless told),
  and ``tokens``: counts of the separator-split, stripped, non-empty tokens (for ``multi_hot`` columns).

Once a column has shown a non-numeric value its later chunks are not parsed as numbers (its numeric
moments then describe only the values seen before, and are not used).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

#: Text that means "missing" (compared after ``strip()`` and ``lower()``).
MISSING_TOKENS = ("", "na", "nan", "null", "none", "?")
#: At most this many numeric values per column are kept as the (uniform, seeded) sample.
SAMPLE_SIZE = 100_000
#: At most this many most frequent values per column are reported in ``top`` (and ``tokens``).
TOP_MAX = 10_000
#: Distinct values are counted exactly up to this number; beyond it ``distinct`` is a lower bound.
DISTINCT_CAP = 100_000
#: The default separator of list-valued (``multi_hot``) text cells.
SEPARATOR = "|"
#: Seed of the sample.
SEED = 0


def value_text(values: Any) -> np.ndarray:
    """Text of ``values`` as a string model input and the statistics see it: numbers that are whole as
    ``"3"`` (not ``"3.0"``), other numbers as ``repr``, strings unchanged, None and NaN as ``""``."""
    array = np.asarray(values)
    if array.dtype.kind in "iub":
        return array.astype(np.int64).astype(str).astype(object)
    if array.dtype.kind == "f":
        return _number_text(array.astype(np.float64))
    result = np.empty(array.shape, dtype=object)
    for index, value in np.ndenumerate(array):
        if value is None or (isinstance(value, float) and np.isnan(value)):
            result[index] = ""
        elif isinstance(value, (bytes, np.bytes_)):
            result[index] = value.decode("utf-8")
        elif isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
            result[index] = _number_text(np.array([float(value)]))[0]
        else:
            result[index] = str(value)
    return result


def _number_text(values: np.ndarray) -> np.ndarray:
    result = np.empty(values.shape, dtype=object)
    missing = np.isnan(values)
    whole = ~missing & np.isfinite(values) & (values == np.floor(values)) & (np.abs(values) < 2**63)
    result[missing] = ""
    result[whole] = values[whole].astype(np.int64).astype(str)
    rest = ~missing & ~whole
    result[rest] = [repr(float(v)) for v in values[rest]]
    return result


@dataclasses.dataclass
class ColumnStats:
    """Statistics of one column (see the module docstring for how each is computed).

    Attributes:
        name: the column.
        count: rows seen.
        missing: rows whose value is missing.
        numeric: every non-missing value is a finite number (True for a column with no values).
        integral: every numeric value is a whole number.
        mean, variance, minimum, maximum: over the non-missing numeric values (population variance); None
            when there are none.
        median: the median of ``sample``; None when it is empty.
        sample: a uniform random sample of the numeric values, at most :data:`SAMPLE_SIZE`.
        top: ``{value text: count}`` for the most frequent non-missing values, most frequent first.
        top_exact: the counts in ``top`` are exact (the column never exceeded :data:`DISTINCT_CAP` values).
        distinct: distinct non-missing values; a lower bound when ``distinct_capped``.
        distinct_capped: there are more than :data:`DISTINCT_CAP` distinct values.
        first_text: the first non-numeric value and its 1-based data row, or None.
        list_fraction: fraction of the non-missing values that contain ``separator``.
        tokens: ``{token: count}`` of the separator-split, stripped tokens, most frequent first.
        separator: the separator ``list_fraction`` and ``tokens`` were computed with.
    """

    name: str
    count: int = 0
    missing: int = 0
    numeric: bool = True
    integral: bool = True
    mean: float | None = None
    variance: float | None = None
    minimum: float | None = None
    maximum: float | None = None
    median: float | None = None
    sample: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    top: dict[str, int] = dataclasses.field(default_factory=dict)
    top_exact: bool = True
    distinct: int = 0
    distinct_capped: bool = False
    first_text: tuple[str, int] | None = None
    list_fraction: float = 0.0
    tokens: dict[str, int] = dataclasses.field(default_factory=dict)
    separator: str = SEPARATOR

    @property
    def present(self) -> int:
        """Rows with a value."""
        return self.count - self.missing

    def to_dict(self, sample: bool = True) -> dict[str, Any]:
        """A JSON-serialisable dict (``sample`` False leaves the sample out, e.g. for a summary file)."""
        result = dataclasses.asdict(self)
        result["sample"] = [float(v) for v in self.sample] if sample else []
        result["first_text"] = list(self.first_text) if self.first_text is not None else None
        return result

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ColumnStats:
        """The inverse of :meth:`to_dict`."""
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - fields)
        if unknown:
            raise ValueError(
                f"Unknown column statistics fields {unknown}. Expected fields among {sorted(fields)}."
            )
        values = dict(data)
        values["sample"] = np.asarray(values.get("sample", []), dtype=np.float64)
        if values.get("first_text") is not None:
            text, row = values["first_text"]
            values["first_text"] = (str(text), int(row))
        values["top"] = {str(k): int(v) for k, v in values.get("top", {}).items()}
        values["tokens"] = {str(k): int(v) for k, v in values.get("tokens", {}).items()}
        return cls(**values)


class _Accumulator:
    """The running state of one column."""

    def __init__(self, name: str, separator: str, seed: Sequence[int]) -> None:
        self.name = name
        self.separator = separator
        self.rng = np.random.default_rng(list(seed))
        self.count = 0
        self.missing = 0
        self.numeric = True
        self.integral = True
        self.n = 0  # numeric values merged into the moments
        self.mean = 0.0
        self.m2 = 0.0
        self.minimum = np.inf
        self.maximum = -np.inf
        self.sample = np.zeros(0)
        self.sample_keys = np.zeros(0)
        self.counts: pd.Series | None = None  # value -> count (str or float index)
        self.exact = True
        self.distinct_bound = 0
        self.first_text: tuple[str, int] | None = None
        self.listed = 0
        self.list_tokens: pd.Series | None = None  # token counts from values holding the separator

    # --- per chunk ---

    def update(self, values: np.ndarray, row_offset: int) -> None:
        if values.ndim != 1:
            raise ValueError(
                f"Expected column {self.name!r} of a chunk to be a 1-D array. Received shape {values.shape}."
            )
        self.count += len(values)
        kind = values.dtype.kind
        if kind in "iub":
            numbers = values.astype(np.float64)
            self._numbers(numbers)
            self._count_values(pd.Series(numbers).value_counts(sort=False))
            return
        if kind == "f":
            numbers = values.astype(np.float64)
            missing = np.isnan(numbers)
            self.missing += int(missing.sum())
            infinite = np.flatnonzero(~missing & np.isinf(numbers))
            if infinite.size:  # +-inf: not a usable number
                self._note_text(repr(float(numbers[infinite[0]])), row_offset, infinite[0])
            present = numbers[np.isfinite(numbers)]
            self._numbers(present)
            self._count_values(pd.Series(present).value_counts(sort=False))
            return
        if kind in "US":
            values = values.astype(str).astype(object)
        elif kind != "O":
            raise ValueError(
                f"Expected column {self.name!r} of a chunk to hold numbers or text. Received dtype {values.dtype}."
            )
        self._text(values, row_offset)

    def _text(self, values: np.ndarray, row_offset: int) -> None:
        series = pd.Series(values, copy=False)
        if not isinstance(series.dtype, pd.StringDtype):  # numbers or other objects among the text
            series = pd.Series(value_text(values), dtype="str")
        absent = series.isna().to_numpy()
        # Work on the distinct values: missing tokens, numbers and list cells are decided once per value.
        counts = series.value_counts(dropna=True, sort=False)
        keys = counts.index.to_series(index=counts.index)
        token_missing = keys.str.strip().str.lower().isin(MISSING_TOKENS).to_numpy()
        self.missing += int(absent.sum()) + int(counts[token_missing].sum())
        missing_keys = list(counts.index[token_missing])
        counts, keys = counts[~token_missing], keys[~token_missing]
        if self.numeric and len(counts):
            missing = absent
            if missing_keys:
                missing = missing | series.isin(missing_keys).to_numpy()
            self._parse(series[~missing], row_offset, np.flatnonzero(~missing))
        self._count_values(counts)
        listed = keys.str.contains(self.separator, regex=False).to_numpy()
        if listed.any():
            weights = counts[listed]
            self.listed += int(weights.sum())
            tokens = keys[listed].str.split(self.separator, regex=False).explode().str.strip()
            token_counts = pd.Series(weights.reindex(tokens.index).to_numpy(), index=tokens.to_numpy())
            token_counts = token_counts[token_counts.index != ""].groupby(level=0).sum()
            self.list_tokens = _merge(self.list_tokens, token_counts, prune=True)

    def _parse(self, present: pd.Series, row_offset: int, rows: np.ndarray) -> None:
        """Add the numbers of ``present`` (non-missing text of rows ``rows``), or note its first text."""
        try:
            numbers = present.to_numpy(dtype=object).astype(np.float64)
        except (ValueError, TypeError):
            numbers = pd.to_numeric(present, errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(numbers)
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            self._note_text(str(present.iloc[first]), row_offset, rows[first])
            return
        self._numbers(numbers)

    def _note_text(self, text: str, row_offset: int, index: Any) -> None:
        self.numeric = False
        if self.first_text is None:
            self.first_text = (text, int(row_offset) + int(index) + 1)

    def _numbers(self, numbers: np.ndarray) -> None:
        n = len(numbers)
        if not n:
            return
        if self.integral and not np.all(numbers == np.floor(numbers)):
            self.integral = False
        mean = float(numbers.mean())
        m2 = float(np.square(numbers - mean).sum())
        total = self.n + n
        delta = mean - self.mean
        self.mean += delta * n / total
        self.m2 += m2 + delta * delta * self.n * n / total
        self.n = total
        self.minimum = min(self.minimum, float(numbers.min()))
        self.maximum = max(self.maximum, float(numbers.max()))
        # Uniform sample without replacement: keep the values with the SAMPLE_SIZE smallest random keys.
        keys = np.concatenate([self.sample_keys, self.rng.random(n)])
        values = np.concatenate([self.sample, numbers])
        if len(keys) > SAMPLE_SIZE:
            keep = np.argpartition(keys, SAMPLE_SIZE - 1)[:SAMPLE_SIZE]
            keys, values = keys[keep], values[keep]
        self.sample_keys, self.sample = keys, values

    def _count_values(self, counts: pd.Series) -> None:
        if not self.exact:
            if _numbers_index(counts) and self.counts is not None and _numbers_index(self.counts):
                return  # a number column past DISTINCT_CAP values is no vocabulary: its counts stay
            # Past DISTINCT_CAP values: only the chunk's most frequent values are merged, then pruned.
            self.counts = _merge(self.counts, counts, prune=True)
            return
        merged = _merge(self.counts, counts)
        if len(merged) > DISTINCT_CAP:
            self.exact = False
            self.distinct_bound = len(merged)
            merged = merged.nlargest(2 * TOP_MAX)
        self.counts = merged

    # --- the result ---

    def result(self) -> ColumnStats:
        stats = ColumnStats(self.name, count=self.count, missing=self.missing, separator=self.separator)
        stats.numeric = self.numeric
        stats.integral = self.integral
        if self.n:
            stats.mean = self.mean
            stats.variance = max(self.m2 / self.n, 0.0)
            stats.minimum, stats.maximum = self.minimum, self.maximum
        stats.sample = self.sample.copy()
        stats.median = float(np.median(self.sample)) if len(self.sample) else None
        counts = self.counts if self.counts is not None else pd.Series(dtype=np.int64)
        counts = _as_text(counts)
        stats.top = _top(counts)
        stats.top_exact = self.exact
        stats.distinct = len(counts) if self.exact else self.distinct_bound
        stats.distinct_capped = not self.exact
        stats.first_text = self.first_text
        present = self.count - self.missing
        stats.list_fraction = self.listed / present if present else 0.0
        if self.numeric:
            return stats  # numbers are no token lists
        # Tokens: the values without the separator are one token each; the others were split per chunk.
        keys = counts.index.to_series(index=counts.index).astype(str)
        single = counts[~keys.str.contains(self.separator, regex=False).to_numpy()]
        single.index = single.index.astype(str).str.strip()
        single = single[single.index != ""]
        stats.tokens = _top(_merge(single.groupby(level=0).sum(), self.list_tokens))
        return stats


def _merge(old: pd.Series | None, new: pd.Series | None, prune: bool = False) -> pd.Series:
    """Sum two count series (their index kinds made alike: numbers become text next to text); ``prune``
    keeps only the ``2 * TOP_MAX`` largest counts of ``new`` and of the sum."""
    if prune and new is not None and len(new) > 2 * TOP_MAX:
        new = new.nlargest(2 * TOP_MAX)
    merged = _sum_counts(old, new)
    return merged.nlargest(2 * TOP_MAX) if prune and len(merged) > 2 * TOP_MAX else merged


def _sum_counts(old: pd.Series | None, new: pd.Series | None) -> pd.Series:
    if old is None or not len(old):
        return new if new is not None else pd.Series(dtype=np.int64)
    if new is None or not len(new):
        return old
    if _numbers_index(old) != _numbers_index(new):
        old, new = _as_text(old), _as_text(new)
    return pd.concat([old, new]).groupby(level=0, sort=False).sum().astype(np.int64)


def _numbers_index(counts: pd.Series) -> bool:
    return bool(pd.api.types.is_numeric_dtype(counts.index.dtype)) and len(counts) > 0


def _as_text(counts: pd.Series) -> pd.Series:
    if not _numbers_index(counts):
        return counts
    text = _number_text(counts.index.to_numpy(dtype=np.float64))
    return pd.Series(counts.to_numpy(), index=text).groupby(level=0, sort=False).sum()


def _top(counts: pd.Series) -> dict[str, int]:
    """The ``TOP_MAX`` largest counts, most frequent first (ties: the larger value first, as Keras's
    ``adapt`` orders a vocabulary)."""
    if not len(counts):
        return {}
    items = sorted(
        ((str(k), int(v)) for k, v in counts.nlargest(TOP_MAX, keep="all").items()),
        key=lambda kv: (kv[1], kv[0]),
        reverse=True,
    )
    return dict(items[:TOP_MAX])


class StatisticsPass:
    """Accumulate :class:`ColumnStats` for ``columns`` over chunks of rows.

    Args:
        columns: the columns to describe; every chunk must hold each of them.
        separators: ``{column: separator}`` for list-valued columns whose separator is not ``"|"``.
        seed: seed of the numeric samples.
    """

    def __init__(
        self, columns: Sequence[str], separators: Mapping[str, str] | None = None, seed: int = SEED
    ) -> None:
        if isinstance(columns, str) or not columns:
            raise ValueError(f"Expected a non-empty sequence of column names. Received: columns={columns!r}")
        separators = dict(separators or {})
        unknown = sorted(set(separators) - set(columns))
        if unknown:
            raise ValueError(
                f"Separators given for unknown columns {unknown}. Expected columns among {list(columns)}."
            )
        self.columns = list(columns)
        self._state = {
            name: _Accumulator(name, separators.get(name, SEPARATOR), (seed, i))
            for i, name in enumerate(self.columns)
        }
        self._rows = 0

    def update(self, chunk: Mapping[str, np.ndarray], row_offset: int | None = None) -> None:
        """Add one chunk ``{column: 1-D array}``; ``row_offset`` is the 0-based index of its first data row
        (for the row numbers of ``first_text``; default: the rows seen so far)."""
        absent = [name for name in self.columns if name not in chunk]
        if absent:
            raise ValueError(
                f"Chunk without the columns {absent}. Expected columns {self.columns}; received {sorted(chunk)}."
            )
        arrays = {name: np.asarray(chunk[name]) for name in self.columns}
        sizes = {name: len(a) for name, a in arrays.items()}
        if len(set(sizes.values())) > 1:
            raise ValueError(f"Expected columns of one length in a chunk. Received lengths {sizes}.")
        offset = self._rows if row_offset is None else int(row_offset)
        for name, array in arrays.items():
            self._state[name].update(array, offset)
        self._rows += next(iter(sizes.values()))

    def result(self) -> dict[str, ColumnStats]:
        """``{column: ColumnStats}`` for the chunks seen so far."""
        return {name: state.result() for name, state in self._state.items()}


def compute_statistics(
    chunks: Iterable[Mapping[str, np.ndarray]],
    separators: Mapping[str, str] | None = None,
    seed: int = SEED,
) -> dict[str, ColumnStats]:
    """One pass over ``chunks`` (the columns of the first chunk); rows are numbered in the order seen."""
    statistics: StatisticsPass | None = None
    for chunk in chunks:
        if statistics is None:
            statistics = StatisticsPass(list(chunk), separators, seed)
        statistics.update(chunk)
    if statistics is None:
        raise ValueError("Expected at least one chunk of rows to compute statistics from. Received none.")
    return statistics.result()


def check_numeric_columns(spec: Mapping[str, Any], stats: Mapping[str, ColumnStats], source: str) -> None:
    """Refuse a column the spec makes ``numeric`` (or ``integer_categorical``) whose values are not all
    numbers (whole numbers), or that has no values at all.

    Args:
        spec: ``{column: ColumnSpec or kind}``.
        stats: the columns' statistics.
        source: what the rows came from, for the message (e.g. ``"data file 'x.csv'"``).
    """
    for name, column in spec.items():
        kind = column if isinstance(column, str) else column.kind
        if kind not in ("numeric", "integer_categorical"):
            continue
        if name not in stats:
            raise ValueError(
                f"{source}: no statistics for column {name!r}. Received statistics for {sorted(stats)}."
            )
        column_stats = stats[name]
        where = f"{source}, column {name!r}"
        if column_stats.first_text is not None:
            text, row = column_stats.first_text
            raise ValueError(f"{where}: {kind} feature has non-numeric text {text!r} (row {row}).")
        if column_stats.present == 0:
            raise ValueError(
                f"{where} has no values (all {column_stats.count} rows missing); a {kind} feature needs some."
            )
        if kind == "integer_categorical":
            if not column_stats.integral:
                raise ValueError(
                    f"{where}: integer_categorical feature has values that are not whole numbers "
                    f"(e.g. between {column_stats.minimum:g} and {column_stats.maximum:g}); expected integers."
                )
            if column_stats.missing:
                raise ValueError(
                    f"{where}: integer_categorical feature has {column_stats.missing} missing values, which an "
                    "int64 input cannot hold; expected none (make the column 'categorical' to keep them)."
                )
