import keras
import numpy as np
import pytest
from helpers import check_builder, check_sharing, toy_data, toy_tasks

from mtl_keras.builders.sluice import sluice
from mtl_keras.layers.cross_stitch import CrossStitch
from mtl_keras.layers.sluice import LayerStitch


def test_fit_and_round_trip(tmp_path):
    keras.utils.set_random_seed(0)
    x, y = toy_data()
    model = sluice(toy_tasks(), 12, blocks=(16, 16), num_subspaces=2, tower_units=(8,))
    check_builder(model, x, y, tmp_path)
    check_sharing(model, x[:64], {k: v[:64] for k, v in y.items()})


def test_structure():
    model = sluice(toy_tasks(), 12, blocks=(8, 8, 8), num_subspaces=2)
    units = [layer for layer in model.layers if isinstance(layer, CrossStitch)]
    assert [u.num_subspaces for u in units] == [2, 2, 2]
    assert np.asarray(units[0].alpha).shape == (6, 6)
    betas = [layer for layer in model.layers if isinstance(layer, LayerStitch)]
    assert sorted(b.name for b in betas) == ["a_layer_stitch", "b_layer_stitch", "c_layer_stitch"]
    assert all(b.num_layers == 3 for b in betas)
    assert len(model.shared_layer_names) == 3 * 3 + 3  # every block precedes a unit; β is task-specific
    assert model.representation_name is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"blocks": (16, 8)}, "same shape"),
        ({"blocks": (9, 9)}, "num_subspaces"),
        ({"num_subspaces": 0}, "num_subspaces"),
        ({"blocks": ()}, "blocks"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        sluice(toy_tasks(), 12, **kwargs)
