"""UCI Census-Income (KDD) as the two task pairs of the MMoE paper.

Data: Lane, T. & Kohavi, R. Census-Income (KDD) [Dataset]. UCI Machine Learning Repository (data set 117),
licensed CC BY 4.0: weighted records of the US Census Bureau's Current Population Surveys of 1994 and 1995.
The original ``census-income.test`` file (99,762 rows) ships gzipped in ``mtl_keras/data/files`` (see
``KDD_SOURCE.md`` there); the original training file ``census-income.data`` (199,523 rows) does not, and
`download_census_kdd` fetches both.

Tasks, following Ma et al., "Modeling Task Relationships in Multi-task Learning with Multi-gate
Mixture-of-Experts" (KDD 2018), section 6.3 (census-income data):

- ``task_pair="income"``: ``income`` (the label is ``50000+.``, i.e. income > 50K) and ``never_married``
  (``marital stat == "Never married"``);
- ``task_pair="education"``: ``education`` and ``never_married``. The paper's task is "whether the education
  level is at least college"; here that means any college: ``education`` is one of :data:`COLLEGE_OR_HIGHER`
  (some college but no degree, both associates degrees, bachelors, masters, professional school, doctorate).
  High school graduates, every grade below and ``Children`` are negatives.

Removed from the inputs: the instance weight (a survey weight, not a property of the person), ``income``,
``marital stat`` and, in the education pair, ``education``. ``enroll in edu inst last wk`` stays an input of
both pairs: it is not a label, although its value "College or university" implies a positive education label.
The remaining 39 (income pair) or 38 (education pair) columns are returned raw, keyed by identifier-safe
names from the UCI column documentation: the 7 continuous columns as float32 (``numeric``), the 5 numeric
codes (detailed industry / occupation recode, own business or self employed, veterans benefits, year) as
int64 (``integer_categorical``), the other columns as str arrays (``categorical``) with surrounding spaces
removed and the missing-value marker ``?`` kept as its own category.

Splits. With only ``census-income.test`` available (the shipped copy, or a ``data_dir`` without the training
file) its rows are split into train(+validation) and test by the rule of `split_validation`:
``round(test_fraction * n)`` rows chosen by ``numpy.random.default_rng(seed).permutation(n)`` are the test
rows. The default ``test_fraction=None`` is the reference split of the full file, 70,000 train(+validation)
/ 29,762 test rows (the same proportion of ``max_rows`` rows when given). With ``census-income.data`` in
``data_dir`` the original UCI split is used (train = ``census-income.data``, test = ``census-income.test``).
In both cases ``validation_fraction`` of the training part is carved out as validation by the same rule with
the same seed. Every part keeps the file's row order.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import os
import urllib.request
import zlib
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from mtl_keras._io import atomic_write_bytes
from mtl_keras.data.base import (
    MultiTaskDataset,
    Split,
    _check_fraction,
    _check_positive_int,
    _check_seed,
    split_validation,
)
from mtl_keras.data.census import ChecksumError
from mtl_keras.option_types import Fraction, NonNegativeInt, PositiveInt
from mtl_keras.tasks import Task

logger = logging.getLogger(__name__)

#: Where the original gzipped files live (``census-income.data.gz``, ``census-income.test.gz``).
UCI_KDD_BASE_URL = "https://archive.ics.uci.edu/ml/machine-learning-databases/census-income-mld/"

#: sha256 of the uncompressed original files (from data/census_income_kdd/SOURCE.md). The training file was
#: not available when this table was written: its checksum is unknown (None), and `download_census_kdd`
#: only checks that it parses, with a logged warning, unless the caller passes its sha256.
SHA256: dict[str, str | None] = {
    "census-income.test": "98402b1ab879573d0a7f38a699a40258080e25e33d3401e7bf9c96d3fa0fab8c",
    "census-income.data": None,
}

#: The 42 columns of the files (no header), in order, named after the UCI column documentation.
COLUMNS = (
    "age",
    "class_of_worker",
    "detailed_industry_recode",
    "detailed_occupation_recode",
    "education",
    "wage_per_hour",
    "enroll_in_edu_inst_last_wk",
    "marital_stat",
    "major_industry_code",
    "major_occupation_code",
    "race",
    "hispanic_origin",
    "sex",
    "member_of_a_labor_union",
    "reason_for_unemployment",
    "full_or_part_time_employment_stat",
    "capital_gains",
    "capital_losses",
    "dividends_from_stocks",
    "tax_filer_stat",
    "region_of_previous_residence",
    "state_of_previous_residence",
    "detailed_household_and_family_stat",
    "detailed_household_summary_in_household",
    "instance_weight",
    "migration_code_change_in_msa",
    "migration_code_change_in_reg",
    "migration_code_move_within_reg",
    "live_in_this_house_1_year_ago",
    "migration_prev_res_in_sunbelt",
    "num_persons_worked_for_employer",
    "family_members_under_18",
    "country_of_birth_father",
    "country_of_birth_mother",
    "country_of_birth_self",
    "citizenship",
    "own_business_or_self_employed",
    "fill_inc_questionnaire_for_veterans_admin",
    "veterans_benefits",
    "weeks_worked_in_year",
    "year",
    "income",
)
#: Continuous columns (the UCI documentation's "continuous" attributes).
NUMERIC_COLUMNS = frozenset(
    {
        "age",
        "wage_per_hour",
        "capital_gains",
        "capital_losses",
        "dividends_from_stocks",
        "instance_weight",
        "num_persons_worked_for_employer",
        "weeks_worked_in_year",
    }
)
#: Nominal columns written as numbers (codes, not quantities).
CODE_COLUMNS = frozenset(
    {
        "detailed_industry_recode",
        "detailed_occupation_recode",
        "own_business_or_self_employed",
        "veterans_benefits",
        "year",
    }
)
MISSING = "?"
#: ``education`` values counted as "at least college" (the positives of the ``education`` task).
COLLEGE_OR_HIGHER = frozenset(
    {
        "Some college but no degree",
        "Associates degree-occup /vocational",
        "Associates degree-academic program",
        "Bachelors degree(BA AB BS)",
        "Masters degree(MA MS MEng MEd MSW MBA)",
        "Prof school degree (MD DDS DVM LLB JD)",
        "Doctorate degree(PhD EdD)",
    }
)
INCOME_LABELS = {"- 50000.": 0.0, "50000+.": 1.0}
NEVER_MARRIED = "Never married"

TaskPair = Literal["income", "education"]
#: Task pair -> (task names, columns removed from the inputs).
TASK_PAIRS: dict[str, tuple[tuple[str, str], frozenset[str]]] = {
    "income": (("income", "never_married"), frozenset({"instance_weight", "income", "marital_stat"})),
    "education": (
        ("education", "never_married"),
        frozenset({"instance_weight", "income", "marital_stat", "education"}),
    ),
}

#: Rows of the reference split of ``census-income.test``: 70,000 train(+validation) of 99,762.
REFERENCE_TRAIN_ROWS = 70_000
REFERENCE_TOTAL_ROWS = 99_762
#: The default test fraction of a seeded split: ``round(0.2983… * 99,762) = 29,762`` test rows.
REFERENCE_TEST_FRACTION = (REFERENCE_TOTAL_ROWS - REFERENCE_TRAIN_ROWS) / REFERENCE_TOTAL_ROWS

_TEST_FILE = "census-income.test"
_TRAIN_FILE = "census-income.data"


def _kind(column: str) -> str:
    if column in NUMERIC_COLUMNS:
        return "numeric"
    return "integer_categorical" if column in CODE_COLUMNS else "categorical"


def feature_kinds(task_pair: TaskPair = "income") -> dict[str, str]:
    """The raw input features of ``task_pair``: name -> kind (``numeric``, ``integer_categorical``,
    ``categorical``)."""
    removed = _task_pair(task_pair)[1]
    return {column: _kind(column) for column in COLUMNS if column not in removed}


def _task_pair(task_pair: Any) -> tuple[tuple[str, str], frozenset[str]]:
    if task_pair not in TASK_PAIRS:
        raise ValueError(
            f"Expected `task_pair` to be one of {sorted(TASK_PAIRS)}. Received: task_pair={task_pair!r}"
        )
    return TASK_PAIRS[task_pair]


# === Reading ===


def _find(data_dir: str | os.PathLike[str], filename: str) -> Path | None:
    directory = Path(data_dir)
    for candidate in (directory / filename, directory / (filename + ".gz")):
        if candidate.is_file():
            return candidate
    return None


class _Encoded:
    """The columns of one file as ``(distinct values, codes)`` pairs: values converted once per distinct
    value, rows gathered by index (fast, and splitting the rows needs no copy of the whole table)."""

    def __init__(self, frame: pd.DataFrame, filename: str) -> None:
        self.filename = filename
        self.num_rows = len(frame)
        self.columns: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for position, column in enumerate(COLUMNS):
            codes, uniques = pd.factorize(frame[position])
            values = [str(value).strip() for value in uniques]
            self.columns[column] = (self._convert(column, values), codes)
        income = [INCOME_LABELS.get(value) for value in self.columns["income"][0]]
        if None in income:
            unknown = sorted(v for v, i in zip(self.columns["income"][0], income, strict=True) if i is None)
            raise ValueError(
                f"Expected the income column of {filename} to hold {sorted(INCOME_LABELS)}. Received: {unknown}"
            )
        marital, education = self.columns["marital_stat"][0], self.columns["education"][0]
        self.labels = {
            "income": (np.array(income, dtype=np.float32), self.columns["income"][1]),
            "never_married": ((marital == NEVER_MARRIED).astype(np.float32), self.columns["marital_stat"][1]),
            "education": (
                np.isin(education, sorted(COLLEGE_OR_HIGHER)).astype(np.float32),
                self.columns["education"][1],
            ),
        }

    def _convert(self, column: str, values: list[str]) -> np.ndarray:
        try:
            if column in NUMERIC_COLUMNS:
                return np.array([np.nan if v == MISSING else float(v) for v in values], dtype=np.float32)
            if column in CODE_COLUMNS:
                return np.array([int(v) for v in values], dtype=np.int64)
        except ValueError as error:
            raise ValueError(
                f"Expected column {column!r} of {self.filename} to hold {_kind(column)} numbers. "
                f"Received: {error}"
            ) from None
        return np.array(values, dtype=str)

    def split(self, task_pair: TaskPair, features: Iterable[str], rows: np.ndarray | None = None) -> Split:
        """The rows ``rows`` (all when None) as a `Split` of ``task_pair`` with the inputs ``features``."""
        tasks, _ = _task_pair(task_pair)

        def gather(values: np.ndarray, codes: np.ndarray) -> np.ndarray:
            return values[codes if rows is None else codes[rows]]

        x = {column: gather(*self.columns[column]) for column in features}
        return Split(x=x, y={task: gather(*self.labels[task]) for task in tasks})


def read_file(source: Path | bytes, filename: str, max_rows: int | None = None) -> _Encoded:
    """Read an original file (a path, ``.gz`` or not, or gzipped bytes): 42 comma-separated fields per row,
    no header; every value stripped of surrounding spaces."""
    if isinstance(source, bytes):
        handle: Any = io.BytesIO(source)
        compression: Any = "gzip"
    else:
        handle, compression = source, "infer"
    frame = pd.read_csv(
        handle,
        header=None,
        dtype=object,
        compression=compression,
        skipinitialspace=True,
        keep_default_na=False,
        na_filter=False,
        nrows=max_rows,
    )
    if frame.shape[1] != len(COLUMNS):
        raise ValueError(
            f"Expected {len(COLUMNS)} comma-separated fields per row in {filename}. "
            f"Received: {frame.shape[1]}"
        )
    return _Encoded(frame, filename)


def _rows(num_rows: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices ``(kept, carved)``, with exactly the permutation of `split_validation`."""
    index = Split(x=np.arange(num_rows), y={"row": np.zeros(num_rows)})
    kept, carved = split_validation(index, fraction, seed)
    return np.asarray(kept.x), np.asarray(carved.x)


def load_census_kdd(
    task_pair: TaskPair = "income",
    validation_fraction: Fraction = 0.1,
    test_fraction: Fraction | None = None,
    seed: NonNegativeInt = 0,
    data_dir: str | os.PathLike[str] | None = None,
    max_rows: PositiveInt | None = None,
    features: Sequence[str] | None = None,
) -> MultiTaskDataset:
    """Load Census-Income (KDD) as a two-task data set (see the module docstring for tasks and splits).

    Args:
        task_pair: ``"income"`` (tasks ``income``, ``never_married``) or ``"education"`` (``education``,
            ``never_married``).
        validation_fraction: fraction of the training part carved out (deterministically) as validation.
        test_fraction: when only ``census-income.test`` is read, the fraction of its rows used as test; None:
            the reference split, 29,762 of its 99,762 rows (the same proportion of ``max_rows``). Must be None
            when ``data_dir`` holds ``census-income.data`` (the original train/test split is used).
        seed: seed of the test and validation splits.
        data_dir: a folder with ``census-income.test`` and optionally ``census-income.data`` (each optionally
            ``.gz``), e.g. written by `download_census_kdd`; None reads the copy shipped with the package.
        max_rows: read at most this many rows of each file (for quick experiments); None reads all.
        features: the input columns to keep (names of `feature_kinds`, e.g. ``["age", "education"]``), for
            quick experiments and ablations; None keeps all.

    Returns:
        A `MultiTaskDataset` named ``census_kdd`` with dict inputs (see `feature_kinds`) and float32 0/1
        labels.
    """
    tasks, _ = _task_pair(task_pair)
    kinds = feature_kinds(task_pair)
    if features is not None:
        unknown = [name for name in features if name not in kinds]
        if isinstance(features, str) or not features or unknown:
            raise ValueError(
                f"Expected `features` to be a non-empty list of input columns of the {task_pair!r} task pair, "
                f"among {list(kinds)}. Received: features={features!r}"
            )
        kinds = {name: kind for name, kind in kinds.items() if name in features}
    validation_fraction = _check_fraction("validation_fraction", validation_fraction)
    if test_fraction is not None:
        test_fraction = _check_fraction("test_fraction", test_fraction)
    seed = _check_seed(seed)
    if max_rows is not None:
        max_rows = _check_positive_int("max_rows", max_rows)
    train_path = None
    if data_dir is None:
        resource = resources.files("mtl_keras.data").joinpath("files").joinpath(_TEST_FILE + ".gz")
        test_file = read_file(resource.read_bytes(), _TEST_FILE, max_rows)
    else:
        test_path = _find(data_dir, _TEST_FILE)
        if test_path is None:
            raise FileNotFoundError(
                f"Expected {_TEST_FILE} (or {_TEST_FILE}.gz) in `data_dir`. Received: "
                f"data_dir={str(data_dir)!r}; see `download_census_kdd`."
            )
        test_file = read_file(test_path, _TEST_FILE, max_rows)
        train_path = _find(data_dir, _TRAIN_FILE)
    if train_path is None:
        if test_file.num_rows < 3:
            raise ValueError(
                f"Expected at least 3 rows of {_TEST_FILE} to split into train, validation and test. "
                f"Received: {test_file.num_rows}"
            )
        fraction = REFERENCE_TEST_FRACTION if test_fraction is None else test_fraction
        train_part, test_rows = _rows(test_file.num_rows, fraction, seed)
        kept, carved = _rows(len(train_part), validation_fraction, seed)
        train_rows, validation_rows = train_part[kept], train_part[carved]
        train, validation = (
            test_file.split(task_pair, kinds, train_rows),
            test_file.split(task_pair, kinds, validation_rows),
        )
        test = test_file.split(task_pair, kinds, test_rows)
        how = (
            f"seeded split of {_TEST_FILE} (seed {seed}): {len(train_part)} train+validation / "
            f"{len(test_rows)} test rows"
        )
    else:
        if test_fraction is not None:
            raise ValueError(
                f"Expected `test_fraction=None` when `data_dir` holds {_TRAIN_FILE} (the original UCI split is "
                f"used). Received: test_fraction={test_fraction!r}"
            )
        train_file = read_file(train_path, _TRAIN_FILE, max_rows)
        kept, carved = _rows(train_file.num_rows, validation_fraction, seed)
        train, validation = (
            train_file.split(task_pair, kinds, kept),
            train_file.split(task_pair, kinds, carved),
        )
        test = test_file.split(task_pair, kinds)
        how = f"original UCI split: train {_TRAIN_FILE}, test {_TEST_FILE}"
    description = (
        "UCI Census-Income (KDD) (Lane & Kohavi, UCI Machine Learning Repository data set 117, CC BY 4.0) as "
        f"the MMoE paper's {task_pair} task pair: {tasks[0]} and {tasks[1]}; instance weight and the label "
        f"columns removed from the inputs; '?' kept as its own category. {how}; validation carved from train."
    )
    return MultiTaskDataset(
        name="census_kdd",
        tasks=[Task(name, kind="binary") for name in tasks],
        train=train,
        validation=validation,
        test=test,
        features=kinds,
        description=description,
    )


# === Downloading ===


def download_census_kdd(
    dest_dir: str | os.PathLike[str],
    base_url: str = UCI_KDD_BASE_URL,
    *,
    files: Sequence[str] = (_TRAIN_FILE, _TEST_FILE),
    sha256: Mapping[str, str | None] | None = None,
    timeout: float = 60.0,
) -> dict[str, Path]:
    """Download the original gzipped Census-Income (KDD) files and verify their sha256.

    Each ``<name>.gz`` is fetched from ``base_url``, decompressed, checked (the sha256 of the uncompressed
    file against :data:`SHA256`, or ``sha256`` when given, and that it parses as 42 columns with known income
    labels) before anything is written; then each is written as downloaded (gzipped) to a temporary file in
    ``dest_dir`` and moved into place, so a failure leaves no partial file. A file whose checksum is unknown
    (``census-income.data`` by default) is only checked to parse, with a logged warning.

    Args:
        dest_dir: folder for ``census-income.data.gz`` / ``census-income.test.gz`` (created if missing); pass
            it as ``load_census_kdd(data_dir=...)``.
        base_url: URL of the folder holding the ``.gz`` files (any scheme urllib opens, ``file://`` included).
        files: which files to fetch (names without ``.gz``).
        sha256: ``{file name: sha256 of the uncompressed file or None}`` overriding :data:`SHA256`.
        timeout: seconds per request.

    Returns:
        ``{file name: path written}`` (the keys without ``.gz``).

    Raises:
        ChecksumError: a file's sha256 differs from the expected one.
    """
    checksums = {**SHA256, **dict(sha256 or {})}
    for name in files:
        if name not in checksums:
            raise ValueError(f"Expected `files` among {sorted(checksums)}. Received: {name!r}")
    if not base_url.endswith("/"):
        base_url += "/"
    downloaded: dict[str, bytes] = {}
    for name in files:
        url = base_url + name + ".gz"
        with urllib.request.urlopen(url, timeout=timeout) as response:
            data = response.read()
        try:
            text = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as error:
            raise ValueError(f"Expected {url} to be a gzip file. Received: {error}") from None
        actual = hashlib.sha256(text).hexdigest()
        expected = checksums[name]
        if expected is None:
            logger.warning(
                "No known sha256 for %s: not verified by checksum, only checked to parse (sha256 of the "
                "uncompressed file: %s).",
                name,
                actual,
            )
        elif actual != expected:
            raise ChecksumError(
                f"Checksum mismatch for {name} (uncompressed from {url}): expected sha256 {expected}, got "
                f"{actual}. Nothing was written."
            )
        read_file(data, name)  # 42 columns, numbers where expected, known income labels, or a ValueError
        downloaded[name] = data
    directory = Path(dest_dir)
    directory.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, data in downloaded.items():
        target = directory / (name + ".gz")
        atomic_write_bytes(target, data)
        written[name] = target
    return written
