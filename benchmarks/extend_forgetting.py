"""Forgetting when a task is added to a trained run (issue 18, item 3): ``mtl-keras extend`` with ``keep``
none (plain fine-tuning), frozen, distill (LwF) and ewc, over seeds, on a synthetic table where plain
fine-tuning does forget.

The table (``--rows`` rows, 8 standard-normal features x) has two old tasks that read one direction of x
each, a = 1[x·u + 0.3 ε > 0] (binary) and b = sin(2 x·v) + 0.1 ε (regression), and a new task
c = (x·w)² − 1 + 0.1 ε (regression) whose direction w is orthogonal to u and v. The run is
``hard_sharing`` with a narrow trunk (``--trunk``, default 16 then 4 units): to learn c the extension must
reuse the trunk's few units, which the old heads depend on; with their labels masked in the extension data
nothing pulls them back unless ``keep`` does. Per seed s: the table is drawn with seed s, the old run
(tasks a, b) is trained by ``mtl_keras.experiments.run`` with recipe seed s, then each ``keep`` extends
that same run by task c with the same budget (``--epochs``, ``--learning-rate``). ``distill_weight`` and
``ewc_strength`` are fixed before the run (``--distill-weight``, ``--ewc-strength``), not tuned on test.

Reported per keep, mean ± std over seeds: the old tasks' test AUC (a) and MSE (b) before and after, the
forgetting (AUC drop; MSE rise), the largest change of an old prediction, and the new task's test MSE
next to its single-task network's. ``<out>/results.json`` has every run's numbers; ``<out>/results.md``
the table and a plain reading.

    nice -n 5 python benchmarks/extend_forgetting.py --out benchmarks/results/extend_forgetting
    python benchmarks/extend_forgetting.py --quick --out /tmp/extend_forgetting_quick   # smoke run
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ["CUDA_VISIBLE_DEVICES"] = ""

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common

KEEPS = ("none", "frozen", "distill", "ewc")
FEATURES = 8


def table(rows: int, seed: int) -> Any:
    """The synthetic table of seed ``seed`` (see the module docstring)."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, FEATURES))
    basis, _ = np.linalg.qr(rng.normal(size=(FEATURES, 3)))
    u, v, w = basis.T
    noise = rng.normal(size=(3, rows))
    frame = pd.DataFrame(x, columns=[f"x{k}" for k in range(FEATURES)])
    frame["a"] = (x @ u + 0.3 * noise[0] > 0).astype(int)
    frame["b"] = np.sin(2 * (x @ v)) + 0.1 * noise[1]
    frame["c"] = (x @ w) ** 2 - 1 + 0.1 * noise[2]
    return frame


def old_recipe(args: Any, path: Path, seed: int) -> dict[str, Any]:
    """The recipe of the old run (tasks a and b; c is not a feature)."""
    return {
        "name": "extend_forgetting",
        "seed": seed,
        "data": {
            "name": "csv",
            "path": str(path),
            "tasks": {"a": "binary", "b": "regression"},
            "features": {"c": "skip"},
        },
        "architecture": {"name": "hard_sharing", "trunk": list(args.trunk), "tower_units": [16]},
        "training": {"epochs": args.base_epochs, "batch_size": 64, "optimizer": {"learning_rate": 0.01}},
        "baselines": {"single_task": False},
        "export": {"enabled": False},
    }


def one_seed(args: Any, seed: int, work: Path) -> dict[str, Any]:
    """The old run of seed ``seed`` and its extension by task c under every keep."""
    from mtl_keras.experiments import prepare, run
    from mtl_keras.experiments.extend import ExtendSettings, extend, extension_data, load_run
    from mtl_keras.recipes import validate

    directory = work / f"seed_{seed}"
    directory.mkdir(parents=True, exist_ok=True)
    table(args.rows, seed).to_csv(directory / "table.csv", index=False)
    start = time.perf_counter()
    run(prepare(validate(old_recipe(args, directory / "table.csv", seed))), directory / "run")
    base_seconds = time.perf_counter() - start
    recipe, _ = load_run(directory / "run")
    results: dict[str, Any] = {"base_seconds": base_seconds, "keep": {}}
    for keep in KEEPS:
        data, block = extension_data(recipe, "c:regression")
        settings = ExtendSettings(
            keep=keep,
            epochs=args.epochs,
            learning_rate=args.learning_rate,
            distill_weight=args.distill_weight,
            ewc_strength=args.ewc_strength,
            baseline=keep == "none",
        )
        start = time.perf_counter()
        report = extend(
            directory / "run", "c", data, settings=settings, output_dir=directory / keep, data_block=block
        )
        results["keep"][keep] = {
            "seconds": time.perf_counter() - start,
            "old_tasks": report["old_tasks"],
            "new_task": report["added_task"]["test"],
            "single_task": report["added_task"]["single_task"],
        }
        print(f"seed {seed} keep {keep}: " + json.dumps(forgetting(results["keep"][keep])), flush=True)
    return results


def forgetting(entry: dict[str, Any]) -> dict[str, float]:
    """AUC drop of a, MSE rise of b, the new task's MSE and the largest old-prediction change."""
    a, b = entry["old_tasks"]["a"], entry["old_tasks"]["b"]
    return {
        "a_auc_drop": a["before"]["auc"] - a["after"]["auc"],
        "b_mse_rise": b["after"]["mse"] - b["before"]["mse"],
        "c_mse": entry["new_task"]["mse"],
        "max_change": max(a["max_abs_prediction_change"], b["max_abs_prediction_change"]),
    }


def summary(seeds: dict[str, Any]) -> dict[str, Any]:
    """Per keep: mean ± std over seeds of every :func:`forgetting` number and of the before/after metrics."""
    out: dict[str, Any] = {}
    for keep in KEEPS:
        entries = [seeds[s]["keep"][keep] for s in seeds]
        values = [forgetting(e) for e in entries]
        row = {k: _common.mean_std([v[k] for v in values]) for k in values[0]}
        row["per_seed"] = values
        for task, metric in (("a", "auc"), ("b", "mse")):
            for when in ("before", "after"):
                row[f"{task}_{metric}_{when}"] = _common.mean_std(
                    [e["old_tasks"][task][when][metric] for e in entries]
                )
        out[keep] = row
    singles = [seeds[s]["keep"]["none"]["single_task"]["mse"] for s in seeds]
    out["single_task_c_mse"] = _common.mean_std(singles)
    return out


def reading(s: dict[str, Any]) -> list[str]:
    """Plain sentences on whether plain fine-tuning forgets and whether distill / ewc forget less, per
    seed."""
    none = s["none"]["per_seed"]
    lines = []
    forgets = all(v["a_auc_drop"] > 0.01 or v["b_mse_rise"] > 0.01 for v in none)
    lines.append(
        f"Plain fine-tuning {'forgets on every seed' if forgets else 'does not forget on every seed'}: "
        f"a's AUC drops {_common.plus_minus(s['none']['a_auc_drop'], 1, 4)}, "
        f"b's MSE rises {_common.plus_minus(s['none']['b_mse_rise'], 1, 4)}."
    )
    for keep in ("frozen", "distill", "ewc"):
        rows = s[keep]["per_seed"]
        less = [
            r["a_auc_drop"] < n["a_auc_drop"] and r["b_mse_rise"] < n["b_mse_rise"]
            for r, n in zip(rows, none, strict=True)
        ]
        share = [
            (r["b_mse_rise"] / n["b_mse_rise"]) if n["b_mse_rise"] > 0 else float("nan")
            for r, n in zip(rows, none, strict=True)
        ]
        shares = ", ".join(f"{round(x, 3) + 0.0:.0%}" for x in share)
        per_seed = ", ".join(f"{r['c_mse']:.3f}" for r in rows)
        lines.append(
            f"`{keep}`: forgets less than plain fine-tuning on both old tasks on {sum(less)} of {len(less)} "
            f"seeds; b's MSE rise is {shares} of plain fine-tuning's; the new "
            f"task's MSE {_common.plus_minus(s[keep]['c_mse'], 1, 4)} "
            f"(per seed {per_seed}) "
            f"(plain fine-tuning {_common.plus_minus(s['none']['c_mse'], 1, 4)}, its single-task network "
            f"{_common.plus_minus(s['single_task_c_mse'], 1, 4)})."
        )
    lines.append(
        "The protection has a price on this setup: with a 4-unit trunk the new task can only be learned by "
        "changing the features the old heads read, so a keep that holds the old tasks also holds c back "
        "(compare c's MSE with plain fine-tuning's and its single-task network's, seed by seed)."
    )
    return lines


def markdown(result: dict[str, Any]) -> str:
    s = result["summary"]
    lines = _common.markdown_head("# Forgetting when a task is added (`mtl-keras extend`)", result["command"])
    settings = result["settings"]
    lines += [
        f"{len(result['seeds'])} seeds; {settings['rows']} rows per table, trunk {settings['trunk']}, old run "
        f"{settings['base_epochs']} epochs; extension {settings['epochs']} epochs at learning rate "
        f"{settings['learning_rate']}; distill_weight {settings['distill_weight']}, ewc_strength "
        f"{settings['ewc_strength']} (fixed before the run). Machine: {result['machine']['platform']}; "
        f"{result['seconds']:.0f} s wall.",
        "",
        "| keep | a AUC before | a AUC after | a AUC drop | b MSE before | b MSE after | b MSE rise | "
        "max old prediction change | c MSE (new task) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for keep in KEEPS:
        r = s[keep]
        lines.append(
            f"| {keep} | {_common.plus_minus(r['a_auc_before'], 1, 4)} | "
            f"{_common.plus_minus(r['a_auc_after'], 1, 4)} | {_common.plus_minus(r['a_auc_drop'], 1, 4)} | "
            f"{_common.plus_minus(r['b_mse_before'], 1, 4)} | {_common.plus_minus(r['b_mse_after'], 1, 4)} | "
            f"{_common.plus_minus(r['b_mse_rise'], 1, 4)} | {_common.plus_minus(r['max_change'], 1, 3)} | "
            f"{_common.plus_minus(r['c_mse'], 1, 4)} |"
        )
    lines += [
        "",
        f"Single-task network for c (same data and budget): MSE "
        f"{_common.plus_minus(s['single_task_c_mse'], 1, 4)}.",
        "",
        "## Reading",
        "",
        *[f"- {line}" for line in reading(s)],
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = _common.parser(__doc__)
    parser.add_argument("--out", required=True)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--trunk", type=int, nargs="+", default=[16, 4])
    parser.add_argument("--base-epochs", type=int, default=15)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--learning-rate", type=float, default=0.01)
    parser.add_argument("--distill-weight", type=float, default=1.0)
    parser.add_argument("--ewc-strength", type=float, default=100.0)
    parser.add_argument("--quick", action="store_true", help="1 seed, 600 rows, 2 epochs (smoke run)")
    parser.add_argument("--render", default=None, help="rewrite results.md of --out from this results.json")
    args = parser.parse_args(argv)
    if args.render:
        result = json.loads(Path(args.render).read_text())
        (Path(args.out) / "results.md").write_text(markdown(result))
        return 0
    if args.quick:
        args.seeds, args.rows, args.base_epochs, args.epochs = 1, 600, 2, 2
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(2)
    start = time.perf_counter()
    seeds: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="extend_forgetting_") as work:
        for seed in range(args.seeds):
            seeds[str(seed)] = one_seed(args, seed, Path(work))
    result = {
        "command": _common.command_line(__file__, argv),
        "machine": _common.machine(),
        "settings": {k: v for k, v in vars(args).items() if k not in ("out", "quick")},
        "seconds": time.perf_counter() - start,
        "seeds": seeds,
    }
    result["summary"] = summary(seeds)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=2, default=float))
    (out / "results.md").write_text(markdown(result))
    sys.stdout.write(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
