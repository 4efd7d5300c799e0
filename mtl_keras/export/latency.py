"""Per-signature latency of an exported version, in-process: ``latency.json`` beside the versions.

The version's SavedModel is loaded with ``tf.saved_model.load`` and each signature is called directly (no
server, no REST or gRPC encoding: this is the model's own compute time plus TensorFlow's call overhead) on
the rows of ``request.json``, repeated (cycled) to each batch size. Every batch size gets :data:`WARMUP_CALLS`
untimed calls first (tracing, allocation), then ``repeats`` timed calls with ``time.perf_counter``; the
report holds, per signature and batch size, the median (p50) and the 99th percentile (p99, numpy's linear
interpolation: with fewer than 100 calls it lies between the two slowest) in milliseconds, the mean and the
examples per second at the median.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from mtl_keras._io import atomic_write_text
from mtl_keras.export import _standalone_check as rest

#: What ``mtl-keras export --check`` measures.
BATCH_SIZES = (1, 256)
REPEATS = 50
WARMUP_CALLS = 3
LATENCY_FILE = "latency.json"


def _batch(columns: dict[str, np.ndarray], size: int) -> dict[str, tf.Tensor]:
    tensors = {}
    for name, values in columns.items():
        index = np.arange(size) % len(values)
        tensors[name] = tf.constant(values[index])
    return tensors


def _positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"Expected `{name}` to be a positive integer. Received: {name}={value!r}")
    return int(value)


def measure_latency(
    base_dir: str | os.PathLike[str],
    version: int | None = None,
    *,
    batch_sizes: Sequence[int] = BATCH_SIZES,
    repeats: int | None = None,
) -> dict[str, Any]:
    """Time every signature of ``version`` (default: the newest) of the export in ``base_dir``, each batch
    size ``repeats`` times (default :data:`REPEATS`).

    Returns ``{"version", "batch_sizes", "repeats", "signatures": {name: {"<batch>": {"p50_ms", "p99_ms",
    "mean_ms", "examples_per_second"}}}, ...}``.
    """
    repeats = _positive("repeats", REPEATS if repeats is None else repeats)
    sizes = [_positive("batch_sizes", b) for b in batch_sizes]
    if not sizes:
        raise ValueError("Expected at least one batch size. Received: batch_sizes=[]")
    base = Path(base_dir)
    versions = rest.list_versions(base)
    if version is None and versions:
        version = versions[-1]
    if version not in versions:
        raise ValueError(f"Expected version {version} in {base}. Found versions: {versions}")
    request = json.loads((base / rest.REQUEST_FILE).read_text(encoding="utf-8"))
    loaded = tf.saved_model.load(str(base / str(version)))
    results: dict[str, Any] = {}
    for name in sorted(n for n in loaded.signatures if not n.startswith("__")):
        function = loaded.signatures[name]
        columns = rest.instances_to_inputs(request["instances"], rest.input_specs(function))
        per_batch = {}
        for size in sizes:
            inputs = _batch(columns, size)
            for _ in range(WARMUP_CALLS):
                function(**inputs)
            times = np.empty(repeats)
            for i in range(repeats):
                start = time.perf_counter()
                outputs = function(**inputs)
                for value in outputs.values():
                    value.numpy()  # the result is on the host, as a server would send it
                times[i] = time.perf_counter() - start
            milliseconds = times * 1e3
            p50 = float(np.percentile(milliseconds, 50))
            per_batch[str(size)] = {
                "p50_ms": p50,
                "p99_ms": float(np.percentile(milliseconds, 99)),
                "mean_ms": float(milliseconds.mean()),
                "examples_per_second": size / (p50 / 1e3),
            }
        results[name] = per_batch
    return {
        "base_dir": str(base.resolve()),
        "version": version,
        "batch_sizes": sizes,
        "repeats": repeats,
        "warmup_calls": WARMUP_CALLS,
        "signatures": results,
        "environment": {
            "tensorflow": tf.__version__,
            "machine": platform.machine(),
            "processor": platform.processor(),
            "cpu_count": os.cpu_count(),
        },
    }


def write_latency(base_dir: str | os.PathLike[str], report: dict[str, Any]) -> Path:
    """Write ``report`` to ``base_dir/latency.json``."""
    path = Path(base_dir) / LATENCY_FILE
    atomic_write_text(path, json.dumps(report, indent=2, sort_keys=True) + "\n")
    return path


def format_latency(report: dict[str, Any]) -> str:
    """One line per signature and batch size."""
    lines = [f"latency of version {report['version']} (in-process, {report['repeats']} warm calls each):"]
    for name, per_batch in report["signatures"].items():
        for size, values in per_batch.items():
            lines.append(
                f"  {name:<28} batch {size:>4}: p50 {values['p50_ms']:8.3f} ms  p99 {values['p99_ms']:8.3f} ms"
            )
    return "\n".join(lines)


__all__ = ["BATCH_SIZES", "LATENCY_FILE", "REPEATS", "format_latency", "measure_latency", "write_latency"]
