"""Gramian mode (issue 16, item 3): the parameter-level update of a Gramian-based aggregator from the Gram
matrix accumulated chunk by chunk and one weighted backward pass equals the stored-Jacobian step's."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import toy_data, toy_tasks

from mtl_keras import builders
from mtl_keras.training import gramian_jacobian, select
from mtl_keras.training.gramian_jacobian import GramianJacobianStep, chunks
from mtl_keras.training.param_jacobian import ParameterJacobianStep

STEPS, BATCH = 4, 32


def test_chunks_group_consecutive_variables_within_the_budget() -> None:
    assert chunks([10, 10, 10, 50, 5], 2, 40) == [[0, 1], [2], [3], [4]]
    assert chunks([10, 10], 3, 10**6) == [[0, 1]]
    assert chunks([100], 3, 10) == [[0]]  # a variable larger than the budget is a chunk of its own


def _data() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    x, y = toy_data(n=STEPS * BATCH, seed=3)
    y["b"][::3] = np.nan  # missing labels
    y["c"][:BATCH] = np.nan  # task c absent from the first batch: a zero row
    return x, y


def _train(
    balancer: str, jacobian: str, *, chunk_floats: int | None = None, strategy=None
) -> list[np.ndarray]:
    strategy = strategy or tf.distribute.get_strategy()
    with strategy.scope():
        keras.utils.set_random_seed(0)
        model = builders.hard_sharing(toy_tasks(), 12, trunk=(16, 8), tower_units=(8,))
        model.compile(keras.optimizers.SGD(0.05), balancer=balancer, jacobian=jacobian)
    step = model._runner.step
    expected = GramianJacobianStep if jacobian == "gramian" else ParameterJacobianStep
    assert type(step) is expected
    if chunk_floats is not None:
        step.chunk_floats = chunk_floats  # before the first trace
    x, y = _data()
    model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
    return [v.numpy() for v in model.trainable_variables]


@pytest.mark.parametrize("balancer", ["upgrad", "mgda", "pcgrad", "cagrad", "imtl", "nash_mtl", "config"])
def test_gramian_mode_equals_the_stored_jacobian(balancer: str) -> None:
    stored = _train(balancer, "stored")
    # 3 tasks × 60 floats: the trunk's four variables (192, 16, 128, 8 entries) in three chunks
    gramian = _train(balancer, "gramian", chunk_floats=3 * 200)
    for a, b in zip(stored, gramian, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_gramian_mode_under_mirrored_strategy_matches_one_device(mirrored_strategy) -> None:
    one = _train("upgrad", "gramian", chunk_floats=3 * 200)
    two = _train("upgrad", "gramian", chunk_floats=3 * 200, strategy=mirrored_strategy)
    for a, b in zip(one, two, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)


def test_auto_picks_the_gramian_step_above_the_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    model = builders.hard_sharing(toy_tasks(), 12, trunk=(16, 8), tower_units=(8,))
    model.compile("sgd", balancer="mgda")
    assert type(model._runner.step) is ParameterJacobianStep  # 3 × 344 entries: far below 2^27
    monkeypatch.setattr(select, "GRAMIAN_ABOVE_FLOATS", 3 * 344 - 1)
    model.compile("sgd", balancer="mgda")
    assert type(model._runner.step) is GramianJacobianStep
    model.compile("sgd", balancer="graddrop")  # needs J itself: stored whatever the size
    assert type(model._runner.step) is ParameterJacobianStep
    assert gramian_jacobian.CHUNK_FLOATS == 2**24


def test_bad_jacobian_options_name_the_expected_values() -> None:
    model = builders.hard_sharing(toy_tasks(), 12, trunk=(16, 8), tower_units=(8,))
    with pytest.raises(ValueError, match=r"jacobian.*\['auto', 'stored', 'gramian'\].*'gramain'"):
        model.compile("sgd", balancer="mgda", jacobian="gramain")
    with pytest.raises(ValueError, match="GradDrop needs the Jacobian itself"):
        model.compile("sgd", balancer="graddrop", jacobian="gramian")


def test_the_mode_is_saved_with_the_model(tmp_path) -> None:
    model = builders.hard_sharing(toy_tasks(), 12, trunk=(16, 8), tower_units=(8,))
    model.compile("sgd", balancer="upgrad", jacobian="gramian")
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded._runner.step) is GramianJacobianStep
