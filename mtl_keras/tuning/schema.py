"""The ``search:`` block of a recipe: tuner, budget, objective and the space, checked like the rest.

A search block names recipe values by their dotted path and gives each a range or a list of choices::

    search:
      tuner: random                  # random | hyperband | bayesian
      max_trials: 10
      objective: {kind: delta_m}     # delta_m | mean_normalized | task_metric (+ task, metric)
      space:
        architecture.num_experts: {choice: [2, 4, 8]}
        architecture.sharing_depth: {int: [0, 2]}
        training.optimizer.learning_rate: {log_float: [1.0e-4, 1.0e-2]}
        balancer: {choice: [static, uncertainty, pcgrad, uncertainty+pcgrad]}

:func:`validate_search` checks the block and returns it with defaults filled in. Every candidate value
(each choice, both ends of each range) is put into the recipe and the whole recipe validated, so a value
the recipe would refuse fails here, with the key path of the search entry and the recipe's own message:
``search.space.architecture.num_experts.int[0]: architecture.num_experts: expected a positive integer, got 0``.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from mtl_keras._registry import suggest
from mtl_keras.recipes.schema import (
    REQUIRED,
    Any_,
    Field,
    Float,
    Int,
    Map,
    Optional,
    RecipeError,
    Str,
    validate,
)

TUNERS = ("random", "hyperband", "bayesian")
OBJECTIVE_KINDS = ("delta_m", "mean_normalized", "task_metric")
#: Top-level recipe sections whose values may be searched. Data, seed and baselines stay fixed: the
#: objective compares trials on one data set, and Δm against one set of baselines.
SEARCHABLE = ("architecture", "balancer", "tasks", "training")
#: Spec keys of a space entry → the kind of Keras Tuner hyperparameter and its sampling.
RANGES = {
    "int": ("int", False),
    "log_int": ("int", True),
    "float": ("float", False),
    "log_float": ("float", True),
}
SPEC_KEYS = ("choice", *RANGES)


@dataclasses.dataclass
class AtLeast(Int):
    """An integer >= ``minimum`` (the recipe schema's `Int` only describes 0 and 1 in words)."""

    @property
    def description(self) -> str:  # type: ignore[override]
        return f"an integer >= {self.minimum}"


OBJECTIVE = Map(
    {
        "kind": Field(Str(list(OBJECTIVE_KINDS)), "delta_m", "what a trial is ranked by (validation split)"),
        "task": Field(Optional(Str()), None, "task_metric: the task"),
        "metric": Field(Optional(Str()), None, "task_metric: its metric (default: the task's first)"),
    }
)

HYPERBAND = Map(
    {
        "max_epochs": Field(
            Optional(Int(1)), None, "most epochs a model is trained; default training.epochs"
        ),
        "factor": Field(AtLeast(2), 3, "reduction factor of the successive halving"),
        "iterations": Field(Int(1), 1, "how many times the whole Hyperband algorithm runs"),
    }
)

BAYESIAN = Map(
    {
        "num_initial_points": Field(Optional(Int(1)), None, "random trials first; default 3 per dimension"),
        "alpha": Field(Float(0, exclusive_minimum=True), 1e-4, "observation noise of the Gaussian process"),
        "beta": Field(Float(0), 2.6, "exploration weight of the upper confidence bound"),
    }
)

SEARCH: dict[str, Field] = {
    "tuner": Field(Str(list(TUNERS)), "random"),
    "max_trials": Field(Int(1), 10, "trials to run (a cap for hyperband)"),
    "executions_per_trial": Field(Int(1), 1, "models trained per trial; their objectives are averaged"),
    "seed": Field(Optional(Int()), None, "seed of the tuner; default: the recipe's seed"),
    "objective": Field(OBJECTIVE, dict),
    "space": Field(Any_(), REQUIRED, "{dotted.recipe.path: {choice: [...]} | {int: [lo, hi]} | ...}"),
    "hyperband": Field(HYPERBAND, dict, "options of tuner: hyperband"),
    "bayesian": Field(BAYESIAN, dict, "options of tuner: bayesian"),
}


# --- setting values by dotted path ------------------------------------------------------------------------


def set_path(recipe: dict[str, Any], path: str, value: Any) -> None:
    """Set ``recipe[a][b][c] = value`` for ``path`` ``"a.b.c"``, creating missing mappings."""
    parts = path.split(".")
    node = recipe
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            where = ".".join(parts[: i + 1])
            raise RecipeError(
                where, f"is {child!r}, not a mapping, so {path} cannot be set; write {where} as a mapping"
            )
        node = child
    node[parts[-1]] = copy.deepcopy(value)


def substitute(recipe: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of ``recipe`` (without ``search``) with ``{dotted path: value}`` set."""
    result = {k: copy.deepcopy(v) for k, v in recipe.items() if k != "search"}
    for path, value in values.items():
        set_path(result, path, value)
    return result


# --- one space entry --------------------------------------------------------------------------------------


def _label(value: Any) -> Any:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _choice(values: Any, path: str) -> dict[str, Any]:
    """``[v, ...]`` or ``{label: v, ...}`` → ``{"type": "choice", "labels": [...], "values": [...]}``.

    Keras Tuner's `Choice` takes values of one scalar type; other lists (``[null, 2]``, ``[[16], [32]]``,
    mappings) are searched through string labels, their JSON text, and mapped back to the values.
    """
    if isinstance(values, Mapping):
        if not values:
            raise RecipeError(path, "expected a non-empty list of values or {label: value} mapping, got {}")
        labels, values = [str(k) for k in values], list(values.values())
    elif isinstance(values, list) and values:
        kinds = {type(v) for v in values}
        scalar = len(kinds) == 1 and kinds <= {str, int, float, bool}
        labels = list(values) if scalar else [_label(v) for v in values]
    else:
        raise RecipeError(
            path, f"expected a non-empty list of values or {{label: value}} mapping, got {values!r}"
        )
    duplicates = sorted({str(x) for x in labels if labels.count(x) > 1})
    if duplicates:
        raise RecipeError(path, f"expected distinct choices, got {duplicates[0]} more than once")
    return {"type": "choice", "labels": labels, "values": values}


def _range(name: str, bounds: Any, step: Any, path: str) -> dict[str, Any]:
    kind, log = RANGES[name]
    number = Int() if kind == "int" else Float()
    if not isinstance(bounds, list) or len(bounds) != 2:
        raise RecipeError(f"{path}.{name}", f"expected [low, high] ({number.description}s), got {bounds!r}")
    low, high = (number.check(b, f"{path}.{name}[{i}]") for i, b in enumerate(bounds))
    if not low < high:
        raise RecipeError(
            f"{path}.{name}", f"expected low < high, got {bounds!r} (to fix a value, set it in the recipe)"
        )
    if log and low <= 0:
        raise RecipeError(
            f"{path}.{name}[0]", f"expected a positive low end for a log scale, got {bounds[0]!r}"
        )
    if step is not None:
        if log:
            raise RecipeError(
                f"{path}.step", f"a {name} range takes no step (its values are spread on a log scale)"
            )
        step = (Int(1) if kind == "int" else Float(0, exclusive_minimum=True)).check(step, f"{path}.step")
    return {"type": kind, "low": low, "high": high, "step": step, "log": log}


def _entry(spec: Any, path: str) -> dict[str, Any]:
    form = "{choice: [...]}, {int: [low, high]}, {log_int: ...}, {float: ...} or {log_float: ...}"
    if not isinstance(spec, Mapping):
        raise RecipeError(path, f"expected a mapping {form}, got {spec!r}")
    kinds = [k for k in spec if k in SPEC_KEYS]
    unknown = [str(k) for k in spec if k not in (*SPEC_KEYS, "step")]
    if unknown:
        allowed = [*SPEC_KEYS, "step"]
        raise RecipeError(
            f"{path}.{unknown[0]}", f"unknown key; expected one of {allowed}." + suggest(unknown[0], allowed)
        )
    if len(kinds) != 1:
        raise RecipeError(path, f"expected exactly one of {list(SPEC_KEYS)}, got {sorted(map(str, spec))}")
    name = kinds[0]
    if name == "choice":
        if "step" in spec:
            raise RecipeError(f"{path}.step", "a choice takes no step")
        return _choice(spec["choice"], f"{path}.choice")
    return _range(name, spec[name], spec.get("step"), path)


def _candidates(entry: dict[str, Any], spec: Mapping[str, Any], path: str) -> list[tuple[str, Any]]:
    """(key path of the value in the search block, value) for every value worth validating."""
    if entry["type"] == "choice":
        if isinstance(spec["choice"], Mapping):
            return [
                (f"{path}.choice.{label}", v)
                for label, v in zip(entry["labels"], entry["values"], strict=True)
            ]
        return [(f"{path}.choice[{i}]", v) for i, v in enumerate(entry["values"])]
    name = next(k for k in spec if k in RANGES)
    return [(f"{path}.{name}[0]", entry["low"]), (f"{path}.{name}[1]", entry["high"])]


def _check_path(path: Any, prefix: str) -> str:
    if not isinstance(path, str) or not all(p.strip() for p in path.split(".")):
        raise RecipeError(
            f"{prefix}.{path}", "expected a dotted recipe path such as architecture.num_experts"
        )
    top = path.split(".")[0]
    if top not in SEARCHABLE:
        raise RecipeError(
            f"{prefix}.{path}",
            f"cannot search {top!r}; searchable sections: {list(SEARCHABLE)} (the data, seed and baselines "
            "stay fixed so that trials are compared on one footing)." + suggest(top, list(SEARCHABLE)),
        )
    return path


def _check_space(space: Any, recipe: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    if not isinstance(space, Mapping) or not space:
        raise RecipeError(
            "search.space",
            f"expected a non-empty mapping {{dotted.recipe.path: range or choice}}, got {space!r}",
        )
    paths = list(space)
    result: dict[str, dict[str, Any]] = {}
    for path in paths:
        _check_path(path, "search.space")
        nested = [p for p in paths if p != path and str(p).startswith(f"{path}.")]
        if nested:
            raise RecipeError(f"search.space.{nested[0]}", f"lies inside {path}, which is searched too")
        where = f"search.space.{path}"
        entry = _entry(space[path], where)
        for value_path, value in _candidates(entry, space[path], where):
            try:
                validate(substitute(recipe, {path: value}))
            except RecipeError as error:
                raise RecipeError(value_path, f"with {path} = {value!r}: {error}") from None
        result[path] = entry
    return result


def _check_objective(objective: dict[str, Any], recipe: Mapping[str, Any]) -> None:
    kind = objective["kind"]
    if kind == "task_metric":
        if objective["task"] is None:
            raise RecipeError(
                "search.objective.task", "missing required key for kind task_metric (a task name)"
            )
        return
    for key in ("task", "metric"):
        if objective[key] is not None:
            raise RecipeError(
                f"search.objective.{key}", f"only used with kind task_metric; kind {kind} averages every task"
            )
    baselines = recipe.get("baselines") or {}
    if kind == "delta_m" and isinstance(baselines, Mapping) and baselines.get("enabled") is False:
        raise RecipeError(
            "search.objective.kind", "delta_m needs the single-task baselines, but baselines.enabled is false"
        )


def validate_search(block: Any, recipe: Mapping[str, Any]) -> dict[str, Any]:
    """Check a recipe's ``search:`` block; return it with defaults filled in.

    Args:
        block: the ``search`` mapping as written.
        recipe: the rest of the recipe (raw or validated; a ``search`` key in it is ignored). Every
            candidate value is substituted into it and the result validated with
            :func:`mtl_keras.recipes.validate`.

    Returns:
        ``{"tuner", "max_trials", "executions_per_trial", "seed", "objective": {kind, task, metric},
        "space": {path: entry}, "hyperband": {...}, "bayesian": {...}}``, where an entry is
        ``{"type": "choice", "labels": [...], "values": [...]}`` or
        ``{"type": "int" | "float", "low", "high", "step", "log"}``.

    Raises:
        RecipeError: naming the key path (``search.space.architecture.num_experts.int[0]``).
    """
    if not isinstance(block, Mapping):
        raise RecipeError("search", f"expected a mapping with keys {sorted(SEARCH)}, got {block!r}")
    search = Map(SEARCH).check(block, "search")
    for tuner in ("hyperband", "bayesian"):
        if block.get(tuner) is not None and search["tuner"] != tuner:
            raise RecipeError(
                f"search.{tuner}", f"options of tuner {tuner}, but search.tuner is {search['tuner']}"
            )
    _check_objective(search["objective"], recipe)
    search["space"] = _check_space(search["space"], recipe)
    return search


__all__ = ["OBJECTIVE_KINDS", "SEARCHABLE", "TUNERS", "set_path", "substitute", "validate_search"]
