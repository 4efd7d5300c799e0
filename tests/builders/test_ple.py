import re
from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import check_builder, check_sharing, shared_by_task_gradients, toy_data, toy_tasks

from mtl_keras import Task
from mtl_keras.builders.ple import cgc, ple

SMALL: dict[str, Any] = {
    "num_shared_experts": 2,
    "num_task_experts": 1,
    "expert_units": (8,),
    "tower_units": (4,),
}


def _task_losses(model, x, y):
    """Each task's mean loss, computed here from the Keras loss functions (not through the model's code)."""
    predictions = model(x, training=False)
    losses = []
    for task in model.tasks:
        p, t = predictions[task.name], tf.constant(y[task.name])
        if task.kind == "binary":
            loss = keras.losses.binary_crossentropy(t[:, None], p)
        elif task.kind == "regression":
            loss = keras.losses.mean_squared_error(t[:, None], p)
        else:
            loss = keras.losses.sparse_categorical_crossentropy(t, p)
        losses.append(tf.reduce_mean(loss))
    return losses


def shared_by_gradients(model, x, y):
    """Paths of the variables with a non-zero gradient from at least two tasks' losses (slice-wise for fused
    towers, see :func:`helpers.shared_by_task_gradients`)."""
    variables = model.trainable_variables
    with tf.GradientTape(persistent=True) as tape:
        losses = _task_losses(model, x, y)
    task_grads = [tape.gradient(loss, [v.value for v in variables]) for loss in losses]
    del tape
    return shared_by_task_gradients(model, variables, task_grads)


@pytest.mark.parametrize(
    ("builder", "kwargs"), [(cgc, {}), (ple, {"num_levels": 2}), (ple, {"num_levels": 3})]
)
def test_fit_round_trip_and_shared_variables(builder, kwargs, tmp_path):
    x, y = toy_data()
    model = builder(toy_tasks(), 12, **SMALL, **kwargs)
    check_builder(model, x, y, tmp_path)
    batch, labels = x[:64], {k: v[:64] for k, v in y.items()}
    check_sharing(model, batch, labels)
    assert {v.path for v in model.shared_variables} == shared_by_gradients(model, batch, labels)


def test_shared_layers_by_level():
    """By hand from the wiring: level-l task experts feed the level-l shared gate (shared) unless l is last;
    level-l task gates feed level-(l+1) task experts, shared unless l+1 is the last level."""
    assert cgc(toy_tasks(), 12).shared_layer_names == ["shared_experts"]
    assert ple(toy_tasks(), 12, num_levels=2).shared_layer_names == [
        "level_1_shared_experts",
        "level_1_experts_a",
        "level_1_experts_b",
        "level_1_experts_c",
        "level_1_shared_gate",
        "level_2_shared_experts",
    ]
    names = set(ple(toy_tasks(), 12, num_levels=3).shared_layer_names)
    assert {"level_1_gate_a", "level_2_experts_a", "level_2_shared_gate", "level_3_shared_experts"} <= names
    assert not names & {"level_2_gate_a", "level_3_experts_a", "level_3_gate_a", "towers", "tower_c"}


def test_representation_is_the_shared_experts_in_cgc_only():
    model = cgc(toy_tasks(), 12, **SMALL)
    assert model.representation_name == "shared_experts"
    assert model._representation_model()(np.zeros((5, 12), "float32"))[1].shape == (5, 2, 8)
    assert ple(toy_tasks(), 12, **SMALL).representation_name is None


def test_single_task_shares_nothing():
    model = ple([Task("a", "binary")], 12, **SMALL)
    assert model.shared_layer_names == []
    assert model.representation_name is None


def test_parameter_count_by_hand():
    # Two tasks, d=10, 2 shared + 1 task experts of 4 units, towers (3,) -> 1.
    model = ple(
        [Task("a"), Task("b")], 10, num_levels=2, **{**SMALL, "expert_units": (4,), "tower_units": (3,)}
    )
    level_1 = 2 * (10 * 4 + 4) + 2 * (1 * (10 * 4 + 4)) + 2 * (10 * 3 + 3) + (10 * 4 + 4)
    # experts: shared + 2 tasks; task gates over 3 experts; shared gate over 2 + 2·1 = 4 experts.
    level_2 = 2 * (4 * 4 + 4) + 2 * (4 * 4 + 4) + 2 * (4 * 3 + 3)
    towers = 2 * ((4 * 3 + 3) + (3 * 1 + 1))
    assert model.count_params() == level_1 + level_2 + towers


def test_gates_are_softmax_over_own_and_shared_experts():
    model = ple(toy_tasks(), 12, num_levels=2, **SMALL)
    x = np.random.default_rng(1).normal(size=(4, 12)).astype("float32")
    assert model.get_layer("level_1_gate_a")(x).shape == (4, 3)
    assert model.get_layer("level_1_shared_gate")(x).shape == (4, 2 + 3 * 1)
    np.testing.assert_allclose(np.sum(model.get_layer("level_1_shared_gate")(x), axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_levels": 0}, "Expected `num_levels` to be a positive integer. Received: num_levels=0"),
        ({"num_levels": 1.5}, "num_levels=1.5"),
        ({"num_shared_experts": 0}, "Received: num_shared_experts=0"),
        ({"num_task_experts": -1}, "Received: num_task_experts=-1"),
        ({"expert_units": ()}, "expert_units"),
        ({"tower_units": (0,)}, "tower_units"),
        ({"dropout": 1.5}, "Received: dropout=1.5"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        ple(toy_tasks(), 12, **kwargs)
