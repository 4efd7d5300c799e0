"""Per-task data sets (`per_task` / `MixedDataset`): each task's own source, batches mixed by proportional,
temperature, round-robin or curriculum sampling, other tasks' labels masked, exact resume, training with a
gradient balancer, two replicas, and `mtl-keras train` of a per_task recipe with export."""

from __future__ import annotations

import json

import helpers
import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
import yaml

from mtl_keras import balancers, builders
from mtl_keras.data import from_dataframe, per_task, temperature_probabilities
from mtl_keras.distribute.stream import StreamSpec

SPLIT = {"validation": 0.2, "test": 0.2, "seed": 0}


def _frame_a(n: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    return pd.DataFrame(
        {
            "row": np.arange(n, dtype=np.float64),
            "x": x,
            "city": rng.choice(["paris", "oslo"], n),
            "a": (x + 0.3 * rng.normal(size=n) > 0).astype(np.float64),
        }
    )


def _frame_b(n: int = 100, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=n)
    return pd.DataFrame(
        {
            "row": 1000.0 + np.arange(n, dtype=np.float64),
            "x": rng.normal(size=n),
            "z": z,
            "b": 3.0 * z + 0.1 * rng.normal(size=n),
        }
    )


@pytest.fixture(scope="module")
def sources():
    a = from_dataframe(_frame_a(), {"a": "binary"}, features={"row": "numeric"}, split=SPLIT, name="A")
    b = from_dataframe(_frame_b(), {"b": "regression"}, features={"row": "numeric"}, split=SPLIT, name="B")
    return {"a": a, "b": b}


def _task_counts(batches) -> np.ndarray:
    counts = np.zeros(2, np.int64)
    for _, y in batches:
        counts += [int(np.sum(~np.isnan(y[t].numpy()))) for t in ("a", "b")]
    return counts


@pytest.mark.parametrize("sampling", ["proportional", "temperature"])
def test_task_frequencies_match_the_sampling_probabilities(sources, sampling):
    mixed = per_task(sources, sampling=sampling, temperature=3.0)
    sizes = [sources[t].num_examples("train") for t in ("a", "b")]
    assert mixed.num_examples("train") == sum(sizes)  # one epoch: the sum of the sources' training rows
    expected = np.array(sizes, float) / sum(sizes)
    if sampling == "temperature":
        expected = np.array(sizes, float) ** (1 / 3.0)
        expected /= expected.sum()
        np.testing.assert_allclose(expected, temperature_probabilities(sizes, 3.0))
    spec = StreamSpec.for_size(mixed.num_examples("train"), 64, seed=3)
    # The task draws alone over many steps: frequencies within sampling noise (4000 steps x 64 rows).
    counts = mixed.consumed(spec, 4000)
    np.testing.assert_allclose(counts / counts.sum(), expected, atol=0.005)
    # The batches themselves take exactly the counted rows of each task.
    batches = list(mixed.training_stream(spec, epochs=3))
    assert len(batches) == 3 * spec.steps_per_epoch
    assert all(int(b[1]["a"].shape[0]) == 64 for b in batches)
    np.testing.assert_array_equal(_task_counts(batches), mixed.consumed(spec, len(batches)))


def test_round_robin_takes_tasks_in_turn_and_every_row_once_per_pass(sources):
    mixed = per_task(sources, sampling="round_robin")
    spec = StreamSpec.for_size(mixed.num_examples("train"), 30, seed=0)
    batches = list(mixed.training_stream(spec, epochs=2))
    labelled_a = np.concatenate([~np.isnan(b[1]["a"].numpy()) for b in batches])
    labelled_b = np.concatenate([~np.isnan(b[1]["b"].numpy()) for b in batches])
    rows = np.concatenate([b[0]["row"].numpy().ravel() for b in batches])
    np.testing.assert_array_equal(labelled_a, np.arange(len(rows)) % 2 == 0)
    np.testing.assert_array_equal(labelled_b, ~labelled_a)
    # Each task's rows: its training rows in one shuffled pass, then the next pass.
    train_a = np.sort(
        np.concatenate([b[0]["row"].numpy().ravel() for b in sources["a"].batches("train", 64)])
    )
    train_b = np.sort(
        np.concatenate([b[0]["row"].numpy().ravel() for b in sources["b"].batches("train", 64)])
    )
    np.testing.assert_array_equal(np.sort(rows[labelled_a][: len(train_a)]), train_a)
    np.testing.assert_array_equal(np.sort(rows[labelled_b][: len(train_b)]), train_b)
    second = rows[labelled_b][len(train_b) : 2 * len(train_b)]
    np.testing.assert_array_equal(np.sort(second), train_b)
    assert not np.array_equal(second, rows[labelled_b][: len(train_b)])  # a new order on the next pass


def test_curriculum_moves_from_start_to_end_weights(sources):
    mixed = per_task(sources, sampling="curriculum", start={"a": 1.0}, end={"a": 1.0, "b": 3.0}, epochs=2)
    spec = StreamSpec.for_size(mixed.num_examples("train"), 32, seed=0)
    steps = spec.steps_per_epoch
    batches = list(mixed.training_stream(spec, epochs=6))
    first = _task_counts(batches[:1])
    assert first[1] == 0 and first[0] == 32  # step 0: the start weights, task b left out
    late = _task_counts(batches[2 * steps :])  # after 2 epochs: the end weights, p_b = 0.75
    assert abs(late[1] / late.sum() - 0.75) < 0.05
    middle = _task_counts(batches[steps - 3 : steps + 3])  # around α = 0.5: p_b = 0.375
    assert 0.2 < middle[1] / middle.sum() < 0.55
    np.testing.assert_allclose(mixed.probabilities(steps, steps), [0.625, 0.375])


def test_rows_of_one_source_have_the_other_tasks_labels_and_columns_missing(sources):
    frame_a, frame_b = _frame_a(), _frame_b()
    mixed = per_task(sources)
    assert mixed.features == {"row": "numeric", "x": "numeric", "city": "categorical", "z": "numeric"}
    spec = StreamSpec.for_size(mixed.num_examples("train"), 50, seed=0)
    for x, y in mixed.training_stream(spec, epochs=1):
        rows = x["row"].numpy().ravel().astype(int)
        from_a = rows < 1000
        assert np.all(np.isnan(y["b"].numpy()[from_a])) and np.all(np.isnan(y["a"].numpy()[~from_a]))
        np.testing.assert_array_equal(y["a"].numpy()[from_a], frame_a["a"].to_numpy()[rows[from_a]])
        np.testing.assert_allclose(
            x["z"].numpy().ravel()[~from_a], frame_b["z"].to_numpy()[rows[~from_a] - 1000], rtol=1e-6
        )
        assert np.all(np.isnan(x["z"].numpy()[from_a]))
        assert set(x["city"].numpy().ravel()[~from_a]) <= {b""}
        assert set(x["city"].numpy().ravel()[from_a]) <= {b"paris", b"oslo"}
    # Validation: each task's own validation split, labelled for its task only.
    labels = mixed.label_arrays("validation")
    n_a, n_b = (sources[t].num_examples("validation") for t in ("a", "b"))
    assert mixed.num_examples("validation") == n_a + n_b == len(labels["a"])
    assert not np.any(np.isnan(labels["a"][:n_a])) and np.all(np.isnan(labels["a"][n_a:]))
    assert np.all(np.isnan(labels["b"][:n_a])) and not np.any(np.isnan(labels["b"][n_a:]))
    # Merged statistics: x from both sources, pooled exactly.
    x_values = np.concatenate(
        [np.concatenate([b[0]["x"].numpy().ravel() for b in sources[t].batches("train", 64)]) for t in "ab"]
    )
    assert mixed.statistics["x"].count == len(x_values) and mixed.statistics["x"].missing == 0
    np.testing.assert_allclose(mixed.statistics["x"].mean, x_values.astype(np.float64).mean(), rtol=1e-5)
    np.testing.assert_allclose(mixed.statistics["x"].variance, x_values.astype(np.float64).var(), rtol=1e-5)
    assert set(mixed.statistics["city"].top) == {"paris", "oslo"}
    # z only in B: A's rows count as missing, so the model imputes z for them.
    z_stats = mixed.statistics["z"]
    assert z_stats.missing == sources["a"].statistics["x"].count
    assert z_stats.count - z_stats.missing == sources["b"].statistics["z"].present


@pytest.mark.parametrize("sampling", ["temperature", "curriculum"])
def test_training_stream_resumes_exactly_at_any_step(sources, sampling):
    options = {"start": {"b": 1.0}, "epochs": 2} if sampling == "curriculum" else {}
    mixed = per_task(sources, sampling=sampling, **options)
    spec = StreamSpec.for_size(mixed.num_examples("train"), 40, seed=7)

    def ids(stream):
        return [
            np.stack([x["row"].numpy().ravel(), np.nan_to_num(y["a"].numpy(), nan=-1.0), y["b"].numpy()])
            for x, y in stream
        ]

    whole = ids(mixed.training_stream(spec, epochs=3))
    assert len(whole) == 3 * spec.steps_per_epoch
    for k in (1, spec.steps_per_epoch, spec.steps_per_epoch + 3):
        resumed = ids(mixed.training_stream(spec, epochs=3, start_step=k))
        assert len(resumed) == len(whole) - k
        for a, b in zip(whole[k:], resumed, strict=True):
            np.testing.assert_array_equal(a, b)
    other = ids(mixed.training_stream(StreamSpec.for_size(spec.num_examples, 40, seed=8), epochs=1))
    assert not np.array_equal(other[0], whole[0])


def test_bad_sources_and_options_are_value_errors_naming_them(sources):
    b_city = from_dataframe(
        _frame_b().assign(x=lambda f: np.where(f["z"] > 0, "hi", "lo")),
        {"b": "regression"},
        features={"row": "numeric"},
        split=SPLIT,
        name="B2",
    )
    with pytest.raises(ValueError, match=r"Column 'x'.*'A'.*'B2'.*kind 'numeric' vs 'categorical'"):
        per_task({"a": sources["a"], "b": b_city})
    with pytest.raises(ValueError, match=r"Source 'A' of task 'b' has no task 'b'"):
        per_task({"a": sources["a"], "b": sources["a"]})
    with pytest.raises(ValueError, match=r"Unknown sampling 'uniform'"):
        per_task(sources, sampling="uniform")
    with pytest.raises(ValueError, match=r"Unknown task 'c' in `start`"):
        per_task(sources, sampling="curriculum", start={"c": 1.0}, epochs=1)
    with pytest.raises(ValueError, match=r"`epochs`.*positive integer"):
        per_task(sources, sampling="curriculum", start={"a": 1.0})
    with pytest.raises(ValueError, match=r"`start` is for sampling='curriculum' only"):
        per_task(sources, start={"a": 1.0})
    with pytest.raises(ValueError, match=r"temperature"):
        per_task(sources, sampling="temperature", temperature=0.0)


def _model(mixed, balancer: str = "pcgrad", run_eagerly: bool = False):
    keras.utils.set_random_seed(0)
    model = builders.hard_sharing(mixed.tasks, mixed.input_spec(), trunk=(16,), tower_units=(8,))
    model.compile(keras.optimizers.Adam(1e-2), balancer=balancer, run_eagerly=run_eagerly)
    return model


def _task_losses(model, mixed) -> dict[str, float]:
    results = model.evaluate(mixed.batches("validation", 64), verbose=0, return_dict=True)
    return {t: float(results[f"{t}_loss"]) for t in ("a", "b")}


def test_fit_with_a_gradient_balancer_lowers_both_task_losses(sources):
    mixed = per_task(sources, sampling="temperature")
    spec = StreamSpec.for_size(mixed.num_examples("train"), 32, seed=0)
    model = _model(mixed)
    before = _task_losses(model, mixed)
    model.fit(mixed.training_stream(spec, epochs=8), epochs=1, verbose=0)
    after = _task_losses(model, mixed)
    assert after["a"] < 0.8 * before["a"] and after["b"] < 0.5 * before["b"], (before, after)


BALANCERS = [*balancers.WEIGHTINGS.names(), *balancers.AGGREGATORS.names()]


@pytest.fixture(scope="module")
def curriculum_batches(sources):
    """A curriculum from task a alone: the first batch has no label of task b, later batches mix both."""
    mixed = per_task(sources, sampling="curriculum", start={"a": 1.0}, end={"a": 0.5, "b": 0.5}, epochs=2)
    spec = StreamSpec.for_size(mixed.num_examples("train"), 16, seed=0)
    return mixed, list(mixed.training_stream(spec, epochs=1).take(3))


@pytest.mark.parametrize("balancer", BALANCERS)
def test_every_balancer_trains_on_batches_that_label_one_task(curriculum_batches, balancer):
    mixed, batches = curriculum_batches
    first_x, first_y = batches[0]
    assert np.all(np.isnan(first_y["b"].numpy())) and not np.any(np.isnan(first_y["a"].numpy()))
    model = _model(mixed, balancer, run_eagerly=True)  # the compiled steps are covered by test_masks.py
    tower_b = helpers.tower_values(model, "b")  # b's own tower or its slice of the fused towers
    model.train_on_batch(first_x, first_y)
    for before, after in zip(tower_b, helpers.tower_values(model, "b"), strict=True):
        np.testing.assert_array_equal(before, after)
    for x, y in batches[1:]:
        logs = model.train_on_batch(x, y, return_dict=True)
    for key in ("loss", "a_loss", "b_loss"):
        assert np.isfinite(logs[key]), (key, logs)
    for variable in model.trainable_variables:
        assert np.all(np.isfinite(variable.numpy())), variable.path


def test_two_replicas_give_the_one_device_epoch(sources, mirrored_strategy):
    mixed = per_task(sources, sampling="round_robin")
    spec = StreamSpec.for_size(mixed.num_examples("train"), 32, seed=0)

    def train(strategy):
        with strategy.scope():
            model = _model(mixed)
        history = model.fit(
            mixed.training_stream(spec, epochs=1), steps_per_epoch=spec.steps_per_epoch, epochs=1, verbose=0
        )
        return history.history["loss"][0], [v.numpy() for v in model.trainable_variables]

    loss_one, weights_one = train(tf.distribute.get_strategy())
    loss_two, weights_two = train(mirrored_strategy)
    np.testing.assert_allclose(loss_two, loss_one, rtol=1e-4)
    for a, b in zip(weights_one, weights_two, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4, rtol=0)


def _per_task_recipe(directory) -> dict:
    (directory / "files").mkdir()
    _frame_a(240).drop(columns="row").to_csv(directory / "files" / "clicks.csv", index=False)
    _frame_b(120).drop(columns="row").to_csv(directory / "files" / "spend.csv", index=False)
    (directory / "recipes").mkdir()
    return {
        "name": "mixed",
        "seed": 0,
        "data": {
            "name": "per_task",
            "sampling": "temperature",
            "temperature": 2.0,
            "sources": {
                "a": {"name": "csv", "path": "../files/clicks.csv", "tasks": {"a": "binary"}},
                "b": {"name": "csv", "path": "../files/spend.csv", "tasks": {"b": "regression"}},
            },
        },
        "architecture": {"name": "hard_sharing", "trunk": [16], "tower_units": [8]},
        "balancer": "pcgrad",
        "training": {"epochs": 3, "batch_size": 32, "optimizer": {"name": "adam", "learning_rate": 0.01}},
    }


def test_train_a_per_task_recipe_from_two_csvs_with_export(tmp_path, capsys, monkeypatch):
    from mtl_keras.cli import main

    monkeypatch.chdir(tmp_path)
    recipe = _per_task_recipe(tmp_path)
    (tmp_path / "recipes" / "mixed.yaml").write_text(yaml.safe_dump(recipe))
    train = ["--quiet", "train", "recipes/mixed.yaml", "--output", "runs/mixed", "--set", "training.epochs=1"]
    assert main([*train, "--set", f"export.base_dir={tmp_path / 'export'}"]) == 0
    report = json.loads((tmp_path / "runs" / "mixed" / "report.json").read_text())
    assert set(report["tasks"]) == {"a", "b"}
    for entry in report["tasks"].values():
        assert entry["multi_task"]
    exported = list((tmp_path / "export").iterdir())
    assert exported, "no export written"
    # A source of a task it does not have is a recipe error naming it.
    recipe["data"]["sources"]["b"] = recipe["data"]["sources"]["a"]
    (tmp_path / "recipes" / "bad.yaml").write_text(yaml.safe_dump(recipe))
    capsys.readouterr()
    assert main(["--quiet", "train", "recipes/bad.yaml", "--output", "runs/bad"]) == 2
    assert "no task 'b'" in capsys.readouterr().err


def test_tune_searches_a_per_task_recipe(tmp_path, monkeypatch):
    from mtl_keras.cli import main

    monkeypatch.chdir(tmp_path)
    recipe = _per_task_recipe(tmp_path)
    recipe["training"].update(epochs=1, steps_per_epoch=2)
    recipe["search"] = {
        "tuner": "random",
        "max_trials": 2,
        "objective": {"kind": "delta_m"},
        "space": {"balancer": {"choice": ["mgda", "uncertainty"]}},
    }
    (tmp_path / "recipes" / "search.yaml").write_text(yaml.safe_dump(recipe))
    assert main(["--quiet", "tune", "recipes/search.yaml", "--output", "search"]) == 0
    results = json.loads((tmp_path / "search" / "results.json").read_text())
    assert len(results["trials"]) == 2
    for trial in results["trials"]:
        assert trial["status"] == "COMPLETED" and np.isfinite(trial["objective"]), trial
        assert set(trial["validation"]) == {"a", "b"}
        assert all(np.isfinite(v) for metrics in trial["validation"].values() for v in metrics.values()), (
            trial
        )
    best = yaml.safe_load((tmp_path / "search" / "best.yaml").read_text())
    assert best["data"]["name"] == "per_task" and set(best["data"]["sources"]) == {"a", "b"}
