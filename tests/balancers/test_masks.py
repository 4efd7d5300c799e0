"""Every balancer honours missing labels: a task without labels contributes nothing and nothing is NaN."""

import keras
import numpy as np
import pytest
from helpers import toy_data, toy_tasks

from mtl_keras import balancers, builders

CASES = [(name, "param") for name in balancers.WEIGHTINGS.names()] + [
    (name, level) for name in balancers.AGGREGATORS.names() for level in ("param", "rep")
]


@pytest.mark.parametrize(("balancer", "level"), CASES, ids=[f"{b}@{lv}" for b, lv in CASES])
def test_unlabelled_task_gets_zero_loss_and_nothing_is_nan(balancer, level):
    x, y = toy_data(n=64, seed=2)
    y["c"][:] = np.nan  # task c has no label in any batch
    y["a"][::2] = np.nan  # task a is half labelled
    keras.utils.set_random_seed(0)
    model = builders.hard_sharing(toy_tasks(), 12, trunk=(8,), tower_units=(4,))
    model.compile(keras.optimizers.Adam(0.01), balancer=balancer, balancer_level=level)
    tower_c = [v.numpy().copy() for v in model.get_layer("tower_c").trainable_variables]
    history = model.fit(x, y, batch_size=32, epochs=2, verbose=0).history
    assert np.all(np.isnan(history["c_loss"]))  # no labels: no loss to report, never 0
    for key, values in history.items():
        if not key.startswith("c_"):
            assert np.all(np.isfinite(values)), key
    for variable in model.trainable_variables:
        assert np.all(np.isfinite(variable.numpy())), variable.path
    # The unlabelled head receives no gradient at all.
    for before, variable in zip(tower_c, model.get_layer("tower_c").trainable_variables, strict=True):
        np.testing.assert_array_equal(before, variable.numpy())


@pytest.mark.parametrize(
    ("balancer", "level"), [("mean", "param"), ("pcgrad", "param"), ("mgda", "rep"), ("gradnorm", "param")]
)
def test_an_unlabelled_task_leaves_its_slice_of_the_fused_towers_unchanged(balancer, level):
    x, y = toy_data(n=64, seed=3)
    y["b"][:] = np.nan  # b's tower is column 1 of the fused `towers` layer (a and b have one output unit)
    keras.utils.set_random_seed(0)
    model = builders.hard_sharing(toy_tasks(), 12, trunk=(8,), tower_units=(4,))
    model.compile(keras.optimizers.Adam(0.01), balancer=balancer, balancer_level=level)
    fused = model.get_layer("towers").trainable_variables
    before = [v.numpy().copy() for v in fused]
    model.fit(x, y, batch_size=32, epochs=2, verbose=0)
    for old, variable in zip(before, fused, strict=True):
        np.testing.assert_array_equal(old[1], variable.numpy()[1])  # b's slice: no gradient, no update
        assert not np.allclose(old[0], variable.numpy()[0])  # a's slice trained
