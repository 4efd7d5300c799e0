"""`add_task`: the new head copies a task's own branch (fresh weights, new names, the new task's output
size and activation) on the same shared layers; the old outputs are the same layers and predictions."""

import numpy as np
import pytest

from mtl_keras import builders
from mtl_keras.builders.add_task import add_task
from mtl_keras.tasks import Task


@pytest.mark.parametrize(
    ("architecture", "options", "new_layers"),
    [
        ("hard_sharing", {"trunk": (8,), "tower_units": (4,)}, {"tower_c", "output_c"}),
        ("mmoe", {"num_experts": 2, "expert_units": (8,)}, {"gate_c", "mixture_c", "tower_c", "output_c"}),
    ],
)
def test_the_new_head_copies_the_template_branch_on_the_shared_layers(architecture, options, new_layers):
    model = builders.get_builder(architecture)([Task("a", "binary"), Task("b", "regression")], 5, **options)
    extended = add_task(model, Task("c", "multiclass", num_classes=3))
    assert {layer.name for layer in extended.layers} - {layer.name for layer in model.layers} == new_layers
    assert extended.shared_layer_names == model.shared_layer_names
    for name in model.shared_layer_names:
        assert extended.get_layer(name) is model.get_layer(name)
    x = np.random.default_rng(0).normal(size=(6, 5)).astype("float32")
    before, after = model.predict(x, verbose=0), extended.predict(x, verbose=0)
    for task in before:
        np.testing.assert_array_equal(after[task], before[task])
    np.testing.assert_allclose(after["c"].sum(axis=-1), 1.0, rtol=1e-5)  # softmax of 3 classes
    tower_a, tower_c = model.get_layer("tower_a"), extended.get_layer("tower_c")
    assert tower_c is not tower_a and tower_c.get_weights()[0].shape == tower_a.get_weights()[0].shape


def test_add_task_errors_name_the_task():
    model = builders.hard_sharing([Task("a", "binary"), Task("b")], 5, trunk=(8,))
    with pytest.raises(ValueError, match=r"new task name.*'a'"):
        add_task(model, Task("a", "binary"))
    with pytest.raises(ValueError, match=r"Unknown template task 'bb'.*'b'"):
        add_task(model, Task("c"), template="bb")
