"""`mtl-keras init`: a runnable, commented recipe for a user's own data file.

:func:`init_recipe` reads the file once as training would (every value checked, the feature kinds inferred),
then writes a recipe that names the file, the tasks and every feature column with its inferred kind, so the
user can edit the kinds and options and then ``mtl-keras train`` it like a zoo recipe.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from mtl_keras.recipes.errors import RecipeError

#: the task kinds ``--task NAME:KIND[:COLUMN]`` accepts
TASK_KINDS = ("binary", "multiclass", "regression")

#: file name endings → the recipe's data source name
SOURCES = {".csv": "csv", ".csv.gz": "csv", ".tsv": "csv", ".parquet": "parquet", ".pq": "parquet"}


def parse_task(text: str) -> tuple[str, dict[str, Any]]:
    """``NAME:KIND[:COLUMN]`` → ``(name, {kind, column?})``."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not all(parts):
        raise RecipeError("--task", f"expected NAME:KIND[:COLUMN], got {text!r}")
    name, kind = parts[0], parts[1]
    if kind not in TASK_KINDS:
        raise RecipeError("--task", f"task {name!r}: expected a kind in {list(TASK_KINDS)}, got {kind!r}")
    spec: dict[str, Any] = {"kind": kind}
    if len(parts) == 3 and parts[2] != name:
        spec["column"] = parts[2]
    if kind == "regression":
        spec["standardize"] = True
    return name, spec


def source_name(path: str) -> str:
    """The data source of a file, from its name."""
    lowered = path.lower()
    for ending in sorted(SOURCES, key=len, reverse=True):
        if lowered.endswith(ending) or (ending == ".csv" and ".csv" in lowered and "*" in lowered):
            return SOURCES[ending]
    raise RecipeError("DATA_FILE", f"cannot tell the format of {path!r}; expected one of {sorted(SOURCES)}")


def _relative(path: str, directory: Path) -> str:
    if "://" in path or os.path.isabs(path):
        return path
    return os.path.relpath(os.path.abspath(path), directory)


def _name(path: str) -> str:
    stem = os.path.basename(path).split(".")[0] or "data"
    return re.sub(r"[^A-Za-z0-9_]+", "_", stem).strip("_") or "data"


def _architecture(name: str, num_tasks: int) -> dict[str, Any]:
    defaults: dict[str, dict[str, Any]] = {
        "mmoe": {
            "num_experts": 4 if num_tasks <= 2 else 2 * num_tasks,
            "expert_units": [64],
            "tower_units": [32],
        },
        "hard_sharing": {"trunk": [64, 32], "tower_units": [16]},
        "ple": {"num_shared_experts": 2, "num_task_experts": 1, "expert_units": [64], "tower_units": [32]},
    }
    return {"name": name, **defaults.get(name, {})}


HEADER = """\
# Written by `mtl-keras init` for {data}.
# Train it with:  mtl-keras train {recipe}
# (multi-task model + single-task baselines, Δm %, report in runs/{name}/, export in saved_models/{name}/).
#
# data.tasks: each task's label column and kind; regression labels are standardised with training statistics
#   (predictions and metrics stay in original units); binary labels given as two strings need `positive: VALUE`.
# data.features: every feature column with the kind inferred from the file (numeric, categorical,
#   integer_categorical, id, multi_hot, skip). Edit a kind, add `encoding`/`embedding_dim`, or use `skip`.
# data.split: rows held out for validation (and test, when there is no test file), by a seeded hash of the row.
"""


def init_recipe(
    data_file: str,
    tasks: Sequence[str],
    *,
    test: str | None = None,
    architecture: str = "mmoe",
    output: str | None = None,
) -> tuple[Path, Any]:
    """Check ``data_file``, infer its feature kinds and write a recipe; returns ``(recipe path, data set)``.

    ``tasks`` are ``NAME:KIND[:COLUMN]`` strings. The recipe goes to ``output`` (default
    ``<file stem>.yaml`` in the working directory); paths in it are relative to the recipe's folder.
    """
    from mtl_keras.builders.catalog import ARCHITECTURES
    from mtl_keras.data.sources import from_csv, from_parquet

    if not tasks:
        raise RecipeError("--task", "give at least one task as NAME:KIND[:COLUMN]")
    if architecture not in ARCHITECTURES:
        from mtl_keras._registry import suggest

        names = sorted(ARCHITECTURES)
        raise RecipeError(
            "--architecture", f"expected one of {names}, got {architecture!r}." + suggest(architecture, names)
        )
    parsed = dict(parse_task(t) for t in tasks)
    if len(parsed) != len(tasks):
        raise RecipeError("--task", "task names must be unique")
    source = source_name(data_file)
    load = {"csv": from_csv, "parquet": from_parquet}[source]
    try:
        dataset = load(data_file, parsed, test=test, split=None)
    except (ValueError, FileNotFoundError) as error:
        raise RecipeError("data", str(error).replace("\n", " ")) from None
    name = _name(data_file)
    target = Path(output) if output is not None else Path(f"{name}.yaml")
    directory = target.resolve().parent
    data: dict[str, Any] = {"name": source, "path": _relative(data_file, directory)}
    if test is not None:
        data["test"] = _relative(test, directory)
    data["tasks"] = parsed
    data["split"] = {"validation": 0.1, "seed": 0} if test is not None else {"validation": 0.1, "test": 0.2}
    data["features"] = {column: spec.kind for column, spec in dataset.columns.items()}
    recipe = {
        "name": name,
        "description": f"{architecture} on {os.path.basename(data_file)}: tasks {', '.join(parsed)}",
        "seed": 0,
        "data": data,
        "architecture": _architecture(architecture, len(parsed)),
        "balancer": "static",
        "training": {
            "epochs": 10,
            "batch_size": 256,
            "optimizer": {"name": "adam", "learning_rate": 0.001},
            "early_stopping": {"mode": "composite", "patience": 3},
        },
    }
    from mtl_keras.recipes.recipe import validate

    validate(recipe, directory=directory)  # what we write must load
    text = HEADER.format(data=data_file, recipe=target, name=name)
    text += yaml.safe_dump(recipe, sort_keys=False, default_flow_style=None, width=110)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(target.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, target)
    return target, dataset


__all__ = ["TASK_KINDS", "init_recipe", "parse_task", "source_name"]
