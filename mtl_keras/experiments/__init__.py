"""Experiments: run a recipe end to end (multi-task model, single-task baselines, report, plots, export)."""

from mtl_keras.experiments.fitting import Fitted, evaluate, fit
from mtl_keras.experiments.preparation import Prepared, prepare
from mtl_keras.experiments.train import run

__all__ = ["Fitted", "Prepared", "evaluate", "fit", "prepare", "run"]
