"""The typed recipe: read by attribute, dumped as it was written, option types from signatures, `imports:`
for a user's own balancer, `baselines.enabled: false` honoured, a hint for `data.name: tfds`."""

import json
import textwrap

import pytest
import yaml

from mtl_keras.cli import main
from mtl_keras.recipes import Recipe, RecipeError, load_recipe, validate
from mtl_keras.recipes.options import options_model

TINY = {
    "name": "tiny",
    "data": {"name": "sincos", "n": 64, "n_validation": 16, "n_test": 16},
    "architecture": {"name": "hard_sharing", "trunk": [8], "tower_units": 4},
    "training": {"epochs": 1, "batch_size": 32, "optimizer": {"learning_rate": 1}},
    "export": {"enabled": False},
}


def test_attributes_defaults_and_dump_round_trip():
    recipe = validate(TINY)
    assert isinstance(recipe, Recipe)
    assert recipe.architecture.name == "hard_sharing"
    assert recipe.architecture.options == {"trunk": [8], "tower_units": [4]}  # a size is a list of one
    assert recipe.training.optimizer.learning_rate == 1.0 and isinstance(
        recipe.training.optimizer.learning_rate, float
    )
    assert recipe.balancer.parts == [] and recipe.balancer.level == "param"
    assert recipe.baseline_epochs == 1 and recipe.data.options["n"] == 64
    dumped = recipe.model_dump()
    assert dumped["architecture"] == {"name": "hard_sharing", "trunk": [8], "tower_units": [4]}
    assert dumped["balancer"] == {
        "weighting": None,
        "aggregator": None,
        "level": "param",
        "log_conflicts": False,
    }
    assert validate(json.loads(json.dumps(dumped))) == recipe
    assert recipe["training"]["epochs"] == 1 and "search" not in recipe


def test_option_types_come_from_the_signature():
    from mtl_keras.builders import mmoe

    fields = options_model(mmoe).model_fields
    assert {"num_experts", "expert_units", "tower_units", "dropout"} <= set(fields)
    assert not {"tasks", "inputs", "name", "balancer"} & set(fields)
    with pytest.raises(
        RecipeError, match=r"^architecture\.dropout: expected a number in \[0, 1\), got 1\.0$"
    ):
        validate({**TINY, "architecture": {"name": "mmoe", "dropout": 1.0}})
    with pytest.raises(
        RecipeError, match=r"^architecture\.tower_units\[1\]: expected a positive integer, got 0$"
    ):
        validate({**TINY, "architecture": {"name": "mmoe", "tower_units": [8, 0]}})
    with pytest.raises(RecipeError, match=r"^balancer\.aggregator\.c: expected .*, got 'x'$"):
        validate({**TINY, "balancer": {"aggregator": {"name": "cagrad", "c": "x"}}})


@pytest.mark.parametrize(
    ("balancer", "message"),
    [
        (
            {"aggregator": {"name": "cagrad", "c": -1}},
            r"^balancer\.aggregator\.c: expected a non-negative number, got -1$",
        ),
        (
            {"aggregator": {"name": "cagrad", "rescale": 2}},
            r"^balancer\.aggregator\.rescale: expected one of \[0, 1\], got 2$",
        ),
        (
            {"weighting": {"name": "dwa", "temperature": 0}},
            r"^balancer\.weighting\.temperature: expected a positive number, got 0$",
        ),
        (
            {"weighting": {"name": "db_mtl", "beta": 1.0}},
            r"^balancer\.weighting\.beta: expected a number in \[0, 1\), got 1\.0$",
        ),
        (
            {"aggregator": {"name": "gradvac", "beta": 0}},
            r"^balancer\.aggregator\.beta: expected a number in \(0, 1\], got 0$",
        ),
        (
            {"aggregator": {"name": "graddrop", "leak": 2}},
            r"^balancer\.aggregator\.leak: expected a number in \[0, 1\], got 2$",
        ),
    ],
)
def test_balancer_option_bounds_come_from_the_signature(balancer, message):
    """Bounds written in a balancer's signature (mtl_keras.option_types) are checked before anything is built."""
    with pytest.raises(RecipeError, match=message):
        validate({**TINY, "balancer": balancer})


def test_tfds_as_a_data_name_gets_a_hint(tmp_path, capsys):
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({**TINY, "data": {"name": "tfds"}}))
    assert main(["--quiet", "train", str(path), "--output", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mtl-keras: error: data.name: expected one of [") and "\n" not in err
    assert "`data: {tfds: {name: <TFDS name>, tasks: {...}}}`" in err
    assert not (tmp_path / "run").exists()


def test_baselines_disabled_trains_no_baselines(tmp_path, capsys):
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({**TINY, "baselines": {"enabled": False}}))
    out = tmp_path / "run"
    assert main(["--quiet", "train", str(path), "--output", str(out)]) == 0
    assert "Δm: not computed" in capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert report["delta_m"] is None
    assert set(report["tasks"]) == {"sin", "cos"}
    assert all(entry["multi_task"] and not entry["single_task"] for entry in report["tasks"].values())
    assert not (out / "single_task").exists() and (out / "model.keras").exists()


USER_MODULE = """
from mtl_keras.balancers import WEIGHTINGS
from mtl_keras.balancers.weightings.static import Static


@WEIGHTINGS.register("recipe_test_static")
class RecipeTestStatic(Static):
    \"\"\"A user's weighting, registered in the user's module.\"\"\"
"""


def test_a_balancer_registered_in_a_user_module_works_by_name(tmp_path, capsys):
    (tmp_path / "my_balancers.py").write_text(textwrap.dedent(USER_MODULE))
    recipe = {
        **TINY,
        "imports": ["my_balancers"],
        "balancer": {"weighting": {"name": "recipe_test_static", "weights": [1, 2]}},
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    loaded = load_recipe(path)  # the module is found next to the recipe
    assert loaded.balancer.weighting.name == "recipe_test_static"
    assert loaded.balancer.weighting.options == {"weights": [1.0, 2.0]}
    with pytest.raises(RecipeError, match=r"^balancer\.weighting\.weights\[0\]: expected a number, got 'x'$"):
        load_recipe(path, ["balancer.weighting.weights=[x, 1]"])
    with pytest.raises(RecipeError, match=r"^imports\[0\]: cannot import 'no_such_module_here': "):
        load_recipe(path, ["imports=[no_such_module_here]"])
    out = tmp_path / "run"
    assert main(["--quiet", "train", str(path), "--output", str(out)]) == 0
    assert json.loads((out / "recipe.json").read_text())["imports"] == ["my_balancers"]
    capsys.readouterr()


def test_train_on_a_search_recipe_uses_its_own_values(tmp_path):
    search = {
        "objective": {"kind": "mean_normalized"},
        "space": {"architecture.trunk": {"choice": [[4], [8]]}},
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({**TINY, "search": search}))
    out = tmp_path / "run"
    assert main(["--quiet", "train", str(path), "--output", str(out)]) == 0
    assert json.loads((out / "recipe.json").read_text())["architecture"]["trunk"] == [8]
    bad = {**search, "space": {"data.n": {"int": [1, 2]}}}
    path.write_text(yaml.safe_dump({**TINY, "search": bad}))
    assert main(["--quiet", "train", str(path), "--output", str(tmp_path / "other")]) == 2
