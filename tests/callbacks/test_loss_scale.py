"""LossScaleWarning: one warning after the first epoch when one task's loss is > ratio × another's."""

from __future__ import annotations

import logging
import math

import keras
import numpy as np
import pytest
from helpers import toy_data, toy_tasks

from mtl_keras import builders
from mtl_keras.callbacks import LossScaleWarning, loss_scale_message


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "mtl_keras" and "dominates" in r.getMessage()]


def test_message_names_both_tasks_their_losses_and_the_ratio() -> None:
    message = loss_scale_message({"a": 0.5, "b": 250.0, "c": 2.0})
    assert message is not None and "\n" not in message
    assert "'b'" in message and "'a'" in message and "250" in message and "0.5" in message
    assert "500x" in message
    assert "standardise" in message and "task weights" in message
    # Exactly at the ratio: no warning; missing, zero and infinite losses are left out.
    assert loss_scale_message({"a": 1.0, "b": 100.0}) is None
    assert loss_scale_message({"a": math.nan, "b": 1e6, "c": 0.0, "d": math.inf, "e": None}) is None
    assert loss_scale_message({"a": 1.0, "b": 30.0}, ratio=10) is not None


def test_bad_ratio_is_refused() -> None:
    for ratio in (1.0, 0.5, math.inf):
        with pytest.raises(ValueError, match="ratio"):
            LossScaleWarning(ratio=ratio)


def test_fit_warns_once_for_unscaled_regression_labels(caplog) -> None:
    x, y = toy_data(n=64)
    y["b"] = y["b"] * 1000.0 + 5000.0  # MSE in the millions next to cross-entropies near 1
    keras.utils.set_random_seed(0)
    model = builders.hard_sharing(toy_tasks(), 12, trunk=(8,))
    model.compile("adam")
    callback = LossScaleWarning()
    with caplog.at_level(logging.WARNING, logger="mtl_keras"):
        history = model.fit(x, y, batch_size=32, epochs=2, verbose=0, callbacks=[callback]).history
    found = _warnings(caplog)
    assert len(found) == 1 and found[0] == callback.message
    first = {name: history[f"{name}_loss"][0] for name in "abc"}
    small = min(first, key=first.__getitem__)
    assert "Task 'b'" in found[0] and f"task {small!r}" in found[0]
    assert f"{first['b'] / first[small]:.4g}x" in found[0]


def test_no_warning_for_comparable_losses(caplog) -> None:
    x, y = toy_data(n=64)
    y["b"][::2] = np.nan
    keras.utils.set_random_seed(0)
    model = builders.hard_sharing(toy_tasks(), 12, trunk=(8,))
    model.compile("adam")
    callback = LossScaleWarning()
    with caplog.at_level(logging.WARNING, logger="mtl_keras"):
        model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[callback])
    assert _warnings(caplog) == [] and callback.message is None
