"""`mtl-keras train` reports each classification task's ECE, plots reliability, fits the recipe's
calibration on the validation split and exports it (with the fusion signature); `export --check` passes."""

from __future__ import annotations

import json

import numpy as np
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


def test_train_reports_ece_and_exports_calibrated_fused_scores(tmp_path):
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
    report = json.loads((out / "report.json").read_text())
    assert (out / "plots" / "reliability.png").is_file()
    fitted = json.loads((out / "calibration.json").read_text())
    assert sorted(fitted) == ["income", "never_married"]
    for task in ("income", "never_married"):
        entry = report["calibration"]["tasks"][task]
        assert report["tasks"][task]["multi_task"]["ece"] == entry["test_ece"]
        # the fitted temperature minimises the validation NLL; it cannot be worse than T = 1 by much in ECE
        assert entry["validation_ece_calibrated"] <= entry["validation_ece"] + 0.02
    assert "ece" in (out / "report.md").read_text()

    # The served probabilities are the run's calibrated ones: recompute the test ECE from the SavedModel.
    data = load_census(max_rows=600)
    version = tf.saved_model.load(str(tmp_path / "saved" / "1"))
    serve = version.signatures["serving_default"]
    inputs = {
        k: tf.constant(np.asarray(v).reshape(-1))
        for k, v in data.test.x.items()
        if k in serve.structured_input_signature[1]
    }
    served = {k: v.numpy() for k, v in serve(**inputs).items()}
    for task in ("income", "never_married"):
        ece = expected_calibration_error(served[task], data.test.y[task], bins=10)
        assert abs(ece - report["calibration"]["tasks"][task]["test_ece_calibrated"]) < 1e-4
    fused = version.signatures["rank_score"](**inputs)["rank_score"].numpy()
    np.testing.assert_allclose(fused, served["income"] * served["never_married"] ** 0.5, rtol=1e-5, atol=1e-7)
    check = check_export(tmp_path / "saved")
    assert check["ok"] and check["fusion"]["ok"], check["errors"]
