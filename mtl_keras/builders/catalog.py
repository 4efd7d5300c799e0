"""Every builder by name: the multi-task architectures of :mod:`mtl_keras.builders.architectures` and
``single_task``, their single-task baseline."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mtl_keras.builders.architectures import ARCHITECTURES, Architecture, lookup
from mtl_keras.builders.single_task import single_task

__all__ = ["ARCHITECTURES", "Architecture", "get_builder", "names"]


def get_builder(name: str) -> Callable[..., Any]:
    """The public builder of architecture ``name`` (``"single_task"`` included)."""
    if name == "single_task":
        return single_task
    return lookup(name).builder


def names() -> list[str]:
    return sorted([*ARCHITECTURES, "single_task"])
