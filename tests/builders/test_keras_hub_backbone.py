"""A keras-hub text encoder with its string preprocessor as the shared trunk: built offline from a tiny
BERT configuration, it trains through hard sharing and MMoE on raw strings, every backbone variable is
shared (checked against the tasks' own gradients), PCGrad's parameter-level step runs, the .keras file and
the single-task copies rebuild it, and bad configurations are errors naming the thing."""

import sys

import numpy as np
import pytest

keras_hub = pytest.importorskip("keras_hub")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from helpers import check_sharing  # noqa: E402

from mtl_keras import builders  # noqa: E402
from mtl_keras.builders import keras_hub_backbone  # noqa: E402
from mtl_keras.builders.inputs import RawFeatures  # noqa: E402
from mtl_keras.data import synthetic_text  # noqa: E402
from mtl_keras.data.synthetic_text import vocabulary  # noqa: E402

TINY = {
    "class": "BertBackbone",
    "config": {
        "num_layers": 1,
        "num_heads": 2,
        "hidden_dim": 16,
        "intermediate_dim": 32,
        "max_sequence_length": 16,
        "dropout": 0.0,
    },
}


def preprocessor(**tokenizer):
    return {
        "class": "BertTextClassifierPreprocessor",
        "sequence_length": 16,
        "tokenizer": {"class": "BertTokenizer", "vocabulary": vocabulary(), **tokenizer},
    }


@pytest.fixture(scope="module")
def data():
    dataset = synthetic_text(n=128, n_validation=8, n_test=8, seed=3)
    x = {"text": tf.constant([[s] for s in dataset.train.x["text"]])}
    return dataset, x, dataset.train.y


def _ids(variables):
    return {id(v) for v in variables}


@pytest.mark.parametrize(
    ("architecture", "options"),
    [
        ("hard_sharing", {"trunk": (16,), "tower_units": (8,)}),
        ("mmoe", {"num_experts": 2, "expert_units": (16,), "tower_units": (8,)}),
    ],
)
def test_tiny_bert_trains_on_strings_and_every_backbone_variable_is_shared(architecture, options, data):
    dataset, x, y = data
    keras.utils.set_random_seed(0)
    backbone = keras_hub_backbone(TINY, preprocessor(), output="sequence_output", inputs=dataset.input_spec())
    model = builders.get_builder(architecture)(dataset.tasks, backbone, **options)
    encoder = model.get_layer("backbone")
    # 1 layer BERT up to its sequence output: embeddings (token, position, segment, layer norm) and one
    # transformer block; the pooler (2 variables), which no loss reaches, is left out
    full = keras_hub.models.BertBackbone(vocabulary_size=len(vocabulary()), **TINY["config"])
    assert len(encoder.trainable_variables) == len(full.trainable_variables) - 2 > 10
    assert _ids(encoder.trainable_variables) <= _ids(model.shared_variables)
    assert model.shared_layer_names[0] == "backbone"
    check_sharing(model, x, y)  # the tasks' own gradients: exactly the declared shared variables
    model.compile(keras.optimizers.Adam(0.01))
    before = model.evaluate(x, y, verbose=0, return_dict=True)
    model.fit(x, y, epochs=6, batch_size=32, verbose=0)
    after = model.evaluate(x, y, verbose=0, return_dict=True)
    for task in model.task_names:
        assert after[f"{task}_loss"] < before[f"{task}_loss"], (task, before, after)


def test_pcgrad_parameter_level_step_updates_the_encoder(data):
    dataset, x, y = data
    keras.utils.set_random_seed(0)
    backbone = keras_hub_backbone(TINY, preprocessor(), inputs=dataset.input_spec())
    model = builders.hard_sharing(dataset.tasks, backbone, trunk=(16,), tower_units=(8,))
    # eager: tracing the per-task gradients of ~30 variables costs more than the two steps themselves
    model.compile(keras.optimizers.Adam(0.01), balancer="pcgrad", balancer_level="param", run_eagerly=True)
    encoder = model.get_layer("backbone")
    start = [np.array(v) for v in encoder.trainable_variables]
    history = model.fit(x, y, epochs=1, batch_size=64, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    moved = [not np.allclose(a, np.array(v)) for a, v in zip(start, encoder.trainable_variables, strict=True)]
    # every variable a gradient reaches moves (the [MASK]-free token table rows aside: the table moves)
    assert sum(moved) >= len(moved) - 1, moved


def test_a_frozen_encoder_keeps_its_weights_and_pcgrad_trains_the_trunk(data):
    dataset, x, y = data
    keras.utils.set_random_seed(0)
    backbone = keras_hub_backbone(TINY, preprocessor(), inputs=dataset.input_spec(), trainable=False)
    model = builders.hard_sharing(dataset.tasks, backbone, trunk=(16,), tower_units=(8,))
    encoder = model.get_layer("backbone")
    assert not encoder.trainable_variables and encoder.weights
    model.compile(keras.optimizers.Adam(0.01), balancer="pcgrad", run_eagerly=True)
    start = [np.array(w) for w in encoder.weights]
    trunk = np.array(model.get_layer("shared_0").kernel)
    model.fit(x, y, epochs=1, batch_size=64, verbose=0)
    for a, w in zip(start, encoder.weights, strict=True):
        np.testing.assert_array_equal(a, np.array(w))
    assert not np.allclose(trunk, np.array(model.get_layer("shared_0").kernel))


def test_keras_file_and_single_task_copies_rebuild_the_encoder(data, tmp_path):
    dataset, x, _ = data
    keras.utils.set_random_seed(0)
    backbone = keras_hub_backbone(TINY, preprocessor(), output="pooled_output", inputs=dataset.input_spec())
    model = builders.hard_sharing(dataset.tasks, backbone, trunk=(8,))
    path = tmp_path / "text.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    first = {k: v[:16] for k, v in x.items()}
    a, b = model.predict(first, verbose=0), loaded.predict(first, verbose=0)
    assert max(float(np.max(np.abs(a[k] - b[k]))) for k in a) <= 1e-6
    # The single-task baselines: one copy of the encoder per task, same start, own variables.
    baseline = builders.single_task(dataset.tasks, backbone, trunk=(8,))
    copies = [baseline.get_layer(f"{t}__backbone") for t in dataset.task_names]
    original = model.get_layer("backbone")
    for copy in copies:
        assert not _ids(copy.weights) & _ids(original.weights)
        for w, v in zip(copy.get_weights(), original.get_weights(), strict=True):
            np.testing.assert_array_equal(w, v)


def test_a_vocabulary_file_and_the_default_string_input(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(vocabulary()) + "\n")
    backbone = keras_hub_backbone(TINY, preprocessor(vocabulary=str(path)))
    assert backbone.model.preprocessor_spec["tokenizer"]["vocabulary"] == vocabulary()
    tokens = backbone.model.backbone.get_layer("token_embedding").embeddings
    assert tokens.shape == (len(vocabulary()), 16)  # the vocabulary size from the tokenizer
    model = builders.hard_sharing(["a", "b"], backbone, trunk=(8,))
    out = model.predict(tf.constant([["the game was great"], ["not good"]]), verbose=0)
    assert out["a"].shape == (2, 1) and np.all(np.isfinite(out["a"]))


def test_mean_pooling_ignores_the_padding():
    encoder = keras_hub_backbone(TINY, preprocessor(), output="sequence_output").model
    text = tf.constant(["the game was great"])
    features = encoder.preprocessor(text)
    sequence = encoder.backbone(features).numpy()[0]
    mask = features["padding_mask"].numpy()[0]
    expected = sequence[mask].mean(axis=0)  # [CLS] + 4 words + [SEP]: 6 positions
    assert mask.sum() == 6
    np.testing.assert_allclose(encoder(text).numpy()[0], expected, rtol=1e-5, atol=1e-6)
    first = keras_hub_backbone(TINY, preprocessor(), output="sequence_output", pooling="first").model
    first.set_weights(encoder.get_weights())
    np.testing.assert_allclose(first(text).numpy()[0], sequence[0], rtol=1e-5, atol=1e-6)


def test_bad_configurations_name_the_thing_and_the_expected_values():
    with pytest.raises(ValueError, match=r"Unknown keras_hub backbone class 'BertBackbon'.*'BertBackbone'"):
        keras_hub_backbone({**TINY, "class": "BertBackbon"}, preprocessor())
    with pytest.raises(
        ValueError, match=r"Unknown keras_hub tokenizer class 'BertTokeniser'.*'BertTokenizer'"
    ):
        keras_hub_backbone(TINY, {**preprocessor(), "tokenizer": {"class": "BertTokeniser"}})
    with pytest.raises(
        ValueError, match=r"Unknown keras_hub preprocessor class 'BertPreprocesor'.*'BertPreprocessor'"
    ):
        keras_hub_backbone(TINY, {**preprocessor(), "class": "BertPreprocesor"})
    with pytest.raises(ValueError, match=r"no output 'pooled'; expected `output` to be one of "):
        keras_hub_backbone(TINY, preprocessor(), output="pooled")
    with pytest.raises(
        ValueError, match=r"Unknown argument 'num_layer' of backbone BertBackbone.*'num_layers'"
    ):
        keras_hub_backbone({**TINY, "config": {**TINY["config"], "num_layer": 1}}, preprocessor())
    with pytest.raises(ValueError, match=r"needs a `preprocessor`"):
        keras_hub_backbone(TINY)
    with pytest.raises(ValueError, match=r"Expected `pooling` to be one of \['mean', 'first'\]"):
        keras_hub_backbone(TINY, preprocessor(), pooling="max")
    with pytest.raises(ValueError, match=r"list of tokens or a file. Received: 'missing.txt'"):
        keras_hub_backbone(TINY, preprocessor(vocabulary="missing.txt"))
    # A preset needs network on first use; an unknown one is an error naming it (no download tried).
    with pytest.raises(ValueError, match=r"Cannot load keras_hub preset 'no_such_preset'"):
        keras_hub_backbone("no_such_preset")


def test_a_text_column_goes_to_the_backbone_on_its_own():
    raw = RawFeatures({"text": "text", "age": "numeric"}, {"text": np.array(["a b", "c"]), "age": [1.0, 2.0]})
    with pytest.raises(ValueError, match=r"'text' is a text column.*the other columns to be 'skip'"):
        builders.hard_sharing(["a"], keras_hub_backbone(TINY, preprocessor(), inputs=raw))


def test_a_text_column_without_a_text_backbone_is_refused():
    raw = RawFeatures({"text": "text"}, {"text": np.array(["a b", "c"])})
    for build in (builders.hard_sharing, builders.single_task):
        with pytest.raises(ValueError, match=r"string features: a `text` column needs a text backbone"):
            build(["a"], raw)


def test_a_csv_text_column_streams_raw_strings_into_the_model(tmp_path):
    from mtl_keras.data import from_csv

    dataset = synthetic_text(n=48, n_validation=8, n_test=8)
    rows = ["text,sentiment,topic"] + [
        f"{t},{int(s)},{int(c)}"
        for t, s, c in zip(
            dataset.train.x["text"], dataset.train.y["sentiment"], dataset.train.y["topic"], strict=True
        )
    ]
    path = tmp_path / "sentences.csv"
    path.write_text("\n".join(rows) + "\n")
    streamed = from_csv(
        str(path),
        tasks={"sentiment": "binary", "topic": {"kind": "multiclass", "num_classes": 3}},
        features={"text": "text"},
        split={"validation": 0.2, "test": 0.2},
    )
    spec = streamed.input_spec()
    assert spec.columns["text"].kind == "text"
    x, _ = next(iter(streamed.batches("train", 4)))
    assert x["text"].dtype == tf.string and x["text"].shape == (4, 1)
    model = builders.hard_sharing(
        streamed.tasks, keras_hub_backbone(TINY, preprocessor(), inputs=spec), trunk=(8,)
    )
    assert model.predict(x, verbose=0)["topic"].shape == (4, 3)


def test_recipe_keras_hub_section():
    from mtl_keras.experiments.preparation import builder_inputs, load_data
    from mtl_keras.recipes import KerasHubSpec, RecipeError, validate

    tiny = {
        "name": "tiny",
        "data": {"name": "synthetic_text", "n": 32, "n_validation": 8, "n_test": 8},
        "architecture": {"name": "hard_sharing", "trunk": [8]},
    }
    hub = {"keras_hub": TINY, "preprocessor": preprocessor(), "output": "sequence_output"}
    recipe = validate({**tiny, "backbone": hub})
    assert isinstance(recipe.backbone, KerasHubSpec)
    backbone = builder_inputs(recipe, load_data(recipe))
    assert backbone.model.output_key == "sequence_output"
    with pytest.raises(RecipeError, match=r"^backbone\.pooling: "):
        validate({**tiny, "backbone": {**hub, "pooling": "max"}})
    with pytest.raises(RecipeError, match=r"^backbone: expected one of `keras_applications` and `keras_hub`"):
        validate({**tiny, "backbone": {**hub, "keras_applications": "MobileNetV3Small"}})
    recipe = validate({**tiny, "backbone": {**hub, "output": "pooled"}})
    with pytest.raises(RecipeError, match=r"^backbone: Backbone BertBackbone has no output 'pooled'"):
        builder_inputs(recipe, load_data(recipe))
    sincos = {**tiny, "data": {"name": "sincos", "n": 32, "n_validation": 8, "n_test": 8}}
    with pytest.raises(
        RecipeError, match=r"^backbone\.keras_hub: a keras_hub text backbone takes a text column"
    ):
        builder_inputs(validate({**sincos, "backbone": hub}), load_data(validate(sincos)))


def test_missing_keras_hub_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "keras_hub", None)
    with pytest.raises(ImportError, match=r"pip install 'mtl-keras\[hub\]'"):
        keras_hub_backbone(TINY, preprocessor())
