"""The training feature statistics an export carries: ``<version>/assets.extra/feature_statistics.json``.

Computed from the raw features of the training split: for a user's table, the statistics of its streaming
pass (:class:`mtl_keras.data.statistics.StatisticsPass`, already computed when the data set was built); for
a bundled data set with raw features (census), the same pass over its training split. Data sets of dense
vectors or images have none.

Per column (the raw feature name, as a serving-time table names it):

* every kind: ``kind``, ``count`` (training rows), ``missing_rate`` (the fraction of rows missing, by the
  rules of :mod:`mtl_keras.data.statistics`);
* ``numeric``: ``mean``, ``std`` (population), ``min``, ``max``, ``quantiles`` (``{"0.01": value, …}`` at
  :data:`QUANTILES`) and the bins the skew check uses: ``bins.edges`` (the distinct training deciles) and
  ``bins.fractions`` (the fraction of *all* rows in ``(-inf, e0], (e0, e1], …, (e_last, inf)``; with the
  missing rate they sum to 1);
* other kinds (categorical, integer_categorical, id, multi_hot; whole cell values): ``distinct``, ``top``
  (``{value: fraction of all rows}`` for the :data:`TOP_VALUES` most frequent values) and ``other_rate``
  (the rows with any other value).

Quantiles and bins come from the pass's uniform sample of the numeric values (exact up to
:data:`mtl_keras.data.statistics.SAMPLE_SIZE` values), mean and std from all values.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mtl_keras.data.columns import KIND_ALIASES
from mtl_keras.data.statistics import ColumnStats, compute_statistics

#: Where the statistics live, relative to a version directory.
STATISTICS_FILE = os.path.join("assets.extra", "feature_statistics.json")
#: Quantiles stored per numeric column.
QUANTILES = (0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99)
#: The deciles whose distinct values are a numeric column's bin edges.
BIN_QUANTILES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
#: The most frequent values stored per non-numeric column.
TOP_VALUES = 20
FORMAT_VERSION = 1


def bin_index(edges: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The bin of each value: 0 for ``(-inf, edges[0]]``, i for ``(edges[i-1], edges[i]]``, ``len(edges)``
    for ``(edges[-1], inf)``."""
    return np.searchsorted(np.asarray(edges, dtype=np.float64), values, side="left")


def _numeric(stats: ColumnStats) -> dict[str, Any]:
    sample = np.asarray(stats.sample, dtype=np.float64)
    present_rate = stats.present / stats.count if stats.count else 0.0
    result: dict[str, Any] = {
        "mean": stats.mean,
        "std": None if stats.variance is None else float(np.sqrt(stats.variance)),
        "min": stats.minimum,
        "max": stats.maximum,
        "quantiles": {},
        "bins": {"edges": [], "fractions": [present_rate] if stats.present else []},
    }
    if sample.size:
        result["quantiles"] = {f"{q:g}": float(np.quantile(sample, q)) for q in QUANTILES}
        edges = np.unique(np.quantile(sample, BIN_QUANTILES))
        counts = np.bincount(bin_index(edges, sample), minlength=len(edges) + 1)
        result["bins"] = {
            "edges": [float(e) for e in edges],
            "fractions": [float(c) / sample.size * present_rate for c in counts],
        }
    return result


def _categorical(stats: ColumnStats) -> dict[str, Any]:
    top = dict(list(stats.top.items())[:TOP_VALUES])
    total = stats.count or 1
    return {
        "distinct": int(stats.distinct),
        "top": {value: count / total for value, count in top.items()},
        "other_rate": max(stats.present - sum(top.values()), 0) / total,
    }


def summarize(
    statistics: Mapping[str, ColumnStats],
    kinds: Mapping[str, str],
    *,
    source: str = "",
    ignored_columns: list[str] | None = None,
) -> dict[str, Any]:
    """The JSON-serialisable summary of ``statistics`` (see the module docstring).

    Args:
        statistics: ``{column: ColumnStats}`` of the training split.
        kinds: ``{column: feature kind}``; columns of kind ``skip`` (or not in ``kinds``) are left out.
        source: what the statistics describe, e.g. ``"training split of 'census'"``.
        ignored_columns: other columns a serving-time table may hold (labels, weights), ignored by the
            skew check.
    """
    columns: dict[str, Any] = {}
    for name, kind in kinds.items():
        kind = KIND_ALIASES.get(kind, kind)
        if kind == "skip":
            continue
        if name not in statistics:
            raise ValueError(
                f"No statistics for feature {name!r}. Received statistics for {sorted(statistics)}."
            )
        stats = statistics[name]
        entry: dict[str, Any] = {
            "kind": kind,
            "count": int(stats.count),
            "missing_rate": stats.missing / stats.count if stats.count else 0.0,
        }
        entry |= _numeric(stats) if kind == "numeric" else _categorical(stats)
        columns[name] = entry
    rows = {int(stats.count) for stats in statistics.values()}
    return {
        "format_version": FORMAT_VERSION,
        "source": source,
        "rows": max(rows) if rows else 0,
        "ignored_columns": sorted(set(ignored_columns or [])),
        "columns": columns,
    }


def feature_statistics(dataset: Any) -> dict[str, Any] | None:
    """The training feature statistics of ``dataset``; None for data sets without raw features.

    A streamed data set (``from_csv`` …) reuses the statistics of its streaming pass; a
    :class:`~mtl_keras.data.MultiTaskDataset` with raw features (``features``) gets the same pass over its
    training split's inputs.
    """
    source = f"training split of {getattr(dataset, 'name', 'data')!r}"
    columns = getattr(dataset, "columns", None)
    statistics = getattr(dataset, "statistics", None)
    if isinstance(columns, Mapping) and isinstance(statistics, Mapping):  # a user's table (or per-task ones)
        ignored = []
        for part in [dataset, *getattr(dataset, "sources", {}).values()]:
            ignored += [spec.label_column for spec in getattr(part, "labels", {}).values()]
            if getattr(part, "weight_column", None) is not None:
                ignored.append(part.weight_column)
        kinds = {name: spec.kind for name, spec in columns.items()}
        ignored += [name for name, kind in kinds.items() if kind == "skip"]
        return summarize(statistics, kinds, source=source, ignored_columns=ignored)
    features = getattr(dataset, "features", None)
    train = getattr(dataset, "train", None)
    if isinstance(features, Mapping) and train is not None and isinstance(train.x, Mapping):
        chunk = {name: np.asarray(train.x[name]).reshape(len(train.x[name])) for name in features}
        return summarize(compute_statistics([chunk]), dict(features), source=source)
    return None


def write_feature_statistics(version_dir: str | os.PathLike[str], summary: Mapping[str, Any]) -> Path:
    """Write ``summary`` to ``version_dir``'s ``assets.extra/feature_statistics.json``; returns its path."""
    path = Path(version_dir) / STATISTICS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2, sort_keys=True, allow_nan=False) + "\n", encoding="utf-8")
    return path


def read_feature_statistics(version_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The feature statistics of an export version directory."""
    path = Path(version_dir) / STATISTICS_FILE
    if not path.is_file():
        raise ValueError(
            f"{version_dir} has no {STATISTICS_FILE}: it was exported without training feature statistics "
            "(data sets of dense vectors or images have none; exports before this version wrote none)."
        )
    summary: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    if summary.get("format_version") != FORMAT_VERSION or not isinstance(summary.get("columns"), dict):
        raise ValueError(
            f"Expected {path} to hold feature statistics of format_version {FORMAT_VERSION}. "
            f"Received format_version={summary.get('format_version')!r}."
        )
    return summary


__all__ = [
    "STATISTICS_FILE",
    "bin_index",
    "feature_statistics",
    "read_feature_statistics",
    "summarize",
    "write_feature_statistics",
]
