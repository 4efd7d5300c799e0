"""PCGrad's 2-D escape toy (Yu et al., NeurIPS 2020, figure 1), issue 9 item 3.

The objective of docs/methods.md, "PCGrad escape toy", written from the formula (θ ∈ R²)::

    L1(θ) = 20·log(max(|0.5·θ1 + tanh θ2|, 5e-6))
    L2(θ) = 25·log(max(|0.5·θ1 − tanh θ2 + 2|, 5e-6))

Both losses fall to −∞ together only as θ2 → +∞ with θ1 = −2 (tanh θ2 → 1 makes both absolute values
vanish at θ1 = −2). From θ0 = (0.5, −3) we run Keras's Adam (learning rate 1e-3, the Keras defaults
otherwise) on the two task gradients combined by

- ``sum``: plain Adam on L1 + L2;
- ``pcgrad``: the library's :class:`mtl_keras.balancers.aggregators.pcgrad.PCGrad` applied to the 2 × 2
  Jacobian (the update is the sum of the projected task gradients, as in the paper's algorithm 1),

and record θ, L1 and L2 along the way. The loop is one ``tf.function`` (a ``tf.while_loop`` over the steps).
The quoted outcome (docs/methods.md, "PCGrad escape toy") is that plain Adam stalls with L2 ≈ 14.6 and
PCGrad moves θ1 to ≈ −2; the Markdown reports what
this run measures against those numbers.

    python benchmarks/pcgrad_toy.py --out benchmarks/results/pcgrad_toy
    python benchmarks/pcgrad_toy.py --quick --out /tmp/pcgrad_quick
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from mtl_keras.balancers import AGGREGATORS

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `_common`, however this file is loaded
import _common

START = (0.5, -3.0)
FLOOR = 5e-6
#: The stated outcomes (docs/methods.md, "PCGrad escape toy").
STATED = {"adam_final_L2": 14.6, "pcgrad_final_theta1": -2.0}


def losses(theta: Any) -> Any:
    """(L1, L2) at θ: a (2,) TensorFlow variable, or a numpy array of shape (2, ...) for the contours."""
    lib: Any = tf.math if isinstance(theta, (tf.Tensor, tf.Variable)) else np
    t1, t2 = theta[0], theta[1]
    l1 = 20.0 * lib.log(lib.maximum(lib.abs(0.5 * t1 + lib.tanh(t2)), FLOOR))
    l2 = 25.0 * lib.log(lib.maximum(lib.abs(0.5 * t1 - lib.tanh(t2) + 2.0), FLOOR))
    return l1, l2


def trajectory(method: str, steps: int, record_every: int, lr: float, seed: int) -> dict[str, Any]:
    """Run ``steps`` Adam steps; θ and the losses every ``record_every`` steps (and at the end)."""
    theta = tf.Variable(np.array(START, dtype=np.float32), name="theta")
    optimizer = keras.optimizers.Adam(learning_rate=lr)
    optimizer.build([theta])
    aggregator = AGGREGATORS.get("pcgrad", seed=seed) if method == "pcgrad" else None
    records = steps // record_every + 1

    def direction() -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        with tf.GradientTape(persistent=True) as tape:
            l1, l2 = losses(theta)
        jacobian = tf.stack([tape.gradient(l1, theta), tape.gradient(l2, theta)])
        del tape
        update = tf.reduce_sum(jacobian, axis=0) if aggregator is None else aggregator.aggregate(jacobian)
        return tf.cast(update, tf.float32), l1, l2

    @tf.function
    def loop() -> tuple[tf.Tensor, tf.Tensor]:
        path = tf.TensorArray(tf.float32, size=records)
        loss_path = tf.TensorArray(tf.float32, size=records)
        for step in tf.range(steps):
            update, l1, l2 = direction()
            if step % record_every == 0:
                path = path.write(step // record_every, tf.identity(theta))
                loss_path = loss_path.write(step // record_every, tf.stack([l1, l2]))
            optimizer.apply([update], [theta])
        l1, l2 = losses(theta)
        path = path.write(records - 1, tf.identity(theta))
        loss_path = loss_path.write(records - 1, tf.stack([l1, l2]))
        return path.stack(), loss_path.stack()

    start = time.perf_counter()
    path, loss_path = loop()
    seconds = time.perf_counter() - start
    path, loss_path = path.numpy().astype(float), loss_path.numpy().astype(float)
    steps_axis = [min(k * record_every, steps) for k in range(records)]
    final = path[-1]
    return {
        "method": method,
        "steps": steps,
        "record_every": record_every,
        "step": steps_axis,
        "theta": path.tolist(),
        "losses": loss_path.tolist(),
        "final_theta": final.tolist(),
        "final_L1": float(loss_path[-1, 0]),
        "final_L2": float(loss_path[-1, 1]),
        "seconds": seconds,
    }


def checkpoints(run: dict[str, Any], at: list[int]) -> list[dict[str, Any]]:
    rows = []
    steps = np.asarray(run["step"])
    for target in at:
        k = int(np.argmin(np.abs(steps - target)))
        rows.append(
            {
                "step": int(steps[k]),
                "theta1": run["theta"][k][0],
                "theta2": run["theta"][k][1],
                "L1": run["losses"][k][0],
                "L2": run["losses"][k][1],
            }
        )
    return rows


def run(args: argparse.Namespace) -> dict[str, Any]:
    start = time.perf_counter()
    runs = {
        method: trajectory(method, args.steps, args.record_every, args.lr, args.seed)
        for method in ("sum", "pcgrad")
    }
    at = sorted(
        {
            s
            for s in (1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000, args.steps)
            if s <= args.steps
        }
    )
    for r in runs.values():
        r["checkpoints"] = checkpoints(r, at)
        print(
            f"{r['method']}: θ = ({r['final_theta'][0]:.4f}, {r['final_theta'][1]:.4f}), "
            f"L1 = {r['final_L1']:.3f}, L2 = {r['final_L2']:.3f} after {r['steps']} steps",
            flush=True,
        )
    return {
        "benchmark": "pcgrad_toy",
        "command": args.command,
        "settings": {"start": START, "steps": args.steps, "learning_rate": args.lr, "pcgrad_seed": args.seed},
        "stated_in_reference": STATED,
        "machine": _common.machine(),
        "wall_seconds": time.perf_counter() - start,
        "runs": runs,
    }


def to_markdown(result: dict[str, Any]) -> str:
    s = result["settings"]
    adam, pcgrad = result["runs"]["sum"], result["runs"]["pcgrad"]
    lines = [
        *_common.markdown_head("# PCGrad 2-D escape toy: Adam vs PCGrad", result["command"]),
        f"Start θ = {tuple(s['start'])}, Keras Adam lr {s['learning_rate']}, {s['steps']} steps, PCGrad from "
        f"`mtl_keras.balancers` (seed {s['pcgrad_seed']}). Wall time {result['wall_seconds']:.0f} s.",
        "",
        "| method | step | θ1 | θ2 | L1 | L2 |",
        "|---|---|---|---|---|---|",
    ]
    for r, label in ((adam, "Adam (sum)"), (pcgrad, "PCGrad")):
        for c in r["checkpoints"]:
            lines.append(
                f"| {label} | {c['step']} | {c['theta1']:.4f} | {c['theta2']:.4f} | {c['L1']:.3f} | {c['L2']:.3f} |"
            )
    lines += [
        "",
        "| quantity | stated (docs/methods.md) | measured |",
        "|---|---|---|",
        f"| plain Adam, final L2 | ≈ {STATED['adam_final_L2']} | {adam['final_L2']:.3f} |",
        f"| PCGrad, final θ1 | ≈ {STATED['pcgrad_final_theta1']} | {pcgrad['final_theta'][0]:.4f} |",
        "",
        "![trajectories](trajectories.png)",
        "",
    ]
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> None:
    plt = _common.pyplot()

    runs = result["runs"]
    points = np.concatenate([np.asarray(r["theta"]) for r in runs.values()])
    lo = np.minimum(points.min(axis=0), [-4.0, -4.0]) - 0.5
    hi = np.maximum(points.max(axis=0), [4.0, 4.0]) + 0.5
    t1, t2 = np.meshgrid(np.linspace(lo[0], hi[0], 400), np.linspace(lo[1], hi[1], 400))
    l1, l2 = losses(np.stack([t1, t2]))
    figure, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    for ax, (values, title) in zip(axes, ((l1 + l2, "L1 + L2"), (l1, "L1"), (l2, "L2")), strict=True):
        contour = ax.contourf(t1, t2, values, levels=40, cmap="viridis")
        figure.colorbar(contour, ax=ax)
        for r, color, label in ((runs["sum"], "white", "Adam"), (runs["pcgrad"], "red", "PCGrad")):
            theta = np.asarray(r["theta"])
            ax.plot(theta[:, 0], theta[:, 1], color=color, lw=2, label=label)
            ax.plot(theta[-1, 0], theta[-1, 1], "o", color=color)
        ax.plot(*result["settings"]["start"], "k*", ms=12, label="start")
        ax.set_xlabel("θ1")
        ax.set_ylabel("θ2")
        ax.set_title(f"{title}, {result['settings']['steps']} steps")
    axes[0].legend(loc="lower left")
    _common.save_figure(figure, path)


def main(argv: list[str] | None = None) -> int:
    parser = _common.parser(__doc__)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/pcgrad_toy"))
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--record-every", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="2,000 steps")
    args = parser.parse_args(argv)
    args.command = _common.command_line(__file__, argv)
    if args.quick:
        args.steps, args.record_every = 2_000, 50
    _common.write_results(run(args), args.out, to_markdown, plot, "trajectories.png", indent=1)
    print(f"wrote {args.out}/results.md", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
