"""`mtl-keras affinity` end to end on a tiny CSV recipe of known structure (a = f + noise, b = 2 f + noise,
c = g + noise): affinity.json's schema, the heat-map, the printed table, lookahead grouping a with b, and
pairwise training of a subset of pairs with its cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mtl_keras import cli
from mtl_keras.analysis.pairwise import parse_pairs
from mtl_keras.analysis.task_subset import TaskSubset
from mtl_keras.experiments.preparation import load_data
from mtl_keras.recipes import RecipeError, load_recipe

RECIPE = """\
name: affinity_toy
data:
  name: csv
  path: {path}
  tasks: {{a: {{kind: regression}}, b: {{kind: regression}}, c: {{kind: regression}}}}
  split: {{validation: 0.2, test: 0.2}}
  features: {{{features}}}
architecture: {{name: hard_sharing, trunk: [32], tower_units: []}}
training:
  epochs: 3
  batch_size: 32
  optimizer: {{name: sgd, learning_rate: 0.05}}
"""


@pytest.fixture(scope="module")
def recipe(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("affinity")
    rng = np.random.default_rng(0)
    n = 600
    x = rng.normal(size=(n, 8))
    f = np.sin(x[:, 0]) + x[:, 1] * x[:, 2]
    g = np.cos(2 * x[:, 5]) - x[:, 6] * x[:, 7]
    labels = np.stack([f, 2 * f, g], axis=1) + 0.1 * rng.normal(size=(n, 3))
    header = ",".join([f"x{i}" for i in range(8)] + ["a", "b", "c"])
    rows = [",".join(f"{v:.5f}" for v in row) for row in np.concatenate([x, labels], axis=1)]
    (folder / "toy.csv").write_text(header + "\n" + "\n".join(rows) + "\n")
    features = ", ".join(f"x{i}: numeric" for i in range(8))
    path = folder / "toy.yaml"
    path.write_text(RECIPE.format(path=folder / "toy.csv", features=features))
    return path


def check_schema(payload: dict, method: str) -> None:
    assert payload["tasks"] == ["a", "b", "c"]
    assert payload["method"] == method
    matrix = payload["matrix"]
    assert len(matrix) == 3 and all(len(row) == 3 for row in matrix)
    assert all(v is None or isinstance(v, float) for row in matrix for v in row)
    settings = payload["settings"]
    assert settings["method"] == method and settings["recipe"] == "affinity_toy"
    groups = payload["groups"]
    assert set(groups) >= {"max_groups", "method", "score", "groups", "served_by", "predicted_gain"}
    assert sorted(groups["served_by"]) == ["a", "b", "c"]
    for group in groups["groups"]:
        assert set(group["serves"]) <= set(group["tasks"])
        assert sorted(group["predicted_gain"]) == sorted(group["serves"])


def test_lookahead_command_groups_the_related_tasks(recipe, tmp_path, capsys):
    out = tmp_path / "lookahead"
    assert (
        cli.main(["--quiet", "affinity", str(recipe), "--every", "2", "--groups", "2", "-o", str(out)]) == 0
    )
    payload = json.loads((out / "affinity.json").read_text())
    check_schema(payload, "lookahead")
    assert (out / "affinity.png").stat().st_size > 0
    z = np.array(payload["matrix"], dtype=float)
    assert z[0, 1] > z[2, 1] and z[1, 0] > z[2, 0]
    served = payload["groups"]["served_by"]
    assert served["a"] == served["b"] != served["c"]
    assert payload["groups"]["groups"][served["a"]]["tasks"] == ["a", "b"]
    printed = capsys.readouterr().out
    assert "affinity of task i onto task j" in printed and "group 1: a + b" in printed


def test_pairwise_command_trains_the_chosen_pairs_and_reuses_them(recipe, tmp_path, capsys):
    out = tmp_path / "pairwise"
    args = ["--quiet", "affinity", str(recipe), "--method", "pairwise", "--pairs", "b:a", "-o", str(out)]
    args += ["--set", "training.epochs=1"]
    assert cli.main(args) == 0
    payload = json.loads((out / "affinity.json").read_text())
    check_schema(payload, "pairwise")
    cached = {p.name: json.loads(p.read_text()) for p in (out / "pairwise").glob("*.json")}
    assert sorted(cached) == ["alone.json", "pair_a__b.json"]
    alone, pair = cached["alone.json"]["validation"], cached["pair_a__b.json"]["validation"]
    # MSE: lower is better, so the gain is (alone − pair) / alone
    matrix = payload["matrix"]
    assert matrix[0][1] == pytest.approx((alone["b"] - pair["b"]) / alone["b"])  # a onto b
    assert matrix[1][0] == pytest.approx((alone["a"] - pair["a"]) / alone["a"])  # b onto a
    assert matrix[0][0] == 0.0 and matrix[0][2] is None and matrix[2][1] is None
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "pairwise").glob("*.json")}
    assert cli.main(args) == 0  # nothing trained again
    assert stamps == {p.name: p.stat().st_mtime_ns for p in (out / "pairwise").glob("*.json")}


def test_bad_arguments_are_reported_before_training(recipe, tmp_path, capsys):
    out = tmp_path / "bad"
    code = cli.main(["affinity", str(recipe), "--method", "pairwise", "--pairs", "a:z", "-o", str(out)])
    assert code == 2 and "unknown task 'z'" in capsys.readouterr().err
    assert not out.exists()
    assert cli.main(["affinity", str(recipe), "--groups", "0", "-o", str(out)]) == 2
    assert "--groups" in capsys.readouterr().err


def test_parse_pairs_and_task_subset(recipe):
    assert parse_pairs(None, ["a", "b", "c"]) == [("a", "b"), ("a", "c"), ("b", "c")]
    assert parse_pairs("c:a, a:c,b:c", ["a", "b", "c"]) == [("a", "c"), ("b", "c")]
    with pytest.raises(RecipeError, match="two different tasks"):
        parse_pairs("a:a", ["a", "b"])
    dataset = load_data(load_recipe(str(recipe)))
    subset = TaskSubset(dataset, ["c", "a"])
    assert subset.task_names == ["a", "c"]
    _, y = next(iter(subset.batches("validation", 8)))
    assert sorted(y) == ["a", "c"]
    np.testing.assert_array_equal(subset.label_arrays("test")["c"], dataset.label_arrays("test")["c"])


PAIRWISE_RECIPE = """\
name: pairwise_toy
data:
  name: csv
  path: {path}
  tasks: {{a: {{kind: regression}}, b: {{kind: regression}}, c: {{kind: regression}}}}
  split: {{validation: 0.25, test: 0.25}}
  features: {{{features}}}
architecture: {{name: hard_sharing, trunk: [2], tower_units: [], activation: tanh}}
training:
  epochs: 8
  batch_size: 32
  optimizer: {{name: adam, learning_rate: 0.02}}
"""


def test_pairwise_affinity_groups_the_tasks_of_one_function_and_shows_the_hurt_one(tmp_path, capsys):
    # a and b: the same linear function with independent noise; c: an unrelated one. Two shared units:
    # a and b share them well, c competes with either for the capacity.
    rng = np.random.default_rng(0)
    n = 600
    x = rng.normal(size=(n, 8))
    f = x[:, 0] + x[:, 1] - x[:, 2]
    g = x[:, 5] - x[:, 6] + x[:, 7]
    labels = np.stack([f, f, g], axis=1) + 0.5 * rng.normal(size=(n, 3))
    header = ",".join([f"x{i}" for i in range(8)] + ["a", "b", "c"])
    rows = [",".join(f"{v:.5f}" for v in row) for row in np.concatenate([x, labels], axis=1)]
    (tmp_path / "toy.csv").write_text(header + "\n" + "\n".join(rows) + "\n")
    features = ", ".join(f"x{i}: numeric" for i in range(8))
    recipe = tmp_path / "toy.yaml"
    recipe.write_text(PAIRWISE_RECIPE.format(path=tmp_path / "toy.csv", features=features))
    out = tmp_path / "out"
    args = ["--quiet", "affinity", str(recipe), "--method", "pairwise", "--groups", "2", "-o", str(out)]
    assert cli.main(args) == 0
    payload = json.loads((out / "affinity.json").read_text())
    z = np.array(payload["matrix"], dtype=float)  # z[i, j]: affinity of task i onto task j
    assert z[0, 1] > z[2, 1] and z[1, 0] > z[2, 0], z  # a and b help each other more than c helps them
    assert z[2, 0] < 0 and z[0, 2] < 0 and z[1, 2] < 0, z  # sharing with c hurts a, and c is hurt
    served = payload["groups"]["served_by"]
    assert served["a"] == served["b"] != served["c"], payload["groups"]
