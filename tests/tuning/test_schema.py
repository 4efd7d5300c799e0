"""The `search:` block is validated like the rest of a recipe: defaults filled in, errors name the key path."""

import copy

import pytest

from mtl_keras.recipes import RecipeError
from mtl_keras.tuning import validate_search
from mtl_keras.tuning.schema import set_path, substitute

RECIPE = {
    "name": "toy",
    "data": {"name": "synthetic_mmoe", "p": 0.5, "n": 256},
    "architecture": {"name": "mmoe", "num_experts": 4, "expert_units": [16], "tower_units": [8]},
    "balancer": "static",
}
SPACE = {
    "architecture.num_experts": {"choice": [2, 4, 8]},
    "architecture.expert_units": {"choice": {"narrow": [8], "wide": [32, 16]}},
    "training.optimizer.learning_rate": {"log_float": [1e-4, 1e-2]},
    "training.batch_size": {"int": [32, 128], "step": 32},
    "balancer": {"choice": ["static", "uncertainty", "pcgrad", "uncertainty+pcgrad"]},
}


def test_defaults_and_normalised_space():
    search = validate_search({"space": SPACE}, RECIPE)
    assert search["tuner"] == "random" and search["max_trials"] == 10
    assert search["objective"] == {"kind": "delta_m", "task": None, "metric": None}
    assert search["hyperband"] == {"max_epochs": None, "factor": 3, "iterations": 1}
    space = search["space"]
    assert space["architecture.num_experts"] == {"type": "choice", "labels": [2, 4, 8], "values": [2, 4, 8]}
    # Lists are not Keras Tuner choice values: they are searched by label.
    assert space["architecture.expert_units"]["labels"] == ["narrow", "wide"]
    assert space["architecture.expert_units"]["values"] == [[8], [32, 16]]
    assert space["training.optimizer.learning_rate"] == {
        "type": "float",
        "low": 1e-4,
        "high": 1e-2,
        "step": None,
        "log": True,
    }
    assert space["training.batch_size"] == {"type": "int", "low": 32, "high": 128, "step": 32, "log": False}


def test_mixed_choices_get_json_labels():
    search = validate_search(
        {
            "space": {
                "architecture.num_experts": {"choice": [2, 4]},
                "architecture.tower_units": {"choice": [[], [8]]},
            }
        },
        RECIPE,
    )
    assert search["space"]["architecture.tower_units"]["labels"] == ["[]", "[8]"]


def test_a_validated_recipe_works_too():
    from mtl_keras.recipes import validate

    assert validate_search({"space": SPACE}, validate(RECIPE))["space"].keys() == SPACE.keys()


@pytest.mark.parametrize(
    ("block", "path", "words"),
    [
        (
            {"space": {"architecture.num_experts": {"int": [0, 4]}}},
            "search.space.architecture.num_experts.int[0]",
            "expected a positive integer, got 0",
        ),
        (
            {"space": {"architecture.num_expertz": {"choice": [2, 4]}}},
            "search.space.architecture.num_expertz.choice[0]",
            "Did you mean 'num_experts'",
        ),
        ({"space": {"data.p": {"float": [0.1, 0.9]}}}, "search.space.data.p", "cannot search 'data'"),
        (
            {"space": {"training.optimizer.learning_rate": {"log_float": [0, 0.1]}}},
            "search.space.training.optimizer.learning_rate.log_float[0]",
            "positive low end",
        ),
        (
            {"space": {"architecture.num_experts": {"int": [4, 2]}}},
            "search.space.architecture.num_experts.int",
            "low < high",
        ),
        (
            {"space": {"architecture.num_experts": {"range": [2, 4]}}},
            "search.space.architecture.num_experts.range",
            "unknown key",
        ),
        (
            {"space": {"architecture.num_experts": [2, 4]}},
            "search.space.architecture.num_experts",
            "expected a mapping {choice",
        ),
        (
            {"space": {"balancer": {"choice": ["static", "pcgard"]}}},
            "search.space.balancer.choice[1]",
            "Did you mean 'pcgrad'",
        ),
        (
            {"space": {"architecture.num_experts": {"choice": [2, 2]}}},
            "search.space.architecture.num_experts.choice",
            "distinct",
        ),
        (
            {"space": {"training.optimizer.learning_rate": {"log_float": [1e-4, 1e-2], "step": 0.1}}},
            "search.space.training.optimizer.learning_rate.step",
            "no step",
        ),
        ({"tuner": "grid", "space": SPACE}, "search.tuner", "one of ['random', 'hyperband', 'bayesian']"),
        ({"max_trials": 0, "space": SPACE}, "search.max_trials", "expected a positive integer, got 0"),
        ({"space": {}}, "search.space", "non-empty mapping"),
        ({}, "search.space", "missing required key"),
        ({"space": SPACE, "objective": {"kind": "task_metric"}}, "search.objective.task", "missing"),
        (
            {"space": SPACE, "objective": {"kind": "delta_m", "task": "y1"}},
            "search.objective.task",
            "only used with kind task_metric",
        ),
        ({"space": SPACE, "objective": {"kind": "best"}}, "search.objective.kind", "one of"),
        (
            {"space": SPACE, "hyperband": {"factor": 1}, "tuner": "hyperband"},
            "search.hyperband.factor",
            "expected an integer >= 2, got 1",
        ),
        (
            {"space": SPACE, "bayesian": {"num_initial_points": 2}},
            "search.bayesian",
            "search.tuner is random",
        ),
        ({"space": SPACE, "trials": 3}, "search.trials", "unknown key"),
    ],
)
def test_errors_name_the_key_path(block, path, words):
    with pytest.raises(RecipeError) as info:
        validate_search(block, RECIPE)
    assert info.value.path == path
    assert str(info.value).startswith(f"{path}: ")
    assert words in str(info.value)


def test_the_recipe_message_is_kept():
    with pytest.raises(RecipeError) as info:
        validate_search({"space": {"architecture.sharing_depth": {"int": [0, 2]}}}, RECIPE)
    assert str(info.value).startswith(
        "search.space.architecture.sharing_depth.int[0]: with architecture.sharing_depth = 0: "
        "architecture.sharing_depth: unknown option for architecture 'mmoe'; expected one of ["
    )


def test_delta_m_needs_baselines():
    recipe = {**RECIPE, "baselines": {"enabled": False}}
    with pytest.raises(RecipeError, match=r"^search\.objective\.kind: delta_m needs"):
        validate_search({"space": SPACE}, recipe)
    assert validate_search({"space": SPACE, "objective": {"kind": "mean_normalized"}}, recipe)


def test_set_path_and_substitute():
    recipe = copy.deepcopy(RECIPE)
    set_path(recipe, "training.optimizer.learning_rate", 0.01)
    assert recipe["training"] == {"optimizer": {"learning_rate": 0.01}}
    with pytest.raises(RecipeError, match=r"^balancer: is 'static', not a mapping"):
        set_path(recipe, "balancer.aggregator", "pcgrad")
    result = substitute({**RECIPE, "search": {}}, {"architecture.num_experts": 8})
    assert "search" not in result and result["architecture"]["num_experts"] == 8
    assert RECIPE["architecture"]["num_experts"] == 4  # a copy
