"""The raw-feature census model through export, the standalone checker in a clean process, bad inputs."""

from __future__ import annotations

import contextlib
import io
import json
import re
import sys

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format

from mtl_keras.builders import RawFeatures, mmoe
from mtl_keras.data.census import load_census
from mtl_keras.export import _standalone_check, check_export, export_for_serving
from mtl_keras.export.check import CHECKER, main

ROWS = 4


@pytest.fixture(scope="module")
def census(tmp_path_factory):
    data = load_census(max_rows=300)
    assert isinstance(data.train.x, dict) and isinstance(data.test.x, dict) and data.features
    model = mmoe(list(data.tasks), RawFeatures(data.features, data.train.x), num_experts=2, name="census")
    base = tmp_path_factory.mktemp("census")
    examples = {name: values[:ROWS] for name, values in data.test.x.items()}
    export_for_serving(model, base, request_examples=examples)
    return model, base, data, examples


@pytest.fixture(scope="module")
def report(census):
    model, base, _, _ = census
    return check_export(base, model=model)


def test_subprocess_check_passes_without_importing_the_project(report, census):
    assert report["ok"], report["errors"]
    environment = report["environment"]
    assert environment["mtl_keras_imported"] is False
    assert environment["project_modules"] == []
    assert report["command"][1] == str(CHECKER)
    assert report["live_model"]["max_abs_diff"] <= 1e-6
    assert report["response"]["max_abs_diff"] <= 1e-6
    assert set(report["per_task"]) == {"predict_income", "predict_never_married"}
    assert all(r["max_abs_diff"] <= 1e-6 for r in report["per_task"].values())


def test_signatures_take_the_raw_features(report, census):
    _, _, data, _ = census
    inputs = report["signatures"]["serving_default"]["inputs"]
    assert sorted(inputs) == sorted(data.features)
    for name, kind in data.features.items():
        assert inputs[name]["shape"] == [-1]
        assert inputs[name]["dtype"] == ("DT_FLOAT" if kind == "numeric" else "DT_STRING")
    outputs = report["signatures"]["serving_default"]["outputs"]
    assert outputs == {
        name: {"dtype": "DT_FLOAT", "shape": [-1, 1], "name": outputs[name]["name"]}
        for name in ("income", "never_married")
    }
    assert sorted(report["signatures"]["predict_income"]["outputs"]) == ["income"]


def test_listing_matches_saved_model_cli(report, census):
    """The listing is the SignatureDef part of ``saved_model_cli show --all`` (its own code, in-process)."""
    from tensorflow.python.tools import saved_model_cli

    _, base, _, _ = census
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        saved_model_cli._show_all(str(base / "1"))
    shown = buffer.getvalue()
    start = shown.index("MetaGraphDef with tag-set")
    end = shown.index("The MetaGraph with tag set")
    assert shown[start:end].strip() == report["listing"].strip()


def test_models_config_parses(census):
    from tensorflow_serving.config import model_server_config_pb2

    _, base, _, _ = census
    config = text_format.Parse(
        (base / "models.config").read_text(), model_server_config_pb2.ModelServerConfig()
    )
    (model,) = config.model_config_list.config
    assert model.name == "census"
    assert model.base_path == str(base)
    assert model.model_platform == "tensorflow"
    assert model.model_version_policy.latest.num_versions == 1


def test_models_config_without_serving_api(census, monkeypatch):
    _, base, _, _ = census
    for module in ("tensorflow_serving", "tensorflow_serving.config"):
        monkeypatch.setitem(sys.modules, module, None)  # "import" now raises ImportError
    result = _standalone_check.check_models_config(base / "models.config", base, [1])
    assert not result["ok"]
    assert "tensorflow-serving-api is not installed" in result["error"]
    assert "pip install --no-deps tensorflow-serving-api" in result["error"]


def test_request_and_response_are_rest_json(census):
    model, base, _, examples = census
    request = json.loads((base / "request.json").read_text())
    assert request["signature_name"] == "serving_default"
    assert len(request["instances"]) == ROWS
    for i, row in enumerate(request["instances"]):
        for name, value in row.items():
            original = examples[name][i]
            if isinstance(original, str):
                assert value == original
            else:
                assert type(value) is float and value == float(original)
    response = json.loads((base / "response.json").read_text())
    live = model({k: np.asarray(v).reshape(-1, 1) for k, v in examples.items()}, training=False)
    for i, prediction in enumerate(response["predictions"]):
        assert sorted(prediction) == ["income", "never_married"]
        for task, value in prediction.items():
            assert abs(value[0] - float(live[task][i, 0])) <= 1e-6


def test_a_broken_export_is_reported(census, tmp_path):
    _, base, _, _ = census
    for name in ("models.config", "request.json"):
        (tmp_path / name).write_text((base / name).read_text())
    (tmp_path / "models.config").write_text(
        (base / "models.config").read_text().replace('"tensorflow"', '"onnx"')
    )
    response = json.loads((base / "response.json").read_text())
    response["predictions"][0]["income"][0] += 0.01
    (tmp_path / "response.json").write_text(json.dumps(response))
    (tmp_path / "1").symlink_to(base / "1", target_is_directory=True)
    result = _standalone_check.check_directory(tmp_path)
    assert not result["ok"]
    text = " ".join(result["errors"])
    assert "serving_default differs from response.json" in text
    assert "base_path" in text and "model_platform is 'onnx'" in text


def test_cli(census, report, capsys, monkeypatch):
    """``python -m mtl_keras.export.check DIR``: a summary and the exit status (the check itself is the
    module fixture's, already run in a child process)."""
    from mtl_keras.export import check

    _, base, _, _ = census
    monkeypatch.setattr(check, "check_export", lambda directory, version=None: report)
    assert main([str(base)]) == 0
    out = capsys.readouterr().out
    assert "signature_def['predict_income']" in out
    assert "checker imported mtl_keras: False" in out
    assert out.rstrip().endswith("OK")
    assert main([str(base), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True
    monkeypatch.setattr(check, "check_export", lambda directory, version=None: {**report, "ok": False})
    assert main([str(base)]) == 1


# === Bad inputs name the feature (checked by the SavedModel itself) ===


@pytest.fixture(scope="module")
def signature(census):
    _, base, _, _ = census
    return tf.saved_model.load(str(base / "1")).signatures["serving_default"]


@pytest.fixture(scope="module")
def good(census):
    _, _, _, examples = census
    return {name: tf.constant(values) for name, values in examples.items()}


def _error(signature, inputs):
    with pytest.raises((TypeError, ValueError, tf.errors.InvalidArgumentError)) as info:
        signature(**inputs)
    return str(info.value)


def _input_index_names(message):
    """Input #i of a dtype error, and the feature the function name says input #i is."""
    found = re.search(r"input #(\d+)\(zero-based\)", message)
    assert found, message
    named = re.search(rf"__input_{found.group(1)}_is_([a-z_]+?)(?:__|_\d+ )", message)
    assert named, message
    return named.group(1)


def test_good_inputs(signature, good):
    assert signature(**good)["income"].shape == (ROWS, 1)


def test_missing_feature(signature, good):
    inputs = {k: v for k, v in good.items() if k != "hours_per_week"}
    assert "missing a required argument: 'hours_per_week'" in _error(signature, inputs)


@pytest.mark.parametrize(("feature", "bad"), [("hours_per_week", ["x"] * ROWS), ("workclass", [1.0] * ROWS)])
def test_wrong_dtype(signature, good, feature, bad):
    message = _error(signature, {**good, feature: tf.constant(bad)})
    assert _input_index_names(message) == feature
    assert "was expected to be a" in message


@pytest.mark.parametrize("feature", ["age", "workclass"])
def test_wrong_rank(signature, good, feature):
    message = _error(signature, {**good, feature: tf.reshape(good[feature], (-1, 1))})
    assert f"Shape of tensor {feature} [{ROWS},1] is not compatible with expected shape [?]" in message


def test_scalar_for_a_feature(signature, good):
    message = _error(signature, {**good, "age": tf.constant(30.0)})
    assert "Shape of tensor age [] is not compatible" in message


def test_per_task_signatures_check_inputs_too(census, good):
    _, base, _, _ = census
    function = tf.saved_model.load(str(base / "1")).signatures["predict_never_married"]
    assert sorted(function(**good)) == ["never_married"]
    message = _error(function, {**good, "age": tf.reshape(good["age"], (-1, 1))})
    assert "Shape of tensor age" in message
