"""MTAN: trunk blocks or backbone stages, task-specific attention, shared feature blocks."""

import keras
import numpy as np
import pytest
from helpers import check_builder, check_sharing, toy_data, toy_tasks

from mtl_keras.builders import Backbone, keras_application, mtan, single_task
from mtl_keras.data import multidigits
from mtl_keras.layers.task_attention import TaskAttention

STAGES = ["expanded_conv_2_add", "expanded_conv_5_add"]  # MobileNetV3Small at 32x32: 4x4x24, 2x2x40


def _conv(filters=4, strides=1):
    return lambda: keras.layers.Conv2D(filters, 3, strides=strides, padding="same", activation="relu")


def _attention(model):
    return [layer for layer in model.layers if isinstance(layer, TaskAttention)]


def _subset(y, n):
    return {k: v[:n] for k, v in y.items()}


def test_dense_trunk_fits_round_trips_and_shares_the_declared_variables(tmp_path):
    keras.utils.set_random_seed(0)
    x, y = toy_data()
    y = {k: y[k] for k in ("a", "b")}  # two tasks keep the test short: the third adds only more of the same
    model = mtan(toy_tasks()[:2], 12, blocks=(16, 8), tower_units=(8,))
    assert model.representation_name is None
    assert model.shared_layer_names == [
        "shared_0",
        "shared_1",
        "mtan_feature_0",
        "mtan_feature_1",
    ]
    # Each task normalises its own features in the feature blocks.
    assert {"a_mtan_feature_0_norm", "b_mtan_feature_1_norm"} <= {layer.name for layer in model.layers}
    assert sorted(layer.name for layer in _attention(model)) == [
        f"{t}_attention_{j}" for t in "ab" for j in (0, 1)
    ]
    check_builder(model, x, y, tmp_path)


def test_dense_trunk_declares_exactly_the_variables_two_tasks_reach():
    # Independent of the builder's record: the variables two tasks' gradients reach are the declared ones.
    x, y = toy_data(n=64)
    check_sharing(mtan(toy_tasks(), 12, blocks=(16, 8), tower_units=(8,)), x, y)


def test_conv_trunk_stages_pooling_and_shapes():
    # 8x8x4 -> (stride 2) 4x4x6 -> Dense 8: the feature blocks pool 8x8 -> 4x4, then flatten to 8 units.
    model = mtan(
        [toy_tasks()[0], toy_tasks()[2]],
        (8, 8, 1),
        blocks=[_conv(4), _conv(6, 2), 8],
        tower_units=(4,),
        name="mtan_image",
    )
    shapes = {layer.name: tuple(layer.output.shape) for layer in _attention(model)}
    assert shapes["a_attention_0"] == (None, 8, 8, 4)
    assert shapes["a_attention_1"] == (None, 4, 4, 6)
    assert shapes["c_attention_2"] == (None, 8)
    # The second module reads the shared 4x4x6 map and the task's pooled 4x4x6 features: 12 channels in.
    assert model.get_layer("c_attention_1").hidden_dense.kernel.shape == (12, 6)
    assert tuple(model.get_layer("mtan_feature_0_pool").output.shape) == (None, 4, 4, 6)
    assert model.get_layer("mtan_feature_1").kernel.shape == (4 * 4 * 6, 8)


def test_conv_trunk_fits_and_round_trips(tmp_path):
    keras.utils.set_random_seed(0)
    x, y = toy_data(image=True)
    y = {k: y[k] for k in ("a", "c")}
    model = mtan(
        [toy_tasks()[0], toy_tasks()[2]], (8, 8, 1), blocks=[_conv(4), _conv(4, 2)], tower_units=(4,)
    )
    check_builder(model, x, y, tmp_path)


def test_conv_trunk_declares_exactly_the_variables_two_tasks_reach():
    x, y = toy_data(n=64, image=True)
    model = mtan(toy_tasks(), (8, 8, 1), blocks=[_conv(4), _conv(6, 2), 8], tower_units=(4,))
    check_sharing(model, x, y)


def test_masks_forced_to_one_give_every_task_the_shared_path():
    """With every mask 1, task t's tower reads relu(BN_t(s_1 W)): the shared trunk's last stage through the
    shared Dense layer of the last feature block and the task's normalisation, computed here in NumPy from
    the trunk's output and the blocks' weights."""
    keras.utils.set_random_seed(1)
    x, _ = toy_data(n=16)
    model = mtan(toy_tasks(), 12, blocks=(10, 6), tower_units=(4,))
    for layer in _attention(model):
        gamma, beta, mean, var = layer.mask_norm.get_weights()
        layer.mask_norm.set_weights([np.zeros_like(gamma), np.full_like(beta, 100.0), mean, var])
    s1 = np.asarray(keras.Model(model.input, model.get_layer("shared_1").output)(x), np.float64)
    z = s1 @ np.asarray(model.get_layer("mtan_feature_1").kernel, np.float64)
    rng = np.random.default_rng(0)
    for task in "abc":
        norm = model.get_layer(f"{task}_mtan_feature_1_norm")
        # Non-trivial statistics, different per task, so the check covers them.
        norm.set_weights(
            [rng.uniform(0.5, 2, 6), rng.normal(size=6), rng.normal(size=6), rng.uniform(0.5, 2, 6)]
        )
        gamma, beta, mean, var = (np.asarray(w, np.float64) for w in norm.get_weights())
        expected = np.maximum(gamma * (z - mean) / np.sqrt(var + norm.epsilon) + beta, 0)
        tower_input = keras.Model(model.input, model.get_layer(f"tower_{task}").input)(x)
        np.testing.assert_allclose(np.asarray(tower_input), expected, rtol=1e-5, atol=1e-5)


def test_fit_lowers_the_loss_on_multidigits():
    """The training loss (BatchNormalization on batch statistics) of both digits falls over 4 epochs; the
    evaluation loss would read the moving statistics, which 32 steps do not settle."""
    keras.utils.set_random_seed(0)
    data = multidigits(seed=0, n_train=256, n_validation=32, n_test=32)
    model = mtan(data.tasks, (8, 8, 1), blocks=[_conv(8), 32], tower_units=(16,))
    model.compile(keras.optimizers.Adam(1e-2))
    history = model.fit(data.train.x, data.train.y, epochs=4, batch_size=32, verbose=0).history
    for task in ("left", "right"):
        losses = history[f"{task}_loss"]
        assert losses[-1] < 0.8 * losses[0], history


@pytest.mark.parametrize("balancer", ["pcgrad", "mgda"])
def test_gradient_aggregators_run_at_parameter_level(balancer):
    keras.utils.set_random_seed(0)
    x, y = toy_data(n=64, image=True)
    model = mtan(toy_tasks(), (8, 8, 1), blocks=[_conv(4), _conv(4, 2)], tower_units=(4,))
    model.compile(keras.optimizers.Adam(1e-2), balancer=balancer, balancer_level="param", run_eagerly=True)
    shared = [v.numpy() for v in model.shared_variables]
    attention = [v.numpy() for layer in _attention(model) for v in layer.trainable_variables]
    history = model.fit(x, y, epochs=1, batch_size=32, verbose=0)
    assert np.isfinite(history.history["loss"][-1])
    assert all(not np.allclose(a, v.numpy()) for a, v in zip(shared, model.shared_variables, strict=True))
    moved = [v.numpy() for layer in _attention(model) for v in layer.trainable_variables]
    assert all(not np.allclose(a, b) for a, b in zip(attention, moved, strict=True))
    with pytest.raises(ValueError, match="representation"):
        model.compile("adam", balancer=balancer, balancer_level="rep")


def test_mobilenet_stages_train_one_step_with_every_backbone_variable_shared():
    keras.utils.set_random_seed(0)
    backbone = keras_application("MobileNetV3Small", input_shape=(32, 32, 3), weights=None)
    backbone_variables = {id(v) for v in backbone.model.trainable_variables}
    model = mtan(toy_tasks(), backbone, stages=STAGES, tower_units=(4,))
    shapes = {layer.name: tuple(layer.output.shape) for layer in _attention(model)}
    assert shapes == {
        f"{t}_attention_{j}": s for t in "abc" for j, s in enumerate([(None, 4, 4, 24), (None, 2, 2, 40)])
    }
    assert model.shared_layer_names[0] == "backbone"
    shared = {id(v) for v in model.shared_variables}
    # Only the backbone's layers up to the last stage are in the model; every one of them is shared.
    used = {id(v) for v in model.get_layer("backbone").trainable_variables}
    assert used <= backbone_variables and used <= shared and len(used) > 50
    assert not shared & {id(v) for layer in _attention(model) for v in layer.trainable_variables}
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, size=(8, 32, 32, 3)).astype("float32")
    y = {
        "a": rng.integers(0, 2, 8).astype("float32"),
        "b": rng.normal(size=8).astype("float32"),
        "c": rng.integers(0, 3, 8).astype("float32"),
    }
    model.compile(keras.optimizers.Adam(1e-3), balancer="pcgrad", run_eagerly=True)  # no 20 s trace
    before = [v.numpy() for v in model.get_layer("backbone").trainable_variables[:3]]
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    after = model.get_layer("backbone").trainable_variables[:3]
    assert all(not np.allclose(b, a.numpy()) for b, a in zip(before, after, strict=True))


def test_stages_of_a_resized_backbone_and_its_single_task_columns():
    """The recipes' wrapped backbone (8x8x1 images resized to 32x32x3): the stages are found in the nested
    application; the single-task baseline gives each task its own copy."""
    keras.utils.set_random_seed(0)
    backbone = keras_application(
        "MobileNetV3Small", input_shape=(32, 32, 3), weights=None, data_shape=(8, 8, 1)
    )
    model = mtan(["left", "right"], backbone, stages=STAGES, tower_units=(4,))
    assert tuple(model.input.shape) == (None, 8, 8, 1)
    baseline = single_task(["left", "right"], backbone, architecture="mtan", stages=STAGES, tower_units=(4,))
    assert baseline.shared_layer_names == []
    columns = [baseline.get_layer(f"{t}__backbone") for t in ("left", "right")]
    assert not {id(v) for v in columns[0].weights} & {id(v) for v in columns[1].weights}
    assert not {id(v) for v in columns[0].weights} & {id(v) for v in model.get_layer("backbone").weights}
    x = np.random.default_rng(0).uniform(size=(4, 8, 8, 1)).astype("float32")
    assert {k: tuple(v.shape) for k, v in baseline(x).items()} == {"left": (4, 1), "right": (4, 1)}


def test_single_task_columns_have_no_shared_variables():
    tasks = toy_tasks()
    multi = mtan(tasks, 12, blocks=(8, 4), tower_units=(4,))
    baseline = single_task(tasks, 12, architecture="mtan", blocks=(8, 4), tower_units=(4,))
    assert baseline.shared_layer_names == []
    # Each column is the one-task MTAN: its trunk and feature blocks plus one task's attention and tower.
    one = [mtan([t], 12, blocks=(8, 4), tower_units=(4,)).count_params() for t in tasks]
    assert baseline.count_params() == sum(one)
    assert multi.count_params() < baseline.count_params()


@pytest.mark.parametrize(
    ("inputs", "kwargs", "message"),
    [
        (12, {"stages": STAGES}, "Backbone"),
        (12, {"blocks": ()}, "blocks"),
        (12, {"mask_units": 0}, "mask_units"),
        (12, {"tower_units": (0,)}, "tower_units"),
        ((8, 8, 1), {"blocks": [_conv(4), _conv(4, 3)]}, "whole multiple"),
    ],
)
def test_bad_arguments(inputs, kwargs, message):
    with pytest.raises(ValueError, match=message):
        mtan(toy_tasks(), inputs, **kwargs)


def test_bad_stages():
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, name="conv")])
    functional = keras.Model(model.inputs, model.outputs)
    with pytest.raises(ValueError, match="not both"):
        mtan(toy_tasks(), Backbone(functional), stages=["conv"], blocks=(8,))
    with pytest.raises(ValueError, match="Did you mean 'conv'"):
        mtan(toy_tasks(), Backbone(functional), stages=["conv1"])
    with pytest.raises(ValueError, match="distinct layer names"):
        mtan(toy_tasks(), Backbone(functional), stages="conv")
