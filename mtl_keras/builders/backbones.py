"""A pretrained (or randomly initialised) backbone as the shared start of any builder.

:class:`Backbone` is a value for a builder's ``inputs``: it holds what the backbone consumes (a shape, an
input size, :class:`~mtl_keras.builders.inputs.RawFeatures` or a ``keras.Input``) and the backbone model
itself. The builder applies the backbone to those inputs and wires its own layers (hard sharing's trunk,
MMoE's experts, cross-stitch's columns, ...) on the backbone's output, so every builder takes a backbone with
no option of its own::

    backbone = Backbone(keras.applications.MobileNetV3Small(input_shape=(64, 64, 3), weights=None,
                                                             include_top=False, pooling="avg"))
    model = mmoe(["a", "b"], backbone, num_experts=4, expert_units=(32,))

All backbone variables are shared (every task reaches them); the single-task baselines give each task its own
copy with the same starting weights. A frozen backbone (``trainable=False``) keeps its variables out of the
update, and its BatchNormalization layers run in inference mode (Keras does so for a non-trainable
BatchNormalization), so frozen statistics stay as loaded.

An input already passed through a backbone by hand (``f = backbone(keras.Input(...))``, then
``hard_sharing(tasks, f)``) works the same way: :func:`~mtl_keras.builders.inputs.make_inputs` finds the
``keras.Input`` it came from and counts the backbone's variables as shared.

:func:`keras_application` builds a ``keras.applications`` model by name, as recipes write it
(``backbone: {keras_applications: MobileNetV3Small, weights: null, input_shape: [64, 64, 3]}``).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

import keras

#: Global-pooling choices of ``keras.applications`` feature extractors.
POOLINGS = ("avg", "max", None)


class Backbone:
    """A backbone model and what it consumes, as a builder's ``inputs``.

    Args:
        model: a ``keras.Model`` (or layer) mapping the features of ``inputs`` to the representation the
            builder starts from; a rank > 2 output (no pooling) is flattened by Dense blocks as usual.
        inputs: what feeds the backbone, as for any builder's ``inputs``; default: the model's own input
            shape (which must then be fully known, batch axis aside).
        trainable: False freezes the backbone (no update, BatchNormalization in inference mode).
        name: the backbone's layer name inside the multi-task model.
    """

    def __init__(
        self, model: Any, inputs: Any = None, *, trainable: bool = True, name: str = "backbone"
    ) -> None:
        if not isinstance(model, keras.layers.Layer):
            raise ValueError(f"Expected `model` to be a keras.Model or layer. Received: {model!r}")
        if inputs is None:
            inputs = _input_shape(model)
        if not isinstance(trainable, bool):
            raise ValueError(f"Expected `trainable` to be a bool. Received: trainable={trainable!r}")
        self.model = model
        self.inputs = inputs
        self.trainable = trainable
        self.name = name
        self._applied = False

    def layer(self) -> Any:
        """The backbone for the next model built from this value: the model itself the first time, then a
        copy with the same weights (a second builder call, or one single-task column per task, must not
        share variables with the first)."""
        if not self._applied:
            self._applied = True
            layer = self.model
        else:
            layer = copy_model(self.model)
        layer.trainable = self.trainable
        return layer

    def __repr__(self) -> str:
        return f"Backbone({self.model.name!r}, inputs={self.inputs!r}, trainable={self.trainable})"


def backbone_layers(model: Any) -> list[Any]:
    """The backbone layers of a model built from a :class:`Backbone`: the layer named ``backbone`` of a
    multi-task model, or each single-task column's copy (``<task>__backbone``)."""
    return [layer for layer in model.layers if layer.name == "backbone" or layer.name.endswith("__backbone")]


def copy_model(model: Any) -> Any:
    """A new model of the same structure as ``model`` with a copy of its current weights (a layer that is
    not a ``keras.Model``, such as a keras-hub :class:`~mtl_keras.layers.text_encoder.TextEncoder`, is
    rebuilt from its config)."""
    if not isinstance(model, keras.Model):
        layer = type(model).from_config(model.get_config())
        layer.set_weights(model.get_weights())
        return layer
    try:
        copy = keras.models.clone_model(model)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"Cannot copy backbone {model.name!r} (needed for a second model or the single-task baselines): "
            f"{error}. Give a Functional or Sequential keras.Model."
        ) from None
    if not copy.built:
        copy.build(model.input_shape)
    copy.set_weights(model.get_weights())
    return copy


def _input_shape(model: Any) -> tuple[int, ...]:
    shape = getattr(model, "input_shape", None)
    if isinstance(shape, list):
        shape = shape[0] if len(shape) == 1 else None
    if not isinstance(shape, tuple) or len(shape) < 2 or not all(isinstance(d, int) for d in shape[1:]):
        raise ValueError(
            f"Backbone {getattr(model, 'name', model)!r} has no fully known single input shape "
            f"(input_shape={shape!r}); pass `inputs=` (a shape tuple or keras.Input)."
        )
    return tuple(shape[1:])


def keras_application(
    name: str,
    *,
    input_shape: tuple[int, ...] | list[int],
    weights: str | None = None,
    pooling: str | None = "avg",
    trainable: bool = True,
    data_shape: tuple[int, ...] | list[int] | None = None,
) -> Backbone:
    """``keras.applications.<name>`` without its classifier, as a :class:`Backbone`.

    Args:
        name: the class name, e.g. ``"MobileNetV3Small"``, ``"ResNet50"``, ``"EfficientNetB0"``.
        input_shape: ``(height, width, channels)`` of the images the data set holds.
        weights: ``"imagenet"`` (downloaded by Keras on first use), a path to a weights file, or None
            (random initialisation: tests and training from scratch).
        pooling: global pooling of the last feature map: ``"avg"``, ``"max"`` or None (the map itself).
        trainable: False freezes the backbone.
        data_shape: the shape of the images the data holds, when it is not ``input_shape``: they are resized
            to ``input_shape``'s height and width inside the model (a ``Resizing`` layer, bilinear), and a
            single channel is repeated to three when ``input_shape`` has three; other channel counts must match.

    The images go in as the data set holds them; an application's own preprocessing (scaling to its range)
    is part of the model where Keras builds it in (e.g. MobileNetV3, EfficientNet), and otherwise the data
    must already be scaled as the application expects.
    """
    available = sorted(n for n in dir(keras.applications) if n[:1].isupper())
    factory = getattr(keras.applications, str(name), None)
    if not callable(factory) or not str(name)[:1].isupper():
        close = difflib.get_close_matches(str(name), available, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"Unknown keras.applications model {name!r}.{hint} Expected one of: {', '.join(available)}."
        )
    if pooling not in POOLINGS:
        raise ValueError(f"Expected `pooling` to be one of {list(POOLINGS)}. Received: pooling={pooling!r}")
    shape = tuple(int(d) for d in input_shape)
    try:
        model = factory(include_top=False, weights=weights, input_shape=shape, pooling=pooling)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"Cannot build keras.applications.{name} for input_shape={list(shape)}: {error}"
        ) from None
    if data_shape is None or tuple(int(d) for d in data_shape) == shape:
        return Backbone(model, shape, trainable=trainable)
    source = tuple(int(d) for d in data_shape)
    if len(source) != 3 or not (source[2] == shape[2] or (source[2], shape[2]) == (1, 3)):
        raise ValueError(
            f"Cannot feed images of shape {list(source)} to keras.applications.{name} with input_shape="
            f"{list(shape)}: expected (height, width, {shape[2]}) images, or single-channel ones for 3 channels."
        )
    images = keras.Input(source, name="images")
    x = images
    if source[:2] != shape[:2]:
        x = keras.layers.Resizing(shape[0], shape[1], name="resize")(x)
    if source[2] != shape[2]:
        x = keras.layers.Concatenate(name="gray_to_rgb")([x, x, x])
    wrapped = keras.Model(images, model(x), name=f"{model.name}_on_{source[0]}x{source[1]}x{source[2]}")
    return Backbone(wrapped, source, trainable=trainable)


def stage_model(model: Any, stages: Sequence[str], *, name: str) -> Any:
    """A model with ``model``'s inputs and layers whose outputs are the outputs of its layers ``stages``.

    The layers (and so the variables) are ``model``'s own. A stage may also be a layer of a Functional model
    nested in ``model`` (a ``keras.applications`` model wrapped to resize its images, as
    :func:`keras_application` does with ``data_shape``): every stage must then lie in the same nested model.
    MTAN (:func:`~mtl_keras.builders.mtan.mtan`) attaches its attention modules to these outputs.
    """
    names = [] if isinstance(stages, str) else list(stages)
    if not names or not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
        raise ValueError(
            f"Expected `stages` to be distinct layer names of the backbone. Received: stages={stages!r}"
        )
    if not isinstance(model, keras.Model) or not hasattr(model, "_nodes_by_depth"):
        raise ValueError(f"Cannot read stages of backbone {model.name!r}: expected a Functional keras.Model.")
    own = {layer.name: layer for layer in model.layers}
    if all(n in own for n in names):
        return keras.Model(model.inputs, [own[n].output for n in names], name=name)
    for layer in model.layers:
        inner = {sub.name for sub in getattr(layer, "layers", ())}
        if isinstance(layer, keras.Model) and all(n in inner for n in names):
            calls = [
                node for nodes in model._nodes_by_depth.values() for node in nodes if node.operation is layer
            ]
            if len(calls) != 1:
                break
            stages_of_inner = stage_model(layer, names, name=f"{layer.name}_stages")
            (tensor,) = calls[0].input_tensors
            return keras.Model(model.inputs, stages_of_inner(tensor), name=name)
    every = [*own, *(sub.name for layer in model.layers for sub in getattr(layer, "layers", ()))]
    missing = [n for n in names if n not in every]
    close = {n: difflib.get_close_matches(n, every, n=1) for n in missing}
    hints = "".join(f" Did you mean {c[0]!r} for {n!r}?" for n, c in close.items() if c)
    raise ValueError(
        f"Expected `stages` to name layers of backbone {model.name!r}, all in the model itself or all in one "
        f"nested model. Received: stages={names!r}; not found: {missing or 'split across models'}.{hints}"
    )


__all__ = ["POOLINGS", "Backbone", "backbone_layers", "copy_model", "keras_application", "stage_model"]
