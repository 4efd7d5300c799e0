"""Bad recipes: exit code 2, one line naming the key, nothing written."""

import os

import pytest
import yaml

from mtl_keras.cli import main

GOOD = {
    "name": "tiny",
    "data": {"name": "sincos", "n": 64, "n_validation": 16, "n_test": 16},
    "architecture": {"name": "hard_sharing", "trunk": [8]},
    "training": {"epochs": 1, "batch_size": 32},
}


def _with(path, value):
    recipe = yaml.safe_load(yaml.safe_dump(GOOD))
    node = recipe
    keys = path.split(".")
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    if value is _DELETE:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value
    return recipe


_DELETE = object()

BAD = [
    (_with("trainig", {"epochs": 1}), "trainig: unknown key", "Did you mean 'training'"),
    (_with("training.epochs", "ten"), "training.epochs: expected a positive integer, got 'ten'", None),
    (_with("balancer", "pcgard"), "balancer: expected", "Did you mean 'pcgrad'"),
    (_with("tasks", {"sinn": {"weight": 2.0}}), "tasks.sinn: no such task", "Did you mean 'sin'"),
    (_with("architecture.num_experts", -3), "architecture.num_experts: unknown option", None),
    (
        {**_with("architecture", {"name": "mmoe", "num_experts": -3})},
        "architecture.num_experts: expected a positive integer, got -3",
        None,
    ),
    (_with("architecture.name", "mmo"), "architecture.name: expected one of", "Did you mean 'mmoe'"),
    (_with("data.name", "cencus"), "data.name: expected one of", "Did you mean 'census'"),
    (_with("architecture", _DELETE), "architecture: missing required key", None),
    (_with("balancer", {"aggregator": "pcgrad", "level": "params"}), "balancer.level: expected one of", None),
    (_with("training.optimizer", {"name": "adam", "momentum": 0.9}), "training.optimizer.momentum", None),
    (_with("training.batch_size", 0), "training.batch_size: expected a positive integer, got 0", None),
    (_with("data.p", 0.5), "data.p: unknown option for data set 'sincos'", None),
    (
        _with("architecture", {"name": "soft_sharing", "units": [8]}) | {"balancer": "pcgrad"},
        "balancer: Balancer 'static+pcgrad' aggregates gradients of shared variables",
        None,
    ),
    (
        _with("architecture.trunk", [{"Conv9D": {"filters": 3}}]),
        "architecture.trunk: Unknown Keras layer class 'Conv9D'",
        None,
    ),
    (
        _with("tasks", {"sin": {"weight": 2.0}}) | {"balancer": "uncertainty"},
        "tasks: per-task `weight`s are static weights",
        None,
    ),
    (
        _with("training.schedule", {"name": "cosine", "warmup_ratio": 1.5}),
        "training.schedule.warmup_ratio",
        None,
    ),
    (_with("data.n", -5), "data.n: expected a positive integer, got -5", None),
]


@pytest.mark.parametrize(("recipe", "message", "hint"), BAD, ids=[b[1].split(":")[0] for b in BAD])
def test_bad_recipe_exits_with_one_line_and_writes_nothing(recipe, message, hint, tmp_path, capsys):
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    out = tmp_path / "run"
    code = main(["--quiet", "train", str(path), "--output", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith(f"mtl-keras: error: {message}"), err
    assert "\n" not in err and "Traceback" not in err
    if hint:
        assert hint in err
    assert not out.exists()
    assert not os.path.exists(tmp_path / "saved_models")


def test_bad_set_and_missing_file(tmp_path, capsys):
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(GOOD))
    assert main(["train", str(path), "--set", "training.epochs"]) == 2
    assert "--set: expected key=value" in capsys.readouterr().err
    assert main(["train", str(tmp_path / "nope.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    path.write_text("name: [unclosed")
    assert main(["train", str(path)]) == 2
    assert "not valid YAML" in capsys.readouterr().err
