"""`init_from` / `mtl-keras train --init-from`: a model built from the same recipe starts with the trained
run's weights (its predictions equal the source run's before any training), and a different architecture
or task set is one error naming the layer or task."""

import json

import keras
import numpy as np
import pytest

from mtl_keras.cli import main
from mtl_keras.experiments import prepare, run
from mtl_keras.recipes import RecipeError, validate

TINY = {
    "name": "warm",
    "data": {"name": "sincos", "n": 64, "n_validation": 16, "n_test": 16},
    "architecture": {"name": "hard_sharing", "trunk": [8], "tower_units": [4]},
    "training": {"epochs": 1, "batch_size": 32},
    "baselines": {"single_task": False},
    "export": {"enabled": False},
}


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    directory = tmp_path_factory.mktemp("source")
    run(prepare(validate({**TINY, "seed": 3})), directory)
    return directory


def test_a_warm_started_model_predicts_as_the_source_run(source):
    prepared = prepare(validate({**TINY, "init_from": str(source)}))
    trained = keras.models.load_model(source / "model.keras")
    x = prepared.dataset.examples("test", 16)
    got, want = prepared.model.predict(x, verbose=0), trained.predict(x, verbose=0)
    for task in want:
        np.testing.assert_array_equal(got[task], want[task])
    fresh = prepare(validate(TINY)).model.predict(x, verbose=0)
    assert np.abs(fresh["sin"] - want["sin"]).max() > 1e-3  # not equal by accident


def test_a_different_architecture_is_an_error_naming_the_layer(source):
    with pytest.raises(RecipeError, match=r"^init_from: Layer 'shared_0' has weights of shapes"):
        prepare(
            validate(
                {**TINY, "architecture": {**TINY["architecture"], "trunk": [6]}, "init_from": str(source)}
            )
        )
    with pytest.raises(RecipeError, match=r"^init_from: .*does not exist"):
        prepare(validate({**TINY, "init_from": str(source / "nothing")}))


def test_the_command_trains_from_the_run(source, tmp_path, capsys):
    recipe = tmp_path / "warm.json"
    recipe.write_text(json.dumps(TINY))
    assert (
        main(["--quiet", "train", str(recipe), "--init-from", str(source), "-o", str(tmp_path / "run")]) == 0
    )
    written = json.loads((tmp_path / "run" / "recipe.json").read_text())
    assert written["init_from"] == str(source.resolve())


def test_fused_and_separate_towers_are_told_apart_with_the_option_to_match():
    from mtl_keras import Task, builders
    from mtl_keras.experiments.warm_start import check_same_architecture

    tasks = [Task("a", "binary"), Task("b", "binary")]
    fused = builders.hard_sharing(tasks, 4, trunk=(3,))
    separate = builders.hard_sharing(tasks, 4, trunk=(3,), fuse_towers=False)
    with pytest.raises(ValueError, match=r"'towers' has no counterpart.*`fuse_towers=False`"):
        check_same_architecture(fused, separate)
    with pytest.raises(ValueError, match=r"'tower_a' has no counterpart.*`fuse_towers=True`"):
        check_same_architecture(separate, fused)
    check_same_architecture(fused, builders.hard_sharing(tasks, 4, trunk=(3,)))
