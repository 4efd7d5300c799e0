"""Tiny end-to-end searches: each tuner, each objective kind, resuming, the files written, the zoo's searches.

Every search trains 1–2 epochs of 2 steps on a few hundred rows; the test split is made unreadable where it
matters, to show that objectives and baselines use the validation split only.
"""

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from mtl_keras.recipes import RecipeError, load_recipe
from mtl_keras.tuning import load_search_recipe, run_search
from mtl_keras.tuning.cli import add_tune_parser, tune_command

ZOO = Path(__file__).resolve().parents[2] / "tuning"
TINY_DATA = {
    "synthetic_mmoe": ["data.n=256", "data.n_validation=64", "data.n_test=64"],
    "census": ["data.max_rows=400"],
}
PNG = b"\x89PNG\r\n\x1a\n"

SYNTHETIC = """
name: tiny_mmoe
seed: 0
data: {name: synthetic_mmoe, p: 0.5, n: 256, n_validation: 64, n_test: 64}
architecture: {name: mmoe, num_experts: 2, expert_units: [8], tower_units: [4]}
balancer: static
training: {epochs: 1, batch_size: 64, steps_per_epoch: 2}
"""


def _write(tmp_path: Path, text: str, name: str = "recipe.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _tune(*argv: str) -> int:
    """`mtl-keras --quiet tune ...` through an argparse parser built like mtl_keras.cli's."""
    parser = argparse.ArgumentParser(prog="mtl-keras")
    parser.add_argument("--quiet", action="store_true")
    add_tune_parser(parser.add_subparsers(dest="command", required=True))
    return tune_command(parser.parse_args(["--quiet", "tune", *argv]))


class _Unreadable:
    def __getattr__(self, name):
        raise AssertionError(f"the search read the test split ({name})")


@pytest.fixture
def no_test_split(monkeypatch):
    """Data sets whose test split raises when touched."""
    from mtl_keras.experiments import preparation as train

    load_data = train.load_data

    def without_test(recipe):
        dataset = load_data(recipe)
        dataset.test = _Unreadable()
        return dataset

    monkeypatch.setattr(train, "load_data", without_test)


def _results(directory: Path) -> dict:
    return json.loads((directory / "results.json").read_text())


def _check_best_recipe(directory: Path, results: dict) -> dict:
    scored = [t for t in results["trials"] if t["objective"] is not None]
    pick = max if results["objective"]["direction"] == "max" else min
    best = pick(scored, key=lambda t: t["objective"])
    assert results["best_trial"] == best["trial_id"]
    recipe = load_recipe(directory / "best.yaml")  # a runnable recipe: no search block
    for path, value in best["hyperparameters"].items():
        node = recipe
        for part in path.split("."):
            node = node[part]
        if path == "balancer":
            assert yaml.safe_load((directory / "best.yaml").read_text())["balancer"] == value
        else:
            assert node == value, path
    assert (directory / "objective.png").read_bytes()[:8] == PNG
    return recipe


def test_random_search_on_delta_m_resumes(tmp_path, capsys, no_test_split):
    search = """
search:
  tuner: random
  max_trials: 2
  objective: {kind: delta_m}
  space:
    architecture.num_experts: {choice: [1, 2, 3]}
    training.optimizer.learning_rate: {log_float: [1.0e-3, 1.0e-2]}
    balancer: {choice: [static, uncertainty, pcgrad, uncertainty+pcgrad]}
"""
    recipe, out = _write(tmp_path, SYNTHETIC + search), tmp_path / "search"
    assert _tune(str(recipe), "--output", str(out)) == 0
    first = _results(out)
    assert first["objective"] == {
        "kind": "delta_m",
        "name": "val_delta_m",
        "direction": "max",
        "task": None,
        "metric": None,
        "split": "validation",
    }
    assert [t["trial_id"] for t in first["trials"]] == ["0", "1"]
    for trial in first["trials"]:
        assert trial["status"] == "COMPLETED" and np.isfinite(trial["objective"])
        assert set(trial["validation"]) == {"y1", "y2"} and "mse" in trial["validation"]["y1"]
        assert trial["hyperparameters"]["architecture.num_experts"] in (1, 2, 3)
        assert 1e-3 <= trial["hyperparameters"]["training.optimizer.learning_rate"] <= 1e-2
    baselines = json.loads((out / "baselines.json").read_text())
    assert baselines["split"] == "validation" and first["baselines"] == baselines["validation"]
    best = _check_best_recipe(out, first)
    assert best["name"] == "tiny_mmoe_best" and "search" not in best
    assert "2 new trial(s)" in capsys.readouterr().out

    # Resume: the 2 finished trials are kept, 1 more runs, the baselines are not trained again.
    stamp = (out / "baselines.json").stat().st_mtime_ns
    assert _tune(str(recipe), "--output", str(out), "--max-trials", "3") == 0
    assert "1 new trial(s), 3 in all" in capsys.readouterr().out
    second = _results(out)
    assert second["trials"][:2] == first["trials"] and len(second["trials"]) == 3
    assert (out / "baselines.json").stat().st_mtime_ns == stamp
    _check_best_recipe(out, second)

    # The directory belongs to this search: another search block is refused before anything runs.
    with pytest.raises(RecipeError, match=r"^--output: .* holds a search of another"):
        _tune(str(recipe), "--output", str(out), "--set", "search.tuner=bayesian")


def test_hyperband_on_one_task_metric(tmp_path):
    text = """
name: tiny_sharing
seed: 0
data: {name: synthetic_mmoe, p: 0.5, n: 256, n_validation: 64, n_test: 64}
architecture: {name: hard_sharing, trunk: [16, 8], sharing_depth: 2, tower_units: [8]}
balancer: static
training: {epochs: 2, batch_size: 64, steps_per_epoch: 2}
search:
  tuner: hyperband
  max_trials: 3
  objective: {kind: task_metric, task: y2, metric: mae}
  hyperband: {max_epochs: 2, factor: 2}
  space:
    architecture.sharing_depth: {int: [0, 2]}
    architecture.tower_units: {choice: [[], [8]]}
    balancer: {choice: [static, uncertainty]}
tasks: {y2: {metrics: [mse, mae]}}
"""
    recipe, search = load_search_recipe(_write(tmp_path, text))
    result = run_search(recipe, search, tmp_path / "search")
    results = result.results
    assert results["objective"]["name"] == "val_y2_mae" and results["objective"]["direction"] == "min"
    assert len(results["trials"]) == 3 and result.new_trials == 3
    for trial in results["trials"]:
        assert trial["objective"] == pytest.approx(trial["validation"]["y2"]["mae"])
        assert trial["hyperparameters"]["architecture.sharing_depth"] in (0, 1, 2)
    # Successive halving: the third trial continues the better of the first two for one more epoch.
    first, second, third = results["trials"]
    assert first["hyperband"]["epochs"] == second["hyperband"]["epochs"] == 1
    assert third["hyperband"]["initial_epoch"] == 1 and third["hyperband"]["epochs"] == 2
    better = min((first, second), key=lambda t: t["objective"])
    assert third["hyperband"]["trial_id"] == better["trial_id"]
    assert third["hyperparameters"] == better["hyperparameters"]
    _check_best_recipe(tmp_path / "search", results)


def test_bayesian_on_mean_normalized_ple(tmp_path, no_test_split):
    text = """
name: tiny_ple
seed: 0
data: {name: synthetic_mmoe, p: 0.5, n: 256, n_validation: 64, n_test: 64}
architecture: {name: ple, num_levels: 1, num_shared_experts: 1, num_task_experts: 1, expert_units: [8], tower_units: [4]}
training: {epochs: 1, batch_size: 64, steps_per_epoch: 2}
search:
  tuner: bayesian
  max_trials: 2
  objective: {kind: mean_normalized}
  bayesian: {num_initial_points: 1}  # the second trial comes from the Gaussian process
  space:
    architecture.num_levels: {int: [1, 2]}
    architecture.num_shared_experts: {choice: [1, 2]}
    training.optimizer.learning_rate: {float: [1.0e-3, 1.0e-2]}
"""
    recipe, search = load_search_recipe(_write(tmp_path, text))
    result = run_search(recipe, search, tmp_path / "search")
    results = result.results
    assert [t["status"] for t in results["trials"]] == ["COMPLETED"] * 2
    references = results["references"]
    for trial in results["trials"]:
        values = trial["hyperparameters"]
        assert values["architecture.num_levels"] in (1, 2) and values["architecture.num_shared_experts"] in (
            1,
            2,
        )
        assert isinstance(values["training.optimizer.learning_rate"], float)
        # Two regressions: the objective is their mean validation R² against the constant predictor.
        r2 = [1 - trial["validation"][t]["mse"] / references[t]["mse"] for t in ("y1", "y2")]
        assert trial["objective"] == pytest.approx(np.mean(r2), rel=1e-5)
    assert result.best_values == result.best_trial["hyperparameters"]
    _check_best_recipe(tmp_path / "search", results)


def test_gradient_balancers_under_a_mirrored_strategy(tmp_path, mirrored_strategy):
    text = (
        SYNTHETIC.replace("balancer: static", "balancer: pcgrad\ndistribute: {strategy: mirrored}")
        + """
search:
  max_trials: 1
  objective: {kind: task_metric, task: y1}
  space:
    balancer: {choice: [pcgrad, uncertainty+pcgrad]}
    architecture.num_experts: {int: [1, 3]}
"""
    )
    recipe, search = load_search_recipe(_write(tmp_path, text))
    result = run_search(recipe, search, tmp_path / "search", strategy=mirrored_strategy)
    assert result.tuner.distribution_strategy is mirrored_strategy
    (trial,) = result.results["trials"]
    assert trial["status"] == "COMPLETED"
    assert trial["objective"] == pytest.approx(trial["validation"]["y1"]["mse"])
    assert result.results["objective"]["direction"] == "min"


def test_errors_before_anything_is_written(tmp_path):
    with pytest.raises(RecipeError, match=r"^search: missing"):
        load_search_recipe(ZOO.parent / "zoo" / "synthetic_mmoe.yaml")
    text = (
        SYNTHETIC
        + "search: {objective: {kind: task_metric, task: y3}, space: {balancer: {choice: [static]}}}\n"
    )
    recipe, search = load_search_recipe(_write(tmp_path, text))
    with pytest.raises(
        RecipeError,
        match=r"^search\.objective\.task: no such task in the data set; expected one of \['y1', 'y2'\]",
    ):
        run_search(recipe, search, tmp_path / "search")
    assert not (tmp_path / "search").exists()
    with pytest.raises(RecipeError, match=r"^distribute\.strategy: "):
        recipe, search = load_search_recipe(tmp_path / "recipe.yaml", ["distribute.strategy=multi_worker"])
        run_search(recipe, search, tmp_path / "search")
    assert not (tmp_path / "search").exists()
    with pytest.raises(RecipeError, match=r"^distill: the trials of a search train without teachers"):
        recipe, search = load_search_recipe(tmp_path / "recipe.yaml", ["distill={weight: 0.5}"])
        run_search(recipe, search, tmp_path / "search")
    assert not (tmp_path / "search").exists()
    with pytest.raises(SystemExit):
        _tune(str(tmp_path / "recipe.yaml"), "--max-trials", "0")


def test_failing_trials_stop_the_search_with_their_error(tmp_path, monkeypatch):
    from mtl_keras.tuning.hypermodel import MultiTaskHyperModel

    def fit(self, hp, model, *args, **kwargs):
        raise ValueError("this trial cannot train")

    monkeypatch.setattr(MultiTaskHyperModel, "fit", fit)
    text = (
        SYNTHETIC
        + "search: {objective: {kind: task_metric, task: y1}, space: {architecture.num_experts: {int: [1, 8]}}}\n"
    )
    recipe, search = load_search_recipe(_write(tmp_path, text))
    with pytest.raises(
        RecipeError,
        match=r"^search\.space: Keras Tuner stopped after 3 failed trials in a row; "
        r"the last error: ValueError: this trial cannot train",
    ):
        run_search(recipe, search, tmp_path / "search")
    trials = _results(tmp_path / "search")["trials"]
    assert [t["status"] for t in trials] == ["FAILED"] * 3
    assert all(t["objective"] is None and "cannot train" in t["error"] for t in trials)
    assert not (tmp_path / "search" / "best.yaml").exists()


def test_the_zoo_has_the_search_recipes():
    assert {p.stem for p in ZOO.glob("*.yaml")} == {"census_search", "synthetic_mmoe_search"}


@pytest.mark.parametrize("path", sorted(ZOO.glob("*.yaml")), ids=lambda p: p.stem)
def test_zoo_search_recipe_runs(path, tmp_path):
    data = yaml.safe_load(path.read_text())["data"]["name"]
    overrides = [*TINY_DATA[data], "training.epochs=1", "training.steps_per_epoch=2"]
    out = tmp_path / "search"
    args = [str(path), "--output", str(out), "--max-trials", "1"]
    for item in overrides:
        args += ["--set", item]
    assert _tune(*args) == 0
    results = _results(out)
    assert len(results["trials"]) == 1 and results["trials"][0]["status"] == "COMPLETED"
    _check_best_recipe(out, results)


def test_the_loss_weightings_famo_stch_excess_mtl_are_tune_choices_and_recipe_options(tmp_path):
    """Each trial trains one new weighting from its name; a recipe gives STCH its options."""
    search = """
search:
  tuner: random
  max_trials: 3
  objective: {kind: mean_normalized}
  space:
    balancer: {choice: [famo, stch, excess_mtl]}
"""
    recipe = SYNTHETIC.replace(
        "balancer: static",
        "balancer: {weighting: {name: stch, preference: [1, 2], ideal_point: [1, 1], log_losses: false}}",
    )
    out = tmp_path / "search"
    assert _tune(str(_write(tmp_path, recipe + search)), "--output", str(out)) == 0
    results = _results(out)
    assert sorted(t["hyperparameters"]["balancer"] for t in results["trials"]) == [
        "excess_mtl",
        "famo",
        "stch",
    ]
    assert all(np.isfinite(t["objective"]) for t in results["trials"])
    assert load_recipe(_write(tmp_path, recipe, "plain.yaml")).balancer.weighting.options == {
        "preference": [1.0, 2.0],
        "ideal_point": [1.0, 1.0],
        "log_losses": False,
    }
    with pytest.raises(RecipeError, match=r"balancer\.weighting\.preference\[1\]"):
        load_recipe(_write(tmp_path, recipe.replace("[1, 2]", "[1, -2]"), "bad.yaml"))


def test_the_aggregators_config_fairgrad_sdmgrad_modo_moco_are_tune_choices_and_recipe_options(tmp_path):
    """Each trial trains one of the newer gradient aggregators from its name; a recipe gives FairGrad its α."""
    search = """
search:
  tuner: random
  max_trials: 5
  objective: {kind: mean_normalized}
  space:
    balancer: {choice: [config, fairgrad, sdmgrad, modo, moco]}
"""
    recipe = SYNTHETIC.replace("balancer: static", "balancer: {aggregator: {name: fairgrad, alpha: 1.5}}")
    out = tmp_path / "search"
    assert _tune(str(_write(tmp_path, recipe + search)), "--output", str(out)) == 0
    results = _results(out)
    assert sorted(t["hyperparameters"]["balancer"] for t in results["trials"]) == [
        "config",
        "fairgrad",
        "moco",
        "modo",
        "sdmgrad",
    ]
    assert all(np.isfinite(t["objective"]) for t in results["trials"])
    assert load_recipe(_write(tmp_path, recipe, "plain.yaml")).balancer.aggregator.options == {"alpha": 1.5}
    with pytest.raises(RecipeError, match=r"balancer\.aggregator\.alpha"):
        load_recipe(_write(tmp_path, recipe.replace("alpha: 1.5", "alpha: -1"), "bad.yaml"))
    moco = recipe.replace("name: fairgrad, alpha: 1.5", "name: moco, beta: 0.9, gamma_decay: 0")
    assert load_recipe(_write(tmp_path, moco, "moco.yaml")).balancer.aggregator.options == {
        "beta": 0.9,
        "gamma_decay": 0.0,
    }
