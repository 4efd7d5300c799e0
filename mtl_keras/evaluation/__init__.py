"""Evaluation of multi-task models: Δm % against single-task baselines, classical reference models,
calibration, reports and plots."""

from mtl_keras.evaluation.calibration import expected_calibration_error, reliability
from mtl_keras.evaluation.delta_m import delta_m, delta_m_multi, relative_improvement
from mtl_keras.evaluation.plots import (
    cosine_matrix,
    plot_conflicts,
    plot_reliability,
    plot_task_weights,
    plot_validation_curves,
)
from mtl_keras.evaluation.reference import REFERENCE_MODELS, fit_reference_models
from mtl_keras.evaluation.report import build_report, format_table, split_results, to_markdown, write_report

__all__ = [
    "REFERENCE_MODELS",
    "build_report",
    "cosine_matrix",
    "delta_m",
    "delta_m_multi",
    "expected_calibration_error",
    "fit_reference_models",
    "format_table",
    "plot_conflicts",
    "plot_reliability",
    "plot_task_weights",
    "plot_validation_curves",
    "relative_improvement",
    "reliability",
    "split_results",
    "to_markdown",
    "write_report",
]
