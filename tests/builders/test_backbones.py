"""Backbones as the shared start of any builder: a `Backbone` value, a backbone applied by hand, frozen
backbones (no update, BatchNormalization statistics kept) with gradient aggregators, keras.applications."""

import keras
import numpy as np
import pytest
from helpers import check_builder, check_sharing, toy_data, toy_tasks

from mtl_keras import builders
from mtl_keras.builders import Backbone, keras_application
from mtl_keras.tasks import Task


def conv_backbone(name: str = "conv_net") -> keras.Model:
    keras.utils.set_random_seed(1)
    images = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, padding="same")(images)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    return keras.Model(images, keras.layers.Flatten()(x), name=name)


def _ids(variables):
    return {id(v) for v in variables}


@pytest.fixture(scope="module")
def images():
    return toy_data(n=128, image=True)


@pytest.mark.parametrize(
    ("architecture", "options"),
    [("hard_sharing", {"trunk": (8,)}), ("mmoe", {"num_experts": 2, "expert_units": (8,)})],
)
def test_every_backbone_variable_is_shared(architecture, options, images, tmp_path):
    x, y = images
    net = conv_backbone()
    model = builders.get_builder(architecture)(toy_tasks(), Backbone(net), **options)
    assert _ids(net.trainable_variables) <= _ids(model.shared_variables)
    assert model.shared_layer_names[0] == "backbone"
    # MMoE's gates read the backbone's output directly, around the experts: no representation carries
    # every shared gradient, so it offers parameter level only; hard sharing's trunk output still does.
    assert (model.representation_name is None) == (architecture == "mmoe")
    check_sharing(model, x, y)
    check_builder(model, x, y, tmp_path)


def test_a_backbone_applied_by_hand_is_found_and_shared(images):
    x, y = images
    net = conv_backbone()
    features = net(keras.Input((8, 8, 1), name="image"))
    model = builders.hard_sharing(toy_tasks(), features, trunk=(8,))
    assert len(model.inputs) == 1 and model.inputs[0].shape[1:] == (8, 8, 1)
    assert _ids(net.trainable_variables) <= _ids(model.shared_variables)
    model.compile(keras.optimizers.Adam(0.01), balancer="mgda")
    model.fit(x, y, epochs=1, batch_size=64, verbose=0)
    # The single-task baselines cannot split a hand-applied backbone into columns: a clear error.
    with pytest.raises(ValueError, match=r"Backbone\(model, inputs\)"):
        builders.single_task(toy_tasks(), features)


def test_single_task_columns_get_their_own_copy_with_the_same_start(images):
    x, _ = images
    net = conv_backbone()
    start = [w.copy() for w in net.get_weights()]
    baseline = builders.single_task(toy_tasks(), Backbone(net), trunk=(8,))
    copies = [baseline.get_layer(f"{t.name}__backbone") for t in toy_tasks()]
    assert len({id(layer) for layer in copies}) == 3
    assert baseline.shared_layer_names == []
    for layer in copies:
        for got, want in zip(layer.get_weights(), start, strict=True):
            np.testing.assert_array_equal(got, want)
    ids = [_ids(layer.trainable_variables) for layer in copies]
    assert not (ids[0] & ids[1]) and not (ids[1] & ids[2])
    assert sorted(baseline.predict(x[:4], verbose=0)) == ["a", "b", "c"]


@pytest.mark.parametrize("balancer", ["pcgrad", "mgda"])
def test_a_frozen_backbone_keeps_weights_and_statistics_and_aggregators_train_the_rest(balancer, images):
    x, y = images
    net = conv_backbone()
    model = builders.hard_sharing(toy_tasks(), Backbone(net, trainable=False), trunk=(8,))
    assert not (_ids(net.weights) & _ids(model.trainable_variables))
    before = [w.copy() for w in net.get_weights()]  # kernels, bias, gamma, beta, moving mean/variance
    trunk = [v.numpy().copy() for v in model.get_layer("shared_0").trainable_variables]
    model.compile(keras.optimizers.Adam(0.01), balancer=balancer)
    model.fit(x, y, epochs=1, batch_size=32, verbose=0)
    for got, want in zip(net.get_weights(), before, strict=True):
        np.testing.assert_array_equal(got, want)
    after = [v.numpy() for v in model.get_layer("shared_0").trainable_variables]
    assert any(np.abs(a - b).max() > 0 for a, b in zip(after, trunk, strict=True))


def test_a_frozen_backbone_with_nothing_else_shared_trains_on_the_summed_loss(images, caplog):
    x, y = images
    model = builders.hard_sharing(toy_tasks(), Backbone(conv_backbone(), trainable=False), trunk=())
    assert model.shared_variables == []
    with caplog.at_level("WARNING"):
        model.compile(keras.optimizers.Adam(0.01), balancer="pcgrad")
    assert "no trainable shared variable" in caplog.text
    history = model.fit(x, y, epochs=2, batch_size=32, verbose=0).history
    assert history["loss"][-1] < history["loss"][0]


def test_keras_application_by_name_resized_from_the_data(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((16, 8, 8, 1), dtype=np.float32)
    y = {"a": (x.mean(axis=(1, 2, 3)) > 0.5).astype("float32"), "b": x[:, 0, 0, 0]}
    backbone = keras_application(
        "MobileNetV3Small", input_shape=(32, 32, 3), weights=None, pooling="avg", data_shape=(8, 8, 1)
    )
    model = builders.hard_sharing([Task("a", "binary"), Task("b", "regression")], backbone, trunk=(8,))
    application = model.get_layer("backbone")
    assert _ids(application.trainable_variables) <= _ids(model.shared_variables)
    model.compile("adam")
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0)["a"], model.predict(x, verbose=0)["a"], atol=1e-5)


def test_keras_application_errors_name_the_thing():
    with pytest.raises(
        ValueError, match=r"Unknown keras.applications model 'MobileNetV3Smal'.*'MobileNetV3Small'"
    ):
        keras_application("MobileNetV3Smal", input_shape=(32, 32, 3))
    with pytest.raises(ValueError, match=r"pooling"):
        keras_application("MobileNetV3Small", input_shape=(32, 32, 3), weights=None, pooling="mean")
    with pytest.raises(ValueError, match=r"Cannot feed images of shape \[8, 8, 2\]"):
        keras_application("MobileNetV3Small", input_shape=(32, 32, 3), weights=None, data_shape=(8, 8, 2))
    with pytest.raises(ValueError, match=r"keras\.Model or layer"):
        Backbone("resnet")


def test_recipe_backbone_section_errors_name_the_key():
    from mtl_keras.experiments.preparation import builder_inputs, load_data
    from mtl_keras.recipes import RecipeError, validate

    tiny = {
        "name": "tiny",
        "data": {"name": "sincos", "n": 64, "n_validation": 16, "n_test": 16},
        "architecture": {"name": "hard_sharing", "trunk": [8]},
    }
    with pytest.raises(RecipeError, match=r"^freeze\.backbone: there is no `backbone` section"):
        validate({**tiny, "freeze": {"backbone": True}})
    with pytest.raises(RecipeError, match=r"^backbone\.pooling: "):
        validate({**tiny, "backbone": {"keras_applications": "MobileNetV3Small", "pooling": "mean"}})
    with pytest.raises(RecipeError, match=r"^backbone\.input_shape: "):
        validate({**tiny, "backbone": {"keras_applications": "MobileNetV3Small", "input_shape": [32, 32]}})
    recipe = validate({**tiny, "backbone": {"keras_applications": "MobileNetV3Small", "weights": None}})
    with pytest.raises(RecipeError, match=r"^backbone: a keras.applications backbone takes images"):
        builder_inputs(recipe, load_data(recipe))
    digits = {**tiny, "data": {"name": "multidigits", "n_train": 32, "n_validation": 8, "n_test": 8}}
    recipe = validate({**digits, "backbone": {"keras_applications": "ResNet5", "weights": None}})
    with pytest.raises(RecipeError, match=r"^backbone: Unknown keras.applications model 'ResNet5'"):
        builder_inputs(recipe, load_data(recipe))
    recipe = validate(
        {
            **digits,
            "backbone": {
                "keras_applications": "MobileNetV3Small",
                "weights": None,
                "input_shape": [32, 32, 3],
            },
            "freeze": {"backbone": True},
        }
    )
    backbone = builder_inputs(recipe, load_data(recipe))
    assert isinstance(backbone, Backbone) and backbone.inputs == (8, 8, 1) and not backbone.trainable
