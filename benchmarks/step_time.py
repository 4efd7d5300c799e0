"""Training-step time of every balancer, relative to the equal-weights step (issue 4, items 7-9).

The problem is the one of docs/methods.md, "Cost of gradient methods": 64 inputs, a shared Dense 256-256 ReLU
trunk, three Dense(1) heads (``builders.hard_sharing(tasks, 64, trunk=(256, 256), tower_units=())``), two
MSE regression tasks and one binary cross-entropy task, batch 256, Adam(1e-3), on the CPU with 2 intra-op
threads and 1 inter-op thread (set before TensorFlow runs anything).

What is timed: for every configuration a fresh model is compiled (``metrics`` empty, so only the training
step itself is measured: forward pass, masked per-task losses, the balancer, ``optimizer.apply`` and the
loss/weight trackers) and its compiled ``model.train_function`` is called on one fixed batch of tensors,
which runs Keras's ``tf.function``-compiled ``one_step_on_data`` (the same function ``train_on_batch``
and ``fit`` run) once per call; the wall time of the call plus fetching the loss to the host is one step.
Nothing is cached between calls: every call runs the whole graph and updates the weights (checked: the
optimizer's iteration counter advances by exactly the number of calls).

Configurations are interleaved: the timed steps are split into ``--rounds`` rounds, and every round runs a
block of steps of every configuration (in a rotated order, the first ``--settle`` steps of a block untimed),
so a drift of the shared machine hits all of them alike. ``ms_per_step`` is the median over all timed steps,
``ratio_to_ew`` its ratio to the median of the equal-weights ("static") step of the same run; the EW median of
the first and of the last round are reported too, so drift is visible. The ratio of the 10th percentiles
is reported as well: on a shared machine the fastest steps are the ones no other job preempted.

    python benchmarks/step_time.py --json benchmarks/results/step_time.json \
        --markdown benchmarks/results/step_time.md
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ["CUDA_VISIBLE_DEVICES"] = ""  # CPU only, as in the reference measurement

import argparse
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tensorflow as tf

# Before TensorFlow creates its thread pools, i.e. before any op runs.
INTRA_OP_THREADS = 2
INTER_OP_THREADS = 1
tf.config.threading.set_intra_op_parallelism_threads(INTRA_OP_THREADS)
tf.config.threading.set_inter_op_parallelism_threads(INTER_OP_THREADS)
tf.get_logger().setLevel("ERROR")  # one tf.function per model: the retracing warnings are expected

import keras  # noqa: E402
import numpy as np  # noqa: E402

from mtl_keras import Task, balancers  # noqa: E402
from mtl_keras.builders import hard_sharing  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `_common`, however this file is loaded
import _common  # noqa: E402

EW = "static"
INPUT_DIM = 64
TRUNK = (256, 256)
BATCH = 256
LEARNING_RATE = 1e-3
#: Targets of issue 4: parameter level ≤ 2×, representation level ≤ 1.3×, Nash-MTL ≤ 4× the EW step.
TARGETS = {"param": 2.0, "rep": 1.3, "nash_mtl": 4.0}
#: LibMTL (PyTorch) on the same problem, ratio to its EW step (docs/methods.md, "Cost of gradient methods").
LIBMTL = {"pcgrad": 2.48, "gradnorm": 2.88, "mgda": 3.69, "cagrad": 3.50, "imtl": 2.55, "nash_mtl": 15.2}


@dataclass
class Config:
    """One timed configuration: a registered balancer name and the level its aggregator acts at."""

    name: str
    level: str = "param"
    kind: str = "weighting"
    times: list[float] = field(default_factory=list)
    round_medians: list[float] = field(default_factory=list)
    model: Any = None

    @property
    def key(self) -> str:
        return self.name + ("@rep" if self.level == "rep" else "")

    @property
    def where(self) -> str:
        """What the balancer acts on, for the table."""
        if self.kind == "weighting":
            return "loss (per-task norms)" if self.name in ("gradnorm", "db_mtl") else "loss"
        return "representation" if self.level == "rep" else "parameters"

    def target(self) -> float:
        if self.name == "nash_mtl" and self.level == "param":
            return TARGETS["nash_mtl"]
        return TARGETS[self.level]


def all_configs() -> list[Config]:
    """EW first, every weighting, every aggregator at parameter level, and at representation level when it
    needs the Jacobian (mean and sum back-propagate one combined loss, so they have no rep variant)."""
    names = balancers.names()
    configs = [Config(EW)]
    configs += [Config(name) for name in names["weightings"] if name != EW]
    for name in names["aggregators"]:
        configs.append(Config(name, "param", "aggregator"))
        if balancers.get(name).needs_jacobian:  # type: ignore[union-attr]
            configs.append(Config(name, "rep", "aggregator"))
    return configs


def select(configs: list[Config], only: str | None) -> list[Config]:
    if not only:
        return configs
    wanted = [w.strip() for w in only.split(",") if w.strip()]
    known = [c.key for c in configs]
    unknown = [w for w in wanted if w not in known]
    if unknown:
        raise SystemExit(f"Unknown configuration(s) {unknown}. Known: {known}")
    chosen = [c for c in configs if c.key in wanted]
    if not any(c.key == EW for c in chosen):  # the baseline is always measured
        chosen.insert(0, Config(EW))
    return chosen


def make_batch(seed: int = 0) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(BATCH, INPUT_DIM)).astype("float32")
    y = {
        "reg_a": (x[:, 0] + 0.5 * x[:, 1]).astype("float32"),
        "reg_b": (np.sin(x[:, 2]) - x[:, 3]).astype("float32"),
        "bin_c": (x[:, 4] - x[:, 0] > 0).astype("float32"),
    }
    return tf.constant(x), {k: tf.constant(v) for k, v in y.items()}


def build(config: Config) -> Any:
    tasks = [Task("reg_a", "regression"), Task("reg_b", "regression"), Task("bin_c", "binary")]
    keras.utils.set_random_seed(0)
    model = hard_sharing(tasks, INPUT_DIM, trunk=TRUNK, tower_units=(), name=f"bench_{config.key}")
    model.compile(
        keras.optimizers.Adam(LEARNING_RATE),
        balancer=config.name,
        balancer_level=config.level,
        metrics={t.name: [] for t in tasks},
    )
    model.make_train_function()
    return model


def step(model: Any, batch: Any) -> float:
    """One full training step; returns its wall time in seconds."""
    start = time.perf_counter()
    logs = model.train_function([batch])
    float(logs["loss"])  # the result on the host: the step has finished
    return time.perf_counter() - start


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run(args: argparse.Namespace, argv: list[str] | None = None) -> dict[str, Any]:
    configs = select(all_configs(), args.only)
    batch = make_batch()
    load_start = os.getloadavg()
    for config in configs:
        config.model = build(config)
        for _ in range(args.warmup):
            step(config.model, batch)
    per_round = max(1, -(-args.steps // args.rounds))
    for r in range(args.rounds):
        shift = r % len(configs)
        for config in configs[shift:] + configs[:shift]:
            for _ in range(args.settle):
                step(config.model, batch)
            block = [step(config.model, batch) for _ in range(per_round)]
            config.times.extend(block)
            config.round_medians.append(1e3 * float(np.median(block)))
    load_end = os.getloadavg()
    expected = args.warmup + args.rounds * (args.settle + per_round)
    for config in configs:
        iterations = int(config.model.optimizer.iterations.numpy())
        if iterations != expected:
            raise RuntimeError(f"{config.key}: {iterations} optimizer steps ran, expected {expected}.")
    ew = next(c for c in configs if c.key == EW)
    ew_ms = 1e3 * float(np.median(ew.times))
    results = {}
    for config in configs:
        ms = 1e3 * float(np.median(config.times))
        results[config.key] = {
            "ms_per_step": ms,
            "ratio_to_ew": ms / ew_ms,
            "p10_ms": 1e3 * float(np.percentile(config.times, 10)),
            "ratio_p10_to_ew_p10": float(np.percentile(config.times, 10) / np.percentile(ew.times, 10)),
            "p25_ms": 1e3 * float(np.percentile(config.times, 25)),
            "p75_ms": 1e3 * float(np.percentile(config.times, 75)),
            "acts_on": config.where,
            "target_ratio": None
            if config.kind == "weighting" and config.where == "loss"
            else config.target(),
            "libmtl_ratio": LIBMTL.get(config.name) if config.level == "param" else None,
        }
    return {
        "results": results,
        "meta": {
            "command": _common.command_line(__file__, argv),
            "problem": {
                "builder": "hard_sharing",
                "input_dim": INPUT_DIM,
                "trunk": list(TRUNK),
                "heads": "3 × Dense(1): 2 regression (MSE), 1 binary (cross-entropy)",
                "batch_size": BATCH,
                "optimizer": f"Adam({LEARNING_RATE})",
                "metrics": "none (only the loss and weight trackers)",
            },
            "timing": {
                "what": "model.train_function([fixed batch]) + fetching the loss, one training step per call",
                "timed_steps_per_config": per_round * args.rounds,
                "rounds": args.rounds,
                "untimed_settle_steps_per_block": args.settle,
                "warmup_steps": args.warmup,
                "statistic": "median",
            },
            "ew_ms_per_step": ew_ms,
            "ew_ms_first_round": ew.round_medians[0],
            "ew_ms_last_round": ew.round_medians[-1],
            "ew_ms_by_round": ew.round_medians,
            "cpu": _cpu_name(),
            "cpu_count": os.cpu_count(),
            "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
            "threads_set_before_tensorflow_started": True,
            "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default (on)"),
            "load_average_start": list(load_start),
            "load_average_end": list(load_end),
            **_common.machine(tensorflow=tf.__version__),
            "keras": keras.__version__,
            "numpy": np.__version__,
            "quick": bool(args.quick),
        },
    }


def markdown(report: dict[str, Any]) -> str:
    meta = report["meta"]
    timing = meta["timing"]
    lines = [
        *_common.markdown_head(
            "# Training-step time per balancer (ratio to the equal-weights step)", meta["command"]
        ),
        'Problem (docs/methods.md, "Cost of gradient methods"): input 64, shared Dense 256-256 ReLU trunk, three '
        "Dense(1) heads (2 × MSE, 1 × binary cross-entropy), batch 256, Adam(1e-3), no metrics.",
        f"Timed: `model.train_function([fixed batch])` + fetching the loss, {timing['timed_steps_per_config']} "
        f"steps per configuration after {timing['warmup_steps']} warm-up steps, in {timing['rounds']} "
        "interleaved rounds; median ms per step.",
        "",
        f"Machine: {meta['cpu']}, {meta['cpu_count']} cores shared with other jobs; TensorFlow "
        f"{meta['tensorflow']}, Keras {meta['keras']}; {meta['intra_op_threads']} intra-op / "
        f"{meta['inter_op_threads']} inter-op threads (set before TensorFlow started). Load average (1, 5, 15 "
        f"min) at the start {_fmt_load(meta['load_average_start'])}, at the end "
        f"{_fmt_load(meta['load_average_end'])} (includes this benchmark's own 1-2 busy threads).",
        "",
        f"EW step: {meta['ew_ms_per_step']:.3f} ms (first round {meta['ew_ms_first_round']:.3f} ms, last round "
        f"{meta['ew_ms_last_round']:.3f} ms).",
        "",
        "| balancer | acts on | ms / step (p25-p75) | ratio to EW | target | ratio of p10s | LibMTL ratio |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for key, r in report["results"].items():
        target = r["target_ratio"]
        verdict = (
            "" if target is None else (f"≤ {target:g} ✓" if r["ratio_to_ew"] <= target else f"≤ {target:g} ✗")
        )
        libmtl = "" if r["libmtl_ratio"] is None else f"{r['libmtl_ratio']:.2f}"
        lines.append(
            f"| `{key}` | {r['acts_on']} | {r['ms_per_step']:.3f} ({r['p25_ms']:.3f}-{r['p75_ms']:.3f}) | "
            f"{r['ratio_to_ew']:.2f} | {verdict} | {r['ratio_p10_to_ew_p10']:.2f} | {libmtl} |"
        )
    lines += [
        "",
        "Targets (issue 4): parameter-level methods ≤ 2.0×, representation-level ≤ 1.3×, Nash-MTL ≤ 4×. "
        "Loss-level weightings without per-task gradients have no target (they cost one backward pass).",
        "",
        '"ratio of p10s" divides the 10th percentiles instead of the medians: on a machine shared with other '
        "jobs the fast steps are the ones nobody preempted, so it estimates the uncontended ratio.",
        "",
        "How the step is built (`mtl_keras/training/`, `mtl_keras/balancers/base.py`): one backward pass per "
        "task gives both its row of the Jacobian and its gradient of the task-specific variables; J is never "
        "concatenated but kept as one (T, ...) block per shared variable; Gramian-based aggregators get "
        "G = Σ_b J_b J_bᵀ (a float32 matmul per block, recomputed rescaled only on overflow or underflow), "
        "solve their T × T problem in one XLA-compiled function (interior point or Newton steps with unrolled "
        "elimination) and give each variable wᵀJ_b; GradDrop's element-wise kernel, counter-based random "
        "numbers included, is one XLA kernel. At representation level under a strategy only the (T, T) Gram "
        "matrix is all-reduced.",
    ]
    return "\n".join(lines) + "\n"


def _fmt_load(load: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in load)


def main(argv: list[str] | None = None) -> int:
    parser = _common.parser(__doc__)
    parser.add_argument("--steps", type=int, default=300, help="timed steps per configuration (≥ 200)")
    parser.add_argument("--rounds", type=int, default=30, help="interleaved rounds the steps are split into")
    parser.add_argument("--warmup", type=int, default=30, help="untimed steps after compiling")
    parser.add_argument("--settle", type=int, default=2, help="untimed steps at the start of every block")
    parser.add_argument(
        "--only", default=None, help="comma-separated keys, e.g. static,pcgrad,pcgrad@rep (EW is always run)"
    )
    parser.add_argument("--quick", action="store_true", help="few steps, for a smoke test")
    _common.report_arguments(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.rounds, args.warmup, args.settle = 6, 2, 2, 1
    elif args.steps < 200:
        parser.error("--steps must be at least 200 (use --quick for a smoke test)")
    _common.write_report(run(args, argv), markdown, args.json, args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
