"""MTAN (Liu, Johns & Davison, CVPR 2019): task-specific soft attention over the stages of a shared trunk.

The trunk is either built here from ``blocks`` (like hard sharing's trunk) or a backbone model whose named
layers (``stages``) give the stage features. Each task has one
:class:`~mtl_keras.layers.task_attention.TaskAttention` module per stage; between stages a feature block
(a shared 3×3 convolution or Dense layer, the task's own BatchNormalization, ReLU, then max pooling to the
next stage's resolution) carries each task's attended features on to the next stage's module.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras

from mtl_keras.builders._common import (
    Block,
    Graph,
    apply_block,
    build_model,
    check_blocks,
    flatten,
    make_block,
    task_output,
)
from mtl_keras.builders.backbones import Backbone, stage_model
from mtl_keras.layers._checks import check_positive_int, check_positive_ints
from mtl_keras.layers.task_attention import TaskAttention
from mtl_keras.model import MultiTaskModel
from mtl_keras.option_types import PositiveInt, Rate, Units
from mtl_keras.tasks import Task

#: The trunk when neither ``blocks`` nor ``stages`` is given: two Dense blocks.
DEFAULT_BLOCKS: tuple[Block, ...] = (64, 32)


def _feature_layers(
    source: Any, target: tuple[Any, ...], *, prefix: str, index: int
) -> tuple[list[keras.layers.Layer | None], keras.layers.Layer]:
    """The feature block after stage ``index``: (its layers in order, ``None`` where each task's own
    BatchNormalization goes; the shared layer with variables).

    It maps a task's attended features (the shape of ``source``) to the shape ``target`` of the next stage's
    shared features: a shared 3×3 convolution (feature maps) or Dense layer (vectors; a map is flattened
    first) to the target's channels, the task's BatchNormalization and ReLU, then max pooling by the ratio of
    the resolutions."""
    shape = tuple(source.shape)
    name = f"{prefix}mtan_feature_{index}"
    if len(target) == 2:
        layers: list[keras.layers.Layer | None] = []
        if len(shape) > 2:
            layers.append(keras.layers.Flatten(name=f"{name}_flatten"))
        transform: keras.layers.Layer = keras.layers.Dense(target[-1], use_bias=False, name=name)
    elif len(target) == 4 and len(shape) == 4:
        layers = []
        transform = keras.layers.Conv2D(target[-1], 3, padding="same", use_bias=False, name=name)
    else:
        raise ValueError(
            "Expected every MTAN stage to output feature maps (batch, height, width, channels) or vectors "
            f"(batch, units), a map never following a vector. Received stage {index} of shape {shape} "
            f"followed by shape {target}."
        )
    layers += [transform, None, keras.layers.Activation("relu", name=f"{name}_relu")]
    if len(target) == 4:
        sizes = shape[1:3]
        ratio = [s // t if s and t and s % t == 0 else None for s, t in zip(sizes, target[1:3], strict=True)]
        if None in ratio:
            raise ValueError(
                f"Expected the resolution of MTAN stage {index} {tuple(sizes)} to be a whole multiple of the "
                f"next stage's {tuple(target[1:3])} (the attended features are max-pooled to it)."
            )
        if ratio != [1, 1]:
            layers.append(keras.layers.MaxPooling2D(tuple(ratio), name=f"{name}_pool"))
    return layers, transform


def _stages_from_backbone(features: Any, stages: Sequence[str]) -> list[Any]:
    """The stage outputs of the backbone model that computed ``features`` (a single-task column's copy),
    on that model's own input tensor."""
    history = getattr(features, "_keras_history", None)
    backbone = history.operation if history is not None else None
    if history is None or not isinstance(backbone, keras.Model):
        raise ValueError(
            "`stages` names layers of a backbone: expected `inputs` to be a Backbone. "
            f"Received features {features!r}."
        )
    (tensor,) = backbone._inbound_nodes[history.node_index].input_tensors
    model = stage_model(backbone, stages, name=backbone.name)
    return list(model(tensor))


def graph(
    tasks: list[Task],
    features: Any,
    *,
    prefix: str = "",
    blocks: Sequence[Block] | None = None,
    stages: Sequence[str] | None = None,
    mask_units: PositiveInt | None = None,
    tower_units: Units = (16,),
    activation: str = "relu",
    dropout: Rate = 0.0,
) -> Graph:
    tower_units = check_positive_ints(tower_units, "tower_units")
    if mask_units is not None:
        check_positive_int(mask_units, "mask_units")
    shared: list[keras.layers.Layer] = []
    if stages is not None:
        if blocks is not None:
            raise ValueError(
                "Expected either `blocks` (a trunk built here) or `stages` (layers of a backbone), not both. "
                f"Received: blocks={blocks!r}, stages={stages!r}"
            )
        outputs_by_stage = (
            list(features) if isinstance(features, (list, tuple)) else _stages_from_backbone(features, stages)
        )
    else:
        block_list = check_blocks(DEFAULT_BLOCKS if blocks is None else blocks, "blocks", non_empty=True)
        outputs_by_stage = []
        x = features
        for j, block in enumerate(block_list):
            layer = make_block(block, activation=activation, name=f"{prefix}shared_{j}")
            x = apply_block(layer, x, flatten_name=f"{prefix}shared_flatten_{j}")
            outputs_by_stage.append(x)
            shared.append(layer)
    num = len(outputs_by_stage)
    feature_blocks = []
    for j in range(num):
        target = tuple(outputs_by_stage[min(j + 1, num - 1)].shape)
        layers, transform = _feature_layers(outputs_by_stage[j], target, prefix=prefix, index=j)
        feature_blocks.append(layers)
        shared.append(transform)
    outputs = {}
    for task in tasks:
        previous = None
        for j, stage in enumerate(outputs_by_stage):
            attention = TaskAttention(mask_units, name=f"{prefix}{task.name}_attention_{j}")
            h = attention(stage if previous is None else [stage, previous])
            for layer in feature_blocks[j]:
                if layer is None:
                    # Per task: the tasks' attended features differ in distribution, and one shared
                    # normalisation's moving statistics (a mix of them) would fit none at inference.
                    layer = keras.layers.BatchNormalization(
                        synchronized=True, name=f"{prefix}{task.name}_mtan_feature_{j}_norm"
                    )
                h = layer(h)
            previous = h
        h = flatten(previous, f"{prefix}{task.name}_tower_flatten")
        outputs[task.name] = task_output(task, h, tower_units, dropout=dropout, prefix=prefix)
    # The towers read each task's own attended features: no single tensor carries every shared gradient.
    return Graph(outputs=outputs, shared_layers=shared, representation=None)


def mtan(
    tasks: Any,
    inputs: Any,
    *,
    blocks: Sequence[Block] | None = None,
    stages: Sequence[str] | None = None,
    mask_units: PositiveInt | None = None,
    tower_units: Units = (16,),
    activation: str = "relu",
    dropout: Rate = 0.0,
    balancer: Any = None,
    name: str = "mtan",
) -> MultiTaskModel:
    """Multi-Task Attention Network: a shared trunk, and per task one soft attention mask per trunk stage.

    At stage ``j`` task ``t``'s :class:`~mtl_keras.layers.task_attention.TaskAttention` module reads the
    shared features ``s_j`` and (after the first stage) the task's features from stage ``j - 1``, and returns
    ``a_j ⊙ s_j``; a feature block ``f_j`` (a shared 3×3 Conv2D or Dense layer to the next stage's channels,
    the task's own BatchNormalization, ReLU, max pooling to the next stage's resolution) takes that to stage
    ``j + 1``. The
    last stage's ``f`` keeps its shape, and the task's tower reads its output, flattened. See
    docs/methods.md, "MTAN".

    Args:
        tasks: the tasks (``Task`` objects, names, or config dicts).
        inputs: an input size, a shape, :class:`~mtl_keras.builders.inputs.RawFeatures`, keras inputs, or a
            :class:`~mtl_keras.builders.backbones.Backbone` (with ``stages``, or as the start of ``blocks``).
        blocks: the trunk blocks, each one stage (ints: Dense sizes; layer factories such as
            ``lambda: keras.layers.Conv2D(16, 3, padding="same", activation="relu")``, or
            ``{LayerClass: {arguments}}`` mappings); default ``(64, 32)``. Feature-map stages may shrink
            by whole factors (a block with strides or pooling); a vector stage may follow a map one.
        stages: instead of ``blocks``: names of layers of the backbone given as ``inputs`` (e.g.
            ``["expanded_conv_2_add", "expanded_conv_5_add"]`` of MobileNetV3Small) whose outputs are the
            stages; the backbone's later layers are not used.
        mask_units: the hidden width of each attention module; default: the stage's channels.
        tower_units: hidden sizes of each task's tower.
        activation: activation of Dense blocks.
        dropout: dropout in the towers.
        balancer: default balancer used by ``compile``.
        name: model name.

    Shared layers: the trunk blocks (or the backbone) and the convolution or Dense layer of every ``f_j``
    (applied to every task's features, so every task's loss reaches it); the attention modules, the feature
    blocks' normalisations and the towers are task-specific. There is no shared representation (only ``balancer_level="param"``): each tower reads its
    own task's tensor.
    """
    if stages is not None and not isinstance(inputs, Backbone):
        raise ValueError(
            "`stages` names layers of a backbone: expected `inputs` to be a Backbone. "
            f"Received: inputs={inputs!r}"
        )
    if stages is not None and isinstance(inputs, Backbone):
        if blocks is not None:
            raise ValueError(
                "Expected either `blocks` (a trunk built here) or `stages` (layers of a backbone), not both. "
                f"Received: blocks={blocks!r}, stages={stages!r}"
            )
        layer = inputs.layer()
        inputs = Backbone(
            stage_model(layer, stages, name=layer.name),
            inputs.inputs,
            trainable=inputs.trainable,
            name=inputs.name,
        )
    return build_model(
        graph,
        tasks,
        inputs,
        name=name,
        balancer=balancer,
        blocks=blocks,
        stages=stages,
        mask_units=mask_units,
        tower_units=tower_units,
        activation=activation,
        dropout=dropout,
    )
