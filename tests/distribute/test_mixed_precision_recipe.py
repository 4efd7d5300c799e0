"""``mixed_precision: mixed_bfloat16`` in a recipe: the models compute in bfloat16, training works on the
CPU, and the process's global Keras policy is what it was before (the CLI and tests run in-process)."""

import json
import math

import keras
import pytest
import yaml

from mtl_keras.cli import main

RECIPE = {
    "name": "tiny_bf16",
    "data": {"name": "sincos", "n": 96, "n_validation": 32, "n_test": 32},
    "architecture": {"name": "mmoe", "num_experts": 2, "expert_units": [8], "tower_units": [4]},
    "balancer": "uncertainty+pcgrad",
    "training": {"epochs": 2, "batch_size": 32},
    "baselines": {"epochs": 1},
    "mixed_precision": "mixed_bfloat16",
    "export": {"enabled": False},
}


def test_a_mixed_bfloat16_recipe_trains_and_the_policy_is_reset(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(RECIPE))
    before = keras.mixed_precision.global_policy().name
    assert main(["--quiet", "train", str(path), "--output", str(tmp_path / "run")]) == 0
    assert keras.mixed_precision.global_policy().name == before == "float32"
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert all(math.isfinite(v) for values in history.values() for v in values)
    assert history["loss"][-1] < history["loss"][0]
    model = keras.models.load_model(tmp_path / "run" / "model.keras")
    policies = {layer.dtype_policy.name for layer in model.layers if layer.weights}
    assert policies == {"mixed_bfloat16"}, policies


def test_the_policy_is_reset_when_preparing_fails(tmp_path, capsys):
    recipe = {**RECIPE, "tasks": {"sinn": {"loss": "mse"}}}  # found out by `prepare`, after the policy is set
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert main(["--quiet", "train", str(path), "--output", str(tmp_path / "run")]) == 2
    assert "tasks.sinn: no such task" in capsys.readouterr().err
    assert keras.mixed_precision.global_policy().name == "float32"
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["--strategy", "mirored"], "distribute.strategy: expected one of"),
        (["--set", "distribute.devices=[/gpu:0]"], "distribute.devices: only the 'mirrored' strategy"),
        (
            ["--strategy", "mirrored", "--set", "distribute.collective_timeout=30"],
            "distribute.collective_timeout: only the 'multi_worker' strategy",
        ),
        (["--set", "distribute.checkpoint_every=0"], "distribute.checkpoint_every: expected a positive"),
    ],
)
def test_bad_distribute_settings_are_recipe_errors(overrides, message, tmp_path, capsys):
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(RECIPE))
    assert main(["--quiet", "train", str(path), "--output", str(tmp_path / "run"), *overrides]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
