"""Training-step time against the number of tasks T, with and without XLA (issue 16, item 0).

The problem of the issue: ``builders.hard_sharing(tasks, 64, trunk=(256, 256), tower_units=())`` with T binary
tasks (no metrics, static equal weights; its heads fused into one ``towers`` layer, the default, and with
``fuse_towers=False``, one ``Tower`` per task), batch 256, Adam, 2 intra-op / 1 inter-op threads on the CPU, against
the same network in plain Keras with T ``Dense(1)`` dict heads, and with one fused ``Dense(T)`` head; each
compiled with ``jit_compile=False`` and ``True``. A step is one ``train_on_batch`` on a fixed batch;
``ms_per_step`` is the median of the timed steps (after warm-up), ``first_step_s`` the first call (tracing and
compilation). Configurations are interleaved in rounds so that a drift of the shared machine hits all alike;
ratios are to the plain-Keras dict-heads step of the same T and XLA setting, in the same process.

    python benchmarks/task_scaling.py --json benchmarks/results/task_scaling.json \\
        --markdown benchmarks/results/task_scaling.md
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ["CUDA_VISIBLE_DEVICES"] = ""

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import tensorflow as tf

tf.config.threading.set_intra_op_parallelism_threads(2)
tf.config.threading.set_inter_op_parallelism_threads(1)
tf.get_logger().setLevel("ERROR")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from mtl_keras import Task  # noqa: E402
from mtl_keras.builders import hard_sharing  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

KINDS = (
    "mtl-keras static",
    "mtl-keras static, separate towers",
    "plain Keras, dict heads",
    "one fused Dense(T) head",
)
BASE = "plain Keras, dict heads"
BATCH, WIDTH = 256, 64


def _names(t: int) -> list[str]:
    return [f"t{i}" for i in range(t)]


def build(kind: str, t: int, jit: bool) -> tuple[Any, Any, Any]:
    """``(model, x, y)`` compiled for ``kind`` with ``t`` tasks."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(BATCH, WIDTH)).astype("float32"))
    labels = (rng.random((BATCH, t)) < 0.5).astype("float32")
    if kind.startswith("mtl-keras"):
        tasks = [Task(name, "binary", metrics=[]) for name in _names(t)]
        model = hard_sharing(
            tasks, WIDTH, trunk=(256, 256), tower_units=(), fuse_towers=kind == "mtl-keras static"
        )
        model.compile(keras.optimizers.Adam(1e-3), jit_compile=jit)
        y: Any = {name: tf.constant(labels[:, i : i + 1]) for i, name in enumerate(_names(t))}
        return model, x, y
    inputs = keras.Input((WIDTH,))
    h = keras.layers.Dense(256, activation="relu")(inputs)
    h = keras.layers.Dense(256, activation="relu")(h)
    if kind == BASE:
        outputs = {name: keras.layers.Dense(1, activation="sigmoid", name=name)(h) for name in _names(t)}
        model = keras.Model(inputs, outputs)
        model.compile(
            keras.optimizers.Adam(1e-3),
            loss={name: "binary_crossentropy" for name in _names(t)},
            jit_compile=jit,
        )
        y = {name: tf.constant(labels[:, i : i + 1]) for i, name in enumerate(_names(t))}
        return model, x, y
    model = keras.Model(inputs, keras.layers.Dense(t, activation="sigmoid")(h))
    model.compile(keras.optimizers.Adam(1e-3), loss="binary_crossentropy", jit_compile=jit)
    return model, x, tf.constant(labels)


def run(args: argparse.Namespace) -> dict[str, Any]:
    xla = {"both": (False, True), "off": (False,), "on": (True,)}[args.xla]
    configs = [(kind, t, jit) for t in args.tasks for jit in xla for kind in KINDS]
    built = {}
    first = {}
    for config in configs:
        model, x, y = build(*config)
        start = time.perf_counter()
        model.train_on_batch(x, y)
        first[config] = time.perf_counter() - start
        for _ in range(args.warmup):
            model.train_on_batch(x, y)
        built[config] = (model, x, y)
        print(f"built {config}: first step {first[config]:.1f} s", flush=True)
    times: dict[Any, list[float]] = {c: [] for c in configs}
    for round_index in range(args.rounds):
        order = configs[round_index % len(configs) :] + configs[: round_index % len(configs)]
        for config in order:
            model, x, y = built[config]
            for _ in range(args.steps):
                start = time.perf_counter()
                model.train_on_batch(x, y)
                times[config].append(time.perf_counter() - start)
    rows = []
    for kind, t, jit in configs:
        median = float(np.median(times[kind, t, jit])) * 1e3
        base = float(np.median(times[BASE, t, jit])) * 1e3
        rows.append(
            {
                "model": kind,
                "tasks": t,
                "jit_compile": jit,
                "ms_per_step": median,
                "ratio_to_plain_dict_heads": median / base,
                "first_step_s": first[kind, t, jit],
            }
        )
    return {
        "benchmark": "task_scaling",
        "command": args.command,
        "machine": _common.machine(),
        "settings": {
            "batch": BATCH,
            "inputs": WIDTH,
            "trunk": [256, 256],
            "rounds": args.rounds,
            "steps_per_round": args.steps,
            "warmup": args.warmup,
            "threads": "2 intra-op, 1 inter-op",
        },
        "rows": rows,
    }


def markdown(result: dict[str, Any]) -> str:
    lines = [
        *_common.markdown_head(
            "# Step time against the number of tasks, with and without XLA", result["command"]
        ),
        "Hard sharing, 64 inputs, Dense 256-256 trunk, T binary heads, no metrics, batch 256, Adam, "
        "`train_on_batch`, 2 intra-op threads. Median ms per step; ratio to plain Keras with dict heads at the "
        "same T and XLA setting (same process); first step = tracing + compilation.",
        "",
        "| T | XLA | model | ms / step | × plain dict heads | first step (s) |",
        "|---:|---|---|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['tasks']} | {'on' if r['jit_compile'] else 'off'} | {r['model']} | {r['ms_per_step']:.2f} | "
            f"{r['ratio_to_plain_dict_heads']:.2f} | {r['first_step_s']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = _common.parser(__doc__)
    _common.report_arguments(parser)
    parser.add_argument("--tasks", type=int, nargs="+", default=[2, 8, 32])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument(
        "--xla", choices=("both", "off", "on"), default="both", help="jit_compile settings to time"
    )
    args = parser.parse_args(argv)
    args.command = _common.command_line(__file__, argv)
    result = run(args)
    _common.write_report(result, markdown, args.json, args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
