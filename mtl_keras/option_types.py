"""Constrained types for the options of builders, data loaders and balancers, written in their signatures.

A recipe's ``architecture``, ``data`` and ``balancer`` options are checked against the signature of the
function or class that receives them (:mod:`mtl_keras.recipes.options`): the annotation gives the type, and
these aliases add the bounds, so an option is declared in one place::

    def mmoe(tasks, inputs, *, num_experts: PositiveInt = 8, dropout: Rate = 0.0, ...): ...

They are plain ``typing.Annotated`` types with `annotated_types` bounds: type checkers see ``int`` or
``float``; pydantic enforces the bounds. A balancer or builder in a user's own module may use them too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from annotated_types import Ge, Gt, Interval, Len

PositiveInt = Annotated[int, Ge(1)]
NonNegativeInt = Annotated[int, Ge(0)]
PositiveFloat = Annotated[float, Gt(0)]
NonNegativeFloat = Annotated[float, Ge(0)]
#: A dropout rate or a warm-up ratio: [0, 1).
Rate = Annotated[float, Interval(ge=0, lt=1)]
#: A probability: [0, 1].
Probability = Annotated[float, Interval(ge=0, le=1)]
#: A fraction of a split: (0, 1).
Fraction = Annotated[float, Interval(gt=0, lt=1)]
#: A correlation or a cosine similarity: [-1, 1].
Correlation = Annotated[float, Interval(ge=-1, le=1)]
#: Layer sizes, e.g. tower units (a single size is a one-element list in a recipe).
Units = Sequence[PositiveInt]
NonEmptyUnits = Annotated[Sequence[PositiveInt], Len(min_length=1)]

__all__ = [
    "Correlation",
    "Fraction",
    "NonEmptyUnits",
    "NonNegativeFloat",
    "NonNegativeInt",
    "PositiveFloat",
    "PositiveInt",
    "Probability",
    "Rate",
    "Units",
]
