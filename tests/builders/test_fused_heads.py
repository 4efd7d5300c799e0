"""Fused heads (``fuse_towers``, the default): a builder's compatible towers are one FusedTowers layer.

Against the same architecture built with ``fuse_towers=False`` and the same weights (the fused slices copied
from the separate towers): the same outputs, the same shared layers, and the same parameter updates from
one SGD step under a plain sum and under gradient aggregators at both levels; .keras round trip.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from mtl_keras import Task, builders
from mtl_keras.builders.sharing import derive_shared_layers
from mtl_keras.layers.fused_towers import FusedTowers
from mtl_keras.layers.towers import Tower

# Three one-unit heads (one group) and a three-class head of its own.
TASKS = [
    Task("a", "binary"),
    Task("b", "regression"),
    Task("c", "binary"),
    Task("d", "multiclass", num_classes=3),
]
ARCHITECTURES = {
    "hard_sharing": {"trunk": (8,), "tower_units": (4,)},
    "hard_sharing_columns": {"trunk": (8, 6), "sharing_depth": 1, "tower_units": (4,)},
    "mmoe": {"num_experts": 3, "expert_units": (6,), "tower_units": (4,)},
    "omoe": {"num_experts": 3, "expert_units": (6,), "tower_units": (4,)},
    "cgc": {"num_shared_experts": 2, "num_task_experts": 1, "expert_units": (6,), "tower_units": (4,)},
    "ple": {"num_shared_experts": 1, "num_task_experts": 1, "expert_units": (5,), "tower_units": (3, 2)},
}


def _pair(architecture: str) -> tuple[keras.Model, keras.Model]:
    builder = builders.get_builder(architecture.removesuffix("_columns"))
    options = ARCHITECTURES[architecture]
    separate = builder(TASKS, 7, fuse_towers=False, **options)
    fused = builder(TASKS, 7, **options)
    # Same weights: every layer but the towers has the same name in both; the fused slices are the towers'.
    for layer in separate.layers:
        if layer.weights and not isinstance(layer, Tower):
            fused.get_layer(layer.name).set_weights(layer.get_weights())
    towers = fused.get_layer("towers")
    group = ["a", "b", "c"]
    per_tower = [separate.get_layer(f"tower_{name}").get_weights() for name in group]
    towers.set_weights(
        [np.stack([w[i] for w in per_tower]).reshape(v.shape) for i, v in enumerate(towers.weights)]
    )
    fused.get_layer("tower_d").set_weights(separate.get_layer("tower_d").get_weights())
    return separate, fused


def _data(n: int = 32) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 7)).astype("float32")
    return x, {
        "a": (x[:, 0] > 0).astype("float32"),
        "b": (x[:, 1] - x[:, 2]).astype("float32"),
        "c": (x[:, 3] + x[:, 4] > 0).astype("float32"),
        "d": np.digitize(x[:, 5], [-0.5, 0.5]).astype("float32"),
    }


def _layer_weights(model: keras.Model) -> list[keras.Variable]:
    """The layers' weights (not the balancer's state, e.g. PCGrad's random-number state)."""
    return [v for layer in model.layers for v in layer.weights]


def _named_weights(
    separate: keras.Model, fused: keras.Model
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Both models' weights by the separate model's paths (fused slice k under tower k's paths)."""
    theirs = {v.path: v.numpy() for v in _layer_weights(fused) if not v.path.startswith("towers/")}
    kernels = fused.get_layer("towers").weights
    for k, name in enumerate(["a", "b", "c"]):
        tower = separate.get_layer(f"tower_{name}")
        for variable, stacked in zip(tower.weights, kernels, strict=True):
            theirs[variable.path] = stacked.numpy()[k].reshape(variable.shape)
    return {v.path: v.numpy() for v in _layer_weights(separate)}, theirs


@pytest.mark.parametrize("architecture", list(ARCHITECTURES))
def test_fused_heads_give_the_separate_heads_outputs_and_shared_layers(architecture: str) -> None:
    separate, fused = _pair(architecture)
    assert isinstance(fused.get_layer("towers"), FusedTowers)
    assert fused.get_layer("towers").num_towers == 3 and isinstance(fused.get_layer("tower_d"), Tower)
    assert not [layer for layer in separate.layers if isinstance(layer, FusedTowers)]
    x, _ = _data(8)
    expected, got = separate.predict(x, verbose=0), fused.predict(x, verbose=0)
    for name in separate.task_names:
        np.testing.assert_allclose(got[name], expected[name], atol=1e-6)
    assert fused.shared_layer_names == separate.shared_layer_names
    assert fused.representation_name == separate.representation_name
    # Walked as an ordinary layer the fused towers would be reached by three outputs, hence "shared"; the
    # builders declare them columnwise, so their variables are task-specific.
    outputs = dict(fused._outputs_struct)
    assert "towers" in {layer.name for layer in derive_shared_layers(outputs)}
    assert "towers" not in {
        layer.name for layer in derive_shared_layers(outputs, columnwise=[fused.get_layer("towers")])
    }
    specific = {id(v) for v in fused.task_specific_variables}
    assert all(id(v) in specific for v in fused.get_layer("towers").trainable_variables)


@pytest.mark.parametrize(
    ("architecture", "balancer", "level"),
    [
        ("hard_sharing", None, "param"),
        ("hard_sharing", "pcgrad", "param"),
        ("hard_sharing", "mgda", "rep"),
        ("mmoe", "mgda", "param"),
        ("mmoe", "cagrad", "rep"),
        ("ple", "pcgrad", "param"),
        ("cgc", "uncertainty+mgda", "param"),
    ],
)
def test_one_step_updates_as_the_separate_heads(architecture: str, balancer: str | None, level: str) -> None:
    x, y = _data()
    updated = []
    for model in _pair(architecture):
        keras.utils.set_random_seed(0)  # PCGrad's random task order, the same for both models
        model.compile(keras.optimizers.SGD(0.5), balancer=balancer, balancer_level=level)
        model.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0)
        updated.append(model)
    before_separate, before_fused = _named_weights(*_pair(architecture))
    after_separate, after_fused = _named_weights(*updated)
    assert sorted(after_separate) == sorted(after_fused)
    for path, value in after_separate.items():
        np.testing.assert_allclose(before_fused[path], before_separate[path], atol=0)  # the same start
        # Every variable, the towers' slices included, moved by the same step.
        np.testing.assert_allclose(after_fused[path], value, atol=2e-5, err_msg=path)
    assert any(
        not np.allclose(after_separate[p], before_separate[p]) for p in after_separate if "tower_" in p
    )


def test_fused_model_round_trips_through_keras_files(tmp_path) -> None:
    _, fused = _pair("mmoe")
    path = tmp_path / "fused.keras"
    fused.save(path)
    loaded = keras.models.load_model(path)
    x, _ = _data(5)
    expected, got = fused.predict(x, verbose=0), loaded.predict(x, verbose=0)
    for name in fused.task_names:
        np.testing.assert_allclose(got[name], expected[name], atol=1e-6)
    assert isinstance(loaded.get_layer("towers"), FusedTowers)
    assert loaded.shared_layer_names == fused.shared_layer_names


def test_towers_on_image_features_or_of_one_task_stay_separate() -> None:
    model = builders.hard_sharing(
        TASKS, (6, 6, 1), trunk=[lambda: keras.layers.Conv2D(2, 3)], tower_units=(4,)
    )
    assert {layer.name for layer in model.layers if isinstance(layer, Tower)} == {
        f"tower_{t.name}" for t in TASKS
    }
    single = builders.hard_sharing([Task("a", "binary"), Task("d", "multiclass", num_classes=3)], 7)
    assert not [layer for layer in single.layers if isinstance(layer, FusedTowers)]


@pytest.mark.parametrize("architecture", ["hard_sharing", "mmoe", "ple"])
def test_one_global_seed_gives_the_separate_towers_initial_weights(architecture: str) -> None:
    builder = builders.get_builder(architecture)
    keras.utils.set_random_seed(7)
    separate = builder(TASKS, 7, tower_units=(5, 3), fuse_towers=False)
    keras.utils.set_random_seed(7)
    fused = builder(TASKS, 7, tower_units=(5, 3))
    before, after = _named_weights(separate, fused)
    assert sorted(before) == sorted(after)
    for path, value in before.items():
        np.testing.assert_array_equal(after[path], value, err_msg=path)
