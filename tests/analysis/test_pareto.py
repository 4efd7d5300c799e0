"""`mtl-keras pareto` on a 2-task toy with a known trade-off, and its pieces: preference vectors, the
non-dominated filter (against a brute-force check) and the point recipes.

The toy: a = w·x and c = v·x (v ⟂ w) through a hard-sharing trunk of one linear unit: the unit can carry
one direction, so moving the preference from a to c trades a's error for c's, monotonically.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from mtl_keras import cli
from mtl_keras.analysis.pareto import front_tasks, non_dominated, point_recipe, preferences
from mtl_keras.recipes import RecipeError, load_recipe

RECIPE = """\
name: pareto_toy
data:
  name: csv
  path: {path}
  tasks: {{a: {{kind: regression}}, c: {{kind: regression}}}}
  split: {{validation: 0.2, test: 0.2}}
  features: {{{features}}}
architecture: {{name: hard_sharing, trunk: [1], tower_units: [], activation: linear}}
training:
  epochs: 4
  batch_size: 32
  optimizer: {{name: adam, learning_rate: 0.05}}
"""


@pytest.fixture(scope="module")
def front(tmp_path_factory) -> tuple[Path, Path, dict, str]:
    folder = tmp_path_factory.mktemp("pareto")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 6))
    labels = np.stack([x[:, 0] + x[:, 1], x[:, 3] - x[:, 4]], axis=1) + 0.1 * rng.normal(size=(400, 2))
    header = ",".join([f"x{i}" for i in range(6)] + ["a", "c"])
    rows = [",".join(f"{v:.5f}" for v in row) for row in np.concatenate([x, labels], axis=1)]
    (folder / "toy.csv").write_text(header + "\n" + "\n".join(rows) + "\n")
    recipe = folder / "toy.yaml"
    features = ", ".join(f"x{i}: numeric" for i in range(6))
    recipe.write_text(RECIPE.format(path=folder / "toy.csv", features=features))
    out = folder / "front"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert cli.main(["--quiet", "pareto", str(recipe), "--points", "3", "-o", str(out)]) == 0
    return recipe, out, json.loads((out / "front.json").read_text()), printed.getvalue()


def test_the_front_is_monotone_spans_the_preferences_and_is_non_dominated(front):
    _, out, payload, printed = front
    assert payload["tasks"] == ["a", "c"] and payload["method"] == "linear"
    assert payload["metrics"]["a"] == {"name": "mse", "higher_is_better": False}
    points = payload["points"]
    assert [p["preference"] for p in points] == [
        {"a": 1.0, "c": 0.0},
        {"a": 0.5, "c": 0.5},
        {"a": 0.0, "c": 1.0},
    ]
    a = [p["validation"]["a"] for p in points]
    c = [p["validation"]["c"] for p in points]
    assert a[0] < a[1] < a[2] and c[0] > c[1] > c[2]  # less weight on a: a worse, c better
    assert all(p["non_dominated"] for p in points)
    assert set(payload["single_task"]) == {"validation", "test"}
    assert (out / "front.png").stat().st_size > 0
    assert "Pareto front (linear) of pareto_toy" in printed and "single-task" in printed


def test_a_point_recipe_reproduces_its_metrics(front, tmp_path):
    _, _, payload, _ = front
    point = payload["points"][1]
    run = tmp_path / "run"
    args = ["--quiet", "train", point["recipe"], "-o", str(run)]
    args += ["--set", "baselines.single_task=false", "--set", "export.enabled=false"]
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli.main(args) == 0
    report = json.loads((run / "report.json").read_text())
    for task in ("a", "c"):
        assert report["tasks"][task]["multi_task"]["mse"] == pytest.approx(point["test"][task], rel=1e-5)


def test_preferences_cover_the_simplex():
    assert preferences(2, 5) == [[1.0, 0.0], [0.75, 0.25], [0.5, 0.5], [0.25, 0.75], [0.0, 1.0]]
    three = preferences(3, 10)  # the lattice {k/3}: 10 vectors
    assert len(three) == 10 and all(abs(sum(p) - 1) < 1e-12 for p in three)
    assert [1.0, 0.0, 0.0] in three and [1 / 3, 1 / 3, 1 / 3] in three
    assert len(preferences(3, 9)) == 6  # the largest lattice with at most 9 vectors: {k/2}


def test_non_dominated_agrees_with_a_brute_force_check():
    rng = np.random.default_rng(3)
    values = rng.integers(0, 4, size=(12, 2)).astype(float)
    values[5] = np.nan
    expected = []
    for i, row in enumerate(values):
        others = [values[j] for j in range(len(values)) if j != i and np.all(np.isfinite(values[j]))]
        beaten = any(all(o >= row) and any(o > row) for o in others)
        expected.append(bool(np.all(np.isfinite(row)) and not beaten))
    assert non_dominated(values) == expected
    assert not non_dominated(values)[5]
    assert any(itertools.compress(range(12), expected))


def test_point_recipes_and_bad_tasks(front):
    recipe_path = front[0]
    recipe = load_recipe(recipe_path)
    linear = point_recipe(recipe, ["a", "c"], ["a", "c"], [0.25, 0.75], "linear")
    assert (linear.tasks["a"].weight, linear.tasks["c"].weight) == (0.25, 0.75)
    assert linear.balancer.weighting is None
    stch = point_recipe(recipe, ["a", "c"], ["a", "c"], [0.25, 0.75], "stch")
    assert stch.balancer.weighting.name == "stch"
    assert stch.balancer.weighting.options["preference"] == [0.25, 0.75]
    assert stch.balancer.weighting.options["warmup_epochs"] == 1  # max(1, 4 epochs // 5)
    epo = point_recipe(recipe, ["a", "c"], ["a", "c"], [0.25, 0.75], "epo")
    assert epo.balancer.weighting is None and epo.balancer.aggregator.name == "epo"
    assert epo.balancer.aggregator.options["preference"] == [0.25, 0.75]
    assert (epo.tasks["a"].weight, epo.tasks["c"].weight) == (None, None)
    with pytest.raises(RecipeError, match="unknown task"):
        front_tasks("a,typo", ["a", "c"])
    with pytest.raises(RecipeError, match="at least two tasks"):
        front_tasks("a", ["a", "c"])
