"""`RecipeError` and the translation of pydantic's `ValidationError` into it: one line, the key path, the
expected value (described from the annotation of the field), what was received, a "Did you mean" hint."""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

import annotated_types
import pydantic
from pydantic import BaseModel, ValidationError

from mtl_keras._registry import suggest


class RecipeError(ValueError):
    """A recipe problem; ``str(error)`` is one line starting with the key path."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}" if path else message)


def join(path: str, key: str | int) -> str:
    """``a.b`` + ``c`` → ``a.b.c``; ``a`` + ``0`` → ``a[0]``; ``a`` + ``[0].b`` → ``a[0].b``."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    if not key:
        return path
    if not path or key.startswith(("[", " ")):
        return f"{path}{key}"
    return f"{path}.{key}"


# --- describing an annotation in words -------------------------------------------------------------------


def _number(value: Any) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _bounds(metadata: Sequence[Any]) -> dict[str, Any]:
    bounds: dict[str, Any] = {}
    for item in metadata:
        if isinstance(item, annotated_types.Interval):
            bounds.update(
                {k: getattr(item, k) for k in ("gt", "ge", "lt", "le") if getattr(item, k) is not None}
            )
        for key in ("gt", "ge", "lt", "le", "min_length"):
            value = getattr(item, key, None)
            if value is not None and not isinstance(item, annotated_types.Interval):
                bounds[key] = value
    return bounds


def _describe_int(bounds: Mapping[str, Any]) -> str:
    low = bounds.get("ge", bounds["gt"] + 1 if "gt" in bounds else None)
    if low == 1 and len(bounds) == 1:
        return "a positive integer"
    if low == 0 and len(bounds) == 1:
        return "a non-negative integer"
    if low is not None and len(bounds) == 1:
        return f"an integer >= {low}"
    return "an integer" if not bounds else f"an integer in {_interval(bounds)}"


def _interval(bounds: Mapping[str, Any]) -> str:
    low = "(" + _number(bounds["gt"]) if "gt" in bounds else "[" + _number(bounds.get("ge", "-inf"))
    if "ge" not in bounds and "gt" not in bounds:
        low = "[-inf"
    high = (
        _number(bounds["lt"]) + ")"
        if "lt" in bounds
        else (_number(bounds["le"]) + "]" if "le" in bounds else "inf]")
    )
    return f"{low}, {high}"


def _describe_float(bounds: Mapping[str, Any]) -> str:
    if bounds == {"gt": 0}:
        return "a positive number"
    if bounds == {"ge": 0}:
        return "a non-negative number"
    return f"a number in {_interval(bounds)}" if bounds else "a number"


def _plural(description: str) -> str:
    for article in ("a ", "an "):
        if description.startswith(article):
            return description[len(article) :] + "s"
    return description


def _split(annotation: Any) -> tuple[Any, list[Any]]:
    """``Annotated[T, m...]`` → ``(T, [m...])``."""
    metadata: list[Any] = []
    while typing.get_origin(annotation) is typing.Annotated:
        metadata += list(annotation.__metadata__)
        annotation = annotation.__origin__
    return annotation, metadata


def _union_args(annotation: Any) -> tuple[Any, ...] | None:
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        return typing.get_args(annotation)
    return None


def describe(annotation: Any, metadata: Sequence[Any] = ()) -> str:
    """``Annotated[int, Ge(1)]`` → ``"a positive integer"``; ``list[str] | None`` → ``"a list of strings or null"``."""
    annotation, more = _split(annotation)
    bounds = _bounds([*metadata, *more])
    args = _union_args(annotation)
    if args is not None:
        rest = [a for a in args if a is not type(None)]
        text = " or ".join(describe(a, [*metadata, *more]) for a in rest)
        return f"{text} or null" if len(rest) < len(args) else text
    origin = typing.get_origin(annotation)
    if annotation is bool:
        return "true or false"
    if annotation is int:
        return _describe_int(bounds)
    if annotation is float:
        return _describe_float(bounds)
    if annotation is str:
        return "a string"
    if origin is typing.Literal:
        return f"one of {list(typing.get_args(annotation))}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"a mapping with keys {sorted(annotation.model_fields)}"
    if origin in (list, tuple, Sequence) or annotation in (list, Sequence):
        item = typing.get_args(annotation)
        inner = _plural(describe(item[0])) if item else "values"
        return f"a {'non-empty ' if bounds.get('min_length') else ''}list of {inner}"
    if origin in (dict, Mapping) or annotation in (dict, Mapping):
        return "a mapping"
    if typing.get_origin(annotation) is not None and callable(annotation):
        return "a callable"
    if annotation is typing.Any:
        return "any value"
    return f"a {getattr(annotation, '__name__', annotation)}"


# --- ValidationError → RecipeError -----------------------------------------------------------------------


def _field_info(model: type[BaseModel], name: str) -> pydantic.fields.FieldInfo | None:
    fields = model.model_fields
    if name in fields:
        return fields[name]
    return next((f for f in fields.values() if f.alias == name), None)


def _locate(
    annotation: Any, loc: Sequence[str | int], raw: Any
) -> tuple[list[str | int], Any, list[Any], Any, str | None]:
    """Walk ``loc`` from ``annotation``: (the key path, the annotation there, its metadata, the value there,
    the description given to the field)."""
    path: list[str | int] = []
    metadata: list[Any] = []
    description: str | None = None
    value = raw
    for key in loc:
        annotation, more = _split(annotation)
        metadata += more
        args = _union_args(annotation)
        if args is not None:
            rest = [a for a in args if a is not type(None)]
            if len(rest) > 1:
                break  # a union: described as a whole, at this key
            annotation = rest[0]
            annotation, more = _split(annotation)
            metadata += more
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            info = _field_info(annotation, str(key))
            if info is None:  # an unknown key
                path.append(key)
                return path, None, [], value.get(key) if isinstance(value, Mapping) else None, None
            annotation, metadata, description = info.annotation, list(info.metadata), info.description
        else:
            origin = typing.get_origin(annotation)
            item = typing.get_args(annotation)
            if origin in (dict, Mapping) and len(item) == 2:
                annotation, metadata, description = item[1], [], None
            elif origin in (list, tuple, Sequence) and item and isinstance(key, int):
                annotation, metadata, description = item[0], [], None
            else:
                break
        path.append(key)
        if isinstance(value, Mapping):
            value = value.get(key)
        elif isinstance(value, (list, tuple)) and isinstance(key, int) and key < len(value):
            value = value[key]
    return path, annotation, metadata, value, description


def _path(prefix: str, keys: Sequence[str | int]) -> str:
    path = prefix
    for key in keys:
        path = join(path, key)
    return path


def _first(errors: list[Any]) -> Any:
    """Unknown keys first (as a reader scans a mapping), then the first error in field order."""
    return next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])


def translate(
    error: ValidationError,
    model: Any,
    raw: Any,
    prefix: str = "",
    *,
    unknown: str = "unknown key",
) -> RecipeError:
    """The first error of ``error`` (raised validating ``raw`` as ``model``) as a one-line `RecipeError`.

    ``unknown`` starts the message of an unknown key (``"unknown option for architecture 'mmoe'"``).
    """
    first = _first(error.errors(include_url=False))
    kind, loc = first["type"], tuple(first["loc"])
    cause = (first.get("ctx") or {}).get("error")
    keys, annotation, metadata, value, description = _locate(model, loc, raw)
    path = _path(prefix, keys)
    if isinstance(cause, RecipeError):
        return RecipeError(join(path, cause.path), cause.message)
    if kind == "extra_forbidden":
        parent, owner, *_ = _locate(model, loc[:-1], raw)
        allowed = _keys(owner)
        name = str(loc[-1])
        return RecipeError(
            _path(prefix, [*parent, loc[-1]]),
            f"{unknown}; expected one of {allowed}." + suggest(name, allowed),
        )
    if kind == "missing":
        expected = description or describe(annotation, metadata)
        return RecipeError(path, f"missing required key ({expected})")
    if isinstance(cause, Exception):
        return RecipeError(path, str(cause).replace("\n", " "))
    if annotation is None:
        return RecipeError(path, first["msg"])
    expected = describe(annotation, metadata)
    choices = _choices(annotation)
    if choices is not None and isinstance(value, str):
        return RecipeError(path, f"expected {expected}, got {value!r}." + suggest(value, choices))
    return RecipeError(path, f"expected {expected}, got {value!r}")


def _keys(annotation: Any) -> list[str]:
    """The keys of the section ``annotation`` (optional or not), as a recipe spells them (aliases)."""
    annotation = _split(annotation)[0]
    args = _union_args(annotation)
    if args is not None:
        models = [a for a in args if _is_model(a)]
        annotation = _split(models[0])[0] if len(models) == 1 else annotation
    if not _is_model(annotation):
        return []
    return sorted(info.alias or name for name, info in annotation.model_fields.items())


def _is_model(annotation: Any) -> bool:
    annotation = _split(annotation)[0]
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _choices(annotation: Any) -> list[str] | None:
    annotation = _split(annotation)[0]
    args = _union_args(annotation)
    if args is not None:
        found = [c for a in args for c in (_choices(a) or [])]
        return found or None
    if typing.get_origin(annotation) is typing.Literal:
        return [str(a) for a in typing.get_args(annotation)]
    return None


__all__ = ["RecipeError", "describe", "join", "translate"]
