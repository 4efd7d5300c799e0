"""What a builder's ``inputs`` argument may be, turned into Keras inputs and one feature tensor.

* an int ``d`` or a shape tuple: a dense vector ``(d,)`` or an image ``(H, W, C)``;
* :class:`RawFeatures`: a dict of raw named columns (strings and numbers) that go through a preprocessing
  block of Keras preprocessing layers built from column statistics, so the saved model takes raw values;
* an existing ``keras.Input`` tensor, or a dict of them; or a tensor computed from inputs by layers of the
  caller's (e.g. a backbone applied by hand), whose trainable layers then count as shared;
* a :class:`~mtl_keras.builders.backbones.Backbone`: one of the above, then the backbone model.

Raw features: each column has a :class:`~mtl_keras.data.columns.ColumnSpec` (or just its kind name), see
:mod:`mtl_keras.data.columns` for kinds and encodings. The layers are made from the column statistics of
:mod:`mtl_keras.data.statistics` (given, or computed from ``data`` by the same streaming pass), without
Keras's ``adapt``, so a streamed source needs no arrays in memory. Model inputs, one value per example
(``(batch, 1)``), and the dtype a source must feed:

* ``numeric``: float32 -> ``Normalization(mean, variance)`` (a variance of 0 is taken as 1); with encoding
  ``periodic`` then :class:`~mtl_keras.layers.periodic.PeriodicEmbedding` (PLR); with ``piecewise_linear``
  the raw value through :class:`~mtl_keras.layers.piecewise_linear.PiecewiseLinearEncoding` over quantile
  edges of the statistics' training sample (no normalisation: the encoding is invariant to it);
* ``categorical``, ``id``, ``multi_hot``: string -> ``StringLookup`` (one-hot, or ids for an
  ``Embedding``), ``Hashing`` + ``Embedding`` (``id`` with ``hash``), or :class:`SplitTokens` ->
  ``StringLookup`` -> ``Embedding`` -> :class:`MaskedMean` (``multi_hot``; or a ``multi_hot`` vector);
* ``integer_categorical``: int64 -> ``IntegerLookup`` (one-hot or ``Embedding``);
* ``text``: string, passed through as it is (``(batch, 1)`` strings) for a text backbone
  (:func:`~mtl_keras.builders.keras_hub_backbone.keras_hub_backbone`); it must be the only column used;
* ``skip``: no input.

Embeddings are flattened to ``(batch, dim)``; all encoded columns are concatenated (layer
``raw_features``). A column with ``share_embedding`` applies the named column's lookup (vocabulary from
both columns' counts) and embedding layers to its own input.

Missing numeric values: a numeric column whose statistics count missing values is normalised with the
mean and variance of its non-missing values, then :class:`~mtl_keras.layers.imputation.ImputeMissing`
replaces NaN by the (normalised) median of the non-missing values and appends a 0/1 missing-indicator
feature, inside the model, so ``predict`` and the serving export impute NaN too. Columns without missing
values get no imputation layer (their graph is unchanged; a NaN sent to such a column is not imputed). A
numeric column that is entirely missing is refused with a ``ValueError`` naming it. Missing text values
fall in the out-of-vocabulary index.

Names: a feature name that is not a letter followed by letters, digits or ``_`` (e.g. ``"unit price"``,
``"a/b"``, ``"1st"``) gets a safe name (see :func:`safe_input_names`) for its ``keras.Input`` and its layers;
the model's input dict keys stay the feature names, so ``fit`` / ``predict`` take the original keys, and the
serving export uses the safe names as its signature keys.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Mapping
from typing import Any

import keras
import numpy as np

from mtl_keras._registry import suggest
from mtl_keras.builders.backbones import Backbone
from mtl_keras.data.columns import (
    COLUMN_KINDS,
    KIND_ALIASES,
    MAX_HASH_BINS,
    PERIODIC_DEFAULTS,
    PIECEWISE_LINEAR_BINS,
    ColumnSpec,
    check_columns,
    default_embedding_dim,
    to_spec,
)
from mtl_keras.data.statistics import ColumnStats, StatisticsPass, check_numeric_columns
from mtl_keras.layers.imputation import ImputeMissing, MissingIndicator
from mtl_keras.layers.periodic import PeriodicEmbedding
from mtl_keras.layers.piecewise_linear import PiecewiseLinearEncoding, quantile_edges
from mtl_keras.layers.tokens import MaskedMean, SplitTokens

logger = logging.getLogger(__name__)

#: Kind names a raw feature may have (the old ``"string_categorical"`` included).
FEATURE_KINDS = (*COLUMN_KINDS, *KIND_ALIASES)
#: The model input dtype of each kind (what a source reader feeds).
INPUT_DTYPES = {
    "numeric": "float32",
    "categorical": "string",
    "integer_categorical": "int64",
    "id": "string",
    "multi_hot": "string",
    "text": "string",
}

_SAFE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_VOCABULARY_KINDS = ("categorical", "integer_categorical", "id", "multi_hot")


@dataclasses.dataclass
class RawFeatures:
    """Raw named columns and the statistics their preprocessing layers are built from.

    Args:
        features: ``{name: kind or ColumnSpec or dict of its fields}``; kinds in
            :data:`~mtl_keras.data.columns.COLUMN_KINDS` (``"string_categorical"`` means ``"categorical"``).
        data: ``{name: 1-D array}`` of training values; their statistics are computed with
            :class:`~mtl_keras.data.statistics.StatisticsPass`. Numeric values may be NaN (missing).
        max_tokens: default vocabulary cap (including the out-of-vocabulary index) of the columns whose
            spec sets none.
        statistics: ``{name: ColumnStats}`` from a streaming pass over a source, instead of ``data``.

    Exactly one of ``data`` and ``statistics`` is given. After construction ``columns`` holds the
    resolved specs and ``column_stats`` the statistics used.
    """

    features: Mapping[str, Any]
    data: Mapping[str, Any] | None = None
    max_tokens: int | None = None
    statistics: Mapping[str, ColumnStats] | None = None
    columns: dict[str, ColumnSpec] = dataclasses.field(init=False, repr=False)
    column_stats: dict[str, ColumnStats] = dataclasses.field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.features:
            raise ValueError("Expected at least one raw feature. Received: features={}")
        columns = {name: to_spec(name, value) for name, value in self.features.items()}
        if self.max_tokens is not None:
            if (
                isinstance(self.max_tokens, bool)
                or not isinstance(self.max_tokens, int)
                or self.max_tokens < 2
            ):
                raise ValueError(
                    f"Expected `max_tokens` to be an integer >= 2. Received: max_tokens={self.max_tokens!r}"
                )
            columns = {
                name: c.model_copy(update={"max_tokens": self.max_tokens})
                if c.max_tokens is None and c.kind in _VOCABULARY_KINDS and c.encoding != "hash"
                else c
                for name, c in columns.items()
            }
        check_columns(columns)
        used = [name for name, c in columns.items() if c.kind != "skip"]
        if not used:
            raise ValueError(
                f"Expected at least one raw feature that is not 'skip'. Received: {self.features!r}"
            )
        if (self.data is None) == (self.statistics is None):
            raise ValueError(
                "Expected exactly one of `data` (arrays) and `statistics` (ColumnStats) for RawFeatures. "
                f"Received data={'given' if self.data is not None else None}, "
                f"statistics={'given' if self.statistics is not None else None}."
            )
        separators = {name: c.separator for name, c in columns.items() if c.kind == "multi_hot"}
        if self.data is not None:
            source = "RawFeatures data"
            available = self.data
            self._check_present(used, available, "adaptation data")
            statistics = StatisticsPass(used, separators)
            statistics.update({name: _column(name, self.data[name]) for name in used}, 0)
            stats = statistics.result()
        else:
            assert self.statistics is not None
            source = "RawFeatures statistics"
            self._check_present(used, self.statistics, "statistics")
            stats = {name: self.statistics[name] for name in used}
            for name, separator in separators.items():
                if stats[name].separator != separator:
                    raise ValueError(
                        f"Column {name!r}: its tokens were counted with separator {stats[name].separator!r}, "
                        f"its spec says separator {separator!r}; expected the same (pass separators= to "
                        "the statistics pass)."
                    )
        check_numeric_columns({n: columns[n] for n in used}, stats, source)
        self.columns = columns
        self.column_stats = stats

    def with_encodings(
        self,
        by_kind: Mapping[str, str | Mapping[str, Any]] | None = None,
        by_column: Mapping[str, str | Mapping[str, Any]] | None = None,
    ) -> RawFeatures:
        """The same columns and statistics with other encodings: ``by_kind`` (``{kind: encoding}``) applies
        to every column of that kind, then ``by_column`` (``{column: encoding}``). An encoding is its name
        or a dict of :class:`~mtl_keras.data.columns.ColumnSpec` fields other than ``kind``; options of the
        old encoding that the new one has no use for are dropped. Errors name the column."""
        by_kind = dict(by_kind or {})
        by_column = dict(by_column or {})
        for kind in by_kind:
            if kind not in COLUMN_KINDS or kind == "skip":
                kinds = [k for k in COLUMN_KINDS if k != "skip"]
                raise ValueError(
                    f"Expected encodings for kinds among {kinds}. Received kind {kind!r}."
                    + suggest(kind, kinds)
                )
        for name in by_column:
            if name not in self.columns:
                raise ValueError(
                    f"Encoding given for column {name!r}, which is not a raw feature. Expected one of "
                    f"{sorted(self.columns)}." + suggest(name, sorted(self.columns))
                )
        features: dict[str, Any] = {}
        for name, column in self.columns.items():
            fields = column.model_dump(exclude_defaults=True)
            for override in (by_kind.get(column.kind), by_column.get(name)):
                if override is None:
                    continue
                update = {"encoding": override} if isinstance(override, str) else dict(override)
                if "kind" in update:
                    raise ValueError(
                        f"Column {name!r}: an encoding keeps the column's kind ({column.kind}); "
                        f"received kind={update['kind']!r}."
                    )
                if update.get("encoding", fields.get("encoding")) != fields.get("encoding"):
                    fields = {k: v for k, v in fields.items() if k in ("separator", "max_tokens")}
                fields.update(update)
            fields["kind"] = column.kind
            features[name] = fields
        return RawFeatures(features, statistics=self.column_stats)

    @staticmethod
    def _check_present(names: list[str], available: Mapping[str, Any], what: str) -> None:
        for name in names:
            if name not in available:
                raise ValueError(
                    f"No {what} for raw feature {name!r}. Received {what} for {sorted(available)}."
                    + suggest(name, sorted(available))
                )


def safe_input_names(names: list[str]) -> dict[str, str]:
    """``{feature name: safe name}``: valid names stay; others get ``[^A-Za-z0-9_]`` replaced by ``_``, an
    ``f_`` prefix when they do not start with a letter, and a ``_2``, ``_3``, ... suffix when taken."""
    taken = {name for name in names if _SAFE_NAME.match(name)}
    result = {}
    for name in names:
        if name in taken:
            result[name] = name
            continue
        base = re.sub(r"[^A-Za-z0-9_]", "_", name)
        if not base[:1].isalpha():
            base = f"f_{base}"
        safe, count = base, 1
        while safe in taken:
            count += 1
            safe = f"{base}_{count}"
        taken.add(safe)
        result[name] = safe
    renamed = {k: v for k, v in result.items() if k != v}
    if renamed:
        logger.info("Raw feature names mapped to safe input and layer names: %s", renamed)
    return result


def _column(name: str, values: Any) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise ValueError(
            f"Expected the data of raw feature {name!r} to be 1-D (or one column). Received shape {array.shape}."
        )
    return array


def _log_missing(name: str, stats: ColumnStats, median: float) -> None:
    logger.info(
        "Raw feature %r: %d of %d values missing (%.1f %%), imputed with the training median %g "
        "and a missing-indicator feature.",
        name,
        stats.missing,
        stats.count,
        100.0 * stats.missing / stats.count,
        median,
    )


def _normalized(name: str, safe: str, stats: ColumnStats, tensor: Any, *, indicator: bool) -> Any:
    """``(x - mean) / std`` of the training values; with missing training values, NaN -> the standardised
    median (plus the 0/1 indicator column when ``indicator``)."""
    assert stats.mean is not None and stats.variance is not None
    variance = stats.variance if stats.variance > 0 else 1.0
    value = keras.layers.Normalization(
        axis=-1, mean=[stats.mean], variance=[variance], name=f"normalize_{safe}"
    )(tensor)
    if not stats.missing:
        logger.debug("Raw feature %r: no missing values in %d.", name, stats.count)
        return value
    median = stats.median if stats.median is not None else stats.mean
    fill = float((median - stats.mean) / np.sqrt(variance))
    _log_missing(name, stats, median)
    return ImputeMissing(fill, indicator=indicator, name=f"impute_{safe}")(value)


def _standardize(name: str, safe: str, column: ColumnSpec, stats: ColumnStats, tensor: Any) -> Any:
    return _normalized(name, safe, stats, tensor, indicator=True)


def _with_indicator(encoded: Any, safe: str, stats: ColumnStats, tensor: Any) -> Any:
    if not stats.missing:
        return encoded
    indicator = MissingIndicator(name=f"missing_{safe}")(tensor)
    return keras.layers.Concatenate(name=f"encode_{safe}")([encoded, indicator])


def _periodic(name: str, safe: str, column: ColumnSpec, stats: ColumnStats, tensor: Any) -> Any:
    """PLR on the standardised value (NaN filled with the standardised median), then the indicator."""
    value = _normalized(name, safe, stats, tensor, indicator=False)
    options = {
        key: getattr(column, key) if getattr(column, key) is not None else default
        for key, default in PERIODIC_DEFAULTS.items()
    }
    embedded = PeriodicEmbedding(**options, name=f"periodic_{safe}")(value)
    return _with_indicator(embedded, safe, stats, tensor)


def _piecewise_linear(name: str, safe: str, column: ColumnSpec, stats: ColumnStats, tensor: Any) -> Any:
    """PLE-Q over quantile bins of the training sample (raw units; NaN -> the median), then the indicator."""
    edges = quantile_edges(stats.sample, column.num_bins or PIECEWISE_LINEAR_BINS)
    value = tensor
    if stats.missing:
        median = stats.median if stats.median is not None else stats.mean
        assert median is not None
        _log_missing(name, stats, median)
        value = ImputeMissing(float(median), indicator=False, name=f"impute_{safe}")(value)
    logger.debug("Raw feature %r: piecewise-linear encoding over %d quantile bins.", name, len(edges) - 1)
    encoded = PiecewiseLinearEncoding(edges, name=f"piecewise_{safe}")(value)
    return _with_indicator(encoded, safe, stats, tensor)


#: How each numeric encoding is built: ``(name, safe name, spec, statistics, input) -> encoded tensor``.
_NUMERIC_ENCODERS = {
    "standardize": _standardize,
    "periodic": _periodic,
    "piecewise_linear": _piecewise_linear,
}


def _vocabulary(counts: Mapping[str, int], max_tokens: int | None, integer: bool) -> list[Any]:
    """Values by count (ties: the larger value first, as ``adapt`` orders them), at most ``max_tokens - 1``."""
    if integer:
        merged: dict[Any, int] = {}
        for key, count in counts.items():
            value = int(float(key))
            if value != -1:  # IntegerLookup's out-of-vocabulary token; adapt leaves it out too
                merged[value] = merged.get(value, 0) + count
    else:
        merged = dict(counts)
    items = sorted(merged.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)
    if max_tokens is not None:
        items = items[: max_tokens - 1]
    return [value for value, _ in items]


class _Encoders:
    """Builds each column's layers; a column sharing another's reuses the owner's lookup and embedding."""

    def __init__(self, spec: RawFeatures, safe_names: dict[str, str]) -> None:
        self.spec = spec
        self.safe = safe_names
        self.shared: dict[str, tuple[Any, Any]] = {}

    def _counts(self, owner: str) -> dict[str, int]:
        members = [owner] + [n for n, c in self.spec.columns.items() if c.share_embedding == owner]
        total: dict[str, int] = {}
        for name in members:
            stats = self.spec.column_stats[name]
            counts = stats.tokens if self.spec.columns[name].kind == "multi_hot" else stats.top
            for key, count in counts.items():
                total[key] = total.get(key, 0) + count
        return total

    def _layers(self, owner: str) -> tuple[Any, Any]:
        """``(lookup or hashing layer, embedding or None)`` of ``owner`` (made once)."""
        if owner in self.shared:
            return self.shared[owner]
        column = self.spec.columns[owner]
        stats = self.spec.column_stats[owner]
        safe = self.safe[owner]
        embedding = None
        if column.kind == "id" and column.encoding == "hash":
            bins = column.num_bins or min(max(2 * stats.distinct, 2), MAX_HASH_BINS)
            lookup = keras.layers.Hashing(num_bins=bins, name=f"hash_{safe}")
            rows = bins
        else:
            vocabulary = _vocabulary(
                self._counts(owner), column.max_tokens, integer=column.kind == "integer_categorical"
            )
            if not vocabulary:
                raise ValueError(
                    f"Raw feature {owner!r} has no values to build its {column.kind} vocabulary from."
                )
            embedded = column.kind == "id" or column.encoding == "embedding"
            mode = "int" if embedded else ("multi_hot" if column.kind == "multi_hot" else "one_hot")
            options: dict[str, Any] = {"mask_token": ""} if column.kind == "multi_hot" else {}
            layer_type = (
                keras.layers.IntegerLookup
                if column.kind == "integer_categorical"
                else keras.layers.StringLookup
            )
            lookup = layer_type(vocabulary=vocabulary, output_mode=mode, name=f"lookup_{safe}", **options)
            rows = len(vocabulary) + (2 if column.kind == "multi_hot" else 1)
            if not embedded:
                self.shared[owner] = (lookup, None)
                return lookup, None
        dim = column.embedding_dim or default_embedding_dim(rows)
        embedding = keras.layers.Embedding(rows, dim, name=f"embed_{safe}")
        logger.debug("Raw feature %r: %s embedding of %d rows x %d.", owner, column.kind, rows, dim)
        self.shared[owner] = (lookup, embedding)
        return lookup, embedding

    def encode(self, name: str, tensor: Any) -> Any:
        column = self.spec.columns[name]
        safe = self.safe[name]
        if column.kind == "text":
            return tensor
        if column.kind == "numeric":
            assert column.encoding is not None
            encoder = _NUMERIC_ENCODERS[column.encoding]
            return encoder(name, safe, column, self.spec.column_stats[name], tensor)
        lookup, embedding = self._layers(column.share_embedding or name)
        if column.kind == "multi_hot":
            tokens = SplitTokens(column.separator, name=f"split_{safe}")(tensor)
            ids = lookup(tokens)
            if embedding is None:
                return ids
            return MaskedMean(0, name=f"pool_{safe}")([embedding(ids), ids])
        ids = lookup(tensor)
        if embedding is None:
            return ids
        return keras.layers.Flatten(name=f"flatten_{safe}")(embedding(ids))


def encode_raw(spec: RawFeatures, inputs: Mapping[str, Any], *, prefix: str = "") -> Any:
    """The feature tensor of ``spec``'s columns computed from the model ``inputs`` (``{feature: keras.Input}``)
    by preprocessing layers whose names start with ``prefix``: a second call with another prefix makes an
    independent copy (its own embedding tables), as each single-task baseline column needs."""
    used = [name for name, column in spec.columns.items() if column.kind != "skip"]
    text = [name for name in used if spec.columns[name].kind == "text"]
    if text and len(used) > 1:
        raise ValueError(
            f"Raw feature {text[0]!r} is a text column, which goes to a text backbone on its own; expected "
            f"the other columns to be 'skip'. Received the columns {used}."
        )
    safe_names = {k: prefix + v for k, v in safe_input_names(used).items()}
    encoders = _Encoders(spec, safe_names)
    encoded = [encoders.encode(name, inputs[name]) for name in used]
    if len(encoded) == 1:
        return encoded[0]
    return keras.layers.Concatenate(name=f"{prefix}raw_features")(encoded)


def _raw_block(spec: RawFeatures) -> tuple[dict[str, Any], Any]:
    used = [name for name, column in spec.columns.items() if column.kind != "skip"]
    safe_names = safe_input_names(used)
    inputs: dict[str, Any] = {
        name: keras.Input(shape=(1,), dtype=INPUT_DTYPES[spec.columns[name].kind], name=safe_names[name])
        for name in used
    }
    return inputs, encode_raw(spec, inputs)


def trainable_input_layers(features: Any) -> list[keras.layers.Layer]:
    """The layers with trainable variables (the embeddings of a raw block, a backbone) between the model
    inputs and ``features``, in graph order, and the frozen layers with variables there (a frozen
    backbone): every task reaches them, so a builder's shared layers include them."""
    found: list[keras.layers.Layer] = []
    seen: set[int] = set()

    def visit(tensor: Any) -> None:
        history = getattr(tensor, "_keras_history", None)
        if history is None:
            return
        layer = history.operation
        if id(layer) in seen:
            return
        seen.add(id(layer))
        node = layer._inbound_nodes[history.node_index]
        for parent in node.input_tensors:
            visit(parent)
        # A frozen layer (a frozen backbone) counts too: it is shared, with no variable to update for now.
        if layer.trainable_variables or (not layer.trainable and layer.weights):
            found.append(layer)

    for tensor in keras.tree.flatten(features):
        visit(tensor)
    return found


def _is_input(tensor: Any) -> bool:
    history = getattr(tensor, "_keras_history", None)
    return history is None or isinstance(history.operation, keras.layers.InputLayer)


def _root_inputs(tensor: Any) -> Any:
    """The ``keras.Input`` tensors ``tensor`` was computed from (itself if it is one): one tensor, or a
    dict by input name when there are several. A tensor already passed through layers (a backbone applied
    by hand) thus becomes the model's features while its inputs stay the model's inputs, and the layers in
    between are found by :func:`trainable_input_layers` (shared)."""
    found: dict[str, Any] = {}
    seen: set[int] = set()

    def visit(current: Any) -> None:
        history = getattr(current, "_keras_history", None)
        if history is None or id(current) in seen:
            return
        seen.add(id(current))
        layer = history.operation
        if isinstance(layer, keras.layers.InputLayer):
            found.setdefault(current.name, current)
            return
        for parent in layer._inbound_nodes[history.node_index].input_tensors:
            visit(parent)

    visit(tensor)
    if not found:
        raise ValueError(f"Cannot find the keras.Input that tensor {tensor.name!r} was computed from.")
    return next(iter(found.values())) if len(found) == 1 else found


def check_not_text(features: Any) -> None:
    """A ValueError when ``features`` are strings: a ``text`` column reached the architecture without the
    text backbone that turns it into numbers."""
    if any(getattr(t, "dtype", None) == "string" for t in keras.tree.flatten(features)):
        raise ValueError(
            "The architecture received string features: a `text` column needs a text backbone in front "
            "(`keras_hub_backbone(..., inputs=<the raw features>)`, recipe `backbone: {keras_hub: ...}`)."
        )


def make_inputs(inputs: Any) -> tuple[Any, Any]:
    """Return ``(model inputs, feature tensor)`` for any accepted ``inputs`` value."""
    if isinstance(inputs, RawFeatures):
        return _raw_block(inputs)
    if isinstance(inputs, bool):
        raise ValueError(
            f"Expected `inputs` to be a size, a shape, RawFeatures or keras.Input. Received: {inputs!r}"
        )
    if isinstance(inputs, int):
        if inputs < 1:
            raise ValueError(f"Expected `inputs` to be a positive input size. Received: inputs={inputs}")
        tensor = keras.Input(shape=(inputs,), name="features")
        return tensor, tensor
    if isinstance(inputs, tuple) and all(isinstance(d, int) and d > 0 for d in inputs) and inputs:
        tensor = keras.Input(shape=inputs, name="features")
        return tensor, tensor
    if isinstance(inputs, Backbone):
        backbone_inputs, backbone_features = make_inputs(inputs.inputs)
        layer = inputs.layer()
        layer.name = inputs.name  # type: ignore[misc]
        return backbone_inputs, layer(backbone_features)
    if isinstance(inputs, keras.KerasTensor):
        return _root_inputs(inputs), inputs
    if (
        isinstance(inputs, Mapping)
        and inputs
        and all(isinstance(v, keras.KerasTensor) for v in inputs.values())
    ):
        tensors = list(inputs.values())
        features = (
            keras.layers.Concatenate(name="input_features")(tensors) if len(tensors) > 1 else tensors[0]
        )
        if all(_is_input(tensor) for tensor in tensors):
            return dict(inputs), features
        return _root_inputs(features), features
    raise ValueError(
        "Expected `inputs` to be a positive int (vector size), a shape tuple of positive ints, RawFeatures, "
        f"a keras.Input or a dict of keras.Input, or a Backbone. Received: inputs={inputs!r}"
    )
