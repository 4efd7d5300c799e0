"""Task structure of four two-task problems (issue 17): lookahead and pairwise affinity, and the Pareto
front by linear weights and by EPO, each through the `mtl-keras affinity` / `mtl-keras pareto` commands.

The problems, each a zoo recipe with a cut budget (``--set`` overrides, listed per problem in the
summary and in ``PROBLEMS`` below):

* ``census``: ``zoo/census_mmoe.yaml`` (UCI Adult, income and never married, MMoE);
* ``synthetic_high`` / ``synthetic_low``: ``zoo/synthetic_mmoe.yaml`` (the MMoE paper's synthetic
  regression pair) with task correlation parameter p = 1.0 and p = 0.0;
* ``multidigits``: ``zoo/multidigits_pcgrad.yaml`` (left and right digit, a shared Conv2D + Dense trunk)
  with the static balancer instead of PCGrad, so that the affinity is that of plain training.

For each, in this order: ``pareto --method linear``, ``pareto --method epo``, ``affinity --method
lookahead`` and ``affinity --method pairwise``, each writing into its own folder under
``<out>/<problem>/`` (``front.json``/``front.png``/``points/`` and ``affinity.json``/``affinity.png``/
``pairwise/``). The single-task baselines are trained once, by the linear front: their cached result
(``points/single_task.json``, keyed by the recipe's fingerprint, the same for every command here) is copied
into the EPO front's and the pairwise run's caches before those start, where the commands reuse it.

The commands run in this process (``mtl_keras.cli.main``), with TensorFlow on 2 intra-op threads; the wall
time of each is measured around the call. ``<out>/summary.json`` holds every run's command, wall time and
the numbers read from its output; ``<out>/README.md`` is the summary with a plain reading. ``--quick``
cuts every budget further (a smoke run, minutes; its numbers mean nothing). ``--render --reading FILE``
rewrites the README from ``summary.json`` with a plain reading of the results (written by hand) put in.

    nice -n 5 python benchmarks/task_structure.py --out benchmarks/results/task_structure
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ["CUDA_VISIBLE_DEVICES"] = ""

import json
import math
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common

PROBLEMS: dict[str, dict[str, Any]] = {
    "census": {
        "recipe": "zoo/census_mmoe.yaml",
        "what": "UCI Adult, income > 50K and never married, MMoE 8 × 32 experts",
        "overrides": [
            "data.max_rows=20000",
            "training.epochs=6",
            "training.early_stopping=null",
            "baselines.gbdt=false",
            "baselines.linear=false",
        ],
        "quick": ["data.max_rows=1500", "training.epochs=1"],
    },
    "synthetic_high": {
        "recipe": "zoo/synthetic_mmoe.yaml",
        "what": "MMoE paper synthetic regression pair, p = 1.0 (identical up to noise), random sinusoid parameters",
        "overrides": ["data.p=1.0", "data.sin_params=random", "data.n=8000", "training.epochs=10"],
        "quick": ["data.n=600", "data.n_validation=200", "data.n_test=200", "training.epochs=1"],
    },
    "synthetic_low": {
        "recipe": "zoo/synthetic_mmoe.yaml",
        "what": "MMoE paper synthetic regression pair, p = 0.0 (uncorrelated), random sinusoid parameters",
        "overrides": ["data.p=0.0", "data.sin_params=random", "data.n=8000", "training.epochs=10"],
        "quick": ["data.n=600", "data.n_validation=200", "data.n_test=200", "training.epochs=1"],
    },
    "multidigits": {
        "recipe": "zoo/multidigits_pcgrad.yaml",
        "what": "MultiDigits left and right digit, hard sharing (Conv2D 16 + Dense 64 trunk), static weights",
        "overrides": ["balancer=static", "data.n_train=8000", "training.epochs=8"],
        "quick": [
            "data.n_train=500",
            "data.n_validation=200",
            "data.n_test=200",
            "training.epochs=1",
        ],
    },
}

RUNS: list[tuple[str, list[str]]] = [
    ("pareto_linear", ["pareto", "--method", "linear"]),
    ("pareto_epo", ["pareto", "--method", "epo"]),
    ("affinity_lookahead", ["affinity", "--method", "lookahead"]),
    ("affinity_pairwise", ["affinity", "--method", "pairwise"]),
]


def _command(
    run: str, base: list[str], recipe: str, overrides: Sequence[str], out: Path, points: int
) -> list[str]:
    argv = [*base, recipe, "--output", str(out)]
    if run.startswith("pareto"):
        argv += ["--points", str(points)]
    if run == "affinity_lookahead":
        argv += ["--every", "2"]
    for item in overrides:
        argv += ["--set", item]
    return argv


def _merge(overrides: Sequence[str], more: Sequence[str]) -> list[str]:
    """``KEY=VALUE`` items, a later one replacing an earlier one with the same key."""
    merged = {item.split("=", 1)[0]: item for item in overrides}
    merged.update({item.split("=", 1)[0]: item for item in more})
    return list(merged.values())


def _reuse_baselines(problem_dir: Path) -> None:
    """The linear front's single-task result into the EPO front's and the pairwise run's caches."""
    source = problem_dir / "pareto_linear" / "points" / "single_task.json"
    if not source.exists():
        return
    for target in (
        problem_dir / "pareto_epo" / "points" / "single_task.json",
        problem_dir / "affinity_pairwise" / "pairwise" / "alone.json",
    ):
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)


def _label_correlation(recipe: str, overrides: Sequence[str]) -> float | None:
    """Pearson correlation of the two training labels of a synthetic recipe (None for other data)."""
    from mtl_keras.data import synthetic_mmoe
    from mtl_keras.recipes import load_recipe

    loaded = load_recipe(recipe, list(overrides))
    if loaded.data.name != "synthetic_mmoe":
        return None
    options = dict(loaded.data.options)
    dataset = synthetic_mmoe(seed=loaded.seed, **options)
    labels = [dataset.train.y[t.name] for t in dataset.tasks]
    if len(labels) != 2:
        return None
    return float(np.corrcoef(np.ravel(labels[0]), np.ravel(labels[1]))[0, 1])


def affinity_reading(payload: dict[str, Any]) -> dict[str, Any]:
    tasks = payload["tasks"]
    matrix = payload["matrix"]
    a_to_b, b_to_a = matrix[0][1], matrix[1][0]
    reading = {
        "tasks": tasks,
        f"{tasks[0]}_onto_{tasks[1]}": a_to_b,
        f"{tasks[1]}_onto_{tasks[0]}": b_to_a,
        "groups": [g["tasks"] for g in payload["groups"]["groups"]],
        "score": payload["groups"]["score"],
    }
    details = payload["details"]
    if payload["method"] == "pairwise":
        reading["metric"] = {t: m["name"] for t, m in details["metric"].items()}
        reading["alone"] = details["alone"]
        reading["pair"] = next(iter(details["pairs"].values()))
    else:
        # Z_{i→j} / Z_{j→j}: how much a step on task i lowers task j's loss, as a fraction of what a step
        # on task j itself does.
        diagonal = [matrix[0][0], matrix[1][1]]
        reading[f"{tasks[0]}_onto_{tasks[1]}_relative"] = (
            a_to_b / diagonal[1] if a_to_b is not None and diagonal[1] else None
        )
        reading[f"{tasks[1]}_onto_{tasks[0]}_relative"] = (
            b_to_a / diagonal[0] if b_to_a is not None and diagonal[0] else None
        )
        reading["self"] = diagonal
        reading["measurements"] = details.get("counts")
        epochs = details.get("epoch_matrices") or []
        reading["per_epoch"] = [[m[0][1], m[1][0]] for m in epochs]
    return reading


def front_reading(payload: dict[str, Any]) -> dict[str, Any]:
    tasks = payload["tasks"]
    metrics = payload["metrics"]
    points = payload["points"]
    reading: dict[str, Any] = {
        "tasks": tasks,
        "metric": {t: metrics[t]["name"] for t in tasks},
        "points": [
            {
                "preference": [p["preference"][t] for t in tasks],
                "validation": [p["validation"][t] for t in tasks],
                "test": [p["test"][t] for t in tasks],
                "non_dominated": p["non_dominated"],
                "train_seconds": p["train_seconds"],
            }
            for p in points
        ],
        "non_dominated": sum(bool(p["non_dominated"]) for p in points),
        "single_task": None
        if payload.get("single_task") is None
        else {
            "validation": [payload["single_task"]["validation"][t] for t in tasks],
            "test": [payload["single_task"]["test"][t] for t in tasks],
        },
    }
    # Where the front's metric is a loss (lower is better, e.g. MSE), how far each interior point's
    # validation losses are from its ray λ_1 L_1 = λ_2 L_2: max(λ_i L_i) / min(λ_i L_i) (1 = on the ray).
    if all(not metrics[t]["higher_is_better"] for t in tasks):
        ratios = []
        for point in reading["points"]:
            weighted = [w * v for w, v in zip(point["preference"], point["validation"], strict=True)]
            if all(w > 0 for w in point["preference"]) and all(np.isfinite(weighted)) and min(weighted) > 0:
                ratios.append(max(weighted) / min(weighted))
        reading["validation_ray_ratio"] = ratios
    return reading


def read_run(run: str, run_dir: Path) -> dict[str, Any]:
    """The numbers of one finished run, read from the command's own output file."""
    if run.startswith("pareto"):
        return front_reading(json.loads((run_dir / "front.json").read_text(encoding="utf-8")))
    return affinity_reading(json.loads((run_dir / "affinity.json").read_text(encoding="utf-8")))


def ray_check(front_dir: Path) -> dict[str, Any]:
    """Retrain every interior point of a front from its own recipe (``mtl-keras train points/point_<k>.yaml``,
    without baselines and export, in a temporary folder) and read its last-epoch mean training loss per task:
    max(λ_i L_i) / min(λ_i L_i) is 1 on the ray. Also how far the retrain's validation metrics are from the
    front's (0 when the point's recipe reproduces it)."""
    from mtl_keras import cli

    payload = json.loads((front_dir / "front.json").read_text(encoding="utf-8"))
    tasks = payload["tasks"]
    metrics = payload["metrics"]
    start = time.perf_counter()
    points = []
    for point in payload["points"]:
        weights = [point["preference"][t] for t in tasks]
        if not all(w > 0 for w in weights):
            continue
        with tempfile.TemporaryDirectory() as scratch:
            argv = ["train", point["recipe"], "--output", scratch]
            argv += ["--set", "baselines.single_task=false", "--set", "export.enabled=false"]
            if cli.main(argv) != 0:
                points.append({"preference": weights, "rc": 1})
                continue
            history = json.loads((Path(scratch) / "history.json").read_text(encoding="utf-8"))
        losses = [history[f"{t}_loss"][-1] for t in tasks]
        weighted = [w * v for w, v in zip(weights, losses, strict=True)]
        validation = [history[f"val_{t}_{metrics[t]['name']}"][-1] for t in tasks]
        points.append(
            {
                "preference": weights,
                "train_loss": losses,
                "ray_ratio": max(weighted) / min(weighted),
                "validation_difference": max(
                    abs(v - point["validation"][t]) for v, t in zip(validation, tasks, strict=True)
                ),
            }
        )
    return {"points": points, "wall_seconds": time.perf_counter() - start}


def run_problem(name: str, spec: dict[str, Any], out: Path, quick: bool, points: int) -> dict[str, Any]:
    from mtl_keras import cli

    overrides = _merge(spec["overrides"], spec["quick"] if quick else [])
    problem_dir = out / name
    problem_dir.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "recipe": spec["recipe"],
        "what": spec["what"],
        "overrides": overrides,
        "label_correlation": _label_correlation(spec["recipe"], overrides),
        "runs": {},
    }
    for run, base in RUNS:
        run_dir = problem_dir / run
        _reuse_baselines(problem_dir)
        argv = _command(run, base, spec["recipe"], overrides, run_dir, points)
        start = time.perf_counter()
        code = cli.main(argv)
        seconds = time.perf_counter() - start
        entry: dict[str, Any] = {
            "command": "mtl-keras " + shlex.join(argv),
            "wall_seconds": seconds,
            "rc": code,
        }
        if code == 0:
            entry["reading"] = read_run(run, run_dir)
        result["runs"][run] = entry
        if code == 0 and run.startswith("pareto"):
            entry["ray_check"] = ray_check(run_dir)
    return result


def _f(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{value:+.{digits}f}" if isinstance(value, float) and digits < 0 else f"{value:.{digits}f}"


def _signed(value: Any) -> str:
    if value is None:
        return "—"
    return f"{value:+.4f}" if value == 0 or abs(value) >= 1e-3 else f"{value:+.2e}"


def _sign_word(value: Any) -> str:
    if value is None:
        return "unmeasured"
    return "positive" if value > 0 else "negative" if value < 0 else "zero"


def problem_markdown(name: str, problem: dict[str, Any]) -> list[str]:
    lines = [
        f"## {name}",
        "",
        f"{problem['what']}; recipe `{problem['recipe']}` with "
        + ", ".join(f"`{o}`" for o in problem["overrides"])
        + ".",
    ]
    if problem["label_correlation"] is not None:
        lines[-1] += f" Label correlation on the training split: {problem['label_correlation']:.3f}."
    lines += ["", "| run | wall s | command |", "|---|---|---|"]
    for run, entry in problem["runs"].items():
        lines.append(f"| {run} | {entry['wall_seconds']:.0f} | `{entry['command']}` |")
        if "ray_check" in entry:
            lines.append(
                f"| {run} ray check | {entry['ray_check']['wall_seconds']:.0f} | "
                f"`mtl-keras train {name}/{run}/points/point_<k>.yaml --set baselines.single_task=false "
                "--set export.enabled=false` for each interior point |"
            )
    lines.append("")
    runs = problem["runs"]
    for run in ("affinity_lookahead", "affinity_pairwise"):
        reading = runs.get(run, {}).get("reading")
        if reading is None:
            lines.append(f"{run}: failed (rc {runs.get(run, {}).get('rc')}).")
            continue
        a, b = reading["tasks"]
        line = (
            f"**{run.split('_')[1]} affinity** ([affinity.json]({name}/{run}/affinity.json), "
            f"[heat-map]({name}/{run}/affinity.png)): {a} → {b} {_signed(reading[f'{a}_onto_{b}'])}, "
            f"{b} → {a} {_signed(reading[f'{b}_onto_{a}'])}; grouping "
            + " | ".join(" + ".join(g) for g in reading["groups"])
            + f" (score {_signed(reading['score'])})."
        )
        if run == "affinity_pairwise":
            metric = reading["metric"]
            line += (
                " Validation "
                + ", ".join(
                    f"{t} {metric[t]} alone {_f(reading['alone'][t])} / together {_f(reading['pair'][t])}"
                    for t in (a, b)
                )
                + "."
            )
        else:
            line += (
                f" As a fraction of the target's own self-affinity ({_signed(reading['self'][1])} for {b}, "
                f"{_signed(reading['self'][0])} for {a}): {a} → {b} {_signed(reading[f'{a}_onto_{b}_relative'])}, "
                f"{b} → {a} {_signed(reading[f'{b}_onto_{a}_relative'])}; per epoch ({a} → {b}, {b} → {a}): "
                + "; ".join(f"{_signed(x)}, {_signed(y)}" for x, y in reading["per_epoch"])
                + f". Measurements per entry: {int(reading['measurements'][0][1])}."
            )
        lines.append(line)
        lines.append("")
    for run in ("pareto_linear", "pareto_epo"):
        reading = runs.get(run, {}).get("reading")
        if reading is None:
            lines.append(f"{run}: failed (rc {runs.get(run, {}).get('rc')}).")
            continue
        a, b = reading["tasks"]
        metric = reading["metric"]
        lines += [
            f"**{run.split('_')[1]} front** ([front.json]({name}/{run}/front.json), [plot]({name}/{run}/front.png)): "
            f"{reading['non_dominated']} of {len(reading['points'])} points non-dominated on validation.",
            "",
            f"| preference ({a}, {b}) | val {a} {metric[a]} | val {b} {metric[b]} | test {a} | test {b} | non-dominated |",
            "|---|---|---|---|---|---|",
        ]
        for point in reading["points"]:
            pa, pb = point["preference"]
            lines.append(
                f"| {pa:.2f}, {pb:.2f} | {_f(point['validation'][0])} | {_f(point['validation'][1])} | "
                f"{_f(point['test'][0])} | {_f(point['test'][1])} | {'yes' if point['non_dominated'] else ''} |"
            )
        single = reading["single_task"]
        if single is not None:
            lines.append(
                f"| single-task | {_f(single['validation'][0])} | {_f(single['validation'][1])} | "
                f"{_f(single['test'][0])} | {_f(single['test'][1])} | |"
            )
        check = runs[run].get("ray_check")
        if check is not None:
            done = [p for p in check["points"] if "ray_ratio" in p]
            lines += [
                "",
                f"Ray check (each interior point's recipe retrained by `mtl-keras train`, "
                f"{check['wall_seconds']:.0f} s): max/min of λ_i · last-epoch training loss_i (1 = on the ray): "
                + ", ".join(
                    f"{r['preference'][0]:.2f}/{r['preference'][1]:.2f}: {r['ray_ratio']:.2f} "
                    f"(losses {r['train_loss'][0]:.4f}, {r['train_loss'][1]:.4f})"
                    for r in done
                )
                + "; the retrains' validation metrics differ from the front's by at most "
                + (f"{max(r['validation_difference'] for r in done):.1e}" if done else "—")
                + "."
                + (
                    f" {len(check['points']) - len(done)} retrain(s) failed."
                    if len(done) < len(check["points"])
                    else ""
                ),
            ]
        if "validation_ray_ratio" in reading:
            ratios = ", ".join(f"{r:.2f}" for r in reading["validation_ray_ratio"])
            lines += [
                "",
                f"Interior points, max/min of λ_i · validation {metric[a]}_i (1 = on the ray): {ratios}.",
            ]
        lines.append("")
    return lines


def markdown(report: dict[str, Any]) -> str:
    lines = _common.markdown_head(
        "# Task structure: affinity and Pareto fronts (issue 17)", report["command"]
    )
    machine = report["machine"]
    lines += [
        f"Machine: {machine['platform']}, Python {machine['python']}, TensorFlow {machine['tensorflow']}, "
        f"Keras {machine['keras']}, {machine['cpus']} CPUs shared with other jobs (load average "
        f"{machine['load_average_start'][0]:.1f} at the start, {machine['load_average_end'][0]:.1f} at the end), "
        f"TensorFlow on 2 intra-op threads. Total wall time {report['wall_seconds'] / 60:.1f} min"
        + (" (--quick: smoke budgets, the numbers mean nothing)." if report["quick"] else "."),
        "",
        "Each problem's budget is cut with `--set` overrides of the zoo recipe (listed per problem). The",
        "single-task baselines are trained once per problem (by the linear front) and reused from the cache by",
        "the EPO front and the pairwise affinity. Affinity signs: positive = helps. Lookahead affinity",
        "(Fifty et al. 2021) is the mean relative change of the other task's training loss after a step on one",
        "task's loss; pairwise affinity is the relative validation-metric gain of a task trained with the other",
        'vs alone (docs/methods.md, "Task affinity and grouping"). EPO\'s ray λ_1 L_1 = λ_2 L_2 is defined on',
        "training losses, which `front.json` does not record: the ray check retrains each interior point from",
        "its recipe and reads the last epoch's mean training losses; for MSE fronts the same ratio is also",
        "given on validation losses.",
        "",
    ]
    if report.get("reading"):
        lines += [
            "## Reading",
            "",
            "(Written after the run from the numbers below; `--render --reading FILE` puts it here.)",
            "",
            *report["reading"],
            "",
        ]
    for name, problem in report["problems"].items():
        lines += problem_markdown(name, problem)
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _common.parser(__doc__)
    parser.add_argument("--out", default="benchmarks/results/task_structure")
    parser.add_argument("--problems", nargs="+", default=list(PROBLEMS), choices=list(PROBLEMS))
    parser.add_argument("--points", type=int, default=5, help="preference vectors per front (default 5)")
    parser.add_argument("--quick", action="store_true", help="smoke budgets (the numbers mean nothing)")
    parser.add_argument(
        "--reading", default=None, help="a Markdown file with the plain reading, put into the README"
    )
    parser.add_argument(
        "--render", action="store_true", help="rewrite README.md from <out>/summary.json (no training)"
    )
    args = parser.parse_args(argv)
    out = Path(args.out)
    if args.render:
        report = json.loads((out / "summary.json").read_text(encoding="utf-8"))
        for name, problem in report["problems"].items():
            for run, entry in problem["runs"].items():
                if entry["rc"] == 0:
                    entry["reading"] = read_run(run, out / name / run)
        if args.reading:
            report["reading"] = Path(args.reading).read_text(encoding="utf-8").rstrip("\n").split("\n")
        (out / "summary.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        (out / "README.md").write_text(markdown(report), encoding="utf-8")
        return 0
    import keras
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(2)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    start = time.perf_counter()
    load_start = list(os.getloadavg())
    problems = {
        name: run_problem(name, PROBLEMS[name], out, args.quick, args.points) for name in args.problems
    }
    report = {
        "command": _common.command_line(__file__, argv),
        "machine": _common.machine(
            tensorflow=tf.__version__,
            keras=keras.__version__,
            cpus=os.cpu_count(),
            load_average_start=load_start,
            load_average_end=list(os.getloadavg()),
        ),
        "quick": args.quick,
        "wall_seconds": time.perf_counter() - start,
        "problems": problems,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (out / "README.md").write_text(markdown(report), encoding="utf-8")
    failed = [f"{p}/{r}" for p, v in problems.items() for r, e in v["runs"].items() if e["rc"] != 0]
    if failed:
        sys.stderr.write(f"failed runs: {failed}\n")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
