"""UCI Adult ("census income") as the census task pair of the MMoE paper.

Data: Becker, B. & Kohavi, R. (1996). Adult. UCI Machine Learning Repository, DOI 10.24432/C5XW20,
licensed CC BY 4.0. Gzipped CSV copies ship in ``mtl_keras/data/files`` (see ``ADULT_SOURCE.md`` there).

Tasks, following Ma et al., "Modeling Task Relationships in Multi-task Learning with Multi-gate
Mixture-of-Experts" (KDD 2018), census-income group 1:

- ``income``: ``class == ">50K"`` (binary);
- ``never_married``: ``marital-status == "Never-married"`` (binary).

``marital-status`` and ``class`` are removed from the inputs. The remaining 13 columns are returned raw, as a
dict keyed by identifier-safe names (``education-num`` -> ``education_num``): numeric columns as float32,
categorical columns as str arrays. The missing-value marker ``?`` of the categorical columns is kept as its
own category, the string ``"?"`` (there are no missing numeric values in Adult; one would become NaN).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import os
import urllib.request
from collections.abc import Iterable, Iterator
from importlib import resources
from pathlib import Path

import numpy as np

from mtl_keras._io import atomic_write_bytes
from mtl_keras.data.base import (
    MultiTaskDataset,
    Split,
    _check_fraction,
    _check_positive_int,
    _check_seed,
    split_validation,
)
from mtl_keras.option_types import Fraction, NonNegativeInt, PositiveInt
from mtl_keras.tasks import Task

#: Where the original files live (``adult.data`` and ``adult.test``).
UCI_BASE_URL = "https://archive.ics.uci.edu/ml/machine-learning-databases/adult/"

#: sha256 of the converted CSV files (from data/adult/SOURCE.md).
SHA256 = {
    "adult.data.csv": "99c4f7ae498c576e385020fa5fd258b485528adb4a7bf789ac690cad732af582",
    "adult.test.csv": "4a08166b1e4930b5180b6fd90216416f965240e53ff9bcb29a7920ee2ad88de8",
}

#: Columns of the CSV files, in order.
COLUMNS = (
    "age",
    "workclass",
    "fnlwgt",
    "education",
    "education-num",
    "marital-status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "capital-gain",
    "capital-loss",
    "hours-per-week",
    "native-country",
    "class",
)
NUMERIC_COLUMNS = frozenset(
    {"age", "fnlwgt", "education-num", "capital-gain", "capital-loss", "hours-per-week"}
)
LABEL_COLUMNS = frozenset({"marital-status", "class"})
MISSING = "?"

#: The raw input features: identifier-safe name -> kind.
FEATURES: dict[str, str] = {
    column.replace("-", "_"): ("numeric" if column in NUMERIC_COLUMNS else "string_categorical")
    for column in COLUMNS
    if column not in LABEL_COLUMNS
}

TASKS = (Task("income", kind="binary"), Task("never_married", kind="binary"))

_FILES = {"train": "adult.data.csv", "test": "adult.test.csv"}
_ORIGINALS = {"adult.data.csv": "adult.data", "adult.test.csv": "adult.test"}

_DESCRIPTION = (
    "UCI Adult (Becker & Kohavi 1996, UCI Machine Learning Repository, DOI 10.24432/C5XW20, CC BY 4.0) "
    "as the MMoE census task pair: income (>50K) and never_married; marital-status and class removed from "
    "the inputs; '?' kept as its own category. Test = adult.test; validation carved from adult.data."
)


class ChecksumError(ValueError):
    """A downloaded file does not have the expected sha256."""


# === Reading ===


def _open_text(data_dir: str | os.PathLike[str] | None, filename: str) -> io.TextIOBase:
    if data_dir is None:
        resource = resources.files("mtl_keras.data").joinpath("files").joinpath(filename + ".gz")
        return io.StringIO(gzip.decompress(resource.read_bytes()).decode("utf-8"), newline="")
    directory = Path(data_dir)
    for candidate in (directory / filename, directory / (filename + ".gz")):
        if candidate.is_file():
            if candidate.suffix == ".gz":
                return io.TextIOWrapper(gzip.open(candidate, "rb"), encoding="utf-8", newline="")
            return open(candidate, encoding="utf-8", newline="")
    raise FileNotFoundError(
        f"Expected {filename} (or {filename}.gz) in `data_dir`. Received: data_dir={str(data_dir)!r}; "
        "see `download_census`."
    )


def _read_rows(lines: Iterable[str], filename: str, max_rows: int | None) -> list[list[str]]:
    reader = csv.reader(lines)
    header = next(reader, None)
    if header is None or tuple(h.strip() for h in header) != COLUMNS:
        raise ValueError(
            f"Expected {filename} to start with the header {','.join(COLUMNS)}. Received: {header}"
        )
    rows = []
    for row in reader:
        if not row or all(not field.strip() for field in row):
            continue  # the files end with a blank line
        if len(row) != len(COLUMNS):
            raise ValueError(
                f"Expected {len(COLUMNS)} fields per row in {filename}. Received {len(row)} on line "
                f"{reader.line_num}: {row}"
            )
        rows.append([field.strip() for field in row])
        if max_rows is not None and len(rows) >= max_rows:
            break
    return rows


def _to_split(rows: list[list[str]]) -> Split:
    columns = {name: [row[i] for row in rows] for i, name in enumerate(COLUMNS)}
    x: dict[str, np.ndarray] = {}
    for column in COLUMNS:
        if column in LABEL_COLUMNS:
            continue
        values = columns[column]
        if column in NUMERIC_COLUMNS:
            array = np.array([np.nan if v == MISSING else float(v) for v in values], dtype=np.float32)
        else:
            array = np.array(values, dtype=str)
        x[column.replace("-", "_")] = array
    income = np.array([c.rstrip(".") == ">50K" for c in columns["class"]], dtype=np.float32)
    never_married = np.array([m == "Never-married" for m in columns["marital-status"]], dtype=np.float32)
    return Split(x=x, y={"income": income, "never_married": never_married})


def load_census(
    validation_fraction: Fraction = 0.1,
    seed: NonNegativeInt = 0,
    data_dir: str | os.PathLike[str] | None = None,
    max_rows: PositiveInt | None = None,
) -> MultiTaskDataset:
    """Load UCI Adult as the two-task census data set (``income``, ``never_married``).

    Args:
        validation_fraction: fraction of ``adult.data`` carved out (deterministically) as validation.
        seed: seed of the validation split.
        data_dir: a folder with ``adult.data.csv`` / ``adult.test.csv`` (optionally ``.gz``), e.g. written by
            `download_census`; None reads the copies shipped with the package.
        max_rows: read at most this many rows of each file (for quick experiments); None reads all.

    Returns:
        A `MultiTaskDataset` with dict inputs (13 raw features, see :data:`FEATURES`) and float32 0/1 labels.
    """
    validation_fraction = _check_fraction("validation_fraction", validation_fraction)
    seed = _check_seed(seed)
    if max_rows is not None:
        max_rows = _check_positive_int("max_rows", max_rows)
    splits = {}
    for split_name, filename in _FILES.items():
        with _open_text(data_dir, filename) as handle:
            splits[split_name] = _to_split(_read_rows(handle, filename, max_rows))
    train, validation = split_validation(splits["train"], validation_fraction, seed)
    return MultiTaskDataset(
        name="census",
        tasks=list(TASKS),
        train=train,
        validation=validation,
        test=splits["test"],
        features=dict(FEATURES),
        description=_DESCRIPTION,
    )


# === Downloading ===


def convert_original(text: str, filename: str) -> str:
    """Convert an original UCI file (``adult.data`` / ``adult.test``) to the CSV format of the shipped copies.

    Adds the header row, removes the spaces after commas, drops the first (comment) line of ``adult.test`` and
    the trailing "." of its labels. Blank lines are kept as they are (the originals end with one).
    """

    def lines() -> Iterator[str]:
        yield ",".join(COLUMNS)
        for number, line in enumerate(text.split("\n")):
            if number == 0 and line.startswith("|"):
                continue  # "|1x3 Cross validator" at the top of adult.test
            if not line.strip():
                yield ""
                continue
            fields = [field.strip() for field in line.split(",")]
            fields[-1] = fields[-1].rstrip(".")
            yield ",".join(fields)

    del filename  # the same rules apply to both files (adult.data has no comment line or trailing ".")
    return "\n".join(lines())


def download_census(
    dest_dir: str | os.PathLike[str], base_url: str = UCI_BASE_URL, *, timeout: float = 60.0
) -> dict[str, Path]:
    """Download the original UCI Adult files, convert them to CSV and verify their sha256.

    Both files are downloaded, converted and checked before anything is written; each is then written to a
    temporary file in ``dest_dir`` and moved into place with `os.replace`, so a failure leaves no partial
    file.

    Args:
        dest_dir: folder for ``adult.data.csv`` and ``adult.test.csv`` (created if missing); pass it as
            ``load_census(data_dir=...)``.
        base_url: URL of the folder holding ``adult.data`` and ``adult.test`` (any scheme urllib opens,
            ``file://`` included).
        timeout: seconds per request.

    Returns:
        ``{csv file name: path written}``.

    Raises:
        ChecksumError: a converted file's sha256 differs from :data:`SHA256`.
    """
    if not base_url.endswith("/"):
        base_url += "/"
    converted: dict[str, bytes] = {}
    for csv_name, original in _ORIGINALS.items():
        with urllib.request.urlopen(base_url + original, timeout=timeout) as response:
            text = response.read().decode("utf-8")
        data = convert_original(text, original).encode("utf-8")
        actual = hashlib.sha256(data).hexdigest()
        if actual != SHA256[csv_name]:
            raise ChecksumError(
                f"Checksum mismatch for {csv_name} (converted from {base_url + original}): expected sha256 "
                f"{SHA256[csv_name]}, got {actual}. Nothing was written."
            )
        converted[csv_name] = data
    directory = Path(dest_dir)
    directory.mkdir(parents=True, exist_ok=True)
    written = {}
    for csv_name, data in converted.items():
        target = directory / csv_name
        atomic_write_bytes(target, data)
        written[csv_name] = target
    return written
