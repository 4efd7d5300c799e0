"""From a user's own CSV: `mtl-keras init` writes a recipe, `mtl-keras train` trains it with baselines and
exports it, `mtl-keras export --check` serves the export — as a new user would run them."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from mtl_keras.cli import main


def _user_csv(path, n: int = 400, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    price = rng.normal(20.0, 5.0, n)
    price[rng.random(n) < 0.05] = np.nan
    city = rng.choice(["paris", "oslo", "rome", "lima"], n)
    visits = rng.integers(0, 30, n)
    signal = np.nan_to_num(price - 20.0) / 5.0 + (city == "oslo") + visits / 30.0
    frame = pd.DataFrame(
        {
            "unit price": price,
            "city": city,
            "visits": visits,
            "bought": np.where(signal + rng.normal(0, 0.5, n) > 0.8, "yes", "no"),
            "basket": 1000.0 + 300.0 * signal + rng.normal(0, 50.0, n),
        }
    )
    frame.loc[rng.random(n) < 0.3, "basket"] = np.nan  # a task labelled in 70 % of rows
    frame.to_csv(path, index=False)


def test_init_train_export_check_from_a_fresh_csv(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _user_csv(tmp_path / "shop.csv")
    # String binary labels need `positive`: init says so, and writes nothing.
    assert main(["init", "shop.csv", "--task", "bought:binary", "--task", "basket:regression"]) == 2
    assert "positive" in capsys.readouterr().err
    assert not (tmp_path / "shop.yaml").exists()

    assert main(["init", "shop.csv", "--task", "basket:regression", "--task", "buys:binary:bought_flag"]) == 2
    assert "bought_flag" in capsys.readouterr().err

    frame = pd.read_csv(tmp_path / "shop.csv")
    frame["bought"] = (frame["bought"] == "yes").astype(int)
    frame.to_csv(tmp_path / "shop.csv", index=False)
    args = ["init", "shop.csv", "--task", "buys:binary:bought", "--task", "basket:regression"]
    assert main([*args, "--architecture", "hard_sharing", "--output", "recipes/shop.yaml"]) == 0
    printed = capsys.readouterr().out
    assert "unit price" in printed and "wrote recipes/shop.yaml" in printed
    recipe = yaml.safe_load((tmp_path / "recipes" / "shop.yaml").read_text())
    assert recipe["data"]["path"] == "../shop.csv"  # relative to the recipe's folder
    assert recipe["data"]["features"] == {"unit price": "numeric", "city": "categorical", "visits": "numeric"}
    assert recipe["data"]["tasks"]["basket"] == {"kind": "regression", "standardize": True}
    assert recipe["architecture"]["name"] == "hard_sharing"

    train = ["--quiet", "train", "recipes/shop.yaml", "--output", "runs/shop"]
    train += ["--set", "training.epochs=2", "--set", f"export.base_dir={tmp_path / 'export'}"]
    assert main(train) == 0
    printed = capsys.readouterr().out
    assert "Δm" in printed
    report = json.loads((tmp_path / "runs" / "shop" / "report.json").read_text())
    assert set(report["tasks"]) == {"buys", "basket"}
    for entry in report["tasks"].values():
        assert entry["multi_task"] and entry["single_task"]
    # Regression metrics are in original units (labels ~1000, so an MSE well above 1).
    assert report["tasks"]["basket"]["multi_task"]["mse"] > 100.0

    assert main(["export", "--check", str(tmp_path / "export" / "1")]) == 0
    checked = capsys.readouterr().out
    assert "checker imported mtl_keras: False" in checked


def test_a_task_without_test_labels_is_reported_missing_not_zero(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _user_csv(tmp_path / "train.csv", n=300)
    _user_csv(tmp_path / "test.csv", n=80, seed=1)
    for name in ("train.csv", "test.csv"):
        frame = pd.read_csv(tmp_path / name)
        frame["bought"] = frame["bought"].map({"yes": "true", "no": "false"})
        if name == "test.csv":
            frame["basket"] = np.nan  # no labels for this task in the test file
        frame.to_csv(tmp_path / name, index=False)
    args = [
        "init",
        "train.csv",
        "--test",
        "test.csv",
        "--task",
        "bought:binary",
        "--task",
        "basket:regression",
    ]
    assert main([*args, "--architecture", "hard_sharing", "--output", "shop.yaml"]) == 0
    assert "test 80" in capsys.readouterr().out
    train = ["--quiet", "train", "shop.yaml", "--output", "run", "--set", "training.epochs=3"]
    train += ["--set", "training.batch_size=32", "--set", "training.optimizer.learning_rate=0.01"]
    assert main([*train, "--set", "export.enabled=false"]) == 0
    assert "—" in capsys.readouterr().out
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    basket = report["tasks"]["basket"]
    assert all(v is None for v in basket["multi_task"].values())  # null, never 0.0
    assert all(v is None for v in basket["single_task"].values())
    assert report["tasks"]["bought"]["multi_task"]["auc"] > 0.5
    assert report["delta_m"] is not None  # from the task that has test labels
    assert "—" in (tmp_path / "run" / "report.md").read_text()


@pytest.mark.parametrize("task", ["bought", "bought:yesno", "a:b:c:d"])
def test_init_refuses_bad_task_arguments(tmp_path, capsys, task):
    _user_csv(tmp_path / "shop.csv", n=50)
    assert main(["init", str(tmp_path / "shop.csv"), "--task", task]) == 2
    assert "--task" in capsys.readouterr().err
