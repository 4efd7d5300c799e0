"""`mtl-keras train --seeds N` end to end on a toy with a deliberately conflicting task, and the composite
export that serves that task from its single-task network.

The toy: a = w·x, b = 2 w·x and c = v·x (v ⟂ w) through a hard-sharing trunk of one linear unit. Each
single-task network fits its own task exactly; the shared unit can carry one direction only, which the
two tasks along w (b with 4× the loss scale) take, so c is hurt on every seed and a / b are not.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from mtl_keras import cli
from mtl_keras.recipes import RecipeError, load_recipe

RECIPE = """\
name: seeds_toy
data:
  name: csv
  path: {path}
  tasks: {{a: {{kind: regression}}, b: {{kind: regression}}, c: {{kind: regression}}}}
  split: {{validation: 0.2, test: 0.2}}
  features: {{{features}}}
architecture: {{name: hard_sharing, trunk: [1], tower_units: [], activation: linear}}
training:
  epochs: 4
  batch_size: 32
  optimizer: {{name: adam, learning_rate: 0.05}}
export: {{base_dir: {export}}}
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path, str]:
    folder = tmp_path_factory.mktemp("seeds")
    rng = np.random.default_rng(0)
    n = 400
    x = rng.normal(size=(n, 6))
    w, v = x[:, 0] + x[:, 1], x[:, 3] - x[:, 4]
    labels = np.stack([w, 2 * w, v], axis=1) + 0.1 * rng.normal(size=(n, 3))
    header = ",".join([f"x{i}" for i in range(6)] + ["a", "b", "c"])
    rows = [",".join(f"{value:.5f}" for value in row) for row in np.concatenate([x, labels], axis=1)]
    (folder / "toy.csv").write_text(header + "\n" + "\n".join(rows) + "\n")
    features = ", ".join(f"x{i}: numeric" for i in range(6))
    recipe = folder / "toy.yaml"
    recipe.write_text(RECIPE.format(path=folder / "toy.csv", features=features, export=folder / "exported"))
    out = folder / "run"
    import contextlib
    import io

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert cli.main(["--quiet", "train", str(recipe), "--seeds", "3", "-o", str(out)]) == 0
    return recipe, out, printed.getvalue()


def test_the_conflicting_task_is_hurt_on_three_seeds(trained):
    _, out, printed = trained
    report = json.loads((out / "report.json").read_text())
    assert report["seeds"] == [0, 1, 2]
    assert sorted(report["runs"]) == ["seed_0", "seed_1", "seed_2"]
    verdicts = report["verdicts"]
    assert verdicts["c"]["verdict"] == "hurts" and verdicts["c"]["seeds"] == 3
    assert verdicts["c"]["metric"] == "mse" and verdicts["c"]["p_value"] < 0.05
    assert all(verdicts[t]["verdict"] != "hurts" for t in ("a", "b"))
    # The verdict rests on the seeds' own reports: the same values, in seed order.
    for seed, (multi, single) in enumerate(
        zip(verdicts["c"]["multi_task"], verdicts["c"]["single_task"], strict=True)
    ):
        own = json.loads((out / f"seed_{seed}" / "report.json").read_text())["tasks"]["c"]
        assert (own["multi_task"]["mse"], own["single_task"]["mse"]) == (multi, single)
    assert report["serve_from"] == {"a": "multi_task", "b": "multi_task", "c": "single_task"}
    assert "hurts: serve from its single-task model" in printed and "seeds: 3" in printed
    assert "| c | mse |" in (out / "report.md").read_text()


def _signature_inputs(signature, rows: np.ndarray) -> dict[str, tf.Tensor]:
    _, specs = signature.structured_input_signature
    return {name: tf.constant(rows[:, int(name[1:])], dtype=spec.dtype) for name, spec in specs.items()}


def test_the_export_serves_each_task_from_its_chosen_model(trained):
    recipe, out, _ = trained
    base = Path(load_recipe(recipe).export.base_dir)
    loaded = tf.saved_model.load(str(base / "1"))
    multi = keras.models.load_model(out / "seed_0" / "model.keras")
    single = keras.models.load_model(out / "seed_0" / "single_task" / "model.keras")
    rows = np.random.default_rng(1).normal(size=(5, 6)).astype("float32")
    features = {f"x{i}": rows[:, i : i + 1] for i in range(6)}
    expected_multi, expected_single = multi.predict(features, verbose=0), single.predict(features, verbose=0)
    for task, expected in (("a", expected_multi), ("b", expected_multi), ("c", expected_single)):
        served = loaded.signatures[f"predict_{task}"](
            **_signature_inputs(loaded.signatures[f"predict_{task}"], rows)
        )
        np.testing.assert_allclose(served[task].numpy(), expected[task], rtol=1e-5, atol=1e-6)
    everything = loaded.signatures["serving_default"](
        **_signature_inputs(loaded.signatures["serving_default"], rows)
    )
    np.testing.assert_allclose(everything["c"].numpy(), expected_single["c"], rtol=1e-5, atol=1e-6)
    assert not np.allclose(expected_multi["c"], expected_single["c"], atol=1e-3)  # the choice matters
    # `mtl-keras export RUN` rebuilds the same composite as the next version; `--check` passes on it.
    assert cli.main(["--quiet", "export", str(out)]) == 0
    again = tf.saved_model.load(str(base / "2"))
    c = again.signatures["predict_c"](**_signature_inputs(again.signatures["predict_c"], rows))["c"]
    np.testing.assert_allclose(c.numpy(), expected_single["c"], rtol=1e-5, atol=1e-6)
    assert cli.main(["--quiet", "export", "--check", str(base / "2")]) == 0


def test_a_seeds_run_directory_is_named_by_evaluate(trained, capsys):
    _, out, _ = trained
    assert cli.main(["evaluate", str(out)]) != 0
    assert (
        f"is a run over several seeds; name one of its runs, e.g. {out / 'seed_0'}" in capsys.readouterr().err
    )


def test_seeds_need_the_single_task_networks(trained):
    recipe, _, _ = trained
    with pytest.raises(RecipeError, match=r"seeds.*baselines\.single_task"):
        load_recipe(recipe, ["seeds=2", "baselines.single_task=false"])
    with pytest.raises(RecipeError, match="seeds"):
        load_recipe(recipe, ["seeds=0"])
