"""Smoke test of ``benchmarks/step_time.py``: a quick run writes the documented JSON structure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "step_time.py"


def test_step_time_quick_json(tmp_path: Path) -> None:
    out = tmp_path / "step_time.json"
    table = tmp_path / "step_time.md"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    completed = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--quick",
            "--only",
            "static,pcgrad",
            "--json",
            str(out),
            "--markdown",
            str(table),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(out.read_text(encoding="utf-8"))
    assert set(report) == {"results", "meta"}
    results = report["results"]
    assert set(results) == {"static", "pcgrad"}
    for key, entry in results.items():
        assert isinstance(entry["ms_per_step"], float) and entry["ms_per_step"] > 0, key
        assert isinstance(entry["ratio_to_ew"], float) and entry["ratio_to_ew"] > 0, key
    assert results["static"]["ratio_to_ew"] == 1.0
    meta = report["meta"]
    assert meta["quick"] is True
    assert meta["intra_op_threads"] == 2 and meta["inter_op_threads"] == 1
    assert len(meta["load_average_start"]) == 3 and len(meta["load_average_end"]) == 3
    for key in ("cpu", "tensorflow", "keras", "ew_ms_first_round", "ew_ms_last_round", "command"):
        assert key in meta, key
    text = table.read_text(encoding="utf-8")
    assert "| `pcgrad` |" in text and "--quick" in text


def test_streaming_csv_quick(tmp_path: Path) -> None:
    """``benchmarks/streaming_csv.py`` on tiny files: three child runs, their ratios and the Markdown."""
    out, table = tmp_path / "streaming.json", tmp_path / "streaming.md"
    completed = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "streaming_csv.py"),
            "--rows",
            "1500,3000",
            "--batch-size",
            "256",
            "--repeats",
            "1",
            "--data-dir",
            str(tmp_path / "data"),
            "--json",
            str(out),
            "--markdown",
            str(table),
        ],
        cwd=ROOT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(out.read_text(encoding="utf-8"))
    small, large = report["streamed_small"], report["streamed_large"]
    assert small["file_rows"] == 1500 and large["file_rows"] == 3000
    # The streamed and the in-memory runs train on the same rows (the same split rule).
    assert report["in_memory_small"]["train_rows"] == small["train_rows"]
    assert 0.6 * 1500 < small["train_rows"] < 0.8 * 1500
    assert len(report["streamed_small_steady_rows_per_s_runs"]) == 1
    assert small["steady_rows_per_s"] in report["streamed_small_steady_rows_per_s_runs"]
    for entry in (small, large, report["in_memory_small"]):
        assert entry["peak_rss_mib"] > 100 and entry["steady_rows_per_s"] > 0
    ratios = report["ratios"]
    assert ratios["rss_large_over_small"] == large["peak_rss_mib"] / small["peak_rss_mib"]
    assert set(report["targets"]) == {"rss", "rows_per_s"}
    text = table.read_text(encoding="utf-8")
    assert "--rows 1500,3000" in text and "| streamed, large | 3,000 |" in text
