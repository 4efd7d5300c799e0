"""Column specs: validation, kinds inferred from statistics, overrides, the table and the JSON form."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mtl_keras.data import columns as columns_module
from mtl_keras.data.columns import (
    ColumnSpec,
    columns_from_dict,
    columns_to_dict,
    columns_to_json,
    default_embedding_dim,
    describe_columns,
    infer_columns,
    to_spec,
)
from mtl_keras.data.statistics import compute_statistics


def _stats() -> dict:
    rng = np.random.default_rng(0)
    n = 3000
    return compute_statistics(
        [
            {
                "age": rng.integers(18, 90, n),  # integers: numeric
                "price": np.where(rng.random(n) < 0.1, "", rng.normal(size=n).astype(str)).astype(object),
                "job": rng.choice(np.array(["a", "b", "c"], dtype=object), n),
                "user": np.array([f"u{i}" for i in range(n)], dtype=object),  # 3000 > CATEGORICAL_MAX
                "tags": rng.choice(np.array(["x|y", "y", "x|z"], dtype=object), n),
                "blank": np.array([""] * n, dtype=object),
                "label": rng.integers(0, 2, n),
            }
        ]
    )


def test_inferred_kinds_follow_the_documented_thresholds() -> None:
    spec = infer_columns(_stats(), exclude=["label"])
    kinds = {name: column.kind for name, column in spec.items()}
    assert kinds == {
        "age": "numeric",
        "price": "numeric",
        "job": "categorical",
        "user": "id",
        "tags": "multi_hot",
        "blank": "skip",
    }
    assert spec["job"].encoding == "one_hot" and spec["user"].encoding == "hash"
    assert spec["tags"].encoding == "embedding" and spec["age"].encoding == "standardize"


def test_categorical_threshold_is_the_module_constant(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(columns_module, "CATEGORICAL_MAX", 2)
    assert infer_columns(_stats(), exclude=["label"])["job"].kind == "id"  # 3 distinct > 2


def test_overrides_string_dict_and_spec() -> None:
    spec = infer_columns(
        _stats(),
        overrides={
            "age": "integer_categorical",
            "user": {"kind": "id", "encoding": "vocabulary", "max_tokens": 100},
            "job": ColumnSpec(kind="categorical", encoding="embedding", embedding_dim=3),
        },
        exclude=["label"],
    )
    assert spec["age"] == ColumnSpec(kind="integer_categorical", encoding="one_hot")
    assert spec["user"].encoding == "vocabulary" and spec["user"].max_tokens == 100
    assert spec["job"].embedding_dim == 3


def test_override_of_an_unknown_or_excluded_column_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"override for 'agee'.*Did you mean 'age'\?"):
        infer_columns(_stats(), overrides={"agee": "numeric"})
    with pytest.raises(ValueError, match=r"'label'.*excluded"):
        infer_columns(_stats(), overrides={"label": "numeric"}, exclude=["label"])


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"kind": "numeric", "encoding": "hash"}, r"column 'c'.*encoding of a numeric column"),
        ({"kind": "categorical", "num_bins": 8}, r"column 'c'.*num_bins=8"),
        ({"kind": "categorical", "embedding_dim": 8}, r"column 'c'.*embedding_dim=8.*no embedding"),
        ({"kind": "numeric", "share_embedding": "x"}, r"column 'c'.*share_embedding='x'"),
        ({"kind": "id", "encoding": "hash", "max_tokens": 10}, r"column 'c'.*max_tokens=10"),
        ({"kind": "numerc"}, r"kind of column 'c'.*Did you mean 'numeric'\?"),
        ({"kind": "numeric", "colour": 1}, r"column 'c'.*colour"),
    ],
)
def test_invalid_combinations_name_the_column(fields: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        to_spec("c", fields)


def test_share_embedding_must_name_an_embedded_column_of_the_same_kind() -> None:
    stats = _stats()
    ok = infer_columns(
        stats,
        overrides={
            "job": {"kind": "categorical", "encoding": "embedding"},
            "tags": "skip",
            "user": {"kind": "categorical", "encoding": "embedding", "share_embedding": "job"},
        },
        exclude=["label"],
    )
    assert ok["user"].share_embedding == "job"
    with pytest.raises(ValueError, match=r"Column 'user' has share_embedding='job'.*not an embedding"):
        infer_columns(
            stats,
            overrides={"user": {"kind": "categorical", "encoding": "embedding", "share_embedding": "job"}},
            exclude=["label"],
        )
    with pytest.raises(
        ValueError, match=r"share_embedding='jobs', which is not a column.*Did you mean 'job'"
    ):
        infer_columns(stats, overrides={"user": {"kind": "id", "share_embedding": "jobs"}}, exclude=["label"])
    with pytest.raises(ValueError, match=r"expected the same kind and encoding"):
        infer_columns(
            stats,
            overrides={
                "job": {"kind": "categorical", "encoding": "embedding"},
                "user": {"kind": "id", "share_embedding": "job"},
            },
            exclude=["label"],
        )


def test_string_categorical_is_an_alias_of_categorical() -> None:
    assert to_spec("job", "string_categorical") == ColumnSpec(kind="categorical", encoding="one_hot")
    assert ColumnSpec(kind="string_categorical").kind == "categorical"  # type: ignore[arg-type]


def test_default_embedding_dim_rule() -> None:
    assert [default_embedding_dim(n) for n in (2, 10, 100, 1000, 10**6)] == [
        min(32, round(1.6 * n**0.56)) for n in (2, 10, 100, 1000, 10**6)
    ]
    assert default_embedding_dim(10**6) == 32


def test_table_and_json_round_trip() -> None:
    stats = _stats()
    spec = infer_columns(stats, exclude=["label"])
    table = describe_columns(spec, stats)
    lines = table.splitlines()
    assert lines[0].split() == ["column", "kind", "encoding", "distinct", "missing"]
    price = next(line for line in lines if line.startswith("price"))
    assert "numeric" in price and f"{stats['price'].missing} (" in price
    data = json.loads(columns_to_json(spec, stats))
    assert data["user"]["distinct"] == 3000 and data["user"]["kind"] == "id"
    assert columns_from_dict(data) == spec
    assert columns_from_dict(columns_to_dict(spec)) == spec
