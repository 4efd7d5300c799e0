"""Check an export directory written by `mtl_keras.export.export_for_serving`, without the project's code.

This file imports only the standard library, numpy and TensorFlow (plus ``tensorflow_serving`` protos and
``tensorflow_text``, when installed: the latter registers the tokenizer ops a keras-hub text backbone's
SavedModel needs, as a TF Serving built with tensorflow-text ops would have them; the stock TF Serving
binary has not, and cannot serve such a model), so that running it as a script (``python _standalone_check.py DIR``) proves the SavedModel is
self-contained: nothing of ``mtl_keras`` is needed to load and serve it. The report it writes says which
project modules ended up imported (``environment.mtl_keras_imported`` must be false). Note that
``import tensorflow`` itself imports Keras when Keras 3 is installed (TF 2.21), so
``environment.keras_imported`` is reported but says nothing about this checker.

What it checks in ``DIR`` (the model's base directory, as TF Serving sees it):

* the newest integer version directory (or ``--version N``) loads with ``tf.saved_model.load``;
* every signature runs on the stored ``request.json`` (TF Serving REST row format);
* ``serving_default`` reproduces ``response.json`` (max |Δ| ≤ 1e-6) and every ``predict_<task>``
  equals the ``<task>`` output of ``serving_default``;
* with ``assets.extra/fusion.json``, the fusion signature equals its formula computed here (a separate
  NumPy evaluator of the same whitelisted expressions) from the ``serving_default`` outputs;
* ``models.config`` parses with ``tensorflow_serving.config.model_server_config_pb2`` and points at ``DIR``;
* the signatures are listed the way ``saved_model_cli show --all`` lists them.

The REST conversions (``instances_to_inputs``, ``to_predictions``, ``predictions_to_arrays``) are also used
in-process by the exporter, so the request and response files are written and read by the same rules.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

# Registers tensorflow-text's ops (a keras-hub tokenizer in the graph); absent: no text ops are needed.
with contextlib.suppress(ImportError):
    import tensorflow_text  # noqa: F401

TOLERANCE = 1e-6
REQUEST_FILE = "request.json"
RESPONSE_FILE = "response.json"
CONFIG_FILE = "models.config"
SERVING_API_INSTALL = "pip install --no-deps tensorflow-serving-api"


# === REST row format ===


def instances_to_inputs(instances: list[Any], specs: dict[str, Any]) -> dict[str, np.ndarray]:
    """TF Serving REST ``instances`` (one dict per example) -> ``{input name: array}`` with the specs' dtypes.

    A signature with a single input also accepts bare values per example, as TF Serving does.
    """
    if not isinstance(instances, list) or not instances:
        raise ValueError(f"Expected `instances` to be a non-empty list. Received: {type(instances).__name__}")
    names = sorted(specs)
    if not all(isinstance(row, dict) for row in instances):
        if len(names) != 1:
            raise ValueError(
                f"Expected every instance to be a dict keyed by the inputs {names} (the signature has "
                f"{len(names)} inputs)."
            )
        instances = [{names[0]: row} for row in instances]
    columns: dict[str, np.ndarray] = {}
    for name in names:
        missing = [i for i, row in enumerate(instances) if name not in row]
        if missing:
            raise ValueError(
                f"Instance {missing[0]} has no value for input {name!r}. Expected inputs: {names}."
            )
        dtype = tf.as_dtype(specs[name].dtype)
        values = [row[name] for row in instances]
        try:
            columns[name] = np.asarray(values, dtype=object if dtype == tf.string else dtype.as_numpy_dtype)
        except (TypeError, ValueError) as error:
            raise ValueError(f"Cannot read input {name!r} as {dtype.name}: {error}") from error
    unknown = sorted({key for row in instances for key in row} - set(names))
    if unknown:
        raise ValueError(f"Unknown input {unknown[0]!r} in the instances. Expected inputs: {names}.")
    return columns


def _json_value(value: np.ndarray) -> Any:
    if value.dtype.kind in ("O", "S", "U"):
        return np.vectorize(lambda v: v.decode("utf-8") if isinstance(v, bytes) else str(v), otypes=[object])(
            value
        ).tolist()
    return value.tolist()


def to_predictions(outputs: dict[str, Any]) -> list[Any]:
    """``{output name: (n, ...) array}`` -> REST ``predictions``: one dict per example, or bare values when
    there is a single output (TF Serving's row format)."""
    arrays = {name: np.asarray(value) for name, value in outputs.items()}
    rows = {len(a) for a in arrays.values()}
    if len(rows) != 1:
        raise ValueError(f"Expected every output to have the same number of rows. Received: {sorted(rows)}")
    n = rows.pop()
    if len(arrays) == 1:
        (value,) = arrays.values()
        return [_json_value(value[i]) for i in range(n)]
    return [{name: _json_value(a[i]) for name, a in sorted(arrays.items())} for i in range(n)]


def predictions_to_arrays(predictions: list[Any], names: list[str]) -> dict[str, np.ndarray]:
    """REST ``predictions`` -> ``{output name: float64 array}`` (``names``: the signature's outputs)."""
    if predictions and not isinstance(predictions[0], dict):
        if len(names) != 1:
            raise ValueError(f"Expected one dict per prediction with the outputs {sorted(names)}.")
        predictions = [{names[0]: p} for p in predictions]
    return {name: np.asarray([p[name] for p in predictions], dtype=np.float64) for name in names}


def input_specs(function: Any) -> dict[str, Any]:
    """The named ``tf.TensorSpec`` inputs of a signature function."""
    args, kwargs = function.structured_input_signature
    if args:
        raise ValueError("Expected a signature function with keyword inputs only.")
    return dict(kwargs)


def run_signature(function: Any, instances: list[Any]) -> dict[str, np.ndarray]:
    """Run a (loaded) signature function on REST instances; returns its outputs as numpy arrays."""
    inputs = instances_to_inputs(instances, input_specs(function))
    outputs = function(**{name: tf.constant(value) for name, value in inputs.items()})
    return {name: np.asarray(value) for name, value in outputs.items()}


def max_abs_diff(a: dict[str, Any], b: dict[str, Any]) -> float:
    if sorted(a) != sorted(b):
        raise ValueError(f"Different outputs: {sorted(a)} vs {sorted(b)}")
    diffs = []
    for name in a:
        x = np.asarray(a[name], dtype=np.float64)
        y = np.asarray(b[name], dtype=np.float64)
        if x.shape != y.shape:
            raise ValueError(f"Output {name!r} has shape {x.shape} in one and {y.shape} in the other.")
        diffs.append(float(np.max(np.abs(x - y))) if x.size else 0.0)
    return max(diffs) if diffs else 0.0


# === Directory layout ===


def list_versions(base_dir: str | os.PathLike[str]) -> list[int]:
    """Integer-named subdirectories (TF Serving's versions), ascending."""
    base = Path(base_dir)
    if not base.is_dir():
        return []
    return sorted(int(p.name) for p in base.iterdir() if p.is_dir() and p.name.isdigit())


# === saved_model_cli-style listing ===


def read_signature_defs(version_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``serve`` MetaGraph's SignatureDefs, read from ``saved_model.pb`` like ``saved_model_cli`` does."""
    from tensorflow.core.framework import types_pb2
    from tensorflow.core.protobuf import saved_model_pb2

    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString((Path(version_dir) / "saved_model.pb").read_bytes())
    graphs = [g for g in saved_model.meta_graphs if "serve" in g.meta_info_def.tags]
    if not graphs:
        raise ValueError(f"No MetaGraph tagged 'serve' in {version_dir}.")

    def info(tensor_info: Any) -> dict[str, Any]:
        shape = tensor_info.tensor_shape
        return {
            "dtype": types_pb2.DataType.Name(tensor_info.dtype),
            "shape": None if shape.unknown_rank else [int(d.size) for d in shape.dim],
            "name": tensor_info.name,
        }

    result = {}
    for key in sorted(graphs[0].signature_def):
        signature = graphs[0].signature_def[key]
        result[key] = {
            "inputs": {k: info(v) for k, v in sorted(signature.inputs.items())},
            "outputs": {k: info(v) for k, v in sorted(signature.outputs.items())},
            "method_name": signature.method_name,
        }
    return {"tags": list(graphs[0].meta_info_def.tags), "signatures": result}


def format_signature_defs(defs: dict[str, Any]) -> str:
    """The SignatureDef part of ``saved_model_cli show --all``."""
    lines = [f"MetaGraphDef with tag-set: '{', '.join(defs['tags'])}' contains the following SignatureDefs:"]
    for key, signature in defs["signatures"].items():
        lines += ["", f"signature_def['{key}']:"]
        for part, label in (("inputs", "input(s)"), ("outputs", "output(s)")):
            lines.append(f"  The given SavedModel SignatureDef contains the following {label}:")
            for name, tensor in signature[part].items():
                shape = tensor["shape"]
                shape_text = "unknown_rank" if shape is None else "(" + ", ".join(str(d) for d in shape) + ")"
                lines += [
                    f"    {part}['{name}'] tensor_info:",
                    f"        dtype: {tensor['dtype']}",
                    f"        shape: {shape_text}",
                    f"        name: {tensor['name']}",
                ]
        lines.append(f"  Method name is: {signature['method_name']}")
    return "\n".join(lines)


# === models.config ===


def check_models_config(path: Path, base_dir: Path, versions: list[int]) -> dict[str, Any]:
    """Parse ``models.config`` with TF Serving's own protos; its base path must be ``base_dir``."""
    if not path.is_file():
        return {"ok": False, "error": f"{path} does not exist."}
    try:
        from google.protobuf import text_format
        from tensorflow_serving.config import model_server_config_pb2
    except ImportError as error:
        return {
            "ok": False,
            "error": f"Cannot parse {path.name}: tensorflow-serving-api is not installed ({error}). "
            f"Install it with `{SERVING_API_INSTALL}` (it pins the full tensorflow wheel otherwise).",
        }
    config = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(path.read_text(encoding="utf-8"), config)
    except text_format.ParseError as error:
        return {"ok": False, "error": f"{path.name} does not parse as a ModelServerConfig: {error}"}
    models = list(config.model_config_list.config)
    report: dict[str, Any] = {"ok": False, "models": []}
    for model in models:
        policy = model.model_version_policy
        report["models"].append(
            {
                "name": model.name,
                "base_path": model.base_path,
                "model_platform": model.model_platform,
                "version_policy": policy.WhichOneof("policy_choice"),
                "latest_num_versions": policy.latest.num_versions if policy.HasField("latest") else None,
            }
        )
    problems = []
    if len(models) != 1:
        problems.append(f"expected one model in model_config_list, found {len(models)}")
    else:
        model = report["models"][0]
        if not model["name"]:
            problems.append("the model has no name")
        if (
            not Path(model["base_path"]).is_absolute()
            or Path(model["base_path"]).resolve() != base_dir.resolve()
        ):
            problems.append(f"base_path {model['base_path']!r} is not the absolute path of {str(base_dir)!r}")
        if model["model_platform"] != "tensorflow":
            problems.append(f"model_platform is {model['model_platform']!r}, expected 'tensorflow'")
        if not versions:
            problems.append("no version directory under base_path")
    report["ok"] = not problems
    if problems:
        report["error"] = "; ".join(problems)
    return report


# === Score fusion ===

FUSION_FILE = os.path.join("assets.extra", "fusion.json")


def fusion_formula(formula: str, outputs: dict[str, np.ndarray]) -> np.ndarray:
    """``formula`` (task names, numbers, + - * / **, unary minus, parentheses) on numpy task outputs."""

    def walk(node: ast.AST) -> Any:
        if isinstance(node, ast.Name):
            return np.asarray(outputs[node.id], dtype=np.float64)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return float(node.value)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            value = walk(node.operand)
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.BinOp):
            a, b = walk(node.left), walk(node.right)
            operators = {ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply, ast.Div: np.divide}
            if isinstance(node.op, ast.Pow):
                return np.power(a, b)
            if type(node.op) in operators:
                return operators[type(node.op)](a, b)
        raise ValueError(f"Unsupported element {ast.dump(node)} in fusion formula {formula!r}.")

    return np.asarray(walk(ast.parse(formula.strip(), mode="eval").body))


def check_fusion(
    version_dir: Path, outputs: dict[str, dict[str, np.ndarray]], errors: list[str]
) -> dict[str, Any] | None:
    """The fusion signature against its formula on the ``serving_default`` outputs (None without fusion)."""
    path = version_dir / FUSION_FILE
    if not path.is_file():
        return None
    description = _read_json(path, errors)
    if description is None:
        return {"ok": False}
    name, formula = description["signature"], description["formula"]
    if name not in outputs or "serving_default" not in outputs:
        errors.append(f"Fusion signature {name!r} (or serving_default) did not run on {REQUEST_FILE}.")
        return {"signature": name, "formula": formula, "ok": False}
    try:
        expected = fusion_formula(formula, outputs["serving_default"])
    except (KeyError, ValueError) as error:
        errors.append(f"Cannot compute fusion formula {formula!r}: {error}")
        return {"signature": name, "formula": formula, "ok": False}
    diff = max_abs_diff(outputs[name], {name: expected})
    # float32 signature vs float64 recomputation: relative rounding of a few ulps.
    scale = max(1.0, float(np.max(np.abs(expected)))) if expected.size else 1.0
    ok = diff <= TOLERANCE * scale
    if not ok:
        errors.append(f"Fusion signature {name!r} differs from {formula!r} by {diff:.3g}.")
    return {"signature": name, "formula": formula, "max_abs_diff": diff, "ok": ok}


# === The whole check ===


def _environment() -> dict[str, Any]:
    project = sorted(m for m in sys.modules if m == "mtl_keras" or m.startswith("mtl_keras."))
    return {
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "tensorflow": tf.__version__,
        "mtl_keras_imported": bool(project),
        "project_modules": project,
        "keras_imported": "keras" in sys.modules,
        "tensorflow_text_imported": "tensorflow_text" in sys.modules,
    }


def _read_json(path: Path, errors: list[str]) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        errors.append(f"Cannot read {path.name}: {error}")
        return None


def check_directory(base_dir: str | os.PathLike[str], version: int | None = None) -> dict[str, Any]:
    """Check the export in ``base_dir``; returns a JSON-serialisable report, ``ok`` true if all passed.

    ``response.json`` describes the newest version, so it is compared only when that version is checked.
    """
    base = Path(base_dir)
    errors: list[str] = []
    versions = list_versions(base)
    report: dict[str, Any] = {"base_dir": str(base.resolve()), "versions": versions, "errors": errors}
    if version is None and versions:
        version = versions[-1]
    report["version"] = version
    if version is None or version not in versions:
        wanted = "any version directory" if version is None else f"version directory {version}"
        errors.append(f"Expected {wanted} in {base}. Found versions: {versions}")
        report.update(ok=False, environment=_environment())
        return report
    version_dir = base / str(version)

    defs = read_signature_defs(version_dir)
    report["signatures"] = defs["signatures"]
    report["listing"] = format_signature_defs(defs)

    report["models_config"] = check_models_config(base / CONFIG_FILE, base, versions)
    if not report["models_config"]["ok"]:
        errors.append(f"models.config: {report['models_config']['error']}")

    request = _read_json(base / REQUEST_FILE, errors)
    response = _read_json(base / RESPONSE_FILE, errors) if version == versions[-1] else None
    loaded = tf.saved_model.load(str(version_dir))
    names = sorted(name for name in loaded.signatures if not name.startswith("__"))
    report["signature_names"] = names
    if "serving_default" not in names:
        errors.append("No 'serving_default' signature.")
    if request is None:
        report.update(ok=False, environment=_environment())
        return report
    signature_name = request.get("signature_name", "serving_default")
    report["request"] = {"signature_name": signature_name, "num_instances": len(request["instances"])}

    outputs: dict[str, dict[str, np.ndarray]] = {}
    runs: dict[str, Any] = {}
    for name in names:
        try:
            outputs[name] = run_signature(loaded.signatures[name], request["instances"])
            runs[name] = {"ok": True, "outputs": {k: list(v.shape) for k, v in sorted(outputs[name].items())}}
        except Exception as error:  # report every failing signature, not only the first
            runs[name] = {"ok": False, "error": f"{type(error).__name__}: {error}"}
            errors.append(f"Signature {name!r} failed on {REQUEST_FILE}: {type(error).__name__}: {error}")
    report["runs"] = runs

    if response is not None and signature_name in outputs:
        stored = predictions_to_arrays(response["predictions"], sorted(outputs[signature_name]))
        diff = max_abs_diff(outputs[signature_name], stored)
        report["response"] = {"signature_name": signature_name, "max_abs_diff": diff, "ok": diff <= TOLERANCE}
        if diff > TOLERANCE:
            errors.append(f"{signature_name} differs from {RESPONSE_FILE} by {diff:.3g} > {TOLERANCE}.")

    per_task: dict[str, Any] = {}
    if "serving_default" in outputs:
        default = outputs["serving_default"]
        for name in (n for n in names if n.startswith("predict_") and n in outputs):
            task = name[len("predict_") :]
            if task not in default or sorted(outputs[name]) != [task]:
                per_task[name] = {
                    "ok": False,
                    "error": f"expected one output {task!r} also in serving_default",
                }
                errors.append(f"{name}: expected one output {task!r} that serving_default also returns.")
                continue
            diff = max_abs_diff(outputs[name], {task: default[task]})
            per_task[name] = {"max_abs_diff": diff, "ok": diff <= TOLERANCE}
            if diff > TOLERANCE:
                errors.append(f"{name} differs from serving_default[{task!r}] by {diff:.3g} > {TOLERANCE}.")
        missing = [task for task in sorted(default) if f"predict_{task}" not in names]
        if missing:
            errors.append(f"No predict_<task> signature for task(s) {missing}.")
    report["per_task"] = per_task
    fusion = check_fusion(version_dir, outputs, errors)
    if fusion is not None:
        report["fusion"] = fusion
    report["ok"] = not errors
    report["environment"] = _environment()
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", help="the model's base directory (holding the version directories)")
    parser.add_argument("--version", type=int, default=None, help="version to check (default: the newest)")
    parser.add_argument("--json", default=None, help="write the report to this file instead of stdout")
    args = parser.parse_args(argv)
    try:
        report = check_directory(args.directory, args.version)
    except Exception as error:  # still hand the parent a report
        report = {"ok": False, "errors": [f"{type(error).__name__}: {error}"], "environment": _environment()}
    text = json.dumps(report, indent=2, sort_keys=True)
    if args.json:
        Path(args.json).write_text(text + "\n", encoding="utf-8")
    else:
        sys.stdout.write(text + "\n")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
