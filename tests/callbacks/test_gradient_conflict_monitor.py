"""GradientConflictMonitor reads the cosines a model compiled with log_conflicts=True logs."""

from __future__ import annotations

import json

import helpers
import keras
import numpy as np
import pytest

from mtl_keras import builders
from mtl_keras.callbacks import GradientConflictMonitor
from mtl_keras.evaluation import plot_conflicts


def test_monitor_collects_cosine_matrices(tmp_path) -> None:
    keras.utils.set_random_seed(0)
    x, y = helpers.toy_data(n=128)
    model = builders.hard_sharing(helpers.toy_tasks(), 12, trunk=(16,), tower_units=(8,))
    model.compile(keras.optimizers.Adam(0.01), log_conflicts=True)
    monitor = GradientConflictMonitor(tmp_path / "conflicts.json")
    history = model.fit(x, y, epochs=2, batch_size=32, verbose=0, callbacks=[monitor]).history
    names = model.task_names
    assert monitor.task_names == names and monitor.epochs == [0, 1]
    assert len(monitor.matrices) == 2
    for epoch, matrix in enumerate(monitor.matrices):
        assert matrix.shape == (3, 3)
        np.testing.assert_array_equal(matrix, matrix.T)
        np.testing.assert_array_equal(np.diag(matrix), 1.0)
        assert np.all(np.abs(matrix) <= 1.0 + 1e-6)
        for i, a in enumerate(names):
            for j in range(i + 1, 3):
                assert matrix[i, j] == pytest.approx(history[f"cos_{a}_{names[j]}"][epoch])
    np.testing.assert_allclose(monitor.conflict_fractions, history["conflict_fraction"])
    assert all(0.0 <= f <= 1.0 for f in monitor.conflict_fractions)
    with open(tmp_path / "conflicts.json") as stream:
        saved = json.load(stream)
    assert saved["task_names"] == names and saved["epochs"] == [0, 1]
    np.testing.assert_allclose(saved["matrices"], np.stack(monitor.matrices))
    np.testing.assert_allclose(saved["mean_matrix"], monitor.mean_matrix())
    path = plot_conflicts(monitor.matrices, names, tmp_path / "conflicts.png")
    assert path is not None
    with open(path, "rb") as stream:
        assert stream.read(4) == b"\x89PNG"


def test_needs_log_conflicts() -> None:
    x, y = helpers.toy_data(n=32)
    model = builders.hard_sharing(helpers.toy_tasks(), 12, trunk=(8,), tower_units=(4,))
    model.compile("adam")
    with pytest.raises(ValueError, match="log_conflicts=True"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[GradientConflictMonitor()])
