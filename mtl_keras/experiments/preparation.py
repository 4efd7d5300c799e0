"""Preparing a validated recipe, before anything is written: its data, its tasks, its compiled models.

Every recipe error that needs the data or a built model surfaces here, as a `RecipeError` naming the key:
an unknown task name, an architecture option the builder refuses, a balancer the model cannot use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import keras

from mtl_keras._registry import suggest
from mtl_keras.builders.backbones import keras_application
from mtl_keras.builders.catalog import get_builder
from mtl_keras.builders.inputs import RawFeatures
from mtl_keras.data import DATASETS, AnyDataset
from mtl_keras.distribute.strategy import in_scope, make_strategy
from mtl_keras.distribute.stream import StreamSpec
from mtl_keras.experiments.optimizers import build_optimizer
from mtl_keras.model import MultiTaskModel
from mtl_keras.recipes import KerasHubSpec, Recipe, RecipeError
from mtl_keras.tasks import Task


@dataclass
class Prepared:
    """A validated recipe with its data, tasks, strategy and (compiled, untrained) models; ``baseline`` is
    None when ``baselines.enabled`` is false."""

    recipe: Recipe
    dataset: AnyDataset
    tasks: list[Task]
    strategy: Any
    model: MultiTaskModel
    baseline: MultiTaskModel | None


def load_data(recipe: Recipe) -> AnyDataset:
    """The recipe's data set (``data.name`` with ``data.options``)."""
    try:
        return DATASETS[recipe.data.name](**recipe.data.options)
    except (ValueError, TypeError, FileNotFoundError) as error:
        raise RecipeError("data", str(error).replace("\n", " ")) from None


def resolve_tasks(recipe: Recipe, dataset: AnyDataset) -> list[Task]:
    """The data set's tasks with the recipe's overrides (metrics, loss); unknown task names are errors."""
    names = [t.name for t in dataset.tasks]
    for name in recipe.tasks:
        if name not in names:
            raise RecipeError(
                f"tasks.{name}",
                f"no such task (label column) in data set; expected one of {names}." + suggest(name, names),
            )
    tasks = []
    for task in dataset.tasks:
        override = recipe.tasks.get(task.name)
        config = task.get_config()
        if override is not None and override.metrics is not None:
            config["metrics"] = list(override.metrics)
        if override is not None and override.loss is not None:
            config["loss"] = override.loss
        try:
            tasks.append(Task.from_config(config))
        except ValueError as error:
            raise RecipeError(f"tasks.{task.name}", str(error)) from None
    return tasks


def model_inputs_spec(dataset: Any) -> Any:
    """What a builder's ``inputs`` is for ``dataset``: raw features, a width or an input shape."""
    return dataset.input_spec()


def _encoded(recipe: Recipe, inputs: Any) -> Any:
    """``inputs`` with the recipe's ``encodings`` applied (raw features only)."""
    spec = recipe.encodings
    if spec.empty:
        return inputs
    if not isinstance(inputs, RawFeatures):
        raise RecipeError(
            "encodings", f"the data set's inputs are {inputs!r}, not raw tabular columns to encode"
        )
    by_kind = {
        kind: value for kind, value in spec.model_dump(exclude={"columns"}).items() if value is not None
    }
    try:
        return inputs.with_encodings(by_kind, spec.columns)
    except ValueError as error:
        raise RecipeError("encodings", str(error)) from None


def builder_inputs(recipe: Recipe, dataset: Any) -> Any:
    """The builders' ``inputs``: the data set's (with the recipe's ``encodings``), behind the recipe's
    ``backbone`` when it has one."""
    inputs = _encoded(recipe, model_inputs_spec(dataset))
    spec = recipe.backbone
    if spec is None:
        return inputs
    if isinstance(spec, KerasHubSpec):
        return _keras_hub_inputs(recipe, spec, inputs)
    if not (isinstance(inputs, tuple) and len(inputs) == 3):
        raise RecipeError(
            "backbone",
            f"a keras.applications backbone takes images (height, width, channels); the data "
            f"set's inputs are {inputs!r}",
        )
    shape = tuple(spec.input_shape) if spec.input_shape is not None else inputs
    keras.utils.set_random_seed(recipe.seed)  # the same random backbone for the model and its baselines
    try:
        return keras_application(
            spec.keras_applications,
            input_shape=shape,
            weights=spec.weights,
            pooling=spec.pooling,
            trainable=not recipe.freeze.backbone,
            data_shape=inputs,
        )
    except ValueError as error:
        raise RecipeError("backbone", str(error)) from None


def _keras_hub_inputs(recipe: Recipe, spec: KerasHubSpec, inputs: Any) -> Any:
    """The recipe's keras-hub text backbone on the data set's one ``text`` column."""
    from mtl_keras.builders.keras_hub_backbone import keras_hub_backbone

    text = (
        [n for n, c in inputs.columns.items() if c.kind == "text"] if isinstance(inputs, RawFeatures) else []
    )
    if not text:
        raise RecipeError(
            "backbone.keras_hub",
            f"a keras_hub text backbone takes a text column (kind `text`: `features: {{column: text}}` for "
            f"your own data); the data set's inputs are {inputs!r}",
        )
    keras.utils.set_random_seed(recipe.seed)  # the same random backbone for the model and its baselines
    try:
        return keras_hub_backbone(
            spec.keras_hub,
            spec.preprocessor,
            output=spec.output,
            pooling=spec.pooling,
            sequence_length=spec.sequence_length,
            load_weights=spec.load_weights,
            inputs=inputs,
            trainable=not recipe.freeze.backbone,
        )
    except (ValueError, ImportError) as error:
        raise RecipeError("backbone", str(error)) from None


def apply_freeze(model: MultiTaskModel, recipe: Recipe) -> None:
    """The recipe's ``freeze`` schedule on a compiled model (call in the strategy's scope): the optimizer
    built for the backbone's variables when it is unfrozen later, and the backbone's learning-rate
    multiplier. The unfreezing itself is :class:`~mtl_keras.callbacks.UnfreezeBackbone`, added by ``fit``."""
    from mtl_keras.builders.backbones import backbone_layers
    from mtl_keras.callbacks.unfreeze import prepare_unfreezing, trainable_after_unfreezing
    from mtl_keras.training.discriminative import scale_learning_rate

    spec = recipe.freeze
    layers = backbone_layers(model)
    if recipe.backbone is None or not layers:
        return
    if spec.unfreeze_at_epoch is not None:
        prepare_unfreezing(model, layers)
    if spec.multiplier != 1.0:
        variables = [v for layer in layers for v in trainable_after_unfreezing(layer, [layer])]
        scale_learning_rate(model.optimizer, variables, spec.multiplier)


def stream_spec(recipe: Recipe, dataset: Any) -> StreamSpec:
    """The batches of one training epoch: the recipe's batch size, seed and step cap."""
    training = recipe.training
    return StreamSpec.for_size(
        dataset.num_examples("train"),
        training.batch_size,
        seed=recipe.seed,
        steps_per_epoch=training.steps_per_epoch,
    )


def _architecture_error(error: Exception) -> RecipeError:
    message = str(error)
    start = message.find("`")
    end = message.find("`", start + 1)
    key = message[start + 1 : end] if 0 <= start < end else ""
    return RecipeError(f"architecture.{key}" if key.isidentifier() else "architecture", message)


def _balancer(recipe: Recipe) -> list[Any]:
    from mtl_keras import balancers

    return [balancers.get(part.name, **part.options) for part in recipe.balancer.parts]


def build_model(recipe: Recipe, dataset: AnyDataset, tasks: list[Task]) -> MultiTaskModel:
    """The compiled multi-task model of ``recipe`` (call inside the strategy's scope)."""
    architecture = recipe.architecture
    steps = stream_spec(recipe, dataset).steps_per_epoch
    keras.utils.set_random_seed(recipe.seed)
    try:
        model = get_builder(architecture.name)(
            tasks, builder_inputs(recipe, dataset), name=recipe.name.replace("-", "_"), **architecture.options
        )
    except ValueError as error:
        raise _architecture_error(error) from None
    try:
        model.compile(
            build_optimizer(recipe.training, steps * recipe.training.epochs),
            loss_weights=recipe.static_weights([t.name for t in tasks]),
            balancer=_balancer(recipe),
            balancer_level=recipe.balancer.level,
            log_conflicts=recipe.balancer.log_conflicts,
        )
    except ValueError as error:
        raise RecipeError("balancer", str(error)) from None
    apply_freeze(model, recipe)
    return model


def build_baseline(recipe: Recipe, dataset: AnyDataset, tasks: list[Task]) -> MultiTaskModel:
    """The compiled single-task baselines: one column per task, the architecture's own options."""
    architecture = recipe.architecture
    steps = stream_spec(recipe, dataset).steps_per_epoch
    try:
        baseline = get_builder("single_task")(
            tasks, builder_inputs(recipe, dataset), architecture=architecture.name, **architecture.options
        )
    except ValueError as error:
        raise RecipeError(
            "baselines", f"cannot build single-task baselines for {architecture.name!r}: {error}"
        ) from None
    baseline.compile(
        build_optimizer(recipe.training, steps * recipe.baseline_epochs),
        loss_weights=recipe.static_weights([t.name for t in tasks]),
    )
    apply_freeze(baseline, recipe)
    return baseline


def build_models(
    recipe: Recipe, dataset: AnyDataset, tasks: list[Task], strategy: Any
) -> tuple[MultiTaskModel, MultiTaskModel | None]:
    """The compiled multi-task model and its single-task baselines (None when disabled), in ``strategy``."""

    def build() -> tuple[MultiTaskModel, MultiTaskModel | None]:
        model = build_model(recipe, dataset, tasks)
        baseline = build_baseline(recipe, dataset, tasks) if recipe.baselines.enabled else None
        return model, baseline

    return in_scope(strategy, build)


def make_recipe_strategy(recipe: Recipe) -> Any:
    """The `tf.distribute` strategy of ``distribute``."""
    spec = recipe.distribute
    try:
        return make_strategy(spec.strategy, devices=spec.devices, collective_timeout=spec.collective_timeout)
    except ValueError as error:
        raise RecipeError("distribute", str(error)) from None


class policy:
    """``with policy(recipe):`` the recipe's ``mixed_precision`` is the global Keras policy (each layer
    built keeps it); the previous policy is back afterwards, so nothing else in the process changes."""

    def __init__(self, recipe: Recipe) -> None:
        self.name = recipe.mixed_precision

    def __enter__(self) -> None:
        self.previous = keras.mixed_precision.global_policy()
        if self.name is not None:
            keras.mixed_precision.set_global_policy(self.name)

    def __exit__(self, *exc: object) -> None:
        keras.mixed_precision.set_global_policy(self.previous)


def check_production(recipe: Recipe, tasks: list[Task]) -> None:
    """The calibration's tasks and the fusion formula's task names against the data set's tasks."""
    from mtl_keras.experiments.calibrating import calibrated_tasks
    from mtl_keras.export.fusion import check_tasks

    calibrated_tasks(recipe.calibration, tasks)
    fusion = recipe.export.fusion
    if fusion is not None and recipe.export.enabled:
        if fusion.name in ("serving_default", *(f"predict_{t.name}" for t in tasks)):
            raise RecipeError("export.fusion.name", f"{fusion.name!r} is the name of another signature")
        try:
            check_tasks(fusion.formula, {t.name: t.output_units for t in tasks})
        except ValueError as error:
            raise RecipeError("export.fusion.formula", str(error)) from None


def _warm_start(model: MultiTaskModel, run_dir: str, strategy: Any) -> None:
    from mtl_keras.experiments.warm_start import warm_start

    try:
        in_scope(strategy, lambda: warm_start(model, run_dir))
    except ValueError as error:
        raise RecipeError("init_from", str(error)) from None


def prepare(recipe: Recipe) -> Prepared:
    """Load data, resolve tasks, build and compile both models: every recipe error surfaces here."""
    from mtl_keras.experiments.tracking import check_tracking

    check_tracking(recipe)
    with policy(recipe):
        # First: MultiWorkerMirroredStrategy configures the runtime's collectives, before other TF ops.
        strategy = make_recipe_strategy(recipe)
        dataset = load_data(recipe)
        tasks = resolve_tasks(recipe, dataset)
        check_production(recipe, tasks)
        model, baseline = build_models(recipe, dataset, tasks, strategy)
        if recipe.init_from is not None:
            _warm_start(model, recipe.init_from, strategy)
    return Prepared(recipe, dataset, tasks, strategy, model, baseline)


__all__ = [
    "Prepared",
    "apply_freeze",
    "build_baseline",
    "build_model",
    "build_models",
    "builder_inputs",
    "load_data",
    "make_recipe_strategy",
    "model_inputs_spec",
    "policy",
    "prepare",
    "resolve_tasks",
    "stream_spec",
]
