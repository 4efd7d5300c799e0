import numpy as np
import pytest

from mtl_keras import Task


def test_defaults_by_kind():
    assert Task("r").output_units == 1 and Task("r").activation == "linear"
    assert Task("b", "binary").activation == "sigmoid"
    t = Task("m", "multiclass", num_classes=4)
    assert t.output_units == 4 and t.activation == "softmax"
    assert [m.name for m in Task("b", "binary").get_metrics()] == ["b_auc", "b_accuracy"]


def test_config_round_trip():
    t = Task("m", "multiclass", num_classes=4, metrics=["accuracy", "top5"], label="col")
    assert Task.from_config(t.get_config()) == t


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "x", "kind": "binray"}, "Did you mean 'binary'"),
        ({"name": "x", "kind": "multiclass"}, "num_classes"),
        ({"name": "x", "kind": "binary", "num_classes": 3}, "num_classes"),
        ({"name": "not valid"}, "identifier"),
        ({"name": "x", "units": 0}, "units"),
        ({"name": "x", "metrics": ["auc"]}, "Unknown metric 'auc' for regression"),
    ],
)
def test_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Task(**kwargs)


def test_label_preprocessing():
    t = Task("income", "binary", label="class", label_fn=lambda v: v == ">50K")
    np.testing.assert_array_equal(t.prepare_labels(np.array(["<=50K", ">50K"])), [0.0, 1.0])
    assert t.label_column == "class"
