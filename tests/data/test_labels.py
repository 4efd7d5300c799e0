"""Label specs, the streaming label check, label encoding in numpy and TensorFlow, and tasks from them."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import tensorflow as tf

from mtl_keras.data import labels as labels_lib
from mtl_keras.data.labels import (
    LabelCheck,
    LabelSpec,
    LabelStats,
    check_has_labels,
    encode_labels,
    label_parser,
    make_task,
)

SOURCE = "data file 'train.csv'"


def text(*values: str) -> np.ndarray:
    return np.array(values, dtype=object)


def check(spec: LabelSpec, *chunks: np.ndarray, reference: LabelStats | None = None) -> LabelStats:
    """One pass over ``chunks`` (rows numbered on across chunks)."""
    label_check = LabelCheck(spec, SOURCE, reference=reference)
    offset = 0
    for chunk in chunks:
        label_check.update(chunk, offset)
        offset += len(chunk)
    return label_check.result()


def fails(message: str, spec: LabelSpec, *chunks: np.ndarray, reference: LabelStats | None = None) -> None:
    with pytest.raises(ValueError) as info:
        check(spec, *chunks, reference=reference)
    assert str(info.value) == message
    assert "\n" not in str(info.value)


def equal_with_nan(actual: np.ndarray, expected: list[float]) -> None:
    assert actual.dtype == np.float32
    np.testing.assert_array_equal(actual, np.array(expected, dtype=np.float32))


BINARY = LabelSpec(name="click", kind="binary", column="clicked")
MULTI = LabelSpec(name="genre", kind="multiclass")
REGRESSION = LabelSpec(name="price", kind="regression", column="price_eur")
WHERE_BINARY = f"task 'click' (column 'clicked') in {SOURCE}"
WHERE_MULTI = f"task 'genre' (column 'genre') in {SOURCE}"
WHERE_REGRESSION = f"task 'price' (column 'price_eur') in {SOURCE}"


# --- the spec ------------------------------------------------------------------------------------------------


def test_spec_defaults_and_column() -> None:
    assert MULTI.label_column == "genre" and BINARY.label_column == "clicked"
    assert LabelSpec(name="x", kind="binary", positive=2).positive == "2"  # type: ignore[arg-type]
    assert LabelSpec(name="x", kind="multiclass", classes=[3, 1]).classes == ["3", "1"]  # type: ignore[list-item]
    with pytest.raises(Exception, match="frozen"):
        BINARY.kind = "regression"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"kind": "binary", "colum": "y"},
            "Label spec of task 'x': unknown option `colum`; expected one of ['classes', 'column', 'kind', "
            "'name', 'num_classes', 'positive', 'standardize']",
        ),
        (
            {"kind": "ordinal"},
            "Label spec of task 'x': `kind`: Input should be 'binary', 'multiclass' or 'regression'; "
            "received 'ordinal'",
        ),
        (
            {"kind": "binary", "positive": True},
            "Label spec of task 'x': `positive`: expected a string; received the boolean True (YAML reads "
            "unquoted yes/no/true/false as booleans: quote the value, e.g. positive: 'yes'); received True",
        ),
        (
            {"kind": "regression", "positive": "yes"},
            "Label spec of task 'x': `positive` is only for binary tasks; task 'x' has kind 'regression' and "
            "received positive='yes'",
        ),
        (
            {"kind": "binary", "num_classes": 2},
            "Label spec of task 'x': `num_classes` is only for multiclass tasks; task 'x' has kind 'binary' "
            "and received num_classes=2",
        ),
        (
            {"kind": "binary", "standardize": True},
            "Label spec of task 'x': `standardize` is only for regression tasks; task 'x' has kind 'binary' "
            "and received standardize=True",
        ),
        (
            {"kind": "multiclass", "num_classes": 1},
            "Label spec of task 'x': expected `num_classes` >= 2 for task 'x'; received num_classes=1",
        ),
        (
            {"kind": "multiclass", "classes": ["a", "b", "a"]},
            "Label spec of task 'x': expected distinct `classes` for task 'x'; received 'a' twice",
        ),
        (
            {"kind": "multiclass", "classes": ["a", "b"], "num_classes": 3},
            "Label spec of task 'x': `num_classes` of task 'x' must equal the number of `classes` (2); "
            "received num_classes=3",
        ),
        (
            {"kind": "multiclass", "classes": ["a", "NA"]},
            "Label spec of task 'x': expected every entry of `classes` of task 'x' to be a label value "
            "(non-empty, no surrounding white space, not a missing-value token); received 'NA'",
        ),
        (
            {"kind": "binary", "positive": " yes"},
            "Label spec of task 'x': expected `positive` of task 'x' to be a label value (non-empty, no "
            "surrounding white space, not a missing-value token); received positive=' yes'",
        ),
    ],
)
def test_spec_errors_are_one_line(options: dict, message: str) -> None:
    with pytest.raises(ValueError) as info:
        LabelSpec(name="x", **options)
    assert str(info.value) == message


# --- binary ---------------------------------------------------------------------------------------------------


def test_binary_accepts_0_1_true_false_and_missing_tokens() -> None:
    values = text("0", "1", " TRUE", "false", "", "NA", "nan", "Null", "none", "?", " ", "1.0", "0e0")
    stats = check(BINARY, values)
    assert (stats.labelled, stats.rows, stats.mapping) == (6, 13, None)
    nan = np.nan
    expected = [0, 1, 1, 0, nan, nan, nan, nan, nan, nan, nan, 1, 0]
    equal_with_nan(encode_labels(values, BINARY, stats), expected)
    for array in (np.array([0.0, 1.0, np.nan]), np.array([True, False, True]), np.array([0, 1, 1])):
        stats = check(BINARY, array)
        np.testing.assert_array_equal(encode_labels(array, BINARY, stats), array.astype(np.float32))
    objects = np.array([True, None, 0, 1.0, float("nan")], dtype=object)
    equal_with_nan(encode_labels(objects, BINARY, check(BINARY, objects)), [1, nan, 0, 1, nan])


def test_binary_yes_no_asks_for_positive() -> None:
    message = (
        f"{WHERE_BINARY}: binary labels 'yes' (row 1) and 'no' (row 3) are not 0/1 or true/false; set "
        "`positive: <VALUE>` to the value that means 1 ('no' or 'yes')"
    )
    fails(message, BINARY, text("yes", "", "no", "yes"))
    # Across chunks: the rows count on.
    fails(message.replace("row 3", "row 5"), BINARY, text("yes", "", "yes"), text("", "no"))
    # One word only: known at the end of the pass.
    fails(
        f"{WHERE_BINARY}: binary labels 'yes' (row 2) are not 0/1 or true/false; set `positive: <VALUE>` "
        "to the value that means 1 ('yes')",
        BINARY,
        text("", "yes"),
        text("yes"),
    )
    fails(
        f"{WHERE_BINARY}: binary labels take two values; received 'a' (row 1) and 'b' (row 2) and 'c' "
        "(row 3); expected 0/1 or true/false (any case), or two values with `positive: <VALUE>`",
        BINARY,
        text("a", "b", "c"),
    )


def test_messages_name_the_current_source() -> None:
    label_check = LabelCheck(BINARY, SOURCE)
    label_check.update(text("0", "1"), 0)
    label_check.source = "data file 'part-2.csv'"
    with pytest.raises(ValueError, match=re.escape("in data file 'part-2.csv': value 7 at row 2 ")):
        label_check.update(np.array([1, 7]), 0)


def test_binary_with_positive() -> None:
    spec = LabelSpec(name="click", kind="binary", column="clicked", positive="yes")
    stats = check(spec, text("no", " yes", ""), text("yes"))
    assert stats.mapping == {"yes": 1.0, "no": 0.0} and stats.labelled == 3
    equal_with_nan(encode_labels(text("yes", "no", "NA"), spec, stats), [1, 0, np.nan])
    fails(
        f"{WHERE_BINARY}: value 'maybe' at row 4 is a third label value; with `positive: yes` the labels "
        "are 'yes' (1) and 'no' (0, first at row 2)",
        spec,
        text("yes", "no"),
        text("no", "maybe"),
    )
    # Numbers are matched by their text: 2 -> 1, 1 -> 0.
    numeric = LabelSpec(name="click", kind="binary", positive="2")
    stats = check(numeric, np.array([1.0, 2.0, np.nan, 2.0]))
    assert stats.mapping == {"2": 1.0, "1": 0.0}
    equal_with_nan(encode_labels(np.array([2, 1]), numeric, stats), [1, 0])


def test_binary_refuses_other_numbers_and_mixtures() -> None:
    fails(
        f"{WHERE_BINARY}: value 5 at row 4 is not a binary label; expected 0/1 or true/false (any case)",
        BINARY,
        np.array([0.0, 1.0]),
        np.array([0.0, 5.0, 0.0]),
    )
    fails(
        f"{WHERE_BINARY}: value '5' at row 2 is not a binary label; expected 0/1 or true/false (any case)",
        BINARY,
        text("0", "5"),
    )
    fails(
        f"{WHERE_BINARY}: value 'yes' at row 3 is not a binary label; expected 0/1 or true/false (any "
        "case), like '0' at row 1",
        BINARY,
        text("0", "1"),
        text("yes"),
    )


# --- multiclass -----------------------------------------------------------------------------------------------


def test_multiclass_integers() -> None:
    stats = check(MULTI, text("0", "2", ""), np.array([1.0, np.nan, 4.0]))
    assert (stats.num_classes, stats.mapping, stats.labelled, stats.rows) == (5, None, 4, 6)
    equal_with_nan(encode_labels(text("4", " 0 ", "2.0", "?"), MULTI, stats), [4, 0, 2, np.nan])
    fixed = LabelSpec(name="genre", kind="multiclass", num_classes=7)
    assert check(fixed, np.array([0, 1])).num_classes == 7


def test_multiclass_refuses_fractions_negatives_and_out_of_range() -> None:
    fails(
        f"{WHERE_MULTI}: value 1.5 at row 3 is not an integer class label; expected 0, 1, 2, ...",
        MULTI,
        np.array([0.0]),
        np.array([2.0, 1.5]),
    )
    fails(
        f"{WHERE_MULTI}: value '1.5' at row 2 is not an integer class label; expected 0, 1, 2, ...",
        MULTI,
        text("1", "1.5"),
    )
    fails(
        f"{WHERE_MULTI}: value -1 at row 1 is a negative class label; expected 0, 1, 2, ...",
        MULTI,
        np.array([-1, 0]),
    )
    three = LabelSpec(name="genre", kind="multiclass", num_classes=3)
    fails(
        f"{WHERE_MULTI}: value 4 at row 5 is out of range; expected an integer class label in [0, 3) "
        "(num_classes: 3)",
        three,
        np.array([0, 1, 2]),
        np.array([2, 4]),
    )
    fails(
        f"{WHERE_MULTI}: value '4' at row 2 is out of range; expected an integer class label in [0, 3) "
        "(num_classes: 3)",
        three,
        text("2", "4"),
    )


def test_multiclass_names() -> None:
    stats = check(MULTI, text("dog", "cat", ""), text("bird", "dog"))
    assert stats.mapping == {"bird": 0.0, "cat": 1.0, "dog": 2.0} and stats.num_classes == 3
    equal_with_nan(encode_labels(text("cat", "NA", " dog"), MULTI, stats), [1, np.nan, 2])
    given = LabelSpec(name="genre", kind="multiclass", classes=["dog", "cat", "bird"])
    stats = check(given, text("cat", "bird"))
    assert stats.mapping == {"dog": 0.0, "cat": 1.0, "bird": 2.0} and stats.num_classes == 3
    fails(
        f"{WHERE_MULTI}: value 'fish' at row 3 is not a multiclass label; expected one of the `classes` "
        "'dog', 'cat', 'bird'",
        given,
        text("cat"),
        text("dog", "fish"),
    )
    fails(
        f"{WHERE_MULTI}: labels mix integer classes ('1' at row 1) and class names ('cat' at row 3); give "
        "the class names in order with `classes`",
        MULTI,
        text("1", "2"),
        text("cat"),
    )
    fails(
        f"{WHERE_MULTI}: value 'c' at row 3 is class name number 3 but num_classes is 2",
        LabelSpec(name="genre", kind="multiclass", num_classes=2),
        text("a", "b", "c"),
    )


def test_multiclass_caps_the_distinct_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(labels_lib, "MAX_CLASS_NAMES", 3)
    assert check(MULTI, text("a", "b"), text("c", "a")).num_classes == 3
    fails(
        f"{WHERE_MULTI}: value 'd' at row 5 is class name number 4; more than 3 distinct class names: give "
        "the class order with `classes`, or use integer labels",
        MULTI,
        text("a", "b"),
        text("c", "a", "d"),
    )


def test_validation_split_is_checked_against_the_training_statistics() -> None:
    training = check(MULTI, text("dog", "cat"))
    validation = check(MULTI, text("cat", ""), reference=training)
    assert validation.mapping == training.mapping and (validation.labelled, validation.rows) == (1, 2)
    fails(
        f"{WHERE_MULTI}: value 'bird' at row 2 is not a multiclass label; expected one of 'cat', 'dog' (the "
        "label values of the training split)",
        MULTI,
        text("dog", "bird"),
        reference=training,
    )
    numbers = check(MULTI, np.array([0, 1, 2]))
    fails(
        f"{WHERE_MULTI}: value 3 at row 1 is not a multiclass label; expected an integer class label in [0, 3)",
        MULTI,
        np.array([3]),
        reference=numbers,
    )
    binary = check(BINARY, text("0", "1"))
    fails(
        f"{WHERE_BINARY}: value 'yes' at row 1 is not a binary label; expected 0/1 or true/false (any case)",
        BINARY,
        text("yes"),
        reference=binary,
    )


# --- regression -------------------------------------------------------------------------------------------


def test_regression_moments_are_exact_across_chunks() -> None:
    rng = np.random.default_rng(0)
    values = 1e4 + 300 * rng.normal(size=1000)
    values[rng.random(1000) < 0.2] = np.nan
    chunks = [values[:7], values[7:500], values[500:501], values[501:]]
    as_text = [np.array(["" if np.isnan(v) else repr(float(v)) for v in c], dtype=object) for c in chunks]
    labelled = values[~np.isnan(values)]
    for stats in (check(REGRESSION, *chunks), check(REGRESSION, *as_text)):
        assert stats.labelled == labelled.size and stats.rows == 1000
        np.testing.assert_allclose(stats.mean, np.mean(labelled), rtol=1e-13)
        np.testing.assert_allclose(stats.std, np.std(labelled), rtol=1e-11)
    np.testing.assert_array_equal(
        encode_labels(np.concatenate(as_text), REGRESSION, stats), values.astype(np.float32)
    )
    empty = check(REGRESSION, text("", "NA"))
    assert (empty.labelled, empty.rows, empty.mean, empty.std) == (0, 2, None, None)


def test_regression_refuses_text_and_infinity() -> None:
    fails(
        f"{WHERE_REGRESSION}: value '12,5' at row 3 is not a number; expected a regression label",
        REGRESSION,
        text("1", "2"),
        text("12,5"),
    )
    fails(
        f"{WHERE_REGRESSION}: value inf at row 2 is not finite; expected a finite regression label",
        REGRESSION,
        np.array([1.0, np.inf]),
    )
    stats = check(REGRESSION, text("1"))
    with pytest.raises(ValueError) as info:
        encode_labels(text("2", "", "abc"), REGRESSION, stats, source="data file 'valid.csv'", row_offset=10)
    assert str(info.value) == (
        "task 'price' (column 'price_eur') in data file 'valid.csv': value 'abc' at row 13 is not a "
        "regression label; expected a finite number"
    )


# --- no labels, statistics files ---------------------------------------------------------------------------


def test_check_has_labels() -> None:
    stats = check(BINARY, text("", "NA"))
    with pytest.raises(ValueError) as info:
        check_has_labels(stats, BINARY, "train", SOURCE)
    assert (
        str(info.value) == f"task 'click' (column 'clicked') has no labels in the training split of {SOURCE}"
    )
    check_has_labels(stats, BINARY, "validation", SOURCE)
    check_has_labels(stats, BINARY, "test", SOURCE)
    check_has_labels(check(BINARY, text("1")), BINARY, "train", SOURCE)
    with pytest.raises(ValueError, match=re.escape("received split_name='valid'")):
        check_has_labels(stats, BINARY, "valid", SOURCE)


def test_stats_round_trip_through_json() -> None:
    for stats in (
        check(MULTI, text("dog", "cat")),
        check(REGRESSION, np.array([1.0, 2.5])),
        check(BINARY, text("0")),
    ):
        assert LabelStats.from_dict(json.loads(json.dumps(stats.to_dict()))) == stats
    with pytest.raises(ValueError, match=r"\(unknown: \['mappings'\]\)"):
        LabelStats.from_dict({"labelled": 1, "rows": 1, "mappings": {}})


# --- TensorFlow parser == numpy encoding ------------------------------------------------------------------

PARITY = [
    (BINARY, text("0", "1", " TRUE", "false", "", "NA", "None", "1.0", "0e0", "?")),
    (BINARY, np.array([0.0, 1.0, np.nan, 1.0])),
    (BINARY, np.array([True, False])),
    (BINARY, np.array([1, 0, 1], dtype=np.int64)),
    (LabelSpec(name="click", kind="binary", positive="yes"), text("yes", "no", "", " yes ", "NULL")),
    (LabelSpec(name="click", kind="binary", positive="2"), np.array([1.0, 2.0, np.nan])),
    (MULTI, text("0", "2", "1.0", "", "nan", "4")),
    (MULTI, np.array([0.0, 3.0, np.nan, 2.0])),
    (MULTI, text("dog", "cat", "", "bird", " dog")),
    (LabelSpec(name="genre", kind="multiclass", classes=["1", "2", "3"]), np.array([1.0, 3.0, np.nan, 2.0])),
    (LabelSpec(name="genre", kind="multiclass", classes=["1", "2", "3"]), text("3", "1", "", "2")),
    (
        REGRESSION,
        text("1.5", " -2e3 ", "", "NA", "+.5", "7.", "1E-3", "0.1", "3.14159265358979323846", "?", "1e30"),
    ),
    (REGRESSION, np.array([0.1, -3.5, np.nan, 1e-8])),
    (REGRESSION, np.array([3, -7], dtype=np.int32)),
]


@pytest.mark.parametrize(("spec", "values"), PARITY)
def test_label_parser_gives_encode_labels_values(spec: LabelSpec, values: np.ndarray) -> None:
    stats = check(spec, values)
    expected = encode_labels(values, spec, stats)
    assert np.count_nonzero(~np.isnan(expected)) == stats.labelled
    parser = label_parser(spec, stats)
    tensor = tf.constant(values.astype(str)) if values.dtype == object else tf.constant(values)
    eager = parser(tensor).numpy()
    assert eager.dtype == np.float32
    np.testing.assert_array_equal(eager, expected)
    # In a tf.data pipeline (graph mode), batch by batch.
    streamed = tf.data.Dataset.from_tensor_slices(tensor).batch(3).map(parser)
    np.testing.assert_array_equal(np.concatenate(list(streamed.as_numpy_iterator())), expected)
    # Built while the map function is traced, as a reader's batch conversion does.
    traced = tf.data.Dataset.from_tensor_slices(tensor).batch(2).map(lambda b: label_parser(spec, stats)(b))
    np.testing.assert_array_equal(np.concatenate(list(traced.as_numpy_iterator())), expected)


def test_label_parser_refuses_what_encode_labels_refuses() -> None:
    stats = check(BINARY, text("0", "1"))
    parser = label_parser(BINARY, stats)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"(?s)task 'click' \(column 'clicked'\).*yes"):
        parser(tf.constant(["1", "yes"]))
    names = check(MULTI, text("dog", "cat"))
    streamed = tf.data.Dataset.from_tensor_slices(["dog", "fish"]).batch(2).map(label_parser(MULTI, names))
    with pytest.raises(tf.errors.InvalidArgumentError, match="fish"):
        list(streamed)


# --- tasks ---------------------------------------------------------------------------------------------------


def test_make_task() -> None:
    task = make_task(BINARY, check(BINARY, text("0", "1")), metrics=["auc"])
    assert (task.name, task.kind, task.label_column, task.metrics) == ("click", "binary", "clicked", ["auc"])
    task = make_task(MULTI, check(MULTI, text("dog", "cat", "bird")))
    assert (task.kind, task.num_classes, task.label_column) == ("multiclass", 3, "genre")
    values = np.array([1000.0, 2000.0, 4000.0, np.nan])
    plain = make_task(REGRESSION, check(REGRESSION, values))
    assert plain.label_mean is None and plain.label_std is None
    spec = LabelSpec(name="price", kind="regression", standardize=True)
    task = make_task(spec, check(spec, values))
    np.testing.assert_allclose(task.label_mean, 7000.0 / 3, rtol=1e-14)
    np.testing.assert_allclose(task.label_std, np.std([1000.0, 2000.0, 4000.0]), rtol=1e-14)


def test_make_task_errors() -> None:
    with pytest.raises(ValueError) as info:
        make_task(MULTI, check(MULTI, np.array([0, 0])))
    assert str(info.value) == (
        "task 'genre' (column 'genre'): the training labels give num_classes=1; expected at least 2 classes: "
        "set `num_classes` (or `classes`)"
    )
    spec = LabelSpec(name="price", kind="regression", standardize=True)
    with pytest.raises(ValueError) as info:
        make_task(spec, check(spec, np.array([5.0, 5.0])))
    assert str(info.value) == (
        "task 'price' (column 'price'): cannot standardise labels that are all equal (training mean 5.0, "
        "std 0.0); set `standardize: false`"
    )
    with pytest.raises(ValueError, match=re.escape("`num_classes` comes from the label spec")):
        make_task(MULTI, check(MULTI, np.array([0, 1])), num_classes=4)


def test_text_labels_are_read_alike_by_the_vectorised_and_the_per_value_path():
    # A column of str (CSV) goes through pyarrow's string kernels; a column mixing text with None or numbers
    # through the per-value loop. Both strip the same whitespace, know the same missing tokens (ASCII only)
    # and the same number pattern (ASCII: the dotless "ınf" is text, not infinity).
    from mtl_keras.data.labels import _read

    pool = ["1", " 0 ", "yes", "NA", "na ", "", "?", "None", "3.5", "-2e3", "inf", "Infinity", "ınf", "\tx\n"]
    pool += [".5", "1.", "NaN", "nul", "İ", "1_0", "١", "+7", "K"]
    values = np.array([pool[i] for i in np.random.default_rng(0).integers(0, len(pool), 2000)], dtype=object)
    text = _read(values, "here", 0)
    loop = _read(np.concatenate([values, np.array([None], dtype=object)]), "here", 0)
    assert text.missing.tolist() == loop.missing[:-1].tolist()
    assert text.numeric.tolist() == loop.numeric[:-1].tolist()
    assert np.array_equal(text.number, loop.number[:-1], equal_nan=True)
    assert text.text.tolist() == loop.text[:-1].tolist()
    by_value = dict(
        zip(values.tolist(), zip(text.missing.tolist(), text.numeric.tolist(), strict=True), strict=True)
    )
    assert by_value["na "] == (True, False) and by_value["K"] == (False, False)  # Kelvin sign: not "k"
    assert by_value["ınf"] == (False, False) and by_value["Infinity"] == (False, True)
