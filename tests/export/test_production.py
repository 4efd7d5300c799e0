"""What an export carries for production: the TF Serving warm-up file (parsed as PredictionLog records and
run on the SavedModel), per-signature latency, the training feature statistics and the skew check against
them (a shifted column alarms, an unshifted one does not), through the library and `mtl-keras skew`."""

from __future__ import annotations

import json
import math
import subprocess

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from mtl_keras.builders import RawFeatures, hard_sharing
from mtl_keras.cli import main
from mtl_keras.data.census import load_census
from mtl_keras.export import _standalone_check, check_export, export_for_serving, warmup
from mtl_keras.export.latency import measure_latency
from mtl_keras.monitoring import check_skew, feature_statistics, read_feature_statistics

ROWS = 3


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    data = load_census(max_rows=400)
    model = hard_sharing(list(data.tasks), RawFeatures(data.features, data.train.x), trunk=[8], name="census")
    base = tmp_path_factory.mktemp("production")
    examples = {name: values[:ROWS] for name, values in data.test.x.items()}
    version = export_for_serving(
        model, base, request_examples=examples, feature_statistics=feature_statistics(data)
    )
    return model, base, version, data


# === Warm-up requests ===


def test_warmup_records_parse_and_run_on_the_saved_model(exported):
    from tensorflow_serving.apis import prediction_log_pb2

    model, base, version, _ = exported
    path = version / "assets.extra" / "tf_serving_warmup_requests"
    records = [r.numpy() for r in tf.data.TFRecordDataset(str(path))]
    logs = [prediction_log_pb2.PredictionLog.FromString(r) for r in records]
    names = [log.predict_log.request.model_spec.signature_name for log in logs]
    assert sorted(names) == sorted(["serving_default", *(f"predict_{t}" for t in model.task_names)])
    loaded = tf.saved_model.load(str(version))
    response = json.loads((base / "response.json").read_text())["predictions"]
    for log in logs:
        request = log.predict_log.request
        assert log.WhichOneof("log_type") == "predict_log"
        assert request.model_spec.name == "census"
        inputs = {name: tf.make_ndarray(proto) for name, proto in request.inputs.items()}
        outputs = loaded.signatures[request.model_spec.signature_name](**inputs)
        for task, value in outputs.items():
            expected = np.array([row[task] for row in response], dtype=np.float64)
            np.testing.assert_allclose(value.numpy(), expected, atol=1e-6)
    assert {k: v.shape for k, v in warmup.request_inputs(logs[0]).items()}["age"] == (ROWS,)


def test_without_serving_api_no_warmup_file(exported, tmp_path, monkeypatch, caplog):
    model, _, _, _ = exported
    monkeypatch.setattr(warmup, "serving_api_available", lambda: False)
    version = export_for_serving(model, tmp_path, request_examples=None)
    assert not (version / warmup.WARMUP_FILE).exists()
    assert "tensorflow-serving-api is not installed" in caplog.text


# === Latency ===


def test_latency_per_signature_and_batch_size(exported):
    model, base, _, _ = exported
    report = measure_latency(base, batch_sizes=(1, 256), repeats=5)
    assert set(report["signatures"]) == {"serving_default", *(f"predict_{t}" for t in model.task_names)}
    for per_batch in report["signatures"].values():
        assert set(per_batch) == {"1", "256"}
        for values in per_batch.values():
            for key in ("p50_ms", "p99_ms", "mean_ms", "examples_per_second"):
                assert math.isfinite(values[key]) and values[key] > 0
            assert values["p99_ms"] >= values["p50_ms"]
    with pytest.raises(ValueError, match="Expected `repeats` to be a positive integer"):
        measure_latency(base, repeats=0)


def test_export_check_prints_and_writes_latency(exported, capsys, monkeypatch):
    """``mtl-keras export --check``: the check plus the latency table and latency.json. The checker runs in
    this process here (its clean-process run is tested in test_census_export.py)."""
    from mtl_keras.export import check, latency

    def in_process(command, **_):
        return subprocess.CompletedProcess(command, _standalone_check.main(command[2:]), "", "")

    _, base, version, _ = exported
    monkeypatch.setattr(check.subprocess, "run", in_process)
    monkeypatch.setattr(latency, "REPEATS", 3)
    assert main(["--quiet", "export", "--check", str(version)]) == 0
    out = capsys.readouterr().out
    assert "latency of version 1" in out and "serving_default" in out and "batch  256" in out
    assert f"latency written to {base / 'latency.json'}" in out
    written = json.loads((base / "latency.json").read_text())
    assert written["version"] == 1 and written["batch_sizes"] == [1, 256] and written["repeats"] == 3
    assert written["signatures"]["serving_default"]["1"]["p50_ms"] > 0
    assert "latency" not in check_export(base)  # only when asked


# === Feature statistics and skew ===


def test_feature_statistics_of_the_training_split(exported):
    _, _, version, data = exported
    stats = read_feature_statistics(version)
    assert sorted(stats["columns"]) == sorted(data.features)
    assert stats["rows"] == len(data.train)
    age = np.asarray(data.train.x["age"], dtype=np.float64)
    entry = stats["columns"]["age"]
    assert entry["mean"] == pytest.approx(age.mean(), rel=1e-9)
    assert entry["std"] == pytest.approx(age.std(), rel=1e-9)
    assert entry["quantiles"]["0.5"] == pytest.approx(np.median(age))
    assert sum(entry["bins"]["fractions"]) + entry["missing_rate"] == pytest.approx(1.0)
    workclass = np.asarray(data.train.x["workclass"])
    entry = stats["columns"]["workclass"]
    assert entry["missing_rate"] == pytest.approx(np.mean(workclass == "?"))
    values, counts = np.unique(workclass[workclass != "?"], return_counts=True)
    assert entry["top"][values[np.argmax(counts)]] == pytest.approx(counts.max() / len(workclass))


def _psi(train: np.ndarray, serve: np.ndarray) -> float:
    """PSI over the distinct training deciles, from the definition (no missing values here)."""
    edges = np.unique(np.quantile(train, np.arange(1, 10) / 10))
    e = np.array([np.mean(np.digitize(train, edges, right=True) == i) for i in range(len(edges) + 1)])
    a = np.array([np.mean(np.digitize(serve, edges, right=True) == i) for i in range(len(edges) + 1)])
    e, a = np.maximum(e, 1e-4), np.maximum(a, 1e-4)
    return float(np.sum((a - e) * np.log(a / e)))


@pytest.fixture(scope="module")
def serving_files(exported, tmp_path_factory):
    _, _, _, data = exported
    directory = tmp_path_factory.mktemp("serving")
    frame = pd.DataFrame({name: values for name, values in data.train.x.items()})
    frame.to_csv(directory / "same.csv", index=False)
    shifted = frame.copy()
    shifted["age"] = shifted["age"] + 12.0
    shifted.to_parquet(directory / "shifted.parquet")
    return directory, frame, shifted


def test_skew_flags_a_shifted_column_and_not_an_unshifted_one(exported, serving_files):
    _, base, _, _ = exported
    directory, frame, shifted = serving_files
    same = check_skew(base, str(directory / "same.csv"))
    assert same["ok"] and same["alarms"] == [] and same["drifted"] == []
    assert all(column["psi"] == pytest.approx(0.0, abs=1e-9) for column in same["columns"].values())
    report = check_skew(base, str(directory / "shifted.parquet"))
    assert not report["ok"] and report["alarms"] == ["age"]
    age = report["columns"]["age"]
    assert age["status"] == "alarm" and age["psi"] >= 0.25
    assert age["psi"] == pytest.approx(_psi(frame["age"].to_numpy(float), shifted["age"].to_numpy(float)))
    assert age["mean_serving"] - age["mean_training"] == pytest.approx(12.0)
    assert report["columns"]["hours_per_week"]["psi"] == pytest.approx(0.0, abs=1e-9)


def test_skew_missing_rate_change(exported, serving_files, tmp_path):
    _, base, _, _ = exported
    _, frame, _ = serving_files
    holes = frame.copy()
    holes.loc[: len(holes) // 2, "hours_per_week"] = np.nan
    holes.to_csv(tmp_path / "holes.csv", index=False)
    column = check_skew(base, str(tmp_path / "holes.csv"))["columns"]["hours_per_week"]
    assert column["missing_rate_training"] == 0.0
    assert column["missing_rate_serving"] == pytest.approx((len(holes) // 2 + 1) / len(holes))
    assert column["status"] == "alarm" and column["largest_shift"]["bin"] == "<missing>"


def test_skew_cli(exported, serving_files, tmp_path, capsys):
    _, base, _, _ = exported
    directory, _, _ = serving_files
    output = tmp_path / "skew.json"
    assert main(["--quiet", "skew", str(base), str(directory / "same.csv"), "--output", str(output)]) == 0
    assert json.loads(output.read_text())["ok"] is True
    capsys.readouterr()
    args = ["--quiet", "skew", str(base / "1"), str(directory / "shifted.parquet"), "-o", str(output)]
    assert main(args) == 1
    out = capsys.readouterr().out
    assert "age" in out.splitlines()[2] and "alarm" in out.splitlines()[2]  # the largest PSI first
    assert json.loads(output.read_text())["alarms"] == ["age"]
    # A higher alarm threshold: age only drifts.
    assert main([*args, "--threshold", "1000", "--warn", "0.2"]) == 0
    assert json.loads(output.read_text())["drifted"] == ["age"]


def test_skew_column_errors(exported, serving_files, tmp_path, capsys):
    _, base, _, _ = exported
    _, frame, _ = serving_files
    frame.drop(columns=["age", "sex"]).to_csv(tmp_path / "missing.csv", index=False)
    with pytest.raises(ValueError, match=r"lacks the feature column\(s\) \['age', 'sex'\]"):
        check_skew(base, str(tmp_path / "missing.csv"))
    frame.assign(agee=1.0).to_csv(tmp_path / "unknown.csv", index=False)
    with pytest.raises(ValueError, match=r"has column\(s\) \['agee'\] the model does not know.*Did you mean"):
        check_skew(base, str(tmp_path / "unknown.csv"))
    assert main(["skew", str(base), str(tmp_path / "unknown.csv"), "-o", str(tmp_path / "x.json")]) == 2
    assert "mtl-keras: error:" in capsys.readouterr().err
    with pytest.raises(ValueError, match="Expected `warn` ≤ `alarm`"):
        check_skew(base, str(tmp_path / "unknown.csv"), warn=0.5, alarm=0.2)
