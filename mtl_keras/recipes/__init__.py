"""Recipes: the YAML experiment descriptions in ``zoo/``, their schema and loading."""

from mtl_keras.recipes.loading import apply_override, load_recipe
from mtl_keras.recipes.schema import RecipeError, validate

__all__ = ["RecipeError", "apply_override", "load_recipe", "validate"]
