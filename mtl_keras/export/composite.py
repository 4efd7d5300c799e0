"""One model serving each task from the model that is better for it: the multi-task model or the task's
single-task network.

:func:`composite_model` takes models with the same named inputs and dict outputs and returns one
Functional model whose output ``task`` comes from ``models[serve_from[task]]``. Each task's output is
computed by a sub-model holding only what that task needs (a Functional sub-model over its layers, as the ``predict_<task>`` signatures use),
so the composite's ``predict_<task>`` signature carries the multi-task model's shared layers and head
for a task served by it, and only the task's own network for a task served by its single-task model;
``serving_default`` carries both. Export it with :func:`mtl_keras.export.export_for_serving` like any model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras


def _input_signature(model: keras.Model) -> dict[str, tuple[tuple[int | None, ...], str]]:
    structure = model._inputs_struct
    if not isinstance(structure, dict):
        tensors = keras.tree.flatten(structure)
        structure = {t.name: t for t in tensors}
    return {key: (tuple(t.shape[1:]), str(t.dtype)) for key, t in structure.items()}


def composite_model(
    models: Mapping[str, keras.Model], serve_from: Mapping[str, str], *, name: str | None = None
) -> keras.Model:
    """A Functional model over ``models``' layers with output ``task`` from ``models[serve_from[task]]``.

    Args:
        models: ``{source name: model}``, e.g. ``{"multi_task": mt, "single_task": st}``; every model has
            the same dict of named inputs (names, shapes and dtypes) and dict outputs keyed by task name.
        serve_from: ``{task: source name}`` for every task, in output order.
        name: the composite's name (default: the first model's).
    """
    if not models:
        raise ValueError("Expected at least one model in `models`. Received none.")
    first_name, first = next(iter(models.items()))
    inputs = _input_signature(first)
    for source, model in models.items():
        if not isinstance(model._outputs_struct, dict):
            raise ValueError(f"Expected model {source!r} to have dict outputs keyed by task name.")
        if _input_signature(model) != inputs:
            raise ValueError(
                f"Expected every model to take the inputs of {first_name!r} {inputs}. Received for {source!r}: "
                f"{_input_signature(model)}"
            )
    for task, source in serve_from.items():
        if source not in models:
            raise ValueError(
                f"Expected the source of task {task!r} to be one of {list(models)}. Received: {source!r}"
            )
        if task not in models[source]._outputs_struct:
            raise ValueError(
                f"Model {source!r} has no output {task!r}; its outputs are {list(models[source]._outputs_struct)}."
            )
    new_inputs: Any
    if isinstance(first._inputs_struct, dict):
        new_inputs = {
            key: keras.Input(shape=shape, dtype=dtype, name=first._inputs_struct[key].name)
            for key, (shape, dtype) in inputs.items()
        }
    else:
        tensors = [keras.Input(shape=shape, dtype=dtype, name=key) for key, (shape, dtype) in inputs.items()]
        new_inputs = tensors[0] if len(tensors) == 1 else tensors
    outputs = {}
    for task, source in serve_from.items():
        model = models[source]
        # Only what this task needs: for the multi-task model its shared layers and its head.
        sub_model = keras.Model(model._inputs_struct, model._outputs_struct[task], name=f"{source}__{task}")
        outputs[task] = sub_model(new_inputs)
    return keras.Model(new_inputs, outputs, name=name or first.name)


__all__ = ["composite_model"]
