"""The ``search.space`` of a recipe: dotted recipe paths, each with a range or a list of choices.

An entry is written ``{choice: [...]}``, ``{choice: {label: value}}``, ``{int: [low, high]}`` (+ ``step``),
``{log_int: ...}``, ``{float: ...}`` (+ ``step``) or ``{log_float: ...}``, and read as a `Choice`
(``labels``, ``values``) or a `Range` (``type`` int or float, ``low``, ``high``, ``step``, ``log``).
Every candidate value (each choice, both ends of each range) is put into the recipe and the whole recipe
validated (:func:`mtl_keras.recipes.validate`), so a value the recipe would refuse fails here, with the key
path of the search entry and the recipe's own message.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from mtl_keras._registry import suggest
from mtl_keras.recipes import RecipeError, validate

#: Top-level recipe sections whose values may be searched. Data, seed and baselines stay fixed: the
#: objective compares trials on one data set, and Δm against one set of baselines.
SEARCHABLE = ("architecture", "balancer", "tasks", "training")
#: Spec keys of a range entry → the kind of Keras Tuner hyperparameter and its sampling.
RANGES = {
    "int": ("int", False),
    "log_int": ("int", True),
    "float": ("float", False),
    "log_float": ("float", True),
}
SPEC_KEYS = ("choice", *RANGES)


class Choice(BaseModel):
    """``hp.Choice`` over ``labels``; ``values[i]`` is the recipe value of ``labels[i]``."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    type: Literal["choice"] = "choice"
    labels: list[Any]
    values: list[Any]

    def value_of(self, label: Any) -> Any:
        return self.values[self.labels.index(label)]


class Range(BaseModel):
    """``hp.Int`` or ``hp.Float`` from ``low`` to ``high``, with a ``step`` or on a ``log`` scale."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    type: Literal["int", "float"]
    low: int | float
    high: int | float
    step: int | float | None = None
    log: bool = False

    def contains(self, value: Any) -> bool:
        """Whether ``value`` is one of the values the range can take."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.type == "int" and not isinstance(value, int):
            return False
        if not self.low <= value <= self.high:
            return False
        return self.step is None or (self.type == "int" and (value - self.low) % self.step == 0)


Entry = Choice | Range


def as_entry(entry: Entry | Mapping[str, Any]) -> Entry:
    """An entry, from its model or its dumped mapping (``{"type": "choice", ...}``)."""
    if isinstance(entry, (Choice, Range)):
        return entry
    return Choice(**entry) if entry.get("type") == "choice" else Range(**entry)


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


def current(recipe: Mapping[str, Any], path: str) -> Any:
    """The recipe's own value at ``path`` (None when it is not set)."""
    node: Any = recipe
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


# --- one space entry --------------------------------------------------------------------------------------


def _label(value: Any) -> Any:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _choice(values: Any, path: str) -> Choice:
    """Keras Tuner's `Choice` takes values of one scalar type; other lists (``[null, 2]``, ``[[16], [32]]``,
    mappings) are searched through string labels, their JSON text, and mapped back to the values."""
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
    return Choice(labels=labels, values=values)


def _number(value: Any, kind: str, path: str, *, positive: bool = False) -> Any:
    ok = not isinstance(value, bool) and isinstance(value, int if kind == "int" else (int, float))
    if not ok or (positive and value <= 0):
        what = "an integer" if kind == "int" else "a number"
        what = (
            {"an integer": "a positive integer", "a number": "a positive number"}[what] if positive else what
        )
        raise RecipeError(path, f"expected {what}, got {value!r}")
    return value if kind == "int" else float(value)


def _range(name: str, bounds: Any, step: Any, path: str) -> Range:
    kind, log = RANGES[name]
    if not isinstance(bounds, list) or len(bounds) != 2:
        noun = "integers" if kind == "int" else "numbers"
        raise RecipeError(f"{path}.{name}", f"expected [low, high] ({noun}), got {bounds!r}")
    low, high = (_number(b, kind, f"{path}.{name}[{i}]") for i, b in enumerate(bounds))
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
        step = _number(step, kind, f"{path}.step", positive=True)
    return Range(type="int" if kind == "int" else "float", low=low, high=high, step=step, log=log)


def _entry(spec: Any, path: str) -> Entry:
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


def _candidates(entry: Entry, spec: Mapping[str, Any], path: str) -> list[tuple[str, Any]]:
    """(key path of the value in the search block, value) for every value worth validating."""
    if isinstance(entry, Choice):
        if isinstance(spec["choice"], Mapping):
            return [
                (f"{path}.choice.{label}", v) for label, v in zip(entry.labels, entry.values, strict=True)
            ]
        return [(f"{path}.choice[{i}]", v) for i, v in enumerate(entry.values)]
    name = next(k for k in spec if k in RANGES)
    return [(f"{path}.{name}[0]", entry.low), (f"{path}.{name}[1]", entry.high)]


def _check_path(path: Any) -> str:
    if not isinstance(path, str) or not all(p.strip() for p in path.split(".")):
        raise RecipeError(str(path), "expected a dotted recipe path such as architecture.num_experts")
    top = path.split(".")[0]
    if top not in SEARCHABLE:
        raise RecipeError(
            path,
            f"cannot search {top!r}; searchable sections: {list(SEARCHABLE)} (the data, seed and baselines "
            "stay fixed so that trials are compared on one footing)." + suggest(top, list(SEARCHABLE)),
        )
    return path


def check_space(space: Any, recipe: Mapping[str, Any]) -> dict[str, Entry]:
    """The entries of a ``search.space`` as written (or already checked), each candidate validated in
    ``recipe``; errors name the key path below ``search.space``."""
    if not isinstance(space, Mapping) or not space:
        raise RecipeError(
            "", f"expected a non-empty mapping {{dotted.recipe.path: range or choice}}, got {space!r}"
        )
    paths = list(space)
    result: dict[str, Entry] = {}
    for path in paths:
        _check_path(path)
        nested = [p for p in paths if p != path and str(p).startswith(f"{path}.")]
        if nested:
            raise RecipeError(str(nested[0]), f"lies inside {path}, which is searched too")
        spec = space[path]
        if isinstance(spec, (Choice, Range)) or (isinstance(spec, Mapping) and "type" in spec):
            result[path] = as_entry(spec)  # checked before (a dumped search block)
            continue
        entry = _entry(spec, path)
        for value_path, value in _candidates(entry, spec, path):
            try:
                validate(substitute(recipe, {path: value}))
            except RecipeError as error:
                raise RecipeError(value_path, f"with {path} = {value!r}: {error}") from None
        result[path] = entry
    return result


__all__ = [
    "SEARCHABLE",
    "Choice",
    "Entry",
    "Range",
    "as_entry",
    "check_space",
    "current",
    "set_path",
    "substitute",
]
