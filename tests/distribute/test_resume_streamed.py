"""A recipe on a user's CSV (``data: {name: csv, ...}``, streamed through tf.data) resumes exactly: a run
interrupted (Ctrl-C) or killed (SIGKILL) mid-training and resumed with ``--resume`` ends with the weights
and epoch logs of an uninterrupted run; ``mtl-keras evaluate`` re-reads the test split of a finished run and
``mtl-keras tune`` searches over the same recipe.

The training stream's blocks (``shuffle_buffer: 48``) are smaller than the training split, so a resumed run
must land in the middle of a block of the block shuffle, in the second pass over the file.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
import yaml

from mtl_keras.cli import main
from mtl_keras.distribute import checkpoint as checkpoint_lib

ROWS = 300
BATCH = 32

# As in test_resume.py: the CLI with every training step slowed down, so that the kill lands mid-training.
SLOW_CLI = textwrap.dedent(
    """
    import sys, time
    from mtl_keras.distribute import checkpoint
    original = checkpoint.TrainingCheckpoint.on_train_batch_end
    def slow(self, batch, logs=None):
        original(self, batch, logs)
        time.sleep(0.3)
    checkpoint.TrainingCheckpoint.on_train_batch_end = slow
    from mtl_keras.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update({"TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "", "PYTHONUNBUFFERED": "1"})
    env.pop("TF_CONFIG", None)
    return env


def _wait_for(condition, process: subprocess.Popen, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"the process exited ({process.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout} s")
        time.sleep(0.05)


def _kill(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()
        process.wait(timeout=30)


def _weights(run_dir: Path) -> list[np.ndarray]:
    return keras.models.load_model(run_dir / "model.keras").get_weights()


def _assert_same_run(resumed: Path, reference: Path) -> None:
    for a, b in zip(_weights(resumed), _weights(reference), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)
    history = json.loads((resumed / "history.json").read_text())
    expected = json.loads((reference / "history.json").read_text())
    assert sorted(history) == sorted(expected)
    for key in expected:
        np.testing.assert_allclose(history[key], expected[key], rtol=1e-5, atol=1e-6, err_msg=key)
    assert not (resumed / "backup").exists(), "checkpoints are removed once the run is complete"


def _write_csv(path: Path, n: int = ROWS, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    price = rng.normal(20.0, 5.0, n)
    price[rng.random(n) < 0.1] = np.nan  # imputed with the streamed median
    city = rng.choice(["paris", "oslo", "rome", "lima"], n)
    visits = rng.integers(0, 30, n)
    signal_ = np.nan_to_num(price - 20.0) / 5.0 + (city == "oslo") + visits / 30.0
    basket = 10.0 + 3.0 * signal_ + rng.normal(0.0, 0.5, n)
    basket[rng.random(n) < 0.2] = np.nan  # a task labelled in 80 % of the rows
    frame = pd.DataFrame(
        {
            "price": price,
            "city": city,
            "visits": visits,
            "bought": (signal_ + rng.normal(0.0, 0.5, n) > 0.8).astype(int),
            "basket": basket,
        }
    )
    frame.to_csv(path, index=False)


RECIPE = {
    "name": "tiny_csv_resume",
    "seed": 3,
    "data": {
        "name": "csv",
        "path": "shop.csv",  # relative to the recipe's folder
        "tasks": {"bought": "binary", "basket": {"kind": "regression", "standardize": True}},
        "features": {"price": "numeric", "city": "categorical", "visits": "numeric"},
        "shuffle_buffer": 48,
    },
    "architecture": {"name": "hard_sharing", "trunk": [8], "tower_units": [4], "dropout": 0.2},
    "balancer": "dwa+pcgrad",
    "training": {"epochs": 3, "batch_size": BATCH, "optimizer": {"name": "adam", "learning_rate": 0.01}},
    "baselines": {"epochs": 1},
    "distribute": {"checkpoint_every": 2},
    "export": {"enabled": False},
}


def _recipe(directory: Path, extra: dict | None = None, name: str = "shop.yaml") -> Path:
    _write_csv(directory / "shop.csv")
    path = directory / name
    path.write_text(yaml.safe_dump({**RECIPE, **(extra or {})}))
    return path


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run, in this process."""
    directory = tmp_path_factory.mktemp("reference")
    out = directory / "run"
    assert main(["--quiet", "train", str(_recipe(directory)), "--output", str(out)]) == 0
    return out


def _steps_per_epoch(run_dir: Path) -> int:
    rows = json.loads((run_dir / "data.json").read_text())["rows"]["train"]
    assert rows > RECIPE["data"]["shuffle_buffer"] * 2  # several shuffle blocks per pass
    return -(-rows // BATCH)


def test_interrupted_csv_run_resumes_to_the_same_weights(tmp_path, reference, monkeypatch, capsys):
    recipe, out = _recipe(tmp_path), tmp_path / "run"
    steps = _steps_per_epoch(reference)
    stop_at = (
        steps + 3 if (steps + 3) % 2 else steps + 4
    )  # odd: mid-epoch 2, one step after a checkpoint (every 2)
    original = checkpoint_lib.TrainingCheckpoint.on_train_batch_end
    seen = {"steps": 0}

    def interrupt(self, batch, logs=None):
        original(self, batch, logs)
        seen["steps"] += 1
        if seen["steps"] == stop_at:
            raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint_lib.TrainingCheckpoint, "on_train_batch_end", interrupt)
    args = ["--quiet", "train", str(recipe), "--output", str(out)]
    assert main(args) == 130
    assert "--resume" in capsys.readouterr().err
    assert not (out / "model.keras").exists()
    state = json.loads(max((out / "backup").glob("ckpt-*/state.json")).read_text())
    assert state["step"] == stop_at - 1 and not state["finished"]
    monkeypatch.setattr(checkpoint_lib.TrainingCheckpoint, "on_train_batch_end", original)
    assert main([*args, "--resume"]) == 0
    _assert_same_run(out, reference)


def test_killed_csv_run_resumes_to_the_same_weights(tmp_path, reference):
    recipe, out = _recipe(tmp_path), tmp_path / "run"
    script = tmp_path / "slow_cli.py"
    script.write_text(SLOW_CLI)
    command = [sys.executable, str(script), "--quiet", "train", str(recipe), "--output", str(out)]
    log = (tmp_path / "killed.log").open("w")
    process = subprocess.Popen(command, env=_env(), stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        _wait_for(lambda: any((out / "backup").glob("ckpt-*")), process, 120, "first checkpoint")
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        _kill(process)
        log.close()
    assert process.returncode == -signal.SIGKILL
    state = json.loads(max((out / "backup").glob("ckpt-*/state.json")).read_text())
    assert not state["finished"] and 0 < state["step"] < RECIPE["training"]["epochs"] * _steps_per_epoch(
        reference
    )
    resumed = subprocess.run(
        [sys.executable, "-m", "mtl_keras.cli", "train", str(recipe), "--output", str(out), "--resume"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "Resuming from" in resumed.stderr
    _assert_same_run(out, reference)


def test_evaluate_rereads_the_streamed_test_split(reference, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # the recipe's data path must not depend on the working directory
    capsys.readouterr()
    assert main(["evaluate", str(reference)]) == 0
    printed = dict(line.split() for line in capsys.readouterr().out.strip().splitlines())
    report = json.loads((reference / "report.json").read_text())
    compared = 0
    for task, entry in report["tasks"].items():
        for metric, value in entry["multi_task"].items():
            key = f"{task}_{metric}"
            if key in printed and value is not None:
                np.testing.assert_allclose(float(printed[key]), value, rtol=1e-4, err_msg=key)
                compared += 1
    assert compared >= 2, (printed, report["tasks"])


def test_tune_searches_over_the_csv_recipe(tmp_path, capsys):
    search = {
        "training": {"epochs": 1, "batch_size": BATCH, "steps_per_epoch": 2},
        "search": {
            "tuner": "random",
            "max_trials": 2,
            "objective": {"kind": "delta_m"},
            "space": {"training.optimizer.learning_rate": {"log_float": [1.0e-3, 1.0e-2]}},
        },
    }
    recipe, out = _recipe(tmp_path, search, "search.yaml"), tmp_path / "search"
    assert main(["--quiet", "tune", str(recipe), "--output", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert [t["trial_id"] for t in results["trials"]] == ["0", "1"]
    for trial in results["trials"]:
        assert trial["status"] == "COMPLETED" and np.isfinite(trial["objective"])
        assert set(trial["validation"]) == {"bought", "basket"}
    assert yaml.safe_load((out / "best.yaml").read_text())["data"]["name"] == "csv"
