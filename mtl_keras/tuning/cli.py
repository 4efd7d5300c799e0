"""`mtl-keras tune RECIPE`: the command-line face of :func:`mtl_keras.tuning.run_search`.

Registered by ``mtl_keras.cli`` with :func:`add_tune_parser` (the subcommand) and :func:`tune_command`
(its handler, returning the exit status). Recipe errors propagate as `RecipeError`, which ``mtl-keras``
prints as ``mtl-keras: error: <key path>: <message>`` with exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def add_tune_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``tune`` subcommand to ``subparsers`` (from ``parser.add_subparsers()``)."""
    tune = subparsers.add_parser(
        "tune",
        help="search a recipe's hyperparameters (its `search:` block) with Keras Tuner",
        description="Search the values in a recipe's `search:` block with Keras Tuner (random, hyperband or "
        "bayesian); rank trials by a validation objective (Δm %%, mean normalised metric, or one task's "
        "metric). Writes results.json, best.yaml (a recipe for `mtl-keras train`) and objective.png. "
        "Running it again on the same --output resumes the search.",
    )
    tune.add_argument("recipe", help="a recipe with a `search:` block, e.g. tuning/census_search.yaml")
    tune.add_argument("--max-trials", type=_positive_int, metavar="N", help="override search.max_trials")
    tune.add_argument(
        "--output",
        "-o",
        help="search directory (default: runs/<recipe name>, with `_search` appended unless it ends so)",
    )
    tune.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe value (YAML), e.g. --set training.epochs=3 or --set search.tuner=hyperband",
    )
    tune.add_argument(
        "--overwrite", action="store_true", help="start the search afresh instead of resuming it"
    )
    return tune  # type: ignore[no-any-return]


def _write(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def format_trials(results: dict[str, Any], limit: int = 10) -> str:
    """The best ``limit`` trials as a plain-text table (best first)."""
    objective = results["objective"]
    scored = [t for t in results["trials"] if t["objective"] is not None]
    scored.sort(key=lambda t: t["objective"], reverse=objective["direction"] == "max")
    paths = list(results["space"])
    rows = [["trial", objective["name"], *paths]]
    for trial in scored[:limit]:
        values = [str(trial["hyperparameters"].get(p, "")) for p in paths]
        rows.append([trial["trial_id"], f"{trial['objective']:.4f}", *values])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows)


def tune_command(args: argparse.Namespace) -> int:
    """Run ``mtl-keras tune``; returns the exit status."""
    from mtl_keras.tuning.loading import load_search_recipe
    from mtl_keras.tuning.results import BEST_FILE, PLOT_FILE, RESULTS_FILE
    from mtl_keras.tuning.search import run_search

    recipe, search = load_search_recipe(args.recipe, getattr(args, "overrides", []) or [])
    name = recipe["name"] if recipe["name"].endswith("_search") else f"{recipe['name']}_search"
    output = Path(args.output or os.path.join("runs", name))
    quiet = getattr(args, "quiet", False)
    try:
        result = run_search(
            recipe,
            search,
            output,
            max_trials=args.max_trials,
            overwrite=getattr(args, "overwrite", False),
            verbose=0 if quiet else 1,
        )
    except KeyboardInterrupt:
        sys.stderr.write(
            f"\ninterrupted: finished trials are kept in {output}; resume with the same command "
            f"(mtl-keras tune {args.recipe} --output {output})\n"
        )
        return 130
    results = result.results
    _write(
        f"{result.new_trials} new trial(s), {len(results['trials'])} in all; "
        f"objective {results['objective']['name']} ({results['objective']['direction']}, validation split)"
    )
    _write(format_trials(results))
    files = [output / RESULTS_FILE]
    if (output / BEST_FILE).exists():
        files.append(output / BEST_FILE)
    if (output / PLOT_FILE).exists():
        files.append(output / PLOT_FILE)
    _write("\nwrote " + ", ".join(str(f) for f in files))
    if result.best_trial is not None:
        _write(f"train the best recipe: mtl-keras train {output / BEST_FILE}")
    return 0


__all__ = ["add_tune_parser", "format_trials", "tune_command"]
