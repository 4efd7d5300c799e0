"""The shared layers derived from a Functional graph, on graphs built by hand, and the builders' check."""

from __future__ import annotations

from typing import Any

import keras
import pytest
from helpers import toy_tasks

from mtl_keras import builders
from mtl_keras.builders._common import Graph, build_model, task_output
from mtl_keras.builders.sharing import check_shared_layers, derive_shared_layers, reaching_outputs
from mtl_keras.layers.soft_sharing import SoftSharedDense


def _hand_built() -> tuple[dict[str, Any], dict[str, keras.layers.Layer]]:
    """x → trunk → {a: head_a, b: head_b}; x → private → head_c; x → everywhere → {a, b, c}."""
    x = keras.Input(shape=(4,))
    layers = {
        "trunk": keras.layers.Dense(3, name="trunk"),
        "private": keras.layers.Dense(3, name="private"),
        "everywhere": keras.layers.Dense(3, name="everywhere"),
        "head_a": keras.layers.Dense(1, name="head_a"),
        "head_b": keras.layers.Dense(1, name="head_b"),
        "head_c": keras.layers.Dense(1, name="head_c"),
    }
    trunk = layers["trunk"](x)
    everywhere = layers["everywhere"](x)
    joined = [keras.layers.Concatenate(name=f"join_{t}") for t in "abc"]
    outputs = {
        "a": layers["head_a"](joined[0]([trunk, everywhere])),
        "b": layers["head_b"](joined[1]([trunk, everywhere])),
        "c": layers["head_c"](joined[2]([layers["private"](x), everywhere])),
    }
    return outputs, layers


def _names(layers: list[keras.layers.Layer]) -> list[str]:
    return sorted(layer.name for layer in layers)


def test_two_heads_sharing_a_dense_one_private_dense_one_layer_used_by_three_outputs() -> None:
    outputs, _ = _hand_built()
    assert _names(derive_shared_layers(outputs)) == ["everywhere", "trunk"]
    reached = {layer.name: columns for layer, columns in reaching_outputs(outputs).items()}
    # Layers without trainable variables (the inputs, the Concatenates) are not listed.
    assert reached == {
        "trunk": {None: {"a", "b"}},
        "everywhere": {None: {"a", "b", "c"}},
        "private": {None: {"c"}},
        "head_a": {None: {"a"}},
        "head_b": {None: {"b"}},
        "head_c": {None: {"c"}},
    }


def test_a_layer_called_once_per_output_is_shared() -> None:
    x = keras.Input(shape=(4,))
    dense = keras.layers.Dense(2, name="called_thrice")
    outputs = {t: keras.layers.Dense(1, name=f"head_{t}")(dense(x)) for t in "abc"}
    assert _names(derive_shared_layers(outputs)) == ["called_thrice"]


def test_an_output_without_a_loss_shares_nothing() -> None:
    outputs, _ = _hand_built()
    assert _names(derive_shared_layers(outputs, loss_free=("b",))) == ["everywhere"]


def test_a_columnwise_layer_is_shared_only_where_two_outputs_reach_one_column() -> None:
    x = keras.Input(shape=(4,))
    soft = SoftSharedDense(3, 3, name="soft")
    columns = soft(x)
    outputs = {t: keras.layers.Dense(1, name=f"head_{t}")(h) for t, h in zip("abc", columns, strict=True)}
    assert _names(derive_shared_layers(outputs)) == ["soft"]  # walked as one layer: every output reaches it
    assert derive_shared_layers(outputs, columnwise=[soft]) == []
    reached = reaching_outputs(outputs, columnwise=[soft])
    assert reached[soft] == {0: {"a"}, 1: {"b"}, 2: {"c"}}
    both = {"a": outputs["a"], "b": keras.layers.Dense(1, name="head_b2")(columns[0])}
    assert _names(derive_shared_layers(both, columnwise=[soft])) == ["soft"]


def test_the_check_names_a_wrongly_declared_layer() -> None:
    outputs, layers = _hand_built()
    check_shared_layers([layers["trunk"], layers["everywhere"]], outputs)
    with pytest.raises(ValueError, match=r"Layer 'private' is declared shared, but .* are \['c'\]"):
        check_shared_layers([layers["trunk"], layers["everywhere"], layers["private"]], outputs)
    with pytest.raises(
        ValueError, match=r"Layer 'everywhere' is reached by the task outputs \['a', 'b', 'c'\]"
    ):
        check_shared_layers([layers["trunk"]], outputs)
    # With one loss-carrying output nothing is reachable from two: the record is left as it is.
    check_shared_layers([layers["trunk"]], outputs, loss_free=("b", "c"))


def test_build_model_refuses_a_graph_whose_record_is_wrong() -> None:
    def graph(tasks: list[Any], features: Any, *, prefix: str = "") -> Graph:
        trunk = keras.layers.Dense(4, name=f"{prefix}trunk")
        extra = keras.layers.Dense(4, name=f"{prefix}extra")
        h = extra(trunk(features))
        outputs = {task.name: task_output(task, h, (), prefix=prefix) for task in tasks}
        return Graph(outputs=outputs, shared_layers=[trunk])

    with pytest.raises(ValueError, match="Layer 'extra' is reached by the task outputs"):
        build_model(graph, toy_tasks(), 6, name="wrong")


def test_every_head_ends_in_a_float32_layer() -> None:
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        x = keras.Input(shape=(6,))
        h = keras.layers.Dense(4)(x)
        out = task_output(toy_tasks()[0], h, (3,), prefix="p_")
    finally:
        keras.mixed_precision.set_global_policy("float32")
    layer = out._keras_history.operation
    assert layer.name == "p_output_a" and layer.dtype_policy.name == "float32" and not layer.weights
    assert keras.backend.standardize_dtype(out.dtype) == "float32"


def test_a_frozen_block_may_be_declared_shared() -> None:
    def frozen() -> keras.layers.Layer:
        return keras.layers.Dense(4, trainable=False)

    model = builders.hard_sharing(toy_tasks(), 6, trunk=[frozen, 4], tower_units=())
    assert model.shared_layer_names == ["shared_0", "shared_1"]
    assert model.get_layer("shared_0").trainable_variables == []
