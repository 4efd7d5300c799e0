"""The ``search:`` block of a recipe: tuner, budget, objective and the space, as a pydantic model.

A search block names recipe values by their dotted path and gives each a range or a list of choices::

    search:
      tuner: random                  # random | hyperband | bayesian
      max_trials: 10
      objective: {kind: delta_m}     # delta_m | mean_normalized | task_metric (+ task, metric)
      space:
        architecture.num_experts: {choice: [2, 4, 8]}
        architecture.sharing_depth: {int: [0, 2]}
        training.optimizer.learning_rate: {log_float: [1.0e-4, 1.0e-2]}
        balancer: {choice: [static, uncertainty, pcgrad, uncertainty+pcgrad]}

The recipe package knows nothing of it: :func:`mtl_keras.tuning.load_search_recipe` validates the recipe
without its ``search`` block, then the block with :func:`parse_search` (every candidate value is put into
the recipe and validated, see :mod:`mtl_keras.tuning.space`); errors name the key path:
``search.space.architecture.num_experts.int[0]: with architecture.num_experts = 0: architecture.num_experts:
expected a positive integer, got 0``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from annotated_types import Ge
from pydantic import Field, ValidationError, field_validator, model_validator

from mtl_keras.option_types import NonNegativeFloat, PositiveFloat, PositiveInt
from mtl_keras.recipes import Recipe, RecipeError, validate
from mtl_keras.recipes.errors import translate
from mtl_keras.recipes.sections import Section
from mtl_keras.tuning.space import SEARCHABLE, Entry, check_space, set_path, substitute

TUNERS = ("random", "hyperband", "bayesian")
OBJECTIVE_KINDS = ("delta_m", "mean_normalized", "task_metric")


class ObjectiveSpec(Section):
    kind: Literal["delta_m", "mean_normalized", "task_metric"] = Field(
        default="delta_m", description="what a trial is ranked by (validation split)"
    )
    task: str | None = Field(default=None, description="task_metric: the task")
    metric: str | None = Field(
        default=None, description="task_metric: its metric (default: the task's first)"
    )

    @model_validator(mode="after")
    def _kind(self) -> ObjectiveSpec:
        if self.kind == "task_metric":
            if self.task is None:
                raise RecipeError("task", "missing required key for kind task_metric (a task name)")
            return self
        for key in ("task", "metric"):
            if getattr(self, key) is not None:
                raise RecipeError(
                    key, f"only used with kind task_metric; kind {self.kind} averages every task"
                )
        return self


class HyperbandSpec(Section):
    max_epochs: PositiveInt | None = Field(
        default=None, description="most epochs a model is trained; default training.epochs"
    )
    factor: Annotated[int, Ge(2)] = Field(default=3, description="reduction factor of the successive halving")
    iterations: PositiveInt = Field(
        default=1, description="how many times the whole Hyperband algorithm runs"
    )


class BayesianSpec(Section):
    num_initial_points: PositiveInt | None = Field(
        default=None, description="random trials first; default 3 per dimension"
    )
    alpha: PositiveFloat = Field(default=1e-4, description="observation noise of the Gaussian process")
    beta: NonNegativeFloat = Field(
        default=2.6, description="exploration weight of the upper confidence bound"
    )


class SearchSpec(Section):
    """A validated ``search:`` block; ``space`` maps dotted recipe paths to a `Choice` or a `Range`."""

    tuner: Literal["random", "hyperband", "bayesian"] = "random"
    max_trials: PositiveInt = Field(default=10, description="trials to run (a cap for hyperband)")
    executions_per_trial: PositiveInt = Field(
        default=1, description="models trained per trial; objectives averaged"
    )
    seed: int | None = Field(default=None, description="seed of the tuner; default: the recipe's seed")
    objective: ObjectiveSpec = ObjectiveSpec()
    space: dict[str, Entry] = Field(
        description="{dotted.recipe.path: {choice: [...]} | {int: [lo, hi]} | ...}"
    )
    hyperband: HyperbandSpec = Field(default=HyperbandSpec(), description="options of tuner: hyperband")
    bayesian: BayesianSpec = Field(default=BayesianSpec(), description="options of tuner: bayesian")

    @field_validator("space", mode="before")
    @classmethod
    def _space(cls, value: Any, info: Any) -> Any:
        recipe = (info.context or {}).get("recipe")
        return check_space(value, {} if recipe is None else recipe)

    @model_validator(mode="after")
    def _options_of_the_tuner(self, info: Any) -> SearchSpec:
        for tuner in ("hyperband", "bayesian"):
            if tuner in self.model_fields_set and self.tuner != tuner:
                raise RecipeError(tuner, f"options of tuner {tuner}, but search.tuner is {self.tuner}")
        base = (info.context or {}).get("base")
        if self.objective.kind == "delta_m" and base is not None and not base.baselines.enabled:
            raise RecipeError(
                "objective.kind", "delta_m needs the single-task baselines, but baselines.enabled is false"
            )
        return self

    def with_trials(self, max_trials: int | None) -> SearchSpec:
        """This search with another trial budget (None: unchanged)."""
        return self if max_trials is None else self.model_copy(update={"max_trials": max_trials})


def _raw(recipe: Mapping[str, Any] | Recipe) -> dict[str, Any]:
    raw = recipe.model_dump() if isinstance(recipe, Recipe) else dict(recipe)
    raw.pop("search", None)
    return raw


def parse_search(block: Any, recipe: Mapping[str, Any] | Recipe) -> SearchSpec:
    """Check a recipe's ``search:`` block against the recipe (raw or validated; a ``search`` key in it is
    ignored); raises `RecipeError` naming the key path (``search.space.architecture.num_experts.int[0]``)."""
    raw = _raw(recipe)
    if isinstance(block, SearchSpec):
        return block
    base = validate(raw)
    try:
        return SearchSpec.model_validate(block, context={"recipe": raw, "base": base})
    except ValidationError as error:
        raise translate(error, SearchSpec, block, "search") from None


def validate_search(block: Any, recipe: Mapping[str, Any] | Recipe) -> dict[str, Any]:
    """:func:`parse_search` as a plain mapping: ``{"tuner", "max_trials", "executions_per_trial", "seed",
    "objective": {kind, task, metric}, "space": {path: entry}, "hyperband": {...}, "bayesian": {...}}``,
    where an entry is ``{"type": "choice", "labels": [...], "values": [...]}`` or
    ``{"type": "int" | "float", "low", "high", "step", "log"}``."""
    return parse_search(block, recipe).model_dump()


__all__ = [
    "OBJECTIVE_KINDS",
    "SEARCHABLE",
    "TUNERS",
    "BayesianSpec",
    "HyperbandSpec",
    "ObjectiveSpec",
    "SearchSpec",
    "parse_search",
    "set_path",
    "substitute",
    "validate_search",
]
