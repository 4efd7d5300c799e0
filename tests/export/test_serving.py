"""export_for_serving: round trip of every builder, per-task signatures, versions, atomicity, requests."""

from __future__ import annotations

import json
import os

import helpers
import keras
import numpy as np
import pytest
import tensorflow as tf

from mtl_keras import builders
from mtl_keras.export import _standalone_check, export_for_serving, serving
from mtl_keras.export.check import compare_with_model

# Tasks for builders that need particular ones; every other builder gets helpers.toy_tasks().
SPECIAL_TASKS = {"esmm": ["ctr", "ctcvr"], "escm2": ["ctr", "ctcvr"], "aitm": ["ctr", "ctcvr"]}
CASES = [*builders.names(), "hard_sharing_image"]


def _build(case: str):
    if case == "hard_sharing_image":
        return builders.hard_sharing(helpers.toy_tasks(), (8, 8, 1), name="image"), helpers.toy_data(
            5, image=True
        )[0]
    try:
        builder = builders.get_builder(case)
    except (ImportError, ValueError) as error:
        pytest.skip(f"builder {case!r} is not available: {error}")
    tasks = SPECIAL_TASKS.get(case, helpers.toy_tasks())
    try:
        model = builder(tasks, 12)
    except ValueError as error:
        pytest.skip(f"builder {case!r} does not take these tasks: {error}")
    return model, helpers.toy_data(5)[0]


@pytest.fixture(scope="module", params=CASES)
def exported(request, tmp_path_factory):
    model, x = _build(request.param)
    base = tmp_path_factory.mktemp(request.param)
    path = export_for_serving(model, base, request_examples=x[:3])
    return model, base, path, x


def test_round_trip(exported):
    model, base, path, x = exported
    assert path == base / "1"
    report = _standalone_check.check_directory(base)
    assert report["ok"], report["errors"]
    expected = {"serving_default", *(f"predict_{t}" for t in model.task_names)}
    assert set(report["signature_names"]) == expected
    assert sorted(report["signatures"]["serving_default"]["outputs"]) == sorted(model.task_names)
    # The batch dimension is free and the input is the dense / image tensor.
    (spec,) = report["signatures"]["serving_default"]["inputs"].values()
    assert spec["shape"] == [-1, *x.shape[1:]]
    assert spec["dtype"] == "DT_FLOAT"
    assert compare_with_model(base, model)["ok"]
    # Any batch size, against the live model (probabilities for classification heads).
    loaded = tf.saved_model.load(str(path))
    live = model(x, training=False)
    for batch in (1, 5):
        out = loaded.signatures["serving_default"](features=tf.constant(x[:batch]))
        for task in model.tasks:
            np.testing.assert_allclose(out[task.name].numpy(), np.asarray(live[task.name])[:batch], atol=1e-6)
            if task.kind == "multiclass":
                np.testing.assert_allclose(out[task.name].numpy().sum(axis=1), 1.0, atol=1e-5)
            if task.kind in ("binary", "multiclass"):
                assert np.all((out[task.name].numpy() >= 0) & (out[task.name].numpy() <= 1))


def _needed_variables(model, x, task):
    """The variables of every layer that task's output reads: the layers owning a variable with a
    (structurally) non-None gradient of the output. A Functional sub-model is cut at layer granularity, so
    a layer computing every task's column at once (soft sharing's SoftSharedDense) comes whole."""
    with tf.GradientTape() as tape:
        output = model(x, training=False)[task]
    variables = model.trainable_variables
    grads = tape.gradient(output, [v.value for v in variables])
    read = {id(v) for v, g in zip(variables, grads, strict=True) if g is not None}
    return {
        v.path
        for layer in model.layers
        if any(id(w) in read for w in layer.trainable_variables)
        for v in layer.variables
    }


def test_predict_task_holds_only_what_the_task_needs(exported):
    model, _, path, x = exported
    loaded = tf.saved_model.load(str(path))
    everything = {v.name.removesuffix(":0") for v in loaded.signatures["serving_default"].variables}
    assert everything == {v.path for v in model.variables}
    smaller = []
    for task in model.task_names:
        function = loaded.signatures[f"predict_{task}"]
        captured = {v.name.removesuffix(":0") for v in function.variables}
        # An independent oracle: the gradient of the task's output says which variables it reads.
        needed = _needed_variables(model, x, task)
        if model.name == "aitm":
            # AITM's calibrator reads the earlier step's output to add its penalty and passes the later
            # one through: the earlier towers are in the later step's graph without a gradient.
            earlier = model.task_names[: model.task_names.index(task)]
            needed |= {v.path for t in earlier for v in model.get_layer(f"tower_{t}").variables}
        assert captured == needed
        smaller.append(captured < everything)
        # Nor ops of towers it does not read.
        graph = function.graph.as_graph_def()
        nodes = [n.name for f in graph.library.function for n in f.node_def] + [n.name for n in graph.node]
        for other in model.task_names:
            if other != task and not any(f"tower_{other}/" in name for name in captured):
                assert not [n for n in nodes if f"tower_{other}" in n], (task, other)
    # Some task (every task but ESMM's CTCVR, the product of both towers) skips other towers' variables.
    assert any(smaller)


def test_request_and_response_files(exported):
    model, base, _, x = exported
    request = json.loads((base / "request.json").read_text())
    assert request["signature_name"] == "serving_default"
    assert len(request["instances"]) == 3
    row = request["instances"][0]
    assert list(row) == ["features"]
    np.testing.assert_array_equal(np.asarray(row["features"], dtype=np.float32), x[0])
    response = json.loads((base / "response.json").read_text())
    assert len(response["predictions"]) == 3
    assert sorted(response["predictions"][0]) == sorted(model.task_names)
    assert "name: " + json.dumps(model.name) in (base / "models.config").read_text()


# === Versions and atomicity ===


@pytest.fixture(scope="module")
def small():
    x = np.random.default_rng(0).normal(size=(4, 3)).astype("float32")
    return builders.hard_sharing(helpers.toy_tasks(), 3, trunk=(4,), tower_units=(), name="small"), x


def _entries(base):
    return sorted(os.listdir(base))


def test_versions_count_up_and_never_overwrite(small, tmp_path):
    model, x = small
    assert export_for_serving(model, tmp_path) == tmp_path / "1"
    assert export_for_serving(model, tmp_path, request_examples=x) == tmp_path / "2"
    assert export_for_serving(model, tmp_path, version=7) == tmp_path / "7"
    assert export_for_serving(model, tmp_path) == tmp_path / "8"
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "2").rglob("*")}
    with pytest.raises(FileExistsError, match="Version 2 already exists"):
        export_for_serving(model, tmp_path, version=2)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "2").rglob("*")} == before
    assert _entries(tmp_path) == ["1", "2", "7", "8", "models.config", "request.json", "response.json"]
    # The latest version serves the stored response, as the checker sees it.
    latest = _standalone_check.check_directory(tmp_path)
    assert latest["ok"] and latest["version"] == 8 and latest["response"]["max_abs_diff"] <= 1e-6
    # response.json describes the newest version only; an older one is checked without it.
    older = _standalone_check.check_directory(tmp_path, version=2)
    assert older["ok"] and "response" not in older


def test_checker_reports_what_is_missing(tmp_path):
    report = _standalone_check.check_directory(tmp_path)
    assert not report["ok"]
    assert report["errors"] == [f"Expected any version directory in {tmp_path}. Found versions: []"]
    assert "version directory 3" in _standalone_check.check_directory(tmp_path, version=3)["errors"][0]


@pytest.mark.parametrize("version", [0, -1, 1.5, "3", True])
def test_bad_version(small, tmp_path, version):
    with pytest.raises(ValueError, match="positive integer"):
        export_for_serving(small[0], tmp_path, version=version)


def test_failed_export_leaves_no_version(small, tmp_path, monkeypatch):
    model, x = small
    export_for_serving(model, tmp_path, request_examples=x)
    files = {
        name: (tmp_path / name).read_text() for name in ("request.json", "response.json", "models.config")
    }

    def fail(*args, **kwargs):
        raise RuntimeError("simulated failure after the SavedModel was written")

    # The SavedModel is on disk (in the temporary directory) when the response is computed.
    monkeypatch.setattr(serving, "_serving_response", fail)
    with pytest.raises(RuntimeError, match="simulated"):
        export_for_serving(model, tmp_path, request_examples=x[:1])
    assert _entries(tmp_path) == ["1", "models.config", "request.json", "response.json"]
    assert {name: (tmp_path / name).read_text() for name in files} == files


def test_concurrent_export_of_the_same_version_is_not_overwritten(small, tmp_path, monkeypatch):
    model, _ = small
    real = serving._serving_response

    def race(saved_model_dir, instances):
        # Another exporter finishes version 1 while this one is still working.
        (tmp_path / "1").mkdir()
        (tmp_path / "1" / "saved_model.pb").write_text("theirs")
        return real(saved_model_dir, instances)

    monkeypatch.setattr(serving, "_serving_response", race)
    with pytest.raises(FileExistsError, match="Version 1"):
        export_for_serving(model, tmp_path)
    assert _entries(tmp_path) == ["1"]
    assert (tmp_path / "1" / "saved_model.pb").read_text() == "theirs"


# === Request examples ===


def test_request_examples_errors(small, tmp_path):
    model, x = small
    with pytest.raises(ValueError, match=r"rows of shape \(3,\)"):
        export_for_serving(model, tmp_path, request_examples=x[:, :2])
    with pytest.raises(ValueError, match="exactly the inputs"):
        export_for_serving(model, tmp_path, request_examples={"feature": x})
    assert _entries(tmp_path) == []


def test_default_request_and_model_name(small, tmp_path):
    model, _ = small
    export_for_serving(model, tmp_path, model_name="ranker")
    request = json.loads((tmp_path / "request.json").read_text())
    assert request["instances"] == [{"features": [0.0, 0.0, 0.0]}] * 2
    assert 'name: "ranker"' in (tmp_path / "models.config").read_text()
    assert compare_with_model(tmp_path, model)["ok"]


def test_model_without_dict_outputs_is_refused(tmp_path):
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    with pytest.raises(ValueError, match="dict keyed by task name"):
        export_for_serving(model, tmp_path)
    assert _entries(tmp_path) == []
