"""Export a `MultiTaskModel` for TensorFlow Serving: versioned SavedModels, models.config, example request.

Layout written under ``base_dir`` (TF Serving's model base path)::

    base_dir/
      1/ 2/ ...        one SavedModel per version (``keras.export.ExportArchive``)
      models.config    ModelServerConfig text proto for ``tensorflow_model_server --model_config_file``
      request.json     REST ``{"signature_name": "serving_default", "instances": [...]}``
      response.json    REST ``{"predictions": [...]}``: what the newest version answers to request.json
      input_names.json ``{feature name: signature input name}``, only when a model input key is not a valid
                       signature key (e.g. ``"unit price"`` is served as ``unit_price``)

Inside each version directory, ``assets.extra/`` (which TF Serving copies but does not load as part of
the graph) holds ``tf_serving_warmup_requests`` (one ``PredictionLog`` per signature built from the
request rows, see :mod:`mtl_keras.export.warmup`) and, when given, ``feature_statistics.json`` (the
training feature statistics that ``mtl-keras skew`` compares serving data with, see
:mod:`mtl_keras.monitoring.feature_statistics`).

Signatures of every version:

* ``serving_default``: ``{task name: output}`` for every task (probabilities for classification heads);
* ``predict_<task>``: ``{task name: output}`` for that task only, from a Functional sub-model over the same
  layers, so its graph holds only the shared parts and the one head it needs. A sub-model is cut at layer
  granularity: when the task's tower is a column of a fused ``towers`` layer
  (:class:`~mtl_keras.layers.fused_towers.FusedTowers`, the builders' default for heads of one width),
  the signature carries and computes that whole layer, i.e. the fused tasks' tower weights, and returns
  only its task's column (``fuse_towers=False`` when a signature must hold its own tower only);
* with a :class:`Fusion`, ``<fusion name>``: ``{fusion name: formula over the task outputs}`` (see
  :mod:`mtl_keras.export.fusion`), described in ``assets.extra/fusion.json``.

A model calibrated after training (:func:`mtl_keras.experiments.calibrating.calibrated_model`) is exported
like any other: its calibration layers sit inside every signature.

Inputs are named: the raw features (strings and numbers, one value per example) for models with a
preprocessing block, the single dense/image tensor otherwise (named after the model input, ``features``
for the builders). The batch dimension is free. Each signature checks its inputs' shapes in the graph
(``EnsureShape`` names the feature), a missing feature is refused by name when binding the call, and
a tensor of the wrong dtype is refused by TensorFlow before the graph runs with "input #i was expected
to be a float tensor": the signature functions are named ``<signature>__input_0_is_<name>__...`` so that
message says which feature input #i is.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from mtl_keras._io import atomic_write_text
from mtl_keras.export import _standalone_check as rest

logger = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_TMP_PREFIX = ".export-tmp-"
# ``{model input key: signature input name}`` for renamed inputs (written only when some are renamed).
INPUT_NAMES_FILE = "input_names.json"


# === Signatures ===


@dataclasses.dataclass(frozen=True)
class Fusion:
    """A score-fusion signature: ``name`` (signature and output key) returning ``formula`` over the task
    outputs (see :mod:`mtl_keras.export.fusion`)."""

    name: str
    formula: str


@dataclasses.dataclass(frozen=True)
class ServingInput:
    """One named input of the serving signatures.

    Attributes:
        name: the signature's input name: the model's input key, or the input tensor's name when the key
            is not a valid signature key (a raw feature such as ``"unit price"``, whose ``keras.Input`` has
            the safe name ``unit_price``, see :func:`mtl_keras.builders.inputs.safe_input_names`).
        spec: its ``tf.TensorSpec``, batch dimension free.
        expand: the model input is ``(batch, 1)`` and the signature takes one value per example ``(batch,)``.
        key: the model's input key (what ``fit`` / ``predict`` take); ``name`` unless renamed.
    """

    name: str
    spec: tf.TensorSpec
    expand: bool
    key: str


def _flat_inputs(model: keras.Model) -> list[tuple[str, Any]]:
    structure = model._inputs_struct
    if isinstance(structure, dict):
        return list(structure.items())
    return [(tensor.name, tensor) for tensor in keras.tree.flatten(structure)]


def serving_inputs(model: keras.Model) -> list[ServingInput]:
    """The named inputs of ``model``'s serving signatures, in the model's input order."""
    structure = model._inputs_struct
    result = []
    for key, tensor in _flat_inputs(model):
        name = key if _NAME.match(key) else tensor.name
        if not _NAME.match(name):
            raise ValueError(
                f"Expected every model input name to be a letter followed by letters, digits or '_' (a "
                f"TF Serving signature key and Python keyword). Received input name {key!r}"
                + (f" (tensor name {tensor.name!r})." if key != tensor.name else ".")
            )
        shape = tuple(tensor.shape[1:])
        # Named raw features of shape (batch, 1) are served as one value per example.
        expand = isinstance(structure, dict) and shape == (1,)
        spec_shape = (None,) if expand else (None, *shape)
        result.append(
            ServingInput(name, tf.TensorSpec(spec_shape, tf.as_dtype(tensor.dtype), name=name), expand, key)
        )
    names = [i.name for i in result]
    if len(set(names)) != len(names):
        raise ValueError(f"Expected the model inputs to have distinct names. Received: {names}")
    return result


def input_name_mapping(model: keras.Model) -> dict[str, str]:
    """``{model input key: signature input name}`` for the inputs whose signature name differs."""
    return {s.key: s.name for s in serving_inputs(model) if s.key != s.name}


def _model_inputs(model: keras.Model, specs: list[ServingInput], inputs: dict[str, tf.Tensor]) -> Any:
    """Signature inputs -> the model's input structure; every shape is checked in the graph first."""
    tensors = []
    for item in specs:
        # EnsureShape survives graph optimisation (the static shape cannot fold it away) and its error
        # names the tensor, i.e. the feature: "Shape of tensor age [2,1] is not compatible with [?]".
        value = tf.ensure_shape(inputs[item.name], item.spec.shape, name=f"check_shape_{item.name}")
        tensors.append(tf.expand_dims(value, -1) if item.expand else value)
    structure = model._inputs_struct
    if isinstance(structure, dict):
        return dict(zip([i.key for i in specs], tensors, strict=True))
    return keras.tree.pack_sequence_as(structure, tensors)


def _function_name(endpoint: str, specs: list[ServingInput]) -> str:
    # TensorFlow refuses a tensor of the wrong dtype before the graph runs, with "cannot compute
    # __inference_signature_wrapper_<function name>_N as input #i(zero-based) was expected to be a float
    # tensor"; the signature's flat inputs are sorted by name, so the function name spells out input #i.
    return endpoint + "".join(
        f"__input_{i}_is_{name}" for i, name in enumerate(sorted(s.name for s in specs))
    )


def task_model(model: keras.Model, task: str) -> keras.Model:
    """A Functional model over ``model``'s layers computing only ``task``'s output (and what it needs)."""
    return keras.Model(model._inputs_struct, model._outputs_struct[task], name=f"{model.name}__{task}")


def check_fusion(model: keras.Model, fusion: Fusion | None) -> None:
    """Refuse a fusion signature whose name clashes or whose formula does not fit the model's tasks."""
    if fusion is None:
        return
    from mtl_keras.export.fusion import check_tasks

    outputs = model._outputs_struct
    taken = ["serving_default", *(f"predict_{task}" for task in outputs)]
    if not isinstance(fusion.name, str) or not _NAME.match(fusion.name) or fusion.name in taken:
        raise ValueError(
            "Expected the fusion signature name to be a letter followed by letters, digits or '_', other "
            f"than {taken}. Received: name={fusion.name!r}"
        )
    check_tasks(fusion.formula, {task: int(outputs[task].shape[-1]) for task in outputs})


def build_archive(model: keras.Model, fusion: Fusion | None = None) -> keras.export.ExportArchive:
    """An ``ExportArchive`` with ``serving_default``, one ``predict_<task>`` per task and, when given, the
    fusion signature ``fusion.name`` returning ``{fusion.name: formula}``."""
    outputs = model._outputs_struct
    if not isinstance(outputs, dict):
        raise ValueError(
            "Expected a model whose outputs are a dict keyed by task name. "
            f"Received: {type(outputs).__name__}"
        )
    specs = serving_inputs(model)
    signature = [{s.name: s.spec for s in specs}]
    archive = keras.export.ExportArchive()
    archive.track(model)

    def serve(inputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        result = model(_model_inputs(model, specs, inputs), training=False)
        return {task: result[task] for task in outputs}

    serve.__name__ = _function_name("serving_default", specs)
    archive.add_endpoint("serving_default", serve, input_signature=signature)
    for task in outputs:
        sub_model = task_model(model, task)
        archive.track(sub_model)
        archive.add_endpoint(f"predict_{task}", _task_endpoint(model, sub_model, task, specs), signature)
    if fusion is not None:
        from mtl_keras.export.fusion import fusion_endpoint

        check_fusion(model, fusion)
        fuse = fusion_endpoint(model, specs, fusion.name, fusion.formula, _model_inputs)
        fuse.__name__ = _function_name(fusion.name, specs)
        archive.add_endpoint(fusion.name, fuse, signature)
    return archive


def _task_endpoint(model: keras.Model, sub_model: keras.Model, task: str, specs: list[ServingInput]) -> Any:
    def predict(inputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        return {task: sub_model(_model_inputs(model, specs, inputs), training=False)}

    predict.__name__ = _function_name(f"predict_{task}", specs)
    return predict


# === Request examples ===


def _default_examples(specs: list[ServingInput], rows: int = 2) -> dict[str, np.ndarray]:
    examples = {}
    for s in specs:
        shape = (rows, *s.spec.shape[1:])
        examples[s.name] = np.full(shape, "", dtype=object) if s.spec.dtype == tf.string else np.zeros(shape)
    return examples


def request_instances(model: keras.Model, request_examples: Any = None) -> list[dict[str, Any]]:
    """REST ``instances`` (one dict per row) from model inputs for a few rows.

    ``request_examples`` is what ``model.predict`` takes (a dict of columns keyed by the model's input
    keys, or an array); None gives two rows of zeros and empty strings. The instances are keyed by the
    signature input names (see :class:`ServingInput`).
    """
    specs = serving_inputs(model)
    if request_examples is None:
        columns = _default_examples(specs)
    elif isinstance(request_examples, dict):
        renamed = {s.key: s.name for s in specs}
        columns = {}
        for key, value in request_examples.items():
            columns[renamed[key] if key in renamed else str(key)] = value
    else:
        flat = keras.tree.flatten(request_examples)
        if len(flat) != len(specs):
            raise ValueError(
                f"Expected `request_examples` for the model inputs {[s.name for s in specs]}. Received "
                f"{len(flat)} array(s)."
            )
        columns = {s.name: value for s, value in zip(specs, flat, strict=True)}
    names = [s.name for s in specs]
    unknown = sorted(set(columns) - set(names))
    missing = [n for n in names if n not in columns]
    if unknown or missing:
        raise ValueError(
            f"Expected `request_examples` to hold exactly the inputs {names}. Missing: {missing}; unknown: "
            f"{unknown}."
        )
    arrays = {}
    for s in specs:
        value = np.asarray(columns[s.name])
        if value.ndim == 0:
            raise ValueError(f"Expected rows of feature {s.name!r} in `request_examples`. Received a scalar.")
        row_shape = tuple(s.spec.shape[1:])
        try:
            value = value.reshape((len(value), *row_shape))
        except ValueError:
            raise ValueError(
                f"Expected feature {s.name!r} in `request_examples` to have rows of shape {row_shape}. "
                f"Received shape {value.shape}."
            ) from None
        if s.spec.dtype == tf.string:
            if value.dtype.kind not in ("U", "S", "O"):
                raise ValueError(f"Expected strings for feature {s.name!r}. Received dtype {value.dtype}.")
            arrays[s.name] = rest._json_value(value)
        elif s.spec.dtype.is_integer or s.spec.dtype.is_bool:
            arrays[s.name] = value.astype(s.spec.dtype.as_numpy_dtype).tolist()
        else:
            arrays[s.name] = value.astype(np.float64).tolist()
    sizes = {len(v) for v in arrays.values()}
    if len(sizes) != 1 or 0 in sizes:
        raise ValueError(f"Expected the same, non-zero number of rows for every feature. Received {sizes}.")
    n = sizes.pop()
    return [{name: arrays[name][i] for name in names} for i in range(n)]


def instances_to_model_inputs(model: keras.Model, instances: list[Any]) -> Any:
    """REST instances -> what ``model(...)`` takes (used to compare the live model with an export)."""
    specs = serving_inputs(model)
    columns = rest.instances_to_inputs(instances, {s.name: s.spec for s in specs})
    arrays = [
        np.asarray(columns[s.name]).reshape(-1, 1) if s.expand else np.asarray(columns[s.name]) for s in specs
    ]
    structure = model._inputs_struct
    if isinstance(structure, dict):
        return dict(zip([s.key for s in specs], arrays, strict=True))
    return keras.tree.pack_sequence_as(structure, arrays)


# === Files ===


def models_config_text(name: str, base_path: str | os.PathLike[str]) -> str:
    """``ModelServerConfig`` text proto serving the latest version of one model from ``base_path``."""

    def quote(text: str) -> str:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'

    return (
        "model_config_list {\n"
        "  config {\n"
        f"    name: {quote(name)}\n"
        f"    base_path: {quote(str(base_path))}\n"
        '    model_platform: "tensorflow"\n'
        "    model_version_policy {\n"
        "      latest {\n"
        "        num_versions: 1\n"
        "      }\n"
        "    }\n"
        "  }\n"
        "}\n"
    )


def _rows_json(key: str, rows: list[Any], head: dict[str, Any] | None = None) -> str:
    """JSON with one line per row (readable for image rows too)."""
    lines = ["{"] + [f"  {json.dumps(k)}: {json.dumps(v)}," for k, v in (head or {}).items()]
    body = ",\n".join("    " + json.dumps(row) for row in rows)
    return "\n".join([*lines, f'  "{key}": [', body, "  ]", "}"]) + "\n"


def _check_version(version: Any) -> int:
    if isinstance(version, bool) or not isinstance(version, (int, np.integer)) or version < 1:
        raise ValueError(f"Expected `version` to be a positive integer. Received: version={version!r}")
    return int(version)


@contextlib.contextmanager
def _temporary_dir(base: Path) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=base))
    # mkdtemp makes the directory private (0700); a version directory must be readable by the server.
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _serving_response(saved_model_dir: Path, instances: list[Any]) -> dict[str, Any]:
    loaded = tf.saved_model.load(str(saved_model_dir))
    outputs = rest.run_signature(loaded.signatures["serving_default"], instances)
    return {"predictions": rest.to_predictions(outputs)}


def _write_assets_extra(
    directory: Path,
    name: str,
    specs: list[ServingInput],
    tasks: list[str],
    instances: list[Any],
    fusion: Fusion | None = None,
) -> None:
    """The fusion description and the warm-up requests of every signature (these skipped, with a warning,
    without tensorflow-serving-api)."""
    from mtl_keras.export import warmup
    from mtl_keras.export.fusion import FUSION_FILE, formula_tasks

    if fusion is not None:
        extra = directory / "assets.extra"
        extra.mkdir(exist_ok=True)
        description = {
            "signature": fusion.name,
            "formula": fusion.formula,
            "tasks": formula_tasks(fusion.formula),
        }
        atomic_write_text(extra / FUSION_FILE, json.dumps(description, indent=2) + "\n")

    if not warmup.serving_api_available():
        logger.warning(
            "No %s written: tensorflow-serving-api is not installed (`%s`).",
            warmup.WARMUP_FILE,
            rest.SERVING_API_INSTALL,
        )
        return
    inputs = {s.name: s.spec for s in specs}
    columns = rest.instances_to_inputs(instances, inputs)
    signatures = {"serving_default": inputs} | {f"predict_{task}": inputs for task in tasks}
    if fusion is not None:
        signatures[fusion.name] = inputs
    warmup.write_warmup(directory, warmup.prediction_logs(name, signatures, columns))


# === Public entry point ===


def export_for_serving(
    model: keras.Model,
    base_dir: str | os.PathLike[str],
    version: int | None = None,
    *,
    request_examples: Any = None,
    model_name: str | None = None,
    feature_statistics: dict[str, Any] | None = None,
    fusion: Fusion | None = None,
) -> Path:
    """Write ``model`` as version ``version`` of a TF Serving model in ``base_dir``; return the version dir.

    Args:
        model: a `MultiTaskModel` (any Functional model whose outputs are a dict keyed by task name).
        base_dir: the model's base path; created if needed.
        version: the version number; None takes the next one (1 for an empty ``base_dir``). An existing
            version is never overwritten.
        request_examples: model inputs for a few rows, as ``model.predict`` takes them, written to
            ``request.json`` (strings stay strings, numbers become JSON numbers); None writes two rows of
            zeros / empty strings.
        model_name: the name in ``models.config``; defaults to ``model.name``.
        feature_statistics: the training feature statistics
            (:func:`mtl_keras.monitoring.feature_statistics.feature_statistics`), written to the version's
            ``assets.extra/feature_statistics.json``; None writes none.
        fusion: an extra score-fusion signature (:class:`Fusion`), described in the version's
            ``assets.extra/fusion.json`` for ``export --check``; None adds none.

    The SavedModel and its ``assets.extra`` files (the warm-up requests, the feature statistics) are
    written to a temporary directory inside ``base_dir``, loaded back and run on the request (giving
    ``response.json``), then renamed into place, so a failed export leaves no version directory. ``models.config``, ``request.json`` and ``response.json`` describe the version just written.

    Raises:
        FileExistsError: ``version`` (or a concurrent export of the same version) already exists.
    """
    base = Path(base_dir).absolute()
    base.mkdir(parents=True, exist_ok=True)
    name = model.name if model_name is None else model_name
    if not isinstance(name, str) or not name:
        raise ValueError(f"Expected `model_name` to be a non-empty string. Received: model_name={name!r}")
    existing = rest.list_versions(base)
    if version is None:
        version = (existing[-1] + 1) if existing else 1
    else:
        version = _check_version(version)
        if version in existing:
            raise FileExistsError(
                f"Version {version} already exists in {base}; exports never overwrite a version. "
                f"Existing versions: {existing}. Pass version=None for the next one ({existing[-1] + 1})."
            )
    target = base / str(version)
    instances = request_instances(model, request_examples)
    check_fusion(model, fusion)
    archive = build_archive(model, fusion)
    with _temporary_dir(base) as temporary:
        archive.write_out(str(temporary), verbose=False)
        _write_assets_extra(
            temporary, name, serving_inputs(model), list(model._outputs_struct), instances, fusion
        )
        if feature_statistics is not None:
            from mtl_keras.monitoring.feature_statistics import write_feature_statistics

            write_feature_statistics(temporary, feature_statistics)
        response = _serving_response(temporary, instances)
        try:
            # rename() refuses an existing non-empty directory: a concurrent export of the same version
            # loses here instead of overwriting.
            os.rename(temporary, target)
        except OSError as error:
            raise FileExistsError(
                f"Version {version} appeared in {base} during the export; it was not overwritten."
            ) from error
    atomic_write_text(
        base / rest.REQUEST_FILE, _rows_json("instances", instances, {"signature_name": "serving_default"})
    )
    atomic_write_text(base / rest.RESPONSE_FILE, _rows_json("predictions", response["predictions"]))
    atomic_write_text(base / rest.CONFIG_FILE, models_config_text(name, base))
    mapping = input_name_mapping(model)
    if mapping:
        atomic_write_text(base / INPUT_NAMES_FILE, json.dumps(mapping, indent=2, sort_keys=True) + "\n")
        logger.info(
            "Model inputs served under safe signature names (written to %s): %s", INPUT_NAMES_FILE, mapping
        )
    else:
        (base / INPUT_NAMES_FILE).unlink(missing_ok=True)  # describes the newest version, as request.json
    logger.info("Exported %s as version %d to %s", name, version, target)
    return target
