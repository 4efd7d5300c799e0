"""The sections that name a component and pass it options: ``data``, ``architecture``, ``balancer``.

Each is written ``{name: <registered name>, <option>: <value>, ...}`` and read as ``.name`` and
``.options``; the options are checked against the signature of what receives them
(:func:`mtl_keras.recipes.options.check_options`). Dumped (``model_dump``), a section is the flat mapping
it was written as, with its options converted.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

from pydantic import Field, model_serializer, model_validator

from mtl_keras._registry import suggest
from mtl_keras.balancers import AGGREGATORS, WEIGHTINGS, Level, split_name
from mtl_keras.recipes.errors import RecipeError
from mtl_keras.recipes.options import check_options
from mtl_keras.recipes.sections import Section


def _named(value: Any, names: list[str], path: str = "") -> tuple[str, dict[str, Any]]:
    if not isinstance(value, Mapping) or "name" not in value:
        raise RecipeError(path, f"expected a mapping with a `name` (one of {names}), got {value!r}")
    name = value["name"]
    if not isinstance(name, str) or name not in names:
        hint = suggest(name, names) if isinstance(name, str) else ""
        raise RecipeError(
            f"{path}.name" if path else "name", f"expected one of {names}, got {name!r}." + hint
        )
    return name, {str(k): v for k, v in value.items() if k != "name"}


class Named(Section):
    """A registered name and its options."""

    name: str
    options: dict[str, Any] = Field(default_factory=dict)

    @model_serializer
    def _flat(self) -> dict[str, Any]:
        return {"name": self.name, **self.options}


# --- data ------------------------------------------------------------------------------------------------


def _loaders() -> dict[str, Callable[..., Any]]:
    from mtl_keras.data import DATASETS

    return DATASETS


#: data sources that read files, and their options that are paths (relative to the recipe's folder)
FILE_SOURCES = ("csv", "parquet", "tfrecord")
FILE_KEYS = ("path", "test", "validation")


def _resolve(value: Any, directory: Any) -> Any:
    """A relative path (or each of a list) as seen from the recipe's folder; URLs and absolute paths kept."""
    import os

    if isinstance(value, list):
        return [_resolve(v, directory) for v in value]
    if isinstance(value, str) and "://" not in value and not os.path.isabs(value):
        return os.path.normpath(os.path.join(str(directory), value))
    return value


TFDS_HINT = "A TFDS data set is a `tfds:` block: `data: {tfds: {name: <TFDS name>, tasks: {...}}}`"


class DataSpec(Named):
    """``{name: <bundled data set>, <loader option>: ...}`` or ``{tfds: {name: ..., tasks: ...}}``.

    ``name`` is the key of :data:`mtl_keras.data.DATASETS` (``"tfds"`` for a ``tfds:`` block) and
    ``options`` the keyword arguments of that loader, checked against its signature. A new source is one
    more loader there (``{name: csv, path: ...}`` is then checked like the others), or one more block form
    parsed here and dumped back by ``_flat``.
    """

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, data: Any, info: Any) -> Any:
        loaders = _loaders()
        if isinstance(data, Mapping) and "tfds" in data and "name" not in data:
            extra = [k for k in data if k != "tfds"]
            if extra:
                raise RecipeError(str(extra[0]), "a `tfds:` data block takes no other keys")
            block = data["tfds"]
            if not isinstance(block, Mapping) or "name" not in block or "tasks" not in block:
                raise RecipeError("tfds", f"expected a mapping with `name` and `tasks`, got {block!r}")
            return {
                "name": "tfds",
                "options": check_options(block, loaders["tfds"], "tfds", "tfds", reserved=("self",)),
            }
        names = sorted(k for k in loaders if k != "tfds")
        if isinstance(data, Mapping) and data.get("name") == "tfds":
            raise RecipeError("name", f"expected one of {names}, got 'tfds'. {TFDS_HINT}")
        name, options = _named(data, names)
        directory = (info.context or {}).get("directory")
        if name in FILE_SOURCES and directory is not None:
            options = {k: (_resolve(v, directory) if k in FILE_KEYS else v) for k, v in options.items()}
        if name == "per_task" and isinstance(options.get("sources"), Mapping):
            # Each task's source is a data block of its own: checked, and its file paths resolved, the same way.
            sources = {}
            for task, block in options["sources"].items():
                path = f"sources.{task}"
                source, nested = _named(block, sorted(FILE_SOURCES), path)
                if directory is not None:
                    nested = {k: (_resolve(v, directory) if k in FILE_KEYS else v) for k, v in nested.items()}
                nested = check_options(
                    nested, loaders[source], path, f"data set {source!r}", reserved=("self", "name")
                )
                sources[str(task)] = {"name": source, **nested}
            options = {**options, "sources": sources}
        return {
            "name": name,
            "options": check_options(
                options, loaders[name], "", f"data set {name!r}", reserved=("self", "name")
            ),
        }

    @model_serializer
    def _flat(self) -> dict[str, Any]:
        return {"tfds": dict(self.options)} if self.name == "tfds" else {"name": self.name, **self.options}


# --- architecture ----------------------------------------------------------------------------------------


class ArchitectureSpec(Named):
    """``{name: <architecture>, <builder option>: ...}``; the options of its public builder."""

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, data: Any) -> Any:
        from mtl_keras.builders.catalog import ARCHITECTURES

        name, options = _named(data, sorted(ARCHITECTURES))
        builder = ARCHITECTURES[name].builder
        return {"name": name, "options": check_options(options, builder, "", f"architecture {name!r}")}


# --- balancer --------------------------------------------------------------------------------------------


def _registries() -> tuple[Any, Any]:
    return WEIGHTINGS, AGGREGATORS


#: the levels, as defined by mtl_keras.balancers.Level
_LEVELS = tuple(level.value for level in Level)


class ComponentSpec(Named):
    """A loss weighting or a gradient aggregator: a name, or ``{name: ..., <option>: ...}``."""


def _component(value: Any, registry: Any) -> dict[str, Any]:
    if isinstance(value, str):
        value = {"name": value}
    name, options = _named(value, registry.names())
    return {"name": name, "options": check_options(options, registry.lookup(name), "", f"{name!r}")}


class BalancerSpec(Section):
    """``weighting`` (loss level) and ``aggregator`` (gradient level), each optional; written as one name
    (``pcgrad``), ``weighting+aggregator`` (``uncertainty+pcgrad``) or a mapping."""

    weighting: ComponentSpec | None = None
    aggregator: ComponentSpec | None = None
    level: Literal[_LEVELS] = Level.PARAM.value  # type: ignore[valid-type]
    log_conflicts: bool = False

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, data: Any) -> Any:
        weightings, aggregators = _registries()
        if data is None:
            data = {}
        if isinstance(data, str):
            data = _split_names(data, weightings.names(), aggregators.names())
        if not isinstance(data, Mapping):
            raise RecipeError("", f"expected a name or a mapping, got {data!r}")
        allowed = ["weighting", "aggregator", "level", "log_conflicts"]
        unknown = [str(k) for k in data if k not in allowed]
        if unknown:
            raise RecipeError(
                unknown[0], f"unknown key; expected one of {allowed}." + suggest(unknown[0], allowed)
            )
        parsed = dict(data)
        for key, registry in (("weighting", weightings), ("aggregator", aggregators)):
            if parsed.get(key) is not None:
                try:
                    parsed[key] = _component(parsed[key], registry)
                except RecipeError as error:
                    raise RecipeError(f"{key}.{error.path}" if error.path else key, error.message) from None
        return parsed

    @property
    def parts(self) -> list[ComponentSpec]:
        """The weighting and the aggregator that are set, in that order."""
        return [c for c in (self.weighting, self.aggregator) if c is not None]


def _split_names(text: str, weightings: list[str], aggregators: list[str]) -> dict[str, str]:
    parts = split_name(text)
    result: dict[str, str] = {}
    for i, part in enumerate(parts):
        if part in weightings and "weighting" not in result:
            result["weighting"] = part
        elif part in aggregators and "aggregator" not in result:
            result["aggregator"] = part
        else:
            known = weightings + aggregators
            raise RecipeError(
                "" if len(parts) == 1 else f" (part {i + 1})",
                f"expected a weighting and/or an aggregator from {known}, got {part!r}."
                + suggest(part, known),
            )
    return result


__all__ = ["ArchitectureSpec", "BalancerSpec", "ComponentSpec", "DataSpec", "Named"]
