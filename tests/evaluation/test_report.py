"""The report dict from two evaluate() results, its JSON / Markdown files and the terminal table."""

from __future__ import annotations

import json
import math
import os

import pytest

from mtl_keras import Task
from mtl_keras.evaluation import build_report, format_table, split_results, write_report
from mtl_keras.evaluation.report import to_json

TASKS = [Task("a", "binary"), Task("b", "regression")]
MULTI = {
    "loss": 0.9,
    "a_loss": 0.30,
    "a_auc": 0.84,
    "a_accuracy": 0.90,
    "a_weight": 1.0,
    "b_loss": 0.60,
    "b_mse": 0.60,
    "b_weight": 1.0,
    "cos_a_b": 0.1,
    "conflict_fraction": 0.2,
}
SINGLE = {"loss": 0.85, "a_loss": 0.35, "a_auc": 0.80, "a_accuracy": 0.75, "b_loss": 0.50, "b_mse": 0.50}


def _report(**kwargs):
    return build_report(MULTI, SINGLE, TASKS, recipe="toy", train_seconds=12.5, params=1234, **kwargs)


def test_split_results_uses_the_longest_task_name() -> None:
    split = split_results(
        {"a_loss": 1.0, "a_b_loss": 2.0, "a_b_auc": 0.5, "a_weight": 1.0, "loss": 3.0}, ["a", "a_b"]
    )
    assert split == {"a": {"loss": 1.0}, "a_b": {"loss": 2.0, "auc": 0.5}}


def test_report_contents() -> None:
    report = _report(seed=3)
    # Default Δm metrics: each task's own metrics. a: auc +5 %, accuracy +20 % -> 12.5; b: mse -20 %.
    assert report["delta_m_metrics"] == {"a": ["auc", "accuracy"], "b": ["mse"]}
    assert report["delta_m"] == pytest.approx(-3.75)
    assert report["delta_m_per_task"] == pytest.approx({"a": 12.5, "b": -20.0})
    assert report["recipe"] == "toy" and report["train_seconds"] == 12.5 and report["params"] == 1234
    assert report["seed"] == 3
    a = report["tasks"]["a"]
    assert a["multi_task"] == {"auc": 0.84, "accuracy": 0.90, "loss": 0.30}
    assert a["single_task"] == {"auc": 0.80, "accuracy": 0.75, "loss": 0.35}
    assert a["improvement_percent"]["loss"] == pytest.approx(100 * 0.05 / 0.35)
    assert "weight" not in a["multi_task"]
    assert set(report["tasks"]) == {"a", "b"}


def test_report_metric_choice_and_per_task_baselines() -> None:
    assert _report(delta_m_metrics={"a": "auc"})["delta_m"] == pytest.approx(-7.5)
    assert _report(delta_m_metrics={"a": "auc"}, average="pair")["delta_m"] == pytest.approx(-7.5)
    # One single-task model per task: {task: its evaluate() dict}.
    per_task = {"a": {"loss": 0.35, "a_loss": 0.35, "a_auc": 0.80, "a_accuracy": 0.75}, "b": {"b_mse": 0.5}}
    report = build_report(MULTI, per_task, TASKS, recipe="toy", train_seconds=1, params=1)
    assert report["delta_m"] == pytest.approx(-3.75)


def test_report_errors() -> None:
    with pytest.raises(ValueError, match="baseline of a auc is 0"):
        build_report(MULTI, {**SINGLE, "a_auc": 0.0}, TASKS, recipe="toy", train_seconds=1, params=1)
    with pytest.raises(ValueError, match="clash"):
        _report(delta_m=1.0)
    with pytest.raises(ValueError, match="missing from the single-task"):
        build_report(
            {**MULTI, "a_precision": 0.5},
            SINGLE,
            TASKS,
            recipe="t",
            train_seconds=1,
            params=1,
            delta_m_metrics={"a": "precision"},
        )


def test_write_report_files(tmp_path) -> None:
    report = _report(note=math.nan)
    json_path, md_path = write_report(report, tmp_path / "out")
    assert sorted(os.listdir(tmp_path / "out")) == ["report.json", "report.md"]  # no temporary files left
    with open(json_path) as stream:
        loaded = json.load(stream)
    assert loaded["delta_m"] == pytest.approx(-3.75)
    assert loaded["tasks"]["b"]["single_task"] == {"mse": 0.5, "loss": 0.5}
    assert loaded["note"] is None  # NaN is not JSON
    with open(md_path, encoding="utf-8") as stream:
        markdown = stream.read()
    assert "| task | metric | multi-task | single-task | rel. change (+ = MTL better) |" in markdown
    assert "| a | auc \\* | 0.8400 | 0.8000 | +5.00 % |" in markdown
    assert "| b | mse \\* | 0.6000 | 0.5000 | -20.00 % |" in markdown
    assert "Δm = -3.75 %" in markdown
    # Writing again replaces the files.
    write_report(_report(delta_m_metrics={"a": "auc"}), tmp_path / "out")
    with open(json_path) as stream:
        assert json.load(stream)["delta_m"] == pytest.approx(-7.5)


def test_format_table() -> None:
    text = format_table(_report())
    lines = text.splitlines()
    assert lines[0] == "toy"
    assert lines[1].split()[:2] == ["task", "metric"]
    assert any(line.split() == ["a", "auc", "*", "0.8400", "0.8000", "+5.00", "%"] for line in lines)
    assert any(line.startswith("Δm = -3.75 %") for line in lines)
    assert "parameters: 1,234" in text


def test_metrics_without_labels_are_missing_and_skipped_by_delta_m(tmp_path, caplog) -> None:
    """Task b has no labels in the multi-task model's test split: its metrics are NaN in evaluate()."""
    import logging

    multi = {**MULTI, "b_loss": math.nan, "b_mse": math.nan}
    with caplog.at_level(logging.WARNING, logger="mtl_keras"):
        report = build_report(multi, SINGLE, TASKS, recipe="toy", train_seconds=1, params=1)
    # Only a enters Δm: auc +5 %, accuracy +20 %.
    assert report["delta_m"] == pytest.approx(12.5)
    assert report["delta_m_per_task"] == {"a": pytest.approx(12.5), "b": None}
    assert report["delta_m_skipped"] == {"b": ["mse"]}
    assert report["tasks"]["b"]["multi_task"] == {"mse": None, "loss": None}
    assert report["tasks"]["b"]["improvement_percent"] == {"mse": None, "loss": None}
    assert any("b: mse" in r.getMessage() and "Δm skips" in r.getMessage() for r in caplog.records)
    json_path, md_path = write_report(report, tmp_path)
    with open(json_path) as stream:
        loaded = json.load(stream)
    assert loaded["tasks"]["b"]["multi_task"] == {"mse": None, "loss": None}
    assert loaded["delta_m_per_task"]["b"] is None
    with open(md_path, encoding="utf-8") as stream:
        markdown = stream.read()
    assert "| b | mse \\* | — | 0.5000 | — |" in markdown
    assert "Δm skips metrics without labelled examples (—): b: mse" in markdown
    text = format_table(report)
    assert any(line.split() == ["b", "mse", "*", "—", "0.5000", "—"] for line in text.splitlines())


def test_delta_m_is_missing_when_every_metric_is() -> None:
    multi = {k: (math.nan if k.startswith(("a_", "b_")) else v) for k, v in MULTI.items()}
    report = build_report(multi, SINGLE, TASKS, recipe="toy", train_seconds=1, params=1)
    assert math.isnan(report["delta_m"])
    assert report["delta_m_skipped"] == {"a": ["auc", "accuracy"], "b": ["mse"]}
    assert json.loads(to_json(report))["delta_m"] is None
    assert "Δm: not computed (every metric in Δm has no labelled examples" in format_table(report)


def test_split_results_reads_null_as_missing() -> None:
    split = split_results({"a_auc": None, "a_loss": 0.5}, ["a"])
    assert math.isnan(split["a"]["auc"]) and split["a"]["loss"] == 0.5
