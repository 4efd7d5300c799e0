"""Recipe ``distill``: the single-task networks are trained first and distilled into the multi-task model;
the report records it and Δm stays against those networks; bad settings are recipe errors naming the key."""

import json

import keras
import numpy as np
import pytest

from mtl_keras.experiments import prepare, run
from mtl_keras.recipes import RecipeError, validate

TINY = {
    "name": "distill",
    "data": {"name": "census", "max_rows": 400},
    "architecture": {"name": "mmoe", "num_experts": 2, "expert_units": [8], "tower_units": [4]},
    "training": {"epochs": 1, "batch_size": 64},
    "distill": {"from": "baselines", "weight": 0.5, "temperature": 2.0},
    "export": {"enabled": False},
}


@pytest.fixture(scope="module")
def distilled(tmp_path_factory):
    directory = tmp_path_factory.mktemp("distill")
    prepared = prepare(validate(TINY))
    report = run(prepared, directory)
    return prepared, report, directory


def test_a_distilled_run_records_it_and_keeps_delta_m_against_the_single_task_networks(distilled):
    _, _, directory = distilled
    written = json.loads((directory / "report.json").read_text())
    assert written["distill"] == {
        "from": "baselines",
        "weight": 0.5,
        "temperature": 2.0,
        "temperature_squared": True,
    }
    assert "distillation: on, from the single-task networks" in (directory / "report.md").read_text()
    assert "weight 0.5, temperature 2.0" in (directory / "report.md").read_text()
    assert written["delta_m"] is not None
    for entry in written["tasks"].values():
        assert entry["single_task"]  # Δm's reference: the single-task networks' test metrics
    assert json.loads((directory / "recipe.json").read_text())["distill"]["from"] == "baselines"


def test_the_teachers_are_the_trained_single_task_networks(distilled):
    prepared, _, directory = distilled
    saved = keras.models.load_model(directory / "single_task" / "model.keras")
    x, _ = next(iter(prepared.dataset.batches("test", 32)))
    teacher, want = prepared.baseline(x, training=False), saved(x, training=False)
    for task in want:
        np.testing.assert_allclose(np.asarray(teacher[task]), np.asarray(want[task]), rtol=1e-6, atol=1e-7)
    history = json.loads((directory / "history.json").read_text())
    # The validation objective holds the distillation term: more than the sum of the task losses.
    tasks = [t.name for t in prepared.tasks]
    assert history["val_loss"][-1] > sum(history[f"val_{t}_loss"][-1] for t in tasks) + 1e-4


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"baselines": {"single_task": False}},
            r"^distill: the teachers are the single-task networks; set baselines.single_task: true",
        ),
        ({"distill": {"temperature": 0}}, r"^distill.temperature: expected a positive number, got 0$"),
        ({"distill": {"weight": -0.1}}, r"^distill.weight: expected a non-negative number, got -0.1$"),
        (
            {"distill": {"from": "ensemble"}},
            r"^distill.from: expected one of \['baselines'\], got 'ensemble'",
        ),
        (
            {"distill": {"temprature": 2}},
            r"^distill.temprature: unknown key; expected one of \['from', 'temperature', 'weight'\]. Did you mean 'temperature'\?$",
        ),
    ],
)
def test_bad_distill_settings_are_errors_naming_the_key(change, message):
    with pytest.raises(RecipeError, match=message):
        validate({**TINY, **change})


def test_reused_single_task_networks_are_loaded_as_the_teachers(distilled):
    _, _, directory = distilled
    again = prepare(validate(TINY))  # same recipe and data: the cached single-task results are reused
    run(again, directory)
    saved = keras.models.load_model(directory / "single_task" / "model.keras")
    x, _ = next(iter(again.dataset.batches("test", 32)))
    teacher, want = again.baseline(x, training=False), saved(x, training=False)
    for task in want:
        np.testing.assert_allclose(np.asarray(teacher[task]), np.asarray(want[task]), rtol=1e-6, atol=1e-7)
