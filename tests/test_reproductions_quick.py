"""The `--quick` mode of every reproduction script in benchmarks/ (issue 9): it runs, writes JSON + Markdown +
PNG with the command on top, and its numbers are sane. Scripts run in this process (one TensorFlow start)."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_benchmark_{name}", BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def run_quick(name: str, out: Path, png: str) -> dict:
    assert load(name).main(["--quick", "--out", str(out)]) == 0
    result = json.loads((out / "results.json").read_text())
    markdown = (out / "results.md").read_text()
    command = f"python benchmarks/{name}.py --quick --out {out}"
    assert result["command"] == command
    assert markdown.splitlines()[3] == command  # the line after the title and the opening fence
    assert (out / png).stat().st_size > 1000
    return result


def test_mmoe_synthetic_quick(tmp_path: Path) -> None:
    result = run_quick("mmoe_synthetic", tmp_path, "test_loss_vs_p.png")
    summary = result["summary"]
    # p = 1 makes the two label vectors nearly identical, p = 0 nearly uncorrelated (sin_params="random").
    assert summary["1.0"]["label_correlation"] > 0.9
    assert abs(summary["0.0"]["label_correlation"]) < 0.2
    assert summary["0.0"]["paper_label_correlation"] == 0.0
    for p in ("0.0", "1.0"):
        for model in ("shared_bottom", "omoe", "mmoe"):
            stats = summary[p][model]["mean_of_tasks"]
            assert stats["min"] <= stats["q25"] <= stats["median"] <= stats["q75"] <= stats["max"]
            assert 0.0 < stats["median"] < 10.0
    # The paper's sizes: 113-unit shared bottom vs 8 × 16 experts; parameter counts within 15 %.
    params = result["settings"]["params"]
    assert abs(params["shared_bottom"] - params["mmoe"]) / params["mmoe"] < 0.15
    assert set(result["claims"]) >= {"order_mmoe_le_omoe_le_shared_bottom", "gap_grows_as_p_falls"}


def test_gradnorm_toy_quick(tmp_path: Path) -> None:
    result = run_quick("gradnorm_toy", tmp_path, "weights.png")
    for run in result["runs"]:
        weights = np.asarray(run["weights"])
        assert weights.shape == (len(run["step"]), 2)
        np.testing.assert_allclose(weights.sum(axis=1), 2.0, rtol=1e-5)  # GradNorm renormalises to Σ w = T
        assert run["sigmas"] == [1.0, 100.0]
    # docs/methods.md, "GradNorm toy": with α = 0.12 the weight of the σ = 1 task rises above that of the
    # σ = 100 task.
    low_alpha = next(r for r in result["runs"] if r["alpha"] == 0.12)
    assert low_alpha["final_weights"][0] > low_alpha["final_weights"][1]


def test_pcgrad_toy_quick(tmp_path: Path) -> None:
    result = run_quick("pcgrad_toy", tmp_path, "trajectories.png")
    module = load("pcgrad_toy")
    for run in result["runs"].values():
        assert run["theta"][0] == pytest.approx([0.5, -3.0])
        # Recorded losses agree with the formula evaluated independently in numpy.
        theta = np.asarray(run["theta"][-1])
        l1 = 20 * math.log(max(abs(0.5 * theta[0] + math.tanh(theta[1])), 5e-6))
        l2 = 25 * math.log(max(abs(0.5 * theta[0] - math.tanh(theta[1]) + 2), 5e-6))
        assert run["final_L1"] == pytest.approx(l1, abs=1e-3)
        assert run["final_L2"] == pytest.approx(l2, abs=1e-3)
    np.testing.assert_allclose(
        module.losses(np.array([0.5, -3.0])),
        [20 * math.log(abs(0.25 + math.tanh(-3))), 25 * math.log(abs(0.25 - math.tanh(-3) + 2))],
        rtol=1e-12,
    )


def test_multidigits_quick(tmp_path: Path) -> None:
    result = run_quick("multidigits", tmp_path, "accuracy.png")
    summary = result["summary"]
    assert list(summary) == ["single_task", "static", "pcgrad"]
    for method, row in summary.items():
        for task in ("left", "right"):
            assert 0.1 < row[task]["mean"] <= 1.0  # better than chance after a short run
        assert row["ms_per_step"]["mean"] > 0
        assert (row["delta_m"] is not None) and math.isfinite(row["delta_m"]["mean"])
        if method == "single_task":
            assert row["delta_m"]["mean"] == 0.0


def test_census_table_quick(tmp_path: Path) -> None:
    result = run_quick("census_table", tmp_path, "delta_m.png")
    summary = result["summary"]
    assert list(summary) == ["hard_sharing single-task", "hard_sharing + static"]
    assert summary["hard_sharing single-task"]["delta_m"] is None
    assert math.isfinite(summary["hard_sharing + static"]["delta_m"]["mean"])
    for row in summary.values():
        for key in ("income_auc", "never_married_auc"):
            assert 0.5 < row[key]["mean"] <= 1.0
