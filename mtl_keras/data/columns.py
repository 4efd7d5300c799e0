"""What each column of a tabular source is as a model feature: its kind and encoding (a :class:`ColumnSpec`).

Kinds (:data:`COLUMN_KINDS`) and the model input each gets (the dtype a source reader must feed):

========================  ==========  ==================================================================
kind                      input       encodings (first = default)
========================  ==========  ==================================================================
``numeric``               float32     ``standardize``: (x - mean) / std; NaN -> the training median plus a
                                      0/1 missing indicator when the training data has missing values |
                                      ``periodic`` (PLR): the standardised value through learned periodic
                                      features, linear and ReLU (:class:`~mtl_keras.layers.periodic.
                                      PeriodicEmbedding`) | ``piecewise_linear`` (PLE-Q): piecewise-linear
                                      encoding over quantile bins of the training values
                                      (:class:`~mtl_keras.layers.piecewise_linear.PiecewiseLinearEncoding`);
                                      both impute NaN and add the indicator as ``standardize`` does
``categorical``           string      ``one_hot`` | ``embedding``: vocabulary of the most frequent values
``integer_categorical``   int64       ``one_hot`` | ``embedding``: the same over whole numbers
``id``                    string      ``hash`` (``num_bins`` buckets) | ``vocabulary``, then an embedding
``multi_hot``             string      ``embedding``: ``separator``-split tokens, embedded and mean-pooled |
                                      ``multi_hot``: a 0/1 vector over the token vocabulary
``text``                  string      ``raw``: the string itself, for a text backbone (``backbone:
                                      {keras_hub: ...}``), which tokenizes it inside the model; a text
                                      column is the only non-skipped feature (never inferred: set it)
``skip``                  (none)      the column is not a feature
========================  ==========  ==================================================================

``"string_categorical"`` (the bundled census data's name) is accepted as an alias of ``"categorical"``;
``"plr"`` of ``"periodic"`` and ``"ple"`` / ``"ple_q"`` of ``"piecewise_linear"`` (:data:`ENCODING_ALIASES`).

Vocabularies hold the most frequent non-missing values (ties: the larger value first, as Keras's ``adapt``);
values not in it, and missing values, go to the one out-of-vocabulary index. ``max_tokens`` caps the size
of the encoding including that index, as in Keras's lookup layers (``max_tokens - 1`` values kept).

Defaults:

* ``embedding_dim``: ``min(32, round(1.6 * n ** 0.56))`` for ``n`` embedded rows (vocabulary + OOV, or
  hash buckets); see :func:`default_embedding_dim`;
* ``num_bins`` (``id`` + ``hash``): ``2 * distinct`` values of the column, at least 2 and at most
  :data:`MAX_HASH_BINS`;
* ``periodic``: ``embedding_dim`` :data:`PERIODIC_DEFAULTS` ``["embedding_dim"]``, ``num_frequencies`` and
  ``frequency_scale`` (σ of the frequencies' initialisation, in standard deviations of the column) likewise;
* ``piecewise_linear``: ``num_bins`` :data:`PIECEWISE_LINEAR_BINS` quantile bins of the training values
  (the statistics pass's sample: exact up to its size); coinciding quantiles (a column that is mostly one
  value) give fewer bins;
* ``share_embedding``: the named column owns the lookup (vocabulary from both columns' counts, or its
  hash buckets) and the embedding table; both columns must have the same kind and encoding, and the owner
  must not itself share another's.

Inference (:func:`infer_columns`) from the statistics of :mod:`mtl_keras.data.statistics`:

* every non-missing value a finite number (integers too) -> ``numeric``;
* otherwise, when at least :data:`MULTI_HOT_MIN_FRACTION` of the non-missing values contain ``"|"``
  -> ``multi_hot``;
* otherwise at most :data:`CATEGORICAL_MAX` distinct values -> ``categorical``, more -> ``id``;
* a column with no values at all -> ``skip`` (logged as a warning).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import pydantic

from mtl_keras._registry import suggest
from mtl_keras.data.statistics import ColumnStats

logger = logging.getLogger(__name__)

COLUMN_KINDS = ("numeric", "categorical", "integer_categorical", "id", "multi_hot", "text", "skip")
#: Old kind names still accepted, and what they mean now.
KIND_ALIASES = {"string_categorical": "categorical"}
#: ``{kind: allowed encodings}``; the first is the default.
ENCODINGS: dict[str, tuple[str, ...]] = {
    "numeric": ("standardize", "periodic", "piecewise_linear"),
    "categorical": ("one_hot", "embedding"),
    "integer_categorical": ("one_hot", "embedding"),
    "id": ("hash", "vocabulary"),
    "multi_hot": ("embedding", "multi_hot"),
    "text": ("raw",),
    "skip": (),
}
#: Other names of encodings, and what they mean.
ENCODING_ALIASES = {"plr": "periodic", "ple": "piecewise_linear", "ple_q": "piecewise_linear"}
#: Defaults of a ``periodic`` (PLR) numeric column's options.
PERIODIC_DEFAULTS: dict[str, Any] = {"embedding_dim": 16, "num_frequencies": 16, "frequency_scale": 1.0}
#: Default number of quantile bins of a ``piecewise_linear`` numeric column.
PIECEWISE_LINEAR_BINS = 16
#: A text column with at most this many distinct values is inferred ``categorical``; more: ``id``.
CATEGORICAL_MAX = 1000
#: A text column is inferred ``multi_hot`` when at least this fraction of its values hold the separator.
MULTI_HOT_MIN_FRACTION = 0.2
#: The largest default number of hash buckets of an ``id`` column.
MAX_HASH_BINS = 1 << 18


def default_embedding_dim(rows: int) -> int:
    """``min(32, round(1.6 * rows ** 0.56))``, at least 1: the embedding width for ``rows`` table rows."""
    return max(1, min(32, round(1.6 * max(rows, 1) ** 0.56)))


def uses_embedding(kind: str, encoding: str | None) -> bool:
    """Whether a column of this kind and encoding is embedded (so it can share an embedding table)."""
    return kind == "id" or (
        kind in ("categorical", "integer_categorical", "multi_hot") and encoding == "embedding"
    )


class ColumnSpec(pydantic.BaseModel):
    """How one column becomes a model feature (see the module docstring for kinds, encodings, defaults).

    Attributes:
        kind: one of :data:`COLUMN_KINDS` (``"string_categorical"`` is read as ``"categorical"``).
        encoding: one of the kind's :data:`ENCODINGS`; None takes the kind's default.
        embedding_dim: width of the embedding (embedded encodings and ``periodic``); None: the default rule.
        num_bins: hash buckets (``id`` with ``hash``) or quantile bins (``piecewise_linear``); None: the
            default rule.
        num_frequencies: learned frequencies per ``periodic`` column; None: the default.
        frequency_scale: σ of a ``periodic`` column's frequency initialisation; None: the default.
        max_tokens: cap on the vocabulary including the out-of-vocabulary index (not with ``hash``).
        share_embedding: another column whose lookup and embedding table this column uses.
        separator: the token separator of ``multi_hot`` cells.
    """

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    kind: Literal["numeric", "categorical", "integer_categorical", "id", "multi_hot", "text", "skip"]
    encoding: str | None = None
    embedding_dim: pydantic.PositiveInt | None = None
    num_bins: pydantic.PositiveInt | None = None
    max_tokens: pydantic.PositiveInt | None = None
    share_embedding: str | None = None
    separator: str = "|"
    num_frequencies: pydantic.PositiveInt | None = None
    frequency_scale: pydantic.PositiveFloat | None = None

    @pydantic.model_validator(mode="before")
    @classmethod
    def _alias_and_default(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            data = dict(data)
            kind = data.get("kind")
            if isinstance(kind, str):
                kind = KIND_ALIASES.get(kind, kind)
                data["kind"] = kind
                encoding = data.get("encoding")
                if isinstance(encoding, str):
                    data["encoding"] = ENCODING_ALIASES.get(encoding, encoding)
                if data.get("encoding") is None and ENCODINGS.get(kind):
                    data["encoding"] = ENCODINGS[kind][0]
        return data

    @pydantic.model_validator(mode="after")
    def _check(self) -> ColumnSpec:
        allowed = ENCODINGS[self.kind]
        if self.kind == "skip":
            if self.encoding is not None:
                raise ValueError(
                    f"Expected no encoding for kind 'skip'. Received encoding={self.encoding!r}."
                )
        elif self.encoding not in allowed:
            raise ValueError(
                f"Expected the encoding of a {self.kind} column to be one of {list(allowed)}. "
                f"Received encoding={self.encoding!r}." + suggest(str(self.encoding), list(allowed))
            )
        embedded = uses_embedding(self.kind, self.encoding)
        periodic = self.kind == "numeric" and self.encoding == "periodic"
        for option in ("num_frequencies", "frequency_scale"):
            if getattr(self, option) is not None and not periodic:
                raise ValueError(
                    f"{option}={getattr(self, option)} given for a {self.kind} column with encoding "
                    f"{self.encoding!r}; only a numeric column with encoding 'periodic' has frequencies."
                )
        if self.embedding_dim is not None and not (embedded or periodic):
            raise ValueError(
                f"embedding_dim={self.embedding_dim} given for a {self.kind} column with encoding "
                f"{self.encoding!r}, which has no embedding."
            )
        binned = (self.kind, self.encoding) in (("id", "hash"), ("numeric", "piecewise_linear"))
        if self.num_bins is not None and not binned:
            raise ValueError(
                f"num_bins={self.num_bins} given for a {self.kind} column with encoding {self.encoding!r}; "
                "only an id column with encoding 'hash' (hash buckets) and a numeric column with encoding "
                "'piecewise_linear' (quantile bins) have bins."
            )
        if self.max_tokens is not None:
            if self.kind in ("numeric", "skip") or self.encoding == "hash":
                raise ValueError(
                    f"max_tokens={self.max_tokens} given for a {self.kind} column with encoding "
                    f"{self.encoding!r}, which has no vocabulary."
                )
            if self.max_tokens < 2:
                raise ValueError(
                    f"Expected max_tokens >= 2 (one value and the out-of-vocabulary index). "
                    f"Received max_tokens={self.max_tokens}."
                )
        if self.share_embedding is not None and not embedded:
            raise ValueError(
                f"share_embedding={self.share_embedding!r} given for a {self.kind} column with encoding "
                f"{self.encoding!r}, which has no embedding."
            )
        if self.kind == "multi_hot" and not self.separator:
            raise ValueError("Expected a non-empty separator for a multi_hot column. Received separator=''.")
        return self


def to_spec(name: str, value: ColumnSpec | Mapping[str, Any] | str) -> ColumnSpec:
    """A :class:`ColumnSpec` from a spec, a dict of its fields, or a kind name; errors name the column."""
    if isinstance(value, ColumnSpec):
        return value
    fields: Any = {"kind": value} if isinstance(value, str) else value
    if not isinstance(fields, Mapping):
        raise ValueError(
            f"Expected the spec of column {name!r} to be a kind name, a dict or a ColumnSpec. Received: {value!r}."
        )
    kind = fields.get("kind")
    known = [*COLUMN_KINDS, *KIND_ALIASES]
    if kind not in known:
        raise ValueError(
            f"Expected the kind of column {name!r} to be one of {list(COLUMN_KINDS)}. Received: {kind!r}."
            + suggest(str(kind), known)
        )
    try:
        return ColumnSpec.model_validate(fields)
    except pydantic.ValidationError as error:
        problems = "; ".join(
            (f"{'.'.join(map(str, e['loc']))}: " if e["loc"] else "") + e["msg"].removeprefix("Value error, ")
            for e in error.errors()
        )
        raise ValueError(f"Invalid spec of column {name!r}: {problems}") from None


def check_columns(spec: Mapping[str, ColumnSpec]) -> None:
    """Check what involves several columns: each ``share_embedding`` names an embedded column of the same
    kind and encoding (and separator) that does not share another's."""
    for name, column in spec.items():
        owner_name = column.share_embedding
        if owner_name is None:
            continue
        if owner_name == name:
            raise ValueError(
                f"Column {name!r} has share_embedding={name!r}: a column cannot share with itself."
            )
        if owner_name not in spec:
            raise ValueError(
                f"Column {name!r} has share_embedding={owner_name!r}, which is not a column. Expected one of "
                f"{sorted(spec)}." + suggest(owner_name, sorted(spec))
            )
        owner = spec[owner_name]
        if not uses_embedding(owner.kind, owner.encoding):
            raise ValueError(
                f"Column {name!r} has share_embedding={owner_name!r}, which is a {owner.kind} column with "
                f"encoding {owner.encoding!r}, not an embedding."
            )
        if (owner.kind, owner.encoding) != (column.kind, column.encoding):
            raise ValueError(
                f"Column {name!r} ({column.kind}, {column.encoding}) has share_embedding={owner_name!r}, "
                f"which is {owner.kind}, {owner.encoding}; expected the same kind and encoding."
            )
        if owner.share_embedding is not None:
            raise ValueError(
                f"Column {name!r} has share_embedding={owner_name!r}, which itself shares "
                f"{owner.share_embedding!r}; expected share_embedding={owner.share_embedding!r}."
            )
        if column.kind == "multi_hot" and column.separator != owner.separator:
            raise ValueError(
                f"Column {name!r} has separator {column.separator!r} and shares the embedding of "
                f"{owner_name!r}, whose separator is {owner.separator!r}; expected the same."
            )


def infer_kind(stats: ColumnStats) -> str:
    """The kind the thresholds of the module docstring give a column."""
    if stats.present == 0:
        return "skip"
    if stats.numeric:
        return "numeric"
    if stats.list_fraction >= MULTI_HOT_MIN_FRACTION:
        return "multi_hot"
    if stats.distinct <= CATEGORICAL_MAX and not stats.distinct_capped:
        return "categorical"
    return "id"


def infer_columns(
    stats: Mapping[str, ColumnStats],
    overrides: Mapping[str, ColumnSpec | Mapping[str, Any] | str] | None = None,
    exclude: Iterable[str] = (),
) -> dict[str, ColumnSpec]:
    """``{column: ColumnSpec}`` for every column of ``stats`` but ``exclude`` (labels, weights).

    Args:
        stats: the columns' statistics (:func:`mtl_keras.data.statistics.compute_statistics`).
        overrides: ``{column: spec}`` replacing the inferred spec; a string is the kind, a dict the
            :class:`ColumnSpec` fields.
        exclude: columns left out (an override may not name them).
    """
    excluded = set(exclude)
    overrides = dict(overrides or {})
    columns = [name for name in stats if name not in excluded]
    for name in overrides:
        if name not in columns:
            why = " (it is excluded: a label or weight column)" if name in excluded else ""
            raise ValueError(
                f"Column override for {name!r}, which is not a feature column{why}. Expected one of "
                f"{columns}." + suggest(name, columns)
            )
    spec: dict[str, ColumnSpec] = {}
    for name in columns:
        if name in overrides:
            spec[name] = to_spec(name, overrides[name])
            continue
        kind = infer_kind(stats[name])
        if kind == "skip":
            logger.warning(
                "Column %r has no values (all %d rows missing); it is skipped.", name, stats[name].count
            )
        spec[name] = ColumnSpec(kind=kind)  # type: ignore[arg-type]
    check_columns(spec)
    return spec


def columns_to_dict(
    spec: Mapping[str, ColumnSpec], stats: Mapping[str, ColumnStats] | None = None
) -> dict[str, dict[str, Any]]:
    """``{column: {kind, encoding, ..., distinct, missing, count}}``: the non-default spec fields plus, with
    ``stats``, the column's counts (for writing the spec used by a run)."""
    result: dict[str, dict[str, Any]] = {}
    for name, column in spec.items():
        entry = column.model_dump(exclude_defaults=True)
        entry["kind"] = column.kind
        if column.encoding is not None:
            entry["encoding"] = column.encoding
        if stats is not None and name in stats:
            column_stats = stats[name]
            entry.update(
                count=column_stats.count,
                missing=column_stats.missing,
                distinct=column_stats.distinct,
                distinct_capped=column_stats.distinct_capped,
            )
        result[name] = entry
    return result


_STATS_FIELDS = ("count", "missing", "distinct", "distinct_capped")


def columns_from_dict(data: Mapping[str, Mapping[str, Any]]) -> dict[str, ColumnSpec]:
    """The inverse of :func:`columns_to_dict` (the statistics fields are ignored)."""
    spec = {
        name: to_spec(name, {k: v for k, v in fields.items() if k not in _STATS_FIELDS})
        for name, fields in data.items()
    }
    check_columns(spec)
    return spec


def columns_to_json(spec: Mapping[str, ColumnSpec], stats: Mapping[str, ColumnStats] | None = None) -> str:
    """:func:`columns_to_dict` as indented JSON text."""
    return json.dumps(columns_to_dict(spec, stats), indent=2) + "\n"


def describe_columns(spec: Mapping[str, ColumnSpec], stats: Mapping[str, ColumnStats]) -> str:
    """A plain-text table: column, kind, encoding, distinct values, missing values (count and %)."""
    header = ("column", "kind", "encoding", "distinct", "missing")
    rows = [header]
    for name, column in spec.items():
        column_stats = stats.get(name)
        if column_stats is None:
            distinct = missing = "?"
        else:
            distinct = (
                f">{column_stats.distinct}" if column_stats.distinct_capped else str(column_stats.distinct)
            )
            share = 100.0 * column_stats.missing / column_stats.count if column_stats.count else 0.0
            missing = f"{column_stats.missing} ({share:.1f} %)"
        encoding = column.encoding or "-"
        if column.share_embedding:
            encoding += f" (shares {column.share_embedding})"
        rows.append((name, column.kind, encoding, distinct, missing))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = []
    for index, row in enumerate(rows):
        cells = [row[i].ljust(widths[i]) if i < 3 else row[i].rjust(widths[i]) for i in range(len(row))]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines) + "\n"
