"""GradNorm's toy (Chen et al., ICML 2018, section 4 and figure 2): task-weight trajectories, issue 9 item 2.

Data: ``gradnorm_toy`` (docs/methods.md, "GradNorm toy"): ``f_i(x) = σ_i·tanh((B + ε_i)·x)``, x ∈ R^250,
outputs R^100, B and ε_i
with element variances 10 and 3.5 (the library's reading of the paper's N(0, 10), N(0, 3.5)). Model: the
paper's 4 × 100 ReLU shared trunk, one linear 100-unit head per task (``hard_sharing(trunk=(100,) * 4,
tower_units=())``), MSE losses. GradNorm acts on the last shared layer (the library's choice, as the paper).

Runs: α ∈ {0.12, 1.5} × two systems,

- T = 2, σ = (1, 100) (the paper's two-task example);
- T = 10, σ_i drawn uniformly from [1, 100] with ``numpy.random.default_rng(--sigma-seed)`` and sorted.
  This is our choice: the paper draws the T = 10 scales at random over a range; we take the same range as the
  T = 2 case.

Training: Adam lr 1e-3 for the network, GradNorm's own weight learning rate (library default 0.025),
batch 100, a fixed number of epochs over 10,000 examples. The weights ``w_i`` are read after every training
step. We check the paper's two-task statement: the weight of the σ = 1 task rises above the weight of the
σ = 100 task and Σ w_i stays T; for T = 10 we report the rank correlation between σ_i and the final w_i
(the paper: weights of small-σ tasks grow).

    python benchmarks/gradnorm_toy.py --out benchmarks/results/gradnorm_toy
    python benchmarks/gradnorm_toy.py --quick --out /tmp/gradnorm_quick
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

from mtl_keras.balancers import get as get_balancer
from mtl_keras.builders import hard_sharing
from mtl_keras.data import gradnorm_toy

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `_common`, however this file is loaded
import _common

ALPHAS = (0.12, 1.5)


class WeightRecorder(keras.callbacks.Callback):
    """Reads the balancer's task weights after every ``every``-th training step."""

    def __init__(self, every: int = 1) -> None:
        super().__init__()
        self.every = every
        self.steps: list[int] = []
        self.weights: list[list[float]] = []
        self.step = 0

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        self.step += 1
        if self.step % self.every == 0:
            self.steps.append(self.step)
            self.weights.append([float(w) for w in np.asarray(self.model.balancer.weighting.weights())])


def sigmas_for(num_tasks: int, seed: int) -> list[float]:
    if num_tasks == 2:
        return [1.0, 100.0]
    return sorted(float(s) for s in np.random.default_rng(seed).uniform(1.0, 100.0, size=num_tasks))


def spearman(a: list[float], b: list[float]) -> float:
    ra = np.argsort(np.argsort(a)).astype(float)
    rb = np.argsort(np.argsort(b)).astype(float)
    return float(np.corrcoef(ra, rb)[0, 1])


def run_one(alpha: float, num_tasks: int, args: argparse.Namespace) -> dict[str, Any]:
    sigmas = sigmas_for(num_tasks, args.sigma_seed)
    dataset = gradnorm_toy(num_tasks, sigmas, n=args.n_train, seed=args.seed, n_validation=100, n_test=1000)
    keras.utils.set_random_seed(args.seed)
    model = hard_sharing(dataset.tasks, 250, trunk=(100, 100, 100, 100), tower_units=())
    model.compile(keras.optimizers.Adam(args.lr), balancer=get_balancer("gradnorm", alpha=alpha))
    recorder = WeightRecorder(args.record_every)
    start = time.perf_counter()
    model.fit(
        dataset.train.x,
        dataset.train.y,
        batch_size=args.batch_size,
        epochs=args.epochs,
        verbose=0,
        callbacks=[recorder],
        shuffle=True,
    )
    seconds = time.perf_counter() - start
    test = model.evaluate(dataset.test.x, dataset.test.y, batch_size=1000, verbose=0, return_dict=True)
    final = recorder.weights[-1]
    result: dict[str, Any] = {
        "alpha": alpha,
        "num_tasks": num_tasks,
        "sigmas": sigmas,
        "step": recorder.steps,
        "weights": recorder.weights,
        "final_weights": final,
        "final_weight_sum": float(np.sum(final)),
        "max_abs_weight_sum_error": float(np.max(np.abs(np.sum(recorder.weights, axis=1) - num_tasks))),
        "test_loss": {t.name: float(test[f"{t.name}_loss"]) for t in dataset.tasks},
        "train_seconds": seconds,
    }
    small, large = int(np.argmin(sigmas)), int(np.argmax(sigmas))
    result["small_sigma_weight_above_large"] = bool(final[small] > final[large])
    result["spearman_sigma_vs_final_weight"] = spearman(sigmas, final)
    print(
        f"alpha={alpha} T={num_tasks}: final weights {np.round(final, 3).tolist()} "
        f"(sum {result['final_weight_sum']:.4f}), {seconds:.0f} s",
        flush=True,
    )
    return result


def run(args: argparse.Namespace) -> dict[str, Any]:
    start = time.perf_counter()
    runs = [run_one(alpha, t, args) for t in args.tasks for alpha in ALPHAS]
    return {
        "benchmark": "gradnorm_toy",
        "command": args.command,
        "settings": {
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "learning_rate": args.lr,
            "gradnorm_learning_rate": "library default (0.025)",
            "n_train": args.n_train,
            "seed": args.seed,
            "sigma_seed": args.sigma_seed,
            "tasks": args.tasks,
            "T10_sigmas": "uniform on [1, 100], sorted",
        },
        "machine": _common.machine(),
        "wall_seconds": time.perf_counter() - start,
        "runs": runs,
    }


def to_markdown(result: dict[str, Any]) -> str:
    s = result["settings"]
    lines = [
        *_common.markdown_head("# GradNorm toy: task-weight trajectories", result["command"]),
        f"4 × 100 ReLU shared trunk, linear 100-unit heads, Adam lr {s['learning_rate']}, batch {s['batch_size']}, "
        f"{s['epochs']} epochs of {s['n_train']} examples, data seed {s['seed']}; T = 10 scales σ_i "
        f"{s['T10_sigmas']} (seed {s['sigma_seed']}; our choice). Wall time {result['wall_seconds']:.0f} s.",
        "",
        "| T | α | σ | final weights | Σw (max deviation from T) | w(σ_min) > w(σ_max) | Spearman(σ, w) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["runs"]:
        sig = ", ".join(f"{v:.0f}" for v in r["sigmas"])
        w = ", ".join(f"{v:.3f}" for v in r["final_weights"])
        lines.append(
            f"| {r['num_tasks']} | {r['alpha']} | {sig} | {w} | {r['final_weight_sum']:.4f} "
            f"({r['max_abs_weight_sum_error']:.1e}) | {'yes' if r['small_sigma_weight_above_large'] else '**no**'} "
            f"| {r['spearman_sigma_vs_final_weight']:+.2f} |"
        )
    lines += ["", "![weights vs step](weights.png)", ""]
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> None:
    plt = _common.pyplot()

    runs = result["runs"]
    figure, axes = plt.subplots(1, len(runs), figsize=(4.2 * len(runs), 3.8), squeeze=False)
    for ax, r in zip(axes[0], runs, strict=True):
        weights = np.asarray(r["weights"])
        colors = plt.get_cmap("viridis")(np.linspace(0, 1, r["num_tasks"]))
        for i in range(r["num_tasks"]):
            ax.plot(r["step"], weights[:, i], color=colors[i], label=f"σ={r['sigmas'][i]:.0f}")
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("w_i")
        ax.set_title(f"T={r['num_tasks']}, α={r['alpha']}")
        ax.legend(fontsize=6, ncol=2 if r["num_tasks"] > 4 else 1)
    _common.save_figure(figure, path)


def main(argv: list[str] | None = None) -> int:
    parser = _common.parser(__doc__)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/gradnorm_toy"))
    parser.add_argument("--tasks", type=int, nargs="+", default=[2, 10])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--n-train", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sigma-seed", type=int, default=0)
    parser.add_argument("--record-every", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="T = 2 only, 2,000 examples, 1 epoch")
    args = parser.parse_args(argv)
    args.command = _common.command_line(__file__, argv)
    if args.quick:
        args.tasks, args.epochs, args.n_train = [2], 1, 2_000
    _common.write_results(run(args), args.out, to_markdown, plot, "weights.png", indent=None)
    print(f"wrote {args.out}/results.md", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
