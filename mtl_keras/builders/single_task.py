"""Single-task baselines: one independent column per task, each the full architecture for that task alone.

This is what Δm % is measured against: every task gets the same backbone and budget as in the multi-task
model, and no variable is shared, so training the columns jointly with a summed loss is the same as training
them separately (with Adam, whose update of a variable depends only on that variable's gradient).
"""

from __future__ import annotations

from typing import Any

from mtl_keras.builders._common import Graph
from mtl_keras.builders.architectures import lookup
from mtl_keras.builders.backbones import Backbone
from mtl_keras.builders.inputs import (
    RawFeatures,
    check_not_text,
    encode_raw,
    make_inputs,
    trainable_input_layers,
)
from mtl_keras.model import MultiTaskModel
from mtl_keras.tasks import as_tasks


def single_task(
    tasks: Any,
    inputs: Any,
    *,
    architecture: str = "hard_sharing",
    name: str = "single_task",
    **options: Any,
) -> MultiTaskModel:
    """One column per task, each built by ``architecture``'s builder with ``options`` for that task alone.

    Args:
        tasks: the tasks.
        inputs: as for every builder; the raw-feature preprocessing block (if any) is shared when it has no
            trainable variables, and copied into each column when it has (embedding tables); a
            :class:`~mtl_keras.builders.backbones.Backbone` is copied into each column (same starting weights).
        architecture: the name of the multi-task architecture whose single-task version to build
            (``"hard_sharing"``, ``"mmoe"``, ``"cgc"``, ...).
        **options: that architecture's options (``trunk=``, ``num_experts=``, ...).

    The result has no shared layers, so gradient aggregators are refused by ``compile``.
    """
    column = lookup(architecture)
    task_list = as_tasks(tasks)
    backbone = inputs if isinstance(inputs, Backbone) else None
    raw = backbone.inputs if backbone is not None else inputs
    model_inputs, features = make_inputs(raw)
    # Embedding tables are trainable: each column gets its own copy of such a preprocessing block.
    own_block = isinstance(raw, RawFeatures) and bool(trainable_input_layers(features))
    if not own_block and not isinstance(raw, RawFeatures) and trainable_input_layers(features):
        raise ValueError(
            "The single-task baselines cannot copy layers applied to the inputs by hand (they would be shared "
            "by every task's column); pass the backbone as `Backbone(model, inputs)` instead, which gives "
            "each column its own copy."
        )
    outputs: dict[str, Any] = {}
    for task in task_list:
        prefix = f"{task.name}__"
        column_features = encode_raw(raw, model_inputs, prefix=prefix) if own_block else features
        if backbone is not None:
            layer = backbone.layer()
            layer.name = f"{prefix}{backbone.name}"  # type: ignore[misc]
            column_features = layer(column_features)
        check_not_text(column_features)
        graph: Graph = column.graph([task], column_features, prefix=prefix, **column.fixed, **options)
        outputs.update(graph.outputs)
    return MultiTaskModel(model_inputs, outputs, tasks=task_list, name=name)
