"""Tracking of `mtl-keras train`: TensorBoard event files with the per-task scalars, MLflow runs in a local
file store (when MLflow is installed), and a clear error when a recipe asks for MLflow without it."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest
import tensorflow as tf
import yaml

from mtl_keras.cli import main
from mtl_keras.experiments.tracking import check_tracking, flatten
from mtl_keras.recipes import RecipeError, validate

HAS_MLFLOW = importlib.util.find_spec("mlflow") is not None
EPOCHS = 2
TINY = {
    "name": "tracked",
    "data": {"name": "sincos", "n": 64, "n_validation": 16, "n_test": 16},
    "architecture": {"name": "hard_sharing", "trunk": [8], "tower_units": 4},
    "balancer": {"weighting": "uncertainty", "log_conflicts": True},
    "training": {"epochs": EPOCHS, "batch_size": 32},
    "baselines": {"epochs": 1},
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        # MLflow 3 refuses a file store unless told; a local file store is what this test wants.
        patch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
        yield _train(tmp_path_factory.mktemp("tracking"))


def _train(root):
    recipe = dict(TINY, export={"base_dir": str(root / "saved_models")})
    if HAS_MLFLOW:
        recipe["tracking"] = {"mlflow": {"uri": (root / "mlruns").as_uri(), "experiment": "tiny-experiment"}}
    path = root / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    out = root / "run"
    assert main(["--quiet", "train", str(path), "--output", str(out)]) == 0
    return root, out


def _scalars(directory):
    """``{tag: {step: value}}`` of every event file under ``directory`` (read with TensorFlow's reader)."""
    found: dict[str, dict[int, float]] = {}
    files = sorted(directory.glob("events.out.tfevents.*"))
    assert files, f"no event file in {directory}"
    for path in files:
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                number = (
                    float(tf.make_ndarray(value.tensor)) if value.HasField("tensor") else value.simple_value
                )
                found.setdefault(value.tag, {})[event.step] = number
    return found


def test_tensorboard_logs_hold_the_per_task_scalars(run):
    _, out = run
    history = json.loads((out / "history.json").read_text())
    train = _scalars(out / "tensorboard" / "multi_task" / "train")
    validation = _scalars(out / "tensorboard" / "multi_task" / "validation")
    for key in (
        "loss",
        "sin_loss",
        "cos_loss",
        "sin_weight",
        "cos_weight",
        "cos_sin_cos",
        "conflict_fraction",
    ):
        assert f"epoch_{key}" in train, sorted(train)
        assert sorted(train[f"epoch_{key}"]) == list(range(EPOCHS))
        # The logged values are the epoch logs of history.json.
        for epoch, value in train[f"epoch_{key}"].items():
            assert value == pytest.approx(history[key][epoch], rel=1e-5)
    assert "epoch_sin_loss" in validation and "epoch_cos_loss" in validation
    assert _scalars(out / "tensorboard" / "single_task" / "train")


@pytest.mark.skipif(not HAS_MLFLOW, reason="MLflow is not installed (the `mlflow` extra)")
def test_mlflow_run_recorded_in_a_local_store(run, monkeypatch):
    import mlflow

    root, out = run
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    client = mlflow.MlflowClient(tracking_uri=(root / "mlruns").as_uri())
    experiment = client.get_experiment_by_name("tiny-experiment")
    assert experiment is not None
    (recorded,) = client.search_runs([experiment.experiment_id])
    assert recorded.info.status == "FINISHED"
    params = recorded.data.params
    assert params["training.epochs"] == str(EPOCHS)
    assert params["architecture.name"] == "hard_sharing"
    assert params["balancer.weighting.name"] == "uncertainty"
    history = json.loads((out / "history.json").read_text())
    steps = client.get_metric_history(recorded.info.run_id, "sin_loss")
    assert [m.step for m in steps] == list(range(EPOCHS))
    assert [m.value for m in steps] == pytest.approx(history["sin_loss"], rel=1e-6)
    report = json.loads((out / "report.json").read_text())
    assert recorded.data.metrics["test.delta_m"] == pytest.approx(report["delta_m"])
    artifacts = {a.path for a in client.list_artifacts(recorded.info.run_id)}
    assert {"report.json", "report.md", "history.json", "recipe.json", "plots", "export"} <= artifacts
    exported = {a.path for a in client.list_artifacts(recorded.info.run_id, "export")}
    assert "export/saved_model.pb" in exported


def test_mlflow_store_refused_is_a_recipe_error():
    pytest.importorskip("mlflow")
    recipe = validate({**TINY, "tracking": {"mlflow": {"uri": "nosuchscheme://host/path"}}})
    with pytest.raises(RecipeError, match=r"^tracking\.mlflow\.uri: cannot use the MLflow tracking URI"):
        check_tracking(recipe)


def test_mlflow_missing_is_a_recipe_error(monkeypatch):
    recipe = validate({**TINY, "tracking": {"mlflow": {"uri": "file:///tmp/unused"}}})
    monkeypatch.setitem(sys.modules, "mlflow", None)  # importlib.util.find_spec now finds nothing
    with pytest.raises(RecipeError, match=r"^tracking\.mlflow: MLflow is not installed; install it with"):
        check_tracking(recipe)


def test_tracking_section_is_checked():
    with pytest.raises(RecipeError, match=r"tracking\.mlflow\.uri"):
        validate({**TINY, "tracking": {"mlflow": {"experiment": "x"}}})
    with pytest.raises(RecipeError, match=r"tracking\.mlflow\.urll"):
        validate({**TINY, "tracking": {"mlflow": {"uri": "file:/x", "urll": 1}}})
    assert validate(TINY).tracking.mlflow is None


def test_flatten():
    assert flatten({"a": {"b": 1, "c": [2, 3]}, "d": None, "e": {}}) == {
        "a.b": "1",
        "a.c": "[2, 3]",
        "d": "None",
        "e": "{}",
    }
