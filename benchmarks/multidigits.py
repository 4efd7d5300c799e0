"""MultiDigits: the balancers side by side on two overlaid digits (left, right), issue 9 item 4.

MultiMNIST (Sabour et al. 2017; Sener & Koltun 2018) needs the TFDS ``mnist`` data, which cannot be
downloaded on this offline machine, so the table uses ``multidigits``: the same recipe (two digits on a
canvas at (0, 0) and an offset, pixelwise max, resized) on scikit-learn's bundled 8 × 8 digits.

Model (the zoo's ``multidigits_pcgrad`` recipe): hard sharing with a shared Conv2D(16, 3×3, same, ReLU) →
Dense(64) trunk and a 32-unit tower per digit, Adam lr 1e-3, batch 128, a fixed number of epochs, no early
stopping; gradient aggregators act on the shared parameters (``balancer_level="param"``). The single-task
row is ``single_task(architecture="hard_sharing")`` with the same options: one full column per digit.

For each method and seed the test accuracy of each digit is measured after the last epoch; Δm % (positive =
better than single-task, :func:`mtl_keras.evaluation.delta_m`) is computed per seed against the single-task
model of the same seed, then averaged. ``ms/step`` is the median wall time of one training batch after the
first epoch (``fit``'s own loop, so it includes Keras's per-step overhead), on a shared 2-core CPU: compare
its ratios within one run, not across machines.

    python benchmarks/multidigits.py --out benchmarks/results/multidigits
    python benchmarks/multidigits.py --quick --out /tmp/multidigits_quick
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

from mtl_keras.builders import hard_sharing, single_task
from mtl_keras.data import MultiTaskDataset, multidigits
from mtl_keras.evaluation import delta_m
from mtl_keras.model import MultiTaskModel

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `_common`, however this file is loaded
import _common

SINGLE = "single_task"
#: Row label -> the ``balancer=`` given to ``compile`` (None: the single-task model).
METHODS: dict[str, Any] = {
    SINGLE: None,
    "static": "static",
    "uncertainty": "uncertainty",
    "dwa": "dwa",
    "gradnorm": "gradnorm",
    "pcgrad": "pcgrad",
    "mgda": "mgda",
    "cagrad": "cagrad",
    "imtl": "imtl",
    "nash_mtl": "nash_mtl",
    "upgrad": "upgrad",
    "aligned_mtl": "aligned_mtl",
}
TASKS = ("left", "right")


def trunk() -> list[Any]:
    return [lambda: keras.layers.Conv2D(16, 3, padding="same", activation="relu"), 64]


def build(method: str, dataset: MultiTaskDataset) -> MultiTaskModel:
    shape = tuple(int(d) for d in np.asarray(dataset.train.x).shape[1:])
    if method == SINGLE:
        return single_task(
            dataset.tasks, shape, architecture="hard_sharing", trunk=trunk(), tower_units=(32,)
        )
    return hard_sharing(dataset.tasks, shape, trunk=trunk(), tower_units=(32,))


class StepTimer(keras.callbacks.Callback):
    """Wall time of every training batch after the first epoch."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []
        self.epoch = 0
        self._start = 0.0

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self.epoch = epoch

    def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        if self.epoch > 0:
            self.times.append(time.perf_counter() - self._start)


def train_one(method: str, dataset: MultiTaskDataset, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    keras.utils.set_random_seed(seed)
    model = build(method, dataset)
    balancer = METHODS[method]
    if isinstance(balancer, str) and balancer in ("pcgrad",):
        from mtl_keras.balancers import get

        balancer = get(balancer, seed=seed)
    model.compile(keras.optimizers.Adam(args.lr), balancer=balancer)
    timer = StepTimer()
    start = time.perf_counter()
    model.fit(
        dataset.train.x,
        dataset.train.y,
        batch_size=args.batch_size,
        epochs=args.epochs,
        verbose=0,
        callbacks=[timer],
        shuffle=True,
    )
    seconds = time.perf_counter() - start
    results = model.evaluate(dataset.test.x, dataset.test.y, batch_size=1000, verbose=0, return_dict=True)
    return {
        "accuracy": {t: float(results[f"{t}_accuracy"]) for t in TASKS},
        "ms_per_step": 1000.0 * float(np.median(timer.times)) if timer.times else float("nan"),
        "train_seconds": seconds,
        "params": int(model.count_params()),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    start = time.perf_counter()
    runs: list[dict[str, Any]] = []
    for seed in range(args.seed0, args.seed0 + args.seeds):
        dataset = multidigits(seed=seed, n_train=args.n_train, n_validation=200, n_test=args.n_test)
        single: dict[str, float] = {}
        for method in args.methods:
            result = train_one(method, dataset, seed, args)
            if method == SINGLE:
                single = result["accuracy"]
            if single:
                result["delta_m"] = delta_m(result["accuracy"], single, dict.fromkeys(TASKS, True))
            runs.append({"method": method, "seed": seed, **result})
            print(
                f"seed={seed} {method}: left={result['accuracy']['left']:.4f} "
                f"right={result['accuracy']['right']:.4f} Δm={result.get('delta_m', float('nan')):+.2f} "
                f"{result['ms_per_step']:.1f} ms/step",
                flush=True,
            )
    summary = {}
    for method in args.methods:
        rows = [r for r in runs if r["method"] == method]
        summary[method] = {
            "left": _common.mean_std([r["accuracy"]["left"] for r in rows]),
            "right": _common.mean_std([r["accuracy"]["right"] for r in rows]),
            "delta_m": _common.mean_std([r["delta_m"] for r in rows if "delta_m" in r])
            if SINGLE in args.methods
            else None,
            "ms_per_step": _common.mean_std([r["ms_per_step"] for r in rows]),
            "params": rows[0]["params"],
        }
    return {
        "benchmark": "multidigits",
        "command": args.command,
        "settings": {
            "data": "multidigits (scikit-learn 8x8 digits on a 10x10 canvas, offset 2, resized to 8x8)",
            "n_train": args.n_train,
            "n_test": args.n_test,
            "seeds": list(range(args.seed0, args.seed0 + args.seeds)),
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "learning_rate": args.lr,
            "model": "hard_sharing(trunk=[Conv2D(16, 3, same, relu), Dense 64], tower_units=(32,))",
        },
        "machine": _common.machine(cpus=os.cpu_count()),
        "wall_seconds": time.perf_counter() - start,
        "summary": summary,
        "runs": runs,
    }


def _pm(s: dict[str, float], scale: float = 100.0, digits: int = 2) -> str:
    return _common.plus_minus(s, scale, digits)


def to_markdown(result: dict[str, Any]) -> str:
    s = result["settings"]
    lines = [
        *_common.markdown_head(
            "# MultiDigits: accuracy per task, Δm vs single-task, step time", result["command"]
        ),
        f"{s['data']}; {s['n_train']} train / {s['n_test']} test composites per seed. Model: {s['model']}. "
        f"Adam lr {s['learning_rate']}, batch {s['batch_size']}, {s['epochs']} epochs, no early stopping. "
        f"Seeds {s['seeds']} (data, initialisation and shuffling); mean ± std over seeds. Δm % > 0 means better "
        f"than single-task. ms/step: median training-batch time after epoch 1 on a shared 2-core CPU. "
        f"Wall time {result['wall_seconds'] / 60:.1f} min. MultiMNIST itself was not run (TFDS mnist is not "
        "available offline here).",
        "",
        "| method | left acc. % | right acc. % | Δm % | ms/step | params |",
        "|---|---|---|---|---|---|",
    ]
    for method, row in result["summary"].items():
        dm = "—" if method == SINGLE or row["delta_m"] is None else _pm(row["delta_m"], 1.0)
        lines.append(
            f"| {method} | {_pm(row['left'])} | {_pm(row['right'])} | {dm} | "
            f"{_pm(row['ms_per_step'], 1.0, 1)} | {row['params']} |"
        )
    lines += ["", "![accuracy](accuracy.png)", ""]
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> None:
    plt = _common.pyplot()

    methods = list(result["summary"])
    x = np.arange(len(methods))
    figure, ax = plt.subplots(figsize=(max(6, 0.8 * len(methods)), 4))
    for k, task in enumerate(TASKS):
        means = [100 * result["summary"][m][task]["mean"] for m in methods]
        stds = [100 * result["summary"][m][task]["std"] for m in methods]
        ax.bar(x + (k - 0.5) * 0.38, means, 0.38, yerr=stds, label=task, capsize=2)
    ax.set_xticks(x)
    ax.set_xticklabels(methods, rotation=45, ha="right")
    lows = [100 * result["summary"][m][t]["mean"] for m in methods for t in TASKS]
    ax.set_ylim(max(0.0, min(lows) - 5), min(100.0, max(lows) + 3))
    ax.set_ylabel("test accuracy %")
    ax.set_title(f"MultiDigits, {len(result['settings']['seeds'])} seeds (mean ± std)")
    ax.legend()
    _common.save_figure(figure, path)


def main(argv: list[str] | None = None) -> int:
    parser = _common.parser(__doc__)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/multidigits"))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--seed0", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--n-train", type=int, default=10_000)
    parser.add_argument("--n-test", type=int, default=2_000)
    parser.add_argument("--quick", action="store_true", help="single-task, static, pcgrad; 1 seed, 2 epochs")
    args = parser.parse_args(argv)
    args.command = _common.command_line(__file__, argv)
    if args.quick:
        args.methods, args.seeds, args.epochs, args.n_train, args.n_test = (
            [SINGLE, "static", "pcgrad"],
            1,
            2,
            1000,
            500,
        )
    if SINGLE in args.methods:  # the baseline first, so Δm can be computed as the rows come
        args.methods = [SINGLE, *[m for m in args.methods if m != SINGLE]]
    _common.write_results(run(args), args.out, to_markdown, plot, "accuracy.png")
    print(f"wrote {args.out}/results.md", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
