"""The recipe schema, as data: every key, its type, its default; errors name the key path.

A recipe is a YAML mapping (see ``zoo/``). :func:`validate` checks it completely before anything is loaded
or written, fills in defaults and returns a plain dict. Sections whose keys depend on a choice (the data
loader's options, the architecture's options, a balancer's options) are checked against the signature of
the function or class that receives them, and well-known option names against :data:`OPTION_TYPES`.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from mtl_keras._registry import suggest


class RecipeError(ValueError):
    """A recipe problem; ``str(error)`` is one line starting with the key path."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)


def _join(path: str, key: str | int) -> str:
    return f"{path}[{key}]" if isinstance(key, int) else (f"{path}.{key}" if path else str(key))


# --- value types -----------------------------------------------------------------------------------------


class Node:
    description = "a value"

    def check(self, value: Any, path: str) -> Any:
        raise NotImplementedError

    def fail(self, value: Any, path: str) -> RecipeError:
        return RecipeError(path, f"expected {self.description}, got {value!r}")


class Any_(Node):
    description = "any value"

    def check(self, value: Any, path: str) -> Any:
        return value


class Bool(Node):
    description = "true or false"

    def check(self, value: Any, path: str) -> Any:
        if not isinstance(value, bool):
            raise self.fail(value, path)
        return value


@dataclasses.dataclass
class Int(Node):
    minimum: int | None = None

    @property
    def description(self) -> str:  # type: ignore[override]
        if self.minimum == 1:
            return "a positive integer"
        if self.minimum == 0:
            return "a non-negative integer"
        return "an integer"

    def check(self, value: Any, path: str) -> Any:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(value, path)
        if self.minimum is not None and value < self.minimum:
            raise self.fail(value, path)
        return value


@dataclasses.dataclass
class Float(Node):
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    exclusive_maximum: bool = False

    @property
    def description(self) -> str:  # type: ignore[override]
        if self.minimum == 0 and self.exclusive_minimum and self.maximum is None:
            return "a positive number"
        if self.minimum == 0 and self.maximum is None:
            return "a non-negative number"
        low = "(" if self.exclusive_minimum else "["
        high = ")" if self.exclusive_maximum else "]"
        if self.minimum is not None or self.maximum is not None:
            return f"a number in {low}{self.minimum if self.minimum is not None else '-inf'}, " + (
                f"{self.maximum if self.maximum is not None else 'inf'}{high}"
            )
        return "a number"

    def check(self, value: Any, path: str) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(value, path)
        v = float(value)
        if self.minimum is not None and (v < self.minimum or (self.exclusive_minimum and v == self.minimum)):
            raise self.fail(value, path)
        if self.maximum is not None and (v > self.maximum or (self.exclusive_maximum and v == self.maximum)):
            raise self.fail(value, path)
        return v


@dataclasses.dataclass
class Str(Node):
    choices: Callable[[], list[str]] | list[str] | None = None

    def _choices(self) -> list[str] | None:
        if self.choices is None:
            return None
        return list(self.choices() if callable(self.choices) else self.choices)

    @property
    def description(self) -> str:  # type: ignore[override]
        choices = self._choices()
        return f"one of {choices}" if choices else "a string"

    def check(self, value: Any, path: str) -> Any:
        choices = self._choices()
        if not isinstance(value, str):
            raise self.fail(value, path)
        if choices is not None and value not in choices:
            raise RecipeError(path, f"expected one of {choices}, got {value!r}." + suggest(value, choices))
        return value


@dataclasses.dataclass
class Optional(Node):
    inner: Node

    @property
    def description(self) -> str:  # type: ignore[override]
        return f"{self.inner.description} or null"

    def check(self, value: Any, path: str) -> Any:
        return None if value is None else self.inner.check(value, path)


@dataclasses.dataclass
class ListOf(Node):
    item: Node
    non_empty: bool = False

    @property
    def description(self) -> str:  # type: ignore[override]
        return (
            f"a {'non-empty ' if self.non_empty else ''}list of {self.item.description.removeprefix('a ')}s"
        )

    def check(self, value: Any, path: str) -> Any:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value]  # a single size is a one-element list
        if not isinstance(value, list) or (self.non_empty and not value):
            raise self.fail(value, path)
        return [self.item.check(v, _join(path, i)) for i, v in enumerate(value)]


REQUIRED = object()


@dataclasses.dataclass
class Field:
    node: Node
    default: Any = None
    doc: str = ""


@dataclasses.dataclass
class Map(Node):
    fields: dict[str, Field]
    description = "a mapping"

    def check(self, value: Any, path: str) -> Any:
        if value is None:
            value = {}
        if not isinstance(value, Mapping):
            raise RecipeError(path, f"expected a mapping with keys {sorted(self.fields)}, got {value!r}")
        unknown = [k for k in value if k not in self.fields]
        if unknown:
            key = str(unknown[0])
            raise RecipeError(
                _join(path, key),
                f"unknown key; expected one of {sorted(self.fields)}." + suggest(key, sorted(self.fields)),
            )
        result = {}
        for key, spec in self.fields.items():
            child = _join(path, key)
            if key in value:
                result[key] = spec.node.check(value[key], child)
            elif spec.default is REQUIRED:
                raise RecipeError(child, f"missing required key ({spec.node.description})")
            else:
                default = spec.default() if callable(spec.default) else spec.default
                result[key] = spec.node.check(default, child) if isinstance(spec.node, Map) else default
        return result


# --- options checked against the function that receives them ---------------------------------------------

POSITIVE_INT = Int(1)
SIZES = ListOf(Int(1))


class BlockNode(Node):
    """A trunk/column block: a Dense size, or ``{LayerClass: {arguments}}`` (e.g. ``{Conv2D: {filters: 8}}``)."""

    description = "a positive integer or a {LayerClass: {arguments}} mapping"

    def check(self, value: Any, path: str) -> Any:
        if isinstance(value, Mapping):
            if len(value) != 1 or not isinstance(next(iter(value.values())) or {}, Mapping):
                raise self.fail(value, path)
            return {str(k): dict(v or {}) for k, v in value.items()}
        return Int(1).check(value, path)


BLOCKS = ListOf(BlockNode())

#: Well-known option names and their types, wherever they appear (architecture, data, balancer options).
OPTION_TYPES: dict[str, Node] = {
    "num_experts": POSITIVE_INT,
    "num_levels": POSITIVE_INT,
    "num_shared_experts": POSITIVE_INT,
    "num_task_experts": POSITIVE_INT,
    "num_subspaces": POSITIVE_INT,
    "sharing_depth": Optional(Int(0)),
    "expert_units": ListOf(Int(1), non_empty=True),
    "tower_units": SIZES,
    "trunk": BLOCKS,
    "blocks": BLOCKS,
    "units": SIZES,
    "shared_units": SIZES,
    "private_units": SIZES,
    "stitch_after": Optional(ListOf(Int(0))),
    "dropout": Float(0, 1, exclusive_maximum=True),
    "strength": Float(0),
    "lr_multiplier": Float(0, exclusive_minimum=True),
    "activation": Str(),
    "n": POSITIVE_INT,
    "n_validation": POSITIVE_INT,
    "n_test": POSITIVE_INT,
    "n_train": POSITIVE_INT,
    "max_rows": Optional(POSITIVE_INT),
    "seed": Int(),
    "p": Float(0, 1),
    "validation_fraction": Float(0, 1, exclusive_minimum=True, exclusive_maximum=True),
    "temperature": Float(0, exclusive_minimum=True),
    "alpha": Float(0),
    "c": Float(0),
    "beta": Float(0, 1),
    "learning_rate": Float(0, exclusive_minimum=True),
    "metric": Str(),
}


def check_options(
    options: Mapping[str, Any], target: Callable[..., Any], path: str, what: str
) -> dict[str, Any]:
    """Check ``options`` against the keyword parameters of ``target`` and :data:`OPTION_TYPES`."""
    signature = inspect.signature(target)
    accepted = [
        name
        for name, p in signature.parameters.items()
        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
        and name not in ("self", "tasks", "inputs", "name", "balancer")
    ]
    takes_kwargs = any(p.kind == p.VAR_KEYWORD for p in signature.parameters.values())
    result = {}
    for key, value in options.items():
        child = _join(path, key)
        if key not in accepted and not takes_kwargs:
            raise RecipeError(
                child,
                f"unknown option for {what}; expected one of {sorted(accepted)}." + suggest(key, accepted),
            )
        node = OPTION_TYPES.get(key)
        result[key] = node.check(value, child) if node is not None else value
    return result


# --- the recipe -------------------------------------------------------------------------------------------


def _dataset_names() -> list[str]:
    from mtl_keras.data import DATASETS

    return sorted(k for k in DATASETS if k != "tfds")


def _architecture_names() -> list[str]:
    from mtl_keras.builders.catalog import ARCHITECTURES

    return sorted(ARCHITECTURES)


TASK = Map(
    {
        "weight": Field(Float(0), None, "static loss weight"),
        "metrics": Field(Optional(ListOf(Str(), non_empty=True)), None, "metric aliases"),
        "loss": Field(Optional(Str()), None, "a Keras loss name"),
    }
)

OPTIMIZER = Map(
    {
        "name": Field(Str(["adam", "adamw", "sgd", "rmsprop"]), "adam"),
        "learning_rate": Field(Float(0, exclusive_minimum=True), 1e-3),
        "weight_decay": Field(Optional(Float(0)), None),
        "clipnorm": Field(Optional(Float(0, exclusive_minimum=True)), None, "gradient clipping by norm"),
        "momentum": Field(Optional(Float(0, 1, exclusive_maximum=True)), None, "SGD momentum"),
    }
)

SCHEDULE = Map(
    {
        "name": Field(Str(["constant", "cosine"]), "constant"),
        "warmup_ratio": Field(
            Float(0, 1, exclusive_maximum=True), 0.0, "fraction of steps of linear warm-up"
        ),
    }
)

EARLY_STOPPING = Map(
    {
        "mode": Field(Str(["none", "composite", "per_task"]), "none"),
        "patience": Field(Int(1), 5),
    }
)

TRAINING = Map(
    {
        "epochs": Field(Int(1), 10),
        "batch_size": Field(Int(1), 256),
        "optimizer": Field(OPTIMIZER, dict),
        "schedule": Field(SCHEDULE, dict),
        "early_stopping": Field(EARLY_STOPPING, dict),
        "steps_per_epoch": Field(Optional(Int(1)), None, "cap on the steps of an epoch (quick runs)"),
    }
)

BASELINES = Map(
    {"enabled": Field(Bool(), True), "epochs": Field(Optional(Int(1)), None, "default: training.epochs")}
)


def _strategy_names() -> list[str]:
    from mtl_keras.distribute.strategy import STRATEGIES

    return sorted(STRATEGIES)


DISTRIBUTE = Map(
    {
        "strategy": Field(
            Str(_strategy_names),
            "default",
            "default (one device), mirrored (local GPUs), multi_worker (TF_CONFIG)",
        ),
        "devices": Field(
            Optional(ListOf(Str(), non_empty=True)), None, "mirrored only: the devices, e.g. [/gpu:0, /gpu:1]"
        ),
        "checkpoint_every": Field(
            Optional(Int(1)), None, "steps between fault-tolerance checkpoints (null: at each epoch end)"
        ),
        "collective_timeout": Field(
            Optional(Float(0, exclusive_minimum=True)),
            None,
            "multi_worker only: seconds before a stuck collective fails (null: none)",
        ),
    }
)

EXPORT = Map(
    {
        "enabled": Field(Bool(), True),
        "base_dir": Field(Optional(Str()), None, "default: saved_models/<recipe name>"),
    }
)

TOP_LEVEL: dict[str, Field] = {
    "name": Field(Str(), REQUIRED),
    "description": Field(Str(), ""),
    "seed": Field(Int(), 0),
    "data": Field(Any_(), REQUIRED, "name: <data set> plus its options, or tfds: {...}"),
    "tasks": Field(Any_(), None, "{task: {weight, metrics, loss}}"),
    "architecture": Field(Any_(), REQUIRED, "name: <architecture> plus its options"),
    "balancer": Field(
        Any_(), None, "a name ('pcgrad', 'uncertainty+pcgrad') or {weighting, aggregator, level, ...}"
    ),
    "training": Field(TRAINING, dict),
    "baselines": Field(BASELINES, dict),
    "distribute": Field(DISTRIBUTE, dict),
    "mixed_precision": Field(Optional(Str(["mixed_float16", "mixed_bfloat16"])), None),
    "export": Field(EXPORT, dict),
    "search": Field(Any_(), None, "a Keras Tuner search (`mtl-keras tune`); see docs/tuning.md"),
}


def _named_section(value: Any, path: str, names: Callable[[], list[str]]) -> tuple[str, dict[str, Any]]:
    if not isinstance(value, Mapping) or "name" not in value:
        raise RecipeError(path, f"expected a mapping with a `name` (one of {names()}), got {value!r}")
    name = Str(names).check(value["name"], _join(path, "name"))
    return name, {k: v for k, v in value.items() if k != "name"}


def _check_data(value: Any) -> dict[str, Any]:
    from mtl_keras.data import DATASETS

    if isinstance(value, Mapping) and "tfds" in value:
        extra = [k for k in value if k != "tfds"]
        if extra:
            raise RecipeError(_join("data", extra[0]), "a `tfds:` data block takes no other keys")
        block = value["tfds"]
        if not isinstance(block, Mapping) or "name" not in block or "tasks" not in block:
            raise RecipeError("data.tfds", f"expected a mapping with `name` and `tasks`, got {block!r}")
        return {"tfds": check_options(block, DATASETS["tfds"], "data.tfds", "tfds")}
    name, options = _named_section(value, "data", _dataset_names)
    return {"name": name, **check_options(options, DATASETS[name], "data", f"data set {name!r}")}


def _check_architecture(value: Any) -> dict[str, Any]:
    from mtl_keras.builders.catalog import ARCHITECTURES

    name, options = _named_section(value, "architecture", _architecture_names)
    checked = check_options(options, ARCHITECTURES[name].builder, "architecture", f"architecture {name!r}")
    return {"name": name, **checked}


def _check_component(value: Any, path: str, registry: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = {"name": value}
    name, options = _named_section(value, path, registry.names)
    return {"name": name, **check_options(options, registry.lookup(name).__init__, path, f"{name!r}")}


def _check_balancer(value: Any) -> dict[str, Any]:
    from mtl_keras.balancers import AGGREGATORS, WEIGHTINGS

    if value is None:
        value = {}
    if isinstance(value, str):
        parts = [p.strip() for p in value.split("+")]
        value = {}
        for i, part in enumerate(parts):
            if part in WEIGHTINGS.names() and "weighting" not in value:
                value["weighting"] = part
            elif part in AGGREGATORS.names() and "aggregator" not in value:
                value["aggregator"] = part
            else:
                known = WEIGHTINGS.names() + AGGREGATORS.names()
                raise RecipeError(
                    "balancer" if len(parts) == 1 else f"balancer (part {i + 1})",
                    f"expected a weighting and/or an aggregator from {known}, got {part!r}."
                    + suggest(part, known),
                )
    if not isinstance(value, Mapping):
        raise RecipeError("balancer", f"expected a name or a mapping, got {value!r}")
    allowed = ["weighting", "aggregator", "level", "log_conflicts"]
    unknown = [k for k in value if k not in allowed]
    if unknown:
        raise RecipeError(
            f"balancer.{unknown[0]}",
            f"unknown key; expected one of {allowed}." + suggest(str(unknown[0]), allowed),
        )
    return {
        "weighting": _check_component(value.get("weighting"), "balancer.weighting", WEIGHTINGS),
        "aggregator": _check_component(value.get("aggregator"), "balancer.aggregator", AGGREGATORS),
        "level": Str(["param", "rep"]).check(value.get("level", "param"), "balancer.level"),
        "log_conflicts": Bool().check(value.get("log_conflicts", False), "balancer.log_conflicts"),
    }


def _check_tasks(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise RecipeError(
            "tasks", f"expected a mapping {{task name: {{weight, metrics, loss}}}}, got {value!r}"
        )
    return {str(k): TASK.check(v, f"tasks.{k}") for k, v in value.items()}


def _check_distribute(distribute: dict[str, Any]) -> None:
    only = {"devices": "mirrored", "collective_timeout": "multi_worker"}
    for key, strategy in only.items():
        if distribute[key] is not None and distribute["strategy"] != strategy:
            raise RecipeError(
                f"distribute.{key}",
                f"only the {strategy!r} strategy takes `{key}`, not {distribute['strategy']!r}",
            )


def validate(raw: Any) -> dict[str, Any]:
    """Check a whole recipe and return it with defaults filled in; raises :class:`RecipeError`."""
    recipe = Map(TOP_LEVEL).check(raw, "")
    recipe["data"] = _check_data(recipe["data"])
    recipe["architecture"] = _check_architecture(recipe["architecture"])
    recipe["balancer"] = _check_balancer(recipe["balancer"])
    recipe["tasks"] = _check_tasks(recipe["tasks"])
    optimizer = recipe["training"]["optimizer"]
    if optimizer["momentum"] is not None and optimizer["name"] not in ("sgd", "rmsprop"):
        raise RecipeError(
            "training.optimizer.momentum", f"only sgd and rmsprop take a momentum, not {optimizer['name']!r}"
        )
    _check_distribute(recipe["distribute"])
    if recipe["balancer"]["weighting"] is not None and any(
        t.get("weight") is not None for t in recipe["tasks"].values()
    ):
        raise RecipeError(
            "tasks", "per-task `weight`s are static weights and cannot be combined with balancer.weighting"
        )
    search = recipe.pop("search")  # only `mtl-keras tune` recipes carry one
    if search is not None:
        from mtl_keras.tuning.schema import validate_search

        recipe["search"] = validate_search(search, recipe)
    return recipe
