"""The fixed sections of a recipe: tasks, training (optimizer, schedule, early stopping), baselines,
distribution, calibration, export, tracking, and the backbone and its freezing. Each is a frozen pydantic model; an omitted or empty section takes its defaults."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mtl_keras.option_types import NonNegativeFloat, PositiveFloat, PositiveInt, Rate
from mtl_keras.recipes.errors import RecipeError


class Section(BaseModel):
    """A mapping of known keys: strict types, unknown keys refused, ``null`` meaning "all defaults"."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, protected_namespaces=())

    @model_validator(mode="before")
    @classmethod
    def _null_is_empty(cls, data: Any) -> Any:
        return {} if data is None else data


class TaskSpec(Section):
    """Overrides of one task of the data set."""

    weight: NonNegativeFloat | None = Field(default=None, description="static loss weight")
    metrics: list[str] | None = Field(default=None, min_length=1, description="metric aliases")
    loss: str | None = Field(default=None, description="a Keras loss name")

    @field_validator("metrics", mode="before")
    @classmethod
    def _one_metric(cls, value: Any) -> Any:
        return [value] if isinstance(value, (int, float)) and not isinstance(value, bool) else value


class OptimizerSpec(Section):
    name: Literal["adam", "adamw", "sgd", "rmsprop"] = "adam"
    learning_rate: PositiveFloat = 1e-3
    weight_decay: NonNegativeFloat | None = None
    clipnorm: PositiveFloat | None = Field(default=None, description="gradient clipping by norm")
    momentum: Rate | None = Field(default=None, description="SGD and RMSprop momentum")

    @model_validator(mode="after")
    def _momentum(self) -> OptimizerSpec:
        if self.momentum is not None and self.name not in ("sgd", "rmsprop"):
            raise RecipeError("momentum", f"only sgd and rmsprop take a momentum, not {self.name!r}")
        return self


class ScheduleSpec(Section):
    name: Literal["constant", "cosine"] = "constant"
    warmup_ratio: Rate = Field(default=0.0, description="fraction of steps of linear warm-up")


class EarlyStoppingSpec(Section):
    mode: Literal["none", "composite", "per_task"] = "none"
    patience: PositiveInt = 5


class TrainingSpec(Section):
    epochs: PositiveInt = 10
    batch_size: PositiveInt = 256
    optimizer: OptimizerSpec = OptimizerSpec()
    schedule: ScheduleSpec = ScheduleSpec()
    early_stopping: EarlyStoppingSpec = EarlyStoppingSpec()
    steps_per_epoch: PositiveInt | None = Field(
        default=None, description="cap on the steps of an epoch (quick runs)"
    )


class BaselinesSpec(Section):
    enabled: bool = True
    epochs: PositiveInt | None = Field(default=None, description="default: training.epochs")


def _strategy_names() -> list[str]:
    from mtl_keras.distribute.strategy import STRATEGIES

    return sorted(STRATEGIES)


class DistributeSpec(Section):
    strategy: str = Field(
        default="default", description="default (one device), mirrored (local GPUs), multi_worker (TF_CONFIG)"
    )
    devices: list[str] | None = Field(
        default=None, min_length=1, description="mirrored only: the devices, e.g. [/gpu:0, /gpu:1]"
    )
    checkpoint_every: PositiveInt | None = Field(
        default=None, description="steps between fault-tolerance checkpoints (null: at each epoch end)"
    )
    collective_timeout: PositiveFloat | None = Field(
        default=None, description="multi_worker only: seconds before a stuck collective fails (null: none)"
    )

    @field_validator("strategy")
    @classmethod
    def _known(cls, value: str) -> str:
        from mtl_keras._registry import suggest

        names = _strategy_names()
        if value not in names:
            raise RecipeError("", f"expected one of {names}, got {value!r}." + suggest(value, names))
        return value

    @model_validator(mode="after")
    def _only(self) -> DistributeSpec:
        for key, strategy in (("devices", "mirrored"), ("collective_timeout", "multi_worker")):
            if getattr(self, key) is not None and self.strategy != strategy:
                raise RecipeError(key, f"only the {strategy!r} strategy takes `{key}`, not {self.strategy!r}")
        return self


class FusionSpec(Section):
    """An extra serving signature ``name`` returning ``formula`` over the task outputs."""

    name: str = Field(default="fused_score", description="the signature name and its output key")
    formula: str = Field(min_length=1, description="e.g. ctr * cvr ** 0.5 (task names, numbers, + - * / **)")

    @field_validator("formula")
    @classmethod
    def _safe(cls, value: str) -> str:
        from mtl_keras.export.fusion import parse_formula

        try:
            parse_formula(value)
        except ValueError as error:
            raise RecipeError("", str(error)) from None
        return value


class ExportSpec(Section):
    enabled: bool = True
    base_dir: str | None = Field(default=None, description="default: saved_models/<recipe name>")
    fusion: FusionSpec | None = Field(default=None, description="a score-fusion signature {name, formula}")


class CalibrationSpec(Section):
    """Post-hoc calibration fitted on the validation split and applied inside the exported signatures."""

    method: Literal["none", "temperature", "isotonic"] = Field(
        default="none", description="isotonic: binary tasks only"
    )
    tasks: list[str] | None = Field(
        default=None, min_length=1, description="tasks to calibrate (default: every classification task)"
    )
    bins: PositiveInt = Field(default=15, description="equal-width bins of the expected calibration error")


class BackboneSpec(Section):
    """A ``keras.applications`` model (no classifier) as the shared start of the architecture."""

    keras_applications: str = Field(min_length=1, description="the class name, e.g. MobileNetV3Small")
    weights: str | None = Field(
        default="imagenet", description="imagenet (downloaded by Keras), a weights file, or null (random)"
    )
    input_shape: list[PositiveInt] | None = Field(
        default=None,
        min_length=3,
        max_length=3,
        description="the backbone's (height, width, channels), default: the data's; other images are resized",
    )
    pooling: Literal["avg", "max"] | None = "avg"


class FreezeSpec(Section):
    backbone: bool = Field(
        default=False, description="keep the backbone's weights (and BatchNormalization statistics) fixed"
    )


class MlflowSpec(Section):
    uri: str = Field(min_length=1, description="MLflow tracking URI, e.g. file:./mlruns or http://host:5000")
    experiment: str | None = Field(default=None, min_length=1, description="default: the recipe name")


class TrackingSpec(Section):
    mlflow: MlflowSpec | None = Field(
        default=None, description="log parameters, metrics and artifacts to MLflow (the `mlflow` extra)"
    )


__all__ = [
    "BackboneSpec",
    "BaselinesSpec",
    "CalibrationSpec",
    "DistributeSpec",
    "EarlyStoppingSpec",
    "ExportSpec",
    "FreezeSpec",
    "FusionSpec",
    "MlflowSpec",
    "OptimizerSpec",
    "ScheduleSpec",
    "Section",
    "TaskSpec",
    "TrackingSpec",
    "TrainingSpec",
]
