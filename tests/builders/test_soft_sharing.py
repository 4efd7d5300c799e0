import itertools

import keras
import numpy as np
import pytest
from helpers import check_builder, check_sharing, toy_data, toy_tasks

from mtl_keras import balancers
from mtl_keras.builders.soft_sharing import soft_sharing


def _kernels(model, depth):
    return [k.numpy().astype("float64") for k in model.get_layer(f"soft_shared_{depth}").kernels]


def _distance(kernels):
    return sum(np.sum((a - b) ** 2) for a, b in itertools.combinations(kernels, 2))


def test_fit_and_round_trip(tmp_path):
    keras.utils.set_random_seed(0)
    x, y = toy_data()
    model = soft_sharing(toy_tasks(), 12, units=(16, 8), tower_units=(8,))
    assert model.shared_layer_names == [] and model.representation_name is None
    check_builder(model, x, y, tmp_path)
    check_sharing(model, x[:64], {k: v[:64] for k, v in y.items()})


def test_model_losses_hold_the_penalty_of_every_depth():
    x, _ = toy_data(n=8)
    model = soft_sharing(toy_tasks(), 12, units=(6, 4), strength=0.5)
    model(x)
    assert len(model.losses) == 2
    for depth, loss in enumerate(model.losses):
        np.testing.assert_allclose(float(loss), 0.5 * _distance(_kernels(model, depth)), rtol=1e-5)


def test_image_inputs_are_flattened():
    x, _ = toy_data(n=4, image=True)
    model = soft_sharing(toy_tasks(), (8, 8, 1), units=(4,))
    assert model.get_layer("soft_shared_0").kernels[0].shape == (64, 4)
    assert tuple(model(x)["c"].shape) == (4, 3)


def _kernel_distance_ratio(strength):
    keras.utils.set_random_seed(0)
    x, y = toy_data(n=128)
    model = soft_sharing(toy_tasks(), 12, units=(8,), tower_units=(), strength=strength)
    before = _distance(_kernels(model, 0))
    model.compile(keras.optimizers.SGD(0.05))
    model.fit(x, y, epochs=2, batch_size=32, verbose=0)
    return _distance(_kernels(model, 0)) / before


def test_a_huge_strength_pulls_the_kernels_together():
    # Per SGD step the pairwise differences shrink by (1 - 2·lr·strength·T) = 0.4, up to the task gradients'
    # pull apart; with no penalty they hardly move in 8 steps.
    assert _kernel_distance_ratio(2.0) < 1e-2
    assert _kernel_distance_ratio(0.0) > 0.5


def test_gradient_aggregators_are_refused():
    model = soft_sharing(toy_tasks(), 12, units=(4,))
    with pytest.raises(ValueError, match="declares none"):
        model.compile("adam", log_conflicts=True)
    aggregators = balancers.names()["aggregators"]
    name = "pcgrad" if "pcgrad" in aggregators else next(iter(aggregators), None)
    if name is None:
        pytest.skip("no gradient aggregator is registered yet")
    with pytest.raises(ValueError, match="declares none"):
        model.compile("adam", balancer=name)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"units": ()}, "units"),
        ({"units": (4, 0)}, "units"),
        ({"strength": -1.0}, "strength"),
        ({"tower_units": (0,)}, "tower_units"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        soft_sharing(toy_tasks(), 12, **kwargs)
