"""Representation-level Jacobian rows: T backward passes vs one pfor-vectorised ``tape.jacobian`` (issue 16,
item 2, "measure both").

``builders.hard_sharing(T binary tasks, 64, trunk=(256, 256), tower_units=())``, batch 256, CPU with 2 intra-op
threads. Inside one ``tf.function`` each: the forward pass, the masked per-task losses, and the (T, batch, 256)
rows of J at the representation either by one ``tape.gradient`` per task (what the training step does) or by
``tape.jacobian(stacked losses, z, experimental_use_pfor=True)`` on the per-task or the vectorised losses. Rows are
checked equal; the median ms per call over interleaved rounds is reported.

    python benchmarks/rep_jacobian_pfor.py --json benchmarks/results/rep_jacobian_pfor.json \\
        --markdown benchmarks/results/rep_jacobian_pfor.md
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["CUDA_VISIBLE_DEVICES"] = ""

import sys
import time
from pathlib import Path
from typing import Any

import tensorflow as tf

tf.config.threading.set_intra_op_parallelism_threads(2)
tf.config.threading.set_inter_op_parallelism_threads(1)

import numpy as np  # noqa: E402

from mtl_keras import Task  # noqa: E402
from mtl_keras.builders import hard_sharing  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

METHODS = ("T passes", "pfor jacobian", "pfor jacobian, vectorised losses")


def functions(t: int) -> tuple[dict[str, Any], tf.Tensor]:
    tasks = [Task(f"t{i}", "binary", metrics=[]) for i in range(t)]
    model = hard_sharing(tasks, 64, trunk=(256, 256), tower_units=())
    model.compile("adam")
    rep = model._representation_model()
    losses = model._runner.task_losses
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(256, 64)).astype("float32"))
    y = [tf.constant((rng.random((256, 1)) < 0.5).astype("float32")) for _ in tasks]

    @tf.function
    def loop(x: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape(persistent=True) as tape:
            out, z = rep(x, training=True)
            shares = losses(y, out, [None] * t).shares
        return tf.stack([tape.gradient(s, z) for s in shares])

    @tf.function
    def pfor(x: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            out, z = rep(x, training=True)
            vector = tf.stack(losses(y, out, [None] * t).shares)
        return tape.jacobian(vector, z, experimental_use_pfor=True)

    @tf.function
    def pfor_vectorised(x: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            out, z = rep(x, training=True)
            vector = losses(y, out, [None] * t, vectorized=True).share_vector
        return tape.jacobian(vector, z, experimental_use_pfor=True)

    return dict(zip(METHODS, (loop, pfor, pfor_vectorised), strict=True)), x


def run(args: Any) -> dict[str, Any]:
    rows = []
    for t in args.tasks:
        fns, x = functions(t)
        reference = fns[METHODS[0]](x).numpy()
        for fn in fns.values():
            np.testing.assert_allclose(fn(x).numpy(), reference, rtol=1e-5, atol=1e-7)
        times: dict[str, list[float]] = {name: [] for name in fns}
        for _ in range(args.rounds):
            for name, fn in fns.items():
                for _ in range(args.steps):
                    start = time.perf_counter()
                    fn(x).numpy()
                    times[name].append(time.perf_counter() - start)
        base = float(np.median(times[METHODS[0]]))
        for name in fns:
            median = float(np.median(times[name]))
            rows.append({"tasks": t, "method": name, "ms": 1e3 * median, "ratio_to_passes": median / base})
            print(rows[-1], flush=True)
    return {
        "benchmark": "rep_jacobian_pfor",
        "command": args.command,
        "machine": _common.machine(),
        "rows": rows,
    }


def markdown(result: dict[str, Any]) -> str:
    lines = [
        *_common.markdown_head("# Representation-level rows: T passes vs pfor", result["command"]),
        "Forward pass + per-task losses + the (T, 256, 256) rows of J at the representation, in one tf.function; "
        "median ms per call; rows checked equal.",
        "",
        "| T | method | ms | × T passes |",
        "|---:|---|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(f"| {r['tasks']} | {r['method']} | {r['ms']:.2f} | {r['ratio_to_passes']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = _common.parser(__doc__)
    _common.report_arguments(parser)
    parser.add_argument("--tasks", type=int, nargs="+", default=[2, 8, 32])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args(argv)
    args.command = _common.command_line(__file__, argv)
    _common.write_report(run(args), markdown, args.json, args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
