"""`mtl-keras`: train recipes, evaluate runs, export for serving, list what exists. Thin over the library."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mtl_keras.tuning.cli import add_tune_parser, tune_command

DESCRIPTION = """\
Multi-task learning for Keras 3. `train` trains a recipe's multi-task model and its single-task
baselines on the same budget, evaluates both on the test split and writes report.json, report.md, plots,
the model and a TF Serving export."""

EXAMPLES = """\
examples:
  mtl-keras init data.csv --task churn:binary --task spend:regression --output churn.yaml
  mtl-keras train churn.yaml
  mtl-keras train zoo/census_mmoe.yaml
  mtl-keras train zoo/synthetic_mmoe.yaml --set training.epochs=2 --set balancer=pcgrad --output runs/try
  mtl-keras train zoo/census_mmoe.yaml --strategy mirrored     # on every local GPU
  mtl-keras tune tuning/census_search.yaml --max-trials 10
  mtl-keras affinity zoo/synthetic_mmoe.yaml --groups 2      # which tasks should share a network
  mtl-keras pareto zoo/census_mmoe.yaml --points 5 --method stch   # the trade-off between the tasks
  mtl-keras train shop.yaml --init-from runs/shop   # warm start on new data
  mtl-keras extend runs/shop --add-task returned:binary --keep distill   # add a task, old ones protected
  mtl-keras evaluate runs/census_mmoe
  mtl-keras export runs/census_mmoe            # a new version under saved_models/census_mmoe/
  mtl-keras export --check saved_models/census_mmoe/1
  mtl-keras skew saved_models/census_mmoe todays_requests.csv   # exit status 1 on drift
  mtl-keras list balancers"""


def _folder(name: str) -> Path:
    """``zoo/`` (recipes) or ``tuning/`` (search recipes): in the working directory, else the checkout's."""
    here = Path.cwd() / name
    if here.is_dir():
        return here
    return Path(__file__).resolve().parent.parent / name


def _add_overrides(command: argparse.ArgumentParser) -> None:
    """``--set KEY=VALUE`` (repeatable): recipe overrides, for every command that reads a recipe."""
    command.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe value (YAML), e.g. --set training.epochs=3 (repeatable)",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mtl-keras",
        description=DESCRIPTION,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quiet", action="store_true", help="only print results and errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="train a recipe and its single-task baselines; report Δm %%")
    train.add_argument("recipe", help="a recipe YAML file, e.g. zoo/census_mmoe.yaml")
    train.add_argument("--output", "-o", help="run directory (default: runs/<recipe name>)")
    _add_overrides(train)
    train.add_argument(
        "--resume", action="store_true", help="continue an interrupted run from its checkpoint"
    )
    train.add_argument(
        "--init-from",
        metavar="RUN_DIR",
        help="start from the trained weights of RUN_DIR (same tasks and architecture; e.g. retraining on "
        "new data); the single-task baselines start afresh; sets the recipe's init_from",
    )
    train.add_argument(
        "--seeds",
        type=int,
        metavar="N",
        help="train with N seeds (the recipe's seed, seed+1, ...) and give each task a verdict: helps, no "
        "measurable effect or hurts (served from its single-task model); overrides the recipe's seeds",
    )
    train.add_argument(
        "--strategy",
        metavar="NAME",
        help="distribution strategy, overrides the recipe's distribute.strategy: default (one device), "
        "mirrored (every local GPU) or multi_worker (the cluster in TF_CONFIG)",
    )

    init = commands.add_parser(
        "init", help="write a runnable recipe for your own CSV or Parquet file (features inferred)"
    )
    init.add_argument("data_file", metavar="DATA_FILE", help="a CSV (.csv, .csv.gz, a glob) or Parquet file")
    init.add_argument(
        "--task",
        dest="tasks",
        action="append",
        default=[],
        required=True,
        metavar="NAME:KIND[:COLUMN]",
        help="a task: KIND is binary, multiclass or regression; COLUMN (default NAME) holds its labels "
        "(repeatable)",
    )
    init.add_argument("--test", metavar="FILE", help="a test file of its own (default: 20%% of DATA_FILE)")
    init.add_argument(
        "--architecture", default="mmoe", metavar="NAME", help="the architecture (default: mmoe)"
    )
    init.add_argument(
        "--output", "-o", metavar="RECIPE", help="the recipe to write (default: <file stem>.yaml)"
    )

    affinity = commands.add_parser(
        "affinity",
        help="measure task affinity (lookahead during one run, or pairwise training) and group the tasks",
        description="Measure which tasks help each other and split them into at most K groups. "
        "lookahead (default): one training run of the recipe with a lookahead step per task every k "
        "steps (Fifty et al. 2021). pairwise: train every task pair and every task alone with the "
        "recipe's budget; its cost grows as T^2 (T(T-1)/2 pair runs plus the baselines), --pairs "
        "trains a subset. Writes DIR/affinity.json, DIR/affinity.png and prints the matrix and groups.",
    )
    affinity.add_argument("recipe", help="a recipe YAML file, e.g. zoo/synthetic_mmoe.yaml")
    affinity.add_argument(
        "--method", choices=["lookahead", "pairwise"], default="lookahead", help="default: lookahead"
    )
    affinity.add_argument(
        "--groups", type=int, default=2, metavar="K", help="split into at most K groups (default: 2)"
    )
    affinity.add_argument(
        "--every", type=int, default=1, metavar="k", help="lookahead: measure every k steps (default: 1)"
    )
    affinity.add_argument(
        "--learning-rate",
        type=float,
        default=None,
        metavar="LR",
        help="lookahead: the SGD lookahead step size (default: the optimizer's current learning rate)",
    )
    affinity.add_argument(
        "--pairs",
        metavar="A:B,C:D",
        help="pairwise: train only these pairs (default: all T(T-1)/2 pairs)",
    )
    affinity.add_argument("--output", "-o", help="output directory (default: runs/<recipe name>/affinity)")
    _add_overrides(affinity)

    pareto = commands.add_parser(
        "pareto",
        help="train a recipe for N task preferences and draw its Pareto front",
        description="Train the recipe once per preference vector on the simplex over the front's tasks "
        "(linear: static task weights; stch: smooth Tchebycheff with that preference), plus the single-task "
        "baselines, evaluate on validation and test, and write DIR/front.json, DIR/front.png and a runnable "
        "recipe per point (DIR/points/point_<k>.yaml). The recipe's balancer is replaced. Points are cached.",
    )
    pareto.add_argument("recipe", help="a recipe YAML file")
    pareto.add_argument("--points", type=int, default=5, metavar="N", help="preference vectors (default: 5)")
    pareto.add_argument(
        "--method",
        choices=["linear", "stch", "epo"],
        default="linear",
        help="linear weights, smooth Tchebycheff or EPO (preference-exact); default: linear",
    )
    pareto.add_argument(
        "--tasks", metavar="A,B", help="the front's tasks (default: all; others keep weight 1)"
    )
    pareto.add_argument("--output", "-o", help="output directory (default: runs/<recipe name>/pareto)")
    _add_overrides(pareto)

    extend = commands.add_parser(
        "extend",
        help="add a task to a trained run, protecting the old tasks (frozen, distill or ewc)",
        description="Add a head for a new task on a trained run's representation (a fresh copy of an old "
        "task's branch), train it on data labelled for the new task (the old tasks' labels masked) and "
        "protect the old tasks: frozen (every old variable fixed: old predictions unchanged), distill "
        "(LwF: the old model's outputs as soft targets), ewc (diagonal-Fisher penalty from the old "
        "training data) or none (plain fine-tuning). Reports the old tasks' test metrics before/after and "
        "the new task's against its single-task network, writes a run directory and exports a new version "
        "with a predict_<task> signature.",
    )
    extend.add_argument("run_dir", metavar="RUN_DIR", help="a directory written by `mtl-keras train`")
    extend.add_argument(
        "--add-task",
        required=True,
        metavar="NAME:KIND[:COLUMN]",
        help="the new task: KIND is binary, multiclass or regression; COLUMN (default NAME) of the run's "
        "csv/parquet data (or of --data) holds its labels",
    )
    extend.add_argument(
        "--data", metavar="FILE", help="a file with the same feature columns and the new label column"
    )
    extend.add_argument(
        "--keep", choices=["frozen", "distill", "ewc", "none"], default="frozen", help="default: frozen"
    )
    extend.add_argument("--epochs", type=int, metavar="N", help="default: the run's training.epochs")
    extend.add_argument("--distill-weight", type=float, default=1.0, metavar="W", help="distill: default 1")
    extend.add_argument("--temperature", type=float, default=2.0, metavar="T", help="distill: default 2")
    extend.add_argument(
        "--ewc-strength", type=float, default=100.0, metavar="LAMBDA", help="ewc: default 100"
    )
    extend.add_argument("--no-baseline", action="store_true", help="skip the new task's single-task network")
    extend.add_argument(
        "--output", "-o", metavar="DIR", help="the new run directory (default: RUN_DIR_<NAME>)"
    )
    extend.add_argument("--base-dir", help="export base directory (default: the run's)")

    add_tune_parser(commands)

    evaluate = commands.add_parser("evaluate", help="evaluate a trained run on its test split")
    evaluate.add_argument("run_dir", help="a directory written by `mtl-keras train`")

    export = commands.add_parser("export", help="export a run for TF Serving, or check an export")
    export.add_argument(
        "path",
        help="a run directory; with --check, an export base directory or one of its version directories",
    )
    export.add_argument("--base-dir", help="export base directory (default: saved_models/<recipe name>)")
    export.add_argument(
        "--check",
        action="store_true",
        help="load the SavedModel in a fresh process without mtl_keras, run every signature on the stored "
        "request, list the signatures and parse models.config; then time every signature in-process "
        "(p50/p99 at batch 1 and 256, written to BASE_DIR/latency.json)",
    )

    skew = commands.add_parser(
        "skew",
        help="compare serving data with an export's training feature statistics (PSI per column); "
        "exit status 1 when a column alarms",
    )
    skew.add_argument(
        "export_dir", metavar="EXPORT_DIR", help="an export base directory or a version directory"
    )
    skew.add_argument("data_file", metavar="DATA_FILE", help="a CSV (.csv, .csv.gz, .tsv) or Parquet file")
    skew.add_argument(
        "--threshold",
        type=float,
        default=None,
        metavar="PSI",
        help="alarm threshold: a column with PSI >= PSI alarms (default: 0.25)",
    )
    skew.add_argument(
        "--warn", type=float, default=None, metavar="PSI", help="drift warning threshold (default: 0.1)"
    )
    skew.add_argument(
        "--output", "-o", metavar="JSON", help="where to write the JSON report (default: skew.json)"
    )

    listing = commands.add_parser("list", help="list recipes, architectures, balancers or data sets")
    listing.add_argument(
        "what", nargs="?", default="all", choices=["all", "recipes", "architectures", "balancers", "datasets"]
    )
    return parser


def _print(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _train(args: argparse.Namespace) -> int:
    from mtl_keras.evaluation.report import format_table
    from mtl_keras.experiments import prepare, run
    from mtl_keras.recipes import load_recipe, read_raw_recipe, validate
    from mtl_keras.tuning import load_search_recipe

    overrides = list(args.overrides)
    if args.strategy is not None:
        overrides.append(f"distribute.strategy={args.strategy}")
    if args.seeds is not None:
        overrides.append(f"seeds={args.seeds}")
    if args.init_from is not None:
        overrides.append(f"init_from={json.dumps(str(Path(args.init_from).resolve()))}")
    if "search" in read_raw_recipe(args.recipe, overrides):  # a search recipe trains with its own values
        raw, _ = load_search_recipe(args.recipe, overrides)
        recipe = validate(raw, directory=Path(args.recipe).resolve().parent)
    else:
        recipe = load_recipe(args.recipe, overrides)
    output = Path(args.output or os.path.join("runs", recipe.name))
    if recipe.seeds > 1:
        return _train_seeds(args, recipe, output)
    prepared = prepare(recipe)  # every recipe error is raised before anything is written
    try:
        report = run(prepared, output, resume=args.resume)
    except KeyboardInterrupt:
        return _interrupted(args, output)
    _print(format_table(report))
    _print(f"\nwrote {output / 'report.json'}, {output / 'report.md'} and plots in {output / 'plots'}")
    if "export" in report:
        _print(f"exported {report['export']}")
    return 0


def _interrupted(args: argparse.Namespace, output: Path) -> int:
    again = [args.recipe, "--output", str(output)]
    again += [f"--set {shlex.quote(item)}" for item in args.overrides]
    again += ["--strategy", args.strategy] if args.strategy is not None else []
    again += ["--seeds", str(args.seeds)] if args.seeds is not None else []
    again += ["--init-from", args.init_from] if args.init_from is not None else []
    sys.stderr.write(
        f"\ninterrupted: the last checkpoint is in {output}; continue with\n"
        f"  mtl-keras train {' '.join(again)} --resume\n"
    )
    return 130


def _train_seeds(args: argparse.Namespace, recipe: Any, output: Path) -> int:
    from mtl_keras.evaluation.verdict import format_verdicts
    from mtl_keras.experiments.preparation import prepare
    from mtl_keras.experiments.seeds import run_seeds, seed_recipes

    first = prepare(seed_recipes(recipe)[0])  # every recipe error is raised before anything is written
    try:
        summary = run_seeds(recipe, output, resume=args.resume, first=first)
    except KeyboardInterrupt:
        return _interrupted(args, output)
    _print(format_verdicts(summary))
    _print(f"\nwrote {output / 'report.json'}, {output / 'report.md'} and one run per seed in {output}")
    return 0


def _affinity(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from mtl_keras.analysis.affinity import AffinitySettings, format_affinity, run_affinity
    from mtl_keras.experiments import prepare
    from mtl_keras.recipes import RecipeError, load_recipe

    try:
        settings = AffinitySettings(
            method=args.method,
            groups=args.groups,
            every=args.every,
            learning_rate=args.learning_rate,
            pairs=args.pairs,
        )
    except ValidationError as error:
        first = error.errors()[0]
        raise RecipeError(f"--{first['loc'][0]}".replace("_", "-"), first["msg"]) from None
    recipe = load_recipe(args.recipe, list(args.overrides))
    output = Path(args.output or os.path.join("runs", recipe.name, "affinity"))
    prepared = prepare(recipe)
    payload = run_affinity(prepared, output, settings)
    _print(format_affinity(payload))
    _print(f"\nwrote {output / 'affinity.json'} and {payload['plot']}")
    return 0


def _pareto(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from mtl_keras.analysis.pareto import PLOT_FILE, RESULT_FILE, ParetoSettings, format_front, run_pareto
    from mtl_keras.experiments import prepare
    from mtl_keras.recipes import RecipeError, load_recipe

    try:
        settings = ParetoSettings(points=args.points, method=args.method, tasks=args.tasks)
    except ValidationError as error:
        first = error.errors()[0]
        raise RecipeError(f"--{first['loc'][0]}", first["msg"]) from None
    recipe = load_recipe(args.recipe, list(args.overrides))
    output = Path(args.output or os.path.join("runs", recipe.name, "pareto"))
    payload = run_pareto(prepare(recipe), output, settings)
    _print(format_front(payload))
    _print(
        f"\nwrote {output / RESULT_FILE}, {output / PLOT_FILE} and a recipe per point in {output / 'points'}"
    )
    return 0


def _extend(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from mtl_keras.experiments.extend import (
        ExtendSettings,
        extend,
        extension_data,
        format_extension,
        load_run,
    )
    from mtl_keras.recipes import RecipeError

    try:
        settings = ExtendSettings(
            keep=args.keep,
            epochs=args.epochs,
            distill_weight=args.distill_weight,
            temperature=args.temperature,
            ewc_strength=args.ewc_strength,
            baseline=not args.no_baseline,
        )
    except ValidationError as error:
        first = error.errors()[0]
        raise RecipeError(f"--{first['loc'][0]}".replace("_", "-"), first["msg"]) from None
    recipe, _ = load_run(args.run_dir)
    data, block = extension_data(recipe, args.add_task, args.data)
    name = args.add_task.split(":")[0]
    output = Path(args.output or f"{Path(args.run_dir)}_{name}")
    report = extend(
        args.run_dir,
        name,
        data,
        settings=settings,
        output_dir=output,
        export_base_dir=args.base_dir,
        data_block=block,
    )
    _print(format_extension(report))
    _print(f"wrote {output / 'report.json'} and {output / 'report.md'}")
    return 0


def _load_run(run_dir: str) -> tuple[Any, Any]:
    import keras

    from mtl_keras.experiments.seeds import SERVING_FILE
    from mtl_keras.experiments.train import MODEL_FILE
    from mtl_keras.recipes import RecipeError, validate

    directory = Path(run_dir)
    recipe_file, model_file = directory / "recipe.json", directory / MODEL_FILE
    if (directory / SERVING_FILE).exists() and not model_file.exists():
        runs = sorted(p.name for p in directory.glob("seed_*") if p.is_dir())
        raise RecipeError(
            "", f"{run_dir!r} is a run over several seeds; name one of its runs, e.g. {directory / runs[0]}"
        )
    for path in (recipe_file, model_file):
        if not path.exists():
            raise RecipeError(
                "", f"{path} does not exist; is {run_dir!r} a directory written by `mtl-keras train`?"
            )
    recipe = validate(json.loads(recipe_file.read_text()), directory=directory)
    return recipe, keras.models.load_model(model_file)


def _init(args: argparse.Namespace) -> int:
    from mtl_keras.data.columns import describe_columns
    from mtl_keras.recipes.writer import init_recipe

    path, dataset = init_recipe(
        args.data_file, args.tasks, test=args.test, architecture=args.architecture, output=args.output
    )
    _print(describe_columns(dataset.columns, dataset.statistics))
    sizes = ", ".join(f"{s} {dataset.num_examples(s)}" for s in ("train", "validation", "test"))
    _print(f"\ntasks {', '.join(dataset.task_names)}; rows: {sizes}")
    _print(f"wrote {path}; train it with:\n  mtl-keras train {path}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from mtl_keras.experiments.preparation import load_data

    recipe, model = _load_run(args.run_dir)
    dataset = load_data(recipe)
    results = model.evaluate(dataset.batches("test", 1024), verbose=0, return_dict=True)
    width = max(len(k) for k in results)
    for key in sorted(results):
        _print(f"{key:<{width}}  {float(results[key]):.6g}")
    return 0


def _export(args: argparse.Namespace) -> int:
    if args.check:
        from mtl_keras.export.check import check_export, format_report

        base, version = Path(args.path), None
        if base.name.isdigit() and (base / "saved_model.pb").exists():  # a version directory
            base, version = base.parent, int(base.name)
        report = check_export(base, version=version, latency=True)
        _print(format_report(report))
        return 0 if report.get("ok") else 1
    from mtl_keras.experiments.calibrating import CALIBRATION_FILE
    from mtl_keras.experiments.preparation import load_data
    from mtl_keras.experiments.seeds import export_seeds, is_seeds_run
    from mtl_keras.experiments.train import export, export_dir
    from mtl_keras.recipes import validate

    if is_seeds_run(args.path):  # each task from the model its verdict chose
        directory = Path(args.path)
        recipe = validate(json.loads((directory / "recipe.json").read_text()), directory=directory)
        _print(f"exported {export_seeds(directory, recipe, args.base_dir or export_dir(recipe))}")
        return 0
    recipe, model = _load_run(args.path)
    calibration_file = Path(args.path) / CALIBRATION_FILE
    calibration = json.loads(calibration_file.read_text()) if calibration_file.exists() else None
    version_dir = export(
        model,
        load_data(recipe),
        args.base_dir or export_dir(recipe),
        calibration=calibration,
        fusion=recipe.export.fusion,
    )
    _print(f"exported {version_dir}")
    return 0


def _skew(args: argparse.Namespace) -> int:
    from mtl_keras._io import atomic_write_text
    from mtl_keras.monitoring import skew

    alarm = skew.ALARM if args.threshold is None else args.threshold
    warn = min(skew.WARN, alarm) if args.warn is None else args.warn
    try:
        report = skew.check_skew(args.export_dir, args.data_file, warn=warn, alarm=alarm)
    except ValueError as error:
        sys.stderr.write(f"mtl-keras: error: {error}\n")
        return 2
    output = Path(args.output or "skew.json")
    atomic_write_text(output, json.dumps(report, indent=2, sort_keys=True) + "\n")
    _print(skew.format_skew(report))
    _print(f"wrote {output}")
    return 0 if report["ok"] else 1


def _list(args: argparse.Namespace) -> int:
    sections: dict[str, list[str]] = {}
    if args.what in ("all", "recipes"):
        sections["recipes"] = sorted(str(p) for p in _folder("zoo").glob("*.yaml"))
        sections["search recipes (mtl-keras tune)"] = sorted(str(p) for p in _folder("tuning").glob("*.yaml"))
    if args.what in ("all", "architectures"):
        from mtl_keras.builders import names

        sections["architectures"] = names()
    if args.what in ("all", "balancers"):
        from mtl_keras.balancers import AGGREGATORS, WEIGHTINGS

        sections["balancers (loss weightings)"] = WEIGHTINGS.names()
        sections["balancers (gradient aggregators)"] = AGGREGATORS.names()
    if args.what in ("all", "datasets"):
        from mtl_keras.data import DATASETS

        sections["datasets"] = sorted(DATASETS)
    for title, items in sections.items():
        _print(f"{title}:")
        for item in items:
            _print(f"  {item}")
    return 0


COMMANDS = {
    "init": _init,
    "train": _train,
    "affinity": _affinity,
    "pareto": _pareto,
    "tune": tune_command,
    "extend": _extend,
    "evaluate": _evaluate,
    "export": _export,
    "skew": _skew,
    "list": _list,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s", stream=sys.stderr
    )
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from mtl_keras.distribute import WorkerLost
    from mtl_keras.recipes import RecipeError

    try:
        return COMMANDS[args.command](args)
    except RecipeError as error:
        sys.stderr.write(f"mtl-keras: error: {error}\n")
        return 2
    except WorkerLost as error:
        sys.stderr.write(f"mtl-keras: error: {error}\n")
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
