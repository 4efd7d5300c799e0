"""Reading recipes: YAML files, ``--set key=value`` overrides, then validation into a `Recipe`."""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from typing import Any

import yaml

from mtl_keras.recipes.errors import RecipeError
from mtl_keras.recipes.recipe import Recipe, validate


def apply_override(recipe: dict[str, Any], assignment: str) -> None:
    """Apply ``a.b.c=value`` (value parsed as YAML) to ``recipe`` in place."""
    if "=" not in assignment:
        raise RecipeError("--set", f"expected key=value, got {assignment!r}")
    key, raw = assignment.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise RecipeError("--set", f"expected key=value with a non-empty key, got {assignment!r}")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as error:
        raise RecipeError(key, f"cannot parse value {raw!r}: {error}") from None
    node = recipe
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif isinstance(child, str) and part == "balancer":
            # `balancer: pcgrad` then --set balancer.level=rep
            child = node[part] = {"aggregator": child}
        if not isinstance(child, dict):
            raise RecipeError(".".join(parts[: i + 1]), f"is {child!r}, not a mapping; cannot set {key}")
        node = child
    node[parts[-1]] = value


def read_raw_recipe(path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Read a recipe file and apply ``--set`` overrides, without validating it."""
    if not os.path.isfile(path):
        raise RecipeError("", f"recipe file {os.fspath(path)!r} does not exist")
    with open(path, encoding="utf-8") as handle:
        try:
            raw = yaml.safe_load(handle)
        except yaml.YAMLError as error:
            raise RecipeError(
                "", f"{os.fspath(path)} is not valid YAML: {error}".replace("\n", " ")
            ) from None
    if not isinstance(raw, dict):
        raise RecipeError("", f"{os.fspath(path)} must hold a mapping, got {type(raw).__name__}")
    raw = copy.deepcopy(raw)
    for assignment in overrides:
        apply_override(raw, assignment)
    return raw


def load_recipe(path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> Recipe:
    """Load, override and validate a recipe file (its ``imports`` are looked for next to it first)."""
    return validate(read_raw_recipe(path, overrides), directory=os.path.dirname(os.path.abspath(path)))
