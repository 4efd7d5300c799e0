"""Serving export: versioned SavedModels with per-task signatures, the TF Serving layout, and a checker."""

from mtl_keras.export.check import check_export
from mtl_keras.export.serving import export_for_serving

__all__ = ["check_export", "export_for_serving"]
