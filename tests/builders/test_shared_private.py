import keras
import numpy as np
import pytest
from helpers import check_builder, check_sharing, toy_data, toy_tasks

from mtl_keras.builders.shared_private import shared_private


def test_fit_and_round_trip(tmp_path):
    keras.utils.set_random_seed(0)
    x, y = toy_data()
    model = shared_private(toy_tasks(), 12, shared_units=(16,), private_units=(8,), tower_units=(8,))
    check_builder(model, x, y, tmp_path)
    check_sharing(model, x[:64], {k: v[:64] for k, v in y.items()})


def test_shared_layers_and_representation():
    model = shared_private(toy_tasks(), 12, shared_units=(16, 8))
    assert model.shared_layer_names == ["shared_0", "shared_1"]
    assert model.representation_name == "shared_1"
    assert tuple(model.get_layer("a_orthogonality").output.shape) == (None, 8 + 16)


def test_model_losses_are_the_orthogonality_penalty_of_every_task():
    x, _ = toy_data(n=16)
    model = shared_private(toy_tasks(), 12, shared_units=(6,), private_units=(5,), strength=0.2)
    features = keras.Model(
        model.input,
        [model.get_layer("shared_0").output] + [model.get_layer(f"{t}_private_0").output for t in "abc"],
    )
    shared, *privates = (np.asarray(f, dtype="float64") for f in features(x))
    model(x)
    assert len(model.losses) == 3
    expected = sum(0.2 * np.sum((shared.T @ p) ** 2) for p in privates)
    np.testing.assert_allclose(float(sum(model.losses)), expected, rtol=1e-5)


def test_image_inputs_are_flattened():
    x, _ = toy_data(n=4, image=True)
    model = shared_private(toy_tasks(), (8, 8, 1))
    assert tuple(model(x)["c"].shape) == (4, 3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"shared_units": ()}, "shared_units"),
        ({"private_units": ()}, "private_units"),
        ({"private_units": (0,)}, "private_units"),
        ({"strength": -0.1}, "strength"),
        ({"tower_units": (0,)}, "tower_units"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        shared_private(toy_tasks(), 12, **kwargs)
