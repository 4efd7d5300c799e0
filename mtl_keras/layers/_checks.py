"""Argument checks shared by layers and builders; errors name the argument, the expectation and the value."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def check_positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"Expected `{name}` to be a positive integer. Received: {name}={value!r}")
    return value


def check_positive_ints(values: Any, name: str, *, allow_empty: bool = True) -> tuple[int, ...]:
    if isinstance(values, int) and not isinstance(values, bool):
        values = (values,)
    if not isinstance(values, Sequence) or isinstance(values, str):
        raise ValueError(f"Expected `{name}` to be a list of positive integers. Received: {name}={values!r}")
    if not allow_empty and not values:
        raise ValueError(
            f"Expected `{name}` to be a non-empty list of positive integers. Received: {name}=[]"
        )
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(
                f"Expected `{name}` to be a list of positive integers. Received: {name}={list(values)!r}"
            )
    return tuple(int(v) for v in values)


def check_rate(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) < 1.0:
        raise ValueError(f"Expected `{name}` to be a float in [0, 1). Received: {name}={value!r}")
    return float(value)


def check_non_negative(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or float(value) < 0:
        raise ValueError(f"Expected `{name}` to be a non-negative number. Received: {name}={value!r}")
    return float(value)
