"""Options checked against the function or class that receives them, as a pydantic model of its signature.

A builder's, a data loader's or a balancer's keyword parameters are the options a recipe may give it; each
parameter's annotation is its type (with the bounds of :mod:`mtl_keras.option_types`), its default makes it
optional. So a balancer registered in a user's own module is checked like ours, with nothing to declare.
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pydantic
from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from mtl_keras.recipes.errors import translate

#: Parameters a recipe never sets: the builder's tasks and inputs, the model name, the balancer object.
RESERVED = ("self", "tasks", "inputs", "name", "balancer")


def _as_list(value: Any) -> Any:
    """A single size is a one-element list (``tower_units: 8``)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [value]
    return value


def _is_sequence(annotation: Any) -> bool:
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = annotation.__origin__
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        return len(rest) == 1 and _is_sequence(rest[0])
    return typing.get_origin(annotation) in (list, Sequence) or annotation in (list, Sequence)


def _hints(target: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(target, include_extras=True)
    except Exception:  # an annotation that does not evaluate: check the names only
        return {}


def _field_type(annotation: Any) -> Any:
    if _is_sequence(annotation):
        return typing.Annotated[annotation, BeforeValidator(_as_list)]
    return annotation


@functools.cache
def options_model(target: Callable[..., Any], reserved: tuple[str, ...] = RESERVED) -> type[BaseModel]:
    """A pydantic model of the keyword parameters of ``target`` (for a class: of its ``__init__``) but
    those in ``reserved``."""
    function = target.__init__ if isinstance(target, type) else target  # type: ignore[misc]
    signature = inspect.signature(function)
    hints = _hints(function)
    fields: dict[str, Any] = {}
    takes_kwargs = False
    for name, parameter in signature.parameters.items():
        if parameter.kind == parameter.VAR_KEYWORD:
            takes_kwargs = True
        if (
            parameter.kind not in (parameter.KEYWORD_ONLY, parameter.POSITIONAL_OR_KEYWORD)
            or name in reserved
        ):
            continue
        annotation = _field_type(hints.get(name, Any))
        default = ... if parameter.default is parameter.empty else parameter.default
        fields[name] = (annotation, default)
    config = ConfigDict(
        strict=True,
        extra="allow" if takes_kwargs else "forbid",
        arbitrary_types_allowed=True,
        protected_namespaces=(),
    )
    title = f"{getattr(target, '__qualname__', 'options')}.options"
    try:
        return pydantic.create_model(title, __config__=config, **fields)
    except (pydantic.PydanticSchemaGenerationError, TypeError, NameError):
        # A type pydantic cannot check: keep the names and required-ness, not the types.
        loose: dict[str, Any] = {name: (Any, default) for name, (_, default) in fields.items()}
        return pydantic.create_model(title, __config__=config, **loose)


def check_options(
    options: Mapping[str, Any],
    target: Callable[..., Any],
    path: str,
    what: str,
    *,
    reserved: tuple[str, ...] = RESERVED,
) -> dict[str, Any]:
    """Check ``options`` against the keyword parameters of ``target``; return them (only those given),
    converted (``1`` → ``1.0`` for a float, ``8`` → ``[8]`` for a list). Raises `RecipeError` naming
    ``path.option``; ``reserved`` parameters are not options."""
    model = options_model(target, reserved)
    try:
        checked = model.model_validate(dict(options))
    except ValidationError as error:
        raise translate(error, model, options, path, unknown=f"unknown option for {what}") from None
    return {key: getattr(checked, key) for key in options}


__all__ = ["RESERVED", "check_options", "options_model"]
