"""The MMoE paper's synthetic experiment (Ma et al., KDD 2018, section 4 and figure 4), issue 9 item 1.

For every task correlation ``p`` and every seed a fresh data set ``synthetic_mmoe(p, seed=seed)`` is drawn
(10,000 train / 1,000 validation / 1,000 test examples, d = 100) and three models with the paper's sizes are
trained on it from the same Keras seed:

- shared bottom: ``hard_sharing(trunk=(113,), tower_units=(8,))`` (one shared ReLU layer of 113 units),
- OMoE: ``omoe(num_experts=8, expert_units=(16,), tower_units=(8,))`` (one gate shared by both tasks),
- MMoE: ``mmoe(num_experts=8, expert_units=(16,), tower_units=(8,))`` (one gate per task).

Training: Adam (learning rate ``--lr``), a fixed number of epochs, no early stopping, equal (static) task
weights. The result of a run is the test MSE of each task after the last epoch. Over the seeds we report the
median, the inter-quartile range and min/max of each task's test loss and of their mean, and check the
paper's three claims: median loss MMoE ≤ OMoE ≤ shared bottom at every p; the shared-bottom − MMoE gap grows
as p falls; the shared bottom varies most across seeds. We also measure the Pearson correlation of the two
tasks' labels (train split, mean over seeds) and put it next to the paper's 0.00 / 0.22 / 0.46 / 1.00.

    python benchmarks/mmoe_synthetic.py --out benchmarks/results/mmoe_synthetic
    python benchmarks/mmoe_synthetic.py --quick --out /tmp/mmoe_quick   # seconds: 1 seed, 2 p, tiny data
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import argparse
import itertools
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np

from mtl_keras.builders import hard_sharing, mmoe, omoe
from mtl_keras.data import MultiTaskDataset, synthetic_mmoe
from mtl_keras.model import MultiTaskModel

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `_common`, however this file is loaded
import _common

#: The label correlations the paper reports for p = 0, 0.5, 0.9, 1.0 (docs/methods.md, "MMoE synthetic data").
PAPER_CORRELATION = {0.0: 0.00, 0.5: 0.22, 0.9: 0.46, 1.0: 1.00}
MODELS = ("shared_bottom", "omoe", "mmoe")
TASKS = ("y1", "y2")


def build(name: str, dataset: MultiTaskDataset) -> MultiTaskModel:
    """The paper's sizes: 8 experts × 16 units and 8-unit towers; a 113-unit shared bottom (same budget)."""
    builders: dict[str, Callable[[], MultiTaskModel]] = {
        "shared_bottom": lambda: hard_sharing(dataset.tasks, 100, trunk=(113,), tower_units=(8,)),
        "omoe": lambda: omoe(dataset.tasks, 100, num_experts=8, expert_units=(16,), tower_units=(8,)),
        "mmoe": lambda: mmoe(dataset.tasks, 100, num_experts=8, expert_units=(16,), tower_units=(8,)),
    }
    return builders[name]()


def train_one(name: str, dataset: MultiTaskDataset, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    keras.utils.set_random_seed(seed)
    model = build(name, dataset)
    model.compile(keras.optimizers.Adam(args.lr))
    start = time.perf_counter()
    model.fit(dataset.train.x, dataset.train.y, batch_size=args.batch_size, epochs=args.epochs, verbose=0)
    seconds = time.perf_counter() - start
    results = model.evaluate(dataset.test.x, dataset.test.y, batch_size=1000, verbose=0, return_dict=True)
    losses = {t: float(results[f"{t}_loss"]) for t in TASKS}
    return {"test_loss": losses, "params": int(model.count_params()), "train_seconds": seconds}


def label_correlation(dataset: MultiTaskDataset) -> float:
    return float(np.corrcoef(dataset.train.y["y1"], dataset.train.y["y2"])[0, 1])


def summarise(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    q25, median, q75 = np.percentile(a, [25, 50, 75])
    return {
        "median": float(median),
        "q25": float(q25),
        "q75": float(q75),
        "iqr": float(q75 - q25),
        "min": float(a.min()),
        "max": float(a.max()),
        "mean": float(a.mean()),
        "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0,
    }


def run(args: argparse.Namespace, out: Path | None = None) -> dict[str, Any]:
    """Seeds in the outer loop; when ``out`` is given the results so far are written after every seed, so an
    interrupted run still leaves complete seeds behind."""
    runs: list[dict[str, Any]] = []
    correlations: dict[str, list[float]] = {str(p): [] for p in args.p}
    params: dict[str, int] = {}
    start = time.perf_counter()
    result: dict[str, Any] = {}
    for seed in range(args.seed0, args.seed0 + args.seeds):
        for p in args.p:
            dataset = synthetic_mmoe(
                p,
                n=args.n_train,
                seed=seed,
                n_validation=args.n_test,
                n_test=args.n_test,
                sin_params=args.sin_params,
            )
            correlations[str(p)].append(label_correlation(dataset))
            for name in MODELS:
                one = train_one(name, dataset, seed, args)
                params[name] = one.pop("params")
                runs.append({"p": p, "seed": seed, "model": name, **one})
                print(
                    f"p={p} seed={seed} {name}: "
                    + ", ".join(f"{t}={v:.4f}" for t, v in one["test_loss"].items()),
                    flush=True,
                )
        result = assemble(args, runs, correlations, params, time.perf_counter() - start)
        if out is not None:
            _common.write_results(result, out, to_markdown, plot, "test_loss_vs_p.png")
    return result


def assemble(
    args: argparse.Namespace,
    runs: list[dict[str, Any]],
    correlations: dict[str, list[float]],
    params: dict[str, int],
    seconds: float,
) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for p in args.p:
        entry: dict[str, Any] = {
            "label_correlation": float(np.mean(correlations[str(p)])),
            "label_correlation_min": float(np.min(correlations[str(p)])),
            "label_correlation_max": float(np.max(correlations[str(p)])),
            "paper_label_correlation": PAPER_CORRELATION.get(p),
        }
        for name in MODELS:
            rows = [r for r in runs if r["p"] == p and r["model"] == name]
            entry[name] = {t: summarise([r["test_loss"][t] for r in rows]) for t in TASKS}
            entry[name]["mean_of_tasks"] = summarise(
                [float(np.mean(list(r["test_loss"].values()))) for r in rows]
            )
        summary[str(p)] = entry
    seeds_done = sorted({r["seed"] for r in runs})
    return {
        "benchmark": "mmoe_synthetic",
        "command": args.command,
        "settings": {
            "p": args.p,
            "seeds": seeds_done,
            "seeds_requested": args.seeds,
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "learning_rate": args.lr,
            "optimizer": "adam",
            "n_train": args.n_train,
            "n_test": args.n_test,
            "sin_params": args.sin_params,
            "params": params,
        },
        "machine": _common.machine(),
        "wall_seconds": seconds,
        "summary": summary,
        "claims": claims(summary, args.p),
        "paired": paired(runs, args.p),
        "runs": runs,
    }


PAIRS = (("mmoe", "omoe"), ("mmoe", "shared_bottom"), ("omoe", "shared_bottom"))


def paired(runs: list[dict[str, Any]], ps: list[float]) -> dict[str, Any]:
    """Per p and model pair (a, b), over the seeds (same data and Keras seed for both): the fraction of seeds
    where a has the lower mean-of-tasks test loss, and the median of loss(a) − loss(b)."""
    loss = {(r["p"], r["seed"], r["model"]): float(np.mean(list(r["test_loss"].values()))) for r in runs}
    out: dict[str, Any] = {}
    for p in ps:
        seeds = sorted({r["seed"] for r in runs if r["p"] == p})
        for a, b in PAIRS:
            diff = np.array([loss[(p, s, a)] - loss[(p, s, b)] for s in seeds])
            out[f"{p}:{a}-{b}"] = {
                "a_wins": float(np.mean(diff < 0)),
                "median_difference": float(np.median(diff)),
            }
    return out


def claims(summary: dict[str, Any], ps: list[float]) -> dict[str, Any]:
    """The paper's three claims, checked on the mean-of-tasks test loss."""

    def med(p: float, name: str) -> float:
        return float(summary[str(p)][name]["mean_of_tasks"]["median"])

    def iqr(p: float, name: str) -> float:
        return float(summary[str(p)][name]["mean_of_tasks"]["iqr"])

    order = {str(p): med(p, "mmoe") <= med(p, "omoe") <= med(p, "shared_bottom") for p in ps}
    mmoe_best = {str(p): med(p, "mmoe") <= min(med(p, "omoe"), med(p, "shared_bottom")) for p in ps}
    by_p = sorted(ps, reverse=True)  # from related to unrelated tasks
    gaps = {str(p): med(p, "shared_bottom") - med(p, "mmoe") for p in by_p}
    gap_values = [gaps[str(p)] for p in by_p]
    grows = all(b >= a for a, b in itertools.pairwise(gap_values))
    varies_most = {str(p): iqr(p, "shared_bottom") >= max(iqr(p, "omoe"), iqr(p, "mmoe")) for p in ps}
    worst = {str(p): med(p, "shared_bottom") >= max(med(p, "omoe"), med(p, "mmoe")) for p in ps}
    return {
        "shared_bottom_highest_median": worst,
        "gap_lowest_p_minus_gap_highest_p": gap_values[-1] - gap_values[0],
        "order_mmoe_le_omoe_le_shared_bottom": order,
        "mmoe_lowest_median": mmoe_best,
        "gap_shared_bottom_minus_mmoe": gaps,
        "gap_grows_as_p_falls": grows,
        "shared_bottom_largest_iqr": varies_most,
    }


# === Output ===


def _cell(s: dict[str, float], digits: int) -> str:
    return f"{s['median']:.{digits}f} [{s['q25']:.{digits}f}, {s['q75']:.{digits}f}] ({s['min']:.{digits}f}–{s['max']:.{digits}f})"


def to_markdown(result: dict[str, Any]) -> str:
    settings, summary, claim = result["settings"], result["summary"], result["claims"]
    ps = settings["p"]
    digits = 4
    lines = [
        *_common.markdown_head("# MMoE synthetic data: shared bottom vs OMoE vs MMoE", result["command"]),
        f"Seeds {settings['seeds'][0]}–{settings['seeds'][-1]} ({len(settings['seeds'])} per p"
        + (
            f", of {settings['seeds_requested']} requested"
            if len(settings["seeds"]) < settings["seeds_requested"]
            else ""
        )
        + "); "
        f"{settings['n_train']} train / {settings['n_test']} test examples, d = 100, "
        f"`sin_params={settings['sin_params']!r}`; Adam lr {settings['learning_rate']}, "
        f"{settings['epochs']} epochs, batch {settings['batch_size']}, no early stopping. Parameters: "
        + ", ".join(f"{k} {v}" for k, v in settings["params"].items())
        + f". Wall time {result['wall_seconds'] / 60:.1f} min.",
        "",
        "## Label correlation",
        "",
        "| p | measured Pearson corr(y1, y2) (mean over seeds, [min, max]) | paper |",
        "|---|---|---|",
    ]
    for p in ps:
        s = summary[str(p)]
        paper = s["paper_label_correlation"]
        lines.append(
            f"| {p} | {s['label_correlation']:.3f} [{s['label_correlation_min']:.3f}, "
            f"{s['label_correlation_max']:.3f}] | {'' if paper is None else f'{paper:.2f}'} |"
        )
    lines += [
        "",
        "## Test loss (MSE)",
        "",
        "Each cell: median [25th, 75th percentile] (min–max) over seeds.",
        "",
        "| p | model | y1 | y2 | mean of tasks |",
        "|---|---|---|---|---|",
    ]
    for p in ps:
        for name in MODELS:
            s = summary[str(p)][name]
            lines.append(
                f"| {p} | {name} | {_cell(s['y1'], digits)} | {_cell(s['y2'], digits)} | "
                f"{_cell(s['mean_of_tasks'], digits)} |"
            )
    lines += [
        "",
        "## The paper's claims (on the mean-of-tasks test loss)",
        "",
        "| p | shared bottom highest median | median MMoE ≤ OMoE ≤ shared bottom | MMoE lowest median "
        "| gap (shared bottom − MMoE median) | shared bottom has the largest IQR |",
        "|---|---|---|---|---|---|",
    ]
    for p in ps:
        key = str(p)
        lines.append(
            f"| {p} | {_yes(claim['shared_bottom_highest_median'][key])} "
            f"| {_yes(claim['order_mmoe_le_omoe_le_shared_bottom'][key])} | "
            f"{_yes(claim['mmoe_lowest_median'][key])} | {claim['gap_shared_bottom_minus_mmoe'][key]:+.5f} | "
            f"{_yes(claim['shared_bottom_largest_iqr'][key])} |"
        )
    lines += [
        "",
        f"Gap grows monotonically as p falls (1.0 → 0.0): {_yes(claim['gap_grows_as_p_falls'])}; gap at the "
        f"lowest p minus gap at the highest p: {claim['gap_lowest_p_minus_gap_highest_p']:+.5f}.",
        "",
        "## Paired comparison over seeds (same data and initialisation seed)",
        "",
        "Fraction of seeds where the first model has the lower mean-of-tasks test loss; median paired difference "
        "of that loss (first − second).",
        "",
        "| p | " + " | ".join(f"{a} vs {b}" for a, b in PAIRS) + " |",
        "|---|" + "---|" * len(PAIRS),
        *(
            f"| {p} | "
            + " | ".join(
                f"{result['paired'][f'{p}:{a}-{b}']['a_wins']:.0%} ({result['paired'][f'{p}:{a}-{b}']['median_difference']:+.5f})"
                for a, b in PAIRS
            )
            + " |"
            for p in ps
        ),
        "",
        "![test loss vs p](test_loss_vs_p.png)",
        "",
    ]
    return "\n".join(lines)


def _yes(value: bool) -> str:
    return "yes" if value else "**no**"


def plot(result: dict[str, Any], path: Path) -> None:
    plt = _common.pyplot()

    ps = result["settings"]["p"]
    figure, ax = plt.subplots(figsize=(7, 4.2))
    width = 0.25
    colors = {"shared_bottom": "tab:gray", "omoe": "tab:orange", "mmoe": "tab:blue"}
    for k, name in enumerate(MODELS):
        data = [
            [
                float(np.mean(list(r["test_loss"].values())))
                for r in result["runs"]
                if r["p"] == p and r["model"] == name
            ]
            for p in ps
        ]
        positions = np.arange(len(ps)) + (k - 1) * width
        box = ax.boxplot(
            data,
            positions=positions,
            widths=width * 0.85,
            patch_artist=True,
            whis=(0, 100),
            medianprops={"color": "black"},
        )
        for patch in box["boxes"]:
            patch.set_facecolor(colors[name])
            patch.set_alpha(0.6)
        ax.plot([], [], color=colors[name], lw=6, alpha=0.6, label=name)
    ax.set_xticks(np.arange(len(ps)))
    ax.set_xticklabels([str(p) for p in ps])
    ax.set_xlabel("task correlation p = cos(w1, w2)")
    ax.set_yscale("log")
    ax.set_ylabel("test MSE, mean of the two tasks (log scale)")
    n = len(result["settings"]["seeds"])
    ax.set_title(f"MMoE synthetic data, {n} seeds (box: IQR, whiskers: min/max)")
    ax.legend()
    _common.save_figure(figure, path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    parser = _common.parser(__doc__)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/mmoe_synthetic"))
    parser.add_argument("--p", type=float, nargs="+", default=[0.0, 0.5, 0.9, 1.0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--seed0", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--n-train", type=int, default=10_000)
    parser.add_argument("--n-test", type=int, default=1_000)
    parser.add_argument("--sin-params", choices=("fixed", "random"), default="random")
    parser.add_argument("--quick", action="store_true", help="1 seed, p in {0, 1}, 500 examples, 1 epoch")
    parser.add_argument(
        "--render",
        type=Path,
        default=None,
        help="only rewrite the Markdown and PNG of this results.json into --out",
    )
    args = parser.parse_args(argv)
    if args.render is not None:
        result = json.loads(args.render.read_text())
        result["claims"] = claims(result["summary"], result["settings"]["p"])
        result["paired"] = paired(result["runs"], result["settings"]["p"])
        _common.write_results(result, args.out, to_markdown, plot, "test_loss_vs_p.png")
        return 0
    args.command = _common.command_line(__file__, argv)
    if args.quick:
        args.p, args.seeds, args.epochs, args.n_train, args.n_test = [0.0, 1.0], 1, 1, 500, 200
    run(args, args.out)
    print(f"wrote {args.out}/results.md", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
