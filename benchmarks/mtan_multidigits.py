"""MTAN vs hard sharing vs cross-stitch on MultiDigits at a matched parameter budget (issue 18 item 5).

Every model has a Conv2D(16, 3×3, same, ReLU) stage then a Dense stage and a 32-unit tower per digit (the
zoo's MultiDigits recipes). The budget is cross-stitch's (two Conv2D → Dense(64) columns mixed by a unit
after each block); the Dense width of hard sharing's trunk and of MTAN's trunk is the one, from a list of
candidates, whose model's parameter count is closest to it, and the script stops if it is not within 10 %.
The single-task row (``single_task(architecture="hard_sharing")``, Dense 64: one full column per digit, the
reference of benchmarks/multidigits.py) is the Δm baseline. Adam, static weights, fixed epochs, no early
stopping; test accuracy of each digit after the last epoch; Δm % (positive = better than single-task) per
seed against that seed's single-task model, then mean ± std over seeds. ``ms/step`` is the median wall time
of one training batch after the first epoch on a shared, loaded 2-core CPU: compare ratios within one run.

    nice -n 5 python benchmarks/mtan_multidigits.py --epochs 15 --out benchmarks/results/mtan_multidigits
    python benchmarks/mtan_multidigits.py --quick --out /tmp/mtan_quick
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np

from mtl_keras.builders import cross_stitch, hard_sharing, mtan, single_task
from mtl_keras.data import MultiTaskDataset, multidigits
from mtl_keras.evaluation import delta_m
from mtl_keras.model import MultiTaskModel

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `_common`, however this file is loaded
import _common

TASKS = ("left", "right")
SHAPE = (8, 8, 1)
TOWER = (32,)
SINGLE = "single_task"
MODELS = (SINGLE, "hard_sharing", "cross_stitch", "mtan")
#: Dense widths tried for hard sharing's and MTAN's trunk when matching the budget.
CANDIDATES = tuple(range(16, 257, 4))


def conv() -> keras.layers.Layer:
    return keras.layers.Conv2D(16, 3, padding="same", activation="relu")


def builders(widths: dict[str, int]) -> dict[str, Callable[[list[Any]], MultiTaskModel]]:
    return {
        SINGLE: lambda tasks: single_task(
            tasks, SHAPE, architecture="hard_sharing", trunk=[conv, 64], tower_units=TOWER
        ),
        "hard_sharing": lambda tasks: hard_sharing(
            tasks, SHAPE, trunk=[conv, widths["hard_sharing"]], tower_units=TOWER
        ),
        "cross_stitch": lambda tasks: cross_stitch(tasks, SHAPE, blocks=[conv, 64], tower_units=TOWER),
        "mtan": lambda tasks: mtan(tasks, SHAPE, blocks=[conv, widths["mtan"]], tower_units=TOWER),
    }


def describe(widths: dict[str, int]) -> dict[str, str]:
    return {
        SINGLE: "single_task(hard_sharing, trunk=[Conv2D 16, Dense 64]) per digit",
        "hard_sharing": f"hard_sharing(trunk=[Conv2D 16, Dense {widths['hard_sharing']}])",
        "cross_stitch": "cross_stitch(blocks=[Conv2D 16, Dense 64]), a unit after each block",
        "mtan": f"mtan(blocks=[Conv2D 16, Dense {widths['mtan']}])",
    }


def match_widths(tasks: list[Any]) -> tuple[dict[str, int], dict[str, int]]:
    """The Dense widths closest to cross-stitch's parameter count, and every model's count."""
    budget = builders({"hard_sharing": 64, "mtan": 64})["cross_stitch"](tasks).count_params()
    widths: dict[str, int] = {}
    for name in ("hard_sharing", "mtan"):
        counts: dict[int, int] = {}

        def count(w: int, name: str = name, counts: dict[int, int] = counts) -> int:
            if w not in counts:
                counts[w] = builders({"hard_sharing": w, "mtan": w})[name](tasks).count_params()
            return counts[w]

        # The count grows with the width: bisect for the first candidate at or above the budget.
        low, high = 0, len(CANDIDATES) - 1
        while low < high:
            middle = (low + high) // 2
            low, high = (middle + 1, high) if count(CANDIDATES[middle]) < budget else (low, middle)
        near = [CANDIDATES[i] for i in (low - 1, low) if 0 <= i < len(CANDIDATES)]
        widths[name] = min(near, key=lambda w: abs(count(w) - budget))
    params = {name: build(tasks).count_params() for name, build in builders(widths).items()}
    for name in ("hard_sharing", "mtan"):
        if abs(params[name] - budget) > 0.1 * budget:
            raise SystemExit(f"{name} cannot be matched to {budget} parameters: {params}")
    return widths, params


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


def train_one(
    build: Callable[[list[Any]], MultiTaskModel],
    dataset: MultiTaskDataset,
    seed: int,
    args: argparse.Namespace,
) -> dict[str, Any]:
    keras.utils.set_random_seed(seed)
    model = build(dataset.tasks)
    model.compile(keras.optimizers.Adam(args.lr))
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
    probe = multidigits(seed=0, n_train=64, n_validation=16, n_test=16)
    widths, params = match_widths(probe.tasks)
    print(f"widths {widths}; parameters {params}", flush=True)
    table = builders(widths)
    runs: list[dict[str, Any]] = []
    for seed in range(args.seed0, args.seed0 + args.seeds):
        dataset = multidigits(seed=seed, n_train=args.n_train, n_validation=200, n_test=args.n_test)
        single: dict[str, float] = {}
        for name in MODELS:
            result = train_one(table[name], dataset, seed, args)
            if name == SINGLE:
                single = result["accuracy"]
            else:
                result["delta_m"] = delta_m(result["accuracy"], single, dict.fromkeys(TASKS, True))
            runs.append({"model": name, "seed": seed, **result})
            print(
                f"seed={seed} {name}: left={result['accuracy']['left']:.4f} "
                f"right={result['accuracy']['right']:.4f} Δm={result.get('delta_m', float('nan')):+.2f} "
                f"{result['ms_per_step']:.1f} ms/step {result['train_seconds']:.0f} s",
                flush=True,
            )
    summary = {}
    for name in MODELS:
        rows = [r for r in runs if r["model"] == name]
        summary[name] = {
            "left": _common.mean_std([r["accuracy"]["left"] for r in rows]),
            "right": _common.mean_std([r["accuracy"]["right"] for r in rows]),
            "delta_m": _common.mean_std([r["delta_m"] for r in rows]) if name != SINGLE else None,
            "ms_per_step": _common.mean_std([r["ms_per_step"] for r in rows]),
            "params": params[name],
        }
    return {
        "benchmark": "mtan_multidigits",
        "command": args.command,
        "settings": {
            "data": "multidigits (scikit-learn 8x8 digits on a 10x10 canvas, offset 2, resized to 8x8)",
            "n_train": args.n_train,
            "n_test": args.n_test,
            "seeds": list(range(args.seed0, args.seed0 + args.seeds)),
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "learning_rate": args.lr,
            "tower_units": list(TOWER),
            "widths": widths,
            "models": describe(widths),
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
    models = "; ".join(f"`{name}`: {text}" for name, text in s["models"].items())
    lines = [
        *_common.markdown_head(
            "# MTAN vs hard sharing vs cross-stitch on MultiDigits, matched parameters", result["command"]
        ),
        f"{s['data']}; {s['n_train']} train / {s['n_test']} test composites per seed. Models ({s['tower_units']} "
        f"tower per digit): {models}. The Dense widths of hard sharing and MTAN are matched to cross-stitch's "
        f"parameter count (within 10 %). Adam lr {s['learning_rate']}, batch {s['batch_size']}, {s['epochs']} "
        f"epochs, static weights, no early stopping. Seeds {s['seeds']} (data, initialisation, shuffling); "
        "mean ± std over seeds. Δm % > 0 means better than single-task. ms/step: median training-batch time "
        f"after epoch 1 on a shared, loaded 2-core CPU. Wall time {result['wall_seconds'] / 60:.1f} min.",
        "",
        "| model | params | left acc. % | right acc. % | Δm % | ms/step |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in result["summary"].items():
        dm = "—" if row["delta_m"] is None else _pm(row["delta_m"], 1.0)
        lines.append(
            f"| {name} | {row['params']} | {_pm(row['left'])} | {_pm(row['right'])} | {dm} | "
            f"{_pm(row['ms_per_step'], 1.0, 1)} |"
        )
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = _common.parser(__doc__)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/mtan_multidigits"))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--seed0", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--n-train", type=int, default=10_000)
    parser.add_argument("--n-test", type=int, default=2_000)
    parser.add_argument("--quick", action="store_true", help="1 seed, 2 epochs, 1000 train composites")
    args = parser.parse_args(argv)
    args.command = _common.command_line(__file__, argv)
    if args.quick:
        args.seeds, args.epochs, args.n_train, args.n_test = 1, 2, 1000, 500
    result = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(to_markdown(result))
    print(f"wrote {args.out.with_suffix('.md')}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
