"""`Recipe`: a whole YAML recipe (see ``zoo/``) as one frozen pydantic model, and :func:`validate`.

:func:`validate` checks a recipe completely before anything is loaded or written and fills in the
defaults; code reads it by attribute (``recipe.training.optimizer.learning_rate``). ``model_dump()`` is the
recipe as a plain mapping with every default (what a run directory's ``recipe.json`` holds); a `Recipe`
also reads as that mapping (``recipe["training"]["epochs"]``).

``imports: [module, ...]`` names modules imported before the rest is checked, so that a balancer or builder
registered in a user's own module can be named in the recipe; a module next to the recipe file is found.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from mtl_keras.option_types import PositiveInt
from mtl_keras.recipes.components import ArchitectureSpec, BalancerSpec, DataSpec
from mtl_keras.recipes.errors import RecipeError, translate
from mtl_keras.recipes.sections import (
    BackboneSpec,
    BaselinesSpec,
    CalibrationSpec,
    DistillSpec,
    DistributeSpec,
    EncodingsSpec,
    EvaluationSpec,
    ExportSpec,
    FreezeSpec,
    KerasHubSpec,
    Section,
    TaskSpec,
    TrackingSpec,
    TrainingSpec,
    backbone_spec,
)


class Recipe(Section):
    """A validated recipe."""

    name: str
    description: str = ""
    seed: int = 0
    seeds: PositiveInt = Field(
        default=1, description="train with seeds seed, seed+1, ...; >= 2 gives a verdict per task"
    )
    imports: list[str] = Field(default_factory=list, description="modules to import first")
    init_from: str | None = Field(
        default=None, description="a run directory whose trained weights the model starts from (warm start)"
    )
    data: DataSpec = Field(description="name: <data set> plus its options, or tfds: {...}")
    tasks: dict[str, TaskSpec] = Field(default_factory=dict, description="{task: {weight, metrics, loss}}")
    architecture: ArchitectureSpec = Field(description="name: <architecture> plus its options")
    backbone: BackboneSpec | KerasHubSpec | None = Field(
        default=None,
        description="keras_applications: <model> or keras_hub: <preset or {class, config}> as the shared "
        "start of the architecture",
    )
    freeze: FreezeSpec = FreezeSpec()
    encodings: EncodingsSpec = Field(
        default=EncodingsSpec(), description="encodings of raw columns: per kind, then per column"
    )
    balancer: BalancerSpec = BalancerSpec()
    training: TrainingSpec = TrainingSpec()
    baselines: BaselinesSpec = BaselinesSpec()
    distill: DistillSpec | None = Field(
        default=None, description="from: baselines, weight, temperature: distil the single-task networks"
    )
    distribute: DistributeSpec = DistributeSpec()
    mixed_precision: Literal["mixed_float16", "mixed_bfloat16"] | None = None
    calibration: CalibrationSpec = CalibrationSpec()
    evaluation: EvaluationSpec = EvaluationSpec()
    export: ExportSpec = ExportSpec()
    tracking: TrackingSpec = TrackingSpec()

    @model_validator(mode="before")
    @classmethod
    def _import_first(cls, data: Any, info: Any) -> Any:
        if isinstance(data, Mapping) and isinstance(data.get("imports"), list):
            directory = (info.context or {}).get("directory")
            for i, module in enumerate(data["imports"]):
                if isinstance(module, str):
                    _import(module, directory, f"imports[{i}]")
        return data

    @field_validator("backbone", mode="before")
    @classmethod
    def _backbone(cls, value: Any) -> Any:
        return backbone_spec(value)

    @field_validator("tasks", mode="before")
    @classmethod
    def _tasks(cls, value: Any) -> Any:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise RecipeError(
                "", f"expected a mapping {{task name: {{weight, metrics, loss}}}}, got {value!r}"
            )
        return {str(k): v for k, v in value.items()}

    @model_validator(mode="after")
    def _frozen_backbone(self) -> Recipe:
        if self.freeze.backbone and self.backbone is None:
            raise RecipeError("freeze.backbone", "there is no `backbone` section to freeze")
        if self.freeze.backbone_lr_multiplier is not None and self.backbone is None:
            raise RecipeError("freeze.backbone_lr_multiplier", "there is no `backbone` section")
        at = self.freeze.unfreeze_at_epoch
        if at is not None and at >= self.training.epochs:
            raise RecipeError(
                "freeze.unfreeze_at_epoch",
                f"expected fewer than training.epochs ({self.training.epochs}) epochs, got {at}: "
                "the backbone would never be unfrozen",
            )
        return self

    @model_validator(mode="after")
    def _hardening(self) -> Recipe:
        at = self.training.harden_gates_at_epoch
        if at is None:
            return self
        gate = self.architecture.options.get("gate", "softmax")
        if gate not in ("dselect_k", "dselect_k_static"):
            raise RecipeError(
                "training.harden_gates_at_epoch",
                f"only DSelect-k gates are hardened; set architecture.gate to dselect_k or dselect_k_static, "
                f"not {gate!r}",
            )
        if at >= self.training.epochs:
            raise RecipeError(
                "training.harden_gates_at_epoch",
                f"expected fewer than training.epochs ({self.training.epochs}) epochs, got {at}: "
                "the gates would never be hardened",
            )
        return self

    @model_validator(mode="after")
    def _seeds_need_baselines(self) -> Recipe:
        if self.seeds > 1 and not self.baselines.single_task:
            raise RecipeError(
                "seeds", "a verdict per task needs the single-task networks; set baselines.single_task: true"
            )
        return self

    @model_validator(mode="after")
    def _distill_needs_baselines(self) -> Recipe:
        if self.distill is not None and not self.baselines.single_task:
            raise RecipeError(
                "distill",
                "the teachers are the single-task networks; set baselines.single_task: true "
                "(got baselines.single_task: false)",
            )
        return self

    @model_validator(mode="after")
    def _static_weights(self) -> Recipe:
        if self.balancer.weighting is not None and any(t.weight is not None for t in self.tasks.values()):
            raise RecipeError(
                "tasks",
                "per-task `weight`s are static weights and cannot be combined with balancer.weighting",
            )
        return self

    # --- read as the mapping it dumps to ---

    def __getitem__(self, key: str) -> Any:
        return self.model_dump()[key]

    def __contains__(self, key: object) -> bool:
        return key in type(self).model_fields

    def keys(self) -> Iterator[str]:
        return iter(type(self).model_fields)

    @property
    def baseline_epochs(self) -> int:
        """The single-task baselines' budget: ``baselines.epochs``, by default ``training.epochs``."""
        return self.baselines.epochs or self.training.epochs

    def static_weights(self, task_names: list[str]) -> dict[str, float] | None:
        """The tasks' static loss weights (1 where not given), or None when no task has one."""
        weights = {name: self.tasks[name].weight if name in self.tasks else None for name in task_names}
        if all(w is None for w in weights.values()):
            return None
        return {k: (1.0 if w is None else w) for k, w in weights.items()}


def _import(module: str, directory: Path | None, path: str) -> None:
    """Import ``module``; a ``module.py`` (or package) in ``directory`` is found too."""
    with contextlib.ExitStack() as stack:
        if directory is not None and str(directory) not in sys.path:
            sys.path.insert(0, str(directory))
            stack.callback(_remove, str(directory))
        try:
            importlib.import_module(module)
        except Exception as error:  # any failure of the user's module is a recipe error
            message = str(error).replace("\n", " ")
            raise RecipeError(path, f"cannot import {module!r}: {type(error).__name__}: {message}") from None


def _remove(entry: str) -> None:
    with contextlib.suppress(ValueError):
        sys.path.remove(entry)


def validate(raw: Any, *, directory: str | Path | None = None) -> Recipe:
    """Check a whole recipe (a mapping as written, or a `Recipe`); raises :class:`RecipeError`.

    ``directory`` (the recipe file's folder) is where modules of ``imports`` are looked for first.
    """
    if isinstance(raw, Recipe):
        return raw
    if not isinstance(raw, Mapping):
        raise RecipeError("", f"a recipe must be a mapping, got {type(raw).__name__}")
    context = {"directory": Path(directory) if directory is not None else None}
    try:
        return Recipe.model_validate(raw, context=context)
    except ValidationError as error:
        raise translate(error, Recipe, raw) from None


__all__ = ["Recipe", "validate"]
