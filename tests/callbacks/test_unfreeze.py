"""Freeze schedules: a frozen backbone stays fixed (weights and BatchNormalization statistics) until the
unfreezing epoch and trains after it, the step is chosen again for the larger shared set, and the
backbone's discriminative learning rate gives it exactly multiplier × the head's step under SGD (checked
against gradients computed here, independently of the training step)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from mtl_keras import builders
from mtl_keras.builders import Backbone
from mtl_keras.builders.backbones import backbone_layers
from mtl_keras.callbacks import UnfreezeBackbone
from mtl_keras.callbacks.unfreeze import prepare_unfreezing
from mtl_keras.recipes import RecipeError, validate
from mtl_keras.tasks import Task
from mtl_keras.training import ParameterJacobianStep, SummedStep
from mtl_keras.training.discriminative import scale_learning_rate

TASKS = [Task("a", "regression"), Task("b", "regression")]


def conv_backbone(batch_norm: bool = True) -> keras.Model:
    keras.utils.set_random_seed(1)
    images = keras.Input((6, 6, 1))
    x = keras.layers.Conv2D(3, 3, padding="same")(images)
    if batch_norm:
        x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    return keras.Model(images, keras.layers.Flatten()(x), name="net")


def data(n=64):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 6, 6, 1)).astype("float32")
    return x, {"a": x[:, :3, :3, 0].mean(axis=(1, 2)), "b": x[:, 3:, 3:, 0].mean(axis=(1, 2))}


class Record(keras.callbacks.Callback):
    def __init__(self, layer):
        super().__init__()
        self.layer, self.weights = layer, []

    def on_epoch_end(self, epoch, logs=None):
        self.weights.append([w.copy() for w in self.layer.get_weights()])


def _changed(a, b):
    return [float(np.abs(x - y).max()) > 0 for x, y in zip(a, b, strict=True)]


def test_the_backbone_stays_fixed_until_the_unfreezing_epoch_then_trains_under_pcgrad():
    x, y = data()
    model = builders.hard_sharing(TASKS, Backbone(conv_backbone(), trainable=False), trunk=())
    model.compile(keras.optimizers.Adam(0.01), balancer="pcgrad")
    assert isinstance(model._runner.step, SummedStep)  # nothing shared is trainable yet
    prepare_unfreezing(model, backbone_layers(model))
    net = model.get_layer("backbone")
    start = [w.copy() for w in net.get_weights()]  # kernel, bias, gamma, beta, moving mean, variance
    record = Record(net)
    model.fit(x, y, epochs=3, batch_size=16, verbose=0, callbacks=[UnfreezeBackbone(1), record])
    assert not any(_changed(record.weights[0], start))
    assert all(_changed(record.weights[2], record.weights[0]))  # moving statistics move too
    assert isinstance(model._runner.step, ParameterJacobianStep)
    assert {id(v) for v in net.trainable_variables} <= {id(v) for v in model.shared_variables}


def _sgd_model(multiplier):
    model = builders.hard_sharing(TASKS, Backbone(conv_backbone(batch_norm=False)), trunk=(4,))
    model.compile(keras.optimizers.SGD(0.1))
    scale_learning_rate(model.optimizer, model.get_layer("backbone").trainable_variables, multiplier)
    return model


def _gradients(model, x, y):
    """d(mean squared error of a + of b)/dθ, written out here (the model's objective under static weights)."""
    with tf.GradientTape() as tape:
        out = model(x, training=True)
        loss = sum(tf.reduce_mean((tf.reshape(out[k], [-1]) - y[k]) ** 2) for k in ("a", "b"))
    variables = model.trainable_variables
    return variables, [g.numpy() for g in tape.gradient(loss, variables)]


@pytest.mark.parametrize("strategy", [None, "mirrored"])
def test_the_backbone_steps_with_multiplier_times_the_learning_rate_under_sgd(strategy, request):
    x, y = data(32)
    multiplier = 0.25
    if strategy is None:
        model = _sgd_model(multiplier)
    else:
        with request.getfixturevalue("mirrored_strategy").scope():
            model = _sgd_model(multiplier)
    variables, grads = _gradients(model, x, y)
    before = [v.numpy().copy() for v in variables]
    backbone = {id(v) for v in model.get_layer("backbone").trainable_variables}
    model.fit(x, y, epochs=1, batch_size=32, verbose=0, shuffle=False)
    for v, b, g in zip(variables, before, grads, strict=True):
        factor = multiplier if id(v) in backbone else 1.0
        np.testing.assert_allclose(v.numpy() - b, -0.1 * factor * g, rtol=1e-4, atol=1e-7)


def test_recipe_freeze_schedule_errors_name_the_key():
    tiny = {
        "name": "tiny",
        "data": {"name": "multidigits", "n_train": 64},
        "architecture": {"name": "hard_sharing", "trunk": [8]},
        "backbone": {"keras_applications": "MobileNetV3Small", "weights": None},
        "training": {"epochs": 3},
    }
    with pytest.raises(RecipeError, match=r"^freeze\.unfreeze_at_epoch: only a frozen backbone"):
        validate({**tiny, "freeze": {"unfreeze_at_epoch": 1}})
    with pytest.raises(RecipeError, match=r"^freeze\.unfreeze_at_epoch: expected fewer than training"):
        validate({**tiny, "freeze": {"backbone": True, "unfreeze_at_epoch": 3}})
    with pytest.raises(RecipeError, match=r"unfreeze_at_epoch"):  # did you mean
        validate({**tiny, "freeze": {"backbone": True, "unfreeze_at_epok": 1}})
    with pytest.raises(RecipeError, match=r"^freeze\.backbone_lr_multiplier: "):
        validate({**tiny, "freeze": {"backbone": True, "backbone_lr_multiplier": 0.1}})
    recipe = validate(
        {**tiny, "freeze": {"backbone": True, "unfreeze_at_epoch": 1, "backbone_lr_multiplier": 0.1}}
    )
    assert recipe.freeze.multiplier == 0.1
