"""Training-step time, first-step time and peak memory against the number of tasks T (issue 16).

The problem of the issue: ``builders.hard_sharing(tasks, 64, trunk=(256, 256), tower_units=())`` with T binary
tasks (static equal weights unless a balancer is named), batch 256, Adam, 2 intra-op / 1 inter-op threads on
the CPU, against the same network in plain Keras with T ``Dense(1)`` dict heads (``compile(loss={...})``), and
with one fused ``Dense(T)`` head. Models (``--models``): ``static`` (mtl-keras, static weights), ``separate``
(static, towers not fused: ``fuse_towers=False``, where the builder has the option), ``gradnorm``,
``pcgrad@param``, ``pcgrad@rep``, ``mgda@param``, ``mgda@rep``, ``upgrad@param``, ``upgrad@rep``, ``plain``,
``fused``; each without metrics and, with ``--metrics both``, also with the tasks' default metrics (AUC and
accuracy; for plain Keras the same two metrics per head). XLA off, on or both (``--xla``).

A step is one ``train_on_batch`` on a fixed batch; ``ms_per_step`` is the median of the timed steps (after
warm-up), ``first_step_s`` the first call (tracing and compilation). Configurations are interleaved in rounds so
that a drift of the shared machine hits all alike; ratios are to the plain-Keras dict-heads step and to the
mtl-keras static step of the same T, metrics and XLA setting, in the same process. With ``--memory`` every
configuration is also run alone in a fresh process (build, first step, 10 steps) and its peak resident set size
is reported (``VmHWM``; TensorFlow's own import is included, so compare the differences).

    python benchmarks/task_scaling.py --json benchmarks/results/task_scaling.json \\
        --markdown benchmarks/results/task_scaling.md
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ["CUDA_VISIBLE_DEVICES"] = ""

import argparse
import inspect
import subprocess
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

MODELS = (
    "static",
    "separate",
    "gradnorm",
    "pcgrad@param",
    "pcgrad@rep",
    "mgda@param",
    "mgda@rep",
    "upgrad@param",
    "upgrad@rep",
    "plain",
    "fused",
)
LABELS = {
    "static": "mtl-keras static",
    "separate": "mtl-keras static, towers not fused",
    "plain": "plain Keras, dict heads",
    "fused": "one fused Dense(T) head",
}
BATCH, WIDTH = 256, 64


def _names(t: int) -> list[str]:
    return [f"t{i}" for i in range(t)]


def _has_fuse_option() -> bool:
    return "fuse_towers" in inspect.signature(hard_sharing).parameters


def build(model: str, t: int, jit: bool, metrics: bool = False) -> tuple[Any, Any, Any]:
    """``(model, x, y)`` compiled for configuration ``model`` with ``t`` tasks."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(BATCH, WIDTH)).astype("float32"))
    labels = (rng.random((BATCH, t)) < 0.5).astype("float32")
    y: Any = {name: tf.constant(labels[:, i : i + 1]) for i, name in enumerate(_names(t))}
    if model not in ("plain", "fused"):
        tasks = [Task(name, "binary", metrics=None if metrics else []) for name in _names(t)]
        options: dict[str, Any] = {}
        if model == "separate":
            options["fuse_towers"] = False
        net = hard_sharing(tasks, WIDTH, trunk=(256, 256), tower_units=(), **options)
        balancer, _, level = model.partition("@")
        net.compile(
            keras.optimizers.Adam(1e-3),
            balancer=None if model in ("static", "separate") else balancer,
            balancer_level=level or "param",
            jit_compile=jit,
        )
        return net, x, y
    inputs = keras.Input((WIDTH,))
    h = keras.layers.Dense(256, activation="relu")(inputs)
    h = keras.layers.Dense(256, activation="relu")(h)
    metric_list = (lambda: ["auc", "accuracy"]) if metrics else (lambda: [])
    if model == "plain":
        outputs = {name: keras.layers.Dense(1, activation="sigmoid", name=name)(h) for name in _names(t)}
        net = keras.Model(inputs, outputs)
        net.compile(
            keras.optimizers.Adam(1e-3),
            loss={name: "binary_crossentropy" for name in _names(t)},
            metrics={name: metric_list() for name in _names(t)} if metrics else None,
            jit_compile=jit,
        )
        return net, x, y
    net = keras.Model(inputs, keras.layers.Dense(t, activation="sigmoid")(h))
    net.compile(
        keras.optimizers.Adam(1e-3),
        loss="binary_crossentropy",
        metrics=[keras.metrics.AUC(multi_label=True, num_labels=t), "binary_accuracy"] if metrics else None,
        jit_compile=jit,
    )
    return net, x, tf.constant(labels)


def _models(args: argparse.Namespace) -> list[str]:
    models = list(args.models)
    if "separate" in models and not _has_fuse_option():
        models.remove("separate")
    return models


def configs(args: argparse.Namespace) -> list[tuple[str, int, bool, bool]]:
    jits = {"off": (False,), "on": (True,), "both": (False, True)}[args.xla]
    metric_settings = {"off": (False,), "on": (True,), "both": (False, True)}[args.metrics]
    result = []
    for t in args.tasks:
        for jit in jits:
            for metrics in metric_settings:
                for model in _models(args):
                    if metrics and model not in ("static", "separate", "plain", "fused"):
                        continue  # the metrics' cost is the same under every balancer
                    result.append((model, t, jit, metrics))
    return result


def peak_rss_mib(config: tuple[str, int, bool, bool]) -> float:
    """Peak RSS (MiB) of a fresh process that builds ``config`` and runs 11 steps: its ``VmHWM`` (the
    high-water mark of its own memory map; ``ru_maxrss`` would carry this process's peak over the exec)."""
    model, t, jit, metrics = config
    code = (
        "import sys; sys.argv = ['task_scaling']; "
        f"sys.path.insert(0, {str(Path(__file__).resolve().parent)!r}); import task_scaling as s; "
        f"m, x, y = s.build({model!r}, {t}, {jit}, {metrics}); "
        "[m.train_on_batch(x, y) for _ in range(11)]; "
        "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0])"
    )
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    ).stdout
    return int(out.strip().splitlines()[-1]) / 1024.0


def run(args: argparse.Namespace) -> dict[str, Any]:
    all_configs = configs(args)
    built = {}
    first = {}
    for config in all_configs:
        model, x, y = build(*config)
        start = time.perf_counter()
        model.train_on_batch(x, y)
        first[config] = time.perf_counter() - start
        for _ in range(args.warmup):
            model.train_on_batch(x, y)
        built[config] = (model, x, y)
        print(f"built {config}: first step {first[config]:.1f} s", flush=True)
    times: dict[Any, list[float]] = {c: [] for c in all_configs}
    for round_index in range(args.rounds):
        shift = round_index % len(all_configs)
        for config in all_configs[shift:] + all_configs[:shift]:
            model, x, y = built[config]
            for _ in range(args.steps):
                start = time.perf_counter()
                model.train_on_batch(x, y)
                times[config].append(time.perf_counter() - start)
    memory = {}
    if args.memory:
        for config in all_configs:
            memory[config] = peak_rss_mib(config)
            print(f"peak RSS {config}: {memory[config]:.0f} MiB", flush=True)
    rows = []
    for model, t, jit, metrics in all_configs:
        median = float(np.median(times[model, t, jit, metrics])) * 1e3
        plain = times.get(("plain", t, jit, metrics))
        static = times.get(("static", t, jit, metrics))
        rows.append(
            {
                "model": model,
                "label": LABELS.get(model, f"mtl-keras {model}"),
                "tasks": t,
                "jit_compile": jit,
                "metrics": metrics,
                "ms_per_step": median,
                "ratio_to_plain_dict_heads": median / (float(np.median(plain)) * 1e3) if plain else None,
                "ratio_to_static": median / (float(np.median(static)) * 1e3) if static else None,
                "first_step_s": first[model, t, jit, metrics],
                "peak_rss_mib": memory.get((model, t, jit, metrics)),
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
            "fused_towers_option": _has_fuse_option(),
        },
        "rows": rows,
    }


def _ratio(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def markdown(result: dict[str, Any]) -> str:
    lines = [
        *_common.markdown_head("# Step time and memory against the number of tasks", result["command"]),
        "Hard sharing, 64 inputs, Dense 256-256 trunk, T binary heads, batch 256, Adam, `train_on_batch`, 2 "
        "intra-op threads. Median ms per step; ratios to plain Keras with dict heads and to the mtl-keras "
        "static step at the same T, metrics and XLA setting (same process); first step = tracing + "
        "compilation; peak RSS of a fresh process running the configuration alone (TensorFlow included).",
        "",
        "| T | XLA | metrics | model | ms / step | × plain dict heads | × static | first step (s) | peak RSS (MiB) |",
        "|---:|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        rss = "" if r["peak_rss_mib"] is None else f"{r['peak_rss_mib']:.0f}"
        lines.append(
            f"| {r['tasks']} | {'on' if r['jit_compile'] else 'off'} | {'on' if r['metrics'] else 'off'} | "
            f"{r['label']} | {r['ms_per_step']:.2f} | {_ratio(r['ratio_to_plain_dict_heads'])} | "
            f"{_ratio(r['ratio_to_static'])} | {r['first_step_s']:.1f} | {rss} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = _common.parser(__doc__)
    _common.report_arguments(parser)
    parser.add_argument("--tasks", type=int, nargs="+", default=[2, 8, 32, 40])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--xla", choices=("off", "on", "both"), default="off")
    parser.add_argument("--metrics", choices=("off", "on", "both"), default="both")
    parser.add_argument("--memory", action="store_true", help="also the peak RSS of each configuration")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args(argv)
    args.command = _common.command_line(__file__, argv)
    result = run(args)
    _common.write_report(result, markdown, args.json, args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
