"""Gate usage of mixture-of-experts models against NumPy, the collapse warnings, the heat-map and the
per-epoch cosine trend plot, and the gate section of a run's report."""

from __future__ import annotations

import numpy as np
import pytest

from mtl_keras.analysis.gates import collapse_warnings, gate_probe, gate_usage, mixtures
from mtl_keras.builders import hard_sharing, mmoe, ple
from mtl_keras.evaluation.plots import TREND_PAIRS, plot_conflict_trend, plot_gates


def _softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def test_mmoe_gate_usage_is_the_mean_softmax_of_each_gate():
    model = mmoe(["a", "b"], 5, num_experts=3, expert_units=(4,), tower_units=())
    x = np.random.default_rng(0).normal(size=(70, 5)).astype("float32")
    batches = [(x[:32], None), (x[32:64], None), (x[64:], None)]
    usage = gate_usage(model, batches)
    assert usage["examples"] == 70
    for task in ("a", "b"):
        kernel, bias = (w.numpy() for w in model.get_layer(f"gate_{task}").weights)
        expected = _softmax(x @ kernel + bias).mean(axis=0)
        np.testing.assert_allclose(usage["mixtures"][f"mixture_{task}"], expected, rtol=1e-5)
    # MMoE's gates read one expert stack; every row sums to 1.
    assert usage["stacks"] == {"mixture_a": 0, "mixture_b": 0}
    assert all(abs(sum(row) - 1) < 1e-5 for row in usage["mixtures"].values())
    assert gate_usage(model, batches, max_batches=1)["examples"] == 32


def test_ple_mixtures_over_different_expert_stacks_are_told_apart():
    model = ple(["a", "b"], 5)
    usage = gate_usage(model, [np.zeros((4, 5), "float32")])
    stacks = usage["stacks"]
    assert len(stacks) == len(mixtures(model)) == 5
    assert len(set(stacks.values())) == 5  # each level's task / shared mixture has its own concatenation
    assert gate_probe(hard_sharing(["a"], 3)) is None
    assert gate_usage(hard_sharing(["a"], 3), [np.zeros((2, 3))]) == {
        "mixtures": {},
        "stacks": {},
        "examples": 0,
    }


def test_collapse_and_unused_experts_are_warned_per_stack():
    usage = {
        "mixtures": {
            "mixture_a": [0.95, 0.045, 0.005],
            "mixture_b": [0.92, 0.075, 0.005],
            "other": [0.95, 0.05],  # another stack: expert 1 is used here
        },
        "stacks": {"mixture_a": 0, "mixture_b": 0, "other": 1},
    }
    warnings = collapse_warnings(usage)
    assert len(warnings) == 3
    assert (
        warnings[0].startswith("experts collapsed: expert 0 takes > 90% of every gate")
        and "mixture_a, mixture_b" in warnings[0]
    )
    assert warnings[1].startswith("expert 2 is never used")
    assert "other" in warnings[2] and "collapsed" in warnings[2]
    # One gate that specialises is not a collapse; expert 2 stays unused.
    usage["mixtures"]["mixture_b"] = [0.2, 0.795, 0.005]
    after = collapse_warnings(usage)
    assert [w.split(":")[0] for w in after] == ["expert 2 is never used", "experts collapsed"]
    assert "other" in after[1]
    assert collapse_warnings(usage, unused=0.001) == after[1:]


def test_gate_heat_map_and_cosine_trend_are_written(tmp_path):
    usage = {"mixtures": {"mixture_a": [0.5, 0.5], "mixture_b": [0.1, 0.9]}, "stacks": {}, "examples": 10}
    assert plot_gates(usage, tmp_path / "gates.png") == str(tmp_path / "gates.png")
    assert (tmp_path / "gates.png").stat().st_size > 0
    assert plot_gates({"mixtures": {}}, tmp_path / "none.png") is None

    history = {"cos_a_b": [0.3, 0.1, -0.2], "conflict_fraction": [0.2, 0.4, 0.6], "loss": [1, 0.9, 0.8]}
    assert plot_conflict_trend(history, ["a", "b"], tmp_path / "trend.png") is not None
    assert plot_conflict_trend({"cos_a_b": [0.3]}, ["a", "b"], tmp_path / "one.png") is None
    assert plot_conflict_trend({"loss": [1.0, 0.5]}, ["a", "b"], tmp_path / "no.png") is None
    names = [f"t{i}" for i in range(6)]  # 15 pairs > TREND_PAIRS: the mean and its band
    many = {f"cos_{a}_{b}": [0.1, 0.2] for i, a in enumerate(names) for b in names[i + 1 :]}
    assert len(many) > TREND_PAIRS
    assert plot_conflict_trend(many, names, tmp_path / "many.png") is not None
    assert not (tmp_path / "one.png").exists() and not (tmp_path / "no.png").exists()


@pytest.mark.parametrize("builder", [mmoe])
def test_a_run_report_has_the_gates_and_their_plot(tmp_path, builder):
    from mtl_keras.experiments import prepare
    from mtl_keras.experiments.train import _gates
    from mtl_keras.recipes import validate

    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 3))
    rows = [",".join(f"{v:.4f}" for v in r) for r in np.concatenate([x, x[:, :2]], axis=1)]
    (tmp_path / "t.csv").write_text("x0,x1,x2,a,b\n" + "\n".join(rows) + "\n")
    recipe = validate(
        {
            "name": "gates_toy",
            "data": {
                "name": "csv",
                "path": str(tmp_path / "t.csv"),
                "tasks": {"a": {"kind": "regression"}, "b": {"kind": "regression"}},
                "split": {"validation": 0.25, "test": 0.25},
                "features": {"x0": "numeric", "x1": "numeric", "x2": "numeric"},
            },
            "architecture": {
                "name": builder.__name__,
                "num_experts": 3,
                "expert_units": [4],
                "tower_units": [],
            },
        }
    )
    prepared = prepare(recipe)
    gates = _gates(prepared, tmp_path / "gates.png")
    assert gates is not None and set(gates["mixtures"]) == {"mixture_a", "mixture_b"}
    assert gates["examples"] == prepared.dataset.num_examples("validation") and gates["plot"] == str(
        tmp_path / "gates.png"
    )
    assert isinstance(gates["warnings"], list)
