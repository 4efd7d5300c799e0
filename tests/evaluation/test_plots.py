"""Every plot writes a valid PNG, or returns None when the history lacks its keys."""

from __future__ import annotations

import os

import numpy as np
import pytest
from matplotlib import image

from mtl_keras import Task
from mtl_keras.evaluation import cosine_matrix, plot_conflicts, plot_task_weights, plot_validation_curves

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
NAMES = ["a", "b", "c"]


def _history(epochs: int = 5) -> dict[str, list[float]]:
    rng = np.random.default_rng(0)
    steps = np.arange(epochs, dtype=float)
    history: dict[str, list[float]] = {"loss": list(2.0 / (1 + steps))}
    for i, name in enumerate(NAMES):
        history[f"{name}_loss"] = list(1.0 / (1 + steps) + 0.1 * i)
        history[f"val_{name}_loss"] = list(1.1 / (1 + steps) + 0.1 * i)
        history[f"{name}_weight"] = list(1.0 + 0.1 * i * steps)
    for prefix in ("", "val_"):
        history[f"{prefix}a_accuracy"] = list(0.5 + 0.05 * steps)
        history[f"{prefix}a_auc"] = list(0.6 + 0.05 * steps)
        history[f"{prefix}b_mse"] = list(1.0 / (1 + steps))
    history["cos_a_b"] = list(rng.uniform(-0.5, 0.5, epochs))
    history["cos_a_c"] = list(rng.uniform(-0.5, 0.5, epochs))
    history["cos_b_c"] = list(rng.uniform(-0.5, 0.5, epochs))
    history["conflict_fraction"] = list(rng.uniform(0, 1, epochs))
    return history


def _check_png(path: str | None) -> None:
    assert path is not None
    assert os.path.getsize(path) > 0
    with open(path, "rb") as stream:
        assert stream.read(8) == PNG_SIGNATURE
    pixels = image.imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100
    assert [f for f in os.listdir(os.path.dirname(path)) if f.endswith(".tmp")] == []


def test_validation_curves(tmp_path) -> None:
    tasks = [
        Task("a", "binary", metrics=["auc", "accuracy"]),
        Task("b"),
        Task("c", "multiclass", num_classes=3),
    ]
    _check_png(plot_validation_curves(_history(), tasks, tmp_path / "curves.png"))
    _check_png(
        plot_validation_curves(_history(), NAMES, tmp_path / "sub" / "curves.png", metrics={"a": "auc"})
    )
    assert plot_validation_curves({"loss": [1.0, 0.5]}, NAMES, tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()


def test_task_weights(tmp_path) -> None:
    _check_png(plot_task_weights(_history(), NAMES, tmp_path / "weights.png"))
    history = {k: v for k, v in _history().items() if not k.endswith("_weight")}
    assert plot_task_weights(history, NAMES, tmp_path / "none.png") is None


def test_conflicts(tmp_path) -> None:
    history = _history()
    matrix = cosine_matrix(history, NAMES)
    assert matrix is not None
    np.testing.assert_allclose(np.diag(matrix), 1.0)
    assert matrix[0, 1] == matrix[1, 0] == pytest.approx(np.mean(history["cos_a_b"]))
    _check_png(plot_conflicts(history, NAMES, tmp_path / "conflicts.png"))
    _check_png(plot_conflicts(matrix, NAMES, tmp_path / "matrix.png"))
    _check_png(plot_conflicts([matrix, matrix], NAMES, tmp_path / "matrices.png"))
    assert plot_conflicts({"loss": [1.0]}, NAMES, tmp_path / "none.png") is None
    assert cosine_matrix({"loss": [1.0]}, NAMES) is None
    with pytest.raises(ValueError, match="3×3"):
        plot_conflicts(np.eye(2), NAMES, tmp_path / "bad.png")


def test_constant_task_weights_are_not_plotted(tmp_path) -> None:
    history = _history()
    for name in NAMES:
        history[f"{name}_weight"] = [2.0] * 5
    assert plot_task_weights(history, NAMES, tmp_path / "static.png") is None
    assert not (tmp_path / "static.png").exists()


def test_a_task_without_labels_is_not_drawn_at_zero(tmp_path, monkeypatch) -> None:
    from mtl_keras.evaluation import plots

    figures = []

    def keep(figure, path):
        figures.append(figure)
        return str(path)

    monkeypatch.setattr(plots, "_save", keep)
    history = _history()
    nan = float("nan")
    history["c_loss"] = [nan] * 5
    history["val_c_loss"] = [nan] * 5
    history["c_accuracy"] = [nan] * 5
    history["val_a_auc"] = [nan, 0.7, nan, 0.8, 0.9]  # gaps, not zeros
    tasks = [Task("a", "binary", metrics=["auc"]), Task("b"), Task("c", "multiclass", num_classes=3)]
    plot_validation_curves(history, tasks, tmp_path / "curves.png")
    axes = figures[0].axes
    top_c, bottom_c = axes[2], axes[5]  # 2 rows × 3 columns, row-major
    assert top_c.get_lines() == [] and bottom_c.get_lines() == []
    assert "no labelled examples" in top_c.texts[0].get_text()
    assert "no labelled examples" in bottom_c.texts[0].get_text()
    validation = next(line for line in axes[3].get_lines() if line.get_label() == "validation")
    y = np.asarray(validation.get_ydata(), dtype=float)
    assert np.isnan(y[[0, 2]]).all() and np.all(y[[1, 3, 4]] > 0)
