"""Distillation from single-task teachers on the census pair (issue 18, item 4): ``zoo/census_mmoe.yaml``
with and without the recipe's ``distill`` (weight 1, temperature 2), over seeds, on a cut budget.

Each run is one ``mtl-keras train`` command (``mtl_keras.cli.main`` in this process, TensorFlow on 2
intra-op threads) with ``--set`` overrides: fewer rows (``data.max_rows``) and epochs, no early stopping
(with ``distill`` the validation loss holds the distillation term, so stopping on it would differ between
the two arms for that reason alone), no GBDT / logistic references, no export; ``seed=S`` for each seed.
A distilled run trains its single-task networks first and uses them as the teachers; the plain run trains
the same networks (same recipe seed) after its multi-task model, for Δm only.

Per task, the test metrics of the plain and the distilled multi-task model and of the single-task
networks, mean ± std over seeds; Δm both ways: each arm against its single-task networks (the report's
Δm), and the distilled model against the plain one of the same seed (Δm with the plain run as the
reference, same metrics and directions). ``<out>/results.json`` holds every run's command, wall time and
report numbers; ``<out>/results.md`` the table and a plain reading.

    nice -n 5 python benchmarks/census_distill.py --out benchmarks/results/census_distill
    python benchmarks/census_distill.py --quick --out /tmp/census_distill_quick   # smoke run
    python benchmarks/census_distill.py --render benchmarks/results/census_distill/results.json \
        --out benchmarks/results/census_distill   # rewrite results.md from results.json
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ["CUDA_VISIBLE_DEVICES"] = ""

import json
import shlex
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common

RECIPE = "zoo/census_mmoe.yaml"
DISTILL = "distill={from: baselines, weight: 1.0, temperature: 2.0}"
FIXED = [
    "training.early_stopping=null",
    "baselines.gbdt=false",
    "baselines.linear=false",
    "export.enabled=false",
]
ARMS = ("plain", "distill")


def overrides(args: Any, seed: int, arm: str) -> list[str]:
    """The ``--set`` values of one run."""
    values = [f"data.max_rows={args.max_rows}", f"training.epochs={args.epochs}", *FIXED, f"seed={seed}"]
    return [*values, DISTILL] if arm == "distill" else values


def train(run_dir: Path, sets: Sequence[str]) -> dict[str, Any]:
    """One ``mtl-keras train`` run; its command, wall time and report."""
    from mtl_keras import cli

    argv = ["--quiet", "train", RECIPE, *(a for s in sets for a in ("--set", s)), "--output", str(run_dir)]
    start = time.perf_counter()
    code = cli.main(argv)
    seconds = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"mtl-keras {shlex.join(argv)} exited with {code}")
    report = json.loads((run_dir / "report.json").read_text())
    shown = [a for a in argv if a not in ("--quiet",)]
    shown[shown.index("--output") + 1] = "RUN_DIR"
    return {"command": "mtl-keras " + shlex.join(shown), "wall_seconds": seconds, "report": report}


def metrics(report: dict[str, Any], model: str) -> dict[str, dict[str, float]]:
    """``{task: {metric: value}}`` of the report's Δm metrics, for ``model`` (multi_task / single_task)."""
    chosen = report["delta_m_metrics"]
    return {
        task: {m: float(entry[model][m]) for m in chosen[task]} for task, entry in report["tasks"].items()
    }


def delta_between(new: dict[str, Any], reference: dict[str, Any]) -> dict[str, Any]:
    """Δm % of ``new``'s multi-task model with ``reference``'s multi-task model as the baseline."""
    from mtl_keras.evaluation.delta_m import delta_m_multi, relative_improvement
    from mtl_keras.tasks import HIGHER_IS_BETTER

    ours, theirs = metrics(new, "multi_task"), metrics(reference, "multi_task")
    per_task = {
        task: {
            m: relative_improvement(value, theirs[task][m], HIGHER_IS_BETTER[m])
            for m, value in values.items()
        }
        for task, values in ours.items()
    }
    return {"delta_m": float(delta_m_multi(ours, theirs)), "per_task_percent": per_task}


def run(args: Any) -> dict[str, Any]:
    seeds = list(range(args.seed0, args.seed0 + args.seeds))
    runs: dict[str, list[dict[str, Any]]] = {arm: [] for arm in ARMS}
    with tempfile.TemporaryDirectory(prefix="census-distill-") as scratch:
        for seed in seeds:
            for arm in ARMS:
                entry = train(Path(scratch) / f"{arm}_{seed}", overrides(args, seed, arm))
                report = entry.pop("report")
                entry |= {
                    "seed": seed,
                    "delta_m": report["delta_m"],
                    "distill": report.get("distill"),
                    "multi_task": metrics(report, "multi_task"),
                    "single_task": metrics(report, "single_task"),
                    "_report": report,
                }
                runs[arm].append(entry)
                print(f"seed {seed} {arm}: Δm {report['delta_m']:+.3f} % ({entry['wall_seconds']:.0f} s)")
    between = [
        delta_between(d["_report"], p["_report"]) for d, p in zip(runs["distill"], runs["plain"], strict=True)
    ]
    for arm in ARMS:
        for entry in runs[arm]:
            del entry["_report"]
    summary = summarise(runs, between)
    return {
        "benchmark": "census_distill",
        "settings": {
            "recipe": RECIPE,
            "overrides": [*overrides(args, seeds[0], "distill")[:-2], "seed=S"],
            "distill": DISTILL,
            "seeds": seeds,
        },
        "runs": runs,
        "distill_vs_plain": between,
        "summary": summary,
    }


def summarise(runs: dict[str, list[dict[str, Any]]], between: list[dict[str, Any]]) -> dict[str, Any]:
    first = runs["plain"][0]["multi_task"]
    table: dict[str, Any] = {}
    for task, values in first.items():
        for metric in values:
            row: dict[str, Any] = {}
            for arm in ARMS:
                row[arm] = _common.mean_std([r["multi_task"][task][metric] for r in runs[arm]])
            row["single_task"] = _common.mean_std([r["single_task"][task][metric] for r in runs["plain"]])
            row["distill_vs_plain_percent"] = _common.mean_std(
                [b["per_task_percent"][task][metric] for b in between]
            )
            table[f"{task}/{metric}"] = row
    same = all(
        p["single_task"] == d["single_task"] for p, d in zip(runs["plain"], runs["distill"], strict=True)
    )
    return {
        "metrics": table,
        "delta_m_vs_single_task": {arm: _common.mean_std([r["delta_m"] for r in runs[arm]]) for arm in ARMS},
        "delta_m_distill_vs_plain": _common.mean_std([b["delta_m"] for b in between]),
        "single_task_identical_in_both_arms": same,
    }


def reading(result: dict[str, Any]) -> str:
    """A plain reading of the numbers: the sign and size of the effect against the seed-to-seed spread."""
    s = result["summary"]
    between = s["delta_m_distill_vs_plain"]
    plain, distill = s["delta_m_vs_single_task"]["plain"], s["delta_m_vs_single_task"]["distill"]
    n = len(result["settings"]["seeds"])
    spread = max(plain["std"], distill["std"], between["std"])
    if n < 2:
        verdict = (
            f"one seed only ({between['mean']:+.3f} % Δm against the plain model): no spread, no verdict"
        )
    elif abs(between["mean"]) <= spread:
        verdict = (
            f"a null result: the distilled model differs from the plain one by {between['mean']:+.3f} % Δm, "
            f"within the seed-to-seed spread (std up to {spread:.3f} %) over {n} seeds"
        )
    elif between["mean"] > 0:
        verdict = (
            f"a positive result: distillation improves the multi-task model by {between['mean']:+.3f} % Δm, "
            f"more than the seed-to-seed spread (std up to {spread:.3f} %) over {n} seeds"
        )
    else:
        verdict = (
            f"a negative result: distillation worsens the multi-task model by {between['mean']:+.3f} % Δm, "
            f"more than the seed-to-seed spread (std up to {spread:.3f} %) over {n} seeds"
        )
    if n >= 2 and abs(plain["mean"]) <= plain["std"]:
        teachers = (
            " The plain multi-task model is already level with its teachers (its Δm against them is within "
            "its spread), which may be why their soft targets add nothing measurable here."
        )
    elif plain["mean"] > 0:
        teachers = " The plain multi-task model already beats its teachers on Δm."
    else:
        teachers = " The teachers beat the plain multi-task model on Δm."
    return (
        f"On this cut budget distillation from the single-task networks is {verdict}.{teachers} Against the "
        f"single-task networks Δm goes from {plain['mean']:+.3f} ± {plain['std']:.3f} % (plain) to "
        f"{distill['mean']:+.3f} ± {distill['std']:.3f} % (distilled). Only {n} seeds and a reduced "
        "budget: a difference smaller than a few tenths of a percent is not evidence either way."
    )


def markdown(result: dict[str, Any]) -> str:
    s, settings = result["summary"], result["settings"]
    lines = _common.markdown_head("# Distillation from single-task teachers, census pair", result["command"])
    lines += [
        f"`{settings['recipe']}` with `--set` {', '.join(f'`{o}`' for o in settings['overrides'])}; "
        f"the distilled arm adds `--set '{settings['distill']}'`. Seeds {settings['seeds']}; Adult test "
        "split; mean ± std over seeds. Every run's full command and wall time is in results.json.",
        "",
        "| task / metric | plain MTL | distilled MTL | single-task | distilled vs plain % |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, row in s["metrics"].items():
        cells = [_common.plus_minus(row[k], 1.0, 4) for k in ("plain", "distill", "single_task")]
        lines.append(
            f"| {name} | {' | '.join(cells)} | {_common.plus_minus(row['distill_vs_plain_percent'], 1.0, 3)} |"
        )
    d = s["delta_m_vs_single_task"]
    lines += [
        "",
        f"- Δm vs the single-task networks: plain {_common.plus_minus(d['plain'], 1.0, 3)} %, "
        f"distilled {_common.plus_minus(d['distill'], 1.0, 3)} %",
        f"- Δm of the distilled model with the plain one (same seed) as the reference: "
        f"{_common.plus_minus(s['delta_m_distill_vs_plain'], 1.0, 3)} %",
        f"- the single-task networks' test metrics are identical in both arms: "
        f"{s['single_task_identical_in_both_arms']}",
        f"- total wall time {result['wall_seconds'] / 60:.1f} min; {result['machine']['platform']}",
        "",
        "**Reading.** " + reading(result),
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _common.parser(__doc__)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/census_distill"))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--seed0", type=int, default=0)
    parser.add_argument("--max-rows", type=int, default=12000, help="data.max_rows (rows read per file)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="600 rows, 1 epoch, 1 seed (smoke run)")
    parser.add_argument("--render", type=Path, default=None, help="rewrite results.md from this results.json")
    args = parser.parse_args(argv)
    if args.render is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.md").write_text(markdown(json.loads(args.render.read_text())))
        return 0
    if args.quick:
        args.max_rows, args.epochs, args.seeds = 600, 1, 1
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(2)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    start = time.perf_counter()
    result = {"command": _common.command_line(__file__, argv)} | run(args)
    result["wall_seconds"] = time.perf_counter() - start
    result["machine"] = _common.machine(tensorflow=tf.__version__)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "results.md").write_text(markdown(result))
    sys.stdout.write(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
