"""Optimizers and learning-rate schedules from a recipe's ``training`` section."""

from __future__ import annotations

from typing import Any

import keras

from mtl_keras.recipes import TrainingSpec

_OPTIMIZERS: dict[str, type[keras.optimizers.Optimizer]] = {
    "adam": keras.optimizers.Adam,
    "adamw": keras.optimizers.AdamW,
    "sgd": keras.optimizers.SGD,
    "rmsprop": keras.optimizers.RMSprop,
}


def learning_rate(training: TrainingSpec, total_steps: int) -> Any:
    """A float, or a cosine decay with linear warm-up over ``warmup_ratio`` of ``total_steps``."""
    base = training.optimizer.learning_rate
    schedule = training.schedule
    if schedule.name == "constant":
        return base
    warmup = round(schedule.warmup_ratio * total_steps)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=base if warmup == 0 else 0.0,
        decay_steps=max(total_steps - warmup, 1),
        warmup_target=base if warmup else None,
        warmup_steps=warmup,
    )


def build_optimizer(training: TrainingSpec, total_steps: int) -> keras.optimizers.Optimizer:
    spec = training.optimizer
    kwargs: dict[str, Any] = {"learning_rate": learning_rate(training, total_steps)}
    for key in ("clipnorm", "weight_decay", "momentum"):
        if getattr(spec, key) is not None:
            kwargs[key] = getattr(spec, key)
    return _OPTIMIZERS[spec.name](**kwargs)
