"""Reading a search recipe: the recipe without its ``search:`` block (validated by :mod:`mtl_keras.recipes`,
which knows nothing of searches), then the block itself (:func:`mtl_keras.tuning.schema.parse_search`)."""

from __future__ import annotations

import os
from typing import Any

from mtl_keras.recipes import RecipeError, read_raw_recipe, validate
from mtl_keras.tuning.schema import SearchSpec, parse_search


def load_search_recipe(
    path: str | os.PathLike[str], overrides: list[str] | tuple[str, ...] = ()
) -> tuple[dict[str, Any], SearchSpec]:
    """Read a recipe with a ``search:`` block; return ``(recipe as written, without search; search)``.

    ``overrides`` (``key=value``, YAML values) apply before validation and may reach into the search block
    (``search.max_trials=3``). Both parts are validated; errors name the key path.
    """
    raw = read_raw_recipe(path, overrides)
    if "search" not in raw:
        raise RecipeError(
            "search",
            "missing: `mtl-keras tune` needs a `search:` block (see docs/tuning.md); to train, use `train`",
        )
    block = raw.pop("search")
    # Data file paths are relative to the recipe's folder: the trials validate `raw` without it.
    raw["data"] = validate(raw, directory=os.path.dirname(os.path.abspath(path))).data.model_dump()
    return raw, parse_search(block, raw)


__all__ = ["load_search_recipe"]
