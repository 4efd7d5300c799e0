"""`MultiTaskHyperModel`: a recipe plus a search space → one compiled multi-task model per trial.

Each space entry becomes one Keras Tuner hyperparameter named by its dotted recipe path
(``architecture.num_experts`` → ``hp.Choice("architecture.num_experts", [2, 4, 8])``). A trial's values are
substituted into the recipe, the recipe is validated again, and the model is built and compiled exactly as
``mtl-keras train`` builds it (:func:`mtl_keras.experiments.preparation.build_model`), balancer and its
custom ``train_step`` included; ``fit`` trains it as ``mtl-keras train`` does
(:func:`mtl_keras.experiments.fitting.fit`: the recipe's batch stream, epochs and early stopping,
validating every epoch), with the objective logged first.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import keras
import keras_tuner as kt

from mtl_keras.data import AnyDataset
from mtl_keras.distribute.strategy import in_scope
from mtl_keras.experiments.fitting import fit
from mtl_keras.experiments.preparation import build_model
from mtl_keras.model import MultiTaskModel
from mtl_keras.recipes import Recipe, validate
from mtl_keras.tasks import Task
from mtl_keras.tuning.objectives import ObjectiveLogger
from mtl_keras.tuning.space import Choice, Entry, Range, as_entry, current, substitute


def declare(hp: kt.HyperParameters, path: str, entry: Entry | Mapping[str, Any], value: Any = None) -> Any:
    """Register the hyperparameter of one space entry and return its recipe value.

    ``value`` is the recipe's own value at ``path``; when it lies in the space it is the hyperparameter's
    default, so the model Keras Tuner builds before the first trial (to learn the space) is the recipe's.
    """
    entry = as_entry(entry)
    if isinstance(entry, Choice):
        default = (
            entry.labels[entry.values.index(value)] if value is not None and value in entry.values else None
        )
        return entry.value_of(hp.Choice(path, entry.labels, default=default))
    default = value if entry.contains(value) else None
    sampling = "log" if entry.log else "linear"
    if entry.type == "int":
        return int(
            hp.Int(path, int(entry.low), int(entry.high), step=entry.step, sampling=sampling, default=default)
        )
    # Bayesian optimisation hands numpy floats; Keras and the recipe want Python floats.
    return float(hp.Float(path, entry.low, entry.high, step=entry.step, sampling=sampling, default=default))


def values_of(space: Mapping[str, Entry | Mapping[str, Any]], hp_values: Mapping[str, Any]) -> dict[str, Any]:
    """A trial's ``hp.values`` (choice labels) → ``{path: recipe value}`` for the searched paths."""
    result = {}
    for path, spec in space.items():
        if path not in hp_values:
            continue
        entry, value = as_entry(spec), hp_values[path]
        if isinstance(entry, Choice):
            result[path] = entry.value_of(value)
        else:
            result[path] = int(value) if entry.type == "int" else float(value)
    return result


class MultiTaskHyperModel(kt.HyperModel):
    """Builds and fits a recipe's multi-task model with the values of one trial.

    Args:
        recipe: the recipe as written (a mapping, or a `Recipe`), without its ``search`` block.
        space: the ``search.space`` (:class:`mtl_keras.tuning.SearchSpec`'s, or its dumped mapping).
        dataset: the recipe's data set, loaded once for the whole search.
        tasks: its tasks (:func:`mtl_keras.experiments.preparation.resolve_tasks`).
        strategy: the `tf.distribute` strategy the models are built under.
        objective: ``(log key, function of the epoch logs)``; the value is added to every epoch's logs.
        verbose: training verbosity.
    """

    def __init__(
        self,
        recipe: Mapping[str, Any] | Recipe,
        space: Mapping[str, Entry | Mapping[str, Any]],
        dataset: AnyDataset,
        tasks: list[Task],
        strategy: Any,
        *,
        objective: tuple[str, Callable[[Mapping[str, Any]], float]] | None = None,
        verbose: int = 0,
    ) -> None:
        super().__init__(name="mtl_keras", tunable=True)
        self.recipe = recipe.model_dump() if isinstance(recipe, Recipe) else dict(recipe)
        self.space: dict[str, Choice | Range] = {k: as_entry(v) for k, v in space.items()}
        self.dataset = dataset
        self.tasks = tasks
        self.strategy = strategy
        self.objective = objective
        self.verbose = verbose

    def values(self, hp: kt.HyperParameters) -> dict[str, Any]:
        """Declare every searched hyperparameter on ``hp``; return ``{path: recipe value}``."""
        return {
            path: declare(hp, path, entry, current(self.recipe, path)) for path, entry in self.space.items()
        }

    def recipe_for(self, hp: kt.HyperParameters) -> Recipe:
        """The validated recipe of one trial."""
        return validate(substitute(self.recipe, self.values(hp)))

    def build(self, hp: kt.HyperParameters) -> MultiTaskModel:
        recipe = self.recipe_for(hp)
        return in_scope(self.strategy, lambda: build_model(recipe, self.dataset, self.tasks))

    def fit(self, hp: kt.HyperParameters, model: MultiTaskModel, *args: Any, **kwargs: Any) -> Any:
        """Train ``model`` with the trial's recipe; Keras Tuner's ``callbacks``, and ``epochs`` /
        ``initial_epoch`` from Hyperband, are honoured. Returns the `keras.callbacks.History`."""
        recipe = self.recipe_for(hp)
        callbacks: list[keras.callbacks.Callback] = []
        if self.objective is not None:
            callbacks.append(ObjectiveLogger(*self.objective))
        callbacks += list(kwargs.get("callbacks", []))
        fitted = fit(
            model,
            recipe,
            self.dataset,
            self.strategy,
            epochs=int(kwargs.get("epochs", recipe.training.epochs)),
            initial_epoch=int(kwargs.get("initial_epoch", 0)),
            callbacks=callbacks,
            verbose=self.verbose,  # `search(verbose=...)` sets the tuner's display, not training's
        )
        return fitted.history


__all__ = ["MultiTaskHyperModel", "declare", "values_of"]
