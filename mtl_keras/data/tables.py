"""Tables a user brings: CSV and Parquet files, TFRecord files of ``tf.train.Example``, a pandas DataFrame, a
``tf.data.Dataset``, each read in one of two ways that agree row for row:

* :meth:`Part.chunks`: column chunks ``{column: 1-D numpy array}`` for the one streaming pass that checks the
  values and computes statistics (memory bounded by the chunk size, never the whole file);
* :meth:`Part.batches`: a ``tf.data.Dataset`` of batches of rows ``{column: 1-D tensor}`` that training streams
  (:meth:`Part.rows`: the same rows one by one).

A table is a list of parts (one per file of a glob, or the one in-memory object). Paths go through
``tf.io.gfile``: local files, sharded globs, and ``gs://`` / ``s3://`` where TensorFlow's file-system plugins are
installed. CSV files are parsed by pyarrow's streaming reader in both ways, every value as text (missing values are empty fields or one of
:data:`mtl_keras.data.statistics.MISSING_TOKENS`) and converted per column after batching.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

#: Rows per chunk of the statistics pass.
CHUNK_ROWS = 65_536
#: Rows per batch read by the training stream.
READ_ROWS = 4096


def _compression(path: str) -> str | None:
    return "gzip" if path.endswith(".gz") else None


def expand_paths(paths: str | Sequence[str], what: str) -> list[str]:
    """Every file matched by ``paths`` (one pattern or a list), sorted per pattern; none matched is an error."""
    if not isinstance(paths, (str, list, tuple)):
        raise ValueError(f"Expected {what} paths to be a path, a glob or a list of them. Received: {paths!r}")
    patterns = [paths] if isinstance(paths, str) else list(paths)
    if not patterns:
        raise ValueError(f"Expected at least one {what} path. Received: {paths!r}")
    files: list[str] = []
    for pattern in patterns:
        if not isinstance(pattern, str) or not pattern:
            raise ValueError(f"Expected {what} paths to be non-empty strings. Received: {pattern!r}")
        matched = sorted(tf.io.gfile.glob(pattern)) if any(c in pattern for c in "*?[") else [pattern]
        if not matched:
            raise ValueError(f"{what} pattern {pattern!r} matches no file.")
        for path in matched:
            if not tf.io.gfile.exists(path):
                raise ValueError(f"{what} {path!r} does not exist.")
            if tf.io.gfile.isdir(path):
                raise ValueError(
                    f"{what} {path!r} is a directory; give a file or a glob such as 'dir/*.csv'."
                )
        files.extend(matched)
    return files


class Part:
    """One file (or in-memory object) of a table."""

    #: how error messages name it, e.g. "data file 'train.csv'"
    source: str

    def columns(self) -> list[str]:
        raise NotImplementedError

    def chunks(self) -> Iterator[dict[str, np.ndarray]]:
        raise NotImplementedError

    def batches(self, columns: Sequence[str]) -> tf.data.Dataset:
        """The rows in file order as batches ``{column: 1-D tensor}`` (of :data:`READ_ROWS` rows, the last one
        shorter; CSV and Parquet: one record batch at a time, of varying size)."""
        raise NotImplementedError

    def rows(self, columns: Sequence[str]) -> tf.data.Dataset:
        """The rows in file order one by one (``{column: scalar}``)."""
        return self.batches(columns).unbatch()

    def is_text(self, column: str) -> bool:
        """Whether ``rows`` gives this column as text (CSV: every column)."""
        return True


@dataclasses.dataclass
class CsvPart(Part):
    """A CSV file with a header line (gzip when the name ends in ``.gz``)."""

    path: str
    delimiter: str = ","

    def __post_init__(self) -> None:
        self.source = f"data file {self.path!r}"
        self._columns: list[str] | None = None

    def _reader(self, **options: Any) -> Any:
        import pandas as pd

        handle = tf.io.gfile.GFile(self.path, "rb")
        return pd.read_csv(
            handle,
            sep=self.delimiter,
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            compression=_compression(self.path),
            skip_blank_lines=False,
            **options,
        )

    def columns(self) -> list[str]:
        if self._columns is None:
            import pandas as pd

            try:
                header = self._reader(nrows=0)
            except pd.errors.EmptyDataError:
                raise ValueError(f"{self.source} is empty (no header line).") from None
            self._columns = [str(c) for c in header.columns]
            duplicated = sorted({c for c in self._columns if self._columns.count(c) > 1})
            if duplicated or any(c.startswith("Unnamed: ") for c in self._columns):
                raise ValueError(
                    f"{self.source}: the header has duplicated or empty column names "
                    f"{duplicated or [c for c in self._columns if c.startswith('Unnamed: ')]}"
                )
        return self._columns

    def _record_batches(self, columns: Sequence[str]) -> Iterator[dict[str, np.ndarray]]:
        """The text of ``columns`` in file order, one pyarrow record batch (about 1 MiB of file) at a time.

        pyarrow's streaming reader, one thread, every value as text (``""`` for an empty field); the header
        names come from :meth:`columns`, so both reads of a file see the same names. A blank line is a row of
        empty fields (as pandas with ``skip_blank_lines=False``); a row with too few or too many fields is an
        error that names the file.
        """
        import pyarrow as pa
        import pyarrow.csv as pacsv

        header = self.columns()
        read = pacsv.ReadOptions(use_threads=False, block_size=1 << 20, column_names=header, skip_rows=1)
        parse = pacsv.ParseOptions(
            delimiter=self.delimiter, newlines_in_values=True, ignore_empty_lines=False
        )
        convert = pacsv.ConvertOptions(
            include_columns=list(columns),
            column_types=dict.fromkeys(columns, pa.string()),
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        )
        source: Any = self.path
        if "://" in self.path:
            source = pa.PythonFile(tf.io.gfile.GFile(self.path, "rb"), mode="r")
            if _compression(self.path):
                source = pa.CompressedInputStream(source, "gzip")
        try:
            reader = pacsv.open_csv(source, read_options=read, parse_options=parse, convert_options=convert)
            for batch in reader:
                yield {c: batch.column(c).to_numpy(zero_copy_only=False) for c in columns}
        except pa.ArrowInvalid as error:
            raise ValueError(f"{self.source} could not be read as CSV: {error}") from None

    def chunks(self) -> Iterator[dict[str, np.ndarray]]:
        yield from self._record_batches(self.columns())

    def batches(self, columns: Sequence[str]) -> tf.data.Dataset:
        columns = list(columns)
        self.columns()  # header errors now, not inside the stream
        signature = {c: tf.TensorSpec([None], tf.string) for c in columns}
        return tf.data.Dataset.from_generator(
            lambda: self._record_batches(columns), output_signature=signature
        )


@dataclasses.dataclass
class ParquetPart(Part):
    """A Parquet file, read by pyarrow in record batches."""

    path: str
    batch_rows: int = CHUNK_ROWS

    def __post_init__(self) -> None:
        self.source = f"data file {self.path!r}"
        self._schema: Any = None

    def _file(self) -> Any:
        import pyarrow.parquet as pq

        if "://" not in self.path:
            return pq.ParquetFile(self.path)
        import pyarrow as pa

        return pq.ParquetFile(pa.PythonFile(tf.io.gfile.GFile(self.path, "rb"), mode="r"))

    def schema(self) -> Any:
        if self._schema is None:
            self._schema = self._file().schema_arrow
        return self._schema

    def columns(self) -> list[str]:
        return [str(n) for n in self.schema().names]

    def is_text(self, column: str) -> bool:
        import pyarrow as pa

        kind = self.schema().field(column).type
        return not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind))

    def _arrays(self, columns: Sequence[str]) -> Iterator[dict[str, np.ndarray]]:
        for batch in self._file().iter_batches(batch_size=self.batch_rows, columns=list(columns)):
            out = {}
            for name in columns:
                array = batch.column(name)
                if self.is_text(name):
                    values = array.to_pylist()
                    out[name] = np.array(["" if v is None else str(v) for v in values], dtype=object)
                else:
                    out[name] = array.to_numpy(zero_copy_only=False).astype(np.float64)
            yield out

    def chunks(self) -> Iterator[dict[str, np.ndarray]]:
        yield from self._arrays(self.columns())

    def batches(self, columns: Sequence[str]) -> tf.data.Dataset:
        columns = list(columns)
        signature = {c: tf.TensorSpec([None], tf.string if self.is_text(c) else tf.float64) for c in columns}

        def batches() -> Iterator[dict[str, np.ndarray]]:
            for chunk in self._arrays(columns):
                yield {c: (v.astype(str) if self.is_text(c) else v) for c, v in chunk.items()}

        return tf.data.Dataset.from_generator(batches, output_signature=signature)


@dataclasses.dataclass
class TFRecordPart(Part):
    """A TFRecord file of ``tf.train.Example`` (gzip when the name ends in ``.gz``) with a parsing spec
    ``{column: "float" | "int" | "string"}`` (scalar features; a missing feature is a missing value)."""

    path: str
    spec: Mapping[str, str]

    def __post_init__(self) -> None:
        self.source = f"data file {self.path!r}"
        kinds = {"float": (tf.float32, float("nan")), "int": (tf.int64, -1), "string": (tf.string, "")}
        unknown = {k: v for k, v in self.spec.items() if v not in kinds}
        if unknown:
            raise ValueError(
                f"Expected the TFRecord feature types to be one of {sorted(kinds)}. Received: {unknown}"
            )
        self._features = {
            name: tf.io.FixedLenFeature([], kinds[kind][0], default_value=kinds[kind][1])
            for name, kind in self.spec.items()
        }

    def columns(self) -> list[str]:
        return list(self.spec)

    def is_text(self, column: str) -> bool:
        return self.spec[column] == "string"

    def _records(self) -> tf.data.Dataset:
        return tf.data.TFRecordDataset(self.path, compression_type="GZIP" if _compression(self.path) else "")

    def chunks(self) -> Iterator[dict[str, np.ndarray]]:
        parsed = self._records().batch(CHUNK_ROWS).map(lambda r: tf.io.parse_example(r, self._features))
        for batch in parsed.as_numpy_iterator():
            out = {}
            for name, values in batch.items():
                if self.spec[name] == "string":
                    out[name] = np.array([v.decode("utf-8") for v in values], dtype=object)
                elif self.spec[name] == "int":
                    floats = values.astype(np.float64)
                    floats[values == -1] = np.nan  # the default of a missing feature
                    out[name] = floats
                else:
                    out[name] = values.astype(np.float64)
            yield out

    def batches(self, columns: Sequence[str]) -> tf.data.Dataset:
        features = {c: self._features[c] for c in columns}

        def parse(record: tf.Tensor) -> dict[str, tf.Tensor]:
            parsed = tf.io.parse_example(record, features)
            return {
                c: (tf.where(v == -1, tf.constant(np.nan, tf.float64), tf.cast(v, tf.float64)))
                if self.spec[c] == "int"
                else (tf.cast(v, tf.float64) if self.spec[c] == "float" else v)
                for c, v in parsed.items()
            }

        return self._records().batch(READ_ROWS).map(parse)


def _as_chunk_array(values: np.ndarray) -> np.ndarray:
    """Numbers stay numbers (float64, NaN missing); anything else becomes text ("" missing)."""
    if values.dtype.kind in "biuf":
        return values.astype(np.float64)
    return np.array(["" if _is_missing(v) else str(v) for v in values], dtype=object)


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(np.isnan(value))
    except (TypeError, ValueError):
        return False


@dataclasses.dataclass
class FramePart(Part):
    """Columns in memory (a pandas DataFrame, or a dict of equal-length arrays)."""

    data: Mapping[str, np.ndarray]
    source: str = "the DataFrame"

    def __post_init__(self) -> None:
        self.data = {str(k): _as_chunk_array(np.asarray(v).reshape(len(v))) for k, v in self.data.items()}

    def columns(self) -> list[str]:
        return list(self.data)

    def is_text(self, column: str) -> bool:
        return self.data[column].dtype == object

    def chunks(self) -> Iterator[dict[str, np.ndarray]]:
        n = len(next(iter(self.data.values()))) if self.data else 0
        for start in range(0, n, CHUNK_ROWS):
            yield {c: v[start : start + CHUNK_ROWS] for c, v in self.data.items()}

    def batches(self, columns: Sequence[str]) -> tf.data.Dataset:
        tensors = {c: (self.data[c].astype(str) if self.is_text(c) else self.data[c]) for c in columns}
        return tf.data.Dataset.from_tensor_slices(tensors).batch(READ_ROWS)


@dataclasses.dataclass
class DatasetPart(Part):
    """A ``tf.data.Dataset`` of unbatched ``(features, labels)`` dicts of scalars, or one flat dict."""

    dataset: tf.data.Dataset
    source: str = "the tf.data.Dataset"

    def __post_init__(self) -> None:
        spec = self.dataset.element_spec
        if isinstance(spec, tuple):
            if len(spec) != 2 or not all(isinstance(s, Mapping) for s in spec):
                raise ValueError(
                    "Expected a tf.data.Dataset of (features dict, labels dict) or of one dict. "
                    f"Received elements {spec}"
                )
            self._flat = self.dataset.map(lambda x, y: {**x, **y})
        elif isinstance(spec, Mapping):
            self._flat = self.dataset
        else:
            raise ValueError(f"Expected a tf.data.Dataset of dicts. Received elements {spec}")
        flat = self._flat.element_spec
        bad = {k: s.shape for k, s in flat.items() if s.shape.rank not in (0, None) and s.shape != [1]}
        if bad:
            raise ValueError(
                f"Expected unbatched elements with one scalar per column (call .unbatch()). Received {bad}"
            )
        self._flat = self._flat.map(lambda d: {k: tf.reshape(v, []) for k, v in d.items()})

    def columns(self) -> list[str]:
        return list(self._flat.element_spec)

    def is_text(self, column: str) -> bool:
        return bool(self._flat.element_spec[column].dtype == tf.string)

    def chunks(self) -> Iterator[dict[str, np.ndarray]]:
        for batch in self._flat.batch(CHUNK_ROWS).as_numpy_iterator():
            out = {}
            for name, values in batch.items():
                if values.dtype.kind in "SO":
                    out[name] = np.array([v.decode("utf-8") for v in values], dtype=object)
                else:
                    out[name] = values.astype(np.float64)
            yield out

    def batches(self, columns: Sequence[str]) -> tf.data.Dataset:
        return self._flat.batch(READ_ROWS).map(
            lambda d: {c: (d[c] if d[c].dtype == tf.string else tf.cast(d[c], tf.float64)) for c in columns}
        )


__all__ = [
    "CHUNK_ROWS",
    "READ_ROWS",
    "CsvPart",
    "DatasetPart",
    "FramePart",
    "ParquetPart",
    "Part",
    "TFRecordPart",
    "expand_paths",
]
