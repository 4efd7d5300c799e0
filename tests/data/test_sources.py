"""Own data: CSV / Parquet / TFRecord / DataFrame / tf.data sources read in one checked streaming pass, split
by files, a seeded hash or a time column, and streamed to training deterministically (exact resume)."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from mtl_keras.data import from_csv, from_dataframe, from_dataset, from_parquet, from_tfrecord
from mtl_keras.distribute.stream import StreamSpec

TASKS = {"clicked": "binary", "spend": "regression", "segment": {"kind": "multiclass", "num_classes": 3}}


def _frame(n: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    price = rng.normal(50.0, 10.0, n)
    price[rng.random(n) < 0.05] = np.nan
    return pd.DataFrame(
        {
            "row": np.arange(n, dtype=np.float64),
            "price": price,
            "city": rng.choice(["paris", "oslo", "rome"], n),
            "day": [f"2024-01-{1 + i * 28 // n:02d}" for i in range(n)],
            "clicked": rng.integers(0, 2, n).astype(np.float64),
            "spend": rng.normal(1000.0, 200.0, n),
            "segment": rng.integers(0, 3, n).astype(np.float64),
        }
    )


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tables")
    frame = _frame()
    path = directory / "data.csv"
    frame.to_csv(path, index=False, na_rep="")
    return frame, directory, path


def _rows(dataset, split: str) -> np.ndarray:
    values = [b[0]["row"].numpy().ravel() for b in dataset.batches(split, 64)]
    return np.concatenate(values) if values else np.zeros(0)


def test_csv_splits_partition_the_rows_and_counts_agree_with_the_stream(table):
    frame, _, path = table
    data = from_csv(str(path), TASKS, features={"day": "skip", "row": "numeric"})
    parts = {s: _rows(data, s) for s in ("train", "validation", "test")}
    for split, rows in parts.items():
        assert len(rows) == data.num_examples(split)
    everything = np.sort(np.concatenate(list(parts.values())))
    np.testing.assert_array_equal(everything, np.arange(len(frame)))
    assert 0.1 < data.num_examples("test") / len(frame) < 0.3  # split.test defaults to 0.2
    # The same seed gives the same split; another seed another one.
    again = from_csv(str(path), TASKS, features={"day": "skip"})
    np.testing.assert_array_equal(_rows(again, "test"), parts["test"])
    other = from_csv(str(path), TASKS, features={"day": "skip"}, split={"test": 0.2, "seed": 5})
    assert not np.array_equal(_rows(other, "test"), parts["test"])


def test_batches_have_the_model_input_types_and_labels_are_exact(table):
    frame, _, path = table
    data = from_csv(str(path), TASKS, features={"day": "skip"}, split={"validation": 0.1, "test": 0.1})
    x, y = next(iter(data.batches("train", 32)))
    assert x["price"].dtype == tf.float32 and x["price"].shape == (32, 1)
    assert x["city"].dtype == tf.string
    assert "day" not in x
    rows = x["row"].numpy().ravel().astype(int)
    np.testing.assert_allclose(y["spend"].numpy(), frame["spend"].to_numpy()[rows], rtol=1e-6)
    np.testing.assert_array_equal(y["clicked"].numpy(), frame["clicked"].to_numpy()[rows])
    np.testing.assert_array_equal(
        np.isnan(x["price"].numpy().ravel()), np.isnan(frame["price"].to_numpy()[rows])
    )


def test_training_stream_is_deterministic_and_resumes_at_any_step(table):
    _, _, path = table
    data = from_csv(str(path), TASKS, features={"day": "skip"}, shuffle_buffer=64)
    n = data.num_examples("train")
    for steps in (None, 3):  # one pass per epoch; a step budget below one pass (wrap)
        spec = StreamSpec.for_size(n, 32, seed=1, steps_per_epoch=steps)
        total = 3 * spec.steps_per_epoch  # the wrap stream is endless: fit takes what it needs

        def rows(start: int = 0, spec=spec, total=total) -> list[np.ndarray]:
            stream = data.training_stream(spec, epochs=3, start_step=start).take(total - start)
            return [b[0]["row"].numpy().ravel() for b in stream]

        whole = rows()
        assert len(whole) == total
        if steps is None:  # one pass per epoch: the stream ends with the last epoch
            assert len(list(data.training_stream(spec, epochs=3))) == total
        again = rows()
        for a, b in zip(whole, again, strict=True):
            np.testing.assert_array_equal(a, b)
        k = spec.steps_per_epoch + 1
        resumed = rows(k)
        for a, b in zip(whole[k:], resumed[: len(whole) - k], strict=True):
            np.testing.assert_array_equal(a, b)
        first, second = whole[: spec.steps_per_epoch], whole[spec.steps_per_epoch : 2 * spec.steps_per_epoch]
        assert not np.array_equal(np.concatenate(first), np.concatenate(second))  # reshuffled per pass


def test_temporal_split_and_separate_test_file(table, tmp_path):
    frame, _, path = table
    data = from_csv(
        str(path),
        TASKS,
        split={"column": "day", "validation_from": "2024-01-20", "test_from": "2024-01-25"},
    )
    days = frame["day"].to_numpy()
    for split, rows in {s: _rows(data, s).astype(int) for s in ("train", "validation", "test")}.items():
        chosen = days[rows]
        if split == "test":
            assert (chosen >= "2024-01-25").all()
        elif split == "validation":
            assert ((chosen >= "2024-01-20") & (chosen < "2024-01-25")).all()
        else:
            assert (chosen < "2024-01-20").all()
    assert "day" not in data.features  # the split column is not a feature
    test_file = tmp_path / "test.csv"
    _frame(50, seed=3).to_csv(test_file, index=False)
    separate = from_csv(str(path), TASKS, test=str(test_file), features={"day": "skip"})
    assert separate.num_examples("test") == 50
    assert separate.num_examples("train") + separate.num_examples("validation") == len(frame)


def test_glob_of_gzip_shards_reads_like_one_file(table, tmp_path):
    frame = table[0]
    for i, part in enumerate((frame.iloc[:120], frame.iloc[120:])):
        with gzip.open(tmp_path / f"part-{i}.csv.gz", "wt") as handle:
            part.to_csv(handle, index=False)
    data = from_csv(str(tmp_path / "part-*.csv.gz"), TASKS, features={"day": "skip"})
    rows = np.sort(np.concatenate([_rows(data, s) for s in ("train", "validation", "test")]))
    np.testing.assert_array_equal(rows, np.arange(len(frame)))


def _same_statistics(a, b) -> None:
    for column in ("price", "row"):
        assert a.statistics[column].mean == pytest.approx(
            b.statistics[column].mean, rel=1e-6
        )  # float32 in TFRecord
        assert a.statistics[column].missing == b.statistics[column].missing
    assert a.columns == b.columns


def test_parquet_dataframe_tfrecord_and_dataset_read_like_the_csv(table, tmp_path):
    frame, _, path = table
    split = {"validation": 0.1, "test": 0.2}
    options = {"features": {"day": "skip"}, "split": split}
    reference = from_csv(str(path), TASKS, **options)
    parquet = tmp_path / "data.parquet"
    frame.to_parquet(parquet)
    record = tmp_path / "data.tfrecord"
    spec = {c: ("string" if pd.api.types.is_string_dtype(frame[c]) else "float") for c in frame.columns}
    with tf.io.TFRecordWriter(str(record)) as writer:
        for _, row in frame.iterrows():
            feature = {}
            for column, kind in spec.items():
                value = row[column]
                if kind == "string":
                    feature[column] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))
                elif not np.isnan(value):  # a missing value is an absent feature
                    feature[column] = tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    dataset = tf.data.Dataset.from_tensor_slices(
        (
            {c: frame[c].to_numpy() for c in ("row", "price", "city", "day")},
            {c: frame[c].to_numpy() for c in ("clicked", "spend", "segment")},
        )
    )
    others = {
        "parquet": from_parquet(str(parquet), TASKS, **options),
        "dataframe": from_dataframe(frame, TASKS, **options),
        "tfrecord": from_tfrecord(str(record), TASKS, spec=spec, **options),
        "dataset": from_dataset(dataset, TASKS, **options),
    }
    for name, other in others.items():
        _same_statistics(reference, other)
        for split in ("train", "test"):
            np.testing.assert_array_equal(_rows(other, split), _rows(reference, split), err_msg=name)
        x, y = next(iter(other.batches("test", 16)))
        x0, y0 = next(iter(reference.batches("test", 16)))
        np.testing.assert_allclose(x["price"].numpy(), x0["price"].numpy(), rtol=1e-6, err_msg=name)
        np.testing.assert_array_equal(x["city"].numpy(), x0["city"].numpy(), err_msg=name)
        np.testing.assert_allclose(y["spend"].numpy(), y0["spend"].numpy(), rtol=1e-6, err_msg=name)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda f: f.drop(columns=["spend"]),
            r"task 'spend' has label column 'spend', which is not a column",
        ),
        (lambda f: f.iloc[:0], r"has no rows after the header"),
        (
            lambda f: f.assign(price=["12.5"] * 16 + ["abc"] + ["1"] * (len(f) - 17)),
            r"column 'price': numeric feature has non-numeric text 'abc' \(row 17\)",
        ),
        (lambda f: f.assign(clicked=np.where(np.arange(len(f)) == 9, 5.0, f["clicked"])), r"5.*row 10"),
        (lambda f: f.assign(clicked=np.where(f["clicked"] > 0, "yes", "no")), r"positive"),
        (lambda f: f.assign(segment=np.where(np.arange(len(f)) == 3, 4.0, f["segment"])), r"4.*row 4"),
        (lambda f: f.assign(spend=np.nan), r"no labels"),
    ],
    ids=[
        "missing-label-column",
        "header-only",
        "text-in-numeric",
        "binary-5",
        "yes-no",
        "class-4",
        "no-labels",
    ],
)
def test_bad_data_is_one_clear_error(tmp_path, change, message):
    frame = change(_frame(60))
    path = tmp_path / "bad.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(ValueError, match=message) as error:
        from_csv(str(path), TASKS, features={"day": "skip"} if "day" in frame else None)
    assert "\n" not in str(error.value)
    assert "bad.csv" in str(error.value) or "no labels" in message


def test_unknown_feature_override_and_missing_pattern_are_errors(table, tmp_path):
    _, _, path = table
    with pytest.raises(ValueError, match=r"features\.prise: no such feature column.*'price'"):
        from_csv(str(path), TASKS, features={"prise": "numeric"})
    with pytest.raises(ValueError, match=r"matches no file"):
        from_csv(str(tmp_path / "nothing-*.csv"), TASKS)
    with pytest.raises(ValueError, match=r"does not exist"):
        from_csv(str(tmp_path / "nothing.csv"), TASKS)


def test_csv_quoting_and_blank_lines_read_alike_in_both_passes(tmp_path):
    # Quoted commas, doubled quotes and newlines inside quotes are values; a blank line is a row of empty fields
    # (missing features and labels). The statistics pass and the training stream parse the file the same way.
    lines = ["clicked,spend,segment,city,price"]
    for i in range(40):
        city = ['"paris, fr"', '"oslo ""no"""', '"rome\nit"'][i % 3]
        lines.append(f"{i % 2},{100 + i},{i % 3},{city},{i}.5")
        if i == 20:
            lines.append("")
    path = tmp_path / "quoted.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    dataset = from_csv(
        str(path), TASKS, validation=str(path), test=str(path), features={"city": "categorical"}
    )
    assert dataset.num_examples("train") == 41
    batch = next(iter(dataset.batches("train", 64)))
    cities = [c.decode() for c in batch[0]["city"].numpy().ravel()]
    assert cities[:3] == ["paris, fr", 'oslo "no"', "rome\nit"]
    assert cities[21] == ""  # the blank line
    assert np.isnan(batch[1]["spend"].numpy()[21])
    assert dataset.statistics["city"].to_dict()["distinct"] == 3


def test_a_row_with_too_few_fields_is_an_error_naming_the_file(tmp_path):
    path = tmp_path / "short.csv"
    path.write_text("clicked,spend,segment,price\n1,2.5,0,3\n0,1.5,1\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"short\.csv.*could not be read as CSV.*Expected 4 columns, got 3"):
        from_csv(str(path), TASKS, validation=str(path), test=str(path))
