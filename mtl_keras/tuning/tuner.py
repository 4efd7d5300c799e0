"""The Keras Tuner tuner of a search block: random search, Hyperband or Bayesian optimisation."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import keras
import keras_tuner as kt

from mtl_keras.tuning.objectives import Objective
from mtl_keras.tuning.schema import SearchSpec

PROJECT = "trials"


def make_tuner(
    search: SearchSpec,
    objective: Objective,
    hypermodel: kt.HyperModel,
    directory: Path,
    *,
    seed: int,
    max_epochs: int,
    overwrite: bool = False,
    distribution_strategy: Any = None,
) -> kt.Tuner:
    """The Keras Tuner of ``search.tuner`` on ``directory/trials``, capped at ``search.max_trials``."""
    common: dict[str, Any] = {
        "hypermodel": hypermodel,
        "objective": objective.keras_tuner(),
        "seed": seed,
        "executions_per_trial": search.executions_per_trial,
        "distribution_strategy": distribution_strategy,
        "directory": str(directory),
        "project_name": PROJECT,
        "overwrite": overwrite,
    }
    name = search.tuner
    tuner: kt.Tuner
    if name == "random":
        tuner = kt.RandomSearch(max_trials=search.max_trials, **common)
    elif name == "bayesian":
        bayesian = search.bayesian
        tuner = kt.BayesianOptimization(
            max_trials=search.max_trials,
            num_initial_points=bayesian.num_initial_points,
            alpha=bayesian.alpha,
            beta=bayesian.beta,
            **common,
        )
    else:
        hyperband = search.hyperband
        tuner = kt.Hyperband(
            max_epochs=hyperband.max_epochs or max_epochs,
            factor=hyperband.factor,
            hyperband_iterations=hyperband.iterations,
            **common,
        )
    # Hyperband has no trial cap of its own; and a reloaded oracle keeps the cap given now (resuming with a
    # larger max_trials runs only the missing trials).
    tuner.oracle.max_trials = search.max_trials
    return tuner


def check_tensorboard() -> None:
    if keras.backend.backend() == "tensorflow" and importlib.util.find_spec("tensorboard") is None:
        raise ImportError(
            "Keras Tuner imports `tensorboard` for every trial on the TensorFlow backend; "
            "install it with `pip install tensorboard`."
        )


__all__ = ["PROJECT", "check_tensorboard", "make_tuner"]
