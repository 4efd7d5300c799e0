"""`add_task`: the new head copies a task's own branch (fresh weights, new names, the new task's output
size and activation) on the same shared layers; the old outputs are the same layers and predictions."""

import numpy as np
import pytest

from mtl_keras import builders
from mtl_keras.builders.add_task import add_task
from mtl_keras.layers.fused_towers import FusedTowers
from mtl_keras.layers.towers import Tower
from mtl_keras.tasks import Task


@pytest.mark.parametrize("fuse_towers", [True, False])
@pytest.mark.parametrize(
    ("architecture", "options", "new_layers"),
    [
        ("hard_sharing", {"trunk": (8,), "tower_units": (4,)}, {"tower_c", "output_c"}),
        ("mmoe", {"num_experts": 2, "expert_units": (8,)}, {"gate_c", "mixture_c", "tower_c", "output_c"}),
    ],
)
def test_the_new_head_copies_the_template_branch_on_the_shared_layers(
    architecture, options, new_layers, fuse_towers
):
    tasks = [Task("a", "binary"), Task("b", "regression")]
    model = builders.get_builder(architecture)(tasks, 5, fuse_towers=fuse_towers, **options)
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
    tower_c = extended.get_layer("tower_c")
    assert isinstance(tower_c, Tower)
    if fuse_towers:  # a's tower is column 0 of the fused layer, which the new task does not touch
        fused = model.get_layer("towers")
        assert isinstance(fused, FusedTowers) and extended.get_layer("towers") is fused
        template_kernel = fused.tower_weights(0)[0]
        assert not {id(v) for v in tower_c.weights} & {id(v) for v in fused.weights}
    else:
        tower_a = model.get_layer("tower_a")
        assert tower_c is not tower_a
        template_kernel = tower_a.get_weights()[0]
    assert tower_c.get_weights()[0].shape == template_kernel.shape


def test_add_task_errors_name_the_task():
    model = builders.hard_sharing([Task("a", "binary"), Task("b")], 5, trunk=(8,))
    with pytest.raises(ValueError, match=r"new task name.*'a'"):
        add_task(model, Task("a", "binary"))
    with pytest.raises(ValueError, match=r"Unknown template task 'bb'.*'b'"):
        add_task(model, Task("c"), template="bb")
