"""Training throughput (examples/s) on one device and on N devices under MirroredStrategy (issue 7).

Run by hand on a machine with GPUs; there are no committed results (the project's CI machines have none).

The model is MMoE (8 experts of 256-128 units, 3 towers of 64 units) on 256 dense inputs with two
regression tasks and one binary task, Adam(1e-3), batch ``--batch-per-replica`` examples per device (the
global batch grows with the number of devices, as in data-parallel training). For every configuration
``--balancers`` (default: ``static`` and ``pcgrad``, a loss-level and a gradient-level method) a fresh
model is compiled inside the strategy's scope and trained with ``model.fit`` on a repeated in-memory
``tf.data`` pipeline: ``--warmup`` steps (tracing, autotuning) untimed, then ``--steps`` steps timed. One
"device" is the default strategy on the first GPU; "N devices" is MirroredStrategy over the first N GPUs,
for every N in ``--devices`` (default: 1, 2, 4, … up to every visible GPU).

    python benchmarks/throughput.py --json throughput.json --markdown throughput.md

Without a GPU the script stops, unless ``--cpu-devices K`` splits the CPU into K logical devices (only to
check that the script runs; CPU "devices" share the same cores, so the numbers mean nothing).
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import argparse
import platform
import sys
import time
from pathlib import Path
from typing import Any

import tensorflow as tf

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `_common`, however this file is loaded
import _common

INPUTS = 256


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = _common.parser(__doc__)
    parser.add_argument("--balancers", nargs="+", default=["static", "pcgrad"])
    parser.add_argument("--devices", type=int, nargs="+", help="device counts (default: 1, 2, 4, ... all)")
    parser.add_argument("--batch-per-replica", type=int, default=512)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--cpu-devices", type=int, help="split the CPU into this many devices (smoke test)")
    _common.report_arguments(parser)
    return parser.parse_args(argv)


def _devices(args: argparse.Namespace) -> list[str]:
    if args.cpu_devices:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * args.cpu_devices
        )
        return [d.name for d in tf.config.list_logical_devices("CPU")]
    return [d.name for d in tf.config.list_logical_devices("GPU")]


def _counts(args: argparse.Namespace, available: int) -> list[int]:
    if args.devices:
        too_many = [n for n in args.devices if n > available]
        if too_many:
            raise SystemExit(f"Asked for {too_many} devices; {available} are visible.")
        return sorted(set(args.devices))
    counts, n = [], 1
    while n < available:
        counts.append(n)
        n *= 2
    return [*counts, available]


def _data(batch: int) -> tf.data.Dataset:
    import numpy as np

    rng = np.random.default_rng(0)
    n = batch * 8
    x = rng.normal(size=(n, INPUTS)).astype("float32")
    y = {
        "a": (x[:, :8].sum(axis=1) > 0).astype("float32"),
        "b": x[:, 8:16].sum(axis=1).astype("float32"),
        "c": (x[:, 16] - x[:, 17]).astype("float32"),
    }
    return tf.data.Dataset.from_tensor_slices((x, y)).repeat().batch(batch, drop_remainder=True).prefetch(8)


def _measure(strategy: tf.distribute.Strategy, balancer: str, args: argparse.Namespace) -> dict[str, Any]:
    import keras

    from mtl_keras import Task, builders
    from mtl_keras.distribute import in_scope

    replicas = strategy.num_replicas_in_sync
    batch = args.batch_per_replica * replicas

    def build() -> Any:
        keras.utils.set_random_seed(0)
        tasks = [Task("a", "binary"), Task("b", "regression"), Task("c", "regression")]
        model = builders.mmoe(tasks, INPUTS, num_experts=8, expert_units=(256, 128), tower_units=(64,))
        model.compile(keras.optimizers.Adam(1e-3), balancer=balancer)
        return model

    model = in_scope(strategy, build)
    data = _data(batch)
    model.fit(data, steps_per_epoch=args.warmup, epochs=1, shuffle=False, verbose=0)
    start = time.perf_counter()
    model.fit(data, steps_per_epoch=args.steps, epochs=1, shuffle=False, verbose=0)
    seconds = time.perf_counter() - start
    return {
        "balancer": balancer,
        "devices": replicas,
        "global_batch": batch,
        "steps": args.steps,
        "seconds": seconds,
        "examples_per_s": args.steps * batch / seconds,
    }


def run(args: argparse.Namespace, argv: list[str] | None = None) -> dict[str, Any]:
    devices = _devices(args)
    if not devices:
        raise SystemExit(
            "No GPU is visible to TensorFlow (tf.config.list_physical_devices('GPU') is empty): nothing to "
            "measure. Use --cpu-devices K only to check that the script runs."
        )
    rows = []
    for count in _counts(args, len(devices)):
        if count == 1:
            with tf.device(devices[0]):
                strategy = tf.distribute.get_strategy()
                rows += [_measure(strategy, b, args) for b in args.balancers]
        else:
            strategy = tf.distribute.MirroredStrategy(devices[:count])
            rows += [_measure(strategy, b, args) for b in args.balancers]
    for row in rows:
        one = next(r for r in rows if r["balancer"] == row["balancer"] and r["devices"] == 1)
        row["speed_up"] = row["examples_per_s"] / one["examples_per_s"] if one else None
    return {
        "command": _common.command_line(__file__, argv),
        "device_kind": "CPU (logical, smoke test)" if args.cpu_devices else "GPU",
        "devices": devices,
        "tensorflow": tf.__version__,
        "platform": platform.platform(),
        "rows": rows,
    }


def markdown(results: dict[str, Any]) -> str:
    lines = [
        f"Throughput on {results['device_kind']} ({', '.join(results['devices'])}), TF {results['tensorflow']}.",
        "",
        "| balancer | devices | global batch | examples/s | speed-up |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in results["rows"]:
        lines.append(
            f"| {r['balancer']} | {r['devices']} | {r['global_batch']} | {r['examples_per_s']:,.0f} "
            f"| {r['speed_up']:.2f}x |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    _common.write_report(run(args, argv), markdown, args.json, args.markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
