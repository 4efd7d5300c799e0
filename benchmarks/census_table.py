"""The census task pair (income > 50K, never married; MMoE paper, UCI Adult): architectures vs single-task,
issue 9 item 5.

Architectures, sizes of the zoo's census recipes (``zoo/census_*.yaml``):

- hard sharing: shared Dense 64 → 32 trunk, 16-unit towers;
- MMoE: 8 experts × 32 units, 16-unit towers;
- PLE: 2 levels, 2 shared + 2 task experts per level × 32 units, 16-unit towers;

each trained with static (equal) weights, plus optional (architecture, balancer) pairs (``--extra``), and each
architecture's single-task version (``single_task(architecture=...)`` with the same options: one full model
per task). Training: Adam lr 2e-3, batch 256, a fixed number of epochs, no early stopping, the shipped Adult
train split minus a 10 % validation split; results on the Adult test split. Δm % (positive = better than
single-task) averages each task's AUC and accuracy changes, then the tasks
(:func:`mtl_keras.evaluation.delta_m.delta_m_multi`, the convention of the library's reports), per seed against
the single-task model of the same architecture and seed; then mean ± std over seeds.

    python benchmarks/census_table.py --out benchmarks/results/census_table
    python benchmarks/census_table.py --encodings standardize periodic piecewise_linear --references \
        --extra --out benchmarks/results/census_encodings

``--encodings`` repeats every row per encoding of the numeric columns (``standardize``: the plain MLP input;
``periodic``: PLR; ``piecewise_linear``: PLE-Q; :mod:`mtl_keras.data.columns`), and the validation-split
metrics are tabled too, since an encoding is chosen on validation only. ``--references`` adds scikit-learn's
HistGradientBoosting and logistic regression per task (:mod:`mtl_keras.evaluation.reference`).
    python benchmarks/census_table.py --quick --out /tmp/census_quick
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

from mtl_keras.builders.catalog import get_builder
from mtl_keras.data import MultiTaskDataset, load_census
from mtl_keras.data.pipeline import to_dataset
from mtl_keras.evaluation.delta_m import delta_m_multi
from mtl_keras.evaluation.reference import fit_reference_models
from mtl_keras.evaluation.report import REFERENCE_LABELS
from mtl_keras.experiments.preparation import model_inputs_spec

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `_common`, however this file is loaded
import _common

ARCHITECTURES: dict[str, dict[str, Any]] = {
    "hard_sharing": {"trunk": (64, 32), "tower_units": (16,)},
    "mmoe": {"num_experts": 8, "expert_units": (32,), "tower_units": (16,)},
    "ple": {
        "num_levels": 2,
        "num_shared_experts": 2,
        "num_task_experts": 2,
        "expert_units": (32,),
        "tower_units": (16,),
    },
}
TASKS = ("income", "never_married")
#: Short names of the numeric encodings in tables.
ENCODING_LABELS = {"standardize": "MLP input", "periodic": "PLR", "piecewise_linear": "PLE-Q"}
METRICS = ("auc", "accuracy")


def train_one(
    architecture: str,
    balancer: str | None,
    dataset: MultiTaskDataset,
    seed: int,
    args: argparse.Namespace,
    encoding: str = "standardize",
) -> dict[str, Any]:
    """``balancer=None`` trains the single-task version of ``architecture``; ``encoding`` is the numeric
    columns' encoding (``standardize``: the plain MLP input, ``periodic``: PLR, ``piecewise_linear``: PLE-Q)."""
    keras.utils.set_random_seed(seed)
    inputs = model_inputs_spec(dataset)
    if encoding == "periodic" and args.frequency_scale is not None:
        inputs = inputs.with_encodings(
            {"numeric": {"encoding": encoding, "frequency_scale": args.frequency_scale}}
        )
    elif encoding != "standardize":
        inputs = inputs.with_encodings({"numeric": encoding})
    options = ARCHITECTURES[architecture]
    if balancer is None:
        model = get_builder("single_task")(dataset.tasks, inputs, architecture=architecture, **options)
    else:
        model = get_builder(architecture)(dataset.tasks, inputs, **options)
    model.compile(keras.optimizers.Adam(args.lr), balancer=balancer)
    train = to_dataset(dataset.train, args.batch_size, shuffle=True, seed=seed)
    start = time.perf_counter()
    model.fit(train, epochs=args.epochs, verbose=0, shuffle=False)  # the dataset shuffles itself
    seconds = time.perf_counter() - start
    results = model.evaluate(to_dataset(dataset.test, 4096), verbose=0, return_dict=True)
    validation = model.evaluate(to_dataset(dataset.validation, 4096), verbose=0, return_dict=True)
    return {
        "metrics": {t: {m: float(results[f"{t}_{m}"]) for m in METRICS} for t in TASKS},
        "validation": {t: {m: float(validation[f"{t}_{m}"]) for m in METRICS} for t in TASKS},
        "train_seconds": seconds,
        "params": int(model.count_params()),
    }


def configurations(args: argparse.Namespace) -> list[tuple[str, str | None, str]]:
    configs: list[tuple[str, str | None, str]] = []
    for encoding in args.encodings:
        for architecture in args.architectures:
            configs += [(architecture, None, encoding), (architecture, "static", encoding)]
        for extra in args.extra:
            architecture, balancer = extra.split(":")
            configs.append((architecture, balancer, encoding))
    return configs


def label(architecture: str, balancer: str | None, encoding: str = "standardize") -> str:
    name = f"{architecture} single-task" if balancer is None else f"{architecture} + {balancer}"
    return name if encoding == "standardize" else f"{name}, {ENCODING_LABELS[encoding]}"


def run(args: argparse.Namespace) -> dict[str, Any]:
    start = time.perf_counter()
    runs: list[dict[str, Any]] = []
    for seed in range(args.seed0, args.seed0 + args.seeds):
        dataset = load_census(seed=seed, max_rows=args.max_rows)
        if args.references:
            fitted = fit_reference_models(dataset, dataset.tasks, seed=seed)
            for model, by_task in fitted["models"].items():
                metrics = {t: {m: float(by_task[t][m]) for m in METRICS} for t in TASKS}
                runs.append({"reference": model, "seed": seed, "metrics": metrics})
                print(
                    f"seed={seed} {model}: " + ", ".join(f"{t} auc={metrics[t]['auc']:.4f}" for t in TASKS),
                    flush=True,
                )
        singles: dict[tuple[str, str], dict[str, dict[str, float]]] = {}
        for architecture, balancer, encoding in configurations(args):
            result = train_one(architecture, balancer, dataset, seed, args, encoding)
            if balancer is None:
                singles[architecture, encoding] = result["metrics"]
            else:
                result["delta_m"] = delta_m_multi(result["metrics"], singles[architecture, encoding])
            runs.append(
                {
                    "architecture": architecture,
                    "balancer": balancer,
                    "encoding": encoding,
                    "seed": seed,
                    **result,
                }
            )
            m = result["metrics"]
            print(
                f"seed={seed} {label(architecture, balancer, encoding)}: "
                + ", ".join(f"{t} auc={m[t]['auc']:.4f} acc={m[t]['accuracy']:.4f}" for t in TASKS)
                + (f", Δm={result['delta_m']:+.3f}" if "delta_m" in result else ""),
                flush=True,
            )
    summary = {}
    for architecture, balancer, encoding in configurations(args):
        rows = [
            r
            for r in runs
            if r.get("architecture") == architecture
            and r["balancer"] == balancer
            and r["encoding"] == encoding
        ]
        entry: dict[str, Any] = {
            "architecture": architecture,
            "balancer": balancer,
            "encoding": encoding,
            "params": rows[0]["params"],
            "train_seconds": _common.mean_std([r["train_seconds"] for r in rows]),
        }
        for t in TASKS:
            for m in METRICS:
                entry[f"{t}_{m}"] = _common.mean_std([r["metrics"][t][m] for r in rows])
                entry[f"validation_{t}_{m}"] = _common.mean_std([r["validation"][t][m] for r in rows])
        entry["delta_m"] = _common.mean_std([r["delta_m"] for r in rows]) if balancer is not None else None
        summary[label(architecture, balancer, encoding)] = entry
    for model in ("gbdt", "linear"):
        rows = [r for r in runs if r.get("reference") == model]
        if rows:
            entry = {"architecture": model, "balancer": None, "encoding": "scikit-learn", "params": None}
            for t in TASKS:
                for m in METRICS:
                    entry[f"{t}_{m}"] = _common.mean_std([r["metrics"][t][m] for r in rows])
            entry["delta_m"] = None
            summary[REFERENCE_LABELS[model] + " (scikit-learn)"] = entry
    return {
        "benchmark": "census_table",
        "command": args.command,
        "settings": {
            "seeds": list(range(args.seed0, args.seed0 + args.seeds)),
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "learning_rate": args.lr,
            "max_rows": args.max_rows,
            "architectures": {a: ARCHITECTURES[a] for a in args.architectures},
            "encodings": list(args.encodings),
            "frequency_scale": args.frequency_scale,
        },
        "machine": _common.machine(),
        "wall_seconds": time.perf_counter() - start,
        "summary": summary,
        "runs": runs,
    }


def _pm(s: dict[str, float], scale: float = 1.0, digits: int = 4) -> str:
    return _common.plus_minus(s, scale, digits)


def to_markdown(result: dict[str, Any]) -> str:
    s = result["settings"]
    lines = [
        *_common.markdown_head(
            "# Census task pair (UCI Adult): hard sharing, MMoE, PLE vs single-task", result["command"]
        ),
        f"Seeds {s['seeds']}; Adam lr {s['learning_rate']}, batch {s['batch_size']}, {s['epochs']} epochs, "
        "no early stopping; Adult test split. Mean ± std over seeds. Δm % > 0: better than the single-task "
        "version of the same architecture (AUC and accuracy averaged per task, then over tasks). "
        f"Wall time {result['wall_seconds'] / 60:.1f} min.",
        "",
        "| model | income AUC | income acc. | never-married AUC | never-married acc. | Δm % | params |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, e in result["summary"].items():
        dm = "—" if e["delta_m"] is None else _pm(e["delta_m"], 1.0, 2)
        params = "—" if e["params"] is None else e["params"]
        lines.append(
            f"| {name} | {_pm(e['income_auc'])} | {_pm(e['income_accuracy'])} | {_pm(e['never_married_auc'])} "
            f"| {_pm(e['never_married_accuracy'])} | {dm} | {params} |"
        )
    validated = [(k, e) for k, e in result["summary"].items() if "validation_income_auc" in e]
    if len(result["settings"].get("encodings", [])) > 1:
        lines += [
            "",
            "Validation split (what an encoding is chosen on):",
            "",
            "| model | income AUC | never-married AUC |",
            "|---|---|---|",
        ]
        lines += [
            f"| {k} | {_pm(e['validation_income_auc'])} | {_pm(e['validation_never_married_auc'])} |"
            for k, e in validated
        ]
    lines += ["", "![Δm](delta_m.png)", ""]
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> None:
    plt = _common.pyplot()

    rows = [(k, e) for k, e in result["summary"].items() if e["delta_m"] is not None]
    figure, ax = plt.subplots(figsize=(max(5, 1.1 * len(rows)), 3.8))
    x = np.arange(len(rows))
    ax.bar(x, [e["delta_m"]["mean"] for _, e in rows], yerr=[e["delta_m"]["std"] for _, e in rows], capsize=3)
    ax.axhline(0.0, color="black", lw=0.8)
    ax.set_xticks(x)
    ax.set_xticklabels([k for k, _ in rows], rotation=30, ha="right")
    ax.set_ylabel("Δm % vs single-task (+ = MTL better)")
    ax.set_title(f"Census task pair, {len(result['settings']['seeds'])} seeds")
    _common.save_figure(figure, path)


def main(argv: list[str] | None = None) -> int:
    parser = _common.parser(__doc__)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/census_table"))
    parser.add_argument(
        "--architectures", nargs="+", default=list(ARCHITECTURES), choices=list(ARCHITECTURES)
    )
    parser.add_argument(
        "--extra",
        nargs="*",
        default=["mmoe:uncertainty", "mmoe:pcgrad"],
        help="more architecture:balancer rows, e.g. mmoe:pcgrad",
    )
    parser.add_argument(
        "--encodings",
        nargs="+",
        default=["standardize"],
        choices=list(ENCODING_LABELS),
        help="numeric encodings to compare (each architecture row per encoding)",
    )
    parser.add_argument(
        "--references", action="store_true", help="add HistGradientBoosting and logistic-regression rows"
    )
    parser.add_argument(
        "--frequency-scale",
        type=float,
        default=None,
        help="σ of the PLR frequencies (default: the library's)",
    )
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--seed0", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--max-rows", type=int, default=None, help="read at most this many rows per file")
    parser.add_argument("--quick", action="store_true", help="hard sharing only, 2,000 rows, 1 seed, 1 epoch")
    args = parser.parse_args(argv)
    args.command = _common.command_line(__file__, argv)
    if args.quick:
        args.architectures, args.extra, args.seeds, args.epochs, args.max_rows = (
            ["hard_sharing"],
            [],
            1,
            1,
            2000,
        )
    _common.write_results(run(args), args.out, to_markdown, plot, "delta_m.png")
    print(f"wrote {args.out}/results.md", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
