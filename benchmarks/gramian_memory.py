"""Peak memory and step time of a parameter-level aggregator with the stored Jacobian and in Gramian mode, on a
10.5 M-parameter trunk at T = 8 and 40 (issue 16, item 3).

Hard sharing with a Dense 2048-2048-2048 trunk on 1024 inputs (10.5 M shared parameters), T binary Dense(1)
heads, batch 64, SGD, no metrics, on the CPU with 2 intra-op threads. Configurations: static equal weights
(EW, one backward pass), UPGrad with ``jacobian="stored"`` (T × 10.5 M floats of Jacobian) and UPGrad with
``jacobian="gramian"`` (default chunks of 2^24 Jacobian entries). Each runs alone in a fresh process: build,
compile, one first step (tracing), then ``--steps`` timed ``train_on_batch`` calls; peak memory is the
process's ``VmHWM`` from ``/proc/self/status`` (Linux; TensorFlow's own ~0.8 GB included), reported next to
its ratio to EW's.

    python benchmarks/gramian_memory.py --json benchmarks/results/gramian_memory.json \\
        --markdown benchmarks/results/gramian_memory.md
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common

CONFIGS = (("static", None), ("upgrad", "stored"), ("upgrad", "gramian"))
INPUTS, TRUNK, BATCH = 1024, (2048, 2048, 2048), 64

_CHILD = r"""
import json, os, sys, time
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
os.environ["CUDA_VISIBLE_DEVICES"] = ""
import tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(2)
tf.config.threading.set_inter_op_parallelism_threads(1)
import keras, numpy as np
from mtl_keras import Task
from mtl_keras.builders import hard_sharing
balancer, jacobian, t, steps, inputs, trunk, batch = json.loads(sys.argv[1])
keras.utils.set_random_seed(0)
rng = np.random.default_rng(0)
tasks = [Task(f"t{i}", "binary", metrics=[]) for i in range(t)]
model = hard_sharing(tasks, inputs, trunk=tuple(trunk), tower_units=())
options = {} if jacobian is None else {"jacobian": jacobian}
model.compile(keras.optimizers.SGD(1e-3), balancer=None if balancer == "static" else balancer, **options)
x = tf.constant(rng.normal(size=(batch, inputs)).astype("float32"))
y = {task.name: tf.constant((rng.random((batch, 1)) < 0.5).astype("float32")) for task in tasks}
start = time.perf_counter(); model.train_on_batch(x, y); first = time.perf_counter() - start
times = []
for _ in range(steps):
    start = time.perf_counter(); model.train_on_batch(x, y); times.append(time.perf_counter() - start)
peak = [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")][0]
shared = int(sum(v.shape.num_elements() for v in model.shared_variables))
print(json.dumps({"step": type(model._runner.step).__name__, "first_step_s": first,
                  "ms_per_step": 1e3 * float(np.median(times)), "peak_mib": peak / 1024, "shared": shared}))
"""


def measure(balancer: str, jacobian: str | None, t: int, steps: int) -> dict[str, Any]:
    arguments = json.dumps([balancer, jacobian, t, steps, INPUTS, list(TRUNK), BATCH])
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, arguments],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def run(args: Any) -> dict[str, Any]:
    rows = []
    for t in args.tasks:
        base = None
        for balancer, jacobian in CONFIGS:
            result = measure(balancer, jacobian, t, args.steps)
            base = base or result
            row = {
                "tasks": t,
                "balancer": balancer,
                "jacobian": jacobian,
                **result,
                "peak_ratio_to_ew": result["peak_mib"] / base["peak_mib"],
                "time_ratio_to_ew": result["ms_per_step"] / base["ms_per_step"],
                "jacobian_mib": t * result["shared"] * 4 / 2**20,
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    return {
        "benchmark": "gramian_memory",
        "command": args.command,
        "machine": _common.machine(),
        "settings": {"inputs": INPUTS, "trunk": list(TRUNK), "batch": BATCH, "steps": args.steps},
        "rows": rows,
    }


def markdown(result: dict[str, Any]) -> str:
    lines = [
        *_common.markdown_head(
            "# Peak memory of the stored Jacobian and of Gramian mode (10.5 M-parameter trunk)",
            result["command"],
        ),
        "Hard sharing, Dense 2048-2048-2048 trunk on 1024 inputs, T binary heads, batch 64, SGD, no metrics, "
        "2 intra-op threads; each configuration alone in a fresh process (peak = `VmHWM`, TensorFlow included). "
        "'J size' is what the stored Jacobian alone takes (T × shared parameters × 4 bytes).",
        "",
        "| T | balancer | Jacobian | step | J size (MiB) | peak (MiB) | × EW peak | ms / step | × EW time | first step (s) |",
        "|---:|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['tasks']} | {r['balancer']} | {r['jacobian'] or '—'} | {r['step']} | "
            f"{r['jacobian_mib']:.0f} | {r['peak_mib']:.0f} | {r['peak_ratio_to_ew']:.2f} | "
            f"{r['ms_per_step']:.0f} | {r['time_ratio_to_ew']:.2f} | {r['first_step_s']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = _common.parser(__doc__)
    _common.report_arguments(parser)
    parser.add_argument("--tasks", type=int, nargs="+", default=[8, 40])
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args(argv)
    args.command = _common.command_line(__file__, argv)
    _common.write_report(run(args), markdown, args.json, args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
