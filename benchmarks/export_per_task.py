"""What a ``predict_<task>`` signature saves against ``serving_default`` for an MMoE with large towers.

Exports an MMoE (default: 8 experts × 64 units, towers (512, 512), 4 binary tasks, 64 input features) with
`mtl_keras.export.export_for_serving`, loads it back with ``tf.saved_model.load`` and times the loaded
signatures in the same process, interleaved call by call (so drifts of the machine hit all of them alike):
median latency per call over ``--calls`` calls after ``--warmup`` calls, for each batch size.

    python benchmarks/export_per_task.py --json benchmarks/results/export_per_task.json \
        --markdown benchmarks/results/export_per_task.md
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow as tf

from mtl_keras import Task
from mtl_keras.builders import mmoe
from mtl_keras.export import export_for_serving

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `_common`, however this file is loaded
import _common


def _parameters(function: Any) -> int:
    return int(sum(np.prod(v.shape) for v in function.variables))


def run(args: argparse.Namespace, argv: list[str] | None = None) -> dict[str, Any]:
    tasks = [Task(f"task_{i}", "binary") for i in range(args.tasks)]
    model = mmoe(
        tasks,
        args.input_dim,
        num_experts=args.experts,
        expert_units=(args.expert_units,),
        tower_units=tuple(args.towers),
        name="mmoe_benchmark",
    )
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as base:
        export_for_serving(model, base, request_examples=rng.normal(size=(2, args.input_dim)))
        loaded = tf.saved_model.load(str(Path(base) / "1"))
    names = ["serving_default", *(f"predict_{t.name}" for t in tasks)]
    functions = {name: loaded.signatures[name] for name in names}
    results = []
    for batch in args.batch_sizes:
        x = tf.constant(rng.normal(size=(batch, args.input_dim)).astype("float32"))
        for _ in range(args.warmup):
            for function in functions.values():
                function(features=x)
        times: dict[str, list[float]] = {name: [] for name in names}
        for _ in range(args.calls):
            for name, function in functions.items():
                start = time.perf_counter()
                outputs = function(features=x)
                for value in outputs.values():
                    value.numpy()
                times[name].append(time.perf_counter() - start)
        median_ms = {name: 1e3 * float(np.median(t)) for name, t in times.items()}
        default = median_ms["serving_default"]
        per_task = {name: median_ms[name] for name in names[1:]}
        results.append(
            {
                "batch_size": batch,
                "median_ms": median_ms,
                "ratio_to_serving_default": {name: ms / default for name, ms in per_task.items()},
                "mean_ratio": float(np.mean([ms / default for ms in per_task.values()])),
            }
        )
    return {
        "command": _common.command_line(__file__, argv),
        "config": {
            "architecture": "mmoe",
            "input_dim": args.input_dim,
            "experts": args.experts,
            "expert_units": args.expert_units,
            "towers": list(args.towers),
            "tasks": args.tasks,
            "calls": args.calls,
            "warmup": args.warmup,
        },
        "parameters": {name: _parameters(f) for name, f in functions.items()},
        "machine": _common.machine(
            processor=platform.processor() or platform.machine(),
            cpu_count=os.cpu_count(),
            gpus=[d.name for d in tf.config.list_physical_devices("GPU")],
            tensorflow=tf.__version__,
        ),
        "results": results,
    }


def markdown(report: dict[str, Any]) -> str:
    config = report["config"]
    names = list(report["results"][0]["median_ms"])
    lines = [
        *_common.markdown_head(
            "# `predict_<task>` vs `serving_default` (loaded SavedModel, same process)", report["command"]
        ),
        f"MMoE: {config['experts']} experts × {config['expert_units']} units, "
        f"towers {tuple(config['towers'])}, {config['tasks']} binary tasks, {config['input_dim']} input "
        f"features. Median latency per call over {config['calls']} calls after {config['warmup']} warm-up "
        "calls, signatures interleaved call by call.",
        "",
        f"Machine: {report['machine']['platform']}, {report['machine']['cpu_count']} CPU cores, "
        f"GPUs: {report['machine']['gpus'] or 'none'}, TensorFlow {report['machine']['tensorflow']}.",
        "",
        "| signature | parameters | "
        + " | ".join(f"batch {r['batch_size']}: ms (ratio)" for r in report["results"])
        + " |",
        "|---|---:|" + "---:|" * len(report["results"]),
    ]
    for name in names:
        cells = []
        for r in report["results"]:
            ratio = 1.0 if name == "serving_default" else r["ratio_to_serving_default"][name]
            cells.append(f"{r['median_ms'][name]:.3f} ({ratio:.2f})")
        lines.append(f"| `{name}` | {report['parameters'][name]:,} | " + " | ".join(cells) + " |")
    lines.append("")
    for r in report["results"]:
        lines.append(
            f"- batch {r['batch_size']}: one `predict_<task>` call takes {r['mean_ratio']:.2f}× the time of "
            "`serving_default` on average over the tasks."
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = _common.parser(__doc__)
    parser.add_argument("--experts", type=int, default=8)
    parser.add_argument("--expert-units", type=int, default=64)
    parser.add_argument("--towers", type=int, nargs="+", default=[512, 512])
    parser.add_argument("--tasks", type=int, default=4)
    parser.add_argument("--input-dim", type=int, default=64)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 256])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    _common.report_arguments(parser)
    args = parser.parse_args(argv)
    if args.calls < 200:
        parser.error("--calls must be at least 200")
    _common.write_report(run(args, argv), markdown, args.json, args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
