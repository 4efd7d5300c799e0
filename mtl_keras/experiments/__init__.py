"""Experiments: run a recipe end to end (multi-task model, single-task baselines, report, plots, export)."""

from mtl_keras.experiments.train import Prepared, prepare, run

__all__ = ["Prepared", "prepare", "run"]
