"""`mtl-keras train` reports each classification task's ECE, plots reliability, fits the recipe's
calibration on the validation split and exports it (with the fusion signature); `export --check` passes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf
import yaml

from mtl_keras.cli import main
from mtl_keras.data.census import load_census
from mtl_keras.evaluation.calibration import expected_calibration_error
from mtl_keras.export import check_export

RECIPE = {
    "name": "calibrated",
    "data": {"name": "census", "max_rows": 600},
    "architecture": {"name": "hard_sharing", "trunk": [8], "tower_units": 4},
    "training": {"epochs": 1, "batch_size": 64},
    "baselines": {"enabled": False},
    "calibration": {"method": "temperature", "bins": 10},
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("calibrated_run")
    recipe = RECIPE | {
        "export": {
            "base_dir": str(tmp_path / "saved"),
            "fusion": {"name": "rank_score", "formula": "income * never_married ** 0.5"},
        }
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    out = tmp_path / "run"
    assert main(["--quiet", "train", str(path), "--output", str(out)]) == 0
    return tmp_path, out


def _serve(version_dir, data):
    loaded = tf.saved_model.load(str(version_dir))
    serve = loaded.signatures["serving_default"]
    names = serve.structured_input_signature[1]
    inputs = {k: tf.constant(np.asarray(v).reshape(-1)) for k, v in data.test.x.items() if k in names}
    return loaded, inputs, {k: v.numpy() for k, v in serve(**inputs).items()}


def test_train_reports_ece_and_exports_calibrated_fused_scores(trained):
    tmp_path, out = trained
    report = json.loads((out / "report.json").read_text())
    assert (out / "plots" / "reliability.png").is_file()
    fitted = json.loads((out / "calibration.json").read_text())
    assert sorted(fitted) == ["income", "never_married"]
    for task in ("income", "never_married"):
        entry = report["calibration"]["tasks"][task]
        assert report["tasks"][task]["multi_task"]["ece"] == entry["test_ece"]
        # the fitted temperature minimises the validation NLL; it cannot be worse than T = 1 by much in ECE
        assert entry["validation_ece_calibrated"] <= entry["validation_ece"] + 0.02
    markdown = (out / "report.md").read_text()
    assert "| income | ece |" in markdown and "calibration of income (T = " in markdown

    # The served probabilities are the run's calibrated ones: recompute the test ECE from the SavedModel.
    data = load_census(max_rows=600)
    version, inputs, served = _serve(tmp_path / "saved" / "1", data)
    for task in ("income", "never_married"):
        ece = expected_calibration_error(served[task], data.test.y[task], bins=10)
        assert abs(ece - report["calibration"]["tasks"][task]["test_ece_calibrated"]) < 1e-4
    fused = version.signatures["rank_score"](**inputs)["rank_score"].numpy()
    np.testing.assert_allclose(fused, served["income"] * served["never_married"] ** 0.5, rtol=1e-5, atol=1e-7)
    check = check_export(tmp_path / "saved")
    assert check["ok"] and check["fusion"]["ok"], check["errors"]


def test_export_of_a_run_directory_applies_its_calibration(trained):
    tmp_path, out = trained
    fitted = json.loads((out / "calibration.json").read_text())
    assert any(abs(p["temperature"] - 1) > 1e-3 for p in fitted.values())  # calibration changes the outputs
    assert main(["--quiet", "export", str(out), "--base-dir", str(tmp_path / "again")]) == 0
    data = load_census(max_rows=600)
    _, _, first = _serve(tmp_path / "saved" / "1", data)
    _, _, again = _serve(tmp_path / "again" / "1", data)
    for task in first:
        np.testing.assert_allclose(again[task], first[task], atol=1e-6)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"calibration": {"method": "temperature", "tasks": ["incme"]}}, "unknown task 'incme'"),
        ({"export": {"fusion": {"formula": "income * maried"}}}, "Did you mean 'never_married'"),
        ({"export": {"fusion": {"name": "predict_income", "formula": "income"}}}, "another signature"),
    ],
)
def test_production_sections_are_checked_before_training(section, message, tmp_path):
    from mtl_keras.experiments import prepare
    from mtl_keras.recipes import RecipeError, validate

    with pytest.raises(RecipeError, match=message):
        prepare(validate(RECIPE | section))
