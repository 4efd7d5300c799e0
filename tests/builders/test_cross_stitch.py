import keras
import numpy as np
import pytest
from helpers import check_builder, check_sharing, toy_data, toy_tasks

from mtl_keras.builders.cross_stitch import cross_stitch
from mtl_keras.layers.cross_stitch import CrossStitch


def _conv():
    return keras.layers.Conv2D(4, 3, padding="same", activation="relu")


def _stitches(model):
    return [layer for layer in model.layers if isinstance(layer, CrossStitch)]


def test_dense_columns_fit_and_round_trip(tmp_path):
    keras.utils.set_random_seed(0)
    x, y = toy_data()
    model = cross_stitch(toy_tasks(), 12, blocks=(16, 8), tower_units=(8,))
    assert [s.name for s in _stitches(model)] == ["cross_stitch_0", "cross_stitch_1"]
    assert model.representation_name is None
    check_builder(model, x, y, tmp_path)
    check_sharing(model, x[:64], {k: v[:64] for k, v in y.items()})


def test_conv_columns_on_images_fit_and_round_trip(tmp_path):
    keras.utils.set_random_seed(0)
    x, y = toy_data(image=True)
    # The Conv2D block is stitched as feature maps; the Dense block after it flattens each column.
    model = cross_stitch(toy_tasks(), (8, 8, 1), blocks=[_conv, 8], tower_units=(4,), name="cs_image")
    stitches = _stitches(model)
    assert [tuple(s.output[0].shape) for s in stitches] == [(None, 8, 8, 4), (None, 8)]
    check_builder(model, x, y, tmp_path)
    check_sharing(model, x[:64], {k: v[:64] for k, v in y.items()})


def test_conv_column_output_is_flattened_for_the_towers():
    x, _ = toy_data(n=4, image=True)
    model = cross_stitch(toy_tasks(), (8, 8, 1), blocks=[_conv, _conv], tower_units=())
    assert [tuple(s.output[0].shape) for s in _stitches(model)] == [(None, 8, 8, 4), (None, 8, 8, 4)]
    assert {name: tuple(out.shape) for name, out in model(x).items()} == {
        "a": (4, 1),
        "b": (4, 1),
        "c": (4, 3),
    }


def test_shared_layers_are_the_units_and_the_blocks_before_the_last_unit():
    x, y = toy_data(n=32)
    model = cross_stitch(toy_tasks(), 12, blocks=(8, 8, 8), stitch_after=[0])
    assert sorted(model.shared_layer_names) == ["a_block_0", "b_block_0", "c_block_0", "cross_stitch_0"]
    check_sharing(model, x, y)  # blocks 1 and 2 feed only their own task
    model = cross_stitch(toy_tasks(), 12, blocks=(8, 8), stitch_after=1)
    assert len(model.shared_layer_names) == 7
    model = cross_stitch(toy_tasks(), 12, blocks=(8, 8), stitch_after=())
    assert model.shared_layer_names == [] and _stitches(model) == []


def test_units_get_the_lr_multiplier_and_start_at_the_paper_alpha():
    model = cross_stitch(toy_tasks(), 12, blocks=(8,), lr_multiplier=50.0)
    (unit,) = _stitches(model)
    assert unit.lr_multiplier == 50.0
    expected = np.full((3, 3), 0.05) + np.eye(3) * 0.85
    np.testing.assert_allclose(np.asarray(unit.alpha), expected, rtol=1e-6)


def test_every_column_starts_from_the_input_and_columns_differ():
    model = cross_stitch(toy_tasks(), 12, blocks=(8,), stitch_after=())
    kernels = [model.get_layer(f"{t}_block_0").kernel.numpy() for t in "abc"]
    assert kernels[0].shape == (12, 8)
    assert not np.allclose(kernels[0], kernels[1])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"blocks": ()}, "blocks"),
        ({"blocks": 16}, "blocks"),
        ({"blocks": (16, 0)}, "blocks"),
        ({"stitch_after": 2}, "stitch_after"),
        ({"stitch_after": (0, 0)}, "stitch_after"),
        ({"stitch_after": (-1,)}, "stitch_after"),
        ({"stitch_after": "0"}, "stitch_after"),
        ({"tower_units": (0,)}, "tower_units"),
        ({"lr_multiplier": -1.0}, "lr_multiplier"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        cross_stitch(toy_tasks(), 12, **kwargs)


def test_a_factory_must_return_a_new_layer_per_column():
    layer = keras.layers.Dense(4)
    with pytest.raises(ValueError, match="new layer on every call"):
        cross_stitch(toy_tasks(), 12, blocks=[lambda: layer])
