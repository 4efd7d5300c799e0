"""TF Serving's warm-up file: ``<version>/assets.extra/tf_serving_warmup_requests``.

TF Serving replays the records of this file when it loads a version, before the version serves traffic, so
that the first real requests do not pay for graph initialisation. The file is a TFRecord file of
``tensorflow.serving.PredictionLog`` records, each holding a ``PredictRequest``; the export writes one
record per signature (``serving_default`` and every ``predict_<task>``), all built from the rows of
``request.json``. Building the protos needs ``tensorflow-serving-api``
(``pip install --no-deps tensorflow-serving-api``); without it the export logs a warning and writes no
warm-up file.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

logger = logging.getLogger(__name__)

#: Where TF Serving looks for warm-up requests, relative to a version directory.
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")


def serving_api_available() -> bool:
    """Whether ``tensorflow_serving.apis`` (the PredictionLog protos) can be imported."""
    try:
        from tensorflow_serving.apis import prediction_log_pb2  # noqa: F401
    except ImportError:
        return False
    return True


def _tensor_proto(values: np.ndarray, dtype: tf.DType) -> Any:
    if dtype == tf.string:
        encoded = [v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in values.reshape(-1)]
        return tf.make_tensor_proto(np.array(encoded, dtype=object).reshape(values.shape), dtype=tf.string)
    return tf.make_tensor_proto(values, dtype=dtype)


def prediction_logs(
    model_name: str, signatures: dict[str, dict[str, Any]], columns: dict[str, np.ndarray]
) -> list[Any]:
    """One ``PredictionLog`` per signature, its ``PredictRequest`` holding ``columns``.

    Args:
        model_name: the model's name in ``models.config`` (the request's ``model_spec.name``).
        signatures: ``{signature name: {input name: tf.TensorSpec}}``.
        columns: ``{input name: array}``, the same rows for every signature.
    """
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    logs = []
    for name, specs in signatures.items():
        missing = sorted(set(specs) - set(columns))
        if missing:
            raise ValueError(
                f"Expected warm-up values for every input of signature {name!r}. Missing: {missing}."
            )
        request = predict_pb2.PredictRequest()
        request.model_spec.name = model_name
        request.model_spec.signature_name = name
        for input_name, spec in sorted(specs.items()):
            request.inputs[input_name].CopyFrom(
                _tensor_proto(np.asarray(columns[input_name]), tf.as_dtype(spec.dtype))
            )
        logs.append(
            prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
        )
    return logs


def write_warmup(version_dir: str | os.PathLike[str], logs: list[Any]) -> Path:
    """Write ``logs`` as the TFRecord warm-up file of ``version_dir``; returns its path."""
    path = Path(version_dir) / WARMUP_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for log in logs:
            writer.write(log.SerializeToString())
    return path


def read_warmup(version_dir: str | os.PathLike[str]) -> list[Any]:
    """The ``PredictionLog`` records of ``version_dir``'s warm-up file."""
    from tensorflow_serving.apis import prediction_log_pb2

    path = Path(version_dir) / WARMUP_FILE
    if not path.is_file():
        raise FileNotFoundError(f"No warm-up file {WARMUP_FILE} in {version_dir}.")
    logs = []
    for record in tf.data.TFRecordDataset(str(path)):
        log = prediction_log_pb2.PredictionLog()
        log.ParseFromString(record.numpy())
        logs.append(log)
    return logs


def request_inputs(log: Any) -> dict[str, np.ndarray]:
    """``{input name: array}`` of a ``PredictionLog``'s ``PredictRequest``."""
    return {name: tf.make_ndarray(proto) for name, proto in log.predict_log.request.inputs.items()}


__all__ = [
    "WARMUP_FILE",
    "prediction_logs",
    "read_warmup",
    "request_inputs",
    "serving_api_available",
    "write_warmup",
]
