"""`mtl-keras extend` / `mtl_keras.experiments.extend`: a task added to a trained run on a csv file. Frozen:
the old task's predictions are unchanged (max |Δ| ≤ 1e-6), the new run and an export with the new task's
signature are written. Distill and EWC: the old task's predictions move less than with plain fine-tuning."""

import json

import numpy as np
import pandas as pd
import pytest

from mtl_keras.cli import main
from mtl_keras.experiments import prepare, run
from mtl_keras.experiments.extend import ExtendSettings, extend, extension_data, load_run
from mtl_keras.recipes import validate


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    directory = tmp_path_factory.mktemp("extend")
    rng = np.random.default_rng(0)
    n = 240
    x1, x2, x3 = rng.normal(size=(3, n))
    table = pd.DataFrame(
        {
            "x1": x1,
            "x2": x2,
            "x3": x3,
            "a": (x1 + 0.5 * x2 > 0).astype(int),
            "b": np.sin(2 * x1) + x3,
        }
    )
    table.to_csv(directory / "table.csv", index=False)
    recipe = {
        "name": "extend_toy",
        "data": {
            "name": "csv",
            "path": str(directory / "table.csv"),
            "tasks": {"a": "binary"},
            "features": {"b": "skip"},
        },
        "architecture": {"name": "hard_sharing", "trunk": [16], "tower_units": [8]},
        "training": {"epochs": 2, "batch_size": 32, "optimizer": {"learning_rate": 0.01}},
        "baselines": {"single_task": False},
        "export": {"enabled": False},
    }
    run(prepare(validate(recipe)), directory / "run")
    return directory


def test_extend_frozen_keeps_old_predictions_and_exports_the_new_signature(source, capsys):
    out, base = source / "frozen", source / "saved"
    argv = ["--quiet", "extend", str(source / "run"), "--add-task", "b:regression", "--keep", "frozen"]
    assert main([*argv, "--epochs", "2", "-o", str(out), "--base-dir", str(base)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["old_tasks"]["a"]["max_abs_prediction_change"] <= 1e-6
    assert report["old_tasks"]["a"]["change"]["auc"] == 0.0
    assert set(report["added_task"]["test"]) >= {"mse"} and report["added_task"]["single_task"] is not None
    assert (out / "model.keras").exists() and "| a | auc |" in (out / "report.md").read_text()
    import tensorflow as tf

    signatures = tf.saved_model.load(report["export"]).signatures
    assert set(signatures) == {"serving_default", "predict_a", "predict_b"}


def test_distillation_and_ewc_move_old_predictions_less_than_plain_fine_tuning(source):
    recipe, _ = load_run(source / "run")
    changes = {}
    for keep in ("none", "distill", "ewc"):
        data, block = extension_data(recipe, "b:regression")
        settings = ExtendSettings(keep=keep, epochs=1, learning_rate=0.05, distill_weight=5.0, baseline=False)
        report = extend(
            source / "run", "b", data, settings=settings, output_dir=source / keep, data_block=block
        )
        changes[keep] = report["old_tasks"]["a"]["max_abs_prediction_change"]
    assert changes["distill"] < changes["none"] and changes["ewc"] < changes["none"]
