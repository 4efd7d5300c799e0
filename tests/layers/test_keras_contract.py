"""Every Keras layer of the package passes Keras 3's own layer harness, ``TestCase.run_layer_test``.

The harness (keras/src/testing/test_case.py) checks, per layer: ``get_config`` → ``from_config`` and
``serialize`` → ``deserialize`` give the same config and attributes; ``build`` on the input shape creates
the expected numbers of weights, non-trainable variables and seed generators; a symbolic call gives the
expected output shapes; an eager call the expected number of ``add_loss`` losses; a model around the layer
trains one step; and with ``dtype="mixed_float16"`` every output has the dtype ``compute_output_spec``
promises (the compute dtype) while every float weight stays float32.

``run_layer_test`` is a method of an absl/unittest ``TestCase``. Here one instance of a subclass is made per
test and its ``setUp`` / ``doCleanups`` are run by a pytest fixture, so the layers are ordinary pytest
parameters. ``setUp`` calls ``keras.backend.clear_session()``, which replaces Keras's global state (dtype
policy, global seed generator, layer-name counters; it also turns Keras's traceback filtering off), and the harness draws unseeded random inputs from
Python's ``random``: the fixture puts all of it back, so nothing leaks into the tests that run after.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import pkgutil
import random
from collections.abc import Iterator
from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras.src import testing as keras_testing
from keras.src.backend.common import global_state

from mtl_keras.layers.calibration import IsotonicCalibration, TemperatureScaling
from mtl_keras.layers.cross_stitch import CrossStitch
from mtl_keras.layers.dselect_k import DSelectKGate
from mtl_keras.layers.fused_towers import FusedTowers
from mtl_keras.layers.imputation import ImputeMissing, MissingIndicator
from mtl_keras.layers.information_transfer import AdaptiveInformationTransfer, BehaviouralExpectation
from mtl_keras.layers.mixture_of_experts import ConcatExperts, Experts, Gate, GatedMixture
from mtl_keras.layers.orthogonality import OrthogonalityPenalty
from mtl_keras.layers.periodic import PeriodicEmbedding
from mtl_keras.layers.piecewise_linear import PiecewiseLinearEncoding
from mtl_keras.layers.sluice import LayerStitch
from mtl_keras.layers.soft_sharing import SoftSharedDense
from mtl_keras.layers.task_attention import TaskAttention
from mtl_keras.layers.text_encoder import TextEncoder
from mtl_keras.layers.tokens import MaskedMean, SplitTokens
from mtl_keras.layers.towers import Tower
from mtl_keras.model import BalancerState

# Keras's own harness fits on a generator (and says it ignores `shuffle`) and fits stateless layers too.
pytestmark = [
    pytest.mark.filterwarnings("ignore:`shuffle=True` was passed, but will be ignored:UserWarning"),
    pytest.mark.filterwarnings("ignore:The model does not have any trainable weights:UserWarning"),
]


class _KerasLayerHarness(keras_testing.TestCase):
    """Gives access to Keras's assertions; not collected as a unittest case of its own."""

    __test__ = False

    def runTest(self) -> None:  # the default method a unittest TestCase instance needs
        pass


@contextlib.contextmanager
def keras_harness() -> Iterator[_KerasLayerHarness]:
    """A set-up ``keras.src.testing.TestCase``; on exit Keras's global state and the random states are restored."""
    saved_keras = (global_state.GLOBAL_STATE_TRACKER, global_state.GLOBAL_SETTINGS_TRACKER)
    saved_python, saved_numpy = random.getstate(), np.random.get_state()
    case = _KerasLayerHarness()
    case.setUp()
    try:
        yield case
    finally:
        case.doCleanups()
        global_state.GLOBAL_STATE_TRACKER, global_state.GLOBAL_SETTINGS_TRACKER = saved_keras
        random.setstate(saved_python)
        np.random.set_state(saved_numpy)


@pytest.fixture
def harness() -> Iterator[_KerasLayerHarness]:
    with keras_harness() as case:
        yield case


@dataclasses.dataclass(frozen=True)
class Case:
    """One ``run_layer_test`` call: the layer, realistic init kwargs and input shapes, what to expect."""

    id: str
    layer_cls: type[keras.layers.Layer]
    init_kwargs: dict[str, Any]
    input_shape: Any = None
    expected_output_shape: Any = None
    trainable: int = 0
    non_trainable_weights: int = 0
    non_trainable_variables: int = 0
    non_trainable_weights: int = 0
    seed_generators: int = 0
    losses: int = 0
    built_after_instantiation: bool = False

    def kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "init_kwargs": self.init_kwargs,
            "expected_num_trainable_weights": self.trainable,
            "expected_num_non_trainable_weights": self.non_trainable_weights,
            "expected_num_non_trainable_variables": self.non_trainable_variables,
            "expected_num_seed_generators": self.seed_generators,
        }
        if self.input_shape is not None:
            kwargs.update(
                input_shape=self.input_shape,
                expected_output_shape=self.expected_output_shape,
                expected_num_losses=self.losses,
                assert_built_after_instantiation=self.built_after_instantiation,
                run_training_check=not self.list_output,
            )
        return kwargs

    @property
    def list_output(self) -> bool:
        """The harness's training check feeds the outputs back through ``tf.data``, which reads a Python list
        as one tensor to stack, not as a structure; a list-output layer gets the same check below instead."""
        return isinstance(self.expected_output_shape, list)


CASES = [
    # A tower with hidden layers and dropout: 3 Dense (kernel + bias each), 2 Dropout seed generators (one
    # non-trainable state variable each).
    Case(
        "tower",
        Tower,
        {"units": [8, 4], "output_units": 3, "output_activation": "softmax", "dropout": 0.1},
        (4, 6),
        (4, 3),
        trainable=6,
        non_trainable_variables=2,
        seed_generators=2,
    ),
    Case("tower_output_only", Tower, {"output_units": 1, "output_activation": "sigmoid"}, (4, 6), (4, 1), 2),
    # Three towers on one input, batched: a kernel and a bias per depth, 2 Dropout seed generators.
    Case(
        "fused_towers",
        FusedTowers,
        {"num_towers": 3, "units": [8, 4], "output_units": 2, "dropout": 0.1},
        (4, 6),
        [(4, 2)] * 3,
        trainable=6,
        non_trainable_variables=2,
        seed_generators=2,
    ),
    # Two output-only towers, each on its own input.
    Case(
        "fused_towers_list_input",
        FusedTowers,
        {"num_towers": 2, "output_units": 1, "output_activation": "sigmoid"},
        ((4, 6),) * 2,
        [(4, 1)] * 2,
        trainable=2,
    ),
    # Two depths of 3 batched experts: a kernel and a bias per depth.
    Case("experts", Experts, {"num_experts": 3, "units": [8, 4]}, (4, 6), (4, 3, 4), trainable=4),
    Case("gate", Gate, {"num_experts": 3}, (4, 6), (4, 3), trainable=2),
    # Per-example DSelect-k: two Dense maps (selector logits, selector weights); the entropy is one loss.
    Case(
        "dselect_k",
        DSelectKGate,
        {"num_experts": 5, "k": 2, "gamma": 1.0, "entropy_weight": 0.1},
        (4, 6),
        (4, 5),
        trainable=4,
        non_trainable_weights=1,  # the hardening flag
        non_trainable_variables=1,
        losses=1,
    ),
    # Static DSelect-k: the selector logits and weights are two variables; no regulariser.
    Case(
        "dselect_k_static",
        DSelectKGate,
        {"num_experts": 4, "k": 3, "entropy_weight": 0.0, "per_example": False},
        (4, 6),
        (4, 4),
        trainable=2,
        non_trainable_weights=1,
        non_trainable_variables=1,
    ),
    Case(
        "gated_mixture",
        GatedMixture,
        {},
        ((4, 3, 5), (4, 3)),
        (4, 5),
        built_after_instantiation=True,
    ),
    Case(
        "concat_experts",
        ConcatExperts,
        {},
        ((4, 2, 5), (4, 3, 5)),
        (4, 5, 5),
        built_after_instantiation=True,
    ),
    # AITM: query, key and value maps (kernel + bias each) of the attention over [transferred, own].
    Case(
        "adaptive_information_transfer",
        AdaptiveInformationTransfer,
        {},
        ((4, 5), (4, 5)),
        (4, 5),
        trainable=6,
    ),
    # The calibrator passes the later probability through and adds its penalty as one loss.
    Case(
        "behavioural_expectation",
        BehaviouralExpectation,
        {"weight": 0.6},
        ((4, 1), (4, 1)),
        (4, 1),
        losses=1,
        built_after_instantiation=True,
    ),
    Case(
        "cross_stitch",
        CrossStitch,
        {"num_tasks": 3, "lr_multiplier": 10.0, "diagonal": 0.9},
        ((4, 5),) * 3,
        [(4, 5)] * 3,
        trainable=1,
    ),
    # Conv feature maps split into 2 subspaces (the sluice unit).
    Case(
        "cross_stitch_subspaces",
        CrossStitch,
        {"num_tasks": 2, "num_subspaces": 2, "diagonal": 0.7},
        ((4, 3, 3, 6),) * 2,
        [(4, 3, 3, 6)] * 2,
        trainable=1,
    ),
    # MTAN's attention module on a feature map and the previous stage's features: two bias-free kernels and
    # two BatchNormalizations (γ, β trainable; moving mean and variance not).
    Case(
        "task_attention",
        TaskAttention,
        {"mask_units": 3},
        ((4, 3, 3, 5), (4, 3, 3, 2)),
        (4, 3, 3, 5),
        trainable=6,
        non_trainable_variables=4,
        non_trainable_weights=4,
    ),
    Case("layer_stitch", LayerStitch, {"num_layers": 3}, ((4, 5),) * 3, (4, 5), trainable=1),
    # One kernel and one bias per column; the L2 penalty is one loss per call.
    Case(
        "soft_shared_dense",
        SoftSharedDense,
        {
            "units": 4,
            "num_tasks": 3,
            "strength": 1e-3,
            "activation": "tanh",
        },  # relu could leave a unit dead on 4 rows
        ((4, 6),) * 3,
        [(4, 4)] * 3,
        trainable=6,
        losses=1,
    ),
    Case(
        "soft_shared_dense_first_depth",
        SoftSharedDense,
        {"units": 4, "num_tasks": 2, "strength": 1e-3},
        (4, 6),
        [(4, 4)] * 2,
        trainable=4,
        losses=1,
    ),
    Case(
        "soft_shared_dense_no_penalty",
        SoftSharedDense,
        {"units": 4, "num_tasks": 2, "strength": 0.0},
        ((4, 6),) * 2,
        [(4, 4)] * 2,
        trainable=4,
    ),
    Case(
        "orthogonality_penalty",
        OrthogonalityPenalty,
        {"strength": 0.01},
        ((4, 5), (4, 3)),
        (4, 8),
        losses=1,
    ),
    Case("orthogonality_penalty_off", OrthogonalityPenalty, {"strength": 0.0}, ((4, 5), (4, 3)), (4, 8)),
    # NaN -> fill value, with and without the appended 0/1 missing-indicator columns; no weights.
    Case(
        "impute_missing", ImputeMissing, {"fill_value": 0.5}, (4, 3), (4, 6), built_after_instantiation=True
    ),
    Case(
        "impute_missing_no_indicator",
        ImputeMissing,
        {"fill_value": -1.0, "indicator": False},
        (4, 3),
        (4, 3),
        built_after_instantiation=True,
    ),
    Case("missing_indicator", MissingIndicator, {}, (4, 3), (4, 3), built_after_instantiation=True),
    # Numerical embeddings: PLR has frequencies, a kernel and a bias (per feature, in one variable each);
    # the piecewise-linear encoding's edges are constructor arguments.
    Case(
        "periodic_embedding",
        PeriodicEmbedding,
        {"embedding_dim": 4, "num_frequencies": 3, "frequency_scale": 0.5, "seed": 1},
        (4, 2),
        (4, 8),
        trainable=3,
    ),
    Case(
        "piecewise_linear",
        PiecewiseLinearEncoding,
        {"edges": [-1.0, 0.0, 0.5, 2.0]},
        (4, 1),
        (4, 3),
        built_after_instantiation=True,
    ),
    # Mean of token embeddings where the id is not the mask value 0; no weights.
    Case("masked_mean", MaskedMean, {}, ((4, 3, 5), (4, 3)), (4, 5), built_after_instantiation=True),
    # String in, string out (no float inputs for the harness to draw, nothing to train): config and
    # serialization only; its values are tested in tests/builders/test_inputs_kinds.py.
    Case("split_tokens", SplitTokens, {"separator": ";"}),
    # A keras-hub text encoder (strings in; needs keras-hub): config and serialization only; its values,
    # training and round trip are tested in tests/builders/test_keras_hub_backbone.py.
    Case(
        "text_encoder",
        TextEncoder,
        {
            "backbone_spec": {
                "class": "BertBackbone",
                "config": {
                    "num_layers": 1,
                    "num_heads": 2,
                    "hidden_dim": 8,
                    "intermediate_dim": 16,
                    "max_sequence_length": 8,
                    "dropout": 0.0,
                },
            },
            "preprocessor_spec": {
                "class": "BertTextClassifierPreprocessor",
                "tokenizer": {
                    "class": "BertTokenizer",
                    "vocabulary": ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b"],
                },
                "sequence_length": 8,
            },
        },
    ),
    # The balancer's variable container is never called (no graph position): config and serialization only.
    Case("balancer_state", BalancerState, {}),
    # Post-hoc calibration: fitted values are constructor arguments, no weights.
    Case(
        "temperature_binary",
        TemperatureScaling,
        {"temperature": 2.0},
        (4, 1),
        (4, 1),
        built_after_instantiation=True,
    ),
    Case(
        "temperature_multiclass",
        TemperatureScaling,
        {"temperature": 0.5, "multiclass": True},
        (4, 3),
        (4, 3),
        built_after_instantiation=True,
    ),
    Case(
        "isotonic",
        IsotonicCalibration,
        {"x": [0.1, 0.5, 0.9], "y": [0.0, 0.4, 1.0]},
        (4, 1),
        (4, 1),
        built_after_instantiation=True,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_layer_passes_the_keras_layer_harness(harness: _KerasLayerHarness, case: Case) -> None:
    if case.layer_cls is TextEncoder:
        pytest.importorskip("keras_hub")
    harness.run_layer_test(case.layer_cls, **case.kwargs())


class _OneLayerModel(keras.Model):
    """The harness's training model, with the layer's list of outputs returned as a tuple."""

    def __init__(self, layer: keras.layers.Layer) -> None:
        super().__init__(name="one_layer_model")
        self.layer = layer

    def call(self, x: Any, training: bool = False) -> Any:
        return tuple(self.layer(x, training=training))


class _SumLoss(keras.losses.Loss):
    def __call__(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Any:
        return keras.ops.sum(y_pred)


LIST_OUTPUT_CASES = [c for c in CASES if c.list_output]


@pytest.mark.parametrize("case", LIST_OUTPUT_CASES, ids=[c.id for c in LIST_OUTPUT_CASES])
def test_list_output_layer_trains_one_step_as_the_harness_does(
    harness: _KerasLayerHarness, case: Case
) -> None:
    """The harness's training check (SGD on the sum of the outputs, ``jit_compile="auto"``), fed by a
    ``tf.data`` dataset of tuples; every trainable weight moves."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    shapes = case.input_shape if isinstance(case.input_shape[0], tuple) else (case.input_shape,)
    x = tuple(rng.uniform(0, 3, size=shape).astype("float32") for shape in shapes)
    layer = case.layer_cls(**case.init_kwargs)
    y = tuple(keras.ops.convert_to_numpy(out) for out in layer(x if len(x) > 1 else x[0]))
    model = _OneLayerModel(layer)
    model.compile(optimizer="sgd", loss=_SumLoss(), jit_compile="auto")
    before = [w.numpy() for w in layer.trainable_weights]
    dataset = tf.data.Dataset.from_tensors((x if len(x) > 1 else x[0], y))
    model.fit(dataset, epochs=1, shuffle=False, verbose=0)
    assert len(before) == case.trainable
    for weight, old in zip(layer.trainable_weights, before, strict=True):
        assert not np.allclose(weight.numpy(), old), weight.path


def test_every_layer_of_the_package_is_under_the_harness() -> None:
    """Each ``keras.layers.Layer`` subclass defined in layers/, builders/ or model.py has a case above."""
    modules = [importlib.import_module("mtl_keras.model")]
    for package in ("mtl_keras.layers", "mtl_keras.builders"):
        path = importlib.import_module(package).__path__
        modules += [importlib.import_module(info.name) for info in pkgutil.iter_modules(path, f"{package}.")]
    defined = {
        value
        for module in modules
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, keras.layers.Layer)
        and not issubclass(value, keras.Model)
        and value.__module__ == module.__name__
    }
    missing = defined - {c.layer_cls for c in CASES}
    assert not missing, sorted(c.__name__ for c in missing)


def test_the_harness_leaves_the_dtype_policy_and_the_random_states_as_they_were() -> None:
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        keras.utils.set_random_seed(7)
        name_before = keras.layers.Dense(1).name  # "dense", "dense_1", ...: Keras's per-process counter
        python_state, numpy_state = random.getstate(), np.random.get_state()
        with keras_harness() as case:
            assert keras.mixed_precision.global_policy().name == "float32"  # Keras's setUp cleared it
            assert not keras.config.is_traceback_filtering_enabled()
            case.run_layer_test(Gate, init_kwargs={"num_experts": 2}, input_shape=(2, 3))
            assert random.getstate() != python_state  # the harness drew unseeded inputs and initial weights
        assert random.getstate() == python_state
        after = np.random.get_state()
        assert after[0] == numpy_state[0] and np.array_equal(after[1], numpy_state[1])
        assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
        assert keras.config.is_traceback_filtering_enabled()
        assert _counter(keras.layers.Dense(1).name) == _counter(name_before) + 1  # not reset to "dense"
    finally:
        keras.mixed_precision.set_global_policy("float32")


def _counter(name: str) -> int:
    return 0 if name == "dense" else int(name.rsplit("_", 1)[1])
