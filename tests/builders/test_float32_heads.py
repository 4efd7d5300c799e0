"""Under a ``mixed_float16`` policy every builder's outputs are float32: each ends in a float32 layer."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from helpers import toy_tasks

from mtl_keras import builders


@pytest.mark.parametrize("name", builders.names())
def test_every_output_is_float32_under_mixed_float16(mixed_policy: None, name: str) -> None:
    tasks = ["ctr", "ctcvr"] if name in ("esmm", "escm2", "aitm") else toy_tasks()
    options = {"architecture": "mmoe"} if name == "single_task" else {}
    model = builders.get_builder(name)(tasks, 6, **options)
    outputs = model(np.zeros((2, 6), "float32"))
    assert {k: keras.backend.standardize_dtype(v.dtype) for k, v in outputs.items()} == dict.fromkeys(
        model.task_names, "float32"
    )
    prefix = "{task}__" if name == "single_task" else ""
    for task in model.task_names:
        head = model.get_layer(prefix.format(task=task) + f"output_{task}")
        assert head.dtype_policy.name == "float32" and not head.weights
    assert {v.dtype for v in model.trainable_variables} == {"float32"}
