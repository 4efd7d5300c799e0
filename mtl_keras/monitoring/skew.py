"""Training/serving skew: compare a serving-time table with the training feature statistics of an export.

Per feature column the check computes the population stability index between the training distribution
``e`` (from the export's ``feature_statistics.json``) and the serving distribution ``a`` over the same bins:

    PSI = sum_i (a_i - e_i) * ln(a_i / e_i),

with every fraction floored at :data:`EPSILON` (a bin empty on one side would otherwise be infinite). The
bins are, for a numeric column, the intervals between its distinct training deciles plus one bin for missing
(and non-numeric) values; for any other column, each of its most frequent training values, one bin for
every other value and one for missing values. A column *drifted* when its PSI reaches :data:`WARN` (0.1,
"some shift") and *alarms* at :data:`ALARM` (0.25, "a major shift"), the usual reading of the PSI. Each
column's missing rate in both tables and its change are reported as well (the missing bin is part of the
PSI, so a jump in missing values moves it too).

Missing values follow :mod:`mtl_keras.data.statistics` (empty cells, NaN, ``na``, ``null``, ``?`` …); a numeric
column's text that is no finite number is counted as ``non_numeric`` and falls in the missing bin. The
serving table must hold every feature of the statistics (a missing column is an error naming it) and no
column the model does not know (an error naming it; the training labels and weights are allowed).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mtl_keras._registry import suggest
from mtl_keras.data.statistics import MISSING_TOKENS, value_text
from mtl_keras.monitoring.feature_statistics import bin_index, read_feature_statistics

#: PSI at which a column is reported as drifted ("warn").
WARN = 0.1
#: PSI at which a column raises the alarm (``mtl-keras skew`` exits with status 1).
ALARM = 0.25
#: The floor of every bin fraction in the PSI.
EPSILON = 1e-4
#: Name of the bin of values outside a column's stored top values.
OTHER = "<other>"
MISSING = "<missing>"


def population_stability_index(
    expected: Iterable[float], actual: Iterable[float], epsilon: float = EPSILON
) -> float:
    """PSI between two distributions over the same bins (fractions; each floored at ``epsilon``)."""
    e = np.maximum(np.asarray(list(expected), dtype=np.float64), epsilon)
    a = np.maximum(np.asarray(list(actual), dtype=np.float64), epsilon)
    if e.shape != a.shape or e.ndim != 1 or not e.size:
        raise ValueError(
            f"Expected two non-empty distributions over the same bins. Received {e.size} and {a.size} bins."
        )
    return float(np.sum((a - e) * np.log(a / e)))


def _missing_text(values: np.ndarray) -> np.ndarray:
    text = pd.Series(values, dtype=object).astype(str).str.strip().str.lower()
    return text.isin(MISSING_TOKENS).to_numpy()


class _Column:
    """Serving-time counts of one column over its training bins."""

    def __init__(self, name: str, entry: Mapping[str, Any]) -> None:
        self.name = name
        self.entry = entry
        self.numeric = entry["kind"] == "numeric"
        self.count = 0
        self.missing = 0
        self.non_numeric = 0
        self.total = 0.0  # sum of the numeric values (their mean)
        if self.numeric:
            self.edges = np.asarray(entry["bins"]["edges"], dtype=np.float64)
            self.bins = np.zeros(len(self.edges) + 1, dtype=np.int64)
        else:
            self.values = list(entry["top"])
            self.index = {value: i for i, value in enumerate(self.values)}
            self.bins = np.zeros(len(self.values) + 1, dtype=np.int64)  # the last: other values

    def update(self, values: np.ndarray) -> None:
        self.count += len(values)
        if self.numeric:
            self._numbers(values)
            return
        text = value_text(values)
        missing = _missing_text(text)
        self.missing += int(missing.sum())
        codes = pd.Series(text[~missing], dtype=object).map(self.index).fillna(len(self.values))
        self.bins += np.bincount(codes.to_numpy(dtype=np.int64), minlength=len(self.bins))

    def _numbers(self, values: np.ndarray) -> None:
        if values.dtype.kind in "iubf":
            numbers = values.astype(np.float64)
            missing = np.isnan(numbers)
        else:
            missing = _missing_text(values)
            numbers = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").to_numpy(np.float64)
        bad = ~missing & ~np.isfinite(numbers)
        self.missing += int(missing.sum())
        self.non_numeric += int(bad.sum())
        present = numbers[np.isfinite(numbers)]
        self.total += float(present.sum())
        self.bins += np.bincount(bin_index(self.edges, present), minlength=len(self.bins))

    def result(self, warn: float, alarm: float) -> dict[str, Any]:
        rows = max(self.count, 1)
        absent = self.missing + self.non_numeric
        if self.numeric:
            expected = [*self.entry["bins"]["fractions"], self.entry["missing_rate"]]
            labels = [
                *(f"<= {e:.6g}" for e in self.edges),
                f"> {self.edges[-1]:.6g}" if len(self.edges) else "all",
            ]
        else:
            expected = [*self.entry["top"].values(), self.entry["other_rate"], self.entry["missing_rate"]]
            labels = [*self.values, OTHER]
        actual = [*(self.bins / rows), absent / rows]
        labels.append(MISSING)
        psi = population_stability_index(expected, actual)
        contributions = [
            (a - e) * math.log(max(a, EPSILON) / max(e, EPSILON))
            for e, a in zip(expected, actual, strict=True)
        ]
        worst = int(np.argmax(contributions))
        status = "alarm" if psi >= alarm else "warn" if psi >= warn else "ok"
        result: dict[str, Any] = {
            "kind": self.entry["kind"],
            "psi": psi,
            "status": status,
            "rows": self.count,
            "missing_rate_training": float(self.entry["missing_rate"]),
            "missing_rate_serving": self.missing / rows,
            "missing_rate_change": self.missing / rows - float(self.entry["missing_rate"]),
            "largest_shift": {
                "bin": labels[worst],
                "training": float(expected[worst]),
                "serving": float(actual[worst]),
            },
        }
        if self.numeric:
            present = self.count - self.missing - self.non_numeric
            result["non_numeric"] = self.non_numeric
            result["mean_training"] = self.entry.get("mean")
            result["mean_serving"] = self.total / present if present else None
        return result


def _check_thresholds(warn: float, alarm: float) -> None:
    for name, value in (("warn", warn), ("alarm", alarm)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"Expected `{name}` to be a positive number. Received: {name}={value!r}")
    if warn > alarm:
        raise ValueError(f"Expected `warn` ≤ `alarm`. Received: warn={warn}, alarm={alarm}")


def compare(
    statistics: Mapping[str, Any],
    chunks: Iterable[Mapping[str, np.ndarray]],
    *,
    columns: list[str],
    source: str = "the serving data",
    warn: float = WARN,
    alarm: float = ALARM,
) -> dict[str, Any]:
    """The skew report of chunks of serving rows (``{column: 1-D array}``) against ``statistics``.

    Args:
        statistics: the export's feature statistics (:func:`read_feature_statistics`).
        chunks: the serving table's rows, chunk by chunk.
        columns: the serving table's columns (checked before any row is read).
        source: how errors name the serving table.
        warn, alarm: the PSI thresholds.
    """
    _check_thresholds(warn, alarm)
    features = statistics["columns"]
    missing = [name for name in features if name not in columns]
    allowed = set(features) | set(statistics.get("ignored_columns", []))
    unknown = [name for name in columns if name not in allowed]
    if missing:
        raise ValueError(
            f"{source} lacks the feature column(s) {missing}; the model was trained on {sorted(features)}."
            + (suggest(missing[0], unknown) if unknown else "")
        )
    if unknown:
        raise ValueError(
            f"{source} has column(s) {unknown} the model does not know; expected the features "
            f"{sorted(features)} (and optionally {sorted(allowed - set(features))})."
            + suggest(unknown[0], sorted(features))
        )
    state = {name: _Column(name, entry) for name, entry in features.items()}
    for chunk in chunks:
        for name, column in state.items():
            column.update(np.asarray(chunk[name]))
    rows = next(iter(state.values())).count if state else 0
    if rows == 0:
        raise ValueError(f"{source} has no rows to compare with the training statistics.")
    results = {name: column.result(warn, alarm) for name, column in state.items()}
    return {
        "rows": rows,
        "training_rows": statistics.get("rows"),
        "training_source": statistics.get("source", ""),
        "thresholds": {"warn": warn, "alarm": alarm, "epsilon": EPSILON},
        "columns": results,
        "drifted": sorted(n for n, r in results.items() if r["status"] != "ok"),
        "alarms": sorted(n for n, r in results.items() if r["status"] == "alarm"),
        "ok": all(r["status"] != "alarm" for r in results.values()),
    }


def version_dir(export_dir: str | os.PathLike[str]) -> Path:
    """A version directory as given, or the newest version of an export base directory."""
    from mtl_keras.export._standalone_check import list_versions

    path = Path(export_dir)
    if (path / "saved_model.pb").is_file():
        return path
    versions = list_versions(path)
    if not versions:
        raise ValueError(
            f"Expected an export base directory (holding version directories) or a version directory. "
            f"Received {str(path)!r}, which holds neither."
        )
    return path / str(versions[-1])


def _part(data_file: str) -> Any:
    from mtl_keras.data.tables import CsvPart, ParquetPart, expand_paths

    (path,) = expand_paths(data_file, "data file")[:1]
    if path.endswith((".parquet", ".pq")):
        return ParquetPart(path)
    return CsvPart(path, delimiter="\t" if path.endswith(".tsv") else ",")


def check_skew(
    export_dir: str | os.PathLike[str],
    data_file: str,
    *,
    warn: float = WARN,
    alarm: float = ALARM,
) -> dict[str, Any]:
    """Compare ``data_file`` (CSV, ``.csv.gz``, ``.tsv`` or Parquet) with the training feature statistics of
    the export in ``export_dir`` (a base directory: its newest version; or a version directory).

    Returns the report: per column ``psi``, ``status`` (``ok`` / ``warn`` / ``alarm``), missing rates;
    ``drifted`` and ``alarms`` list the columns, ``ok`` is false when any column alarms.
    """
    _check_thresholds(warn, alarm)
    version = version_dir(export_dir)
    statistics = read_feature_statistics(version)
    part = _part(str(data_file))
    report = compare(
        statistics, part.chunks(), columns=part.columns(), source=part.source, warn=warn, alarm=alarm
    )
    return {"export": str(version), "data_file": str(data_file), **report}


def format_skew(report: Mapping[str, Any]) -> str:
    """The report as a table, one line per column, the largest PSI first."""
    header = (
        f"{'column':<24} {'kind':<12} {'PSI':>8} {'status':<6} {'missing train→serve':>20}  largest shift"
    )
    lines = [
        f"{report.get('data_file', 'serving data')}: {report['rows']} rows vs {report.get('training_rows')} "
        f"training rows of {report.get('export', 'the export')}",
        header,
    ]
    ordered = sorted(report["columns"].items(), key=lambda item: -item[1]["psi"])
    for name, column in ordered:
        shift = column["largest_shift"]
        missing = f"{column['missing_rate_training']:.3f}→{column['missing_rate_serving']:.3f}"
        lines.append(
            f"{name:<24} {column['kind']:<12} {column['psi']:>8.4f} {column['status']:<6} {missing:>20}  "
            f"{shift['bin']}: {shift['training']:.3f}→{shift['serving']:.3f}"
        )
    thresholds = report["thresholds"]
    lines.append(
        f"PSI ≥ {thresholds['warn']:g}: drifted {report['drifted'] or 'none'}; "
        f"PSI ≥ {thresholds['alarm']:g}: alarm {report['alarms'] or 'none'}"
    )
    return "\n".join(lines)


__all__ = [
    "ALARM",
    "EPSILON",
    "WARN",
    "check_skew",
    "compare",
    "format_skew",
    "population_stability_index",
    "version_dir",
]
