"""Cost of task affinity, as a multiple of one plain training run (issue 17): the lookahead callback every
k steps, and pairwise training.

The problem: 64 inputs, T regression tasks built from three shared functions (task t reads function
t mod 3, scaled, plus noise), hard sharing with a Dense 256-256 ReLU trunk and Dense(1) heads
(``builders.hard_sharing(tasks, 64, trunk=(256, 256), tower_units=())``), batch 256, Adam(1e-3), ``--n``
training rows (``n / 256`` steps per epoch), ``--epochs`` epochs, CPU with 2 intra-op threads.

What is timed: the wall clock of the first ``model.fit`` of a freshly built and compiled model, over the
whole budget. It includes tracing the train function once (a few seconds; larger with the lookahead, whose
graph holds T extra backward and T + 1 extra forward passes), as a user pays it: the callback adds its
hook when ``fit`` starts and removes it at the end, so every ``fit`` with it traces once.

* ``plain``: the multi-task model without callback;
* ``lookahead k``: the same with ``LookaheadAffinity(every=k)``; each measured step adds T backward and
  T + 1 forward passes;
* ``pairwise``: the direct definition, every pair of tasks trained as a two-task model plus the
  single-task baselines (``builders.single_task``, one column per task), the same budget each; this is
  T(T − 1)/2 + 1 fits.

Each of ``plain`` and ``lookahead`` is the median over ``--repeats`` fits, interleaved; ``pairwise`` is one
pass (its ratio is dominated by the T² count, not by noise).

    python benchmarks/affinity_cost.py --tasks 3 6 --json benchmarks/results/affinity_cost.json \
        --markdown benchmarks/results/affinity_cost.md
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ["CUDA_VISIBLE_DEVICES"] = ""

import itertools
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common


def problem(num_tasks: int, n: int, seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 64)).astype("float32")
    functions = [np.sin(x[:, 0]) + x[:, 1] * x[:, 2], np.cos(x[:, 3]) - x[:, 4], np.tanh(x[:, 5] * x[:, 6])]
    y = {
        f"t{t}": ((1 + t // 3) * functions[t % 3] + 0.1 * rng.normal(size=n)).astype("float32")
        for t in range(num_tasks)
    }
    return x, y


def timed_fit(model: Any, x: Any, y: Any, epochs: int, callbacks: Sequence[Any] = ()) -> float:
    """Seconds of the first ``fit`` of a fresh model (tracing its train function included)."""
    start = time.perf_counter()
    model.fit(x, y, batch_size=256, epochs=epochs, verbose=0, shuffle=False, callbacks=list(callbacks))
    return time.perf_counter() - start


def measure(num_tasks: int, n: int, epochs: int, repeats: int, everies: Sequence[int]) -> dict[str, Any]:
    import keras

    from mtl_keras import Task, builders
    from mtl_keras.callbacks import LookaheadAffinity

    x, y = problem(num_tasks, n)
    names = list(y)

    def model_for(tasks: Sequence[str]) -> Any:
        keras.utils.set_random_seed(0)
        model = builders.hard_sharing(
            [Task(t, "regression") for t in tasks], 64, trunk=(256, 256), tower_units=()
        )
        model.compile(keras.optimizers.Adam(1e-3), metrics={t: [] for t in tasks})
        return model

    configurations: dict[str, list[float]] = {"plain": [], **{f"lookahead every {k}": [] for k in everies}}
    for _ in range(repeats):
        for name in configurations:
            callbacks = [] if name == "plain" else [LookaheadAffinity(every=int(name.split()[-1]))]
            configurations[name].append(timed_fit(model_for(names), x, y, epochs, callbacks))
    medians = {name: float(np.median(times)) for name, times in configurations.items()}
    pair_seconds = 0.0
    for a, b in itertools.combinations(names, 2):
        pair_seconds += timed_fit(model_for([a, b]), x, {a: y[a], b: y[b]}, epochs)
    keras.utils.set_random_seed(0)
    baseline = builders.single_task(
        [Task(t, "regression") for t in names],
        64,
        architecture="hard_sharing",
        trunk=(256, 256),
        tower_units=(),
    )
    baseline.compile(keras.optimizers.Adam(1e-3), metrics={t: [] for t in names})
    baseline_seconds = timed_fit(baseline, x, y, epochs)
    medians["pairwise (all pairs + baselines)"] = pair_seconds + baseline_seconds
    plain = medians["plain"]
    return {
        "tasks": num_tasks,
        "steps": epochs * (n // 256),
        "seconds": medians,
        "times": configurations,
        "ratio_to_plain": {name: value / plain for name, value in medians.items()},
        "pair_fits": num_tasks * (num_tasks - 1) // 2,
    }


def markdown(report: dict[str, Any]) -> str:
    lines = _common.markdown_head("# Cost of task affinity (× one plain training run)", report["command"])
    lines += [
        f"Machine: {report['machine']['platform']}; {report['epochs']} epochs of {report['n']} rows, "
        f"batch 256; medians over {report['repeats']} interleaved fits (pairwise: one pass).",
        "",
        "| T | steps | configuration | seconds | × plain |",
        "|---|---|---|---|---|",
    ]
    for run in report["runs"]:
        for name, seconds in run["seconds"].items():
            lines.append(
                f"| {run['tasks']} | {run['steps']} | {name} | {seconds:.2f} | {run['ratio_to_plain'][name]:.2f} |"
            )
    lines += [
        "",
        "Lookahead every k: T backward and T + 1 forward passes on every k-th step; every step keeps a",
        "persistent tape. Pairwise: T(T − 1)/2 two-task fits plus one fit of the single-task baselines.",
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _common.parser(__doc__)
    parser.add_argument("--tasks", type=int, nargs="+", default=[3, 6])
    parser.add_argument("--n", type=int, default=8192)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--every", type=int, nargs="+", default=[1, 10])
    _common.report_arguments(parser)
    args = parser.parse_args(argv)
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(2)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    runs = [measure(t, args.n, args.epochs, args.repeats, args.every) for t in args.tasks]
    report = {
        "command": _common.command_line(__file__, argv),
        "machine": _common.machine(),
        "n": args.n,
        "epochs": args.epochs,
        "repeats": args.repeats,
        "runs": runs,
    }
    _common.write_report(report, markdown, args.json, args.markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
