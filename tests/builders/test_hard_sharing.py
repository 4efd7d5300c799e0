import keras
import numpy as np
import pytest
from helpers import check_builder, check_sharing, toy_data, toy_tasks

from mtl_keras import builders


@pytest.mark.parametrize("depth", [0, 1, 2])
def test_sharing_depth_counts_and_round_trip(depth, tmp_path):
    x, y = toy_data()
    model = builders.hard_sharing(toy_tasks(), 12, trunk=(16, 8), sharing_depth=depth, tower_units=(4,))
    assert len(model.shared_layer_names) == depth
    # Shared blocks exist once; unshared blocks once per task.
    dense_params = lambda i, o: i * o + o  # noqa: E731
    trunk = [dense_params(12, 16), dense_params(16, 8)]
    towers = sum(dense_params(8, 4) + dense_params(4, task.output_units) for task in toy_tasks())
    expected = sum(trunk[:depth]) + 3 * sum(trunk[depth:]) + towers
    assert model.count_params() == expected
    check_builder(model, x, y, tmp_path)
    check_sharing(model, x[:64], {k: v[:64] for k, v in y.items()})


def test_image_input_with_conv_blocks(tmp_path):
    x, y = toy_data(image=True)
    trunk = [lambda: keras.layers.Conv2D(4, 3, activation="relu"), 8]
    model = builders.hard_sharing(toy_tasks(), (8, 8, 1), trunk=trunk, sharing_depth=1)
    assert model.shared_layer_names == ["shared_0"]
    check_builder(model, x, y, tmp_path)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sharing_depth": 3}, "sharing_depth"),
        ({"sharing_depth": -1}, "sharing_depth"),
        ({"trunk": (16, 0)}, "trunk"),
        ({"tower_units": (-2,)}, "tower_units"),
        ({"dropout": 1.5}, "dropout"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        builders.hard_sharing(toy_tasks(), 12, **{"trunk": (16, 8), **kwargs})


def test_bad_inputs():
    with pytest.raises(ValueError, match="inputs"):
        builders.hard_sharing(toy_tasks(), -4)
    with pytest.raises(ValueError, match="inputs"):
        builders.hard_sharing(toy_tasks(), "wide")


def test_shared_representation_is_last_shared_block():
    model = builders.hard_sharing(toy_tasks(), 12, trunk=(16, 8), sharing_depth=1)
    assert model.representation_name == "shared_0"
    outputs = model.predict(np.zeros((2, 12), "float32"), verbose=0)
    assert outputs["c"].shape == (2, 3)
    np.testing.assert_allclose(outputs["c"].sum(axis=1), 1.0, rtol=1e-5)
