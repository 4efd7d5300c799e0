"""Hyperparameter search with Keras Tuner: a recipe's ``search:`` block → trials ranked by a validation objective.

``mtl-keras tune RECIPE`` runs it from the command line (:mod:`mtl_keras.tuning.cli`); in Python::

    from mtl_keras.tuning import load_search_recipe, run_search

    recipe, search = load_search_recipe("tuning/synthetic_mmoe_search.yaml")
    result = run_search(recipe, search, "runs/synthetic_mmoe_search")
    result.best_values  # {"architecture.num_experts": 8, ...}

See docs/tuning.md for the ``search:`` syntax, the objectives and the files a search writes.
"""

from mtl_keras.tuning.hypermodel import MultiTaskHyperModel
from mtl_keras.tuning.loading import load_search_recipe
from mtl_keras.tuning.objectives import Objective, make_objective
from mtl_keras.tuning.schema import SearchSpec, parse_search, validate_search
from mtl_keras.tuning.search import SearchResult, run_search
from mtl_keras.tuning.tuner import make_tuner

__all__ = [
    "MultiTaskHyperModel",
    "Objective",
    "SearchResult",
    "SearchSpec",
    "load_search_recipe",
    "make_objective",
    "make_tuner",
    "parse_search",
    "run_search",
    "validate_search",
]
