"""Recipes: the YAML experiment descriptions in ``zoo/``, their pydantic models and loading."""

from mtl_keras.recipes.components import ArchitectureSpec, BalancerSpec, ComponentSpec, DataSpec
from mtl_keras.recipes.errors import RecipeError
from mtl_keras.recipes.loading import apply_override, load_recipe, read_raw_recipe
from mtl_keras.recipes.recipe import Recipe, validate
from mtl_keras.recipes.sections import (
    BackboneSpec,
    BaselinesSpec,
    CalibrationSpec,
    DistillSpec,
    DistributeSpec,
    EarlyStoppingSpec,
    EvaluationSpec,
    ExportSpec,
    FreezeSpec,
    FusionSpec,
    KerasHubSpec,
    MlflowSpec,
    OptimizerSpec,
    ScheduleSpec,
    TaskSpec,
    TrackingSpec,
    TrainingSpec,
)

__all__ = [
    "ArchitectureSpec",
    "BackboneSpec",
    "BalancerSpec",
    "BaselinesSpec",
    "CalibrationSpec",
    "ComponentSpec",
    "DataSpec",
    "DistillSpec",
    "DistributeSpec",
    "EarlyStoppingSpec",
    "EvaluationSpec",
    "ExportSpec",
    "FreezeSpec",
    "FusionSpec",
    "KerasHubSpec",
    "MlflowSpec",
    "OptimizerSpec",
    "Recipe",
    "RecipeError",
    "ScheduleSpec",
    "TaskSpec",
    "TrackingSpec",
    "TrainingSpec",
    "apply_override",
    "load_recipe",
    "read_raw_recipe",
    "validate",
]
