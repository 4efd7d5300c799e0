"""`MultiTaskHyperModel`: a recipe plus a search space → one compiled multi-task model per trial.

Each space entry becomes one Keras Tuner hyperparameter named by its dotted recipe path
(``architecture.num_experts`` → ``hp.Choice("architecture.num_experts", [2, 4, 8])``). A trial's values are
substituted into the recipe, the recipe is validated again, and the model is built and compiled exactly as
``mtl-keras train`` builds it (:func:`mtl_keras.experiments.train.build_models`), balancer and its
custom ``train_step`` included. ``fit`` trains on the recipe's training split with the trial's batch size,
epochs and early stopping, validates on the validation split every epoch, and logs the search objective.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import keras
import keras_tuner as kt

from mtl_keras.data import MultiTaskDataset
from mtl_keras.data.pipeline import to_dataset
from mtl_keras.model import MultiTaskModel
from mtl_keras.recipes.schema import validate
from mtl_keras.tasks import Task
from mtl_keras.tuning.objectives import ObjectiveLogger
from mtl_keras.tuning.schema import substitute


def declare(hp: kt.HyperParameters, path: str, entry: Mapping[str, Any], current: Any = None) -> Any:
    """Register the hyperparameter of one validated space entry and return its recipe value.

    ``current`` is the recipe's own value at ``path``; when it lies in the space it is the hyperparameter's
    default, so the model Keras Tuner builds before the first trial (to learn the space) is the recipe's.
    """
    if entry["type"] == "choice":
        labels, values = list(entry["labels"]), list(entry["values"])
        default = labels[values.index(current)] if current is not None and current in values else None
        label = hp.Choice(path, labels, default=default)
        return values[labels.index(label)]
    default = current if _in_range(current, entry) else None
    sampling = "log" if entry["log"] else "linear"
    if entry["type"] == "int":
        return int(
            hp.Int(path, entry["low"], entry["high"], step=entry["step"], sampling=sampling, default=default)
        )
    # Bayesian optimisation hands numpy floats; Keras and the recipe schema want Python floats.
    return float(
        hp.Float(path, entry["low"], entry["high"], step=entry["step"], sampling=sampling, default=default)
    )


def _in_range(value: Any, entry: Mapping[str, Any]) -> bool:
    """Whether ``value`` is one of the values the range entry can take."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if entry["type"] == "int" and not isinstance(value, int):
        return False
    if not entry["low"] <= value <= entry["high"]:
        return False
    step = entry["step"]
    return step is None or (entry["type"] == "int" and (value - entry["low"]) % step == 0)


def _current(recipe: Mapping[str, Any], path: str) -> Any:
    node: Any = recipe
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def values_of(space: Mapping[str, Mapping[str, Any]], hp_values: Mapping[str, Any]) -> dict[str, Any]:
    """A trial's ``hp.values`` (choice labels) → ``{path: recipe value}`` for the searched paths."""
    result = {}
    for path, entry in space.items():
        if path not in hp_values:
            continue
        value = hp_values[path]
        if entry["type"] == "choice":
            value = entry["values"][list(entry["labels"]).index(value)]
        elif entry["type"] == "int":
            value = int(value)
        else:
            value = float(value)
        result[path] = value
    return result


class MultiTaskHyperModel(kt.HyperModel):
    """Builds and fits a recipe's multi-task model with the values of one trial.

    Args:
        recipe: the recipe as written (raw or validated), without its ``search`` block.
        space: the validated ``search.space`` (see :func:`mtl_keras.tuning.validate_search`).
        dataset: the recipe's data set, loaded once for the whole search.
        tasks: its tasks (:func:`mtl_keras.experiments.train.resolve_tasks`).
        strategy: the `tf.distribute` strategy the models are built under.
        objective: ``(log key, function of the epoch logs)``; the value is added to every epoch's logs.
        verbose: ``model.fit`` verbosity.
    """

    def __init__(
        self,
        recipe: Mapping[str, Any],
        space: Mapping[str, Mapping[str, Any]],
        dataset: MultiTaskDataset,
        tasks: list[Task],
        strategy: Any,
        *,
        objective: tuple[str, Callable[[Mapping[str, Any]], float]] | None = None,
        verbose: int = 0,
    ) -> None:
        super().__init__(name="mtl_keras", tunable=True)
        self.recipe = dict(recipe)
        self.space = {k: dict(v) for k, v in space.items()}
        self.dataset = dataset
        self.tasks = tasks
        self.strategy = strategy
        self.objective = objective
        self.verbose = verbose

    def values(self, hp: kt.HyperParameters) -> dict[str, Any]:
        """Declare every searched hyperparameter on ``hp``; return ``{path: recipe value}``."""
        return {
            path: declare(hp, path, entry, _current(self.recipe, path)) for path, entry in self.space.items()
        }

    def recipe_for(self, hp: kt.HyperParameters) -> dict[str, Any]:
        """The validated recipe of one trial."""
        return validate(substitute(self.recipe, self.values(hp)))

    def build(self, hp: kt.HyperParameters) -> MultiTaskModel:
        from mtl_keras.experiments.train import build_models

        model, _ = build_models(self.recipe_for(hp), self.dataset, self.tasks, self.strategy)
        return model

    def fit(self, hp: kt.HyperParameters, model: MultiTaskModel, *args: Any, **kwargs: Any) -> Any:
        """Train ``model`` with the trial's recipe; Keras Tuner's arguments (``callbacks``, and ``epochs`` /
        ``initial_epoch`` from Hyperband) are forwarded to ``model.fit``."""
        callbacks: list[keras.callbacks.Callback] = []
        if self.objective is not None:
            callbacks.append(ObjectiveLogger(*self.objective))
        callbacks += list(kwargs.pop("callbacks", []))
        kwargs["verbose"] = self.verbose  # `search(verbose=...)` sets the tuner's display, not fit's
        return fit_recipe(model, self.recipe_for(hp), self.dataset, *args, callbacks=callbacks, **kwargs)


def fit_recipe(
    model: MultiTaskModel,
    recipe: Mapping[str, Any],
    dataset: MultiTaskDataset,
    *args: Any,
    callbacks: list[keras.callbacks.Callback] | None = None,
    **kwargs: Any,
) -> Any:
    """``model.fit`` on the training split with a validated recipe's batch size, epochs, steps per epoch and
    early stopping, validating on the validation split every epoch. ``callbacks`` run before the early
    stoppers; ``kwargs`` (``epochs``, ``initial_epoch``, ``verbose``) override the recipe."""
    training = recipe["training"]
    capped = training["steps_per_epoch"] is not None
    kwargs.setdefault("epochs", training["epochs"])
    train = to_dataset(
        dataset.train, training["batch_size"], shuffle=True, seed=recipe["seed"], repeat=capped
    )
    validation = to_dataset(dataset.validation, max(training["batch_size"], 1024))
    return model.fit(
        train,
        *args,
        validation_data=validation,
        steps_per_epoch=training["steps_per_epoch"],
        callbacks=[*(callbacks or []), *_early_stopping(recipe)],
        shuffle=False,  # the dataset shuffles itself
        **kwargs,
    )


def _early_stopping(recipe: Mapping[str, Any]) -> list[keras.callbacks.Callback]:
    from mtl_keras.callbacks import CompositeEarlyStopping, PerTaskEarlyStopping

    early = recipe["training"]["early_stopping"]
    if early["mode"] == "composite":
        return [CompositeEarlyStopping(patience=early["patience"])]
    if early["mode"] == "per_task":
        return [PerTaskEarlyStopping(patience=early["patience"])]
    return []


__all__ = ["MultiTaskHyperModel", "declare", "fit_recipe", "values_of"]
