"""`Balancer`: one loss weighting plus at most one gradient aggregator, and the level it works at.

The two places where text becomes a balancer are here: :meth:`Level.parse` (``"param"`` / ``"rep"``) and
:func:`split_name` (``"uncertainty+pcgrad"``).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Sequence
from typing import Any

import keras
import tensorflow as tf

from mtl_keras._registry import suggest
from mtl_keras.balancers.base import AGGREGATORS, WEIGHTINGS, Aggregator, Weighting


class Level(str, enum.Enum):
    """Where a gradient aggregator acts."""

    #: the gradients of the shared variables
    PARAM = "param"
    #: the gradients of the shared representation the builder declares, then one backward pass
    REP = "rep"

    @classmethod
    def parse(cls, value: Any) -> Level:
        """The level called ``value`` (a :class:`Level` or its name); a ValueError otherwise."""
        if isinstance(value, Level):
            return value
        names = [level.value for level in cls]
        if value not in names:
            raise ValueError(
                f"Expected `level` to be one of {names}. Received: level={value!r}"
                + suggest(str(value), names)
            )
        return cls(value)


LEVELS = tuple(level.value for level in Level)


def split_name(text: str) -> list[str]:
    """The parts of a balancer name: ``"uncertainty+pcgrad"`` → ``["uncertainty", "pcgrad"]``."""
    return [part.strip() for part in text.split("+")]


@dataclasses.dataclass
class Balancer:
    """What a :class:`~mtl_keras.MultiTaskModel` balances tasks with.

    Args:
        weighting: the loss-level weighting (static equal weights when omitted).
        aggregator: the gradient-level aggregator, or None to back-propagate the weighted sum once.
        level: ``"param"`` aggregates the gradients of the shared variables; ``"rep"`` aggregates the
            gradients of the shared representation the builder declares, then back-propagates once.
        log_conflicts: log the pairwise cosine of task gradients and the fraction of conflicting pairs
            (costs one Jacobian per step when the aggregator does not need one anyway).
    """

    weighting: Weighting
    aggregator: Aggregator | None = None
    level: Level | str = Level.PARAM
    log_conflicts: bool = False

    def __post_init__(self) -> None:
        self.level = Level.parse(self.level)
        if not isinstance(self.weighting, Weighting):
            raise ValueError(f"Expected a loss weighting. Received: {self.weighting!r}")
        if self.aggregator is not None and not isinstance(self.aggregator, Aggregator):
            raise ValueError(f"Expected a gradient aggregator. Received: {self.aggregator!r}")

    @property
    def needs_jacobian(self) -> bool:
        return self.log_conflicts or (self.aggregator is not None and self.aggregator.needs_jacobian)

    def build(self, task_names: list[str]) -> None:
        num_tasks = len(task_names)
        self.weighting.task_names = list(task_names)
        if not self.weighting.built:
            self.weighting.build(num_tasks)
        if self.aggregator is not None and not self.aggregator.built:
            self.aggregator.build(num_tasks)

    def describe(self) -> str:
        parts = [self.weighting.registered_name]
        if self.aggregator is not None:
            parts.append(self.aggregator.registered_name)
        return "+".join(parts) + ("@rep" if self.level is Level.REP else "")

    def get_config(self) -> dict[str, Any]:
        """The balancer as a JSON-able dict (what a compiled model saves)."""
        return {
            "weighting": keras.saving.serialize_keras_object(self.weighting),
            "aggregator": (
                keras.saving.serialize_keras_object(self.aggregator) if self.aggregator is not None else None
            ),
            "level": Level.parse(self.level).value,
            "log_conflicts": self.log_conflicts,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Balancer:
        """The balancer of :meth:`get_config` (its weighting and aggregator serialized or already objects)."""
        parts = {k: config[k] for k in ("weighting", "aggregator")}
        parts = {
            k: keras.saving.deserialize_keras_object(v) if isinstance(v, dict) else v
            for k, v in parts.items()
        }
        return cls(level=config["level"], log_conflicts=config["log_conflicts"], **parts)

    def after_step(self, losses: tf.Tensor) -> None:
        """The after-update hook of the weighting and the aggregator (see ``after_step`` of the base)."""
        self.weighting.after_step(losses)
        if self.aggregator is not None:
            self.aggregator.after_step(losses)


def get(identifier: str, **options: Any) -> Weighting | Aggregator:
    """Return the registered weighting or aggregator called ``identifier``, built with ``options``."""
    if identifier in WEIGHTINGS.names():
        return WEIGHTINGS.get(identifier, **options)
    if identifier in AGGREGATORS.names():
        return AGGREGATORS.get(identifier, **options)
    known = WEIGHTINGS.names() + AGGREGATORS.names()
    raise ValueError(
        f"Unknown balancer {identifier!r}. Expected one of {known}." + suggest(identifier, known)
    )


def names() -> dict[str, list[str]]:
    return {"weightings": WEIGHTINGS.names(), "aggregators": AGGREGATORS.names()}


def resolve(
    balancer: Any = None,
    *,
    level: Level | str = Level.PARAM,
    log_conflicts: bool = False,
    static_weights: Sequence[float] | None = None,
) -> Balancer:
    """Turn what a user passes as ``balancer=`` into a :class:`Balancer`.

    Accepted: None (static weights), a registered name (``"pcgrad"``; ``"uncertainty+pcgrad"`` combines a
    weighting and an aggregator), a weighting or aggregator object, a list/tuple of one weighting and one
    aggregator (names or objects), or a :class:`Balancer`.
    """
    if isinstance(balancer, Balancer):
        if static_weights is not None:
            raise ValueError(
                "`loss_weights` cannot be combined with a Balancer object; use Static(weights=...)."
            )
        return balancer
    if balancer is None:
        parts: list[Any] = []
    elif isinstance(balancer, str):
        parts = split_name(balancer)
    elif isinstance(balancer, (list, tuple)):
        parts = list(balancer)
    else:
        parts = [balancer]
    objects = [get(p) if isinstance(p, str) else p for p in parts]
    weightings = [o for o in objects if isinstance(o, Weighting)]
    aggregators = [o for o in objects if isinstance(o, Aggregator)]
    others = [o for o in objects if not isinstance(o, (Weighting, Aggregator))]
    if others:
        raise ValueError(
            f"Expected balancer parts to be weightings or aggregators (names or objects). Received: {others!r}"
        )
    if len(weightings) > 1 or len(aggregators) > 1:
        raise ValueError(
            "A balancer combines at most one loss weighting and one gradient aggregator. Received "
            f"weightings {[w.registered_name for w in weightings]} and "
            f"aggregators {[a.registered_name for a in aggregators]}."
        )
    if static_weights is not None:
        if weightings and weightings[0].registered_name != "static":
            raise ValueError(
                f"`loss_weights` are static weights and cannot be combined with the "
                f"{weightings[0].registered_name!r} weighting."
            )
        weightings = [WEIGHTINGS.get("static", weights=list(static_weights))]
    weighting = weightings[0] if weightings else WEIGHTINGS.get("static")
    return Balancer(
        weighting=weighting,
        aggregator=aggregators[0] if aggregators else None,
        level=level,
        log_conflicts=log_conflicts,
    )
