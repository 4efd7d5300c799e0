"""The fixed sections of a recipe: tasks, training (optimizer, schedule, early stopping), baselines,
distribution, calibration, export, tracking, the backbone and its freezing, and the encodings of raw columns. Each is a frozen pydantic model; an omitted or empty section takes its defaults."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

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
    harden_gates_at_epoch: PositiveInt | None = Field(
        default=None,
        description="DSelect-k gates: the epoch (0-based) from which every gate uses the hard step, so each "
        "example uses at most k experts (callbacks.HardenDSelectK)",
    )


class BaselinesSpec(Section):
    """What the multi-task model is compared with: its single-task networks (Δm is defined against them)
    and, for tabular data, classical reference models per task (rows in the report, not in Δm)."""

    single_task: bool = Field(
        default=True, description="train the single-task networks (Δm); `enabled` is its old name"
    )
    epochs: PositiveInt | None = Field(default=None, description="default: training.epochs")
    gbdt: bool = Field(default=False, description="scikit-learn HistGradientBoosting per task (tabular data)")
    linear: bool = Field(default=False, description="logistic / ridge regression per task (tabular data)")
    max_rows: PositiveInt = Field(
        default=200_000, description="training rows of the reference models (a uniform sample beyond)"
    )
    significance: float = Field(
        default=0.05,
        gt=0.0,
        lt=1.0,
        description="with seeds >= 2: level of the t-test behind each task's helps / hurts verdict",
    )
    min_effect_percent: NonNegativeFloat = Field(
        default=0.0, description="with seeds >= 2: smallest mean relative change (%) called helps / hurts"
    )

    @model_validator(mode="before")
    @classmethod
    def _old_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and "enabled" in data:
            if "single_task" in data:
                raise RecipeError("enabled", "is the old name of `single_task`; give one of them")
            data = {("single_task" if k == "enabled" else k): v for k, v in data.items()}
        return data

    @property
    def enabled(self) -> bool:
        """Whether the single-task networks are trained (the old name of ``single_task``)."""
        return self.single_task

    @property
    def references(self) -> list[str]:
        """The reference models asked for, in report order."""
        return [name for name in ("gbdt", "linear") if getattr(self, name)]


class DistillSpec(Section):
    """Distillation from single-task teachers: the trained single-task networks' outputs are soft targets of
    the multi-task model's (docs/methods.md, "Distillation from single-task teachers")."""

    model_config = ConfigDict(serialize_by_alias=True)

    source: Literal["baselines"] = Field(
        default="baselines",
        alias="from",
        description="the teachers: baselines (the single-task networks, trained before the multi-task model)",
    )
    weight: NonNegativeFloat = Field(
        default=1.0, description="weight of the summed per-task distillation terms"
    )
    temperature: PositiveFloat = Field(
        default=2.0, description="softening temperature of classification outputs (terms scaled by T²)"
    )


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
    serve: Literal["best", "multi_task"] = Field(
        default="best",
        description="with seeds >= 2, best serves a task whose verdict is hurts from its single-task model",
    )


class CalibrationSpec(Section):
    """Post-hoc calibration fitted on the validation split and applied inside the exported signatures."""

    method: Literal["none", "temperature", "isotonic"] = Field(
        default="none", description="isotonic: binary tasks only"
    )
    tasks: list[str] | None = Field(
        default=None, min_length=1, description="tasks to calibrate (default: every classification task)"
    )
    bins: PositiveInt = Field(default=15, description="equal-width bins of the expected calibration error")


class EvaluationSpec(Section):
    """What the report adds to every task's test metrics."""

    user_column: str | None = Field(
        default=None,
        description="feature column of user ids: every binary task gets its GAUC (default: user_id, if the data has it)",
    )


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


class KerasHubSpec(Section):
    """A keras-hub text encoder and its string preprocessor as the shared start of the architecture
    (:func:`~mtl_keras.builders.keras_hub_backbone.keras_hub_backbone`): the data's one ``text`` column goes
    in as raw strings."""

    keras_hub: str | dict[str, Any] = Field(
        description="a preset name (downloaded), or {class: <keras_hub.models backbone>, config: {...}}"
    )
    preprocessor: dict[str, Any] | None = Field(
        default=None,
        description="{class: <keras_hub.models preprocessor>, tokenizer: {class, vocabulary, ...}, "
        "sequence_length, ...}; default: the preset's",
    )
    output: str | None = Field(
        default=None, description="the backbone output used (default: pooled_output, else sequence_output)"
    )
    pooling: Literal["mean", "first"] = Field(
        default="mean", description="how a (batch, length, hidden) output becomes one vector"
    )
    sequence_length: PositiveInt | None = Field(
        default=None, description="the preprocessor's sequence length (default: the preset's)"
    )
    load_weights: bool = Field(default=True, description="a preset's pretrained weights (false: random)")

    @field_validator("keras_hub")
    @classmethod
    def _form(cls, value: Any) -> Any:
        if isinstance(value, str) and not value:
            raise RecipeError("", "expected a preset name or {class: ..., config: {...}}, got ''")
        return value


def backbone_spec(value: Any) -> Any:
    """A ``backbone`` mapping validated as the section its key names: ``keras_hub`` (:class:`KerasHubSpec`)
    or ``keras_applications`` (:class:`BackboneSpec`); errors name the key inside it."""
    if not isinstance(value, dict):
        return value
    if "keras_hub" in value and "keras_applications" in value:
        raise RecipeError("", "expected one of `keras_applications` and `keras_hub`, got both")
    section: type[Section] = KerasHubSpec if "keras_hub" in value else BackboneSpec
    try:
        return section.model_validate(value)
    except ValidationError as error:
        from mtl_keras.recipes.errors import translate

        raise translate(error, section, value) from None


class FreezeSpec(Section):
    """Freezing the backbone, and when and how fast it is fine-tuned."""

    backbone: bool = Field(
        default=False, description="keep the backbone's weights (and BatchNormalization statistics) fixed"
    )
    unfreeze_at_epoch: PositiveInt | None = Field(
        default=None,
        description="with backbone: true, train frozen for this many epochs, then fine-tune the backbone",
    )
    backbone_lr_multiplier: PositiveFloat | None = Field(
        default=None,
        description="the backbone's learning rate as a multiple of the optimizer's (default 1), when trained",
    )

    @model_validator(mode="after")
    def _schedule(self) -> FreezeSpec:
        if self.unfreeze_at_epoch is not None and not self.backbone:
            raise RecipeError(
                "unfreeze_at_epoch", "only a frozen backbone is unfrozen; set freeze.backbone: true"
            )
        if self.backbone and self.backbone_lr_multiplier is not None and self.unfreeze_at_epoch is None:
            raise RecipeError(
                "backbone_lr_multiplier",
                "a backbone frozen for the whole run is never trained; set freeze.unfreeze_at_epoch",
            )
        return self

    @property
    def multiplier(self) -> float:
        """The backbone's learning-rate multiplier (1.0 when not given)."""
        return 1.0 if self.backbone_lr_multiplier is None else self.backbone_lr_multiplier


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
    "KerasHubSpec",
    "MlflowSpec",
    "OptimizerSpec",
    "ScheduleSpec",
    "Section",
    "TaskSpec",
    "TrackingSpec",
    "TrainingSpec",
]


#: An encoding: its name, or the :class:`~mtl_keras.data.columns.ColumnSpec` fields other than ``kind``.
EncodingValue = str | dict[str, Any]


class EncodingsSpec(Section):
    """How the raw tabular columns of the data set are encoded, over the data set's own specs: first per kind
    (every column of that kind), then per column (``columns``). A value is an encoding name (``periodic``)
    or a dict of :class:`~mtl_keras.data.columns.ColumnSpec` fields without ``kind``
    (``{encoding: piecewise_linear, num_bins: 32}``)."""

    model_config = ConfigDict(strict=False, extra="forbid", frozen=True, protected_namespaces=())

    numeric: EncodingValue | None = Field(
        default=None, description="standardize (default), periodic (PLR) or piecewise_linear (PLE-Q)"
    )
    categorical: EncodingValue | None = Field(default=None, description="one_hot (default) or embedding")
    integer_categorical: EncodingValue | None = Field(default=None, description="one_hot or embedding")
    id: EncodingValue | None = Field(default=None, description="hash (default) or vocabulary")
    multi_hot: EncodingValue | None = Field(default=None, description="embedding (default) or multi_hot")
    columns: dict[str, EncodingValue] = Field(default_factory=dict, description="{column: encoding}")

    @model_validator(mode="after")
    def _no_kind(self) -> EncodingsSpec:
        values = {
            k: getattr(self, k) for k in ("numeric", "categorical", "integer_categorical", "id", "multi_hot")
        }
        values.update({f"columns.{k}": v for k, v in self.columns.items()})
        for key, value in values.items():
            if isinstance(value, dict) and "kind" in value:
                raise RecipeError(
                    f"{key}.kind", "an encoding keeps the column's kind; set only encoding and its options"
                )
        return self

    @property
    def empty(self) -> bool:
        return self == EncodingsSpec()
